//! Pure builders of every child object of a `GoModuleProxy`: `fn(&GoModuleProxy, &Context)
//! -> object`, no I/O, so the whole desired state is unit-testable.

pub mod access;
pub mod configmap;
pub mod credentials;
pub mod deployment;
pub mod labels;
pub mod membership;
pub mod networkpolicy;
pub mod pdb;
pub mod pvc;
pub mod service;
pub mod serviceaccount;
pub mod tiers;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::{CacheMode, GoModuleProxy};
use labels::Component;

/// Proxy HTTP (GOPROXY) port.
pub const HTTP_PORT: i32 = 8080;
/// Proxy admin port: /healthz, /readyz, /metrics.
pub const ADMIN_PORT: i32 = 9090;
/// Where the cache volume is mounted.
pub const CACHE_DIR: &str = "/var/cache/modfleet";
/// Where the ConfigMap is mounted; the file is `config.yaml` in it.
pub const CONFIG_DIR: &str = "/etc/modfleet";
pub const CONFIG_KEY: &str = "config.yaml";
/// Pod template annotation carrying the hash of the rendered config: a config change
/// changes the template and so rolls the fleet.
pub const CONFIG_HASH_ANNOTATION: &str = "modfleet.dev/config-hash";
/// Deployment annotation with the hash of the desired pod template, so the controller can
/// tell which members already run the current template (one-at-a-time rollouts).
pub const TEMPLATE_HASH_ANNOTATION: &str = "modfleet.dev/template-hash";

/// What the builders need beyond the CR itself.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// Image used when `spec.image` is empty (`--proxy-image`).
    pub proxy_image: String,
    /// Size in bytes of the smallest cache volume the members really have, when known. The
    /// proxy's eviction limit must fit it even when `cache.size` grew but a claim could not
    /// be expanded.
    pub smallest_cache_bytes: Option<u64>,
    /// Namespace of the operator's pods (`--operator-namespace`): the fleet NetworkPolicy
    /// admits them to the admin port from there only (`None`: from any namespace).
    pub operator_namespace: Option<String>,
    /// What the members get of the Secrets `upstreams` and `privateModules` reference (read and checked by
    /// the reconcile: [`credentials::check`]).
    pub credentials: credentials::Credentials,
    /// What the members get of `spec.tls` and `spec.access` (read and checked by the
    /// reconcile: [`access::check`]).
    pub access: access::Access,
    /// What the members get of `cache.objectStore`'s Secret and the peer token (read and
    /// checked by the reconcile: [`tiers::check`]).
    pub tiers: tiers::Tiers,
}

/// Child names (the table "What it creates" in docs/operator.md).
pub mod names {
    pub fn service(gmp: &str) -> String {
        gmp.to_owned()
    }
    pub fn peers(gmp: &str) -> String {
        format!("{gmp}-peers")
    }
    /// The members' ServiceAccount.
    pub fn service_account(gmp: &str) -> String {
        gmp.to_owned()
    }
    /// The Secret with the fleet's peer token (with peer fill).
    pub fn peer_token(gmp: &str) -> String {
        format!("{gmp}-peer-token")
    }
    pub fn config(gmp: &str) -> String {
        format!("{gmp}-config")
    }
    pub fn member(gmp: &str, i: usize) -> String {
        format!("{gmp}-{i}")
    }
    /// The Deployment of `member` (PerMember), or the one shared Deployment (`None`).
    pub fn deployment(gmp: &str, member: Option<usize>) -> String {
        member.map_or_else(|| gmp.to_owned(), |i| self::member(gmp, i))
    }
    pub fn member_cache(gmp: &str, i: usize) -> String {
        format!("{gmp}-cache-{i}")
    }
    pub fn shared_cache(gmp: &str) -> String {
        format!("{gmp}-cache")
    }
    /// The Secret with the operator's token for the members' `/status` (with `spec.access`).
    pub fn operator_token(gmp: &str) -> String {
        format!("{gmp}-operator-token")
    }
}

/// Metadata of a child: name, namespace, labels and a controller owner reference.
pub(crate) fn meta(
    gmp: &GoModuleProxy,
    name: String,
    component: Component,
    member: Option<usize>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: gmp.namespace(),
        labels: Some(labels::labels(&gmp.name_any(), component, member)),
        owner_references: gmp.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// Which members the fleet has: `Some(i)` for each member in PerMember mode, a single
/// `None` (the one shared Deployment and claim) in Shared mode.
fn members(gmp: &GoModuleProxy) -> Vec<Option<usize>> {
    match gmp.spec.cache.mode {
        CacheMode::PerMember => (0..usize::try_from(gmp.replicas()).unwrap_or(0))
            .map(Some)
            .collect(),
        CacheMode::Shared => vec![None],
    }
}

/// The names of the member Deployments the fleet has, in member order.
pub fn member_deployments(gmp: &GoModuleProxy) -> Vec<String> {
    members(gmp)
        .into_iter()
        .map(|m| names::deployment(&gmp.name_any(), m))
        .collect()
}

/// The cache claims, in member order. They are applied before anything else: the proxy
/// config must fit the volumes the members really have ([`Context::smallest_cache_bytes`]),
/// which only the applied claims tell.
pub fn cache_claims(gmp: &GoModuleProxy, ctx: &Context) -> Vec<PersistentVolumeClaim> {
    members(gmp)
        .into_iter()
        .map(|m| pvc::build(gmp, ctx, m))
        .collect()
}

/// Everything else the fleet consists of.
#[derive(Clone, Debug)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub service_account: ServiceAccount,
    /// The client Service and the headless peers Service.
    pub services: Vec<Service>,
    /// Only with more than one member.
    pub pdb: Option<PodDisruptionBudget>,
    /// Unless `networkPolicy.enabled: false`.
    pub network_policy: Option<NetworkPolicy>,
    /// With peer fill: the members' right to read the membership (resources/membership.rs).
    pub membership: Option<(Role, RoleBinding)>,
    /// Member Deployments in member order (one in Shared mode).
    pub deployments: Vec<Deployment>,
}

