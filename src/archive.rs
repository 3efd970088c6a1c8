//! The artifact archive: the build path's contents as one zip, written in a single pass to any
//! [`Write`] (in the task, the stream that uploads the blob Image Builder downloads), never
//! seeking back and never holding a whole file in memory.
//!
//! This module owns three steps, in this order:
//!
//! 1. **Plan** (I/O, read-only): resolve the build path, walk it, follow the symbolic links that
//!    stay inside it, and list every entry with its size, mode and modification time. Every
//!    refusal (missing or empty build path, escaping or dangling link, loop, name that is not
//!    UTF-8, socket or device) is raised here, before the first byte reaches the sink.
//! 2. **Decide** (pure): for each file, stored or deflated ([`compression_by_name`], then a probe
//!    of its first [`PROBE_LEN`] bytes, [`Probe`]), whether its entry needs Zip64
//!    ([`needs_zip64`], from the size known before reading), and its DOS and Unix times.
//! 3. **Write**: stream each file through the `zip` crate's non-seeking writer with a fixed
//!    buffer. Entries carry data descriptors (the CRC is only known after the data); the central
//!    directory, with Zip64 records where sizes, offsets or the entry count need them, comes last.
//!
//! The archive holds the *contents* of the build path at its root (not the folder itself), with
//! `/` separators, UTF-8 names (flagged as such when they are not ASCII), every directory as a
//! `dir/` entry (so empty ones survive), Unix permission bits in the external attributes, and
//! modification times both as DOS time (in UTC, so that the archive does not depend on the
//! agent's time zone) and as an extended timestamp (which Info-ZIP `unzip` restores). Entries
//! come depth-first, siblings in byte order of their names, each directory before its contents:
//! the same tree with the same times gives the same bytes.
//!
//! [`HashingWriter`] is for the uploader, which hashes the archive on its way to the blob.

use std::cell::Cell;
use std::fs::{self, File, Metadata};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use flate2::{Compress, Compression, FlushCompress, Status};
use sha2::{Digest, Sha256};
use zip::result::ZipError;
use zip::write::{FullFileOptions, SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, DateTime, System, ZipWriter};

/// The deflate level for entries that are compressed.
///
/// zlib-rs (like zlib-ng) has four algorithms: level 1 is "quick" (fixed Huffman codes only, so
/// binaries, hex or base64 barely shrink), 2 is greedy matching with dynamic codes, 3 to 6 are
/// "medium" and 7 to 9 lazy matching. Measured with zlib-rs 0.6.8 (release build, one core of
/// the development machine), output size and input speed:
///
/// | corpus                  | level 1        | level 2        | level 3        | level 6        |
/// |-------------------------|----------------|----------------|----------------|----------------|
/// | Rust sources, 42 MiB    | 26.9%, 397 MB/s| 21.3%, 201 MB/s| 19.4%, 133 MB/s| 17.9%, 66 MB/s |
/// | shared libraries, 57 MiB| 47.9%, 224 MB/s| 39.8%, 110 MB/s| 38.3%, 88 MB/s | 37.5%, 55 MB/s |
/// | JSON/JS/HTML, 35 MiB    | 22.3%, 447 MB/s| 17.7%, 252 MB/s| 16.2%, 239 MB/s| 14.8%, 123 MB/s|
///
/// The archive is compressed while it is uploaded, so the slower of the two sets the pace; on a
/// fast link (or the two shared cores of a hosted agent) that is the compression. Level 2 is 1.05
/// to 1.5 times as fast as level 3 and 2 to 3 times as fast as level 6, for output at most 10%
/// and 20% larger; level 1 is faster still, but makes sources and binaries a fifth larger,
/// which a slow link pays for. The probe uses the same level, so it predicts the real outcome.
pub const DEFLATE_LEVEL: u32 = 2;

/// How much of each file the probe compresses to decide whether deflate pays. For files no
/// larger than this the probe sees the whole file, so the choice is exact.
pub const PROBE_LEN: usize = 64 * 1024;

