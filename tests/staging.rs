//! Artifact staging against Azurite through the emulator's ARM: the account found by name, the
//! archive streamed in blocks, the read-only SAS that Image Builder gets, the fallback to a
//! storage token where shared keys are forbidden, per-block retries, and cleanup; the pinned
//! storage service version on every request, and creating the container while Azure still
//! deletes one of that name.

mod common;

use std::path::Path;
use std::sync::Arc;

use aib_emulator::config::StorageAccountConfig;
use aib_emulator::{Config, defaults};
use aib_task::agent::PipelineContext;
use aib_task::sas::{BlobSas, Protocol};
use aib_task::staging::{self, Staged, StagingRequest};
use aib_task::storage::CONTAINER;
use aib_task::upload::UploadSettings;
use axum::http::StatusCode;
use common::fault_proxy::{FaultProxy, InjectRule, Injected};
use common::*;
use sha2::Digest as _;

/// `sample_tree` as the build path `name`, in a new temporary folder.
fn sample_package(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path().join(name);
    sample_tree(&root);
    (tree, root)
}

/// A small tree: nested folders, an empty folder and file, a name with a space, and enough
/// incompressible bytes to make several blocks.
fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root.join("bin/nested")).unwrap();
    std::fs::create_dir_all(root.join("empty dir")).unwrap();
    std::fs::write(root.join("install.sh"), "#!/bin/sh\necho installing\n").unwrap();
    std::fs::write(root.join("bin/nested/app.conf"), "key=value\n".repeat(5000)).unwrap();
    std::fs::write(root.join("empty.txt"), "").unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..600 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(root.join("bin/payload.bin"), noise).unwrap();
}

fn pipeline() -> PipelineContext {
    PipelineContext::from_env(&aib_task::agent::Environment::from_pairs([
        ("BUILD_BUILDID", "4711"),
        ("SYSTEM_JOBATTEMPT", "2"),
    ]))
}

/// Stages `root` to `account` in small blocks (64 KiB, three at a time), so that even the
/// sample tree takes several.
async fn stage(signed: &SignedIn, account: &str, root: &Path) -> anyhow::Result<Staged> {
    staging::stage(
        &signed.arm,
        signed.http.clone(),
        signed.tokens.clone(),
        StagingRequest {
            subscription: defaults::SUBSCRIPTION_ID,
            storage_account: account,
            package_path: root.to_owned(),
            build_timeout_minutes: 60,
            upload: UploadSettings {
                block_size: 64 * 1024,
                concurrency: 3,
                queue: 2,
            },
        },
        &pipeline(),
        &signed.console,
    )
    .await
}

