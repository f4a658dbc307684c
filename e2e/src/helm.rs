//! Helpers for the install tests (`tests/chart.rs`, `tests/examples.rs`): `helm` on the
//! chart in `charts/modfleet`, and kubeconfigs that carry a ServiceAccount's token, for
//! running the operator with that identity and the chart's rendered flags
//! ([`crate::operator::Operator::start_with`]).
//!
//! `helm` is the binary named by `MODFLEET_HELM`, else `helm` on `PATH` (`eval "$(hack/cluster.sh
//! env)"` puts the pinned one there). A missing `helm` fails the test with that hint.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::{Cluster, Namespace};
use modfleet_testkit::workspace::workspace_root;

/// `charts/modfleet`.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts").join("modfleet")
}

fn helm_program() -> PathBuf {
    std::env::var_os("MODFLEET_HELM")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("helm"))
}

/// A `helm` command bound to `cluster`'s kubeconfig (or to none, for `lint`/`template`).
pub fn helm_command(cluster: Option<&Cluster>, args: &[&str]) -> Command {
    let mut cmd = Command::new(helm_program());
    if let Some(c) = cluster {
        cmd.env("KUBECONFIG", c.kubeconfig());
    }
    cmd.args(args).stdin(Stdio::null());
    cmd
}

/// Renders the chart once per `(--set value, expected message)` case and returns what went
/// wrong: a case the schema accepted, or refused with another message. Empty: all as expected.
pub fn schema_failures(cases: &[(&str, &str)]) -> Vec<String> {
    let chart = chart_dir();
    let mut failures = Vec::new();
    for (set, want) in cases {
        let out = try_helm(
            None,
            &["template", "t", chart.to_str().unwrap(), "--set", set],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!("--set {set}: accepted"));
        } else if !err.contains("don't meet the specifications of the schema")
            || !err.contains(want)
        {
            failures.push(format!("--set {set}: expected {want:?}, got: {err}"));
        }
    }
    failures
}

/// Runs helm and returns its output, whatever the exit status.
///
/// # Panics
/// When helm cannot be started: the message says how to get it.
pub fn try_helm(cluster: Option<&Cluster>, args: &[&str]) -> Output {
    helm_command(cluster, args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e} (run `eval \"$(hack/cluster.sh env)\"` to put the pinned helm on PATH, or set MODFLEET_HELM)",
            helm_program().display()
        )
    })
}

/// Runs helm and returns stdout; panics with stderr on failure.
pub fn helm(cluster: Option<&Cluster>, args: &[&str]) -> String {
    let out = try_helm(cluster, args);
    if !out.status.success() {
        panic!(
            "helm {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm template RELEASE charts/modfleet -n NAMESPACE EXTRA...`: the rendered YAML.
pub fn template(release: &str, namespace: &str, extra: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        release,
        chart.to_str().expect("UTF-8 path"),
        "--namespace",
        namespace,
    ];
    args.extend_from_slice(extra);
    helm(None, &args)
}

/// [`template`], parsed into one JSON value per object (empty documents dropped), without a
/// cluster.
pub fn template_objects(release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    let yaml = template(release, namespace, extra);
    let mut objs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&yaml) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .unwrap_or_else(|e| panic!("helm template rendered bad YAML: {e}\n{yaml}"));
        if !v.is_null() {
            objs.push(v);
        }
    }
    objs
}

/// Parses a YAML document stream into JSON objects, with `kubectl create --dry-run=client`
/// (no API server involved).
pub fn yaml_to_objects(cluster: &Cluster, yaml: &str) -> Vec<Value> {
    let out = cluster.kubectl_stdin(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        yaml,
    );
    // One JSON document per object (or a List).
    let mut objs = Vec::new();
    for v in serde_json::Deserializer::from_str(&out).into_iter::<Value>() {
        let v =
            v.unwrap_or_else(|e| panic!("kubectl create --dry-run=client: bad JSON: {e}\n{out}"));
        match v["kind"].as_str() {
            Some("List") => objs.extend(v["items"].as_array().cloned().unwrap_or_default()),
            _ => objs.push(v),
        }
    }
    objs
}

/// Every release the tests install narrows its injection webhook to namespaces with a label
/// no namespace has: the API server would otherwise call the webhook Service for each new
/// Pod of the cluster, dialling its ClusterIP, a private range no test may target (on the
/// local cluster nothing routes there). Its objects and RBAC are installed all the same.
pub const NO_WEBHOOK_CALLS: &str =
    r#"injection.namespaceSelector={"matchLabels":{"modfleet.dev/e2e-webhook":"never-called"}}"#;

