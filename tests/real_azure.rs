//! Behaviours of real Azure that the task once got wrong because the emulator shared its
//! assumptions (issue "Real Azure is not our emulator"): each test runs the binary as the agent
//! does against an emulator that behaves like Azure there (the source is cited beside each
//! behaviour in emulator/src), and would fail against the old task.

mod common;

use std::time::Duration;

use aib_emulator::{Config, Fault, LockConfig, LockLevel, RunSubState, defaults};
use common::pipeline::*;
use common::*;

#[tokio::test]
async fn a_vhd_in_the_staging_group_outlives_the_task() {
    let Some(SampleBuild {
        stack,
        output,
        out,
        temp: _temp,
    }) = sample_build(Config::default(), |_, _, vars| {
        vars.insert("INPUT_DISTRIBUTETYPE".into(), "vhd".into());
    })
    .await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    let vars = output_variables(&out);
    let uri = &vars["imageUri"];
    assert!(uri.ends_with(".vhd") && !uri.contains('?'), "{uri}");
    let template = &vars["templateName"];

    // The template holds the VHD: it was kept, and the user is told how to copy the VHD out
    // and then delete it, in the log and in the run summary.
    assert!(
        !out.contains(&format!("deleting template {template}...")),
        "{out}"
    );
    assert!(out.contains("was NOT deleted"), "{out}");
    let copy = out
        .find("az storage blob copy start")
        .expect("copy instructions");
    let delete = out
        .find("az image builder delete --name")
        .expect("delete command");
    assert!(copy < delete, "{out}");
    let summary = commands(&out)
        .into_iter()
        .find(|c| c.action == "uploadsummary")
        .expect("a run summary");
    let summary = std::fs::read_to_string(&summary.message).unwrap();
    assert!(
        summary.contains("Action needed") && summary.contains("azcopy copy"),
        "{summary}"
    );

    // After the task has ended, the VHD it named is there.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        stack
            .emulator
            .template(defaults::SUBSCRIPTION_ID, RG, template)
            .is_some()
    );
    let (status, body) = read_blob(&stack, uri, defaults::STAGING_STORAGE_ACCOUNT_KEY).await;
    assert_eq!(status, 200, "the VHD is readable after the task ended");
    assert_eq!(&body[512..520], b"conectix");

    // And deleting the template (as the instructions say, once copied) takes the VHD with it:
    // which is why the task must not delete it.
    let deleted = reqwest_arm_delete(&stack, template).await;
    assert!(deleted < 300, "{deleted}");
    until_no_template_left(&stack).await;
    assert_eq!(
        read_blob(&stack, uri, defaults::STAGING_STORAGE_ACCOUNT_KEY)
            .await
            .0,
        404
    );
    assert_announced_secrets_not_printed(&out);
}

