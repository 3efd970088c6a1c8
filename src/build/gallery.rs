//! The gallery an image goes to, read before anything is written. Image Builder creates the new
//! version in the image definition's region ("we take it from its parent image definition"),
//! and Compute Gallery needs that region among the replicas ("One of the regions must be the
//! region where the Gallery is deployed"; both from the template reference, "Create an Azure
//! Image Builder Bicep or ARM template JSON template"): it is added when missing, and is the
//! default when `replicationRegions` is empty. A version number the task knows in advance
//! (`galleryImageVersion` `X.Y.Z`, or `source` once the source's version is known) must not exist
//! yet ("The image version ID needs to be distinct or different from any image versions that are
//! in the existing Azure Compute Gallery"): otherwise the build would fail only when it
//! distributes, after the whole customization.
//!
//! Reads only. A read the identity may not make (403) leaves the plan as the user wrote it, with
//! a warning saying what could not be checked.

use anyhow::{Result, anyhow};
use serde::Deserialize;

use crate::agent::Console;
use crate::arm::{ArmClient, ArmError};
use crate::plan::{BuildPlan, Distribution, GalleryVersion, Replica, gallery};

/// Compute Gallery's api-version for image definitions and versions.
pub const GALLERY_API_VERSION: &str = "2023-07-03";

#[derive(Deserialize)]
struct ImageDefinition {
    location: String,
}

/// What reading the gallery changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// The image definition's region, when it could be read.
    pub definition_region: Option<String>,
    /// That region was added to the replicas.
    pub added: bool,
    /// The version number the build will create, when known before the build.
    pub version: Option<String>,
}

fn status_of(e: &anyhow::Error) -> Option<u16> {
    e.downcast_ref::<ArmError>().map(|a| a.status)
}

/// The replicas once the image definition's region is known: `region` first when missing
/// (one replica), or alone when the user gave none.
pub fn with_definition_region(replicas: &[Replica], region: &str) -> (Vec<Replica>, bool) {
    if replicas.iter().any(|r| r.region == region) {
        return (replicas.to_vec(), false);
    }
    let mut all = vec![Replica {
        region: region.to_owned(),
        count: 1,
    }];
    all.extend(replicas.iter().cloned());
    (all, true)
}

/// Reads the gallery for a gallery distribution and settles the plan's replicas; checks that a
/// version number known in advance is free. `source_version` is the marketplace source's exact
/// version, when resolved. Other distributions are left alone.
pub async fn check(
    arm: &ArmClient,
    console: &Console,
    plan: &mut BuildPlan,
    source_version: Option<&str>,
) -> Result<Checked> {
    let build_region = plan.location.clone();
    let source = plan.source.clone();
    let Distribution::SharedImage {
        gallery_image_id,
        version,
        regions,
        ..
    } = &mut plan.distribution
    else {
        return Ok(Checked::default());
    };
    let mut checked = Checked::default();
    let definition: Result<ImageDefinition> = arm
        .get(
            "reading the gallery image definition",
            gallery_image_id.as_str(),
            GALLERY_API_VERSION,
        )
        .await;
    match definition {
        Ok(d) => {
            let region = crate::plan::normalize_region(&d.location);
            let given = std::mem::take(regions);
            let (all, added) = with_definition_region(&given, &region);
            if added && !given.is_empty() {
                console.info(format!(
                    "the image definition {} is in {region}, where Image Builder creates the version, and Compute Gallery needs that region among the replicas: {region} (1 replica) added to replicationRegions",
                    gallery_image_id.name()
                ));
            }
            *regions = all;
            checked.added = added && !given.is_empty();
            checked.definition_region = Some(region);
        }
        Err(e) if status_of(&e) == Some(404) => {
            return Err(anyhow!(
                "input 'galleryImageId': the gallery image definition {gallery_image_id} does not exist; create it first (az sig image-definition create --resource-group {} --gallery-name {} --gallery-image-definition {} …) or correct the id. Nothing was created",
                gallery_image_id.resource_group,
                gallery_image_id.names[0],
                gallery_image_id.name()
            ));
        }
        Err(e) => {
            if regions.is_empty() {
                regions.push(Replica {
                    region: build_region,
                    count: 1,
                });
            }
            console.warning(format!(
                "could not read the gallery image definition {gallery_image_id} ({e:#}); the replication regions are used as given, and the image definition's region must be among them or the build fails when it distributes"
            ));
        }
    }

    let known = match version {
        GalleryVersion::Exact(v) => Some(v.clone()),
        GalleryVersion::Source => match source_version.or(match &source {
            crate::plan::Source::SharedImageVersion { image_version_id } => {
                Some(image_version_id.name())
            }
            _ => None,
        }) {
            Some(v) if gallery::gallery_version_number(v) => Some(v.to_owned()),
            Some(v) => {
                return Err(anyhow!(
                    "input 'galleryImageVersion': source takes the base image's version, and {v} is no gallery version number (X.Y.Z, each part at most 2147483647): set galleryImageVersion to X.Y.Z or latest. Nothing was created"
                ));
            }
            None => None,
        },
        _ => None,
    };
    if let Some(v) = &known {
        let path = format!("{gallery_image_id}/versions/{v}");
        let found: Result<serde_json::Value> = arm
            .get(
                "reading the gallery image version",
                &path,
                GALLERY_API_VERSION,
            )
            .await;
        match found {
            Ok(_) => {
                return Err(anyhow!(
                    "input 'galleryImageVersion': version {v} of {} exists already, and Image Builder needs a version number no other version has; choose a higher one, or latest. Nothing was created",
                    gallery_image_id
                ));
            }
            Err(e) if status_of(&e) == Some(404) => {}
            Err(e) => console.warning(format!(
                "could not check whether gallery image version {v} exists ({e:#}); if it does, the build fails when it distributes"
            )),
        }
    }
    checked.version = known;
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(region: &str, count: u32) -> Replica {
        Replica {
            region: region.into(),
            count,
        }
    }

    #[test]
    fn the_definition_region_joins_the_replicas_once() {
        assert_eq!(
            with_definition_region(&[], "westeurope"),
            (vec![r("westeurope", 1)], true)
        );
        assert_eq!(
            with_definition_region(&[r("eastus", 2)], "westeurope"),
            (vec![r("westeurope", 1), r("eastus", 2)], true)
        );
        assert_eq!(
            with_definition_region(&[r("eastus", 2), r("westeurope", 3)], "westeurope"),
            (vec![r("eastus", 2), r("westeurope", 3)], false)
        );
    }
}
