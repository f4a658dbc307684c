//! Reading a zip archive as Go's `archive/zip` reads it, within modfleet's bounds.
//!
//! The go command decides what a module zip holds with `archive/zip`, so every choice here is
//! that package's (Go 1.26, `reader.go`), quirks included: the end record is the last one in
//! the final 1 KiB (else 66 KiB) whose comment fits; a zip64 locator is consulted only when a
//! field of the end record is saturated; bytes before the archive shift every offset
//! (`baseOffset`); central directory records are read one after another until one does not
//! parse, and their number must match the end record's modulo 65536; local headers supply only
//! their signature and the length of their name and extra field; a directory entry (name ending
//! in `/`) must have no uncompressed data and is not read; stored and deflate are the only
//! methods; a CRC of zero is not checked unless a data descriptor follows the data.
//!
//! Offsets and sizes come from the hostile file: they are checked before use, arithmetic on
//! them wraps exactly where Go's `int64` arithmetic wraps, and nothing is allocated from a size
//! field. Work and memory are bounded by [`Limits`].

use std::cell::{Cell, RefCell};
use std::io;

use flate2::{Decompress, FlushDecompress, Status};

use super::{Limits, ZipError};

const END_SIGNATURE: u32 = 0x0605_4b50;
const END64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const END64_SIGNATURE: u32 = 0x0606_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const DESCRIPTOR_SIGNATURE: u32 = 0x0807_4b50;
const END_LEN: usize = 22;
const END64_LOCATOR_LEN: usize = 20;
const END64_LEN: usize = 56;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;
const ZIP64_EXTRA_ID: u16 = 0x0001;
/// Flag bit 3: CRC and sizes follow the data in a data descriptor.
const FLAG_DATA_DESCRIPTOR: u16 = 0x8;
const METHOD_STORED: u16 = 0;
const METHOD_DEFLATE: u16 = 8;
/// Read and inflate in chunks of this size.
const CHUNK: usize = 64 << 10;

/// Positioned reads, as Go's `io.ReaderAt`: a file on disk or bytes in memory.
pub trait ReadAt {
    /// Reads at `offset` into `buf`; returns 0 at or past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = self.get(start..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// A window of [`CHUNK`] bytes over a source: the local headers and small entries that follow
/// one another in a zip cost one read per window instead of two per entry.
pub struct Window<'a, R: ?Sized> {
    src: &'a R,
    start: Cell<u64>,
    buf: RefCell<Vec<u8>>,
}

impl<'a, R: ReadAt + ?Sized> Window<'a, R> {
    pub fn new(src: &'a R) -> Self {
        Window {
            src,
            start: Cell::new(0),
            buf: RefCell::new(Vec::new()),
        }
    }
}

