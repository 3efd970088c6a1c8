//! Service principal with a certificate against the emulator: the client assertion signed in
//! process (RSA and EC), `x5t`/`x5t#S256` matching the registered certificate, an ARM call made
//! with the token, the binary as the agent runs it, and an unregistered certificate refused with
//! Entra's reason and the fix.

mod common;

use aib_emulator::ca::CertificateAuthority;
use aib_emulator::defaults;
use aib_task::auth::LocalOptions;
use common::identity::*;
use common::*;

#[tokio::test]
async fn rsa_certificate_signs_in_and_calls_arm() {
    let ca = CertificateAuthority::generate().unwrap();
    let (pem, cert) = rsa_certificate(&ca);
    let emulator = emulator_with_certificates(ca, vec![cert]).await;
    let vars = certificate_connection(&emulator, &pem);

    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    assert_eq!(
        task.signed.tokens.identity(),
        format!(
            "service principal (certificate) '{}' in tenant '{}'",
            defaults::CLIENT_ID,
            defaults::TENANT_ID
        )
    );
    let names = task.list_storage_accounts().await.unwrap();
    assert!(
        names.contains(&defaults::STORAGE_ACCOUNT.to_owned()),
        "{names:?}"
    );
    let token = task.arm_token().await.unwrap();
    let claims = jwt_claims(token.secret());
    assert_eq!(claims["appid"], defaults::CLIENT_ID);
    assert_eq!(claims["appidacr"], "2", "signed in with an assertion");

    // One token request, with an assertion and no secret.
    let requests = token_requests(&emulator);
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let body = serde_json::to_string(&requests[0].body).unwrap();
    assert!(
        body.contains("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        "{body}"
    );
    assert!(!body.contains("client_secret"), "{body}");
    assert_eq!(requests[0].status, 200);

    assert_no_secrets_nor_key(&task.text(), &pem, &[token.secret()]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn ec_certificate_signs_es256_assertions() {
    let (pem, cert) = ec_certificate();
    let emulator =
        emulator_with_certificates(CertificateAuthority::generate().unwrap(), vec![cert]).await;
    let vars = certificate_connection(&emulator, &pem);
    let task = sign_in_with(&vars, LocalOptions::default()).await.unwrap();
    let names = task.list_storage_accounts().await.unwrap();
    assert!(!names.is_empty());
    assert_no_secrets_nor_key(&task.text(), &pem, &[]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_binary_signs_in_with_a_certificate_as_the_agent_runs_it() {
    let ca = CertificateAuthority::generate().unwrap();
    let (pem, cert) = rsa_certificate(&ca);
    let emulator = emulator_with_certificates(ca, vec![cert]).await;
    let vars = certificate_connection(&emulator, &pem);
    let (output, out) = run_task_async(&["sign-in"], vars).await;
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "Signed in as service principal (certificate) '{}' in tenant '{}'",
            defaults::CLIENT_ID,
            defaults::TENANT_ID
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "Subscription '{}' ({}) is reachable",
            defaults::SUBSCRIPTION_NAME,
            defaults::SUBSCRIPTION_ID
        )),
        "{out}"
    );
    // The key's lines are announced before anything else is printed.
    let first_line = out.lines().next().unwrap();
    assert!(first_line.starts_with("##vso[task.setsecret]"), "{out}");
    assert_no_secrets_nor_key(&out, &pem, &[]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_unregistered_certificate_is_refused_with_the_fix() {
    let ca = CertificateAuthority::generate().unwrap();
    let (pem, _) = rsa_certificate(&ca);
    let (_, registered) = rsa_certificate(&ca);
    let emulator = emulator_with_certificates(ca, vec![registered]).await;
    let vars = certificate_connection(&emulator, &pem);
    let (output, out) = run_task_async(&["sign-in"], vars).await;
    assert_eq!(output.status.code(), Some(1), "{out}");
    let issue = error_issue(&out);
    assert!(issue.message.contains("AADSTS700027"), "{}", issue.message);
    assert!(
        issue
            .message
            .contains("upload the certificate (its public part"),
        "{}",
        issue.message
    );
    // Refused for good: asked once, not retried.
    assert_eq!(token_requests(&emulator).len(), 1);
    assert_no_secrets_nor_key(&out, &pem, &[]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_pem_without_a_key_names_the_connection_parameter() {
    let ca = CertificateAuthority::generate().unwrap();
    let (_, cert) = rsa_certificate(&ca);
    let emulator = emulator_with_certificates(ca, vec![cert.clone()]).await;
    let vars = certificate_connection(&emulator, &cert);
    let Err(err) = sign_in_with(&vars, LocalOptions::default()).await else {
        panic!("a PEM without a key must be refused");
    };
    let text = format!("{err:#}");
    assert!(text.contains("SERVICEPRINCIPALCERTIFICATE"), "{text}");
    assert!(text.contains("no private key"), "{text}");
    assert!(token_requests(&emulator).is_empty());
    emulator.shutdown().await;
}
