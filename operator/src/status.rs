//! Pure computation of the CR's status from what the children report. `lastTransitionTime`
//! is carried over from the previous status unless a condition's status flips, so watchers
//! (`kubectl wait`, alerting) see real transitions only.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::crd::{GoModuleProxy, GoModuleProxyStatus};
use crate::fleet_health::{FleetHealth, UPSTREAMS_HEALTHY};
use crate::resources::TEMPLATE_HASH_ANNOTATION;
use crate::resources::labels;
use crate::resources::service::endpoint;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// What one member Deployment reports (PerMember: one pod; Shared: all pods).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberState {
    pub name: String,
    /// Pods the Deployment wants.
    pub replicas: i32,
    /// Pods that are Ready and run the current template.
    pub ready: i32,
    /// The Deployment carries the desired template and its controller has caught up.
    pub up_to_date: bool,
    /// A failure the Deployment reports (ProgressDeadlineExceeded, ReplicaFailure).
    pub failure: Option<String>,
}

impl MemberState {
    /// Reads a Deployment as the API server returned it; `desired_hash` is the hash of the
    /// template we want it to run.
    pub fn from_deployment(d: &Deployment, desired_hash: &str) -> MemberState {
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = d.status.clone().unwrap_or_default();
        let hash_ok = d
            .annotations()
            .get(TEMPLATE_HASH_ANNOTATION)
            .is_some_and(|h| h == desired_hash);
        let observed = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
        let updated = st.updated_replicas.unwrap_or(0);
        let ready_pods = st.ready_replicas.unwrap_or(0);
        let up_to_date = hash_ok && observed && updated >= replicas;
        let ready = if hash_ok && observed {
            updated.min(ready_pods)
        } else {
            0
        };
        let failure = st.conditions.iter().flatten().find_map(|c| {
            let failed = (c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
                || (c.type_ == "ReplicaFailure" && c.status == "True");
            failed.then(|| {
                format!(
                    "Deployment {}: {}",
                    d.name_any(),
                    c.message.clone().unwrap_or_else(|| c.type_.clone())
                )
            })
        });
        MemberState {
            name: d.name_any(),
            replicas,
            ready,
            up_to_date,
            failure,
        }
    }
}

/// What one cache PVC reports.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheState {
    pub name: String,
    /// `Pending`, `Bound` or `Lost`.
    pub phase: String,
}

impl CacheState {
    pub fn from_pvc(p: &PersistentVolumeClaim) -> CacheState {
        CacheState {
            name: p.name_any(),
            phase: p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Pending".into()),
        }
    }
}

/// Everything the status is computed from.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Member Deployments that exist, in member order.
    pub members: Vec<MemberState>,
    pub caches: Vec<CacheState>,
    /// The reconcile failed with this message (the status still reports the children).
    pub error: Option<String>,
    /// What the members said about their upstreams; `None` when the operator does not poll
    /// them (`--health-poll-interval 0s`): no `UpstreamsHealthy` condition then.
    pub health: Option<FleetHealth>,
}

fn cond(type_: &str, ok: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: None,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    }
}

