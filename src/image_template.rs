//! The Image Builder template (api-version [`API_VERSION`]): typed serde models of the resource
//! as it is sent (PUT) and read back (GET, run outputs), and [`build_template`], the pure
//! function that turns a validated [`BuildPlan`] and the staged artifact into the body to PUT.
//! No I/O: the build orchestration sends what this module builds, prints it through
//! [`to_display_json`] (the download URL's SAS masked), and reads the answers with the same
//! types.
//!
//! # What a template does
//!
//! * **Source**: the marketplace image (`latest` stays `latest`; the orchestration resolves the
//!   exact version for the outputs), the managed image, or the gallery image version. A
//!   marketplace image sold with a purchase plan gets its `planInfo` from the orchestration,
//!   which reads the plan off the image version (`crate::build::source::purchase_plan`).
//! * **Artifacts onto the VM**, as the original task laid them out: Linux into `/tmp/<folder>`,
//!   Windows into `C:\buildArtifacts\<folder>`, `<folder>` being the build path's last segment.
//!   - Linux, archive of at most [`FILE_CUSTOMIZER_MAX_BYTES`] (Image Builder's guidance for
//!     the File customizer) and a folder name of letters, digits, `.`, `_` and `-`: a `File`
//!     customizer to `/tmp/<folder>.zip` with its `sha256Checksum`. Otherwise a Shell step
//!     downloads it (curl, wget or python3, with retries) and checks its SHA-256. Then a Shell
//!     step extracts it with `unzip`, or python3 where there is no `unzip` (Ubuntu images),
//!     keeping the Unix modes.
//!   - Windows: a PowerShell step downloads with `Invoke-WebRequest` (retries, TLS 1.2), checks
//!     `Get-FileHash`, and one extracts with Windows' `tar.exe` where it exists (it writes paths
//!     past `MAX_PATH`), else with `Expand-Archive -Force` (.NET's `ZipFile` for names with
//!     wildcard characters). The PowerShell lines are ASCII whatever the folder's name (see
//!     [`scripts::powershell_string`]).
//!   - The archive stays beside the folder (as in the original) unless `cleanupArtifactsOnImage`.
//! * **The user's inline script**, verbatim, one `inline` entry per line, in its own Shell or
//!   PowerShell customizer (PowerShell with `runElevated`/`runAsSystem`). No `cd` is added:
//!   scripts written for the original task use absolute paths, and Windows cannot delete a
//!   folder that is a process's current directory, which the documented clean-up lines do.
//!   A script of blank lines is no step at all.
//! * Then, on Windows, the optional `WindowsRestart` (timeout [`WINDOWS_RESTART_TIMEOUT`]), the
//!   original's Windows Update (a five-minute wait, then `WindowsUpdate` with
//!   `IsInstalled=0`, preview updates excluded, 20 at a time). Last, on either system, the
//!   optional removal of the artifacts (folder and archive) from the image.
//! * **Distribution**: managed image, gallery image (`targetRegions`, one replica each, with the
//!   storage account type; `excludeFromLatest`) or VHD, under the original's `runOutputName`.
//! * **Tags**: the template carries the pipeline's identity ([`pipeline_tags`]); the image
//!   carries the same plus the user's `imageTags`, which win on a clash.
//! * `vmProfile` only when a size, disk size or subnet is set; the build timeout; the staging
//!   resource group when given.

pub mod scripts;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::agent::PipelineContext;
use crate::plan::{self, BuildPlan, Os};
use scripts::{Download, VmPaths};

/// The Image Builder api-version these models follow.
pub const API_VERSION: &str = "2024-02-01";

/// The largest archive brought in with a `File` customizer (Image Builder's guidance: "small
/// files, less than 20 MB"); larger ones are downloaded by a script.
pub const FILE_CUSTOMIZER_MAX_BYTES: u64 = 20 * 1024 * 1024;

/// Where the artifacts go on Linux images (wiped at reboot on most distributions, as with the
/// original task).
pub const LINUX_ARTIFACTS_ROOT: &str = "/tmp";

/// Where the artifacts go on Windows images.
pub const WINDOWS_ARTIFACTS_ROOT: &str = r"C:\buildArtifacts";

/// How long the `WindowsRestart` customizer waits for the VM to come back.
pub const WINDOWS_RESTART_TIMEOUT: &str = "10m";

/// The most tags Azure allows on one resource.
pub const MAX_TAGS: usize = 50;

/// The longest tag value Azure allows.
pub const MAX_TAG_VALUE_CHARS: usize = 256;

/// The tag every template and image gets: `createdBy: aib-task`.
pub const CREATED_BY: (&str, &str) = ("createdBy", "aib-task");

// ---------------------------------------------------------------------------------------------
// Models.

/// An image template resource: the PUT body, and the GET answer (read-only fields filled).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageTemplate {
    /// Read-only: the resource id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Read-only: the template name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Read-only: `Microsoft.VirtualMachineImages/imageTemplates`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    pub location: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    pub identity: Identity,
    pub properties: ImageTemplateProperties,
}

/// The template's identity: always one user-assigned identity for aib-task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    #[serde(rename = "type")]
    pub identity_type: IdentityType,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_assigned_identities: BTreeMap<String, UserAssignedIdentity>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityType {
    UserAssigned,
    None,
}

/// `{}` in requests; answers add the identity's principal and client ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignedIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// `properties` of the template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageTemplateProperties {
    pub source: Source,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub customize: Vec<Customizer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimize: Option<Optimize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Validate>,
    pub distribute: Vec<Distributor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_handling: Option<ErrorHandling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_profile: Option<VmProfile>,
    /// 0 to 960; 0 means Image Builder's default of 240.
    #[serde(default)]
    pub build_timeout_in_minutes: u32,
    /// Resource id of the staging resource group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_resource_group: Option<String>,
    /// Tags on the staging resource group and the resources Image Builder makes in it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub managed_resource_tags: BTreeMap<String, String>,
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
    /// Read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_error: Option<ProvisioningError>,
    /// Read-only: the state of the current or last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_status: Option<LastRunStatus>,
    /// Read-only: the staging group Image Builder uses (`IT_<rg>_<template>_<guid>` when
    /// `stagingResourceGroup` is unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_staging_resource_group: Option<String>,
}

/// The base image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Source {
    PlatformImage {
        publisher: String,
        offer: String,
        sku: String,
        /// `latest` or an exact version.
        version: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan_info: Option<PurchasePlan>,
        /// Read-only: the version built from, after a build.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exact_version: Option<String>,
    },
    ManagedImage {
        image_id: String,
    },
    SharedImageVersion {
        image_version_id: String,
        /// Read-only: the version's id when `imageVersionId` names `latest`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exact_version: Option<String>,
    },
}

