//! The Entra ID (or Azure Stack ADFS) token endpoint: the client credentials grant with a client
//! secret, a certificate assertion or a federated token, its answer, and its errors turned into
//! what a user can act on (the AADSTS code, what it means, what to change).
//!
//! The request is written by hand rather than through `azure_identity`'s `ClientSecretCredential`
//! / `ClientAssertionCredential`: those always post to `{authority}/{tenant}/oauth2/v2.0/token`
//! (an ADFS authority takes no tenant segment and speaks the v1 form), cache with a fixed
//! five-minute margin, and re-use one assertion source per credential. Here every attempt gets a
//! fresh assertion (a new `jti`, a new OIDC token), retries are bounded and said in the log, and
//! the caching lives in one place, `super::TokenSource`.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use azure_core::credentials::{AccessToken, Secret};
use azure_core::time::OffsetDateTime;
use serde_json::Value;
use url::Url;

use super::certificate::ClientCertificate;
use super::federation::FederatedToken;
use super::retry::{Failure, RetryPolicy, read_answer, with_retries};
use crate::agent::Console;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Where client credentials are exchanged for tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEndpoint {
    pub url: Url,
    /// ADFS (Azure Stack disconnected): `{authority}oauth2/token`, asked for a `resource`.
    pub adfs: bool,
}

impl TokenEndpoint {
    /// `{authority}{tenant}/oauth2/v2.0/token`, or `{authority}oauth2/token` for ADFS.
    pub fn new(authority: &Url, tenant: &str, adfs: bool) -> Result<TokenEndpoint> {
        let mut base = authority.clone();
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let path = if adfs {
            "oauth2/token".to_owned()
        } else {
            let valid = !tenant.is_empty()
                && tenant
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
            if !valid {
                bail!(
                    "the tenant id '{tenant}' is not a tenant id or domain name (expected a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47)"
                );
            }
            format!("{tenant}/oauth2/v2.0/token")
        };
        let url = base
            .join(&path)
            .with_context(|| format!("cannot form the token endpoint under {authority}"))?;
        Ok(TokenEndpoint { url, adfs })
    }
}

/// What proves the application's identity.
pub enum Proof {
    Secret(Secret),
    Certificate(ClientCertificate),
    /// A token from another issuer (Azure DevOps, a Kubernetes token file).
    Federated(FederatedToken),
}

impl Proof {
    pub fn describe(&self) -> &'static str {
        match self {
            Proof::Secret(_) => "client secret",
            Proof::Certificate(_) => "certificate",
            Proof::Federated(_) => "federated token",
        }
    }
}

/// The client credentials grant for one application.
pub struct ClientCredentials {
    pub endpoint: TokenEndpoint,
    pub client_id: String,
    pub proof: Proof,
    pub http: reqwest::Client,
    pub console: Arc<Console>,
    pub retry: RetryPolicy,
}

impl ClientCredentials {
    /// A new token for `scope` (`<resource>/.default`), every attempt with a fresh proof.
    pub async fn token(&self, scope: &str) -> Result<AccessToken> {
        with_retries(
            &self.retry,
            &self.console,
            "asking Entra ID for a token",
            || self.attempt(scope),
        )
        .await
    }

    async fn attempt(&self, scope: &str) -> Result<AccessToken, Failure> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.clone()),
        ];
        if self.endpoint.adfs {
            form.push(("resource", resource_of(scope).to_owned()));
        } else {
            form.push(("scope", scope.to_owned()));
        }
        match &self.proof {
            Proof::Secret(secret) => form.push(("client_secret", secret.secret().to_owned())),
            Proof::Certificate(certificate) => {
                let assertion = certificate
                    .assertion(
                        &self.client_id,
                        self.endpoint.url.as_str(),
                        OffsetDateTime::now_utc().unix_timestamp(),
                    )
                    .map_err(Failure::Fatal)?;
                self.console.set_secret(&assertion);
                form.push(("client_assertion_type", JWT_BEARER.into()));
                form.push(("client_assertion", assertion));
            }
            Proof::Federated(source) => {
                let token = source.token().await.map_err(Failure::Fatal)?;
                self.console.set_secret(&token);
                form.push(("client_assertion_type", JWT_BEARER.into()));
                form.push(("client_assertion", token));
            }
        }
        let response = self
            .http
            .post(self.endpoint.url.clone())
            .header("accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| Failure::from_send(e, "Entra ID"))?;
        let (status, headers, body) = read_answer(response, "Entra ID's answer").await?;
        if status.is_success() {
            return parse_token_answer(&body, OffsetDateTime::now_utc())
                .context("Entra ID answered with an unexpected body")
                .map_err(Failure::Fatal);
        }
        let error = EntraError::parse(status.as_u16(), &body);
        Err(Failure::from_status(status, &headers, error.into(), &[]))
    }
}

