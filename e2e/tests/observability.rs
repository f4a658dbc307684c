//! The chart's observability artifacts: the alerting rules (`charts/modfleet/rules/`), the
//! Grafana dashboard (`charts/modfleet/dashboards/`) and the objects that ship them.
//!
//! - The rules pass `promtool check rules`, and `promtool test rules` runs their unit tests
//!   (which alert fires, when, with which labels and annotations).
//! - Every PromQL expression of the dashboard parses (promtool checks them as recording rules).
//! - With `monitoring.prometheusRule` and `monitoring.grafanaDashboard` enabled, the chart
//!   renders a PrometheusRule carrying exactly the rule file's alerts and a ConfigMap carrying
//!   exactly the dashboard, and the real API server accepts both (`--dry-run=server`, strict
//!   validation, the Prometheus Operator CRDs from `../shared/third-party-crds`).
//! - Every metric name the dashboard and the rules use is one the binaries really export: a
//!   real `modfleet-proxy` and a real `modfleet-operator` are started, driven until every
//!   metric family has a sample (prometheus-client prints nothing for an empty family), and
//!   scraped.
//!
//! promtool comes from `hack/tools.sh path promtool` (or `MODFLEET_PROMTOOL`); without it the
//! tests fail, none is skipped. The cluster: `hack/cluster.sh up`, `eval "$(hack/cluster.sh env)"`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use modfleet_e2e::helm::{chart_dir, schema_failures, template, yaml_to_objects};
use modfleet_e2e::operator::{Operator, free_port, install_crd, workspace_root};
use modfleet_e2e::proxy::proxy_binary;
use modfleet_e2e::{Cluster, Namespace};
use serde_json::{Value, json};

fn rules_file() -> PathBuf {
    chart_dir().join("rules").join("modfleet.rules.yaml")
}

fn rules_test_file() -> PathBuf {
    chart_dir().join("rules").join("modfleet.rules.test.yaml")
}

fn dashboard_file() -> PathBuf {
    chart_dir().join("dashboards").join("modfleet-fleet.json")
}

fn dashboard() -> Value {
    let path = dashboard_file();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

/// The alerts the issue asks for; the rules may have more.
const REQUIRED_ALERTS: &[&str] = &[
    "ModfleetUpstreamDown",
    "ModfleetAllUpstreamsDown",
    "ModfleetCacheHitRatioLow",
    "ModfleetCacheNearlyFull",
    "ModfleetHighErrorRate",
    "ModfleetOperatorReconcileErrors",
];

/// Metrics from outside modfleet the expressions may use (none today). Anything else must
/// start with one of the prefixes below and be exported by the proxy or the operator.
const ALLOWED_FOREIGN_METRICS: &[&str] = &[];
const MODFLEET_PREFIXES: &[&str] = &["modfleet_proxy_", "modfleet_operator_"];

// ------------------------------------------------------------------------------------------
// promtool

/// `MODFLEET_PROMTOOL`, else what `hack/tools.sh path promtool` prints.
fn promtool() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("MODFLEET_PROMTOOL").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "MODFLEET_PROMTOOL={} does not exist", p.display());
            return p;
        }
        let script = workspace_root().join("hack").join("tools.sh");
        let out = Command::new(&script)
            .args(["path", "promtool"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            out.status.success() && path.is_file(),
            "no promtool: `hack/tools.sh path promtool` failed or named a missing file \
             ({}; stdout {:?}): run `hack/tools.sh build` (builds it from Prometheus's Go module, once) or set MODFLEET_PROMTOOL\n{}",
            out.status,
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        path
    })
    .clone()
}

fn run_promtool(args: &[&str], cwd: &Path) -> Output {
    Command::new(promtool())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}"))
}

