//! Check 10: the build VM size is offered to the subscription in the build region ("Resource
//! Skus - List", Compute: a `Location` restriction with reason `NotAvailableForSubscription`
//! means the subscription cannot deploy it there), and runs the source's Hyper-V generation
//! (capability `HyperVGenerations`).

use serde::Deserialize;

use super::Finding;
use super::read::{Read, Reader, denied, failed};

const SKUS_API: &str = "2021-07-01";
const CHECK: &str = "vmSize";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sku {
    #[serde(default)]
    resource_type: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    locations: Vec<String>,
    #[serde(default)]
    capabilities: Vec<Capability>,
    #[serde(default)]
    restrictions: Vec<Restriction>,
}

#[derive(Deserialize)]
struct Capability {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Restriction {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason_code: String,
}

pub async fn check(r: &Reader<'_>) -> Vec<Finding> {
    let Some(size) = &r.plan.vm_size else {
        return Vec::new(); // Image Builder's default size
    };
    let location = &r.plan.location;
    let path = format!(
        "/subscriptions/{}/providers/Microsoft.Compute/skus?$filter=location eq '{location}'",
        r.subscription()
    );
    let skus = match r
        .list::<Sku>("listing the region's VM sizes", &path, SKUS_API)
        .await
    {
        Read::Found(s) => s,
        Read::Denied { action } => {
            return vec![denied(
                CHECK,
                &format!("the VM sizes of {location}"),
                &action,
            )];
        }
        Read::Missing => Vec::new(),
        Read::Failed(why) => {
            return vec![failed(CHECK, &format!("the VM sizes of {location}"), &why)];
        }
    };
    let sku = skus.iter().find(|s| {
        s.resource_type.eq_ignore_ascii_case("virtualMachines")
            && s.name.eq_ignore_ascii_case(size)
            && (s.locations.is_empty()
                || s.locations
                    .iter()
                    .any(|l| crate::plan::normalize_region(l) == *location))
    });
    let list = format!(
        "az vm list-skus --location {location} --resource-type virtualMachines --output table"
    );
    let Some(sku) = sku else {
        return vec![Finding::error(
            CHECK,
            format!("VM size {size} is not offered in {location}"),
            format!("choose a size from: {list}"),
        )];
    };
    if let Some(restriction) = sku
        .restrictions
        .iter()
        .find(|x| x.kind.eq_ignore_ascii_case("Location"))
    {
        return vec![Finding::error(
            CHECK,
            format!(
                "VM size {size} is not available to this subscription in {location} ({})",
                restriction.reason_code
            ),
            format!(
                "choose another size ({list}), or ask Azure support for access to {size} in {location}"
            ),
        )];
    }
    let generations = sku
        .capabilities
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case("HyperVGenerations"))
        .map(|c| c.value.clone());
    if let (Some(generations), Some(facts)) = (generations, r.source().await)
        && let Some(generation) = &facts.generation
        && !generations
            .split(',')
            .any(|g| g.trim().eq_ignore_ascii_case(generation))
    {
        return vec![Finding::error(
            CHECK,
            format!(
                "VM size {size} runs Hyper-V generation {generations} VMs, and the source {} is {generation}",
                facts.name
            ),
            format!("choose a size that supports {generation} ({list})"),
        )];
    }
    vec![Finding::ok(
        CHECK,
        format!("VM size {size} is available in {location}"),
    )]
}
