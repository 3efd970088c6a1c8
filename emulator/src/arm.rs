//! Azure Resource Manager on the emulator's origin: the bearer-token check (signature, expiry,
//! audience, tenant), the api-version requirement, the ARM error shape, subscription and resource
//! group lookups, and routing of `/subscriptions/…` paths to the resource providers
//! ([`crate::storage_accounts`], [`crate::compute`], [`crate::image_templates`]).

use axum::{
    Json,
    http::{HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use time::macros::format_description;

use crate::{
    compute, image_templates,
    jwt::Jwt,
    server::Req,
    state::{Shared, State, now},
    storage_accounts,
};

/// `{"error":{"code","message"}}` with the given status.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    error_with_details(status, code, message, Vec::new())
}

pub fn error_with_details(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    details: Vec<Value>,
) -> Response {
    let mut e = json!({"code": code, "message": message.into()});
    if !details.is_empty() {
        e["details"] = Value::Array(details);
    }
    (status, Json(json!({"error": e}))).into_response()
}

/// A 200 JSON answer.
pub fn ok(body: Value) -> Response {
    Json(body).into_response()
}

pub fn not_found(kind: &str, name: &str, resource_group: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{kind}/{name}' under resource group '{resource_group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

fn method_not_allowed(req: &Req) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "The requested resource does not support http method '{}'.",
            req.method
        ),
    )
}

fn unauthorized(s: &State, tenant: Option<&str>, code: &str, message: String) -> Response {
    let mut r = error(StatusCode::UNAUTHORIZED, code, message.clone());
    let header = format!(
        "Bearer authorization_uri=\"{}{}\", error=\"invalid_token\", error_description=\"{}\"",
        s.base_url,
        tenant.unwrap_or("common"),
        message.replace('"', "'")
    );
    if let Ok(v) = HeaderValue::from_str(&header) {
        r.headers_mut().insert("www-authenticate", v);
    }
    r
}

fn us_time(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(format_description!("[month padding:none]/[day padding:none]/[year] [hour repr:12 padding:none]:[minute]:[second] [period]"))
        .unwrap_or_default()
}

/// Checks the bearer token ARM requires.
pub fn authenticate(s: &State, req: &Req) -> Result<Jwt, Box<Response>> {
    let Some(header) = req.header("authorization") else {
        return Err(Box::new(unauthorized(
            s,
            None,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.".into(),
        )));
    };
    let Some(token) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
    else {
        return Err(Box::new(unauthorized(
            s,
            None,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format."
                .into(),
        )));
    };
    let Ok(jwt) = Jwt::decode(token.trim()) else {
        return Err(Box::new(unauthorized(
            s,
            None,
            "InvalidAuthenticationToken",
            "The access token is invalid.".into(),
        )));
    };
    let tid = jwt.claim_str("tid").map(str::to_owned);
    if !s.token_key.verify(&jwt) {
        return Err(Box::new(unauthorized(
            s,
            tid.as_deref(),
            "InvalidAuthenticationToken",
            "The received access token is not valid: at least one of the claims 'puid' or 'altsecid' or 'oid' should be present. If you are accessing as application please make sure service principal is properly created in the tenant. (signature validation failed)".into(),
        )));
    }
    let now = now().unix_timestamp();
    let exp = jwt.claim_i64("exp").unwrap_or(0);
    if exp <= now {
        return Err(Box::new(unauthorized(
            s,
            tid.as_deref(),
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                us_time(exp),
                us_time(now)
            ),
        )));
    }
    if jwt.claim_i64("nbf").unwrap_or(0) > now + 300 {
        return Err(Box::new(unauthorized(
            s,
            tid.as_deref(),
            "InvalidAuthenticationToken",
            "The access token is not yet valid.".into(),
        )));
    }
    let aud = jwt.audiences().into_iter().next().unwrap_or_default();
    if !s
        .arm_audiences
        .iter()
        .any(|a| a.eq_ignore_ascii_case(aud.trim_end_matches('/')))
    {
        let allowed: Vec<String> = s
            .arm_audiences
            .iter()
            .flat_map(|a| [format!("{a}/"), a.clone()])
            .map(|a| format!("'{a}'"))
            .collect();
        return Err(Box::new(unauthorized(
            s,
            tid.as_deref(),
            "InvalidAuthenticationToken",
            format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences {}.",
                allowed.join(",")
            ),
        )));
    }
    Ok(jwt)
}

/// Whether a resource group exists: configured, or a live template's staging group.
pub fn resource_group_location(s: &State, sub: &str, rg: &str) -> Option<String> {
    if let Some(g) =
        s.config.resource_groups.iter().find(|g| {
            g.subscription_id.eq_ignore_ascii_case(sub) && g.name.eq_ignore_ascii_case(rg)
        })
    {
        return Some(g.location.clone());
    }
    s.templates.lock().unwrap().staging_group_location(sub, rg)
}

