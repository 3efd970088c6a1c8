//! The scenario knobs of the read-only ARM resources a build's preflight reads
//! ([`crate::preflight`]): resource providers in the `Registering` state, role assignments (and
//! refusing to list them), marketplace terms, managed images, extra user-assigned identities,
//! virtual networks and subnets, VM sizes (resource SKUs) with their restrictions, storage
//! account network rules, extra resources in resource groups, and a per-request latency.
//! `Config.scenario` holds it; JSON: every field optional. The default is a scenario where every
//! check passes for the task's end-to-end tests (see each default).

use serde::{Deserialize, Serialize};

use crate::config::{GalleryImageConfig, defaults};

/// Built-in role definition ids ("Azure built-in roles").
pub mod roles {
    pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
    pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    pub const MANAGED_IDENTITY_OPERATOR: &str = "f1a07417-d97a-45cb-824c-7a7467783830";
    pub const STORAGE_BLOB_DATA_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
}

/// The source gallery image of the task's end-to-end tests (`IMAGEVERSIONID`
/// `…/galleries/gallery1/images/base/versions/1.0.3`).
pub const SOURCE_GALLERY: &str = "gallery1";
pub const SOURCE_GALLERY_IMAGE: &str = "base";
/// The source managed image of the task's end-to-end tests (`CUSTOMIMAGERESOURCEID`).
pub const SOURCE_MANAGED_IMAGE: &str = "golden-base";
/// Their Windows counterparts, for the Windows builds of the same tests: a managed image, a
/// source gallery image (`gallery1/base-windows`, versions like `base`) and a gallery image
/// definition to distribute to (`aibgallery/windows`).
pub const SOURCE_MANAGED_IMAGE_WINDOWS: &str = "golden-base-windows";
pub const SOURCE_GALLERY_IMAGE_WINDOWS: &str = "base-windows";
pub const GALLERY_IMAGE_WINDOWS: &str = "windows";
/// The virtual network of the default scenario (in [`defaults::RESOURCE_GROUP`], at
/// [`defaults::LOCATION`]) and one in another region.
pub const VNET: &str = "vnet";
pub const OTHER_REGION_VNET: &str = "vnet-eastus";
pub const OTHER_REGION: &str = "eastus";
/// A VM size restricted (`NotAvailableForSubscription`) in [`defaults::LOCATION`].
pub const RESTRICTED_VM_SIZE: &str = "Standard_M8ms";

/// A role assignment: `principal_id` holds `role_definition` (a role definition GUID such as
/// [`roles::CONTRIBUTOR`]) at `scope` (`/subscriptions/…[/resourceGroups/…[/providers/…]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RoleAssignmentConfig {
    pub principal_id: String,
    pub role_definition: String,
    pub scope: String,
    /// `ServicePrincipal` (managed identities and apps), `User` or `Group`.
    pub principal_type: String,
}

impl Default for RoleAssignmentConfig {
    fn default() -> Self {
        Self {
            principal_id: defaults::MANAGED_IDENTITY_OBJECT_ID.into(),
            role_definition: roles::CONTRIBUTOR.into(),
            scope: format!(
                "/subscriptions/{}/resourceGroups/{}",
                defaults::SUBSCRIPTION_ID,
                defaults::RESOURCE_GROUP
            ),
            principal_type: "ServicePrincipal".into(),
        }
    }
}

/// Marketplace terms of one plan (`az vm image terms show`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MarketplaceTermsConfig {
    pub publisher: String,
    /// The offer (the terms' `product`).
    pub offer: String,
    pub plan: String,
    pub accepted: bool,
}

/// A managed image (`Microsoft.Compute/images`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ManagedImageConfig {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    /// `Linux` or `Windows`.
    pub os_type: String,
    /// `Generalized` or `Specialized`.
    pub os_state: String,
    /// `V1` or `V2`.
    pub hyper_v_generation: String,
}

impl Default for ManagedImageConfig {
    fn default() -> Self {
        Self {
            subscription_id: defaults::SUBSCRIPTION_ID.into(),
            resource_group: defaults::RESOURCE_GROUP.into(),
            name: SOURCE_MANAGED_IMAGE.into(),
            location: defaults::LOCATION.into(),
            os_type: "Linux".into(),
            os_state: "Generalized".into(),
            hyper_v_generation: "V2".into(),
        }
    }
}

