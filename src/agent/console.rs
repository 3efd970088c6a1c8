//! The task's one way to speak: every line the task prints goes through [`Console`], which masks
//! every secret announced so far, has the [`Host`] render it (logging commands for Azure
//! Pipelines, workflow commands and the runner's files for GitHub Actions, plain text in a
//! terminal), and hides debug lines unless the run asks for them (`System.Debug`,
//! `RUNNER_DEBUG`).
//!
//! Masking here is defence in depth: the agent masks what `task.setsecret` announced, but only in
//! the job log it renders, and only after the announcement arrived. A terminal run has no agent.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use super::command::{LoggingCommand, TaskResult};
use super::host::{Effect, Host, HostFile, Line};

/// Replacement for masked values, the same as the agent's.
pub const MASK: &str = "***";

/// Where output goes; shared by reference across the task.
pub struct Console {
    inner: Mutex<Inner>,
    debug: bool,
    host: Host,
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
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// Output to the process's standard output, for the Azure Pipelines agent.
    pub fn stdout(debug: bool) -> Arc<Console> {
        Console::with_writer(Box::new(io::stdout()), debug)
    }

    /// Output to any writer, for the Azure Pipelines agent; tests capture it in memory.
    pub fn with_writer(out: Box<dyn Write + Send>, debug: bool) -> Arc<Console> {
        Console::for_host(Host::AzurePipelines, out, debug)
    }

    /// Output to `out` as `host` wants it.
    pub fn for_host(host: Host, out: Box<dyn Write + Send>, debug: bool) -> Arc<Console> {
        Arc::new(Console {
            inner: Mutex::new(Inner {
                out,
                masks: Vec::new(),
            }),
            debug,
            host,
        })
    }

    pub fn debug_enabled(&self) -> bool {
        self.debug
    }

    /// Who the output is for.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Announces a secret to the agent (or the runner) and masks it in everything printed from
    /// now on; a terminal is told nothing.
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
                for effect in self.host.render(&Line::Secret(&form), "") {
                    inner.apply(&self.host, effect);
                }
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
        self.emit(|t| Line::Info(t), text.as_ref());
    }

    /// A `##[debug]` line, shown only when the pipeline runs with `System.Debug` true (on
    /// GitHub, `RUNNER_DEBUG=1`).
    pub fn debug(&self, text: impl AsRef<str>) {
        if self.debug {
            self.emit(|t| Line::Debug(t), text.as_ref());
        }
    }

    /// A warning the run's summary lists (`task.logissue type=warning`).
    pub fn warning(&self, text: impl AsRef<str>) {
        self.emit(|t| Line::Warning(t), text.as_ref());
    }

    /// An error the run's summary lists (`task.logissue type=error`). It does not by itself fail
    /// the step; [`Console::complete`] and the exit code do.
    pub fn error(&self, text: impl AsRef<str>) {
        self.emit(|t| Line::Error(t), text.as_ref());
    }

    pub fn section(&self, title: impl AsRef<str>) {
        self.emit(|t| Line::Section(t), title.as_ref());
    }

    /// Opens a collapsible group, closed when the guard drops.
    pub fn group(self: &Arc<Self>, title: impl AsRef<str>) -> Group {
        self.emit(|t| Line::GroupStart(t), title.as_ref());
        Group {
            console: Arc::clone(self),
        }
    }

    /// Sets a pipeline variable (a step output on GitHub, `name = value` in a terminal);
    /// `is_output` lets later jobs and stages read it. The value is masked like any line.
    pub fn set_variable(&self, name: &str, value: &str, is_output: bool) {
        let value = self.mask(value);
        self.emit_raw(Line::Output {
            name,
            value: &value,
            is_output,
        });
    }

    pub fn set_progress(&self, percent: u8, operation: &str) {
        self.emit(|operation| Line::Progress { percent, operation }, operation);
    }

    /// A Markdown file for the run's summary page (`GITHUB_STEP_SUMMARY` on GitHub).
    pub fn upload_summary(&self, path: &std::path::Path) {
        self.emit_raw(Line::Summary(path));
    }

    pub fn upload_file(&self, path: &std::path::Path) {
        self.emit_raw(Line::Attach(path));
    }

    pub fn complete(&self, result: TaskResult, message: &str) {
        self.emit(|message| Line::Complete { result, message }, message);
    }

    /// Prints any logging command, its values masked. Azure Pipelines only: other hosts have no
    /// such commands, so there it becomes a debug line naming what was left out.
    pub fn command(&self, mut command: LoggingCommand) {
        if self.host != Host::AzurePipelines {
            self.debug(format!(
                "{}.{} has no equivalent on {}",
                command.area,
                command.action,
                self.host.describe()
            ));
            return;
        }
        let mut inner = self.lock();
        for (_, value) in &mut command.properties {
            *value = mask_with(&inner.masks, value);
        }
        command.message = mask_with(&inner.masks, &command.message);
        let _ = writeln!(inner.out, "{}", command.render());
        let _ = inner.out.flush();
    }

    /// Masks `text`, makes the line from it and has the host render it.
    fn emit(&self, line: impl FnOnce(&str) -> Line<'_>, text: &str) {
        let mut inner = self.lock();
        let masked = mask_with(&inner.masks, text);
        let line = line(&masked);
        let delimiter = delimiter_for(&line);
        for effect in self.host.render(&line, &delimiter) {
            inner.apply(&self.host, effect);
        }
        let _ = inner.out.flush();
    }

    /// A line whose text is already masked or is none to mask (a path).
    fn emit_raw(&self, line: Line<'_>) {
        let mut inner = self.lock();
        for effect in self.host.render(&line, &delimiter_for(&line)) {
            inner.apply(&self.host, effect);
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
        self.console.emit_raw(Line::GroupEnd);
    }
}

