//! The `GoModuleProxy` custom resource (group `modfleet.dev`, version `v1alpha1`).
//!
//! The field names are the public API (issue 4): keep them. Validation that the API server
//! can do lives here as OpenAPI constraints and `x-kubernetes-validations` CEL rules, so a bad
//! object is rejected on `kubectl apply` with a message a person understands instead of
//! failing later inside the operator.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod access;
mod injection;
mod tiers;
pub use access::{AccessRuleSpec, AccessSpec, DEFAULT_TOKENS_KEY, TlsSpec, TokenSecretRef};
pub use injection::{InjectionFallback, InjectionSpec, InjectionStatus, LostNamespace};
pub use tiers::{FleetSpec, ObjectStoreSpec};

/// API group of the CRD.
pub const GROUP: &str = "modfleet.dev";
/// Longest CR name we accept: child names append up to `-cache-NNN` / `-peers` and Service
/// names must stay DNS-1035 labels (63 characters).
pub const MAX_NAME_LEN: usize = 50;

/// A fleet of modfleet Go module proxies with their caches, Services and policies.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "modfleet.dev",
    version = "v1alpha1",
    kind = "GoModuleProxy",
    namespaced,
    shortname = "gmp",
    status = "GoModuleProxyStatus",
    derive = "PartialEq",
    doc = "A fleet of modfleet Go module proxies (GOPROXY) with per-member or shared caches",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.members",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Members",
        type_ = "integer",
        json_path = ".status.members",
        description = "Fleet members that exist"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyMembers",
        description = "Fleet members that are Ready with the current template"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        description = "GOPROXY URL inside the cluster"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 50").message(
        "metadata.name must be at most 50 characters: child objects are named NAME-cache-<i>, NAME-peers, ..."
    ),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message(
        "metadata.name must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter): it names the fleet's Service"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GoModuleProxySpec {
    /// Number of fleet members (proxy pods). Scale subresource: `kubectl scale gmp/NAME --replicas=N`.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    #[x_kube(validation = Rule::new("self >= 0").message("replicas must be 0 or more"))]
    pub replicas: i32,

    /// Proxy container image. Default: the operator's `--proxy-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,

    /// Image pull policy of the proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Secrets used to pull the proxy image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Upstream GOPROXYs in priority order (the first is tried first). At least one.
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("size(self) >= 1").message(
        "at least one upstream is required, e.g. upstreams: [{url: https://goproxy.example.com}]"
    ))]
    pub upstreams: Vec<Upstream>,

    /// Checksum database the fleet proxies and verifies against. Default: the go command's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sumdb: Option<SumDb>,

    /// Module path globs (GONOSUMDB syntax) not checked against the checksum database.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 256)))]
    pub no_sum_patterns: Vec<String>,

    /// Module path globs (GOPRIVATE syntax) the fleet refuses with 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(max = 256)))]
    pub exclude_patterns: Vec<String>,

    /// Dependency prefetch: when a member fetches a go.mod, it fetches the go.mod files the
    /// modules it requires in the background (never for `excludePatterns`/`noSumPatterns`).
    /// Unset: the proxy's defaults (go.mod files on, zips off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<PrefetchSpec>,

    /// Modules served straight from their Git repositories (GOPRIVATE patterns). Their paths
    /// are never sent to an upstream nor looked up in the checksum database.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub private_modules: Vec<PrivateModule>,

    /// Module cache storage.
    #[serde(default)]
    pub cache: CacheSpec,

    /// The fleet as a whole: peer fill between its members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSpec>,

    /// NetworkPolicy for the fleet's pods.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,

    /// Tracing export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetrySpec>,

    /// Client-facing Service.
    #[serde(default)]
    pub service: ServiceSpec,

    /// Serve the client port over HTTPS with a `kubernetes.io/tls` Secret (e.g. a cert-manager
    /// Certificate's). Unset: plain HTTP. The admin port (probes, metrics) stays plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// Who may fetch which modules (tokens from Secrets, rules) and who may use the admin
    /// port's `/status` and `/admin/*`. Unset: everyone may fetch everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessSpec>,

    /// Set `GOPROXY` (this fleet) and `GONOSUMDB` (`privateModules` and `noSumPatterns`) in
    /// the containers of new Pods in the namespaces it selects, through the operator's
    /// mutating webhook. Unset: no Pod is changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<InjectionSpec>,

    /// Resources of the proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node selector of the proxy pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the proxy pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity of the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Topology spread constraints of the proxy pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// Priority class of the proxy pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,

    /// Extra annotations on the proxy pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// Extra labels on the proxy pods (the operator's own labels win on conflict).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
}

fn default_replicas() -> i32 {
    1
}

