//! Building a module zip from the files of a VCS checkout, as the go command does.
//!
//! The go command's `codeRepo.Zip` (cmd/go/internal/modfetch/coderepo.go) runs `git archive`
//! at the revision, keeps the entries under the module's directory that are not directories
//! (so a submodule, which `git archive` writes as a directory, is no file at all), appends the
//! repository root's `LICENSE` when the module is in a subdirectory and has none, and hands the
//! list to golang.org/x/mod/zip's `Create`. `Create`'s `checkFiles` then decides, file by file
//! and in this order: unclean or absolute paths are invalid; files in vendored packages, in
//! nested modules (a directory with a regular `go.mod`, in any case) and `.hg_archival.txt`
//! are omitted; `module.CheckFilePath` failures and a root `go.mod` spelled otherwise are
//! invalid; paths equal under Unicode case folding (or both a file and a directory) are
//! invalid; symbolic links are omitted; the sizes count towards `MaxZipFile`, and a root
//! `go.mod` or `LICENSE` over 16 MiB is invalid. Any invalid file or the size limit fails the
//! whole zip. The vendor rules depend on the `go` version of the root `go.mod` (1.24 dropped
//! `vendor/modules.txt` and fixed `x/vendor/y.go`), so that file is read first.
//!
//! [`check_files`] makes those decisions from a listing (path, kind, size) without reading any
//! content but the root `go.mod`; [`ZipWriter`] then takes each kept file's bytes in order, one
//! at a time, writes the zip and computes its `h1:`. The `h1:` depends only on names and
//! contents, so it is the go command's whatever the compression. `tests/zip_create_reference.rs`
//! holds all of this to x/mod's `CreateFromVCS` (which is `git archive` + `Create` + the same
//! root-LICENSE rule) on real Git repositories.
//!
//! The listing and the bytes are what `git archive` gives ([`git_archive`] reads it as the go
//! command does): its `.gitattributes` conversions (`eol`/`text`, `ident`,
//! `working-tree-encoding`) are part of the go command's zip, and it fails on trees with paths
//! git refuses (`.git`, `..`), so the go command has no zip there at all. The root `LICENSE`
//! is read with `git cat-file blob`, unconverted, as the go command reads it.
//!
//! Beyond Go, work is bounded: a listing of more than [`MAX_FILES`] entries, a path longer
//! than a zip name can be, or paths totalling more than [`MAX_PATH_BYTES`] are refused; every
//! check costs the length of a path (Go's nested-module and collision checks cost its square).

pub mod git_archive;
mod writer;

use std::collections::{HashMap, HashSet};

pub use self::writer::{CreatedZip, ZipWriter};

use super::collisions::{Collision, Collisions};
use super::{MAX_GO_MOD, MAX_LICENSE, MAX_ZIP_FILE, is_clean};
use crate::protocol::modfile::lax_go_version;
use crate::protocol::module::check_file_path;
use crate::protocol::{ModulePath, Version, gover, quote};

/// Most entries a listing may have (as many as `check_zip` accepts in a zip).
pub const MAX_FILES: usize = 1 << 20;
/// Most bytes all paths of a listing may total (`check_zip`'s central directory bound).
pub const MAX_PATH_BYTES: usize = 64 << 20;
/// Longest zip entry name (a 16-bit field), `module@version/` included.
const MAX_NAME: usize = u16::MAX as usize;
/// Invalid files named in an error message; the rest are counted.
const MAX_LISTED: usize = 10;

/// What a tree entry is (git's modes 100644, 100755, 120000, 160000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    File,
    Executable,
    Symlink,
    /// A gitlink: `git archive` writes it as an empty directory, so it is no file.
    Submodule,
    /// Neither a regular file nor a symbolic link (a device or a pipe in a zip's
    /// attributes): x/mod omits it as not regular.
    Irregular,
}

impl SourceKind {
    fn is_regular(self) -> bool {
        matches!(self, SourceKind::File | SourceKind::Executable)
    }
}

