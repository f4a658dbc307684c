//! The proxy's YAML config file: what `--config` reads and what the operator renders into
//! each fleet's ConfigMap. Every key is optional; unknown keys are an error so that typos (and
//! a drift between the writer and the reader) do not go unnoticed. camelCase keys; documented
//! in the README ("Configuration file"). The proxy merges it with its flags and checks the
//! values (a known checksum-database key, http(s) URLs, limits above zero).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use modfleet_telemetry::LogFormat;
use serde::{Deserialize, Serialize};

pub use crate::access::{AccessConfig, AccessRule, Principal, TlsConfig};
use crate::defaults;
use crate::values::{ByteSize, HedgeDelay, HumanDuration, OnOff};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_max_bytes: Option<ByteSize>,
    /// In priority order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstreams: Option<Vec<UpstreamConfig>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sumdbs: Option<Vec<SumdbConfig>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_sumdb: Option<OnOff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list_ttl: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_sum: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge_delay: Option<HedgeDelay>,
    /// Latency-outlier demotion: an upstream far slower than a healthy alternative is asked
    /// after it for a while (see the README, "Failover model").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_latency: Option<OnOff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_ttl: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stale_while_revalidate: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_deadline: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_read_timeout: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_timeout: Option<HumanDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_ip: Option<usize>,
    /// Dependency prefetch: when a `.mod` comes from an upstream, the `.mod` files its
    /// `require` lines name are fetched in the background (bounded; never for `exclude` or
    /// `noSum` modules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<OnOff>,
    /// With `prefetch`, the required modules' `.info` files and zips are prefetched too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefetch_zips: Option<OnOff>,
    /// Modules served straight from their Git repositories. Their paths are never sent to an
    /// upstream proxy nor looked up in a checksum database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_modules: Option<Vec<PrivateModuleConfig>>,
    /// Serve the client port over HTTPS; unset: plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Who may fetch what, and who may use `/status` and `/admin/*`; unset: everyone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessConfig>,
    /// A store shared by the fleet's members under their disk caches (S3, GCS, Azure Blob):
    /// read on a disk miss before any upstream, written with what was fetched and verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreConfig>,
    /// Fleet-wide single flight: each immutable artifact has one owner among the fleet's
    /// members (rendezvous hashing over the current membership); a member that misses asks
    /// the owner on the peer port before any upstream, and fetches directly when the owner is
    /// down, slow or sends what fails verification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_fill: Option<PeerFillConfig>,
}

/// Peer fill (`peerFill`). The peer port is separate from the client port, and every peer
/// request carries the fleet's shared token (`Authorization: Bearer`); a member answers a peer
/// from its cache or its own upstream fetch and never asks a further peer (no loops).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerFillConfig {
    /// Address of the peer port.
    #[serde(default = "peer_listen")]
    pub listen: SocketAddr,
    /// `HOST:PORT` at which the other members reach this one's peer port: how a member knows
    /// itself in the membership. Per member, so usually from `--peer-advertise` /
    /// `MODFLEET_PEER_ADVERTISE` (a fleet sets `$(POD_IP):PORT`); unset: this member owns
    /// nothing and only asks the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// The fleet's shared peer token (at least 32 characters, first line of the file), read at
    /// start.
    pub token_file: PathBuf,
    /// A static membership: every member's `HOST:PORT` (this one's included). Exclusive with
    /// `endpointSlices`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The membership from a headless Service's EndpointSlices (read from the Kubernetes API
    /// with the Pod's service account, re-read every `refresh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_slices: Option<EndpointSlicesConfig>,
    /// Longest wait for the owner's answer headers and for each further part of its body; past
    /// it the member fetches directly.
    #[serde(default = "peer_timeout")]
    pub timeout: HumanDuration,
}

