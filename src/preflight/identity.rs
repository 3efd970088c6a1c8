//! Check 3: the template's identity (`managedIdentity`) exists and, where its role assignments
//! can be read, holds a role on the distribution target's scope and can read the source.
//! "Configure Azure VM Image Builder permissions": the identity needs to read the source image
//! and write the distribution target (a custom "Image Creation" role or Contributor, at the
//! target's resource group); with build VM identities ("User-assigned identity for the Image
//! Builder Build VM", template reference) it needs "Managed Identity Operator" on each. A role
//! missing here is a warning: assignments inherited through groups or management groups can be
//! invisible to this read.

use serde::Deserialize;

use super::Finding;
use super::read::{Read, Reader, denied, failed};
use crate::plan::{Distribution, Source};

const IDENTITY_API: &str = "2023-01-31";
const AUTHORIZATION_API: &str = "2022-04-01";
const CHECK: &str = "managedIdentity";
/// The built-in role "Managed Identity Operator".
const MANAGED_IDENTITY_OPERATOR: &str = "f1a07417-d97a-45cb-824c-7a7467783830";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    #[serde(default)]
    properties: IdentityProperties,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityProperties {
    #[serde(default)]
    principal_id: String,
}

#[derive(Clone, Deserialize)]
struct Assignment {
    properties: AssignmentProperties,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentProperties {
    role_definition_id: String,
    scope: String,
}

#[derive(Deserialize)]
struct RoleDefinition {
    properties: RoleProperties,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleProperties {
    role_name: String,
    #[serde(default)]
    permissions: Vec<Permission>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Permission {
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    not_actions: Vec<String>,
}

/// Whether an Azure RBAC action pattern (`*` matches anything, case-insensitive) covers
/// `action` ("Understand Azure role definitions": `Actions` and `NotActions` wildcards).
pub fn matches(pattern: &str, action: &str) -> bool {
    let (pattern, action) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == action;
    }
    let mut rest = action.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(after) = rest.strip_prefix(part) else {
                return false;
            };
            rest = after;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// Whether a role's permissions allow `action`: some `actions` pattern covers it and no
/// `notActions` pattern of the same block takes it away.
fn grants(permissions: &[Permission], action: &str) -> bool {
    permissions.iter().any(|p| {
        p.actions.iter().any(|a| matches(a, action))
            && !p.not_actions.iter().any(|n| matches(n, action))
    })
}

/// An assignment at `scope` reaches `target` when `scope` is `target` or one of its parents.
pub fn covers(scope: &str, target: &str) -> bool {
    let (scope, target) = (
        scope.trim_end_matches('/').to_ascii_lowercase(),
        target.to_ascii_lowercase(),
    );
    scope == "/" || target == scope || target.starts_with(&format!("{scope}/"))
}

/// `/subscriptions/{s}/resourceGroups/{g}` of a resource id.
fn group_scope(subscription: &str, group: &str) -> String {
    format!("/subscriptions/{subscription}/resourceGroups/{group}")
}

pub async fn check(r: &Reader<'_>) -> Vec<Finding> {
    let id = &r.plan.identity;
    let identity = match r
        .get::<Identity>("reading the managed identity", id.as_str(), IDENTITY_API)
        .await
    {
        Read::Found(i) => i,
        Read::Missing => {
            return vec![Finding::error(
                CHECK,
                format!(
                    "the managed identity {id} does not exist; Image Builder refuses a template whose identity is missing"
                ),
                format!(
                    "create it (az identity create --name {} --resource-group {} --subscription {}) and grant it its roles, or correct managedIdentity",
                    id.name(),
                    id.resource_group,
                    id.subscription
                ),
            )];
        }
        Read::Denied { action } => {
            return vec![denied(
                CHECK,
                &format!("managed identity {}", id.name()),
                &action,
            )];
        }
        Read::Failed(why) => return vec![failed(CHECK, "the managed identity", &why)],
    };
    let principal = identity.properties.principal_id;
    let mut findings = vec![Finding::ok(
        CHECK,
        format!("managed identity {} exists", id.name()),
    )];
    if principal.is_empty() {
        return findings;
    }
    let path = format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments?$filter=assignedTo('{principal}')",
        r.subscription()
    );
    let assignments = match r
        .list::<Assignment>(
            "reading the identity's role assignments",
            &path,
            AUTHORIZATION_API,
        )
        .await
    {
        Read::Found(a) => a,
        Read::Denied { action } => {
            findings.push(denied(
                CHECK,
                &format!("the roles of managed identity {}", id.name()),
                &action,
            ));
            return findings;
        }
        Read::Missing => Vec::new(),
        Read::Failed(why) => {
            findings.push(failed(CHECK, "the identity's role assignments", &why));
            return findings;
        }
    };

    // What the identity must reach: (what, scope, need, the action it needs there).
    let mut needs: Vec<(String, String, &str, &str)> = Vec::new();
    match &r.plan.distribution {
        Distribution::ManagedImage { image_id, .. } => needs.push((
            format!("the managed image target's resource group {}", image_id.resource_group),
            group_scope(&image_id.subscription, &image_id.resource_group),
            "write images there (Contributor, or a custom role with Microsoft.Compute/images/write, read and delete)",
            "Microsoft.Compute/images/write",
        )),
        Distribution::SharedImage { gallery_image_id, .. } => needs.push((
            format!("the gallery {}", gallery_image_id.names[0]),
            format!(
                "{}/providers/Microsoft.Compute/galleries/{}",
                group_scope(&gallery_image_id.subscription, &gallery_image_id.resource_group),
                gallery_image_id.names[0]
            ),
            "write image versions there (Contributor, or a custom role with Microsoft.Compute/galleries/images/versions/write and the gallery reads)",
            "Microsoft.Compute/galleries/images/versions/write",
        )),
        Distribution::Vhd | Distribution::VhdAt { .. } => {}
    }
    match &r.plan.source {
        Source::ManagedImage { image_id } => needs.push((
            format!("the source image {}", image_id.name()),
            image_id.as_str().to_owned(),
            "read it (Reader, or Microsoft.Compute/images/read)",
            "Microsoft.Compute/images/read",
        )),
        Source::SharedImageVersion { image_version_id } => needs.push((
            format!(
                "the source gallery image version {}",
                image_version_id.name()
            ),
            image_version_id.as_str().to_owned(),
            "read it (Reader, or Microsoft.Compute/galleries/images/versions/read)",
            "Microsoft.Compute/galleries/images/versions/read",
        )),
        Source::Marketplace { .. } => {}
    }
    for (what, scope, need, action) in needs {
        let roles: Vec<&Assignment> = assignments
            .iter()
            .filter(|a| covers(&a.properties.scope, &scope))
            .collect();
        let fix = format!(
            "az role assignment create --assignee-object-id {principal} --assignee-principal-type ServicePrincipal --role Contributor --scope {scope}"
        );
        if roles.is_empty() {
            findings.push(
                Finding::warning(
                    CHECK,
                    format!("managed identity {} holds no role on {what} that this subscription shows; it must {need}", id.name()),
                )
                .with_fix(fix),
            );
            continue;
        }
        let definitions = role_definitions(r, &roles).await;
        let names: Vec<&str> = definitions.iter().map(|(name, _)| name.as_str()).collect();
        let known: Vec<&Vec<Permission>> =
            definitions.iter().filter_map(|(_, p)| p.as_ref()).collect();
        // Only when every role could be read can it be said that none allows the action.
        if known.len() == definitions.len() && !known.iter().any(|p| grants(p, action)) {
            findings.push(
                Finding::warning(
                    CHECK,
                    format!("managed identity {} holds {} on {what}, which does not allow {action}; it must {need}", id.name(), names.join(", ")),
                )
                .with_fix(fix),
            );
        } else {
            findings.push(Finding::ok(
                CHECK,
                format!(
                    "managed identity {} holds {} on {what}",
                    id.name(),
                    names.join(", ")
                ),
            ));
        }
    }
    for vm_identity in &r.plan.build_vm.identities {
        let roles: Vec<&Assignment> = assignments
            .iter()
            .filter(|a| covers(&a.properties.scope, vm_identity.as_str()))
            .collect();
        let operator = roles.iter().any(|a| {
            a.properties
                .role_definition_id
                .to_ascii_lowercase()
                .ends_with(MANAGED_IDENTITY_OPERATOR)
        });
        // Owner, Contributor or a custom role may allow the assignment as well.
        let held = operator
            || role_definitions(r, &roles).await.iter().any(|(_, p)| {
                p.as_ref().is_some_and(|p| {
                    grants(
                        p,
                        "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
                    )
                })
            });
        if !held {
            findings.push(
                Finding::warning(
                    CHECK,
                    format!("managed identity {} holds no Managed Identity Operator role on build VM identity {}, which Image Builder needs to attach it to the build VM", id.name(), vm_identity.name()),
                )
                .with_fix(format!("az role assignment create --assignee-object-id {principal} --assignee-principal-type ServicePrincipal --role \"Managed Identity Operator\" --scope {vm_identity}")),
            );
        }
    }
    findings
}

/// Each role's name and permissions, or its id (and no permissions) where its definition cannot
/// be read.
async fn role_definitions(
    r: &Reader<'_>,
    roles: &[&Assignment],
) -> Vec<(String, Option<Vec<Permission>>)> {
    let mut ids: Vec<&str> = roles
        .iter()
        .map(|a| a.properties.role_definition_id.as_str())
        .collect();
    ids.sort();
    ids.dedup();
    futures_util::future::join_all(ids.into_iter().map(|id| async move {
        match r
            .get::<RoleDefinition>("reading a role definition", id, AUTHORIZATION_API)
            .await
        {
            Read::Found(d) => (d.properties.role_name, Some(d.properties.permissions)),
            _ => (id.rsplit('/').next().unwrap_or(id).to_owned(), None),
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_patterns_follow_rbac_wildcards() {
        assert!(matches("*", "Microsoft.Compute/images/write"));
        assert!(matches(
            "Microsoft.Compute/*",
            "microsoft.compute/images/write"
        ));
        assert!(matches(
            "Microsoft.Compute/images/*",
            "Microsoft.Compute/images/write"
        ));
        assert!(matches("*/read", "Microsoft.Compute/images/read"));
        assert!(!matches("*/read", "Microsoft.Compute/images/write"));
        assert!(!matches(
            "Microsoft.Compute/images/read",
            "Microsoft.Compute/images/write"
        ));
        let contributor = vec![Permission {
            actions: vec!["*".into()],
            not_actions: vec!["Microsoft.Authorization/*/Write".into()],
        }];
        assert!(grants(
            &contributor,
            "Microsoft.Compute/galleries/images/versions/write"
        ));
        assert!(!grants(
            &contributor,
            "Microsoft.Authorization/roleAssignments/write"
        ));
        let reader = vec![Permission {
            actions: vec!["*/read".into()],
            not_actions: vec![],
        }];
        assert!(!grants(
            &reader,
            "Microsoft.Compute/galleries/images/versions/write"
        ));
        assert!(grants(&reader, "Microsoft.Compute/images/read"));
    }

    #[test]
    fn scopes_cover_themselves_and_their_children() {
        let rg = "/subscriptions/s/resourceGroups/rg";
        assert!(covers("/subscriptions/s", rg));
        assert!(covers("/subscriptions/S/resourcegroups/RG", rg));
        assert!(covers(
            rg,
            &format!("{rg}/providers/Microsoft.Compute/images/i")
        ));
        assert!(!covers("/subscriptions/s/resourceGroups/rg2", rg));
        assert!(!covers(&format!("{rg}/providers/x"), rg));
        assert!(covers("/", rg));
    }
}
