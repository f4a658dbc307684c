//! e2e tests of modfleet-operator on the local cluster (`hack/cluster.sh up`).
//!
//! Each test gets its own namespace (labelled to enforce the `restricted` Pod Security
//! Standard, so the API server itself refuses non-conforming proxy pods) and its own
//! operator process watching only that namespace, so tests run in parallel without seeing
//! each other. The operator binary is built by the first test that needs it (see
//! `modfleet_e2e::operator`). Waiting is always on a condition with a deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use modfleet_e2e::operator::{Operator, install_crd};
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT, Namespace, RWX_STORAGE_CLASS, condition};
use serde_json::Value;

const IMAGE: &str = "registry.invalid/modfleet/modfleet-proxy:e2e";

/// A namespace with operators in it. On drop, finalizers are lifted first (the operators
/// stop before the namespace is deleted, and nothing would remove them otherwise).
struct Env {
    ops: Vec<Operator>,
    ns: Namespace,
}

impl Drop for Env {
    fn drop(&mut self) {
        for op in &self.ops {
            op.stop();
        }
        self.ns.lift_finalizers();
    }
}

fn namespace(prefix: &str) -> Namespace {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace(prefix);
    ns.kubectl(&[
        "label",
        "namespace",
        ns.name(),
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]);
    ns
}

fn env(prefix: &str) -> Env {
    let ns = namespace(prefix);
    let op = Operator::start(&ns, "op", &[]);
    Env { ops: vec![op], ns }
}

fn gmp(name: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

fn basic(name: &str, replicas: i32, extra: &str) -> String {
    gmp(
        name,
        &format!("replicas: {replicas}\nupstreams:\n  - url: https://goproxy.example.com\n{extra}"),
    )
}

fn wait_ready(ns: &Namespace, name: &str) {
    ns.wait(&format!("gmp/{name}"), "condition=Ready", DEFAULT_TIMEOUT);
}

fn get(ns: &Namespace, kind: &str, name: &str) -> Value {
    ns.get_json(&[kind, name])
}

fn exists(ns: &Namespace, kind: &str, name: &str) -> bool {
    ns.try_kubectl(&["get", kind, name, "-o", "name"])
        .status
        .success()
}

fn uid(v: &Value) -> String {
    v["metadata"]["uid"].as_str().expect("uid").to_owned()
}

/// Controller owner reference to `owner_uid` and the fleet's labels.
fn assert_owned(obj: &Value, owner_uid: &str, instance: &str) {
    let what = format!("{} {}", obj["kind"], obj["metadata"]["name"]);
    let refs = obj["metadata"]["ownerReferences"]
        .as_array()
        .unwrap_or_else(|| panic!("{what} has no ownerReferences"));
    assert!(
        refs.iter().any(|r| r["uid"] == owner_uid
            && r["controller"] == true
            && r["kind"] == "GoModuleProxy"),
        "{what} is not controlled by the GoModuleProxy: {refs:?}"
    );
    let l = &obj["metadata"]["labels"];
    assert_eq!(l["app.kubernetes.io/name"], "modfleet-proxy", "{what}");
    assert_eq!(l["app.kubernetes.io/instance"], instance, "{what}");
    assert_eq!(
        l["app.kubernetes.io/managed-by"], "modfleet-operator",
        "{what}"
    );
}

fn has_owner(obj: &Value, owner_uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["uid"] == owner_uid)
}

fn names(ns: &Namespace, kind: &str, selector: &str) -> Vec<String> {
    let list = ns.get_json(&[kind, "-l", selector]);
    let mut v: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    v.sort();
    v
}

fn instance(name: &str) -> String {
    format!("app.kubernetes.io/instance={name}")
}

