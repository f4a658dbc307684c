//! Configuration: command-line flags, `MODFLEET_*` environment variables and an optional YAML
//! file, merged into one typed [`Config`].
//!
//! Precedence is flag > environment variable > `--config` file > default. The YAML schema is the
//! one the operator renders into each fleet's ConfigMap; it is documented in the README
//! ("Configuration file").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
pub use modfleet_telemetry::LogFormat;
use reqwest::Url;
use serde::Deserialize;

use crate::protocol::sumdb::{self, note::Verifier};

/// The checksum database the `go` command uses when `GOSUMDB` is not set.
pub const DEFAULT_SUMDB: &str = "sum.golang.org";
const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9090";
const DEFAULT_CACHE_DIR: &str = "./modfleet-cache";
const DEFAULT_LIST_TTL: Duration = Duration::from_secs(60);
const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Most connections `--max-connections` may name (far above any fd limit in practice).
const MAX_MAX_CONNECTIONS: usize = 1 << 20;

#[derive(Debug, Parser)]
#[command(
    name = "modfleet-proxy",
    version,
    about = "A Go module proxy (GOPROXY protocol) with a verified, crash-safe disk cache.",
    long_about = "A Go module proxy (GOPROXY protocol) with a verified, crash-safe disk cache.\n\n\
        Serves list, .info, .mod, .zip and @latest for `go` commands pointed at it with \
        GOPROXY=http://HOST:PORT, and proxies the checksum database so GOSUMDB verification \
        works through it. Artifacts of canonical versions are fetched once, verified and kept; \
        lists and @latest are kept for --list-ttl.\n\n\
        Every flag can also be set with an environment variable MODFLEET_<FLAG> (for example \
        MODFLEET_CACHE_DIR) or in the --config YAML file. Flags win over environment variables, \
        which win over the file.",
    after_long_help = "Tracing: set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://otel-collector:4317 \
        with OTEL_EXPORTER_OTLP_PROTOCOL=grpc, or http://otel-collector:4318 for the default \
        http/protobuf) to export a span per request, per upstream attempt and per cache write. \
        The other standard variables apply: OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME \
        (default modfleet-proxy), OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, \
        OTEL_BSP_MAX_QUEUE_SIZE (spans beyond it are dropped and counted in \
        modfleet_proxy_trace_spans_dropped_total, never waited for). With --log-format json \
        every log line inside a traced request carries trace_id and span_id.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Subcommands>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Subcommands {
    /// Check every cached artifact and report (or, with --purge, remove) the bad ones.
    Verify(VerifyArgs),
}

