//! The proxy's accept loop, used by the GOPROXY and the admin port: HTTP/1.1 and HTTP/2
//! (hyper-util's auto builder), TCP_NODELAY, graceful shutdown, and the limits a hostile client
//! meets — connection caps that keep room for real clients ([`slots`]), header-read, idle and
//! send timeouts ([`watchdog`]) — each counted in metrics. The open-file limit they depend on
//! is raised at start ([`fd_limit`]). A listener given TLS terminates it ([`handshake`]: the
//! handshake counts inside the header-read timeout).
//!
//! Memory per connection is bounded: hyper's HTTP/1 buffer holds at most one body chunk
//! ([`H1_MAX_BUF`]; without it hyper would queue ~400 KiB of a download for a client that does
//! not read), HTTP/2 at most one chunk per stream and [`H2_MAX_STREAMS`] streams, and the
//! kernel at most [`NOTSENT_LOWAT`] unsent bytes (a bounded number of large downloads more:
//! [`send_queue`]). Over TLS, rustls holds at most 64 KiB of unsent records (its default
//! limit): a write past it waits, and the send timeout sees it.

mod activity;
pub mod fd_limit;
pub mod handshake;
pub mod send_queue;
mod slots;
mod watchdog;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use self::activity::{ConnState, Tracked, Watched};
use self::handshake::Handshaker;
use self::slots::{Refusal, Slot, Slots};
use self::watchdog::{CloseReason, Timeouts, Watchdog};
use crate::config::ConnectionLimits;
use crate::file_body::CHUNK;
use crate::metrics::{ListenerLabel, ListenerReasonLabels, Metrics};

/// hyper's HTTP/1 buffer bound: request heads up to this size, and a response body is asked
/// for its next chunk only once less than this is waiting for the socket.
pub const H1_MAX_BUF: usize = 16 << 10;
/// Concurrent requests on one HTTP/2 connection (each may hold an open file and a chunk).
pub const H2_MAX_STREAMS: u32 = 16;

/// Unsent bytes the kernel queues per connection (`TCP_NOTSENT_LOWAT`): what a client that
/// stops reading costs in kernel memory. Without it the send buffer autotunes up to
/// `tcp_wmem`'s maximum (4 MiB by default): 600 stalled downloads held 1.8 GB of kernel memory
/// in a test, which put the host's TCP stack under memory pressure and stalled every
/// connection, the admin port's included (and a pod's socket memory counts against its memory
/// limit). Bytes in flight are not limited, so throughput is not.
pub const NOTSENT_LOWAT: u32 = 64 << 10;

/// One listening socket and what it allows.
pub struct Listener {
    /// The `listener` label of its metrics: goproxy or admin.
    pub name: &'static str,
    pub socket: TcpListener,
    pub limits: ConnectionLimits,
    /// HTTPS: the connections' TLS; `None`: plain HTTP.
    pub tls: Option<Handshaker>,
}

/// The metrics of one listener, resolved once.
struct Counters {
    open: Gauge,
    accepted: Counter,
    accept_errors: Counter,
    refused: [Counter; 2],
    closed: [Counter; 4],
}

impl Counters {
    fn new(metrics: &Metrics, listener: &'static str, limit: usize) -> Counters {
        let label = ListenerLabel { listener };
        let reason = |reason| ListenerReasonLabels { listener, reason };
        metrics
            .connections_limit
            .get_or_create(&label)
            .set(limit as i64);
        Counters {
            open: metrics.connections_open.get_or_create(&label).clone(),
            accepted: metrics.connections_accepted.get_or_create(&label).clone(),
            accept_errors: metrics.accept_errors.get_or_create(&label).clone(),
            refused: [Refusal::Limit, Refusal::PerIp].map(|r| {
                metrics
                    .connections_refused
                    .get_or_create(&reason(r.as_str()))
                    .clone()
            }),
            closed: [
                CloseReason::HeaderTimeout,
                CloseReason::IdleTimeout,
                CloseReason::SendTimeout,
                CloseReason::Evicted,
            ]
            .map(|r| {
                metrics
                    .connections_closed
                    .get_or_create(&reason(r.as_str()))
                    .clone()
            }),
        }
    }

    fn refused(&self, why: Refusal) -> &Counter {
        &self.refused[why as usize]
    }

    fn closed(&self, why: CloseReason) -> &Counter {
        &self.closed[why as usize]
    }
}

/// What every connection task of a listener shares.
struct Shared {
    builder: Builder<TokioExecutor>,
    router: Router,
    timeouts: Timeouts,
    counters: Counters,
    tls: Option<Handshaker>,
}

fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog times headers: hyper's timeout would also close every kept-alive
        // connection after the header timeout, leaving no separate idle timeout.
        .header_read_timeout(Option::<Duration>::None)
        .max_buf_size(H1_MAX_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_send_buf_size(CHUNK)
        .max_concurrent_streams(H2_MAX_STREAMS);
    builder
}

