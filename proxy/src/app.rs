//! Wiring: builds the cache, the upstream pool and the fetcher from a [`Config`], binds both
//! listeners and runs until SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use modfleet_telemetry::shutdown_signal;
use tokio::net::TcpListener;

use crate::cache::Cache;
use crate::config::{Config, ConnectionLimits};
use crate::fetch::{Checksums, Fetcher, FetcherSource, PrefetchPolicy};
use crate::listener::handshake::Handshaker;
use crate::listener::{self, Listener, fd_limit};
use crate::liveness::ServingCheck;
use crate::metrics::Metrics;
use crate::peers::Peers;
use crate::peers::server::PeerState;
use crate::private_modules::PrivateModules;
use crate::protocol::sumdb::Checker;
use crate::server::{AdminState, AppState, admin_router, proxy_router};
use crate::store::Store;
use crate::tls::{ReloadingCert, server_config};
use crate::upstream::UpstreamPool;
use crate::upstream::health::BreakerSettings;

/// The admin port's own cap, apart from the GOPROXY port's: kubelet probes, Prometheus scrapes
/// and the operator's `/status` reads need a handful, and a flood of the GOPROXY port never
/// takes their slots.
const ADMIN_MAX_CONNECTIONS: usize = 64;
const ADMIN_MAX_CONNECTIONS_PER_IP: usize = 16;
/// The peer port's cap: members keep a few pooled connections each to each other.
const PEER_MAX_CONNECTIONS: usize = 256;

/// Runs the proxy until a shutdown signal.
pub async fn serve(
    mut config: Config,
    trace_export: &modfleet_telemetry::ExportStats,
) -> anyhow::Result<()> {
    let fds = fd_limit::raise();
    tracing::info!(
        soft_before = ?fds.before,
        soft = ?fds.soft,
        hard = ?fds.hard,
        "open-file limit (RLIMIT_NOFILE; None: unlimited)"
    );
    let fitted = fd_limit::fit(
        config.connections.max_connections,
        ADMIN_MAX_CONNECTIONS,
        fds.soft,
    );
    if fitted < config.connections.max_connections {
        tracing::warn!(
            wanted = config.connections.max_connections,
            allowed = fitted,
            open_file_limit = ?fds.soft,
            "--max-connections lowered to what the open-file limit allows ({} descriptors per \
             connection, {} kept for the rest): raise the hard limit (ulimit -Hn, the container \
             runtime's nofile) to allow more",
            fd_limit::PER_CONNECTION,
            fd_limit::RESERVED,
        );
        config.connections.max_connections = fitted;
        config.connections.max_connections_per_ip =
            config.connections.max_connections_per_ip.min(fitted);
    }
    let admin_limits = ConnectionLimits {
        max_connections: ADMIN_MAX_CONNECTIONS,
        max_connections_per_ip: ADMIN_MAX_CONNECTIONS_PER_IP,
        ..config.connections
    };
    let mut metrics = Metrics::new();
    metrics
        .open_files_limit
        .set(fds.soft.map_or(-1, |n| n.min(i64::MAX as u64) as i64));
    metrics.register_trace_export(trace_export);
    let tls = match &config.tls {
        Some(files) => {
            let tls_metrics = metrics.register_tls();
            let resolver = Arc::new(
                ReloadingCert::new(files.clone(), tls_metrics.clone())
                    .context("cannot serve HTTPS")?,
            );
            tokio::spawn(look_at_certificates(resolver.clone()));
            Some(Handshaker::new(server_config(resolver), &tls_metrics))
        }
        None => None,
    };
    metrics.cache_max_bytes.set(
        config
            .cache_max_bytes
            .unwrap_or(0)
            .try_into()
            .unwrap_or(i64::MAX),
    );
    let store_metrics = config
        .object_store
        .as_ref()
        .map(|_| metrics.register_store());
    let peer_metrics = config.peer_fill.as_ref().map(|_| metrics.register_peers());
    let metrics = Arc::new(metrics);
    let pool = Arc::new(
        UpstreamPool::new(
            &config.upstreams,
            &config.sumdbs,
            config.resilience.clone(),
            metrics.clone(),
        )
        .context("cannot build the HTTP client for upstreams")?,
    );
    let admin = Arc::new(AdminState::new(
        metrics.clone(),
        pool.clone(),
        ServingCheck::new(config.cache_dir.clone()),
        config.access.clone(),
    ));
    if let Some(access) = &config.access {
        tracing::info!(
            rules = access.rules.len(),
            identities = access.tokens.current().identities(),
            tokens_files = ?access.tokens.files(),
            "access control on: clients need a rule that allows them"
        );
        tokio::spawn(crate::access::tokens::watch(
            Arc::downgrade(&access.tokens),
            metrics.clone(),
        ));
    }
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--admin-listen): is another process using it?",
                config.admin_listen
            )
        })?;
    let goproxy_listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (--listen): is another process using it?",
            config.listen
        )
    })?;
    let admin_addr = admin_listener.local_addr()?;
    let admin_task = tokio::spawn(listener::serve(
        Listener {
            name: "admin",
            socket: admin_listener,
            limits: admin_limits,
            // Plain HTTP for the kubelet's probes and Prometheus, whatever the GOPROXY port does.
            tls: None,
        },
        admin_router(admin.clone()),
        metrics.clone(),
        shutdown_signal(),
    ));

    let cache_dir = config.cache_dir.clone();
    let max = config.cache_max_bytes;
    let cache_metrics = metrics.clone();
    let cache = tokio::task::spawn_blocking(move || Cache::open(&cache_dir, max, cache_metrics))
        .await?
        .with_context(|| format!("cannot open the cache in {}", config.cache_dir.display()))?;
    let probes = tokio::spawn(pool.clone().run_probes());
    let fetcher = Fetcher::new(
        Arc::new(cache),
        pool,
        metrics.clone(),
        config.list_ttl,
        &config.resilience,
    );
    if let (Some(store), Some(store_metrics)) = (&config.object_store, store_metrics) {
        let breaker = &config.resilience.breaker;
        let store = Store::start(
            store,
            BreakerSettings {
                failures: breaker.failures,
                open_for: breaker.open_for.get(),
            },
            config.resilience.request_deadline,
            store_metrics,
        )
        .context("cannot set up the object store")?;
        tracing::info!(url = %config.object_store.as_ref().map_or("", |s| s.url.as_str()), "shared object store under the disk cache");
        fetcher.use_store(store);
    }
    let peer_task = match (&config.peer_fill, peer_metrics) {
        (Some(peer_fill), Some(peer_metrics)) => {
            let peers = Peers::start(peer_fill, peer_metrics).context("cannot set up peer fill")?;
            fetcher.use_peers(peers.clone());
            let socket = TcpListener::bind(peer_fill.listen).await.with_context(|| {
                format!(
                    "cannot listen on {} (peerFill.listen): is another process using it?",
                    peer_fill.listen
                )
            })?;
            tracing::info!(
                listen = %socket.local_addr()?,
                advertise = peer_fill.advertise.as_deref().unwrap_or("(none: owns nothing)"),
                "peer fill: asking each artifact's owner among the fleet's members"
            );
            Some(tokio::spawn(listener::serve(
                Listener {
                    name: "peer",
                    socket,
                    limits: ConnectionLimits {
                        max_connections: PEER_MAX_CONNECTIONS,
                        max_connections_per_ip: PEER_MAX_CONNECTIONS,
                        ..config.connections
                    },
                    // Member to member inside the fleet's network (see the README).
                    tls: None,
                },
                crate::peers::server::router(PeerState::new(
                    peers,
                    fetcher.clone(),
                    config.clone(),
                )),
                metrics.clone(),
                shutdown_signal(),
            )))
        }
        _ => None,
    };
    if let Some(private) = PrivateModules::new(&config) {
        fetcher.serve_private(private);
    }
    admin.fetcher.set(fetcher.clone()).ok();
    if config.verify_sumdb {
        fetcher.verify_checksums(checksums(&config, &fetcher, &metrics)?);
    }
    if config.prefetch {
        fetcher.prefetch(PrefetchPolicy {
            private: config
                .exclude
                .iter()
                .chain(&config.no_sum)
                .cloned()
                .collect(),
            zips: config.prefetch_zips,
        });
    }
    // The bound addresses (not the configured ones) so that port 0 is usable.
    tracing::info!(
        listen = %goproxy_listener.local_addr()?,
        scheme = if tls.is_some() { "https" } else { "http" },
        admin = %admin_addr,
        cache_dir = %config.cache_dir.display(),
        upstreams = ?config.upstreams.iter().map(|u| u.url.as_str()).collect::<Vec<_>>(),
        sumdbs = ?config.sumdbs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "modfleet-proxy serving"
    );
    let limits = config.connections;
    let state = Arc::new(AppState {
        config,
        fetcher,
        metrics: metrics.clone(),
    });
    admin.ready.store(true, Ordering::Release);
    listener::serve(
        Listener {
            name: "goproxy",
            socket: goproxy_listener,
            limits,
            tls,
        },
        proxy_router(state),
        metrics,
        shutdown_signal(),
    )
    .await;
    admin.ready.store(false, Ordering::Release);
    probes.abort();
    admin_task.await?;
    if let Some(peer_task) = peer_task {
        peer_task.await?;
    }
    tracing::info!("shut down");
    Ok(())
}

