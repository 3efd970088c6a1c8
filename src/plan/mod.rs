//! The validated build plan: every task input checked and turned into what the build needs
//! (source, how the script runs, distribution, VM, names), or a list of [`InputError`]s that name
//! each bad input and the form it expects. Pure but for one outside fact: the build path, walked
//! once (metadata only) for everything the archiver would refuse, so a bad input fails before any
//! Azure call.

pub mod build_vm;
pub mod exposure;
pub mod gallery;
pub mod validation;

use std::path::PathBuf;

use crate::agent::PipelineContext;
use crate::image_template::Customizer;
use crate::inputs::{self, InputError, TaskInputs};
use crate::resource_id::{self, Kind, ResourceId};
pub use build_vm::BuildVm;
pub use gallery::{GalleryVersion, Replica};
pub use validation::{ErrorHandling, OnError, Validation};

/// The placeholder the original task's `baseImagePubOfferSku` input defaults to: unset.
pub const PUB_OFFER_SKU_PLACEHOLDER: &str = "Publisher:Offer:Sku";

/// Image Builder's own default when `buildTimeoutInMinutes` is 0; also the task's default.
pub const DEFAULT_BUILD_TIMEOUT_MINUTES: u32 = 240;
/// The shortest and longest build timeouts Image Builder accepts besides 0 (template reference,
/// "Create an Azure Image Builder Bicep or ARM template JSON template": "The minimum value is 6
/// minutes, and the maximum value is 960 minutes"; its troubleshooting guide explains that 1 to
/// 5 minutes fail because the build's token "will expire within 5 minutes").
pub const BUILD_TIMEOUT_MINUTES: std::ops::RangeInclusive<u32> = 6..=960;

/// Where the base image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Marketplace {
        publisher: String,
        offer: String,
        sku: String,
        /// `latest` or an exact version such as `22.04.202411010`.
        version: String,
    },
    ManagedImage {
        image_id: ResourceId,
    },
    SharedImageVersion {
        image_version_id: ResourceId,
    },
}

/// The operating system family, from the provisioner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Os {
    /// `provisioner: shell`.
    Linux,
    /// `provisioner: powershell`.
    Windows,
}

/// What runs on the build VM after the artifacts arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customization {
    pub os: Os,
    /// The user's script, line by line (empty: the artifacts are only copied).
    pub inline_script: Vec<String>,
    pub run_elevated: bool,
    pub run_as_system: bool,
    pub windows_restart: bool,
    pub windows_update: bool,
    pub cleanup_artifacts: bool,
}

/// Where the image goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Distribution {
    ManagedImage {
        image_id: ResourceId,
        location: String,
    },
    SharedImage {
        /// The image definition.
        gallery_image_id: ResourceId,
        /// Which version number the new version gets.
        version: GalleryVersion,
        /// Where its replicas go; empty: the build's region (until the image definition's
        /// region is known, see `crate::build::gallery`).
        regions: Vec<Replica>,
        exclude_from_latest: bool,
        storage_account_type: Option<String>,
    },
    /// A VHD that Image Builder writes into a storage account of the template's staging
    /// resource group, which is deleted with the template.
    Vhd,
    /// A VHD written to `vhdUri`, a blob in the user's own storage account.
    VhdAt { uri: String },
}

impl Distribution {
    /// The run output name the original task used, which users' scripts may look for.
    pub fn run_output_name(&self) -> &'static str {
        match self {
            Distribution::ManagedImage { .. } => "ManagedImage_distribute",
            Distribution::SharedImage { .. } => "SharedImage_distribute",
            Distribution::Vhd | Distribution::VhdAt { .. } => "VHD_distribute",
        }
    }

    /// A VHD written into the staging resource group: deleting the template would delete it.
    pub fn vhd_in_staging_group(&self) -> bool {
        matches!(self, Distribution::Vhd)
    }
}

/// Everything the build needs, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildPlan {
    pub subscription_id: String,
    pub resource_group: String,
    pub location: String,
    pub identity: ResourceId,
    pub template_name: String,
    /// The user chose the name (`templateName`); a generated one may be replaced when taken.
    pub template_name_given: bool,
    pub source: Source,
    pub customization: Customization,
    pub package_path: PathBuf,
    pub storage_account: String,
    pub distribution: Distribution,
    pub vm_size: Option<String>,
    pub os_disk_size_gb: Option<u32>,
    pub subnet: Option<ResourceId>,
    pub build_timeout_minutes: u32,
    pub staging_resource_group: Option<ResourceId>,
    pub image_tags: Vec<(String, String)>,
    pub keep_template_on_failure: bool,
    pub wait_for_template_deletion: bool,
    /// Print the build log live (`streamBuildLog`).
    pub stream_build_log: bool,
    /// `validate`, when a validation script is given.
    pub validation: Option<Validation>,
    /// `errorHandling`.
    pub error_handling: ErrorHandling,
    /// `optimize.vmBoot`.
    pub optimize_vm_boot: bool,
    /// Identities and isolated network of the build VM.
    pub build_vm: BuildVm,
    /// Tags on the staging resources (`managedResourceTags`).
    pub managed_resource_tags: Vec<(String, String)>,
    /// How the archive reaches the VM.
    pub artifact_delivery: ArtifactDelivery,
    /// The customizers of `customizersFile`, checked, run after the inline script.
    pub extra_customizers: Vec<Customizer>,
}

/// How the build path's archive reaches the build VM (`artifactDelivery`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ArtifactDelivery {
    /// Small Linux archives by Image Builder's File customizer, the rest downloaded on the VM.
    #[default]
    Auto,
    /// Always downloaded from inside the build VM: Image Builder fetches a File customizer's
    /// source itself, which a storage firewall blocks ("Azure Image Builder currently does not
    /// support storage account firewalls", Azure/azvmimagebuilder#32).
    Vm,
}

const ARTIFACT_DELIVERIES: &[(&str, ArtifactDelivery)] = &[
    ("auto", ArtifactDelivery::Auto),
    ("vm", ArtifactDelivery::Vm),
];

