//! From a protocol request to the bytes that answer it. One verb per kind of answer:
//!
//! - [`Fetcher::artifact`]: `.info`, `.mod` and full checksum-database tiles of canonical
//!   versions: small, immutable, cached for ever once verified;
//! - [`Fetcher::zip`]: module zips: streamed to disk (never whole into memory), verified as the
//!   go command verifies them (and against the module's `.mod`), cached for ever;
//! - [`Fetcher::refreshable`]: lists, `@latest`, checksum-database `latest`, lookups and
//!   partial tiles: small, kept for `--list-ttl`, served stale when every upstream fails;
//! - [`Fetcher::query`]: `.info` queries (`master`, a commit hash): resolved upstream each time.
//!
//! A `.mod` fetched for a client starts the prefetch of the `.mod` files it requires
//! ([`prefetch`]), in the background and within bounds.
//!
//! A miss of an immutable artifact reads the shared object store first, when one is configured
//! ([`crate::store`]): its answer goes through the same `accept` check as an upstream's, and
//! what an upstream sent and passed is queued for the store once it is on disk.
//!
//! Every miss is one upstream fetch per key, shared by all requests waiting for it
//! ([`Fetcher::coalesced`]), and its answer is verified and bounded whether or not the cache
//! can keep it: a cache that cannot be written only means the verified bytes are served from a
//! loose file instead of the cache ([`crate::cache::CacheWriter`]).

mod checksums;
mod negative;
mod peer;
mod prefetch;
mod private;
mod tail;
mod zip;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tracing::Instrument;

use crate::cache::nowait;
use crate::cache::{self, Cache, CacheKey, CachedFile, ServedFile, WouldBlock};
use crate::coalesce::{Coalescer, Publish, Role};
use crate::config::Resilience;
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::private_modules::PrivateModules;
use crate::protocol::artifact;
use crate::protocol::{ModulePath, Request, SumdbPath, Version, VersionQuery};
use crate::store::{Payload, Store};
use crate::upstream::{AttemptError, PoolError, Target, UpstreamPool, UpstreamResponse};
pub use checksums::{Checksums, FetcherSource};
use negative::NegativeCache;
pub use prefetch::PrefetchPolicy;
use prefetch::{Origin, Prefetcher};

/// Largest list, @latest or sumdb answer accepted from upstream.
const MAX_SMALL_BYTES: u64 = 8 << 20;
/// Cached files up to this size are served from memory, larger ones streamed from disk.
const SMALL_FILE_BYTES: u64 = 256 << 10;

/// How the cache took part in an answer (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Served from the cache.
    Hit,
    /// Fetched from upstream by this request.
    Miss,
    /// Fetched from upstream by another request this one waited for.
    Coalesced,
    /// Fetched and verified, but not kept (disk full, cache I/O error).
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

    /// How a fetched answer took part: by this request or another, kept or not.
    fn fetched(role: Role, cached: bool) -> Self {
        match (role, cached) {
            (_, false) => CacheResult::Bypass,
            (Role::Leader, true) => CacheResult::Miss,
            (Role::Waiter, true) => CacheResult::Coalesced,
        }
    }
}

/// The body of an answer.
pub enum Body {
    /// A whole, verified file (cached, or loose when the cache could not keep it), read with
    /// positional reads so any number of requests can stream it at once.
    File(ServedFile),
    Bytes {
        bytes: Bytes,
        etag: String,
    },
}

pub struct Served {
    pub body: Body,
    pub cache: CacheResult,
    /// Set when a stale answer is served.
    pub age: Option<Duration>,
}

/// What a fetch leaves for the requests that waited for it.
#[derive(Debug, Clone)]
enum Fetched {
    File(ServedFile),
    Bytes { bytes: Bytes, cached: bool },
}

impl Fetched {
    fn cached(&self) -> bool {
        match self {
            Fetched::File(f) => f.cached,
            Fetched::Bytes { cached, .. } => *cached,
        }
    }

