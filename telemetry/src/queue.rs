//! The export queue: finished spans go into a bounded channel and a task on the runtime sends
//! them in batches. A full queue drops the span and counts it: exporting must never make a
//! request wait. (The SDK's own batch processor runs its exporter on a thread of its own,
//! which the gRPC and async HTTP exporters cannot use, and does not count drops in a way a
//! metric can read.)

use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::settings::ExportSettings;

/// Counters of what happened to finished spans, for the binaries' `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct ExportStats {
    /// Spans the collector accepted.
    pub exported: Counter,
    /// Spans dropped because the queue was full.
    pub dropped: Counter,
    /// Spans lost because an export call failed or timed out.
    pub failed: Counter,
}

impl ExportStats {
    /// Serves the counters as `PREFIX_trace_spans_{exported,dropped,failed}_total` in the
    /// binary's registry (they stay 0 while export is off).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "trace_spans_exported",
            "Spans accepted by the OTLP collector",
            self.exported.clone(),
        );
        registry.register(
            "trace_spans_dropped",
            "Spans dropped because the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE)",
            self.dropped.clone(),
        );
        registry.register(
            "trace_spans_failed",
            "Spans lost because an export call failed or timed out",
            self.failed.clone(),
        );
    }
}

enum Message {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The [`SpanProcessor`] half: never blocks.
#[derive(Debug)]
pub struct QueueProcessor {
    tx: mpsc::Sender<Message>,
    stats: ExportStats,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Span(_) => "Span",
            Message::Flush(_) => "Flush",
        })
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(Message::Span(Box::new(span))).is_err() {
            self.stats.dropped.inc();
        }
    }

    /// Flushing is asynchronous: see [`Flusher::flush`]. This trait method may be called on a
    /// runtime thread, where waiting would stall it.
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Asks the export task to send what it holds.
#[derive(Debug, Clone)]
pub struct Flusher {
    tx: mpsc::Sender<Message>,
}

impl Flusher {
    /// Sends every queued span and waits (bounded by `timeout`) until the export call returned.
    pub async fn flush(&self, timeout: Duration) {
        let (ack, done) = oneshot::channel();
        let sent = tokio::time::timeout(timeout, self.tx.send(Message::Flush(ack))).await;
        if matches!(sent, Ok(Ok(()))) {
            let _ = tokio::time::timeout(timeout, done).await;
        }
    }
}

/// Creates the processor and spawns its export task on the current tokio runtime.
pub fn spawn<E: SpanExporter + 'static>(
    exporter: E,
    settings: &ExportSettings,
    stats: ExportStats,
) -> (QueueProcessor, Flusher) {
    let (tx, rx) = mpsc::channel(settings.max_queue_size);
    let task = ExportTask {
        exporter,
        batch: Vec::with_capacity(settings.max_export_batch_size),
        batch_size: settings.max_export_batch_size,
        timeout: settings.export_timeout,
        stats: stats.clone(),
        failing: false,
    };
    tokio::spawn(task.run(rx, settings.schedule_delay));
    (
        QueueProcessor {
            tx: tx.clone(),
            stats,
        },
        Flusher { tx },
    )
}

struct ExportTask<E> {
    exporter: E,
    batch: Vec<SpanData>,
    batch_size: usize,
    timeout: Duration,
    stats: ExportStats,
    /// Whether the last export failed: log once per outage, not once per batch.
    failing: bool,
}

