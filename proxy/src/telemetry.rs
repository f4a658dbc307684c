//! Logs and traces of the proxy, set up by the shared `modfleet-telemetry` crate: `RUST_LOG`
//! filters logs (default `info`), `--log-format json` gives one JSON object per line with
//! `trace_id`/`span_id`, and the standard `OTEL_*` variables turn on OTLP trace export.
//!
//! The spans the proxy records (see `server.rs`, `upstream/`, `fetch.rs`):
//! - `GET {route}` (server): one per GOPROXY request, named by the route template
//!   (`/{module}/@v/{version}.zip`), with the module, version, artifact kind and cache result;
//! - `upstream attempt` (client): one per request to an upstream, with attempt number, hedge,
//!   outcome and bytes; `traceparent` is sent along;
//! - `cache write`: storing a fetched file.

pub use modfleet_telemetry::{Error, LogFormat, Telemetry};

/// Installs logging and, when configured, trace export. Call inside the tokio runtime.
pub fn init(format: LogFormat) -> Result<Telemetry, Error> {
    Telemetry::init(&modfleet_telemetry::Options {
        service_name: "modfleet-proxy",
        service_version: env!("CARGO_PKG_VERSION"),
        log_format: format,
        default_log_filter: "info",
        trace_targets: &["modfleet_proxy"],
    })
}
