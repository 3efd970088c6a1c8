//! Workload identity federation: the external token Entra ID exchanges for an access token.
//! In a pipeline it is an OIDC token from Azure DevOps (`SYSTEM_OIDCREQUESTURI`, or the job's
//! URL built from the collection, project, plan and job variables), asked for with the job access
//! token; outside one it is the file `AZURE_FEDERATED_TOKEN_FILE` names. A fresh token is
//! fetched for every exchange and announced as a secret the moment it arrives. On GitHub Actions
//! the token comes from the runner's OIDC endpoint ([`GitHubOidcRequest`]).
//!
//! `azure_identity::AzurePipelinesCredential` is not used: it reads `SYSTEM_OIDCREQUESTURI` from
//! the process environment only (no fallback URL, no captured environment), never announces the
//! OIDC token to the agent, and its retries are not ours to bound or report.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use azure_core::credentials::Secret;
use serde_json::Value;
use url::Url;

use super::retry::{Failure, RetryPolicy, read_answer, with_retries};
use crate::agent::environment::job_access_token;
use crate::agent::{Console, Environment, PipelineContext};

/// The Azure DevOps REST version of the OIDC token route.
pub const OIDC_API_VERSION: &str = "7.1";

/// Where a federated token comes from.
pub enum FederatedToken {
    AzureDevOps(OidcRequest),
    /// GitHub Actions' OIDC token for the job (`permissions: id-token: write`).
    GitHub(GitHubOidcRequest),
    /// A file rewritten by someone else (Kubernetes), read afresh for every exchange.
    File(PathBuf),
    /// A fixed token, for tests of the exchange.
    Fixed(Secret),
}

impl FederatedToken {
    /// A token for one exchange, announced as a secret before it is returned.
    pub async fn token(&self) -> Result<String> {
        match self {
            FederatedToken::AzureDevOps(request) => request.token().await,
            FederatedToken::GitHub(request) => request.token().await,
            FederatedToken::File(path) => {
                let text = tokio::fs::read_to_string(path).await.with_context(|| {
                    format!(
                        "cannot read the federated token file {} (AZURE_FEDERATED_TOKEN_FILE)",
                        path.display()
                    )
                })?;
                let token = text.trim();
                if token.is_empty() {
                    bail!(
                        "the federated token file {} (AZURE_FEDERATED_TOKEN_FILE) is empty",
                        path.display()
                    );
                }
                Ok(token.to_owned())
            }
            FederatedToken::Fixed(token) => Ok(token.secret().to_owned()),
        }
    }
}

/// The request for an Azure DevOps OIDC token for one service connection.
pub struct OidcRequest {
    /// With `api-version` and `serviceConnectionId`.
    pub url: Url,
    job_token: Secret,
    http: reqwest::Client,
    console: Arc<Console>,
    pub retry: RetryPolicy,
}

impl OidcRequest {
    /// Reads what the request needs from the agent's variables.
    pub fn from_pipeline(
        env: &Environment,
        connection_id: &str,
        http: reqwest::Client,
        console: Arc<Console>,
        retry: RetryPolicy,
    ) -> Result<OidcRequest> {
        let url = oidc_request_url(&PipelineContext::from_env(env), connection_id)?;
        let job_token = job_access_token(env).ok_or_else(|| {
            anyhow!(
                "workload identity federation needs the job access token to ask Azure DevOps for an OIDC token, and the agent gave none (ENDPOINT_AUTH_PARAMETER_SYSTEMVSSCONNECTION_ACCESSTOKEN, or System.AccessToken mapped as SYSTEM_ACCESSTOKEN)"
            )
        })?;
        console.set_secret(job_token);
        Ok(OidcRequest {
            url,
            job_token: Secret::new(job_token.to_owned()),
            http,
            console,
            retry,
        })
    }

    /// A fresh OIDC token, retried a few times when Azure DevOps fails or cannot be reached.
    pub async fn token(&self) -> Result<String> {
        with_retries(
            &self.retry,
            &self.console,
            "asking Azure DevOps for an OIDC token",
            || self.attempt(),
        )
        .await
    }

