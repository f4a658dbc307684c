//! Pure computation of the CR's status from what the children report: one function decides
//! each of `Ready`, `Progressing` and `Degraded` (`UpstreamsHealthy` comes from
//! [`crate::fleet_health`]), and [`notices`] says which changes deserve an Event.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::conditions::ConditionType::{
    Degraded, Injecting, PeersHealthy, Progressing, Ready, StoreHealthy, UpstreamsHealthy,
};
use crate::conditions::{Status, Verdict};
use crate::crd::{GoModuleProxy, GoModuleProxyStatus, InjectionStatus};
use crate::fleet_health::FleetHealth;
use crate::resources::TEMPLATE_HASH_ANNOTATION;
use crate::resources::labels;
use crate::resources::service::endpoint;

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
            let status = Status::parse(&c.status);
            let failed = (c.type_ == "Progressing"
                && status == Some(Status::False)
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
                || (c.type_ == "ReplicaFailure" && status == Some(Status::True));
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
    /// The reconcile failed so (the status still reports the children).
    pub error: Option<Failure>,
    /// What the members said about their upstreams; `None` when the operator does not poll
    /// them (`--health-poll-interval 0s`): no `UpstreamsHealthy` condition then.
    pub health: Option<FleetHealth>,
    /// With `spec.injection`: `status.injection` and the `Injecting` verdict
    /// ([`crate::injection::status`]).
    pub injection: Option<(Option<InjectionStatus>, Verdict)>,
}

/// A failed reconcile as the `Degraded` condition reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

/// What failed, which decides the `Degraded` reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// A call to the API server failed (`ReconcileFailed`).
    Reconcile,
    /// A Secret of `upstreams` or `privateModules` is missing or lacks a key (`CredentialsMissing`): the
    /// fleet's owner, not the cluster, has to act.
    Credentials,
}

/// The counts every condition is decided from.
struct Fleet<'a> {
    /// Members the spec wants.
    want: i32,
    /// Pods the existing member Deployments want.
    members: i32,
    ready_members: i32,
    /// Members not yet on the current template.
    outdated: Vec<&'a str>,
    /// Cache claims not bound yet.
    unbound: Vec<&'a str>,
    /// Cache claims whose PersistentVolume is gone.
    lost: Vec<&'a str>,
    /// Failures the member Deployments report.
    failures: Vec<&'a str>,
}

