//! `@latest`: the go command's `latest` query (`modload.queryProxy` with `CheckAllowed`):
//! the highest release, else the highest pre-release, not retracted, with `+incompatible`
//! versions only when the newest compatible version has no go.mod; else the default branch's
//! head.

use super::{CodeRepo, CodeRepoError, RevInfo};
use crate::protocol::modfile::{Retraction, lax_retractions, legacy_go_mod};
use crate::protocol::semver;

impl CodeRepo {
    /// The go command's `latest` for this module. Retractions are those of the go.mod of
    /// `latest` itself, found ignoring them (`CheckRetractions`).
    pub fn latest(&self) -> Result<RevInfo, CodeRepoError> {
        let versions = self.versions("")?;
        let retractions = self.latest_retractions(&versions);
        let allowed = |v: &str| !retractions.iter().any(|r| r.contains(v));
        self.query_latest(&versions, &allowed)
    }

    /// The retractions `CheckRetractions` applies: from the go.mod of `latest` found with
    /// every version allowed; none when it cannot be loaded (the go command ignores that).
    fn latest_retractions(&self, versions: &[String]) -> Vec<Retraction> {
        let Ok(latest) = self.query_latest(versions, &|_| true) else {
            return Vec::new();
        };
        match self.go_mod(&latest.version) {
            Ok(data) => lax_retractions(&data),
            Err(_) => Vec::new(),
        }
    }

    /// `queryProxy` for `latest` over `versions` (ascending), with `allowed` as the filter.
    fn query_latest(
        &self,
        versions: &[String],
        allowed: &dyn Fn(&str) -> bool,
    ) -> Result<RevInfo, CodeRepoError> {
        let (releases, prereleases) = self.filter_versions(versions, allowed)?;
        if let Some(v) = releases.last().or(prereleases.last()) {
            return self.stat(v);
        }
        let head = match self.head() {
            Ok(head) => head,
            Err(e) if e.is_not_found() => return Err(self.no_matching_versions()),
            Err(e) => return Err(e),
        };
        if allowed(&head.version) {
            return Ok(head);
        }
        Err(self.no_matching_versions())
    }

    fn no_matching_versions(&self) -> CodeRepoError {
        CodeRepoError::NotFound {
            module: self.module.clone(),
            version: Some("latest".into()),
            reason: "no matching versions for query \"latest\"".into(),
        }
    }

    /// `filterVersions` for `latest`: allowed versions split into releases and pre-releases;
    /// `+incompatible` ones dropped once the newest allowed compatible version has a real
    /// go.mod (golang.org/issue/34165).
    fn filter_versions<'v>(
        &self,
        versions: &'v [String],
        allowed: &dyn Fn(&str) -> bool,
    ) -> Result<(Vec<&'v str>, Vec<&'v str>), CodeRepoError> {
        let mut need_incompatible = false;
        let mut last_compatible: Option<&str> = None;
        let (mut releases, mut prereleases) = (Vec::new(), Vec::new());
        for v in versions {
            if !allowed(v) {
                continue;
            }
            if !need_incompatible {
                if !v.ends_with("+incompatible") {
                    last_compatible = Some(v);
                } else if let Some(last) = last_compatible {
                    if self.version_has_go_mod(last)? {
                        break;
                    }
                    need_incompatible = true;
                }
            }
            if semver::prerelease(v).is_empty() {
                releases.push(v.as_str());
            } else {
                prereleases.push(v.as_str());
            }
        }
        Ok((releases, prereleases))
    }

    /// `versionHasGoMod`: the version's .mod is a real go.mod, not the synthesized one.
    fn version_has_go_mod(&self, v: &str) -> Result<bool, CodeRepoError> {
        Ok(self.go_mod(v)? != legacy_go_mod(&self.module))
    }
}
