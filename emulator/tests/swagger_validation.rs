//! Validates Image Builder template bodies against the real Azure swagger (2024-02-01 and
//! 2025-10-01). The specs live outside the repository; when they are absent each test says so
//! and passes without checking anything.

use std::path::PathBuf;
use std::time::Instant;

use aib_emulator::swagger::{SwaggerSpec, ValidationCode, ValidationIssue};
use serde_json::{Value, json};

const TEMPLATE_PATH: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.VirtualMachineImages/imageTemplates/{imageTemplateName}";

fn spec(api_version: &str) -> Option<SwaggerSpec> {
    let Some(path) = SwaggerSpec::default_image_builder_path(api_version) else {
        aib_emulator::swagger::missing_spec(&format!(
            "the spec {}",
            expected_location(api_version).display()
        ));
        return None;
    };
    let started = Instant::now();
    let spec = SwaggerSpec::load(&path).expect("the spec loads");
    eprintln!("loaded {} in {:?}", path.display(), started.elapsed());
    Some(spec)
}

fn expected_location(api_version: &str) -> PathBuf {
    aib_emulator::swagger::specs_root().join("specification/imagebuilder/resource-manager/Microsoft.VirtualMachineImages/ImageBuilder/stable")
        .join(api_version)
        .join("imagebuilder.json")
}

const IDENTITY_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-aib/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aib-identity";

/// The kind of body aib-task sends: every customizer and distributor it can produce.
fn realistic_template() -> Value {
    json!({
        "location": "westeurope",
        "tags": {"createdBy": "aib-task", "pipeline": "build 42"},
        "identity": {
            "type": "UserAssigned",
            "userAssignedIdentities": {IDENTITY_ID: {}}
        },
        "properties": {
            "source": {
                "type": "PlatformImage",
                "publisher": "Canonical",
                "offer": "ubuntu-24_04-lts",
                "sku": "server",
                "version": "latest"
            },
            "customize": [
                {
                    "type": "File",
                    "name": "upload-package",
                    "sourceUri": "https://aibstaging.blob.core.windows.net/aib/package.zip?sv=2022-11-02&sig=x",
                    "destination": "/tmp/package.zip",
                    "sha256Checksum": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                },
                {
                    "type": "Shell",
                    "name": "install",
                    "inline": ["set -e", "unzip /tmp/package.zip -d /opt/app", "/opt/app/install.sh"]
                },
                {
                    "type": "PowerShell",
                    "name": "install-windows",
                    "inline": ["Expand-Archive C:\\package.zip C:\\app", "& C:\\app\\install.ps1"],
                    "runElevated": true,
                    "runAsSystem": true,
                    "validExitCodes": [0, 3010]
                },
                {"type": "WindowsRestart", "name": "restart", "restartTimeout": "10m"},
                {
                    "type": "WindowsUpdate",
                    "name": "updates",
                    "searchCriteria": "IsInstalled=0",
                    "filters": ["exclude:$_.Title -like '*Preview*'", "include:$true"],
                    "updateLimit": 20
                }
            ],
            "distribute": [
                {
                    "type": "ManagedImage",
                    "imageId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-images/providers/Microsoft.Compute/images/app-image",
                    "location": "westeurope",
                    "runOutputName": "app-image_managed",
                    "artifactTags": {"source": "aib-task"}
                },
                {
                    "type": "SharedImage",
                    "galleryImageId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-images/providers/Microsoft.Compute/galleries/gallery/images/app/versions/1.2.3",
                    "runOutputName": "app.gallery-1",
                    "targetRegions": [
                        {"name": "westeurope", "replicaCount": 1, "storageAccountType": "Standard_LRS"},
                        {"name": "northeurope", "replicaCount": 2, "storageAccountType": "Standard_ZRS"}
                    ],
                    "excludeFromLatest": false
                },
                {"type": "VHD", "runOutputName": "app_vhd"}
            ],
            "vmProfile": {
                "vmSize": "Standard_D2s_v3",
                "osDiskSizeGB": 64,
                "vnetConfig": {
                    "subnetId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet/subnets/aib"
                }
            },
            "buildTimeoutInMinutes": 120,
            "stagingResourceGroup": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-aib-staging"
        }
    })
}

