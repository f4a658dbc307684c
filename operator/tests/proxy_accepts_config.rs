//! The ConfigMap the operator renders must be a config the real proxy accepts, with the
//! values the spec asks for: each key the operator renders is loaded by the proxy's own
//! `Config::load` (flags, file, validation) and checked here, so a drift between what one
//! writes and the other reads fails here, not in a cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use clap::Parser;
use modfleet_operator::crd::{GoModuleProxy, GoModuleProxySpec};
use modfleet_operator::resources::{Context, access, configmap, credentials, tiers};
use modfleet_proxy::config::{Cli, Config, Environment, LogFormat};
use serde_json::json;

/// Every key the operator renders; a new one must be checked below before it is added here.
const RENDERED_KEYS: &[&str] = &[
    "listen",
    "adminListen",
    "cacheDir",
    "cacheMaxBytes",
    "upstreams",
    "sumdbs",
    "listTtl",
    "logFormat",
    "exclude",
    "noSum",
    "prefetch",
    "prefetchZips",
    "privateModules",
    "tls",
    "access",
    "objectStore",
    "peerFill",
];

fn rendered(spec: serde_json::Value) -> String {
    rendered_with(spec, &credentials::SecretData::new())
}

/// The config the operator renders for `spec`, with these Secrets in the namespace.
fn rendered_with(spec: serde_json::Value, secrets: &credentials::SecretData) -> String {
    let spec: GoModuleProxySpec = serde_json::from_value(spec).unwrap();
    let mut gmp = GoModuleProxy::new("gomod", spec);
    gmp.metadata.namespace = Some("ns".into());
    gmp.metadata.uid = Some("uid".into());
    let ctx = Context {
        proxy_image: "img".into(),
        credentials: credentials::check(&gmp, secrets).unwrap(),
        access: access::check(&gmp, secrets).unwrap(),
        tiers: tiers::check(&gmp, secrets, Some(&tiers::PeerToken::generate())).unwrap(),
        ..Context::default()
    };
    let cm = configmap::build(&gmp, &ctx);
    cm.data.as_ref().unwrap()["config.yaml"].clone()
}

