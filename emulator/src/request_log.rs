//! The record of every request the emulator answered (control routes excepted), with secrets
//! removed by construction: query values, headers and bodies pass through the redaction here
//! before they are stored in memory or appended as JSON lines to the configured file.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Write,
    path::Path,
    sync::{LazyLock, Mutex},
};

use axum::http::HeaderMap;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const REDACTED: &str = "REDACTED";

/// One answered request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// RFC 3339 time the request arrived.
    pub time: String,
    pub method: String,
    pub path: String,
    /// Raw query with secret values replaced by `REDACTED`.
    pub query: String,
    /// Lower-cased header names; secret values removed.
    pub headers: BTreeMap<String, String>,
    /// JSON bodies parsed; other text as a string; secrets removed.
    pub body: Option<Value>,
    pub status: u16,
    /// The injected fault applied, if any (`status 429`, `drop_connection`, `delay`).
    #[serde(default)]
    pub fault: Option<String>,
}

/// Names whose values are secret wherever they appear (query, form, JSON keys).
const SECRET_NAMES: &str = "sig|client_secret|client_assertion|assertion|code|access_token|refresh_token|id_token|token|password|oidcToken|key|value|secret|sharedkey";

static SECRET_PARAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)(^|[?&;\s])({SECRET_NAMES})=([^&\s'\x22;]*)")).unwrap()
});
static SECRET_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?i)^({SECRET_NAMES})$")).unwrap());
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(Bearer|SharedKey|Basic)\s+[^\s'\x22]+").unwrap());

/// Replaces the values of secret parameters (`sig=…`, `client_secret=…`) and bearer tokens in
/// free text, such as a SAS URL inside a script line.
pub fn redact_text(text: &str) -> String {
    let text = SECRET_PARAM.replace_all(text, |c: &regex::Captures| {
        if c[3].is_empty() {
            c[0].to_string()
        } else {
            format!("{}{}={REDACTED}", &c[1], &c[2])
        }
    });
    BEARER
        .replace_all(&text, |c: &regex::Captures| format!("{} {REDACTED}", &c[1]))
        .into_owned()
}

fn redact_json(value: &mut Value) {
    match value {
        Value::String(s) => *s = redact_text(s),
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if SECRET_KEY.is_match(k) && v.is_string() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact_json(v);
                }
            }
        }
        _ => {}
    }
}

/// The query with secret values replaced.
pub fn redact_query(query: &str) -> String {
    redact_text(query)
}

/// Headers with lower-cased names; credentials keep only their scheme.
pub fn redact_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str().to_ascii_lowercase();
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let value = match name.as_str() {
            "authorization" | "proxy-authorization" => match value.split_once(' ') {
                Some((scheme, _)) => format!("{scheme} {REDACTED}"),
                None => REDACTED.into(),
            },
            "cookie" | "set-cookie" => REDACTED.into(),
            n if n.starts_with("x-ms-")
                && (n.contains("authorization") || n.contains("key") || n.contains("secret")) =>
            {
                REDACTED.into()
            }
            _ => redact_text(&value),
        };
        out.insert(name, value);
    }
    out
}

/// The body as it is kept: JSON parsed, form and other text as a string, binary as a size note.
pub fn redact_body(content_type: Option<&str>, bytes: &[u8]) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    if let Ok(mut json) = serde_json::from_slice::<Value>(bytes) {
        redact_json(&mut json);
        return Some(json);
    }
    let is_form = content_type.is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    match std::str::from_utf8(bytes) {
        Ok(text) if is_form => Some(Value::String(
            url::form_urlencoded::parse(text.as_bytes())
                .map(|(k, v)| {
                    let v = if SECRET_KEY.is_match(&k) {
                        REDACTED.to_string()
                    } else {
                        redact_text(&v)
                    };
                    format!("{k}={v}")
                })
                .collect::<Vec<_>>()
                .join("&"),
        )),
        Ok(text) => Some(Value::String(redact_text(text))),
        Err(_) => Some(Value::String(format!("<{} bytes>", bytes.len()))),
    }
}

/// The in-memory log and its optional JSON-lines file.
pub struct RequestLog {
    entries: Mutex<Vec<RecordedRequest>>,
    file: Option<Mutex<File>>,
}

impl RequestLog {
    pub fn new(path: Option<&Path>) -> anyhow::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| anyhow::anyhow!("opening the request log {}: {e}", p.display()))?,
            )),
            None => None,
        };
        Ok(Self {
            entries: Mutex::new(Vec::new()),
            file,
        })
    }

    pub fn push(&self, entry: RecordedRequest) {
        if let Some(file) = &self.file {
            let mut file = file.lock().unwrap();
            let line = serde_json::to_string(&entry).expect("a recorded request serialises");
            if let Err(e) = writeln!(file, "{line}").and_then(|_| file.flush()) {
                tracing::warn!("writing the request log: {e}");
            }
        }
        self.entries.lock().unwrap().push(entry);
    }

    pub fn all(&self) -> Vec<RecordedRequest> {
        self.entries.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_sas_and_form_secrets() {
        assert_eq!(
            redact_query("sv=2022-11-02&sig=abc%2B&sp=r"),
            "sv=2022-11-02&sig=REDACTED&sp=r"
        );
        let body = redact_body(
            Some("application/x-www-form-urlencoded"),
            b"grant_type=client_credentials&client_secret=s3cr3t&client_id=x",
        )
        .unwrap();
        assert_eq!(
            body.as_str().unwrap(),
            "grant_type=client_credentials&client_secret=REDACTED&client_id=x"
        );
        let json = redact_body(
            None,
            br#"{"inline":["curl -o a 'https://h/a/b.zip?sv=1&sig=zzz'"],"key":"k"}"#,
        )
        .unwrap();
        let text = json.to_string();
        assert!(!text.contains("zzz") && !text.contains("\"k\""), "{text}");
        assert_eq!(
            redact_text("Authorization: Bearer eyJabc"),
            "Authorization: Bearer REDACTED"
        );
    }
}