/// The resource a `.default` scope is for (`https://management.azure.com/` for
/// `https://management.azure.com//.default`), as IMDS and ADFS want it.
pub fn resource_of(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

/// Reads a token answer: `access_token` with `expires_in` (seconds from now) or `expires_on`
/// (unix seconds), as numbers or strings (Entra sends numbers, IMDS strings).
pub fn parse_token_answer(body: &[u8], now: OffsetDateTime) -> Result<AccessToken> {
    let answer: Value = serde_json::from_slice(body).context("not JSON")?;
    let token = answer["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("no access_token in the answer"))?;
    let number = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    };
    let expires_on = if let Some(on) = number(&answer["expires_on"]) {
        OffsetDateTime::from_unix_timestamp(on).context("expires_on is out of range")?
    } else if let Some(seconds) = number(&answer["expires_in"]) {
        now + azure_core::time::Duration::seconds(seconds)
    } else {
        bail!("the answer says neither expires_in nor expires_on")
    };
    Ok(AccessToken::new(Secret::new(token.to_owned()), expires_on))
}

/// An error answer from the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraError {
    pub status: u16,
    /// The OAuth error (`invalid_client`, …).
    pub error: String,
    pub description: String,
    /// The AADSTS number.
    pub code: Option<u32>,
}

impl EntraError {
    pub fn parse(status: u16, body: &[u8]) -> EntraError {
        let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let description = json["error_description"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body);
                let text: String = text.trim().chars().take(500).collect();
                if text.is_empty() {
                    "(no error body)".to_owned()
                } else {
                    text
                }
            });
        let code = json["error_codes"][0]
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .or_else(|| aadsts_code(&description));
        EntraError {
            status,
            error: json["error"].as_str().unwrap_or("error").to_owned(),
            description,
            code,
        }
    }
}

impl std::fmt::Display for EntraError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.code.is_some() {
            "refused the sign-in"
        } else {
            "answered"
        };
        write!(
            f,
            "Entra ID {verb} ({} {}): {}",
            self.status,
            self.error,
            self.description.trim()
        )?;
        if let Some((meaning, fix)) = self.code.and_then(explain) {
            write!(f, " | What it means: {meaning} | What to do: {fix}")?;
        }
        Ok(())
    }
}

impl std::error::Error for EntraError {}

