//! Sign-in: turns the service connection (or, outside a pipeline, the usual Azure variables or
//! the Azure CLI) into a [`TokenSource`] that hands out bearer tokens per resource, each one
//! announced to the agent as a secret before it is used anywhere.
//!
//! Map: [`sign_in`] picks the way in and the cloud ([`cloud`]); the ways are the client
//! credentials grant of [`entra`] (a secret, a [`certificate`] assertion, or a [`federation`]
//! token from Azure DevOps or GitHub Actions), [`managed_identity`] (IMDS), and [`local`]
//! (GitHub's OIDC token, environment variables, then `azure_identity`'s Azure CLI credential). Every request goes through the transport's
//! client (the agent's proxy and trusted roots) except IMDS, with the bounded retries of
//! [`retry`]. [`TokenSource`] keeps one cached token per resource and renews it ahead of expiry,
//! so a build that runs for hours never presents an expired token.

pub mod certificate;
pub mod cloud;
pub mod entra;
pub mod federation;
pub mod local;
pub mod managed_identity;
pub mod retry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow};
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::time::{Duration, OffsetDateTime};

use crate::agent::{Cloud, Console, Credentials, Environment, ServiceConnection};
use certificate::ClientCertificate;
use entra::{ClientCredentials, Proof, TokenEndpoint};
use federation::{FederatedToken, OidcRequest};
use managed_identity::ManagedIdentity;
use retry::{RetryPolicy, sign_in_policy};

/// The longest a token is renewed ahead of its expiry.
const MAX_RENEWAL_MARGIN: Duration = Duration::minutes(5);
/// A token this close to expiry is not handed out even when renewing it failed.
const MIN_REMAINING: Duration = Duration::seconds(30);

/// Where tokens come from.
pub(crate) enum Acquirer {
    ClientCredentials(ClientCredentials),
    ManagedIdentity(ManagedIdentity),
    AzureCli(Arc<azure_identity::AzureCliCredential>),
}

impl Acquirer {
    async fn token(&self, scope: &str) -> Result<AccessToken> {
        match self {
            Acquirer::ClientCredentials(c) => c.token(scope).await,
            Acquirer::ManagedIdentity(m) => m.token(scope).await,
            Acquirer::AzureCli(cli) => cli
                .get_token(&[scope], None)
                .await
                .map_err(|e| anyhow!(error_chain(&e)))
                .context(
                    "the Azure CLI gave no token: run `az login` (and `az account set --subscription …`), or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH / AZURE_FEDERATED_TOKEN_FILE)",
                ),
        }
    }
}

/// A cached token and when it was obtained (its lifetime decides how early it is renewed).
#[derive(Clone)]
struct Cached {
    token: AccessToken,
    obtained: OffsetDateTime,
}

