//! The streaming upload: the archive is cut into blocks while it is being written, on a
//! blocking thread, and the blocks are staged concurrently (bounded) and committed in order at
//! the end. No temporary file; memory holds at most `queue + concurrency + 1` blocks (queued,
//! being staged, being filled) whatever the artifact's size. The archive's SHA-256 is computed on the way. An upload that cannot finish
//! says how far it got and removes what it wrote.
//!
//! [`upload_archive`] is what the task does; it is [`upload_stream`] with the archiver as the
//! producer. [`upload_file`] sends an existing file through the same blocks (the staging
//! benchmark's baseline uploads Info-ZIP's archive with it).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use azure_core::error::ErrorKind;
use azure_storage_blob::BlockBlobClient;
use azure_storage_blob::models::{BlockBlobClientCommitBlockListOptions, BlockLookupList};
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::agent::Console;
use crate::archive::{self, ArchiveOptions, ArchiveSummary, HashingWriter};
use crate::arm::RetryPolicy;
use crate::auth::retry::{Failure, with_retries};
use crate::storage::BlobStore;

/// Block size and parallelism of the upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSettings {
    pub block_size: usize,
    /// Blocks being staged at once.
    pub concurrency: usize,
    /// Blocks written by the archiver and waiting for a free upload slot.
    pub queue: usize,
}

impl Default for UploadSettings {
    fn default() -> Self {
        // 4 MiB blocks × (4 in flight + 2 queued + 1 being filled) = 28 MiB keeps the task under
        // 64 MiB while keeping a fast link busy; 50,000 blocks of 4 MiB allow artifacts up to
        // 195 GiB.
        UploadSettings {
            block_size: 4 * 1024 * 1024,
            concurrency: 4,
            queue: 2,
        }
    }
}

/// What was uploaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    pub blob: String,
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub blocks: usize,
    pub archive: ArchiveSummary,
    pub elapsed: Duration,
}

impl Uploaded {
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// What [`upload_stream`] uploaded, with what its producer returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Streamed<T> {
    pub blob: String,
    pub bytes: u64,
    pub sha256: [u8; 32],
    pub blocks: usize,
    pub elapsed: Duration,
    pub produced: T,
}

impl<T> Streamed<T> {
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Block ids must all have the same length; the index, zero-padded, is unique and ordered. They
/// start with the upload's token, so two uploads that ever shared a blob name could not take
/// each other's blocks for their own.
pub fn block_id(token: &str, index: usize) -> Vec<u8> {
    let prefix: String = token.chars().take(8).collect();
    format!("aib-{prefix:0>8}-{index:08}").into_bytes()
}

/// An `io::Write` that hands out full blocks through a channel; the last, shorter block on
/// [`BlockSink::finish`]. Fails with `BrokenPipe` once the uploader has given up.
pub struct BlockSink {
    tx: mpsc::Sender<Bytes>,
    block_size: usize,
    buf: Vec<u8>,
}

impl BlockSink {
    pub fn new(tx: mpsc::Sender<Bytes>, block_size: usize) -> BlockSink {
        BlockSink {
            tx,
            block_size,
            buf: Vec::with_capacity(block_size),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        // The next buffer is only allocated once this block has left (see `write`): while the
        // send waits for room in the queue, this sink holds one block, not two.
        let block = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(Bytes::from(block))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    pub fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl Write for BlockSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.block_size);
        }
        let room = self.block_size - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.block_size {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether a storage failure may pass if tried again.
fn is_transient(error: &azure_core::Error) -> bool {
    match error.kind() {
        ErrorKind::HttpResponse { status, .. } => crate::arm::is_transient_status(
            reqwest::StatusCode::from_u16(u16::from(*status))
                .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR),
        ),
        ErrorKind::Io | ErrorKind::Connection => true,
        _ => false,
    }
}

/// Stages one block, retrying it on its own after transient failures.
async fn stage_block(
    client: &BlockBlobClient,
    token: &str,
    index: usize,
    data: Bytes,
    retry: &RetryPolicy,
    console: &Console,
) -> Result<()> {
    let id = block_id(token, index);
    let len = data.len() as u64;
    let what = format!("staging block {index}");
    with_retries(retry, console, &what, || {
        let (id, data, what) = (&id, data.clone(), &what);
        async move {
            match client.stage_block(id, len, data.into(), None).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let error = anyhow!(crate::auth::error_chain(&e));
                    Err(if is_transient(&e) {
                        Failure::Transient {
                            error,
                            retry_after: None,
                        }
                    } else {
                        Failure::Fatal(error.context(format!("{what} failed")))
                    })
                }
            }
        }
    })
    .await
}

