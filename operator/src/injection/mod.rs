//! Injection of the go command's settings into new Pods (`spec.injection`): which fleet a Pod
//! gets ([`choose_fleet`]), the RFC 6902 JSON Patch that sets it ([`settings`], [`patch`]),
//! and where each fleet injects for its status ([`namespace_report`]). Pure: the mutating
//! webhook reads the Pod, its namespace's labels and the fleets, and sends the patch.
//!
//! What a container gets, unless it sets the variable itself:
//! - `GOPROXY`: the fleet's in-cluster URL (the status `endpoint`), then `,FALLBACK` when
//!   `injection.fallback` is set. A comma, never `|`: the go command moves on only when the
//!   fleet answers 404 or 410, so an outage of the fleet fails the build instead of quietly
//!   going around it.
//! - `GONOSUMDB`: the `privateModules` patterns and `noSumPatterns`, which the fleet itself
//!   never looks up in the checksum database (the go command would ask it and fail). Not
//!   `GOPRIVATE`: it implies `GONOPROXY`, and the go command would then fetch those modules
//!   from Git itself instead of from the fleet. A container that sets `GOPRIVATE` keeps its
//!   own: `GONOSUMDB` defaults to it, and setting ours would drop the container's patterns.
//!
//! A container with `envFrom` is left alone: its ConfigMap or Secret may set these variables
//! and `env` would silently override them, and the webhook cannot read what they hold.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use serde_json::{Value, json};

use crate::crd::{GoModuleProxy, InjectionSpec};
use crate::resources::service;

/// Pod (or namespace) label that keeps every fleet out: `modfleet.dev/inject: "false"`.
pub const OPT_OUT_LABEL: &str = "modfleet.dev/inject";
/// Pod annotation naming the fleet and what was set in which container, as JSON:
/// `{"fleet":"NAMESPACE/NAME","containers":{"build":["GOPROXY","GONOSUMDB"]}}`.
pub const ANNOTATION: &str = "modfleet.dev/injected";
/// Namespaces no fleet ever changes, besides the operator's own: the cluster's own Pods.
pub const PROTECTED_NAMESPACES: &[&str] = &["kube-system"];

/// Why a Pod is left alone, or which fleet it gets.
#[derive(Debug, PartialEq)]
pub enum Choice<'a> {
    /// `kube-system` or the operator's namespace.
    ProtectedNamespace,
    /// The Pod or its namespace carries `modfleet.dev/inject: "false"`.
    OptedOut,
    /// No fleet selects the Pod.
    NoFleet,
    /// The oldest fleet selecting the Pod, and the others that select it too (they lose it;
    /// for their status and Events), oldest first.
    Fleet {
        fleet: &'a GoModuleProxy,
        losers: Vec<&'a GoModuleProxy>,
    },
}

/// A selector of `spec.injection` the API server accepted but that is not a label selector.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "spec.injection.{field} of GoModuleProxy {fleet} is not a valid label selector ({reason}): \
     operators are In and NotIn (with values), Exists and DoesNotExist; until it is fixed the \
     fleet selects no Pod"
)]
pub struct InvalidSelector {
    pub fleet: String,
    pub field: &'static str,
    pub reason: String,
}

/// The fleet's selectors, parsed. `None`: the fleet does not inject (no `spec.injection`).
pub fn selectors(
    gmp: &GoModuleProxy,
) -> Result<Option<(Selector, Option<Selector>)>, InvalidSelector> {
    let Some(InjectionSpec {
        namespace_selector,
        pod_selector,
        ..
    }) = &gmp.spec.injection
    else {
        return Ok(None);
    };
    let parse = |field: &'static str, s: &LabelSelector| {
        Selector::try_from(s.clone()).map_err(|e| InvalidSelector {
            fleet: fleet_name(gmp),
            field,
            reason: e.0,
        })
    };
    let namespaces = parse("namespaceSelector", namespace_selector)?;
    let pods = pod_selector
        .as_ref()
        .map(|s| parse("podSelector", s))
        .transpose()?;
    Ok(Some((namespaces, pods)))
}

