//! The task's one way to speak: every line the task prints goes through [`Console`], which masks
//! every secret announced so far, emits the logging commands, and hides debug lines unless the
//! pipeline runs with `System.Debug`.
//!
//! Masking here is defence in depth: the agent masks what `task.setsecret` announced, but only in
//! the job log it renders, and only after the announcement arrived. A terminal run has no agent.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use super::command::{Format, IssueType, LoggingCommand, TaskResult};

/// Replacement for masked values, the same as the agent's.
pub const MASK: &str = "***";

/// Where output goes; shared by reference across the task.
pub struct Console {
    inner: Mutex<Inner>,
    debug: bool,
}

struct Inner {
    out: Box<dyn Write + Send>,
    /// Every form a secret may be printed in, longest first so a secret containing another is
    /// masked whole.
    masks: Vec<String>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("debug", &self.debug)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// Output to the process's standard output.
    pub fn stdout(debug: bool) -> Arc<Console> {
        Console::with_writer(Box::new(io::stdout()), debug)
    }

    /// Output to any writer; tests capture it in memory.
    pub fn with_writer(out: Box<dyn Write + Send>, debug: bool) -> Arc<Console> {
        Arc::new(Console {
            inner: Mutex::new(Inner {
                out,
                masks: Vec::new(),
            }),
            debug,
        })
    }

    pub fn debug_enabled(&self) -> bool {
        self.debug
    }

    /// Announces a secret to the agent and masks it in everything printed from now on.
    ///
    /// The agent refuses a secret containing a line break, so a multi-line secret (a PEM key) is
    /// announced line by line; its armour lines are not secret and would only mask noise.
    pub fn set_secret(&self, secret: &str) {
        let mut inner = self.lock();
        for part in secret_parts(secret) {
            let mut forms = vec![part.to_owned()];
            let encoded: String = url::form_urlencoded::byte_serialize(part.as_bytes()).collect();
            if encoded != part {
                forms.push(encoded);
            }
            // Announce each form once; the line itself is consumed by the agent, never shown.
            for form in forms {
                if inner.masks.contains(&form) {
                    continue;
                }
                let line = LoggingCommand::set_secret(&form).render();
                let _ = writeln!(inner.out, "{line}");
                inner.masks.push(form);
            }
        }
        inner.masks.sort_by_key(|m| std::cmp::Reverse(m.len()));
        let _ = inner.out.flush();
    }

    /// Masks every known secret in `text`.
    pub fn mask(&self, text: &str) -> String {
        mask_with(&self.lock().masks, text)
    }

    /// A plain log line (or several).
    pub fn info(&self, text: impl AsRef<str>) {
        self.write_lines("", text.as_ref());
    }

    /// A `##[debug]` line, shown only when the pipeline runs with `System.Debug` true.
    pub fn debug(&self, text: impl AsRef<str>) {
        if self.debug {
            self.write_lines(Format::Debug.prefix(), text.as_ref());
        }
    }

    /// A warning the run's summary lists (`task.logissue type=warning`).
    pub fn warning(&self, text: impl AsRef<str>) {
        self.command(LoggingCommand::log_issue(IssueType::Warning, text.as_ref()));
    }

    /// An error the run's summary lists (`task.logissue type=error`). It does not by itself fail
    /// the step; [`Console::complete`] and the exit code do.
    pub fn error(&self, text: impl AsRef<str>) {
        self.command(LoggingCommand::log_issue(IssueType::Error, text.as_ref()));
    }

    pub fn section(&self, title: impl AsRef<str>) {
        self.write_lines(Format::Section.prefix(), title.as_ref());
    }

    /// Opens a collapsible group, closed when the guard drops.
    pub fn group(self: &Arc<Self>, title: impl AsRef<str>) -> Group {
        self.write_lines(Format::Group.prefix(), title.as_ref());
        Group {
            console: Arc::clone(self),
        }
    }

    /// Sets a pipeline variable; `is_output` lets later jobs and stages read it.
    pub fn set_variable(&self, name: &str, value: &str, is_output: bool) {
        self.command(LoggingCommand::set_variable(name, value, false, is_output));
    }

    pub fn set_progress(&self, percent: u8, operation: &str) {
        self.command(LoggingCommand::set_progress(percent, operation));
    }

    pub fn upload_summary(&self, path: &std::path::Path) {
        self.command(LoggingCommand::upload_summary(&path.display().to_string()));
    }

    pub fn upload_file(&self, path: &std::path::Path) {
        self.command(LoggingCommand::upload_file(&path.display().to_string()));
    }

    pub fn complete(&self, result: TaskResult, message: &str) {
        self.command(LoggingCommand::complete(result, message));
    }

