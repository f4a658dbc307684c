//! Everything under `examples/`: accepted by the real API server (`kubectl apply
//! --dry-run=server`, with the GoModuleProxy CRD and the third-party CRDs that
//! `hack/cluster.sh up` installs: Prometheus Operator, Argo CD), documented, and the Argo CD
//! health check run in Argo CD's own Lua engine (gopher-lua, `e2e/argocd-health`) against a
//! table of objects.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use modfleet_e2e::Cluster;
use modfleet_e2e::argocd::{argocd_health, health_of, health_script};
use modfleet_e2e::helm::{chart_dir, yaml_to_objects};
use modfleet_e2e::operator::{install_crd, workspace_root};
use serde_json::{Value, json};

fn examples_dir() -> PathBuf {
    workspace_root().join("examples")
}

/// Every `.yaml` file under examples/, sorted.
fn example_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&examples_dir(), &mut out);
    out.sort();
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(workspace_root())
        .unwrap_or(p)
        .display()
        .to_string()
}

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
fn every_fleet_example_says_when_to_use_it() {
    for file in example_files() {
        if file.starts_with(examples_dir().join("argocd")) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            header.contains("Use it when"),
            "{}: the leading comment must say when to use it (\"Use it when: ...\")",
            rel(&file)
        );
        assert!(text.contains("kind: GoModuleProxy"), "{}", rel(&file));
    }
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