/// Downloads `url` and checks that it is the archive `staged` uploaded (by its SHA-256).
async fn download_archive(client: &reqwest::Client, url: &str, staged: &Staged) -> Vec<u8> {
    let answer = client.get(url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let body = answer.bytes().await.unwrap().to_vec();
    assert_eq!(
        <[u8; 32]>::from(sha2::Sha256::digest(&body)),
        staged.uploaded.sha256
    );
    body
}

fn extract_and_compare(zip: &[u8], source: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.zip");
    std::fs::write(&archive, zip).unwrap();
    let out = dir.path().join("out");
    let status = std::process::Command::new("unzip")
        .arg("-q")
        .arg(&archive)
        .arg("-d")
        .arg(&out)
        .status()
        .expect("unzip runs");
    assert!(status.success());
    for rel in [
        "install.sh",
        "bin/nested/app.conf",
        "empty.txt",
        "bin/payload.bin",
    ] {
        assert_eq!(
            std::fs::read(out.join(rel)).unwrap(),
            std::fs::read(source.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert!(out.join("empty dir").is_dir());
}

#[tokio::test]
async fn stages_with_the_account_key_and_hands_out_a_read_only_sas() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let signed = sign_in(&stack.emulator);
    let (_tree, root) = sample_package("webapp");

    let staged = stage(&signed, defaults::STORAGE_ACCOUNT, &root)
        .await
        .unwrap();
    assert!(staged.store.uses_account_key());
    assert!(
        staged.blob.starts_with("webapp/4711-2/webapp_") && staged.blob.ends_with(".zip"),
        "{}",
        staged.blob
    );
    assert!(
        staged.uploaded.blocks > 5,
        "{} blocks",
        staged.uploaded.blocks
    );
    assert_eq!(staged.url.query(), None);
    let url = staged.download_url.secret().to_owned();
    let query: std::collections::HashMap<String, String> = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query["sp"], "r");
    assert_eq!(query["sr"], "b");
    assert_eq!(query["spr"], "https");
    let expiry =
        time::OffsetDateTime::parse(&query["se"], &time::format_description::well_known::Rfc3339)
            .unwrap();
    let hours = (expiry - time::OffsetDateTime::now_utc()).whole_minutes();
    assert!(
        (115..=121).contains(&hours),
        "valid for {hours} minutes: timeout 60 + 60"
    );

    // Image Builder's view: the SAS reads the blob, and it is the archive we hashed.
    let client = stack.anonymous_client();
    let body = download_archive(&client, &url, &staged).await;
    assert_eq!(body.len() as u64, staged.uploaded.bytes);
    extract_and_compare(&body, &root);

    // Nothing else: no write, no delete, no other blob, no tampering.
    let put = client
        .put(&url)
        .header("x-ms-blob-type", "BlockBlob")
        .body("overwrite")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 403, "{}", put.text().await.unwrap());
    assert_eq!(client.delete(&url).send().await.unwrap().status(), 403);
    let other = url.replacen(".zip?", "-other.zip?", 1);
    assert_eq!(client.get(&other).send().await.unwrap().status(), 403);
    let sig = &query["sig"];
    let tampered_sig: String =
        url::form_urlencoded::byte_serialize(format!("A{}", &sig[1..]).as_bytes()).collect();
    let tampered = url.replace(
        &url::form_urlencoded::byte_serialize(sig.as_bytes()).collect::<String>(),
        &tampered_sig,
    );
    assert_ne!(tampered, url);
    assert_eq!(client.get(&tampered).send().await.unwrap().status(), 403);
    let longer = url.replace(
        &format!("se={}", query["se"].replace(':', "%3A")),
        "se=2099-01-01T00%3A00%3A00Z",
    );
    assert_ne!(longer, url, "the expiry was found in the URL");
    assert_eq!(client.get(&longer).send().await.unwrap().status(), 403);

    // An expired SAS, signed with the same key, is refused.
    let now = time::OffsetDateTime::now_utc();
    let mut expired = BlobSas::read_only_for_build(
        defaults::STORAGE_ACCOUNT,
        CONTAINER,
        &staged.blob,
        now - time::Duration::hours(3),
        1,
        Protocol::HttpsOnly,
    );
    expired.expiry = now - time::Duration::minutes(1);
    let token = expired
        .sign_with_account_key(defaults::STORAGE_ACCOUNT_KEY)
        .unwrap();
    let expired_url = format!("{}?{}", staged.url, token.query);
    assert_eq!(client.get(&expired_url).send().await.unwrap().status(), 403);

    // Secrets were announced and never printed.
    let output = signed.output.text();
    assert_no_secret_leaks(
        &output,
        &[
            defaults::STORAGE_ACCOUNT_KEY,
            sig,
            &url,
            defaults::CLIENT_SECRET,
        ],
    );
    assert!(output.contains(&format!(
        "getting storage account details for {}",
        defaults::STORAGE_ACCOUNT
    )));
    assert!(output.contains(&format!("created archive {}", staged.url)));

    // Cleanup: the blob goes, the container stays.
    staged.remove(&signed.console).await.unwrap();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 404);
    assert!(signed.output.text().contains(&format!(
        "deleting storage blob {CONTAINER}\\{}",
        staged.blob
    )));
}

