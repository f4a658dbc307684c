//! Smoke tests of the local cluster itself (`hack/cluster.sh up`): the things every later
//! e2e test relies on. They need a running cluster and fail without one.

use modfleet_e2e::{
    Cluster, DEFAULT_STORAGE_CLASS, DEFAULT_TIMEOUT, KWOK_NODE_SELECTOR, RWX_STORAGE_CLASS,
};

#[test]
fn kwok_nodes_are_ready() {
    let cluster = Cluster::from_env();
    let nodes = cluster.kwok_nodes();
    assert!(
        nodes.len() >= 3,
        "expected at least 3 fake nodes labelled {KWOK_NODE_SELECTOR}, found {nodes:?}"
    );
    cluster.kubectl(&[
        "wait",
        "node",
        "-l",
        KWOK_NODE_SELECTOR,
        "--for=condition=Ready",
        "--timeout=60s",
    ]);
}

#[test]
fn deployment_with_pvc_becomes_available_on_a_kwok_node() {
    let cluster = Cluster::from_env();
    let nodes = cluster.kwok_nodes();
    let ns = cluster.namespace("smoke");
    // No storageClassName: the default class must be filled in and bind.
    ns.apply(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 3Gi
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: smoke
spec:
  replicas: 1
  selector:
    matchLabels: {app: smoke}
  template:
    metadata:
      labels: {app: smoke}
    spec:
      containers:
        - name: main
          image: registry.invalid/modfleet/smoke:never-pulled
          volumeMounts:
            - {name: data, mountPath: /data}
      volumes:
        - name: data
          persistentVolumeClaim: {claimName: data}
"#,
    );
    ns.wait(
        "pvc/data",
        "jsonpath={.status.phase}=Bound",
        DEFAULT_TIMEOUT,
    );
    ns.wait("deployment/smoke", "condition=Available", DEFAULT_TIMEOUT);

    let pvc = ns.get_json(&["pvc", "data"]);
    assert_eq!(pvc["spec"]["storageClassName"], DEFAULT_STORAGE_CLASS);
    let volume = pvc["spec"]["volumeName"]
        .as_str()
        .expect("bound PVC has a volume");
    let pv = cluster.get_json(&["pv", volume]);
    assert_eq!(pv["status"]["phase"], "Bound");
    assert_eq!(pv["spec"]["claimRef"]["namespace"], ns.name());

    let pods = ns.get_json(&["pods", "-l", "app=smoke"]);
    let pods = pods["items"].as_array().expect("pod list");
    assert_eq!(pods.len(), 1, "one replica expected: {pods:#?}");
    let pod = &pods[0];
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    assert!(
        nodes.iter().any(|n| n == node),
        "pod scheduled onto {node:?}, not one of the kwok nodes {nodes:?}"
    );
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "pod is not Ready: {:#}", pod["status"]);
}

#[test]
fn rwx_claim_binds_on_the_rwx_class() {
    let cluster = Cluster::from_env();
    let ns = cluster.namespace("rwx");
    ns.apply(&format!(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: shared
spec:
  storageClassName: {RWX_STORAGE_CLASS}
  accessModes: [ReadWriteMany]
  resources:
    requests:
      storage: 20Gi
"#
    ));
    ns.wait(
        "pvc/shared",
        "jsonpath={.status.phase}=Bound",
        DEFAULT_TIMEOUT,
    );
    let pvc = ns.get_json(&["pvc", "shared"]);
    assert_eq!(pvc["status"]["accessModes"][0], "ReadWriteMany");
    assert_eq!(pvc["status"]["capacity"]["storage"], "20Gi");
}

#[test]
fn bound_claim_can_be_expanded() {
    let cluster = Cluster::from_env();
    let ns = cluster.namespace("expand");
    ns.apply(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: grow
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
"#,
    );
    ns.wait(
        "pvc/grow",
        "jsonpath={.status.phase}=Bound",
        DEFAULT_TIMEOUT,
    );
    ns.kubectl(&[
        "patch",
        "pvc",
        "grow",
        "--type=merge",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    ns.wait(
        "pvc/grow",
        "jsonpath={.status.capacity.storage}=2Gi",
        DEFAULT_TIMEOUT,
    );
    let pvc = ns.get_json(&["pvc", "grow"]);
    let volume = pvc["spec"]["volumeName"]
        .as_str()
        .expect("bound PVC has a volume");
    let pv = cluster.get_json(&["pv", volume]);
    assert_eq!(pv["spec"]["capacity"]["storage"], "2Gi");
}

#[test]
fn third_party_crds_are_installed() {
    let cluster = Cluster::from_env();
    for crd in [
        "servicemonitors.monitoring.coreos.com",
        "podmonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
        "podchaos.chaos-mesh.org",
        "networkchaos.chaos-mesh.org",
        "applications.argoproj.io",
        "appprojects.argoproj.io",
    ] {
        cluster.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            &format!("crd/{crd}"),
        ]);
    }
    // Validation really happens server-side against the installed schema.
    let ns = cluster.namespace("crds");
    let good = r#"
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: proxy
spec:
  selector:
    matchLabels: {app.kubernetes.io/name: modfleet-proxy}
  endpoints:
    - port: admin
      path: /metrics
"#;
    ns.cluster().kubectl_stdin(
        &[
            "--namespace",
            ns.name(),
            "apply",
            "--dry-run=server",
            "-f",
            "-",
        ],
        good,
    );
    let bad = good.replace("port: admin", "port: 9090");
    let out = ns.cluster().try_kubectl_stdin(
        &[
            "--namespace",
            ns.name(),
            "apply",
            "--dry-run=server",
            "-f",
            "-",
        ],
        &bad,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("port"),
        "a ServiceMonitor whose port name is an integer must be rejected by the CRD schema: {out:?}"
    );
}

#[test]
fn helm_is_on_path() {
    let out = std::process::Command::new("helm")
        .args(["version", "--short"])
        .output()
        .expect("helm is not on PATH: run `eval \"$(hack/cluster.sh env)\"`");
    assert!(out.status.success(), "helm version failed: {out:?}");
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        version.starts_with("v4."),
        "expected helm v4, got {version}"
    );
}
