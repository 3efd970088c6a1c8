//! The streaming zip writer: entries go to the sink in one pass (local header, data, data
//! descriptor), each entry's central directory record to a [`CentralDirectory`], and the end
//! of the archive (central directory, end records) to the sink when it is finished.
//!
//! Nothing is written when the writer is dropped, so an archive abandoned after an error is
//! never completed into one that looks whole.

use std::io::{self, Write};
use std::path::PathBuf;

use crc32fast::Hasher;
use flate2::{Compress, Compression, FlushCompress, Status};

use super::central::CentralDirectory;
use super::format::{self, Header, Method, Written};

/// Small writes (headers, data descriptors, deflate output) are gathered into blocks of this
/// size before they reach the sink; larger ones go straight through.
const OUTPUT_BUFFER_LEN: usize = 64 * 1024;

/// Deflate output is produced in chunks of this size.
const DEFLATE_BUFFER_LEN: usize = 64 * 1024;

/// The sink with a small buffer and the count of the bytes it accepted.
struct Output<W> {
    inner: W,
    buffer: Vec<u8>,
    position: u64,
}

impl<W: Write> Output<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.buffer.len() + bytes.len() > OUTPUT_BUFFER_LEN {
            self.drain()?;
            if bytes.len() >= OUTPUT_BUFFER_LEN {
                self.inner.write_all(bytes)?;
                self.position += bytes.len() as u64;
                return Ok(());
            }
        }
        self.buffer.extend_from_slice(bytes);
        self.position += bytes.len() as u64;
        Ok(())
    }

    fn drain(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.inner.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        Ok(())
    }
}

/// The file being written.
struct Open {
    header: Header,
    offset: u64,
    crc: Hasher,
    compressed: u64,
    uncompressed: u64,
}

pub struct ZipStream<W> {
    out: Output<W>,
    central: CentralDirectory,
    /// Encoded headers, before they go out.
    scratch: Vec<u8>,
    deflate: Compress,
    deflate_buffer: Vec<u8>,
    open: Option<Open>,
}

impl<W: Write> ZipStream<W> {
    /// A writer to `sink` at `level` for deflated entries, holding up to `central_memory` bytes
    /// of central directory records in memory before moving them to a temporary file in
    /// `temp_dir` (the system's when `None`).
    pub fn new(
        sink: W,
        level: u32,
        central_memory: usize,
        temp_dir: Option<PathBuf>,
    ) -> ZipStream<W> {
        ZipStream {
            out: Output {
                inner: sink,
                buffer: Vec::with_capacity(OUTPUT_BUFFER_LEN),
                position: 0,
            },
            central: CentralDirectory::new(central_memory, temp_dir),
            scratch: Vec::with_capacity(512),
            deflate: Compress::new(Compression::new(level), false),
            deflate_buffer: vec![0; DEFLATE_BUFFER_LEN],
            open: None,
        }
    }

    /// Starts an entry; a folder's entry is complete at once, a file's takes [`Self::data`]
    /// then [`Self::end_file`].
    pub fn begin(&mut self, mut header: Header) -> io::Result<()> {
        debug_assert!(self.open.is_none(), "an entry is still open");
        let offset = self.out.position;
        // A file that starts past 4 GiB gets Zip64 sizes too, although they would fit: its
        // central record needs a Zip64 field for the offset, and Info-ZIP unzip (6.0 with the
        // overlap check distributions ship) then expects a 64-bit data descriptor.
        header.zip64 |= !header.directory && offset >= format::ZIP64_THRESHOLD;
        self.scratch.clear();
        format::local_header(&mut self.scratch, &header);
        self.out.put(&self.scratch)?;
        if header.directory {
            let written = Written {
                offset,
                ..Written::default()
            };
            return self
                .central
                .push(|out| format::central_record(out, &header, &written));
        }
        if header.method == Method::Deflated {
            self.deflate.reset();
        }
        self.open = Some(Open {
            header,
            offset,
            crc: Hasher::new(),
            compressed: 0,
            uncompressed: 0,
        });
        Ok(())
    }