    async fn attempt(&self) -> Result<String, Failure> {
        let response = self
            .http
            .post(self.url.clone())
            .bearer_auth(self.job_token.secret())
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .header("x-tfs-fedauthredirect", "Suppress")
            .body("{}")
            .send()
            .await
            .map_err(|e| Failure::from_send(e, "Azure DevOps"))?;
        let (status, headers, body) = read_answer(response, "Azure DevOps' answer").await?;
        let message =
            match token_or_message(&self.console, status, &body, "oidcToken", "Azure DevOps")? {
                Ok(token) => return Ok(token),
                Err(message) => message,
            };
        let hint = match status.as_u16() {
            401 | 403 => {
                " The job access token was refused: check that the pipeline's job authorization scope lets the job use the project."
            }
            404 => {
                " Check that the service connection exists in this project and that the pipeline is authorized to use it."
            }
            _ => "",
        };
        let error =
            anyhow!("Azure DevOps refused the OIDC token request ({status}): {message}{hint}");
        Err(Failure::from_status(status, &headers, error, &[]))
    }
}

/// An OIDC endpoint's answer: the token in `field` of a success, announced as a secret before
/// it goes anywhere (`Ok(Ok)`); a success without one is fatal; an error answer's `message` (or
/// the start of its body) for the caller to explain (`Ok(Err)`).
fn token_or_message(
    console: &Console,
    status: reqwest::StatusCode,
    body: &[u8],
    field: &str,
    who: &str,
) -> Result<Result<String, String>, Failure> {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if status.is_success() {
        let token = json[field]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Failure::Fatal(anyhow!("{who} answered {status} without a token ({field})"))
            })?;
        console.set_secret(token);
        return Ok(Ok(token.to_owned()));
    }
    Ok(Err(json["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| {
            String::from_utf8_lossy(body).chars().take(300).collect()
        })))
}

/// The audience Entra ID expects in a federated token (GitHub's docs, "Configuring OpenID
/// Connect in Azure"; the same as Azure DevOps').
pub const AZURE_AD_TOKEN_EXCHANGE: &str = "api://AzureADTokenExchange";

/// The request for a GitHub Actions OIDC token: `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…`
/// with `Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN`, answered with
/// `{"value": "<jwt>"}` (GitHub's docs, "About security hardening with OpenID Connect" and
/// "Configuring OpenID Connect in cloud providers"). The token lives minutes: a fresh one is
/// asked for every exchange.
pub struct GitHubOidcRequest {
    /// With the `audience` parameter.
    pub url: Url,
    request_token: Secret,
    http: reqwest::Client,
    console: Arc<Console>,
    pub retry: RetryPolicy,
}

impl GitHubOidcRequest {
    /// `None` when the job has no OIDC token to give (no `permissions: id-token: write`, or not
    /// on GitHub). The request token is announced as a secret before anything else happens.
    pub fn from_env(
        env: &Environment,
        http: reqwest::Client,
        console: Arc<Console>,
        retry: RetryPolicy,
    ) -> Option<Result<GitHubOidcRequest>> {
        let (url, token) = (
            env.get("ACTIONS_ID_TOKEN_REQUEST_URL")?,
            env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")?,
        );
        console.set_secret(token);
        Some(github_request_url(url).map(|url| GitHubOidcRequest {
            url,
            request_token: Secret::new(token.to_owned()),
            http,
            console,
            retry,
        }))
    }

    /// A fresh OIDC token, retried a few times when GitHub fails or cannot be reached.
    pub async fn token(&self) -> Result<String> {
        with_retries(
            &self.retry,
            &self.console,
            "asking GitHub for an OIDC token",
            || self.attempt(),
        )
        .await
    }

    async fn attempt(&self) -> Result<String, Failure> {
        let response = self
            .http
            .get(self.url.clone())
            .header(
                "authorization",
                format!("bearer {}", self.request_token.secret()),
            )
            .header("accept", "application/json; api-version=2.0")
            .send()
            .await
            .map_err(|e| Failure::from_send(e, "GitHub's OIDC token endpoint"))?;
        let (status, headers, body) = read_answer(response, "GitHub's answer").await?;
        let message = match token_or_message(&self.console, status, &body, "value", "GitHub")? {
            Ok(token) => return Ok(token),
            Err(message) => message,
        };
        let hint = match status.as_u16() {
            401 | 403 => {
                " The request token was refused: give the job `permissions: id-token: write` (and keep the token from an earlier job out of this one)."
            }
            _ => "",
        };
        let error = anyhow!("GitHub refused the OIDC token request ({status}): {message}{hint}");
        Err(Failure::from_status(status, &headers, error, &[]))
    }
}

/// `ACTIONS_ID_TOKEN_REQUEST_URL` with `audience=api://AzureADTokenExchange` added (the URL
/// already carries a query, hence GitHub's `&audience=` in its docs).
pub fn github_request_url(raw: &str) -> Result<Url> {
    let mut url = Url::parse(raw.trim())
        .with_context(|| format!("ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: '{raw}'"))?;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "audience")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("audience", AZURE_AD_TOKEN_EXCHANGE);
    Ok(url)
}

