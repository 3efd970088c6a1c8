//! The run summary the agent shows on the pipeline run's page (`task.uploadsummary`): what was
//! built from what, where it went, and how long each phase took.

use std::fmt::Write as _;
use std::time::Duration;

use super::progress::elapsed;

/// The facts of one build.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub succeeded: bool,
    pub template_name: String,
    pub resource_group: String,
    pub location: String,
    /// e.g. `Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:22.04.202411010`.
    pub source: String,
    pub distribution: String,
    pub image_uri: Option<String>,
    pub artifact: Option<String>,
    /// `(phase, time)` in order: staging, template, each build sub-state, outputs, cleanup.
    pub phases: Vec<(String, Duration)>,
    pub total: Duration,
    pub log_url: Option<String>,
    pub error: Option<String>,
    /// What the user must still do (e.g. copy a VHD out of a kept template), shown verbatim.
    pub notes: Vec<String>,
    /// The build log's phases: `(title, time, outcome)`, each customizer among them.
    pub timeline: Vec<(String, Option<Duration>, String)>,
    /// The preflight report's section (markdown), when preflight ran.
    pub preflight: Option<String>,
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\r', '\n'], " ")
}

impl Summary {
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let outcome = if self.succeeded {
            "succeeded"
        } else {
            "failed"
        };
        let _ = writeln!(md, "### Azure VM Image Builder: build {outcome}\n");
        let _ = writeln!(md, "| | |\n|---|---|");
        let mut row = |k: &str, v: &str| {
            let _ = writeln!(md, "| {k} | {} |", cell(v));
        };
        row(
            "Template",
            &format!(
                "`{}` in `{}` ({})",
                self.template_name, self.resource_group, self.location
            ),
        );
        row("Source", &self.source);
        row("Distribution", &self.distribution);
        if let Some(uri) = &self.image_uri {
            row("Image", &format!("`{uri}`"));
        }
        if let Some(artifact) = &self.artifact {
            row("Artifact", artifact);
        }
        row("Duration", &elapsed(self.total));
        if let Some(log) = &self.log_url {
            row("Build log", log);
        }
        if let Some(error) = &self.error {
            row("Error", error);
        }
        for note in &self.notes {
            let _ = writeln!(md, "\n**Action needed**\n\n```text\n{note}\n```");
        }
        if !self.timeline.is_empty() {
            let _ = writeln!(md, "\n| Build log phase | Time | Outcome |\n|---|---|---|");
            for (title, took, outcome) in &self.timeline {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} |",
                    cell(title),
                    took.map(elapsed).unwrap_or_else(|| "–".into()),
                    cell(outcome)
                );
            }
        }
        if !self.phases.is_empty() {
            let _ = writeln!(md, "\n| Phase | Time |\n|---|---|");
            for (phase, d) in &self.phases {
                let _ = writeln!(md, "| {} | {} |", cell(phase), elapsed(*d));
            }
        }
        if let Some(preflight) = &self.preflight {
            let _ = writeln!(md, "\n{preflight}");
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_table_with_phases() {
        let s = Summary {
            succeeded: true,
            template_name: "t_42_1".into(),
            resource_group: "rg".into(),
            location: "westeurope".into(),
            source: "Canonical:jammy:22_04-lts:22.04.1".into(),
            distribution: "managed image".into(),
            image_uri: Some(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/web".into(),
            ),
            artifact: Some("webapp: 3 files | 1.0 MiB".into()),
            phases: vec![
                ("Staging".into(), Duration::from_secs(3)),
                ("Customizing".into(), Duration::from_secs(600)),
            ],
            total: Duration::from_secs(903),
            ..Default::default()
        };
        let md = s.markdown();
        assert!(md.starts_with("### Azure VM Image Builder: build succeeded"));
        assert!(md.contains("| Template | `t_42_1` in `rg` (westeurope) |"));
        assert!(md.contains("| Artifact | webapp: 3 files \\| 1.0 MiB |"));
        assert!(md.contains("| Customizing | 10m 00s |"));
        assert!(md.contains("| Duration | 15m 03s |"));
    }
}