/// The fleet a new Pod gets. `namespace` is the Pod's (the admission request's: a Pod made by
/// a controller has none in its metadata yet). Fleets being deleted or with an invalid
/// selector select nothing. Among those that select the Pod the oldest wins (then the lower
/// namespace and name), so every replica of the webhook picks the same fleet.
pub fn choose_fleet<'a>(
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
    fleets: &'a [GoModuleProxy],
    policy: &Policy,
) -> Choice<'a> {
    if policy.protected(namespace) {
        return Choice::ProtectedNamespace;
    }
    if opted_out(pod_labels) || opted_out(namespace_labels) {
        return Choice::OptedOut;
    }
    let mut ranked = selecting(
        namespace,
        namespace_labels,
        Some(pod_labels),
        fleets,
        policy,
    )
    .into_iter();
    match ranked.next() {
        None => Choice::NoFleet,
        Some(fleet) => Choice::Fleet {
            fleet,
            losers: ranked.collect(),
        },
    }
}

/// The fleets whose selectors match, oldest first; `pod_labels: None` ignores `podSelector`.
fn selecting<'a>(
    namespace: &str,
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: Option<&BTreeMap<String, String>>,
    fleets: &'a [GoModuleProxy],
    policy: &Policy,
) -> Vec<&'a GoModuleProxy> {
    let mut selecting: Vec<&GoModuleProxy> = fleets
        .iter()
        .filter(|gmp| gmp.metadata.deletion_timestamp.is_none())
        .filter(|gmp| policy.may_inject(gmp, namespace))
        .filter(|gmp| match selectors(gmp) {
            Ok(Some((namespaces, pods))) => {
                namespaces.matches(namespace_labels)
                    && match (pods, pod_labels) {
                        (Some(pods), Some(labels)) => pods.matches(labels),
                        _ => true,
                    }
            }
            Ok(None) | Err(_) => false,
        })
        .collect();
    selecting.sort_by(|a, b| seniority(a, b));
    selecting
}

/// Where a fleet injects, for its status: of `namespaces` (names and labels), those whose
/// Pods get it, and those it selects but an older fleet selects too.
#[derive(Debug, Default, PartialEq)]
pub struct NamespaceReport<'n> {
    /// Namespaces whose Pods (the ones its `podSelector` matches) get this fleet.
    pub selected: Vec<&'n str>,
    /// Namespaces lost to an older fleet, with that fleet's `NAMESPACE/NAME`. Pods both
    /// fleets' `podSelector`s match go to the older one.
    pub lost: Vec<(&'n str, String)>,
}

/// The [`NamespaceReport`] of `fleet` among `fleets`. Protected and opted-out namespaces are
/// nobody's.
pub fn namespace_report<'n>(
    fleet: &GoModuleProxy,
    namespaces: &[(&'n str, &BTreeMap<String, String>)],
    fleets: &[GoModuleProxy],
    policy: &Policy,
) -> NamespaceReport<'n> {
    let mut report = NamespaceReport::default();
    for &(namespace, labels) in namespaces {
        if policy.protected(namespace) || opted_out(labels) {
            continue;
        }
        let ranked = selecting(namespace, labels, None, fleets, policy);
        match (ranked.iter().position(|g| same(g, fleet)), ranked.first()) {
            (Some(0), _) => report.selected.push(namespace),
            (Some(_), Some(winner)) => report.lost.push((namespace, fleet_name(winner))),
            _ => {}
        }
    }
    report
}

/// Where fleets may inject, fixed for the operator's run (its flags).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Policy {
    /// The operator's own namespace: never injected into.
    pub operator_namespace: Option<String>,
    /// Namespaces whose fleets may inject into any namespace their selector picks. A fleet
    /// elsewhere injects only into its own namespace: whoever may create a GoModuleProxy must
    /// not decide where other teams' builds get their code (and which checksums they skip).
    pub fleet_namespaces: Vec<String>,
}

impl Policy {
    /// `kube-system` or the operator's namespace.
    pub fn protected(&self, namespace: &str) -> bool {
        self.operator_namespace.as_deref() == Some(namespace)
            || PROTECTED_NAMESPACES.contains(&namespace)
    }

    /// Whether `fleet` may inject into Pods of `namespace`.
    pub fn may_inject(&self, fleet: &GoModuleProxy, namespace: &str) -> bool {
        let home = fleet.metadata.namespace.as_deref().unwrap_or_default();
        home == namespace || self.fleet_namespaces.iter().any(|n| n == home)
    }
}