    fn into_body(self) -> Body {
        match self {
            Fetched::File(f) => Body::File(f),
            Fetched::Bytes { bytes, .. } => Body::Bytes {
                etag: cache::etag_of_bytes(&bytes),
                bytes,
            },
        }
    }

    /// A hit found by a leader (committed by another leader just before it started).
    fn from_hit(body: Body) -> Fetched {
        match body {
            Body::File(f) => Fetched::File(f),
            Body::Bytes { bytes, .. } => Fetched::Bytes {
                bytes,
                cached: true,
            },
        }
    }
}

type Shared = Result<Fetched, PoolError>;

/// A request that could not be answered, and how the cache took part.
#[derive(Debug)]
pub struct FetchError {
    pub error: PoolError,
    pub cache: CacheResult,
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
    /// Set once at start when `--verify-sumdb` is on (the checker reads through this fetcher).
    checksums: OnceLock<Checksums>,
    /// Set once at start when `--prefetch` is on.
    prefetcher: OnceLock<Arc<Prefetcher>>,
    /// Set once at start when `privateModules` are configured: their requests go to Git.
    private: OnceLock<Arc<PrivateModules>>,
    /// Set once at start when `objectStore` is configured.
    store: OnceLock<Arc<Store>>,
    /// Set once at start when `peerFill` is configured.
    peers: OnceLock<Arc<Peers>>,
    /// The zips being written, for peers that stream them meanwhile.
    tails: tail::Tails,
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
            negative: NegativeCache::new(resilience.negative_ttl),
            inflight: Coalescer::default(),
            checksums: OnceLock::new(),
            prefetcher: OnceLock::new(),
            private: OnceLock::new(),
            store: OnceLock::new(),
            peers: OnceLock::new(),
            tails: tail::Tails::default(),
        })
    }

    /// Puts the shared object store under the disk cache (see [`crate::store`]).
    pub fn use_store(&self, store: Arc<Store>) {
        if self.store.set(store).is_err() {
            panic!("object store set up twice");
        }
    }

    /// `/status`'s `store` section; None without a store.
    pub fn store_status(&self) -> Option<modfleet_contract::status::StoreStatus> {
        self.store.get().map(|s| s.status())
    }

    /// An immutable artifact from the shared store, checked by `accept` (the check an
    /// upstream's answer gets); None when there is no store, no such object, the store fails,
    /// or the object fails the check (each counted).
    async fn read_store<T, F, Fut>(
        &self,
        req: &Request,
        key: &CacheKey,
        max: u64,
        accept: &F,
    ) -> Option<T>
    where
        F: Fn(UpstreamResponse) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let store = self.store.get()?;
        let path = store.path_of(req, key)?;
        let span = tracing::debug_span!(
            "store read",
            modfleet.store.object = %path,
            modfleet.outcome = tracing::field::Empty,
        );
        async {
            let Some(response) = store.read(&path, max).await else {
                span.record("modfleet.outcome", "missing");
                return None;
            };
            match accept(response).await {
                Ok(answer) => {
                    store.verified();
                    span.record("modfleet.outcome", "hit");
                    Some(answer)
                }
                Err(e) => {
                    store.rejected(&path, &e);
                    span.record("modfleet.outcome", "rejected");
                    None
                }
            }
        }
        .instrument(span.clone())
        .await
    }

    /// Queues what an upstream sent (and was verified) for the shared store.
    fn write_store(&self, req: &Request, key: &CacheKey, payload: Payload) {
        if let Some(store) = self.store.get()
            && let Some(path) = store.path_of(req, key)
        {
            store.write(path, payload);
        }
    }

    /// Turns on the checksum database check of every downloaded `.mod` and zip.
    pub fn verify_checksums(&self, checksums: Checksums) {
        if self.checksums.set(checksums).is_err() {
            panic!("checksum verification set up twice");
        }
    }

    /// Turns on dependency prefetch (see [`prefetch`]); needs a runtime.
    pub fn prefetch(self: &Arc<Self>, policy: PrefetchPolicy) {
        if self
            .prefetcher
            .set(Prefetcher::start(self, policy))
            .is_err()
        {
            panic!("prefetch set up twice");
        }
    }

    pub fn list_ttl(&self) -> Duration {
        self.list_ttl
    }

    /// Answers a request (anything but `/sumdb/<name>/supported`, which the server answers).
    pub async fn get(self: &Arc<Self>, req: &Request) -> Result<Served, FetchError> {
        let key = CacheKey::of(req);
        if let Some(message) = self.negative.get(key.as_str()) {
            return Err(FetchError {
                error: PoolError::NotFound { message },
                cache: CacheResult::Negative,
            });
        }
        let result = match req {
            Request::Info {
                version: VersionQuery::Query(_),
                ..
            } => self.query(req, &key).await,
            Request::Zip { module, version } => {
                self.zip(module, version, &key, Origin::Client).await
            }
            _ if req.is_immutable() => self.artifact(req, &key, Origin::Client).await,
            _ => self.refreshable(req, &key).await,
        };
        let private = req.module().is_some_and(|m| self.private_for(m).is_some());
        result.map_err(|error| {
            // A private module's 404 is not remembered: /admin/refresh must show a new tag
            // at once, and the repository's own refresh interval bounds the cost.
            if let PoolError::NotFound { message } = &error
                && !private
            {
                self.remember_not_found(&key, message);
            }
            FetchError {
                error,
                cache: CacheResult::None,
            }
        })
    }

    /// Remembers a "not found" for `--negative-ttl`.
    fn remember_not_found(&self, key: &CacheKey, message: &str) {
        self.negative.insert(key.to_string(), message.to_string());
        self.metrics
            .negative_cache_entries
            .set(self.negative.len() as i64);
    }

    /// `.info`, `.mod` and full tiles: from the cache, or fetched once, verified and kept.
    async fn artifact(
        self: &Arc<Self>,
        req: &Request,
        key: &CacheKey,
        origin: Origin,
    ) -> Result<Served, PoolError> {
        if let Some(body) = self.hit(key).await {
            self.after_small_answer(req, key, CacheResult::Hit, &body, origin);
            return Ok(served(body, CacheResult::Hit, None));
        }
        let (this, owned, owned_key) = (self.clone(), req.clone(), key.clone());
        let (fetched, role) = self.coalesced(key.as_str(), move |publish| {
            this.download_small(owned, owned_key, origin, publish)
                .boxed()
        });
        let fetched = fetched.await?;
        let cache = CacheResult::fetched(role, fetched.cached());
        let body = fetched.into_body();
        self.after_small_answer(req, key, cache, &body, origin);
        Ok(served(body, cache, None))
    }

    /// Lists, @latest and the checksum database's changing answers: fresh from the cache, else
    /// fetched (one fetch per key); a recently expired answer is served at once while it is
    /// refreshed (stale-while-revalidate), and the last good one when every upstream fails.
    async fn refreshable(
        self: &Arc<Self>,
        req: &Request,
        key: &CacheKey,
    ) -> Result<Served, PoolError> {
        let cached = self.read_small(key).await;
        if let Some((bytes, age)) = &cached
            && *age < self.list_ttl
        {
            return Ok(small(bytes.clone(), CacheResult::Hit, None));
        }
        let (this, owned, owned_key) = (self.clone(), req.clone(), key.clone());
        let (fetched, role) = self.coalesced(key.as_str(), move |publish| {
            this.download_refreshable(owned, owned_key, publish).boxed()
        });
        if let Some((bytes, age)) = &cached
            && *age < self.list_ttl + self.stale_while_revalidate
        {
            // The fetch just started (or joined) refreshes the cache in the background.
            return Ok(small(bytes.clone(), CacheResult::Stale, Some(*age)));
        }
        match fetched.await {
            Ok(fetched) => {
                let cache = CacheResult::fetched(role, fetched.cached());
                Ok(served(fetched.into_body(), cache, None))
            }
            // stale-if-error: an outage is answered with the last good answer, marked by Age.
            Err(PoolError::Unavailable { .. }) if cached.is_some() => {
                let (bytes, age) = cached.expect("checked");
                tracing::info!(path = %key, age_secs = age.as_secs(), "every upstream failed: serving the cached answer");
                Ok(small(bytes, CacheResult::Stale, Some(age)))
            }
            Err(e) => Err(e),
        }
    }

    /// `.info` queries: resolved upstream every time (one fetch per query at a time).
    async fn query(self: &Arc<Self>, req: &Request, key: &CacheKey) -> Result<Served, PoolError> {
        let this = self.clone();
        let path = upstream_path(req);
        let private = self.private_request(req);
        let (fetched, _) = self.coalesced(&format!("query:{key}"), move |_| {
            async move {
                if let Some((git, module, rev)) = private {
                    let bytes = git.info(&module, &rev).await?;
                    artifact::resolved_info(&bytes).map_err(private::refused)?;
                    return Ok(Fetched::Bytes {
                        bytes,
                        cached: false,
                    });
                }
                let bytes = this
                    .pool
                    .fetch(Target::Modules, &path, |response| async move {
                        let bytes = response.bytes_limited(artifact::MAX_INFO_BYTES).await?;
                        artifact::resolved_info(&bytes).map_err(invalid)?;
                        Ok(bytes)
                    })
                    .await?;
                Ok(Fetched::Bytes {
                    bytes,
                    cached: false,
                })
            }
            .boxed()
        });
        let body = fetched.await?.into_body();
        Ok(served(body, CacheResult::None, None))
    }

    /// One fetch per key: the first caller starts `fetch` as its own task (a client that hangs
    /// up does not cancel it for the others); later callers wait for the same result.
    fn coalesced(
        &self,
        key: &str,
        fetch: impl FnOnce(Publish<Shared>) -> BoxFuture<'static, Shared>,
    ) -> (impl Future<Output = Shared> + Send + 'static, Role) {
        let (result, role) = self.inflight.join(key, fetch, |panic| {
            Err(PoolError::Local(format!("fetch task failed: {panic}")))
        });
        if role == Role::Waiter {
            self.metrics.coalesced_waiters.inc();
        }
        (result, role)
    }

    /// The leader's side of a `.info`/`.mod`/tile miss.
    async fn download_small(
        self: Arc<Self>,
        req: Request,
        key: CacheKey,
        origin: Origin,
        publish: Publish<Shared>,
    ) -> Shared {
        // Another leader may have committed it just before this one started.
        if let Some(body) = self.hit(&key).await {
            return Ok(Fetched::from_hit(body));
        }
        let _inflight = InflightGuard::start(&self.metrics);
        if let Some(git) = self.private_for_req(&req) {
            let bytes = private::small(&git, &req).await?;
            check_immutable(&req, &bytes).map_err(private::refused_attempt)?;
            let cached = self.put_publishing(&key, &bytes, publish).await;
            return Ok(Fetched::Bytes { bytes, cached });
        }
        let path = upstream_path(&req);
        let (req, this) = (&req, &self);
        let accept = |response: UpstreamResponse| async move {
            let bytes = response.bytes_limited(max_bytes(req)).await?;
            check_immutable(req, &bytes)?;
            if let Request::Mod { module, version } = req {
                this.check_go_mod_sum(module, version, &bytes).await?;
            }
            Ok(bytes)
        };
        let from_tier = match self.read_peer(req, &key, origin, &accept).await? {
            Some(bytes) => Some(bytes),
            None => self.read_store(req, &key, max_bytes(req), &accept).await,
        };
        if let Some(bytes) = from_tier {
            let cached = self.put_publishing(&key, &bytes, publish).await;
            return Ok(Fetched::Bytes { bytes, cached });
        }
        let bytes = self.pool.fetch(target(req), &path, &accept).await?;
        let cached = self.put_publishing(&key, &bytes, publish).await;
        self.write_store(req, &key, Payload::Bytes(bytes.clone()));
        Ok(Fetched::Bytes { bytes, cached })
    }

    /// A small immutable artifact from the upstreams only, past the disk, the owner and the
    /// store, replacing the copies kept there: for a kept copy that turned out bad (a full
    /// checksum-database tile that does not match the signed tree).
    pub(super) async fn refetch_from_upstreams(
        &self,
        req: &Request,
        max: u64,
    ) -> Result<Bytes, PoolError> {
        let key = CacheKey::of(req);
        let bytes = self
            .pool
            .fetch(target(req), &upstream_path(req), |response| async move {
                let bytes = response.bytes_limited(max).await?;
                check_immutable(req, &bytes)?;
                Ok(bytes)
            })
            .await?;
        self.put(&key, &bytes).await;
        self.write_store(req, &key, Payload::Bytes(bytes.clone()));
        Ok(bytes)
    }

    async fn check_go_mod_sum(
        &self,
        module: &ModulePath,
        version: &Version,
        go_mod: &[u8],
    ) -> Result<(), AttemptError> {
        match self.checksums.get() {
            Some(c) => c.check_go_mod(module, version, go_mod).await,
            None => Ok(()),
        }
    }

    /// The leader's side of a list/@latest/sumdb refresh.
    async fn download_refreshable(
        self: Arc<Self>,
        req: Request,
        key: CacheKey,
        publish: Publish<Shared>,
    ) -> Shared {
        if let Some(git) = self.private_for_req(&req) {
            let bytes = private::small(&git, &req).await?;
            let bytes = check_refreshable(&req, bytes).map_err(private::refused_attempt)?;
            let cached = self.put_publishing(&key, &bytes, publish).await;
            return Ok(Fetched::Bytes { bytes, cached });
        }
        let path = upstream_path(&req);
        let req = &req;
        let bytes = self
            .pool
            .fetch(target(req), &path, |response| async move {
                let bytes = response.bytes_limited(MAX_SMALL_BYTES).await?;
                check_refreshable(req, bytes)
            })
            .await?;
        let cached = self.put_publishing(&key, &bytes, publish).await;
        Ok(Fetched::Bytes { bytes, cached })
    }

    /// Keeps a small answer; whether it could be kept (the bytes are served either way).
    async fn put(&self, key: &CacheKey, bytes: &Bytes) -> bool {
        self.put_announced(key, bytes, |_| {}).await
    }

    /// [`Fetcher::put`] that answers the fetch's waiters with `bytes` once they are written,
    /// before the commit waits for the disk.
    async fn put_publishing(
        &self,
        key: &CacheKey,
        bytes: &Bytes,
        publish: Publish<Shared>,
    ) -> bool {
        let answer = bytes.clone();
        self.put_announced(key, bytes, move |cached| {
            publish.send(Ok(Fetched::Bytes {
                bytes: answer,
                cached,
            }))
        })
        .await
    }

    async fn put_announced(
        &self,
        key: &CacheKey,
        bytes: &Bytes,
        written: impl FnOnce(bool) + Send + 'static,
    ) -> bool {
        let (cache, owned_key, data) = (self.cache.clone(), key.clone(), bytes.clone());
        let span = cache_write_span(key, bytes.len() as u64);
        let cached =
            tokio::task::spawn_blocking(move || cache.put_announced(&owned_key, &data, written))
                .instrument(span.clone())
                .await
                .ok()
                .and_then(Result::ok)
                .is_some_and(|f| f.cached);
        record_write(&span, if cached { "committed" } else { "uncached" });
        cached
    }

    /// A cached artifact ready to serve: small files are read whole, large ones are streamed.
    /// A warm hit (its path and bytes in the kernel's caches) is opened and read right here on
    /// the connection's thread; whatever needs the disk takes one hop to the blocking pool.
    async fn hit(&self, key: &CacheKey) -> Option<Body> {
        let opened = match self.cache.open_file_nowait(key) {
            Ok(None) => return None,
            Ok(Some(file)) => match hit_body(file, |f| nowait::read_whole(&f.file, f.len)) {
                Ok(body) => return Some(body),
                Err(file) => Some(file),
            },
            Err(WouldBlock) => None,
        };
        let (cache, key) = (self.cache.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            let file = match opened {
                Some(file) => file,
                None => cache.open_file(&key)?,
            };
            hit_body(file, |f| f.read_all().ok().map(Bytes::from)).ok()
        })
        .await
        .ok()
        .flatten()
    }

    /// Reads a small cached file whole, with its age.
    async fn read_small(&self, key: &CacheKey) -> Option<(Bytes, Duration)> {
        let (cache, key) = (self.cache.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            let file = cache.open_file(&key)?;
            Some((Bytes::from(file.read_all().ok()?), file.age()))
        })
        .await
        .ok()
        .flatten()
    }
}

