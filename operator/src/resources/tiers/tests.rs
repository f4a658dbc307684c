use std::collections::BTreeMap;

use modfleet_contract::config::FileConfig;
use serde_json::json;

use super::*;
use crate::resources::credentials::tests::secret;
use crate::resources::testutil::*;
use crate::resources::{Context, configmap, deployment, networkpolicy, service};

/// A PerMember fleet on MinIO in the cluster, with keys from the Secret `minio-keys`.
pub fn store_fleet() -> GoModuleProxy {
    gmp(json!({
        "replicas": 3,
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "cache": {
            "size": "10Gi",
            "objectStore": {
                "url": "s3://go-modules/fleet-a",
                "endpoint": "http://minio.minio.svc:9000",
                "region": "eu-west-1",
                "allowHttp": true,
                "timeout": "3s",
                "credentialsSecretRef": {"name": "minio-keys"}
            }
        }
    }))
}

fn minio_keys(extra: &[(&str, &str)]) -> SecretData {
    let mut pairs = vec![("accessKeyId", "AKIA0"), ("secretAccessKey", "s3cret")];
    pairs.extend_from_slice(extra);
    BTreeMap::from([("minio-keys".to_owned(), secret(&pairs))])
}

fn token() -> PeerToken {
    PeerToken::from_secret(&BTreeMap::from([(
        PEER_TOKEN_KEY.to_owned(),
        b"0123456789abcdef0123456789abcdef-peer".to_vec(),
    )]))
    .unwrap()
}

fn with_tiers(g: &GoModuleProxy, secrets: &SecretData) -> Context {
    Context {
        tiers: check(g, secrets, g.peer_fill().then(token).as_ref()).unwrap(),
        ..ctx()
    }
}

/// The rendered config, read back with the proxy's own schema.
fn file_config(g: &GoModuleProxy, c: &Context) -> FileConfig {
    let cm = configmap::build(g, c);
    serde_yaml_ng::from_str(&cm.data.unwrap()["config.yaml"]).expect("the proxy reads it")
}

#[test]
fn peer_fill_defaults_follow_the_cache_mode() {
    let per_member = minimal();
    assert!(per_member.peer_fill(), "PerMember: on by default");
    let shared = gmp(json!({
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "cache": {"mode": "Shared", "storageClassName": "rwx"}
    }));
    assert!(!shared.peer_fill(), "Shared: off by default");
    let off = gmp(json!({
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "fleet": {"peerFill": false}
    }));
    assert!(!off.peer_fill(), "explicit false wins");
    let shared_on = gmp(json!({
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "cache": {"mode": "Shared", "storageClassName": "rwx"},
        "fleet": {"peerFill": true}
    }));
    assert!(shared_on.peer_fill(), "explicit true wins");
    // An empty `fleet` is the default.
    let empty = gmp(json!({"upstreams": [{"url": "https://goproxy.example.com"}], "fleet": {}}));
    assert!(empty.peer_fill());

    // What each renders: peerFill in the config or not.
    assert!(file_config(&per_member, &ctx()).peer_fill.is_some());
    assert!(file_config(&shared, &ctx()).peer_fill.is_none());
    assert!(file_config(&off, &ctx()).peer_fill.is_none());
}

#[test]
fn config_has_the_store_with_mounted_files_and_peer_fill_from_endpointslices() {
    let g = store_fleet();
    let c = with_tiers(
        &g,
        &minio_keys(&[("sessionToken", "t"), ("unrelated", "x")]),
    );
    let cfg = file_config(&g, &c);
    let store = cfg.object_store.expect("objectStore");
    assert_eq!(
        serde_json::to_value(&store).unwrap(),
        json!({
            "url": "s3://go-modules/fleet-a",
            "endpoint": "http://minio.minio.svc:9000",
            "region": "eu-west-1",
            "credentials": {
                "accessKeyIdFile": "/etc/modfleet-store/accessKeyId",
                "secretAccessKeyFile": "/etc/modfleet-store/secretAccessKey",
                "sessionTokenFile": "/etc/modfleet-store/sessionToken"
            },
            "allowHttp": true,
            "timeout": "3s"
        })
    );
    let peer = cfg.peer_fill.expect("peerFill");
    assert_eq!(
        serde_json::to_value(&peer).unwrap(),
        json!({
            "listen": "0.0.0.0:7070",
            "tokenFile": "/etc/modfleet-peer/token",
            "endpointSlices": {"service": "gomod-peers", "port": "peer", "refresh": "5s"},
            "timeout": "2s"
        })
    );
    // Each member says who it is through the environment, not the shared config.
    assert_eq!(peer.advertise, None);
}

