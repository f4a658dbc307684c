//! The files of a module as `git archive` gives them, read as the go command reads them.
//!
//! The go command's `codeRepo.Zip` (cmd/go/internal/modfetch/coderepo.go) takes a module's
//! files from `git archive --format=zip --prefix=prefix/ REV SUBDIR` (codehost's `ReadZip`),
//! so they are what Git exports: the tree's `.gitattributes` `eol`/`text`, `ident` and
//! `working-tree-encoding` conversions applied (`export-ignore` and `export-subst` are off:
//! the go command disables them in the repository's `info/attributes`). It spools the archive
//! to a file, refuses one over `MaxZipFile`, opens it with `archive/zip`, and keeps, in
//! order: every entry under the first entry's top-level directory (another top-level
//! directory fails it), then under `SUBDIR/`, that is not a directory (a name ending in `/`,
//! as a submodule is written). Each file's kind and size are the entry's (`FileInfo`), its
//! content what the entry inflates to, checked against its CRC-32 and size.
//!
//! [`ArchivedFiles`] does the same with `protocol::zip`'s reader of Go's choices, within its
//! [`Limits`]: the archive is hostile (its names and contents come from the repository), so
//! sizes in headers are believed only as far as the data bears them out, nothing is
//! allocated from a size field, and the files are read one at a time. The listing then goes
//! through [`check_files`](super::check_files), which refuses unclean paths (`../x`) as x/mod
//! does: no path from the archive is ever used on a file system.

use std::fmt;

use super::{SourceFile, SourceKind};
use crate::protocol::zip::archive::{self, Archive, Budget, EntryType, ReadAt, ReadError, Window};
use crate::protocol::zip::{DataError, Limits, MAX_GO_MOD, MAX_ZIP_FILE, ZipError};

/// Why the files of an archive cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// coderepo.go's "downloaded zip file too large".
    #[error(
        "git archive wrote {0} bytes, more than the go command's limit of {MAX_ZIP_FILE} \
         (MaxZipFile)"
    )]
    TooLarge(u64),
    /// The archive is not one Go's `archive/zip` reads, or is past modfleet's bounds.
    #[error("the archive git wrote: {0}")]
    Zip(ZipError),
    /// coderepo.go's "missing top-level directory prefix".
    #[error("the archive's first entry {0} has no top-level directory")]
    NoTopDirectory(Name),
    /// coderepo.go's "zip file contains more than one top-level directory".
    #[error("the archive has more than one top-level directory ({0})")]
    TwoTopDirectories(Name),
    /// An entry's data does not match its directory record.
    #[error("the archive's entry {name}: {error}")]
    Data { name: Name, error: DataError },
    /// [`ArchivedFiles::content`] was asked for a path it does not list.
    #[error("{0} is not a file of the archive")]
    NotListed(Name),
}

impl ArchiveError {
    /// Past a size or count bound (of the go command or modfleet): a property of the
    /// version, which no retry changes.
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            ArchiveError::TooLarge(_)
                | ArchiveError::Zip(
                    ZipError::TooLarge(_)
                        | ZipError::TooManyEntries(_)
                        | ZipError::DirectoryTooLarge(_)
                        | ZipError::ReadBudget(_)
                )
        )
    }
}

/// An entry name from the archive, shown quoted and cut short in messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Name(pub Vec<u8>);

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(&self.0);
        let cut: String = text.chars().take(200).collect();
        write!(f, "{cut:?}")?;
        if cut.len() < text.len() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The files `git archive` gave for a module's directory, as `codeRepo.Zip` lists them for
/// x/mod/zip's `Create`.
pub struct ArchivedFiles<'a, R: ?Sized> {
    src: Window<'a, R>,
    size: u64,
    archive: Archive,
    /// Paths relative to the module's directory, kinds and sizes from the entries.
    files: Vec<SourceFile>,
    /// The entry of each file.
    entries: Vec<usize>,
    /// What may still be read of the archive.
    budget: Budget,
    /// Where [`content`](Self::content) looks first: files are asked for in listing order.
    cursor: usize,
}

