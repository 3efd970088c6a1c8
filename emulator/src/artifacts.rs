//! What Image Builder fetches during `Customizing`: every `File` customizer's `sourceUri`, every
//! `scriptUri`, and every URL on a known blob endpoint that inline Shell/PowerShell lines download
//! (curl, wget, Invoke-WebRequest, python urllib…). Each download is checked the way the build
//! would notice trouble: HTTP status, `sha256Checksum` (and a 64-hex SHA-256 literal written in the
//! same script, which is how the task verifies downloads in-script), and for zip archives every
//! entry read through to check its CRC. The results are recorded for tests.

use std::{
    io::{Cursor, Read},
    sync::LazyLock,
};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

/// One artifact a build downloaded (or tried to).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Download {
    /// The customizer's `name` (or its type when unnamed).
    pub customizer: String,
    /// The URL without its query (no SAS).
    pub url: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the body.
    pub sha256: String,
    /// Zip entry names, when the artifact is a zip.
    pub entries: Vec<String>,
    /// Why the download or a check failed.
    pub error: Option<String>,
}

/// A planned fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetch {
    pub customizer: String,
    pub url: String,
    /// Acceptable SHA-256 values (lower case); empty = not checked.
    pub expected_sha256: Vec<String>,
}

static URL_IN_TEXT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"https?://[^\s'"<>`|]+"#).unwrap());
static SHA256_LITERAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[0-9a-fA-F]{64}\b").unwrap());

fn strip_query(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => url.split('?').next().unwrap_or(url).to_string(),
    }
}

fn on_endpoint(url: &str, endpoints: &[String]) -> bool {
    let url = url.to_ascii_lowercase();
    endpoints
        .iter()
        .any(|e| !e.is_empty() && url.starts_with(&e.to_ascii_lowercase()))
}

/// The fetches a template's `customize` list implies. Inline URLs count only when they point
/// at one of `endpoints` (the scenario's blob endpoints).
pub fn plan(customize: &[Value], endpoints: &[String]) -> Vec<Fetch> {
    let mut out = Vec::new();
    for (i, c) in customize.iter().enumerate() {
        let kind = c.get("type").and_then(Value::as_str).unwrap_or("");
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{kind}#{i}"));
        let checksum = c
            .get("sha256Checksum")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(|v| vec![v.to_ascii_lowercase()])
            .unwrap_or_default();
        if let Some(uri) = c.get("sourceUri").and_then(Value::as_str) {
            out.push(Fetch {
                customizer: name.clone(),
                url: uri.to_string(),
                expected_sha256: checksum.clone(),
            });
        }
        if let Some(uri) = c
            .get("scriptUri")
            .and_then(Value::as_str)
            .filter(|u| on_endpoint(u, endpoints))
        {
            out.push(Fetch {
                customizer: name.clone(),
                url: uri.to_string(),
                expected_sha256: checksum.clone(),
            });
        }
        if let Some(lines) = c.get("inline").and_then(Value::as_array) {
            let script: String = lines
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n");
            let literals: Vec<String> = SHA256_LITERAL
                .find_iter(&script)
                .map(|m| m.as_str().to_ascii_lowercase())
                .collect();
            let mut seen = Vec::new();
            for m in URL_IN_TEXT.find_iter(&script) {
                let url = m
                    .as_str()
                    .trim_end_matches([')', ',', ';', '\\', '.', ']', '}']);
                if on_endpoint(url, endpoints) && !seen.contains(&url) {
                    seen.push(url);
                    out.push(Fetch {
                        customizer: name.clone(),
                        url: url.to_string(),
                        expected_sha256: literals.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Downloads and checks one artifact.
pub async fn fetch(http: &reqwest::Client, f: &Fetch) -> Download {
    let mut d = Download {
        customizer: f.customizer.clone(),
        url: strip_query(&f.url),
        size: 0,
        sha256: String::new(),
        entries: Vec::new(),
        error: None,
    };
    let bytes = match http.get(&f.url).send().await {
        Err(e) => {
            d.error = Some(format!("failed to download {}: {e}", d.url));
            return d;
        }
        Ok(r) if !r.status().is_success() => {
            let code = r
                .headers()
                .get("x-ms-error-code")
                .and_then(|v| v.to_str().ok())
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            d.error = Some(format!(
                "failed to download {}: {}{code}",
                d.url,
                r.status()
            ));
            return d;
        }
        Ok(r) => match r.bytes().await {
            Ok(b) => b,
            Err(e) => {
                d.error = Some(format!("failed to download {}: {e}", d.url));
                return d;
            }
        },
    };
    d.size = bytes.len() as u64;
    d.sha256 = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !f.expected_sha256.is_empty() && !f.expected_sha256.contains(&d.sha256) {
        d.error = Some(format!(
            "sha256 checksum mismatch for {}: expected {}, computed {}",
            d.url,
            f.expected_sha256.join(" or "),
            d.sha256
        ));
        return d;
    }
    let is_zip = bytes.starts_with(b"PK\x03\x04")
        || bytes.starts_with(b"PK\x05\x06")
        || d.url.to_ascii_lowercase().ends_with(".zip");
    if is_zip {
        match check_zip(&bytes) {
            Ok(entries) => d.entries = entries,
            Err(e) => d.error = Some(format!("zip: invalid archive {}: {e}", d.url)),
        }
    }
    d
}

/// Opens a zip and reads every entry through (the zip crate checks each CRC at the end).
pub fn check_zip(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    let mut sink = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
        let name = entry.name().map_err(|e| e.to_string())?.into_owned();
        sink.clear();
        entry
            .read_to_end(&mut sink)
            .map_err(|e| format!("entry {name}: {e}"))?;
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn plans_file_and_inline_downloads_on_known_endpoints() {
        let hash = "a".repeat(64);
        let customize = vec![
            json!({"type": "File", "name": "pkg", "sourceUri": "https://127.0.0.1:1/acct/c/a.zip?sig=x", "sha256Checksum": "ABC"}),
            json!({"type": "Shell", "name": "sh", "inline": [
                format!("curl -fsSL -o /tmp/b.zip 'https://127.0.0.1:1/acct/c/b.zip?sv=1&sig=y'"),
                format!("echo '{hash}  /tmp/b.zip' | sha256sum -c -"),
                "curl https://example.com/x.sh | bash".to_string(),
            ]}),
        ];
        let fetches = plan(&customize, &["https://127.0.0.1:1/acct/".into()]);
        assert_eq!(fetches.len(), 2);
        assert_eq!(fetches[0].expected_sha256, vec!["abc".to_string()]);
        assert_eq!(
            fetches[1].url,
            "https://127.0.0.1:1/acct/c/b.zip?sv=1&sig=y"
        );
        assert_eq!(fetches[1].expected_sha256, vec![hash]);
    }

    #[test]
    fn corrupt_zip_is_reported() {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file(
                "a.txt",
                zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored),
            )
            .unwrap();
            std::io::Write::write_all(&mut w, b"hello world hello world").unwrap();
            w.finish().unwrap();
        }
        let mut bytes = buf.into_inner();
        assert_eq!(check_zip(&bytes).unwrap(), vec!["a.txt".to_string()]);
        let pos = bytes.windows(5).position(|w| w == b"hello").unwrap();
        bytes[pos] = b'J';
        assert!(check_zip(&bytes).is_err());
    }
}
