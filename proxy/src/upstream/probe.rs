//! Active health probes: a cheap GET to every upstream at an interval.

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use modfleet_telemetry::error_chain;

use super::UpstreamPool;
use super::plan::Member;
use super::response::unauthorized;

impl UpstreamPool {
    /// Probes every upstream once (a GET of the configured path, with the upstream's
    /// credentials; any answer below 500, but 429 and, with credentials, 401, means alive).
    /// The time to an answer counts as a latency sample.
    pub async fn probe_all(&self) {
        let probes = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| self.probe(i, m));
        futures::future::join_all(probes).await;
    }

    async fn probe(&self, i: usize, m: &Member) {
        let check = &self.settings.health_check;
        let started = Instant::now();
        let url = format!(
            "{}{}",
            m.endpoint.base.as_str().trim_end_matches('/'),
            check.path
        );
        let mut request = self.client.get(&url);
        let error = match m.endpoint.credentials.as_ref().map(|c| c.authorization()) {
            Some(Err(e)) => Some(e.to_string()),
            authorization => {
                if let Some(Ok(value)) = authorization {
                    request = request.header(http::header::AUTHORIZATION, value);
                }
                let result = tokio::time::timeout(check.timeout.get(), request.send()).await;
                // Any answer's time to headers is a latency sample (the first probe, at
                // start, tells how fast each upstream is before any request).
                if matches!(result, Ok(Ok(_))) {
                    self.record_latency(i, started.elapsed(), false);
                }
                match result {
                    Err(_) => Some(format!(
                        "no answer within {}",
                        humantime::format_duration(check.timeout.get())
                    )),
                    Ok(Err(e)) => Some(error_chain(&e)),
                    Ok(Ok(r))
                        if r.status().is_server_error()
                            || r.status() == StatusCode::TOO_MANY_REQUESTS =>
                    {
                        Some(format!("answered {}", r.status()))
                    }
                    // Refused credentials: every request would be refused too.
                    Ok(Ok(r))
                        if r.status() == StatusCode::UNAUTHORIZED
                            && m.endpoint.credentials.is_some() =>
                    {
                        Some(unauthorized(&m.endpoint, r.status()))
                    }
                    Ok(Ok(_)) => None,
                }
            }
        };
        let was = m.health.is_healthy();
        let before = m.health.breaker();
        m.health
            .record_probe(error.is_none(), error.as_deref(), Instant::now());
        if before != m.health.breaker() {
            tracing::info!(upstream = %m.endpoint.name, "circuit breaker closed by a successful probe");
        }
        if was != m.health.is_healthy() {
            tracing::warn!(upstream = %m.endpoint.name, healthy = !was, error = ?error, "upstream health changed");
        }
        self.publish_health(m);
    }

    /// Runs the active health probes forever, at the configured interval.
    pub async fn run_probes(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.settings.health_check.interval.get());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.probe_all().await;
        }
    }
}