#[tokio::test]
async fn accounts_without_shared_keys_get_a_user_delegation_sas() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let signed = sign_in(&stack.emulator);
    let (_tree, root) = sample_package("_drop");

    let staged = stage(&signed, defaults::NO_KEY_STORAGE_ACCOUNT, &root)
        .await
        .unwrap();
    assert!(!staged.store.uses_account_key());
    let output = signed.output.text();
    assert!(
        output.contains("forbids shared keys (allowSharedKeyAccess is false): using the service connection's storage token and a user delegation SAS"),
        "{output}"
    );
    let url = staged.download_url.secret().to_owned();
    assert!(
        url.contains("skoid=") && url.contains("sp=r"),
        "a user delegation SAS"
    );
    let client = stack.anonymous_client();
    download_archive(&client, &url, &staged).await;
    assert_eq!(client.delete(&url).send().await.unwrap().status(), 403);
    // No key was ever asked for.
    assert!(
        !stack
            .emulator
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/listKeys")),
        "listKeys must not be called for an account that forbids shared keys"
    );
    staged.remove(&signed.console).await.unwrap();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_refused_list_keys_falls_back_to_the_storage_token() {
    let mut config = Config::default();
    let mut locked = StorageAccountConfig::new("aiblocked01", defaults::STORAGE_ACCOUNT_KEY);
    locked.list_keys_forbidden = true;
    config.storage_accounts.push(locked);
    let Some(stack) = start_stack(config).await else {
        return;
    };
    let signed = sign_in(&stack.emulator);
    let (_tree, root) = sample_package("app");
    let staged = stage(&signed, "aiblocked01", &root).await.unwrap();
    assert!(!staged.store.uses_account_key());
    assert!(
        signed.output.text().contains(
            "cannot list the keys of storage account aiblocked01 (403 AuthorizationFailed)"
        ),
        "{}",
        signed.output.text()
    );
    staged.remove(&signed.console).await.unwrap();
}

#[tokio::test]
async fn an_unknown_account_names_the_input() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let signed = sign_in(&stack.emulator);
    let tree = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let err = stage(&signed, "nosuchaccount", tree.path())
        .await
        .err()
        .expect("fails");
    let text = format!("{err:#}");
    assert!(
        text.contains("input 'storageAccountName'") && text.contains("nosuchaccount"),
        "{text}"
    );
}

/// Points the artifact account at a fault proxy in front of Azurite.
async fn behind_proxy(rule: common::fault_proxy::Rule) -> Option<(Stack, FaultProxy)> {
    behind_injecting_proxy(Box::new(move |method, query, n| {
        rule(method, query, n).map(Injected::status)
    }))
    .await
}

/// [`behind_proxy`] with whole error answers chosen by `rule`.
async fn behind_injecting_proxy(rule: InjectRule) -> Option<(Stack, FaultProxy)> {
    let mut config = Config::default();
    let azurite = start_azurite(&mut config)?;
    let upstream = url::Url::parse(&format!("https://127.0.0.1:{}/", azurite.port())).unwrap();
    let ca_pem = config
        .ca
        .as_ref()
        .expect("start_azurite set the CA")
        .cert_pem();
    let proxy = FaultProxy::start_injecting(upstream, ca_pem, rule).await;
    config.storage_accounts[0].blob_endpoint = format!(
        "http://127.0.0.1:{}/{}/",
        proxy.port,
        defaults::STORAGE_ACCOUNT
    );
    let emulator = aib_emulator::Emulator::start(config).await.unwrap();
    Some((Stack { emulator, azurite }, proxy))
}

/// The index of the block a Put Block request stages (`aib-<token>-<index>`, base64 in the
/// query).
fn block_index(query: &str) -> Option<usize> {
    use base64::Engine as _;
    let id = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "blockid")?
        .1;
    let id = base64::engine::general_purpose::STANDARD
        .decode(id.as_bytes())
        .ok()?;
    String::from_utf8(id).ok()?.rsplit('-').next()?.parse().ok()
}

fn is_block(method: &str, query: &str) -> bool {
    method == "PUT" && query.contains("comp=block") && !query.contains("comp=blocklist")
}

