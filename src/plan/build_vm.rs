//! The build VM beyond its size: the identities it carries (`buildVmIdentities` →
//! `vmProfile.userAssignedIdentities`) and the isolated network it is reached through
//! (`containerInstanceSubnetId`, `proxyVmSize` → `vmProfile.vnetConfig`), with Image Builder's
//! rules on how they combine checked before anything is created.

use crate::inputs::{self, InputError, TaskInputs};
use crate::resource_id::{self, Kind, ResourceId};

/// What the inputs of this module became.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildVm {
    /// User-assigned identities on the build (and validation) VM.
    pub identities: Vec<ResourceId>,
    /// The subnet of the Azure Container Instance of an isolated build.
    pub container_instance_subnet: Option<ResourceId>,
    /// The proxy VM's size (builds in a subnet without a container instance).
    pub proxy_vm_size: Option<String>,
}

/// A VM size as Azure spells it (`Standard_D2s_v3`).
pub fn vm_size(value: &str) -> bool {
    !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads this module's inputs; `subnet` is the already-read `vnetSubnetId`. Every problem is
/// reported.
pub fn read(raw: &TaskInputs, subnet: Option<&ResourceId>) -> Result<BuildVm, Vec<InputError>> {
    let mut errors = Vec::new();
    let mut identities: Vec<ResourceId> = Vec::new();
    for item in inputs::list(&raw.build_vm_identities) {
        match resource_id::parse(Kind::UserAssignedIdentity, &item) {
            Ok(id)
                if identities
                    .iter()
                    .any(|i| i.as_str().eq_ignore_ascii_case(id.as_str())) =>
            {
                errors.push(InputError::new(
                    "buildVmIdentities",
                    format!("{id} is listed twice"),
                ))
            }
            Ok(id) => identities.push(id),
            Err(e) => errors.push(InputError::new("buildVmIdentities", e.to_string())),
        }
    }

    let vnet_set = inputs::value(&raw.vnet_subnet_id).is_some();
    let container_instance_subnet =
        inputs::value(&raw.container_instance_subnet_id).and_then(|v| {
            match resource_id::parse(Kind::Subnet, v) {
                Ok(id) => Some(id),
                Err(e) => {
                    errors.push(InputError::new("containerInstanceSubnetId", e.to_string()));
                    None
                }
            }
        });
    if let Some(aci) = &container_instance_subnet {
        // Template reference, `vnetConfig.containerInstanceSubnetId`: "This field may be
        // specified only if `subnetId` is also specified and must be on the same Virtual Network
        // as the subnet specified in `subnetId`"; the networking guide wants a subnet of its own.
        match subnet {
            None if !vnet_set => errors.push(InputError::new(
                "containerInstanceSubnetId",
                "needs vnetSubnetId: an isolated build runs the build VM in vnetSubnetId and the container instance in this subnet of the same virtual network",
            )),
            None => {} // vnetSubnetId is bad itself and already reported
            Some(build) => {
                let network = |id: &ResourceId| {
                    (
                        id.subscription.to_ascii_lowercase(),
                        id.resource_group.to_ascii_lowercase(),
                        id.names[0].to_ascii_lowercase(),
                    )
                };
                if network(aci) != network(build) {
                    errors.push(InputError::new(
                        "containerInstanceSubnetId",
                        format!(
                            "must be a subnet of vnetSubnetId's virtual network (Image Builder's rule): vnetSubnetId is in /subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/virtualNetworks/{}, this subnet in /subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/virtualNetworks/{}",
                            build.subscription, build.resource_group, build.names[0],
                            aci.subscription, aci.resource_group, aci.names[0]
                        ),
                    ));
                } else if aci.as_str().eq_ignore_ascii_case(build.as_str()) {
                    errors.push(InputError::new(
                        "containerInstanceSubnetId",
                        "must be another subnet than vnetSubnetId (delegated to Microsoft.ContainerInstance/containerGroups)",
                    ));
                }
            }
        }
    }

    let proxy_vm_size = inputs::value(&raw.proxy_vm_size).and_then(|v| {
        if !vm_size(v) {
            errors.push(InputError::new(
                "proxyVmSize",
                format!("expected a VM size such as Standard_A2_v2, got '{v}'"),
            ));
            None
        } else if container_instance_subnet.is_some() {
            // Template reference, `vnetConfig.proxyVmSize`: "This must not be specified if
            // `containerInstanceSubnetId` is specified because no proxy virtual machine is
            // deployed in that case."
            errors.push(InputError::new(
                "proxyVmSize",
                "cannot be used with containerInstanceSubnetId: an isolated build deploys no proxy VM; leave proxyVmSize empty",
            ));
            None
        } else if !vnet_set {
            errors.push(InputError::new(
                "proxyVmSize",
                "needs vnetSubnetId: the proxy VM exists only for builds in your own subnet",
            ));
            None
        } else {
            Some(v.to_owned())
        }
    });

    if errors.is_empty() {
        Ok(BuildVm {
            identities,
            container_instance_subnet,
            proxy_vm_size,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "0e5c4a1d-7e57-4a1b-9000-000000000002";

    fn subnet(vnet: &str, name: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{name}"
        )
    }

    fn identity(name: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        )
    }

    fn read_with(f: impl FnOnce(&mut TaskInputs)) -> Result<BuildVm, Vec<String>> {
        let mut raw = TaskInputs::default();
        f(&mut raw);
        let vnet = inputs::value(&raw.vnet_subnet_id)
            .map(|v| resource_id::parse(Kind::Subnet, v).unwrap());
        read(&raw, vnet.as_ref()).map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn identities_are_read_from_commas_and_lines() {
        let vm = read_with(|r| {
            r.build_vm_identities = Some(format!("{}, \n{}\n", identity("a"), identity("b")))
        })
        .unwrap();
        assert_eq!(vm.identities.len(), 2);
        assert_eq!(vm.identities[1].name(), "b");
    }

    #[test]
    fn bad_or_repeated_identities_are_named() {
        let e = read_with(|r| {
            r.build_vm_identities = Some(format!(
                "{}\n/subscriptions/x/identities/a\n{}",
                identity("a"),
                identity("a")
                    .to_uppercase()
                    .replace("/SUBSCRIPTIONS/", "/subscriptions/")
            ))
        })
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("'buildVmIdentities'") && e[0].contains("userAssignedIdentities"));
        assert!(e[1].contains("listed twice"));
    }

    #[test]
    fn an_isolated_build_in_one_network() {
        let vm = read_with(|r| {
            r.vnet_subnet_id = Some(subnet("vnet", "build"));
            r.container_instance_subnet_id = Some(subnet("vnet", "aci"));
        })
        .unwrap();
        assert_eq!(vm.container_instance_subnet.unwrap().name(), "aci");
        let vm = read_with(|r| {
            r.vnet_subnet_id = Some(subnet("vnet", "build"));
            r.proxy_vm_size = Some("Standard_A2_v2".into());
        })
        .unwrap();
        assert_eq!(vm.proxy_vm_size.as_deref(), Some("Standard_A2_v2"));
    }

    #[test]
    fn network_rules_are_checked() {
        let e = read_with(|r| r.container_instance_subnet_id = Some(subnet("vnet", "aci")))
            .unwrap_err();
        assert!(
            e[0].contains("'containerInstanceSubnetId'") && e[0].contains("needs vnetSubnetId")
        );
        let e = read_with(|r| {
            r.vnet_subnet_id = Some(subnet("vnet", "build"));
            r.container_instance_subnet_id = Some(subnet("other", "aci"));
        })
        .unwrap_err();
        assert!(
            e[0].contains("virtualNetworks/vnet,") && e[0].contains("virtualNetworks/other"),
            "{e:?}"
        );
        let e = read_with(|r| {
            r.vnet_subnet_id = Some(subnet("vnet", "build"));
            r.container_instance_subnet_id = Some(subnet("vnet", "build"));
        })
        .unwrap_err();
        assert!(e[0].contains("another subnet"), "{e:?}");
        let e = read_with(|r| {
            r.vnet_subnet_id = Some(subnet("vnet", "build"));
            r.container_instance_subnet_id = Some(subnet("vnet", "aci"));
            r.proxy_vm_size = Some("Standard_A2_v2".into());
        })
        .unwrap_err();
        assert!(e[0].contains("'proxyVmSize'") && e[0].contains("cannot be used"));
        let e = read_with(|r| r.proxy_vm_size = Some("Standard_A2_v2".into())).unwrap_err();
        assert!(e[0].contains("needs vnetSubnetId"));
        let e = read_with(|r| {
            r.vnet_subnet_id = Some(subnet("vnet", "build"));
            r.proxy_vm_size = Some("Standard A2".into());
        })
        .unwrap_err();
        assert!(e[0].contains("expected a VM size"));
        let e = read_with(|r| r.container_instance_subnet_id = Some("aci".into())).unwrap_err();
        assert!(e[0].contains("'containerInstanceSubnetId'") && e[0].contains("subnets"));
    }
}