/// Container image pull policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// One upstream GOPROXY.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "!has(self.credentialsSecretRef) || !isURL(self.url) || url(self.url).getScheme() != 'http' || (has(self.insecure) && self.insecure)"
    ).message("upstreams: credentialsSecretRef on an http:// url needs insecure: true (the credentials would cross the network in clear text; use https://)"),
    validation = Rule::new("!self.url.matches('^[a-zA-Z][-a-zA-Z0-9+.]*://[^/?#]*@')").message(
        "upstreams: the url must not hold a user name or password (they would show in logs and status): put them in a Secret named by credentialsSecretRef"
    )
)]
pub struct Upstream {
    /// Base URL of the upstream GOPROXY (http or https).
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(
        "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''"
    ).message("upstream url must be an absolute http:// or https:// URL, e.g. https://goproxy.example.com"))]
    pub url: String,

    /// Relative share of traffic among upstreams of equal priority (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1").message("upstream weight must be at least 1"))]
    pub weight: Option<i32>,

    /// Per-request timeout, e.g. `30s`, `1m30s`, `500ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')").message(
        "upstream timeout must be a duration like 30s, 1m30s or 500ms"
    ))]
    pub timeout: Option<String>,

    /// A Secret in the fleet's namespace with the upstream's credentials: `username` and
    /// `password` (a `kubernetes.io/basic-auth` Secret; HTTP Basic), or `token` (an
    /// `Authorization: Bearer` token), or `netrc` (a netrc file; the entry for the upstream's
    /// host is used, as the go command picks it). Sent only to the upstream's own origin.
    /// Mounted read-only into the members; a change rolls them. Unset: anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,

    /// Allow `credentialsSecretRef` on an `http://` url: the credentials cross the network in
    /// clear text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

/// Modules matching one pattern, served from Git (the proxy's `privateModules` entry).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.repository) || !isURL(self.repository.url) || url(self.repository.url).getScheme() != 'http' || (has(self.insecure) && self.insecure)"
).message("privateModules: an http:// repository url needs insecure: true (use https:// or ssh://)"))]
pub struct PrivateModule {
    /// A GOPRIVATE glob, e.g. `git.corp.example.com/*`: the module paths, and paths under
    /// them, this entry serves. One pattern (no commas).
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(validation = Rule::new("!self.contains(',') && !self.contains(' ')").message(
        "privateModules pattern is one GOPRIVATE glob without commas or spaces, e.g. git.corp.example.com/*; list several patterns as several entries"
    ))]
    pub pattern: String,

    /// One repository holding the modules under `root`. Unset: found as the go command finds
    /// it (its rules for well-known hosts, else the `?go-get=1` meta tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<PrivateRepository>,

    /// Allow plain http for discovery and Git (the go command's GOINSECURE).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,

    /// A Secret in the fleet's namespace with the Git credentials: `username` and `password`
    /// (a `kubernetes.io/basic-auth` Secret; the password may be a token) or `ssh-privatekey`
    /// and `known_hosts` (a `kubernetes.io/ssh-auth` Secret plus the server's host keys).
    /// Mounted read-only into the members; a change rolls them. Unset: anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// A repository and the module path prefix at its root.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrivateRepository {
    /// The repository: `https://` or `ssh://` (`http://` with `insecure: true`).
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(
        "isURL(self) && url(self).getScheme() in ['https', 'ssh', 'http'] && url(self).getHostname() != ''"
    ).message("privateModules repository url must be an absolute https:// or ssh:// URL (http:// with insecure: true), e.g. https://git.corp.example.com/team/lib.git or ssh://git@git.corp.example.com/team/lib.git"))]
    pub url: String,

    /// The module path prefix at the repository's root, e.g. `git.corp.example.com/team/lib`.
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new("!self.contains('://') && !self.startsWith('/') && !self.endsWith('/')").message(
        "privateModules repository root is a module path prefix such as git.corp.example.com/team/lib (no scheme, no leading or trailing slash)"
    ))]
    pub root: String,
}

/// A Secret in the fleet's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')"
    ).message("credentialsSecretRef.name must be the name of a Secret (a DNS subdomain: lowercase letters, digits, '-' and '.')"))]
    pub name: String,
}

/// Checksum database settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = sumdb_key_rule())]
pub struct SumDb {
    /// Name of the checksum database (like GOSUMDB). Empty: the go command's default.
    #[serde(default)]
    #[schemars(length(max = 253))]
    pub name: String,
    /// URL of the checksum database or a proxy of it. Empty: derived from the name.
    #[serde(default)]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(
        "self == '' || (isURL(self) && url(self).getScheme() in ['http', 'https'])"
    ).message("sumdb url must be empty or an http:// or https:// URL"))]
    pub url: String,
    /// Verifier key of the database, as in GOSUMDB: `NAME+HASH+KEY`. Needed for any database
    /// but the go command's (whose key every member knows); members verify every download
    /// against it, so a database without a key would stop them from starting.
    #[serde(default)]
    #[schemars(length(max = 512))]
    pub key: String,
}