/// One entry of the module's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Relative to the module's root, `/`-separated, as the repository stores it (any bytes:
    /// Git does not require UTF-8, and a file omitted by the rules may have any name).
    pub path: Vec<u8>,
    pub kind: SourceKind,
    /// The content's size in bytes (for a symbolic link, its target's length).
    pub size: u64,
}

impl SourceFile {
    /// The path, for messages.
    pub fn shown(&self) -> String {
        quote(&String::from_utf8_lossy(&self.path))
    }
}

/// Why a file is left out of the zip without failing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Omission {
    #[error("file is in vendor directory")]
    Vendored,
    #[error("file is in another module")]
    OtherModule,
    #[error("file is inserted by 'hg archive' and is always omitted")]
    HgArchival,
    #[error("file is a symbolic link")]
    Symlink,
    #[error("a submodule is not part of the module")]
    Submodule,
    #[error("not a regular file")]
    NotRegular,
}

/// A file that fails the zip: its path and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {rule}")]
pub struct FileError {
    /// The path, quoted.
    pub path: String,
    pub rule: FileRule,
}

/// The rule a file breaks (x/mod/zip's reasons, with the fix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileRule {
    #[error("file path is not clean")]
    NotClean,
    #[error("file path is not relative")]
    NotRelative,
    #[error("malformed file path: {0} (rename the file)")]
    FilePath(String),
    #[error("go.mod files must have lowercase names (rename it go.mod)")]
    GoModCase,
    #[error("equal to {0} under Unicode case folding (rename one of them)")]
    CaseCollision(String),
    #[error("{0} is both a file and a directory")]
    FileAndDirectory(String),
    #[error("the file appears twice in the tree")]
    Duplicate,
    #[error("go.mod file too large ({0} bytes; max size is {MAX_GO_MOD} bytes)")]
    GoModTooLarge(u64),
    #[error("LICENSE file too large ({0} bytes; max size is {MAX_LICENSE} bytes)")]
    LicenseTooLarge(u64),
}

/// Why no zip can be made from a listing.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(
        "module source tree too large (max size is {MAX_ZIP_FILE} bytes, the go command's MaxZipFile)"
    )]
    TooLarge,
    #[error("{}", list_invalid(.0))]
    Invalid(Vec<FileError>),
    #[error("the tree has more than {MAX_FILES} entries, modfleet's limit")]
    TooManyFiles,
    #[error("the tree's paths total more than {MAX_PATH_BYTES} bytes, modfleet's limit")]
    PathsTooLong,
    #[error(
        "file path {path} with its module@version/ prefix is longer than a zip name can be ({MAX_NAME} bytes)"
    )]
    PathTooLong { path: String },
    #[error(
        "the root go.mod ({0} bytes) was not given to check_files: its go version decides the \
         vendor rules, so read it first"
    )]
    GoModNotGiven(u64),
    #[error(
        "{path} was added where {want} was expected: add the files in the order of ZipWriter::paths"
    )]
    OutOfOrder { path: String, want: String },
    #[error("{path} is larger than its declared {size} bytes")]
    LargerThanDeclared { path: String, size: u64 },
    #[error("only {added} of the {want} files were added")]
    Missing { added: usize, want: usize },
    #[error(
        "the zip would be larger than {MAX_ZIP_FILE} bytes, which the go command refuses (MaxZipFile)"
    )]
    ZipTooLarge,
    #[error("writing the zip: {0}")]
    Io(#[from] std::io::Error),
}

fn list_invalid(errors: &[FileError]) -> String {
    let mut out = format!(
        "{} file{} cannot be in a module zip: ",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for (i, e) in errors.iter().take(MAX_LISTED).enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&e.to_string());
    }
    if errors.len() > MAX_LISTED {
        out.push_str(&format!("; and {} more", errors.len() - MAX_LISTED));
    }
    out
}

