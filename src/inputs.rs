//! The task's inputs, defined once: each is an `INPUT_<NAME>` variable set by the agent and the
//! same `--kebab-name` flag on the command line (clap reads both), under the original task's
//! name so existing YAML keeps working. Values stay raw strings here; the typed readers below
//! turn them into values or into an [`InputError`] that names the input and the expected form.
//!
//! `task.json`, the README's input table and the tests are checked against [`TaskInputs`].

use clap::{Args, CommandFactory as _};

/// Every input of the task, raw. `None` means unset (the agent passes empty inputs as "").
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
#[command(next_help_heading = "Task inputs (also read from INPUT_<NAME>)")]
pub struct TaskInputs {
    /// Azure Resource Manager service connection: in a pipeline its id (the agent passes it);
    /// outside one, leave unset and sign in with the usual Azure variables or the Azure CLI.
    #[arg(
        id = "ibSubscription",
        long = "ib-subscription",
        env = "INPUT_IBSUBSCRIPTION",
        hide_env_values = true,
        value_name = "CONNECTION"
    )]
    pub ib_subscription: Option<String>,

    /// Resource group for the Image Builder template, e.g. `rg-images`.
    #[arg(
        id = "ibAzureResourceGroup",
        long = "ib-azure-resource-group",
        env = "INPUT_IBAZURERESOURCEGROUP",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub ib_azure_resource_group: Option<String>,

    /// Azure region the build runs in, e.g. `westeurope`.
    #[arg(
        id = "ibLocation",
        long = "ib-location",
        env = "INPUT_IBLOCATION",
        hide_env_values = true,
        value_name = "REGION"
    )]
    pub ib_location: Option<String>,

    /// Resource id of the user-assigned managed identity Image Builder acts as.
    #[arg(
        id = "managedIdentity",
        long = "managed-identity",
        env = "INPUT_MANAGEDIDENTITY",
        hide_env_values = true,
        value_name = "RESOURCE_ID"
    )]
    pub managed_identity: Option<String>,

    /// Subnet resource id for the build VM (optional; a private network build).
    #[arg(
        id = "vnetSubnetId",
        long = "vnet-subnet-id",
        env = "INPUT_VNETSUBNETID",
        hide_env_values = true,
        value_name = "RESOURCE_ID"
    )]
    pub vnet_subnet_id: Option<String>,

    /// Where the base image comes from: `marketplace`, `managedimage` or `sharedimageversion`.
    #[arg(
        id = "imageSource",
        long = "image-source",
        env = "INPUT_IMAGESOURCE",
        hide_env_values = true,
        value_name = "KIND"
    )]
    pub image_source: Option<String>,

    /// Marketplace base image as `Publisher:Offer:Sku`, picked from the task's list.
    #[arg(
        id = "baseImage",
        long = "base-image",
        env = "INPUT_BASEIMAGE",
        hide_env_values = true,
        value_name = "PUBLISHER:OFFER:SKU"
    )]
    pub base_image: Option<String>,

    /// Marketplace base image as `Publisher:Offer:Sku`, typed in; wins over `baseImage` unless
    /// left at the placeholder `Publisher:Offer:Sku`.
    #[arg(
        id = "baseImagePubOfferSku",
        long = "base-image-pub-offer-sku",
        env = "INPUT_BASEIMAGEPUBOFFERSKU",
        hide_env_values = true,
        value_name = "PUBLISHER:OFFER:SKU"
    )]
    pub base_image_pub_offer_sku: Option<String>,

    /// Marketplace image version, or `latest` (resolved to the exact version in the outputs).
    #[arg(
        id = "baseImageVersion",
        long = "base-image-version",
        env = "INPUT_BASEIMAGEVERSION",
        hide_env_values = true,
        value_name = "VERSION"
    )]
    pub base_image_version: Option<String>,

    /// Resource id of the managed image to start from (image source `managedimage`).
    #[arg(
        id = "customImageResourceId",
        long = "custom-image-resource-id",
        env = "INPUT_CUSTOMIMAGERESOURCEID",
        hide_env_values = true,
        value_name = "RESOURCE_ID"
    )]
    pub custom_image_resource_id: Option<String>,

    /// Resource id of the gallery image version to start from (image source `sharedimageversion`).
    #[arg(
        id = "imageVersionId",
        long = "image-version-id",
        env = "INPUT_IMAGEVERSIONID",
        hide_env_values = true,
        value_name = "RESOURCE_ID"
    )]
    pub image_version_id: Option<String>,

    /// How the inline script runs: `shell` (Linux) or `powershell` (Windows).
    #[arg(
        id = "provisioner",
        long = "provisioner",
        env = "INPUT_PROVISIONER",
        hide_env_values = true,
        value_name = "KIND"
    )]
    pub provisioner: Option<String>,

    /// Windows only: install Windows updates after the script (`true`/`false`).
    #[arg(
        id = "windowsUpdateProvisioner",
        long = "windows-update-provisioner",
        env = "INPUT_WINDOWSUPDATEPROVISIONER",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub windows_update_provisioner: Option<String>,

    /// Build path: the folder whose contents are copied onto the image (relative paths resolve
    /// against the pipeline's default working directory).
    #[arg(
        id = "packagePath",
        long = "package-path",
        env = "INPUT_PACKAGEPATH",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub package_path: Option<String>,

    /// Script run on the build VM after the build path is copied; one command per line.
    #[arg(
        id = "inlineScript",
        long = "inline-script",
        env = "INPUT_INLINESCRIPT",
        hide_env_values = true,
        value_name = "SCRIPT"
    )]
    pub inline_script: Option<String>,

    /// Storage account (in the connection's subscription) that carries the build path to the VM.
    #[arg(
        id = "storageAccountName",
        long = "storage-account-name",
        env = "INPUT_STORAGEACCOUNTNAME",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub storage_account_name: Option<String>,

    /// Where the image goes: `managedimage`, `sig` (a compute gallery) or `vhd`.
    #[arg(
        id = "distributeType",
        long = "distribute-type",
        env = "INPUT_DISTRIBUTETYPE",
        hide_env_values = true,
        value_name = "KIND"
    )]
    pub distribute_type: Option<String>,

    /// Managed image resource id to create (distribute type `managedimage`).
    #[arg(
        id = "imageIdForDistribute",
        long = "image-id-for-distribute",
        env = "INPUT_IMAGEIDFORDISTRIBUTE",
        hide_env_values = true,
        value_name = "RESOURCE_ID"
    )]
    pub image_id_for_distribute: Option<String>,

    /// Region of the managed image (distribute type `managedimage`).
    #[arg(
        id = "managedImageLocation",
        long = "managed-image-location",
        env = "INPUT_MANAGEDIMAGELOCATION",
        hide_env_values = true,
        value_name = "REGION"
    )]
    pub managed_image_location: Option<String>,

    /// Gallery image definition resource id (distribute type `sig`).
    #[arg(
        id = "galleryImageId",
        long = "gallery-image-id",
        env = "INPUT_GALLERYIMAGEID",
        hide_env_values = true,
        value_name = "RESOURCE_ID"
    )]
    pub gallery_image_id: Option<String>,

    /// Regions to replicate the gallery image version to, comma or newline separated, each with
    /// an optional replica count: `westeurope=2, northeurope` (one replica when no count).
    #[arg(
        id = "replicationRegions",
        long = "replication-regions",
        env = "INPUT_REPLICATIONREGIONS",
        hide_env_values = true,
        value_name = "REGIONS"
    )]
    pub replication_regions: Option<String>,

    /// Where to write the VHD (distribute type `vhd`): an `https://` blob URL in your own
    /// storage account, e.g. `https://myaccount.blob.core.windows.net/vhds/web.vhd`. The Image
    /// Builder identity needs Storage Blob Data Contributor there. Empty: the VHD stays in the
    /// staging resource group and the template is kept so the VHD is not deleted with it.
    #[arg(
        id = "vhdUri",
        long = "vhd-uri",
        env = "INPUT_VHDURI",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub vhd_uri: Option<String>,

    /// Build VM size, e.g. `Standard_D2s_v3`; empty lets Image Builder choose.
    #[arg(
        id = "vmSize",
        long = "vm-size",
        env = "INPUT_VMSIZE",
        hide_env_values = true,
        value_name = "SIZE"
    )]
    pub vm_size: Option<String>,

    /// Build timeout in minutes: 0 (Image Builder's default of 240) or 6 to 960.
    #[arg(
        id = "buildTimeoutInMinutes",
        long = "build-timeout-in-minutes",
        env = "INPUT_BUILDTIMEOUTINMINUTES",
        hide_env_values = true,
        value_name = "MINUTES"
    )]
    pub build_timeout_in_minutes: Option<String>,

    /// OS disk size of the build VM in GB (empty keeps the image's size).
    #[arg(
        id = "osDiskSizeGB",
        long = "os-disk-size-gb",
        env = "INPUT_OSDISKSIZEGB",
        hide_env_values = true,
        value_name = "GB"
    )]
    pub os_disk_size_gb: Option<String>,

    /// Name of the Image Builder template (default `t_<run id>_<epoch ms>_<job mark>`).
    #[arg(
        id = "templateName",
        long = "template-name",
        env = "INPUT_TEMPLATENAME",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub template_name: Option<String>,

    /// Resource id of the resource group for the build's temporary resources: created by Image
    /// Builder when missing; an existing one must be empty and used by no other template.
    #[arg(
        id = "stagingResourceGroup",
        long = "staging-resource-group",
        env = "INPUT_STAGINGRESOURCEGROUP",
        hide_env_values = true,
        value_name = "RESOURCE_ID"
    )]
    pub staging_resource_group: Option<String>,

    /// PowerShell only: run the script elevated (`true`/`false`).
    #[arg(
        id = "runElevated",
        long = "run-elevated",
        env = "INPUT_RUNELEVATED",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub run_elevated: Option<String>,

    /// PowerShell only: run the elevated script as the local system account (`true`/`false`).
    #[arg(
        id = "runAsSystem",
        long = "run-as-system",
        env = "INPUT_RUNASSYSTEM",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub run_as_system: Option<String>,

    /// Windows only: restart the VM after the script (`true`/`false`).
    #[arg(
        id = "windowsRestart",
        long = "windows-restart",
        env = "INPUT_WINDOWSRESTART",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub windows_restart: Option<String>,

    /// Gallery only: keep the new version from becoming the image's latest (`true`/`false`).
    #[arg(
        id = "excludeFromLatest",
        long = "exclude-from-latest",
        env = "INPUT_EXCLUDEFROMLATEST",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub exclude_from_latest: Option<String>,

    /// Gallery only: storage type of the replicas, `Standard_LRS`, `Standard_ZRS` or `Premium_LRS`.
    #[arg(
        id = "storageAccountType",
        long = "storage-account-type",
        env = "INPUT_STORAGEACCOUNTTYPE",
        hide_env_values = true,
        value_name = "TYPE"
    )]
    pub storage_account_type: Option<String>,

    /// Tags for the image, one `key=value` per line.
    #[arg(
        id = "imageTags",
        long = "image-tags",
        env = "INPUT_IMAGETAGS",
        hide_env_values = true,
        value_name = "KEY=VALUE"
    )]
    pub image_tags: Option<String>,

    /// Keep the template after a failed build so its logs can be inspected (`true`/`false`).
    #[arg(
        id = "keepTemplateOnFailure",
        long = "keep-template-on-failure",
        env = "INPUT_KEEPTEMPLATEONFAILURE",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub keep_template_on_failure: Option<String>,

    /// Wait for the template's deletion to finish before the task ends (`true`/`false`).
    #[arg(
        id = "waitForTemplateDeletion",
        long = "wait-for-template-deletion",
        env = "INPUT_WAITFORTEMPLATEDELETION",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub wait_for_template_deletion: Option<String>,

    /// Remove the copied build path from the image at the end of the build (`true`/`false`).
    #[arg(
        id = "cleanupArtifactsOnImage",
        long = "cleanup-artifacts-on-image",
        env = "INPUT_CLEANUPARTIFACTSONIMAGE",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub cleanup_artifacts_on_image: Option<String>,

    /// Print Image Builder's build log (customization.log) live while the build runs
    /// (`true`/`false`); it is attached to the job's logs either way when it can be read.
    #[arg(
        id = "streamBuildLog",
        long = "stream-build-log",
        env = "INPUT_STREAMBUILDLOG",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub stream_build_log: Option<String>,

    /// Gallery only: the image version to create: `X.Y.Z` (e.g. `1.4.0`), `latest` (above the highest
    /// existing version), `latest:<major>` (e.g. `latest:2`) or `source` (the marketplace source's
    /// version). Empty keeps Image Builder's default numbering.
    #[arg(
        id = "galleryImageVersion",
        long = "gallery-image-version",
        env = "INPUT_GALLERYIMAGEVERSION",
        hide_env_values = true,
        value_name = "VERSION"
    )]
    pub gallery_image_version: Option<String>,

    /// A JSON file on the agent with an array of Image Builder customizers (`Shell`, `PowerShell`,
    /// `File`, `WindowsRestart`, `WindowsUpdate`) run after the inline script, e.g.
    /// `image/customizers.json`; checked before anything is created.
    #[arg(
        id = "customizersFile",
        long = "customizers-file",
        env = "INPUT_CUSTOMIZERSFILE",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub customizers_file: Option<String>,

    /// Optimize the image for a faster first VM boot (`optimize.vmBoot`, `true`/`false`).
    #[arg(
        id = "optimizeVmBoot",
        long = "optimize-vm-boot",
        env = "INPUT_OPTIMIZEVMBOOT",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub optimize_vm_boot: Option<String>,

    /// Tags for the staging resources Image Builder creates (build VM, disks, network, storage),
    /// one `key=value` per line, e.g. `costCenter=1234`.
    #[arg(
        id = "managedResourceTags",
        long = "managed-resource-tags",
        env = "INPUT_MANAGEDRESOURCETAGS",
        hide_env_values = true,
        value_name = "KEY=VALUE"
    )]
    pub managed_resource_tags: Option<String>,

    /// How the build path reaches the VM: `auto` (small Linux archives by Image Builder's File
    /// customizer, the rest downloaded on the VM) or `vm` (always downloaded from inside the build
    /// VM, for storage accounts behind a firewall that admits the build subnet).
    #[arg(
        id = "artifactDelivery",
        long = "artifact-delivery",
        env = "INPUT_ARTIFACTDELIVERY",
        hide_env_values = true,
        value_name = "MODE"
    )]
    pub artifact_delivery: Option<String>,

    /// A script run on the finished image to validate it (`validate.inVMValidations`), Shell or
    /// PowerShell by `provisioner`; a non-zero exit fails the build, e.g. `test -x /opt/app/run`.
    #[arg(
        id = "validationScript",
        long = "validation-script",
        env = "INPUT_VALIDATIONSCRIPT",
        hide_env_values = true,
        value_name = "SCRIPT"
    )]
    pub validation_script: Option<String>,

    /// Distribute the image even when validation fails (`true`/`false`); the build still fails.
    #[arg(
        id = "continueDistributeOnFailure",
        long = "continue-distribute-on-failure",
        env = "INPUT_CONTINUEDISTRIBUTEONFAILURE",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub continue_distribute_on_failure: Option<String>,

    /// Validate the source image itself without customizing it (`true`/`false`): needs
    /// `validationScript`; the build path, inline script and customizers file are not used.
    #[arg(
        id = "sourceValidationOnly",
        long = "source-validation-only",
        env = "INPUT_SOURCEVALIDATIONONLY",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub source_validation_only: Option<String>,

    /// When a customization step fails: `cleanup` (remove the build VM) or `abort` (keep it in the
    /// staging resource group for debugging; the task keeps the template and says how to remove it).
    #[arg(
        id = "onCustomizerError",
        long = "on-customizer-error",
        env = "INPUT_ONCUSTOMIZERERROR",
        hide_env_values = true,
        value_name = "ACTION"
    )]
    pub on_customizer_error: Option<String>,

    /// When validation fails: `cleanup` (remove the VM) or `abort` (keep it in the staging
    /// resource group for debugging; the task keeps the template and says how to remove it).
    #[arg(
        id = "onValidationError",
        long = "on-validation-error",
        env = "INPUT_ONVALIDATIONERROR",
        hide_env_values = true,
        value_name = "ACTION"
    )]
    pub on_validation_error: Option<String>,

    /// User-assigned identities for the build VM (comma or newline separated resource ids), e.g. to
    /// read a Key Vault from the script; the template's identity needs Managed Identity Operator
    /// on each, e.g. `/subscriptions/…/userAssignedIdentities/build-vm`.
    #[arg(
        id = "buildVmIdentities",
        long = "build-vm-identities",
        env = "INPUT_BUILDVMIDENTITIES",
        hide_env_values = true,
        value_name = "RESOURCE_IDS"
    )]
    pub build_vm_identities: Option<String>,

    /// Isolated builds: subnet resource id for the Azure Container Instance that reaches the build VM
    /// (needs `vnetSubnetId`, same virtual network, delegated to
    /// `Microsoft.ContainerInstance/containerGroups`).
    #[arg(
        id = "containerInstanceSubnetId",
        long = "container-instance-subnet-id",
        env = "INPUT_CONTAINERINSTANCESUBNETID",
        hide_env_values = true,
        value_name = "RESOURCE_ID"
    )]
    pub container_instance_subnet_id: Option<String>,

    /// Size of the proxy VM Image Builder puts in `vnetSubnetId`'s network, e.g. `Standard_A2_v2`
    /// (not with `containerInstanceSubnetId`, which deploys no proxy VM).
    #[arg(
        id = "proxyVmSize",
        long = "proxy-vm-size",
        env = "INPUT_PROXYVMSIZE",
        hide_env_values = true,
        value_name = "SIZE"
    )]
    pub proxy_vm_size: Option<String>,

    /// Rehearse the customization on the agent before the build (`true`/`false`): the same
    /// steps in a container or chroot resembling the base image; a failing step stops the task
    /// before any Azure write.
    #[arg(
        id = "rehearseBeforeBuild",
        long = "rehearse-before-build",
        env = "INPUT_REHEARSEBEFOREBUILD",
        hide_env_values = true,
        value_name = "BOOL"
    )]
    pub rehearse_before_build: Option<String>,

    /// Container image the rehearsal runs in instead of the one mapped from the base image, e.g.
    /// `ubuntu:22.04`.
    #[arg(
        id = "rehearsalImage",
        long = "rehearsal-image",
        env = "INPUT_REHEARSALIMAGE",
        hide_env_values = true,
        value_name = "IMAGE"
    )]
    pub rehearsal_image: Option<String>,
    /// Sign-in without a service connection (GitHub Actions, a terminal): the client
    /// (application) id of the Entra ID app or user-assigned identity; default `AZURE_CLIENT_ID`.
    /// With GitHub's OIDC token (`permissions: id-token: write`) the app needs a federated
    /// credential for the workflow, e.g. subject `repo:contoso/app:ref:refs/heads/main`.
    #[arg(
        id = "clientId",
        long = "client-id",
        env = "INPUT_CLIENTID",
        hide_env_values = true,
        value_name = "GUID"
    )]
    pub client_id: Option<String>,

    /// Sign-in without a service connection: the Entra ID tenant (directory) id; default
    /// `AZURE_TENANT_ID`.
    #[arg(
        id = "tenantId",
        long = "tenant-id",
        env = "INPUT_TENANTID",
        hide_env_values = true,
        value_name = "GUID"
    )]
    pub tenant_id: Option<String>,

    /// Sign-in without a service connection: the subscription to build in; default
    /// `AZURE_SUBSCRIPTION_ID` (`--subscription` wins over both).
    #[arg(
        id = "subscriptionId",
        long = "subscription-id",
        env = "INPUT_SUBSCRIPTIONID",
        hide_env_values = true,
        value_name = "GUID"
    )]
    pub subscription_id: Option<String>,

    /// Sign-in without a service connection: the cloud, `AzureCloud`, `AzureUSGovernment` or
    /// `AzureChinaCloud` (as azure/login names them); `AZURE_AUTHORITY_HOST` and
    /// `AZURE_RESOURCE_MANAGER_URL` override it.
    #[arg(
        id = "environment",
        long = "environment",
        env = "INPUT_ENVIRONMENT",
        hide_env_values = true,
        value_name = "CLOUD"
    )]
    pub environment: Option<String>,
}

