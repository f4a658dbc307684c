//! e2e: with `spec.access`, the operator still reads the members' `/status`, as its own
//! identity. A real operator, the local cluster's API server, and for each kwok pod a real
//! `modfleet-proxy` on that pod's IP (`hack/cluster.sh` makes them loopback addresses), started
//! on the `tls` and `access` the operator rendered into the fleet's ConfigMap, with the
//! operator's tokens line from its Secret where the member would mount it (and a test CA's
//! certificate as the TLS Secret's).
//!
//! Needs the proxy that enforces `tls` and `access` (branches tls-serving and client-access).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use modfleet_e2e::fleet_secrets::SecretsEnv;
use modfleet_e2e::operator::FAST_HEALTH_POLLS;
use modfleet_e2e::proxy::{ProxyProcess, member_pods};
use modfleet_e2e::{DEFAULT_TIMEOUT, condition, upstreams};
use modfleet_testkit::tls::TestCa;
use modfleet_testkit::upstream::{Reply, Upstream};

/// The status code of `GET path` on `addr`, with `Authorization: Bearer token` if given.
fn status_code(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// Writes `text` to `path` as a kubelet updates a Secret volume: a new file renamed over.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn the_operator_reads_members_status_with_its_token() {
    let env = SecretsEnv::start_with("access-health", "ah", &FAST_HEALTH_POLLS);
    let ns = &env.ns;

    let live = Upstream::builder()
        .route("*", Reply::Body(Vec::new()))
        .start();
    let live_url = live.url.clone();
    ns.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ah-tls\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: \"-----BEGIN CERTIFICATE-----\"\n  tls.key: \"-----BEGIN PRIVATE KEY-----\"\n",
    );
    ns.apply(&format!(
        "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: ah\nspec:\n  replicas: 2\n  upstreams:\n    - url: {live_url}/\n  cache: {{size: 1Gi}}\n  tls: {{secretName: ah-tls}}\n  access:\n    rules: [{{modules: ['*'], allow: [anonymous]}}]\n    admin: [group:ops]\n"
    ));
    ns.wait("gmp/ah", "condition=Ready", DEFAULT_TIMEOUT);
    let pods = member_pods(ns, "ah");
    assert_eq!(pods.len(), 2, "{pods:?}");

    // What each member would mount: the operator's line, and a certificate for the TLS key
    // files; the rendered `tls` and `access` pointed at them.
    let token = ns.secret_key("ah-operator-token", "token");
    let line = ns.secret_key("ah-operator-token", "tokens");
    let rendered = ns.get_json(&["configmap", "ah-config"])["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml")
        .to_owned();
    let (_, tls_and_access) = rendered.split_once("\ntls:\n").expect(&rendered);
    // Up to peer fill (on by default, rendered last): it needs the fleet's token and the API
    // server's EndpointSlices, which tests/tiers.rs and tests/peer_fill.rs cover.
    let tls_and_access = tls_and_access
        .split_once("\npeerFill:\n")
        .map_or(tls_and_access, |(before, _)| before);
    let ca = TestCa::new();
    let (cert, key) = ca.server_files();
    let dir =
        std::env::temp_dir().join(format!("modfleet-e2e-access-health-{}", std::process::id()));
    let tokens_files: Vec<PathBuf> = (0..pods.len())
        .map(|i| dir.join(format!("member-{i}-operator-tokens")))
        .collect();
    std::fs::create_dir_all(&dir).unwrap();
    let proxies: Vec<ProxyProcess> = pods
        .iter()
        .zip(&tokens_files)
        .map(|((_, ip), tokens)| {
            std::fs::write(tokens, &line).unwrap();
            let extra = format!("tls:\n{tls_and_access}")
                .replace("/etc/modfleet-tls/tls.crt", cert.to_str().unwrap())
                .replace("/etc/modfleet-tls/tls.key", key.to_str().unwrap())
                .replace(
                    "/etc/modfleet-access/operator/tokens",
                    tokens.to_str().unwrap(),
                );
            ProxyProcess::start_with(*ip, &[format!("{live_url}/")], &extra)
        })
        .collect();

    // The members' admin port: /status refuses strangers and answers the operator's token.
    let admin = |ip: IpAddr| SocketAddr::new(ip, 9090);
    assert_eq!(status_code(admin(pods[0].1), "/status", None), Some(401));
    assert_eq!(
        status_code(
            admin(pods[0].1),
            "/status",
            Some("mf_not-the-operators-token-0123456789ab")
        ),
        Some(401)
    );
    assert_eq!(
        status_code(admin(pods[0].1), "/status", Some(&token)),
        Some(200)
    );
    assert_eq!(status_code(admin(pods[0].1), "/readyz", None), Some(200));

    // The operator asks as itself: both members report.
    let want = [(live_url.clone(), 2, 2)];
    let c = ns.eventually(
        "both members report to the operator",
        DEFAULT_TIMEOUT,
        || {
            let g = ns.get_json(&["gmp", "ah"]);
            (upstreams(&g) == want).then(|| condition(&g, "UpstreamsHealthy"))
        },
    );
    assert_eq!(
        (&c["status"], &c["reason"]),
        (&"True".into(), &"AllUpstreamsHealthy".into()),
        "{c}"
    );

    // A member that no longer knows the operator's token (its file rotated to another line)
    // refuses it: not reporting, with the 401 named.
    replace(
        &tokens_files[1],
        "modfleet-operator sha256:5555555555555555555555555555555555555555555555555555555555555555\n",
    );
    let gone = &pods[1].0;
    let c = ns.eventually("member 1 not reporting (401)", DEFAULT_TIMEOUT, || {
        let g = ns.get_json(&["gmp", "ah"]);
        (upstreams(&g) == [(live_url.clone(), 1, 1)]).then(|| condition(&g, "UpstreamsHealthy"))
    });
    let message = c["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "1 of 2 Ready members not reporting: {gone} (/status answered 401"
        )),
        "{message}"
    );
    drop(proxies);
    let _ = std::fs::remove_dir_all(&dir);
    drop(live);
}
