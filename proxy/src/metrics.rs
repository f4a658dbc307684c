//! The Prometheus metric registry of the proxy, served on the admin port at `/metrics`
//! (OpenMetrics text). Names are prefixed `modfleet_proxy_`; dashboards and alert rules
//! depend on them, so rename with care.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// list, latest, info, mod, zip, sumdb, other
    pub route: &'static str,
    pub status: u16,
    /// hit, miss, coalesced, bypass (served without caching), stale, negative (a remembered
    /// not-found), none (not cacheable or refused)
    pub cache: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
    /// ok, not_found, error, timeout, invalid
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    pub upstream: String,
}

/// The exemplar label of latency histograms: the trace of one observation, so a dashboard can
/// jump from a slow bucket to a trace that landed in it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    pub trace_id: String,
}

impl TraceExemplar {
    /// The exemplar for an observation made in `span`, when its trace is sampled.
    pub fn of(span: &tracing::Span) -> Option<TraceExemplar> {
        modfleet_telemetry::sampled_trace_id(span).map(|trace_id| TraceExemplar { trace_id })
    }
}

type LatencyHistogram = HistogramWithExemplars<TraceExemplar>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// goproxy or admin
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerReasonLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityLabel {
    /// An identity of the tokens files (the first 100 seen), `anonymous` or `(other)`.
    pub identity: String,
}

/// Every metric the proxy exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabel, LatencyHistogram>,
    pub upstream_requests: Family<UpstreamLabels, Counter>,
    pub upstream_duration: Family<UpstreamLabel, LatencyHistogram>,
    pub cache_bytes: Gauge,
    pub cache_objects: Gauge,
    /// The configured bound (0: unbounded), so "cache nearly full" is a ratio in PromQL.
    pub cache_max_bytes: Gauge,
    pub cache_evictions: Counter,
    pub cache_write_errors: Family<ReasonLabel, Counter>,
    pub inflight_fetches: Gauge,
    pub coalesced_waiters: Counter,
    pub upstream_healthy: Family<UpstreamLabel, Gauge>,
    pub upstream_breaker_state: Family<UpstreamLabel, Gauge>,
    pub upstream_demoted: Family<UpstreamLabel, Gauge>,
    pub upstream_hedges: Family<UpstreamLabel, Counter>,
    pub upstream_retries: Counter,
    pub negative_cache_entries: Gauge,
    pub checksum_checks: Family<OutcomeLabel, Counter>,
    pub prefetch: Family<OutcomeLabel, Counter>,
    pub prefetch_hits: Counter,
    pub prefetch_unused: Counter,
    pub connections_open: Family<ListenerLabel, Gauge>,
    pub connections_limit: Family<ListenerLabel, Gauge>,
    pub connections_accepted: Family<ListenerLabel, Counter>,
    pub connections_refused: Family<ListenerReasonLabels, Counter>,
    pub connections_closed: Family<ListenerReasonLabels, Counter>,
    pub accept_errors: Family<ListenerLabel, Counter>,
    pub open_files_limit: Gauge,
    pub client_requests: Family<IdentityLabel, Counter>,
    pub access_refusals: Family<ListenerReasonLabels, Counter>,
    pub access_token_reloads: Family<OutcomeLabel, Counter>,
}