impl BuildPlan {
    /// Only the source is validated: nothing is customized, nothing uploaded.
    pub fn source_validation_only(&self) -> bool {
        self.validation
            .as_ref()
            .is_some_and(|v| v.source_validation_only)
    }
}

const IMAGE_SOURCES: &[(&str, SourceKind)] = &[
    ("marketplace", SourceKind::Marketplace),
    ("platformimage", SourceKind::Marketplace),
    ("managedimage", SourceKind::Managed),
    ("customimage", SourceKind::Managed),
    ("sharedimageversion", SourceKind::Gallery),
    ("sig", SourceKind::Gallery),
    ("gallery", SourceKind::Gallery),
    ("sharedgalleryimage", SourceKind::Gallery),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceKind {
    Marketplace,
    Managed,
    Gallery,
}

const PROVISIONERS: &[(&str, Os)] = &[("shell", Os::Linux), ("powershell", Os::Windows)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DistributeKind {
    ManagedImage,
    Gallery,
    Vhd,
}

const DISTRIBUTE_TYPES: &[(&str, DistributeKind)] = &[
    ("managedimage", DistributeKind::ManagedImage),
    ("sig", DistributeKind::Gallery),
    ("sharedimage", DistributeKind::Gallery),
    ("gallery", DistributeKind::Gallery),
    ("vhd", DistributeKind::Vhd),
];

const STORAGE_ACCOUNT_TYPES: &[(&str, &str)] = &[
    ("Standard_LRS", "Standard_LRS"),
    ("Standard_ZRS", "Standard_ZRS"),
    ("Premium_LRS", "Premium_LRS"),
];

/// Collects errors so the user sees every bad input at once.
#[derive(Default)]
struct Checks {
    errors: Vec<InputError>,
}

impl Checks {
    fn take<T>(&mut self, result: Result<T, InputError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn take_all<T>(&mut self, result: Result<T, Vec<InputError>>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(mut e) => {
                self.errors.append(&mut e);
                None
            }
        }
    }

    fn fail(&mut self, input: &'static str, problem: impl Into<String>) {
        self.errors.push(InputError::new(input, problem));
    }

    fn resource(&mut self, input: &'static str, kind: Kind, value: &str) -> Option<ResourceId> {
        self.take(
            resource_id::parse(kind, value).map_err(|e| InputError::new(input, e.to_string())),
        )
    }

    fn required_resource(
        &mut self,
        input: &'static str,
        raw: &Option<String>,
        kind: Kind,
    ) -> Option<ResourceId> {
        let expected = format!("a resource id of the form {}", kind.example());
        let value = self.take(inputs::required(input, raw, &expected))?;
        self.resource(input, kind, value)
    }
}

/// A region as ARM names it: `West Europe` and `westeurope` are the same region.
pub fn normalize_region(value: &str) -> String {
    value
        .split_whitespace()
        .collect::<String>()
        .to_ascii_lowercase()
}

fn region(checks: &mut Checks, input: &'static str, value: &str) -> Option<String> {
    let region = normalize_region(value);
    if !region.is_empty() && region.chars().all(|c| c.is_ascii_alphanumeric()) {
        Some(region)
    } else {
        checks.fail(
            input,
            format!("expected an Azure region such as westeurope or eastus2, got '{value}'"),
        );
        None
    }
}

fn valid_resource_group_name(name: &str) -> bool {
    (1..=90).contains(&name.chars().count())
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
}

/// Image Builder's template-name rule.
pub fn valid_template_name(name: &str) -> bool {
    (1..=crate::names::TEMPLATE_NAME_MAX).contains(&name.len())
        && name.chars().all(crate::names::template_name_char)
}

fn publisher_offer_sku(
    checks: &mut Checks,
    input: &'static str,
    value: &str,
) -> Option<(String, String, String)> {
    let parts: Vec<&str> = value.split(':').map(str::trim).collect();
    match parts.as_slice() {
        [p, o, s] if !p.is_empty() && !o.is_empty() && !s.is_empty() => {
            Some(((*p).to_owned(), (*o).to_owned(), (*s).to_owned()))
        }
        _ => {
            checks.fail(
                input,
                format!("expected Publisher:Offer:Sku, e.g. Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2, got '{value}'"),
            );
            None
        }
    }
}

fn image_version(value: &str) -> bool {
    value.eq_ignore_ascii_case("latest")
        || (value.split('.').count() == 3
            && value
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
}

fn valid_tag(key: &str, value: &str) -> Result<(), String> {
    if key.len() > 512 {
        return Err(format!("tag name '{key}' is longer than 512 characters"));
    }
    if let Some(c) = key
        .chars()
        .find(|c| matches!(c, '<' | '>' | '%' | '&' | '\\' | '?' | '/'))
    {
        return Err(format!(
            "tag name '{key}' contains '{c}', which Azure does not allow"
        ));
    }
    if value.len() > 256 {
        return Err(format!(
            "the value of tag '{key}' is longer than 256 characters"
        ));
    }
    Ok(())
}

impl BuildPlan {
    /// Validates every input. `subscription_id` comes from the service connection (or
    /// `--subscription`); `stamp` names the template when `templateName` is unset.
    pub fn from_inputs(
        raw: &TaskInputs,
        subscription_id: &str,
        context: &PipelineContext,
        stamp: &crate::names::Stamp,
    ) -> Result<BuildPlan, Vec<InputError>> {
        let mut c = Checks::default();

        let resource_group = c
            .take(inputs::required("ibAzureResourceGroup", &raw.ib_azure_resource_group, "a resource group name"))
            .and_then(|rg| {
                if valid_resource_group_name(rg) {
                    Some(rg.to_owned())
                } else {
                    c.fail("ibAzureResourceGroup", format!("expected a resource group name (letters, digits, - _ . ( ), at most 90, not ending in '.'), got '{rg}'"));
                    None
                }
            });
        let location = c
            .take(inputs::required(
                "ibLocation",
                &raw.ib_location,
                "an Azure region such as westeurope",
            ))
            .and_then(|l| region(&mut c, "ibLocation", l));
        let identity = c.required_resource(
            "managedIdentity",
            &raw.managed_identity,
            Kind::UserAssignedIdentity,
        );
        let subnet = inputs::value(&raw.vnet_subnet_id)
            .and_then(|v| c.resource("vnetSubnetId", Kind::Subnet, v));

        // Source.
        let source_kind = c
            .take(inputs::choice(
                "imageSource",
                &raw.image_source,
                IMAGE_SOURCES,
            ))
            .map(|k| k.unwrap_or(SourceKind::Marketplace));
        let source = match source_kind {
            Some(SourceKind::Marketplace) => {
                let typed = inputs::value(&raw.base_image_pub_offer_sku)
                    .filter(|v| !v.eq_ignore_ascii_case(PUB_OFFER_SKU_PLACEHOLDER));
                let (input, value) = match (typed, inputs::value(&raw.base_image)) {
                    (Some(v), _) => ("baseImagePubOfferSku", Some(v)),
                    (None, Some(v)) => ("baseImage", Some(v)),
                    (None, None) => ("baseImage", None),
                };
                let version = inputs::value(&raw.base_image_version).unwrap_or("latest");
                if !image_version(version) {
                    c.fail(
                        "baseImageVersion",
                        format!(
                            "expected latest or a version such as 22.04.202411010, got '{version}'"
                        ),
                    );
                }
                match value {
                    None => {
                        c.fail("baseImage", "is required for a marketplace image: expected Publisher:Offer:Sku (or set baseImagePubOfferSku)");
                        None
                    }
                    Some(v) => {
                        publisher_offer_sku(&mut c, input, v).map(|(publisher, offer, sku)| {
                            Source::Marketplace {
                                publisher,
                                offer,
                                sku,
                                version: if version.eq_ignore_ascii_case("latest") {
                                    "latest".into()
                                } else {
                                    version.to_owned()
                                },
                            }
                        })
                    }
                }
            }
            Some(SourceKind::Managed) => c
                .required_resource(
                    "customImageResourceId",
                    &raw.custom_image_resource_id,
                    Kind::ManagedImage,
                )
                .map(|image_id| Source::ManagedImage { image_id }),
            Some(SourceKind::Gallery) => c
                .required_resource(
                    "imageVersionId",
                    &raw.image_version_id,
                    Kind::GalleryImageVersion,
                )
                .map(|image_version_id| Source::SharedImageVersion { image_version_id }),
            None => None,
        };

        // Customization.
        let os = c
            .take(inputs::choice(
                "provisioner",
                &raw.provisioner,
                PROVISIONERS,
            ))
            .map(|o| o.unwrap_or(Os::Linux));
        let windows_update = c.take(inputs::boolean(
            "windowsUpdateProvisioner",
            &raw.windows_update_provisioner,
            false,
        ));
        let run_elevated = c.take(inputs::boolean("runElevated", &raw.run_elevated, false));
        let run_as_system = c.take(inputs::boolean("runAsSystem", &raw.run_as_system, false));
        let windows_restart = c.take(inputs::boolean(
            "windowsRestart",
            &raw.windows_restart,
            false,
        ));
        let cleanup_artifacts = c.take(inputs::boolean(
            "cleanupArtifactsOnImage",
            &raw.cleanup_artifacts_on_image,
            false,
        ));
        if os == Some(Os::Linux) {
            for (input, set) in [
                ("windowsUpdateProvisioner", windows_update),
                ("runElevated", run_elevated),
                ("runAsSystem", run_as_system),
                ("windowsRestart", windows_restart),
            ] {
                if set == Some(true) {
                    c.fail(input, "applies to Windows images only: set provisioner to powershell, or this input to false");
                }
            }
        }
        if run_as_system == Some(true) && run_elevated == Some(false) && os == Some(Os::Windows) {
            c.fail(
                "runAsSystem",
                "needs runElevated true (Image Builder runs as SYSTEM only when elevated)",
            );
        }
        let inline_script: Vec<String> = inputs::value(&raw.inline_script)
            .map(|s| {
                s.lines()
                    .map(|l| l.trim_end_matches('\r').to_owned())
                    .collect()
            })
            .unwrap_or_default();

        let package_path = c
            .take(inputs::required("packagePath", &raw.package_path, "the folder whose contents go onto the image"))
            .and_then(|p| {
                let path = crate::staging::resolve_package_path(p, context);
                match std::fs::metadata(&path) {
                    // Everything the archiver would refuse (a folder without a single file, a
                    // link leading out of it, …) is refused now, before any Azure call.
                    Ok(m) if m.is_dir() => match crate::archive::check(&path) {
                        Ok(()) => Some(path),
                        Err(e) => {
                            c.fail("packagePath", format!("{e}; expected the folder whose contents go onto the image (check the artifact download or build step before this task)"));
                            None
                        }
                    },
                    Ok(_) => {
                        c.fail("packagePath", format!("'{}' is a file; expected a folder (its contents are copied onto the image)", path.display()));
                        None
                    }
                    Err(e) => {
                        c.fail("packagePath", format!("the folder '{}' cannot be read: {e}", path.display()));
                        None
                    }
                }
            });

        let storage_account = c
            .take(inputs::required("storageAccountName", &raw.storage_account_name, "the name of a storage account in the subscription"))
            .and_then(|n| {
                let name = n.to_ascii_lowercase();
                if (3..=24).contains(&name.len()) && name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()) {
                    Some(name)
                } else {
                    c.fail("storageAccountName", format!("expected a storage account name (3 to 24 lower-case letters and digits), got '{n}'"));
                    None
                }
            });

        // Distribution.
        let distribution = match c.take(inputs::choice(
            "distributeType",
            &raw.distribute_type,
            DISTRIBUTE_TYPES,
        )) {
            Some(None) => {
                c.fail(
                    "distributeType",
                    "is required: expected managedimage, sig or vhd",
                );
                None
            }
            Some(Some(DistributeKind::ManagedImage)) => {
                let image_id = c.required_resource(
                    "imageIdForDistribute",
                    &raw.image_id_for_distribute,
                    Kind::ManagedImage,
                );
                let location = c
                    .take(inputs::required(
                        "managedImageLocation",
                        &raw.managed_image_location,
                        "the region of the managed image",
                    ))
                    .and_then(|l| region(&mut c, "managedImageLocation", l));
                match (image_id, location) {
                    (Some(image_id), Some(location)) => {
                        Some(Distribution::ManagedImage { image_id, location })
                    }
                    _ => None,
                }
            }
            Some(Some(DistributeKind::Gallery)) => {
                let gallery_image_id = c.required_resource(
                    "galleryImageId",
                    &raw.gallery_image_id,
                    Kind::GalleryImage,
                );
                let regions = match gallery::parse_replicas(&inputs::list(&raw.replication_regions))
                {
                    // Empty stays empty: the image definition's region, read before the build
                    // (crate::build::gallery), or else the build's region.
                    Ok(regions) => Some(regions),
                    Err(problems) => {
                        for p in problems {
                            c.fail("replicationRegions", p);
                        }
                        None
                    }
                };
                let version = match GalleryVersion::parse(inputs::value(&raw.gallery_image_version))
                {
                    Ok(v) => Some(v),
                    Err(problem) => {
                        c.fail("galleryImageVersion", problem);
                        None
                    }
                };
                let exclude_from_latest = c.take(inputs::boolean(
                    "excludeFromLatest",
                    &raw.exclude_from_latest,
                    false,
                ));
                let storage_account_type = c
                    .take(inputs::choice(
                        "storageAccountType",
                        &raw.storage_account_type,
                        STORAGE_ACCOUNT_TYPES,
                    ))
                    .map(|t| t.map(str::to_owned));
                match (
                    gallery_image_id,
                    version,
                    regions,
                    exclude_from_latest,
                    storage_account_type,
                ) {
                    (
                        Some(gallery_image_id),
                        Some(version),
                        Some(regions),
                        Some(exclude_from_latest),
                        Some(storage_account_type),
                    ) => Some(Distribution::SharedImage {
                        gallery_image_id,
                        version,
                        regions,
                        exclude_from_latest,
                        storage_account_type,
                    }),
                    _ => None,
                }
            }
            Some(Some(DistributeKind::Vhd)) => {
                match inputs::value(&raw.vhd_uri).map(crate::blob_url::vhd_destination) {
                    None => Some(Distribution::Vhd),
                    Some(Ok(url)) => Some(Distribution::VhdAt {
                        uri: url.to_string(),
                    }),
                    Some(Err(problem)) => {
                        c.fail("vhdUri", problem);
                        None
                    }
                }
            }
            None => None,
        };
        let gallery = matches!(distribution, Some(Distribution::SharedImage { .. }));
        for (input, set) in [
            (
                "excludeFromLatest",
                inputs::value(&raw.exclude_from_latest)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            ),
            (
                "storageAccountType",
                inputs::value(&raw.storage_account_type).is_some(),
            ),
            (
                "galleryImageVersion",
                inputs::value(&raw.gallery_image_version).is_some(),
            ),
        ] {
            if set && !gallery && distribution.is_some() {
                c.fail(input, "applies to gallery images only (distributeType sig)");
            }
        }
        if inputs::value(&raw.vhd_uri).is_some()
            && distribution.is_some()
            && !matches!(
                distribution,
                Some(Distribution::Vhd | Distribution::VhdAt { .. })
            )
        {
            c.fail("vhdUri", "applies to VHD builds only (distributeType vhd)");
        }

        let vm_size = inputs::value(&raw.vm_size).and_then(|s| {
            if s.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
                Some(s.to_owned())
            } else {
                c.fail(
                    "vmSize",
                    format!("expected a VM size such as Standard_D2s_v3, got '{s}'"),
                );
                None
            }
        });
        let os_disk_size_gb = c
            .take(inputs::integer(
                "osDiskSizeGB",
                &raw.os_disk_size_gb,
                0,
                4095,
            ))
            .flatten()
            .filter(|&n| n > 0);
        let build_timeout_minutes = match inputs::value(&raw.build_timeout_in_minutes)
            .map(|v| (v, v.parse::<u32>()))
        {
            None | Some((_, Ok(0))) => Some(DEFAULT_BUILD_TIMEOUT_MINUTES),
            Some((_, Ok(n))) if BUILD_TIMEOUT_MINUTES.contains(&n) => Some(n),
            Some((v, _)) => {
                c.fail(
                    "buildTimeoutInMinutes",
                    format!(
                        "expected 0 (Image Builder's default, {DEFAULT_BUILD_TIMEOUT_MINUTES}) or a whole number of minutes from {} to {}, got '{v}'",
                        BUILD_TIMEOUT_MINUTES.start(),
                        BUILD_TIMEOUT_MINUTES.end()
                    ),
                );
                None
            }
        };
        let template_name = match inputs::value(&raw.template_name) {
            Some(name) if valid_template_name(name) => Some(name.to_owned()),
            Some(name) => {
                c.fail(
                    "templateName",
                    format!("expected 1 to 64 letters, digits, '-', '_' or '.', got '{name}'"),
                );
                None
            }
            None => Some(crate::names::template_name(context, stamp)),
        };
        let staging_resource_group = inputs::value(&raw.staging_resource_group)
            .and_then(|v| c.resource("stagingResourceGroup", Kind::ResourceGroup, v));
        let image_tags = c
            .take(inputs::key_values("imageTags", &raw.image_tags))
            .and_then(|tags| {
                for (k, v) in &tags {
                    if let Err(problem) = valid_tag(k, v) {
                        c.fail("imageTags", problem);
                        return None;
                    }
                }
                Some(tags)
            });
        let keep_template_on_failure = c.take(inputs::boolean(
            "keepTemplateOnFailure",
            &raw.keep_template_on_failure,
            true,
        ));
        let wait_for_template_deletion = c.take(inputs::boolean(
            "waitForTemplateDeletion",
            &raw.wait_for_template_deletion,
            false,
        ));
        let stream_build_log = c.take(inputs::boolean(
            "streamBuildLog",
            &raw.stream_build_log,
            true,
        ));

        // Image Builder's capabilities beyond the original task.
        let checked = c.take_all(validation::read(raw));
        let (validation, error_handling) = match checked {
            Some(r) => (Some(r.validation), Some(r.error_handling)),
            None => (None, None),
        };
        let optimize_vm_boot = c.take(inputs::boolean(
            "optimizeVmBoot",
            &raw.optimize_vm_boot,
            false,
        ));
        let build_vm = c.take_all(build_vm::read(raw, subnet.as_ref()));
        let managed_resource_tags = c
            .take(inputs::key_values(
                "managedResourceTags",
                &raw.managed_resource_tags,
            ))
            .and_then(|tags| {
                for (k, v) in &tags {
                    if let Err(problem) = valid_tag(k, v) {
                        c.fail("managedResourceTags", problem);
                        return None;
                    }
                }
                if tags.len() > crate::image_template::MAX_TAGS {
                    c.fail(
                        "managedResourceTags",
                        format!(
                            "{} tags; Azure allows at most {} on a resource",
                            tags.len(),
                            crate::image_template::MAX_TAGS
                        ),
                    );
                    return None;
                }
                Some(tags)
            });
        let artifact_delivery = c
            .take(inputs::choice(
                "artifactDelivery",
                &raw.artifact_delivery,
                ARTIFACT_DELIVERIES,
            ))
            .map(Option::unwrap_or_default);
        let extra_customizers = match (inputs::value(&raw.customizers_file), os) {
            (None, _) => Some(Vec::new()),
            (Some(file), Some(os)) => {
                let path = crate::staging::resolve_package_path(file, context);
                match crate::customizers_file::load(&path, os) {
                    Ok(steps) => Some(steps),
                    Err(e) => {
                        // One line per problem; the file's path once.
                        c.fail("customizersFile", format!("in {}:", path.display()));
                        c.errors.extend(e.input_errors());
                        None
                    }
                }
            }
            // The provisioner is bad and already reported: the file cannot be judged.
            (Some(_), None) => None,
        };
        if let Some(Some(v)) = &validation
            && v.source_validation_only
        {
            // "No separate build will be run to generate and then validate a customized image"
            // (template reference, `validate.sourceValidationOnly`): customization never runs.
            for (input, set) in [
                (
                    "inlineScript",
                    inline_script.iter().any(|l| !l.trim().is_empty()),
                ),
                (
                    "customizersFile",
                    inputs::value(&raw.customizers_file).is_some(),
                ),
                ("cleanupArtifactsOnImage", cleanup_artifacts == Some(true)),
                ("windowsRestart", windows_restart == Some(true)),
                ("windowsUpdateProvisioner", windows_update == Some(true)),
                (
                    "onCustomizerError",
                    error_handling.is_some_and(|h| h.on_customizer_error == OnError::Abort),
                ),
            ] {
                if set {
                    c.fail(input, "has no effect with sourceValidationOnly true: the source image is validated as it is, without customization; remove it or set sourceValidationOnly to false");
                }
            }
        }
        if let (
            Some(Distribution::SharedImage {
                version: GalleryVersion::Source,
                ..
            }),
            Some(source),
        ) = (&distribution, &source)
        {
            match source {
                Source::Marketplace { version, .. } if version != "latest" && !gallery::gallery_version_number(version) => c.fail(
                    "galleryImageVersion",
                    format!("source takes the source's version, and baseImageVersion '{version}' is no gallery version number (X.Y.Z, each part at most 2147483647): set galleryImageVersion to X.Y.Z or latest"),
                ),
                Source::SharedImageVersion { image_version_id } if !gallery::gallery_version_number(image_version_id.name()) => c.fail(
                    "galleryImageVersion",
                    format!("source takes the source image version's number, and imageVersionId names '{}': set galleryImageVersion to X.Y.Z or latest", image_version_id.name()),
                ),
                Source::Marketplace { .. } | Source::SharedImageVersion { .. } => {}
                Source::ManagedImage { .. } => c.fail(
                    "galleryImageVersion",
                    "source takes the version of the source image, and a managed image has none: use X.Y.Z, latest or latest:<major>",
                ),
            }
        }

        if !c.errors.is_empty() {
            return Err(c.errors);
        }
        // Every value is Some when no error was recorded.
        fn missing<T>() -> T {
            unreachable!("a check failed without recording an error")
        }
        Ok(BuildPlan {
            subscription_id: subscription_id.to_owned(),
            resource_group: resource_group.unwrap_or_else(missing),
            location: location.unwrap_or_else(missing),
            identity: identity.unwrap_or_else(missing),
            template_name: template_name.unwrap_or_else(missing),
            template_name_given: inputs::value(&raw.template_name).is_some(),
            source: source.unwrap_or_else(missing),
            customization: Customization {
                os: os.unwrap_or_else(missing),
                inline_script,
                run_elevated: run_elevated.unwrap_or_else(missing) || run_as_system == Some(true),
                run_as_system: run_as_system.unwrap_or_else(missing),
                windows_restart: windows_restart.unwrap_or_else(missing),
                windows_update: windows_update.unwrap_or_else(missing),
                cleanup_artifacts: cleanup_artifacts.unwrap_or_else(missing),
            },
            package_path: package_path.unwrap_or_else(missing),
            storage_account: storage_account.unwrap_or_else(missing),
            distribution: distribution.unwrap_or_else(missing),
            vm_size,
            os_disk_size_gb,
            subnet,
            build_timeout_minutes: build_timeout_minutes.unwrap_or_else(missing),
            staging_resource_group,
            image_tags: image_tags.unwrap_or_else(missing),
            keep_template_on_failure: keep_template_on_failure.unwrap_or_else(missing),
            wait_for_template_deletion: wait_for_template_deletion.unwrap_or_else(missing),
            stream_build_log: stream_build_log.unwrap_or_else(missing),
            validation: validation.unwrap_or_else(missing),
            error_handling: error_handling.unwrap_or_else(missing),
            optimize_vm_boot: optimize_vm_boot.unwrap_or_else(missing),
            build_vm: build_vm.unwrap_or_else(missing),
            managed_resource_tags: managed_resource_tags.unwrap_or_else(missing),
            artifact_delivery: artifact_delivery.unwrap_or_else(missing),
            extra_customizers: extra_customizers.unwrap_or_else(missing),
        })
    }

    /// Advice on valid choices that are likely to hurt, shown before anything is built.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.customization.windows_update && self.vm_size.is_none() {
            // Image Builder's troubleshooting guide: low resources on Windows "commonly happens
            // when Windows Update runs with the default build VM size, D1_V2"; its template
            // reference recommends "Standard_D2_v2" or equivalent for Windows builds.
            warnings.push("windowsUpdateProvisioner is on and vmSize is empty: Image Builder's default build VM (Standard_D1_v2 for Gen1 images) is too small for Windows Update, which then fails or times out. Set vmSize to Standard_D2_v2 or larger, e.g. Standard_D4s_v3".to_owned());
        }
        if let Some(group) = &self.staging_resource_group
            && self.keep_template_on_failure
        {
            // Template reference: a staging group "cannot be associated with another image
            // template, must be empty"; a kept template keeps its build resources there.
            warnings.push(format!(
                "stagingResourceGroup is {} and keepTemplateOnFailure is true: if the build fails, the kept template keeps that group in use (Image Builder needs an empty group used by no other template), so the next build with it fails until the template is deleted. Delete the failed template before the next run (the task prints the command), or set keepTemplateOnFailure to false",
                group.as_str()
            ));
        }
        let aborts = [
            ("onCustomizerError", self.error_handling.on_customizer_error),
            ("onValidationError", self.error_handling.on_validation_error),
        ];
        for (input, action) in aborts {
            if action == OnError::Abort && !self.keep_template_on_failure {
                // The kept VM lives in the staging group, which goes with the template.
                warnings.push(format!(
                    "{input} is abort and keepTemplateOnFailure is false: when that step fails the task keeps the template all the same, since deleting it would delete the build VM kept for debugging with its staging resource group; the task prints how to remove both"
                ));
            }
        }
        if let Some(v) = &self.validation
            && v.continue_distribute_on_failure
        {
            // Template reference: "Please use this option with caution as it may result in bad
            // images being distributed for use."
            warnings.push("continueDistributeOnFailure is true: an image that fails validation is still distributed (the build is reported as failed); make sure nothing picks it up automatically, e.g. set excludeFromLatest for a gallery".to_owned());
        }
        if self.artifact_delivery == ArtifactDelivery::Vm {
            for (n, step) in self.extra_customizers.iter().enumerate() {
                if let Some(uri) = step.service_fetched_uri() {
                    warnings.push(format!(
                        "artifactDelivery is vm, but customizersFile step {} ({}) has Image Builder's service fetch {}: a storage firewall that admits only the build subnet blocks it. Download it from the VM in a Shell or PowerShell step instead",
                        n + 1,
                        if step.name().is_empty() { "unnamed" } else { step.name() },
                        crate::image_template::redact_text(uri)
                    ));
                }
            }
        }
        warnings
    }
}

