//! The timers of one connection: which deadline applies now, and closing it when one passes.
//!
//! - **header read** (slowloris): a request's headers must arrive within `header_read_timeout`
//!   of the accept (first request) or of the request's first byte (later ones), like Go's
//!   `ReadHeaderTimeout`. HTTP/1 only: HTTP/2 requests are single frames between idle times.
//! - **idle**: a kept-alive connection with no request in progress is closed after
//!   `idle_timeout` (like Go's `IdleTimeout`).
//! - **send**: a connection whose socket has taken no response byte for `send_timeout` (the
//!   client stopped reading) is closed, whatever else it is doing (like nginx's
//!   `send_timeout`).
//!
//! The watchdog is a future polled beside the connection in the same task, so it runs whenever
//! the connection does and costs a timer only when a deadline changes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use super::activity::{ConnState, Snapshot, instant_of, now_ms};
use crate::config::ConnectionLimits;

/// Why the proxy closed a connection (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    HeaderTimeout,
    IdleTimeout,
    SendTimeout,
    /// Idle, and closed to make room for a new connection at a cap.
    Evicted,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::SendTimeout => "send_timeout",
            CloseReason::Evicted => "evicted",
        }
    }
}

/// The timeouts, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    header_ms: u64,
    idle_ms: u64,
    send_ms: u64,
}

impl From<&ConnectionLimits> for Timeouts {
    fn from(l: &ConnectionLimits) -> Timeouts {
        let ms = |d: Duration| (d.as_millis() as u64).max(1);
        Timeouts {
            header_ms: ms(l.header_read_timeout),
            idle_ms: ms(l.idle_timeout),
            send_ms: ms(l.send_timeout),
        }
    }
}

/// What to do with a connection at `now` (milliseconds of [`now_ms`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Close(CloseReason),
    /// Nothing has expired; look again at this time (always later than `now`).
    CheckAt(u64),
}

pub fn verdict(s: &Snapshot, t: &Timeouts, now: u64) -> Verdict {
    if s.evicted {
        return Verdict::Close(CloseReason::Evicted);
    }
    let mut deadlines: [Option<(u64, Option<CloseReason>)>; 2] = [None, None];
    if s.write_blocked_since != 0 {
        deadlines[0] = Some((
            s.write_blocked_since + t.send_ms,
            Some(CloseReason::SendTimeout),
        ));
    }
    deadlines[1] = Some(if s.inflight > 0 {
        // Busy: nothing to time but the send. Look again later anyway, since requests on
        // other tasks (HTTP/2 streams) change the state without waking this one.
        (now + t.idle_ms, None)
    } else if s.head_started != 0 {
        (
            s.head_started + t.header_ms,
            Some(CloseReason::HeaderTimeout),
        )
    } else {
        (s.idle_since + t.idle_ms, Some(CloseReason::IdleTimeout))
    });
    let (at, reason) = deadlines
        .into_iter()
        .flatten()
        .min_by_key(|(at, _)| *at)
        .expect("one deadline at least");
    match reason {
        Some(reason) if now >= at => Verdict::Close(reason),
        _ => Verdict::CheckAt(at.max(now + 1)),
    }
}

/// Resolves to the reason the connection must close; dropping it (with the connection) is
/// what closes it.
pub struct Watchdog {
    state: Arc<ConnState>,
    timeouts: Timeouts,
    sleep: Pin<Box<Sleep>>,
    /// What `sleep` is set to, in [`now_ms`] milliseconds.
    armed_at: u64,
}

impl Watchdog {
    pub fn new(state: Arc<ConnState>, timeouts: Timeouts) -> Watchdog {
        let first = now_ms() + timeouts.header_ms;
        Watchdog {
            state,
            timeouts,
            sleep: Box::pin(tokio::time::sleep_until(instant_of(first).into())),
            armed_at: first,
        }
    }
}

