//! e2e: peer fill's membership from Kubernetes. Three real `modfleet-proxy` members read the
//! EndpointSlices of a headless Service from the real API server with a service account's
//! token (and the Role a fleet's members get): they find each other, fetch each artifact once
//! for the fleet, see a member leave, and keep their membership (reporting why) when their RBAC
//! is taken away.
//!
//! The local cluster gives Pods loopback IPs, which the API server refuses in EndpointSlices
//! ("may not be in the loopback range"), so its EndpointSlice controller cannot list them. The
//! test therefore writes the slices itself, as that controller would, for members listening on
//! TEST-NET-1 addresses (192.0.2.0/24, RFC 5737) it adds to `lo` (needs root and `ip`, as the
//! network-namespace tests do).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use modfleet_e2e::proxy::{ProxyProcess, http_get};
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT};
use modfleet_testkit::upstream::{Reply, Upstream};
use serde_json::Value;

const TOKEN: &str = "e2e-peer-token-0123456789abcdef0123456789";
const MODULES: usize = 12;

/// An EndpointSlice of Service `peers` with one endpoint at `ip`, port `peer` 7070.
fn slice(name: &str, ip: IpAddr) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}
  labels: {{kubernetes.io/service-name: peers}}
addressType: IPv4
ports: [{{name: http, port: 8080}}, {{name: peer, port: 7070}}]
endpoints: [{{addresses: [\"{ip}\"], conditions: {{ready: true}}}}]
"
    )
}

/// TEST-NET-1 addresses added to this host's `lo` (a local address outside 127.0.0.0/8, so
/// the API server takes it in an EndpointSlice); removed on drop.
struct TestNetAddrs {
    ips: Vec<IpAddr>,
}

impl TestNetAddrs {
    fn add(n: usize) -> TestNetAddrs {
        let mut addrs = TestNetAddrs { ips: Vec::new() };
        for i in 0..n {
            let a: IpAddr = format!("192.0.2.{}", 10 + i).parse().unwrap();
            let out = Command::new("ip")
                .args(["addr", "add", &format!("{a}/32"), "dev", "lo"])
                .output()
                .unwrap_or_else(|e| panic!("cannot run `ip` ({e}): install iproute2"));
            let stderr = String::from_utf8_lossy(&out.stderr);
            // "File exists": left by a run that was killed; it is ours to use (and remove).
            assert!(
                out.status.success() || stderr.contains("File exists"),
                "ip addr add {a}/32 dev lo: {stderr} (this test needs root)"
            );
            addrs.ips.push(a);
        }
        addrs
    }
}

impl Drop for TestNetAddrs {
    fn drop(&mut self) {
        for a in &self.ips {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{a}/32"), "dev", "lo"])
                .output();
        }
    }
}

/// A member's `/status` `peers.members`.
fn members(p: &ProxyProcess) -> Option<BTreeSet<String>> {
    let status: Value = serde_json::from_str(&p.admin_get("/status")?).ok()?;
    Some(
        status["peers"]["members"]
            .as_array()?
            .iter()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect(),
    )
}

#[test]
fn members_find_each_other_in_a_headless_services_endpoint_slices() {
    let cluster = Cluster::from_env();
    let ns = cluster.namespace("peer-fill");
    let name = ns.name().to_string();
    ns.apply(
        "apiVersion: v1
kind: ServiceAccount
metadata: {name: member}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: read-peers}
rules:
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: member-reads-peers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: read-peers}
subjects: [{kind: ServiceAccount, name: member}]
---
apiVersion: v1
kind: Service
metadata: {name: peers}
spec:
  clusterIP: None
  ports: [{name: http, port: 8080}, {name: peer, port: 7070}]
",
    );
    let addrs = TestNetAddrs::add(3);
    for (i, ip) in addrs.ips.iter().enumerate() {
        ns.apply(&slice(&format!("peers-{i}"), *ip));
    }
    let pods: Vec<(String, IpAddr)> = addrs
        .ips
        .iter()
        .enumerate()
        .map(|(i, ip)| (format!("peers-{i}"), *ip))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = cluster.api_server(dir.path());
    let token = dir.path().join("sa-token");
    std::fs::write(
        &token,
        ns.kubectl(&["create", "token", "member", "--duration", "1h"])
            .trim(),
    )
    .unwrap();
    let peer_token = dir.path().join("peer-token");
    std::fs::write(&peer_token, TOKEN).unwrap();

    let mut routes = Vec::new();
    for i in 0..MODULES {
        routes.push((
            format!("/example.test/m{i}/@v/v1.0.0.mod"),
            Reply::Body(format!("module example.test/m{i}\n").into_bytes()),
        ));
    }
    let up = Upstream::start(
        routes
            .iter()
            .map(|(p, r)| (p.as_str(), r.clone()))
            .collect(),
        None,
    );
    let start = |ip: IpAddr| {
        ProxyProcess::start_with(
            ip,
            std::slice::from_ref(&up.url),
            &format!(
                "noSum: [\"example.test/*\"]
peerFill:
  listen: {ip}:7070
  advertise: {ip}:7070
  tokenFile: {peer_token}
  endpointSlices:
    service: peers
    namespace: {name}
    apiServer: {server}
    caFile: {ca}
    tokenFile: {token}
    refresh: 500ms
",
                peer_token = peer_token.display(),
                ca = ca.display(),
                token = token.display(),
            ),
        )
    };
    let mut procs: Vec<ProxyProcess> = pods.iter().map(|(_, ip)| start(*ip)).collect();
    let want: BTreeSet<String> = pods.iter().map(|(_, ip)| format!("{ip}:7070")).collect();
    for p in &procs {
        ns.eventually(
            "each member to read the three members",
            DEFAULT_TIMEOUT,
            || (members(p).as_ref() == Some(&want)).then_some(()),
        );
    }

    // Every .mod asked of every member at once: one upstream fetch each for the fleet.
    std::thread::scope(|s| {
        for p in &procs {
            let addr = SocketAddr::new(p.ip(), 8080);
            s.spawn(move || {
                for i in 0..MODULES {
                    let path = format!("/example.test/m{i}/@v/v1.0.0.mod");
                    let body = http_get(addr, &path).unwrap_or_else(|| panic!("{path} via {addr}"));
                    assert_eq!(body, format!("module example.test/m{i}\n"));
                }
            });
        }
    });
    for (path, _) in &routes {
        assert_eq!(up.hits(path), 1, "{path}: {:?}", up.all_hits());
    }

    // A member leaves (its endpoint goes from the slices): the others drop it.
    ns.kubectl(&["delete", "endpointslice", &pods[0].0]);
    procs.remove(0).kill();
    let want: BTreeSet<String> = pods[1..]
        .iter()
        .map(|(_, ip)| format!("{ip}:7070"))
        .collect();
    for p in &procs {
        ns.eventually(
            "the members to drop the one that left",
            DEFAULT_TIMEOUT,
            || (members(p).as_ref() == Some(&want)).then_some(()),
        );
    }

    // RBAC taken away: the members keep their last membership and say why.
    ns.kubectl(&["delete", "rolebinding", "member-reads-peers"]);
    for p in &procs {
        let status: Value = ns.eventually(
            "the members to report the refused read",
            DEFAULT_TIMEOUT,
            || {
                let s: Value = serde_json::from_str(&p.admin_get("/status")?).ok()?;
                s["peers"]["lastError"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("endpointslices"))
                    .then_some(s)
            },
        );
        assert_eq!(
            status["peers"]["members"].as_array().unwrap().len(),
            2,
            "{status}"
        );
    }
}
