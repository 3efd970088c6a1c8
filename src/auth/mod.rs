//! Sign-in: turns the service connection into a token credential (the official `azure_identity`
//! credentials, sent through our transport so the agent's proxy and trusted roots apply) and
//! hands out bearer tokens per resource, announcing each to the agent as a secret before it is
//! used anywhere.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};

use crate::agent::{Cloud, Console, Credentials, ServiceConnection};

/// Bearer tokens for one signed-in identity.
pub struct TokenSource {
    credential: Arc<dyn TokenCredential>,
    console: Arc<Console>,
    /// Who signed in, for error messages.
    identity: String,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// The credential the connection describes. Its secrets are announced to the agent first.
    pub fn for_connection(
        connection: &ServiceConnection,
        cloud: &Cloud,
        http: reqwest::Client,
        console: Arc<Console>,
    ) -> Result<TokenSource> {
        for secret in connection.credentials.secrets() {
            console.set_secret(secret);
        }
        let options = client_options(cloud, http)?;
        let tenant = connection.tenant_id.as_deref().unwrap_or_default();
        let client = connection.client_id.clone().unwrap_or_default();
        let identity = format!(
            "{} '{client}' in tenant '{tenant}'",
            connection.credentials.describe()
        );
        let credential: Arc<dyn TokenCredential> = match &connection.credentials {
            Credentials::ClientSecret { secret } => ClientSecretCredential::new(
                tenant,
                client.clone(),
                Secret::new(secret.secret().to_owned()),
                Some(ClientSecretCredentialOptions {
                    client_options: options,
                }),
            )
            .with_context(|| format!("cannot set up sign-in for {identity}"))?,
            other => bail!(
                "the service connection '{}' signs in with {}, which this version of aib-task does not support yet; use a service principal with a client secret",
                connection.id,
                other.describe()
            ),
        };
        Ok(TokenSource {
            credential,
            console,
            identity,
        })
    }

    /// A bearer token for `scope`, from the credential's cache while it is fresh.
    pub async fn token(&self, scope: &str) -> Result<Secret> {
        let token = self
            .credential
            .get_token(&[scope], None)
            .await
            .map_err(|e| anyhow!(error_chain(&e)))
            .with_context(|| format!("signing in as {} for {scope} failed", self.identity))?;
        self.console.set_secret(token.token.secret());
        Ok(token.token)
    }
}

/// The SDK clients (blob storage) ask for tokens through this, so their tokens are announced too.
#[async_trait::async_trait]
impl TokenCredential for TokenSource {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let token = self.credential.get_token(scopes, options).await?;
        self.console.set_secret(token.token.secret());
        Ok(token)
    }
}

/// `azure_identity` options that send through `http` and sign in at the cloud's authority.
fn client_options(cloud: &Cloud, http: reqwest::Client) -> Result<ClientOptions> {
    let authority = cloud.authority.as_ref().ok_or_else(|| {
        anyhow!(
            "the service connection gives no Entra ID authority for {}",
            cloud.resource_manager
        )
    })?;
    let mut custom = CustomConfiguration::default();
    custom.authority_host = authority.as_str().trim_end_matches('/').to_owned();
    // Bounded: a sign-in that cannot succeed (a certificate the agent does not trust, a
    // proxy that refuses) must fail in seconds with its cause, not after a minute of retries.
    let retry = RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: azure_core::time::Duration::milliseconds(500),
        max_retries: 4,
        max_total_elapsed: azure_core::time::Duration::seconds(20),
        max_delay: azure_core::time::Duration::seconds(4),
    });
    Ok(ClientOptions {
        transport: Some(Transport::new(Arc::new(http))),
        retry,
        cloud: Some(Arc::new(CloudConfiguration::Custom(custom))),
        ..Default::default()
    })
}

/// An error and every cause under it on one line, so the root cause (an untrusted certificate,
/// an AADSTS code) reaches the user and not only the SDK's summary of it.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
