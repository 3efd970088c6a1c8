//! `Microsoft.Authorization` reads at any scope (subscription, resource group or resource):
//! role assignments (REST API "Role Assignments - List For Scope", api-version 2022-04-01) and
//! built-in role definitions ("Role Definitions - Get"), from `scenario.role_assignments`;
//! `scenario.role_assignments_forbidden` refuses the list with 403 `AuthorizationFailed`.

use axum::{http::StatusCode, response::Response};
use serde_json::{Value, json};
use sha2::Digest;

use crate::{
    arm::{error, ok},
    scenario::{RoleAssignmentConfig, roles},
    server::Req,
    state::State,
};

const CREATED: &str = "2026-01-15T09:30:00.0000000Z";

/// A built-in role: `(id, roleName, description, actions, notActions, dataActions)`, as "Azure
/// built-in roles" lists them (permissions abridged where the page's list is long: Contributor's
/// `notActions` keeps the authorization and subscription ones).
type Role = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

const BUILT_IN: &[Role] = &[
    (
        roles::CONTRIBUTOR,
        "Contributor",
        "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
        &["*"],
        &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
            "Microsoft.Purview/consents/write",
            "Microsoft.Purview/consents/delete",
            "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
            "Microsoft.Subscription/cancel/action",
            "Microsoft.Subscription/enable/action",
        ],
        &[],
    ),
    (
        roles::READER,
        "Reader",
        "View all resources, but does not allow you to make any changes.",
        &["*/read"],
        &[],
        &[],
    ),
    (
        roles::MANAGED_IDENTITY_OPERATOR,
        "Managed Identity Operator",
        "Read and Assign User Assigned Identity",
        &[
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Support/*",
        ],
        &[],
        &[],
    ),
    (
        roles::STORAGE_BLOB_DATA_READER,
        "Storage Blob Data Reader",
        "Allows for read access to Azure Storage blob containers and data",
        &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        &[],
        &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
    ),
];

/// Where `…/providers/Microsoft.Authorization/{kind}[/{name}]` sits in a path: `(scope, kind,
/// name)`, `kind` lower-cased (`roleassignments` or `roledefinitions`).
pub fn split(seg: &[&str]) -> Option<(String, String, Option<String>)> {
    let at = (0..seg.len()).rev().find(|&i| {
        seg[i].eq_ignore_ascii_case("providers")
            && seg
                .get(i + 1)
                .is_some_and(|n| n.eq_ignore_ascii_case("Microsoft.Authorization"))
    })?;
    let kind = seg.get(at + 2)?.to_ascii_lowercase();
    if kind != "roleassignments" && kind != "roledefinitions" {
        return None;
    }
    let name = match seg.len() - (at + 3) {
        0 => None,
        1 => Some(seg[at + 3].to_string()),
        _ => return None,
    };
    Some((format!("/{}", seg[..at].join("/")), kind, name))
}

/// Whether `inner` is `outer` or under it (ARM ids compare case-insensitively).
fn within(inner: &str, outer: &str) -> bool {
    let (i, o) = (
        inner.trim_end_matches('/').to_ascii_lowercase(),
        outer.trim_end_matches('/').to_ascii_lowercase(),
    );
    i == o || i.starts_with(&format!("{o}/"))
}

/// A stable GUID for an assignment (Azure gives each one a GUID name).
fn guid(a: &RoleAssignmentConfig) -> String {
    let h = sha2::Sha256::digest(
        format!(
            "{}|{}|{}",
            a.principal_id.to_ascii_lowercase(),
            a.role_definition.to_ascii_lowercase(),
            a.scope.to_ascii_lowercase()
        )
        .as_bytes(),
    );
    let x: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn assignment_body(sub: &str, a: &RoleAssignmentConfig) -> Value {
    let name = guid(a);
    json!({
        "id": format!("{}/providers/Microsoft.Authorization/roleAssignments/{name}", a.scope),
        "name": name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{}", a.role_definition),
            "principalId": a.principal_id,
            "principalType": a.principal_type,
            "scope": a.scope,
            "condition": null,
            "conditionVersion": null,
            "createdOn": CREATED,
            "updatedOn": CREATED,
            "createdBy": null,
            "updatedBy": null,
            "delegatedManagedIdentityResourceId": null,
            "description": null,
        },
    })
}

/// The principal of `assignedTo('{id}')` or `principalId eq '{id}'`, and whether `atScope()`
/// is asked.
fn parse_filter(filter: &str) -> (Option<String>, bool) {
    let lower = filter.to_ascii_lowercase();
    let at_scope = lower.contains("atscope()");
    let unquote = |v: &str| {
        v.trim()
            .trim_start_matches(['\'', '"'])
            .split(['\'', '"', ')', ' '])
            .next()
            .unwrap_or("")
            .to_string()
    };
    let principal = match lower.find("assignedto(") {
        Some(i) => Some(unquote(&filter[i + "assignedto(".len()..])),
        None => lower
            .find("principalid eq")
            .map(|i| unquote(&filter[i + "principalid eq".len()..])),
    };
    (principal.filter(|p| !p.is_empty()), at_scope)
}

/// `GET {scope}/providers/Microsoft.Authorization/roleAssignments[?$filter=…]`.
///
/// "Role Assignments - List For Scope": without a filter, or with `atScope()`, the assignments
/// that apply to the scope (at or above it); `principalId eq {id}` (and `assignedTo('{id}')`,
/// which `az role assignment list --assignee` sends) those of the principal "at, above or below
/// the scope".
pub fn list_assignments(
    s: &State,
    req: &Req,
    sub: &str,
    scope: &str,
    caller_oid: &str,
) -> Response {
    if s.config.scenario.role_assignments_forbidden {
        return forbidden(
            caller_oid,
            "Microsoft.Authorization/roleAssignments/read",
            scope,
        );
    }
    let (principal, at_scope) = parse_filter(req.param("$filter").unwrap_or(""));
    let value: Vec<Value> = s
        .config
        .scenario
        .role_assignments
        .iter()
        .filter(|a| within(&a.scope, &format!("/subscriptions/{sub}")))
        .filter(|a| match &principal {
            Some(p) => {
                a.principal_id.eq_ignore_ascii_case(p)
                    && (within(scope, &a.scope) || (!at_scope && within(&a.scope, scope)))
            }
            None => within(scope, &a.scope),
        })
        .map(|a| assignment_body(sub, a))
        .collect();
    ok(json!({"value": value}))
}

/// `GET {scope}/providers/Microsoft.Authorization/roleDefinitions/{id}` for the built-in roles
/// ("Role Definitions - Get": `{id, name, type, properties: {roleName, type: "BuiltInRole",
/// description, assignableScopes: ["/"], permissions: [{actions, notActions, dataActions,
/// notDataActions}]}}`). An unknown id: 404 `RoleDefinitionDoesNotExist` (emulator wording).
pub fn get_definition(sub: &str, id: &str) -> Response {
    let Some((guid, name, description, actions, not_actions, data_actions)) =
        BUILT_IN.iter().find(|(g, ..)| g.eq_ignore_ascii_case(id))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{id}' does not exist."),
        );
    };
    ok(json!({
        "id": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}"),
        "name": guid,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": name,
            "type": "BuiltInRole",
            "description": description,
            "assignableScopes": ["/"],
            "permissions": [{
                "actions": actions,
                "notActions": not_actions,
                "dataActions": data_actions,
                "notDataActions": [],
            }],
            "createdOn": "2015-02-02T21:55:09.8806423Z",
            "updatedOn": CREATED,
            "createdBy": null,
            "updatedBy": null,
        },
    }))
}

/// 403 `AuthorizationFailed`, worded as ARM words it (the same message `listKeys` refusals
/// carry, see [`crate::storage_accounts::list_keys`]).
pub fn forbidden(caller_oid: &str, action: &str, scope: &str) -> Response {
    error(
        StatusCode::FORBIDDEN,
        "AuthorizationFailed",
        format!(
            "The client '{caller_oid}' with object id '{caller_oid}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_scopes() {
        assert_eq!(
            parse_filter("assignedTo('abc')"),
            (Some("abc".into()), false)
        );
        assert_eq!(
            parse_filter("atScope() and principalId eq 'abc'"),
            (Some("abc".into()), true)
        );
        assert_eq!(
            parse_filter("principalId eq abc"),
            (Some("abc".into()), false)
        );
        assert_eq!(parse_filter(""), (None, false));
        assert!(within(
            "/subscriptions/s/resourceGroups/RG/x",
            "/subscriptions/s/resourcegroups/rg"
        ));
        assert!(!within(
            "/subscriptions/s/resourceGroups/rg2",
            "/subscriptions/s/resourceGroups/rg"
        ));
        let seg = [
            "subscriptions",
            "s",
            "resourceGroups",
            "rg",
            "providers",
            "Microsoft.Authorization",
            "roleDefinitions",
            "g",
        ];
        assert_eq!(
            split(&seg),
            Some((
                "/subscriptions/s/resourceGroups/rg".into(),
                "roledefinitions".into(),
                Some("g".into())
            ))
        );
    }
}