/// A marketplace image's purchase plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchasePlan {
    pub plan_name: String,
    pub plan_product: String,
    pub plan_publisher: String,
}

/// One customization step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Customizer {
    /// Shell lines (Linux), run by the build VM's user (`sudo` for root).
    Shell {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        name: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        inline: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        script_uri: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256_checksum: Option<String>,
    },
    PowerShell {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        name: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        inline: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        script_uri: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256_checksum: Option<String>,
        #[serde(default)]
        run_elevated: bool,
        /// Only with `run_elevated`.
        #[serde(default)]
        run_as_system: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        valid_exit_codes: Option<Vec<i32>>,
    },
    /// Copies one file onto the VM (meant for small files).
    File {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        name: String,
        source_uri: String,
        destination: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256_checksum: Option<String>,
    },
    WindowsRestart {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restart_command: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restart_check_command: Option<String>,
        /// Such as `5m` or `2h`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restart_timeout: Option<String>,
    },
    WindowsUpdate {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        search_criteria: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        filters: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        update_limit: Option<u32>,
    },
}

impl Customizer {
    /// The URL Image Builder's service downloads for this step, if any: a File customizer's
    /// source and a script's `scriptUri` are fetched by the service, not by the build VM
    /// (Azure/azvmimagebuilder#60: the template PUT fails when its identity cannot read them).
    pub fn service_fetched_uri(&self) -> Option<&str> {
        match self {
            Customizer::File { source_uri, .. } => Some(source_uri),
            Customizer::Shell { script_uri, .. } | Customizer::PowerShell { script_uri, .. } => {
                script_uri.as_deref()
            }
            _ => None,
        }
    }

    /// The step's `name`.
    pub fn name(&self) -> &str {
        match self {
            Customizer::Shell { name, .. }
            | Customizer::PowerShell { name, .. }
            | Customizer::File { name, .. }
            | Customizer::WindowsRestart { name, .. }
            | Customizer::WindowsUpdate { name, .. } => name,
        }
    }
}

/// Where the image goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum Distributor {
    ManagedImage {
        image_id: String,
        location: String,
        run_output_name: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        artifact_tags: BTreeMap<String, String>,
    },
    SharedImage {
        gallery_image_id: String,
        run_output_name: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        artifact_tags: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        target_regions: Vec<TargetRegion>,
        /// Deprecated in favour of `targetRegions`; read only for answers that still carry it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        replication_regions: Vec<String>,
        #[serde(default)]
        exclude_from_latest: bool,
        /// Deprecated (only with `replicationRegions`); never sent by aib-task.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        storage_account_type: Option<String>,
        /// How the version number is made; unset: Image Builder's default, or the version the
        /// `galleryImageId` names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        versioning: Option<Versioning>,
    },
    #[serde(rename = "VHD")]
    Vhd {
        run_output_name: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        artifact_tags: BTreeMap<String, String>,
        /// Where to write the VHD; unset: the staging group's storage account.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uri: Option<String>,
    },
}

impl Distributor {
    pub fn run_output_name(&self) -> &str {
        match self {
            Distributor::ManagedImage {
                run_output_name, ..
            }
            | Distributor::SharedImage {
                run_output_name, ..
            }
            | Distributor::Vhd {
                run_output_name, ..
            } => run_output_name,
        }
    }

    pub fn artifact_tags(&self) -> &BTreeMap<String, String> {
        match self {
            Distributor::ManagedImage { artifact_tags, .. }
            | Distributor::SharedImage { artifact_tags, .. }
            | Distributor::Vhd { artifact_tags, .. } => artifact_tags,
        }
    }
}

/// `versioning` of a gallery distributor (template reference, "versioning").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scheme")]
pub enum Versioning {
    /// "New strictly increasing schema": above the highest existing version of `major`.
    Latest {
        /// -1 or unset: any major.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        major: Option<i32>,
    },
    /// "Schema based upon the version number of the source image".
    Source,
}

/// `optimize`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Optimize {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_boot: Option<VmBoot>,
}

/// `optimize.vmBoot`: "Enabling this field will improve VM boot time by optimizing the final
/// customized image output."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmBoot {
    /// `Enabled` or `Disabled`.
    pub state: String,
}

/// `validate`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Validate {
    #[serde(default)]
    pub continue_distribute_on_failure: bool,
    #[serde(default)]
    pub source_validation_only: bool,
    #[serde(
        rename = "inVMValidations",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    /// In-VM validations: the swagger's Shell, PowerShell and File validators have exactly the
    /// shapes of those customizers (`ImageTemplate*Validator`), so they share the model; the
    /// task makes only Shell and PowerShell ones.
    pub in_vm_validations: Vec<Customizer>,
}

/// `errorHandling`: `cleanup` (the default) or `abort` for each kind of failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorHandling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_customizer_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_validation_error: Option<String>,
}

/// A gallery replication region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRegion {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_count: Option<u32>,
    /// `Standard_LRS`, `Standard_ZRS` or `Premium_LRS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_account_type: Option<String>,
}

/// The build VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VmProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
    #[serde(
        rename = "osDiskSizeGB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_disk_size_gb: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_assigned_identities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnet_config: Option<VnetConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VnetConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_subnet_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_vm_size: Option<String>,
}

/// The template's provisioning state (read-only). Values Azure may add later read as
/// `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProvisioningState {
    Creating,
    Updating,
    Succeeded,
    Failed,
    Deleting,
    Canceled,
    #[serde(other)]
    Unknown,
}

/// Why provisioning (the PUT) failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The state of the current or last run (read-only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRunStatus {
    /// RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_state: Option<RunState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_sub_state: Option<RunSubState>,
    /// On failure, carries `Image Build log location: <url>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    Running,
    Canceling,
    Succeeded,
    PartiallySucceeded,
    Failed,
    Canceled,
    #[serde(other)]
    Unknown,
}

impl RunState {
    /// True once the run has ended, whatever the outcome.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunState::Succeeded
                | RunState::PartiallySucceeded
                | RunState::Failed
                | RunState::Canceled
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunSubState {
    Queued,
    Building,
    Customizing,
    Optimizing,
    Validating,
    Distributing,
    #[serde(other)]
    Unknown,
}

/// One output of a run (`GET …/runOutputs/{name}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub properties: RunOutputProperties,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOutputProperties {
    /// The image's resource id (managed image, gallery image version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_id: Option<String>,
    /// The VHD's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_state: Option<ProvisioningState>,
}

/// A page of `GET …/runOutputs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOutputList {
    #[serde(default)]
    pub value: Vec<RunOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Building the template.

