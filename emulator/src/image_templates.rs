//! `Microsoft.VirtualMachineImages/imageTemplates`: the template store and its state machine.
//! PUT (validated with the swagger; Conflict for any existing template), GET and
//! lists, `run` (Queued → Building → Customizing → [Optimizing] → [Validating] → Distributing →
//! Succeeded/Failed, driven by tokio timers, with artifact checks and a packer log written as the
//! build goes by [`crate::build_log`]; also started by `autoRun`), `cancel`,
//! run outputs, DELETE, and the long-running operations (`Azure-AsyncOperation` status documents
//! and `Location` results) that report them. Also the 2024-02-01 fields: `validate` (validators
//! in the log; fail one with the fail-at knob or tag set to `Validating`; `continueDistributeOnFailure`,
//! `sourceValidationOnly`), `errorHandling` `abort` (the build VM and its resources stay in the
//! staging group, see [`Store::staging_resources`]), gallery versions ([`crate::gallery`]),
//! `vmProfile.vnetConfig` / `userAssignedIdentities` checks at PUT (`ValidationFailed`),
//! `managedResourceTags` on the staging group and its resources, `optimize.vmBoot`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, LazyLock},
    time::Duration,
};

use axum::{
    http::{HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::{
    arm::{self, error, error_with_details, ok},
    artifacts,
    build_log::{self, BuildLog, Schedule, Target, Writer},
    compute,
    config::defaults::{FAIL_AT_TAG, LOG_LATE_TAG, LOG_REWRITE_TAG, TIMEOUT_AT_TAG},
    gallery,
    packer_log::{self, LogInput, Outcome, Rendered},
    server::Req,
    state::{Shared, State, arm_time, now},
};

const TYPE: &str = "Microsoft.VirtualMachineImages/imageTemplates";
/// Stable api-versions ARM routes to Image Builder.
pub const API_VERSIONS: [&str; 7] = [
    "2020-02-14",
    "2021-10-01",
    "2022-02-14",
    "2022-07-01",
    "2023-07-01",
    "2024-02-01",
    "2025-10-01",
];
const SPEC_PATH: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.VirtualMachineImages/imageTemplates/{imageTemplateName}";

static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9-_.]{1,64}$").unwrap());
static IDENTITY_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^/subscriptions/[0-9a-f-]{36}/resourcegroups/[-\w._()]+/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[A-Za-z0-9][A-Za-z0-9_-]{2,127}$").unwrap()
});

/// `lastRunStatus.runSubState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunSubState {
    Queued,
    Building,
    Customizing,
    Optimizing,
    Validating,
    Distributing,
}

/// `lastRunStatus.runState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    Running,
    Canceling,
    Succeeded,
    PartiallySucceeded,
    Failed,
    Canceled,
}

/// Something that happened to a template, for tests to assert orders on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TemplateEvent {
    pub time: String,
    /// The template's resource id.
    pub template: String,
    /// e.g. `created`, `provisioningState=Succeeded`, `runSubState=Building`,
    /// `runState=Succeeded`, `cancel`, `deleted`.
    pub event: String,
}

#[derive(Debug, Clone)]
struct LastRun {
    start: OffsetDateTime,
    end: Option<OffsetDateTime>,
    state: RunState,
    sub_state: Option<RunSubState>,
    message: String,
}

#[derive(Debug)]
struct Template {
    id: String,
    subscription: String,
    resource_group: String,
    name: String,
    location: String,
    request: Value,
    provisioning_state: &'static str,
    staging_group: String,
    created: OffsetDateTime,
    last_run: Option<LastRun>,
    exact_version: Option<String>,
    run_outputs: Vec<Value>,
    /// VHDs this template's runs wrote into its staging group's account (`vhds/<blob>`); they
    /// go when the template (and so its staging group) is deleted.
    staging_vhds: Vec<String>,
    /// The build logs of this template's runs, oldest first; like the VHDs they live in the
    /// staging group's account and go with the template.
    logs: Vec<Arc<BuildLog>>,
    /// Resources a failed run left in the staging group under `errorHandling` `abort`.
    preserved: Vec<Value>,
    run_op: Option<String>,
    cancel_op: Option<String>,
    cancel: Option<Arc<Notify>>,
}

#[derive(Debug, Clone)]
struct Operation {
    id: String,
    subscription: String,
    location: String,
    status: &'static str,
    start: OffsetDateTime,
    end: Option<OffsetDateTime>,
    error: Option<Value>,
    polls: u32,
    /// Status code of the `Location` result once done.
    done_code: StatusCode,
}

/// Every template and operation of one emulator.
#[derive(Default)]
pub struct Store {
    templates: BTreeMap<String, Template>,
    operations: HashMap<String, Operation>,
    pub events: Vec<TemplateEvent>,
    pub deleted: Vec<String>,
}

fn key(sub: &str, rg: &str, name: &str) -> String {
    format!("{sub}/{rg}/{name}").to_ascii_lowercase()
}

fn group_name(staging_group_id: &str) -> &str {
    staging_group_id
        .rsplit('/')
        .next()
        .unwrap_or(staging_group_id)
}

impl Store {
    /// The operation `id` with this poll counted, if there is one.
    fn poll(&mut self, id: &str) -> Option<&mut Operation> {
        let op = self.operations.get_mut(&id.to_ascii_uppercase())?;
        op.polls += 1;
        Some(op)
    }

    fn event(&mut self, template: &str, event: impl Into<String>) {
        self.events.push(TemplateEvent {
            time: arm_time(now()),
            template: template.to_string(),
            event: event.into(),
        });
    }

    fn new_operation(&mut self, sub: &str, location: &str, done_code: StatusCode) -> String {
        let id = uuid::Uuid::new_v4().to_string().to_ascii_uppercase();
        self.operations.insert(
            id.clone(),
            Operation {
                id: id.clone(),
                subscription: sub.into(),
                location: location.into(),
                status: "InProgress",
                start: now(),
                end: None,
                error: None,
                polls: 0,
                done_code,
            },
        );
        id
    }

    fn finish_operation(&mut self, id: Option<&str>, status: &'static str, error: Option<Value>) {
        if let Some(op) = id.and_then(|id| self.operations.get_mut(id)) {
            op.status = status;
            op.end = Some(now());
            op.error = error;
        }
    }

    fn get_mut(&mut self, k: &str) -> Option<&mut Template> {
        self.templates.get_mut(k)
    }

    /// `(subscription, staging group name, location)` of every live template.
    pub fn staging_groups(&self) -> Vec<(String, String, String)> {
        self.templates
            .values()
            .map(|t| {
                (
                    t.subscription.clone(),
                    group_name(&t.staging_group).to_string(),
                    t.location.clone(),
                )
            })
            .collect()
    }

    pub fn staging_group_location(&self, sub: &str, rg: &str) -> Option<String> {
        self.staging_groups()
            .into_iter()
            .find(|(s, g, _)| s.eq_ignore_ascii_case(sub) && g.eq_ignore_ascii_case(rg))
            .map(|(_, _, l)| l)
    }

    /// The template that owns a staging group (`managedBy`).
    pub fn staging_group_owner(&self, sub: &str, rg: &str) -> Option<String> {
        self.templates
            .values()
            .find(|t| {
                t.subscription.eq_ignore_ascii_case(sub)
                    && group_name(&t.staging_group).eq_ignore_ascii_case(rg)
            })
            .map(|t| t.id.clone())
    }

    fn staging_template(&self, sub: &str, rg: &str) -> Option<&Template> {
        self.templates.values().find(|t| {
            t.subscription.eq_ignore_ascii_case(sub)
                && group_name(&t.staging_group).eq_ignore_ascii_case(rg)
        })
    }

