//! The `/status` document: each upstream's health as one member sees it. The proxy serves it
//! on its admin port (`GET /status`); the operator reads it from every Ready member.
//!
//! Readers take what they know: unknown keys are ignored, and every key but `upstreams`,
//! `upstreams[].url` and `upstreams[].healthy` may be missing (it then reads as its default),
//! so that members of another version still report during a rollout. The operator relies on
//! `url`, `healthy` and `last_error` only. The upstream entries keep their snake_case keys,
//! which readers (dashboards, scripts, the tests) already use.

use serde::{Deserialize, Serialize};

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatus {
    /// The member serves GOPROXY requests (what `/readyz` says).
    #[serde(default)]
    pub ready: bool,
    /// How many of `upstreams` are healthy.
    #[serde(default)]
    pub upstreams_healthy: usize,
    /// In the order of the member's configuration.
    pub upstreams: Vec<UpstreamStatus>,
    /// The shared object store (`objectStore`); absent when none is configured, and from
    /// members that do not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreStatus>,
    /// Peer fill (`peerFill`); absent when it is off, and from members that do not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<PeersStatus>,
}

impl ProxyStatus {
    /// The document for these upstreams (`upstreams_healthy` counted from them).
    pub fn new(ready: bool, upstreams: Vec<UpstreamStatus>) -> ProxyStatus {
        ProxyStatus {
            ready,
            upstreams_healthy: upstreams.iter().filter(|u| u.health.healthy).count(),
            upstreams,
            store: None,
            peers: None,
        }
    }
}

/// The shared object store as one member sees it. An unhealthy store costs upstream requests,
/// never client errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    /// As configured (`s3://bucket/prefix`).
    pub url: String,
    /// Its circuit breaker is not open.
    pub healthy: bool,
    #[serde(default)]
    pub breaker: BreakerState,
    #[serde(default)]
    pub consecutive_failures: u32,
    /// Reads since start, by result.
    #[serde(default)]
    pub reads: StoreReads,
    /// Writes since start, by result.
    #[serde(default)]
    pub writes: StoreWrites,
    /// Writes waiting in the queue.
    #[serde(default)]
    pub queue_depth: u64,
    #[serde(default)]
    pub last_error: Option<LastError>,
}

/// Peer fill as one member sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PeersStatus {
    /// This member's `HOST:PORT` in the membership; empty when it owns nothing.
    pub advertise: String,
    /// The members as last read (this one included), sorted.
    pub members: Vec<String>,
    /// When the membership was last read successfully (Unix seconds); 0: never.
    pub refreshed_unix: u64,
    /// The last failure to read the membership (the last good one is kept meanwhile).
    pub last_error: Option<LastError>,
    /// Misses this member asked an owner for, by result.
    pub asked: PeerAsks,
    /// Peer requests this member answered with the artifact (200), as the owner.
    pub served: u64,
}

/// Misses asked of an owner, by result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerAsks {
    /// The owner's answer passed verification.
    pub hit: u64,
    /// The owner has no such artifact (its upstreams said so).
    pub not_found: u64,
    /// The owner failed, was slow, refused or sent what failed verification: fetched directly.
    pub fallback: u64,
}

/// Store reads by result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreReads {
    /// Found and verified.
    pub hit: u64,
    pub miss: u64,
    /// Found, but failed verification (fetched upstream instead).
    pub invalid: u64,
    /// Failed or timed out, or not asked while the breaker was open.
    pub error: u64,
}

/// Store writes by result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreWrites {
    pub ok: u64,
    /// Failed or timed out, or not tried while the breaker was open.
    pub error: u64,
    /// Not queued: the queue was full.
    pub dropped: u64,
}