/// `verify` takes the server's own settings (the same flags, variables and --config file), so
/// it checks a cache with the rules and the checksum database the server uses.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Remove every artifact that fails verification, so the proxy fetches it again.
    #[arg(long)]
    pub purge: bool,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Flags of the server. All optional here so that the config file can fill what they leave.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// YAML file with the same settings as the flags (camelCase keys; see the README).
    #[arg(long, env = "MODFLEET_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address of the GOPROXY endpoint [default: 0.0.0.0:8080].
    #[arg(long, env = "MODFLEET_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Address of the admin endpoint: /healthz, /readyz, /metrics [default: 0.0.0.0:9090].
    #[arg(long, env = "MODFLEET_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,

    /// Directory of the disk cache; laid out like GOMODCACHE's cache/download [default: ./modfleet-cache].
    #[arg(long, env = "MODFLEET_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Upper bound of the cache size (bytes, or with a suffix: 500Mi, 20Gi, 10G). Past it the
    /// least recently used artifacts are evicted [default: no bound].
    #[arg(long, env = "MODFLEET_CACHE_MAX_BYTES", value_name = "SIZE")]
    pub cache_max_bytes: Option<ByteSize>,

    /// Upstream proxy URL, repeatable, in priority order (the go command's comma semantics:
    /// 404/410 moves on to the next). Default: the http(s) entries of $GOPROXY, then of
    /// `go env GOPROXY`. The environment variable takes a comma-separated list.
    #[arg(
        long = "upstream",
        env = "MODFLEET_UPSTREAM",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub upstreams: Vec<String>,

    /// Checksum database to proxy, as NAME or NAME=URL, or in GOSUMDB form: `KEY [URL]` or
    /// `NAME URL`, where KEY is its verifier key NAME+HASH+BASE64KEY. Repeatable. The URL is
    /// used after the upstreams' own /sumdb/NAME/ endpoints; it defaults to https://NAME. The
    /// key of sum.golang.org is known (the go command's) [default: sum.golang.org].
    #[arg(
        long = "sumdb",
        env = "MODFLEET_SUMDB",
        value_name = "NAME[=URL]|KEY [URL]",
        value_delimiter = ','
    )]
    pub sumdbs: Vec<SumdbConfig>,

    /// Check the h1: hashes of every .mod and .zip fetched from upstream against the first
    /// --sumdb (verifying its signed tree and proofs as the go command does) before it is cached
    /// or served, except for modules matching --no-sum. Needs that database's verifier key
    /// [default: on].
    #[arg(long, env = "MODFLEET_VERIFY_SUMDB", value_name = "on|off")]
    pub verify_sumdb: Option<OnOff>,

    /// How long list and @latest answers (and sumdb latest/lookups) are served from the cache
    /// before they are asked upstream again [default: 60s].
    #[arg(long, env = "MODFLEET_LIST_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub list_ttl: Option<Duration>,

    /// Log format [default: text].
    #[arg(long, env = "MODFLEET_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Module path pattern the proxy refuses with 403, repeatable (GOPRIVATE glob syntax:
    /// `corp.example.com/*` matches every module under that prefix).
    #[arg(
        long = "exclude",
        env = "MODFLEET_EXCLUDE",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    pub exclude: Vec<String>,

    /// Module path pattern whose checksum-database lookups the proxy refuses (404) instead of
    /// forwarding, like GONOSUMDB: private module paths never reach a public checksum
    /// database through the proxy. Repeatable; GOPRIVATE glob syntax.
    #[arg(
        long = "no-sum",
        env = "MODFLEET_NO_SUM",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    pub no_sum: Vec<String>,

    /// When an upstream has not answered within this delay, the same request also goes to the
    /// next healthy upstream and the first verified answer wins: `auto` (that upstream's
    /// observed p95, at most 1s), `off`, or a duration [default: auto].
    #[arg(long, env = "MODFLEET_HEDGE_DELAY", value_name = "auto|off|DURATION")]
    pub hedge_delay: Option<HedgeDelay>,

    /// How long a "not found" from every upstream is remembered, so a storm of lookups for a
    /// missing module does not reach the upstreams; 0s turns it off [default: 30s].
    #[arg(long, env = "MODFLEET_NEGATIVE_TTL", value_name = "DURATION", value_parser = parse_duration)]
    pub negative_ttl: Option<Duration>,

    /// For this long past --list-ttl, a cached list or @latest is served at once while it is
    /// refreshed in the background [default: 60s].
    #[arg(long, env = "MODFLEET_STALE_WHILE_REVALIDATE", value_name = "DURATION", value_parser = parse_duration)]
    pub stale_while_revalidate: Option<Duration>,

    /// Total time one client request may spend on upstream attempts and retries [default: 5m].
    #[arg(long, env = "MODFLEET_REQUEST_DEADLINE", value_name = "DURATION", value_parser = parse_duration)]
    pub request_deadline: Option<Duration>,

    /// Longest time a client may take to send a request's headers, counted from the accept
    /// for a connection's first request and from the first byte for later ones (like Go's
    /// ReadHeaderTimeout). Slower connections (slowloris) are closed [default: 10s].
    #[arg(long, env = "MODFLEET_HEADER_READ_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub header_read_timeout: Option<Duration>,

    /// A kept-alive connection with no request in progress for this long is closed
    /// [default: 60s].
    #[arg(long, env = "MODFLEET_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// A connection whose client takes no response bytes for this long (it stopped reading) is
    /// closed [default: 60s].
    #[arg(long, env = "MODFLEET_SEND_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub send_timeout: Option<Duration>,

    /// Most open client connections on the GOPROXY port. At the limit a new connection closes
    /// the connection idle the longest (of the address holding the most); when none is idle
    /// it is answered 503. Lowered, with a warning, to what the open-file limit allows (two
    /// descriptors per connection) [default: 4096].
    #[arg(long, env = "MODFLEET_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Most open connections from one client address (IPv6: one /64) on the GOPROXY port. Past
    /// it, that address's own idle connections make room, else its new connections get 503.
    /// Set it above the client count when many clients share one address (a NAT, a node's
    /// SNAT) [default: a quarter of --max-connections].
    #[arg(long, env = "MODFLEET_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
}

/// A switch written `on` or `off` (YAML also takes `true` and `false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

impl FromStr for OnOff {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "on" | "true" => Ok(OnOff::On),
            "off" | "false" => Ok(OnOff::Off),
            _ => Err(format!("invalid value {s:?}: use on or off")),
        }
    }
}

impl<'de> Deserialize<'de> for OnOff {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(OnOff::On),
            Raw::Bool(false) => Ok(OnOff::Off),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// When to hedge a request to the next upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeDelay {
    /// The upstream's observed p95 time to answer, clamped to [20ms, 1s]; 1s until known.
    Auto,
    Off,
    Fixed(Duration),
}

impl FromStr for HedgeDelay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(HedgeDelay::Auto),
            "off" | "0" | "0s" => Ok(HedgeDelay::Off),
            other => parse_duration(other).map(HedgeDelay::Fixed).map_err(|_| {
                format!("invalid hedge delay {s:?}: use auto, off or a duration such as 300ms")
            }),
        }
    }
}

impl<'de> Deserialize<'de> for HedgeDelay {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Active health checks of upstreams (YAML `healthCheck`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Path probed on each upstream; any answer below 500 (but 429) counts as alive.
    pub path: String,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            path: "/".to_string(),
        }
    }
}

/// Circuit breaker of each upstream (YAML `breaker`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// First open period, doubled on each further trip (at most 5m).
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

/// Retries of a whole pass over the upstreams (YAML `retry`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Passes over the upstreams, the first included.
    pub attempts: u32,
    /// Pause before the second pass; doubled for each further one, with jitter.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 2,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Timeouts and caps of client connections (see `listener`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: per_ip_default(DEFAULT_MAX_CONNECTIONS),
        }
    }
}

/// A quarter of the total, so one address (or /64) never holds every slot.
fn per_ip_default(max_connections: usize) -> usize {
    (max_connections / 4).max(1)
}