fn validate(spec: &SwaggerSpec, body: &Value) -> Result<(), Vec<ValidationIssue>> {
    spec.validate_request_body("PUT", TEMPLATE_PATH, body)
}

/// Applies `edit` to the realistic template and returns the issues it causes.
fn issues_after(spec: &SwaggerSpec, edit: impl FnOnce(&mut Value)) -> Vec<ValidationIssue> {
    let mut body = realistic_template();
    edit(&mut body);
    validate(spec, &body).expect_err("the edited body is invalid")
}

#[track_caller]
fn assert_single(issues: &[ValidationIssue], code: ValidationCode, path: &str) {
    assert_eq!(
        issues.len(),
        1,
        "expected exactly one issue, got {issues:#?}"
    );
    assert_eq!(issues[0].code, code, "{issues:#?}");
    assert_eq!(issues[0].path, path, "{issues:#?}");
}

#[test]
fn spec_loads_quickly_and_reports_its_version() {
    let Some(path) = SwaggerSpec::default_image_builder_path("2024-02-01") else {
        aib_emulator::swagger::missing_spec(&format!(
            "the spec {}",
            expected_location("2024-02-01").display()
        ));
        return;
    };
    let started = Instant::now();
    let spec = SwaggerSpec::load(&path).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(spec.api_version(), "2024-02-01");
    assert!(
        elapsed.as_millis() < 1000,
        "loading took {elapsed:?}, should be well under a second"
    );

    let body = realistic_template();
    let started = Instant::now();
    for _ in 0..100 {
        validate(&spec, &body).unwrap();
    }
    eprintln!("validation takes {:?} per body", started.elapsed() / 100);
}

#[test]
fn every_create_example_validates() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    let examples = SwaggerSpec::default_image_builder_path("2024-02-01")
        .unwrap()
        .with_file_name("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("CreateImageTemplate") && name.ends_with(".json")) {
            continue;
        }
        let example: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let body = &example["parameters"]["parameters"];
        assert!(body.is_object(), "{name} has no parameters.parameters body");
        if let Err(issues) = validate(&spec, body) {
            panic!("{name} should validate: {issues:#?}");
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "found only {checked} CreateImageTemplate examples"
    );
}

#[test]
fn other_request_examples_validate_against_their_operations() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    let examples = SwaggerSpec::default_image_builder_path("2024-02-01")
        .unwrap()
        .with_file_name("examples");
    let cases = [
        ("PATCH", TEMPLATE_PATH, "UpdateImageTemplateTags.json"),
        (
            "PATCH",
            TEMPLATE_PATH,
            "UpdateImageTemplateToRemoveIdentities.json",
        ),
        (
            "PUT",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.VirtualMachineImages/imageTemplates/{imageTemplateName}/triggers/{triggerName}",
            "CreateSourceImageTrigger.json",
        ),
    ];
    for (method, template, file) in cases {
        let path = examples.join(file);
        if !path.is_file() {
            continue;
        }
        let example: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let body = &example["parameters"]["parameters"];
        if let Err(issues) = spec.validate_request_body(method, template, body) {
            panic!("{file} should validate: {issues:#?}");
        }
    }
}

#[test]
fn realistic_template_validates_against_both_api_versions() {
    for version in ["2024-02-01", "2025-10-01"] {
        let Some(spec) = spec(version) else {
            continue;
        };
        assert_eq!(spec.api_version(), version);
        if let Err(issues) = validate(&spec, &realistic_template()) {
            panic!("{version}: realistic template should validate: {issues:#?}");
        }
        spec.validate_definition("ImageTemplate", &realistic_template())
            .unwrap();
    }
}

