//! `Microsoft.Network` reads of the scenario's virtual networks (`scenario.virtual_networks`):
//! `GET …/virtualNetworks/{vnet}` and `…/virtualNetworks/{vnet}/subnets/{subnet}`, shaped like
//! REST API "Virtual Networks - Get" and "Subnets - Get" (api-version 2023-09-01).

use axum::{http::StatusCode, response::Response};
use serde_json::{Value, json};

use crate::{
    arm::{error, not_found, ok},
    scenario::{SubnetConfig, VirtualNetworkConfig},
    state::State,
};

pub fn find_vnet<'a>(
    s: &'a State,
    sub: &str,
    rg: &str,
    name: &str,
) -> Option<&'a VirtualNetworkConfig> {
    s.config.scenario.virtual_networks.iter().find(|v| {
        v.subscription_id.eq_ignore_ascii_case(sub)
            && v.resource_group.eq_ignore_ascii_case(rg)
            && v.name.eq_ignore_ascii_case(name)
    })
}

pub fn vnet_id(v: &VirtualNetworkConfig) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/virtualNetworks/{}",
        v.subscription_id, v.resource_group, v.name
    )
}

/// A subnet of the scenario by its resource id, with its network.
pub fn find_subnet<'a>(
    s: &'a State,
    subnet_id: &str,
) -> Option<(&'a VirtualNetworkConfig, &'a SubnetConfig)> {
    s.config.scenario.virtual_networks.iter().find_map(|v| {
        v.subnets
            .iter()
            .find(|n| format!("{}/subnets/{}", vnet_id(v), n.name).eq_ignore_ascii_case(subnet_id))
            .map(|n| (v, n))
    })
}

fn etag(id: &str) -> String {
    let h = id.bytes().fold(0xcbf29ce484222325_u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    format!(
        "W/\"{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}\"",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 4) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

fn subnet_body(v: &VirtualNetworkConfig, n: &SubnetConfig) -> Value {
    let id = format!("{}/subnets/{}", vnet_id(v), n.name);
    let delegations: Vec<Value> = n
        .delegations
        .iter()
        .enumerate()
        .map(|(i, service)| {
            // "Subnets - Get" example with a delegation; ACI's delegation carries the
            // `virtualNetworks/subnets/action` action ("Deploy container instances into an Azure
            // virtual network").
            json!({
                "name": format!("delegation{i}"),
                "id": format!("{id}/delegations/delegation{i}"),
                "etag": etag(&format!("{id}/{i}")),
                "properties": {
                    "provisioningState": "Succeeded",
                    "serviceName": service,
                    "actions": ["Microsoft.Network/virtualNetworks/subnets/action"],
                },
                "type": "Microsoft.Network/virtualNetworks/subnets/delegations",
            })
        })
        .collect();
    let mut props = json!({
        "provisioningState": "Succeeded",
        "addressPrefix": n.address_prefix,
        "ipConfigurations": [],
        "delegations": delegations,
        "privateEndpointNetworkPolicies": n.private_endpoint_network_policies,
        "privateLinkServiceNetworkPolicies": n.private_link_service_network_policies,
    });
    if let Some(nsg) = &n.network_security_group {
        props["networkSecurityGroup"] = json!({"id": format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/networkSecurityGroups/{nsg}",
            v.subscription_id, v.resource_group
        )});
    }
    json!({
        "name": n.name,
        "id": id,
        "etag": etag(&id),
        "properties": props,
        "type": "Microsoft.Network/virtualNetworks/subnets",
    })
}

/// `GET …/virtualNetworks/{vnet}`: `{name, id, etag, type, location, properties:
/// {provisioningState, resourceGuid, addressSpace, subnets, virtualNetworkPeerings,
/// enableDdosProtection}}`.
pub fn get_vnet(s: &State, sub: &str, rg: &str, name: &str) -> Response {
    let Some(v) = find_vnet(s, sub, rg, name) else {
        return not_found("Microsoft.Network/virtualNetworks", name, rg);
    };
    let id = vnet_id(v);
    let subnets: Vec<Value> = v.subnets.iter().map(|n| subnet_body(v, n)).collect();
    ok(json!({
        "name": v.name,
        "id": id,
        "etag": etag(&id),
        "type": "Microsoft.Network/virtualNetworks",
        "location": v.location,
        "properties": {
            "provisioningState": "Succeeded",
            "resourceGuid": etag(&format!("guid:{id}")).trim_start_matches("W/\"").trim_end_matches('"'),
            "addressSpace": {"addressPrefixes": v.address_prefixes},
            "subnets": subnets,
            "virtualNetworkPeerings": [],
            "enableDdosProtection": false,
        },
    }))
}

/// `GET …/virtualNetworks/{vnet}/subnets/{subnet}`. A missing network is ARM's
/// `ResourceNotFound`; a missing subnet of an existing network is Network's own 404, `NotFound`
/// "Resource {id} not found." (the body Azure/azure-cli#19761 quotes for a network).
pub fn get_subnet(s: &State, sub: &str, rg: &str, vnet: &str, subnet: &str) -> Response {
    let Some(v) = find_vnet(s, sub, rg, vnet) else {
        return not_found("Microsoft.Network/virtualNetworks", vnet, rg);
    };
    match v
        .subnets
        .iter()
        .find(|n| n.name.eq_ignore_ascii_case(subnet))
    {
        Some(n) => ok(subnet_body(v, n)),
        None => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("Resource {}/subnets/{subnet} not found.", vnet_id(v)),
        ),
    }
}
