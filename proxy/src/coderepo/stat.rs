//! `.info`: what a version or query names (`codeRepo.Stat`, `Latest`, `convert` and
//! `validatePseudoVersion`). A tag is its version (with `+incompatible` where the module has
//! not opted into modules); anything else is the commit's own canonical tag if it has one,
//! else a pseudo-version counted from the highest allowed tag among its ancestors.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;

use super::info::tag_sum;
use super::{CodeRepo, CodeRepoError, Origin, RevInfo};
use crate::codehost::{self, HostError};
use crate::protocol::modfile::Retraction;
use crate::protocol::module::match_path_major;
use crate::protocol::pseudo::{self, PseudoCommit, PseudoReason};
use crate::protocol::{canonical_version, is_pseudo_version, semver};

impl CodeRepo {
    /// `Stat`: the version `rev` names (a version, pseudo-version, tag, branch, full or short
    /// commit hash, `HEAD`; `latest` is [`head`](CodeRepo::head)). A pseudo-version must
    /// match its commit exactly and count from a tag the commit descends from.
    pub fn stat(&self, rev: &str) -> Result<RevInfo, CodeRepoError> {
        if rev == "latest" {
            return self.head();
        }
        let code_rev = self.rev_to_rev(rev);
        let info = self.host_stat(rev, &code_rev).map_err(|e| match e {
            HostError::NotFound(reason) => CodeRepoError::NotFound {
                module: self.module.clone(),
                version: Some(rev.to_string()),
                reason: format!("invalid version: {reason}"),
            },
            e => self.fail(e, Some(rev)),
        })?;
        self.convert(&info, rev)
    }

    /// `Latest`: the version of the default branch's head (its tag, or a pseudo-version).
    pub fn head(&self) -> Result<RevInfo, CodeRepoError> {
        self.repo.refresh().map_err(|e| self.fail(e, None))?;
        let info = self.host().latest().map_err(|e| self.fail(e, None))?;
        self.convert(&info, "")
    }

    /// `convert`: the module version of the commit `info`, asked for as `stat_vers` (`""`
    /// for the default branch's head).
    fn convert(&self, info: &codehost::RevInfo, stat_vers: &str) -> Result<RevInfo, CodeRepoError> {
        let c = Convert {
            repo: self,
            info,
            stat_vers,
            tag_prefix: self.tag_prefix(),
            incompatible_ok: RefCell::new(HashMap::new()),
            retractions: OnceCell::new(),
        };
        let rev = c.version()?;
        self.with_origin(info, stat_vers, rev)
    }

    /// The Origin `convert` attaches: the commit and ref, the module's directory, and for a
    /// pseudo-version the tags it was counted from (`TagPrefix`, `TagSum`).
    fn with_origin(
        &self,
        info: &codehost::RevInfo,
        stat_vers: &str,
        mut rev: RevInfo,
    ) -> Result<RevInfo, CodeRepoError> {
        rev.origin = Origin {
            vcs: "git".into(),
            url: self.repo.url().to_string(),
            subdir: self.code_dir.clone(),
            hash: info.hash.clone(),
            reference: info.reference.clone().unwrap_or_default(),
            ..Origin::default()
        };
        let v = &rev.version;
        if is_pseudo_version(v) && (v != stat_vers || !v.starts_with("v0.0.0-")) {
            let mut prefix = self.tag_prefix();
            if !self.path_major.is_empty() {
                prefix.push_str(&self.path_major[1..]);
                prefix.push('.');
            }
            let tags = self
                .host()
                .tags(&prefix)
                .map_err(|e| self.fail(e, Some(v)))?;
            rev.origin.tag_sum = tag_sum(&prefix, &tags);
            rev.origin.tag_prefix = prefix;
        }
        Ok(rev)
    }

