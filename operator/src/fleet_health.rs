//! Upstream health as the fleet's members see it. Each member proxy serves `/status` on its
//! admin port (each upstream's state: healthy, breaker, probe, latency, last error). The
//! controller asks every Ready member at each reconcile ([`Poller::poll`]) and folds the
//! answers into `status.upstreams` and the `UpstreamsHealthy` condition ([`summarize`]).
//!
//! Why the members and not the operator itself probe the upstreams: what matters is whether
//! the proxies can reach them, through their own network, NetworkPolicy and DNS.
//!
//! A member that cannot be asked (no answer, refused, a pod IP outside
//! `--health-poll-networks`) is *not reporting*: it is left out of the counts and named in
//! the condition's message, because an unreachable admin port says nothing about the
//! upstreams. Pod readiness is `Ready`'s business.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use modfleet_contract::status::ProxyStatus;

use crate::cidr::Cidr;
use crate::conditions::ConditionType::UpstreamsHealthy;
use crate::conditions::{Status, Verdict};
use crate::crd::{GoModuleProxy, StoreHealth, UpstreamHealth};
use crate::peer_health::{self, PeersReport};
use crate::resources::access::AdminToken;
use crate::resources::{ADMIN_PORT, labels};
use crate::store_health::{self, StoreReport};

/// Largest `/status` body read; a real one is a few hundred bytes per upstream.
const MAX_STATUS_BYTES: usize = 1 << 20;
/// At most this many non-reporting members are named in a message.
const MAX_NAMED: usize = 3;

/// What the summary takes from one upstream of a member's `/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamReport {
    /// Normalised with [`normalize`].
    pub url: String,
    pub healthy: bool,
    pub last_error: Option<String>,
}

/// What one member said in its `/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    pub upstreams: Vec<UpstreamReport>,
    /// Its object store; `None`: it has none.
    pub store: Option<StoreReport>,
    /// Its peer fill; `None`: off (or a member that predates it).
    pub peers: Option<PeersReport>,
}

/// What one member said, or why it said nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberReport {
    Reachable(Answer),
    /// Why the member could not be asked (short and stable, as it lands in the condition).
    Unreachable(String),
}

/// Parses a member's `/status` body (the proxy's own document type, `modfleet_contract::status`).
pub fn parse(body: &[u8]) -> MemberReport {
    match serde_json::from_slice::<ProxyStatus>(body) {
        Ok(s) => MemberReport::Reachable(Answer {
            upstreams: s
                .upstreams
                .into_iter()
                .map(|u| UpstreamReport {
                    url: normalize(&u.url),
                    healthy: u.health.healthy,
                    last_error: u.health.last_error.map(|e| e.message),
                })
                .collect(),
            store: s.store.as_ref().map(store_health::report),
            peers: s.peers.as_ref().map(peer_health::report),
        }),
        Err(e) => MemberReport::Unreachable(format!("unreadable /status: {e}")),
    }
}

/// The form in which the proxy reports an upstream URL: it parses the URL (scheme and host
/// lowercased, the scheme's default port dropped) and trims the trailing slash. The spec's
/// URLs are compared in the same form.
pub fn normalize(url: &str) -> String {
    let url = url.trim();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.trim_end_matches('/').to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let mut authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => Some(":80"),
        "https" => Some(":443"),
        _ => None,
    };
    if let Some(port) = default_port
        && authority.ends_with(port)
    {
        authority.truncate(authority.len() - port.len());
    }
    format!("{scheme}://{authority}{path}")
        .trim_end_matches('/')
        .to_owned()
}

/// Everything the status needs from one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetHealth {
    pub upstreams: Vec<UpstreamHealth>,
    /// The `UpstreamsHealthy` condition.
    pub verdict: Verdict,
    /// With `spec.cache.objectStore`: `status.store` and the `StoreHealthy` condition
    /// ([`store_health::summarize`]).
    pub store: Option<(StoreHealth, Verdict)>,
    /// With peer fill: the `PeersHealthy` condition ([`peer_health::summarize`]).
    pub peers: Option<Verdict>,
}