/// The body of a hit: a large file streamed, a small one read whole by `read` (None: it could
/// not be, and the file is handed back).
fn hit_body(
    file: CachedFile,
    read: impl FnOnce(&CachedFile) -> Option<Bytes>,
) -> Result<Body, CachedFile> {
    if file.len > SMALL_FILE_BYTES {
        return Ok(Body::File(ServedFile::from_hit(file)));
    }
    match read(&file) {
        Some(bytes) => Ok(Body::Bytes {
            bytes,
            etag: file.etag,
        }),
        None => Err(file),
    }
}

fn read_whole(file: &ServedFile) -> std::io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; file.len as usize];
    file.file.read_exact_at(&mut buf, 0)?;
    Ok(Bytes::from(buf))
}

/// The span of storing one file (verification included for zips).
fn cache_write_span(key: &CacheKey, bytes: u64) -> tracing::Span {
    tracing::debug_span!(
        "cache write",
        modfleet.cache.path = %key,
        modfleet.bytes = bytes as i64,
        modfleet.outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// `committed`; `uncached` (the disk is full or failing: served, not kept); `invalid`.
fn record_write(span: &tracing::Span, outcome: &'static str) {
    span.record("modfleet.outcome", outcome);
    if outcome != "committed" {
        span.record("otel.status_code", "ERROR");
    }
}

pub(super) fn served(body: Body, cache: CacheResult, age: Option<Duration>) -> Served {
    Served { body, cache, age }
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
        Request::Info { .. } => artifact::MAX_INFO_BYTES,
        Request::Mod { .. } => artifact::MAX_GO_MOD_BYTES,
        _ => MAX_SMALL_BYTES,
    }
}

fn invalid(e: artifact::ArtifactError) -> AttemptError {
    AttemptError::Invalid(e.to_string())
}

/// Verification of a small immutable answer (`.info`, `.mod`, full tile).
fn check_immutable(req: &Request, bytes: &[u8]) -> Result<(), AttemptError> {
    match req {
        Request::Info {
            version: VersionQuery::Canonical(v),
            ..
        } => artifact::info(bytes, v),
        Request::Mod { module, .. } => artifact::go_mod(bytes, module),
        Request::Sumdb {
            path: SumdbPath::Tile { .. },
            ..
        } if bytes.is_empty() => Err(artifact::ArtifactError("empty tile".into())),
        _ => Ok(()),
    }
    .map_err(invalid)
}

/// Checks (and normalises) a list/@latest/sumdb answer: a list loses pseudo-versions, and is
/// refused when a line is not a version; @latest must name a canonical version.
fn check_refreshable(req: &Request, bytes: Bytes) -> Result<Bytes, AttemptError> {
    match req {
        Request::List { .. } => Ok(Bytes::from(artifact::list(&bytes).map_err(invalid)?)),
        Request::Latest { .. } => {
            artifact::resolved_info(&bytes).map_err(invalid)?;
            Ok(bytes)
        }
        _ => Ok(bytes),
    }
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
