//! A zip writer that writes exactly the bytes a test asks for, malformed ones included.
//!
//! Zip libraries refuse to write most of what a hostile upstream serves (two entries with one
//! name, a local header naming another file, sizes that lie, a CRC of zero, a bad data
//! descriptor), so the module-zip tests build archives here, field by field: [`Entry`] says what
//! one file is and how each of its header fields should lie; [`Zip`] lays the entries out (local
//! headers and data, then the central directory, then the end records) and can add bytes before
//! the archive, a comment, bytes after it, or a zip64 end record.

use std::io::Write;

/// How an entry's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Stored,
    Deflated,
    /// Any other method number, written as is (the data is stored uncompressed).
    Other(u16),
}

impl Method {
    fn number(self) -> u16 {
        match self {
            Method::Stored => 0,
            Method::Deflated => 8,
            Method::Other(n) => n,
        }
    }
}

/// One zip entry. Fields left `None` are written truthfully.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The name in the central directory (what readers list).
    pub name: Vec<u8>,
    /// The uncompressed content.
    pub data: Vec<u8>,
    pub method: Method,
    /// A different name in the local header.
    pub local_name: Option<Vec<u8>>,
    /// The compressed bytes to write instead of compressing `data`.
    pub raw: Option<Vec<u8>>,
    /// Write only this many bytes of the compressed data (the headers still say all of it).
    pub cut_data_to: Option<usize>,
    /// Lies in the central directory.
    pub crc: Option<u32>,
    pub compressed_size: Option<u64>,
    pub uncompressed_size: Option<u64>,
    /// Set general-purpose flag bit 3 and write a data descriptor after the data.
    pub data_descriptor: Option<DataDescriptor>,
    /// Extra general-purpose flag bits (e.g. 0x1, "encrypted").
    pub extra_flags: u16,
    /// Write sizes and offset as 0xFFFFFFFF with a zip64 extra field holding the real values.
    pub zip64: bool,
    /// A zip64 extra field with only this many bytes (to test short fields); implies `zip64`.
    pub zip64_field_len: Option<u16>,
    /// Unix mode in the external attributes (e.g. 0o120777 for a symlink).
    pub unix_mode: Option<u32>,
    /// Point the central directory at another entry's local header (by index).
    pub share_header_of: Option<usize>,
    /// A local header signature other than PK\x03\x04.
    pub bad_local_signature: bool,
    /// A central directory comment length with no comment written: the record swallows the
    /// bytes after it.
    pub central_comment_len: Option<u16>,
}

/// The data descriptor written after an entry's data when its flag bit 3 is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataDescriptor {
    /// Start with the optional PK\x07\x08 signature.
    pub signature: bool,
    /// A CRC other than the entry's.
    pub crc: Option<u32>,
    /// Leave the descriptor out although the flag is set.
    pub missing: bool,
}

impl Default for DataDescriptor {
    fn default() -> Self {
        DataDescriptor {
            signature: true,
            crc: None,
            missing: false,
        }
    }
}

impl Entry {
    /// A stored file.
    pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Entry {
        Entry {
            name: name.as_ref().to_vec(),
            data: data.as_ref().to_vec(),
            method: Method::Stored,
            local_name: None,
            raw: None,
            cut_data_to: None,
            crc: None,
            compressed_size: None,
            uncompressed_size: None,
            data_descriptor: None,
            extra_flags: 0,
            zip64: false,
            zip64_field_len: None,
            unix_mode: None,
            share_header_of: None,
            bad_local_signature: false,
            central_comment_len: None,
        }
    }

    /// A directory entry (the name should end in `/`).
    pub fn dir(name: impl AsRef<[u8]>) -> Entry {
        Entry::file(name, b"")
    }

    /// The same file, deflated.
    pub fn deflated(mut self) -> Entry {
        self.method = Method::Deflated;
        self
    }

    pub fn method(mut self, method: Method) -> Entry {
        self.method = method;
        self
    }

    fn compressed(&self) -> Vec<u8> {
        if let Some(raw) = &self.raw {
            return raw.clone();
        }
        match self.method {
            Method::Deflated => deflate(&self.data),
            Method::Stored | Method::Other(_) => self.data.clone(),
        }
    }
}

/// Raw deflate (no zlib header) of `data`.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("deflate into memory");
    enc.finish().expect("deflate into memory")
}