impl<R: ReadAt + ?Sized> ReadAt for Window<'_, R> {
    fn read_at(&self, out: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut buf = self.buf.borrow_mut();
        let start = self.start.get();
        let end = offset.checked_add(out.len() as u64);
        if offset >= start && end.is_some_and(|end| end <= start + buf.len() as u64) {
            let at = (offset - start) as usize;
            out.copy_from_slice(&buf[at..at + out.len()]);
            return Ok(out.len());
        }
        if out.len() >= CHUNK {
            return self.src.read_at(out, offset);
        }
        buf.resize(CHUNK, 0);
        let n = fill_at(self.src, &mut buf, offset)?;
        buf.truncate(n);
        self.start.set(offset);
        let n = n.min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// Fills as much of `buf` as the source has at `offset`; returns how much that was.
fn fill_at<R: ReadAt + ?Sized>(src: &R, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let Some(at) = offset.checked_add(done as u64) else {
            break;
        };
        match src.read_at(&mut buf[done..], at) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// [`fill_at`], its errors as the zip's.
fn read_full_at<R: ReadAt + ?Sized>(
    src: &R,
    buf: &mut [u8],
    offset: u64,
) -> Result<usize, ZipError> {
    fill_at(src, buf, offset).map_err(|e| ZipError::Io(e.to_string()))
}

/// Reads exactly `buf.len()` bytes at a signed offset, as Go's `ReadAt` must: fails past the end
/// or before the start.
fn read_exact_at<R: ReadAt + ?Sized>(
    src: &R,
    buf: &mut [u8],
    offset: i64,
) -> Result<bool, ZipError> {
    let Ok(offset) = u64::try_from(offset) else {
        return Ok(false);
    };
    Ok(read_full_at(src, buf, offset)? == buf.len())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// One central directory record: what Go's `zip.File` keeps of it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name's place in [`Archive::names`].
    name_start: u32,
    name_len: u16,
    /// "Version made by": its high byte names the system whose file attributes follow.
    creator_version: u16,
    /// "External file attributes": a Unix mode in the high 16 bits, or MS-DOS flags.
    external_attrs: u32,
    flags: u16,
    pub method: u16,
    pub crc: u32,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    /// Where the local header is, `baseOffset` included; may be anything (Go's `int64`).
    header_offset: i64,
}

/// The central directory: entries in order, and their names in one buffer.
#[derive(Debug, Default)]
pub struct Archive {
    pub entries: Vec<Entry>,
    names: Vec<u8>,
}

impl Archive {
    /// The entry's name as stored (any bytes; UTF-8 is checked by the rules).
    pub fn name(&self, entry: &Entry) -> &[u8] {
        let start = entry.name_start as usize;
        &self.names[start..start + usize::from(entry.name_len)]
    }

    /// Every name, one after another.
    pub fn names(&self) -> &[u8] {
        &self.names
    }

    /// Where the entry's name starts in [`Archive::names`].
    pub fn name_offset(&self, entry: &Entry) -> usize {
        entry.name_start as usize
    }
}

/// What an entry is, as Go's `FileHeader.Mode` makes it out from the creator system and the
/// external attributes (the go command's `codeRepo.Zip` hands that mode to x/mod/zip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// `Mode().IsRegular()`: with its Unix execute bits, when the creator was Unix.
    Regular {
        executable: bool,
    },
    Symlink,
    Directory,
    /// A device, pipe or socket.
    Other,
}

/// Go's `creatorUnix`, `creatorMacOSX`; `creatorFAT`, `creatorNTFS`, `creatorVFAT`.
const CREATORS_UNIX: [u16; 2] = [3, 19];
const CREATORS_MSDOS: [u16; 3] = [0, 11, 14];

impl Archive {
    /// Go's `FileHeader.Mode`, reduced to what x/mod/zip asks of it: a Unix mode's file type
    /// (an unknown type is a regular file, as in Go's `unixModeToFileMode`), MS-DOS's
    /// directory flag, and a name ending in `/` is a directory whatever the attributes.
    pub fn entry_type(&self, entry: &Entry) -> EntryType {
        let creator = entry.creator_version >> 8;
        let mut t = if CREATORS_UNIX.contains(&creator) {
            let mode = entry.external_attrs >> 16;
            match mode & 0xf000 {
                0xa000 => EntryType::Symlink,
                0x4000 => EntryType::Directory,
                0x1000 | 0x2000 | 0x6000 | 0xc000 => EntryType::Other,
                _ => EntryType::Regular {
                    executable: mode & 0o111 != 0,
                },
            }
        } else if CREATORS_MSDOS.contains(&creator) && entry.external_attrs & 0x10 != 0 {
            EntryType::Directory
        } else {
            EntryType::Regular { executable: false }
        };
        if self.name(entry).ends_with(b"/") {
            t = EntryType::Directory;
        }
        t
    }
}

/// The end of central directory record, zip64 values merged in.
struct End {
    records: u64,
    directory_size: u64,
    directory_offset: u64,
}

/// Go's `findSignatureInBlock`: the last end record in `b` whose comment fits; a truncated
/// comment on the last signature ends the search.
fn find_signature_in_block(b: &[u8]) -> Option<usize> {
    let last = b.len().checked_sub(END_LEN)?;
    for i in (0..=last).rev() {
        if u32_at(b, i) == END_SIGNATURE {
            let comment = usize::from(u16_at(b, i + END_LEN - 2));
            return (comment + END_LEN + i <= b.len()).then_some(i);
        }
    }
    None
}

/// Go's `readDirectoryEnd`: the end record (zip64 values merged) and `baseOffset`.
fn read_directory_end<R: ReadAt + ?Sized>(src: &R, size: u64) -> Result<(End, i64), ZipError> {
    let mut found = None;
    for (i, want) in [1024u64, 65 * 1024].into_iter().enumerate() {
        let len = want.min(size);
        let mut buf = vec![0; len as usize];
        if read_full_at(src, &mut buf, size - len)? != buf.len() {
            return Err(ZipError::Io("the zip changed size while being read".into()));
        }
        if let Some(p) = find_signature_in_block(&buf) {
            found = Some((buf, p, size - len + p as u64));
            break;
        }
        if i == 1 || len == size {
            return Err(ZipError::NotZip("no end of central directory record"));
        }
    }
    let (buf, p, mut end_offset) = found.expect("found or returned");
    let b = &buf[p..];
    let mut end = End {
        records: u64::from(u16_at(b, 10)),
        directory_size: u64::from(u32_at(b, 12)),
        directory_offset: u64::from(u32_at(b, 16)),
    };
    // Go compares the 32-bit size with 0xFFFF, not 0xFFFFFFFF; so does this.
    let saturated = end.records == 0xffff
        || end.directory_size == 0xffff
        || end.directory_offset == 0xffff_ffff;
    if saturated
        && let Some(p64) = find_directory64_end(src, end_offset)?
        && p64 >= 0
    {
        end_offset = p64 as u64;
        read_directory64_end(src, p64, &mut end)?;
    }
    let max = i64::MAX as u64;
    if end.directory_size > max || end.directory_offset > max {
        return Err(ZipError::NotZip(
            "central directory size or offset out of range",
        ));
    }
    let mut base = (end_offset as i64)
        .wrapping_sub(end.directory_size as i64)
        .wrapping_sub(end.directory_offset as i64);
    let start = base.wrapping_add(end.directory_offset as i64);
    if start < 0 || start as u64 >= size {
        return Err(ZipError::NotZip(
            "central directory offset is outside the file",
        ));
    }
    // Trust offsets from the start of the file when a record really is where they say.
    if base > 0 {
        let mut at = Sequential::new(src, size, end.directory_offset, u64::MAX);
        if matches!(read_central(&mut at, &mut Vec::new())?, Central::Entry(_)) {
            base = 0;
        }
    }
    Ok((end, base))
}

/// Go's `findDirectory64End`: the zip64 end record's offset named by a valid locator.
fn find_directory64_end<R: ReadAt + ?Sized>(
    src: &R,
    end_offset: u64,
) -> Result<Option<i64>, ZipError> {
    let Some(at) = end_offset.checked_sub(END64_LOCATOR_LEN as u64) else {
        return Ok(None);
    };
    let mut b = [0; END64_LOCATOR_LEN];
    if read_full_at(src, &mut b, at)? != b.len() {
        return Err(ZipError::NotZip("zip64 locator cut short"));
    }
    if u32_at(&b, 0) != END64_LOCATOR_SIGNATURE || u32_at(&b, 4) != 0 || u32_at(&b, 16) != 1 {
        return Ok(None);
    }
    Ok(Some(u64_at(&b, 8) as i64))
}

/// Go's `readDirectory64End`.
fn read_directory64_end<R: ReadAt + ?Sized>(
    src: &R,
    at: i64,
    end: &mut End,
) -> Result<(), ZipError> {
    let mut b = [0; END64_LEN];
    if !read_exact_at(src, &mut b, at)? {
        return Err(ZipError::NotZip("zip64 end record is outside the file"));
    }
    if u32_at(&b, 0) != END64_SIGNATURE {
        return Err(ZipError::NotZip("zip64 end record has a bad signature"));
    }
    end.records = u64_at(&b, 32);
    end.directory_size = u64_at(&b, 40);
    end.directory_offset = u64_at(&b, 48);
    Ok(())
}

/// A buffered forward reader from an offset to the end of the source, counting what it hands
/// out against a budget (Go reads the central directory through a `bufio.Reader`).
struct Sequential<'a, R: ?Sized> {
    src: &'a R,
    pos: u64,
    size: u64,
    buf: Vec<u8>,
    start: usize,
    budget: u64,
    limit: u64,
}

