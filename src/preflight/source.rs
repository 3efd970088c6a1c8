//! Check 4: the source image exists where the build runs, and what it is. A marketplace image
//! (publisher/offer/sku, and a pinned version) must be offered in the build region, and one sold
//! with a purchase plan needs the subscription's acceptance of its terms (Marketplace Ordering
//! "Marketplace Agreements - Get"; without it the build VM cannot be created); a managed image
//! must be in the build region and a gallery image version replicated there (template
//! reference: "the image version must reside in the same region as your Azure Image Builder
//! template"; managed images: "same subscription and region"). The facts read here (generation,
//! architecture, security type, OS) serve the gallery check too.

use serde::Deserialize;

use super::Finding;
use super::read::{Read, Reader, denied, failed};
use crate::build::source::latest;
use crate::plan::{Os, Source, normalize_region};

const COMPUTE_API: &str = "2024-07-01";
const GALLERY_API: &str = crate::build::gallery::GALLERY_API_VERSION;
const MARKETPLACE_API: &str = "2021-01-01";
const CHECK: &str = "source";

/// What the source image is, as far as Azure said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceFacts {
    /// `Linux` or `Windows`.
    pub os_type: Option<String>,
    /// `V1` or `V2`.
    pub generation: Option<String>,
    /// `x64` or `Arm64`.
    pub architecture: Option<String>,
    /// The `SecurityType` feature, e.g. `TrustedLaunchSupported`.
    pub security_type: Option<String>,
    /// What it is, for messages.
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Feature {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// The `SecurityType` feature's value, if any.
pub fn security_type(features: &[Feature]) -> Option<String> {
    features
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case("SecurityType"))
        .map(|f| f.value.clone())
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlatformVersion {
    #[serde(default)]
    properties: PlatformProperties,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlatformProperties {
    hyper_v_generation: Option<String>,
    architecture: Option<String>,
    #[serde(default)]
    features: Vec<Feature>,
    plan: Option<Plan>,
    os_disk_image: Option<OsDiskImage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OsDiskImage {
    operating_system: Option<String>,
}

#[derive(Deserialize)]
struct Plan {
    name: String,
    product: String,
    publisher: String,
}

#[derive(Deserialize)]
struct Agreement {
    #[serde(default)]
    properties: AgreementProperties,
}

#[derive(Default, Deserialize)]
struct AgreementProperties {
    #[serde(default)]
    accepted: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedImage {
    #[serde(default)]
    location: String,
    #[serde(default)]
    properties: ManagedImageProperties,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManagedImageProperties {
    hyper_v_generation: Option<String>,
    storage_profile: Option<StorageProfile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StorageProfile {
    os_disk: Option<OsDisk>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OsDisk {
    os_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GalleryVersion {
    #[serde(default)]
    properties: GalleryVersionProperties,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GalleryVersionProperties {
    publishing_profile: Option<PublishingProfile>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublishingProfile {
    #[serde(default)]
    target_regions: Vec<Named>,
}

/// An image definition (for a gallery source here, and the gallery target in `gallery`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub properties: DefinitionProperties,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionProperties {
    pub os_type: Option<String>,
    pub hyper_v_generation: Option<String>,
    pub architecture: Option<String>,
    #[serde(default)]
    pub features: Vec<Feature>,
}

fn versions_path(r: &Reader<'_>, publisher: &str, offer: &str, sku: &str) -> String {
    format!(
        "/subscriptions/{}/providers/Microsoft.Compute/locations/{}/publishers/{publisher}/artifacttypes/vmimage/offers/{offer}/skus/{sku}/versions",
        r.subscription(),
        r.plan.location
    )
}

/// The facts of the source, `None` when they cannot be read (the check says why).
pub async fn facts(r: &Reader<'_>) -> Option<SourceFacts> {
    match &r.plan.source {
        Source::Marketplace {
            publisher,
            offer,
            sku,
            version,
        } => {
            let exact = match version.as_str() {
                "latest" => match r
                    .get::<Vec<Named>>(
                        "listing the image's versions",
                        &versions_path(r, publisher, offer, sku),
                        COMPUTE_API,
                    )
                    .await
                {
                    Read::Found(list) => latest(list.iter().map(|v| v.name.as_str()))?.to_owned(),
                    _ => return None,
                },
                v => v.to_owned(),
            };
            let path = format!("{}/{exact}", versions_path(r, publisher, offer, sku));
            let Read::Found(v) = r
                .get::<PlatformVersion>("reading the image version", &path, COMPUTE_API)
                .await
            else {
                return None;
            };
            let p = v.properties;
            Some(SourceFacts {
                os_type: p.os_disk_image.and_then(|o| o.operating_system),
                generation: p.hyper_v_generation,
                architecture: p.architecture,
                security_type: security_type(&p.features),
                name: format!("{publisher}:{offer}:{sku}:{exact}"),
            })
        }
        Source::ManagedImage { image_id } => {
            let Read::Found(i) = r
                .get::<ManagedImage>("reading the source image", image_id.as_str(), COMPUTE_API)
                .await
            else {
                return None;
            };
            Some(SourceFacts {
                os_type: i
                    .properties
                    .storage_profile
                    .and_then(|s| s.os_disk)
                    .and_then(|d| d.os_type),
                generation: i.properties.hyper_v_generation,
                architecture: None,
                security_type: None,
                name: format!("managed image {}", image_id.name()),
            })
        }
        Source::SharedImageVersion { image_version_id } => {
            let definition = image_version_id
                .as_str()
                .rsplit_once("/versions/")
                .map(|(d, _)| d.to_owned())?;
            let Read::Found(d) = r
                .get::<Definition>(
                    "reading the source's image definition",
                    &definition,
                    GALLERY_API,
                )
                .await
            else {
                return None;
            };
            let p = d.properties;
            Some(SourceFacts {
                os_type: p.os_type,
                generation: p.hyper_v_generation,
                architecture: p.architecture,
                security_type: security_type(&p.features),
                name: format!("gallery image version {}", image_version_id.name()),
            })
        }
    }
}

pub async fn check(r: &Reader<'_>) -> Vec<Finding> {
    let mut findings = match &r.plan.source {
        Source::Marketplace {
            publisher,
            offer,
            sku,
            version,
        } => marketplace(r, publisher, offer, sku, version).await,
        Source::ManagedImage { image_id } => {
            match r
                .get::<ManagedImage>("reading the source image", image_id.as_str(), COMPUTE_API)
                .await
            {
                Read::Missing => vec![Finding::error(
                    CHECK,
                    format!("the source managed image {image_id} does not exist"),
                    "correct customImageResourceId",
                )],
                Read::Found(i) if normalize_region(&i.location) != r.plan.location => {
                    vec![Finding::error(
                        CHECK,
                        format!(
                            "the source managed image {} is in {}, the build in {}: Image Builder needs it in the build's region",
                            image_id.name(),
                            i.location,
                            r.plan.location
                        ),
                        format!(
                            "set ibLocation to {}, or copy the image to {}",
                            normalize_region(&i.location),
                            r.plan.location
                        ),
                    )]
                }
                Read::Found(_) => vec![Finding::ok(
                    CHECK,
                    format!(
                        "managed image {} is in {}",
                        image_id.name(),
                        r.plan.location
                    ),
                )],
                Read::Denied { action } => vec![denied(
                    CHECK,
                    &format!("source image {}", image_id.name()),
                    &action,
                )],
                Read::Failed(why) => vec![failed(CHECK, "the source image", &why)],
            }
        }
        Source::SharedImageVersion { image_version_id } => {
            match r
                .get::<GalleryVersion>(
                    "reading the source image version",
                    image_version_id.as_str(),
                    GALLERY_API,
                )
                .await
            {
                Read::Missing => vec![Finding::error(
                    CHECK,
                    format!("the source gallery image version {image_version_id} does not exist"),
                    "correct imageVersionId",
                )],
                Read::Found(v) => {
                    let regions: Vec<String> = v
                        .properties
                        .publishing_profile
                        .map(|p| {
                            p.target_regions
                                .into_iter()
                                .map(|t| normalize_region(&t.name))
                                .collect()
                        })
                        .unwrap_or_default();
                    if regions.is_empty() || regions.contains(&r.plan.location) {
                        vec![Finding::ok(
                            CHECK,
                            format!(
                                "gallery image version {} has a replica in {}",
                                image_version_id.name(),
                                r.plan.location
                            ),
                        )]
                    } else {
                        vec![Finding::error(
                            CHECK,
                            format!(
                                "gallery image version {} has replicas in {} but not in the build's region {}",
                                image_version_id.name(),
                                regions.join(", "),
                                r.plan.location
                            ),
                            format!(
                                "replicate it there (az sig image-version update --add publishingProfile.targetRegions name={} …), or set ibLocation to one of its regions",
                                r.plan.location
                            ),
                        )]
                    }
                }
                Read::Denied { action } => vec![denied(
                    CHECK,
                    &format!("source image version {}", image_version_id.name()),
                    &action,
                )],
                Read::Failed(why) => vec![failed(CHECK, "the source image version", &why)],
            }
        }
    };
    // The provisioner must fit the source's operating system.
    if let Some(facts) = r.source().await
        && let Some(os) = &facts.os_type
    {
        let wanted = match r.plan.customization.os {
            Os::Linux => "Linux",
            Os::Windows => "Windows",
        };
        if !os.eq_ignore_ascii_case(wanted) {
            findings.push(Finding::error(
                CHECK,
                format!(
                    "{} is a {os} image, and provisioner is {}",
                    facts.name,
                    if wanted == "Linux" {
                        "shell (Linux)"
                    } else {
                        "powershell (Windows)"
                    }
                ),
                format!(
                    "set provisioner to {}",
                    if os.eq_ignore_ascii_case("Windows") {
                        "powershell"
                    } else {
                        "shell"
                    }
                ),
            ));
        }
    }
    findings
}

async fn marketplace(
    r: &Reader<'_>,
    publisher: &str,
    offer: &str,
    sku: &str,
    version: &str,
) -> Vec<Finding> {
    let urn = format!("{publisher}:{offer}:{sku}");
    let versions = match r
        .get::<Vec<Named>>(
            "listing the image's versions",
            &versions_path(r, publisher, offer, sku),
            COMPUTE_API,
        )
        .await
    {
        Read::Found(v) => v,
        Read::Missing => {
            return vec![Finding::error(
                CHECK,
                format!(
                    "the marketplace image {urn} is not offered in {}",
                    r.plan.location
                ),
                format!(
                    "check the publisher, offer and SKU: az vm image list --all --publisher {publisher} --offer {offer} --sku {sku} --location {}",
                    r.plan.location
                ),
            )];
        }
        Read::Denied { action } => {
            return vec![denied(CHECK, &format!("marketplace image {urn}"), &action)];
        }
        Read::Failed(why) => return vec![failed(CHECK, &format!("marketplace image {urn}"), &why)],
    };
    let exact = if version == "latest" {
        match latest(versions.iter().map(|v| v.name.as_str())) {
            Some(v) => v.to_owned(),
            None => {
                return vec![Finding::error(
                    CHECK,
                    format!("{urn} has no versions in {}", r.plan.location),
                    "choose another image or region",
                )];
            }
        }
    } else if versions
        .iter()
        .any(|v| v.name.eq_ignore_ascii_case(version))
    {
        version.to_owned()
    } else {
        return vec![Finding::error(
            CHECK,
            format!(
                "{urn} has no version {version} in {} (the newest is {})",
                r.plan.location,
                latest(versions.iter().map(|v| v.name.as_str())).unwrap_or("none")
            ),
            "set baseImageVersion to an offered version, or latest",
        )];
    };
    let mut findings = vec![Finding::ok(
        CHECK,
        format!("{urn}:{exact} is offered in {}", r.plan.location),
    )];
    let path = format!("{}/{exact}", versions_path(r, publisher, offer, sku));
    if let Read::Found(v) = r
        .get::<PlatformVersion>("reading the image version", &path, COMPUTE_API)
        .await
        && let Some(plan) = v.properties.plan
    {
        let agreement = format!(
            "/subscriptions/{}/providers/Microsoft.MarketplaceOrdering/offerTypes/virtualmachine/publishers/{}/offers/{}/plans/{}/agreements/current",
            r.subscription(),
            plan.publisher,
            plan.product,
            plan.name
        );
        let accept = format!(
            "az vm image terms accept --publisher {} --offer {} --plan {} --subscription {}",
            plan.publisher,
            plan.product,
            plan.name,
            r.subscription()
        );
        match r.get::<Agreement>("reading the marketplace terms", &agreement, MARKETPLACE_API).await {
            Read::Found(a) if a.properties.accepted => findings.push(Finding::ok(CHECK, format!("the terms of purchase plan {} are accepted", plan.name))),
            Read::Found(_) | Read::Missing => findings.push(Finding::error(
                CHECK,
                format!("{urn} is sold with purchase plan {} (product {}, publisher {}), whose terms the subscription has not accepted", plan.name, plan.product, plan.publisher),
                accept,
            )),
            Read::Denied { action } => findings.push(denied(CHECK, &format!("the terms of purchase plan {}", plan.name), &action).with_fix(accept)),
            Read::Failed(why) => findings.push(failed(CHECK, "the purchase plan's terms", &why)),
        }
    }
    findings
}
