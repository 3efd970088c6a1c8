//! Sign-in fixtures for the `sign_in_*` tests: the agent's variables for each kind of service
//! connection against an emulator, certificates (RSA from the emulator's CA, EC made here), a
//! signed-in task for library-level tests, and the output check every test runs: no secret of
//! any kind outside the `task.setsecret` line that announces it.

use std::collections::BTreeMap;
use std::sync::Arc;

use aib_emulator::ca::CertificateAuthority;
use aib_emulator::{Config, Emulator, defaults};
use aib_task::agent::command::{ParsedCommand, decode};
use aib_task::agent::console::Capture;
use aib_task::agent::{Console, Environment};
use aib_task::arm::ArmClient;
use aib_task::auth::{self, LocalOptions, SignedIn};
use azure_core::credentials::Secret;
use base64::Engine as _;

use super::{CONNECTION_ID, announced_secrets, assert_no_secret_leaks, spn_secret_connection};

pub type Vars = BTreeMap<String, String>;

pub const STORAGE_API: &str = "2023-05-01";
pub const PLAN_ID: &str = "5b0e6f1c-0000-4000-8000-00000000000a";
pub const JOB_ID: &str = "5b0e6f1c-0000-4000-8000-00000000000b";

/// Sets `key` (`{id}` standing for the connection's id) to `value`.
pub fn put(vars: &mut Vars, key: &str, value: impl Into<String>) {
    vars.insert(key.replace("{id}", CONNECTION_ID), value.into());
}

/// The emulator's CA trusted the way the agent passes it.
pub fn trusting(emulator: &Emulator, mut vars: Vars) -> Vars {
    put(
        &mut vars,
        "SSL_CERT_FILE",
        emulator.ca_pem_path().display().to_string(),
    );
    vars
}

/// The service principal connection with a client secret, the emulator's CA trusted. The other
/// kinds of connection below start from it and replace its authentication.
pub fn client_secret_connection(emulator: &Emulator, secret: &str) -> Vars {
    trusting(emulator, spn_secret_connection(emulator, secret))
}

/// A service principal connection with a certificate (one PEM: certificate and key).
pub fn certificate_connection(emulator: &Emulator, pem: &str) -> Vars {
    let mut vars = client_secret_connection(emulator, "unused");
    vars.retain(|k, _| !k.ends_with("_SERVICEPRINCIPALKEY"));
    put(
        &mut vars,
        "ENDPOINT_AUTH_PARAMETER_{id}_AUTHENTICATIONTYPE",
        "spnCertificate",
    );
    put(
        &mut vars,
        "ENDPOINT_AUTH_PARAMETER_{id}_SERVICEPRINCIPALCERTIFICATE",
        pem,
    );
    vars
}

/// A workload identity federation connection in a job whose OIDC URI the agent gives.
pub fn federation_connection(emulator: &Emulator) -> Vars {
    let mut vars = client_secret_connection(emulator, "unused");
    vars.retain(|k, _| !k.ends_with("_SERVICEPRINCIPALKEY") && !k.ends_with("_AUTHENTICATIONTYPE"));
    put(
        &mut vars,
        "ENDPOINT_AUTH_SCHEME_{id}",
        "WorkloadIdentityFederation",
    );
    put(
        &mut vars,
        "SYSTEM_OIDCREQUESTURI",
        emulator.oidc_request_uri(PLAN_ID, JOB_ID).to_string(),
    );
    put(
        &mut vars,
        "ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN",
        defaults::JOB_ACCESS_TOKEN,
    );
    vars
}

