//! Dependency prefetch: when a client's `.mod` comes from an upstream, the modules its `require`
//! lines name are what the go command asks for next, so their `.mod` files (and with
//! `--prefetch-zips` their `.info` files and zips) are fetched in the background, through the same path as a
//! client's request (coalesced, verified, checked against the checksum database, cached), and
//! are cache hits by the time the go command asks.
//!
//! Bounds, since a go.mod is an upstream's bytes and prefetch must never cost the clients:
//!
//! - at most [`PER_MOD`] modules queued per triggering `.mod` (the rest are skipped);
//! - a queue of at most [`QUEUE`] waiting prefetches: past it a prefetch is dropped (counted),
//!   never waited for;
//! - at most [`CONCURRENCY`] prefetches at once (their own semaphore: clients never wait for a
//!   prefetch, they are not limited by it; a client that asks for a module being prefetched
//!   joins that fetch, so the fetch keeps the pool's hedging and retries);
//! - one level: a prefetched `.mod`'s requires are not prefetched (nor those of the `.mod` a
//!   prefetched zip is checked against: [`Origin::Prefetch`]), until a client asks for that
//!   `.mod` (its first hit): every wave of prefetches is started by a client's request;
//! - never a module matching `exclude` or `noSum` (private paths must not leave), nor a path or
//!   version a client's request could not name (checked by the same parser);
//! - a file already cached, queued or recently prefetched costs no upstream request and no disk
//!   read (counted `cached`).
//!
//! Counted in `modfleet_proxy_prefetch_total{outcome}`, `modfleet_proxy_prefetch_hits_total`
//! (prefetched, then asked for by a client) and `modfleet_proxy_prefetch_unused_total`
//! (prefetched and forgotten after [`RECENT`] later prefetches without a client asking).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::{Semaphore, mpsc};

use super::{Body, CacheResult, Fetcher};
use crate::cache::{Cache, CacheKey};
use crate::coalesce::Role;
use crate::config::ModulePattern;
use crate::metrics::{Metrics, OutcomeLabel};
use crate::protocol::{Request, VersionQuery, escape_path, escape_version, modfile};
use crate::upstream::PoolError;

/// Modules queued (their `.mod`, and zip when on) per triggering `.mod`.
pub const PER_MOD: usize = 64;
/// Prefetches waiting for a slot, over all triggers.
pub const QUEUE: usize = 256;
/// Prefetches running at once.
pub const CONCURRENCY: usize = 4;
/// Prefetched keys remembered for the hit/unused count (and so never prefetched twice).
pub const RECENT: usize = 4096;

/// What the configuration says may be prefetched.
#[derive(Debug, Clone, Default)]
pub struct PrefetchPolicy {
    /// `exclude` and `noSum` patterns: modules matching any are never prefetched.
    pub private: Vec<ModulePattern>,
    /// Prefetch each required module's `.info` and zip too (`--prefetch-zips`).
    pub zips: bool,
}

impl PrefetchPolicy {
    fn allows(&self, module: &str) -> bool {
        !self.private.iter().any(|p| p.matches(module))
    }
}

/// Who asked for an answer: a client, or a prefetch (whose answers start no further prefetch,
/// nor count as hits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    Client,
    Prefetch,
    /// A fleet peer's request: answered from here, never asked of a further peer, and starts
    /// no prefetch (the asking member's own client request does).
    Peer,
}

/// How one prefetch (or one require that was not prefetched) ended; a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Fetched from an upstream by the prefetch.
    Fetched,
    /// Already cached, or already being fetched or prefetched: no upstream request.
    Cached,
    /// Not to be prefetched: a path or version a client could not ask for, an excluded or
    /// private module, or past the per-`.mod` bound.
    Skipped,
    /// The queue was full.
    Dropped,
    /// The fetch failed (not found, every upstream failing, refused by the checksum database).
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Fetched => "fetched",
            Outcome::Cached => "cached",
            Outcome::Skipped => "skipped",
            Outcome::Dropped => "dropped",
            Outcome::Failed => "failed",
        }
    }
}

/// Where a key is in the prefetcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Queued,
    /// Being fetched; `claimed` once a client has joined it (a hit).
    Running {
        claimed: bool,
    },
}

