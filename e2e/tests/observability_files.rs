//! The chart's observability files, checked without a cluster:
//!
//! - the alerting rules pass `promtool check rules`, and `promtool test rules` runs their unit
//!   tests (which alert fires, when, with which labels and annotations);
//! - every PromQL expression of the dashboard parses (promtool checks them as recording rules);
//! - the values schema refuses wrong monitoring values with its message;
//! - the metric-name scanner (used by the cluster test) understands our kind of PromQL.
//!
//! promtool comes from `hack/tools.sh path promtool` (or `MODFLEET_PROMTOOL`); without it the
//! tests fail, none is skipped.

use std::collections::BTreeSet;

use modfleet_e2e::helm::{chart_dir, schema_failures, template};
use modfleet_e2e::observability::*;
use serde_json::{Value, json};

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = chart_dir().join("rules");
    let out = assert_promtool_ok(&["check", "rules", "modfleet.rules.yaml"], &dir);
    assert!(out.contains("SUCCESS"), "{out}");
    let names = alert_names_in_rules_file();
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", names.len())),
        "promtool found another number of rules than the {} alerts: {out}",
        names.len()
    );
    for want in REQUIRED_ALERTS {
        assert!(names.iter().any(|n| n == want), "no alert {want}");
    }

    let out = assert_promtool_ok(&["test", "rules", "modfleet.rules.test.yaml"], &dir);
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert has at least one case where it fires (a non-empty exp_alerts).
    let tests = std::fs::read_to_string(rules_test_file()).unwrap();
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for name in &names {
        let fires = lines.windows(2).any(|w| {
            w[0] == format!("alertname: {name}") && w[1] == "exp_alerts:" // not `exp_alerts: []`
        });
        assert!(
            fires,
            "{}: no case where {name} fires",
            rules_test_file().display()
        );
    }

    // The unit tests have teeth: a rule that cannot fire fails them.
    let scratch = TempDir::new("rules");
    let broken = std::fs::read_to_string(rules_file()).unwrap().replace(
        "(modfleet_proxy_upstream_healthy) == 0",
        "(modfleet_proxy_upstream_healthy) == 2",
    );
    std::fs::write(scratch.path().join("modfleet.rules.yaml"), broken).unwrap();
    std::fs::copy(
        rules_test_file(),
        scratch.path().join("modfleet.rules.test.yaml"),
    )
    .unwrap();
    let out = run_promtool(
        &["test", "rules", "modfleet.rules.test.yaml"],
        scratch.path(),
    );
    assert!(
        !out.status.success(),
        "promtool test rules passed with rules that never fire"
    );
}

#[test]
fn dashboard_is_well_formed_and_its_promql_parses() {
    let d = dashboard();
    assert_eq!(d["uid"], "modfleet-fleet");
    let schema = d["schemaVersion"].as_i64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(
        d["id"].is_null(),
        "a dashboard shipped as a file has no database id"
    );

    // Variables: the data source, and the fleet filters.
    let vars: Vec<&Value> = d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .collect();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no dashboard variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    for name in ["namespace", "instance", "pod"] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
        assert_eq!(v["includeAll"], true, "{name}");
        assert_eq!(
            v["allValue"], ".*",
            "{name}: All must also match a missing label"
        );
    }

    // Panels: unique ids, inside the 24-column grid, not overlapping; every query panel on
    // the ${datasource} variable (no data source uid of somebody's Grafana).
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, i64, i64, i64, i64)> = Vec::new();
    let mut titles = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?").to_owned();
        assert!(
            ids.insert(p["id"].as_i64().expect("panel id")),
            "duplicate id: {title}"
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_i64().unwrap(),
            g["y"].as_i64().unwrap(),
            g["w"].as_i64().unwrap(),
            g["h"].as_i64().unwrap(),
        );
        assert!(
            x >= 0 && w > 0 && x + w <= 24 && h > 0,
            "{title}: gridPos {g}"
        );
        for (other, ox, oy, ow, oh) in &boxes {
            let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
            assert!(!overlap, "panels {title:?} and {other:?} overlap");
        }
        boxes.push((title.clone(), x, y, w, h));
        if p["type"] == "row" {
            assert_eq!(
                p["collapsed"], false,
                "{title}: collapsed rows hide their panels here"
            );
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}: {t}");
            assert!(
                refs.insert(t["refId"].to_string()),
                "{title}: duplicate refId"
            );
            let expr = t["expr"].as_str().unwrap_or("");
            assert!(!expr.trim().is_empty(), "{title}: empty expr");
        }
        titles.push(title.to_lowercase());
    }
    for want in [
        "requests by route",
        "requests by status",
        "cache hit ratio",
        "latency by route (p50, p95, p99)",
        "upstream health",
        "circuit breakers",
        "upstream attempts by outcome",
        "hedges and retries",
        "cache fill per member",
        "evictions",
        "cache write errors",
        "in-flight fetches",
        "coalesced waiters",
        "reconciles and errors",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(want)),
            "no panel titled {want:?}: {titles:?}"
        );
    }

    // Every expression parses: promtool checks them as recording rules.
    let exprs = dashboard_expressions(&d);
    assert!(exprs.len() > 20, "{} expressions", exprs.len());
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, e))| json!({"record": format!("modfleet_dashboard:expr_{i}"), "expr": without_grafana_variables(e)}))
        .collect();
    let scratch = TempDir::new("dashboard");
    let file = scratch.path().join("dashboard-exprs.yaml"); // JSON is YAML
    std::fs::write(
        &file,
        serde_json::to_vec_pretty(&json!({"groups": [{"name": "dashboard", "rules": rules}]}))
            .unwrap(),
    )
    .unwrap();
    let out = run_promtool(&["check", "rules", "dashboard-exprs.yaml"], scratch.path());
    assert!(
        out.status.success(),
        "a dashboard expression does not parse:\n{}{}\n(expressions in order: {:#?})",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        exprs
    );
}