/// How the upstream layer rides out slow, flapping and dead upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resilience {
    pub hedge_delay: HedgeDelay,
    pub negative_ttl: Duration,
    pub stale_while_revalidate: Duration,
    pub request_deadline: Duration,
    pub health_check: HealthCheckConfig,
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
}

/// One upstream GOPROXY.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamConfig {
    pub url: String,
    /// Share of traffic among upstreams of equal priority (used from Step 5 on).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Longest wait for response headers, and for each further piece of the body.
    #[serde(default = "default_upstream_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Lower is preferred; upstreams of equal priority share traffic by weight. Default: the
    /// position in the list, i.e. plain priority order.
    #[serde(default)]
    pub priority: Option<u32>,
}

fn default_weight() -> u32 {
    1
}

fn default_upstream_timeout() -> Duration {
    DEFAULT_UPSTREAM_TIMEOUT
}

/// A checksum database this proxy serves under /sumdb/NAME/.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SumdbConfig {
    pub name: String,
    /// Direct URL, tried after the upstreams; default https://NAME.
    #[serde(default)]
    pub url: Option<String>,
    /// Verifier key NAME+HASH+BASE64KEY (as in GOSUMDB); known for sum.golang.org.
    #[serde(default)]
    pub key: Option<String>,
}

impl FromStr for SumdbConfig {
    type Err = String;
    /// `NAME`, `NAME=URL`, or the GOSUMDB forms `KEY`, `KEY URL`, `NAME URL`.
    fn from_str(s: &str) -> Result<Self, String> {
        let fields: Vec<&str> = s.split_whitespace().collect();
        let (first, url) = match fields[..] {
            [first] => (first, None),
            [first, url] => (first, Some(url.to_string())),
            _ => {
                return Err(format!(
                    "invalid checksum database {s:?}: use NAME, NAME=URL, or as in GOSUMDB \
                     KEY [URL] or NAME URL"
                ));
            }
        };
        if url.is_none()
            && let Some((name, url)) = first.split_once('=')
            && !name.contains('+')
        {
            return Ok(SumdbConfig {
                name: name.to_string(),
                url: Some(url.to_string()),
                key: None,
            });
        }
        let (name, key) = match first.split_once('+') {
            Some((name, _)) => (name, Some(first.to_string())),
            None => (first, None),
        };
        Ok(SumdbConfig {
            name: name.to_string(),
            url,
            key,
        })
    }
}

/// A size in bytes, written as a plain number or with a decimal (k, M, G, T) or binary
/// (Ki, Mi, Gi, Ti) suffix, as in Kubernetes quantities. A trailing `B` is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let t = t.strip_suffix('B').unwrap_or(t);
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, suffix) = t.split_at(split);
        let multiplier: u64 = match suffix {
            "" => 1,
            "k" | "K" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => {
                return Err(format!(
                    "invalid size {s:?}: use bytes or a suffix k, M, G, T, Ki, Mi, Gi, Ti (for example 20Gi)"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected a whole number such as 20Gi"))?;
        n.checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}): use for example 60s, 5m or 1h"))
}

/// The YAML file. Every key is optional; unknown keys are an error so typos do not go unnoticed.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub cache_dir: Option<PathBuf>,
    pub cache_max_bytes: Option<ByteSize>,
    pub upstreams: Option<Vec<UpstreamConfig>>,
    pub sumdbs: Option<Vec<SumdbConfig>>,
    pub verify_sumdb: Option<OnOff>,
    #[serde(default, with = "humantime_serde")]
    pub list_ttl: Option<Duration>,
    pub log_format: Option<LogFormat>,
    pub exclude: Option<Vec<String>>,
    pub no_sum: Option<Vec<String>>,
    pub hedge_delay: Option<HedgeDelay>,
    #[serde(default, with = "humantime_serde")]
    pub negative_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub stale_while_revalidate: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub request_deadline: Option<Duration>,
    pub health_check: Option<HealthCheckConfig>,
    pub breaker: Option<BreakerConfig>,
    pub retry: Option<RetryConfig>,
    #[serde(default, with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub send_timeout: Option<Duration>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
}

/// The settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub cache_dir: PathBuf,
    pub cache_max_bytes: Option<u64>,
    pub upstreams: Vec<Upstream>,
    pub sumdbs: Vec<Sumdb>,
    /// Check fetched .mod and .zip against the first of `sumdbs` (which then has a key).
    pub verify_sumdb: bool,
    pub list_ttl: Duration,
    pub log_format: LogFormat,
    pub exclude: Vec<ModulePattern>,
    pub no_sum: Vec<ModulePattern>,
    pub resilience: Resilience,
    pub connections: ConnectionLimits,
}

/// A validated upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Base URL without a trailing slash.
    pub url: Url,
    pub weight: u32,
    pub timeout: Duration,
    pub priority: u32,
}

