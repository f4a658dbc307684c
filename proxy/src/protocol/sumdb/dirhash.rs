//! `h1:` hashes, as golang.org/x/mod/sumdb/dirhash's `Hash1` computes them: the checksum
//! database and go.sum record one for each module zip and one for each go.mod.
//!
//! `h1:` is base64(SHA-256(summary)), where the summary has one line per file, sorted by name
//! (bytewise): the file's hex SHA-256, two spaces, its name, a newline. A zip's hash covers
//! every entry of the zip under its full name (`module@version/path`), as `HashZip` does; a
//! go.mod's covers one file named `go.mod` (the go command's `goModSum`).
//!
//! Files are hashed as they stream past ([`Hash1::add`] takes a name and a reader), so a
//! 500 MB zip costs a buffer and 32 bytes per entry, and any zip reader can feed it.

use std::collections::HashMap;
use std::io::{self, Read, Seek};
use std::path::Path;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::note::STD_BASE64;

#[derive(Debug, thiserror::Error)]
pub enum DirhashError {
    #[error("dirhash: file names with newlines are not supported: {0:?}")]
    NewlineInName(String),
    #[error("dirhash: the files hold more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("dirhash: reading {name:?}: {source}")]
    Read { name: String, source: io::Error },
    #[error("dirhash: not a readable zip file: {0}")]
    Zip(String),
}

/// An `h1:` hash being computed: add every file, then [`Hash1::finish`].
pub struct Hash1 {
    /// (name, SHA-256 of the content), in the order added.
    files: Vec<(Vec<u8>, [u8; 32])>,
    total: u64,
    limit: u64,
}

impl Hash1 {
    /// A hash over files holding at most `limit` bytes in all (more is an error, so a
    /// decompression bomb stops at the limit).
    pub fn new(limit: u64) -> Hash1 {
        Hash1 {
            files: Vec::new(),
            total: 0,
            limit,
        }
    }

    /// Hashes one file as it is read.
    pub fn add(
        &mut self,
        name: impl AsRef<[u8]>,
        mut content: impl Read,
    ) -> Result<(), DirhashError> {
        let name = name.as_ref();
        let shown = || String::from_utf8_lossy(name).into_owned();
        if name.contains(&b'\n') {
            return Err(DirhashError::NewlineInName(shown()));
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match content.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(DirhashError::Read {
                        name: shown(),
                        source,
                    });
                }
            };
            self.total += n as u64;
            if self.total > self.limit {
                return Err(DirhashError::TooLarge { limit: self.limit });
            }
            h.update(&buf[..n]);
        }
        self.files.push((name.to_vec(), h.finalize().into()));
        Ok(())
    }

    /// The `h1:` hash. A name added twice is listed twice with the content added last, as
    /// `HashZip`'s name-to-entry map makes Go do.
    pub fn finish(self) -> String {
        let last: HashMap<&[u8], [u8; 32]> = self
            .files
            .iter()
            .map(|(name, sum)| (name.as_slice(), *sum))
            .collect();
        let mut names: Vec<&[u8]> = self.files.iter().map(|(n, _)| n.as_slice()).collect();
        names.sort();
        let mut summary = Sha256::new();
        for name in names {
            let sum = last[name];
            let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
            summary.update(hex.as_bytes());
            summary.update(b"  ");
            summary.update(name);
            summary.update(b"\n");
        }
        format!("h1:{}", STD_BASE64.encode(summary.finalize()))
    }
}

/// The `h1:` hash of a go.mod, as the checksum database records it for `module version/go.mod`.
pub fn hash_go_mod(data: &[u8]) -> String {
    let mut h = Hash1::new(u64::MAX);
    h.add("go.mod", data)
        .expect("reading from memory cannot fail");
    h.finish()
}

/// The `h1:` hash of a module zip (Go's `HashZip`): every entry, directories included, under
/// its name in the zip; `limit` bounds the bytes decompressed. Entries are checked against
/// their CRC as they are read.
pub fn hash_zip<R: Read + Seek>(reader: R, limit: u64) -> Result<String, DirhashError> {
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| DirhashError::Zip(e.to_string()))?;
    let mut h = Hash1::new(limit);
    for i in 0..archive.len() {
        let entry = archive
            .by_index(i)
            .map_err(|e| DirhashError::Zip(format!("entry {i}: {e}")))?;
        let name = entry.name_raw().to_vec();
        h.add(name, entry)?;
    }
    Ok(h.finish())
}