/// The staged artifact as the template needs it.
#[derive(Clone, Copy, Debug)]
pub struct ArtifactRef<'a> {
    /// The blob URL with its read-only SAS: a secret, which ends up only inside the template.
    pub download_url: &'a str,
    /// Lower-case hex SHA-256 of the archive.
    pub sha256_hex: &'a str,
    /// The archive's size in bytes.
    pub size: u64,
    /// The build path's last segment: the folder's name on the VM.
    pub folder: &'a str,
}

/// Where the artifacts go on the VM and when the File customizer brings them. The defaults are
/// the task's; tests point the roots at a temporary folder to run the generated scripts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateOptions {
    pub linux_root: String,
    pub windows_root: String,
    /// Linux archives up to this size use a `File` customizer, larger ones a download script.
    pub file_customizer_max_bytes: u64,
}

impl Default for TemplateOptions {
    fn default() -> TemplateOptions {
        TemplateOptions {
            linux_root: LINUX_ARTIFACTS_ROOT.to_owned(),
            windows_root: WINDOWS_ARTIFACTS_ROOT.to_owned(),
            file_customizer_max_bytes: FILE_CUSTOMIZER_MAX_BYTES,
        }
    }
}

/// The customizers' names, which Image Builder's `customization.log` shows for each step.
pub mod step {
    pub const DOWNLOAD: &str = "aib-task-download-artifacts";
    pub const EXTRACT: &str = "aib-task-extract-artifacts";
    pub const INLINE_SCRIPT: &str = "aib-task-inline-script";
    pub const WINDOWS_RESTART: &str = "aib-task-windows-restart";
    pub const WINDOWS_UPDATE_WAIT: &str = "aib-task-wait-before-windows-update";
    pub const WINDOWS_UPDATE: &str = "aib-task-windows-update";
    pub const REMOVE_ARTIFACTS: &str = "aib-task-remove-artifacts";
    /// The `validationScript`, in `validate.inVMValidations`.
    pub const VALIDATION: &str = "aib-task-validation";
}

/// The template body for `plan`, with the task's default [`TemplateOptions`].
pub fn build_template(
    plan: &BuildPlan,
    artifact: Option<&ArtifactRef>,
    context: &PipelineContext,
) -> ImageTemplate {
    build_template_with(plan, artifact, context, &TemplateOptions::default())
}

/// [`build_template`] with other roots or File customizer threshold.
pub fn build_template_with(
    plan: &BuildPlan,
    artifact: Option<&ArtifactRef>,
    context: &PipelineContext,
    options: &TemplateOptions,
) -> ImageTemplate {
    let identity_tags = pipeline_tags(context);
    let artifact_tags = merge_tags(&plan.image_tags, &identity_tags);
    let vnet_config = plan.subnet.as_ref().map(|s| VnetConfig {
        subnet_id: Some(s.as_str().to_owned()),
        container_instance_subnet_id: plan
            .build_vm
            .container_instance_subnet
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        proxy_vm_size: plan.build_vm.proxy_vm_size.clone(),
    });
    let vm_profile = VmProfile {
        vm_size: plan.vm_size.clone(),
        os_disk_size_gb: plan.os_disk_size_gb,
        user_assigned_identities: plan
            .build_vm
            .identities
            .iter()
            .map(|id| id.as_str().to_owned())
            .collect(),
        vnet_config,
    };
    let customize = match artifact {
        Some(artifact) if !plan.source_validation_only() => customizers(plan, artifact, options),
        _ => Vec::new(),
    };
    ImageTemplate {
        id: None,
        name: None,
        resource_type: None,
        location: plan.location.clone(),
        tags: identity_tags,
        identity: Identity {
            identity_type: IdentityType::UserAssigned,
            user_assigned_identities: BTreeMap::from([(
                plan.identity.as_str().to_owned(),
                UserAssignedIdentity::default(),
            )]),
        },
        properties: ImageTemplateProperties {
            source: source(&plan.source),
            customize,
            optimize: plan.optimize_vm_boot.then(|| Optimize {
                vm_boot: Some(VmBoot {
                    state: "Enabled".to_owned(),
                }),
            }),
            validate: plan
                .validation
                .as_ref()
                .map(|v| validate(v, &plan.customization)),
            distribute: vec![distributor(
                &plan.distribution,
                &plan.location,
                artifact_tags,
            )],
            error_handling: (!plan.error_handling.is_default()).then(|| ErrorHandling {
                on_customizer_error: Some(
                    plan.error_handling.on_customizer_error.as_str().to_owned(),
                ),
                on_validation_error: Some(
                    plan.error_handling.on_validation_error.as_str().to_owned(),
                ),
            }),
            vm_profile: (vm_profile != VmProfile::default()).then_some(vm_profile),
            build_timeout_in_minutes: plan.build_timeout_minutes,
            staging_resource_group: plan
                .staging_resource_group
                .as_ref()
                .map(|g| g.as_str().to_owned()),
            managed_resource_tags: plan.managed_resource_tags.iter().cloned().collect(),
            provisioning_state: None,
            provisioning_error: None,
            last_run_status: None,
            exact_staging_resource_group: None,
        },
    }
}

/// `validate`: the validation script in the provisioner's shell, elevated like the inline
/// script.
fn validate(validation: &plan::Validation, custom: &plan::Customization) -> Validate {
    let name = step::VALIDATION.to_owned();
    let inline = validation.script.clone();
    Validate {
        continue_distribute_on_failure: validation.continue_distribute_on_failure,
        source_validation_only: validation.source_validation_only,
        in_vm_validations: vec![match custom.os {
            Os::Linux => Customizer::Shell {
                name,
                inline,
                script_uri: None,
                sha256_checksum: None,
            },
            Os::Windows => Customizer::PowerShell {
                name,
                inline,
                script_uri: None,
                sha256_checksum: None,
                run_elevated: custom.run_elevated || custom.run_as_system,
                run_as_system: custom.run_as_system,
                valid_exit_codes: None,
            },
        }],
    }
}

fn source(source: &plan::Source) -> Source {
    match source {
        plan::Source::Marketplace {
            publisher,
            offer,
            sku,
            version,
        } => Source::PlatformImage {
            publisher: publisher.clone(),
            offer: offer.clone(),
            sku: sku.clone(),
            version: version.clone(),
            plan_info: None,
            exact_version: None,
        },
        plan::Source::ManagedImage { image_id } => Source::ManagedImage {
            image_id: image_id.as_str().to_owned(),
        },
        plan::Source::SharedImageVersion { image_version_id } => Source::SharedImageVersion {
            image_version_id: image_version_id.as_str().to_owned(),
            exact_version: None,
        },
    }
}