/// Where a member finds the fleet in Kubernetes: the EndpointSlices labelled
/// `kubernetes.io/service-name: SERVICE` in NAMESPACE; each endpoint's addresses with the
/// slice's port named `port` are members (ready or not: a starting member still answers, and
/// a dead one is skipped after one refused connection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSlicesConfig {
    pub service: String,
    /// Unset: the Pod's namespace (from its service account mount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The name of the Service port that is the peer port.
    #[serde(default = "peer_port_name")]
    pub port: String,
    /// How often the membership is re-read.
    #[serde(default = "peer_refresh")]
    pub refresh: HumanDuration,
    /// The API server, its CA and a token; unset: the Pod's in-cluster settings
    /// (`KUBERNETES_SERVICE_HOST`/`_PORT` and `/var/run/secrets/kubernetes.io/serviceaccount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl EndpointSlicesConfig {
    /// The EndpointSlices of `service` in the Pod's namespace, in-cluster settings.
    pub fn new(service: impl Into<String>) -> EndpointSlicesConfig {
        EndpointSlicesConfig {
            service: service.into(),
            namespace: None,
            port: peer_port_name(),
            refresh: defaults::PEER_REFRESH,
            api_server: None,
            ca_file: None,
            token_file: None,
        }
    }
}

fn peer_listen() -> SocketAddr {
    defaults::PEER_LISTEN
}

fn peer_timeout() -> HumanDuration {
    defaults::PEER_TIMEOUT
}

fn peer_refresh() -> HumanDuration {
    defaults::PEER_REFRESH
}

fn peer_port_name() -> String {
    defaults::PEER_PORT_NAME.to_owned()
}

/// The shared object-storage tier (`objectStore`). Only verified immutable artifacts
/// (`.info`, `.mod`, `.zip` of canonical versions, full checksum-database tiles) go there,
/// under `<url's prefix>/v1/<the cache's path>`; what is read back is verified as an upstream's
/// answer is. An outage costs upstream requests, never a client error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX` or `az://CONTAINER/PREFIX` (PREFIX optional).
    pub url: String,
    /// An S3-compatible endpoint (MinIO, Ceph RGW: `https://minio.example:9000`); unset: AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The S3 region; unset: `AWS_REGION`/`AWS_DEFAULT_REGION`, else us-east-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Keys from files (a mounted Secret); unset: the library's environment and ambient
    /// credentials (`AWS_*`, web identity, instance metadata; `GOOGLE_*`; `AZURE_*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<ObjectStoreCredentialsConfig>,
    /// Allow a plain `http://` endpoint (a test server on loopback, an in-cluster MinIO).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_http: bool,
    /// Longest wait to connect, for an answer's headers and for each further part of a body.
    #[serde(default = "object_store_timeout")]
    pub timeout: HumanDuration,
}

impl ObjectStoreConfig {
    /// A store at `url` with the defaults and ambient credentials.
    pub fn new(url: impl Into<String>) -> ObjectStoreConfig {
        ObjectStoreConfig {
            url: url.into(),
            endpoint: None,
            region: None,
            credentials: None,
            allow_http: false,
            timeout: defaults::OBJECT_STORE_TIMEOUT,
        }
    }
}

/// Credentials of the object store, each from a file, read at start. S3: `accessKeyIdFile` and
/// `secretAccessKeyFile` (and `sessionTokenFile` for temporary keys); GCS:
/// `serviceAccountKeyFile` (a service account's JSON key); Azure: `accountName` with
/// `accessKeyFile`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectStoreCredentialsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_file: Option<PathBuf>,
}

fn object_store_timeout() -> HumanDuration {
    defaults::OBJECT_STORE_TIMEOUT
}

/// Modules matching one pattern, served from Git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrivateModuleConfig {
    /// A GOPRIVATE glob (`git.corp.example.com/*`): the module paths, and paths under them,
    /// that this entry serves.
    pub pattern: String,
    /// Where a module's repository is. Unset: found as the go command finds it (its static
    /// rules for well-known hosts, else the `?go-get=1` meta tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryConfig>,
    /// Allow plain http for discovery and Git (the go command's GOINSECURE).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
    /// How to authenticate to the Git server; unset: anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<GitCredentialsConfig>,
}

/// One repository holding the modules under `root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositoryConfig {
    /// The repository: `https://`, `ssh://` (or `http://` with `insecure`).
    pub url: String,
    /// The module path prefix at the repository's root (`git.corp.example.com/team/lib`).
    pub root: String,
}

/// Credentials for a Git server, from files (mounted Secrets), read each time they are used so
/// a rotated Secret needs no restart. HTTPS: a user name and a password or token; SSH: a
/// private key and the server's known host keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitCredentialsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_private_key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_known_hosts_file: Option<PathBuf>,
}

