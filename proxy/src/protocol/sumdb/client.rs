//! The [`Checker`]: is `h1:X` the checksum of module@version's zip (or go.mod)? Answered as the
//! go command's checksum-database client (golang.org/x/mod/sumdb's `Client`) answers it:
//!
//! 1. look the module up (`lookup/<module>@<version>`: record id, record text, signed tree);
//! 2. verify the tree note's signature with the configured verifier key;
//! 3. check that the new tree is consistent with the latest tree this process has seen (and
//!    persisted, so a restart cannot be rolled back silently), reading tiles authenticated
//!    against the signed tree hash;
//! 4. check that the record is in the tree (its hash, read through authenticated tiles);
//! 5. compare the `h1:` in the record with ours.
//!
//! All bytes come through [`SumdbSource`] (the proxy's own `/sumdb/` proxying and tile cache),
//! bounded in size and count; the whole check is bounded in time.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash as StdHash;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, join_all};

use super::note::{self, NoteError, Verifier};
use super::tlog::{
    self, MAX_TREE_SIZE, Tile, TilePlan, Tree, empty_hash, parse_record, parse_tree, record_hash,
    stored_hash_index, tree_hash_from, tree_hash_indexes,
};
use crate::protocol::{ModulePath, Version};

/// Tile height of the go command's client (and of sum.golang.org).
pub const TILE_HEIGHT: u32 = 8;
/// Largest lookup answer accepted: a record of a few lines and a signed tree note.
pub const MAX_LOOKUP_BYTES: usize = 64 << 10;
/// Largest record text accepted (real ones are two lines).
pub const MAX_RECORD_BYTES: usize = 16 << 10;
/// Largest signed tree note accepted, from a lookup or the state file.
pub const MAX_NOTE_BYTES: usize = 32 << 10;
/// Most tiles one read may need: a tree of [`MAX_TREE_SIZE`] has 6 tile levels, so a read needs
/// at most a tree-hash tile and a chain of parents per level per index.
const MAX_TILES_PER_READ: usize = 48;
/// Verified tiles and records kept in memory (full tiles are 8 KiB: at most 2 MiB).
const TILE_CACHE_ENTRIES: usize = 256;
const RECORD_CACHE_ENTRIES: usize = 1024;
/// Records larger than this are not kept in memory.
const RECORD_CACHE_MAX_TEXT: usize = 4 << 10;
/// How often a lookup retries installing its tree while other lookups move the latest on.
const MAX_MERGE_ROUNDS: usize = 16;

/// Where the checker's bytes come from: paths are relative to `/sumdb/<name>/`, e.g.
/// `lookup/golang.org/x/text@v0.14.0` or `tile/8/0/x001/234.p/5`.
pub trait SumdbSource: Send + Sync {
    /// The body served at `path`. Implementations must stop reading past `max_bytes` and
    /// return [`SourceError::TooLarge`]; 404 and 410 are [`SourceError::NotFound`].
    fn get<'a>(
        &'a self,
        path: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, SourceError>>;

    /// A full tile again from the database itself, past any copy kept on the way (a disk
    /// cache, a fleet peer, a shared store), which the answer replaces: called when the tiles
    /// read do not match the signed tree, so that one bad kept copy is mended instead of
    /// failing every check that needs it. By default the same as [`SumdbSource::get`].
    fn refetch<'a>(
        &'a self,
        path: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, SourceError>> {
        self.get(path, max_bytes)
    }
}

/// Why a [`SumdbSource`] has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// 404 or 410: the database (or every upstream) does not have it.
    #[error("not found")]
    NotFound,
    #[error("the answer is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Anything else (connection, timeout, 5xx): the database is unavailable.
    #[error("{0}")]
    Failed(String),
}

/// Which checksum of a module version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Artifact {
    /// The module zip (`module version h1:...`).
    Zip,
    /// The go.mod (`module version/go.mod h1:...`).
    GoMod,
}

impl std::fmt::Display for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Artifact::Zip => "module zip",
            Artifact::GoMod => "go.mod",
        })
    }
}

