//! Rehearsals end to end, run as the agent runs the task: the demo web app passes; a typo, a
//! script reading the wrong build-path folder, a lost execute bit and a step past its time limit
//! fail naming the step; `run` with `rehearseBeforeBuild` stops before any Azure write; the
//! customizers file's Shell steps are rehearsed (an unreachable `scriptUri` skipped with a note).
//!
//! Here they run in a chroot of the Debian 12 root filesystem scripts/test makes once with
//! `debootstrap --variant=minbase` (cached under target/rehearse, or `AIB_REHEARSAL_ROOTFS_DIR`);
//! without it, or without root, they say they skip, and fail when `CI` is set. The container
//! path runs end to end only where Docker or Podman answers, and says it skipped otherwise.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aib_emulator::{Config, defaults};
use common::pipeline::*;
use common::*;

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The folder holding `bookworm-minbase`, or `None` (said) when the tests cannot run here.
fn rootfs_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("AIB_REHEARSAL_ROOTFS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .unwrap()
                .join("rehearse")
        });
    let why = if !aib_task::rehearse::environment::is_root() {
        "not root: a chroot rehearsal needs root".to_owned()
    } else if !dir.join("bookworm-minbase/bin/sh").exists() {
        format!(
            "no Debian 12 root filesystem at {}/bookworm-minbase (scripts/test makes it with debootstrap)",
            dir.display()
        )
    } else {
        return Some(dir);
    };
    if in_ci() {
        panic!("CI is set and the rehearsal tests cannot run: {why}");
    }
    eprintln!("skipped: {why}");
    None
}

const DEMO_SCRIPT: &str =
    "/tmp/webapp/scripts/install.sh\ntest -f /opt/webapp/config/app.json\necho demo rehearsed";

fn demo_package() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/webapp")
}

/// The variables of a Linux marketplace build (jammy), rehearsed in a chroot of Debian 12
/// (`rehearsalImage: debian:12`, the suite the tests' cache holds), with no Azure at all.
fn local_vars(
    rootfs: &Path,
    temp: &Path,
    package: &Path,
    script: &str,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for (name, value) in [
        ("IBAZURERESOURCEGROUP", "rg-images".to_owned()),
        ("IBLOCATION", "westeurope".to_owned()),
        (
            "MANAGEDIDENTITY",
            rid("Microsoft.ManagedIdentity/userAssignedIdentities/aib"),
        ),
        ("IMAGESOURCE", "marketplace".to_owned()),
        (
            "BASEIMAGE",
            "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2".to_owned(),
        ),
        ("PROVISIONER", "shell".to_owned()),
        ("PACKAGEPATH", package.display().to_string()),
        ("INLINESCRIPT", script.to_owned()),
        ("STORAGEACCOUNTNAME", "aibstaging".to_owned()),
        ("DISTRIBUTETYPE", "managedimage".to_owned()),
        ("IMAGEIDFORDISTRIBUTE", rid("Microsoft.Compute/images/web")),
        ("MANAGEDIMAGELOCATION", "westeurope".to_owned()),
        ("REHEARSALIMAGE", "debian:12".to_owned()),
    ] {
        vars.insert(format!("INPUT_{name}"), value);
    }
    add_rehearsal_env(&mut vars, rootfs, temp);
    vars.insert(
        "AZURE_SUBSCRIPTION_ID".into(),
        defaults::SUBSCRIPTION_ID.to_owned(),
    );
    vars
}

fn add_rehearsal_env(vars: &mut BTreeMap<String, String>, rootfs: &Path, temp: &Path) {
    for (name, value) in [
        ("AIB_REHEARSAL_ROOTFS_DIR", rootfs.display().to_string()),
        ("AIB_REHEARSAL_ENVIRONMENT", "chroot".to_owned()),
        // As the agent runs the task: its output is then the pipeline's logging commands.
        ("TF_BUILD", "True".to_owned()),
        ("AGENT_TEMPDIRECTORY", temp.display().to_string()),
        ("SYSTEM_DEFAULTWORKINGDIRECTORY", temp.display().to_string()),
        ("PATH", std::env::var("PATH").unwrap_or_default()),
    ] {
        vars.insert(name.to_owned(), value);
    }
}

async fn rehearse(vars: BTreeMap<String, String>) -> (std::process::Output, String) {
    run_task_async(&["rehearse"], vars).await
}

