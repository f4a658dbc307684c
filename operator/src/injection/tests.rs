//! Tests of the injection core: which fleet a Pod gets, and the patch applied (with the
//! json-patch crate, as the API server applies it) to Pods as the API server sends them.

use super::*;
use serde_json::json;

const OPERATOR_NS: &str = "modfleet-system";

/// Fleets in `build` (where most tests' fleets live) and the other namespaces tests put
/// fleets in may inject anywhere.
fn policy() -> Policy {
    Policy {
        operator_namespace: Some(OPERATOR_NS.to_owned()),
        fleet_namespaces: ["build", "other", "a-ns", "b-ns"]
            .map(String::from)
            .to_vec(),
    }
}

/// A fleet as the API server returns it, created `created` seconds after the epoch.
fn fleet(namespace: &str, name: &str, created: i64, spec: Value) -> GoModuleProxy {
    let mut spec = spec;
    spec["upstreams"] = json!([{"url": "https://goproxy.example.com"}]);
    serde_json::from_value(json!({
        "apiVersion": "modfleet.dev/v1alpha1",
        "kind": "GoModuleProxy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("uid-{name}"),
            "creationTimestamp": jiff::Timestamp::from_second(created).unwrap().to_string(),
        },
        "spec": spec,
    }))
    .unwrap()
}

