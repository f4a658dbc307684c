//! Listing what is in a cache directory, without changing it: the index at start-up and
//! `modfleet-proxy verify` both read the same listing, and only the proxy's own start-up
//! removes what a crash left (so `verify` run against a live member never touches its
//! downloads in flight).

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Name prefix of files being written (see `CacheWriter`).
pub const TMP_PREFIX: &str = ".tmp-";

/// One entry found under the cache root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file: a cache entry.
    File {
        rel: PathBuf,
        len: u64,
        modified: SystemTime,
    },
    /// A temporary file (a download in flight, or left by a crash).
    Tmp { rel: PathBuf },
    /// Anything else in a file's place: a symlink, a FIFO, a device. Never served.
    NotRegular { rel: PathBuf },
}

/// Lists everything under `root` (the cache's `download/` directory), depth first, without
/// following symlinks. A missing root is an empty cache.
pub fn scan(root: &Path) -> io::Result<Vec<Entry>> {
    let mut found = Vec::new();
    walk(root, root, &mut found)?;
    Ok(found)
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<Entry>) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        // From the directory entry itself (lstat): a symlink is never followed.
        let ty = entry.file_type()?;
        let path = entry.path();
        let rel = path.strip_prefix(root).expect("under root").to_path_buf();
        if ty.is_dir() {
            walk(root, &path, found)?;
        } else if ty.is_file() && entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            found.push(Entry::Tmp { rel });
        } else if ty.is_file() {
            let meta = entry.metadata()?;
            found.push(Entry::File {
                rel,
                len: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        } else {
            found.push(Entry::NotRegular { rel });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_files_temporaries_and_strays_without_touching_them() {
        let dir = tempfile::tempdir().unwrap();
        let at = |rel: &str| dir.path().join(rel);
        std::fs::create_dir_all(at("a.example/m/@v")).unwrap();
        std::fs::write(at("a.example/m/@v/v1.0.0.mod"), b"module a.example/m\n").unwrap();
        std::fs::write(at("a.example/m/@v/.tmp-1-0"), b"half").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", at("a.example/m/@v/v1.0.1.mod")).unwrap();
        let mut kinds: Vec<String> = scan(dir.path())
            .unwrap()
            .iter()
            .map(|e| match e {
                Entry::File { rel, len, .. } => format!("file {} {len}", rel.display()),
                Entry::Tmp { rel } => format!("tmp {}", rel.display()),
                Entry::NotRegular { rel } => format!("stray {}", rel.display()),
            })
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "file a.example/m/@v/v1.0.0.mod 19",
                "stray a.example/m/@v/v1.0.1.mod",
                "tmp a.example/m/@v/.tmp-1-0",
            ]
        );
        assert!(
            at("a.example/m/@v/.tmp-1-0").exists(),
            "listing removed a file"
        );
    }
}
