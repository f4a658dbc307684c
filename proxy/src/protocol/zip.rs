//! Module zip checks: golang.org/x/mod/zip's `CheckZip`, then what the go command does next.
//!
//! [`check_zip`] accepts exactly the zips `go mod download` accepts: `CheckZip`'s rules (every
//! name under `<module>@<version>/`, clean, a valid `module.CheckFilePath`; no two names equal
//! under Go's case folding; no path both a file and a directory; `go.mod` only at the root and
//! only in lowercase; the `MaxZipFile`, `MaxGoMod` and `MaxLICENSE` limits on declared sizes),
//! then `dirhash.HashZip`, which reads every entry: each must inflate to its declared size with
//! its CRC-32. `tests/zip_reference.rs` holds modfleet to that against Go's own code.
//!
//! Why read the archive here instead of through the `zip` crate: a checker only proves what it
//! sees. The go command sees what Go's `archive/zip` sees, and a general-purpose reader differs
//! from it exactly where an attacker aims: it keeps one of two entries with the same name (so
//! the other is never checked), refuses an encrypted flag or a CRC of zero that Go ignores,
//! checks an entry count Go compares modulo 65536. `zip/archive.rs` is a reader of Go's choices,
//! so every entry the go command would read is one this module checked.
//!
//! Beyond Go, work and memory are bounded ([`Limits`]): Go has no limit on the number of
//! entries, the size of the central directory, or how often overlapping entries make it re-read
//! the same bytes. No real module comes near these bounds; a zip past them is refused.

mod archive;
mod collisions;
pub mod create;

use std::path::Path;

pub use self::archive::{DataError, ReadAt};

use self::archive::{Archive, ReadError};
use self::collisions::{Collision, Collisions};
use sha2::{Digest, Sha256};

use super::module::check_file_path;
use super::sumdb::dirhash::Hash1;
use super::{ModulePath, Version, quote, unicode};

/// Largest module zip, and largest total of its files' sizes (`modzip.MaxZipFile`).
pub const MAX_ZIP_FILE: u64 = 500 << 20;
/// Largest `go.mod` in a module zip (`modzip.MaxGoMod`).
pub const MAX_GO_MOD: u64 = 16 << 20;
/// Largest `LICENSE` at a module zip's root (`modzip.MaxLICENSE`).
pub const MAX_LICENSE: u64 = 16 << 20;

/// modfleet's bounds on the work one zip may cause (the go command has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most entries in the central directory.
    pub entries: usize,
    /// Most bytes of central directory records (names, extra fields and comments included).
    pub central_directory_bytes: u64,
    /// Most bytes read from the archive while reading every entry; more is only possible when
    /// entries overlap.
    pub read_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            entries: 1 << 20,
            central_directory_bytes: 64 << 20,
            read_bytes: MAX_ZIP_FILE,
        }
    }
}

/// What a zip that passed holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedZip {
    /// The root `go.mod`, if there is one (compare it with the module's `.mod`).
    pub go_mod: Option<Vec<u8>>,
    /// Its `h1:` hash, as the checksum database records it (`dirhash.HashZip`).
    pub h1: String,
    /// Entries that are files.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
}

/// Why a module zip is refused. One line; names the entry and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipError {
    #[error("cannot read the zip: {0}")]
    Io(String),
    #[error(
        "the zip is {0} bytes, more than the go command's limit of {MAX_ZIP_FILE} (MaxZipFile)"
    )]
    TooLarge(u64),
    #[error("not a zip archive the go command can read: {0}")]
    NotZip(&'static str),
    #[error(
        "not a zip archive the go command can read: the end record says {declared} entries, \
         the central directory has {found}"
    )]
    EntryCount { declared: u64, found: usize },
    #[error("the zip has more than {0} entries, modfleet's limit (real modules have far fewer)")]
    TooManyEntries(usize),
    #[error(
        "the zip's central directory is larger than {0} bytes, modfleet's limit (real modules' \
         are far smaller)"
    )]
    DirectoryTooLarge(u64),
    #[error("reading every entry reads more than {0} bytes: entries overlap (a zip bomb)")]
    ReadBudget(u64),
    #[error(
        "the files total more than {MAX_ZIP_FILE} bytes uncompressed, the go command's limit \
         (MaxZipFile)"
    )]
    TotalSize,
    #[error("zip entry {name}: {rule}")]
    Entry { name: String, rule: Rule },
}

/// The rule a zip entry breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    #[error("not under {0:?}")]
    Prefix(String),
    #[error("file path is not clean")]
    NotClean,
    #[error("invalid file path: {0}")]
    FilePath(String),
    #[error("equal to {0} under Unicode case folding")]
    CaseCollision(String),
    #[error("{0} is both a file and a directory")]
    FileAndDirectory(String),
    #[error("the file appears twice")]
    Duplicate,
    #[error("go.mod files are only allowed in the module root")]
    GoModNotAtRoot,
    #[error("go.mod must be named go.mod, in lowercase")]
    GoModCase,
    #[error("go.mod declares {0} bytes, more than {MAX_GO_MOD} (MaxGoMod)")]
    GoModTooLarge(u64),
    #[error("LICENSE declares {0} bytes, more than {MAX_LICENSE} (MaxLICENSE)")]
    LicenseTooLarge(u64),
    #[error("{0}")]
    Data(#[from] DataError),
    #[error("cannot be hashed: {0}")]
    Hash(String),
}

/// Checks the module zip at `path` for `module@version`.
pub fn check_zip_file(
    path: &Path,
    module: &ModulePath,
    version: &Version,
) -> Result<CheckedZip, ZipError> {
    let file = std::fs::File::open(path).map_err(|e| ZipError::Io(e.to_string()))?;
    let size = file
        .metadata()
        .map_err(|e| ZipError::Io(e.to_string()))?
        .len();
    check_zip(&file, size, module, version, &Limits::default())
}