/// The outcome of a check that did not confirm the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SumdbError {
    /// The database, verified, records another hash: the artifact is not the one every other
    /// go command sees. A security event.
    #[error(
        "SECURITY: checksum mismatch for the {artifact} of {module}@{version}: downloaded {got}, \
         checksum database {db} says {want}"
    )]
    Mismatch {
        db: String,
        module: String,
        version: String,
        artifact: Artifact,
        got: String,
        want: String,
    },
    /// The database has no record of the module version (404/410 from lookup).
    #[error("{module}@{version} is not in the checksum database {db}")]
    NotFound {
        db: String,
        module: String,
        version: String,
    },
    /// The database could not be reached (source failure, timeout); retry later.
    #[error("checksum database {db} is unavailable for {module}@{version}: {reason}")]
    Unavailable {
        db: String,
        module: String,
        version: String,
        reason: String,
    },
    /// The answer failed verification: bad signature, bad proof, tampered tile, a tree
    /// inconsistent with one seen before. A security event.
    #[error(
        "SECURITY: checksum database {db} answer for {module}@{version} failed verification: {reason}"
    )]
    Invalid {
        db: String,
        module: String,
        version: String,
        reason: String,
    },
}

impl SumdbError {
    /// Mismatches and answers failing verification: log loudly and count.
    pub fn is_security_event(&self) -> bool {
        matches!(
            self,
            SumdbError::Mismatch { .. } | SumdbError::Invalid { .. }
        )
    }
}

/// Errors setting a checker up.
#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    #[error("invalid checksum database key: {0}")]
    Key(#[from] NoteError),
    #[error(
        "cannot read the checksum database state {path}: {source}; fix its permissions or \
         point the proxy at a writable directory"
    )]
    ReadState {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the checksum database state {path} is not a tree signed by {key}: {reason}. If the \
         database's key changed on purpose, delete the file (the next verified tree is written \
         again); otherwise the file was tampered with"
    )]
    BadState {
        path: PathBuf,
        key: String,
        reason: String,
    },
}

/// Why an inner step failed, before module and version are attached.
#[derive(Debug)]
enum Fault {
    NotFound,
    Unavailable(String),
    Invalid(String),
}

type Result2<T> = std::result::Result<T, Fault>;

/// A module version's record, proven to be in the database's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRecord {
    pub id: u64,
    /// Lines like `golang.org/x/text v0.14.0 h1:...` and `... v0.14.0/go.mod h1:...`.
    pub text: Arc<str>,
}

impl VerifiedRecord {
    /// The record's lines for `artifact` of module@version.
    pub fn lines<'a>(
        &'a self,
        module: &ModulePath,
        version: &Version,
        artifact: Artifact,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let prefix = format!("{} {} ", module, key_version(version, artifact));
        self.text
            .split('\n')
            .filter(move |line| line.starts_with(&prefix))
    }

    /// The `h1:` hash the record gives for `artifact`, if any.
    pub fn h1(&self, module: &ModulePath, version: &Version, artifact: Artifact) -> Option<&str> {
        self.lines(module, version, artifact)
            .filter_map(|l| l.rsplit(' ').next())
            .find(|h| h.starts_with("h1:"))
    }
}

/// `v1.2.3` or `v1.2.3/go.mod`, as records name them.
fn key_version(version: &Version, artifact: Artifact) -> String {
    match artifact {
        Artifact::Zip => version.to_string(),
        Artifact::GoMod => format!("{version}/go.mod"),
    }
}

/// Bounds on one check.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Tiles fetched from the source per check (verified tiles kept in memory do not count).
    pub tile_fetches: usize,
    /// Time for a whole check.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tile_fetches: 64,
            deadline: Duration::from_secs(60),
        }
    }
}

/// The latest verified tree and its signed note (empty for the empty tree).
#[derive(Debug, Clone)]
struct Latest {
    tree: Tree,
    note: Bytes,
}

/// A small map that forgets its oldest entries.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    cap: usize,
}

impl<K: StdHash + Eq + Clone, V: Clone> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }
    fn get(&self, k: &K) -> Option<V> {
        self.map.get(k).cloned()
    }
    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

/// Checks module checksums against one checksum database. Cheap to share (`Arc`); all
/// methods take `&self`.
pub struct Checker {
    verifier: Verifier,
    key: String,
    source: Arc<dyn SumdbSource>,
    state_file: PathBuf,
    limits: Limits,
    latest: Mutex<Latest>,
    /// The size of the tree last written to the state file.
    persisted: tokio::sync::Mutex<u64>,
    tiles: Mutex<Bounded<Tile, Bytes>>,
    records: Mutex<Bounded<(String, String), VerifiedRecord>>,
    persist_failures: AtomicU64,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker")
            .field("db", &self.verifier.name())
            .field("state_file", &self.state_file)
            .field("latest", &self.latest().n)
            .finish()
    }
}