fn opted_out(labels: &BTreeMap<String, String>) -> bool {
    labels
        .get(OPT_OUT_LABEL)
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// The same object (by namespace and name: `fleets` may be a newer copy of `fleet`).
fn same(a: &GoModuleProxy, b: &GoModuleProxy) -> bool {
    a.namespace() == b.namespace() && a.name_any() == b.name_any()
}

/// Older first; a fleet without a creation time (never from the API server) last; then
/// namespace and name, so the order is total.
fn seniority(a: &GoModuleProxy, b: &GoModuleProxy) -> Ordering {
    let key = |g: &GoModuleProxy| {
        let created = g.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (created.is_none(), created, g.namespace(), g.name_any())
    };
    key(a).cmp(&key(b))
}

/// `NAMESPACE/NAME`.
pub fn fleet_name(gmp: &GoModuleProxy) -> String {
    format!("{}/{}", gmp.namespace().unwrap_or_default(), gmp.name_any())
}

/// One environment variable a fleet sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    pub value: String,
    /// Variables that, set by the container, keep this one out too (besides `name`).
    pub unless: &'static [&'static str],
}

/// What a fleet sets in a Pod; computed once per fleet, applied to each Pod by [`patch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `NAMESPACE/NAME` of the fleet, for the annotation.
    pub fleet: String,
    pub variables: Vec<Variable>,
    /// `injection.netrcSecretName`: mounted at [`NETRC_DIR`] into each container given `NETRC`.
    pub netrc_secret: Option<String>,
}

/// Where the `netrcSecretName` Secret is mounted; `NETRC` names its `.netrc` in there.
pub const NETRC_DIR: &str = "/var/run/modfleet/netrc";
/// The Pod volume of the `netrcSecretName` Secret.
pub const NETRC_VOLUME: &str = "modfleet-netrc";

/// The variables of `gmp` (see the module's documentation).
pub fn settings(gmp: &GoModuleProxy) -> Settings {
    let mut goproxy = service::endpoint(gmp);
    if let Some(fallback) = gmp
        .spec
        .injection
        .as_ref()
        .and_then(|i| i.fallback.as_ref())
    {
        goproxy.push(',');
        goproxy.push_str(&fallback.url);
    }
    let mut variables = vec![Variable {
        name: "GOPROXY",
        value: goproxy,
        unless: &[],
    }];
    let mut no_sum: Vec<&str> = Vec::new();
    let private = gmp.spec.private_modules.iter().map(|p| p.pattern.as_str());
    for pattern in private.chain(gmp.spec.no_sum_patterns.iter().map(String::as_str)) {
        let pattern = pattern.trim();
        if !pattern.is_empty() && !no_sum.contains(&pattern) {
            no_sum.push(pattern);
        }
    }
    if !no_sum.is_empty() {
        variables.push(Variable {
            name: "GONOSUMDB",
            value: no_sum.join(","),
            unless: &["GOPRIVATE"],
        });
    }
    let netrc_secret = gmp
        .spec
        .injection
        .as_ref()
        .and_then(|i| i.netrc_secret_name.clone())
        .filter(|n| !n.is_empty());
    if netrc_secret.is_some() {
        variables.push(Variable {
            name: "NETRC",
            value: format!("{NETRC_DIR}/.netrc"),
            unless: &[],
        });
    }
    Settings {
        fleet: fleet_name(gmp),
        variables,
        netrc_secret,
    }
}

