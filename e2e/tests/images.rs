//! The container images, run for real with podman (runc) on loopback: built by
//! `hack/images.sh build` from the Dockerfile (`hack/test.sh images` builds them, then runs
//! these tests; a missing image fails with that hint).
//!
//! - the proxy image serves a real module graph (from the Go module proxy in `go env GOPROXY`)
//!   to the real go command, as uid 65532 with a read-only root, and serves it again from its
//!   cache volume alone;
//! - the operator image reconciles `examples/small-cache.yaml` to Ready on the local cluster,
//!   and serves the injection webhook (on by default in the chart) with the CA and
//!   certificate it made itself, called by the API server for a new Pod;
//! - a fleet member's pod spec, as the operator rendered it on the API server, run the way a
//!   kubelet would (e2e/src/pod.rs): ready on its probes, and a real download through it;
//! - a peer-fill member's pod spec, run the same way (downward API, service account token),
//!   reads its fleet's EndpointSlices from the API server with the operator's Role;
//! - two such members' pods on one link (a veth pair, as on a node's pod network) find each
//!   other in the membership and fetch each artifact once, asking each other on the peer port;
//! - a member with `privateModules` and credential Secrets, run the same way, fetches private
//!   modules from real Git servers (smart HTTP with Basic auth, sshd with a key) with the git,
//!   ssh and sh of the proxy image, as the image's user with its read-only root, and asks its
//!   upstream with the token of another Secret.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modfleet_e2e::images::{
    Container, GoEnv, ProcessFacts, files_ending, image, machine_goproxy, owners, podman_ok,
};
use modfleet_e2e::injection::{self, WebhookConfiguration};
use modfleet_e2e::netns::{Forwarder, link};
use modfleet_e2e::operator::install_crd;
use modfleet_e2e::pod::{KubeletPod, normalize_image};
use modfleet_e2e::proxy::http_get;
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT, Namespace, condition};
use modfleet_testkit::gitserver::{BasicAuth, Change, GitHttpServer, RepoRoot, Sshd};
use modfleet_testkit::upstream::{Auth, Reply, Upstream};
use modfleet_testkit::workspace::closed_port;
use modfleet_testkit::workspace::{free_port, workspace_root};
use serde_json::Value;

/// The uid and gid the images run as (the Dockerfile's USER, the operator's RUN_AS).
const NONROOT: u32 = 65532;

