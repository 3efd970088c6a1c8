//! The scenario an emulator runs: identities (tenants, service principals, the managed identity, the
//! Azure DevOps organisation that issues OIDC tokens), ARM resources (subscriptions, resource
//! groups, storage accounts, platform images), timings and failure knobs. `Config::default()` is a
//! working scenario with the fixed test identities in [`defaults`]; the binary reads the same type
//! from JSON (`--config`), where every field is optional and durations are in milliseconds (the
//! token lifetimes in seconds); `scenarios/` holds an example.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    azurite::Azurite, ca::CertificateAuthority, faults::Fault, image_templates::RunSubState,
};

/// The fixed identities of the default scenario. They are test values, not secrets.
pub mod defaults {
    pub const TENANT_ID: &str = "0e5c4a1d-7e57-4a1b-9000-000000000001";
    pub const SUBSCRIPTION_ID: &str = "0e5c4a1d-7e57-4a1b-9000-000000000002";
    pub const SUBSCRIPTION_NAME: &str = "aib-emulator test subscription";
    /// The service principal (app registration) of the AzureRM service connection.
    pub const CLIENT_ID: &str = "0e5c4a1d-7e57-4a1b-9000-000000000003";
    pub const CLIENT_OBJECT_ID: &str = "0e5c4a1d-7e57-4a1b-9000-000000000004";
    pub const CLIENT_SECRET: &str = "aibEmu8Q~fixed.test.secret-0123456789abcdefXYZ";
    pub const MANAGED_IDENTITY_CLIENT_ID: &str = "0e5c4a1d-7e57-4a1b-9000-000000000005";
    pub const MANAGED_IDENTITY_OBJECT_ID: &str = "0e5c4a1d-7e57-4a1b-9000-000000000006";
    pub const MANAGED_IDENTITY_RESOURCE_ID: &str = "/subscriptions/0e5c4a1d-7e57-4a1b-9000-000000000002/resourceGroups/aib-test-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib-test-identity";
    pub const RESOURCE_GROUP: &str = "aib-test-rg";
    pub const LOCATION: &str = "westus2";
    /// The artifact account the task uploads to (shared keys allowed).
    pub const STORAGE_ACCOUNT: &str = "aibartifacts01";
    pub const STORAGE_ACCOUNT_KEY: &str =
        "x66YYr3Jdbr05PjmRFRGnkGylsCmXnuK8EBCS+BX/JdUQeEMTzi0X1zliW0OZKWgHceDoaTWGqAvV5NVaAjfeQ==";
    /// An account with `allowSharedKeyAccess: false` whose `listKeys` is refused.
    pub const NO_KEY_STORAGE_ACCOUNT: &str = "aibnokeys01";
    pub const NO_KEY_STORAGE_ACCOUNT_KEY: &str =
        "K3WKU3mzTAwyp3Y+Wxe+BVWlKKEW44Aw9l0dF5bl3cwD7p31Jx9BodWVCh33VGv+Vv27gkP3/KfKsUwzRrVlKg==";
    /// The account Image Builder keeps in each staging group for packer logs.
    pub const STAGING_STORAGE_ACCOUNT: &str = "aibstaginglogs01";
    pub const STAGING_STORAGE_ACCOUNT_KEY: &str =
        "wGebQgHew2pPbvwx3Dv8UzDFfg6woBP1xg+LrrLaUgbL7S6avU96cGmXrt8Cd8DMrKQOmJuVFJqMJV2VyCaRnw==";
    pub const DEVOPS_ORGANIZATION: &str = "aib-test-org";
    pub const DEVOPS_ORGANIZATION_ID: &str = "0e5c4a1d-7e57-4a1b-9000-000000000007";
    pub const DEVOPS_PROJECT_ID: &str = "0e5c4a1d-7e57-4a1b-9000-000000000008";
    pub const DEVOPS_PROJECT: &str = "aib-test-project";
    pub const SERVICE_CONNECTION_ID: &str = "0e5c4a1d-7e57-4a1b-9000-000000000009";
    pub const SERVICE_CONNECTION_NAME: &str = "aib-test-connection";
    /// The job access token (`System.AccessToken`) the OIDC endpoint accepts.
    pub const JOB_ACCESS_TOKEN: &str = "aib-emulator-job-access-token-0123456789";
    /// A template tag whose value (a run sub-state such as `Customizing`) makes that run fail there.
    pub const FAIL_AT_TAG: &str = "aib-emulator-fail-at";
    /// A template tag whose value (a run sub-state) makes that run time out there.
    pub const TIMEOUT_AT_TAG: &str = "aib-emulator-timeout-at";
    /// A template tag whose value (milliseconds, e.g. `1500`) delays the build log's blob of that
    /// template's runs, as [`crate::Config::log_late`] does for every run.
    pub const LOG_LATE_TAG: &str = "aib-emulator-log-late";
    /// A template tag whose value `true` (or `false`) makes that template's build logs be
    /// rewritten shorter halfway, as [`crate::Config::log_rewrite`] does for every run.
    pub const LOG_REWRITE_TAG: &str = "aib-emulator-log-rewrite";
    pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
    /// GitHub Actions' OIDC issuer (GitHub's docs, "About security hardening with OpenID
    /// Connect": the `iss` claim of every token a workflow job asks for).
    pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
    /// The repository whose workflow the GitHub scenario runs (`owner/name`).
    pub const GITHUB_REPOSITORY: &str = "aib-test-owner/webapp";
    pub const GITHUB_REF: &str = "refs/heads/main";
    /// The runner's `ACTIONS_ID_TOKEN_REQUEST_TOKEN` the OIDC endpoint accepts.
    pub const GITHUB_REQUEST_TOKEN: &str = "aib-emulator-github-request-token-0123456789";
    /// The Azure Compute Gallery of the default scenario, in [`RESOURCE_GROUP`] at [`LOCATION`].
    pub const GALLERY: &str = "aibgallery";
    /// Its image definition, holding the versions of the template reference's `versioning`
    /// example (0.1.1 … 2.1.0).
    pub const GALLERY_IMAGE: &str = "ubuntu";
}

