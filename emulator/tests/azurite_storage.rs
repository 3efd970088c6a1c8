//! The emulator together with Azurite (HTTPS with a certificate from the emulator's CA, `--oauth
//! basic`): Azurite accepts the emulator's storage tokens; builds download artifacts through a SAS
//! (signed with the emulator's `shared_key::BlobSas`, checked by Azurite) and fail on a bad
//! checksum, a corrupt zip or a refused URL; a failed build leaves a customization.log readable
//! through the staging account's listKeys.
//! Each test skips with a message when Azurite is not installed (`npm ci` at the repo root).

mod common;

use std::time::Duration;

use aib_emulator::{Config, azurite, defaults, shared_key};
use common::{Env, async_operation, fast_config, make_zip, template_body};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A read-only, HTTPS-only blob service SAS valid from five minutes ago for an hour.
fn read_sas(account: &str, key: &str, container: &str, blob: &str) -> String {
    let fmt = time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let st = (now - time::Duration::minutes(5)).format(&fmt).unwrap();
    let se = (now + time::Duration::hours(1)).format(&fmt).unwrap();
    shared_key::BlobSas {
        account,
        key_b64: key,
        container,
        blob,
        permissions: "r",
        start: &st,
        expiry: &se,
        https_only: true,
    }
    .sign()
    .unwrap()
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn azurite_accepts_emulator_storage_tokens() {
    let Some(env) = Env::start_with_azurite(Config::default()).await else {
        return;
    };
    let azurite = env.azurite.as_ref().unwrap();
    let token = env.secret_token("https://storage.azure.com/.default").await;
    for account in [azurite::DEV_ACCOUNT, defaults::STORAGE_ACCOUNT] {
        let url = format!(
            "{}oauthcontainer?restype=container",
            azurite.blob_endpoint(account)
        );
        let r = env
            .client
            .put(&url)
            .bearer_auth(&token)
            .header("x-ms-version", shared_key::STORAGE_VERSION)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{account}: {}", r.text().await.unwrap());
    }
    // A user delegation key (for accounts without shared-key access) can be had with the token.
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap();
    let fmt = time::format_description::well_known::Rfc3339;
    let key_info = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>{}</Start><Expiry>{}</Expiry></KeyInfo>",
        now.format(&fmt).unwrap(),
        (now + time::Duration::hours(1)).format(&fmt).unwrap()
    );
    let r = env
        .client
        .post(format!(
            "{}?restype=service&comp=userdelegationkey",
            azurite.blob_endpoint(defaults::NO_KEY_STORAGE_ACCOUNT)
        ))
        .bearer_auth(&token)
        .header("x-ms-version", shared_key::STORAGE_VERSION)
        .body(key_info)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let xml = r.text().await.unwrap();
    assert!(
        xml.contains("<SignedOid>") && xml.contains("<Value>"),
        "{xml}"
    );

    // Azurite does check the audience: an ARM token is refused.
    let arm = env.arm_token();
    let url = format!(
        "{}othercontainer?restype=container",
        azurite.blob_endpoint(azurite::DEV_ACCOUNT)
    );
    let r = env
        .client
        .put(&url)
        .bearer_auth(arm)
        .header("x-ms-version", shared_key::STORAGE_VERSION)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
}

async fn run_to_end(env: &Env, name: &str, customize: Value) -> (Value, Value) {
    let body = template_body(
        customize,
        json!([{"type": "ManagedImage", "runOutputName": "ManagedImage_distribute", "location": "westus2",
        "imageId": format!("/subscriptions/{}/resourceGroups/aib-test-rg/providers/Microsoft.Compute/images/{name}", defaults::SUBSCRIPTION_ID)}]),
    );
    env.create_template(name, &body).await;
    let op = env.run_template(name).await;
    (op, env.template(name).await)
}

