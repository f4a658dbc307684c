//! The identities of the tokens files (`access.tokensFiles`, lines as
//! `modfleet_contract::access::TokenLine`), looked up by the SHA-256 of a presented token: one
//! hash and one map lookup per request, whatever the number of identities.
//!
//! The files are read at start (a bad file stops the start, naming the file and the line) and
//! again when they change ([`TokenStore::refresh`], run every [`REFRESH_INTERVAL`] by
//! [`watch`]); a rewrite that cannot be read keeps the last good set, logged and counted.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use modfleet_contract::access::{TokenHash, TokenLine, parse_tokens_file};

use crate::credentials::file::{self, Version};
use crate::metrics::{Metrics, OutcomeLabel};

/// Largest tokens file read: a Kubernetes Secret's limit (about 13,000 lines); a wrong path
/// (a log, a device) is not read into memory.
pub const MAX_TOKENS_FILE_BYTES: u64 = 1 << 20;

/// How often the files are checked for a change (one `stat` each).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// One identity: its name and the union of its lines' groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub groups: BTreeSet<String>,
}

/// Identities by the hashes of their tokens.
#[derive(Default)]
pub struct TokenSet {
    by_hash: HashMap<TokenHash, Arc<Identity>>,
    identities: usize,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("TokenSet")
            .field("tokens", &self.by_hash.len())
            .field("identities", &self.identities)
            .finish()
    }
}

impl TokenSet {
    /// The set of these lines. A hash given to two identities is refused: a token names one.
    pub fn new(lines: &[TokenLine]) -> Result<TokenSet, String> {
        let mut groups: HashMap<&str, BTreeSet<String>> = HashMap::new();
        for l in lines {
            groups
                .entry(&l.identity)
                .or_default()
                .extend(l.groups.iter().cloned());
        }
        let identities: HashMap<&str, Arc<Identity>> = groups
            .into_iter()
            .map(|(name, groups)| {
                let id = Identity {
                    name: name.to_string(),
                    groups,
                };
                (name, Arc::new(id))
            })
            .collect();
        let mut by_hash = HashMap::new();
        for l in lines {
            let id = identities[l.identity.as_str()].clone();
            if let Some(other) = by_hash.insert(l.hash.clone(), id)
                && other.name != l.identity
            {
                return Err(format!(
                    "identities {} and {} have the same token: give each its own \
                     (`modfleet-proxy hash-token`)",
                    other.name, l.identity
                ));
            }
        }
        Ok(TokenSet {
            by_hash,
            identities: identities.len(),
        })
    }

    /// The identity whose token this is.
    pub fn identify(&self, token: &str) -> Option<&Arc<Identity>> {
        self.by_hash.get(&TokenHash::of(token))
    }

    pub fn identities(&self) -> usize {
        self.identities
    }
}

/// Why the tokens files cannot be used. Names the file and the line, never a token or hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access.tokensFiles {}: {reason}", path.display())]
pub struct TokensError {
    pub path: PathBuf,
    pub reason: String,
}

/// The tokens files and the set last read from them.
pub struct TokenStore {
    files: Vec<PathBuf>,
    current: RwLock<Arc<TokenSet>>,
    read: Mutex<ReadState>,
}

/// What the files looked like at the last read.
#[derive(Default)]
struct ReadState {
    /// Their versions (empty: never read, or one could not be `stat`ed).
    versions: Vec<Version>,
    /// One had changed so recently that a further change may not show in its version yet:
    /// read again at the next check.
    racy: bool,
    /// Why the last read failed, so a broken file is reported once, not at every check.
    failed: Option<TokensError>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("files", &self.files)
            .field("current", &*self.current())
            .finish()
    }
}

/// What [`TokenStore::refresh`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Refreshed {
    Unchanged,
    Reloaded {
        identities: usize,
    },
    /// A file changed but cannot be used: the last good set stays.
    Failed(TokensError),
}

