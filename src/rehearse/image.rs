//! Which Linux the rehearsal runs in: the base image (`plan::Source`, or the `rehearsalImage`
//! input) mapped to a container image and, for Debian and Ubuntu, to the `debootstrap` suite
//! that makes a root filesystem of the same release. Pure: no I/O.

use crate::plan::Source;

/// A Linux release a rehearsal can stand in for the base image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// What the rehearsal says it stands in for, e.g. `Ubuntu 22.04 (jammy)`.
    pub label: String,
    /// The container image run with Docker or Podman, e.g. `ubuntu:22.04`.
    pub container_image: String,
    /// The `debootstrap` suite and mirror for a root filesystem, when the release has one.
    pub rootfs: Option<Rootfs>,
}

/// A Debian-family release `debootstrap` can make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rootfs {
    /// `bookworm`, `jammy`, …
    pub suite: &'static str,
    /// The package archive `debootstrap` reads, `None` for its own default (Debian's);
    /// `AIB_REHEARSAL_MIRROR` overrides it.
    pub mirror: Option<&'static str>,
}

const UBUNTU_MIRROR: &str = "http://archive.ubuntu.com/ubuntu";

/// The releases known by name: (distribution, version, codename, container image).
const RELEASES: &[(&str, &str, &str, &str)] = &[
    ("ubuntu", "20.04", "focal", "ubuntu:20.04"),
    ("ubuntu", "22.04", "jammy", "ubuntu:22.04"),
    ("ubuntu", "24.04", "noble", "ubuntu:24.04"),
    ("debian", "11", "bullseye", "debian:11"),
    ("debian", "12", "bookworm", "debian:12"),
    ("debian", "13", "trixie", "debian:13"),
    ("rhel", "8", "", "registry.access.redhat.com/ubi8/ubi"),
    ("rhel", "9", "", "registry.access.redhat.com/ubi9/ubi"),
    ("almalinux", "8", "", "almalinux:8"),
    ("almalinux", "9", "", "almalinux:9"),
    ("rockylinux", "8", "", "rockylinux:8"),
    ("rockylinux", "9", "", "rockylinux:9"),
];

fn release(distribution: &str, version: &str) -> Option<Target> {
    let (distribution, version, codename, image) = RELEASES
        .iter()
        .find(|(d, v, _, _)| *d == distribution && *v == version)?;
    let name = match *distribution {
        "ubuntu" => "Ubuntu",
        "debian" => "Debian",
        "rhel" => "Red Hat Enterprise Linux (as a UBI image)",
        "almalinux" => "AlmaLinux",
        _ => "Rocky Linux",
    };
    let rootfs = match *distribution {
        "ubuntu" => Some(Rootfs {
            suite: codename,
            mirror: Some(UBUNTU_MIRROR),
        }),
        "debian" => Some(Rootfs {
            suite: codename,
            mirror: None,
        }),
        _ => None,
    };
    Some(Target {
        label: if codename.is_empty() {
            format!("{name} {version}")
        } else {
            format!("{name} {version} ({codename})")
        },
        container_image: (*image).to_owned(),
        rootfs,
    })
}

/// Why no release could be chosen: said to the user with the `rehearsalImage` hint.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} maps to no Linux release the rehearsal knows: set input 'rehearsalImage' to a container image like the base image, e.g. `ubuntu:22.04`, `debian:12` or `registry.access.redhat.com/ubi9/ubi`"
)]
pub struct Unmapped {
    pub what: String,
}

