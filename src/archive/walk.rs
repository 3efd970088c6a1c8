//! Walking the build path (read-only I/O): every entry of the archive, in archive order, one at
//! a time, following the symbolic links that stay inside it and refusing everything else by
//! name. Only the sorted listings of the folders being walked are held, so the walk's memory
//! depends on the tree's depth and widest folder, not on its number of files.

use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::ArchiveError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File { size: u64 },
}

/// One entry of the archive.
#[derive(Debug)]
pub struct Entry {
    /// The entry name: `a/b.txt`, or `a/dir/` for a directory.
    pub name: String,
    /// Where the content is read: the real path, symbolic links resolved.
    pub source: PathBuf,
    /// The path as the user sees it (the build path joined with the entry name), for messages.
    pub shown: PathBuf,
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, Unix seconds.
    pub mtime: i64,
}

/// Longest entry name a zip header can hold.
const MAX_NAME_LEN: usize = u16::MAX as usize;

pub(super) fn unreadable(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Unreadable {
        path: path.to_owned(),
        source,
    }
}

/// The canonical build path, which must be a folder.
pub fn resolve_root(root: &Path) -> Result<PathBuf, ArchiveError> {
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

/// The entries under a folder, depth-first, siblings in byte order of their names, each folder
/// before its contents. Yields the first reason to refuse the build path as an error (and
/// nothing after it).
pub struct Walk {
    /// The canonical build path.
    root: PathBuf,
    /// The folders being walked, outermost first: a folder met again inside itself (through a
    /// link) would make the walk endless.
    stack: Vec<Folder>,
}

struct Folder {
    /// Real path, links resolved.
    real: PathBuf,
    /// Entry name of the folder (empty for the root, else ending with `/`).
    prefix: String,
    /// Names not walked yet, in reverse order (the next one is popped).
    pending: Vec<String>,
}

impl Walk {
    /// Starts a walk of the build path `root` (its contents, not the folder itself).
    pub fn new(root: &Path) -> Result<Walk, ArchiveError> {
        let real_root = resolve_root(root)?;
        let pending = listing(&real_root, &real_root)?;
        Ok(Walk {
            stack: vec![Folder {
                real: real_root.clone(),
                prefix: String::new(),
                pending,
            }],
            root: real_root,
        })
    }

    fn step(&mut self) -> Option<Result<Entry, ArchiveError>> {
        loop {
            let top = self.stack.last_mut()?;
            let Some(name) = top.pending.pop() else {
                self.stack.pop();
                continue;
            };
            let entry_name = format!("{}{name}", top.prefix);
            let real_child = top.real.join(&name);
            return Some(self.entry(entry_name, real_child));
        }
    }

    fn entry(&mut self, entry_name: String, real_child: PathBuf) -> Result<Entry, ArchiveError> {
        let shown = self.root.join(&entry_name);
        let meta = fs::symlink_metadata(&real_child).map_err(unreadable(&shown))?;
        let (source, meta) = if meta.file_type().is_symlink() {
            self.follow(&real_child, &shown)?
        } else {
            if meta.is_dir() && self.stack.iter().any(|f| f.real == real_child) {
                return Err(ArchiveError::Loop {
                    path: shown,
                    target: real_child,
                });
            }
            (real_child, meta)
        };
        let (name, kind) = if meta.is_dir() {
            (format!("{entry_name}/"), Kind::Directory)
        } else if meta.is_file() {
            (entry_name, Kind::File { size: meta.len() })
        } else {
            return Err(ArchiveError::NotAFile { path: shown });
        };
        if name.len() > MAX_NAME_LEN {
            return Err(ArchiveError::NameTooLong { path: shown });
        }
        if kind == Kind::Directory {
            let pending = listing(&source, &shown)?;
            self.stack.push(Folder {
                real: source.clone(),
                prefix: name.clone(),
                pending,
            });
        }
        Ok(Entry {
            name,
            source,
            shown,
            kind,
            mode: mode_of(&meta),
            mtime: mtime_of(&meta),
        })
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
        if meta.is_dir() && self.stack.iter().any(|f| f.real.starts_with(&resolved)) {
            return Err(ArchiveError::Loop {
                path: shown.to_owned(),
                target: resolved,
            });
        }
        Ok((resolved, meta))
    }
}

impl Iterator for Walk {
    type Item = Result<Entry, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.step();
        if matches!(item, Some(Err(_))) {
            // Nothing after the first refusal.
            self.stack.clear();
        }
        item
    }
}

/// The names in the folder `real` (shown to the user as `shown`), sorted in reverse byte order
/// so that popping gives them in order.
fn listing(real: &Path, shown: &Path) -> Result<Vec<String>, ArchiveError> {
    let mut names = Vec::new();
    for item in fs::read_dir(real).map_err(unreadable(shown))? {
        let item = item.map_err(unreadable(shown))?;
        let name = item
            .file_name()
            .into_string()
            .map_err(|raw| ArchiveError::NonUtf8Name {
                path: shown.join(raw),
            })?;
        names.push(name);
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
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
