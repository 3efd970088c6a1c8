//! A VHD that Image Builder wrote into the template's staging resource group: deleting the
//! template deletes that group and the VHD with it (template reference, "Distribute: VHD":
//! "If you delete the image template, then you'll lose the VHD"), so the task keeps the template
//! and tells the user how to copy the VHD out, then how to delete the template. Pure text.

use time::OffsetDateTime;
use url::Url;

use crate::blob_url::blob_location;

/// The output URL for a VHD: Image Builder has given a plain blob URL since May 2021
/// (Azure/azvmimagebuilder `vhdUpdate2021.md`); should one come with a SAS, the query is left
/// out so no signature ends up in a pipeline variable or log.
pub fn output_url(artifact_uri: &str) -> String {
    match Url::parse(artifact_uri) {
        Ok(mut url) if url.query().is_some() => {
            url.set_query(None);
            url.to_string()
        }
        _ => artifact_uri.to_owned(),
    }
}

/// Where the VHD is and who may read it, for [`keep_instructions`].
pub struct KeptVhd<'a> {
    pub url: &'a str,
    /// The staging resource group holding its storage account, when known.
    pub staging_group: Option<&'a str>,
    pub template: &'a str,
    pub subscription: &'a str,
    /// The `az` command that deletes the template.
    pub removal_hint: &'a str,
    /// Until when the printed SAS command makes its SAS valid.
    pub sas_expiry: OffsetDateTime,
}

/// The lines that explain why the template stays and how to get the VHD out of it. The commands
/// work as printed in bash, zsh and PowerShell alike (no shell-specific date arithmetic).
pub fn keep_instructions(vhd: &KeptVhd) -> String {
    let parsed = Url::parse(vhd.url).ok();
    let location = parsed.as_ref().and_then(blob_location);
    let (account, container, blob) = match &location {
        Some(l) => (l.account.as_str(), l.container.as_str(), l.blob.as_str()),
        None => ("<staging account>", "<container>", "<blob>"),
    };
    let file = blob.rsplit('/').next().unwrap_or(blob);
    // The destination in the same cloud: the source host without its account label.
    let destination = match parsed.as_ref().and_then(Url::host_str) {
        Some(host) if host.contains(".blob.") => {
            let suffix = host.split_once('.').map(|(_, s)| s).unwrap_or(host);
            format!("https://<your-account>.{suffix}/vhds/{file}")
        }
        _ => format!("<your account's blob endpoint>/vhds/{file}"),
    };
    let group = vhd
        .staging_group
        .map(|g| format!("the staging resource group {g}"))
        .unwrap_or_else(|| "the template's staging resource group".to_owned());
    let expiry = vhd
        .sas_expiry
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]Z"
        ))
        .unwrap_or_default();
    let (url, template, subscription, removal_hint) =
        (vhd.url, vhd.template, vhd.subscription, vhd.removal_hint);
    format!(
        "The VHD {url} is in a storage account of {group}, which Image Builder deletes together with the template, so template {template} was NOT deleted. Copy the VHD to your own storage, then delete the template:
  1. A read-only SAS for the VHD, valid until {expiry} (az reads the staging account's key):
     az storage blob generate-sas --subscription {subscription} --account-name {account} --container-name {container} --name '{blob}' --permissions r --expiry {expiry} --https-only -o tsv
  2. Copy it, with that SAS after '?', into an existing container of your account (server-side; follow it with az storage blob show ... --query properties.copy.status):
     az storage blob copy start --source-uri '{url}?<SAS>' --account-name <your-account> --destination-container vhds --destination-blob '{file}'
     or, after azcopy login (or with a SAS on the destination): azcopy copy '{url}?<SAS>' '{destination}'
  3. When the copy has finished, delete the template (and with it the staging group and the VHD there):
     {removal_hint}
To have the VHD written to your own storage instead, set vhdUri; the template is then deleted as usual."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sas_never_reaches_the_output() {
        assert_eq!(
            output_url("https://abc.blob.core.windows.net/vhds/t_1.vhd"),
            "https://abc.blob.core.windows.net/vhds/t_1.vhd"
        );
        assert_eq!(
            output_url("https://abc.blob.core.windows.net/vhds/t_1.vhd?sv=2022-11-02&sig=secret"),
            "https://abc.blob.core.windows.net/vhds/t_1.vhd"
        );
        assert_eq!(output_url("not a url"), "not a url");
    }

    #[test]
    fn instructions_copy_the_vhd_before_deleting_the_template() {
        let expiry = OffsetDateTime::from_unix_timestamp(1_796_601_600).unwrap();
        let kept = |url| KeptVhd {
            url,
            staging_group: Some("/subscriptions/s/resourceGroups/IT_rg_t_1_abcd"),
            template: "t_1",
            subscription: "s",
            removal_hint: "az image builder delete --name t_1 --resource-group rg --subscription s",
            sas_expiry: expiry,
        };
        let text = keep_instructions(&kept(
            "https://abc123.blob.core.usgovcloudapi.net/vhds/t_1_1780000000.vhd",
        ));
        let copy = text.find("az storage blob copy start").unwrap();
        let delete = text.find("az image builder delete").unwrap();
        assert!(copy < delete, "{text}");
        assert!(
            text.contains("--subscription s --account-name abc123 --container-name vhds --name 't_1_1780000000.vhd' --permissions r --expiry 2026-12-07T00:00Z"),
            "{text}"
        );
        assert!(!text.contains("date "), "no shell date arithmetic: {text}");
        // The destination stays in the source's cloud.
        assert!(
            text.contains(
                "'https://<your-account>.blob.core.usgovcloudapi.net/vhds/t_1_1780000000.vhd'"
            ),
            "{text}"
        );
        assert!(
            text.contains("IT_rg_t_1_abcd") && text.contains("was NOT deleted"),
            "{text}"
        );
        assert!(text.contains("vhdUri"), "{text}");
        // Path-style URLs (emulators, Azure Stack IP endpoints) name the account in the path.
        let text = keep_instructions(&KeptVhd {
            staging_group: None,
            ..kept("https://127.0.0.1:10000/aibstaginglogs01/vhds/t.vhd")
        });
        assert!(
            text.contains("--account-name aibstaginglogs01 --container-name vhds --name 't.vhd'"),
            "{text}"
        );
        assert!(
            text.contains("<your account's blob endpoint>/vhds/t.vhd"),
            "{text}"
        );
        assert!(
            text.contains("the template's staging resource group"),
            "{text}"
        );
    }
}
