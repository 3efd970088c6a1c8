//! Image Builder lifecycle against the emulator: PUT as a long-running operation, Conflict for
//! any PUT to an existing template, swagger refusal, run with its sub-states, run outputs per distributor type,
//! cancel, and DELETE with its `Location` poll.

mod common;

use std::time::Duration;

use aib_emulator::defaults;
use common::{Env, async_operation, fast_config, template_body};
use reqwest::Method;
use serde_json::{Value, json};

fn distributors() -> Value {
    json!([
        {"type": "ManagedImage", "runOutputName": "ManagedImage_distribute", "location": "westus2",
         "imageId": format!("/subscriptions/{}/resourceGroups/aib-test-rg/providers/Microsoft.Compute/images/img1", defaults::SUBSCRIPTION_ID)},
        {"type": "SharedImage", "runOutputName": "SharedImage_distribute",
         "galleryImageId": format!("/subscriptions/{}/resourceGroups/aib-test-rg/providers/Microsoft.Compute/galleries/gal/images/def", defaults::SUBSCRIPTION_ID),
         "targetRegions": [{"name": "westus2", "replicaCount": 1}]},
        {"type": "VHD", "runOutputName": "VHD_distribute"}
    ])
}

/// The template events recorded so far, as their text.
fn recorded_events(env: &Env) -> Vec<String> {
    env.emulator
        .template_events()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

#[tokio::test]
async fn full_lifecycle() {
    let env = Env::start(fast_config()).await;
    let name = "t_lifecycle_1";
    let mut body = template_body(
        json!([{"type": "Shell", "name": "hello", "inline": ["echo hello"]}]),
        distributors(),
    );
    body["properties"]["optimize"] = json!({"vmBoot": {"state": "Enabled"}});

    let (status, headers, created) = env
        .arm(Method::PUT, &env.template_path(name), Some(&body))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["properties"]["provisioningState"], "Creating");
    assert_eq!(
        created["type"],
        "Microsoft.VirtualMachineImages/imageTemplates"
    );
    assert!(headers.contains_key("retry-after"));
    let op_url = async_operation(&headers);
    assert!(op_url.starts_with(&format!("{}subscriptions/{}/providers/Microsoft.VirtualMachineImages/locations/westus2/operations/", env.emulator.base_url(), defaults::SUBSCRIPTION_ID)), "{op_url}");
    assert!(op_url.ends_with("?api-version=2024-02-01"));

    // Same body again, as a retry after a lost answer would send it: Conflict, like any update.
    let (status, _, err) = env
        .arm(Method::PUT, &env.template_path(name), Some(&body))
        .await;
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Update/Upgrade of image templates is currently not supported")
    );
    // Deleting while it is still being created is refused.
    let (status, _, err) = env
        .arm(Method::DELETE, &env.template_path(name), None)
        .await;
    if env.template(name).await["properties"]["provisioningState"] == "Creating" {
        assert_eq!(
            (status, err["error"]["code"].as_str()),
            (409, Some("OperationNotAllowed"))
        );
    }
    let mut other = body.clone();
    other["properties"]["vmProfile"]["vmSize"] = json!("Standard_D4s_v3");
    let (status, _, err) = env
        .arm(Method::PUT, &env.template_path(name), Some(&other))
        .await;
    assert_eq!(status, 409);
    assert_eq!(err["error"]["code"], "Conflict");

    // Run before provisioning finished is refused (when we are quick enough to see it).
    let op = env.wait_operation(&op_url).await;
    assert_eq!(op["status"], "Succeeded");
    assert!(op["startTime"].is_string() && op["endTime"].is_string());
    let t = env.template(name).await;
    assert_eq!(t["properties"]["provisioningState"], "Succeeded");
    let staging = t["properties"]["exactStagingResourceGroup"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        staging.starts_with(&format!(
            "/subscriptions/{}/resourceGroups/IT_aib-test-rg_{name}_",
            defaults::SUBSCRIPTION_ID
        )),
        "{staging}"
    );
    let (status, _, _) = env.arm(Method::GET, &staging, None).await;
    assert_eq!(
        status, 200,
        "the staging group exists while the template does"
    );

    // Lists.
    let (_, _, list) = env
        .arm(
            Method::GET,
            &format!(
                "{}/providers/Microsoft.VirtualMachineImages/imageTemplates",
                env.rg_path()
            ),
            None,
        )
        .await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    let (_, _, list) = env
        .arm(
            Method::GET,
            &format!(
                "subscriptions/{}/providers/Microsoft.VirtualMachineImages/imageTemplates",
                defaults::SUBSCRIPTION_ID
            ),
            None,
        )
        .await;
    assert_eq!(list["value"][0]["name"], name);

    // Run.
    let (status, headers, _) = env.template_action(name, "run").await;
    assert_eq!(status, 202);
    assert!(headers.contains_key("location") && headers.contains_key("retry-after"));
    let run_op = async_operation(&headers);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let t = env.template(name).await;
        let run = &t["properties"]["lastRunStatus"];
        let label = format!(
            "{}/{}",
            run["runState"].as_str().unwrap(),
            run["runSubState"].as_str().unwrap_or("-")
        );
        if seen.last() != Some(&label) {
            seen.push(label.clone());
        }
        if run["runState"] != "Running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.last().unwrap(), "Succeeded/-");
    let op = env.wait_operation(&run_op).await;
    assert_eq!(op["status"], "Succeeded");
    let events = recorded_events(&env);
    let run_events: Vec<&str> = events
        .iter()
        .skip_while(|e| *e != "run")
        .map(String::as_str)
        .collect();
    assert_eq!(
        run_events,
        [
            "run",
            "runSubState=Queued",
            "runSubState=Building",
            "runSubState=Customizing",
            "runSubState=Optimizing",
            "runSubState=Distributing",
            "runState=Succeeded"
        ]
    );
    let t = env.template(name).await;
    assert_eq!(t["properties"]["source"]["exactVersion"], "22.04.202411010");
    assert!(t["properties"]["lastRunStatus"]["endTime"].is_string());

    // Run outputs.
    let (status, _, outputs) = env
        .arm(
            Method::GET,
            &format!("{}/runOutputs", env.template_path(name)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let outputs = outputs["value"].as_array().unwrap().clone();
    assert_eq!(outputs.len(), 3);
    assert_eq!(
        outputs[0]["properties"]["artifactId"],
        distributors()[0]["imageId"]
    );
    let sig = outputs[1]["properties"]["artifactId"].as_str().unwrap();
    assert!(
        sig.starts_with(&format!(
            "{}/versions/0.",
            distributors()[1]["galleryImageId"].as_str().unwrap()
        )),
        "{sig}"
    );
    // A plain blob URL, no SAS (Azure/azvmimagebuilder vhdUpdate2021.md).
    let vhd = outputs[2]["properties"]["artifactUri"].as_str().unwrap();
    assert!(vhd.ends_with(".vhd") && !vhd.contains('?'), "{vhd}");
    for o in &outputs {
        assert_eq!(o["properties"]["provisioningState"], "Succeeded");
    }
    let (status, _, one) = env
        .arm(
            Method::GET,
            &format!("{}/runOutputs/VHD_distribute", env.template_path(name)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], "VHD_distribute");
    assert_eq!(
        env.arm(
            Method::GET,
            &format!("{}/runOutputs/nope", env.template_path(name)),
            None
        )
        .await
        .0,
        404
    );

    // Delete.
    let (status, headers, _) = env
        .arm(Method::DELETE, &env.template_path(name), None)
        .await;
    assert_eq!(status, 202);
    let location = headers["location"].to_str().unwrap().to_string();
    let final_status = loop {
        let (status, _, _) = env.arm(Method::GET, &location, None).await;
        if status != 202 {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(final_status, 204);
    assert_eq!(
        env.arm(Method::GET, &env.template_path(name), None).await.0,
        404
    );
    assert_eq!(
        env.arm(Method::GET, &staging, None).await.0,
        404,
        "the staging group goes with the template"
    );
    assert_eq!(
        env.arm(Method::DELETE, &env.template_path(name), None)
            .await
            .0,
        204
    );
    assert_eq!(env.emulator.deleted_templates().len(), 1);
    assert!(env.emulator.templates().is_empty());
}

#[tokio::test]
async fn invalid_bodies_are_refused() {
    let env = Env::start(fast_config()).await;
    let body = template_body(json!([]), distributors());
    let mut no_location = body.clone();
    no_location.as_object_mut().unwrap().remove("location");
    let (status, _, err) = env
        .arm(
            Method::PUT,
            &env.template_path("t_noloc"),
            Some(&no_location),
        )
        .await;
    assert_eq!(status, 400, "{err}");

    let mut bad_identity = body.clone();
    bad_identity["identity"]["userAssignedIdentities"] = json!({"/subscriptions/x/identity": {}});
    let (status, _, err) = env
        .arm(
            Method::PUT,
            &env.template_path("t_badid"),
            Some(&bad_identity),
        )
        .await;
    assert_eq!(status, 400, "{err}");

    let (status, _, _) = env
        .arm(Method::PUT, &env.template_path("bad name!"), Some(&body))
        .await;
    assert_eq!(status, 400);

    if !env.emulator.swagger_validation_enabled() {
        aib_emulator::swagger::missing_spec(
            "the Image Builder swagger (swagger part of this test: PUT bodies are not validated)",
        );
        return;
    }
    let mut wrong = body.clone();
    wrong["properties"]["customize"] =
        json!([{"type": "Shell", "name": "x", "inline": "not-an-array"}]);
    wrong["properties"]["buildTimeoutInMinutes"] = json!(5000);
    wrong["properties"]["unknownThing"] = json!(1);
    let (status, _, err) = env
        .arm(Method::PUT, &env.template_path("t_invalid"), Some(&wrong))
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "InvalidRequestContent");
    let details = err["error"]["details"].as_array().unwrap();
    assert!(details.len() >= 3, "{err}");
    assert!(env.emulator.templates().is_empty());
    // The valid body passes.
    let (status, _, err) = env
        .arm(Method::PUT, &env.template_path("t_valid"), Some(&body))
        .await;
    assert_eq!(status, 201, "{err}");
}

#[tokio::test]
async fn cancel_during_building() {
    let mut config = fast_config();
    config.timing.building = Duration::from_secs(5);
    let env = Env::start(config).await;
    let name = "t_cancel";
    env.create_template(name, &template_body(json!([]), distributors()))
        .await;
    let (status, headers, _) = env.template_action(name, "run").await;
    assert_eq!(status, 202);
    let run_op = async_operation(&headers);
    loop {
        let t = env.template(name).await;
        if t["properties"]["lastRunStatus"]["runSubState"] == "Building" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Running again, or deleting, while it runs is refused, naming the run state.
    let (status, _, err) = env.template_action(name, "run").await;
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("is not allowed in provisioningState: 'provisioned', runState: 'running'"),
        "{err}"
    );
    let (status, _, err) = env
        .arm(Method::DELETE, &env.template_path(name), None)
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("OperationNotAllowed"))
    );

    let started = std::time::Instant::now();
    let (status, headers, _) = env.template_action(name, "cancel").await;
    assert_eq!(status, 202);
    let cancel_op = async_operation(&headers);
    assert_eq!(
        env.template(name).await["properties"]["lastRunStatus"]["runState"],
        "Canceling"
    );
    assert_eq!(env.wait_operation(&cancel_op).await["status"], "Succeeded");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cancel cut the 5 s build phase short"
    );
    assert_eq!(
        env.template(name).await["properties"]["lastRunStatus"]["runState"],
        "Canceled"
    );
    assert_eq!(env.wait_operation(&run_op).await["status"], "Canceled");
    let events = recorded_events(&env);
    assert!(
        events.ends_with(&[
            "cancel".into(),
            "runState=Canceling".into(),
            "runState=Canceled".into()
        ]),
        "{events:?}"
    );
    let (status, _, _) = env.template_action(name, "cancel").await;
    assert_eq!(status, 409, "nothing left to cancel");
}

