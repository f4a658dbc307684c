//! The pool of upstreams: a request's passes over its plan, hedging, retries, and what each
//! attempt teaches about an upstream's health.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http::StatusCode;
use tracing::Instrument;

use super::health::{BreakerSettings, Health, Outcome, Permit, breaker_gauge};
use super::outlier::Outlier;
use super::plan::{Member, Step, Verdict};
use super::response::{Progress, UpstreamResponse, send};
use super::{AttemptError, Endpoint, PoolError, Target};
use crate::config::{HedgeDelay, Resilience, Sumdb, Upstream as UpstreamConfig};
use crate::metrics::{Metrics, TraceExemplar, UpstreamLabel, UpstreamLabels};
use modfleet_contract::status::UpstreamStatus;

/// Bounds of an automatic hedge delay, and its value before enough latency samples exist.
const HEDGE_MIN: Duration = Duration::from_millis(20);
const HEDGE_MAX: Duration = Duration::from_secs(1);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed per request (public mirrors redirect zips to storage; a loop stops here).
pub const MAX_REDIRECTS: usize = 5;

/// A body is judged for slowness only after this long since its headers (TCP ramps up).
const BODY_GRACE: Duration = Duration::from_secs(1);
/// How often a body in flight is judged again.
const BODY_CHECK_EVERY: Duration = Duration::from_millis(250);
/// A body slower than the next upstream's observed throughput divided by this gives way.
const SLOW_FACTOR: f64 = 10.0;
/// A body slower than this gives way when nothing is known of the next upstream's throughput.
const SLOW_BODY_FLOOR: f64 = 64.0 * 1024.0;

type Attempt<'a, T> = Pin<Box<dyn Future<Output = (usize, Result<T, AttemptError>)> + Send + 'a>>;

/// The configured upstreams, their health, and the logic of asking them.
#[derive(Debug)]
pub struct UpstreamPool {
    pub(super) client: reqwest::Client,
    pub(super) members: Vec<Member>,
    pub(super) sumdbs: Vec<(String, Endpoint)>,
    pub(super) settings: Resilience,
    pub(super) metrics: Arc<Metrics>,
}

/// For an attempt dropped before recording an outcome (another answer won): releases its
/// half-open trial permit, and records how long it waited for headers (a lower bound when
/// they had not come) for latency-outlier detection.
struct AttemptGuard<'a> {
    health: Option<&'a Health>,
    waited: Option<(&'a UpstreamPool, usize, Arc<Progress>)>,
}

impl Drop for AttemptGuard<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.health {
            h.release_trial();
        }
        if let Some((pool, i, progress)) = self.waited.take() {
            match progress.answered_at() {
                Some(at) => pool.record_latency(i, at.duration_since(progress.started), false),
                None => pool.record_latency(i, progress.started.elapsed(), true),
            }
        }
    }
}