impl Checker {
    /// A checker for the database whose verifier key is `verifier_key` (`name+hash+key`),
    /// reading through `source`, keeping the latest verified tree in `state_file` (read now:
    /// a tree persisted by an earlier run is where this one starts).
    pub fn open(
        verifier_key: &str,
        source: Arc<dyn SumdbSource>,
        state_file: impl Into<PathBuf>,
    ) -> Result<Checker, CheckerError> {
        let verifier = Verifier::parse(verifier_key.trim())?;
        let state_file = state_file.into();
        let latest = read_state(&state_file, &verifier, verifier_key)?;
        Ok(Checker {
            key: verifier_key.trim().to_string(),
            persisted: tokio::sync::Mutex::new(latest.tree.n),
            latest: Mutex::new(latest),
            verifier,
            source,
            state_file,
            limits: Limits::default(),
            tiles: Mutex::new(Bounded::new(TILE_CACHE_ENTRIES)),
            records: Mutex::new(Bounded::new(RECORD_CACHE_ENTRIES)),
            persist_failures: AtomicU64::new(0),
        })
    }

    /// The same checker with other bounds.
    pub fn with_limits(mut self, limits: Limits) -> Checker {
        self.limits = limits;
        self
    }

    /// The database's name, e.g. `sum.golang.org`.
    pub fn name(&self) -> &str {
        self.verifier.name()
    }

    /// The latest verified tree (size 0 before the first lookup of a fresh state).
    pub fn latest(&self) -> Tree {
        self.latest.lock().expect("latest lock").tree
    }

    /// How often writing the state file failed (each failure is also logged).
    pub fn persist_failures(&self) -> u64 {
        self.persist_failures.load(Ordering::Relaxed)
    }

    /// Confirms that `h1` is the database's checksum of `artifact` of module@version.
    pub async fn check(
        &self,
        module: &ModulePath,
        version: &Version,
        artifact: Artifact,
        h1: &str,
    ) -> Result<(), SumdbError> {
        let record = self.lookup(module, version).await?;
        let have = format!("{} {} {h1}", module, key_version(version, artifact));
        let mut want = None;
        for line in record.lines(module, version, artifact) {
            if line == have {
                return Ok(());
            }
            if want.is_none()
                && let Some(h) = line.rsplit(' ').next().filter(|h| h.starts_with("h1:"))
            {
                want = Some(h.to_string());
            }
        }
        match want {
            Some(want) => Err(SumdbError::Mismatch {
                db: self.name().to_string(),
                module: module.to_string(),
                version: version.to_string(),
                artifact,
                got: h1.to_string(),
                want,
            }),
            None => Err(self.error(
                module,
                version,
                Fault::Invalid(format!(
                    "the record has no {artifact} checksum for this version: {:?}",
                    record.text
                )),
            )),
        }
    }

    /// The database's record of module@version, verified.
    pub async fn lookup(
        &self,
        module: &ModulePath,
        version: &Version,
    ) -> Result<VerifiedRecord, SumdbError> {
        let key = (module.to_string(), version.to_string());
        if let Some(r) = self.records.lock().expect("records lock").get(&key) {
            return Ok(r);
        }
        let budget = AtomicUsize::new(0);
        let work = self.lookup_uncached(module, version, &budget);
        let record = match tokio::time::timeout(self.limits.deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(Fault::Unavailable(format!(
                "no verified answer within {:?}",
                self.limits.deadline
            ))),
        }
        .map_err(|f| self.error(module, version, f))?;
        if record.text.len() <= RECORD_CACHE_MAX_TEXT {
            self.records
                .lock()
                .expect("records lock")
                .insert(key, record.clone());
        }
        Ok(record)
    }

    fn error(&self, module: &ModulePath, version: &Version, fault: Fault) -> SumdbError {
        let (db, module, version) = (
            self.name().to_string(),
            module.to_string(),
            version.to_string(),
        );
        match fault {
            Fault::NotFound => SumdbError::NotFound {
                db,
                module,
                version,
            },
            Fault::Unavailable(reason) => SumdbError::Unavailable {
                db,
                module,
                version,
                reason,
            },
            Fault::Invalid(reason) => SumdbError::Invalid {
                db,
                module,
                version,
                reason,
            },
        }
    }

