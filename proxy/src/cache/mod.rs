//! The disk cache: layout, crash-safe writes, the LRU index and eviction.
//!
//! Layout: everything lives under `<cache-dir>/download/`, mirroring GOMODCACHE's
//! `cache/download` (and therefore the GOPROXY layout itself): `<escaped module>/@v/list`,
//! `<escaped module>/@v/<escaped version>.{info,mod,zip}`, `<escaped module>/@latest` and
//! `sumdb/<name>/...`. A person can read it, and `GOPROXY=file://<cache-dir>/download` works.
//!
//! Crash safety: a file appears under its final name only by `rename` of a fully written,
//! fsynced and verified temporary file (`.tmp-*`) in the same directory, followed by an fsync of
//! the directory. Temporary files left by a crash are removed at start-up, so every file found
//! under its final name is whole.
//!
//! Every file operation stays inside the cache directory and refuses symlinks ([`fs`]): only
//! regular files are cache entries.

pub mod fs;
pub mod nowait;
pub mod scan;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::metrics::Metrics;
use crate::protocol::Request;
pub use writer::{CacheWriter, HeldFile, ServedFile, StreamError};

/// Where a request's answer lives in the cache: its escaped GOPROXY path, relative to
/// `download/`. Built only from validated requests, so it never leaves the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn of(req: &Request) -> CacheKey {
        CacheKey(req.escaped_path())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn as_path(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Errors of cache writes. `Full` is singled out: a full disk must degrade to "serve without
/// caching", never to a failed request.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache disk is full: {0}")]
    Full(io::Error),
    #[error("cache I/O error on {key}: {source}")]
    Io { key: CacheKey, source: io::Error },
}

impl CacheError {
    fn io(key: &CacheKey, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::StorageFull
            || source.kind() == io::ErrorKind::QuotaExceeded
        {
            CacheError::Full(source)
        } else {
            CacheError::Io {
                key: key.clone(),
                source,
            }
        }
    }
}

/// A cached file opened for serving.
#[derive(Debug)]
pub struct CachedFile {
    pub file: std::fs::File,
    pub len: u64,
    /// When the file was written: the age of list/@latest answers.
    pub modified: SystemTime,
    /// Strong validator: the file is never rewritten in place, so path, size and write time
    /// identify its bytes.
    pub etag: String,
}

/// The disk would have to be read: do it on the blocking pool.
#[derive(Debug)]
pub struct WouldBlock;

impl CachedFile {
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.modified)
            .unwrap_or_default()
    }

    /// Reads the whole file (a small one: the caller knows its length).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(self.len as usize);
        (&self.file).take(self.len).read_to_end(&mut buf)?;
        Ok(buf)
    }
}

#[derive(Debug, Default)]
struct Index {
    /// key → (size, last-use tick)
    entries: HashMap<String, (u64, u64)>,
    /// last-use tick → key; the first entry is the least recently used.
    lru: BTreeMap<u64, String>,
    bytes: u64,
    tick: u64,
}

impl Index {
    fn touch(&mut self, key: &str, size: u64) {
        self.tick += 1;
        let tick = self.tick;
        let previous = match self.entries.get_mut(key) {
            Some(entry) => Some(std::mem::replace(entry, (size, tick))),
            None => {
                self.entries.insert(key.to_string(), (size, tick));
                None
            }
        };
        if let Some((old_size, old_tick)) = previous {
            self.lru.remove(&old_tick);
            self.bytes -= old_size;
        }
        self.lru.insert(tick, key.to_string());
        self.bytes += size;
    }

    fn remove(&mut self, key: &str) {
        if let Some((size, tick)) = self.entries.remove(key) {
            self.lru.remove(&tick);
            self.bytes -= size;
        }
    }
}

/// The disk cache. Cheap to share behind an `Arc`; all methods do blocking file I/O and are
/// meant to be called from `spawn_blocking` or for small files.
#[derive(Debug)]
pub struct Cache {
    root: fs::Root,
    root_path: std::path::PathBuf,
    max_bytes: Option<u64>,
    index: Mutex<Index>,
    metrics: Arc<Metrics>,
    tmp_counter: AtomicU64,
    /// Unix seconds of the last "disk full" log line, to rate-limit it.
    last_full_log: AtomicU64,
}

