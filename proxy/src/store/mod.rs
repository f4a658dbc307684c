//! The shared object-storage tier under each member's disk cache (`objectStore`).
//!
//! A disk miss of an immutable artifact (`.info`, `.mod`, `.zip` of a canonical version, a full
//! checksum-database tile) reads the store before any upstream; what the store sends is handed
//! to the very check an upstream's answer goes through (the fetcher's `accept` closures: size
//! limits, the zip rules, the go.mod, the checksum database), so a store is as hostile as any
//! upstream. What an upstream sent and passed is written to the store after the disk, in the
//! background, through a bounded queue: a full queue drops the write (counted), and no client
//! waits for a write. Lists, `@latest`, queries and partial tiles never go there.
//!
//! Keys: `<prefix>/v1/<the cache's path>` (see the README, "Cache layout"), so the store holds
//! the GOPROXY layout and a member's disk cache and the store name an artifact the same way.
//!
//! Failures: each call has a timeout; errors (connection refused, timeouts, 5xx) open a circuit
//! breaker (the upstreams' [`Health`]), which then skips the store until a trial succeeds. A
//! failed read is a miss to the client: the upstreams are asked.

mod open;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use modfleet_contract::config::ObjectStoreConfig;
use modfleet_contract::status::{StoreReads, StoreStatus, StoreWrites};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::sync::mpsc;

use crate::cache::{CacheKey, ServedFile};
use crate::metrics::{StoreMetrics, StoreResultLabel};
use crate::protocol::Request;
use crate::upstream::health::{BreakerSettings, Health, Outcome, Permit, breaker_gauge};
use crate::upstream::{AttemptError, UpstreamResponse};
pub use open::StoreConfigError;

/// Writes waiting at most; past it a write is dropped.
const QUEUE_LIMIT: usize = 1024;
/// Bytes of small artifacts waiting at most (zips wait as open files, not in memory).
const QUEUE_BYTES_LIMIT: u64 = 64 << 20;
/// Zips waiting at most: each holds an open file (the open-file limit is shared with clients).
const QUEUE_FILES_LIMIT: u64 = 64;
/// Writes sent at once.
const WRITERS: usize = 4;
/// Files up to this size are written with one PUT; larger ones in parts of this size (S3's
/// smallest part is 5 MiB). A writer holds at most (PARTS_IN_FLIGHT + 1) parts: all writers
/// together at most about 100 MiB, and only while large zips are written.
const PART_BYTES: usize = 8 << 20;
/// Parts of one upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// What is written: the verified bytes, or the verified file (a zip) to read them from.
pub enum Payload {
    Bytes(Bytes),
    File(ServedFile),
}

impl Payload {
    /// What it holds while queued: (bytes of memory, open files).
    fn held(&self) -> (u64, u64) {
        match self {
            Payload::Bytes(b) => (b.len() as u64, 0),
            Payload::File(_) => (0, 1),
        }
    }
}

struct Write {
    path: ObjectPath,
    payload: Payload,
}

/// The store tier of one member.
pub struct Store {
    url: String,
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    timeout: Duration,
    health: Health,
    metrics: StoreMetrics,
    queue: mpsc::Sender<Write>,
    queued_bytes: AtomicU64,
    queued_files: AtomicU64,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    hit: AtomicU64,
    miss: AtomicU64,
    invalid: AtomicU64,
    read_error: AtomicU64,
    write_ok: AtomicU64,
    write_error: AtomicU64,
    dropped: AtomicU64,
    depth: AtomicU64,
}

impl Store {
    /// Builds the client (no request yet) and starts the writers; needs a runtime.
    pub fn start(
        config: &ObjectStoreConfig,
        breaker: BreakerSettings,
        deadline: Duration,
        metrics: StoreMetrics,
    ) -> Result<Arc<Store>, StoreConfigError> {
        let opened = open::open(config, deadline)?;
        let (queue, rx) = mpsc::channel(QUEUE_LIMIT);
        let store = Arc::new(Store {
            url: config.url.clone(),
            inner: opened.store,
            prefix: opened.prefix,
            timeout: config.timeout.get(),
            health: Health::new(breaker),
            metrics,
            queue,
            queued_bytes: AtomicU64::new(0),
            queued_files: AtomicU64::new(0),
            counts: Counts::default(),
        });
        tokio::spawn(write_loop(Arc::downgrade(&store), rx));
        Ok(store)
    }

    /// Checks the configuration without starting anything (for `Config::load`).
    pub fn check(config: &ObjectStoreConfig, deadline: Duration) -> Result<(), StoreConfigError> {
        open::open(config, deadline).map(|_| ())
    }

    /// The object of `req`, when it may be in the store at all (immutable artifacts only).
    pub fn path_of(&self, req: &Request, key: &CacheKey) -> Option<ObjectPath> {
        if !req.is_immutable() {
            return None;
        }
        Some(object_path(&self.prefix, key))
    }

