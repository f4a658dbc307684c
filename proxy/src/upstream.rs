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
//! upstream is tried. Health checks, breakers and hedging (Step 5) slot in here.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::StatusCode;
use reqwest::Url;

use crate::config::{Sumdb, Upstream as UpstreamConfig};
use crate::metrics::{Metrics, UpstreamLabel, UpstreamLabels};

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
    Status { status: StatusCode, message: String },
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
    #[error("{0}")]
    Local(String),
}

impl PoolError {
    pub fn status(&self) -> StatusCode {
        match self {
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

/// The configured upstreams, in priority order.
#[derive(Debug)]
pub struct UpstreamPool {
    client: reqwest::Client,
    upstreams: Vec<Endpoint>,
    sumdbs: Vec<(String, Endpoint)>,
    metrics: Arc<Metrics>,
}

impl UpstreamPool {
    pub fn new(
        upstreams: &[UpstreamConfig],
        sumdbs: &[Sumdb],
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
        Ok(UpstreamPool {
            client,
            upstreams: upstreams
                .iter()
                .map(|u| Endpoint::new(&u.url, u.timeout))
                .collect(),
            sumdbs: sumdbs
                .iter()
                .map(|s| (s.name.clone(), Endpoint::new(&s.url, default_timeout)))
                .collect(),
            metrics,
        })
    }

    pub fn upstream_names(&self) -> impl Iterator<Item = &str> {
        self.upstreams.iter().map(|e| e.name.as_str())
    }

    /// The (endpoint, path) pairs to try for `path`, in order.
    fn route(&self, target: Target<'_>, path: &str) -> Vec<(&Endpoint, String)> {
        match target {
            Target::Modules => self
                .upstreams
                .iter()
                .map(|e| (e, path.to_string()))
                .collect(),
            Target::Sumdb(name) => {
                let mut out: Vec<(&Endpoint, String)> = self
                    .upstreams
                    .iter()
                    .map(|e| (e, format!("sumdb/{name}/{path}")))
                    .collect();
                if let Some((_, direct)) = self.sumdbs.iter().find(|(n, _)| n == name) {
                    out.push((direct, path.to_string()));
                }
                out
            }
        }
    }

    /// Asks each upstream in turn for `path` (escaped, relative to the base URL) until `accept`
    /// takes an answer. See the module documentation for the verdict when none does.
    pub async fn fetch<T, F, Fut>(
        &self,
        target: Target<'_>,
        path: &str,
        mut accept: F,
    ) -> Result<T, PoolError>
    where
        F: FnMut(UpstreamResponse) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let mut not_found: Vec<String> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        let mut all_timeouts = true;
        for (endpoint, rel) in self.route(target, path) {
            let started = Instant::now();
            let result = match self.send(endpoint, &rel).await {
                Ok(response) => accept(response).await,
                Err(e) => Err(e),
            };
            self.metrics
                .upstream_duration
                .get_or_create(&UpstreamLabel {
                    upstream: endpoint.name.clone(),
                })
                .observe(started.elapsed().as_secs_f64());
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            };
            self.metrics
                .upstream_requests
                .get_or_create(&UpstreamLabels {
                    upstream: endpoint.name.clone(),
                    outcome,
                })
                .inc();
            match result {
                Ok(value) => return Ok(value),
                Err(AttemptError::NotFound { message, .. }) => {
                    tracing::debug!(upstream = %endpoint.name, path = %rel, %message, "not found upstream");
                    not_found.push(message);
                }
                Err(AttemptError::Local(message)) => return Err(PoolError::Local(message)),
                Err(e) => {
                    tracing::warn!(upstream = %endpoint.name, path = %rel, error = %e, "upstream attempt failed");
                    all_timeouts &= matches!(e, AttemptError::Timeout(_));
                    failures.push(format!("{}: {e}", endpoint.name));
                }
            }
        }
        if failures.is_empty() {
            let message = not_found
                .into_iter()
                .find(|m| !m.is_empty())
                .unwrap_or_else(|| format!("not found: {path}"));
            Err(PoolError::NotFound { message })
        } else {
            Err(PoolError::Unavailable {
                timeout: all_timeouts,
                message: format!("no upstream could answer: {}", failures.join("; ")),
            })
        }
    }

    /// Sends one GET and classifies the status. The body of a non-2xx answer is read (bounded)
    /// for the message passed on to the client.
    async fn send(
        &self,
        endpoint: &Endpoint,
        path: &str,
    ) -> Result<UpstreamResponse, AttemptError> {
        let url = endpoint.url(path);
        let sent = self.client.get(&url).send();
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
        if status.is_success() {
            return Ok(UpstreamResponse {
                response,
                idle_timeout: endpoint.timeout,
                upstream: endpoint.name.clone(),
            });
        }
        let body = tokio::time::timeout(endpoint.timeout, response.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let message = first_line(&body);
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            Err(AttemptError::NotFound { status, message })
        } else {
            Err(AttemptError::Status { status, message })
        }
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
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