/// Raw deflate bits: fields least significant bit first, Huffman codes most significant first.
#[derive(Debug, Default)]
pub struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    /// `n` bits of `value`, least significant first.
    pub fn put(&mut self, value: u64, n: u32) {
        self.acc |= value << self.n;
        self.n += n;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code of `len` bits, most significant bit first.
    pub fn code(&mut self, code: u64, len: u32) {
        let reversed = (0..len).fold(0, |r, i| (r << 1) | ((code >> i) & 1));
        self.put(reversed, len);
    }

    /// The bytes, the last one padded with zero bits.
    pub fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A raw deflate stream of `n` (at least 1) zero bytes, written directly in one fixed-Huffman
/// block: a literal, then matches of 258 bytes at distance 1. About 1:1000, and cheap to build
/// at any size (compressing that many bytes would not be).
pub fn deflated_zeros(n: u64) -> Vec<u8> {
    assert!(n >= 1, "at least one byte");
    let mut b = Bits::default();
    b.put(1, 1); // BFINAL
    b.put(1, 2); // fixed Huffman codes
    b.code(0x30, 8); // literal 0
    let (matches, rest) = ((n - 1) / 258, (n - 1) % 258);
    for _ in 0..matches {
        b.code(0xC5, 8); // length code 285: 258 bytes
        b.code(0, 5); // distance code 0: distance 1
    }
    for _ in 0..rest {
        b.code(0x30, 8);
    }
    b.code(0, 7); // end of block
    b.finish()
}

/// The CRC-32 (IEEE) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// A whole archive.
#[derive(Debug, Clone, Default)]
pub struct Zip {
    pub entries: Vec<Entry>,
    /// Bytes before the archive.
    pub prefix: Vec<u8>,
    /// Whether offsets count from the start of the file (true) or of the archive (false, as
    /// when a zip is appended to another file).
    pub offsets_include_prefix: bool,
    /// The end record's comment.
    pub comment: Vec<u8>,
    /// Say the comment is this long instead.
    pub comment_len: Option<u16>,
    /// Bytes after the end record.
    pub suffix: Vec<u8>,
    /// Write a zip64 end record and locator, and 0xFFFF/0xFFFFFFFF in the end record.
    pub zip64_end: bool,
    /// Lie about the number of entries in the end records.
    pub records: Option<u64>,
    /// Lie about where the central directory starts.
    pub directory_offset: Option<u64>,
}

impl Zip {
    pub fn new(entries: Vec<Entry>) -> Zip {
        Zip {
            entries,
            ..Zip::default()
        }
    }

    /// The archive's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut out = self.prefix.clone();
        let base = if self.offsets_include_prefix {
            0
        } else {
            self.prefix.len() as u64
        };
        let mut central = Vec::new();
        let mut header_offsets = Vec::new();
        for e in &self.entries {
            let body = e.compressed();
            let crc = e.crc.unwrap_or_else(|| crc32(&e.data));
            let csize = e.compressed_size.unwrap_or(body.len() as u64);
            let usize = e.uncompressed_size.unwrap_or(e.data.len() as u64);
            let flags = e.extra_flags
                | if e.data_descriptor.is_some() { 0x8 } else { 0 }
                | if std::str::from_utf8(&e.name).is_ok_and(|s| !s.is_ascii()) {
                    0x800
                } else {
                    0
                };
            let zip64 = e.zip64 || e.zip64_field_len.is_some();
            let own_offset = out.len() as u64 - base;
            let offset = match e.share_header_of {
                Some(i) => header_offsets[i],
                None => own_offset,
            };
            header_offsets.push(offset);
            if e.share_header_of.is_none() {
                // Local header: sizes truthful unless a descriptor follows.
                let local_name = e.local_name.as_ref().unwrap_or(&e.name);
                let mut local_extra = Vec::new();
                if zip64 {
                    local_extra.extend(1u16.to_le_bytes());
                    local_extra.extend(16u16.to_le_bytes());
                    local_extra.extend(usize.to_le_bytes());
                    local_extra.extend(csize.to_le_bytes());
                }
                let sig: u32 = if e.bad_local_signature {
                    0x0403_4b51
                } else {
                    0x0403_4b50
                };
                out.extend(sig.to_le_bytes());
                out.extend(if zip64 { 45u16 } else { 20u16 }.to_le_bytes());
                out.extend(flags.to_le_bytes());
                out.extend(e.method.number().to_le_bytes());
                out.extend([0, 0, 0x21, 0]); // time, date (1980-01-01)
                let (lcrc, lc, lu) = if e.data_descriptor.is_some() {
                    (0, 0, 0)
                } else if zip64 {
                    (crc, u32::MAX, u32::MAX)
                } else {
                    (crc, csize as u32, usize as u32)
                };
                out.extend(lcrc.to_le_bytes());
                out.extend(lc.to_le_bytes());
                out.extend(lu.to_le_bytes());
                out.extend((local_name.len() as u16).to_le_bytes());
                out.extend((local_extra.len() as u16).to_le_bytes());
                out.extend(local_name);
                out.extend(&local_extra);
                let cut = e.cut_data_to.unwrap_or(body.len()).min(body.len());
                out.extend(&body[..cut]);
                if let Some(dd) = e.data_descriptor
                    && !dd.missing
                {
                    if dd.signature {
                        out.extend(0x0807_4b50u32.to_le_bytes());
                    }
                    out.extend(dd.crc.unwrap_or(crc).to_le_bytes());
                    out.extend((csize as u32).to_le_bytes());
                    out.extend((usize as u32).to_le_bytes());
                }
            }

            let mut extra = Vec::new();
            if zip64 {
                let mut field = Vec::new();
                field.extend(usize.to_le_bytes());
                field.extend(csize.to_le_bytes());
                field.extend(offset.to_le_bytes());
                let len = e.zip64_field_len.map_or(field.len(), usize::from);
                field.truncate(len);
                extra.extend(1u16.to_le_bytes());
                extra.extend((field.len() as u16).to_le_bytes());
                extra.extend(field);
            }
            central.extend(0x0201_4b50u32.to_le_bytes());
            central.extend(0x031eu16.to_le_bytes()); // made by: Unix, 3.0
            central.extend(if zip64 { 45u16 } else { 20u16 }.to_le_bytes());
            central.extend(flags.to_le_bytes());
            central.extend(e.method.number().to_le_bytes());
            central.extend([0, 0, 0x21, 0]);
            central.extend(crc.to_le_bytes());
            if zip64 {
                central.extend(u32::MAX.to_le_bytes());
                central.extend(u32::MAX.to_le_bytes());
            } else {
                central.extend((csize as u32).to_le_bytes());
                central.extend((usize as u32).to_le_bytes());
            }
            central.extend((e.name.len() as u16).to_le_bytes());
            central.extend((extra.len() as u16).to_le_bytes());
            central.extend(e.central_comment_len.unwrap_or(0).to_le_bytes());
            central.extend(0u16.to_le_bytes()); // disk
            central.extend(0u16.to_le_bytes()); // internal attributes
            let mode = e.unix_mode.unwrap_or(if e.name.ends_with(b"/") {
                0o040755
            } else {
                0o100644
            });
            central.extend((mode << 16).to_le_bytes());
            central.extend(if zip64 { u32::MAX } else { offset as u32 }.to_le_bytes());
            central.extend(&e.name);
            central.extend(&extra);
        }

        let cd_offset = self.directory_offset.unwrap_or(out.len() as u64 - base);
        let cd_size = central.len() as u64;
        out.extend(&central);
        let records = self.records.unwrap_or(self.entries.len() as u64);
        if self.zip64_end {
            let end64 = out.len() as u64 - base;
            out.extend(0x0606_4b50u32.to_le_bytes());
            out.extend(44u64.to_le_bytes());
            out.extend(45u16.to_le_bytes());
            out.extend(45u16.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(records.to_le_bytes());
            out.extend(records.to_le_bytes());
            out.extend(cd_size.to_le_bytes());
            out.extend(cd_offset.to_le_bytes());
            out.extend(0x0706_4b50u32.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(end64.to_le_bytes());
            out.extend(1u32.to_le_bytes());
        }
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        let (r16, size32, off32) = if self.zip64_end {
            (0xffff, u32::MAX, u32::MAX)
        } else {
            (records as u16, cd_size as u32, cd_offset as u32)
        };
        out.extend(r16.to_le_bytes());
        out.extend(r16.to_le_bytes());
        out.extend(size32.to_le_bytes());
        out.extend(off32.to_le_bytes());
        let comment_len = self.comment_len.unwrap_or(self.comment.len() as u16);
        out.extend(comment_len.to_le_bytes());
        out.extend(&self.comment);
        out.extend(&self.suffix);
        out
    }
}
