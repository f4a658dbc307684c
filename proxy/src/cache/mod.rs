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

pub mod verify;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::metrics::Metrics;

const TMP_PREFIX: &str = ".tmp-";

/// Errors of cache writes. `Full` is singled out: a full disk must degrade to "serve without
/// caching", never to a failed request.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache disk is full: {0}")]
    Full(io::Error),
    #[error("cache I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl CacheError {
    fn io(path: &Path, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::StorageFull
            || source.kind() == io::ErrorKind::QuotaExceeded
        {
            CacheError::Full(source)
        } else {
            CacheError::Io {
                path: path.to_path_buf(),
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

impl CachedFile {
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.modified)
            .unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct Index {
    /// relative path → (size, last-use tick)
    entries: HashMap<PathBuf, (u64, u64)>,
    /// last-use tick → relative path; the first entry is the least recently used.
    lru: BTreeMap<u64, PathBuf>,
    bytes: u64,
    tick: u64,
}

impl Index {
    fn touch(&mut self, rel: &Path, size: u64) {
        self.tick += 1;
        let tick = self.tick;
        if let Some((old_size, old_tick)) = self.entries.insert(rel.to_path_buf(), (size, tick)) {
            self.lru.remove(&old_tick);
            self.bytes -= old_size;
        }
        self.lru.insert(tick, rel.to_path_buf());
        self.bytes += size;
    }

    fn remove(&mut self, rel: &Path) {
        if let Some((size, tick)) = self.entries.remove(rel) {
            self.lru.remove(&tick);
            self.bytes -= size;
        }
    }
}

/// The disk cache. Cheap to share behind an `Arc`; all methods do blocking file I/O and are
/// meant to be called from `spawn_blocking` or for small files.
#[derive(Debug)]
pub struct Cache {
    root: PathBuf,
    max_bytes: Option<u64>,
    index: Mutex<Index>,
    metrics: Arc<Metrics>,
    tmp_counter: AtomicU64,
    /// Unix seconds of the last "disk full" log line, to rate-limit it.
    last_full_log: AtomicU64,
}

impl Cache {
    /// Opens (creating if needed) the cache under `dir`, removes temporary files a crash left
    /// behind and indexes what is there, oldest first.
    pub fn open(dir: &Path, max_bytes: Option<u64>, metrics: Arc<Metrics>) -> io::Result<Cache> {
        let root = dir.join("download");
        std::fs::create_dir_all(&root).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot create cache directory {}: {e}; check --cache-dir and its permissions",
                    root.display()
                ),
            )
        })?;
        let mut found = Vec::new();
        let mut removed_tmp = 0usize;
        scan(&root, &root, &mut found, &mut removed_tmp)?;
        found.sort_by_key(|(_, _, modified)| *modified);
        let mut index = Index::default();
        for (rel, size, _) in &found {
            index.touch(rel, *size);
        }
        if removed_tmp > 0 {
            tracing::info!(
                removed_tmp,
                "removed unfinished temporary files left by an earlier run"
            );
        }
        tracing::info!(
            objects = index.entries.len(),
            bytes = index.bytes,
            dir = %root.display(),
            "cache opened"
        );
        let cache = Cache {
            root,
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

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Absolute path of a relative cache key. Keys come from validated protocol requests; this
    /// is the last line of defence against a key that would leave the cache directory.
    fn path_of(&self, rel: &Path) -> io::Result<PathBuf> {
        let safe = rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe || rel.as_os_str().is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("refusing cache key outside the cache: {}", rel.display()),
            ));
        }
        Ok(self.root.join(rel))
    }

    /// Opens a cached file and marks it as used.
    pub fn open_file(&self, rel: &Path) -> Option<CachedFile> {
        let path = self.path_of(rel).ok()?;
        let file = std::fs::File::open(&path).ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let len = meta.len();
        self.index
            .lock()
            .expect("cache index poisoned")
            .touch(rel, len);
        Some(CachedFile {
            file,
            len,
            modified,
            etag: etag(rel, len, modified),
        })
    }

    /// Starts writing `rel`; nothing is visible under that name until [`CacheWriter::commit`].
    pub fn writer(self: &Arc<Self>, rel: &Path) -> Result<CacheWriter, CacheError> {
        let path = self
            .path_of(rel)
            .map_err(|e| CacheError::io(&self.root.join(rel), e))?;
        let dir = path
            .parent()
            .expect("cache keys have a parent")
            .to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| self.note_error(CacheError::io(&dir, e)))?;
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
        let file =
            std::fs::File::create(&tmp).map_err(|e| self.note_error(CacheError::io(&tmp, e)))?;
        Ok(CacheWriter {
            cache: self.clone(),
            rel: rel.to_path_buf(),
            path,
            tmp,
            file: Some(io::BufWriter::with_capacity(256 * 1024, file)),
            written: 0,
        })
    }

    /// Writes a small file in one go (list, @latest, .info, .mod, sumdb answers).
    pub fn put(self: &Arc<Self>, rel: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        let mut w = self.writer(rel)?;
        w.write_all(bytes)?;
        w.commit()
    }

    /// Removes a cached file (used by `verify --purge` and when a file turns out bad).
    pub fn remove(&self, rel: &Path) -> io::Result<()> {
        let path = self.path_of(rel)?;
        self.index.lock().expect("cache index poisoned").remove(rel);
        self.publish_sizes();
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
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
                        dir = %self.root.display(),
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
    fn evict_to_limit(&self, keep: Option<&Path>) {
        let Some(max) = self.max_bytes else { return };
        loop {
            let victim = {
                let mut index = self.index.lock().expect("cache index poisoned");
                if index.bytes <= max {
                    break;
                }
                let Some((_, rel)) = index
                    .lru
                    .iter()
                    .find(|(_, rel)| Some(rel.as_path()) != keep)
                    .map(|(t, r)| (*t, r.clone()))
                else {
                    break;
                };
                index.remove(&rel);
                rel
            };
            // An open file stays readable for whoever is streaming it (Unix semantics).
            if let Ok(path) = self.path_of(&victim) {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        self.metrics.cache_evictions.inc();
                        tracing::debug!(file = %victim.display(), "evicted");
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(file = %path.display(), error = %e, "eviction failed"),
                }
            }
        }
        self.publish_sizes();
    }
}