fn assert_promtool_ok(args: &[&str], cwd: &Path) -> String {
    let out = run_promtool(args, cwd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// A scratch directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "modfleet-obs-{prefix}-{}-{nanos:x}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `- alert: NAME` lines of the rule file, in order.
fn alert_names_in_rules_file() -> Vec<String> {
    std::fs::read_to_string(rules_file())
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

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

/// Grafana's variables replaced by values that make plain PromQL.
fn without_grafana_variables(expr: &str) -> String {
    let mut out = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut name = String::new();
        if chars.peek() == Some(&'{') {
            chars.next();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                name.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
        }
        out.push_str(match name.as_str() {
            "__rate_interval" | "__interval" | "__range" => "5m",
            _ => ".*",
        });
    }
    out
}

/// Every PromQL expression of the dashboard: panel targets, and the series selectors of
/// `label_values(SELECTOR, LABEL)` variable queries. (where, expression)
fn dashboard_expressions(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?}: a target without expr: {t}"));
                out.push((
                    format!("panel {title:?} target {}", t["refId"]),
                    expr.to_owned(),
                ));
            }
            walk(&p["panels"], out);
        }
    }
    walk(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("?");
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_else(|| panic!("variable {name}: no query"));
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: only label_values(...) is supported: {q}"));
        // label_values(LABEL) has no selector; label_values(SELECTOR, LABEL) has one.
        if let Some(comma) = last_top_level_comma(inner) {
            out.push((format!("variable {name}"), inner[..comma].trim().to_owned()));
        }
    }
    out
}

fn last_top_level_comma(s: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut in_string = false;
    let mut last = None;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '{' | '(' | '[' if !in_string => depth += 1,
            '}' | ')' | ']' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => last = Some(i),
            _ => {}
        }
    }
    last
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

// ------------------------------------------------------------------------------------------
// The chart's objects

fn kind_of(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or("")
}

/// The Prometheus Operator CRDs from ../shared/third-party-crds (as `hack/cluster.sh up`
/// installs them; applying again is a no-op), Established.
fn ensure_prometheus_operator_crds(cluster: &Cluster) {
    let dir = std::env::var_os("MODFLEET_THIRD_PARTY_CRDS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/third-party-crds"))
        .join("prometheus-operator");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (the Prometheus Operator CRDs)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("monitoring.coreos.com_prometheusrules.yaml")),
        "no PrometheusRule CRD in {}",
        dir.display()
    );
    let mut args = vec![
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=modfleet-cluster",
    ];
    for f in &files {
        args.extend(["-f", f.to_str().unwrap()]);
    }
    cluster.kubectl(&args);
    cluster.kubectl(&[
        "wait",
        "crd/prometheusrules.monitoring.coreos.com",
        "--for=condition=Established",
        "--timeout=60s",
    ]);
}