#[test]
fn path_template_matching_ignores_case_and_parameter_names() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    let other_names = "/subscriptions/{sub}/resourcegroups/{rg}/providers/Microsoft.VirtualMachineImages/imageTemplates/{name}";
    spec.validate_request_body("put", other_names, &realistic_template())
        .unwrap();
    let issues = spec
        .validate_request_body("PUT", "/subscriptions/{s}/nothing", &json!({}))
        .unwrap_err();
    assert_single(&issues, ValidationCode::UnknownOperation, "");
    let issues = spec
        .validate_definition("NoSuchThing", &json!({}))
        .unwrap_err();
    assert_single(&issues, ValidationCode::UnknownDefinition, "");
    let issues = spec
        .validate_request_body("PUT", TEMPLATE_PATH, &Value::Null)
        .unwrap_err();
    assert_single(
        &issues,
        ValidationCode::RequiredPropertyMissing,
        "parameters",
    );
    // POST .../run has no body parameter: any body is ignored.
    spec.validate_request_body("POST", &format!("{TEMPLATE_PATH}/run"), &json!({"x": 1}))
        .unwrap();
}

#[test]
fn missing_identity_is_refused() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    let issues = issues_after(&spec, |b| {
        b.as_object_mut().unwrap().remove("identity");
    });
    assert_single(&issues, ValidationCode::RequiredPropertyMissing, "identity");
}

#[test]
fn unknown_customizer_type_is_refused() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    let issues = issues_after(&spec, |b| {
        b["properties"]["customize"][1]["type"] = json!("Bash");
    });
    assert_single(
        &issues,
        ValidationCode::InvalidDiscriminator,
        "properties.customize[1].type",
    );
    assert!(issues[0].message.contains("Shell"), "{}", issues[0].message);

    let issues = issues_after(&spec, |b| {
        b["properties"]["customize"][1]
            .as_object_mut()
            .unwrap()
            .remove("type");
    });
    assert_single(
        &issues,
        ValidationCode::RequiredPropertyMissing,
        "properties.customize[1].type",
    );
}

#[test]
fn subtype_properties_belong_to_their_subtype() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    // runElevated is a PowerShell property, not a Shell one.
    let issues = issues_after(&spec, |b| {
        b["properties"]["customize"][1]["runElevated"] = json!(true);
    });
    assert_single(
        &issues,
        ValidationCode::UnknownProperty,
        "properties.customize[1].runElevated",
    );
    // A subtype's own fields are type-checked.
    let issues = issues_after(&spec, |b| {
        b["properties"]["customize"][2]["validExitCodes"] = json!([0, "1"]);
    });
    assert_single(
        &issues,
        ValidationCode::InvalidType,
        "properties.customize[2].validExitCodes[1]",
    );
}

#[test]
fn build_timeout_out_of_range_is_refused() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    let issues = issues_after(&spec, |b| {
        b["properties"]["buildTimeoutInMinutes"] = json!(1000);
    });
    assert_single(
        &issues,
        ValidationCode::OutOfRange,
        "properties.buildTimeoutInMinutes",
    );
    let issues = issues_after(&spec, |b| {
        b["properties"]["buildTimeoutInMinutes"] = json!(-1);
    });
    assert_single(
        &issues,
        ValidationCode::OutOfRange,
        "properties.buildTimeoutInMinutes",
    );
    let issues = issues_after(&spec, |b| {
        b["properties"]["vmProfile"]["osDiskSizeGB"] = json!(5_000_000_000_u64);
    });
    assert_single(
        &issues,
        ValidationCode::OutOfRange,
        "properties.vmProfile.osDiskSizeGB",
    );
}

#[test]
fn run_output_name_with_a_space_is_refused() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    let issues = issues_after(&spec, |b| {
        b["properties"]["distribute"][2]["runOutputName"] = json!("my output");
    });
    assert_single(
        &issues,
        ValidationCode::PatternMismatch,
        "properties.distribute[2].runOutputName",
    );
    // The pattern's `-_.` class allows exactly those three besides letters and digits.
    for name in ["a-b_c.d", "A1"] {
        let mut body = realistic_template();
        body["properties"]["distribute"][2]["runOutputName"] = json!(name);
        validate(&spec, &body).unwrap();
    }
    for name in ["a/b", "", &"x".repeat(65)] {
        let issues = issues_after(&spec, |b| {
            b["properties"]["distribute"][2]["runOutputName"] = json!(name);
        });
        assert_single(
            &issues,
            ValidationCode::PatternMismatch,
            "properties.distribute[2].runOutputName",
        );
    }
}