/// A service principal (app registration + enterprise app) in a tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServicePrincipalConfig {
    pub tenant_id: String,
    pub client_id: String,
    pub object_id: String,
    pub display_name: String,
    pub client_secrets: Vec<String>,
    /// PEM certificates registered for certificate sign-in (client assertion with `x5t`).
    pub certificates: Vec<String>,
    pub federated_credentials: Vec<FederatedCredential>,
}

impl Default for ServicePrincipalConfig {
    fn default() -> Self {
        Self {
            tenant_id: defaults::TENANT_ID.into(),
            client_id: defaults::CLIENT_ID.into(),
            object_id: defaults::CLIENT_OBJECT_ID.into(),
            display_name: "aib-test-service-principal".into(),
            client_secrets: vec![defaults::CLIENT_SECRET.into()],
            certificates: Vec::new(),
            federated_credentials: vec![
                FederatedCredential::default(),
                FederatedCredential::github(defaults::GITHUB_REPOSITORY, defaults::GITHUB_REF),
            ],
        }
    }
}

/// A federated identity credential of an app: which external token it exchanges.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct FederatedCredential {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

impl Default for FederatedCredential {
    fn default() -> Self {
        Self {
            name: "aib-test-federation".into(),
            issuer: format!(
                "https://vstoken.dev.azure.com/{}",
                defaults::DEVOPS_ORGANIZATION_ID
            ),
            subject: format!(
                "sc://{}/{}/{}",
                defaults::DEVOPS_ORGANIZATION,
                defaults::DEVOPS_PROJECT,
                defaults::SERVICE_CONNECTION_NAME
            ),
            audiences: vec![defaults::FEDERATED_AUDIENCE.into()],
        }
    }
}

impl FederatedCredential {
    /// A credential for the workflows of `repository` (`owner/name`) running on `git_ref`:
    /// issuer `https://token.actions.githubusercontent.com`, subject
    /// `repo:<owner>/<name>:ref:<ref>`, audience `api://AzureADTokenExchange`, as Entra's
    /// "Configure an app to trust an external identity provider" (workload identity federation)
    /// sets one up for GitHub Actions.
    pub fn github(repository: &str, git_ref: &str) -> FederatedCredential {
        FederatedCredential {
            name: "aib-test-github".into(),
            issuer: defaults::GITHUB_ISSUER.into(),
            subject: format!("repo:{repository}:ref:{git_ref}"),
            audiences: vec![defaults::FEDERATED_AUDIENCE.into()],
        }
    }
}