/// A user-assigned identity besides `Config.managed_identity` (e.g. one for the build VM).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentityConfig {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub principal_id: String,
    pub client_id: String,
}

impl IdentityConfig {
    pub fn new(name: &str, principal_id: &str, client_id: &str) -> Self {
        Self {
            subscription_id: defaults::SUBSCRIPTION_ID.into(),
            resource_group: defaults::RESOURCE_GROUP.into(),
            name: name.into(),
            location: defaults::LOCATION.into(),
            principal_id: principal_id.into(),
            client_id: client_id.into(),
        }
    }
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self::new(
            "build-vm",
            "0e5c4a1d-7e57-4a1b-9000-000000000010",
            "0e5c4a1d-7e57-4a1b-9000-000000000011",
        )
    }
}

/// A subnet of a [`VirtualNetworkConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SubnetConfig {
    pub name: String,
    pub address_prefix: String,
    /// `privateLinkServiceNetworkPolicies`: `Enabled` or `Disabled`.
    pub private_link_service_network_policies: String,
    /// `privateEndpointNetworkPolicies`: `Enabled` or `Disabled`.
    pub private_endpoint_network_policies: String,
    /// Service names the subnet is delegated to, e.g. `Microsoft.ContainerInstance/containerGroups`.
    pub delegations: Vec<String>,
    /// The network security group's name (same resource group as the network), if any.
    pub network_security_group: Option<String>,
}

impl Default for SubnetConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            address_prefix: "10.0.0.0/24".into(),
            private_link_service_network_policies: "Disabled".into(),
            private_endpoint_network_policies: "Disabled".into(),
            delegations: Vec::new(),
            network_security_group: None,
        }
    }
}

impl SubnetConfig {
    fn new(name: &str, prefix: &str) -> Self {
        Self {
            name: name.into(),
            address_prefix: prefix.into(),
            ..Self::default()
        }
    }
}

/// A virtual network and its subnets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct VirtualNetworkConfig {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub address_prefixes: Vec<String>,
    pub subnets: Vec<SubnetConfig>,
}

impl Default for VirtualNetworkConfig {
    fn default() -> Self {
        Self {
            subscription_id: defaults::SUBSCRIPTION_ID.into(),
            resource_group: defaults::RESOURCE_GROUP.into(),
            name: VNET.into(),
            location: defaults::LOCATION.into(),
            address_prefixes: vec!["10.0.0.0/16".into()],
            subnets: Vec::new(),
        }
    }
}

/// A VM size as Compute's resource SKUs list it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct VmSkuConfig {
    pub name: String,
    /// e.g. `standardDSv3Family`.
    pub family: String,
    pub vcpus: u32,
    pub memory_gb: f64,
    /// `HyperVGenerations`: `V1`, `V2` or `V1,V2`.
    pub hyper_v_generations: String,
    /// `CpuArchitectureType`: `x64` or `Arm64`.
    pub architecture: String,
    /// Trusted launch is not supported (capability `TrustedLaunchDisabled` `True`).
    pub trusted_launch_disabled: bool,
    /// `ConfidentialComputingType` (e.g. `SNP`), for confidential VM sizes.
    pub confidential_computing: Option<String>,
    pub accelerated_networking: bool,
    pub locations: Vec<String>,
    /// Locations where the size is `NotAvailableForSubscription`.
    pub restricted_locations: Vec<String>,
}

impl Default for VmSkuConfig {
    fn default() -> Self {
        Self {
            name: "Standard_D2s_v3".into(),
            family: "standardDSv3Family".into(),
            vcpus: 2,
            memory_gb: 8.0,
            hyper_v_generations: "V1,V2".into(),
            architecture: "x64".into(),
            trusted_launch_disabled: false,
            confidential_computing: None,
            accelerated_networking: true,
            locations: vec![defaults::LOCATION.into(), OTHER_REGION.into()],
            restricted_locations: Vec::new(),
        }
    }
}

impl VmSkuConfig {
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: &str,
        family: &str,
        vcpus: u32,
        memory_gb: f64,
        generations: &str,
        architecture: &str,
    ) -> Self {
        Self {
            name: name.into(),
            family: family.into(),
            vcpus,
            memory_gb,
            hyper_v_generations: generations.into(),
            architecture: architecture.into(),
            ..Self::default()
        }
    }
}

