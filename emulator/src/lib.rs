//! `aib-emulator`: a local stand-in for the Azure services `aib-task` talks to, for its tests and
//! demo only (never shipped). One HTTPS origin on loopback answers as Entra ID (client
//! credentials with a secret, a certificate assertion or a federated token), the Azure DevOps OIDC
//! endpoint, IMDS, and ARM (subscriptions, resource groups, storage accounts, platform images and
//! Azure VM Image Builder with its long-running operations, builds, logs and run outputs). Blob
//! storage itself is Azurite, started by [`azurite::Azurite`].
//!
//! Using it from a test of the task:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use aib_emulator::{Config, Emulator, azurite::{Azurite, AzuriteOptions, AzuriteTls}, ca::CertificateAuthority, defaults};
//! // Optional: Azurite over HTTPS with a certificate from the emulator's CA, wired to the
//! // scenario's storage accounts (skip when `Azurite::available()` is false).
//! let ca = CertificateAuthority::generate()?;
//! let (cert, key) = ca.issue_server_cert(&["127.0.0.1", "localhost"])?;
//! let mut config = Config { ca: Some(ca), ..Config::default() };
//! let azurite = Azurite::start(AzuriteOptions {
//!     tls: Some(AzuriteTls::Pem { cert, key }),
//!     oauth_basic: true,
//!     accounts: config.azurite_accounts(),
//! })?;
//! config.use_azurite(&azurite);
//! let emulator = Emulator::start(config).await?;
//! // Give the task: ENDPOINT_URL_<id> = emulator.base_url() (ARM), the authority (data key
//! // ACTIVEDIRECTORYAUTHORITY) = emulator.base_url(), TENANTID = defaults::TENANT_ID,
//! // SERVICEPRINCIPALID/KEY = defaults::CLIENT_ID/CLIENT_SECRET, SUBSCRIPTIONID =
//! // defaults::SUBSCRIPTION_ID, SSL_CERT_FILE / AGENT_CAINFO = emulator.ca_pem_path(), and for
//! // workload identity SYSTEM_OIDCREQUESTURI = emulator.oidc_request_uri(plan, job) with
//! // the job access token defaults::JOB_ACCESS_TOKEN.
//! // Afterwards inspect emulator.templates(), emulator.downloads(), emulator.requests(),
//! // emulator.build_log(…) (also while a build runs).
//! # Ok(()) }
//! ```
//!
//! Map of the crate: [`config`] (the scenario) → [`Emulator::start`] (here) → [`server`] (TLS,
//! connections, faults, request log) → the service modules ([`entra`], [`oidc`], [`imds`], [`arm`]
//! → [`storage_accounts`], [`compute`], [`image_templates`] → [`gallery`], [`artifacts`], [`packer_log`],
//! [`build_log`] → [`blobs`]).

pub mod arm;
pub mod artifacts;
pub mod authorization;
pub mod azurite;
pub mod blobs;
pub mod build_log;
pub mod ca;
pub mod compute;
pub mod compute_skus;
pub mod config;
pub mod entra;
pub mod faults;
pub mod gallery;
pub mod image_templates;
pub mod imds;
pub mod jwt;
pub mod network;
pub mod oidc;
pub mod packer_log;
pub mod preflight;
pub mod providers;
pub mod request_log;
pub mod scenario;
pub mod server;
pub mod shared_key;
pub mod state;
pub mod storage_accounts;
pub mod swagger;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::{sync::watch, task::JoinHandle};
use url::Url;

pub use artifacts::Download;
pub use config::{Config, LockConfig, LockLevel, defaults};
pub use faults::{Fault, FaultAction};
pub use image_templates::{RunState, RunSubState, TemplateEvent};
pub use request_log::RecordedRequest;

