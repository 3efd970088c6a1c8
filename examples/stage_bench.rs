//! The staging benchmark's worker: generates the corpus and does one measured step per run, so
//! that each step's peak RSS (`VmHWM` of this process) is its own. `benches/staging.py` drives it
//! (corpus, Azurite, the three ways to stage, the table); run that, not this.
//!
//! ```text
//! cargo build --release --example stage_bench
//! stage_bench corpus  --dir D [--size 1G] [--seed 42]      reproducible corpus
//! stage_bench stage   --root D --endpoint URL --key K [--store-only]
//!                                                          archive + block upload, streamed
//! stage_bench upload  --file F --endpoint URL --key K      an existing file, same uploader
//! stage_bench deflate --root D                             deflate cost of what we deflate
//! stage_bench archive --root D [--store-only]              archive to nowhere (CPU only)
//! ```
//!
//! Every measuring command prints one JSON object on standard output (`seconds`, byte counts,
//! `peak_rss_kib`); the task's own log lines go to standard error.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aib_task::agent::Console;
use aib_task::archive::{self, ArchiveOptions, DEFLATE_LEVEL, Method, Probe};
use aib_task::storage::{Access, BlobStore, StorageAccount};
use aib_task::transport::{TransportSettings, build_client};
use aib_task::upload::{self, UploadSettings};
use anyhow::{Context, Result, bail};
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use clap::{Args, Parser, Subcommand};
use flate2::{Compress, Compression, FlushCompress};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Staging benchmark worker (driven by benches/staging.py)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the reproducible corpus into DIR (which must not exist).
    Corpus {
        #[arg(long)]
        dir: PathBuf,
        /// Total size: 1G, 4G, 512M…
        #[arg(long, default_value = "1G")]
        size: String,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Archives ROOT and uploads it in blocks, streamed, as the task does.
    Stage {
        #[arg(long)]
        root: PathBuf,
        /// Store every file (the floor).
        #[arg(long)]
        store_only: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Uploads an existing file through the same block uploader.
    Upload {
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Deflates, at the archive's level, the files the archive deflates; times the deflating.
    Deflate {
        #[arg(long)]
        root: PathBuf,
    },
    /// Writes the archive to nowhere: archiving alone, without the upload.
    Archive {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        store_only: bool,
    },
}

#[derive(Args)]
struct Target {
    /// The account's blob endpoint, e.g. http://127.0.0.1:10000/devstoreaccount1/
    #[arg(long)]
    endpoint: url::Url,
    #[arg(long, default_value = "devstoreaccount1")]
    account: String,
    #[arg(long)]
    key: String,
    #[arg(long, default_value = "bench/staging.zip")]
    blob: String,
    #[arg(long, default_value_t = UploadSettings::default().block_size)]
    block_size: usize,
    #[arg(long, default_value_t = UploadSettings::default().concurrency)]
    concurrency: usize,
    #[arg(long, default_value_t = UploadSettings::default().queue)]
    queue: usize,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Corpus { dir, size, seed } => corpus(&dir, parse_size(&size)?, seed),
        Command::Stage {
            root,
            store_only,
            target,
        } => runtime()?.block_on(async {
            let (store, settings, console) = connect(&target).await?;
            let started = Instant::now();
            let uploaded = upload::upload_archive_with(
                &store,
                root,
                &target.blob,
                &settings,
                &ArchiveOptions {
                    store_only,
                    ..ArchiveOptions::default()
                },
                &console,
            )
            .await?;
            let seconds = started.elapsed();
            let a = &uploaded.archive;
            report(json!({
                "seconds": seconds.as_secs_f64(),
                "input_bytes": a.input_bytes,
                "archive_bytes": uploaded.bytes,
                "files": a.files,
                "directories": a.directories,
                "stored_files": a.stored_files,
                "deflated_files": a.deflated_files,
                "blocks": uploaded.blocks,
                "sha256": uploaded.sha256_hex(),
            }))
        }),
        Command::Upload { file, target } => runtime()?.block_on(async {
            let (store, settings, console) = connect(&target).await?;
            let started = Instant::now();
            let uploaded =
                upload::upload_file(&store, file, &target.blob, &settings, &console).await?;
            report(json!({
                "seconds": started.elapsed().as_secs_f64(),
                "archive_bytes": uploaded.bytes,
                "blocks": uploaded.blocks,
                "sha256": uploaded.sha256_hex(),
            }))
        }),
        Command::Deflate { root } => deflate_cost(&root),
        Command::Archive { root, store_only } => {
            let started = Instant::now();
            let (_, a) = archive::write_archive_with(
                &root,
                io::sink(),
                &ArchiveOptions {
                    store_only,
                    ..ArchiveOptions::default()
                },
            )?;
            report(json!({
                "seconds": started.elapsed().as_secs_f64(),
                "input_bytes": a.input_bytes,
                "archive_bytes": a.archive_bytes,
                "stored_files": a.stored_files,
                "deflated_files": a.deflated_files,
            }))
        }
    }
}

/// The task's runtime (`cli.rs`): two workers.
fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Prints the figures with this process's peak RSS.
fn report(mut figures: serde_json::Value) -> Result<()> {
    figures["peak_rss_kib"] = json!(peak_rss_kib()?);
    println!("{figures}");
    Ok(())
}

/// `VmHWM` from /proc/self/status: the most resident memory this process ever had.
fn peak_rss_kib() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    Ok(line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?)
}