impl UpstreamPool {
    pub fn new(
        upstreams: &[UpstreamConfig],
        sumdbs: &[Sumdb],
        settings: Resilience,
        metrics: Arc<Metrics>,
    ) -> Result<UpstreamPool, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(redirect_policy())
            .user_agent(concat!("modfleet-proxy/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        let default_timeout = upstreams
            .iter()
            .map(|u| u.timeout)
            .max()
            .unwrap_or(Duration::from_secs(30));
        let breaker = BreakerSettings {
            failures: settings.breaker.failures,
            open_for: settings.breaker.open_for.get(),
        };
        let pool = UpstreamPool {
            client,
            members: upstreams
                .iter()
                .map(|u| Member {
                    endpoint: Endpoint::new(&u.url, u.timeout, u.credentials.clone()),
                    priority: u.priority,
                    weight: u.weight,
                    health: Health::new(breaker),
                    outlier: Outlier::default(),
                })
                .collect(),
            sumdbs: sumdbs
                .iter()
                .map(|s| {
                    // A database's direct URL never gets an upstream's credentials, even on
                    // the same host: only the upstream's own /sumdb/ endpoint does.
                    (s.name.clone(), Endpoint::new(&s.url, default_timeout, None))
                })
                .collect(),
            settings,
            metrics,
        };
        for (i, m) in pool.members.iter().enumerate() {
            pool.publish_health(m);
            pool.publish_demoted(i);
        }
        Ok(pool)
    }

    /// The hedge delay for an attempt at `step` backed up by `backup`, or None when not
    /// hedging. `auto`: the upstream's own p95, but no longer than the latency-outlier
    /// threshold of what `backup` usually takes (waiting longer than that is waiting on an
    /// outlier), between [`HEDGE_MIN`] and [`HEDGE_MAX`].
    fn hedge_delay(&self, step: &Step, backup: &Step) -> Option<Duration> {
        match self.settings.hedge_delay {
            HedgeDelay::Off => None,
            HedgeDelay::Fixed(d) => Some(d),
            HedgeDelay::Auto => Some(auto_hedge_delay(
                step.member.and_then(|i| self.members[i].health.p95()),
                self.hedge_bound(backup.member),
            )),
        }
    }

    /// Asks upstreams for `path` (escaped, relative to the base URL) until `accept` takes an
    /// answer. See the module documentation for the order, hedging, retries and the verdict.
    pub async fn fetch<T, F, Fut>(
        &self,
        target: Target<'_>,
        path: &str,
        accept: F,
    ) -> Result<T, PoolError>
    where
        F: Fn(UpstreamResponse) -> Fut + Sync,
        Fut: Future<Output = Result<T, AttemptError>> + Send,
        T: Send,
    {
        let deadline = Instant::now() + self.settings.request_deadline;
        let retry = &self.settings.retry;
        let mut verdict = Verdict::new();
        // Attempts of this request across passes, for the spans' attempt numbers.
        let mut attempts = 0u32;
        for pass in 0..retry.attempts {
            if pass > 0 {
                if verdict.failures.is_empty() {
                    break; // every upstream said "not found": nothing to retry
                }
                let base = retry.backoff.get().saturating_mul(1 << (pass - 1).min(10));
                let pause = base.mul_f64(0.5 + fastrand::f64());
                if Instant::now() + pause >= deadline {
                    break;
                }
                self.metrics.upstream_retries.inc();
                tracing::debug!(pass, pause_ms = pause.as_millis() as u64, %path, "retrying upstreams");
                tokio::time::sleep(pause).await;
                verdict = Verdict::new();
            }
            let plan = self.plan(target, path);
            match self
                .pass(&plan, &accept, deadline, &mut verdict, &mut attempts)
                .await
            {
                Some(Ok(value)) => return Ok(value),
                Some(Err(local)) => return Err(local),
                None => {}
            }
        }
        Err(verdict.into_error(path))
    }

    /// One request to `source`, an upstream that has just answered another request of the same
    /// fetch (no plan, no hedging; the answer still counts in its health).
    pub async fn fetch_from(
        &self,
        source: &Endpoint,
        path: &str,
    ) -> Result<UpstreamResponse, AttemptError> {
        send(&self.client, source, path, &Arc::new(Progress::new())).await
    }

    /// One pass over the plan, hedging slow attempts. Some(Ok) on success, Some(Err) on a local
    /// error, None when the plan is exhausted (the verdict says why).
    async fn pass<T, F, Fut>(
        &self,
        plan: &[Step],
        accept: &F,
        deadline: Instant,
        verdict: &mut Verdict,
        attempts: &mut u32,
    ) -> Option<Result<T, PoolError>>
    where
        F: Fn(UpstreamResponse) -> Fut + Sync,
        Fut: Future<Output = Result<T, AttemptError>> + Send,
        T: Send,
    {
        let mut pending: FuturesUnordered<Attempt<'_, T>> = FuturesUnordered::new();
        let mut next = 0;
        // The latest attempt (its step and progress): the one a hedge would back up.
        let mut latest: Option<(usize, Arc<Progress>)> = None;
        loop {
            // Keep one attempt going: launch the next step when none is in flight.
            while pending.is_empty() && next < plan.len() {
                let step = &plan[next];
                next += 1;
                if let Some((attempt, progress)) =
                    self.launch(step, next - 1, accept, false, attempts)
                {
                    pending.push(attempt);
                    latest = Some((next - 1, progress));
                } else {
                    verdict.add(
                        &step.endpoint,
                        AttemptError::Transport("circuit breaker open: not asked".into()),
                    );
                }
            }
            if pending.is_empty() {
                return None;
            }
            // Hedge only to the next step, and only when it is healthy: steps are never
            // skipped, so every upstream's answer counts in the verdict.
            let hedge =
                latest
                    .as_ref()
                    .filter(|_| pending.len() < 2)
                    .and_then(|(idx, progress)| {
                        let backup = plan.get(next).filter(|s| s.healthy)?;
                        self.hedge_check(&plan[*idx], backup, progress, Instant::now())
                    });
            tokio::select! {
                Some((idx, result)) = pending.next() => match result {
                    Ok(value) => return Some(Ok(value)),
                    Err(AttemptError::Local(message)) => return Some(Err(PoolError::Local(message))),
                    Err(AttemptError::Unverifiable { refused, message }) => {
                        return Some(Err(if refused {
                            PoolError::Refused { status: StatusCode::FORBIDDEN, message }
                        } else {
                            PoolError::Unavailable { timeout: false, message }
                        }));
                    }
                    Err(AttemptError::Status { status, message, .. })
                        if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS =>
                    {
                        let message = format!("{}: {status}: {message}", plan[idx].endpoint.name);
                        return Some(Err(PoolError::Refused { status, message }));
                    }
                    Err(e) => verdict.add(&plan[idx].endpoint, e),
                },
                () = sleep_until_opt(hedge.map(|h| h.at)) => {
                    // Judged again at wake-up: an attempt that answered meanwhile is hedged
                    // only if its body turns out far too slow.
                    let Some(reason) = hedge.and_then(|h| h.reason) else { continue };
                    let step = &plan[next];
                    next += 1;
                    match self.launch(step, next - 1, accept, true, attempts) {
                        Some((attempt, progress)) => {
                            tracing::debug!(upstream = %step.endpoint.name, path = %step.path, reason, "hedging");
                            pending.push(attempt);
                            latest = Some((next - 1, progress));
                        }
                        None => verdict.add(
                            &step.endpoint,
                            AttemptError::Transport("circuit breaker open: not asked".into()),
                        ),
                    }
                },
                () = tokio::time::sleep_until(deadline.into()) => {
                    verdict.add(
                        &plan[next.saturating_sub(1)].endpoint,
                        AttemptError::Timeout(format!(
                            "request deadline of {} passed",
                            humantime::format_duration(self.settings.request_deadline)
                        )),
                    );
                    return None;
                },
            }
        }
    }

    /// When to hedge the attempt at `step` by asking `backup` too: while it has not answered,
    /// once the hedge delay has passed; after its headers, only when its body arrives far
    /// slower than `backup` is known to deliver (or than [`SLOW_BODY_FLOOR`] when nothing is
    /// known), so a large body that merely takes a while is fetched once. None: never.
    fn hedge_check(
        &self,
        step: &Step,
        backup: &Step,
        progress: &Progress,
        now: Instant,
    ) -> Option<HedgeCheck> {
        let delay = self.hedge_delay(step, backup)?;
        let Some(answered) = progress.answered_at() else {
            let at = progress.started + delay;
            return Some(HedgeCheck::at_or_now(
                at,
                now,
                "no answer within the hedge delay",
            ));
        };
        let judge_from = answered + BODY_GRACE.max(delay);
        if now < judge_from {
            return Some(HedgeCheck::later(judge_from));
        }
        let rate = progress.bytes() as f64 / now.duration_since(answered).as_secs_f64();
        let backup_rate = backup
            .member
            .and_then(|i| self.members[i].health.body_rate())
            .map_or(0.0, |r| r / SLOW_FACTOR);
        if rate < SLOW_BODY_FLOOR.max(backup_rate) {
            Some(HedgeCheck::at_or_now(
                now,
                now,
                "body far slower than the next upstream",
            ))
        } else {
            Some(HedgeCheck::later(now + BODY_CHECK_EVERY))
        }
    }

    /// Starts one attempt, unless the upstream's breaker refuses it. Returns the attempt and
    /// its progress (headers, body bytes). Each attempt runs in an
    /// `upstream attempt` span, a child of the request's span.
    fn launch<'a, T, F, Fut>(
        &'a self,
        step: &'a Step,
        idx: usize,
        accept: &'a F,
        hedged: bool,
        attempts: &mut u32,
    ) -> Option<(Attempt<'a, T>, Arc<Progress>)>
    where
        F: Fn(UpstreamResponse) -> Fut + Sync,
        Fut: Future<Output = Result<T, AttemptError>> + Send + 'a,
        T: Send + 'a,
    {
        let member = step.member.map(|i| &self.members[i]);
        let permit = member.map_or(Permit::Go, |m| m.health.permit(Instant::now()));
        if permit == Permit::Refused {
            return None;
        }
        if hedged {
            self.metrics
                .upstream_hedges
                .get_or_create(&UpstreamLabel {
                    upstream: step.endpoint.name.clone(),
                })
                .inc();
        }
        *attempts += 1;
        let span = tracing::debug_span!(
            "upstream attempt",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = "GET",
            url.full = %step.endpoint.url(&step.path),
            http.response.status_code = tracing::field::Empty,
            modfleet.upstream = %step.endpoint.name,
            modfleet.attempt = i64::from(*attempts),
            modfleet.hedge = hedged,
            modfleet.outcome = tracing::field::Empty,
            modfleet.bytes = tracing::field::Empty,
            modfleet.error = tracing::field::Empty,
        );
        let progress = Arc::new(Progress::new());
        let watched = progress.clone();
        let attempt = async move {
            let mut guard = AttemptGuard {
                health: member
                    .filter(|_| permit == Permit::Trial)
                    .map(|m| &m.health),
                waited: step.member.map(|i| (self, i, watched.clone())),
            };
            let sent = send(&self.client, &step.endpoint, &step.path, &watched).await;
            let result = match sent {
                Ok(response) => accept(response).await,
                Err(e) => Err(e),
            };
            self.observe(step, member, &result, &watched);
            guard.health = None;
            guard.waited = None;
            (idx, result)
        }
        .instrument(span);
        Some((Box::pin(attempt), progress))
    }

    /// Metrics, logs and health for the end of an attempt.
    fn observe<T>(
        &self,
        step: &Step,
        member: Option<&Member>,
        result: &Result<T, AttemptError>,
        progress: &Progress,
    ) {
        let now = Instant::now();
        let total = now.duration_since(progress.started);
        let header_latency = progress
            .answered_at()
            .map_or(total, |at| at.duration_since(progress.started));
        let name = &step.endpoint.name;
        let span = tracing::Span::current();
        self.metrics
            .upstream_duration
            .get_or_create(&UpstreamLabel {
                upstream: name.clone(),
            })
            .observe(total.as_secs_f64(), TraceExemplar::of(&span), None);
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.outcome(),
        };
        span.record("modfleet.outcome", outcome);
        if let Err(e) = result
            && !matches!(e, AttemptError::NotFound { .. })
        {
            span.record("otel.status_code", "ERROR");
            span.record("modfleet.error", e.to_string());
        }
        self.metrics
            .upstream_requests
            .get_or_create(&UpstreamLabels {
                upstream: name.clone(),
                outcome,
            })
            .inc();
        match result {
            Err(AttemptError::NotFound { message, .. }) => {
                tracing::debug!(upstream = %name, path = %step.path, %message, "not found upstream");
            }
            Err(e) => {
                tracing::warn!(upstream = %name, path = %step.path, error = %e, "upstream attempt failed");
            }
            Ok(_) => {}
        }
        if let Some(i) = step.member {
            match (progress.answered_at(), result) {
                (Some(at), _) => self.record_latency(i, at.duration_since(progress.started), false),
                (None, Err(AttemptError::Timeout(_))) => self.record_latency(i, total, true),
                _ => {}
            }
        }
        if let Some(m) = member {
            let health_outcome = match result {
                Ok(_) => Some(Outcome::Success),
                Err(e) => e.health_outcome(),
            };
            match health_outcome {
                Some(o) => {
                    let error = result.as_ref().err().filter(|_| o != Outcome::Success);
                    let message = error.map(|e| e.to_string());
                    let latency = (o == Outcome::Success).then_some(header_latency);
                    let before = m.health.breaker();
                    m.health.record(o, latency, message.as_deref(), now);
                    if result.is_ok()
                        && let Some(answered) = progress.answered_at()
                    {
                        m.health
                            .record_body(progress.bytes(), now.duration_since(answered));
                    }
                    let after = m.health.breaker();
                    if before != after {
                        tracing::warn!(upstream = %name, from = before.as_str(), to = after.as_str(), "circuit breaker changed state");
                    }
                }
                None => m.health.release_trial(),
            }
            self.publish_health(m);
        }
    }

