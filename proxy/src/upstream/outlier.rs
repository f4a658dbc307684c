//! Latency-outlier demotion (as Envoy's outlier detection ejects failing hosts, but for
//! latency): an upstream whose recent time to headers is far above a healthy alternative's is
//! asked after the healthy, faster upstreams for a while, so requests stop waiting for it.
//!
//! - Samples: the time to response headers of each attempt (and of each health probe), kept for
//!   the last [`WINDOW`] attempts. An attempt dropped before its headers (another upstream's
//!   answer won the hedge) or that timed out counts with the time it had waited: a lower bound,
//!   so what is learnt from it errs towards "not slow".
//! - Demotion: with at least [`MIN_SAMPLES`] samples, an upstream whose median is at or above
//!   [`threshold`] of the best (lowest p95) healthy, undemoted alternative — [`FACTOR`] times
//!   that p95 and at least [`FLOOR`] — is demoted for [`BASE_DEMOTION`], doubled on each
//!   further demotion up to [`MAX_DEMOTION`] (the count is forgotten after [`MAX_DEMOTION`]
//!   without one).
//! - Recovery: once the demotion time is over, one request puts the upstream back in its place
//!   (a trial; its hedge delay is the threshold, so it costs at most that). A trial answered
//!   under the threshold restores the upstream (its old samples are dropped); one at or above
//!   it demotes it again, for longer. So its statistics are refreshed even when nothing else
//!   asks it.
//! - The plan moves a demoted upstream only behind healthy undemoted ones: when every healthy
//!   upstream is demoted, the order is the configured one.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use modfleet_contract::status::Demotion;

use super::UpstreamPool;
use super::health::percentile;
use crate::metrics::UpstreamLabel;

/// An upstream is an outlier when its median is this many times the alternative's p95...
pub const FACTOR: u32 = 3;
/// ...and at least this: below it, a slower upstream is not worth leaving priority order for.
/// It is also the shortest automatic hedge delay towards a fast next upstream, so it is what
/// the requests made before an outlier is recognised pay (the bench's failover scenario: a
/// 200 ms floor left p99 at 230-300 ms, 100 ms at 137-144 ms, secondary alone 16-110 ms).
pub const FLOOR: Duration = Duration::from_millis(100);
/// Samples needed before an upstream is judged.
pub const MIN_SAMPLES: usize = 5;
/// Samples kept per upstream (recent behaviour only).
pub const WINDOW: usize = 32;
/// First demotion time; doubled on each further demotion.
pub const BASE_DEMOTION: Duration = Duration::from_secs(30);
/// Longest demotion time, and how long after a recovery the demotion count is forgotten.
pub const MAX_DEMOTION: Duration = Duration::from_secs(300);
/// A trial whose attempt never reported (its request ended before reaching it) is given to
/// another request after this long.
const TRIAL_CLAIM: Duration = Duration::from_secs(30);

/// The time to headers at or above which an upstream is an outlier, given the p95 of the best
/// alternative.
pub fn threshold(reference_p95: Duration) -> Duration {
    reference_p95.saturating_mul(FACTOR).max(FLOOR)
}

/// What a sample changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    None,
    Demoted { for_: Duration, reason: String },
    Restored,
}

/// One upstream's samples and demotion state. Pure: the caller passes the time and the
/// reference (the best alternative's p95 and name).
#[derive(Debug, Default)]
pub struct OutlierState {
    samples: VecDeque<Duration>,
    demoted_until: Option<Instant>,
    demotions: u32,
    restored_at: Option<Instant>,
    trial_since: Option<Instant>,
    reason: String,
}