/// A file is deflated only if the probe compresses it to at most this share (in percent) of its
/// size. Saving less than a tenth is not worth compressing and decompressing: the upload is
/// usually faster than that saving.
pub const DEFLATE_MAX_PERCENT: usize = 90;

/// The one read buffer (also holds the probed chunk, which is written from it, not re-read).
const READ_BUFFER_LEN: usize = 256 * 1024;

/// Small writes (local headers, data descriptors, central directory records) are gathered into
/// blocks of this size before they reach the sink.
const WRITE_BUFFER_LEN: usize = 64 * 1024;

/// Extensions of formats that are already compressed: their entries are stored without probing.
/// Lowercase, without the dot. Formats that are only sometimes compressed (PDF, MSI, ISO, TAR)
/// are left to the probe.
pub const COMPRESSED_EXTENSIONS: &[&str] = &[
    // Archives and packages.
    "7z", "aab", "apk", "bz2", "cab", "crate", "deb", "ear", "egg", "gem", "gz", "ipa", "jar", "lz",
    "lz4", "lzma", "nupkg", "rar", "rpm", "snupkg", "tbz", "tbz2", "tgz", "txz", "tzst", "vsix",
    "war", "whl", "xz", "z", "zip", "zst", // Office documents (zip containers).
    "docx", "odp", "ods", "odt", "pptx", "xlsx", // Images.
    "avif", "gif", "heic", "jpeg", "jpg", "png", "webp", // Audio and video.
    "aac", "avi", "flac", "m4a", "m4v", "mkv", "mov", "mp3", "mp4", "ogg", "opus", "webm",
    // Fonts.
    "woff", "woff2",
];

/// Why the build path could not be archived. Every message names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the build path '{}' does not exist", .path.display())]
    Missing { path: PathBuf },

    #[error(
        "the build path '{}' is a file, not a folder: give the folder that holds what the image build needs",
        .path.display()
    )]
    NotAFolder { path: PathBuf },

    #[error("the build path '{}' has no folder name (is it the root of the file system?)", .path.display())]
    NoFolderName { path: PathBuf },

    #[error(
        "the build path '{}' is empty: it holds no files to send to the image build",
        .path.display()
    )]
    Empty { path: PathBuf },

    #[error("cannot read '{}': {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "the symbolic link '{}' points to '{}' ('{}'), outside the build path '{}': nothing outside the build path is archived; copy what it points to into the build path, or remove the link",
        .link.display(), .target.display(), .resolved.display(), .root.display()
    )]
    LinkEscapes {
        link: PathBuf,
        target: PathBuf,
        resolved: PathBuf,
        root: PathBuf,
    },

    #[error(
        "the symbolic link '{}' points to '{}', which does not exist: remove the link or create its target inside the build path",
        .link.display(), .target.display()
    )]
    LinkDangles { link: PathBuf, target: PathBuf },

    #[error(
        "'{}' leads back to '{}', a folder that contains it, through symbolic links: the archive would never end; remove the link",
        .path.display(), .target.display()
    )]
    Loop { path: PathBuf, target: PathBuf },

    #[error(
        "the name of '{}' is not valid UTF-8: zip entry names are UTF-8; rename it",
        .path.display()
    )]
    NonUtf8Name { path: PathBuf },

    #[error(
        "'{}' is neither a file, a folder nor a symbolic link (a socket, pipe or device): remove it from the build path",
        .path.display()
    )]
    NotAFile { path: PathBuf },

    #[error(
        "'{}' changed while it was being archived (it had {expected} bytes when the build path was read): archive only after every step that writes the build path has finished",
        .path.display()
    )]
    Changed { path: PathBuf, expected: u64 },

    #[error("writing the archive failed at '{at}': {source}")]
    Write {
        /// The entry being written, or `central directory`.
        at: String,
        #[source]
        source: io::Error,
    },
}

/// What [`write_archive`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Files plus directories.
    pub entries: u64,
    pub files: u64,
    pub directories: u64,
    pub stored_files: u64,
    pub deflated_files: u64,
    /// The files' sizes added up.
    pub input_bytes: u64,
    /// Bytes written to the sink.
    pub archive_bytes: u64,
}

