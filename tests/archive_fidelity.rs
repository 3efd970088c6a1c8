//! The artifact archive as other tools see it: a tree with the awkward cases (Unicode and spaces
//! in names, deep nesting, empty files and folders, modes, links inside the build path,
//! compressed and incompressible content) is archived to a file through a non-seeking writer,
//! then extracted with Python's `zipfile` and with Info-ZIP `unzip` and compared with the source
//! byte for byte, mode for mode and (with `unzip`, which restores them) time for time. Also: the
//! refusals, determinism, and Zip64 (`long_zip64_*`: a file over 4 GiB, an archive over 4 GiB,
//! more than 65,535 entries). .NET's `ZipArchive` (through Mono) and bsdtar (Windows' `tar.exe`),
//! which Windows images extract with, read the same archives.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use aib_task::archive::{
    ArchiveError, ArchiveOptions, ArchiveSummary, HashingWriter, folder_name, write_archive,
    write_archive_with,
};
use aib_task::plan::Os;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// 2024-05-06T07:08:10Z: an even second, as DOS time keeps it.
const MTIME: u64 = 1_714_979_290;

const PYTHON: &str = r#"
import json, os, sys, zipfile
command, archive = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as z:
    infos = z.infolist()
    if command == "list":
        print(json.dumps([{
            "name": i.filename, "method": i.compress_type, "flags": i.flag_bits,
            "attr": i.external_attr, "size": i.file_size, "csize": i.compress_size,
            "date": list(i.date_time), "offset": i.header_offset,
            "version": i.extract_version, "extra": i.extra.hex(),
        } for i in infos]))
    elif command == "extract":
        dest = sys.argv[3]
        z.extractall(dest)
        # zipfile does not restore modes: do it from the external attributes, deepest first.
        for i in sorted(infos, key=lambda i: i.filename, reverse=True):
            os.chmod(os.path.join(dest, i.filename), (i.external_attr >> 16) & 0o7777)
    elif command == "tail":
        name, n = sys.argv[3], int(sys.argv[4])
        info = z.getinfo(name)
        with z.open(info) as f:
            f.seek(info.file_size - n)
            print(json.dumps(f.read().hex()))
"#;

fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(PYTHON)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn python_list(archive: &Path) -> Vec<Value> {
    let out = python(&["list", archive.to_str().unwrap()]);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn unzip(args: &[&str]) -> String {
    let out = Command::new("unzip")
        .args(args)
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("unzip runs");
    assert!(
        out.status.success(),
        "unzip {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic bytes that deflate cannot shrink (xorshift64).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

fn set_mtime(path: &Path, secs: u64) {
    let file = File::open(path).unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn write(path: &Path, content: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// Sets every file's and folder's time (not following links), deepest first, each to a
/// different second so that a mix-up shows.
fn set_times(root: &Path) {
    let mut paths = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let item = item.unwrap();
            let ty = item.file_type().unwrap();
            if ty.is_dir() {
                todo.push(item.path());
            }
            if !ty.is_symlink() {
                paths.push(item.path());
            }
        }
    }
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, path) in paths.iter().enumerate() {
        set_mtime(path, MTIME + 2 * i as u64);
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    /// The build path.
    root: PathBuf,
    /// A sibling of the build path, for links that escape it.
    outside: PathBuf,
    /// Where archives and extractions go.
    work: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("build");
    let outside = dir.path().join("outside");
    let work = dir.path().join("work");
    for d in [&root, &outside, &work] {
        fs::create_dir(d).unwrap();
    }
    write(&outside.join("secret.txt"), b"not for the archive");
    Fixture {
        _dir: dir,
        root,
        outside,
        work,
    }
}

/// The tree of the fidelity test.
fn awkward_tree(root: &Path) {
    let text = "The quick brown fox jumps over the lazy dog. 0123456789\n".repeat(4000);
    write(&root.join("README.md"), text.as_bytes());
    write(&root.join("noise.bin"), &noise(3 << 20, 7));
    // Named as compressed but compressible: the name decides.
    write(&root.join("bundle.zip"), text.as_bytes());
    write(&root.join("logs/today.gz"), text.as_bytes());
    write(&root.join("run.sh"), b"#!/bin/sh\necho built\n");
    write(&root.join("readonly.txt"), b"do not edit\n");
    write(&root.join("empty.txt"), b"");
    fs::create_dir_all(root.join("empty dir")).unwrap();
    fs::create_dir_all(root.join("nested/empty/too")).unwrap();
    write(&root.join("with space/file name.txt"), b"spaces\n");
    write(&root.join("données/été ✓.txt"), "accents ✓\n".as_bytes());
    write(&root.join("名前.txt"), "名前\n".as_bytes());
    write(&root.join("_build/out/app.dll"), &noise(5000, 3));
    let mut deep = root.join("deep");
    for level in 1..=30 {
        deep.push(format!("level{level}"));
    }
    write(&deep.join("leaf.txt"), b"deep down\n");
    write(
        &root.join("a-b.txt"),
        b"sorts after a/ by name, before it by path\n",
    );
    write(&root.join("a/inner.txt"), b"inner\n");
    symlink("README.md", root.join("link-to-file")).unwrap();
    symlink("données", root.join("link-to-dir")).unwrap();
    symlink("../名前.txt", root.join("nested/up-link.txt")).unwrap();
    symlink(root.join("run.sh"), root.join("absolute-inside.sh")).unwrap();
    set_times(root);
    chmod(&root.join("run.sh"), 0o755);
    chmod(&root.join("readonly.txt"), 0o444);
    chmod(&root.join("_build"), 0o700);
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir { mode: u32 },
    File { mode: u32, sha256: [u8; 32] },
}

/// Path → kind, mode, content, following symbolic links (as the archive does); with times if
/// asked.
fn snapshot(root: &Path, with_times: bool) -> BTreeMap<String, (Node, Option<u64>)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![(root.to_owned(), String::new())];
    while let Some((dir, prefix)) = todo.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let item = item.unwrap();
            let name = format!("{prefix}{}", item.file_name().to_str().unwrap());
            let meta = fs::metadata(item.path()).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let time = with_times.then(|| {
                meta.modified()
                    .unwrap()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
            });
            if meta.is_dir() {
                todo.push((item.path(), format!("{name}/")));
                out.insert(name, (Node::Dir { mode }, time));
            } else {
                let sha256 = Sha256::digest(fs::read(item.path()).unwrap()).into();
                out.insert(name, (Node::File { mode, sha256 }, time));
            }
        }
    }
    out
}

