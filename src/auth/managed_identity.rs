//! Managed identity: tokens from the Azure Instance Metadata Service (IMDS) of the agent's VM,
//! for the system-assigned identity or the user-assigned one the connection names by client id.
//!
//! IMDS is `http://169.254.169.254/`; [`IMDS_ENDPOINT_VARIABLE`] (`AIB_IMDS_ENDPOINT`) points
//! elsewhere (tests, a local proxy). `azure_identity::ManagedIdentityCredential` is not used:
//! its IMDS address is fixed (its `IMDS_ENDPOINT` variable only applies to Azure Arc), and IMDS
//! must be reached directly, never through the agent's proxy, so it gets its own client here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use azure_core::credentials::AccessToken;
use azure_core::time::OffsetDateTime;
use url::Url;

use super::entra::{parse_token_answer, resource_of};
use super::retry::{Failure, RetryPolicy, read_answer, with_retries};
use crate::agent::{Console, Environment};

/// The variable that overrides the IMDS address.
pub const IMDS_ENDPOINT_VARIABLE: &str = "AIB_IMDS_ENDPOINT";
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254/";
const IMDS_API_VERSION: &str = "2018-02-01";

/// The managed identity of the machine the task runs on.
pub struct ManagedIdentity {
    endpoint: Url,
    pub client_id: Option<String>,
    http: reqwest::Client,
    console: Arc<Console>,
    pub retry: RetryPolicy,
}

impl ManagedIdentity {
    pub fn new(
        env: &Environment,
        client_id: Option<String>,
        console: Arc<Console>,
        retry: RetryPolicy,
    ) -> Result<ManagedIdentity> {
        let raw = env
            .get(IMDS_ENDPOINT_VARIABLE)
            .unwrap_or(DEFAULT_IMDS_ENDPOINT)
            .trim();
        let mut endpoint = Url::parse(raw)
            .with_context(|| format!("{IMDS_ENDPOINT_VARIABLE} is not a URL: '{raw}'"))?;
        if !endpoint.path().ends_with('/') {
            let path = format!("{}/", endpoint.path());
            endpoint.set_path(&path);
        }
        // IMDS answers on the machine's link-local address only: never through a proxy.
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("aib-task/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client for IMDS")?;
        Ok(ManagedIdentity {
            endpoint,
            client_id: client_id.filter(|c| !c.trim().is_empty()),
            http,
            console,
            retry,
        })
    }

    /// `GET {imds}metadata/identity/oauth2/token?api-version=2018-02-01&resource=…[&client_id=…]`.
    pub fn request_url(&self, scope: &str) -> Result<Url> {
        let mut url = self.endpoint.join("metadata/identity/oauth2/token")?;
        url.query_pairs_mut()
            .append_pair("api-version", IMDS_API_VERSION)
            .append_pair("resource", resource_of(scope));
        if let Some(id) = &self.client_id {
            url.query_pairs_mut().append_pair("client_id", id.trim());
        }
        Ok(url)
    }

    pub async fn token(&self, scope: &str) -> Result<AccessToken> {
        let url = self.request_url(scope)?;
        with_retries(
            &self.retry,
            &self.console,
            "asking the managed identity endpoint (IMDS) for a token",
            || self.attempt(url.clone()),
        )
        .await
    }

    async fn attempt(&self, url: Url) -> Result<AccessToken, Failure> {
        let response = self
            .http
            .get(url)
            .header("metadata", "true")
            .send()
            .await
            .map_err(|e| {
                let hint = "the managed identity endpoint did not answer: is the agent an Azure VM (or scale set) with a managed identity?";
                match Failure::from_send(e, "IMDS") {
                    Failure::Transient { error, retry_after } => Failure::Transient {
                        error: error.context(hint),
                        retry_after,
                    },
                    Failure::Fatal(error) => Failure::Fatal(error.context(hint)),
                }
            })?;
        let (status, headers, body) = read_answer(response, "IMDS's answer").await?;
        if status.is_success() {
            return parse_token_answer(&body, OffsetDateTime::now_utc())
                .context("IMDS answered with an unexpected body")
                .map_err(Failure::Fatal);
        }
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let text = json["error_description"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
        let hint = match (status.as_u16(), &self.client_id) {
            (400, Some(id)) => format!(
                " Check that the user-assigned managed identity with client id '{id}' (the connection's msiClientId) is assigned to the agent's VM."
            ),
            (400, None) => " Check that the agent's VM has a system-assigned managed identity, or set the connection's managed identity client id.".to_owned(),
            _ => String::new(),
        };
        let error = anyhow!("IMDS answered {status} to the token request: {text}{hint}");
        // IMDS answers 404 while an identity is being assigned and 410 while it is updated.
        Err(Failure::from_status(status, &headers, error, &[404, 410]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names_the_resource_and_the_client_id() {
        let console = Console::with_writer(Box::new(std::io::sink()), false);
        let mi = ManagedIdentity::new(
            &Environment::default(),
            Some("mi-1".into()),
            console.clone(),
            super::super::retry::sign_in_policy(),
        )
        .unwrap();
        assert_eq!(
            mi.request_url("https://management.azure.com//.default")
                .unwrap()
                .as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F&client_id=mi-1"
        );
        let env = Environment::from_pairs([(IMDS_ENDPOINT_VARIABLE, "http://127.0.0.1:9/base")]);
        let mi = ManagedIdentity::new(&env, None, console, super::super::retry::sign_in_policy())
            .unwrap();
        assert_eq!(
            mi.request_url("https://storage.azure.com/.default")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/base/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fstorage.azure.com"
        );
    }
}