impl Cached {
    /// Renewed at the earlier of five minutes before expiry and half its lifetime, so an
    /// hour-long token lasts 55 minutes and a token of a few seconds is never handed out stale.
    fn renew_at(&self) -> OffsetDateTime {
        let lifetime = self.token.expires_on - self.obtained;
        let margin = (lifetime / 2_i32).clamp(Duration::ZERO, MAX_RENEWAL_MARGIN);
        self.token.expires_on - margin
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Bearer tokens for one signed-in identity: one cached token per resource (ARM, storage),
/// renewed ahead of expiry, every token announced with `task.setsecret` before it is returned.
pub struct TokenSource {
    acquirer: Acquirer,
    console: Arc<Console>,
    /// Who signed in, for messages: "service principal (certificate) '<id>' in tenant '<t>'".
    identity: String,
    slots: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// The credential a connection describes, without the pipeline's variables: enough for a
    /// client secret, a certificate and a managed identity at the real IMDS. Workload identity
    /// federation needs them: use [`TokenSource::for_pipeline`].
    pub fn for_connection(
        connection: &ServiceConnection,
        cloud: &Cloud,
        http: reqwest::Client,
        console: Arc<Console>,
    ) -> Result<TokenSource> {
        TokenSource::for_pipeline(connection, cloud, &Environment::default(), http, console)
    }

    /// The credential a connection describes, reading what workload identity federation
    /// (`SYSTEM_OIDCREQUESTURI`, the job access token) and managed identity
    /// (`AIB_IMDS_ENDPOINT`) need from `env`. The connection's secrets are announced first.
    pub fn for_pipeline(
        connection: &ServiceConnection,
        cloud: &Cloud,
        env: &Environment,
        http: reqwest::Client,
        console: Arc<Console>,
    ) -> Result<TokenSource> {
        for secret in connection.credentials.secrets() {
            console.set_secret(secret);
        }
        let retry = sign_in_policy();
        let tenant = connection.tenant_id.as_deref().unwrap_or_default();
        let client = connection.client_id.clone().unwrap_or_default();
        let principal = |kind: &str| format!("{kind} '{client}' in tenant '{tenant}'");
        let (acquirer, identity) = match &connection.credentials {
            Credentials::ManagedIdentity { client_id } => {
                let identity = match client_id {
                    Some(id) => format!("managed identity (client id '{id}')"),
                    None => "managed identity (system-assigned)".to_owned(),
                };
                let mi = ManagedIdentity::new(env, client_id.clone(), Arc::clone(&console), retry)?;
                (Acquirer::ManagedIdentity(mi), identity)
            }
            credentials => {
                let variable =
                    |key: &str| format!("ENDPOINT_AUTH_PARAMETER_{}_{key}", connection.id);
                let proof = match credentials {
                    Credentials::ClientSecret { secret } => {
                        Proof::Secret(Secret::new(secret.secret().to_owned()))
                    }
                    Credentials::ClientCertificate { pem } => {
                        Proof::Certificate(ClientCertificate::from_pem(
                            pem.secret(),
                            &format!(
                                "the service connection's certificate ({})",
                                variable("SERVICEPRINCIPALCERTIFICATE")
                            ),
                        )?)
                    }
                    _ => Proof::Federated(FederatedToken::AzureDevOps(
                        OidcRequest::from_pipeline(
                            env,
                            &connection.id,
                            http.clone(),
                            Arc::clone(&console),
                            retry.clone(),
                        )
                        .with_context(|| {
                            format!(
                                "cannot sign in with the service connection '{}'",
                                connection.id
                            )
                        })?,
                    )),
                };
                let identity = principal(credentials.describe());
                let credentials = client_credentials(
                    cloud,
                    tenant,
                    &client,
                    proof,
                    http,
                    Arc::clone(&console),
                    retry,
                )
                .with_context(|| format!("cannot set up sign-in for {identity}"))?;
                (Acquirer::ClientCredentials(credentials), identity)
            }
        };
        Ok(TokenSource::new(acquirer, identity, console))
    }

    pub(crate) fn new(acquirer: Acquirer, identity: String, console: Arc<Console>) -> TokenSource {
        TokenSource {
            acquirer,
            console,
            identity,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Who signed in.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A bearer token for `scope`, from the cache while it is fresh.
    pub async fn token(&self, scope: &str) -> Result<Secret> {
        Ok(self.access_token(scope).await?.token)
    }

    /// A token for `scope` with its expiry. Renews when the cached one is due; when renewing
    /// fails but the cached token still has a while to live, that one is used (with a warning)
    /// and renewal is tried again on the next call.
    pub async fn access_token(&self, scope: &str) -> Result<AccessToken> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(slots.entry(scope.to_owned()).or_default())
        };
        let mut cached = slot.lock().await;
        let now = OffsetDateTime::now_utc();
        if let Some(current) = cached.as_ref().filter(|c| now < c.renew_at()) {
            self.console.set_secret(current.token.token.secret());
            return Ok(current.token.clone());
        }
        match self.acquirer.token(scope).await {
            Ok(token) => {
                self.console.set_secret(token.token.secret());
                tracing::debug!(
                    "new token for {scope} as {}, valid until {}",
                    self.identity,
                    token.expires_on
                );
                *cached = Some(Cached {
                    token: token.clone(),
                    obtained: now,
                });
                Ok(token)
            }
            Err(error) => {
                let now = OffsetDateTime::now_utc();
                if let Some(current) = cached
                    .as_ref()
                    .filter(|c| c.token.expires_on - now > MIN_REMAINING)
                {
                    self.console.warning(format!(
                        "renewing the token for {scope} as {} failed; the current one is used until it is due ({} s left): {error:#}",
                        self.identity,
                        (current.token.expires_on - now).whole_seconds()
                    ));
                    return Ok(current.token.clone());
                }
                let verb = if cached.is_some() {
                    "renewing the token"
                } else {
                    "signing in"
                };
                Err(error.context(format!("{verb} as {} for {scope} failed", self.identity)))
            }
        }
    }
}

/// The SDK clients (blob storage) ask for tokens through this, so theirs are cached and
/// announced the same way.
#[async_trait::async_trait]
impl TokenCredential for TokenSource {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.access_token(&scopes.join(" ")).await.map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("{e:#}"),
            )
        })
    }
}