/// Builds everything but the cache claims, for the volumes `ctx` says the members have.
pub fn desired(gmp: &GoModuleProxy, ctx: &Context) -> Desired {
    let config_map = configmap::build(gmp, ctx);
    let config_hash = configmap::hash(&config_map);
    let deployments = members(gmp)
        .into_iter()
        .map(|m| deployment::build(gmp, ctx, m, &config_hash))
        .collect();
    Desired {
        config_map,
        service_account: serviceaccount::build(gmp, ctx),
        services: vec![service::build(gmp, ctx), service::build_peers(gmp, ctx)],
        pdb: pdb::build(gmp, ctx),
        network_policy: networkpolicy::build(gmp, ctx),
        membership: gmp.peer_fill().then(|| {
            (
                membership::role(gmp, ctx),
                membership::role_binding(gmp, ctx),
            )
        }),
        deployments,
    }
}

/// Parses a Kubernetes quantity (e.g. `20Gi`, `500M`, `1.5Gi`, `1073741824`) into bytes.
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    let bytes = n * mult;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// Sorted copy of a map with `ours` winning over `extra`.
pub(crate) fn merge_labels(
    extra: &BTreeMap<String, String>,
    ours: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut m = extra.clone();
    m.extend(ours);
    m
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use crate::crd::GoModuleProxySpec;
    use serde_json::json;

    pub fn ctx() -> Context {
        Context {
            proxy_image: "modfleet/modfleet-proxy:test".to_owned(),
            smallest_cache_bytes: None,
            operator_namespace: None,
            credentials: credentials::Credentials::default(),
            access: access::Access::default(),
            tiers: tiers::Tiers::default(),
        }
    }

    /// A CR as the API server would return it (uid set, defaults applied).
    pub fn gmp(spec: serde_json::Value) -> GoModuleProxy {
        let spec: GoModuleProxySpec = serde_json::from_value(spec).unwrap();
        let mut g = GoModuleProxy::new("gomod", spec);
        g.metadata.namespace = Some("team-a".to_owned());
        g.metadata.uid = Some("1234-uid".to_owned());
        g.metadata.generation = Some(1);
        g
    }

    pub fn minimal() -> GoModuleProxy {
        gmp(json!({"replicas": 3, "upstreams": [{"url": "https://goproxy.example.com"}]}))
    }

    /// Every child must carry our labels and a controller owner reference to the CR.
    pub fn assert_owned(meta: &ObjectMeta, component: &str) {
        let l = meta.labels.as_ref().expect("labels");
        assert!(labels::is_ours(Some(l), "gomod"), "{:?}", meta.name);
        assert_eq!(l[labels::COMPONENT], component, "{:?}", meta.name);
        assert_eq!(meta.namespace.as_deref(), Some("team-a"));
        let o = &meta.owner_references.as_ref().expect("owner refs")[0];
        assert_eq!(o.uid, "1234-uid");
        assert_eq!(o.kind, "GoModuleProxy");
        assert_eq!(o.api_version, "modfleet.dev/v1alpha1");
        assert_eq!(o.controller, Some(true));
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("20Gi"), Some(20 * 1024 * 1024 * 1024));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("1.5Ki"), Some(1536));
        assert_eq!(quantity_bytes("1024"), Some(1024));
        assert_eq!(quantity_bytes("20 Gi"), None);
        assert_eq!(quantity_bytes("lots"), None);
    }

    #[test]
    fn per_member_desired_set() {
        let d = desired(&minimal(), &ctx());
        let names: Vec<_> = d
            .deployments
            .iter()
            .map(|d| d.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["gomod-0", "gomod-1", "gomod-2"]);
        let pvcs: Vec<_> = cache_claims(&minimal(), &ctx())
            .iter()
            .map(|d| d.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(pvcs, ["gomod-cache-0", "gomod-cache-1", "gomod-cache-2"]);
        assert_eq!(d.services.len(), 2);
        assert!(d.pdb.is_some());
        assert!(d.network_policy.is_some());
    }

    #[test]
    fn shared_desired_set_and_single_member() {
        let g = gmp(json!({
            "replicas": 1,
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "cache": {"size": "1Gi", "mode": "Shared", "storageClassName": "modfleet-rwx"},
            "networkPolicy": {"enabled": false}
        }));
        let d = desired(&g, &ctx());
        assert_eq!(d.deployments.len(), 1);
        assert_eq!(d.deployments[0].metadata.name.as_deref(), Some("gomod"));
        let pvcs = cache_claims(&g, &ctx());
        assert_eq!(pvcs[0].metadata.name.as_deref(), Some("gomod-cache"));
        assert!(d.pdb.is_none(), "no PDB for a single member");
        assert!(d.network_policy.is_none());
    }

    #[test]
    fn zero_replicas_per_member_has_no_members() {
        let mut g = minimal();
        g.spec.replicas = 0;
        let d = desired(&g, &ctx());
        assert!(d.deployments.is_empty());
        assert!(cache_claims(&g, &ctx()).is_empty());
    }
}
