//! The build log, live: while Image Builder runs, `customization.log` (Packer's log, in the
//! `packerlogs/<guid>/` container of the storage account in the template's staging resource
//! group) is followed with ranged GETs from the last offset and its new lines are printed, made
//! inert first: the log is text from the build VM, and the agent runs any `##vso[` it finds
//! anywhere in a line and formats `##[` at a line's start. Everything read also goes to a local
//! copy, attached to the job's logs at the end, and the last lines are kept for a failure's
//! message, so nothing is downloaded twice and memory stays flat however long the log grows.
//!
//! Following the log never fails the build: without access to the staging group it says once
//! what would allow it and stops; throttling and server errors just wait for the next poll.
//! The line handling ([`Lines`], [`inert`], [`Tail`]) is pure and unit-tested.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use azure_core::credentials::TokenCredential;
use time::OffsetDateTime;
use url::Url;

use super::log_phases::{Event, Outcome, Phase, Phases};
use super::progress::elapsed;
use crate::agent::Console;
use crate::agent::console::Group;
use crate::arm::{ArmClient, ArmError};
use crate::image_template::Customizer;
use crate::sas::{AccountSas, Protocol};
use crate::storage::{self, Access, StorageAccount};

/// The log's container.
const LOG_CONTAINER: &str = "packerlogs";
/// The most bytes one GET asks for, so memory stays flat with the log's size.
const CHUNK: u64 = 4 * 1024 * 1024;
/// The most characters of one line printed; the attachment keeps every line whole.
const LINE_LIMIT: usize = 4000;
/// Lines kept for a failure's message.
pub const TAIL_LINES: usize = 100;
/// Polls at the end of the log before looking for a newer log (a retried build starts one in
/// a new `<guid>/` folder).
const RELIST_AFTER_IDLE_POLLS: u32 = 4;

/// Cuts bytes into lines as they arrive, holding back a line until its end has come.
#[derive(Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// The complete lines in `bytes` (with what was held back), without their line breaks.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            self.partial.extend_from_slice(piece);
            if self.partial.ends_with(b"\n") {
                lines.push(text(&self.partial));
                self.partial.clear();
            }
        }
        lines
    }

    /// The last line, if the log does not end with a line break.
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| {
            let line = text(&self.partial);
            self.partial.clear();
            line
        })
    }
}

/// A line's bytes as text: line breaks dropped, bytes that are not UTF-8 shown as U+FFFD.
fn text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

/// A log line as the task prints it: behind a visible prefix (so no `##[` formatting or GitHub
/// `::command::` starts the line), with every `##vso[` broken visibly to `##vso [` (the agent
/// finds that prefix anywhere in a line: `Command.TryParse` in azure-pipelines-agent) and every
/// `##[` to `## [` (GitHub's runner still reads old-style `##[command]` anywhere in a line, such
/// as `##[stop-commands]`, which would show later masks in clear), and cut past [`LINE_LIMIT`].
pub fn inert(line: &str) -> String {
    let mut shown: String = line.chars().take(LINE_LIMIT).collect();
    let more = line.chars().count().saturating_sub(LINE_LIMIT);
    if more > 0 {
        shown.push_str(&format!(" … ({more} more characters in the attached log)"));
    }
    format!(
        "│ {}",
        shown.replace("##vso[", "##vso [").replace("##[", "## [")
    )
}

/// Where the reading of one log blob stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    pub url: Url,
    /// Bytes read so far.
    pub offset: u64,
}

/// After a rewrite, the lines printed before it, read back one by one from the earlier copy:
/// the rewritten log's lines are not printed again while they repeat them, in order. Reads the
/// file as it goes, so memory stays flat.
pub struct Replay<R> {
    earlier: Option<std::io::Lines<R>>,
}

impl<R: std::io::BufRead> Replay<R> {
    pub fn new(earlier: R) -> Replay<R> {
        Replay {
            earlier: Some(earlier.lines()),
        }
    }

    /// Whether `line` repeats the next earlier line (then it is not printed again). The first
    /// line that does not ends the replay.
    pub fn repeats(&mut self, line: &str) -> bool {
        let same = self
            .earlier
            .as_mut()
            .and_then(Iterator::next)
            .and_then(Result::ok)
            .is_some_and(|earlier| earlier.trim_end_matches('\r') == line);
        if !same {
            self.earlier = None;
        }
        same
    }
}

