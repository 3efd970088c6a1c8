//! What a rehearsal found: each step's status, duration and last lines, the failure message
//! that names the failing step, the Markdown for the run summary, and the plain statement of what
//! a rehearsal cannot show. Pure.

use std::time::Duration;

/// What a rehearsal cannot show, said before it starts and in the summary.
pub const LIMITS: &[&str] = &[
    "no systemd: services are not started or enabled for real (systemctl answers from no running init)",
    "no cloud-init, no waagent, no reboot: steps that need a restart (or WindowsRestart) are not rehearsed",
    "no Windows: PowerShell, WindowsRestart and WindowsUpdate steps are skipped",
    "no VM-size effects: CPU, memory and disk are the agent's, not the build VM's",
    "no Azure: the build VM's identities, the isolated network (vnetSubnetId) and the marketplace image's exact package set are not reproduced; the environment only resembles the base image",
];

/// How many of a failed step's last lines the error shows.
pub const TAIL_LINES: usize = 25;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed {
        exit_code: Option<i32>,
    },
    TimedOut {
        limit: Duration,
    },
    /// The step could not be prepared (a file that did not match its checksum, …).
    Broken(String),
    Skipped(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    pub name: String,
    pub kind: &'static str,
    pub status: Status,
    pub duration: Duration,
    /// The last [`TAIL_LINES`] lines of its output (masked).
    pub tail: Vec<String>,
}

impl StepRecord {
    pub fn failed(&self) -> bool {
        matches!(
            self.status,
            Status::Failed { .. } | Status::TimedOut { .. } | Status::Broken(_)
        )
    }

    /// `passed`, `failed with exit code 127`, `timed out after 900 s`, `skipped: …`.
    pub fn outcome(&self) -> String {
        match &self.status {
            Status::Passed => "passed".into(),
            Status::Failed {
                exit_code: Some(code),
            } => format!("failed with exit code {code}"),
            Status::Failed { exit_code: None } => "failed: killed by a signal".into(),
            Status::TimedOut { limit } => {
                format!("timed out after {} s and was stopped", limit.as_secs())
            }
            Status::Broken(why) => format!("failed: {why}"),
            Status::Skipped(note) => format!("skipped: {note}"),
        }
    }
}

/// The whole rehearsal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// What the environment stands in for: `Debian 12 (bookworm)`.
    pub target: String,
    /// `chroot …` or `container … (docker)`.
    pub environment: String,
    pub steps: Vec<StepRecord>,
    pub total: Duration,
    /// Why nothing was rehearsed (Windows, source validation only), if so.
    pub not_rehearsed: Option<String>,
}