impl FleetHealth {
    /// Health could not be polled at all (e.g. the pods could not be listed).
    pub fn unknown(
        store_url: Option<&str>,
        peer_fill: bool,
        reason: &'static str,
        message: String,
    ) -> FleetHealth {
        FleetHealth {
            upstreams: Vec::new(),
            store: store_url.map(|url| store_health::unknown(url, reason, message.clone())),
            peers: peer_fill.then(|| peer_health::unknown(reason, message.clone())),
            verdict: UpstreamsHealthy.unknown_because(reason, message),
        }
    }
}

/// "a (why), b (why) and 2 more".
fn name_members(unreachable: &[(&str, &str)]) -> String {
    let mut named: Vec<String> = unreachable
        .iter()
        .take(MAX_NAMED)
        .map(|(name, why)| format!("{name} ({why})"))
        .collect();
    if unreachable.len() > MAX_NAMED {
        named.push(format!("{} more", unreachable.len() - MAX_NAMED));
    }
    named.join(", ")
}

/// Summarises the members' reports (member name, report; in a stable order) for the
/// upstreams of the spec, in spec order.
///
/// `True` when every upstream is healthy on every member that reported; `False` when some
/// upstream is unhealthy on some member (`AllUpstreamsDown` when none is healthy anywhere,
/// else `UpstreamDown`); `Unknown` when there is nobody to ask or nobody answered.
pub fn summarize(spec_urls: &[String], reports: &[(String, MemberReport)]) -> FleetHealth {
    let reachable: Vec<(&str, &[UpstreamReport])> = reports
        .iter()
        .filter_map(|(name, r)| match r {
            MemberReport::Reachable(a) => Some((name.as_str(), a.upstreams.as_slice())),
            MemberReport::Unreachable(_) => None,
        })
        .collect();
    let unreachable: Vec<(&str, &str)> = reports
        .iter()
        .filter_map(|(name, r)| match r {
            MemberReport::Unreachable(why) => Some((name.as_str(), why.as_str())),
            MemberReport::Reachable(..) => None,
        })
        .collect();
    let upstreams: Vec<UpstreamHealth> = spec_urls
        .iter()
        .map(|url| {
            let url = normalize(url);
            // A member that does not list the URL (still on an older config) does not count.
            let seen: Vec<&UpstreamReport> = reachable
                .iter()
                .filter_map(|(_, ups)| ups.iter().find(|u| u.url == url))
                .collect();
            UpstreamHealth {
                healthy_members: seen.iter().filter(|u| u.healthy).count() as i32,
                members: seen.len() as i32,
                last_error: seen
                    .iter()
                    .find(|u| !u.healthy)
                    .and_then(|u| u.last_error.clone()),
                url,
            }
        })
        .collect();

    let not_reporting = if unreachable.is_empty() {
        String::new()
    } else {
        format!(
            "; {} of {} Ready members not reporting: {}",
            unreachable.len(),
            reports.len(),
            name_members(&unreachable)
        )
    };
    let verdict = if reports.is_empty() {
        UpstreamsHealthy.unknown_because(
            "NoReadyMembers",
            "No Ready member to ask about upstream health",
        )
    } else if reachable.is_empty() {
        UpstreamsHealthy.unknown_because(
            "NoMemberReports",
            format!(
                "No Ready member answered on its admin port {ADMIN_PORT} (/status): {}",
                name_members(&unreachable)
            ),
        )
    } else {
        let down: Vec<String> = upstreams
            .iter()
            .filter(|u| u.healthy_members < u.members)
            .map(|u| {
                format!(
                    "{} is healthy on {}/{} members",
                    u.url, u.healthy_members, u.members
                )
            })
            .collect();
        let unreported: Vec<&str> = upstreams
            .iter()
            .filter(|u| u.members == 0)
            .map(|u| u.url.as_str())
            .collect();
        if !down.is_empty() {
            let all_down = upstreams.iter().all(|u| u.healthy_members == 0);
            UpstreamsHealthy.false_because(
                if all_down {
                    "AllUpstreamsDown"
                } else {
                    "UpstreamDown"
                },
                format!("{}{not_reporting}", down.join("; ")),
            )
        } else if !unreported.is_empty() {
            UpstreamsHealthy.unknown_because(
                "UpstreamsNotReported",
                format!(
                    "No member reports on {} yet (a rollout of the new configuration may be under way){not_reporting}",
                    unreported.join(", ")
                ),
            )
        } else {
            UpstreamsHealthy.true_because(
                "AllUpstreamsHealthy",
                format!(
                    "Every upstream is healthy on all {} members that reported{not_reporting}",
                    reachable.len()
                ),
            )
        }
    };
    FleetHealth {
        upstreams,
        verdict,
        store: None,
        peers: None,
    }
}

