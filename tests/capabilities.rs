//! Image Builder's capabilities beyond the original task (gallery versions and replicas,
//! validation, error handling, build VM identities, isolated networks, staging tags, artifact
//! delivery, customizers files), each run through the binary as the agent does against the
//! emulator, which acts on each field like Image Builder (sources cited in emulator/src).

mod common;

use aib_emulator::{Config, defaults};
use common::pipeline::*;
use common::*;

const SUBNET_BUILD: &str = "Microsoft.Network/virtualNetworks/vnet/subnets/build";
const SUBNET_ACI: &str = "Microsoft.Network/virtualNetworks/vnet/subnets/aci";

#[tokio::test]
async fn bad_capability_inputs_fail_by_name_before_any_azure_write() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let (temp, package) = sample_package();
    std::fs::write(
        temp.path().join("customizers.json"),
        r#"[{"type": "Shell", "name": "harden", "scriptURI": "https://example.com/h.sh"}]"#,
    )
    .unwrap();
    let gallery = rid("Microsoft.Compute/galleries/g/images/webapp");
    let sig: Vec<(&str, String)> = vec![
        ("DISTRIBUTETYPE", "sig".into()),
        ("GALLERYIMAGEID", gallery.clone()),
    ];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        extra.iter().map(|(k, v)| (*k, v.to_string())).collect()
    };
    let on_sig = |extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        sig.iter().cloned().chain(with(extra)).collect()
    };
    let build_subnet = rid(SUBNET_BUILD);
    let aci_subnet = rid(SUBNET_ACI);
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            on_sig(&[("GALLERYIMAGEVERSION", "1.4")]),
            "galleryImageVersion",
        ),
        (
            on_sig(&[("GALLERYIMAGEVERSION", "latest:x")]),
            "galleryImageVersion",
        ),
        (
            with(&[("GALLERYIMAGEVERSION", "1.0.0")]),
            "galleryImageVersion",
        ),
        (
            on_sig(&[
                ("GALLERYIMAGEVERSION", "source"),
                ("IMAGESOURCE", "managedimage"),
                (
                    "CUSTOMIMAGERESOURCEID",
                    &rid("Microsoft.Compute/images/base"),
                ),
            ]),
            "galleryImageVersion",
        ),
        (
            on_sig(&[("REPLICATIONREGIONS", "westeurope=0")]),
            "replicationRegions",
        ),
        (
            on_sig(&[("REPLICATIONREGIONS", "westeurope=60, northeurope=41")]),
            "replicationRegions",
        ),
        (with(&[("ONCUSTOMIZERERROR", "keep")]), "onCustomizerError"),
        (with(&[("ONVALIDATIONERROR", "abort")]), "onValidationError"),
        (
            with(&[("CONTINUEDISTRIBUTEONFAILURE", "true")]),
            "continueDistributeOnFailure",
        ),
        (
            with(&[("CONTINUEDISTRIBUTEONFAILURE", "sometimes")]),
            "continueDistributeOnFailure",
        ),
        (
            with(&[
                ("SOURCEVALIDATIONONLY", "true"),
                ("VALIDATIONSCRIPT", "test -d /etc"),
            ]),
            "inlineScript",
        ),
        (
            with(&[("SOURCEVALIDATIONONLY", "maybe")]),
            "sourceValidationOnly",
        ),
        (with(&[("OPTIMIZEVMBOOT", "yes")]), "optimizeVmBoot"),
        (
            with(&[("BUILDVMIDENTITIES", "build-vm")]),
            "buildVmIdentities",
        ),
        (
            with(&[("CONTAINERINSTANCESUBNETID", &aci_subnet)]),
            "containerInstanceSubnetId",
        ),
        (
            with(&[
                ("VNETSUBNETID", &build_subnet),
                ("CONTAINERINSTANCESUBNETID", &aci_subnet),
                ("PROXYVMSIZE", "Standard_A2_v2"),
            ]),
            "proxyVmSize",
        ),
        (
            with(&[("MANAGEDRESOURCETAGS", "novalue")]),
            "managedResourceTags",
        ),
        (with(&[("ARTIFACTDELIVERY", "blob")]), "artifactDelivery"),
        (
            with(&[("CUSTOMIZERSFILE", "missing.json")]),
            "customizersFile",
        ),
        (
            with(&[("CUSTOMIZERSFILE", "customizers.json")]),
            "customizersFile",
        ),
    ];
    assert!(cases.len() >= 12);
    let mut failures = Vec::new();
    for (variables, input) in &cases {
        let before = writes(&stack).len();
        let mut vars = pipeline(&stack, &package, temp.path());
        for (variable, value) in variables {
            vars.insert(format!("INPUT_{variable}"), value.clone());
        }
        let (output, out) = run_task_async(&[], vars).await;
        let named = failure_message(&out).is_some_and(|m| m.contains(&format!("input '{input}'")));
        if output.status.success() || !named || writes(&stack).len() != before {
            failures.push(format!(
                "{variables:?}: exit {:?}, named {named}, writes {:?}\n{out}",
                output.status.code(),
                &writes(&stack)[before..]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The customizers file's error points into the JSON.
    let mut vars = pipeline(&stack, &package, temp.path());
    vars.insert("INPUT_CUSTOMIZERSFILE".into(), "customizers.json".into());
    let (_, out) = run_task_async(&[], vars).await;
    let message = failure_message(&out).unwrap();
    assert!(message.contains("$[0].scriptURI"), "{message}");
}

const GALLERY_API: &str = aib_task::build::gallery::GALLERY_API_VERSION;

/// The emulator's gallery image definition (in `defaults::LOCATION`, holding the template
/// reference's example versions 0.1.1 … 2.1.0).
fn gallery_image() -> String {
    rid(&format!(
        "Microsoft.Compute/galleries/{}/images/{}",
        defaults::GALLERY,
        defaults::GALLERY_IMAGE
    ))
}

fn to_gallery(vars: &mut std::collections::BTreeMap<String, String>, extra: &[(&str, &str)]) {
    vars.insert("INPUT_DISTRIBUTETYPE".into(), "sig".into());
    vars.insert("INPUT_GALLERYIMAGEID".into(), gallery_image());
    for (k, v) in extra {
        vars.insert(format!("INPUT_{k}"), (*v).to_owned());
    }
}

#[tokio::test]
async fn an_exact_gallery_version_with_replicas_and_the_definitions_region() {
    let Some(SampleBuild {
        stack, output, out, ..
    }) = sample_build(Config::default(), |_, _, vars| {
        to_gallery(
            vars,
            &[
                ("GALLERYIMAGEVERSION", "3.0.7"),
                ("REPLICATIONREGIONS", "eastus=2"),
            ],
        );
    })
    .await
    else {
        return;
    };
    // Compute Gallery needs the image definition's region among the replicas: the task adds it
    // (the task before this change sent eastus alone, and the build failed when distributing).
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "{} (1 replica) added to replicationRegions",
            defaults::LOCATION
        )),
        "{out}"
    );
    let version = format!("{}/versions/3.0.7", gallery_image());
    assert_eq!(output_variables(&out)["imageUri"], version);
    let (status, body) = stack.arm_get(&version, GALLERY_API).await;
    assert_eq!(status, 200, "{body}");
    let regions = &body["properties"]["publishingProfile"]["targetRegions"];
    let replicas = |name: &str| {
        regions
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["regionalReplicaCount"].as_i64().unwrap())
    };
    assert_eq!(replicas(defaults::LOCATION), Some(1), "{regions}");
    assert_eq!(replicas("eastus"), Some(2), "{regions}");
}

