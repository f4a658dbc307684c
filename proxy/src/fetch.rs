//! From a protocol request to the bytes that answer it: cache lookup, one coalesced upstream
//! fetch per key on a miss, verification, and the commit to the cache.
//!
//! Two kinds of answers:
//! - immutable artifacts (`.info`/`.mod`/`.zip` of canonical versions, full sumdb tiles): served
//!   from the cache forever once stored; zips stream to disk, never whole into memory;
//! - mutable answers (list, @latest, sumdb latest/lookups/partial tiles): small, kept for
//!   `--list-ttl`, and served stale (with an `Age`) when every upstream fails.
//!
//! `.info` queries (`master.info`, a commit hash) are resolved upstream every time.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use tracing::Instrument;

use crate::cache::{self, Cache, CacheError, CachedFile, verify};
use crate::coalesce::{Coalescer, Role};
use crate::config::Resilience;
use crate::metrics::Metrics;
use crate::protocol::{self, ModulePath, Request, SumdbPath, Version, VersionQuery};
use crate::upstream::{AttemptError, PoolError, Target, UpstreamPool, UpstreamResponse};

/// Largest list, @latest, query .info or sumdb answer accepted from upstream.
const MAX_SMALL_BYTES: u64 = 8 << 20;
/// Cached files up to this size are served from memory, larger ones streamed from disk.
const SMALL_FILE_BYTES: u64 = 256 << 10;
/// Bytes gathered before one blocking write to the cache file.
const WRITE_BATCH: usize = 1 << 20;

/// How the cache took part in an answer (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Served from the cache.
    Hit,
    /// Fetched from upstream by this request.
    Miss,
    /// Fetched from upstream by another request this one waited for.
    Coalesced,
    /// Served from upstream without caching (disk full, cache I/O error).
    Bypass,
    /// Served from the cache past its TTL: while it is refreshed in the background, or
    /// because every upstream failed.
    Stale,
    /// A "not found" remembered for --negative-ttl.
    Negative,
    /// Not cacheable (queries).
    None,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Coalesced => "coalesced",
            CacheResult::Bypass => "bypass",
            CacheResult::Stale => "stale",
            CacheResult::Negative => "negative",
            CacheResult::None => "none",
        }
    }

    fn fetched(role: Role) -> Self {
        match role {
            Role::Leader => CacheResult::Miss,
            Role::Waiter => CacheResult::Coalesced,
        }
    }
}

/// The body of an answer.
pub enum Body {
    File(CachedFile),
    Bytes {
        bytes: Bytes,
        etag: String,
    },
    /// Unverified pass-through, used only when the cache cannot take the file.
    Upstream(UpstreamResponse),
}

pub struct Served {
    pub body: Body,
    pub cache: CacheResult,
    /// Set when a stale answer is served.
    pub age: Option<Duration>,
}

/// What a coalesced fetch leaves for its waiters.
#[derive(Debug, Clone)]
enum Stored {
    /// The artifact is in the cache now.
    Committed,
    /// Small answer, kept in memory (mutable answers, or artifacts the cache could not take).
    Small(Bytes),
    /// A zip the cache could not take: each waiter streams it from upstream itself.
    Uncacheable,
}

type Shared = Result<Stored, PoolError>;

/// A request that could not be answered, and how the cache took part.
#[derive(Debug)]
pub struct FetchError {
    pub error: PoolError,
    pub cache: CacheResult,
}

/// Remembered "not found" answers, so a storm of lookups for a missing module stays here.
struct NegativeCache {
    ttl: Duration,
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, String)>>,
}

/// Most remembered answers; past it, expired ones are dropped (or all, if none expired).
const NEGATIVE_MAX: usize = 100_000;

