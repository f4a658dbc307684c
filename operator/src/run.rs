//! Process wiring: client, CRD check, admin endpoints, leader election, controllers and
//! graceful shutdown on SIGTERM/SIGINT.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context as _, bail};
use kube::api::ListParams;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin;
use crate::config::Config;
use crate::controller::{self, Ctx};
use crate::crd::GoModuleProxy;
use crate::fleet_health::Poller;
use crate::leader::LeaderElector;
use crate::metrics::Metrics;
use crate::resources;

/// Fails with an actionable message when the CRD is missing or the API server is unreachable.
async fn check_crd(client: &Client, namespaces: &[String]) -> anyhow::Result<()> {
    let probe =
        |api: Api<GoModuleProxy>| async move { api.list(&ListParams::default().limit(1)).await };
    let results = if namespaces.is_empty() {
        vec![probe(Api::all(client.clone())).await]
    } else {
        let mut v = Vec::new();
        for ns in namespaces {
            v.push(probe(Api::namespaced(client.clone(), ns)).await);
        }
        v
    };
    for r in results {
        match r {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => bail!(
                "the GoModuleProxy CRD is not installed: run `kubectl apply --server-side -f crds/gomoduleproxy.yaml`"
            ),
            Err(e) => {
                return Err(e).context("cannot list GoModuleProxies (API server reachable? RBAC?)");
            }
        }
    }
    Ok(())
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("no Kubernetes client configuration (KUBECONFIG or in-cluster service account)")?;
    let namespaces = config.namespaces();
    check_crd(&client, &namespaces).await?;

    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            modfleet_telemetry::shutdown_signal().await;
            info!("shutdown requested");
            shutdown.cancel();
        });
    }
    let admin = {
        let stop = shutdown.clone();
        let m = metrics.clone();
        let addr = config.metrics_listen;
        tokio::spawn(async move {
            admin::serve(addr, m, async move { stop.cancelled_owned().await }).await
        })
    };
    metrics.ready.store(true, Ordering::Relaxed);

    // Every replica serves the webhook, leader or not: the API server calls any of them.
    let injection =
        crate::webhook::start(&client, &config, metrics.clone(), shutdown.clone()).await?;

    let health = (!config.health_poll_interval.is_zero()).then(|| {
        Poller::new(
            config.health_poll_interval,
            config.health_poll_timeout,
            config.health_poll_networks.clone(),
        )
    });
    let ctx = Arc::new(Ctx::new(
        client.clone(),
        resources::Context {
            proxy_image: config.proxy_image.clone(),
            smallest_cache_bytes: None,
            operator_namespace: config.operator_namespace.clone(),
            // Read per fleet at each reconcile.
            credentials: resources::credentials::Credentials::default(),
            access: resources::access::Access::default(),
            tiers: resources::tiers::Tiers::default(),
        },
        metrics.clone(),
        health,
        injection,
    ));

    let mut lost_lease = false;
    if config.leader_election {
        let elector = LeaderElector::new(
            client.clone(),
            &config.leader_election_namespace,
            &config.leader_election_name,
            config.identity(),
            config.lease_duration,
        );
        info!(identity = elector.identity(), lease = %config.leader_election_name, "waiting to become leader");
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election: cannot read or update the Lease"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    info!("shut down before becoming leader");
                    return Ok(());
                }
                _ = tokio::time::sleep(elector.retry_period()) => {}
            }
        }
        info!(identity = elector.identity(), "became leader; reconciling");
        metrics.leader.set(1);
        // Keep renewing; if we cannot for a whole lease duration, another replica may have
        // taken over, so stop reconciling at once.
        let controllers = CancellationToken::new();
        let renewer = {
            let elector = elector.clone();
            let controllers = controllers.clone();
            let shutdown = shutdown.clone();
            let lease_duration = config.lease_duration;
            tokio::spawn(async move {
                let mut last_ok = Instant::now();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(elector.retry_period()) => {}
                    }
                    match elector.try_acquire_or_renew().await {
                        Ok(true) => last_ok = Instant::now(),
                        Ok(false) => {
                            error!("lost the leader Lease to another replica");
                            controllers.cancel();
                            return true;
                        }
                        Err(e) => {
                            warn!(error = %e, "cannot renew the leader Lease");
                            if last_ok.elapsed() >= lease_duration {
                                error!(
                                    "could not renew the leader Lease for a whole lease duration"
                                );
                                controllers.cancel();
                                return true;
                            }
                        }
                    }
                }
            })
        };
        let stop = {
            let controllers = controllers.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                controllers.cancel();
            })
        };
        run_controllers(ctx, &namespaces, controllers).await;
        stop.abort();
        lost_lease = renewer.await.unwrap_or(false);
        metrics.leader.set(0);
        if !lost_lease {
            if let Err(e) = elector.release().await {
                warn!(error = %e, "cannot release the leader Lease; it expires by itself");
            } else {
                info!("released the leader Lease");
            }
        }
    } else {
        metrics.leader.set(1);
        run_controllers(ctx, &namespaces, shutdown.clone()).await;
    }
    shutdown.cancel();
    let _ = admin.await;
    if lost_lease {
        bail!("lost leadership; exiting so that a restart rejoins the election");
    }
    info!("stopped");
    Ok(())
}

async fn run_controllers(ctx: Arc<Ctx>, namespaces: &[String], stop: CancellationToken) {
    if namespaces.is_empty() {
        info!("watching all namespaces");
        controller::run(ctx, None, stop).await;
    } else {
        info!(?namespaces, "watching namespaces");
        let runs = namespaces
            .iter()
            .map(|ns| controller::run(ctx.clone(), Some(ns.clone()), stop.clone()));
        futures::future::join_all(runs).await;
    }
}
