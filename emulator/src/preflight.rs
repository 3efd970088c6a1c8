//! The read-only ARM endpoints a build's preflight reads, routed from [`crate::arm::dispatch`]
//! (one hook: [`route`]), with the scenario of [`crate::scenario`]: resource providers
//! ([`crate::providers`]), role assignments and definitions ([`crate::authorization`]), VM sizes
//! ([`crate::compute_skus`]), virtual networks ([`crate::network`]), marketplace terms, managed
//! images and extra user-assigned identities (here). Also what the scenario adds to existing
//! answers (a group's resources, a storage account's network rules), the per-request latency,
//! and Image Builder's documented refusals of a template PUT that breaks a rule of its
//! staging group or subnet ([`check_template_put`]).

use std::time::Duration;

use axum::{http::Method, response::Response};
use serde_json::{Value, json};

use crate::{
    arm::{self, error, not_found, ok},
    authorization, compute_skus, network, providers,
    scenario::{IdentityConfig, ManagedImageConfig},
    server::Req,
    state::State,
};

/// `scenario.latency_ms` before an ARM request is answered (the preflight benchmark: 100 ms a
/// request).
pub async fn latency(s: &State) {
    let ms = s.config.scenario.latency_ms;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// The answer for a preflight read under `/subscriptions/{sub}/…` (`seg` as sent, from
/// `subscriptions` on), or None to let the other routes answer.
pub fn route(s: &State, req: &Req, sub: &str, seg: &[&str], caller_oid: &str) -> Option<Response> {
    if req.method != Method::GET {
        return None;
    }
    if let Some((scope, kind, name)) = authorization::split(seg) {
        let scope_seg: Vec<&str> = seg
            .iter()
            .take_while(|p| !p.eq_ignore_ascii_case("providers"))
            .copied()
            .collect();
        if scope_seg.len() >= 4
            && scope_seg[2].eq_ignore_ascii_case("resourcegroups")
            && arm::resource_group_location(s, sub, scope_seg[3]).is_none()
        {
            return None; // arm answers ResourceGroupNotFound
        }
        return match (kind.as_str(), name) {
            ("roleassignments", None) => Some(authorization::list_assignments(
                s, req, sub, &scope, caller_oid,
            )),
            ("roledefinitions", Some(id)) => Some(authorization::get_definition(sub, &id)),
            _ => None,
        };
    }
    let lower: Vec<String> = seg.iter().map(|x| x.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match &l[2..] {
        ["providers"] => Some(providers::list(s, sub)),
        ["providers", _] => Some(providers::get(s, sub, seg[3])),
        ["providers", "microsoft.compute", "skus"] => Some(compute_skus::list(s, req)),
        [
            "providers",
            "microsoft.marketplaceordering",
            "offertypes",
            _,
            "publishers",
            _,
            "offers",
            _,
            "plans",
            _,
            "agreements",
            "current",
        ] => Some(marketplace_terms(s, sub, seg[5], seg[7], seg[9], seg[11])),
        ["resourcegroups", _, "providers", ..]
            if arm::resource_group_location(s, sub, seg[3]).is_some() =>
        {
            let rg = seg[3];
            let t = &seg[4..];
            match &l[4..] {
                ["providers", "microsoft.compute", "images", _] => {
                    Some(managed_image(s, sub, rg, t[3]))
                }
                ["providers", "microsoft.network", "virtualnetworks", _] => {
                    Some(network::get_vnet(s, sub, rg, t[3]))
                }
                [
                    "providers",
                    "microsoft.network",
                    "virtualnetworks",
                    _,
                    "subnets",
                    _,
                ] => Some(network::get_subnet(s, sub, rg, t[3], t[5])),
                [
                    "providers",
                    "microsoft.managedidentity",
                    "userassignedidentities",
                    _,
                ] => find_identity(s, sub, rg, t[3]).map(identity_body).map(ok),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `GET /subscriptions/{s}/providers/Microsoft.MarketplaceOrdering/offerTypes/virtualmachine/
/// publishers/{p}/offers/{o}/plans/{plan}/agreements/current` (REST API "Marketplace
/// Agreements – Get", api-version 2021-01-01: `{id, name, type, properties: {publisher, product, plan,
/// licenseTextLink, privacyPolicyLink, marketplaceTermsLink, retrieveDatetime, signature,
/// accepted}}`; `az vm image terms show`). `accepted` from `scenario.marketplace_terms`, else
/// `scenario.marketplace_terms_accepted_by_default`.
fn marketplace_terms(
    s: &State,
    sub: &str,
    offer_type: &str,
    publisher: &str,
    offer: &str,
    plan: &str,
) -> Response {
    let sc = &s.config.scenario;
    let accepted = sc
        .marketplace_terms
        .iter()
        .find(|t| {
            t.publisher.eq_ignore_ascii_case(publisher)
                && t.offer.eq_ignore_ascii_case(offer)
                && t.plan.eq_ignore_ascii_case(plan)
        })
        .map_or(sc.marketplace_terms_accepted_by_default, |t| t.accepted);
    let base = format!(
        "https://mpcprodsa.blob.core.windows.net/legalterms/3E5ED_legalterms_{}",
        publisher.to_ascii_uppercase()
    );
    ok(json!({
        "id": format!("/subscriptions/{sub}/providers/Microsoft.MarketplaceOrdering/offerTypes/{offer_type}/publishers/{publisher}/offers/{offer}/plans/{plan}/agreements/current"),
        "name": plan,
        "type": "Microsoft.MarketplaceOrdering/offertypes",
        "properties": {
            "publisher": publisher,
            "product": offer,
            "plan": plan,
            "licenseTextLink": format!("{base}%253a24{}%253a24{}.txt", offer.to_ascii_uppercase(), plan.to_ascii_uppercase()),
            "privacyPolicyLink": "https://www.microsoft.com/privacystatement",
            "marketplaceTermsLink": "https://mpcprodsa.blob.core.windows.net/marketplaceterms/3EDEF_marketplaceterms_VIRTUALMACHINE%253a24AAK2OAIZEAWW5H4MSP5KSTVB6NDKKRTUBAU23BRFTWN4YC2MQLJUB5ZEYUOUJBVF3YK34CIVPZL2HWYASPGDUY5O2FWEGRBYOXWZE5Y.txt",
            "retrieveDatetime": "2026-01-15T09:30:00.0000000Z",
            "signature": "EMULATEDSIGNATURE0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH",
            "accepted": accepted,
        },
    }))
}

fn find_image<'a>(s: &'a State, sub: &str, rg: &str, name: &str) -> Option<&'a ManagedImageConfig> {
    s.config.scenario.managed_images.iter().find(|i| {
        i.subscription_id.eq_ignore_ascii_case(sub)
            && i.resource_group.eq_ignore_ascii_case(rg)
            && i.name.eq_ignore_ascii_case(name)
    })
}

fn image_id(i: &ManagedImageConfig) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/images/{}",
        i.subscription_id, i.resource_group, i.name
    )
}

/// `GET …/providers/Microsoft.Compute/images/{name}` (REST API "Images - Get", api-version
/// 2024-07-01: `{name, id, type, location, properties: {storageProfile: {osDisk: {osType,
/// osState, …}, dataDisks, zoneResilient}, provisioningState, hyperVGeneration}}`); 404
/// `ResourceNotFound` for an image the scenario does not hold.
fn managed_image(s: &State, sub: &str, rg: &str, name: &str) -> Response {
    let Some(i) = find_image(s, sub, rg, name) else {
        return not_found("Microsoft.Compute/images", name, rg);
    };
    ok(json!({
        "name": i.name,
        "id": image_id(i),
        "type": "Microsoft.Compute/images",
        "location": i.location,
        "tags": {},
        "properties": {
            "storageProfile": {
                "osDisk": {
                    "osType": i.os_type,
                    "osState": i.os_state,
                    "diskSizeGB": 30,
                    "caching": "ReadWrite",
                    "storageAccountType": "Standard_LRS",
                    "managedDisk": {"id": format!("/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/disks/{}-osdisk", i.subscription_id, i.resource_group, i.name)},
                },
                "dataDisks": [],
                "zoneResilient": false,
            },
            "provisioningState": "Succeeded",
            "hyperVGeneration": i.hyper_v_generation,
        },
    }))
}

fn find_identity<'a>(s: &'a State, sub: &str, rg: &str, name: &str) -> Option<&'a IdentityConfig> {
    s.config.scenario.identities.iter().find(|i| {
        i.subscription_id.eq_ignore_ascii_case(sub)
            && i.resource_group.eq_ignore_ascii_case(rg)
            && i.name.eq_ignore_ascii_case(name)
    })
}

fn identity_id(i: &IdentityConfig) -> String {
    format!(
        "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
        i.subscription_id, i.resource_group, i.name
    )
}

/// A user-assigned identity as REST API "User Assigned Identities - Get" (2023-01-31) answers
/// it, the same shape as the template identity's (`arm.rs`).
fn identity_body(i: &IdentityConfig) -> Value {
    json!({
        "id": identity_id(i),
        "name": i.name,
        "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
        "location": i.location,
        "tags": {},
        "properties": {"tenantId": crate::config::defaults::TENANT_ID, "principalId": i.principal_id, "clientId": i.client_id},
    })
}

/// The scenario's resources in a group, for `…/resourceGroups/{rg}/resources` ("Resources -
/// List By Resource Group": `{id, name, type, location, tags}` each).
pub fn group_resources(s: &State, sub: &str, rg: &str) -> Vec<Value> {
    let sc = &s.config.scenario;
    let here =
        |isub: &str, irg: &str| isub.eq_ignore_ascii_case(sub) && irg.eq_ignore_ascii_case(rg);
    let item = |id: String, name: &str, kind: &str, location: &str| json!({"id": id, "name": name, "type": kind, "location": location, "tags": {}});
    let mut out = Vec::new();
    for v in sc
        .virtual_networks
        .iter()
        .filter(|v| here(&v.subscription_id, &v.resource_group))
    {
        out.push(item(
            network::vnet_id(v),
            &v.name,
            "Microsoft.Network/virtualNetworks",
            &v.location,
        ));
    }
    for i in sc
        .managed_images
        .iter()
        .filter(|i| here(&i.subscription_id, &i.resource_group))
    {
        out.push(item(
            image_id(i),
            &i.name,
            "Microsoft.Compute/images",
            &i.location,
        ));
    }
    for i in sc
        .identities
        .iter()
        .filter(|i| here(&i.subscription_id, &i.resource_group))
    {
        out.push(item(
            identity_id(i),
            &i.name,
            "Microsoft.ManagedIdentity/userAssignedIdentities",
            &i.location,
        ));
    }
    for r in sc
        .group_resources
        .iter()
        .filter(|r| here(&r.subscription_id, &r.resource_group))
    {
        out.push(item(
            format!(
                "/subscriptions/{}/resourceGroups/{}/providers/{}/{}",
                r.subscription_id, r.resource_group, r.resource_type, r.name
            ),
            &r.name,
            &r.resource_type,
            &r.location,
        ));
    }
    out
}

/// A storage account's body with the network rules of `scenario.storage_network` (REST API
/// "Storage Accounts - Get Properties": `properties.networkAcls: {bypass, virtualNetworkRules:
/// [{id, action, state}], ipRules: [{value, action}], defaultAction}`, `publicNetworkAccess`).
pub fn storage_account(s: &State, mut body: Value) -> Value {
    let name = body["name"].as_str().unwrap_or("").to_string();
    let Some(n) = s
        .config
        .scenario
        .storage_network
        .iter()
        .find(|n| n.account.eq_ignore_ascii_case(&name))
    else {
        return body;
    };
    body["properties"]["publicNetworkAccess"] = json!(n.public_network_access);
    body["properties"]["networkAcls"] = json!({
        "ipv6Rules": [],
        "bypass": n.bypass,
        "virtualNetworkRules": n.virtual_network_rules.iter().map(|id| json!({"id": id, "action": "Allow", "state": "Succeeded"})).collect::<Vec<_>>(),
        "ipRules": n.ip_rules.iter().map(|ip| json!({"value": ip, "action": "Allow"})).collect::<Vec<_>>(),
        "defaultAction": n.default_action,
    });
    body
}

/// Image Builder's refusal of a template field, in the shape of the service's own validation
/// errors (see `image_templates::validation_failed`: "What's new in Azure VM Image Builder").
fn validation_failed(path: &str, field: &str, why: &str) -> Response {
    error(
        axum::http::StatusCode::BAD_REQUEST,
        "ValidationFailed",
        format!(
            "Validation failed: 'ImageTemplate.properties.{path}': Field '{field}' {why}. Please review http://aka.ms/azvmimagebuildertmplref for details on fields requirements in the Image Builder Template."
        ),
    )
}

/// The rules of a template PUT that depend on other resources:
///
/// - `stagingResourceGroup`: "If the resource group specified exists, it must be empty and in
///   the same region as the image template" (swagger / template reference, `stagingResourceGroup`),
///   and "cannot be associated with another image template" (template reference's IMPORTANT note,
///   MicrosoftDocs/azure-compute-docs#62; MicrosoftDocs/azure-docs#96778 reports the second
///   template failing). When Image Builder finds out is not documented (the reports show the
///   template's creation failing): modelled as a refusal of the PUT.
/// - `vmProfile.vnetConfig.subnetId` of a scenario subnet: "Private Link service requires an IP
///   from the given VNET and subnet. Currently, Azure doesn't support Network Policies on these
///   IPs. Hence, network policies need to be disabled on the subnet", and "The VNET must be in
///   the same region as the Azure Image Builder Service region" ("Azure VM Image Builder
///   networking options"). Not said when it fails: modelled as a refusal of the PUT. Subnets the
///   scenario does not hold are not checked.
pub fn check_template_put(
    s: &State,
    sub: &str,
    body: &Value,
    location: &str,
) -> Result<(), Box<Response>> {
    let props = body.get("properties").cloned().unwrap_or(Value::Null);
    let region = |l: &str| l.to_ascii_lowercase().replace(' ', "");
    if let Some(group_id) = props
        .get("stagingResourceGroup")
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty())
    {
        let parts: Vec<&str> = group_id.trim_matches('/').split('/').collect();
        if let [_, gsub, _, group] = parts.as_slice()
            && gsub.eq_ignore_ascii_case(sub)
            && let Some(group_location) = arm::resource_group_location(s, sub, group)
        {
            let fail = |why: String| {
                Err(Box::new(validation_failed(
                    "stagingResourceGroup",
                    "stagingResourceGroup",
                    &why,
                )))
            };
            if let Some(owner) = s.templates.lock().unwrap().staging_group_owner(sub, group) {
                return fail(format!(
                    "has a bad value: '{group_id}'. The staging resource group is already used by the image template '{owner}'; it cannot be associated with another image template"
                ));
            }
            if region(&group_location) != region(location) {
                return fail(format!(
                    "has a bad value: '{group_id}'. The staging resource group exists in '{group_location}'; it must be in the same region as the image template ('{location}')"
                ));
            }
            let storage = s.config.storage_accounts.iter().filter(|a| {
                a.subscription_id.eq_ignore_ascii_case(sub)
                    && a.resource_group.eq_ignore_ascii_case(group)
            });
            let count = storage.count() + group_resources(s, sub, group).len();
            if count > 0 {
                return fail(format!(
                    "has a bad value: '{group_id}'. The staging resource group exists and holds {count} resource(s); it must be empty"
                ));
            }
        }
    }
    if let Some(subnet_id) = props
        .pointer("/vmProfile/vnetConfig/subnetId")
        .and_then(Value::as_str)
        && let Some((vnet, subnet)) = network::find_subnet(s, subnet_id)
    {
        // The policies matter to the proxy VM's Private Link service, which an isolated build
        // (a container instance subnet) does not deploy ("Azure VM Image Builder networking
        // options": the policy applies to the build VM's subnet of a proxy-VM build).
        let isolated = props
            .pointer("/vmProfile/vnetConfig/containerInstanceSubnetId")
            .and_then(Value::as_str)
            .is_some_and(|id| !id.is_empty());
        if !isolated
            && subnet
                .private_link_service_network_policies
                .eq_ignore_ascii_case("Enabled")
        {
            return Err(Box::new(validation_failed(
                "vmProfile.vnetConfig",
                "subnetId",
                &format!(
                    "has a bad value: '{subnet_id}'. Private Link service network policies must be disabled on the subnet (privateLinkServiceNetworkPolicies is 'Enabled')"
                ),
            )));
        }
        if region(&vnet.location) != region(location) {
            return Err(Box::new(validation_failed(
                "vmProfile.vnetConfig",
                "subnetId",
                &format!(
                    "has a bad value: '{subnet_id}'. The virtual network is in '{}'; it must be in the same region as the image template ('{location}')",
                    vnet.location
                ),
            )));
        }
    }
    Ok(())
}