/// A managed identity connection (user-assigned when `client_id` is given), IMDS at the
/// emulator's plain-HTTP listener (`config.imds_http` must be set).
pub fn managed_identity_connection(emulator: &Emulator, client_id: Option<&str>) -> Vars {
    let mut vars = client_secret_connection(emulator, "unused");
    vars.retain(|k, _| !k.starts_with("ENDPOINT_AUTH_"));
    put(
        &mut vars,
        "ENDPOINT_AUTH_SCHEME_{id}",
        "ManagedServiceIdentity",
    );
    if let Some(id) = client_id {
        put(&mut vars, "ENDPOINT_DATA_{id}_MSICLIENTID", id);
    }
    put(
        &mut vars,
        "AIB_IMDS_ENDPOINT",
        emulator
            .imds_http_url()
            .expect("config.imds_http = true")
            .to_string(),
    );
    vars
}

/// An RSA certificate and key from the emulator's CA as one PEM, and the certificate alone
/// (what gets registered on the app).
pub fn rsa_certificate(ca: &CertificateAuthority) -> (String, String) {
    let (cert, key) = ca
        .issue_client_cert("aib-task test")
        .expect("client certificate");
    (format!("{cert}{key}"), cert)
}

/// An emulator whose service principal has `certificates` registered, sharing `ca`.
pub async fn emulator_with_certificates(
    ca: CertificateAuthority,
    certificates: Vec<String>,
) -> Emulator {
    let mut config = Config {
        ca: Some(ca),
        ..Config::default()
    };
    config.service_principals[0].certificates = certificates;
    Emulator::start(config).await.unwrap()
}

/// An EC P-256 key (PKCS#8) and a minimal certificate carrying its public key, as one PEM, and
/// the certificate alone. Only the subject public key matters to Entra's signature check.
pub fn ec_certificate() -> (String, String) {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if body.len() < 0x80 {
            out.push(body.len() as u8);
        } else {
            out.extend([0x82, (body.len() >> 8) as u8, body.len() as u8]);
        }
        out.extend_from_slice(body);
        out
    }
    // id-ecPublicKey with prime256v1.
    let algorithm = tlv(
        0x30,
        &[
            tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]),
        ]
        .concat(),
    );
    let mut bits = vec![0];
    bits.extend_from_slice(key.public_key().as_ref());
    let spki = tlv(0x30, &[algorithm, tlv(0x03, &bits)].concat());
    let name = tlv(0x30, &[]);
    let tbs = tlv(
        0x30,
        &[
            tlv(0xa0, &tlv(0x02, &[2])),
            tlv(0x02, &[7]),
            tlv(
                0x30,
                &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
            ),
            name.clone(),
            tlv(
                0x30,
                &[tlv(0x17, b"260101000000Z"), tlv(0x17, b"360101000000Z")].concat(),
            ),
            name,
            spki,
        ]
        .concat(),
    );
    let cert = tlv(
        0x30,
        &[
            tbs,
            tlv(
                0x30,
                &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
            ),
            tlv(0x03, &[0]),
        ]
        .concat(),
    );
    let cert_pem = pem("CERTIFICATE", &cert);
    (
        format!("{cert_pem}{}", pem("PRIVATE KEY", pkcs8.as_ref())),
        cert_pem,
    )
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let body: Vec<String> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        body.join("\n")
    )
}

/// The secret lines of a PEM: every base64 line of its private key block.
pub fn private_key_lines(pem: &str) -> Vec<String> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN") && line.contains("PRIVATE KEY") {
            inside = true;
        } else if line.starts_with("-----END") {
            inside = false;
        } else if inside && !line.is_empty() {
            lines.push(line.to_owned());
        }
    }
    lines
}

/// [`assert_no_secrets`] with the private key lines of `pem` among the `known` secrets.
pub fn assert_no_secrets_nor_key(output: &str, pem: &str, known: &[&str]) {
    let lines = private_key_lines(pem);
    let mut all: Vec<&str> = lines.iter().map(String::as_str).collect();
    all.extend_from_slice(known);
    assert_no_secrets(output, &all);
}

/// A task signed in through `auth::sign_in` as the CLI does it, output captured.
pub struct Task {
    pub output: Capture,
    pub console: Arc<Console>,
    pub signed: SignedIn,
    pub arm: ArmClient,
}

