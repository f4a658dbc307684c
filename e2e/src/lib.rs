//! Shared harness for modfleet's end-to-end tests.
//!
//! The tests run against the real Kubernetes control plane that `hack/cluster.sh up`
//! starts (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok's fake
//! nodes) and find it through `KUBECONFIG`:
//!
//! ```text
//! hack/cluster.sh up
//! eval "$(hack/cluster.sh env)"
//! cargo test -p modfleet-e2e --features cluster
//! ```
//!
//! Without `--features cluster` only the checks of the shipped files that need no cluster run
//! (`tests/*_files.rs`): they are part of plain `cargo test`.
//!
//! There is no mock and no skipping: without a reachable cluster every test fails with
//! a message saying how to start one.
//!
//! The harness drives `kubectl` (the binary named by `MODFLEET_KUBECTL`, else `kubectl`
//! on `PATH`) and uses no Kubernetes client crate. Each test gets its own namespace from
//! [`Cluster::namespace`], deleted when the [`Namespace`] is dropped (kept when
//! `MODFLEET_E2E_KEEP=1`, for debugging). Waiting is done with `kubectl wait` or by
//! polling a condition against a deadline, never by sleeping for a guessed time.

pub mod argocd;
/// The example manifests.
pub mod examples;
/// A fleet's Secrets on the cluster: mounts, rolls, `CredentialsMissing`.
pub mod fleet_secrets;

pub mod operator;

pub mod helm;

pub mod images;
/// The injection webhook called by the API server (tests/injection.rs, tests/images.rs).
pub mod injection;

pub mod netns;
/// The chart's observability files: rules, dashboard, promtool, a PromQL metric-name scanner.
pub mod observability;

pub mod pod;

pub mod proxy;

use std::ffi::OsStr;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// What to do when no cluster is found.
pub const NO_CLUSTER: &str =
    "no cluster: run `hack/cluster.sh up` then `eval \"$(hack/cluster.sh env)\"`";

/// Label carried by the fake nodes that `hack/cluster.sh up` creates.
pub const KWOK_NODE_SELECTOR: &str = "type=kwok";
/// The default StorageClass (ReadWriteOnce use) of the local cluster.
pub const DEFAULT_STORAGE_CLASS: &str = "modfleet-standard";
/// The StorageClass for ReadWriteMany claims (the operator's Shared cache mode).
pub const RWX_STORAGE_CLASS: &str = "modfleet-rwx";

/// Default time allowed for a single wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// A handle on the cluster named by `KUBECONFIG`.
#[derive(Debug, Clone)]
pub struct Cluster {
    kubeconfig: PathBuf,
    kubectl: PathBuf,
}