    /// Reads an object: headers within the timeout, the body under the same idle timeout and
    /// low-speed limit as an upstream's, and refused past `max` bytes. The object is an
    /// answer to run the upstream checks on; None when it is not there, or the store failed or
    /// is skipped (counted: the upstreams are asked).
    pub async fn read(&self, path: &ObjectPath, max: u64) -> Option<UpstreamResponse> {
        let permit = self.health.permit(Instant::now());
        if permit == Permit::Refused {
            self.count_read("skipped");
            return None;
        }
        let _trial = (permit == Permit::Trial).then(|| TrialGuard(&self.health));
        let started = Instant::now();
        let got = tokio::time::timeout(self.timeout, self.inner.get(path)).await;
        let latency = Some(started.elapsed());
        let got = match got {
            Ok(Ok(got)) => got,
            Ok(Err(object_store::Error::NotFound { .. })) => {
                self.health
                    .record(Outcome::Success, latency, None, Instant::now());
                self.count_read("miss");
                return None;
            }
            Ok(Err(e)) => {
                self.failed(&format!("read {path}: {e}"), latency);
                self.count_read("error");
                return None;
            }
            Err(_) => {
                self.failed(
                    &format!("read {path}: no answer within {:?}", self.timeout),
                    latency,
                );
                self.count_read("error");
                return None;
            }
        };
        self.health
            .record(Outcome::Success, latency, None, Instant::now());
        let size = got.meta.size;
        if size > max {
            self.invalid(path, &format!("{size} bytes, above the limit of {max}"));
            return None;
        }
        let body = exact_length(got.into_stream(), size);
        Some(UpstreamResponse::from_store(
            &self.url,
            reqwest::Body::wrap_stream(body),
            self.timeout,
        ))
    }

    /// A read whose object passed the checks.
    pub fn verified(&self) {
        self.count_read("hit");
    }

    /// A read whose object failed the checks (or could not be read whole): the upstreams are
    /// asked, and their answer will replace it.
    pub fn rejected(&self, path: &ObjectPath, error: &AttemptError) {
        match error {
            AttemptError::Invalid(why) => self.invalid(path, why),
            AttemptError::Timeout(why) | AttemptError::Transport(why) => {
                self.failed(&format!("read {path}: {why}"), None);
                self.count_read("error");
            }
            // Not the object's fault (the checksum database is down, the disk failed): the
            // upstreams' answer will meet the same problem and report it.
            other => {
                tracing::debug!(object = %path, error = %other, "a store object could not be checked");
                self.count_read("error");
            }
        }
    }

    fn invalid(&self, path: &ObjectPath, why: &str) {
        tracing::warn!(object = %path, reason = %why, "SECURITY: an object in the shared store failed verification; fetching from upstream instead");
        self.count_read("invalid");
    }

    /// Queues a verified artifact for the store; never waits. Dropped (counted) when the queue
    /// is full.
    pub fn write(&self, path: ObjectPath, payload: Payload) {
        let (bytes, files) = payload.held();
        let over_bytes = self.queued_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes
            > QUEUE_BYTES_LIMIT
            && bytes > 0;
        let over_files = self.queued_files.fetch_add(files, Ordering::Relaxed) + files
            > QUEUE_FILES_LIMIT
            && files > 0;
        let queued =
            !over_bytes && !over_files && self.queue.try_send(Write { path, payload }).is_ok();
        if !queued {
            self.release(bytes, files);
            self.count_write("dropped");
            return;
        }
        let depth = self.counts.depth.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.queue_depth.set(depth as i64);
    }

    /// What a write no longer holds once it is done (or dropped).
    fn release(&self, bytes: u64, files: u64) {
        self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.queued_files.fetch_sub(files, Ordering::Relaxed);
    }

    /// `/status`'s `store` section.
    pub fn status(&self) -> StoreStatus {
        let h = self.health.snapshot();
        let c = &self.counts;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStatus {
            url: self.url.clone(),
            healthy: h.breaker != modfleet_contract::status::BreakerState::Open,
            breaker: h.breaker,
            consecutive_failures: h.consecutive_failures,
            reads: StoreReads {
                hit: n(&c.hit),
                miss: n(&c.miss),
                invalid: n(&c.invalid),
                error: n(&c.read_error),
            },
            writes: StoreWrites {
                ok: n(&c.write_ok),
                error: n(&c.write_error),
                dropped: n(&c.dropped),
            },
            queue_depth: n(&c.depth),
            last_error: h.last_error,
        }
    }

    fn failed(&self, message: &str, latency: Option<Duration>) {
        tracing::warn!(store = %self.url, error = %message, "object store call failed: using the disk cache and upstreams");
        self.health
            .record(Outcome::Failure, latency, Some(message), Instant::now());
        self.metrics
            .breaker_state
            .set(breaker_gauge(self.health.breaker()));
    }

