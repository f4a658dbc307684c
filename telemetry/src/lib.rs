//! Logs and traces for modfleet's binaries, set up the same way in both.
//!
//! - Logs go to stderr as text or JSON ([`json_log`]); `RUST_LOG` filters them.
//! - Traces: `tracing` spans become OpenTelemetry spans and are exported over OTLP (gRPC or
//!   HTTP/protobuf) when the standard `OTEL_*` variables name an endpoint ([`settings`]);
//!   otherwise no trace layer is installed at all and spans cost what a `tracing` span costs.
//! - Export goes through a bounded queue drained by a task ([`queue`]); drops are counted in
//!   [`ExportStats`], which the binaries serve on `/metrics`.
//! - W3C `traceparent` in and out: [`parent_from_headers`], [`inject_current`].
//! - The end of the process: [`shutdown_signal`] (SIGTERM or Ctrl-C), after which the binaries
//!   flush the export queue with [`Telemetry::shutdown`].
//!
//! Only spans and events of the targets named in [`Options::trace_targets`] become trace data,
//! so the HTTP/gRPC libraries' own spans (including the exporter's) never feed back into it.

pub mod json_log;
pub mod queue;
pub mod settings;
mod shutdown;

use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Key, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter as _};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use queue::ExportStats;
pub use settings::{ExportSettings, Protocol};
pub use shutdown::shutdown_signal;

/// Problems found while setting up telemetry; each says which setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{name}={value:?} is not valid: expected {expected}")]
    Env {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot build the OTLP trace exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("trace export needs a tokio runtime: call init inside one")]
    NoRuntime,
}

/// How log lines are written: `--log-format` of both binaries and `logFormat` of the proxy's
/// config file. Each binary picks its own default.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For people: one line per event, colored on a terminal.
    Text,
    /// For machines: one JSON object per line, with `trace_id` and `span_id` inside a trace.
    Json,
}

impl LogFormat {
    /// The spelling of the flag and the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What differs between the binaries.
#[derive(Debug, Clone)]
pub struct Options {
    /// `service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` set one.
    pub service_name: &'static str,
    pub service_version: &'static str,
    pub log_format: LogFormat,
    /// The log filter when `RUST_LOG` is unset.
    pub default_log_filter: &'static str,
    /// Targets (crate names) whose spans and events down to DEBUG are traced. Hot-path spans
    /// belong at DEBUG: with export off and logs at INFO nothing enables them, so they cost
    /// nothing.
    pub trace_targets: &'static [&'static str],
}

/// Installed telemetry. Keep it for the life of the process and call [`Telemetry::shutdown`]
/// at the end so the last spans are sent.
#[derive(Debug)]
pub struct Telemetry {
    export: Option<Export>,
    stats: ExportStats,
}

#[derive(Debug)]
struct Export {
    settings: ExportSettings,
    provider: SdkTracerProvider,
    flusher: queue::Flusher,
}

impl Telemetry {
    /// Installs the global subscriber. With an OTLP endpoint configured this must run inside a
    /// tokio runtime (the export task is spawned on it).
    pub fn init(options: &Options) -> Result<Telemetry, Error> {
        let settings = ExportSettings::from_env(|name| std::env::var(name).ok())?;
        Self::init_with(options, settings)
    }