#[tokio::test]
async fn builds_download_and_verify_artifacts() {
    let Some(env) = Env::start_with_azurite(fast_config()).await else {
        return;
    };
    let (acct, key) = (defaults::STORAGE_ACCOUNT, defaults::STORAGE_ACCOUNT_KEY);
    let endpoint = env.azurite.as_ref().unwrap().blob_endpoint(acct);
    let zip = make_zip(&[
        ("app/run.sh", b"#!/bin/sh\necho hi\n"),
        ("app/data.txt", &[7u8; 5000]),
    ]);
    let sha = hex_sha256(&zip);
    env.put_blob(
        acct,
        key,
        "imagebuilder-vststask",
        "app/1-1/app_1.zip",
        zip.clone(),
    )
    .await;
    let mut corrupt = zip.clone();
    let pos = corrupt.windows(4).position(|w| w == [7, 7, 7, 7]).unwrap();
    corrupt[pos] = 8;
    env.put_blob(
        acct,
        key,
        "imagebuilder-vststask",
        "app/1-1/corrupt.zip",
        corrupt.clone(),
    )
    .await;

    let sas_url = |blob: &str| {
        format!(
            "{endpoint}imagebuilder-vststask/{blob}?{}",
            read_sas(acct, key, "imagebuilder-vststask", blob)
        )
    };
    let good = sas_url("app/1-1/app_1.zip");

    // File customizer with checksum, plus an inline download verified in-script.
    let (op, t) = run_to_end(
        &env,
        "t_download_ok",
        json!([
            {"type": "File", "name": "upload", "sourceUri": good, "destination": "/tmp/app.zip", "sha256Checksum": sha},
            {"type": "Shell", "name": "extract", "inline": [
                format!("curl -fsSL -o /var/lib/app.zip '{good}'"),
                format!("echo '{sha}  /var/lib/app.zip' | sha256sum -c -"),
                "python3 -c \"import zipfile; zipfile.ZipFile('/var/lib/app.zip').extractall('/opt/app')\"".to_string(),
            ]}
        ]),
    )
    .await;
    assert_eq!(op["status"], "Succeeded", "{t}");
    // A successful build leaves its log too.
    let staging = env
        .azurite
        .as_ref()
        .unwrap()
        .blob_endpoint(defaults::STAGING_STORAGE_ACCOUNT);
    let list = staging
        .join("packerlogs?restype=container&comp=list")
        .unwrap();
    let r = env
        .shared_key_get(
            defaults::STAGING_STORAGE_ACCOUNT,
            defaults::STAGING_STORAGE_ACCOUNT_KEY,
            list,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text()
            .await
            .unwrap()
            .matches("/customization.log</Name>")
            .count(),
        1
    );

    let downloads = env.emulator.downloads();
    assert_eq!(downloads.len(), 2);
    for d in &downloads {
        assert_eq!(
            d.url,
            format!("{endpoint}imagebuilder-vststask/app/1-1/app_1.zip")
        );
        assert_eq!(d.sha256, sha);
        assert_eq!(d.size, zip.len() as u64);
        assert_eq!(d.entries, ["app/run.sh", "app/data.txt"]);
        assert!(d.error.is_none());
    }

    let cases = [
        (
            "t_bad_sha",
            json!([{"type": "File", "name": "upload", "sourceUri": good, "destination": "/tmp/a.zip", "sha256Checksum": "0".repeat(64)}]),
            "sha256 checksum mismatch",
        ),
        (
            "t_bad_inline_sha",
            json!([{"type": "Shell", "name": "extract", "inline": [format!("curl -o /tmp/a.zip \"{good}\""), format!("echo '{}  /tmp/a.zip' | sha256sum -c -", "1".repeat(64))]}]),
            "sha256 checksum mismatch",
        ),
        (
            "t_corrupt",
            json!([{"type": "File", "name": "upload", "sourceUri": sas_url("app/1-1/corrupt.zip"), "destination": "/tmp/a.zip"}]),
            "zip: invalid archive",
        ),
        (
            "t_forbidden",
            json!([{"type": "File", "name": "upload", "sourceUri": good.replace("sig=", "sig=AAAA"), "destination": "/tmp/a.zip"}]),
            "403",
        ),
    ];
    for (name, customize, expected) in cases {
        let (op, t) = run_to_end(&env, name, customize).await;
        assert_eq!(op["status"], "Failed", "{name}");
        let message = t["properties"]["lastRunStatus"]["message"]
            .as_str()
            .unwrap();
        assert_eq!(t["properties"]["lastRunStatus"]["runState"], "Failed");
        assert!(message.contains(expected), "{name}: {message}");
        assert!(message.contains("Customizer "), "{message}");
        assert!(
            !message.contains("sig="),
            "the SAS stays out of the message: {message}"
        );
    }
    let failed: Vec<_> = env
        .emulator
        .downloads()
        .into_iter()
        .filter(|d| d.error.is_some())
        .collect();
    assert_eq!(failed.len(), 4);
    assert!(
        failed[3]
            .error
            .as_deref()
            .unwrap()
            .contains("failed to download")
    );
}