/// Entry names in the order the archive promises: depth-first, siblings by name, folders
/// before their contents.
fn expected_order(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|i| i.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        if fs::metadata(&path).unwrap().is_dir() {
            out.push(format!("{prefix}{name}/"));
            expected_order(&path, &format!("{prefix}{name}/"), out);
        } else {
            out.push(format!("{prefix}{name}"));
        }
    }
}

/// Archives `root` into `path` through a writer that cannot seek, hashing on the way.
fn archive_to(root: &Path, path: &Path) -> (ArchiveSummary, [u8; 32]) {
    archive_to_with(root, path, &ArchiveOptions::default())
}

fn archive_to_with(
    root: &Path,
    path: &Path,
    options: &ArchiveOptions,
) -> (ArchiveSummary, [u8; 32]) {
    let sink = HashingWriter::new(io::BufWriter::new(File::create(path).unwrap()));
    let (sink, summary) = write_archive_with(root, sink, options).unwrap();
    let (file, sha256, bytes) = sink.finish();
    file.into_inner().unwrap().sync_all().ok();
    assert_eq!(bytes, summary.archive_bytes);
    assert_eq!(fs::metadata(path).unwrap().len(), summary.archive_bytes);
    (summary, sha256)
}

fn entry<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
}

const STORED: u64 = 0;
const DEFLATED: u64 = 8;

#[test]
fn archive_extracts_identically_with_python_and_unzip() {
    extracts_identically(&ArchiveOptions::default());
}

/// The same with a central directory that outgrows its memory after every few records and
/// waits in a temporary file: readers see no difference.
#[test]
fn archive_with_its_central_directory_on_disk_extracts_identically() {
    let temp = tempfile::tempdir().unwrap();
    let on_disk = ArchiveOptions {
        central_directory_memory: 200,
        temp_dir: Some(temp.path().to_owned()),
        ..ArchiveOptions::default()
    };
    let summary = extracts_identically(&on_disk);
    assert!(summary.central_directory_on_disk);
    assert_eq!(
        fs::read_dir(temp.path()).unwrap().count(),
        0,
        "nothing left in the temporary folder"
    );
}

