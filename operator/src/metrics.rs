//! The operator's Prometheus metrics; [`crate::admin`] serves them on `/metrics`.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `mutated`, `unchanged`, `no_fleet`, `opted_out`, `protected`, `not_ready`,
    /// `namespace_unknown`, `not_a_pod_create` or `bad_request`.
    pub result: &'static str,
}

/// The operator's metrics.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<ErrorLabels, Counter>,
    pub duration: Histogram,
    pub leader: Gauge,
    /// Admissions answered by the injection webhook, by result.
    pub admissions: Family<AdmissionLabels, Counter>,
    pub admission_duration: Histogram,
    /// When the webhook's serving certificate expires (Unix seconds; 0: none presented).
    pub webhook_certificate_expiry: Gauge,
    /// Set once the operator can serve (API server reachable, CRD installed): `/readyz`.
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("modfleet_operator");
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciliations started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by reason",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciliations",
            duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease (or runs without leader election)",
            leader.clone(),
        );
        let admissions = Family::<AdmissionLabels, Counter>::default();
        let admission_duration =
            Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 2.5]);
        registry.register(
            "admissions",
            "Pod admissions answered by the injection webhook, by result",
            admissions.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time the injection webhook took to answer an admission",
            admission_duration.clone(),
        );
        let webhook_certificate_expiry = Gauge::default();
        registry.register(
            "webhook_certificate_expiry_timestamp_seconds",
            "When the injection webhook's serving certificate expires (0: none presented yet)",
            webhook_certificate_expiry.clone(),
        );
        crate::telemetry::export_stats().register(&mut registry);
        Metrics {
            webhook_certificate_expiry,
            admissions,
            admission_duration,
            registry,
            reconciles,
            failures,
            duration,
            leader,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn observe(&self, took: Duration, error: Option<&'static str>) {
        self.duration.observe(took.as_secs_f64());
        if let Some(reason) = error {
            self.failures
                .get_or_create(&ErrorLabels {
                    reason: reason.to_owned(),
                })
                .inc();
        }
    }

    /// Counts one admission answered with `result`.
    pub fn admission(&self, result: &'static str) {
        self.admissions
            .get_or_create(&AdmissionLabels { result })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode() {
        let m = Metrics::default();
        m.reconciles.inc();
        m.observe(Duration::from_millis(20), Some("ApplyFailed"));
        let s = m.encode();
        assert!(s.contains("modfleet_operator_reconciles_total 1"), "{s}");
        assert!(
            s.contains("modfleet_operator_reconcile_errors_total{reason=\"ApplyFailed\"} 1"),
            "{s}"
        );
        assert!(
            s.contains("modfleet_operator_reconcile_duration_seconds_count 1"),
            "{s}"
        );
    }
}