impl Cluster {
    /// Finds the cluster through `KUBECONFIG` and checks that its API server answers.
    ///
    /// # Panics
    /// When `KUBECONFIG` is unset or empty, names a missing file, or the API server is not
    /// ready: the message says how to start the local cluster.
    pub fn from_env() -> Cluster {
        let kubeconfig = match std::env::var_os("KUBECONFIG") {
            Some(v) if !v.is_empty() => PathBuf::from(v),
            _ => panic!("{NO_CLUSTER} (KUBECONFIG is not set)"),
        };
        // KUBECONFIG may be a list; each entry must exist.
        for path in std::env::split_paths(&kubeconfig) {
            if !path.is_file() {
                panic!(
                    "{NO_CLUSTER} (KUBECONFIG names {}, which does not exist)",
                    path.display()
                );
            }
        }
        let kubectl = std::env::var_os("MODFLEET_KUBECTL")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("kubectl"));
        let cluster = Cluster {
            kubeconfig,
            kubectl,
        };
        let out = cluster
            .command(["get", "--raw", "/readyz", "--request-timeout=10s"])
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (install kubectl or set MODFLEET_KUBECTL)",
                    cluster.kubectl.display()
                )
            });
        if !out.status.success() {
            panic!(
                "{NO_CLUSTER} (the API server in {} is not ready: {})",
                cluster.kubeconfig.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        cluster
    }

    /// The kubeconfig file(s) in use.
    pub fn kubeconfig(&self) -> &std::path::Path {
        &self.kubeconfig
    }

    /// A `kubectl` command bound to this cluster (no namespace).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env("KUBECONFIG", &self.kubeconfig).args(args);
        cmd
    }

    /// Runs kubectl and returns stdout; panics with stderr on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        run(self.command(args), None)
    }

    /// The API server's URL, and its CA written to `dir/ca.crt`: what a process outside the
    /// cluster needs to talk to it as a Pod would (with a ServiceAccount token).
    pub fn api_server(&self, dir: &std::path::Path) -> (String, PathBuf) {
        use base64::Engine as _;
        let config: Value = serde_json::from_str(
            &self.kubectl(&["config", "view", "--raw", "--minify", "-o", "json"]),
        )
        .expect("kubectl config view prints JSON");
        let c = &config["clusters"][0]["cluster"];
        let ca = base64::engine::general_purpose::STANDARD
            .decode(
                c["certificate-authority-data"]
                    .as_str()
                    .expect("a CA in the kubeconfig"),
            )
            .expect("the kubeconfig's CA is base64");
        let path = dir.join("ca.crt");
        std::fs::write(&path, ca).expect("write the CA");
        let server = c["server"].as_str().expect("a server in the kubeconfig");
        (server.to_owned(), path)
    }

    /// Runs kubectl with `stdin` as standard input; panics with stderr on failure.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        run(self.command(args), Some(stdin))
    }

    /// Runs kubectl and returns its raw output, whatever the exit status.
    pub fn try_kubectl(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.kubectl.display()))
    }

    /// Runs kubectl with `stdin` as standard input and returns its raw output, whatever
    /// the exit status.
    pub fn try_kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        spawn(self.command(args), Some(stdin))
    }

    /// `kubectl get <args> -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {all:?}: bad JSON: {e}"))
    }

    /// Names of the fake (kwok) nodes.
    pub fn kwok_nodes(&self) -> Vec<String> {
        let list = self.get_json(&["nodes", "-l", KWOK_NODE_SELECTOR]);
        list["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Creates a fresh namespace `e2e-<prefix>-<unique>`, deleted when dropped.
    pub fn namespace(&self, prefix: &str) -> Namespace {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(30)
            .collect();
        let name = format!(
            "e2e-{}-{:x}{n:x}{:x}",
            prefix.trim_matches('-'),
            std::process::id(),
            nanos % 0x10000
        );
        self.kubectl(&["create", "namespace", &name]);
        self.kubectl(&[
            "label",
            "namespace",
            &name,
            "app.kubernetes.io/created-by=modfleet-e2e",
        ]);
        Namespace {
            cluster: self.clone(),
            name,
        }
    }
}

/// A test namespace; deleted (without waiting) on drop.
#[derive(Debug)]
pub struct Namespace {
    cluster: Cluster,
    name: String,
}

impl Namespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster this namespace lives in.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    fn with_ns<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["--namespace", self.name.as_str()];
        all.extend_from_slice(args);
        all
    }

    /// Runs kubectl in this namespace; returns stdout, panics with stderr on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.cluster.kubectl(&self.with_ns(args))
    }

    /// A key of Secret `name` here, decoded as UTF-8 text.
    pub fn secret_key(&self, name: &str, key: &str) -> String {
        let s = self.get_json(&["secret", name]);
        let mut data = secret_data(&s);
        let bytes = data
            .remove(key)
            .unwrap_or_else(|| panic!("Secret {name} has no key {key}: {:?}", s["data"]));
        String::from_utf8(bytes).expect("UTF-8")
    }

    /// Removes the finalizer of every GoModuleProxy here: once the operator that would remove
    /// them is gone, they would keep the namespace from ever being deleted. Done on drop too;
    /// call it earlier when an operator must be stopped first and the namespace lives on.
    pub fn lift_finalizers(&self) {
        let out = self.try_kubectl(&["get", "gmp", "-o", "name"]);
        for obj in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.try_kubectl(&[
                "patch",
                obj,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
    }

    /// Runs kubectl in this namespace and returns its raw output.
    pub fn try_kubectl(&self, args: &[&str]) -> Output {
        self.cluster.try_kubectl(&self.with_ns(args))
    }

    /// `kubectl apply` of a YAML (or JSON) document stream, in this namespace.
    pub fn apply(&self, yaml: &str) -> String {
        self.cluster
            .kubectl_stdin(&self.with_ns(&["apply", "-f", "-"]), yaml)
    }

    /// Asserts that the API server refuses `kubectl apply` of `yaml` in this namespace with an
    /// error that contains `want` (a CRD's schema or CEL message).
    pub fn assert_refused(&self, yaml: &str, want: &str) {
        let out = self
            .cluster
            .try_kubectl_stdin(&self.with_ns(&["apply", "-f", "-"]), yaml);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{yaml}");
        assert!(
            err.contains(want),
            "want {want:?} in the error for\n{yaml}\ngot: {err}"
        );
    }

    /// `kubectl get <args> -o json` in this namespace, parsed.
    pub fn get_json(&self, args: &[&str]) -> Value {
        self.cluster.get_json(&self.with_ns(args))
    }

    /// `kubectl wait --for=<condition> <target>` in this namespace. `condition` is what
    /// follows `--for=`, e.g. `condition=Available` or `jsonpath={.status.phase}=Bound`.
    ///
    /// # Panics
    /// When the condition does not hold within `timeout`; the message includes the
    /// target's description and the namespace's events.
    pub fn wait(&self, target: &str, condition: &str, timeout: Duration) {
        let for_arg = format!("--for={condition}");
        let timeout_arg = format!("--timeout={}s", timeout.as_secs().max(1));
        let out = self.try_kubectl(&["wait", target, &for_arg, &timeout_arg]);
        if !out.status.success() {
            panic!(
                "{target} did not reach {condition} within {timeout:?} in namespace {}: {}\n{}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.diagnostics(target)
            );
        }
    }

    /// Polls `check` until it returns `Some`, or panics after `timeout` with `what` and
    /// the namespace's diagnostics. The pause between polls is short and fixed; this is
    /// for conditions `kubectl wait` cannot express.
    pub fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what} in namespace {}\n{}",
                    self.name,
                    self.diagnostics("all")
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A best-effort dump of a target and the namespace's events, for failure messages.
    pub fn diagnostics(&self, target: &str) -> String {
        let mut s = String::new();
        for args in [
            vec!["get", "all,pvc", "-o", "wide"],
            vec!["describe", target],
            vec!["get", "events", "--sort-by=.lastTimestamp"],
        ] {
            let out = self.try_kubectl(&args);
            s.push_str(&format!(
                "--- kubectl {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        s
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if std::env::var_os("MODFLEET_E2E_KEEP").is_some_and(|v| v == "1") {
            eprintln!("MODFLEET_E2E_KEEP=1: keeping namespace {}", self.name);
            return;
        }
        // Don't wait: deleting a namespace takes a while and nothing later depends on it.
        let _ = self
            .cluster
            .try_kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
        // The operators of the test are gone by now (declared after their namespace), and
        // nothing else removes a fleet's finalizer: the namespace would stay Terminating.
        self.lift_finalizers();
    }
}

/// A Secret's `data`, each value decoded from base64.
pub fn secret_data(secret: &Value) -> std::collections::BTreeMap<String, Vec<u8>> {
    use base64::Engine as _;
    secret["data"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().expect("Secret data values are strings"))
                .expect("Secret data is base64");
            (k.clone(), bytes)
        })
        .collect()
}

fn run(cmd: Command, stdin: Option<&str>) -> String {
    let printable = format!("{cmd:?}");
    let out = spawn(cmd, stdin);
    if !out.status.success() {
        panic!(
            "{printable} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn spawn(mut cmd: Command, stdin: Option<&str>) -> Output {
    let printable = format!("{cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {printable}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("writing to {printable}: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {printable}: {e}"))
}

/// The status condition `type_` of an object read as JSON (`Value::Null` when absent).
pub fn condition(obj: &Value, type_: &str) -> Value {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null)
}

/// (url, healthyMembers, members) of each entry of a fleet's `status.upstreams`.
pub fn upstreams(g: &Value) -> Vec<(String, i64, i64)> {
    g["status"]["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            (
                u["url"].as_str().unwrap_or_default().to_owned(),
                u["healthyMembers"].as_i64().unwrap_or(-1),
                u["members"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}
