//! Everything under `examples/`: accepted by the real API server (`kubectl apply
//! --dry-run=server`, with the GoModuleProxy CRD and the third-party CRDs that
//! `hack/cluster.sh up` installs: Prometheus Operator, Argo CD), documented, and the Argo CD
//! health check run in Argo CD's own Lua engine (gopher-lua, `e2e/argocd-health`) against a
//! table of objects.

use modfleet_e2e::Cluster;
use modfleet_e2e::argocd::argocd_health;
use modfleet_e2e::examples::{example_files, examples_dir, rel};
use modfleet_e2e::helm::{chart_dir, yaml_to_objects};
use modfleet_e2e::operator::install_crd;
use modfleet_testkit::workspace::workspace_root;

/// Creates a namespace the examples name explicitly (argocd), if missing.
fn ensure_namespace(cluster: &Cluster, name: &str) {
    if !cluster
        .try_kubectl(&["get", "namespace", name])
        .status
        .success()
    {
        let out = cluster.try_kubectl(&["create", "namespace", name]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || err.contains("AlreadyExists"),
            "creating namespace {name}: {err}"
        );
    }
}

#[test]
fn every_example_passes_server_side_dry_run() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("examples");
    let files = example_files();
    let names: Vec<String> = files.iter().map(|p| rel(p)).collect();
    for want in [
        "examples/small-cache.yaml",
        "examples/ha-fleet.yaml",
        "examples/private-modules.yaml",
        "examples/metrics.yaml",
        "examples/access-control.yaml",
        "examples/tiered-fleet.yaml",
        "examples/argocd/modfleet.yaml",
        "examples/argocd/apps/operator.yaml",
        "examples/argocd/apps/fleet.yaml",
        "examples/argocd/argocd-cm-health.yaml",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let objs = yaml_to_objects(&cluster, &text);
        assert!(!objs.is_empty(), "{}: no objects", rel(file));
        // Objects that name their namespace (Argo CD's) go there; the others into the
        // test namespace, as `kubectl apply -n NAMESPACE -f FILE` would.
        let fixed: Vec<&str> = objs
            .iter()
            .filter_map(|o| o["metadata"]["namespace"].as_str())
            .collect();
        let mut args = vec!["apply", "--dry-run=server", "-f", file.to_str().unwrap()];
        if fixed.is_empty() {
            args.extend(["--namespace", ns.name()]);
        } else {
            for n in &fixed {
                ensure_namespace(&cluster, n);
            }
        }
        let out = cluster.try_kubectl(&args);
        if !out.status.success() {
            failures.push(format!(
                "{}: {}",
                rel(file),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn argocd_applications_point_at_paths_that_exist_and_use_server_side_apply() {
    let cluster = Cluster::from_env();
    let root = workspace_root();
    let mut apps = 0;
    for file in example_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for app in yaml_to_objects(&cluster, &text)
            .into_iter()
            .filter(|o| o["kind"] == "Application")
        {
            apps += 1;
            let name = app["metadata"]["name"].as_str().unwrap_or("?").to_owned();
            let src = &app["spec"]["source"];
            let path = src["path"].as_str().expect("source.path");
            assert!(
                root.join(path).is_dir(),
                "{name}: source.path {path} does not exist"
            );
            if let Some(include) = src["directory"]["include"].as_str() {
                assert!(
                    root.join(path).join(include).is_file(),
                    "{name}: {path}/{include} does not exist"
                );
            }
            if path == "charts/modfleet" {
                assert_eq!(root.join(path), chart_dir());
            }
            let opts: Vec<&str> = app["spec"]["syncPolicy"]["syncOptions"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            assert!(
                opts.contains(&"ServerSideApply=true"),
                "{name}: syncOptions lack ServerSideApply=true: {opts:?}"
            );
        }
    }
    assert!(
        apps >= 3,
        "expected the root, operator and fleet Applications"
    );
    // The CRD comes before the fleet: operator wave < fleet wave.
    let wave = |f: &str| -> i64 {
        let text = std::fs::read_to_string(examples_dir().join("argocd/apps").join(f)).unwrap();
        let objs = yaml_to_objects(&cluster, &text);
        objs[0]["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
            .as_str()
            .expect("sync-wave")
            .parse()
            .unwrap()
    };
    assert!(wave("operator.yaml") < wave("fleet.yaml"));
}

#[test]
fn argocd_cm_carries_the_health_script_verbatim() {
    let cluster = Cluster::from_env();
    let script = std::fs::read_to_string(examples_dir().join("argocd/health.lua")).unwrap();
    let cm = std::fs::read_to_string(examples_dir().join("argocd/argocd-cm-health.yaml")).unwrap();
    let objs = yaml_to_objects(&cluster, &cm);
    assert_eq!(objs.len(), 1);
    assert_eq!(objs[0]["kind"], "ConfigMap");
    assert_eq!(objs[0]["metadata"]["name"], "argocd-cm");
    let key = "resource.customizations.health.modfleet.dev_GoModuleProxy";
    assert_eq!(
        objs[0]["data"][key].as_str(),
        Some(script.as_str()),
        "examples/argocd/argocd-cm-health.yaml's {key} differs from health.lua"
    );
}

/// The health check on GoModuleProxies as the API server returns them (CRD defaults filled
/// in), with no operator running: no status is Progressing; a status the operator would
/// write for a failure (set here through the status subresource) is Degraded; a stale one
/// is Progressing. (`tests/chart.rs` checks Healthy on fleets a real operator made Ready.)
#[test]
fn argocd_health_check_on_objects_from_the_api_server() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("examples-health");
    let text = std::fs::read_to_string(examples_dir().join("small-cache.yaml")).unwrap();
    ns.apply(&text);
    let fresh = ns.get_json(&["gmp", "gomod"]);
    let (status, message) = argocd_health(&fresh);
    assert_eq!(status, "Progressing", "{message}");
    assert!(
        message.contains("Waiting for the modfleet operator"),
        "{message}"
    );

    let generation = fresh["metadata"]["generation"].as_i64().unwrap();
    let patch = serde_json::json!({ "status": {
        "observedGeneration": generation,
        "members": 1, "readyMembers": 0, "endpoint": "",
        "conditions": [
            { "type": "Ready", "status": "False", "reason": "MembersNotReady",
              "message": "0/1 members are ready", "lastTransitionTime": "2026-01-01T00:00:00Z" },
            { "type": "Progressing", "status": "False", "reason": "RolloutComplete",
              "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z" },
            { "type": "Degraded", "status": "True", "reason": "ReconcileFailed",
              "message": "applying Deployment gomod-0: forbidden",
              "lastTransitionTime": "2026-01-01T00:00:00Z" }
        ]
    }});
    ns.kubectl(&[
        "patch",
        "gmp",
        "gomod",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]);
    let failed = ns.get_json(&["gmp", "gomod"]);
    let (status, message) = argocd_health(&failed);
    assert_eq!(status, "Degraded", "{message}");
    assert!(
        message.contains("ReconcileFailed: applying Deployment gomod-0: forbidden"),
        "{message}"
    );

    // A spec change the operator has not seen yet: Progressing, whatever the old status says.
    ns.kubectl(&[
        "patch",
        "gmp",
        "gomod",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":2}}"#,
    ]);
    let changed = ns.get_json(&["gmp", "gomod"]);
    assert_eq!(
        changed["metadata"]["generation"].as_i64(),
        Some(generation + 1)
    );
    let (status, message) = argocd_health(&changed);
    assert_eq!(status, "Progressing", "{message}");
}