/// One input as the command line declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSpec {
    /// The task input's name, as in YAML (`ibSubscription`).
    pub name: String,
    /// The command-line flag without dashes (`ib-subscription`).
    pub flag: String,
    /// The variable the agent sets (`INPUT_IBSUBSCRIPTION`).
    pub env: String,
    pub help: String,
}

/// Every input, read off the command definition itself so nothing can drift from it.
pub fn input_specs() -> Vec<InputSpec> {
    #[derive(clap::Parser)]
    struct Probe {
        #[command(flatten)]
        inputs: TaskInputs,
    }
    Probe::command()
        .get_arguments()
        .filter_map(|arg| {
            Some(InputSpec {
                name: arg.get_id().to_string(),
                flag: arg.get_long()?.to_owned(),
                env: arg.get_env()?.to_str()?.to_owned(),
                help: arg.get_help().map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// What the binary assumes for an input left unset, as the agent would pass it; `None` means
/// no value (the input is required by some choice, or its absence means "Image Builder's
/// default"). `task.json` declares exactly these `defaultValue`s (tests/task_json.rs checks it,
/// and that setting each default explicitly builds the same plan as leaving it unset).
pub fn default_value(name: &str) -> Option<&'static str> {
    DEFAULTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| *value)
}

const DEFAULTS: &[(&str, &str)] = &[
    ("imageSource", "marketplace"),
    (
        "baseImagePubOfferSku",
        crate::plan::PUB_OFFER_SKU_PLACEHOLDER,
    ),
    ("baseImageVersion", "latest"),
    ("provisioner", "shell"),
    ("windowsUpdateProvisioner", "false"),
    ("buildTimeoutInMinutes", "240"),
    ("runElevated", "false"),
    ("runAsSystem", "false"),
    ("windowsRestart", "false"),
    ("excludeFromLatest", "false"),
    ("keepTemplateOnFailure", "true"),
    ("waitForTemplateDeletion", "false"),
    ("cleanupArtifactsOnImage", "false"),
    ("streamBuildLog", "true"),
    ("optimizeVmBoot", "false"),
    ("artifactDelivery", "auto"),
    ("continueDistributeOnFailure", "false"),
    ("sourceValidationOnly", "false"),
    ("onCustomizerError", "cleanup"),
    ("onValidationError", "cleanup"),
    ("rehearseBeforeBuild", "false"),
    ("environment", "AzureCloud"),
];

/// A bad input value, named as the user wrote it in YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input '{input}': {problem}")]
pub struct InputError {
    pub input: &'static str,
    pub problem: String,
}

impl InputError {
    pub fn new(input: &'static str, problem: impl Into<String>) -> Self {
        InputError {
            input,
            problem: problem.into(),
        }
    }
}

/// A set value, trimmed; `None` for unset or blank.
pub fn value(raw: &Option<String>) -> Option<&str> {
    raw.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A value the current choices require.
pub fn required<'a>(
    input: &'static str,
    raw: &'a Option<String>,
    expected: &str,
) -> Result<&'a str, InputError> {
    value(raw).ok_or_else(|| InputError::new(input, format!("is required; expected {expected}")))
}

/// `true`/`false` in any case, `default` when unset. Unlike task-lib, which reads anything but
/// "true" as false, a typo fails loudly instead of silently turning a feature off.
pub fn boolean(
    input: &'static str,
    raw: &Option<String>,
    default: bool,
) -> Result<bool, InputError> {
    match value(raw) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(InputError::new(
            input,
            format!("expected true or false, got '{v}'"),
        )),
    }
}

/// A whole number within `min..=max`, `None` when unset.
pub fn integer(
    input: &'static str,
    raw: &Option<String>,
    min: u32,
    max: u32,
) -> Result<Option<u32>, InputError> {
    let Some(v) = value(raw) else { return Ok(None) };
    match v.parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
        _ => Err(InputError::new(
            input,
            format!("expected a whole number from {min} to {max}, got '{v}'"),
        )),
    }
}