/// A file being written into the cache. Dropped without `commit`, it leaves nothing behind.
pub struct CacheWriter {
    cache: Arc<Cache>,
    rel: PathBuf,
    path: PathBuf,
    tmp: PathBuf,
    file: Option<io::BufWriter<std::fs::File>>,
    written: u64,
}

impl CacheWriter {
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), CacheError> {
        let file = self.file.as_mut().expect("writer used after commit");
        file.write_all(bytes)
            .map_err(|e| self.cache.note_error(CacheError::io(&self.tmp, e)))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes buffered bytes so the temporary file can be read back (for verification).
    pub fn flush_to_disk(&mut self) -> Result<&Path, CacheError> {
        let file = self.file.as_mut().expect("writer used after commit");
        file.flush()
            .map_err(|e| self.cache.note_error(CacheError::io(&self.tmp, e)))?;
        Ok(&self.tmp)
    }

    /// Makes the file visible under its final name: fsync, rename, fsync of the directory.
    pub fn commit(mut self) -> Result<(), CacheError> {
        let file = self.file.take().expect("writer committed twice");
        let tmp = self.tmp.clone();
        let file = file
            .into_inner()
            .map_err(|e| self.cache.note_error(CacheError::io(&tmp, e.into_error())))?;
        file.sync_all()
            .map_err(|e| self.cache.note_error(CacheError::io(&tmp, e)))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| self.cache.note_error(CacheError::io(&self.path, e)))?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.cache
            .index
            .lock()
            .expect("cache index poisoned")
            .touch(&self.rel, self.written);
        self.cache.evict_to_limit(Some(&self.rel));
        Ok(())
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn etag(rel: &Path, len: u64, modified: SystemTime) -> String {
    let nanos = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut h = Sha256::new();
    h.update(rel.as_os_str().as_encoded_bytes());
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

type Found = (PathBuf, u64, SystemTime);

fn scan(
    root: &Path,
    dir: &Path,
    found: &mut Vec<Found>,
    removed_tmp: &mut usize,
) -> io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let ty = entry.file_type()?;
        let path = entry.path();
        if ty.is_dir() {
            scan(root, &path, found, removed_tmp)?;
        } else if ty.is_file() {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                std::fs::remove_file(&path)?;
                *removed_tmp += 1;
                continue;
            }
            let meta = entry.metadata()?;
            let rel = path.strip_prefix(root).expect("under root").to_path_buf();
            found.push((
                rel,
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ));
        }
    }
    Ok(())
}