#[test]
fn ambient_credentials_gcs_and_azure() {
    let store = |spec: serde_json::Value| {
        gmp(json!({
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "cache": {"objectStore": spec}
        }))
    };
    // AWS with IRSA: no Secret, no credentials, the default timeout.
    let g = store(json!({"url": "s3://go-modules", "region": "us-east-2"}));
    let s = file_config(&g, &with_tiers(&g, &SecretData::new()))
        .object_store
        .unwrap();
    assert_eq!(
        serde_json::to_value(&s).unwrap(),
        json!({"url": "s3://go-modules", "region": "us-east-2", "timeout": "5s"})
    );
    // GCS with a service account key.
    let g = store(json!({"url": "gs://mods/a", "credentialsSecretRef": {"name": "gcs"}}));
    let secrets = BTreeMap::from([("gcs".to_owned(), secret(&[("serviceAccountKey", "{}")]))]);
    let s = file_config(&g, &with_tiers(&g, &secrets))
        .object_store
        .unwrap();
    assert_eq!(
        serde_json::to_value(s.credentials).unwrap(),
        json!({"serviceAccountKeyFile": "/etc/modfleet-store/serviceAccountKey"})
    );
    // Azure: the account from the spec, the key from the Secret.
    let g = store(json!({
        "url": "az://mods", "accountName": "corpmods", "credentialsSecretRef": {"name": "az"}
    }));
    let secrets = BTreeMap::from([("az".to_owned(), secret(&[("accessKey", "k")]))]);
    let s = file_config(&g, &with_tiers(&g, &secrets))
        .object_store
        .unwrap();
    assert_eq!(
        serde_json::to_value(s.credentials).unwrap(),
        json!({"accountName": "corpmods", "accessKeyFile": "/etc/modfleet-store/accessKey"})
    );
}

#[test]
fn a_missing_secret_or_key_says_what_to_add() {
    let g = store_fleet();
    let e = check(&g, &SecretData::new(), None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cache.objectStore.credentialsSecretRef: Secret minio-keys not found in the fleet's namespace; create it with keys accessKeyId and secretAccessKey (and sessionToken for temporary keys)"
    );
    let only_id = BTreeMap::from([("minio-keys".to_owned(), secret(&[("accessKeyId", "A")]))]);
    let e = check(&g, &only_id, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cache.objectStore.credentialsSecretRef: Secret minio-keys has no key secretAccessKey; a S3 store needs accessKeyId and secretAccessKey (and sessionToken for temporary keys)"
    );
    assert!(!e.to_string().contains('A'.to_string().repeat(2).as_str()));
    assert_eq!(referenced_secrets(&g), ["minio-keys"]);
    assert!(referenced_secrets(&minimal()).is_empty());
}

#[test]
fn the_hash_follows_the_keys_and_the_token() {
    let g = store_fleet();
    let h = |secrets: &SecretData, t: Option<&PeerToken>| check(&g, secrets, t).unwrap().hash;
    let base = h(&minio_keys(&[]), Some(&token()));
    assert!(base.is_some());
    assert_eq!(base, h(&minio_keys(&[("unrelated", "y")]), Some(&token())));
    assert_ne!(
        base,
        h(&minio_keys(&[("sessionToken", "t")]), Some(&token()))
    );
    assert_ne!(base, h(&minio_keys(&[]), Some(&PeerToken::generate())));
    assert_ne!(base, h(&minio_keys(&[]), None));
    assert_eq!(
        check(&minimal(), &SecretData::new(), None).unwrap().hash,
        None
    );
}