#[derive(Debug, Default)]
struct State {
    /// Queued or running: at most [`QUEUE`] + [`CONCURRENCY`] entries.
    pending: HashMap<String, Pending>,
    /// Prefetched and not yet asked for by a client, oldest first (at most [`RECENT`]).
    recent: VecDeque<String>,
    recent_set: HashSet<String>,
}

/// The queue, the bounds and the counts of prefetching.
pub(super) struct Prefetcher {
    queue: mpsc::Sender<Request>,
    state: Mutex<State>,
    policy: PrefetchPolicy,
    cache: Arc<Cache>,
    metrics: Arc<Metrics>,
}

impl Prefetcher {
    /// The prefetcher of `fetcher`, and its dispatcher running on the current runtime (it ends
    /// when the fetcher is dropped).
    pub(super) fn start(fetcher: &Arc<Fetcher>, policy: PrefetchPolicy) -> Arc<Prefetcher> {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let prefetcher = Arc::new(Prefetcher {
            queue,
            state: Mutex::default(),
            policy,
            cache: fetcher.cache.clone(),
            metrics: fetcher.metrics.clone(),
        });
        tokio::spawn(dispatch(Arc::downgrade(fetcher), jobs));
        prefetcher
    }

    /// A client got `go_mod` (the `.mod` at `key`) with this cache result: when it came from an
    /// upstream for this client (`fetched`), or it is a prefetched entry's first client, its
    /// requires are prefetched, parsed on a task of their own so the client does not wait.
    pub(super) fn after_client_mod(
        self: &Arc<Self>,
        key: &CacheKey,
        fetched: bool,
        go_mod: &Bytes,
    ) {
        if !fetched && !self.claim(key.as_str()) {
            return;
        }
        let (this, go_mod) = (self.clone(), go_mod.clone());
        tokio::spawn(async move { this.enqueue_requires(&go_mod) });
    }

    /// True (once) when `key` was prefetched, or is being prefetched, and no client had it yet:
    /// a hit on a prefetched entry.
    fn claim(&self, key: &str) -> bool {
        let mut state = self.state.lock().expect("prefetch state poisoned");
        let hit = match state.pending.get_mut(key) {
            Some(Pending::Running { claimed }) if !*claimed => {
                *claimed = true;
                true
            }
            Some(_) => false,
            None => state.recent_set.remove(key),
        };
        if hit {
            self.metrics.prefetch_hits.inc();
        }
        hit
    }

    /// Queues the `.mod` (and zip) of each allowed require of `go_mod`, within the bounds.
    fn enqueue_requires(&self, go_mod: &[u8]) {
        let mut queued = 0;
        for require in modfile::requires(go_mod) {
            let req = match mod_request(&require) {
                Some(req) if queued < PER_MOD && self.policy.allows(&require.path) => req,
                _ => {
                    self.count(Outcome::Skipped);
                    continue;
                }
            };
            let others = self.policy.zips.then(|| info_and_zip_of(&req));
            let mut any = false;
            for req in std::iter::once(req).chain(others.into_iter().flatten()) {
                match self.enqueue(req) {
                    Ok(()) => any = true,
                    Err(outcome) => self.count(outcome),
                }
            }
            queued += usize::from(any);
        }
    }

    /// Queues one `.mod` or zip (counted when it ends), or says why it was not.
    fn enqueue(&self, req: Request) -> Result<(), Outcome> {
        let key = CacheKey::of(&req);
        if self.cache.is_indexed(&key) {
            return Err(Outcome::Cached);
        }
        let mut state = self.state.lock().expect("prefetch state poisoned");
        if state.pending.contains_key(key.as_str()) || state.recent_set.contains(key.as_str()) {
            return Err(Outcome::Cached);
        }
        self.queue.try_send(req).map_err(|_| Outcome::Dropped)?;
        state
            .pending
            .insert(key.as_str().to_string(), Pending::Queued);
        Ok(())
    }

    /// A queued prefetch starts.
    fn started(&self, key: &str) {
        let mut state = self.state.lock().expect("prefetch state poisoned");
        if let Some(p) = state.pending.get_mut(key) {
            *p = Pending::Running { claimed: false };
        }
    }

