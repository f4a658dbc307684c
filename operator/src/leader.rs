//! Leader election on a `coordination.k8s.io/v1` Lease, so several operator replicas can run
//! and exactly one reconciles. Updates use the Lease's resourceVersion (optimistic
//! concurrency): two replicas racing for an expired Lease cannot both win. Expiry is judged
//! on this replica's own clock (how long the holder's record has not changed), as client-go
//! does, so clock skew between machines cannot make a live leader look expired.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// A candidate for the Lease `namespace/name`.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    observer: Arc<Mutex<Observer>>,
}

/// When this replica last saw the holder's record (holder, renew time) change.
#[derive(Debug, Default)]
pub struct Observer {
    record: Option<(String, Option<Timestamp>)>,
    since: Option<Instant>,
}

impl Observer {
    /// Whether a Lease held by someone else may be taken over at local time `now`: nobody
    /// holds it, or its record has not changed for the Lease's duration as seen from here.
    pub fn expired(&mut self, spec: &LeaseSpec, now: Instant) -> bool {
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if holder.is_empty() {
            return true;
        }
        let record = (
            holder,
            spec.renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0),
        );
        if self.record.as_ref() != Some(&record) {
            self.record = Some(record);
            self.since = Some(now);
            return false;
        }
        let secs = u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15);
        self.since
            .is_some_and(|t| now.duration_since(t) > Duration::from_secs(secs))
    }
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: String,
        lease_duration: Duration,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity,
            lease_duration,
            observer: Arc::default(),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How often to try to acquire or renew: a third of the lease duration.
    pub fn retry_period(&self) -> Duration {
        (self.lease_duration / 3).max(Duration::from_millis(500))
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// Acquires or renews the Lease; `Ok(true)` when this replica holds it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let existing = self.api.get_opt(&self.name).await?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_secs()),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !mine && !self.observer.lock().unwrap().expired(spec, Instant::now()) {
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(self.duration_secs());
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else updated it first: they won this round.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on graceful shutdown) so another replica takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn expiry_is_judged_on_the_local_clock() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut o = Observer::default();
        // First sight: never expired, whatever the (possibly skewed) renew time says.
        assert!(!o.expired(&spec(Some("a"), 0), at(0)));
        assert!(!o.expired(&spec(Some("a"), 0), at(15)));
        assert!(o.expired(&spec(Some("a"), 0), at(16)));
        // A renewal resets the clock.
        assert!(!o.expired(&spec(Some("a"), 20), at(17)));
        assert!(!o.expired(&spec(Some("a"), 20), at(30)));
        assert!(o.expired(&spec(Some("a"), 20), at(33)));
        // Released or never held: free at once.
        assert!(o.expired(&spec(None, 20), at(33)));
        assert!(o.expired(&spec(Some(""), 20), at(33)));
    }
}