/// x/mod/zip's `CheckedFiles`: every listed entry is in exactly one of the lists.
#[derive(Debug, Clone, Default)]
pub struct CheckedFiles {
    /// The files of the zip, in the listing's order (the order the go command writes them).
    pub valid: Vec<SourceFile>,
    pub omitted: Vec<(SourceFile, Omission)>,
    pub invalid: Vec<FileError>,
    /// The sizes total more than `MaxZipFile`.
    pub too_large: bool,
}

impl CheckedFiles {
    /// `CheckedFiles.Err`: the size error first, then every invalid file.
    pub fn err(&self) -> Result<(), CreateError> {
        if self.too_large {
            return Err(CreateError::TooLarge);
        }
        if !self.invalid.is_empty() {
            return Err(CreateError::Invalid(self.invalid.clone()));
        }
        Ok(())
    }
}

/// The repository root's `LICENSE` for a module in `subdir` (slashes trimmed) whose `files`
/// have none, as `codeRepo.Zip` adds it (coderepo.go: `if !haveLICENSE && subdir != ""`, then
/// `r.code.ReadFile(ctx, rev, "LICENSE", codehost.MaxLICENSE)`, appended last as a 0644
/// file). `root_license` is the kind and size of the root's `LICENSE` entry, if any. Git's
/// `ReadFile` is `git cat-file blob REV:LICENSE`, so a symbolic link counts (its target text
/// becomes the file) and a submodule does not; the size limit is not applied there but by
/// [`check_files`] afterwards. A `LICENSE` symlink or submodule in the module itself counts
/// as having one: the go command checks the name only (a submodule's entry is a directory).
pub fn root_license(
    subdir: &str,
    files: &[SourceFile],
    root_license: Option<(SourceKind, u64)>,
) -> Option<SourceFile> {
    let has_own = files
        .iter()
        .any(|f| f.path == b"LICENSE" && f.kind != SourceKind::Submodule);
    match root_license {
        Some((kind, size)) if !subdir.is_empty() && !has_own && kind != SourceKind::Submodule => {
            Some(SourceFile {
                path: b"LICENSE".to_vec(),
                kind: SourceKind::File,
                size,
            })
        }
        _ => None,
    }
}

/// x/mod/zip's `isVendoredPackage` under the vendor rules of Go 1.24 and later
/// (`go_1_24`) or before.
fn is_vendored(name: &[u8], go_1_24: bool) -> bool {
    if go_1_24 && name == b"vendor/modules.txt" {
        return true;
    }
    let i = if name.starts_with(b"vendor/") {
        b"vendor/".len()
    } else if let Some(j) = name.windows(8).position(|w| w == b"/vendor/") {
        // Before 1.24, Go skipped len("/vendor/") bytes from the start, not from j (the bug
        // of golang.org/issue/37397, kept for old modules' checksums).
        if go_1_24 { j + 8 } else { 8 }
    } else {
        return false;
    };
    name[i..].contains(&b'/')
}

/// `path.Split`'s directory: everything up to and including the last `/`.
fn dir_of(path: &[u8]) -> &[u8] {
    path.iter()
        .rposition(|&b| b == b'/')
        .map_or(&path[..0], |i| &path[..=i])
}

/// Whether a root go.mod selects x/mod/zip's Go 1.24 vendor rules: its go version (as
/// [`lax_go_version`] finds it) is at least 1.24 (`version.Compare(version.Lang("go"+v),
/// "go1.24") >= 0`).
pub fn go_1_24_rules(go_mod: &[u8]) -> bool {
    lax_go_version(go_mod).is_some_and(|v| gover::compare(&gover::lang(&v), "1.24").is_ge())
}

