//! The image build end to end, run exactly as the agent runs the task (INPUT_* and ENDPOINT_*
//! variables in, logging commands out) against the emulator and Azurite: every source with
//! every distributor on Linux and Windows, failure with the build log, cancellation, throttling
//! and server errors, short-lived tokens, and a table of bad inputs that never reach Azure.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aib_emulator::{Config, Fault, RunSubState, defaults, scenario};
use common::pipeline::*;
use common::*;

#[tokio::test]
async fn a_linux_marketplace_build_to_a_managed_image() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let (temp, package) = sample_package();
    let (output, out) = run_task_async(&[], pipeline(&stack, &package, temp.path())).await;
    assert!(
        output.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let vars = output_variables(&out);
    assert_eq!(
        vars["imageUri"],
        rid("Microsoft.Compute/images/webapp-image")
    );
    assert_eq!(vars["pirPublisher"], "Canonical");
    assert_eq!(vars["pirOffer"], "0001-com-ubuntu-server-jammy");
    assert_eq!(vars["pirSku"], "22_04-lts-gen2");
    assert_eq!(
        vars["pirVersion"], "22.04.202411010",
        "latest resolved to the exact version"
    );
    let template = &vars["templateName"];
    assert!(template.starts_with("t_4711_"), "{template}");
    assert!(
        commands(&out)
            .iter()
            .filter(|c| c.action == "setvariable")
            .all(|c| c.property("isOutput") == Some("true"))
    );

    // The original task's log lines, which users search for, in order.
    let mut at = 0;
    for line in [
        "start reading task parameters...".to_owned(),
        format!("found build at:  {}", package.display()),
        "end reading parameters".to_owned(),
        format!(
            "getting storage account details for {}",
            defaults::STORAGE_ACCOUNT
        ),
        "created archive ".to_owned(),
        "Source for image:  {".to_owned(),
        format!("template name:  {template}"),
        "starting put template...".to_owned(),
        "put template:  Succeeded".to_owned(),
        "starting run template...".to_owned(),
        "run template:  Succeeded".to_owned(),
        "getting runOutput for  ManagedImage_distribute".to_owned(),
        "## task output variables ##".to_owned(),
        format!("$(imageUri) =  {}", vars["imageUri"]),
        format!("deleting template {template}..."),
        "deleting storage blob imagebuilder-vststask\\webapp/4711-1/webapp_".to_owned(),
    ] {
        let found = out[at..]
            .find(&line)
            .unwrap_or_else(|| panic!("missing or out of order: {line}\n{out}"));
        at += found + line.len();
    }
    // Progress for the agent's UI and a summary for the run page.
    assert!(
        commands(&out)
            .iter()
            .any(|c| c.action == "setprogress" && c.message.contains("Customizing"))
    );
    let summary = commands(&out)
        .into_iter()
        .find(|c| c.action == "uploadsummary")
        .expect("a run summary");
    let summary = std::fs::read_to_string(&summary.message).unwrap();
    assert!(
        summary.contains("build succeeded") && summary.contains("22.04.202411010"),
        "{summary}"
    );

    // Image Builder downloaded the artifact through the SAS, and it was whole.
    let downloads = stack.emulator.downloads();
    assert_eq!(downloads.len(), 1, "{downloads:?}");
    assert_eq!(downloads[0].error, None);
    assert!(
        downloads[0]
            .entries
            .iter()
            .any(|e| e == "scripts/install.sh"),
        "{:?}",
        downloads[0].entries
    );
    // Nothing is left: the template's deletion was accepted (it finishes in the background)
    // and the blob is gone.
    let deleting = Instant::now();
    while !stack
        .emulator
        .deleted_templates()
        .iter()
        .any(|t| t.ends_with(template.as_str()))
    {
        assert!(
            deleting.elapsed() < Duration::from_secs(10),
            "the template was not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stack
            .emulator
            .template(defaults::SUBSCRIPTION_ID, RG, template)
            .is_none()
    );
    assert!(out.contains("delete template:  Accepted"), "{out}");
    assert_eq!(blobs_in_container(&stack).await, Vec::<String>::new());
    let secrets = assert_announced_secrets_not_printed(&out);
    assert!(
        secrets.iter().any(|s| s == defaults::CLIENT_SECRET)
            && secrets.iter().any(|s| s == defaults::STORAGE_ACCOUNT_KEY)
    );
}

/// One build of the matrix: `(image source inputs, distribution inputs, windows)`.
fn matrix_case(
    vars: &mut BTreeMap<String, String>,
    source: &str,
    distribution: &str,
    windows: bool,
) {
    let mut set = |k: &str, v: String| {
        vars.insert(format!("INPUT_{k}"), v);
    };
    match source {
        "marketplace" if windows => set(
            "BASEIMAGE",
            "MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition".into(),
        ),
        "marketplace" => {}
        // Windows builds start from Windows images of the emulator's scenario.
        "managedimage" => {
            set("IMAGESOURCE", "managedimage".into());
            set(
                "CUSTOMIMAGERESOURCEID",
                rid(&format!(
                    "Microsoft.Compute/images/{}",
                    if windows {
                        scenario::SOURCE_MANAGED_IMAGE_WINDOWS
                    } else {
                        scenario::SOURCE_MANAGED_IMAGE
                    }
                )),
            );
        }
        _ => {
            set("IMAGESOURCE", "sharedimageversion".into());
            set(
                "IMAGEVERSIONID",
                rid(&format!(
                    "Microsoft.Compute/galleries/gallery1/images/{}/versions/1.0.3",
                    if windows {
                        scenario::SOURCE_GALLERY_IMAGE_WINDOWS
                    } else {
                        scenario::SOURCE_GALLERY_IMAGE
                    }
                )),
            );
        }
    }
    match distribution {
        "managedimage" => {}
        "sig" => {
            set("DISTRIBUTETYPE", "sig".into());
            set(
                "GALLERYIMAGEID",
                rid(&format!(
                    "Microsoft.Compute/galleries/{}/images/{}",
                    defaults::GALLERY,
                    if windows {
                        scenario::GALLERY_IMAGE_WINDOWS
                    } else {
                        defaults::GALLERY_IMAGE
                    }
                )),
            );
            set("REPLICATIONREGIONS", "westus2, eastus".into());
            set("EXCLUDEFROMLATEST", "true".into());
            set("STORAGEACCOUNTTYPE", "Standard_ZRS".into());
        }
        _ => set("DISTRIBUTETYPE", "vhd".into()),
    }
    if windows {
        set("PROVISIONER", "powershell".into());
        set("INLINESCRIPT", "New-Item -ItemType Directory -Force C:\\webapp\nCopy-Item -Recurse C:\\buildArtifacts\\webapp\\* C:\\webapp".into());
        set("RUNELEVATED", "true".into());
        set("WINDOWSRESTART", "true".into());
        set("WINDOWSUPDATEPROVISIONER", "true".into());
        set("CLEANUPARTIFACTSONIMAGE", "true".into());
    }
}

#[tokio::test]
async fn every_source_with_every_distributor_on_linux_and_windows() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let (temp, package) = sample_package();
    let mut runs = Vec::new();
    for windows in [false, true] {
        for source in ["marketplace", "managedimage", "sharedimageversion"] {
            for distribution in ["managedimage", "sig", "vhd"] {
                let mut vars = pipeline(&stack, &package, temp.path());
                matrix_case(&mut vars, source, distribution, windows);
                let label = format!(
                    "{source} -> {distribution} ({})",
                    if windows { "Windows" } else { "Linux" }
                );
                runs.push((label, vars));
            }
        }
    }
    // A few at a time: the machine has two cores.
    for chunk in runs.chunks(3) {
        let handles: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|(label, vars)| {
                tokio::spawn(async move { (label, run_task_async(&[], vars).await) })
            })
            .collect();
        for handle in handles {
            let (label, (output, out)) = handle.await.unwrap();
            assert!(output.status.success(), "{label}:\n{out}");
            let vars = output_variables(&out);
            let expected_uri = if label.contains("-> managedimage") {
                rid("Microsoft.Compute/images/webapp-image")
            } else if label.contains("-> sig") {
                rid(&format!(
                    "Microsoft.Compute/galleries/{}/images/{}/versions/",
                    defaults::GALLERY,
                    if label.contains("Windows") {
                        scenario::GALLERY_IMAGE_WINDOWS
                    } else {
                        defaults::GALLERY_IMAGE
                    }
                ))
            } else {
                String::new()
            };
            if label.contains("-> vhd") {
                assert!(
                    vars["imageUri"].starts_with("https://") && vars["imageUri"].contains(".vhd"),
                    "{label}: {}",
                    vars["imageUri"]
                );
            } else {
                assert!(
                    vars["imageUri"].starts_with(&expected_uri),
                    "{label}: {}",
                    vars["imageUri"]
                );
            }
            assert_eq!(
                vars.contains_key("pirVersion"),
                label.starts_with("marketplace"),
                "{label}"
            );
            if label.starts_with("marketplace") && label.contains("Windows") {
                assert_eq!(vars["pirVersion"], "20348.2849.241109", "{label}");
            }
        }
    }
    // Every template PUT passed the emulator's swagger validation.
    assert!(
        stack.emulator.swagger_validation_enabled() || std::env::var("CI").is_err(),
        "CI must validate"
    );
    let puts: Vec<u16> = stack
        .emulator
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/imageTemplates/"))
        .map(|r| r.status)
        .collect();
    // Builds started together get names of their own (names::Stamp): no clash, every build
    // its template.
    assert_eq!(
        puts.iter().filter(|s| **s == 200 || **s == 201).count(),
        18,
        "{puts:?}"
    );
    assert!(!puts.contains(&409), "{puts:?}");
    assert_eq!(stack.emulator.downloads().len(), 18);
    assert!(stack.emulator.downloads().iter().all(|d| d.error.is_none()));
}

