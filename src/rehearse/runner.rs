//! Runs a rehearsal: the build path archived as staging would archive it, served on loopback,
//! the template built with that URL, its steps run one by one in the environment (each in its
//! own log group, with a time limit), stopping at the first failure as Image Builder does, and
//! everything torn down.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};

use super::environment::{self, Choice, Sandbox};
use super::image::Target;
use super::report::{LIMITS, Report, Status, StepRecord, TAIL_LINES};
use super::server::ArchiveServer;
use super::steps::{self, Action, Step};
use crate::agent::{Console, PipelineContext};
use crate::archive;
use crate::image_template::{self, ArtifactRef};
use crate::plan::{BuildPlan, Os};

/// Everything a rehearsal needs besides the plan.
pub struct Rehearsal<'a> {
    pub plan: &'a BuildPlan,
    pub target: Target,
    pub context: &'a PipelineContext,
    pub console: &'a Arc<Console>,
    /// For `scriptUri` and File steps of the customizers file.
    pub http: reqwest::Client,
    /// The time limit of each step.
    pub step_timeout: Duration,
    /// `AIB_REHEARSAL_ENVIRONMENT`: `auto`, `container` or `chroot`.
    pub preference: Option<String>,
    /// Where cached root filesystems are.
    pub rootfs_dir: PathBuf,
    /// `AIB_REHEARSAL_MIRROR`: the package archive `debootstrap` reads instead of the default.
    pub mirror: Option<String>,
}

/// Why `plan` cannot be rehearsed at all, if so: decided before any image is looked for.
pub fn not_rehearsed(plan: &crate::plan::BuildPlan) -> Option<String> {
    if plan.customization.os == Os::Windows {
        return Some(
            "the build VM runs Windows, which a rehearsal cannot stand in for (PowerShell steps are not rehearsed)".into(),
        );
    }
    plan.source_validation_only()
        .then(|| "sourceValidationOnly is true: the build customizes nothing".into())
}

