//! The Azure Resource Manager client: every ARM call of the task goes through [`ArmClient`], which
//! adds the bearer token, retries what Azure says may be retried (429 honouring `Retry-After`,
//! 408/5xx, dropped connections) with bounded backoff, follows paging and long-running
//! operations exactly as ARM describes them, and turns ARM's error bodies into [`ArmError`]s that
//! say which operation failed and what Azure said.
//!
//! The retry and parsing rules are pure functions, unit-tested; the client is thin I/O.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

use crate::agent::Console;
use crate::auth::TokenSource;

/// When and how often to try again.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured as given; a longer one is cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (`attempt` counts from 1): the server's
    /// `Retry-After` when it gave one, else exponential backoff with up to 20 % jitter so that
    /// parallel pipelines do not retry in step.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_retry_after);
        }
        let exponent = attempt.saturating_sub(1).min(16);
        let base = self
            .initial_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        base.mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0))
            .min(self.max_delay)
    }
}

/// Statuses ARM documents as worth retrying.
pub fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// A transport failure that may succeed if tried again (refused or dropped connection, timeout).
pub fn is_transient_error(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

/// `Retry-After` (seconds or an HTTP date) or the millisecond variants ARM also sends.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = header(headers, name).and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let value = header(headers, "retry-after")?.trim().to_owned();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        time::OffsetDateTime::parse(&value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = when - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An error answer from ARM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed: {status} {code}: {message}{}", request_id.as_ref().map(|id| format!(" (x-ms-request-id {id})")).unwrap_or_default())]
pub struct ArmError {
    /// What the task was doing, e.g. "listing storage accounts".
    pub operation: String,
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Vec<ArmErrorDetail>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ArmErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub target: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<ArmErrorDetail>,
}

impl ArmError {
    /// Reads ARM's `{"error":{code,message,details}}`, or keeps what the body says when it is
    /// not that shape (a proxy's page, say).
    pub fn from_response(
        operation: &str,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> ArmError {
        let parsed = serde_json::from_slice::<ErrorEnvelope>(body)
            .ok()
            .and_then(|e| e.error);
        let (code, message, details) = match parsed {
            Some(e) => (e.code, e.message, e.details),
            None => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let text: String = text.chars().take(500).collect();
                (
                    status
                        .canonical_reason()
                        .unwrap_or("Error")
                        .replace(' ', ""),
                    if text.is_empty() {
                        "(no error body)".to_owned()
                    } else {
                        text
                    },
                    Vec::new(),
                )
            }
        };
        ArmError {
            operation: operation.to_owned(),
            status: status.as_u16(),
            code,
            message,
            details,
            request_id: header(headers, "x-ms-request-id").map(str::to_owned),
        }
    }

    /// The message with every detail, for the task's error output.
    pub fn describe(&self) -> String {
        let mut text = self.to_string();
        for d in &self.details {
            text.push_str(&format!(
                "\n  - {}{}: {}",
                d.code,
                d.target
                    .as_ref()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default(),
                d.message
            ));
        }
        text
    }
}

/// Why one try of a request failed.
#[derive(Debug)]
pub enum AttemptError {
    /// Worth another try: 408, 429, 5xx, a dropped connection or a cut-off answer. A write may
    /// still have taken effect.
    Transient {
        error: anyhow::Error,
        /// What ARM asked to wait, if it said.
        retry_after: Option<Duration>,
        /// A short reason for the retry line.
        reason: String,
    },
    /// Not worth another try as it is (an [`ArmError`] for an error answer).
    Final(anyhow::Error),
}

impl AttemptError {
    pub fn into_error(self) -> anyhow::Error {
        match self {
            AttemptError::Transient { error, .. } | AttemptError::Final(error) => error,
        }
    }

    /// The ARM error answer behind it, if Azure answered.
    pub fn arm_error(&self) -> Option<&ArmError> {
        match self {
            AttemptError::Transient { error, .. } | AttemptError::Final(error) => {
                error.downcast_ref::<ArmError>()
            }
        }
    }
}

/// A successful ARM answer.
#[derive(Debug)]
pub struct ArmResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl ArmResponse {
    pub fn json<T: DeserializeOwned>(&self, operation: &str) -> Result<T> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("{operation}: Azure answered with an unexpected body"))
    }

    /// Where to poll a long-running operation: `Azure-AsyncOperation`, else `Location`.
    pub fn operation_url(&self) -> Option<(PollKind, Url)> {
        if let Some(url) =
            header(&self.headers, "azure-asyncoperation").and_then(|u| Url::parse(u).ok())
        {
            return Some((PollKind::AsyncOperation, url));
        }
        header(&self.headers, "location")
            .and_then(|u| Url::parse(u).ok())
            .map(|u| (PollKind::Location, u))
    }
}

