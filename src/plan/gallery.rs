//! The gallery image version a build makes: its number (`galleryImageVersion`) and its replicas
//! (`replicationRegions`, with `region=count` items). Pure parsing; the gallery itself is read
//! before the build (`crate::build::gallery`), where the image definition's own region joins the
//! replicas.

/// Which version number the new gallery image version gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GalleryVersion {
    /// Image Builder's own numbering (no `versioning`, the image definition's id).
    Default,
    /// `X.Y.Z`: this exact version; the distributor's `galleryImageId` names it. Template
    /// reference: "Explicit versioning - You can pass in the version number you want image
    /// builder to use" as `…/images/<definition>/versions/<version>`.
    Exact(String),
    /// `versioning: {scheme: Latest, major}`: above the highest existing version (of `major`).
    Latest { major: Option<u32> },
    /// `versioning: {scheme: Source}`: "Schema based upon the version number of the source
    /// image"; the task allows it for marketplace and gallery sources, whose versions are
    /// `X.Y.Z` (a managed image has no version).
    Source,
}

impl GalleryVersion {
    /// Reads `galleryImageVersion`; unset or blank is [`GalleryVersion::Default`].
    pub fn parse(value: Option<&str>) -> Result<GalleryVersion, String> {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(GalleryVersion::Default);
        };
        let lower = value.to_ascii_lowercase();
        if lower == "latest" {
            return Ok(GalleryVersion::Latest { major: None });
        }
        if lower == "source" {
            return Ok(GalleryVersion::Source);
        }
        if let Some(major) = lower.strip_prefix("latest:") {
            return match major.trim().parse::<u32>() {
                Ok(n) if i32::try_from(n).is_ok() => Ok(GalleryVersion::Latest { major: Some(n) }),
                _ => Err(format!(
                    "expected latest:<major> with a whole number, e.g. latest:2, got '{value}'"
                )),
            };
        }
        if gallery_version_number(value) {
            return Ok(GalleryVersion::Exact(value.to_owned()));
        }
        Err(format!(
            "expected X.Y.Z (e.g. 1.4.0), latest, latest:<major> (e.g. latest:2) or source, got '{value}'"
        ))
    }
}

/// A gallery image version number: "MajorVersion.MinorVersion.Patch", each an integer in the
/// 32-bit range (Compute Gallery, "Store and share resources in an Azure Compute Gallery").
pub fn gallery_version_number(value: &str) -> bool {
    let parts: Vec<&str> = value.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) && p.parse::<i32>().is_ok()
        })
}

/// Replicas of the version in one region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    /// The region as ARM names it (`westeurope`).
    pub region: String,
    /// At least 1 (template reference `replicaCount`: minimum 1, default 1).
    pub count: u32,
}

/// "There's a limit of 100 replicas per image version" (Compute Gallery, "Store and share
/// resources in an Azure Compute Gallery").
pub const MAX_REPLICAS: u32 = 100;

/// Reads the items of `replicationRegions`: `region` or `region=count`. A region is sent once
/// (Compute refuses duplicates: "Duplicate regions are not allowed in target publishing
/// regions", hashicorp/terraform-provider-azurerm#7751): a repeat is dropped, a repeat with
/// another count refused, and so is a total above [`MAX_REPLICAS`]. Each problem is reported.
pub fn parse_replicas(items: &[String]) -> Result<Vec<Replica>, Vec<String>> {
    let mut replicas: Vec<Replica> = Vec::new();
    let mut problems = Vec::new();
    for item in items {
        let (name, count) = match item.split_once('=') {
            Some((name, count)) => (name.trim(), Some(count.trim())),
            None => (item.trim(), None),
        };
        let region = super::normalize_region(name);
        if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric()) {
            problems.push(format!(
                "expected a region or region=count, e.g. westeurope=2, got '{item}'"
            ));
            continue;
        }
        let count = match count {
            None => 1,
            Some(c) => match c.parse::<u32>() {
                Ok(n) if (1..=MAX_REPLICAS).contains(&n) => n,
                _ => {
                    problems.push(format!(
                        "'{item}': the replica count must be a whole number from 1 to {MAX_REPLICAS}"
                    ));
                    continue;
                }
            },
        };
        match replicas.iter().find(|r| r.region == region) {
            // The same region twice alike (`eastus, East US`) means it once.
            Some(r) if r.count == count => continue,
            Some(_) => {
                problems.push(format!(
                    "region {region} is listed twice with different replica counts; give it once, with its count"
                ));
                continue;
            }
            None => {}
        }
        replicas.push(Replica { region, count });
    }
    let total: u32 = replicas.iter().map(|r| r.count).sum();
    if total > MAX_REPLICAS {
        problems.push(format!(
            "{total} replicas in all; a gallery image version has at most {MAX_REPLICAS}"
        ));
    }
    if problems.is_empty() {
        Ok(replicas)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn versions_read_every_documented_form() {
        assert_eq!(GalleryVersion::parse(None), Ok(GalleryVersion::Default));
        assert_eq!(
            GalleryVersion::parse(Some("  ")),
            Ok(GalleryVersion::Default)
        );
        assert_eq!(
            GalleryVersion::parse(Some("1.4.0")),
            Ok(GalleryVersion::Exact("1.4.0".into()))
        );
        assert_eq!(
            GalleryVersion::parse(Some("Latest")),
            Ok(GalleryVersion::Latest { major: None })
        );
        assert_eq!(
            GalleryVersion::parse(Some("latest:2")),
            Ok(GalleryVersion::Latest { major: Some(2) })
        );
        assert_eq!(
            GalleryVersion::parse(Some("SOURCE")),
            Ok(GalleryVersion::Source)
        );
    }

    #[test]
    fn bad_versions_say_what_is_expected() {
        for bad in [
            "1.4",
            "1.4.0.1",
            "v1.4.0",
            "1..0",
            "1.4.-1",
            "1.4.2147483648",
            "latest:",
            "latest:x",
            "latest:-1",
            "newest",
        ] {
            let e = GalleryVersion::parse(Some(bad)).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
            assert!(e.contains("expected"), "{bad}: {e}");
        }
    }

    #[test]
    fn replicas_default_to_one_and_take_counts() {
        assert_eq!(
            parse_replicas(&items(&["westeurope=2", "North Europe"])).unwrap(),
            vec![
                Replica {
                    region: "westeurope".into(),
                    count: 2
                },
                Replica {
                    region: "northeurope".into(),
                    count: 1
                },
            ]
        );
    }

    #[test]
    fn bad_replicas_are_each_reported() {
        let problems = parse_replicas(&items(&[
            "westeurope=0",
            "eastus=x",
            "west-europe",
            "northeurope",
            "NorthEurope=3",
            "North Europe",
        ]))
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("from 1 to 100"));
        assert!(problems[2].contains("west-europe"));
        assert!(problems[3].contains("listed twice with different replica counts"));
    }

    #[test]
    fn more_than_a_hundred_replicas_in_all_are_refused() {
        let problems = parse_replicas(&items(&["westeurope=60", "northeurope=41"])).unwrap_err();
        assert!(problems[0].contains("101 replicas"), "{problems:?}");
        assert!(parse_replicas(&items(&["westeurope=60", "northeurope=40"])).is_ok());
    }
}