/// The host's CA bundle, mounted over the image's: this machine reaches its Go module proxy
/// through a TLS-intercepting gateway whose CA only the host trusts (a user behind a private
/// CA does the same).
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A module that needs a real graph: golang.org/x/text and cobra with their dependencies.
fn write_module(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("go.mod"),
        "module example.test/images\n\ngo 1.22\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("main.go"),
        r#"package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

func main() {
	_ = &cobra.Command{Use: "x"}
	fmt.Println(cases.Title(language.English).String("modfleet"))
}
"#,
    )
    .unwrap();
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("modfleet-e2e-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Polls `/readyz` on the container's loopback `port` (the proxy's admin port, the operator's
/// metrics port) until it answers 200, panicking with the container's log.
fn wait_readyz(c: &Container, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(([127, 0, 0, 1], port).into(), "/readyz").is_none() {
        c.assert_running();
        assert!(
            Instant::now() < deadline,
            "/readyz on 127.0.0.1:{port} did not answer within 60s:\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The proxy image on the host's network with the options a locked-down pod would have
/// (read-only root, no capabilities, no privilege escalation), its cache on `volume`.
/// Returns the container and its GOPROXY URL.
fn proxy_container(volume: &str, upstream: &str) -> (Container, String, u16) {
    let (http, admin) = (free_port(), free_port());
    let c = Container::run(&[
        String::from("--pull=never"),
        "--network=host".into(),
        "--read-only".into(),
        "--read-only-tmpfs=false".into(),
        "--cap-drop=all".into(),
        "--security-opt=no-new-privileges".into(),
        format!("--volume={volume}:/var/cache/modfleet"),
        format!("--volume={HOST_CA_BUNDLE}:/etc/ssl/certs/ca-certificates.crt:ro"),
        image("proxy"),
        format!("--listen=127.0.0.1:{http}"),
        format!("--admin-listen=127.0.0.1:{admin}"),
        "--cache-dir=/var/cache/modfleet".into(),
        format!("--upstream={upstream}"),
        "--log-format=json".into(),
    ]);
    wait_readyz(&c, admin);
    (c, format!("http://127.0.0.1:{http}"), admin)
}

/// A named podman volume, removed on drop.
struct Volume(String);

impl Volume {
    fn create() -> Volume {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("modfleet-e2e-cache-{}-{n}", std::process::id());
        let _ = modfleet_e2e::images::try_podman(&["volume", "rm", "-f", &name]);
        podman_ok(&["volume", "create", &name]);
        Volume(name)
    }

    fn mountpoint(&self) -> PathBuf {
        PathBuf::from(
            podman_ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", &self.0]).trim(),
        )
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = modfleet_e2e::images::try_podman(&["volume", "rm", "-f", &self.0]);
    }
}

#[test]
fn proxy_image_serves_a_real_module_graph_from_its_cache_volume() {
    let img = image("proxy");
    // The image itself: the numeric non-root user, the entrypoint, one binary and no shell.
    let cfg = podman_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .Config.Entrypoint}}",
        &img,
    ]);
    assert_eq!(
        cfg.trim(),
        format!(r#"{NONROOT}:{NONROOT} ["/usr/local/bin/modfleet-proxy"]"#)
    );

    let upstream = machine_goproxy();
    let volume = Volume::create();
    let (proxy, url, _admin) = proxy_container(&volume.0, &upstream);
    // What the kernel says about the running proxy: no `--user` was given, so this is the
    // image's own USER.
    let facts = ProcessFacts::of(proxy.pid());
    assert!(facts.uids.iter().all(|u| *u == NONROOT), "{facts:?}");
    assert!(facts.gids.iter().all(|g| *g == NONROOT), "{facts:?}");
    assert!(
        facts.root_read_only,
        "root file system is writable: {facts:?}"
    );
    assert_eq!(facts.cap_eff, 0, "{facts:?}");
    assert!(facts.no_new_privs, "{facts:?}");

    // The real go command, checksums verified through the proxy's /sumdb/.
    let module = temp_dir("images-module");
    write_module(&module);
    let go = GoEnv::new("images");
    go.run(&module, &url, &["mod", "tidy"]);
    go.run(&module, &url, &["mod", "download", "all"]);
    let verified = go.run(&module, &url, &["mod", "verify"]);
    assert!(verified.contains("all modules verified"), "{verified}");
    go.run(&module, &url, &["build", "-o", "images-app", "."]);
    let app = std::process::Command::new(module.join("images-app"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&app.stdout), "Modfleet\n");

    // Everything the proxy stored is on the volume, written by 65532.
    let cache = volume.mountpoint();
    let zips = files_ending(&cache.join("download"), ".zip");
    assert!(
        zips.len() >= 5,
        "only {} zips in {}",
        zips.len(),
        cache.display()
    );
    assert!(
        zips.iter()
            .any(|z| z.to_string_lossy().contains("spf13/cobra/@v/")),
        "{zips:?}"
    );
    let stored = owners(&cache.join("download"));
    assert_eq!(
        stored,
        std::collections::BTreeSet::from([(NONROOT, NONROOT)]),
        "owners of the cache files"
    );
    assert_eq!(proxy.stop(30), 0, "SIGTERM: clean exit:\n{}", proxy.logs());

    // A new container on the same volume with a dead upstream: the whole graph comes from
    // the cache volume (go.sum holds the checksums, so no lookup is needed).
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let (_again, url, _) = proxy_container(&volume.0, &dead);
    let go2 = GoEnv::new("images-cached");
    go2.run(&module, &url, &["mod", "download", "all"]);
    let verified = go2.run(&module, &url, &["mod", "verify"]);
    assert!(verified.contains("all modules verified"), "{verified}");
    let _ = std::fs::remove_dir_all(&module);
}

/// The admin kubeconfig with its certificates inline, readable by the container's user.
fn flat_kubeconfig(cluster: &Cluster, dir: &Path) -> PathBuf {
    let text = cluster.kubectl(&["config", "view", "--flatten", "--minify"]);
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The operator image watching `ns`, without `--proxy-image` (its own default must name the
/// image `hack/images.sh build` made); on the host's network (the API server listens on
/// loopback), locked down like the chart's pod.
fn operator_container(ns: &Namespace, dir: &Path) -> Container {
    operator_container_with(ns, dir, &[])
}

/// The operator image watching `ns`, with `extra` flags.
fn operator_container_with(ns: &Namespace, dir: &Path, extra: &[String]) -> Container {
    let kubeconfig = flat_kubeconfig(ns.cluster(), dir);
    let port = free_port();
    let c = Container::run(
        &[
            "--pull=never".into(),
            "--network=host".into(),
            "--read-only".into(),
            "--read-only-tmpfs=false".into(),
            "--cap-drop=all".into(),
            "--security-opt=no-new-privileges".into(),
            format!(
                "--volume={}:/etc/modfleet/kubeconfig:ro",
                kubeconfig.display()
            ),
            "--env=KUBECONFIG=/etc/modfleet/kubeconfig".into(),
            format!("--env=POD_NAME=images-{}", ns.name()),
            // Members' /status is polled on their (loopback) pod IPs only.
            "--env=MODFLEET_OPERATOR_HEALTH_POLL_NETWORKS=127.0.0.0/8".into(),
            image("operator"),
            format!("--watch-namespaces={}", ns.name()),
            format!("--metrics-listen=127.0.0.1:{port}"),
            "--log-format=json".into(),
        ]
        .into_iter()
        .chain(extra.iter().cloned())
        .collect::<Vec<_>>(),
    );
    wait_readyz(&c, port);
    let facts = ProcessFacts::of(c.pid());
    assert!(facts.uids.iter().all(|u| *u == NONROOT), "{facts:?}");
    assert!(facts.root_read_only, "{facts:?}");
    c
}

/// `modfleet/modfleet-proxy:<appVersion>`: the chart's default `--proxy-image`, and the
/// operator's own.
fn chart_proxy_image() -> String {
    let chart = std::fs::read_to_string(workspace_root().join("charts/modfleet/Chart.yaml"))
        .expect("Chart.yaml");
    let version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .expect("appVersion")
        .trim()
        .trim_matches('"')
        .to_owned();
    format!("modfleet/modfleet-proxy:{version}")
}

/// examples/small-cache.yaml as JSON, its upstream replaced by `upstream` if given.
fn small_cache(cluster: &Cluster, upstream: Option<&str>) -> Value {
    let text = std::fs::read_to_string(workspace_root().join("examples/small-cache.yaml")).unwrap();
    let mut obj: Value = serde_json::from_str(&cluster.kubectl_stdin(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        &text,
    ))
    .unwrap();
    // `kubectl create --dry-run=client` fills in the default namespace; the test's is wanted.
    obj["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("namespace");
    if let Some(u) = upstream {
        obj["spec"]["upstreams"] = serde_json::json!([{ "url": u }]);
    }
    obj
}

fn wait_fleet_ready(ns: &Namespace, op: &Container) -> Value {
    let timeout = DEFAULT_TIMEOUT;
    ns.eventually("gmp/gomod Ready=True", timeout, || {
        op.assert_running();
        let gmp = ns.get_json(&["gmp", "gomod"]);
        (condition(&gmp, "Ready")["status"] == "True").then_some(gmp)
    })
}

#[test]
fn operator_image_reconciles_an_example_to_ready() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("images-operator");
    let dir = temp_dir(&format!("operator-{}", ns.name()));
    let op = operator_container(&ns, &dir);
    ns.apply(&small_cache(&cluster, None).to_string());
    let gmp = wait_fleet_ready(&ns, &op);
    assert_eq!(gmp["status"]["readyMembers"], 1, "{gmp}");
    // The member runs the operator's default proxy image (no --proxy-image was given): the
    // chart's default, the one `hack/images.sh build` made.
    let dep = ns.get_json(&["deployment", "gomod-0"]);
    let member_image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(member_image, chart_proxy_image());
    assert_eq!(normalize_image(&member_image), image("proxy"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The chart turns the injection webhook on by default, so this is the operator every install
/// runs: from its image (nonroot, read-only root) it makes its own CA and serving certificate,
/// fills the webhook configuration's caBundle, and the API server's calls to it set a new
/// Pod's GOPROXY to the fleet.
#[test]
fn operator_image_serves_the_injection_webhook_with_its_own_certificates() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let scope = format!("images-{}-{}", std::process::id(), free_port());
    let fleets = cluster.namespace("images-inj-fleets");
    let home = cluster.namespace("images-inj-operator");
    let builds =
        injection::scoped_namespace(&cluster, "images-inj-builds", &scope, &["team=builds"]);
    let port = free_port();
    let mwc = WebhookConfiguration::create(&cluster, &format!("e2e-{scope}"), port, &scope);
    let dir = temp_dir(&format!("operator-{}", fleets.name()));
    let _op = operator_container_with(
        &fleets,
        &dir,
        &injection::operator_args(&fleets, &home, port, &mwc.name),
    );
    fleets.apply(
        "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: gomod\nspec:\n  upstreams: [{url: 'https://goproxy.example.com'}]\n  injection:\n    namespaceSelector: {matchLabels: {team: builds}}\n",
    );
    fleets.eventually("the operator to fill the caBundle", DEFAULT_TIMEOUT, || {
        mwc.ca_bundle().contains("BEGIN CERTIFICATE").then_some(())
    });
    assert!(
        home.get_json(&["secret", "webhook-tls"])["data"]["ca.crt"].is_string(),
        "the operator keeps its CA in its own namespace's Secret"
    );
    injection::await_injection(&builds);
    builds.apply(&injection::pod(
        "build",
        serde_json::json!({}),
        serde_json::json!([injection::go_container("go")]),
    ));
    let pod = builds.get_json(&["pod", "build"]);
    assert_eq!(
        injection::env(&pod, 0)["GOPROXY"],
        format!("http://gomod.{}.svc:80", fleets.name()),
        "{pod}"
    );
    assert!(
        pod["metadata"]["annotations"][injection::ANNOTATION].is_string(),
        "{pod}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_members_pod_spec_runs_as_a_kubelet_would() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("images-pod");
    let dir = temp_dir(&format!("pod-{}", ns.name()));

    // The member's upstream: the proxy image on the host, in front of the machine's Go module
    // proxy; inside the pod's network namespace it is 127.0.0.1:<up>, forwarded to it.
    let volume = Volume::create();
    let (_upstream_proxy, upstream_url, _) = proxy_container(&volume.0, &machine_goproxy());
    let upstream_addr: std::net::SocketAddr =
        upstream_url.trim_start_matches("http://").parse().unwrap();
    let up = free_port();

    // The operator (its image) renders the member; kwok marks it Ready without running it.
    let op = operator_container(&ns, &dir);
    ns.apply(&small_cache(&cluster, Some(&format!("http://127.0.0.1:{up}"))).to_string());
    wait_fleet_ready(&ns, &op);
    // Now run it for real.
    let pod = KubeletPod::of_deployment(&ns, "gomod-0", &dir.join("pv"));
    let _to_upstream = Forwarder::out_of(&pod.ns, up, upstream_addr);
    let ready_after = pod.wait_ready();
    let liveness = pod.liveness.clone().expect("a liveness probe");
    assert!(pod.probe_once(&liveness), "liveness probe fails");
    println!("member ready on its probe after {ready_after:?}");

    // The securityContext, as the kernel sees the running process.
    let facts = ProcessFacts::of(pod.container.pid());
    assert_eq!(pod.user, (NONROOT, NONROOT));
    assert!(facts.uids.iter().all(|u| *u == NONROOT), "{facts:?}");
    assert!(facts.gids.iter().all(|g| *g == NONROOT), "{facts:?}");
    assert!(facts.groups.contains(&NONROOT), "fsGroup: {facts:?}");
    assert!(facts.root_read_only, "{facts:?}");
    assert_eq!((facts.cap_eff, facts.cap_bnd), (0, 0), "{facts:?}");
    assert!(facts.no_new_privs, "{facts:?}");
    assert_eq!(facts.seccomp, 2, "RuntimeDefault seccomp filter: {facts:?}");

    // A real download through the member's GOPROXY port.
    let http_port = pod.ports["http"];
    let into_pod = Forwarder::into(&pod.ns, http_port);
    let module = dir.join("module");
    write_module(&module);
    let go = GoEnv::new("images-pod");
    go.run(&module, &into_pod.url(), &["mod", "tidy"]);
    go.run(&module, &into_pod.url(), &["mod", "download", "all"]);
    let verified = go.run(&module, &into_pod.url(), &["mod", "verify"]);
    assert!(verified.contains("all modules verified"), "{verified}");

    // It stored what it served on the claim's volume, as 65532 (group: the fsGroup).
    let cache = &pod.volumes["cache"];
    let zips = files_ending(&cache.join("download"), ".zip");
    assert!(
        zips.len() >= 5,
        "only {} zips in {}",
        zips.len(),
        cache.display()
    );
    let stored = owners(&cache.join("download"));
    assert_eq!(
        stored,
        std::collections::BTreeSet::from([(NONROOT, NONROOT)]),
        "owners of the cache files"
    );
    // SIGTERM within the pod's grace period: a clean exit.
    assert_eq!(pod.container.stop(30), 0, "{}", pod.container.logs());
}

/// A PerMember fleet of two from `examples/small-cache.yaml` with peer fill by default (its
/// `fleet` settings removed), its upstream at 127.0.0.1:`up` in the members' namespaces; the
/// operator that made it Ready.
fn peer_fleet(ns: &Namespace, dir: &Path, up: u16) -> Container {
    let op = operator_container(ns, dir);
    let mut fleet = small_cache(ns.cluster(), Some(&format!("http://127.0.0.1:{up}")));
    fleet["spec"]["replicas"] = 2.into();
    fleet["spec"].as_object_mut().unwrap().remove("fleet");
    ns.apply(&fleet.to_string());
    let gmp = wait_fleet_ready(ns, &op);
    assert_eq!(
        gmp["spec"]["fleet"]["peerFill"],
        Value::Null,
        "peer fill by default"
    );
    op
}

/// The fleet's membership: an EndpointSlice of `gomod-peers` with `(address, ready)`
/// endpoints. The API server refuses loopback addresses in EndpointSlices, so this cluster's
/// controller cannot list kwok's (loopback) pods: the tests write the slice, with TEST-NET-1
/// addresses.
fn peers_slice(ns: &Namespace, endpoints: &[(std::net::Ipv4Addr, bool)]) {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready)| {
            serde_json::json!({"addresses": [ip.to_string()], "conditions": {"ready": ready}})
        })
        .collect();
    ns.apply(
        &serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "gomod-peers-e2e",
                         "labels": {"kubernetes.io/service-name": "gomod-peers"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}, {"name": "peer", "port": 7070}],
            "endpoints": endpoints,
        })
        .to_string(),
    );
}

/// A peer-fill member's pod spec (peer fill is on by default for a PerMember fleet of two), run
/// as a kubelet would: `POD_IP` from the downward API expanded into `MODFLEET_PEER_ADVERTISE`,
/// the peer token Secret mounted, the service account token mounted and the API server at
/// `KUBERNETES_SERVICE_HOST`: the member reads its fleet's EndpointSlices with the Role the
/// operator made, as the image's user with its read-only root.
#[test]
fn a_peer_fill_members_pod_spec_reads_its_membership_in_its_pod() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("images-peers");
    let dir = temp_dir(&format!("peers-{}", ns.name()));
    let live = Upstream::builder()
        .route("*", Reply::Body(Vec::new()))
        .start();
    let live_addr = live.addr();
    let up = free_port();

    let _op = peer_fleet(&ns, &dir, up);
    // Nothing connects to these members: no artifact is asked for.
    peers_slice(
        &ns,
        &[
            ([192, 0, 2, 51].into(), true),
            ([192, 0, 2, 52].into(), false),
        ],
    );

    let pod = KubeletPod::of_deployment(&ns, "gomod-0", &dir.join("pv"));
    let _to_upstream = Forwarder::out_of(&pod.ns, up, live_addr);
    pod.wait_ready();
    let admin = Forwarder::into(&pod.ns, pod.ports["admin"]);
    let status = ns.eventually("the member read its membership", DEFAULT_TIMEOUT, || {
        pod.container.assert_running();
        let s: Value = serde_json::from_str(&http_get(admin.addr, "/status")?).ok()?;
        (s["peers"]["refreshedUnix"].as_u64()? > 0).then_some(s)
    });
    let peers = &status["peers"];
    assert!(peers["lastError"].is_null(), "{status}");
    let members: Vec<&str> = peers["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for m in ["192.0.2.51:7070", "192.0.2.52:7070"] {
        assert!(members.contains(&m), "{m} not among {members:?}");
    }
    // The Pod's IP (the downward API), expanded by the kubelet into the advertised address.
    let pod_ip =
        ns.get_json(&["pods", "-l", "modfleet.dev/member=0"])["items"][0]["status"]["podIP"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(peers["advertise"], format!("{pod_ip}:7070"), "{status}");
    // The peer port, inside the pod's namespace: the fleet's token or nothing.
    let peer_port = pod.ports["peer"];
    let refused = pod.ns.http_status(
        peer_port,
        "/example.com/m/@v/v1.0.0.info",
        Duration::from_secs(5),
    );
    assert_eq!(refused, Some(401));
    assert_eq!(pod.container.stop(30), 0, "{}", pod.container.logs());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two peer-fill members' pod specs run as a kubelet would, on one link as two pods on a
/// node's pod network (a veth pair between their namespaces, TEST-NET-1 pod IPs, which the
/// downward API hands them in place of kwok's loopback ones): each reads the fleet's
/// membership from the API server, finds itself in it by its advertised `$(POD_IP):7070`,
/// and asks the other, with the token the operator made, for the artifacts the other owns.
/// Each artifact, asked of both members, costs the upstream one request.
#[test]
fn two_members_pods_fetch_each_artifact_once_through_each_other() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("images-peer-pair");
    let dir = temp_dir(&format!("peer-pair-{}", ns.name()));
    let paths: Vec<String> = (0..8)
        .map(|i| format!("/example.com/pair{i}/@v/v1.0.0.info"))
        .collect();
    let mut upstream = Upstream::builder().route("*", Reply::Status(404, "not here"));
    for p in &paths {
        let info = r#"{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}"#;
        upstream = upstream.route(p, Reply::Body(info.into()));
    }
    let upstream = upstream.start();
    let upstream_addr = upstream.addr();
    let up = free_port();

    let _op = peer_fleet(&ns, &dir, up);
    let ips: [std::net::Ipv4Addr; 2] = [[192, 0, 2, 61].into(), [192, 0, 2, 62].into()];
    // The membership, as the EndpointSlice controller would write it for these pod IPs.
    peers_slice(&ns, &[(ips[0], true), (ips[1], true)]);

    let pods: Vec<KubeletPod> = (0..2)
        .map(|i| {
            KubeletPod::of_deployment_at(
                &ns,
                &format!("gomod-{i}"),
                &dir.join("pv"),
                Some(ips[i].into()),
            )
        })
        .collect();
    link(&pods[0].ns, ips[0], &pods[1].ns, ips[1]);
    let _to_upstream: Vec<Forwarder> = pods
        .iter()
        .map(|p| Forwarder::out_of(&p.ns, up, upstream_addr))
        .collect();
    let clients: Vec<Forwarder> = pods
        .iter()
        .map(|p| {
            p.wait_ready();
            Forwarder::into(&p.ns, p.ports["http"])
        })
        .collect();
    let admins: Vec<Forwarder> = pods
        .iter()
        .map(|p| Forwarder::into(&p.ns, p.ports["admin"]))
        .collect();
    let status = |i: usize| -> Option<Value> {
        serde_json::from_str(&http_get(admins[i].addr, "/status")?).ok()
    };
    for (i, pod) in pods.iter().enumerate() {
        let s = ns.eventually(&format!("member {i} to see both"), DEFAULT_TIMEOUT, || {
            pod.container.assert_running();
            let s = status(i)?;
            (s["peers"]["members"].as_array()?.len() == 2).then_some(s)
        });
        assert_eq!(s["peers"]["advertise"], format!("{}:7070", ips[i]), "{s}");
    }

    for path in &paths {
        for (i, client) in clients.iter().enumerate() {
            let body = http_get(client.addr, path)
                .unwrap_or_else(|| panic!("{path} through member {i}: not a 200"));
            assert!(body.contains("v1.0.0"), "{path} through member {i}: {body}");
        }
        assert_eq!(upstream.hits(path), 1, "{:?}", upstream.all_hits());
    }
    let (s0, s1) = (status(0).unwrap(), status(1).unwrap());
    let sum = |key: &str| {
        s0["peers"].pointer(key).and_then(Value::as_u64).unwrap()
            + s1["peers"].pointer(key).and_then(Value::as_u64).unwrap()
    };
    // Each artifact: its owner fetched it, the other member asked the owner once.
    assert_eq!(sum("/asked/hit"), paths.len() as u64, "{s0}\n{s1}");
    assert_eq!(sum("/served"), paths.len() as u64, "{s0}\n{s1}");
    assert_eq!(sum("/asked/fallback"), 0, "{s0}\n{s1}");
    for (i, s) in [&s0, &s1].into_iter().enumerate() {
        assert!(
            s["peers"]["asked"]["hit"].as_u64().unwrap() > 0,
            "member {i} asked the other for nothing: {s}"
        );
    }
    for pod in &pods {
        assert_eq!(pod.container.stop(30), 0, "{}", pod.container.logs());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The private modules' path prefix: `HOST/NAME.git` (the `.git` qualifier) names repository
/// NAME; the fleet's `repository` entries say where each is.
/// A Secret of `kind` holding `data` (its stringData), as JSON for `kubectl apply`.
fn secret(name: &str, kind: &str, data: Value) -> String {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": kind,
        "metadata": {"name": name}, "stringData": data,
    })
    .to_string()
}

const PRIVATE_HOST: &str = "git.modfleet.test/private";
const GIT_PASSWORD: &str = "pod-Pa55word-9f2c";
const UPSTREAM_TOKEN: &str = "pod-upstream-t0ken-51ad";

/// A private module repository `name` with one tagged version whose package says `greeting`.
fn private_repo(root: &RepoRoot, name: &str, greeting: &str) {
    let r = root.create(name);
    let c = r.commit(
        "v1.0.0",
        1_700_000_000,
        &[
            (
                "go.mod",
                Change::text(&format!("module {PRIVATE_HOST}/{name}.git\n\ngo 1.21\n")),
            ),
            (
                &format!("{name}.go"),
                Change::text(&format!(
                    "package {name}\n\nconst Greeting = \"{greeting}\"\n"
                )),
            ),
        ],
    );
    r.tag("v1.0.0", &c);
}

#[test]
fn a_member_fetches_private_modules_from_git_in_its_pod() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("images-private");
    let dir = temp_dir(&format!("private-{}", ns.name()));

    // Two real Git servers on the host, each reached from inside the pod at the same
    // 127.0.0.1 port (forwarded), so URLs and known_hosts are the same on both sides.
    let root = RepoRoot::new();
    private_repo(&root, "lib", "hello over https");
    private_repo(&root, "tool", "hello over ssh");
    let http = GitHttpServer::start(
        root.path(),
        Some(BasicAuth {
            user: "ci".into(),
            password: GIT_PASSWORD.into(),
        }),
    );
    let sshd = Sshd::start();
    let ssh_key = std::fs::read_to_string(sshd.client_key()).unwrap();
    let known_hosts = std::fs::read_to_string(sshd.known_hosts()).unwrap();

    let op = operator_container(&ns, &dir);
    ns.apply(&secret(
        "git-basic",
        "kubernetes.io/basic-auth",
        serde_json::json!({"username": "ci", "password": GIT_PASSWORD}),
    ));
    ns.apply(&secret(
        "git-ssh",
        "kubernetes.io/ssh-auth",
        serde_json::json!({"ssh-privatekey": ssh_key, "known_hosts": known_hosts}),
    ));
    // An upstream that wants a Bearer token, from a Secret of its own.
    let upstream = Upstream::builder()
        .route("*", Reply::Body(b"v1.0.0\n".to_vec()))
        .auth(Auth::bearer(UPSTREAM_TOKEN))
        .start();
    ns.apply(&secret(
        "upstream-token",
        "Opaque",
        serde_json::json!({"token": UPSTREAM_TOKEN}),
    ));
    let mut fleet = small_cache(&cluster, None);
    fleet["spec"]["upstreams"] = serde_json::json!([{
        "url": format!("http://127.0.0.1:{}", upstream.addr().port()),
        "insecure": true,
        "credentialsSecretRef": {"name": "upstream-token"},
    }]);
    fleet["spec"]["privateModules"] = serde_json::json!([
        {
            "pattern": format!("{PRIVATE_HOST}/lib.git"),
            "repository": {"url": http.url("lib"), "root": format!("{PRIVATE_HOST}/lib.git")},
            "insecure": true,
            "credentialsSecretRef": {"name": "git-basic"},
        },
        {
            "pattern": format!("{PRIVATE_HOST}/tool.git"),
            "repository": {
                "url": sshd.url(&root.path().join("tool.git")),
                "root": format!("{PRIVATE_HOST}/tool.git"),
            },
            "credentialsSecretRef": {"name": "git-ssh"},
        },
    ]);
    ns.apply(&fleet.to_string());
    wait_fleet_ready(&ns, &op);

    // The member as the operator rendered it, run for real: Secrets mounted beside the
    // ConfigMap's read-only mount, as runc mounts them.
    let pod = KubeletPod::of_deployment(&ns, "gomod-0", &dir.join("pv"));
    let _to_http = Forwarder::out_of(&pod.ns, http.addr().port(), http.addr());
    let _to_upstream = Forwarder::out_of(&pod.ns, upstream.addr().port(), upstream.addr());
    let _to_ssh = Forwarder::out_of(&pod.ns, sshd.port(), ([127, 0, 0, 1], sshd.port()).into());
    pod.wait_ready();
    for (file, mode) in [
        ("private-0/password", 0o440),
        ("private-1/ssh-privatekey", 0o440),
    ] {
        let (volume, name) = file.split_once('/').unwrap();
        let meta = std::fs::metadata(pod.volumes[volume].join(name)).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (meta.mode() & 0o777, meta.gid()),
            (mode, NONROOT),
            "{file}: owner-only plus the fsGroup's read"
        );
    }

    // The go command, with the member as its only GOPROXY, builds a program importing both.
    let module = dir.join("module");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(
        module.join("go.mod"),
        format!(
            "module example.test/private\n\ngo 1.21\n\nrequire (\n\t{PRIVATE_HOST}/lib.git v1.0.0\n\t{PRIVATE_HOST}/tool.git v1.0.0\n)\n"
        ),
    )
    .unwrap();
    std::fs::write(
        module.join("main.go"),
        format!(
            "package main\n\nimport (\n\t\"fmt\"\n\n\t\"{PRIVATE_HOST}/lib.git\"\n\t\"{PRIVATE_HOST}/tool.git\"\n)\n\nfunc main() {{ fmt.Println(lib.Greeting + \", \" + tool.Greeting) }}\n"
        ),
    )
    .unwrap();
    let into_pod = Forwarder::into(&pod.ns, pod.ports["http"]);
    let go = GoEnv::new("images-private");
    let out = go
        .command(&module, &into_pod.url(), &["run", "."])
        // Private: no checksum database lookup (the member never asks one for these either).
        .env("GONOSUMDB", PRIVATE_HOST)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go run through the member failed:\n{}\nmember log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        pod.container.logs()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hello over https, hello over ssh"
    );

    // Through the Git servers, with the credentials: HTTP requests that passed Basic auth,
    // and a mirror of each repository on the member's cache volume.
    assert!(
        http.requests().iter().any(|r| r.status == 200),
        "{:?}",
        http.requests()
    );
    // A public path goes to the upstream, with the token read from its Secret's mount.
    let list = "/example.com/public/@v/list";
    assert_eq!(
        http_get(into_pod.addr, list).as_deref(),
        Some("v1.0.0\n"),
        "{}",
        pod.container.logs()
    );
    assert_eq!(
        upstream.authorizations(list),
        [Some(format!("Bearer {UPSTREAM_TOKEN}"))]
    );
    let mirrors = std::fs::read_dir(pod.volumes["cache"].join("vcs"))
        .expect("the member keeps its Git mirrors on the cache volume")
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert!(mirrors >= 2, "{mirrors} mirrors for two repositories");
    assert_eq!(pod.container.stop(30), 0, "{}", pod.container.logs());
}

