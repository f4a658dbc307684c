//! Where the module is in the repository at a version (`codeRepo.findDir`: its directory, or
//! `vN/` below it for a major-version subdirectory, decided by which go.mod names the module's
//! major version), and `.mod` (`codeRepo.GoMod`).

use super::{CodeRepo, CodeRepoError, join};
use crate::protocol::modfile::{legacy_go_mod, module_path_lax};
use crate::protocol::module::split_path_version;
use crate::protocol::{canonical_version, is_pseudo_version, pseudo, semver};

/// Where the module is at a commit.
pub(super) struct Found {
    /// The full commit hash.
    pub hash: String,
    /// The module's directory in the repository.
    pub dir: String,
    /// Its go.mod, when it has one.
    pub go_mod: Option<Vec<u8>>,
}

/// Why the module is not at a version: the rule, in the go command's words.
pub(super) enum NotHere {
    /// One of findDir's rules (the version exists but is not this module's).
    Rule(String),
    /// The code host failed, or the revision does not exist.
    Host(CodeRepoError),
}

impl CodeRepo {
    /// `findDir` at `version`: resolves its revision, then [`find_dir_at`](Self::find_dir_at).
    pub(super) fn find_dir(&self, version: &str) -> Result<Found, NotHere> {
        if !semver::is_valid(version) {
            return Err(NotHere::Host(CodeRepoError::InvalidVersion {
                module: self.module.clone(),
                version: version.to_string(),
                reason: "syntax error".into(),
                pseudo: false,
                malformed: true,
            }));
        }
        let rev = self.rev_to_rev(version);
        let info = self.host_stat(version, &rev).map_err(|e| {
            NotHere::Host(match e {
                crate::codehost::HostError::NotFound(reason) => CodeRepoError::InvalidVersion {
                    module: self.module.clone(),
                    version: version.to_string(),
                    reason,
                    pseudo: false,
                    malformed: false,
                },
                e => self.fail(e, Some(version)),
            })
        })?;
        self.find_dir_at(&info.hash, &rev, version)
    }

    /// `findDir` at the commit `hash`, which `rev` (a tag or short hash, for messages) names:
    /// the module is in `codeDir` if its go.mod there claims the path's major version (or
    /// there is no go.mod and the module is a v0/v1 or gopkg.in one at the root), or in
    /// `codeDir/vN` if the go.mod there claims `/vN`; not both.
    pub(super) fn find_dir_at(
        &self,
        hash: &str,
        rev: &str,
        version: &str,
    ) -> Result<Found, NotHere> {
        let read = |file: &str| {
            self.read_go_mod(hash, file)
                .map_err(|e| NotHere::Host(self.fail(e.clone(), Some(version))))
        };
        let file1 = join(&self.code_dir, "go.mod");
        let gomod1 = read(&file1)?;
        let mpath1 = gomod1.as_deref().map(module_path_lax).unwrap_or_default();
        let found1 = gomod1.is_some()
            && (is_major(&mpath1, &self.path_major)
                || self.can_replace_mismatched_version_due_to_bug(&mpath1));

        let mut file2 = String::new();
        if !self.path_major.is_empty()
            && self.code_root != self.module
            && !self.path_major.starts_with('.')
        {
            // With /v2: either go.mod claims v2 and v2/go.mod does not exist, or v2/go.mod
            // exists and claims v2. Only the suffix is checked: a fork may be found at
            // another path, usable in a replace directive.
            let dir2 = join(&self.code_dir, &self.path_major[1..]);
            file2 = join(&dir2, "go.mod");
            let gomod2 = read(&file2)?;
            let mpath2 = gomod2.as_deref().map(module_path_lax).unwrap_or_default();
            let found2 = gomod2.is_some() && is_major(&mpath2, &self.path_major);
            if found1 && found2 {
                return Err(NotHere::Rule(format!(
                    "{}/{file1} and ...{}/go.mod both have ...{} module paths at revision {rev}",
                    self.path_prefix, self.path_major, self.path_major
                )));
            }
            if found2 {
                return Ok(Found {
                    hash: hash.to_string(),
                    dir: dir2,
                    go_mod: gomod2,
                });
            }
            if gomod2.is_some() {
                return Err(NotHere::Rule(if mpath2.is_empty() {
                    format!(
                        "{}/{file2} is missing module path at revision {rev}",
                        self.code_root
                    )
                } else {
                    format!(
                        "{}/{file2} has non-...{} module path {mpath2:?} at revision {rev}",
                        self.code_root, self.path_major
                    )
                }));
            }
        }

        if found1 {
            return Ok(Found {
                hash: hash.to_string(),
                dir: self.code_dir.clone(),
                go_mod: gomod1,
            });
        }
        if gomod1.is_some() {
            // A go.mod claiming another major version.
            let suffix = if file2.is_empty() {
                String::new()
            } else {
                format!(" (and ...{}/go.mod does not exist)", self.path_major)
            };
            return Err(NotHere::Rule(if mpath1.is_empty() {
                format!("{file1} is missing module path{suffix} at revision {rev}")
            } else if !self.path_major.is_empty() {
                format!(
                    "{file1} has non-...{} module path {mpath1:?}{suffix} at revision {rev}",
                    self.path_major
                )
            } else if split_path_version(&mpath1).is_none() {
                format!("{file1} has malformed module path {mpath1:?}{suffix} at revision {rev}")
            } else {
                format!(
                    "{file1} has post-{} module path {mpath1:?}{suffix} at revision {rev}",
                    semver::major(version).unwrap_or("")
                )
            }));
        }
        if self.code_dir.is_empty()
            && (self.path_major.is_empty() || self.path_major.starts_with('.'))
        {
            // No go.mod at the root: fine for v0/v1 and gopkg.in.
            return Ok(Found {
                hash: hash.to_string(),
                dir: String::new(),
                go_mod: None,
            });
        }
        Err(NotHere::Rule(if file2.is_empty() {
            format!("missing {}/go.mod at revision {rev}", self.path_prefix)
        } else {
            format!(
                "missing {}/go.mod and ...{}/go.mod at revision {rev}",
                self.path_prefix, self.path_major
            )
        }))
    }