/// Reasons of the Events about GoModuleProxy `name`.
fn event_reasons(ns: &Namespace, name: &str) -> Vec<String> {
    let list = ns.get_json(&[
        "events",
        "--field-selector",
        &format!("involvedObject.kind=GoModuleProxy,involvedObject.name={name}"),
    ]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect()
}

fn reconciles(op: &Operator) -> f64 {
    op.metric("modfleet_operator_reconciles_total")
        .unwrap_or(-1.0)
}

#[test]
fn three_member_fleet_has_owned_children_and_becomes_ready() {
    let env = env("op-fleet");
    let ns = &env.ns;
    ns.apply(&basic(
        "gomod",
        3,
        "excludePatterns: [\"corp.example.com/*\"]\ntelemetry: {otlpEndpoint: \"http://otel.obs:4317\", samplingRatio: 0.5}",
    ));
    wait_ready(ns, "gomod");

    let g = get(ns, "gmp", "gomod");
    let owner = uid(&g);
    assert_eq!(g["status"]["members"], 3);
    assert_eq!(g["status"]["readyMembers"], 3);
    assert_eq!(
        g["status"]["endpoint"],
        format!("http://gomod.{}.svc:80", ns.name())
    );
    assert_eq!(
        g["status"]["observedGeneration"],
        g["metadata"]["generation"]
    );
    assert_eq!(condition(&g, "Ready")["reason"], "AllMembersReady");
    assert_eq!(condition(&g, "Progressing")["status"], "False");
    assert_eq!(condition(&g, "Degraded")["status"], "False");
    assert_eq!(
        g["metadata"]["finalizers"],
        serde_json::json!(["modfleet.dev/cache-retention"])
    );

    for (kind, name) in [
        ("configmap", "gomod-config"),
        ("serviceaccount", "gomod"),
        ("service", "gomod"),
        ("service", "gomod-peers"),
        ("poddisruptionbudget", "gomod"),
        ("networkpolicy", "gomod"),
        ("secret", "gomod-peer-token"),
        ("role", "gomod-peers"),
        ("rolebinding", "gomod-peers"),
        ("deployment", "gomod-0"),
        ("deployment", "gomod-1"),
        ("deployment", "gomod-2"),
        ("pvc", "gomod-cache-0"),
        ("pvc", "gomod-cache-1"),
        ("pvc", "gomod-cache-2"),
    ] {
        assert_owned(&get(ns, kind, name), &owner, "gomod");
    }
    for i in 0..3 {
        let pvc = get(ns, "pvc", &format!("gomod-cache-{i}"));
        assert_eq!(pvc["status"]["phase"], "Bound");
        assert_eq!(
            pvc["spec"]["accessModes"],
            serde_json::json!(["ReadWriteOnce"])
        );
        let d = get(ns, "deployment", &format!("gomod-{i}"));
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["image"], IMAGE);
        // Peer fill (on by default for PerMember) reads EndpointSlices with the token.
        assert_eq!(pod["automountServiceAccountToken"], true);
        let env: BTreeMap<String, String> = pod["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap().to_owned(),
                    e["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel.obs:4317");
        assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.5");
    }
    // The pods exist: the restricted namespace admitted them.
    let pods = ns.get_json(&["pods", "-l", &instance("gomod")]);
    assert_eq!(pods["items"].as_array().unwrap().len(), 3);

    let cm = get(ns, "configmap", "gomod-config");
    let config = cm["data"]["config.yaml"].as_str().unwrap();
    assert!(config.contains("https://goproxy.example.com"), "{config}");
    assert!(config.contains("corp.example.com/*"), "{config}");
    let svc = get(ns, "service", "gomod");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        get(ns, "service", "gomod-peers")["spec"]["clusterIP"],
        "None"
    );

    let reasons = event_reasons(ns, "gomod");
    for want in ["CreatedMember", "CreatedCache", "AllMembersReady"] {
        assert!(
            reasons.iter().any(|r| r == want),
            "no {want} event in {reasons:?}"
        );
    }

    // A reconcile that changes nothing keeps the status (and its lastTransitionTime).
    let before = condition(&g, "Ready")["lastTransitionTime"].clone();
    let op = &env.ops[0];
    let n = reconciles(op);
    ns.kubectl(&["annotate", "gmp", "gomod", "e2e/poke=1"]);
    ns.eventually("a reconcile after the poke", DEFAULT_TIMEOUT, || {
        (reconciles(op) > n).then_some(())
    });
    let after = get(ns, "gmp", "gomod");
    assert_eq!(condition(&after, "Ready")["lastTransitionTime"], before);
    assert_eq!(after["status"], g["status"]);
    assert!(
        op.metric("modfleet_operator_reconcile_duration_seconds_count")
            .unwrap()
            > 0.0
    );
}