/// A Helm release, uninstalled when dropped (kept when `MODFLEET_E2E_KEEP=1`).
pub struct Release {
    cluster: Cluster,
    name: String,
    namespace: String,
    /// What `helm install` printed (the chart's NOTES.txt among it).
    pub output: String,
}

impl Release {
    /// `helm install NAME charts/modfleet -n NAMESPACE --wait EXTRA...`, with
    /// [`NO_WEBHOOK_CALLS`].
    pub fn install(ns: &Namespace, name: &str, extra: &[&str]) -> Release {
        let chart = chart_dir();
        let mut args = vec![
            "install",
            name,
            chart.to_str().expect("UTF-8 path"),
            "--namespace",
            ns.name(),
            "--wait",
            "--timeout",
            "3m",
            "--set-json",
            NO_WEBHOOK_CALLS,
        ];
        args.extend_from_slice(extra);
        let output = helm(Some(ns.cluster()), &args);
        Release {
            cluster: ns.cluster().clone(),
            name: name.to_owned(),
            namespace: ns.name().to_owned(),
            output,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `helm upgrade NAME charts/modfleet --reuse-values --set SET... --wait`.
    pub fn upgrade(&self, sets: &[&str]) -> String {
        let chart = chart_dir();
        let mut args = vec![
            "upgrade",
            self.name.as_str(),
            chart.to_str().expect("UTF-8 path"),
            "--namespace",
            self.namespace.as_str(),
            "--reuse-values",
            "--wait",
            "--timeout",
            "3m",
        ];
        for set in sets {
            args.extend(["--set", set]);
        }
        helm(Some(&self.cluster), &args)
    }

    /// The release's manifest as Helm stored it.
    pub fn manifest(&self) -> String {
        helm(
            Some(&self.cluster),
            &[
                "get",
                "manifest",
                &self.name,
                "--namespace",
                &self.namespace,
            ],
        )
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if std::env::var_os("MODFLEET_E2E_KEEP").is_some_and(|v| v == "1") {
            eprintln!("MODFLEET_E2E_KEEP=1: keeping helm release {}", self.name);
            return;
        }
        let _ = try_helm(
            Some(&self.cluster),
            &[
                "uninstall",
                &self.name,
                "--namespace",
                &self.namespace,
                "--wait",
                "--timeout",
                "1m",
            ],
        );
    }
}

/// Writes a kubeconfig for `cluster`'s API server that authenticates with a fresh token of
/// ServiceAccount `namespace/name` (`kubectl create token`), and nothing else: no client
/// certificate, no impersonation. Whatever a process does with it is exactly what that
/// ServiceAccount's RBAC allows.
pub fn service_account_kubeconfig(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    path: &Path,
) -> PathBuf {
    let admin = cluster.get_json_raw(&["config", "view", "--raw", "--minify", "-o", "json"]);
    let c = &admin["clusters"][0]["cluster"];
    let server = c["server"].as_str().expect("kubeconfig has a server");
    let token = cluster
        .kubectl(&[
            "create",
            "token",
            name,
            "--namespace",
            namespace,
            "--duration=2h",
        ])
        .trim()
        .to_owned();
    assert!(!token.is_empty(), "kubectl create token gave no token");
    let mut cluster_entry = json!({ "server": server });
    for key in [
        "certificate-authority-data",
        "certificate-authority",
        "insecure-skip-tls-verify",
        "tls-server-name",
    ] {
        if !c[key].is_null() {
            cluster_entry[key] = c[key].clone();
        }
    }
    let user = format!("system:serviceaccount:{namespace}:{name}");
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "cluster", "cluster": cluster_entry }],
        "users": [{ "name": user, "user": { "token": token } }],
        "contexts": [{ "name": "sa", "context": { "cluster": "cluster", "user": user } }],
        "current-context": "sa",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&config).unwrap())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path.to_path_buf()
}

impl Cluster {
    /// `kubectl <args>` whose output is JSON, parsed (for commands other than `get`).
    pub fn get_json_raw(&self, args: &[&str]) -> Value {
        let out = self.kubectl(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?}: bad JSON: {e}"))
    }

    /// `kubectl auth can-i VERB RESOURCE [--namespace NS | --all-namespaces] --as USER`.
    pub fn can_i(&self, user: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        let mut args = vec!["auth", "can-i", verb, resource, "--as", user];
        match namespace {
            Some(ns) => args.extend_from_slice(&["--namespace", ns]),
            None => args.push("--all-namespaces"),
        }
        let out = self.try_kubectl(&args);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        match answer.as_str() {
            "yes" => true,
            "no" => false,
            _ => panic!(
                "kubectl {args:?}: unexpected answer {answer:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}