/// A running emulator. Stops serving on [`Emulator::shutdown`] or when dropped.
pub struct Emulator {
    state: Arc<state::State>,
    addr: SocketAddr,
    imds_addr: Option<SocketAddr>,
    ca_path: PathBuf,
    _ca_temp: Option<tempfile::TempPath>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Generates keys (and a CA unless the config brings one), binds 127.0.0.1 (`config.port`, 0 =
    /// any free port) and starts serving.
    pub async fn start(config: Config) -> Result<Emulator> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let ca = match &config.ca {
            Some(ca) => ca.clone(),
            None => ca::CertificateAuthority::generate()?,
        };
        let (ca_path, ca_temp) = match &config.ca_out {
            Some(path) => {
                ca.write_pem(path)?;
                (path.clone(), None)
            }
            None => {
                let file = tempfile::Builder::new()
                    .prefix("aib-emulator-ca-")
                    .suffix(".pem")
                    .tempfile()?;
                ca.write_pem(file.path())?;
                let temp = file.into_temp_path();
                (temp.to_path_buf(), Some(temp))
            }
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{}", config.port))?;
        let addr = listener.local_addr()?;
        let base_url = Url::parse(&format!("https://127.0.0.1:{}/", addr.port()))?;
        let imds_listener = if config.imds_http {
            Some(tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?)
        } else {
            None
        };
        let imds_addr = imds_listener.as_ref().map(|l| l.local_addr()).transpose()?;

        let state = Arc::new(state::State::new(config, ca.clone(), base_url)?);
        let (stop, stop_rx) = watch::channel(false);
        let (cert, key) = ca.issue_server_cert(&["127.0.0.1", "localhost"])?;
        let acceptor = server::tls_acceptor(&cert, &key)?;
        let mut servers = vec![tokio::spawn(server::serve(
            listener,
            Some(acceptor),
            server::router(state.clone()),
            stop_rx.clone(),
        ))];
        if let Some(l) = imds_listener {
            servers.push(tokio::spawn(server::serve(
                l,
                None,
                server::imds_router(state.clone()),
                stop_rx,
            )));
        }
        Ok(Emulator {
            state,
            addr,
            imds_addr,
            ca_path,
            _ca_temp: ca_temp,
            stop,
            servers,
        })
    }

    /// `https://127.0.0.1:PORT/`: the authority host (Entra), the ARM endpoint, the OIDC host and
    /// IMDS paths all live on this origin.
    pub fn base_url(&self) -> Url {
        self.state.base_url.clone()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/` serving only IMDS paths, when `config.imds_http` was set.
    pub fn imds_http_url(&self) -> Option<Url> {
        self.imds_addr
            .map(|a| Url::parse(&format!("http://127.0.0.1:{}/", a.port())).expect("valid URL"))
    }

    pub fn ca(&self) -> &ca::CertificateAuthority {
        &self.state.ca
    }

    /// The CA certificate file (PEM) clients should trust.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_path
    }

    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// The token endpoint of a tenant: `{base}{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self, tenant: &str) -> Url {
        self.state.token_endpoint(tenant)
    }

    /// The value of `SYSTEM_OIDCREQUESTURI` for a job of the configured project.
    pub fn oidc_request_uri(&self, plan_id: &str, job_id: &str) -> Url {
        let d = &self.state.config.devops;
        self.state
            .base_url
            .join(&format!(
                "{}/{}/_apis/distributedtask/hubs/build/plans/{plan_id}/jobs/{job_id}/oidctoken",
                d.organization, d.project_id
            ))
            .expect("valid URL")
    }

    /// The value of `ACTIONS_ID_TOKEN_REQUEST_URL` for a GitHub Actions job (the runner's shape:
    /// `…/_apis/distributedtask/hubs/Actions/plans/<plan>/jobs/<job>/idtoken?api-version=2.0`).
    pub fn github_id_token_request_url(&self, plan_id: &str, job_id: &str) -> Url {
        self.state
            .base_url
            .join(&format!(
                "github/00000000-0000-0000-0000-000000000000/_apis/distributedtask/hubs/Actions/plans/{plan_id}/jobs/{job_id}/idtoken?api-version=2.0"
            ))
            .expect("valid URL")
    }

    /// Mints an access token for the first service principal as the token endpoint would, for
    /// `audience`, valid for `lifetime_secs` from now (negative: already expired).
    pub fn mint_access_token(&self, audience: &str, lifetime_secs: i64) -> String {
        self.state.mint_app_token(audience, lifetime_secs)
    }

    /// Every request answered so far (control routes excepted), secrets removed.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.log.all()
    }

    /// Adds a fault. Panics when `fault.path` is not a valid regular expression.
    pub fn add_fault(&self, fault: Fault) {
        let path = fault.path.clone();
        if let Err(e) = self.state.faults.add(fault) {
            panic!("fault path {path:?} is not a valid regular expression: {e}");
        }
    }

    pub fn clear_faults(&self) {
        self.state.faults.clear();
    }

    /// Whether PUT bodies are checked against the Image Builder swagger (false when the specs
    /// were not found, or validation was turned off in the config).
    pub fn swagger_validation_enabled(&self) -> bool {
        !self.state.swagger.is_empty()
    }

    /// A template as GET answers it, if it exists.
    pub fn template(&self, subscription: &str, resource_group: &str, name: &str) -> Option<Value> {
        self.state
            .templates
            .lock()
            .unwrap()
            .view(&self.state, subscription, resource_group, name)
    }

    /// Every existing template as `(resource id, GET body)`.
    pub fn templates(&self) -> Vec<(String, Value)> {
        self.state.templates.lock().unwrap().views(&self.state)
    }

    /// Resource ids of deleted templates, in order.
    pub fn deleted_templates(&self) -> Vec<String> {
        self.state.templates.lock().unwrap().deleted.clone()
    }

    /// What happened to templates (created, provisioned, run sub-states, cancel, deleted), in order.
    pub fn template_events(&self) -> Vec<TemplateEvent> {
        self.state.templates.lock().unwrap().events.clone()
    }

    /// The last run's build log of a template: its URL (the one a failed run's
    /// `lastRunStatus.message` names) and every byte the emulator has appended to it so far, from
    /// its own record (not read back from Azurite; equal to the blob, see [`crate::build_log`]). None
    /// before a run has started writing one, and once the template is gone.
    pub fn build_log(
        &self,
        subscription: &str,
        resource_group: &str,
        template_name: &str,
    ) -> Option<(String, Vec<u8>)> {
        self.state
            .templates
            .lock()
            .unwrap()
            .build_log(subscription, resource_group, template_name)
    }

    /// Every artifact the builds downloaded (or failed to).
    pub fn downloads(&self) -> Vec<Download> {
        self.state.downloads.lock().unwrap().clone()
    }

    /// Stops accepting connections, closes open ones and stops background builds.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for server in std::mem::take(&mut self.servers) {
            let _ = server.await;
        }
        self.state.abort_background();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for server in &self.servers {
            server.abort();
        }
        self.state.abort_background();
    }
}