/// The status write is conditional on the version of the fleet it was computed from. A
/// reconcile that works from a watch cache still behind the operator's own last write would
/// otherwise restart `lastTransitionTime` (CI saw Ready's move by a second under load).
#[test]
fn a_status_computed_from_a_stale_read_is_not_written() {
    use kube::Api;
    use modfleet_operator::controller::{StatusWrite, patch_status};
    use modfleet_operator::crd::{GoModuleProxy, GoModuleProxyStatus};

    // No operator here: the test is the only writer.
    let ns = namespace("op-stale");
    ns.apply(&basic("stale", 1, ""));
    let status = |members, endpoint: &str| GoModuleProxyStatus {
        members,
        endpoint: endpoint.into(),
        ..GoModuleProxyStatus::default()
    };
    let (first, second) = (status(1, "http://first"), status(2, "http://second"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = kube::Client::try_default().await.expect("kube client");
        let api: Api<GoModuleProxy> = Api::namespaced(client, ns.name());
        let read = api.get("stale").await.unwrap();
        let write = |read, status| patch_status(&api, read, status);
        assert_eq!(write(&read, &first).await.unwrap(), StatusWrite::Written);
        // Our own write moved the fleet on: `read` is now stale.
        assert_eq!(write(&read, &second).await.unwrap(), StatusWrite::Stale);
        assert_eq!(
            api.get_status("stale").await.unwrap().status.as_ref(),
            Some(&first)
        );
        let fresh = api.get("stale").await.unwrap();
        assert_eq!(write(&fresh, &second).await.unwrap(), StatusWrite::Written);
        assert_eq!(
            api.get_status("stale").await.unwrap().status.as_ref(),
            Some(&second)
        );
    });
}

#[test]
fn shared_mode_uses_one_deployment_and_an_rwx_claim() {
    let env = env("op-shared");
    let ns = &env.ns;
    ns.apply(&basic(
        "shared",
        2,
        &format!("cache: {{mode: Shared, storageClassName: {RWX_STORAGE_CLASS}, size: 5Gi}}"),
    ));
    wait_ready(ns, "shared");
    let owner = uid(&get(ns, "gmp", "shared"));
    let d = get(ns, "deployment", "shared");
    assert_owned(&d, &owner, "shared");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        names(ns, "deployment", &instance("shared")),
        ["shared"],
        "no per-member Deployments in Shared mode"
    );
    let pvc = get(ns, "pvc", "shared-cache");
    assert_owned(&pvc, &owner, "shared");
    assert_eq!(
        pvc["spec"]["accessModes"],
        serde_json::json!(["ReadWriteMany"])
    );
    assert_eq!(pvc["spec"]["storageClassName"], RWX_STORAGE_CLASS);
    assert_eq!(pvc["status"]["phase"], "Bound");
    assert!(exists(ns, "poddisruptionbudget", "shared"));
    assert_eq!(get(ns, "gmp", "shared")["status"]["readyMembers"], 2);

    // The mode cannot change.
    let out = ns.cluster().try_kubectl_stdin(
        &["--namespace", ns.name(), "apply", "-f", "-"],
        &basic("shared", 2, "cache: {mode: PerMember, size: 5Gi}"),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cache.mode is immutable"), "{err}");
}

