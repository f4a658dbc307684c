//! JSON log lines that carry the trace: one object per line with `timestamp`, `level`,
//! `target`, the event's fields, the current span's name and fields, and `trace_id`/`span_id`
//! of that span when a trace is recorded, so a log search can jump to the trace and back.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter. Pair it with [`JsonFields`] so span fields are stored as JSON.
pub struct JsonWithTrace;

impl<S> FormatEvent<S, JsonFields> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
                .to_string()
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut FieldVisitor(&mut line));

        // The current span as the subscriber knows it, not as this layer's filter sees it:
        // hot-path spans are enabled only for the trace layer, and their trace still belongs
        // on the line.
        let current = tracing::Span::current();
        if let (Some(id), Some(meta)) = (current.id(), current.metadata()) {
            let mut fields = Map::new();
            fields.insert("name".into(), meta.name().into());
            // The guard on the span's extensions is dropped before the context lookup below,
            // which takes it again.
            if let Some(span) = ctx.span(&id) {
                let ext = span.extensions();
                if let Some(formatted) = ext.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str(formatted.as_str())
                {
                    fields.extend(map);
                }
            }
            line.insert("span".into(), Value::Object(fields));
            if let Some(cx) = tracing::dispatcher::get_default(|d| {
                tracing_opentelemetry::get_otel_context(&id, d)
            }) {
                let span_context = cx.span().span_context().clone();
                if span_context.is_valid() {
                    line.insert(
                        "trace_id".into(),
                        span_context.trace_id().to_string().into(),
                    );
                    line.insert("span_id".into(), span_context.span_id().to_string().into());
                }
            }
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct FieldVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