/// Network rules of a storage account (by name), as `properties.networkAcls` and
/// `publicNetworkAccess` show them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageNetworkConfig {
    pub account: String,
    /// `Allow` or `Deny`.
    pub default_action: String,
    /// e.g. `AzureServices`, `None`, `Logging, Metrics, AzureServices`.
    pub bypass: String,
    /// Subnet resource ids allowed.
    pub virtual_network_rules: Vec<String>,
    /// IP addresses or CIDR ranges allowed.
    pub ip_rules: Vec<String>,
    /// `Enabled`, `Disabled` or `SecuredByPerimeter`.
    pub public_network_access: String,
}

impl Default for StorageNetworkConfig {
    fn default() -> Self {
        Self {
            account: String::new(),
            default_action: "Allow".into(),
            bypass: "AzureServices".into(),
            virtual_network_rules: Vec::new(),
            ip_rules: Vec::new(),
            public_network_access: "Enabled".into(),
        }
    }
}

/// A resource listed in a resource group (`…/resources`) besides those the emulator models,
/// e.g. to make a would-be staging group non-empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupResourceConfig {
    pub subscription_id: String,
    pub resource_group: String,
    /// e.g. `Microsoft.Compute/disks`.
    pub resource_type: String,
    pub name: String,
    pub location: String,
}