/// How [`write_archive_with`] writes the archive. The default is what the task does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveOptions {
    /// Store every file, deflating none and probing none: the fastest archive that can be
    /// written (the staging benchmark's floor).
    pub store_only: bool,
}

/// The build path's last segment (used in blob and VM paths), after resolving `.`, `..`, a
/// trailing slash or a relative path against the current directory, and symbolic links.
pub fn folder_name(root: &Path) -> Result<String, ArchiveError> {
    let real = resolve_root(root)?;
    let name = real.file_name().ok_or_else(|| ArchiveError::NoFolderName {
        path: root.to_owned(),
    })?;
    name.to_str()
        .map(str::to_owned)
        .ok_or_else(|| ArchiveError::NonUtf8Name { path: real.clone() })
}

/// Writes the contents of the folder `root` as a zip archive to `sink`, and hands the sink back
/// with a summary. The sink only sees sequential writes; it is flushed at the end.
///
/// Everything that can be refused is refused before the first byte is written. If reading a
/// file or writing to the sink fails later, the sink has received the beginning of an archive
/// without its central directory (nothing more is written to it after the failure) and must be
/// discarded.
pub fn write_archive<W: Write>(root: &Path, sink: W) -> Result<(W, ArchiveSummary), ArchiveError> {
    write_archive_with(root, sink, &ArchiveOptions::default())
}

/// [`write_archive`], written as `options` say.
pub fn write_archive_with<W: Write>(
    root: &Path,
    sink: W,
    options: &ArchiveOptions,
) -> Result<(W, ArchiveSummary), ArchiveError> {
    let plan = plan(root)?;

    let closed = Rc::new(Cell::new(false));
    let gate = Gate {
        inner: sink,
        written: 0,
        closed: Rc::clone(&closed),
    };
    let mut zip = ZipWriter::new_stream(BufWriter::with_capacity(WRITE_BUFFER_LEN, gate));
    let mut buffer = vec![0u8; READ_BUFFER_LEN];
    let mut probe = Probe::new();
    let mut summary = ArchiveSummary::default();

    // The plan is consumed as the archive is written: each entry's names and paths are freed
    // while the writer's central directory records grow, so that the two do not add up.
    for entry in plan {
        let entry = &entry;
        let result = match entry.kind {
            Kind::Directory => add_directory(&mut zip, entry),
            Kind::File { size } => {
                add_file(&mut zip, entry, size, &mut buffer, &mut probe, options).map(|method| {
                    match method {
                        CompressionMethod::Stored => summary.stored_files += 1,
                        _ => summary.deflated_files += 1,
                    }
                    summary.input_bytes += size;
                })
            }
        };
        if let Err(error) = result {
            // Dropping the writer would finish the archive with what it has so far: a valid,
            // incomplete zip. Close the gate so that nothing more reaches the sink.
            closed.set(true);
            return Err(error);
        }
        match entry.kind {
            Kind::Directory => summary.directories += 1,
            Kind::File { .. } => summary.files += 1,
        }
    }
    summary.entries = summary.files + summary.directories;

    let central_directory = |source| {
        closed.set(true);
        ArchiveError::Write {
            at: "central directory".to_owned(),
            source,
        }
    };
    let buffered: BufWriter<Gate<W>> = zip
        .finish()
        .map_err(|e| central_directory(zip_to_io(e)))?
        .into_inner();
    let mut gate = buffered
        .into_inner()
        .map_err(|e| central_directory(e.into_error()))?;
    gate.inner.flush().map_err(central_directory)?;
    summary.archive_bytes = gate.written;
    Ok((gate.inner, summary))
}