/// A validated checksum database.
#[derive(Debug, Clone)]
pub struct Sumdb {
    pub name: String,
    pub url: Url,
    /// Its verifier key (checked: well-formed, Ed25519, hash matching, named `name`), if known.
    pub key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    ParseFile {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error(
        "no upstream proxy configured: pass --upstream URL (repeatable), set MODFLEET_UPSTREAM, \
         add `upstreams:` to the --config file, or set GOPROXY to a list with an http(s) entry"
    )]
    NoUpstream,
    #[error("invalid upstream URL {url:?}: {reason}")]
    Upstream { url: String, reason: String },
    #[error("invalid upstream {url}: {reason}")]
    UpstreamSetting { url: String, reason: String },
    #[error("invalid checksum database {name:?}: {reason}")]
    Sumdb { name: String, reason: String },
    #[error("invalid resilience setting: {0}")]
    Resilience(String),
    #[error("invalid module pattern {pattern:?}: {reason}")]
    Exclude { pattern: String, reason: String },
    #[error("invalid connection limit: {0}")]
    Connections(String),
}

/// Where upstreams come from when none is configured: `$GOPROXY`, then `go env GOPROXY`.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub goproxy_env: Option<String>,
    pub goproxy_from_go: Option<String>,
}

impl Environment {
    /// Reads `$GOPROXY`; asks the go command only when that has no http(s) entry.
    pub fn detect() -> Self {
        let goproxy_env = std::env::var("GOPROXY").ok();
        let goproxy_from_go = if goproxy_env
            .as_deref()
            .is_some_and(|v| !http_entries(v).is_empty())
        {
            None
        } else {
            Command::new("go")
                .args(["env", "GOPROXY"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        Environment {
            goproxy_env,
            goproxy_from_go,
        }
    }
}

/// The http(s) entries of a GOPROXY list (`,` and `|` separated; `direct` and `off` dropped).
pub fn http_entries(goproxy: &str) -> Vec<String> {
    goproxy
        .split([',', '|'])
        .map(str::trim)
        .filter(|e| e.starts_with("http://") || e.starts_with("https://"))
        .map(str::to_string)
        .collect()
}

impl Config {
    /// Merges flags (already merged with environment variables by clap), the file they name, and
    /// defaults; validates the result.
    pub fn load(
        args: &ServeArgs,
        env: impl FnOnce() -> Environment,
    ) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::merge(args, file, env)
    }

    /// Only the cache directory (flag, variable, file, default), for `verify` when the rest
    /// of the configuration is not needed.
    pub fn cache_dir(args: &ServeArgs) -> Result<PathBuf, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Ok(args
            .cache_dir
            .clone()
            .or(file.cache_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR)))
    }

    pub fn merge(
        args: &ServeArgs,
        file: FileConfig,
        env: impl FnOnce() -> Environment,
    ) -> Result<Config, ConfigError> {
        let connections = connection_limits(args, &file)?;
        let upstreams = if !args.upstreams.is_empty() {
            args.upstreams
                .iter()
                .map(|url| UpstreamConfig {
                    url: url.clone(),
                    weight: default_weight(),
                    timeout: DEFAULT_UPSTREAM_TIMEOUT,
                    priority: None,
                })
                .collect()
        } else if let Some(list) = file.upstreams.filter(|l| !l.is_empty()) {
            list
        } else {
            let env = env();
            let from_env = env.goproxy_env.as_deref().map(http_entries);
            let entries = match from_env.filter(|e| !e.is_empty()) {
                Some(entries) => entries,
                None => env
                    .goproxy_from_go
                    .as_deref()
                    .map(http_entries)
                    .unwrap_or_default(),
            };
            entries
                .into_iter()
                .map(|url| UpstreamConfig {
                    url,
                    weight: default_weight(),
                    timeout: DEFAULT_UPSTREAM_TIMEOUT,
                    priority: None,
                })
                .collect()
        };
        if upstreams.is_empty() {
            return Err(ConfigError::NoUpstream);
        }
        let upstreams = upstreams
            .into_iter()
            .enumerate()
            .map(|(i, u)| validate_upstream(i, u))
            .collect::<Result<Vec<_>, _>>()?;

        let sumdbs = if !args.sumdbs.is_empty() {
            args.sumdbs.clone()
        } else {
            file.sumdbs.unwrap_or_else(|| {
                vec![SumdbConfig {
                    name: DEFAULT_SUMDB.to_string(),
                    url: None,
                    key: None,
                }]
            })
        };
        let sumdbs = sumdbs
            .into_iter()
            .map(validate_sumdb)
            .collect::<Result<Vec<_>, _>>()?;
        let verify_sumdb = args
            .verify_sumdb
            .or(file.verify_sumdb)
            .unwrap_or(OnOff::On)
            .is_on();
        if verify_sumdb && let Some(first) = sumdbs.first().filter(|s| s.key.is_none()) {
            return Err(ConfigError::Sumdb {
                name: first.name.clone(),
                reason: "its verifier key is not known, and --verify-sumdb is on: pass it as \
                         --sumdb 'NAME+HASH+KEY [URL]' (the GOSUMDB form) or as `key:` of the \
                         sumdbs entry, or set --verify-sumdb off"
                    .into(),
            });
        }

        let resilience = Resilience {
            hedge_delay: args
                .hedge_delay
                .or(file.hedge_delay)
                .unwrap_or(HedgeDelay::Auto),
            negative_ttl: args
                .negative_ttl
                .or(file.negative_ttl)
                .unwrap_or(Duration::from_secs(30)),
            stale_while_revalidate: args
                .stale_while_revalidate
                .or(file.stale_while_revalidate)
                .unwrap_or(Duration::from_secs(60)),
            request_deadline: args
                .request_deadline
                .or(file.request_deadline)
                .unwrap_or(Duration::from_secs(300)),
            health_check: file.health_check.unwrap_or_default(),
            breaker: file.breaker.unwrap_or_default(),
            retry: file.retry.unwrap_or_default(),
        };
        validate_resilience(&resilience)?;
        let exclude = patterns(&args.exclude, file.exclude)?;
        let no_sum = patterns(&args.no_sum, file.no_sum)?;

        Ok(Config {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            admin_listen: args
                .admin_listen
                .or(file.admin_listen)
                .unwrap_or_else(|| DEFAULT_ADMIN_LISTEN.parse().expect("valid default")),
            cache_dir: args
                .cache_dir
                .clone()
                .or(file.cache_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR)),
            cache_max_bytes: args
                .cache_max_bytes
                .or(file.cache_max_bytes)
                .map(|b| b.0)
                .filter(|&b| b > 0),
            upstreams,
            sumdbs,
            verify_sumdb,
            list_ttl: args.list_ttl.or(file.list_ttl).unwrap_or(DEFAULT_LIST_TTL),
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            exclude,
            no_sum,
            resilience,
            connections,
        })
    }

    /// True when the module path matches an `exclude` pattern.
    pub fn is_excluded(&self, module: &str) -> bool {
        self.exclude.iter().any(|p| p.matches(module))
    }

    /// True when checksum-database lookups for the module must not leave the proxy.
    pub fn is_no_sum(&self, module: &str) -> bool {
        self.no_sum.iter().any(|p| p.matches(module))
    }
}