/// Runs the rehearsal and reports it; an `Err` is a rehearsal that could not be carried out
/// (no environment), a failing step is a [`Report`] that did not pass.
pub async fn run(r: &Rehearsal<'_>) -> Result<Report> {
    let started = Instant::now();
    let console = r.console;
    let mut report = Report {
        target: r.target.label.clone(),
        ..Default::default()
    };
    if let Some(why) = not_rehearsed(r.plan) {
        report.not_rehearsed = Some(why);
        return Ok(report);
    }
    console.info(format!(
        "rehearsing the customization in an isolated Linux standing in for {}",
        r.target.label
    ));
    console.info(format!("a rehearsal cannot show: {}", LIMITS.join("; ")));

    // The archive, exactly as staging makes it, in a folder removed at the end.
    let work = tempfile::Builder::new()
        .prefix("aib-rehearsal-")
        .tempdir_in(&r.context.temp_directory)
        .or_else(|_| tempfile::Builder::new().prefix("aib-rehearsal-").tempdir())
        .context("cannot make a temporary folder for the rehearsal")?;
    let folder = archive::folder_name(&r.plan.package_path).context("input 'packagePath'")?;
    let zip = work.path().join("artifacts.zip");
    let (root, target_zip) = (r.plan.package_path.clone(), zip.clone());
    let (sha256, size, files) = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::create(&target_zip)?;
        let sink = archive::HashingWriter::new(std::io::BufWriter::new(file));
        let (hashing, summary) = archive::write_archive(&root, sink)?;
        let (mut writer, sha256, size) = hashing.finish();
        std::io::Write::flush(&mut writer)?;
        Ok::<_, anyhow::Error>((sha256, size, summary.files))
    })
    .await
    .context("the archiver failed")?
    .context("input 'packagePath'")?;
    let sha256_hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
    let server = ArchiveServer::start(zip, &format!("{folder}.zip"))
        .context("cannot start the archive server on 127.0.0.1")?;
    console.info(format!(
        "archive of {}: {files} files, {size} bytes, served at {} for the template's download lines",
        r.plan.package_path.display(),
        server.url()
    ));
    let template = image_template::build_template(
        r.plan,
        Some(&ArtifactRef {
            download_url: server.url(),
            sha256_hex: &sha256_hex,
            size,
            folder: &folder,
        }),
        r.context,
    );
    let steps = steps::from_template(&template);

    let sandbox = prepare(r).await?;
    report.environment = sandbox.describe();
    let outcome = async {
        for (index, step) in steps.iter().enumerate() {
            let record = run_step(r, &sandbox, index, steps.len(), step).await?;
            let failed = record.failed();
            report.steps.push(record);
            if failed {
                break;
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let described = sandbox.describe();
    if let Err(e) = sandbox.teardown().await {
        console.warning(format!(
            "could not remove the rehearsal's {described}: {e:#}"
        ));
    }
    drop(server);
    outcome?;
    report.total = started.elapsed();
    Ok(report)
}

/// Chooses, makes and sets up the environment, in a log group of its own.
async fn prepare(r: &Rehearsal<'_>) -> Result<Sandbox> {
    let console = r.console;
    let _group = console.group("Preparing the rehearsal environment");
    let wants_chroot = r
        .preference
        .as_deref()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("chroot"));
    let engine = if wants_chroot {
        None
    } else {
        environment::detect_engine().await
    };
    let temp = r.context.temp_directory.clone();
    let mut sandbox = match environment::choose(r.preference.as_deref(), engine)? {
        Choice::Container(engine) => {
            console.info(format!(
                "{} answers: the steps run in a container of {}",
                engine.program(),
                r.target.container_image
            ));
            let (sandbox, log) =
                Sandbox::container(engine, &r.target.container_image, &temp).await?;
            if !log.trim().is_empty() {
                console.info(log.trim_end());
            }
            sandbox
        }
        Choice::Chroot => {
            let rootfs = r.target.rootfs.as_ref().ok_or_else(|| {
                anyhow!(
                    "{} has no debootstrap root filesystem and neither Docker nor Podman answers on this agent: rehearsing it needs a container engine",
                    r.target.label
                )
            })?;
            if !environment::is_root() {
                bail!(
                    "neither Docker nor Podman answers on this agent, and a rehearsal without them enters a chroot, which needs root: run the agent as root, or give it Docker or Podman"
                );
            }
            let path = environment::rootfs_path(&r.rootfs_dir, rootfs.suite);
            if path.join("bin/sh").exists() {
                console.info(format!(
                    "no container engine answers: the steps run in a chroot of the cached {} root filesystem {}",
                    rootfs.suite,
                    path.display()
                ));
            } else {
                let mirror = r.mirror.as_deref().or(rootfs.mirror);
                console.info(format!(
                    "no container engine answers and no {} root filesystem is cached at {}: making it with debootstrap from {} (once; later rehearsals reuse it)",
                    rootfs.suite,
                    path.display(),
                    mirror.unwrap_or("its default package archive")
                ));
                environment::create_rootfs(rootfs.suite, mirror, &path, |line| console.info(line))
                    .await?;
            }
            Sandbox::chroot(&path, &temp).await?
        }
    };
    let log = sandbox.setup().await?;
    if !log.trim().is_empty() {
        console.info(log.trim_end());
    }
    // sudo must work for the steps' user, as on the VM (a nosuid temp folder would break it).
    let check = "/tmp/aib-rehearsal-sudo-check.sh";
    sandbox
        .put_file(b"#!/bin/sh -e\nsudo -n true\n", check, 0o755, true)
        .await?;
    let output = sandbox
        .command(check, environment::USER)
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "sudo does not work for the user {} in the rehearsal environment ({}): {}",
            environment::USER,
            sandbox.describe(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    console.info(format!("environment ready: {}", sandbox.describe()));
    Ok(sandbox)
}

async fn run_step(
    r: &Rehearsal<'_>,
    sandbox: &Sandbox,
    index: usize,
    count: usize,
    step: &Step,
) -> Result<StepRecord> {
    let console = r.console;
    let _group = console.group(format!(
        "Rehearsal step {}/{count}: {} ({})",
        index + 1,
        step.name,
        step.kind
    ));
    let started = Instant::now();
    let script_path = format!("/tmp/script_{}.sh", index + 1);
    let (status, tail) = match &step.action {
        Action::Skip(note) => (Status::Skipped(note.clone()), Vec::new()),
        Action::Inline(lines) => {
            sandbox
                .put_file(
                    steps::inline_script(lines).as_bytes(),
                    &script_path,
                    0o755,
                    true,
                )
                .await?;
            execute(r, sandbox, &script_path).await?
        }
        Action::ScriptAt { uri, sha256 } => match fetch(&r.http, uri).await {
            Err(e) => (
                Status::Skipped(format!(
                    "its script {} could not be fetched here ({e}); the build VM will run it",
                    image_template::redact_text(uri)
                )),
                Vec::new(),
            ),
            Ok(body) => match checksum_problem(&body, sha256.as_deref()) {
                Some(problem) => (Status::Broken(problem), Vec::new()),
                None => {
                    sandbox.put_file(&body, &script_path, 0o755, true).await?;
                    execute(r, sandbox, &script_path).await?
                }
            },
        },
        Action::FileFrom {
            uri,
            destination,
            sha256,
        } => match fetch(&r.http, uri).await {
            Err(e) if !uri.starts_with("http://127.0.0.1:") => (
                Status::Skipped(format!(
                    "{} could not be fetched here ({e}); Image Builder will copy it",
                    image_template::redact_text(uri)
                )),
                Vec::new(),
            ),
            Err(e) => (Status::Broken(format!("{e:#}")), Vec::new()),
            Ok(body) => match checksum_problem(&body, sha256.as_deref()) {
                Some(problem) => (Status::Broken(problem), Vec::new()),
                None => {
                    sandbox.put_file(&body, destination, 0o644, true).await?;
                    console.info(format!(
                        "copied {} bytes to {destination}, as Image Builder's File customizer does",
                        body.len()
                    ));
                    (Status::Passed, Vec::new())
                }
            },
        },
    };
    let record = StepRecord {
        name: step.name.clone(),
        kind: step.kind,
        status,
        duration: started.elapsed(),
        tail,
    };
    console.info(format!(
        "step '{}' {} in {:.1} s",
        record.name,
        record.outcome(),
        record.duration.as_secs_f64()
    ));
    Ok(record)
}

/// Runs `script` as the steps' user, printing its output as it comes; its status and last lines.
async fn execute(
    r: &Rehearsal<'_>,
    sandbox: &Sandbox,
    script: &str,
) -> Result<(Status, Vec<String>)> {
    let console = r.console;
    let mut child = sandbox
        .command(script, environment::USER)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("cannot start the step")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    environment::spawn_lines(child.stdout.take(), tx.clone());
    environment::spawn_lines(child.stderr.take(), tx);
    let mut tail: Vec<String> = Vec::new();
    let mut take = |line: String| {
        console.info(&line);
        tail.push(console.mask(&line));
        if tail.len() > TAIL_LINES {
            tail.remove(0);
        }
    };
    let deadline = tokio::time::Instant::now() + r.step_timeout;
    let status = loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => take(line),
                None => match tokio::time::timeout_at(deadline, child.wait()).await {
                    Ok(status) => break Some(status?),
                    Err(_) => break None,
                },
            },
            status = child.wait() => {
                // Output a background process still holds open is read for a moment only.
                let drain = tokio::time::Instant::now() + Duration::from_secs(2);
                while let Ok(Some(line)) = tokio::time::timeout_at(drain, rx.recv()).await {
                    take(line);
                }
                break Some(status?);
            }
            _ = tokio::time::sleep_until(deadline) => break None,
        }
    };
    let status = match status {
        Some(status) if status.success() => Status::Passed,
        Some(status) => Status::Failed {
            exit_code: status.code(),
        },
        None => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Status::TimedOut {
                limit: r.step_timeout,
            }
        }
    };
    Ok((status, tail))
}