fn extracts_identically(options: &ArchiveOptions) -> ArchiveSummary {
    let f = fixture();
    awkward_tree(&f.root);
    let archive = f.work.join("build.zip");
    let (summary, sha256) = archive_to_with(&f.root, &archive, options);
    assert_eq!(
        summary.central_directory_on_disk,
        options.central_directory_memory < 1000
    );
    let (in_memory, _) = write_archive(&f.root, Vec::new()).unwrap();
    assert!(
        fs::read(&archive).unwrap() == in_memory,
        "where the central directory waited changes the archive"
    );
    assert_eq!(
        sha256,
        <[u8; 32]>::from(Sha256::digest(fs::read(&archive).unwrap()))
    );

    let source = snapshot(&f.root, true);
    let files = source
        .values()
        .filter(|(n, _)| matches!(n, Node::File { .. }))
        .count() as u64;
    assert_eq!(summary.files, files);
    assert_eq!(summary.directories, source.len() as u64 - files);
    assert_eq!(summary.entries, source.len() as u64);
    assert_eq!(summary.stored_files + summary.deflated_files, files);

    // The central directory, as Python reads it.
    let list = python_list(&archive);
    let names: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
    let mut order = Vec::new();
    expected_order(&f.root, "", &mut order);
    assert_eq!(names, order, "entry order");
    assert!(names.iter().all(|n| !n.starts_with("build")), "{names:?}");
    let input: u64 = list.iter().map(|e| e["size"].as_u64().unwrap()).sum();
    assert_eq!(summary.input_bytes, input);

    for (name, method) in [
        ("README.md", DEFLATED),
        ("link-to-file", DEFLATED),
        ("noise.bin", STORED),
        ("bundle.zip", STORED),
        ("logs/today.gz", STORED),
        ("empty.txt", STORED),
        ("_build/out/app.dll", STORED),
    ] {
        assert_eq!(entry(&list, name)["method"], method, "{name}");
    }
    let stored = list
        .iter()
        .filter(|e| !e["name"].as_str().unwrap().ends_with('/') && e["method"] == STORED)
        .count() as u64;
    assert_eq!(summary.stored_files, stored);
    for name in [
        "données/",
        "données/été ✓.txt",
        "名前.txt",
        "link-to-dir/été ✓.txt",
    ] {
        let flags = entry(&list, name)["flags"].as_u64().unwrap();
        assert_ne!(flags & 0x800, 0, "UTF-8 flag on {name}");
    }
    for e in &list {
        let name = e["name"].as_str().unwrap();
        let attr = e["attr"].as_u64().unwrap();
        let kind = if name.ends_with('/') {
            0o040000
        } else {
            0o100000
        };
        assert_eq!(
            attr >> 16 & 0o170000,
            kind,
            "file type in the mode of {name}"
        );
        // Extended timestamp (0x5455) with the modification time, in the central directory.
        assert!(e["extra"].as_str().unwrap().starts_with("5554"), "{name}");
    }
    assert_eq!(
        entry(&list, "run.sh")["attr"].as_u64().unwrap() >> 16 & 0o777,
        0o755
    );
    assert_eq!(
        entry(&list, "readonly.txt")["attr"].as_u64().unwrap() >> 16 & 0o777,
        0o444
    );
    assert_eq!(
        entry(&list, "_build/")["attr"].as_u64().unwrap() >> 16 & 0o777,
        0o700
    );
    // DOS time in UTC.
    let readme_time = source["README.md"].1.unwrap();
    let dos: Vec<u64> = entry(&list, "README.md")["date"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let expected = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{readme_time}"),
            "+%Y %-m %-d %-H %-M %-S",
        ])
        .output()
        .unwrap();
    let expected: Vec<u64> = String::from_utf8(expected.stdout)
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(dos, expected);

    unzip(&["-tq", archive.to_str().unwrap()]);

    // Python: content and modes (zipfile restores neither times nor, by itself, modes).
    let by_python = f.work.join("python");
    python(&[
        "extract",
        archive.to_str().unwrap(),
        by_python.to_str().unwrap(),
    ]);
    let without_times = |tree: BTreeMap<String, (Node, Option<u64>)>| {
        tree.into_iter()
            .map(|(k, (n, _))| (k, n))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        without_times(snapshot(&by_python, false)),
        without_times(source.clone())
    );

    // Info-ZIP: content, modes and modification times.
    let by_unzip = f.work.join("unzip");
    unzip(&[
        "-q",
        archive.to_str().unwrap(),
        "-d",
        by_unzip.to_str().unwrap(),
    ]);
    assert_eq!(snapshot(&by_unzip, true), source);

    // bsdtar, which Windows ships as tar.exe and the Windows extract step prefers: it reads the
    // archive from its central directory like the others.
    if Command::new("bsdtar").arg("--version").output().is_ok() {
        let by_bsdtar = f.work.join("bsdtar");
        fs::create_dir_all(&by_bsdtar).unwrap();
        let out = Command::new("bsdtar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&by_bsdtar)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "bsdtar: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(snapshot(&by_bsdtar, true), source);
    } else {
        // scripts/test installs it: in CI its absence is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "bsdtar (Windows' tar.exe) is not installed (Debian: libarchive-tools); CI must run this check"
        );
        eprintln!(
            "skipping bsdtar (Windows' tar.exe): it is not installed (Debian: libarchive-tools)"
        );
    }
    summary
}