/// A checksum database other than the ones members know needs its key, and a key must be
/// for the database named (the proxy would refuse both at start; the API server refuses them
/// at apply, where the person who wrote them sees it).
fn sumdb_key_rule() -> kube::core::Rule {
    let known = modfleet_contract::defaults::KNOWN_SUMDB_KEYS
        .iter()
        .map(|(name, _)| format!("'{name}'"))
        .collect::<Vec<_>>()
        .join(", ");
    kube::core::Rule::new(format!(
        "self.key == '' ? (self.name == '' || self.name in [{known}]) : \
         (self.name != '' && self.key.startsWith(self.name + '+'))"
    ))
    .message(kube::core::Message::Message(format!(
        "sumdb.key is required for a checksum database other than {known}, and it must be that \
         database's verifier key NAME+HASH+KEY (as in GOSUMDB), e.g. key: <name>+1234abcd+<base64 key>"
    )))
}

/// Where members keep their module cache.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum CacheMode {
    /// One ReadWriteOnce PVC and one single-replica Deployment per member.
    #[default]
    PerMember,
    /// One ReadWriteMany PVC shared by all members of one Deployment. Needs a StorageClass
    /// that supports ReadWriteMany.
    Shared,
}

/// What happens to cache PVCs when members are removed or the CR is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RetainPolicy {
    /// Keep the PVCs (they are released from the CR and left for an admin).
    #[default]
    Retain,
    /// Delete the PVCs.
    Delete,
}

/// Module cache settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.mode != 'Shared' || (has(self.storageClassName) && self.storageClassName != '')"
).message(
    "cache.mode Shared needs cache.storageClassName naming a StorageClass that supports ReadWriteMany"
))]
pub struct CacheSpec {
    /// Size of each cache volume (a quantity such as 20Gi). The proxy evicts at about 90%.
    #[serde(default = "default_cache_size")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(
        "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))"
    ).message("cache.size must be a positive quantity such as 20Gi or 500Mi"))]
    pub size: String,

    /// StorageClass of the cache PVCs. Empty: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,

    /// `PerMember` (default) or `Shared`. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "cache.mode is immutable: create a new GoModuleProxy to switch between PerMember and Shared"
    ))]
    pub mode: CacheMode,

    /// `Retain` (default) or `Delete`.
    #[serde(default)]
    pub retain_policy: RetainPolicy,

    /// A store the members share under their disk caches (S3, GCS, Azure Blob): a disk miss
    /// reads it before any upstream; what was fetched and verified is written to it. Only
    /// verified immutable artifacts go there. An outage costs upstream requests, never
    /// client errors. Unset: no store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreSpec>,
}

fn default_cache_size() -> String {
    "20Gi".to_owned()
}

impl Default for CacheSpec {
    fn default() -> Self {
        CacheSpec {
            size: default_cache_size(),
            storage_class_name: None,
            mode: CacheMode::PerMember,
            retain_policy: RetainPolicy::Retain,
            object_store: None,
        }
    }
}

/// NetworkPolicy settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create a NetworkPolicy for the fleet.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who may reach the proxy port. Empty: every pod in every namespace.
    #[serde(default)]
    pub allow_from: Vec<NetworkPolicyPeer>,
    /// Who may reach the admin (metrics) port. Empty: nobody outside the fleet.
    #[serde(default)]
    pub metrics_from: Vec<NetworkPolicyPeer>,
    /// Where members may connect to (upstreams). Empty: 0.0.0.0/0 and ::/0.
    #[serde(default)]
    pub egress_to: Vec<NetworkPolicyPeer>,
    /// TCP ports members may connect to on `egressTo`.
    #[serde(default = "default_egress_ports")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(p, p >= 1 && p <= 65535)").message(
        "networkPolicy.egressPorts must be TCP ports between 1 and 65535"
    ))]
    pub egress_ports: Vec<i32>,
}

fn default_true() -> bool {
    true
}

fn default_egress_ports() -> Vec<i32> {
    vec![443]
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec {
            enabled: true,
            allow_from: Vec::new(),
            metrics_from: Vec::new(),
            egress_to: Vec::new(),
            egress_ports: default_egress_ports(),
        }
    }
}

