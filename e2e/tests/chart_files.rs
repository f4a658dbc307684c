//! The Helm chart's files, checked without a cluster: strict lint of every values file, the
//! schema's refusals and their messages, the tracing values becoming the operator's OTEL_*
//! environment, and its CRD identical to `crds/` (crdgen's output). Needs `helm` (`MODFLEET_HELM`,
//! or on PATH: `hack/cluster/build.sh helm` fetches the pinned one); without it every test fails.

use modfleet_e2e::helm::{self, chart_dir, schema_failures, template, try_helm};
use modfleet_testkit::workspace::workspace_root as repo_root;

#[test]
fn chart_lints_strictly_with_defaults_and_every_ci_values_file() {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    helm::helm(None, &["lint", "--strict", chart]);
    let mut files: Vec<_> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("charts/modfleet/ci exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no values files in charts/modfleet/ci");
    for f in files {
        helm::helm(
            None,
            &["lint", "--strict", chart, "-f", f.to_str().unwrap()],
        );
    }
}

#[test]
fn chart_crd_is_identical_to_the_top_level_crd() {
    let top = repo_root().join("crds").join("gomoduleproxy.yaml");
    let chart = chart_dir().join("crds").join("gomoduleproxy.yaml");
    let a = std::fs::read(&top).unwrap_or_else(|e| panic!("{}: {e}", top.display()));
    let b = std::fs::read(&chart).unwrap_or_else(|e| panic!("{}: {e}", chart.display()));
    assert!(
        a == b,
        "charts/modfleet/crds/gomoduleproxy.yaml differs from crds/gomoduleproxy.yaml: \
         run `cp crds/gomoduleproxy.yaml charts/modfleet/crds/` (crdgen writes the top-level one)"
    );
}

#[test]
fn schema_rejects_wrong_values_with_its_message() {
    // (--set value, where the schema's message points)
    let cases: &[(&str, &str)] = &[
        (
            "logFormat=xml",
            "at '/logFormat': value must be one of 'json', 'text'",
        ),
        ("replicaCount=-1", "at '/replicaCount'"),
        ("replicaCount=many", "at '/replicaCount'"),
        ("metricsPort=80", "at '/metricsPort'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("image.digest=latest", "at '/image/digest'"),
        ("image.repository=", "at '/image/repository'"),
        ("watchNamespaces[0]=Team_A", "at '/watchNamespaces/0'"),
        (
            "leaderElection.leaseDuration=forever",
            "at '/leaderElection/leaseDuration'",
        ),
        ("leaderElection.enabled=yes", "at '/leaderElection/enabled'"),
        ("tracing.protocol=http", "at '/tracing/protocol'"),
        (
            "tracing.otlpEndpoint=otel:4317",
            "at '/tracing/otlpEndpoint'",
        ),
        ("tracing.samplingRatio=2", "at '/tracing/samplingRatio'"),
        ("exampleFleet.name=Gomod", "at '/exampleFleet/name'"),
        (
            "monitoring.fleets.podMonitor.interval=often",
            "at '/monitoring/fleets/podMonitor/interval'",
        ),
        (
            "replicaCont=2",
            "additional properties 'replicaCont' not allowed",
        ),
        (
            "rbac.create=true,rbac.extra=1",
            "additional properties 'extra' not allowed",
        ),
    ];
    let mut failures = schema_failures(cases);
    // Several replicas without leader election would all reconcile.
    let chart = chart_dir();
    let out = try_helm(
        None,
        &[
            "template",
            "t",
            chart.to_str().unwrap(),
            "--set",
            "replicaCount=3,leaderElection.enabled=false",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !err.contains("at '/leaderElection/enabled': value must be true") {
        failures.push(format!(
            "replicaCount=3 without leader election: expected a schema error, got: {err}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // And a valid variation renders.
    template("t", "default", &["--set", "replicaCount=2,logFormat=text"]);
}

#[test]
fn tracing_values_become_the_operators_otel_environment() {
    let off = template("t", "default", &[]);
    assert!(!off.contains("OTEL_"), "no tracing by default:\n{off}");
    let on = template(
        "t",
        "default",
        &[
            "--set",
            "tracing.otlpEndpoint=http://otel.obs:4318,tracing.protocol=http/protobuf",
            "--set",
            "tracing.samplingRatio=0.25",
            "--set-string",
            "tracing.headers=x-api-key=abc",
        ],
    );
    for (name, value) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel.obs:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc"),
    ] {
        let rendered = on
            .lines()
            .skip_while(|l| l.trim() != format!("- name: {name}"))
            .nth(1)
            .map(|l| {
                l.trim()
                    .trim_start_matches("value:")
                    .trim()
                    .trim_matches('"')
            });
        assert_eq!(rendered, Some(value), "{name} in:\n{on}");
    }
}