impl<'a, R: ReadAt + ?Sized> Sequential<'a, R> {
    fn new(src: &'a R, size: u64, pos: u64, budget: u64) -> Self {
        Sequential {
            src,
            pos,
            size,
            buf: Vec::new(),
            start: 0,
            budget,
            limit: budget,
        }
    }

    /// Go's `io.ReadFull`: `Full`, `Partial` (some bytes, then the end) or `Nothing`.
    fn read_full(&mut self, out: &mut [u8]) -> Result<Fill, ZipError> {
        let mut done = 0;
        while done < out.len() {
            if self.start == self.buf.len() {
                let want = (self.size.saturating_sub(self.pos)).min(CHUNK as u64) as usize;
                self.buf.resize(want, 0);
                let n = read_full_at(self.src, &mut self.buf, self.pos)?;
                self.buf.truncate(n);
                self.pos += n as u64;
                self.start = 0;
                if n == 0 {
                    break;
                }
            }
            let n = (self.buf.len() - self.start).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.start += n;
            done += n;
        }
        Ok(match done {
            0 if !out.is_empty() => Fill::Nothing,
            n if n < out.len() => Fill::Partial,
            _ => Fill::Full,
        })
    }

    fn spend(&mut self, n: u64) -> Result<(), ZipError> {
        self.budget = self
            .budget
            .checked_sub(n)
            .ok_or(ZipError::DirectoryTooLarge(self.limit))?;
        Ok(())
    }
}