    fn init_with(options: &Options, settings: Option<ExportSettings>) -> Result<Telemetry, Error> {
        let stats = ExportStats::default();
        let export = match settings {
            None => None,
            Some(settings) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(Error::NoRuntime);
                }
                let mut exporter = build_exporter(&settings)?;
                let resource = resource(options);
                exporter.set_resource(&resource);
                let (processor, flusher) = queue::spawn(exporter, &settings, stats.clone());
                let provider = SdkTracerProvider::builder()
                    .with_resource(resource)
                    .with_span_processor(processor)
                    .build();
                Some(Export {
                    settings,
                    provider,
                    flusher,
                })
            }
        };

        let log_filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(options.default_log_filter));
        let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
        if let Some(export) = &export {
            let targets = Targets::new().with_targets(
                options
                    .trace_targets
                    .iter()
                    .map(|t| (t.to_string(), tracing::Level::DEBUG)),
            );
            let tracer = export.provider.tracer(options.service_name);
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_tracked_inactivity(false)
                    .with_threads(false)
                    .with_filter(targets)
                    .boxed(),
            );
        }
        use std::io::IsTerminal;
        layers.push(match options.log_format {
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .with_filter(log_filter)
                .boxed(),
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(json_log::JsonWithTrace)
                .with_writer(std::io::stderr)
                .with_filter(log_filter)
                .boxed(),
        });
        // try_init: a test may have installed a subscriber already.
        let _ = tracing_subscriber::registry().with(layers).try_init();
        if let Some(export) = &export {
            tracing::info!(
                target: "modfleet_telemetry",
                endpoint = %export.settings.endpoint,
                protocol = export.settings.protocol.as_str(),
                "exporting traces over OTLP"
            );
        }
        Ok(Telemetry { export, stats })
    }

    /// Counters of exported, dropped and failed spans (zero when export is off).
    pub fn stats(&self) -> &ExportStats {
        &self.stats
    }

    /// The export settings, or None when traces are not exported.
    pub fn export_settings(&self) -> Option<&ExportSettings> {
        self.export.as_ref().map(|e| &e.settings)
    }

    /// Sends the spans finished so far (bounded wait).
    pub async fn flush(&self) {
        if let Some(export) = &self.export {
            export.flusher.flush(Duration::from_secs(5)).await;
        }
    }

    /// Sends what is queued and stops the export.
    pub async fn shutdown(self) {
        if let Some(export) = self.export {
            export.flusher.flush(Duration::from_secs(5)).await;
            let _ = export.provider.shutdown();
        }
    }
}

fn build_exporter(settings: &ExportSettings) -> Result<opentelemetry_otlp::SpanExporter, Error> {
    use opentelemetry_otlp::WithExportConfig;
    // Endpoint, headers and timeout come from the OTEL_* variables, read by the builder.
    let built = match settings.protocol {
        Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_protocol(opentelemetry_otlp::Protocol::Grpc)
            .build(),
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    };
    built.map_err(|source| Error::Exporter {
        endpoint: settings.endpoint.clone(),
        source,
    })
}

fn resource(options: &Options) -> Resource {
    let from_env = Resource::builder().build();
    let named = from_env
        .get(&Key::new("service.name"))
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    let mut builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", options.service_version));
    if !named {
        builder = builder.with_service_name(options.service_name);
    }
    builder.build()
}

/// An error and its sources, each said once, for log lines and status messages ("error
/// sending request: client error (Connect): tcp connect error: Connection refused"). Sources
/// whose text the outer message already contains are skipped, as many libraries repeat them.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// The remote parent named by a request's `traceparent`/`tracestate` headers (an empty context
/// when there are none or they are malformed).
pub fn parent_from_headers(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Makes `span` a child of the trace in `headers`, when they carry one.
pub fn adopt_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    // Traces off: the span was never created, there is nothing to parse the headers for.
    if span.is_disabled() {
        return;
    }
    let parent = parent_from_headers(headers);
    if parent.span().span_context().is_valid() {
        // Fails only when no trace layer is installed: then there is nothing to link.
        let _ = span.set_parent(parent);
    }
}

/// Adds `traceparent` (and `tracestate`) for the current span, so an upstream that traces
/// continues our trace. Adds nothing when traces are off.
pub fn inject_current(headers: &mut http::HeaderMap) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The trace id of `span` when its trace is sampled: for exemplars and log correlation.
pub fn sampled_trace_id(span: &tracing::Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: &'static str,
        source: Option<Box<Layer>>,
    }

    #[test]
    fn error_chain_says_each_source_once() {
        let e = Layer {
            text: "sending request",
            source: Some(Box::new(Layer {
                text: "connect: refused",
                source: Some(Box::new(Layer {
                    text: "refused",
                    source: None,
                })),
            })),
        };
        assert_eq!(error_chain(&e), "sending request: connect: refused");
    }
}
