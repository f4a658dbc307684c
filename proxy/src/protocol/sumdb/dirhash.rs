//! `h1:` hashes, as golang.org/x/mod/sumdb/dirhash's `Hash1` computes them: the checksum
//! database and go.sum record one for each module zip and one for each go.mod.
//!
//! `h1:` is base64(SHA-256(summary)), where the summary has one line per file, sorted by name
//! (bytewise): the file's hex SHA-256, two spaces, its name, a newline. A zip's hash covers
//! every entry of the zip under its full name (`module@version/path`), as `HashZip` does; a
//! go.mod's covers one file named `go.mod` (the go command's `goModSum`).
//!
//! Files are hashed as they stream past ([`Hash1::add`] takes a name and a reader, or
//! [`Hash1::add_hashed`] a digest), so a 500 MB zip costs a buffer and 32 bytes per entry: the
//! zip check ([`crate::protocol::zip`]) hashes every entry in the pass that checks it.

use std::collections::HashMap;
use std::io::{self, Read};

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

    /// Adds a file hashed elsewhere (`sha256` of its `len` bytes of content), e.g. while a zip
    /// check reads it.
    pub fn add_hashed(
        &mut self,
        name: impl AsRef<[u8]>,
        sha256: [u8; 32],
        len: u64,
    ) -> Result<(), DirhashError> {
        let name = name.as_ref();
        if name.contains(&b'\n') {
            return Err(DirhashError::NewlineInName(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        self.total += len;
        if self.total > self.limit {
            return Err(DirhashError::TooLarge { limit: self.limit });
        }
        self.files.push((name.to_vec(), sha256));
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

#[cfg(test)]
mod tests {
    //! Vectors from golang.org/x/mod/sumdb/dirhash's hash_test.go, and the go.mod hash of a
    //! real module as the checksum database records it.

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