#[test]
fn same_tree_gives_same_bytes() {
    let f = fixture();
    awkward_tree(&f.root);
    let (first, summary) = write_archive(&f.root, Vec::new()).unwrap();
    let (second, _) = write_archive(&f.root, Vec::new()).unwrap();
    assert_eq!(first.len() as u64, summary.archive_bytes);
    assert!(first == second, "two archives of one tree differ");
}

#[test]
fn the_longest_file_and_folder_are_reported_for_the_windows_path_check() {
    let f = fixture();
    let deep = format!("{}/{}", "d".repeat(200), "e".repeat(40));
    // The deepest file has the longest path, not the longest name; a name of 120 two-byte
    // characters is 240 bytes but 120 UTF-16 units; an empty folder deeper than every file.
    write(&f.root.join(&deep).join("x.txt"), b"x");
    write(&f.root.join(format!("{}.txt", "f".repeat(230))), b"f");
    write(&f.root.join("\u{fc}".repeat(120)), b"u");
    fs::create_dir_all(f.root.join("d".repeat(200)).join("g".repeat(45))).unwrap();
    let (_, summary) = write_archive(&f.root, Vec::new()).unwrap();
    assert_eq!(summary.longest_file, format!("{deep}/x.txt"));
    assert_eq!(
        summary.longest_folder,
        format!("{}/{}", "d".repeat(200), "g".repeat(45))
    );
    // `C:\buildArtifacts\webapp\` and 246 characters: past MAX_PATH on a Windows image.
    let warning = aib_task::staging::long_path_warning(Os::Windows, "webapp", &summary).unwrap();
    assert!(
        warning.contains(&format!(
            r"will be 272 characters long on the image: 'C:\buildArtifacts\webapp\{}\{}\x.txt'",
            "d".repeat(200),
            "e".repeat(40)
        )),
        "{warning}"
    );
    assert_eq!(
        aib_task::staging::long_path_warning(Os::Linux, "webapp", &summary),
        None
    );
}

/// The error for a refused build path; checks that nothing reached the sink before it.
fn refusal(root: &Path) -> (ArchiveError, String) {
    let mut sink = Vec::new();
    let error = write_archive(root, &mut sink).expect_err("the build path is refused");
    assert!(
        sink.is_empty(),
        "{} bytes written before: {error}",
        sink.len()
    );
    let message = error.to_string();
    (error, message)
}

#[test]
fn link_escaping_by_a_relative_path_is_refused() {
    let f = fixture();
    write(&f.root.join("app.txt"), b"app");
    fs::create_dir(f.root.join("sub")).unwrap();
    symlink("../../outside/secret.txt", f.root.join("sub/esc")).unwrap();
    let (error, message) = refusal(&f.root);
    assert!(
        matches!(error, ArchiveError::LinkEscapes { .. }),
        "{error:?}"
    );
    assert!(message.contains("sub/esc"), "{message}");
    assert!(message.contains("../../outside/secret.txt"), "{message}");
}

#[test]
fn link_escaping_by_an_absolute_path_is_refused() {
    let f = fixture();
    write(&f.root.join("app.txt"), b"app");
    symlink(&f.outside, f.root.join("elsewhere")).unwrap();
    let (error, message) = refusal(&f.root);
    assert!(
        matches!(error, ArchiveError::LinkEscapes { .. }),
        "{error:?}"
    );
    assert!(message.contains("elsewhere"), "{message}");
    assert!(message.contains(f.outside.to_str().unwrap()), "{message}");
}

#[test]
fn link_through_the_outside_and_back_is_archived() {
    let f = fixture();
    write(&f.root.join("app.txt"), b"app");
    symlink("../outside/../build/app.txt", f.root.join("roundabout")).unwrap();
    let (bytes, summary) = write_archive(&f.root, Vec::new()).unwrap();
    assert_eq!(summary.files, 2);
    let archive = f.work.join("a.zip");
    fs::write(&archive, bytes).unwrap();
    assert_eq!(entry(&python_list(&archive), "roundabout")["size"], 3);
}

#[test]
fn dangling_link_is_refused() {
    let f = fixture();
    write(&f.root.join("app.txt"), b"app");
    symlink("missing.txt", f.root.join("dangling")).unwrap();
    let (error, message) = refusal(&f.root);
    assert!(
        matches!(error, ArchiveError::LinkDangles { .. }),
        "{error:?}"
    );
    assert!(message.contains("dangling"), "{message}");
    assert!(message.contains("missing.txt"), "{message}");
}