impl NegativeCache {
    fn get(&self, key: &str) -> Option<String> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut map = self.entries.lock().expect("negative cache poisoned");
        match map.get(key) {
            Some((expires, message)) if *expires > std::time::Instant::now() => {
                Some(message.clone())
            }
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, key: String, message: String) {
        if self.ttl.is_zero() {
            return;
        }
        let now = std::time::Instant::now();
        let mut map = self.entries.lock().expect("negative cache poisoned");
        if map.len() >= NEGATIVE_MAX {
            map.retain(|_, (expires, _)| *expires > now);
            if map.len() >= NEGATIVE_MAX {
                map.clear();
            }
        }
        map.insert(key, (now + self.ttl, message));
    }

    fn len(&self) -> usize {
        self.entries.lock().expect("negative cache poisoned").len()
    }
}

/// Answers protocol requests from the cache and the upstream pool.
pub struct Fetcher {
    cache: Arc<Cache>,
    pool: Arc<UpstreamPool>,
    metrics: Arc<Metrics>,
    list_ttl: Duration,
    stale_while_revalidate: Duration,
    negative: NegativeCache,
    inflight: Coalescer<Shared>,
}

fn panicked(msg: String) -> Shared {
    Err(PoolError::Local(format!("fetch task failed: {msg}")))
}

impl Fetcher {
    pub fn new(
        cache: Arc<Cache>,
        pool: Arc<UpstreamPool>,
        metrics: Arc<Metrics>,
        list_ttl: Duration,
        resilience: &Resilience,
    ) -> Arc<Fetcher> {
        Arc::new(Fetcher {
            cache,
            pool,
            metrics,
            list_ttl,
            stale_while_revalidate: resilience.stale_while_revalidate,
            negative: NegativeCache {
                ttl: resilience.negative_ttl,
                entries: Default::default(),
            },
            inflight: Coalescer::default(),
        })
    }

    pub fn list_ttl(&self) -> Duration {
        self.list_ttl
    }

    /// Answers a request (anything but `/sumdb/<name>/supported`, which the server answers).
    pub async fn get(self: &Arc<Self>, req: &Request) -> Result<Served, FetchError> {
        let rel = PathBuf::from(req.escaped_path());
        let key = rel.to_string_lossy().into_owned();
        if let Some(message) = self.negative.get(&key) {
            return Err(FetchError {
                error: PoolError::NotFound { message },
                cache: CacheResult::Negative,
            });
        }
        let result = match req {
            Request::Info {
                version: VersionQuery::Query(_),
                ..
            } => self.query(req, rel).await,
            _ if req.is_immutable() => self.immutable(req, rel).await,
            _ => self.mutable(req, rel).await,
        };
        result.map_err(|error| {
            if let PoolError::NotFound { message } = &error {
                self.negative.insert(key, message.clone());
                self.metrics
                    .negative_cache_entries
                    .set(self.negative.len() as i64);
            }
            FetchError {
                error,
                cache: CacheResult::None,
            }
        })
    }

    async fn immutable(self: &Arc<Self>, req: &Request, rel: PathBuf) -> Result<Served, PoolError> {
        if let Some(body) = self.cached_body(&rel).await {
            return Ok(Served {
                body,
                cache: CacheResult::Hit,
                age: None,
            });
        }
        let key = rel.to_string_lossy().into_owned();
        let this = self.clone();
        let owned = req.clone();
        let (result, role) = self.inflight.join(
            &key,
            move || this.fetch_immutable(owned, rel.clone()),
            panicked,
        );
        if role == Role::Waiter {
            self.metrics.coalesced_waiters.inc();
        }
        let result = result.await;
        let rel = PathBuf::from(&key);
        match result? {
            Stored::Committed => match self.cached_body(&rel).await {
                Some(body) => Ok(Served {
                    body,
                    cache: CacheResult::fetched(role),
                    age: None,
                }),
                // Evicted between commit and open: only under extreme cache pressure.
                None => self.pass_through(req).await,
            },
            Stored::Small(bytes) => Ok(Served {
                body: Body::Bytes {
                    etag: cache::etag_of_bytes(&bytes),
                    bytes,
                },
                cache: CacheResult::Bypass,
                age: None,
            }),
            Stored::Uncacheable => self.pass_through(req).await,
        }
    }

