//! Managed identity against the emulator's plain-HTTP IMDS (`AIB_IMDS_ENDPOINT`): user-assigned
//! by the connection's client id and system-assigned, an ARM call with the token, 429 then 200,
//! and an identity the machine does not have.

mod common;

use aib_emulator::{Config, Emulator, Fault, defaults};
use aib_task::auth::LocalOptions;
use common::identity::*;
use common::*;

async fn emulator() -> Emulator {
    Emulator::start(Config {
        imds_http: true,
        ..Config::default()
    })
    .await
    .unwrap()
}

fn imds_requests(emulator: &Emulator) -> Vec<aib_emulator::RecordedRequest> {
    emulator
        .requests()
        .into_iter()
        .filter(|r| r.path == "/metadata/identity/oauth2/token")
        .collect()
}

#[tokio::test]
async fn user_assigned_identity_signs_in_and_calls_arm() {
    let emulator = emulator().await;
    let vars = managed_identity_connection(&emulator, Some(defaults::MANAGED_IDENTITY_CLIENT_ID));
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    assert_eq!(
        task.signed.tokens.identity(),
        format!(
            "managed identity (client id '{}')",
            defaults::MANAGED_IDENTITY_CLIENT_ID
        )
    );
    task.list_storage_accounts().await.unwrap();
    let token = task.arm_token().await.unwrap();
    assert_eq!(
        jwt_claims(token.secret())["appid"],
        defaults::MANAGED_IDENTITY_CLIENT_ID
    );
    let imds = imds_requests(&emulator);
    assert_eq!(imds.len(), 1);
    assert_eq!(imds[0].method, "GET");
    assert_eq!(
        imds[0].headers.get("metadata").map(String::as_str),
        Some("true")
    );
    assert!(
        imds[0].query.contains(&format!(
            "client_id={}",
            defaults::MANAGED_IDENTITY_CLIENT_ID
        )),
        "{}",
        imds[0].query
    );
    assert!(
        imds[0].query.contains("api-version=2018-02-01"),
        "{}",
        imds[0].query
    );
    assert_no_secrets(&task.text(), &[token.secret()]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn system_assigned_identity_sends_no_client_id() {
    let emulator = emulator().await;
    let vars = managed_identity_connection(&emulator, None);
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    assert_eq!(
        task.signed.tokens.identity(),
        "managed identity (system-assigned)"
    );
    task.list_storage_accounts().await.unwrap();
    assert!(!imds_requests(&emulator)[0].query.contains("client_id"));
    assert_no_secrets(&task.text(), &[]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn imds_throttling_is_retried() {
    let emulator = emulator().await;
    emulator.add_fault(Fault::throttle("GET", "/metadata/identity/oauth2/token", 1));
    let vars = managed_identity_connection(&emulator, Some(defaults::MANAGED_IDENTITY_CLIENT_ID));
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    task.list_storage_accounts().await.unwrap();
    let statuses: Vec<u16> = imds_requests(&emulator).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);
    let out = task.text();
    assert!(out.contains("(IMDS)") && out.contains("429"), "{out}");
    assert_no_secrets(&out, &[]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_identity_the_machine_lacks_is_explained() {
    let emulator = emulator().await;
    let vars = managed_identity_connection(&emulator, Some("00000000-0000-0000-0000-00000000beef"));
    let (output, out) = run_task_async(&["sign-in"], vars).await;
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("Identity not found"), "{out}");
    assert!(
        out.contains("00000000-0000-0000-0000-00000000beef") && out.contains("msiClientId"),
        "{out}"
    );
    assert_eq!(imds_requests(&emulator).len(), 1, "a 400 is not retried");
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_binary_signs_in_with_a_managed_identity() {
    let emulator = emulator().await;
    let vars = managed_identity_connection(&emulator, Some(defaults::MANAGED_IDENTITY_CLIENT_ID));
    let (output, out) = run_task_async(&["sign-in"], vars).await;
    assert!(output.status.success(), "{out}");
    assert!(out.contains("Signed in as managed identity"), "{out}");
    assert!(out.contains("is reachable"), "{out}");
    assert_no_secrets(&out, &[]);
    emulator.shutdown().await;
}