    /// A prefetch ended: counted, and remembered when it fetched something no client has had.
    fn ended(&self, key: &str, outcome: Outcome) {
        self.count(outcome);
        let mut state = self.state.lock().expect("prefetch state poisoned");
        let claimed = matches!(
            state.pending.remove(key),
            Some(Pending::Running { claimed: true })
        );
        if outcome != Outcome::Fetched || claimed {
            return;
        }
        state.recent.push_back(key.to_string());
        state.recent_set.insert(key.to_string());
        while state.recent.len() > RECENT {
            let Some(old) = state.recent.pop_front() else {
                break;
            };
            if state.recent_set.remove(&old) {
                self.metrics.prefetch_unused.inc();
            }
        }
    }

    fn count(&self, outcome: Outcome) {
        self.metrics
            .prefetch
            .get_or_create(&OutcomeLabel {
                outcome: outcome.as_str(),
            })
            .inc();
    }
}

/// The fetcher's side of prefetching: what starts it, and one prefetch.
impl Fetcher {
    /// A client's `.info` answer is a hit when it was prefetched. A client's `.mod` answer may
    /// start prefetching its requires: when this request fetched it from an upstream, or it is
    /// the first client of a prefetched `.mod`. (A cached `.mod` over 256 KiB is served from
    /// its file and not read for this.)
    pub(super) fn after_small_answer(
        &self,
        req: &Request,
        key: &CacheKey,
        cache: CacheResult,
        body: &Body,
        origin: Origin,
    ) {
        if let Request::Info { .. } = req {
            return self.count_prefetch_hit(key, cache, origin);
        }
        let (Some(prefetcher), Request::Mod { .. }, Body::Bytes { bytes, .. }, Origin::Client) =
            (self.prefetcher.get(), req, body, origin)
        else {
            return;
        };
        let fetched = matches!(cache, CacheResult::Miss | CacheResult::Bypass);
        prefetcher.after_client_mod(key, fetched, bytes);
    }

    /// A client's zip answer: a hit when the zip was prefetched.
    pub(super) fn count_prefetch_hit(&self, key: &CacheKey, cache: CacheResult, origin: Origin) {
        if let (Some(prefetcher), Origin::Client, CacheResult::Hit | CacheResult::Coalesced) =
            (self.prefetcher.get(), origin, cache)
        {
            prefetcher.claim(key.as_str());
        }
    }

    /// One prefetch: a `.mod`, an `.info` or a zip.
    async fn prefetch_one(self: &Arc<Self>, req: &Request, key: &CacheKey) -> Outcome {
        match req {
            Request::Zip { module, version } => {
                if self.negative.get(key.as_str()).is_some() {
                    return Outcome::Failed;
                }
                match self.zip(module, version, key, Origin::Prefetch).await {
                    Ok(served) if served.cache == CacheResult::Miss => Outcome::Fetched,
                    Ok(_) => Outcome::Cached,
                    Err(error) => self.prefetch_failed(key, error),
                }
            }
            _ => self.prefetch_small(req, key).await,
        }
    }

    /// A failed prefetch: a "not found" is remembered as a client's would be.
    fn prefetch_failed(&self, key: &CacheKey, error: PoolError) -> Outcome {
        tracing::debug!(path = %key, %error, "prefetch failed");
        if let PoolError::NotFound { message } = error {
            self.negative.insert(key.to_string(), message);
            self.metrics
                .negative_cache_entries
                .set(self.negative.len() as i64);
        }
        Outcome::Failed
    }

    /// A prefetch of a `.mod` or `.info`: like a client's request (negative cache, one fetch
    /// per key, verified, cached), but it starts no further prefetch.
    async fn prefetch_small(self: &Arc<Self>, req: &Request, key: &CacheKey) -> Outcome {
        if self.negative.get(key.as_str()).is_some() {
            return Outcome::Failed;
        }
        let (this, owned, owned_key) = (self.clone(), req.clone(), key.clone());
        let (fetched, role) = self.coalesced(key.as_str(), move |publish| {
            this.download_small(owned, owned_key, Origin::Prefetch, publish)
                .boxed()
        });
        match fetched.await {
            Ok(_) if role == Role::Leader => Outcome::Fetched,
            Ok(_) => Outcome::Cached,
            Err(error) => self.prefetch_failed(key, error),
        }
    }
}