#[tokio::test]
async fn blocks_are_retried_on_their_own_after_transient_failures() {
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&counter);
    let rule: common::fault_proxy::Rule = Box::new(move |method, query, _| {
        if !is_block(method, query) {
            return None;
        }
        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        match n {
            2 => Some(StatusCode::SERVICE_UNAVAILABLE),
            4 => Some(StatusCode::INTERNAL_SERVER_ERROR),
            5 => Some(StatusCode::TOO_MANY_REQUESTS),
            9 => Some(StatusCode::BAD_GATEWAY),
            _ => None,
        }
    });
    let Some((stack, proxy)) = behind_proxy(rule).await else {
        return;
    };
    let mut signed = sign_in(&stack.emulator);
    signed.arm.retry.initial_delay = std::time::Duration::from_millis(20);
    let (_tree, root) = sample_package("webapp");
    let staged = stage(&signed, defaults::STORAGE_ACCOUNT, &root)
        .await
        .unwrap();

    let injected: Vec<u16> = proxy
        .seen()
        .into_iter()
        .filter(|(m, q, s)| is_block(m, q) && *s >= 400)
        .map(|(_, _, s)| s)
        .collect();
    assert_eq!(injected, [503, 500, 429, 502]);
    // The committed blob is the archive, whole.
    let blob = stack.azurite.blob_endpoint(defaults::STORAGE_ACCOUNT);
    let sas_query = url::Url::parse(staged.download_url.secret())
        .unwrap()
        .query()
        .unwrap()
        .to_owned();
    let direct = format!(
        "{blob}{CONTAINER}/{}?{sas_query}",
        staged.blob.replace(' ', "%20")
    );
    let body = download_archive(&stack.anonymous_client(), &direct, &staged).await;
    extract_and_compare(&body, &root);
    staged.remove(&signed.console).await.unwrap();
}

#[tokio::test]
async fn an_upload_that_cannot_finish_says_how_far_it_got_and_leaves_nothing() {
    let rule: common::fault_proxy::Rule = Box::new(move |method, query, _| {
        if is_block(method, query) && block_index(query) == Some(4) {
            // Block 4 is refused for good (403 is not transient).
            Some(StatusCode::FORBIDDEN)
        } else {
            None
        }
    });
    let Some((stack, proxy)) = behind_proxy(rule).await else {
        return;
    };
    let signed = sign_in(&stack.emulator);
    let (_tree, root) = sample_package("webapp");
    let err = stage(&signed, defaults::STORAGE_ACCOUNT, &root)
        .await
        .err()
        .expect("the upload fails");
    let text = format!("{err:#}");
    assert!(text.contains("input 'packagePath'"), "{text}");
    assert!(
        text.contains("stopped after") && text.contains("MiB written so far"),
        "{text}"
    );
    assert!(text.contains("staging block 4 failed"), "{text}");
    let output = signed.output.text();
    assert!(output.contains("removed the partial upload"), "{output}");
    // The blob does not exist, and neither do uncommitted blocks.
    let deletes = proxy
        .seen()
        .into_iter()
        .filter(|(m, _, s)| m == "DELETE" && *s == 202)
        .count();
    assert_eq!(deletes, 1);
    let listing = stack
        .artifact_container_listing()
        .await
        .expect("the artifact container exists");
    assert!(
        !listing.iter().any(|name| name.starts_with("webapp/")),
        "{listing:?}"
    );
}

