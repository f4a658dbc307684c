//! The peer port: fleet members ask each other for immutable artifacts here, with the fleet's
//! token, by the GOPROXY path. Nothing else is served on it, and clients never reach it (a
//! fleet's NetworkPolicy admits only members).
//!
//! The answer's headers go out within half of `peerFill.timeout`, so the asker can tell a live
//! owner from a dead or stuck one: with the verdict when it came by then (a cached file, a
//! 404 the asker then takes as the fleet's answer), else as a 200 whose body follows as this
//! member's own fetch brings it. A fetch that fails after the headers cuts the body short: the
//! asker then fetches directly.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, Method, StatusCode, Uri, header};

use super::Peers;
use crate::config::Config;
use crate::fetch::Fetcher;
use crate::protocol::Request;
use crate::upstream::PoolError;

/// Peer requests answered at once; more get 503 (the asker fetches directly).
const MAX_CONCURRENT: usize = 512;

pub struct PeerState {
    peers: Arc<Peers>,
    fetcher: Arc<Fetcher>,
    /// What this member would refuse its own clients (excluded modules, databases it does
    /// not proxy), it refuses peers too.
    config: Config,
    inflight: Arc<tokio::sync::Semaphore>,
}

impl PeerState {
    pub fn new(peers: Arc<Peers>, fetcher: Arc<Fetcher>, config: Config) -> Arc<PeerState> {
        Arc::new(PeerState {
            peers,
            fetcher,
            config,
            inflight: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT)),
        })
    }

    /// Why this member does not answer `req` for a peer, if it does not.
    fn refuses(&self, req: &Request) -> Option<&'static str> {
        if !req.is_immutable() || self.fetcher.is_private(req) {
            return Some(
                "peers ask only for immutable artifacts of public modules (.info, .mod, .zip of canonical versions, full checksum-database tiles)",
            );
        }
        if req
            .module()
            .is_some_and(|m| self.config.is_excluded(m.as_str()))
        {
            return Some("the module is excluded by this proxy's configuration");
        }
        if let Request::Sumdb { name, .. } = req
            && !self.config.sumdbs.iter().any(|s| &s.name == name)
        {
            return Some("the checksum database is not proxied here");
        }
        None
    }
}

pub fn router(state: Arc<PeerState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(
    State(state): State<Arc<PeerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if !state.peers.authorized(&headers) {
        return text(
            StatusCode::UNAUTHORIZED,
            "the peer port needs the fleet's peer token (Authorization: Bearer); clients use the GOPROXY port",
        );
    }
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "peers ask with GET");
    }
    let req = match Request::parse(uri.path()) {
        Ok(req) => req,
        Err(e) => return text(e.status, &e.message),
    };
    if let Some(why) = state.refuses(&req) {
        return text(StatusCode::BAD_REQUEST, why);
    }
    let Ok(permit) = state.inflight.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many peer requests at once: fetch it directly",
        );
    };
    let fetcher = state.fetcher.clone();
    let mut answer = Box::pin(async move {
        let answer = fetcher.serve_peer(&req).await;
        drop(permit);
        (req, answer)
    });
    // The verdict, when it comes soon (a cached file, a quick 404): a "not found" can then be
    // said as such, and the asker takes it instead of asking the upstreams again.
    match tokio::time::timeout(state.peers.verdict_wait(), &mut answer).await {
        Ok((_, Ok(stream))) => {
            state.peers.served();
            ok(Body::from_stream(stream))
        }
        Ok((_, Err(PoolError::NotFound { message }))) => text(StatusCode::NOT_FOUND, &message),
        Ok((_, Err(e))) => text(e.status(), &e.to_string()),
        // Still fetching: the headers go now (the asker sees a live owner) and the body
        // follows; a failure then cuts it short.
        Err(_) => {
            state.peers.served();
            let body = futures::stream::once(async move {
                match answer.await {
                    (_, Ok(stream)) => stream,
                    (req, Err(e)) => {
                        tracing::debug!(path = %req.escaped_path(), error = %e, "a peer request failed: cutting its body short");
                        futures::stream::once(async move { Err(std::io::Error::other(e.to_string())) })
                            .boxed()
                    }
                }
            })
            .flatten();
            ok(Body::from_stream(body))
        }
    }
}

fn ok(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("valid response")
}

fn text(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}