impl<'a> Fleet<'a> {
    fn observe(want: i32, observed: &'a Observed) -> Fleet<'a> {
        let members = &observed.members;
        let caches = &observed.caches;
        Fleet {
            want,
            members: members.iter().map(|m| m.replicas).sum(),
            ready_members: members.iter().map(|m| m.ready).sum(),
            outdated: members
                .iter()
                .filter(|m| !m.up_to_date)
                .map(|m| m.name.as_str())
                .collect(),
            unbound: caches
                .iter()
                .filter(|c| c.phase != "Bound")
                .map(|c| c.name.as_str())
                .collect(),
            lost: caches
                .iter()
                .filter(|c| c.phase == "Lost")
                .map(|c| c.name.as_str())
                .collect(),
            failures: members
                .iter()
                .filter_map(|m| m.failure.as_deref())
                .collect(),
        }
    }

    fn all_ready(&self) -> bool {
        self.members == self.want && self.ready_members >= self.want && self.unbound.is_empty()
    }
}

/// `Ready`: every member Ready on the current template, every cache bound.
fn ready(f: &Fleet) -> Verdict {
    let (want, ready_members) = (f.want, f.ready_members);
    if want == 0 && f.members == 0 {
        Ready.true_because("ScaledToZero", "The fleet has no members (replicas: 0)")
    } else if f.all_ready() {
        Ready.true_because(
            "AllMembersReady",
            format!("{ready_members}/{want} members are ready with the current configuration"),
        )
    } else if !f.unbound.is_empty() {
        Ready.false_because(
            "CachePending",
            format!(
                "Waiting for cache volumes to bind: {}",
                f.unbound.join(", ")
            ),
        )
    } else {
        Ready.false_because(
            "MembersNotReady",
            format!("{ready_members}/{want} members are ready with the current configuration"),
        )
    }
}

/// `Progressing`: scaling, rolling out, or waiting for members.
fn progressing(f: &Fleet) -> Verdict {
    let (want, members) = (f.want, f.members);
    if members != want {
        let reason = if members < want {
            "ScalingUp"
        } else {
            "ScalingDown"
        };
        Progressing.true_because(reason, format!("Scaling from {members} to {want} members"))
    } else if !f.outdated.is_empty() {
        Progressing.true_because(
            "RollingOut",
            format!(
                "Rolling out the current configuration one member at a time; not yet updated: {}",
                f.outdated.join(", ")
            ),
        )
    } else if !f.all_ready() && want > 0 {
        Progressing.true_because(
            "WaitingForMembers",
            format!("{}/{want} members are ready", f.ready_members),
        )
    } else {
        Progressing.false_because(
            "RolloutComplete",
            "Every member runs the current configuration",
        )
    }
}

/// `Degraded`: the reconcile failed, a cache volume was lost, or a member failed.
fn degraded(f: &Fleet, error: Option<&Failure>) -> Verdict {
    if let Some(e) = error {
        match e.kind {
            FailureKind::Reconcile => Degraded.true_because("ReconcileFailed", e.message.clone()),
            FailureKind::Credentials => {
                Degraded.true_because("CredentialsMissing", e.message.clone())
            }
        }
    } else if !f.lost.is_empty() {
        Degraded.true_because(
            "CacheVolumeLost",
            format!(
                "Cache volumes lost their PersistentVolume: {}",
                f.lost.join(", ")
            ),
        )
    } else if !f.failures.is_empty() {
        Degraded.true_because("MemberFailed", f.failures.join("; "))
    } else {
        Degraded.false_because("AsExpected", "No failures observed")
    }
}

/// The status for `gmp` given what its children report; `now` stamps conditions that flip.
pub fn compute(gmp: &GoModuleProxy, observed: &Observed, now: Time) -> GoModuleProxyStatus {
    let fleet = Fleet::observe(gmp.replicas(), observed);
    // `UpstreamsHealthy` is not part of Ready: members serve cached artifacts whatever their
    // upstreams do, and a fleet that flapped to not-Ready on every upstream hiccup would
    // page the wrong people.
    let upstreams_healthy = observed.health.as_ref().map(|h| h.verdict.clone());
    // Nor is `StoreHealthy`: without the store, members serve from disks and upstreams.
    let store = observed.health.as_ref().and_then(|h| h.store.clone());
    // Nor is `PeersHealthy`: a member without its membership fetches for itself.
    let peers = observed.health.as_ref().and_then(|h| h.peers.clone());
    let previous = gmp
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let conditions = [
        ready(&fleet),
        progressing(&fleet),
        degraded(&fleet, observed.error.as_ref()),
    ]
    .into_iter()
    .chain(upstreams_healthy)
    .chain(store.as_ref().map(|(_, v)| v.clone()))
    .chain(peers)
    .chain(observed.injection.as_ref().map(|(_, v)| v.clone()))
    .map(|v| v.into_condition(previous, gmp.metadata.generation, &now))
    .collect();

    GoModuleProxyStatus {
        observed_generation: gmp.metadata.generation,
        members: fleet.members,
        ready_members: fleet.ready_members,
        endpoint: endpoint(gmp),
        selector: labels::selector_string(&labels::fleet_selector(&gmp.name_any())),
        upstreams: observed
            .health
            .as_ref()
            .map(|h| h.upstreams.clone())
            .unwrap_or_default(),
        injection: observed.injection.as_ref().and_then(|(s, _)| s.clone()),
        store: store.map(|(s, _)| s),
        conditions,
    }
}

/// An Event worth publishing about a status change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// The Events a change of the status from `old` to `new` deserves: `Ready` turning true or
/// not, and upstream, store and membership outages and recoveries (not every `Unknown`: members that start up or
/// go away are `Ready`'s business).
pub fn notices(old: Option<&GoModuleProxyStatus>, new: &GoModuleProxyStatus) -> Vec<Notice> {
    let notice = |c: &Condition| Notice {
        warning: c.status != Status::True.as_str(),
        reason: c.reason.clone(),
        message: c.message.clone(),
    };
    let was_ready = Ready.status_in(old) == Some(Status::True);
    let ready = Ready
        .find(new)
        .filter(|r| (r.status == Status::True.as_str()) != was_ready);
    let upstreams = UpstreamsHealthy.find(new).filter(|u| {
        u.status != Status::Unknown.as_str()
            && UpstreamsHealthy.status_in(old) != Status::parse(&u.status)
    });
    let store = StoreHealthy.find(new).filter(|s| {
        s.status != Status::Unknown.as_str()
            && StoreHealthy.status_in(old) != Status::parse(&s.status)
    });
    let peers = PeersHealthy.find(new).filter(|p| {
        p.status != Status::Unknown.as_str()
            && PeersHealthy.status_in(old) != Status::parse(&p.status)
    });
    // Injection turning false (the webhook off, namespaces lost to an older fleet) or
    // recovering: an Event on the fleet.
    let injecting = Injecting.find(new).filter(|i| {
        i.status != Status::Unknown.as_str()
            && Injecting.status_in(old) != Status::parse(&i.status)
            && (i.status == Status::False.as_str() || Injecting.status_in(old).is_some())
    });
    ready
        .into_iter()
        .chain(upstreams)
        .chain(store)
        .chain(peers)
        .chain(injecting)
        .map(notice)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::ConditionType;
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

    fn get(s: &GoModuleProxyStatus, t: ConditionType) -> &Condition {
        t.find(s).unwrap()
    }

    #[test]
    fn all_ready() {
        let g = minimal();
        let obs = Observed {
            members: (0..3).map(|i| member(i, true, true)).collect(),
            caches: bound(3),
            error: None,
            health: None,
            injection: None,
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
        let r = get(&s, Ready);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("True", "AllMembersReady")
        );
        assert_eq!(r.observed_generation, Some(1));
        assert_eq!(get(&s, Progressing).status, "False");
        assert_eq!(get(&s, Degraded).reason, "AsExpected");
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
            injection: None,
        };
        let s = compute(&g, &obs, t(100));
        let r = get(&s, Ready);
        assert_eq!(
            (r.status.as_str(), r.reason.as_str()),
            ("False", "CachePending")
        );
        assert!(r.message.contains("gomod-cache-2"));
        let p = get(&s, Progressing);
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
            injection: None,
        };
        let s = compute(&g, &obs, t(100));
        assert_eq!(s.ready_members, 1);
        let p = get(&s, Progressing);
        assert_eq!(p.reason, "RollingOut");
        assert!(p.message.contains("gomod-1, gomod-2"), "{}", p.message);
        assert_eq!(get(&s, Ready).reason, "MembersNotReady");
        let d = get(&s, Degraded);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "MemberFailed")
        );
    }

    #[test]
    fn reconcile_error_is_degraded() {
        let obs = Observed {
            error: Some(Failure {
                kind: FailureKind::Reconcile,
                message: "applying Deployment gomod-0: forbidden".into(),
            }),
            ..Observed::default()
        };
        let s = compute(&minimal(), &obs, t(1));
        let d = get(&s, Degraded);
        assert_eq!(d.reason, "ReconcileFailed");
        assert!(d.message.contains("forbidden"));
    }

    /// A missing Secret is Degraded with its own reason, while members that run keep
    /// counting as Ready (nothing was changed under them).
    #[test]
    fn missing_credentials_are_degraded_by_name() {
        use crate::error::Error;
        use crate::resources::credentials::{CredentialsError, Owner, Problem};
        let e = Error::from(CredentialsError {
            problems: vec![Problem::NotFound {
                owner: Owner::PrivateModule(0),
                secret: "git-creds".into(),
            }],
        });
        let obs = Observed {
            members: (0..3).map(|i| member(i, true, true)).collect(),
            caches: bound(3),
            error: Some(Failure {
                kind: e.failure_kind(),
                message: e.to_string(),
            }),
            health: None,
            injection: None,
        };
        let s = compute(&minimal(), &obs, t(1));
        let d = get(&s, Degraded);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "CredentialsMissing")
        );
        assert!(
            d.message.contains("Secret git-creds not found"),
            "{}",
            d.message
        );
        assert_eq!(get(&s, Ready).status, "True");
        assert_eq!(s.ready_members, 3);
    }

    #[test]
    fn scaled_to_zero_is_ready() {
        let mut g = minimal();
        g.spec.replicas = 0;
        let s = compute(&g, &Observed::default(), t(1));
        assert_eq!(get(&s, Ready).reason, "ScaledToZero");
        assert_eq!(get(&s, Progressing).status, "False");
    }

    #[test]
    fn last_transition_time_only_changes_on_flips() {
        let mut g = minimal();
        let ready = Observed {
            members: (0..3).map(|i| member(i, true, true)).collect(),
            caches: bound(3),
            error: None,
            health: None,
            injection: None,
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
        assert_eq!(get(&s3, Ready).last_transition_time, t(300));
        assert_eq!(get(&s3, Degraded).last_transition_time, t(100));
        // Message changes without a flip keep the time too.
        g.status = Some(s3);
        let mut two_down = not_ready.clone();
        two_down.members[1] = member(1, false, true);
        let s4 = compute(&g, &two_down, t(400));
        assert_eq!(get(&s4, Ready).last_transition_time, t(300));
        assert!(get(&s4, Ready).message.starts_with("1/3"));
    }

    fn health(status: &'static str, reason: &'static str, message: &str) -> FleetHealth {
        FleetHealth {
            upstreams: vec![crate::crd::UpstreamHealth {
                url: "https://goproxy.example.com".into(),
                healthy_members: i32::from(status == "True") * 3,
                members: 3,
                last_error: None,
            }],
            verdict: Verdict {
                type_: UpstreamsHealthy,
                status: Status::parse(status).unwrap(),
                reason,
                message: message.into(),
            },
            store: None,
            peers: None,
        }
    }

    /// Three Ready members on bound caches, and what the poll found.
    fn polled(health: FleetHealth) -> Observed {
        Observed {
            members: (0..3).map(|i| member(i, true, true)).collect(),
            caches: bound(3),
            error: None,
            health: Some(health),
            injection: None,
        }
    }

    /// `StoreHealthy` and `status.store` come with the poll; the store going unhealthy is
    /// degraded, not down: Ready and Degraded stay, the flip is stamped and announced.
    #[test]
    fn store_health_is_a_condition_of_its_own_and_not_part_of_ready() {
        use crate::fleet_health::{Answer, MemberReport};
        use crate::store_health::{StoreReport, summarize};
        let url = "s3://modules/fleet";
        let store = |healthy: bool| {
            let reports: Vec<_> = (0..3)
                .map(|i| {
                    let r = StoreReport {
                        url: url.into(),
                        healthy: healthy || i > 0,
                        last_error: (!healthy && i == 0).then(|| "connection refused".into()),
                    };
                    let answer = Answer {
                        store: Some(r),
                        ..Answer::default()
                    };
                    (format!("gomod-{i}"), MemberReport::Reachable(answer))
                })
                .collect();
            summarize(url, &reports)
        };
        let mut g = minimal();
        let mut obs = polled(FleetHealth {
            store: Some(store(true)),
            ..health("True", "AllUpstreamsHealthy", "Every upstream ...")
        });
        let s1 = compute(&g, &obs, t(100));
        let c = get(&s1, StoreHealthy);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "StoreHealthy")
        );
        let st = s1.store.clone().unwrap();
        assert_eq!(
            (st.url.as_str(), st.healthy_members, st.members),
            (url, 3, 3)
        );
        g.status = Some(s1.clone());
        assert_eq!(
            compute(&g, &obs, t(200)),
            s1,
            "nothing moves, nothing is patched"
        );

        obs.health.as_mut().unwrap().store = Some(store(false));
        let s2 = compute(&g, &obs, t(300));
        let c = get(&s2, StoreHealthy);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "StoreUnhealthy")
        );
        assert_eq!(c.last_transition_time, t(300));
        assert!(c.message.contains("Degraded, not down"), "{}", c.message);
        let st = s2.store.clone().unwrap();
        assert_eq!((st.healthy_members, st.members), (2, 3));
        assert_eq!(st.last_error.as_deref(), Some("connection refused"));
        assert_eq!(get(&s2, Ready).status, "True", "clients still get answers");
        assert_eq!(get(&s2, Degraded).status, "False");
        assert_eq!(get(&s2, Ready).last_transition_time, t(100));
        let n = notices(Some(&s1), &s2);
        assert_eq!(n.len(), 1, "{n:?}");
        assert_eq!(
            (n[0].warning, n[0].reason.as_str()),
            (true, "StoreUnhealthy")
        );

        // Without a store: no condition, and `store` is null (the merge patch removes it).
        obs.health.as_mut().unwrap().store = None;
        let s3 = compute(&g, &obs, t(400));
        assert!(StoreHealthy.find(&s3).is_none());
        assert_eq!(
            serde_json::to_value(&s3).unwrap()["store"],
            serde_json::Value::Null
        );
    }

    /// `PeersHealthy` comes with the poll for a fleet with peer fill; a member that cannot read
    /// its membership is degraded, not down: Ready stays, the flip is stamped and announced.
    #[test]
    fn peers_health_is_a_condition_of_its_own_and_not_part_of_ready() {
        use crate::fleet_health::{Answer, MemberReport};
        use crate::peer_health::{PeersReport, summarize};
        let peers = |error: Option<&str>| {
            let reports: Vec<_> = (0..3)
                .map(|i| {
                    let answer = Answer {
                        peers: Some(PeersReport {
                            members: 3,
                            last_error: error.filter(|_| i == 2).map(str::to_owned),
                        }),
                        ..Answer::default()
                    };
                    (format!("gomod-{i}"), MemberReport::Reachable(answer))
                })
                .collect();
            summarize("gomod", &reports)
        };
        let mut g = minimal();
        let mut obs = polled(FleetHealth {
            peers: Some(peers(None)),
            ..health("True", "AllUpstreamsHealthy", "Every upstream ...")
        });
        let s1 = compute(&g, &obs, t(100));
        let c = get(&s1, PeersHealthy);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "MembershipRead")
        );
        g.status = Some(s1.clone());
        assert!(notices(Some(&s1), &s1).is_empty());

        obs.health.as_mut().unwrap().peers = Some(peers(Some("403 Forbidden")));
        let s2 = compute(&g, &obs, t(300));
        let c = get(&s2, PeersHealthy);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "MembershipUnreadable")
        );
        assert_eq!(c.last_transition_time, t(300));
        assert!(c.message.contains("gomod-2"), "{}", c.message);
        assert_eq!(get(&s2, Ready).status, "True", "clients still get answers");
        assert_eq!(get(&s2, Degraded).status, "False");
        let n = notices(Some(&s1), &s2);
        assert_eq!(
            n.iter()
                .map(|n| (n.warning, n.reason.as_str()))
                .collect::<Vec<_>>(),
            [(true, "MembershipUnreadable")]
        );

        // Peer fill off: no condition.
        obs.health.as_mut().unwrap().peers = None;
        assert!(PeersHealthy.find(&compute(&g, &obs, t(400))).is_none());
    }

    #[test]
    fn upstream_health_is_a_condition_of_its_own_and_not_part_of_ready() {
        let mut g = minimal();
        let mut obs = polled(health(
            "False",
            "UpstreamDown",
            "https://goproxy.example.com is healthy on 0/3 members",
        ));
        let s1 = compute(&g, &obs, t(100));
        let u = get(&s1, UpstreamsHealthy);
        assert_eq!(
            (u.status.as_str(), u.reason.as_str()),
            ("False", "UpstreamDown")
        );
        assert_eq!(u.observed_generation, Some(1));
        assert_eq!(
            get(&s1, Ready).status,
            "True",
            "cached artifacts still serve"
        );
        assert_eq!(get(&s1, Degraded).status, "False");
        assert_eq!(s1.upstreams[0].healthy_members, 0);
        assert_eq!(s1.upstreams[0].members, 3);

        // The same verdict later keeps the whole status, so nothing is patched.
        g.status = Some(s1.clone());
        assert_eq!(compute(&g, &obs, t(200)), s1);

        // Recovery flips the condition (new time) and leaves the others alone.
        obs.health = Some(health("True", "AllUpstreamsHealthy", "Every upstream ..."));
        let s2 = compute(&g, &obs, t(300));
        assert_eq!(get(&s2, UpstreamsHealthy).status, "True");
        assert_eq!(get(&s2, UpstreamsHealthy).last_transition_time, t(300));
        assert_eq!(get(&s2, Ready).last_transition_time, t(100));
        assert_eq!(s2.upstreams[0].healthy_members, 3);

        // Unknown is a flip too.
        g.status = Some(s2);
        obs.health = Some(health("Unknown", "NoMemberReports", "No Ready member ..."));
        let s3 = compute(&g, &obs, t(400));
        assert_eq!(get(&s3, UpstreamsHealthy).status, "Unknown");
        assert_eq!(get(&s3, UpstreamsHealthy).last_transition_time, t(400));
    }

    #[test]
    fn events_for_ready_flips_and_upstream_outages_and_recoveries() {
        let reasons = |n: Vec<Notice>| {
            n.into_iter()
                .map(|n| (n.warning, n.reason))
                .collect::<Vec<_>>()
        };
        let g = minimal();
        let mut obs = polled(health("Unknown", "NoReadyMembers", "No Ready member ..."));
        let first = compute(&g, &obs, t(100));
        // Ready for the first time; Unknown upstream health is not news.
        assert_eq!(
            reasons(notices(None, &first)),
            [(false, "AllMembersReady".to_string())]
        );
        assert!(notices(Some(&first), &first).is_empty());
        obs.members[0] = member(0, false, true);
        obs.health = Some(health("False", "UpstreamDown", "... 0/3 members"));
        let down = compute(&g, &obs, t(200));
        assert_eq!(
            reasons(notices(Some(&first), &down)),
            [
                (true, "MembersNotReady".to_string()),
                (true, "UpstreamDown".to_string())
            ]
        );
        obs.health = Some(health("True", "AllUpstreamsHealthy", "Every upstream ..."));
        let recovered = compute(&g, &obs, t(300));
        assert_eq!(
            reasons(notices(Some(&down), &recovered)),
            [(false, "AllUpstreamsHealthy".to_string())]
        );
    }

    #[test]
    fn no_polling_means_no_condition_and_no_upstreams() {
        let s = compute(&minimal(), &Observed::default(), t(1));
        assert!(UpstreamsHealthy.find(&s).is_none());
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

    /// `Injecting` and `status.injection` come from the observed verdict; losing namespaces
    /// (or the webhook being off) is an Event, the recovery too.
    #[test]
    fn injection_is_reported_and_its_conflicts_are_events() {
        use crate::injection::NamespaceReport;
        use crate::injection::status::{Seen, status as injection};
        let g = minimal();
        let mut obs = Observed {
            members: (0..3).map(|i| member(i, true, true)).collect(),
            caches: bound(3),
            injection: Some(injection(Seen::Report {
                report: NamespaceReport {
                    selected: vec!["ci"],
                    lost: Vec::new(),
                },
                pods_mutated: 2,
            })),
            ..Observed::default()
        };
        let first = compute(&g, &obs, t(100));
        assert_eq!(first.injection.as_ref().unwrap().pods_mutated, 2);
        assert_eq!(Injecting.status_in(Some(&first)), Some(Status::True));
        // A first True is no news; losing a namespace is.
        let names = |n: Vec<Notice>| n.into_iter().map(|n| n.reason).collect::<Vec<_>>();
        assert!(!names(notices(None, &first)).contains(&"Injecting".to_string()));
        obs.injection = Some(injection(Seen::Report {
            report: NamespaceReport {
                selected: Vec::new(),
                lost: vec![("ci", "build/old".into())],
            },
            pods_mutated: 2,
        }));
        let lost = compute(&g, &obs, t(200));
        assert_eq!(Injecting.status_in(Some(&lost)), Some(Status::False));
        let events = notices(Some(&first), &lost);
        let event = events
            .iter()
            .find(|n| n.reason == "NamespacesLost")
            .unwrap();
        assert!(event.warning && event.message.contains("ci (to build/old)"));
        // Without spec.injection the status says nothing of it.
        obs.injection = None;
        let none = compute(&g, &obs, t(300));
        assert_eq!(
            (none.injection.clone(), Injecting.status_in(Some(&none))),
            (None, None)
        );
    }
}
