//! ConfigMap `NAME-config`: the proxy's config file, written with the schema the proxy reads
//! it with (`modfleet_contract::config`), so a key the proxy does not know cannot be rendered.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use modfleet_contract::config::{
    FileConfig, GitCredentialsConfig, PrivateModuleConfig, RepositoryConfig, SumdbConfig,
    UpstreamConfig, UpstreamCredentialsConfig,
};
use modfleet_contract::defaults;
use modfleet_contract::values::{ByteSize, HumanDuration, OnOff};
use modfleet_telemetry::LogFormat;
use sha2::{Digest, Sha256};

use super::credentials::{Credentials, Key, Owner};
use super::labels::Component;
use super::tiers;
use super::{ADMIN_PORT, CACHE_DIR, CONFIG_KEY, Context, HTTP_PORT, meta, names, quantity_bytes};
use crate::crd::{self, GoModuleProxy};

/// Share of the cache volume the proxy may fill before evicting: it must evict before the
/// filesystem is full, and filesystems keep some space for themselves.
const CACHE_FILL_RATIO: f64 = 0.9;

/// The config the proxies of this fleet run with.
pub fn proxy_config(gmp: &GoModuleProxy, ctx: &Context) -> FileConfig {
    let spec = &gmp.spec;
    let sumdbs: Vec<SumdbConfig> = match &spec.sumdb {
        Some(s) if !s.name.is_empty() => vec![SumdbConfig {
            name: s.name.clone(),
            url: (!s.url.is_empty()).then(|| s.url.clone()),
            key: (!s.key.is_empty()).then(|| s.key.clone()),
        }],
        _ => Vec::new(),
    };
    FileConfig {
        listen: Some(any_address(HTTP_PORT)),
        admin_listen: Some(any_address(ADMIN_PORT)),
        cache_dir: Some(CACHE_DIR.into()),
        cache_max_bytes: quantity_bytes(&spec.cache.size)
            .map(|b| ctx.smallest_cache_bytes.map_or(b, |s| s.min(b)))
            .map(|b| ByteSize((b as f64 * CACHE_FILL_RATIO) as u64)),
        upstreams: Some(
            spec.upstreams
                .iter()
                .enumerate()
                .map(|(i, u)| upstream(i, u, &ctx.credentials))
                .collect(),
        ),
        sumdbs: (!sumdbs.is_empty()).then_some(sumdbs),
        list_ttl: Some(defaults::LIST_TTL),
        log_format: Some(LogFormat::Json),
        exclude: Some(spec.exclude_patterns.clone()),
        no_sum: Some(spec.no_sum_patterns.clone()),
        // Rendered only when the fleet sets it: the bytes of existing fleets' configs (and so
        // their pod templates) stay as they were.
        prefetch: spec.prefetch.as_ref().map(|p| OnOff::from(p.enabled)),
        prefetch_zips: spec.prefetch.as_ref().map(|p| OnOff::from(p.zips)),
        // Like prefetch: absent unless the fleet has private modules.
        private_modules: (!spec.private_modules.is_empty()).then(|| {
            spec.private_modules
                .iter()
                .enumerate()
                .map(|(i, m)| private_module(i, m, &ctx.credentials))
                .collect()
        }),
        // Absent unless the fleet sets spec.tls / spec.access (resources/access.rs).
        tls: ctx.access.tls.as_ref().map(|(_, tls)| tls.clone()),
        access: ctx.access.config.clone(),
        // Absent unless the fleet has a store / peer fill (resources/tiers.rs).
        object_store: spec
            .cache
            .object_store
            .as_ref()
            .map(|s| tiers::object_store_config(s, &ctx.tiers)),
        peer_fill: gmp.peer_fill().then(|| tiers::peer_fill_config(gmp)),
        ..FileConfig::default()
    }
}

/// Entry `index`, with the files of the keys its Secret has (never their contents).
fn private_module(
    index: usize,
    m: &crd::PrivateModule,
    credentials: &Credentials,
) -> PrivateModuleConfig {
    let owner = Owner::PrivateModule(index);
    let files = credentials.mounts.contains_key(&owner).then(|| {
        let file = |key: Key| credentials.file(owner, key);
        GitCredentialsConfig {
            username: None,
            username_file: file(Key::Username),
            password_file: file(Key::Password),
            ssh_private_key_file: file(Key::SshPrivateKey),
            ssh_known_hosts_file: file(Key::KnownHosts),
        }
    });
    PrivateModuleConfig {
        pattern: m.pattern.clone(),
        repository: m.repository.as_ref().map(|r| RepositoryConfig {
            url: r.url.clone(),
            root: r.root.clone(),
        }),
        insecure: m.insecure,
        credentials: files,
    }
}