/// A fleet injecting into namespaces labelled `team: builds`.
fn builds_fleet(name: &str, created: i64) -> GoModuleProxy {
    fleet(
        "build",
        name,
        created,
        json!({"injection": {"namespaceSelector": {"matchLabels": {"team": "builds"}}}}),
    )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn builds() -> BTreeMap<String, String> {
    labels(&[("team", "builds")])
}

fn none() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// `Some(NAMESPACE/NAME)` of the winner, and the losers' names.
fn winner(choice: &Choice<'_>) -> Option<(String, Vec<String>)> {
    match choice {
        Choice::Fleet { fleet, losers } => Some((
            fleet_name(fleet),
            losers.iter().map(|l| fleet_name(l)).collect(),
        )),
        _ => None,
    }
}

#[test]
fn a_selected_namespace_gets_the_fleet_and_others_do_not() {
    let fleets = [builds_fleet("gomod", 100)];
    let choice = choose_fleet("ci", &builds(), &none(), &fleets, &policy());
    assert_eq!(
        winner(&choice),
        Some(("build/gomod".to_owned(), Vec::new()))
    );
    let other = labels(&[("team", "web")]);
    assert_eq!(
        choose_fleet("web", &other, &none(), &fleets, &policy()),
        Choice::NoFleet
    );
    assert_eq!(
        choose_fleet("bare", &none(), &none(), &fleets, &policy()),
        Choice::NoFleet
    );
}

#[test]
fn fleets_without_injection_select_nothing() {
    let fleets = [fleet("build", "plain", 1, json!({}))];
    assert_eq!(fleets[0].spec.injection, None);
    assert_eq!(selectors(&fleets[0]), Ok(None));
    assert_eq!(
        choose_fleet("ci", &builds(), &none(), &fleets, &policy()),
        Choice::NoFleet
    );
}

/// `namespaceSelector: {}` selects every namespace but `kube-system` and the operator's.
#[test]
fn kube_system_and_the_operator_namespace_are_never_touched() {
    let all = [fleet(
        "build",
        "gomod",
        1,
        json!({"injection": {"namespaceSelector": {}}}),
    )];
    assert!(winner(&choose_fleet("anything", &none(), &none(), &all, &policy())).is_some());
    for ns in ["kube-system", OPERATOR_NS] {
        let ns_labels = labels(&[("kubernetes.io/metadata.name", ns)]);
        assert_eq!(
            choose_fleet(ns, &ns_labels, &none(), &all, &policy()),
            Choice::ProtectedNamespace,
            "{ns}"
        );
    }
    // Another operator namespace protects its own, not this one's.
    assert!(
        winner(&choose_fleet(
            OPERATOR_NS,
            &none(),
            &none(),
            &all,
            &Policy {
                operator_namespace: Some("elsewhere".to_owned()),
                ..policy()
            }
        ))
        .is_some()
    );
}

/// A fleet outside `fleet_namespaces` injects into its own namespace only, whatever its
/// selector says; the namespace report agrees.
#[test]
fn fleets_outside_the_trusted_namespaces_inject_only_at_home() {
    let everywhere = json!({"injection": {"namespaceSelector": {}}});
    let fleets = [fleet("team-a", "gomod", 1, everywhere.clone())];
    let trusted_nowhere = Policy {
        operator_namespace: Some(OPERATOR_NS.to_owned()),
        fleet_namespaces: Vec::new(),
    };
    assert_eq!(
        winner(&choose_fleet(
            "team-a",
            &none(),
            &none(),
            &fleets,
            &trusted_nowhere
        )),
        Some(("team-a/gomod".to_owned(), Vec::new()))
    );
    assert_eq!(
        choose_fleet("team-b", &none(), &none(), &fleets, &trusted_nowhere),
        Choice::NoFleet
    );
    let (a, b) = (none(), none());
    let namespaces = [("team-a", &a), ("team-b", &b)];
    let report = namespace_report(&fleets[0], &namespaces, &fleets, &trusted_nowhere);
    assert_eq!(report.selected, ["team-a"]);
    assert!(report.lost.is_empty());
    let trusted = Policy {
        fleet_namespaces: vec!["team-a".to_owned()],
        ..trusted_nowhere
    };
    assert!(winner(&choose_fleet("team-b", &none(), &none(), &fleets, &trusted)).is_some());
    // An untrusted fleet never takes a namespace from a trusted one, however old it is.
    let fleets = [
        fleet("team-b", "old", 1, everywhere.clone()),
        fleet("team-a", "young", 9, everywhere),
    ];
    assert_eq!(
        winner(&choose_fleet("team-c", &none(), &none(), &fleets, &trusted)),
        Some(("team-a/young".to_owned(), Vec::new()))
    );
}

#[test]
fn pods_and_namespaces_opt_out_with_the_label() {
    let fleets = [builds_fleet("gomod", 100)];
    let out = labels(&[(OPT_OUT_LABEL, "false")]);
    assert_eq!(
        choose_fleet("ci", &builds(), &out, &fleets, &policy()),
        Choice::OptedOut
    );
    let mut ns_out = builds();
    ns_out.insert(OPT_OUT_LABEL.to_owned(), "false".to_owned());
    assert_eq!(
        choose_fleet("ci", &ns_out, &none(), &fleets, &policy()),
        Choice::OptedOut
    );
    // Any other value is no opt-out.
    let other = labels(&[(OPT_OUT_LABEL, "true")]);
    assert!(winner(&choose_fleet("ci", &builds(), &other, &fleets, &policy())).is_some());
}

#[test]
fn pod_selector_narrows_the_pods() {
    let fleets = [fleet(
        "build",
        "gomod",
        1,
        json!({"injection": {
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["builds", "ci"]}]},
            "podSelector": {"matchExpressions": [{"key": "lang", "operator": "Exists"}]}
        }}),
    )];
    let go = labels(&[("lang", "go")]);
    assert!(winner(&choose_fleet("ci", &builds(), &go, &fleets, &policy())).is_some());
    assert_eq!(
        choose_fleet("ci", &builds(), &none(), &fleets, &policy()),
        Choice::NoFleet
    );
    let ci = labels(&[("team", "ci")]);
    assert!(winner(&choose_fleet("ci", &ci, &go, &fleets, &policy())).is_some());
}

/// The oldest fleet wins whatever the order they are listed in; equal ages go by namespace
/// and name; every other selecting fleet is reported as a loser, oldest first.
#[test]
fn the_oldest_fleet_wins_a_conflict_deterministically() {
    let young = builds_fleet("young", 300);
    let old = builds_fleet("old", 100);
    let twin_a = fleet(
        "a-ns",
        "twin",
        200,
        json!({"injection": {"namespaceSelector": {}}}),
    );
    let twin_b = fleet(
        "b-ns",
        "twin",
        200,
        json!({"injection": {"namespaceSelector": {}}}),
    );
    let unrelated = fleet(
        "build",
        "web",
        1,
        json!({"injection": {"namespaceSelector": {"matchLabels": {"team": "web"}}}}),
    );
    let orders = [
        vec![
            young.clone(),
            twin_b.clone(),
            old.clone(),
            twin_a.clone(),
            unrelated.clone(),
        ],
        vec![unrelated, twin_a, old, twin_b, young],
    ];
    for fleets in &orders {
        assert_eq!(
            winner(&choose_fleet("ci", &builds(), &none(), fleets, &policy())),
            Some((
                "build/old".to_owned(),
                vec![
                    "a-ns/twin".to_owned(),
                    "b-ns/twin".to_owned(),
                    "build/young".to_owned()
                ]
            ))
        );
    }
}

