//! The build log, live, as the agent runs the task against the emulator (which writes
//! customization.log as the build goes, with hostile lines in it) and Azurite: lines arrive
//! while the run is still Customizing, every line of the log is printed once and inert, the
//! attachment equals the blob, the run summary has the timeline, a rewritten or late log loses
//! and repeats nothing, and no access to the staging group is said once without failing.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aib_emulator::{Config, Fault, defaults};
use aib_task::build::live_log::inert;
use common::pipeline::*;
use common::*;

/// A VHD build: its template (and so the emulator's record of the log) stays after the task.
fn vhd(vars: &mut BTreeMap<String, String>) {
    vars.insert("INPUT_DISTRIBUTETYPE".into(), "vhd".into());
}

fn slow_customizing() -> Config {
    Config {
        timing: aib_emulator::config::Timing {
            customizing: Duration::from_secs(4),
            log_steps: 8,
            ..Default::default()
        },
        ..Config::default()
    }
}

/// The log's lines as the task prints them.
fn expected_lines(bytes: &[u8]) -> Vec<String> {
    let mut lines = aib_task::build::live_log::Lines::default();
    let mut all = lines.push(bytes);
    all.extend(lines.finish());
    all.iter().map(|l| inert(l)).collect()
}

fn printed_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("│ "))
        .map(str::to_owned)
        .collect()
}

fn template_name(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("template name:  "))
        .expect("a template name")
        .to_owned()
}

#[tokio::test]
async fn the_log_streams_while_customizing_inert_whole_and_attached() {
    let Some(stack) = start_stack(slow_customizing()).await else {
        return;
    };
    let (temp, package) = sample_package();
    let mut vars = pipeline(&stack, &package, temp.path());
    vhd(&mut vars);
    // Read the task's output as it comes, as the agent does.
    let mut child = Command::new(env!("CARGO_BIN_EXE_aib-task"))
        .env_clear()
        .envs(&vars)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // The emulator answers on this test's runtime: wait for lines without blocking it.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let mut out = String::new();
    let mut state_at_first_line = None;
    let started = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            Ok(Some(line)) => {
                if line.starts_with("│ ") && state_at_first_line.is_none() {
                    let template = template_name(&out);
                    let t = stack
                        .emulator
                        .template(defaults::SUBSCRIPTION_ID, RG, &template)
                        .unwrap();
                    state_at_first_line = Some((
                        t["properties"]["lastRunStatus"]["runState"].clone(),
                        t["properties"]["lastRunStatus"]["runSubState"].clone(),
                    ));
                }
                out.push_str(&line);
                out.push('\n');
            }
            Err(_) => {}
            Ok(None) => break,
        }
        assert!(started.elapsed() < Duration::from_secs(120), "{out}");
    }
    reader.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{out}");

    // Lines came while the run was still Customizing, not after it ended.
    assert_eq!(
        state_at_first_line,
        Some(("Running".into(), "Customizing".into())),
        "{out}"
    );
    // Every line of the log, once, in order, made inert.
    let template = template_name(&out);
    let (url, bytes) = stack
        .emulator
        .build_log(defaults::SUBSCRIPTION_ID, RG, &template)
        .expect("the emulator's record of the log");
    assert_eq!(printed_lines(&out), expected_lines(&bytes));
    // The hostile lines did nothing: no logging command, no group, the real outputs.
    assert!(
        !out.lines()
            .any(|l| l.contains("evil.example") && l.contains("##vso[")),
        "a logging command got through"
    );
    assert!(
        !out.lines()
            .any(|l| l.starts_with("##[group]not a real group"))
    );
    let vars = output_variables(&out);
    assert!(vars["imageUri"].ends_with(".vhd"), "{}", vars["imageUri"]);
    assert!(!vars["imageUri"].contains("evil"));
    // The attachment is the blob, byte for byte.
    let attached = commands(&out)
        .into_iter()
        .find(|c| c.action == "uploadfile")
        .expect("the log is attached");
    assert_eq!(std::fs::read(&attached.message).unwrap(), bytes);
    assert!(
        out.contains(&format!("the build log {url} is attached")),
        "{out}"
    );
    // Grouped by customizer; the summary has the timeline with each of the template's own.
    let body = stack
        .emulator
        .template(defaults::SUBSCRIPTION_ID, RG, &template)
        .unwrap();
    // Titles as the task gives them: the customizer's name and its kind.
    let titles: Vec<String> = body["properties"]["customize"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let kind = match c["type"].as_str().unwrap() {
                "WindowsRestart" => "Windows restart",
                "WindowsUpdate" => "Windows Update",
                other => other,
            };
            format!("Customizer '{}' ({kind})", c["name"].as_str().unwrap())
        })
        .collect();
    assert!(titles.len() >= 2, "{titles:?}");
    let summary = commands(&out)
        .into_iter()
        .find(|c| c.action == "uploadsummary")
        .unwrap();
    let summary = std::fs::read_to_string(&summary.message).unwrap();
    for title in &titles {
        assert!(
            out.contains(&format!("##[group]{title} (build log")),
            "{title}: {out}"
        );
        assert!(
            summary.contains(&format!("| {title} |")) && summary.contains("| Succeeded |"),
            "{title}: {summary}"
        );
    }
    assert!(
        summary.contains("| Build log phase | Time | Outcome |"),
        "{summary}"
    );
    assert_announced_secrets_not_printed(&out);
}

