//! The object store as the fleet's members see it (with `spec.cache.objectStore`): the
//! `store` section of each Ready member's `/status` (`modfleet_contract::status::StoreStatus`),
//! read by the same poll as the upstreams ([`crate::fleet_health`]), folded into
//! `status.store` and the `StoreHealthy` condition ([`summarize`]).
//!
//! An unhealthy store is a degraded fleet, not a down one: members serve from their disks and
//! upstreams meanwhile (it costs upstream requests, never client errors), so `StoreHealthy` is
//! not part of `Ready`, like `UpstreamsHealthy`.

use crate::conditions::ConditionType::StoreHealthy;
use crate::conditions::Verdict;
use crate::crd::StoreHealth;
use crate::fleet_health::MemberReport;

/// What the summary takes from a member's `store` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreReport {
    pub url: String,
    /// Its circuit breaker is not open.
    pub healthy: bool,
    pub last_error: Option<String>,
}

/// From the proxy's own document.
pub fn report(s: &modfleet_contract::status::StoreStatus) -> StoreReport {
    StoreReport {
        url: s.url.clone(),
        healthy: s.healthy,
        last_error: s.last_error.as_ref().map(|e| e.message.clone()),
    }
}

/// `status.store` and `StoreHealthy` for the store at `spec_url` from the members' reports
/// (member name, report). `True`: healthy on every member that reported on it; `False`
/// (`StoreUnhealthy`): its breaker is open on some member; `Unknown`: nobody reported on it
/// (no Ready member, none answered, or all still run a config without this store).
pub fn summarize(spec_url: &str, reports: &[(String, MemberReport)]) -> (StoreHealth, Verdict) {
    let answered = reports
        .iter()
        .filter(|(_, r)| matches!(r, MemberReport::Reachable(..)))
        .count();
    let seen: Vec<(&str, &StoreReport)> = reports
        .iter()
        .filter_map(|(name, r)| match r {
            MemberReport::Reachable(a) => match &a.store {
                Some(s) if s.url == spec_url => Some((name.as_str(), s)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let unhealthy: Vec<&str> = seen
        .iter()
        .filter(|(_, s)| !s.healthy)
        .map(|(name, _)| *name)
        .collect();
    let health = StoreHealth {
        url: spec_url.to_owned(),
        healthy_members: (seen.len() - unhealthy.len()) as i32,
        members: seen.len() as i32,
        last_error: seen
            .iter()
            .find(|(_, s)| !s.healthy)
            .and_then(|(_, s)| s.last_error.clone()),
    };
    let counts = format!(
        "{spec_url} is healthy on {}/{} members",
        health.healthy_members, health.members
    );
    let verdict = if reports.is_empty() {
        StoreHealthy.unknown_because(
            "NoReadyMembers",
            "No Ready member to ask about the object store",
        )
    } else if seen.is_empty() {
        StoreHealthy.unknown_because(
            "StoreNotReported",
            format!(
                "No member reports on {spec_url} yet ({answered} of {} Ready members answered; a rollout of the new configuration may be under way)",
                reports.len()
            ),
        )
    } else if !unhealthy.is_empty() {
        let why = health
            .last_error
            .as_deref()
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default();
        StoreHealthy.false_because(
            "StoreUnhealthy",
            format!(
                "{counts}{why}; unhealthy on {}. Degraded, not down: those members serve from their disks and upstreams meanwhile",
                unhealthy.join(", ")
            ),
        )
    } else {
        StoreHealthy.true_because("StoreHealthy", counts)
    };
    (health, verdict)
}

/// The store's state when the members could not be asked at all.
pub fn unknown(spec_url: &str, reason: &'static str, message: String) -> (StoreHealth, Verdict) {
    let health = StoreHealth {
        url: spec_url.to_owned(),
        ..StoreHealth::default()
    };
    (health, StoreHealthy.unknown_because(reason, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::Status;
    use crate::fleet_health::Answer;

    const URL: &str = "s3://modules/fleet";

    fn member(i: usize, store: Option<(bool, &str)>) -> (String, MemberReport) {
        let store = store.map(|(healthy, url)| StoreReport {
            url: url.into(),
            healthy,
            last_error: (!healthy).then(|| "connection refused".into()),
        });
        let answer = Answer {
            store,
            ..Answer::default()
        };
        (format!("m-{i}"), MemberReport::Reachable(answer))
    }

    #[test]
    fn healthy_everywhere_is_true() {
        let (h, v) = summarize(
            URL,
            &[member(0, Some((true, URL))), member(1, Some((true, URL)))],
        );
        assert_eq!((h.healthy_members, h.members, h.last_error), (2, 2, None));
        assert_eq!((v.status, v.reason), (Status::True, "StoreHealthy"));
        assert_eq!(v.message, "s3://modules/fleet is healthy on 2/2 members");
    }

    #[test]
    fn unhealthy_on_a_member_is_false_and_says_degraded_not_down() {
        let (h, v) = summarize(
            URL,
            &[
                member(0, Some((true, URL))),
                member(1, Some((false, URL))),
                member(2, None),
                ("m-3".into(), MemberReport::Unreachable("refused".into())),
            ],
        );
        assert_eq!((h.healthy_members, h.members), (1, 2));
        assert_eq!(h.last_error.as_deref(), Some("connection refused"));
        assert_eq!((v.status, v.reason), (Status::False, "StoreUnhealthy"));
        assert_eq!(
            v.message,
            "s3://modules/fleet is healthy on 1/2 members (last error: connection refused); unhealthy on m-1. Degraded, not down: those members serve from their disks and upstreams meanwhile"
        );
    }

    #[test]
    fn nobody_reporting_on_this_store_is_unknown() {
        let (h, v) = summarize(URL, &[]);
        assert_eq!((v.status, v.reason), (Status::Unknown, "NoReadyMembers"));
        assert_eq!((h.url.as_str(), h.members), (URL, 0));
        // Members on an older config (another store, or none) do not count.
        let (h, v) = summarize(
            URL,
            &[member(0, None), member(1, Some((true, "s3://other/x")))],
        );
        assert_eq!((v.status, v.reason), (Status::Unknown, "StoreNotReported"));
        assert_eq!(h.members, 0);
        assert!(
            v.message.contains("2 of 2 Ready members answered"),
            "{}",
            v.message
        );
    }
}