    async fn lookup_uncached(
        &self,
        module: &ModulePath,
        version: &Version,
        budget: &AtomicUsize,
    ) -> Result2<VerifiedRecord> {
        let path = format!("lookup/{}@{}", module.escaped(), version.escaped());
        let body = match self.source.get(&path, MAX_LOOKUP_BYTES).await {
            Ok(b) => b,
            Err(SourceError::NotFound) => return Err(Fault::NotFound),
            Err(e) => return Err(source_fault(&path, e)),
        };
        if body.len() > MAX_LOOKUP_BYTES {
            return Err(Fault::Invalid(format!(
                "{path}: answer larger than {MAX_LOOKUP_BYTES} bytes"
            )));
        }
        let (id, text, note) =
            parse_record(&body).map_err(|e| Fault::Invalid(format!("{path}: {e}")))?;
        if text.len() > MAX_RECORD_BYTES || note.len() > MAX_NOTE_BYTES {
            return Err(Fault::Invalid(format!(
                "{path}: record or tree note too large"
            )));
        }
        self.merge_latest(note, budget).await?;
        self.check_record(id, text, budget).await?;
        let text = std::str::from_utf8(text).expect("parse_record checks UTF-8");
        Ok(VerifiedRecord {
            id,
            text: Arc::from(text),
        })
    }

    /// Moves the latest tree forward to the tree in `msg` if it is newer, after checking that
    /// one contains the other (Go's `mergeLatest`).
    async fn merge_latest(&self, msg: &[u8], budget: &AtomicUsize) -> Result2<()> {
        if msg.is_empty() {
            // No note: the record is checked against the latest tree we already trust.
            return Ok(());
        }
        let note = note::open(msg, std::slice::from_ref(&self.verifier)).map_err(|e| {
            Fault::Invalid(match e {
                NoteError::Unverified { signers } => format!(
                    "the tree note is not signed by {} (signed by: {})",
                    self.key,
                    signers.join(", ")
                ),
                e => format!("reading tree note: {e}"),
            })
        })?;
        let tree =
            parse_tree(&note.text).map_err(|e| Fault::Invalid(format!("reading tree: {e}")))?;
        if tree.n > MAX_TREE_SIZE {
            return Err(Fault::Invalid(format!(
                "the signed tree has {} records, more than the {MAX_TREE_SIZE} accepted",
                tree.n
            )));
        }
        let msg = Bytes::copy_from_slice(msg);
        for _ in 0..MAX_MERGE_ROUNDS {
            let latest = self.latest.lock().expect("latest lock").clone();
            if tree.n <= latest.tree.n {
                return self.check_trees(tree, &latest.tree, budget).await;
            }
            self.check_trees(latest.tree, &tree, budget).await?;
            let installed = {
                let mut cur = self.latest.lock().expect("latest lock");
                if cur.tree == latest.tree {
                    *cur = Latest {
                        tree,
                        note: msg.clone(),
                    };
                    true
                } else {
                    false
                }
            };
            if installed {
                self.persist().await;
                return Ok(());
            }
        }
        Err(Fault::Unavailable(
            "the latest tree kept moving during the check".into(),
        ))
    }

    /// Checks that `older` is a prefix of `newer`, from tiles authenticated against `newer`.
    async fn check_trees(&self, older: Tree, newer: &Tree, budget: &AtomicUsize) -> Result2<()> {
        let hash = if older.n == 0 {
            empty_hash()
        } else {
            let hashes = self
                .read_hashes(newer, &tree_hash_indexes(older.n), budget)
                .await?;
            tree_hash_from(older.n, &hashes).map_err(|e| Fault::Invalid(e.to_string()))?
        };
        if hash == older.hash {
            return Ok(());
        }
        Err(Fault::Invalid(format!(
            "the database forked: a tree of {} records with hash {} was verified before, but the \
             signed tree of {} records with hash {} implies hash {hash} for it",
            older.n, older.hash, newer.n, newer.hash
        )))
    }

    /// Checks that record `id` of the latest tree has `text` (Go's `checkRecord`).
    async fn check_record(&self, id: u64, text: &[u8], budget: &AtomicUsize) -> Result2<()> {
        let latest = self.latest();
        if id >= latest.n {
            return Err(Fault::Invalid(format!(
                "record {id} is not in the signed tree of {} records",
                latest.n
            )));
        }
        let hashes = self
            .read_hashes(&latest, &[stored_hash_index(0, id)], budget)
            .await?;
        if hashes.first() != Some(&record_hash(text)) {
            return Err(Fault::Invalid(format!(
                "record {id} in the answer is not the record in the signed tree"
            )));
        }
        Ok(())
    }

