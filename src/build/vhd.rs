//! A VHD that Image Builder wrote into the template's staging resource group: deleting the
//! template deletes that group and the VHD with it (template reference, "Distribute: VHD":
//! "If you delete the image template, then you'll lose the VHD"), so the task keeps the template
//! and tells the user how to copy the VHD out, then how to delete the template. Pure text.

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

/// The lines that explain why the template stays and how to get the VHD out of it.
pub fn keep_instructions(
    vhd_url: &str,
    staging_group: &str,
    removal_hint: &str,
    template: &str,
) -> String {
    let parsed = Url::parse(vhd_url).ok();
    let location = parsed.as_ref().and_then(blob_location);
    let (account, container, blob) = match &location {
        Some(l) => (l.account.as_str(), l.container.as_str(), l.blob.as_str()),
        None => ("<staging account>", "<container>", "<blob>"),
    };
    let file = blob.rsplit('/').next().unwrap_or(blob);
    format!(
        "The VHD {vhd_url} is in a storage account of the staging resource group {staging_group}, which Image Builder deletes together with the template, so template {template} was NOT deleted. Copy the VHD to your own storage, then delete the template:
  1. A read-only SAS for the VHD (az reads the staging account's key):
     end=$(date -u -d '+1 day' '+%Y-%m-%dT%H:%MZ')
     sas=$(az storage blob generate-sas --account-name {account} --container-name {container} --name '{blob}' --permissions r --expiry \"$end\" --https-only -o tsv)
  2. Copy it into your account (server-side; check with az storage blob show ... --query properties.copy.status):
     az storage blob copy start --source-uri \"{vhd_url}?$sas\" --account-name <your-account> --destination-container vhds --destination-blob '{file}'
     or: azcopy copy \"{vhd_url}?$sas\" \"https://<your-account>.blob.core.windows.net/vhds/{file}\"
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
        let text = keep_instructions(
            "https://abc123.blob.core.windows.net/vhds/t_1_1780000000.vhd",
            "/subscriptions/s/resourceGroups/IT_rg_t_1_abcd",
            "az image builder delete --name t_1 --resource-group rg --subscription s",
            "t_1",
        );
        let copy = text.find("az storage blob copy start").unwrap();
        let delete = text.find("az image builder delete").unwrap();
        assert!(copy < delete, "{text}");
        assert!(
            text.contains(
                "--account-name abc123 --container-name vhds --name 't_1_1780000000.vhd'"
            ),
            "{text}"
        );
        assert!(text.contains("azcopy copy"), "{text}");
        assert!(text.contains("IT_rg_t_1_abcd"), "{text}");
        assert!(text.contains("was NOT deleted"), "{text}");
        assert!(text.contains("vhdUri"), "{text}");
        // Path-style URLs (emulators, Azure Stack IP endpoints) name the account in the path.
        let text = keep_instructions(
            "https://127.0.0.1:10000/aibstaginglogs01/vhds/t.vhd",
            "g",
            "az image builder delete",
            "t",
        );
        assert!(
            text.contains("--account-name aibstaginglogs01 --container-name vhds --name 't.vhd'"),
            "{text}"
        );
    }
}