#[test]
fn link_to_an_enclosing_folder_is_refused() {
    let f = fixture();
    write(&f.root.join("a/b/app.txt"), b"app");
    symlink("..", f.root.join("a/b/up")).unwrap();
    let (error, message) = refusal(&f.root);
    assert!(matches!(error, ArchiveError::Loop { .. }), "{error:?}");
    assert!(message.contains("a/b/up"), "{message}");

    let f = fixture();
    write(&f.root.join("app.txt"), b"app");
    symlink(".", f.root.join("self")).unwrap();
    assert!(matches!(refusal(&f.root).0, ArchiveError::Loop { .. }));
}

#[test]
fn link_loop_between_two_links_is_refused() {
    let f = fixture();
    write(&f.root.join("app.txt"), b"app");
    symlink("b", f.root.join("a")).unwrap();
    symlink("a", f.root.join("b")).unwrap();
    let (error, message) = refusal(&f.root);
    assert!(
        matches!(error, ArchiveError::Unreadable { .. }),
        "{error:?}"
    );
    assert!(message.contains("build/a"), "{message}");
}

#[test]
fn missing_build_path_is_refused() {
    let f = fixture();
    let missing = f.root.join("nope");
    let (error, message) = refusal(&missing);
    assert!(matches!(error, ArchiveError::Missing { .. }), "{error:?}");
    assert!(message.contains("build/nope"), "{message}");
    assert!(matches!(
        folder_name(&missing),
        Err(ArchiveError::Missing { .. })
    ));
}

#[test]
fn file_as_build_path_is_refused() {
    let f = fixture();
    let file = f.root.join("app.txt");
    write(&file, b"app");
    let (error, message) = refusal(&file);
    assert!(
        matches!(error, ArchiveError::NotAFolder { .. }),
        "{error:?}"
    );
    assert!(message.contains("build/app.txt"), "{message}");
}

#[test]
fn empty_build_path_is_refused() {
    let f = fixture();
    let (error, message) = refusal(&f.root);
    assert!(matches!(error, ArchiveError::Empty { .. }), "{error:?}");
    assert!(message.contains("build"), "{message}");
    // Folders without a single file are as empty.
    fs::create_dir_all(f.root.join("a/b")).unwrap();
    assert!(matches!(refusal(&f.root).0, ArchiveError::Empty { .. }));
}

#[test]
fn name_that_is_not_utf8_is_refused() {
    use std::os::unix::ffi::OsStrExt;
    let f = fixture();
    write(&f.root.join("app.txt"), b"app");
    let bad = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    write(&f.root.join("sub").join(bad), b"latin-1 name");
    let (error, message) = refusal(&f.root);
    assert!(
        matches!(error, ArchiveError::NonUtf8Name { .. }),
        "{error:?}"
    );
    assert!(message.contains("build/sub/caf"), "{message}");
}

#[test]
fn socket_in_the_build_path_is_refused() {
    let f = fixture();
    write(&f.root.join("app.txt"), b"app");
    let _socket = std::os::unix::net::UnixListener::bind(f.root.join("agent.sock")).unwrap();
    let (error, message) = refusal(&f.root);
    assert!(matches!(error, ArchiveError::NotAFile { .. }), "{error:?}");
    assert!(message.contains("agent.sock"), "{message}");
}

/// Whether mode 000 keeps this process out (not when running as root).
fn permissions_apply(probe: &Path) -> bool {
    write(probe, b"x");
    chmod(probe, 0o000);
    let blocked = File::open(probe).is_err();
    fs::remove_file(probe).unwrap();
    blocked
}

#[test]
fn unreadable_file_and_folder_are_refused() {
    let f = fixture();
    if !permissions_apply(&f.work.join("probe")) {
        println!("skipped: running as root, mode 000 does not keep this process out");
        return;
    }
    write(&f.root.join("app.txt"), b"app");
    write(&f.root.join("secret.txt"), b"secret");
    chmod(&f.root.join("secret.txt"), 0o000);
    let (error, message) = refusal(&f.root);
    assert!(
        matches!(error, ArchiveError::Unreadable { .. }),
        "{error:?}"
    );
    assert!(message.contains("secret.txt"), "{message}");
    fs::remove_file(f.root.join("secret.txt")).unwrap();

    fs::create_dir(f.root.join("locked")).unwrap();
    chmod(&f.root.join("locked"), 0o000);
    let (error, message) = refusal(&f.root);
    chmod(&f.root.join("locked"), 0o755);
    assert!(
        matches!(error, ArchiveError::Unreadable { .. }),
        "{error:?}"
    );
    assert!(message.contains("locked"), "{message}");
}

/// A sink that takes `limit` bytes and then fails.
#[derive(Debug)]
struct FailingSink {
    taken: Vec<u8>,
    limit: usize,
}

