//! Check 8: the build's own network ("Azure VM Image Builder networking options"). The subnet
//! (`vnetSubnetId`) must exist in the build's region; a build through a proxy VM (no container
//! instance) needs the subnet's private link service network policies disabled ("you must
//! disable private service policy on the subnet"); an isolated build's container instance subnet
//! (`containerInstanceSubnetId`) must exist and be delegated to
//! `Microsoft.ContainerInstance/containerGroups`.

use serde::Deserialize;

use super::Finding;
use super::read::{Read, Reader, denied, failed};
use crate::plan::normalize_region;
use crate::resource_id::ResourceId;

const NETWORK_API: &str = "2023-09-01";
const CHECK: &str = "network";
const ACI_DELEGATION: &str = "Microsoft.ContainerInstance/containerGroups";

#[derive(Deserialize)]
struct Subnet {
    #[serde(default)]
    properties: SubnetProperties,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubnetProperties {
    private_link_service_network_policies: Option<String>,
    #[serde(default)]
    delegations: Vec<Delegation>,
}

#[derive(Deserialize)]
struct Delegation {
    #[serde(default)]
    properties: DelegationProperties,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DelegationProperties {
    #[serde(default)]
    service_name: String,
}

#[derive(Deserialize)]
struct Network {
    #[serde(default)]
    location: String,
}

fn vnet_path(subnet: &ResourceId) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/virtualNetworks/{}",
        subnet.subscription, subnet.resource_group, subnet.names[0]
    )
}

async fn subnet(r: &Reader<'_>, input: &str, id: &ResourceId) -> Result<Subnet, Vec<Finding>> {
    match r
        .get::<Subnet>("reading a subnet", id.as_str(), NETWORK_API)
        .await
    {
        Read::Found(s) => Ok(s),
        Read::Missing => Err(vec![Finding::error(
            CHECK,
            format!(
                "the subnet {} of {input} does not exist (virtual network {})",
                id.name(),
                id.names[0]
            ),
            format!("create it, or correct {input}"),
        )]),
        Read::Denied { action } => Err(vec![denied(
            CHECK,
            &format!("subnet {}", id.name()),
            &action,
        )]),
        Read::Failed(why) => Err(vec![failed(CHECK, &format!("subnet {}", id.name()), &why)]),
    }
}

pub async fn check(r: &Reader<'_>) -> Vec<Finding> {
    let Some(build) = &r.plan.subnet else {
        return Vec::new();
    };
    let aci = r.plan.build_vm.container_instance_subnet.as_ref();
    let mut findings = Vec::new();
    let network_path = vnet_path(build);
    let (build_subnet, network, aci_subnet) = tokio::join!(
        subnet(r, "vnetSubnetId", build),
        r.get::<Network>("reading a virtual network", &network_path, NETWORK_API),
        async {
            match aci {
                Some(id) => Some(subnet(r, "containerInstanceSubnetId", id).await),
                None => None,
            }
        }
    );
    let mut problems = 0;
    match build_subnet {
        Err(mut f) => {
            problems += f
                .iter()
                .filter(|f| f.status == super::Status::Error)
                .count();
            findings.append(&mut f);
        }
        Ok(s) => {
            let policies = s
                .properties
                .private_link_service_network_policies
                .unwrap_or_default();
            if aci.is_none() && policies.eq_ignore_ascii_case("Enabled") {
                problems += 1;
                findings.push(Finding::error(
                    CHECK,
                    format!("subnet {} has private link service network policies enabled; Image Builder's proxy VM needs them disabled", build.name()),
                    format!(
                        "az network vnet subnet update --resource-group {} --vnet-name {} --name {} --private-link-service-network-policies Disabled (or use an isolated build with containerInstanceSubnetId)",
                        build.resource_group, build.names[0], build.name()
                    ),
                ));
            }
        }
    }
    if let Read::Found(n) = network
        && !n.location.is_empty()
        && normalize_region(&n.location) != r.plan.location
    {
        problems += 1;
        findings.push(Finding::error(
            CHECK,
            format!("virtual network {} is in {}, the build in {}: the build VM must be in the build's region", build.names[0], n.location, r.plan.location),
            format!("use a subnet in {}, or set ibLocation to {}", r.plan.location, normalize_region(&n.location)),
        ));
    }
    match aci_subnet {
        Some(Err(mut f)) => {
            problems += f
                .iter()
                .filter(|f| f.status == super::Status::Error)
                .count();
            findings.append(&mut f);
        }
        Some(Ok(s)) => {
            let delegated = s.properties.delegations.iter().any(|d| {
                d.properties
                    .service_name
                    .eq_ignore_ascii_case(ACI_DELEGATION)
            });
            if !delegated {
                let id = aci.expect("read only when set");
                problems += 1;
                findings.push(Finding::error(
                    CHECK,
                    format!("subnet {} (containerInstanceSubnetId) is not delegated to {ACI_DELEGATION}, which an isolated build's container instance needs", id.name()),
                    format!("az network vnet subnet update --resource-group {} --vnet-name {} --name {} --delegations {ACI_DELEGATION}", id.resource_group, id.names[0], id.name()),
                ));
            }
        }
        None => {}
    }
    if problems == 0 && findings.is_empty() {
        findings.push(Finding::ok(
            CHECK,
            format!(
                "subnet {}{} ready in {}",
                build.name(),
                aci.map(|a| format!(" and container instance subnet {}", a.name()))
                    .unwrap_or_default(),
                r.plan.location
            ),
        ));
    }
    findings
}
