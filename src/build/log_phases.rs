//! The phases of a build, read from its `customization.log` as it streams: the build VM coming
//! up, each customizer, then capture and distribution. Packer marks each provisioner with
//! `(telemetry) Starting provisioner <type>` and `(telemetry) ending <type>` (Packer's
//! `packer/telemetry.go`; Microsoft's troubleshooting guide quotes these lines), and the log
//! names no customizer, so provisioners are matched, in order, with the template's customizers
//! of the same type; one that matches none (Image Builder's own deprovisioning step) is said to
//! be Image Builder's. Durations come from the log's own timestamps (`YYYY/MM/DD HH:MM:SS`)
//! when its lines carry them. Pure: lines in, events and a timeline out.

use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use crate::image_template::Customizer;

static STARTING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(telemetry\) Starting provisioner ([A-Za-z0-9_-]+)").unwrap());
/// What Packer's shell, PowerShell and file provisioners say as they start, for logs without
/// telemetry lines: `(provisioner type, marker)`.
const PROVISIONING_MARKERS: [(&str, &str); 3] = [
    ("shell", "Provisioning with shell script"),
    ("powershell", "Provisioning with Powershell..."),
    ("file", "Uploading "),
];

static ENDING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(telemetry\) ending ([A-Za-z0-9_-]+)").unwrap());
/// Packer's Azure builder once the provisioners are done (packer-plugin-azure's step messages).
const CAPTURE_MARKERS: [&str; 4] = [
    "Querying the machine's properties",
    "Powering off machine",
    "Generalizing machine",
    "Capturing image",
];

static STAMP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})\b").unwrap());

/// How a phase ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// The log stopped while it ran (cancelled, or the log was cut off).
    Unfinished,
}

/// One phase of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    pub title: String,
    pub took: Option<Duration>,
    pub outcome: Outcome,
}

/// What a line means for the log's grouping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A phase begins (its title) before this line.
    Begin(String),
    /// The phase ends after this line.
    End(Phase),
}

/// A customizer as the log shows it: its Packer provisioner type and its title.
fn expected(customizer: &Customizer) -> (&'static str, String) {
    let (kind, name, what) = match customizer {
        Customizer::Shell { name, .. } => ("shell", name, "Shell"),
        Customizer::PowerShell { name, .. } => ("powershell", name, "PowerShell"),
        Customizer::File { name, .. } => ("file", name, "File"),
        Customizer::WindowsRestart { name, .. } => ("windows-restart", name, "Windows restart"),
        Customizer::WindowsUpdate { name, .. } => ("windows-update", name, "Windows Update"),
    };
    let title = if name.is_empty() {
        format!("Customizer: {what}")
    } else {
        format!("Customizer '{name}' ({what})")
    };
    (kind, title)
}

/// Seconds since the epoch of a line's `YYYY/MM/DD HH:MM:SS` stamp.
fn stamp(line: &str) -> Option<i64> {
    let c = STAMP.captures(line)?;
    let n = |i: usize| c[i].parse::<i64>().ok();
    let date = time::Date::from_calendar_date(
        n(1)? as i32,
        time::Month::try_from(n(2)? as u8).ok()?,
        n(3)? as u8,
    )
    .ok()?;
    let t = time::Time::from_hms(n(4)? as u8, n(5)? as u8, n(6)? as u8).ok()?;
    Some(date.with_time(t).assume_utc().unix_timestamp())
}

/// Reads the log line by line.
pub struct Phases {
    /// The template's customizers still to be seen, in order.
    pending: Vec<(&'static str, String)>,
    current: Option<(String, Option<i64>)>,
    last_stamp: Option<i64>,
    done: Vec<Phase>,
    failed: bool,
    /// The last line was a provisioner's `ending`.
    ending: bool,
    /// The log has telemetry lines, which then alone mark the provisioners.
    telemetry: bool,
}

impl Phases {
    pub fn new(customizers: &[Customizer]) -> Phases {
        Phases {
            pending: customizers.iter().map(expected).collect(),
            current: None,
            last_stamp: None,
            done: Vec::new(),
            failed: false,
            ending: false,
            telemetry: false,
        }
    }

