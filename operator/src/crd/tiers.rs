//! The cache tiers above each member's disk: `spec.cache.objectStore` (a store the members
//! share: S3, GCS, Azure Blob) and `spec.fleet.peerFill` (each artifact has one owner among
//! the members, which the others ask first). The proxy's own keys (`objectStore`, `peerFill`:
//! `modfleet_contract::config`) with a Secret instead of files; the operator mounts it and
//! renders the files' paths (resources/tiers.rs).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::SecretRef;

/// The object store under the members' disk caches.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "!has(self.endpoint) || !self.endpoint.startsWith('http://') || (has(self.allowHttp) && self.allowHttp)"
    ).message("cache.objectStore: an http:// endpoint needs allowHttp: true (the store's keys and the modules would cross the network in clear text; use https://)"),
    validation = Rule::new("!has(self.accountName) || self.url.startsWith('az://')").message(
        "cache.objectStore.accountName is for Azure Blob (az:// urls) only"
    ),
    validation = Rule::new(
        "!self.url.startsWith('az://') || !has(self.credentialsSecretRef) || has(self.accountName)"
    ).message("cache.objectStore: an az:// url with credentialsSecretRef needs accountName (the storage account the Secret's accessKey belongs to)")
)]
pub struct ObjectStoreSpec {
    /// `s3://BUCKET/PREFIX` (AWS S3, MinIO, Ceph RGW), `gs://BUCKET/PREFIX` (Google Cloud
    /// Storage) or `az://CONTAINER/PREFIX` (Azure Blob); PREFIX is optional. Several fleets
    /// can share a bucket under different prefixes.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(
        "self.matches('^(s3|gs|az)://[a-z0-9][-a-z0-9._]*[a-z0-9](/[^?#]*)?$')"
    ).message("cache.objectStore.url must be s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX (PREFIX optional; bucket names are lowercase letters, digits, '-', '.' and '_'), e.g. s3://go-modules/fleet-a"))]
    pub url: String,

    /// An S3-compatible endpoint, e.g. `http://minio.minio.svc:9000` (MinIO, Ceph RGW).
    /// Unset: the provider's own (AWS, Google, Azure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new(
        "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHostname() != ''"
    ).message("cache.objectStore.endpoint must be an absolute http:// or https:// URL, e.g. https://minio.example.com:9000"))]
    pub endpoint: Option<String>,

    /// The S3 region. Unset: `AWS_REGION` of the members, else us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9-]+$')").message(
        "cache.objectStore.region must be a region name such as eu-west-1"
    ))]
    pub region: Option<String>,

    /// Allow a plain `http://` endpoint (an in-cluster MinIO without TLS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http: bool,

    /// Longest wait to connect, for an answer's headers and for each further part of a
    /// body, e.g. `5s` (the default). Short on purpose: a slow store costs an upstream
    /// request, never more time than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')").message(
        "cache.objectStore.timeout must be a duration like 5s, 1m30s or 500ms"
    ))]
    pub timeout: Option<String>,

    /// The Azure storage account (az:// only), with the Secret's `accessKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 24))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]+$')").message(
        "cache.objectStore.accountName must be an Azure storage account name (3 to 24 lowercase letters and digits)"
    ))]
    pub account_name: Option<String>,

    /// A Secret in the fleet's namespace with the store's keys, mounted read-only into the
    /// members (a change rolls them). S3: `accessKeyId` and `secretAccessKey` (and
    /// `sessionToken` for temporary keys); GCS: `serviceAccountKey` (a service account's JSON
    /// key); Azure: `accessKey` (with `accountName`). Unset: the members' ambient credentials
    /// (IRSA / EKS Pod Identity, GKE Workload Identity, Azure Workload Identity: annotate the
    /// fleet's ServiceAccount `NAME`, or the pods through `podAnnotations`/`podLabels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// Settings of the fleet as a whole.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FleetSpec {
    /// Fleet-wide single flight: each immutable artifact has one owner among the members
    /// (rendezvous hashing over the `NAME-peers` Service's endpoints); a member that misses
    /// asks the owner on the peer port (7070, members only, with a token the operator keeps
    /// in the Secret `NAME-peer-token`) before any upstream, and fetches directly when the
    /// owner is down or slow. Unset: on for `cache.mode: PerMember`, off for `Shared` (one
    /// shared volume already is one cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_fill: Option<bool>,
}