/// The distributor; a gallery without replication regions gets one replica in `build_region`
/// (the orchestration replaces an empty list with the image definition's region first).
fn distributor(
    distribution: &plan::Distribution,
    build_region: &str,
    artifact_tags: BTreeMap<String, String>,
) -> Distributor {
    let run_output_name = distribution.run_output_name().to_owned();
    match distribution {
        plan::Distribution::ManagedImage { image_id, location } => Distributor::ManagedImage {
            image_id: image_id.as_str().to_owned(),
            location: location.clone(),
            run_output_name,
            artifact_tags,
        },
        plan::Distribution::SharedImage {
            gallery_image_id,
            version,
            regions,
            exclude_from_latest,
            storage_account_type,
        } => Distributor::SharedImage {
            gallery_image_id: match version {
                plan::GalleryVersion::Exact(v) => format!("{gallery_image_id}/versions/{v}"),
                _ => gallery_image_id.as_str().to_owned(),
            },
            run_output_name,
            artifact_tags,
            target_regions: if regions.is_empty() {
                vec![TargetRegion {
                    name: build_region.to_owned(),
                    replica_count: Some(1),
                    storage_account_type: storage_account_type.clone(),
                }]
            } else {
                regions
                    .iter()
                    .map(|r| TargetRegion {
                        name: r.region.clone(),
                        replica_count: Some(r.count),
                        storage_account_type: storage_account_type.clone(),
                    })
                    .collect()
            },
            replication_regions: Vec::new(),
            exclude_from_latest: *exclude_from_latest,
            storage_account_type: None,
            versioning: match version {
                plan::GalleryVersion::Default | plan::GalleryVersion::Exact(_) => None,
                plan::GalleryVersion::Latest { major } => Some(Versioning::Latest {
                    major: major.and_then(|m| i32::try_from(m).ok()),
                }),
                plan::GalleryVersion::Source => Some(Versioning::Source),
            },
        },
        plan::Distribution::Vhd => Distributor::Vhd {
            run_output_name,
            artifact_tags,
            uri: None,
        },
        plan::Distribution::VhdAt { uri } => Distributor::Vhd {
            run_output_name,
            artifact_tags,
            uri: Some(uri.clone()),
        },
    }
}

/// A name that needs no quoting anywhere: the File customizer's destination is handed to
/// Packer's file provisioner, whose quoting of remote paths is not documented, so any other
/// folder name is brought in by the download script, which quotes it.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn shell(name: &str, inline: Vec<String>) -> Customizer {
    Customizer::Shell {
        name: name.to_owned(),
        inline,
        script_uri: None,
        sha256_checksum: None,
    }
}

fn powershell(name: &str, inline: Vec<String>, elevated: bool, system: bool) -> Customizer {
    Customizer::PowerShell {
        name: name.to_owned(),
        inline,
        script_uri: None,
        sha256_checksum: None,
        run_elevated: elevated || system,
        run_as_system: system,
        valid_exit_codes: None,
    }
}

/// The customizers, in order (see the module documentation).
fn customizers(
    plan: &BuildPlan,
    artifact: &ArtifactRef,
    options: &TemplateOptions,
) -> Vec<Customizer> {
    let custom = &plan.customization;
    let download = Download {
        url: artifact.download_url,
        sha256_hex: artifact.sha256_hex,
        size: artifact.size,
    };
    let user_lines = (!custom.inline_script.iter().all(|l| l.trim().is_empty()))
        .then(|| custom.inline_script.clone());
    let mut steps = Vec::new();
    match custom.os {
        Os::Linux => {
            let paths = VmPaths::linux(&options.linux_root, artifact.folder);
            if plan.artifact_delivery == plan::ArtifactDelivery::Auto
                && artifact.size <= options.file_customizer_max_bytes
                && plain_name(artifact.folder)
            {
                steps.push(Customizer::File {
                    name: step::DOWNLOAD.to_owned(),
                    source_uri: artifact.download_url.to_owned(),
                    destination: paths.zip.clone(),
                    sha256_checksum: Some(artifact.sha256_hex.to_owned()),
                });
            } else {
                steps.push(shell(
                    step::DOWNLOAD,
                    scripts::linux_download(&download, &paths),
                ));
            }
            steps.push(shell(step::EXTRACT, scripts::linux_extract(&paths)));
            if let Some(lines) = user_lines {
                steps.push(shell(step::INLINE_SCRIPT, lines));
            }
            steps.extend(plan.extra_customizers.iter().cloned());
            if custom.cleanup_artifacts {
                steps.push(shell(
                    step::REMOVE_ARTIFACTS,
                    scripts::linux_cleanup(&paths),
                ));
            }
        }
        Os::Windows => {
            let paths = VmPaths::windows(&options.windows_root, artifact.folder);
            let (elevated, system) = (custom.run_elevated, custom.run_as_system);
            steps.push(powershell(
                step::DOWNLOAD,
                scripts::windows_download(&download, &paths),
                false,
                false,
            ));
            steps.push(powershell(
                step::EXTRACT,
                scripts::windows_extract(&paths),
                false,
                false,
            ));
            if let Some(lines) = user_lines {
                steps.push(powershell(step::INLINE_SCRIPT, lines, elevated, system));
            }
            steps.extend(plan.extra_customizers.iter().cloned());
            if custom.windows_restart {
                steps.push(Customizer::WindowsRestart {
                    name: step::WINDOWS_RESTART.to_owned(),
                    restart_command: None,
                    restart_check_command: None,
                    restart_timeout: Some(WINDOWS_RESTART_TIMEOUT.to_owned()),
                });
            }
            if custom.windows_update {
                // The original task's Windows Update: wait for the VM to settle, then install
                // everything that is not a preview, at most 20 updates per pass.
                steps.push(powershell(
                    step::WINDOWS_UPDATE_WAIT,
                    vec!["Start-Sleep -Seconds 300".to_owned()],
                    false,
                    false,
                ));
                steps.push(Customizer::WindowsUpdate {
                    name: step::WINDOWS_UPDATE.to_owned(),
                    search_criteria: Some("IsInstalled=0".to_owned()),
                    filters: vec![
                        "exclude:$_.Title -like '*Preview*'".to_owned(),
                        "include:$true".to_owned(),
                    ],
                    update_limit: Some(20),
                });
            }
            if custom.cleanup_artifacts {
                steps.push(powershell(
                    step::REMOVE_ARTIFACTS,
                    scripts::windows_cleanup(&paths),
                    elevated,
                    system,
                ));
            }
        }
    }
    steps
}

// ---------------------------------------------------------------------------------------------
// Tags.