    /// Streams an artifact from upstream without caching it.
    async fn pass_through(&self, req: &Request) -> Result<Served, PoolError> {
        let response = self
            .pool
            .fetch(target(req), &upstream_path(req), |r| async move { Ok(r) })
            .await?;
        Ok(Served {
            body: Body::Upstream(response),
            cache: CacheResult::Bypass,
            age: None,
        })
    }

    /// The leader's side of an immutable miss. Runs as its own task. Boxed because a zip fetch
    /// awaits a `.mod` fetch through [`Fetcher::get`]: the explicit `Send` future type ends the
    /// recursion the compiler would otherwise have to see through.
    fn fetch_immutable(self: Arc<Self>, req: Request, rel: PathBuf) -> BoxFuture<'static, Shared> {
        Box::pin(self.fetch_immutable_inner(req, rel))
    }

    async fn fetch_immutable_inner(self: Arc<Self>, req: Request, rel: PathBuf) -> Shared {
        // Another leader may have committed it just before this one started.
        if self.open(&rel).await.is_some() {
            return Ok(Stored::Committed);
        }
        let _inflight = InflightGuard::start(&self.metrics);
        match &req {
            Request::Zip { module, version } => {
                let go_mod = self.go_mod_for(module, version).await?;
                let path = upstream_path(&req);
                let this = &self;
                let rel = &rel;
                let go_mod = &go_mod;
                self.pool
                    .fetch(Target::Modules, &path, |response| async move {
                        this.store_zip(response, rel, module, version, go_mod).await
                    })
                    .await
            }
            _ => {
                let path = upstream_path(&req);
                let req = &req;
                let this = &self;
                let rel = &rel;
                self.pool
                    .fetch(target(req), &path, |response| async move {
                        let bytes = response.bytes_limited(max_bytes(req)).await?;
                        check_immutable(req, &bytes)?;
                        Ok(this.put(rel, bytes).await)
                    })
                    .await
            }
        }
    }

    /// The module's go.mod, from the cache or fetched (and cached) like any `.mod` request.
    async fn go_mod_for(
        self: &Arc<Self>,
        module: &ModulePath,
        version: &Version,
    ) -> Result<Bytes, PoolError> {
        let req = Request::Mod {
            module: module.clone(),
            version: version.clone(),
        };
        let served = self.get(&req).await.map_err(|e| e.error)?;
        match served.body {
            Body::File(file) => tokio::task::spawn_blocking(move || {
                let mut buf = Vec::with_capacity(file.len as usize);
                (&file.file).read_to_end(&mut buf).map(|_| Bytes::from(buf))
            })
            .await
            .map_err(|e| PoolError::Local(e.to_string()))?
            .map_err(|e| PoolError::Local(format!("cannot read cached go.mod: {e}"))),
            Body::Bytes { bytes, .. } => Ok(bytes),
            Body::Upstream(response) => response
                .bytes_limited(verify::MAX_GO_MOD_BYTES)
                .await
                .map_err(|e| PoolError::Unavailable {
                    timeout: matches!(e, AttemptError::Timeout(_)),
                    message: format!("fetching go.mod to verify the zip: {e}"),
                }),
        }
    }

    /// Streams a zip into a cache temp file, verifies it and commits it.
    async fn store_zip(
        &self,
        response: UpstreamResponse,
        rel: &Path,
        module: &ModulePath,
        version: &Version,
        go_mod: &Bytes,
    ) -> Result<Stored, AttemptError> {
        if response
            .content_length()
            .is_some_and(|n| n > verify::MAX_ZIP_BYTES)
        {
            return Err(AttemptError::Invalid(format!(
                "zip is larger than the go command's limit of {} bytes",
                verify::MAX_ZIP_BYTES
            )));
        }
        let mut writer = match self.cache.writer(rel) {
            Ok(w) => Some(w),
            Err(_) => return Ok(Stored::Uncacheable),
        };
        let mut stream = std::pin::pin!(response.into_stream());
        let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
        let mut total: u64 = 0;
        loop {
            let next = stream.next().await;
            let done = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk?;
                total += chunk.len() as u64;
                if total > verify::MAX_ZIP_BYTES {
                    return Err(AttemptError::Invalid(format!(
                        "zip is larger than the go command's limit of {} bytes",
                        verify::MAX_ZIP_BYTES
                    )));
                }
                batch.extend_from_slice(&chunk);
            }
            if batch.len() >= WRITE_BATCH || (done && !batch.is_empty()) {
                let mut w = writer.take().expect("writer present");
                let data = std::mem::take(&mut batch);
                let (w, result) = tokio::task::spawn_blocking(move || {
                    let r = w.write_all(&data);
                    (w, r)
                })
                .await
                .map_err(|e| AttemptError::Local(e.to_string()))?;
                if result.is_err() {
                    // Disk full or broken: drop the temp file; serve without caching.
                    return Ok(Stored::Uncacheable);
                }
                writer = Some(w);
                batch = Vec::with_capacity(WRITE_BATCH);
            }
            if done {
                break;
            }
        }
        tracing::Span::current().record("modfleet.bytes", total as i64);
        let mut w = writer.take().expect("writer present");
        let module = module.clone();
        let version = version.clone();
        let go_mod = go_mod.clone();
        let span = cache_write_span(rel, total);
        let stored = tokio::task::spawn_blocking(move || {
            let tmp = match w.flush_to_disk() {
                Ok(p) => p.to_path_buf(),
                Err(_) => return Ok(Stored::Uncacheable),
            };
            verify::zip(&tmp, &module, &version, Some(&go_mod))
                .map_err(|e| AttemptError::Invalid(format!("invalid module zip: {e}")))?;
            match w.commit() {
                Ok(()) => Ok(Stored::Committed),
                Err(_) => Ok(Stored::Uncacheable),
            }
        })
        .instrument(span.clone())
        .await
        .map_err(|e| AttemptError::Local(e.to_string()))?;
        record_stored(&span, &stored);
        stored
    }

    /// Commits a small answer; when the cache cannot take it, the bytes are served anyway.
    async fn put(&self, rel: &Path, bytes: Bytes) -> Stored {
        let cache = self.cache.clone();
        let rel = rel.to_path_buf();
        let data = bytes.clone();
        let span = cache_write_span(&rel, bytes.len() as u64);
        let stored = match tokio::task::spawn_blocking(move || cache.put(&rel, &data))
            .instrument(span.clone())
            .await
        {
            Ok(Ok(())) => Stored::Committed,
            Ok(Err(CacheError::Full(_) | CacheError::Io { .. })) | Err(_) => Stored::Small(bytes),
        };
        record_stored(&span, &Ok(stored.clone()));
        stored
    }

    /// A cached artifact ready to serve: small files are read in the same blocking call that
    /// opens them (one hop to the blocking pool per request), large ones are streamed.
    async fn cached_body(&self, rel: &Path) -> Option<Body> {
        let cache = self.cache.clone();
        let rel = rel.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let file = cache.open_file(&rel)?;
            if file.len > SMALL_FILE_BYTES {
                return Some(Body::File(file));
            }
            let mut buf = Vec::with_capacity(file.len as usize);
            (&file.file).read_to_end(&mut buf).ok()?;
            Some(Body::Bytes {
                bytes: Bytes::from(buf),
                etag: file.etag,
            })
        })
        .await
        .ok()
        .flatten()
    }

    async fn open(&self, rel: &Path) -> Option<CachedFile> {
        let cache = self.cache.clone();
        let rel = rel.to_path_buf();
        tokio::task::spawn_blocking(move || cache.open_file(&rel))
            .await
            .ok()
            .flatten()
    }

    /// Reads a small cached file whole, with its age.
    async fn read_small(&self, rel: &Path) -> Option<(Bytes, Duration)> {
        let file = self.open(rel).await?;
        tokio::task::spawn_blocking(move || {
            let age = file.age();
            let mut buf = Vec::with_capacity(file.len as usize);
            (&file.file).read_to_end(&mut buf).ok()?;
            Some((Bytes::from(buf), age))
        })
        .await
        .ok()
        .flatten()
    }

    async fn mutable(self: &Arc<Self>, req: &Request, rel: PathBuf) -> Result<Served, PoolError> {
        let cached = self.read_small(&rel).await;
        if let Some((bytes, age)) = &cached
            && *age < self.list_ttl
        {
            return Ok(small(bytes.clone(), CacheResult::Hit, None));
        }
        let key = rel.to_string_lossy().into_owned();
        let this = self.clone();
        let owned = req.clone();
        let (result, role) =
            self.inflight
                .join(&key, move || this.fetch_mutable(owned, rel), panicked);
        // stale-while-revalidate: a recently expired answer is served at once; the fetch just
        // started (or joined) refreshes the cache in the background.
        if let Some((bytes, age)) = &cached
            && *age < self.list_ttl + self.stale_while_revalidate
        {
            return Ok(small(bytes.clone(), CacheResult::Stale, Some(*age)));
        }
        if role == Role::Waiter {
            self.metrics.coalesced_waiters.inc();
        }
        match result.await {
            Ok(Stored::Small(bytes)) => Ok(small(bytes, CacheResult::fetched(role), None)),
            Ok(_) => unreachable!("mutable fetches keep their bytes"),
            // stale-if-error: an outage is answered with the last good answer, marked by Age.
            Err(PoolError::Unavailable { .. }) if cached.is_some() => {
                let (bytes, age) = cached.expect("checked");
                tracing::info!(path = %key, age_secs = age.as_secs(), "every upstream failed: serving the cached answer");
                Ok(small(bytes, CacheResult::Stale, Some(age)))
            }
            Err(e) => Err(e),
        }
    }

    /// The leader's side of a list/@latest/sumdb refresh. Runs as its own task.
    fn fetch_mutable(self: Arc<Self>, req: Request, rel: PathBuf) -> BoxFuture<'static, Shared> {
        Box::pin(async move {
            let path = upstream_path(&req);
            let req = &req;
            let bytes = self
                .pool
                .fetch(target(req), &path, |response| async move {
                    let bytes = response.bytes_limited(MAX_SMALL_BYTES).await?;
                    check_mutable(req, bytes)
                })
                .await?;
            self.put(&rel, bytes.clone()).await;
            Ok(Stored::Small(bytes))
        })
    }

    async fn query(self: &Arc<Self>, req: &Request, rel: PathBuf) -> Result<Served, PoolError> {
        let key = format!("query:{}", rel.display());
        let this = self.clone();
        let owned = req.clone();
        let (result, role) = self.inflight.join(
            &key,
            move || async move {
                let path = upstream_path(&owned);
                let bytes = this
                    .pool
                    .fetch(Target::Modules, &path, |response| async move {
                        let bytes = response.bytes_limited(verify::MAX_INFO_BYTES).await?;
                        check_resolved_info(&bytes)?;
                        Ok(bytes)
                    })
                    .await?;
                Ok(Stored::Small(bytes))
            },
            panicked,
        );
        if role == Role::Waiter {
            self.metrics.coalesced_waiters.inc();
        }
        let result = result.await;
        match result? {
            Stored::Small(bytes) => Ok(small(bytes, CacheResult::None, None)),
            _ => unreachable!("queries keep their bytes"),
        }
    }
}

