//! The image build, end to end: the base image's exact version resolved, the artifact staged,
//! the template created, run and followed to the end, its outputs read and set, and everything
//! cleaned up; on failure the reason with the build log, on cancellation a cancel request to
//! Image Builder. Every Azure write happens here, after the inputs were validated (`crate::plan`).

pub mod create;
pub mod delete;
pub mod failure;
pub mod gallery;
pub mod live_log;
pub mod log;
pub mod log_phases;
pub mod outputs;
pub mod prepare;
pub mod progress;
pub mod source;
pub mod start;
pub mod summary;
pub mod vhd;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use azure_core::credentials::TokenCredential;
use reqwest::Method;
use tokio::sync::watch;

use crate::agent::{Console, PipelineContext};
use crate::arm::ArmClient;
use crate::image_template::{
    self, ArtifactRef, ImageTemplate, RunState, RunSubState, Source as TemplateSource,
};
use crate::plan::{BuildPlan, Distribution, GalleryVersion, Source};
use crate::staging::{self, Staged, StagingRequest};
use crate::upload::UploadSettings;
use outputs::Outputs;
use progress::{Event, Watcher};
use summary::Summary;

/// How often and how long the build is watched.
#[derive(Clone, Debug)]
pub struct Timing {
    /// Between two looks at the run's state.
    pub poll: Duration,
    /// A reminder line when a phase lasts this long without change.
    pub heartbeat: Duration,
    /// Waiting stops this long after the build timeout (queueing and distribution take extra).
    pub deadline_margin: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            poll: Duration::from_secs(15),
            heartbeat: Duration::from_secs(300),
            deadline_margin: Duration::from_secs(45 * 60),
        }
    }
}

impl Timing {
    /// The wait before the next look at the run: `poll` give or take 20 %, so that the jobs of
    /// a matrix, started together, do not all poll ARM in the same second.
    pub fn next_poll(&self) -> Duration {
        self.poll.mul_f64(0.8 + 0.4 * crate::arm::jitter())
    }

    /// The defaults, with `AIB_POLL_INTERVAL` (seconds) for demos and tests against emulators.
    pub fn from_env(env: &crate::agent::Environment) -> Timing {
        let mut timing = Timing::default();
        if let Some(secs) = env
            .get("AIB_POLL_INTERVAL")
            .and_then(|v| v.trim().parse::<f64>().ok())
            && secs > 0.0
        {
            timing.poll = Duration::from_secs_f64(secs);
        }
        timing
    }
}

/// A watch that turns true when the agent asks the task to stop (SIGINT, then SIGTERM).
pub fn cancellation() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
        }
        let _ = tx.send(true);
    });
    rx
}

/// Why a build ended without outputs.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Cancelled(pub String);

/// What a build needs besides its plan.
pub struct Builder<'a> {
    pub arm: &'a ArmClient,
    pub http: reqwest::Client,
    pub credential: Arc<dyn TokenCredential>,
    pub console: &'a Arc<Console>,
    pub context: &'a PipelineContext,
    pub timing: Timing,
    pub upload: UploadSettings,
    pub cancel: watch::Receiver<bool>,
}

fn template_path(plan: &BuildPlan) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.VirtualMachineImages/imageTemplates/{}",
        plan.subscription_id, plan.resource_group, plan.template_name
    )
}

fn describe_source(source: &Source, exact: Option<&str>) -> String {
    match source {
        Source::Marketplace {
            publisher,
            offer,
            sku,
            version,
        } => {
            format!("{publisher}:{offer}:{sku}:{}", exact.unwrap_or(version))
        }
        Source::ManagedImage { image_id } => format!("managed image {image_id}"),
        Source::SharedImageVersion { image_version_id } => {
            format!("gallery image version {image_version_id}")
        }
    }
}

