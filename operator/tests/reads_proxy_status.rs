//! The operator reads what a real proxy serves on `/status`: the `modfleet-proxy` binary,
//! started on the config the operator renders for a fleet, with one live upstream and one
//! that refuses connections; its `/status` goes through the operator's own parser and
//! summary (`fleet_health`), as a member's would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modfleet_contract::status::{BreakerState, ProbeState, ProxyStatus};
use modfleet_operator::conditions::Status;
use modfleet_operator::crd::{GoModuleProxy, GoModuleProxySpec};
use modfleet_operator::fleet_health::{self, MemberReport};
use modfleet_operator::resources::{Context, configmap};
use serde_json::json;

/// The `modfleet-proxy` binary: `MODFLEET_PROXY_BIN`, else built by cargo (which reports
/// where it put it, whatever the target directory).
fn proxy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MODFLEET_PROXY_BIN").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["build", "-p", "modfleet-proxy", "--bin", "modfleet-proxy"])
        .arg("--message-format=json")
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run cargo to build modfleet-proxy");
    assert!(out.status.success(), "cargo build -p modfleet-proxy failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "modfleet-proxy")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no modfleet-proxy executable")
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], modfleet_testkit::workspace::free_port()))
}

/// An upstream that answers every request 200 (the health probe's `GET /` included).
fn live_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut head = [0u8; 4096];
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = conn.read(&mut head);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    addr
}

/// The body of a 200 answer to `GET path`, or None.
fn get(addr: SocketAddr, path: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).ok()?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    assert!(!head.contains("chunked"), "a chunked /status: {head}");
    head.starts_with("http/1.1 200")
        .then(|| answer[split + 4..].to_vec())
}

struct Proxy {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_operator_reads_a_real_proxys_status() {
    let live = format!("http://{}", live_upstream());
    let dead = format!("http://{}/", free_addr());
    let spec: GoModuleProxySpec = serde_json::from_value(json!({
        "upstreams": [{"url": live}, {"url": dead, "timeout": "2s"}],
        // Peer fill needs the mounted token and the API server, which a lone process on
        // this machine has not (e2e/tests/tiers.rs covers it in the cluster).
        "fleet": {"peerFill": false},
    }))
    .unwrap();
    let mut gmp = GoModuleProxy::new("gomod", spec);
    gmp.metadata.namespace = Some("ns".into());
    let rendered = configmap::build(&gmp, &Context::default());
    // The member's config as the operator renders it, with quicker health probes so that the
    // dead upstream is found out within a second (a fleet takes the default 10s).
    let config = format!(
        "{}healthCheck: {{interval: 200ms, timeout: 1s, path: /}}\n",
        rendered.data.as_ref().unwrap()["config.yaml"]
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), &config).unwrap();
    let admin = free_addr();
    let log = dir.path().join("proxy.log");
    let out = std::fs::File::create(&log).unwrap();
    // A pod's addresses and volume are not this machine's: the flags win over the file.
    let child = Command::new(proxy_binary())
        .arg("--config")
        .arg(dir.path().join("config.yaml"))
        .arg("--listen")
        .arg(free_addr().to_string())
        .arg("--admin-listen")
        .arg(admin.to_string())
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env_remove("GOPROXY")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("cannot start modfleet-proxy");
    let mut proxy = Proxy {
        child,
        log,
        _dir: dir,
    };

    // Wait for the member to see its dead upstream as the operator would: by asking.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (body, report) = loop {
        if let Ok(Some(exit)) = proxy.child.try_wait() {
            panic!(
                "modfleet-proxy exited ({exit}) on the rendered config:\n{config}\n{}",
                std::fs::read_to_string(&proxy.log).unwrap_or_default()
            );
        }
        if let Some(body) = get(admin, "/status") {
            let report = fleet_health::parse(&body);
            if let MemberReport::Reachable(answer) = &report
                && answer.upstreams.iter().any(|u| !u.healthy)
            {
                break (body, report);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the proxy's /status never showed {dead} unhealthy within 60s:\n{}",
            std::fs::read_to_string(&proxy.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    // The summary the controller would write into the GoModuleProxy's status.
    let spec_urls: Vec<String> = gmp.spec.upstreams.iter().map(|u| u.url.clone()).collect();
    let health = fleet_health::summarize(&spec_urls, &[("gomod-0-x".to_owned(), report)]);
    let dead_normalized = fleet_health::normalize(&dead);
    assert_eq!(
        (health.verdict.status, health.verdict.reason),
        (Status::False, "UpstreamDown"),
        "{}",
        health.verdict.message
    );
    assert_eq!(
        health.verdict.message,
        format!("{dead_normalized} is healthy on 0/1 members")
    );
    let counts: Vec<_> = health
        .upstreams
        .iter()
        .map(|u| (u.url.as_str(), u.healthy_members, u.members))
        .collect();
    assert_eq!(
        counts,
        [(live.as_str(), 1, 1), (dead_normalized.as_str(), 0, 1)]
    );
    assert_eq!(health.upstreams[0].last_error, None);
    let last_error = health.upstreams[1]
        .last_error
        .as_deref()
        .unwrap_or_default();
    assert!(!last_error.is_empty(), "no lastError for {dead}");

    // The whole document, as the contract types read it.
    let doc: ProxyStatus = serde_json::from_slice(&body).unwrap();
    assert!(doc.ready);
    assert_eq!(doc.upstreams_healthy, 1);
    let [up, down] = &doc.upstreams[..] else {
        panic!("two upstreams expected: {doc:?}")
    };
    assert_eq!(
        (up.url.as_str(), up.priority, up.weight),
        (live.as_str(), 0, 1)
    );
    assert_eq!((down.priority, down.weight), (1, 1));
    assert_eq!(up.health.probe, ProbeState::Ok);
    assert_eq!(down.health.probe, ProbeState::Failing);
    assert_eq!(up.health.breaker, BreakerState::Closed);
    assert_eq!(
        down.health.last_error.as_ref().map(|e| e.message.as_str()),
        Some(last_error)
    );
    // hedgeDelay auto: at most 1s (its own p95 is unknown), and no longer than the other
    // upstream's latency-outlier threshold, here its floor of 100ms (the live upstream's
    // probes answer at once).
    assert_eq!(down.hedge_delay_ms, Some(100));
}
