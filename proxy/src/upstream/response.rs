//! One request to one upstream: sending it, classifying the answer, and reading the body
//! within its limits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::StatusCode;
use modfleet_telemetry::error_chain;

use super::{AttemptError, Endpoint};

/// How much of an upstream error body is passed on to clients.
const MAX_MESSAGE_BYTES: usize = 512;

/// A body must bring at least this many bytes (or the rest of itself) in every
/// [`LOW_SPEED_WINDOW`], or the attempt fails: a body trickling a byte at a time would otherwise
/// never trip the per-read idle timeout and hold the request until its deadline (as curl's
/// `--speed-limit`/`--speed-time`). About 13 KiB/s: far below any working mirror.
pub const LOW_SPEED_BYTES: u64 = 64 << 10;
pub const LOW_SPEED_WINDOW: Duration = Duration::from_secs(5);

/// What the pool sees of an attempt while its body is read: when the headers came and how
/// many body bytes since, so that a body far slower than the next upstream can be hedged.
#[derive(Debug)]
pub(super) struct Progress {
    pub(super) started: Instant,
    answered_at: OnceLock<Instant>,
    bytes: AtomicU64,
}

impl Progress {
    pub(super) fn new() -> Progress {
        Progress {
            started: Instant::now(),
            answered_at: OnceLock::new(),
            bytes: AtomicU64::new(0),
        }
    }

    /// When the response headers arrived; None while the attempt waits for them.
    pub(super) fn answered_at(&self) -> Option<Instant> {
        self.answered_at.get().copied()
    }

    pub(super) fn answered(&self, at: Instant) {
        let _ = self.answered_at.set(at);
    }

    /// Body bytes received so far.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A successful (2xx) upstream response whose body has not been read yet.
pub struct UpstreamResponse {
    response: reqwest::Response,
    idle_timeout: Duration,
    progress: Arc<Progress>,
    source: Endpoint,
}

impl UpstreamResponse {
    /// An object of the shared store (`crate::store`), so that it goes through the very checks
    /// an upstream's answer does: the same idle timeout and low-speed limit, size limits and
    /// verification.
    pub fn from_store(url: &str, body: reqwest::Body, idle_timeout: Duration) -> UpstreamResponse {
        UpstreamResponse {
            response: reqwest::Response::from(http::Response::new(body)),
            idle_timeout,
            progress: Arc::new(Progress::new()),
            source: Endpoint::tier(url, idle_timeout),
        }
    }

    /// The answer of a fleet peer (`crate::peers`): checked as an upstream's is.
    pub fn from_peer(
        owner: &str,
        response: reqwest::Response,
        idle_timeout: Duration,
    ) -> UpstreamResponse {
        UpstreamResponse {
            response,
            idle_timeout,
            progress: Arc::new(Progress::new()),
            source: Endpoint::tier(&format!("http://{owner}"), idle_timeout),
        }
    }

    /// The upstream that sent it.
    pub fn source(&self) -> &Endpoint {
        &self.source
    }

    pub fn content_length(&self) -> Option<u64> {
        self.response.content_length()
    }

    /// The body as a stream of chunks. Each chunk must arrive within the idle timeout, the body
    /// must keep above the low-speed limit, and the stream ends with an error when the body is
    /// shorter or longer than its Content-Length.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, AttemptError>> + Send + 'static {
        let body = BodyState {
            expected: self.response.content_length(),
            idle: self.idle_timeout,
            seen: 0,
            window_start: Instant::now(),
            window_seen: 0,
            progress: self.progress,
            done: false,
        };
        let inner = self.response.bytes_stream();
        futures::stream::unfold((inner, body), |(mut inner, mut body)| async move {
            if body.done {
                return None;
            }
            let next = tokio::time::timeout(body.idle, inner.next()).await;
            let item = body.next(next)?;
            Some((item, (inner, body)))
        })
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

/// The checks applied to each chunk of a body.
struct BodyState {
    expected: Option<u64>,
    idle: Duration,
    seen: u64,
    window_start: Instant,
    window_seen: u64,
    progress: Arc<Progress>,
    done: bool,
}

type Chunk = Result<Option<Result<Bytes, reqwest::Error>>, tokio::time::error::Elapsed>;

impl BodyState {
    /// The stream's next item for what the connection produced; None at a clean end.
    fn next(&mut self, next: Chunk) -> Option<Result<Bytes, AttemptError>> {
        let failed = |body: &mut BodyState, e: AttemptError| {
            body.done = true;
            Some(Err(e))
        };
        match next {
            Err(_) => failed(
                self,
                AttemptError::Timeout(format!(
                    "no data for {} in the middle of the body",
                    humantime::format_duration(self.idle)
                )),
            ),
            Ok(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                self.progress
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if self.expected.is_some_and(|n| self.seen > n) {
                    return failed(
                        self,
                        AttemptError::Invalid("body is longer than its Content-Length".into()),
                    );
                }
                if let Err(e) = self.check_speed(chunk.len() as u64, Instant::now()) {
                    return failed(self, e);
                }
                Some(Ok(chunk))
            }
            Ok(Some(Err(e))) => failed(
                self,
                AttemptError::Transport(format!(
                    "body cut short after {} bytes: {}",
                    self.seen,
                    error_chain(&e)
                )),
            ),
            Ok(None) => match self.expected {
                Some(n) if self.seen != n => failed(
                    self,
                    AttemptError::Invalid(format!("body cut short: {} of {n} bytes", self.seen)),
                ),
                _ => None,
            },
        }
    }