/// Checks a module zip of `size` bytes read from `src`.
pub fn check_zip<R: ReadAt + ?Sized>(
    src: &R,
    size: u64,
    module: &ModulePath,
    version: &Version,
    limits: &Limits,
) -> Result<CheckedZip, ZipError> {
    if size > MAX_ZIP_FILE {
        return Err(ZipError::TooLarge(size));
    }
    let archive = archive::read_archive(src, size, limits)?;
    let prefix = format!("{}@{}/", module.as_str(), version.as_str());
    let summary = check_names(&archive, &prefix)?;
    let mut go_mod = None;
    let mut budget = archive::Budget::new(limits.read_bytes);
    let window = archive::Window::new(src);
    // `dirhash.HashZip` in the same pass: every entry under its full name.
    let mut h1 = Hash1::new(u64::MAX);
    for (i, entry) in archive.entries.iter().enumerate() {
        let mut content = (Some(i) == summary.go_mod).then(Vec::new);
        let (mut sha, mut len) = (Sha256::new(), 0u64);
        archive::read_entry(&window, size, &archive, entry, &mut budget, |chunk| {
            sha.update(chunk);
            len += chunk.len() as u64;
            if let Some(c) = &mut content {
                c.extend_from_slice(chunk);
            }
        })
        .map_err(|e| match e {
            ReadError::Zip(e) => e,
            ReadError::Data(e) => entry_error(archive.name(entry), Rule::Data(e)),
        })?;
        h1.add_hashed(archive.name(entry), sha.finalize().into(), len)
            .map_err(|e| entry_error(archive.name(entry), Rule::Hash(e.to_string())))?;
        if content.is_some() {
            go_mod = content;
        }
    }
    Ok(CheckedZip {
        go_mod,
        h1: h1.finish(),
        files: summary.files,
        bytes: summary.bytes,
    })
}

fn entry_error(name: &[u8], rule: Rule) -> ZipError {
    ZipError::Entry {
        name: quote(&String::from_utf8_lossy(name)),
        rule,
    }
}

/// What the names say, once they pass.
struct Names {
    /// The index of the root go.mod.
    go_mod: Option<usize>,
    files: usize,
    bytes: u64,
}

/// `CheckZip`'s loop over the central directory: names and declared sizes.
fn check_names(archive: &Archive, prefix: &str) -> Result<Names, ZipError> {
    let mut collisions = Collisions::new(archive.names());
    let mut names = Names {
        go_mod: None,
        files: 0,
        bytes: 0,
    };
    for (i, entry) in archive.entries.iter().enumerate() {
        let full = archive.name(entry);
        let fail = |rule| entry_error(full, rule);
        let Some(rest) = full.strip_prefix(prefix.as_bytes()) else {
            return Err(fail(Rule::Prefix(prefix.to_string())));
        };
        if rest.is_empty() {
            continue;
        }
        let (name, is_dir) = match rest.strip_suffix(b"/") {
            Some(dir) => (dir, true),
            None => (rest, false),
        };
        let name =
            std::str::from_utf8(name).map_err(|_| fail(Rule::FilePath("invalid UTF-8".into())))?;
        if !is_clean(name.as_bytes()) {
            return Err(fail(Rule::NotClean));
        }
        check_file_path(name).map_err(|why| fail(Rule::FilePath(why)))?;
        let offset = archive.name_offset(entry) + prefix.len();
        collisions.check(offset, name.len(), is_dir).map_err(|c| {
            fail(match c {
                Collision::Case(other) => Rule::CaseCollision(quote(&other)),
                Collision::FileAndDirectory(path) => Rule::FileAndDirectory(quote(&path)),
                Collision::Duplicate => Rule::Duplicate,
            })
        })?;
        if is_dir {
            continue;
        }
        let base = name.rsplit('/').next().unwrap_or(name);
        if unicode::equal_fold(base, "go.mod") {
            if base != name {
                return Err(fail(Rule::GoModNotAtRoot));
            }
            if name != "go.mod" {
                return Err(fail(Rule::GoModCase));
            }
        }
        // Go adds the size as an int64: 2^63 and more count as too large.
        let size = entry.uncompressed_size;
        if size > i64::MAX as u64 || MAX_ZIP_FILE - names.bytes < size {
            return Err(ZipError::TotalSize);
        }
        names.bytes += size;
        names.files += 1;
        if name == "go.mod" {
            if size > MAX_GO_MOD {
                return Err(fail(Rule::GoModTooLarge(size)));
            }
            names.go_mod = Some(i);
        }
        if name == "LICENSE" && size > MAX_LICENSE {
            return Err(fail(Rule::LicenseTooLarge(size)));
        }
    }
    Ok(names)
}

/// Whether Go's `path.Clean(name) == name` (bytes: Go's path functions do not decode UTF-8).
fn is_clean(name: &[u8]) -> bool {
    match name {
        b"" => return false, // Clean("") is "."
        b"." | b"/" => return true,
        _ => {}
    }
    let rooted = name.starts_with(b"/");
    let body = if rooted { &name[1..] } else { name };
    if body.ends_with(b"/") {
        return false;
    }
    // Leading ".." elements survive in a relative path, but not after a rooted "/".
    let mut real_elems = false;
    for elem in body.split(|&b| b == b'/') {
        match elem {
            b"" | b"." => return false,
            b".." if rooted || real_elems => return false,
            b".." => {}
            _ => real_elems = true,
        }
    }
    true
}

#[cfg(test)]
mod tests;
