//! Real `modfleet-proxy` processes for the cluster tests, and a tiny HTTP origin to be their
//! upstream. kwok runs no containers, but the local cluster gives pods loopback IPs
//! (`hack/cluster.sh`), so a test can start the proxy a pod stands for on that pod's IP, and
//! the operator then talks to a real proxy at the address the API server reports.
//!
//! The binary: `MODFLEET_PROXY_BIN` if set, else built once with `cargo build -p
//! modfleet-proxy` (see [`crate::operator::workspace_binary`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use modfleet_testkit::workspace::workspace_binary;

use serde_json::Value;

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

/// The pods of the fleet `instance` once it has settled (each a member whose proxy a test may
/// start): (name, IP), sorted, each IP checked to be a loopback address the local cluster gave
/// it. Settled: one running pod per member Deployment, none terminating, each of its
/// Deployment's current template (its `modfleet.dev/*` annotations). Members roll in their own
/// time after a change, and `Ready` can be true while an old pod still runs: a proxy started on
/// such a pod's IP would listen where nobody looks.
pub fn member_pods(ns: &Namespace, instance: &str) -> Vec<(String, IpAddr)> {
    let selector =
        format!("app.kubernetes.io/instance={instance},app.kubernetes.io/name=modfleet-proxy");
    ns.eventually(
        &format!("the members of {instance} settled (one current pod each)"),
        crate::DEFAULT_TIMEOUT,
        || {
            let deployments = ns.get_json(&["deployments", "-l", &selector]);
            let pods = ns.get_json(&["pods", "-l", &selector]);
            settled_pods(&deployments, &pods)
        },
    )
}

/// The pure half of [`member_pods`]: `Some` when every Deployment has exactly one pod, running,
/// not terminating, carrying the template's `modfleet.dev/*` annotations.
fn settled_pods(deployments: &Value, pods: &Value) -> Option<Vec<(String, IpAddr)>> {
    let annotations = |meta: &Value| -> BTreeMap<String, Value> {
        meta["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("modfleet.dev/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let pods = pods["items"].as_array()?;
    let deployments = deployments["items"].as_array()?;
    if deployments.is_empty() || pods.len() != deployments.len() {
        return None;
    }
    let mut out = Vec::new();
    for d in deployments {
        let member = &d["spec"]["selector"]["matchLabels"]["modfleet.dev/member"];
        let want = annotations(&d["spec"]["template"]["metadata"]);
        let mut mine = pods
            .iter()
            .filter(|p| &p["metadata"]["labels"]["modfleet.dev/member"] == member);
        let (p, None) = (mine.next()?, mine.next()) else {
            return None;
        };
        let current = p["metadata"]["deletionTimestamp"].is_null()
            && p["status"]["phase"] == "Running"
            && annotations(&p["metadata"]) == want;
        if !current {
            return None;
        }
        let name = p["metadata"]["name"].as_str()?.to_owned();
        let ip: IpAddr = p["status"]["podIP"].as_str()?.parse().ok()?;
        // Never start anything on, or let anything connect to, a non-loopback address.
        assert!(
            ip.is_loopback() && !ip.to_string().starts_with("127.0."),
            "pod {name} has IP {ip}: this cluster predates loopback pod IPs; recreate it with `hack/cluster.sh down` and `hack/cluster.sh up`"
        );
        out.push((name, ip));
    }
    out.sort();
    Some(out)
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(member: &str, hash: &str) -> Value {
        json!({"spec": {"selector": {"matchLabels": {"modfleet.dev/member": member}},
            "template": {"metadata": {"annotations": {"modfleet.dev/config-hash": hash, "other": "x"}}}}})
    }

    fn pod(name: &str, member: &str, hash: &str, ip: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"modfleet.dev/member": member},
            "annotations": {"modfleet.dev/config-hash": hash}},
            "status": {"phase": "Running", "podIP": ip}})
    }

    fn list(items: Vec<Value>) -> Value {
        json!({ "items": items })
    }

    #[test]
    fn settled_means_one_current_running_pod_per_member() {
        let ds = list(vec![deployment("0", "new"), deployment("1", "new")]);
        let a = pod("a", "0", "new", "127.1.0.1");
        let b = pod("b", "1", "new", "127.1.0.2");
        let got = settled_pods(&ds, &list(vec![b.clone(), a.clone()])).unwrap();
        assert_eq!(
            got,
            vec![
                ("a".to_owned(), "127.1.0.1".parse().unwrap()),
                ("b".to_owned(), "127.1.0.2".parse().unwrap())
            ]
        );
        // Member 1 still on its old template.
        let old = pod("b-old", "1", "old", "127.1.0.3");
        assert!(settled_pods(&ds, &list(vec![a.clone(), old.clone()])).is_none());
        // The new pod is there, the old one not gone yet.
        assert!(settled_pods(&ds, &list(vec![a.clone(), b.clone(), old])).is_none());
        // Terminating, or not running yet.
        let mut gone = b.clone();
        gone["metadata"]["deletionTimestamp"] = json!("2026-11-30T00:00:00Z");
        assert!(settled_pods(&ds, &list(vec![a.clone(), gone])).is_none());
        let mut pending = b.clone();
        pending["status"] = json!({"phase": "Pending"});
        assert!(settled_pods(&ds, &list(vec![a.clone(), pending])).is_none());
        // No Deployments yet: nothing is settled.
        assert!(settled_pods(&list(vec![]), &list(vec![])).is_none());
    }
}
