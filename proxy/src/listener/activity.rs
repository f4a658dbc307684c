//! What one connection is doing, recorded where it happens (its socket reads and writes, its
//! requests) and read by its [`super::watchdog`] and by the [`super::slots`] table.
//!
//! Everything is a few relaxed atomics, written on state changes only: no lock and no timer on
//! a request's path.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::task::AtomicWaker;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Milliseconds since the first call, never 0 (0 means "not set" in [`ConnState`]).
pub fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// The instant of a [`now_ms`] value.
pub fn instant_of(ms: u64) -> Instant {
    epoch() + Duration::from_millis(ms.saturating_sub(1))
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The first bytes of every HTTP/2 connection (RFC 9113, 3.4), enough to tell it from HTTP/1.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// Shared state of one connection.
#[derive(Debug)]
pub struct ConnState {
    pub id: u64,
    /// Requests being answered: from the parsed head until the response body is done.
    inflight: AtomicUsize,
    /// When `inflight` last became 0 (or the accept).
    idle_since: AtomicU64,
    /// When the current request's first byte arrived (the accept, for the first request);
    /// 0 while no request is being received or after HTTP/2 was detected.
    head_started: AtomicU64,
    /// Since when the socket has refused response bytes; 0 while writes go through.
    write_blocked_since: AtomicU64,
    h2: AtomicBool,
    evicted: AtomicBool,
    /// The watchdog's waker, to act on an eviction at once.
    waker: AtomicWaker,
}

/// A copy of [`ConnState`] at one instant, for [`super::watchdog::verdict`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub inflight: usize,
    pub idle_since: u64,
    pub head_started: u64,
    pub write_blocked_since: u64,
    pub evicted: bool,
}

impl ConnState {
    /// A connection accepted now: its first request's headers are due.
    pub fn accepted(id: u64) -> Arc<ConnState> {
        let now = now_ms();
        Arc::new(ConnState {
            id,
            inflight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(now),
            head_started: AtomicU64::new(now),
            write_blocked_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            inflight: self.inflight.load(Ordering::Acquire),
            idle_since: self.idle_since.load(Ordering::Relaxed),
            head_started: self.head_started.load(Ordering::Relaxed),
            write_blocked_since: self.write_blocked_since.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Acquire),
        }
    }

    /// No request in progress: may be closed to make room.
    pub fn is_idle(&self) -> bool {
        self.inflight.load(Ordering::Acquire) == 0
    }

    pub fn idle_since(&self) -> u64 {
        self.idle_since.load(Ordering::Relaxed)
    }

    /// Asks the connection's watchdog to close it.
    pub fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn register_watchdog(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// A request's head was parsed: the connection is busy until the guard drops.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    fn on_read(&self, bytes: &[u8], first: bool) {
        if first && bytes.starts_with(H2_PREFACE_START) {
            // Requests arrive as streams; the idle timeout covers the time between them.
            self.h2.store(true, Ordering::Relaxed);
            self.head_started.store(0, Ordering::Relaxed);
            return;
        }
        if self.inflight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Relaxed) == 0
            && !self.h2.load(Ordering::Relaxed)
        {
            self.head_started.store(now_ms(), Ordering::Relaxed);
        }
    }

    fn on_write<T>(&self, result: &Poll<io::Result<T>>, progressed: impl FnOnce(&T) -> bool) {
        match result {
            Poll::Pending => {
                if self.write_blocked_since.load(Ordering::Relaxed) == 0 {
                    self.write_blocked_since.store(now_ms(), Ordering::Relaxed);
                }
            }
            Poll::Ready(Ok(v)) if progressed(v) => {
                if self.write_blocked_since.load(Ordering::Relaxed) != 0 {
                    self.write_blocked_since.store(0, Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => {}
        }
    }
}

/// Marks a request in progress for as long as it lives (moved into the response body).
#[derive(Debug)]
pub struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_since.store(now_ms(), Ordering::Relaxed);
        }
    }
}

/// A response body that keeps its request counted as in progress until it is done.
pub struct Tracked<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, guard: RequestGuard) -> Tracked<B> {
        Tracked {
            inner,
            _guard: guard,
        }
    }
}