impl<'a, R: ReadAt + ?Sized> ArchivedFiles<'a, R> {
    /// Reads the directory of the archive in `src` (`size` bytes, written with
    /// `--prefix=prefix/` or any other single top-level directory) and lists the files
    /// under `subdir` (`""`: all).
    pub fn read(
        src: &'a R,
        size: u64,
        subdir: &str,
        limits: &Limits,
    ) -> Result<Self, ArchiveError> {
        if size > MAX_ZIP_FILE {
            return Err(ArchiveError::TooLarge(size));
        }
        let archive = archive::read_archive(src, size, limits).map_err(ArchiveError::Zip)?;
        let subdir = subdir.trim_matches('/');
        let subdir = if subdir.is_empty() {
            String::new()
        } else {
            format!("{subdir}/")
        };
        let mut files = Vec::new();
        let mut entries = Vec::new();
        let mut top: Option<&[u8]> = None;
        for (i, entry) in archive.entries.iter().enumerate() {
            let name = archive.name(entry);
            let top = *top.get_or_insert(match name.iter().position(|&b| b == b'/') {
                Some(slash) => &name[..=slash],
                None => return Err(ArchiveError::NoTopDirectory(Name(name.to_vec()))),
            });
            let Some(rest) = name.strip_prefix(top) else {
                return Err(ArchiveError::TwoTopDirectories(Name(name.to_vec())));
            };
            let Some(path) = rest.strip_prefix(subdir.as_bytes()) else {
                continue;
            };
            if path.is_empty() || path.ends_with(b"/") {
                continue;
            }
            let kind = match archive.entry_type(entry) {
                EntryType::Regular { executable: false } => SourceKind::File,
                EntryType::Regular { executable: true } => SourceKind::Executable,
                EntryType::Symlink => SourceKind::Symlink,
                // Git writes neither (x/mod omits both as not regular; a directory by its
                // attributes alone would also count as a directory in its collision check).
                EntryType::Directory | EntryType::Other => SourceKind::Irregular,
            };
            files.push(SourceFile {
                path: path.to_vec(),
                kind,
                size: entry.uncompressed_size,
            });
            entries.push(i);
        }
        Ok(ArchivedFiles {
            src: Window::new(src),
            size,
            archive,
            files,
            entries,
            budget: Budget::new(limits.read_bytes),
            cursor: 0,
        })
    }

    /// The listing, in the archive's order (the order the go command writes the zip in).
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// The root `go.mod` as x/mod/zip's `checkFiles` reads it for its go version: the last
    /// regular `go.mod` of the listing, unless it is too large to be in a zip at all.
    pub fn root_go_mod(&mut self) -> Result<Option<Vec<u8>>, ArchiveError> {
        let found = self.files.iter().rposition(|f| {
            f.path == b"go.mod"
                && matches!(f.kind, SourceKind::File | SourceKind::Executable)
                && f.size <= MAX_GO_MOD
        });
        found.map(|i| self.read_file(i)).transpose()
    }

    /// The content of the listed file at `path`. Asked in listing order (as
    /// [`ZipWriter::paths`](super::ZipWriter::paths) gives them), each costs its own size to
    /// find. A path listed twice fails [`check_files`](super::check_files), so the first is
    /// as good as any.
    pub fn content(&mut self, path: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        let n = self.files.len();
        let found = (self.cursor..n)
            .chain(0..self.cursor)
            .find(|&i| self.files[i].path == path)
            .ok_or_else(|| ArchiveError::NotListed(Name(path.to_vec())))?;
        self.cursor = found + 1;
        self.read_file(found)
    }

    /// Reads file `i` in full: exactly its declared size, with its CRC-32.
    fn read_file(&mut self, i: usize) -> Result<Vec<u8>, ArchiveError> {
        let entry = &self.archive.entries[self.entries[i]];
        let mut data = Vec::new();
        archive::read_entry(
            &self.src,
            self.size,
            &self.archive,
            entry,
            &mut self.budget,
            |chunk| data.extend_from_slice(chunk),
        )
        .map_err(|e| match e {
            ReadError::Zip(e) => ArchiveError::Zip(e),
            ReadError::Data(error) => ArchiveError::Data {
                name: Name(self.archive.name(entry).to_vec()),
                error,
            },
        })?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests;
