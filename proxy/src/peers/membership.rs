//! Who the fleet's members are: a static list, or a headless Service's EndpointSlices read
//! from the Kubernetes API (with the Pod's service account) every `refresh`. A failed read
//! keeps the last good membership (reported in `/status`); members are `HOST:PORT` strings,
//! normalised (`[v6]:port`) and sorted, so that every member hashes the same strings.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use modfleet_contract::config::EndpointSlicesConfig;
use serde::Deserialize;

/// Where the Pod's service account is mounted.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Largest EndpointSlice list read (a fleet of hundreds of members is a few hundred KiB).
const MAX_LIST_BYTES: usize = 4 << 20;
/// Most members taken from the list: more is a mistake (or an attack), not a fleet.
pub const MAX_MEMBERS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error(
        "peerFill.members: {0:?} is not HOST:PORT (e.g. 10.0.0.5:7070 or proxy-0.example:7070)"
    )]
    BadMember(String),
    #[error(
        "peerFill.endpointSlices: {0}; set apiServer, caFile and tokenFile, or run in a Pod with a service account"
    )]
    NotInCluster(String),
    #[error("reading the EndpointSlices of Service {service}: {message}")]
    Read { service: String, message: String },
}

/// A member address as every member writes it: `1.2.3.4:7070`, `[fd00::1]:7070`, or a host
/// name with a port, lower-cased.
pub fn normalise(member: &str) -> Result<String, MembershipError> {
    let bad = || MembershipError::BadMember(member.to_string());
    if let Ok(addr) = member.parse::<SocketAddr>() {
        return Ok(addr.to_string());
    }
    let (host, port) = member.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !host_ok {
        return Err(bad());
    }
    Ok(format!("{}:{port}", host.to_ascii_lowercase()))
}

/// A static list, normalised, sorted and without duplicates.
pub fn from_list(members: &[String]) -> Result<Vec<String>, MembershipError> {
    let mut out = members
        .iter()
        .map(|m| normalise(m))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

// Lists may be `null` where empty (a slice without endpoints has `"endpoints": null`).
#[derive(Deserialize)]
struct SliceList {
    #[serde(default)]
    items: Option<Vec<Slice>>,
}

#[derive(Deserialize)]
struct Slice {
    #[serde(default)]
    ports: Option<Vec<SlicePort>>,
    #[serde(default)]
    endpoints: Option<Vec<SliceEndpoint>>,
}

#[derive(Deserialize)]
struct SlicePort {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Deserialize)]
struct SliceEndpoint {
    #[serde(default)]
    addresses: Option<Vec<String>>,
    #[serde(default)]
    conditions: Option<Conditions>,
}

#[derive(Deserialize, Default)]
struct Conditions {
    /// A Pod being deleted: it is leaving; asking it would only cost a timeout.
    #[serde(default)]
    terminating: Option<bool>,
}

/// The members in an EndpointSlice list (the API's JSON): every address of every endpoint not
/// terminating, with the slice's port named `port_name`. Addresses that are not IPs are
/// skipped (a hostile or broken slice cannot make a member dial a name).
pub fn from_endpoint_slices(json: &[u8], port_name: &str) -> Result<Vec<String>, String> {
    let list: SliceList =
        serde_json::from_slice(json).map_err(|e| format!("not an EndpointSlice list: {e}"))?;
    let mut out = Vec::new();
    for slice in list.items.unwrap_or_default() {
        let Some(port) = slice
            .ports
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.name.as_deref() == Some(port_name))
            .and_then(|p| p.port)
        else {
            continue;
        };
        for endpoint in slice.endpoints.unwrap_or_default() {
            if endpoint.conditions.and_then(|c| c.terminating) == Some(true) {
                continue;
            }
            for address in endpoint.addresses.unwrap_or_default() {
                if let Ok(ip) = address.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, port).to_string());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out.truncate(MAX_MEMBERS);
    Ok(out)
}

/// Reads EndpointSlices from the API server.
pub struct SliceReader {
    client: reqwest::Client,
    url: String,
    service: String,
    port: String,
    token_file: PathBuf,
}

