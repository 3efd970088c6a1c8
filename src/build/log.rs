//! The build log of a failed run: found from the run's message (`Image Build log location:
//! <url>`), read from the staging storage account Image Builder made (through `listKeys` there,
//! or the connection's storage token), **before** the template and its staging group are
//! deleted, and cut to its last lines for the job log.

use anyhow::{Context, Result, anyhow};
use time::OffsetDateTime;
use url::Url;

use crate::arm::ArmClient;
use crate::blob_url::blob_location;
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

/// The newest of `names` (with their last-modified times) that is a run's `customization.log`.
pub fn newest_log<'a>(
    blobs: impl IntoIterator<Item = (&'a str, Option<OffsetDateTime>)>,
) -> Option<(&'a str, Option<OffsetDateTime>)> {
    blobs
        .into_iter()
        .filter(|(name, _)| {
            name.rsplit_once('/')
                .is_some_and(|(folder, file)| file == "customization.log" && !folder.is_empty())
        })
        .max_by_key(|(_, modified)| *modified)
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
    read_in(arm, http, &account, url, console).await
}

/// Reads the log at `url` from `account`, already found.
async fn read_in(
    arm: &ArmClient,
    http: &reqwest::Client,
    account: &storage::StorageAccount,
    url: &Url,
    console: &crate::agent::Console,
) -> Result<String> {
    let location = blob_location(url).ok_or_else(|| anyhow!("'{url}' is not a blob URL"))?;
    let mut download = url.clone();
    download.set_query(None);
    let request = match storage::choose_access(arm, account, console).await? {
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
        .header("x-ms-version", storage::SERVICE_VERSION)
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
            crate::blob_url::BlobLocation {
                account: "a1b2c3d4e5".into(),
                container: "packerlogs".into(),
                blob: "0f1e2d3c-aaaa-bbbb-cccc-0123456789ab/customization.log".into()
            }
        );
        assert_eq!(log_url("no log here"), None);
        assert_eq!(log_url("Image Build log location: not-a-url."), None);
    }

    #[test]
    fn the_newest_customization_log_wins() {
        let t = |s: i64| Some(OffsetDateTime::from_unix_timestamp(1_780_000_000 + s).unwrap());
        assert_eq!(
            newest_log([
                ("a1/customization.log", t(10)),
                ("b2/customization.log", t(30)),
                ("b2/validation.log", t(50)),
                ("customization.log", t(60)),
                ("c3/customization.log.bak", t(70)),
                ("c3/customization.log", t(20)),
            ]),
            Some(("b2/customization.log", t(30)))
        );
        assert_eq!(newest_log([("x/validation.log", t(1))]), None);
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