#[tokio::test]
async fn gallery_version_schemes_and_an_existing_version() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let (temp, package) = sample_package();
    let run = |extra: Vec<(&'static str, &'static str)>| {
        let mut vars = pipeline(&stack, &package, temp.path());
        to_gallery(&mut vars, &extra);
        run_task_async(&[], vars)
    };
    // latest:1 → one patch above the highest 1.x (template reference: 1.2.0 → 1.2.1).
    let (output, out) = run(vec![("GALLERYIMAGEVERSION", "latest:1")]).await;
    assert!(output.status.success(), "{out}");
    assert_eq!(
        output_variables(&out)["imageUri"],
        format!("{}/versions/1.2.1", gallery_image())
    );
    // source → the marketplace image's own version, the one pirVersion names.
    let (output, out) = run(vec![("GALLERYIMAGEVERSION", "source")]).await;
    assert!(output.status.success(), "{out}");
    let vars = output_variables(&out);
    assert_eq!(
        vars["imageUri"],
        format!("{}/versions/{}", gallery_image(), vars["pirVersion"])
    );
    // An exact version that exists fails before anything is written, by name.
    let before = writes(&stack).len();
    let (output, out) = run(vec![("GALLERYIMAGEVERSION", "2.1.0")]).await;
    assert!(!output.status.success());
    let message = failure_message(&out).unwrap();
    assert!(
        message.contains("galleryImageVersion") && message.contains("exists already"),
        "{message}"
    );
    assert_eq!(writes(&stack)[before..], [] as [String; 0]);
}

