//! What the proxy knows about one upstream's health: the circuit breaker, the active probe's
//! verdict, latency samples (for percentiles and the hedge delay) and recent errors.
//!
//! The breaker opens after `failures` consecutive failed attempts (connection errors, timeouts,
//! 5xx, 429, answers that fail verification; 404/410 are successes: the upstream works), or at
//! once on a 429, for at least its `Retry-After`. While open, attempts fail fast. After the open
//! period one trial attempt is let through (half-open); its success closes the breaker, its
//! failure opens it again for twice as long (up to [`MAX_OPEN`]).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

pub use modfleet_contract::status::BreakerState;
use modfleet_contract::status::{LastError, Percentiles, ProbeState, UpstreamHealth};

/// Longest time a breaker stays open after repeated trips.
pub const MAX_OPEN: Duration = Duration::from_secs(300);
/// Latency samples kept per upstream.
const SAMPLES: usize = 256;
/// Outcomes kept for the error rate.
const OUTCOMES: usize = 100;
/// Bodies smaller than this say nothing about an upstream's throughput.
pub const RATE_MIN_BYTES: u64 = 256 << 10;
/// Weight of the newest sample in the body-throughput average.
const RATE_WEIGHT: f64 = 0.2;
/// Consecutive failed probes after which an upstream is considered down.
const PROBE_FAILURES_DOWN: u32 = 2;

/// Breaker settings.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// First open period; doubled on each further trip.
    pub open_for: Duration,
}

/// For the breaker-state gauge: 0 closed, 1 half-open, 2 open.
pub fn breaker_gauge(state: BreakerState) -> i64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::HalfOpen => 1,
        BreakerState::Open => 2,
    }
}

/// How an attempt ended, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// 429 Too Many Requests: opens the breaker at once, for at least this long.
    Throttled(Option<Duration>),
}

#[derive(Debug)]
struct State {
    breaker: BreakerState,
    consecutive_failures: u32,
    trips: u32,
    open_until: Option<Instant>,
    trial_in_flight: bool,
    probe_failures: u32,
    probe_seen: bool,
    latencies: VecDeque<Duration>,
    outcomes: VecDeque<bool>,
    requests: u64,
    last_error: Option<(String, SystemTime)>,
    /// Moving average of body throughput (bytes per second) over bodies large enough to say.
    body_rate: Option<f64>,
}

/// A permission to send one attempt; a half-open trial must report back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Go,
    Trial,
    Refused,
}

/// The health record of one upstream. Cheap, lock-protected; never held across an await.
#[derive(Debug)]
pub struct Health {
    settings: BreakerSettings,
    state: Mutex<State>,
}

