//! Signing in with a service principal and client secret against the local Azure emulator over
//! HTTPS, trusting only its generated CA, as a library call and as the agent runs the binary.

mod common;

use aib_emulator::{Config, Emulator, defaults};
use aib_task::agent::{Console, Environment, ServiceConnection};
use aib_task::auth::TokenSource;
use aib_task::transport::{self, TransportSettings};
use common::identity::client_secret_connection;
use common::*;

#[tokio::test]
async fn client_secret_token_over_https_with_the_generated_ca() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    // Console, HTTPS client trusting the CA and token source, as the task builds them.
    let SignedIn {
        output: capture,
        tokens,
        env,
        ..
    } = sign_in(&emulator);
    let cloud = ServiceConnection::from_env(&env, CONNECTION_ID, "ibSubscription")
        .unwrap()
        .cloud()
        .unwrap();
    let token = tokens.token(&cloud.arm_scope()).await.unwrap();

    let claims = jwt_claims(token.secret());
    assert_eq!(claims["tid"], defaults::TENANT_ID);
    assert_eq!(claims["appid"], defaults::CLIENT_ID);
    assert_eq!(
        claims["iss"],
        format!("https://sts.windows.net/{}/", defaults::TENANT_ID)
    );
    assert_eq!(claims["aud"], emulator.base_url().as_str());

    // Both the connection's secret and the token were announced before use.
    let announced = announced_secrets(&capture.text());
    assert!(announced.iter().any(|s| s == defaults::CLIENT_SECRET));
    assert!(announced.iter().any(|s| s == token.secret()));

    // The emulator saw one token request, for this tenant, with the secret redacted.
    let requests = emulator.requests();
    let token_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.path == format!("/{}/oauth2/v2.0/token", defaults::TENANT_ID))
        .collect();
    assert_eq!(token_requests.len(), 1, "{requests:#?}");
    assert_eq!(token_requests[0].method, "POST");
    assert_eq!(token_requests[0].status, 200);
    let logged = serde_json::to_string(&requests).unwrap();
    assert!(!logged.contains(defaults::CLIENT_SECRET));

    // A second call is served from the credential's cache.
    let again = tokens.token(&cloud.arm_scope()).await.unwrap();
    assert_eq!(again.secret(), token.secret());
    assert_eq!(
        emulator
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
            .count(),
        1
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_emulator_is_not_trusted_without_its_ca() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let env = Environment::from_pairs(spn_secret_connection(&emulator, defaults::CLIENT_SECRET));
    let console = Console::with_writer(Box::new(std::io::sink()), false);
    let connection = ServiceConnection::from_env(&env, CONNECTION_ID, "ibSubscription").unwrap();
    let cloud = connection.cloud().unwrap();
    let http =
        transport::build_client(&TransportSettings::from_env(&env).unwrap(), &console).unwrap();
    let tokens = TokenSource::for_connection(&connection, &cloud, http, console).unwrap();
    let err = tokens.token(&cloud.arm_scope()).await.unwrap_err();
    let text = format!("{err:#}").to_ascii_lowercase();
    assert!(
        text.contains("certificate") || text.contains("unknownissuer") || text.contains("tls"),
        "{text}"
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_binary_signs_in_as_the_agent_runs_it() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    for trust_variable in ["SSL_CERT_FILE", "AGENT_CAINFO"] {
        let mut vars = spn_secret_connection(&emulator, defaults::CLIENT_SECRET);
        vars.insert(
            trust_variable.into(),
            emulator.ca_pem_path().display().to_string(),
        );
        let (output, out) = run_task_async(&["sign-in"], vars).await;
        assert!(
            output.status.success(),
            "{trust_variable}: {out}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            out.contains(&format!(
                "Signed in as service principal (client secret) '{}' in tenant '{}'",
                defaults::CLIENT_ID,
                defaults::TENANT_ID
            )),
            "{out}"
        );
        // The first thing printed is the announcement of the connection's secret.
        assert_eq!(
            out.lines().next().unwrap(),
            format!(
                "##vso[task.setsecret]{}",
                aib_task::agent::command::escape(defaults::CLIENT_SECRET)
            )
        );
        let secrets = announced_secrets(&out);
        let token = secrets
            .iter()
            .find(|s| s.split('.').count() == 3)
            .expect("the token was announced");
        assert_no_secret_leaks(&out, &[defaults::CLIENT_SECRET, token]);
        assert!(
            !out.contains("task.complete"),
            "success needs no completion command: {out}"
        );
    }
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_fails_the_task_with_entra_s_reason() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let wrong = "definitely-not-the-secret~123";
    let vars = client_secret_connection(&emulator, wrong);
    let (output, out) = run_task_async(&["sign-in"], vars).await;
    assert_eq!(output.status.code(), Some(1), "{out}");
    let commands: Vec<_> = out
        .lines()
        .filter_map(aib_task::agent::command::decode)
        .collect();
    let issue = commands
        .iter()
        .find(|c| c.action == "logissue")
        .expect("an error issue");
    assert_eq!(issue.property("type"), Some("error"));
    assert!(issue.message.contains("AADSTS7000215"), "{}", issue.message);
    let complete = commands.last().unwrap();
    assert_eq!(complete.action, "complete");
    assert_eq!(complete.property("result"), Some("Failed"));
    assert_no_secret_leaks(&out, &[wrong]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_missing_connection_names_the_input_before_any_request() {
    let emulator = Emulator::start(Config::default()).await.unwrap();
    let mut vars = spn_secret_connection(&emulator, defaults::CLIENT_SECRET);
    vars.insert("INPUT_IBSUBSCRIPTION".into(), "another-connection".into());
    let (output, out) = run_task_async(&["sign-in"], vars).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(out.contains("input 'ibSubscription'"), "{out}");
    assert!(out.contains("##vso[task.complete result=Failed]"));
    assert!(emulator.requests().is_empty(), "no request may be made");
    emulator.shutdown().await;
}