/// `SYSTEM_OIDCREQUESTURI`, or when the agent does not set it (older agents, classic releases)
/// `{collection}{projectId}/_apis/distributedtask/hubs/{build|release}/plans/{planId}/jobs/{jobId}/oidctoken`,
/// with `?api-version=7.1&serviceConnectionId=<id>`.
pub fn oidc_request_url(context: &PipelineContext, connection_id: &str) -> Result<Url> {
    let mut url = match &context.oidc_request_uri {
        Some(uri) => Url::parse(uri.trim())
            .with_context(|| format!("SYSTEM_OIDCREQUESTURI is not a URL: '{uri}'"))?,
        None => {
            let parts = [
                ("SYSTEM_COLLECTIONURI", &context.collection_uri),
                ("SYSTEM_TEAMPROJECTID", &context.team_project_id),
                ("SYSTEM_PLANID", &context.plan_id),
                ("SYSTEM_JOBID", &context.job_id),
            ];
            let missing: Vec<&str> = parts
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(name, _)| *name)
                .collect();
            if !missing.is_empty() {
                bail!(
                    "workload identity federation needs SYSTEM_OIDCREQUESTURI, which the agent did not set, or else {} to find the job's OIDC token endpoint; run on a current agent (3.x or later)",
                    missing.join(", ")
                );
            }
            let value = |i: usize| parts[i].1.as_deref().unwrap_or_default().trim();
            let hub = match context.host_type.as_deref().map(str::trim) {
                Some(h) if h.eq_ignore_ascii_case("release") => "release",
                _ => "build",
            };
            let collection = value(0).trim_end_matches('/');
            let raw = format!(
                "{collection}/{}/_apis/distributedtask/hubs/{hub}/plans/{}/jobs/{}/oidctoken",
                value(1),
                value(2),
                value(3)
            );
            Url::parse(&raw)
                .with_context(|| format!("SYSTEM_COLLECTIONURI does not make a URL: '{raw}'"))?
        }
    };
    url.query_pairs_mut()
        .append_pair("api-version", OIDC_API_VERSION)
        .append_pair("serviceConnectionId", connection_id);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_s_request_url_gets_the_entra_audience() {
        let url = github_request_url(
            "https://pipelines.actions.githubusercontent.com/abc/idtoken?api-version=2.0",
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://pipelines.actions.githubusercontent.com/abc/idtoken?api-version=2.0&audience=api%3A%2F%2FAzureADTokenExchange"
        );
        let again = github_request_url(url.as_str()).unwrap();
        assert_eq!(again, url, "one audience, never two");
        assert!(github_request_url("not a url").is_err());
    }

    #[test]
    fn the_agent_s_uri_is_used_as_given() {
        let context = PipelineContext {
            oidc_request_uri: Some("https://dev.azure.com/org/p/_apis/x/oidctoken".into()),
            collection_uri: Some("https://ignored/".into()),
            ..Default::default()
        };
        assert_eq!(
            oidc_request_url(&context, "conn-1").unwrap().as_str(),
            "https://dev.azure.com/org/p/_apis/x/oidctoken?api-version=7.1&serviceConnectionId=conn-1"
        );
    }

    #[test]
    fn the_uri_is_built_from_the_job_when_absent() {
        let mut context = PipelineContext {
            collection_uri: Some("https://dev.azure.com/org/".into()),
            team_project_id: Some("proj-id".into()),
            plan_id: Some("plan-1".into()),
            job_id: Some("job-1".into()),
            host_type: Some("build".into()),
            ..Default::default()
        };
        assert_eq!(
            oidc_request_url(&context, "c").unwrap().as_str(),
            "https://dev.azure.com/org/proj-id/_apis/distributedtask/hubs/build/plans/plan-1/jobs/job-1/oidctoken?api-version=7.1&serviceConnectionId=c"
        );
        context.host_type = Some("Release".into());
        context.collection_uri = Some("https://vsrm.dev.azure.com/org".into());
        assert_eq!(
            oidc_request_url(&context, "c").unwrap().path(),
            "/org/proj-id/_apis/distributedtask/hubs/release/plans/plan-1/jobs/job-1/oidctoken"
        );
        context.plan_id = None;
        context.job_id = None;
        let err = oidc_request_url(&context, "c").unwrap_err().to_string();
        assert!(
            err.contains("SYSTEM_PLANID, SYSTEM_JOBID") && err.contains("SYSTEM_OIDCREQUESTURI"),
            "{err}"
        );
    }
}
