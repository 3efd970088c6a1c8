//! What Image Builder fetches during `Customizing`: every `File` customizer's `sourceUri`, every
//! `scriptUri`, and every URL on a known blob endpoint that inline Shell/PowerShell lines download
//! (curl, wget, Invoke-WebRequest, python urllib…). Each download is checked the way the build
//! would notice trouble: HTTP status, `sha256Checksum` (and a 64-hex SHA-256 literal written in the
//! same script, which is how the task verifies downloads in-script), for zip archives every entry
//! read through to check its CRC, and for tar.gz archives the gzip CRC and every tar header's
//! checksum. The results are recorded for tests.

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
    /// Entry names, when the artifact is a zip or a tar.gz.
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
    let lower_url = d.url.to_ascii_lowercase();
    if bytes.starts_with(&[0x1f, 0x8b])
        || lower_url.ends_with(".tar.gz")
        || lower_url.ends_with(".tgz")
    {
        match check_tar_gz(
            &bytes,
            lower_url.ends_with(".tar.gz") || lower_url.ends_with(".tgz"),
        ) {
            Ok(entries) => d.entries = entries,
            Err(e) => d.error = Some(format!("{e} in {}", d.url)),
        }
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

/// Inflates a gzip stream (which checks its CRC) and, when it holds a tar (or `must_be_tar`),
/// walks the tar headers checking each checksum. Returns the entry names.
pub fn check_tar_gz(bytes: &[u8], must_be_tar: bool) -> Result<Vec<String>, String> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut tar)
        .map_err(|e| format!("gzip: invalid archive ({e})"))?;
    let is_tar = tar.get(257..262) == Some(b"ustar".as_slice());
    if !is_tar && !must_be_tar {
        return Ok(Vec::new());
    }
    check_tar(&tar)
}

fn tar_field(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn tar_octal(bytes: &[u8], what: &str, pos: usize) -> Result<usize, String> {
    let text = tar_field(bytes);
    usize::from_str_radix(text.trim(), 8)
        .map_err(|_| format!("tar: invalid archive (bad {what} {text:?} at offset {pos})"))
}

/// Walks tar headers: checksums, sizes, GNU long names and PAX `path` records.
fn check_tar(tar: &[u8]) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    let mut long_name: Option<String> = None;
    let mut pos = 0;
    while pos + 512 <= tar.len() {
        let h = &tar[pos..pos + 512];
        if h.iter().all(|b| *b == 0) {
            return Ok(names);
        }
        let stored = tar_octal(&h[148..156], "header checksum", pos)?;
        let sum: usize = h
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    *b as usize
                }
            })
            .sum();
        if sum != stored {
            return Err(format!(
                "tar: invalid archive (header checksum mismatch at offset {pos})"
            ));
        }
        let size = tar_octal(&h[124..136], "size", pos)?;
        let data_start = pos + 512;
        let data = tar
            .get(data_start..data_start + size)
            .ok_or_else(|| format!("tar: invalid archive (truncated entry at offset {pos})"))?;
        match h[156] {
            b'L' => long_name = Some(tar_field(data)),
            b'x' => {
                long_name = String::from_utf8_lossy(data)
                    .lines()
                    .find_map(|l| l.split_once(" path=").map(|(_, p)| p.to_string()))
                    .or(long_name);
            }
            b'g' => {}
            _ => {
                let prefix = if &h[257..262] == b"ustar" {
                    tar_field(&h[345..500])
                } else {
                    String::new()
                };
                let name = tar_field(&h[0..100]);
                let full = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                names.push(long_name.take().unwrap_or(full));
            }
        }
        pos = data_start + size.div_ceil(512) * 512;
    }
    // Leaving the loop without an end-of-archive block: fine only when nothing is cut short.
    if pos > tar.len() || tar[pos..].iter().any(|b| *b != 0) {
        Err("tar: invalid archive (truncated)".into())
    } else {
        Ok(names)
    }
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

    fn tar_entry(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(512 + data.len().div_ceil(512) * 512, 0);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn tar_gz_is_checked() {
        let mut tar = tar_entry("app/run.sh", b"echo hi\n");
        tar.extend(tar_entry("app/data.bin", &[1u8; 700]));
        tar.extend([0u8; 1024]);
        assert_eq!(
            check_tar_gz(&gzip(&tar), true).unwrap(),
            vec!["app/run.sh".to_string(), "app/data.bin".to_string()]
        );
        let mut bad_header = tar.clone();
        bad_header[3] = b'X';
        assert!(
            check_tar_gz(&gzip(&bad_header), true)
                .unwrap_err()
                .contains("checksum")
        );
        let mut gz = gzip(&tar);
        let n = gz.len();
        gz[n - 6] ^= 0xff; // the CRC trailer
        assert!(
            check_tar_gz(&gz, true)
                .unwrap_err()
                .starts_with("gzip: invalid archive")
        );
        assert!(check_tar_gz(&gzip(&tar[..700]), true).is_err());
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