    /// The low-speed limit: each window must bring [`LOW_SPEED_BYTES`] or the rest of the body.
    fn check_speed(&mut self, chunk: u64, now: Instant) -> Result<(), AttemptError> {
        self.window_seen += chunk;
        let elapsed = now.duration_since(self.window_start);
        if elapsed < LOW_SPEED_WINDOW {
            return Ok(());
        }
        let before = self.seen - self.window_seen;
        let wanted = self
            .expected
            .map_or(LOW_SPEED_BYTES, |n| (n - before).min(LOW_SPEED_BYTES));
        if self.window_seen < wanted {
            return Err(AttemptError::Timeout(format!(
                "body too slow: {} bytes in {}, below the low-speed limit of {LOW_SPEED_BYTES} bytes per {}",
                self.window_seen,
                humantime::format_duration(Duration::from_millis(elapsed.as_millis() as u64)),
                humantime::format_duration(LOW_SPEED_WINDOW),
            )));
        }
        self.window_start = now;
        self.window_seen = 0;
        Ok(())
    }
}

/// Sends one GET and classifies the status. The body of a non-2xx answer is read (bounded)
/// for the message passed on to the client.
pub(super) async fn send(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    path: &str,
    progress: &Arc<Progress>,
) -> Result<UpstreamResponse, AttemptError> {
    let url = endpoint.url(path);
    let mut headers = http::HeaderMap::new();
    modfleet_telemetry::inject_current(&mut headers);
    // The request goes to the upstream's own base URL: its origin, so its credentials.
    if let Some(c) = &endpoint.credentials {
        let value = c
            .authorization()
            .map_err(|e| AttemptError::Credentials(e.to_string()))?;
        headers.insert(http::header::AUTHORIZATION, value);
    }
    let sent = client.get(&url).headers(headers).send();
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
    progress.answered(Instant::now());
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
            progress: progress.clone(),
            source: endpoint.clone(),
        });
    }
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut message = first_line(&error_body(response, endpoint.timeout).await);
    if let Some(c) = &endpoint.credentials {
        // A server may echo what it refused.
        message = c.redact(&message);
    }
    if status == StatusCode::UNAUTHORIZED {
        return Err(AttemptError::Unauthorized(unauthorized(endpoint, status)));
    }
    if status == StatusCode::FORBIDDEN
        && let Some(c) = &endpoint.credentials
    {
        // Passed on as the go command would (a 403 is about this request: a module the
        // upstream refuses, an identity without access to it), saying whose identity it was.
        message = format!("{message} (asked with the credentials of {})", c.describe());
    }
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

/// What a 401 means for us, and the fix: the credentials to check, or that there are none.
/// The upstream's body is left out: it answers credentials it did not take.
pub(super) fn unauthorized(endpoint: &Endpoint, status: StatusCode) -> String {
    match &endpoint.credentials {
        Some(c) => format!(
            "refused our credentials ({status}): check {} (a rotated or wrong password or \
             token?)",
            c.describe()
        ),
        None => format!(
            "asks for credentials ({status}) and has none: give the upstream `credentials` \
             in the config (a fleet: credentialsSecretRef)"
        ),
    }
}

/// The start of an error body, for its message: at most [`MAX_MESSAGE_BYTES`] are read, within
/// the upstream's timeout, and the rest is never read (the connection is dropped), so an endless
/// or trickling error body costs neither memory nor time.
async fn error_body(response: reqwest::Response, timeout: Duration) -> Vec<u8> {
    let mut body = Vec::new();
    let mut stream = std::pin::pin!(response.bytes_stream());
    let read = async {
        while body.len() < MAX_MESSAGE_BYTES {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    let room = MAX_MESSAGE_BYTES - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    body
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
}
