//! Traces, exemplars and logs of the proxy, read back from a real OpenTelemetry Collector
//! (built by `hack/tools.sh`; see testkit/).

mod common;

use std::time::Duration;

use common::{Proxy, Reply, Upstream, config_file, metric_value, wait_committed};
use modfleet_testkit::collector::{Collector, Span, SpanKind, StatusCode};

const MODULE: &str = "example.com/traced";
const INFO_PATH: &str = "/example.com/traced/@v/v1.0.0.info";
const INFO: &[u8] = br#"{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}"#;
/// The client's trace: the proxy's server span must join it.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn by_name<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// One cache miss that meets a failing upstream (500), a hanging one (hedged after 200 ms)
/// and a good one: a single trace with the server span, three attempt spans and a cache write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_with_a_failure_and_a_hedge_is_one_trace_over_grpc() {
    let collector = Collector::start();
    let failing = Upstream::start(vec![(INFO_PATH, Reply::Status(500, "boom"))], None);
    let hanging = Upstream::start(vec![(INFO_PATH, Reply::Hang)], None);
    let good = Upstream::start(vec![(INFO_PATH, Reply::Body(INFO.to_vec()))], None);
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &format!(
            "upstreams:\n  - url: {}\n  - url: {}\n    timeout: 30s\n  - url: {}\nhedgeDelay: 200ms\nhealthCheck:\n  interval: 1h\nretry:\n  attempts: 1\n",
            failing.url, hanging.url, good.url
        ),
    );
    let grpc = collector.grpc_endpoint();
    let proxy = Proxy::start_with_env(
        &[],
        "127.0.0.1",
        &dir.path().join("cache"),
        &["--config", config.to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "proxy-under-test"),
        ],
    );

    let response = reqwest::Client::new()
        .get(format!("{}{INFO_PATH}", proxy.url))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), INFO);

    let spans = collector
        .wait_for_spans_async(
            |spans| {
                by_name(spans, "upstream attempt").len() >= 3
                    && !by_name(spans, "GET /{module}/@v/{version}.info").is_empty()
                    && !by_name(spans, "cache write").is_empty()
            },
            Duration::from_secs(30),
        )
        .await;
    let spans: Vec<Span> = spans
        .into_iter()
        .filter(|s| s.trace_id == CLIENT_TRACE)
        .collect();

    // The server span: a child of the client's span, named by the route template.
    let server = by_name(&spans, "GET /{module}/@v/{version}.info");
    assert_eq!(server.len(), 1, "{spans:#?}");
    let server = server[0];
    assert_eq!(server.parent_span_id.as_deref(), Some(CLIENT_SPAN));
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(server.service_name.as_deref(), Some("proxy-under-test"));
    assert_eq!(server.attr_str("http.request.method"), Some("GET"));
    assert_eq!(
        server.attr_str("http.route"),
        Some("/{module}/@v/{version}.info")
    );
    assert_eq!(server.attr_str("url.path"), Some(INFO_PATH));
    assert_eq!(server.attr_i64("http.response.status_code"), Some(200));
    assert_eq!(server.attr_str("modfleet.module"), Some(MODULE));
    assert_eq!(server.attr_str("modfleet.version"), Some("v1.0.0"));
    assert_eq!(server.attr_str("modfleet.artifact"), Some("info"));
    assert_eq!(server.attr_str("modfleet.cache"), Some("miss"));
    assert_ne!(server.status_code, StatusCode::Error);

    // Three attempts, children of the server span, numbered in order.
    let mut attempts = by_name(&spans, "upstream attempt");
    attempts.sort_by_key(|s| s.attr_i64("modfleet.attempt"));
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    for (i, a) in attempts.iter().enumerate() {
        assert!(
            a.is_child_of(server),
            "attempt {i} is not under the server span: {a:#?}"
        );
        assert_eq!(a.kind, SpanKind::Client);
        assert_eq!(a.attr_i64("modfleet.attempt"), Some(i as i64 + 1));
        assert_eq!(a.attr_str("http.request.method"), Some("GET"));
    }
    let (failed, slow, hedge) = (attempts[0], attempts[1], attempts[2]);
    assert_eq!(
        failed.attr_str("modfleet.upstream"),
        Some(failing.url.as_str())
    );
    assert_eq!(failed.attr_str("modfleet.outcome"), Some("error"));
    assert_eq!(failed.attr_i64("http.response.status_code"), Some(500));
    assert_eq!(failed.attr_bool("modfleet.hedge"), Some(false));
    assert_eq!(failed.status_code, StatusCode::Error);
    assert!(
        failed
            .attr_str("modfleet.error")
            .is_some_and(|e| e.contains("500")),
        "{failed:#?}"
    );

    assert_eq!(
        slow.attr_str("modfleet.upstream"),
        Some(hanging.url.as_str())
    );
    assert_eq!(slow.attr_bool("modfleet.hedge"), Some(false));
    assert_eq!(
        slow.attr_str("modfleet.outcome"),
        None,
        "the hanging attempt was cancelled before it had an outcome"
    );

    assert_eq!(hedge.attr_str("modfleet.upstream"), Some(good.url.as_str()));
    assert_eq!(hedge.attr_bool("modfleet.hedge"), Some(true));
    assert_eq!(hedge.attr_str("modfleet.outcome"), Some("ok"));
    assert_eq!(hedge.attr_i64("http.response.status_code"), Some(200));
    assert_eq!(hedge.attr_i64("modfleet.bytes"), Some(INFO.len() as i64));
    assert!(
        hedge.start_unix_nanos >= slow.start_unix_nanos + 200_000_000,
        "the hedge started after the hedge delay"
    );

    // The cache write belongs to the same trace, under the request.
    let writes = by_name(&spans, "cache write");
    assert_eq!(writes.len(), 1, "{writes:#?}");
    let write = writes[0];
    assert!(
        write.is_child_of(server) || write.is_child_of(hedge),
        "{write:#?}"
    );
    assert_eq!(write.attr_str("modfleet.outcome"), Some("committed"));
    assert_eq!(write.attr_i64("modfleet.bytes"), Some(INFO.len() as i64));

    // Every upstream was asked with our trace context: the attempt's span as parent.
    for (upstream, attempt) in [(&failing, failed), (&hanging, slow), (&good, hedge)] {
        assert_eq!(
            upstream.traceparents(INFO_PATH),
            [format!("00-{CLIENT_TRACE}-{}-01", attempt.span_id)],
            "traceparent sent to {}",
            upstream.url
        );
    }

    // The failed attempt's log line carries the trace and the attempt's span.
    let log = proxy
        .logs()
        .lines()
        .find(|l| l.contains("upstream attempt failed"))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .expect("a log line for the failed attempt");
    assert_eq!(log["trace_id"], CLIENT_TRACE, "{log}");
    assert_eq!(log["span_id"], failed.span_id.as_str(), "{log}");

    // The latency histograms carry the trace as an exemplar.
    let metrics = reqwest::get(format!("{}/metrics", proxy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("modfleet_proxy_request_duration_seconds_bucket")
                && l.contains(&format!("# {{trace_id=\"{CLIENT_TRACE}\"}}"))
        ),
        "no exemplar with the trace id in:\n{metrics}"
    );
    assert!(metric_value(&metrics, "modfleet_proxy_trace_spans_exported_total") >= 5.0);
    assert_eq!(
        metric_value(&metrics, "modfleet_proxy_trace_spans_dropped_total"),
        0.0
    );
}