/// Archives `root` and uploads it as block blob `blob`.
pub async fn upload_archive(
    store: &BlobStore,
    root: PathBuf,
    blob: &str,
    settings: &UploadSettings,
    console: &Arc<Console>,
) -> Result<Uploaded> {
    upload_archive_with(
        store,
        root,
        blob,
        settings,
        &ArchiveOptions::default(),
        console,
    )
    .await
}

/// [`upload_archive`], the archive written as `options` say.
pub async fn upload_archive_with(
    store: &BlobStore,
    root: PathBuf,
    blob: &str,
    settings: &UploadSettings,
    options: &ArchiveOptions,
    console: &Arc<Console>,
) -> Result<Uploaded> {
    let options = options.clone();
    let streamed = upload_stream(store, blob, settings, console, move |sink| {
        let (_, summary) = archive::write_archive_with(&root, sink, &options)?;
        Ok(summary)
    })
    .await?;
    Ok(Uploaded {
        blob: streamed.blob,
        bytes: streamed.bytes,
        sha256: streamed.sha256,
        blocks: streamed.blocks,
        archive: streamed.produced,
        elapsed: streamed.elapsed,
    })
}

/// Uploads the existing file `path` as block blob `blob`, read sequentially into the same blocks.
pub async fn upload_file(
    store: &BlobStore,
    path: PathBuf,
    blob: &str,
    settings: &UploadSettings,
    console: &Arc<Console>,
) -> Result<Streamed<()>> {
    upload_stream(store, blob, settings, console, move |sink| {
        copy_file(&path, sink)
    })
    .await
}

/// Copies the file at `path` into `sink` with a 256 KiB buffer (the archiver's read size).
fn copy_file(path: &Path, sink: &mut dyn Write) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("cannot read '{}'", path.display()))?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read '{}'", path.display()));
            }
        };
        sink.write_all(&buffer[..n])
            .with_context(|| format!("uploading '{}' failed", path.display()))?;
    }
}

