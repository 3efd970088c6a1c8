//! The action as a GitHub runner runs it: `node run.js` (the launcher, beside
//! `bin/<platform>/aib-task` as a release lays it out) with the runner's environment — every
//! input as `INPUT_<NAME>` (defaults from task.json filled in, as the runner fills action.yml's),
//! `GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY` files, `GITHUB_WORKSPACE`, `RUNNER_TEMP`, the run id
//! and attempt, and the OIDC request variables — against the emulator and Azurite. No service
//! connection: the job's GitHub OIDC token is exchanged at Entra ID for the app `clientId` names.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aib_emulator::{Config, defaults};
use common::pipeline::*;
use common::*;
use serde_json::Value;

const RUN_ID: &str = "9876543210";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An action folder as a release tag holds it: run.js, action.yml and this machine's binary.
fn action_folder(dir: &Path) -> PathBuf {
    let action = dir.join("action");
    let platform = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux-x64",
        ("linux", "aarch64") => "linux-arm64",
        ("macos", "x86_64") => "osx-x64",
        ("macos", "aarch64") => "osx-arm64",
        other => panic!("no launcher folder for {other:?}"),
    };
    std::fs::create_dir_all(action.join("bin").join(platform)).unwrap();
    for file in ["run.js", "action.yml"] {
        std::fs::copy(root().join(file), action.join(file)).unwrap();
    }
    std::fs::copy(
        env!("CARGO_BIN_EXE_aib-task"),
        action.join("bin").join(platform).join("aib-task"),
    )
    .unwrap();
    action
}