#[test]
fn network_policy_and_pdb_follow_the_spec() {
    let env = env("op-netpol");
    let ns = &env.ns;
    ns.apply(&basic("np", 1, "networkPolicy: {enabled: false}"));
    wait_ready(ns, "np");
    assert!(!exists(ns, "networkpolicy", "np"));
    assert!(
        !exists(ns, "poddisruptionbudget", "np"),
        "no PDB for one member"
    );

    ns.apply(&basic(
        "np",
        2,
        "networkPolicy:\n  enabled: true\n  metricsFrom: [{namespaceSelector: {matchLabels: {name: monitoring}}}]\n  egressPorts: [443, 8443]",
    ));
    let owner = uid(&get(ns, "gmp", "np"));
    let np = ns.eventually("the NetworkPolicy", DEFAULT_TIMEOUT, || {
        exists(ns, "networkpolicy", "np").then(|| get(ns, "networkpolicy", "np"))
    });
    assert_owned(&np, &owner, "np");
    let spec = &np["spec"];
    assert_eq!(
        spec["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_eq!(spec["ingress"][0]["ports"][0]["port"], 8080);
    assert_eq!(spec["ingress"][1]["ports"][0]["port"], 9090);
    assert_eq!(spec["egress"][0]["ports"][0]["port"], 53);
    assert_eq!(spec["egress"][1]["to"][0]["ipBlock"]["cidr"], "0.0.0.0/0");
    assert_eq!(spec["egress"][1]["ports"][1]["port"], 8443);
    ns.eventually("the PDB", DEFAULT_TIMEOUT, || {
        exists(ns, "poddisruptionbudget", "np").then_some(())
    });
    wait_ready(ns, "np");

    ns.apply(&basic("np", 1, "networkPolicy: {enabled: false}"));
    ns.eventually("NetworkPolicy and PDB removed", DEFAULT_TIMEOUT, || {
        (!exists(ns, "networkpolicy", "np") && !exists(ns, "poddisruptionbudget", "np"))
            .then_some(())
    });
}

#[test]
fn drift_is_repaired_and_only_our_orphans_are_deleted() {
    let env = env("op-drift");
    let ns = &env.ns;
    ns.apply(&basic("drift", 2, ""));
    wait_ready(ns, "drift");
    let owner = uid(&get(ns, "gmp", "drift"));

    // Deleted children come back.
    let old_cm = uid(&get(ns, "configmap", "drift-config"));
    ns.kubectl(&["delete", "configmap", "drift-config"]);
    ns.kubectl(&["delete", "service", "drift-peers"]);
    ns.eventually("ConfigMap and Service recreated", DEFAULT_TIMEOUT, || {
        (exists(ns, "configmap", "drift-config")
            && exists(ns, "service", "drift-peers")
            && uid(&get(ns, "configmap", "drift-config")) != old_cm)
            .then_some(())
    });

    // Edited fields we own are set back.
    ns.kubectl(&[
        "set",
        "image",
        "deployment/drift-0",
        "proxy=registry.invalid/evil:1",
    ]);
    ns.kubectl(&["scale", "deployment/drift-1", "--replicas=3"]);
    ns.eventually("Deployments repaired", DEFAULT_TIMEOUT, || {
        let d0 = get(ns, "deployment", "drift-0");
        let d1 = get(ns, "deployment", "drift-1");
        (d0["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
            && d1["spec"]["replicas"] == 1)
            .then_some(())
    });

    // A look-alike with our labels but no owner reference is left alone; one with our
    // labels and our owner reference that we do not want is deleted.
    let labels = "    app.kubernetes.io/name: modfleet-proxy\n    app.kubernetes.io/instance: drift\n    app.kubernetes.io/managed-by: modfleet-operator\n    app.kubernetes.io/component: config\n";
    ns.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: drift-lookalike\n  labels:\n{labels}data: {{a: b}}\n"
    ));
    ns.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: drift-stale\n  labels:\n{labels}  ownerReferences:\n  - apiVersion: modfleet.dev/v1alpha1\n    kind: GoModuleProxy\n    name: drift\n    uid: {owner}\n    controller: true\ndata: {{a: b}}\n"
    ));
    ns.eventually("the stale ConfigMap deleted", DEFAULT_TIMEOUT, || {
        (!exists(ns, "configmap", "drift-stale")).then_some(())
    });
    assert!(exists(ns, "configmap", "drift-lookalike"));
    wait_ready(ns, "drift");
}