/// How a long-running operation reports its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollKind {
    /// GET returns `{status, error}`.
    AsyncOperation,
    /// GET returns 202 while running and 200/204 when done.
    Location,
}

/// The end of a long-running operation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OperationStatus {
    pub status: String,
    #[serde(default)]
    pub error: Option<ArmErrorDetail>,
}

impl OperationStatus {
    pub fn is_terminal(&self) -> bool {
        ["succeeded", "failed", "canceled", "cancelled"]
            .iter()
            .any(|s| self.status.eq_ignore_ascii_case(s))
    }

    pub fn succeeded(&self) -> bool {
        self.status.eq_ignore_ascii_case("succeeded")
    }
}

/// How often to poll long-running operations.
#[derive(Clone, Debug, PartialEq)]
pub struct PollSettings {
    /// Used when ARM gives no `Retry-After`.
    pub default_interval: Duration,
    /// Never poll faster than this, whatever `Retry-After` says.
    pub min_interval: Duration,
    pub max_interval: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            default_interval: Duration::from_secs(5),
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(60),
        }
    }
}

/// The ARM client.
pub struct ArmClient {
    http: reqwest::Client,
    base: Url,
    scope: String,
    tokens: Arc<TokenSource>,
    console: Arc<Console>,
    pub retry: RetryPolicy,
    pub poll: PollSettings,
}

impl ArmClient {
    pub fn new(
        http: reqwest::Client,
        base: Url,
        scope: String,
        tokens: Arc<TokenSource>,
        console: Arc<Console>,
    ) -> ArmClient {
        ArmClient {
            http,
            base,
            scope,
            tokens,
            console,
            retry: RetryPolicy::default(),
            poll: PollSettings::default(),
        }
    }

