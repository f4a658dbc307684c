//! The proxy's defaults, each written once. The proxy's flag help and its merge of flags,
//! environment and file use these, the operator renders some of them into fleets' configs,
//! and the README's tables say the same (a proxy test holds them to it). What is not here has
//! no default (an unset `cacheMaxBytes` is no bound).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use modfleet_telemetry::LogFormat;

use crate::values::{HedgeDelay, HumanDuration, OnOff};

/// Address of the GOPROXY endpoint.
pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080));
/// Address of the admin endpoint (`/healthz`, `/readyz`, `/metrics`, `/status`).
pub const ADMIN_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9090));
/// The disk cache, relative to where the proxy runs (a fleet mounts a volume elsewhere).
pub const CACHE_DIR: &str = "./modfleet-cache";
/// The checksum database the `go` command uses when `GOSUMDB` is not set.
pub const SUMDB: &str = "sum.golang.org";
/// The verifier keys the go command knows by name (`knownGOSUMDB` in
/// `cmd/go/internal/modfetch/key.go`): `GOSUMDB=sum.golang.org` means this key. Any other
/// database needs its key in the config (`sumdbs[].key`, a fleet's `spec.sumdb.key`).
pub const KNOWN_SUMDB_KEYS: &[(&str, &str)] = &[(
    "sum.golang.org",
    "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8",
)];

/// The verifier key the go command uses for a database named `name`, if it knows one.
pub fn known_sumdb_key(name: &str) -> Option<&'static str> {
    KNOWN_SUMDB_KEYS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
}
/// Downloads are checked against the checksum database unless turned off.
pub const VERIFY_SUMDB: OnOff = OnOff::On;
/// The `.mod` files a fetched go.mod requires are prefetched unless turned off.
pub const PREFETCH: OnOff = OnOff::On;
/// Zips are not prefetched unless turned on: a go command often needs far fewer zips than
/// `.mod` files (the module graph is larger than the build list's packages).
pub const PREFETCH_ZIPS: OnOff = OnOff::Off;
/// How long lists, `@latest` and checksum-database lookups are served from the cache.
pub const LIST_TTL: HumanDuration = HumanDuration::from_static("60s");
pub const LOG_FORMAT: LogFormat = LogFormat::Text;
pub const HEDGE_DELAY: HedgeDelay = HedgeDelay::Auto;
/// Upstreams whose recent time to headers is far above a healthy alternative's are asked after
/// it (latency-outlier demotion) unless turned off.
pub const OUTLIER_LATENCY: OnOff = OnOff::On;
/// How long "not found" from every upstream is remembered.
pub const NEGATIVE_TTL: HumanDuration = HumanDuration::from_static("30s");
/// How long past the list TTL a stale list is served while it is refreshed.
pub const STALE_WHILE_REVALIDATE: HumanDuration = HumanDuration::from_static("60s");
/// The whole time one request may spend on upstream attempts and retries.
pub const REQUEST_DEADLINE: HumanDuration = HumanDuration::from_static("5m");
/// Client connections: headers must arrive within this.
pub const HEADER_READ_TIMEOUT: HumanDuration = HumanDuration::from_static("10s");
/// Client connections: a kept-alive connection idle this long is closed.
pub const IDLE_TIMEOUT: HumanDuration = HumanDuration::from_static("60s");
/// Client connections: a client that takes no response byte for this long is dropped.
pub const SEND_TIMEOUT: HumanDuration = HumanDuration::from_static("60s");
/// Most open client connections on the GOPROXY port.
pub const MAX_CONNECTIONS: usize = 4096;

/// Most connections of one address when unset: a quarter of the total, so one address (or
/// /64) never holds every slot.
pub const fn max_connections_per_ip(max_connections: usize) -> usize {
    let quarter = max_connections / 4;
    if quarter == 0 { 1 } else { quarter }
}

/// An upstream's share among upstreams of equal priority.
pub const UPSTREAM_WEIGHT: u32 = 1;
/// How long an upstream may take to send headers, and each further part of a body.
pub const UPSTREAM_TIMEOUT: HumanDuration = HumanDuration::from_static("30s");
/// Health probes of upstreams: how often, how long each may take, and what they GET.
pub const HEALTH_CHECK_INTERVAL: HumanDuration = HumanDuration::from_static("10s");
pub const HEALTH_CHECK_TIMEOUT: HumanDuration = HumanDuration::from_static("5s");
pub const HEALTH_CHECK_PATH: &str = "/";
/// Address of the peer port (peer fill: member to member only).
pub const PEER_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 7070));
/// The Service port name of the peer port in a fleet's `NAME-peers` Service.
pub const PEER_PORT_NAME: &str = "peer";
/// Peer fill: longest wait for the owner's headers and between parts of its body.
pub const PEER_TIMEOUT: HumanDuration = HumanDuration::from_static("2s");
/// Peer fill: how often the membership is re-read from EndpointSlices.
pub const PEER_REFRESH: HumanDuration = HumanDuration::from_static("5s");
/// `objectStore.timeout`: to connect, for headers, for each part of a body. Short: a slow
/// store costs an upstream request, never more time than this.
pub const OBJECT_STORE_TIMEOUT: HumanDuration = HumanDuration::from_static("5s");
/// Consecutive failures that open an upstream's circuit breaker, and its first open period.
pub const BREAKER_FAILURES: u32 = 5;
pub const BREAKER_OPEN_FOR: HumanDuration = HumanDuration::from_static("10s");
/// Passes over the upstreams (the first included), and the pause before the second.
pub const RETRY_ATTEMPTS: u32 = 2;
pub const RETRY_BACKOFF: HumanDuration = HumanDuration::from_static("200ms");