fn resource_group_body(
    sub: &str,
    rg: &str,
    location: &str,
    managed_by: Option<String>,
    tags: Option<Value>,
) -> Value {
    let mut v = json!({
        "id": format!("/subscriptions/{sub}/resourceGroups/{rg}"),
        "name": rg,
        "type": "Microsoft.Resources/resourceGroups",
        "location": location,
        "properties": {"provisioningState": "Succeeded"},
    });
    if let Some(m) = managed_by {
        v["managedBy"] = json!(m);
    }
    if let Some(t) = tags {
        v["tags"] = t;
    }
    v
}

/// `GET …/resourceGroups/{rg}/resources` (Resources - List By Resource Group: `{value: [{id,
/// name, type, location, tags}]}`): the storage accounts of the group, the staging account in a
/// staging group, and what aborted runs left there.
fn group_resources(s: &State, sub: &str, rg: &str) -> Value {
    let generic = |id: String, name: &str, kind: &str, location: &str, tags: Value| json!({"id": id, "name": name, "type": kind, "location": location, "tags": tags});
    let mut value: Vec<Value> = s
        .config
        .storage_accounts
        .iter()
        .filter(|a| a.subscription_id.eq_ignore_ascii_case(sub) && a.resource_group.eq_ignore_ascii_case(rg))
        .map(|a| {
            generic(
                format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{}", a.name),
                &a.name,
                "Microsoft.Storage/storageAccounts",
                &a.location,
                json!({}),
            )
        })
        .collect();
    value.extend(crate::preflight::group_resources(s, sub, rg));
    let store = s.templates.lock().unwrap();
    if let Some(location) = store.staging_group_location(sub, rg) {
        let a = &s.config.staging_storage;
        // managedResourceTags: "applied to the resources that the Azure Image Builder service
        // creates in the staging resource group" (template reference).
        let tags = store
            .staging_group_tags(sub, rg)
            .map(|mut t| {
                if let Some(o) = t.as_object_mut() {
                    o.remove("createdBy");
                    o.remove("imageTemplateName");
                    o.remove("imageTemplateResourceGroupName");
                }
                t
            })
            .unwrap_or_else(|| json!({}));
        value.push(generic(
            format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{}", a.name),
            &a.name,
            "Microsoft.Storage/storageAccounts",
            &location,
            tags,
        ));
        for r in store.staging_resources(sub, rg) {
            value.push(json!({"id": r["id"], "name": r["name"], "type": r["type"], "location": r["location"], "tags": r["tags"]}));
        }
    }
    json!({"value": value})
}