impl TokenStore {
    /// A store of these files; nothing is read before [`TokenStore::load`].
    pub fn new(files: Vec<PathBuf>) -> TokenStore {
        TokenStore {
            files,
            current: RwLock::default(),
            read: Mutex::default(),
        }
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The set as last read.
    pub fn current(&self) -> Arc<TokenSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads every file now (at start: an error stops the start).
    pub fn load(&self) -> Result<usize, TokensError> {
        let mut state = self.read.lock().unwrap_or_else(|p| p.into_inner());
        let (versions, set) = self.read_all()?;
        let n = set.identities();
        *state = ReadState::at(versions, None);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(n)
    }

    /// Reads the files again when one changed (or changed too recently to tell).
    pub fn refresh(&self) -> Refreshed {
        let mut state = self.read.lock().unwrap_or_else(|p| p.into_inner());
        let versions: Result<Vec<Version>, TokensError> = self
            .files
            .iter()
            .map(|path| {
                file::version(path).map_err(|e| TokensError {
                    path: path.clone(),
                    reason: e.to_string(),
                })
            })
            .collect();
        let versions = match versions {
            Ok(v) if v == state.versions && !state.racy => return Refreshed::Unchanged,
            Ok(v) => v,
            Err(e) => return state.fail(Vec::new(), e),
        };
        match self.read_all() {
            Ok((versions, set)) => {
                let recovered = state.failed.is_some();
                let same_set = same(&self.current(), &set);
                let n = set.identities();
                *state = ReadState::at(versions, None);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
                if same_set && !recovered {
                    Refreshed::Unchanged
                } else {
                    Refreshed::Reloaded { identities: n }
                }
            }
            Err(e) => state.fail(versions, e),
        }
    }

    fn read_all(&self) -> Result<(Vec<Version>, TokenSet), TokensError> {
        let mut versions = Vec::new();
        let mut lines = Vec::new();
        for path in &self.files {
            let bad = |reason: String| TokensError {
                path: path.clone(),
                reason,
            };
            let (version, bytes) =
                file::read_at_most(path, MAX_TOKENS_FILE_BYTES).map_err(|e| bad(e.to_string()))?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| bad("it is not UTF-8 text: is it the right file?".into()))?;
            lines.extend(parse_tokens_file(text).map_err(bad)?);
            versions.push(version);
        }
        let set = TokenSet::new(&lines).map_err(|reason| TokensError {
            path: self.files.last().cloned().unwrap_or_default(),
            reason,
        })?;
        Ok((versions, set))
    }
}

impl ReadState {
    fn at(versions: Vec<Version>, failed: Option<TokensError>) -> ReadState {
        let now = SystemTime::now();
        ReadState {
            racy: versions.iter().any(|v| v.racy(now)),
            versions,
            failed,
        }
    }

    /// A failed read: reported unless it is the failure reported last (a file still broken,
    /// or read again while racy).
    fn fail(&mut self, versions: Vec<Version>, e: TokensError) -> Refreshed {
        let again = self.failed.as_ref() == Some(&e);
        *self = ReadState::at(versions, Some(e.clone()));
        if again {
            Refreshed::Unchanged
        } else {
            Refreshed::Failed(e)
        }
    }
}

/// Whether two sets hold the same tokens for the same identities and groups.
fn same(a: &TokenSet, b: &TokenSet) -> bool {
    a.by_hash.len() == b.by_hash.len()
        && a.by_hash
            .iter()
            .all(|(h, id)| b.by_hash.get(h).is_some_and(|o| **o == **id))
}

