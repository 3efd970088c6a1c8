//! Check 5: a gallery target fits the image. The image definition must exist; its `osType`
//! fit the provisioner; its `hyperVGeneration` equal the source's (a Gen2 image cannot become a
//! version of a Gen1 definition, nor the reverse: "Create an image definition and an image
//! version", Compute Gallery); its security type be one the source supports ("Trusted Launch
//! for Azure virtual machines": a `TrustedLaunch` definition takes Gen2 images that support
//! Trusted Launch; `ConfidentialVM` needs a confidential-VM capable image); its architecture
//! match; an exact `galleryImageVersion` must not exist yet; and the definition's region, where
//! the version is created, is among the replicas (the build adds it when missing, see
//! `crate::build::gallery`).

use super::Finding;
use super::read::{Read, Reader, denied, failed};
use super::source::{Definition, security_type};
use crate::plan::{Distribution, GalleryVersion, Os, normalize_region};

const GALLERY_API: &str = crate::build::gallery::GALLERY_API_VERSION;
const CHECK: &str = "gallery";

/// Whether a definition's security type takes an image whose own is `source` (`None`:
/// unknown). `Err` says why not; `Ok(false)` means it could not be told.
pub fn security_fits(definition: &str, source: Option<&str>) -> Result<bool, String> {
    let def = definition.to_ascii_lowercase();
    let needs_cvm = def == "confidentialvm";
    let needs_tl = def == "trustedlaunch";
    if !needs_cvm && !needs_tl {
        return Ok(true); // Standard, or *Supported: any image
    }
    let Some(source) = source else {
        return Ok(false);
    };
    let src = source.to_ascii_lowercase();
    if needs_cvm && !src.contains("confidential") {
        return Err(format!(
            "the definition's security type is ConfidentialVM and the source's is {source}"
        ));
    }
    if needs_tl && !src.contains("trustedlaunch") {
        return Err(format!(
            "the definition's security type is TrustedLaunch and the source's is {source}"
        ));
    }
    Ok(true)
}

