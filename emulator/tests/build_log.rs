//! The build log written as the build goes (`packerlogs/<guid>/customization.log`, an append
//! blob in the staging account, see `aib_emulator::build_log`): read through Azurite while the run
//! is Customizing it grows; its final bytes equal `Emulator::build_log`'s record and hold the
//! hostile lines (logging commands, a 20,000-character line, bytes that are not UTF-8); the
//! `log_late` and `log_rewrite` knobs behave as documented; a cancel ends it with packer's
//! cancellation lines; deleting the template deletes it. Without Azurite, the record is kept.
//! Tests that need Azurite skip with a message when it is not installed (`npm ci` at the root).

mod common;

use std::time::{Duration, Instant};

use aib_emulator::{Config, defaults, packer_log::hostile};
use common::{Env, async_operation, fast_config, template_body};
use reqwest::Method;
use serde_json::{Value, json};

/// A fast config whose Customizing lasts `customizing`, with the log written in `steps`.
fn config(customizing: Duration, steps: u32) -> Config {
    let mut c = fast_config();
    c.timing.customizing = customizing;
    c.timing.log_steps = steps;
    c
}

fn body(name: &str) -> Value {
    template_body(
        json!([
            {"type": "Shell", "name": "setup", "inline": ["echo streaming-marker-one", "sudo apt-get install -y nginx"]},
            {"type": "Shell", "name": "second", "inline": ["echo streaming-marker-two"]}
        ]),
        json!([{"type": "ManagedImage", "runOutputName": "managed", "location": "westus2",
            "imageId": format!("/subscriptions/{}/resourceGroups/aib-test-rg/providers/Microsoft.Compute/images/{name}", defaults::SUBSCRIPTION_ID)}]),
    )
}

/// Starts a run; returns its `Azure-AsyncOperation` URL.
async fn start_run(env: &Env, name: &str) -> String {
    let (status, headers, body) = env.template_action(name, "run").await;
    assert_eq!(status, 202, "{body}");
    async_operation(&headers)
}

/// `(runState, runSubState)` of the template's last run.
async fn run_state(env: &Env, name: &str) -> (String, String) {
    let t = env.template(name).await;
    let run = &t["properties"]["lastRunStatus"];
    (
        run["runState"].as_str().unwrap_or("").to_owned(),
        run["runSubState"].as_str().unwrap_or("").to_owned(),
    )
}