impl OutlierState {
    /// Records one time to headers (`censored`: the attempt was dropped or timed out before its
    /// headers, so the real time is at least this).
    pub fn record(
        &mut self,
        latency: Duration,
        censored: bool,
        reference: Option<(Duration, &str)>,
        now: Instant,
    ) -> Change {
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(latency);
        let trial = self
            .trial_since
            .is_some_and(|t| now.duration_since(t) < TRIAL_CLAIM);
        if self.demoted_until.is_some() {
            if !trial {
                return Change::None; // what it does while demoted is judged at its trial
            }
            self.trial_since = None;
            let Some((p95, name)) = reference else {
                return self.restore(latency, now); // no faster alternative left
            };
            let limit = threshold(p95);
            if latency >= limit {
                let reason = format!(
                    "trial took {} ms >= {} ms ({FACTOR} x p95 {} ms of {name}, at least {} ms)",
                    latency.as_millis(),
                    limit.as_millis(),
                    p95.as_millis(),
                    FLOOR.as_millis()
                );
                self.demote(reason, now)
            } else if censored {
                // Dropped early (a short fixed hedge delay): inconclusive; try again later.
                self.demoted_until = Some(now + BASE_DEMOTION);
                Change::None
            } else {
                self.restore(latency, now)
            }
        } else {
            let Some((p95, name)) = reference else {
                return Change::None;
            };
            let limit = threshold(p95);
            match self.p50() {
                Some(p50) if self.samples.len() >= MIN_SAMPLES && p50 >= limit => {
                    let reason = format!(
                        "p50 {} ms >= {} ms ({FACTOR} x p95 {} ms of {name}, at least {} ms)",
                        p50.as_millis(),
                        limit.as_millis(),
                        p95.as_millis(),
                        FLOOR.as_millis()
                    );
                    self.demote(reason, now)
                }
                _ => Change::None,
            }
        }
    }

    fn demote(&mut self, reason: String, now: Instant) -> Change {
        if self
            .restored_at
            .is_some_and(|r| now.duration_since(r) >= MAX_DEMOTION)
        {
            self.demotions = 0;
        }
        let for_ = BASE_DEMOTION
            .saturating_mul(1 << self.demotions.min(16))
            .min(MAX_DEMOTION);
        self.demotions += 1;
        self.demoted_until = Some(now + for_);
        self.reason = reason.clone();
        Change::Demoted { for_, reason }
    }

    fn restore(&mut self, latency: Duration, now: Instant) -> Change {
        self.samples.clear();
        self.samples.push_back(latency);
        self.demoted_until = None;
        self.restored_at = Some(now);
        self.reason.clear();
        Change::Restored
    }

    /// Demoted (whether or not its trial is due).
    pub fn is_demoted(&self) -> bool {
        self.demoted_until.is_some()
    }

    /// Takes the trial of a demoted upstream whose demotion time is over, if no other request
    /// holds it: true when this request is the trial.
    pub fn claim_trial(&mut self, now: Instant) -> bool {
        let due = self.demoted_until.is_some_and(|t| now >= t);
        let held = self
            .trial_since
            .is_some_and(|t| now.duration_since(t) < TRIAL_CLAIM);
        if due && !held {
            self.trial_since = Some(now);
            true
        } else {
            false
        }
    }

    pub fn p50(&self) -> Option<Duration> {
        percentile(&self.samples, 0.50)
    }

    /// The p95 of recent samples (one is enough: it is used as a reference, never below
    /// [`FLOOR`]).
    pub fn p95(&self) -> Option<Duration> {
        percentile(&self.samples, 0.95)
    }

    /// For `/status`.
    fn demotion(&self, now: Instant) -> Option<Demotion> {
        let until = self.demoted_until?;
        let wall = SystemTime::now() + until.saturating_duration_since(now);
        Some(Demotion {
            until_unix: wall
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            count: self.demotions,
            reason: self.reason.clone(),
        })
    }
}

/// The lock-protected state of one upstream; never held across an await.
#[derive(Debug, Default)]
pub struct Outlier(Mutex<OutlierState>);

impl Outlier {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, OutlierState> {
        self.0.lock().expect("outlier state poisoned")
    }
}

impl UpstreamPool {
    fn outliers_on(&self) -> bool {
        self.settings.outlier_latency
    }

    /// The best alternative to member `i`: the lowest recent p95 among the other healthy,
    /// undemoted members, with its name.
    fn reference(&self, i: usize) -> Option<(Duration, &str)> {
        self.members
            .iter()
            .enumerate()
            .filter(|(j, m)| *j != i && m.health.is_healthy())
            .filter_map(|(_, m)| {
                let o = m.outlier.lock();
                (!o.is_demoted())
                    .then(|| o.p95())
                    .flatten()
                    .map(|p| (p, m.endpoint.name.as_str()))
            })
            .min_by_key(|(p, _)| *p)
    }