#[test]
fn config_change_rolls_members_one_at_a_time() {
    let env = env("op-roll");
    let ns = &env.ns;
    ns.apply(&basic("roll", 3, ""));
    wait_ready(ns, "roll");
    let hash = |d: &Value| d["metadata"]["annotations"]["modfleet.dev/template-hash"].clone();
    let old: Vec<Value> = (0..3)
        .map(|i| hash(&get(ns, "deployment", &format!("roll-{i}"))))
        .collect();

    ns.apply(&basic(
        "roll",
        3,
        "excludePatterns: [\"corp.example.com/*\"]",
    ));
    let mut seen_partial = false;
    ns.eventually("all members rolled", Duration::from_secs(180), || {
        let list = ns.get_json(&["deployments", "-l", &instance("roll")]);
        let mut members: Vec<(String, bool, bool)> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let name = d["metadata"]["name"].as_str().unwrap().to_owned();
                let i: usize = name.rsplit('-').next().unwrap().parse().unwrap();
                let changed = hash(d) != old[i];
                let st = &d["status"];
                let ready = st["observedGeneration"] == d["metadata"]["generation"]
                    && st["updatedReplicas"] == 1
                    && st["readyReplicas"] == 1;
                (name, changed, ready)
            })
            .collect();
        members.sort();
        // The invariant: member i+1 has the new template only if member i has it and is Ready.
        for w in members.windows(2) {
            if w[1].1 {
                assert!(
                    w[0].1 && w[0].2,
                    "{} was updated before {} was Ready on the new template: {members:?}",
                    w[1].0,
                    w[0].0
                );
            }
        }
        let changed = members.iter().filter(|m| m.1).count();
        if changed > 0 && changed < 3 {
            seen_partial = true;
        }
        (changed == 3 && members.iter().all(|m| m.2)).then_some(())
    });
    wait_ready(ns, "roll");
    let new_config = get(ns, "configmap", "roll-config");
    assert!(
        new_config["data"]["config.yaml"]
            .as_str()
            .unwrap()
            .contains("corp.example.com")
    );
    let rolled = String::from_utf8_lossy(
        &ns.try_kubectl(&["get", "events", "-o", "jsonpath={.items[*].message}"])
            .stdout,
    )
    .into_owned();
    for i in 0..3 {
        assert!(
            rolled.contains(&format!("Updating roll-{i} to the current configuration")),
            "no rollout event for roll-{i}: {rolled}"
        );
    }
    eprintln!("observed an intermediate rollout state: {seen_partial}");
}

fn scale_down(policy: &str) {
    let env = env(&format!("op-scale-{}", policy.to_lowercase()));
    let ns = &env.ns;
    ns.apply(&basic(
        "sc",
        3,
        &format!("cache: {{retainPolicy: {policy}, size: 1Gi}}"),
    ));
    wait_ready(ns, "sc");
    let owner = uid(&get(ns, "gmp", "sc"));
    // The scale subresource as an autoscaler reads it: replicas, and a selector that finds
    // exactly the fleet's pods (what a HorizontalPodAutoscaler averages metrics over).
    let scale: Value = serde_json::from_str(&ns.kubectl(&[
        "get",
        "--raw",
        &format!(
            "/apis/modfleet.dev/v1alpha1/namespaces/{}/gomoduleproxies/sc/scale",
            ns.name()
        ),
    ]))
    .expect("scale JSON");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["replicas"], 3);
    let selector = scale["status"]["selector"].as_str().unwrap_or_default();
    assert!(
        selector.contains("app.kubernetes.io/instance=sc"),
        "{scale}"
    );
    assert_eq!(names(ns, "pods", selector).len(), 3, "pods of {selector}");
    // Through the scale subresource, as `kubectl scale` and autoscalers do.
    ns.kubectl(&["scale", "gmp/sc", "--replicas=1"]);
    ns.eventually("members 1 and 2 removed", DEFAULT_TIMEOUT, || {
        (names(ns, "deployment", &instance("sc")) == ["sc-0"]).then_some(())
    });
    ns.eventually("status shows one member", DEFAULT_TIMEOUT, || {
        let g = get(ns, "gmp", "sc");
        (g["status"]["members"] == 1 && condition(&g, "Ready")["status"] == "True").then_some(())
    });
    assert!(!exists(ns, "poddisruptionbudget", "sc"));
    if policy == "Retain" {
        ns.eventually("caches 1 and 2 released", DEFAULT_TIMEOUT, || {
            (1..3)
                .all(|i| !has_owner(&get(ns, "pvc", &format!("sc-cache-{i}")), &owner))
                .then_some(())
        });
        assert_eq!(get(ns, "pvc", "sc-cache-1")["status"]["phase"], "Bound");
        // Scaling up again adopts the kept cache.
        ns.kubectl(&["scale", "gmp/sc", "--replicas=2"]);
        wait_ready(ns, "sc");
        ns.eventually("cache 1 adopted again", DEFAULT_TIMEOUT, || {
            has_owner(&get(ns, "pvc", "sc-cache-1"), &owner).then_some(())
        });
        assert!(!has_owner(&get(ns, "pvc", "sc-cache-2"), &owner));
    } else {
        ns.eventually("caches 1 and 2 deleted", DEFAULT_TIMEOUT, || {
            (names(ns, "pvc", &instance("sc")) == ["sc-cache-0"]).then_some(())
        });
    }
    assert_owned(&get(ns, "pvc", "sc-cache-0"), &owner, "sc");
}