    fn end(&mut self, outcome: Outcome) -> Option<Event> {
        let (title, began) = self.current.take()?;
        let took = match (began, self.last_stamp) {
            (Some(a), Some(b)) if b >= a => Some(Duration::from_secs((b - a) as u64)),
            _ => None,
        };
        let phase = Phase {
            title,
            took,
            outcome,
        };
        self.done.push(phase.clone());
        Some(Event::End(phase))
    }

    fn begin(&mut self, title: String) -> Event {
        self.current = Some((title.clone(), self.last_stamp));
        Event::Begin(title)
    }

    /// The events `line` brings, in order.
    pub fn line(&mut self, line: &str) -> Vec<Event> {
        // The phase a provisioner's `ending` line closed ends after that line, at its time.
        if std::mem::take(&mut self.ending) {
            let mut events: Vec<Event> = self.end(Outcome::Succeeded).into_iter().collect();
            events.extend(self.line(line));
            return events;
        }
        if let Some(s) = stamp(line) {
            self.last_stamp = Some(s);
        }
        let mut events = Vec::new();
        if self.current.is_none() && self.done.is_empty() {
            events.push(self.begin("Build VM and Packer start-up".to_owned()));
        }
        let started = match STARTING.captures(line) {
            Some(c) => {
                self.telemetry = true;
                Some(c[1].to_ascii_lowercase())
            }
            // Without telemetry lines, the provisioners' own first words mark the start.
            None if !self.telemetry => PROVISIONING_MARKERS
                .iter()
                .find(|(kind, marker)| {
                    line.contains(marker) && (*kind != "file" || line.contains(" => "))
                })
                .map(|(kind, _)| (*kind).to_owned()),
            None => None,
        };
        if let Some(kind) = started {
            events.extend(self.end(Outcome::Succeeded));
            let title = match self.pending.iter().position(|(k, _)| *k == kind) {
                Some(i) => self.pending.remove(i).1,
                None => format!("Image Builder's own step ({kind})"),
            };
            events.push(self.begin(title));
        } else if ENDING.is_match(line) {
            // The provisioner's last line; what follows until the next phase stands alone.
            self.ending = true;
        } else if self.current.is_none() && CAPTURE_MARKERS.iter().any(|m| line.contains(m)) {
            events.push(self.begin("Capture and distribution".to_owned()));
        } else if line.contains("Some builds didn't complete successfully")
            || line.contains("errored after")
            || line.contains("Provisioning step had errors")
        {
            self.failed = true;
        }
        events
    }

    /// The log has ended: the open phase ends as the build did.
    pub fn finish(&mut self) -> Option<Event> {
        if std::mem::take(&mut self.ending) {
            return self.end(Outcome::Succeeded);
        }
        let outcome = if self.failed {
            Outcome::Failed
        } else {
            Outcome::Unfinished
        };
        // "Capture and distribution" after the last provisioner ended well is a success unless
        // the build failed.
        let outcome = match &self.current {
            Some((title, _)) if title == "Capture and distribution" && !self.failed => {
                Outcome::Succeeded
            }
            _ => outcome,
        };
        self.end(outcome)
    }