/// Asks the fleet's members for their `/status`.
#[derive(Clone, Debug)]
pub struct Poller {
    http: HttpClient<HttpConnector, Empty<Bytes>>,
    /// For each member's whole answer.
    timeout: Duration,
    /// Pod IPs the operator may connect to; empty: any.
    networks: Vec<Cidr>,
    /// How often the controller polls (the requeue interval of a settled fleet).
    pub interval: Duration,
    /// The members' admin port (another one only in tests).
    port: u16,
}

impl Poller {
    pub fn new(interval: Duration, timeout: Duration, networks: Vec<Cidr>) -> Poller {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        // No idle connections: a member restarted on the same IP would otherwise show up as
        // "connection closed" once.
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Poller {
            http,
            timeout,
            networks,
            interval,
            port: ADMIN_PORT as u16,
        }
    }

    /// Lists the fleet's Ready pods and asks each for `/status`, all at once; with `token`
    /// (the fleet has `spec.access`) as `Authorization: Bearer`.
    pub async fn poll(
        &self,
        client: &kube::Client,
        gmp: &GoModuleProxy,
        token: Option<&AdminToken>,
    ) -> FleetHealth {
        let ns = gmp.namespace().unwrap_or_default();
        let store_url = gmp.spec.cache.object_store.as_ref().map(|s| s.url.as_str());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let selector = labels::selector_string(&labels::fleet_selector(&gmp.name_any()));
        let list = match pods.list(&ListParams::default().labels(&selector)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the fleet's pods for upstream health");
                return FleetHealth::unknown(
                    store_url,
                    gmp.peer_fill(),
                    "PodListFailed",
                    format!(
                        "Cannot list the fleet's pods to ask them about upstream health (RBAC: list pods): {e}"
                    ),
                );
            }
        };
        let mut members: Vec<(String, IpAddr)> = list
            .items
            .iter()
            .filter_map(|p| Some((p.name_any(), ready_ip(p)?)))
            .collect();
        members.sort();
        let reports = futures::future::join_all(members.into_iter().map(|(name, ip)| async move {
            let report = self.ask(ip, token).await;
            if let MemberReport::Unreachable(why) = &report {
                tracing::debug!(member = %name, %ip, why, "member not reporting upstream health");
            }
            (name, report)
        }))
        .await;
        let urls: Vec<String> = gmp.spec.upstreams.iter().map(|u| u.url.clone()).collect();
        FleetHealth {
            store: store_url.map(|url| store_health::summarize(url, &reports)),
            peers: gmp
                .peer_fill()
                .then(|| peer_health::summarize(&gmp.name_any(), &reports)),
            ..summarize(&urls, &reports)
        }
    }

    async fn ask(&self, ip: IpAddr, token: Option<&AdminToken>) -> MemberReport {
        if !self.networks.is_empty() && !self.networks.iter().any(|n| n.contains(ip)) {
            return MemberReport::Unreachable(format!(
                "pod IP {ip} is outside --health-poll-networks"
            ));
        }
        let uri = format!("http://{}/status", SocketAddr::new(ip, self.port));
        let request = match status_request(&uri, token) {
            Ok(r) => r,
            Err(e) => return MemberReport::Unreachable(format!("bad request URI {uri}: {e}")),
        };
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| modfleet_telemetry::error_chain(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("/status answered {status}"));
            }
            let body = Limited::new(response.into_body(), MAX_STATUS_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading /status: {e}"))?;
            Ok(body.to_bytes())
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => MemberReport::Unreachable(format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )),
            Ok(Err(why)) => MemberReport::Unreachable(why),
            Ok(Ok(body)) => parse(&body),
        }
    }
}