/// One of `choices` (compared case-insensitively, with aliases), as its canonical spelling.
pub fn choice<T: Copy>(
    input: &'static str,
    raw: &Option<String>,
    choices: &[(&str, T)],
) -> Result<Option<T>, InputError> {
    let Some(v) = value(raw) else { return Ok(None) };
    choices
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(v))
        .map(|(_, t)| Some(*t))
        .ok_or_else(|| {
            let mut names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            names.dedup();
            InputError::new(
                input,
                format!("expected one of {}, got '{v}'", names.join(", ")),
            )
        })
}

/// A list split on commas and line breaks, items trimmed, blanks dropped.
pub fn list(raw: &Option<String>) -> Vec<String> {
    value(raw)
        .map(|v| {
            v.split([',', '\n', '\r'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `key=value` pairs, one per line (`#` starts a comment line); keys must be unique.
pub fn key_values(
    input: &'static str,
    raw: &Option<String>,
) -> Result<Vec<(String, String)>, InputError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (n, line) in value(raw).unwrap_or_default().lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(InputError::new(
                input,
                format!("line {} '{line}' is not of the form key=value", n + 1),
            ));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(InputError::new(
                input,
                format!("line {} has an empty key", n + 1),
            ));
        }
        if pairs.iter().any(|(seen, _)| seen.eq_ignore_ascii_case(k)) {
            return Err(InputError::new(input, format!("key '{k}' is given twice")));
        }
        pairs.push((k.to_owned(), v.to_owned()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        inputs: TaskInputs,
    }

    #[test]
    fn every_input_is_a_flag_and_an_input_variable() {
        let specs = input_specs();
        assert_eq!(specs.len(), 56);
        for spec in &specs {
            assert_eq!(
                spec.env,
                format!("INPUT_{}", spec.name.to_ascii_uppercase())
            );
            assert_eq!(spec.flag, kebab(&spec.name), "{}", spec.name);
            assert!(!spec.help.is_empty(), "{} has no help", spec.name);
        }
        for original in [
            "ibSubscription",
            "ibAzureResourceGroup",
            "ibLocation",
            "managedIdentity",
            "vnetSubnetId",
            "imageSource",
            "baseImage",
            "baseImagePubOfferSku",
            "baseImageVersion",
            "customImageResourceId",
            "imageVersionId",
            "provisioner",
            "windowsUpdateProvisioner",
            "packagePath",
            "inlineScript",
            "storageAccountName",
            "distributeType",
            "imageIdForDistribute",
            "managedImageLocation",
            "galleryImageId",
            "replicationRegions",
            "vmSize",
        ] {
            assert!(
                specs.iter().any(|s| s.name == original),
                "{original} missing"
            );
        }
    }

    #[test]
    fn defaults_name_real_inputs() {
        let specs = input_specs();
        for (name, _) in DEFAULTS {
            assert!(specs.iter().any(|s| s.name == *name), "{name} is no input");
        }
        assert_eq!(default_value("baseImageVersion"), Some("latest"));
        assert_eq!(default_value("vmSize"), None);
    }

    /// `osDiskSizeGB` → `os-disk-size-gb`: runs of capitals stay one word.
    fn kebab(name: &str) -> String {
        let mut out = String::new();
        let chars: Vec<char> = name.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if c.is_ascii_uppercase() && i > 0 && !chars[i - 1].is_ascii_uppercase() {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        }
        out
    }

    #[test]
    fn flags_parse_into_raw_values() {
        let cli = Cli::try_parse_from([
            "aib-task",
            "--ib-subscription",
            "conn",
            "--inline-script",
            "echo one\necho two",
            "--os-disk-size-gb",
            "64",
        ])
        .unwrap();
        assert_eq!(cli.inputs.ib_subscription.as_deref(), Some("conn"));
        assert_eq!(
            cli.inputs.inline_script.as_deref(),
            Some("echo one\necho two")
        );
        assert_eq!(cli.inputs.os_disk_size_gb.as_deref(), Some("64"));
        assert_eq!(cli.inputs.vm_size, None);
    }

    #[test]
    fn booleans_are_strict_and_name_the_input() {
        let raw = |s: &str| Some(s.to_owned());
        assert!(boolean("runElevated", &raw("TRUE"), false).unwrap());
        assert!(!boolean("runElevated", &raw(" false "), true).unwrap());
        assert!(boolean("runElevated", &None, true).unwrap());
        assert!(boolean("runElevated", &raw(""), true).unwrap());
        let err = boolean("runElevated", &raw("yes"), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'runElevated': expected true or false, got 'yes'"
        );
    }

    #[test]
    fn integers_check_their_range() {
        let raw = |s: &str| Some(s.to_owned());
        assert_eq!(
            integer("buildTimeoutInMinutes", &raw("960"), 0, 960).unwrap(),
            Some(960)
        );
        assert_eq!(
            integer("buildTimeoutInMinutes", &None, 0, 960).unwrap(),
            None
        );
        for bad in ["961", "-1", "4h", "1.5"] {
            let err = integer("buildTimeoutInMinutes", &raw(bad), 0, 960).unwrap_err();
            assert!(err.to_string().contains("from 0 to 960"), "{err}");
            assert!(err.to_string().contains(bad));
        }
    }

    #[test]
    fn choices_are_case_insensitive_with_aliases() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum Src {
            Market,
            Managed,
        }
        let table = [
            ("marketplace", Src::Market),
            ("managedimage", Src::Managed),
            ("customimage", Src::Managed),
        ];
        let raw = |s: &str| Some(s.to_owned());
        assert_eq!(
            choice("imageSource", &raw("MarketPlace"), &table).unwrap(),
            Some(Src::Market)
        );
        assert_eq!(
            choice("imageSource", &raw("customImage"), &table).unwrap(),
            Some(Src::Managed)
        );
        let err = choice("imageSource", &raw("iso"), &table).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input 'imageSource': expected one of marketplace, managedimage, customimage, got 'iso'"
        );
    }

    #[test]
    fn lists_and_key_values() {
        assert_eq!(
            list(&Some(" westeurope, northeurope,,\neastus ".into())),
            ["westeurope", "northeurope", "eastus"]
        );
        assert!(list(&None).is_empty());
        let kv = key_values(
            "imageTags",
            &Some("team=platform\n# comment\n\nsha = abc=def\n".into()),
        )
        .unwrap();
        assert_eq!(
            kv,
            [
                ("team".into(), "platform".into()),
                ("sha".into(), "abc=def".into())
            ]
        );
        assert!(
            key_values("imageTags", &Some("novalue".into()))
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
        assert!(
            key_values("imageTags", &Some("a=1\nA=2".into()))
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(required("packagePath", &Some("  ".into()), "a folder").is_err());
    }
}
