//! Peer fill: the fleet fetches each artifact once (`peerFill`).
//!
//! Every immutable artifact (`.info`, `.mod`, `.zip` of a canonical version, a full checksum-
//! database tile) has one owner among the fleet's members ([`ring`]: rendezvous hashing over
//! the membership, [`membership`]). A member that misses an artifact it does not own asks the
//! owner on the owner's peer port ([`server`]) before the shared store and the upstreams. The
//! owner answers from its cache, or joins or starts its own fetch (one per key, as for its
//! clients) and streams a zip to the asker while it is being fetched. The asker treats the
//! owner like any upstream: the same size limits, idle timeout, low-speed limit and
//! verification (zip rules, go.mod, checksum database); anything else — the owner down, slow,
//! refusing, cut short or sending what fails the checks — and it fetches directly. The owner's
//! "not found" (its upstreams were asked) is taken as the fleet's answer. A member
//! answers peers from itself only and never asks a further peer, so there are no loops.
//!
//! Peer requests carry the fleet's shared token; the peer port serves nothing else.

pub mod membership;
pub mod ring;
pub mod server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use modfleet_contract::config::PeerFillConfig;
use modfleet_contract::status::{LastError, PeerAsks, PeersStatus};
use sha2::{Digest, Sha256};

use crate::metrics::{PeerMetrics, StoreResultLabel};
use crate::upstream::{AttemptError, UpstreamResponse};
use membership::{MembershipError, SliceReader};

/// Longest wait for each part of an owner's body. Longer than the header timeout: the owner
/// answers at once and sends the body as its own fetch brings it, so this covers an upstream's
/// time to its first byte; an owner that died cuts the connection at once.
const BODY_IDLE: Duration = Duration::from_secs(30);
/// Shortest accepted peer token.
const MIN_TOKEN_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    #[error("peerFill.tokenFile {path}: {message}")]
    Token { path: String, message: String },
    #[error("peerFill: set either members (a static list) or endpointSlices, not both")]
    TwoMemberships,
    #[error(
        "peerFill: no membership: set members (every member's HOST:PORT) or endpointSlices (a headless Service)"
    )]
    NoMembership,
    #[error("peerFill.advertise: {0}")]
    Advertise(MembershipError),
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error("peerFill: cannot build the HTTP client: {0}")]
    Client(String),
}

/// Where the membership comes from.
enum Source {
    Static,
    Slices(SliceReader, Duration),
}

/// What an owner said.
pub enum Asked {
    /// A 200: the body is to be checked as an upstream's.
    Answer(Box<UpstreamResponse>),
    /// The owner's upstreams do not have it (its 404, with its message): the fleet's answer.
    NotFound(String),
    /// Not asked successfully (counted): fetch directly.
    Fallback,
}

/// One member's view of the fleet.
pub struct Peers {
    advertise: Option<String>,
    token: String,
    token_hash: [u8; 32],
    members: RwLock<Arc<Vec<String>>>,
    refreshed_unix: AtomicU64,
    last_error: Mutex<Option<LastError>>,
    client: reqwest::Client,
    timeout: Duration,
    metrics: PeerMetrics,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
    hit: AtomicU64,
    not_found: AtomicU64,
    fallback: AtomicU64,
    served: AtomicU64,
}

impl Peers {
    /// Reads the token, checks the settings and, for EndpointSlices, starts re-reading the
    /// membership in the background (needs a runtime). The first read is not waited for: until
    /// it succeeds, every miss is fetched directly.
    pub fn start(config: &PeerFillConfig, metrics: PeerMetrics) -> Result<Arc<Peers>, PeersError> {
        let (peers, source) = Peers::build(config, metrics)?;
        if let Source::Slices(reader, every) = source {
            tokio::spawn(refresh(Arc::downgrade(&peers), reader, every));
        }
        Ok(peers)
    }

    /// The settings checked without starting anything (for `Config::load`).
    pub fn check(config: &PeerFillConfig) -> Result<(), PeersError> {
        Peers::build(config, PeerMetrics::default()).map(|_| ())
    }