/// Every cached file, relative to the `download/` root (for `verify`).
pub fn list_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let root = dir.join("download");
    let mut found = Vec::new();
    let mut tmp = 0;
    scan(&root, &root, &mut found, &mut tmp)?;
    let mut files: Vec<PathBuf> = found.into_iter().map(|(rel, _, _)| rel).collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, max: Option<u64>) -> Arc<Cache> {
        Arc::new(Cache::open(dir, max, Arc::new(Metrics::new())).unwrap())
    }

    #[test]
    fn commit_makes_a_file_visible_and_drop_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), None);
        let rel = Path::new("example.com/m/@v/v1.0.0.mod");
        {
            let mut w = c.writer(rel).unwrap();
            w.write_all(b"module example.com/m\n").unwrap();
            assert!(c.open_file(rel).is_none(), "visible before commit");
        }
        assert!(c.open_file(rel).is_none(), "dropped writer left a file");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("download/example.com/m/@v"))
            .unwrap()
            .collect();
        assert!(leftovers.is_empty(), "temporary file left: {leftovers:?}");

        c.put(rel, b"module example.com/m\n").unwrap();
        let f = c.open_file(rel).unwrap();
        assert_eq!(f.len, 21);
        assert!(f.etag.starts_with('"') && f.etag.ends_with('"'));
    }

    #[test]
    fn restart_removes_temporary_files_and_reindexes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = cache(dir.path(), None);
            c.put(Path::new("a.example/m/@v/v1.0.0.mod"), b"12345")
                .unwrap();
            let mut w = c.writer(Path::new("a.example/m/@v/v1.0.0.zip")).unwrap();
            w.write_all(b"half a zip").unwrap();
            w.flush_to_disk().unwrap();
            // Simulate a crash: the writer's destructor never runs.
            std::mem::forget(w);
        }
        let c = cache(dir.path(), None);
        assert_eq!(
            list_files(dir.path()).unwrap(),
            [PathBuf::from("a.example/m/@v/v1.0.0.mod")]
        );
        assert_eq!(c.index.lock().unwrap().bytes, 5);
    }

    #[test]
    fn least_recently_used_files_are_evicted_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), Some(25));
        let a = Path::new("a.example/m/@v/v1.0.0.zip");
        let b = Path::new("b.example/m/@v/v1.0.0.zip");
        let d = Path::new("d.example/m/@v/v1.0.0.zip");
        c.put(a, &[0; 10]).unwrap();
        c.put(b, &[0; 10]).unwrap();
        assert!(c.open_file(a).is_some()); // a is now more recent than b
        c.put(d, &[0; 10]).unwrap();
        assert!(c.open_file(b).is_none(), "b was least recently used");
        assert!(c.open_file(a).is_some());
        assert!(c.open_file(d).is_some());
        assert_eq!(c.metrics.cache_evictions.get(), 1);
        assert_eq!(c.index.lock().unwrap().bytes, 20);
    }

    #[test]
    fn keys_outside_the_cache_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path(), None);
        assert!(c.writer(Path::new("../escape")).is_err());
        assert!(c.writer(Path::new("/etc/passwd")).is_err());
        assert!(c.open_file(Path::new("a/../../x")).is_none());
    }
}