fn any_address(port: i32) -> SocketAddr {
    let port = u16::try_from(port).expect("the proxy's ports are constants below 65536");
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
}

/// Upstream `index`, with the files of the keys its Secret has (never their contents). The
/// spec's timeout is rendered as written. The CRD admits only `([0-9]+(ms|s|m|h))+`; the
/// one such text the proxy cannot read overflows (longer than 500 years) and gets the default.
fn upstream(index: usize, u: &crd::Upstream, credentials: &Credentials) -> UpstreamConfig {
    let owner = Owner::Upstream(index);
    let files = credentials.mounts.contains_key(&owner).then(|| {
        let file = |key: Key| credentials.file(owner, key);
        UpstreamCredentialsConfig {
            username: None,
            username_file: file(Key::Username),
            password_file: file(Key::Password),
            bearer_token_file: file(Key::Token),
            netrc_file: file(Key::Netrc),
        }
    });
    UpstreamConfig {
        weight: u32::try_from(u.weight.unwrap_or(1).max(1)).unwrap_or(1),
        timeout: u
            .timeout
            .as_deref()
            .and_then(|t| t.parse::<HumanDuration>().ok())
            .unwrap_or(defaults::UPSTREAM_TIMEOUT),
        credentials: files,
        insecure: u.insecure,
        ..UpstreamConfig::new(&u.url)
    }
}

/// ConfigMap `NAME-config` with key `config.yaml`.
pub fn build(gmp: &GoModuleProxy, ctx: &Context) -> ConfigMap {
    let yaml = serde_yaml_ng::to_string(&proxy_config(gmp, ctx))
        .expect("the proxy config is plain strings, numbers and lists");
    ConfigMap {
        metadata: meta(gmp, names::config(&gmp.name_any()), Component::Config, None),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), yaml)])),
        ..ConfigMap::default()
    }
}