/// Every storage request the task sends while staging and cleaning up, and every SAS it signs,
/// carries the pinned service version. (With the SDK's default, the newest version, Azurite
/// refuses the first request: see `azurite_refuses_the_sdk_s_default_service_version`.)
#[tokio::test]
async fn every_storage_request_carries_the_pinned_service_version() {
    let Some((stack, proxy)) = behind_proxy(Box::new(|_, _, _| None)).await else {
        return;
    };
    let signed = sign_in(&stack.emulator);
    let (_tree, root) = sample_package("webapp");
    let staged = stage(&signed, defaults::STORAGE_ACCOUNT, &root)
        .await
        .unwrap();
    staged.remove(&signed.console).await.unwrap();
    let pinned = aib_task::storage::SERVICE_VERSION;

    let requests = proxy.versions();
    let kinds = |test: &dyn Fn(&str, &str) -> bool| {
        requests
            .iter()
            .filter(|r| {
                test(
                    &r.method,
                    r.path_and_query.split_once('?').map_or("", |p| p.1),
                )
            })
            .count()
    };
    assert_eq!(
        kinds(&|m, q| m == "PUT" && q.contains("restype=container")),
        1
    );
    assert!(kinds(&|m, q| is_block(m, q)) > 5);
    assert_eq!(kinds(&|m, q| m == "PUT" && q.contains("comp=blocklist")), 1);
    assert_eq!(kinds(&|m, _| m == "DELETE"), 1);
    for request in &requests {
        assert_eq!(
            request.x_ms_version.as_deref(),
            Some(pinned),
            "{} {}",
            request.method,
            request.path_and_query
        );
        let url = url::Url::parse(&format!("http://proxy{}", request.path_and_query)).unwrap();
        let sv: Vec<String> = url
            .query_pairs()
            .filter(|(k, _)| k == "sv")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(sv, [pinned], "the write SAS's signed version");
    }
    // The read SAS for Image Builder is signed with the same version.
    let download = url::Url::parse(staged.download_url.secret()).unwrap();
    assert!(
        download
            .query_pairs()
            .any(|(k, v)| k == "sv" && v == pinned)
    );
}

/// Why the version is pinned: Azurite, started without `--skipApiVersionCheck` as Azure would
/// be, refuses the version the SDK sends by default (the newest it knows), as Azure refuses a
/// version not yet deployed where the account lives.
#[tokio::test]
async fn azurite_refuses_the_sdk_s_default_service_version() {
    use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let mut grant = aib_task::sas::AccountSas::for_task_writes(
        defaults::STORAGE_ACCOUNT,
        time::OffsetDateTime::now_utc(),
        1,
        Protocol::HttpsOnly,
    );
    grant.permissions = "cwd".into();
    let sas = grant.sign(defaults::STORAGE_ACCOUNT_KEY).unwrap();
    let mut url = stack
        .azurite
        .blob_endpoint(defaults::STORAGE_ACCOUNT)
        .join("versioncheck")
        .unwrap();
    url.set_query(Some(&sas.query));
    let transport = azure_core::http::Transport::new(Arc::new(stack.anonymous_client()));
    let client = |version: Option<&str>| {
        let mut options = BlobContainerClientOptions::default();
        options.client_options.transport = Some(transport.clone());
        options.client_options.retry = azure_core::http::RetryOptions::none();
        if let Some(version) = version {
            options.version = version.into();
        }
        BlobContainerClient::new(url.clone(), None, Some(options)).unwrap()
    };

    let refused = client(None).create(None).await.unwrap_err();
    assert_eq!(
        refused.http_status(),
        Some(azure_core::http::StatusCode::BadRequest),
        "{refused}"
    );
    let text = refused.to_string();
    assert!(
        text.contains("InvalidHeaderValue") && text.contains("is not supported by Azurite"),
        "{text}"
    );

    client(Some(aib_task::storage::SERVICE_VERSION))
        .create(None)
        .await
        .expect("the pinned version is accepted");
}

fn is_create_container(method: &str, query: &str) -> bool {
    method == "PUT" && query.contains("restype=container") && !query.contains("comp=")
}

/// The artifact store of the default account, behind the proxy, with quick waits while a
/// container is being deleted.
async fn store_behind(stack: &Stack) -> (SignedIn, aib_task::storage::BlobStore) {
    use aib_task::storage;
    let signed = sign_in(&stack.emulator);
    let account = storage::find_account(
        &signed.arm,
        defaults::SUBSCRIPTION_ID,
        defaults::STORAGE_ACCOUNT,
    )
    .await
    .unwrap();
    let access = storage::choose_access(&signed.arm, &account, &signed.console)
        .await
        .unwrap();
    let mut store = storage::BlobStore::new(
        account,
        access,
        signed.tokens.clone(),
        signed.http.clone(),
        Arc::clone(&signed.console),
    );
    store.container_retry = aib_task::arm::RetryPolicy {
        max_attempts: 5,
        initial_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(40),
        max_retry_after: std::time::Duration::from_millis(40),
    };
    (signed, store)
}

