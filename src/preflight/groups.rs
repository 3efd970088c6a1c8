//! Checks 2, 6 and 7: the resource groups and names the build uses. The template's group must
//! exist and an explicit `templateName` be free (Image Builder cannot update a template,
//! REFERENCE §7); a managed image target's group must exist, and an image of that name is
//! replaced (a warning) or, in another region, refused; a given
//! `stagingResourceGroup` that exists must be empty and used by no other template (template
//! reference, `stagingResourceGroup`: "If the resource group specified exists, it must be empty
//! and in the same region as the image template"; "cannot be associated with another image
//! template").

use serde::Deserialize;

use super::Finding;
use super::read::{Read, Reader, denied, failed};
use crate::plan::Distribution;

const GROUP_API: &str = "2021-04-01";
const IMAGE_API: &str = "2024-07-01";

#[derive(Deserialize)]
struct Group {
    #[serde(default)]
    location: String,
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    value: Vec<serde_json::Value>,
}

fn group_path(subscription: &str, group: &str) -> String {
    format!("/subscriptions/{subscription}/resourcegroups/{group}")
}

pub async fn check(r: &Reader<'_>) -> Vec<Finding> {
    let (a, b, c, d) = tokio::join!(
        template_group(r),
        template_name(r),
        staging_group(r),
        managed_image(r)
    );
    [a, b, c, d].into_iter().flatten().collect()
}

async fn template_group(r: &Reader<'_>) -> Vec<Finding> {
    const CHECK: &str = "resourceGroup";
    let group = &r.plan.resource_group;
    match r
        .get::<Group>(
            "reading the resource group",
            &group_path(r.subscription(), group),
            GROUP_API,
        )
        .await
    {
        Read::Found(_) => vec![Finding::ok(CHECK, format!("resource group {group} exists"))],
        Read::Missing => vec![Finding::error(
            CHECK,
            format!(
                "resource group {group} (ibAzureResourceGroup) does not exist in subscription {}",
                r.subscription()
            ),
            format!(
                "az group create --name {group} --location {} --subscription {}",
                r.plan.location,
                r.subscription()
            ),
        )],
        Read::Denied { action } => vec![denied(CHECK, &format!("resource group {group}"), &action)],
        Read::Failed(why) => vec![failed(CHECK, &format!("resource group {group}"), &why)],
    }
}

async fn template_name(r: &Reader<'_>) -> Vec<Finding> {
    const CHECK: &str = "templateName";
    if !r.plan.template_name_given {
        return Vec::new();
    }
    let name = &r.plan.template_name;
    let path = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}",
        r.subscription(),
        r.plan.resource_group
    );
    match r
        .get::<serde_json::Value>(
            "reading the template",
            &path,
            crate::image_template::API_VERSION,
        )
        .await
    {
        Read::Missing => vec![Finding::ok(CHECK, format!("template name {name} is free"))],
        Read::Found(_) => vec![Finding::error(
            CHECK,
            format!(
                "a template named {name} already exists in {}, and Image Builder cannot update templates",
                r.plan.resource_group
            ),
            format!(
                "set templateName to a new name, or remove the old template: az image builder delete --name {name} --resource-group {} --subscription {}",
                r.plan.resource_group,
                r.subscription()
            ),
        )],
        // A missing group is reported by its own check.
        Read::Denied { action } => vec![denied(CHECK, &format!("template {name}"), &action)],
        Read::Failed(_) => Vec::new(),
    }
}

