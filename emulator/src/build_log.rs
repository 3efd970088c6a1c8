//! The build log as a run writes it: `packerlogs/<guid>/customization.log` in the staging
//! account, an append blob that grows while the customizers run. [`packer_log`] renders the
//! text; this module decides when which bytes go into the blob, writes them through [`blobs`],
//! and keeps the emulator's own record of what it appended ([`BuildLog::bytes`], read by
//! `Emulator::build_log`), which equals the blob byte for byte.
//!
//! What is modelled, and on what grounds:
//! - The log is in the staging account's `packerlogs` container and can be read while the
//!   build runs: Microsoft's "Troubleshoot Azure VM Image Builder" places `customization.log`
//!   there and, for successful builds whose staging group goes away, advises adding a `sleep`
//!   customizer and to "keep downloading the log" during the build until it reaches the sleep.
//!   Azure/azvmimagebuilder issue 4 ("There's no streaming output from the build process/logs
//!   currently") is the same wish from the users' side.
//! - Neither the blob type nor how often Image Builder flushes is documented. An append blob
//!   written in [`crate::config::Timing::log_steps`] steps over Customizing is the emulator's
//!   choice; a client must not depend on either (nor on the log's lines arriving whole).
//!
//! The schedule of one run (`D` = `timing.customizing`, `N` = `timing.log_steps`, at least 1):
//! 1. When Customizing starts (after its artifact downloads) the whole log is rendered once, with
//!    the outcome the knobs foretell. Its lines up to the end of the customizers are split into
//!    `N` parts of about equal line counts; part `i` is due `i·D/N` after Customizing started.
//! 2. The blob is created empty when Customizing starts, or `log_late` later; parts due before
//!    the blob exists are appended, one by one, as soon as it does.
//! 3. When the run ends, the parts not yet written are appended, then the rest of the log
//!    (deprovisioning, capture and distribution, or the failure's cleanup, and packer's end;
//!    re-rendered when the end differs from what the knobs foretold, e.g. a VHD distribution
//!    that could not be written). A canceled run instead appends the parts due by the time of the
//!    cancel, then packer's cancellation lines ([`packer_log::cancellation`]), and drops the
//!    rest. A run that ends before Customizing (a failure or cancel while Queued or Building, or
//!    a failed artifact download, whose run ends at once) writes its whole log when it ends.
//! 4. With `log_rewrite`, number the appends of the run 0, 1, … (the `N` parts, then the final
//!    one; an empty part counts too) and let `h = max(1, ⌊N/2⌋)`. Just before append `h`, the
//!    blob is deleted and created again holding only `K`, the first `⌊ℓ/3⌋` whole lines of what
//!    it held (`ℓ` its line count); appending then goes on with append `h`. The final bytes are
//!    `K` followed by appends `h`, `h+1`, … to the last: the lines between `K` and append `h`
//!    are lost. A run with no append `h` (one that wrote everything in one append) is not
//!    rewritten. Image Builder is not known to do this; it is a hostile knob for log readers.
//!
//! The blob stays until the template is deleted, which deletes its staging group and so the log
//! ([`BuildLog::delete`]; template reference: the staging group goes with the template). Without
//! Azurite wired in, nothing is written but the record is kept as if it had been.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use crate::{blobs, config::StorageAccountConfig, packer_log};

/// The container Image Builder writes logs into.
pub const CONTAINER: &str = "packerlogs";

/// One run's log: where it is and what the emulator has written into it.
#[derive(Debug)]
pub struct BuildLog {
    /// `…/packerlogs/<guid>/customization.log`, as `lastRunStatus.message` names it.
    pub url: String,
    /// `<guid>/customization.log` in [`CONTAINER`].
    pub blob: String,
    record: Mutex<Record>,
    /// Held for each write to the blob (a rewrite's three requests included) and for its
    /// deletion, so a write under way cannot bring back a blob the template's deletion removed.
    io: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Record {
    bytes: Vec<u8>,
    deleted: bool,
}

/// Where the writes go.
#[derive(Clone)]
pub struct Target {
    pub http: reqwest::Client,
    pub account: StorageAccountConfig,
}

impl BuildLog {
    pub fn new(account: &StorageAccountConfig, guid: &str) -> Arc<BuildLog> {
        let blob = format!("{guid}/customization.log");
        Arc::new(BuildLog {
            url: format!("{}{CONTAINER}/{blob}", account.blob_endpoint),
            blob,
            record: Mutex::new(Record::default()),
            io: tokio::sync::Mutex::new(()),
        })
    }