    /// Prints any logging command, its values masked.
    pub fn command(&self, mut command: LoggingCommand) {
        let mut inner = self.lock();
        for (_, value) in &mut command.properties {
            *value = mask_with(&inner.masks, value);
        }
        command.message = mask_with(&inner.masks, &command.message);
        let _ = writeln!(inner.out, "{}", command.render());
        let _ = inner.out.flush();
    }

    fn write_lines(&self, prefix: &str, text: &str) {
        let mut inner = self.lock();
        let masked = mask_with(&inner.masks, text);
        // Each line keeps the prefix, or a debug message's later lines would show unconditionally.
        for line in masked.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            let _ = writeln!(inner.out, "{prefix}{line}");
        }
        let _ = inner.out.flush();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while printing leaves nothing half-updated worth refusing to print over.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closes its `##[group]` when dropped.
pub struct Group {
    console: Arc<Console>,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.console.write_lines(Format::EndGroup.prefix(), "");
    }
}

fn secret_parts(secret: &str) -> impl Iterator<Item = &str> {
    secret
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("-----"))
}

fn mask_with(masks: &[String], text: &str) -> String {
    let mut out = text.to_owned();
    for mask in masks {
        if out.contains(mask.as_str()) {
            out = out.replace(mask.as_str(), MASK);
        }
    }
    out
}

/// A writer for `tracing` output that turns each event into masked `##[debug]` lines.
#[derive(Clone)]
pub struct DebugSink(pub Arc<Console>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for DebugSink {
    type Writer = DebugEvent;

    fn make_writer(&'a self) -> Self::Writer {
        DebugEvent {
            console: Arc::clone(&self.0),
            buf: Vec::new(),
        }
    }
}

/// One formatted tracing event, printed when the formatter drops it.
pub struct DebugEvent {
    console: Arc<Console>,
    buf: Vec<u8>,
}

impl Write for DebugEvent {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for DebugEvent {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if !text.is_empty() {
            self.console.debug(text);
        }
    }
}

/// An in-memory writer whose contents tests read back.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::command::decode;

    fn console(debug: bool) -> (Arc<Console>, Capture) {
        let capture = Capture::default();
        (
            Console::with_writer(Box::new(capture.clone()), debug),
            capture,
        )
    }

    #[test]
    fn secrets_are_announced_then_masked_everywhere() {
        let (console, out) = console(true);
        console.set_secret("p@ss w0rd;]");
        console.info("token p@ss w0rd;] in a line");
        console.debug("url ?sig=p%40ss+w0rd%3B%5D");
        console.error("failed with p@ss w0rd;]");
        console.set_variable("x", "p@ss w0rd;]", true);
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        // The announcements come first, and are the only lines holding the secret.
        assert_eq!(decode(lines[0]).unwrap().message, "p@ss w0rd;]");
        assert_eq!(decode(lines[1]).unwrap().message, "p%40ss+w0rd%3B%5D");
        for line in &lines[2..] {
            assert!(!line.contains("w0rd"), "leaked in {line:?}");
        }
        assert_eq!(lines[2], "token *** in a line");
        assert_eq!(lines[3], "##[debug]url ?sig=***");
    }

    #[test]
    fn multi_line_secrets_are_announced_line_by_line() {
        let (console, out) = console(false);
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";
        console.set_secret(pem);
        console.info(pem);
        let text = out.text();
        let announced: Vec<String> = text.lines().filter_map(decode).map(|c| c.message).collect();
        assert_eq!(announced, ["MIIEvQIBADANBgkq", "hkiG9w0BAQEFAASC"]);
        assert!(text.contains("-----BEGIN PRIVATE KEY-----\n***\n***\n-----END"));
    }

    #[test]
    fn debug_lines_only_with_system_debug() {
        let (quiet, out) = console(false);
        quiet.debug("hidden\nalso hidden");
        assert_eq!(out.text(), "");
        let (loud, out) = console(true);
        loud.debug("one\ntwo");
        assert_eq!(out.text(), "##[debug]one\n##[debug]two\n");
    }

    #[test]
    fn groups_close_when_dropped() {
        let (console, out) = console(false);
        {
            let _g = console.group("Staging");
            console.info("inside");
        }
        console.section("done");
        assert_eq!(
            out.text(),
            "##[group]Staging\ninside\n##[endgroup]\n##[section]done\n"
        );
    }

    #[test]
    fn completion_and_issues_are_commands() {
        let (console, out) = console(false);
        console.warning("careful");
        console.complete(TaskResult::Failed, "it broke\nbadly");
        assert_eq!(
            out.text(),
            "##vso[task.logissue type=warning]careful\n##vso[task.complete result=Failed]it broke%0Abadly\n"
        );
    }
}
