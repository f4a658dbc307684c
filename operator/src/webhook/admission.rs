//! One admission: what the webhook answers the API server for a new Pod. [`decide`] is pure
//! (request, namespace labels, fleets → outcome and patch); [`Injection`] holds what it reads
//! (the fleets and namespaces, cached by watches) and what it counts (Pods mutated per fleet,
//! for `status.injection`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::PartialObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};

use crate::crd::GoModuleProxy;
use crate::injection::{self, Choice, Policy};

/// How long an admission may wait for a namespace missing from the cache (created a moment
/// ago); the API server gives the whole call a few seconds.
const NAMESPACE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Fleets whose mutation counts are kept; beyond it, new fleets are not counted.
const MAX_COUNTED_FLEETS: usize = 10_000;

/// What the webhook did with one request, for the metric, the span and the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not a Pod CREATE (the configuration asks for those only; anything else is let be).
    NotAPodCreate,
    /// The caches of fleets and namespaces are not filled yet.
    NotReady,
    /// The Pod's namespace could not be read.
    NamespaceUnknown,
    /// `kube-system` or the operator's namespace.
    Protected,
    /// The Pod or its namespace carries `modfleet.dev/inject: "false"`.
    OptedOut,
    /// No fleet selects the Pod.
    NoFleet,
    /// A fleet selects the Pod, but every container sets the variables itself.
    Unchanged,
    /// The Pod was patched.
    Mutated,
}

impl Outcome {
    /// The `result` label of `modfleet_operator_admissions_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::NotAPodCreate => "not_a_pod_create",
            Outcome::NotReady => "not_ready",
            Outcome::NamespaceUnknown => "namespace_unknown",
            Outcome::Protected => "protected",
            Outcome::OptedOut => "opted_out",
            Outcome::NoFleet => "no_fleet",
            Outcome::Unchanged => "unchanged",
            Outcome::Mutated => "mutated",
        }
    }
}

/// The decision for one request: what happened, the winning fleet (`NAMESPACE/NAME`) and
/// those that lost the Pod to it, and the patch (empty unless [`Outcome::Mutated`]).
#[derive(Debug)]
pub struct Decision {
    pub outcome: Outcome,
    pub fleet: Option<String>,
    pub losers: Vec<String>,
    pub patch: Patch,
}

impl Decision {
    fn just(outcome: Outcome) -> Self {
        Decision {
            outcome,
            fleet: None,
            losers: Vec::new(),
            patch: Patch(Vec::new()),
        }
    }
}

/// The request's Pod and namespace, when it is a Pod CREATE.
pub fn pod_create(request: &AdmissionRequest<Pod>) -> Option<(&Pod, &str)> {
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    if !is_pod || request.operation != Operation::Create || request.sub_resource.is_some() {
        return None;
    }
    Some((request.object.as_ref()?, request.namespace.as_deref()?))
}

/// The decision for the Pod `pod` created in `namespace` (labels `namespace_labels`).
pub fn decide(
    pod: &Pod,
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    fleets: &[GoModuleProxy],
    policy: &Policy,
) -> Decision {
    let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
    match injection::choose_fleet(namespace, namespace_labels, &pod_labels, fleets, policy) {
        Choice::ProtectedNamespace => Decision::just(Outcome::Protected),
        Choice::OptedOut => Decision::just(Outcome::OptedOut),
        Choice::NoFleet => Decision::just(Outcome::NoFleet),
        Choice::Fleet { fleet, losers } => {
            let settings = injection::settings(fleet);
            let patch = injection::patch(pod, &settings);
            let outcome = if patch.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::Mutated
            };
            Decision {
                outcome,
                fleet: Some(settings.fleet),
                losers: losers.iter().map(|l| injection::fleet_name(l)).collect(),
                patch,
            }
        }
    }
}

/// The answer to the API server: always allowed (the webhook never refuses a Pod), with the
/// patch when there is one.
pub fn respond(request: &AdmissionRequest<Pod>, decision: Decision) -> AdmissionResponse {
    if decision.patch.is_empty() {
        return AdmissionResponse::from(request);
    }
    AdmissionResponse::from(request)
        .with_patch(decision.patch)
        // A patch of strings and arrays always serialises; should it not, the Pod goes
        // through as it is rather than being refused.
        .unwrap_or_else(|_| AdmissionResponse::from(request))
}