impl SliceReader {
    pub fn new(
        config: &EndpointSlicesConfig,
        timeout: Duration,
    ) -> Result<SliceReader, MembershipError> {
        let sa = Path::new(SERVICE_ACCOUNT_DIR);
        let api = match &config.api_server {
            Some(a) => a.trim_end_matches('/').to_string(),
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                    MembershipError::NotInCluster("KUBERNETES_SERVICE_HOST is not set".into())
                })?;
                let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or("443".into());
                let host = match host.parse::<IpAddr>() {
                    Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
                    _ => host,
                };
                format!("https://{host}:{port}")
            }
        };
        let ca_file = config.ca_file.clone().unwrap_or(sa.join("ca.crt"));
        let token_file = config.token_file.clone().unwrap_or(sa.join("token"));
        let namespace = match &config.namespace {
            Some(n) => n.clone(),
            None => std::fs::read_to_string(sa.join("namespace"))
                .map(|n| n.trim().to_string())
                .map_err(|e| {
                    MembershipError::NotInCluster(format!(
                        "no namespace set and {}/namespace cannot be read: {e}",
                        sa.display()
                    ))
                })?,
        };
        let ca = std::fs::read(&ca_file).map_err(|e| {
            MembershipError::NotInCluster(format!("cannot read {}: {e}", ca_file.display()))
        })?;
        let ca = reqwest::Certificate::from_pem(&ca).map_err(|e| {
            MembershipError::NotInCluster(format!(
                "{} is not a PEM certificate: {e}",
                ca_file.display()
            ))
        })?;
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| MembershipError::NotInCluster(e.to_string()))?;
        let url = format!(
            "{api}/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{}",
            config.service
        );
        Ok(SliceReader {
            client,
            url,
            service: config.service.clone(),
            port: config.port.clone(),
            token_file,
        })
    }

    /// The members now. The token is read each time: the kubelet rotates it.
    pub async fn read(&self) -> Result<Vec<String>, MembershipError> {
        let fail = |message: String| MembershipError::Read {
            service: self.service.clone(),
            message,
        };
        let token = std::fs::read_to_string(&self.token_file).map_err(|e| {
            fail(format!(
                "cannot read the token {}: {e}",
                self.token_file.display()
            ))
        })?;
        let response = self
            .client
            .get(&self.url)
            .bearer_auth(token.trim())
            .send()
            .await
            .map_err(|e| fail(modfleet_telemetry::error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 | 403 => {
                    ": the fleet's service account needs get/list on endpointslices.discovery.k8s.io in its namespace"
                }
                _ => "",
            };
            return Err(fail(format!("the API server answered {status}{hint}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_LIST_BYTES as u64)
        {
            return Err(fail(format!(
                "the list is larger than {MAX_LIST_BYTES} bytes"
            )));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        use futures::StreamExt;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| fail(e.to_string()))?;
            if body.len() + chunk.len() > MAX_LIST_BYTES {
                return Err(fail(format!(
                    "the list is larger than {MAX_LIST_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        from_endpoint_slices(&body, &self.port).map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_normalised() {
        assert_eq!(normalise("10.0.0.1:7070").unwrap(), "10.0.0.1:7070");
        assert_eq!(normalise("[FD00::1]:7070").unwrap(), "[fd00::1]:7070");
        assert_eq!(
            normalise("Proxy-0.Example:7070").unwrap(),
            "proxy-0.example:7070"
        );
        for bad in [
            "10.0.0.1",
            "host:port",
            ":7070",
            "a b:1",
            "h:70000",
            "http://h:1",
        ] {
            assert!(normalise(bad).is_err(), "{bad}");
        }
        assert_eq!(
            from_list(&["b:1".into(), "a:1".into(), "b:1".into()]).unwrap(),
            ["a:1", "b:1"]
        );
    }

    #[test]
    fn endpoint_slices_give_ip_and_named_port_of_endpoints_not_terminating() {
        let json = br#"{"kind":"EndpointSliceList","items":[
          {"addressType":"IPv4","ports":[{"name":"http","port":8080},{"name":"peer","port":7070}],
           "endpoints":[
             {"addresses":["10.0.0.2"],"conditions":{"ready":true}},
             {"addresses":["10.0.0.1"],"conditions":{"ready":false}},
             {"addresses":["10.0.0.9"],"conditions":{"terminating":true}},
             {"addresses":["evil.example"]}]},
          {"addressType":"IPv6","ports":[{"name":"peer","port":7070}],
           "endpoints":[{"addresses":["fd00::5"]}]},
          {"ports":[{"name":"other","port":1}],"endpoints":[{"addresses":["10.0.0.7"]}]},
          {"ports":null,"endpoints":[{"addresses":["10.0.0.8"]}]},
          {"ports":[{"name":"peer","port":7070}],"endpoints":null},
          {"ports":[{"name":"peer","port":7070}],"endpoints":[{"addresses":null,"conditions":null}]}
        ]}"#;
        assert_eq!(
            from_endpoint_slices(json, "peer").unwrap(),
            ["10.0.0.1:7070", "10.0.0.2:7070", "[fd00::5]:7070"]
        );
        assert!(from_endpoint_slices(b"<html>", "peer").is_err());
        assert_eq!(
            from_endpoint_slices(b"{}", "peer").unwrap(),
            Vec::<String>::new()
        );
    }
}
