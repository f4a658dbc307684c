//! e2e: a fleet with an object store and peer fill (docs/operator.md, "Tiers"). A real
//! operator on the local cluster's API server: the rendered config read with the proxy's own
//! schema, the Secrets mounted, the members' Role and RoleBinding, the NetworkPolicy's peer
//! rule, the peer token kept across reconciles (and made anew only when broken), and
//! `status.store` / `StoreHealthy` from real `modfleet-proxy` members on the kwok pods' IPs
//! (`hack/cluster.sh` makes them loopback addresses), whose store is a closed port.

use std::collections::BTreeMap;
use std::path::Path;

use modfleet_contract::config::FileConfig;
use modfleet_e2e::operator::{Operator, OperatorEnv, install_crd};
use modfleet_e2e::proxy::{ProxyProcess, http_get, member_pods};
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT, Namespace, condition};
use modfleet_testkit::upstream::{Reply, Upstream};
use modfleet_testkit::workspace::closed_port;
use serde_json::Value;

fn secret_data(ns: &Namespace, name: &str) -> (String, BTreeMap<String, String>) {
    let s = ns.get_json(&["secret", name]);
    let data = modfleet_e2e::secret_data(&s)
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
        .collect();
    (s["metadata"]["uid"].as_str().unwrap().to_owned(), data)
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|o| o["uid"] == uid && o["controller"] == true)
}

fn ports(v: &Value) -> Vec<i64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_i64())
        .collect()
}

fn reconciles(op: &Operator) -> f64 {
    op.metric("modfleet_operator_reconciles_total")
        .unwrap_or(0.0)
}

/// Waits for a reconcile that starts after now (the annotation wakes the controller).
fn poke(ns: &Namespace, op: &Operator, n: u32) {
    let before = reconciles(op);
    ns.kubectl(&[
        "annotate",
        "--overwrite",
        "gmp",
        "tiered",
        &format!("e2e/poke={n}"),
    ]);
    ns.eventually("a reconcile after the poke", DEFAULT_TIMEOUT, || {
        (reconciles(op) > before + 1.0).then_some(())
    });
}