#[test]
fn scale_down_under_retain_keeps_caches() {
    scale_down("Retain");
}

#[test]
fn scale_down_under_delete_removes_caches() {
    scale_down("Delete");
}

#[test]
fn deleting_the_fleet_keeps_or_deletes_caches_per_policy() {
    let env = env("op-delete");
    let ns = &env.ns;
    ns.apply(&basic(
        "keep",
        1,
        "cache: {retainPolicy: Retain, size: 1Gi}",
    ));
    ns.apply(&basic(
        "drop",
        1,
        "cache: {retainPolicy: Delete, size: 1Gi}",
    ));
    wait_ready(ns, "keep");
    wait_ready(ns, "drop");
    let keep_uid = uid(&get(ns, "gmp", "keep"));
    ns.kubectl(&[
        "delete",
        "gmp",
        "keep",
        "drop",
        "--wait=true",
        "--timeout=120s",
    ]);
    // The garbage collector removes everything else through the owner references.
    ns.eventually("children garbage-collected", DEFAULT_TIMEOUT, || {
        (names(ns, "deployment", &instance("keep")).is_empty()
            && names(ns, "deployment", &instance("drop")).is_empty()
            && !exists(ns, "configmap", "keep-config")
            && !exists(ns, "service", "drop"))
        .then_some(())
    });
    ns.eventually("drop's cache deleted", DEFAULT_TIMEOUT, || {
        (!exists(ns, "pvc", "drop-cache-0")).then_some(())
    });
    let kept = get(ns, "pvc", "keep-cache-0");
    assert!(!has_owner(&kept, &keep_uid));
    assert_eq!(kept["status"]["phase"], "Bound");
}