/// The client credentials grant at the cloud's authority (ADFS when the authority says so).
fn client_credentials(
    cloud: &Cloud,
    tenant: &str,
    client_id: &str,
    proof: Proof,
    http: reqwest::Client,
    console: Arc<Console>,
    retry: RetryPolicy,
) -> Result<ClientCredentials> {
    let authority = cloud.authority.as_ref().ok_or_else(|| {
        anyhow!(
            "no Entra ID authority is known for {}; resolve the cloud with auth::cloud::resolve first",
            cloud.resource_manager
        )
    })?;
    Ok(ClientCredentials {
        endpoint: TokenEndpoint::new(authority, tenant, cloud.is_adfs())?,
        client_id: client_id.to_owned(),
        proof,
        http,
        console,
        retry,
    })
}

/// How the task signed in, for the log and for the rest of the task.
#[derive(Debug)]
pub struct SignedIn {
    pub tokens: Arc<TokenSource>,
    pub cloud: Cloud,
    pub subscription_id: Option<String>,
    pub subscription_name: Option<String>,
    /// "the service connection '<id>'", "environment variables (AZURE_CLIENT_ID, …)", "the Azure CLI".
    pub source: String,
}

/// Sign-in settings for use outside a pipeline (flags of the command line).
#[derive(Clone, Debug, Default)]
pub struct LocalOptions {
    /// `--subscription` / input `subscriptionId` / `AZURE_SUBSCRIPTION_ID`.
    pub subscription: Option<String>,
    /// `--resource-manager-url` / `AZURE_RESOURCE_MANAGER_URL`.
    pub resource_manager_url: Option<String>,
    /// Input `clientId`; `AZURE_CLIENT_ID` when unset.
    pub client_id: Option<String>,
    /// Input `tenantId`; `AZURE_TENANT_ID` when unset.
    pub tenant_id: Option<String>,
    /// Input `environment` (`AzureCloud`, `AzureUSGovernment`, `AzureChinaCloud`), overridden
    /// by `AZURE_AUTHORITY_HOST` / the resource manager URL.
    pub environment: Option<String>,
}

/// Signs in with the service connection `connection_id` when given (the `ibSubscription`
/// input), else as the Azure SDKs do outside a pipeline ([`local`]).
pub async fn sign_in(
    env: &Environment,
    connection_id: Option<&str>,
    options: &LocalOptions,
    http: reqwest::Client,
    console: &Arc<Console>,
) -> Result<SignedIn> {
    let Some(id) = connection_id.map(str::trim).filter(|id| !id.is_empty()) else {
        return local::sign_in(env, options, http, console);
    };
    let connection = ServiceConnection::from_env(env, id, "ibSubscription")?;
    for secret in connection.credentials.secrets() {
        console.set_secret(secret);
    }
    let cloud = cloud::resolve(&connection, &http).await?;
    let tokens = TokenSource::for_pipeline(&connection, &cloud, env, http, Arc::clone(console))?;
    Ok(SignedIn {
        tokens: Arc::new(tokens),
        cloud,
        subscription_id: connection
            .subscription_id
            .clone()
            .or_else(|| options.subscription.clone()),
        subscription_name: connection.subscription_name.clone(),
        source: format!("the service connection '{}'", connection.id),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(lifetime_secs: i64, age_secs: i64) -> (Cached, OffsetDateTime) {
        let obtained = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let token = AccessToken::new(
            Secret::new("t"),
            obtained + Duration::seconds(lifetime_secs),
        );
        (
            Cached { token, obtained },
            obtained + Duration::seconds(age_secs),
        )
    }

    #[test]
    fn tokens_are_renewed_ahead_of_expiry() {
        // An hour-long token: renewed five minutes before it expires.
        let (c, _) = cached(3600, 0);
        assert_eq!((c.token.expires_on - c.renew_at()).whole_seconds(), 300);
        // A token of four seconds: renewed after two, never handed out expired.
        let (c, now) = cached(4, 1);
        assert!(now < c.renew_at());
        let (c, now) = cached(4, 2);
        assert!(now >= c.renew_at());
        // Already expired when it arrived (a skewed clock): renewed at once.
        let (c, now) = cached(-10, 0);
        assert!(now >= c.renew_at());
    }
}
