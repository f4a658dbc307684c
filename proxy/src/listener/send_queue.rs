//! Deeper kernel send queues for large downloads, a bounded number at once.
//!
//! Every connection's unsent bytes are bounded by [`super::NOTSENT_LOWAT`] (64 KiB) so that
//! stalled clients cannot pin the host's TCP memory. That bound also paces a large file: the
//! connection wakes, hands the kernel at most one chunk, and waits for the queue to drain
//! below the bound again. Measured on the warm benchmark at 256 connections, the largest zips
//! (a few MiB) went out at a sixth of nginx's rate, and their time is what a latency
//! percentile corrected for coordinated omission reports as p99 (docs/benchmarks/notes.md).
//!
//! A body of [`DEEP_FROM`] bytes or more therefore asks for a deep queue: while it is sent,
//! its connection may queue [`DEEP_UNSENT`] bytes in the kernel and it reads [`DEEP_CHUNK`]
//! bytes at a time. At most [`DEEP_MAX`] bodies hold one, so the extra kernel memory stays
//! below `DEEP_MAX × DEEP_UNSENT` (64 MiB) however many clients stall; the others are sent as
//! before. The queue goes back to the normal bound when the body ends.
//!
//! How a body finds its socket: the connection serves its requests inside a task-local scope
//! holding the socket's descriptor ([`serve_with`]). HTTP/1 handlers and bodies run in the
//! connection's own task, so they see it; HTTP/2 streams run in tasks of their own and share
//! one socket, so they see nothing and keep the normal bound. The descriptor is used only
//! while the body is being polled by that connection, which is when the socket is open.

use std::future::Future;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bodies this large or larger ask for a deep send queue.
pub const DEEP_FROM: u64 = 4 << 20;
/// Unsent bytes a connection with a deep queue may hold in the kernel.
pub const DEEP_UNSENT: u32 = 4 << 20;
/// Bytes read from the file at once for a body with a deep queue (one chunk is what a stalled
/// client holds in user space).
pub const DEEP_CHUNK: usize = 256 << 10;
/// Deep queues held at once, across all connections.
pub const DEEP_MAX: usize = 16;

static IN_USE: AtomicUsize = AtomicUsize::new(0);

tokio::task_local! {
    static SOCKET: RawFd;
}

/// Runs a connection's serving future with its socket known to the bodies it sends.
pub fn serve_with<F: Future>(fd: RawFd, serving: F) -> impl Future<Output = F::Output> {
    SOCKET.scope(fd, serving)
}

/// A deep send queue held by one body; dropping it gives the slot back. [`DeepQueue::finish`]
/// puts the socket back to the normal bound once the body is sent.
#[derive(Debug)]
pub struct DeepQueue {
    fd: RawFd,
    finished: bool,
}

/// A deep queue for a body of `len` bytes, when it is large enough, it runs in a connection's
/// task (HTTP/1) and fewer than [`DEEP_MAX`] are held.
pub fn deepen(len: u64) -> Option<DeepQueue> {
    if len < DEEP_FROM {
        return None;
    }
    let fd = SOCKET.try_with(|fd| *fd).ok()?;
    IN_USE
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < DEEP_MAX).then_some(n + 1)
        })
        .ok()?;
    set_unsent(fd, DEEP_UNSENT);
    Some(DeepQueue {
        fd,
        finished: false,
    })
}

impl DeepQueue {
    /// The body was sent: the connection (kept alive for the next request) goes back to the
    /// normal bound. Called while the connection polls the body, so the socket is open.
    pub fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            set_unsent(self.fd, super::NOTSENT_LOWAT);
        }
    }
}

impl Drop for DeepQueue {
    fn drop(&mut self) {
        // A body dropped unfinished means its HTTP/1 connection is closing (a cut body cannot
        // be followed by another response), so its socket is not touched: it may be closed
        // already and its number reused.
        IN_USE.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Deep queues held now (for tests and metrics).
pub fn in_use() -> usize {
    IN_USE.load(Ordering::Acquire)
}

/// Sets `TCP_NOTSENT_LOWAT`; best effort, as `TCP_NODELAY`.
pub fn set_unsent(fd: RawFd, bytes: u32) {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: callers pass the descriptor of an open socket (the connection's, while it is
    // served); the option value points to a live c_int and its size is given. setsockopt
    // reads it and keeps nothing. On a descriptor that is not a socket it fails harmlessly.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn unsent(fd: RawFd) -> libc::c_int {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: fd is an open socket; value and len are live and sized.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
        value
    }

    /// One test owns the process-wide count (tests in this binary run in parallel).
    #[tokio::test]
    async fn large_bodies_deepen_their_socket_a_bounded_number_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let fd = tcp.as_raw_fd();
        set_unsent(fd, super::super::NOTSENT_LOWAT);

        assert!(deepen(DEEP_FROM).is_none(), "outside a connection: nothing");
        serve_with(fd, async {
            assert!(
                deepen(DEEP_FROM - 1).is_none(),
                "small bodies keep the bound"
            );
            let mut first = deepen(DEEP_FROM).expect("a deep queue");
            assert_eq!(unsent(fd), DEEP_UNSENT as libc::c_int);
            assert_eq!(in_use(), 1);
            first.finish();
            assert_eq!(unsent(fd), super::super::NOTSENT_LOWAT as libc::c_int);
            drop(first);
            assert_eq!(in_use(), 0);

            let held: Vec<_> = (0..DEEP_MAX).map(|_| deepen(DEEP_FROM).unwrap()).collect();
            assert!(deepen(DEEP_FROM).is_none(), "at most DEEP_MAX at once");
            drop(held);
            assert!(deepen(DEEP_FROM).is_some(), "slots come back");
        })
        .await;
        assert_eq!(in_use(), 0);
    }
}