async fn staging_group(r: &Reader<'_>) -> Vec<Finding> {
    const CHECK: &str = "stagingResourceGroup";
    let Some(staging) = &r.plan.staging_resource_group else {
        return Vec::new();
    };
    let name = staging.name();
    let path = group_path(&staging.subscription, name);
    let group = match r
        .get::<Group>("reading the staging resource group", &path, GROUP_API)
        .await
    {
        // Image Builder creates it, and deletes it with the template.
        Read::Missing => {
            return vec![Finding::ok(
                CHECK,
                format!("{name} does not exist yet: Image Builder creates it for the build"),
            )];
        }
        Read::Found(g) => g,
        Read::Denied { action } => {
            return vec![denied(
                CHECK,
                &format!("staging resource group {name}"),
                &action,
            )];
        }
        Read::Failed(why) => {
            return vec![failed(
                CHECK,
                &format!("staging resource group {name}"),
                &why,
            )];
        }
    };
    let mut findings = Vec::new();
    if !group.location.is_empty()
        && crate::plan::normalize_region(&group.location) != r.plan.location
    {
        findings.push(Finding::error(
            CHECK,
            format!("{name} is in {}, the build in {}: Image Builder needs the staging group in the template's region", group.location, r.plan.location),
            "use a staging group in the build's region (ibLocation), or leave stagingResourceGroup empty",
        ));
    }
    let resources_path = format!("{path}/resources");
    let templates_path = format!(
        "/subscriptions/{}/providers/Microsoft.VirtualMachineImages/imageTemplates",
        r.subscription()
    );
    let (resources, templates) = tokio::join!(
        r.get::<List>(
            "listing the staging resource group",
            &resources_path,
            GROUP_API
        ),
        // Every page: a busy subscription holds many templates.
        r.arm.list::<serde_json::Value>(
            "listing the image templates",
            &templates_path,
            crate::image_template::API_VERSION
        )
    );
    match resources {
        Read::Found(list) if !list.value.is_empty() => findings.push(Finding::error(
            CHECK,
            format!("{name} holds {} resource{}; Image Builder needs an empty staging group", list.value.len(), if list.value.len() == 1 { "" } else { "s" }),
            format!("empty it (az resource list --resource-group {name} --output table), or use another stagingResourceGroup"),
        )),
        Read::Found(_) => {}
        Read::Denied { action } => findings.push(denied(CHECK, &format!("what {name} holds"), &action)),
        Read::Missing | Read::Failed(_) => {}
    }
    if let Ok(templates) = templates {
        let users: Vec<String> = templates
            .iter()
            .filter(|t| {
                t["properties"]["stagingResourceGroup"]
                    .as_str()
                    .is_some_and(|g| g.eq_ignore_ascii_case(staging.as_str()))
            })
            .filter_map(|t| t["name"].as_str().map(str::to_owned))
            .collect();
        if !users.is_empty() {
            findings.push(Finding::error(
                CHECK,
                format!("{name} is the staging group of template {} already; Image Builder refuses a staging group used by another template", users.join(", ")),
                format!("delete that template once done with it (az image builder delete --name {} --resource-group <its group>), or use another stagingResourceGroup", users[0]),
            ));
        }
    }
    if findings.is_empty() {
        findings.push(Finding::ok(
            CHECK,
            format!("{name} is empty and used by no other template"),
        ));
    }
    findings
}

async fn managed_image(r: &Reader<'_>) -> Vec<Finding> {
    const CHECK: &str = "managedImage";
    let Distribution::ManagedImage { image_id, .. } = &r.plan.distribution else {
        return Vec::new();
    };
    let group = group_path(&image_id.subscription, &image_id.resource_group);
    match r
        .get::<Group>(
            "reading the managed image's resource group",
            &group,
            GROUP_API,
        )
        .await
    {
        Read::Missing => {
            return vec![Finding::error(
                CHECK,
                format!(
                    "resource group {} of imageIdForDistribute does not exist",
                    image_id.resource_group
                ),
                format!(
                    "az group create --name {} --location {} --subscription {}",
                    image_id.resource_group, r.plan.location, image_id.subscription
                ),
            )];
        }
        Read::Denied { action } => {
            return vec![denied(
                CHECK,
                &format!("resource group {}", image_id.resource_group),
                &action,
            )];
        }
        Read::Failed(why) => {
            return vec![failed(CHECK, "the managed image's resource group", &why)];
        }
        Read::Found(_) => {}
    }
    let Distribution::ManagedImage { location, .. } = &r.plan.distribution else {
        return Vec::new();
    };
    // Template reference, ManagedImage distributor `location`: "Azure location for the image,
    // should match if image already exists": an existing image is replaced, in its own region.
    match r.get::<Group>("reading the managed image", image_id.as_str(), IMAGE_API).await {
        Read::Missing => vec![Finding::ok(CHECK, format!("managed image name {} is free", image_id.name()))],
        Read::Found(image) if crate::plan::normalize_region(&image.location) != *location => vec![Finding::error(
            CHECK,
            format!("managed image {} already exists in {}, and managedImageLocation is {location}: Image Builder needs them to match to replace it", image_id.name(), image.location),
            format!("use a new name in imageIdForDistribute (e.g. with $(Build.BuildId)), or set managedImageLocation to {}", image.location),
        )],
        Read::Found(_) => vec![Finding::warning(
            CHECK,
            format!("managed image {} already exists: the build replaces it, and VMs or pipelines using it get the new image", image_id.name()),
        )
        .with_fix("use a new name per build in imageIdForDistribute, e.g. webapp-$(Build.BuildId)")],
        Read::Denied { action } => vec![denied(CHECK, &format!("managed image {}", image_id.name()), &action)],
        Read::Failed(why) => vec![failed(CHECK, "the managed image", &why)],
    }
}