#[test]
fn unknown_property_is_refused() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    let issues = issues_after(&spec, |b| {
        b["properties"]["foo"] = json!("bar");
    });
    assert_single(&issues, ValidationCode::UnknownProperty, "properties.foo");
    let issues = issues_after(&spec, |b| {
        b["properties"]["BuildTimeoutInMinutes"] = json!(10);
    });
    assert_single(
        &issues,
        ValidationCode::UnknownProperty,
        "properties.BuildTimeoutInMinutes",
    );
    assert!(issues[0].message.contains("case-sensitive"));
}

#[test]
fn read_only_properties_are_refused() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    let issues = issues_after(&spec, |b| {
        b["properties"]["provisioningState"] = json!("Succeeded");
    });
    assert_single(
        &issues,
        ValidationCode::ReadOnlyProperty,
        "properties.provisioningState",
    );
    let issues = issues_after(&spec, |b| {
        b["id"] = json!("/subscriptions/x");
        b["properties"]["lastRunStatus"] = json!({"runState": "Running"});
        b["properties"]["source"]["exactVersion"] = json!("1.2.3");
        b["identity"]["userAssignedIdentities"][IDENTITY_ID]["principalId"] = json!("p");
    });
    let found: Vec<(ValidationCode, &str)> =
        issues.iter().map(|i| (i.code, i.path.as_str())).collect();
    let read_only = ValidationCode::ReadOnlyProperty;
    assert_eq!(
        found,
        vec![
            (read_only, "id"),
            (
                read_only,
                &*format!("identity.userAssignedIdentities['{IDENTITY_ID}'].principalId")
            ),
            (read_only, "properties.lastRunStatus"),
            (read_only, "properties.source.exactVersion"),
        ]
    );
}

#[test]
fn string_where_integer_expected_is_refused() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    let issues = issues_after(&spec, |b| {
        b["properties"]["vmProfile"]["osDiskSizeGB"] = json!("30");
    });
    assert_single(
        &issues,
        ValidationCode::InvalidType,
        "properties.vmProfile.osDiskSizeGB",
    );
    let issues = issues_after(&spec, |b| {
        b["properties"]["vmProfile"]["osDiskSizeGB"] = json!(30.5);
    });
    assert_single(
        &issues,
        ValidationCode::InvalidType,
        "properties.vmProfile.osDiskSizeGB",
    );
    let issues = issues_after(&spec, |b| {
        b["properties"]["vmProfile"]["vmSize"] = Value::Null;
    });
    assert_single(
        &issues,
        ValidationCode::InvalidType,
        "properties.vmProfile.vmSize",
    );
}

#[test]
fn missing_required_property_inside_a_subtype_is_refused() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    // In this spec a File customizer requires nothing but `type` (sourceUri is optional)...
    let mut body = realistic_template();
    body["properties"]["customize"][0]
        .as_object_mut()
        .unwrap()
        .remove("sourceUri");
    validate(&spec, &body).unwrap();
    // ...while a ManagedImage distributor requires imageId and location, and every distributor
    // (base ImageTemplateDistributor) requires runOutputName.
    let issues = issues_after(&spec, |b| {
        b["properties"]["distribute"][0]
            .as_object_mut()
            .unwrap()
            .remove("location");
    });
    assert_single(
        &issues,
        ValidationCode::RequiredPropertyMissing,
        "properties.distribute[0].location",
    );
    let issues = issues_after(&spec, |b| {
        b["properties"]["distribute"][1]
            .as_object_mut()
            .unwrap()
            .remove("runOutputName");
    });
    assert_single(
        &issues,
        ValidationCode::RequiredPropertyMissing,
        "properties.distribute[1].runOutputName",
    );
    let issues = issues_after(&spec, |b| {
        b["properties"]["distribute"][1]["targetRegions"][0]
            .as_object_mut()
            .unwrap()
            .remove("name");
    });
    assert_single(
        &issues,
        ValidationCode::RequiredPropertyMissing,
        "properties.distribute[1].targetRegions[0].name",
    );
}