/// The answers to the container creations the proxy saw.
fn container_creations(proxy: &FaultProxy) -> Vec<u16> {
    proxy
        .seen()
        .into_iter()
        .filter(|(m, q, _)| is_create_container(m, q))
        .map(|(_, _, s)| s)
        .collect()
}

fn being_deleted() -> Injected {
    Injected::storage(
        StatusCode::CONFLICT,
        "ContainerBeingDeleted",
        "The specified container is being deleted.",
    )
}

#[tokio::test]
async fn a_container_still_being_deleted_is_waited_for() {
    let creations = std::sync::atomic::AtomicUsize::new(0);
    let rule: InjectRule = Box::new(move |method, query, _| {
        if !is_create_container(method, query) {
            return None;
        }
        (creations.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3).then(being_deleted)
    });
    let Some((stack, proxy)) = behind_injecting_proxy(rule).await else {
        return;
    };
    let (signed, store) = store_behind(&stack).await;
    store.ensure_container().await.unwrap();
    assert_eq!(container_creations(&proxy), [409, 409, 409, 201]);
    assert!(stack.artifact_container_listing().await.is_some());
    let output = signed.output.text();
    assert!(
        output.contains(&format!(
            "container {CONTAINER} in storage account {} is still being deleted (ContainerBeingDeleted); trying again in",
        defaults::STORAGE_ACCOUNT
        )),
        "{output}"
    );
    assert!(output.contains(&format!("created container {CONTAINER}")));

    // Azurite's own 409 ContainerAlreadyExists: the container is there, nothing to do.
    store.ensure_container().await.unwrap();
    assert_eq!(container_creations(&proxy), [409, 409, 409, 201, 409]);
}

#[tokio::test]
async fn a_container_that_stays_being_deleted_fails_after_bounded_waits() {
    let rule: InjectRule =
        Box::new(|method, query, _| is_create_container(method, query).then(being_deleted));
    let Some((stack, proxy)) = behind_injecting_proxy(rule).await else {
        return;
    };
    let (_signed, store) = store_behind(&stack).await;
    let text = format!("{:#}", store.ensure_container().await.unwrap_err());
    assert_eq!(
        container_creations(&proxy),
        [409; 5],
        "five attempts, no more"
    );
    for expected in [
        format!("cannot create container {CONTAINER}"),
        format!("storage account {}", defaults::STORAGE_ACCOUNT),
        "409 ContainerBeingDeleted after 5 attempts".to_owned(),
        "Run the pipeline again in a few minutes".to_owned(),
        "make sure nothing deletes the container".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} in {text}");
    }
    assert!(stack.artifact_container_listing().await.is_none());
}

#[tokio::test]
async fn other_container_refusals_show_storage_s_code_and_message() {
    let creations = std::sync::atomic::AtomicUsize::new(0);
    let rule: InjectRule = Box::new(move |method, query, _| {
        if !is_create_container(method, query) {
            return None;
        }
        Some(
            if creations.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                Injected::storage(
                    StatusCode::CONFLICT,
                    "ContainerDisabled",
                    "The specified container has been disabled by the administrator.",
                )
            } else {
                Injected::storage(
                    StatusCode::FORBIDDEN,
                    "AuthorizationPermissionMismatch",
                    "This request is not authorized to perform this operation using this permission.",
                )
            },
        )
    });
    let Some((stack, proxy)) = behind_injecting_proxy(rule).await else {
        return;
    };
    let (_signed, store) = store_behind(&stack).await;
    let text = format!("{:#}", store.ensure_container().await.unwrap_err());
    assert!(
        text.contains(&format!(
            "cannot create container {CONTAINER} in storage account {}: Storage answered 409 ContainerDisabled: The specified container has been disabled by the administrator.",
            defaults::STORAGE_ACCOUNT
        )),
        "{text}"
    );
    assert!(!text.contains("RequestId:"), "{text}");
    assert_eq!(container_creations(&proxy), [409], "not tried again");

    let text = format!("{:#}", store.ensure_container().await.unwrap_err());
    assert!(
        text.contains(
            "Storage answered 403 AuthorizationPermissionMismatch: This request is not authorized"
        ),
        "{text}"
    );
    assert_eq!(container_creations(&proxy), [409, 403]);
}

