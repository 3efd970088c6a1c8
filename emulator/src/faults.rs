//! Injected faults: a list of "when a request matches, answer this instead" rules, each applied a
//! given number of times. The server consults it before routing; the rules come from the
//! [`crate::Config`], [`crate::Emulator::add_fault`] or `POST /_emulator/faults`.

use std::{sync::Mutex, time::Duration};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One rule. JSON: `{"method":"PUT","path":"/imageTemplates/","query_contains":null,
/// "action":{"status":{"code":429,"retry_after":1}},"times":2}`; other actions:
/// `"drop_connection"`, `{"delay":1500}` (milliseconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    /// HTTP method to match (case-insensitive); any when unset.
    #[serde(default)]
    pub method: Option<String>,
    /// Regular expression searched in the request path.
    pub path: String,
    /// A substring the raw query must contain.
    #[serde(default)]
    pub query_contains: Option<String>,
    pub action: FaultAction,
    /// How many matching requests it applies to.
    #[serde(default = "one")]
    pub times: usize,
    /// How many matching requests pass untouched before it applies (to hit, say, the GET that
    /// follows a POST rather than the ones before it).
    #[serde(default)]
    pub after: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this status, an optional `Retry-After` (seconds) and an ARM error body (a
    /// fitting one is made up when `body` is unset).
    Status {
        code: u16,
        #[serde(default)]
        retry_after: Option<u64>,
        #[serde(default)]
        body: Option<Value>,
    },
    /// Close the connection without answering.
    DropConnection,
    /// Wait, then handle the request normally.
    Delay(#[serde(with = "crate::config::duration_ms")] Duration),
    /// Handle the request (its write takes effect), then close the connection without
    /// answering: the client cannot know whether its PUT, POST or DELETE happened.
    ApplyThenDrop,
    /// Handle the request (its write takes effect), then answer this status instead (a gateway
    /// that timed out while the service went on, e.g. 504), with an ARM error body.
    ApplyThenStatus { code: u16 },
}

impl Fault {
    fn new(method: &str, path: &str, action: FaultAction) -> Self {
        Self {
            method: Some(method.into()),
            path: path.into(),
            query_contains: None,
            action,
            times: 1,
            after: 0,
        }
    }

    /// Answer `code` (with an ARM error body made up for it).
    pub fn status(method: &str, path: &str, code: u16) -> Self {
        Self::new(
            method,
            path,
            FaultAction::Status {
                code,
                retry_after: None,
                body: None,
            },
        )
    }

    /// Answer 429 with `Retry-After: secs`.
    pub fn throttle(method: &str, path: &str, retry_after_secs: u64) -> Self {
        Self::new(
            method,
            path,
            FaultAction::Status {
                code: 429,
                retry_after: Some(retry_after_secs),
                body: None,
            },
        )
    }

    pub fn drop_connection(method: &str, path: &str) -> Self {
        Self::new(method, path, FaultAction::DropConnection)
    }

    pub fn delay(method: &str, path: &str, delay: Duration) -> Self {
        Self::new(method, path, FaultAction::Delay(delay))
    }

    /// Carry the request out, then drop the connection.
    pub fn apply_then_drop(method: &str, path: &str) -> Self {
        Self::new(method, path, FaultAction::ApplyThenDrop)
    }

    /// Carry the request out, then answer `code` instead of its real answer.
    pub fn apply_then_status(method: &str, path: &str, code: u16) -> Self {
        Self::new(method, path, FaultAction::ApplyThenStatus { code })
    }

    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    pub fn after(mut self, passed: usize) -> Self {
        self.after = passed;
        self
    }

    pub fn query_contains(mut self, needle: &str) -> Self {
        self.query_contains = Some(needle.into());
        self
    }
}

/// The ARM error body used for an injected status without a body of its own.
pub fn default_error_body(code: u16) -> Value {
    let (code_name, message) = match code {
        429 => (
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type. Please retry after the time given in the Retry-After header.",
        ),
        500 => (
            "InternalServerError",
            "Encountered internal server error. Diagnostic information: timestamp '', subscription id '', tracking id '', request correlation id ''.",
        ),
        502 => (
            "BadGateway",
            "The gateway did not receive a response from 'Microsoft.VirtualMachineImages' within the specified time period.",
        ),
        503 => (
            "ServiceUnavailable",
            "The service is currently unavailable. Please try again later.",
        ),
        504 => (
            "GatewayTimeout",
            "The gateway did not receive a response from 'Microsoft.VirtualMachineImages' within the specified time period.",
        ),
        _ => ("InjectedFault", "A fault injected by aib-emulator."),
    };
    json!({"error": {"code": code_name, "message": message}})
}

struct Active {
    fault: Fault,
    path: Regex,
    remaining: usize,
    /// Matching requests still to let through before applying.
    to_pass: usize,
}

/// The live rule list.
#[derive(Default)]
pub struct Faults {
    active: Mutex<Vec<Active>>,
}

impl Faults {
    pub fn add(&self, fault: Fault) -> Result<(), regex::Error> {
        let path = Regex::new(&fault.path)?;
        let remaining = fault.times;
        let to_pass = fault.after;
        self.active.lock().unwrap().push(Active {
            fault,
            path,
            remaining,
            to_pass,
        });
        Ok(())
    }

    /// The active rules, `times` being what is left of each.
    pub fn list(&self) -> Vec<Fault> {
        let active = self.active.lock().unwrap();
        active
            .iter()
            .map(|a| Fault {
                times: a.remaining,
                after: a.to_pass,
                ..a.fault.clone()
            })
            .collect()
    }

    pub fn clear(&self) {
        self.active.lock().unwrap().clear();
    }

    /// The action of the first rule matching this request, counting it as used.
    pub fn take(&self, method: &str, path: &str, query: &str) -> Option<FaultAction> {
        let mut active = self.active.lock().unwrap();
        let matches = |a: &Active| {
            a.remaining > 0
                && a.fault
                    .method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && a.path.is_match(path)
                && a.fault
                    .query_contains
                    .as_deref()
                    .is_none_or(|q| query.contains(q))
        };
        // The first matching rule done letting requests pass applies; every matching rule still
        // letting them pass counts this one.
        let mut hit = None;
        for (i, a) in active.iter_mut().enumerate() {
            if !matches(a) {
                continue;
            }
            if a.to_pass > 0 {
                a.to_pass -= 1;
            } else if hit.is_none() {
                hit = Some(i);
            }
        }
        let hit = &mut active[hit?];
        hit.remaining -= 1;
        let action = hit.fault.action.clone();
        active.retain(|a| a.remaining > 0);
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_n_times_then_stops() {
        let faults = Faults::default();
        faults
            .add(Fault::status("GET", "/subscriptions/", 503).times(2))
            .unwrap();
        assert!(faults.take("POST", "/subscriptions/x", "").is_none());
        assert!(faults.take("get", "/subscriptions/x", "").is_some());
        assert!(faults.take("GET", "/subscriptions/x", "").is_some());
        assert!(faults.take("GET", "/subscriptions/x", "").is_none());
    }

    #[test]
    fn after_lets_requests_pass_first() {
        let faults = Faults::default();
        faults
            .add(Fault::status("GET", "/t$", 500).after(2).times(1))
            .unwrap();
        assert!(faults.take("GET", "/t", "").is_none());
        assert!(faults.take("GET", "/t", "").is_none());
        assert!(faults.take("GET", "/other", "").is_none());
        assert!(faults.take("GET", "/t", "").is_some());
        assert!(faults.take("GET", "/t", "").is_none());
    }

    #[test]
    fn json_form() {
        let f: Fault = serde_json::from_str(r#"{"path":"x","action":{"delay":20}}"#).unwrap();
        assert_eq!(f.action, FaultAction::Delay(Duration::from_millis(20)));
        assert_eq!(f.times, 1);
        let f: Fault =
            serde_json::from_str(r#"{"path":"x","action":"drop_connection","times":3}"#).unwrap();
        assert_eq!(f.action, FaultAction::DropConnection);
        let f: Fault = serde_json::from_str(r#"{"path":"x","action":"apply_then_drop"}"#).unwrap();
        assert_eq!(f.action, FaultAction::ApplyThenDrop);
        let f: Fault =
            serde_json::from_str(r#"{"path":"x","action":{"apply_then_status":{"code":504}}}"#)
                .unwrap();
        assert_eq!(f.action, FaultAction::ApplyThenStatus { code: 504 });
        let f: Fault = serde_json::from_str(
            r#"{"path":"x","action":{"status":{"code":429,"retry_after":2}}}"#,
        )
        .unwrap();
        assert_eq!(
            f.action,
            FaultAction::Status {
                code: 429,
                retry_after: Some(2),
                body: None
            }
        );
    }
}
