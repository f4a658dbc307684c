//! The go command's mapping from a module to its Git repository
//! (`cmd/go/internal/modfetch/coderepo.go`), over a [`CodeHost`]: which tags are versions of
//! the module (`@v/list`), what a tag, branch, hash or pseudo-version resolves to (`.info`,
//! with its `Origin`), the go.mod at a version (`.mod`), `@latest`, and the module zip.
//!
//! A [`CodeRepo`] is one module: its path, the repository, the module's directory in it and
//! its major-version suffix, computed as `newCodeRepo` computes them. The semantics are the
//! go command's, rule for rule (the function names follow coderepo.go's, so a Go reader finds
//! them); `tests/coderepo_reference.rs` holds every answer to the go command's own, going
//! direct to the same Git server.
//!
//! The protocol's answers: `@v/list` is [`CodeRepo::versions`]`("")` one per line; `.info`
//! of a version or query is [`CodeRepo::stat`] written by [`RevInfo::info_json`] (what the go
//! command writes into its own cache); `@latest` is [`CodeRepo::latest`] (the go command's
//! `latest` query; `stat("latest")` is the default branch's head, go's `Repo.Latest`); `.mod`
//! is [`CodeRepo::go_mod`]; `.zip` is [`CodeRepo::zip`]. Errors carry their status
//! ([`CodeRepoError::status`]).
//!
//! Everything here is synchronous and may wait for a fetch: async callers use
//! `spawn_blocking`.

mod error;
mod find_dir;
mod info;
mod latest;
mod repository;
mod stat;
mod versions;
mod zip;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use error::CodeRepoError;
pub use info::{Origin, RevInfo, rfc3339, tag_sum};
pub use repository::{DEFAULT_MIN_REFRESH_INTERVAL, Repository};

use crate::codehost::{self, CodeHost, HostError};
use crate::protocol::module::split_path_version;
use crate::protocol::zip::MAX_GO_MOD;
use crate::protocol::{ModulePath, pseudo, semver};

/// One module in one repository.
pub struct CodeRepo {
    /// The module path (`modPath`).
    module: String,
    repo: Arc<Repository>,
    /// The import path of the repository's root (`codeRoot`).
    code_root: String,
    /// The module's directory in the repository, `""` at the root (`codeDir`).
    code_dir: String,
    /// The path's major-version suffix: `""`, `/v2`, `.v1` (`pathMajor`).
    path_major: String,
    /// The path without it (`pathPrefix`; the whole path when the root is the module).
    path_prefix: String,
    /// The major version pseudo-versions must have, `""` for v0/v1 (`pseudoMajor`).
    pseudo_major: String,
}

impl CodeRepo {
    /// `newCodeRepo`: the module `module` in the repository whose root has the import path
    /// `code_root`, in `subdir` below the directory the path implies (`""` for none; a
    /// go-import meta tag's fourth field).
    pub fn new(
        repo: Arc<Repository>,
        code_root: &str,
        subdir: &str,
        module: &str,
    ) -> Result<CodeRepo, CodeRepoError> {
        let refuse = |reason: String| CodeRepoError::NotFound {
            module: module.to_string(),
            version: None,
            reason,
        };
        ModulePath::parse(module).map_err(|e| refuse(e.message))?;
        if !has_path_prefix(module, code_root) {
            return Err(refuse(format!(
                "mismatched repo: found {code_root} for {module}"
            )));
        }
        let Some((mut path_prefix, path_major)) = split_path_version(module) else {
            return Err(refuse(format!("invalid module path {module:?}")));
        };
        if code_root == module {
            path_prefix = module;
        }
        let pseudo_major = pseudo::path_major_prefix(path_major)
            .ok_or_else(|| refuse(format!("invalid major version suffix {path_major:?}")))?;
        let mut code_dir = String::new();
        if code_root != module {
            if !has_path_prefix(path_prefix, code_root) {
                return Err(refuse(format!(
                    "repository rooted at {code_root} cannot contain module {module}"
                )));
            }
            code_dir = path_prefix[code_root.len()..].trim_matches('/').to_string();
        }
        if !subdir.is_empty() {
            codehost::check_path(subdir, false).map_err(|_| {
                refuse(format!(
                    "invalid subdirectory {:?}: want a relative path without . or .. elements",
                    codehost::sanitize(subdir, 200)
                ))
            })?;
            code_dir = join(&code_dir, subdir);
        }
        Ok(CodeRepo {
            module: module.to_string(),
            repo,
            code_root: code_root.to_string(),
            code_dir,
            path_major: path_major.to_string(),
            path_prefix: path_prefix.to_string(),
            pseudo_major: pseudo_major.to_string(),
        })
    }