/// Never asked: the store signs its own SAS with the account key.
#[derive(Debug)]
struct NoToken;

#[async_trait::async_trait]
impl TokenCredential for NoToken {
    async fn get_token(
        &self,
        _: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            "the benchmark uses the account key",
        ))
    }
}

/// The store, with the task's HTTP client, and the container created.
async fn connect(target: &Target) -> Result<(BlobStore, UploadSettings, Arc<Console>)> {
    let console = Console::with_writer(Box::new(io::stderr()), false);
    let http = build_client(&TransportSettings::default(), &console)?;
    let mut endpoint = target.endpoint.clone();
    if !endpoint.path().ends_with('/') {
        let path = format!("{}/", endpoint.path());
        endpoint.set_path(&path);
    }
    let account = StorageAccount {
        id: format!("/bench/{}", target.account),
        name: target.account.clone(),
        blob_endpoint: endpoint,
        allow_shared_key_access: Some(true),
        network: Default::default(),
    };
    let store = BlobStore::new(
        account,
        Access::AccountKey(Secret::new(target.key.clone())),
        Arc::new(NoToken),
        http,
        Arc::clone(&console),
    );
    store.ensure_container().await?;
    let settings = UploadSettings {
        block_size: target.block_size,
        concurrency: target.concurrency,
        queue: target.queue,
    };
    Ok((store, settings, console))
}

// ---------------------------------------------------------------------------------------------
// Deflate cost.

/// Reads every file under `root`; those the archive would deflate (same probe, same level) are
/// deflated whole into a scratch buffer. Only the deflating is timed: reading is the floor's
/// business too.
fn deflate_cost(root: &Path) -> Result<()> {
    let mut files = Vec::new();
    walk(root, &mut files)?;
    files.sort();
    let mut probe = Probe::new();
    let mut compress = Compress::new(Compression::new(DEFLATE_LEVEL), false);
    let mut input = vec![0u8; 256 * 1024];
    let mut output = vec![0u8; 512 * 1024];
    let (mut deflated_in, mut deflated_out, mut deflated_files) = (0u64, 0u64, 0u64);
    let mut busy = Duration::ZERO;
    let started = Instant::now();
    for path in &files {
        let name = path.strip_prefix(root)?.to_string_lossy().into_owned();
        let mut file = File::open(path)?;
        let size = file.metadata()?.len();
        let first = read_full(&mut file, &mut input)?;
        if probe.choose(&name, size, &input[..first]) != Method::Deflated {
            continue;
        }
        deflated_files += 1;
        compress.reset();
        let mut len = first;
        loop {
            let last = len < input.len();
            let flush = if last {
                FlushCompress::Finish
            } else {
                FlushCompress::None
            };
            let t = Instant::now();
            let mut chunk = &input[..len];
            loop {
                let (before_in, before_out) = (compress.total_in(), compress.total_out());
                let status = compress.compress(chunk, &mut output, flush)?;
                chunk = &chunk[(compress.total_in() - before_in) as usize..];
                let produced = compress.total_out() - before_out;
                if chunk.is_empty()
                    && (!last || status == flate2::Status::StreamEnd)
                    && produced < output.len() as u64
                {
                    break;
                }
            }
            busy += t.elapsed();
            if last {
                break;
            }
            len = read_full(&mut file, &mut input)?;
        }
        deflated_in += compress.total_in();
        deflated_out += compress.total_out();
    }
    report(json!({
        "seconds": busy.as_secs_f64(),
        "wall_seconds": started.elapsed().as_secs_f64(),
        "deflated_files": deflated_files,
        "input_bytes": deflated_in,
        "output_bytes": deflated_out,
    }))
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), files)?;
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

// ---------------------------------------------------------------------------------------------
// Corpus.

fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim().to_ascii_uppercase();
    let t = t.trim_end_matches("IB").trim_end_matches('B');
    let (number, unit) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1u64 << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: f64 = number
        .parse()
        .with_context(|| format!("not a size: '{text}' (try 1G, 4G, 512M)"))?;
    Ok((n * unit as f64) as u64)
}

