//! The operator's traces on the real cluster, read back from a real OpenTelemetry Collector
//! (built by `hack/tools.sh`): a reconcile is one trace, with a child span per API call that
//! says whether it changed anything.

use std::time::Duration;

use modfleet_e2e::operator::{Operator, install_crd};
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT};
use modfleet_testkit::collector::{Collector, Span, SpanKind, StatusCode};

const NAME: &str = "traced";

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.is_child_of(parent)).collect()
}

fn reconciles(spans: &[Span]) -> Vec<&Span> {
    spans
        .iter()
        .filter(|s| s.name == "reconcile" && s.attr_str("object") == Some(NAME))
        .collect()
}

/// The reconcile that created the fleet: the one whose children applied Deployments.
fn creating_reconcile(spans: &[Span]) -> Option<&Span> {
    reconciles(spans).into_iter().find(|r| {
        children(spans, r)
            .iter()
            .any(|c| c.name == "apply Deployment" && c.attr_bool("modfleet.changed") == Some(true))
    })
}

/// A reconcile that applied everything again and changed nothing.
fn idle_reconcile(spans: &[Span]) -> Option<&Span> {
    reconciles(spans).into_iter().find(|r| {
        let applies: Vec<_> = children(spans, r)
            .into_iter()
            .filter(|c| c.name.starts_with("apply "))
            .collect();
        r.attr_i64("modfleet.changes") == Some(0)
            && !applies.is_empty()
            && applies
                .iter()
                .all(|c| c.attr_bool("modfleet.changed") == Some(false))
    })
}

#[test]
fn a_reconcile_is_one_trace_with_a_span_per_api_call() {
    let collector = Collector::start();
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("tracing");
    let grpc = collector.grpc_endpoint();
    let op = Operator::start_with_env(
        &ns,
        "op",
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    ns.apply(&format!(
        "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: {NAME}\nspec:\n  replicas: 2\n  upstreams:\n    - url: https://goproxy.example.com\n"
    ));
    ns.wait(&format!("gmp/{NAME}"), "condition=Ready", DEFAULT_TIMEOUT);

    let spans = collector.wait_for_spans(
        |spans| creating_reconcile(spans).is_some() && idle_reconcile(spans).is_some(),
        Duration::from_secs(120),
    );

    // The reconcile that built the fleet.
    let reconcile = creating_reconcile(&spans).unwrap();
    assert_eq!(reconcile.service_name.as_deref(), Some("modfleet-operator"));
    assert_eq!(reconcile.attr_str("namespace"), Some(ns.name()));
    assert_eq!(reconcile.attr_str("k8s.kind"), Some("GoModuleProxy"));
    assert_ne!(reconcile.status_code, StatusCode::Error, "{reconcile:#?}");
    let calls = children(&spans, reconcile);
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    for expected in [
        "apply ConfigMap",
        "apply ServiceAccount",
        "apply Service",
        "apply PersistentVolumeClaim",
        "apply Deployment",
        "apply PodDisruptionBudget",
        "apply NetworkPolicy",
        "patch status GoModuleProxy",
    ] {
        assert!(
            names.contains(&expected),
            "no {expected:?} under the reconcile; its children: {names:?}"
        );
    }
    for call in &calls {
        assert_eq!(call.trace_id, reconcile.trace_id);
        assert_eq!(call.kind, SpanKind::Client, "{call:#?}");
        assert_eq!(call.attr_str("k8s.namespace"), Some(ns.name()), "{call:#?}");
        assert!(call.attr_str("k8s.name").is_some(), "{call:#?}");
        assert!(
            call.start_unix_nanos >= reconcile.start_unix_nanos
                && call.end_unix_nanos <= reconcile.end_unix_nanos,
            "an API call outside its reconcile: {call:#?}"
        );
    }
    let deployments: Vec<&str> = calls
        .iter()
        .filter(|c| c.name == "apply Deployment")
        .filter_map(|c| c.attr_str("k8s.name"))
        .collect();
    assert_eq!(deployments, [format!("{NAME}-0"), format!("{NAME}-1")]);
    // The reconcile names what it changed, one entry per changing call.
    let changed_calls = calls
        .iter()
        .filter(|c| c.name.starts_with("apply ") || c.name.starts_with("create "))
        .filter(|c| c.attr_bool("modfleet.changed") == Some(true))
        .count();
    assert_eq!(
        reconcile.attr_i64("modfleet.changes"),
        Some(changed_calls as i64)
    );
    let changed = reconcile.attr_str("modfleet.changed_objects").unwrap_or("");
    for object in [
        format!("apply Deployment/{NAME}-0"),
        format!("apply Deployment/{NAME}-1"),
        format!("apply ConfigMap/{NAME}-config"),
        // Peer fill is on by default: the fleet's peer token is made once, by a create.
        format!("create Secret/{NAME}-peer-token"),
    ] {
        assert!(changed.contains(&object), "{object} not in {changed:?}");
    }

    // A later reconcile applied the same objects and changed nothing, though the
    // controller-manager wrote the Deployments' status in between.
    let idle = idle_reconcile(&spans).unwrap();
    assert_ne!(
        idle.trace_id, reconcile.trace_id,
        "each reconcile is its own trace"
    );
    assert_eq!(idle.attr_str("modfleet.changed_objects"), Some(""));

    // JSON log lines written inside a reconcile carry its trace.
    let traces: Vec<&str> = reconciles(&spans)
        .iter()
        .map(|r| r.trace_id.as_str())
        .collect();
    let log = op.logs();
    let traced_line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["trace_id"].as_str().is_some_and(|t| traces.contains(&t)));
    assert!(
        traced_line.is_some_and(|l| l["span_id"].as_str().is_some_and(|s| s.len() == 16)),
        "no log line with a reconcile's trace_id and a span_id in:\n{log}"
    );
    assert!(
        op.metric("modfleet_operator_trace_spans_exported_total")
            .unwrap_or(0.0)
            > 0.0
    );
    assert_eq!(
        op.metric("modfleet_operator_trace_spans_dropped_total"),
        Some(0.0)
    );
}