/// Checks the files every [`REFRESH_INTERVAL`] until the store is dropped elsewhere, logging
/// and counting each reload (`modfleet_proxy_access_token_reloads_total{outcome}`).
pub async fn watch(store: std::sync::Weak<TokenStore>, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(store) = store.upgrade() else { return };
        let outcome = tokio::task::spawn_blocking(move || store.refresh()).await;
        let label = match outcome {
            Ok(Refreshed::Unchanged) | Err(_) => continue,
            Ok(Refreshed::Reloaded { identities }) => {
                tracing::info!(identities, "access: tokens files changed: read again");
                "reloaded"
            }
            Ok(Refreshed::Failed(e)) => {
                tracing::warn!("access: {e}; the tokens read before stay in use until it is fixed");
                "failed"
            }
        };
        metrics
            .access_token_reloads
            .get_or_create(&OutcomeLabel { outcome: label })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(identity: &str, token: &str, groups: &[&str]) -> String {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        TokenLine::for_token(identity, token, &groups).to_string()
    }

    #[test]
    fn tokens_name_identities_with_the_union_of_their_groups() {
        let text = format!(
            "{}\n{}\n{}\n",
            line("ci", "tok-a", &["builders"]),
            line("ci", "tok-b", &["ops"]),
            line("dev", "tok-c", &[])
        );
        let set = TokenSet::new(&parse_tokens_file(&text).unwrap()).unwrap();
        let ci = set.identify("tok-b").unwrap();
        assert_eq!(ci.name, "ci");
        assert_eq!(ci.groups.iter().collect::<Vec<_>>(), ["builders", "ops"]);
        assert_eq!(set.identify("tok-a").unwrap().groups, ci.groups);
        assert_eq!(set.identify("tok-c").unwrap().name, "dev");
        assert!(set.identify("tok-d").is_none());
        assert_eq!(set.identities(), 2);
        assert!(!format!("{set:?}").contains("sha256"));
    }

    #[test]
    fn one_token_for_two_identities_is_refused() {
        let text = format!("{}\n{}\n", line("a", "same", &[]), line("b", "same", &[]));
        let e = TokenSet::new(&parse_tokens_file(&text).unwrap()).unwrap_err();
        assert!(e.contains("a and b have the same token"), "{e}");
    }

    #[test]
    fn a_bad_rewrite_keeps_the_last_good_set_and_a_fix_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, line("ci", "old", &[])).unwrap();
        let store = TokenStore::new(vec![path.clone()]);
        assert_eq!(store.load(), Ok(1));
        assert!(store.current().identify("old").is_some());

        // Replaced (rename, as a Secret update or an editor does) with a broken file.
        let tmp = dir.path().join("tokens.tmp");
        std::fs::write(&tmp, "ci mf_plaintext\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let Refreshed::Failed(e) = store.refresh() else {
            panic!("a broken file is a failed refresh")
        };
        let msg = e.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("line 1"),
            "{msg}"
        );
        assert!(!msg.contains("plaintext"), "{msg}");
        assert!(store.current().identify("old").is_some());
        // Not reported again until it changes.
        assert_eq!(store.refresh(), Refreshed::Unchanged);

        std::fs::write(&tmp, line("ci", "new", &[])).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(store.refresh(), Refreshed::Reloaded { identities: 1 });
        assert!(store.current().identify("old").is_none());
        assert!(store.current().identify("new").is_some());

        // A removed file keeps the set too.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(store.refresh(), Refreshed::Failed(_)));
        assert_eq!(store.refresh(), Refreshed::Unchanged);
        assert!(store.current().identify("new").is_some());
    }

    #[test]
    fn a_rewrite_in_place_of_the_same_size_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, line("ci", "token-a", &[])).unwrap();
        let store = TokenStore::new(vec![path.clone()]);
        store.load().unwrap();
        // Same size, and likely the same mtime tick: only the racy re-read can see it.
        std::fs::write(&path, line("ci", "token-b", &[])).unwrap();
        assert_eq!(store.refresh(), Refreshed::Reloaded { identities: 1 });
        assert!(store.current().identify("token-b").is_some());
        assert!(store.current().identify("token-a").is_none());
        // Half a line (a writer caught mid-way), then the whole: one failure, then the fix.
        std::fs::write(&path, "ci sha256:0123").unwrap();
        assert!(matches!(store.refresh(), Refreshed::Failed(_)));
        assert_eq!(store.refresh(), Refreshed::Unchanged, "reported once");
        std::fs::write(&path, line("ci", "token-c", &[])).unwrap();
        assert_eq!(store.refresh(), Refreshed::Reloaded { identities: 1 });
        assert!(store.current().identify("token-c").is_some());
    }

    #[test]
    fn start_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, line("ci", "x", &[])).unwrap();
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "# ok\nci sha256:12\n").unwrap();
        let e = TokenStore::new(vec![good, bad.clone()]).load().unwrap_err();
        assert_eq!(e.path, bad);
        assert!(e.to_string().contains("line 2: invalid token hash"), "{e}");
        let missing = dir.path().join("missing");
        let e = TokenStore::new(vec![missing.clone()]).load().unwrap_err();
        assert!(e.to_string().contains("No such file"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'#'; MAX_TOKENS_FILE_BYTES as usize + 1]).unwrap();
        let e = TokenStore::new(vec![big]).load().unwrap_err();
        assert!(
            e.to_string().contains("is larger than 1048576 bytes"),
            "{e}"
        );
    }
}