/// A [`Write`] that computes the SHA-256 and the length of everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, the SHA-256 of the bytes it accepted, and their number.
    pub fn finish(self) -> (W, [u8; 32], u64) {
        (self.inner, self.hasher.finalize().into(), self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// Decide: pure rules.

/// `Some(Stored)` for names whose extension says the content is already compressed, `None` when
/// the probe must decide.
pub fn compression_by_name(name: &str) -> Option<CompressionMethod> {
    let file_name = name.rsplit('/').next().unwrap_or(name);
    let (stem, extension) = file_name.rsplit_once('.')?;
    if stem.is_empty() {
        return None; // a dot file such as `.gz` has no extension
    }
    let extension = extension.to_ascii_lowercase();
    COMPRESSED_EXTENSIONS
        .contains(&extension.as_str())
        .then_some(CompressionMethod::Stored)
}

/// Whether an entry must be written with Zip64 sizes, decided before reading from the size in
/// the file's metadata. A deflated entry may come out slightly larger than its input (by at most
/// 5 bytes per stored block of up to 64 KiB, plus a few); the margin covers that, so that a
/// file just under 4 GiB that does not compress cannot overflow a 32-bit size.
pub fn needs_zip64(size: u64, method: CompressionMethod) -> bool {
    let worst = match method {
        CompressionMethod::Stored => size,
        _ => size + size / 4096 + 1024,
    };
    worst >= zip::ZIP64_BYTES_THR
}

/// Civil date and time (UTC) of a Unix time in seconds: (year, month, day, hour, minute, second).
fn civil_utc(unix: i64) -> (i64, u8, u8, u8, u8, u8) {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's days-from-civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
    )
}

/// The DOS date and time of a Unix time, in UTC, clamped to what DOS time can hold
/// (1980-01-01 to 2107-12-31; seconds rounded down to even).
pub fn dos_time(unix: i64) -> DateTime {
    let (year, month, day, hour, minute, second) = civil_utc(unix);
    let clamped = if year < 1980 {
        DateTime::from_date_and_time(1980, 1, 1, 0, 0, 0)
    } else if year > 2107 {
        DateTime::from_date_and_time(2107, 12, 31, 23, 59, 58)
    } else {
        DateTime::from_date_and_time(year as u16, month, day, hour, minute, second)
    };
    clamped.unwrap_or_default()
}

/// The modification time for the extended timestamp field, if it fits the field as every reader
/// reads it (a non-negative signed 32-bit number of seconds: until 2038).
pub fn extended_timestamp(unix: i64) -> Option<u32> {
    u32::try_from(unix).ok().filter(|&t| t <= i32::MAX as u32)
}

/// Compresses a file's first chunk to tell whether deflating the file pays. Keeps its compressor
/// and output buffer between files.
pub struct Probe {
    compress: Compress,
    output: Vec<u8>,
}

impl Default for Probe {
    fn default() -> Self {
        Probe::new()
    }
}

impl Probe {
    pub fn new() -> Probe {
        Probe {
            compress: Compress::new(Compression::new(DEFLATE_LEVEL), false),
            // Room for the whole compressed chunk even if it does not shrink (deflate adds at
            // most 5 bytes per 16 KiB block, plus a few), so that every probe finishes its
            // stream. Stopping early with a buffer cut to the threshold would be cheaper, but
            // zlib-rs 0.6.8 can panic ("buf.len() must fit in remaining()") when a compressor
            // reset after such an unfinished stream is given a buffer of a few bytes.
            output: vec![0; PROBE_LEN + PROBE_LEN / 1024 + 64],
        }
    }

    /// Whether `head` (at most [`PROBE_LEN`] bytes are looked at) deflates to at most
    /// [`DEFLATE_MAX_PERCENT`] of its size.
    pub fn deflate_pays(&mut self, head: &[u8]) -> bool {
        let head = &head[..head.len().min(PROBE_LEN)];
        self.compress.reset();
        let before = self.compress.total_out();
        let finished = matches!(
            self.compress
                .compress(head, &mut self.output, FlushCompress::Finish),
            Ok(Status::StreamEnd)
        );
        let compressed = self.compress.total_out() - before;
        finished && compressed <= (head.len() * DEFLATE_MAX_PERCENT / 100) as u64
    }

    /// Stored or deflated, for a file named `name` of `size` bytes that starts with `head`.
    pub fn choose(&mut self, name: &str, size: u64, head: &[u8]) -> CompressionMethod {
        if size == 0 {
            return CompressionMethod::Stored;
        }
        if let Some(method) = compression_by_name(name) {
            return method;
        }
        if self.deflate_pays(head) {
            CompressionMethod::Deflated
        } else {
            CompressionMethod::Stored
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plan: walk the build path.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Directory,
    File { size: u64 },
}

/// One entry of the archive, as planned before anything is written.
#[derive(Debug)]
struct Planned {
    /// The entry name: `a/b.txt`, or `a/dir/` for a directory.
    name: String,
    /// Where the content is read: the real path, symbolic links resolved.
    source: PathBuf,
    /// The path as the user sees it (the build path joined with the entry name), for messages.
    shown: PathBuf,
    kind: Kind,
    /// Permission bits.
    mode: u32,
    /// Modification time, Unix seconds.
    mtime: i64,
}

fn unreadable(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Unreadable {
        path: path.to_owned(),
        source,
    }
}

/// The canonical build path, which must be a folder.
fn resolve_root(root: &Path) -> Result<PathBuf, ArchiveError> {
    let real = fs::canonicalize(root).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            ArchiveError::Missing {
                path: root.to_owned(),
            }
        } else {
            ArchiveError::Unreadable {
                path: root.to_owned(),
                source,
            }
        }
    })?;
    let meta = fs::metadata(&real).map_err(unreadable(root))?;
    if !meta.is_dir() {
        return Err(ArchiveError::NotAFolder {
            path: root.to_owned(),
        });
    }
    Ok(real)
}