impl Cache {
    /// Opens (creating if needed) the cache under `dir`, removes temporary files a crash left
    /// behind and indexes what is there, oldest first. A cache that cannot be written still
    /// opens: downloads are then served without being kept.
    pub fn open(dir: &Path, max_bytes: Option<u64>, metrics: Arc<Metrics>) -> io::Result<Cache> {
        let root_path = dir.join("download");
        let root = fs::Root::open(&root_path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot open cache directory {}: {e}; check --cache-dir and its permissions",
                    root_path.display()
                ),
            )
        })?;
        let mut files = Vec::new();
        let (mut removed_tmp, mut stray) = (0usize, 0usize);
        for entry in scan::scan(&root_path)? {
            match entry {
                scan::Entry::File { rel, len, modified } => files.push((rel, len, modified)),
                scan::Entry::Tmp { rel } => match root.remove_file(&rel) {
                    Ok(()) => removed_tmp += 1,
                    Err(e) => {
                        tracing::warn!(file = %rel.display(), error = %e, "cannot remove a temporary file left by an earlier run")
                    }
                },
                scan::Entry::NotRegular { .. } => stray += 1,
            }
        }
        files.sort_by_key(|(_, _, modified)| *modified);
        let mut index = Index::default();
        for (rel, size, _) in &files {
            if let Some(key) = rel.to_str() {
                index.touch(key, *size);
            }
        }
        if removed_tmp > 0 {
            tracing::info!(
                removed_tmp,
                "removed unfinished temporary files left by an earlier run"
            );
        }
        if stray > 0 {
            tracing::warn!(
                stray,
                "the cache holds entries that are not regular files (symlinks, devices): they are never served; `modfleet-proxy verify --purge` removes them"
            );
        }
        tracing::info!(
            objects = index.entries.len(),
            bytes = index.bytes,
            dir = %root_path.display(),
            "cache opened"
        );
        let cache = Cache {
            root,
            root_path,
            max_bytes,
            index: Mutex::new(index),
            metrics,
            tmp_counter: AtomicU64::new(0),
            last_full_log: AtomicU64::new(0),
        };
        cache.publish_sizes();
        cache.evict_to_limit(None);
        Ok(cache)
    }

    /// Opens the cache of a running proxy from another process (`verify`): nothing is removed
    /// or evicted, and nothing is indexed; files written (checksum-database tiles) appear by
    /// atomic renames as the proxy's own do.
    pub fn attach(dir: &Path, metrics: Arc<Metrics>) -> io::Result<Cache> {
        let root_path = dir.join("download");
        let root = fs::Root::open(&root_path)?;
        Ok(Cache {
            root,
            root_path,
            max_bytes: None,
            index: Mutex::new(Index::default()),
            metrics,
            tmp_counter: AtomicU64::new(0),
            last_full_log: AtomicU64::new(0),
        })
    }

    /// Whether `key` is in the index (no disk access): a cheap "already cached" for prefetch.
    pub fn is_indexed(&self, key: &CacheKey) -> bool {
        self.index
            .lock()
            .expect("cache index poisoned")
            .entries
            .contains_key(key.as_str())
    }

    /// Opens a cached file and marks it as used. None when absent; a symlink or anything but a
    /// regular file in its place is not a cache entry (logged).
    pub fn open_file(&self, key: &CacheKey) -> Option<CachedFile> {
        self.entry(key, self.root.open_file(key.as_path()))
    }

    /// [`Cache::open_file`] without waiting for the disk, for the connection's own thread:
    /// `Err(WouldBlock)` when the lookup is not in the kernel's caches (then call
    /// `open_file` on the blocking pool).
    pub fn open_file_nowait(&self, key: &CacheKey) -> Result<Option<CachedFile>, WouldBlock> {
        match self.root.open_file_cached(key.as_path()) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(WouldBlock),
            opened => Ok(self.entry(key, opened)),
        }
    }

    /// The cache entry an open gave, marked as used.
    fn entry(&self, key: &CacheKey, opened: io::Result<std::fs::File>) -> Option<CachedFile> {
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "cache entry not served");
                return None;
            }
        };
        let meta = file.metadata().ok()?;
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let len = meta.len();
        self.index
            .lock()
            .expect("cache index poisoned")
            .touch(key.as_str(), len);
        Some(CachedFile {
            file,
            len,
            modified,
            etag: etag(key.as_str(), len, modified),
        })
    }

    /// Starts writing `key`; nothing is visible under that name until [`CacheWriter::commit`].
    pub fn writer(self: &Arc<Self>, key: &CacheKey) -> Result<CacheWriter, CacheError> {
        CacheWriter::in_cache(self.clone(), key.clone())
    }

    /// A writer for `key`: in the cache, or loose when the cache cannot take it.
    pub fn writer_or_loose(self: &Arc<Self>, key: &CacheKey) -> io::Result<CacheWriter> {
        match self.writer(key) {
            Ok(w) => Ok(w),
            Err(_) => CacheWriter::loose(key.clone()),
        }
    }

    /// Writes a small file in one go (list, @latest, .info, .mod, sumdb answers). Whether it
    /// could be kept is in the answer's `cached`.
    pub fn put(self: &Arc<Self>, key: &CacheKey, bytes: &[u8]) -> io::Result<ServedFile> {
        self.put_announced(key, bytes, |_| {})
    }

    /// [`Cache::put`] that calls `written(cached)` once the bytes are written, before the
    /// commit waits for the disk: the caller can answer its clients then.
    pub fn put_announced(
        self: &Arc<Self>,
        key: &CacheKey,
        bytes: &[u8],
        written: impl FnOnce(bool),
    ) -> io::Result<ServedFile> {
        let mut w = self.writer_or_loose(key)?;
        w.write_all(bytes)?;
        written(w.is_cached());
        Ok(w.commit())
    }

    /// Records a committed file in the index and evicts to the bound.
    fn committed(&self, key: &CacheKey, len: u64) {
        self.index
            .lock()
            .expect("cache index poisoned")
            .touch(key.as_str(), len);
        self.evict_to_limit(Some(key.as_str()));
    }

    fn note_error(&self, e: CacheError) -> CacheError {
        match &e {
            CacheError::Full(err) => {
                self.metrics
                    .cache_write_errors
                    .get_or_create(&crate::metrics::ReasonLabel { reason: "enospc" })
                    .inc();
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let last = self.last_full_log.load(Ordering::Relaxed);
                if now >= last + 60
                    && self
                        .last_full_log
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::warn!(
                        error = %err,
                        dir = %self.root_path.display(),
                        "cache disk is full: serving from upstream without caching (logged at most once a minute; see modfleet_proxy_cache_write_errors_total{{reason=\"enospc\"}})"
                    );
                }
            }
            CacheError::Io { .. } => {
                self.metrics
                    .cache_write_errors
                    .get_or_create(&crate::metrics::ReasonLabel { reason: "io" })
                    .inc();
                tracing::warn!(error = %e, "cache write failed");
            }
        }
        e
    }

    fn publish_sizes(&self) {
        let index = self.index.lock().expect("cache index poisoned");
        self.metrics.cache_bytes.set(index.bytes as i64);
        self.metrics.cache_objects.set(index.entries.len() as i64);
    }

    /// Evicts least recently used files until the cache fits its bound. `keep` is never evicted
    /// (the file just written).
    fn evict_to_limit(&self, keep: Option<&str>) {
        let Some(max) = self.max_bytes else { return };
        loop {
            let victim = {
                let mut index = self.index.lock().expect("cache index poisoned");
                if index.bytes <= max {
                    break;
                }
                let Some(key) = index
                    .lru
                    .values()
                    .find(|key| Some(key.as_str()) != keep)
                    .cloned()
                else {
                    break;
                };
                index.remove(&key);
                key
            };
            // An open file stays readable for whoever is streaming it (Unix semantics).
            match self.root.remove_file(Path::new(&victim)) {
                Ok(()) => {
                    self.metrics.cache_evictions.inc();
                    tracing::debug!(file = %victim, "evicted");
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = %victim, error = %e, "eviction failed"),
            }
        }
        self.publish_sizes();
    }
}