/// xoshiro256** seeded through SplitMix64: the same seed gives the same corpus everywhere.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    fn next(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// Log-uniform in `lo..hi`: many small, some large.
    fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let u = self.below(1 << 53) as f64 / (1u64 << 53) as f64;
        ((lo as f64) * ((hi as f64) / (lo as f64)).powf(u)) as u64
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

const WORDS: &[&str] = &[
    "account",
    "archive",
    "block",
    "buffer",
    "build",
    "cache",
    "client",
    "config",
    "context",
    "customizer",
    "data",
    "deploy",
    "disk",
    "distribute",
    "entry",
    "error",
    "event",
    "file",
    "gallery",
    "handler",
    "image",
    "index",
    "input",
    "item",
    "job",
    "key",
    "list",
    "location",
    "manager",
    "message",
    "name",
    "network",
    "node",
    "output",
    "package",
    "path",
    "pipeline",
    "plan",
    "policy",
    "queue",
    "record",
    "region",
    "release",
    "request",
    "resource",
    "response",
    "result",
    "retry",
    "script",
    "secret",
    "service",
    "session",
    "source",
    "stage",
    "state",
    "status",
    "storage",
    "stream",
    "subscription",
    "task",
    "template",
    "tenant",
    "timeout",
    "token",
    "update",
    "upload",
    "user",
    "value",
    "version",
    "vm",
    "window",
    "worker",
];
const TYPES: &[&str] = &[
    "String",
    "u64",
    "usize",
    "bool",
    "Vec<u8>",
    "Option<String>",
    "Result<()>",
    "Path",
    "Config",
    "Client",
    "Duration",
    "HashMap<String, String>",
];
const LEVELS: &[&str] = &[
    "INFO ", "INFO ", "INFO ", "DEBUG", "DEBUG", "WARN ", "ERROR",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "PUT", "POST", "DELETE"];
const STATUSES: &[&str] = &[
    "200", "200", "200", "201", "202", "204", "404", "409", "429", "500",
];
const SOURCE_EXTENSIONS: &[&str] = &["rs", "ts", "js", "py", "cs", "go", "json", "yml", "md"];
const NOISE_EXTENSIONS: &[&str] = &[
    "bin", "bin", "dat", "so", "zip", "gz", "png", "jpg", "nupkg", "tgz",
];

fn ident(rng: &mut Rng, out: &mut Vec<u8>) {
    out.extend_from_slice(rng.pick(WORDS).as_bytes());
    if rng.below(2) == 0 {
        out.push(b'_');
        out.extend_from_slice(rng.pick(WORDS).as_bytes());
    }
}