/// [`hash_zip`] of a file.
pub fn hash_zip_file(path: &Path, limit: u64) -> Result<String, DirhashError> {
    let file = std::fs::File::open(path).map_err(|source| DirhashError::Read {
        name: path.display().to_string(),
        source,
    })?;
    hash_zip(io::BufReader::new(file), limit)
}

#[cfg(test)]
mod tests {
    //! Vectors from golang.org/x/mod/sumdb/dirhash's hash_test.go, and the go.mod hash of a
    //! real module as the checksum database records it.
    use std::io::Write;

    use super::*;

    fn h(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn htop(s: &str) -> String {
        format!("h1:{}", STD_BASE64.encode(Sha256::digest(s.as_bytes())))
    }

    #[test]
    fn hash1_sorts_names_and_hashes_the_summary() {
        let mut hash = Hash1::new(u64::MAX);
        for name in ["xyz", "abc"] {
            hash.add(name, format!("data for {name}").as_bytes())
                .unwrap();
        }
        let want = htop(&format!(
            "{}  abc\n{}  xyz\n",
            h("data for abc"),
            h("data for xyz")
        ));
        assert_eq!(hash.finish(), want);
        let mut hash = Hash1::new(u64::MAX);
        assert!(matches!(
            hash.add("a\nbc", &b""[..]),
            Err(DirhashError::NewlineInName(_))
        ));
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, data) in entries {
            if name.ends_with('/') {
                w.add_directory(*name, stored).unwrap();
            } else {
                w.start_file(*name, stored).unwrap();
                w.write_all(data).unwrap();
            }
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn zip_hash_covers_every_entry_by_full_name() {
        let z = zip_of(&[
            ("prefix/xyz", b"data for xyz"),
            ("prefix/abc", b"data for abc"),
        ]);
        let want = htop(&format!(
            "{}  prefix/abc\n{}  prefix/xyz\n",
            h("data for abc"),
            h("data for xyz")
        ));
        assert_eq!(hash_zip(io::Cursor::new(z), u64::MAX).unwrap(), want);

        // Directory entries are hashed as empty files, as Go's HashZip does.
        let z = zip_of(&[("m@v1.0.0/d/", b""), ("m@v1.0.0/d/f", b"x")]);
        let want = htop(&format!(
            "{}  m@v1.0.0/d/\n{}  m@v1.0.0/d/f\n",
            h(""),
            h("x")
        ));
        assert_eq!(hash_zip(io::Cursor::new(z), u64::MAX).unwrap(), want);
    }

    #[test]
    fn zip_hash_stops_at_the_limit_and_at_corrupt_entries() {
        let z = zip_of(&[("m@v1/a", &[7u8; 1000]), ("m@v1/b", &[8u8; 1000])]);
        assert!(hash_zip(io::Cursor::new(z.clone()), 2000).is_ok());
        assert!(matches!(
            hash_zip(io::Cursor::new(z.clone()), 1999),
            Err(DirhashError::TooLarge { limit: 1999 })
        ));
        // Flip a byte of the first entry's (stored) content: its CRC no longer matches.
        let mut bad = z;
        let at = bad.windows(3).position(|w| w == [7, 7, 7]).unwrap();
        bad[at] ^= 1;
        assert!(hash_zip(io::Cursor::new(bad), u64::MAX).is_err());
        assert!(hash_zip(io::Cursor::new(b"not a zip".to_vec()), u64::MAX).is_err());
    }

    #[test]
    fn go_mod_hash_is_over_a_file_named_go_mod() {
        // golang.org/x/text v0.23.0's go.mod and its hash as go.sum and the checksum database
        // record it (`golang.org/x/text v0.23.0/go.mod h1:...`): the name is `go.mod`, not
        // `module@version/go.mod`.
        let go_mod = "module golang.org/x/text\n\ngo 1.23.0\n\n\
                      require golang.org/x/tools v0.21.1-0.20240508182429-e35e4ccd0d2d // tagx:ignore\n\n\
                      require golang.org/x/mod v0.17.0 // indirect; tagx:ignore\n\n\
                      require golang.org/x/sync v0.12.0 // indirect\n";
        assert_eq!(
            hash_go_mod(go_mod.as_bytes()),
            "h1:/BLNzu4aZCJ1+kcD0DNRotWKage4q2rGVAg4o22unh4="
        );
        assert_eq!(
            hash_go_mod(go_mod.as_bytes()),
            htop(&format!("{}  go.mod\n", h(go_mod)))
        );
    }
}
