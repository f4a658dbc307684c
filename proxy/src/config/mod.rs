//! Configuration: command-line flags ([`cli`]), `MODFLEET_*` environment variables and an
//! optional YAML file, merged into one typed, validated [`Config`].
//!
//! Precedence is flag > environment variable > `--config` file > default ([`defaults`]). The
//! file's schema, its value syntaxes and the defaults are `modfleet_contract`'s: the operator
//! renders each fleet's ConfigMap with the same types. It is documented in the README
//! ("Configuration file").

mod cli;
mod patterns;
mod private;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use crate::access::Access;

pub use crate::credentials::UpstreamCredentials;
pub use cli::{Cli, HashTokenArgs, ServeArgs, Subcommands, VerifyArgs};
pub use modfleet_contract::config::{
    BreakerConfig, FileConfig, HealthCheckConfig, ObjectStoreConfig, PeerFillConfig, RetryConfig,
    SumdbConfig, TlsConfig, UpstreamConfig,
};
pub use modfleet_contract::defaults;
pub use modfleet_contract::values::{ByteSize, HedgeDelay, HumanDuration, OnOff};
pub use modfleet_telemetry::LogFormat;
pub use patterns::ModulePattern;
pub use private::{PrivateModule, PrivateRepository};

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
    /// Prefetch the `.mod` files a fetched go.mod requires.
    pub prefetch: bool,
    /// With `prefetch`, prefetch the required modules' `.info` files and zips too.
    pub prefetch_zips: bool,
    pub list_ttl: Duration,
    pub log_format: LogFormat,
    pub exclude: Vec<ModulePattern>,
    /// Also holds every private pattern: private modules are never looked up in a checksum
    /// database nor prefetched.
    pub no_sum: Vec<ModulePattern>,
    /// `privateModules`: served from Git, never asked of an upstream.
    pub private: Vec<PrivateModule>,
    pub resilience: Resilience,
    pub connections: ConnectionLimits,
    /// HTTPS on the GOPROXY port; `None`: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// `access`: who may fetch what, and use the admin port (None: everyone, everything).
    pub access: Option<Arc<Access>>,
    /// `objectStore`: the shared store under the disk cache (checked by `Config::load`).
    pub object_store: Option<ObjectStoreConfig>,
    /// `peerFill` (with `--peer-advertise` merged in): fleet-wide single flight.
    pub peer_fill: Option<PeerFillConfig>,
}

/// A validated upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Base URL without a trailing slash (and without userinfo: credentials are files).
    pub url: Url,
    pub weight: u32,
    pub timeout: Duration,
    pub priority: u32,
    /// What its requests carry in `Authorization`; read from files at each use.
    pub credentials: Option<Arc<UpstreamCredentials>>,
}

/// A validated checksum database.
#[derive(Debug, Clone)]
pub struct Sumdb {
    pub name: String,
    pub url: Url,
    /// Its verifier key (checked: well-formed, Ed25519, hash matching, named `name`), if known.
    pub key: Option<String>,
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
            header_read_timeout: defaults::HEADER_READ_TIMEOUT.get(),
            idle_timeout: defaults::IDLE_TIMEOUT.get(),
            send_timeout: defaults::SEND_TIMEOUT.get(),
            max_connections: defaults::MAX_CONNECTIONS,
            max_connections_per_ip: defaults::max_connections_per_ip(defaults::MAX_CONNECTIONS),
        }
    }
}