    /// The tags of a staging group. "Create an Azure Image Builder Bicep or ARM template JSON
    /// template", "Template creation scenarios": a group Image Builder creates gets `createdBy`,
    /// `imageTemplateName` and `imageTemplateResourceGroupName` (the value of `createdBy` is not
    /// documented: `AzureVMImageBuilder` assumed); `managedResourceTags` are "applied to the
    /// resource group and/or resources created by the service" (swagger), so they are added.
    pub fn staging_group_tags(&self, sub: &str, rg: &str) -> Option<Value> {
        let t = self.staging_template(sub, rg)?;
        let mut tags = json!({
            "createdBy": "AzureVMImageBuilder",
            "imageTemplateName": t.name,
            "imageTemplateResourceGroupName": t.resource_group,
        });
        if let Some(extra) = t
            .request
            .pointer("/properties/managedResourceTags")
            .and_then(Value::as_object)
        {
            for (k, v) in extra {
                tags[k] = v.clone();
            }
        }
        Some(tags)
    }

    /// The resources failed runs left in a staging group (`errorHandling` `abort`).
    pub fn staging_resources(&self, sub: &str, rg: &str) -> Vec<Value> {
        self.staging_template(sub, rg)
            .map(|t| t.preserved.clone())
            .unwrap_or_default()
    }

    /// The URL of the last run's build log and the bytes written into it so far.
    pub fn build_log(&self, sub: &str, rg: &str, name: &str) -> Option<(String, Vec<u8>)> {
        let log = self.templates.get(&key(sub, rg, name))?.logs.last()?;
        Some((log.url.clone(), log.bytes()))
    }

    /// Keeps `log` as the template's newest; false (and nothing kept) when the template is gone
    /// or being deleted, so a log written now could outlive it.
    fn add_log(&mut self, k: &str, log: &Arc<BuildLog>) -> bool {
        match self.templates.get_mut(k) {
            Some(t) if t.provisioning_state != "Deleting" => {
                t.logs.push(log.clone());
                true
            }
            _ => false,
        }
    }

    pub fn view(&self, s: &State, sub: &str, rg: &str, name: &str) -> Option<Value> {
        self.templates.get(&key(sub, rg, name)).map(|t| view(s, t))
    }

    pub fn views(&self, s: &State) -> Vec<(String, Value)> {
        self.templates
            .values()
            .map(|t| (t.id.clone(), view(s, t)))
            .collect()
    }
}

/// The template as GET answers it: the request plus id, name, type and read-only fields.
fn view(s: &State, t: &Template) -> Value {
    let mut v = t.request.clone();
    v["id"] = json!(t.id);
    v["name"] = json!(t.name);
    v["type"] = json!(TYPE);
    if v.get("tags").is_none() {
        v["tags"] = json!({});
    }
    if let Some(ids) = v
        .pointer_mut("/identity/userAssignedIdentities")
        .and_then(Value::as_object_mut)
    {
        let mi = &s.config.managed_identity;
        for (id, entry) in ids.iter_mut() {
            if id.eq_ignore_ascii_case(&mi.resource_id) {
                *entry = json!({"principalId": mi.object_id, "clientId": mi.client_id});
            }
        }
    }
    let p = &mut v["properties"];
    if !p.is_object() {
        *p = json!({});
    }
    p["provisioningState"] = json!(t.provisioning_state);
    p["exactStagingResourceGroup"] = json!(t.staging_group);
    if p.get("buildTimeoutInMinutes").is_none() {
        p["buildTimeoutInMinutes"] = json!(0);
    }
    if p.get("vmProfile").is_none() {
        p["vmProfile"] = json!({"vmSize": "", "osDiskSizeGB": 0});
    }
    if let (Some(version), Some(source)) = (&t.exact_version, p.get_mut("source")) {
        source["exactVersion"] = json!(version);
    }
    if let Some(run) = &t.last_run {
        let mut status = json!({"startTime": arm_time(run.start), "runState": run.state, "message": run.message});
        status["endTime"] = json!(
            run.end
                .map(arm_time)
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
        );
        if let Some(sub) = run.sub_state {
            status["runSubState"] = json!(sub);
        }
        p["lastRunStatus"] = status;
    }
    let created = arm_time(t.created);
    v["systemData"] = json!({
        "createdBy": s.config.service_principals.first().map(|sp| sp.client_id.clone()).unwrap_or_default(),
        "createdByType": "Application", "createdAt": created,
        "lastModifiedBy": s.config.service_principals.first().map(|sp| sp.client_id.clone()).unwrap_or_default(),
        "lastModifiedByType": "Application", "lastModifiedAt": created,
    });
    v
}

fn operation_urls(
    s: &State,
    sub: &str,
    location: &str,
    op: &str,
    api_version: &str,
) -> (String, String) {
    let base = format!(
        "{}subscriptions/{sub}/providers/Microsoft.VirtualMachineImages/locations/{location}",
        s.base_url
    );
    (
        format!("{base}/operations/{op}?api-version={api_version}"),
        format!("{base}/operationresults/{op}?api-version={api_version}"),
    )
}

fn lro_headers(s: &State, r: &mut Response, async_url: Option<&str>, location_url: Option<&str>) {
    let h = r.headers_mut();
    if let Some(u) = async_url.and_then(|u| HeaderValue::from_str(u).ok()) {
        h.insert("azure-asyncoperation", u);
    }
    if let Some(u) = location_url.and_then(|u| HeaderValue::from_str(u).ok()) {
        h.insert("location", u);
    }
    h.insert(
        "retry-after",
        HeaderValue::from(s.config.timing.retry_after_secs),
    );
}

/// `GET …/imageTemplates` by subscription or group.
pub fn list(s: &State, sub: &str, rg: Option<&str>) -> Response {
    let store = s.templates.lock().unwrap();
    let value: Vec<Value> = store
        .templates
        .values()
        .filter(|t| {
            t.subscription.eq_ignore_ascii_case(sub)
                && rg.is_none_or(|rg| t.resource_group.eq_ignore_ascii_case(rg))
        })
        .map(|t| view(s, t))
        .collect();
    ok(json!({"value": value}))
}

fn operation_not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "OperationNotFound",
        format!("The operation '{id}' could not be found."),
    )
}

/// `GET …/locations/{loc}/operations/{id}` (the `Azure-AsyncOperation` document).
pub fn operation_status(s: &State, id: &str) -> Response {
    let mut store = s.templates.lock().unwrap();
    let Some(op) = store.poll(id) else {
        return operation_not_found(id);
    };
    let early = op.polls <= s.config.timing.lro_min_polls;
    let status = if early { "InProgress" } else { op.status };
    let mut body = json!({
        "id": format!("/subscriptions/{}/providers/Microsoft.VirtualMachineImages/locations/{}/operations/{}", op.subscription, op.location, op.id),
        "name": op.id,
        "status": status,
        "startTime": arm_time(op.start),
    });
    if !early {
        if let Some(end) = op.end {
            body["endTime"] = json!(arm_time(end));
        }
        if let Some(e) = &op.error {
            body["error"] = e.clone();
        }
    }
    let mut r = ok(body);
    if status == "InProgress" {
        lro_headers(s, &mut r, None, None);
    }
    r
}

/// `GET …/locations/{loc}/operationresults/{id}` (the `Location` poll).
pub fn operation_result(s: &State, id: &str) -> Response {
    let mut store = s.templates.lock().unwrap();
    let Some(op) = store.poll(id) else {
        return operation_not_found(id);
    };
    if op.polls <= s.config.timing.lro_min_polls || op.status == "InProgress" {
        let mut r = StatusCode::ACCEPTED.into_response();
        let url = format!(
            "{}subscriptions/{}/providers/Microsoft.VirtualMachineImages/locations/{}/operationresults/{}?api-version=2024-02-01",
            s.base_url, op.subscription, op.location, op.id
        );
        lro_headers(s, &mut r, None, Some(&url));
        return r;
    }
    match (&op.error, op.status) {
        (Some(e), "Failed") => {
            let code = e
                .get("code")
                .and_then(Value::as_str)
                .unwrap_or("InternalOperationError")
                .to_string();
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            error(StatusCode::BAD_REQUEST, &code, message)
        }
        _ => op.done_code.into_response(),
    }
}