#[cfg(test)]
mod capability_tests;
#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::agent::Environment;

    const SUB: &str = "0e5c4a1d-7e57-4a1b-9000-000000000002";

    pub(crate) fn rid(rest: &str) -> String {
        format!("/subscriptions/{SUB}/resourceGroups/rg/providers/{rest}")
    }

    fn context(dir: &std::path::Path) -> PipelineContext {
        PipelineContext::from_env(&Environment::from_pairs([
            ("SYSTEM_DEFAULTWORKINGDIRECTORY", dir.to_str().unwrap()),
            ("BUILD_BUILDID", "42"),
        ]))
    }

    /// A complete, valid set of inputs for a Linux marketplace build to a managed image.
    pub(crate) fn valid(dir: &std::path::Path) -> TaskInputs {
        std::fs::create_dir_all(dir.join("drop")).unwrap();
        std::fs::write(dir.join("drop/app.conf"), "listen=8080\n").unwrap();
        let s = |v: &str| Some(v.to_owned());
        TaskInputs {
            ib_subscription: s("conn"),
            ib_azure_resource_group: s("rg-images"),
            ib_location: s("West Europe"),
            managed_identity: s(&rid("Microsoft.ManagedIdentity/userAssignedIdentities/aib")),
            image_source: s("marketplace"),
            base_image: s("Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2"),
            base_image_pub_offer_sku: s(PUB_OFFER_SKU_PLACEHOLDER),
            base_image_version: s("latest"),
            provisioner: s("shell"),
            package_path: s("drop"),
            inline_script: s("sudo apt-get update\r\necho done"),
            storage_account_name: s("AibArtifacts01"),
            distribute_type: s("managedimage"),
            image_id_for_distribute: s(&rid("Microsoft.Compute/images/webapp")),
            managed_image_location: s("westeurope"),
            ..Default::default()
        }
    }

    pub(crate) fn plan(
        inputs: &TaskInputs,
        dir: &std::path::Path,
    ) -> Result<BuildPlan, Vec<InputError>> {
        let context = context(dir);
        let stamp = crate::names::Stamp::new(1764219600000, &context, &[0, 0, 0, 0]);
        BuildPlan::from_inputs(inputs, SUB, &context, &stamp)
    }

    /// A valid Linux marketplace plan to a managed image, for other modules' unit tests.
    pub(crate) fn sample_plan() -> BuildPlan {
        let dir = tempfile::tempdir().unwrap();
        plan(&valid(dir.path()), dir.path()).unwrap()
    }

    pub(crate) fn errors(
        inputs: &TaskInputs,
        dir: &std::path::Path,
    ) -> Vec<(&'static str, String)> {
        plan(inputs, dir)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.input, e.problem))
            .collect()
    }

    #[test]
    fn a_valid_linux_build() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(&valid(dir.path()), dir.path()).unwrap();
        assert_eq!(p.location, "westeurope");
        assert_eq!(p.storage_account, "aibartifacts01");
        // The job's mark follows the time (names::Stamp): here no job id, random bytes zero.
        assert!(
            p.template_name.starts_with("t_42_1764219600000_")
                && p.template_name.ends_with("00000000"),
            "{}",
            p.template_name
        );
        assert_eq!(p.build_timeout_minutes, 240);
        assert_eq!(p.package_path, dir.path().join("drop"));
        assert_eq!(p.customization.os, Os::Linux);
        assert_eq!(
            p.customization.inline_script,
            ["sudo apt-get update", "echo done"]
        );
        assert!(p.keep_template_on_failure && !p.wait_for_template_deletion);
        assert_eq!(
            p.source,
            Source::Marketplace {
                publisher: "Canonical".into(),
                offer: "0001-com-ubuntu-server-jammy".into(),
                sku: "22_04-lts-gen2".into(),
                version: "latest".into()
            }
        );
        assert_eq!(p.distribution.run_output_name(), "ManagedImage_distribute");
        assert_eq!(p.vm_size, None);
    }

    #[test]
    fn typed_pub_offer_sku_wins_over_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = valid(dir.path());
        i.base_image_pub_offer_sku =
            Some("MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition".into());
        i.provisioner = Some("PowerShell".into());
        i.run_as_system = Some("true".into());
        i.run_elevated = Some("true".into());
        i.windows_restart = Some("true".into());
        i.windows_update_provisioner = Some("true".into());
        let p = plan(&i, dir.path()).unwrap();
        assert!(
            matches!(&p.source, Source::Marketplace { publisher, .. } if publisher == "MicrosoftWindowsServer")
        );
        assert_eq!(p.customization.os, Os::Windows);
        assert!(p.customization.run_elevated && p.customization.run_as_system);
        assert!(p.customization.windows_restart && p.customization.windows_update);
    }

    #[test]
    fn gallery_regions_stay_empty_until_the_gallery_is_read_and_are_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = valid(dir.path());
        i.distribute_type = Some("SIG".into());
        i.gallery_image_id = Some(rid("Microsoft.Compute/galleries/g/images/webapp"));
        let p = plan(&i, dir.path()).unwrap();
        assert!(
            matches!(&p.distribution, Distribution::SharedImage { regions, version: GalleryVersion::Default, .. } if regions.is_empty())
        );
        i.replication_regions = Some("eastus, East US,westeurope".into());
        i.storage_account_type = Some("standard_zrs".into());
        i.exclude_from_latest = Some("true".into());
        let p = plan(&i, dir.path()).unwrap();
        match p.distribution {
            Distribution::SharedImage {
                regions,
                exclude_from_latest,
                storage_account_type,
                ..
            } => {
                let names: Vec<&str> = regions.iter().map(|r| r.region.as_str()).collect();
                assert_eq!(names, ["eastus", "westeurope"]);
                assert!(regions.iter().all(|r| r.count == 1));
                assert!(exclude_from_latest);
                assert_eq!(storage_account_type.as_deref(), Some("Standard_ZRS"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn other_sources_and_vhd() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = valid(dir.path());
        i.image_source = Some("customimage".into());
        i.custom_image_resource_id = Some(rid("Microsoft.Compute/images/base"));
        i.distribute_type = Some("vhd".into());
        let p = plan(&i, dir.path()).unwrap();
        assert!(matches!(p.source, Source::ManagedImage { .. }));
        assert_eq!(p.distribution, Distribution::Vhd);
        i.image_source = Some("sharedimageversion".into());
        i.image_version_id = Some(rid("Microsoft.Compute/galleries/g/images/i/versions/1.2.3"));
        let p = plan(&i, dir.path()).unwrap();
        assert!(matches!(p.source, Source::SharedImageVersion { .. }));
    }

    #[test]
    fn every_bad_input_is_named_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = valid(dir.path());
        i.ib_location = Some("west-europe!".into());
        i.vm_size = Some("Standard D2".into());
        i.build_timeout_in_minutes = Some("1000".into());
        let found = errors(&i, dir.path());
        let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["ibLocation", "vmSize", "buildTimeoutInMinutes"],
            "{found:?}"
        );
    }

    #[test]
    fn rules_that_span_inputs() {
        let dir = tempfile::tempdir().unwrap();
        type Change = Box<dyn Fn(&mut TaskInputs)>;
        let cases: Vec<(Change, &str, &str)> = vec![
            (
                Box::new(|i| i.windows_restart = Some("true".into())),
                "windowsRestart",
                "Windows images only",
            ),
            (
                Box::new(|i| {
                    i.provisioner = Some("powershell".into());
                    i.run_as_system = Some("true".into());
                    i.run_elevated = Some("false".into());
                }),
                "runAsSystem",
                "needs runElevated",
            ),
            (
                Box::new(|i| i.storage_account_type = Some("Standard_LRS".into())),
                "storageAccountType",
                "gallery images only",
            ),
            (
                Box::new(|i| {
                    i.base_image = None;
                    i.base_image_pub_offer_sku = Some(PUB_OFFER_SKU_PLACEHOLDER.into());
                }),
                "baseImage",
                "is required",
            ),
            (
                Box::new(|i| i.image_source = Some("managedimage".into())),
                "customImageResourceId",
                "is required",
            ),
            (
                Box::new(|i| i.distribute_type = Some("sig".into())),
                "galleryImageId",
                "is required",
            ),
            (
                Box::new(|i| i.managed_image_location = None),
                "managedImageLocation",
                "is required",
            ),
            (
                Box::new(|i| i.package_path = Some("missing".into())),
                "packagePath",
                "cannot be read",
            ),
            (
                Box::new(|i| i.template_name = Some("bad name".into())),
                "templateName",
                "1 to 64",
            ),
            (
                Box::new(|i| i.image_tags = Some("a<b=1".into())),
                "imageTags",
                "does not allow",
            ),
            (
                Box::new(|i| i.staging_resource_group = Some("rg-staging".into())),
                "stagingResourceGroup",
                "/subscriptions/",
            ),
            (
                Box::new(|i| i.base_image_version = Some("1.2".into())),
                "baseImageVersion",
                "latest or a version",
            ),
        ];
        for (change, input, problem) in cases {
            let mut i = valid(dir.path());
            change(&mut i);
            let found = errors(&i, dir.path());
            assert!(
                found
                    .iter()
                    .any(|(n, p)| *n == input && p.contains(problem)),
                "{input}: {found:?}"
            );
        }
    }

    #[test]
    fn an_empty_build_path_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        let mut i = valid(dir.path());
        i.package_path = Some("empty".into());
        let found = errors(&i, dir.path());
        assert!(
            found
                .iter()
                .any(|(n, p)| *n == "packagePath" && p.contains("is empty")),
            "{found:?}"
        );
        // Folders without a single file are as empty: the archive would refuse them later.
        std::fs::create_dir_all(dir.path().join("empty/logs/old")).unwrap();
        assert!(
            errors(&i, dir.path())
                .iter()
                .any(|(n, p)| *n == "packagePath" && p.contains("is empty"))
        );
        std::fs::write(dir.path().join("empty/logs/old/a.log"), "x").unwrap();
        assert!(plan(&i, dir.path()).is_ok());
        // A link out of the build path is refused now too, not after sign-in.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", dir.path().join("empty/etc")).unwrap();
            let found = errors(&i, dir.path());
            assert!(found.iter().any(|(n, _)| *n == "packagePath"), "{found:?}");
        }
    }

    #[test]
    fn build_timeouts_follow_image_builder_s_limits() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = valid(dir.path());
        for (value, minutes) in [
            ("", 240),
            ("0", 240),
            ("6", 6),
            ("960", 960),
            (" 120 ", 120),
        ] {
            i.build_timeout_in_minutes = Some(value.into());
            assert_eq!(
                plan(&i, dir.path()).unwrap().build_timeout_minutes,
                minutes,
                "{value}"
            );
        }
        for value in ["1", "5", "961", "-1", "4h", "6.5"] {
            i.build_timeout_in_minutes = Some(value.into());
            let found = errors(&i, dir.path());
            assert!(
                found.iter().any(|(n, p)| *n == "buildTimeoutInMinutes"
                    && p.contains("from 6 to 960")
                    && p.contains(&format!("'{}'", value.trim()))),
                "{value}: {found:?}"
            );
        }
    }

    #[test]
    fn vhd_uri_sends_the_vhd_to_the_user_s_storage() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = valid(dir.path());
        i.distribute_type = Some("vhd".into());
        assert_eq!(
            plan(&i, dir.path()).unwrap().distribution,
            Distribution::Vhd
        );
        assert!(
            plan(&i, dir.path())
                .unwrap()
                .distribution
                .vhd_in_staging_group()
        );
        i.vhd_uri = Some(" https://mystorage.blob.core.windows.net/vhds/web.vhd ".into());
        let p = plan(&i, dir.path()).unwrap();
        assert_eq!(
            p.distribution,
            Distribution::VhdAt {
                uri: "https://mystorage.blob.core.windows.net/vhds/web.vhd".into()
            }
        );
        assert!(!p.distribution.vhd_in_staging_group());
        assert_eq!(p.distribution.run_output_name(), "VHD_distribute");
        i.vhd_uri =
            Some("https://mystorage.blob.core.windows.net/vhds/web.vhd?sv=1&sig=abc".into());
        assert!(
            errors(&i, dir.path())
                .iter()
                .any(|(n, p)| *n == "vhdUri" && p.contains("SAS"))
        );
        // Only VHD builds write a VHD.
        i.vhd_uri = Some("https://mystorage.blob.core.windows.net/vhds/web.vhd".into());
        i.distribute_type = Some("managedimage".into());
        assert!(
            errors(&i, dir.path())
                .iter()
                .any(|(n, p)| *n == "vhdUri" && p.contains("distributeType vhd"))
        );
    }

    #[test]
    fn warnings_for_choices_likely_to_fail() {
        let dir = tempfile::tempdir().unwrap();
        let mut i = valid(dir.path());
        assert!(plan(&i, dir.path()).unwrap().warnings().is_empty());
        i.provisioner = Some("powershell".into());
        i.windows_update_provisioner = Some("true".into());
        let w = plan(&i, dir.path()).unwrap().warnings();
        assert!(
            w.len() == 1 && w[0].contains("vmSize") && w[0].contains("Windows Update"),
            "{w:?}"
        );
        i.vm_size = Some("Standard_D4s_v3".into());
        assert!(plan(&i, dir.path()).unwrap().warnings().is_empty());
        i.staging_resource_group = Some(format!("/subscriptions/{SUB}/resourceGroups/rg-staging"));
        let w = plan(&i, dir.path()).unwrap().warnings();
        assert!(
            w.len() == 1 && w[0].contains("rg-staging") && w[0].contains("keepTemplateOnFailure"),
            "{w:?}"
        );
        i.keep_template_on_failure = Some("false".into());
        assert!(plan(&i, dir.path()).unwrap().warnings().is_empty());
    }

    #[test]
    fn a_file_as_build_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file.zip"), "x").unwrap();
        let mut i = valid(dir.path());
        i.package_path = Some("file.zip".into());
        let found = errors(&i, dir.path());
        assert!(
            found
                .iter()
                .any(|(n, p)| *n == "packagePath" && p.contains("is a file")),
            "{found:?}"
        );
    }
}