    /// The module path.
    pub fn module_path(&self) -> &str {
        &self.module
    }

    /// The module's directory in the repository (`""` at the root).
    pub fn code_dir(&self) -> &str {
        &self.code_dir
    }

    /// The path's major-version suffix (`""`, `/v2`, `.v1`).
    pub fn path_major(&self) -> &str {
        &self.path_major
    }

    pub fn repository(&self) -> &Arc<Repository> {
        &self.repo
    }

    fn host(&self) -> &dyn CodeHost {
        self.repo.host()
    }

    /// A code host failure, for this module at `version`.
    fn fail(&self, e: HostError, version: Option<&str>) -> CodeRepoError {
        CodeRepoError::from_host(e, &self.module, version, self.repo.url())
    }

    /// A refusal of `version` by one of the go command's rules (404).
    fn invalid(&self, version: &str, reason: impl Into<String>) -> CodeRepoError {
        CodeRepoError::InvalidVersion {
            module: self.module.clone(),
            version: version.to_string(),
            reason: reason.into(),
            pseudo: false,
            malformed: false,
        }
    }

    /// Tags of this module start with this (`sub/` for a module in `sub`).
    fn tag_prefix(&self) -> String {
        if self.code_dir.is_empty() {
            String::new()
        } else {
            format!("{}/", self.code_dir)
        }
    }

    /// `revToRev`: the repository revision a version or query names: a pseudo-version's
    /// commit, a version's tag (with the directory prefix, without `+incompatible`), or the
    /// query itself.
    fn rev_to_rev(&self, rev: &str) -> String {
        if !semver::is_valid(rev) {
            return rev.to_string();
        }
        if pseudo::is_pseudo_version(rev) {
            return pseudo::pseudo_version_rev(rev).unwrap_or(rev).to_string();
        }
        let rev = match semver::build(rev) {
            "+incompatible" => &rev[..rev.len() - "+incompatible".len()],
            _ => rev,
        };
        format!("{}{rev}", self.tag_prefix())
    }

    /// The code host's `stat`, fresh enough: a branch or `HEAD` after a refresh; a tag or
    /// hash from the mirror, refreshed and asked again when it is not there.
    fn host_stat(&self, query: &str, rev: &str) -> Result<codehost::RevInfo, HostError> {
        let immutable = semver::is_valid(query) || is_hash_prefix(query);
        if !immutable {
            self.repo.refresh()?;
        }
        match self.host().stat(rev) {
            Err(HostError::NotFound(_)) if immutable => {
                self.repo.refresh()?;
                self.host().stat(rev)
            }
            answer => answer,
        }
    }

    /// The go.mod-sized file at `path` of commit `hash`, `None` when absent.
    fn read_go_mod(&self, hash: &str, path: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.host().read_file(hash, path, MAX_GO_MOD)
    }
}

/// A hash or hash prefix as the go command takes one (7 to 64 hex digits).
fn is_hash_prefix(rev: &str) -> bool {
    (7..=64).contains(&rev.len()) && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `path.Join` of two clean relative paths.
fn join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => dir.to_string(),
        _ => format!("{dir}/{name}"),
    }
}

/// `hasPathPrefix`: whether the path `s` begins with the elements of `prefix`.
fn has_path_prefix(s: &str, prefix: &str) -> bool {
    if s.len() == prefix.len() {
        return s == prefix;
    }
    if s.len() < prefix.len() {
        return false;
    }
    if prefix.ends_with('/') {
        return s.starts_with(prefix);
    }
    s.as_bytes()[prefix.len()] == b'/' && s.starts_with(prefix)
}