fn describe_distribution(distribution: &Distribution) -> String {
    match distribution {
        Distribution::ManagedImage { image_id, location } => {
            format!("managed image {image_id} ({location})")
        }
        Distribution::SharedImage {
            gallery_image_id,
            version,
            regions,
            ..
        } => {
            let regions: Vec<String> = regions
                .iter()
                .map(|r| match r.count {
                    1 => r.region.clone(),
                    n => format!("{} ×{n}", r.region),
                })
                .collect();
            let version = match version {
                GalleryVersion::Default => String::new(),
                GalleryVersion::Exact(v) => format!(", version {v}"),
                GalleryVersion::Latest { major: None } => ", next version".to_owned(),
                GalleryVersion::Latest { major: Some(m) } => format!(", next {m}.x.y version"),
                GalleryVersion::Source => ", the source's version".to_owned(),
            };
            format!(
                "gallery image {gallery_image_id} ({}{version})",
                regions.join(", ")
            )
        }
        Distribution::Vhd => "VHD (in the staging resource group)".to_owned(),
        Distribution::VhdAt { uri } => format!("VHD to {uri}"),
    }
}

/// `az` commands that remove a template (and with it its staging group).
fn removal_hint(plan: &BuildPlan) -> String {
    format!(
        "az image builder delete --name {} --resource-group {} --subscription {}",
        plan.template_name, plan.resource_group, plan.subscription_id
    )
}

/// The staging resource group really in use: the template's read-only
/// `exactStagingResourceGroup`, else the user's `stagingResourceGroup`. Never a guessed name:
/// Image Builder appends a GUID to the `IT_…` groups it makes.
fn staging_group(plan: &BuildPlan, template: Option<&ImageTemplate>) -> Option<String> {
    template
        .and_then(|t| t.properties.exact_staging_resource_group.clone())
        .filter(|g| !g.is_empty())
        .or_else(|| {
            plan.staging_resource_group
                .as_ref()
                .map(|g| g.as_str().to_owned())
        })
}

/// [`staging_group`] for a message.
fn describe_staging_group(plan: &BuildPlan, template: Option<&ImageTemplate>) -> String {
    match staging_group(plan, template) {
        Some(group) => format!("staging resource group {group}"),
        None => "staging resource group (Image Builder names it in the template's exactStagingResourceGroup)".to_owned(),
    }
}