/// Tag names aib-task sets besides [`CREATED_BY`], each with the pipeline variable it comes
/// from. Unset variables give no tag; values are cut to [`MAX_TAG_VALUE_CHARS`].
pub mod tag {
    /// `System.CollectionUri`.
    pub const COLLECTION: &str = "aib-task.collection";
    /// `System.TeamProject` (else `System.TeamProjectId`).
    pub const PROJECT: &str = "aib-task.project";
    /// `Build.DefinitionName` (or `Release.DefinitionName`).
    pub const DEFINITION: &str = "aib-task.definition";
    /// `Build.BuildId`.
    pub const BUILD_ID: &str = "aib-task.buildId";
    /// `Build.BuildNumber`.
    pub const BUILD_NUMBER: &str = "aib-task.buildNumber";
    /// `Release.ReleaseId`.
    pub const RELEASE_ID: &str = "aib-task.releaseId";
    /// `Release.AttemptNumber` in a release, else `System.JobAttempt` (1 when unset).
    pub const ATTEMPT: &str = "aib-task.attempt";
    /// `Build.Repository.Name`.
    pub const REPOSITORY: &str = "aib-task.repository";
    /// `Build.SourceVersion`.
    pub const COMMIT: &str = "aib-task.commit";
}

/// The pipeline's identity as tags: [`CREATED_BY`] plus the [`tag`] names whose variables are
/// set. Names hold none of the characters Azure refuses in tag names (`<>%&\?/`).
pub fn pipeline_tags(context: &PipelineContext) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::from([(CREATED_BY.0.to_owned(), CREATED_BY.1.to_owned())]);
    let attempt = context.run_id().map(|_| context.attempt());
    for (name, value) in [
        (tag::COLLECTION, context.collection_uri.as_deref()),
        (
            tag::PROJECT,
            context
                .team_project
                .as_deref()
                .or(context.team_project_id.as_deref()),
        ),
        (tag::DEFINITION, context.definition_name.as_deref()),
        (tag::BUILD_ID, context.build_id.as_deref()),
        (tag::BUILD_NUMBER, context.build_number.as_deref()),
        (tag::RELEASE_ID, context.release_id.as_deref()),
        (tag::ATTEMPT, attempt),
        (tag::REPOSITORY, context.repository.as_deref()),
        (tag::COMMIT, context.source_version.as_deref()),
    ] {
        if let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) {
            tags.insert(name.to_owned(), tag_value(value));
        }
    }
    tags
}

fn tag_value(value: &str) -> String {
    value.chars().take(MAX_TAG_VALUE_CHARS).collect()
}

/// The image's tags: the user's `imageTags` first (they win on a clash), then the pipeline's
/// as long as Azure's [`MAX_TAGS`] allows.
pub fn merge_tags(
    user: &[(String, String)],
    pipeline: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = user.iter().cloned().collect();
    // createdBy first, so it is the last to be dropped.
    let created_by = pipeline.get_key_value(CREATED_BY.0);
    let rest = pipeline.iter().filter(|(k, _)| *k != CREATED_BY.0);
    for (k, v) in created_by.into_iter().chain(rest) {
        if tags.len() >= MAX_TAGS {
            break;
        }
        tags.entry(k.clone()).or_insert_with(|| v.clone());
    }
    tags
}

// ---------------------------------------------------------------------------------------------
// Printing without secrets.

// Neither pattern crosses a quote or a backslash, so masking JSON text keeps it valid JSON.
static URL_WITH_QUERY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(https?://[^\s'"<>`|?\\]+)\?([^\s'"<>`|\\]*)"#).unwrap());
static SAS_SIGNATURE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)\bsig=[^&\s'"<>`|\\]*"#).unwrap());

/// `text` with the query of every URL that carries a SAS signature (`sig=`) replaced by `***`,
/// and any other `sig=` value masked.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    if !text.to_ascii_lowercase().contains("sig=") {
        return Cow::Borrowed(text);
    }
    let urls = URL_WITH_QUERY.replace_all(text, |c: &regex::Captures| {
        if c[2].to_ascii_lowercase().contains("sig=") {
            format!("{}?***", &c[1])
        } else {
            c[0].to_owned()
        }
    });
    Cow::Owned(SAS_SIGNATURE.replace_all(&urls, "sig=***").into_owned())
}

fn redact_value(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Cow::Owned(r) = redact_text(s) {
                *s = r;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_value),
        serde_json::Value::Object(map) => map.values_mut().for_each(redact_value),
        _ => {}
    }
}

/// The template with every SAS in it masked: safe to print.
pub fn redacted(template: &ImageTemplate) -> ImageTemplate {
    let mut value = serde_json::to_value(template).expect("a template serializes");
    redact_value(&mut value);
    serde_json::from_value(value).expect("a redacted template reads back")
}

