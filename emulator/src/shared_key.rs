//! Azure Storage shared-key signing, written by hand: the `Authorization: SharedKey` header for
//! data-plane requests (used to write packer logs into Azurite) and service SAS tokens for blobs
//! (used for VHD run outputs, and by tests). Pure functions; no I/O.

use anyhow::{Context, Result};
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

/// The storage service version the emulator speaks (it stands in for Image Builder writing
/// packer logs). Azurite checks it (the harness does not pass `--skipApiVersionCheck`), so it
/// must be one Azurite 3.35.0 knows.
pub const STORAGE_VERSION: &str = "2021-08-06";

fn hmac_b64(key_b64: &str, text: &str) -> Result<String> {
    let key = STANDARD
        .decode(key_b64)
        .context("the account key is not base64")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(text.as_bytes());
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

/// The shared-key string to sign for a request. `headers` are all request headers (name, value);
/// standard ones are picked by name, `x-ms-*` ones canonicalised. The canonical resource is
/// `/{account}{url path}`, which gives `/acct/acct/container/blob` for path-style (Azurite) URLs.
pub fn string_to_sign(account: &str, method: &str, url: &Url, headers: &[(&str, &str)]) -> String {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .unwrap_or("")
    };
    let content_length = match get("content-length") {
        "0" => "",
        other => other,
    };
    let mut ms: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().starts_with("x-ms-"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    ms.sort();
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    params.sort();
    let mut resource = format!("/{account}{}", url.path());
    for (k, v) in params {
        resource.push_str(&format!("\n{k}:{v}"));
    }
    let mut s = [
        method,
        get("content-encoding"),
        get("content-language"),
        content_length,
        get("content-md5"),
        get("content-type"),
        get("date"),
        get("if-modified-since"),
        get("if-match"),
        get("if-none-match"),
        get("if-unmodified-since"),
        get("range"),
    ]
    .join("\n");
    s.push('\n');
    for (n, v) in ms {
        s.push_str(&format!("{n}:{v}\n"));
    }
    s.push_str(&resource);
    s
}

/// The `Authorization` header value: `SharedKey {account}:{signature}`.
pub fn authorization(
    account: &str,
    key_b64: &str,
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
) -> Result<String> {
    let sig = hmac_b64(key_b64, &string_to_sign(account, method, url, headers))?;
    Ok(format!("SharedKey {account}:{sig}"))
}

/// A blob service SAS (sv 2020-12-06 and later, `sr=b`). `start`/`expiry` are RFC 3339 UTC
/// times like `2026-11-27T05:00:00Z`.
pub struct BlobSas<'a> {
    pub account: &'a str,
    pub key_b64: &'a str,
    pub container: &'a str,
    pub blob: &'a str,
    pub permissions: &'a str,
    pub start: &'a str,
    pub expiry: &'a str,
    /// `spr=https` when true, else `https,http`.
    pub https_only: bool,
}

impl BlobSas<'_> {
    /// The query string (without `?`).
    pub fn sign(&self) -> Result<String> {
        let version = "2022-11-02";
        let protocol = if self.https_only {
            "https"
        } else {
            "https,http"
        };
        let resource = format!("/blob/{}/{}/{}", self.account, self.container, self.blob);
        let to_sign = [
            self.permissions,
            self.start,
            self.expiry,
            &resource,
            "",
            "",
            protocol,
            version,
            "b",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        .join("\n");
        let sig = hmac_b64(self.key_b64, &to_sign)?;
        Ok(url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sv", version)
            .append_pair("sr", "b")
            .append_pair("sp", self.permissions)
            .append_pair("st", self.start)
            .append_pair("se", self.expiry)
            .append_pair("spr", protocol)
            .append_pair("sig", &sig)
            .finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_resource_is_path_style_for_azurite() {
        let url =
            Url::parse("https://127.0.0.1:10000/devstoreaccount1/packerlogs/a/customization.log")
                .unwrap();
        let s = string_to_sign(
            "devstoreaccount1",
            "PUT",
            &url,
            &[
                ("Content-Length", "5"),
                ("x-ms-version", STORAGE_VERSION),
                ("x-ms-blob-type", "BlockBlob"),
            ],
        );
        assert!(s.starts_with("PUT\n\n\n5\n"));
        assert!(s.ends_with("x-ms-blob-type:BlockBlob\nx-ms-version:2021-08-06\n/devstoreaccount1/devstoreaccount1/packerlogs/a/customization.log"));
    }

    #[test]
    fn container_query_is_canonicalised() {
        let url = Url::parse("http://h/acct/logs?restype=container").unwrap();
        let s = string_to_sign("acct", "PUT", &url, &[]);
        assert!(s.ends_with("/acct/acct/logs\nrestype:container"));
    }

    #[test]
    fn sas_has_expected_fields() {
        let q = BlobSas {
            account: "a",
            key_b64: "a2V5",
            container: "c",
            blob: "b.zip",
            permissions: "r",
            start: "2026-11-27T00:00:00Z",
            expiry: "2026-11-27T02:00:00Z",
            https_only: true,
        }
        .sign()
        .unwrap();
        assert!(q.starts_with("sv=2022-11-02&sr=b&sp=r&st=2026-11-27T00%3A00%3A00Z"));
        assert!(q.contains("&spr=https&sig="));
    }
}