    /// `path` (starting with `/subscriptions/…`) under the resource manager, with `api-version`.
    pub fn url(&self, path: &str, api_version: &str) -> Result<Url> {
        let mut url = self
            .base
            .join(path.trim_start_matches('/'))
            .with_context(|| format!("'{path}' is not a valid resource path"))?;
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    /// Sends one request, retrying transient failures; an error answer becomes an [`ArmError`].
    ///
    /// Only for reads and for writes that are safe to repeat as they are; a write that must not
    /// happen twice drives [`ArmClient::attempt`] itself and checks what the lost attempt did.
    pub async fn send(
        &self,
        operation: &str,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
    ) -> Result<ArmResponse> {
        let mut attempt = 1;
        loop {
            match self.attempt(operation, method.clone(), &url, body).await {
                Ok(response) => return Ok(response),
                Err(AttemptError::Transient {
                    error,
                    reason,
                    retry_after,
                }) => {
                    if !self
                        .pause_before_retry(operation, attempt, &reason, retry_after)
                        .await
                    {
                        return Err(error);
                    }
                    attempt += 1;
                }
                Err(AttemptError::Final(error)) => return Err(error),
            }
        }
    }

    /// After a transient failure of attempt `attempt`: says so and waits as the retry policy
    /// asks, or returns false when the attempts are used up.
    pub async fn pause_before_retry(
        &self,
        operation: &str,
        attempt: u32,
        reason: &str,
        retry_after: Option<Duration>,
    ) -> bool {
        if attempt >= self.retry.max_attempts {
            return false;
        }
        let wait = self.retry.delay(attempt, retry_after, jitter());
        self.note_retry(operation, reason, wait, attempt);
        tokio::time::sleep(wait).await;
        true
    }

    /// One try of a request, saying whether a failure is worth another try.
    pub async fn attempt(
        &self,
        operation: &str,
        method: Method,
        url: &Url,
        body: Option<&serde_json::Value>,
    ) -> Result<ArmResponse, AttemptError> {
        let token = self
            .tokens
            .token(&self.scope)
            .await
            .map_err(AttemptError::Final)?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token.secret())
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        } else if method == Method::POST || method == Method::PUT {
            request = request.header("content-length", "0");
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let chain = crate::auth::error_chain(&e);
                let error = anyhow::anyhow!(chain.clone()).context(format!(
                    "{operation}: cannot reach {}",
                    url.origin().ascii_serialization()
                ));
                return Err(if is_transient_error(&e) {
                    AttemptError::Transient {
                        error,
                        retry_after: None,
                        reason: chain,
                    }
                } else {
                    AttemptError::Final(error)
                });
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                let transient = is_transient_error(&e);
                let reason = format!("the answer was cut off ({e})");
                let error = anyhow::Error::new(e)
                    .context(format!("{operation}: reading Azure's answer failed"));
                return Err(if transient {
                    AttemptError::Transient {
                        error,
                        retry_after: None,
                        reason,
                    }
                } else {
                    AttemptError::Final(error)
                });
            }
        };
        if status.is_success() {
            return Ok(ArmResponse {
                status,
                headers,
                body,
            });
        }
        let error = ArmError::from_response(operation, status, &headers, &body);
        if is_transient_status(status) {
            Err(AttemptError::Transient {
                reason: format!("{} {}", error.status, error.code),
                retry_after: retry_after(&headers),
                error: error.into(),
            })
        } else {
            Err(AttemptError::Final(error.into()))
        }
    }

    /// One attempt with a time limit and no retries: for the last calls made while the task is
    /// being cancelled, when the agent allows only seconds before it kills the process.
    pub async fn send_once(
        &self,
        operation: &str,
        method: Method,
        url: Url,
        limit: Duration,
    ) -> Result<ArmResponse> {
        let attempt = async {
            let token = self.tokens.token(&self.scope).await?;
            let response = self
                .http
                .request(method, url)
                .bearer_auth(token.secret())
                .header("content-length", "0")
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(crate::auth::error_chain(&e)))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await.unwrap_or_default();
            if status.is_success() {
                Ok(ArmResponse {
                    status,
                    headers,
                    body,
                })
            } else {
                Err(ArmError::from_response(operation, status, &headers, &body).into())
            }
        };
        tokio::time::timeout(limit, attempt)
            .await
            .map_err(|_| anyhow::anyhow!("{operation}: no answer within {} s", limit.as_secs()))?
    }

    fn note_retry(&self, operation: &str, reason: &str, wait: Duration, attempt: u32) {
        self.console.info(format!(
            "{operation}: {reason}; trying again in {:.1} s (attempt {} of {})",
            wait.as_secs_f64(),
            attempt + 1,
            self.retry.max_attempts
        ));
    }

    /// GETs one resource.
    pub async fn get<T: DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
        api_version: &str,
    ) -> Result<T> {
        let url = self.url(path, api_version)?;
        self.send(operation, Method::GET, url, None)
            .await?
            .json(operation)
    }

    /// GETs every item of a list, following `nextLink`.
    pub async fn list<T: DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
        api_version: &str,
    ) -> Result<Vec<T>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page<T> {
            #[serde(default = "Vec::new")]
            value: Vec<T>,
            next_link: Option<String>,
        }
        let mut items = Vec::new();
        let mut next = Some(self.url(path, api_version)?);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            anyhow::ensure!(pages <= 1000, "{operation}: more than 1000 pages; stopping");
            let page: Page<T> = self
                .send(operation, Method::GET, url, None)
                .await?
                .json(operation)?;
            items.extend(page.value);
            next = page
                .next_link
                .filter(|l| !l.is_empty())
                .map(|l| Url::parse(&l))
                .transpose()
                .with_context(|| format!("{operation}: Azure gave an invalid nextLink"))?;
        }
        Ok(items)
    }

    /// Follows a long-running operation started by `started` until it ends or `deadline` passes.
    /// Returns its final status; an answer that needs no polling counts as succeeded.
    pub async fn wait(
        &self,
        operation: &str,
        started: &ArmResponse,
        deadline: Option<Instant>,
    ) -> Result<OperationStatus> {
        let Some((kind, url)) = started.operation_url() else {
            return Ok(OperationStatus {
                status: "Succeeded".into(),
                error: None,
            });
        };
        let mut wait = self.poll_interval(&started.headers);
        loop {
            if deadline.is_some_and(|d| Instant::now() + wait > d) {
                anyhow::bail!("{operation}: still running when the time allowed for it ran out");
            }
            tokio::time::sleep(wait).await;
            let response = self.send(operation, Method::GET, url.clone(), None).await?;
            wait = self.poll_interval(&response.headers);
            match kind {
                PollKind::AsyncOperation => {
                    let status: OperationStatus = response.json(operation)?;
                    if status.is_terminal() {
                        return Ok(status);
                    }
                }
                PollKind::Location => {
                    if response.status != StatusCode::ACCEPTED {
                        return Ok(OperationStatus {
                            status: "Succeeded".into(),
                            error: None,
                        });
                    }
                }
            }
        }
    }

    fn poll_interval(&self, headers: &HeaderMap) -> Duration {
        retry_after(headers)
            .unwrap_or(self.poll.default_interval)
            .clamp(self.poll.min_interval, self.poll.max_interval)
    }
}