impl Builder<'_> {
    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Runs the whole build. The run summary is uploaded whatever the outcome.
    pub async fn run(&mut self, plan: &BuildPlan) -> Result<Outputs> {
        let started = Instant::now();
        let mut summary = Summary {
            template_name: plan.template_name.clone(),
            resource_group: plan.resource_group.clone(),
            location: plan.location.clone(),
            source: describe_source(&plan.source, None),
            distribution: describe_distribution(&plan.distribution),
            ..Default::default()
        };
        // Reads only: what would fail the build is found before anything is written.
        let report = crate::preflight::run(self.arm, plan).await;
        report.print(self.console);
        summary.preflight = Some(report.markdown());
        summary.phases.push(("Preflight".into(), started.elapsed()));
        let outcome = match report.failure() {
            Some(e) => Err(e),
            None => self.run_inner(plan, &mut summary, started).await,
        };
        summary.total = started.elapsed();
        summary.succeeded = outcome.is_ok();
        if let Err(e) = &outcome {
            summary.error = Some(self.console.mask(&format!("{e:#}")));
        }
        self.upload_summary(&summary);
        outcome
    }

    fn upload_summary(&self, summary: &Summary) {
        let path = self
            .context
            .temp_directory
            .join(format!("aib-task-summary-{}.md", summary.template_name));
        match std::fs::write(&path, self.console.mask(&summary.markdown())) {
            // The host shows it: Azure Pipelines' summary tab, GitHub's step summary, or a
            // line naming the file in a terminal.
            Ok(()) => self.console.upload_summary(&path),
            Err(e) => self.console.warning(format!(
                "could not write the run summary {}: {e}",
                path.display()
            )),
        }
    }

    async fn run_inner(
        &mut self,
        plan: &BuildPlan,
        summary: &mut Summary,
        started: Instant,
    ) -> Result<Outputs> {
        // Reads first: nothing is written to Azure until the base image is known to exist.
        let prepare::Prepared {
            plan,
            exact_version,
            purchase_plan,
        } = prepare::prepare(self.arm, self.console, plan).await?;
        let plan = &plan;
        summary.source = describe_source(&plan.source, exact_version.as_deref());
        summary.distribution = describe_distribution(&plan.distribution);

        if plan.source_validation_only() {
            self.console.info("sourceValidationOnly is true: Image Builder validates the source image as it is; nothing is customized and the build path is not uploaded");
            return self
                .build_with(plan, None, summary, started, exact_version, purchase_plan)
                .await;
        }
        let phase = Instant::now();
        let staged = {
            let _group = self.console.group("Staging the build path");
            let request = StagingRequest {
                subscription: &plan.subscription_id,
                storage_account: &plan.storage_account,
                package_path: plan.package_path.clone(),
                build_timeout_minutes: plan.build_timeout_minutes,
                upload: self.upload.clone(),
            };
            let staging = staging::stage(
                self.arm,
                self.http.clone(),
                Arc::clone(&self.credential),
                request,
                self.context,
                self.console,
            );
            let mut cancel = self.cancel.clone();
            let staged = tokio::select! {
                staged = staging => staged?,
                _ = cancel.wait_for(|c| *c) => {
                    return Err(Cancelled(
                        "cancelled while uploading the build path; nothing was created in Image Builder. Uncommitted blocks of the upload are discarded by Azure Storage within 7 days".into(),
                    ).into());
                }
            };
            if let Some(warning) = staging::long_path_warning(
                plan.customization.os,
                &staged.folder,
                &staged.uploaded.archive,
            ) {
                self.console.warning(warning);
            }
            staged
        };
        summary
            .phases
            .push(("Staging the build path".into(), phase.elapsed()));
        summary.artifact = Some(format!(
            "{} ({} files, {:.1} MiB, sha256 {})",
            staged.folder,
            staged.uploaded.archive.files,
            staged.uploaded.bytes as f64 / 1048576.0,
            staged.uploaded.sha256_hex()
        ));

        let outcome = self
            .build_with(
                plan,
                Some(&staged),
                summary,
                started,
                exact_version,
                purchase_plan,
            )
            .await;
        // The blob is only needed while the build runs.
        if let Err(e) = staged.remove(self.console).await {
            self.console.warning(format!("{e:#}"));
        }
        outcome
    }

    async fn build_with(
        &mut self,
        plan: &BuildPlan,
        staged: Option<&Staged>,
        summary: &mut Summary,
        started: Instant,
        exact_version: Option<String>,
        purchase_plan: Option<image_template::PurchasePlan>,
    ) -> Result<Outputs> {
        let sha256 = staged.map(|s| s.uploaded.sha256_hex()).unwrap_or_default();
        let artifact = staged.map(|staged| ArtifactRef {
            download_url: staged.download_url.secret(),
            sha256_hex: &sha256,
            size: staged.uploaded.bytes,
            folder: &staged.folder,
        });
        let mut template = image_template::build_template(plan, artifact.as_ref(), self.context);
        if let TemplateSource::PlatformImage { plan_info, .. } = &mut template.properties.source {
            *plan_info = purchase_plan;
        }
        // How a retry after a lost answer knows the template it finds is this run's own.
        let token = create::run_token();
        template
            .tags
            .insert(create::RUN_TAG.to_owned(), token.clone());
        let source_json = serde_json::to_string(&template.properties.source).unwrap_or_default();
        self.console
            .info(format!("Source for image:  {source_json}"));
        self.console
            .info(format!("template name:  {}", plan.template_name));
        {
            let _group = self.console.group("Image template");
            self.console
                .info(image_template::to_display_json(&template));
        }

        let phase = Instant::now();
        // A generated name can be taken by a parallel job of the same run in the same
        // millisecond: take a new one. A name the user chose is never changed.
        let mut named = plan.clone();
        let mut renames = 0u32;
        loop {
            self.console.info("starting put template...");
            let created = create::create(
                self.arm,
                self.console,
                &template_path(&named),
                &template,
                &token,
                (
                    &named.template_name,
                    &named.resource_group,
                    &named.subscription_id,
                ),
            )
            .await;
            match created {
                Ok(()) => {
                    self.console.info("put template:  Succeeded");
                    break;
                }
                Err(e)
                    if e.downcast_ref::<create::NameTaken>().is_some()
                        && !named.template_name_given
                        && renames < 3 =>
                {
                    renames += 1;
                    let fresh = crate::names::template_name(
                        self.context,
                        &crate::names::Stamp::now(self.context),
                    );
                    self.console.info(format!(
                        "template name {} is taken; using {fresh}",
                        named.template_name
                    ));
                    self.console.info(format!("template name:  {fresh}"));
                    named.template_name = fresh;
                    summary.template_name = named.template_name.clone();
                }
                Err(e) => {
                    return Err(match e.downcast::<create::NameTaken>() {
                        Ok(taken) => anyhow!(
                            "{}\nA template named {} already exists in {} and Image Builder cannot update templates: set templateName to a new name, or remove the old one with: {}",
                            taken.0,
                            named.template_name,
                            named.resource_group,
                            removal_hint(&named)
                        ),
                        Err(e) if e.downcast_ref::<create::Refused>().is_some() => e,
                        Err(e) if e.downcast_ref::<create::ProvisioningFailed>().is_some() => {
                            self.keep_note(&named, e)
                        }
                        // Lost answers, a wait cut short: it may exist without the task knowing.
                        Err(e) => e.context(format!(
                            "template {} may have been created all the same: check with az image builder show --name {} --resource-group {} --subscription {} and remove it with: {}",
                            named.template_name,
                            named.template_name,
                            named.resource_group,
                            named.subscription_id,
                            removal_hint(&named)
                        )),
                    });
                }
            }
        }
        let plan = &named;
        let path = template_path(plan);
        summary
            .phases
            .push(("Creating the template".into(), phase.elapsed()));

        if self.cancelled() {
            return Err(self.cancel_build(plan, &path, staged, None, false).await);
        }
        self.console.info("starting run template...");
        start::start(self.arm, self.console, &path)
            .await
            .map_err(|e| self.keep_note(plan, e))?;

        let mut live = live_log::LiveLog::new(
            self.arm,
            self.http.clone(),
            Arc::clone(&self.credential),
            Arc::clone(self.console),
            self.context
                .temp_directory
                .join(format!("customization-{}.log", plan.template_name)),
            plan.stream_build_log,
            &template.properties.customize,
        );
        let finished = self
            .watch(plan, &path, staged, summary, started, &mut live)
            .await?;
        // The whole log, read before anything is deleted, attached to the job's logs.
        let copy = live.finish().await;
        summary.timeline = live
            .timeline()
            .iter()
            .map(|p| (p.title.clone(), p.took, format!("{:?}", p.outcome)))
            .collect();
        if let Some(copy) = copy {
            self.console.info(format!(
                "the build log {} is attached to this job's logs as {}",
                live.url().map(ToString::to_string).unwrap_or_default(),
                copy.file_name().unwrap_or_default().to_string_lossy()
            ));
        }
        let status = finished
            .properties
            .last_run_status
            .clone()
            .unwrap_or_default();
        let state = status.run_state.unwrap_or(RunState::Unknown);
        if state != RunState::Succeeded {
            return Err(self.fail(plan, &path, &finished, summary, &live).await);
        }
        self.console.info("run template:  Succeeded");

        let phase = Instant::now();
        let run_output_name = plan.distribution.run_output_name();
        self.console
            .info(format!("getting runOutput for  {run_output_name}"));
        let image_uri = match outputs::distributed_image(self.arm, &path, &plan.distribution)
            .await?
        {
            Some(image) => image,
            // Whether a source-only validation distributes anything is not documented ("No
            // separate build will be run"): without an output there is no image to name.
            None if plan.source_validation_only() => {
                self.console.info(format!(
                    "the source image passed validation; Image Builder distributed nothing (no run output {run_output_name}), so imageUri is empty"
                ));
                String::new()
            }
            None => {
                return Err(anyhow!(
                    "the build succeeded but has no output {run_output_name}"
                ));
            }
        };
        summary.image_uri = Some(image_uri.clone());
        let platform_image = match (&plan.source, &finished.properties.source) {
            (
                Source::Marketplace {
                    publisher,
                    offer,
                    sku,
                    ..
                },
                TemplateSource::PlatformImage {
                    exact_version: built,
                    ..
                },
            ) => Some((
                publisher.clone(),
                offer.clone(),
                sku.clone(),
                built
                    .clone()
                    .or(exact_version)
                    .unwrap_or_else(|| "latest".into()),
            )),
            _ => None,
        };
        let outputs = Outputs {
            image_uri,
            platform_image,
            template_name: plan.template_name.clone(),
            template_id: finished.id.clone().unwrap_or_else(|| path.clone()),
        };
        outputs.emit(self.console);
        if plan.distribution.vhd_in_staging_group() && !outputs.image_uri.is_empty() {
            // Deleting the template would delete the VHD with the staging group.
            let group = staging_group(plan, Some(&finished));
            let text = vhd::keep_instructions(&vhd::KeptVhd {
                url: &outputs.image_uri,
                staging_group: group.as_deref(),
                template: &plan.template_name,
                subscription: &plan.subscription_id,
                removal_hint: &removal_hint(plan),
                sas_expiry: time::OffsetDateTime::now_utc() + time::Duration::days(1),
            });
            self.console.warning(format!(
                "template {} was kept: its {} holds the VHD, which deleting the template would delete. Copy the VHD out, then delete the template (instructions below)",
                plan.template_name,
                describe_staging_group(plan, Some(&finished))
            ));
            self.console.info(&text);
            summary.notes.push(text);
        } else {
            self.delete_template(plan, &path).await;
        }
        summary
            .phases
            .push(("Outputs and clean-up".into(), phase.elapsed()));
        Ok(outputs)
    }

    fn keep_note(&self, plan: &BuildPlan, e: anyhow::Error) -> anyhow::Error {
        e.context(format!(
            "the template {} was kept; remove it with: {}",
            plan.template_name,
            removal_hint(plan)
        ))
    }

    /// Follows the run until it ends, the deadline passes, or the task is cancelled.
    async fn watch(
        &mut self,
        plan: &BuildPlan,
        path: &str,
        staged: Option<&Staged>,
        summary: &mut Summary,
        started: Instant,
        live: &mut live_log::LiveLog<'_>,
    ) -> Result<ImageTemplate> {
        let watch_started = Instant::now();
        let deadline = watch_started
            + Duration::from_secs(u64::from(plan.build_timeout_minutes) * 60)
            + self.timing.deadline_margin;
        let mut watcher = Watcher::new(self.timing.heartbeat);
        // Groups do not nest: a streamed log brings groups of its own, one per phase.
        let _group = (!plan.stream_build_log).then(|| self.console.group("Building the image"));
        loop {
            let current: ImageTemplate = self
                .arm
                .get(
                    "reading the build's state",
                    path,
                    image_template::API_VERSION,
                )
                .await?;
            let status = current
                .properties
                .last_run_status
                .clone()
                .unwrap_or_default();
            let state = status.run_state.unwrap_or(RunState::Running);
            let sub_state = status.run_sub_state.map(|s| format!("{s:?}"));
            if let Some(group) = staging_group(plan, Some(&current)) {
                live.set_group(&group);
                live.poll().await;
            }
            if let Some(event) = watcher.observe(
                &format!("{state:?}"),
                sub_state.as_deref(),
                watch_started.elapsed(),
            ) {
                match event {
                    Event::Phase {
                        name,
                        percent,
                        line,
                    } => {
                        self.console.info(line);
                        self.console
                            .set_progress(percent, &format!("Image Builder: {name}"));
                    }
                    Event::Heartbeat { line } => self.console.info(line),
                }
            }
            if state.is_finished() {
                watcher.finish(watch_started.elapsed());
                summary.phases.append(&mut watcher.phases);
                return Ok(current);
            }
            if Instant::now() >= deadline {
                let e = self
                    .cancel_build(plan, path, staged, Some(&current), true)
                    .await;
                return Err(e.context(format!(
                    "the build ran longer than buildTimeoutInMinutes ({}) plus {} minutes (total {})",
                    plan.build_timeout_minutes,
                    self.timing.deadline_margin.as_secs() / 60,
                    progress::elapsed(started.elapsed())
                )));
            }
            let mut cancel = self.cancel.clone();
            tokio::select! {
                _ = tokio::time::sleep(self.timing.next_poll()) => {}
                _ = cancel.wait_for(|c| *c) => {
                    return Err(self.cancel_build(plan, path, staged, Some(&current), false).await);
                }
            }
        }
    }

    /// Asks Image Builder to stop, removes the artifact, and says what is left. Quick: the agent
    /// kills the task 7.5 s after asking it to stop.
    async fn cancel_build(
        &self,
        plan: &BuildPlan,
        path: &str,
        staged: Option<&Staged>,
        template: Option<&ImageTemplate>,
        timed_out: bool,
    ) -> anyhow::Error {
        let why = if timed_out {
            "the build timed out"
        } else {
            "the task was cancelled"
        };
        self.console.info(format!(
            "{why}: asking Image Builder to cancel the build of {}",
            plan.template_name
        ));
        let limit = Duration::from_secs(3);
        let cancel = async {
            let url = self
                .arm
                .url(&format!("{path}/cancel"), image_template::API_VERSION)?;
            self.arm
                .send_once("cancelling the build", Method::POST, url, limit)
                .await
        };
        let remove = async {
            match staged {
                Some(staged) => tokio::time::timeout(limit, staged.store.delete_blob(&staged.blob))
                    .await
                    .is_ok_and(|r| r.is_ok()),
                None => true,
            }
        };
        let (cancelled, removed) = tokio::join!(cancel, remove);
        match cancelled {
            Ok(_) => self
                .console
                .info("cancel requested: Image Builder stops the build and removes its build VM"),
            Err(e) => self
                .console
                .warning(format!("could not ask Image Builder to cancel: {e:#}")),
        }
        if let Some(staged) = staged.filter(|_| !removed) {
            self.console.warning(format!(
                "the artifact {} may be left behind; delete it with: {}",
                staged.url,
                staged.store.delete_hint(&staged.blob)
            ));
        }
        Cancelled(format!(
            "{why}. The template {} remains in resource group {} with its {}, which goes with it; once the cancellation has finished, remove them with: {}",
            plan.template_name,
            plan.resource_group,
            describe_staging_group(plan, template),
            removal_hint(plan)
        ))
        .into()
    }

    /// Explains a failed run with its build log, then keeps or deletes the template.
    async fn fail(
        &self,
        plan: &BuildPlan,
        path: &str,
        finished: &ImageTemplate,
        summary: &mut Summary,
        live: &live_log::LiveLog<'_>,
    ) -> anyhow::Error {
        let status = finished
            .properties
            .last_run_status
            .clone()
            .unwrap_or_default();
        let state = status.run_state.unwrap_or(RunState::Unknown);
        let message = status
            .message
            .unwrap_or_else(|| "Image Builder gave no reason".into());
        self.console.info(format!("run template:  {state:?}"));
        let staging = describe_staging_group(plan, Some(finished));
        let mut log_url = log::log_url(&message);
        // The lines already followed live: shown again from memory, not downloaded twice.
        let mut tail = live.has_read().then(|| live.last_lines());
        // A timeout ("context deadline exceeded") names no log, but the log is there: the
        // follower has looked for the newest one in the staging group (live_log).
        if log_url.is_none()
            && let Some(url) = live.url()
        {
            self.console.info(format!(
                "Image Builder's message names no build log; the newest one in the staging group is {url}"
            ));
            log_url = Some(url.clone());
        }
        if let Some(url) = &log_url {
            summary.log_url = Some(url.to_string());
        }
        if let (None, Some(url)) = (&tail, &log_url) {
            // Read before any deletion: the log lives in the staging group.
            let text = log::read(
                self.arm,
                &self.http,
                &plan.subscription_id,
                url,
                self.console,
            )
            .await;
            match text {
                Ok(text) => {
                    tail = Some(
                        log::tail(&text, live_log::TAIL_LINES)
                            .lines()
                            .map(str::to_owned)
                            .collect(),
                    )
                }
                Err(e) => self
                    .console
                    .warning(format!("could not read the build log {url}: {e:#}")),
            }
        }
        if let Some(lines) = tail {
            let _group = self
                .console
                .group("Build log (last 100 lines of customization.log)");
            // Text from the build VM: made inert like the live lines.
            for line in lines {
                self.console.info(live_log::inert(&line));
            }
        }
        let mut phase = failure::failed_phase(
            status.run_sub_state,
            log_url.as_ref().map(|u| u.as_str()),
            &summary.phases,
        );
        let mut distributed = String::new();
        let mut holds_image = false;
        if plan
            .validation
            .as_ref()
            .is_some_and(|v| v.continue_distribute_on_failure)
            && failure::passed_through(&summary.phases, RunSubState::Validating)
            && let Ok(Some(image)) =
                outputs::distributed_image(self.arm, path, &plan.distribution).await
        {
            // Template reference, `validate.continueDistributeOnFailure`: after a failed
            // validation "output image(s) will still be distributed" and the run is reported as
            // failed. A failed run whose image was distributed therefore failed in validation.
            phase = failure::Phase {
                sub_state: Some(RunSubState::Validating),
                certain: true,
            };
            holds_image = plan.distribution.vhd_in_staging_group();
            summary.image_uri = Some(image.clone());
            distributed = format!(
                "\nThe image was distributed all the same (continueDistributeOnFailure is true): {image}. It failed validation: keep it out of use, or delete it."
            );
        }
        let validation_failed = phase.sub_state == Some(RunSubState::Validating);
        let kept_vm = failure::kept_vm(plan, state, phase);
        let kept = if let Some(vm) = &kept_vm {
            let group = staging_group(plan, Some(finished));
            let note = failure::kept_vm_note(vm, &staging, &removal_hint(plan), group.as_deref());
            summary.notes.push(note.clone());
            note
        } else if holds_image {
            // The VHD lives in the staging group: deleting the template would delete it.
            format!(
                "The template was kept: its {staging} holds the VHD, which deleting the template would delete. Copy the VHD out, then remove the template with: {}",
                removal_hint(plan)
            )
        } else if plan.keep_template_on_failure {
            let busy = if plan.staging_resource_group.is_some() {
                " Until then your stagingResourceGroup stays in use by this template, and Image Builder refuses it for other templates (it must be empty and used by no other template)."
            } else {
                ""
            };
            format!(
                "The template and its {staging} were kept for inspection; remove them with: {}.{busy}",
                removal_hint(plan)
            )
        } else {
            self.delete_template(plan, path).await;
            "The template was deleted (keepTemplateOnFailure is false).".to_owned()
        };
        anyhow!(
            "the image build of template {} {}: {message}\nBuild log: {}{distributed}\n{kept}",
            plan.template_name,
            match state {
                RunState::Canceled => "was cancelled",
                RunState::PartiallySucceeded => "only partly succeeded",
                _ if validation_failed => "failed in validation",
                _ => "failed",
            },
            log_url
                .map(|u| u.to_string())
                .unwrap_or_else(|| "not given by Image Builder".into()),
        )
    }

    /// Deletes the template (which takes its staging group with it): accepted and left to finish
    /// on its own unless `waitForTemplateDeletion`.
    async fn delete_template(&self, plan: &BuildPlan, path: &str) {
        self.console
            .info(format!("deleting template {}...", plan.template_name));
        let outcome = delete::delete(
            self.arm,
            self.console,
            path,
            &plan.template_name,
            plan.wait_for_template_deletion,
        )
        .await;
        match &outcome {
            Ok(delete::Deletion::Gone) => self.console.info("delete template:  Succeeded (it was gone already)"),
            Ok(_) if plan.wait_for_template_deletion => self.console.info("delete template:  Succeeded"),
            Ok(_) => self.console.info("delete template:  Accepted (Image Builder finishes it, with the staging resource group, in the background)"),
            Err(_) => {}
        }
        if let Err(e) = outcome {
            self.console.warning(format!(
                "could not delete template {}: {e:#}. Remove it with: {}",
                plan.template_name,
                removal_hint(plan)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_are_spread_around_the_interval() {
        let timing = Timing {
            poll: Duration::from_secs(10),
            ..Timing::default()
        };
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let wait = timing.next_poll();
            assert!(
                (Duration::from_secs(8)..=Duration::from_secs(12)).contains(&wait),
                "{wait:?}"
            );
            seen.insert(wait);
            std::thread::sleep(Duration::from_micros(200));
        }
        assert!(seen.len() > 10, "jobs must not poll in step: {seen:?}");
    }
}
