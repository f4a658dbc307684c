//! The injection webhook as the local cluster's API server calls it: a
//! MutatingWebhookConfiguration per test that calls an operator on a loopback port (scoped by
//! a namespace label to the test's own namespaces, so parallel tests never meet it), the
//! operator's webhook flags, and Pods admitted through it.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{Cluster, DEFAULT_TIMEOUT, Namespace};

/// The webhook's path (`modfleet_operator::webhook::PATH`; the chart's test checks the chart
/// names the same).
pub const WEBHOOK_PATH: &str = "/mutate-pods";
/// What a mutated Pod carries (`modfleet_operator::injection::ANNOTATION`).
pub const ANNOTATION: &str = "modfleet.dev/injected";
/// The label that scopes a test's MutatingWebhookConfiguration to its namespaces.
pub const SCOPE_LABEL: &str = "modfleet.dev/e2e-injection";

/// A MutatingWebhookConfiguration calling `port` on loopback for Pods created in namespaces
/// labelled `SCOPE_LABEL=scope`; deleted on drop (it is cluster-scoped).
pub struct WebhookConfiguration {
    cluster: Cluster,
    pub name: String,
}

impl WebhookConfiguration {
    pub fn create(cluster: &Cluster, name: &str, port: u16, scope: &str) -> WebhookConfiguration {
        let mwc = json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/created-by": "modfleet-e2e"}},
            "webhooks": [{
                "name": "pods.injection.modfleet.dev",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "timeoutSeconds": 5,
                "reinvocationPolicy": "IfNeeded",
                "clientConfig": {"url": format!("https://127.0.0.1:{port}{WEBHOOK_PATH}")},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["pods"], "scope": "Namespaced"}],
                "namespaceSelector": {"matchLabels": {SCOPE_LABEL: scope}},
            }],
        });
        cluster.kubectl_stdin(&["apply", "-f", "-"], &mwc.to_string());
        WebhookConfiguration {
            cluster: cluster.clone(),
            name: name.to_owned(),
        }
    }

    /// The caBundle of its webhook, decoded (empty until the operator fills it).
    pub fn ca_bundle(&self) -> String {
        let mwc = self
            .cluster
            .get_json(&["mutatingwebhookconfiguration", &self.name]);
        let b64 = mwc["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap_or_default();
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default();
        String::from_utf8(pem).unwrap_or_default()
    }
}

impl Drop for WebhookConfiguration {
    fn drop(&mut self) {
        let _ = self.cluster.try_kubectl(&[
            "delete",
            "mutatingwebhookconfiguration",
            &self.name,
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

/// A namespace the test's webhook configuration covers, with `labels` besides.
pub fn scoped_namespace(
    cluster: &Cluster,
    prefix: &str,
    scope: &str,
    labels: &[&str],
) -> Namespace {
    let ns = cluster.namespace(prefix);
    let scope_label = format!("{SCOPE_LABEL}={scope}");
    let mut args = vec!["label", "namespace", ns.name(), scope_label.as_str()];
    args.extend_from_slice(labels);
    cluster.kubectl(&args);
    ns
}

pub fn pod(name: &str, labels: Value, containers: Value) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": containers},
    })
    .to_string()
}

pub fn go_container(name: &str) -> Value {
    json!({"name": name, "image": "golang:1.26", "command": ["go", "build", "./..."]})
}

/// The Pod as the API server would store it after admission (`--dry-run=server` runs the
/// mutating webhooks and stores nothing).
pub fn dry_run(ns: &Namespace, pod_json: &str) -> Value {
    let out = ns.cluster().kubectl_stdin(
        &[
            "--namespace",
            ns.name(),
            "create",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
        ],
        pod_json,
    );
    serde_json::from_str(&out).expect("kubectl prints the Pod as JSON")
}

/// `NAME -> value` of container `index`'s env in a Pod's JSON (Kubernetes' `$$` read back
/// as `$`).
pub fn env(pod: &Value, index: usize) -> BTreeMap<String, String> {
    pod["spec"]["containers"][index]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["value"].as_str().unwrap_or_default().replace("$$", "$"),
            )
        })
        .collect()
}

/// Waits until the API server gets Pods in `ns` patched: the caBundle is in place, the
/// API server has read it and the operator's caches are filled.
pub fn await_injection(ns: &Namespace) {
    let probe = pod("probe", json!({}), json!([go_container("go")]));
    ns.eventually(
        "the API server to call the webhook",
        DEFAULT_TIMEOUT,
        || {
            env(&dry_run(ns, &probe), 0)
                .contains_key("GOPROXY")
                .then_some(())
        },
    );
}

/// The operator's flags for its webhook on `127.0.0.1:port`: certificates it makes itself
/// (Secret `webhook-tls` in `home`, its own namespace), the caBundle of `configuration` kept
/// in sync, and fleets in `fleets` allowed to inject anywhere.
pub fn operator_args(
    fleets: &Namespace,
    home: &Namespace,
    port: u16,
    configuration: &str,
) -> Vec<String> {
    [
        "--operator-namespace",
        home.name(),
        "--webhook-listen",
        &format!("127.0.0.1:{port}"),
        "--webhook-hosts",
        "127.0.0.1",
        "--webhook-configuration-name",
        configuration,
        "--webhook-secret-name",
        "webhook-tls",
        "--injection-fleet-namespaces",
        fleets.name(),
    ]
    .map(str::to_owned)
    .to_vec()
}