/// The `.mod` request a require names, checked as a client's request path is checked (the
/// module path, the version canonical and valid for the path); None when a client could not
/// ask for it.
pub(super) fn mod_request(require: &modfile::Require) -> Option<Request> {
    let path = escape_path(&require.path).ok()?;
    let version = escape_version(&require.version).ok()?;
    match Request::parse(&format!("/{path}/@v/{version}.mod")).ok()? {
        req @ Request::Mod { .. } => Some(req),
        _ => None,
    }
}

/// The `.info` and the zip of the module version a `.mod` request names: what `go mod
/// download` asks for after the `.mod`.
fn info_and_zip_of(req: &Request) -> Vec<Request> {
    match req {
        Request::Mod { module, version } => vec![
            Request::Info {
                module: module.clone(),
                version: VersionQuery::Canonical(version.clone()),
            },
            Request::Zip {
                module: module.clone(),
                version: version.clone(),
            },
        ],
        _ => Vec::new(),
    }
}

/// Runs queued prefetches, [`CONCURRENCY`] at a time.
async fn dispatch(fetcher: Weak<Fetcher>, mut jobs: mpsc::Receiver<Request>) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    while let Some(req) = jobs.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(fetcher) = fetcher.upgrade() else {
            return;
        };
        let Some(prefetcher) = fetcher.prefetcher.get().cloned() else {
            return;
        };
        let span = tracing::debug_span!("prefetch", modfleet.module = %req_module(&req));
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _slot = slot;
                let key = CacheKey::of(&req);
                prefetcher.started(key.as_str());
                let outcome = fetcher.prefetch_one(&req, &key).await;
                prefetcher.ended(key.as_str(), outcome);
            },
            span,
        ));
    }
}

fn req_module(req: &Request) -> String {
    match req {
        Request::Mod { module, version } => format!("{module}@{version}.mod"),
        Request::Zip { module, version } => format!("{module}@{version}.zip"),
        Request::Info { module, version } => format!("{module}@{version}.info"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, version: &str) -> Option<Request> {
        mod_request(&modfile::Require {
            path: path.into(),
            version: version.into(),
        })
    }

    #[test]
    fn only_what_a_client_could_ask_for_is_prefetched() {
        let ok = req("github.com/BurntSushi/toml", "v1.3.2").unwrap();
        assert_eq!(
            ok.escaped_path(),
            "github.com/!burnt!sushi/toml/@v/v1.3.2.mod"
        );
        assert!(req("example.com/m/v2", "v2.0.0").is_some());
        assert!(req("example.com/m", "v2.0.0+incompatible").is_some());
        assert!(req("example.com/m", "v0.0.0-20240102030405-abcdefabcdef").is_some());
        for (path, version) in [
            ("example.com/m", "v1.2"),
            ("example.com/m", "v1.2.3+meta"),
            ("example.com/m", "1.2.3"),
            ("example.com/m", "latest"),
            ("example.com/m", "v1.0.0/../../x"),
            ("example.com/m", ""),
            ("example.com/m/v2", "v1.0.0"),
            ("example.com/m", "v2.0.0"),
            ("example.com/../etc", "v1.0.0"),
            ("../../etc/passwd", "v1.0.0"),
            ("/abs/path", "v1.0.0"),
            ("nodot/m", "v1.0.0"),
            ("example.com/m\u{0}", "v1.0.0"),
            ("example.com/m@v1", "v1.0.0"),
            ("", "v1.0.0"),
        ] {
            assert!(req(path, version).is_none(), "{path} {version}");
        }
        let long = format!("example.com/{}", "a/".repeat(400));
        assert!(req(long.trim_end_matches('/'), "v1.0.0").is_none());
    }

    #[test]
    fn private_patterns_are_never_prefetched() {
        let policy = PrefetchPolicy {
            private: vec![ModulePattern::parse("corp.example.com/*").unwrap()],
            zips: false,
        };
        assert!(!policy.allows("corp.example.com/team/lib"));
        assert!(policy.allows("example.com/lib"));
    }
}
