//! Logs and traces of the operator, set up by the shared `modfleet-telemetry` crate: JSON or
//! text logs (`RUST_LOG` filters; JSON lines inside a traced reconcile carry `trace_id` and
//! `span_id`), and OTLP trace export when the standard `OTEL_*` variables name an endpoint.
//!
//! Spans: `reconcile` (one per reconciliation, with the object, its generation, and in
//! `modfleet.changes`/`modfleet.changed_objects` what it changed) and one child span per
//! Kubernetes API call (`apply Deployment`, `list PersistentVolumeClaim`, `patch status
//! GoModuleProxy`, `create Event`, ...; see `apply.rs`), each with `modfleet.changed`.

use std::sync::OnceLock;

pub use modfleet_telemetry::{Error, ExportStats, LogFormat, Telemetry};

static STATS: OnceLock<ExportStats> = OnceLock::new();

/// Installs logging and, when configured, trace export. Call inside the tokio runtime.
pub fn init(format: LogFormat) -> Result<Telemetry, Error> {
    let telemetry = Telemetry::init(&modfleet_telemetry::Options {
        service_name: "modfleet-operator",
        service_version: env!("CARGO_PKG_VERSION"),
        log_format: format,
        default_log_filter: "info,kube_runtime=warn,kube_client=warn",
        trace_targets: &["modfleet_operator"],
    })?;
    let _ = STATS.set(telemetry.stats().clone());
    Ok(telemetry)
}

/// The trace exporter's counters, for `/metrics` (zeros when export is off or not set up).
pub fn export_stats() -> ExportStats {
    STATS.get().cloned().unwrap_or_default()
}