fn etag(key: &str, len: u64, modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update(len.to_le_bytes());
    h.update(nanos.to_le_bytes());
    let digest = h.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Strong ETag of an in-memory body (answers served without a cache file).
pub fn etag_of_bytes(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, max: Option<u64>) -> Arc<Cache> {
        Arc::new(Cache::open(dir, max, Arc::new(Metrics::new())).unwrap())
    }

    fn k(key: &str) -> CacheKey {
        CacheKey(key.to_string())
    }

    #[test]
    fn commit_makes_a_file_visible_and_drop_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), None);
        let key = k("example.com/m/@v/v1.0.0.mod");
        {
            let mut w = c.writer(&key).unwrap();
            w.write_all(b"module example.com/m\n").unwrap();
            assert!(c.open_file(&key).is_none(), "visible before commit");
        }
        assert!(c.open_file(&key).is_none(), "dropped writer left a file");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("download/example.com/m/@v"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "temporary file left: {leftovers:?}");

        let written = c.put(&key, b"module example.com/m\n").unwrap();
        assert!(written.cached);
        let f = c.open_file(&key).unwrap();
        assert_eq!(f.len, 21);
        assert_eq!(f.etag, written.etag, "a hit has the ETag the miss served");
        assert!(f.etag.starts_with('"') && f.etag.ends_with('"'));
    }

    #[test]
    fn restart_removes_temporary_files_and_reindexes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = cache(dir.path(), None);
            c.put(&k("a.example/m/@v/v1.0.0.mod"), b"12345").unwrap();
            let mut w = c.writer(&k("a.example/m/@v/v1.0.0.zip")).unwrap();
            w.write_all(b"half a zip").unwrap();
            // Simulate a crash: the writer's destructor never runs.
            std::mem::forget(w);
        }
        assert_eq!(scan::scan(&dir.path().join("download")).unwrap().len(), 2);
        let c = cache(dir.path(), None);
        let left: Vec<_> = scan::scan(&dir.path().join("download"))
            .unwrap()
            .into_iter()
            .map(|e| match e {
                scan::Entry::File { rel, .. } => rel,
                other => panic!("left behind: {other:?}"),
            })
            .collect();
        assert_eq!(left, [Path::new("a.example/m/@v/v1.0.0.mod")]);
        assert_eq!(c.index.lock().unwrap().bytes, 5);
    }

    #[test]
    fn least_recently_used_files_are_evicted_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), Some(25));
        let a = k("a.example/m/@v/v1.0.0.zip");
        let b = k("b.example/m/@v/v1.0.0.zip");
        let d = k("d.example/m/@v/v1.0.0.zip");
        c.put(&a, &[0; 10]).unwrap();
        c.put(&b, &[0; 10]).unwrap();
        assert!(c.open_file(&a).is_some()); // a is now more recent than b
        c.put(&d, &[0; 10]).unwrap();
        assert!(c.open_file(&b).is_none(), "b was least recently used");
        assert!(c.open_file(&a).is_some());
        assert!(c.open_file(&d).is_some());
        assert_eq!(c.metrics.cache_evictions.get(), 1);
        assert_eq!(c.index.lock().unwrap().bytes, 20);
    }

    #[test]
    fn keys_outside_the_cache_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), None);
        assert!(c.writer(&k("../escape/x")).is_err());
        assert!(c.writer(&k("/etc/passwd")).is_err());
        assert!(c.open_file(&k("a/../../x")).is_none());
    }

    #[test]
    fn a_symlinked_entry_is_not_served_and_a_new_download_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), None);
        let key = k("example.com/m/@v/v1.0.0.mod");
        std::fs::create_dir_all(dir.path().join("download/example.com/m/@v")).unwrap();
        std::os::unix::fs::symlink(
            "/etc/passwd",
            dir.path().join("download/example.com/m/@v/v1.0.0.mod"),
        )
        .unwrap();
        assert!(c.open_file(&key).is_none(), "served through a symlink");
        c.put(&key, b"module example.com/m\n").unwrap();
        assert_eq!(
            c.open_file(&key).unwrap().read_all().unwrap(),
            b"module example.com/m\n"
        );
        assert!(std::fs::read("/etc/passwd").unwrap() != b"module example.com/m\n");
    }

    #[test]
    fn a_loose_writer_serves_without_keeping() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), None);
        let key = k("example.com/m/@v/v1.0.0.zip");
        let mut w = CacheWriter::loose(key.clone()).unwrap();
        w.write_all(b"abc").unwrap();
        let written = w.commit();
        assert!(!written.cached);
        let mut buf = [0u8; 3];
        std::os::unix::fs::FileExt::read_exact_at(&**written.file, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"abc");
        assert!(c.open_file(&key).is_none());
    }

    #[tokio::test]
    async fn a_streamed_body_is_written_whole_whatever_its_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), None);
        // Chunks that straddle the write batch, one larger than a batch, an empty one.
        let sizes = [1, 100 << 10, 200 << 10, 0, 700 << 10, 3, 255 << 10, 1 << 10];
        let chunks: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j * 7) as u8).collect())
            .collect();
        let want: Vec<u8> = chunks.concat();
        let key = k("example.com/m/@v/v1.0.0.zip");
        let mut w = c.writer(&key).unwrap();
        let body = futures::stream::iter(
            chunks
                .into_iter()
                .map(|b| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(b))),
        );
        let n = w.write_stream(body, want.len() as u64).await.unwrap();
        assert_eq!(n, want.len() as u64);
        w.commit();
        let got = c.open_file(&key).unwrap().read_all().unwrap();
        assert!(
            got == want,
            "{} bytes written, {} streamed",
            got.len(),
            want.len()
        );
    }
}
