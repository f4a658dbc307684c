//! The injection webhook: the mutating admission webhook the API server calls for each new
//! Pod (`spec.injection`), served by every replica (leader or not) on its own HTTPS port.
//! [`admission`] decides (with the pure [`crate::injection`]) from caches of the fleets and
//! namespaces; [`server`] speaks HTTPS; [`certs`] keeps its serving certificate
//! (operator-made and rotated, or files such as a cert-manager Secret).

pub mod admission;
pub mod certs;
pub mod server;

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::crd::GoModuleProxy;
use crate::injection::Policy;
use crate::metrics::Metrics;
use admission::Injection;

/// The path the API server posts `AdmissionReview`s to (the chart's
/// MutatingWebhookConfiguration names the same).
pub const PATH: &str = "/mutate-pods";

/// The injection policy the flags ask for: fleets in `--injection-fleet-namespaces` (default:
/// the operator's namespace) inject wherever they select.
pub fn policy(config: &Config) -> Policy {
    let mut fleet_namespaces: Vec<String> = config
        .webhook
        .injection_fleet_namespaces
        .iter()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    if fleet_namespaces.is_empty() {
        fleet_namespaces.extend(config.operator_namespace.clone());
    }
    Policy {
        operator_namespace: config.operator_namespace.clone(),
        fleet_namespaces,
    }
}

/// Starts the webhook when `--webhook-listen` is set: the caches, the certificate's upkeep
/// and the server, all stopped by `stop`. `None`: no webhook.
pub async fn start(
    client: &Client,
    config: &Config,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<Option<Arc<Injection>>> {
    let Some(addr) = config.webhook.webhook_listen else {
        return Ok(None);
    };
    certs::validate(&config.webhook, config.operator_namespace.as_deref())?;
    let listener = server::bind(addr).await?;
    let namespaces = config.namespaces();
    let fleets = if namespaces.is_empty() {
        vec![cache(Api::<GoModuleProxy>::all(client.clone()), &stop)]
    } else {
        namespaces
            .iter()
            .map(|ns| cache(Api::<GoModuleProxy>::namespaced(client.clone(), ns), &stop))
            .collect()
    };
    // Metadata only: a Pod's namespace matters by its labels.
    let namespace_labels = cache(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        &stop,
    );
    let injection = Arc::new(Injection::new(
        client.clone(),
        fleets,
        namespace_labels,
        policy(config),
    ));
    {
        let injection = injection.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = injection.wait_until_ready() => tracing::info!("injection webhook: caches filled"),
                () = stop.cancelled() => {}
            }
        });
    }
    let cert = certs::ServingCert::default();
    {
        let (client, webhook, namespace) = (
            client.clone(),
            config.webhook.clone(),
            config.operator_namespace.clone(),
        );
        let (cert, stop) = (cert.clone(), stop.clone());
        tokio::spawn(async move {
            // Validated above; an error here would be a bug, and the webhook then serves no
            // certificate (the API server ignores it: failurePolicy Ignore).
            if let Err(e) = certs::maintain(client, webhook, namespace, cert, stop).await {
                tracing::error!(error = %e, "injection webhook: no serving certificate");
            }
        });
    }
    {
        // The presented certificate's expiry, for alerts on a renewal that stopped.
        let (cert, metrics, stop) = (cert.clone(), metrics.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                metrics
                    .webhook_certificate_expiry
                    .set(cert.not_after().unwrap_or(0));
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
                }
            }
        });
    }
    let router = server::router(injection.clone(), metrics);
    tracing::info!(%addr, path = PATH, "serving the injection webhook (HTTPS)");
    tokio::spawn(server::serve(
        listener,
        cert,
        router,
        stop.cancelled_owned(),
    ));
    Ok(Some(injection))
}

/// A cache of `api`'s objects, kept by a watch until `stop`.
fn cache<K>(api: Api<K>, stop: &CancellationToken) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer);
    run_until(stream, stop);
    reader
}

/// Drives a watch stream (its errors are retried by its backoff) until `stop`.
fn run_until<S>(stream: S, stop: &CancellationToken)
where
    S: futures::Stream + Send + 'static,
{
    let stop = stop.clone();
    tokio::spawn(async move {
        let drain = stream.for_each(|_| async {});
        tokio::select! {
            () = drain => {}
            () = stop.cancelled() => {}
        }
    });
}
