//! Blob URLs as Azure Storage and its emulators write them: which account, container and blob a
//! URL names, in the service's `https://<account>.blob.<suffix>/<container>/<blob>` form and the
//! path-style form of emulators and Azure Stack IP endpoints
//! (`https://127.0.0.1:10000/<account>/<container>/<blob>`). Pure, so inputs can be checked with it.

use url::Url;

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
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Checks a `vhdUri` input: an `https://` URL naming a container and a blob, with no query (Image
/// Builder writes with its identity, so a SAS is neither needed nor wanted in the template).
/// Returns the URL as it should be sent, or what is wrong with it.
pub fn vhd_destination(value: &str) -> Result<Url, String> {
    const FORM: &str = "expected an https:// blob URL such as https://mystorage.blob.core.windows.net/vhds/webapp.vhd";
    // Checked first, and never repeated: a query may hold a SAS signature.
    if value.contains(['?', '#']) {
        return Err(format!(
            "{FORM} without a query or fragment: Image Builder writes with its managed identity, so leave out any SAS (the value given has a '?' or '#'; it is not repeated here)"
        ));
    }
    let url = Url::parse(value).map_err(|e| format!("{FORM}, got '{value}' ({e})"))?;
    if url.scheme() != "https" {
        return Err(format!(
            "{FORM}, got '{value}' (Image Builder writes VHDs over HTTPS only)"
        ));
    }
    let location = blob_location(&url)
        .ok_or_else(|| format!("{FORM}, got '{value}' (it must name a container and a blob)"))?;
    if !valid_container_name(&location.container) {
        return Err(format!(
            "{FORM}, got container '{}' (3 to 63 lower-case letters, digits and single hyphens, starting with a letter or digit)",
            location.container
        ));
    }
    if location.blob.len() > 1024 || location.blob.ends_with('/') {
        return Err(format!("{FORM}, got blob name '{}'", location.blob));
    }
    Ok(url)
}

/// Azure Storage's container naming rule ("Naming and Referencing Containers, Blobs, and
/// Metadata").
fn valid_container_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn vhd_destinations_are_https_blob_urls_without_a_sas() {
        for ok in [
            "https://mystorage.blob.core.windows.net/vhds/webapp.vhd",
            "https://mystorage.blob.core.usgovcloudapi.net/images/2026/web.vhd",
            "https://mystorage.blob.local.azurestack.external/vhds/a.vhd",
            "https://127.0.0.1:10000/devstoreaccount1/vhds/web.vhd",
        ] {
            assert!(vhd_destination(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            (
                "http://mystorage.blob.core.windows.net/vhds/a.vhd",
                "HTTPS only",
            ),
            (
                "http://mystorage.blob.core.windows.net/vhds/a.vhd?sig=abc",
                "SAS",
            ),
            ("not a url?sig=abc", "SAS"),
            (
                "https://mystorage.blob.core.windows.net/vhds/a.vhd?sv=1&sig=x",
                "SAS",
            ),
            (
                "https://mystorage.blob.core.windows.net/vhds",
                "container and a blob",
            ),
            (
                "https://mystorage.blob.core.windows.net/vhds/",
                "container and a blob",
            ),
            (
                "https://mystorage.blob.core.windows.net/VHDs/a.vhd",
                "container 'VHDs'",
            ),
            (
                "https://mystorage.blob.core.windows.net/a--b/a.vhd",
                "container",
            ),
            (
                "https://127.0.0.1:10000/devstoreaccount1/a.vhd",
                "container and a blob",
            ),
            ("mystorage/vhds/a.vhd", "expected an https:// blob URL"),
        ] {
            let e = vhd_destination(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("sig="), "a signature is never repeated: {e}");
        }
    }
}
