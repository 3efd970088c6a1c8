//! The base image's exact version: `latest` resolved against the region's platform image list,
//! so the outputs (`pirVersion`) name the version the image was really built from.

use std::cmp::Ordering;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::arm::{ArmClient, ArmError};
use crate::image_template::PurchasePlan;

const COMPUTE_API_VERSION: &str = "2024-07-01";

#[derive(Deserialize)]
struct VersionEntry {
    name: String,
}

/// Compares dotted versions numerically, part by part (`22.04.202410020` > `22.04.202409250`);
/// a part that is not a number compares as text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// The highest of `versions`.
pub fn latest<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    versions.into_iter().max_by(|a, b| compare_versions(a, b))
}

fn versions_path(
    subscription: &str,
    location: &str,
    publisher: &str,
    offer: &str,
    sku: &str,
) -> String {
    format!(
        "/subscriptions/{subscription}/providers/Microsoft.Compute/locations/{location}/publishers/{publisher}/artifacttypes/vmimage/offers/{offer}/skus/{sku}/versions"
    )
}

/// The exact version a marketplace image `version` (`latest` or exact) stands for in `location`.
pub async fn exact_version(
    arm: &ArmClient,
    subscription: &str,
    location: &str,
    (publisher, offer, sku): (&str, &str, &str),
    version: &str,
) -> Result<String> {
    let path = versions_path(subscription, location, publisher, offer, sku);
    let operation = format!("listing the versions of {publisher}:{offer}:{sku} in {location}");
    let response = arm
        .send(
            &operation,
            reqwest::Method::GET,
            arm.url(&path, COMPUTE_API_VERSION)?,
            None,
        )
        .await;
    let entries: Vec<VersionEntry> = match response {
        Ok(r) => r.json(&operation)?,
        Err(e)
            if e.downcast_ref::<ArmError>()
                .is_some_and(|a| a.status == 404) =>
        {
            return Err(e).context(format!(
                "input 'baseImage': the marketplace image {publisher}:{offer}:{sku} was not found in {location}; check the publisher, offer and SKU (az vm image list --all -p {publisher} -f {offer} -s {sku} -l {location})"
            ));
        }
        Err(e) => return Err(e),
    };
    if version.eq_ignore_ascii_case("latest") {
        return latest(entries.iter().map(|e| e.name.as_str()))
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "input 'baseImage': {publisher}:{offer}:{sku} has no versions in {location}"
                )
            });
    }
    entries
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(version))
        .map(|e| e.name.clone())
        .with_context(|| {
            let newest = latest(entries.iter().map(|e| e.name.as_str())).unwrap_or("none");
            format!("input 'baseImageVersion': {publisher}:{offer}:{sku} has no version {version} in {location} (the newest is {newest})")
        })
}

#[derive(Deserialize)]
struct VersionDetails {
    #[serde(default)]
    properties: VersionProperties,
}

#[derive(Default, Deserialize)]
struct VersionProperties {
    plan: Option<PlanProperty>,
}

#[derive(Deserialize)]
struct PlanProperty {
    name: String,
    product: String,
    publisher: String,
}

/// The purchase plan a marketplace image version is sold with, if any: Image Builder needs it
/// as `planInfo` (and the subscription must have accepted its terms) to build from the image.
pub async fn purchase_plan(
    arm: &ArmClient,
    subscription: &str,
    location: &str,
    (publisher, offer, sku): (&str, &str, &str),
    exact_version: &str,
) -> Result<Option<PurchasePlan>> {
    let path = format!(
        "{}/{exact_version}",
        versions_path(subscription, location, publisher, offer, sku)
    );
    let details: VersionDetails = arm
        .get(
            &format!("reading {publisher}:{offer}:{sku}:{exact_version}"),
            &path,
            COMPUTE_API_VERSION,
        )
        .await?;
    Ok(details.properties.plan.map(|p| PurchasePlan {
        plan_name: p.name,
        plan_product: p.product,
        plan_publisher: p.publisher,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_details_carry_the_plan() {
        let d: VersionDetails = serde_json::from_str(
            r#"{"properties":{"plan":{"name":"cis-ubuntu2204-l1","product":"cis-ubuntu-linux-2204-l1","publisher":"center-for-internet-security-inc"},"osDiskImage":{}},"name":"1.0.0"}"#,
        )
        .unwrap();
        let plan = d.properties.plan.unwrap();
        assert_eq!(
            (plan.name.as_str(), plan.product.as_str()),
            ("cis-ubuntu2204-l1", "cis-ubuntu-linux-2204-l1")
        );
        let none: VersionDetails = serde_json::from_str(r#"{"properties":{}}"#).unwrap();
        assert!(none.properties.plan.is_none());
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(
            compare_versions("22.04.202410020", "22.04.202409250"),
            Ordering::Greater
        );
        assert_eq!(compare_versions("1.10.0", "1.9.9"), Ordering::Greater);
        assert_eq!(compare_versions("1.0", "1.0.0"), Ordering::Less);
        assert_eq!(compare_versions("2.0.0", "2.0.0"), Ordering::Equal);
        assert_eq!(
            latest([
                "20348.2849.241106",
                "20348.2966.250108",
                "20348.2762.241009"
            ]),
            Some("20348.2966.250108")
        );
        assert_eq!(latest(std::iter::empty()), None);
    }
}
