//! The artifact archive: the build path's contents as one zip, written in a single pass to any
//! [`Write`] (in the task, the stream that uploads the blob Image Builder downloads), never
//! seeking back, never holding a whole file in memory, and with memory that does not grow with
//! the number of entries.
//!
//! This module owns three steps, in this order:
//!
//! 1. **Check** (read-only I/O, `walk.rs`): walk the build path once, following the symbolic
//!    links that stay inside it, without keeping what it finds. Every refusal (missing or empty
//!    build path, escaping or dangling link, loop, name that is not UTF-8, socket or device) is
//!    raised here, before the first byte reaches the sink.
//! 2. **Decide** (pure): for each file, stored or deflated ([`compression_by_name`], then a probe
//!    of its first [`PROBE_LEN`] bytes, [`Probe`]), whether its entry needs Zip64
//!    ([`needs_zip64`], from the size known before reading), and its DOS and Unix times.
//! 3. **Write** (`writer.rs`, records in `format.rs`): walk again and stream each file with a
//!    fixed buffer. Entries carry data descriptors (the CRC is only known after the data). Each
//!    entry's central directory record is encoded when the entry ends and kept in a bounded
//!    buffer that overflows to an anonymous temporary file (`central.rs`); the central
//!    directory, with Zip64 records where sizes, offsets or the entry count need them, comes
//!    last. The second walk applies the same checks, so a link that escapes the build path is
//!    refused even if it appeared after the first; a file whose size changes while it is read
//!    is refused by name.
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

mod central;
mod format;
mod walk;
mod writer;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, FlushCompress, Status};
use sha2::{Digest, Sha256};

pub use central::DEFAULT_MEMORY_LIMIT as CENTRAL_DIRECTORY_MEMORY;
pub use format::{DosTime, Method, ZIP64_THRESHOLD, dos_time, extended_timestamp};
use walk::{Entry, Kind, Walk, unreadable};
use writer::ZipStream;

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
        "the path of '{}' inside the build path is longer than the 65,535 bytes a zip entry name can hold: shorten it",
        .path.display()
    )]
    NameTooLong { path: PathBuf },

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// Whether the central directory outgrew [`ArchiveOptions::central_directory_memory`] and
    /// waited in a temporary file.
    pub central_directory_on_disk: bool,
    /// The longest file's entry name, and the longest folder's (without its trailing `/`),
    /// counted in UTF-16 units as Windows counts path lengths ([`utf16_len`]): what decides
    /// whether the tree fits under Windows' `MAX_PATH` once extracted. The first of equals.
    pub longest_file: String,
    pub longest_folder: String,
}

/// A name's length in UTF-16 units, the unit of Windows path limits.
pub fn utf16_len(name: &str) -> usize {
    name.encode_utf16().count()
}

/// Keeps `name` in `longest` if it is longer. A name's UTF-8 bytes are never fewer than its
/// UTF-16 units, so most names are passed over without being counted.
fn keep_longest(longest: &mut String, longest_len: &mut usize, name: &str) {
    if name.len() > *longest_len {
        let len = utf16_len(name);
        if len > *longest_len {
            *longest_len = len;
            name.clone_into(longest);
        }
    }
}

/// How [`write_archive_with`] writes the archive. The default is what the task does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveOptions {
    /// Store every file, deflating none and probing none: the fastest archive that can be
    /// written (the staging benchmark's floor).
    pub store_only: bool,
    /// Bytes of central directory records held in memory; beyond them, records go to an
    /// anonymous temporary file.
    pub central_directory_memory: usize,
    /// Where that temporary file goes (the agent's temporary folder in a pipeline); the
    /// system's temporary folder when `None`.
    pub temp_dir: Option<PathBuf>,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            store_only: false,
            central_directory_memory: CENTRAL_DIRECTORY_MEMORY,
            temp_dir: None,
        }
    }
}

