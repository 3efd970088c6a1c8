//! Check 9: the storage account that carries the build path. Whether the task signs with an
//! account key or, where shared keys are disabled, with the identity's token (a user delegation
//! SAS); and whether its network rules (`networkAcls.defaultAction: Deny`,
//! `publicNetworkAccess: Disabled`) keep out Image Builder's service, which fetches a File
//! customizer's source itself and "does not support storage account firewalls"
//! (Azure/azvmimagebuilder#32): then the archive must be downloaded from inside the build VM
//! (`artifactDelivery: vm`) in a subnet the account admits.

use super::Finding;
use super::read::Reader;
use crate::arm::ArmError;
use crate::image_template::FILE_CUSTOMIZER_MAX_BYTES;
use crate::plan::{ArtifactDelivery, Os};

const CHECK: &str = "storageAccount";
/// Room for the zip's own headers above the files' bytes.
const HEADROOM: u64 = 1024 * 1024;

/// The bytes of every file under `root` (links not followed): an upper bound of the archive's
/// compressed content.
fn files_size(root: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => folders.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

pub async fn check(r: &Reader<'_>) -> Vec<Finding> {
    if r.plan.source_validation_only() {
        return Vec::new(); // nothing is uploaded
    }
    let name = &r.plan.storage_account;
    let account = match crate::storage::find_account(r.arm, r.subscription(), name).await {
        Ok(a) => a,
        Err(e) => {
            let denied = e
                .downcast_ref::<ArmError>()
                .is_some_and(|a| a.status == 403);
            let text = format!("{e:#}");
            return vec![if denied {
                Finding::warning(
                    CHECK,
                    format!(
                        "could not list the storage accounts (it needs Microsoft.Storage/storageAccounts/read): {text}"
                    ),
                )
            } else if text.contains("not found") || text.contains("no storage account") {
                Finding::error(
                    CHECK,
                    text,
                    "set storageAccountName to an account in the service connection's subscription",
                )
            } else {
                Finding::warning(
                    CHECK,
                    format!("could not check storage account {name}: {text}"),
                )
            }];
        }
    };
    let mut findings = vec![Finding::ok(
        CHECK,
        if account.allow_shared_key_access == Some(false) {
            format!(
                "{name} forbids shared keys: the task uses its token and a user delegation SAS (it needs Storage Blob Data Contributor on the account)"
            )
        } else {
            format!(
                "{name} found: the task signs its SAS with an account key (it needs Microsoft.Storage/storageAccounts/listKeys/action)"
            )
        },
    )];
    if !account.network.restricted() {
        return findings;
    }
    let how = if account
        .network
        .public_network_access
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("Disabled"))
    {
        "public network access is disabled"
    } else {
        "its firewall denies networks it does not list"
    };
    // Only a Linux archive small enough for the File customizer is fetched by the service
    // (`artifactDelivery: auto`); the archive is made later, so its size is judged from the
    // build path's files: compressed, it is no larger (give or take headers).
    if r.plan.artifact_delivery == ArtifactDelivery::Auto && r.plan.customization.os == Os::Linux {
        let files = files_size(&r.plan.package_path);
        let limit = FILE_CUSTOMIZER_MAX_BYTES / 1024 / 1024;
        let fix = "set artifactDelivery to vm and vnetSubnetId to a subnet the account admits, or use a storage account without network restrictions for the build path";
        if files + HEADROOM <= FILE_CUSTOMIZER_MAX_BYTES {
            findings.push(Finding::error(
                CHECK,
                format!("storage account {name}: {how}, and with artifactDelivery auto Image Builder's service fetches this build path's archive (under {limit} MiB) itself, which a storage firewall stops"),
                fix,
            ));
            return findings;
        }
        findings.push(
            Finding::warning(
                CHECK,
                format!("storage account {name}: {how}; with artifactDelivery auto an archive over {limit} MiB is downloaded on the VM, a smaller one by Image Builder's service, which a storage firewall stops"),
            )
            .with_fix(fix),
        );
    }
    match &r.plan.subnet {
        Some(subnet) if account.network.subnets.iter().any(|s| s.eq_ignore_ascii_case(subnet.as_str())) => {
            findings.push(Finding::ok(CHECK, format!("storage account {name} admits the build subnet {}; the VM downloads the archive", subnet.name())));
        }
        Some(subnet) => findings.push(Finding::warning(
            CHECK,
            format!("storage account {name}: {how}, and its network rules do not list the build subnet {}: the VM's download works only through a private endpoint it can reach", subnet.name()),
        )
        .with_fix(format!("az storage account network-rule add --account-name {name} --subnet {subnet}"))),
        None => findings.push(Finding::error(
            CHECK,
            format!("storage account {name}: {how}, and the build VM runs in Image Builder's own network, which the account does not admit"),
            "set vnetSubnetId to a subnet the account admits (with artifactDelivery vm), or use a storage account without network restrictions",
        )),
    }
    // The agent uploads the archive itself: it must be allowed too.
    findings.push(Finding::warning(
        CHECK,
        format!("storage account {name} restricts networks: this agent must be allowed to reach it to upload the build path (a self-hosted agent in an admitted network, or the agent's address in the firewall)"),
    ));
    findings
}
