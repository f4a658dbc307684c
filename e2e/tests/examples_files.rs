//! The examples and the Argo CD health check, checked without a cluster: every fleet example
//! says when to use it, and `examples/argocd/health.lua` gives the right verdicts in Argo CD's
//! own Lua engine (gopher-lua with only the libraries Argo CD opens; e2e/argocd-health, a Go
//! program built by the test).

use std::collections::BTreeSet;
use std::path::PathBuf;

use modfleet_e2e::argocd::{health_of, health_script};
use modfleet_e2e::examples::{example_files, examples_dir, rel};
use modfleet_testkit::workspace::workspace_root;
use serde_json::{Value, json};

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
/// (`Degraded.true_because("Reason", ...)`, however rustfmt wraps it).
fn operator_failure_reasons() -> Vec<String> {
    let src = std::fs::read_to_string(workspace_root().join("operator/src/status.rs")).unwrap();
    let flat: String = src.chars().filter(|c| !c.is_whitespace()).collect();
    let reasons: Vec<String> = flat
        .split("Degraded.true_because(\"")
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
