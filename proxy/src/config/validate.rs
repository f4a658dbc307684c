//! Checks of each setting, with errors that name the setting and say how to fix it.

use super::{
    ConfigError, ConnectionLimits, FileConfig, Resilience, ServeArgs, Sumdb, SumdbConfig, Upstream,
    UpstreamConfig, defaults, duration,
};
use crate::protocol::sumdb::{self, note::Verifier};
use reqwest::Url;

/// Most connections `--max-connections` may name (far above any fd limit in practice).
const MAX_MAX_CONNECTIONS: usize = 1 << 20;

pub(super) fn parse_http_url(raw: &str) -> Result<Url, String> {
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

pub(super) fn upstream(index: usize, u: UpstreamConfig) -> Result<Upstream, ConfigError> {
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
    if u.timeout.get().is_zero() {
        return Err(ConfigError::UpstreamSetting {
            url: u.url,
            reason: "timeout must be longer than 0s".into(),
        });
    }
    Ok(Upstream {
        url,
        weight: u.weight,
        timeout: u.timeout.get(),
        priority: u.priority.unwrap_or(index as u32),
    })
}

pub(super) fn resilience(r: &Resilience) -> Result<(), ConfigError> {
    let bad = |reason: &str| Err(ConfigError::Resilience(reason.to_string()));
    if r.request_deadline.is_zero() {
        return bad("requestDeadline must be longer than 0s");
    }
    if r.health_check.interval.get().is_zero() || r.health_check.timeout.get().is_zero() {
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

pub(super) fn connection_limits(
    args: &ServeArgs,
    file: &FileConfig,
) -> Result<ConnectionLimits, ConfigError> {
    let max_connections = args
        .max_connections
        .or(file.max_connections)
        .unwrap_or(defaults::MAX_CONNECTIONS);
    let limits = ConnectionLimits {
        header_read_timeout: duration(
            args.header_read_timeout,
            file.header_read_timeout.clone(),
            defaults::HEADER_READ_TIMEOUT,
        ),
        idle_timeout: duration(
            args.idle_timeout,
            file.idle_timeout.clone(),
            defaults::IDLE_TIMEOUT,
        ),
        send_timeout: duration(
            args.send_timeout,
            file.send_timeout.clone(),
            defaults::SEND_TIMEOUT,
        ),
        max_connections,
        max_connections_per_ip: args
            .max_connections_per_ip
            .or(file.max_connections_per_ip)
            .unwrap_or_else(|| defaults::max_connections_per_ip(max_connections)),
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

pub(super) fn sumdb(s: SumdbConfig) -> Result<Sumdb, ConfigError> {
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