/// What an answer to a ranged GET means for the tail.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// New bytes from the offset.
    Bytes,
    /// Nothing new.
    Idle,
    /// The blob is shorter than what was read: it was rewritten; start over, without printing
    /// again the lines it repeats.
    Rewritten,
    /// The blob is gone.
    Gone,
}

/// Reads a ranged GET's status and `Content-Range` total (`bytes a-b/total` or `bytes */total`).
/// Azure answers 416 at or past the end; Azurite answers 206 with no body at the end.
pub fn step(status: u16, total: Option<u64>, body_len: usize, offset: u64) -> Step {
    match status {
        404 => Step::Gone,
        206 | 200 if body_len > 0 => Step::Bytes,
        206 | 200 | 416 if total.is_some_and(|t| t < offset) => Step::Rewritten,
        _ => Step::Idle,
    }
}

/// The total size in a `Content-Range` header.
pub fn content_range_total(value: &str) -> Option<u64> {
    value.rsplit('/').next()?.trim().parse().ok()
}

impl Tail {
    fn new(url: Url) -> Tail {
        Tail { url, offset: 0 }
    }
}

/// How the task gets into the staging account.
enum Reader {
    /// An account SAS (read, list) from the account key.
    Sas(String),
    /// The connection's storage token.
    Token,
}

struct Source {
    account: StorageAccount,
    reader: Reader,
}

/// The follower of one build's log.
pub struct LiveLog<'a> {
    arm: &'a ArmClient,
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    console: Arc<Console>,
    /// Print lines as they come (`streamBuildLog`); the copy and the tail are kept either way.
    pub print: bool,
    group: Option<String>,
    sources: Vec<Source>,
    tail: Option<Tail>,
    lines: Lines,
    last: VecDeque<String>,
    copy_path: PathBuf,
    copy: Option<std::fs::File>,
    idle_polls: u32,
    /// Set once reading is given up (no access): said once, never tried again.
    stopped: bool,
    phases: Phases,
    /// After a rewrite: the lines printed before it.
    replay: Option<Replay<std::io::BufReader<std::fs::File>>>,
    /// The collapsible group of the phase being printed.
    open: Option<Group>,
    started: std::time::Instant,
}