enum Fill {
    Full,
    Partial,
    Nothing,
}

/// What reading one central directory record gave.
enum Central {
    Entry(Entry),
    /// Not a record, or cut short (Go's `ErrFormat`, `ErrUnexpectedEOF`): the directory ends.
    End,
    /// Nothing at all left to read (Go's `io.EOF`): the whole archive is refused.
    Eof,
}

/// Go's `readDirectoryHeader`; the name goes to the end of `names`.
fn read_central<R: ReadAt + ?Sized>(
    r: &mut Sequential<'_, R>,
    names: &mut Vec<u8>,
) -> Result<Central, ZipError> {
    let mut h = [0; CENTRAL_LEN];
    match r.read_full(&mut h)? {
        Fill::Full => {}
        Fill::Partial => return Ok(Central::End),
        Fill::Nothing => return Ok(Central::Eof),
    }
    if u32_at(&h, 0) != CENTRAL_SIGNATURE {
        return Ok(Central::End);
    }
    let name_len = u16_at(&h, 28);
    let extra_len = usize::from(u16_at(&h, 30));
    let comment_len = usize::from(u16_at(&h, 32));
    let mut var = vec![0; usize::from(name_len) + extra_len + comment_len];
    match r.read_full(&mut var)? {
        Fill::Full => {}
        Fill::Partial => return Ok(Central::End),
        Fill::Nothing => return Ok(Central::Eof),
    }
    r.spend((CENTRAL_LEN + var.len()) as u64)?;
    let compressed = u32_at(&h, 20);
    let uncompressed = u32_at(&h, 24);
    let offset = u32_at(&h, 42);
    let mut entry = Entry {
        name_start: 0,
        name_len,
        creator_version: u16_at(&h, 4),
        external_attrs: u32_at(&h, 38),
        flags: u16_at(&h, 8),
        method: u16_at(&h, 10),
        crc: u32_at(&h, 16),
        compressed_size: u64::from(compressed),
        uncompressed_size: u64::from(uncompressed),
        header_offset: i64::from(offset),
    };
    let mut need_usize = uncompressed == u32::MAX;
    let mut need_csize = compressed == u32::MAX;
    let mut need_offset = offset == u32::MAX;
    let mut extra = &var[usize::from(name_len)..usize::from(name_len) + extra_len];
    while extra.len() >= 4 {
        let tag = u16_at(extra, 0);
        let size = usize::from(u16_at(extra, 2));
        extra = &extra[4..];
        if extra.len() < size {
            break;
        }
        let (mut field, rest) = extra.split_at(size);
        extra = rest;
        if tag != ZIP64_EXTRA_ID {
            continue;
        }
        let mut take = |need: &mut bool| -> Option<Option<u64>> {
            if !std::mem::take(need) {
                return Some(None);
            }
            let v = u64_at(field.get(..8)?, 0);
            field = &field[8..];
            Some(Some(v))
        };
        let (Some(u), Some(c), Some(o)) = (
            take(&mut need_usize),
            take(&mut need_csize),
            take(&mut need_offset),
        ) else {
            return Ok(Central::End);
        };
        entry.uncompressed_size = u.unwrap_or(entry.uncompressed_size);
        entry.compressed_size = c.unwrap_or(entry.compressed_size);
        entry.header_offset = o.map_or(entry.header_offset, |o| o as i64);
    }
    // An uncompressed size of 0xFFFFFFFF without zip64 stands (Go accepts 42.zip); the others
    // cannot.
    if need_csize || need_offset {
        return Ok(Central::End);
    }
    entry.name_start =
        u32::try_from(names.len()).map_err(|_| ZipError::DirectoryTooLarge(r.limit))?;
    names.extend_from_slice(&var[..usize::from(name_len)]);
    Ok(Central::Entry(entry))
}

