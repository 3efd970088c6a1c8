//! The build log of a failed run: found from the run's message (`Image Build log location:
//! <url>`), read from the staging storage account Image Builder made (through `listKeys` there,
//! or the connection's storage token), **before** the template and its staging group are
//! deleted, and cut to its last lines for the job log.

use anyhow::{Context, Result, anyhow};
use time::OffsetDateTime;
use url::Url;

use crate::arm::ArmClient;
use crate::sas::{BlobSas, Protocol};
use crate::storage::{self, Access};

/// The log URL in a failed run's message, without the sentence's trailing punctuation.
pub fn log_url(message: &str) -> Option<Url> {
    let marker = "log location:";
    let start = message.to_ascii_lowercase().find(marker)? + marker.len();
    let candidate = message[start..].split_whitespace().next()?;
    let candidate = candidate.trim_end_matches(['.', ',', ';', ')', '"', '\'']);
    let url = Url::parse(candidate).ok()?;
    matches!(url.scheme(), "https" | "http").then_some(url)
}

/// Where a blob URL points: account, container and blob name. Handles both the service's
/// `https://<account>.blob.<suffix>/<container>/<blob>` and the path-style URLs of emulators
/// and Azure Stack IP endpoints (`https://127.0.0.1:10000/<account>/<container>/<blob>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    pub account: String,
    pub container: String,
    pub blob: String,
}

pub fn blob_location(url: &Url) -> Option<BlobLocation> {
    let host = url.host_str()?;
    let mut segments: Vec<String> = url.path_segments()?.map(percent_decode).collect();
    let path_style = url
        .host()
        .is_some_and(|h| matches!(h, url::Host::Ipv4(_) | url::Host::Ipv6(_)))
        || host.eq_ignore_ascii_case("localhost");
    let account = if path_style {
        if segments.is_empty() {
            return None;
        }
        segments.remove(0)
    } else {
        host.split('.').next()?.to_owned()
    };
    if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    let container = segments.remove(0);
    Some(BlobLocation {
        account,
        container,
        blob: segments.join("/"),
    })
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> &str {
    let trimmed = text.trim_end_matches(['\n', '\r']);
    match trimmed.rmatch_indices('\n').nth(n.saturating_sub(1)) {
        Some((i, _)) if n > 0 => &trimmed[i + 1..],
        _ => trimmed,
    }
}

/// Reads the log at `url` from the staging account, which lives in the same subscription.
pub async fn read(
    arm: &ArmClient,
    http: &reqwest::Client,
    subscription: &str,
    url: &Url,
    console: &crate::agent::Console,
) -> Result<String> {
    let location = blob_location(url).ok_or_else(|| anyhow!("'{url}' is not a blob URL"))?;
    let account = storage::find_account(arm, subscription, &location.account)
        .await
        .with_context(|| format!("finding the staging storage account {}", location.account))?;
    let mut download = url.clone();
    download.set_query(None);
    let request = match storage::choose_access(arm, &account, console).await? {
        Access::AccountKey(key) => {
            let sas = BlobSas::read_only_for_build(
                &account.name,
                &location.container,
                &location.blob,
                OffsetDateTime::now_utc(),
                1,
                Protocol::for_endpoint(url),
            )
            .sign_with_account_key(azure_core::credentials::Secret::secret(&key))?;
            console.set_secret(&sas.signature);
            download.set_query(Some(&sas.query));
            http.get(download)
        }
        Access::Token => anyhow::bail!(
            "the staging storage account {} gives no key to this identity; open the log in the portal",
            account.name
        ),
    };
    let response = request
        .header("x-ms-version", "2022-11-02")
        .send()
        .await
        .map_err(|e| anyhow!(crate::auth::error_chain(&e)))
        .with_context(|| format!("downloading the build log {}", url))?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "downloading the build log {url} answered {status}"
    );
    let bytes = response.bytes().await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = "External build failed: Failed while waiting for packerizer: Microservice has failed: Failed while processing request: Error when executing packerizer: Packer build command has failed: exit status 1. During the image build, a failure has occurred, please review the build log to identify which build/customization step failed. For more troubleshooting steps go to https://aka.ms/azvmimagebuilderts. Image Build log location: https://a1b2c3d4e5.blob.core.windows.net/packerlogs/0f1e2d3c-aaaa-bbbb-cccc-0123456789ab/customization.log. OperationId: 0f1e2d3c. Use this operationId to search packer logs.";

    #[test]
    fn finds_the_log_url_in_image_builder_s_message() {
        let url = log_url(MESSAGE).unwrap();
        assert_eq!(
            url.as_str(),
            "https://a1b2c3d4e5.blob.core.windows.net/packerlogs/0f1e2d3c-aaaa-bbbb-cccc-0123456789ab/customization.log"
        );
        assert_eq!(
            blob_location(&url).unwrap(),
            BlobLocation {
                account: "a1b2c3d4e5".into(),
                container: "packerlogs".into(),
                blob: "0f1e2d3c-aaaa-bbbb-cccc-0123456789ab/customization.log".into()
            }
        );
        assert_eq!(log_url("no log here"), None);
        assert_eq!(log_url("Image Build log location: not-a-url."), None);
    }

    #[test]
    fn path_style_urls_carry_the_account_in_the_path() {
        let url = Url::parse(
            "https://127.0.0.1:10000/aibstaginglogs01/packerlogs/guid/customization.log",
        )
        .unwrap();
        let loc = blob_location(&url).unwrap();
        assert_eq!(loc.account, "aibstaginglogs01");
        assert_eq!(loc.container, "packerlogs");
        assert_eq!(loc.blob, "guid/customization.log");
        assert_eq!(
            blob_location(&Url::parse("https://127.0.0.1:1/acct/").unwrap()),
            None
        );
    }

    #[test]
    fn tails_keep_the_last_lines() {
        let text: String = (1..=250).map(|i| format!("line {i}\n")).collect();
        let t = tail(&text, 100);
        assert_eq!(t.lines().count(), 100);
        assert!(t.starts_with("line 151\n") && t.ends_with("line 250"));
        assert_eq!(tail("a\nb", 100), "a\nb");
        assert_eq!(tail("", 5), "");
    }
}
