//! Azure Compute Gallery image versions made by SharedImage distributors: which version a run
//! creates (an explicit version id, `versioning` `Latest` with an optional `major`, `Source`, or
//! the legacy generated number), the checks that make a distribution fail, and
//! `GET …/galleries/{g}/images/{d}/versions[/{v}]` answering the versions of the scenario
//! ([`crate::config::GalleryImageConfig`]) and those the runs created, with the
//! `publishingProfile.targetRegions` (`regionalReplicaCount`) the distributor asked for.

use std::{cmp::Ordering, collections::BTreeMap, sync::LazyLock};

use axum::{http::StatusCode, response::Response};
use regex::Regex;
use serde_json::{Value, json};

use crate::{
    arm::{error, ok},
    compute::compare_versions,
    config::GalleryImageConfig,
    state::{State, arm_time, now},
};

const VERSION_TYPE: &str = "Microsoft.Compute/galleries/images/versions";

/// "Create an Azure Image Builder Bicep or ARM template JSON template", Distribute: sharedImage:
/// `galleryImageId` names an image definition (automatic versioning) or an image version
/// (explicit versioning, "for example: 1.1.1").
static GALLERY_IMAGE_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/galleries/[^/]+/images/[^/]+)(?:/versions/([^/]+))?$").unwrap()
});

/// `(definition id, explicit version)` of a `galleryImageId`, or None when it names neither.
pub fn parse_gallery_image_id(id: &str) -> Option<(String, Option<String>)> {
    let c = GALLERY_IMAGE_ID.captures(id)?;
    Some((c[1].to_string(), c.get(2).map(|m| m.as_str().to_string())))
}

/// A gallery image version name is `Major.Minor.Patch`, digits within a 32-bit integer each
/// (Compute REST API, "Gallery Image Versions - Create Or Update", `galleryImageVersionName`).
pub fn is_version_name(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<i32>().is_ok()
        })
}

fn region(name: &str) -> String {
    name.to_ascii_lowercase().replace(' ', "")
}

/// The versions created by runs, by lower-cased version id.
#[derive(Default)]
pub struct Galleries {
    created: BTreeMap<String, Value>,
}

impl Galleries {
    fn created_under(&self, definition_id: &str) -> Vec<String> {
        let prefix = format!("{}/versions/", definition_id.to_ascii_lowercase());
        self.created
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(str::to_string)
            .collect()
    }
}

fn configured<'a>(s: &'a State, definition_id: &str) -> Option<&'a GalleryImageConfig> {
    s.config
        .gallery_images
        .iter()
        .find(|g| g.id().eq_ignore_ascii_case(definition_id))
}

/// Every version of a definition: the scenario's and the created ones.
pub fn versions(s: &State, definition_id: &str) -> Vec<String> {
    let mut all: Vec<String> = configured(s, definition_id)
        .map(|g| g.versions.clone())
        .unwrap_or_default();
    all.extend(s.galleries.lock().unwrap().created_under(definition_id));
    all.sort_by(|a, b| compare_versions(a, b));
    all.dedup();
    all
}

/// The `Latest` scheme: the template reference's example (0.1.1 … 2.1.0 gives 2.1.1 with `major`
/// unset or 2, 1.2.1 with 1, 0.1.3 with 0) is "the highest existing version with that major,
/// patch + 1". With no version under that major the docs are silent: `<major>.0.0` is assumed
/// (and 1.0.0 for an empty definition without `major`).
pub fn next_latest(existing: &[String], major: Option<i64>) -> String {
    let parse = |v: &str| -> Option<(i64, i64, i64)> {
        let p: Vec<i64> = v
            .split('.')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        (p.len() == 3).then(|| (p[0], p[1], p[2]))
    };
    let highest = existing
        .iter()
        .filter_map(|v| parse(v).map(|n| (n, v)))
        .filter(|((m, _, _), _)| major.is_none_or(|want| *m == want))
        .max_by(|a, b| a.0.cmp(&b.0).then(Ordering::Equal));
    match (highest, major) {
        // Major and minor as written (`22.04.…` stays `22.04`), the patch one higher.
        (Some(((_, _, p), text)), _) => {
            let (head, _) = text.rsplit_once('.').unwrap_or((text, ""));
            format!("{head}.{}", p + 1)
        }
        (None, Some(m)) => format!("{m}.0.0"),
        (None, None) => "1.0.0".into(),
    }
}