impl Report {
    pub fn failed_step(&self) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.failed())
    }

    pub fn passed(&self) -> bool {
        self.failed_step().is_none()
    }

    /// The error that stops the task: the failing step named, with its last lines.
    pub fn failure_message(&self) -> Option<String> {
        let step = self.failed_step()?;
        let mut message = format!(
            "the rehearsal failed at step '{}' ({} step {} of {}), which {} after {:.1} s; nothing was written to Azure",
            step.name,
            step.kind,
            self.steps.iter().position(|s| s == step).unwrap_or(0) + 1,
            self.steps.len(),
            step.outcome(),
            step.duration.as_secs_f64()
        );
        if !step.tail.is_empty() {
            message.push_str(&format!(
                ". Its last {} line{}:\n{}",
                step.tail.len(),
                if step.tail.len() == 1 { "" } else { "s" },
                step.tail.join("\n")
            ));
        }
        Some(message)
    }

    /// One line for the log and the summary: `the rehearsal passed: 4 steps in 3.2 s …`.
    pub fn headline(&self) -> String {
        if let Some(why) = &self.not_rehearsed {
            return format!("nothing was rehearsed: {why}");
        }
        let ran = self
            .steps
            .iter()
            .filter(|s| !matches!(s.status, Status::Skipped(_)))
            .count();
        let skipped = self.steps.len() - ran;
        let verdict = if self.passed() { "passed" } else { "failed" };
        format!(
            "the rehearsal {verdict}: {ran} step{} run in {:.1} s{} in {} standing in for {}",
            if ran == 1 { "" } else { "s" },
            self.total.as_secs_f64(),
            if skipped > 0 {
                format!(" ({skipped} skipped)")
            } else {
                String::new()
            },
            self.environment,
            self.target
        )
    }

    /// The run summary's section.
    pub fn markdown(&self) -> String {
        let mut md = String::from("### Rehearsal of the customization\n\n");
        md.push_str(&format!("**{}**\n\n", capitalise(&self.headline())));
        if !self.steps.is_empty() {
            md.push_str("| # | step | type | result | duration |\n|---|---|---|---|---|\n");
            for (i, step) in self.steps.iter().enumerate() {
                md.push_str(&format!(
                    "| {} | `{}` | {} | {} | {:.1} s |\n",
                    i + 1,
                    step.name.replace('|', "\\|"),
                    step.kind,
                    step.outcome().replace('|', "\\|"),
                    step.duration.as_secs_f64()
                ));
            }
            md.push('\n');
        }
        if let Some(step) = self.failed_step()
            && !step.tail.is_empty()
        {
            md.push_str(&format!(
                "Last lines of `{}`:\n\n```\n{}\n```\n\n",
                step.name,
                step.tail.join("\n").replace("```", "ʼʼʼ")
            ));
        }
        md.push_str("A rehearsal cannot show:\n\n");
        for limit in LIMITS {
            md.push_str(&format!("- {limit}\n"));
        }
        md
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, status: Status) -> StepRecord {
        StepRecord {
            name: name.into(),
            kind: "Shell",
            status,
            duration: Duration::from_millis(1500),
            tail: vec!["line 1".into(), "sh: 2: instal: not found".into()],
        }
    }

    fn report(steps: Vec<StepRecord>) -> Report {
        Report {
            target: "Debian 12 (bookworm)".into(),
            environment: "chroot /tmp/x".into(),
            steps,
            total: Duration::from_secs(3),
            not_rehearsed: None,
        }
    }

    #[test]
    fn a_failure_names_the_step_and_shows_its_last_lines() {
        let r = report(vec![
            record("aib-task-extract-artifacts", Status::Passed),
            record(
                "aib-task-inline-script",
                Status::Failed {
                    exit_code: Some(127),
                },
            ),
        ]);
        assert!(!r.passed());
        let message = r.failure_message().unwrap();
        assert!(
            message.contains("step 'aib-task-inline-script' (Shell step 2 of 2)"),
            "{message}"
        );
        assert!(message.contains("exit code 127"), "{message}");
        assert!(message.contains("instal: not found"), "{message}");
        assert!(message.contains("nothing was written to Azure"));
        assert!(r.headline().starts_with("the rehearsal failed"));
        assert!(r.markdown().contains("instal: not found"));
    }

    #[test]
    fn a_pass_says_so_with_skips_and_limits() {
        let r = report(vec![
            record("extract", Status::Passed),
            record("win", Status::Skipped("Windows".into())),
        ]);
        assert!(r.passed());
        assert!(r.failure_message().is_none());
        assert_eq!(
            r.headline(),
            "the rehearsal passed: 1 step run in 3.0 s (1 skipped) in chroot /tmp/x standing in for Debian 12 (bookworm)"
        );
        let md = r.markdown();
        assert!(md.contains("**The rehearsal passed"), "{md}");
        assert!(
            md.contains("| 2 | `win` | Shell | skipped: Windows | 1.5 s |"),
            "{md}"
        );
        assert!(md.contains("no systemd"));
        assert!(md.contains("no Windows"));
    }

    #[test]
    fn timeouts_and_broken_steps_fail() {
        let t = record(
            "slow",
            Status::TimedOut {
                limit: Duration::from_secs(900),
            },
        );
        assert!(t.failed());
        assert_eq!(t.outcome(), "timed out after 900 s and was stopped");
        assert!(record("f", Status::Broken("checksum".into())).failed());
    }
}