fn is_commit(method: &str, query: &str) -> bool {
    method == "PUT" && query.contains("comp=blocklist")
}

/// A blob of another run under the same name is never overwritten, nor deleted: the upload
/// says the name is taken and leaves it as it was.
#[tokio::test]
async fn an_upload_never_overwrites_another_run_s_blob() {
    let Some((stack, _proxy)) = behind_proxy(Box::new(|_, _, _| None)).await else {
        return;
    };
    let (_signed, store) = store_behind(&stack).await;
    store.ensure_container().await.unwrap();
    let console = Arc::clone(&_signed.console);
    let (_first, theirs) = sample_package("webapp");
    let name = "webapp/4711-1/webapp_1764219600000_0000000000.zip";
    let settings = aib_task::upload::UploadSettings::default();
    let first = aib_task::upload::upload_archive(&store, theirs, name, &settings, &console)
        .await
        .expect("the other run's upload");
    // Another job's build path, with other contents, under the very same name.
    let (_second, ours) = sample_package("webapp");
    std::fs::write(ours.join("other.txt"), "another job").unwrap();
    let err = aib_task::upload::upload_archive(&store, ours, name, &settings, &console)
        .await
        .expect_err("the name is taken");
    assert!(
        err.downcast_ref::<aib_task::upload::BlobTaken>().is_some(),
        "{err:#}"
    );
    // The first blob is whole and unchanged.
    let signed = sign_in(&stack.emulator);
    let sas = store.read_sas(name, 60).await.unwrap();
    let url = format!("{}?{}", store.blob_url(name), sas.query);
    let bytes = signed
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.len() as u64, first.bytes);
    use sha2::Digest as _;
    assert_eq!(
        sha2::Sha256::digest(&bytes).as_slice(),
        first.sha256.as_slice()
    );
}

/// A commit that took effect but whose answer was lost is retried by the SDK; the retry meets
/// `If-None-Match: *` and the task recognises its own blob by the upload's token.
#[tokio::test]
async fn a_commit_whose_answer_was_lost_is_recognised_as_the_task_s_own() {
    let rule: InjectRule = Box::new(|method, query, _| {
        static FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
        (is_commit(method, query) && FIRST.swap(false, std::sync::atomic::Ordering::SeqCst))
            .then(|| Injected::status(StatusCode::SERVICE_UNAVAILABLE).after_forwarding())
    });
    let Some((stack, proxy)) = behind_injecting_proxy(rule).await else {
        return;
    };
    let (signed, store) = store_behind(&stack).await;
    store.ensure_container().await.unwrap();
    let (_tree, root) = sample_package("webapp");
    let name = "webapp/4711-1/webapp_1764219600000_1111111111.zip";
    let uploaded = aib_task::upload::upload_archive(
        &store,
        root,
        name,
        &aib_task::upload::UploadSettings::default(),
        &signed.console,
    )
    .await
    .expect("the lost answer is recognised");
    let commits: Vec<u16> = proxy
        .seen()
        .into_iter()
        .filter(|(m, q, _)| is_commit(m, q))
        .map(|(_, _, s)| s)
        .collect();
    assert_eq!(commits[0], 503, "{commits:?}");
    assert!(
        commits[1..].iter().any(|s| *s == 409 || *s == 412),
        "the retry met the blob the first commit made: {commits:?}"
    );
    let metadata = store.blob_metadata(name).await.unwrap().expect("the blob");
    assert!(metadata.contains_key(aib_task::upload::UPLOAD_TOKEN_METADATA));
    assert!(uploaded.bytes > 0);
}
