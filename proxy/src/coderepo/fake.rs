//! An in-memory [`CodeHost`] for unit tests: commits with parents, files, tags, branches and
//! a HEAD, seen through a "mirror" that only a refresh brings up to date with the "remote";
//! failures on demand; calls counted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::codehost::{CodeHost, HostError, RevInfo, SpooledZip, Tag};
use crate::protocol::semver;

#[derive(Clone, Default)]
pub struct Commit {
    pub parents: Vec<String>,
    pub time: i64,
    pub files: BTreeMap<String, Vec<u8>>,
}

#[derive(Clone, Default)]
pub struct State {
    pub commits: HashMap<String, Commit>,
    pub tags: BTreeMap<String, String>,
    pub branches: BTreeMap<String, String>,
    pub head: Option<String>,
}

#[derive(Default)]
pub struct FakeHost {
    remote: Mutex<State>,
    mirror: Mutex<State>,
    next: AtomicUsize,
    pub refreshes: AtomicUsize,
    /// Every refresh fails with this.
    pub refresh_fails: Mutex<Option<HostError>>,
    /// Every read fails with this.
    pub reads_fail: Mutex<Option<HostError>>,
}

impl FakeHost {
    /// Adds a commit to the remote and mirror alike (`parents` first, files of the whole
    /// tree) and returns its hash.
    pub fn commit(&self, parents: &[&str], time: i64, files: &[(&str, &str)]) -> String {
        let hash = self.commit_remote(parents, time, files);
        self.sync();
        hash
    }

    /// Adds a commit to the remote only (the mirror sees it after a refresh).
    pub fn commit_remote(&self, parents: &[&str], time: i64, files: &[(&str, &str)]) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let digest = Sha256::digest(format!("commit {n}").as_bytes());
        let hash: String = digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()[..40]
            .to_string();
        let commit = Commit {
            parents: parents.iter().map(|p| p.to_string()).collect(),
            time,
            files: files
                .iter()
                .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
                .collect(),
        };
        self.remote
            .lock()
            .unwrap()
            .commits
            .insert(hash.clone(), commit);
        hash
    }

    pub fn tag(&self, name: &str, hash: &str) {
        self.remote_only(|s| s.tags.insert(name.into(), hash.into()));
        self.sync();
    }

    pub fn branch(&self, name: &str, hash: &str) {
        self.remote_only(|s| s.branches.insert(name.into(), hash.into()));
        self.sync();
    }

    /// Makes `branch` (which must exist) the default branch.
    pub fn head(&self, branch: &str) {
        self.remote_only(|s| s.head = Some(s.branches[branch].clone()));
        self.sync();
    }

    /// Changes the remote only.
    pub fn remote_only<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.remote.lock().unwrap())
    }

    fn sync(&self) {
        *self.mirror.lock().unwrap() = self.remote.lock().unwrap().clone();
    }

    fn read(&self) -> Result<std::sync::MutexGuard<'_, State>, HostError> {
        if let Some(e) = self.reads_fail.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(self.mirror.lock().unwrap())
    }

    fn info(s: &State, hash: &str, name: &str, reference: Option<String>) -> RevInfo {
        let c = &s.commits[hash];
        let mut tags: Vec<String> = s
            .tags
            .iter()
            .filter(|(_, h)| *h == hash)
            .map(|(n, _)| n.clone())
            .collect();
        tags.sort();
        RevInfo {
            hash: hash.to_string(),
            short: hash[..12].to_string(),
            time: time(c.time),
            tags,
            name: name.to_string(),
            reference,
        }
    }

    fn ancestors(s: &State, hash: &str) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut todo = vec![hash.to_string()];
        while let Some(h) = todo.pop() {
            if seen.insert(h.clone())
                && let Some(c) = s.commits.get(&h)
            {
                todo.extend(c.parents.iter().cloned());
            }
        }
        seen
    }
}

pub fn time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

fn not_found(what: &str) -> HostError {
    HostError::NotFound(format!("unknown revision {what}"))
}

impl CodeHost for FakeHost {
    fn refresh(&self) -> Result<(), HostError> {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        if let Some(e) = self.refresh_fails.lock().unwrap().clone() {
            return Err(e);
        }
        self.sync();
        Ok(())
    }

