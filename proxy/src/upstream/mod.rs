//! The upstream layer: the seam between "I need this artifact" and "which upstream, how many
//! tries".
//!
//! [`UpstreamPool::fetch`] walks the upstreams in priority order with the go command's comma
//! semantics: 404 and 410 move on to the next upstream; so do failures (5xx, timeouts, resets,
//! bodies cut short, answers that fail verification). The answer is "not found" only when every
//! upstream said so; if any failed, it is a 502 (or 504 when every failure was a timeout), so an
//! outage never becomes a 404 that sends clients (and private module paths) elsewhere.
//!
//! What is done with a response (streaming it to the cache, verifying it) is the caller's
//! `accept` closure, so a verification failure counts as that upstream's failure and the next
//! upstream is tried.
//!
//! Resilience (see [`health`] for the breaker):
//! - each request gets a *plan*: healthy upstreams by priority, those of equal priority in a
//!   weighted random order, then unhealthy ones as a last resort; an upstream whose breaker is
//!   open is skipped, and counts as a failure in the verdict (so it can never turn into a 404);
//! - when the upstream being tried has not answered within the hedge delay, the next healthy one
//!   is asked too; the first complete, verified answer wins and the other attempt is dropped
//!   (its connection closed, its temporary file removed);
//! - a pass over the plan that ends in failures is retried after an exponential backoff with
//!   jitter, inside the request deadline;
//! - background probes ask each upstream for a cheap path at an interval.

pub mod health;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use http::StatusCode;
use modfleet_telemetry::error_chain;
use reqwest::Url;
use tracing::Instrument;

use crate::config::{HedgeDelay, Resilience, Sumdb, Upstream as UpstreamConfig};
use crate::metrics::{Metrics, TraceExemplar, UpstreamLabel, UpstreamLabels};
use health::{BreakerSettings, Health, Outcome, Permit, Snapshot};

/// Bounds of an automatic hedge delay, and its value before enough latency samples exist.
const HEDGE_MIN: Duration = Duration::from_millis(20);
const HEDGE_MAX: Duration = Duration::from_secs(1);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an upstream error body is passed on to clients.
const MAX_MESSAGE_BYTES: usize = 512;

/// One upstream endpoint (a GOPROXY base URL, or a checksum database's direct URL).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Label for metrics and messages: the base URL.
    pub name: String,
    base: Url,
    /// Wait for headers, and for each further chunk of the body.
    pub timeout: Duration,
}

impl Endpoint {
    fn new(base: &Url, timeout: Duration) -> Endpoint {
        let name = base.as_str().trim_end_matches('/').to_string();
        Endpoint {
            name,
            base: base.clone(),
            timeout,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base.as_str().trim_end_matches('/'), path)
    }
}

/// Why one attempt at one upstream did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttemptError {
    #[error("{status}: {message}")]
    NotFound { status: StatusCode, message: String },
    #[error("{status}: {message}")]
    Status {
        status: StatusCode,
        message: String,
        /// From a 429's Retry-After.
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Transport(String),
    /// The answer arrived but failed verification (or was cut short).
    #[error("{0}")]
    Invalid(String),
    /// A local problem (cache I/O); not the upstream's fault, but the request cannot go on.
    #[error("{0}")]
    Local(String),
}

impl AttemptError {
    fn outcome(&self) -> &'static str {
        match self {
            AttemptError::NotFound { .. } => "not_found",
            AttemptError::Status { .. } | AttemptError::Transport(_) => "error",
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Invalid(_) => "invalid",
            AttemptError::Local(_) => "local_error",
        }
    }

    /// What the attempt says about the upstream's health (None: nothing, e.g. a local error).
    fn health_outcome(&self) -> Option<Outcome> {
        match self {
            AttemptError::NotFound { .. } => Some(Outcome::Success),
            AttemptError::Status {
                status,
                retry_after,
                ..
            } => Some(if *status == StatusCode::TOO_MANY_REQUESTS {
                Outcome::Throttled(*retry_after)
            } else if status.is_server_error() {
                Outcome::Failure
            } else {
                // 400, 403, ...: the upstream is up; this request is its problem.
                Outcome::Success
            }),
            AttemptError::Timeout(_) | AttemptError::Transport(_) | AttemptError::Invalid(_) => {
                Some(Outcome::Failure)
            }
            AttemptError::Local(_) => None,
        }
    }
}

