//! Writing the checked files as a module zip, as Go's `archive/zip.Writer` lays one out for
//! x/mod/zip's `Create`: every file under `module@version/`, deflated, its CRC-32 and sizes
//! in a data descriptor after the data (so nothing is buffered or rewritten: any `Write`
//! will do), no directory entries, a zip64 end record only when there are 65535 entries or
//! more. The `h1:` hash is computed from the same bytes as they pass.

use std::io::{self, Write};

use flate2::Compression;
use flate2::write::DeflateEncoder;
use sha2::{Digest, Sha256};

use super::{CheckedFiles, CreateError, SourceFile};
use crate::protocol::sumdb::dirhash::Hash1;
use crate::protocol::zip::MAX_ZIP_FILE;
use crate::protocol::{ModulePath, Version, quote};

const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const DESCRIPTOR_SIGNATURE: u32 = 0x0807_4b50;
const END_SIGNATURE: u32 = 0x0605_4b50;
const END64_SIGNATURE: u32 = 0x0606_4b50;
const END64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
/// Version 2.0 (deflate); 4.5 for zip64 records.
const VERSION_20: u16 = 20;
const VERSION_45: u16 = 45;
/// Made by Unix, so unzip tools keep the 0644 mode below.
const MADE_BY_UNIX: u16 = 3 << 8;
const MODE_0644: u32 = 0o100_644 << 16;
const FLAG_DATA_DESCRIPTOR: u16 = 0x8;
const FLAG_UTF8: u16 = 0x800;
const METHOD_DEFLATE: u16 = 8;

/// What a finished zip holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedZip {
    /// Its `h1:` hash (`dirhash.HashZip`), what go.sum and the checksum database record.
    pub h1: String,
    pub files: usize,
    /// The files' total size.
    pub content_bytes: u64,
    /// The zip's size.
    pub zip_bytes: u64,
}