/// The GitHub Actions side of workload identity federation: the runner's OIDC token endpoint
/// (`ACTIONS_ID_TOKEN_REQUEST_URL`) for one workflow job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GitHubConfig {
    /// Request tokens (`ACTIONS_ID_TOKEN_REQUEST_TOKEN`) the endpoint accepts.
    pub request_tokens: Vec<String>,
    /// `owner/name` of the repository whose job asks.
    pub repository: String,
    /// The job's git ref, e.g. `refs/heads/main`.
    pub git_ref: String,
    /// The run id and attempt put in the claims.
    pub run_id: String,
    pub run_attempt: String,
    /// Lifetime of minted tokens.
    #[serde(with = "duration_secs")]
    pub oidc_token_lifetime: Duration,
}

impl Default for GitHubConfig {
    fn default() -> Self {
        Self {
            request_tokens: vec![defaults::GITHUB_REQUEST_TOKEN.into()],
            repository: defaults::GITHUB_REPOSITORY.into(),
            git_ref: defaults::GITHUB_REF.into(),
            run_id: "9876543210".into(),
            run_attempt: "1".into(),
            oidc_token_lifetime: Duration::from_secs(300),
        }
    }
}

impl GitHubConfig {
    /// The `sub` claim of a job on a branch: `repo:<owner>/<name>:ref:<ref>`.
    pub fn subject(&self) -> String {
        format!("repo:{}:ref:{}", self.repository, self.git_ref)
    }

    pub fn owner(&self) -> &str {
        self.repository.split('/').next().unwrap_or_default()
    }
}

/// The user-assigned managed identity IMDS hands tokens for (and templates name).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ManagedIdentityConfig {
    pub tenant_id: String,
    pub client_id: String,
    pub object_id: String,
    pub resource_id: String,
}