/// A member with `spec.tls` and `spec.access`, as the operator renders it, run for real: the
/// TLS and tokens Secrets mounted beside the config, HTTPS on its client port, and the go
/// command (trusting the test CA, credentials from a `.netrc`) let in with a token and refused
/// (401, its reason shown) without one. The admin port's `/status` wants an admin.
#[test]
fn a_member_serves_https_to_authorized_clients_in_its_pod() {
    use modfleet_contract::access::{TokenLine, generate_token};
    use modfleet_testkit::tls::TestCa;

    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("images-access");
    let dir = temp_dir(&format!("access-{}", ns.name()));
    let op = operator_container(&ns, &dir);

    let ca = TestCa::new();
    let (cert, key) = ca.server_files();
    let token = generate_token();
    ns.apply(&secret(
        "member-tls",
        "kubernetes.io/tls",
        serde_json::json!({
            "tls.crt": std::fs::read_to_string(&cert).unwrap(),
            "tls.key": std::fs::read_to_string(&key).unwrap(),
        }),
    ));
    ns.apply(&secret(
        "ci-tokens",
        "Opaque",
        serde_json::json!({"tokens": format!("{}\n", TokenLine::for_token("ci", &token, &[]))}),
    ));
    let at = "/example.com/public/@v/";
    let upstream = Upstream::builder()
        .route(&format!("{at}list"), Reply::Body(b"v1.0.0\n".to_vec()))
        .route(
            &format!("{at}v1.0.0.info"),
            Reply::Body(br#"{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}"#.to_vec()),
        )
        .route(
            &format!("{at}v1.0.0.mod"),
            Reply::Body(b"module example.com/public\n".to_vec()),
        )
        .start();
    let mut fleet = small_cache(
        &cluster,
        Some(&format!("http://127.0.0.1:{}", upstream.addr().port())),
    );
    // The fake upstream's module is in no checksum database.
    fleet["spec"]["noSumPatterns"] = serde_json::json!(["example.com/public"]);
    fleet["spec"]["tls"] = serde_json::json!({"secretName": "member-tls"});
    fleet["spec"]["access"] = serde_json::json!({
        "tokenSecretRefs": [{"name": "ci-tokens"}],
        "rules": [{"modules": ["*"], "allow": ["authenticated"]}],
    });
    ns.apply(&fleet.to_string());
    let gmp = wait_fleet_ready(&ns, &op);
    assert!(
        gmp["status"]["endpoint"]
            .as_str()
            .is_some_and(|e| e.starts_with("https://")),
        "{gmp}"
    );

    let pod = KubeletPod::of_deployment(&ns, "gomod-0", &dir.join("pv"));
    let _to_upstream = Forwarder::out_of(&pod.ns, upstream.addr().port(), upstream.addr());
    pod.wait_ready();
    let into_pod = Forwarder::into(&pod.ns, pod.ports["https"]);
    let goproxy = format!("https://{}", into_pod.addr);
    let admin = Forwarder::into(&pod.ns, pod.ports["admin"]);
    assert!(
        http_get(admin.addr, "/readyz").is_some(),
        "the admin port's probes stay open"
    );
    let status = http_get(admin.addr, "/status");
    assert!(
        status.is_none(),
        "/status answered a client without credentials: {status:?}"
    );

    let module = dir.join("access-module");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(
        module.join("go.mod"),
        "module example.test/access\n\ngo 1.21\n",
    )
    .unwrap();
    let netrc = dir.join("netrc");
    let go = GoEnv::new("images-access");
    let list = |netrc_text: &str| {
        std::fs::write(&netrc, netrc_text).unwrap();
        go.command(
            &module,
            &goproxy,
            &["list", "-m", "-versions", "example.com/public"],
        )
        .env("SSL_CERT_FILE", ca.ca_pem())
        .env("NETRC", &netrc)
        .env("GOAUTH", "netrc")
        .env("GONOSUMDB", "example.com/public")
        .output()
        .unwrap()
    };
    let machine = format!("machine {} login ci password ", into_pod.addr);
    let out = list(&format!("{machine}{token}\n"));
    assert!(
        out.status.success(),
        "go list through the member over HTTPS with a token failed:\n{}\nmember log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        pod.container.logs()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "example.com/public v1.0.0"
    );
    let refused = list("");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("401"),
        "without credentials the member must refuse (401): {stderr}"
    );
    assert_eq!(pod.container.stop(30), 0, "{}", pod.container.logs());
}