/// A condition as the operator writes it (operator/src/status.rs).
fn cond(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({ "type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1 })
}

/// A GoModuleProxy at `generation` with `status` (null: none yet).
fn gmp(generation: i64, status: Value) -> Value {
    let mut obj = json!({
        "apiVersion": "modfleet.dev/v1alpha1", "kind": "GoModuleProxy",
        "metadata": { "name": "gomod", "namespace": "team-a", "generation": generation },
        "spec": { "replicas": 3, "upstreams": [{ "url": "https://goproxy.example.com" }] },
    });
    if !status.is_null() {
        obj["status"] = status;
    }
    obj
}

fn st(observed: i64, conditions: Vec<Value>) -> Value {
    json!({ "observedGeneration": observed, "members": 3, "readyMembers": 3,
            "endpoint": "http://gomod.team-a.svc:80", "conditions": conditions })
}

/// The reasons the operator gives `Degraded=True`, read from operator/src/status.rs
/// (`cond(DEGRADED, true, "Reason", ...)`, however rustfmt wraps it).
fn operator_failure_reasons() -> Vec<String> {
    let src = std::fs::read_to_string(workspace_root().join("operator/src/status.rs")).unwrap();
    let flat: String = src.chars().filter(|c| !c.is_whitespace()).collect();
    let reasons: Vec<String> = flat
        .split("cond(DEGRADED,true,\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect();
    assert!(
        reasons.len() >= 3,
        "found only {reasons:?} in operator/src/status.rs"
    );
    reasons
}

/// health.lua over a table of GoModuleProxies, in Argo CD's engine (gopher-lua without the
/// string library): every case gives the health Argo CD must show, never a Lua error.
#[test]
fn argocd_health_check_in_argo_cds_lua_engine() {
    let ready_true = cond(
        "Ready",
        "True",
        "AllMembersReady",
        "3/3 members are ready with the current configuration",
    );
    let prog_false = cond(
        "Progressing",
        "False",
        "RolloutComplete",
        "Every member runs the current configuration",
    );
    let degr_false = cond("Degraded", "False", "AsExpected", "No failures observed");
    // (case, object, status, a part of the message)
    let mut cases: Vec<(String, Value, &str, &str)> = vec![
        (
            "no status yet".into(),
            gmp(1, Value::Null),
            "Progressing",
            "Waiting for the modfleet operator",
        ),
        (
            "status without observedGeneration".into(),
            gmp(1, json!({ "conditions": [] })),
            "Progressing",
            "generation 1",
        ),
        (
            "status for the previous generation (even if it said Ready)".into(),
            gmp(
                3,
                st(
                    2,
                    vec![ready_true.clone(), prog_false.clone(), degr_false.clone()],
                ),
            ),
            "Progressing",
            "status is for generation 2",
        ),
        (
            "stale Degraded while a new generation is pending".into(),
            gmp(
                3,
                st(
                    2,
                    vec![
                        cond("Ready", "False", "MembersNotReady", ""),
                        prog_false.clone(),
                        cond("Degraded", "True", "ReconcileFailed", "forbidden"),
                    ],
                ),
            ),
            "Progressing",
            "generation 3",
        ),
        (
            "Ready=True".into(),
            gmp(
                2,
                st(
                    2,
                    vec![ready_true.clone(), prog_false.clone(), degr_false.clone()],
                ),
            ),
            "Healthy",
            "AllMembersReady: 3/3 members",
        ),
        (
            "scaled to zero".into(),
            gmp(
                1,
                st(
                    1,
                    vec![
                        cond(
                            "Ready",
                            "True",
                            "ScaledToZero",
                            "The fleet has no members (replicas: 0)",
                        ),
                        prog_false.clone(),
                        degr_false.clone(),
                    ],
                ),
            ),
            "Healthy",
            "ScaledToZero",
        ),
        (
            "rolling out".into(),
            gmp(
                4,
                st(
                    4,
                    vec![
                        cond("Ready", "False", "MembersNotReady", "1/3 members are ready"),
                        cond(
                            "Progressing",
                            "True",
                            "RollingOut",
                            "not yet updated: gomod-1, gomod-2",
                        ),
                        degr_false.clone(),
                    ],
                ),
            ),
            "Progressing",
            "RollingOut: not yet updated: gomod-1, gomod-2",
        ),
        (
            "scaling up, caches pending".into(),
            gmp(
                1,
                st(
                    1,
                    vec![
                        cond(
                            "Ready",
                            "False",
                            "CachePending",
                            "Waiting for cache volumes to bind: gomod-cache-2",
                        ),
                        cond(
                            "Progressing",
                            "True",
                            "ScalingUp",
                            "Scaling from 2 to 3 members",
                        ),
                        degr_false.clone(),
                    ],
                ),
            ),
            "Progressing",
            "ScalingUp",
        ),
        (
            "Ready=True and Progressing=True (a member starting)".into(),
            gmp(
                1,
                st(
                    1,
                    vec![
                        ready_true.clone(),
                        cond(
                            "Progressing",
                            "True",
                            "WaitingForMembers",
                            "2/3 members are ready",
                        ),
                        degr_false.clone(),
                    ],
                ),
            ),
            "Progressing",
            "WaitingForMembers",
        ),
        (
            "Degraded=True (RBAC)".into(),
            gmp(
                1,
                st(
                    1,
                    vec![
                        cond("Ready", "False", "MembersNotReady", ""),
                        prog_false.clone(),
                        cond(
                            "Degraded",
                            "True",
                            "ReconcileFailed",
                            "applying Deployment gomod-0: forbidden",
                        ),
                    ],
                ),
            ),
            "Degraded",
            "ReconcileFailed: applying Deployment gomod-0: forbidden",
        ),
        (
            "Degraded=True wins over Progressing=True".into(),
            gmp(
                5,
                st(
                    5,
                    vec![
                        cond("Ready", "False", "MembersNotReady", ""),
                        cond("Progressing", "True", "RollingOut", ""),
                        cond(
                            "Degraded",
                            "True",
                            "MemberFailed",
                            "Deployment gomod-1: progress deadline exceeded",
                        ),
                    ],
                ),
            ),
            "Degraded",
            "MemberFailed",
        ),
        (
            "Ready=False while members start, not progressing".into(),
            gmp(
                1,
                st(
                    1,
                    vec![
                        cond("Ready", "False", "MembersNotReady", "2/3 members are ready"),
                        prog_false.clone(),
                        degr_false.clone(),
                    ],
                ),
            ),
            "Progressing",
            "MembersNotReady",
        ),
        (
            "Ready=Unknown".into(),
            gmp(
                1,
                st(
                    1,
                    vec![cond("Ready", "Unknown", "Pending", ""), degr_false.clone()],
                ),
            ),
            "Progressing",
            "Pending",
        ),
        (
            "no conditions".into(),
            gmp(1, st(1, vec![])),
            "Progressing",
            "Waiting for the Ready condition",
        ),
        (
            "no metadata.generation".into(),
            json!({ "metadata": { "name": "x" },
                    "status": st(1, vec![ready_true.clone(), prog_false.clone(), degr_false.clone()]) }),
            "Healthy",
            "AllMembersReady",
        ),
    ];
    // Ready=False with each failure reason the operator writes (the case that raised a Lua
    // error in Argo CD while the script used string.sub), alone and under Progressing=True.
    for reason in operator_failure_reasons() {
        cases.push((
            format!("Ready=False {reason}"),
            gmp(1, st(1, vec![cond("Ready", "False", &reason, "boom")])),
            "Degraded",
            "boom",
        ));
        cases.push((
            format!("Ready=False {reason} while Progressing=True"),
            gmp(
                1,
                st(
                    1,
                    vec![
                        cond("Ready", "False", &reason, "boom"),
                        cond("Progressing", "True", "RollingOut", ""),
                    ],
                ),
            ),
            "Degraded",
            "boom",
        ));
    }
    let objs: Vec<Value> = cases.iter().map(|c| c.1.clone()).collect();
    let results = health_of(&health_script(), &objs);
    let mut failures = Vec::new();
    let mut seen = BTreeSet::new();
    for ((name, _, want, part), got) in cases.iter().zip(&results) {
        match got {
            Err(e) => failures.push(format!("{name}: Lua error in Argo CD: {e}")),
            Ok((status, message)) => {
                seen.insert(status.clone());
                if status != want || !message.contains(part) {
                    failures.push(format!(
                        "{name}: {status} {message:?}, want {want} containing {part:?}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        seen,
        BTreeSet::from(["Degraded".into(), "Healthy".into(), "Progressing".into()])
    );
}

/// The engine the table runs in is Argo CD's, not a stock Lua: `string` is missing (the bug
/// the table would have caught), a result that is not a table is an error, and a status
/// outside Argo CD's health codes becomes Unknown.
#[test]
fn argocd_lua_engine_is_as_strict_as_argo_cd() {
    let dir = tempfile_dir("argocd-engine");
    let run = |name: &str, script: &str| {
        let path = dir.join(name);
        std::fs::write(&path, script).unwrap();
        health_of(&path, &[gmp(1, Value::Null)]).pop().unwrap()
    };
    let err = run(
        "string.lua",
        "return { status = string.sub('Healthy', 1), message = '' }",
    )
    .unwrap_err();
    let nil_index = "attempt to index a non-table object(nil) with key";
    assert!(err.contains(&format!("{nil_index} 'sub'")), "{err}");
    let err = run("method.lua", "local s = 'x'\nreturn { status = s:upper() }").unwrap_err();
    assert!(err.contains("'upper'"), "{err}");
    let err = run("io.lua", "io.write('x')\nreturn {}").unwrap_err();
    assert!(err.contains(&format!("{nil_index} 'write'")), "{err}");
    let err = run("notable.lua", "return 'Healthy'").unwrap_err();
    assert!(err.contains("expect table output"), "{err}");
    assert_eq!(
        run("bad.lua", "return { status = 'Fine', message = 'x' }").unwrap(),
        (
            "Unknown".to_owned(),
            "Lua returned an invalid health status".to_owned()
        )
    );
    // `obj` is a global with the object's fields; integers are numbers.
    assert_eq!(
        run(
            "obj.lua",
            "return { status = 'Healthy', message = obj.metadata.name .. ' ' .. tostring(obj.metadata.generation + 1) }"
        )
        .unwrap(),
        ("Healthy".to_owned(), "gomod 2".to_owned())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modfleet-e2e-{prefix}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
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