impl Inner {
    /// A warning about a runner file, rendered by the host (escaped), printed only.
    fn warn_plainly(&mut self, host: &Host, text: &str) {
        for effect in host.render(&Line::Warning(text), "") {
            if let Effect::Print(line) = effect {
                let _ = writeln!(self.out, "{line}");
            }
        }
    }

    /// Carries out one effect; a runner file that cannot be written is said on the output.
    fn apply(&mut self, host: &Host, effect: Effect) {
        match effect {
            Effect::Print(line) => {
                let _ = writeln!(self.out, "{line}");
            }
            Effect::Append(file, text) => {
                if let Err(e) = append(host, file, text.as_bytes()) {
                    self.warn_plainly(host, &file_problem(file, &e));
                }
            }
            Effect::AppendFileContents { from, to } => {
                let result = std::fs::read(&from).and_then(|mut bytes| {
                    if !bytes.ends_with(b"\n") {
                        bytes.push(b'\n');
                    }
                    // The masks apply to the summary too: it is read back here, not trusted.
                    let text = mask_with(&self.masks, &String::from_utf8_lossy(&bytes));
                    append(host, to, text.as_bytes())
                });
                if let Err(e) = result {
                    self.warn_plainly(host, &file_problem(to, &e));
                }
            }
        }
    }
}

/// Appends to one of the runner's files, as the host captured their names at start.
fn append(host: &Host, file: HostFile, bytes: &[u8]) -> io::Result<()> {
    let path = match (host, file) {
        (Host::GitHubActions(files), HostFile::Output) => files.output.as_ref(),
        (Host::GitHubActions(files), HostFile::Summary) => files.summary.as_ref(),
        _ => None,
    }
    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the variable is not set"))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(bytes)
}

fn file_problem(file: HostFile, e: &io::Error) -> String {
    let variable = match file {
        HostFile::Output => "GITHUB_OUTPUT",
        HostFile::Summary => "GITHUB_STEP_SUMMARY",
    };
    format!("cannot append to the file {variable} names: {e}")
}

/// A `GITHUB_OUTPUT` delimiter that does not occur in the line's value.
fn delimiter_for(line: &Line<'_>) -> String {
    let value = match line {
        Line::Output { value, .. } => *value,
        _ => return String::new(),
    };
    loop {
        let delimiter = format!("ghadelimiter_{}", uuid::Uuid::new_v4());
        if !value.contains(&delimiter) {
            return delimiter;
        }
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

    #[test]
    fn on_github_masks_come_first_and_outputs_go_to_the_runner_s_file() {
        use crate::agent::host::GitHubFiles;
        let dir = tempfile::tempdir().unwrap();
        let (output, summary) = (dir.path().join("output"), dir.path().join("summary.md"));
        let capture = Capture::default();
        let console = Console::for_host(
            Host::GitHubActions(GitHubFiles {
                output: Some(output.clone()),
                summary: Some(summary.clone()),
            }),
            Box::new(capture.clone()),
            false,
        );
        console.set_secret("tok%en");
        console.info("using tok%en now");
        console.debug("hidden without RUNNER_DEBUG");
        console.warning("careful: tok%en");
        {
            let _g = console.group("Staging");
        }
        console.set_variable("imageUri", "/subscriptions/s/images/i", true);
        console.set_variable("notes", "line one\nline two", true);
        let md = dir.path().join("s.md");
        std::fs::write(&md, "# Run\nsecret tok%en").unwrap();
        console.upload_summary(&md);
        console.error("failed\nbadly");
        console.complete(TaskResult::Failed, "failed");
        assert_eq!(
            capture.text(),
            "::add-mask::tok%25en\n::add-mask::tok%2525en\nusing *** now\n::warning::careful: ***\n::group::Staging\n::endgroup::\n::error::failed%0Abadly\n"
        );
        let written = std::fs::read_to_string(&output).unwrap();
        let mut lines = written.lines();
        assert_eq!(lines.next(), Some("imageUri=/subscriptions/s/images/i"));
        let opener = lines.next().unwrap();
        let delimiter = opener.strip_prefix("notes<<").unwrap();
        assert!(delimiter.starts_with("ghadelimiter_"), "{opener}");
        assert_eq!(lines.next(), Some("line one"));
        assert_eq!(lines.next(), Some("line two"));
        assert_eq!(lines.next(), Some(delimiter));
        assert_eq!(lines.next(), None);
        assert_eq!(
            std::fs::read_to_string(&summary).unwrap(),
            "# Run\nsecret ***\n"
        );
    }

    #[test]
    fn a_terminal_never_sees_the_secret_nor_a_command() {
        let capture = Capture::default();
        let console = Console::for_host(
            Host::Terminal { color: false },
            Box::new(capture.clone()),
            false,
        );
        console.set_secret("hunter2");
        console.info("pw hunter2");
        console.set_variable("templateName", "t_1", true);
        console.warning("w");
        console.error("e hunter2");
        console.complete(TaskResult::Failed, "e");
        assert_eq!(
            capture.text(),
            "pw ***\ntemplateName = t_1\nwarning: w\nerror: e ***\n"
        );
    }
}