/// `/subscriptions/…`
pub async fn dispatch(s: &Shared, req: &Req, seg: &[&str]) -> Response {
    crate::preflight::latency(s).await;
    let Some(api_version) = req.param("api-version").map(str::to_owned) else {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    let jwt = match authenticate(s, req) {
        Ok(j) => j,
        Err(r) => return *r,
    };
    let Some(sub_id) = seg.get(1).copied() else {
        return ok(
            json!({"value": s.config.subscriptions.iter().map(subscription_body).collect::<Vec<_>>()}),
        );
    };
    let Some(sub) = s
        .config
        .subscriptions
        .iter()
        .find(|x| x.subscription_id.eq_ignore_ascii_case(sub_id))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{sub_id}' could not be found."),
        );
    };
    if let Some(tid) = jwt
        .claim_str("tid")
        .filter(|t| !t.eq_ignore_ascii_case(&sub.tenant_id))
    {
        return unauthorized(
            s,
            Some(tid),
            "InvalidAuthenticationTokenTenant",
            format!(
                "The access token is from the wrong issuer 'https://sts.windows.net/{tid}/'. It must match the tenant 'https://sts.windows.net/{}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/{}' to get the token. Note, if the subscription is transferred to another tenant there is no impact to the services, but information about new tenant could take time to propagate (up to an hour). If you just transferred your subscription and see this error message, please try back later.",
                sub.tenant_id, sub.tenant_id
            ),
        );
    }
    let sub_id = sub.subscription_id.clone();
    let caller_oid = jwt.claim_str("oid").unwrap_or_default().to_string();
    let lower = req.segments_lower();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let get = req.method == Method::GET;
    if let Some(refusal) =
        unregistered_provider(s, &sub_id, seg).or_else(|| locked(s, req, &sub_id, seg))
    {
        return refusal;
    }
    if let Some(r) = crate::preflight::route(s, req, &sub_id, seg, &caller_oid) {
        return r;
    }
    match &l[2..] {
        [] if get => ok(subscription_body(sub)),
        ["resourcegroups"] if get => ok(json!({"value": s.config.resource_groups.iter()
            .filter(|g| g.subscription_id.eq_ignore_ascii_case(&sub_id))
            .map(|g| resource_group_body(&sub_id, &g.name, &g.location, None, None)).collect::<Vec<_>>()})),
        ["providers", "microsoft.storage", "storageaccounts"] if get => {
            storage_accounts::list(s, req, &sub_id, None, &api_version)
        }
        [
            "providers",
            "microsoft.compute",
            "locations",
            _,
            "publishers",
            _,
            "artifacttypes",
            "vmimage",
            "offers",
            _,
            "skus",
            _,
            "versions",
            rest @ ..,
        ] if get && rest.len() <= 1 => compute::versions(
            s,
            req,
            &sub_id,
            seg[5],
            seg[7],
            seg[11],
            seg[13],
            seg.get(15).copied(),
        ),
        [
            "providers",
            "microsoft.virtualmachineimages",
            "imagetemplates",
        ] if get => image_templates::list(s, &sub_id, None),
        [
            "providers",
            "microsoft.virtualmachineimages",
            "locations",
            _,
            "operations",
            _,
        ] if get => image_templates::operation_status(s, seg[7]),
        [
            "providers",
            "microsoft.virtualmachineimages",
            "locations",
            _,
            "operationresults",
            _,
        ] if get => image_templates::operation_result(s, seg[7]),
        ["providers", ..] => error(
            StatusCode::BAD_REQUEST,
            "InvalidResourceType",
            format!(
                "The resource type could not be found in the namespace '{}' for api version '{api_version}'.",
                seg.get(3).unwrap_or(&"")
            ),
        ),
        ["resourcegroups", _, rest @ ..] => {
            let rg_name = seg[3];
            let Some(location) = resource_group_location(s, &sub_id, rg_name) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "ResourceGroupNotFound",
                    format!("Resource group '{rg_name}' could not be found."),
                );
            };
            let tail = &seg[4..];
            match rest {
                [] if get => {
                    let store = s.templates.lock().unwrap();
                    ok(resource_group_body(
                        &sub_id,
                        rg_name,
                        &location,
                        store.staging_group_owner(&sub_id, rg_name),
                        store.staging_group_tags(&sub_id, rg_name),
                    ))
                }
                [] => method_not_allowed(req),
                ["resources"] if get => ok(group_resources(s, &sub_id, rg_name)),
                [
                    "providers",
                    "microsoft.compute",
                    "galleries",
                    _,
                    "images",
                    _,
                ] if get => crate::gallery::get_definition(s, &sub_id, rg_name, tail[3], tail[5]),
                [
                    "providers",
                    "microsoft.compute",
                    "galleries",
                    _,
                    "images",
                    _,
                    "versions",
                    version @ ..,
                ] if get && version.len() <= 1 => {
                    crate::gallery::get(s, &sub_id, rg_name, tail[3], tail[5], tail.get(7).copied())
                }
                ["providers", "microsoft.storage", "storageaccounts"] if get => {
                    storage_accounts::list(s, req, &sub_id, Some(rg_name), &api_version)
                }
                ["providers", "microsoft.storage", "storageaccounts", _] if get => {
                    storage_accounts::get(s, &sub_id, rg_name, tail[3])
                }
                [
                    "providers",
                    "microsoft.storage",
                    "storageaccounts",
                    _,
                    "listkeys",
                ] if req.method == Method::POST => {
                    storage_accounts::list_keys(s, &sub_id, rg_name, tail[3], &caller_oid)
                }
                [
                    "providers",
                    "microsoft.managedidentity",
                    "userassignedidentities",
                    _,
                ] if get => managed_identity(s, &sub_id, rg_name, tail[3]),
                [
                    "providers",
                    "microsoft.virtualmachineimages",
                    "imagetemplates",
                ] if get => image_templates::list(s, &sub_id, Some(rg_name)),
                [
                    "providers",
                    "microsoft.virtualmachineimages",
                    "imagetemplates",
                    _,
                    action @ ..,
                ] => {
                    image_templates::dispatch(
                        s,
                        req,
                        &sub_id,
                        rg_name,
                        tail[3],
                        &tail[4..],
                        action,
                        &api_version,
                    )
                    .await
                }
                // A resource an aborted run left in a staging group.
                ["providers", _, _, _]
                    if get
                        && let Some(r) = s
                            .templates
                            .lock()
                            .unwrap()
                            .staging_resources(&sub_id, rg_name)
                            .into_iter()
                            .find(|r| {
                                r["type"].as_str().is_some_and(|t| {
                                    t.eq_ignore_ascii_case(&format!("{}/{}", tail[1], tail[2]))
                                }) && r["name"]
                                    .as_str()
                                    .is_some_and(|n| n.eq_ignore_ascii_case(tail[3]))
                            }) =>
                {
                    ok(r)
                }
                _ if rest.first() == Some(&"providers") && rest.len() >= 3 => not_found(
                    &format!(
                        "{}/{}",
                        tail.get(1).unwrap_or(&""),
                        tail.get(2).unwrap_or(&"")
                    ),
                    tail.get(3).unwrap_or(&""),
                    rg_name,
                ),
                _ => method_not_allowed(req),
            }
        }
        _ => method_not_allowed(req),
    }
}

