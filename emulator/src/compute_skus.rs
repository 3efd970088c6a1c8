//! Compute resource SKUs: `GET /subscriptions/{s}/providers/Microsoft.Compute/skus[?$filter=
//! location eq '{loc}']`, shaped like REST API "Resource Skus - List" (api-version 2021-07-01:
//! `{value: [{resourceType, name, tier, size, family, locations, locationInfo: [{location,
//! zones}], capabilities: [{name, value}], restrictions: [{type, values, restrictionInfo:
//! {locations, zones}, reasonCode}]}]}`), for the VM sizes of `scenario.vm_skus`. The
//! capability names (`HyperVGenerations`, `CpuArchitectureType`, `TrustedLaunchDisabled`,
//! `ConfidentialComputingType`, `AcceleratedNetworkingEnabled`) are those "Trusted Launch for
//! Azure virtual machines" and `az vm list-skus` show; a restricted size has reason code
//! `NotAvailableForSubscription` ("Resolve errors for SKU not available").

use serde_json::{Value, json};

use crate::{arm::ok, scenario::VmSkuConfig, server::Req, state::State};

/// The location of `location eq '{loc}'`, if the filter names one.
fn filter_location(filter: &str) -> Option<String> {
    let lower = filter.to_ascii_lowercase();
    let i = lower.find("location eq")?;
    let rest = filter[i + "location eq".len()..].trim();
    let loc = rest
        .trim_start_matches(['\'', '"'])
        .split(['\'', '"', ' '])
        .next()?
        .to_ascii_lowercase()
        .replace(' ', "");
    (!loc.is_empty()).then_some(loc)
}

fn sku_body(k: &VmSkuConfig, locations: &[String]) -> Value {
    let size = k.name.trim_start_matches("Standard_").to_string();
    let flag = |b: bool| if b { "True" } else { "False" };
    let mut capabilities = vec![
        ("MaxResourceVolumeMB", (k.vcpus * 8192).to_string()),
        ("OSVhdSizeMB", "1047552".into()),
        ("vCPUs", k.vcpus.to_string()),
        ("HyperVGenerations", k.hyper_v_generations.clone()),
        ("MemoryGB", format!("{}", k.memory_gb)),
        ("MaxDataDiskCount", (k.vcpus * 2).to_string()),
        ("CpuArchitectureType", k.architecture.clone()),
        ("LowPriorityCapable", "True".into()),
        ("PremiumIO", "True".into()),
        ("VMDeploymentTypes", "IaaS".into()),
        ("vCPUsAvailable", k.vcpus.to_string()),
        ("vCPUsPerCore", "2".into()),
        ("EphemeralOSDiskSupported", "True".into()),
        ("EncryptionAtHostSupported", "True".into()),
        (
            "AcceleratedNetworkingEnabled",
            flag(k.accelerated_networking).into(),
        ),
        ("RdmaEnabled", "False".into()),
        ("MaxNetworkInterfaces", "2".into()),
    ];
    if k.trusted_launch_disabled {
        capabilities.push(("TrustedLaunchDisabled", "True".into()));
    }
    if let Some(c) = &k.confidential_computing {
        capabilities.push(("ConfidentialComputingType", c.clone()));
    }
    let restricted: Vec<&String> = locations
        .iter()
        .filter(|l| {
            k.restricted_locations
                .iter()
                .any(|r| r.eq_ignore_ascii_case(l))
        })
        .collect();
    let restrictions: Vec<Value> = restricted
        .iter()
        .map(|l| {
            json!({
                "type": "Location",
                "values": [l],
                "restrictionInfo": {"locations": [l]},
                "reasonCode": "NotAvailableForSubscription",
            })
        })
        .collect();
    json!({
        "resourceType": "virtualMachines",
        "name": k.name,
        "tier": "Standard",
        "size": size,
        "family": k.family,
        "locations": locations,
        "locationInfo": locations.iter().map(|l| json!({"location": l, "zones": ["1", "2", "3"], "zoneDetails": []})).collect::<Vec<_>>(),
        "capabilities": capabilities.into_iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
        "restrictions": restrictions,
    })
}

/// `GET …/providers/Microsoft.Compute/skus`: every size (or those offered in the filter's
/// location, with only that location in `locations` and `locationInfo`).
pub fn list(s: &State, req: &Req) -> axum::response::Response {
    let wanted = req.param("$filter").and_then(filter_location);
    let value: Vec<Value> = s
        .config
        .scenario
        .vm_skus
        .iter()
        .filter_map(|k| {
            let locations: Vec<String> = k
                .locations
                .iter()
                .map(|l| l.to_ascii_lowercase())
                .filter(|l| wanted.as_ref().is_none_or(|w| w == l))
                .collect();
            (!locations.is_empty()).then(|| sku_body(k, &locations))
        })
        .collect();
    ok(json!({"value": value}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_filter() {
        assert_eq!(
            filter_location("location eq 'westus2'"),
            Some("westus2".into())
        );
        assert_eq!(
            filter_location("Location eq \"EastUS\""),
            Some("eastus".into())
        );
        assert_eq!(filter_location(""), None);
    }
}