impl Default for GroupResourceConfig {
    fn default() -> Self {
        Self {
            subscription_id: defaults::SUBSCRIPTION_ID.into(),
            resource_group: defaults::RESOURCE_GROUP.into(),
            resource_type: "Microsoft.Compute/disks".into(),
            name: "leftover-disk".into(),
            location: defaults::LOCATION.into(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ScenarioConfig {
    /// Milliseconds every ARM request waits before it is answered (0: none).
    pub latency_ms: u64,
    /// Namespaces whose registration state is `Registering` (their resources are served).
    pub registering_providers: Vec<String>,
    /// Role assignments. Default: the template identity holds Contributor on the default
    /// resource group; the service connection's principal holds Contributor on the subscription.
    pub role_assignments: Vec<RoleAssignmentConfig>,
    /// Reading role assignments answers 403 AuthorizationFailed (the caller lacks
    /// `Microsoft.Authorization/roleAssignments/read`).
    pub role_assignments_forbidden: bool,
    /// Marketplace terms of plans; plans not listed are accepted when
    /// `marketplace_terms_accepted_by_default` (default true).
    pub marketplace_terms: Vec<MarketplaceTermsConfig>,
    pub marketplace_terms_accepted_by_default: bool,
    /// Managed images. Default: `golden-base` (Linux, V2, Generalized) in the default group.
    pub managed_images: Vec<ManagedImageConfig>,
    /// User-assigned identities besides `Config.managed_identity`. Default: `build-vm` and
    /// `build-vm-id` in the default group (the build VM identities of the task's tests).
    pub identities: Vec<IdentityConfig>,
    /// Virtual networks. Default: `vnet` at the default location with subnets `build`
    /// (policies disabled, an NSG), `aci` (delegated to Azure Container Instances) and
    /// `build-policies-on` (`privateLinkServiceNetworkPolicies` Enabled); `vnet-eastus` in eastus
    /// with subnet `build`.
    pub virtual_networks: Vec<VirtualNetworkConfig>,
    /// VM sizes. Default: a handful at the default location and eastus, with
    /// [`RESTRICTED_VM_SIZE`] restricted at the default location.
    pub vm_skus: Vec<VmSkuConfig>,
    /// Storage account network rules by account name (accounts not listed: public, Allow).
    pub storage_network: Vec<StorageNetworkConfig>,
    /// Extra resources listed in resource groups.
    pub group_resources: Vec<GroupResourceConfig>,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        let aci = SubnetConfig {
            delegations: vec!["Microsoft.ContainerInstance/containerGroups".into()],
            ..SubnetConfig::new("aci", "10.0.2.0/24")
        };
        let build = SubnetConfig {
            network_security_group: Some("vnet-build-nsg".into()),
            ..SubnetConfig::new("build", "10.0.1.0/24")
        };
        let policies_on = SubnetConfig {
            private_link_service_network_policies: "Enabled".into(),
            private_endpoint_network_policies: "Enabled".into(),
            ..SubnetConfig::new("build-policies-on", "10.0.3.0/24")
        };
        let mut restricted = VmSkuConfig::new(
            RESTRICTED_VM_SIZE,
            "standardMSFamily",
            8,
            218.75,
            "V1,V2",
            "x64",
        );
        restricted.restricted_locations = vec![defaults::LOCATION.into()];
        let mut arm = VmSkuConfig::new(
            "Standard_D2ps_v5",
            "standardDPSv5Family",
            2,
            8.0,
            "V2",
            "Arm64",
        );
        arm.trusted_launch_disabled = true;
        let mut confidential = VmSkuConfig::new(
            "Standard_DC2as_v5",
            "standardDCASv5Family",
            2,
            8.0,
            "V2",
            "x64",
        );
        confidential.confidential_computing = Some("SNP".into());
        let mut old = VmSkuConfig::new("Standard_A2_v2", "standardAv2Family", 2, 4.0, "V1", "x64");
        old.trusted_launch_disabled = true;
        old.accelerated_networking = false;
        Self {
            latency_ms: 0,
            registering_providers: Vec::new(),
            role_assignments: vec![
                RoleAssignmentConfig::default(),
                RoleAssignmentConfig {
                    principal_id: defaults::CLIENT_OBJECT_ID.into(),
                    scope: format!("/subscriptions/{}", defaults::SUBSCRIPTION_ID),
                    ..RoleAssignmentConfig::default()
                },
            ],
            role_assignments_forbidden: false,
            marketplace_terms: Vec::new(),
            marketplace_terms_accepted_by_default: true,
            managed_images: vec![
                ManagedImageConfig::default(),
                ManagedImageConfig {
                    name: SOURCE_MANAGED_IMAGE_WINDOWS.into(),
                    os_type: "Windows".into(),
                    ..ManagedImageConfig::default()
                },
            ],
            identities: vec![
                IdentityConfig::default(),
                IdentityConfig::new(
                    "build-vm-id",
                    "0e5c4a1d-7e57-4a1b-9000-000000000012",
                    "0e5c4a1d-7e57-4a1b-9000-000000000013",
                ),
            ],
            virtual_networks: vec![
                VirtualNetworkConfig {
                    subnets: vec![build, aci, policies_on],
                    ..VirtualNetworkConfig::default()
                },
                VirtualNetworkConfig {
                    name: OTHER_REGION_VNET.into(),
                    location: OTHER_REGION.into(),
                    address_prefixes: vec!["10.1.0.0/16".into()],
                    subnets: vec![SubnetConfig::new("build", "10.1.1.0/24")],
                    ..VirtualNetworkConfig::default()
                },
            ],
            vm_skus: vec![
                VmSkuConfig::default(),
                VmSkuConfig::new(
                    "Standard_D4s_v3",
                    "standardDSv3Family",
                    4,
                    16.0,
                    "V1,V2",
                    "x64",
                ),
                VmSkuConfig::new(
                    "Standard_D2ds_v5",
                    "standardDDSv5Family",
                    2,
                    8.0,
                    "V1,V2",
                    "x64",
                ),
                old,
                arm,
                confidential,
                restricted,
            ],
            storage_network: Vec::new(),
            group_resources: Vec::new(),
        }
    }
}

/// The source image definition of the task's tests: `gallery1/images/base` in the default group
/// and location (Linux, V2, x64, trusted launch supported), holding version 1.0.3.
/// The Windows source gallery image and Windows target definition (see
/// [`SOURCE_GALLERY_IMAGE_WINDOWS`], [`GALLERY_IMAGE_WINDOWS`]).
pub fn windows_gallery_images() -> Vec<GalleryImageConfig> {
    vec![
        GalleryImageConfig {
            image: SOURCE_GALLERY_IMAGE_WINDOWS.into(),
            os_type: "Windows".into(),
            ..source_gallery_image()
        },
        GalleryImageConfig {
            image: GALLERY_IMAGE_WINDOWS.into(),
            os_type: "Windows".into(),
            ..GalleryImageConfig::default()
        },
    ]
}

pub fn source_gallery_image() -> GalleryImageConfig {
    GalleryImageConfig {
        gallery: SOURCE_GALLERY.into(),
        image: SOURCE_GALLERY_IMAGE.into(),
        versions: vec!["1.0.1".into(), "1.0.2".into(), "1.0.3".into()],
        features: vec![("SecurityType".into(), "TrustedLaunchSupported".into())],
        ..GalleryImageConfig::default()
    }
}
