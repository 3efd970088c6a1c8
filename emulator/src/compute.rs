//! `Microsoft.Compute` platform (marketplace) image versions: the list a task reads to resolve
//! `latest`, and single versions. Names match case-insensitively, as Azure does.

use std::cmp::Ordering;

use axum::{http::StatusCode, response::Response};
use serde_json::{Value, json};

use crate::{
    arm::{error, ok},
    config::PlatformImageConfig,
    server::Req,
    state::State,
};

/// Compares dotted versions numerically (`22.04.202410020` > `22.04.202409250`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    parts(a).cmp(&parts(b))
}

pub fn find_image<'a>(
    s: &'a State,
    publisher: &str,
    offer: &str,
    sku: &str,
) -> Option<&'a PlatformImageConfig> {
    s.config.platform_images.iter().find(|i| {
        i.publisher.eq_ignore_ascii_case(publisher)
            && i.offer.eq_ignore_ascii_case(offer)
            && i.sku.eq_ignore_ascii_case(sku)
    })
}

/// The highest version of an image.
pub fn latest(image: &PlatformImageConfig) -> Option<String> {
    image
        .versions
        .iter()
        .max_by(|a, b| compare_versions(a, b))
        .cloned()
}

fn version_id(sub: &str, location: &str, i: &PlatformImageConfig, v: &str) -> String {
    format!(
        "/Subscriptions/{sub}/Providers/Microsoft.Compute/Locations/{location}/Publishers/{}/ArtifactTypes/VMImage/Offers/{}/Skus/{}/Versions/{v}",
        i.publisher, i.offer, i.sku
    )
}

/// `GET …/skus/{sku}/versions[/{version}]`.
#[allow(clippy::too_many_arguments)]
pub fn versions(
    s: &State,
    req: &Req,
    sub: &str,
    location: &str,
    publisher: &str,
    offer: &str,
    sku: &str,
    version: Option<&str>,
) -> Response {
    let location = location.to_ascii_lowercase();
    let Some(image) = find_image(s, publisher, offer, sku) else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "Artifact: VMImage was not found.",
        );
    };
    let mut versions = image.versions.clone();
    versions.sort_by(|a, b| compare_versions(a, b));
    if let Some(wanted) = version {
        let Some(v) = versions.iter().find(|v| v.eq_ignore_ascii_case(wanted)) else {
            return error(
                StatusCode::NOT_FOUND,
                "NotFound",
                "Artifact: VMImage was not found.",
            );
        };
        let generation = if image.sku.contains("gen1") {
            "V1"
        } else {
            "V2"
        };
        let mut body = json!({
            "properties": {
                "hyperVGeneration": generation,
                "architecture": "x64",
                "replicaType": "Managed",
                "disallowed": {"vmDiskType": "Unmanaged"},
                "automaticOSUpgradeProperties": {"automaticOSUpgradeSupported": false},
                "imageDeprecationStatus": {"imageState": "Active"},
                "features": [{"name": "SecurityType", "value": "TrustedLaunchSupported"}, {"name": "IsAcceleratedNetworkSupported", "value": "True"}],
                "osDiskImage": {"operatingSystem": image.os_type, "sizeInGb": 30},
                "dataDiskImages": []
            },
            "location": location,
            "name": v,
            "id": version_id(sub, &location, image, v),
        });
        if let Some((name, product, publisher)) = &image.plan {
            body["properties"]["plan"] =
                json!({"name": name, "product": product, "publisher": publisher});
        }
        return ok(body);
    }
    if req
        .param("$orderby")
        .is_some_and(|o| o.to_ascii_lowercase().contains("desc"))
    {
        versions.reverse();
    }
    if let Some(top) = req.param("$top").and_then(|t| t.parse::<usize>().ok()) {
        versions.truncate(top);
    }
    let list: Vec<Value> = versions
        .iter()
        .map(|v| json!({"location": location, "name": v, "id": version_id(sub, &location, image, v)}))
        .collect();
    ok(Value::Array(list))
}
