//! Checks of each setting, with errors that name the setting and say how to fix it.

use super::{
    ConfigError, ConnectionLimits, FileConfig, ModulePattern, Resilience, ServeArgs, Sumdb,
    SumdbConfig, Upstream, UpstreamConfig, defaults, duration,
};
use crate::credentials::{CredentialSource, UpstreamCredentials, Username};
use crate::protocol::sumdb::{self, note::Verifier};
use modfleet_contract::config::UpstreamCredentialsConfig;
use reqwest::Url;
use std::path::PathBuf;
use std::sync::Arc;

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
    // Shown without userinfo everywhere: a password put there must not reach a log.
    let shown = crate::codehost::display_url(&u.url);
    let url = parse_http_url(&u.url).map_err(|reason| ConfigError::Upstream {
        url: shown.clone(),
        reason,
    })?;
    let bad = |reason: String| ConfigError::UpstreamSetting {
        url: shown.clone(),
        reason,
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "put the user name and password in the upstream's `credentials` (files), not in \
             the URL: the URL is shown in logs, metrics and /status"
                .into(),
        ));
    }
    if u.weight == 0 {
        return Err(bad("weight must be at least 1".into()));
    }
    if u.timeout.get().is_zero() {
        return Err(bad("timeout must be longer than 0s".into()));
    }
    let credentials = match u.credentials {
        None => None,
        Some(c) => {
            if url.scheme() == "http" && !u.insecure {
                return Err(bad(
                    "credentials on a plain http:// upstream would cross the network in clear \
                     text: use https://, or set `insecure: true` on the upstream to send them \
                     anyway"
                        .into(),
                ));
            }
            let source = credentials(c).map_err(bad)?;
            Some(Arc::new(UpstreamCredentials::new(source, &url)))
        }
    };
    Ok(Upstream {
        url,
        weight: u.weight,
        timeout: u.timeout.get(),
        priority: u.priority.unwrap_or(index as u32),
        credentials,
    })
}

/// One of: `username` or `usernameFile` with `passwordFile`; `bearerTokenFile`; `netrcFile`.
fn credentials(c: UpstreamCredentialsConfig) -> Result<CredentialSource, String> {
    const ONE_OF: &str = "username (or usernameFile) with passwordFile for HTTP Basic, \
                          bearerTokenFile for a Bearer token, or netrcFile";
    let basic = c.username.is_some() || c.username_file.is_some() || c.password_file.is_some();
    let kinds = [basic, c.bearer_token_file.is_some(), c.netrc_file.is_some()];
    match kinds.iter().filter(|&&k| k).count() {
        0 => return Err(format!("credentials: give {ONE_OF}")),
        1 => {}
        _ => return Err(format!("credentials: give one of {ONE_OF}, not several")),
    }
    let file = |setting: &str, path: PathBuf| {
        if path.as_os_str().is_empty() {
            Err(format!("credentials: {setting} is empty: name a file"))
        } else {
            Ok(path)
        }
    };
    if let Some(path) = c.bearer_token_file {
        return Ok(CredentialSource::Bearer {
            token_file: file("bearerTokenFile", path)?,
        });
    }
    if let Some(path) = c.netrc_file {
        return Ok(CredentialSource::Netrc {
            file: file("netrcFile", path)?,
        });
    }
    let username = match (c.username, c.username_file) {
        (Some(_), Some(_)) => {
            return Err("credentials: give username or usernameFile, not both".into());
        }
        (Some(name), None) => {
            let name = name.trim().to_string();
            if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
                return Err(
                    "credentials: username must be a user name without ':' or control \
                     characters (HTTP Basic cannot send them)"
                        .into(),
                );
            }
            Username::Name(name)
        }
        (None, Some(path)) => Username::File(file("usernameFile", path)?),
        (None, None) => {
            return Err(
                "credentials: HTTP Basic needs username (or usernameFile) with \
                        passwordFile"
                    .into(),
            );
        }
    };
    let Some(password_file) = c.password_file else {
        return Err("credentials: HTTP Basic needs passwordFile with the username".into());
    };
    Ok(CredentialSource::Basic {
        username,
        password_file: file("passwordFile", password_file)?,
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

/// `access`: its patterns parsed; the tokens files are read by `Config::load`.
pub(super) fn access(
    file: modfleet_contract::access::AccessConfig,
) -> Result<crate::access::Access, ConfigError> {
    let rules = file
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            if r.modules.is_empty() {
                return Err(ConfigError::Access(format!(
                    "rules[{i}]: `modules` is empty: list module path patterns (`*` for all)"
                )));
            }
            let modules = r
                .modules
                .iter()
                .map(|m| ModulePattern::parse(m))
                .collect::<Result<_, _>>()
                .map_err(|e| ConfigError::Access(format!("rules[{i}].modules: {e}")))?;
            Ok(crate::access::Rule {
                modules,
                allow: r.allow,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::access::Access::new(
        rules,
        file.admin,
        crate::access::TokenStore::new(file.tokens_files),
    ))
}