/// One upstream GOPROXY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamConfig {
    pub url: String,
    /// Share of traffic among upstreams of equal priority.
    #[serde(default = "upstream_weight")]
    pub weight: u32,
    /// Longest wait for response headers, and for each further piece of the body.
    #[serde(default = "upstream_timeout")]
    pub timeout: HumanDuration,
    /// Lower is preferred; upstreams of equal priority share traffic by weight. Default: the
    /// position in the list, i.e. plain priority order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// How to authenticate to this upstream; unset: anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<UpstreamCredentialsConfig>,
    /// Allow `credentials` on a plain `http://` upstream (they would cross the network in
    /// clear text). Without credentials plain http needs no permission.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure: bool,
}

impl UpstreamConfig {
    /// An anonymous upstream with the default weight, timeout and priority.
    pub fn new(url: impl Into<String>) -> UpstreamConfig {
        UpstreamConfig {
            url: url.into(),
            weight: defaults::UPSTREAM_WEIGHT,
            timeout: defaults::UPSTREAM_TIMEOUT,
            priority: None,
            credentials: None,
            insecure: false,
        }
    }
}

/// The `Authorization` an upstream gets, from files (mounted Secrets) re-read when they
/// change, so a rotated Secret needs no restart. One of: HTTP Basic (`username` or
/// `usernameFile`, with `passwordFile`), a Bearer token (`bearerTokenFile`), or a netrc file
/// (`netrcFile`: the entry for the upstream's host, as the go command's `GOAUTH=netrc` picks
/// it). Sent only to the upstream's own origin, never across a redirect to another one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamCredentialsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netrc_file: Option<PathBuf>,
}

fn upstream_weight() -> u32 {
    defaults::UPSTREAM_WEIGHT
}

fn upstream_timeout() -> HumanDuration {
    defaults::UPSTREAM_TIMEOUT
}

/// A checksum database the proxy serves under /sumdb/NAME/ (the first one also verifies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SumdbConfig {
    pub name: String,
    /// Direct URL, tried after the upstreams; default https://NAME.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Verifier key NAME+HASH+BASE64KEY (as in GOSUMDB); known for sum.golang.org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl FromStr for SumdbConfig {
    type Err = String;
    /// `NAME`, `NAME=URL`, or the GOSUMDB forms `KEY`, `KEY URL`, `NAME URL`.
    fn from_str(s: &str) -> Result<Self, String> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        let (first, url) = match fields[..] {
            [first] => (first, None),
            [first, url] => (first, Some(url.to_string())),
            _ => {
                return Err(format!(
                    "invalid checksum database {s:?}: use NAME, NAME=URL, or as in GOSUMDB \
                     KEY [URL] or NAME URL"
                ));
            }
        };
        if url.is_none()
            && let Some((name, url)) = first.split_once('=')
            && !name.contains('+')
        {
            return Ok(SumdbConfig {
                name: name.to_string(),
                url: Some(url.to_string()),
                key: None,
            });
        }
        let (name, key) = match first.split_once('+') {
            Some((name, _)) => (name, Some(first.to_string())),
            None => (first, None),
        };
        Ok(SumdbConfig {
            name: name.to_string(),
            url,
            key,
        })
    }
}

/// Active health checks of upstreams (`healthCheck`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    pub interval: HumanDuration,
    pub timeout: HumanDuration,
    /// Path probed on each upstream; any answer below 500 (but 429) counts as alive.
    pub path: String,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            interval: defaults::HEALTH_CHECK_INTERVAL,
            timeout: defaults::HEALTH_CHECK_TIMEOUT,
            path: defaults::HEALTH_CHECK_PATH.to_string(),
        }
    }
}

/// Circuit breaker of each upstream (`breaker`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// First open period, doubled on each further trip (at most 5m).
    pub open_for: HumanDuration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: defaults::BREAKER_FAILURES,
            open_for: defaults::BREAKER_OPEN_FOR,
        }
    }
}