impl Default for ManagedIdentityConfig {
    fn default() -> Self {
        Self {
            tenant_id: defaults::TENANT_ID.into(),
            client_id: defaults::MANAGED_IDENTITY_CLIENT_ID.into(),
            object_id: defaults::MANAGED_IDENTITY_OBJECT_ID.into(),
            resource_id: defaults::MANAGED_IDENTITY_RESOURCE_ID.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscriptionConfig {
    pub subscription_id: String,
    pub display_name: String,
    pub tenant_id: String,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            subscription_id: defaults::SUBSCRIPTION_ID.into(),
            display_name: defaults::SUBSCRIPTION_NAME.into(),
            tenant_id: defaults::TENANT_ID.into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceGroupConfig {
    pub subscription_id: String,
    pub name: String,
    pub location: String,
}

impl Default for ResourceGroupConfig {
    fn default() -> Self {
        Self {
            subscription_id: defaults::SUBSCRIPTION_ID.into(),
            name: defaults::RESOURCE_GROUP.into(),
            location: defaults::LOCATION.into(),
        }
    }
}

/// A management lock on a resource group ("Lock your resources to protect your
/// infrastructure": `CanNotDelete` refuses deletes, `ReadOnly` refuses every write).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockConfig {
    pub subscription_id: String,
    pub resource_group: String,
    pub level: LockLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockLevel {
    CanNotDelete,
    ReadOnly,
}

/// A storage account as ARM lists it; its data plane is an Azurite account (`blob_endpoint`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageAccountConfig {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    /// `properties.primaryEndpoints.blob`, with a trailing slash.
    pub blob_endpoint: String,
    /// The account key (base64); `listKeys` answers it as key1.
    pub key: String,
    pub allow_shared_key_access: bool,
    /// `listKeys` answers 403 AuthorizationFailed.
    pub list_keys_forbidden: bool,
}

impl Default for StorageAccountConfig {
    fn default() -> Self {
        Self::new(defaults::STORAGE_ACCOUNT, defaults::STORAGE_ACCOUNT_KEY)
    }
}

impl StorageAccountConfig {
    /// An account in the default subscription and resource group, with a public-cloud style
    /// endpoint until [`Config::use_azurite`] points it at Azurite.
    pub fn new(name: &str, key: &str) -> Self {
        Self {
            subscription_id: defaults::SUBSCRIPTION_ID.into(),
            resource_group: defaults::RESOURCE_GROUP.into(),
            name: name.into(),
            location: defaults::LOCATION.into(),
            blob_endpoint: format!("https://{name}.blob.core.windows.net/"),
            key: key.into(),
            allow_shared_key_access: true,
            list_keys_forbidden: false,
        }
    }
}

/// One marketplace image (publisher/offer/sku) and its versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PlatformImageConfig {
    pub publisher: String,
    pub offer: String,
    pub sku: String,
    pub versions: Vec<String>,
    /// `Linux` or `Windows`.
    pub os_type: String,
    /// A marketplace image sold with a purchase plan: `(name, product, publisher)`, shown as
    /// `properties.plan` on each version, as Azure does.
    #[serde(default)]
    pub plan: Option<(String, String, String)>,
}

impl Default for PlatformImageConfig {
    fn default() -> Self {
        Self::new(
            "Canonical",
            "0001-com-ubuntu-server-jammy",
            "22_04-lts-gen2",
            &["22.04.202409250"],
            "Linux",
        )
    }
}

impl PlatformImageConfig {
    pub fn new(publisher: &str, offer: &str, sku: &str, versions: &[&str], os_type: &str) -> Self {
        Self {
            publisher: publisher.into(),
            offer: offer.into(),
            sku: sku.into(),
            versions: versions.iter().map(|v| v.to_string()).collect(),
            os_type: os_type.into(),
            plan: None,
        }
    }

    /// The same image, sold with a purchase plan.
    pub fn with_plan(mut self, name: &str, product: &str, publisher: &str) -> Self {
        self.plan = Some((name.into(), product.into(), publisher.into()));
        self
    }
}

/// An Azure Compute Gallery image definition a SharedImage distributor can name, with its
/// region and the versions it already holds. Definitions not listed here are accepted too, as
/// empty ones whose region is unknown (so no region rule applies to them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GalleryImageConfig {
    pub subscription_id: String,
    pub resource_group: String,
    pub gallery: String,
    /// The image definition's name.
    pub image: String,
    /// The gallery's region (an image version is created there first).
    pub location: String,
    pub versions: Vec<String>,
    /// The image definition's `osType`: `Linux` or `Windows`.
    pub os_type: String,
    /// `hyperVGeneration`: `V1` or `V2`.
    pub hyper_v_generation: String,
    /// `architecture`: `x64` or `Arm64`.
    pub architecture: String,
    /// `features` as `(name, value)`, e.g. `("SecurityType", "TrustedLaunch")`.
    pub features: Vec<(String, String)>,
}

impl Default for GalleryImageConfig {
    fn default() -> Self {
        Self {
            subscription_id: defaults::SUBSCRIPTION_ID.into(),
            resource_group: defaults::RESOURCE_GROUP.into(),
            gallery: defaults::GALLERY.into(),
            image: defaults::GALLERY_IMAGE.into(),
            location: defaults::LOCATION.into(),
            // "Create an Azure Image Builder Bicep or ARM template JSON template", versioning:
            // the gallery of the `major` examples.
            versions: [
                "0.1.1", "0.1.2", "1.0.0", "1.0.1", "1.1.0", "1.1.1", "1.2.0", "2.0.0", "2.0.1",
                "2.1.0",
            ]
            .iter()
            .map(|v| v.to_string())
            .collect(),
            os_type: "Linux".into(),
            hyper_v_generation: "V2".into(),
            architecture: "x64".into(),
            features: Vec::new(),
        }
    }
}

impl GalleryImageConfig {
    /// `/subscriptions/…/providers/Microsoft.Compute/galleries/{g}/images/{d}`.
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}/images/{}",
            self.subscription_id, self.resource_group, self.gallery, self.image
        )
    }
}

