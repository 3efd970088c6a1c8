//! Rehearsals: the customization the template would run on the build VM, run first on the agent
//! in an isolated Linux resembling the base image, so a broken script fails in a minute instead
//! of after a 40-minute build. Used by `aib-task rehearse` and, with `rehearseBeforeBuild`, by
//! `run` before its first Azure write. Nothing here writes to Azure; it reads Azure only to learn
//! which release a gallery image version is.
//!
//! The map: [`image`] picks the release (and its container image or `debootstrap` suite),
//! [`server`] serves the build path's archive on loopback, [`steps`] reads the template's
//! customizers, [`environment`] makes the container or chroot, [`runner`] runs the steps,
//! [`report`] says what happened. The template is the one [`crate::image_template`] builds for
//! the real build, with the archive's URL on 127.0.0.1 in place of the SAS URL.

pub mod environment;
pub mod image;
pub mod report;
pub mod runner;
pub mod server;
pub mod steps;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde::Deserialize;

use crate::agent::{Console, Environment, PipelineContext};
use crate::arm::ArmClient;
use crate::inputs::{self, InputError, TaskInputs};
use crate::plan::BuildPlan;
use image::{Resolution, Target};
pub use report::Report;

/// Each step's time limit unless `AIB_REHEARSAL_STEP_TIMEOUT_SECONDS` says otherwise.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The rehearsal's inputs and knobs, checked before anything runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `rehearseBeforeBuild`: `run` rehearses first.
    pub before_build: bool,
    /// `rehearsalImage`: the container image to use instead of the mapped one.
    pub image: Option<String>,
    pub step_timeout: Duration,
    /// `AIB_REHEARSAL_ENVIRONMENT`.
    pub preference: Option<String>,
    /// `AIB_REHEARSAL_ROOTFS_DIR` (see [`environment::rootfs_cache_dir`]).
    pub rootfs_dir: std::path::PathBuf,
    /// `AIB_REHEARSAL_MIRROR`.
    pub mirror: Option<String>,
}

impl Settings {
    pub fn from_inputs(
        inputs: &TaskInputs,
        env: &Environment,
    ) -> Result<Settings, Vec<InputError>> {
        let mut errors = Vec::new();
        let before_build =
            inputs::boolean("rehearseBeforeBuild", &inputs.rehearse_before_build, false)
                .unwrap_or_else(|e| {
                    errors.push(e);
                    false
                });
        let image = inputs::value(&inputs.rehearsal_image).map(str::to_owned);
        if let Some(image) = &image
            && (image.chars().any(char::is_whitespace) || image.starts_with('-'))
        {
            errors.push(InputError::new(
                "rehearsalImage",
                format!(
                    "'{image}' is not a container image reference; expected e.g. `ubuntu:22.04`"
                ),
            ));
        }
        let step_timeout = match env.get("AIB_REHEARSAL_STEP_TIMEOUT_SECONDS") {
            Some(v) => match v.trim().parse::<u64>() {
                Ok(s) if s > 0 => Duration::from_secs(s),
                _ => {
                    errors.push(InputError::new(
                        "rehearseBeforeBuild",
                        format!("AIB_REHEARSAL_STEP_TIMEOUT_SECONDS is '{v}': expected a number of seconds, e.g. `600`"),
                    ));
                    DEFAULT_STEP_TIMEOUT
                }
            },
            None => DEFAULT_STEP_TIMEOUT,
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Settings {
            before_build,
            image,
            step_timeout,
            preference: env.get("AIB_REHEARSAL_ENVIRONMENT").map(str::to_owned),
            rootfs_dir: environment::rootfs_cache_dir(|name| env.get(name).map(str::to_owned)),
            mirror: env
                .get("AIB_REHEARSAL_MIRROR")
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
        })
    }
}