/// OTLP over HTTP/protobuf (the specification's default protocol); a hit is traced too, as a
/// root span when the client sends no trace context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_over_http_protobuf_and_a_hit_is_traced_as_a_hit() {
    let collector = Collector::start();
    let good = Upstream::start(vec![(INFO_PATH, Reply::Body(INFO.to_vec()))], None);
    let dir = tempfile::tempdir().unwrap();
    let http = collector.http_endpoint();
    let proxy = Proxy::start_with_env(
        &[],
        "127.0.0.1",
        &dir.path().join("cache"),
        &["--upstream", &good.url],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", http.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let client = reqwest::Client::new();
    for _ in 0..2 {
        let r = client
            .get(format!("{}{INFO_PATH}", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Committed just after the answer: the second request is then a hit, not a join.
        wait_committed(&dir.path().join("cache/download").join(&INFO_PATH[1..])).await;
    }
    let spans = collector
        .wait_for_spans_async(
            |spans| by_name(spans, "GET /{module}/@v/{version}.info").len() >= 2,
            Duration::from_secs(30),
        )
        .await;
    let servers = by_name(&spans, "GET /{module}/@v/{version}.info");
    let results: Vec<_> = servers
        .iter()
        .map(|s| s.attr_str("modfleet.cache").unwrap_or_default())
        .collect();
    assert!(
        results.contains(&"miss") && results.contains(&"hit"),
        "{results:?}"
    );
    for s in &servers {
        assert!(s.is_root(), "no traceparent from the client: a new trace");
        assert_eq!(s.service_name.as_deref(), Some("modfleet-proxy"));
    }
    assert_ne!(servers[0].trace_id, servers[1].trace_id);
    let hit = servers
        .iter()
        .find(|s| s.attr_str("modfleet.cache") == Some("hit"))
        .unwrap();
    assert!(
        !spans.iter().any(|s| s.is_child_of(hit)),
        "a hit asks no upstream and writes nothing"
    );
}

/// Without an endpoint nothing is exported, and a bad OTEL_* value stops the start with a
/// message that names the variable.
#[test]
fn a_typo_in_the_otel_settings_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modfleet-proxy"))
        .args(["--upstream", "http://127.0.0.1:9", "--cache-dir"])
        .arg(dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "gprc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"gprc\"") && stderr.contains("grpc"),
        "{stderr}"
    );
}