/// Every entry of the archive in order, or the first reason to refuse the build path.
fn plan(root: &Path) -> Result<Vec<Planned>, ArchiveError> {
    let real_root = resolve_root(root)?;
    let mut walk = Walk {
        root: real_root.clone(),
        entries: Vec::new(),
        stack: vec![real_root.clone()],
    };
    walk.directory(&real_root, "")?;
    if !walk
        .entries
        .iter()
        .any(|e| matches!(e.kind, Kind::File { .. }))
    {
        return Err(ArchiveError::Empty {
            path: root.to_owned(),
        });
    }
    Ok(walk.entries)
}

struct Walk {
    /// The canonical build path.
    root: PathBuf,
    entries: Vec<Planned>,
    /// Real paths of the directories being walked, outermost first: a directory met again
    /// inside itself (through a link) would make the walk endless.
    stack: Vec<PathBuf>,
}

impl Walk {
    /// Adds the entries under the directory whose real path is `real` and entry name `prefix`
    /// (empty for the root, else ending with `/`).
    fn directory(&mut self, real: &Path, prefix: &str) -> Result<(), ArchiveError> {
        let shown_dir = self.root.join(prefix);
        let mut names = Vec::new();
        for item in fs::read_dir(real).map_err(unreadable(&shown_dir))? {
            let item = item.map_err(unreadable(&shown_dir))?;
            let name = item
                .file_name()
                .into_string()
                .map_err(|raw| ArchiveError::NonUtf8Name {
                    path: shown_dir.join(raw),
                })?;
            names.push(name);
        }
        names.sort_unstable();

        for name in names {
            let entry_name = format!("{prefix}{name}");
            let shown = self.root.join(&entry_name);
            let real_child = real.join(&name);
            let meta = fs::symlink_metadata(&real_child).map_err(unreadable(&shown))?;
            let (source, meta) = if meta.file_type().is_symlink() {
                self.follow(&real_child, &shown)?
            } else {
                if meta.is_dir() && self.stack.contains(&real_child) {
                    return Err(ArchiveError::Loop {
                        path: shown,
                        target: real_child,
                    });
                }
                (real_child, meta)
            };
            if meta.is_dir() {
                let dir_name = format!("{entry_name}/");
                self.entries.push(Planned {
                    name: dir_name.clone(),
                    source: source.clone(),
                    shown,
                    kind: Kind::Directory,
                    mode: mode_of(&meta),
                    mtime: mtime_of(&meta),
                });
                self.stack.push(source.clone());
                self.directory(&source, &dir_name)?;
                self.stack.pop();
            } else if meta.is_file() {
                self.entries.push(Planned {
                    name: entry_name,
                    source,
                    shown,
                    kind: Kind::File { size: meta.len() },
                    mode: mode_of(&meta),
                    mtime: mtime_of(&meta),
                });
            } else {
                return Err(ArchiveError::NotAFile { path: shown });
            }
        }
        Ok(())
    }