/// The number after `AADSTS` in a description.
fn aadsts_code(text: &str) -> Option<u32> {
    let start = text.find("AADSTS")? + "AADSTS".len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `(what it means, what to do)` for the AADSTS codes a pipeline sign-in meets.
pub fn explain(code: u32) -> Option<(&'static str, &'static str)> {
    Some(match code {
        7000222 => (
            "the service principal's client secret has expired.",
            "create a new client secret in the app registration (Certificates & secrets) and update the service connection with it, or convert the connection to workload identity federation, which has no secret to expire.",
        ),
        7000215 => (
            "the client secret is not a valid secret of this app registration.",
            "put the secret's Value (not its Secret ID) into the service connection, or create a new secret; check that the connection's service principal id is the app the secret belongs to.",
        ),
        7000218 => (
            "the request carried neither a client secret nor a client assertion.",
            "give the service connection a client secret or a certificate.",
        ),
        700016 => (
            "no application with this client id exists in the tenant.",
            "check the service connection's service principal (client) id and tenant id; the app may have been deleted, or it lives in another tenant or cloud.",
        ),
        90002 | 90019 => (
            "the tenant does not exist in this cloud.",
            "check the service connection's tenant id and its environment (AzureCloud, AzureChinaCloud, AzureUSGovernment): a tenant of one cloud is unknown in another.",
        ),
        70021 | 700211 => (
            "no federated credential of the app registration matches the issuer of the pipeline's OIDC token.",
            "add a federated credential to the app registration (or user-assigned managed identity) with the issuer and subject shown above and audience api://AzureADTokenExchange; Azure DevOps shows both on the service connection's page.",
        ),
        700213 => (
            "the app registration has no federated credential for this subject (service connection).",
            "add or fix the federated credential: its subject must be exactly the one shown above, sc://<organization>/<project>/<service connection name>; renaming the connection, the project or the organization changes it.",
        ),
        700212 => (
            "the federated credential's audience does not match the token.",
            "set the federated credential's audience to api://AzureADTokenExchange.",
        ),
        700024 => (
            "the client assertion is outside its valid time.",
            "check the agent machine's clock (it must be within five minutes of the real time).",
        ),
        700027 | 700023 => (
            "the certificate that signed the client assertion is not registered on the app registration, or the assertion does not match it.",
            "upload the certificate (its public part, .cer/.pem) to the app registration's Certificates & secrets, or update the service connection with a certificate that is registered there.",
        ),
        700021 => (
            "the client assertion was made for another token endpoint.",
            "check the connection's authority (activeDirectoryAuthority) and tenant id.",
        ),
        50013 => (
            "the OIDC token's signature or issuer could not be verified.",
            "check that the federated credential's issuer is the one Azure DevOps shows on the service connection's page.",
        ),
        7000112 | 7000114 => (
            "the application is disabled.",
            "enable the enterprise application (service principal) in the tenant, or use another service connection.",
        ),
        500011 => (
            "the resource the token was asked for is not known in this tenant.",
            "check the connection's environment and resource manager URL (activeDirectoryServiceEndpointResourceId); a connection for one cloud cannot sign in to another.",
        ),
        53003 => (
            "a Conditional Access policy blocked the sign-in.",
            "ask the tenant's administrators to allow this service principal (workload identity) from the agent's network.",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_for_entra_and_adfs() {
        let authority = Url::parse("https://login.microsoftonline.com").unwrap();
        assert_eq!(
            TokenEndpoint::new(&authority, "tenant-1", false)
                .unwrap()
                .url
                .as_str(),
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        );
        let adfs = Url::parse("https://adfs.local.azurestack.external/adfs/").unwrap();
        assert_eq!(
            TokenEndpoint::new(&adfs, "ignored", true)
                .unwrap()
                .url
                .as_str(),
            "https://adfs.local.azurestack.external/adfs/oauth2/token"
        );
        let err = TokenEndpoint::new(&authority, "a/b?c", false).unwrap_err();
        assert!(err.to_string().contains("'a/b?c'"), "{err}");
    }

    #[test]
    fn token_answers_in_either_shape() {
        let now = OffsetDateTime::from_unix_timestamp(1_000).unwrap();
        let t = parse_token_answer(br#"{"access_token":"a","expires_in":3599}"#, now).unwrap();
        assert_eq!(t.expires_on.unix_timestamp(), 4_599);
        let t = parse_token_answer(
            br#"{"access_token":"b","expires_in":"60","expires_on":"2000"}"#,
            now,
        )
        .unwrap();
        assert_eq!(t.token.secret(), "b");
        assert_eq!(t.expires_on.unix_timestamp(), 2_000);
        assert!(parse_token_answer(br#"{"access_token":"a"}"#, now).is_err());
        assert!(parse_token_answer(br#"{"expires_in":1}"#, now).is_err());
    }

    #[test]
    fn errors_carry_the_code_its_meaning_and_the_fix() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app 'x' are expired. Trace ID: t","error_codes":[7000222]}"#;
        let error = EntraError::parse(401, body);
        assert_eq!(error.code, Some(7000222));
        let text = error.to_string();
        assert!(text.contains("AADSTS7000222"), "{text}");
        assert!(text.contains("has expired"), "{text}");
        assert!(text.contains("create a new client secret"), "{text}");

        // No error_codes: the number is read from the description.
        let error = EntraError::parse(
            400,
            br#"{"error":"invalid_request","error_description":"AADSTS700213: No matching federated identity record found for presented assertion subject 'sc://o/p/c'."}"#,
        );
        assert_eq!(error.code, Some(700213));
        assert!(error.to_string().contains("sc://<organization>"));

        // Not JSON (a proxy's page): kept as text.
        let error = EntraError::parse(502, b"<html>Bad gateway</html>");
        assert_eq!(error.code, None);
        assert!(error.to_string().contains("Bad gateway"));

        for code in [7000215, 700016, 90002, 70021, 700027] {
            assert!(explain(code).is_some(), "{code}");
        }
    }
}