/// Routes `…/imageTemplates/{name}[/action…]`.
#[allow(clippy::too_many_arguments)]
pub async fn dispatch(
    s: &Shared,
    req: &Req,
    sub: &str,
    rg: &str,
    name: &str,
    tail: &[&str],
    action: &[&str],
    api_version: &str,
) -> Response {
    if !API_VERSIONS.contains(&api_version) {
        return error(
            StatusCode::BAD_REQUEST,
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location '{}' and API version '{api_version}' for type 'imageTemplates'. The supported api-versions are '{}'.",
                crate::config::defaults::LOCATION,
                API_VERSIONS.join(", ")
            ),
        );
    }
    let k = key(sub, rg, name);
    match (req.method.clone(), action) {
        (Method::PUT, []) => put(s, req, sub, rg, name, api_version),
        (Method::GET, []) => match s.templates.lock().unwrap().templates.get(&k) {
            Some(t) => ok(view(s, t)),
            None => arm::not_found(TYPE, name, rg),
        },
        (Method::DELETE, []) => delete(s, &k, api_version),
        (Method::POST, ["run"]) => run(s, &k, name, rg, api_version),
        (Method::POST, ["cancel"]) => cancel(s, &k, name, rg, api_version),
        (Method::GET, ["runoutputs"]) => match s.templates.lock().unwrap().templates.get(&k) {
            Some(t) => ok(json!({"value": t.run_outputs})),
            None => arm::not_found(TYPE, name, rg),
        },
        (Method::GET, ["runoutputs", _]) => {
            let wanted = tail[1];
            match s.templates.lock().unwrap().templates.get(&k) {
                Some(t) => match t.run_outputs.iter().find(|o| {
                    o["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(wanted))
                }) {
                    Some(o) => ok(o.clone()),
                    None => arm::not_found(
                        &format!("{TYPE}/runOutputs"),
                        &format!("{name}/{wanted}"),
                        rg,
                    ),
                },
                None => arm::not_found(TYPE, name, rg),
            }
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "The requested resource does not support http method '{}'.",
                req.method
            ),
        ),
    }
}

fn invalid(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "InvalidParameter", message)
}

/// Image Builder's own refusal of a template field, in the shape "What's new in Azure VM Image
/// Builder" shows for 2021-10-01 and later (400, `ValidationFailed`, "Validation failed:
/// 'ImageTemplate.properties.source': Field 'imageId' has a bad value: '…'. Please review
/// http://aka.ms/azvmimagebuildertmplref for details on fields requirements in the Image Builder
/// Template."). `why` follows the field; the rules themselves cite their pages below.
fn validation_failed(path: &str, field: &str, why: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "ValidationFailed",
        format!(
            "Validation failed: 'ImageTemplate.properties.{path}': Field '{field}' {why}. Please review http://aka.ms/azvmimagebuildertmplref for details on fields requirements in the Image Builder Template."
        ),
    )
}

static SUBNET_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Network/virtualNetworks/[^/]+)/subnets/[^/]+$").unwrap()
});

/// The rules of the 2024-02-01 fields that the swagger's schema cannot say.
fn check_properties(body: &Value) -> Result<(), Box<Response>> {
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let props = body.get("properties").cloned().unwrap_or(Value::Null);
    // vnetConfig: template reference ("vmProfile", "vnetConfig") and the swagger's
    // VirtualNetworkConfig: `containerInstanceSubnetId` "can be specified only if `subnetId` is
    // also specified", "must be on the same Virtual Network", "must not be the same subnet";
    // `proxyVmSize` "must not be specified if `containerInstanceSubnetId` is specified because
    // no proxy virtual machine is deployed in that case".
    let vnet = props.pointer("/vmProfile/vnetConfig");
    let subnet = text(vnet.and_then(|v| v.get("subnetId")));
    let aci = text(vnet.and_then(|v| v.get("containerInstanceSubnetId")));
    let proxy = text(vnet.and_then(|v| v.get("proxyVmSize")));
    for (field, id) in [("subnetId", &subnet), ("containerInstanceSubnetId", &aci)] {
        if let Some(id) = id
            && !SUBNET_ID.is_match(id)
        {
            return Err(Box::new(validation_failed(
                "vmProfile.vnetConfig",
                field,
                &format!(
                    "has a bad value: '{id}'. Expected '/subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}/providers/Microsoft.Network/virtualNetworks/{{vnetName}}/subnets/{{subnetName}}'"
                ),
            )));
        }
    }
    if let Some(aci) = &aci {
        let Some(subnet) = &subnet else {
            return Err(Box::new(validation_failed(
                "vmProfile.vnetConfig",
                "containerInstanceSubnetId",
                "can be specified only if 'subnetId' is also specified",
            )));
        };
        if aci.eq_ignore_ascii_case(subnet) {
            return Err(Box::new(validation_failed(
                "vmProfile.vnetConfig",
                "containerInstanceSubnetId",
                "must not be the same subnet as the one specified in 'subnetId'",
            )));
        }
        let vnet_of = |id: &str| SUBNET_ID.captures(id).map(|c| c[1].to_ascii_lowercase());
        if vnet_of(aci) != vnet_of(subnet) {
            return Err(Box::new(validation_failed(
                "vmProfile.vnetConfig",
                "containerInstanceSubnetId",
                "must be on the same Virtual Network as the subnet specified in 'subnetId'",
            )));
        }
        if proxy.is_some() {
            return Err(Box::new(validation_failed(
                "vmProfile.vnetConfig",
                "proxyVmSize",
                "must not be specified if 'containerInstanceSubnetId' is specified because no proxy virtual machine is deployed in that case",
            )));
        }
    }
    // vmProfile.userAssignedIdentities: a list of user-assigned identity resource ids (template
    // reference, "User-assigned identity for the Image Builder Build VM").
    if let Some(ids) = props
        .pointer("/vmProfile/userAssignedIdentities")
        .and_then(Value::as_array)
    {
        for id in ids {
            let id = id.as_str().unwrap_or("");
            if !IDENTITY_ID.is_match(id) {
                return Err(Box::new(validation_failed(
                    "vmProfile",
                    "userAssignedIdentities",
                    &format!(
                        "has a bad value: '{id}'. Expected '/subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{{identityName}}'"
                    ),
                )));
            }
        }
    }
    // sourceValidationOnly: "the image specified in the 'source' section will directly be
    // validated. No separate build will be run" (swagger). Customizers could then never run;
    // whether Image Builder refuses them is not documented: refused here, the plausible answer
    // to a template that cannot do what it says.
    let source_only = props
        .pointer("/validate/sourceValidationOnly")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let customizers = props
        .get("customize")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if source_only && customizers > 0 {
        return Err(Box::new(validation_failed(
            "validate",
            "sourceValidationOnly",
            "cannot be true when customizers are specified: with source validation only no build is run to customize an image",
        )));
    }
    for (i, d) in props
        .get("distribute")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if d.get("type").and_then(Value::as_str) != Some("SharedImage") {
            continue;
        }
        let path = format!("distribute[{i}]");
        let id = d
            .get("galleryImageId")
            .and_then(Value::as_str)
            .unwrap_or("");
        // Template reference, Distribute: sharedImage: an image definition id or an image
        // version id ("for example: 1.1.1").
        let Some((_, explicit)) = crate::gallery::parse_gallery_image_id(id) else {
            return Err(Box::new(validation_failed(
                &path,
                "galleryImageId",
                &format!("has a bad value: '{id}'"),
            )));
        };
        if let Some(v) = &explicit
            && !crate::gallery::is_version_name(v)
        {
            return Err(Box::new(validation_failed(
                &path,
                "galleryImageId",
                &format!("has a bad value: '{id}'. The image version must be Major.Minor.Patch"),
            )));
        }
        let scheme = d.pointer("/versioning/scheme").and_then(Value::as_str);
        // `versioning` "Describes how to generate new x.y.z version number" (swagger): with a
        // version given there is nothing to generate. Refusing the pair is the emulator's
        // choice; the docs do not say.
        if explicit.is_some() && scheme.is_some() {
            return Err(Box::new(validation_failed(
                &path,
                "versioning",
                "cannot be specified when 'galleryImageId' names an image version",
            )));
        }
        // `Source`: "Schema based upon the version number of the source image" (template
        // reference, versioning). A managed image has no version number, so it cannot work;
        // refusing at PUT is assumed (not documented).
        let source_type = props
            .pointer("/source/type")
            .and_then(Value::as_str)
            .unwrap_or("");
        if scheme.is_some_and(|s| s.eq_ignore_ascii_case("Source")) && source_type == "ManagedImage"
        {
            return Err(Box::new(validation_failed(
                &format!("{path}.versioning"),
                "scheme",
                "'Source' requires a source image with a version number (PlatformImage or SharedImageVersion); a ManagedImage source has none",
            )));
        }
    }
    Ok(())
}