    /// The stored hashes at `indexes` of `tree`, from tiles authenticated against it.
    async fn read_hashes(
        &self,
        tree: &Tree,
        indexes: &[u64],
        budget: &AtomicUsize,
    ) -> Result2<Vec<tlog::Hash>> {
        let plan = TilePlan::new(*tree, TILE_HEIGHT, indexes)
            .map_err(|e| Fault::Invalid(format!("planning tiles of tree {}: {e}", tree.n)))?;
        if plan.tiles().len() > MAX_TILES_PER_READ {
            return Err(Fault::Invalid(format!(
                "reading tree {} needs {} tiles, more than {MAX_TILES_PER_READ}",
                tree.n,
                plan.tiles().len()
            )));
        }
        let (mut data, hits) = self.read_tiles(plan.tiles(), budget, true).await?;
        let mut verdict = plan.hashes(&data);
        if verdict.is_err() && hits > 0 {
            // Tiles kept from an earlier tree are only wrong if the database forked: fetch
            // them all again so the error says what happened.
            data = self.read_tiles(plan.tiles(), budget, false).await?.0;
            verdict = plan.hashes(&data);
        }
        if verdict.is_err() {
            // A full tile is kept for ever on the way (disk, peers, store): one bad copy must
            // not fail every check that needs it. Ask the database itself, once.
            let refetched = self.refetch_full_tiles(plan.tiles(), budget).await?;
            if let Some(fresh) = refetched
                && plan.hashes(&fresh).is_ok()
            {
                tracing::warn!(
                    tree = tree.n,
                    "SECURITY: a kept checksum-database tile did not match the signed tree; replaced with the database's own"
                );
                data = fresh;
                verdict = plan.hashes(&data);
            }
        }
        let hashes = verdict.map_err(|e| {
            Fault::Invalid(format!(
                "tiles do not match the signed tree of {} records: {e}",
                tree.n
            ))
        })?;
        let mut cache = self.tiles.lock().expect("tiles lock");
        for (tile, d) in plan.tiles().iter().zip(data) {
            cache.insert(*tile, d);
        }
        Ok(hashes)
    }

    /// The tiles' data, from memory (authenticated before; unless `use_cache` is false) or
    /// the source, concurrently; and how many came from memory.
    async fn read_tiles(
        &self,
        tiles: &[Tile],
        budget: &AtomicUsize,
        use_cache: bool,
    ) -> Result2<(Vec<Bytes>, usize)> {
        let cached: Vec<Option<Bytes>> = {
            let cache = self.tiles.lock().expect("tiles lock");
            tiles
                .iter()
                .map(|t| cache.get(t).filter(|_| use_cache))
                .collect()
        };
        let hits = cached.iter().filter(|c| c.is_some()).count();
        let fetches = tiles.iter().zip(cached).map(|(tile, hit)| async move {
            match hit {
                Some(d) => Ok(d),
                None => self.fetch_tile(*tile, budget).await,
            }
        });
        let data = join_all(fetches)
            .await
            .into_iter()
            .collect::<Result2<_>>()?;
        Ok((data, hits))
    }

    /// The tiles again, each full one from the database itself ([`SumdbSource::refetch`]);
    /// None when no tile is full (nothing kept could be at fault).
    async fn refetch_full_tiles(
        &self,
        tiles: &[Tile],
        budget: &AtomicUsize,
    ) -> Result2<Option<Vec<Bytes>>> {
        if !tiles.iter().any(|t| t.is_full()) {
            return Ok(None);
        }
        let fetches = tiles.iter().map(|tile| async move {
            if !tile.is_full() {
                return self.fetch_tile(*tile, budget).await;
            }
            self.fetch_exact(*tile, budget, true).await
        });
        let data = join_all(fetches)
            .await
            .into_iter()
            .collect::<Result2<_>>()?;
        Ok(Some(data))
    }