/// Nothing of the environment is left in the agent's temp folder.
fn assert_torn_down(temp: &Path) {
    let left: Vec<String> = std::fs::read_dir(temp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("aib-rehearsal-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn the_demo_webapp_passes_with_its_execute_bit_and_sudo() {
    let Some(rootfs) = rootfs_dir() else { return };
    let temp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (output, out) = rehearse(local_vars(
        &rootfs,
        temp.path(),
        &demo_package(),
        DEMO_SCRIPT,
    ))
    .await;
    assert!(output.status.success(), "{out}");
    for group in [
        "##[group]Preparing the rehearsal environment",
        "##[group]Rehearsal step 1/3: aib-task-download-artifacts (File)",
        "##[group]Rehearsal step 2/3: aib-task-extract-artifacts (Shell)",
        "##[group]Rehearsal step 3/3: aib-task-inline-script (Shell)",
    ] {
        assert!(out.contains(group), "no {group:?} in\n{out}");
    }
    assert!(out.contains("webapp installed"), "{out}");
    assert!(out.contains("demo rehearsed"), "{out}");
    assert!(
        out.contains("the rehearsal passed: 3 steps run in"),
        "{out}"
    );
    assert!(out.contains("standing in for Debian 12 (bookworm) (input 'rehearsalImage')"));
    assert!(out.contains("a rehearsal cannot show: no systemd"), "{out}");
    assert!(
        out.contains("step 'aib-task-inline-script' passed in"),
        "{out}"
    );
    let summary = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("aib-task-rehearsal-"))
        .expect("the rehearsal's summary");
    let summary = std::fs::read_to_string(summary).unwrap();
    assert!(summary.contains("**The rehearsal passed"), "{summary}");
    assert_torn_down(temp.path());
    eprintln!("demo rehearsed in {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn a_downloaded_archive_comes_from_the_loopback_server_through_the_templates_own_lines() {
    let Some(rootfs) = rootfs_dir() else { return };
    let temp = tempfile::tempdir().unwrap();
    let mut vars = local_vars(&rootfs, temp.path(), &demo_package(), DEMO_SCRIPT);
    vars.insert("INPUT_ARTIFACTDELIVERY".into(), "vm".into());
    let (output, out) = rehearse(vars).await;
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("Rehearsal step 1/3: aib-task-download-artifacts (Shell)"),
        "{out}"
    );
    assert!(
        out.contains("aib-task: downloading the build artifacts"),
        "{out}"
    );
    assert!(
        out.contains("aib-task: downloaded /tmp/webapp.zip (SHA-256"),
        "{out}"
    );
    assert!(out.contains("served at http://127.0.0.1:"), "{out}");
    assert_torn_down(temp.path());
}

#[tokio::test]
async fn a_typo_fails_naming_the_step_and_stops_the_script() {
    let Some(rootfs) = rootfs_dir() else { return };
    let temp = tempfile::tempdir().unwrap();
    let script = "echo before the typo\nsudo mkdri -p /opt/webapp\necho after the typo";
    let (output, out) = rehearse(local_vars(&rootfs, temp.path(), &demo_package(), script)).await;
    assert!(!output.status.success(), "{out}");
    let message = failure_message(&out).expect("a failure");
    assert!(
        message
            .contains("the rehearsal failed at step 'aib-task-inline-script' (Shell step 3 of 3)"),
        "{message}"
    );
    assert!(message.contains("mkdri"), "its last lines: {message}");
    assert!(
        message.contains("nothing was written to Azure"),
        "{message}"
    );
    assert!(out.contains("before the typo"), "{out}");
    assert!(
        !out.contains("after the typo\n"),
        "sh -e goes on after a failure:\n{out}"
    );
    assert_torn_down(temp.path());
}

#[tokio::test]
async fn a_script_reading_the_wrong_build_folder_fails() {
    let Some(rootfs) = rootfs_dir() else { return };
    let temp = tempfile::tempdir().unwrap();
    // The build path is `webapp`: on the VM it is /tmp/webapp, not /tmp/build.
    let script = "cp /tmp/build/config/app.json /tmp/app.json";
    let (output, out) = rehearse(local_vars(&rootfs, temp.path(), &demo_package(), script)).await;
    assert!(!output.status.success(), "{out}");
    let message = failure_message(&out).unwrap();
    assert!(message.contains("'aib-task-inline-script'"), "{message}");
    assert!(message.contains("/tmp/build/config/app.json"), "{message}");
    assert!(message.contains("No such file"), "{message}");
}

#[tokio::test]
async fn the_execute_bit_the_archive_keeps_is_what_lets_a_script_run() {
    let Some(rootfs) = rootfs_dir() else { return };
    for (mode, passes) in [(0o755, true), (0o644, false)] {
        let temp = tempfile::tempdir().unwrap();
        let package = temp.path().join("tools");
        std::fs::create_dir_all(&package).unwrap();
        let script = package.join("setup.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nset -e\necho \"setup as $(id -un) in $(pwd)\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(mode)).unwrap();
        let (output, out) = rehearse(local_vars(
            &rootfs,
            temp.path(),
            &package,
            "/tmp/tools/setup.sh",
        ))
        .await;
        assert_eq!(output.status.success(), passes, "mode {mode:o}:\n{out}");
        if passes {
            // The Shell customizer's conventions: the user packer, in its home folder.
            assert!(out.contains("setup as packer in /home/packer"), "{out}");
        } else {
            let message = failure_message(&out).unwrap();
            assert!(message.contains("Permission denied"), "{message}");
        }
    }
}

#[tokio::test]
async fn a_step_past_its_time_limit_is_stopped_with_what_it_started() {
    let Some(rootfs) = rootfs_dir() else { return };
    let temp = tempfile::tempdir().unwrap();
    // A background process too: the step's end takes every process it started with it.
    let script = "sleep 613 &\necho waiting\nsleep 614";
    let mut vars = local_vars(&rootfs, temp.path(), &demo_package(), script);
    vars.insert("AIB_REHEARSAL_STEP_TIMEOUT_SECONDS".into(), "3".into());
    let started = Instant::now();
    let (output, out) = rehearse(vars).await;
    assert!(!output.status.success(), "{out}");
    assert!(started.elapsed().as_secs() < 60, "the limit did not hold");
    let message = failure_message(&out).unwrap();
    assert!(message.contains("timed out after 3 s"), "{message}");
    assert_torn_down(temp.path());
    std::thread::sleep(std::time::Duration::from_millis(500));
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("sleep 613") || c.starts_with("sleep 614"))
        .collect();
    assert!(survivors.is_empty(), "still running: {survivors:?}");
}

#[tokio::test]
async fn the_customizers_files_shell_steps_are_rehearsed_and_an_unreachable_script_is_skipped() {
    let Some(rootfs) = rootfs_dir() else { return };
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("customizers.json");
    let steps = serde_json::json!([
        {"type": "Shell", "name": "configure-nginx", "inline": ["echo configuring", "sudo mkdir -p /etc/webapp", "test -d /opt/webapp"]},
        {"type": "Shell", "name": "remote-hardening", "scriptUri": "https://aib-rehearsal-test.invalid/harden.sh"},
        {"type": "Shell", "name": "broken-step", "inline": ["cat /etc/webapp/missing.conf"]}
    ]);
    std::fs::write(&file, steps.to_string()).unwrap();
    let mut vars = local_vars(&rootfs, temp.path(), &demo_package(), DEMO_SCRIPT);
    vars.insert("INPUT_CUSTOMIZERSFILE".into(), file.display().to_string());
    let (output, out) = rehearse(vars).await;
    assert!(!output.status.success(), "{out}");
    assert!(
        out.contains("Rehearsal step 4/6: configure-nginx (Shell)"),
        "{out}"
    );
    assert!(out.contains("configuring"), "{out}");
    assert!(out.contains("step 'remote-hardening' skipped: its script https://aib-rehearsal-test.invalid/harden.sh could not be fetched here"), "{out}");
    let message = failure_message(&out).unwrap();
    assert!(
        message.contains("step 'broken-step' (Shell step 6 of 6)"),
        "{message}"
    );
}

#[tokio::test]
async fn run_with_rehearse_before_build_stops_before_any_azure_write() {
    let Some(rootfs) = rootfs_dir() else { return };
    let Some(stack) = start_stack(Config::default()).await else {
        return;
    };
    let (temp, package) = sample_package();
    let mut vars = pipeline(&stack, &package, temp.path());
    vars.insert("INPUT_REHEARSEBEFOREBUILD".into(), "true".into());
    vars.insert("INPUT_REHEARSALIMAGE".into(), "debian:12".into());
    vars.insert(
        "INPUT_INLINESCRIPT".into(),
        "sudo mkdir -p /opt/webapp\nsudo cp -r /tmp/webap/* /opt/webapp/".into(),
    );
    add_rehearsal_env(&mut vars, &rootfs, temp.path());
    let (output, out) = run_task_async(&[], vars.clone()).await;
    assert!(!output.status.success(), "{out}");
    let message = failure_message(&out).unwrap();
    assert!(message.contains("'aib-task-inline-script'"), "{message}");
    assert!(message.contains("/tmp/webap/*"), "{message}");
    assert_eq!(
        writes(&stack),
        Vec::<String>::new(),
        "written to Azure:\n{out}"
    );
    // It never signed in: the connection's secret was neither needed nor printed.
    assert!(!out.contains(defaults::CLIENT_SECRET));
    assert!(!out.contains("signed in as"), "{out}");

    // Fixed, the same run rehearses, then builds.
    vars.insert(
        "INPUT_INLINESCRIPT".into(),
        "sudo mkdir -p /opt/webapp\nsudo cp -r /tmp/webapp/* /opt/webapp/".into(),
    );
    let (output, out) = run_task_async(&[], vars).await;
    assert!(output.status.success(), "{out}");
    let rehearsed = out.find("the rehearsal passed").expect("rehearsed first");
    let staged = out
        .find("##[group]Staging the build path")
        .expect("then built");
    assert!(rehearsed < staged, "{out}");
    assert!(!writes(&stack).is_empty());
}

#[tokio::test]
async fn in_a_container_where_an_engine_answers() {
    let Some(engine) = aib_task::rehearse::environment::detect_engine().await else {
        eprintln!(
            "skipped: neither Docker nor Podman answers here (the container path's arguments are unit-tested in src/rehearse/environment.rs)"
        );
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let mut vars = local_vars(
        Path::new("/nonexistent"),
        temp.path(),
        &demo_package(),
        DEMO_SCRIPT,
    );
    vars.insert("AIB_REHEARSAL_ENVIRONMENT".into(), "container".into());
    let (output, out) = rehearse(vars).await;
    assert!(output.status.success(), "{engine:?}:\n{out}");
    assert!(out.contains("the rehearsal passed"), "{out}");
    assert!(out.contains("demo rehearsed"), "{out}");
}