/// The release a marketplace image (`publisher`, `offer`, `sku`) is, from the names Canonical,
/// Debian, Red Hat and the Alma and Rocky projects publish under. Gallery image definitions
/// carry the same triple as their `identifier`.
pub fn from_marketplace(publisher: &str, offer: &str, sku: &str) -> Result<Target, Unmapped> {
    let (p, o, s) = (
        publisher.to_ascii_lowercase(),
        offer.to_ascii_lowercase(),
        sku.to_ascii_lowercase(),
    );
    let both = format!("{o} {s}");
    let unmapped = || Unmapped {
        what: format!("the base image {publisher}:{offer}:{sku}"),
    };
    let ubuntu = || {
        for (_, version, codename, _) in RELEASES.iter().filter(|r| r.0 == "ubuntu") {
            let underscored = version.replace('.', "_");
            if both.contains(codename) || both.contains(&underscored) || both.contains(version) {
                return release("ubuntu", version);
            }
        }
        None
    };
    let found = if p == "canonical" || o.contains("ubuntu") {
        ubuntu()
    } else if p == "debian" || o.starts_with("debian") {
        // Offers `debian-12`, `debian-12-daily`; skus `12`, `12-gen2`.
        let version = o
            .strip_prefix("debian-")
            .and_then(|rest| rest.split('-').next())
            .filter(|v| v.chars().all(|c| c.is_ascii_digit()))
            .unwrap_or_else(|| s.split(['-', '_']).next().unwrap_or(""));
        release("debian", version)
    } else if p == "redhat" || o.starts_with("rhel") {
        release("rhel", leading_major(&s))
    } else if o.contains("almalinux") || p.contains("almalinux") {
        release("almalinux", leading_major(&s))
    } else if o.contains("rocky") || p.contains("rocky") || p.contains("resf") {
        release("rockylinux", leading_major(&s))
    } else {
        None
    };
    found.ok_or_else(unmapped)
}

/// `9`, from skus such as `9-lvm-gen2`, `9_4`, `94_gen2` (RHEL's minor-in-sku form), `9-gen2`.
fn leading_major(sku: &str) -> &str {
    let digits = sku
        .find(|c: char| !c.is_ascii_digit())
        .map_or(sku, |end| &sku[..end]);
    digits.get(..1).unwrap_or("")
}

/// The target for the `rehearsalImage` input: any container image; a known Debian or Ubuntu
/// one (`debian:12`, `ubuntu:jammy`) also names a `debootstrap` suite.
pub fn from_override(image: &str) -> Target {
    let image = image.trim();
    let (name, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let name = name.rsplit('/').next().unwrap_or(name);
    let known = RELEASES
        .iter()
        .filter(|(d, _, _, _)| *d == name)
        .find(|(_, version, codename, _)| {
            tag == *version || (!codename.is_empty() && tag == *codename)
        })
        .and_then(|(d, v, _, _)| release(d, v));
    Target {
        label: match &known {
            Some(t) => format!("{} (input 'rehearsalImage')", t.label),
            None => format!("{image} (input 'rehearsalImage')"),
        },
        container_image: image.to_owned(),
        rootfs: known.and_then(|t| t.rootfs),
    }
}

/// What a source needs before it can be mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Known from the inputs alone.
    Known(Target),
    /// A gallery image version: its image definition's `identifier` (publisher, offer, sku)
    /// says which release it is; reading it needs Azure (the definition's resource id given).
    GalleryDefinition(String),
}