    /// `validatePseudoVersion`: the revision and time must be the commit's, and the tag the
    /// pseudo-version counts from must be on an ancestor (else any commit could claim any
    /// precedence).
    fn validate_pseudo_version(
        &self,
        info: &codehost::RevInfo,
        version: &str,
    ) -> Result<(), CodeRepoError> {
        let tag_prefix = self.tag_prefix();
        let commit = PseudoCommit {
            module: &self.module,
            pseudo_major: &self.pseudo_major,
            tag_prefix: &tag_prefix,
            short: &info.short,
            time: info.time,
            tags: &info.tags,
        };
        let refuse = |version: &str, reason: PseudoReason| CodeRepoError::InvalidVersion {
            module: self.module.clone(),
            version: version.to_string(),
            reason: reason.to_string(),
            pseudo: true,
            malformed: false,
        };
        let base = match pseudo::validate_pseudo_version(version, &commit) {
            Ok(None) => return Ok(()),
            Ok(Some(base)) => base,
            Err(e) => return Err(refuse(&e.version, e.reason)),
        };
        let tags = self
            .host()
            .tags(&format!("{tag_prefix}{base}"))
            .map_err(|e| self.fail(e, Some(version)))?;
        let mut last_tag = None;
        let mut failure = None;
        for tag in &tags {
            let version_only = tag.name.strip_prefix(&tag_prefix).unwrap_or(&tag.name);
            if semver::compare(version_only, &base).is_eq() {
                last_tag = Some(&tag.name);
                match self.host().descends_from(&info.hash, &tag.name) {
                    Ok(true) => return Ok(()),
                    Ok(false) => failure = None,
                    Err(e) => failure = Some(e),
                }
            }
        }
        let Some(last_tag) = last_tag else {
            return Err(refuse(version, PseudoReason::PrecedingTagNotFound(base)));
        };
        if let Some(e) = failure {
            return Err(self.fail(e, Some(version)));
        }
        Err(refuse(
            version,
            PseudoReason::NotDescendant {
                rev: pseudo::pseudo_version_rev(version)
                    .unwrap_or_default()
                    .to_string(),
                tag: last_tag.clone(),
            },
        ))
    }
}

/// One `convert` call: the commit, what was asked, and what it learns along the way.
struct Convert<'a> {
    repo: &'a CodeRepo,
    info: &'a codehost::RevInfo,
    stat_vers: &'a str,
    tag_prefix: String,
    /// `canUseIncompatible`'s answers: `""` for the root go.mod, `vN` for `vN/go.mod`.
    incompatible_ok: RefCell<HashMap<String, bool>>,
    retractions: OnceCell<Vec<Retraction>>,
}