/// `OTEL_TRACES_SAMPLER` decides what is recorded: a proxy on `always_off` exports nothing
/// (and serves no exemplars), while one on `traceidratio` 1 beside it, sending to the same
/// Collector, shows the path works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_setting_decides_what_is_exported() {
    let collector = Collector::start();
    let good = Upstream::start(vec![(INFO_PATH, Reply::Body(INFO.to_vec()))], None);
    let dir = tempfile::tempdir().unwrap();
    let grpc = collector.grpc_endpoint();
    let start = |name: &str, sampler: &str| {
        Proxy::start_with_env(
            &[],
            "127.0.0.1",
            &dir.path().join(name),
            &["--upstream", &good.url],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc.as_str()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
                ("OTEL_SERVICE_NAME", name),
                ("OTEL_TRACES_SAMPLER", sampler),
                ("OTEL_TRACES_SAMPLER_ARG", "1"),
            ],
        )
    };
    let off = start("sampled-off", "always_off");
    let on = start("sampled-on", "traceidratio");
    for proxy in [&off, &on] {
        let r = reqwest::get(format!("{}{INFO_PATH}", proxy.url))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let spans = collector
        .wait_for_spans_async(
            |spans| {
                spans
                    .iter()
                    .any(|s| s.service_name.as_deref() == Some("sampled-on") && s.is_root())
            },
            Duration::from_secs(30),
        )
        .await;
    assert!(
        spans
            .iter()
            .all(|s| s.service_name.as_deref() != Some("sampled-off")),
        "always_off exported spans"
    );
    let metrics = reqwest::get(format!("{}/metrics", off.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric_value(&metrics, "modfleet_proxy_trace_spans_exported_total"),
        0.0
    );
    assert!(
        !metrics.contains("trace_id="),
        "an exemplar of an unsampled trace"
    );
}
