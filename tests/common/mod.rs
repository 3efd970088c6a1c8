//! Shared by the integration tests: drive the `aib-task` binary exactly as the agent does
//! (environment variables in, logging commands out) and check its output for leaked secrets.

#![allow(dead_code)]

pub mod fault_proxy;
pub mod identity;
pub mod pipeline;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use aib_emulator::{Emulator, defaults};
use aib_task::agent::command::decode;

/// The id the tests give their AzureRM service connection, as the agent would (lower-case).
pub const CONNECTION_ID: &str = defaults::SERVICE_CONNECTION_ID;

/// The agent's variables for the emulator's service principal, with a client secret.
pub fn spn_secret_connection(emulator: &Emulator, secret: &str) -> BTreeMap<String, String> {
    let base = emulator.base_url().to_string();
    let id = CONNECTION_ID;
    [
        (format!("ENDPOINT_URL_{id}"), base.clone()),
        (
            format!("ENDPOINT_AUTH_SCHEME_{id}"),
            "ServicePrincipal".into(),
        ),
        (
            format!("ENDPOINT_AUTH_PARAMETER_{id}_AUTHENTICATIONTYPE"),
            "spnKey".into(),
        ),
        (
            format!("ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALID"),
            defaults::CLIENT_ID.into(),
        ),
        (
            format!("ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALKEY"),
            secret.into(),
        ),
        (
            format!("ENDPOINT_AUTH_PARAMETER_{id}_TENANTID"),
            defaults::TENANT_ID.into(),
        ),
        (
            format!("ENDPOINT_DATA_{id}_SUBSCRIPTIONID"),
            defaults::SUBSCRIPTION_ID.into(),
        ),
        (
            format!("ENDPOINT_DATA_{id}_SUBSCRIPTIONNAME"),
            defaults::SUBSCRIPTION_NAME.into(),
        ),
        (
            format!("ENDPOINT_DATA_{id}_ENVIRONMENT"),
            "AzureCloud".into(),
        ),
        (format!("ENDPOINT_DATA_{id}_ACTIVEDIRECTORYAUTHORITY"), base),
        ("INPUT_IBSUBSCRIPTION".into(), id.into()),
        ("TF_BUILD".into(), "True".into()),
    ]
    .into_iter()
    .collect()
}

/// Runs the binary with only `env` (nothing inherited, so no stray proxy or debug setting).
pub fn run_task(args: &[&str], env: &BTreeMap<String, String>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aib-task"))
        .args(args)
        .env_clear()
        .envs(env)
        .output()
        .expect("the aib-task binary runs")
}

/// [`run_task`] on a blocking thread, so an async test's emulator keeps answering; returns the
/// output and its stdout.
pub async fn run_task_async(args: &[&str], env: BTreeMap<String, String>) -> (Output, String) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_task(&args, &env)
    })
    .await
    .unwrap();
    let out = stdout(&output);
    (output, out)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Fails when any secret appears anywhere in the output other than in the `task.setsecret`
/// line that announces it, or when it is used before being announced.
pub fn assert_no_secret_leaks(output: &str, secrets: &[&str]) {
    let mut announced: Vec<String> = Vec::new();
    for line in output.lines() {
        if let Some(cmd) = decode(line).filter(|c| c.area == "task" && c.action == "setsecret") {
            announced.push(cmd.message);
            continue;
        }
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            assert!(
                !line.contains(secret),
                "secret leaked in output line: {line:?}"
            );
        }
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            announced.iter().any(|a| a == secret),
            "secret {:?}… was never announced with task.setsecret",
            &secret[..secret.len().min(4)]
        );
    }
}

/// A run in a terminal (no `TF_BUILD`, no `GITHUB_ACTIONS`): plain output, so no logging or
/// workflow command at all, and no secret (nor anything shaped like a token) on any line.
pub fn assert_terminal_output_clean(output: &str, secrets: &[&str]) {
    let jwt = regex::Regex::new(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.").unwrap();
    for line in output.lines() {
        assert!(
            !line.contains("##vso[") && !line.starts_with("##["),
            "an agent command in a terminal: {line:?}"
        );
        assert!(
            !line.trim_start().starts_with("::"),
            "a workflow command in a terminal: {line:?}"
        );
        assert!(
            !jwt.is_match(line),
            "a token shows in output line: {line:?}"
        );
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            assert!(
                !line.contains(secret),
                "secret leaked in output line: {line:?}"
            );
        }
    }
}

/// The messages of every `##vso[task.setsecret]` line.
pub fn announced_secrets(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(decode)
        .filter(|c| c.area == "task" && c.action == "setsecret")
        .map(|c| c.message)
        .collect()
}

/// The JSON claims of a JWT (no signature check; the emulator's own tests check signatures).
pub fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Azurite and the emulator wired together: the emulator's storage accounts live in Azurite,
/// which speaks HTTPS with a certificate from the emulator's CA and accepts its tokens.
pub struct Stack {
    pub emulator: Emulator,
    pub azurite: aib_emulator::azurite::Azurite,
}

/// Starts the stack, or says why it skips (Azurite not installed: run `npm ci`).
pub async fn start_stack(mut config: aib_emulator::Config) -> Option<Stack> {
    let azurite = start_azurite(&mut config)?;
    let emulator = Emulator::start(config).await.expect("emulator starts");
    Some(Stack { emulator, azurite })
}