/// One image version a run is about to create.
#[derive(Debug, Clone)]
pub struct Planned {
    pub run_output_name: String,
    pub version_id: String,
    pub body: Value,
}

/// The troubleshooting page's wording for a gallery distribution that failed ("Troubleshoot Azure
/// VM Image Builder", "Error waiting on shared image gallery": "Failed in distributing 1 images
/// out of total 1: {[Error 0] [Distribute 0] Error publishing MDI to shared image gallery:<id>,
/// Location:<region>. Error: …}").
fn distribution_error(
    total: usize,
    index: usize,
    definition: &str,
    location: &str,
    why: &str,
) -> String {
    format!(
        "Failed in distributing 1 images out of total {total}: {{[Error 0] [Distribute {index}] Error publishing MDI to shared image gallery:{definition}, Location:{location}. Error: {why}}}"
    )
}

/// The versions the run's SharedImage distributors create, checked against the gallery, or the
/// run's distribution failure. `source_version` is the source's exact version (platform image
/// version or gallery image version), for the `Source` scheme.
pub fn plan(
    s: &State,
    template_id: &str,
    props: &Value,
    template_location: &str,
    source_version: Option<&str>,
) -> Result<Vec<Planned>, String> {
    let distributors: Vec<&Value> = props
        .get("distribute")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let total = distributors.len();
    let mut planned: Vec<Planned> = Vec::new();
    for (index, d) in distributors.iter().enumerate() {
        if d.get("type").and_then(Value::as_str) != Some("SharedImage") {
            continue;
        }
        let gallery_image_id = d
            .get("galleryImageId")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some((definition, explicit)) = parse_gallery_image_id(gallery_image_id) else {
            // Refused at PUT; nothing to create.
            continue;
        };
        let known = configured(s, &definition);
        let location = known
            .map(|g| region(&g.location))
            .unwrap_or_else(|| region(template_location));
        let fail = |why: String| distribution_error(total, index, &definition, &location, &why);
        let existing = versions(s, &definition);
        let scheme = d.pointer("/versioning/scheme").and_then(Value::as_str);
        let version = match (explicit, scheme) {
            (Some(v), _) => v,
            (None, Some(s)) if s.eq_ignore_ascii_case("Source") => {
                let v = source_version.unwrap_or("");
                if !is_version_name(v) {
                    // Emulator wording: the docs only say the scheme is "based upon the version
                    // number of the source image"; a version that is not a gallery version name
                    // cannot be used.
                    return Err(fail(format!(
                        "versioning scheme 'Source': the source image version '{v}' is not a valid gallery image version name (Major.Minor.Patch)"
                    )));
                }
                v.to_string()
            }
            (None, Some(s)) if s.eq_ignore_ascii_case("Latest") => {
                let major = d
                    .pointer("/versioning/major")
                    .and_then(Value::as_i64)
                    .filter(|m| *m >= 0); // swagger: "-1 is equivalent to leaving it unset"
                next_latest(&existing, major)
            }
            // No `versioning`: the legacy generated number the template reference's run output
            // example shows (`…/versions/0.24105.52755`), monotonic: runs in the same second
            // take the next patch number.
            _ => {
                let t = now();
                let head = format!("0.{}{:03}", t.year() % 100, t.ordinal());
                let mut patch = t.unix_timestamp() % 65535;
                let taken = |v: &str| {
                    existing.iter().any(|e| e == v)
                        || planned
                            .iter()
                            .any(|p| p.version_id.ends_with(&format!("/versions/{v}")))
                };
                while taken(&format!("{head}.{patch}")) {
                    patch += 1;
                }
                format!("{head}.{patch}")
            }
        };
        let version_id = format!("{definition}/versions/{version}");
        // "The image version ID needs to be distinct or different from any image versions that
        // are in the existing Azure Compute Gallery" (template reference, Distribute:
        // sharedImage). When the service finds out is not documented: modelled at distribution,
        // as Compute refusing to create a version that exists.
        let taken = existing.iter().any(|v| v.eq_ignore_ascii_case(&version))
            || planned
                .iter()
                .any(|p| p.version_id.eq_ignore_ascii_case(&version_id));
        if taken {
            return Err(fail(format!(
                "Gallery image version '{version_id}' already exists. The image version ID needs to be distinct from any image version in the gallery image definition."
            )));
        }
        let target_regions: Vec<Value> = match d.get("targetRegions").and_then(Value::as_array) {
            Some(regions) if !regions.is_empty() => regions
                .iter()
                .map(|r| {
                    json!({
                        "name": r.get("name").and_then(Value::as_str).unwrap_or(""),
                        "regionalReplicaCount": r.get("replicaCount").and_then(Value::as_i64).unwrap_or(1),
                        "storageAccountType": r.get("storageAccountType").and_then(Value::as_str).unwrap_or("Standard_LRS"),
                    })
                })
                .collect(),
            _ => {
                let replication: Vec<Value> = d
                    .get("replicationRegions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|r| {
                        json!({"name": r, "regionalReplicaCount": 1,
                        "storageAccountType": d.get("storageAccountType").and_then(Value::as_str).unwrap_or("Standard_LRS")})
                    })
                    .collect();
                if replication.is_empty() {
                    vec![
                        json!({"name": location, "regionalReplicaCount": 1, "storageAccountType": "Standard_LRS"}),
                    ]
                } else {
                    replication
                }
            }
        };
        // Template reference, Distribute: sharedImage, `replicationRegions`: "One of the regions
        // must be the region where the Gallery is deployed"; the version is created in the
        // definition's region and replicated from there (same page's note on locations). The
        // page says nothing of the kind for `targetRegions`, its successor: the same rule is
        // assumed. Only for definitions of the scenario, whose region is known.
        if known.is_some()
            && !target_regions
                .iter()
                .any(|r| region(r["name"].as_str().unwrap_or("")) == location)
        {
            return Err(fail(format!(
                "The target regions of the image version must include the region of the gallery, '{location}'."
            )));
        }
        let exclude = d
            .get("excludeFromLatest")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut body = json!({
            "id": version_id,
            "name": version,
            "type": VERSION_TYPE,
            "location": location,
            "properties": {
                "publishingProfile": {
                    "targetRegions": target_regions,
                    "replicaCount": 1,
                    "excludeFromLatest": exclude,
                    "publishedDate": arm_time(now()),
                    "storageAccountType": "Standard_LRS",
                },
                "storageProfile": {"source": {"id": template_id}},
                "provisioningState": "Succeeded",
            },
        });
        if let Some(tags) = d.get("artifactTags").filter(|t| t.is_object()) {
            body["tags"] = tags.clone();
        }
        planned.push(Planned {
            run_output_name: d
                .get("runOutputName")
                .and_then(Value::as_str)
                .unwrap_or("output")
                .to_string(),
            version_id,
            body,
        });
    }
    Ok(planned)
}