impl<'a> LiveLog<'a> {
    pub fn new(
        arm: &'a ArmClient,
        http: reqwest::Client,
        credential: Arc<dyn TokenCredential>,
        console: Arc<Console>,
        copy_path: PathBuf,
        print: bool,
        customizers: &[Customizer],
    ) -> LiveLog<'a> {
        LiveLog {
            arm,
            http,
            credential,
            console,
            print,
            group: None,
            sources: Vec::new(),
            tail: None,
            lines: Lines::default(),
            last: VecDeque::new(),
            copy_path,
            copy: None,
            idle_polls: 0,
            stopped: false,
            phases: Phases::new(customizers),
            replay: None,
            open: None,
            started: std::time::Instant::now(),
        }
    }

    /// The phases the log has shown so far, with their times and outcomes.
    pub fn timeline(&self) -> &[Phase] {
        self.phases.timeline()
    }

    /// Opens or closes the printed groups as the log's phases begin and end.
    fn phase_event(&mut self, event: Event) {
        if !self.print {
            return;
        }
        match event {
            Event::Begin(title) => {
                self.open = None;
                self.open = Some(self.console.group(format!(
                    "{title} (build log, from {} into the build)",
                    elapsed(self.started.elapsed())
                )));
            }
            Event::End(phase) => {
                self.console.info(format!(
                    "{}: {}{}",
                    phase.title,
                    match phase.outcome {
                        Outcome::Succeeded => "done",
                        Outcome::Failed => "FAILED",
                        Outcome::Unfinished => "unfinished",
                    },
                    phase
                        .took
                        .map(|d| format!(" in {}", elapsed(d)))
                        .unwrap_or_default()
                ));
                self.open = None;
            }
        }
    }

    /// The staging group, once Image Builder names it (`exactStagingResourceGroup`).
    pub fn set_group(&mut self, group: &str) {
        if self.group.as_deref() != Some(group) {
            self.group = Some(group.to_owned());
            self.sources.clear();
        }
    }

    /// The URL of the log being followed.
    pub fn url(&self) -> Option<&Url> {
        self.tail.as_ref().map(|t| &t.url)
    }

    /// The last lines read (at most [`TAIL_LINES`]).
    pub fn last_lines(&self) -> Vec<String> {
        self.last.iter().cloned().collect()
    }

    /// Whether any of the log was read.
    pub fn has_read(&self) -> bool {
        self.tail.as_ref().is_some_and(|t| t.offset > 0)
    }

    /// Reads what is new, prints it, and never fails: a problem is said (once when final).
    pub async fn poll(&mut self) {
        if self.stopped || self.group.is_none() {
            return;
        }
        if let Err(e) = self.poll_inner().await {
            tracing::debug!("build log: {e:#}");
        }
    }

    async fn poll_inner(&mut self) -> Result<()> {
        if self.sources.is_empty() && !self.discover_sources().await? {
            return Ok(());
        }
        let relist = self.tail.is_none() || self.idle_polls >= RELIST_AFTER_IDLE_POLLS;
        if relist {
            self.idle_polls = 0;
            if let Some(newest) = self.newest_log().await?
                && self.tail.as_ref().is_none_or(|t| t.url != newest)
            {
                if self.tail.is_some() {
                    self.say(format!("the build log moved to {newest} (a new attempt)"));
                    // The copy is of the log being followed: it starts over with the new one.
                    self.copy = None;
                    self.lines = Lines::default();
                }
                self.tail = Some(Tail::new(newest));
            }
        }
        self.read_new().await
    }

    /// Finds the staging group's storage accounts and a way in; false (said once) without access.
    async fn discover_sources(&mut self) -> Result<bool> {
        let group = self.group.clone().unwrap_or_default();
        let accounts = match storage::accounts_in_group(self.arm, &group).await {
            Ok(accounts) => accounts,
            Err(e) => return self.no_access(&group, &e),
        };
        for account in accounts {
            let reader = match storage::choose_access(self.arm, &account, &self.console).await {
                Ok(Access::AccountKey(key)) => {
                    let now = OffsetDateTime::now_utc();
                    let sas = AccountSas {
                        account: account.name.clone(),
                        permissions: "rl".to_owned(),
                        start: now - time::Duration::minutes(5),
                        // Renewed with the sources when a poll finds it refused.
                        expiry: now + time::Duration::hours(20),
                        protocol: Protocol::for_endpoint(&account.blob_endpoint),
                    }
                    .sign(azure_core::credentials::Secret::secret(&key))?;
                    self.console.set_secret(&sas.signature);
                    Reader::Sas(sas.query)
                }
                Ok(Access::Token) => Reader::Token,
                Err(e) => return self.no_access(&group, &e),
            };
            self.sources.push(Source { account, reader });
        }
        Ok(!self.sources.is_empty())
    }

    fn no_access(&mut self, group: &str, e: &anyhow::Error) -> Result<bool> {
        let forbidden = e
            .downcast_ref::<ArmError>()
            .is_some_and(|a| matches!(a.status, 401 | 403));
        if forbidden {
            self.stopped = true;
            self.console.info(format!(
                "the build log cannot be followed live: the service connection's identity cannot read the staging resource group {group} ({e:#}). To see it live, give that identity Reader and the storage account key operator role (listKeys), or Storage Blob Data Reader, on the staging group, or name a staging group it can read in stagingResourceGroup. The build goes on."
            ));
        }
        Ok(false)
    }

    /// Says something about the log, once per kind, without failing.
    fn say(&self, text: String) {
        self.console.info(text);
    }

    fn authorize(&self, source: &Source, mut url: Url) -> (Url, Option<&'static str>) {
        match &source.reader {
            Reader::Sas(query) => {
                let extra = url.query().map(str::to_owned);
                url.set_query(Some(query));
                if let Some(extra) = extra {
                    let joined = format!("{}&{extra}", url.query().unwrap_or_default());
                    url.set_query(Some(&joined));
                }
                (url, None)
            }
            Reader::Token => (url, Some("https://storage.azure.com/.default")),
        }
    }

    async fn get(
        &self,
        source: &Source,
        url: Url,
        range: Option<(u64, u64)>,
    ) -> Result<reqwest::Response> {
        let (url, scope) = self.authorize(source, url);
        let mut request = self
            .http
            .get(url)
            .header("x-ms-version", storage::SERVICE_VERSION);
        if let Some((from, to)) = range {
            request = request.header("x-ms-range", format!("bytes={from}-{to}"));
        }
        if let Some(scope) = scope {
            let token = self
                .credential
                .get_token(&[scope], None)
                .await
                .map_err(|e| anyhow!(crate::auth::error_chain(&e)))?;
            self.console.set_secret(token.token.secret());
            request = request.bearer_auth(token.token.secret());
        }
        request
            .send()
            .await
            .map_err(|e| anyhow!(crate::auth::error_chain(&e)))
    }

    /// The newest `packerlogs/<guid>/customization.log` in the sources.
    async fn newest_log(&self) -> Result<Option<Url>> {
        let mut newest: Option<(Url, Option<OffsetDateTime>)> = None;
        for source in &self.sources {
            let mut container = source.account.blob_endpoint.clone();
            container
                .path_segments_mut()
                .map_err(|_| anyhow!("{} cannot take a path", source.account.blob_endpoint))?
                .pop_if_empty()
                .push(LOG_CONTAINER);
            let mut list = container.clone();
            list.set_query(Some("restype=container&comp=list"));
            let response = self.get(source, list, None).await?;
            if !response.status().is_success() {
                continue; // no logs container yet, or throttled: the next poll looks again
            }
            let page: azure_storage_blob::models::ListBlobsResponse =
                azure_core::xml::from_xml(response.bytes().await?)?;
            if let Some((name, modified)) =
                super::log::newest_log(page.blob_items.iter().filter_map(|b| {
                    Some((
                        b.name.as_deref()?,
                        b.properties.as_ref().and_then(|p| p.last_modified),
                    ))
                }))
                && newest.as_ref().is_none_or(|(_, m)| modified > *m)
            {
                let mut url = container.clone();
                url.path_segments_mut()
                    .map_err(|_| anyhow!("{container} cannot take a path"))?
                    .extend(name.split('/'));
                newest = Some((url, modified));
            }
        }
        Ok(newest.map(|(url, _)| url))
    }

    /// Reads from the offset to the end, chunk by chunk.
    async fn read_new(&mut self) -> Result<()> {
        let Some(url) = self.tail.as_ref().map(|t| t.url.clone()) else {
            return Ok(());
        };
        let Some(source) = self
            .sources
            .iter()
            .position(|s| url.as_str().starts_with(s.account.blob_endpoint.as_str()))
        else {
            return Ok(());
        };
        loop {
            let offset = self.tail.as_ref().map(|t| t.offset).unwrap_or_default();
            let response = self
                .get(
                    &self.sources[source],
                    url.clone(),
                    Some((offset, offset + CHUNK - 1)),
                )
                .await?;
            let status = response.status().as_u16();
            let total = response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(content_range_total);
            if matches!(status, 403 | 401) {
                // An expired SAS or token: find the way in again next time.
                self.sources.clear();
                return Ok(());
            }
            if !(matches!(status, 200 | 206 | 404 | 416)) {
                return Ok(()); // throttled or a server error: wait for the next poll
            }
            // Taken as it arrives, never more than a chunk, whatever the server sends: memory
            // stays flat even where a range is not honoured.
            let mut response = response;
            let mut read = 0u64;
            if matches!(status, 200 | 206) {
                while read < CHUNK {
                    let Some(piece) = response.chunk().await? else {
                        break;
                    };
                    let piece = &piece[..piece.len().min((CHUNK - read) as usize)];
                    read += piece.len() as u64;
                    if let Some(tail) = self.tail.as_mut() {
                        tail.offset += piece.len() as u64;
                    }
                    self.take(piece)?;
                }
            }
            match step(status, total, read as usize, offset) {
                Step::Bytes => {
                    self.idle_polls = 0;
                    if read < CHUNK {
                        return Ok(());
                    }
                }
                Step::Idle => {
                    self.idle_polls += 1;
                    return Ok(());
                }
                Step::Rewritten => {
                    if let Some(tail) = self.tail.as_mut() {
                        tail.offset = 0;
                    }
                    self.lines = Lines::default();
                    // The copy follows the blob and starts over; what it held is what was
                    // printed, replayed against the rewritten log's lines.
                    self.copy = None;
                    let earlier = self.copy_path.with_extension("before-rewrite");
                    if std::fs::rename(&self.copy_path, &earlier).is_ok()
                        && let Ok(file) = std::fs::File::open(&earlier)
                    {
                        self.replay = Some(Replay::new(std::io::BufReader::new(file)));
                        // Unlinked at once: the open handle keeps it readable on Unix; on
                        // Windows the removal fails and the file stays in the temp folder.
                        let _ = std::fs::remove_file(&earlier);
                    }
                }
                Step::Gone => {
                    self.idle_polls = RELIST_AFTER_IDLE_POLLS;
                    return Ok(());
                }
            }
        }
    }

    /// Keeps a copy of `bytes` and prints their complete lines.
    fn take(&mut self, bytes: &[u8]) -> Result<()> {
        if self.copy.is_none() {
            // Created (or emptied, after a rewrite) when the first bytes arrive.
            self.copy = Some(std::fs::File::create(&self.copy_path)?);
        }
        if let Some(copy) = self.copy.as_mut() {
            copy.write_all(bytes)?;
        }
        for line in self.lines.push(bytes) {
            self.line(line);
        }
        Ok(())
    }

    fn line(&mut self, line: String) {
        if let Some(replay) = self.replay.as_mut() {
            if replay.repeats(&line) {
                return;
            }
            self.replay = None;
        }
        // In order: a phase that ends, then the one that begins with this line.
        for event in self.phases.line(&line) {
            self.phase_event(event);
        }
        if self.print {
            self.console.info(inert(&line));
        }
        if self.last.len() == TAIL_LINES {
            self.last.pop_front();
        }
        self.last.push_back(line);
    }

    /// Reads what is left, closes the copy and attaches it to the job's logs. The path of the
    /// copy, when there is one.
    pub async fn finish(&mut self) -> Option<PathBuf> {
        if !self.stopped && self.group.is_some() {
            self.idle_polls = 0;
            let _ = self.poll_inner().await;
        }
        if let Some(line) = self.lines.finish() {
            self.line(line);
        }
        if let Some(event) = self.phases.finish() {
            self.phase_event(event);
        }
        self.open = None;
        let copy = self.copy.take()?;
        let _ = copy.sync_all();
        drop(copy);
        self.console.upload_file(&self.copy_path);
        Some(self.copy_path.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_for_their_end_and_survive_odd_bytes() {
        let mut lines = Lines::default();
        assert_eq!(lines.push(b"first\r\nsec"), ["first"]);
        assert_eq!(lines.push(b"ond\nthi"), ["second"]);
        assert_eq!(
            lines.push(b"rd caf\xe9 \xff\n"),
            ["third caf\u{fffd} \u{fffd}"]
        );
        assert_eq!(lines.push(b"last"), Vec::<String>::new());
        assert_eq!(lines.finish().as_deref(), Some("last"));
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn log_lines_cannot_become_logging_commands() {
        for hostile in [
            "##vso[task.setvariable variable=imageUri;isOutput=true]https://evil.example/owned",
            "output: ##vso[task.complete result=Succeeded]done",
            "##[group]not a real group",
            "##[error]fake",
            // GitHub's runner reads old-style commands anywhere in a line.
            "echo ##[stop-commands]token",
            "##[set-output name=imageUri]https://evil.example/owned",
            "::add-mask::nothing",
        ] {
            let shown = inert(hostile);
            assert!(!shown.contains("##vso["), "{shown}");
            assert!(!shown.contains("##["), "{shown}");
            assert!(
                !shown.starts_with("##") && !shown.starts_with("::"),
                "{shown}"
            );
            // What it said is still there to read.
            assert!(
                shown.contains("##vso [") || shown.contains("## [") || shown.contains("::add-mask"),
                "{shown}"
            );
        }
        let long = "x".repeat(20_000);
        let shown = inert(&long);
        assert!(shown.chars().count() < 4100, "{}", shown.len());
        assert!(
            shown.ends_with("(16000 more characters in the attached log)"),
            "{shown}"
        );
    }

    #[test]
    fn ranged_answers_of_azure_and_azurite() {
        assert_eq!(step(206, Some(100), 40, 60), Step::Bytes);
        // Azure: 416 at the end; Azurite: 206 without a body.
        assert_eq!(step(416, Some(100), 0, 100), Step::Idle);
        assert_eq!(step(206, Some(100), 0, 100), Step::Idle);
        // Shorter than what was read: rewritten.
        assert_eq!(step(416, Some(30), 0, 100), Step::Rewritten);
        assert_eq!(step(404, None, 0, 100), Step::Gone);
        assert_eq!(step(503, None, 0, 100), Step::Idle);
        assert_eq!(content_range_total("bytes 0-99/100"), Some(100));
        assert_eq!(content_range_total("bytes */30"), Some(30));
        assert_eq!(content_range_total("bytes 0--1/0"), Some(0));
    }

    #[test]
    fn a_rewrite_prints_no_line_twice() {
        // Printed before the rewrite: four lines. The rewritten log keeps the first two, then
        // goes on with new ones.
        let mut replay = Replay::new(std::io::Cursor::new("one\ntwo\nthree\nfour\n"));
        assert!(replay.repeats("one") && replay.repeats("two"));
        assert!(!replay.repeats("five"));
        // Once the logs part, nothing more is taken for a repeat.
        assert!(!replay.repeats("four"));
    }
}