#[tokio::test]
async fn lro_min_polls_and_failure_knob_without_storage() {
    let mut config = fast_config();
    config.timing.lro_min_polls = 3;
    config.fail_at = Some(aib_emulator::RunSubState::Distributing);
    let env = Env::start(config).await;
    let name = "t_polls";
    let (_, headers, _) = env
        .arm(
            Method::PUT,
            &env.template_path(name),
            Some(&template_body(json!([]), distributors())),
        )
        .await;
    let op = async_operation(&headers);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        assert_eq!(
            env.arm(Method::GET, &op, None).await.2["status"],
            "InProgress"
        );
    }
    assert_eq!(
        env.arm(Method::GET, &op, None).await.2["status"],
        "Succeeded"
    );
    let done = env.run_template(name).await;
    assert_eq!(done["status"], "Failed");
    assert_eq!(done["error"]["code"], "InternalOperationError");
    let message = env.template(name).await["properties"]["lastRunStatus"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with("External build failed: Failed while waiting for packerizer"),
        "{message}"
    );
    assert!(
        message.contains(
            "Image Build log location: https://aibstaginglogs01.blob.core.windows.net/packerlogs/"
        ),
        "{message}"
    );
    assert!(
        message.contains("/customization.log. OperationId: "),
        "{message}"
    );
    assert!(
        env.arm(
            Method::GET,
            &format!("{}/runOutputs", env.template_path(name)),
            None
        )
        .await
        .2["value"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn auto_run_builds_after_creation() {
    let env = Env::start(fast_config()).await;
    let mut body = template_body(json!([]), distributors());
    body["properties"]["autoRun"] = json!({"state": "Enabled"});
    env.create_template("t_autorun", &body).await;
    for _ in 0..500 {
        let t = env.template("t_autorun").await;
        if t["properties"]["lastRunStatus"]["runState"] == "Succeeded" {
            let events = recorded_events(&env);
            assert_eq!(
                events[..3],
                ["created", "provisioningState=Succeeded", "run"]
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("autoRun did not build");
}

#[tokio::test]
async fn api_versions() {
    let env = Env::start(fast_config()).await;
    let body = template_body(
        json!([{"type": "Shell", "name": "s", "inline": ["true"]}]),
        distributors(),
    );
    let url = format!(
        "{}?api-version=2025-10-01",
        env.url(&env.template_path("t_2025"))
    );
    let (status, headers, created) = env.arm(Method::PUT, &url, Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    assert!(
        headers["azure-asyncoperation"]
            .to_str()
            .unwrap()
            .ends_with("?api-version=2025-10-01")
    );
    let url = format!(
        "{}?api-version=2019-01-01",
        env.url(&env.template_path("t_old"))
    );
    let (status, _, err) = env.arm(Method::PUT, &url, Some(&body)).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("NoRegisteredProviderFound"))
    );
}

#[tokio::test]
async fn unregistered_providers_and_locks_refuse_with_409() {
    let mut config = fast_config();
    config.unregistered_providers = vec!["Microsoft.VirtualMachineImages".into()];
    let env = Env::start(config).await;
    let body = template_body(json!([]), distributors());
    for method in [Method::PUT, Method::GET] {
        let (status, _, err) = env
            .arm(
                method.clone(),
                &env.template_path("t_unregistered"),
                Some(&body).filter(|_| method == Method::PUT),
            )
            .await;
        assert_eq!(status, 409, "{method} {err}");
        assert_eq!(err["error"]["code"], "MissingSubscriptionRegistration");
        assert_eq!(
            err["error"]["details"][0]["target"],
            "Microsoft.VirtualMachineImages"
        );
    }

    let mut config = fast_config();
    config.locks = vec![aib_emulator::LockConfig {
        subscription_id: defaults::SUBSCRIPTION_ID.into(),
        resource_group: defaults::RESOURCE_GROUP.into(),
        level: aib_emulator::LockLevel::ReadOnly,
    }];
    let env = Env::start(config).await;
    let (status, _, err) = env
        .arm(Method::PUT, &env.template_path("t_locked"), Some(&body))
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "ScopeLocked");
    assert!(
        err["error"]["message"].as_str().unwrap().contains(&format!(
            "cannot perform write operation because following scope(s) are locked: '/subscriptions/{}/resourceGroups/{}'",
            defaults::SUBSCRIPTION_ID,
            defaults::RESOURCE_GROUP
        )),
        "{err}"
    );
    // Reads go through.
    assert_eq!(
        env.arm(Method::GET, &env.template_path("t_locked"), None)
            .await
            .0,
        404
    );
}