#[test]
fn invalid_fleets_are_rejected_with_clear_messages() {
    let ns = namespace("op-invalid");
    let cases = [
        (
            basic("bad-url", 1, "")
                .replace("https://goproxy.example.com", "ftp://goproxy.example.com"),
            "upstream url must be an absolute http:// or https:// URL",
        ),
        (
            gmp("no-upstreams", "upstreams: []"),
            "at least one upstream is required",
        ),
        (
            gmp(
                "weight",
                "upstreams:\n  - url: https://goproxy.example.com\n    weight: 0",
            ),
            "upstream weight must be at least 1",
        ),
        (
            gmp(
                "timeout",
                "upstreams:\n  - url: https://goproxy.example.com\n    timeout: soon",
            ),
            "upstream timeout must be a duration",
        ),
        (
            basic("size", 1, "cache: {size: lots}"),
            "cache.size must be a positive quantity",
        ),
        (basic("negative", -1, ""), "spec.replicas"),
        (
            basic("shared", 2, "cache: {mode: Shared}"),
            "supports ReadWriteMany",
        ),
        (basic("9lives", 1, ""), "DNS-1035"),
        (
            basic("mode", 1, "cache: {mode: Sometimes}"),
            "Unsupported value: \"Sometimes\"",
        ),
    ];
    for (yaml, want) in &cases {
        ns.assert_refused(yaml, want);
    }
    // Defaults are filled in by the API server for a minimal object.
    ns.apply(&gmp(
        "minimal",
        "upstreams: [{url: https://goproxy.example.com}]",
    ));
    let g = get(&ns, "gmp", "minimal");
    assert_eq!(g["spec"]["replicas"], 1);
    assert_eq!(g["spec"]["cache"]["mode"], "PerMember");
    assert_eq!(g["spec"]["cache"]["retainPolicy"], "Retain");
    assert_eq!(g["spec"]["cache"]["size"], "20Gi");
    assert_eq!(g["spec"]["service"]["port"], 80);
    // Immutable mode.
    let out = ns.cluster().try_kubectl_stdin(
        &["--namespace", ns.name(), "apply", "-f", "-"],
        &gmp(
            "minimal",
            &format!("upstreams: [{{url: https://goproxy.example.com}}]\ncache: {{mode: Shared, storageClassName: {RWX_STORAGE_CLASS}}}"),
        ),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cache.mode is immutable"));
}

#[test]
fn two_replicas_elect_one_leader_and_fail_over() {
    let ns = namespace("op-leader");
    let ns_name = ns.name().to_owned();
    let flags = [
        "--leader-election",
        "--leader-election-namespace",
        &ns_name,
        "--leader-election-name",
        "modfleet-operator-e2e",
        "--lease-duration",
        "6s",
    ];
    let a = Operator::start(&ns, "a", &flags);
    let b = Operator::start(&ns, "b", &flags);
    let env = Env {
        ops: vec![a, b],
        ns,
    };
    let ns = &env.ns;
    let holder = || {
        ns.try_kubectl(&[
            "get",
            "lease",
            "modfleet-operator-e2e",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .stdout
    };
    let leader = ns.eventually("a Lease holder", DEFAULT_TIMEOUT, || {
        let h = String::from_utf8_lossy(&holder()).into_owned();
        (h == "a" || h == "b").then_some(h)
    });
    let (li, fi) = if leader == "a" { (0, 1) } else { (1, 0) };

    ns.apply(&basic("le", 1, ""));
    wait_ready(ns, "le");
    let (l, f) = (&env.ops[li], &env.ops[fi]);
    assert!(reconciles(l) > 0.0, "the leader reconciled");
    assert_eq!(reconciles(f), 0.0, "the follower must not reconcile");
    assert_eq!(l.metric("modfleet_operator_leader"), Some(1.0));
    assert_eq!(f.metric("modfleet_operator_leader"), Some(0.0));

    // Graceful stop of the leader releases the Lease; the follower takes over.
    assert!(
        env.ops[li].stop(),
        "the leader shuts down cleanly on SIGTERM"
    );
    let follower = env.ops[fi].identity.clone();
    ns.eventually("the follower holds the Lease", DEFAULT_TIMEOUT, || {
        (String::from_utf8_lossy(&holder()) == follower).then_some(())
    });
    ns.kubectl(&["scale", "gmp/le", "--replicas=2"]);
    ns.eventually("the new leader reconciles", DEFAULT_TIMEOUT, || {
        let g = get(ns, "gmp", "le");
        (g["status"]["members"] == 2).then_some(())
    });
    wait_ready(ns, "le");
    assert!(reconciles(&env.ops[fi]) > 0.0);
    env.ops[fi].assert_running();

    // A leader that dies without releasing the Lease is replaced once the Lease expires.
    let c = Operator::start(ns, "c", &flags);
    env.ops[fi].kill();
    ns.eventually("c holds the expired Lease", DEFAULT_TIMEOUT, || {
        (String::from_utf8_lossy(&holder()) == "c").then_some(())
    });
    ns.kubectl(&["scale", "gmp/le", "--replicas=1"]);
    ns.eventually("c reconciles", DEFAULT_TIMEOUT, || {
        (get(ns, "gmp", "le")["status"]["members"] == 1).then_some(())
    });
    assert!(reconciles(&c) > 0.0);
}

#[test]
fn failures_are_reported_and_retried_until_they_clear() {
    let env = env("op-fail");
    let ns = &env.ns;
    // A quota that allows one PVC: member 1's cache cannot be created.
    ns.apply(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: one-pvc\nspec:\n  hard:\n    persistentvolumeclaims: \"1\"\n",
    );
    ns.wait(
        "resourcequota/one-pvc",
        "jsonpath={.status.hard.persistentvolumeclaims}=1",
        DEFAULT_TIMEOUT,
    );
    ns.apply(&basic("fail", 2, "cache: {size: 1Gi}"));
    let degraded = ns.eventually("Degraded=True", DEFAULT_TIMEOUT, || {
        let c = condition(&get(ns, "gmp", "fail"), "Degraded");
        (c["status"] == "True").then_some(c)
    });
    assert_eq!(degraded["reason"], "ReconcileFailed");
    let msg = degraded["message"].as_str().unwrap();
    assert!(
        msg.contains("PersistentVolumeClaim fail-cache-1") && msg.contains("exceeded quota"),
        "the message names the object and the cause: {msg}"
    );
    assert_eq!(
        condition(&get(ns, "gmp", "fail"), "Ready")["status"],
        "False"
    );
    ns.eventually("a Warning event ApplyFailed", DEFAULT_TIMEOUT, || {
        event_reasons(ns, "fail")
            .iter()
            .any(|r| r == "ApplyFailed")
            .then_some(())
    });
    let op = &env.ops[0];
    let errors = op
        .http_get("/metrics")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("modfleet_operator_reconcile_errors_total{reason=\"ApplyFailed\"}"));
    assert!(errors, "errors are counted by reason");

    // Lift the quota: the retry (with backoff) converges without any change to the CR.
    ns.kubectl(&["delete", "resourcequota", "one-pvc"]);
    wait_ready(ns, "fail");
    let g = get(ns, "gmp", "fail");
    assert_eq!(condition(&g, "Degraded")["status"], "False");
    assert_eq!(g["status"]["readyMembers"], 2);
}

/// Deletes a cluster-scoped object on drop.
struct ClusterObject(Cluster, String);

impl Drop for ClusterObject {
    fn drop(&mut self) {
        let _ = self.0.try_kubectl(&["delete", &self.1, "--wait=false"]);
    }
}

#[test]
fn growing_the_cache_expands_claims_where_the_class_allows_it() {
    let env = env("op-grow");
    let ns = &env.ns;
    // A class of the local provisioner that cannot expand volumes.
    let fixed = format!("fixed-{}", ns.name());
    ns.cluster().kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: {fixed}\nprovisioner: modfleet.dev/fake-provisioner\nreclaimPolicy: Delete\nvolumeBindingMode: Immediate\nallowVolumeExpansion: false\n"
        ),
    );
    let _class = ClusterObject(ns.cluster().clone(), format!("storageclass/{fixed}"));
    ns.apply(&basic("grow", 1, "cache: {size: 1Gi}"));
    ns.apply(&basic(
        "fixed",
        1,
        &format!("cache: {{size: 1Gi, storageClassName: {fixed}}}"),
    ));
    wait_ready(ns, "grow");
    wait_ready(ns, "fixed");

    ns.apply(&basic("grow", 1, "cache: {size: 2Gi}"));
    ns.apply(&basic(
        "fixed",
        1,
        &format!("cache: {{size: 2Gi, storageClassName: {fixed}}}"),
    ));
    ns.eventually("grow-cache-0 expanded to 2Gi", DEFAULT_TIMEOUT, || {
        let p = get(ns, "pvc", "grow-cache-0");
        (p["spec"]["resources"]["requests"]["storage"] == "2Gi"
            && p["status"]["capacity"]["storage"] == "2Gi")
            .then_some(())
    });
    ns.eventually(
        "a CacheResizeRefused warning for fixed",
        DEFAULT_TIMEOUT,
        || {
            event_reasons(ns, "fixed")
                .iter()
                .any(|r| r == "CacheResizeRefused")
                .then_some(())
        },
    );
    assert_eq!(
        get(ns, "pvc", "fixed-cache-0")["spec"]["resources"]["requests"]["storage"],
        "1Gi"
    );
    // The new size also reaches the proxy config (90% of it), which rolls the member.
    ns.eventually(
        "grow's config follows the new size",
        DEFAULT_TIMEOUT,
        || {
            let cm = get(ns, "configmap", "grow-config");
            cm["data"]["config.yaml"]
                .as_str()
                .unwrap_or_default()
                .contains("cacheMaxBytes: 1932735283")
                .then_some(())
        },
    );
    wait_ready(ns, "grow");
    wait_ready(ns, "fixed");
    assert_eq!(
        condition(&get(ns, "gmp", "fixed"), "Degraded")["status"],
        "False"
    );
    // fixed's proxies keep an eviction limit that fits the volume they really have.
    let cm = get(ns, "configmap", "fixed-config");
    let config = cm["data"]["config.yaml"].as_str().unwrap_or_default();
    assert!(config.contains("cacheMaxBytes: 966367641"), "{config}");
}