/// The status for `gmp` given what its children report; `now` stamps conditions that flip.
pub fn compute(gmp: &GoModuleProxy, observed: &Observed, now: Time) -> GoModuleProxyStatus {
    let want = gmp.replicas();
    let members: i32 = observed.members.iter().map(|m| m.replicas).sum();
    let ready_members: i32 = observed.members.iter().map(|m| m.ready).sum();
    let outdated: Vec<&str> = observed
        .members
        .iter()
        .filter(|m| !m.up_to_date)
        .map(|m| m.name.as_str())
        .collect();
    let unbound: Vec<&str> = observed
        .caches
        .iter()
        .filter(|c| c.phase != "Bound")
        .map(|c| c.name.as_str())
        .collect();
    let lost: Vec<&str> = observed
        .caches
        .iter()
        .filter(|c| c.phase == "Lost")
        .map(|c| c.name.as_str())
        .collect();
    let failures: Vec<&str> = observed
        .members
        .iter()
        .filter_map(|m| m.failure.as_deref())
        .collect();

    let all_ready = members == want && ready_members >= want && unbound.is_empty();
    let ready = if want == 0 && members == 0 {
        cond(
            READY,
            true,
            "ScaledToZero",
            "The fleet has no members (replicas: 0)".into(),
        )
    } else if all_ready {
        cond(
            READY,
            true,
            "AllMembersReady",
            format!("{ready_members}/{want} members are ready with the current configuration"),
        )
    } else if !unbound.is_empty() {
        cond(
            READY,
            false,
            "CachePending",
            format!("Waiting for cache volumes to bind: {}", unbound.join(", ")),
        )
    } else {
        cond(
            READY,
            false,
            "MembersNotReady",
            format!("{ready_members}/{want} members are ready with the current configuration"),
        )
    };

    let progressing = if members != want {
        cond(
            PROGRESSING,
            true,
            if members < want {
                "ScalingUp"
            } else {
                "ScalingDown"
            },
            format!("Scaling from {members} to {want} members"),
        )
    } else if !outdated.is_empty() {
        cond(
            PROGRESSING,
            true,
            "RollingOut",
            format!(
                "Rolling out the current configuration one member at a time; not yet updated: {}",
                outdated.join(", ")
            ),
        )
    } else if !all_ready && want > 0 {
        cond(
            PROGRESSING,
            true,
            "WaitingForMembers",
            format!("{ready_members}/{want} members are ready"),
        )
    } else {
        cond(
            PROGRESSING,
            false,
            "RolloutComplete",
            "Every member runs the current configuration".into(),
        )
    };

    let degraded = if let Some(e) = &observed.error {
        cond(DEGRADED, true, "ReconcileFailed", e.clone())
    } else if !lost.is_empty() {
        cond(
            DEGRADED,
            true,
            "CacheVolumeLost",
            format!(
                "Cache volumes lost their PersistentVolume: {}",
                lost.join(", ")
            ),
        )
    } else if !failures.is_empty() {
        cond(DEGRADED, true, "MemberFailed", failures.join("; "))
    } else {
        cond(DEGRADED, false, "AsExpected", "No failures observed".into())
    };

    // Not part of Ready: members serve cached artifacts whatever their upstreams do, and a
    // fleet that flapped to not-Ready on every upstream hiccup would page the wrong people.
    let upstreams_healthy = observed.health.as_ref().map(|h| Condition {
        status: h.verdict.status.into(),
        ..cond(
            UPSTREAMS_HEALTHY,
            false,
            h.verdict.reason,
            h.verdict.message.clone(),
        )
    });

    let previous = gmp
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let conditions = [ready, progressing, degraded]
        .into_iter()
        .chain(upstreams_healthy)
        .map(|mut c| {
            c.observed_generation = gmp.metadata.generation;
            c.last_transition_time = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            c
        })
        .collect();

    GoModuleProxyStatus {
        observed_generation: gmp.metadata.generation,
        members,
        ready_members,
        endpoint: endpoint(gmp),
        selector: labels::selector_string(&labels::fleet_selector(&gmp.name_any())),
        upstreams: observed
            .health
            .as_ref()
            .map(|h| h.upstreams.clone())
            .unwrap_or_default(),
        conditions,
    }
}

