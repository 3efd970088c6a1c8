//! Clouds and Entra's refusals against the emulator: Azure Stack endpoints discovered from the
//! resource manager's metadata, an ADFS authority (no tenant segment, v1 form), an unknown
//! tenant and a wrong secret explained with their AADSTS codes.

mod common;

use aib_emulator::{Config, Emulator, defaults};
use aib_task::auth::LocalOptions;
use common::identity::*;
use common::*;

#[tokio::test]
async fn azure_stack_endpoints_come_from_the_metadata_endpoint() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let mut vars = client_secret_connection(&emulator, defaults::CLIENT_SECRET);
    put(&mut vars, "ENDPOINT_DATA_{id}_ENVIRONMENT", "AzureStack");
    vars.remove(&format!(
        "ENDPOINT_DATA_{CONNECTION_ID}_ACTIVEDIRECTORYAUTHORITY"
    ));
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    assert_eq!(
        task.signed.cloud.authority.as_ref().unwrap(),
        &emulator.base_url()
    );
    assert_eq!(task.signed.cloud.arm_audience, emulator.base_url().as_str());
    task.list_storage_accounts().await.unwrap();
    let metadata: Vec<_> = emulator
        .requests()
        .into_iter()
        .filter(|r| r.path == "/metadata/endpoints")
        .collect();
    assert_eq!(metadata.len(), 1);
    assert_eq!(metadata[0].query, "api-version=2015-01-01");
    assert_no_secrets(&task.text(), &[defaults::CLIENT_SECRET]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_adfs_authority_takes_no_tenant_segment() {
    // The emulator answers `/adfs/oauth2/token` as the token endpoint of a tenant named "adfs".
    let mut config = Config::default();
    config.tenants.push("adfs".into());
    let mut adfs_principal = config.service_principals[0].clone();
    adfs_principal.tenant_id = "adfs".into();
    config.service_principals.push(adfs_principal);
    config.subscriptions[0].tenant_id = "adfs".into();
    let emulator = Emulator::start(config).await.unwrap();

    let mut vars = client_secret_connection(&emulator, defaults::CLIENT_SECRET);
    put(&mut vars, "ENDPOINT_DATA_{id}_ENVIRONMENT", "AzureStack");
    let adfs = format!("{}adfs/", emulator.base_url());
    put(
        &mut vars,
        "ENDPOINT_DATA_{id}_ACTIVEDIRECTORYAUTHORITY",
        &adfs,
    );
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    assert!(task.signed.cloud.is_adfs());
    task.list_storage_accounts().await.unwrap();

    let requests = token_requests(&emulator);
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0].path, "/adfs/oauth2/token");
    let body = requests[0].body.as_ref().unwrap();
    let form = body.as_str().unwrap_or_default();
    let fields: Vec<&str> = form
        .split('&')
        .map(|pair| pair.split('=').next().unwrap_or_default())
        .collect();
    assert!(fields.contains(&"resource"), "{form}");
    assert!(!fields.contains(&"scope"), "{form}");
    assert_no_secrets(&task.text(), &[defaults::CLIENT_SECRET]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_unknown_tenant_is_explained() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let mut vars = client_secret_connection(&emulator, defaults::CLIENT_SECRET);
    put(
        &mut vars,
        "ENDPOINT_AUTH_PARAMETER_{id}_TENANTID",
        "11111111-2222-3333-4444-555555555555",
    );
    let (task, text) = first_call_error(&vars).await;
    assert!(text.contains("AADSTS90002"), "{text}");
    assert!(
        text.contains("the tenant does not exist in this cloud"),
        "{text}"
    );
    assert!(
        text.contains("check the service connection's tenant id"),
        "{text}"
    );
    assert_eq!(token_requests(&emulator).len(), 1, "not retried");
    assert_no_secrets(&task.text(), &[defaults::CLIENT_SECRET]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_is_explained() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let wrong = "wrong~secret.value-0123456789";
    let vars = client_secret_connection(&emulator, wrong);
    let (task, text) = first_call_error(&vars).await;
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(text.contains("not its Secret ID"), "{text}");
    assert!(
        text.contains(&format!(
            "signing in as service principal (client secret) '{}'",
            defaults::CLIENT_ID
        )),
        "{text}"
    );
    assert_no_secrets(&task.text(), &[wrong]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_unknown_application_is_explained() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let mut vars = client_secret_connection(&emulator, defaults::CLIENT_SECRET);
    put(
        &mut vars,
        "ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALID",
        "99999999-2222-3333-4444-555555555555",
    );
    let (task, text) = first_call_error(&vars).await;
    assert!(text.contains("AADSTS700016"), "{text}");
    assert!(
        text.contains("no application with this client id"),
        "{text}"
    );
    assert_no_secrets(&task.text(), &[defaults::CLIENT_SECRET]);
    emulator.shutdown().await;
}