#[tokio::test]
async fn a_missing_image_definition_fails_before_any_write() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let (temp, package) = sample_package();
    let mut vars = pipeline(&stack, &package, temp.path());
    to_gallery(&mut vars, &[]);
    vars.insert(
        "INPUT_GALLERYIMAGEID".into(),
        rid("Microsoft.Compute/galleries/nogallery/images/nothing"),
    );
    let (output, out) = run_task_async(&[], vars).await;
    assert!(!output.status.success());
    let message = failure_message(&out).unwrap();
    assert!(
        message.contains("galleryImageId") && message.contains("does not exist"),
        "{message}"
    );
    assert!(writes(&stack).is_empty(), "{:?}", writes(&stack));
}

#[tokio::test]
async fn validation_passes_and_shows_in_the_log() {
    let Some(SampleBuild {
        stack, output, out, ..
    }) = sample_build(Config::default(), |_, _, vars| {
        vars.insert(
            "INPUT_VALIDATIONSCRIPT".into(),
            "test -x /opt/webapp/run".into(),
        );
        vars.insert("INPUT_OPTIMIZEVMBOOT".into(), "true".into());
    })
    .await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    assert!(out.contains("aib-task-validation"), "{out}");
    assert!(out.contains("Validating"), "{out}");
    assert!(out.contains("Optimizing"), "{out}");
    let events: Vec<String> = stack
        .emulator
        .template_events()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(
        events.iter().any(|e| e == "runSubState=Validating"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e == "runSubState=Optimizing"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_failed_validation_is_reported_as_such_and_may_still_distribute() {
    let config = Config {
        fail_at: Some(aib_emulator::RunSubState::Validating),
        ..Config::default()
    };
    let Some(SampleBuild {
        stack: _stack,
        output,
        out,
        ..
    }) = sample_build(config.clone(), |_, _, vars| {
        vars.insert(
            "INPUT_VALIDATIONSCRIPT".into(),
            "test -x /opt/webapp/run".into(),
        );
    })
    .await
    else {
        return;
    };
    assert!(!output.status.success());
    let message = failure_message(&out).unwrap();
    assert!(message.contains("failed in validation"), "{message}");
    assert!(!message.contains("distributed all the same"), "{message}");
    // The log's end is shown.
    assert!(out.contains("Build log (last 100 lines"), "{out}");
    assert!(out.contains("aib-task-validation"), "{out}");

    let Some(SampleBuild { output, out, .. }) = sample_build(config, |_, _, vars| {
        to_gallery(vars, &[]);
        vars.insert(
            "INPUT_VALIDATIONSCRIPT".into(),
            "test -x /opt/webapp/run".into(),
        );
        vars.insert("INPUT_CONTINUEDISTRIBUTEONFAILURE".into(), "true".into());
    })
    .await
    else {
        return;
    };
    assert!(!output.status.success());
    let message = failure_message(&out).unwrap();
    assert!(
        message.contains("failed in validation")
            && message.contains("distributed all the same")
            && message.contains(&format!("{}/versions/", gallery_image())),
        "{message}"
    );
}

#[tokio::test]
async fn abort_keeps_the_build_vm_and_its_template_and_says_how_to_remove_them() {
    let config = Config {
        fail_at: Some(aib_emulator::RunSubState::Customizing),
        ..Config::default()
    };
    let Some(SampleBuild {
        stack, output, out, ..
    }) = sample_build(config, |_, _, vars| {
        vars.insert("INPUT_ONCUSTOMIZERERROR".into(), "abort".into());
        // Without abort this would delete the template, and the VM with its staging group.
        vars.insert("INPUT_KEEPTEMPLATEONFAILURE".into(), "false".into());
        vars.insert("INPUT_MANAGEDRESOURCETAGS".into(), "costCenter=1234".into());
    })
    .await
    else {
        return;
    };
    assert!(!output.status.success());
    let message = failure_message(&out).unwrap();
    assert!(
        message.contains("The build VM was kept for debugging (onCustomizerError: abort)"),
        "{message}"
    );
    assert!(
        message.contains("az image builder delete --name"),
        "{message}"
    );
    assert!(message.contains("az vm list --resource-group"), "{message}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let templates = stack.emulator.templates();
    assert_eq!(templates.len(), 1, "the template is kept");
    let template = &templates[0].1;
    let group = template["properties"]["exactStagingResourceGroup"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, resources) = stack
        .arm_get(&format!("{group}/resources"), "2021-04-01")
        .await;
    assert_eq!(status, 200, "{resources}");
    let vm = resources["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Microsoft.Compute/virtualMachines")
        .unwrap_or_else(|| panic!("a kept VM in {resources}"));
    assert_eq!(vm["tags"]["costCenter"], "1234", "{vm}");
    assert!(message.contains(&group), "{message}");
}

#[tokio::test]
async fn build_vm_identity_isolated_network_staging_tags_and_in_vm_delivery() {
    let identity = rid("Microsoft.ManagedIdentity/userAssignedIdentities/build-vm");
    let Some(SampleBuild {
        stack, output, out, ..
    }) = sample_build(Config::default(), |_, _, vars| {
        for (k, v) in [
            ("VNETSUBNETID", rid(SUBNET_BUILD)),
            ("CONTAINERINSTANCESUBNETID", rid(SUBNET_ACI)),
            ("BUILDVMIDENTITIES", identity.clone()),
            (
                "MANAGEDRESOURCETAGS",
                "costCenter=1234\nowner=platform".into(),
            ),
            ("ARTIFACTDELIVERY", "vm".into()),
            ("ONVALIDATIONERROR", "abort".into()),
            ("VALIDATIONSCRIPT", "test -x /opt/webapp/run".into()),
        ] {
            vars.insert(format!("INPUT_{k}"), v);
        }
    })
    .await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    // The template as sent.
    let body = template_sent(&stack);
    let p = &body["properties"];
    assert_eq!(
        p["vmProfile"]["userAssignedIdentities"][0],
        identity.as_str()
    );
    assert_eq!(
        p["vmProfile"]["vnetConfig"]["subnetId"],
        rid(SUBNET_BUILD).as_str()
    );
    assert_eq!(
        p["vmProfile"]["vnetConfig"]["containerInstanceSubnetId"],
        rid(SUBNET_ACI).as_str()
    );
    assert_eq!(p["managedResourceTags"]["owner"], "platform");
    assert_eq!(p["errorHandling"]["onValidationError"], "abort");
    // In-VM delivery: the archive came by the download script, not a File customizer.
    assert_eq!(p["customize"][0]["type"], "Shell", "{}", p["customize"]);
    assert!(
        p["customize"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["type"] != "File")
    );
    let downloads = stack.emulator.downloads();
    assert!(
        !downloads.is_empty(),
        "the emulator's VM fetched the archive"
    );
}

#[tokio::test]
async fn a_customizers_file_runs_after_the_inline_script() {
    let Some(SampleBuild {
        stack, output, out, ..
    }) = sample_build(Config::default(), |_, package, vars| {
        let file = package.parent().unwrap().join("customizers.json");
        std::fs::write(
            &file,
            r#"[
              {"type": "Shell", "name": "motd", "inline": ["echo built by aib-task | sudo tee /etc/motd"]},
              {"type": "Shell", "name": "harden", "inline": ["sudo chmod 700 /root"]}
            ]"#,
        )
        .unwrap();
        vars.insert("INPUT_CUSTOMIZERSFILE".into(), file.display().to_string());
    })
    .await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    // The file's steps follow the inline script, in the file's order, in the template sent…
    let sent = template_sent(&stack);
    let names: Vec<&str> = sent["properties"]["customize"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names[names.len() - 3..],
        ["aib-task-inline-script", "motd", "harden"],
        "{names:?}"
    );
    // …and are reported in the build log.
    assert!(out.contains("motd") && out.contains("harden"), "{out}");
}

#[tokio::test]
async fn a_secret_in_the_inline_script_is_named_and_masked() {
    const SECRET: &str = "Sup3r-S3cret-Repo-Token";
    let Some(SampleBuild { output, out, .. }) = sample_build(Config::default(), |_, _, vars| {
        vars.insert(
            "INPUT_INLINESCRIPT".into(),
            format!("curl -fsS -H 'Authorization: Bearer {SECRET}' https://repo.example/pkg"),
        );
        vars.insert("SECRET_REPO_TOKEN".into(), SECRET.into());
    })
    .await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    let warning = out
        .lines()
        .find(|l| l.contains("secret variable REPO_TOKEN"))
        .unwrap_or_else(|| panic!("a warning naming the variable:\n{out}"));
    assert!(warning.contains("inlineScript") && warning.contains("Key Vault"));
    // Announced before anything could print it, and printed nowhere else.
    let announced = assert_announced_secrets_not_printed(&out);
    assert!(announced.iter().any(|s| s == SECRET), "{announced:?}");
}

#[tokio::test]
async fn source_validation_only_uploads_nothing_and_customizes_nothing() {
    let Some(SampleBuild {
        stack, output, out, ..
    }) = sample_build(Config::default(), |_, _, vars| {
        vars.insert("INPUT_INLINESCRIPT".into(), String::new());
        vars.insert("INPUT_SOURCEVALIDATIONONLY".into(), "true".into());
        vars.insert("INPUT_VALIDATIONSCRIPT".into(), "test -d /etc".into());
    })
    .await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    assert!(out.contains("sourceValidationOnly is true"), "{out}");
    let sent = template_sent(&stack);
    assert!(sent["properties"].get("customize").is_none(), "{sent}");
    assert_eq!(sent["properties"]["validate"]["sourceValidationOnly"], true);
    assert_eq!(
        stack.artifact_container_listing().await.unwrap_or_default(),
        [] as [String; 0]
    );
    let events: Vec<String> = stack
        .emulator
        .template_events()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(
        !events.iter().any(|e| e == "runSubState=Customizing"),
        "{events:?}"
    );
}

#[tokio::test]
async fn the_template_command_shows_every_capability_and_writes_nothing() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let (temp, package) = sample_package();
    let mut vars = pipeline(&stack, &package, temp.path());
    to_gallery(
        &mut vars,
        &[
            ("GALLERYIMAGEVERSION", "latest:2"),
            ("REPLICATIONREGIONS", "eastus=3"),
            ("VALIDATIONSCRIPT", "test -x /opt/webapp/run"),
            ("ONCUSTOMIZERERROR", "abort"),
            ("OPTIMIZEVMBOOT", "true"),
            ("MANAGEDRESOURCETAGS", "costCenter=1234"),
            ("ARTIFACTDELIVERY", "vm"),
        ],
    );
    vars.insert("INPUT_VNETSUBNETID".into(), rid(SUBNET_BUILD));
    vars.insert("INPUT_PROXYVMSIZE".into(), "Standard_A2_v2".into());
    let (output, out) = run_task_async(&["template"], vars).await;
    assert!(output.status.success(), "{out}");
    let json_start = out.find("\n{").expect("the template JSON") + 1;
    let template: serde_json::Value =
        serde_json::from_str(&out[json_start..]).expect("valid JSON at the end");
    let p = &template["properties"];
    let d = &p["distribute"][0];
    assert_eq!(
        d["versioning"],
        serde_json::json!({"scheme": "Latest", "major": 2})
    );
    // The image definition's region was read and added, as the build would.
    assert_eq!(d["targetRegions"][0]["name"], defaults::LOCATION, "{d}");
    assert_eq!(d["targetRegions"][1]["replicaCount"], 3, "{d}");
    assert_eq!(
        p["validate"]["inVMValidations"][0]["name"],
        "aib-task-validation"
    );
    assert_eq!(p["errorHandling"]["onCustomizerError"], "abort");
    assert_eq!(p["optimize"]["vmBoot"]["state"], "Enabled");
    assert_eq!(p["managedResourceTags"]["costCenter"], "1234");
    assert_eq!(
        p["vmProfile"]["vnetConfig"]["proxyVmSize"],
        "Standard_A2_v2"
    );
    assert_eq!(p["customize"][0]["type"], "Shell");
    assert_eq!(writes(&stack), Vec::<String>::new());
    assert_eq!(stack.artifact_container_listing().await, None);
}