/// Uploads what `producer` writes (on a blocking thread) as block blob `blob`: cut into blocks
/// of `settings.block_size`, staged `settings.concurrency` at a time, hashed on the way, and
/// committed once the producer has returned. If the producer or a block fails, what was written
/// is removed and the error says how far the upload got.
pub async fn upload_stream<T, P>(
    store: &BlobStore,
    blob: &str,
    settings: &UploadSettings,
    console: &Arc<Console>,
    producer: P,
) -> Result<Streamed<T>>
where
    T: Send + 'static,
    P: FnOnce(&mut dyn Write) -> Result<T> + Send + 'static,
{
    let started = Instant::now();
    // This upload's own mark: in its block ids and, once committed, in the blob's metadata.
    let token = uuid::Uuid::new_v4().simple().to_string();
    let client = Arc::new(store.block_blob_client(blob)?);
    let retry = Arc::new(RetryPolicy::default());
    let (tx, mut rx) = mpsc::channel::<Bytes>(settings.queue.max(1));
    let block_size = settings.block_size;
    let archiver = tokio::task::spawn_blocking(move || {
        let mut sink = HashingWriter::new(BlockSink::new(tx, block_size));
        let produced = producer(&mut sink)?;
        let (sink, sha256, bytes) = sink.finish();
        sink.finish()
            .map_err(|source| archive::ArchiveError::Write {
                at: "the last block".into(),
                source,
            })?;
        Ok::<_, anyhow::Error>((produced, sha256, bytes))
    });

    let slots = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut staging: JoinSet<Result<usize>> = JoinSet::new();
    let mut blocks = 0usize;
    let mut staged_bytes = 0u64;
    let mut done_bytes = 0u64;
    let mut last_report = Instant::now();
    let mut failure: Option<anyhow::Error> = None;

    loop {
        // A free slot first, then the next block: a block waits in the channel (bounded by
        // `queue`), never here as one more.
        let permit = Arc::clone(&slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let Some(data) = rx.recv().await else {
            break;
        };
        // Collect finished blocks first, so a failure stops the upload early.
        while let Some(joined) = staging.try_join_next() {
            match joined
                .map_err(|e| anyhow!("a block upload task failed: {e}"))
                .and_then(|r| r)
            {
                Ok(len) => done_bytes += len as u64,
                Err(e) => failure = Some(e),
            }
        }
        if failure.is_some() {
            break;
        }
        let (client, retry, console2, token2) = (
            Arc::clone(&client),
            Arc::clone(&retry),
            Arc::clone(console),
            token.clone(),
        );
        let index = blocks;
        let len = data.len();
        staged_bytes += len as u64;
        blocks += 1;
        staging.spawn(async move {
            let _permit = permit;
            stage_block(&client, &token2, index, data, &retry, &console2).await?;
            Ok(len)
        });
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            console.info(progress_line(done_bytes, started.elapsed()));
        }
    }
    // Either the archiver finished (channel closed) or a block failed.
    drop(rx);
    while let Some(joined) = staging.join_next().await {
        match joined
            .map_err(|e| anyhow!("a block upload task failed: {e}"))
            .and_then(|r| r)
        {
            Ok(len) => done_bytes += len as u64,
            Err(e) => {
                if failure.is_none() {
                    failure = Some(e);
                }
            }
        }
    }
    let archived = archiver
        .await
        .map_err(|e| anyhow!("the archiver failed: {e}"))?;

    let outcome = match (failure, archived) {
        (Some(e), _) => Err(e.context(format!(
            "uploading {} stopped after {} of the {} MiB written so far",
            store.blob_url(blob),
            mib(done_bytes),
            mib(staged_bytes)
        ))),
        (None, Err(e)) => Err(e),
        (None, Ok((produced, sha256, bytes))) => {
            match commit(&client, store, blob, &token, blocks).await {
                Ok(()) => Ok(Streamed {
                    blob: blob.to_owned(),
                    bytes,
                    sha256,
                    blocks,
                    elapsed: started.elapsed(),
                    produced,
                }),
                Err(e) => {
                    if e.downcast_ref::<BlobTaken>().is_some() {
                        // Another run's blob: nothing of ours to clean up there (our blocks,
                        // under our own ids, are discarded by Storage); leave it alone.
                        return Err(e);
                    }
                    Err(e)
                }
            }
        }
    };
    if outcome.is_err() {
        discard(&client, store, blob, &token, console).await;
    }
    outcome
}

/// Metadata a commit leaves on the blob: a token unique to that upload, by which a commit whose
/// answer was lost is recognised as the task's own.
pub const UPLOAD_TOKEN_METADATA: &str = "aibtaskupload";

/// The blob name is taken by a blob this upload did not write: another job's. Left untouched;
/// the caller takes a fresh name.
#[derive(Debug, thiserror::Error)]
#[error("blob {0} exists already, written by another run; it was left untouched")]
pub struct BlobTaken(pub String);

/// Whether a Storage refusal says the blob exists (a failed `If-None-Match: *` condition:
/// "Specifying Conditional Headers for Blob Service Operations" answers 409 `BlobAlreadyExists`
/// for a write to an existing blob, or 412 `ConditionNotMet`).
fn exists_already(e: &azure_core::Error) -> bool {
    use azure_core::http::StatusCode;
    matches!(
        e.http_status(),
        Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
    )
}

/// A commit that takes effect only where no blob exists (`If-None-Match: *`) and marks the blob
/// with this upload's `token`.
fn only_where_absent(token: &str) -> BlockBlobClientCommitBlockListOptions<'static> {
    BlockBlobClientCommitBlockListOptions {
        if_none_match: Some("*".into()),
        metadata: Some(HashMap::from([(
            UPLOAD_TOKEN_METADATA.to_owned(),
            token.to_owned(),
        )])),
        ..Default::default()
    }
}

/// Whose blob is at `blob`: `Some(true)` when it carries this upload's `token`.
async fn written_by(store: &BlobStore, blob: &str, token: &str) -> Result<Option<bool>> {
    Ok(store
        .blob_metadata(blob)
        .await?
        .map(|m| m.get(UPLOAD_TOKEN_METADATA).map(String::as_str) == Some(token)))
}