impl<B> http_body::Body for Tracked<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that records into [`ConnState`] when request bytes arrive and when the client
/// stops taking response bytes.
pub struct Watched<T> {
    io: T,
    state: Arc<ConnState>,
    read_any: bool,
    /// Whether a flush moves bytes (TLS: what the writes left in rustls' buffer goes to the
    /// socket); a TCP socket's flush does nothing and says nothing.
    flush_sends: bool,
}

impl<T> Watched<T> {
    pub fn new(io: T, state: Arc<ConnState>) -> Watched<T> {
        Watched {
            io,
            state,
            read_any: false,
            flush_sends: false,
        }
    }

    /// Over a TLS stream: a flush that cannot finish (the last bytes of a response wait for a
    /// client that stopped reading) starts the send timeout too, and one that finishes ends it.
    pub fn flushing(io: T, state: Arc<ConnState>) -> Watched<T> {
        Watched {
            flush_sends: true,
            ..Watched::new(io, state)
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let got = &buf.filled()[before..];
            if !got.is_empty() {
                let first = !self.read_any;
                self.read_any = true;
                self.state.on_read(got, first);
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write(cx, buf);
        self.state.on_write(&result, |n| *n > 0);
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.state.on_write(&result, |n| *n > 0);
        result
    }

    /// Forwarded, so hyper queues body chunks instead of copying them into one buffer.
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.io).poll_flush(cx);
        if self.flush_sends {
            self.state.on_write(&result, |()| true);
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_makes_the_connection_busy_until_its_body_is_done() {
        let state = ConnState::accepted(1);
        let s = state.snapshot();
        assert_eq!(s.inflight, 0);
        assert_ne!(
            s.head_started, 0,
            "the first request's headers are due from the accept"
        );
        let guard = state.request_started();
        assert!(!state.is_idle());
        assert_eq!(state.snapshot().head_started, 0);
        let body = Tracked::new(http_body_util_empty(), guard);
        assert!(!state.is_idle());
        drop(body);
        assert!(state.is_idle());
    }

    #[test]
    fn request_bytes_after_idling_start_the_header_clock_but_not_on_http2() {
        let state = ConnState::accepted(1);
        drop(state.request_started());
        assert_eq!(state.snapshot().head_started, 0);
        state.on_read(b"G", false);
        assert_ne!(state.snapshot().head_started, 0);

        let h2 = ConnState::accepted(2);
        h2.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true);
        assert_eq!(h2.snapshot().head_started, 0);
        h2.on_read(b"\0\0\x04\x08", false);
        assert_eq!(
            h2.snapshot().head_started,
            0,
            "frames between streams are not a head"
        );
    }

    #[test]
    fn blocked_writes_are_timed_until_bytes_go_through() {
        let state = ConnState::accepted(1);
        state.on_write::<usize>(&Poll::Pending, |n| *n > 0);
        let since = state.snapshot().write_blocked_since;
        assert_ne!(since, 0);
        state.on_write::<usize>(&Poll::Pending, |n| *n > 0);
        assert_eq!(
            state.snapshot().write_blocked_since,
            since,
            "the first block counts"
        );
        state.on_write(&Poll::Ready(Ok(10usize)), |n| *n > 0);
        assert_eq!(state.snapshot().write_blocked_since, 0);
    }

    /// A socket whose flushes answer as scripted.
    struct Flushes(Vec<Poll<io::Result<()>>>);

    impl AsyncWrite for Flushes {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            b: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(b.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.0.remove(0)
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_tls_flush_that_cannot_finish_is_timed_and_a_tcp_one_is_not() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let script = || Flushes(vec![Poll::Pending, Poll::Ready(Ok(()))]);
        let state = ConnState::accepted(1);
        let mut tls = Watched::flushing(script(), state.clone());
        assert!(Pin::new(&mut tls).poll_flush(&mut cx).is_pending());
        assert_ne!(state.snapshot().write_blocked_since, 0);
        assert!(Pin::new(&mut tls).poll_flush(&mut cx).is_ready());
        assert_eq!(state.snapshot().write_blocked_since, 0);

        let state = ConnState::accepted(2);
        let mut tcp = Watched::new(script(), state.clone());
        assert!(Pin::new(&mut tcp).poll_flush(&mut cx).is_pending());
        assert_eq!(
            state.snapshot().write_blocked_since,
            0,
            "plain TCP: only writes count"
        );
    }

    fn http_body_util_empty() -> axum::body::Body {
        axum::body::Body::empty()
    }
}