    /// Every phase that has ended.
    pub fn timeline(&self) -> &[Phase] {
        &self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(name: &str) -> Customizer {
        Customizer::Shell {
            name: name.into(),
            inline: vec!["true".into()],
            script_uri: None,
            sha256_checksum: None,
        }
    }

    const LOG: &str = "\
PACKER ERR 2026/11/27 05:00:00 [INFO] Packer version: 1.10.0
PACKER OUT ==> azure-arm: Creating resource group ...
PACKER ERR 2026/11/27 05:03:00 [INFO] (telemetry) Starting provisioner shell
PACKER OUT ==> azure-arm: Provisioning with shell script: /tmp/packer-shell123
PACKER OUT     azure-arm: aib-task: downloading the build artifacts (1200 bytes)
PACKER ERR 2026/11/27 05:03:20 [INFO] (telemetry) ending shell
PACKER ERR 2026/11/27 05:03:21 [INFO] (telemetry) Starting provisioner shell
PACKER OUT     azure-arm: installing webapp
PACKER ERR 2026/11/27 05:05:21 [INFO] (telemetry) ending shell
PACKER ERR 2026/11/27 05:05:22 [INFO] (telemetry) Starting provisioner shell
PACKER OUT ==> azure-arm: Provisioning with shell script: /tmp/DeprovisioningScript.sh
PACKER ERR 2026/11/27 05:05:30 [INFO] (telemetry) ending shell
PACKER OUT ==> azure-arm: Capturing image ...
PACKER ERR 2026/11/27 05:08:30 [INFO] (telemetry) Finalizing.
";

    #[test]
    fn each_customizer_becomes_a_phase_with_its_time() {
        let mut phases = Phases::new(&[shell("download build artifacts"), shell("webapp")]);
        let mut begun = Vec::new();
        for line in LOG.lines() {
            for event in phases.line(line) {
                if let Event::Begin(title) = event {
                    begun.push(title);
                }
            }
        }
        phases.finish();
        assert_eq!(
            begun,
            [
                "Build VM and Packer start-up",
                "Customizer 'download build artifacts' (Shell)",
                "Customizer 'webapp' (Shell)",
                "Image Builder's own step (shell)",
                "Capture and distribution",
            ]
        );
        let timeline: Vec<(String, Option<u64>, Outcome)> = phases
            .timeline()
            .iter()
            .map(|p| (p.title.clone(), p.took.map(|d| d.as_secs()), p.outcome))
            .collect();
        assert_eq!(timeline.len(), 5, "{timeline:?}");
        assert!(timeline.contains(&(
            "Customizer 'download build artifacts' (Shell)".into(),
            Some(20),
            Outcome::Succeeded
        )));
        assert!(timeline.contains(&(
            "Customizer 'webapp' (Shell)".into(),
            Some(120),
            Outcome::Succeeded
        )));
        assert_eq!(
            phases.timeline().last().unwrap(),
            &Phase {
                title: "Capture and distribution".into(),
                took: Some(Duration::from_secs(180)),
                outcome: Outcome::Succeeded
            }
        );
        // The capture phase began at the capture line (no stamp of its own: the last one,
        // 05:05:30) and ran to Finalizing (05:08:30).
        assert_eq!(phases.timeline()[0].title, "Build VM and Packer start-up");
    }

    #[test]
    fn logs_without_telemetry_lines_are_grouped_by_the_provisioners_own_words() {
        let mut phases = Phases::new(&[shell("webapp")]);
        let mut begun = Vec::new();
        for line in [
            "PACKER OUT ==> azure-arm: Creating resource group ...",
            "PACKER OUT ==> azure-arm: Provisioning with shell script: /tmp/packer-shell1",
            "PACKER OUT     azure-arm: installing webapp",
            "PACKER OUT ==> azure-arm: Provisioning with shell script: /tmp/DeprovisioningScript.sh",
            "PACKER OUT ==> azure-arm: Capturing image ...",
        ] {
            for event in phases.line(line) {
                if let Event::Begin(title) = event {
                    begun.push(title);
                }
            }
        }
        assert_eq!(
            begun,
            [
                "Build VM and Packer start-up",
                "Customizer 'webapp' (Shell)",
                "Image Builder's own step (shell)",
            ]
        );
    }

    #[test]
    fn a_failing_customizer_is_the_failed_phase() {
        let mut phases = Phases::new(&[shell("webapp")]);
        for line in [
            "PACKER ERR 2026/11/27 05:03:21 [INFO] (telemetry) Starting provisioner shell",
            "PACKER OUT     azure-arm: exit 1",
            "PACKER OUT ==> Some builds didn't complete successfully and had errors:",
            "PACKER ERR 2026/11/27 05:04:21 [INFO] (telemetry) Finalizing.",
        ] {
            phases.line(line);
        }
        assert_eq!(
            phases.finish(),
            Some(Event::End(Phase {
                title: "Customizer 'webapp' (Shell)".into(),
                took: Some(Duration::from_secs(60)),
                outcome: Outcome::Failed
            }))
        );
    }
}
