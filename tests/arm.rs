//! The ARM client against the emulator: paging, retries that honour `Retry-After`, 5xx and
//! dropped connections, the bound on retries, and following a long-running operation.

mod common;

use std::time::{Duration, Instant};

use aib_emulator::{Config, Emulator, Fault, defaults};
use common::*;
use serde_json::{Value, json};

const STORAGE_API: &str = "2023-05-01";

fn accounts_path() -> String {
    format!(
        "/subscriptions/{}/providers/Microsoft.Storage/storageAccounts",
        defaults::SUBSCRIPTION_ID
    )
}

/// The statuses of the storage account list requests the emulator answered, in order.
fn list_statuses(emulator: &Emulator) -> Vec<u16> {
    emulator
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/storageAccounts"))
        .map(|r| r.status)
        .collect()
}

async fn list_names(signed: &SignedIn) -> anyhow::Result<Vec<String>> {
    let accounts: Vec<Value> = signed
        .arm
        .list("listing storage accounts", &accounts_path(), STORAGE_API)
        .await?;
    Ok(accounts
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect())
}

#[tokio::test]
async fn lists_follow_next_link() {
    let config = Config {
        storage_page_size: 1,
        ..Config::default()
    };
    let emulator = Emulator::start(config).await.unwrap();
    let signed = sign_in(&emulator);
    let names = list_names(&signed).await.unwrap();
    assert!(
        names.contains(&defaults::STORAGE_ACCOUNT.to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&defaults::NO_KEY_STORAGE_ACCOUNT.to_owned()),
        "{names:?}"
    );
    let pages = list_statuses(&emulator).len();
    assert_eq!(pages, names.len(), "one page per account");
}

#[tokio::test]
async fn throttling_is_honoured_and_transient_failures_retried() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let signed = sign_in(&emulator);
    emulator.add_fault(Fault::throttle("GET", "/storageAccounts$", 1));
    emulator.add_fault(Fault::status("GET", "/storageAccounts$", 503).times(2));
    emulator.add_fault(Fault::drop_connection("GET", "/storageAccounts$"));
    let started = Instant::now();
    let names = list_names(&signed).await.unwrap();
    assert!(!names.is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    let statuses = list_statuses(&emulator);
    assert_eq!(&statuses[..3], [429, 503, 503], "{statuses:?}");
    assert_eq!(*statuses.last().unwrap(), 200);
    let output = signed.output.text();
    assert!(
        output.contains(
            "listing storage accounts: 429 TooManyRequests; trying again in 1.0 s (attempt 2 of 6)"
        ),
        "{output}"
    );
    assert!(output.contains("503"), "{output}");
}

#[tokio::test]
async fn retries_are_bounded_and_the_error_says_what_azure_said() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let signed = sign_in(&emulator);
    emulator.add_fault(Fault::status("GET", "/storageAccounts$", 500).times(100));
    let err = list_names(&signed).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.starts_with("listing storage accounts failed: 500 InternalServerError: "),
        "{text}"
    );
    assert!(text.contains("x-ms-request-id"), "{text}");
    let attempts = list_statuses(&emulator).len();
    assert_eq!(attempts, 6);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let signed = sign_in(&emulator);
    let err = signed
        .arm
        .get::<Value>(
            "reading the resource group",
            &format!(
                "/subscriptions/{}/resourceGroups/no-such-group",
                defaults::SUBSCRIPTION_ID
            ),
            "2021-04-01",
        )
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("404 ResourceGroupNotFound"),
        "{err:#}"
    );
    assert_eq!(
        emulator
            .requests()
            .iter()
            .filter(|r| r.path.contains("no-such-group"))
            .count(),
        1
    );
}

fn template_path(name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}",
        defaults::SUBSCRIPTION_ID,
        defaults::RESOURCE_GROUP
    )
}

/// Starts creating a small valid template; the answer names the operation to follow.
async fn start_creating(signed: &SignedIn, name: &str) -> aib_task::arm::ArmResponse {
    let body = json!({
        "location": defaults::LOCATION,
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {defaults::MANAGED_IDENTITY_RESOURCE_ID: {}}},
        "properties": {
            "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2", "version": "latest"},
            "customize": [{"type": "Shell", "name": "hello", "inline": ["echo hello"]}],
            "distribute": [{"type": "VHD", "runOutputName": "VHD_distribute"}]
        }
    });
    let url = signed.arm.url(&template_path(name), "2024-02-01").unwrap();
    signed
        .arm
        .send(
            "creating the template",
            reqwest::Method::PUT,
            url,
            Some(&body),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn long_running_operations_are_followed_to_the_end() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let signed = sign_in(&emulator);
    let path = template_path("t_arm_test");
    let started = start_creating(&signed, "t_arm_test").await;
    assert!(started.operation_url().is_some(), "the PUT is long-running");
    let status = signed
        .arm
        .wait("creating the template", &started, None)
        .await
        .unwrap();
    assert!(status.succeeded(), "{status:?}");
    let template: Value = signed
        .arm
        .get("reading the template", &path, "2024-02-01")
        .await
        .unwrap();
    assert_eq!(template["properties"]["provisioningState"], "Succeeded");

    let url = signed.arm.url(&path, "2024-02-01").unwrap();
    let deleting = signed
        .arm
        .send("deleting the template", reqwest::Method::DELETE, url, None)
        .await
        .unwrap();
    let status = signed
        .arm
        .wait("deleting the template", &deleting, None)
        .await
        .unwrap();
    assert!(status.succeeded());
    assert!(
        emulator
            .template(
                defaults::SUBSCRIPTION_ID,
                defaults::RESOURCE_GROUP,
                "t_arm_test"
            )
            .is_none()
    );
}

#[tokio::test]
async fn waiting_stops_at_the_deadline() {
    let mut config = Config::default();
    config.timing.lro = Duration::from_secs(30);
    let emulator = Emulator::start(config).await.unwrap();
    let signed = sign_in(&emulator);
    let started = start_creating(&signed, "t_slow").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let err = signed
        .arm
        .wait("creating the template", &started, Some(deadline))
        .await
        .unwrap_err();
    assert!(format!("{err}").contains("still running when the time allowed for it ran out"));
}