async fn fetch(http: &reqwest::Client, uri: &str) -> Result<Vec<u8>> {
    // The rehearsal's own archive server is on loopback: never through the agent's proxy.
    let direct;
    let http = if uri.starts_with("http://127.0.0.1:") {
        direct = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("cannot make a direct HTTP client")?;
        &direct
    } else {
        http
    };
    let response = http
        .get(uri)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| anyhow!("{}", image_template::redact_text(&e.to_string())))?;
    let status = response.status();
    if !status.is_success() {
        bail!("HTTP {status}");
    }
    Ok(response
        .bytes()
        .await
        .map_err(|e| anyhow!("{}", image_template::redact_text(&e.to_string())))?
        .to_vec())
}

/// A mismatch with the step's `sha256Checksum`, which fails the step on the VM too.
fn checksum_problem(body: &[u8], expected: Option<&str>) -> Option<String> {
    let expected = expected?.trim().to_ascii_lowercase();
    let actual: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (actual != expected).then(|| {
        format!("its content's SHA-256 is {actual}, but the step's sha256Checksum is {expected}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_checked_when_given() {
        assert_eq!(checksum_problem(b"x", None), None);
        let good = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";
        assert_eq!(checksum_problem(b"x", Some(good)), None);
        assert_eq!(checksum_problem(b"x", Some(&good.to_uppercase())), None);
        assert!(
            checksum_problem(b"y", Some(good))
                .unwrap()
                .contains("sha256Checksum")
        );
    }
}
