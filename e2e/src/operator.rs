//! Helpers for the operator's e2e tests: install the CRD, run `modfleet-operator` as a real
//! process against the cluster ([`Operator`]: with the admin credentials watching a test's
//! namespace, or with any kubeconfig and exactly the flags a caller gives, as the chart tests
//! do), read its metrics.
//!
//! The binary: `MODFLEET_OPERATOR_BIN` if set, else the tests build it once with
//! `cargo build -p modfleet-operator --bin modfleet-operator --message-format=json` and take
//! the executable path cargo reports. That works whatever the target directory is
//! (`CARGO_TARGET_DIR`, workspace `target/`), and a stale binary is never used:
//! `env!("CARGO_BIN_EXE_...")` only exists for binaries of the test's own crate.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use modfleet_testkit::workspace::{free_port, workspace_binary, workspace_root};

use crate::{Cluster, Namespace};

/// Path of the `modfleet-operator` binary (built on first use).
pub fn operator_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_binary("modfleet-operator", "MODFLEET_OPERATOR_BIN"))
        .clone()
}

/// Applies `crds/` (server-side, as the CRD is large) and waits until it is Established.
pub fn install_crd(cluster: &Cluster) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let path = workspace_root().join("crds/gomoduleproxy.yaml");
        cluster.kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            path.to_str().expect("utf-8 path"),
        ]);
        cluster.kubectl(&[
            "wait",
            "crd/gomoduleproxies.modfleet.dev",
            "--for=condition=Established",
            "--timeout=60s",
        ]);
    });
}

/// Every operator a test starts may connect only to loopback pod IPs for `/status`
/// (`--health-poll-networks`): the local cluster's pods get 127.x addresses
/// (`hack/cluster.sh`), and a cluster created before that hands out 10.0.0.x addresses that
/// nothing here may ever connect to.
pub const HEALTH_POLL_NETWORKS_ENV: &str = "MODFLEET_OPERATOR_HEALTH_POLL_NETWORKS";
pub const LOOPBACK: &str = "127.0.0.0/8";

/// The operator in a fresh namespace. On drop the operator stops first, then the fleets'
/// finalizers are lifted ([`Namespace::lift_finalizers`]) so the namespace can go.
pub struct OperatorEnv {
    pub op: Operator,
    pub ns: Namespace,
}

impl OperatorEnv {
    /// A namespace named from `prefix` (the CRD installed) with an operator watching it,
    /// started with `args`.
    pub fn start(prefix: &str, args: &[&str]) -> OperatorEnv {
        let cluster = crate::Cluster::from_env();
        install_crd(&cluster);
        let ns = cluster.namespace(prefix);
        let op = Operator::start(&ns, "op", args);
        OperatorEnv { op, ns }
    }

    /// [`OperatorEnv::start`] with the members' `/status` polled every second (1s timeout):
    /// the status tests' conditions follow within seconds.
    pub fn polling(prefix: &str) -> OperatorEnv {
        OperatorEnv::start(prefix, &FAST_HEALTH_POLLS)
    }
}

/// Operator flags: members polled every second, each within a second.
pub const FAST_HEALTH_POLLS: [&str; 4] = [
    "--health-poll-interval",
    "1s",
    "--health-poll-timeout",
    "1s",
];

impl Drop for OperatorEnv {
    fn drop(&mut self) {
        self.op.stop();
        self.ns.lift_finalizers();
    }
}

/// A running `modfleet-operator` process; stopped with SIGTERM (then killed) on drop. Its
/// log is printed when the test fails, and deleted otherwise (kept with
/// `MODFLEET_E2E_KEEP=1`).
pub struct Operator {
    child: Mutex<Option<Child>>,
    /// Where its `/metrics`, `/healthz` and `/readyz` listen, on 127.0.0.1.
    pub metrics_port: u16,
    pub log: PathBuf,
    /// Its Event reporter instance and default Lease holder identity (`POD_NAME`).
    pub identity: String,
}

