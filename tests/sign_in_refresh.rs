//! Tokens that outlive a long build: with the emulator issuing tokens of a few seconds, a run of
//! ARM calls spanning several lifetimes succeeds, renews the token more than once and never
//! presents an expired one; ARM and storage tokens are cached apart; a renewal that fails is
//! retried and then reported.

mod common;

use std::time::{Duration, Instant};

use aib_emulator::{Config, Emulator, Fault, defaults};
use aib_task::auth::LocalOptions;
use azure_core::credentials::TokenCredential;
use common::identity::*;
use common::*;

const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

fn short_lived(seconds: u64) -> Config {
    Config {
        token_lifetime: Duration::from_secs(seconds),
        ..Config::default()
    }
}

#[tokio::test]
async fn a_build_longer_than_the_token_lifetime_keeps_working() {
    let emulator = Emulator::start(short_lived(3)).await.unwrap();
    let vars = client_secret_connection(&emulator, defaults::CLIENT_SECRET);
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < Duration::from_secs(8) {
        task.list_storage_accounts().await.unwrap();
        calls += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let issued = token_requests(&emulator).len();
    assert!(issued >= 3, "{issued} tokens for {calls} calls over 8 s");
    assert!(issued < calls, "tokens are cached between renewals");
    // ARM never saw an expired (or any refused) token.
    let refused: Vec<_> = emulator
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/subscriptions/") && r.status != 200)
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
    assert_no_secrets(&task.text(), &[defaults::CLIENT_SECRET]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn arm_and_storage_tokens_are_cached_apart() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let vars = client_secret_connection(&emulator, defaults::CLIENT_SECRET);
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    let tokens = &task.signed.tokens;
    let arm = task.arm_token().await.unwrap();
    let storage = tokens
        .get_token(&[STORAGE_SCOPE], None)
        .await
        .unwrap()
        .token;
    assert_ne!(arm.secret(), storage.secret());
    assert_eq!(
        jwt_claims(storage.secret())["aud"],
        "https://storage.azure.com"
    );
    // Both served from the cache afterwards.
    task.arm_token().await.unwrap();
    tokens.get_token(&[STORAGE_SCOPE], None).await.unwrap();
    assert_eq!(token_requests(&emulator).len(), 2);
    assert_no_secrets(
        &task.text(),
        &[defaults::CLIENT_SECRET, arm.secret(), storage.secret()],
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_failing_renewal_is_retried_then_reported() {
    let emulator = Emulator::start(short_lived(2)).await.unwrap();
    let vars = client_secret_connection(&emulator, defaults::CLIENT_SECRET);
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    task.list_storage_accounts().await.unwrap();

    // Entra fails once: the renewal is retried and the build carries on.
    emulator.add_fault(Fault::status("POST", "/oauth2/v2.0/token$", 503));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    task.list_storage_accounts().await.unwrap();
    let statuses: Vec<u16> = token_requests(&emulator).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 503, 200]);

    // Entra keeps failing: reported as a renewal failure with its cause.
    emulator.add_fault(Fault::status("POST", "/oauth2/v2.0/token$", 503).times(10));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = task.list_storage_accounts().await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("renewing the token as service principal"),
        "{text}"
    );
    assert!(text.contains("failed 4 times"), "{text}");
    assert!(text.contains("503"), "{text}");
    assert_no_secrets(&task.text(), &[defaults::CLIENT_SECRET]);
    emulator.shutdown().await;
}