#[tokio::test]
async fn a_failed_build_shows_the_log_and_keeps_the_template() {
    let config = Config {
        fail_at: Some(RunSubState::Customizing),
        ..Config::default()
    };
    let Some(stack) = start_stack(config).await else {
        return;
    };
    let (temp, package) = sample_package();
    let (output, out) = run_task_async(&[], pipeline(&stack, &package, temp.path())).await;
    assert_eq!(output.status.code(), Some(1), "{out}");
    let cmds = commands(&out);
    let complete = cmds.last().unwrap();
    assert_eq!(complete.action, "complete");
    assert_eq!(complete.property("result"), Some("Failed"));
    let error = &complete.message;
    let template = out
        .lines()
        .find_map(|l| l.strip_prefix("template name:  "))
        .unwrap()
        .to_owned();
    assert!(error.contains(&template), "{error}");
    assert!(error.contains("customization.log"), "{error}");
    assert!(error.contains(&format!("IT_{RG}_{template}")), "{error}");
    assert!(error.contains("az image builder delete"), "{error}");
    // The log's tail was printed, in a group, before anything was deleted.
    let group = out
        .find("##[group]Build log (last 100 lines of customization.log)")
        .expect("the log group");
    let log = &out[group..out[group..].find("##[endgroup]").unwrap() + group];
    assert!(log.lines().count() > 50, "{log}");
    assert!(
        log.contains("sudo mkdir -p /opt/webapp"),
        "the user's lines are in the log: {log}"
    );
    // The template is kept; the blob is not.
    assert!(
        stack
            .emulator
            .template(defaults::SUBSCRIPTION_ID, RG, &template)
            .is_some()
    );
    assert!(out.contains("deleting storage blob imagebuilder-vststask\\"));
    assert_eq!(blobs_in_container(&stack).await, Vec::<String>::new());
    assert_announced_secrets_not_printed(&out);
}