/// Go's `zip.NewReader`: the central directory of the archive in `src` (`size` bytes).
pub fn read_archive<R: ReadAt + ?Sized>(
    src: &R,
    size: u64,
    limits: &Limits,
) -> Result<Archive, ZipError> {
    let (end, base) = read_directory_end(src, size)?;
    let start = base.wrapping_add(end.directory_offset as i64);
    let start = u64::try_from(start)
        .map_err(|_| ZipError::NotZip("central directory offset is outside the file"))?;
    let mut r = Sequential::new(src, size, start, limits.central_directory_bytes);
    let mut archive = Archive::default();
    // As Go: believe the entry count only as far as the file could hold that many records.
    let plausible = end.records.min(size / CENTRAL_LEN as u64);
    archive
        .entries
        .reserve(plausible.min(limits.entries as u64) as usize);
    loop {
        match read_central(&mut r, &mut archive.names)? {
            Central::Entry(mut e) => {
                if archive.entries.len() == limits.entries {
                    return Err(ZipError::TooManyEntries(limits.entries));
                }
                e.header_offset = e.header_offset.wrapping_add(base);
                archive.entries.push(e);
            }
            Central::End => break,
            Central::Eof => {
                return Err(ZipError::NotZip(
                    "central directory runs to the end of the file",
                ));
            }
        }
    }
    if archive.entries.len() as u16 != end.records as u16 {
        return Err(ZipError::EntryCount {
            declared: end.records,
            found: archive.entries.len(),
        });
    }
    Ok(archive)
}

