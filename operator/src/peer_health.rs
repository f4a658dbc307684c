//! Peer fill as the fleet's members see it: the `peers` section of each Ready member's
//! `/status` (`modfleet_contract::status::PeersStatus`), read by the same poll as the upstreams
//! ([`crate::fleet_health`]), folded into the `PeersHealthy` condition ([`summarize`]).
//!
//! Why a condition: a member that cannot read its membership (a restrictive `egressTo` that
//! leaves out the API server, a RoleBinding gone) keeps its last list, which at start is empty:
//! peer fill is then silently off for it and every miss costs an upstream fetch. Nothing fails
//! for clients, so only this says so. Like `StoreHealthy`, it is not part of `Ready`.

use crate::conditions::ConditionType::PeersHealthy;
use crate::conditions::Verdict;
use crate::fleet_health::MemberReport;

/// At most this many members are named in a message.
const MAX_NAMED: usize = 3;

/// What the summary takes from a member's `peers` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeersReport {
    /// How many members it sees (itself included).
    pub members: usize,
    /// Why its last read of the membership failed; `None` once a read succeeds.
    pub last_error: Option<String>,
}

/// From the proxy's own document.
pub fn report(s: &modfleet_contract::status::PeersStatus) -> PeersReport {
    PeersReport {
        members: s.members.len(),
        last_error: s.last_error.as_ref().map(|e| e.message.clone()),
    }
}

/// `PeersHealthy` for the fleet `name` from the members' reports (member name, report).
/// `True`: every member that reports on peer fill read its membership last time; `False`
/// (`MembershipUnreadable`): some member's last read failed; `Unknown`: nobody reported on peer
/// fill (no Ready member, none answered, or all still run a config without it).
pub fn summarize(name: &str, reports: &[(String, MemberReport)]) -> Verdict {
    let seen: Vec<(&str, &PeersReport)> = reports
        .iter()
        .filter_map(|(member, r)| match r {
            MemberReport::Reachable(a) => a.peers.as_ref().map(|p| (member.as_str(), p)),
            MemberReport::Unreachable(_) => None,
        })
        .collect();
    let failing: Vec<(&str, &str)> = seen
        .iter()
        .filter_map(|(member, p)| Some((*member, p.last_error.as_deref()?)))
        .collect();
    if reports.is_empty() {
        return PeersHealthy
            .unknown_because("NoReadyMembers", "No Ready member to ask about peer fill");
    }
    if seen.is_empty() {
        let answered = reports
            .iter()
            .filter(|(_, r)| matches!(r, MemberReport::Reachable(..)))
            .count();
        return PeersHealthy.unknown_because(
            "PeersNotReported",
            format!(
                "No member reports on peer fill yet ({answered} of {} Ready members answered; a rollout of the new configuration may be under way)",
                reports.len()
            ),
        );
    }
    if let Some((_, error)) = failing.first() {
        let mut named: Vec<&str> = failing.iter().take(MAX_NAMED).map(|(m, _)| *m).collect();
        let more = failing.len().saturating_sub(MAX_NAMED);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        named.sort_unstable();
        return PeersHealthy.false_because(
            "MembershipUnreadable",
            format!(
                "{}/{} members cannot read the fleet's membership: {}{more} (last error: {error}). They keep their last list (empty at start: they fetch every miss themselves, as without peer fill). Members read the EndpointSlices of the Service {name}-peers from the API server with the ServiceAccount {name} (Role {name}-peers): with a restrictive spec.networkPolicy.egressTo, admit the API server's address and port",
                failing.len(),
                seen.len(),
                named.join(", "),
            ),
        );
    }
    let fewest = seen.iter().map(|(_, p)| p.members).min().unwrap_or(0);
    let most = seen.iter().map(|(_, p)| p.members).max().unwrap_or(0);
    let sizes = if fewest == most {
        format!("{most}")
    } else {
        format!("{fewest} to {most}")
    };
    PeersHealthy.true_because(
        "MembershipRead",
        format!(
            "{} members read the fleet's membership and see {sizes} members",
            seen.len()
        ),
    )
}

/// Peer fill's state when the members could not be asked at all.
pub fn unknown(reason: &'static str, message: String) -> Verdict {
    PeersHealthy.unknown_because(reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::Status;
    use crate::fleet_health::Answer;

    fn member(i: usize, peers: Option<(usize, Option<&str>)>) -> (String, MemberReport) {
        let answer = Answer {
            peers: peers.map(|(members, e)| PeersReport {
                members,
                last_error: e.map(str::to_owned),
            }),
            ..Answer::default()
        };
        (format!("m-{i}"), MemberReport::Reachable(answer))
    }

    #[test]
    fn every_member_reading_its_membership_is_true() {
        let v = summarize(
            "gomod",
            &[member(0, Some((3, None))), member(1, Some((3, None)))],
        );
        assert_eq!((v.status, v.reason), (Status::True, "MembershipRead"));
        assert_eq!(
            v.message,
            "2 members read the fleet's membership and see 3 members"
        );
        let v = summarize(
            "gomod",
            &[member(0, Some((2, None))), member(1, Some((3, None)))],
        );
        assert!(v.message.contains("see 2 to 3 members"), "{}", v.message);
    }

    #[test]
    fn a_member_that_cannot_read_is_false_and_says_how_to_fix_it() {
        let v = summarize(
            "gomod",
            &[
                member(0, Some((3, None))),
                member(1, Some((0, Some("connect timed out")))),
                member(2, None),
                ("m-3".into(), MemberReport::Unreachable("refused".into())),
            ],
        );
        assert_eq!(
            (v.status, v.reason),
            (Status::False, "MembershipUnreadable")
        );
        assert!(
            v.message.starts_with(
                "1/2 members cannot read the fleet's membership: m-1 (last error: connect timed out)"
            ),
            "{}",
            v.message
        );
        for fix in [
            "gomod-peers",
            "ServiceAccount gomod",
            "egressTo",
            "API server",
        ] {
            assert!(v.message.contains(fix), "{fix}: {}", v.message);
        }
        // Many failing: three named, the rest counted.
        let many: Vec<_> = (0..5)
            .map(|i| member(i, Some((1, Some("forbidden")))))
            .collect();
        let v = summarize("gomod", &many);
        assert!(
            v.message.starts_with(
                "5/5 members cannot read the fleet's membership: m-0, m-1, m-2 and 2 more"
            ),
            "{}",
            v.message
        );
    }

    #[test]
    fn nobody_reporting_on_peer_fill_is_unknown() {
        let v = summarize("gomod", &[]);
        assert_eq!((v.status, v.reason), (Status::Unknown, "NoReadyMembers"));
        let v = summarize(
            "gomod",
            &[
                member(0, None),
                ("m-1".into(), MemberReport::Unreachable("x".into())),
            ],
        );
        assert_eq!((v.status, v.reason), (Status::Unknown, "PeersNotReported"));
        assert!(
            v.message.contains("1 of 2 Ready members answered"),
            "{}",
            v.message
        );
    }
}