    /// `canReplaceMismatchedVersionDueToBug` (golang.org/issue/34254): an unversioned path
    /// accepts a go.mod naming a gopkg.in path.
    fn can_replace_mismatched_version_due_to_bug(&self, mpath: &str) -> bool {
        self.path_major.is_empty() && mpath.starts_with("gopkg.in/")
    }

    /// Where the module is at `version`, which must be canonical (what `.mod` and `.zip`
    /// requests name); a pseudo-version is checked against its commit first, as `.info` would
    /// check it.
    pub(super) fn find_canonical(&self, version: &str) -> Result<Found, CodeRepoError> {
        if canonical_version(version).as_deref() != Some(version) {
            return Err(CodeRepoError::InvalidVersion {
                module: self.module.clone(),
                version: version.to_string(),
                reason: format!("version {version} is not canonical"),
                pseudo: false,
                malformed: true,
            });
        }
        if is_pseudo_version(version) {
            self.stat(version)?;
        }
        let found = self
            .find_dir(version)
            .map_err(|e| self.not_here(version, e))?;
        Ok(found)
    }

    /// `GoMod`: the go.mod at `version` (a canonical version), or `module PATH\n` when the
    /// module has none there (`LegacyGoMod`). A pseudo-version is checked against its commit
    /// first, as `.info` would check it.
    pub fn go_mod(&self, version: &str) -> Result<Vec<u8>, CodeRepoError> {
        let found = self.find_canonical(version)?;
        if let Some(go_mod) = found.go_mod {
            return Ok(go_mod);
        }
        match self.read_go_mod(&found.hash, &join(&found.dir, "go.mod")) {
            Ok(Some(data)) => Ok(data),
            Ok(None) => Ok(legacy_go_mod(&self.module)),
            Err(e) => Err(self.fail(e, Some(version))),
        }
    }

    /// A [`NotHere`] as the error for `version`.
    pub(super) fn not_here(&self, version: &str, e: NotHere) -> CodeRepoError {
        match e {
            NotHere::Rule(reason) => self.invalid(version, reason),
            NotHere::Host(e) => e,
        }
    }
}

/// `isMajor`: whether the versions allowed for the go.mod's path `mpath` are compatible with
/// those `path_major` implies (only the major-version rules are compared, not the paths).
fn is_major(mpath: &str, path_major: &str) -> bool {
    if mpath.is_empty() {
        return false;
    }
    let Some((_, mpath_major)) = split_path_version(mpath) else {
        return false;
    };
    if path_major.is_empty() {
        return matches!(
            pseudo::path_major_prefix(mpath_major),
            Some("" | "v0" | "v1")
        );
    }
    if mpath_major.is_empty() {
        return false;
    }
    path_major[1..] == mpath_major[1..]
}

#[cfg(test)]
mod tests {
    use super::is_major;

    #[test]
    fn is_major_as_the_go_command() {
        for (mpath, path_major, want) in [
            ("", "", false),
            ("x.com/m", "", true),
            ("x.com/m/v2", "", false),
            ("gopkg.in/m.v1", "", true),
            ("gopkg.in/m.v0", "", true),
            ("gopkg.in/m.v2", "", false),
            ("x.com/m/v2", "/v2", true),
            ("other.com/q/v2", "/v2", true),
            ("x.com/m", "/v2", false),
            ("x.com/m/v3", "/v2", false),
            ("gopkg.in/m.v2-unstable", "/v2", false),
            ("gopkg.in/m.v2", "/v2", true),
            ("x.com/m/v1", "", false),
        ] {
            assert_eq!(is_major(mpath, path_major), want, "{mpath} {path_major}");
        }
    }
}