/// One upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    /// As the proxy parsed it: scheme and host lower-cased, the scheme's default port dropped,
    /// no trailing slash.
    pub url: String,
    /// Lower is asked first.
    #[serde(default)]
    pub priority: u32,
    /// Share among upstreams of equal priority.
    #[serde(default)]
    pub weight: u32,
    /// After this long without an answer a request is also sent to the next upstream; `None`:
    /// hedging is off.
    #[serde(default)]
    pub hedge_delay_ms: Option<u64>,
    /// Set while the upstream is demoted as a latency outlier (asked after the healthy, faster
    /// upstreams); absent otherwise, and from members that do not know it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demoted: Option<Demotion>,
    #[serde(flatten)]
    pub health: UpstreamHealth,
}

/// Why and until when an upstream is demoted as a latency outlier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demotion {
    /// When it gets a trial request again, in seconds since the Unix epoch.
    #[serde(default)]
    pub until_unix: u64,
    /// Demotions in a row (each one lasts twice as long as the one before, up to a bound).
    #[serde(default)]
    pub count: u32,
    /// What was measured, e.g. "p50 2001 ms >= 100 ms (3 x p95 4 ms of http://b.example, at
    /// least 100 ms)".
    #[serde(default)]
    pub reason: String,
}

/// What the member has learnt about the upstream's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamHealth {
    /// Its circuit breaker is not open and its health probes are not failing.
    pub healthy: bool,
    #[serde(default)]
    pub breaker: BreakerState,
    #[serde(default)]
    pub probe: ProbeState,
    /// Time to response headers over recent attempts.
    #[serde(default)]
    pub latency_ms: Percentiles,
    /// Share of failed attempts among the recent ones, 0 to 1.
    #[serde(default)]
    pub error_rate: f64,
    /// Attempts since the member started.
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default)]
    pub last_error: Option<LastError>,
}

/// An upstream's circuit breaker (see the README, "Failover model").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Attempts go through.
    #[default]
    Closed,
    /// Attempts fail at once, until the open period ends.
    Open,
    /// One trial attempt is let through; its outcome closes or reopens the breaker.
    HalfOpen,
}

impl BreakerState {
    /// The document's spelling (also used in logs).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// The verdict of an upstream's health probes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeState {
    /// The last probe got an answer.
    Ok,
    /// Probes fail.
    Failing,
    /// No probe has finished yet (and any value a reader does not know).
    #[default]
    #[serde(other)]
    Unknown,
}

/// Latency percentiles in milliseconds; `None` until there are samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    #[serde(default)]
    pub p50: Option<f64>,
    #[serde(default)]
    pub p95: Option<f64>,
    #[serde(default)]
    pub p99: Option<f64>,
}