/// The JSON Patch that sets `settings` in every container and init container of `pod` that
/// sets none of them itself (per variable), plus the [`ANNOTATION`]. Empty when no container
/// gets anything: the Pod is then left exactly as it is (so a second call on a patched Pod,
/// as with `reinvocationPolicy: IfNeeded`, changes nothing).
pub fn patch(pod: &Pod, settings: &Settings) -> Patch {
    let mut ops = Vec::new();
    let mut set: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    if let Some(spec) = &pod.spec {
        // A Pod with a volume of our name (its own, or ours from an earlier call) gets no
        // `NETRC` from us: we cannot know what that volume holds.
        let netrc_taken = spec
            .volumes
            .iter()
            .flatten()
            .any(|v| v.name == NETRC_VOLUME);
        let lists = [
            (
                "initContainers",
                spec.init_containers.as_deref().unwrap_or(&[]),
            ),
            ("containers", &spec.containers[..]),
        ];
        for (list, containers) in lists {
            for (index, container) in containers.iter().enumerate() {
                let mut vars = missing(container, settings);
                if netrc_taken {
                    vars.retain(|v| v.name != "NETRC");
                }
                if vars.is_empty() {
                    continue;
                }
                let entries = vars
                    .iter()
                    .map(|v| json!({"name": v.name, "value": kubernetes_literal(&v.value)}));
                let index = index.to_string();
                let env = PointerBuf::from_tokens(["spec", list, &index, "env"]);
                if container.env.is_none() {
                    ops.push(add(env, Value::Array(entries.collect())));
                } else {
                    for entry in entries {
                        let mut end = env.clone();
                        end.push_back("-");
                        ops.push(add(end, entry));
                    }
                }
                if vars.iter().any(|v| v.name == "NETRC") {
                    ops.push(netrc_mount(list, &index, container));
                }
                set.insert(&container.name, vars.iter().map(|v| v.name).collect());
            }
        }
        let netrc_given = set.values().flatten().any(|v| *v == "NETRC");
        if let (true, Some(secret)) = (netrc_given, &settings.netrc_secret) {
            ops.push(netrc_volume(spec, secret));
        }
    }
    if ops.is_empty() {
        return Patch(ops);
    }
    // A second call (`reinvocationPolicy: IfNeeded`, after another webhook added a
    // container) keeps what the first one recorded for the same fleet.
    let earlier: BTreeMap<String, Vec<String>> = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION))
        .and_then(|r| serde_json::from_str::<Value>(r).ok())
        .filter(|r| r["fleet"] == settings.fleet.as_str())
        .and_then(|r| serde_json::from_value(r["containers"].clone()).ok())
        .unwrap_or_default();
    let mut containers: BTreeMap<&str, Vec<&str>> = earlier
        .iter()
        .map(|(c, vars)| (c.as_str(), vars.iter().map(String::as_str).collect()))
        .collect();
    containers.extend(set);
    let record = json!({"fleet": settings.fleet, "containers": containers}).to_string();
    ops.push(if pod.metadata.annotations.is_none() {
        add(
            PointerBuf::from_tokens(["metadata", "annotations"]),
            json!({ ANNOTATION: record }),
        )
    } else {
        add(
            PointerBuf::from_tokens(["metadata", "annotations", ANNOTATION]),
            Value::String(record),
        )
    });
    Patch(ops)
}

/// The variables of `settings` the container does not set (none with `envFrom`). `NETRC`
/// only where the container has no mount of our volume or at our directory already.
fn missing<'s>(container: &Container, settings: &'s Settings) -> Vec<&'s Variable> {
    if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return Vec::new();
    }
    let own = |name: &str| container.env.iter().flatten().any(|e| e.name == name);
    let mounted = container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == NETRC_VOLUME || m.mount_path == NETRC_DIR);
    settings
        .variables
        .iter()
        .filter(|v| !own(v.name) && !v.unless.iter().any(|u| own(u)))
        .filter(|v| !(v.name == "NETRC" && mounted))
        .collect()
}

/// Mounts the netrc volume read-only into container `index` of `list`.
fn netrc_mount(list: &str, index: &str, container: &Container) -> PatchOperation {
    let mount = json!({"name": NETRC_VOLUME, "mountPath": NETRC_DIR, "readOnly": true});
    let mounts = PointerBuf::from_tokens(["spec", list, index, "volumeMounts"]);
    if container.volume_mounts.is_none() {
        add(mounts, Value::Array(vec![mount]))
    } else {
        let mut end = mounts;
        end.push_back("-");
        add(end, mount)
    }
}

/// The Pod volume of the netrc Secret: optional, so a namespace without the Secret still
/// runs its Pods (their go commands then get the fleet's 401, which says what is missing).
fn netrc_volume(spec: &k8s_openapi::api::core::v1::PodSpec, secret: &str) -> PatchOperation {
    let volume = json!({
        "name": NETRC_VOLUME,
        "secret": {
            "secretName": secret,
            "optional": true,
            "items": [{"key": ".netrc", "path": ".netrc"}],
        },
    });
    let volumes = PointerBuf::from_tokens(["spec", "volumes"]);
    if spec.volumes.is_none() {
        add(volumes, Value::Array(vec![volume]))
    } else {
        let mut end = volumes;
        end.push_back("-");
        add(end, volume)
    }
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

/// `value` as Kubernetes reads an env value literally: it expands `$(VAR)` and turns `$$`
/// into `$` (its `third_party/forked/golang/expansion`; a lone `$` stays), so doubling
/// every `$` gives back exactly `value`.
fn kubernetes_literal(value: &str) -> String {
    value.replace('$', "$$")
}

pub mod status;

#[cfg(test)]
mod tests;