/// Retries of a whole pass over the upstreams (`retry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Passes over the upstreams, the first included.
    pub attempts: u32,
    /// Pause before the second pass; doubled for each further one, with jitter.
    pub backoff: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: defaults::RETRY_ATTEMPTS,
            backoff: defaults::RETRY_BACKOFF,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GO_KEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";

    #[test]
    fn unknown_file_keys_are_rejected() {
        let err = serde_yaml_ng::from_str::<FileConfig>("cachedir: /x\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `cachedir`"),
            "{err}"
        );
    }

    #[test]
    fn sizes_and_durations_read_as_written() {
        let f: FileConfig = serde_yaml_ng::from_str("cacheMaxBytes: 1Gi").unwrap();
        assert_eq!(f.cache_max_bytes, Some(ByteSize(1 << 30)));
        let f: FileConfig = serde_yaml_ng::from_str("cacheMaxBytes: 4096").unwrap();
        assert_eq!(f.cache_max_bytes, Some(ByteSize(4096)));
        let err = serde_yaml_ng::from_str::<FileConfig>("listTtl: soon\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid value: string \"soon\", expected a duration"),
            "{err}"
        );
    }

    /// What is written reads back the same, texts included: the operator writes this file
    /// and the proxy reads it.
    #[test]
    fn a_written_file_reads_back_the_same() {
        let file = FileConfig {
            listen: Some(defaults::LISTEN),
            cache_max_bytes: Some(ByteSize(19_327_352_832)),
            upstreams: Some(vec![
                UpstreamConfig {
                    timeout: "1m30s".parse().unwrap(),
                    weight: 3,
                    ..UpstreamConfig::new("https://a.example")
                },
                UpstreamConfig::new("https://b.example"),
                UpstreamConfig {
                    credentials: Some(UpstreamCredentialsConfig {
                        username: Some("ci".into()),
                        password_file: Some("/etc/modfleet-upstream/2/password".into()),
                        ..UpstreamCredentialsConfig::default()
                    }),
                    ..UpstreamConfig::new("https://c.example")
                },
                UpstreamConfig {
                    credentials: Some(UpstreamCredentialsConfig {
                        netrc_file: Some("/etc/modfleet-upstream/3/netrc".into()),
                        ..UpstreamCredentialsConfig::default()
                    }),
                    insecure: true,
                    ..UpstreamConfig::new("http://athens.internal:3000")
                },
            ]),
            sumdbs: Some(vec![SumdbConfig {
                name: "sum.golang.org".into(),
                url: None,
                key: Some(GO_KEY.into()),
            }]),
            verify_sumdb: Some(OnOff::Off),
            prefetch: Some(OnOff::On),
            prefetch_zips: Some(OnOff::Off),
            private_modules: Some(vec![PrivateModuleConfig {
                pattern: "git.corp.example.com/*".into(),
                repository: Some(RepositoryConfig {
                    url: "ssh://git@git.corp.example.com/team/lib.git".into(),
                    root: "git.corp.example.com/team/lib".into(),
                }),
                insecure: false,
                credentials: Some(GitCredentialsConfig {
                    ssh_private_key_file: Some("/etc/modfleet-private/0/ssh-privatekey".into()),
                    ssh_known_hosts_file: Some("/etc/modfleet-private/0/known_hosts".into()),
                    ..GitCredentialsConfig::default()
                }),
            }]),
            list_ttl: Some(defaults::LIST_TTL),
            log_format: Some(LogFormat::Json),
            hedge_delay: Some(HedgeDelay::Fixed(Duration::from_millis(250))),
            health_check: Some(HealthCheckConfig::default()),
            breaker: Some(BreakerConfig::default()),
            retry: Some(RetryConfig::default()),
            object_store: Some(ObjectStoreConfig {
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
                credentials: Some(ObjectStoreCredentialsConfig {
                    access_key_id_file: Some("/etc/modfleet-store/access-key-id".into()),
                    secret_access_key_file: Some("/etc/modfleet-store/secret-access-key".into()),
                    ..ObjectStoreCredentialsConfig::default()
                }),
                allow_http: true,
                ..ObjectStoreConfig::new("s3://modules/fleet-a")
            }),
            ..FileConfig::default()
        };
        let yaml = serde_yaml_ng::to_string(&file).unwrap();
        assert!(yaml.contains("timeout: 1m30s"), "{yaml}");
        assert!(
            yaml.contains(
                "  credentials:\n    netrcFile: /etc/modfleet-upstream/3/netrc\n  insecure: true"
            ),
            "{yaml}"
        );
        assert!(yaml.contains("listTtl: 60s"), "{yaml}");
        assert!(
            yaml.contains(
                "objectStore:\n  url: s3://modules/fleet-a\n  endpoint: http://127.0.0.1:9000"
            ),
            "{yaml}"
        );
        assert!(
            !yaml.contains("adminListen"),
            "unset keys are left out: {yaml}"
        );
        let back: FileConfig = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back, file);
        assert_eq!(serde_yaml_ng::to_string(&back).unwrap(), yaml);
    }
}