#[test]
fn unknown_identity_type_is_refused() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    // ResourceIdentityType has modelAsString: false, so it is a closed set.
    let issues = issues_after(&spec, |b| {
        b["identity"]["type"] = json!("SystemAssigned");
    });
    assert_single(&issues, ValidationCode::InvalidEnumValue, "identity.type");
    let issues = issues_after(&spec, |b| {
        b["identity"]["type"] = json!("userassigned");
    });
    assert_single(&issues, ValidationCode::InvalidEnumValue, "identity.type");
    assert!(issues[0].message.contains("'UserAssigned'"));
}

#[test]
fn model_as_string_enums_accept_unlisted_strings() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    // SharedImageStorageAccountType and onBuildError have modelAsString: true: open enums.
    let mut body = realistic_template();
    body["properties"]["distribute"][1]["targetRegions"][0]["storageAccountType"] =
        json!("Premium_ZRS");
    body["properties"]["errorHandling"] =
        json!({"onCustomizerError": "explode", "onValidationError": "abort"});
    validate(&spec, &body).unwrap();
    // Still strings, though.
    let issues = issues_after(&spec, |b| {
        b["properties"]["errorHandling"] = json!({"onCustomizerError": 1});
    });
    assert_single(
        &issues,
        ValidationCode::InvalidType,
        "properties.errorHandling.onCustomizerError",
    );
    // autoRun.state has modelAsString: false.
    let issues = issues_after(&spec, |b| {
        b["properties"]["autoRun"] = json!({"state": "On"});
    });
    assert_single(
        &issues,
        ValidationCode::InvalidEnumValue,
        "properties.autoRun.state",
    );
}

#[test]
fn all_issues_are_collected_in_a_stable_order() {
    let Some(spec) = spec("2024-02-01") else {
        return;
    };
    let edit = |b: &mut Value| {
        b.as_object_mut().unwrap().remove("location");
        b["tags"]["n"] = json!(1);
        b["properties"]["customize"][1]["type"] = json!("Bash");
        b["properties"]["buildTimeoutInMinutes"] = json!(1000);
        b["properties"]["distribute"][2]["runOutputName"] = json!("a b");
        b["properties"]["vmProfile"]["osDiskSizeGB"] = json!("30");
    };
    let first = issues_after(&spec, edit);
    let second = issues_after(&spec, edit);
    assert_eq!(first, second);
    let found: Vec<(ValidationCode, &str)> =
        first.iter().map(|i| (i.code, i.path.as_str())).collect();
    assert_eq!(
        found,
        vec![
            (ValidationCode::RequiredPropertyMissing, "location"),
            (
                ValidationCode::OutOfRange,
                "properties.buildTimeoutInMinutes"
            ),
            (
                ValidationCode::InvalidDiscriminator,
                "properties.customize[1].type"
            ),
            (
                ValidationCode::PatternMismatch,
                "properties.distribute[2].runOutputName"
            ),
            (
                ValidationCode::InvalidType,
                "properties.vmProfile.osDiskSizeGB"
            ),
            (ValidationCode::InvalidType, "tags.n"),
        ]
    );
    let detail = first[0].to_arm_detail();
    assert_eq!(
        detail,
        json!({"code": "RequiredPropertyMissing", "target": "location", "message": first[0].message})
    );
}

#[test]
fn newer_api_version_knows_its_new_properties() {
    let Some(spec) = spec("2025-10-01") else {
        return;
    };
    let mut body = realistic_template();
    body["properties"]["distribute"][1]["replicationMode"] = json!("Shallow");
    validate(&spec, &body).unwrap();
    if let Some(old) = self::spec("2024-02-01") {
        let issues = validate(&old, &body).unwrap_err();
        assert_single(
            &issues,
            ValidationCode::UnknownProperty,
            "properties.distribute[1].replicationMode",
        );
    }
}