#[test]
fn chart_ships_the_rules_and_the_dashboard_and_the_api_server_accepts_them() {
    let cluster = Cluster::from_env();
    ensure_prometheus_operator_crds(&cluster);
    let ns = cluster.namespace("obs-chart");

    // Off by default.
    let objs = yaml_to_objects(&cluster, &template("obs", ns.name(), &[]));
    assert!(
        !objs.iter().any(|o| kind_of(o) == "PrometheusRule"
            || o["metadata"]["name"] == "obs-modfleet-dashboards"),
        "the rules or the dashboard are rendered by default"
    );

    let yaml = template(
        "obs",
        ns.name(),
        &[
            "--set",
            "monitoring.prometheusRule.enabled=true,monitoring.grafanaDashboard.enabled=true",
            "--set",
            "monitoring.prometheusRule.labels.release=prometheus",
            "--set",
            "monitoring.prometheusRule.ruleLabels.team=platform",
            "--set",
            "monitoring.prometheusRule.ruleLabels.severity=ignored",
            "--set",
            "monitoring.grafanaDashboard.annotations.grafana_folder=Go",
        ],
    );
    let objs = yaml_to_objects(&cluster, &yaml);
    let rules: Vec<&Value> = objs
        .iter()
        .filter(|o| kind_of(o) == "PrometheusRule")
        .collect();
    assert_eq!(rules.len(), 1, "one PrometheusRule");
    let pr = rules[0];
    assert_eq!(pr["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(pr["metadata"]["namespace"], ns.name());
    assert_eq!(pr["metadata"]["labels"]["release"], "prometheus");

    // The rule file's alerts, in its order, each with the extra label and its own severity.
    let rendered: Vec<&Value> = pr["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect();
    let names: Vec<String> = rendered
        .iter()
        .map(|r| r["alert"].as_str().expect("only alerting rules").to_owned())
        .collect();
    assert_eq!(names, alert_names_in_rules_file());
    let file_text = std::fs::read_to_string(rules_file()).unwrap();
    for r in &rendered {
        let name = r["alert"].as_str().unwrap();
        assert_eq!(r["labels"]["team"], "platform", "{name}");
        let severity = r["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity {severity:?} (a rule's own severity wins over ruleLabels)"
        );
        assert!(
            r["for"].as_str().is_some_and(|f| !f.is_empty()),
            "{name}: no `for`"
        );
        for key in ["summary", "description", "runbook"] {
            assert!(
                r["annotations"][key].as_str().is_some_and(|s| s.len() > 10),
                "{name}: no {key} annotation"
            );
        }
        for line in r["expr"].as_str().unwrap().lines() {
            assert!(
                file_text.contains(line),
                "{name}: expr line {line:?} is not in the rule file"
            );
        }
    }
    // And what the PrometheusRule carries is itself a valid rule file.
    let scratch = TempDir::new("prometheusrule");
    std::fs::write(
        scratch.path().join("rendered.yaml"),
        serde_json::to_vec_pretty(&json!({"groups": pr["spec"]["groups"]})).unwrap(),
    )
    .unwrap();
    assert_promtool_ok(&["check", "rules", "rendered.yaml"], scratch.path());

    // The dashboard ConfigMap: the sidecar label, the JSON byte for byte.
    let cms: Vec<&Value> = objs
        .iter()
        .filter(|o| kind_of(o) == "ConfigMap" && o["metadata"]["name"] == "obs-modfleet-dashboards")
        .collect();
    assert_eq!(cms.len(), 1, "one dashboard ConfigMap");
    let cm = cms[0];
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "Go");
    let shipped = cm["data"]["modfleet-fleet.json"]
        .as_str()
        .expect("modfleet-fleet.json key");
    assert_eq!(shipped, std::fs::read_to_string(dashboard_file()).unwrap());

    // The real API server accepts both, validated strictly against the CRD and core schemas.
    let mut docs = String::new();
    for o in [pr, cm] {
        docs.push_str(&serde_json::to_string(o).unwrap());
        docs.push('\n');
    }
    let out = cluster.try_kubectl_stdin(
        &[
            "apply",
            "--dry-run=server",
            "--validate=strict",
            "-n",
            ns.name(),
            "-f",
            "-",
        ],
        &docs,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the API server rejected the rules or the dashboard: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .contains("prometheusrule.monitoring.coreos.com/obs-modfleet created (server dry run)")
            && stdout.contains("configmap/obs-modfleet-dashboards created (server dry run)"),
        "{stdout}"
    );
    // The check has teeth: the CRD refuses a malformed `for`.
    let mut broken = pr.clone();
    broken["spec"]["groups"][0]["rules"][0]["for"] = json!("soon");
    let out = cluster.try_kubectl_stdin(
        &["apply", "--dry-run=server", "-n", ns.name(), "-f", "-"],
        &broken.to_string(),
    );
    assert!(
        !out.status.success(),
        "a PrometheusRule with `for: soon` was accepted"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("soon"));

    // The whole chart with everything on applies too (ci/everything-values.yaml has both on).
    let everything = chart_dir().join("ci").join("everything-values.yaml");
    let text = std::fs::read_to_string(&everything).unwrap();
    assert!(
        text.contains("prometheusRule") && text.contains("grafanaDashboard"),
        "{} should switch the rules and the dashboard on",
        everything.display()
    );

    // Another sidecar label, another namespace.
    let objs = yaml_to_objects(
        &cluster,
        &template(
            "obs",
            ns.name(),
            &[
                "--set",
                "monitoring.grafanaDashboard.enabled=true,monitoring.grafanaDashboard.sidecarLabel=example.com/dashboard,monitoring.grafanaDashboard.sidecarLabelValue=modfleet,monitoring.grafanaDashboard.namespace=monitoring",
            ],
        ),
    );
    let cm = objs
        .iter()
        .find(|o| o["metadata"]["name"] == "obs-modfleet-dashboards")
        .expect("dashboard ConfigMap");
    assert_eq!(cm["metadata"]["namespace"], "monitoring");
    assert_eq!(
        cm["metadata"]["labels"]["example.com/dashboard"],
        "modfleet"
    );
    assert!(cm["metadata"]["labels"]["grafana_dashboard"].is_null());
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

// ------------------------------------------------------------------------------------------
// Metric names: what the expressions use, what the binaries export

/// Names of the metrics a PromQL expression selects. A small scanner, right for the
/// expressions we write: strings, label matchers `{...}`, ranges `[...]`, numbers, durations
/// and Grafana variables are skipped; an identifier followed by `(` is a function or an
/// aggregation; `by`, `without`, `on`, `ignoring`, `group_left` and `group_right` are followed
/// by label lists; the other keywords (`and`, `or`, `unless`, `bool`, `offset`, `inf`, `nan`)
/// are not metrics. What remains is in metric position. `{__name__=...}` selectors are
/// refused rather than half understood.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
    let s: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Index after the bracketed group opening at `i` (which holds `open`), skipping strings.
    let skip_group = |mut i: usize, open: char, close: char| -> Result<usize, String> {
        let mut depth = 0;
        while i < s.len() {
            match s[i] {
                '"' | '\'' | '`' => i = skip_string(&s, i)?,
                c if c == open => {
                    depth += 1;
                    i += 1;
                }
                c if c == close => {
                    depth -= 1;
                    i += 1;
                    if depth == 0 {
                        return Ok(i);
                    }
                }
                _ => i += 1,
            }
        }
        Err(format!("unbalanced {open}{close} in {expr:?}"))
    };
    while i < s.len() {
        let c = s[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&s, i)?;
        } else if c == '{' {
            let end = skip_group(i, '{', '}')?;
            let matchers: String = s[i..end].iter().collect();
            if matchers.contains("__name__") {
                return Err(format!(
                    "{{__name__=...}} selectors are not supported: {expr:?}"
                ));
            }
            i = end;
        } else if c == '[' {
            i = skip_group(i, '[', ']')?;
        } else if c == '$' {
            i += 1;
            if i < s.len() && s[i] == '{' {
                i = skip_group(i, '{', '}')?;
            } else {
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers (1e12, 0x1f, 0.95) and durations (5m, 1h30m).
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.' || s[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_' || s[i] == ':') {
                i += 1;
            }
            let ident: String = s[start..i].iter().collect();
            let lower = ident.to_ascii_lowercase();
            let mut j = i;
            while j < s.len() && s[j].is_whitespace() {
                j += 1;
            }
            let next = s.get(j).copied();
            if LABEL_LISTS.contains(&lower.as_str()) {
                if next == Some('(') {
                    i = skip_group(j, '(', ')')?;
                }
            } else if KEYWORDS.contains(&lower.as_str())
                || next == Some('(')
                || followed_by_label_list(&s[j..])
            {
                // an operator, a function, or an aggregation (`sum(`, `sum by (...) (`)
            } else {
                names.insert(ident);
            }
        } else {
            i += 1;
        }
    }
    Ok(names)
}

/// Whether `rest` starts with `by` or `without` (an aggregation's modifier before its
/// parenthesised argument).
fn followed_by_label_list(rest: &[char]) -> bool {
    let word: String = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .collect();
    let word = word.to_ascii_lowercase();
    word == "by" || word == "without"
}

/// Index after the string literal opening at `i`.
fn skip_string(s: &[char], i: usize) -> Result<usize, String> {
    let quote = s[i];
    let mut j = i + 1;
    while j < s.len() {
        if s[j] == '\\' && quote != '`' {
            j += 2;
            continue;
        }
        if s[j] == quote {
            return Ok(j + 1);
        }
        j += 1;
    }
    Err("unterminated string".to_owned())
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

/// Sample names in an OpenMetrics exposition, checked against its `# TYPE` lines: every
/// family's names (counter: NAME_total; histogram: NAME_bucket, _sum, _count; gauge: NAME)
/// have samples, and every sample belongs to a declared family.
fn exported_names(body: &str) -> BTreeSet<String> {
    let mut samples = BTreeSet::new();
    let mut declared = BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            let names: Vec<String> = match kind {
                "counter" => vec![format!("{name}_total")],
                "histogram" => ["bucket", "sum", "count"]
                    .iter()
                    .map(|s| format!("{name}_{s}"))
                    .collect(),
                "gauge" | "unknown" => vec![name.to_owned()],
                "info" => vec![format!("{name}_info")],
                "summary" => vec![
                    name.to_owned(),
                    format!("{name}_sum"),
                    format!("{name}_count"),
                ],
                other => panic!("unexpected metric type {other} in {line:?}"),
            };
            declared.extend(names);
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            samples.insert(line[..end].to_owned());
        }
    }
    let undeclared: Vec<_> = samples.difference(&declared).collect();
    assert!(
        undeclared.is_empty(),
        "samples without a # TYPE family: {undeclared:?}\n{body}"
    );
    let empty: Vec<_> = declared.difference(&samples).collect();
    assert!(
        empty.is_empty(),
        "families without samples: {empty:?}\n{body}"
    );
    samples
}

