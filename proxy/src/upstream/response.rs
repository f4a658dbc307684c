//! One request to one upstream: sending it, classifying the answer, and reading the body
//! within its limits.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::StatusCode;
use modfleet_telemetry::error_chain;

use super::{AttemptError, Endpoint};

/// How much of an upstream error body is passed on to clients.
const MAX_MESSAGE_BYTES: usize = 512;

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

/// Sends one GET and classifies the status. The body of a non-2xx answer is read (bounded)
/// for the message passed on to the client.
pub(super) async fn send(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    path: &str,
) -> Result<UpstreamResponse, AttemptError> {
    let url = endpoint.url(path);
    let mut trace_headers = http::HeaderMap::new();
    modfleet_telemetry::inject_current(&mut trace_headers);
    let sent = client.get(&url).headers(trace_headers).send();
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