    fn build(
        config: &PeerFillConfig,
        metrics: PeerMetrics,
    ) -> Result<(Arc<Peers>, Source), PeersError> {
        let token = read_token(&config.token_file)?;
        let advertise = config
            .advertise
            .as_deref()
            .map(membership::normalise)
            .transpose()
            .map_err(PeersError::Advertise)?;
        let timeout = config.timeout.get();
        let (members, source) = match (&config.members[..], &config.endpoint_slices) {
            ([], None) => return Err(PeersError::NoMembership),
            ([_, ..], Some(_)) => return Err(PeersError::TwoMemberships),
            (list, None) => (membership::from_list(list)?, Source::Static),
            ([], Some(slices)) => (
                Vec::new(),
                Source::Slices(
                    SliceReader::new(slices, timeout.max(Duration::from_secs(5)))?,
                    slices.refresh.get(),
                ),
            ),
        };
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            // Peers are asked by address; no proxy between members.
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| PeersError::Client(e.to_string()))?;
        let peers = Arc::new(Peers {
            advertise,
            token_hash: Sha256::digest(token.as_bytes()).into(),
            token,
            members: RwLock::new(Arc::new(Vec::new())),
            refreshed_unix: AtomicU64::new(0),
            last_error: Mutex::new(None),
            client,
            timeout,
            metrics,
            counts: Counts::default(),
        });
        if matches!(source, Source::Static) {
            if let Some(me) = &peers.advertise
                && !members.contains(me)
            {
                tracing::warn!(advertise = %me, ?members, "peerFill.advertise is not in peerFill.members: this member owns nothing and only asks the others");
            }
            peers.set_members(members);
        }
        Ok((peers, source))
    }

    fn set_members(&self, members: Vec<String>) {
        self.metrics.members.set(members.len() as i64);
        *self.members.write().expect("peers poisoned") = Arc::new(members);
        self.refreshed_unix.store(unix_now(), Ordering::Relaxed);
    }

    /// The member that owns `key`, when it is another member; None when this member owns it
    /// (or the membership is not known yet): then it fetches itself.
    pub fn owner_of(&self, key: &str) -> Option<String> {
        let members = self.members.read().expect("peers poisoned").clone();
        let owner = ring::owner(&members, key)?;
        (Some(owner) != self.advertise.as_deref()).then(|| owner.to_string())
    }

    /// How long an owner waits for its answer's verdict before it sends a 200's headers:
    /// half the asker's header timeout.
    pub fn verdict_wait(&self) -> Duration {
        self.timeout / 2
    }

    /// Asks `owner` for `path` (the GOPROXY path, without the leading slash). The answer's
    /// body is read under the idle timeout and the upstreams' low-speed limit.
    pub async fn ask(&self, owner: &str, path: &str) -> Asked {
        let url = format!("http://{owner}/{path}");
        let sent = self.client.get(&url).bearer_auth(&self.token).send();
        let response = match tokio::time::timeout(self.timeout, sent).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(owner, path, error = %modfleet_telemetry::error_chain(&e), "peer not reachable: fetching directly");
                self.fallback();
                return Asked::Fallback;
            }
            Err(_) => {
                tracing::debug!(owner, path, "peer slow to answer: fetching directly");
                self.fallback();
                return Asked::Fallback;
            }
        };
        match response.status() {
            StatusCode::OK => Asked::Answer(Box::new(UpstreamResponse::from_peer(
                owner,
                response,
                BODY_IDLE.max(self.timeout),
            ))),
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                self.count("not_found", &self.counts.not_found);
                let message = match tokio::time::timeout(self.timeout, response.bytes()).await {
                    Ok(Ok(b)) => String::from_utf8_lossy(&b[..b.len().min(512)])
                        .trim()
                        .to_string(),
                    _ => String::new(),
                };
                Asked::NotFound(if message.is_empty() {
                    format!("not found (said {owner}, the artifact's owner in the fleet)")
                } else {
                    message
                })
            }
            status => {
                if status == StatusCode::UNAUTHORIZED {
                    tracing::warn!(
                        owner,
                        "a peer refused this member's token: are the fleet's members configured with the same peerFill.tokenFile?"
                    );
                }
                tracing::debug!(owner, path, %status, "peer answered an error: fetching directly");
                self.fallback();
                Asked::Fallback
            }
        }
    }

    /// The owner's answer passed the checks.
    pub fn verified(&self) {
        self.count("hit", &self.counts.hit);
    }

    /// The owner's answer failed the checks or was cut short: fetched directly.
    pub fn rejected(&self, owner: &str, error: &AttemptError) {
        match error {
            AttemptError::Invalid(why) => {
                tracing::warn!(owner, reason = %why, "SECURITY: an answer from a peer failed verification; fetching directly")
            }
            other => {
                tracing::debug!(owner, error = %other, "a peer's answer could not be used; fetching directly")
            }
        }
        self.fallback();
    }

    fn fallback(&self) {
        self.count("fallback", &self.counts.fallback);
    }

    fn count(&self, result: &'static str, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .asks
            .get_or_create(&StoreResultLabel { result })
            .inc();
    }

    /// A peer request answered by this member.
    pub fn served(&self) {
        self.counts.served.fetch_add(1, Ordering::Relaxed);
        self.metrics.served.inc();
    }

    /// Whether a request carries the fleet's token (compared as SHA-256 digests, so the time
    /// taken says nothing about the token).
    pub fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let Some(token) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        given
            .iter()
            .zip(self.token_hash.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// `/status`'s `peers` section.
    pub fn status(&self) -> PeersStatus {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PeersStatus {
            advertise: self.advertise.clone().unwrap_or_default(),
            members: self.members.read().expect("peers poisoned").to_vec(),
            refreshed_unix: n(&self.refreshed_unix),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            asked: PeerAsks {
                hit: n(&self.counts.hit),
                not_found: n(&self.counts.not_found),
                fallback: n(&self.counts.fallback),
            },
            served: n(&self.counts.served),
        }
    }
}

/// Re-reads the membership every `every` while the member lives; a failed read keeps the last
/// good membership.
async fn refresh(peers: std::sync::Weak<Peers>, reader: SliceReader, every: Duration) {
    loop {
        let read = reader.read().await;
        let Some(peers) = peers.upgrade() else { return };
        match read {
            Ok(members) => {
                if *peers.members.read().expect("peers poisoned").as_ref() != members {
                    tracing::info!(?members, "fleet membership changed");
                }
                peers.set_members(members);
                peers.last_error.lock().expect("peers poisoned").take();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the fleet's membership; keeping the last one");
                *peers.last_error.lock().expect("peers poisoned") = Some(LastError {
                    message: e.to_string(),
                    at_unix: unix_now(),
                });
            }
        }
        drop(peers);
        tokio::time::sleep(every).await;
    }
}

fn read_token(path: &std::path::Path) -> Result<String, PeersError> {
    let fail = |message: String| PeersError::Token {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < MIN_TOKEN_LEN || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(fail(format!(
            "the token (its first line) must be at least {MIN_TOKEN_LEN} visible ASCII characters without spaces, e.g. from `openssl rand -hex 32`"
        )));
    }
    Ok(token)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
