//! Preflight: the misconfigurations that would fail an image build 10 to 40 minutes in, found in
//! seconds by reading Azure before anything is written. Each check lives in its own module and
//! turns what ARM answers into [`Finding`]s (ok, warning, error, with the fix); all run at once.
//! A read the identity may not make (403) is a warning naming the permission, never an error:
//! preflight must not block a build that would work.
//!
//! `aib-task preflight` prints the report (or `--json`); `run` calls [`run`] after the inputs
//! are read and stops before any write when it finds an error.

mod gallery;
mod groups;
mod identity;
mod network;
mod providers;
pub mod read;
mod source;
mod storage;
mod vm_size;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::agent::Console;
use crate::arm::ArmClient;
use crate::plan::BuildPlan;
use read::Reader;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Could not be checked, or likely to hurt: shown, the build goes on.
    Warning,
    /// The build would fail: it does not start.
    Error,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The check, e.g. `providers`, `source`, `vmSize`.
    pub check: &'static str,
    pub status: Status,
    /// What was found.
    pub message: String,
    /// What to do about it: a command or a setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }

    pub fn warning(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Warning,
            message: message.into(),
            fix: None,
        }
    }

    pub fn error(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            status: Status::Error,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn with_fix(mut self, fix: impl Into<String>) -> Finding {
        self.fix = Some(fix.into());
        self
    }

    /// `message Fix: fix`, as every rendering of the report shows it.
    pub fn text(&self) -> String {
        match &self.fix {
            Some(fix) => format!("{} Fix: {fix}", self.message),
            None => self.message.clone(),
        }
    }
}

/// Everything preflight found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// `passed`, `passed with warnings` or `failed`.
    pub verdict: &'static str,
    /// How long the checks took, in milliseconds.
    pub elapsed_ms: u128,
}

impl Report {
    fn new(mut findings: Vec<Finding>, elapsed: Duration) -> Report {
        // Errors first, then warnings, each in check order: what stops the build on top.
        findings.sort_by_key(|f| std::cmp::Reverse(f.status));
        let verdict = match findings.iter().map(|f| f.status).max() {
            Some(Status::Error) => "failed",
            Some(Status::Warning) => "passed with warnings",
            _ => "passed",
        };
        Report {
            findings,
            verdict,
            elapsed_ms: elapsed.as_millis(),
        }
    }

    pub fn errors(&self) -> Vec<&Finding> {
        self.findings
            .iter()
            .filter(|f| f.status == Status::Error)
            .collect()
    }

    /// One line per finding, with its fix.
    pub fn lines(&self) -> Vec<(Status, String)> {
        self.findings
            .iter()
            .map(|f| {
                let tag = match f.status {
                    Status::Ok => "ok",
                    Status::Warning => "warning",
                    Status::Error => "error",
                };
                (f.status, format!("[{tag}] {}: {}", f.check, f.text()))
            })
            .collect()
    }

    /// Prints the report in a group, warnings and errors as such.
    pub fn print(&self, console: &std::sync::Arc<Console>) {
        let _group = console.group("Preflight");
        for (status, line) in self.lines() {
            match status {
                Status::Ok => console.info(line),
                Status::Warning => console.warning(line),
                Status::Error => console.info(line),
            }
        }
        console.info(format!(
            "preflight {} in {} ms ({} checks)",
            self.verdict,
            self.elapsed_ms,
            self.findings.len()
        ));
    }

    /// The run summary's section.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "#### Preflight: {}\n\n| | Check | Finding |\n|---|---|---|\n",
            self.verdict
        );
        for f in &self.findings {
            let icon = match f.status {
                Status::Ok => "✅",
                Status::Warning => "⚠️",
                Status::Error => "❌",
            };
            md.push_str(&format!(
                "| {icon} | {} | {} |\n",
                f.check,
                f.text().replace('|', "\\|").replace(['\r', '\n'], " ")
            ));
        }
        md
    }

    /// The error that stops a run: every error with its fix.
    pub fn failure(&self) -> Option<anyhow::Error> {
        let errors = self.errors();
        if errors.is_empty() {
            return None;
        }
        let list: Vec<String> = errors
            .iter()
            .map(|f| format!("{}: {}", f.check, f.text()))
            .collect();
        Some(anyhow::anyhow!(
            "preflight found {} problem{} that would fail the image build; nothing was written to Azure:\n{}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            list.join("\n")
        ))
    }
}

/// Runs every check concurrently against `plan`; reads only.
pub async fn run(arm: &ArmClient, plan: &BuildPlan) -> Report {
    let started = Instant::now();
    let reader = Reader::new(arm, plan);
    let (p, g, i, s, gal, n, st, v) = tokio::join!(
        providers::check(&reader),
        groups::check(&reader),
        identity::check(&reader),
        source::check(&reader),
        gallery::check(&reader),
        network::check(&reader),
        storage::check(&reader),
        vm_size::check(&reader),
    );
    let findings = [p, g, i, s, gal, n, st, v].into_iter().flatten().collect();
    Report::new(findings, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_and_the_order_follow_the_worst_finding() {
        let r = Report::new(
            vec![
                Finding::ok("providers", "registered"),
                Finding::warning("identity", "cannot read role assignments"),
                Finding::error("vmSize", "not offered", "set vmSize"),
            ],
            Duration::from_millis(12),
        );
        assert_eq!(r.verdict, "failed");
        assert_eq!(r.findings[0].check, "vmSize");
        assert_eq!(r.findings[2].check, "providers");
        let failure = r.failure().unwrap().to_string();
        assert!(failure.contains("1 problem that would fail"), "{failure}");
        assert!(
            failure.contains("vmSize: not offered Fix: set vmSize"),
            "{failure}"
        );
        assert!(
            r.markdown()
                .contains("| ❌ | vmSize | not offered Fix: set vmSize |")
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["findings"][0]["status"], "error");
        assert_eq!(json["verdict"], "failed");

        let r = Report::new(vec![Finding::warning("x", "y")], Duration::ZERO);
        assert_eq!(r.verdict, "passed with warnings");
        assert!(r.failure().is_none());
        assert_eq!(Report::new(vec![], Duration::ZERO).verdict, "passed");
    }
}