/// `yaml` with peer fill's files (mounted in a member: the peer token, the service account's
/// token, CA and namespace) made in `dir`, as the proxy checks them at start.
fn with_local_peer_files(yaml: &str, dir: &std::path::Path) -> String {
    use serde_yaml_ng::Value;
    let mut doc: Value = serde_yaml_ng::from_str(yaml).unwrap();
    let Some(peer_fill) = doc.get_mut("peerFill") else {
        return yaml.to_string();
    };
    assert_eq!(peer_fill["tokenFile"], "/etc/modfleet-peer/token", "{yaml}");
    let token = dir.join("peer-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
    peer_fill["tokenFile"] = token.to_str().unwrap().into();
    if let Some(slices) = peer_fill.get_mut("endpointSlices") {
        let ca = dir.join("ca.crt");
        let cert = rcgen::generate_simple_self_signed(vec!["kubernetes".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let sa_token = dir.join("sa-token");
        std::fs::write(&sa_token, "sa-token").unwrap();
        slices["apiServer"] = "https://kubernetes.default.svc".into();
        slices["caFile"] = ca.to_str().unwrap().into();
        slices["tokenFile"] = sa_token.to_str().unwrap().into();
        slices["namespace"] = "ns".into();
    }
    serde_yaml_ng::to_string(&doc).unwrap()
}

fn load(spec: serde_json::Value) -> Config {
    load_yaml(&rendered(spec))
}

fn load_yaml(yaml: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let yaml = &with_local_peer_files(yaml, dir.path());
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cli = Cli::try_parse_from(["modfleet-proxy", "--config", path.to_str().unwrap()]).unwrap();
    Config::load(&cli.serve, Environment::default)
        .unwrap_or_else(|e| panic!("the proxy rejects the rendered config: {e}\n{yaml}"))
}

#[test]
fn full_spec_renders_a_config_the_proxy_loads() {
    let c = load(json!({
        "upstreams": [
            {"url": "https://goproxy.example.com", "weight": 3, "timeout": "1m30s"},
            {"url": "http://athens.internal:3000"}
        ],
        "sumdb": {"name": "sum.golang.org", "url": "https://sum.example.com"},
        "excludePatterns": ["corp.example.com/*"],
        "noSumPatterns": ["git.internal/*"],
        "prefetch": {"enabled": false, "zips": true},
        "cache": {"size": "20Gi"}
    }));
    assert!(!c.prefetch, "the fleet turned prefetch off");
    assert!(c.prefetch_zips);
    assert_eq!(c.upstreams.len(), 2);
    assert_eq!(c.upstreams[0].weight, 3);
    assert_eq!(c.upstreams[0].timeout, std::time::Duration::from_secs(90));
    assert_eq!(c.cache_max_bytes, Some(19_327_352_832));
    assert_eq!(c.listen.port(), 8080);
    assert_eq!(c.admin_listen.port(), 9090);
    assert_eq!(c.cache_dir, std::path::PathBuf::from("/var/cache/modfleet"));
    assert!(c.is_excluded("corp.example.com/x"));
    assert!(c.is_no_sum("git.internal/y"));
    assert_eq!(c.upstreams[0].url.as_str(), "https://goproxy.example.com/");
    assert_eq!(c.upstreams[1].url.as_str(), "http://athens.internal:3000/");
    assert_eq!(c.upstreams[1].weight, 1);
    assert_eq!(c.upstreams[1].timeout, Duration::from_secs(30));
    assert_eq!(
        c.upstreams.iter().map(|u| u.priority).collect::<Vec<_>>(),
        [0, 1],
        "spec order is priority order"
    );
    assert_eq!(c.list_ttl, Duration::from_secs(60));
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.sumdbs.len(), 1);
    assert_eq!(c.sumdbs[0].name, "sum.golang.org");
    assert_eq!(c.sumdbs[0].url.as_str(), "https://sum.example.com/");
    assert!(c.sumdbs[0].key.is_some(), "the go command's key");
    assert!(c.verify_sumdb);
}

/// Private modules from Git: the proxy loads the entries with the credential files the
/// operator mounts (an SSH entry with an explicit repository, an anonymous insecure one, an
/// HTTPS one found by discovery), and serves those paths from Git, never checked against a
/// checksum database.
#[test]
fn private_modules_reach_the_proxy_with_their_credential_files() {
    let yaml = rendered_with(private_spec(), &private_secrets());
    let c = load_yaml(&yaml);
    let ssh = c
        .private_module("git.corp.example.com/team/lib/sub")
        .unwrap();
    let repo = ssh.repository.as_ref().unwrap();
    assert_eq!(repo.url, "ssh://git@git.corp.example.com/team/lib.git");
    assert_eq!(repo.root, "git.corp.example.com/team/lib");
    assert!(c.private_module("git.internal/x").unwrap().insecure);
    let https = c.private_module("git.corp.example.com/other").unwrap();
    assert!(https.repository.is_none(), "found by discovery");
    assert!(c.is_no_sum("git.corp.example.com/other"));
    assert!(c.private_module("example.com/public").is_none());
    assert!(
        yaml.contains("/etc/modfleet-private/0/ssh-privatekey")
            && yaml.contains("/etc/modfleet-private/2/password"),
        "{yaml}"
    );
    assert!(
        !yaml.contains("s3cret"),
        "no secret value in the config: {yaml}"
    );
}

/// Upstream credentials: the proxy takes each upstream's files as the kind the operator
/// mounted (the files themselves exist only in a member, so the merge is checked here and the
/// start, which reads them, says which file is missing).
#[test]
fn upstream_credentials_reach_the_proxy_as_their_files() {
    use modfleet_proxy::credentials::{CredentialSource, Username};
    let secret = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    };
    let secrets = credentials::SecretData::from([
        (
            "basic".to_owned(),
            secret(&[("username", "ci"), ("password", "s3cret")]),
        ),
        ("token".to_owned(), secret(&[("token", "t0ken")])),
        (
            "netrc".to_owned(),
            secret(&[(
                "netrc",
                "machine athens.internal:3000 login a password n3trc",
            )]),
        ),
    ]);
    let yaml = rendered_with(
        json!({
            "upstreams": [
                {"url": "https://artifactory.corp.example/api/go/go", "credentialsSecretRef": {"name": "basic"}},
                {"url": "https://nexus.corp.example/repository/go", "credentialsSecretRef": {"name": "token"}},
                {"url": "http://athens.internal:3000", "insecure": true, "credentialsSecretRef": {"name": "netrc"}},
                {"url": "https://goproxy.example.com"}
            ]
        }),
        &secrets,
    );
    for value in ["s3cret", "t0ken", "n3trc"] {
        assert!(!yaml.contains(value), "a secret in the config: {yaml}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let cli = Cli::try_parse_from(["modfleet-proxy", "--config", path.to_str().unwrap()]).unwrap();
    let file = serde_yaml_ng::from_str(&yaml).unwrap();
    let c = Config::merge(&cli.serve, file, Environment::default)
        .unwrap_or_else(|e| panic!("the proxy rejects the rendered config: {e}\n{yaml}"));
    let source = |i: usize| {
        c.upstreams[i]
            .credentials
            .as_ref()
            .map(|c| c.source().clone())
    };
    assert_eq!(
        source(0),
        Some(CredentialSource::Basic {
            username: Username::File("/etc/modfleet-upstream/0/username".into()),
            password_file: "/etc/modfleet-upstream/0/password".into(),
        })
    );
    assert_eq!(
        source(1),
        Some(CredentialSource::Bearer {
            token_file: "/etc/modfleet-upstream/1/token".into()
        })
    );
    assert_eq!(
        source(2),
        Some(CredentialSource::Netrc {
            file: "/etc/modfleet-upstream/2/netrc".into()
        })
    );
    assert_eq!(source(3), None);
    let err = Config::load(&cli.serve, Environment::default)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("https://artifactory.corp.example/api/go/go")
            && err.contains("/etc/modfleet-upstream/0/username"),
        "{err}"
    );
}

fn private_spec() -> serde_json::Value {
    json!({
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "privateModules": [
            {
                "pattern": "git.corp.example.com/team/lib",
                "repository": {"url": "ssh://git@git.corp.example.com/team/lib.git",
                               "root": "git.corp.example.com/team/lib"},
                "credentialsSecretRef": {"name": "git-ssh"}
            },
            {"pattern": "git.internal/*", "insecure": true},
            {"pattern": "git.corp.example.com/*", "credentialsSecretRef": {"name": "git-basic"}}
        ]
    })
}

/// The Secrets `private_spec` names.
fn private_secrets() -> credentials::SecretData {
    let secret = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    };
    credentials::SecretData::from([
        (
            "git-ssh".to_owned(),
            secret(&[("ssh-privatekey", "KEY"), ("known_hosts", "HOSTS")]),
        ),
        (
            "git-basic".to_owned(),
            secret(&[("username", "ci"), ("password", "s3cret")]),
        ),
    ])
}

/// A company checksum database: the proxy starts with the key the fleet names.
#[test]
fn custom_sumdb_key_reaches_the_proxy() {
    const KEY: &str = "sum.example.com+b2e18263+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
    let c = load(json!({
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "sumdb": {"name": "sum.example.com", "key": KEY},
    }));
    assert_eq!(c.sumdbs.len(), 1);
    assert_eq!(c.sumdbs[0].name, "sum.example.com");
    assert_eq!(c.sumdbs[0].url.as_str(), "https://sum.example.com/");
    assert_eq!(c.sumdbs[0].key.as_deref(), Some(KEY));
}

/// A fleet with `spec.tls` and `spec.access`: the Secrets it names, the operator's own among
/// them (as the reconcile makes it).
fn access_spec_and_secrets() -> (serde_json::Value, credentials::SecretData) {
    let spec = json!({
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "tls": {"secretName": "proxy-tls"},
        "access": {
            "tokenSecretRefs": [{"name": "ci-tokens"}],
            "rules": [
                {"modules": ["git.corp.example.com/*"], "allow": ["group:ci"]},
                {"modules": ["*"], "allow": ["anonymous"]}
            ],
            "admin": ["group:ops"]
        }
    });
    let gmp = GoModuleProxy::new("gomod", serde_json::from_value(spec.clone()).unwrap());
    let own = access::operator_token_secret(&gmp, &access::AdminToken::generate());
    let data = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    };
    let line = modfleet_contract::access::TokenLine::for_token(
        "ci-bot",
        "mf_a-ci-token-long-enough-for-the-proxy-0123",
        &["ci".to_owned()],
    );
    let secrets = credentials::SecretData::from([
        (
            "proxy-tls".to_owned(),
            data(&[("tls.crt", "CERT"), ("tls.key", "KEY")]),
        ),
        (
            "ci-tokens".to_owned(),
            data(&[("tokens", &format!("{line}\n"))]),
        ),
        (
            "gomod-operator-token".to_owned(),
            Some(
                own.data
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect(),
            ),
        ),
    ]);
    (spec, secrets)
}