/// The build path's last segment (used in blob and VM paths), after resolving `.`, `..`, a
/// trailing slash or a relative path against the current directory, and symbolic links.
pub fn folder_name(root: &Path) -> Result<String, ArchiveError> {
    let real = walk::resolve_root(root)?;
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
/// Everything that can be refused is refused before the first byte is written (only a tree
/// that changes while it is archived can be refused later, by name). If that happens, or
/// reading a file or writing to the sink fails, the sink has received the beginning of an
/// archive without its central directory (nothing more is written to it after the failure) and
/// must be discarded.
pub fn write_archive<W: Write>(root: &Path, sink: W) -> Result<(W, ArchiveSummary), ArchiveError> {
    write_archive_with(root, sink, &ArchiveOptions::default())
}

/// [`write_archive`], written as `options` say.
pub fn write_archive_with<W: Write>(
    root: &Path,
    sink: W,
    options: &ArchiveOptions,
) -> Result<(W, ArchiveSummary), ArchiveError> {
    check(root)?;

    let mut zip = ZipStream::new(
        sink,
        DEFLATE_LEVEL,
        options.central_directory_memory,
        options.temp_dir.clone(),
    );
    let mut buffer = vec![0u8; READ_BUFFER_LEN];
    let mut probe = Probe::new();
    let mut summary = ArchiveSummary::default();
    let (mut longest_file, mut longest_folder) = (0, 0);

    for entry in Walk::new(root)? {
        let entry = entry?;
        match entry.kind {
            Kind::Directory => {
                add_directory(&mut zip, &entry)?;
                summary.directories += 1;
                let name = entry.name.strip_suffix('/').unwrap_or(&entry.name);
                keep_longest(&mut summary.longest_folder, &mut longest_folder, name);
            }
            Kind::File { size } => {
                keep_longest(&mut summary.longest_file, &mut longest_file, &entry.name);
                match add_file(&mut zip, &entry, size, &mut buffer, &mut probe, options)? {
                    Method::Stored => summary.stored_files += 1,
                    Method::Deflated => summary.deflated_files += 1,
                }
                summary.input_bytes += size;
                summary.files += 1;
            }
        }
    }
    summary.entries = summary.files + summary.directories;
    summary.central_directory_on_disk = zip.central_directory_spilled();

    let (sink, written) = zip.finish().map_err(|source| ArchiveError::Write {
        at: "central directory".to_owned(),
        source,
    })?;
    summary.archive_bytes = written;
    Ok((sink, summary))
}

/// Walks the build path once without writing: every reason to refuse it (no file at all, a link
/// that escapes or loops, a name that is not UTF-8, …), before the sink sees a byte, and before
/// any Azure call when the inputs are validated. Holds no more than the walk itself.
pub fn check(root: &Path) -> Result<(), ArchiveError> {
    let mut files = false;
    for entry in Walk::new(root)? {
        files |= matches!(entry?.kind, Kind::File { .. });
    }
    if files {
        Ok(())
    } else {
        Err(ArchiveError::Empty {
            path: root.to_owned(),
        })
    }
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
pub fn compression_by_name(name: &str) -> Option<Method> {
    let file_name = name.rsplit('/').next().unwrap_or(name);
    let (stem, extension) = file_name.rsplit_once('.')?;
    if stem.is_empty() {
        return None; // a dot file such as `.gz` has no extension
    }
    let extension = extension.to_ascii_lowercase();
    COMPRESSED_EXTENSIONS
        .contains(&extension.as_str())
        .then_some(Method::Stored)
}

/// Whether an entry must be written with Zip64 sizes, decided before reading from the size in
/// the file's metadata. A deflated entry may come out larger than its input: at levels 2 to 9 a
/// block ends after about 16K symbols, and data that does not compress is then sent as stored
/// blocks with 5 bytes of framing each. The margin is zlib's `deflateBound` for its default
/// settings (about 0.03%) plus 64 KiB, so that a file just under 4 GiB that stops compressing
/// after its probed head cannot overflow a 32-bit size.
pub fn needs_zip64(size: u64, method: Method) -> bool {
    let worst = match method {
        Method::Stored => size,
        Method::Deflated => size + (size >> 12) + (size >> 14) + (size >> 25) + 13 + 64 * 1024,
    };
    worst >= ZIP64_THRESHOLD
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
    pub fn choose(&mut self, name: &str, size: u64, head: &[u8]) -> Method {
        if size == 0 {
            return Method::Stored;
        }
        if let Some(method) = compression_by_name(name) {
            return method;
        }
        if self.deflate_pays(head) {
            Method::Deflated
        } else {
            Method::Stored
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Write.

fn write_error(entry: &Entry, source: io::Error) -> ArchiveError {
    ArchiveError::Write {
        at: entry.name.clone(),
        source,
    }
}

fn header(entry: &Entry, method: Method, zip64: bool) -> format::Header {
    format::Header {
        name: entry.name.clone(),
        directory: entry.kind == Kind::Directory,
        method,
        mode: entry.mode,
        time: dos_time(entry.mtime),
        unix_time: extended_timestamp(entry.mtime),
        zip64,
    }
}

fn add_directory<W: Write>(zip: &mut ZipStream<W>, entry: &Entry) -> Result<(), ArchiveError> {
    zip.begin(header(entry, Method::Stored, false))
        .map_err(|e| write_error(entry, e))
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
    zip: &mut ZipStream<W>,
    entry: &Entry,
    size: u64,
    buffer: &mut [u8],
    probe: &mut Probe,
    options: &ArchiveOptions,
) -> Result<Method, ArchiveError> {
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
    let method = if options.store_only {
        Method::Stored
    } else {
        probe.choose(&entry.name, size, &buffer[..got])
    };

    zip.begin(header(entry, method, needs_zip64(size, method)))
        .map_err(|e| write_error(entry, e))?;
    zip.data(&buffer[..got])
        .map_err(|e| write_error(entry, e))?;

    let mut done = got as u64;
    while done < size {
        let want = usize::try_from(size - done).map_or(buffer.len(), |r| r.min(buffer.len()));
        let n = read_full(&mut file, &mut buffer[..want]).map_err(unreadable(&entry.shown))?;
        if n == 0 {
            return Err(changed());
        }
        zip.data(&buffer[..n]).map_err(|e| write_error(entry, e))?;
        done += n as u64;
    }
    // The size was fixed when the entry was planned (and Zip64 chosen from it): a file that
    // grew since would be cut short.
    if read_full(&mut file, &mut buffer[..1]).map_err(unreadable(&entry.shown))? != 0 {
        return Err(changed());
    }
    zip.end_file().map_err(|e| write_error(entry, e))?;
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
            assert_eq!(compression_by_name(name), Some(Method::Stored), "{name}");
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
        assert_eq!(probe.choose("empty.txt", 0, b""), Method::Stored);
        assert_eq!(probe.choose("one.txt", 1, b"x"), Method::Stored);
        let text = b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        assert_eq!(
            probe.choose("a.txt", text.len() as u64, text),
            Method::Deflated
        );
        assert_eq!(
            probe.choose("a.gz", text.len() as u64, text),
            Method::Stored
        );
    }

    #[test]
    fn zip64_is_decided_from_the_size_with_a_margin_for_deflate() {
        let four_gib = 1u64 << 32;
        assert!(!needs_zip64(four_gib - 2, Method::Stored));
        assert!(needs_zip64(four_gib - 1, Method::Stored));
        assert!(needs_zip64(four_gib - 2, Method::Deflated));
        assert!(needs_zip64(four_gib - 1_000_000, Method::Deflated));
        // zlib's bound near 4 GiB is about 1.31 MB; with the slack, about 1.376 MB.
        assert!(needs_zip64(four_gib - 1_375_000, Method::Deflated));
        assert!(!needs_zip64(four_gib - 1_377_000, Method::Deflated));
        assert!(!needs_zip64(four_gib - 2_000_000, Method::Deflated));
        assert!(!needs_zip64(0, Method::Deflated));
    }

    #[test]
    fn the_longest_name_is_counted_in_utf16_units() {
        assert_eq!(utf16_len("abc"), 3);
        // Two UTF-8 bytes, one unit; three bytes, one unit; four bytes, two units.
        assert_eq!(utf16_len("ü日\u{1F600}"), 4);
        let (mut longest, mut len) = (String::new(), 0);
        for name in ["ab", "ü日", "abc", "日日", "\u{1F600}\u{1F600}", "abcd"] {
            keep_longest(&mut longest, &mut len, name);
        }
        // "ü日" (5 bytes) and "日日" (6 bytes) are 2 units, the emoji pair 4 like "abcd": the first
        // of equals stays.
        assert_eq!((longest.as_str(), len), ("\u{1F600}\u{1F600}", 4));
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
}