/// The Azure DevOps side of workload identity federation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DevOpsConfig {
    pub organization: String,
    /// The organisation GUID: the OIDC issuer is `https://vstoken.dev.azure.com/<id>`.
    pub organization_id: String,
    pub project_id: String,
    pub project_name: String,
    /// Job access tokens (`System.AccessToken`) accepted as bearer tokens by the OIDC endpoint.
    pub job_access_tokens: Vec<String>,
    pub service_connections: Vec<ServiceConnectionConfig>,
    /// Lifetime of minted OIDC tokens.
    #[serde(with = "duration_secs")]
    pub oidc_token_lifetime: Duration,
}

impl Default for DevOpsConfig {
    fn default() -> Self {
        Self {
            organization: defaults::DEVOPS_ORGANIZATION.into(),
            organization_id: defaults::DEVOPS_ORGANIZATION_ID.into(),
            project_id: defaults::DEVOPS_PROJECT_ID.into(),
            project_name: defaults::DEVOPS_PROJECT.into(),
            job_access_tokens: vec![defaults::JOB_ACCESS_TOKEN.into()],
            service_connections: vec![ServiceConnectionConfig::default()],
            oidc_token_lifetime: Duration::from_secs(600),
        }
    }
}

impl DevOpsConfig {
    pub fn issuer(&self) -> String {
        format!("https://vstoken.dev.azure.com/{}", self.organization_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceConnectionConfig {
    pub id: String,
    pub name: String,
}

impl Default for ServiceConnectionConfig {
    fn default() -> Self {
        Self {
            id: defaults::SERVICE_CONNECTION_ID.into(),
            name: defaults::SERVICE_CONNECTION_NAME.into(),
        }
    }
}

/// How long the simulated work takes. JSON: milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Timing {
    /// Time until a template's creation (and deletion) long-running operation is done.
    #[serde(with = "duration_ms")]
    pub lro: Duration,
    /// Polls of an operation that answer InProgress before its real status shows.
    pub lro_min_polls: u32,
    /// The `Retry-After` header (seconds) on 201/202 answers.
    pub retry_after_secs: u64,
    #[serde(with = "duration_ms")]
    pub queued: Duration,
    #[serde(with = "duration_ms")]
    pub building: Duration,
    #[serde(with = "duration_ms")]
    pub customizing: Duration,
    #[serde(with = "duration_ms")]
    pub optimizing: Duration,
    #[serde(with = "duration_ms")]
    pub validating: Duration,
    #[serde(with = "duration_ms")]
    pub distributing: Duration,
    /// Time spent in `Canceling` before `Canceled`.
    #[serde(with = "duration_ms")]
    pub canceling: Duration,
    /// In how many appends the build log's lines up to the end of the customizers are written,
    /// spread evenly over `customizing` (the first when Customizing starts); 0 counts as 1. See
    /// [`crate::build_log`].
    pub log_steps: u32,
}

impl Default for Timing {
    fn default() -> Self {
        let ms = Duration::from_millis;
        Self {
            lro: ms(300),
            lro_min_polls: 0,
            retry_after_secs: 1,
            queued: ms(200),
            building: ms(600),
            customizing: ms(700),
            optimizing: ms(300),
            validating: ms(300),
            distributing: ms(600),
            canceling: ms(300),
            log_steps: 8,
        }
    }
}

impl Timing {
    /// Everything ten times faster than the default (for tests that only need the outcome).
    pub fn fast() -> Self {
        let d = Self::default();
        let f = |x: Duration| x / 10;
        Self {
            lro: f(d.lro),
            queued: f(d.queued),
            building: f(d.building),
            customizing: f(d.customizing),
            optimizing: f(d.optimizing),
            validating: f(d.validating),
            distributing: f(d.distributing),
            canceling: f(d.canceling),
            ..d
        }
    }
}

/// Everything the emulator serves. See the module docs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Port for HTTPS on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Use this CA instead of generating one (so Azurite can be given a certificate first).
    #[serde(skip)]
    pub ca: Option<CertificateAuthority>,
    /// Where to write the CA certificate; a temporary file when unset.
    pub ca_out: Option<PathBuf>,
    /// Append every request as a JSON line here.
    pub request_log: Option<PathBuf>,
    /// Also serve IMDS on a plain-HTTP loopback port (real IMDS is HTTP).
    pub imds_http: bool,
    pub tenants: Vec<String>,
    pub service_principals: Vec<ServicePrincipalConfig>,
    pub managed_identity: ManagedIdentityConfig,
    pub subscriptions: Vec<SubscriptionConfig>,
    pub resource_groups: Vec<ResourceGroupConfig>,
    pub storage_accounts: Vec<StorageAccountConfig>,
    /// The account in every staging group that holds packer logs (its resource group and
    /// subscription fields are ignored: it lives in each template's `IT_…` group).
    pub staging_storage: StorageAccountConfig,
    pub platform_images: Vec<PlatformImageConfig>,
    /// Gallery image definitions with their region and existing versions.
    pub gallery_images: Vec<GalleryImageConfig>,
    pub devops: DevOpsConfig,
    pub github: GitHubConfig,
    /// Audiences ARM accepts; the emulator's own base URL is always added.
    pub arm_audiences: Vec<String>,
    /// Lifetime of access tokens (Entra and IMDS). JSON: seconds.
    #[serde(with = "duration_secs")]
    pub token_lifetime: Duration,
    pub timing: Timing,
    /// Make every run fail when it reaches this sub-state (per template: tag [`defaults::FAIL_AT_TAG`]).
    /// `Customizing` fails the last customizer, `Validating` the last in-VM validator (the run
    /// fails, and distributes only with `validate.continueDistributeOnFailure`); with
    /// `errorHandling.onCustomizerError` / `onValidationError` `abort` the build VM, its NIC and
    /// disk (and the VNet and NSG Image Builder made) stay in the staging group for ARM GETs.
    pub fail_at: Option<RunSubState>,
    /// Make every run exceed its build timeout at this sub-state: it fails with Image Builder's
    /// "context deadline exceeded" message, which names no log (per template: tag
    /// [`defaults::TIMEOUT_AT_TAG`]).
    pub timeout_at: Option<RunSubState>,
    /// Resource provider namespaces not registered in the subscriptions (e.g.
    /// `Microsoft.VirtualMachineImages`): every request for their resources answers 409
    /// `MissingSubscriptionRegistration`.
    pub unregistered_providers: Vec<String>,
    /// The build log's blob appears only this long after Customizing starts (or when the run
    /// ends, if that is sooner); what was due by then is appended at once. Per template: tag
    /// [`defaults::LOG_LATE_TAG`]. JSON: milliseconds.
    #[serde(with = "option_duration_ms")]
    pub log_late: Option<Duration>,
    /// Halfway through writing, the build log's blob is deleted and re-created shorter; see
    /// [`crate::build_log`] for the exact bytes. Per template: tag [`defaults::LOG_REWRITE_TAG`].
    pub log_rewrite: bool,
    /// Bytes of extra script output in every run's build log (about 100-byte lines), for the
    /// build log benchmark (benches/build_log.py); 0 adds none.
    pub log_filler: u64,
    /// Management locks on resource groups.
    pub locks: Vec<LockConfig>,
    /// Page size of storage account lists (exercises `nextLink`).
    pub storage_page_size: usize,
    /// Validate template bodies against the Image Builder swagger when the specs are present.
    pub swagger_validation: bool,
    /// Faults active from the start.
    pub faults: Vec<Fault>,
    /// The resources a build's preflight reads (see [`crate::scenario`]).
    #[serde(default)]
    pub scenario: crate::scenario::ScenarioConfig,
}

impl Default for Config {
    fn default() -> Self {
        let mut no_keys = StorageAccountConfig::new(
            defaults::NO_KEY_STORAGE_ACCOUNT,
            defaults::NO_KEY_STORAGE_ACCOUNT_KEY,
        );
        no_keys.allow_shared_key_access = false;
        no_keys.list_keys_forbidden = true;
        let mut staging = StorageAccountConfig::new(
            defaults::STAGING_STORAGE_ACCOUNT,
            defaults::STAGING_STORAGE_ACCOUNT_KEY,
        );
        staging.resource_group = String::new();
        Self {
            port: 0,
            ca: None,
            ca_out: None,
            request_log: None,
            imds_http: false,
            tenants: vec![defaults::TENANT_ID.into()],
            service_principals: vec![ServicePrincipalConfig::default()],
            managed_identity: ManagedIdentityConfig::default(),
            subscriptions: vec![SubscriptionConfig::default()],
            resource_groups: vec![ResourceGroupConfig::default()],
            storage_accounts: vec![StorageAccountConfig::default(), no_keys],
            staging_storage: staging,
            platform_images: vec![
                PlatformImageConfig::new(
                    "Canonical",
                    "0001-com-ubuntu-server-jammy",
                    "22_04-lts-gen2",
                    &["22.04.202409250", "22.04.202410020", "22.04.202411010"],
                    "Linux",
                ),
                PlatformImageConfig::new(
                    "Canonical",
                    "ubuntu-24_04-lts",
                    "server",
                    &["24.04.202410090", "24.04.202411030"],
                    "Linux",
                ),
                PlatformImageConfig::new(
                    "MicrosoftWindowsServer",
                    "WindowsServer",
                    "2022-datacenter-azure-edition",
                    &["20348.2762.241006", "20348.2849.241109"],
                    "Windows",
                ),
            ],
            gallery_images: [
                GalleryImageConfig::default(),
                crate::scenario::source_gallery_image(),
            ]
            .into_iter()
            .chain(crate::scenario::windows_gallery_images())
            .collect(),
            devops: DevOpsConfig::default(),
            github: GitHubConfig::default(),
            arm_audiences: vec![
                "https://management.azure.com/".into(),
                "https://management.core.windows.net/".into(),
            ],
            token_lifetime: Duration::from_secs(3599),
            timing: Timing::default(),
            fail_at: None,
            timeout_at: None,
            unregistered_providers: Vec::new(),
            log_late: None,
            log_rewrite: false,
            log_filler: 0,
            locks: Vec::new(),
            storage_page_size: 100,
            swagger_validation: true,
            faults: Vec::new(),
            scenario: Default::default(),
        }
    }
}

impl Config {
    /// Every storage account of the scenario (including the staging one) as `(name, key)`, for
    /// [`crate::azurite::AzuriteOptions::accounts`].
    pub fn azurite_accounts(&self) -> Vec<(String, String)> {
        self.storage_accounts
            .iter()
            .chain(std::iter::once(&self.staging_storage))
            .map(|a| (a.name.clone(), a.key.clone()))
            .collect()
    }