    /// The real path and metadata of what the link at `link` points to, if that is inside the
    /// build path, exists, and is not a folder being walked (or one containing it).
    fn follow(&self, link: &Path, shown: &Path) -> Result<(PathBuf, Metadata), ArchiveError> {
        let target = fs::read_link(link).map_err(unreadable(shown))?;
        let resolved = match fs::canonicalize(link) {
            Ok(resolved) => resolved,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ArchiveError::LinkDangles {
                    link: shown.to_owned(),
                    target,
                });
            }
            Err(source) => {
                return Err(ArchiveError::Unreadable {
                    path: shown.to_owned(),
                    source,
                });
            }
        };
        if !resolved.starts_with(&self.root) {
            return Err(ArchiveError::LinkEscapes {
                link: shown.to_owned(),
                target,
                resolved,
                root: self.root.clone(),
            });
        }
        // Only now, inside the build path, is the target itself looked at.
        let meta = fs::metadata(&resolved).map_err(unreadable(shown))?;
        if meta.is_dir() && self.stack.iter().any(|open| open.starts_with(&resolved)) {
            return Err(ArchiveError::Loop {
                path: shown.to_owned(),
                target: resolved,
            });
        }
        Ok((resolved, meta))
    }
}

#[cfg(unix)]
fn mode_of(meta: &Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

/// Without Unix modes: folders and writable files as usual, read-only files read-only.
#[cfg(not(unix))]
fn mode_of(meta: &Metadata) -> u32 {
    if meta.is_dir() {
        0o755
    } else if meta.permissions().readonly() {
        0o444
    } else {
        0o644
    }
}

/// Modification time in Unix seconds (rounded down); 0 where the platform has none.
fn mtime_of(meta: &Metadata) -> i64 {
    match meta.modified().map(|t| t.duration_since(UNIX_EPOCH)) {
        Ok(Ok(after)) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Ok(Err(before)) => {
            let d = before.duration();
            -i64::try_from(d.as_secs()).unwrap_or(i64::MAX) - i64::from(d.subsec_nanos() > 0)
        }
        Err(_) => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Write.

type Sink<W> = StreamWriter<BufWriter<Gate<W>>>;

/// The sink, counting what it accepts. Once closed (after a failure), writes go nowhere, so that
/// the `zip` writer, which finishes the archive when dropped, cannot complete a partial one.
struct Gate<W> {
    inner: W,
    written: u64,
    closed: Rc<Cell<bool>>,
}

impl<W: Write> Write for Gate<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed.get() {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.closed.set(true);
                }
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed.get() {
            return Ok(());
        }
        self.inner.flush()
    }
}

fn zip_to_io(error: ZipError) -> io::Error {
    match error {
        ZipError::Io(e) => e,
        other => io::Error::other(other),
    }
}

fn options(
    entry: &Planned,
    method: CompressionMethod,
    large: bool,
) -> Result<FullFileOptions<'static, 'static>, ArchiveError> {
    let level = (method == CompressionMethod::Deflated).then_some(i64::from(DEFLATE_LEVEL));
    let simple = SimpleFileOptions::default()
        .system(System::Unix)
        .compression_method(method)
        .compression_level(level)
        .unix_permissions(entry.mode)
        .last_modified_time(dos_time(entry.mtime))
        .large_file(large);
    match extended_timestamp(entry.mtime) {
        Some(t) => simple
            .with_extended_timestamp(Some(t), None, None)
            .map_err(|e| write_error(entry, zip_to_io(e))),
        None => Ok(simple.into_full_options()),
    }
}

fn write_error(entry: &Planned, source: io::Error) -> ArchiveError {
    ArchiveError::Write {
        at: entry.name.clone(),
        source,
    }
}

fn add_directory<W: Write>(
    zip: &mut ZipWriter<Sink<W>>,
    entry: &Planned,
) -> Result<(), ArchiveError> {
    let options = options(entry, CompressionMethod::Stored, false)?;
    zip.add_directory(entry.name.as_str(), options)
        .map_err(|e| write_error(entry, zip_to_io(e)))
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Streams one file into the archive; returns the method it was written with. The first chunk
/// is read once, probed, and written from the same buffer.
fn add_file<W: Write>(
    zip: &mut ZipWriter<Sink<W>>,
    entry: &Planned,
    size: u64,
    buffer: &mut [u8],
    probe: &mut Probe,
    archive_options: &ArchiveOptions,
) -> Result<CompressionMethod, ArchiveError> {
    let changed = || ArchiveError::Changed {
        path: entry.shown.clone(),
        expected: size,
    };
    let mut file = File::open(&entry.source).map_err(unreadable(&entry.shown))?;

    let first_len = usize::try_from(size).map_or(buffer.len(), |s| s.min(buffer.len()));
    let got = read_full(&mut file, &mut buffer[..first_len]).map_err(unreadable(&entry.shown))?;
    if got < first_len {
        return Err(changed());
    }
    let method = if archive_options.store_only {
        CompressionMethod::Stored
    } else {
        probe.choose(&entry.name, size, &buffer[..got])
    };

    let options = options(entry, method, needs_zip64(size, method))?;
    zip.start_file(entry.name.as_str(), options)
        .map_err(|e| write_error(entry, zip_to_io(e)))?;
    zip.write_all(&buffer[..got])
        .map_err(|e| write_error(entry, e))?;

    let mut done = got as u64;
    while done < size {
        let want = usize::try_from(size - done).map_or(buffer.len(), |r| r.min(buffer.len()));
        let n = read_full(&mut file, &mut buffer[..want]).map_err(unreadable(&entry.shown))?;
        if n == 0 {
            return Err(changed());
        }
        zip.write_all(&buffer[..n])
            .map_err(|e| write_error(entry, e))?;
        done += n as u64;
    }
    // The size was fixed when the entry was planned (and Zip64 chosen from it): a file that
    // grew since would be cut short.
    if read_full(&mut file, &mut buffer[..1]).map_err(unreadable(&entry.shown))? != 0 {
        return Err(changed());
    }
    Ok(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_formats_are_known_by_extension() {
        for name in [
            "a.zip",
            "dir/b.tar.gz",
            "C.JPG",
            "x/y/z.nupkg",
            "p.whl",
            "f.woff2",
            "d.docx",
        ] {
            assert_eq!(
                compression_by_name(name),
                Some(CompressionMethod::Stored),
                "{name}"
            );
        }
        for name in [
            "a.txt",
            "zip",
            ".gz",
            "dir.zip/readme",
            "a.tar",
            "report.pdf",
            "setup.msi",
        ] {
            assert_eq!(compression_by_name(name), None, "{name}");
        }
    }

    #[test]
    fn extension_table_is_lowercase_sorted_within_groups_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for ext in COMPRESSED_EXTENSIONS {
            assert_eq!(*ext, ext.to_ascii_lowercase());
            assert!(!ext.starts_with('.'));
            assert!(seen.insert(ext), "{ext} twice");
        }
    }

    /// A deterministic xorshift stream: incompressible for deflate.
    fn noise(len: usize) -> Vec<u8> {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn probe_deflates_text_and_stores_noise() {
        let mut probe = Probe::new();
        let text = "fn main() { println!(\"hello, world\"); }\n".repeat(3000);
        assert!(probe.deflate_pays(text.as_bytes()));
        assert!(!probe.deflate_pays(&noise(PROBE_LEN)));
        // The compressor is reset between files.
        assert!(probe.deflate_pays(text.as_bytes()));
        // Hex digits: only dynamic Huffman codes shrink them.
        let hex: String = noise(20_000).iter().map(|b| format!("{b:02x}")).collect();
        assert!(probe.deflate_pays(hex.as_bytes()));
    }

    #[test]
    fn probe_survives_tiny_inputs_in_a_row() {
        // This sequence made zlib-rs panic at "87/99" when the output was cut to the threshold
        // (see `Probe::new`).
        let mut probe = Probe::new();
        for d in 0..100 {
            for i in (1..330).step_by(2) {
                assert!(!probe.deflate_pays(format!("{d}/{i}").as_bytes()));
            }
        }
        assert!(!probe.deflate_pays(&noise(PROBE_LEN * 2)));
        assert!(probe.deflate_pays(&[b'a'; 1000]));
    }

    #[test]
    fn probe_choice_for_empty_tiny_and_named_files() {
        let mut probe = Probe::new();
        assert_eq!(probe.choose("empty.txt", 0, b""), CompressionMethod::Stored);
        assert_eq!(probe.choose("one.txt", 1, b"x"), CompressionMethod::Stored);
        let text = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert_eq!(
            probe.choose("a.txt", text.len() as u64, text),
            CompressionMethod::Deflated
        );
        assert_eq!(
            probe.choose("a.gz", text.len() as u64, text),
            CompressionMethod::Stored
        );
    }

    #[test]
    fn zip64_is_decided_from_the_size_with_a_margin_for_deflate() {
        let four_gib = 1u64 << 32;
        assert!(!needs_zip64(four_gib - 2, CompressionMethod::Stored));
        assert!(needs_zip64(four_gib - 1, CompressionMethod::Stored));
        assert!(needs_zip64(four_gib - 2, CompressionMethod::Deflated));
        assert!(needs_zip64(
            four_gib - 1_000_000,
            CompressionMethod::Deflated
        ));
        assert!(!needs_zip64(
            four_gib - 2_000_000,
            CompressionMethod::Deflated
        ));
        assert!(!needs_zip64(0, CompressionMethod::Deflated));
    }

    #[test]
    fn dos_time_is_utc_and_clamped() {
        let t = dos_time(1_700_000_000); // 2023-11-14T22:13:20Z
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2023, 11, 14, 22, 13, 20)
        );
        let t = dos_time(951_825_601); // 2000-02-29T12:00:01Z: leap day, odd second
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2000, 2, 29, 12, 0, 0)
        );
        let t = dos_time(0);
        assert_eq!((t.year(), t.month(), t.day()), (1980, 1, 1));
        let t = dos_time(-86_400);
        assert_eq!((t.year(), t.month(), t.day()), (1980, 1, 1));
        let t = dos_time(5_000_000_000); // 2128
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2107, 12, 31, 23, 59, 58)
        );
    }

    #[test]
    fn civil_dates_round_the_calendar() {
        assert_eq!(civil_utc(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_utc(-1), (1969, 12, 31, 23, 59, 59));
        assert_eq!(civil_utc(1_798_761_599), (2026, 12, 31, 23, 59, 59));
        assert_eq!(civil_utc(4_107_542_400), (2100, 3, 1, 0, 0, 0));
    }

    #[test]
    fn extended_timestamp_only_within_signed_32_bits() {
        assert_eq!(extended_timestamp(0), Some(0));
        assert_eq!(extended_timestamp(1_700_000_000), Some(1_700_000_000));
        assert_eq!(extended_timestamp(-1), None);
        assert_eq!(extended_timestamp(i64::from(i32::MAX) + 1), None);
    }

    #[test]
    fn hashing_writer_hashes_and_counts() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        let (inner, digest, n) = w.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(n, 3);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_closed_gate_swallows_writes() {
        let closed = Rc::new(Cell::new(false));
        let mut gate = Gate {
            inner: Vec::new(),
            written: 0,
            closed: Rc::clone(&closed),
        };
        gate.write_all(b"kept").unwrap();
        closed.set(true);
        gate.write_all(b"lost").unwrap();
        assert_eq!(gate.inner, b"kept");
        assert_eq!(gate.written, 4);
    }
}