impl Convert<'_> {
    fn version(&self) -> Result<RevInfo, CodeRepoError> {
        let (info, stat_vers) = (self.info, self.stat_vers);
        if is_pseudo_version(stat_vers) {
            // The directory and major version first: they need no history.
            let rev = self.check_canonical(stat_vers)?;
            self.repo.validate_pseudo_version(info, stat_vers)?;
            return Ok(rev);
        }

        // The revision asked for, if it is one of the commit's tags (go's info.Version).
        let asked = if info.tags.contains(&info.name) {
            &info.name
        } else {
            &info.hash
        };
        if let (v, true) = self.tag_to_version(asked)
            && let Ok(rev) = self.check_canonical(&v)
        {
            return Ok(rev);
        }

        let mut highest = String::new();
        let mut pseudo_base = String::new();
        for tag in &info.tags {
            let (v, canonical) = self.tag_to_version(tag);
            if !stat_vers.is_empty() && semver::compare(&v, stat_vers).is_eq() {
                if canonical {
                    // The canonical form of what was asked for.
                    return self.check_canonical(&v);
                }
                // Equivalent but not canonical (v1.2.3+meta): a base for an unambiguous
                // pseudo-version.
                pseudo_base = v.clone();
            }
            if canonical
                && semver::compare(&highest, &v).is_lt()
                && !self.is_retracted(&v)
                && (match_path_major(&v, &self.repo.path_major) || self.can_use_incompatible(&v)?)
            {
                highest = v;
            }
        }
        if !highest.is_empty() {
            return self.check_canonical(&highest);
        }

        if pseudo_base.is_empty() {
            let failure = RefCell::new(None);
            let allowed = |tag: &str| -> bool {
                let (v, _) = self.tag_to_version(tag);
                if v.is_empty() {
                    return false;
                }
                if !match_path_major(&v, &self.repo.path_major) {
                    match self.can_use_incompatible(&v) {
                        Ok(true) => {}
                        Ok(false) => return false,
                        Err(e) => {
                            failure.borrow_mut().get_or_insert(e);
                            return false;
                        }
                    }
                }
                !self.is_retracted(&v)
            };
            let tag = self
                .repo
                .host()
                .recent_tag(&info.hash, &self.tag_prefix, &allowed)
                .map_err(|e| self.repo.fail(e, Some(self.shown())))?;
            if let Some(e) = failure.into_inner() {
                return Err(e);
            }
            if let Some(tag) = tag {
                pseudo_base = self.tag_to_version(&tag).0;
            }
        }
        self.check_canonical(&pseudo::pseudo_version(
            &self.repo.pseudo_major,
            &pseudo_base,
            info.time,
            &info.short,
        ))
    }

    /// What was asked, for messages (the commit when it was the default branch's head).
    fn shown(&self) -> &str {
        if self.stat_vers.is_empty() {
            &self.info.hash
        } else {
            self.stat_vers
        }
    }

    /// `tagToVersion`: the canonical version a tag of this module names (`""` for a tag of
    /// another directory, a pseudo-version-like tag, an invalid or incomplete version), and
    /// whether the tag is exactly that version.
    fn tag_to_version(&self, tag: &str) -> (String, bool) {
        let Some(trimmed) = tag.strip_prefix(&self.tag_prefix) else {
            return (String::new(), false);
        };
        if is_pseudo_version(tag) {
            return (String::new(), false);
        }
        // semver's Canonical, not module's: a tag's own +incompatible is not taken.
        match semver::canonical(trimmed) {
            Some(v) if trimmed.starts_with(&v) => {
                let exact = v == trimmed;
                (v, exact)
            }
            _ => (String::new(), false),
        }
    }

    fn is_retracted(&self, v: &str) -> bool {
        self.retractions
            .get_or_init(|| self.repo.retractions())
            .iter()
            .any(|r| r.contains(v))
    }

    /// `canUseIncompatible`: a v2+ tag of a module at the root without a major suffix may be
    /// `+incompatible` only if the commit has no go.mod at the root, nor (unless
    /// `+incompatible` was asked for explicitly, golang.org/issue/51324) at `vN/go.mod`.
    fn can_use_incompatible(&self, v: &str) -> Result<bool, CodeRepoError> {
        let repo = self.repo;
        if !repo.code_dir.is_empty() || !repo.path_major.is_empty() {
            return Ok(false);
        }
        if !self.absent("", "go.mod")? {
            return Ok(false);
        }
        if !v.is_empty() && !self.stat_vers.ends_with("+incompatible") {
            let major = semver::major(v).unwrap_or("");
            let file = super::join(major, "go.mod");
            if !self.absent(major, &file)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether the commit has no file `file` (remembered under `key`).
    fn absent(&self, key: &str, file: &str) -> Result<bool, CodeRepoError> {
        if let Some(&ok) = self.incompatible_ok.borrow().get(key) {
            return Ok(ok);
        }
        if self.incompatible_ok.borrow().len() > super::versions::MAX_MAJORS {
            return Err(self.repo.too_many_majors(Some(self.shown())));
        }
        let ok = self
            .repo
            .read_go_mod(&self.info.hash, file)
            .map_err(|e| self.repo.fail(e, Some(self.shown())))?
            .is_none();
        self.incompatible_ok
            .borrow_mut()
            .insert(key.to_string(), ok);
        Ok(ok)
    }

    /// `checkCanonical`: the canonical version `v` for this commit, with `+incompatible`
    /// added where needed and refused where not allowed; the module must be where its path
    /// says at this commit (`findDir`), and a canonical version asked for must resolve to
    /// itself.
    fn check_canonical(&self, v: &str) -> Result<RevInfo, CodeRepoError> {
        let repo = self.repo;
        let rev = repo.rev_to_rev(v);
        repo.find_dir_at(&self.info.hash, &rev, v)
            .map_err(|e| repo.not_here(v, e))?;

        let stat_trimmed = trim_incompatible(self.stat_vers);
        let mut v = v.to_string();
        if v == stat_trimmed {
            v = self.stat_vers.to_string();
        }
        let base = trim_incompatible(&v).to_string();
        let mut incompatible_error = None;
        if !match_path_major(&base, &repo.path_major) {
            if self.can_use_incompatible(&base)? {
                v = format!("{base}+incompatible");
            } else if !repo.path_major.is_empty() {
                incompatible_error = Some(repo.invalid(
                    &v,
                    "module path includes a major version suffix, so major version must match",
                ));
            } else {
                let want = super::join(&repo.path_prefix, semver::major(&v).unwrap_or(""));
                incompatible_error = Some(repo.invalid(
                    &v,
                    format!(
                        "module contains a go.mod file, so module path must match major version ({want:?})"
                    ),
                ));
            }
        } else if v.ends_with("+incompatible") {
            incompatible_error = Some(repo.invalid(
                &v,
                format!(
                    "+incompatible suffix not allowed: major version {} is compatible",
                    semver::major(&v).unwrap_or("")
                ),
            ));
        }

        if !self.stat_vers.is_empty()
            && canonical_version(self.stat_vers).as_deref() == Some(self.stat_vers)
            && stat_trimmed != base
        {
            // A canonical version asked for resolves to itself or nothing.
            return Err(repo.invalid(
                self.stat_vers,
                format!("resolves to version {v} ({stat_trimmed} is not a tag)"),
            ));
        }
        if let Some(e) = incompatible_error {
            return Err(e);
        }
        Ok(RevInfo {
            version: v,
            time: self.info.time,
            hash: self.info.hash.clone(),
            short: self.info.short.clone(),
            origin: Origin::default(),
        })
    }
}

fn trim_incompatible(v: &str) -> &str {
    v.strip_suffix("+incompatible").unwrap_or(v)
}