#[test]
fn peer_tokens_are_long_random_and_kept_only_when_valid() {
    let a = PeerToken::generate();
    let b = PeerToken::generate();
    assert_ne!(a, b);
    assert!(
        a.as_str().len() >= MIN_PEER_TOKEN_LEN,
        "{}",
        a.as_str().len()
    );
    assert_eq!(format!("{a:?}"), "PeerToken(..)");
    let s = peer_token_secret(&minimal(), &a);
    assert_owned(&s.metadata, "access");
    assert_eq!(s.metadata.name.as_deref(), Some("gomod-peer-token"));
    let data: BTreeMap<String, Vec<u8>> =
        s.data.unwrap().into_iter().map(|(k, v)| (k, v.0)).collect();
    assert_eq!(PeerToken::from_secret(&data), Some(a));
    let bad = |v: &[u8]| BTreeMap::from([(PEER_TOKEN_KEY.to_owned(), v.to_vec())]);
    assert_eq!(PeerToken::from_secret(&bad(b"short")), None);
    assert_eq!(
        PeerToken::from_secret(&bad(&[b'a'; 40][..])).map(|t| t.0.len()),
        Some(40)
    );
    let mut two_lines = vec![b'a'; 40];
    two_lines.extend_from_slice(b"\nmore");
    assert_eq!(PeerToken::from_secret(&bad(&two_lines)), None);
    assert_eq!(PeerToken::from_secret(&BTreeMap::new()), None);
}

#[test]
fn members_mount_the_secrets_and_advertise_their_pod_ip() {
    let g = store_fleet();
    let c = with_tiers(&g, &minio_keys(&[]));
    let d = deployment::build(&g, &c, Some(0), "cfg");
    let template = d.spec.unwrap().template;
    let annotations = template.metadata.unwrap().annotations.unwrap();
    assert_eq!(
        annotations[TIERS_HASH_ANNOTATION],
        c.tiers.hash.clone().unwrap()
    );
    let pod = template.spec.unwrap();
    assert_eq!(
        pod.automount_service_account_token,
        Some(true),
        "reads EndpointSlices"
    );
    assert!(deployment::restricted_violations(&pod).is_empty());
    let volumes = pod.volumes.unwrap();
    let secret_of = |name: &str| {
        let v = volumes.iter().find(|v| v.name == name).expect(name);
        let s = v.secret.clone().unwrap();
        let items: Vec<String> = s.items.unwrap().into_iter().map(|i| i.key).collect();
        (s.secret_name.unwrap(), items, s.default_mode)
    };
    assert_eq!(
        secret_of(STORE_VOLUME),
        (
            "minio-keys".into(),
            vec!["accessKeyId".into(), "secretAccessKey".into()],
            Some(0o400)
        )
    );
    assert_eq!(
        secret_of(PEER_VOLUME),
        ("gomod-peer-token".into(), vec!["token".into()], Some(0o400))
    );
    let container = &pod.containers[0];
    let mounts: Vec<(String, String, Option<bool>)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name == STORE_VOLUME || m.name == PEER_VOLUME)
        .map(|m| (m.name.clone(), m.mount_path.clone(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            (STORE_VOLUME.into(), STORE_DIR.into(), Some(true)),
            (PEER_VOLUME.into(), PEER_DIR.into(), Some(true))
        ]
    );
    let ports: Vec<(String, i32)> = container
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            ("http".into(), 8080),
            ("admin".into(), 9090),
            ("peer".into(), 7070)
        ]
    );
    let env = container.env.clone().unwrap();
    let pos = |n: &str| env.iter().position(|e| e.name == n).expect(n);
    let pod_ip = &env[pos("POD_IP")];
    assert_eq!(
        pod_ip
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "status.podIP"
    );
    let advertise = &env[pos("MODFLEET_PEER_ADVERTISE")];
    assert_eq!(advertise.value.as_deref(), Some("$(POD_IP):7070"));
    assert!(
        pos("POD_IP") < pos("MODFLEET_PEER_ADVERTISE"),
        "defined before use"
    );
}

