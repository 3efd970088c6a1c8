//! Helpers shared by the emulator's integration tests: start an emulator (optionally with Azurite
//! wired to it), an HTTP client that trusts only the emulator's CA, tokens, polling and blob
//! uploads.
#![allow(dead_code)]

use std::time::Duration;

use aib_emulator::{
    Config, Emulator,
    azurite::{Azurite, AzuriteOptions, AzuriteTls},
    ca::CertificateAuthority,
    config::Timing,
    defaults, shared_key,
};
use serde_json::Value;

pub const ARM_API: &str = "2024-02-01";

/// A config with fast timings and `Retry-After: 0`.
pub fn fast_config() -> Config {
    Config {
        timing: Timing {
            retry_after_secs: 0,
            ..Timing::fast()
        },
        ..Config::default()
    }
}

pub fn client_for(ca: &CertificateAuthority) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap()])
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub struct Env {
    pub emulator: Emulator,
    pub client: reqwest::Client,
    pub azurite: Option<Azurite>,
}

impl Env {
    pub async fn start(config: Config) -> Env {
        let emulator = Emulator::start(config).await.unwrap();
        let client = client_for(emulator.ca());
        Env {
            emulator,
            client,
            azurite: None,
        }
    }

    /// Emulator + HTTPS Azurite (certificate from the emulator's CA, `--oauth basic`), with the
    /// scenario's storage accounts pointed at it. None (after printing why) when Azurite is not
    /// installed.
    pub async fn start_with_azurite(mut config: Config) -> Option<Env> {
        if !Azurite::available() {
            eprintln!(
                "SKIPPED: Azurite is not installed (node_modules/.bin/azurite-blob missing); run `npm ci` at the repo root"
            );
            return None;
        }
        let ca = CertificateAuthority::generate().unwrap();
        let (cert, key) = ca.issue_server_cert(&["127.0.0.1", "localhost"]).unwrap();
        let azurite = Azurite::start(AzuriteOptions {
            tls: Some(AzuriteTls::Pem { cert, key }),
            oauth_basic: true,
            accounts: config.azurite_accounts(),
        })
        .unwrap();
        config.use_azurite(&azurite);
        config.ca = Some(ca);
        let mut env = Env::start(config).await;
        env.azurite = Some(azurite);
        Some(env)
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.emulator.base_url(),
            path.trim_start_matches('/')
        )
    }

    pub fn arm_token(&self) -> String {
        self.emulator
            .mint_access_token("https://management.azure.com/", 3600)
    }

    pub fn rg_path(&self) -> String {
        format!(
            "subscriptions/{}/resourceGroups/{}",
            defaults::SUBSCRIPTION_ID,
            defaults::RESOURCE_GROUP
        )
    }

    pub fn template_path(&self, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}",
            self.rg_path()
        )
    }

    /// An ARM call with a valid token; returns (status, headers, JSON body or Null).
    pub async fn arm(
        &self,
        method: reqwest::Method,
        path_or_url: &str,
        body: Option<&Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let url = if path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            let sep = if path_or_url.contains('?') { '&' } else { '?' };
            format!("{}{sep}api-version={ARM_API}", self.url(path_or_url))
        };
        let mut rb = self
            .client
            .request(method, &url)
            .bearer_auth(self.arm_token());
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// POSTs an action (`run`, `cancel`) on a template.
    pub async fn template_action(
        &self,
        name: &str,
        action: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.arm(
            reqwest::Method::POST,
            &format!("{}/{action}", self.template_path(name)),
            None,
        )
        .await
    }

    /// GETs a template, which must exist.
    pub async fn template(&self, name: &str) -> Value {
        let (status, _, body) = self
            .arm(reqwest::Method::GET, &self.template_path(name), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// PUTs a new template (201) and waits until its creation has succeeded.
    pub async fn create_template(&self, name: &str, body: &Value) {
        let (status, headers, created) = self
            .arm(reqwest::Method::PUT, &self.template_path(name), Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        let op = self.wait_operation(&async_operation(&headers)).await;
        assert_eq!(op["status"], "Succeeded", "{op}");
    }

    /// Runs a template (202) and waits for the run to end; returns the operation's final document.
    pub async fn run_template(&self, name: &str) -> Value {
        let (status, headers, body) = self.template_action(name, "run").await;
        assert_eq!(status, 202, "{body}");
        self.wait_operation(&async_operation(&headers)).await
    }

    /// Polls an `Azure-AsyncOperation` URL until it leaves InProgress; returns the final document.
    pub async fn wait_operation(&self, url: &str) -> Value {
        for _ in 0..400 {
            let (status, _, body) = self.arm(reqwest::Method::GET, url, None).await;
            assert_eq!(status, 200, "{body}");
            if body["status"] != "InProgress" {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("operation {url} did not finish");
    }

    /// An access token from the token endpoint (default app, client secret) for `scope`.
    pub async fn secret_token(&self, scope: &str) -> String {
        let r = self
            .client
            .post(self.emulator.token_url(defaults::TENANT_ID))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", defaults::CLIENT_ID),
                ("scope", scope),
                ("client_secret", defaults::CLIENT_SECRET),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A shared-key signed request: `x-ms-date`, `x-ms-version` and `extra` headers, all signed.
    async fn shared_key_request(
        &self,
        method: reqwest::Method,
        account: &str,
        key: &str,
        url: url::Url,
        extra: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> reqwest::Response {
        let date = httpdate();
        let mut headers = vec![
            ("x-ms-date", date.as_str()),
            ("x-ms-version", shared_key::STORAGE_VERSION),
        ];
        headers.extend_from_slice(extra);
        let auth =
            shared_key::authorization(account, key, method.as_str(), &url, &headers).unwrap();
        let mut rb = self
            .client
            .request(method, url)
            .header("authorization", auth);
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        if let Some(body) = body {
            rb = rb.body(body);
        }
        rb.send().await.unwrap()
    }

    /// A shared-key signed GET on a storage URL.
    pub async fn shared_key_get(
        &self,
        account: &str,
        key: &str,
        url: url::Url,
    ) -> reqwest::Response {
        self.shared_key_request(reqwest::Method::GET, account, key, url, &[], None)
            .await
    }

    /// Writes a block blob with a shared-key signed PUT (creating the container).
    pub async fn put_blob(
        &self,
        account: &str,
        key: &str,
        container: &str,
        blob: &str,
        content: Vec<u8>,
    ) {
        let endpoint = self.azurite.as_ref().unwrap().blob_endpoint(account);
        let c = endpoint
            .join(&format!("{container}?restype=container"))
            .unwrap();
        let r = self
            .shared_key_request(reqwest::Method::PUT, account, key, c, &[], None)
            .await;
        assert!(
            r.status().is_success() || r.status() == 409,
            "{}",
            r.text().await.unwrap()
        );
        let u = endpoint.join(&format!("{container}/{blob}")).unwrap();
        let len = content.len().to_string();
        let h = [
            ("x-ms-blob-type", "BlockBlob"),
            ("content-length", len.as_str()),
        ];
        let r = self
            .shared_key_request(reqwest::Method::PUT, account, key, u, &h, Some(content))
            .await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
}

/// The `Azure-AsyncOperation` URL of a long-running operation's response.
pub fn async_operation(headers: &reqwest::header::HeaderMap) -> String {
    headers["azure-asyncoperation"]
        .to_str()
        .unwrap()
        .to_string()
}

pub fn httpdate() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap()
}

/// A small valid zip with the given entries.
pub fn make_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        for (name, data) in entries {
            w.start_file(
                *name,
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored),
            )
            .unwrap();
            std::io::Write::write_all(&mut w, data).unwrap();
        }
        w.finish().unwrap();
    }
    buf.into_inner()
}

/// A minimal valid template body (2024-02-01) for the default scenario.
pub fn template_body(customize: Value, distribute: Value) -> Value {
    serde_json::json!({
        "location": defaults::LOCATION,
        "tags": {"createdBy": "aib-emulator-tests"},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {defaults::MANAGED_IDENTITY_RESOURCE_ID: {}}},
        "properties": {
            "buildTimeoutInMinutes": 60,
            "vmProfile": {"vmSize": "Standard_D2s_v3", "osDiskSizeGB": 30},
            "source": {"type": "PlatformImage", "publisher": "Canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts-gen2", "version": "latest"},
            "customize": customize,
            "distribute": distribute,
        }
    })
}