/// Dependency prefetch settings (the proxy's `prefetch` and `prefetchZips`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PrefetchSpec {
    /// Prefetch the go.mod files of required modules.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Prefetch their .info files and zips too: more upstream traffic and cache space for
    /// builds that need them; most builds need far fewer zips than go.mod files.
    #[serde(default)]
    pub zips: bool,
}

/// Tracing settings passed to the proxy as OTEL_* environment variables.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TelemetrySpec {
    /// OTLP endpoint, e.g. `http://otel-collector.observability:4317`. Empty: no export.
    #[serde(default)]
    #[schemars(length(max = 2048))]
    pub otlp_endpoint: String,
    /// Fraction of traces sampled (parent-based), between 0 and 1.
    #[serde(default = "default_sampling_ratio")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 1.0").message(
        "telemetry.samplingRatio must be between 0 and 1"
    ))]
    pub sampling_ratio: f64,
}

fn default_sampling_ratio() -> f64 {
    0.1
}

/// Kind of the client Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Client Service settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Service port (targets the proxy's `http` port).
    #[serde(default = "default_service_port")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message(
        "service.port must be between 1 and 65535"
    ))]
    pub port: i32,
    /// Annotations on the client Service (e.g. for a cloud load balancer).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn default_service_port() -> i32 {
    80
}

impl Default for ServiceSpec {
    fn default() -> Self {
        ServiceSpec {
            type_: ServiceType::ClusterIP,
            port: default_service_port(),
            annotations: BTreeMap::new(),
        }
    }
}

/// Observed state of the fleet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GoModuleProxyStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Fleet members (pods wanted by the member Deployments that exist).
    #[serde(default)]
    pub members: i32,
    /// Members that are Ready with the current pod template.
    #[serde(default)]
    pub ready_members: i32,
    /// GOPROXY URL inside the cluster: `http://NAME.NAMESPACE.svc:PORT` (`https://` with
    /// `spec.tls`).
    #[serde(default)]
    pub endpoint: String,
    /// Label selector of the fleet's proxy pods, e.g.
    /// `app.kubernetes.io/component=proxy,app.kubernetes.io/instance=NAME,...`. The scale
    /// subresource reports it, so a HorizontalPodAutoscaler can target a GoModuleProxy (it
    /// reads the pods' metrics through this selector).
    #[serde(default)]
    pub selector: String,
    /// Each upstream of the spec as the members see it, from their `/status` on the admin
    /// port (refreshed every `--health-poll-interval`). Empty when the operator does not poll.
    /// (Always written, even empty: the status is a merge patch, which would keep a stale
    /// list that an omitted field does not replace.)
    #[serde(default)]
    pub upstreams: Vec<UpstreamHealth>,
    /// With `spec.injection`: where new Pods get this fleet. (Written as `null` otherwise, so
    /// the merge patch of the status removes a stale one.)
    #[serde(default)]
    pub injection: Option<InjectionStatus>,
    /// With `spec.cache.objectStore`: the store as the members see it, from their `/status`
    /// (written as `null` otherwise, as `injection`).
    #[serde(default)]
    pub store: Option<StoreHealth>,
    /// `Ready`, `Progressing`, `Degraded`, `UpstreamsHealthy`, (with `spec.cache.objectStore`)
    /// `StoreHealthy`, (with peer fill) `PeersHealthy` and (with `spec.injection`) `Injecting`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One upstream's health across the fleet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamHealth {
    /// The upstream's URL as the proxies report it (no trailing slash).
    pub url: String,
    /// Members on which this upstream is healthy (probes pass, circuit breaker not open).
    pub healthy_members: i32,
    /// Members that reported on this upstream. Members that could not be asked are not
    /// counted: the `UpstreamsHealthy` condition names them.
    pub members: i32,
    /// The last error an unhealthy member recorded for this upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The object store's health across the fleet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreHealth {
    /// The store's URL as the members report it (`s3://bucket/prefix`).
    pub url: String,
    /// Members on which the store is healthy (its circuit breaker is not open).
    pub healthy_members: i32,
    /// Members that reported on the store (as for `upstreams`, members that could not be
    /// asked are not counted).
    pub members: i32,
    /// The last error an unhealthy member recorded for the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl GoModuleProxy {
    /// Desired number of members, never negative.
    pub fn replicas(&self) -> i32 {
        self.spec.replicas.max(0)
    }

    /// Whether the members fill each other (`spec.fleet.peerFill`; unset: on for
    /// `PerMember`, off for `Shared`, whose one volume already is one cache).
    pub fn peer_fill(&self) -> bool {
        self.spec
            .fleet
            .as_ref()
            .and_then(|f| f.peer_fill)
            .unwrap_or(self.spec.cache.mode == CacheMode::PerMember)
    }
}

#[cfg(test)]
mod tests;
