//! The zip container's records, as bytes (pure): local file headers, data descriptors, central
//! directory records and the end records, with Zip64 where sizes, offsets or the entry count
//! need it (APPNOTE 6.3.x, sections 4.3 and 4.5), and the DOS and Unix times they carry.
//!
//! Written by hand because the archive is streamed to a blob in one pass and its central
//! directory may not grow in memory with the number of entries (see `central.rs`); the `zip`
//! crate's writer keeps every entry's metadata until it finishes, which no API lets it release.

/// A record starts with one of these (little-endian on disk).
const LOCAL_HEADER: u32 = 0x0403_4b50;
const DATA_DESCRIPTOR: u32 = 0x0807_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const ZIP64_END: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const END: u32 = 0x0605_4b50;

/// Bit 3: CRC and sizes follow the data, in a data descriptor.
const FLAG_DATA_DESCRIPTOR: u16 = 1 << 3;
/// Bit 11: the name is UTF-8.
const FLAG_UTF8: u16 = 1 << 11;

/// Version needed to extract: 2.0 (deflate, folders), 4.5 (Zip64).
const VERSION_DEFAULT: u16 = 20;
const VERSION_ZIP64: u16 = 45;
/// "Made by" Unix (3), so that readers take the high 16 bits of the external attributes as a
/// Unix mode.
const MADE_BY_UNIX: u16 = 3 << 8;

const EXTRA_ZIP64: u16 = 0x0001;
const EXTRA_TIMESTAMP: u16 = 0x5455;

/// What a 16-bit count or a 32-bit size or offset holds when the real value is in a Zip64 field.
const MARK_16: u16 = u16::MAX;
const MARK_32: u32 = u32::MAX;

/// Unix file type bits, kept with the permission bits in the external attributes.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
/// The MS-DOS "directory" attribute, for readers that look at the low byte only.
const DOS_DIRECTORY: u32 = 0x10;

/// Sizes from this value up do not fit a 32-bit field (which holds the marker at `u32::MAX`).
pub const ZIP64_THRESHOLD: u64 = MARK_32 as u64;

/// How an entry's data is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Stored,
    Deflated,
}

impl Method {
    fn code(self) -> u16 {
        match self {
            Method::Stored => 0,
            Method::Deflated => 8,
        }
    }
}

/// A DOS date and time (UTC here), as the two 16-bit fields of zip headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DosTime {
    pub date: u16,
    pub time: u16,
}

impl DosTime {
    pub fn year(self) -> u16 {
        1980 + (self.date >> 9)
    }
    pub fn month(self) -> u8 {
        (self.date >> 5 & 0x0f) as u8
    }
    pub fn day(self) -> u8 {
        (self.date & 0x1f) as u8
    }
    pub fn hour(self) -> u8 {
        (self.time >> 11) as u8
    }
    pub fn minute(self) -> u8 {
        (self.time >> 5 & 0x3f) as u8
    }
    pub fn second(self) -> u8 {
        (self.time & 0x1f) as u8 * 2
    }
}