    fn count_read(&self, result: &'static str) {
        let c = &self.counts;
        match result {
            "hit" => &c.hit,
            "miss" => &c.miss,
            "invalid" => &c.invalid,
            _ => &c.read_error,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .reads
            .get_or_create(&StoreResultLabel { result })
            .inc();
        self.metrics
            .breaker_state
            .set(breaker_gauge(self.health.breaker()));
    }

    fn count_write(&self, result: &'static str) {
        let c = &self.counts;
        match result {
            "ok" => &c.write_ok,
            "dropped" => &c.dropped,
            _ => &c.write_error,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .writes
            .get_or_create(&StoreResultLabel { result })
            .inc();
    }

    /// One queued write, within the timeout per call.
    async fn put(&self, w: Write) {
        let permit = self.health.permit(Instant::now());
        if permit == Permit::Refused {
            self.count_write("skipped");
            return;
        }
        let _trial = (permit == Permit::Trial).then(|| TrialGuard(&self.health));
        let started = Instant::now();
        let result = match w.payload {
            Payload::Bytes(bytes) => self.put_bytes(&w.path, bytes).await,
            Payload::File(file) => self.put_file(&w.path, file).await,
        };
        match result {
            Ok(()) => {
                self.health.record(
                    Outcome::Success,
                    Some(started.elapsed()),
                    None,
                    Instant::now(),
                );
                self.metrics
                    .breaker_state
                    .set(breaker_gauge(self.health.breaker()));
                self.count_write("ok");
            }
            Err(e) => {
                self.failed(&format!("write {}: {e}", w.path), None);
                self.count_write("error");
            }
        }
    }

    async fn put_bytes(&self, path: &ObjectPath, bytes: Bytes) -> Result<(), String> {
        self.timed(self.inner.put(path, PutPayload::from(bytes)))
            .await
            .map(|_| ())
    }

    /// A file: one PUT when small, else a multipart upload read part by part (the file is
    /// the verified one the disk cache holds or held; an eviction does not disturb it).
    async fn put_file(&self, path: &ObjectPath, file: ServedFile) -> Result<(), String> {
        if file.len <= PART_BYTES as u64 {
            let bytes = read_part(&file, 0, file.len as usize).await?;
            return self.put_bytes(path, bytes).await;
        }
        let upload = self.timed(self.inner.put_multipart(path)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut offset = 0u64;
        while offset < file.len {
            let n = (file.len - offset).min(PART_BYTES as u64) as usize;
            let part = match read_part(&file, offset, n).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = self.timed(writer.abort()).await;
                    return Err(e);
                }
            };
            if let Err(e) = self.timed(writer.wait_for_capacity(PARTS_IN_FLIGHT)).await {
                let _ = self.timed(writer.abort()).await;
                return Err(e);
            }
            writer.put(part);
            offset += n as u64;
        }
        self.timed(writer.finish()).await.map(|_| ())
    }

    /// A store call under the timeout.
    async fn timed<T>(
        &self,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }
}

/// Releases a half-open trial that ended without a verdict (its call was cancelled), so the
/// breaker never waits for a trial that will not report. Harmless after a verdict.
struct TrialGuard<'a>(&'a Health);

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        self.0.release_trial();
    }
}

/// `<prefix>/v1/<cache path>`; the library percent-encodes characters S3 advises against.
fn object_path(prefix: &str, key: &CacheKey) -> ObjectPath {
    let full = if prefix.is_empty() {
        format!("v1/{key}")
    } else {
        format!("{prefix}/v1/{key}")
    };
    ObjectPath::from(full)
}

async fn read_part(file: &ServedFile, offset: u64, len: usize) -> Result<Bytes, String> {
    let file = file.file.clone();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| format!("cannot read the cached file: {e}"))?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The object's body, failing when it ends before or runs past the size its metadata gave.
fn exact_length(
    inner: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    size: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let fail = |message: String| std::io::Error::other(message);
    futures::stream::unfold(
        (inner, 0u64, false),
        move |(mut inner, seen, done)| async move {
            if done {
                return None;
            }
            match inner.next().await {
                Some(Ok(chunk)) => {
                    let seen = seen + chunk.len() as u64;
                    if seen > size {
                        let e = fail(format!("the object is longer than its {size} bytes"));
                        return Some((Err(e), (inner, seen, true)));
                    }
                    Some((Ok(chunk), (inner, seen, false)))
                }
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), (inner, seen, true))),
                None if seen == size => None,
                None => {
                    let e = fail(format!("the object ended after {seen} of its {size} bytes"));
                    Some((Err(e), (inner, seen, true)))
                }
            }
        },
    )
}

/// Runs queued writes, [`WRITERS`] at once, until the store is dropped.
async fn write_loop(store: std::sync::Weak<Store>, rx: mpsc::Receiver<Write>) {
    tokio_stream_from(rx)
        .for_each_concurrent(WRITERS, |w| {
            let store = store.clone();
            async move {
                let Some(store) = store.upgrade() else { return };
                let depth = store.counts.depth.fetch_sub(1, Ordering::Relaxed) - 1;
                store.metrics.queue_depth.set(depth as i64);
                let (bytes, files) = w.payload.held();
                store.put(w).await;
                store.release(bytes, files);
            }
        })
        .await;
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests;
