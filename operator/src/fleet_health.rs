//! Upstream health as the fleet's members see it. Each member proxy serves `/status` on its
//! admin port (each upstream's state: healthy, breaker, probe, latency); this module parses
//! those documents and summarises them per upstream, for a `status.upstreams` list and an
//! `UpstreamsHealthy` condition.
//!
//! Not yet called by the controller (Step 5 is open on this point): reading `/status` needs
//! the members' pod IPs, and on the kwok test cluster those are fake `10.0.0.x` addresses that
//! this project's sandbox must never contact. Wiring it in needs a test cluster whose pod IPs
//! are loopback addresses (kwok `--cidr`), then: list Ready pods of the fleet, GET
//! `http://POD_IP:9090/status` with a short timeout, [`parse`], [`summarize`], and requeue
//! about every 30s so the condition stays fresh.

use serde::{Deserialize, Serialize};

pub const UPSTREAMS_HEALTHY: &str = "UpstreamsHealthy";
/// The proxy's admin port, where `/status` lives.
pub const ADMIN_PORT: u16 = 9090;

/// One upstream as the fleet sees it: on how many of the members that answered it is healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamHealth {
    pub url: String,
    pub healthy_members: i32,
    pub members: i32,
}

/// What one member said about its upstreams, or why it said nothing.
#[derive(Clone, Debug, PartialEq)]
pub enum MemberReport {
    /// (upstream URL, healthy) for each upstream the member knows.
    Reachable(Vec<(String, bool)>),
    Unreachable(String),
}

/// The subset of the proxy's `/status` JSON the operator relies on.
#[derive(Deserialize)]
struct ProxyStatus {
    upstreams: Vec<ProxyUpstream>,
}

#[derive(Deserialize)]
struct ProxyUpstream {
    url: String,
    healthy: bool,
}

/// Parses a member's `/status` body.
pub fn parse(body: &[u8]) -> MemberReport {
    match serde_json::from_slice::<ProxyStatus>(body) {
        Ok(s) => MemberReport::Reachable(
            s.upstreams
                .into_iter()
                .map(|u| (normalize(&u.url), u.healthy))
                .collect(),
        ),
        Err(e) => MemberReport::Unreachable(format!("unreadable /status: {e}")),
    }
}

