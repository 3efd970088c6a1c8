//! Check 1: the resource providers Image Builder needs are registered for the subscription.
//! Image Builder's prerequisites ("Create a Linux image and distribute it to an Azure Compute
//! Gallery" and its siblings, "Register the providers") list Microsoft.VirtualMachineImages,
//! Microsoft.Compute, Microsoft.KeyVault, Microsoft.Storage, Microsoft.Network and
//! Microsoft.ContainerInstance; an unregistered one fails the template PUT with 409
//! `MissingSubscriptionRegistration` (REFERENCE §7), or the build later.

use serde::Deserialize;

use super::Finding;
use super::read::{Read, Reader, denied, failed};

pub const NAMESPACES: [&str; 6] = [
    "Microsoft.VirtualMachineImages",
    "Microsoft.Compute",
    "Microsoft.Storage",
    "Microsoft.Network",
    "Microsoft.KeyVault",
    "Microsoft.ContainerInstance",
];

const API: &str = "2021-04-01";
const CHECK: &str = "providers";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Provider {
    #[serde(default)]
    registration_state: String,
}

pub async fn check(r: &Reader<'_>) -> Vec<Finding> {
    let reads = futures_util::future::join_all(NAMESPACES.iter().map(|ns| async move {
        let path = format!("/subscriptions/{}/providers/{ns}", r.subscription());
        (
            *ns,
            r.get::<Provider>("reading a resource provider", &path, API)
                .await,
        )
    }))
    .await;
    let mut missing = Vec::new();
    let mut findings = Vec::new();
    for (ns, read) in reads {
        match read {
            Read::Found(p) if p.registration_state.eq_ignore_ascii_case("Registered") => {}
            Read::Found(p) => missing.push((ns, p.registration_state)),
            Read::Missing => missing.push((ns, "NotRegistered".to_owned())),
            Read::Denied { action } => {
                findings.push(denied(CHECK, &format!("provider {ns}"), &action))
            }
            Read::Failed(why) => findings.push(failed(CHECK, &format!("provider {ns}"), &why)),
        }
    }
    if missing.is_empty() && findings.is_empty() {
        findings.push(Finding::ok(
            CHECK,
            format!("{} registered", NAMESPACES.join(", ")),
        ));
    }
    for (ns, state) in missing {
        let finding = if state.eq_ignore_ascii_case("Registering") {
            Finding::warning(
                CHECK,
                format!("{ns} is still registering for subscription {}; the build fails if it has not finished when Image Builder needs it", r.subscription()),
            )
            .with_fix(format!("az provider show --namespace {ns} --query registrationState"))
        } else {
            Finding::error(
                CHECK,
                format!(
                    "{ns} is not registered for subscription {} ({state})",
                    r.subscription()
                ),
                format!(
                    "az provider register --namespace {ns} --subscription {}",
                    r.subscription()
                ),
            )
        };
        findings.push(finding);
    }
    findings
}