#[test]
fn schema_rejects_wrong_observability_values() {
    let cases: &[(&str, &str)] = &[
        (
            "monitoring.prometheusRule.enabled=maybe",
            "at '/monitoring/prometheusRule/enabled'",
        ),
        (
            "monitoring.prometheusRule.namespace=Monitoring",
            "at '/monitoring/prometheusRule/namespace'",
        ),
        (
            "monitoring.prometheusRule.ruleLabels.my-team=a",
            "additional properties 'my-team' not allowed",
        ),
        (
            "monitoring.prometheusRule.labels.release=1",
            "at '/monitoring/prometheusRule/labels/release'",
        ),
        (
            "monitoring.prometheusRule.rules=x",
            "additional properties 'rules' not allowed",
        ),
        (
            "monitoring.grafanaDashboard.enabled=1",
            "at '/monitoring/grafanaDashboard/enabled'",
        ),
        (
            "monitoring.grafanaDashboard.sidecarLabel=",
            "at '/monitoring/grafanaDashboard/sidecarLabel'",
        ),
        (
            "monitoring.grafanaDashboard.sidecarLabel=bad key",
            "at '/monitoring/grafanaDashboard/sidecarLabel'",
        ),
        (
            "monitoring.grafanaDashboard.sidecarLabelValue=1",
            "at '/monitoring/grafanaDashboard/sidecarLabelValue'",
        ),
        (
            "monitoring.grafanaDashboard.folder=Go",
            "additional properties 'folder' not allowed",
        ),
    ];
    let failures = schema_failures(cases);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The valid spellings render.
    template(
        "t",
        "default",
        &[
            "--set",
            "monitoring.prometheusRule.enabled=true,monitoring.prometheusRule.ruleLabels.team_name=a",
            "--set-string",
            "monitoring.grafanaDashboard.sidecarLabelValue=1",
        ],
    );
}

#[test]
fn metric_name_scanner_understands_our_kind_of_promql() {
    let cases: &[(&str, &[&str])] = &[
        (
            r#"sum by (route, le) (rate(modfleet_proxy_request_duration_seconds_bucket{namespace=~"$namespace", route=~"a|b"}[$__rate_interval]))"#,
            &["modfleet_proxy_request_duration_seconds_bucket"],
        ),
        (
            "histogram_quantile(0.95, sum(rate(x_bucket[5m])) by (le)) > 1e3 and on (pod) group_left (node) y offset 1h30m",
            &["x_bucket", "y"],
        ),
        (
            r#"max by (namespace) (modfleet_operator_leader) == 0 unless absent(up{job="a, b) c"}) or vector(0)"#,
            &["modfleet_operator_leader", "up"],
        ),
        (
            r#"label_replace(a, "dst", "$1", "src", "(.*)") / ignoring(x) b:recorded:rate5m * Inf"#,
            &["a", "b:recorded:rate5m"],
        ),
        ("count(m == 1) OR vector(0)", &["m"]),
        (
            "sum without (pod) (a) + topk by(x) (3, b) - max(c) by (y)",
            &["a", "b", "c"],
        ),
    ];
    for (expr, want) in cases {
        let got = metric_names(expr).unwrap();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{expr}");
    }
    assert!(metric_names(r#"{__name__="x"}"#).is_err());
    assert!(
        metric_names("sum(rate(x[5m])").is_ok(),
        "parentheses are promtool's business"
    );
    assert!(metric_names("x{a=\"b}").is_err());
}