/// Flag values win over the file's; each value may itself be a comma-separated list.
fn patterns(
    flags: &[String],
    file: Option<Vec<String>>,
) -> Result<Vec<ModulePattern>, ConfigError> {
    let raw = if flags.is_empty() {
        file.unwrap_or_default()
    } else {
        flags.to_vec()
    };
    raw.iter()
        .flat_map(|p| p.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(ModulePattern::parse)
        .collect()
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::ParseFile {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_http_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("{e}; expected http(s)://HOST[/PATH]"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme {:?} is not supported; use http:// or https://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("it has no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("it must not have a query or fragment".into());
    }
    // Normalise to "no trailing slash" so joining paths is plain concatenation.
    let mut url = url;
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

fn validate_upstream(index: usize, u: UpstreamConfig) -> Result<Upstream, ConfigError> {
    let url = parse_http_url(&u.url).map_err(|reason| ConfigError::Upstream {
        url: u.url.clone(),
        reason,
    })?;
    if u.weight == 0 {
        return Err(ConfigError::UpstreamSetting {
            url: u.url,
            reason: "weight must be at least 1".into(),
        });
    }
    if u.timeout.is_zero() {
        return Err(ConfigError::UpstreamSetting {
            url: u.url,
            reason: "timeout must be longer than 0s".into(),
        });
    }
    Ok(Upstream {
        url,
        weight: u.weight,
        timeout: u.timeout,
        priority: u.priority.unwrap_or(index as u32),
    })
}

fn validate_resilience(r: &Resilience) -> Result<(), ConfigError> {
    let bad = |reason: &str| Err(ConfigError::Resilience(reason.to_string()));
    if r.request_deadline.is_zero() {
        return bad("requestDeadline must be longer than 0s");
    }
    if r.health_check.interval.is_zero() || r.health_check.timeout.is_zero() {
        return bad("healthCheck interval and timeout must be longer than 0s");
    }
    if !r.health_check.path.starts_with('/') {
        return bad("healthCheck path must start with '/'");
    }
    if r.breaker.failures == 0 {
        return bad("breaker failures must be at least 1");
    }
    if r.retry.attempts == 0 {
        return bad("retry attempts must be at least 1 (the first pass)");
    }
    Ok(())
}

fn connection_limits(args: &ServeArgs, file: &FileConfig) -> Result<ConnectionLimits, ConfigError> {
    let d = ConnectionLimits::default();
    let max_connections = args
        .max_connections
        .or(file.max_connections)
        .unwrap_or(d.max_connections);
    let limits = ConnectionLimits {
        header_read_timeout: args
            .header_read_timeout
            .or(file.header_read_timeout)
            .unwrap_or(d.header_read_timeout),
        idle_timeout: args
            .idle_timeout
            .or(file.idle_timeout)
            .unwrap_or(d.idle_timeout),
        send_timeout: args
            .send_timeout
            .or(file.send_timeout)
            .unwrap_or(d.send_timeout),
        max_connections,
        max_connections_per_ip: args
            .max_connections_per_ip
            .or(file.max_connections_per_ip)
            .unwrap_or_else(|| per_ip_default(max_connections)),
    };
    let bad = |reason: String| Err(ConfigError::Connections(reason));
    for (name, value) in [
        (
            "headerReadTimeout (--header-read-timeout)",
            limits.header_read_timeout,
        ),
        ("idleTimeout (--idle-timeout)", limits.idle_timeout),
        ("sendTimeout (--send-timeout)", limits.send_timeout),
    ] {
        if value.is_zero() {
            return bad(format!("{name} must be longer than 0s"));
        }
    }
    if !(1..=MAX_MAX_CONNECTIONS).contains(&limits.max_connections) {
        return bad(format!(
            "maxConnections (--max-connections) must be between 1 and {MAX_MAX_CONNECTIONS}, not {}",
            limits.max_connections
        ));
    }
    if !(1..=limits.max_connections).contains(&limits.max_connections_per_ip) {
        return bad(format!(
            "maxConnectionsPerIp (--max-connections-per-ip) must be between 1 and maxConnections ({}), not {}",
            limits.max_connections, limits.max_connections_per_ip
        ));
    }
    Ok(limits)
}

fn validate_sumdb(s: SumdbConfig) -> Result<Sumdb, ConfigError> {
    let name = s.name.trim().to_string();
    let valid_name = !name.is_empty()
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !valid_name {
        return Err(ConfigError::Sumdb {
            name,
            reason: "the name must be a lower-case host name such as sum.golang.org".into(),
        });
    }
    let raw = s
        .url
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| format!("https://{name}"));
    let url = parse_http_url(&raw).map_err(|reason| ConfigError::Sumdb {
        name: name.clone(),
        reason: format!("URL {raw:?}: {reason}"),
    })?;
    let key = match s.key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
        Some(key) => {
            let verifier = Verifier::parse(key).map_err(|e| ConfigError::Sumdb {
                name: name.clone(),
                reason: e.to_string(),
            })?;
            if verifier.name() != name {
                return Err(ConfigError::Sumdb {
                    name: name.clone(),
                    reason: format!("the key is for {:?}, not for {name:?}", verifier.name()),
                });
            }
            Some(key.to_string())
        }
        None => sumdb::known_key(&name).map(str::to_string),
    };
    Ok(Sumdb { name, url, key })
}

/// A GOPRIVATE-style glob: it matches a module path when it matches the path's leading
/// elements (as many as the pattern has). `*` and `?` never match `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModulePattern(String);

impl ModulePattern {
    pub fn parse(pattern: &str) -> Result<Self, ConfigError> {
        let p = pattern.trim().trim_end_matches('/');
        let bad = |reason: &str| ConfigError::Exclude {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        if p.is_empty() {
            return Err(bad("it is empty"));
        }
        if p.starts_with('/') || p.contains("//") {
            return Err(bad("use a module path prefix such as corp.example.com/*"));
        }
        if p.contains(['[', ']', '\\']) {
            return Err(bad("only `*` and `?` wildcards are supported"));
        }
        Ok(ModulePattern(p.to_string()))
    }

    pub fn matches(&self, module: &str) -> bool {
        let n = self.0.split('/').count();
        let elems: Vec<&str> = module.split('/').collect();
        if elems.len() < n {
            return false;
        }
        self.0
            .split('/')
            .zip(elems)
            .all(|(p, e)| glob_match(p.as_bytes(), e.as_bytes()))
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob_match(&p[1..], s) || (!s.is_empty() && glob_match(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob_match(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob_match(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Environment {
        Environment::default()
    }

    fn args(upstreams: &[&str]) -> ServeArgs {
        ServeArgs {
            upstreams: upstreams.iter().map(|s| s.to_string()).collect(),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = Config::merge(
            &args(&["https://up.example"]),
            FileConfig::default(),
            no_env,
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.admin_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(c.cache_dir, PathBuf::from("./modfleet-cache"));
        assert_eq!(c.cache_max_bytes, None);
        assert_eq!(c.list_ttl, Duration::from_secs(60));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.sumdbs.len(), 1);
        assert_eq!(c.sumdbs[0].name, "sum.golang.org");
        assert_eq!(c.sumdbs[0].url.as_str(), "https://sum.golang.org/");
        assert_eq!(c.upstreams[0].timeout, Duration::from_secs(30));
    }

    #[test]
    fn flags_win_over_the_file() {
        let file: FileConfig = serde_yaml_ng::from_str(
            "listen: 127.0.0.1:1\ncacheDir: /from/file\nlistTtl: 5m\nupstreams:\n  - url: https://file.example/\n    weight: 3\n    timeout: 2s\n",
        )
        .unwrap();
        let mut a = args(&[]);
        a.listen = Some("127.0.0.1:2".parse().unwrap());
        let c = Config::merge(&a, file, no_env).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:2");
        assert_eq!(c.cache_dir, PathBuf::from("/from/file"));
        assert_eq!(c.list_ttl, Duration::from_secs(300));
        assert_eq!(c.upstreams.len(), 1);
        assert_eq!(c.upstreams[0].url.as_str(), "https://file.example/");
        assert_eq!(c.upstreams[0].weight, 3);
        assert_eq!(c.upstreams[0].timeout, Duration::from_secs(2));
    }

    #[test]
    fn resilience_settings_parse_with_defaults() {
        let file: FileConfig = serde_yaml_ng::from_str(
            "hedgeDelay: 250ms\nnegativeTtl: 5s\nbreaker:\n  failures: 3\nupstreams:\n  - url: http://a.example\n  - url: http://b.example\n    priority: 0\n    weight: 3\n",
        )
        .unwrap();
        let c = Config::merge(&args(&[]), file, no_env).unwrap();
        let r = &c.resilience;
        assert_eq!(r.hedge_delay, HedgeDelay::Fixed(Duration::from_millis(250)));
        assert_eq!(r.negative_ttl, Duration::from_secs(5));
        assert_eq!(r.breaker.failures, 3);
        assert_eq!(
            r.breaker.open_for,
            Duration::from_secs(10),
            "unset keys keep defaults"
        );
        assert_eq!(r.retry.attempts, 2);
        assert_eq!(c.upstreams[0].priority, 0);
        assert_eq!(c.upstreams[1].priority, 0);
        assert_eq!(c.upstreams[1].weight, 3);
        assert_eq!("off".parse::<HedgeDelay>().unwrap(), HedgeDelay::Off);
        assert!("sometimes".parse::<HedgeDelay>().is_err());
        let bad: FileConfig = serde_yaml_ng::from_str("breaker:\n  failures: 0\n").unwrap();
        assert!(Config::merge(&args(&["http://a.example"]), bad, no_env).is_err());
    }

    #[test]
    fn connection_limits_parse_validate_and_default() {
        let c = Config::merge(&args(&["http://a.example"]), FileConfig::default(), no_env).unwrap();
        assert_eq!(c.connections, ConnectionLimits::default());
        assert_eq!(c.connections.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.connections.max_connections_per_ip, 1024);
        let file: FileConfig = serde_yaml_ng::from_str(
            "headerReadTimeout: 3s\nidleTimeout: 2m\nsendTimeout: 30s\nmaxConnections: 100\n",
        )
        .unwrap();
        let c = Config::merge(&args(&["http://a.example"]), file, no_env).unwrap();
        assert_eq!(c.connections.header_read_timeout, Duration::from_secs(3));
        assert_eq!(c.connections.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.connections.send_timeout, Duration::from_secs(30));
        assert_eq!(c.connections.max_connections, 100);
        assert_eq!(
            c.connections.max_connections_per_ip, 25,
            "a quarter of the cap when unset"
        );
        let mut a = args(&["http://a.example"]);
        a.max_connections = Some(10);
        a.max_connections_per_ip = Some(11);
        let err = Config::merge(&a, FileConfig::default(), no_env).unwrap_err();
        assert!(
            err.to_string().contains("--max-connections-per-ip"),
            "{err}"
        );
        let mut a = args(&["http://a.example"]);
        a.idle_timeout = Some(Duration::ZERO);
        let err = Config::merge(&a, FileConfig::default(), no_env).unwrap_err();
        assert!(err.to_string().contains("--idle-timeout"), "{err}");
        let mut a = args(&["http://a.example"]);
        a.max_connections = Some(0);
        assert!(Config::merge(&a, FileConfig::default(), no_env).is_err());
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let err = serde_yaml_ng::from_str::<FileConfig>("cachedir: /x\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown field `cachedir`"),
            "{err}"
        );
    }

    #[test]
    fn goproxy_entries_are_the_fallback() {
        let env = || Environment {
            goproxy_env: Some("off".into()),
            goproxy_from_go: Some("https://a.example,direct|https://b.example/x/".into()),
        };
        let c = Config::merge(&args(&[]), FileConfig::default(), env).unwrap();
        let urls: Vec<_> = c.upstreams.iter().map(|u| u.url.to_string()).collect();
        assert_eq!(urls, ["https://a.example/", "https://b.example/x"]);
    }

    #[test]
    fn no_upstream_is_an_error_that_says_how_to_fix_it() {
        let env = || Environment {
            goproxy_env: Some("direct".into()),
            goproxy_from_go: None,
        };
        let err = Config::merge(&args(&[]), FileConfig::default(), env).unwrap_err();
        assert!(matches!(err, ConfigError::NoUpstream));
        assert!(err.to_string().contains("--upstream"));
    }

    #[test]
    fn bad_upstreams_are_named() {
        for bad in [
            "ftp://x.example",
            "not a url",
            "https://x.example/?q=1",
            "file:///tmp",
        ] {
            let err = Config::merge(&args(&[bad]), FileConfig::default(), no_env).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn sumdb_flags_parse_name_and_url() {
        let mut a = args(&["https://up.example"]);
        a.sumdbs = vec![
            "sum.golang.org".parse().unwrap(),
            "sum.corp.example=http://127.0.0.1:9/db".parse().unwrap(),
        ];
        let c = Config::merge(&a, FileConfig::default(), no_env).unwrap();
        assert_eq!(c.sumdbs[1].name, "sum.corp.example");
        assert_eq!(c.sumdbs[1].url.as_str(), "http://127.0.0.1:9/db");
        a.sumdbs = vec!["Not_A_Host".parse().unwrap()];
        assert!(Config::merge(&a, FileConfig::default(), no_env).is_err());
    }

    const GO_KEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";

    #[test]
    fn sumdb_flags_take_the_gosumdb_forms() {
        let parse = |s: &str| s.parse::<SumdbConfig>().unwrap();
        let c = parse(GO_KEY);
        assert_eq!(
            (c.name.as_str(), c.key.as_deref(), c.url),
            ("sum.golang.org", Some(GO_KEY), None)
        );
        let c = parse(&format!("{GO_KEY} https://sum.golang.google.cn"));
        assert_eq!(c.url.as_deref(), Some("https://sum.golang.google.cn"));
        let c = parse("sum.golang.org https://sum.golang.google.cn");
        assert_eq!((c.name.as_str(), c.key), ("sum.golang.org", None));
        assert_eq!(c.url.as_deref(), Some("https://sum.golang.google.cn"));
        let c = parse("sum.corp.example=http://db.corp/x+y");
        assert_eq!((c.name.as_str(), c.key), ("sum.corp.example", None));
        assert_eq!(c.url.as_deref(), Some("http://db.corp/x+y"));
        assert!("a b c".parse::<SumdbConfig>().is_err());

        // The key is checked, and a known name gets the go command's key.
        let mut a = args(&["https://up.example"]);
        a.sumdbs = vec![parse(&format!("{GO_KEY} http://127.0.0.1:9/db"))];
        let c = Config::merge(&a, FileConfig::default(), no_env).unwrap();
        assert_eq!(c.sumdbs[0].key.as_deref(), Some(GO_KEY));
        assert_eq!(c.sumdbs[0].url.as_str(), "http://127.0.0.1:9/db");
        a.sumdbs = vec![parse("sum.golang.org")];
        let c = Config::merge(&a, FileConfig::default(), no_env).unwrap();
        assert_eq!(c.sumdbs[0].key.as_deref(), Some(GO_KEY));
        let tampered = GO_KEY.replace("Ac4z", "Ac5z");
        a.sumdbs = vec![parse(&tampered)];
        let err = Config::merge(&a, FileConfig::default(), no_env).unwrap_err();
        assert!(err.to_string().contains("does not match its hash"), "{err}");
    }

    #[test]
    fn verification_is_on_by_default_and_needs_a_key() {
        let c = Config::merge(
            &args(&["https://up.example"]),
            FileConfig::default(),
            no_env,
        )
        .unwrap();
        assert!(c.verify_sumdb);
        assert_eq!(c.sumdbs[0].key.as_deref(), Some(GO_KEY));

        let file: FileConfig = serde_yaml_ng::from_str(
            "sumdbs:\n  - name: sum.corp.example\n    url: http://db.corp\n",
        )
        .unwrap();
        let err = Config::merge(&args(&["https://up.example"]), file, no_env).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("sum.corp.example") && msg.contains("--verify-sumdb off"),
            "{msg}"
        );

        let file: FileConfig =
            serde_yaml_ng::from_str("verifySumdb: off\nsumdbs:\n  - name: sum.corp.example\n")
                .unwrap();
        let c = Config::merge(&args(&["https://up.example"]), file, no_env).unwrap();
        assert!(!c.verify_sumdb);
        assert_eq!(c.sumdbs[0].key, None);

        // YAML key: must be for the entry's name.
        let file: FileConfig = serde_yaml_ng::from_str(&format!(
            "sumdbs:\n  - name: sum.corp.example\n    key: {GO_KEY}\n"
        ))
        .unwrap();
        let err = Config::merge(&args(&["https://up.example"]), file, no_env).unwrap_err();
        assert!(err.to_string().contains("the key is for"), "{err}");

        // The flag wins over the file; YAML booleans work too.
        let file: FileConfig = serde_yaml_ng::from_str("verifySumdb: false\n").unwrap();
        assert_eq!(file.verify_sumdb, Some(OnOff::Off));
        let mut a = args(&["https://up.example"]);
        a.verify_sumdb = Some(OnOff::On);
        assert!(Config::merge(&a, file, no_env).unwrap().verify_sumdb);
        assert!(serde_yaml_ng::from_str::<FileConfig>("verifySumdb: maybe\n").is_err());
    }

    #[test]
    fn verify_sumdb_flag_parses_and_is_documented() {
        use clap::CommandFactory;
        let cli = Cli::try_parse_from(["modfleet-proxy", "--verify-sumdb", "off"]).unwrap();
        assert_eq!(cli.serve.verify_sumdb, Some(OnOff::Off));
        assert!(Cli::try_parse_from(["modfleet-proxy", "--verify-sumdb", "sometimes"]).is_err());
        let help = Cli::command().render_long_help().to_string();
        assert!(
            help.contains("--verify-sumdb") && help.contains("MODFLEET_VERIFY_SUMDB"),
            "{help}"
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!("1024".parse::<ByteSize>().unwrap().0, 1024);
        assert_eq!("20Gi".parse::<ByteSize>().unwrap().0, 20 << 30);
        assert_eq!("10G".parse::<ByteSize>().unwrap().0, 10_000_000_000);
        assert_eq!("512MiB".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("-1".parse::<ByteSize>().is_err());
        let f: FileConfig = serde_yaml_ng::from_str("cacheMaxBytes: 1Gi").unwrap();
        assert_eq!(f.cache_max_bytes, Some(ByteSize(1 << 30)));
        let f: FileConfig = serde_yaml_ng::from_str("cacheMaxBytes: 4096").unwrap();
        assert_eq!(f.cache_max_bytes, Some(ByteSize(4096)));
    }

    #[test]
    fn exclude_patterns_match_like_goprivate() {
        let p = ModulePattern::parse("corp.example.com/*").unwrap();
        assert!(p.matches("corp.example.com/team/x"));
        assert!(p.matches("corp.example.com/team"));
        assert!(!p.matches("corp.example.com"));
        assert!(!p.matches("github.com/corp.example.com/x"));
        let p = ModulePattern::parse("*.corp.example").unwrap();
        assert!(p.matches("git.corp.example/a/b"));
        assert!(!p.matches("corp.example/a"));
        assert!(ModulePattern::parse("/abs").is_err());
    }
}