#[tokio::test]
async fn a_late_and_rewritten_log_loses_and_repeats_nothing() {
    let mut config = slow_customizing();
    config.log_late = Some(Duration::from_millis(1500));
    config.log_rewrite = true;
    let Some(SampleBuild {
        stack,
        output,
        out,
        temp: _temp,
    }) = sample_build(config, |_, _, vars| vhd(vars)).await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    let (_, bytes) = stack
        .emulator
        .build_log(defaults::SUBSCRIPTION_ID, RG, &template_name(&out))
        .unwrap();
    let printed = printed_lines(&out);
    let final_lines = expected_lines(&bytes);
    // Every line the log ends with was printed, in order.
    let mut rest = printed.iter();
    for line in &final_lines {
        assert!(
            rest.any(|p| p == line),
            "missing or out of order: {line}\n{printed:#?}"
        );
    }
    // The part the rewrite kept was not printed again: its first line (Packer's version) once.
    let first = &final_lines[0];
    assert_eq!(printed.iter().filter(|p| *p == first).count(), 1, "{first}");
    // The attachment is the log as it ends.
    let attached = commands(&out)
        .into_iter()
        .find(|c| c.action == "uploadfile")
        .unwrap();
    assert_eq!(std::fs::read(&attached.message).unwrap(), bytes);
}

#[tokio::test]
async fn without_access_to_the_staging_group_it_says_so_once_and_builds() {
    let config = Config {
        faults: vec![
            Fault::status(
                "GET",
                "/resourceGroups/IT_[^/]+/providers/Microsoft.Storage/storageAccounts$",
                403,
            )
            .times(1000),
        ],
        ..slow_customizing()
    };
    let Some(SampleBuild {
        output,
        out,
        temp: _temp,
        ..
    }) = sample_build(config, |_, _, _| {}).await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    assert_eq!(
        out.matches("the build log cannot be followed live").count(),
        1,
        "{out}"
    );
    assert!(out.contains("Storage Blob Data Reader"), "{out}");
    assert!(printed_lines(&out).is_empty());
}

#[tokio::test]
async fn stream_build_log_false_prints_nothing_but_still_attaches() {
    let Some(SampleBuild {
        stack,
        output,
        out,
        temp: _temp,
    }) = sample_build(slow_customizing(), |_, _, vars| {
        vhd(vars);
        vars.insert("INPUT_STREAMBUILDLOG".into(), "false".into());
    })
    .await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    assert!(printed_lines(&out).is_empty(), "{out}");
    let (_, bytes) = stack
        .emulator
        .build_log(defaults::SUBSCRIPTION_ID, RG, &template_name(&out))
        .unwrap();
    let attached = commands(&out)
        .into_iter()
        .find(|c| c.action == "uploadfile")
        .expect("attached all the same");
    assert_eq!(std::fs::read(&attached.message).unwrap(), bytes);
}

#[tokio::test]
async fn a_failed_build_shows_its_last_lines_inert() {
    let config = Config {
        fail_at: Some(aib_emulator::RunSubState::Customizing),
        ..slow_customizing()
    };
    let Some(SampleBuild {
        output,
        out,
        temp: _temp,
        ..
    }) = sample_build(config, |_, _, _| {}).await
    else {
        return;
    };
    assert_eq!(output.status.code(), Some(1), "{out}");
    let group = out
        .find("##[group]Build log (last 100 lines of customization.log)")
        .expect("the failure's tail");
    let tail = &out[group..];
    assert!(
        tail.contains("evil.example"),
        "the hostile line is in the tail"
    );
    // The log's own logging command never reached the agent: imageUri is not set at all.
    assert!(!output_variables(&out).contains_key("imageUri"), "{out}");
    assert!(
        !out.lines()
            .any(|l| l.contains("##vso[task.setvariable variable=imageUri")),
        "{out}"
    );
}

#[tokio::test]
async fn a_staging_account_without_shared_keys_is_read_with_the_storage_token() {
    let mut config = slow_customizing();
    config.staging_storage.allow_shared_key_access = false;
    config.staging_storage.list_keys_forbidden = true;
    let Some(SampleBuild {
        stack,
        output,
        out,
        temp: _temp,
    }) = sample_build(config, |_, _, vars| vhd(vars)).await
    else {
        return;
    };
    assert!(output.status.success(), "{out}");
    assert!(out.contains("forbids shared keys"), "{out}");
    let (_, bytes) = stack
        .emulator
        .build_log(defaults::SUBSCRIPTION_ID, RG, &template_name(&out))
        .unwrap();
    assert_eq!(printed_lines(&out), expected_lines(&bytes));
    // Every storage token the task used was announced before use, and printed nowhere else.
    assert_announced_secrets_not_printed(&out);
}