/// The target for `source`, or what must be read to know it; `rehearsal_image` wins.
pub fn resolve(source: &Source, rehearsal_image: Option<&str>) -> Result<Resolution, Unmapped> {
    if let Some(image) = rehearsal_image {
        return Ok(Resolution::Known(from_override(image)));
    }
    match source {
        Source::Marketplace {
            publisher,
            offer,
            sku,
            ..
        } => from_marketplace(publisher, offer, sku).map(Resolution::Known),
        Source::SharedImageVersion { image_version_id } => {
            let id = image_version_id.as_str();
            match id.to_ascii_lowercase().rfind("/versions/") {
                Some(at) => Ok(Resolution::GalleryDefinition(id[..at].to_owned())),
                None => Err(Unmapped {
                    what: format!("the gallery image version {id}"),
                }),
            }
        }
        Source::ManagedImage { image_id } => Err(Unmapped {
            what: format!(
                "the managed image {} (a managed image does not say which release it was made from)",
                image_id.as_str()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(p: &str, o: &str, s: &str) -> String {
        from_marketplace(p, o, s).unwrap().container_image
    }

    #[test]
    fn canonical_offers_map_to_ubuntu_images() {
        assert_eq!(
            image(
                "Canonical",
                "0001-com-ubuntu-server-jammy",
                "22_04-lts-gen2"
            ),
            "ubuntu:22.04"
        );
        assert_eq!(
            image("canonical", "ubuntu-24_04-lts", "server"),
            "ubuntu:24.04"
        );
        assert_eq!(
            image("Canonical", "0001-com-ubuntu-server-focal", "20_04-lts"),
            "ubuntu:20.04"
        );
        assert_eq!(
            image("Canonical", "0001-com-ubuntu-server-noble", "24_04-lts"),
            "ubuntu:24.04"
        );
        let jammy = from_marketplace("Canonical", "0001-com-ubuntu-server-jammy", "22_04-lts")
            .unwrap()
            .rootfs
            .unwrap();
        assert_eq!(jammy.suite, "jammy");
        assert_eq!(jammy.mirror, Some(UBUNTU_MIRROR));
    }

    #[test]
    fn debian_rhel_alma_and_rocky() {
        assert_eq!(image("Debian", "debian-12", "12-gen2"), "debian:12");
        assert_eq!(image("Debian", "debian-11", "11"), "debian:11");
        let bookworm = from_marketplace("Debian", "debian-12", "12").unwrap();
        assert_eq!(bookworm.rootfs.unwrap().suite, "bookworm");
        assert_eq!(
            image("RedHat", "RHEL", "9-lvm-gen2"),
            "registry.access.redhat.com/ubi9/ubi"
        );
        assert_eq!(
            image("RedHat", "RHEL", "8_8"),
            "registry.access.redhat.com/ubi8/ubi"
        );
        assert!(
            from_marketplace("RedHat", "RHEL", "9_4")
                .unwrap()
                .rootfs
                .is_none()
        );
        assert_eq!(
            image("almalinux", "almalinux-x86_64", "9-gen2"),
            "almalinux:9"
        );
        assert_eq!(image("resf", "rockylinux-x86_64", "9-base"), "rockylinux:9");
    }

    #[test]
    fn unknown_sources_name_the_override() {
        let e = from_marketplace("SUSE", "sles-15-sp5", "gen2").unwrap_err();
        assert!(e.to_string().contains("SUSE:sles-15-sp5:gen2"), "{e}");
        assert!(e.to_string().contains("rehearsalImage"), "{e}");
        let e = from_marketplace("Canonical", "ubuntu-pro", "unknown").unwrap_err();
        assert!(e.to_string().contains("rehearsalImage"));
        let managed = Source::ManagedImage {
            image_id: crate::resource_id::parse(
                crate::resource_id::Kind::ManagedImage,
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/base",
            )
            .unwrap(),
        };
        let e = resolve(&managed, None).unwrap_err();
        assert!(e.to_string().contains("rehearsalImage"), "{e}");
        assert!(matches!(
            resolve(&managed, Some("ubuntu:22.04")),
            Ok(Resolution::Known(_))
        ));
    }

    #[test]
    fn overrides_take_any_image_and_know_debootstrap_suites() {
        let t = from_override("debian:12");
        assert_eq!(t.container_image, "debian:12");
        assert_eq!(t.rootfs.unwrap().suite, "bookworm");
        assert_eq!(from_override("ubuntu:jammy").rootfs.unwrap().suite, "jammy");
        assert_eq!(
            from_override("docker.io/library/ubuntu:24.04")
                .rootfs
                .unwrap()
                .suite,
            "noble"
        );
        let custom = from_override("myregistry.azurecr.io/base/web:1.2");
        assert_eq!(custom.container_image, "myregistry.azurecr.io/base/web:1.2");
        assert!(custom.rootfs.is_none());
        assert!(custom.label.contains("rehearsalImage"));
    }

    #[test]
    fn gallery_versions_need_their_definition() {
        let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/web/versions/1.0.0";
        let source = Source::SharedImageVersion {
            image_version_id: crate::resource_id::parse(
                crate::resource_id::Kind::GalleryImageVersion,
                id,
            )
            .unwrap(),
        };
        assert_eq!(
            resolve(&source, None).unwrap(),
            Resolution::GalleryDefinition(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/web"
                    .into()
            )
        );
    }
}