#[test]
fn fleets_being_deleted_or_with_a_bad_selector_select_nothing() {
    let mut deleting = builds_fleet("deleting", 1);
    deleting.metadata.deletion_timestamp = builds_fleet("x", 5).metadata.creation_timestamp;
    let bad = fleet(
        "build",
        "bad",
        2,
        json!({"injection": {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Like", "values": ["b*"]}]}}}),
    );
    let err = selectors(&bad).unwrap_err();
    assert_eq!(
        (err.fleet.as_str(), err.field),
        ("build/bad", "namespaceSelector")
    );
    assert!(err.to_string().contains("In and NotIn"), "{err}");
    let fleets = [deleting, bad.clone(), builds_fleet("live", 3)];
    assert_eq!(
        winner(&choose_fleet("ci", &builds(), &none(), &fleets, &policy())),
        Some(("build/live".to_owned(), Vec::new()))
    );
    assert_eq!(
        choose_fleet("ci", &builds(), &none(), &[bad], &policy()),
        Choice::NoFleet
    );
}

/// A fleet's status names the namespaces it injects into, and the ones it lost and to whom;
/// protected or opted-out namespaces are nobody's.
#[test]
fn the_namespace_report_names_where_a_fleet_injects_and_who_won() {
    let old = builds_fleet("old", 100);
    let everywhere = fleet(
        "other",
        "everywhere",
        200,
        json!({"injection": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"lang": "go"}}}}),
    );
    let fleets = [everywhere.clone(), old.clone()];
    let (ci, web, out, kube) = (
        builds(),
        labels(&[("team", "web")]),
        labels(&[("team", "builds"), (OPT_OUT_LABEL, "false")]),
        builds(),
    );
    let namespaces = [
        ("ci", &ci),
        ("web", &web),
        ("quiet", &out),
        ("kube-system", &kube),
    ];
    assert_eq!(
        namespace_report(&everywhere, &namespaces, &fleets, &policy()),
        NamespaceReport {
            selected: vec!["web"],
            lost: vec![("ci", "build/old".to_owned())]
        }
    );
    assert_eq!(
        namespace_report(&old, &namespaces, &fleets, &policy()),
        NamespaceReport {
            selected: vec!["ci"],
            lost: Vec::new()
        }
    );
    // A fleet without injection is nowhere.
    let plain = fleet("build", "plain", 1, json!({}));
    assert_eq!(
        namespace_report(&plain, &namespaces, &fleets, &policy()),
        NamespaceReport::default()
    );
    // Pods both select go to the older fleet, the others to the younger one.
    let go = labels(&[("lang", "go")]);
    assert_eq!(
        winner(&choose_fleet("ci", &ci, &go, &fleets, &policy())),
        Some(("build/old".to_owned(), vec!["other/everywhere".to_owned()]))
    );
    assert_eq!(
        winner(&choose_fleet("web", &web, &go, &fleets, &policy())),
        Some(("other/everywhere".to_owned(), Vec::new()))
    );
}

// --- patch ---

/// The fleet `build/gomod` with private and no-sum patterns.
fn private_fleet(injection: Value) -> GoModuleProxy {
    fleet(
        "build",
        "gomod",
        1,
        json!({
            "injection": injection,
            "privateModules": [{"pattern": "git.corp.example.com/*"}],
            "noSumPatterns": ["corp.example.com/legacy", "git.corp.example.com/*"],
        }),
    )
}

fn default_settings() -> Settings {
    settings(&private_fleet(json!({"namespaceSelector": {}})))
}

const GOPROXY: &str = "http://gomod.build.svc:80";
const GONOSUMDB: &str = "git.corp.example.com/*,corp.example.com/legacy";

/// Applies `patch` to the Pod `raw` as the API server would and returns the result.
fn apply(raw: &Value, patch: &Patch) -> Value {
    let mut doc = raw.clone();
    json_patch::patch(&mut doc, patch).unwrap_or_else(|e| panic!("{e}: {patch:?}"));
    doc
}

/// Patches the Pod `raw` with `settings`: the patched Pod, and the patch itself.
fn mutate(raw: &Value, settings: &Settings) -> (Value, Patch) {
    let pod: Pod = serde_json::from_value(raw.clone()).unwrap();
    let p = patch(&pod, settings);
    (apply(raw, &p), p)
}