/// One line of source-like text.
fn source_line(rng: &mut Rng, depth: &mut usize, out: &mut Vec<u8>) {
    let indent = |out: &mut Vec<u8>, d: usize| out.extend(std::iter::repeat_n(b' ', d * 4));
    match rng.below(12) {
        0 if *depth < 4 => {
            indent(out, *depth);
            out.extend_from_slice(b"pub fn ");
            ident(rng, out);
            out.extend_from_slice(b"(&self, ");
            ident(rng, out);
            write!(out, ": {}) -> {} {{", rng.pick(TYPES), rng.pick(TYPES)).unwrap();
            *depth += 1;
        }
        1 | 2 if *depth > 0 => {
            *depth -= 1;
            indent(out, *depth);
            out.push(b'}');
        }
        3 => {
            indent(out, *depth);
            out.extend_from_slice(b"// ");
            for _ in 0..3 + rng.below(9) {
                out.extend_from_slice(rng.pick(WORDS).as_bytes());
                out.push(b' ');
            }
        }
        4 if *depth < 4 => {
            indent(out, *depth);
            out.extend_from_slice(b"if ");
            ident(rng, out);
            write!(out, " > {} {{", rng.below(10_000)).unwrap();
            *depth += 1;
        }
        5 => {
            indent(out, *depth);
            out.extend_from_slice(b"console.info(format!(\"");
            for _ in 0..2 + rng.below(6) {
                out.extend_from_slice(rng.pick(WORDS).as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(b"{}\", ");
            ident(rng, out);
            out.extend_from_slice(b"));");
        }
        _ => {
            indent(out, *depth);
            out.extend_from_slice(b"let ");
            ident(rng, out);
            out.extend_from_slice(b" = ");
            ident(rng, out);
            out.push(b'.');
            ident(rng, out);
            out.push(b'(');
            ident(rng, out);
            write!(out, ", {})?;", rng.below(100_000)).unwrap();
        }
    }
    out.push(b'\n');
}

/// One line of a log or of JSON lines.
fn record_line(rng: &mut Rng, json: bool, n: u64, out: &mut Vec<u8>) {
    let (h, m, s, ms) = (n / 3_600_000 % 24, n / 60_000 % 60, n / 1000 % 60, n % 1000);
    if json {
        write!(
            out,
            "{{\"id\":{n},\"time\":\"2026-11-27T{h:02}:{m:02}:{s:02}.{ms:03}Z\",\"level\":\"{}\",\"resource\":\"/subscriptions/{:08x}/resourceGroups/rg-{}/providers/Microsoft.Compute/images/{}-{}\",\"durationMs\":{},\"ok\":{},\"tags\":[\"{}\",\"{}\"]}}",
            rng.pick(LEVELS).trim(),
            rng.below(16) * 0x1111_1111,
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.below(1000),
            rng.below(5000),
            rng.below(4) != 0,
            rng.pick(WORDS),
            rng.pick(WORDS),
        )
        .unwrap();
    } else {
        write!(
            out,
            "2026-11-27T{h:02}:{m:02}:{s:02}.{ms:03}Z {} [worker-{}] {} /api/{}/{}/{} status={} duration_ms={} request_id={:016x}",
            rng.pick(LEVELS),
            rng.below(8),
            rng.pick(METHODS),
            rng.pick(WORDS),
            rng.below(100_000),
            rng.pick(WORDS),
            rng.pick(STATUSES),
            rng.below(3000),
            rng.next(),
        )
        .unwrap();
    }
    out.push(b'\n');
}

/// What the corpus is made of, as shares of its size: source-like small files, large logs and
/// JSON lines, and incompressible data (some named as compressed formats, some not).
const SMALL_TEXT_SHARE: f64 = 0.15;
const LARGE_TEXT_SHARE: f64 = 0.50;

fn corpus(dir: &Path, total: u64, seed: u64) -> Result<()> {
    if dir.exists() {
        bail!("{} exists: give a new folder", dir.display());
    }
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let small_budget = (total as f64 * SMALL_TEXT_SHARE) as u64;
    let large_budget = (total as f64 * LARGE_TEXT_SHARE) as u64;
    let noise_budget = total - small_budget - large_budget;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut files = 0u64;

    // Thousands of small source files, twenty-odd per folder, folders up to three deep.
    let mut written = 0u64;
    let mut folder = dir.join("src");
    let mut in_folder = 0;
    while written < small_budget {
        if in_folder == 0 {
            let depth = 1 + rng.below(3);
            folder = dir.join("src");
            for _ in 0..depth {
                folder.push(format!("{}_{}", rng.pick(WORDS), rng.below(50)));
            }
            fs::create_dir_all(&folder)?;
            in_folder = 10 + rng.below(30);
        }
        in_folder -= 1;
        let size = rng.log_uniform(200, 64 * 1024).min(small_budget - written);
        buf.clear();
        let mut depth = 0;
        while (buf.len() as u64) < size {
            source_line(&mut rng, &mut depth, &mut buf);
        }
        let name = format!(
            "{}_{files}.{}",
            rng.pick(WORDS),
            rng.pick(SOURCE_EXTENSIONS)
        );
        fs::write(folder.join(name), &buf)?;
        written += buf.len() as u64;
        files += 1;
    }

    // Large logs and JSON lines, 8 to 64 MiB each.
    let logs = dir.join("logs");
    fs::create_dir_all(&logs)?;
    let mut written = 0u64;
    let mut line = 0u64;
    while written < large_budget {
        let size = rng
            .log_uniform(8 << 20, 64 << 20)
            .min(large_budget - written);
        let json = rng.below(3) == 0;
        let name = format!(
            "{}-{files}.{}",
            rng.pick(WORDS),
            if json { "json" } else { "log" }
        );
        let mut out = BufWriter::with_capacity(1 << 20, File::create(logs.join(name))?);
        let mut done = 0u64;
        while done < size {
            buf.clear();
            while buf.len() < 1 << 20 {
                line += 1 + rng.below(400);
                record_line(&mut rng, json, line, &mut buf);
            }
            out.write_all(&buf)?;
            done += buf.len() as u64;
        }
        out.flush()?;
        written += done;
        files += 1;
    }

    // Incompressible data: 64 KiB to 48 MiB each; some names say "compressed", others do not
    // (the probe finds out).
    let assets = dir.join("assets");
    fs::create_dir_all(&assets)?;
    let mut written = 0u64;
    buf.resize(1 << 20, 0);
    while written < noise_budget {
        let size = rng
            .log_uniform(64 << 10, 48 << 20)
            .min(noise_budget - written);
        let name = format!("blob_{files}.{}", rng.pick(NOISE_EXTENSIONS));
        let mut out = File::create(assets.join(name))?;
        let mut done = 0u64;
        while done < size {
            let n = (size - done).min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..n]);
            out.write_all(&buf[..n])?;
            done += n as u64;
        }
        written += done;
        files += 1;
    }
    report(json!({
        "seconds": started.elapsed().as_secs_f64(),
        "files": files,
        "small_text_bytes": small_budget,
        "large_text_bytes": large_budget,
        "incompressible_bytes": noise_budget,
    }))
}