impl<E: SpanExporter> ExportTask<E> {
    async fn run(mut self, mut rx: mpsc::Receiver<Message>, delay: Duration) {
        let mut tick = tokio::time::interval(delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(Message::Span(span)) => {
                        self.batch.push(*span);
                        if self.batch.len() >= self.batch_size {
                            self.export().await;
                        }
                    }
                    Some(Message::Flush(ack)) => {
                        // Take what is queued behind the flush request's predecessors too.
                        while let Ok(Message::Span(span)) = rx.try_recv() {
                            self.batch.push(*span);
                        }
                        self.export().await;
                        let _ = ack.send(());
                    }
                    None => {
                        self.export().await;
                        let _ = self.exporter.shutdown();
                        return;
                    }
                },
                _ = tick.tick() => self.export().await,
            }
        }
    }

    async fn export(&mut self) {
        while !self.batch.is_empty() {
            let take = self.batch.len().min(self.batch_size);
            let spans: Vec<SpanData> = self.batch.drain(..take).collect();
            let n = spans.len() as u64;
            match tokio::time::timeout(self.timeout, self.exporter.export(spans)).await {
                Ok(Ok(())) => {
                    self.stats.exported.inc_by(n);
                    if std::mem::take(&mut self.failing) {
                        tracing::info!(target: "modfleet_telemetry", "trace export works again");
                    }
                }
                Ok(Err(e)) => self.failed(n, &e.to_string()),
                Err(_) => self.failed(n, "the export call timed out (OTEL_BSP_EXPORT_TIMEOUT)"),
            }
        }
    }

    fn failed(&mut self, n: u64, error: &str) {
        self.stats.failed.inc_by(n);
        if !std::mem::replace(&mut self.failing, true) {
            tracing::warn!(target: "modfleet_telemetry", spans = n, error, "trace export failed; spans are dropped until it works again");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};

    use super::*;

    #[derive(Debug, Clone, Default)]
    struct Recorder {
        batches: Arc<Mutex<Vec<usize>>>,
        /// Export calls wait on this gate when set.
        gate: Option<Arc<tokio::sync::Semaphore>>,
    }

    impl SpanExporter for Recorder {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            if let Some(gate) = &self.gate {
                let _permit = gate.acquire().await;
            }
            self.batches.lock().unwrap().push(batch.len());
            Ok(())
        }
    }

    fn span(sampled: bool) -> SpanData {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from(1u128),
                SpanId::from(1u64),
                flags,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: "test".into(),
            start_time: std::time::SystemTime::now(),
            end_time: std::time::SystemTime::now(),
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: opentelemetry::trace::Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    fn settings(queue: usize, batch: usize) -> ExportSettings {
        ExportSettings {
            endpoint: "http://unused".into(),
            protocol: crate::settings::Protocol::Grpc,
            max_queue_size: queue,
            max_export_batch_size: batch,
            schedule_delay: Duration::from_secs(3600),
            export_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn flush_exports_in_batches_and_skips_unsampled_spans() {
        let recorder = Recorder::default();
        let stats = ExportStats::default();
        let (processor, flusher) = spawn(recorder.clone(), &settings(100, 4), stats.clone());
        for _ in 0..10 {
            processor.on_end(span(true));
        }
        processor.on_end(span(false));
        flusher.flush(Duration::from_secs(5)).await;
        let batches = recorder.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 10, "{batches:?}");
        assert!(batches.iter().all(|b| *b <= 4), "{batches:?}");
        assert_eq!(stats.exported.get(), 10);
        assert_eq!(stats.dropped.get(), 0);
    }

    #[tokio::test]
    async fn a_stuck_collector_drops_and_counts_instead_of_blocking() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let recorder = Recorder {
            gate: Some(gate.clone()),
            ..Recorder::default()
        };
        let stats = ExportStats::default();
        let (processor, flusher) = spawn(recorder.clone(), &settings(8, 1), stats.clone());
        // The task takes the first span and blocks exporting it; 8 more fill the queue;
        // everything after that is dropped at once.
        for _ in 0..100 {
            processor.on_end(span(true));
        }
        let dropped = stats.dropped.get();
        assert!((91..=92).contains(&dropped), "dropped {dropped}");
        gate.add_permits(1000);
        flusher.flush(Duration::from_secs(5)).await;
        assert_eq!(stats.exported.get() + dropped, 100);
    }
}