#[test]
fn without_peer_fill_nothing_of_it_is_rendered() {
    let g = gmp(json!({
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "fleet": {"peerFill": false}
    }));
    let c = with_tiers(&g, &SecretData::new());
    assert_eq!(c.tiers, Tiers::default());
    let pod = deployment::build(&g, &c, Some(0), "cfg")
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    let c0 = &pod.containers[0];
    assert!(c0.ports.iter().flatten().all(|p| p.container_port != 7070));
    assert!(
        c0.env
            .iter()
            .flatten()
            .all(|e| e.name != "MODFLEET_PEER_ADVERTISE")
    );
    assert!(pod.volumes.iter().flatten().all(|v| v.name != PEER_VOLUME));
    let peers = service::build_peers(&g, &c).spec.unwrap().ports.unwrap();
    assert!(peers.iter().all(|p| p.port != 7070));
    assert!(crate::resources::desired(&g, &c).membership.is_none());
}

#[test]
fn the_peer_port_is_on_the_peers_service_only() {
    let g = store_fleet();
    let c = ctx();
    let peers: Vec<(String, i32)> = service::build_peers(&g, &c)
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port))
        .collect();
    assert_eq!(
        peers,
        [
            ("http".into(), 8080),
            ("admin".into(), 9090),
            ("peer".into(), 7070)
        ]
    );
    let client = service::build(&g, &c).spec.unwrap().ports.unwrap();
    assert_eq!(client.len(), 1);
    assert_ne!(client[0].port, 7070);
    assert!(crate::resources::desired(&g, &c).membership.is_some());
}

#[test]
fn network_policy_admits_members_on_the_peer_port_and_clients_never() {
    let g = store_fleet();
    let spec = networkpolicy::build(&g, &ctx()).unwrap().spec.unwrap();
    let port_numbers = |p: &Option<Vec<k8s_openapi::api::networking::v1::NetworkPolicyPort>>| {
        p.iter()
            .flatten()
            .map(|p| match p.port.clone().unwrap() {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n,
                other => panic!("{other:?}"),
            })
            .collect::<Vec<i32>>()
    };
    let ingress = spec.ingress.unwrap();
    for rule in &ingress {
        let from = rule.from.as_ref().unwrap();
        let members_only = from.len() == 1
            && from[0].namespace_selector.is_none()
            && from[0]
                .pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone())
                == Some(crate::resources::labels::fleet_selector("gomod"));
        let ports = port_numbers(&rule.ports);
        if members_only {
            assert_eq!(ports, [8080, 9090, 7070]);
        } else {
            assert!(
                !ports.contains(&7070),
                "only members reach the peer port: {rule:?}"
            );
        }
    }
    let egress = spec.egress.unwrap();
    assert_eq!(
        port_numbers(&egress[2].ports),
        [8080, 9090, 7070],
        "to members"
    );
    // The store's endpoint port joins egressPorts (443 by default).
    assert_eq!(port_numbers(&egress[1].ports), [443, 9000]);
}

#[test]
fn the_store_port_is_added_once() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ports_for = |endpoint: Option<&str>| -> Vec<i32> {
        let mut g = store_fleet();
        g.spec.cache.object_store.as_mut().unwrap().endpoint = endpoint.map(Into::into);
        let spec = networkpolicy::build(&g, &ctx()).unwrap().spec.unwrap();
        spec.egress.unwrap()[1]
            .ports
            .iter()
            .flatten()
            .map(|p| match p.port.clone().unwrap() {
                IntOrString::Int(n) => n,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(ports_for(None), [443], "AWS: 443, already there");
    assert_eq!(ports_for(Some("https://minio.example")), [443]);
    assert_eq!(ports_for(Some("http://minio.example")), [443, 80]);
    assert_eq!(ports_for(Some("https://[fd00::1]:9443/")), [443, 9443]);
}
