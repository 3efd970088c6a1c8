//! The 2024-02-01 template features the emulator models: validation (pass, fail,
//! continueDistributeOnFailure, sourceValidationOnly), errorHandling abort/cleanup, gallery
//! versions (explicit, Latest with major, Source, replica counts, the gallery's region),
//! vnetConfig and build VM identity refusals, managedResourceTags, optimize, and many customizers
//! in the build log.

mod common;

use aib_emulator::{config::GalleryImageConfig, defaults};
use common::{Env, fast_config, template_body};
use reqwest::Method;
use serde_json::{Value, json};

fn gallery_image() -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}/images/{}",
        defaults::SUBSCRIPTION_ID,
        defaults::RESOURCE_GROUP,
        defaults::GALLERY,
        defaults::GALLERY_IMAGE
    )
}

fn shared(out: &str, extra: Value) -> Value {
    let mut d =
        json!({"type": "SharedImage", "runOutputName": out, "galleryImageId": gallery_image()});
    for (k, v) in extra.as_object().unwrap() {
        d[k] = v.clone();
    }
    d
}

fn shell(name: &str) -> Value {
    json!({"type": "Shell", "name": name, "inline": [format!("echo {name}")]})
}

async fn run_outputs(env: &Env, name: &str) -> Vec<Value> {
    let (status, _, body) = env
        .arm(
            Method::GET,
            &format!("{}/runOutputs", env.template_path(name)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["value"].as_array().unwrap().clone()
}

fn artifact(outputs: &[Value], out: &str) -> String {
    outputs
        .iter()
        .find(|o| o["name"] == out)
        .unwrap_or_else(|| panic!("no run output {out}: {outputs:?}"))["properties"]["artifactId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn log_text(env: &Env, name: &str) -> String {
    let (_, bytes) = env
        .emulator
        .build_log(defaults::SUBSCRIPTION_ID, defaults::RESOURCE_GROUP, name)
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn staging_group(env: &Env, name: &str) -> String {
    env.template(name).await["properties"]["exactStagingResourceGroup"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn build(env: &Env, name: &str, body: &Value) -> (Value, Value) {
    env.create_template(name, body).await;
    let op = env.run_template(name).await;
    (op, env.template(name).await)
}

#[tokio::test]
async fn validation_passes_fails_or_distributes_anyway() {
    let env = Env::start(fast_config()).await;
    let validate = json!({"inVMValidations": [
        {"type": "Shell", "name": "check-nginx", "inline": ["systemctl is-active nginx"]},
        {"type": "File", "name": "fetch-checks", "sourceUri": "https://example.com/c.sh", "destination": "/tmp/c.sh"},
        {"type": "Shell", "name": "check-port", "inline": ["curl -sf localhost:80"]}
    ]});

    // Passing validation: Validating shows, the validators are in the log, the run succeeds.
    let mut body = template_body(json!([shell("install")]), json!([shared("sig", json!({}))]));
    body["properties"]["validate"] = validate.clone();
    let (op, t) = build(&env, "t_validate_ok", &body).await;
    assert_eq!(op["status"], "Succeeded", "{op}");
    assert_eq!(t["properties"]["lastRunStatus"]["runState"], "Succeeded");
    let events: Vec<String> = env
        .emulator
        .template_events()
        .into_iter()
        .filter(|e| e.template.ends_with("/t_validate_ok"))
        .map(|e| e.event)
        .collect();
    assert!(
        events.contains(&"runSubState=Validating".to_string()),
        "{events:?}"
    );
    let log = log_text(&env, "t_validate_ok");
    for line in [
        "PACKER OUT     azure-arm: + systemctl is-active nginx\n",
        "PACKER OUT     azure-arm: validation 'check-port' running\n",
        "PACKER OUT ==> azure-arm: All in-VM validations passed.\n",
    ] {
        assert!(log.contains(line), "{line}");
    }
    assert_eq!(run_outputs(&env, "t_validate_ok").await.len(), 1);

    // A failing validation (the fail-at knob, per template): failed, named, not distributed.
    let mut failing = body.clone();
    failing["tags"]["aib-emulator-fail-at"] = json!("Validating");
    let (op, t) = build(&env, "t_validate_fail", &failing).await;
    assert_eq!(op["status"], "Failed", "{op}");
    let run = &t["properties"]["lastRunStatus"];
    assert_eq!(run["runState"], "Failed");
    let message = run["message"].as_str().unwrap();
    assert!(
        message.contains("Validation failed: In-VM validation 'check-port' failed."),
        "{message}"
    );
    assert!(!message.contains("distributed anyway"));
    assert!(run_outputs(&env, "t_validate_fail").await.is_empty());
    let log = log_text(&env, "t_validate_fail");
    assert!(log.contains("==> azure-arm: Validation failed: In-VM validation 'check-port' failed: Script exited with non-zero exit status: 1"));
    assert!(log.contains("==> azure-arm: Deleting individual resources ..."));

    // continueDistributeOnFailure: distributed (run output, gallery version) yet Failed.
    let mut anyway = failing.clone();
    anyway["properties"]["validate"]["continueDistributeOnFailure"] = json!(true);
    let (op, t) = build(&env, "t_validate_anyway", &anyway).await;
    assert_eq!(op["status"], "Failed", "{op}");
    let run = &t["properties"]["lastRunStatus"];
    assert_eq!(run["runState"], "Failed");
    let message = run["message"].as_str().unwrap();
    assert!(
        message.contains("distributed anyway (validate.continueDistributeOnFailure is true)"),
        "{message}"
    );
    let id = artifact(&run_outputs(&env, "t_validate_anyway").await, "sig");
    let (status, _, version) = env.arm(Method::GET, &id, None).await;
    assert_eq!(status, 200, "{version}");
}

#[tokio::test]
async fn source_validation_only_validates_without_a_build() {
    let env = Env::start(fast_config()).await;
    let mut body = template_body(json!([]), json!([shared("sig", json!({}))]));
    body["properties"]["validate"] = json!({"sourceValidationOnly": true, "inVMValidations": [
        {"type": "Shell", "name": "source-check", "inline": ["uname -a"]}
    ]});
    let (op, t) = build(&env, "t_source_only", &body).await;
    assert_eq!(op["status"], "Succeeded", "{op}");
    assert_eq!(t["properties"]["lastRunStatus"]["runState"], "Succeeded");
    let events: Vec<String> = env
        .emulator
        .template_events()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(events.contains(&"runSubState=Validating".to_string()));
    assert!(!events.contains(&"runSubState=Customizing".to_string()));
    assert!(!events.contains(&"runSubState=Distributing".to_string()));
    assert!(run_outputs(&env, "t_source_only").await.is_empty());
    let log = log_text(&env, "t_source_only");
    assert!(log.contains("Source validation only"));
    assert!(log.contains("azure-arm: + uname -a"));
    assert!(!log.contains("Capturing image"));

    // With customizers it is refused at PUT.
    let mut refused = body.clone();
    refused["properties"]["customize"] = json!([shell("install")]);
    let (status, _, err) = env
        .arm(
            Method::PUT,
            &env.template_path("t_source_only_2"),
            Some(&refused),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "ValidationFailed");
    assert!(err["error"]["message"].as_str().unwrap().starts_with(
        "Validation failed: 'ImageTemplate.properties.validate': Field 'sourceValidationOnly'"
    ));
}

async fn staging_resource_types(env: &Env, group: &str) -> Vec<String> {
    let (status, _, list) = env
        .arm(Method::GET, &format!("{group}/resources"), None)
        .await;
    assert_eq!(status, 200, "{list}");
    list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn abort_keeps_the_build_vm_and_cleanup_does_not() {
    let env = Env::start(fast_config()).await;
    let identity = format!(
        "/subscriptions/{}/resourceGroups/aib-test-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/build-vm-id",
        defaults::SUBSCRIPTION_ID
    );
    let mut body = template_body(json!([shell("install")]), json!([]));
    body["tags"]["aib-emulator-fail-at"] = json!("Customizing");
    body["properties"]["errorHandling"] =
        json!({"onCustomizerError": "abort", "onValidationError": "cleanup"});
    body["properties"]["managedResourceTags"] = json!({"costCenter": "42", "owner": "images"});
    body["properties"]["vmProfile"]["userAssignedIdentities"] = json!([identity]);
    let (op, _) = build(&env, "t_abort", &body).await;
    assert_eq!(op["status"], "Failed", "{op}");
    let group = staging_group(&env, "t_abort").await;

    // The staging group: default tags plus managedResourceTags.
    let (_, _, rg) = env.arm(Method::GET, &group, None).await;
    assert_eq!(rg["tags"]["imageTemplateName"], "t_abort");
    assert_eq!(rg["tags"]["costCenter"], "42");
    let types = staging_resource_types(&env, &group).await;
    for t in [
        "Microsoft.Compute/virtualMachines",
        "Microsoft.Network/networkInterfaces",
        "Microsoft.Compute/disks",
        "Microsoft.Network/virtualNetworks",
        "Microsoft.Storage/storageAccounts",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
    }
    let vm_path = format!("{group}/providers/Microsoft.Compute/virtualMachines/pkrvm0emulated");
    let (status, _, vm) = env.arm(Method::GET, &vm_path, None).await;
    assert_eq!(status, 200, "{vm}");
    assert_eq!(vm["tags"]["owner"], "images");
    assert_eq!(
        vm["properties"]["hardwareProfile"]["vmSize"],
        "Standard_D2s_v3"
    );
    assert!(vm["identity"]["userAssignedIdentities"][&identity].is_object());
    assert!(log_text(&env, "t_abort").contains("errorHandling is 'abort'"));

    // cleanup (the default) leaves no build VM.
    body["properties"]["errorHandling"] = json!({"onCustomizerError": "cleanup"});
    let (op, _) = build(&env, "t_cleanup", &body).await;
    assert_eq!(op["status"], "Failed", "{op}");
    let cleanup_group = staging_group(&env, "t_cleanup").await;
    let types = staging_resource_types(&env, &cleanup_group).await;
    assert!(
        !types
            .iter()
            .any(|x| x == "Microsoft.Compute/virtualMachines"),
        "{types:?}"
    );
    let (status, _, _) = env
        .arm(
            Method::GET,
            &format!("{cleanup_group}/providers/Microsoft.Compute/virtualMachines/pkrvm0emulated"),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // A validation failure with onValidationError abort keeps it too.
    let mut v = template_body(json!([shell("install")]), json!([]));
    v["tags"]["aib-emulator-fail-at"] = json!("Validating");
    v["properties"]["validate"] =
        json!({"inVMValidations": [{"type": "Shell", "name": "v", "inline": ["false"]}]});
    v["properties"]["errorHandling"] = json!({"onValidationError": "abort"});
    v["properties"]["vmProfile"]["vnetConfig"] = json!({"subnetId": format!("/subscriptions/{}/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/vn/subnets/build", defaults::SUBSCRIPTION_ID)});
    let (op, _) = build(&env, "t_abort_validation", &v).await;
    assert_eq!(op["status"], "Failed", "{op}");
    let g = staging_group(&env, "t_abort_validation").await;
    let types = staging_resource_types(&env, &g).await;
    assert!(
        types
            .iter()
            .any(|x| x == "Microsoft.Compute/virtualMachines")
    );
    // With the user's subnet Image Builder makes no VNet of its own.
    assert!(
        !types
            .iter()
            .any(|x| x == "Microsoft.Network/virtualNetworks"),
        "{types:?}"
    );

    // Deleting the template deletes the staging group and what was kept in it.
    let (status, _, _) = env
        .arm(Method::DELETE, &env.template_path("t_abort"), None)
        .await;
    assert_eq!(status, 202);
    for _ in 0..200 {
        if env
            .emulator
            .deleted_templates()
            .iter()
            .any(|t| t.ends_with("/t_abort"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, _, _) = env.arm(Method::GET, &vm_path, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn gallery_versions_explicit_latest_source_and_replicas() {
    let env = Env::start(fast_config()).await;
    let body = template_body(
        json!([shell("install")]),
        json!([
            shared(
                "explicit",
                json!({"galleryImageId": format!("{}/versions/3.0.0", gallery_image()),
                "targetRegions": [{"name": "westus2", "replicaCount": 3}, {"name": "eastus", "replicaCount": 2, "storageAccountType": "Standard_ZRS"}]})
            ),
            shared(
                "major1",
                json!({"versioning": {"scheme": "Latest", "major": 1}})
            ),
            shared("source", json!({"versioning": {"scheme": "Source"}}))
        ]),
    );
    let (op, t) = build(&env, "t_gallery", &body).await;
    assert_eq!(op["status"], "Succeeded", "{op}");
    let outputs = run_outputs(&env, "t_gallery").await;
    let explicit = artifact(&outputs, "explicit");
    assert_eq!(explicit, format!("{}/versions/3.0.0", gallery_image()));
    // Template reference, versioning: major 1 over 1.2.0 gives 1.2.1.
    assert_eq!(
        artifact(&outputs, "major1"),
        format!("{}/versions/1.2.1", gallery_image())
    );
    // Source: the platform image's exact version (latest resolved).
    assert_eq!(t["properties"]["source"]["exactVersion"], "22.04.202411010");
    assert_eq!(
        artifact(&outputs, "source"),
        format!("{}/versions/22.04.202411010", gallery_image())
    );
    // The version as Compute answers it, with the replica counts asked for.
    let (status, _, v) = env.arm(Method::GET, &explicit, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "3.0.0");
    let regions = v["properties"]["publishingProfile"]["targetRegions"]
        .as_array()
        .unwrap();
    assert_eq!(regions[0]["name"], "westus2");
    assert_eq!(regions[0]["regionalReplicaCount"], 3);
    assert_eq!(regions[1]["regionalReplicaCount"], 2);
    assert_eq!(regions[1]["storageAccountType"], "Standard_ZRS");
    let (_, _, list) = env
        .arm(Method::GET, &format!("{}/versions", gallery_image()), None)
        .await;
    assert_eq!(list["value"].as_array().unwrap().len(), 13, "{list}");

    // Latest without major now goes above 22.04.202411010; the same explicit version again
    // fails at Distributing, as the version exists.
    let again = template_body(
        json!([]),
        json!([shared(
            "explicit",
            json!({"galleryImageId": format!("{}/versions/3.0.0", gallery_image())})
        )]),
    );
    let (op, t) = build(&env, "t_gallery_again", &again).await;
    assert_eq!(op["status"], "Failed", "{op}");
    let message = t["properties"]["lastRunStatus"]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("Failed in distributing 1 images out of total 1"),
        "{message}"
    );
    assert!(message.contains("already exists"), "{message}");
    let latest = template_body(
        json!([]),
        json!([shared("l", json!({"versioning": {"scheme": "Latest"}}))]),
    );
    build(&env, "t_gallery_latest", &latest).await;
    assert_eq!(
        artifact(&run_outputs(&env, "t_gallery_latest").await, "l"),
        format!("{}/versions/22.04.202411011", gallery_image())
    );
}

#[tokio::test]
async fn target_regions_must_include_the_gallery_region() {
    let mut config = fast_config();
    config.gallery_images.push(GalleryImageConfig {
        gallery: "eastgallery".into(),
        image: "web".into(),
        location: "eastus".into(),
        versions: Vec::new(),
        ..GalleryImageConfig::default()
    });
    let env = Env::start(config).await;
    let east = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/galleries/eastgallery/images/web",
        defaults::SUBSCRIPTION_ID,
        defaults::RESOURCE_GROUP
    );
    let body = template_body(
        json!([]),
        json!([shared(
            "sig",
            json!({"galleryImageId": east, "targetRegions": [{"name": "westus2", "replicaCount": 1}]})
        )]),
    );
    let (op, t) = build(&env, "t_region", &body).await;
    assert_eq!(op["status"], "Failed", "{op}");
    let message = t["properties"]["lastRunStatus"]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("must include the region of the gallery, 'eastus'"),
        "{message}"
    );
    // Without targetRegions the version lives in the gallery's region, one replica.
    let body = template_body(
        json!([]),
        json!([shared("sig", json!({"galleryImageId": east}))]),
    );
    let (op, _) = build(&env, "t_region_default", &body).await;
    assert_eq!(op["status"], "Succeeded", "{op}");
    let id = artifact(&run_outputs(&env, "t_region_default").await, "sig");
    let (_, _, v) = env.arm(Method::GET, &id, None).await;
    assert_eq!(v["location"], "eastus");
    assert_eq!(
        v["properties"]["publishingProfile"]["targetRegions"],
        json!([{"name": "eastus", "regionalReplicaCount": 1, "storageAccountType": "Standard_LRS"}])
    );
}

#[tokio::test]
async fn vnet_config_and_build_vm_identities_are_checked_at_put() {
    let env = Env::start(fast_config()).await;
    let subnet = |vnet: &str, s: &str| {
        format!(
            "/subscriptions/{}/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/{vnet}/subnets/{s}",
            defaults::SUBSCRIPTION_ID
        )
    };
    let cases = [
        (
            json!({"containerInstanceSubnetId": subnet("vn", "aci")}),
            "Field 'containerInstanceSubnetId' can be specified only if 'subnetId' is also specified",
        ),
        (
            json!({"subnetId": subnet("vn", "build"), "containerInstanceSubnetId": subnet("vn", "aci"), "proxyVmSize": "Standard_A2_v2"}),
            "Field 'proxyVmSize' must not be specified if 'containerInstanceSubnetId' is specified",
        ),
        (
            json!({"subnetId": subnet("vn", "build"), "containerInstanceSubnetId": subnet("vn", "build")}),
            "must not be the same subnet",
        ),
        (
            json!({"subnetId": subnet("vn", "build"), "containerInstanceSubnetId": subnet("other", "aci")}),
            "must be on the same Virtual Network",
        ),
        (
            json!({"subnetId": "not-a-subnet"}),
            "Field 'subnetId' has a bad value",
        ),
    ];
    for (i, (vnet, expected)) in cases.iter().enumerate() {
        let mut body = template_body(json!([]), json!([]));
        body["properties"]["vmProfile"]["vnetConfig"] = vnet.clone();
        let (status, _, err) = env
            .arm(
                Method::PUT,
                &env.template_path(&format!("t_vnet_{i}")),
                Some(&body),
            )
            .await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"]["code"], "ValidationFailed");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(
                "Validation failed: 'ImageTemplate.properties.vmProfile.vnetConfig': "
            ),
            "{message}"
        );
        assert!(message.contains(expected), "{message}");
    }
    // Both subnets on one VNet, no proxy size: accepted.
    let mut ok_body = template_body(json!([]), json!([]));
    ok_body["properties"]["vmProfile"]["vnetConfig"] = json!({"subnetId": subnet("vn", "build"), "containerInstanceSubnetId": subnet("vn", "aci")});
    ok_body["properties"]["vmProfile"]["userAssignedIdentities"] =
        json!([defaults::MANAGED_IDENTITY_RESOURCE_ID]);
    env.create_template("t_vnet_ok", &ok_body).await;

    let mut bad_identity = template_body(json!([]), json!([]));
    bad_identity["properties"]["vmProfile"]["userAssignedIdentities"] =
        json!(["/subscriptions/x/identities/nope"]);
    let (status, _, err) = env
        .arm(
            Method::PUT,
            &env.template_path("t_vm_identity"),
            Some(&bad_identity),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains(
        "Field 'userAssignedIdentities' has a bad value: '/subscriptions/x/identities/nope'"
    ));
}

#[tokio::test]
async fn optimize_and_many_customizers_show_in_the_log() {
    let env = Env::start(fast_config()).await;
    let mut body = template_body(
        json!([
            {"type": "Shell", "name": "inline-shell", "inline": ["echo one", "echo two"]},
            {"type": "Shell", "name": "script-shell", "scriptUri": "https://example.com/setup.sh", "sha256Checksum": "00"},
            {"type": "PowerShell", "name": "ps", "inline": ["Write-Host hi"], "validExitCodes": [0, 3010]},
            {"type": "WindowsRestart", "name": "restart", "restartTimeout": "10m"},
            {"type": "WindowsUpdate", "name": "updates", "updateLimit": 5},
            {"type": "Shell", "inline": ["echo unnamed"]}
        ]),
        json!([]),
    );
    body["properties"]["optimize"] = json!({"vmBoot": {"state": "Enabled"}});
    let (op, _) = build(&env, "t_many", &body).await;
    assert_eq!(op["status"], "Succeeded", "{op}");
    let log = log_text(&env, "t_many");
    for line in [
        "azure-arm: + echo two",
        "azure-arm: PS> Write-Host hi",
        "==> azure-arm: Restarting Machine",
        "==> azure-arm: Running Windows update...",
        "azure-arm: + echo unnamed",
        "Optimizing the image for faster VM boot",
    ] {
        assert!(log.contains(line), "{line}");
    }
    assert_eq!(
        log.matches("(telemetry) Starting provisioner shell")
            .count(),
        3,
        "three Shell customizers (a Windows build deprovisions with PowerShell)"
    );
    let events: Vec<String> = env
        .emulator
        .template_events()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(events.contains(&"runSubState=Optimizing".to_string()));
}