/// The webhook's view of the cluster: the fleets (one cache per watched namespace, or one
/// for all) and the namespaces' labels, kept by watches; and the Pods it mutated.
pub struct Injection {
    fleets: Vec<Store<GoModuleProxy>>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Set once every cache has its first full list.
    ready: AtomicBool,
    client: Client,
    pub policy: Policy,
    mutated: Mutex<HashMap<String, u64>>,
}

impl Injection {
    pub fn new(
        client: Client,
        fleets: Vec<Store<GoModuleProxy>>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
        policy: Policy,
    ) -> Self {
        Injection {
            fleets,
            namespaces,
            ready: AtomicBool::new(false),
            client,
            policy,
            mutated: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until every cache is filled (the watches' first lists are in).
    pub async fn wait_until_ready(&self) {
        for store in &self.fleets {
            let _ = store.wait_until_ready().await;
        }
        let _ = self.namespaces.wait_until_ready().await;
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Every fleet the operator manages, as cached.
    pub fn fleets(&self) -> Vec<GoModuleProxy> {
        self.fleets
            .iter()
            .flat_map(|s| s.state())
            .map(|f| (*f).clone())
            .collect()
    }

    /// Every namespace's name and labels, as cached.
    pub fn namespaces(&self) -> Vec<(String, BTreeMap<String, String>)> {
        self.namespaces
            .state()
            .iter()
            .filter_map(|n| {
                let name = n.metadata.name.clone()?;
                Some((name, n.metadata.labels.clone().unwrap_or_default()))
            })
            .collect()
    }

    /// Pods mutated for `fleet` (`NAMESPACE/NAME`) since this process started.
    pub fn mutated(&self, fleet: &str) -> u64 {
        let counts = self.mutated.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(fleet).copied().unwrap_or(0)
    }

    /// The labels of `namespace`: from the cache, else (a namespace created a moment ago)
    /// from the API server, bounded in time.
    async fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        let cached = self
            .namespaces
            .get(&ObjectRef::new(namespace))
            .map(|n| n.metadata.labels.clone().unwrap_or_default());
        if cached.is_some() {
            return cached;
        }
        let api: Api<Namespace> = Api::all(self.client.clone());
        match tokio::time::timeout(NAMESPACE_LOOKUP_TIMEOUT, api.get_metadata(namespace)).await {
            Ok(Ok(ns)) => Some(ns.metadata.labels.unwrap_or_default()),
            Ok(Err(e)) => {
                tracing::warn!(namespace, error = %e, "cannot read the Pod's namespace; Pod admitted unchanged");
                None
            }
            Err(_) => {
                tracing::warn!(
                    namespace,
                    "reading the Pod's namespace timed out; Pod admitted unchanged"
                );
                None
            }
        }
    }

    /// The decision for `request`, counted when the Pod is mutated for real (not a dry run).
    pub async fn review(&self, request: &AdmissionRequest<Pod>) -> Decision {
        let Some((pod, namespace)) = pod_create(request) else {
            return Decision::just(Outcome::NotAPodCreate);
        };
        if !self.is_ready() {
            return Decision::just(Outcome::NotReady);
        }
        // Protected namespaces need no lookup.
        if self.policy.protected(namespace) {
            return Decision::just(Outcome::Protected);
        }
        let Some(labels) = self.namespace_labels(namespace).await else {
            return Decision::just(Outcome::NamespaceUnknown);
        };
        let decision = decide(pod, namespace, &labels, &self.fleets(), &self.policy);
        if let (Outcome::Mutated, Some(fleet), false) =
            (decision.outcome, &decision.fleet, request.dry_run)
        {
            let mut counts = self.mutated.lock().unwrap_or_else(|e| e.into_inner());
            if counts.len() < MAX_COUNTED_FLEETS || counts.contains_key(fleet) {
                *counts.entry(fleet.clone()).or_default() += 1;
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests;