/// x/mod/zip's `checkFiles` over a listing. `root_go_mod` is the content of the listing's
/// regular root `go.mod` (`None` when there is none); its go version picks the vendor rules.
/// `Err` only for modfleet's bounds and a `go.mod` not given; the go command's verdict is
/// [`CheckedFiles::err`].
pub fn check_files(
    module: &ModulePath,
    version: &Version,
    files: Vec<SourceFile>,
    root_go_mod: Option<&[u8]>,
) -> Result<CheckedFiles, CreateError> {
    let prefix_len = module.as_str().len() + 1 + version.as_str().len() + 1;
    if files.len() > MAX_FILES {
        return Err(CreateError::TooManyFiles);
    }
    let mut total = 0usize;
    for f in &files {
        total += f.path.len();
        if total > MAX_PATH_BYTES {
            return Err(CreateError::PathsTooLong);
        }
        if prefix_len + f.path.len() > MAX_NAME {
            return Err(CreateError::PathTooLong { path: f.shown() });
        }
    }
    // A submodule is a directory entry in `git archive`: the go command never sees it.
    let mut checked = CheckedFiles::default();
    let files: Vec<SourceFile> = files
        .into_iter()
        .filter_map(|f| match f.kind {
            SourceKind::Submodule => {
                checked.omitted.push((f, Omission::Submodule));
                None
            }
            _ => Some(f),
        })
        .collect();

    // Directories holding a regular go.mod (in any case) other than the root: nested modules.
    let mut module_dirs = ModuleDirs::default();
    let mut go_1_24 = false;
    for f in &files {
        let dir = dir_of(&f.path);
        let base = &f.path[dir.len()..];
        if !base.eq_ignore_ascii_case(b"go.mod") || !f.kind.is_regular() {
            continue;
        }
        if !dir.is_empty() {
            module_dirs.insert(dir);
        } else if base == b"go.mod" {
            go_1_24 = match root_go_mod {
                Some(data) => go_1_24_rules(data),
                // Too large to be in a zip anyway: the size check fails it below.
                None if f.size > MAX_GO_MOD => false,
                None => return Err(CreateError::GoModNotGiven(f.size)),
            };
        }
    }

    let names: Vec<u8> = files.iter().flat_map(|f| f.path.iter().copied()).collect();
    let mut collisions = Collisions::new(&names);
    let mut verdicts = Verdicts::default();
    let mut room = MAX_ZIP_FILE;
    let mut offset = 0;
    for (i, f) in files.iter().enumerate() {
        let at = offset;
        offset += f.path.len();
        let p = f.path.as_slice();
        if !is_clean(p) {
            verdicts.invalid(f, FileRule::NotClean);
            continue;
        }
        if p.starts_with(b"/") {
            verdicts.invalid(f, FileRule::NotRelative);
            continue;
        }
        if is_vendored(p, go_1_24) {
            verdicts.omit(i, p, Omission::Vendored);
            continue;
        }
        if module_dirs.holds(p) {
            verdicts.omit(i, p, Omission::OtherModule);
            continue;
        }
        if p == b".hg_archival.txt" {
            verdicts.omit(i, p, Omission::HgArchival);
            continue;
        }
        let path = match std::str::from_utf8(p) {
            Ok(path) => path,
            Err(_) => {
                verdicts.invalid(f, FileRule::FilePath("invalid UTF-8".into()));
                continue;
            }
        };
        if let Err(why) = check_file_path(path) {
            verdicts.invalid(f, FileRule::FilePath(why));
            continue;
        }
        if path != "go.mod" && path.eq_ignore_ascii_case("go.mod") {
            verdicts.invalid(f, FileRule::GoModCase);
            continue;
        }
        if let Err(c) = collisions.check(at, p.len(), false) {
            let rule = match c {
                Collision::Case(other) => FileRule::CaseCollision(quote(&other)),
                Collision::FileAndDirectory(other) => FileRule::FileAndDirectory(quote(&other)),
                Collision::Duplicate => FileRule::Duplicate,
            };
            verdicts.invalid(f, rule);
            continue;
        }
        if f.kind == SourceKind::Symlink {
            verdicts.omit(i, p, Omission::Symlink);
            continue;
        }
        if f.kind == SourceKind::Irregular {
            verdicts.omit(i, p, Omission::NotRegular);
            continue;
        }
        match room.checked_sub(f.size) {
            Some(left) => room = left,
            None => checked.too_large = true,
        }
        if path == "go.mod" && f.size > MAX_GO_MOD {
            verdicts.invalid(f, FileRule::GoModTooLarge(f.size));
            continue;
        }
        if path == "LICENSE" && f.size > MAX_LICENSE {
            verdicts.invalid(f, FileRule::LicenseTooLarge(f.size));
            continue;
        }
        verdicts.valid.push(i);
    }
    let Verdicts {
        valid,
        omitted,
        invalid,
        ..
    } = verdicts;
    let mut files: Vec<Option<SourceFile>> = files.into_iter().map(Some).collect();
    let mut take = |i: usize| files[i].take().expect("each file has one verdict");
    checked.valid = valid.into_iter().map(&mut take).collect();
    for (i, why) in omitted {
        checked.omitted.push((take(i), why));
    }
    checked.invalid = invalid;
    Ok(checked)
}