impl Future for Watchdog {
    type Output = CloseReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReason> {
        let this = &mut *self;
        this.state.register_watchdog(cx.waker());
        // Twice at most: a timer that fired is re-armed once with the deadline it revealed.
        for _ in 0..2 {
            let now = now_ms();
            match verdict(&this.state.snapshot(), &this.timeouts, now) {
                Verdict::Close(reason) => return Poll::Ready(reason),
                Verdict::CheckAt(at) => {
                    // A later deadline does not re-arm the timer: it fires at the earlier one
                    // and finds the later. Only an earlier one (or a fired timer) costs a reset.
                    if at < this.armed_at || this.sleep.is_elapsed() {
                        this.armed_at = at;
                        this.sleep.as_mut().reset(instant_of(at).into());
                    }
                    if this.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header_ms: 10_000,
        idle_ms: 60_000,
        send_ms: 30_000,
    };

    fn idle(since: u64) -> Snapshot {
        Snapshot {
            idle_since: since,
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_fresh_connection_owes_its_headers_within_the_header_timeout() {
        let s = Snapshot {
            idle_since: 1000,
            head_started: 1000,
            ..Snapshot::default()
        };
        assert_eq!(verdict(&s, &T, 5_000), Verdict::CheckAt(11_000));
        assert_eq!(
            verdict(&s, &T, 11_000),
            Verdict::Close(CloseReason::HeaderTimeout)
        );
    }

    #[test]
    fn a_kept_alive_connection_may_idle_longer_than_the_header_timeout() {
        assert_eq!(verdict(&idle(1000), &T, 30_000), Verdict::CheckAt(61_000));
        assert_eq!(
            verdict(&idle(1000), &T, 61_000),
            Verdict::Close(CloseReason::IdleTimeout)
        );
        // Its next request's first byte at 50s: the headers are due by 60s, not 61s.
        let s = Snapshot {
            head_started: 50_000,
            ..idle(1000)
        };
        assert_eq!(verdict(&s, &T, 55_000), Verdict::CheckAt(60_000));
        assert_eq!(
            verdict(&s, &T, 60_000),
            Verdict::Close(CloseReason::HeaderTimeout)
        );
    }

    #[test]
    fn a_busy_connection_is_timed_only_by_its_writes() {
        let busy = Snapshot {
            inflight: 1,
            idle_since: 1000,
            ..Snapshot::default()
        };
        assert_eq!(
            verdict(&busy, &T, 500_000),
            Verdict::CheckAt(560_000),
            "looked at again, never closed while its client takes bytes"
        );
        let stalled = Snapshot {
            write_blocked_since: 400_000,
            ..busy
        };
        assert_eq!(verdict(&stalled, &T, 420_000), Verdict::CheckAt(430_000));
        assert_eq!(
            verdict(&stalled, &T, 430_000),
            Verdict::Close(CloseReason::SendTimeout)
        );
    }

    #[test]
    fn a_client_that_stops_reading_the_end_of_a_response_is_timed_too() {
        // The body is done (not busy), its last bytes wait in the socket.
        let s = Snapshot {
            write_blocked_since: 2000,
            ..idle(1000)
        };
        assert_eq!(
            verdict(&s, &T, 32_000),
            Verdict::Close(CloseReason::SendTimeout)
        );
    }

    #[test]
    fn eviction_wins_over_everything() {
        let s = Snapshot {
            evicted: true,
            inflight: 3,
            ..Snapshot::default()
        };
        assert_eq!(verdict(&s, &T, 1), Verdict::Close(CloseReason::Evicted));
    }

    #[tokio::test]
    async fn the_watchdog_closes_at_the_deadline_and_not_before() {
        let t = Timeouts {
            header_ms: 300,
            idle_ms: 5_000,
            send_ms: 5_000,
        };
        let state = ConnState::accepted(1);
        let started = std::time::Instant::now();
        let reason = Watchdog::new(state.clone(), t).await;
        assert_eq!(reason, CloseReason::HeaderTimeout);
        assert!(started.elapsed() >= Duration::from_millis(299));

        let state = ConnState::accepted(2);
        let dog = tokio::spawn(Watchdog::new(state.clone(), t));
        tokio::task::yield_now().await;
        state.evict();
        assert_eq!(dog.await.unwrap(), CloseReason::Evicted);
    }
}
