//! Resource providers of a subscription (`Microsoft.Resources`): `GET
//! /subscriptions/{s}/providers[/{namespace}]`, shaped like REST API "Providers - Get" /
//! "Providers - List" (api-version 2021-04-01: `{id, namespace, registrationPolicy,
//! registrationState, resourceTypes: [{resourceType, locations, apiVersions, capabilities}]}`).
//! `registrationState` is `NotRegistered` for `Config.unregistered_providers`, `Registering` for
//! `scenario.registering_providers` and `Registered` otherwise. The provider resource belongs to
//! Microsoft.Resources, so it answers even for an unregistered namespace ("Resolve errors for
//! resource provider registration": `az provider show` is how one checks the state).

use axum::{http::StatusCode, response::Response};
use serde_json::{Value, json};

use crate::{
    arm::{error, ok},
    state::State,
};

/// The namespaces the emulator knows with a few of their resource types (names as Azure spells
/// them; "Resource providers for Azure services" lists the namespaces).
const NAMESPACES: &[(&str, &[&str])] = &[
    (
        "Microsoft.VirtualMachineImages",
        &["imageTemplates", "locations", "operations"],
    ),
    (
        "Microsoft.Compute",
        &[
            "virtualMachines",
            "images",
            "galleries",
            "galleries/images",
            "galleries/images/versions",
            "disks",
            "skus",
            "locations",
        ],
    ),
    (
        "Microsoft.Storage",
        &["storageAccounts", "operations", "locations"],
    ),
    (
        "Microsoft.Network",
        &[
            "virtualNetworks",
            "virtualNetworks/subnets",
            "networkInterfaces",
            "networkSecurityGroups",
            "loadBalancers",
            "privateLinkServices",
        ],
    ),
    ("Microsoft.KeyVault", &["vaults", "operations"]),
    (
        "Microsoft.ContainerInstance",
        &["containerGroups", "locations"],
    ),
    (
        "Microsoft.ManagedIdentity",
        &["userAssignedIdentities", "operations"],
    ),
    (
        "Microsoft.Authorization",
        &["roleAssignments", "roleDefinitions", "locks"],
    ),
    (
        "Microsoft.MarketplaceOrdering",
        &["agreements", "offerTypes"],
    ),
    (
        "Microsoft.Resources",
        &[
            "resourceGroups",
            "subscriptions",
            "deployments",
            "providers",
        ],
    ),
];

fn state(s: &State, namespace: &str) -> &'static str {
    if s.config
        .unregistered_providers
        .iter()
        .any(|n| n.eq_ignore_ascii_case(namespace))
    {
        "NotRegistered"
    } else if s
        .config
        .scenario
        .registering_providers
        .iter()
        .any(|n| n.eq_ignore_ascii_case(namespace))
    {
        "Registering"
    } else {
        "Registered"
    }
}

fn body(s: &State, sub: &str, namespace: &str, types: &[&str]) -> Value {
    // Global namespaces (Authorization, Resources, MarketplaceOrdering) list no regions.
    let regional = !matches!(
        namespace,
        "Microsoft.Authorization" | "Microsoft.Resources" | "Microsoft.MarketplaceOrdering"
    );
    let locations: Vec<&str> = if regional {
        vec!["West US 2", "East US", "West Europe"]
    } else {
        Vec::new()
    };
    let resource_types: Vec<Value> = types
        .iter()
        .map(|t| {
            json!({
                "resourceType": t,
                "locations": locations,
                "apiVersions": ["2024-07-01", "2023-09-01", "2022-04-01", "2021-04-01"],
                "capabilities": "None",
            })
        })
        .collect();
    json!({
        "id": format!("/subscriptions/{sub}/providers/{namespace}"),
        "namespace": namespace,
        "registrationPolicy": "RegistrationRequired",
        "registrationState": state(s, namespace),
        "resourceTypes": resource_types,
    })
}

/// `GET /subscriptions/{s}/providers/{namespace}`.
pub fn get(s: &State, sub: &str, namespace: &str) -> Response {
    match NAMESPACES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(namespace))
    {
        Some((name, types)) => ok(body(s, sub, name, types)),
        // Emulator wording for a namespace it does not know (ARM's own answer for a namespace
        // that does not exist is a 404; its exact text is not documented).
        None => error(
            StatusCode::NOT_FOUND,
            "InvalidResourceNamespace",
            format!("The resource namespace '{namespace}' is invalid."),
        ),
    }
}

/// `GET /subscriptions/{s}/providers` ("Providers - List": `{value: [Provider]}`).
pub fn list(s: &State, sub: &str) -> Response {
    let value: Vec<Value> = NAMESPACES.iter().map(|(n, t)| body(s, sub, n, t)).collect();
    ok(json!({"value": value}))
}