/// The template as indented JSON, fields in the order Azure documents them, with every SAS
/// masked: for the log.
pub fn to_display_json(template: &ImageTemplate) -> String {
    let json = serde_json::to_string_pretty(template).expect("a template serializes");
    redact_text(&json).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Customization, Distribution};
    use crate::resource_id::{Kind, parse};
    use serde_json::json;

    const SUB: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups";
    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const URL: &str = "https://acct.blob.core.windows.net/imagebuilder-vststask/webapp/42-1/webapp_1.zip?sv=2022-11-02&sr=b&sp=r&se=2026-11-27T12%3A00%3A00Z&spr=https&sig=c2VjcmV0c2lnbmF0dXJl%3D";

    fn plan(os: Os, distribution: Distribution) -> BuildPlan {
        BuildPlan {
            subscription_id: "00000000-0000-0000-0000-000000000000".into(),
            resource_group: "rg-aib".into(),
            location: "westeurope".into(),
            identity: parse(
                Kind::UserAssignedIdentity,
                &format!(
                    "{SUB}/rg-aib/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib"
                ),
            )
            .unwrap(),
            template_name: "t_42_1".into(),
            template_name_given: false,
            source: plan::Source::Marketplace {
                publisher: "Canonical".into(),
                offer: "ubuntu-24_04-lts".into(),
                sku: "server".into(),
                version: "latest".into(),
            },
            customization: Customization {
                os,
                inline_script: vec!["echo one".into(), "echo 'two'".into()],
                run_elevated: false,
                run_as_system: false,
                windows_restart: false,
                windows_update: false,
                cleanup_artifacts: false,
            },
            package_path: "/agent/_work/r1/a/webapp".into(),
            storage_account: "aibstaging".into(),
            distribution,
            vm_size: None,
            os_disk_size_gb: None,
            subnet: None,
            build_timeout_minutes: 240,
            staging_resource_group: None,
            image_tags: vec![],
            keep_template_on_failure: true,
            wait_for_template_deletion: false,
            stream_build_log: true,
            validation: None,
            error_handling: Default::default(),
            optimize_vm_boot: false,
            build_vm: Default::default(),
            managed_resource_tags: Vec::new(),
            artifact_delivery: Default::default(),
            extra_customizers: Vec::new(),
        }
    }

    fn artifact(size: u64) -> ArtifactRef<'static> {
        ArtifactRef {
            download_url: URL,
            sha256_hex: SHA,
            size,
            folder: "webapp",
        }
    }

    fn context() -> PipelineContext {
        PipelineContext {
            in_pipeline: true,
            build_id: Some("42".into()),
            build_number: Some("20261127.3".into()),
            collection_uri: Some("https://dev.azure.com/contoso/".into()),
            team_project: Some("Images".into()),
            definition_name: Some("golden-image".into()),
            repository: Some("infra".into()),
            source_version: Some("9143bdf0a1".into()),
            ..PipelineContext::default()
        }
    }

    fn names(t: &ImageTemplate) -> Vec<&str> {
        t.properties
            .customize
            .iter()
            .map(Customizer::name)
            .collect()
    }

    #[test]
    fn pipeline_identity_becomes_tags() {
        let tags = pipeline_tags(&context());
        assert_eq!(
            tags,
            BTreeMap::from(
                [
                    ("createdBy", "aib-task"),
                    ("aib-task.collection", "https://dev.azure.com/contoso/"),
                    ("aib-task.project", "Images"),
                    ("aib-task.definition", "golden-image"),
                    ("aib-task.buildId", "42"),
                    ("aib-task.buildNumber", "20261127.3"),
                    ("aib-task.attempt", "1"),
                    ("aib-task.repository", "infra"),
                    ("aib-task.commit", "9143bdf0a1"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
            )
        );
        for key in tags.keys() {
            assert!(!key.contains(['<', '>', '%', '&', '\\', '?', '/']), "{key}");
        }
        // Outside a pipeline: only createdBy, and no attempt without a run.
        assert_eq!(
            pipeline_tags(&PipelineContext::default())
                .into_iter()
                .collect::<Vec<_>>(),
            [("createdBy".to_owned(), "aib-task".to_owned())]
        );
        let long = PipelineContext {
            definition_name: Some("é".repeat(300)),
            ..PipelineContext::default()
        };
        assert_eq!(pipeline_tags(&long)[tag::DEFINITION].chars().count(), 256);
    }

    #[test]
    fn user_image_tags_win_and_the_total_stays_within_azure_limits() {
        let pipeline = pipeline_tags(&context());
        let user = vec![
            ("createdBy".to_owned(), "me".to_owned()),
            ("team".to_owned(), "platform".to_owned()),
        ];
        let merged = merge_tags(&user, &pipeline);
        assert_eq!(merged["createdBy"], "me");
        assert_eq!(merged["team"], "platform");
        assert_eq!(merged[tag::BUILD_ID], "42");
        let many: Vec<(String, String)> =
            (0..49).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        let merged = merge_tags(&many, &pipeline);
        assert_eq!(merged.len(), MAX_TAGS);
        assert_eq!(merged["createdBy"], "aib-task");
    }

    #[test]
    fn linux_template_golden() {
        let mut p = plan(Os::Linux, Distribution::Vhd);
        p.customization.cleanup_artifacts = true;
        p.image_tags = vec![("team".into(), "platform".into())];
        let t = build_template(&p, Some(&artifact(1024)), &context());
        assert_eq!(
            names(&t),
            [
                step::DOWNLOAD,
                step::EXTRACT,
                step::INLINE_SCRIPT,
                step::REMOVE_ARTIFACTS
            ]
        );
        let body = serde_json::to_value(&t).unwrap();
        assert_eq!(
            body["properties"]["customize"][0],
            json!({
                "type": "File",
                "name": step::DOWNLOAD,
                "sourceUri": URL,
                "destination": "/tmp/webapp.zip",
                "sha256Checksum": SHA,
            })
        );
        assert_eq!(
            body["properties"]["customize"][2],
            json!({"type": "Shell", "name": step::INLINE_SCRIPT, "inline": ["echo one", "echo 'two'"]})
        );
        let extract = &t.properties.customize[1];
        let Customizer::Shell { inline, .. } = extract else {
            panic!("{extract:?}")
        };
        assert_eq!(inline[0], "zip='/tmp/webapp.zip'");
        assert_eq!(inline[1], "dest='/tmp/webapp'");
        let Customizer::Shell { inline, .. } = &t.properties.customize[3] else {
            panic!()
        };
        assert!(
            inline[0].contains("rm -rf -- '/tmp/webapp' '/tmp/webapp.zip'"),
            "{inline:?}"
        );
        assert_eq!(
            body["properties"]["distribute"],
            json!([{"type": "VHD", "runOutputName": "VHD_distribute", "artifactTags": t.properties.distribute[0].artifact_tags()}])
        );
        assert_eq!(
            t.properties.distribute[0].artifact_tags()["team"],
            "platform"
        );
        assert_eq!(
            t.properties.distribute[0].artifact_tags()[tag::BUILD_ID],
            "42"
        );
        assert_eq!(body["location"], "westeurope");
        assert_eq!(body["tags"]["createdBy"], "aib-task");
        assert!(
            body["tags"].get("team").is_none(),
            "image tags go on the image only"
        );
        assert_eq!(
            body["identity"],
            json!({"type": "UserAssigned", "userAssignedIdentities": {p.identity.as_str(): {}}})
        );
        assert_eq!(
            body["properties"]["source"],
            json!({"type": "PlatformImage", "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"})
        );
        assert_eq!(body["properties"]["buildTimeoutInMinutes"], 240);
        assert!(body["properties"].get("vmProfile").is_none());
        assert!(body["properties"].get("stagingResourceGroup").is_none());
    }

    #[test]
    fn large_linux_archives_are_downloaded_by_script_and_checked() {
        let p = plan(Os::Linux, Distribution::Vhd);
        let t = build_template(
            &p,
            Some(&artifact(FILE_CUSTOMIZER_MAX_BYTES + 1)),
            &context(),
        );
        assert_eq!(
            names(&t),
            [step::DOWNLOAD, step::EXTRACT, step::INLINE_SCRIPT]
        );
        let Customizer::Shell { inline, .. } = &t.properties.customize[0] else {
            panic!()
        };
        assert_eq!(inline[0], format!("url='{URL}'"));
        assert_eq!(inline[2], format!("expected='{SHA}'"));
        let script = inline.join("\n");
        for tool in [
            "curl ",
            "wget ",
            "python3 -c",
            "sha256sum",
            "urllib.request",
        ] {
            assert!(script.contains(tool), "{tool}");
        }
        // Exactly at the threshold: still the File customizer.
        let t = build_template(&p, Some(&artifact(FILE_CUSTOMIZER_MAX_BYTES)), &context());
        assert!(matches!(t.properties.customize[0], Customizer::File { .. }));
        // A small archive whose folder name needs quoting: the script, which quotes it.
        for folder in ["my app", "it's", "ünï", "a[1]", ""] {
            let odd = ArtifactRef {
                folder,
                ..artifact(10)
            };
            let t = build_template(&p, Some(&odd), &context());
            assert!(
                matches!(&t.properties.customize[0], Customizer::Shell { name, .. } if name == step::DOWNLOAD),
                "{folder}"
            );
        }
        let plain = ArtifactRef {
            folder: "_Drop-1.2",
            ..artifact(10)
        };
        let t = build_template(&p, Some(&plain), &context());
        assert!(matches!(t.properties.customize[0], Customizer::File { .. }));
    }

    #[test]
    fn windows_template_golden() {
        let mut p = plan(Os::Windows, Distribution::Vhd);
        p.customization.inline_script = vec!["& 'C:\\buildArtifacts\\webapp\\setup.ps1'".into()];
        p.customization.run_elevated = true;
        p.customization.run_as_system = true;
        p.customization.windows_restart = true;
        p.customization.windows_update = true;
        p.customization.cleanup_artifacts = true;
        let t = build_template(&p, Some(&artifact(1024)), &context());
        assert_eq!(
            names(&t),
            [
                step::DOWNLOAD,
                step::EXTRACT,
                step::INLINE_SCRIPT,
                step::WINDOWS_RESTART,
                step::WINDOWS_UPDATE_WAIT,
                step::WINDOWS_UPDATE,
                step::REMOVE_ARTIFACTS
            ]
        );
        let body = serde_json::to_value(&t).unwrap();
        let c = &body["properties"]["customize"];
        assert_eq!(
            c[2],
            json!({"type": "PowerShell", "name": step::INLINE_SCRIPT, "inline": ["& 'C:\\buildArtifacts\\webapp\\setup.ps1'"], "runElevated": true, "runAsSystem": true})
        );
        assert_eq!(
            c[3],
            json!({"type": "WindowsRestart", "name": step::WINDOWS_RESTART, "restartTimeout": "10m"})
        );
        assert_eq!(
            c[4],
            json!({"type": "PowerShell", "name": step::WINDOWS_UPDATE_WAIT, "inline": ["Start-Sleep -Seconds 300"], "runElevated": false, "runAsSystem": false})
        );
        assert_eq!(
            c[5],
            json!({
                "type": "WindowsUpdate",
                "name": step::WINDOWS_UPDATE,
                "searchCriteria": "IsInstalled=0",
                "filters": ["exclude:$_.Title -like '*Preview*'", "include:$true"],
                "updateLimit": 20
            })
        );
        assert_eq!(c[0]["runElevated"], false);
        assert_eq!(c[6]["runAsSystem"], true);
        let download = c[0]["inline"].as_array().unwrap();
        let script: Vec<&str> = download.iter().map(|l| l.as_str().unwrap()).collect();
        assert!(
            script.contains(&format!("$url = '{URL}'").as_str()),
            "{script:?}"
        );
        assert!(script.contains(&r"$zip = 'C:\buildArtifacts\webapp.zip'"));
        assert!(script.contains(&format!("$expected = '{SHA}'").as_str()));
        let joined = script.join("\n");
        for needle in [
            "Invoke-WebRequest -Uri $url",
            "-UseBasicParsing",
            "Tls12",
            "Get-FileHash -LiteralPath",
            "exit 1",
        ] {
            assert!(joined.contains(needle), "{needle}");
        }
        let extract = c[1]["inline"].as_array().unwrap();
        assert!(extract.contains(&json!(r"$dest = 'C:\buildArtifacts\webapp'")));
        assert!(extract.iter().any(|l| {
            l.as_str()
                .unwrap()
                .contains("Expand-Archive -LiteralPath $zip -DestinationPath $dest -Force")
        }));
    }

    #[test]
    fn an_empty_script_is_no_step_and_linux_never_gets_windows_steps() {
        let mut p = plan(Os::Linux, Distribution::Vhd);
        p.customization.inline_script = vec![String::new(), "   ".into()];
        let t = build_template(&p, Some(&artifact(10)), &context());
        assert_eq!(names(&t), [step::DOWNLOAD, step::EXTRACT]);
        let mut p = plan(Os::Windows, Distribution::Vhd);
        p.customization.inline_script = vec![];
        let t = build_template(&p, Some(&artifact(10)), &context());
        assert_eq!(names(&t), [step::DOWNLOAD, step::EXTRACT]);
    }

    #[test]
    fn folder_names_are_quoted_for_each_shell() {
        let nasty = "_it's $HOME `id` ünï";
        let a = ArtifactRef {
            folder: nasty,
            ..artifact(FILE_CUSTOMIZER_MAX_BYTES + 1)
        };
        let t = build_template(&plan(Os::Linux, Distribution::Vhd), Some(&a), &context());
        let Customizer::Shell { inline, .. } = &t.properties.customize[1] else {
            panic!()
        };
        assert_eq!(inline[0], r"zip='/tmp/_it'\''s $HOME `id` ünï.zip'");
        let t = build_template(&plan(Os::Windows, Distribution::Vhd), Some(&a), &context());
        let Customizer::PowerShell { inline, .. } = &t.properties.customize[1] else {
            panic!()
        };
        assert_eq!(
            inline[3],
            r"$dest = ('' + 'C:\buildArtifacts\_it''s $HOME `id` ' + [char]0x00FC + 'n' + [char]0x00EF)"
        );
    }

    #[test]
    fn sources_distributors_and_vm_profile() {
        let gallery = parse(
            Kind::GalleryImage,
            &format!("{SUB}/rg/providers/Microsoft.Compute/galleries/g/images/i"),
        )
        .unwrap();
        let mut p = plan(
            Os::Linux,
            Distribution::SharedImage {
                gallery_image_id: gallery.clone(),
                regions: vec![
                    crate::plan::Replica {
                        region: "westeurope".into(),
                        count: 1,
                    },
                    crate::plan::Replica {
                        region: "northeurope".into(),
                        count: 1,
                    },
                ],
                version: crate::plan::GalleryVersion::Default,
                exclude_from_latest: true,
                storage_account_type: Some("Standard_ZRS".into()),
            },
        );
        let version = parse(
            Kind::GalleryImageVersion,
            &format!("{SUB}/rg/providers/Microsoft.Compute/galleries/g/images/i/versions/1.0.0"),
        )
        .unwrap();
        p.source = plan::Source::SharedImageVersion {
            image_version_id: version.clone(),
        };
        p.vm_size = Some("Standard_D2s_v5".into());
        p.os_disk_size_gb = Some(64);
        let subnet = parse(
            Kind::Subnet,
            &format!("{SUB}/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/s"),
        )
        .unwrap();
        p.subnet = Some(subnet.clone());
        let staging = parse(Kind::ResourceGroup, &format!("{SUB}/rg-staging")).unwrap();
        p.staging_resource_group = Some(staging.clone());
        p.build_timeout_minutes = 600;
        let body =
            serde_json::to_value(build_template(&p, Some(&artifact(10)), &context())).unwrap();
        let props = &body["properties"];
        assert_eq!(
            props["source"],
            json!({"type": "SharedImageVersion", "imageVersionId": version.as_str()})
        );
        let d = &props["distribute"][0];
        assert_eq!(d["type"], "SharedImage");
        assert_eq!(d["galleryImageId"], gallery.as_str());
        assert_eq!(d["runOutputName"], "SharedImage_distribute");
        assert_eq!(d["excludeFromLatest"], true);
        assert_eq!(
            d["targetRegions"],
            json!([
                {"name": "westeurope", "replicaCount": 1, "storageAccountType": "Standard_ZRS"},
                {"name": "northeurope", "replicaCount": 1, "storageAccountType": "Standard_ZRS"}
            ])
        );
        assert!(d.get("replicationRegions").is_none() && d.get("storageAccountType").is_none());
        assert_eq!(
            props["vmProfile"],
            json!({"vmSize": "Standard_D2s_v5", "osDiskSizeGB": 64, "vnetConfig": {"subnetId": subnet.as_str()}})
        );
        assert_eq!(props["buildTimeoutInMinutes"], 600);
        assert_eq!(props["stagingResourceGroup"], staging.as_str());

        let image = parse(
            Kind::ManagedImage,
            &format!("{SUB}/rg/providers/Microsoft.Compute/images/base"),
        )
        .unwrap();
        p.source = plan::Source::ManagedImage {
            image_id: image.clone(),
        };
        p.distribution = Distribution::ManagedImage {
            image_id: image.clone(),
            location: "northeurope".into(),
        };
        p.vm_size = None;
        p.subnet = None;
        let body =
            serde_json::to_value(build_template(&p, Some(&artifact(10)), &context())).unwrap();
        assert_eq!(
            body["properties"]["source"],
            json!({"type": "ManagedImage", "imageId": image.as_str()})
        );
        let d = &body["properties"]["distribute"][0];
        assert_eq!(
            (
                d["type"].as_str(),
                d["imageId"].as_str(),
                d["location"].as_str(),
                d["runOutputName"].as_str()
            ),
            (
                Some("ManagedImage"),
                Some(image.as_str()),
                Some("northeurope"),
                Some("ManagedImage_distribute")
            )
        );
        assert_eq!(body["properties"]["vmProfile"], json!({"osDiskSizeGB": 64}));
    }

    #[test]
    fn redaction_masks_every_sas() {
        for (os, size) in [
            (Os::Linux, 10),
            (Os::Linux, FILE_CUSTOMIZER_MAX_BYTES + 1),
            (Os::Windows, 10),
        ] {
            let t = build_template(
                &plan(os, Distribution::Vhd),
                Some(&artifact(size)),
                &context(),
            );
            assert!(serde_json::to_string(&t).unwrap().contains("sig=c2VjcmV0"));
            let shown = to_display_json(&t);
            assert!(!shown.contains("c2VjcmV0"), "{shown}");
            assert!(shown.contains("webapp_1.zip?***"), "{shown}");
            let r = serde_json::to_string(&redacted(&t)).unwrap();
            assert!(!r.contains("c2VjcmV0") && !r.contains("sig="), "{r}");
            // Nothing but the SAS changed, and the text is the same JSON.
            assert_eq!(names(&redacted(&t)), names(&t));
            let parsed: serde_json::Value = serde_json::from_str(&shown).unwrap();
            assert_eq!(parsed, serde_json::to_value(redacted(&t)).unwrap());
            assert!(
                shown.trim_start().starts_with("{\n  \"location\""),
                "{shown}"
            );
        }
        assert_eq!(
            redact_text(
                "GET https://h/x?api-version=1 then https://h/b?sv=1&SIG=abc&se=2 and sig=zzz&x"
            ),
            "GET https://h/x?api-version=1 then https://h/b?*** and sig=***&x"
        );
        assert!(matches!(redact_text("no secrets"), Cow::Borrowed(_)));
    }

    #[test]
    fn read_only_fields_read_and_stay_out_of_requests() {
        let answer = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.VirtualMachineImages/imageTemplates/t",
            "name": "t",
            "type": "Microsoft.VirtualMachineImages/imageTemplates",
            "location": "westeurope",
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/id": {"principalId": "p", "clientId": "c"}}},
            "properties": {
                "source": {"type": "PlatformImage", "publisher": "P", "offer": "O", "sku": "S", "version": "latest", "exactVersion": "1.2.3"},
                "distribute": [{"type": "VHD", "runOutputName": "VHD_distribute"}],
                "provisioningState": "Succeeded",
                "lastRunStatus": {"startTime": "2026-11-27T06:00:00Z", "runState": "Running", "runSubState": "Customizing", "message": ""},
                "exactStagingResourceGroup": "/subscriptions/s/resourceGroups/IT_rg_t_1",
                "somethingNew": {"x": 1}
            }
        });
        let t: ImageTemplate = serde_json::from_value(answer).unwrap();
        assert_eq!(
            t.properties.provisioning_state,
            Some(ProvisioningState::Succeeded)
        );
        let run = t.properties.last_run_status.as_ref().unwrap();
        assert_eq!(run.run_state, Some(RunState::Running));
        assert!(!RunState::Running.is_finished() && RunState::PartiallySucceeded.is_finished());
        assert_eq!(run.run_sub_state, Some(RunSubState::Customizing));
        assert!(
            matches!(&t.properties.source, Source::PlatformImage { exact_version: Some(v), .. } if v == "1.2.3")
        );
        assert_eq!(t.properties.build_timeout_in_minutes, 0);
        let state: RunSubState = serde_json::from_value(json!("Teleporting")).unwrap();
        assert_eq!(state, RunSubState::Unknown);

        let built = serde_json::to_value(build_template(
            &plan(Os::Linux, Distribution::Vhd),
            Some(&artifact(10)),
            &context(),
        ))
        .unwrap();
        for key in ["id", "name", "type"] {
            assert!(built.get(key).is_none(), "{key}");
        }
        for key in [
            "provisioningState",
            "lastRunStatus",
            "exactStagingResourceGroup",
            "provisioningError",
        ] {
            assert!(built["properties"].get(key).is_none(), "{key}");
        }
    }
}