/// A number in `0..1` that differs between calls and processes, so that parallel jobs do not
/// retry or poll in step: random (a clock's sub-second digits are coarse on some systems and
/// equal for processes that start together). For [`RetryPolicy::delay`].
pub(crate) fn jitter() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    f64::from(u16::from_le_bytes([bytes[0], bytes[1]])) / 65536.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn backoff_grows_bounded_and_honours_retry_after() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, None, 0.0), Duration::from_secs(1));
        assert_eq!(p.delay(2, None, 0.0), Duration::from_secs(2));
        assert_eq!(p.delay(3, None, 0.0), Duration::from_secs(4));
        assert_eq!(p.delay(10, None, 0.0), Duration::from_secs(30));
        assert_eq!(p.delay(40, None, 1.0), Duration::from_secs(30));
        assert_eq!(p.delay(1, None, 1.0), Duration::from_millis(1200));
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(17)), 0.5),
            Duration::from_secs(17)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600)), 0.0),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[("x-ms-retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn transient_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 501] {
            assert!(
                !is_transient_status(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
    }

    #[test]
    fn arm_errors_keep_code_message_details_and_request_id() {
        let body = br#"{"error":{"code":"InvalidTemplate","message":"Bad body.","details":[{"code":"PatternMismatch","target":"properties.distribute[0].runOutputName","message":"must match"}]}}"#;
        let e = ArmError::from_response(
            "creating template t_1",
            StatusCode::BAD_REQUEST,
            &headers(&[("x-ms-request-id", "req-1")]),
            body,
        );
        assert_eq!(e.code, "InvalidTemplate");
        assert_eq!(
            e.to_string(),
            "creating template t_1 failed: 400 InvalidTemplate: Bad body. (x-ms-request-id req-1)"
        );
        assert!(
            e.describe()
                .contains("PatternMismatch (properties.distribute[0].runOutputName): must match")
        );

        let e = ArmError::from_response(
            "x",
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>proxy</html>",
        );
        assert_eq!(e.code, "BadGateway");
        assert_eq!(e.message, "<html>proxy</html>");
    }

    #[test]
    fn operation_urls_prefer_azure_async_operation() {
        let r = ArmResponse {
            status: StatusCode::ACCEPTED,
            headers: headers(&[
                ("location", "https://arm/loc"),
                ("azure-asyncoperation", "https://arm/op"),
            ]),
            body: Default::default(),
        };
        assert_eq!(
            r.operation_url(),
            Some((
                PollKind::AsyncOperation,
                Url::parse("https://arm/op").unwrap()
            ))
        );
        let r = ArmResponse {
            headers: headers(&[("location", "https://arm/loc")]),
            ..r
        };
        assert_eq!(
            r.operation_url(),
            Some((PollKind::Location, Url::parse("https://arm/loc").unwrap()))
        );
    }

    #[test]
    fn operation_status_terminal_states() {
        for (s, terminal, ok) in [
            ("InProgress", false, false),
            ("Succeeded", true, true),
            ("failed", true, false),
            ("Canceled", true, false),
        ] {
            let st = OperationStatus {
                status: s.into(),
                error: None,
            };
            assert_eq!(st.is_terminal(), terminal, "{s}");
            assert_eq!(st.succeeded(), ok, "{s}");
        }
    }
}