    pub(super) fn publish_health(&self, m: &Member) {
        let label = UpstreamLabel {
            upstream: m.endpoint.name.clone(),
        };
        self.metrics
            .upstream_healthy
            .get_or_create(&label)
            .set(i64::from(m.health.is_healthy()));
        self.metrics
            .upstream_breaker_state
            .get_or_create(&label)
            .set(breaker_gauge(m.health.breaker()));
    }

    /// Each upstream's state, for `/status`.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| UpstreamStatus {
                url: m.endpoint.name.clone(),
                priority: m.priority,
                weight: m.weight,
                hedge_delay_ms: match self.settings.hedge_delay {
                    HedgeDelay::Off => None,
                    HedgeDelay::Fixed(d) => Some(d.as_millis() as u64),
                    HedgeDelay::Auto => Some(
                        auto_hedge_delay(m.health.p95(), self.hedge_bound_for(i)).as_millis()
                            as u64,
                    ),
                },
                demoted: self.demotion(i),
                health: m.health.snapshot(),
            })
            .collect()
    }
}

/// The result of [`UpstreamPool::hedge_check`]: when to look again, and whether a hedge is due
/// then (with the reason, for the log).
#[derive(Debug, Clone, Copy)]
struct HedgeCheck {
    at: Instant,
    reason: Option<&'static str>,
}