/// Civil date and time (UTC) of a Unix time in seconds: (year, month, day, hour, minute, second).
pub(super) fn civil_utc(unix: i64) -> (i64, u8, u8, u8, u8, u8) {
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
pub fn dos_time(unix: i64) -> DosTime {
    let (year, month, day, hour, minute, second) = civil_utc(unix);
    let (year, month, day, hour, minute, second) = if year < 1980 {
        (1980, 1, 1, 0, 0, 0)
    } else if year > 2107 {
        (2107, 12, 31, 23, 59, 58)
    } else {
        (year, month, day, hour, minute, second)
    };
    DosTime {
        date: ((year - 1980) as u16) << 9 | u16::from(month) << 5 | u16::from(day),
        time: u16::from(hour) << 11 | u16::from(minute) << 5 | u16::from(second / 2),
    }
}

/// The modification time for the extended timestamp field, if it fits the field as every reader
/// reads it (a non-negative signed 32-bit number of seconds: until 2038).
pub fn extended_timestamp(unix: i64) -> Option<u32> {
    u32::try_from(unix).ok().filter(|&t| t <= i32::MAX as u32)
}

/// What an entry's headers say about it before its data is written.
#[derive(Clone, Debug)]
pub struct Header {
    /// `a/b.txt`, or `a/dir/` for a folder. At most 65,535 bytes.
    pub name: String,
    pub directory: bool,
    pub method: Method,
    /// Permission bits; the file type bits are added here.
    pub mode: u32,
    pub time: DosTime,
    /// For the extended timestamp field, when the time fits it.
    pub unix_time: Option<u32>,
    /// Sizes as 64-bit fields (decided before the data is written, from the file's size).
    pub zip64: bool,
}

impl Header {
    /// Files carry a data descriptor: their CRC and sizes are only known after their data.
    /// Folders have none, and say so in the header.
    fn flags(&self) -> u16 {
        let mut flags = 0;
        if !self.directory {
            flags |= FLAG_DATA_DESCRIPTOR;
        }
        if !self.name.is_ascii() {
            flags |= FLAG_UTF8;
        }
        flags
    }

    fn external_attributes(&self) -> u32 {
        let mode = self.mode & 0o7777;
        if self.directory {
            (S_IFDIR | mode) << 16 | DOS_DIRECTORY
        } else {
            (S_IFREG | mode) << 16
        }
    }

    fn name_len(&self) -> u16 {
        u16::try_from(self.name.len()).unwrap_or(MARK_16)
    }

    fn timestamp_extra(&self, out: &mut Vec<u8>) {
        if let Some(t) = self.unix_time {
            put16(out, EXTRA_TIMESTAMP);
            put16(out, 5);
            out.push(1); // modification time present
            put32(out, t);
        }
    }
}

/// What an entry's data came to, known after it was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub crc32: u32,
    pub compressed: u64,
    pub uncompressed: u64,
    /// Where its local header starts in the archive.
    pub offset: u64,
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A 32-bit field, or the marker when the value lives in the Zip64 extra field.
fn field32(v: u64, in_zip64: bool) -> u32 {
    if in_zip64 { MARK_32 } else { v as u32 }
}

/// Appends the local file header of `header`. Files' CRC and sizes are zero (a data descriptor
/// follows their data); a Zip64 entry has a Zip64 extra field with zero sizes, which tells
/// readers that its data descriptor has 64-bit sizes.
pub fn local_header(out: &mut Vec<u8>, header: &Header) {
    let version = if header.zip64 {
        VERSION_ZIP64
    } else {
        VERSION_DEFAULT
    };
    let zip64_len = if header.zip64 { 4 + 16 } else { 0 };
    let timestamp_len = if header.unix_time.is_some() { 9 } else { 0 };
    put32(out, LOCAL_HEADER);
    put16(out, version);
    put16(out, header.flags());
    put16(out, header.method.code());
    put16(out, header.time.time);
    put16(out, header.time.date);
    put32(out, 0); // CRC-32
    let size = if header.zip64 { MARK_32 } else { 0 };
    put32(out, size); // compressed size
    put32(out, size); // uncompressed size
    put16(out, header.name_len());
    put16(out, zip64_len + timestamp_len);
    out.extend_from_slice(header.name.as_bytes());
    if header.zip64 {
        put16(out, EXTRA_ZIP64);
        put16(out, 16);
        put64(out, 0);
        put64(out, 0);
    }
    header.timestamp_extra(out);
}

/// Appends the data descriptor that follows a file's data: 64-bit sizes for Zip64 entries.
pub fn data_descriptor(out: &mut Vec<u8>, zip64: bool, written: &Written) {
    put32(out, DATA_DESCRIPTOR);
    put32(out, written.crc32);
    if zip64 {
        put64(out, written.compressed);
        put64(out, written.uncompressed);
    } else {
        put32(out, written.compressed as u32);
        put32(out, written.uncompressed as u32);
    }
}

/// Appends the central directory record of an entry. Sizes of Zip64 entries and offsets past
/// 4 GiB go to a Zip64 extra field (in that order, only those marked), ahead of the extended
/// timestamp.
pub fn central_record(out: &mut Vec<u8>, header: &Header, written: &Written) {
    let sizes_64 = header.zip64
        || written.compressed >= ZIP64_THRESHOLD
        || written.uncompressed >= ZIP64_THRESHOLD;
    let offset_64 = written.offset >= ZIP64_THRESHOLD;
    let zip64_fields = 2 * u16::from(sizes_64) + u16::from(offset_64);
    let zip64_len = if zip64_fields > 0 {
        4 + 8 * zip64_fields
    } else {
        0
    };
    let timestamp_len = if header.unix_time.is_some() { 9 } else { 0 };
    let version = if zip64_fields > 0 {
        VERSION_ZIP64
    } else {
        VERSION_DEFAULT
    };

    put32(out, CENTRAL_HEADER);
    put16(out, MADE_BY_UNIX | version);
    put16(out, version);
    put16(out, header.flags());
    put16(out, header.method.code());
    put16(out, header.time.time);
    put16(out, header.time.date);
    put32(out, written.crc32);
    put32(out, field32(written.compressed, sizes_64));
    put32(out, field32(written.uncompressed, sizes_64));
    put16(out, header.name_len());
    put16(out, zip64_len + timestamp_len);
    put16(out, 0); // comment length
    put16(out, 0); // disk number start
    put16(out, 0); // internal attributes
    put32(out, header.external_attributes());
    put32(out, field32(written.offset, offset_64));
    out.extend_from_slice(header.name.as_bytes());
    if zip64_fields > 0 {
        put16(out, EXTRA_ZIP64);
        put16(out, 8 * zip64_fields);
        if sizes_64 {
            put64(out, written.uncompressed);
            put64(out, written.compressed);
        }
        if offset_64 {
            put64(out, written.offset);
        }
    }
    header.timestamp_extra(out);
}

/// Appends what ends the archive, for a central directory of `entries` records and `size`
/// bytes starting at `offset`: the Zip64 end record and its locator when any of the three
/// does not fit the classic end record (which then holds markers), then the classic end record.
pub fn end_records(out: &mut Vec<u8>, entries: u64, offset: u64, size: u64) {
    let zip64 =
        entries >= u64::from(MARK_16) || offset >= ZIP64_THRESHOLD || size >= ZIP64_THRESHOLD;
    if zip64 {
        let zip64_end_offset = offset + size;
        put32(out, ZIP64_END);
        put64(out, 44); // size of the rest of this record
        put16(out, MADE_BY_UNIX | VERSION_ZIP64);
        put16(out, VERSION_ZIP64);
        put32(out, 0); // this disk
        put32(out, 0); // disk where the central directory starts
        put64(out, entries); // on this disk
        put64(out, entries); // in all
        put64(out, size);
        put64(out, offset);

        put32(out, ZIP64_LOCATOR);
        put32(out, 0); // disk with the Zip64 end record
        put64(out, zip64_end_offset);
        put32(out, 1); // disks in all
    }
    // Each field that does not fit holds its marker, the others their value (as Python's
    // zipfile and Info-ZIP zip write them).
    let count = u16::try_from(entries).unwrap_or(MARK_16);
    put32(out, END);
    put16(out, 0); // this disk
    put16(out, 0); // disk where the central directory starts
    put16(out, count);
    put16(out, count);
    put32(out, u32::try_from(size).unwrap_or(MARK_32));
    put32(out, u32::try_from(offset).unwrap_or(MARK_32));
    put16(out, 0); // comment length
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Fixed part of a central directory record; its name and extra fields follow.
    const CENTRAL_HEADER_LEN: usize = 46;

    fn header(name: &str) -> Header {
        Header {
            name: name.to_owned(),
            directory: false,
            method: Method::Deflated,
            mode: 0o644,
            time: dos_time(1_700_000_000),
            unix_time: Some(1_700_000_000),
            zip64: false,
        }
    }

    /// Little-endian field of `b` at `at` (also for the writer's tests).
    pub(in crate::archive) fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    pub(in crate::archive) fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    pub(in crate::archive) fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn dos_time_is_utc_and_clamped() {
        let fields = |t: DosTime| {
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
            )
        };
        // 2023-11-14T22:13:20Z.
        assert_eq!(fields(dos_time(1_700_000_000)), (2023, 11, 14, 22, 13, 20));
        // 2000-02-29T12:00:01Z: leap day, odd second.
        assert_eq!(fields(dos_time(951_825_601)), (2000, 2, 29, 12, 0, 0));
        assert_eq!(fields(dos_time(0)), (1980, 1, 1, 0, 0, 0));
        assert_eq!(fields(dos_time(-86_400)), (1980, 1, 1, 0, 0, 0));
        // 2128.
        assert_eq!(fields(dos_time(5_000_000_000)), (2107, 12, 31, 23, 59, 58));
        // The raw fields, as Info-ZIP computes them for 2023-11-14 22:13:20.
        assert_eq!(
            dos_time(1_700_000_000),
            DosTime {
                date: 43 << 9 | 11 << 5 | 14,
                time: 22 << 11 | 13 << 5 | 10
            }
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
    fn local_header_of_a_file_defers_crc_and_sizes() {
        let mut out = Vec::new();
        local_header(&mut out, &header("a/b.txt"));
        assert_eq!(out.len(), 30 + 7 + 9);
        assert_eq!(u32_at(&out, 0), LOCAL_HEADER);
        assert_eq!(u16_at(&out, 4), 20);
        assert_eq!(u16_at(&out, 6), FLAG_DATA_DESCRIPTOR);
        assert_eq!(u16_at(&out, 8), 8);
        assert_eq!(
            (u32_at(&out, 14), u32_at(&out, 18), u32_at(&out, 22)),
            (0, 0, 0)
        );
        assert_eq!((u16_at(&out, 26), u16_at(&out, 28)), (7, 9));
        assert_eq!(&out[30..37], b"a/b.txt");
        assert_eq!(
            (u16_at(&out, 37), u16_at(&out, 39), out[41]),
            (0x5455, 5, 1)
        );
        assert_eq!(u32_at(&out, 42), 1_700_000_000);
    }

    #[test]
    fn non_ascii_names_are_flagged_utf8_and_folders_have_no_descriptor() {
        let mut out = Vec::new();
        let folder = Header {
            directory: true,
            method: Method::Stored,
            mode: 0o755,
            unix_time: None,
            ..header("données/")
        };
        local_header(&mut out, &folder);
        assert_eq!(u16_at(&out, 6), FLAG_UTF8);
        assert_eq!(u16_at(&out, 8), 0);
        assert_eq!(u16_at(&out, 28), 0, "no extra field without a Unix time");
        assert_eq!(&out[30..], "données/".as_bytes());

        let mut central = Vec::new();
        central_record(&mut central, &folder, &Written::default());
        assert_eq!(u32_at(&central, 38), (0o040_755 << 16) | 0x10);
        assert_eq!(u16_at(&central, 4), 0x0300 | 20, "made by Unix");
    }

    #[test]
    fn zip64_entry_has_64_bit_sizes_in_every_record() {
        let big = Header {
            zip64: true,
            ..header("big.bin")
        };
        let mut local = Vec::new();
        local_header(&mut local, &big);
        assert_eq!(u16_at(&local, 4), 45);
        assert_eq!((u32_at(&local, 18), u32_at(&local, 22)), (MARK_32, MARK_32));
        assert_eq!(u16_at(&local, 28), 20 + 9);
        assert_eq!((u16_at(&local, 37), u16_at(&local, 39)), (EXTRA_ZIP64, 16));

        let written = Written {
            crc32: 0xdead_beef,
            compressed: 5 << 20,
            uncompressed: (4 << 30) + 1,
            offset: 12,
        };
        let mut descriptor = Vec::new();
        data_descriptor(&mut descriptor, true, &written);
        assert_eq!(descriptor.len(), 24);
        assert_eq!(u64_at(&descriptor, 8), 5 << 20);
        assert_eq!(u64_at(&descriptor, 16), (4 << 30) + 1);

        let mut central = Vec::new();
        central_record(&mut central, &big, &written);
        assert_eq!(u16_at(&central, 6), 45);
        assert_eq!(
            (u32_at(&central, 20), u32_at(&central, 24)),
            (MARK_32, MARK_32)
        );
        assert_eq!(u32_at(&central, 42), 12, "a small offset stays in place");
        let extra = CENTRAL_HEADER_LEN + 7;
        assert_eq!(u16_at(&central, 30), 20 + 9);
        assert_eq!(
            (u16_at(&central, extra), u16_at(&central, extra + 2)),
            (1, 16)
        );
        assert_eq!(
            u64_at(&central, extra + 4),
            (4 << 30) + 1,
            "uncompressed first"
        );
        assert_eq!(u64_at(&central, extra + 12), 5 << 20);
        assert_eq!(u16_at(&central, extra + 20), EXTRA_TIMESTAMP);
    }

    #[test]
    fn offset_past_4_gib_alone_goes_to_zip64_for_a_folder() {
        // (A file starting there is written with Zip64 sizes as well: see `ZipStream::begin`.)
        let mut central = Vec::new();
        let written = Written {
            offset: 5 << 30,
            ..Written::default()
        };
        let folder = Header {
            directory: true,
            method: Method::Stored,
            ..header("late/")
        };
        central_record(&mut central, &folder, &written);
        assert_eq!((u32_at(&central, 20), u32_at(&central, 24)), (0, 0));
        assert_eq!(u32_at(&central, 42), MARK_32);
        let extra = CENTRAL_HEADER_LEN + 5;
        assert_eq!(u16_at(&central, extra + 2), 8);
        assert_eq!(u64_at(&central, extra + 4), 5 << 30);
    }

    #[test]
    fn end_records_go_zip64_only_when_needed() {
        let mut out = Vec::new();
        end_records(&mut out, 3, 100, 200);
        assert_eq!(out.len(), 22);
        assert_eq!(u32_at(&out, 0), END);
        assert_eq!((u16_at(&out, 8), u16_at(&out, 10)), (3, 3));
        assert_eq!((u32_at(&out, 12), u32_at(&out, 16)), (200, 100));

        for (entries, offset) in [(65_535, 100), (70_000, 100), (3, 5 << 30)] {
            let mut out = Vec::new();
            end_records(&mut out, entries, offset, 200);
            assert_eq!(out.len(), 56 + 20 + 22, "{entries} entries at {offset}");
            assert_eq!(u32_at(&out, 0), ZIP64_END);
            assert_eq!(u64_at(&out, 32), entries);
            assert_eq!(u64_at(&out, 40), 200);
            assert_eq!(u64_at(&out, 48), offset);
            assert_eq!(u32_at(&out, 56), ZIP64_LOCATOR);
            assert_eq!(
                u64_at(&out, 64),
                offset + 200,
                "where the Zip64 end record is"
            );
            let end = 76;
            assert_eq!(u32_at(&out, end), END);
            let count = if entries >= 65_535 {
                MARK_16
            } else {
                entries as u16
            };
            assert_eq!(
                (u16_at(&out, end + 8), u16_at(&out, end + 10)),
                (count, count)
            );
            assert_eq!(u32_at(&out, end + 12), 200);
            let offset = if offset >= ZIP64_THRESHOLD {
                MARK_32
            } else {
                offset as u32
            };
            assert_eq!(u32_at(&out, end + 16), offset);
        }
    }
}