/// `NAME=VALUE` of a container's env, in order.
fn env(pod: &Value, list: &str, index: usize) -> Vec<String> {
    pod["spec"][list][index]["env"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|v| format!("{}={}", v["name"].as_str().unwrap(), v["value"]))
                .collect()
        })
        .unwrap_or_default()
}

fn record(pod: &Value) -> Value {
    serde_json::from_str(pod["metadata"]["annotations"][ANNOTATION].as_str().unwrap()).unwrap()
}

#[test]
fn settings_name_the_fleet_and_its_no_sum_patterns() {
    let s = default_settings();
    assert_eq!(s.fleet, "build/gomod");
    let vars: Vec<_> = s
        .variables
        .iter()
        .map(|v| (v.name, v.value.as_str()))
        .collect();
    assert_eq!(vars, [("GOPROXY", GOPROXY), ("GONOSUMDB", GONOSUMDB)]);
    // No patterns: no GONOSUMDB at all.
    let plain = fleet(
        "build",
        "gomod",
        1,
        json!({"injection": {"namespaceSelector": {}}}),
    );
    let names: Vec<_> = settings(&plain).variables.iter().map(|v| v.name).collect();
    assert_eq!(names, ["GOPROXY"]);
}

/// GOPROXY is the status endpoint, then the fallback after a comma.
#[test]
fn fallback_forms() {
    let goproxy = |g: &GoModuleProxy| settings(g).variables[0].value.clone();
    let none = private_fleet(json!({"namespaceSelector": {}}));
    assert_eq!(goproxy(&none), service::endpoint(&none));
    assert_eq!(goproxy(&none), GOPROXY);
    let mirror = private_fleet(json!({
        "namespaceSelector": {},
        "fallback": {"url": "https://mirror.corp.example.com/go"}
    }));
    assert_eq!(
        goproxy(&mirror),
        format!("{GOPROXY},https://mirror.corp.example.com/go")
    );
    let tls = fleet(
        "build",
        "gomod",
        1,
        json!({
            "injection": {"namespaceSelector": {}, "fallback": {"url": "http://mirror.internal:8080"}},
            "tls": {"secretName": "proxy-tls"},
            "service": {"port": 443}
        }),
    );
    assert_eq!(
        goproxy(&tls),
        "https://gomod.build.svc:443,http://mirror.internal:8080"
    );
}

#[test]
fn containers_without_env_get_the_array_and_others_get_appended() {
    let raw = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "job-", "labels": {"app": "ci"}},
        "spec": {"containers": [
            {"name": "build", "image": "golang"},
            {"name": "lint", "image": "golang", "env": [{"name": "CGO_ENABLED", "value": "0"}]},
            {"name": "empty", "image": "golang", "env": []}
        ]}
    });
    let (pod, p) = mutate(&raw, &default_settings());
    let want = [
        format!("GOPROXY=\"{GOPROXY}\""),
        format!("GONOSUMDB=\"{GONOSUMDB}\""),
    ];
    assert_eq!(env(&pod, "containers", 0), want);
    assert_eq!(env(&pod, "containers", 1)[0], "CGO_ENABLED=\"0\"");
    assert_eq!(env(&pod, "containers", 1)[1..], want);
    assert_eq!(env(&pod, "containers", 2), want);
    // The wire form: one add of the whole array where there was none, appends elsewhere.
    let paths: Vec<String> = serde_json::to_value(&p)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            format!(
                "{} {}",
                op["op"].as_str().unwrap(),
                op["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        paths,
        [
            "add /spec/containers/0/env",
            "add /spec/containers/1/env/-",
            "add /spec/containers/1/env/-",
            "add /spec/containers/2/env/-",
            "add /spec/containers/2/env/-",
            "add /metadata/annotations",
        ]
    );
    assert_eq!(
        record(&pod),
        json!({"fleet": "build/gomod", "containers": {
            "build": ["GOPROXY", "GONOSUMDB"],
            "empty": ["GOPROXY", "GONOSUMDB"],
            "lint": ["GOPROXY", "GONOSUMDB"]
        }})
    );
    // Nothing else changed.
    let mut back = pod.clone();
    back["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    for i in 0..3 {
        back["spec"]["containers"][i]["env"] = raw["spec"]["containers"][i]["env"].clone();
    }
    back["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("env");
    assert_eq!(back, raw);
}

/// A container's own GOPROXY (or GONOSUMDB, or GOPRIVATE for GONOSUMDB) is kept; the other
/// variables and the other containers still get theirs.
#[test]
fn a_container_that_sets_a_variable_keeps_it() {
    let raw = json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [
            {"name": "own-proxy", "env": [{"name": "GOPROXY", "value": "https://elsewhere.example.com"}]},
            {"name": "own-private", "env": [{"name": "GOPRIVATE", "value": "secret.example.com"}]},
            {"name": "from-secret", "env": [{"name": "GONOSUMDB", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]},
            {"name": "plain"}
        ]}
    });
    let (pod, _) = mutate(&raw, &default_settings());
    assert_eq!(
        env(&pod, "containers", 0),
        [
            "GOPROXY=\"https://elsewhere.example.com\"".to_owned(),
            format!("GONOSUMDB=\"{GONOSUMDB}\"")
        ]
    );
    assert_eq!(
        env(&pod, "containers", 1),
        [
            "GOPRIVATE=\"secret.example.com\"".to_owned(),
            format!("GOPROXY=\"{GOPROXY}\"")
        ]
    );
    let from_secret = env(&pod, "containers", 2);
    assert_eq!(from_secret[1..], [format!("GOPROXY=\"{GOPROXY}\"")]);
    assert_eq!(
        pod["spec"]["containers"][2]["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        "s"
    );
    assert_eq!(env(&pod, "containers", 3).len(), 2);
    assert_eq!(
        record(&pod)["containers"],
        json!({
            "from-secret": ["GOPROXY"],
            "own-private": ["GOPROXY"],
            "own-proxy": ["GONOSUMDB"],
            "plain": ["GOPROXY", "GONOSUMDB"]
        })
    );
}

