//! The webhook's HTTPS server: HTTP/1.1 over TLS with the [`ServingCert`] of the moment, one
//! route ([`super::PATH`]). Bounded like any server facing the network: connections, the
//! handshake's and the headers' time, the body's size.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, field};

use super::admission::{self, Injection};
use super::certs::ServingCert;
use crate::metrics::Metrics;

/// Connections served at once; the API server keeps a few alive per replica.
const MAX_CONNECTIONS: usize = 64;
/// Time for the TLS handshake, and for each request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An AdmissionReview carries the Pod twice at most; the API server refuses objects over
/// 3 MiB, so anything larger is not from it.
const MAX_BODY: usize = 8 << 20;

struct Shared {
    injection: Arc<Injection>,
    metrics: Arc<Metrics>,
}

/// The webhook's routes.
pub fn router(injection: Arc<Injection>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(super::PATH, post(mutate))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(Shared { injection, metrics }))
}

/// One `AdmissionReview`: a clear 400 for what is not one; else always an allowed answer.
async fn mutate(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let review: AdmissionReview<Pod> = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(e) => {
            shared.metrics.admission("bad_request");
            return bad_request(format!(
                "the body is not an admission.k8s.io/v1 AdmissionReview of a Pod: {e}"
            ));
        }
    };
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(request) => request,
        Err(_) => {
            shared.metrics.admission("bad_request");
            return bad_request("the AdmissionReview has no request".into());
        }
    };
    let span = tracing::info_span!(
        "admission",
        otel.kind = "server",
        k8s.namespace.name = request.namespace.as_deref().unwrap_or_default(),
        k8s.pod.name = pod_name(&request),
        modfleet.admission.uid = %request.uid,
        modfleet.fleet = field::Empty,
        modfleet.result = field::Empty,
    );
    let started = Instant::now();
    let decision = shared
        .injection
        .review(&request)
        .instrument(span.clone())
        .await;
    let outcome = decision.outcome;
    span.record("modfleet.result", outcome.as_str());
    if let Some(fleet) = &decision.fleet {
        span.record("modfleet.fleet", fleet.as_str());
    }
    span.in_scope(|| {
        tracing::debug!(result = outcome.as_str(), fleet = ?decision.fleet, losers = ?decision.losers, "admission");
    });
    shared.metrics.admission(outcome.as_str());
    shared
        .metrics
        .admission_duration
        .observe(started.elapsed().as_secs_f64());
    axum::Json(admission::respond(&request, decision).into_review()).into_response()
}

/// The Pod's name, or its `generateName` (a controller's Pods have no name yet).
fn pod_name(request: &AdmissionRequest<Pod>) -> String {
    let meta = request.object.as_ref().map(|p| &p.metadata);
    meta.and_then(|m| m.name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| meta.and_then(|m| m.generate_name.clone()))
        .unwrap_or_default()
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response()
}

/// Serves the webhook on `listener` until `shutdown` resolves, then lets open requests end.
pub async fn serve(
    listener: TcpListener,
    cert: ServingCert,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(cert));
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // At the limit, the API server waits for a slot within its own timeout, then
        // admits the Pod unchanged (failurePolicy: Ignore).
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (acceptor, router, watcher) = (acceptor.clone(), router.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tcp.set_nodelay(true);
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "webhook: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook: TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let mut router = router.clone();
                async move {
                    tower_service::Service::call(&mut router, request.map(axum::body::Body::new))
                        .await
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "webhook: connection ended");
            }
        });
    }
    drop(listener);
    // Requests in flight finish; the API server's own timeout bounds them.
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, graceful.shutdown()).await;
}

/// Binds `addr`, with the fix in the error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the injection webhook (--webhook-listen): is the port in use?")
    })
}