/// URLs compare without a trailing slash: the proxy reports its upstreams that way.
fn normalize(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

/// The condition parts: status ("True", "False", "Unknown"), reason and message.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub status: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// Summarises the members' reports for the upstreams in the spec (in spec order).
pub fn summarize(
    spec_urls: &[String],
    reports: &[(String, MemberReport)],
) -> (Vec<UpstreamHealth>, Verdict) {
    let reachable: Vec<&Vec<(String, bool)>> = reports
        .iter()
        .filter_map(|(_, r)| match r {
            MemberReport::Reachable(u) => Some(u),
            MemberReport::Unreachable(_) => None,
        })
        .collect();
    let members = reachable.len() as i32;
    let summary: Vec<UpstreamHealth> = spec_urls
        .iter()
        .map(|url| {
            let url = normalize(url);
            let healthy_members = reachable
                .iter()
                .filter(|ups| ups.iter().any(|(u, ok)| *u == url && *ok))
                .count() as i32;
            UpstreamHealth {
                url,
                healthy_members,
                members,
            }
        })
        .collect();
    let verdict = if reports.is_empty() {
        Verdict {
            status: "Unknown",
            reason: "NoReadyMembers",
            message: "no Ready member to ask about upstream health".into(),
        }
    } else if reachable.is_empty() {
        // A stable message (no error text), so an unchanged situation does not rewrite the
        // status on every reconcile.
        Verdict {
            status: "Unknown",
            reason: "MembersUnreachable",
            message: format!(
                "could not read /status on port {ADMIN_PORT} from any of {} members",
                reports.len()
            ),
        }
    } else {
        let degraded: Vec<String> = summary
            .iter()
            .filter(|u| u.healthy_members < u.members)
            .map(|u| {
                format!(
                    "{}: healthy on {}/{} members",
                    u.url, u.healthy_members, u.members
                )
            })
            .collect();
        if degraded.is_empty() {
            Verdict {
                status: "True",
                reason: "AllUpstreamsHealthy",
                message: format!(
                    "every upstream is healthy on all {members} members that answered"
                ),
            }
        } else {
            let none_left = summary.iter().all(|u| u.healthy_members == 0);
            Verdict {
                status: "False",
                reason: if none_left {
                    "NoHealthyUpstream"
                } else {
                    "UpstreamUnhealthy"
                },
                message: degraded.join("; "),
            }
        }
    };
    (summary, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> Vec<String> {
        vec!["https://a.example/".into(), "https://b.example".into()]
    }

    fn up(pairs: &[(&str, bool)]) -> MemberReport {
        MemberReport::Reachable(pairs.iter().map(|(u, ok)| (u.to_string(), *ok)).collect())
    }

    #[test]
    fn all_healthy_is_true() {
        let reports = vec![
            (
                "m-0".to_string(),
                up(&[("https://a.example", true), ("https://b.example", true)]),
            ),
            (
                "m-1".to_string(),
                up(&[("https://a.example", true), ("https://b.example", true)]),
            ),
        ];
        let (summary, v) = summarize(&urls(), &reports);
        assert_eq!(v.status, "True");
        assert_eq!(v.reason, "AllUpstreamsHealthy");
        assert_eq!(summary[0].url, "https://a.example");
        assert_eq!((summary[0].healthy_members, summary[0].members), (2, 2));
    }

    #[test]
    fn one_member_cut_off_is_false_with_a_per_upstream_count() {
        let reports = vec![
            (
                "m-0".to_string(),
                up(&[("https://a.example", true), ("https://b.example", true)]),
            ),
            (
                "m-1".to_string(),
                up(&[("https://a.example", false), ("https://b.example", false)]),
            ),
            (
                "m-2".to_string(),
                MemberReport::Unreachable("timeout".into()),
            ),
        ];
        let (summary, v) = summarize(&urls(), &reports);
        assert_eq!(v.status, "False");
        assert_eq!(v.reason, "UpstreamUnhealthy");
        assert!(
            v.message
                .contains("https://a.example: healthy on 1/2 members"),
            "{}",
            v.message
        );
        assert_eq!((summary[1].healthy_members, summary[1].members), (1, 2));
    }

    #[test]
    fn nobody_healthy_and_nobody_reachable() {
        let reports = vec![("m-0".to_string(), up(&[("https://a.example", false)]))];
        let (_, v) = summarize(&urls(), &reports);
        assert_eq!(v.reason, "NoHealthyUpstream");
        let reports = vec![(
            "m-0".to_string(),
            MemberReport::Unreachable("refused".into()),
        )];
        let (summary, v) = summarize(&urls(), &reports);
        assert_eq!((v.status, v.reason), ("Unknown", "MembersUnreachable"));
        assert!(v.message.contains("any of 1 members"), "{}", v.message);
        assert_eq!(summary[0].members, 0);
        let (_, v) = summarize(&urls(), &[]);
        assert_eq!(v.reason, "NoReadyMembers");
    }

    #[test]
    fn parses_the_proxys_status_document() {
        // The shape modfleet-proxy serves (proxy/src/server.rs, upstream::UpstreamStatus).
        let body = br#"{"ready":true,"upstreamsHealthy":1,"upstreams":[
            {"url":"https://a.example","priority":0,"weight":1,"hedge_delay_ms":1000,
             "healthy":true,"breaker":"closed","probe":"ok","latency_ms":{"p50":1.0,"p95":2.0,"p99":3.0},
             "error_rate":0.0,"requests":3,"consecutive_failures":0,"last_error":null},
            {"url":"https://b.example/","healthy":false,"breaker":"open"}]}"#;
        assert_eq!(
            parse(body),
            MemberReport::Reachable(vec![
                ("https://a.example".into(), true),
                ("https://b.example".into(), false)
            ])
        );
        assert!(matches!(parse(b"<html>"), MemberReport::Unreachable(_)));
    }
}