#[tokio::test]
async fn failed_build_log_is_readable_through_the_staging_account() {
    let Some(env) = Env::start_with_azurite(fast_config()).await else {
        return;
    };
    let mut body = template_body(
        json!([{"type": "Shell", "name": "user-script", "inline": ["echo building my-special-app", "exit 1"]}]),
        json!([{"type": "VHD", "runOutputName": "VHD_distribute"}]),
    );
    body["tags"][defaults::FAIL_AT_TAG] = json!("Customizing");
    let name = "t_fails";
    env.create_template(name, &body).await;
    let op = env.run_template(name).await;
    assert_eq!(op["status"], "Failed");
    let t = env.template(name).await;
    let run = &t["properties"]["lastRunStatus"];
    assert_eq!(run["runState"], "Failed");
    assert_eq!(run["runSubState"], "Customizing");
    let message = run["message"].as_str().unwrap();
    let log_url = message
        .split("Image Build log location: ")
        .nth(1)
        .unwrap()
        .split(". OperationId")
        .next()
        .unwrap();
    let staging_endpoint = env
        .azurite
        .as_ref()
        .unwrap()
        .blob_endpoint(defaults::STAGING_STORAGE_ACCOUNT);
    assert!(
        log_url.starts_with(&format!("{staging_endpoint}packerlogs/"))
            && log_url.ends_with("/customization.log"),
        "{log_url}"
    );

    // As the task does: find the account in the staging group, list its keys, read the blob.
    let staging = t["properties"]["exactStagingResourceGroup"]
        .as_str()
        .unwrap();
    let (status, _, accounts) = env
        .arm(
            Method::GET,
            &format!(
                "{staging}/providers/Microsoft.Storage/storageAccounts?api-version=2023-05-01"
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let account = &accounts["value"][0];
    assert_eq!(account["name"], defaults::STAGING_STORAGE_ACCOUNT);
    assert_eq!(
        account["properties"]["primaryEndpoints"]["blob"],
        staging_endpoint.as_str()
    );
    let (status, _, keys) = env
        .arm(
            Method::POST,
            &format!(
                "{}/listKeys?api-version=2023-05-01",
                account["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let key = keys["keys"][0]["value"].as_str().unwrap();
    let url = url::Url::parse(log_url).unwrap();
    let r = env
        .shared_key_get(defaults::STAGING_STORAGE_ACCOUNT, key, url)
        .await;
    assert_eq!(r.status(), 200);
    let log = r.text().await.unwrap();
    assert!(log.lines().count() >= 200, "{} lines", log.lines().count());
    assert!(log.contains("[INFO] Packer version"));
    assert!(log.contains("==> azure-arm: Provisioning with shell script"));
    assert!(log.contains("echo building my-special-app"));
    assert!(log.contains("Builds finished but no artifacts were created."));

    // A successful build writes a log too; the staging group and its account go with the template.
    let (status, headers, _) = env
        .arm(Method::DELETE, &env.template_path(name), None)
        .await;
    assert_eq!(status, 202);
    env.wait_operation(&async_operation(&headers)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        env.arm(
            Method::GET,
            &format!(
                "{staging}/providers/Microsoft.Storage/storageAccounts?api-version=2023-05-01"
            ),
            None
        )
        .await
        .0,
        404
    );
}