#[tokio::test]
async fn cancellation_asks_image_builder_to_stop_in_time() {
    let config = Config {
        timing: aib_emulator::config::Timing {
            building: Duration::from_secs(30),
            ..Default::default()
        },
        ..Config::default()
    };
    let Some(stack) = start_stack(config).await else {
        return;
    };
    let (temp, package) = sample_package();
    let vars = pipeline(&stack, &package, temp.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_aib-task"))
        .env_clear()
        .envs(&vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the build is running.
    let started = Instant::now();
    loop {
        let building = stack
            .emulator
            .template_events()
            .iter()
            .any(|e| e.event == "runSubState=Building");
        if building {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the build never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signalled = Instant::now();
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_millis(7500),
            "still running 7.5 s after SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let elapsed = signalled.elapsed();
    let mut out = String::new();
    use std::io::Read as _;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(!status.success());
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let cancel = stack
        .emulator
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/cancel"))
        .expect("a cancel request");
    assert!(cancel.status < 300, "{cancel:?}");
    assert!(out.contains("az image builder delete"), "{out}");
    assert!(out.contains("cancel requested"), "{out}");
    assert_eq!(blobs_in_container(&stack).await, Vec::<String>::new());
    assert_announced_secrets_not_printed(&out);
}

#[tokio::test]
async fn throttling_and_server_errors_on_arm_calls_are_ridden_out() {
    let config = Config {
        token_lifetime: Duration::from_secs(3),
        timing: aib_emulator::config::Timing {
            customizing: Duration::from_secs(5),
            ..Default::default()
        },
        ..Config::default()
    };
    let Some(stack) = start_stack(config).await else {
        return;
    };
    stack
        .emulator
        .add_fault(Fault::throttle("PUT", "/imageTemplates/", 1));
    stack
        .emulator
        .add_fault(Fault::status("POST", "/run$", 503));
    stack
        .emulator
        .add_fault(Fault::status("GET", "/imageTemplates/[^/]+$", 500).times(2));
    stack
        .emulator
        .add_fault(Fault::drop_connection("GET", "/runOutputs/"));
    stack
        .emulator
        .add_fault(Fault::throttle("GET", "/storageAccounts$", 1));
    let (temp, package) = sample_package();
    let (output, out) = run_task_async(&[], pipeline(&stack, &package, temp.path())).await;
    assert!(output.status.success(), "{out}");
    assert!(output_variables(&out).contains_key("imageUri"));
    assert!(out.contains("429"), "{out}");
    // The build outlived several token lifetimes.
    let tokens = stack
        .emulator
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token") && r.status == 200)
        .count();
    assert!(tokens >= 3, "{tokens} tokens");
}

#[tokio::test]
async fn bad_inputs_fail_by_name_before_any_azure_write() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let (temp, package) = sample_package();
    std::fs::write(temp.path().join("afile.txt"), "x").unwrap();
    std::fs::create_dir_all(temp.path().join("empty-folder")).unwrap();
    let cases: Vec<(&str, &str, &str)> = vec![
        ("IBAZURERESOURCEGROUP", "", "ibAzureResourceGroup"),
        (
            "IBAZURERESOURCEGROUP",
            "rg with spaces",
            "ibAzureResourceGroup",
        ),
        ("IBLOCATION", "", "ibLocation"),
        ("IBLOCATION", "west-europe!", "ibLocation"),
        ("MANAGEDIDENTITY", "", "managedIdentity"),
        ("MANAGEDIDENTITY", "aib-identity", "managedIdentity"),
        (
            "VNETSUBNETID",
            "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v",
            "vnetSubnetId",
        ),
        ("IMAGESOURCE", "iso", "imageSource"),
        ("BASEIMAGE", "Canonical:UbuntuServer", "baseImage"),
        ("BASEIMAGEVERSION", "newest", "baseImageVersion"),
        ("PROVISIONER", "bash", "provisioner"),
        (
            "WINDOWSUPDATEPROVISIONER",
            "yes",
            "windowsUpdateProvisioner",
        ),
        ("WINDOWSRESTART", "true", "windowsRestart"),
        ("RUNELEVATED", "maybe", "runElevated"),
        ("PACKAGEPATH", "", "packagePath"),
        ("PACKAGEPATH", "does/not/exist", "packagePath"),
        ("PACKAGEPATH", "afile.txt", "packagePath"),
        ("STORAGEACCOUNTNAME", "", "storageAccountName"),
        ("STORAGEACCOUNTNAME", "bad_name!", "storageAccountName"),
        ("DISTRIBUTETYPE", "", "distributeType"),
        ("DISTRIBUTETYPE", "aws", "distributeType"),
        (
            "IMAGEIDFORDISTRIBUTE",
            "webapp-image",
            "imageIdForDistribute",
        ),
        ("MANAGEDIMAGELOCATION", "", "managedImageLocation"),
        ("VMSIZE", "Standard D2", "vmSize"),
        ("BUILDTIMEOUTINMINUTES", "961", "buildTimeoutInMinutes"),
        // Image Builder's minimum is 6 minutes (0 means its default).
        ("BUILDTIMEOUTINMINUTES", "5", "buildTimeoutInMinutes"),
        ("PACKAGEPATH", "empty-folder", "packagePath"),
        (
            "VHDURI",
            "https://mystorage.blob.core.windows.net/vhds/a.vhd",
            "vhdUri",
        ),
        ("BUILDTIMEOUTINMINUTES", "4h", "buildTimeoutInMinutes"),
        ("OSDISKSIZEGB", "-1", "osDiskSizeGB"),
        ("TEMPLATENAME", "my template", "templateName"),
        ("STAGINGRESOURCEGROUP", "rg-staging", "stagingResourceGroup"),
        ("IMAGETAGS", "novalue", "imageTags"),
        ("STORAGEACCOUNTTYPE", "Standard_LRS", "storageAccountType"),
        (
            "KEEPTEMPLATEONFAILURE",
            "sometimes",
            "keepTemplateOnFailure",
        ),
        ("IBSUBSCRIPTION", "unknown-connection", "ibSubscription"),
    ];
    assert!(cases.len() >= 25);
    let mut failures = Vec::new();
    for (variable, value, input) in &cases {
        let before = writes(&stack).len();
        let mut vars = pipeline(&stack, &package, temp.path());
        vars.insert(format!("INPUT_{variable}"), (*value).to_owned());
        let (output, out) = run_task_async(&[], vars).await;
        let complete = commands(&out).into_iter().rfind(|c| c.action == "complete");
        let named = complete.as_ref().is_some_and(|c| {
            c.property("result") == Some("Failed")
                && c.message.contains(&format!("input '{input}'"))
        });
        if output.status.success() || !named || writes(&stack).len() != before {
            failures.push(format!(
                "{variable}={value:?}: exit {:?}, named {named}, writes {:?}\n{out}",
                output.status.code(),
                &writes(&stack)[before..]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test]
async fn images_sold_with_a_purchase_plan_carry_it() {
    let mut config = Config::default();
    config.platform_images.push(
        aib_emulator::config::PlatformImageConfig::new(
            "center-for-internet-security-inc",
            "cis-ubuntu-linux-2204-l1",
            "cis-ubuntu2204-l1",
            &["1.0.7", "1.0.12"],
            "Linux",
        )
        .with_plan(
            "cis-ubuntu2204-l1",
            "cis-ubuntu-linux-2204-l1",
            "center-for-internet-security-inc",
        ),
    );
    let Some(stack) = start_stack(config).await else {
        return;
    };
    let (temp, package) = sample_package();
    let mut vars = pipeline(&stack, &package, temp.path());
    vars.insert(
        "INPUT_BASEIMAGEPUBOFFERSKU".into(),
        "center-for-internet-security-inc:cis-ubuntu-linux-2204-l1:cis-ubuntu2204-l1".into(),
    );
    let (output, out) = run_task_async(&[], vars).await;
    assert!(output.status.success(), "{out}");
    assert_eq!(output_variables(&out)["pirVersion"], "1.0.12");
    assert!(
        out.contains("az vm image terms accept --plan cis-ubuntu2204-l1"),
        "{out}"
    );
    let put = template_sent(&stack);
    let plan = &put["properties"]["source"]["planInfo"];
    assert_eq!(plan["planName"], "cis-ubuntu2204-l1");
    assert_eq!(plan["planProduct"], "cis-ubuntu-linux-2204-l1");
    assert_eq!(plan["planPublisher"], "center-for-internet-security-inc");
}

#[tokio::test]
async fn template_and_validate_change_nothing_in_azure() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let (temp, package) = sample_package();
    let vars = pipeline(&stack, &package, temp.path());

    let (output, out) = run_task_async(&["validate"], vars.clone()).await;
    assert!(output.status.success(), "{out}");
    assert!(out.contains("end reading parameters"), "{out}");
    assert!(
        stack.emulator.requests().is_empty(),
        "validate signs in to nothing"
    );

    let (output, out) = run_task_async(&["template"], vars).await;
    assert!(output.status.success(), "{out}");
    let json_start = out.find("\n{").expect("the template JSON") + 1;
    let template: serde_json::Value =
        serde_json::from_str(&out[json_start..]).expect("valid JSON at the end");
    assert_eq!(template["properties"]["source"]["version"], "latest");
    assert_eq!(
        template["properties"]["distribute"][0]["runOutputName"],
        "ManagedImage_distribute"
    );
    assert!(out.contains("<read-only SAS made at run time>"), "{out}");
    assert_eq!(
        writes(&stack),
        Vec::<String>::new(),
        "the template command wrote to Azure"
    );
    // Nor to storage: the artifact container was never even created.
    assert_eq!(stack.artifact_container_listing().await, None);
}