fn put(s: &Shared, req: &Req, sub: &str, rg: &str, name: &str, api_version: &str) -> Response {
    if !NAME.is_match(name) {
        return invalid(format!(
            "The image template name '{name}' is invalid. It must match the pattern '^[A-Za-z0-9-_.]{{1,64}}$'."
        ));
    }
    let body = match req.json() {
        Ok(Value::Object(o)) => Value::Object(o),
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: the body must be a JSON object.",
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: '{e}'."),
            );
        }
    };
    if let Some(spec) = s.swagger.get(api_version)
        && let Err(issues) = spec.validate_request_body("PUT", SPEC_PATH, &body)
    {
        let first = issues
            .first()
            .map(|i| format!("{}: {}", i.path, i.message))
            .unwrap_or_default();
        return error_with_details(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!(
                "The request content was invalid and could not be deserialized: {first} ({} problem(s) in total).",
                issues.len()
            ),
            issues.iter().map(|i| i.to_arm_detail()).collect(),
        );
    }
    let Some(location) = body
        .get("location")
        .and_then(Value::as_str)
        .filter(|l| !l.is_empty())
        .map(|l| l.to_ascii_lowercase().replace(' ', ""))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "LocationRequired",
            "The location property is required for this definition.",
        );
    };
    let identity_type = body
        .pointer("/identity/type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !identity_type.contains("UserAssigned") {
        return invalid(
            "A user assigned identity is required for image templates (identity.type 'UserAssigned'). For more information, see https://aka.ms/azvmimagebuilderts.",
        );
    }
    let ids: Vec<&String> = body
        .pointer("/identity/userAssignedIdentities")
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    if ids.len() != 1 {
        return invalid(format!(
            "Exactly one user assigned identity must be specified for the image template; got {}.",
            ids.len()
        ));
    }
    if !IDENTITY_ID.is_match(ids[0]) {
        return invalid(format!(
            "The user assigned identity resource ID '{}' is not valid. Expected '/subscriptions/{{subscriptionId}}/resourceGroups/{{resourceGroupName}}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{{identityName}}'.",
            ids[0]
        ));
    }
    if let Err(refusal) = check_properties(&body) {
        return *refusal;
    }
    if let Err(refusal) = crate::preflight::check_template_put(s, sub, &body, &location) {
        return *refusal;
    }
    if let Some(source) = body.pointer("/properties/source")
        && source.get("type").and_then(Value::as_str) == Some("PlatformImage")
    {
        let field = |k: &str| source.get(k).and_then(Value::as_str).unwrap_or("");
        let image = compute::find_image(s, field("publisher"), field("offer"), field("sku"));
        let version = field("version");
        let known = image.is_some_and(|i| {
            version.eq_ignore_ascii_case("latest")
                || i.versions.iter().any(|v| v.eq_ignore_ascii_case(version))
        });
        if !known {
            return invalid(format!(
                "The platform image '{}:{}:{}:{version}' could not be found in location '{location}'. Please check the publisher, offer, sku and version.",
                field("publisher"),
                field("offer"),
                field("sku")
            ));
        }
        // An image sold with a purchase plan cannot be built without that plan.
        if let Some((name, product, publisher)) = image.and_then(|i| i.plan.clone()) {
            let plan = |k: &str| {
                source
                    .pointer(&format!("/planInfo/{k}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            if plan("planName") != name
                || plan("planProduct") != product
                || plan("planPublisher") != publisher
            {
                return invalid(format!(
                    "The platform image '{}:{}:{}' requires the purchase plan (planName '{name}', planProduct '{product}', planPublisher '{publisher}') in properties.source.planInfo.",
                    field("publisher"),
                    field("offer"),
                    field("sku")
                ));
            }
        }
    }

    let k = key(sub, rg, name);
    let mut store = s.templates.lock().unwrap();
    // "Troubleshoot Azure VM Image Builder", "Update/Upgrade of image templates is currently not
    // supported": the cause is simply "The template already exists", whatever the new body
    // says, so a retried PUT of the very same body is refused too.
    if store.templates.contains_key(&k) {
        return error(
            StatusCode::CONFLICT,
            "Conflict",
            "Update/Upgrade of image templates is currently not supported. Please change the name of the template you are submitting. For more information, please see https://aka.ms/azvmimagebuilderts.",
        );
    }
    let id = format!("/subscriptions/{sub}/resourcegroups/{rg}/providers/{TYPE}/{name}");
    let staging_group = match body
        .pointer("/properties/stagingResourceGroup")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
    {
        Some(g) => g.to_string(),
        None => {
            let mut group = format!("IT_{rg}_{name}_{}", uuid::Uuid::new_v4());
            group.truncate(90);
            format!("/subscriptions/{sub}/resourceGroups/{group}")
        }
    };
    let op = store.new_operation(sub, &location, StatusCode::OK);
    store.templates.insert(
        k.clone(),
        Template {
            id: id.clone(),
            subscription: sub.into(),
            resource_group: rg.into(),
            name: name.into(),
            location: location.clone(),
            request: body,
            provisioning_state: "Creating",
            staging_group,
            created: now(),
            last_run: None,
            exact_version: None,
            run_outputs: Vec::new(),
            staging_vhds: Vec::new(),
            logs: Vec::new(),
            preserved: Vec::new(),
            run_op: None,
            cancel_op: None,
            cancel: None,
        },
    );
    store.event(&id, "created");
    let mut r = (
        StatusCode::CREATED,
        axum::Json(view(s, &store.templates[&k])),
    )
        .into_response();
    drop(store);
    let (async_url, _) = operation_urls(s, sub, &location, &op, api_version);
    lro_headers(s, &mut r, Some(&async_url), None);

    let s2 = s.clone();
    s.spawn_background(async move {
        tokio::time::sleep(s2.config.timing.lro).await;
        let auto_run = {
            let mut store = s2.templates.lock().unwrap();
            let Some(t) = store
                .get_mut(&k)
                .filter(|t| t.provisioning_state == "Creating")
            else {
                return;
            };
            t.provisioning_state = "Succeeded";
            let id = t.id.clone();
            let auto_run = t
                .request
                .pointer("/properties/autoRun/state")
                .and_then(Value::as_str)
                == Some("Enabled");
            store.finish_operation(Some(&op), "Succeeded", None);
            store.event(&id, "provisioningState=Succeeded");
            auto_run
        };
        // `autoRun.state: Enabled` starts a build once the template is created.
        if auto_run {
            let _ = start_run(&s2, &k, "", "");
        }
    });
    r
}

fn run(s: &Shared, k: &str, name: &str, rg: &str, api_version: &str) -> Response {
    match start_run(s, k, name, rg) {
        Ok((sub, location, op)) => {
            let (async_url, location_url) = operation_urls(s, &sub, &location, &op, api_version);
            let mut r = StatusCode::ACCEPTED.into_response();
            lro_headers(s, &mut r, Some(&async_url), Some(&location_url));
            r
        }
        Err(refusal) => *refusal,
    }
}

/// Begins a build: `(subscription, location, run operation id)`, or the refusal.
fn start_run(
    s: &Shared,
    k: &str,
    name: &str,
    rg: &str,
) -> Result<(String, String, String), Box<Response>> {
    let mut store = s.templates.lock().unwrap();
    let Some(t) = store.templates.get(k) else {
        return Err(Box::new(arm::not_found(TYPE, name, rg)));
    };
    if t.provisioning_state != "Succeeded" {
        return Err(Box::new(error(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Cannot run image template '{name}' while its provisioningState is '{}'. Wait until the template is provisioned (provisioningState 'Succeeded').",
                t.provisioning_state
            ),
        )));
    }
    if let Some(run) = &t.last_run
        && matches!(run.state, RunState::Running | RunState::Canceling)
    {
        return Err(Box::new(not_allowed(
            "run",
            t.provisioning_state,
            run.state,
        )));
    }
    let (sub, location, id) = (t.subscription.clone(), t.location.clone(), t.id.clone());
    let op = store.new_operation(&sub, &location, StatusCode::OK);
    let cancel = Arc::new(Notify::new());
    let t = store.get_mut(k).expect("template exists");
    t.last_run = Some(LastRun {
        start: now(),
        end: None,
        state: RunState::Running,
        sub_state: Some(RunSubState::Queued),
        message: String::new(),
    });
    t.run_op = Some(op.clone());
    t.cancel_op = None;
    t.run_outputs.clear();
    t.cancel = Some(cancel.clone());
    store.event(&id, "run");
    store.event(&id, "runSubState=Queued");
    drop(store);
    let (s2, k2) = (s.clone(), k.to_string());
    s.spawn_background(async move { build(s2, k2, cancel).await });
    Ok((sub, location, op))
}

fn cancel(s: &Shared, k: &str, name: &str, rg: &str, api_version: &str) -> Response {
    let mut store = s.templates.lock().unwrap();
    let Some(t) = store.templates.get(k) else {
        return arm::not_found(TYPE, name, rg);
    };
    if !t
        .last_run
        .as_ref()
        .is_some_and(|r| r.state == RunState::Running)
    {
        return error(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Image template '{name}' has no build in progress to cancel (runState '{}').",
                t.last_run
                    .as_ref()
                    .map(|r| format!("{:?}", r.state))
                    .unwrap_or_else(|| "None".into())
            ),
        );
    }
    let (sub, location, id) = (t.subscription.clone(), t.location.clone(), t.id.clone());
    let op = store.new_operation(&sub, &location, StatusCode::OK);
    let t = store.get_mut(k).expect("template exists");
    if let Some(run) = t.last_run.as_mut() {
        run.state = RunState::Canceling;
    }
    t.cancel_op = Some(op.clone());
    if let Some(n) = &t.cancel {
        n.notify_one();
    }
    store.event(&id, "cancel");
    store.event(&id, "runState=Canceling");
    drop(store);
    let (async_url, location_url) = operation_urls(s, &sub, &location, &op, api_version);
    let mut r = StatusCode::ACCEPTED.into_response();
    lro_headers(s, &mut r, Some(&async_url), Some(&location_url));
    r
}