/// Records created versions.
pub fn commit(s: &State, planned: &[Planned]) {
    let mut g = s.galleries.lock().unwrap();
    for p in planned {
        g.created
            .insert(p.version_id.to_ascii_lowercase(), p.body.clone());
    }
}

/// A scenario version as Compute answers it: in the gallery's region, one replica there.
fn configured_body(g: &GalleryImageConfig, v: &str) -> Value {
    json!({
        "id": format!("{}/versions/{v}", g.id()),
        "name": v,
        "type": VERSION_TYPE,
        "location": g.location,
        "properties": {
            "publishingProfile": {
                "targetRegions": [{"name": g.location, "regionalReplicaCount": 1, "storageAccountType": "Standard_LRS"}],
                "replicaCount": 1,
                "excludeFromLatest": false,
                "storageAccountType": "Standard_LRS",
            },
            "provisioningState": "Succeeded",
        },
    })
}

fn find(s: &State, definition_id: &str, version: &str) -> Option<Value> {
    let id = format!("{definition_id}/versions/{version}").to_ascii_lowercase();
    if let Some(v) = s.galleries.lock().unwrap().created.get(&id) {
        return Some(v.clone());
    }
    let g = configured(s, definition_id)?;
    let v = g
        .versions
        .iter()
        .find(|v| v.eq_ignore_ascii_case(version))?;
    Some(configured_body(g, v))
}