/// x/mod/zip's `Create` over a listing, `read` returning each file's content when it is
/// needed (the root `go.mod` first, then every file of the zip in order).
pub fn create<W: std::io::Write>(
    out: W,
    module: &ModulePath,
    version: &Version,
    files: Vec<SourceFile>,
    read: &mut dyn FnMut(&SourceFile) -> std::io::Result<Vec<u8>>,
) -> Result<CreatedZip, CreateError> {
    let go_mod = files
        .iter()
        .rfind(|f| f.path == b"go.mod" && f.kind.is_regular() && f.size <= MAX_GO_MOD)
        .map(&mut *read)
        .transpose()?;
    let checked = check_files(module, version, files, go_mod.as_deref())?;
    let valid = checked.valid.clone();
    let mut zip = ZipWriter::new(out, module, version, checked)?;
    for (file, path) in valid.iter().zip(zip.paths()) {
        zip.add(&path, &read(file)?)?;
    }
    zip.finish()
}

/// The directories holding a nested module, as a tree of path elements: x/mod's
/// `inSubmodule` looks up every ancestor directory of a path in a map, which costs the square
/// of the path's length; walking the tree costs its length.
#[derive(Default)]
struct ModuleDirs<'a> {
    /// (parent node, element) → node; node 0 is the root.
    children: HashMap<(usize, &'a [u8]), usize>,
    /// Whether each node (index - 1) holds a go.mod.
    module: Vec<bool>,
}

impl<'a> ModuleDirs<'a> {
    /// Records `dir` (ending in `/`) as holding a go.mod.
    fn insert(&mut self, dir: &'a [u8]) {
        let mut node = 0;
        for elem in dir[..dir.len() - 1].split(|&b| b == b'/') {
            let next = self.module.len() + 1;
            node = *self.children.entry((node, elem)).or_insert(next);
            if node == next {
                self.module.push(false);
            }
        }
        self.module[node - 1] = true;
    }

    /// Whether a directory above `path` holds a go.mod (x/mod's `inSubmodule`).
    fn holds(&self, path: &[u8]) -> bool {
        let dir = dir_of(path);
        if dir.is_empty() || self.module.is_empty() {
            return false;
        }
        let mut node = 0;
        for elem in dir[..dir.len() - 1].split(|&b| b == b'/') {
            match self.children.get(&(node, elem)) {
                Some(&next) if self.module[next - 1] => return true,
                Some(&next) => node = next,
                None => return false,
            }
        }
        false
    }
}

/// `checkFiles`' lists while they are made, by index into the listing.
#[derive(Default)]
struct Verdicts<'a> {
    /// Paths with an error (invalid or omitted): x/mod records one per path, the first.
    recorded: HashSet<&'a [u8]>,
    valid: Vec<usize>,
    omitted: Vec<(usize, Omission)>,
    invalid: Vec<FileError>,
}

impl<'a> Verdicts<'a> {
    fn invalid(&mut self, f: &'a SourceFile, rule: FileRule) {
        if self.recorded.insert(&f.path) {
            self.invalid.push(FileError {
                path: f.shown(),
                rule,
            });
        }
    }

    fn omit(&mut self, i: usize, path: &'a [u8], why: Omission) {
        if self.recorded.insert(path) {
            self.omitted.push((i, why));
        }
    }
}

#[cfg(test)]
mod tests;