/// GET over plain HTTP/1.0: (status, body), or None when nothing answers.
fn http_get(port: u16, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// An upstream GOPROXY that knows one module version's `.info` and answers 404 to anything
/// else; one thread, one request per connection.
fn spawn_upstream(listener: TcpListener) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path == "/example.com/m/@v/v1.0.0.info" {
                (
                    "200 OK",
                    r#"{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}"#,
                )
            } else {
                ("404 Not Found", "not found\n")
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

/// A running modfleet-proxy; killed on drop (its log printed if the test failed).
struct Proxy {
    child: Child,
    log: PathBuf,
    admin: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- modfleet-proxy log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// Starts a real modfleet-proxy over a silent upstream (accepts connections, never answers)
/// and a working one, and drives it until every metric family has a sample: a request that
/// is hedged to the second upstream, answered, and then fails to be cached (a file stands
/// where the module's cache directory should be). Returns the proxy's /metrics.
fn proxy_metrics(dir: &Path) -> String {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let working = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let working_url = format!("http://{}", working.local_addr().unwrap());
    spawn_upstream(working);
    let (port, admin) = (free_port(), free_port());
    let cache = dir.join("cache");
    let log = dir.join("proxy.log");
    let child = Command::new(proxy_binary())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--cache-max-bytes",
            "64Mi",
            "--upstream",
            &silent_url,
            "--upstream",
            &working_url,
            "--hedge-delay",
            "100ms",
            "--log-format",
            "text",
        ])
        .env_remove("GOPROXY")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(File::create(&log).unwrap())
        .stderr(File::create(dir.join("proxy.stderr")).unwrap())
        .spawn()
        .expect("cannot start modfleet-proxy");
    let mut proxy = Proxy { child, log, admin };
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(proxy.admin, "/readyz", Duration::from_secs(2)).is_none_or(|(s, _)| s != 200) {
        if let Ok(Some(status)) = proxy.child.try_wait() {
            panic!(
                "modfleet-proxy exited ({status}): {}",
                std::fs::read_to_string(dir.join("proxy.stderr")).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "modfleet-proxy not ready within 60s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A file where the directory of example.com/m's versions would go (the layout of
    // GOMODCACHE/cache/download): the write fails.
    let module_dir = cache.join("download").join("example.com").join("m");
    std::fs::create_dir_all(&module_dir).unwrap();
    std::fs::write(module_dir.join("@v"), b"in the way").unwrap();

    let (status, body) = http_get(
        port,
        "/example.com/m/@v/v1.0.0.info",
        Duration::from_secs(30),
    )
    .expect("the proxy did not answer");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("v1.0.0"), "{body}");
    // A version no upstream has (404 from the working one, nothing from the silent one).
    let _ = http_get(
        port,
        "/example.com/m/@v/v1.9.9.mod",
        Duration::from_secs(30),
    );

    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some((200, body)) = http_get(proxy.admin, "/metrics", Duration::from_secs(5)) {
            if [
                "modfleet_proxy_requests_total{",
                "modfleet_proxy_upstream_hedges_total{",
                "modfleet_proxy_upstream_requests_total{",
                "modfleet_proxy_cache_write_errors_total{",
            ]
            .iter()
            .all(|m| body.contains(m))
            {
                return body;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(silent);
    panic!("the proxy's metrics never had every family:\n{last}");
}

/// Starts the real operator on a namespace where PersistentVolumeClaims are forbidden by a
/// ResourceQuota, so reconciling a GoModuleProxy fails and the error family gets a sample.
/// Returns the operator's /metrics.
fn operator_metrics(ns: &Namespace) -> String {
    /// Nothing removes the GoModuleProxy's finalizer once the operator is gone, and the
    /// namespace would never go away.
    struct LiftFinalizers<'a>(&'a Namespace);
    impl Drop for LiftFinalizers<'_> {
        fn drop(&mut self) {
            let _ = self.0.try_kubectl(&[
                "patch",
                "gmp",
                "gomod",
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ]);
        }
    }
    ns.apply(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: no-pvcs\nspec:\n  hard:\n    persistentvolumeclaims: \"0\"\n",
    );
    let op = Operator::start(ns, "obs", &[]);
    let _lift = LiftFinalizers(ns);
    ns.apply(
        &std::fs::read_to_string(workspace_root().join("examples").join("small-cache.yaml"))
            .unwrap(),
    );
    let body = ns.eventually(
        "a reconcile error in the operator's metrics",
        Duration::from_secs(90),
        || {
            op.assert_running();
            op.http_get("/metrics")
                .filter(|b| b.contains("modfleet_operator_reconcile_errors_total{"))
        },
    );
    op.stop();
    body
}

#[test]
fn every_metric_the_dashboard_and_the_rules_use_is_exported() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);

    // What the dashboard and the rules (as the chart ships them) use.
    let mut used: Vec<(String, String)> = dashboard_expressions(&dashboard());
    let yaml = template(
        "obs",
        "obs",
        &["--set", "monitoring.prometheusRule.enabled=true"],
    );
    let objs = yaml_to_objects(&cluster, &yaml);
    let pr = objs
        .iter()
        .find(|o| kind_of(o) == "PrometheusRule")
        .expect("a PrometheusRule");
    for g in pr["spec"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            used.push((
                format!("alert {}", r["alert"].as_str().unwrap()),
                r["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let mut referenced = BTreeSet::new();
    let mut foreign = Vec::new();
    for (place, expr) in &used {
        let names = metric_names(expr).unwrap_or_else(|e| panic!("{place}: {e}"));
        assert!(!names.is_empty(), "{place}: no metric found in {expr:?}");
        for n in names {
            if !MODFLEET_PREFIXES.iter().any(|p| n.starts_with(p))
                && !ALLOWED_FOREIGN_METRICS.contains(&n.as_str())
            {
                foreign.push(format!("{place}: {n}"));
            }
            referenced.insert(n);
        }
    }
    assert!(
        foreign.is_empty(),
        "expressions use metrics that are neither modfleet's nor allowed: {foreign:#?}"
    );
    for sure in [
        "modfleet_proxy_requests_total",
        "modfleet_proxy_request_duration_seconds_bucket",
        "modfleet_proxy_upstream_healthy",
        "modfleet_proxy_cache_max_bytes",
        "modfleet_operator_reconcile_errors_total",
    ] {
        assert!(
            referenced.contains(sure),
            "the scan missed {sure}: {referenced:?}"
        );
    }

    // What the binaries export.
    let scratch = TempDir::new("metrics");
    let proxy = exported_names(&proxy_metrics(scratch.path()));
    let ns = cluster.namespace("obs-metrics");
    let operator = exported_names(&operator_metrics(&ns));
    assert!(
        proxy.iter().all(|n| n.starts_with("modfleet_proxy_")),
        "{proxy:?}"
    );
    assert!(
        operator.iter().all(|n| n.starts_with("modfleet_operator_")),
        "{operator:?}"
    );
    let exported: BTreeSet<&String> = proxy.iter().chain(&operator).collect();

    let unknown: Vec<String> = used
        .iter()
        .flat_map(|(place, expr)| {
            metric_names(expr)
                .unwrap()
                .into_iter()
                .filter(|n| !exported.contains(n) && !ALLOWED_FOREIGN_METRICS.contains(&n.as_str()))
                .map(move |n| format!("{place}: {n}"))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "metrics used by the dashboard or the rules that neither binary exports:\n{}\n\nexported: {exported:#?}",
        unknown.join("\n")
    );
    // For whoever adds a metric: what no panel and no rule shows yet.
    let unused: Vec<&&String> = exported
        .iter()
        .filter(|n| !referenced.contains(**n))
        .collect();
    eprintln!("exported but unused by the dashboard and the rules: {unused:?}");
}