/// What reading an entry's data found wrong (Go's `File.Open` and `checksumReader`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("its local header is outside the file")]
    LocalHeaderOutside,
    #[error("its local header has a bad signature")]
    LocalHeaderSignature,
    #[error("it is a directory but declares {0} bytes of content")]
    DirectoryWithData(u64),
    #[error("compression method {0} is not supported (the go command reads stored and deflate)")]
    Method(u16),
    #[error("its deflate data is corrupt: {0}")]
    Corrupt(String),
    #[error("its data ends before its declared {declared} bytes ({read} read)")]
    Short { declared: u64, read: u64 },
    #[error("it holds more than its declared {0} bytes")]
    Long(u64),
    #[error("its data descriptor is missing or cut short")]
    DescriptorMissing,
    #[error("its data descriptor's CRC-32 {found:08x} differs from the directory's {declared:08x}")]
    DescriptorCrc { declared: u32, found: u32 },
    #[error("its CRC-32 is {actual:08x}, the directory says {declared:08x}")]
    Crc { declared: u32, actual: u32 },
}

/// Why reading an entry stopped: its own fault, or the archive's.
pub enum ReadError {
    Data(DataError),
    Zip(ZipError),
}

impl From<DataError> for ReadError {
    fn from(e: DataError) -> Self {
        ReadError::Data(e)
    }
}

impl From<ZipError> for ReadError {
    fn from(e: ZipError) -> Self {
        ReadError::Zip(e)
    }
}

/// Reads one entry as Go's `File.Open` and a full read of it do, handing its content to
/// `sink`. `budget` is what may still be read of the archive in all; it shrinks.
pub fn read_entry<R: ReadAt + ?Sized>(
    src: &R,
    size: u64,
    archive: &Archive,
    entry: &Entry,
    budget: &mut Budget,
    mut sink: impl FnMut(&[u8]),
) -> Result<(), ReadError> {
    let mut local = [0; LOCAL_LEN];
    if !read_exact_at(src, &mut local, entry.header_offset)? {
        return Err(DataError::LocalHeaderOutside.into());
    }
    if u32_at(&local, 0) != LOCAL_SIGNATURE {
        return Err(DataError::LocalHeaderSignature.into());
    }
    if archive.name(entry).ends_with(b"/") {
        return match entry.uncompressed_size {
            0 => Ok(()),
            n => Err(DataError::DirectoryWithData(n).into()),
        };
    }
    if entry.method != METHOD_STORED && entry.method != METHOD_DEFLATE {
        return Err(DataError::Method(entry.method).into());
    }
    let body =
        (LOCAL_LEN + usize::from(u16_at(&local, 26)) + usize::from(u16_at(&local, 28))) as i64;
    // The local header was read, so this neither overflows nor is negative.
    let data = entry.header_offset + body;
    // Go's io.NewSectionReader: a size that overflows (or is negative) reads to the end.
    let csize = entry.compressed_size as i64;
    let data_end = match data.checked_add(csize) {
        Some(end) if csize >= 0 => end as u64,
        _ => u64::MAX,
    }
    .min(size);
    let data = data as u64;
    let declared = entry.uncompressed_size;
    let mut crc = crc32fast::Hasher::new();
    let mut read: u64 = 0;
    let mut out = |chunk: &[u8]| -> Result<(), DataError> {
        read += chunk.len() as u64;
        if read > declared {
            return Err(DataError::Long(declared));
        }
        crc.update(chunk);
        sink(chunk);
        Ok(())
    };
    if entry.method == METHOD_STORED {
        stored(src, data, data_end, budget, &mut out)?;
    } else {
        inflate(src, data, data_end, budget, &mut out)?;
    }
    if read != declared {
        return Err(DataError::Short { declared, read }.into());
    }
    let actual = crc.finalize();
    if entry.flags & FLAG_DATA_DESCRIPTOR != 0 {
        let at = (entry.header_offset + body).wrapping_add(csize);
        let found = read_descriptor_crc(src, at)?.ok_or(DataError::DescriptorMissing)?;
        if found != entry.crc {
            return Err(DataError::DescriptorCrc {
                declared: entry.crc,
                found,
            }
            .into());
        }
    } else if entry.crc == 0 {
        // Go does not check a CRC of zero when no data descriptor follows.
        return Ok(());
    }
    if actual != entry.crc {
        return Err(DataError::Crc {
            declared: entry.crc,
            actual,
        }
        .into());
    }
    Ok(())
}

