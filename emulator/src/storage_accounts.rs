//! `Microsoft.Storage/storageAccounts` in ARM: list (by subscription, paged with `nextLink`, and by
//! resource group), get, and `listKeys`. The configured accounts live where the config puts them;
//! the staging account (packer logs) appears in each live template's `IT_…` group.

use axum::{http::StatusCode, response::Response};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};
use sha2::Digest;

use crate::{
    arm::{self, error, ok},
    config::StorageAccountConfig,
    server::Req,
    state::State,
};

const CREATED: &str = "2026-01-15T09:30:00.0000000Z";

/// Every account visible now, with the resource group it is in.
fn all_accounts(s: &State) -> Vec<(String, StorageAccountConfig)> {
    let mut out: Vec<(String, StorageAccountConfig)> = s
        .config
        .storage_accounts
        .iter()
        .map(|a| (a.resource_group.clone(), a.clone()))
        .collect();
    for (sub, rg, location) in s.templates.lock().unwrap().staging_groups() {
        let mut account = s.config.staging_storage.clone();
        account.subscription_id = sub;
        account.resource_group = rg.clone();
        account.location = location;
        out.push((rg, account));
    }
    out
}

fn find(s: &State, sub: &str, rg: &str, name: &str) -> Option<StorageAccountConfig> {
    all_accounts(s).into_iter().map(|(_, a)| a).find(|a| {
        a.subscription_id.eq_ignore_ascii_case(sub)
            && a.resource_group.eq_ignore_ascii_case(rg)
            && a.name.eq_ignore_ascii_case(name)
    })
}

pub fn account_id(a: &StorageAccountConfig) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
        a.subscription_id, a.resource_group, a.name
    )
}

/// The account as ARM answers it.
pub fn body(a: &StorageAccountConfig) -> Value {
    let blob = &a.blob_endpoint;
    let sibling = |service: &str| {
        if blob.contains(".blob.") {
            json!(blob.replacen(".blob.", &format!(".{service}."), 1))
        } else {
            Value::Null
        }
    };
    json!({
        "sku": {"name": "Standard_LRS", "tier": "Standard"},
        "kind": "StorageV2",
        "id": account_id(a),
        "name": a.name,
        "type": "Microsoft.Storage/storageAccounts",
        "location": a.location,
        "tags": {},
        "properties": {
            "dnsEndpointType": "Standard",
            "defaultToOAuthAuthentication": false,
            "publicNetworkAccess": "Enabled",
            "keyCreationTime": {"key1": CREATED, "key2": CREATED},
            "allowCrossTenantReplication": false,
            "privateEndpointConnections": [],
            "minimumTlsVersion": "TLS1_2",
            "allowBlobPublicAccess": false,
            "allowSharedKeyAccess": a.allow_shared_key_access,
            "networkAcls": {"ipv6Rules": [], "bypass": "AzureServices", "virtualNetworkRules": [], "ipRules": [], "defaultAction": "Allow"},
            "supportsHttpsTrafficOnly": true,
            "encryption": {
                "services": {"file": {"keyType": "Account", "enabled": true, "lastEnabledTime": CREATED},
                             "blob": {"keyType": "Account", "enabled": true, "lastEnabledTime": CREATED}},
                "keySource": "Microsoft.Storage"
            },
            "accessTier": "Hot",
            "provisioningState": "Succeeded",
            "creationTime": CREATED,
            "primaryEndpoints": {
                "dfs": sibling("dfs"), "web": sibling("web"), "blob": blob, "queue": sibling("queue"),
                "table": sibling("table"), "file": sibling("file")
            },
            "primaryLocation": a.location,
            "statusOfPrimary": "available"
        }
    })
}

/// `GET …/storageAccounts` for a subscription (paged by `storage_page_size`) or a group.
pub fn list(s: &State, req: &Req, sub: &str, rg: Option<&str>, api_version: &str) -> Response {
    let accounts: Vec<Value> = all_accounts(s)
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| {
            a.subscription_id.eq_ignore_ascii_case(sub)
                && rg.is_none_or(|rg| a.resource_group.eq_ignore_ascii_case(rg))
        })
        .map(|a| crate::preflight::storage_account(s, body(&a)))
        .collect();
    let page = s.config.storage_page_size.max(1);
    let skip: usize = req
        .param("$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let items: Vec<Value> = accounts.iter().skip(skip).take(page).cloned().collect();
    let mut answer = json!({"value": items});
    if skip + page < accounts.len() {
        let path = match rg {
            Some(rg) => format!(
                "subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts"
            ),
            None => format!("subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts"),
        };
        answer["nextLink"] = json!(format!(
            "{}{path}?api-version={api_version}&$skiptoken={}",
            s.base_url,
            skip + page
        ));
    }
    ok(answer)
}

pub fn get(s: &State, sub: &str, rg: &str, name: &str) -> Response {
    match find(s, sub, rg, name) {
        Some(a) => ok(crate::preflight::storage_account(s, body(&a))),
        None => arm::not_found("Microsoft.Storage/storageAccounts", name, rg),
    }
}

/// The secondary key answered by `listKeys` (Azurite only knows key1).
fn secondary_key(key1: &str) -> String {
    let mut bytes = sha2::Sha512::digest(format!("key2:{key1}").as_bytes()).to_vec();
    bytes.truncate(64);
    STANDARD.encode(bytes)
}

/// `POST …/storageAccounts/{name}/listKeys`.
pub fn list_keys(s: &State, sub: &str, rg: &str, name: &str, caller_oid: &str) -> Response {
    let Some(a) = find(s, sub, rg, name) else {
        return arm::not_found("Microsoft.Storage/storageAccounts", name, rg);
    };
    if a.list_keys_forbidden {
        return error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            format!(
                "The client '{caller_oid}' with object id '{caller_oid}' does not have authorization to perform action 'Microsoft.Storage/storageAccounts/listKeys/action' over scope '{}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                account_id(&a)
            ),
        );
    }
    ok(json!({"keys": [
        {"creationTime": CREATED, "keyName": "key1", "value": a.key, "permissions": "FULL"},
        {"creationTime": CREATED, "keyName": "key2", "value": secondary_key(&a.key), "permissions": "FULL"},
    ]}))
}