/// A `Write` that counts, and refuses to grow past what the go command accepts.
struct Counting<W> {
    inner: W,
    written: u64,
    over: bool,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > MAX_ZIP_FILE {
            self.over = true;
            return Err(io::Error::other("the zip is larger than MaxZipFile"));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a module zip: [`ZipWriter::add`] each of [`ZipWriter::paths`] in order, then
/// [`ZipWriter::finish`].
pub struct ZipWriter<W: Write> {
    out: Counting<W>,
    prefix: String,
    files: Vec<SourceFile>,
    next: usize,
    central: Vec<u8>,
    h1: Hash1,
    content_bytes: u64,
}

impl<W: Write> ZipWriter<W> {
    /// A zip of `module@version` holding the `checked` files; fails with the go command's
    /// verdict when they cannot make one.
    pub fn new(
        out: W,
        module: &ModulePath,
        version: &Version,
        checked: CheckedFiles,
    ) -> Result<Self, CreateError> {
        checked.err()?;
        Ok(ZipWriter {
            out: Counting {
                inner: out,
                written: 0,
                over: false,
            },
            prefix: format!("{module}@{version}/"),
            files: checked.valid,
            next: 0,
            central: Vec::new(),
            h1: Hash1::new(u64::MAX),
            content_bytes: 0,
        })
    }

    /// The paths to add, in order (valid UTF-8: they passed `module.CheckFilePath`).
    pub fn paths(&self) -> Vec<String> {
        self.files
            .iter()
            .map(|f| String::from_utf8(f.path.clone()).expect("checked paths are UTF-8"))
            .collect()
    }

    fn io(&self, e: io::Error) -> CreateError {
        if self.out.over {
            CreateError::ZipTooLarge
        } else {
            CreateError::Io(e)
        }
    }

    /// Adds the next file's content. Like Go's `Create`, content longer than the listed size
    /// fails; shorter content is written as it is.
    pub fn add(&mut self, path: &str, content: &[u8]) -> Result<(), CreateError> {
        let Some(file) = self.files.get(self.next) else {
            return Err(CreateError::OutOfOrder {
                path: quote(path),
                want: "nothing (every file was added)".into(),
            });
        };
        if file.path != path.as_bytes() {
            return Err(CreateError::OutOfOrder {
                path: quote(path),
                want: file.shown(),
            });
        }
        if content.len() as u64 > file.size {
            return Err(CreateError::LargerThanDeclared {
                path: quote(path),
                size: file.size,
            });
        }
        let name = format!("{}{path}", self.prefix);
        self.write_entry(&name, content).map_err(|e| self.io(e))?;
        self.h1
            .add_hashed(&name, Sha256::digest(content).into(), content.len() as u64)
            .expect("checked names have no newline");
        self.content_bytes += content.len() as u64;
        self.next += 1;
        Ok(())
    }

    fn write_entry(&mut self, name: &str, content: &[u8]) -> io::Result<()> {
        let offset = self.out.written;
        let flags = FLAG_DATA_DESCRIPTOR | if name.is_ascii() { 0 } else { FLAG_UTF8 };
        let name_len = u16::try_from(name.len()).expect("check_files bounds names");
        let mut h = Vec::with_capacity(30 + name.len());
        put32(&mut h, LOCAL_SIGNATURE);
        put16(&mut h, VERSION_20);
        put16(&mut h, flags);
        put16(&mut h, METHOD_DEFLATE);
        put32(&mut h, 0); // modification time and date: none, as Go's Create writes
        put32(&mut h, 0); // CRC-32 and sizes: in the descriptor
        put32(&mut h, 0);
        put32(&mut h, 0);
        put16(&mut h, name_len);
        put16(&mut h, 0);
        h.extend_from_slice(name.as_bytes());
        self.out.write_all(&h)?;
        let data_start = self.out.written;
        let mut z = DeflateEncoder::new(&mut self.out, Compression::default());
        z.write_all(content)?;
        z.finish()?;
        let compressed = self.out.written - data_start;
        let crc = crc32fast::hash(content);
        let size = content.len() as u32; // at most MaxZipFile
        let mut d = Vec::with_capacity(16);
        put32(&mut d, DESCRIPTOR_SIGNATURE);
        put32(&mut d, crc);
        put32(&mut d, compressed as u32);
        put32(&mut d, size);
        self.out.write_all(&d)?;

        let c = &mut self.central;
        put32(c, CENTRAL_SIGNATURE);
        put16(c, MADE_BY_UNIX | VERSION_20);
        put16(c, VERSION_20);
        put16(c, flags);
        put16(c, METHOD_DEFLATE);
        put32(c, 0);
        put32(c, crc);
        put32(c, compressed as u32);
        put32(c, size);
        put16(c, name_len);
        put16(c, 0); // extra
        put16(c, 0); // comment
        put16(c, 0); // disk
        put16(c, 0); // internal attributes
        put32(c, MODE_0644);
        put32(c, offset as u32); // below MaxZipFile
        c.extend_from_slice(name.as_bytes());
        Ok(())
    }

    /// Writes the central directory and returns what the zip holds.
    pub fn finish(mut self) -> Result<CreatedZip, CreateError> {
        if self.next != self.files.len() {
            return Err(CreateError::Missing {
                added: self.next,
                want: self.files.len(),
            });
        }
        self.write_directory().map_err(|e| self.io(e))?;
        Ok(CreatedZip {
            h1: self.h1.finish(),
            files: self.files.len(),
            content_bytes: self.content_bytes,
            zip_bytes: self.out.written,
        })
    }

    fn write_directory(&mut self) -> io::Result<()> {
        let start = self.out.written;
        let central = std::mem::take(&mut self.central);
        self.out.write_all(&central)?;
        let (records, size, offset) = (self.files.len() as u64, central.len() as u64, start);
        let mut e = Vec::new();
        let saturated = records >= 0xffff || size >= 0xffff_ffff || offset >= 0xffff_ffff;
        if saturated {
            let end64 = self.out.written;
            put32(&mut e, END64_SIGNATURE);
            e.extend_from_slice(&44u64.to_le_bytes()); // the record's size after this field
            put16(&mut e, MADE_BY_UNIX | VERSION_45);
            put16(&mut e, VERSION_45);
            put32(&mut e, 0);
            put32(&mut e, 0);
            e.extend_from_slice(&records.to_le_bytes());
            e.extend_from_slice(&records.to_le_bytes());
            e.extend_from_slice(&size.to_le_bytes());
            e.extend_from_slice(&offset.to_le_bytes());
            put32(&mut e, END64_LOCATOR_SIGNATURE);
            put32(&mut e, 0);
            e.extend_from_slice(&end64.to_le_bytes());
            put32(&mut e, 1);
        }
        put32(&mut e, END_SIGNATURE);
        put32(&mut e, 0); // disks
        let (records, size, offset) = if saturated {
            (0xffff, 0xffff_ffff, 0xffff_ffff)
        } else {
            (records as u16, size as u32, offset as u32)
        };
        put16(&mut e, records);
        put16(&mut e, records);
        put32(&mut e, size);
        put32(&mut e, offset);
        put16(&mut e, 0); // comment
        self.out.write_all(&e)?;
        self.out.flush()
    }
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