    /// Records a time to headers of member `i` (see the module documentation), and logs and
    /// publishes a demotion or recovery.
    pub(super) fn record_latency(&self, i: usize, latency: Duration, censored: bool) {
        if !self.outliers_on() {
            return;
        }
        let reference = self.reference(i);
        let m = &self.members[i];
        let change = m
            .outlier
            .lock()
            .record(latency, censored, reference, Instant::now());
        match change {
            Change::None => return,
            Change::Demoted { for_, reason } => tracing::warn!(
                upstream = %m.endpoint.name,
                for_s = for_.as_secs(),
                %reason,
                "upstream demoted as a latency outlier: asked after faster healthy upstreams"
            ),
            Change::Restored => tracing::info!(
                upstream = %m.endpoint.name,
                latency_ms = latency.as_millis() as u64,
                "latency outlier recovered: upstream back in priority order"
            ),
        }
        self.publish_demoted(i);
    }

    pub(super) fn publish_demoted(&self, i: usize) {
        let m = &self.members[i];
        self.metrics
            .upstream_demoted
            .get_or_create(&UpstreamLabel {
                upstream: m.endpoint.name.clone(),
            })
            .set(i64::from(m.outlier.lock().is_demoted()));
    }

    /// Reorders the healthy members of a plan: demoted ones after the undemoted ones, unless
    /// every one is demoted (then the order is kept). A demoted member whose trial is due keeps
    /// its place for this request (one request at a time).
    pub(super) fn demote_in_plan(&self, healthy: Vec<usize>, now: Instant) -> Vec<usize> {
        if !self.outliers_on() {
            return healthy;
        }
        let demoted: Vec<bool> = healthy
            .iter()
            .map(|&i| self.members[i].outlier.lock().is_demoted())
            .collect();
        if !demoted.contains(&true) || !demoted.contains(&false) {
            return healthy;
        }
        order_demoted(&healthy, &demoted, |i| {
            self.members[i].outlier.lock().claim_trial(now)
        })
    }

    /// The automatic hedge delay's bound from the next upstream: the outlier threshold of what
    /// `backup` usually takes (None when nothing is known of it, or outlier detection is off).
    pub(super) fn hedge_bound(&self, backup: Option<usize>) -> Option<Duration> {
        if !self.outliers_on() {
            return None;
        }
        backup
            .and_then(|j| self.members[j].outlier.lock().p95())
            .map(threshold)
    }

    /// For `/status`: the bound from the best alternative to member `i`.
    pub(super) fn hedge_bound_for(&self, i: usize) -> Option<Duration> {
        if !self.outliers_on() {
            return None;
        }
        self.reference(i).map(|(p, _)| threshold(p))
    }

    pub(super) fn demotion(&self, i: usize) -> Option<Demotion> {
        self.members[i].outlier.lock().demotion(Instant::now())
    }
}