impl Write for FailingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.taken.len() >= self.limit {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "upload aborted"));
        }
        let n = buf.len().min(self.limit - self.taken.len());
        self.taken.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn failing_sink_stops_the_archive() {
    let f = fixture();
    write(&f.root.join("a.bin"), &noise(1 << 20, 1));
    write(&f.root.join("b.bin"), &noise(1 << 20, 2));
    let mut sink = FailingSink {
        taken: Vec::new(),
        limit: 300_000,
    };
    let error = write_archive(&f.root, &mut sink).expect_err("the sink fails");
    assert!(matches!(error, ArchiveError::Write { .. }), "{error:?}");
    assert!(error.to_string().contains("a.bin"), "{error}");
    assert!(error.to_string().contains("upload aborted"), "{error}");
    assert_eq!(sink.taken.len(), 300_000);
}

/// A sink that, at its first write (once the build path has been checked), runs `change` once.
struct ChangingSink<F: FnMut()> {
    change: Option<F>,
    taken: usize,
}

impl<F: FnMut()> Write for ChangingSink<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(mut change) = self.change.take() {
            change();
        }
        self.taken += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn changed_while_written(root: &Path, change: impl FnMut()) -> ArchiveError {
    let mut sink = ChangingSink {
        change: Some(change),
        taken: 0,
    };
    let Err(error) = write_archive(root, &mut sink) else {
        panic!("the change is not refused");
    };
    assert!(sink.taken > 0, "refused after writing began: {error}");
    error
}

#[test]
fn file_growing_while_archived_is_refused() {
    let f = fixture();
    // Stored (noise), read in chunks: its first chunk reaches the sink before the rest is read.
    let a = f.root.join("a.bin");
    write(&a, &noise(1 << 20, 3));
    write(&f.root.join("z.txt"), b"short");
    let error = changed_while_written(&f.root, || {
        fs::OpenOptions::new()
            .append(true)
            .open(&a)
            .unwrap()
            .write_all(b" and then longer")
            .unwrap()
    });
    assert!(
        matches!(&error, ArchiveError::Changed { path, expected } if path.ends_with("a.bin") && *expected == 1 << 20),
        "{error:?}"
    );
}

#[test]
fn link_escaping_after_the_check_is_still_refused() {
    let f = fixture();
    write(&f.root.join("a.bin"), &noise(1 << 20, 4));
    fs::create_dir(f.root.join("z")).unwrap();
    write(&f.root.join("z/app.txt"), b"app");
    let link = f.root.join("z/passwd");
    let error = changed_while_written(&f.root, || symlink("/etc/passwd", &link).unwrap());
    assert!(
        matches!(&error, ArchiveError::LinkEscapes { link, .. } if link.ends_with("z/passwd")),
        "{error:?}"
    );
}