    fn tags(&self, prefix: &str) -> Result<Vec<Tag>, HostError> {
        let s = self.read()?;
        Ok(s.tags
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, h)| Tag {
                name: n.clone(),
                hash: h.clone(),
            })
            .collect())
    }

    fn stat(&self, rev: &str) -> Result<RevInfo, HostError> {
        let s = self.read()?;
        let hexish =
            rev.len() >= 7 && rev.len() <= 40 && rev.bytes().all(|b| b.is_ascii_hexdigit());
        if hexish {
            let hits: Vec<&String> = s.commits.keys().filter(|h| h.starts_with(rev)).collect();
            if let [h] = hits.as_slice() {
                // As the seam says: the least ref naming the commit, unless it is HEAD.
                let reference = if s.head.as_ref() == Some(*h) {
                    None
                } else {
                    let branch = s.branches.iter().find(|(_, b)| b == h);
                    let tag = s.tags.iter().find(|(_, t)| t == h);
                    branch
                        .map(|(n, _)| format!("refs/heads/{n}"))
                        .or(tag.map(|(n, _)| format!("refs/tags/{n}")))
                };
                return Ok(Self::info(&s, h, rev, reference));
            }
        }
        if let Some(h) = s.tags.get(rev) {
            return Ok(Self::info(&s, h, rev, Some(format!("refs/tags/{rev}"))));
        }
        if let Some(h) = s.branches.get(rev) {
            return Ok(Self::info(&s, h, rev, Some(format!("refs/heads/{rev}"))));
        }
        if rev == "HEAD"
            && let Some(h) = &s.head
        {
            return Ok(Self::info(&s, h, rev, None));
        }
        Err(not_found(rev))
    }

    fn latest(&self) -> Result<RevInfo, HostError> {
        let s = self.read()?;
        match &s.head {
            Some(h) => Ok(Self::info(&s, h, "HEAD", Some("HEAD".into()))),
            None => Err(HostError::NotFound("no commits".into())),
        }
    }

    fn read_file(
        &self,
        hash: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, HostError> {
        let s = self.read()?;
        let c = s.commits.get(hash).ok_or_else(|| not_found(hash))?;
        match c.files.get(path) {
            Some(data) if data.len() as u64 > max_bytes => {
                Err(HostError::TooLarge(format!("{path} at {hash}")))
            }
            data => Ok(data.cloned()),
        }
    }

    /// A zip as `git archive --prefix=prefix/` writes one (no conversions: the fake has
    /// no attributes), built with the `zip` crate.
    fn read_zip(&self, hash: &str, subdir: &str, max_bytes: u64) -> Result<SpooledZip, HostError> {
        let s = self.read()?;
        let c = s.commits.get(hash).ok_or_else(|| not_found(hash))?;
        let prefix = if subdir.is_empty() {
            String::new()
        } else {
            format!("{subdir}/")
        };
        let file = tempfile::tempfile().map_err(|e| HostError::Unavailable(e.to_string()))?;
        let mut w = ::zip::ZipWriter::new(file);
        let mut any = false;
        for (path, data) in &c.files {
            if !path.starts_with(&prefix) {
                continue;
            }
            any = true;
            w.start_file(
                format!("prefix/{path}"),
                ::zip::write::SimpleFileOptions::default(),
            )
            .and_then(|()| std::io::Write::write_all(&mut w, data).map_err(Into::into))
            .map_err(|e| HostError::Unavailable(e.to_string()))?;
        }
        if !any {
            return Err(HostError::NotFound(format!("{subdir} at {hash}")));
        }
        let file = w
            .finish()
            .map_err(|e| HostError::Unavailable(e.to_string()))?;
        let size = file
            .metadata()
            .map_err(|e| HostError::Unavailable(e.to_string()))?
            .len();
        if size > max_bytes {
            return Err(HostError::TooLarge(format!("archive of {hash}")));
        }
        Ok(SpooledZip { file, size })
    }

    fn recent_tag(
        &self,
        hash: &str,
        prefix: &str,
        allowed: &dyn Fn(&str) -> bool,
    ) -> Result<Option<String>, HostError> {
        let s = self.read()?;
        let ancestors = Self::ancestors(&s, hash);
        let candidates: Vec<(String, String)> = s
            .tags
            .iter()
            .filter(|(n, h)| n.starts_with(prefix) && ancestors.contains(*h))
            .map(|(n, h)| (n.clone(), h.clone()))
            .collect();
        drop(s);
        let mut highest: Option<String> = None;
        for (name, _) in candidates {
            let sem = &name[prefix.len()..];
            if !allowed(&name) || !semver::is_valid(sem) {
                continue;
            }
            if highest
                .as_deref()
                .is_none_or(|h| semver::compare(sem, h).is_gt())
            {
                highest = Some(sem.to_string());
            }
        }
        Ok(highest.map(|h| format!("{prefix}{h}")))
    }

    fn descends_from(&self, hash: &str, tag: &str) -> Result<bool, HostError> {
        let s = self.read()?;
        let Some(target) = s.tags.get(tag) else {
            return Ok(false);
        };
        Ok(Self::ancestors(&s, hash).contains(target))
    }
}