    /// Adds `bytes` to the open file's data.
    pub fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        let open = self.open.as_mut().expect("a file entry is open");
        open.crc.update(bytes);
        open.uncompressed += bytes.len() as u64;
        match open.header.method {
            Method::Stored => {
                self.out.put(bytes)?;
                open.compressed += bytes.len() as u64;
            }
            Method::Deflated => {
                let mut input = bytes;
                while !input.is_empty() {
                    let (consumed, produced, _) = deflate_step(
                        &mut self.deflate,
                        input,
                        &mut self.deflate_buffer,
                        FlushCompress::None,
                    )?;
                    self.out.put(&self.deflate_buffer[..produced])?;
                    open.compressed += produced as u64;
                    input = &input[consumed..];
                }
            }
        }
        Ok(())
    }

    /// Ends the open file: the rest of its deflate stream, its data descriptor, and its central
    /// directory record.
    pub fn end_file(&mut self) -> io::Result<()> {
        let mut open = self.open.take().expect("a file entry is open");
        if open.header.method == Method::Deflated {
            loop {
                let (_, produced, status) = deflate_step(
                    &mut self.deflate,
                    &[],
                    &mut self.deflate_buffer,
                    FlushCompress::Finish,
                )?;
                self.out.put(&self.deflate_buffer[..produced])?;
                open.compressed += produced as u64;
                if status == Status::StreamEnd {
                    break;
                }
            }
        }
        let header = &open.header;
        if !header.zip64
            && (open.compressed >= format::ZIP64_THRESHOLD
                || open.uncompressed >= format::ZIP64_THRESHOLD)
        {
            // Cannot happen for sizes planned from the file's metadata (see `needs_zip64`);
            // refusing beats writing a descriptor whose sizes wrap around.
            return Err(io::Error::other(format!(
                "'{}' came to more than 4 GiB after its header said it would not",
                header.name
            )));
        }
        let written = Written {
            crc32: open.crc.finalize(),
            compressed: open.compressed,
            uncompressed: open.uncompressed,
            offset: open.offset,
        };
        self.scratch.clear();
        format::data_descriptor(&mut self.scratch, header.zip64, &written);
        self.out.put(&self.scratch)?;
        self.central
            .push(|out| format::central_record(out, header, &written))
    }

    /// Writes the central directory and the end records, flushes the sink, and hands it back
    /// with the archive's length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        debug_assert!(self.open.is_none(), "an entry is still open");
        let offset = self.out.position;
        let size = self.central.len();
        let entries = self.central.entries();
        let mut buffer = std::mem::take(&mut self.deflate_buffer);
        let out = &mut self.out;
        self.central
            .drain(&mut buffer, |records| out.put(records))?;
        self.scratch.clear();
        format::end_records(&mut self.scratch, entries, offset, size);
        self.out.put(&self.scratch)?;
        self.out.drain()?;
        self.out.inner.flush()?;
        Ok((self.out.inner, self.out.position))
    }

    /// The writer as if `position` bytes had been written already (to test what happens past
    /// 4 GiB without writing 4 GiB).
    #[cfg(test)]
    fn starting_at(mut self, position: u64) -> Self {
        self.out.position = position;
        self
    }

    /// Whether central directory records went to a temporary file.
    pub fn central_directory_spilled(&self) -> bool {
        self.central.spilled()
    }
}