/// Image Builder refuses an operation while a run is going on or being cancelled, naming the
/// states in the message, as users reported for delete ("Operation
/// 'Microsoft.VirtualMachineImages/imageTemplates/delete' is not allowed in provisioningState:
/// 'provisioned', runState: 'running'", danielsollondon/azvmimagebuilder issue 38; "…run state:
/// canceling", issues 79 and 116) and while the template is still being created (Azure/azvmimagebuilder
/// issue 65). The HTTP status is not in those reports; ARM's status for a refused write in the
/// resource's current state is 409.
fn not_allowed(operation: &str, provisioning: &str, run: RunState) -> Response {
    let provisioning = if provisioning == "Succeeded" {
        "provisioned".to_owned()
    } else {
        provisioning.to_ascii_lowercase()
    };
    error(
        StatusCode::CONFLICT,
        "OperationNotAllowed",
        format!(
            "Operation 'Microsoft.VirtualMachineImages/imageTemplates/{operation}' is not allowed in provisioningState: '{provisioning}', runState: '{}'",
            format!("{run:?}").to_ascii_lowercase()
        ),
    )
}

fn delete(s: &Shared, k: &str, api_version: &str) -> Response {
    let mut store = s.templates.lock().unwrap();
    let Some(t) = store.get_mut(k) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    if let Some(run) = &t.last_run
        && matches!(run.state, RunState::Running | RunState::Canceling)
    {
        return not_allowed("delete", t.provisioning_state, run.state);
    }
    if t.provisioning_state == "Creating" {
        return error(
            StatusCode::CONFLICT,
            "OperationNotAllowed",
            "Operation 'DELETE' is not allowed in provisioningState: 'creating'",
        );
    }
    // A second DELETE while the first is under way: how Image Builder answers is not
    // documented; modelled as the same refusal in the 'deleting' state, the answer a client
    // must be ready for (a retry after a lost answer meets it).
    if t.provisioning_state == "Deleting" {
        return error(
            StatusCode::CONFLICT,
            "OperationNotAllowed",
            "Operation 'DELETE' is not allowed in provisioningState: 'deleting'",
        );
    }
    t.provisioning_state = "Deleting";
    if let Some(n) = t.cancel.take() {
        n.notify_one();
    }
    let (sub, location, id) = (t.subscription.clone(), t.location.clone(), t.id.clone());
    let op = store.new_operation(&sub, &location, StatusCode::NO_CONTENT);
    store.event(&id, "delete");
    drop(store);
    let (async_url, location_url) = operation_urls(s, &sub, &location, &op, api_version);
    let mut r = StatusCode::ACCEPTED.into_response();
    lro_headers(s, &mut r, Some(&async_url), Some(&location_url));
    let (s2, k2) = (s.clone(), k.to_string());
    s.spawn_background(async move {
        tokio::time::sleep(s2.config.timing.lro).await;
        // Deleting the template deletes its staging group, with any VHD Image Builder wrote
        // there (template reference, "Distribute: VHD": "If you delete the image template, then
        // you'll lose the VHD"), before the template itself is gone.
        // The build logs go the same way ("Troubleshoot Azure VM Image Builder": the logs are
        // in the staging group's storage account; REFERENCE §7, "Build log while running").
        let (vhds, logs) = s2
            .templates
            .lock()
            .unwrap()
            .templates
            .get(&k2)
            .map(|t| (t.staging_vhds.clone(), t.logs.clone()))
            .unwrap_or_default();
        let target = Target {
            http: s2.http.clone(),
            account: s2.config.staging_storage.clone(),
        };
        for log in logs {
            log.delete(&target).await;
        }
        for blob in vhds {
            if let Err(e) =
                crate::blobs::delete(&s2.http, &s2.config.staging_storage, VHD_CONTAINER, &blob)
                    .await
            {
                tracing::warn!("aib-emulator: could not delete the staging VHD {blob}: {e:#}");
            }
        }
        let mut store = s2.templates.lock().unwrap();
        if let Some(t) = store.templates.remove(&k2) {
            let run_op = t.run_op.clone();
            if t.last_run
                .as_ref()
                .is_some_and(|r| matches!(r.state, RunState::Running | RunState::Canceling))
            {
                store.finish_operation(run_op.as_deref(), "Canceled", None);
            }
            store.deleted.push(t.id.clone());
            store.event(&t.id, "deleted");
        }
        store.finish_operation(Some(&op), "Succeeded", None);
    });
    r
}

/// Sleeps `d`, or returns false early when a cancel arrives.
async fn phase_wait(d: Duration, cancel: &Notify) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.notified() => false,
    }
}