/// The pool's verdict when no upstream produced an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// Every upstream said 404 or 410.
    #[error("{message}")]
    NotFound { message: String },
    /// At least one upstream failed; `timeout` when every failure was a timeout.
    #[error("{message}")]
    Unavailable { timeout: bool, message: String },
    /// An upstream refused the request with a 4xx other than 404, 410 and 429 (403, 400, ...):
    /// like the go command, stop there and pass it on.
    #[error("{message}")]
    Refused { status: StatusCode, message: String },
    #[error("{0}")]
    Local(String),
}

impl PoolError {
    pub fn status(&self) -> StatusCode {
        match self {
            PoolError::Refused { status, .. } => *status,
            PoolError::NotFound { .. } => StatusCode::NOT_FOUND,
            PoolError::Unavailable { timeout: true, .. } => StatusCode::GATEWAY_TIMEOUT,
            PoolError::Unavailable { timeout: false, .. } => StatusCode::BAD_GATEWAY,
            PoolError::Local(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A successful (2xx) upstream response whose body has not been read yet.
pub struct UpstreamResponse {
    response: reqwest::Response,
    idle_timeout: Duration,
    upstream: String,
}

impl UpstreamResponse {
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    pub fn content_length(&self) -> Option<u64> {
        self.response.content_length()
    }

    /// The body as a stream of chunks. Each chunk must arrive within the idle timeout, and the
    /// stream ends with an error when the body is shorter or longer than its Content-Length.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, AttemptError>> + Send + 'static {
        let expected = self.response.content_length();
        let idle = self.idle_timeout;
        let inner = self.response.bytes_stream();
        futures::stream::unfold(
            (inner, 0u64, false),
            move |(mut inner, seen, done)| async move {
                if done {
                    return None;
                }
                match tokio::time::timeout(idle, inner.next()).await {
                    Err(_) => Some((
                        Err(AttemptError::Timeout(format!(
                            "no data for {} in the middle of the body",
                            humantime::format_duration(idle)
                        ))),
                        (inner, seen, true),
                    )),
                    Ok(Some(Ok(chunk))) => {
                        let seen = seen + chunk.len() as u64;
                        if expected.is_some_and(|n| seen > n) {
                            return Some((
                                Err(AttemptError::Invalid(
                                    "body is longer than its Content-Length".into(),
                                )),
                                (inner, seen, true),
                            ));
                        }
                        Some((Ok(chunk), (inner, seen, false)))
                    }
                    Ok(Some(Err(e))) => Some((
                        Err(AttemptError::Transport(format!(
                            "body cut short after {seen} bytes: {}",
                            error_chain(&e)
                        ))),
                        (inner, seen, true),
                    )),
                    Ok(None) => match expected {
                        Some(n) if seen != n => Some((
                            Err(AttemptError::Invalid(format!(
                                "body cut short: {seen} of {n} bytes"
                            ))),
                            (inner, seen, true),
                        )),
                        _ => None,
                    },
                }
            },
        )
    }

    /// Reads a small body whole, refusing bodies over `max` bytes.
    pub async fn bytes_limited(self, max: u64) -> Result<Bytes, AttemptError> {
        if self.content_length().is_some_and(|n| n > max) {
            return Err(AttemptError::Invalid(format!(
                "answer is larger than {max} bytes"
            )));
        }
        let mut stream = std::pin::pin!(self.into_stream());
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if (buf.len() + chunk.len()) as u64 > max {
                return Err(AttemptError::Invalid(format!(
                    "answer is larger than {max} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        tracing::Span::current().record("modfleet.bytes", buf.len() as i64);
        Ok(Bytes::from(buf))
    }
}

/// Where a request goes: the module proxies, or a checksum database (the proxies' own
/// `/sumdb/<name>/` endpoints first, then the database's direct URL).
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Modules,
    Sumdb(&'a str),
}

/// One module upstream and what is known of its health.
#[derive(Debug)]
struct Member {
    endpoint: Endpoint,
    priority: u32,
    weight: u32,
    health: Health,
}

/// One step of a request's plan: an upstream (or a checksum database's direct URL) and the
/// path to ask it for.
#[derive(Debug, Clone)]
struct Step {
    /// Index into `members`; None for a checksum database's direct URL.
    member: Option<usize>,
    endpoint: Endpoint,
    path: String,
    healthy: bool,
}

/// What went wrong in a pass over the plan, for the final verdict.
#[derive(Debug, Default)]
struct Verdict {
    not_found: Vec<String>,
    failures: Vec<String>,
    all_timeouts: bool,
}

impl Verdict {
    fn new() -> Verdict {
        Verdict {
            all_timeouts: true,
            ..Verdict::default()
        }
    }

    fn add(&mut self, endpoint: &Endpoint, e: AttemptError) {
        match e {
            AttemptError::NotFound { message, .. } => self.not_found.push(message),
            e => {
                self.all_timeouts &= matches!(e, AttemptError::Timeout(_));
                self.failures.push(format!("{}: {e}", endpoint.name));
            }
        }
    }

    fn into_error(self, path: &str) -> PoolError {
        if self.failures.is_empty() {
            let message = self
                .not_found
                .into_iter()
                .find(|m| !m.is_empty())
                .unwrap_or_else(|| format!("not found: {path}"));
            PoolError::NotFound { message }
        } else {
            PoolError::Unavailable {
                timeout: self.all_timeouts,
                message: format!("no upstream could answer: {}", self.failures.join("; ")),
            }
        }
    }
}

type Attempt<'a, T> = Pin<Box<dyn Future<Output = (usize, Result<T, AttemptError>)> + Send + 'a>>;

/// The configured upstreams, their health, and the logic of asking them.
#[derive(Debug)]
pub struct UpstreamPool {
    client: reqwest::Client,
    members: Vec<Member>,
    sumdbs: Vec<(String, Endpoint)>,
    settings: Resilience,
    metrics: Arc<Metrics>,
}

/// Releases a half-open trial permit if its attempt is dropped before recording an outcome.
struct TrialGuard<'a> {
    health: Option<&'a Health>,
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.health {
            h.release_trial();
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
            open_for: settings.breaker.open_for,
        };
        let pool = UpstreamPool {
            client,
            members: upstreams
                .iter()
                .map(|u| Member {
                    endpoint: Endpoint::new(&u.url, u.timeout),
                    priority: u.priority,
                    weight: u.weight,
                    health: Health::new(breaker),
                })
                .collect(),
            sumdbs: sumdbs
                .iter()
                .map(|s| (s.name.clone(), Endpoint::new(&s.url, default_timeout)))
                .collect(),
            settings,
            metrics,
        };
        for m in &pool.members {
            pool.publish_health(m);
        }
        Ok(pool)
    }

    pub fn upstream_names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.endpoint.name.as_str())
    }

    /// The order in which to ask upstreams for one request.
    fn plan(&self, target: Target<'_>, path: &str) -> Vec<Step> {
        let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, m) in self.members.iter().enumerate() {
            groups.entry(m.priority).or_default().push(i);
        }
        let mut healthy = Vec::new();
        let mut unhealthy = Vec::new();
        for (_, group) in groups {
            let (mut up, down): (Vec<usize>, Vec<usize>) = group
                .into_iter()
                .partition(|&i| self.members[i].health.is_healthy());
            // Weighted random order among equals: repeatedly draw by weight.
            while !up.is_empty() {
                let total: u64 = up.iter().map(|&i| u64::from(self.members[i].weight)).sum();
                let mut draw = fastrand::u64(0..total);
                let pos = up
                    .iter()
                    .position(|&i| {
                        let w = u64::from(self.members[i].weight);
                        if draw < w {
                            true
                        } else {
                            draw -= w;
                            false
                        }
                    })
                    .expect("draw is below the total weight");
                healthy.push(up.remove(pos));
            }
            unhealthy.extend(down);
        }
        let rel = |base: &str| match target {
            Target::Modules => base.to_string(),
            Target::Sumdb(name) => format!("sumdb/{name}/{base}"),
        };
        let mut steps: Vec<Step> = healthy
            .into_iter()
            .map(|i| (i, true))
            .chain(unhealthy.into_iter().map(|i| (i, false)))
            .map(|(i, ok)| Step {
                member: Some(i),
                endpoint: self.members[i].endpoint.clone(),
                path: rel(path),
                healthy: ok,
            })
            .collect();
        if let Target::Sumdb(name) = target
            && let Some((_, direct)) = self.sumdbs.iter().find(|(n, _)| n == name)
        {
            steps.push(Step {
                member: None,
                endpoint: direct.clone(),
                path: path.to_string(),
                healthy: true,
            });
        }
        steps
    }

    /// The hedge delay for an attempt at `step`, or None when not hedging.
    fn hedge_delay(&self, step: &Step) -> Option<Duration> {
        match self.settings.hedge_delay {
            HedgeDelay::Off => None,
            HedgeDelay::Fixed(d) => Some(d),
            HedgeDelay::Auto => Some(
                step.member
                    .and_then(|i| self.members[i].health.p95())
                    .map_or(HEDGE_MAX, |p95| p95.clamp(HEDGE_MIN, HEDGE_MAX)),
            ),
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
                let base = retry.backoff.saturating_mul(1 << (pass - 1).min(10));
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
        // The latest attempt's "has answered" flag and when to hedge it.
        let mut hedge: Option<(Arc<AtomicBool>, Instant)> = None;
        loop {
            // Keep one attempt going: launch the next step when none is in flight.
            while pending.is_empty() && next < plan.len() {
                let step = &plan[next];
                next += 1;
                if let Some((attempt, answered)) =
                    self.launch(step, next - 1, accept, false, attempts)
                {
                    pending.push(attempt);
                    hedge = self
                        .hedge_delay(step)
                        .map(|d| (answered, Instant::now() + d));
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
            let hedge_at = hedge
                .as_ref()
                .filter(|(answered, _)| !answered.load(Ordering::Acquire))
                .filter(|_| pending.len() < 2 && plan.get(next).is_some_and(|s| s.healthy))
                .map(|(_, at)| *at);
            tokio::select! {
                Some((idx, result)) = pending.next() => match result {
                    Ok(value) => return Some(Ok(value)),
                    Err(AttemptError::Local(message)) => return Some(Err(PoolError::Local(message))),
                    Err(AttemptError::Status { status, message, .. })
                        if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS =>
                    {
                        let message = format!("{}: {status}: {message}", plan[idx].endpoint.name);
                        return Some(Err(PoolError::Refused { status, message }));
                    }
                    Err(e) => verdict.add(&plan[idx].endpoint, e),
                },
                () = sleep_until_opt(hedge_at) => {
                    hedge = None;
                    let step = &plan[next];
                    next += 1;
                    match self.launch(step, next - 1, accept, true, attempts) {
                        Some((attempt, answered)) => {
                            tracing::debug!(upstream = %step.endpoint.name, path = %step.path, "hedging a slow request");
                            pending.push(attempt);
                            hedge = self.hedge_delay(step).map(|d| (answered, Instant::now() + d));
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

    /// Starts one attempt, unless the upstream's breaker refuses it. Returns the attempt and
    /// its "has answered" flag (set when response headers arrive). Each attempt runs in an
    /// `upstream attempt` span, a child of the request's span.
    fn launch<'a, T, F, Fut>(
        &'a self,
        step: &'a Step,
        idx: usize,
        accept: &'a F,
        hedged: bool,
        attempts: &mut u32,
    ) -> Option<(Attempt<'a, T>, Arc<AtomicBool>)>
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
        let answered = Arc::new(AtomicBool::new(false));
        let flag = answered.clone();
        let attempt = async move {
            let mut guard = TrialGuard {
                health: member
                    .filter(|_| permit == Permit::Trial)
                    .map(|m| &m.health),
            };
            let started = Instant::now();
            let sent = self.send(&step.endpoint, &step.path).await;
            let header_latency = started.elapsed();
            flag.store(true, Ordering::Release);
            let result = match sent {
                Ok(response) => accept(response).await,
                Err(e) => Err(e),
            };
            self.observe(step, member, &result, header_latency, started.elapsed());
            guard.health = None;
            (idx, result)
        }
        .instrument(span);
        Some((Box::pin(attempt), answered))
    }

    /// Metrics, logs and health for the end of an attempt.
    fn observe<T>(
        &self,
        step: &Step,
        member: Option<&Member>,
        result: &Result<T, AttemptError>,
        header_latency: Duration,
        total: Duration,
    ) {
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
                    m.health
                        .record(o, latency, message.as_deref(), Instant::now());
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

    fn publish_health(&self, m: &Member) {
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
            .set(m.health.breaker().as_gauge());
    }

    /// Probes every upstream once (a GET of the configured path; any answer below 500, but
    /// 429, means alive).
    pub async fn probe_all(&self) {
        let check = &self.settings.health_check;
        let probes = self.members.iter().map(|m| async move {
            let url = format!("{}{}", m.endpoint.base.as_str().trim_end_matches('/'), check.path);
            let result = tokio::time::timeout(check.timeout, self.client.get(&url).send()).await;
            let error = match result {
                Err(_) => Some(format!("no answer within {}", humantime::format_duration(check.timeout))),
                Ok(Err(e)) => Some(error_chain(&e)),
                Ok(Ok(r)) if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS => {
                    Some(format!("answered {}", r.status()))
                }
                Ok(Ok(_)) => None,
            };
            let was = m.health.is_healthy();
            let before = m.health.breaker();
            m.health.record_probe(error.is_none(), error.as_deref(), Instant::now());
            if before != m.health.breaker() {
                tracing::info!(upstream = %m.endpoint.name, "circuit breaker closed by a successful probe");
            }
            if was != m.health.is_healthy() {
                tracing::warn!(upstream = %m.endpoint.name, healthy = !was, error = ?error, "upstream health changed");
            }
            self.publish_health(m);
        });
        futures::future::join_all(probes).await;
    }

    /// Runs the active health probes forever, at the configured interval.
    pub async fn run_probes(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.health_check.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.probe_all().await;
        }
    }

    /// Each upstream's state, for `/status`.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.members
            .iter()
            .map(|m| UpstreamStatus {
                url: m.endpoint.name.clone(),
                priority: m.priority,
                weight: m.weight,
                hedge_delay_ms: match self.settings.hedge_delay {
                    HedgeDelay::Off => None,
                    HedgeDelay::Fixed(d) => Some(d.as_millis() as u64),
                    HedgeDelay::Auto => Some(
                        m.health
                            .p95()
                            .map_or(HEDGE_MAX, |p| p.clamp(HEDGE_MIN, HEDGE_MAX))
                            .as_millis() as u64,
                    ),
                },
                health: m.health.snapshot(),
            })
            .collect()
    }

    /// Sends one GET and classifies the status. The body of a non-2xx answer is read (bounded)
    /// for the message passed on to the client.
    async fn send(
        &self,
        endpoint: &Endpoint,
        path: &str,
    ) -> Result<UpstreamResponse, AttemptError> {
        let url = endpoint.url(path);
        let mut trace_headers = http::HeaderMap::new();
        modfleet_telemetry::inject_current(&mut trace_headers);
        let sent = self.client.get(&url).headers(trace_headers).send();
        let response = match tokio::time::timeout(endpoint.timeout, sent).await {
            Err(_) => {
                return Err(AttemptError::Timeout(format!(
                    "no response within {}",
                    humantime::format_duration(endpoint.timeout)
                )));
            }
            Ok(Err(e)) if e.is_timeout() => {
                return Err(AttemptError::Timeout(format!(
                    "timed out: {}",
                    error_chain(&e)
                )));
            }
            Ok(Err(e)) => return Err(AttemptError::Transport(error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let span = tracing::Span::current();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        if let Some(len) = response.content_length() {
            span.record("modfleet.bytes", len as i64);
        }
        if status.is_success() {
            return Ok(UpstreamResponse {
                response,
                idle_timeout: endpoint.timeout,
                upstream: endpoint.name.clone(),
            });
        }
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = tokio::time::timeout(endpoint.timeout, response.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let message = first_line(&body);
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            Err(AttemptError::NotFound { status, message })
        } else {
            Err(AttemptError::Status {
                status,
                message,
                retry_after,
            })
        }
    }
}

/// One upstream in `/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpstreamStatus {
    pub url: String,
    pub priority: u32,
    pub weight: u32,
    pub hedge_delay_ms: Option<u64>,
    #[serde(flatten)]
    pub health: Snapshot,
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The first line of an error body, bounded and printable: the go command shows it to users.
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_MESSAGE_BYTES)]);
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_is_bounded_and_printable() {
        assert_eq!(first_line(b"not found: x\nmore"), "not found: x");
        assert_eq!(first_line(b"a\x1b[31mb"), "a[31mb");
        assert_eq!(first_line(&[b'x'; 2000]).len(), MAX_MESSAGE_BYTES);
    }

    #[test]
    fn pool_errors_map_to_status_codes() {
        let nf = PoolError::NotFound {
            message: String::new(),
        };
        assert_eq!(nf.status(), StatusCode::NOT_FOUND);
        let down = PoolError::Unavailable {
            timeout: false,
            message: String::new(),
        };
        assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
        let slow = PoolError::Unavailable {
            timeout: true,
            message: String::new(),
        };
        assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    }
}
