//! `@v/list`: which tags are versions of the module (`codeRepo.Versions` and
//! `appendIncompatibleVersions`), and the retractions the module's newest release declares
//! (`retractedVersions`).

use std::cmp::Ordering;

use super::{CodeRepo, CodeRepoError};
use crate::codehost::Tag;
use crate::protocol::modfile::{Retraction, lax_retractions};
use crate::protocol::module::match_path_major;
use crate::protocol::{is_pseudo_version, semver};

impl CodeRepo {
    /// The module's versions with `prefix` (`""` for all; `v1.2` for `v1.2.x`), in semver
    /// order: canonical tags (after the module's directory prefix) that are not
    /// pseudo-versions and match the path's major version, and for a module at the root
    /// without a major suffix, `vN.x.y+incompatible` for v2+ tags, unless the newest
    /// compatible version has a go.mod, or the newest tag of that major version does.
    /// Refreshes the mirror first (at most once per interval): lists follow new tags.
    pub fn versions(&self, prefix: &str) -> Result<Vec<String>, CodeRepoError> {
        self.repo.refresh().map_err(|e| self.fail(e, None))?;
        self.versions_in_mirror(prefix)
    }

    /// [`versions`](CodeRepo::versions) from the mirror as it is.
    pub(super) fn versions_in_mirror(&self, prefix: &str) -> Result<Vec<String>, CodeRepoError> {
        // gopkg.in/macaroon-bakery.v2-unstable does not use the v2 tags (those are for
        // macaroon-bakery.v2): such a module has no tags at all.
        if self.module.starts_with("gopkg.in/") && self.module.ends_with("-unstable") {
            return Ok(Vec::new());
        }
        let tag_prefix = self.tag_prefix();
        let p = format!("{tag_prefix}{prefix}");
        let tags = self.host().tags(&p).map_err(|e| self.fail(e, None))?;
        let mut list = Vec::new();
        let mut incompatible: Vec<&Tag> = Vec::new();
        for tag in &tags {
            if !tag.name.starts_with(&p) {
                continue;
            }
            let v = &tag.name[tag_prefix.len()..];
            // Non-canonical tags (v1.2, v1.2.3+meta) are for Stat to rewrite, not versions;
            // nor are tags that look like pseudo-versions.
            if v.is_empty() || semver::canonical(v).as_deref() != Some(v) || is_pseudo_version(v) {
                continue;
            }
            if !match_path_major(v, &self.path_major) {
                if self.code_dir.is_empty()
                    && self.path_major.is_empty()
                    && semver::major(v).unwrap_or("") > "v1"
                {
                    incompatible.push(tag);
                }
                continue;
            }
            list.push((v.to_string(), tag.hash.clone()));
        }
        list.sort_by(|a, b| sort_order(&a.0, &b.0));
        incompatible.sort_by(|a, b| sort_order(&a.name, &b.name));
        self.append_incompatible_versions(list, &incompatible)
    }

    /// `appendIncompatibleVersions`: `+incompatible` versions are listed only where the
    /// module has not opted into modules (no go.mod at the newest compatible version, nor at
    /// the newest tag of that major version).
    fn append_incompatible_versions(
        &self,
        list: Vec<(String, String)>,
        incompatible: &[&Tag],
    ) -> Result<Vec<String>, CodeRepoError> {
        let has_go_mod = |hash: &str, v: &str| -> Result<bool, CodeRepoError> {
            self.read_go_mod(hash, "go.mod")
                .map(|f| f.is_some())
                .map_err(|e| self.fail(e, Some(v)))
        };
        let mut versions: Vec<String> = list.iter().map(|(v, _)| v.clone()).collect();
        if incompatible.is_empty() || !self.path_major.is_empty() {
            return Ok(versions);
        }
        if let Some((v, hash)) = list.last()
            && has_go_mod(hash, v)?
        {
            // The newest compatible version has a go.mod: the author means the v0/v1 line
            // (golang.org/issue/34189).
            return Ok(versions);
        }
        let mut i = 0;
        let mut majors = 0;
        while i < incompatible.len() {
            majors += 1;
            if majors > MAX_MAJORS {
                return Err(self.too_many_majors(None));
            }
            let major = semver::major(&incompatible[i].name).unwrap_or("");
            let n = incompatible[i..]
                .iter()
                .take_while(|t| semver::major(&t.name).unwrap_or("") == major)
                .count();
            let latest = incompatible[i + n - 1];
            if !has_go_mod(&latest.hash, &latest.name)? {
                versions.extend(
                    incompatible[i..i + n]
                        .iter()
                        .map(|t| format!("{}+incompatible", t.name)),
                );
            }
            i += n;
        }
        Ok(versions)
    }

    /// `retractedVersions`: the retractions in the go.mod of the newest release (else the
    /// newest pre-release) that is not `+incompatible`. The go command ignores a failure to
    /// load them, and so does this (nothing is retracted then).
    pub(super) fn retractions(&self) -> Vec<Retraction> {
        let Ok(versions) = self.versions_in_mirror("") else {
            return Vec::new();
        };
        let compatible: Vec<&String> = versions
            .iter()
            .take_while(|v| !v.ends_with("+incompatible"))
            .collect();
        let Some(highest) = compatible
            .iter()
            .rev()
            .find(|v| semver::prerelease(v).is_empty())
            .or(compatible.last())
        else {
            return Vec::new();
        };
        match self.go_mod(highest) {
            Ok(data) => lax_retractions(&data),
            Err(_) => Vec::new(),
        }
    }
}

/// The most major versions whose go.mod is read to decide `+incompatible` (one `git` read
/// each): no real module has that many, a hostile repository could have millions of tags.
pub(super) const MAX_MAJORS: usize = 1000;

impl CodeRepo {
    pub(super) fn too_many_majors(&self, version: Option<&str>) -> CodeRepoError {
        CodeRepoError::TooLarge {
            module: self.module.clone(),
            version: version.map(str::to_string),
            reason: format!(
                "the repository has tags of more than {MAX_MAJORS} major versions, modfleet's \
                 limit for deciding which are +incompatible"
            ),
        }
    }
}

/// `semver.Sort`'s order: by precedence, then by string.
pub(super) fn sort_order(a: &str, b: &str) -> Ordering {
    semver::compare(a, b).then_with(|| a.cmp(b))
}