    /// Every byte appended so far (after a rewrite: what the re-created blob holds).
    pub fn bytes(&self) -> Vec<u8> {
        self.record.lock().unwrap().bytes.clone()
    }

    fn deleted(&self) -> bool {
        self.record.lock().unwrap().deleted
    }

    async fn create(&self, to: &Target) {
        let _io = self.io.lock().await;
        if self.deleted() {
            return;
        }
        if blobs::wired(&to.account)
            && let Err(e) = blobs::create_append(
                &to.http,
                &to.account,
                CONTAINER,
                &self.blob,
                "text/plain; charset=utf-8",
            )
            .await
        {
            tracing::warn!(
                "aib-emulator: could not create the build log {}: {e:#}",
                self.url
            );
            return;
        }
        self.record.lock().unwrap().bytes.clear();
    }

    async fn append(&self, to: &Target, bytes: &[u8]) {
        let _io = self.io.lock().await;
        if self.deleted() || bytes.is_empty() {
            return;
        }
        if blobs::wired(&to.account)
            && let Err(e) = blobs::append(&to.http, &to.account, CONTAINER, &self.blob, bytes).await
        {
            tracing::warn!(
                "aib-emulator: could not append to the build log {}: {e:#}",
                self.url
            );
            return;
        }
        self.record.lock().unwrap().bytes.extend_from_slice(bytes);
    }

    /// Deletes the blob and creates it again with the first third of its lines.
    async fn rewrite(&self, to: &Target) {
        let _io = self.io.lock().await;
        if self.deleted() {
            return;
        }
        let kept = first_third(&self.record.lock().unwrap().bytes).to_vec();
        if blobs::wired(&to.account) {
            let written = async {
                blobs::delete(&to.http, &to.account, CONTAINER, &self.blob).await?;
                blobs::create_append(
                    &to.http,
                    &to.account,
                    CONTAINER,
                    &self.blob,
                    "text/plain; charset=utf-8",
                )
                .await?;
                blobs::append(&to.http, &to.account, CONTAINER, &self.blob, &kept).await
            }
            .await;
            if let Err(e) = written {
                tracing::warn!(
                    "aib-emulator: could not rewrite the build log {}: {e:#}",
                    self.url
                );
                return;
            }
        }
        self.record.lock().unwrap().bytes = kept;
    }

    /// Stops every later write and deletes the blob (after a write under way).
    pub async fn delete(&self, to: &Target) {
        let _io = self.io.lock().await;
        self.record.lock().unwrap().deleted = true;
        if blobs::wired(&to.account)
            && let Err(e) = blobs::delete(&to.http, &to.account, CONTAINER, &self.blob).await
        {
            tracing::warn!(
                "aib-emulator: could not delete the build log {}: {e:#}",
                self.url
            );
        }
    }
}

/// The first `⌊ℓ/3⌋` whole lines of `bytes` (`ℓ` = its number of line ends).
fn first_third(bytes: &[u8]) -> &[u8] {
    let ends: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    match ends.len() / 3 {
        0 => &[],
        n => &bytes[..ends[n - 1]],
    }
}

/// `bytes` cut at line ends into `n` parts of about equal line counts (some may be empty).
fn split_lines(bytes: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut starts = vec![0];
    starts.extend(
        bytes
            .iter()
            .enumerate()
            .filter(|(i, b)| **b == b'\n' && i + 1 < bytes.len())
            .map(|(i, _)| i + 1),
    );
    let lines = starts.len();
    let at = |k: usize| -> usize {
        let line = k * lines / n;
        if line >= lines {
            bytes.len()
        } else {
            starts[line]
        }
    };
    (0..n).map(|k| bytes[at(k)..at(k + 1)].to_vec()).collect()
}

/// The knobs of one run's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub steps: u32,
    pub customizing: Duration,
    pub late: Option<Duration>,
    pub rewrite: bool,
}

/// Writes one run's log on its schedule, driven by the build (which owns it).
pub struct Writer {
    log: Arc<BuildLog>,
    to: Target,
    start: Instant,
    create_at: Duration,
    created: bool,
    pending: VecDeque<(Duration, Vec<u8>)>,
    appends: usize,
    rewrite_before: Option<usize>,
}

