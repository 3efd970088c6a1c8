//! Following a running build for the user: each change of Image Builder's run state printed
//! with the elapsed time, a progress percentage for the agent's UI, a heartbeat during long quiet
//! phases, and the time spent in each phase for the summary. Pure: the caller supplies the
//! clock readings.

use std::time::Duration;

/// How far along a build is in each sub-state, for `task.setprogress` (rough shares of a typical
/// build's time: customizing and distributing dominate).
pub fn percent(run_sub_state: &str) -> u8 {
    match run_sub_state.to_ascii_lowercase().as_str() {
        "queued" => 5,
        "building" => 15,
        "customizing" => 30,
        "optimizing" => 65,
        "validating" => 70,
        "distributing" => 80,
        "succeeded" | "partiallysucceeded" | "failed" | "canceled" => 100,
        _ => 10,
    }
}

/// `1h 02m 05s`, `3m 07s`, `12s`.
pub fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s / 60) % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec:02}s"),
        (h, m, sec) => format!("{h}h {m:02}m {sec:02}s"),
    }
}

/// What the watcher prints after one observation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The build entered a new phase.
    Phase {
        name: String,
        percent: u8,
        line: String,
    },
    /// Still in the same phase; a reminder that the task is alive.
    Heartbeat { line: String },
}

/// Remembers the phases seen.
#[derive(Debug)]
pub struct Watcher {
    heartbeat: Duration,
    current: Option<(String, Duration)>,
    last_line_at: Duration,
    /// `(phase, time spent)` in order, the current one last once finished.
    pub phases: Vec<(String, Duration)>,
}

impl Watcher {
    pub fn new(heartbeat: Duration) -> Watcher {
        Watcher {
            heartbeat,
            current: None,
            last_line_at: Duration::ZERO,
            phases: Vec::new(),
        }
    }

    /// Reports the run's state `at` (time since the build started).
    pub fn observe(
        &mut self,
        run_state: &str,
        run_sub_state: Option<&str>,
        at: Duration,
    ) -> Option<Event> {
        let phase = run_sub_state
            .filter(|s| !s.is_empty() && run_state.eq_ignore_ascii_case("running"))
            .unwrap_or(run_state)
            .to_owned();
        match &self.current {
            Some((name, _)) if *name == phase => {
                if at.saturating_sub(self.last_line_at) >= self.heartbeat {
                    self.last_line_at = at;
                    Some(Event::Heartbeat {
                        line: format!(
                            "still {} after {} ({} in all)",
                            phase.to_ascii_lowercase(),
                            elapsed(at - self.current.as_ref().map(|c| c.1).unwrap_or_default()),
                            elapsed(at)
                        ),
                    })
                } else {
                    None
                }
            }
            _ => {
                self.finish(at);
                self.current = Some((phase.clone(), at));
                self.last_line_at = at;
                Some(Event::Phase {
                    percent: percent(&phase),
                    line: format!("[{}] {phase}", elapsed(at)),
                    name: phase,
                })
            }
        }
    }

    /// Closes the current phase at `at`.
    pub fn finish(&mut self, at: Duration) {
        if let Some((name, since)) = self.current.take() {
            self.phases.push((name, at.saturating_sub(since)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(elapsed(Duration::from_secs(12)), "12s");
        assert_eq!(elapsed(Duration::from_secs(187)), "3m 07s");
        assert_eq!(elapsed(Duration::from_secs(3725)), "1h 02m 05s");
    }

    #[test]
    fn phases_heartbeats_and_durations() {
        let mut w = Watcher::new(Duration::from_secs(300));
        let s = Duration::from_secs;
        assert_eq!(
            w.observe("Running", Some("Queued"), s(0)),
            Some(Event::Phase {
                name: "Queued".into(),
                percent: 5,
                line: "[0s] Queued".into()
            })
        );
        assert_eq!(w.observe("Running", Some("Queued"), s(30)), None);
        assert!(matches!(
            w.observe("Running", Some("Building"), s(60)),
            Some(Event::Phase { percent: 15, .. })
        ));
        assert!(matches!(
            w.observe("Running", Some("Customizing"), s(120)),
            Some(Event::Phase { .. })
        ));
        assert_eq!(w.observe("Running", Some("Customizing"), s(400)), None);
        assert_eq!(
            w.observe("Running", Some("Customizing"), s(420)),
            Some(Event::Heartbeat {
                line: "still customizing after 5m 00s (7m 00s in all)".into()
            })
        );
        assert!(
            matches!(w.observe("Succeeded", Some("Distributing"), s(900)), Some(Event::Phase { ref name, .. }) if name == "Succeeded")
        );
        w.finish(s(900));
        let phases: Vec<(&str, u64)> = w
            .phases
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_secs()))
            .collect();
        assert_eq!(
            phases,
            [
                ("Queued", 60),
                ("Building", 60),
                ("Customizing", 780),
                ("Succeeded", 0)
            ]
        );
    }
}