#[test]
fn folder_name_resolves_the_build_path() {
    let f = fixture();
    write(&f.root.join("app.txt"), b"app");
    assert_eq!(folder_name(&f.root).unwrap(), "build");
    let trailing = PathBuf::from(format!("{}/", f.root.display()));
    assert_eq!(folder_name(&trailing).unwrap(), "build");
    assert_eq!(
        folder_name(&f.root.join("..").join("build")).unwrap(),
        "build"
    );
    assert_eq!(folder_name(&f.root.join(".")).unwrap(), "build");
    symlink(&f.root, f.work.join("alias")).unwrap();
    assert_eq!(folder_name(&f.work.join("alias")).unwrap(), "build");
    assert!(matches!(
        folder_name(&f.root.join("app.txt")),
        Err(ArchiveError::NotAFolder { .. })
    ));
    assert!(matches!(
        folder_name(Path::new("/")),
        Err(ArchiveError::NoFolderName { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Zip64. Long: they write and check gigabytes.

const FOUR_GIB: u64 = 1 << 32;

// ---------------------------------------------------------------------------------------------
// .NET's reader. Windows images extract the archive with `Expand-Archive` or
// `ZipFile.ExtractToDirectory`, both System.IO.Compression's `ZipArchive`; Mono ships .NET's own
// open-source (corefx) implementation of it, which runs here. `scripts/test` installs Mono; on
// CI its absence fails the test.

const DOTNET_READER: &str = r#"
using System;
using System.IO;
using System.IO.Compression;
using System.Linq;
class Reader {
    static int Main(string[] args) {
        string command = args[0], path = args[1];
        if (command == "extract") {
            ZipFile.ExtractToDirectory(path, args[2]);
            return 0;
        }
        using (var archive = ZipFile.OpenRead(path)) {
            if (command == "list") {
                foreach (var e in archive.Entries)
                    Console.WriteLine(e.FullName + "\t" + e.Length + "\t" + e.CompressedLength);
            } else if (command == "tail") {
                var entry = archive.GetEntry(args[2]);
                int n = int.Parse(args[3]);
                var last = new byte[n];
                long total = 0;
                using (var s = entry.Open()) {
                    var buffer = new byte[1 << 20];
                    int got;
                    while ((got = s.Read(buffer, 0, buffer.Length)) > 0) {
                        int keep = Math.Min(got, n);
                        Array.Copy(last, keep, last, 0, n - keep);
                        Array.Copy(buffer, got - keep, last, n - keep, keep);
                        total += got;
                    }
                }
                Console.WriteLine(total + "\t" + string.Concat(last.Select(b => b.ToString("x2"))));
            }
        }
        return 0;
    }
}
"#;

/// The .NET reader compiled into `dir`, or `None` (outside CI) when Mono is not installed.
fn dotnet_reader(dir: &Path) -> Option<PathBuf> {
    let installed = ["mcs", "mono"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "Mono (mcs, mono) is not installed: scripts/test installs it"
        );
        eprintln!(
            "skipping the .NET reader: Mono (mcs, mono) is not installed; scripts/test installs it"
        );
        return None;
    }
    let source = dir.join("reader.cs");
    let exe = dir.join("reader.exe");
    fs::write(&source, DOTNET_READER).unwrap();
    let compiled = Command::new("mcs")
        .arg("-r:System.IO.Compression.dll")
        .arg("-r:System.IO.Compression.FileSystem.dll")
        .arg(format!("-out:{}", exe.display()))
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "mcs: {}{}",
        String::from_utf8_lossy(&compiled.stdout),
        String::from_utf8_lossy(&compiled.stderr)
    );
    Some(exe)
}

fn dotnet(reader: &Path, args: &[&str]) -> String {
    let output = Command::new("mono")
        .arg(reader)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "mono {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn archive_extracts_identically_with_dotnet_zip_archive() {
    let f = fixture();
    let Some(reader) = dotnet_reader(&f.work) else {
        return;
    };
    awkward_tree(&f.root);
    let archive = f.work.join("build.zip");
    archive_to(&f.root, &archive);
    let by_dotnet = f.work.join("dotnet");
    dotnet(
        &reader,
        &[
            "extract",
            archive.to_str().unwrap(),
            by_dotnet.to_str().unwrap(),
        ],
    );
    // Content and folders (empty ones too); ZipArchive restores neither modes nor, here, times.
    let content = |tree: BTreeMap<String, (Node, Option<u64>)>| {
        tree.into_iter()
            .map(|(k, (n, _))| {
                let sha256 = match n {
                    Node::Dir { .. } => None,
                    Node::File { sha256, .. } => Some(sha256),
                };
                (k, sha256)
            })
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        content(snapshot(&by_dotnet, false)),
        content(snapshot(&f.root, false))
    );
}

/// A sparse file of `len` bytes ending with `tail`.
fn sparse(path: &Path, len: u64, tail: &[u8]) {
    let mut file = File::create(path).unwrap();
    file.set_len(len).unwrap();
    file.seek(SeekFrom::Start(len - tail.len() as u64)).unwrap();
    file.write_all(tail).unwrap();
}

#[test]
fn long_zip64_deflated_file_over_4_gib() {
    let started = Instant::now();
    let f = fixture();
    let len = FOUR_GIB + (1 << 20);
    sparse(&f.root.join("big.bin"), len, b"the end of a big file");
    write(
        &f.root.join("small.txt"),
        "after the big one\n".repeat(100).as_bytes(),
    );
    let archive = f.work.join("big.zip");
    let (summary, _) = archive_to(&f.root, &archive);
    println!("archived in {:?}: {summary:?}", started.elapsed());
    assert_eq!(summary.deflated_files, 2);
    assert!(summary.archive_bytes < 50 << 20, "zeros compress");

    let list = python_list(&archive);
    let big = entry(&list, "big.bin");
    assert_eq!(big["size"].as_u64().unwrap(), len);
    assert_eq!(big["method"], DEFLATED);
    assert!(big["version"].as_u64().unwrap() >= 45, "Zip64 needs 4.5");
    assert_eq!(entry(&list, "small.txt")["size"], 1800);
    let listing = unzip(&["-l", archive.to_str().unwrap()]);
    assert!(listing.contains(&len.to_string()), "{listing}");
    unzip(&["-tq", archive.to_str().unwrap()]);
    if let Some(reader) = dotnet_reader(&f.work) {
        let tail = dotnet(
            &reader,
            &["tail", archive.to_str().unwrap(), "big.bin", "21"],
        );
        assert_eq!(
            tail.trim(),
            format!("{len}\t{}", hex(b"the end of a big file"))
        );
    }
    println!("done in {:?}", started.elapsed());
}

#[test]
fn long_zip64_stored_file_and_offsets_over_4_gib() {
    let started = Instant::now();
    let f = fixture();
    let len = FOUR_GIB + (1 << 20);
    // Named as compressed: stored, so the archive itself passes 4 GiB.
    sparse(&f.root.join("big.gz"), len, b"the end of a big file");
    write(
        &f.root.join("small.txt"),
        "after the big one\n".repeat(100).as_bytes(),
    );
    let archive = f.work.join("big.zip");
    let (summary, _) = archive_to(&f.root, &archive);
    println!("archived in {:?}: {summary:?}", started.elapsed());
    assert_eq!((summary.stored_files, summary.deflated_files), (1, 1));
    assert!(summary.archive_bytes > len);

    let list = python_list(&archive);
    assert_eq!(entry(&list, "big.gz")["size"].as_u64().unwrap(), len);
    assert_eq!(entry(&list, "big.gz")["csize"].as_u64().unwrap(), len);
    let small = entry(&list, "small.txt");
    assert!(small["offset"].as_u64().unwrap() > FOUR_GIB);
    // Past 4 GiB a file gets Zip64 sizes as well as a Zip64 offset (24 bytes of extra field):
    // the unzip that distributions ship expects a 64-bit data descriptor for it.
    assert!(small["version"].as_u64().unwrap() >= 45);
    assert!(
        small["extra"].as_str().unwrap().starts_with("01001800"),
        "{small}"
    );
    let tail = python(&["tail", archive.to_str().unwrap(), "big.gz", "21"]);
    assert_eq!(
        tail.trim(),
        format!("\"{}\"", hex(b"the end of a big file"))
    );
    let tail = python(&["tail", archive.to_str().unwrap(), "small.txt", "18"]);
    assert_eq!(tail.trim(), format!("\"{}\"", hex(b"after the big one\n")));
    unzip(&["-tq", archive.to_str().unwrap()]);
    if let Some(reader) = dotnet_reader(&f.work) {
        let path = archive.to_str().unwrap();
        let tail = dotnet(&reader, &["tail", path, "big.gz", "21"]);
        assert_eq!(
            tail.trim(),
            format!("{len}\t{}", hex(b"the end of a big file"))
        );
        let tail = dotnet(&reader, &["tail", path, "small.txt", "18"]);
        assert_eq!(
            tail.trim(),
            format!("1800\t{}", hex(b"after the big one\n"))
        );
    }
    println!("done in {:?}", started.elapsed());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn long_zip64_more_than_65535_entries() {
    let started = Instant::now();
    let f = fixture();
    let (dirs, per_dir) = (200, 330);
    // Hard links: entries without inodes. Creating 66,000 inodes costs ext4 tens of seconds
    // on a machine that has just deleted as many; each link is still archived as a file.
    for d in 0..dirs {
        let dir = f.root.join(format!("d{d:03}"));
        fs::create_dir(&dir).unwrap();
        let first = dir.join("f000");
        fs::write(&first, format!("d{d:03}\n")).unwrap();
        for i in 1..per_dir {
            fs::hard_link(&first, dir.join(format!("f{i:03}"))).unwrap();
        }
    }
    let archive = f.work.join("many.zip");
    let (summary, _) = archive_to(&f.root, &archive);
    println!("archived in {:?}: {summary:?}", started.elapsed());
    let entries = dirs * (per_dir + 1);
    assert_eq!(summary.entries, entries);
    assert!(
        summary.central_directory_on_disk,
        "66,200 records outgrow the default memory"
    );
    assert!(summary.entries > 65_535);

    let list = python_list(&archive);
    assert_eq!(list.len() as u64, entries);
    assert_eq!(list[0]["name"], "d000/");
    assert_eq!(list[1]["name"], "d000/f000");
    assert_eq!(entry(&list, "d199/f329")["size"], 5);
    if let Some(reader) = dotnet_reader(&f.work) {
        let listing = dotnet(&reader, &["list", archive.to_str().unwrap()]);
        assert_eq!(listing.lines().count() as u64, entries);
        assert_eq!(listing.lines().last(), Some("d199/f329\t5\t5"));
    }
    let listing = unzip(&["-l", archive.to_str().unwrap()]);
    assert!(
        listing.contains(&format!("{} files", summary.entries)),
        "{}",
        &listing[listing.len().saturating_sub(200)..]
    );
    unzip(&["-tq", archive.to_str().unwrap()]);
    println!("done in {:?}", started.elapsed());
}
