//! Preflight (issue 13): each check passes on a sound scenario and fails (error or warning, as
//! specified) on a broken one, as `aib-task preflight --json` reports it against the emulator,
//! whose answers follow the ARM REST shapes (sources in emulator/src); a run stopped by
//! preflight writes nothing; a read the identity may not make is a warning, never a failure.

mod common;

use std::collections::BTreeMap;

use aib_emulator::config::{PlatformImageConfig, ResourceGroupConfig};
use aib_emulator::scenario::{
    GroupResourceConfig, MarketplaceTermsConfig, RESTRICTED_VM_SIZE, StorageNetworkConfig,
};
use aib_emulator::{Config, defaults};
use common::pipeline::*;
use common::*;
use serde_json::Value;

fn subnet(name: &str) -> String {
    rid(&format!(
        "Microsoft.Network/virtualNetworks/vnet/subnets/{name}"
    ))
}

fn gallery_image() -> String {
    rid(&format!(
        "Microsoft.Compute/galleries/{}/images/{}",
        defaults::GALLERY,
        defaults::GALLERY_IMAGE
    ))
}

/// Every input a check reads, set to what the default scenario holds.
fn full_inputs(vars: &mut BTreeMap<String, String>) {
    for (k, v) in [
        ("DISTRIBUTETYPE", "sig".to_owned()),
        ("GALLERYIMAGEID", gallery_image()),
        ("VNETSUBNETID", subnet("build")),
        ("CONTAINERINSTANCESUBNETID", subnet("aci")),
        ("VMSIZE", "Standard_D2s_v3".to_owned()),
        ("TEMPLATENAME", "t-preflight".to_owned()),
        (
            "STAGINGRESOURCEGROUP",
            format!(
                "/subscriptions/{}/resourceGroups/rg-aib-staging-new",
                defaults::SUBSCRIPTION_ID
            ),
        ),
        ("ARTIFACTDELIVERY", "vm".to_owned()),
    ] {
        vars.insert(format!("INPUT_{k}"), v);
    }
}

/// Runs `aib-task preflight --json`: whether it passed, its log (standard error) and the report
/// (standard output holds the report alone).
async fn preflight(vars: BTreeMap<String, String>) -> (bool, String, Value) {
    let (output, out) = run_task_async(&["preflight", "--json"], vars).await;
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{log}"));
    (output.status.success(), log, report)
}

/// The findings of `check` with `status`.
fn findings<'a>(report: &'a Value, check: &str, status: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == check && f["status"] == status)
        .collect()
}

/// Whether a finding of `check` with `status` says `text` in its message or its fix.
fn says(report: &Value, check: &str, status: &str, text: &str) -> bool {
    findings(report, check, status).iter().any(|f| {
        f["message"].as_str().unwrap_or("").contains(text)
            || f["fix"].as_str().unwrap_or("").contains(text)
    })
}

fn assert_finding(report: &Value, check: &str, status: &str, text: &str) {
    assert!(
        says(report, check, status, text),
        "no {status} of {check} saying {text:?} in {report:#}"
    );
}

#[tokio::test]
async fn every_check_passes_on_a_sound_scenario_and_writes_nothing() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let (temp, package) = sample_package();
    let mut vars = pipeline(&stack, &package, temp.path());
    full_inputs(&mut vars);
    let (ok, out, report) = preflight(vars).await;
    assert!(ok, "{out}");
    assert_eq!(report["verdict"], "passed", "{report:#}");
    for check in [
        "providers",
        "resourceGroup",
        "templateName",
        "managedIdentity",
        "source",
        "gallery",
        "stagingResourceGroup",
        "network",
        "storageAccount",
        "vmSize",
    ] {
        assert!(
            !findings(&report, check, "ok").is_empty(),
            "{check} passed: {report:#}"
        );
    }
    assert!(out.contains("##[group]Preflight"), "{out}");
    // The default pipeline distributes to a managed image: its group exists, its name is free.
    let (ok, out, report) = preflight(pipeline(&stack, &package, temp.path())).await;
    assert!(ok, "{out}");
    assert_finding(&report, "managedImage", "ok", "is free");
    assert_eq!(writes(&stack), Vec::<String>::new());
    assert_eq!(stack.artifact_container_listing().await, None);
}