/// What may still be read of the archive, of how much.
pub struct Budget {
    pub left: u64,
    pub limit: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Budget { left: limit, limit }
    }
}

/// Takes `n` bytes from the read budget.
fn spend(budget: &mut Budget, n: usize) -> Result<(), ZipError> {
    budget.left = budget
        .left
        .checked_sub(n as u64)
        .ok_or(ZipError::ReadBudget(budget.limit))?;
    Ok(())
}

/// Stored data: the bytes from `from` to `to`, but no more than one past what `out` accepts.
fn stored<R: ReadAt + ?Sized>(
    src: &R,
    from: u64,
    to: u64,
    budget: &mut Budget,
    out: &mut impl FnMut(&[u8]) -> Result<(), DataError>,
) -> Result<(), ReadError> {
    let mut buf = vec![0; CHUNK.min(to.saturating_sub(from) as usize)];
    let mut pos = from;
    while pos < to {
        let want = buf.len().min((to - pos) as usize);
        let n = read_full_at(src, &mut buf[..want], pos)?;
        if n == 0 {
            break;
        }
        spend(budget, n)?;
        out(&buf[..n])?;
        pos += n as u64;
    }
    Ok(())
}

/// Raw deflate data between `from` and `to`, inflated until its final block ends; bytes after it
/// are ignored, as Go ignores them. `out` stops it one byte past the declared size.
fn inflate<R: ReadAt + ?Sized>(
    src: &R,
    from: u64,
    to: u64,
    budget: &mut Budget,
    out: &mut impl FnMut(&[u8]) -> Result<(), DataError>,
) -> Result<(), ReadError> {
    let mut z = Decompress::new(false);
    let mut input = vec![0; CHUNK.min(to.saturating_sub(from) as usize)];
    let mut output = vec![0; CHUNK];
    let (mut pos, mut have, mut used) = (from, 0, 0);
    loop {
        if used == have && pos < to {
            let want = input.len().min((to - pos) as usize);
            have = read_full_at(src, &mut input[..want], pos)?;
            spend(budget, have)?;
            // Nothing read before `to`: the file shrank; treat it as the end.
            pos = if have == 0 { to } else { pos + have as u64 };
            used = 0;
        }
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let status = z
            .decompress(&input[used..have], &mut output, FlushDecompress::None)
            .map_err(|e| DataError::Corrupt(e.to_string()))?;
        let consumed = (z.total_in() - in_before) as usize;
        let produced = (z.total_out() - out_before) as usize;
        used += consumed;
        out(&output[..produced])?;
        if status == Status::StreamEnd {
            return Ok(());
        }
        if consumed == 0 && produced == 0 && (used < have || pos >= to) {
            // No progress: the data ended before the final block (or the inflater is stuck).
            return Err(DataError::Corrupt("the stream ends before its final block".into()).into());
        }
    }
}

/// Go's `readDataDescriptor`: the CRC-32 in the descriptor at `at` (with or without its
/// signature), or `None` when it is cut short.
fn read_descriptor_crc<R: ReadAt + ?Sized>(src: &R, at: i64) -> Result<Option<u32>, ZipError> {
    let Ok(at) = u64::try_from(at) else {
        return Ok(None);
    };
    let mut b = [0; 16];
    let n = read_full_at(src, &mut b, at)?;
    if n < 4 {
        return Ok(None);
    }
    if u32_at(&b, 0) == DESCRIPTOR_SIGNATURE {
        Ok((n >= 16).then(|| u32_at(&b, 4)))
    } else {
        Ok((n >= 12).then(|| u32_at(&b, 0)))
    }
}