pub async fn check(r: &Reader<'_>) -> Vec<Finding> {
    let Distribution::SharedImage {
        gallery_image_id,
        version,
        regions,
        ..
    } = &r.plan.distribution
    else {
        return Vec::new();
    };
    let name = gallery_image_id.name();
    let definition = match r
        .get::<Definition>(
            "reading the gallery image definition",
            gallery_image_id.as_str(),
            GALLERY_API,
        )
        .await
    {
        Read::Found(d) => d,
        Read::Missing => {
            return vec![Finding::error(
                CHECK,
                format!(
                    "the gallery image definition {gallery_image_id} (galleryImageId) does not exist"
                ),
                format!(
                    "create it (az sig image-definition create --resource-group {} --gallery-name {} --gallery-image-definition {name} --publisher … --offer … --sku … --os-type {}) or correct galleryImageId",
                    gallery_image_id.resource_group,
                    gallery_image_id.names[0],
                    if r.plan.customization.os == Os::Windows {
                        "Windows"
                    } else {
                        "Linux"
                    }
                ),
            )];
        }
        Read::Denied { action } => {
            return vec![denied(
                CHECK,
                &format!("gallery image definition {name}"),
                &action,
            )];
        }
        Read::Failed(why) => return vec![failed(CHECK, "the gallery image definition", &why)],
    };
    let p = &definition.properties;
    let mut findings = Vec::new();
    let mut problems = 0;
    let wanted = if r.plan.customization.os == Os::Windows {
        "Windows"
    } else {
        "Linux"
    };
    if let Some(os) = &p.os_type
        && !os.eq_ignore_ascii_case(wanted)
    {
        problems += 1;
        findings.push(Finding::error(
            CHECK,
            format!("image definition {name} is for {os} images, and provisioner builds a {wanted} image"),
            "use an image definition of the image's OS type, or correct provisioner",
        ));
    }
    let source = r.source().await;
    if let (Some(def_gen), Some(src_gen)) = (
        &p.hyper_v_generation,
        source.and_then(|s| s.generation.as_ref()),
    ) && !def_gen.eq_ignore_ascii_case(src_gen)
    {
        problems += 1;
        findings.push(Finding::error(
            CHECK,
            format!(
                "image definition {name} is Hyper-V generation {def_gen}, and the source {} is {src_gen}: Compute Gallery refuses the version when they differ",
                source.map(|s| s.name.as_str()).unwrap_or("image")
            ),
            format!("use an image definition of generation {src_gen} (az sig image-definition create … --hyper-v-generation {src_gen}), or a {def_gen} source image (e.g. a -gen1/-gen2 SKU)"),
        ));
    }
    if let Some(def_security) = security_type(&p.features) {
        match security_fits(&def_security, source.and_then(|s| s.security_type.as_deref())) {
            Err(why) => {
                problems += 1;
                findings.push(Finding::error(
                    CHECK,
                    format!("image definition {name} cannot take this image: {why}"),
                    "use an image definition whose security type the source supports (e.g. TrustedLaunchSupported), or a source that supports the definition's",
                ));
            }
            Ok(false) => findings.push(Finding::warning(
                CHECK,
                format!("image definition {name} requires security type {def_security}; whether the source supports it could not be read"),
            )),
            Ok(true) => {}
        }
    }
    if let (Some(def_arch), Some(src_arch)) = (
        &p.architecture,
        source.and_then(|s| s.architecture.as_ref()),
    ) && !def_arch.eq_ignore_ascii_case(src_arch)
    {
        problems += 1;
        findings.push(Finding::error(
            CHECK,
            format!("image definition {name} is for {def_arch}, and the source is {src_arch}"),
            "use an image definition of the source's architecture, or another source image",
        ));
    }
    if let GalleryVersion::Exact(v) = version {
        let path = format!("{gallery_image_id}/versions/{v}");
        match r
            .get::<serde_json::Value>("reading the gallery image version", &path, GALLERY_API)
            .await
        {
            Read::Found(_) => {
                problems += 1;
                findings.push(Finding::error(
                    CHECK,
                    format!("version {v} of {name} (galleryImageVersion) exists already; Image Builder needs a version number no other version has"),
                    "set galleryImageVersion to a higher number, or latest",
                ));
            }
            Read::Denied { action } => findings.push(denied(
                CHECK,
                &format!("whether version {v} exists"),
                &action,
            )),
            _ => {}
        }
    }
    let home = normalize_region(&definition.location);
    if !home.is_empty() && !regions.is_empty() && !regions.iter().any(|r| r.region == home) {
        findings.push(Finding::ok(
            CHECK,
            format!("image definition {name} is in {home}, missing from replicationRegions: the build adds it (Compute Gallery creates the version there first)"),
        ));
    }
    if problems == 0 {
        findings.push(Finding::ok(
            CHECK,
            format!(
                "image definition {name} ({}) fits the image",
                [
                    p.os_type.as_deref(),
                    p.hyper_v_generation.as_deref(),
                    p.architecture.as_deref()
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
            ),
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_types_follow_trusted_launch_rules() {
        assert_eq!(security_fits("TrustedLaunchSupported", None), Ok(true));
        assert_eq!(security_fits("Standard", Some("")), Ok(true));
        assert_eq!(
            security_fits("TrustedLaunch", Some("TrustedLaunchSupported")),
            Ok(true)
        );
        assert_eq!(
            security_fits(
                "TrustedLaunch",
                Some("TrustedLaunchAndConfidentialVmSupported")
            ),
            Ok(true)
        );
        assert!(security_fits("TrustedLaunch", Some("Standard")).is_err());
        assert!(security_fits("ConfidentialVM", Some("TrustedLaunchSupported")).is_err());
        assert_eq!(
            security_fits(
                "ConfidentialVM",
                Some("TrustedLaunchAndConfidentialVmSupported")
            ),
            Ok(true)
        );
        assert_eq!(security_fits("TrustedLaunch", None), Ok(false));
    }
}