#[tokio::test]
async fn broken_inputs_are_errors_of_their_check() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let (temp, package) = sample_package();
    let other_identity = rid("Microsoft.ManagedIdentity/userAssignedIdentities/nobody");
    /// `(inputs, check, what its error says)`.
    type Case<'a> = (Vec<(&'a str, String)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![("IBAZURERESOURCEGROUP", "rg-missing".into())],
            "resourceGroup",
            "az group create",
        ),
        (
            vec![("MANAGEDIDENTITY", other_identity)],
            "managedIdentity",
            "does not exist",
        ),
        (
            vec![(
                "BASEIMAGE",
                "Canonical:0001-com-ubuntu-server-jammy:99_99-lts".into(),
            )],
            "source",
            "not offered",
        ),
        (
            vec![("BASEIMAGEVERSION", "22.04.1".into())],
            "source",
            "has no version 22.04.1",
        ),
        (
            vec![
                ("IMAGESOURCE", "managedimage".into()),
                (
                    "CUSTOMIMAGERESOURCEID",
                    rid("Microsoft.Compute/images/missing"),
                ),
            ],
            "source",
            "does not exist",
        ),
        (
            vec![("PROVISIONER", "powershell".into())],
            "source",
            "set provisioner to shell",
        ),
        (
            vec![
                ("IBLOCATION", "eastus".into()),
                ("IMAGESOURCE", "sharedimageversion".into()),
                (
                    "IMAGEVERSIONID",
                    rid("Microsoft.Compute/galleries/gallery1/images/base/versions/1.0.3"),
                ),
            ],
            "source",
            "not in the build's region eastus",
        ),
        (
            vec![
                ("IBLOCATION", "eastus".into()),
                ("IMAGESOURCE", "managedimage".into()),
                (
                    "CUSTOMIMAGERESOURCEID",
                    rid("Microsoft.Compute/images/golden-base"),
                ),
            ],
            "source",
            "needs it in the build's region",
        ),
        (
            vec![
                (
                    "IMAGEIDFORDISTRIBUTE",
                    rid("Microsoft.Compute/images/golden-base"),
                ),
                ("MANAGEDIMAGELOCATION", "eastus".into()),
            ],
            "managedImage",
            "already exists in",
        ),
        (
            vec![
                ("DISTRIBUTETYPE", "sig".into()),
                (
                    "GALLERYIMAGEID",
                    rid("Microsoft.Compute/galleries/g/images/missing"),
                ),
            ],
            "gallery",
            "does not exist",
        ),
        (
            vec![
                ("DISTRIBUTETYPE", "sig".into()),
                ("GALLERYIMAGEID", gallery_image()),
                ("GALLERYIMAGEVERSION", "2.1.0".into()),
            ],
            "gallery",
            "exists already",
        ),
        (
            vec![(
                "IMAGEIDFORDISTRIBUTE",
                format!(
                    "/subscriptions/{}/resourceGroups/rg-missing/providers/Microsoft.Compute/images/out",
                    defaults::SUBSCRIPTION_ID
                ),
            )],
            "managedImage",
            "does not exist",
        ),
        (
            // The default group holds the scenario's identities and networks.
            vec![(
                "STAGINGRESOURCEGROUP",
                format!(
                    "/subscriptions/{}/resourceGroups/{RG}",
                    defaults::SUBSCRIPTION_ID
                ),
            )],
            "stagingResourceGroup",
            "Image Builder needs an empty staging group",
        ),
        (
            vec![("VNETSUBNETID", subnet("build-policies-on"))],
            "network",
            "--private-link-service-network-policies Disabled",
        ),
        (
            vec![("VNETSUBNETID", subnet("nowhere"))],
            "network",
            "does not exist",
        ),
        (
            vec![
                (
                    "VNETSUBNETID",
                    rid("Microsoft.Network/virtualNetworks/vnet-eastus/subnets/build"),
                ),
                ("ARTIFACTDELIVERY", "vm".into()),
            ],
            "network",
            "is in eastus",
        ),
        (
            vec![
                ("VNETSUBNETID", subnet("build")),
                ("CONTAINERINSTANCESUBNETID", subnet("build-policies-on")),
            ],
            "network",
            "not delegated",
        ),
        (
            vec![("VMSIZE", RESTRICTED_VM_SIZE.into())],
            "vmSize",
            "NotAvailableForSubscription",
        ),
        (
            vec![("VMSIZE", "Standard_Z99".into())],
            "vmSize",
            "not offered",
        ),
        (
            vec![("VMSIZE", "Standard_A2_v2".into())],
            "vmSize",
            "generation",
        ),
    ];
    let mut failures = Vec::new();
    for (inputs, check, text) in &cases {
        let mut vars = pipeline(&stack, &package, temp.path());
        for (k, v) in inputs {
            vars.insert(format!("INPUT_{k}"), v.clone());
        }
        let (ok, out, report) = preflight(vars).await;
        let found = says(&report, check, "error", text);
        if ok || !found || report["verdict"] != "failed" {
            failures.push(format!(
                "{inputs:?}: expected an error of {check} saying {text:?}, got {report:#}\n{out}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(writes(&stack), Vec::<String>::new());
}

#[tokio::test]
async fn broken_scenarios_are_errors_or_warnings_of_their_check() {
    type Change = fn(&mut Config, &mut BTreeMap<String, String>);
    let cases: Vec<(Change, &str, &str, &str)> = vec![
        (
            |c, _| c.unregistered_providers = vec!["Microsoft.ContainerInstance".into()],
            "providers",
            "error",
            "az provider register --namespace Microsoft.ContainerInstance",
        ),
        (
            |c, _| c.scenario.registering_providers = vec!["Microsoft.KeyVault".into()],
            "providers",
            "warning",
            "still registering",
        ),
        (
            |c, _| c.scenario.role_assignments.clear(),
            "managedIdentity",
            "warning",
            "holds no role",
        ),
        (
            |c, _| {
                for a in &mut c.scenario.role_assignments {
                    a.role_definition = aib_emulator::scenario::roles::READER.into();
                }
            },
            "managedIdentity",
            "warning",
            "which does not allow Microsoft.Compute/images/write",
        ),
        (
            |_, v| {
                v.insert(
                    "INPUT_IMAGEIDFORDISTRIBUTE".into(),
                    rid("Microsoft.Compute/images/golden-base"),
                );
            },
            "managedImage",
            "warning",
            "the build replaces it",
        ),
        (
            |c, v| {
                c.platform_images.push(
                    PlatformImageConfig::new(
                        "center-for-internet-security-inc",
                        "cis-ubuntu-linux-2204-l1",
                        "cis-ubuntu2204-l1",
                        &["1.0.0"],
                        "Linux",
                    )
                    .with_plan(
                        "cis-ubuntu2204-l1",
                        "cis-ubuntu-linux-2204-l1",
                        "center-for-internet-security-inc",
                    ),
                );
                c.scenario.marketplace_terms.push(MarketplaceTermsConfig {
                    publisher: "center-for-internet-security-inc".into(),
                    offer: "cis-ubuntu-linux-2204-l1".into(),
                    plan: "cis-ubuntu2204-l1".into(),
                    accepted: false,
                });
                v.insert(
                    "INPUT_BASEIMAGE".into(),
                    "center-for-internet-security-inc:cis-ubuntu-linux-2204-l1:cis-ubuntu2204-l1"
                        .into(),
                );
            },
            "source",
            "error",
            "az vm image terms accept",
        ),
        (
            |c, v| {
                c.gallery_images[0].hyper_v_generation = "V1".into();
                v.insert("INPUT_DISTRIBUTETYPE".into(), "sig".into());
                v.insert("INPUT_GALLERYIMAGEID".into(), gallery_image());
            },
            "gallery",
            "error",
            "Hyper-V generation V1",
        ),
        (
            |c, v| {
                c.gallery_images[0].features =
                    vec![("SecurityType".into(), "ConfidentialVM".into())];
                v.insert("INPUT_DISTRIBUTETYPE".into(), "sig".into());
                v.insert("INPUT_GALLERYIMAGEID".into(), gallery_image());
            },
            "gallery",
            "error",
            "ConfidentialVM",
        ),
        (
            |c, v| {
                c.gallery_images[0].architecture = "Arm64".into();
                v.insert("INPUT_DISTRIBUTETYPE".into(), "sig".into());
                v.insert("INPUT_GALLERYIMAGEID".into(), gallery_image());
            },
            "gallery",
            "error",
            "is for Arm64",
        ),
        (
            |c, v| {
                c.scenario.group_resources.push(GroupResourceConfig {
                    resource_group: "rg-aib-staging-busy".into(),
                    ..GroupResourceConfig::default()
                });
                c.resource_groups.push(ResourceGroupConfig {
                    name: "rg-aib-staging-busy".into(),
                    ..c.resource_groups[0].clone()
                });
                v.insert(
                    "INPUT_STAGINGRESOURCEGROUP".into(),
                    format!(
                        "/subscriptions/{}/resourceGroups/rg-aib-staging-busy",
                        defaults::SUBSCRIPTION_ID
                    ),
                );
            },
            "stagingResourceGroup",
            "error",
            "holds 1 resource",
        ),
        (
            |c, _| {
                c.scenario.storage_network.push(StorageNetworkConfig {
                    account: defaults::STORAGE_ACCOUNT.into(),
                    default_action: "Deny".into(),
                    ..StorageNetworkConfig::default()
                })
            },
            "storageAccount",
            "error",
            "set artifactDelivery to vm",
        ),
        (
            |c, v| {
                c.scenario.storage_network.push(StorageNetworkConfig {
                    account: defaults::STORAGE_ACCOUNT.into(),
                    default_action: "Deny".into(),
                    virtual_network_rules: vec![subnet("build")],
                    ..StorageNetworkConfig::default()
                });
                v.insert("INPUT_ARTIFACTDELIVERY".into(), "vm".into());
                v.insert("INPUT_VNETSUBNETID".into(), subnet("build"));
                v.insert("INPUT_CONTAINERINSTANCESUBNETID".into(), subnet("aci"));
            },
            "storageAccount",
            "ok",
            "admits the build subnet build",
        ),
    ];
    for (change, check, status, text) in cases {
        let mut config = Config::default();
        let mut extra = BTreeMap::new();
        change(&mut config, &mut extra);
        let Some(stack) = start_stack(config).await else {
            return;
        };
        let (temp, package) = sample_package();
        let mut vars = pipeline(&stack, &package, temp.path());
        vars.extend(extra);
        let (ok, out, report) = preflight(vars).await;
        assert_finding(&report, check, status, text);
        assert_eq!(ok, status != "error", "{out}");
        assert_eq!(writes(&stack), Vec::<String>::new());
    }
}

#[tokio::test]
async fn a_run_stopped_by_preflight_writes_nothing() {
    let Some(SampleBuild {
        stack,
        output,
        out,
        temp: _temp,
    }) = sample_build(Config::default(), |_, _, vars| {
        vars.insert("INPUT_VMSIZE".into(), RESTRICTED_VM_SIZE.into());
    })
    .await
    else {
        return;
    };
    assert!(!output.status.success());
    let message = failure_message(&out).unwrap();
    assert!(
        message.contains("preflight found 1 problem") && message.contains("nothing was written"),
        "{message}"
    );
    assert!(message.contains(RESTRICTED_VM_SIZE), "{message}");
    // No PUT, POST or DELETE in Azure, no container, no blob.
    assert_eq!(writes(&stack), Vec::<String>::new());
    assert_eq!(stack.artifact_container_listing().await, None);
    // The run summary has the Preflight section.
    let summary = commands(&out)
        .into_iter()
        .find(|c| c.action == "uploadsummary")
        .expect("a run summary");
    let summary = std::fs::read_to_string(&summary.message).unwrap();
    assert!(summary.contains("#### Preflight: failed"), "{summary}");
}

#[tokio::test]
async fn a_read_the_identity_may_not_make_is_a_warning_and_the_build_goes_on() {
    let mut config = Config::default();
    config.scenario.role_assignments_forbidden = true;
    let Some(SampleBuild { output, out, .. }) = sample_build(config, |_, _, _| {}).await else {
        return;
    };
    assert!(output.status.success(), "{out}");
    let warning = out
        .lines()
        .find(|l| l.contains("Microsoft.Authorization/roleAssignments/read"))
        .unwrap_or_else(|| panic!("a warning naming the permission:\n{out}"));
    assert!(
        warning.starts_with("##vso[task.logissue type=warning]"),
        "{warning}"
    );
    assert!(out.contains("preflight passed with warnings"), "{out}");
}

/// Preflight after a failed build that kept its template (keepTemplateOnFailure defaults to
/// true) with the same inputs, `input` set to `value`: the report, or `None` without a stack.
async fn preflight_after_a_kept_template(input: &str, value: &str) -> Option<Value> {
    let config = Config {
        fail_at: Some(aib_emulator::RunSubState::Customizing),
        ..Config::default()
    };
    let stack = start_stack(config).await?;
    let (temp, package) = sample_package();
    let mut vars = pipeline(&stack, &package, temp.path());
    vars.insert(format!("INPUT_{input}"), value.to_owned());
    let (output, out) = run_task_async(&[], vars.clone()).await;
    assert!(!output.status.success(), "{out}");
    let (ok, _, report) = preflight(vars).await;
    assert!(!ok, "{report:#}");
    Some(report)
}

#[tokio::test]
async fn a_taken_template_name_is_an_error() {
    let Some(report) = preflight_after_a_kept_template("TEMPLATENAME", "t-taken").await else {
        return;
    };
    assert_finding(&report, "templateName", "error", "already exists");
}

#[tokio::test]
async fn a_staging_group_another_template_uses_is_an_error() {
    let staging = format!(
        "/subscriptions/{}/resourceGroups/rg-aib-staging-shared",
        defaults::SUBSCRIPTION_ID
    );
    // The kept template keeps the staging group in use.
    let Some(report) = preflight_after_a_kept_template("STAGINGRESOURCEGROUP", &staging).await
    else {
        return;
    };
    assert_finding(
        &report,
        "stagingResourceGroup",
        "error",
        "refuses a staging group used by another template",
    );
}