/// Serves `router` on the listener until `shutdown` resolves, then waits for the open
/// connections to finish (their timeouts still apply).
pub async fn serve(
    listener: Listener,
    router: Router,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = listener.limits;
    let slots = Slots::new(limits.max_connections, limits.max_connections_per_ip);
    let shared = Arc::new(Shared {
        builder: builder(),
        router,
        timeouts: Timeouts::from(&limits),
        counters: Counters::new(&metrics, listener.name, slots.max()),
        tls: listener.tls,
    });
    let graceful = GracefulShutdown::new();
    let last_warning = AtomicU64::new(0);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.socket.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                shared.counters.accept_errors.inc();
                if !is_connection_error(&e) {
                    warn_accept_error(listener.name, &e, &last_warning);
                    // Out of descriptors or memory: let connections end before trying again.
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                }
                continue;
            }
        };
        match slots.admit(peer.ip()) {
            Ok(slot) => {
                shared.counters.accepted.inc();
                shared.counters.open.inc();
                // Two kinds of task, so that a plain connection's future is not sized for a
                // TLS handshake's state.
                if shared.tls.is_some() {
                    tokio::spawn(tls_connection(
                        shared.clone(),
                        tcp,
                        peer,
                        slot,
                        graceful.watcher(),
                    ));
                } else {
                    tokio::spawn(connection(
                        shared.clone(),
                        tcp,
                        peer,
                        slot,
                        graceful.watcher(),
                    ));
                }
            }
            Err(why) => {
                shared.counters.refused(why).inc();
                refuse(tcp, why);
            }
        }
    }
    drop(listener.socket);
    graceful.shutdown().await;
}

async fn connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    watcher: Watcher,
) {
    let fd = tune(&tcp);
    let state = slot.state.clone();
    let io = Watched::new(tcp, state.clone());
    let watchdog = Watchdog::new(state.clone(), shared.timeouts);
    serve_connection(&shared, io, fd, state, peer, watchdog, watcher).await;
    shared.counters.open.dec();
    drop(slot);
}

/// Sets an accepted socket's options; returns its descriptor for [`send_queue`].
fn tune(tcp: &TcpStream) -> std::os::fd::RawFd {
    // No Nagle: a response's last small segment must not wait for the client's delayed ACK
    // (40ms per request on a streamed body).
    let _ = tcp.set_nodelay(true);
    let fd = std::os::fd::AsRawFd::as_raw_fd(tcp);
    send_queue::set_unsent(fd, NOTSENT_LOWAT);
    fd
}

/// [`connection`] over TLS: the handshake first, timed from the accept by the watchdog as the
/// first request's headers are.
async fn tls_connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    watcher: Watcher,
) {
    let fd = tune(&tcp);
    let state = slot.state.clone();
    let mut watchdog = Watchdog::new(state.clone(), shared.timeouts);
    let tls = shared.tls.as_ref().expect("a TLS listener");
    let stream = tokio::select! {
        stream = tls.accept(tcp) => stream,
        reason = &mut watchdog => {
            tracing::debug!(%peer, reason = reason.as_str(), "closing the connection in its TLS handshake");
            shared.counters.closed(reason).inc();
            None
        }
    };
    if let Some(stream) = stream {
        let io = Watched::flushing(stream, state.clone());
        serve_connection(&shared, io, fd, state, peer, watchdog, watcher).await;
    }
    shared.counters.open.dec();
    drop(slot);
}

/// HTTP on one connection (a TCP socket, or the TLS stream over one) until it ends or its
/// watchdog closes it. `fd` is the TCP socket (a large download may deepen its send queue:
/// [`send_queue`]).
async fn serve_connection<I>(
    shared: &Shared,
    socket: Watched<I>,
    fd: std::os::fd::RawFd,
    state: Arc<ConnState>,
    peer: SocketAddr,
    watchdog: Watchdog,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(socket);
    let router = shared.router.clone();
    let requests = state;
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let guard = requests.request_started();
        let mut router = router.clone();
        async move {
            let response =
                tower_service::Service::call(&mut router, request.map(axum::body::Body::new))
                    .await?;
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, guard)))
        }
    });
    let served = send_queue::serve_with(
        fd,
        watcher.watch(shared.builder.serve_connection(io, service)),
    );
    tokio::select! {
        result = served => {
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        }
        reason = watchdog => {
            tracing::debug!(%peer, reason = reason.as_str(), "closing the connection");
            shared.counters.closed(reason).inc();
        }
    }
}

/// A best-effort `503` (written only if the socket takes it at once), then the close.
fn refuse(tcp: TcpStream, why: Refusal) {
    let body = match why {
        Refusal::Limit => "this proxy has too many open connections: try again later\n",
        Refusal::PerIp => "too many open connections from your address: try again later\n",
    };
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.try_write(response.as_bytes());
}

/// Errors of one connection that went away before it was accepted: try the next at once.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// At most one warning per 10 s: a flood must not become a flood of log lines.
fn warn_accept_error(listener: &str, e: &std::io::Error, last: &AtomicU64) {
    let now = activity::now_ms();
    let previous = last.load(Ordering::Relaxed);
    if previous == 0 || now.saturating_sub(previous) >= 10_000 {
        last.store(now, Ordering::Relaxed);
        tracing::warn!(
            listener,
            "cannot accept connections: {e} (counted in modfleet_proxy_accept_errors_total; \
             if it says too many open files, lower --max-connections or raise the hard \
             open-file limit)"
        );
    }
}