/// The client port's TLS metrics (see [`Metrics::register_tls`]).
#[derive(Debug, Clone, Default)]
pub struct TlsMetrics {
    pub handshake_failures: Family<ReasonLabel, Counter>,
    pub certificate_reloads: Family<OutcomeLabel, Counter>,
    pub certificate_expiry: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreResultLabel {
    pub result: &'static str,
}

/// The shared object store's metrics (see [`Metrics::register_store`]).
#[derive(Debug, Clone, Default)]
pub struct StoreMetrics {
    pub reads: Family<StoreResultLabel, Counter>,
    pub writes: Family<StoreResultLabel, Counter>,
    pub queue_depth: Gauge,
    pub breaker_state: Gauge,
}

/// Peer fill's metrics (see [`Metrics::register_peers`]).
#[derive(Debug, Clone, Default)]
pub struct PeerMetrics {
    pub asks: Family<StoreResultLabel, Counter>,
    pub served: Counter,
    pub members: Gauge,
}

fn latency_histogram() -> LatencyHistogram {
    // 1ms .. ~65s
    HistogramWithExemplars::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 17,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("modfleet_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "GOPROXY requests by route, status code and cache result",
            requests.clone(),
        );
        let request_duration = Family::<RouteLabel, LatencyHistogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer a GOPROXY request (until the body is handed to the connection)",
            request_duration.clone(),
        );
        let upstream_requests = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_requests",
            "Requests to upstream proxies and checksum databases by outcome",
            upstream_requests.clone(),
        );
        let upstream_duration = Family::<UpstreamLabel, LatencyHistogram>::new_with_constructor(
            latency_histogram as fn() -> _,
        );
        registry.register(
            "upstream_request_duration_seconds",
            "Time until an upstream answer was complete (or failed)",
            upstream_duration.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "cache_bytes",
            "Bytes held in the disk cache",
            cache_bytes.clone(),
        );
        let cache_objects = Gauge::default();
        registry.register(
            "cache_objects",
            "Files held in the disk cache",
            cache_objects.clone(),
        );
        let cache_max_bytes = Gauge::default();
        registry.register(
            "cache_max_bytes",
            "The cache's size bound (--cache-max-bytes); 0 when unbounded",
            cache_max_bytes.clone(),
        );
        let cache_evictions = Counter::default();
        registry.register(
            "cache_evictions",
            "Files evicted to keep the cache under --cache-max-bytes",
            cache_evictions.clone(),
        );
        let checksum_checks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "checksum_checks",
            "Downloads checked against the checksum database, by outcome: confirmed; mismatch \
             and invalid_database_answer (security events); not_in_database; database_unavailable",
            checksum_checks.clone(),
        );
        let prefetch = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "prefetch",
            "Dependency prefetches of the .mod files (and zips) a fetched go.mod requires, by \
             outcome: fetched (from an upstream), cached (already cached or being fetched), \
             skipped (invalid, excluded or private, past the per-.mod bound), dropped (queue \
             full), failed",
            prefetch.clone(),
        );
        let prefetch_hits = Counter::default();
        registry.register(
            "prefetch_hits",
            "Prefetched files a client then asked for (counted once per prefetch)",
            prefetch_hits.clone(),
        );
        let prefetch_unused = Counter::default();
        registry.register(
            "prefetch_unused",
            "Prefetched files no client had asked for when they were forgotten (wasted; \
             the 4096 most recent prefetches are remembered)",
            prefetch_unused.clone(),
        );
        let cache_write_errors = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "cache_write_errors",
            "Failed cache writes (reason=enospc: disk full; the answer was served uncached)",
            cache_write_errors.clone(),
        );
        let inflight_fetches = Gauge::default();
        registry.register(
            "inflight_fetches",
            "Upstream downloads in progress (after coalescing)",
            inflight_fetches.clone(),
        );
        let coalesced_waiters = Counter::default();
        registry.register(
            "coalesced_waiters",
            "Requests that joined a download already in progress instead of starting one",
            coalesced_waiters.clone(),
        );
        let upstream_healthy = Family::<UpstreamLabel, Gauge>::default();
        registry.register(
            "upstream_healthy",
            "1 when the upstream is healthy (breaker not open, probes passing), else 0",
            upstream_healthy.clone(),
        );
        let upstream_breaker_state = Family::<UpstreamLabel, Gauge>::default();
        registry.register(
            "upstream_breaker_state",
            "Circuit breaker of each upstream: 0 closed, 1 half-open, 2 open",
            upstream_breaker_state.clone(),
        );
        let upstream_demoted = Family::<UpstreamLabel, Gauge>::default();
        registry.register(
            "upstream_demoted",
            "1 while the upstream is demoted as a latency outlier (asked after faster healthy ones)",
            upstream_demoted.clone(),
        );
        let upstream_hedges = Family::<UpstreamLabel, Counter>::default();
        registry.register(
            "upstream_hedges",
            "Hedged attempts sent to this upstream because the one before was slow",
            upstream_hedges.clone(),
        );
        let upstream_retries = Counter::default();
        registry.register(
            "upstream_retries",
            "Further passes over the upstreams after a pass that ended in failures",
            upstream_retries.clone(),
        );
        let negative_cache_entries = Gauge::default();
        registry.register(
            "negative_cache_entries",
            "Remembered not-found answers (see --negative-ttl)",
            negative_cache_entries.clone(),
        );
        let connections_open = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "connections_open",
            "Open client connections, by listener (goproxy, admin)",
            connections_open.clone(),
        );
        let connections_limit = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "connections_limit",
            "Most open client connections allowed (--max-connections, after the open-file limit)",
            connections_limit.clone(),
        );
        let connections_accepted = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            connections_accepted.clone(),
        );
        let connections_refused = Family::<ListenerReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Client connections answered 503 and closed at once (reason=limit: the listener is \
             full and no connection is idle; per_ip: the address holds its share and none of its \
             connections is idle)",
            connections_refused.clone(),
        );
        let connections_closed = Family::<ListenerReasonLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Client connections closed by the proxy (reason=header_timeout, idle_timeout, \
             send_timeout, evicted: an idle connection closed to make room for a new one)",
            connections_closed.clone(),
        );
        let accept_errors = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "accept_errors",
            "Failed accept() calls (EMFILE: out of file descriptors)",
            accept_errors.clone(),
        );
        let open_files_limit = Gauge::default();
        registry.register(
            "open_files_limit",
            "The process's open-file limit (soft RLIMIT_NOFILE, raised to the hard limit at start)",
            open_files_limit.clone(),
        );
        let client_requests = Family::<IdentityLabel, Counter>::default();
        registry.register(
            "client_requests",
            "GOPROXY requests let through by access control, by identity (the first 100 \
             identities seen, anonymous, then (other)); only with `access` configured",
            client_requests.clone(),
        );
        let access_refusals = Family::<ListenerReasonLabels, Counter>::default();
        registry.register(
            "access_refusals",
            "Requests refused by access control, by listener and reason: missing_credentials, \
             malformed_credentials, unknown_token, user_mismatch (401); not_allowed, not_admin \
             (403)",
            access_refusals.clone(),
        );
        let access_token_reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "access_token_reloads",
            "Tokens files read again after a change: reloaded, or failed (the last good \
             tokens stay in use)",
            access_token_reloads.clone(),
        );
        Metrics {
            registry,
            client_requests,
            access_refusals,
            access_token_reloads,
            connections_open,
            connections_limit,
            connections_accepted,
            connections_refused,
            connections_closed,
            accept_errors,
            open_files_limit,
            upstream_healthy,
            upstream_breaker_state,
            upstream_demoted,
            upstream_hedges,
            upstream_retries,
            negative_cache_entries,
            requests,
            request_duration,
            upstream_requests,
            upstream_duration,
            cache_bytes,
            cache_objects,
            cache_max_bytes,
            cache_evictions,
            cache_write_errors,
            checksum_checks,
            prefetch,
            prefetch_hits,
            prefetch_unused,
            inflight_fetches,
            coalesced_waiters,
        }
    }

    /// Serves the trace exporter's counters (they stay 0 while export is off).
    pub fn register_trace_export(&mut self, stats: &modfleet_telemetry::ExportStats) {
        stats.register(&mut self.registry);
    }

    /// Registers the client port's TLS metrics; called only when it serves HTTPS, so that no
    /// expiry of 0 exists for an alert to fire on.
    pub fn register_tls(&mut self) -> TlsMetrics {
        let tls = TlsMetrics::default();
        self.registry.register(
            "tls_handshake_failures",
            "TLS handshakes on the GOPROXY port that failed, by reason: plain_http (an http:// \
             request to the HTTPS port, answered 400 and closed), alert (the client gave up, \
             usually because it does not trust the certificate), closed (the client went away), \
             error (not TLS, no common version or cipher, a malformed message). A handshake not \
             done within --header-read-timeout counts in connections_closed{reason=header_timeout}",
            tls.handshake_failures.clone(),
        );
        self.registry.register(
            "tls_certificate_reloads",
            "Certificate and key files read again after they changed, by outcome: loaded (now \
             served), refused (invalid or not a pair: the previous certificate is still served, \
             and the error is logged)",
            tls.certificate_reloads.clone(),
        );
        self.registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the served certificate expires (its notAfter, seconds since the Unix epoch)",
            tls.certificate_expiry.clone(),
        );
        tls
    }

    /// Registers the shared object store's metrics; called only when `objectStore` is set.
    pub fn register_store(&mut self) -> StoreMetrics {
        let store = StoreMetrics::default();
        self.registry.register(
            "store_reads",
            "Reads of the shared object store on a disk miss, by result: hit (found and \
             verified), miss (not there), invalid (found but failed verification: fetched from \
             upstream instead), error (failed or timed out), skipped (not asked: its breaker \
             is open)",
            store.reads.clone(),
        );
        self.registry.register(
            "store_writes",
            "Verified artifacts written to the shared object store, by result: ok, error \
             (failed or timed out), skipped (its breaker is open), dropped (the write queue \
             was full)",
            store.writes.clone(),
        );
        self.registry.register(
            "store_queue_depth",
            "Writes to the shared object store waiting in the queue",
            store.queue_depth.clone(),
        );
        self.registry.register(
            "store_breaker_state",
            "The shared object store's circuit breaker: 0 closed, 1 half-open, 2 open (the \
             store is not asked; the disk cache and upstreams serve)",
            store.breaker_state.clone(),
        );
        store
    }

    /// Registers peer fill's metrics; called only when `peerFill` is set.
    pub fn register_peers(&mut self) -> PeerMetrics {
        let peers = PeerMetrics::default();
        self.registry.register(
            "peer_asks",
            "Misses this member asked the artifact's owner for, by result: hit (the owner's \
             answer passed verification), not_found (the owner's upstreams do not have it: \
             answered 404), fallback (the owner was down, slow, \
             refused or sent what failed verification: fetched directly)",
            peers.asks.clone(),
        );
        self.registry.register(
            "peer_served",
            "Peer requests this member answered with the artifact (200) as its owner",
            peers.served.clone(),
        );
        self.registry.register(
            "peer_members",
            "The fleet's members as this member last read them (itself included)",
            peers.members.clone(),
        );
        peers
    }

    /// The registry in OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
