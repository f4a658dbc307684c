//! `.zip`: the module's files at a version (`codeRepo.Zip`): the tree of the module's
//! directory, the repository root's LICENSE added for a module in a subdirectory without
//! one, and golang.org/x/mod/zip's rules on what goes in (`protocol::zip::create`).

use std::io::Write;

use super::{CodeRepo, CodeRepoError};
use crate::codehost::{HostError, TreeKind};
use crate::protocol::zip::create::{
    CreateError, CreatedZip, SourceFile, SourceKind, ZipWriter, check_files, root_license,
};
use crate::protocol::zip::{MAX_GO_MOD, MAX_LICENSE, MAX_ZIP_FILE};
use crate::protocol::{ModulePath, Version};

impl CodeRepo {
    /// Writes the zip of `version` (a canonical version) to `out` and returns its `h1:`. A
    /// pseudo-version is checked against its commit first. Nothing is written when the go
    /// command's rules refuse the zip; a failure while writing leaves `out` partial (the
    /// caller writes to a temporary file).
    pub fn zip(&self, version: &str, out: impl Write) -> Result<CreatedZip, CodeRepoError> {
        let found = self.find_canonical(version)?;
        let (hash, dir) = (found.hash.as_str(), found.dir.as_str());
        let host_err = |e: HostError| self.fail(e, Some(version));

        let tree = self.host().tree(hash, dir).map_err(host_err)?;
        let mut files: Vec<SourceFile> = tree
            .into_iter()
            .map(|f| SourceFile {
                path: f.path.into_bytes(),
                kind: match f.kind {
                    TreeKind::File => SourceKind::File,
                    TreeKind::Executable => SourceKind::Executable,
                    TreeKind::Symlink => SourceKind::Symlink,
                    TreeKind::Submodule => SourceKind::Submodule,
                },
                size: f.size,
            })
            .collect();

        // The root go.mod's go version picks the vendor rules (findDir read it).
        let regular_go_mod = files.iter().any(|f| {
            f.path == b"go.mod"
                && matches!(f.kind, SourceKind::File | SourceKind::Executable)
                && f.size <= MAX_GO_MOD
        });
        let root_go_mod = found.go_mod.as_deref().filter(|_| regular_go_mod);

        // The repository's LICENSE, for a module in a subdirectory without one. The go
        // command reads it with `git cat-file blob` (a symlink's target text counts).
        let mut license = None;
        if !dir.is_empty() {
            let (size, data) = match self.host().read_file(hash, "LICENSE", MAX_LICENSE) {
                Ok(Some(data)) => (data.len() as u64, Some(data)),
                Ok(None) => (0, None),
                // Past the limit: listed at a size the checks refuse, as the go command does.
                Err(HostError::TooLarge(_)) => (MAX_LICENSE + 1, Some(Vec::new())),
                Err(e) => return Err(host_err(e)),
            };
            if let Some(data) = data
                && let Some(f) = root_license(dir, &files, Some((SourceKind::File, size)))
            {
                files.push(f);
                license = Some(data);
            }
        }

        let module =
            ModulePath::parse(&self.module).map_err(|e| self.invalid(version, e.message))?;
        let v = Version::parse(&module, version).map_err(|e| self.invalid(version, e.message))?;
        let zip_err = |e: CreateError| self.zip_error(version, e);
        let listing = files.clone();
        let checked = check_files(&module, &v, files, root_go_mod).map_err(zip_err)?;
        let license_kept = license.is_some()
            && checked
                .valid
                .last()
                .is_some_and(|f| f.path == b"LICENSE" && !dir.is_empty());
        if checked.err().is_ok() {
            let archived = checked.valid.len() - usize::from(license_kept);
            let kept: Vec<&SourceFile> = checked.valid[..archived].iter().collect();
            self.check_archive_attributes(version, hash, dir, &listing, &kept)?;
        }
        let mut zip = ZipWriter::new(out, &module, &v, checked).map_err(zip_err)?;
        let mut paths = zip.paths();
        if license_kept {
            paths.pop(); // read from the root below, not from the module's directory
        }
        let mut failure = None;
        self.host()
            .read_blobs(hash, dir, &paths, MAX_ZIP_FILE, &mut |path, data| {
                zip.add(path, data).map_err(|e| {
                    let shown = e.to_string();
                    failure = Some(e);
                    HostError::TooLarge(shown)
                })
            })
            .map_err(|e| match failure.take() {
                Some(e) => zip_err(e),
                None => host_err(e),
            })?;
        if license_kept && let Some(data) = license {
            zip.add("LICENSE", &data).map_err(zip_err)?;
        }
        zip.finish().map_err(zip_err)
    }

    fn zip_error(&self, version: &str, e: CreateError) -> CodeRepoError {
        match e {
            CreateError::Io(e) => CodeRepoError::Unavailable {
                module: self.module.clone(),
                version: Some(version.to_string()),
                repository: self.repo.url().to_string(),
                reason: format!("writing the zip: {e}"),
            },
            CreateError::TooLarge
            | CreateError::ZipTooLarge
            | CreateError::TooManyFiles
            | CreateError::PathsTooLong => CodeRepoError::TooLarge {
                module: self.module.clone(),
                version: Some(version.to_string()),
                reason: format!("create zip: {e}"),
            },
            e => self.invalid(version, format!("create zip: {e}")),
        }
    }
}
