//! The live state one emulator shares between its connections and background builds: the
//! scenario, the signing keys, the registered certificates, the template store, faults, the
//! request log, downloads and the HTTP client builds use. Also mints the access tokens that
//! Entra and IMDS hand out, so both issue the same shape.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::task::AbortHandle;
use url::Url;

use crate::{
    artifacts::Download,
    ca::CertificateAuthority,
    config::{Config, ServicePrincipalConfig},
    faults::Faults,
    image_templates::Store,
    jwt::{Certificate, SigningKey},
    request_log::RequestLog,
    swagger::SwaggerSpec,
};

/// Api-versions whose swagger the emulator validates PUT bodies with (when present on disk).
pub const VALIDATED_API_VERSIONS: [&str; 2] = ["2024-02-01", "2025-10-01"];

pub struct State {
    pub config: Config,
    pub base_url: Url,
    pub ca: CertificateAuthority,
    /// Signs Entra/IMDS access tokens.
    pub token_key: SigningKey,
    /// Signs Azure DevOps OIDC tokens.
    pub oidc_key: SigningKey,
    /// Certificates registered per client id.
    pub certificates: HashMap<String, Vec<Certificate>>,
    /// Audiences ARM accepts, without trailing slashes.
    pub arm_audiences: Vec<String>,
    pub swagger: HashMap<String, SwaggerSpec>,
    pub faults: Faults,
    pub log: RequestLog,
    pub templates: Mutex<Store>,
    /// Gallery image versions the runs created.
    pub galleries: Mutex<crate::gallery::Galleries>,
    pub downloads: Mutex<Vec<Download>>,
    /// Trusts only the emulator's CA (Azurite started with a certificate from it, or plain HTTP).
    pub http: reqwest::Client,
    background: Mutex<Vec<AbortHandle>>,
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// RFC 3339 with 7 fractional digits, as ARM writes times.
pub fn arm_time(t: OffsetDateTime) -> String {
    let t = t
        .replace_nanosecond(t.nanosecond() / 100 * 100)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

impl State {
    pub fn new(config: Config, ca: CertificateAuthority, base_url: Url) -> Result<Self> {
        let mut certificates: HashMap<String, Vec<Certificate>> = HashMap::new();
        for sp in &config.service_principals {
            for pem in &sp.certificates {
                let cert = Certificate::from_pem(pem)
                    .with_context(|| format!("reading a certificate of client {}", sp.client_id))?;
                certificates
                    .entry(sp.client_id.to_ascii_lowercase())
                    .or_default()
                    .push(cert);
            }
        }
        let mut arm_audiences: Vec<String> = config
            .arm_audiences
            .iter()
            .map(|a| a.trim_end_matches('/').to_string())
            .collect();
        arm_audiences.push(base_url.as_str().trim_end_matches('/').to_string());

        let mut swagger = HashMap::new();
        if config.swagger_validation {
            for version in VALIDATED_API_VERSIONS {
                match SwaggerSpec::default_image_builder_path(version) {
                    Some(path) => {
                        let spec = SwaggerSpec::load(&path).with_context(|| {
                            format!("loading the Image Builder spec {}", path.display())
                        })?;
                        swagger.insert(version.to_string(), spec);
                    }
                    None if crate::swagger::specs_required(std::env::var("CI").ok().as_deref()) => {
                        anyhow::bail!(
                            "the Image Builder swagger for {version} is absent and CI is set: template bodies must be validated in CI (put ../shared/specs beside the repository, or set AIB_SPECS_DIR)"
                        );
                    }
                    None => {
                        tracing::warn!(
                            "Image Builder swagger for {version} not found (../shared/specs is absent): \
                             template bodies of that api-version are NOT validated"
                        );
                        eprintln!(
                            "aib-emulator: WARNING: the Image Builder swagger for {version} was not found; \
                             PUT bodies are not validated (Emulator::swagger_validation_enabled() is false)"
                        );
                    }
                }
            }
        }
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_der(ca.cert_der())?])
            .timeout(std::time::Duration::from_secs(30))
            .no_proxy()
            .build()?;
        Ok(Self {
            log: RequestLog::new(config.request_log.as_deref())?,
            faults: {
                let faults = Faults::default();
                for f in &config.faults {
                    faults
                        .add(f.clone())
                        .with_context(|| format!("fault path {:?}", f.path))?;
                }
                faults
            },
            token_key: SigningKey::generate()?,
            oidc_key: SigningKey::generate()?,
            certificates,
            arm_audiences,
            swagger,
            templates: Mutex::new(Store::default()),
            galleries: Mutex::new(Default::default()),
            downloads: Mutex::new(Vec::new()),
            http,
            background: Mutex::new(Vec::new()),
            config,
            ca,
            base_url,
        })
    }

    pub fn token_endpoint(&self, tenant: &str) -> Url {
        self.base_url
            .join(&format!("{tenant}/oauth2/v2.0/token"))
            .expect("valid URL")
    }

    pub fn find_tenant(&self, tenant: &str) -> Option<&str> {
        self.config
            .tenants
            .iter()
            .find(|t| t.eq_ignore_ascii_case(tenant))
            .map(String::as_str)
    }

    pub fn find_service_principal(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Option<&ServicePrincipalConfig> {
        self.config.service_principals.iter().find(|sp| {
            sp.tenant_id.eq_ignore_ascii_case(tenant)
                && sp.client_id.eq_ignore_ascii_case(client_id)
        })
    }

    /// An Entra v1 access token (as ARM and Storage receive them) for an app or identity.
    pub fn mint_token(
        &self,
        tenant: &str,
        app_id: &str,
        object_id: &str,
        audience: &str,
        lifetime_secs: i64,
        extra: Value,
    ) -> String {
        let now = now().unix_timestamp();
        let mut claims = json!({
            "aud": audience,
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": now - 300,
            "nbf": now - 300,
            "exp": now + lifetime_secs,
            "aio": "E2NgYDhw7/emulated",
            "appid": app_id,
            "appidacr": "1",
            "idp": format!("https://sts.windows.net/{tenant}/"),
            "idtyp": "app",
            "oid": object_id,
            "rh": "0.AAAA-emulated.",
            "sub": object_id,
            "tid": tenant,
            "uti": uuid::Uuid::new_v4().simple().to_string(),
            "ver": "1.0",
        });
        if let (Some(map), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            map.extend(extra);
        }
        self.token_key.sign(&claims)
    }

    /// A token for the first service principal (tests use it to reach ARM directly).
    pub fn mint_app_token(&self, audience: &str, lifetime_secs: i64) -> String {
        let sp = self
            .config
            .service_principals
            .first()
            .cloned()
            .unwrap_or_default();
        self.mint_token(
            &sp.tenant_id,
            &sp.client_id,
            &sp.object_id,
            audience,
            lifetime_secs,
            json!({}),
        )
    }

    /// Runs `future` in the background until it ends or the emulator stops.
    pub fn spawn_background(&self, future: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(future).abort_handle();
        let mut background = self.background.lock().unwrap();
        background.retain(|h| !h.is_finished());
        background.push(handle);
    }

    pub fn abort_background(&self) {
        for h in self.background.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    /// Every blob endpoint of the scenario (artifact downloads are only followed to these).
    pub fn blob_endpoints(&self) -> Vec<String> {
        self.config
            .storage_accounts
            .iter()
            .chain(std::iter::once(&self.config.staging_storage))
            .map(|a| a.blob_endpoint.clone())
            .collect()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        self.abort_background();
    }
}

pub type Shared = Arc<State>;
