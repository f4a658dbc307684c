//! Real `modfleet-proxy` processes for the cluster tests, and a tiny HTTP origin to be their
//! upstream. kwok runs no containers, but the local cluster gives pods loopback IPs
//! (`hack/cluster.sh`), so a test can start the proxy a pod stands for on that pod's IP, and
//! the operator then talks to a real proxy at the address the API server reports.
//!
//! The binary: `MODFLEET_PROXY_BIN` if set, else built once with `cargo build -p
//! modfleet-proxy` (see [`crate::operator::workspace_binary`]).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use modfleet_testkit::workspace::workspace_binary;

use crate::Namespace;

/// Path of the `modfleet-proxy` binary (built on first use).
pub fn proxy_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_binary("modfleet-proxy", "MODFLEET_PROXY_BIN"))
        .clone()
}

/// A `modfleet-proxy` listening on `IP:8080` (GOPROXY) and `IP:9090` (admin), the ports a
/// fleet member has; killed on drop, its cache directory removed.
pub struct ProxyProcess {
    child: Child,
    ip: IpAddr,
    dir: PathBuf,
    log: PathBuf,
}

impl ProxyProcess {
    /// Starts the proxy on `ip` with `upstreams` in priority order, probing them every 200ms
    /// (so health changes show within a second), and waits until its admin port answers.
    ///
    /// # Panics
    /// When it cannot start or its admin port does not answer within 30s (with its log).
    pub fn start(ip: IpAddr, upstreams: &[String]) -> ProxyProcess {
        ProxyProcess::start_with(ip, upstreams, "")
    }

    /// [`ProxyProcess::start`] with `extra` appended to the config (whole top-level keys,
    /// e.g. the `tls` and `access` a fleet's ConfigMap holds, their files made local).
    pub fn start_with(ip: IpAddr, upstreams: &[String], extra: &str) -> ProxyProcess {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "modfleet-e2e-proxy-{ip}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("cache"))
            .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let ups: String = upstreams
            .iter()
            .map(|u| format!("  - url: {u}\n    timeout: 2s\n"))
            .collect();
        let config = format!(
            "listen: {}\nadminListen: {}\ncacheDir: {}\nupstreams:\n{ups}healthCheck: {{interval: 200ms, timeout: 1s, path: /}}\nlogFormat: text\n{extra}",
            SocketAddr::new(ip, 8080),
            SocketAddr::new(ip, 9090),
            dir.join("cache").display()
        );
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, config).expect("writing the proxy config");
        let log = dir.join("proxy.log");
        let file = File::create(&log).expect("proxy log file");
        let bin = proxy_binary();
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config_path)
            .env_remove("GOPROXY")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut proxy = ProxyProcess {
            child,
            ip,
            dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while proxy.admin_get("/healthz").is_none() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!(
                    "modfleet-proxy on {ip} exited ({status}); is {ip}:8080 or {ip}:9090 taken?\n{}",
                    proxy.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "modfleet-proxy on {ip}: no answer on the admin port within 30s\n{}",
                proxy.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    /// The IP it listens on (its Pod's).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// GET on the admin port; the body when the answer is 200.
    pub fn admin_get(&self, path: &str) -> Option<String> {
        http_get(SocketAddr::new(self.ip, 9090), path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the proxy now (SIGKILL), as a member that goes away.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- modfleet-proxy on {} log:\n{}",
                self.ip,
                self.log_text()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pods of the fleet `instance` (each a member whose proxy a test may start): (name, IP),
/// sorted, each IP checked to be a loopback address the local cluster gave it.
pub fn member_pods(ns: &Namespace, instance: &str) -> Vec<(String, IpAddr)> {
    let pods = ns.get_json(&[
        "pods",
        "-l",
        &format!("app.kubernetes.io/instance={instance},app.kubernetes.io/name=modfleet-proxy"),
    ]);
    let mut out: Vec<(String, IpAddr)> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap().to_owned();
            let ip: IpAddr = p["status"]["podIP"]
                .as_str()
                .unwrap_or_else(|| panic!("pod {name} has no IP"))
                .parse()
                .unwrap();
            // Never start anything on, or let anything connect to, a non-loopback address.
            assert!(
                ip.is_loopback() && !ip.to_string().starts_with("127.0."),
                "pod {name} has IP {ip}: this cluster predates loopback pod IPs; recreate it with `hack/cluster.sh down` and `hack/cluster.sh up`"
            );
            (name, ip)
        })
        .collect();
    out.sort();
    out
}

/// A one-line HTTP/1.0 GET; the body when the status is 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_owned())
}