/// `healthy` with its demoted members moved to the end (each keeping its relative order),
/// except one whose trial `claim` takes.
fn order_demoted(
    healthy: &[usize],
    demoted: &[bool],
    mut claim: impl FnMut(usize) -> bool,
) -> Vec<usize> {
    let mut first = Vec::with_capacity(healthy.len());
    let mut last = Vec::new();
    for (&i, &d) in healthy.iter().zip(demoted) {
        if d && !claim(i) {
            last.push(i);
        } else {
            first.push(i);
        }
    }
    first.extend(last);
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn fast() -> Option<(Duration, &'static str)> {
        Some((5 * MS, "http://fast"))
    }

    fn slow_state(t0: Instant) -> OutlierState {
        let mut s = OutlierState::default();
        for n in 0..MIN_SAMPLES {
            let change = s.record(2000 * MS, false, fast(), t0);
            if n + 1 < MIN_SAMPLES {
                assert_eq!(
                    change,
                    Change::None,
                    "judged only after {MIN_SAMPLES} samples"
                );
            }
        }
        s
    }

    #[test]
    fn threshold_is_a_factor_of_the_reference_with_a_floor() {
        assert_eq!(threshold(5 * MS), FLOOR);
        assert_eq!(threshold(100 * MS), 300 * MS);
    }

    #[test]
    fn a_slow_upstream_is_demoted_once_it_has_enough_samples() {
        let t0 = Instant::now();
        let s = slow_state(t0);
        assert!(s.is_demoted());
        assert!(s.reason.contains("p50 2000 ms >= 100 ms"), "{}", s.reason);
        assert_eq!(s.demoted_until, Some(t0 + BASE_DEMOTION));
    }

    #[test]
    fn slower_but_under_the_floor_or_factor_is_not_demoted() {
        let t0 = Instant::now();
        let mut s = OutlierState::default();
        for _ in 0..10 {
            // 80 ms vs 5 ms: 16x slower, but under the floor.
            assert_eq!(s.record(80 * MS, false, fast(), t0), Change::None);
        }
        let mut s2 = OutlierState::default();
        for _ in 0..10 {
            // 250 ms vs a 100 ms p95: over the floor, under 3x.
            s2.record(250 * MS, false, Some((100 * MS, "http://b")), t0);
        }
        assert!(!s.is_demoted() && !s2.is_demoted());
        let mut alone = OutlierState::default();
        for _ in 0..10 {
            alone.record(5000 * MS, false, None, t0);
        }
        assert!(
            !alone.is_demoted(),
            "no alternative: nothing to demote it behind"
        );
    }

    #[test]
    fn a_fast_trial_restores_and_a_slow_one_demotes_for_longer() {
        let t0 = Instant::now();
        let mut s = slow_state(t0);
        assert!(!s.claim_trial(t0 + BASE_DEMOTION - MS), "not due yet");
        // While demoted, samples without a trial change nothing.
        assert_eq!(s.record(2 * MS, false, fast(), t0 + 10 * MS), Change::None);
        let t1 = t0 + BASE_DEMOTION;
        assert!(s.claim_trial(t1));
        assert!(!s.claim_trial(t1), "one trial at a time");
        // A trial dropped at 210 ms (the hedge won): still slow, demoted for twice as long.
        assert!(matches!(
            s.record(210 * MS, true, fast(), t1),
            Change::Demoted { for_, .. } if for_ == 2 * BASE_DEMOTION
        ));
        let t2 = t1 + 2 * BASE_DEMOTION;
        assert!(s.claim_trial(t2));
        assert_eq!(s.record(4 * MS, false, fast(), t2), Change::Restored);
        assert!(!s.is_demoted());
        assert_eq!(s.samples.len(), 1, "old samples are dropped on recovery");
        // Slow again soon after: the count goes on (4x); long after, it starts over.
        let again = |s: &mut OutlierState, at: Instant| {
            for _ in 0..MIN_SAMPLES {
                s.record(2000 * MS, false, fast(), at);
            }
            s.demoted_until.unwrap() - at
        };
        assert_eq!(again(&mut s, t2 + MS), 4 * BASE_DEMOTION);
        let t3 = t2 + 5 * BASE_DEMOTION;
        assert!(s.claim_trial(t3));
        s.record(4 * MS, false, fast(), t3);
        assert_eq!(again(&mut s, t3 + MAX_DEMOTION), BASE_DEMOTION);
    }

    #[test]
    fn an_early_dropped_trial_is_inconclusive_and_an_unreported_one_expires() {
        let t0 = Instant::now();
        let mut s = slow_state(t0);
        let t1 = t0 + BASE_DEMOTION;
        assert!(s.claim_trial(t1));
        assert_eq!(s.record(50 * MS, true, fast(), t1), Change::None);
        assert!(s.is_demoted());
        assert!(!s.claim_trial(t1 + MS), "the next trial waits again");
        let t2 = t1 + BASE_DEMOTION;
        assert!(s.claim_trial(t2));
        assert!(!s.claim_trial(t2 + TRIAL_CLAIM - MS));
        assert!(
            s.claim_trial(t2 + TRIAL_CLAIM),
            "a trial that never reported is given to another request"
        );
    }

    #[test]
    fn demotion_times_are_bounded() {
        let t0 = Instant::now();
        let mut s = slow_state(t0);
        let mut t = t0;
        for _ in 0..20 {
            t = s.demoted_until.unwrap();
            assert!(s.claim_trial(t));
            s.record(2000 * MS, false, fast(), t);
        }
        assert_eq!(s.demoted_until.unwrap() - t, MAX_DEMOTION);
    }

    #[test]
    fn demoted_members_go_after_the_others_unless_on_trial() {
        // Members 0..4 in plan order; 0 and 2 demoted.
        let healthy = [0, 1, 2, 3];
        let demoted = [true, false, true, false];
        assert_eq!(order_demoted(&healthy, &demoted, |_| false), [1, 3, 0, 2]);
        assert_eq!(order_demoted(&healthy, &demoted, |i| i == 0), [0, 1, 3, 2]);
        assert_eq!(
            order_demoted(&healthy, &[false; 4], |_| unreachable!()),
            healthy
        );
    }
}