    /// One tile from the source; a partial tile the source no longer has is cut from the full
    /// one (as the go command does).
    async fn fetch_tile(&self, tile: Tile, budget: &AtomicUsize) -> Result2<Bytes> {
        match self.fetch_exact(tile, budget, false).await {
            Err(Fault::NotFound) if !tile.is_full() => {
                let full = self.fetch_exact(tile.full(), budget, false).await?;
                Ok(full.slice(..tile.data_len()))
            }
            Err(Fault::NotFound) => Err(Fault::Unavailable(format!(
                "{} is not found at the checksum database",
                tile.path()
            ))),
            other => other,
        }
    }

    /// One tile as the source has it; `fresh`: from the database itself
    /// ([`SumdbSource::refetch`]).
    async fn fetch_exact(&self, tile: Tile, budget: &AtomicUsize, fresh: bool) -> Result2<Bytes> {
        let n = budget.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.limits.tile_fetches {
            return Err(Fault::Invalid(format!(
                "the check needs more than {} tile fetches",
                self.limits.tile_fetches
            )));
        }
        let path = tile.path();
        let answer = if fresh {
            self.source.refetch(&path, tile.data_len()).await
        } else {
            self.source.get(&path, tile.data_len()).await
        };
        let data = match answer {
            Ok(d) => d,
            Err(SourceError::NotFound) => return Err(Fault::NotFound),
            Err(e) => return Err(source_fault(&path, e)),
        };
        if data.len() != tile.data_len() {
            return Err(Fault::Invalid(format!(
                "{path} has {} bytes, want {}",
                data.len(),
                tile.data_len()
            )));
        }
        Ok(data)
    }

    /// Writes the latest tree to the state file if it is newer than what was written, never
    /// replacing a newer verified tree another process wrote. Failures are logged and
    /// counted, not returned: the tree is verified either way.
    async fn persist(&self) {
        let mut written = self.persisted.lock().await;
        let latest = self.latest.lock().expect("latest lock").clone();
        if latest.tree.n <= *written {
            return;
        }
        let path = self.state_file.clone();
        let verifier = self.verifier.clone();
        let key = self.key.clone();
        let note = latest.note.clone();
        let result = tokio::task::spawn_blocking(move || {
            if let Ok(on_disk) = read_state(&path, &verifier, &key)
                && on_disk.tree.n > latest.tree.n
            {
                return Ok(());
            }
            write_atomically(&path, &note)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match result {
            Ok(()) => *written = latest.tree.n,
            Err(e) => {
                self.persist_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    path = %self.state_file.display(),
                    error = %e,
                    "cannot write the latest verified checksum-database tree; a restart would \
                     not detect a database rolled back past it (check the directory is writable)"
                );
            }
        }
    }
}

fn source_fault(path: &str, e: SourceError) -> Fault {
    match e {
        SourceError::NotFound => Fault::NotFound,
        SourceError::TooLarge { limit } => {
            Fault::Invalid(format!("{path}: answer larger than {limit} bytes"))
        }
        SourceError::Failed(reason) => Fault::Unavailable(format!("{path}: {reason}")),
    }
}

/// The tree in the state file: absent or empty is the empty tree.
fn read_state(path: &Path, verifier: &Verifier, key: &str) -> Result<Latest, CheckerError> {
    let empty = Latest {
        tree: Tree {
            n: 0,
            hash: empty_hash(),
        },
        note: Bytes::new(),
    };
    let bad = |reason: String| CheckerError::BadState {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let data = match read_bounded(path, MAX_NOTE_BYTES) {
        Ok(Some(d)) => d,
        Ok(None) => return Err(bad(format!("larger than {MAX_NOTE_BYTES} bytes"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty),
        Err(source) => {
            return Err(CheckerError::ReadState {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if data.is_empty() {
        return Ok(empty);
    }
    let note = note::open(&data, std::slice::from_ref(verifier)).map_err(|e| bad(e.to_string()))?;
    let tree = parse_tree(&note.text).map_err(|e| bad(e.to_string()))?;
    if tree.n > MAX_TREE_SIZE {
        return Err(bad(format!("a tree of {} records is too large", tree.n)));
    }
    Ok(Latest {
        tree,
        note: Bytes::from(data),
    })
}

/// The file's content, or None when it is larger than `max`.
fn read_bounded(path: &Path, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut data = Vec::new();
    std::fs::File::open(path)?
        .take(max as u64 + 1)
        .read_to_end(&mut data)?;
    Ok((data.len() <= max).then_some(data))
}

/// Replaces `path` with `data`: a temporary file in the same directory, fsynced, renamed over
/// it, then the directory fsynced.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