impl Writer {
    /// Starts the schedule now, with `parts` the log up to the end of the customizers.
    pub fn start(log: Arc<BuildLog>, to: Target, parts: &[u8], schedule: &Schedule) -> Writer {
        let n = schedule.steps.max(1) as usize;
        let pending = split_lines(parts, n)
            .into_iter()
            .enumerate()
            .map(|(i, part)| (schedule.customizing * i as u32 / n as u32, part))
            .collect();
        Writer {
            log,
            to,
            start: Instant::now(),
            create_at: schedule.late.unwrap_or_default(),
            created: false,
            pending,
            appends: 0,
            rewrite_before: schedule.rewrite.then_some((n / 2).max(1)),
        }
    }

    /// A writer for a run that ended before Customizing: nothing scheduled.
    pub fn at_end(log: Arc<BuildLog>, to: Target) -> Writer {
        Self::start(
            log,
            to,
            &[],
            &Schedule {
                steps: 1,
                customizing: Duration::ZERO,
                late: None,
                rewrite: false,
            },
        )
    }

    async fn ensure_created(&mut self) {
        if !self.created {
            self.log.create(&self.to).await;
            self.created = true;
        }
    }

    async fn append(&mut self, bytes: &[u8]) {
        self.ensure_created().await;
        if self.rewrite_before == Some(self.appends) {
            self.log.rewrite(&self.to).await;
        }
        self.log.append(&self.to, bytes).await;
        self.appends += 1;
    }

    /// Writes what is due by now.
    async fn write_due(&mut self) {
        let elapsed = self.start.elapsed();
        if !self.created && elapsed < self.create_at {
            return;
        }
        self.ensure_created().await;
        while let Some((due, _)) = self.pending.front()
            && *due <= elapsed
        {
            let (_, part) = self.pending.pop_front().expect("a front part");
            self.append(&part).await;
        }
    }

    fn next_due(&self) -> Option<Instant> {
        if !self.created {
            return Some(self.start + self.create_at);
        }
        self.pending.front().map(|(due, _)| self.start + *due)
    }

    /// Waits `d` while writing what falls due; false when a cancel came first.
    pub async fn wait(&mut self, d: Duration, cancel: &Notify) -> bool {
        let deadline = Instant::now() + d;
        loop {
            self.write_due().await;
            let until = self.next_due().map_or(deadline, |n| n.min(deadline));
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = cancel.notified() => return false,
            }
            if until >= deadline {
                return true;
            }
        }
    }

    /// The run ended: appends the parts not yet written, then `rest`.
    pub async fn finish(&mut self, rest: &[u8]) {
        self.ensure_created().await;
        while let Some((_, part)) = self.pending.pop_front() {
            self.append(&part).await;
        }
        self.append(rest).await;
    }

    /// The run was canceled: appends the parts due by now, drops the others, then appends
    /// packer's cancellation `lines`.
    pub async fn cancel(&mut self, lines: &[u8]) {
        self.create_at = Duration::ZERO;
        self.write_due().await;
        self.pending.clear();
        self.append(lines).await;
    }
}

/// The bytes a run that reached Customizing appends when it ends: the rest of `rendered` when the
/// run ended as foretold, else the rest of the log rendered for the real end (the same up to
/// the end of the customizers, as rendering is deterministic and the end only changes after them).
pub fn rest_for(rendered: &packer_log::Rendered, actual: &packer_log::Rendered) -> Vec<u8> {
    debug_assert_eq!(
        &rendered.bytes[..rendered.customized],
        &actual.bytes[..actual.customized]
    );
    actual.bytes[actual.customized..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_text_at_line_ends() {
        let text = b"a\nbb\nccc\nd\ne\nf\ng\n";
        for n in 1..10 {
            let parts = split_lines(text, n);
            assert_eq!(parts.len(), n);
            assert_eq!(parts.concat(), text);
            for p in parts.iter().filter(|p| !p.is_empty()) {
                assert_eq!(p.last(), Some(&b'\n'));
            }
        }
        let parts = split_lines(text, 7);
        assert!(
            parts
                .iter()
                .all(|p| p.iter().filter(|b| **b == b'\n').count() == 1)
        );
        assert_eq!(split_lines(b"", 3).concat(), b"");
    }

    #[test]
    fn the_first_third_is_whole_lines() {
        assert_eq!(first_third(b"1\n2\n3\n4\n5\n6\n7\n"), b"1\n2\n");
        assert_eq!(first_third(b"1\n2\n"), b"");
        assert_eq!(first_third(b"1\n2\n3\n"), b"1\n");
    }
}