/// `GET uri`, with `Authorization: Bearer` when there is a token (marked sensitive, so no
/// layer of the client prints it).
fn status_request(
    uri: &str,
    token: Option<&AdminToken>,
) -> Result<http::Request<Empty<Bytes>>, http::Error> {
    let mut request = http::Request::get(uri);
    if let Some(token) = token {
        let mut value = http::HeaderValue::try_from(format!("Bearer {}", token.as_str()))?;
        value.set_sensitive(true);
        request = request.header(http::header::AUTHORIZATION, value);
    }
    request.body(Empty::<Bytes>::new())
}

/// The pod's IP when it is Ready and not being deleted.
fn ready_ip(pod: &Pod) -> Option<IpAddr> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && Status::parse(&c.status) == Some(Status::True));
    if !ready {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> Vec<String> {
        vec!["https://a.example/".into(), "https://b.example".into()]
    }

    fn up(pairs: &[(&str, bool)]) -> MemberReport {
        MemberReport::Reachable(Answer {
            upstreams: pairs
                .iter()
                .map(|(u, ok)| UpstreamReport {
                    url: u.to_string(),
                    healthy: *ok,
                    last_error: (!ok).then(|| format!("{u}: connection refused")),
                })
                .collect(),
            ..Answer::default()
        })
    }

    fn member(i: usize, r: MemberReport) -> (String, MemberReport) {
        (format!("m-{i}"), r)
    }

    fn counts(h: &FleetHealth) -> Vec<(i32, i32)> {
        h.upstreams
            .iter()
            .map(|u| (u.healthy_members, u.members))
            .collect()
    }

    #[test]
    fn all_healthy_is_true() {
        let both = [("https://a.example", true), ("https://b.example", true)];
        let h = summarize(&urls(), &[member(0, up(&both)), member(1, up(&both))]);
        assert_eq!(
            (h.verdict.status, h.verdict.reason),
            (Status::True, "AllUpstreamsHealthy")
        );
        assert_eq!(
            h.verdict.message,
            "Every upstream is healthy on all 2 members that reported"
        );
        assert_eq!(h.upstreams[0].url, "https://a.example");
        assert_eq!(counts(&h), [(2, 2), (2, 2)]);
        assert_eq!(h.upstreams[0].last_error, None);
    }

    #[test]
    fn one_upstream_down_names_it_with_counts_and_its_error() {
        let h = summarize(
            &urls(),
            &[
                member(
                    0,
                    up(&[("https://a.example", true), ("https://b.example", false)]),
                ),
                member(
                    1,
                    up(&[("https://a.example", true), ("https://b.example", false)]),
                ),
            ],
        );
        assert_eq!(
            (h.verdict.status, h.verdict.reason),
            (Status::False, "UpstreamDown")
        );
        assert_eq!(
            h.verdict.message,
            "https://b.example is healthy on 0/2 members"
        );
        assert_eq!(counts(&h), [(2, 2), (0, 2)]);
        assert_eq!(
            h.upstreams[1].last_error.as_deref(),
            Some("https://b.example: connection refused")
        );
    }

    #[test]
    fn unreachable_members_are_not_reporting_not_unhealthy() {
        let both = [("https://a.example", true), ("https://b.example", true)];
        let h = summarize(
            &urls(),
            &[
                member(0, up(&both)),
                member(1, MemberReport::Unreachable("connection refused".into())),
            ],
        );
        assert_eq!(h.verdict.status, Status::True);
        assert_eq!(counts(&h), [(1, 1), (1, 1)]);
        assert_eq!(
            h.verdict.message,
            "Every upstream is healthy on all 1 members that reported; 1 of 2 Ready members not reporting: m-1 (connection refused)"
        );
    }

    #[test]
    fn partial_and_total_outages() {
        let h = summarize(
            &urls(),
            &[
                member(
                    0,
                    up(&[("https://a.example", true), ("https://b.example", true)]),
                ),
                member(
                    1,
                    up(&[("https://a.example", false), ("https://b.example", false)]),
                ),
            ],
        );
        assert_eq!(h.verdict.reason, "UpstreamDown");
        assert_eq!(
            h.verdict.message,
            "https://a.example is healthy on 1/2 members; https://b.example is healthy on 1/2 members"
        );
        let down = [("https://a.example", false), ("https://b.example", false)];
        let h = summarize(&urls(), &[member(0, up(&down))]);
        assert_eq!(
            (h.verdict.status, h.verdict.reason),
            (Status::False, "AllUpstreamsDown")
        );
    }

    #[test]
    fn nobody_to_ask_or_nobody_answering_is_unknown() {
        let h = summarize(&urls(), &[]);
        assert_eq!(
            (h.verdict.status, h.verdict.reason),
            (Status::Unknown, "NoReadyMembers")
        );
        assert_eq!(counts(&h), [(0, 0), (0, 0)]);
        let reports: Vec<_> = (0..5)
            .map(|i| member(i, MemberReport::Unreachable("no answer within 2s".into())))
            .collect();
        let h = summarize(&urls(), &reports);
        assert_eq!(
            (h.verdict.status, h.verdict.reason),
            (Status::Unknown, "NoMemberReports")
        );
        assert_eq!(
            h.verdict.message,
            "No Ready member answered on its admin port 9090 (/status): m-0 (no answer within 2s), m-1 (no answer within 2s), m-2 (no answer within 2s), 2 more"
        );
    }

    #[test]
    fn members_on_an_older_config_do_not_count_for_unknown_upstreams() {
        let old = up(&[("https://a.example", true)]);
        let h = summarize(&urls(), &[member(0, old.clone())]);
        assert_eq!(
            (h.verdict.status, h.verdict.reason),
            (Status::Unknown, "UpstreamsNotReported")
        );
        assert!(
            h.verdict.message.contains("https://b.example"),
            "{}",
            h.verdict.message
        );
        let new = up(&[("https://a.example", true), ("https://b.example", true)]);
        let h = summarize(&urls(), &[member(0, old), member(1, new)]);
        assert_eq!(h.verdict.status, Status::True);
        assert_eq!(counts(&h), [(2, 2), (1, 1)]);
    }

    #[test]
    fn urls_compare_as_the_proxy_reports_them() {
        assert_eq!(normalize("https://a.example/"), "https://a.example");
        assert_eq!(normalize("HTTPS://A.Example:443/"), "https://a.example");
        assert_eq!(normalize("http://h:80"), "http://h");
        assert_eq!(normalize("http://h:8080/Path/"), "http://h:8080/Path");
        assert_eq!(
            normalize(" http://127.0.0.1:3000 "),
            "http://127.0.0.1:3000"
        );
    }

    #[test]
    fn parses_the_proxys_status_document() {
        // The shape modfleet-proxy serves (modfleet_contract::status); tests/reads_proxy_status.rs
        // reads a real proxy's, and the e2e test upstream_health.rs a fleet's.
        let body = br#"{"ready":true,"upstreamsHealthy":1,"upstreams":[
            {"url":"https://a.example","priority":0,"weight":1,"hedge_delay_ms":1000,
             "healthy":true,"breaker":"closed","probe":"ok","latency_ms":{"p50":1.0,"p95":2.0,"p99":3.0},
             "error_rate":0.0,"requests":3,"consecutive_failures":0,"last_error":null},
            {"url":"https://b.example/","healthy":false,"breaker":"open",
             "last_error":{"message":"connection refused","at_unix":1700000000}}]}"#;
        assert_eq!(
            parse(body),
            MemberReport::Reachable(Answer {
                upstreams: vec![
                    UpstreamReport {
                        url: "https://a.example".into(),
                        healthy: true,
                        last_error: None
                    },
                    UpstreamReport {
                        url: "https://b.example".into(),
                        healthy: false,
                        last_error: Some("connection refused".into())
                    },
                ],
                ..Answer::default()
            })
        );
        // With a store: its section (the shape of contract::status's own test).
        let body = br#"{"ready":true,"upstreamsHealthy":0,"upstreams":[],
            "store":{"url":"s3://modules/fleet","healthy":false,"breaker":"open",
             "consecutiveFailures":5,"reads":{"hit":1,"miss":2,"invalid":3,"error":4},
             "writes":{"ok":5,"error":6,"dropped":7},"queueDepth":8,
             "lastError":{"message":"connection refused","at_unix":1700000000}}}"#;
        assert_eq!(
            parse(body),
            MemberReport::Reachable(Answer {
                store: Some(StoreReport {
                    url: "s3://modules/fleet".into(),
                    healthy: false,
                    last_error: Some("connection refused".into())
                }),
                ..Answer::default()
            })
        );
        // With peer fill: its section (the proxy's `peers`, camelCase as contract::status).
        let body = br#"{"ready":true,"upstreamsHealthy":0,"upstreams":[],
            "peers":{"advertise":"10.0.0.7:7070","members":["10.0.0.7:7070","10.0.0.8:7070"],
             "refreshedUnix":1700000000,"asked":{"hit":1,"not_found":2,"fallback":3},"served":4,
             "lastError":{"message":"endpointslices is forbidden","at_unix":1700000001}}}"#;
        assert_eq!(
            parse(body),
            MemberReport::Reachable(Answer {
                peers: Some(PeersReport {
                    members: 2,
                    last_error: Some("endpointslices is forbidden".into())
                }),
                ..Answer::default()
            })
        );
        assert!(matches!(parse(b"<html>"), MemberReport::Unreachable(_)));
    }

    #[tokio::test]
    async fn members_outside_the_allowed_networks_are_never_contacted() {
        let p = Poller::new(
            Duration::from_secs(30),
            Duration::from_secs(2),
            vec!["127.0.0.0/8".parse().unwrap()],
        );
        let r = p.ask("10.0.0.3".parse().unwrap(), None).await;
        assert_eq!(
            r,
            MemberReport::Unreachable("pod IP 10.0.0.3 is outside --health-poll-networks".into())
        );
    }

    /// Without `spec.access` the request carries no credentials; with it, the operator's token
    /// as a header no layer prints.
    #[test]
    fn the_token_goes_only_where_access_is_on() {
        let plain = status_request("http://127.0.0.1:9090/status", None).unwrap();
        assert!(plain.headers().is_empty(), "{:?}", plain.headers());
        let token = AdminToken::generate();
        let authed = status_request("http://127.0.0.1:9090/status", Some(&token)).unwrap();
        let value = &authed.headers()[http::header::AUTHORIZATION];
        assert_eq!(
            value.to_str().unwrap(),
            format!("Bearer {}", token.as_str())
        );
        assert!(value.is_sensitive());
        assert_eq!(format!("{token:?}"), "AdminToken(..)");
    }

    /// A real HTTP exchange with a local server that speaks like the proxy's admin port.
    #[tokio::test]
    async fn asks_a_member_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let body = r#"{"upstreams":[{"url":"http://u.example","healthy":true}]}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(response.as_bytes()).await.unwrap();
            request
        });
        let mut p = Poller::new(Duration::from_secs(30), Duration::from_secs(2), vec![]);
        p.port = port;
        let token = AdminToken::generate();
        let r = p.ask(ip, Some(&token)).await;
        assert_eq!(
            r,
            MemberReport::Reachable(Answer {
                upstreams: vec![UpstreamReport {
                    url: "http://u.example".into(),
                    healthy: true,
                    last_error: None
                }],
                ..Answer::default()
            })
        );
        let request = server.await.unwrap();
        assert!(request.starts_with("GET /status HTTP/1.1"), "{request}");
        assert!(
            request.contains(&format!("authorization: Bearer {}\r\n", token.as_str())),
            "{request}"
        );
        // Nothing listens any more: refused, said plainly.
        match p.ask(ip, None).await {
            MemberReport::Unreachable(why) => {
                assert!(why.contains("Connection refused"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }
}
