//! The chart's observability artifacts on a real cluster and against the real binaries:
//!
//! - with `monitoring.prometheusRule` and `monitoring.grafanaDashboard` enabled, the chart
//!   renders a PrometheusRule carrying exactly the rule file's alerts and a ConfigMap carrying
//!   exactly the dashboard, and the real API server accepts both (`--dry-run=server`, strict
//!   validation, the Prometheus Operator CRDs from `../shared/third-party-crds`);
//! - every metric name the dashboard and the rules use is one the binaries really export: a
//!   real `modfleet-proxy` and a real `modfleet-operator` are started, driven until every
//!   metric family has a sample (prometheus-client prints nothing for an empty family), and
//!   scraped.
//!
//! The file checks that need no cluster are in tests/observability_files.rs. The cluster:
//! `hack/cluster.sh up`, `eval "$(hack/cluster.sh env)"`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use modfleet_e2e::helm::{chart_dir, template, yaml_to_objects};
use modfleet_e2e::operator::{Operator, install_crd};
use modfleet_e2e::proxy::proxy_binary;
use modfleet_e2e::{Cluster, Namespace};
use modfleet_testkit::workspace::{closed_port, free_port, workspace_root};
use serde_json::{Value, json};

use modfleet_e2e::observability::*;
use modfleet_testkit::upstream::{Reply, Upstream};

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
    let silent = Upstream::start(vec![("*", Reply::Hang)], None);
    let working = Upstream::start(
        vec![(
            "/example.com/m/@v/v1.0.0.info",
            Reply::Body(br#"{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}"#.to_vec()),
        )],
        None,
    );
    let (silent_url, working_url) = (silent.url.clone(), working.url.clone());
    let (port, admin, peer) = (free_port(), free_port(), free_port());
    let cache = dir.join("cache");
    let log = dir.join("proxy.log");
    // An object store (nothing listens at its endpoint) and peer fill (a fleet of one), so the
    // store's and peers' metric families are exported too: the rules alert on them.
    for (file, text) in [
        ("access-key", "AKIAOBS"),
        ("secret-key", "observability"),
        (
            "peer-token",
            "0123456789abcdef0123456789abcdef-observability",
        ),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let config = dir.join("tiers.yaml");
    std::fs::write(
        &config,
        format!(
            "objectStore:\n  url: s3://modules/observability\n  endpoint: http://127.0.0.1:{closed}\n  allowHttp: true\n  timeout: 1s\n  credentials:\n    accessKeyIdFile: {d}/access-key\n    secretAccessKeyFile: {d}/secret-key\npeerFill:\n  listen: 127.0.0.1:{peer}\n  tokenFile: {d}/peer-token\n  members: [\"127.0.0.1:{peer}\"]\n",
            closed = closed_port(),
            d = dir.display(),
        ),
    )
    .unwrap();
    let child = Command::new(proxy_binary())
        .args([
            "--config",
            config.to_str().unwrap(),
            "--peer-advertise",
            &format!("127.0.0.1:{peer}"),
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
            self.0.lift_finalizers();
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