/// The sub-state at which this run must fail, if any: the template's `tag`, else `config`.
fn sub_state_knob(request: &Value, tag: &str, config: Option<RunSubState>) -> Option<RunSubState> {
    match request
        .pointer(&format!("/tags/{tag}"))
        .and_then(Value::as_str)
    {
        Some(t) => serde_json::from_value(json!(t)).ok(),
        None => config,
    }
}

/// The run's outcome as far as the knobs tell when Customizing starts: the first of `phases`
/// from Customizing on where `fail_at` (checked first) or `timeout_at` strikes.
fn foretold(
    phases: &[(RunSubState, Duration)],
    fail_at: Option<RunSubState>,
    timeout_at: Option<RunSubState>,
) -> Outcome {
    phases
        .iter()
        .map(|(p, _)| *p)
        .skip_while(|p| *p != RunSubState::Customizing)
        .find_map(|phase| {
            if fail_at == Some(phase) {
                Some(Outcome::Failed {
                    phase,
                    detail: None,
                })
            } else if timeout_at == Some(phase) {
                Some(Outcome::Failed {
                    phase,
                    detail: Some(DEADLINE_EXCEEDED.into()),
                })
            } else {
                None
            }
        })
        .unwrap_or(Outcome::Succeeded)
}

const DEADLINE_EXCEEDED: &str = "context deadline exceeded";

/// The log schedule of a run: the config's, overridden by the template's tags.
fn log_schedule(s: &State, request: &Value) -> Schedule {
    let tag = |name: &str| {
        request
            .pointer(&format!("/tags/{name}"))
            .and_then(Value::as_str)
    };
    Schedule {
        steps: s.config.timing.log_steps,
        customizing: s.config.timing.customizing,
        late: match tag(LOG_LATE_TAG) {
            Some(ms) => ms.trim().parse().ok().map(Duration::from_millis),
            None => s.config.log_late,
        },
        rewrite: match tag(LOG_REWRITE_TAG) {
            Some(v) => v.trim().eq_ignore_ascii_case("true"),
            None => s.config.log_rewrite,
        },
    }
}

/// The container of the staging account VHDs are written to.
const VHD_CONTAINER: &str = "vhds";

/// Writes each VHD distributor's VHD: into the staging account when it has no `uri` (swagger:
/// "Omit to use the default … in which case VHD would be published to the storage account in
/// the staging resource group"), else to the user's blob (2022-07-01 and later), which must be
/// in an account the emulator knows (Azurite). `(runOutputName, URL, staging blob)` each.
async fn distribute_vhds(
    s: &State,
    name: &str,
    props: &Value,
) -> Result<Vec<(String, String, Option<String>)>, String> {
    let mut written = Vec::new();
    for d in props
        .get("distribute")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|d| d.get("type").and_then(Value::as_str) == Some("VHD"))
    {
        let out_name = d
            .get("runOutputName")
            .and_then(Value::as_str)
            .unwrap_or("output")
            .to_owned();
        let uri = d
            .get("uri")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty());
        let vhd = crate::blobs::fixed_vhd(&format!("{name}/{out_name}"));
        match uri {
            None => {
                let blob = format!("{name}_{}.vhd", now().unix_timestamp_nanos() / 1_000_000);
                let staging = &s.config.staging_storage;
                let url = if crate::blobs::wired(staging) {
                    crate::blobs::put(
                        &s.http,
                        staging,
                        VHD_CONTAINER,
                        &blob,
                        vhd,
                        "application/octet-stream",
                    )
                    .await
                    .map_err(|e| format!("writing the VHD: {e:#}"))?
                    .to_string()
                } else {
                    // Without Azurite the URL is all there is, as for the packer log.
                    format!("{}{VHD_CONTAINER}/{blob}", staging.blob_endpoint)
                };
                written.push((out_name, url, Some(blob)));
            }
            Some(uri) => {
                let target = s
                    .config
                    .storage_accounts
                    .iter()
                    .find_map(|a| {
                        let rest = uri.strip_prefix(&a.blob_endpoint)?;
                        let (container, blob) = rest.split_once('/')?;
                        Some((a, container.to_owned(), blob.to_owned()))
                    })
                    .ok_or_else(|| {
                        // Emulator wording (Image Builder's is not documented): the identity
                        // needs write access to the destination, which only accounts the
                        // emulator knows in Azurite can give.
                        format!("Distribution of VHD to '{uri}' failed: AuthorizationPermissionMismatch: the image template's identity cannot write to this storage account")
                    })?;
                let (account, container, blob) = target;
                crate::blobs::put(
                    &s.http,
                    account,
                    &container,
                    &blob,
                    vhd,
                    "application/octet-stream",
                )
                .await
                .map_err(|e| format!("Distribution of VHD to '{uri}' failed: {e:#}"))?;
                written.push((out_name, uri.to_owned(), None));
            }
        }
    }
    Ok(written)
}