/// Commits `blocks` blocks as `blob`, never over an existing blob: `If-None-Match: *`, with this
/// upload's `token` in the metadata. A refusal because the blob exists is checked against the
/// token: the SDK retries a commit whose answer was lost, and the retry meets the first.
async fn commit(
    client: &BlockBlobClient,
    store: &BlobStore,
    blob: &str,
    token: &str,
    blocks: usize,
) -> Result<()> {
    let list = BlockLookupList {
        latest: Some((0..blocks).map(|i| block_id(token, i)).collect()),
        ..Default::default()
    };
    let refused = match client
        .commit_block_list(list.try_into()?, Some(only_where_absent(token)))
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    if exists_already(&refused) {
        match written_by(store, blob, token).await? {
            Some(true) => return Ok(()),
            Some(false) => return Err(BlobTaken(store.blob_url(blob).to_string()).into()),
            // No blob after all: the refusal meant something else; say what Storage said.
            None => {}
        }
    }
    Err(anyhow!(crate::auth::error_chain(&refused)).context(format!(
        "committing the {blocks} blocks of {} failed",
        store.blob_url(blob)
    )))
}

/// Removes a failed upload: committing an empty block list (only where no blob exists, so never
/// over another run's) drops every uncommitted block, and the empty blob, this upload's own by
/// its token, is deleted. A blob this upload committed after all (its answer lost) is deleted
/// too; another run's is left alone.
async fn discard(
    client: &BlockBlobClient,
    store: &BlobStore,
    blob: &str,
    token: &str,
    console: &Console,
) {
    let empty = BlockLookupList {
        latest: Some(Vec::new()),
        ..Default::default()
    };
    let emptied = match empty.try_into() {
        Ok(body) => client
            .commit_block_list(body, Some(only_where_absent(token)))
            .await
            .is_ok(),
        Err(_) => false,
    };
    let owner = if emptied {
        Some(true)
    } else {
        written_by(store, blob, token).await.ok().flatten()
    };
    if owner != Some(true) {
        console.warning(format!(
            "the partial upload {} may leave uncommitted blocks, which Azure Storage discards after 7 days{}",
            store.blob_url(blob),
            if owner == Some(false) {
                "; the blob of that name belongs to another run and was left alone"
            } else {
                ""
            }
        ));
        return;
    }
    match store.delete_blob(blob).await {
        Ok(()) => console.info(format!(
            "removed the partial upload {}",
            store.blob_url(blob)
        )),
        Err(e) => console.warning(format!(
            "could not remove the partial upload {}: {e:#}. Delete it with: {}",
            store.blob_url(blob),
            store.delete_hint(blob)
        )),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// "uploaded 512.0 MiB in 12 s (42.7 MiB/s)".
pub fn progress_line(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!(
        "uploaded {} MiB in {:.0} s ({:.1} MiB/s)",
        mib(bytes),
        secs,
        bytes as f64 / (1024.0 * 1024.0) / secs
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_one_length_and_sort_in_order() {
        let ids: Vec<Vec<u8>> = [0, 1, 9, 10, 49_999]
            .into_iter()
            .map(|i| block_id("0f1e2d3c4b5a69788796a5b4c3d2e1f0", i))
            .collect();
        assert!(
            ids.iter()
                .all(|id| id.len() == ids[0].len() && id.len() <= 64)
        );
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
    }

    #[test]
    fn the_sink_cuts_exact_blocks_and_a_short_last_one() {
        let (tx, mut rx) = mpsc::channel(100);
        let mut sink = BlockSink::new(tx, 4);
        sink.write_all(b"abcdefghij").unwrap();
        sink.finish().unwrap();
        let mut blocks = Vec::new();
        while let Ok(b) = rx.try_recv() {
            blocks.push(b);
        }
        assert_eq!(blocks, [&b"abcd"[..], b"efgh", b"ij"]);
    }

    #[test]
    fn the_sink_fails_once_the_uploader_is_gone() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut sink = BlockSink::new(tx, 2);
        let err = sink.write_all(b"abcd").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn progress_reads_well() {
        assert_eq!(
            progress_line(512 * 1024 * 1024, Duration::from_secs(12)),
            "uploaded 512.0 MiB in 12 s (42.7 MiB/s)"
        );
    }
}