fn not_found(rg: &str, gallery: &str, image: &str, version: Option<&str>) -> Response {
    let (kind, name) = match version {
        Some(v) => (
            "Microsoft.Compute/galleries/images/versions",
            format!("{gallery}/{image}/{v}"),
        ),
        None => (
            "Microsoft.Compute/galleries/images",
            format!("{gallery}/{image}"),
        ),
    };
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{kind}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

/// `GET …/galleries/{g}/images/{d}`: the image definition, shaped like Compute's answer
/// (REST API "Gallery Images - Get": `location`, `properties.osType`, `osState`,
/// `hyperVGeneration`, `architecture`, `features`, `identifier`); 404 for a definition the
/// scenario does not hold, as for any resource ARM cannot find.
pub fn get_definition(s: &State, sub: &str, rg: &str, gallery: &str, image: &str) -> Response {
    let definition = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/galleries/{gallery}/images/{image}"
    );
    let Some(g) = configured(s, &definition) else {
        return not_found(rg, gallery, image, None);
    };
    let features: Vec<Value> = g
        .features
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    ok(json!({
        "id": g.id(),
        "name": g.image,
        "type": "Microsoft.Compute/galleries/images",
        "location": g.location,
        "properties": {
            "osType": g.os_type,
            "osState": "Generalized",
            "hyperVGeneration": g.hyper_v_generation,
            "architecture": g.architecture,
            "features": features,
            "identifier": {"publisher": "aib-test", "offer": g.gallery, "sku": g.image},
            "provisioningState": "Succeeded",
        },
    }))
}

/// `GET …/galleries/{g}/images/{d}/versions[/{v}]`.
pub fn get(
    s: &State,
    sub: &str,
    rg: &str,
    gallery: &str,
    image: &str,
    version: Option<&str>,
) -> Response {
    let definition = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/galleries/{gallery}/images/{image}"
    );
    match version {
        Some(v) => match find(s, &definition, v) {
            Some(body) => ok(body),
            None => not_found(rg, gallery, image, Some(v)),
        },
        None => {
            let all = versions(s, &definition);
            if all.is_empty() && configured(s, &definition).is_none() {
                return not_found(rg, gallery, image, None);
            }
            let value: Vec<Value> = all.iter().filter_map(|v| find(s, &definition, v)).collect();
            ok(json!({"value": value}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Vec<String> {
        [
            "0.1.1", "0.1.2", "1.0.0", "1.0.1", "1.1.0", "1.1.1", "1.2.0", "2.0.0", "2.0.1",
            "2.1.0",
        ]
        .iter()
        .map(|v| v.to_string())
        .collect()
    }

    #[test]
    fn latest_follows_the_template_reference_examples() {
        let e = example();
        assert_eq!(next_latest(&e, None), "2.1.1");
        assert_eq!(next_latest(&e, Some(2)), "2.1.1");
        assert_eq!(next_latest(&e, Some(1)), "1.2.1");
        assert_eq!(next_latest(&e, Some(0)), "0.1.3");
        assert_eq!(next_latest(&e, Some(7)), "7.0.0");
        assert_eq!(next_latest(&[], None), "1.0.0");
    }

    #[test]
    fn gallery_image_ids_and_version_names() {
        let def =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/d";
        assert_eq!(parse_gallery_image_id(def), Some((def.to_string(), None)));
        assert_eq!(
            parse_gallery_image_id(&format!("{def}/versions/1.2.3")),
            Some((def.to_string(), Some("1.2.3".into())))
        );
        assert_eq!(parse_gallery_image_id("/subscriptions/s/galleries/g"), None);
        assert!(is_version_name("22.04.202411010"));
        assert!(!is_version_name("1.2"));
        assert!(!is_version_name("1.2.x"));
        assert!(!is_version_name("1.2.99999999999"));
    }
}