/// What the runner sets for the action's inputs: task.json's defaults for every input the action
/// declares, then the workflow's `with:` values.
fn runner_inputs(with: &[(&str, String)]) -> BTreeMap<String, String> {
    let task: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("task.json")).unwrap()).unwrap();
    let mut vars = BTreeMap::new();
    for input in task["inputs"].as_array().unwrap() {
        let name = input["name"].as_str().unwrap();
        if name == "ibSubscription" {
            continue;
        }
        let default = match &input["defaultValue"] {
            Value::Bool(b) => b.to_string(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        vars.insert(runner_input_variable(name), default);
    }
    for (name, value) in with {
        vars.insert(runner_input_variable(name), value.clone());
    }
    vars
}

/// GitHub's rule: `INPUT_` + the name with spaces as `_`, upper-cased.
fn runner_input_variable(name: &str) -> String {
    format!("INPUT_{}", name.replace(' ', "_").to_uppercase())
}

/// The sample build's inputs (tests/common/pipeline.rs) as a workflow's `with:` block, the
/// build path relative to the workspace; the runner's variables around them.
struct Runner {
    vars: BTreeMap<String, String>,
    output: PathBuf,
    summary: PathBuf,
    action: PathBuf,
}

fn runner(stack: &Stack, workspace: &Path) -> Runner {
    let emulator = &stack.emulator;
    let agent = pipeline(stack, &workspace.join("webapp"), workspace);
    let mut with: Vec<(&str, String)> = Vec::new();
    for (name, value) in &agent {
        let Some(upper) = name.strip_prefix("INPUT_") else {
            continue;
        };
        if upper == "IBSUBSCRIPTION" || upper == "PACKAGEPATH" || value.is_empty() {
            continue;
        }
        let camel = aib_task::inputs::input_specs()
            .into_iter()
            .find(|s| s.env == *name)
            .unwrap()
            .name;
        with.push((Box::leak(camel.into_boxed_str()), value.clone()));
    }
    with.push(("packagePath", "webapp".into()));
    with.push(("clientId", defaults::CLIENT_ID.into()));
    with.push(("tenantId", defaults::TENANT_ID.into()));
    with.push(("subscriptionId", defaults::SUBSCRIPTION_ID.into()));
    let mut vars = runner_inputs(&with);
    let runner_temp = workspace.join("_temp");
    std::fs::create_dir_all(&runner_temp).unwrap();
    let output = runner_temp.join("_runner_file_commands/set_output_1");
    let summary = runner_temp.join("_runner_file_commands/step_summary_1");
    std::fs::create_dir_all(output.parent().unwrap()).unwrap();
    let base = emulator.base_url().to_string();
    for (name, value) in [
        ("GITHUB_ACTIONS", "true".to_owned()),
        ("CI", "true".to_owned()),
        ("GITHUB_WORKSPACE", workspace.display().to_string()),
        ("RUNNER_TEMP", runner_temp.display().to_string()),
        ("GITHUB_RUN_ID", RUN_ID.to_owned()),
        ("GITHUB_RUN_ATTEMPT", "1".to_owned()),
        ("GITHUB_JOB", "image".to_owned()),
        ("GITHUB_REPOSITORY", defaults::GITHUB_REPOSITORY.to_owned()),
        ("GITHUB_SERVER_URL", "https://github.com".to_owned()),
        ("GITHUB_OUTPUT", output.display().to_string()),
        ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
        (
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            emulator
                .github_id_token_request_url("plan-1", "job-1")
                .to_string(),
        ),
        (
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            defaults::GITHUB_REQUEST_TOKEN.to_owned(),
        ),
        // The emulator stands in for the public cloud's Entra ID and ARM.
        ("AZURE_AUTHORITY_HOST", base.clone()),
        ("AZURE_RESOURCE_MANAGER_URL", base),
        (
            "SSL_CERT_FILE",
            emulator.ca_pem_path().display().to_string(),
        ),
        ("AIB_POLL_INTERVAL", "0.2".to_owned()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ] {
        vars.insert(name.to_owned(), value);
    }
    let action = action_folder(workspace);
    Runner {
        vars,
        output,
        summary,
        action,
    }
}

fn launcher(runner: &Runner) -> Command {
    let mut command = Command::new("node");
    command
        .arg(runner.action.join("run.js"))
        .current_dir(runner.vars["GITHUB_WORKSPACE"].clone())
        .env_clear()
        .envs(&runner.vars);
    command
}

async fn run(runner: &Runner) -> (Output, String) {
    let mut command = launcher(runner);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let out = stdout(&output);
    (output, out)
}

fn node_available() -> bool {
    let found = Command::new("node").arg("--version").output().is_ok();
    if !found {
        eprintln!("skipping: node is not installed (the launcher needs it)");
    }
    found
}

/// Reads `GITHUB_OUTPUT` as the runner does: `name=value` lines and `name<<DELIMITER` blocks.
fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut outputs = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let mut value: Vec<&str> = Vec::new();
            loop {
                let next = lines.next().expect("the delimiter closes the value");
                if next == delimiter {
                    break;
                }
                value.push(next);
            }
            outputs.insert(name.to_owned(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            outputs.insert(name.to_owned(), value.to_owned());
        } else {
            assert!(line.is_empty(), "not an output line: {line:?}");
        }
    }
    outputs
}

/// Every `::add-mask::` value is printed nowhere else, nor before its mask; nothing shaped
/// like a token shows; `known` secrets are masked before anything else is printed of them.
fn assert_masked(out: &str, known: &[&str]) {
    let mut masked: Vec<String> = Vec::new();
    let jwt = regex::Regex::new(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.").unwrap();
    for line in out.lines() {
        if let Some(value) = line.strip_prefix("::add-mask::") {
            masked.push(aib_task::agent::host::github_unescape_data(value));
            continue;
        }
        assert!(
            !jwt.is_match(line),
            "a token shows in output line: {line:?}"
        );
        for secret in masked
            .iter()
            .map(String::as_str)
            .chain(known.iter().copied())
        {
            assert!(!line.contains(secret), "secret leaked in {line:?}");
        }
    }
    for secret in known {
        assert!(
            masked.iter().any(|m| m == secret),
            "{secret} was never masked"
        );
    }
}

fn assert_no_vso(out: &str) {
    for line in out.lines() {
        assert!(
            !line.contains("##vso[") && !line.starts_with("##["),
            "an Azure Pipelines command on GitHub: {line:?}"
        );
    }
}

#[tokio::test]
async fn the_action_builds_with_github_s_oidc_token_and_sets_its_outputs() {
    if !node_available() {
        return;
    }
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let workspace = tempfile::tempdir().unwrap();
    sample_artifacts(&workspace.path().join("webapp"));
    let runner = runner(&stack, workspace.path());
    let (output, out) = run(&runner).await;
    assert!(
        output.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_no_vso(&out);
    assert_masked(&out, &[defaults::GITHUB_REQUEST_TOKEN]);
    // The request token is the very first thing said.
    assert_eq!(
        out.lines().next(),
        Some(format!("::add-mask::{}", defaults::GITHUB_REQUEST_TOKEN).as_str())
    );
    assert!(out.contains("::group::"), "{out}");
    assert!(out.contains("::endgroup::"), "{out}");
    assert!(
        out.contains("through GitHub's OIDC token (ACTIONS_ID_TOKEN_REQUEST_URL)"),
        "{out}"
    );

    let outputs = parse_outputs(&std::fs::read_to_string(&runner.output).unwrap());
    assert_eq!(
        outputs["imageUri"],
        rid("Microsoft.Compute/images/webapp-image")
    );
    assert_eq!(outputs["pirPublisher"], "Canonical");
    assert_eq!(outputs["pirOffer"], "0001-com-ubuntu-server-jammy");
    assert_eq!(outputs["pirSku"], "22_04-lts-gen2");
    assert_eq!(outputs["pirVersion"], "22.04.202411010");
    let template = &outputs["templateName"];
    assert!(template.starts_with(&format!("t_{RUN_ID}_")), "{template}");
    assert!(outputs["templateId"].ends_with(&format!("/imageTemplates/{template}")));

    // The build path resolved against GITHUB_WORKSPACE, staged under <run id>-<attempt>/.
    let download = stack
        .emulator
        .downloads()
        .into_iter()
        .find(|d| d.url.contains("/webapp/"))
        .expect("Image Builder downloaded the build path");
    assert!(
        download
            .url
            .contains(&format!("/webapp/{RUN_ID}-1/webapp_")),
        "{}",
        download.url
    );
    assert!(download.entries.iter().any(|e| e.ends_with("install.sh")));

    // A fresh GitHub OIDC token per exchange, each exchanged at Entra ID.
    let requests = stack.emulator.requests();
    let asked = requests
        .iter()
        .filter(|r| r.path.ends_with("/idtoken"))
        .count();
    let exchanged = requests
        .iter()
        .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .count();
    assert!(
        asked >= 1 && asked == exchanged,
        "{asked} tokens for {exchanged} exchanges"
    );

    // The run summary is on the step's summary, masked like every line.
    let summary = std::fs::read_to_string(&runner.summary).unwrap();
    assert!(summary.contains(template.as_str()), "{summary}");
    assert!(!summary.contains(defaults::GITHUB_REQUEST_TOKEN));
    // Scratch files went to RUNNER_TEMP.
    assert!(
        std::fs::read_dir(workspace.path().join("_temp"))
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("aib-task-summary-")),
        "the summary file is in RUNNER_TEMP"
    );
    until_no_template_left(&stack).await;
}

#[tokio::test]
async fn a_failed_build_is_an_error_annotation_and_a_failing_step() {
    if !node_available() {
        return;
    }
    let config = Config {
        fail_at: Some(aib_emulator::image_templates::RunSubState::Customizing),
        ..Config::default()
    };
    let Some(stack) = start_stack(config).await else {
        return;
    };
    let workspace = tempfile::tempdir().unwrap();
    sample_artifacts(&workspace.path().join("webapp"));
    let runner = runner(&stack, workspace.path());
    let (output, out) = run(&runner).await;
    assert!(!output.status.success(), "{out}");
    assert_no_vso(&out);
    assert_masked(&out, &[defaults::GITHUB_REQUEST_TOKEN]);
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("::error::")).collect();
    assert!(!errors.is_empty(), "{out}");
    let last = aib_task::agent::host::github_unescape_data(errors.last().unwrap());
    assert!(last.contains("customization.log"), "{last}");
    // No outputs for a failed build, but the summary says what happened.
    let outputs = std::fs::read_to_string(&runner.output).unwrap_or_default();
    assert!(parse_outputs(&outputs).is_empty(), "{outputs}");
    assert!(
        std::fs::read_to_string(&runner.summary)
            .unwrap()
            .contains("fail")
    );
}

#[tokio::test]
async fn the_runner_s_cancellation_cancels_the_image_builder_run() {
    if !node_available() {
        return;
    }
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
    let workspace = tempfile::tempdir().unwrap();
    sample_artifacts(&workspace.path().join("webapp"));
    let runner = runner(&stack, workspace.path());
    let mut child = launcher(&runner)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !stack
        .emulator
        .template_events()
        .iter()
        .any(|e| e.event == "runSubState=Building")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the build never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The runner's cancellation: SIGINT to the action's process (the launcher), then SIGTERM
    // 7.5 s later if it is still running.
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
    let mut out = String::new();
    use std::io::Read as _;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(!status.success());
    let cancel = stack
        .emulator
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/cancel"))
        .expect("a cancel request");
    assert!(cancel.status < 300, "{cancel:?}");
    assert!(out.contains("cancel requested"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("::error::")), "{out}");
    assert_no_vso(&out);
    assert_masked(&out, &[defaults::GITHUB_REQUEST_TOKEN]);
}

#[test]
fn outputs_are_read_back_by_github_s_rules() {
    let parsed = parse_outputs("a=1\nb<<EOF_x\nline 1\nline 2\nEOF_x\nc=x=y\n");
    assert_eq!(parsed["a"], "1");
    assert_eq!(parsed["b"], "line 1\nline 2");
    assert_eq!(parsed["c"], "x=y");
}