/// Starts Azurite with a certificate from a new CA and points `config` at both (the CA and
/// every storage account's blob endpoint); `None`, saying why, when Azurite is not installed.
pub fn start_azurite(config: &mut aib_emulator::Config) -> Option<aib_emulator::azurite::Azurite> {
    use aib_emulator::azurite::{Azurite, AzuriteOptions, AzuriteTls};
    if !Azurite::available() {
        eprintln!("skipping: Azurite is not installed (run `npm ci` at the repository root)");
        return None;
    }
    let ca = aib_emulator::ca::CertificateAuthority::generate().expect("CA");
    let (cert, key) = ca
        .issue_server_cert(&["127.0.0.1", "localhost"])
        .expect("server certificate");
    let azurite = Azurite::start(AzuriteOptions {
        tls: Some(AzuriteTls::Pem { cert, key }),
        oauth_basic: true,
        accounts: config.azurite_accounts(),
    })
    .expect("Azurite starts");
    config.ca = Some(ca);
    config.use_azurite(&azurite);
    Some(azurite)
}

/// An HTTPS client that trusts only `ca_pem` and carries no credentials.
pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

impl Stack {
    /// `GET` of an ARM path (`/subscriptions/…`) as the test's owner would: status and body.
    pub async fn arm_get(&self, path: &str, api_version: &str) -> (u16, serde_json::Value) {
        let token = self
            .emulator
            .mint_access_token(self.emulator.base_url().as_ref(), 600);
        let url = format!(
            "{}{}?api-version={api_version}",
            self.emulator.base_url(),
            path.trim_start_matches('/')
        );
        let response = self
            .anonymous_client()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// A client that trusts the emulator's CA and carries no credentials: what Image Builder has.
    pub fn anonymous_client(&self) -> reqwest::Client {
        client_trusting(self.emulator.ca().cert_pem())
    }

    /// The names in the task's artifact container in the default storage account, uncommitted
    /// blobs included (listed with a list-only account SAS); `None` when there is no such
    /// container.
    pub async fn artifact_container_listing(&self) -> Option<Vec<String>> {
        let mut grant = aib_task::sas::AccountSas::for_task_writes(
            defaults::STORAGE_ACCOUNT,
            time::OffsetDateTime::now_utc(),
            1,
            aib_task::sas::Protocol::HttpsOnly,
        );
        grant.permissions = "l".into();
        let sas = grant.sign(defaults::STORAGE_ACCOUNT_KEY).unwrap();
        let url = format!(
            "{}{}?restype=container&comp=list&include=uncommittedblobs&{}",
            self.azurite.blob_endpoint(defaults::STORAGE_ACCOUNT),
            aib_task::storage::CONTAINER,
            sas.query
        );
        let response = self.anonymous_client().get(url).send().await.unwrap();
        if response.status() == 404 {
            return None;
        }
        assert_eq!(response.status(), 200);
        let listing = response.text().await.unwrap();
        assert!(listing.contains("<EnumerationResults"), "{listing}");
        Some(
            listing
                .split("<Name>")
                .skip(1)
                .filter_map(|s| s.split("</Name>").next())
                .map(str::to_owned)
                .collect(),
        )
    }
}

/// A signed-in task as the agent would start it: console (captured), HTTPS client trusting the
/// emulator's CA, token source and ARM client for the default service principal.
pub struct SignedIn {
    pub console: std::sync::Arc<aib_task::agent::Console>,
    pub output: aib_task::agent::console::Capture,
    pub http: reqwest::Client,
    pub tokens: std::sync::Arc<aib_task::auth::TokenSource>,
    pub arm: aib_task::arm::ArmClient,
    pub env: aib_task::agent::Environment,
}

pub fn sign_in(emulator: &Emulator) -> SignedIn {
    use aib_task::agent::{Console, Environment, ServiceConnection, console::Capture};
    use std::sync::Arc;
    let mut vars = spn_secret_connection(emulator, defaults::CLIENT_SECRET);
    vars.insert(
        "SSL_CERT_FILE".into(),
        emulator.ca_pem_path().display().to_string(),
    );
    let env = Environment::from_pairs(vars);
    let output = Capture::default();
    let console = Console::with_writer(Box::new(output.clone()), true);
    let connection = ServiceConnection::from_env(&env, CONNECTION_ID, "ibSubscription").unwrap();
    let cloud = connection.cloud().unwrap();
    let http = aib_task::transport::build_client(
        &aib_task::transport::TransportSettings::from_env(&env).unwrap(),
        &console,
    )
    .unwrap();
    let tokens = Arc::new(
        aib_task::auth::TokenSource::for_connection(
            &connection,
            &cloud,
            http.clone(),
            Arc::clone(&console),
        )
        .unwrap(),
    );
    let mut arm = aib_task::arm::ArmClient::new(
        http.clone(),
        cloud.resource_manager.clone(),
        cloud.arm_scope(),
        Arc::clone(&tokens),
        Arc::clone(&console),
    );
    // The emulator asks for short waits; tests need not wait for real-Azure intervals.
    arm.poll.min_interval = std::time::Duration::from_millis(50);
    arm.retry.initial_delay = std::time::Duration::from_millis(50);
    SignedIn {
        console,
        output,
        http,
        tokens,
        arm,
        env,
    }
}