/// How the upstream layer rides out slow, flapping and dead upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resilience {
    pub hedge_delay: HedgeDelay,
    /// Latency-outlier demotion, and the `auto` hedge delay's bound from the next upstream.
    pub outlier_latency: bool,
    pub negative_ttl: Duration,
    pub stale_while_revalidate: Duration,
    pub request_deadline: Duration,
    pub health_check: HealthCheckConfig,
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
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
    #[error("upstream {url}: {source}")]
    UpstreamCredentials {
        url: String,
        source: crate::credentials::CredentialsError,
    },
    #[error("invalid checksum database {name:?}: {reason}")]
    Sumdb { name: String, reason: String },
    #[error("invalid access.{0}")]
    Access(String),
    #[error("{0}")]
    AccessTokens(#[from] crate::access::TokensError),
    #[error("invalid resilience setting: {0}")]
    Resilience(String),
    #[error("invalid module pattern {pattern:?}: {reason}")]
    Exclude { pattern: String, reason: String },
    #[error("invalid privateModules[{index}]: {reason}")]
    Private { index: usize, reason: String },
    #[error("invalid connection limit: {0}")]
    Connections(String),
    #[error(
        "--tls-cert and --tls-key go together: pass both (MODFLEET_TLS_CERT and \
         MODFLEET_TLS_KEY, or `tls: {{certFile, keyFile}}` in the config file), or neither \
         for plain HTTP"
    )]
    TlsPair,
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    ObjectStore(#[from] crate::store::StoreConfigError),
    #[error(transparent)]
    PeerFill(#[from] crate::peers::PeersError),
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
        let config = Config::merge(args, file, env)?;
        config.check_credentials()?;
        if let Some(tls) = &config.tls {
            // The same check the server repeats when it starts serving: a typo exits 2 here.
            crate::tls::load(tls)?;
        }
        if let Some(access) = &config.access {
            access.tokens.load()?;
        }
        if let Some(store) = &config.object_store {
            crate::store::Store::check(store, config.resilience.request_deadline)?;
        }
        if let Some(peer_fill) = &config.peer_fill {
            crate::peers::Peers::check(peer_fill)?;
        }
        Ok(config)
    }

    /// Reads every upstream's credentials once: a missing file or a netrc without the
    /// upstream's host stops the start, as a typo in the config does. (Later, a file that
    /// breaks fails that upstream's requests and is logged.)
    pub fn check_credentials(&self) -> Result<(), ConfigError> {
        for u in &self.upstreams {
            if let Some(c) = &u.credentials {
                c.authorization()
                    .map_err(|source| ConfigError::UpstreamCredentials {
                        url: u.url.as_str().to_string(),
                        source,
                    })?;
            }
        }
        Ok(())
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
            .unwrap_or_else(|| PathBuf::from(defaults::CACHE_DIR)))
    }

    /// The `privateModules` patterns alone, from the flags or the file (for `verify`, which
    /// needs them without a whole serving config).
    pub fn private_patterns(args: &ServeArgs) -> Result<Vec<ModulePattern>, ConfigError> {
        let entries = if args.private_modules.is_empty() {
            let file = match &args.config {
                Some(path) => read_file(path)?,
                None => FileConfig::default(),
            };
            file.private_modules
        } else {
            Some(private::from_flags(&args.private_modules)?)
        };
        Ok(private::private_modules(entries)?
            .into_iter()
            .map(|p| p.pattern)
            .collect())
    }

    pub fn merge(
        args: &ServeArgs,
        file: FileConfig,
        env: impl FnOnce() -> Environment,
    ) -> Result<Config, ConfigError> {
        let connections = validate::connection_limits(args, &file)?;
        let upstreams = if !args.upstreams.is_empty() {
            args.upstreams.iter().map(UpstreamConfig::new).collect()
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
            entries.into_iter().map(UpstreamConfig::new).collect()
        };
        if upstreams.is_empty() {
            return Err(ConfigError::NoUpstream);
        }
        let upstreams = upstreams
            .into_iter()
            .enumerate()
            .map(|(i, u)| validate::upstream(i, u))
            .collect::<Result<Vec<_>, _>>()?;

        let sumdbs = if !args.sumdbs.is_empty() {
            args.sumdbs.clone()
        } else {
            file.sumdbs.unwrap_or_else(|| {
                vec![SumdbConfig {
                    name: defaults::SUMDB.to_string(),
                    url: None,
                    key: None,
                }]
            })
        };
        let sumdbs = sumdbs
            .into_iter()
            .map(validate::sumdb)
            .collect::<Result<Vec<_>, _>>()?;
        let verify_sumdb = args
            .verify_sumdb
            .or(file.verify_sumdb)
            .unwrap_or(defaults::VERIFY_SUMDB)
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
                .unwrap_or(defaults::HEDGE_DELAY),
            outlier_latency: args
                .outlier_latency
                .or(file.outlier_latency)
                .unwrap_or(defaults::OUTLIER_LATENCY)
                .is_on(),
            negative_ttl: duration(args.negative_ttl, file.negative_ttl, defaults::NEGATIVE_TTL),
            stale_while_revalidate: duration(
                args.stale_while_revalidate,
                file.stale_while_revalidate,
                defaults::STALE_WHILE_REVALIDATE,
            ),
            request_deadline: duration(
                args.request_deadline,
                file.request_deadline,
                defaults::REQUEST_DEADLINE,
            ),
            health_check: file.health_check.unwrap_or_default(),
            breaker: file.breaker.unwrap_or_default(),
            retry: file.retry.unwrap_or_default(),
        };
        validate::resilience(&resilience)?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert_file), Some(key_file)) => Some(TlsConfig {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            }),
            (None, None) => file.tls,
            _ => return Err(ConfigError::TlsPair),
        };
        let access = file.access.map(validate::access).transpose()?.map(Arc::new);
        let exclude = patterns::merge(&args.exclude, file.exclude)?;
        let private_entries = if args.private_modules.is_empty() {
            file.private_modules
        } else {
            Some(private::from_flags(&args.private_modules)?)
        };
        let private = private::private_modules(private_entries)?;
        let mut no_sum = patterns::merge(&args.no_sum, file.no_sum)?;
        no_sum.extend(private.iter().map(|p| p.pattern.clone()));

        Ok(Config {
            listen: args.listen.or(file.listen).unwrap_or(defaults::LISTEN),
            admin_listen: args
                .admin_listen
                .or(file.admin_listen)
                .unwrap_or(defaults::ADMIN_LISTEN),
            cache_dir: args
                .cache_dir
                .clone()
                .or(file.cache_dir)
                .unwrap_or_else(|| PathBuf::from(defaults::CACHE_DIR)),
            cache_max_bytes: args
                .cache_max_bytes
                .or(file.cache_max_bytes)
                .map(|b| b.0)
                .filter(|&b| b > 0),
            upstreams,
            sumdbs,
            verify_sumdb,
            prefetch: args
                .prefetch
                .or(file.prefetch)
                .unwrap_or(defaults::PREFETCH)
                .is_on(),
            prefetch_zips: args
                .prefetch_zips
                .or(file.prefetch_zips)
                .unwrap_or(defaults::PREFETCH_ZIPS)
                .is_on(),
            list_ttl: duration(args.list_ttl, file.list_ttl, defaults::LIST_TTL),
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(defaults::LOG_FORMAT),
            exclude,
            no_sum,
            private,
            resilience,
            connections,
            tls,
            access,
            object_store: file.object_store,
            peer_fill: file.peer_fill.map(|mut p| {
                if let Some(advertise) = args.peer_advertise.clone() {
                    p.advertise = Some(advertise);
                }
                p
            }),
        })
    }

    /// True when the module path matches an `exclude` pattern.
    pub fn is_excluded(&self, module: &str) -> bool {
        self.exclude.iter().any(|p| p.matches(module))
    }

    /// The `privateModules` entry serving the module, the first that matches.
    pub fn private_module(&self, module: &str) -> Option<&PrivateModule> {
        self.private.iter().find(|p| p.pattern.matches(module))
    }

    /// True when checksum-database lookups for the module must not leave the proxy.
    pub fn is_no_sum(&self, module: &str) -> bool {
        self.no_sum.iter().any(|p| p.matches(module))
    }
}

/// A duration setting: the flag's, else the file's, else the default.
fn duration(
    flag: Option<Duration>,
    file: Option<HumanDuration>,
    default: HumanDuration,
) -> Duration {
    flag.or(file.map(|d| d.get())).unwrap_or(default.get())
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

#[cfg(test)]
mod tests;
