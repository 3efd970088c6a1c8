//! A pipeline as the agent runs the task against the emulator and Azurite: the variables of a
//! Linux marketplace build to a managed image, a sample build path, and readers for what the task
//! printed (logging commands, output variables) and left behind (ARM writes, blobs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aib_emulator::defaults;
use aib_task::agent::command::{ParsedCommand, decode};

use super::*;

pub const RG: &str = defaults::RESOURCE_GROUP;

pub fn rid(rest: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{RG}/providers/{rest}",
        defaults::SUBSCRIPTION_ID
    )
}

pub fn sample_artifacts(root: &Path) {
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(
        root.join("scripts/install.sh"),
        "#!/bin/sh\necho installing webapp\n",
    )
    .unwrap();
    std::fs::write(root.join("app.conf"), "listen=8080\n".repeat(100)).unwrap();
}

/// The variables the agent would set for a Linux marketplace build to a managed image.
pub fn pipeline(stack: &Stack, package: &Path, temp: &Path) -> BTreeMap<String, String> {
    let mut vars = spn_secret_connection(&stack.emulator, defaults::CLIENT_SECRET);
    let inputs = [
        ("IBAZURERESOURCEGROUP", RG.to_owned()),
        ("IBLOCATION", defaults::LOCATION.to_owned()),
        (
            "MANAGEDIDENTITY",
            defaults::MANAGED_IDENTITY_RESOURCE_ID.to_owned(),
        ),
        ("IMAGESOURCE", "marketplace".to_owned()),
        (
            "BASEIMAGE",
            "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2".to_owned(),
        ),
        ("BASEIMAGEPUBOFFERSKU", "Publisher:Offer:Sku".to_owned()),
        ("BASEIMAGEVERSION", "latest".to_owned()),
        ("PROVISIONER", "shell".to_owned()),
        ("WINDOWSUPDATEPROVISIONER", "false".to_owned()),
        ("PACKAGEPATH", package.display().to_string()),
        (
            "INLINESCRIPT",
            "sudo mkdir -p /opt/webapp\nsudo cp -r /tmp/webapp/* /opt/webapp/".to_owned(),
        ),
        ("STORAGEACCOUNTNAME", defaults::STORAGE_ACCOUNT.to_owned()),
        ("DISTRIBUTETYPE", "managedimage".to_owned()),
        (
            "IMAGEIDFORDISTRIBUTE",
            rid("Microsoft.Compute/images/webapp-image"),
        ),
        ("MANAGEDIMAGELOCATION", defaults::LOCATION.to_owned()),
        ("VMSIZE", String::new()),
    ];
    for (name, value) in inputs {
        vars.insert(format!("INPUT_{name}"), value);
    }
    for (name, value) in [
        (
            "SSL_CERT_FILE",
            stack.emulator.ca_pem_path().display().to_string(),
        ),
        ("AGENT_TEMPDIRECTORY", temp.display().to_string()),
        ("SYSTEM_DEFAULTWORKINGDIRECTORY", temp.display().to_string()),
        ("BUILD_BUILDID", "4711".to_owned()),
        ("SYSTEM_JOBATTEMPT", "1".to_owned()),
        (
            "SYSTEM_COLLECTIONURI",
            "https://dev.azure.com/aib-test-org/".to_owned(),
        ),
        ("SYSTEM_TEAMPROJECT", defaults::DEVOPS_PROJECT.to_owned()),
        ("BUILD_REPOSITORY_NAME", "webapp".to_owned()),
        (
            "BUILD_SOURCEVERSION",
            "0123456789abcdef0123456789abcdef01234567".to_owned(),
        ),
        ("AIB_POLL_INTERVAL", "0.2".to_owned()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ] {
        vars.insert(name.to_owned(), value);
    }
    vars
}

pub fn commands(out: &str) -> Vec<ParsedCommand> {
    out.lines().filter_map(decode).collect()
}

pub fn output_variables(out: &str) -> BTreeMap<String, String> {
    commands(out)
        .into_iter()
        .filter(|c| c.action == "setvariable")
        .map(|c| (c.property("variable").unwrap().to_owned(), c.message))
        .collect()
}

pub fn writes(stack: &Stack) -> Vec<String> {
    stack
        .emulator
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && !r.path.ends_with("/oauth2/v2.0/token"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The blobs (committed or not) left in the artifact container.
pub async fn blobs_in_container(stack: &Stack) -> Vec<String> {
    stack
        .artifact_container_listing()
        .await
        .expect("the artifact container exists")
}

/// Checks that everything announced as a secret is printed nowhere else; returns the secrets.
pub fn assert_announced_secrets_not_printed(out: &str) -> Vec<String> {
    let secrets: Vec<String> = commands(out)
        .into_iter()
        .filter(|c| c.action == "setsecret")
        .map(|c| c.message)
        .collect();
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_no_secret_leaks(out, &refs);
    secrets
}

/// A build path holding the sample artifacts, `webapp` in a new temporary folder that also
/// serves as the agent's temp and working directory.
pub fn sample_package() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let package = temp.path().join("webapp");
    sample_artifacts(&package);
    (temp, package)
}

/// Reads a blob as its account's owner would (a read SAS signed with the account key): status
/// and body.
pub async fn read_blob(stack: &Stack, url: &str, key: &str) -> (u16, Vec<u8>) {
    let parsed = url::Url::parse(url).unwrap();
    let at = aib_task::blob_url::blob_location(&parsed).expect("a blob URL");
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let start = (now - time::Duration::minutes(5))
        .replace_nanosecond(0)
        .unwrap()
        .format(fmt)
        .unwrap();
    let expiry = (now + time::Duration::hours(1))
        .replace_nanosecond(0)
        .unwrap()
        .format(fmt)
        .unwrap();
    let sas = aib_emulator::shared_key::BlobSas {
        account: &at.account,
        key_b64: key,
        container: &at.container,
        blob: &at.blob,
        permissions: "r",
        start: &start,
        expiry: &expiry,
        https_only: true,
    }
    .sign()
    .unwrap();
    let response = stack
        .anonymous_client()
        .get(format!("{url}?{sas}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

/// How often each template event (`created`, `run`, `deleted`, …) happened.
pub fn event_count(stack: &Stack, event: &str) -> usize {
    stack
        .emulator
        .template_events()
        .iter()
        .filter(|e| e.event == event)
        .count()
}

/// Waits (up to 10 s) until no template is left in the emulator.
pub async fn until_no_template_left(stack: &Stack) {
    let started = std::time::Instant::now();
    while !stack.emulator.templates().is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "templates left: {:?}",
            stack
                .emulator
                .templates()
                .iter()
                .map(|(n, _)| n)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The message of the task's `task.complete` line, if it failed.
pub fn failure_message(out: &str) -> Option<String> {
    commands(out)
        .into_iter()
        .rfind(|c| c.action == "complete" && c.property("result") == Some("Failed"))
        .map(|c| c.message)
}

/// One run of the sample build through a stack of its own.
pub struct SampleBuild {
    pub stack: Stack,
    /// The agent's temporary folder, holding the build path; removed on drop.
    pub temp: tempfile::TempDir,
    pub output: std::process::Output,
    /// What the task printed.
    pub out: String,
}

/// Starts a stack with `config` and runs the sample build ([`pipeline`] over
/// [`sample_package`]) as the agent would, after `change` has adapted the build path and the
/// variables; `None` when the stack cannot start here (it says why).
pub async fn sample_build(
    config: aib_emulator::Config,
    change: impl FnOnce(&Stack, &Path, &mut BTreeMap<String, String>),
) -> Option<SampleBuild> {
    let stack = start_stack(config).await?;
    let (temp, package) = sample_package();
    let mut vars = pipeline(&stack, &package, temp.path());
    change(&stack, &package, &mut vars);
    let (output, out) = run_task_async(&[], vars).await;
    Some(SampleBuild {
        stack,
        temp,
        output,
        out,
    })
}

/// The body of the first template PUT the emulator received.
pub fn template_sent(stack: &Stack) -> serde_json::Value {
    stack
        .emulator
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT" && r.path.contains("/imageTemplates/"))
        .and_then(|r| r.body)
        .expect("a template PUT with a JSON body")
}
