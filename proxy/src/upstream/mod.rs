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
//! - an upstream whose time to headers is far above a healthy alternative's is demoted behind
//!   it for a while, then given a trial (see [`outlier`]);
//! - background probes ask each upstream for a cheap path at an interval.

pub mod health;
mod outlier;
mod plan;
mod pool;
mod probe;
mod response;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use reqwest::Url;

use crate::credentials::UpstreamCredentials;
use health::Outcome;

pub use pool::UpstreamPool;
pub use response::UpstreamResponse;

/// One upstream endpoint (a GOPROXY base URL, or a checksum database's direct URL).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Label for metrics and messages: the base URL.
    pub name: String,
    base: Url,
    /// Wait for headers, and for each further chunk of the body.
    pub timeout: Duration,
    /// What requests to this endpoint carry in `Authorization` (an upstream's own; never a
    /// checksum database's direct URL).
    credentials: Option<Arc<UpstreamCredentials>>,
    /// The shared object store or a peer, not an upstream (its answers cannot be asked for
    /// again).
    pub is_tier: bool,
}

impl Endpoint {
    /// The shared object store or a peer as the source of an answer
    /// (`UpstreamResponse::from_store`, `from_peer`).
    fn tier(url: &str, timeout: Duration) -> Endpoint {
        let base = Url::parse(url).unwrap_or_else(|_| Url::parse("store:").expect("a valid URL"));
        Endpoint {
            name: url.to_string(),
            base,
            timeout,
            credentials: None,
            is_tier: true,
        }
    }

    fn new(
        base: &Url,
        timeout: Duration,
        credentials: Option<Arc<UpstreamCredentials>>,
    ) -> Endpoint {
        let name = base.as_str().trim_end_matches('/').to_string();
        Endpoint {
            name,
            base: base.clone(),
            timeout,
            credentials,
            is_tier: false,
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
    /// 401: our credentials were refused (or the upstream wants some and has none). Never
    /// passed on as a 401: that would ask the client for credentials meant for the upstream.
    #[error("{0}")]
    Unauthorized(String),
    /// Our credentials for the upstream cannot be read (a file missing, empty, malformed):
    /// the upstream was not asked.
    #[error("{0}")]
    Credentials(String),
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
    /// The answer could not be checked against the checksum database (not the upstream's
    /// fault, and no other upstream would fare better): `refused` when the database does not
    /// know the module (the client gets a 403, as the go command would refuse it), else the
    /// database is unavailable or its answer failed verification (502).
    #[error("{message}")]
    Unverifiable { refused: bool, message: String },
}

impl AttemptError {
    fn outcome(&self) -> &'static str {
        match self {
            AttemptError::NotFound { .. } => "not_found",
            AttemptError::Status { .. } | AttemptError::Transport(_) => "error",
            AttemptError::Unauthorized(_) => "unauthorized",
            AttemptError::Credentials(_) => "credentials_error",
            AttemptError::Timeout(_) => "timeout",
            AttemptError::Invalid(_) => "invalid",
            AttemptError::Local(_) => "local_error",
            AttemptError::Unverifiable { .. } => "unverifiable",
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
            // Refused credentials make the upstream as useless to us as an outage: the next
            // upstream is asked, and enough in a row open the breaker (the probes, which carry
            // the credentials too, close it once they are accepted again).
            AttemptError::Unauthorized(_)
            | AttemptError::Timeout(_)
            | AttemptError::Transport(_)
            | AttemptError::Invalid(_) => Some(Outcome::Failure),
            // Unreadable credentials say nothing of the upstream's health.
            AttemptError::Credentials(_)
            | AttemptError::Local(_)
            | AttemptError::Unverifiable { .. } => None,
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

/// Where a request goes: the module proxies, or a checksum database (the proxies' own
/// `/sumdb/<name>/` endpoints first, then the database's direct URL).
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Modules,
    Sumdb(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refused credentials count against the upstream like an outage; credentials we cannot
    /// read say nothing of it.
    #[test]
    fn credential_failures_and_health() {
        let refused = AttemptError::Unauthorized("refused our credentials".into());
        assert_eq!(refused.health_outcome(), Some(Outcome::Failure));
        assert_eq!(refused.outcome(), "unauthorized");
        let unreadable = AttemptError::Credentials("cannot read /x".into());
        assert_eq!(unreadable.health_outcome(), None);
        assert_eq!(unreadable.outcome(), "credentials_error");
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
