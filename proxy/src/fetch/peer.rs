//! The fetcher's side of peer fill ([`crate::peers`]): asking an artifact's owner on a miss,
//! and answering the peers that ask this member.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use http_body_util::BodyDataStream;
use tracing::Instrument;

use super::prefetch::Origin;
use super::tail::{self, TailState};
use super::{Body, Fetcher, Served};
use crate::cache::CacheKey;
use crate::file_body::FileBody;
use crate::peers::{Asked, Peers};
use crate::protocol::Request;
use crate::upstream::{AttemptError, PoolError, UpstreamResponse};

/// Longest a peer's stream of a zip being fetched waits for the next bytes (the fetch's own
/// timeouts end a stalled upstream sooner).
const TAIL_IDLE: Duration = Duration::from_secs(60);

impl Fetcher {
    /// Turns on peer fill.
    pub fn use_peers(&self, peers: Arc<Peers>) {
        if self.peers.set(peers).is_err() {
            panic!("peer fill set up twice");
        }
    }

    /// `/status`'s `peers` section; None without peer fill.
    pub fn peers_status(&self) -> Option<modfleet_contract::status::PeersStatus> {
        self.peers.get().map(|p| p.status())
    }

    /// An immutable artifact from its owner, checked by `accept`; None when peer fill is off,
    /// this member owns it, the request came from a peer, or the owner did not answer with
    /// what passes the checks (each counted: the member goes on to the store and upstreams).
    /// The owner's "not found" is the fleet's answer (its upstreams were asked): an error.
    pub(super) async fn read_peer<T, F, Fut>(
        &self,
        req: &Request,
        key: &CacheKey,
        origin: Origin,
        accept: &F,
    ) -> Result<Option<T>, PoolError>
    where
        F: Fn(UpstreamResponse) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        if origin == Origin::Peer || !req.is_immutable() {
            return Ok(None);
        }
        let Some(peers) = self.peers.get() else {
            return Ok(None);
        };
        let Some(owner) = peers.owner_of(key.as_str()) else {
            return Ok(None);
        };
        let span = tracing::debug_span!(
            "peer ask",
            modfleet.peer = %owner,
            modfleet.outcome = tracing::field::Empty,
        );
        async {
            let response = match peers.ask(&owner, &req.escaped_path()).await {
                Asked::Answer(response) => *response,
                Asked::NotFound(message) => {
                    span.record("modfleet.outcome", "not_found");
                    return Err(PoolError::NotFound { message });
                }
                Asked::Fallback => {
                    span.record("modfleet.outcome", "fallback");
                    return Ok(None);
                }
            };
            match accept(response).await {
                Ok(answer) => {
                    peers.verified();
                    span.record("modfleet.outcome", "hit");
                    Ok(Some(answer))
                }
                Err(e) => {
                    peers.rejected(&owner, &e);
                    span.record("modfleet.outcome", "fallback");
                    Ok(None)
                }
            }
        }
        .instrument(span.clone())
        .await
    }

    /// The answer to a peer's request for an immutable artifact: from the cache, else from this
    /// member's own fetch (joined, or started; never asked of a further peer). A zip being
    /// fetched is streamed as it is written.
    pub async fn serve_peer(
        self: &Arc<Self>,
        req: &Request,
    ) -> Result<BoxStream<'static, io::Result<Bytes>>, PoolError> {
        let key = CacheKey::of(req);
        // A "not found" this member remembers is the answer, as it is to its own clients;
        // one it learns now is remembered for them too.
        if let Some(message) = self.negative.get(key.as_str()) {
            return Err(PoolError::NotFound { message });
        }
        self.serve_peer_uncached(req, &key).await.inspect_err(|e| {
            if let PoolError::NotFound { message } = e {
                self.remember_not_found(&key, message);
            }
        })
    }

    async fn serve_peer_uncached(
        self: &Arc<Self>,
        req: &Request,
        key: &CacheKey,
    ) -> Result<BoxStream<'static, io::Result<Bytes>>, PoolError> {
        let Request::Zip { module, version } = req else {
            let served = self.artifact(req, key, Origin::Peer).await?;
            return Ok(body_stream(served));
        };
        if let Some(body) = self.hit(key).await {
            return Ok(body_stream(super::served(
                body,
                super::CacheResult::Hit,
                None,
            )));
        }
        let slot = self.tails.watch(key.as_str());
        let mut rx = slot.subscribe();
        let fetch = self.zip(module, version, key, Origin::Peer).fuse();
        tokio::pin!(fetch);
        loop {
            if matches!(
                *rx.borrow_and_update(),
                TailState::Writing { .. } | TailState::Done { .. }
            ) {
                return Ok(tail::stream(slot, TAIL_IDLE).boxed());
            }
            tokio::select! {
                served = &mut fetch => return served.map(body_stream),
                // The sender lives in `slot`, held here: this only ends by a change.
                _ = rx.changed() => {}
            }
        }
    }
}

/// A served answer as a stream of chunks; a cached file as its clients get it
/// ([`FileBody`]: page-cache reads without a thread hop, bounded chunks).
fn body_stream(served: Served) -> BoxStream<'static, io::Result<Bytes>> {
    match served.body {
        Body::Bytes { bytes, .. } => futures::stream::once(async { Ok(bytes) }).boxed(),
        Body::File(file) => BodyDataStream::new(FileBody::new(file.file, file.len)).boxed(),
    }
}

impl Fetcher {
    /// Whether `req` is for a module served from Git (`privateModules`): never shared with peers.
    pub fn is_private(&self, req: &Request) -> bool {
        self.private_for_req(req).is_some()
    }
}