/// The last failure of an attempt or probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub message: String,
    /// When, in seconds since the Unix epoch.
    #[serde(default)]
    pub at_unix: u64,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn healthy(url: &str) -> UpstreamStatus {
        UpstreamStatus {
            url: url.into(),
            priority: 0,
            weight: 1,
            hedge_delay_ms: Some(1000),
            demoted: None,
            health: UpstreamHealth {
                healthy: true,
                breaker: BreakerState::Closed,
                probe: ProbeState::Ok,
                latency_ms: Percentiles {
                    p50: Some(1.0),
                    p95: Some(2.0),
                    p99: Some(3.0),
                },
                error_rate: 0.0,
                requests: 3,
                consecutive_failures: 0,
                last_error: None,
            },
        }
    }

    /// The keys and spellings readers already rely on.
    #[test]
    fn serves_the_documented_shape() {
        let mut down = healthy("https://b.example");
        down.health.healthy = false;
        down.health.breaker = BreakerState::HalfOpen;
        down.health.probe = ProbeState::Failing;
        down.health.last_error = Some(LastError {
            message: "connection refused".into(),
            at_unix: 1_700_000_000,
        });
        let doc = ProxyStatus::new(true, vec![healthy("https://a.example"), down]);
        assert_eq!(
            serde_json::to_value(&doc).unwrap(),
            json!({"ready": true, "upstreamsHealthy": 1, "upstreams": [
                {"url": "https://a.example", "priority": 0, "weight": 1, "hedge_delay_ms": 1000,
                 "healthy": true, "breaker": "closed", "probe": "ok",
                 "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0},
                 "error_rate": 0.0, "requests": 3, "consecutive_failures": 0, "last_error": null},
                {"url": "https://b.example", "priority": 0, "weight": 1, "hedge_delay_ms": 1000,
                 "healthy": false, "breaker": "half_open", "probe": "failing",
                 "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0},
                 "error_rate": 0.0, "requests": 3, "consecutive_failures": 0,
                 "last_error": {"message": "connection refused", "at_unix": 1_700_000_000u64}}
            ]})
        );
        let back: ProxyStatus =
            serde_json::from_value(serde_json::to_value(&doc).unwrap()).unwrap();
        assert_eq!(back, doc);
        for s in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    /// A demoted upstream carries `demoted`; an undemoted one leaves it out (as older members
    /// do), and both read back.
    #[test]
    fn a_demotion_is_served_only_while_it_lasts() {
        let mut slow = healthy("https://a.example");
        slow.demoted = Some(Demotion {
            until_unix: 1_700_000_030,
            count: 1,
            reason: "p50 2000 ms >= 200 ms".into(),
        });
        let doc = ProxyStatus::new(true, vec![slow, healthy("https://b.example")]);
        let value = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            value["upstreams"][0]["demoted"],
            json!({"until_unix": 1_700_000_030u64, "count": 1, "reason": "p50 2000 ms >= 200 ms"})
        );
        assert!(value["upstreams"][1].get("demoted").is_none(), "{value}");
        assert_eq!(serde_json::from_value::<ProxyStatus>(value).unwrap(), doc);
    }

    /// A member of another version: missing keys read as defaults, unknown ones are ignored.
    #[test]
    fn the_store_section_is_served_only_with_a_store() {
        let mut doc = ProxyStatus::new(true, vec![]);
        assert!(serde_json::to_value(&doc).unwrap().get("store").is_none());
        doc.store = Some(StoreStatus {
            url: "s3://modules/fleet".into(),
            healthy: false,
            breaker: BreakerState::Open,
            consecutive_failures: 5,
            reads: StoreReads {
                hit: 1,
                miss: 2,
                invalid: 3,
                error: 4,
            },
            writes: StoreWrites {
                ok: 5,
                error: 6,
                dropped: 7,
            },
            queue_depth: 8,
            last_error: Some(LastError {
                message: "connection refused".into(),
                at_unix: 1_700_000_000,
            }),
        });
        let value = serde_json::to_value(&doc).unwrap();
        assert_eq!(
            value["store"],
            json!({"url": "s3://modules/fleet", "healthy": false, "breaker": "open",
                   "consecutiveFailures": 5,
                   "reads": {"hit": 1, "miss": 2, "invalid": 3, "error": 4},
                   "writes": {"ok": 5, "error": 6, "dropped": 7}, "queueDepth": 8,
                   "lastError": {"message": "connection refused", "at_unix": 1_700_000_000}})
        );
        let back: ProxyStatus = serde_json::from_value(value).unwrap();
        assert_eq!(back, doc);
        // A reader of another version: only `url` and `healthy` are needed.
        let doc: ProxyStatus = serde_json::from_str(
            r#"{"upstreams":[],"store":{"url":"gs://b","healthy":true,"new":1}}"#,
        )
        .unwrap();
        assert_eq!(doc.store.unwrap().reads, StoreReads::default());
    }

    #[test]
    fn reads_what_another_version_serves() {
        let doc: ProxyStatus = serde_json::from_str(
            r#"{"upstreams":[{"url":"http://u.example","healthy":true,"probe":"sleepy","new":1}]}"#,
        )
        .unwrap();
        assert!(!doc.ready);
        let u = &doc.upstreams[0];
        assert!(u.health.healthy);
        assert_eq!(u.health.probe, ProbeState::Unknown);
        assert_eq!(u.health.breaker, BreakerState::Closed);
        assert_eq!(u.health.last_error, None);
        assert!(
            serde_json::from_str::<ProxyStatus>(r#"{"upstreams":[{"healthy":true}]}"#).is_err()
        );
    }
}