/// Hash of the ConfigMap's data, put on the pod template so a config change rolls the fleet.
pub fn hash(cm: &ConfigMap) -> String {
    let mut h = Sha256::new();
    for (k, v) in cm.data.iter().flatten() {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_the_proxy_schema() {
        let g = gmp(json!({
            "upstreams": [
                {"url": "https://goproxy.example.com", "weight": 2, "timeout": "10s"},
                {"url": "http://athens.internal:3000"}
            ],
            "sumdb": {"name": "sum.golang.org", "url": ""},
            "excludePatterns": ["corp.example.com/*"],
            "noSumPatterns": ["corp.example.com/*", "git.internal/*"],
            "cache": {"size": "20Gi"}
        }));
        let cm = build(&g, &ctx());
        assert_owned(&cm.metadata, "config");
        assert_eq!(cm.metadata.name.as_deref(), Some("gomod-config"));
        let yaml = &cm.data.as_ref().unwrap()["config.yaml"];
        let v: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(
            v,
            json!({
                "listen": "0.0.0.0:8080",
                "adminListen": "0.0.0.0:9090",
                "cacheDir": "/var/cache/modfleet",
                "cacheMaxBytes": 19327352832u64,
                "upstreams": [
                    {"url": "https://goproxy.example.com", "weight": 2, "timeout": "10s"},
                    {"url": "http://athens.internal:3000", "weight": 1, "timeout": "30s"}
                ],
                "sumdbs": [{"name": "sum.golang.org"}],
                "listTtl": "60s",
                "logFormat": "json",
                "exclude": ["corp.example.com/*"],
                "noSum": ["corp.example.com/*", "git.internal/*"],
                "peerFill": {
                    "listen": "0.0.0.0:7070",
                    "tokenFile": "/etc/modfleet-peer/token",
                    "endpointSlices": {"service": "gomod-peers", "port": "peer", "refresh": "5s"},
                    "timeout": "2s"
                }
            })
        );
    }

    #[test]
    fn upstreams_name_the_mounted_files() {
        use crate::resources::credentials::tests::{upstream_fleet, upstream_secrets};
        let g = upstream_fleet();
        let c = Context {
            credentials: crate::resources::credentials::check(&g, &upstream_secrets()).unwrap(),
            ..ctx()
        };
        let yaml = &build(&g, &c).data.unwrap()["config.yaml"];
        let v: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(
            v["upstreams"],
            json!([
                {
                    "url": "https://artifactory.corp.example/api/go/go", "weight": 1, "timeout": "30s",
                    "credentials": {
                        "usernameFile": "/etc/modfleet-upstream/0/username",
                        "passwordFile": "/etc/modfleet-upstream/0/password"
                    }
                },
                {"url": "https://goproxy.example.com", "weight": 1, "timeout": "30s"},
                {
                    "url": "https://nexus.corp.example/repository/go", "weight": 1, "timeout": "30s",
                    "credentials": {"bearerTokenFile": "/etc/modfleet-upstream/2/token"}
                },
                {
                    "url": "http://athens.internal:3000", "weight": 1, "timeout": "30s",
                    "credentials": {"netrcFile": "/etc/modfleet-upstream/3/netrc"},
                    "insecure": true
                }
            ])
        );
        for secret in ["up-s3cret", "up-t0ken", "up-n3trc"] {
            assert!(!yaml.contains(secret), "{yaml}");
        }
    }

    #[test]
    fn private_modules_name_the_mounted_files() {
        use crate::resources::credentials::tests::{good_secrets, private_fleet};
        let g = private_fleet();
        let c = Context {
            credentials: crate::resources::credentials::check(&g, &good_secrets()).unwrap(),
            ..ctx()
        };
        let yaml = &build(&g, &c).data.unwrap()["config.yaml"];
        let v: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(
            v["privateModules"],
            json!([
                {
                    "pattern": "git.corp.example.com/team/lib",
                    "repository": {
                        "url": "ssh://git@git.corp.example.com/team/lib.git",
                        "root": "git.corp.example.com/team/lib"
                    },
                    "credentials": {
                        "sshPrivateKeyFile": "/etc/modfleet-private/0/ssh-privatekey",
                        "sshKnownHostsFile": "/etc/modfleet-private/0/known_hosts"
                    }
                },
                {"pattern": "git.internal/*", "insecure": true},
                {
                    "pattern": "git.corp.example.com/*",
                    "credentials": {
                        "usernameFile": "/etc/modfleet-private/2/username",
                        "passwordFile": "/etc/modfleet-private/2/password"
                    }
                }
            ])
        );
        assert!(
            !yaml.contains("s3cret") && !yaml.contains("BEGIN"),
            "{yaml}"
        );
        // Only the keys matter to the config: a rotated Secret leaves it (and its hash) alone.
        let mut rotated = good_secrets();
        rotated.insert(
            "git-basic".into(),
            crate::resources::credentials::tests::secret(&[
                ("username", "ci"),
                ("password", "n3w"),
            ]),
        );
        let c2 = Context {
            credentials: crate::resources::credentials::check(&g, &rotated).unwrap(),
            ..ctx()
        };
        assert_eq!(hash(&build(&g, &c)), hash(&build(&g, &c2)));
        // The proxy's own schema reads it back.
        let back: FileConfig = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(back.private_modules.unwrap().len(), 3);
    }

    /// `tls` and `access` name the mounted files; a tokens file's contents never reach the
    /// config (a rotation rolls through the credentials hash, not the config hash).
    #[test]
    fn tls_and_access_name_the_mounted_files() {
        use crate::resources::access::tests::{access_fleet, access_secrets};
        let g = access_fleet();
        let c = Context {
            access: crate::resources::access::check(&g, &access_secrets()).unwrap(),
            ..ctx()
        };
        let yaml = &build(&g, &c).data.unwrap()["config.yaml"];
        let (_, tail) = yaml.split_once("\ntls:\n").expect(yaml);
        // Up to the peer fill block that follows (on by default for PerMember fleets).
        let (tail, _) = tail.split_once("peerFill:\n").expect(yaml);
        assert_eq!(
            format!("tls:\n{tail}"),
            "tls:\n  certFile: /etc/modfleet-tls/tls.crt\n  keyFile: /etc/modfleet-tls/tls.key\n\
             access:\n  tokensFiles:\n  - /etc/modfleet-access/0/tokens\n  - /etc/modfleet-access/1/tokens\n\
             \x20 - /etc/modfleet-access/operator/tokens\n  rules:\n\
             \x20 - modules:\n    - git.corp.example.com/*\n    allow:\n    - group:ci\n\
             \x20 - modules:\n    - '*'\n    allow:\n    - anonymous\n\
             \x20 admin:\n  - group:ops\n  - modfleet-operator\n"
        );
        assert!(
            !yaml.contains("sha256:") && !yaml.contains("BEGIN"),
            "{yaml}"
        );
        let back: FileConfig = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(back.access, c.access.config);
        // Without spec.tls and spec.access the keys are absent (existing fleets' bytes).
        assert!(!build(&minimal(), &ctx()).data.unwrap()["config.yaml"].contains("access"));
    }

    #[test]
    fn sumdb_key_is_omitted_without_a_name() {
        let mut g = minimal();
        g.spec.sumdb = Some(crate::crd::SumDb {
            name: String::new(),
            url: "https://sum.example.com".into(),
            key: String::new(),
        });
        let yaml = &build(&g, &ctx()).data.unwrap()["config.yaml"];
        assert!(!yaml.contains("sumdbs"), "{yaml}");
    }

    #[test]
    fn eviction_limit_fits_the_smallest_real_volume() {
        let mut g = minimal();
        g.spec.cache.size = "2Gi".into();
        let mut c = ctx();
        assert_eq!(
            proxy_config(&g, &c).cache_max_bytes,
            Some(ByteSize(1_932_735_283))
        );
        c.smallest_cache_bytes = Some(1 << 30);
        assert_eq!(
            proxy_config(&g, &c).cache_max_bytes,
            Some(ByteSize(966_367_641))
        );
        c.smallest_cache_bytes = Some(4 << 30);
        assert_eq!(
            proxy_config(&g, &c).cache_max_bytes,
            Some(ByteSize(1_932_735_283))
        );
    }

    #[test]
    fn hash_changes_with_the_config() {
        let g = minimal();
        let a = hash(&build(&g, &ctx()));
        assert_eq!(a, hash(&build(&g, &ctx())));
        let mut g2 = g.clone();
        g2.spec.exclude_patterns = vec!["x.example.com/*".into()];
        assert_ne!(a, hash(&build(&g2, &ctx())));
        assert_eq!(a.len(), 16);
    }

    /// The rendered bytes are part of the contract with running fleets: their hash is on the
    /// pod template, so any change of spelling or order rolls every fleet on an operator
    /// upgrade. Change this text only together with a reason to roll. (Peer fill, on by
    /// default for PerMember fleets, was such a reason: its `peerFill` block at the end.)
    #[test]
    fn renders_the_same_bytes_as_before() {
        let g = gmp(json!({
            "upstreams": [
                {"url": "https://goproxy.example.com", "weight": 2, "timeout": "1m30s"},
                {"url": "http://athens.internal:3000"}
            ],
            "sumdb": {"name": "sum.golang.org", "url": "https://sum.example.com"},
            "excludePatterns": ["corp.example.com/*"],
            "cache": {"size": "20Gi"}
        }));
        let yaml = &build(&g, &ctx()).data.unwrap()["config.yaml"];
        assert_eq!(
            yaml,
            "listen: 0.0.0.0:8080\n\
             adminListen: 0.0.0.0:9090\n\
             cacheDir: /var/cache/modfleet\n\
             cacheMaxBytes: 19327352832\n\
             upstreams:\n\
             - url: https://goproxy.example.com\n  weight: 2\n  timeout: 1m30s\n\
             - url: http://athens.internal:3000\n  weight: 1\n  timeout: 30s\n\
             sumdbs:\n\
             - name: sum.golang.org\n  url: https://sum.example.com\n\
             listTtl: 60s\n\
             logFormat: json\n\
             exclude:\n\
             - corp.example.com/*\n\
             noSum: []\n\
             peerFill:\n  listen: 0.0.0.0:7070\n  tokenFile: /etc/modfleet-peer/token\n\
             \x20 endpointSlices:\n    service: gomod-peers\n    port: peer\n    refresh: 5s\n\
             \x20 timeout: 2s\n"
        );
    }
}