/// HTTPS and access control: the proxy takes the `tls` and `access` the operator renders,
/// with the files it mounts (they exist only in a member, so the merge is checked here, as
/// for upstream credentials). Passes once the proxy enforces them (branches tls-serving and
/// client-access); before that it refuses both keys.
#[test]
fn tls_and_access_reach_the_proxy_as_their_files() {
    let (spec, secrets) = access_spec_and_secrets();
    let yaml = rendered_with(spec, &secrets);
    assert!(!yaml.contains("mf_"), "a token in the config: {yaml}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let cli = Cli::try_parse_from(["modfleet-proxy", "--config", path.to_str().unwrap()]).unwrap();
    let file: modfleet_contract::config::FileConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    let tls = file.tls.clone().expect("tls rendered");
    assert_eq!(tls.cert_file.to_str(), Some("/etc/modfleet-tls/tls.crt"));
    let access = file.access.clone().expect("access rendered");
    assert_eq!(
        access.tokens_files.last().and_then(|p| p.to_str()),
        Some("/etc/modfleet-access/operator/tokens")
    );
    Config::merge(&cli.serve, file, Environment::default)
        .unwrap_or_else(|e| panic!("the proxy rejects the rendered config: {e}\n{yaml}"));
}

/// The object store and peer fill: the proxy takes them with the files the members mount
/// (they exist only in a member, so the merge is checked here) and each member's own address
/// from `--peer-advertise` (the Deployment's `MODFLEET_PEER_ADVERTISE=$(POD_IP):7070`).
#[test]
fn object_store_and_peer_fill_reach_the_proxy() {
    let secrets = credentials::SecretData::from([(
        "minio-keys".to_owned(),
        Some(
            [("accessKeyId", "AKIA0"), ("secretAccessKey", "s3cret")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
                .collect(),
        ),
    )]);
    let yaml = rendered_with(
        json!({
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "cache": {"objectStore": {
                "url": "s3://go-modules/fleet-a", "endpoint": "http://minio.minio.svc:9000",
                "allowHttp": true, "timeout": "3s", "credentialsSecretRef": {"name": "minio-keys"}
            }}
        }),
        &secrets,
    );
    assert!(
        !yaml.contains("s3cret") && !yaml.contains("AKIA0"),
        "{yaml}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let cli = Cli::try_parse_from([
        "modfleet-proxy",
        "--config",
        path.to_str().unwrap(),
        "--peer-advertise",
        "10.1.2.3:7070",
    ])
    .unwrap();
    let file: modfleet_contract::config::FileConfig = serde_yaml_ng::from_str(&yaml).unwrap();
    let c = Config::merge(&cli.serve, file, Environment::default)
        .unwrap_or_else(|e| panic!("the proxy rejects the rendered config: {e}\n{yaml}"));
    let store = c.object_store.expect("objectStore");
    assert_eq!(store.url, "s3://go-modules/fleet-a");
    assert_eq!(
        store.endpoint.as_deref(),
        Some("http://minio.minio.svc:9000")
    );
    assert!(store.allow_http);
    assert_eq!(store.timeout.to_string(), "3s");
    let creds = store.credentials.expect("credentials");
    assert_eq!(
        creds
            .secret_access_key_file
            .as_deref()
            .and_then(|p| p.to_str()),
        Some("/etc/modfleet-store/secretAccessKey")
    );
    let peer = c.peer_fill.expect("peerFill");
    assert_eq!(peer.advertise.as_deref(), Some("10.1.2.3:7070"));
    assert_eq!(peer.listen.to_string(), "0.0.0.0:7070");
    assert_eq!(peer.token_file.to_str(), Some("/etc/modfleet-peer/token"));
    let slices = peer.endpoint_slices.expect("endpointSlices");
    assert_eq!(
        (slices.service.as_str(), slices.port.as_str()),
        ("gomod-peers", "peer")
    );
    assert!(
        peer.members.is_empty(),
        "the membership comes from the API server"
    );
}

/// The keys checked above are all the operator renders.
#[test]
fn every_rendered_key_is_checked() {
    let (access_spec, secrets) = access_spec_and_secrets();
    let yaml = rendered_with(
        json!({
            "upstreams": [{"url": "https://goproxy.example.com", "weight": 3, "timeout": "1m30s"}],
            "sumdb": {"name": "sum.example.com", "url": "https://sum.example.com",
                      "key": "sum.example.com+b2e18263+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"},
            "excludePatterns": ["corp.example.com/*"],
            "noSumPatterns": ["git.internal/*"],
            "prefetch": {"enabled": true, "zips": true},
            "cache": {"size": "20Gi", "objectStore": {"url": "s3://go-modules/a"}},
            "privateModules": [{"pattern": "git.internal/*", "insecure": true}],
            "tls": access_spec["tls"],
            "access": access_spec["access"]
        }),
        &secrets,
    );
    let doc: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let keys: BTreeSet<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, RENDERED_KEYS.iter().copied().collect(), "{yaml}");
    let upstream: BTreeSet<&str> = doc["upstreams"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(upstream, ["timeout", "url", "weight"].into(), "{yaml}");
    let sumdb: BTreeSet<&str> = doc["sumdbs"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(sumdb, ["key", "name", "url"].into(), "{yaml}");
}

#[test]
fn minimal_spec_renders_a_config_the_proxy_loads() {
    let c = load(json!({"upstreams": [{"url": "https://goproxy.example.com"}]}));
    assert_eq!(c.upstreams.len(), 1);
    assert!(
        c.prefetch && !c.prefetch_zips,
        "the proxy's prefetch defaults"
    );
}