impl HedgeCheck {
    fn at_or_now(at: Instant, now: Instant, reason: &'static str) -> HedgeCheck {
        HedgeCheck {
            at: at.max(now),
            reason: (at <= now).then_some(reason),
        }
    }

    fn later(at: Instant) -> HedgeCheck {
        HedgeCheck { at, reason: None }
    }
}

/// The `auto` hedge delay: the upstream's own p95 ([`HEDGE_MAX`] until known), no longer than
/// `bound` (from the next upstream), within [`HEDGE_MIN`]..=[`HEDGE_MAX`].
fn auto_hedge_delay(own_p95: Option<Duration>, bound: Option<Duration>) -> Duration {
    let own = own_p95.unwrap_or(HEDGE_MAX);
    bound
        .map_or(own, |b| own.min(b))
        .clamp(HEDGE_MIN, HEDGE_MAX)
}

/// Redirects are followed (mirrors send zips to storage) only to http(s), at most
/// [`MAX_REDIRECTS`] times. reqwest (0.13, `redirect::remove_sensitive_headers`) drops
/// `Authorization` and cookies when a redirect changes the scheme, the host or the port, so
/// an upstream's credentials never reach another origin (tests/upstream_credentials.rs holds
/// it to that).
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            let error = format!("more than {MAX_REDIRECTS} redirects");
            attempt.error(error)
        } else if !matches!(attempt.url().scheme(), "http" | "https") {
            let error = format!(
                "redirect to a {} URL refused: only http and https are followed",
                attempt.url().scheme()
            );
            attempt.error(error)
        } else {
            attempt.follow()
        }
    })
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn auto_hedge_delay_is_bounded_by_the_next_upstream() {
        // Nothing known: the upstream's own p95 would be waited for up to a second.
        assert_eq!(auto_hedge_delay(None, None), HEDGE_MAX);
        // A slow upstream (or one never seen answering) in front of a fast one: hedge at the
        // fast one's outlier threshold, not after a second.
        assert_eq!(auto_hedge_delay(None, Some(200 * MS)), 200 * MS);
        assert_eq!(auto_hedge_delay(Some(2000 * MS), Some(200 * MS)), 200 * MS);
        // A fast upstream keeps its own p95, whatever the next one takes.
        assert_eq!(auto_hedge_delay(Some(30 * MS), Some(900 * MS)), 30 * MS);
        assert_eq!(auto_hedge_delay(Some(1 * MS), None), HEDGE_MIN);
    }
}