    /// Points every storage account's blob endpoint at the same-named account in `azurite`.
    pub fn use_azurite(&mut self, azurite: &Azurite) {
        for account in self
            .storage_accounts
            .iter_mut()
            .chain(std::iter::once(&mut self.staging_storage))
        {
            account.blob_endpoint = azurite.blob_endpoint(&account.name).to_string();
        }
    }

    pub fn with_azurite(mut self, azurite: &Azurite) -> Self {
        self.use_azurite(azurite);
        self
    }
}

/// Serde for a `Duration` as whole milliseconds.
pub mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Serde for an optional `Duration` as whole milliseconds (`null` for none).
pub mod option_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// Serde for a `Duration` as whole seconds.
pub mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_round_trips() {
        let text = serde_json::to_string(&Config::default()).unwrap();
        let back: Config = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }

    #[test]
    fn example_scenario_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/failing-build.json");
        let c: Config = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(c.fail_at, Some(RunSubState::Customizing));
        assert_eq!(c.faults.len(), 1);
        assert_eq!(c.timing.optimizing, Timing::default().optimizing);
    }

    #[test]
    fn partial_json_fills_defaults() {
        let c: Config = serde_json::from_str(
            r#"{"token_lifetime":5,"timing":{"building":50,"log_steps":3},"fail_at":"Customizing","log_late":1500,"log_rewrite":true}"#,
        )
        .unwrap();
        assert_eq!(c.token_lifetime, Duration::from_secs(5));
        assert_eq!(c.timing.building, Duration::from_millis(50));
        assert_eq!(c.timing.queued, Timing::default().queued);
        assert_eq!(c.timing.log_steps, 3);
        assert_eq!(c.fail_at, Some(RunSubState::Customizing));
        assert_eq!(c.log_late, Some(Duration::from_millis(1500)));
        assert!(c.log_rewrite);
        let d: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(
            (d.timing.log_steps, d.log_late, d.log_rewrite),
            (8, None, false)
        );
        assert_eq!(
            c.service_principals[0].client_secrets[0],
            defaults::CLIENT_SECRET
        );
    }
}