/// One build: walks the sub-states, downloads artifacts, writes the log, sets the outcome.
async fn build(s: Shared, k: String, cancel: Arc<Notify>) {
    let Some((request, id, name, staging_group, location)) = ({
        let store = s.templates.lock().unwrap();
        store.templates.get(&k).map(|t| {
            (
                t.request.clone(),
                t.id.clone(),
                t.name.clone(),
                t.staging_group.clone(),
                t.location.clone(),
            )
        })
    }) else {
        return;
    };
    let timing = s.config.timing.clone();
    let props = request.get("properties").cloned().unwrap_or(Value::Null);
    let validate = props.get("validate").filter(|v| !v.is_null());
    let validate_flag = |field: &str| {
        validate
            .and_then(|v| v.get(field))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    // Swagger, `validate.sourceValidationOnly`: "the image specified in the 'source' section will
    // directly be validated. No separate build will be run": no Customizing, no Distributing
    // (there is no new image to distribute).
    let source_only = validate_flag("sourceValidationOnly");
    // `continueDistributeOnFailure`: "If validation fails and this field is set to true, output
    // image(s) will still be distributed ... In either case (true or false), the end to end
    // image run will be reported as having failed" (swagger).
    let continue_on_failure = validate_flag("continueDistributeOnFailure");
    let mut phases = vec![
        (RunSubState::Queued, timing.queued),
        (RunSubState::Building, timing.building),
    ];
    if !source_only {
        phases.push((RunSubState::Customizing, timing.customizing));
        // Swagger: `optimize.vmBoot.state` "Enabling this field will improve VM boot time by
        // optimizing the final customized image output"; `Disabled` optimizes nothing.
        if props
            .pointer("/optimize/vmBoot/state")
            .and_then(Value::as_str)
            == Some("Enabled")
        {
            phases.push((RunSubState::Optimizing, timing.optimizing));
        }
    }
    if validate.is_some() {
        phases.push((RunSubState::Validating, timing.validating));
    }
    if !source_only {
        phases.push((RunSubState::Distributing, timing.distributing));
    }
    let fail_at = sub_state_knob(&request, FAIL_AT_TAG, s.config.fail_at);
    let timeout_at = sub_state_knob(&request, TIMEOUT_AT_TAG, s.config.timeout_at);
    let exact_version = exact_version(&s, &props);
    let mut downloads = Vec::new();
    let log_guid = uuid::Uuid::new_v4().to_string();
    let log = BuildLog::new(&s.config.staging_storage, &log_guid);
    let log_target = Target {
        http: s.http.clone(),
        account: s.config.staging_storage.clone(),
    };
    let log_started = now();
    let render = |downloads: &[artifacts::Download], outcome: Outcome| -> Rendered {
        packer_log::render(&LogInput {
            template_id: &id,
            request: &request,
            staging_group: &staging_group,
            exact_version: exact_version.as_deref(),
            downloads,
            outcome,
            started: log_started,
            run_id: &log_guid,
            filler: s.config.log_filler,
        })
    };
    // From Customizing on: the log rendered with the foretold outcome, and its writer.
    let mut live: Option<(Outcome, Rendered, Writer)> = None;

    let mut outcome = Outcome::Succeeded;
    let mut timed_out = false;
    let mut vhds = Vec::new();
    let mut versions: Vec<gallery::Planned> = Vec::new();
    let mut distributed = false;
    let mut validation_failed = false;
    for &(phase, duration) in &phases {
        if !set_sub_state(&s, &k, phase) {
            return; // deleted
        }
        if phase == RunSubState::Customizing {
            let customize = props
                .get("customize")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for f in artifacts::plan(&customize, &s.blob_endpoints()) {
                let d = artifacts::fetch(&s.http, &f).await;
                s.downloads.lock().unwrap().push(d.clone());
                let failed = d
                    .error
                    .clone()
                    .map(|e| format!("Customizer '{}' failed: {e}", d.customizer));
                downloads.push(d);
                if let Some(detail) = failed {
                    outcome = Outcome::Failed {
                        phase,
                        detail: Some(detail),
                    };
                    break;
                }
            }
            // The log starts now, after the downloads, rendered once with the outcome the
            // knobs (or a failed download) foretell.
            let foretold = match &outcome {
                Outcome::Failed { .. } => outcome.clone(),
                _ => foretold(&phases, fail_at, timeout_at),
            };
            let rendered = render(&downloads, foretold.clone());
            if !s.templates.lock().unwrap().add_log(&k, &log) {
                return; // deleted
            }
            let writer = Writer::start(
                log.clone(),
                log_target.clone(),
                &rendered.bytes[..rendered.customized],
                &log_schedule(&s, &request),
            );
            live = Some((foretold, rendered, writer));
            if matches!(outcome, Outcome::Failed { .. }) {
                break;
            }
        }
        let waited = match live.as_mut() {
            Some((_, _, writer)) => writer.wait(duration, &cancel).await,
            None => phase_wait(duration, &cancel).await,
        };
        if !waited {
            outcome = Outcome::Canceled;
            break;
        }
        if fail_at == Some(phase) {
            if phase == RunSubState::Validating && continue_on_failure {
                validation_failed = true;
                continue;
            }
            outcome = Outcome::Failed {
                phase,
                detail: None,
            };
            break;
        }
        if timeout_at == Some(phase) {
            timed_out = true;
            outcome = Outcome::Failed {
                phase,
                detail: Some(DEADLINE_EXCEEDED.into()),
            };
            break;
        }
        if phase == RunSubState::Distributing {
            let source = source_version(&s, &props, exact_version.as_deref());
            let planned = match gallery::plan(&s, &id, &props, &location, source.as_deref()) {
                Ok(p) => p,
                Err(detail) => {
                    outcome = Outcome::Failed {
                        phase,
                        detail: Some(detail),
                    };
                    break;
                }
            };
            match distribute_vhds(&s, &name, &props).await {
                Ok(written) => vhds = written,
                Err(detail) => {
                    outcome = Outcome::Failed {
                        phase,
                        detail: Some(detail),
                    };
                    break;
                }
            }
            gallery::commit(&s, &planned);
            versions = planned;
            distributed = true;
        }
    }
    if validation_failed && outcome == Outcome::Succeeded {
        outcome = Outcome::Failed {
            phase: RunSubState::Validating,
            detail: None,
        };
    }

    // The log's end, written before the run's end shows, so a client that reads the log on
    // seeing Failed reads all of it.
    match live {
        Some((_, rendered, mut writer)) if outcome == Outcome::Canceled => {
            writer
                .cancel(&packer_log::cancellation(rendered.clock_at_customized))
                .await;
        }
        Some((foretold, rendered, mut writer)) => {
            let rest = if outcome == foretold {
                rendered.bytes[rendered.customized..].to_vec()
            } else {
                build_log::rest_for(&rendered, &render(&downloads, outcome.clone()))
            };
            writer.finish(&rest).await;
        }
        None => {
            if s.templates.lock().unwrap().add_log(&k, &log) {
                let rendered = render(&downloads, outcome.clone());
                Writer::at_end(log.clone(), log_target.clone())
                    .finish(&rendered.bytes)
                    .await;
            }
        }
    }
    let log_url = log.url.clone();
    if matches!(outcome, Outcome::Canceled) {
        tokio::time::sleep(timing.canceling).await;
    }

    let mut store = s.templates.lock().unwrap();
    let Some(t) = store.get_mut(&k) else { return };
    if t.provisioning_state == "Deleting" {
        return;
    }
    t.cancel = None;
    let (run_op, cancel_op) = (t.run_op.clone(), t.cancel_op.clone());
    if distributed {
        // Also after a failed validation with continueDistributeOnFailure: the images were
        // distributed, so their run outputs exist, though the run failed.
        t.exact_version = exact_version.clone();
        t.run_outputs = run_outputs(&t.id, &props, &vhds, &versions);
        t.staging_vhds
            .extend(vhds.iter().filter_map(|(_, _, blob)| blob.clone()));
    }
    if let Outcome::Failed { phase, .. } = &outcome {
        let field = match phase {
            RunSubState::Customizing => Some("onCustomizerError"),
            RunSubState::Validating => Some("onValidationError"),
            _ => None,
        };
        let abort = field.is_some_and(|f| {
            props
                .pointer(&format!("/errorHandling/{f}"))
                .and_then(Value::as_str)
                .is_some_and(|v| v.eq_ignore_ascii_case("abort"))
        });
        if abort && !timed_out {
            for r in preserved_resources(&t.staging_group, &t.location, &props) {
                t.preserved.retain(|p| p["id"] != r["id"]);
                t.preserved.push(r);
            }
        }
    }
    let run = t.last_run.as_mut().expect("a build has a run");
    run.end = Some(now());
    let (state, op_status, error) = match outcome {
        Outcome::Succeeded => {
            run.state = RunState::Succeeded;
            run.sub_state = None;
            t.exact_version = exact_version;
            (RunState::Succeeded, "Succeeded", None)
        }
        Outcome::Canceled => {
            run.state = RunState::Canceled;
            run.message = "Build was canceled by the user.".into();
            (
                RunState::Canceled,
                "Canceled",
                Some(
                    json!({"code": "OperationCanceled", "message": "The image build was canceled."}),
                ),
            )
        }
        Outcome::Failed { .. } if timed_out => {
            // "Troubleshoot Azure VM Image Builder", build timeout: this message, in
            // lastRunStatus, names no build log, though the log is in packerlogs/ as usual.
            run.state = RunState::Failed;
            run.message = format!(
                "Failed in building/customizing image: Failed while waiting for packerizer: Timeout waiting for microservice to complete: '{DEADLINE_EXCEEDED}'"
            );
            let message = run.message.clone();
            (
                RunState::Failed,
                "Failed",
                Some(json!({"code": "InternalOperationError", "message": message})),
            )
        }
        Outcome::Failed { detail, phase } => {
            run.state = RunState::Failed;
            let operation_id = uuid::Uuid::new_v4();
            let detail = match (phase, detail) {
                // The wording of a failed validation in lastRunStatus is not documented: the
                // packerizer failure with the failing validator named, as the log names it.
                (RunSubState::Validating, None) => {
                    let validator = props
                        .pointer("/validate/inVMValidations")
                        .and_then(Value::as_array)
                        .and_then(|v| v.last().map(|c| (v.len() - 1, c)))
                        .map(|(i, c)| {
                            c.get("name")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                                .unwrap_or_else(|| {
                                    format!(
                                        "{}#{i}",
                                        c.get("type").and_then(Value::as_str).unwrap_or("")
                                    )
                                })
                        });
                    let what = match validator {
                        Some(n) => format!("In-VM validation '{n}' failed"),
                        None => "the image validation failed".into(),
                    };
                    let distributed = if distributed {
                        " The output image(s) were distributed anyway (validate.continueDistributeOnFailure is true)."
                    } else {
                        ""
                    };
                    format!("Validation failed: {what}.{distributed} ")
                }
                (_, detail) => detail.map(|d| format!("{d}. ")).unwrap_or_default(),
            };
            run.message = format!(
                "External build failed: Failed while waiting for packerizer: Microservice has failed: Failed while processing request: Error when executing packerizer: Packer build command has failed: exit status 1. {detail}During the image build, a failure has occurred, please review the build log to identify which build/customization step failed. For more troubleshooting steps go to https://aka.ms/azvmimagebuilderts. Image Build log location: {log_url}. OperationId: {operation_id}. Use this operationId to search packer logs."
            );
            let message = run.message.clone();
            (
                RunState::Failed,
                "Failed",
                Some(json!({"code": "InternalOperationError", "message": message})),
            )
        }
    };
    let id = t.id.clone();
    store.finish_operation(run_op.as_deref(), op_status, error);
    store.finish_operation(cancel_op.as_deref(), "Succeeded", None);
    store.event(&id, format!("runState={state:?}"));
}

/// Moves the run to `phase`; false when the template is gone or being deleted.
fn set_sub_state(s: &State, k: &str, phase: RunSubState) -> bool {
    let mut store = s.templates.lock().unwrap();
    let Some(t) = store.get_mut(k) else {
        return false;
    };
    if t.provisioning_state == "Deleting" {
        return false;
    }
    let changed = match t.last_run.as_mut() {
        Some(run) if run.sub_state != Some(phase) => {
            run.sub_state = Some(phase);
            true
        }
        _ => false,
    };
    let id = t.id.clone();
    if changed {
        store.event(&id, format!("runSubState={phase:?}"));
    }
    true
}

/// The source's version for the `Source` versioning scheme: the platform image's exact version,
/// or the gallery image version's (`latest` resolved among the versions the emulator knows).
fn source_version(s: &State, props: &Value, exact: Option<&str>) -> Option<String> {
    let source = props.get("source")?;
    match source.get("type").and_then(Value::as_str)? {
        "PlatformImage" => exact.map(str::to_owned),
        "SharedImageVersion" => {
            let id = source.get("imageVersionId").and_then(Value::as_str)?;
            let (definition, version) = gallery::parse_gallery_image_id(id)?;
            match version {
                Some(v) if !v.eq_ignore_ascii_case("latest") => Some(v),
                _ => gallery::versions(s, &definition).pop(),
            }
        }
        _ => None,
    }
}

/// What an aborted run leaves in the staging group ("Create an Azure Image Builder Bicep or ARM
/// template JSON template", "Properties: errorHandling": with `abort` "the Azure Image Builder
/// (AIB) service skips the clean up of temporary resources"; swagger: with `cleanup` "the build
/// VM and associated network resources will be cleaned up", with `abort` "the build VM will be
/// preserved"). The build VM with its NIC and OS disk; without `vnetConfig` also the VNet and NSG
/// Image Builder deploys ("Azure VM Image Builder networking options": a VNet with subnets and
/// NSGs in the staging group; no public IP). Names follow the build log's deployment lines.
/// `managedResourceTags` are "applied to the resources that the Azure Image Builder service
/// creates in the staging resource group" (template reference), so each carries them.
fn preserved_resources(staging_group: &str, location: &str, props: &Value) -> Vec<Value> {
    let base = format!("{staging_group}/providers");
    let tags = props
        .get("managedResourceTags")
        .filter(|t| t.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let resource = |kind: &str, name: &str, properties: Value| {
        json!({
            "id": format!("{base}/{kind}/{name}"),
            "name": name,
            "type": kind,
            "location": location,
            "tags": tags,
            "properties": properties,
        })
    };
    let own_vnet = props
        .pointer("/vmProfile/vnetConfig/subnetId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .is_none();
    let subnet = match props
        .pointer("/vmProfile/vnetConfig/subnetId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(s) => s.to_owned(),
        None => format!(
            "{base}/Microsoft.Network/virtualNetworks/pkrvn0emulated/subnets/pkrsn0emulated"
        ),
    };
    let vm_size = props
        .pointer("/vmProfile/vmSize")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("Standard_D1_v2");
    let nic_id = format!("{base}/Microsoft.Network/networkInterfaces/pkrni0emulated");
    let disk_id = format!("{base}/Microsoft.Compute/disks/pkros0emulated");
    let mut vm = resource(
        "Microsoft.Compute/virtualMachines",
        "pkrvm0emulated",
        json!({
            "provisioningState": "Succeeded",
            "hardwareProfile": {"vmSize": vm_size},
            "storageProfile": {"osDisk": {"name": "pkros0emulated", "createOption": "FromImage", "managedDisk": {"id": disk_id}}},
            "networkProfile": {"networkInterfaces": [{"id": nic_id}]},
        }),
    );
    // vmProfile.userAssignedIdentities: "configured on the build VM and validation VM" (swagger).
    if let Some(ids) = props
        .pointer("/vmProfile/userAssignedIdentities")
        .and_then(Value::as_array)
        .filter(|ids| !ids.is_empty())
    {
        let map: serde_json::Map<String, Value> = ids
            .iter()
            .filter_map(Value::as_str)
            .map(|id| (id.to_owned(), json!({})))
            .collect();
        vm["identity"] = json!({"type": "UserAssigned", "userAssignedIdentities": map});
    }
    let mut out = vec![
        vm,
        resource(
            "Microsoft.Network/networkInterfaces",
            "pkrni0emulated",
            json!({"provisioningState": "Succeeded", "ipConfigurations": [{"name": "ipconfig", "properties": {"privateIPAddress": "10.1.0.4", "subnet": {"id": subnet}}}]}),
        ),
        resource(
            "Microsoft.Compute/disks",
            "pkros0emulated",
            json!({"provisioningState": "Succeeded", "diskState": "Attached"}),
        ),
    ];
    if own_vnet {
        out.push(resource(
            "Microsoft.Network/virtualNetworks",
            "pkrvn0emulated",
            json!({"provisioningState": "Succeeded", "subnets": [{"id": subnet, "name": "pkrsn0emulated"}]}),
        ));
        out.push(resource(
            "Microsoft.Network/networkSecurityGroups",
            "pkrsg0emulated",
            json!({"provisioningState": "Succeeded"}),
        ));
    }
    out
}

fn exact_version(s: &State, props: &Value) -> Option<String> {
    let source = props.get("source")?;
    if source.get("type").and_then(Value::as_str) != Some("PlatformImage") {
        return None;
    }
    let field = |k: &str| source.get(k).and_then(Value::as_str).unwrap_or("");
    let version = field("version");
    if !version.eq_ignore_ascii_case("latest") {
        return Some(version.to_string());
    }
    compute::find_image(s, field("publisher"), field("offer"), field("sku"))
        .and_then(compute::latest)
}

/// One run output per distributor, as Image Builder reports them.
fn run_outputs(
    template_id: &str,
    props: &Value,
    vhds: &[(String, String, Option<String>)],
    versions: &[gallery::Planned],
) -> Vec<Value> {
    props
        .get("distribute")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|d| {
            let out_name = d
                .get("runOutputName")
                .and_then(Value::as_str)
                .unwrap_or("output");
            let mut p = json!({"provisioningState": "Succeeded"});
            match d.get("type").and_then(Value::as_str).unwrap_or("") {
                "ManagedImage" => p["artifactId"] = d["imageId"].clone(),
                // The image version the distributor created ([`gallery::plan`]).
                "SharedImage" => {
                    if let Some(v) = versions.iter().find(|v| v.run_output_name == out_name) {
                        p["artifactId"] = json!(v.version_id);
                    }
                }
                // A plain blob URL: Image Builder stopped handing out SAS URLs for VHDs in
                // May 2021 (Azure/azvmimagebuilder vhdUpdate2021.md).
                "VHD" => {
                    if let Some((_, url, _)) = vhds.iter().find(|(n, _, _)| n == out_name) {
                        p["artifactUri"] = json!(url);
                    }
                }
                _ => {}
            }
            json!({
                "name": out_name,
                "id": format!("{template_id}/runOutputs/{out_name}"),
                "type": format!("{TYPE}/runOutputs"),
                "properties": p,
            })
        })
        .collect()
}