/// The condition of `type_` in a status, if any.
pub fn condition<'a>(status: &'a GoModuleProxyStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testutil::minimal;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn member(i: usize, ready: bool, up_to_date: bool) -> MemberState {
        MemberState {
            name: format!("gomod-{i}"),
            replicas: 1,
            ready: i32::from(ready && up_to_date),
            up_to_date,
            failure: None,
        }
    }

    fn bound(n: usize) -> Vec<CacheState> {
        (0..n)
            .map(|i| CacheState {
                name: format!("gomod-cache-{i}"),
                phase: "Bound".into(),
            })
            .collect()
    }

    fn get<'a>(s: &'a GoModuleProxyStatus, t: &str) -> &'a Condition {
        condition(s, t).unwrap()
    }

    #[test]
    fn all_ready() {
        let g = minimal();
        let obs = Observed {
            members: (0..3).map(|i| member(i, true, true)).collect(),
            caches: bound(3),
            error: None,
            health: None,
        };
        let s = compute(&g, &obs, t(100));
        assert_eq!(s.members, 3);
        assert_eq!(s.ready_members, 3);
        assert_eq!(s.endpoint, "http://gomod.team-a.svc:80");
        assert_eq!(
            s.selector,
            "app.kubernetes.io/component=proxy,app.kubernetes.io/instance=gomod,app.kubernetes.io/name=modfleet-proxy"
        );
        assert_eq!(s.observed_generation, Some(1));
        let r = get(&s, READY);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", "AllMembersReady")
        );
        assert_eq!(r.observed_generation, Some(1));
        assert_eq!(get(&s, PROGRESSING).status, "False");
        assert_eq!(get(&s, DEGRADED).reason, "AsExpected");
    }

    #[test]
    fn pending_caches_and_scaling() {
        let g = minimal();
        let mut caches = bound(2);
        caches.push(CacheState {
            name: "gomod-cache-2".into(),
            phase: "Pending".into(),
        });
        let obs = Observed {
            members: (0..2).map(|i| member(i, true, true)).collect(),
            caches,
            error: None,
            health: None,
        };
        let s = compute(&g, &obs, t(100));
        let r = get(&s, READY);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "CachePending")
        );
        assert!(r.message.contains("gomod-cache-2"));
        let p = get(&s, PROGRESSING);
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", "ScalingUp")
        );
    }

    #[test]
    fn rolling_out_and_failures() {
        let g = minimal();
        let mut members: Vec<_> = (0..3).map(|i| member(i, true, i == 0)).collect();
        members[1].failure = Some("Deployment gomod-1: progress deadline exceeded".into());
        let obs = Observed {
            members,
            caches: bound(3),
            error: None,
            health: None,
        };
        let s = compute(&g, &obs, t(100));
        assert_eq!(s.ready_members, 1);
        let p = get(&s, PROGRESSING);
        assert_eq!(p.reason, "RollingOut");
        assert!(p.message.contains("gomod-1, gomod-2"), "{}", p.message);
        assert_eq!(get(&s, READY).reason, "MembersNotReady");
        let d = get(&s, DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "MemberFailed")
        );
    }

    #[test]
    fn reconcile_error_is_degraded() {
        let obs = Observed {
            error: Some("applying Deployment gomod-0: forbidden".into()),
            ..Observed::default()
        };
        let s = compute(&minimal(), &obs, t(1));
        let d = get(&s, DEGRADED);
        assert_eq!(d.reason, "ReconcileFailed");
        assert!(d.message.contains("forbidden"));
    }

    #[test]
    fn scaled_to_zero_is_ready() {
        let mut g = minimal();
        g.spec.replicas = 0;
        let s = compute(&g, &Observed::default(), t(1));
        assert_eq!(get(&s, READY).reason, "ScaledToZero");
        assert_eq!(get(&s, PROGRESSING).status, "False");
    }

    #[test]
    fn last_transition_time_only_changes_on_flips() {
        let mut g = minimal();
        let ready = Observed {
            members: (0..3).map(|i| member(i, true, true)).collect(),
            caches: bound(3),
            error: None,
            health: None,
        };
        let s1 = compute(&g, &ready, t(100));
        g.status = Some(s1.clone());
        // Same state later: nothing moves, so the status is identical (no patch needed).
        let s2 = compute(&g, &ready, t(200));
        assert_eq!(s1, s2);
        // A member goes unready: Ready flips (new time), Degraded does not (old time).
        let mut not_ready = ready.clone();
        not_ready.members[2] = member(2, false, true);
        g.status = Some(s2);
        let s3 = compute(&g, &not_ready, t(300));
        assert_eq!(get(&s3, READY).last_transition_time, t(300));
        assert_eq!(get(&s3, DEGRADED).last_transition_time, t(100));
        // Message changes without a flip keep the time too.
        g.status = Some(s3);
        let mut two_down = not_ready.clone();
        two_down.members[1] = member(1, false, true);
        let s4 = compute(&g, &two_down, t(400));
        assert_eq!(get(&s4, READY).last_transition_time, t(300));
        assert!(get(&s4, READY).message.starts_with("1/3"));
    }

    fn health(status: &'static str, reason: &'static str, message: &str) -> FleetHealth {
        FleetHealth {
            upstreams: vec![crate::crd::UpstreamHealth {
                url: "https://goproxy.example.com".into(),
                healthy_members: i32::from(status == "True") * 3,
                members: 3,
                last_error: None,
            }],
            verdict: crate::fleet_health::Verdict {
                status,
                reason,
                message: message.into(),
            },
        }
    }

    #[test]
    fn upstream_health_is_a_condition_of_its_own_and_not_part_of_ready() {
        let mut g = minimal();
        let mut obs = Observed {
            members: (0..3).map(|i| member(i, true, true)).collect(),
            caches: bound(3),
            error: None,
            health: Some(health(
                "False",
                "UpstreamDown",
                "https://goproxy.example.com is healthy on 0/3 members",
            )),
        };
        let s1 = compute(&g, &obs, t(100));
        let u = get(&s1, UPSTREAMS_HEALTHY);
        assert_eq!(
            (u.status.as_str(), u.reason.as_str()),
            ("False", "UpstreamDown")
        );
        assert_eq!(u.observed_generation, Some(1));
        assert_eq!(
            get(&s1, READY).status,
            "True",
            "cached artifacts still serve"
        );
        assert_eq!(get(&s1, DEGRADED).status, "False");
        assert_eq!(s1.upstreams[0].healthy_members, 0);
        assert_eq!(s1.upstreams[0].members, 3);

        // The same verdict later keeps the whole status, so nothing is patched.
        g.status = Some(s1.clone());
        assert_eq!(compute(&g, &obs, t(200)), s1);

        // Recovery flips the condition (new time) and leaves the others alone.
        obs.health = Some(health("True", "AllUpstreamsHealthy", "Every upstream ..."));
        let s2 = compute(&g, &obs, t(300));
        assert_eq!(get(&s2, UPSTREAMS_HEALTHY).status, "True");
        assert_eq!(get(&s2, UPSTREAMS_HEALTHY).last_transition_time, t(300));
        assert_eq!(get(&s2, READY).last_transition_time, t(100));
        assert_eq!(s2.upstreams[0].healthy_members, 3);

        // Unknown is a flip too.
        g.status = Some(s2);
        obs.health = Some(health("Unknown", "NoMemberReports", "No Ready member ..."));
        let s3 = compute(&g, &obs, t(400));
        assert_eq!(get(&s3, UPSTREAMS_HEALTHY).status, "Unknown");
        assert_eq!(get(&s3, UPSTREAMS_HEALTHY).last_transition_time, t(400));
    }

    #[test]
    fn no_polling_means_no_condition_and_no_upstreams() {
        let s = compute(&minimal(), &Observed::default(), t(1));
        assert!(condition(&s, UPSTREAMS_HEALTHY).is_none());
        assert!(s.upstreams.is_empty());
        // Written even when empty: the status is a merge patch, and an omitted list would
        // leave a stale one in place.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["upstreams"], serde_json::json!([]));
    }

    #[test]
    fn member_state_from_deployment() {
        use crate::resources::{deployment, testutil::ctx};
        use k8s_openapi::api::apps::v1::DeploymentStatus;
        let mut d = deployment::build(&minimal(), &ctx(), Some(0), "abc");
        let hash = d.annotations()[TEMPLATE_HASH_ANNOTATION].clone();
        d.metadata.generation = Some(2);
        d.status = Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(1),
            updated_replicas: Some(1),
            ready_replicas: Some(1),
            ..DeploymentStatus::default()
        });
        let m = MemberState::from_deployment(&d, &hash);
        assert!(m.up_to_date);
        assert_eq!(m.ready, 1);
        let m = MemberState::from_deployment(&d, "other");
        assert!(!m.up_to_date);
        assert_eq!(m.ready, 0);
        d.status.as_mut().unwrap().observed_generation = Some(1);
        assert!(!MemberState::from_deployment(&d, &hash).up_to_date);
    }
}
