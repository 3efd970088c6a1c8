//! Bounded retries for requests that the caller makes afresh for each attempt: sign-in requests
//! (Entra ID, the Azure DevOps OIDC endpoint, IMDS: a new assertion, a new OIDC token each
//! time), and the upload's blocks. Transient failures are retried with backoff or the server's
//! `Retry-After`, and each retry is said in the log.
//!
//! The backoff arithmetic is `crate::arm`'s [`RetryPolicy`], shared with the ARM client.

use std::time::Duration;

use anyhow::anyhow;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::agent::Console;
pub use crate::arm::RetryPolicy;
use crate::arm::jitter;

/// The retries sign-in requests get: four attempts over a few seconds, so a sign-in that cannot
/// succeed fails quickly with its cause, and a blip does not fail a build.
pub fn sign_in_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        initial_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(30),
    }
}

/// Why one attempt failed.
pub enum Failure {
    /// Worth trying again: a dropped connection, a timeout, 429 or 5xx.
    Transient {
        error: anyhow::Error,
        retry_after: Option<Duration>,
    },
    /// Trying again would give the same answer (a refused secret, say).
    Fatal(anyhow::Error),
}

impl Failure {
    /// A transport error: transient when the connection failed, timed out or was cut off.
    pub fn from_send(error: reqwest::Error, what: &str) -> Failure {
        let chain = super::error_chain(&error);
        // A certificate the agent does not trust stays untrusted however often it is tried.
        let lower = chain.to_ascii_lowercase();
        let tls_refusal = lower.contains("certificate") || lower.contains("unknownissuer");
        let transient = crate::arm::is_transient_error(&error) && !tls_refusal;
        let error = anyhow!(chain).context(format!("{what}: no answer"));
        if transient {
            Failure::Transient {
                error,
                retry_after: None,
            }
        } else {
            Failure::Fatal(error)
        }
    }

    /// An error answer: transient for 408, 429 and 5xx (and whatever `extra` adds).
    pub fn from_status(
        status: StatusCode,
        headers: &HeaderMap,
        error: anyhow::Error,
        extra_transient: &[u16],
    ) -> Failure {
        if crate::arm::is_transient_status(status) || extra_transient.contains(&status.as_u16()) {
            Failure::Transient {
                error,
                retry_after: crate::arm::retry_after(headers),
            }
        } else {
            Failure::Fatal(error)
        }
    }
}

/// The status, headers and body of `response`, whose body is `whose_answer` in messages (e.g.
/// "Entra ID's answer"): a body cut off on its way is worth asking again for.
pub async fn read_answer(
    response: reqwest::Response,
    whose_answer: &str,
) -> Result<(StatusCode, HeaderMap, bytes::Bytes), Failure> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| Failure::Transient {
        error: anyhow!(super::error_chain(&e)).context(format!("{whose_answer} was cut off")),
        retry_after: None,
    })?;
    Ok((status, headers, body))
}

/// Runs `attempt` until it succeeds, fails for good, or `policy.max_attempts` are used up.
pub async fn with_retries<T, F>(
    policy: &RetryPolicy,
    console: &Console,
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> anyhow::Result<T>
where
    F: Future<Output = Result<T, Failure>>,
{
    let mut number = 1;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(Failure::Fatal(error)) => return Err(error),
            Err(Failure::Transient { error, retry_after }) => {
                if number >= policy.max_attempts {
                    return Err(error.context(format!("{what} failed {number} times; giving up")));
                }
                let wait = policy.delay(number, retry_after, jitter());
                console.info(format!(
                    "{what}: {error:#}; trying again in {:.1} s (attempt {} of {})",
                    wait.as_secs_f64(),
                    number + 1,
                    policy.max_attempts
                ));
                tokio::time::sleep(wait).await;
                number += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_retry_after: Duration::from_millis(2),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_then_reported() {
        let console = Console::with_writer(Box::new(std::io::sink()), false);
        let mut calls = 0;
        let result: anyhow::Result<()> = with_retries(&quick(), &console, "asking", || {
            calls += 1;
            async {
                Err(Failure::Transient {
                    error: anyhow!("503 busy"),
                    retry_after: None,
                })
            }
        })
        .await;
        assert_eq!(calls, 3);
        let text = format!("{:#}", result.unwrap_err());
        assert!(
            text.contains("failed 3 times") && text.contains("503 busy"),
            "{text}"
        );

        let mut calls = 0;
        let result = with_retries(&quick(), &console, "asking", || {
            calls += 1;
            let calls = calls;
            async move {
                if calls < 2 {
                    Err(Failure::Transient {
                        error: anyhow!("blip"),
                        retry_after: Some(Duration::from_secs(60)),
                    })
                } else {
                    Ok(calls)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 2);
    }

    #[tokio::test]
    async fn fatal_failures_are_not_retried() {
        let console = Console::with_writer(Box::new(std::io::sink()), false);
        let mut calls = 0;
        let result: anyhow::Result<()> = with_retries(&quick(), &console, "asking", || {
            calls += 1;
            async { Err(Failure::Fatal(anyhow!("refused"))) }
        })
        .await;
        assert_eq!(calls, 1);
        assert!(result.is_err());
    }
}