/// ARM refuses every request for a resource provider the subscription has not registered with
/// 409 `MissingSubscriptionRegistration` ("Resolve errors for resource provider registration";
/// the body's wording and its detail with the namespace as `target` as captured in
/// Azure/go-autorest's `autorest/azure/rp_test.go`).
fn unregistered_provider(s: &State, sub_id: &str, seg: &[&str]) -> Option<Response> {
    let at = seg
        .iter()
        .position(|p| p.eq_ignore_ascii_case("providers"))?;
    let namespace = seg.get(at + 1)?;
    // The provider itself (its registration state, `register`) answers: only its resource
    // types are refused.
    if seg.len() <= at + 2
        || seg
            .get(at + 2)
            .is_some_and(|t| t.eq_ignore_ascii_case("register"))
    {
        return None;
    }
    let registered_name = s
        .config
        .unregistered_providers
        .iter()
        .find(|n| n.eq_ignore_ascii_case(namespace))?;
    let message = format!(
        "The subscription registration is in 'Unregistered' state. The subscription must be registered to use namespace '{registered_name}'. See https://aka.ms/rps-not-found for how to register subscriptions."
    );
    tracing::debug!("aib-emulator: {registered_name} is not registered in {sub_id}");
    Some(error_with_details(
        StatusCode::CONFLICT,
        "MissingSubscriptionRegistration",
        message.clone(),
        vec![
            json!({"code": "MissingSubscriptionRegistration", "target": registered_name, "message": message}),
        ],
    ))
}

/// A management lock on the resource group refuses writes with 409 `ScopeLocked` ("Lock your
/// resources to protect your infrastructure": `ReadOnly` refuses every write, including POST
/// actions such as listKeys; `CanNotDelete` refuses deletes). The message names the resource
/// and the locked scope as Azure's troubleshooting docs quote it.
fn locked(s: &State, req: &Req, sub_id: &str, seg: &[&str]) -> Option<Response> {
    if req.method == Method::GET || req.method == Method::HEAD {
        return None;
    }
    if !seg.get(2)?.eq_ignore_ascii_case("resourcegroups") {
        return None;
    }
    let rg = seg.get(3)?;
    let delete = req.method == Method::DELETE;
    let lock = s.config.locks.iter().find(|l| {
        l.subscription_id.eq_ignore_ascii_case(sub_id)
            && l.resource_group.eq_ignore_ascii_case(rg)
            && (l.level == crate::config::LockLevel::ReadOnly || delete)
    })?;
    let verb = if delete { "delete" } else { "write" };
    Some(error(
        StatusCode::CONFLICT,
        "ScopeLocked",
        format!(
            "The scope '{}' cannot perform {verb} operation because following scope(s) are locked: '/subscriptions/{sub_id}/resourceGroups/{}'. Please remove the lock and try again.",
            req.path, lock.resource_group
        ),
    ))
}

fn subscription_body(sub: &crate::config::SubscriptionConfig) -> Value {
    json!({
        "id": format!("/subscriptions/{}", sub.subscription_id),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": sub.subscription_id,
        "tenantId": sub.tenant_id,
        "displayName": sub.display_name,
        "state": "Enabled",
        "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"},
    })
}

fn managed_identity(s: &State, sub: &str, rg: &str, name: &str) -> Response {
    let mi = &s.config.managed_identity;
    let id = format!(
        "/subscriptions/{sub}/resourcegroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    );
    if !id.eq_ignore_ascii_case(&mi.resource_id) {
        return not_found("Microsoft.ManagedIdentity/userAssignedIdentities", name, rg);
    }
    ok(json!({
        "id": mi.resource_id,
        "name": name,
        "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
        "location": resource_group_location(s, sub, rg).unwrap_or_default(),
        "tags": {},
        "properties": {"tenantId": mi.tenant_id, "principalId": mi.object_id, "clientId": mi.client_id},
    }))
}