#[test]
fn init_containers_get_the_variables_and_env_from_containers_are_left_alone() {
    let raw = json!({
        "metadata": {"name": "p", "annotations": {}},
        "spec": {
            "initContainers": [
                {"name": "fetch", "image": "golang"},
                {"name": "configured", "envFrom": [{"configMapRef": {"name": "go-env"}}]}
            ],
            "containers": [{"name": "build", "env": [{"name": "A", "value": "1"}]}]
        }
    });
    let (pod, _) = mutate(&raw, &default_settings());
    assert_eq!(env(&pod, "initContainers", 0).len(), 2);
    assert_eq!(
        pod["spec"]["initContainers"][1],
        raw["spec"]["initContainers"][1]
    );
    assert_eq!(env(&pod, "containers", 0).len(), 3);
    assert_eq!(
        record(&pod)["containers"],
        json!({"build": ["GOPROXY", "GONOSUMDB"], "fetch": ["GOPROXY", "GONOSUMDB"]})
    );
}

#[test]
fn the_annotation_joins_existing_ones_with_its_key_escaped() {
    let raw = json!({
        "metadata": {"name": "p", "annotations": {"ci.example.com/run": "42"}},
        "spec": {"containers": [{"name": "build"}]}
    });
    let (pod, p) = mutate(&raw, &default_settings());
    let last = serde_json::to_value(p.last().unwrap()).unwrap();
    assert_eq!(last["path"], "/metadata/annotations/modfleet.dev~1injected");
    let annotations = pod["metadata"]["annotations"].as_object().unwrap();
    assert_eq!(annotations["ci.example.com/run"], "42");
    assert_eq!(annotations.len(), 2);
    assert_eq!(record(&pod)["fleet"], "build/gomod");
}

/// A Pod in which every container already has everything is not changed at all: no
/// annotation either, and patching a patched Pod again changes nothing.
#[test]
fn nothing_to_set_means_an_empty_patch() {
    let raw = json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "build", "env": [
            {"name": "GOPROXY", "value": "off"}, {"name": "GONOSUMDB", "value": "*"}
        ]}]}
    });
    let (pod, p) = mutate(&raw, &default_settings());
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(pod, raw);
    let fresh = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "build"}]}});
    let (once, p1) = mutate(&fresh, &default_settings());
    assert!(!p1.is_empty());
    let (twice, p2) = mutate(&once, &default_settings());
    assert!(p2.is_empty(), "{p2:?}");
    assert_eq!(twice, once);
    // No spec at all: nothing to do.
    assert!(patch(&Pod::default(), &default_settings()).is_empty());
}

