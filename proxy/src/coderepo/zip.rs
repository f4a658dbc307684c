//! `.zip`: the module's files at a version (`codeRepo.Zip`): the module's directory as `git
//! archive` exports it (`protocol::zip::create::git_archive` reads it as the go command
//! does), the repository root's LICENSE added for a module in a subdirectory without one,
//! and golang.org/x/mod/zip's rules on what goes in (`protocol::zip::create`).

use std::io::Write;

use super::{CodeRepo, CodeRepoError};
use crate::codehost::HostError;
use crate::protocol::zip::create::git_archive::{ArchiveError, ArchivedFiles};
use crate::protocol::zip::create::{
    CreateError, CreatedZip, SourceKind, ZipWriter, check_files, root_license,
};
use crate::protocol::zip::{Limits, MAX_LICENSE, MAX_ZIP_FILE};
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
        let archive_err = |e: ArchiveError| self.archive_error(version, e);

        let spooled = self
            .host()
            .read_zip(hash, dir, MAX_ZIP_FILE)
            .map_err(host_err)?;
        let mut archived =
            ArchivedFiles::read(&spooled.file, spooled.size, dir, &Limits::default())
                .map_err(archive_err)?;
        let mut files = archived.files().to_vec();
        // Its go version picks the vendor rules: read from the archive, as x/mod reads it.
        let root_go_mod = archived.root_go_mod().map_err(archive_err)?;

        // The repository's LICENSE, for a module in a subdirectory without one. The go
        // command reads it with `git cat-file blob` (unconverted; a symlink's target text
        // counts).
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
        let checked = check_files(&module, &v, files, root_go_mod.as_deref()).map_err(zip_err)?;
        let license_kept = license.is_some()
            && checked
                .valid
                .last()
                .is_some_and(|f| f.path == b"LICENSE" && !dir.is_empty());
        let mut zip = ZipWriter::new(out, &module, &v, checked).map_err(zip_err)?;
        let mut paths = zip.paths();
        if license_kept {
            paths.pop(); // read from the root below, not from the module's directory
        }
        for path in &paths {
            let data = archived.content(path.as_bytes()).map_err(archive_err)?;
            zip.add(path, &data).map_err(zip_err)?;
        }
        if license_kept && let Some(data) = license {
            zip.add("LICENSE", &data).map_err(zip_err)?;
        }
        zip.finish().map_err(zip_err)
    }

    /// An archive past a bound is the version's (404); one that cannot be read is the
    /// mirror's or git's failure (a 5xx: a retry, or a rebuilt mirror, may do).
    fn archive_error(&self, version: &str, e: ArchiveError) -> CodeRepoError {
        if e.is_too_large() {
            return CodeRepoError::TooLarge {
                module: self.module.clone(),
                version: Some(version.to_string()),
                reason: e.to_string(),
            };
        }
        self.fail(HostError::Corrupt(e.to_string()), Some(version))
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