async fn wait_for_sub_state(env: &Env, name: &str, wanted: &str) {
    let started = Instant::now();
    while run_state(env, name).await.1 != wanted {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the run never reached {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn build_log(env: &Env, name: &str) -> Option<(String, Vec<u8>)> {
    env.emulator
        .build_log(defaults::SUBSCRIPTION_ID, defaults::RESOURCE_GROUP, name)
}

/// The URL of the run's log, once the run has started it (just after Customizing shows).
async fn wait_for_log(env: &Env, name: &str) -> String {
    let started = Instant::now();
    loop {
        if let Some((url, _)) = build_log(env, name) {
            return url;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no log");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The first `⌊ℓ/3⌋` whole lines of `bytes` (`ℓ` its number of line ends).
fn first_third(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().filter(|b| **b == b'\n').count() / 3;
    let mut seen = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &bytes[..=i];
            }
        }
    }
    &[]
}

/// GETs the log's blob from Azurite with the staging account's key: `(status, bytes, blob type)`.
async fn read_blob(env: &Env, url: &str) -> (u16, Vec<u8>, String) {
    let r = env
        .shared_key_get(
            defaults::STAGING_STORAGE_ACCOUNT,
            defaults::STAGING_STORAGE_ACCOUNT_KEY,
            url::Url::parse(url).unwrap(),
        )
        .await;
    let status = r.status().as_u16();
    let kind = r
        .headers()
        .get("x-ms-blob-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, r.bytes().await.unwrap().to_vec(), kind)
}

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split(|b| *b == b'\n').collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The hostile lines and packer's markers are all there, each hostile line whole and at a
/// line start.
fn assert_realistic_and_hostile(log: &[u8]) {
    let lines = lines(log);
    for wanted in [hostile::SET_VARIABLE.as_bytes(), hostile::GROUP.as_bytes()] {
        assert!(
            lines.contains(&wanted),
            "{} is a line of its own",
            String::from_utf8_lossy(wanted)
        );
    }
    assert!(
        lines.iter().any(|l| l.len() == hostile::LONG_LINE_LEN),
        "a line of exactly 20,000 bytes"
    );
    assert!(lines.contains(&hostile::NOT_UTF8));
    assert!(contains(log, b"\xE9\xFF"));
    assert!(std::str::from_utf8(log).is_err(), "the log is not UTF-8");
    let text = String::from_utf8_lossy(log);
    for marker in [
        "[INFO] (telemetry) Starting provisioner shell",
        "[INFO] (telemetry) ending shell",
        "PACKER OUT ==> azure-arm: Provisioning with shell script: /tmp/packer-shell",
        "    azure-arm: + echo streaming-marker-one",
        "[INFO] (telemetry) Finalizing.",
    ] {
        assert!(text.contains(marker), "{marker}");
    }
}

#[tokio::test]
async fn the_log_grows_while_customizing_and_ends_equal_to_the_record() {
    let Some(env) = Env::start_with_azurite(config(Duration::from_millis(3000), 6)).await else {
        return;
    };
    let name = "t_live";
    env.create_template(name, &body(name)).await;
    let run = start_run(&env, name).await;
    wait_for_sub_state(&env, name, "Customizing").await;
    let url = wait_for_log(&env, name).await;
    assert!(url.ends_with("/customization.log") && url.contains("/packerlogs/"));

    // Two reads through Azurite, both while the run is Running and Customizing.
    let (first, kind) = loop {
        let (status, bytes, kind) = read_blob(&env, &url).await;
        if status == 200 {
            break (bytes, kind);
        }
        assert_eq!(status, 404, "created at once");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(kind, "AppendBlob");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, second, _) = read_blob(&env, &url).await;
    assert_eq!(status, 200);
    assert_eq!(
        run_state(&env, name).await,
        ("Running".to_owned(), "Customizing".to_owned())
    );
    assert!(
        second.len() > first.len() && second.starts_with(&first),
        "the blob grew: {} then {} bytes",
        first.len(),
        second.len()
    );
    let (_, so_far) = build_log(&env, name).unwrap();
    assert!(
        so_far.starts_with(&second),
        "the record runs ahead of or with the blob"
    );
    assert!(
        !String::from_utf8_lossy(&second).contains("(telemetry) Finalizing."),
        "the end of the build is not written while Customizing"
    );

    assert_eq!(env.wait_operation(&run).await["status"], "Succeeded");
    let (_, recorded) = build_log(&env, name).unwrap();
    let (status, blob, _) = read_blob(&env, &url).await;
    assert_eq!(status, 200);
    assert_eq!(blob, recorded, "the blob is exactly what was appended");
    assert!(blob.starts_with(&second));
    assert_realistic_and_hostile(&blob);
    let text = String::from_utf8_lossy(&blob);
    assert!(text.contains("/tmp/DeprovisioningScript.sh"));
    assert!(text.contains("PACKER OUT Build 'azure-arm' finished after "));
    assert!(text.ends_with("[INFO] (telemetry) Finalizing.\n"));

    // The log stays after the run; deleting the template deletes it (with the staging group).
    let (status, headers, _) = env
        .arm(Method::DELETE, &env.template_path(name), None)
        .await;
    assert_eq!(status, 202);
    env.wait_operation(&async_operation(&headers)).await;
    assert_eq!(read_blob(&env, &url).await.0, 404);
    assert!(build_log(&env, name).is_none());
}

#[tokio::test]
async fn a_failed_run_names_the_log_it_wrote_and_the_log_holds_the_failure() {
    let Some(env) = Env::start_with_azurite(config(Duration::from_millis(400), 4)).await else {
        return;
    };
    let name = "t_live_fails";
    let mut b = body(name);
    b["tags"][defaults::FAIL_AT_TAG] = json!("Customizing");
    env.create_template(name, &b).await;
    let run = start_run(&env, name).await;
    assert_eq!(env.wait_operation(&run).await["status"], "Failed");
    let t = env.template(name).await;
    let message = t["properties"]["lastRunStatus"]["message"]
        .as_str()
        .unwrap();
    let (url, recorded) = build_log(&env, name).unwrap();
    assert!(
        message.contains(&format!("Image Build log location: {url}. OperationId: ")),
        "{message}"
    );
    let (status, blob, _) = read_blob(&env, &url).await;
    assert_eq!(status, 200);
    assert_eq!(blob, recorded);
    assert_realistic_and_hostile(&blob);
    let text = String::from_utf8_lossy(&blob);
    assert!(
        text.contains("PACKER OUT ==> Some builds didn't complete successfully and had errors:")
    );
    assert!(text.contains("PACKER OUT ==> Builds finished but no artifacts were created."));
    assert!(
        !text.contains("DeprovisioningScript"),
        "a failed customizer stops the build"
    );
    // The user's hostile lines fall in the last 100 lines, which a client shows on failure.
    let tail: Vec<&[u8]> = lines(&blob).into_iter().rev().take(100).collect();
    assert!(tail.contains(&hostile::SET_VARIABLE.as_bytes()));
}

#[tokio::test]
async fn a_late_log_appears_only_after_log_late() {
    let Some(env) = Env::start_with_azurite(config(Duration::from_millis(2500), 5)).await else {
        return;
    };
    let name = "t_late";
    let mut b = body(name);
    b["tags"][defaults::LOG_LATE_TAG] = json!("1200");
    env.create_template(name, &b).await;
    let run = start_run(&env, name).await;
    wait_for_sub_state(&env, name, "Customizing").await;
    let customizing = Instant::now();
    let url = wait_for_log(&env, name).await;
    assert!(build_log(&env, name).unwrap().1.is_empty());
    assert_eq!(read_blob(&env, &url).await.0, 404, "no blob yet");
    let appeared = loop {
        let (status, bytes, _) = read_blob(&env, &url).await;
        if status == 200 {
            break (customizing.elapsed(), bytes);
        }
        assert_eq!(status, 404);
        assert!(customizing.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        appeared.0 >= Duration::from_millis(1000),
        "appeared after {:?}",
        appeared.0
    );
    assert_eq!(run_state(&env, name).await.1, "Customizing");
    // What was due in the first 1.2 s (parts 0 to 2 of 5) arrives at once; the rest follows.
    assert_eq!(env.wait_operation(&run).await["status"], "Succeeded");
    let (_, recorded) = build_log(&env, name).unwrap();
    let (_, blob, _) = read_blob(&env, &url).await;
    assert_eq!(blob, recorded);
    assert!(blob.starts_with(&appeared.1) && blob.len() > appeared.1.len());
    assert!(blob.starts_with(b"PACKER ERR "));
    assert!(blob.ends_with(b"[INFO] (telemetry) Finalizing.\n"));
    assert_realistic_and_hostile(&blob);
}

#[tokio::test]
async fn a_rewritten_log_keeps_its_first_third_then_goes_on() {
    let mut c = config(Duration::from_millis(2000), 4);
    c.log_rewrite = true;
    let Some(env) = Env::start_with_azurite(c).await else {
        return;
    };
    let name = "t_rewrite";
    env.create_template(name, &body(name)).await;
    let run = start_run(&env, name).await;
    wait_for_sub_state(&env, name, "Customizing").await;
    let url = wait_for_log(&env, name).await;
    // Watch the record, and the blob as a reader does, until the record stops growing from
    // what it was: `before` is what the blob held just before the rewrite, `after` what the
    // record held when next looked at.
    let mut before = Vec::new();
    let mut blob_before = Vec::new();
    let mut blob_started_over = false;
    let after = loop {
        let (_, now) = build_log(&env, name).unwrap();
        if !now.starts_with(&before) {
            break now;
        }
        before = now;
        let (status, blob, _) = read_blob(&env, &url).await;
        if status == 200 {
            blob_started_over |= !blob.starts_with(&blob_before);
            blob_before = blob;
        }
        assert_eq!(run_state(&env, name).await.0, "Running", "no rewrite seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(run_state(&env, name).await.1, "Customizing");
    // h = max(1, ⌊4/2⌋) = 2: the blob held appends 0 and 1 and keeps the first third of its
    // lines, then append 2 goes on.
    let kept = first_third(&before).to_vec();
    assert!(!kept.is_empty() && kept.len() < before.len());
    assert!(after.starts_with(&kept), "re-created with its first third");
    let (status, blob, _) = read_blob(&env, &url).await;
    blob_started_over |= status == 200 && !blob.starts_with(&blob_before);
    assert!(blob_started_over, "a reader of the blob sees it start over");

    assert_eq!(env.wait_operation(&run).await["status"], "Succeeded");
    let (_, recorded) = build_log(&env, name).unwrap();
    let (_, blob, _) = read_blob(&env, &url).await;
    assert_eq!(
        blob, recorded,
        "the blob is what was appended, rewrite included"
    );
    // Final bytes: the kept third, then appends 2, 3 and the end; `before` followed by the same
    // appends is the whole log, so what is lost is exactly `before` after its first third.
    assert!(blob.starts_with(&kept));
    let whole = [&before[..], &blob[kept.len()..]].concat();
    assert!(whole.starts_with(b"PACKER ERR ") && whole.ends_with(b"(telemetry) Finalizing.\n"));
    assert_realistic_and_hostile(&whole);
    let text = String::from_utf8_lossy(&whole);
    assert_eq!(text.matches("[INFO] Packer version").count(), 1);
    assert_eq!(
        text.matches("(telemetry) Starting provisioner shell")
            .count(),
        3
    );
}

#[tokio::test]
async fn a_cancel_ends_the_log_with_packer_s_cancellation() {
    let Some(env) = Env::start_with_azurite(config(Duration::from_millis(3000), 6)).await else {
        return;
    };
    let name = "t_live_cancel";
    env.create_template(name, &body(name)).await;
    let run = start_run(&env, name).await;
    wait_for_sub_state(&env, name, "Customizing").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, headers, _) = env.template_action(name, "cancel").await;
    assert_eq!(status, 202);
    env.wait_operation(&async_operation(&headers)).await;
    assert_eq!(env.wait_operation(&run).await["status"], "Canceled");
    let (url, recorded) = build_log(&env, name).unwrap();
    let (_, blob, _) = read_blob(&env, &url).await;
    assert_eq!(blob, recorded);
    let text = String::from_utf8_lossy(&blob);
    assert!(text.contains("Cancelling builder after context cancellation context canceled"));
    assert!(text.contains("PACKER OUT Cancelling build after receiving terminated"));
    assert!(text.ends_with("[INFO] (telemetry) Finalizing.\n"));
    assert!(
        !text.contains("streaming-marker-two") && !text.contains("DeprovisioningScript"),
        "the parts not yet due are dropped"
    );
}

#[tokio::test]
async fn without_azurite_the_record_is_kept() {
    let env = Env::start(fast_config()).await;
    let name = "t_no_storage";
    let mut b = body(name);
    b["tags"][defaults::FAIL_AT_TAG] = json!("Building");
    env.create_template(name, &b).await;
    let run = start_run(&env, name).await;
    assert_eq!(env.wait_operation(&run).await["status"], "Failed");
    let (url, bytes) = build_log(&env, name).unwrap();
    assert!(url.starts_with("https://aibstaginglogs01.blob.core.windows.net/packerlogs/"));
    let text = String::from_utf8(bytes).expect("no customizer output, so UTF-8");
    assert!(text.contains("the build VM could not be provisioned"));
    assert!(!text.contains("(telemetry) Starting provisioner"));
    assert!(text.ends_with("[INFO] (telemetry) Finalizing.\n"));
}
