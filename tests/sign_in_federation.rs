//! Workload identity federation against the emulator: the OIDC request exactly as Azure DevOps
//! expects it (checked in the emulator's log), a fresh OIDC token for every exchange, the URL
//! built from the job's variables when the agent gives none, retries when the OIDC endpoint
//! fails, a missing federated credential explained, and the binary as the agent runs it.

mod common;

use std::time::Duration;

use aib_emulator::{Config, Emulator, Fault, defaults};
use aib_task::auth::LocalOptions;
use common::identity::*;
use common::*;

#[tokio::test]
async fn federated_sign_in_asks_azure_devops_as_the_agent_would() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let vars = federation_connection(&emulator);
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    assert_eq!(
        task.signed.tokens.identity(),
        format!(
            "workload identity federation '{}' in tenant '{}'",
            defaults::CLIENT_ID,
            defaults::TENANT_ID
        )
    );
    let names = task.list_storage_accounts().await.unwrap();
    assert!(names.contains(&defaults::STORAGE_ACCOUNT.to_owned()));

    let oidc = oidc_requests(&emulator);
    assert_eq!(oidc.len(), 1, "{oidc:#?}");
    let request = &oidc[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.status, 200);
    assert_eq!(
        request.path,
        emulator.oidc_request_uri(PLAN_ID, JOB_ID).path()
    );
    assert_eq!(
        request.query,
        format!(
            "api-version=7.1&serviceConnectionId={}",
            defaults::SERVICE_CONNECTION_ID
        )
    );
    let header = |name: &str| request.headers.get(name).map(String::as_str);
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(header("x-tfs-fedauthredirect"), Some("Suppress"));
    assert!(
        header("authorization").is_some_and(|a| a.starts_with("Bearer ")),
        "{:?}",
        request.headers
    );

    let tokens = token_requests(&emulator);
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].status, 200);

    // The OIDC token was announced the moment it arrived, before any other use.
    let out = task.text();
    let announced = announced_secrets(&out);
    let oidc_token = announced
        .iter()
        .find(|s| jwt_claims_opt(s).is_some_and(|c| c["aud"] == defaults::FEDERATED_AUDIENCE))
        .expect("the OIDC token was announced");
    assert!(
        jwt_claims(oidc_token)["sub"]
            .as_str()
            .unwrap()
            .starts_with("sc://")
    );
    assert_no_secrets(&out, &[defaults::JOB_ACCESS_TOKEN, oidc_token]);
    emulator.shutdown().await;
}

/// The claims of a JWT, `None` for anything else.
fn jwt_claims_opt(token: &str) -> Option<serde_json::Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[tokio::test]
async fn every_exchange_gets_a_fresh_oidc_token() {
    let config = Config {
        token_lifetime: Duration::from_secs(2),
        ..Config::default()
    };
    let emulator = Emulator::start(config).await.unwrap();
    let vars = federation_connection(&emulator);
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    task.list_storage_accounts().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    task.list_storage_accounts().await.unwrap();
    let exchanges = token_requests(&emulator).len();
    assert!(exchanges >= 2, "the short-lived token was renewed");
    assert_eq!(oidc_requests(&emulator).len(), exchanges);
    let announced = announced_secrets(&task.text());
    let oidc_tokens = announced
        .iter()
        .filter(|s| jwt_claims_opt(s).is_some_and(|c| c["aud"] == defaults::FEDERATED_AUDIENCE))
        .count();
    assert_eq!(oidc_tokens, exchanges, "each OIDC token is a new one");
    assert_no_secrets(&task.text(), &[defaults::JOB_ACCESS_TOKEN]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_oidc_url_is_built_from_the_job_when_the_agent_gives_none() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let mut vars = federation_connection(&emulator);
    vars.remove("SYSTEM_OIDCREQUESTURI");
    vars.insert(
        "SYSTEM_COLLECTIONURI".into(),
        format!("{}{}/", emulator.base_url(), defaults::DEVOPS_ORGANIZATION),
    );
    vars.insert(
        "SYSTEM_TEAMPROJECTID".into(),
        defaults::DEVOPS_PROJECT_ID.into(),
    );
    vars.insert("SYSTEM_HOSTTYPE".into(), "build".into());
    vars.insert("SYSTEM_PLANID".into(), PLAN_ID.into());
    vars.insert("SYSTEM_JOBID".into(), JOB_ID.into());
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    task.list_storage_accounts().await.unwrap();
    let oidc = oidc_requests(&emulator);
    assert_eq!(oidc.len(), 1);
    assert_eq!(
        oidc[0].path,
        emulator.oidc_request_uri(PLAN_ID, JOB_ID).path()
    );
    assert_no_secrets(&task.text(), &[defaults::JOB_ACCESS_TOKEN]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_oidc_endpoint_failing_twice_is_retried() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    emulator.add_fault(Fault::status("POST", "/oidctoken$", 503).times(2));
    let vars = federation_connection(&emulator);
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    task.list_storage_accounts().await.unwrap();
    let oidc = oidc_requests(&emulator);
    let statuses: Vec<u16> = oidc.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    let out = task.text();
    assert!(
        out.contains("asking Azure DevOps for an OIDC token") && out.contains("attempt 3 of 4"),
        "{out}"
    );
    assert_no_secrets(&out, &[defaults::JOB_ACCESS_TOKEN]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_oidc_endpoint_that_keeps_failing_is_reported() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    emulator.add_fault(Fault::status("POST", "/oidctoken$", 500).times(10));
    let vars = federation_connection(&emulator);
    let (task, text) = first_call_error(&vars).await;
    assert!(text.contains("failed 4 times"), "{text}");
    assert!(text.contains("OIDC token"), "{text}");
    assert_eq!(oidc_requests(&emulator).len(), 4);
    assert!(token_requests(&emulator).is_empty());
    assert_no_secrets(&task.text(), &[defaults::JOB_ACCESS_TOKEN]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_missing_federated_credential_is_explained() {
    let mut config = Config::default();
    config.service_principals[0].federated_credentials[0].subject =
        "sc://aib-test-org/aib-test-project/another-connection".into();
    let emulator = Emulator::start(config).await.unwrap();
    let vars = federation_connection(&emulator);
    let (output, out) = run_task_async(&["sign-in"], vars).await;
    assert_eq!(output.status.code(), Some(1), "{out}");
    let issue = error_issue(&out);
    assert!(issue.message.contains("AADSTS700213"), "{}", issue.message);
    assert!(
        issue
            .message
            .contains("sc://<organization>/<project>/<service connection name>"),
        "{}",
        issue.message
    );
    assert_no_secrets(&out, &[defaults::JOB_ACCESS_TOKEN]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_binary_signs_in_with_federation_as_the_agent_runs_it() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let vars = federation_connection(&emulator);
    let (output, out) = run_task_async(&["sign-in"], vars).await;
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("Signed in as workload identity federation"),
        "{out}"
    );
    assert!(out.contains("is reachable"), "{out}");
    assert_eq!(oidc_requests(&emulator).len(), 1);
    assert_no_secrets(&out, &[defaults::JOB_ACCESS_TOKEN]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_job_without_an_access_token_is_told_what_is_missing() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let mut vars = federation_connection(&emulator);
    vars.remove("ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN");
    let Err(err) = sign_in_with(&vars, LocalOptions::default()).await else {
        panic!("no job access token must fail");
    };
    let text = format!("{err:#}");
    assert!(text.contains("SYSTEM_ACCESSTOKEN"), "{text}");
    assert!(emulator.requests().is_empty());
    emulator.shutdown().await;
}