/// The span of storing one file (verification included for zips).
fn cache_write_span(rel: &Path, bytes: u64) -> tracing::Span {
    tracing::debug_span!(
        "cache write",
        modfleet.cache.path = %rel.display(),
        modfleet.bytes = bytes as i64,
        modfleet.outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

fn record_stored(span: &tracing::Span, stored: &Result<Stored, AttemptError>) {
    let outcome = match stored {
        Ok(Stored::Committed) => "committed",
        // The disk is full or failing: served, not kept.
        Ok(Stored::Small(_) | Stored::Uncacheable) => "uncached",
        Err(_) => "invalid",
    };
    span.record("modfleet.outcome", outcome);
    if outcome != "committed" {
        span.record("otel.status_code", "ERROR");
    }
}

fn small(bytes: Bytes, cache: CacheResult, age: Option<Duration>) -> Served {
    Served {
        body: Body::Bytes {
            etag: cache::etag_of_bytes(&bytes),
            bytes,
        },
        cache,
        age,
    }
}

fn target(req: &Request) -> Target<'_> {
    match req {
        Request::Sumdb { name, .. } => Target::Sumdb(name),
        _ => Target::Modules,
    }
}

/// The path asked of upstreams: for sumdb requests, relative to `/sumdb/<name>/`.
fn upstream_path(req: &Request) -> String {
    match req {
        Request::Sumdb { path, .. } => path.as_upstream_path(),
        _ => req.escaped_path(),
    }
}

fn max_bytes(req: &Request) -> u64 {
    match req {
        Request::Info { .. } => verify::MAX_INFO_BYTES,
        Request::Mod { .. } => verify::MAX_GO_MOD_BYTES,
        _ => MAX_SMALL_BYTES,
    }
}

/// Verification of a small immutable answer (`.info`, `.mod`, full tile).
fn check_immutable(req: &Request, bytes: &[u8]) -> Result<(), AttemptError> {
    let result = match req {
        Request::Info {
            version: VersionQuery::Canonical(v),
            ..
        } => verify::info(bytes, v),
        Request::Mod { .. } => verify::go_mod(bytes),
        Request::Sumdb {
            path: SumdbPath::Tile { .. },
            ..
        } if bytes.is_empty() => Err(verify::VerifyError("empty tile".into())),
        _ => Ok(()),
    };
    result.map_err(|e| AttemptError::Invalid(e.to_string()))
}

/// Normalises and checks a mutable answer: lists lose pseudo-versions and junk lines; @latest
/// must name a canonical version.
fn check_mutable(req: &Request, bytes: Bytes) -> Result<Bytes, AttemptError> {
    match req {
        Request::List { .. } => {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| AttemptError::Invalid("list is not UTF-8".into()))?;
            Ok(Bytes::from(protocol::filter_list(text)))
        }
        Request::Latest { .. } => {
            check_resolved_info(&bytes)?;
            Ok(bytes)
        }
        _ => Ok(bytes),
    }
}

/// An @latest or query `.info` answer: JSON naming a canonical version.
fn check_resolved_info(bytes: &[u8]) -> Result<(), AttemptError> {
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(rename = "Version")]
        version: String,
    }
    let info: Info = serde_json::from_slice(bytes).map_err(|e| {
        AttemptError::Invalid(format!("answer is not a JSON object with a Version: {e}"))
    })?;
    if !protocol::is_canonical_semver(&info.version) {
        return Err(AttemptError::Invalid(format!(
            "answer names {:?}, which is not a canonical version",
            info.version
        )));
    }
    Ok(())
}

/// Counts a download in the in-flight gauge for as long as it lives.
struct InflightGuard(Arc<Metrics>);

impl InflightGuard {
    fn start(metrics: &Arc<Metrics>) -> InflightGuard {
        metrics.inflight_fetches.inc();
        InflightGuard(metrics.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight_fetches.dec();
    }
}