/// One call of the compressor on `input` into `output`: bytes consumed, bytes produced, and
/// whether the stream has ended. A call that does neither, before the end, is an error rather
/// than a loop without end.
fn deflate_step(
    deflate: &mut Compress,
    input: &[u8],
    output: &mut [u8],
    flush: FlushCompress,
) -> io::Result<(usize, usize, Status)> {
    let (in_before, out_before) = (deflate.total_in(), deflate.total_out());
    let status = deflate
        .compress(input, output, flush)
        .map_err(io::Error::other)?;
    let consumed = (deflate.total_in() - in_before) as usize;
    let produced = (deflate.total_out() - out_before) as usize;
    if consumed == 0 && produced == 0 && status != Status::StreamEnd {
        return Err(io::Error::other("deflate made no progress"));
    }
    Ok((consumed, produced, status))
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read};

    use super::*;
    use crate::archive::format::dos_time;
    use crate::archive::format::tests::{u16_at, u32_at, u64_at};

    fn header(name: &str, method: Method) -> Header {
        Header {
            name: name.to_owned(),
            directory: name.ends_with('/'),
            method,
            mode: if name.ends_with('/') { 0o755 } else { 0o644 },
            time: dos_time(1_700_000_000),
            unix_time: Some(1_700_000_000),
            zip64: false,
        }
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"abcdefgh\n"[i % 9]).collect()
    }

    /// Writes folders and files (some deflated, some Zip64) and reads them back with the `zip`
    /// crate's reader.
    fn round_trip(central_memory: usize) {
        let temp = tempfile::tempdir().unwrap();
        let mut zip = ZipStream::new(Vec::new(), 2, central_memory, Some(temp.path().into()));
        let files: Vec<(String, Method, bool, Vec<u8>)> = (0..40)
            .map(|i| {
                let method = if i % 3 == 0 {
                    Method::Stored
                } else {
                    Method::Deflated
                };
                (format!("d/f{i:02}.txt"), method, i % 7 == 0, text(i * 1000))
            })
            .collect();
        zip.begin(header("d/", Method::Stored)).unwrap();
        for (name, method, zip64, content) in &files {
            zip.begin(Header {
                zip64: *zip64,
                ..header(name, *method)
            })
            .unwrap();
            for chunk in content.chunks(777) {
                zip.data(chunk).unwrap();
            }
            zip.end_file().unwrap();
        }
        let spilled = zip.central_directory_spilled();
        assert_eq!(spilled, central_memory < 4096);
        let (bytes, len) = zip.finish().unwrap();
        assert_eq!(len, bytes.len() as u64);

        let mut archive = ::zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 41);
        assert!(archive.by_index(0).unwrap().is_dir());
        for (i, (name, method, _, content)) in files.iter().enumerate() {
            let mut file = archive.by_index(i + 1).unwrap();
            assert_eq!(file.name().unwrap(), name.as_str());
            let expected = match method {
                Method::Stored => ::zip::CompressionMethod::Stored,
                Method::Deflated => ::zip::CompressionMethod::Deflated,
            };
            assert_eq!(file.compression(), expected, "{name}");
            assert_eq!(file.unix_mode(), Some(0o100_644));
            let mut back = Vec::new();
            file.read_to_end(&mut back).unwrap();
            assert_eq!(&back, content, "{name}");
        }
    }

    #[test]
    fn entries_read_back_with_the_zip_crate() {
        round_trip(central::DEFAULT_MEMORY_LIMIT);
    }

    #[test]
    fn entries_read_back_when_the_central_directory_went_to_a_file() {
        round_trip(100);
    }

    #[test]
    fn nothing_is_written_when_an_unfinished_archive_is_dropped() {
        let mut sink = Vec::new();
        {
            let mut zip = ZipStream::new(&mut sink, 2, 1 << 20, None);
            zip.begin(header("a.txt", Method::Deflated)).unwrap();
            zip.data(&text(100)).unwrap();
        }
        assert!(sink.is_empty(), "the small writes were still buffered");
    }

    #[test]
    fn a_file_starting_past_4_gib_gets_zip64_sizes_everywhere() {
        let start = 5u64 << 30;
        let mut zip = ZipStream::new(Vec::new(), 2, 1 << 20, None).starting_at(start);
        zip.begin(header("late/", Method::Stored)).unwrap();
        let file = zip.out.position;
        zip.begin(header("late/a.txt", Method::Deflated)).unwrap();
        zip.data(&text(1000)).unwrap();
        zip.end_file().unwrap();
        let central = zip.out.position;
        let (bytes, len) = zip.finish().unwrap();
        assert_eq!(len - start, bytes.len() as u64);
        let at = |offset: u64| (offset - start) as usize;
        let field16 = |i: usize| u16_at(&bytes, i);
        let field32 = |i: usize| u32_at(&bytes, i);

        // The folder: no Zip64 in its local header.
        assert_eq!(field16(4), 20);
        // The file: version 4.5 and a Zip64 extra in its local header...
        let local = at(file);
        assert_eq!(field32(local), 0x0403_4b50);
        assert_eq!(field16(local + 4), 45);
        assert_eq!(field16(local + 30 + 10), 0x0001);
        // ...a 24-byte data descriptor just before the central directory...
        assert_eq!(field32(at(central) - 24), 0x0807_4b50);
        // ...and a central record with both sizes and the offset in its Zip64 extra.
        let records: Vec<usize> = (at(central)..bytes.len() - 4)
            .filter(|&i| field32(i) == 0x0201_4b50)
            .collect();
        assert_eq!(records.len(), 2);
        let record = records[1];
        assert_eq!(field16(record + 6), 45);
        let extra = record + 46 + "late/a.txt".len();
        assert_eq!((field16(extra), field16(extra + 2)), (0x0001, 24));
        assert_eq!(u64_at(&bytes, extra + 20), file);
    }

    use super::super::central;
}
