//! Outside a pipeline (no `ibSubscription`): a service principal from the AZURE_* variables
//! (secret, certificate file, federated token file), else the Azure CLI's login (a stand-in
//! `az` on PATH); `--subscription` and `--resource-manager-url` name the subscription and cloud.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aib_emulator::ca::CertificateAuthority;
use aib_emulator::{Config, Emulator, defaults};
use aib_task::auth::LocalOptions;
use common::identity::*;
use common::*;

/// The variables of a developer's shell pointed at the emulator.
fn shell(emulator: &Emulator) -> Vars {
    BTreeMap::from([
        (
            "AZURE_AUTHORITY_HOST".to_owned(),
            emulator.base_url().to_string(),
        ),
        (
            "SSL_CERT_FILE".to_owned(),
            emulator.ca_pem_path().display().to_string(),
        ),
    ])
}

fn service_principal(emulator: &Emulator) -> Vars {
    let mut vars = shell(emulator);
    vars.insert("AZURE_TENANT_ID".into(), defaults::TENANT_ID.into());
    vars.insert("AZURE_CLIENT_ID".into(), defaults::CLIENT_ID.into());
    vars
}

fn options(emulator: &Emulator) -> LocalOptions {
    LocalOptions {
        subscription: Some(defaults::SUBSCRIPTION_ID.into()),
        resource_manager_url: Some(emulator.base_url().to_string()),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_binary_signs_in_with_azure_client_secret() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let mut vars = service_principal(&emulator);
    vars.insert("AZURE_CLIENT_SECRET".into(), defaults::CLIENT_SECRET.into());
    vars.insert(
        "AZURE_SUBSCRIPTION_ID".into(),
        defaults::SUBSCRIPTION_ID.into(),
    );
    let base = emulator.base_url().to_string();
    let (output, out) = run_task_async(&["sign-in", "--resource-manager-url", &base], vars).await;
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains(
            "through environment variables (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)"
        ),
        "{out}"
    );
    assert!(
        out.contains(&format!("(subscription {})", defaults::SUBSCRIPTION_ID)),
        "{out}"
    );
    assert!(out.contains("is reachable"), "{out}");
    // A terminal: nothing is announced (there is no agent), and nothing secret is printed.
    assert_terminal_output_clean(&out, &[defaults::CLIENT_SECRET]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_certificate_file_signs_in() {
    let ca = CertificateAuthority::generate().unwrap();
    let (pem, cert) = rsa_certificate(&ca);
    let emulator = emulator_with_certificates(ca, vec![cert]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sp.pem");
    std::fs::write(&path, &pem).unwrap();
    let mut vars = service_principal(&emulator);
    vars.insert(
        "AZURE_CLIENT_CERTIFICATE_PATH".into(),
        path.display().to_string(),
    );
    let task = sign_in_with(&vars, options(&emulator)).await.unwrap();
    assert!(
        task.signed.source.contains("AZURE_CLIENT_CERTIFICATE_PATH"),
        "{}",
        task.signed.source
    );
    task.list_storage_accounts().await.unwrap();
    assert_no_secrets_nor_key(&task.text(), &pem, &[]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_federated_token_file_is_read_for_every_exchange() {
    let emulator = Emulator::start(Config {
        token_lifetime: Duration::from_secs(2),
        ..Config::default()
    })
    .await
    .unwrap();
    // A token from the emulator's Azure DevOps issuer, as a Kubernetes projection would hold.
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(emulator.ca_pem_path()).unwrap(),
        )
        .unwrap()])
        .build()
        .unwrap();
    let mut url = emulator.oidc_request_uri(PLAN_ID, JOB_ID);
    url.query_pairs_mut()
        .append_pair("api-version", "7.1")
        .append_pair("serviceConnectionId", defaults::SERVICE_CONNECTION_ID);
    let answer: serde_json::Value = http
        .post(url)
        .bearer_auth(defaults::JOB_ACCESS_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let federated = answer["oidcToken"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{federated}\n")).unwrap();

    let mut vars = service_principal(&emulator);
    vars.insert(
        "AZURE_FEDERATED_TOKEN_FILE".into(),
        path.display().to_string(),
    );
    let task = sign_in_with(&vars, options(&emulator)).await.unwrap();
    task.list_storage_accounts().await.unwrap();
    // The file disappears: the next exchange reads it again and says which file it wanted.
    std::fs::remove_file(&path).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let err = task.list_storage_accounts().await.unwrap_err();
    assert!(
        format!("{err:#}").contains("AZURE_FEDERATED_TOKEN_FILE"),
        "{err:#}"
    );
    assert_no_secrets(&task.text(), &[&federated]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_secret_without_the_principal_names_what_is_missing() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let mut vars = shell(&emulator);
    vars.insert("AZURE_CLIENT_SECRET".into(), defaults::CLIENT_SECRET.into());
    vars.insert("AZURE_CLIENT_ID".into(), defaults::CLIENT_ID.into());
    let Err(err) = sign_in_with(&vars, options(&emulator)).await else {
        panic!("a secret without a tenant must be refused");
    };
    let text = format!("{err:#}");
    assert!(text.contains("AZURE_TENANT_ID"), "{text}");
    assert!(!text.contains("AZURE_CLIENT_ID and"), "{text}");
    emulator.shutdown().await;
}

#[cfg(unix)]
#[tokio::test]
async fn without_variables_the_azure_cli_login_is_used() {
    use std::os::unix::fs::PermissionsExt;
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let token = emulator.mint_access_token(emulator.base_url().as_str(), 3600);
    let expires_on = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let dir = tempfile::tempdir().unwrap();
    let args_file = dir.path().join("az-args");
    let script = format!(
        "#!/bin/sh\necho \"$@\" > '{}'\nprintf '%s' '{{\"accessToken\":\"{token}\",\"expires_on\":{expires_on},\"tokenType\":\"Bearer\"}}'\n",
        args_file.display()
    );
    let az = dir.path().join("az");
    std::fs::write(&az, script).unwrap();
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut vars = shell(&emulator);
    vars.insert(
        "PATH".into(),
        format!("{}:/usr/bin:/bin", dir.path().display()),
    );
    let base = emulator.base_url().to_string();
    let (output, out) = run_task_async(
        &[
            "sign-in",
            "--resource-manager-url",
            &base,
            "--subscription",
            defaults::SUBSCRIPTION_ID,
        ],
        vars,
    )
    .await;
    assert!(
        output.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains("through the Azure CLI"), "{out}");
    assert!(out.contains("is reachable"), "{out}");
    let args = std::fs::read_to_string(&args_file).unwrap();
    assert!(args.contains("account get-access-token"), "{args}");
    assert!(
        args.contains(&format!("--subscription {}", defaults::SUBSCRIPTION_ID)),
        "{args}"
    );
    assert_terminal_output_clean(&out, &[&token]);
    emulator.shutdown().await;
}
