//! The peer port: fleet members ask each other for immutable artifacts here, with the fleet's
//! token, by the GOPROXY path. Nothing else is served on it, and clients never reach it (a
//! fleet's NetworkPolicy admits only members).
//!
//! The answer's headers go out at once and the body follows as this member's cache or its own
//! fetch brings it, so the asker can tell a live owner (headers within `peerFill.timeout`)
//! from a dead or stuck one. A fetch that fails after the headers cuts the body short: the
//! asker then fetches directly.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{HeaderMap, Method, StatusCode, Uri, header};

use super::Peers;
use crate::fetch::Fetcher;
use crate::protocol::Request;

/// Peer requests answered at once; more get 503 (the asker fetches directly).
const MAX_CONCURRENT: usize = 512;

pub struct PeerState {
    pub peers: Arc<Peers>,
    pub fetcher: Arc<Fetcher>,
    pub inflight: Arc<tokio::sync::Semaphore>,
}

impl PeerState {
    pub fn new(peers: Arc<Peers>, fetcher: Arc<Fetcher>) -> Arc<PeerState> {
        Arc::new(PeerState {
            peers,
            fetcher,
            inflight: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT)),
        })
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
    if !req.is_immutable() || state.fetcher.is_private(&req) {
        return text(
            StatusCode::BAD_REQUEST,
            "peers ask only for immutable artifacts of public modules (.info, .mod, .zip of canonical versions, full checksum-database tiles)",
        );
    }
    let Ok(permit) = state.inflight.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many peer requests at once: fetch it directly",
        );
    };
    state.peers.served();
    let fetcher = state.fetcher.clone();
    let body = futures::stream::once(async move {
        let answer = fetcher.serve_peer(&req).await;
        drop(permit);
        match answer {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(path = %req.escaped_path(), error = %e, "a peer request failed: cutting its body short");
                futures::stream::once(async move { Err(std::io::Error::other(e.to_string())) })
                    .boxed()
            }
        }
    })
    .flatten();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(body))
        .expect("valid response")
}

fn text(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}