impl Operator {
    /// Starts the operator with the cluster's admin credentials, watching only `ns` (so tests
    /// running in parallel do not see each other's objects), with `extra` flags.
    pub fn start(ns: &Namespace, identity: &str, extra: &[&str]) -> Operator {
        Operator::start_with_env(ns, identity, extra, &[])
    }

    /// Like [`Operator::start`], with extra environment variables (e.g. `OTEL_*`).
    pub fn start_with_env(
        ns: &Namespace,
        identity: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let args: Vec<String> = [
            "--watch-namespaces",
            ns.name(),
            "--proxy-image",
            "registry.invalid/modfleet/modfleet-proxy:e2e",
            "--leader-election-id",
            identity,
            "--log-format",
            "json",
        ]
        .iter()
        .chain(extra)
        .map(|a| (*a).to_owned())
        .collect();
        Operator::spawn(
            ns.cluster().kubeconfig(),
            identity,
            &args,
            &format!("{}-{identity}", ns.name()),
            env,
        )
    }

    /// Starts the operator with the credentials in `kubeconfig` only (e.g. a ServiceAccount's
    /// token from [`crate::helm::service_account_kubeconfig`]) and exactly `args`, except that
    /// `--metrics-listen` is always a free port on 127.0.0.1 (so [`Operator::metric`] works).
    pub fn start_with(kubeconfig: &Path, identity: &str, args: &[String]) -> Operator {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Operator::spawn(
            kubeconfig,
            identity,
            args,
            &format!("{identity}-{}-{n}", std::process::id()),
            &[],
        )
    }

    /// Runs the binary and waits until its `/readyz` answers (it checks the CRD first).
    fn spawn(
        kubeconfig: &Path,
        identity: &str,
        args: &[String],
        log_name: &str,
        env: &[(&str, &str)],
    ) -> Operator {
        let bin = operator_binary();
        let port = free_port();
        let log = std::env::temp_dir().join(format!("modfleet-operator-{log_name}.log"));
        let file = File::create(&log).expect("log file");
        // Ours wins: drop a --metrics-listen the caller passed (either spelling).
        let mut kept = Vec::with_capacity(args.len() + 2);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--metrics-listen" {
                it.next();
            } else if !a.starts_with("--metrics-listen=") {
                kept.push(a.as_str());
            }
        }
        let listen = format!("--metrics-listen=127.0.0.1:{port}");
        kept.push(&listen);
        let child = Command::new(&bin)
            .args(&kept)
            .env("KUBECONFIG", kubeconfig)
            // Not the in-cluster configuration, even if the tests run in a pod.
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("POD_NAME", identity)
            .env(HEALTH_POLL_NETWORKS_ENV, LOOPBACK)
            .env("RUST_LOG", "info,modfleet_operator=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let op = Operator {
            child: Mutex::new(Some(child)),
            metrics_port: port,
            log,
            identity: identity.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while op
            .http_get("/readyz")
            .filter(|b| b.starts_with("ok"))
            .is_none()
        {
            op.assert_running();
            assert!(
                Instant::now() < deadline,
                "modfleet-operator {identity}: /readyz did not answer within 60s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        op
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&self) {
        if let Some(child) = self.child.lock().unwrap().as_ref() {
            let pid = child.id();
            if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
                panic!("modfleet-operator exited; log:\n{}", self.logs());
            }
        }
    }

    /// GET on the admin endpoint; the body when the status is 200.
    pub fn http_get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let (head, body) = buf.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.0 200")
            .then(|| body.to_owned())
            .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_owned()))
    }

    /// Value of a counter or gauge without labels, e.g. `modfleet_operator_reconciles_total`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let body = self.http_get("/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// SIGKILL: the process gets no chance to clean up (e.g. to release its Lease).
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait up to 30 s for a clean exit (SIGKILL after that). Returns whether
    /// it exited on its own.
    pub fn stop(&self) -> bool {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- modfleet-operator {} log ({}):\n{}",
                self.identity,
                self.log.display(),
                self.logs()
            );
        } else if std::env::var_os("MODFLEET_E2E_KEEP").is_none_or(|v| v != "1") {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