impl Health {
    pub fn new(settings: BreakerSettings) -> Health {
        Health {
            settings,
            state: Mutex::new(State {
                breaker: BreakerState::Closed,
                consecutive_failures: 0,
                trips: 0,
                open_until: None,
                trial_in_flight: false,
                probe_failures: 0,
                probe_seen: false,
                latencies: VecDeque::with_capacity(SAMPLES),
                outcomes: VecDeque::with_capacity(OUTCOMES),
                requests: 0,
                last_error: None,
                body_rate: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("health state poisoned")
    }

    /// May an attempt go to this upstream now?
    pub fn permit(&self, now: Instant) -> Permit {
        let mut s = self.lock();
        match s.breaker {
            BreakerState::Closed => Permit::Go,
            BreakerState::Open => {
                if s.open_until.is_some_and(|t| now >= t) {
                    s.breaker = BreakerState::HalfOpen;
                    s.trial_in_flight = true;
                    Permit::Trial
                } else {
                    Permit::Refused
                }
            }
            BreakerState::HalfOpen => {
                if s.trial_in_flight {
                    Permit::Refused
                } else {
                    s.trial_in_flight = true;
                    Permit::Trial
                }
            }
        }
    }

    /// Records the end of an attempt. `latency`: time until the answer's headers.
    pub fn record(
        &self,
        outcome: Outcome,
        latency: Option<Duration>,
        error: Option<&str>,
        now: Instant,
    ) {
        let mut s = self.lock();
        s.requests += 1;
        if let Some(l) = latency {
            if s.latencies.len() == SAMPLES {
                s.latencies.pop_front();
            }
            s.latencies.push_back(l);
        }
        if s.outcomes.len() == OUTCOMES {
            s.outcomes.pop_front();
        }
        s.outcomes.push_back(outcome == Outcome::Success);
        if let Some(e) = error {
            s.last_error = Some((e.to_string(), SystemTime::now()));
        }
        s.trial_in_flight = false;
        match outcome {
            Outcome::Success => {
                s.consecutive_failures = 0;
                if s.breaker != BreakerState::Closed {
                    tracing::info!("circuit breaker closed after a successful trial");
                }
                s.breaker = BreakerState::Closed;
                s.trips = 0;
                s.open_until = None;
            }
            Outcome::Failure | Outcome::Throttled(_) => {
                s.consecutive_failures += 1;
                let trip = match (s.breaker, outcome) {
                    (BreakerState::HalfOpen, _) => true,
                    (_, Outcome::Throttled(_)) => true,
                    (BreakerState::Closed, _) => s.consecutive_failures >= self.settings.failures,
                    (BreakerState::Open, _) => false,
                };
                if trip {
                    let factor = 1u32 << s.trips.min(16);
                    let mut open = self.settings.open_for.saturating_mul(factor).min(MAX_OPEN);
                    if let Outcome::Throttled(Some(retry_after)) = outcome {
                        open = open.max(retry_after.min(MAX_OPEN));
                    }
                    s.breaker = BreakerState::Open;
                    s.open_until = Some(now + open);
                    s.trips += 1;
                }
            }
        }
    }

    /// Releases a half-open trial that ended without a verdict (cancelled hedge, local error).
    pub fn release_trial(&self) {
        self.lock().trial_in_flight = false;
    }

    /// Records an active probe's result. A successful probe after the open period is the
    /// half-open trial: it closes the breaker. (Without it, an upstream that traffic no longer
    /// reaches because others are healthy would stay open for ever.)
    pub fn record_probe(&self, ok: bool, error: Option<&str>, now: Instant) {
        let mut s = self.lock();
        s.probe_seen = true;
        if ok {
            s.probe_failures = 0;
            let trial_due = match s.breaker {
                BreakerState::Open => s.open_until.is_some_and(|t| now >= t),
                BreakerState::HalfOpen => !s.trial_in_flight,
                BreakerState::Closed => false,
            };
            if trial_due {
                s.breaker = BreakerState::Closed;
                s.consecutive_failures = 0;
                s.trips = 0;
                s.open_until = None;
            }
        } else {
            s.probe_failures += 1;
            if let Some(e) = error {
                s.last_error = Some((format!("health probe: {e}"), SystemTime::now()));
            }
        }
    }

    /// Records the throughput of a body that took `elapsed` to read after its headers. Only
    /// bodies of at least [`RATE_MIN_BYTES`] count: a small body's time is all latency.
    pub fn record_body(&self, bytes: u64, elapsed: Duration) {
        if bytes < RATE_MIN_BYTES || elapsed < Duration::from_millis(1) {
            return;
        }
        let rate = bytes as f64 / elapsed.as_secs_f64();
        let mut s = self.lock();
        s.body_rate = Some(match s.body_rate {
            None => rate,
            Some(avg) => avg + RATE_WEIGHT * (rate - avg),
        });
    }

    /// The moving average of body throughput in bytes per second, once a large body was read.
    pub fn body_rate(&self) -> Option<f64> {
        self.lock().body_rate
    }

    /// p95 time to the answer's headers, once there are enough samples to say.
    pub fn p95(&self) -> Option<Duration> {
        let s = self.lock();
        if s.latencies.len() < 20 {
            return None;
        }
        percentile(&s.latencies, 0.95)
    }

    pub fn breaker(&self) -> BreakerState {
        self.lock().breaker
    }

    /// Healthy: the breaker is not open and the active probe is not failing.
    pub fn is_healthy(&self) -> bool {
        let s = self.lock();
        s.breaker != BreakerState::Open && s.probe_failures < PROBE_FAILURES_DOWN
    }

    /// A copy of the health record, for `/status`.
    pub fn snapshot(&self) -> UpstreamHealth {
        let s = self.lock();
        let failures = s.outcomes.iter().filter(|ok| !**ok).count();
        let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 1e5).round() / 100.0);
        UpstreamHealth {
            healthy: s.breaker != BreakerState::Open && s.probe_failures < PROBE_FAILURES_DOWN,
            breaker: s.breaker,
            probe: match (s.probe_seen, s.probe_failures) {
                (false, _) => ProbeState::Unknown,
                (true, 0) => ProbeState::Ok,
                _ => ProbeState::Failing,
            },
            latency_ms: Percentiles {
                p50: ms(percentile(&s.latencies, 0.50)),
                p95: ms(percentile(&s.latencies, 0.95)),
                p99: ms(percentile(&s.latencies, 0.99)),
            },
            error_rate: if s.outcomes.is_empty() {
                0.0
            } else {
                failures as f64 / s.outcomes.len() as f64
            },
            requests: s.requests,
            consecutive_failures: s.consecutive_failures,
            last_error: s.last_error.as_ref().map(|(m, at)| LastError {
                message: m.clone(),
                at_unix: at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            }),
        }
    }
}

/// The nearest-rank `q` quantile of `samples` (health statistics and latency outliers).
pub(super) fn percentile(samples: &VecDeque<Duration>, q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut v: Vec<Duration> = samples.iter().copied().collect();
    v.sort_unstable();
    let idx = ((v.len() as f64 - 1.0) * q).round() as usize;
    Some(v[idx.min(v.len() - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health::new(BreakerSettings {
            failures: 3,
            open_for: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_fails_fast() {
        let h = health();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(h.permit(t0), Permit::Go);
            h.record(Outcome::Failure, None, Some("500"), t0);
        }
        assert_eq!(h.breaker(), BreakerState::Closed);
        h.record(Outcome::Success, None, None, t0);
        for _ in 0..3 {
            h.record(Outcome::Failure, None, Some("500"), t0);
        }
        assert_eq!(h.breaker(), BreakerState::Open);
        assert!(!h.is_healthy());
        assert_eq!(h.permit(t0 + Duration::from_secs(9)), Permit::Refused);
    }

    #[test]
    fn half_open_lets_one_trial_through_and_closes_on_success() {
        let h = health();
        let t0 = Instant::now();
        for _ in 0..3 {
            h.record(Outcome::Failure, None, None, t0);
        }
        let later = t0 + Duration::from_secs(11);
        assert_eq!(h.permit(later), Permit::Trial);
        assert_eq!(h.breaker(), BreakerState::HalfOpen);
        assert_eq!(h.permit(later), Permit::Refused, "one trial at a time");
        h.record(
            Outcome::Success,
            Some(Duration::from_millis(5)),
            None,
            later,
        );
        assert_eq!(h.breaker(), BreakerState::Closed);
        assert_eq!(h.permit(later), Permit::Go);
    }

    #[test]
    fn a_failed_trial_reopens_for_longer() {
        let h = health();
        let t0 = Instant::now();
        for _ in 0..3 {
            h.record(Outcome::Failure, None, None, t0);
        }
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(h.permit(t1), Permit::Trial);
        h.record(Outcome::Failure, None, None, t1);
        assert_eq!(h.breaker(), BreakerState::Open);
        // Second trip: open for 20s.
        assert_eq!(h.permit(t1 + Duration::from_secs(15)), Permit::Refused);
        assert_eq!(h.permit(t1 + Duration::from_secs(21)), Permit::Trial);
    }

    #[test]
    fn throttling_opens_at_once_for_retry_after() {
        let h = health();
        let t0 = Instant::now();
        h.record(
            Outcome::Throttled(Some(Duration::from_secs(60))),
            None,
            Some("429"),
            t0,
        );
        assert_eq!(h.breaker(), BreakerState::Open);
        assert_eq!(h.permit(t0 + Duration::from_secs(30)), Permit::Refused);
        assert_eq!(h.permit(t0 + Duration::from_secs(61)), Permit::Trial);
    }

    #[test]
    fn probes_mark_an_upstream_down_after_two_failures() {
        let h = health();
        let t = Instant::now();
        assert_eq!(h.snapshot().probe, ProbeState::Unknown);
        h.record_probe(false, Some("connection refused"), t);
        assert!(h.is_healthy());
        h.record_probe(false, Some("connection refused"), t);
        assert!(!h.is_healthy());
        assert_eq!(h.snapshot().probe, ProbeState::Failing);
        h.record_probe(true, None, t);
        assert!(h.is_healthy());
    }

    #[test]
    fn a_successful_probe_after_the_open_period_closes_the_breaker() {
        let h = health();
        let t0 = Instant::now();
        for _ in 0..3 {
            h.record(Outcome::Failure, None, None, t0);
        }
        h.record_probe(true, None, t0 + Duration::from_secs(5));
        assert_eq!(h.breaker(), BreakerState::Open, "too early: still open");
        h.record_probe(true, None, t0 + Duration::from_secs(11));
        assert_eq!(h.breaker(), BreakerState::Closed);
    }

    #[test]
    fn percentiles_and_error_rate() {
        let h = health();
        let t = Instant::now();
        for i in 1..=100u64 {
            let outcome = if i % 10 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            h.record(outcome, Some(Duration::from_millis(i)), None, t);
        }
        let s = h.snapshot();
        assert_eq!(s.latency_ms.p50, Some(51.0));
        assert_eq!(s.latency_ms.p99, Some(99.0));
        assert!((s.error_rate - 0.1).abs() < 1e-9);
        assert_eq!(h.p95(), Some(Duration::from_millis(95)));
    }
}