/// Deletes a template through ARM with the service principal, as a user would with `az`.
async fn reqwest_arm_delete(stack: &Stack, template: &str) -> u16 {
    let token = stack
        .emulator
        .mint_access_token(stack.emulator.base_url().as_ref(), 600);
    let url = format!(
        "{}subscriptions/{}/resourceGroups/{RG}/providers/Microsoft.VirtualMachineImages/imageTemplates/{template}?api-version=2024-02-01",
        stack.emulator.base_url(),
        defaults::SUBSCRIPTION_ID
    );
    stack
        .anonymous_client()
        .delete(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_vhd_sent_to_vhd_uri_is_the_output_and_the_template_goes() {
    let mut destination = String::new();
    let Some(SampleBuild {
        stack,
        output,
        out,
        temp: _temp,
    }) = sample_build(Config::default(), |stack, _, vars| {
        destination = format!(
            "{}uservhds/webapp/web-1.vhd",
            stack.azurite.blob_endpoint(defaults::STORAGE_ACCOUNT)
        );
        vars.insert("INPUT_DISTRIBUTETYPE".into(), "vhd".into());
        vars.insert("INPUT_VHDURI".into(), destination.clone());
    })
    .await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    let vars = output_variables(&out);
    assert_eq!(vars["imageUri"], destination);
    // The distributor carried the uri.
    let body = template_sent(&stack);
    assert_eq!(
        body["properties"]["distribute"][0]["uri"],
        destination.as_str()
    );
    // The template was deleted as usual, and the VHD is still in the user's account.
    assert!(out.contains("deleting template"), "{out}");
    until_no_template_left(&stack).await;
    let (status, body) = read_blob(&stack, &destination, defaults::STORAGE_ACCOUNT_KEY).await;
    assert_eq!(status, 200);
    assert_eq!(&body[512..520], b"conectix");
}

#[tokio::test]
async fn an_unregistered_provider_is_named_with_its_fix_and_never_renamed() {
    // Preflight reads the registration first and stops before any write.
    let config = Config {
        unregistered_providers: vec!["Microsoft.VirtualMachineImages".into()],
        ..Config::default()
    };
    let Some(SampleBuild {
        stack,
        output,
        out,
        temp: _temp,
    }) = sample_build(config.clone(), |_, _, _| {}).await
    else {
        return;
    };
    assert_eq!(output.status.code(), Some(1), "{out}");
    let message = failure_message(&out).unwrap();
    assert!(
        message.contains("az provider register --namespace Microsoft.VirtualMachineImages"),
        "{message}"
    );
    assert_eq!(writes(&stack), Vec::<String>::new());

    // An identity that may not read providers gets past preflight (a warning): the PUT's 409
    // MissingSubscriptionRegistration is then named with its fix, not taken for a name clash.
    let Some(stack) = start_stack(config).await else {
        return;
    };
    stack
        .emulator
        .add_fault(Fault::status("GET", r"^/subscriptions/[^/]+/providers/[^/]+$", 403).times(100));
    let (temp, package) = sample_package();
    let (output, out) = run_task_async(&[], pipeline(&stack, &package, temp.path())).await;
    assert_eq!(output.status.code(), Some(1), "{out}");
    let message = failure_message(&out).unwrap();
    assert!(
        message.contains("MissingSubscriptionRegistration"),
        "{message}"
    );
    assert!(
        message.contains("az provider register --namespace Microsoft.VirtualMachineImages"),
        "{message}"
    );
    assert!(!message.contains("already exists"), "{message}");
    let puts = stack
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/imageTemplates/"))
        .count();
    assert_eq!(puts, 1, "no renamed retries");
    assert!(!out.contains("is taken; using"), "{out}");
    assert_eq!(blobs_in_container(&stack).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_resource_lock_names_the_locked_scope() {
    let locked = "aib-locked-rg";
    let mut config = Config::default();
    config
        .resource_groups
        .push(aib_emulator::config::ResourceGroupConfig {
            name: locked.into(),
            ..Default::default()
        });
    config.locks.push(LockConfig {
        subscription_id: defaults::SUBSCRIPTION_ID.into(),
        resource_group: locked.into(),
        level: LockLevel::ReadOnly,
    });
    let Some(SampleBuild {
        output,
        out,
        temp: _temp,
        ..
    }) = sample_build(config, |_, _, vars| {
        vars.insert("INPUT_IBAZURERESOURCEGROUP".into(), locked.into());
    })
    .await
    else {
        return;
    };
    assert_eq!(output.status.code(), Some(1), "{out}");
    let message = failure_message(&out).unwrap();
    assert!(
        message.contains(&format!(
            "A resource lock on /subscriptions/{}/resourceGroups/{locked} forbids",
            defaults::SUBSCRIPTION_ID
        )),
        "{message}"
    );
    assert!(message.contains("ScopeLocked"), "{message}");
    assert!(!out.contains("is taken; using"), "{out}");
}

#[tokio::test]
async fn writes_whose_answer_was_lost_are_neither_repeated_nor_orphaned() {
    let config = Config {
        faults: vec![
            // The PUT creates the template, then the connection drops.
            Fault::apply_then_drop("PUT", "/imageTemplates/t_"),
            // The run starts, then a gateway answers 504.
            Fault::apply_then_status("POST", "/imageTemplates/t_[^/]+/run$", 504),
            // The deletion is accepted, then the connection drops.
            Fault::apply_then_drop("DELETE", "/imageTemplates/t_"),
        ],
        // Long-running operations last long enough for the retried DELETE to meet the first.
        timing: aib_emulator::config::Timing {
            lro: Duration::from_secs(3),
            ..Default::default()
        },
        ..Config::default()
    };
    let Some(SampleBuild {
        stack,
        output,
        out,
        temp: _temp,
    }) = sample_build(config, |_, _, _| {}).await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    let faults: Vec<String> = stack
        .emulator
        .requests()
        .into_iter()
        .filter_map(|r| r.fault.map(|f| format!("{} {}", r.method, f)))
        .collect();
    assert_eq!(faults.len(), 3, "every fault was applied: {faults:?}");
    assert!(out.contains("exists from an earlier attempt"), "{out}");
    assert!(
        out.contains("an earlier request is deleting it already"),
        "{out}"
    );
    assert!(!out.contains("could not delete template"), "{out}");
    assert_eq!(
        event_count(&stack, "created"),
        1,
        "one template, never a second"
    );
    assert_eq!(event_count(&stack, "run"), 1, "one build, never a second");
    until_no_template_left(&stack).await;
    assert_eq!(blobs_in_container(&stack).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_run_refused_as_already_running_is_followed() {
    // The POST's answer is lost after the run started, and the template cannot be read right
    // then (throttled past the retries): the task posts again, meets Image Builder's refusal
    // naming runState 'running', and follows the run it started.
    let config = Config {
        faults: vec![
            Fault::apply_then_drop("POST", "/imageTemplates/t_[^/]+/run$"),
            // The one GET before the POST (provisioning) passes; the six after it are throttled.
            Fault::throttle("GET", "/imageTemplates/t_[^/]+$", 0)
                .after(1)
                .times(6),
        ],
        ..Config::default()
    };
    let Some(SampleBuild {
        stack,
        output,
        out,
        temp: _temp,
    }) = sample_build(config, |_, _, _| {}).await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    let posts: Vec<u16> = stack
        .emulator
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/run"))
        .map(|r| r.status)
        .collect();
    assert_eq!(posts, [202, 409], "the second POST was refused as running");
    assert!(
        out.contains("Image Builder says a run is already in progress"),
        "{out}"
    );
    assert_eq!(event_count(&stack, "run"), 1, "one build, never a second");
    assert!(out.contains("run template:  Succeeded"), "{out}");
}

#[tokio::test]
async fn a_timed_out_build_still_shows_its_log_and_its_real_staging_group() {
    let config = Config {
        timeout_at: Some(RunSubState::Customizing),
        ..Config::default()
    };
    let Some(SampleBuild {
        stack,
        output,
        out,
        temp: _temp,
    }) = sample_build(config, |_, _, _| {}).await
    else {
        return;
    };
    assert_eq!(output.status.code(), Some(1), "{out}");
    let message = failure_message(&out).unwrap();
    assert!(message.contains("context deadline exceeded"), "{message}");
    // The log was found in the staging group's account (followed live, or looked for after the
    // failure) and its tail shown.
    assert!(
        out.contains("names no build log; the newest one in")
            || out.contains("is attached to this job's logs"),
        "{out}"
    );
    let group = out
        .find("##[group]Build log (last 100 lines of customization.log)")
        .expect("the log's tail");
    assert!(out[group..].contains("sudo mkdir -p /opt/webapp"), "{out}");
    assert!(
        message.contains("packerlogs/") && message.contains("customization.log"),
        "{message}"
    );
    // The staging group is named as Image Builder names it, GUID and all.
    let template = output_variables_or_template_name(&out);
    let staging = stack
        .emulator
        .template(defaults::SUBSCRIPTION_ID, RG, &template)
        .expect("kept")["properties"]["exactStagingResourceGroup"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains(&staging), "{message}");
    assert!(!message.contains('…'), "{message}");
}

fn output_variables_or_template_name(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("template name:  "))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_empty_build_path_is_refused_before_any_azure_call() {
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    // Folders, but not a single file: nothing to put on the image.
    let package = temp.path().join("webapp");
    std::fs::create_dir_all(package.join("logs/old")).unwrap();
    let (output, out) = run_task_async(&[], pipeline(&stack, &package, temp.path())).await;
    assert_eq!(output.status.code(), Some(1), "{out}");
    let message = failure_message(&out).unwrap();
    assert!(
        message.contains("input 'packagePath'") && message.contains("is empty"),
        "{message}"
    );
    assert!(
        stack.emulator.requests().is_empty(),
        "no sign-in, no ARM call: {:?}",
        stack.emulator.requests()
    );
    assert_eq!(
        stack.artifact_container_listing().await,
        None,
        "not even the container was created"
    );
}

#[tokio::test]
async fn a_windows_build_path_too_deep_for_expand_archive_is_warned_about() {
    let Some(SampleBuild {
        output,
        out,
        temp: _temp,
        ..
    }) = sample_build(Config::default(), |_, package, vars| {
        // C:\buildArtifacts\webapp\ (25 characters) + this file's 240: past MAX_PATH.
        let deep = package.join("d".repeat(100)).join("e".repeat(100));
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join(format!("{}.txt", "f".repeat(34))), "x").unwrap();
        vars.insert(
            "INPUT_BASEIMAGE".into(),
            "MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition".into(),
        );
        vars.insert("INPUT_PROVISIONER".into(), "powershell".into());
        vars.insert("INPUT_INLINESCRIPT".into(), "Write-Output done".into());
    })
    .await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    let warning = commands(&out)
        .into_iter()
        .find(|c| c.action == "logissue" && c.message.contains("C:\\buildArtifacts\\webapp\\"))
        .unwrap_or_else(|| panic!("a long-path warning: {out}"));
    assert!(warning.message.contains("265"), "{}", warning.message);
}
