//! One credentials file: read whole but bounded, and a cheap way to tell that it changed.
//!
//! A Secret volume is updated by the kubelet with an atomic symlink swap (`..data` points to
//! a new directory), so the path's target is another inode; a file rewritten in place has
//! another size, mtime or ctime. [`version`] is one `stat` of the path (following links),
//! cheap enough to run before every use instead of watching.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Largest credentials file read: a password, a token or a netrc file is far smaller, and a
/// wrong path (a log, a device) must not be read into memory.
pub const MAX_FILE_BYTES: u64 = 64 << 10;

/// How long after a change a file's `stat` may not yet tell a further change (see
/// [`Version::racy`]); whole seconds are compared, so two.
pub const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// What identifies one content of a file, as far as `stat` can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    /// Whether a rewrite in place could still go unseen: the file changed less than
    /// [`RACY_WINDOW`] before `now`, and a rewrite within the same tick of the kernel's coarse
    /// clock keeps mtime and ctime (git's "racy" index entries). Such a file is read again at
    /// its next use.
    pub fn racy(&self, now: std::time::SystemTime) -> bool {
        let changed = std::time::UNIX_EPOCH
            + std::time::Duration::new(self.mtime.0.max(self.ctime.0).max(0) as u64, 0);
        now.duration_since(changed).is_ok_and(|d| d < RACY_WINDOW) || now < changed
    }

    fn of(m: &std::fs::Metadata) -> Version {
        Version {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// Why a credentials file cannot be used. Names the file, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{} is larger than {max} bytes: is it the right file?", path.display())]
    TooLarge { path: PathBuf, max: u64 },
}

fn unreadable(path: &Path, e: &std::io::Error) -> FileError {
    FileError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The file's current version (one `stat`, following symlinks).
pub fn version(path: &Path) -> Result<Version, FileError> {
    std::fs::metadata(path)
        .map(|m| Version::of(&m))
        .map_err(|e| unreadable(path, &e))
}

/// Reads the whole file (at most [`MAX_FILE_BYTES`]) and the version it was read at.
pub fn read(path: &Path) -> Result<(Version, Vec<u8>), FileError> {
    read_at_most(path, MAX_FILE_BYTES)
}

/// Reads the whole file, refused when larger than `max` bytes, and the version it was read at.
pub fn read_at_most(path: &Path, max: u64) -> Result<(Version, Vec<u8>), FileError> {
    let file = std::fs::File::open(path).map_err(|e| unreadable(path, &e))?;
    let meta = file.metadata().map_err(|e| unreadable(path, &e))?;
    if !meta.is_file() {
        return Err(FileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let too_large = || FileError::TooLarge {
        path: path.to_path_buf(),
        max,
    };
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(path, &e))?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok((Version::of(&meta), bytes))
}

/// The first line of a secret file: a mounted Secret's trailing newline (or its absence, or
/// a CRLF) does not matter, as for the git credential helper of private modules.
pub fn first_line(bytes: &[u8]) -> &[u8] {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_or_rewritten_file_has_another_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "one\n").unwrap();
        let (v1, bytes) = read(&path).unwrap();
        assert_eq!(bytes, b"one\n");
        assert_eq!(version(&path).unwrap(), v1);
        // Rewritten in place: another size (the same size within one tick of the kernel's
        // clock may look the same: see `racy`).
        std::fs::write(&path, "three\n").unwrap();
        assert_ne!(version(&path).unwrap(), v1);
        let now = std::time::SystemTime::now();
        assert!(v1.racy(now));
        assert!(!v1.racy(now + RACY_WINDOW + std::time::Duration::from_secs(1)));
        // Replaced the kubelet's way: a new file behind a swapped symlink.
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(&a, "x").unwrap();
        std::fs::write(&b, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let before = version(&link).unwrap();
        let tmp = dir.path().join("link.tmp");
        std::os::unix::fs::symlink(&b, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
        assert_ne!(version(&link).unwrap(), before);
    }

    #[test]
    fn errors_name_the_file_and_reads_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let e = read(&missing).unwrap_err().to_string();
        assert!(
            e.contains(&missing.display().to_string()) && e.contains("No such file"),
            "{e}"
        );
        assert!(matches!(read(dir.path()), Err(FileError::NotAFile { .. })));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(read(&big), Err(FileError::TooLarge { .. })));
        // A device that never ends is refused before it is read.
        assert!(matches!(
            read(Path::new("/dev/zero")),
            Err(FileError::NotAFile { .. })
        ));
    }

    #[test]
    fn the_first_line_without_its_end() {
        assert_eq!(first_line(b"s3cret\n"), b"s3cret");
        assert_eq!(first_line(b"s3cret"), b"s3cret");
        assert_eq!(first_line(b"s3cret\r\nmore"), b"s3cret");
        assert_eq!(first_line(b""), b"");
    }
}