#[test]
fn a_tiered_fleet_gets_its_secrets_rbac_policy_and_store_and_peer_status() {
    let env = OperatorEnv::polling("tiers");
    let (ns, op) = (&env.ns, &env.op);
    let cluster = ns.cluster();

    let dead_store = closed_port();
    let store_url = "s3://go-modules/tiered";
    ns.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: store-keys}\nstringData: {accessKeyId: AKIAE2E, secretAccessKey: e2e-secret, unrelated: x}\n",
    );
    let upstream = Upstream::builder()
        .route("*", Reply::Status(404, "not found"))
        .start();
    ns.apply(&format!(
        "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: tiered\nspec:\n  replicas: 2\n  upstreams: [{{url: {}}}]\n  cache:\n    size: 1Gi\n    objectStore:\n      url: {store_url}\n      endpoint: http://127.0.0.1:{dead_store}\n      allowHttp: true\n      timeout: 1s\n      credentialsSecretRef: {{name: store-keys}}\n",
        upstream.url
    ));
    ns.wait("gmp/tiered", "condition=Ready", DEFAULT_TIMEOUT);
    let g = ns.get_json(&["gmp", "tiered"]);
    let uid = g["metadata"]["uid"].as_str().unwrap().to_owned();

    // The config: the store with the mounted files' paths, peer fill from EndpointSlices,
    // read back with the proxy's own schema.
    let cm = ns.get_json(&["configmap", "tiered-config"]);
    let config: FileConfig =
        serde_yaml_ng::from_str(cm["data"]["config.yaml"].as_str().unwrap()).unwrap();
    let store = config.object_store.expect("objectStore");
    assert_eq!(store.url, store_url);
    let creds = store.credentials.expect("credentials");
    assert_eq!(
        creds.access_key_id_file.as_deref(),
        Some(Path::new("/etc/modfleet-store/accessKeyId"))
    );
    assert_eq!(
        creds.session_token_file, None,
        "the Secret has no sessionToken"
    );
    let peer = config
        .peer_fill
        .expect("peerFill: on by default for PerMember");
    assert_eq!(peer.listen.port(), 7070);
    let slices = peer.endpoint_slices.expect("endpointSlices");
    assert_eq!(
        (slices.service.as_str(), slices.port.as_str()),
        ("tiered-peers", "peer")
    );

    // Each member: both Secrets mounted read-only, its Pod IP advertised, the peer port.
    for member in ["tiered-0", "tiered-1"] {
        let d = ns.get_json(&["deployment", member]);
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(
            pod["automountServiceAccountToken"], true,
            "reads EndpointSlices"
        );
        let secrets: BTreeMap<String, String> = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| {
                Some((
                    v["name"].as_str()?.to_owned(),
                    v["secret"]["secretName"].as_str()?.to_owned(),
                ))
            })
            .collect();
        assert_eq!(secrets["store-credentials"], "store-keys");
        assert_eq!(secrets["peer-token"], "tiered-peer-token");
        let c = &pod["containers"][0];
        let mounts: BTreeMap<String, (String, bool)> = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    (
                        m["mountPath"].as_str().unwrap().to_owned(),
                        m["readOnly"] == true,
                    ),
                )
            })
            .collect();
        assert_eq!(
            mounts["store-credentials"],
            ("/etc/modfleet-store".into(), true)
        );
        assert_eq!(mounts["peer-token"], ("/etc/modfleet-peer".into(), true));
        let env = c["env"].as_array().unwrap();
        let var = |n: &str| {
            env.iter()
                .find(|e| e["name"] == n)
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(
            var("POD_IP")["valueFrom"]["fieldRef"]["fieldPath"],
            "status.podIP"
        );
        assert_eq!(var("MODFLEET_PEER_ADVERTISE")["value"], "$(POD_IP):7070");
        assert!(
            c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "peer" && p["containerPort"] == 7070),
            "{c}"
        );
    }
    // The pods exist: the API server took the template (the kwok pods got it).
    assert_eq!(member_pods(ns, "tiered").len(), 2);

    // Services: the peer port on the headless one only.
    assert!(ports(&ns.get_json(&["service", "tiered-peers"])["spec"]["ports"]).contains(&7070));
    assert!(!ports(&ns.get_json(&["service", "tiered"])["spec"]["ports"]).contains(&7070));

    // The members' right to read their membership, owned by the fleet.
    let role = ns.get_json(&["role", "tiered-peers"]);
    assert!(owned_by(&role, &uid), "{role}");
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}])
    );
    let binding = ns.get_json(&["rolebinding", "tiered-peers"]);
    assert!(owned_by(&binding, &uid), "{binding}");
    assert_eq!(binding["roleRef"]["name"], "tiered-peers");
    assert_eq!(binding["subjects"][0]["name"], "tiered");
    assert_eq!(binding["subjects"][0]["namespace"], ns.name());
    // What the API server says the members' ServiceAccount may do.
    let sa = format!("system:serviceaccount:{}:tiered", ns.name());
    for (verb, want) in [("list", "yes"), ("watch", "yes"), ("create", "no")] {
        let out = ns.try_kubectl(&[
            "auth",
            "can-i",
            verb,
            "endpointslices.discovery.k8s.io",
            "--as",
            &sa,
        ]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{verb}");
    }

    // NetworkPolicy: members reach each other on 7070; no other rule admits it.
    let np = ns.get_json(&["networkpolicy", "tiered"]);
    let ingress = np["spec"]["ingress"].as_array().unwrap();
    let with_peer: Vec<&Value> = ingress
        .iter()
        .filter(|r| ports(&r["ports"]).contains(&7070))
        .collect();
    assert_eq!(with_peer.len(), 1, "{np}");
    assert!(with_peer[0]["from"][0]["namespaceSelector"].is_null());
    assert_eq!(
        with_peer[0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        "tiered"
    );
    // The store's port is among the egress ports.
    assert!(ports(&np["spec"]["egress"][1]["ports"]).contains(&i64::from(dead_store)));

    // The peer token: long, owned, and kept across reconciles.
    let (token_uid, token) = secret_data(ns, "tiered-peer-token");
    assert!(token["token"].len() >= 32, "{}", token["token"].len());
    assert!(owned_by(
        &ns.get_json(&["secret", "tiered-peer-token"]),
        &uid
    ));
    let tiers_hash = |member: &str| {
        ns.get_json(&["deployment", member])["spec"]["template"]["metadata"]["annotations"]
            ["modfleet.dev/tiers-hash"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let hash = tiers_hash("tiered-0");
    poke(ns, op, 1);
    poke(ns, op, 2);
    assert_eq!(
        secret_data(ns, "tiered-peer-token"),
        (token_uid.clone(), token.clone())
    );
    assert_eq!(tiers_hash("tiered-0"), hash, "nothing rolled");

    // A broken token is made anew, and the members roll onto it.
    ns.kubectl(&[
        "patch",
        "secret",
        "tiered-peer-token",
        "--type=merge",
        "-p",
        r#"{"stringData":{"token":"short"}}"#,
    ]);
    let (new_uid, new_token) = ns.eventually("the peer token made anew", DEFAULT_TIMEOUT, || {
        let (u, d) = secret_data(ns, "tiered-peer-token");
        (u != token_uid && d.get("token").is_some_and(|t| t.len() >= 32)).then_some((u, d))
    });
    assert_ne!(new_token["token"], token["token"]);
    ns.eventually(
        "member 0 rolled onto the new token",
        DEFAULT_TIMEOUT,
        || (tiers_hash("tiered-0") != hash).then_some(()),
    );
    assert_ne!(new_uid, token_uid);
    ns.wait("gmp/tiered", "condition=Ready", DEFAULT_TIMEOUT);
    // Both members roll, each in its own time; member_pods waits for them to settle.
    let pods = member_pods(ns, "tiered");

    // status.store from the members: real proxies on the pods' IPs with the fleet's store
    // (a closed port) and keys as files where the members would mount them.
    let keys = tempfile_dir();
    std::fs::write(keys.join("accessKeyId"), "AKIAE2E").unwrap();
    std::fs::write(keys.join("secretAccessKey"), "e2e-secret").unwrap();
    let store = format!(
        "objectStore:\n  url: {store_url}\n  endpoint: http://127.0.0.1:{dead_store}\n  allowHttp: true\n  timeout: 1s\n  credentials:\n    accessKeyIdFile: {0}/accessKeyId\n    secretAccessKeyFile: {0}/secretAccessKey\n",
        keys.display()
    );
    // Peer fill as the members run it: the fleet's token, and the EndpointSlices of
    // tiered-peers read from the real API server; first with the token of a ServiceAccount
    // the operator's Role does not cover (as a member whose reads are refused).
    std::fs::write(keys.join("peer-token"), &new_token["token"]).unwrap();
    let (server, ca) = cluster.api_server(&keys);
    ns.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: outsider}\n");
    let sa_token = |sa: &str| {
        let token = ns.kubectl(&["create", "token", sa, "--duration", "1h"]);
        std::fs::write(keys.join("sa-token"), token.trim()).unwrap();
    };
    sa_token("outsider");
    let peer_fill = |ip: std::net::IpAddr| {
        format!(
            "peerFill:\n  listen: {ip}:7070\n  advertise: {ip}:7070\n  tokenFile: {keys}/peer-token\n  endpointSlices:\n    service: tiered-peers\n    namespace: {ns}\n    apiServer: {server}\n    caFile: {ca}\n    tokenFile: {keys}/sa-token\n    refresh: 500ms\n",
            keys = keys.display(),
            ns = ns.name(),
            ca = ca.display(),
        )
    };
    let _proxies: Vec<ProxyProcess> = pods
        .iter()
        .map(|(_, ip)| {
            let extra = format!("{store}{}", peer_fill(*ip));
            ProxyProcess::start_with(*ip, std::slice::from_ref(&upstream.url), &extra)
        })
        .collect();
    // Nothing asked the store yet: its breaker is closed, so it counts as healthy.
    let (g, c) = ns.eventually("StoreHealthy=True on 2/2", DEFAULT_TIMEOUT, || {
        let g = ns.get_json(&["gmp", "tiered"]);
        let c = condition(&g, "StoreHealthy");
        (c["status"] == "True" && g["status"]["store"]["members"] == 2).then_some((g, c))
    });
    assert_eq!(g["status"]["store"]["url"], store_url);
    assert_eq!(g["status"]["store"]["healthyMembers"], 2);
    assert_eq!(c["reason"], "StoreHealthy");
    let healthy_since = c["lastTransitionTime"].as_str().unwrap().to_owned();

    // Misses of immutable artifacts ask the dead store first; its breaker opens.
    for (_, ip) in &pods {
        for i in 0..8 {
            let path = format!("/example.com/m{i}/@v/v1.0.0.info");
            let _ = http_get(std::net::SocketAddr::new(*ip, 8080), &path);
        }
    }
    let (g, c) = ns.eventually("StoreHealthy=False", DEFAULT_TIMEOUT, || {
        let g = ns.get_json(&["gmp", "tiered"]);
        let c = condition(&g, "StoreHealthy");
        (c["status"] == "False" && g["status"]["store"]["healthyMembers"] == 0).then_some((g, c))
    });
    assert_eq!(c["reason"], "StoreUnhealthy");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("{store_url} is healthy on 0/2 members")),
        "{message}"
    );
    assert!(message.contains("Degraded, not down"), "{message}");
    assert!(c["lastTransitionTime"].as_str().unwrap() >= healthy_since.as_str());
    assert!(
        !g["status"]["store"]["lastError"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "{g}"
    );
    // Clients still get answers: not part of Ready, nor a failure.
    assert_eq!(condition(&g, "Ready")["status"], "True");
    assert_eq!(condition(&g, "Degraded")["status"], "False");

    // status: PeersHealthy. The API server refuses the outsider's reads: both members name
    // it, and the condition says what the members do meanwhile and where to look.
    let c = ns.eventually("PeersHealthy=False", DEFAULT_TIMEOUT, || {
        let c = condition(&ns.get_json(&["gmp", "tiered"]), "PeersHealthy");
        (c["status"] == "False").then_some(c)
    });
    assert_eq!(c["reason"], "MembershipUnreadable");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.starts_with("2/2 members cannot read the fleet's membership"),
        "{message}"
    );
    for said in [
        "403 Forbidden",
        "tiered-peers",
        "ServiceAccount tiered",
        "egressTo",
    ] {
        assert!(message.contains(said), "{said}: {message}");
    }
    // With the members' own ServiceAccount (the operator's Role and RoleBinding), the next
    // read succeeds: the members' token file is re-read at each refresh, as the kubelet's is.
    sa_token("tiered");
    let (g, c) = ns.eventually("PeersHealthy=True", DEFAULT_TIMEOUT, || {
        let g = ns.get_json(&["gmp", "tiered"]);
        let c = condition(&g, "PeersHealthy");
        (c["status"] == "True").then_some((g, c))
    });
    assert_eq!(c["reason"], "MembershipRead");
    assert!(
        c["message"]
            .as_str()
            .unwrap()
            .starts_with("2 members read the fleet's membership"),
        "{c}"
    );
    assert_eq!(condition(&g, "Ready")["status"], "True");
    // The flips are Events on the fleet.
    ns.eventually("the membership Events", DEFAULT_TIMEOUT, || {
        let events = ns.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=tiered",
            "-o",
            "jsonpath={.items[*].reason}",
        ]);
        (events.contains("MembershipUnreadable") && events.contains("MembershipRead")).then_some(())
    });
    let _ = std::fs::remove_dir_all(&keys);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("modfleet-e2e-tiers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The CRD's rules for `cache.objectStore` and `fleet`, enforced by the real API server.
#[test]
fn the_api_server_refuses_bad_object_stores_with_clear_messages() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("tiers-cel");
    let fleet = |name: &str, store: &str| {
        format!(
            "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: {name}\nspec:\n  upstreams: [{{url: https://goproxy.example.com}}]\n  cache:\n    objectStore: {store}\n"
        )
    };
    let scheme = "cache.objectStore.url must be s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX";
    for (name, store, want) in [
        (
            "https",
            "{url: 'https://go-modules.s3.amazonaws.com'}",
            scheme,
        ),
        ("upper", "{url: 'S3://go-modules'}", scheme),
        ("nobucket", "{url: 's3://'}", scheme),
        (
            "plain",
            "{url: 's3://m', endpoint: 'http://minio:9000'}",
            "an http:// endpoint needs allowHttp: true",
        ),
        (
            "endpoint",
            "{url: 's3://m', endpoint: 'minio:9000'}",
            "endpoint must be an absolute http:// or https:// URL",
        ),
        (
            "account",
            "{url: 's3://m', accountName: corpmods}",
            "accountName is for Azure Blob",
        ),
        (
            "azure",
            "{url: 'az://m', credentialsSecretRef: {name: az}}",
            "needs accountName",
        ),
        (
            "timeout",
            "{url: 's3://m', timeout: soon}",
            "cache.objectStore.timeout must be a duration",
        ),
    ] {
        ns.assert_refused(&fleet(name, store), want);
    }
    ns.assert_refused(
        "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: peer\nspec:\n  upstreams: [{url: https://goproxy.example.com}]\n  fleet: {peerFill: sometimes}\n",
        "spec.fleet.peerFill",
    );
    // What is right is taken as written; an unset peerFill stays unset (decided by mode).
    ns.apply(&fleet(
        "good",
        "{url: 's3://go-modules/a', endpoint: 'http://minio.minio.svc:9000', allowHttp: true, credentialsSecretRef: {name: keys}}",
    ));
    let g = ns.get_json(&["gmp", "good"]);
    assert_eq!(g["spec"]["cache"]["objectStore"]["allowHttp"], true);
    assert!(g["spec"]["fleet"].is_null(), "{g}");
    ns.apply(&fleet("gcs", "{url: 'gs://corp_modules/fleet'}"));
    ns.apply(&fleet("az", "{url: 'az://mods', accountName: corpmods}"));
}