/// Kubernetes expands `$(VAR)` in env values and reads `$$` as `$`: values are escaped so
/// the container sees them as written.
#[test]
fn dollars_are_escaped_for_kubernetes() {
    assert_eq!(kubernetes_literal("a$(HOME)b$$c$"), "a$$(HOME)b$$$$c$$");
    let s = Settings {
        fleet: "build/gomod".to_owned(),
        variables: vec![Variable {
            name: "GONOSUMDB",
            value: "x.example.com/$(SECRET)".to_owned(),
            unless: &[],
        }],
        netrc_secret: None,
    };
    let (pod, _) = mutate(
        &json!({"metadata": {}, "spec": {"containers": [{"name": "c"}]}}),
        &s,
    );
    assert_eq!(
        env(&pod, "containers", 0),
        ["GONOSUMDB=\"x.example.com/$$(SECRET)\""]
    );
}

/// `netrcSecretName`: `NETRC` in each injected container, the Secret mounted read-only there
/// and added once as an optional volume; a container with its own `NETRC` or a Pod with a
/// volume of our name is left without it, and a second call changes nothing.
#[test]
fn the_netrc_secret_is_mounted_and_named_by_netrc() {
    let s = settings(&private_fleet(
        json!({"namespaceSelector": {}, "netrcSecretName": "gomod-netrc"}),
    ));
    let raw = json!({"metadata": {}, "spec": {
        "volumes": [{"name": "work", "emptyDir": {}}],
        "initContainers": [{"name": "fetch", "volumeMounts": [{"name": "work", "mountPath": "/w"}]}],
        "containers": [
            {"name": "build"},
            {"name": "own", "env": [{"name": "NETRC", "value": "/home/me/.netrc"}]},
        ],
    }});
    let (pod, p) = mutate(&raw, &s);
    let netrc = format!("NETRC=\"{NETRC_DIR}/.netrc\"");
    assert!(env(&pod, "initContainers", 0).contains(&netrc));
    assert!(env(&pod, "containers", 0).contains(&netrc));
    assert_eq!(env(&pod, "containers", 1)[0], "NETRC=\"/home/me/.netrc\"");
    let mount = json!({"name": NETRC_VOLUME, "mountPath": NETRC_DIR, "readOnly": true});
    assert_eq!(pod["spec"]["initContainers"][0]["volumeMounts"][1], mount);
    assert_eq!(pod["spec"]["containers"][0]["volumeMounts"], json!([mount]));
    assert!(pod["spec"]["containers"][1]["volumeMounts"].is_null());
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 2);
    assert_eq!(
        volumes[1]["secret"],
        json!({"secretName": "gomod-netrc", "optional": true, "items": [{"key": ".netrc", "path": ".netrc"}]})
    );
    // The patched Pod is a valid Pod, and patching it again changes nothing.
    let again: Pod = serde_json::from_value(pod.clone()).unwrap();
    assert!(patch(&again, &s).is_empty(), "{:?}", patch(&again, &s));
    assert!(!p.is_empty());
    // A Pod with its own volume of that name: no NETRC from us, the rest as usual.
    let theirs = json!({"metadata": {}, "spec": {
        "volumes": [{"name": NETRC_VOLUME, "emptyDir": {}}],
        "containers": [{"name": "build"}],
    }});
    let (pod, _) = mutate(&theirs, &s);
    let vars = env(&pod, "containers", 0);
    assert!(vars.iter().any(|v| v.starts_with("GOPROXY=")), "{vars:?}");
    assert!(!vars.iter().any(|v| v.starts_with("NETRC=")), "{vars:?}");
    assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 1);
}

/// Called again after another webhook added a container (`reinvocationPolicy: IfNeeded`),
/// the patch sets the new container and the annotation keeps the first call's record.
#[test]
fn a_second_call_keeps_the_first_record() {
    let s = default_settings();
    let (first, _) = mutate(
        &json!({"metadata": {}, "spec": {"containers": [{"name": "build"}]}}),
        &s,
    );
    let mut grown = first.clone();
    grown["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar"}));
    let (second, _) = mutate(&grown, &s);
    assert_eq!(
        record(&second)["containers"],
        json!({"build": ["GOPROXY", "GONOSUMDB"], "sidecar": ["GOPROXY", "GONOSUMDB"]})
    );
    // Another fleet's record (a Pod copied from elsewhere) is replaced, not merged.
    let mut foreign = grown.clone();
    foreign["metadata"]["annotations"][ANNOTATION] =
        json!("{\"fleet\":\"x/y\",\"containers\":{\"old\":[\"GOPROXY\"]}}");
    let (third, _) = mutate(&foreign, &s);
    assert_eq!(record(&third)["containers"].get("old"), None);
}