/// Whether knowing the release needs Azure (a gallery image version without `rehearsalImage`).
pub fn needs_azure(plan: &BuildPlan, settings: &Settings) -> bool {
    runner::not_rehearsed(plan).is_none()
        && matches!(
            image::resolve(&plan.source, settings.image.as_deref()),
            Ok(Resolution::GalleryDefinition(_))
        )
}

#[derive(Deserialize)]
struct GalleryImageDefinition {
    properties: GalleryImageProperties,
}

#[derive(Deserialize)]
struct GalleryImageProperties {
    identifier: GalleryImageIdentifier,
}

#[derive(Deserialize)]
struct GalleryImageIdentifier {
    publisher: String,
    offer: String,
    sku: String,
}

/// The release the rehearsal stands in for; reads the gallery image definition with `arm` when
/// the source is a gallery image version.
pub async fn target(
    plan: &BuildPlan,
    settings: &Settings,
    arm: Option<&ArmClient>,
) -> Result<Target> {
    match image::resolve(&plan.source, settings.image.as_deref())? {
        Resolution::Known(target) => Ok(target),
        Resolution::GalleryDefinition(definition) => {
            let arm = arm.ok_or_else(|| anyhow!("reading {definition} needs a sign-in"))?;
            let body: GalleryImageDefinition = arm
                .get(
                    "reading the gallery image definition (to know which release to rehearse on)",
                    &definition,
                    crate::build::gallery::GALLERY_API_VERSION,
                )
                .await?;
            let id = body.properties.identifier;
            image::from_marketplace(&id.publisher, &id.offer, &id.sku).map_err(|e| {
                anyhow!(
                    "{e} (the gallery image definition {definition} is identified as {}:{}:{})",
                    id.publisher,
                    id.offer,
                    id.sku
                )
            })
        }
    }
}

/// Rehearses `plan`: prints each step in its own group, uploads the report to the run summary,
/// and fails naming the failed step. `arm` is needed only when [`needs_azure`].
pub async fn rehearse(
    plan: &BuildPlan,
    settings: &Settings,
    arm: Option<&ArmClient>,
    http: reqwest::Client,
    context: &PipelineContext,
    console: &Arc<Console>,
) -> Result<Report> {
    console.section("Rehearsing the customization on the agent (nothing is written to Azure)");
    // Windows and source-only builds have nothing to rehearse: no image is looked for, so a
    // source no image maps to does not stop a build that would work.
    if let Some(why) = runner::not_rehearsed(plan) {
        let report = Report {
            target: "nothing".into(),
            not_rehearsed: Some(why),
            ..Default::default()
        };
        console.warning(report.headline());
        return Ok(report);
    }
    let target = target(plan, settings, arm).await?;
    let rehearsal = runner::Rehearsal {
        plan,
        target,
        context,
        console,
        http,
        step_timeout: settings.step_timeout,
        preference: settings.preference.clone(),
        rootfs_dir: settings.rootfs_dir.clone(),
        mirror: settings.mirror.clone(),
    };
    let report = runner::run(&rehearsal).await?;
    upload_summary(&report, &plan.template_name, context, console);
    match report.failure_message() {
        Some(message) => Err(anyhow!(message)),
        None => {
            match &report.not_rehearsed {
                Some(_) => console.warning(report.headline()),
                None => console.info(report.headline()),
            }
            Ok(report)
        }
    }
}

fn upload_summary(
    report: &Report,
    template_name: &str,
    context: &PipelineContext,
    console: &Arc<Console>,
) {
    let path =
        Path::new(&context.temp_directory).join(format!("aib-task-rehearsal-{template_name}.md"));
    let written = std::fs::write(&path, console.mask(&report.markdown()))
        .with_context(|| format!("could not write the rehearsal summary {}", path.display()));
    match written {
        Ok(()) if context.in_pipeline => console.upload_summary(&path),
        Ok(()) => console.debug(format!("rehearsal summary written to {}", path.display())),
        Err(e) => console.warning(format!("{e:#}")),
    }
}
