//! The Collector harness against the real `otelcol-modfleet`: a span sent over OTLP/HTTP comes
//! back through the file exporter with its name, attributes and parent link.

use std::net::TcpStream;
use std::time::Duration;

use modfleet_testkit::{Collector, Signal, SpanKind, StatusCode};
use serde_json::json;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const SPAN_ID: &str = "53995c3f42cd8ad8";

#[test]
fn a_span_posted_over_otlp_http_is_read_back() {
    let collector = Collector::start();
    assert!(collector.grpc_endpoint().starts_with("http://127.0.0.1:"));
    assert_ne!(collector.grpc_endpoint(), collector.http_endpoint());
    TcpStream::connect(collector.grpc_addr()).expect("the OTLP/gRPC port accepts connections");
    assert!(collector.spans().is_empty());

    let request = json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "testkit-test"}},
            ]},
            "scopeSpans": [{
                "scope": {"name": "modfleet-testkit"},
                "spans": [{
                    "traceId": TRACE_ID,
                    "spanId": SPAN_ID,
                    "parentSpanId": PARENT_ID,
                    "name": "GET /{module}/@v/{version}.zip",
                    "kind": 2,
                    "startTimeUnixNano": "1700000000000000000",
                    "endTimeUnixNano": "1700000000500000000",
                    "attributes": [
                        {"key": "http.response.status_code", "value": {"intValue": "200"}},
                        {"key": "modfleet.cache", "value": {"stringValue": "hit"}},
                        {"key": "modfleet.coalesced", "value": {"boolValue": true}},
                        {"key": "ratio", "value": {"doubleValue": 0.25}},
                    ],
                    "status": {"code": 2, "message": "upstream failed"},
                }],
            }],
        }],
    });
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", collector.http_endpoint()))
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&request).unwrap())
        .send()
        .expect("POST /v1/traces");
    assert!(response.status().is_success(), "{:?}", response.text());

    let spans = collector.wait_for_spans(|spans| !spans.is_empty(), Duration::from_secs(10));
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    assert_eq!(span.name, "GET /{module}/@v/{version}.zip");
    assert_eq!(span.trace_id, TRACE_ID);
    assert_eq!(span.span_id, SPAN_ID);
    assert_eq!(span.parent_span_id.as_deref(), Some(PARENT_ID));
    assert!(!span.is_root());
    assert_eq!(span.kind, SpanKind::Server);
    assert_eq!(span.service_name.as_deref(), Some("testkit-test"));
    assert_eq!(span.scope_name, "modfleet-testkit");
    assert_eq!(span.attr_i64("http.response.status_code"), Some(200));
    assert_eq!(span.attr_str("modfleet.cache"), Some("hit"));
    assert_eq!(span.attr_bool("modfleet.coalesced"), Some(true));
    assert_eq!(span.attr_f64("ratio"), Some(0.25));
    assert_eq!(span.status_code, StatusCode::Error);
    assert_eq!(span.status_message, "upstream failed");
    assert_eq!(span.duration(), Duration::from_millis(500));

    // Other signals have files of their own; nothing was sent there.
    assert!(collector.json_lines(Signal::Logs).is_empty());
    assert!(collector.json_lines(Signal::Metrics).is_empty());
}

#[test]
fn wait_for_spans_names_what_it_saw_on_timeout() {
    let collector = Collector::start();
    let request = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": TRACE_ID, "spanId": SPAN_ID, "name": "seen-span",
        "startTimeUnixNano": "1", "endTimeUnixNano": "2",
    }]}]}]});
    reqwest::blocking::Client::new()
        .post(format!("{}/v1/traces", collector.http_endpoint()))
        .header("Content-Type", "application/json")
        .body(request.to_string())
        .send()
        .unwrap()
        .error_for_status()
        .unwrap();
    collector.wait_for_spans(
        |s| s.iter().any(|s| s.name == "seen-span"),
        Duration::from_secs(10),
    );

    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        collector.wait_for_spans(
            |s| s.iter().any(|s| s.name == "never"),
            Duration::from_millis(200),
        )
    }))
    .expect_err("the wait must time out");
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(message.contains("seen-span"), "{message}");
}

#[test]
fn two_collectors_run_side_by_side() {
    let a = Collector::start();
    let b = Collector::start();
    assert_ne!(a.grpc_endpoint(), b.grpc_endpoint());
    assert_ne!(a.dir(), b.dir());
    let pid = a.pid();
    drop(a);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the Collector process is gone after drop"
    );
    TcpStream::connect(b.http_addr()).expect("the other Collector still runs");
}
