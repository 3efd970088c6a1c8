//! The central directory while the archive is written: its records, encoded as soon as each
//! entry is done, kept in memory up to a limit and beyond it appended to an anonymous temporary
//! file, so that the archiver's memory does not grow with the number of entries (a build path
//! of a million files would otherwise hold ~100 MB of records until the end).
//!
//! The temporary file has no name (unlinked at once on Unix, deleted on close on Windows): it
//! cannot be left behind, even if the task is killed. If none can be created (a read-only or
//! missing temporary folder), the records stay in memory: the archive is still right, only
//! larger in memory.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Central directory records held in memory before they are moved to the temporary file.
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 20;

pub struct CentralDirectory {
    memory: Vec<u8>,
    limit: usize,
    /// Where the temporary file goes; the system's temporary folder when `None`.
    temp_dir: Option<PathBuf>,
    spill: Spill,
    spilled: u64,
    entries: u64,
}

enum Spill {
    NotYet,
    File(File),
    /// No temporary file could be created: everything stays in memory.
    Unavailable,
}

impl CentralDirectory {
    pub fn new(limit: usize, temp_dir: Option<PathBuf>) -> CentralDirectory {
        CentralDirectory {
            memory: Vec::new(),
            limit,
            temp_dir,
            spill: Spill::NotYet,
            spilled: 0,
            entries: 0,
        }
    }

    /// Appends one record, encoded by `encode`.
    pub fn push(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        encode(&mut self.memory);
        self.entries += 1;
        if self.memory.len() >= self.limit {
            self.move_to_file()?;
        }
        Ok(())
    }

    fn move_to_file(&mut self) -> io::Result<()> {
        if let Spill::NotYet = self.spill {
            let created = match &self.temp_dir {
                Some(dir) => tempfile::tempfile_in(dir),
                None => tempfile::tempfile(),
            };
            self.spill = match created {
                Ok(file) => Spill::File(file),
                Err(e) => {
                    tracing::debug!(
                        "no temporary file for the archive's central directory ({e}): it stays in memory"
                    );
                    Spill::Unavailable
                }
            };
        }
        if let Spill::File(file) = &mut self.spill {
            file.write_all(&self.memory).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot write the central directory's temporary file in '{}': {e}",
                        self.temp_dir
                            .clone()
                            .unwrap_or_else(std::env::temp_dir)
                            .display()
                    ),
                )
            })?;
            self.spilled += self.memory.len() as u64;
            self.memory.clear();
        }
        Ok(())
    }

    /// Records so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Bytes of records so far.
    pub fn len(&self) -> u64 {
        self.spilled + self.memory.len() as u64
    }

    /// Whether part of the records went to the temporary file.
    pub fn spilled(&self) -> bool {
        self.spilled > 0
    }

    /// Passes every record, in order, to `put`, reading the temporary file back through
    /// `buffer`.
    pub fn drain(
        &mut self,
        buffer: &mut [u8],
        mut put: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        if let Spill::File(file) = &mut self.spill {
            file.flush()?;
            file.seek(SeekFrom::Start(0))?;
            let mut left = self.spilled;
            while left > 0 {
                let want = usize::try_from(left).map_or(buffer.len(), |l| l.min(buffer.len()));
                let n = super::read_full(file, &mut buffer[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the central directory's temporary file came back shorter than written",
                    ));
                }
                put(&buffer[..n])?;
                left -= n as u64;
            }
        }
        put(&self.memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(central: &mut CentralDirectory) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buffer = [0u8; 7];
        central
            .drain(&mut buffer, |b| {
                out.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
        out
    }

    fn fill(central: &mut CentralDirectory) -> Vec<u8> {
        let mut expected = Vec::new();
        for i in 0..100u32 {
            let record = format!("record {i};");
            central
                .push(|out| out.extend_from_slice(record.as_bytes()))
                .unwrap();
            expected.extend_from_slice(record.as_bytes());
        }
        expected
    }

    #[test]
    fn small_directories_stay_in_memory() {
        let mut central = CentralDirectory::new(DEFAULT_MEMORY_LIMIT, None);
        let expected = fill(&mut central);
        assert!(!central.spilled());
        assert_eq!(
            (central.entries(), central.len()),
            (100, expected.len() as u64)
        );
        assert_eq!(collect(&mut central), expected);
    }

    #[test]
    fn records_beyond_the_limit_go_to_a_file_and_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut central = CentralDirectory::new(64, Some(dir.path().to_owned()));
        let expected = fill(&mut central);
        assert!(central.spilled());
        assert!(
            central.memory.capacity() <= 128,
            "memory stays near the limit"
        );
        assert_eq!(central.len(), expected.len() as u64);
        assert_eq!(collect(&mut central), expected);
        if cfg!(unix) {
            assert_eq!(
                std::fs::read_dir(dir.path()).unwrap().count(),
                0,
                "the temporary file has no name"
            );
        }
    }

    #[test]
    fn without_a_usable_temporary_folder_records_stay_in_memory() {
        let mut central = CentralDirectory::new(64, Some(PathBuf::from("/nonexistent/aib-task")));
        let expected = fill(&mut central);
        assert!(!central.spilled());
        assert_eq!(collect(&mut central), expected);
    }
}