/// Handshakes look at the certificate files (at most once a second); this looks too when
/// none comes, so that a renewal shows in the expiry gauge of an idle member.
async fn look_at_certificates(resolver: Arc<ReloadingCert>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        every.tick().await;
        resolver.refresh();
    }
}

/// The checksum database check (`--verify-sumdb`) over the first configured database, reading
/// through the fetcher's own `/sumdb/` proxying; its latest verified tree is kept beside the
/// cache (outside `download/`, so it is never served or evicted).
pub fn checksums(
    config: &Config,
    fetcher: &Arc<Fetcher>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Checksums> {
    let db = config
        .sumdbs
        .first()
        .context("--verify-sumdb needs a checksum database (--sumdb)")?;
    let key = db.key.as_deref().with_context(|| {
        format!(
            "--verify-sumdb needs the verifier key of {}: pass --sumdb with its key (the GOSUMDB form)",
            db.name
        )
    })?;
    let source = FetcherSource {
        fetcher: Arc::downgrade(fetcher),
        name: db.name.clone(),
    };
    let state = sumdb_state_file(&config.cache_dir, &db.name);
    let checker = Checker::open(key, Arc::new(source), state)
        .with_context(|| format!("cannot set up checksum verification against {}", db.name))?;
    Ok(Checksums::new(
        checker,
        config.no_sum.clone(),
        metrics.clone(),
    ))
}

/// Where the latest verified tree of checksum database `name` is kept.
pub fn sumdb_state_file(cache_dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    cache_dir.join("sumdb-state").join(name).join("latest")
}