impl Task {
    pub fn text(&self) -> String {
        self.output.text()
    }

    /// A token for ARM from the signed-in token source (from its cache while fresh).
    pub async fn arm_token(&self) -> anyhow::Result<Secret> {
        self.signed
            .tokens
            .token(&self.signed.cloud.arm_scope())
            .await
    }

    /// Lists the subscription's storage accounts: an ARM call made with the token.
    pub async fn list_storage_accounts(&self) -> anyhow::Result<Vec<String>> {
        let accounts: Vec<serde_json::Value> = self
            .arm
            .list(
                "listing storage accounts",
                &format!(
                    "/subscriptions/{}/providers/Microsoft.Storage/storageAccounts",
                    defaults::SUBSCRIPTION_ID
                ),
                STORAGE_API,
            )
            .await?;
        Ok(accounts
            .iter()
            .map(|a| a["name"].as_str().unwrap_or_default().to_owned())
            .collect())
    }
}

/// Signs in with `vars` (a connection when `INPUT_IBSUBSCRIPTION` is set, else the local way).
pub async fn sign_in_with(vars: &Vars, local: LocalOptions) -> anyhow::Result<Task> {
    let env = Environment::from_pairs(vars.clone());
    let output = Capture::default();
    let console = Console::with_writer(Box::new(output.clone()), true);
    let http = aib_task::transport::build_client(
        &aib_task::transport::TransportSettings::from_env(&env)?,
        &console,
    )?;
    let signed = auth::sign_in(
        &env,
        env.get("INPUT_IBSUBSCRIPTION"),
        &local,
        http.clone(),
        &console,
    )
    .await?;
    let mut arm = ArmClient::new(
        http,
        signed.cloud.resource_manager.clone(),
        signed.cloud.arm_scope(),
        Arc::clone(&signed.tokens),
        Arc::clone(&console),
    );
    arm.retry.initial_delay = std::time::Duration::from_millis(50);
    Ok(Task {
        output,
        console,
        signed,
        arm,
    })
}

/// Signs in with `vars` as the pipeline does, then makes an ARM call, which must fail: the task
/// and the error's text with its causes.
pub async fn first_call_error(vars: &Vars) -> (Task, String) {
    let task = sign_in_with(vars, LocalOptions::default()).await.unwrap();
    let err = task.list_storage_accounts().await.unwrap_err();
    let text = format!("{err:#}");
    (task, text)
}

/// The first `logissue` command in `out`, which must be there.
pub fn error_issue(out: &str) -> ParsedCommand {
    out.lines()
        .filter_map(decode)
        .find(|c| c.action == "logissue")
        .expect("an error issue")
}

/// Token requests the emulator answered (any tenant, v2 or v1 endpoint).
pub fn token_requests(emulator: &Emulator) -> Vec<aib_emulator::RecordedRequest> {
    emulator
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token") || r.path.ends_with("/oauth2/token"))
        .collect()
}

pub fn oidc_requests(emulator: &Emulator) -> Vec<aib_emulator::RecordedRequest> {
    emulator
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/oidctoken"))
        .collect()
}

/// Fails when any secret shows in `output` other than in the `task.setsecret` line announcing
/// it: the `known` ones (client secret, job access token, private key lines), which must have
/// been announced; everything announced (tokens, assertions, OIDC tokens); and anything shaped
/// like a JWT, announced or not.
pub fn assert_no_secrets(output: &str, known: &[&str]) {
    assert_no_secret_leaks(output, known);
    let announced = announced_secrets(output);
    let announced: Vec<&str> = announced.iter().map(String::as_str).collect();
    assert_no_secret_leaks(output, &announced);
    let jwt = regex::Regex::new(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.").unwrap();
    for line in output.lines() {
        if line.contains("##vso[task.setsecret]") {
            continue;
        }
        assert!(
            !jwt.is_match(line),
            "a token shows in output line: {line:?}"
        );
    }
}
