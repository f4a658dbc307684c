//! Command-line flags; each can also be set as `MODFLEET_OPERATOR_<FLAG>`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
pub use modfleet_telemetry::LogFormat;

use crate::cidr::Cidr;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "modfleet-operator",
    version,
    about = "Runs fleets of modfleet Go module proxies from GoModuleProxy objects"
)]
pub struct Config {
    /// Proxy image for GoModuleProxies that do not set spec.image. Default: the one the chart
    /// and `hack/images.sh` name, tagged with this version (the chart's appVersion).
    #[arg(
        long,
        env = "MODFLEET_OPERATOR_PROXY_IMAGE",
        default_value = concat!("modfleet/modfleet-proxy:", env!("CARGO_PKG_VERSION"))
    )]
    pub proxy_image: String,

    /// Namespaces to watch, comma-separated. Empty: all namespaces.
    #[arg(
        long,
        env = "MODFLEET_OPERATOR_WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub watch_namespaces: Vec<String>,

    /// Reconcile only while holding the Lease, so several replicas can run.
    #[arg(
        long,
        env = "MODFLEET_OPERATOR_LEADER_ELECTION",
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub leader_election: bool,

    /// Namespace of the leader election Lease.
    #[arg(
        long,
        env = "MODFLEET_OPERATOR_LEADER_ELECTION_NAMESPACE",
        default_value = "default"
    )]
    pub leader_election_namespace: String,

    /// Name of the leader election Lease.
    #[arg(
        long,
        env = "MODFLEET_OPERATOR_LEADER_ELECTION_NAME",
        default_value = "modfleet-operator"
    )]
    pub leader_election_name: String,

    /// This replica's identity in the Lease. Default: POD_NAME, else HOSTNAME-PID.
    #[arg(long, env = "MODFLEET_OPERATOR_LEADER_ELECTION_ID")]
    pub leader_election_id: Option<String>,

    /// How long a Lease is valid without renewal.
    #[arg(long, env = "MODFLEET_OPERATOR_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "MODFLEET_OPERATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_listen: SocketAddr,

    /// Log format.
    #[arg(long, env = "MODFLEET_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// How often each fleet's Ready members are asked for their upstreams' health (GET
    /// /status on the admin port), for status.upstreams and the UpstreamsHealthy condition.
    /// 0s: never (no such condition).
    #[arg(long, env = "MODFLEET_OPERATOR_HEALTH_POLL_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub health_poll_interval: Duration,

    /// How long one member may take to answer /status before it counts as not reporting.
    #[arg(long, env = "MODFLEET_OPERATOR_HEALTH_POLL_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub health_poll_timeout: Duration,

    /// Pod IP networks the operator may connect to for /status, comma-separated CIDRs (e.g.
    /// 10.0.0.0/8). Members elsewhere count as not reporting. Default: any.
    #[arg(
        long,
        env = "MODFLEET_OPERATOR_HEALTH_POLL_NETWORKS",
        value_delimiter = ','
    )]
    pub health_poll_networks: Vec<Cidr>,

    /// Namespace the operator's pods run in (the chart sets it from the downward API). Fleet
    /// NetworkPolicies admit the operator to the members' admin port from this namespace
    /// only; unset: from any namespace.
    #[arg(long, env = "MODFLEET_OPERATOR_NAMESPACE")]
    pub operator_namespace: Option<String>,

    #[command(flatten)]
    pub webhook: WebhookConfig,
}

/// The injection webhook (`spec.injection`): the mutating admission webhook the API server
/// calls for each new Pod, served over HTTPS on its own port by every replica.
#[derive(clap::Args, Debug, Clone)]
pub struct WebhookConfig {
    /// Address of the injection webhook (HTTPS, path /mutate-pods), e.g. 0.0.0.0:9443.
    /// Unset: no webhook, and no fleet's spec.injection changes any Pod.
    #[arg(long, env = "MODFLEET_OPERATOR_WEBHOOK_LISTEN")]
    pub webhook_listen: Option<SocketAddr>,

    /// Who makes the webhook's serving certificate. `operator`: the operator keeps its own CA
    /// and certificate in the Secret --webhook-secret-name (in --operator-namespace), renews
    /// them well before they expire and keeps the caBundle of --webhook-configuration-name in
    /// sync. `files`: read tls.crt and tls.key from --webhook-cert-dir (e.g. a cert-manager
    /// Certificate's Secret, mounted), re-read when they change.
    #[arg(long, env = "MODFLEET_OPERATOR_WEBHOOK_CERTS", value_enum, default_value_t = WebhookCerts::Operator)]
    pub webhook_certs: WebhookCerts,

    /// Directory holding tls.crt and tls.key, with --webhook-certs=files.
    #[arg(long, env = "MODFLEET_OPERATOR_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<std::path::PathBuf>,

    /// Secret (in --operator-namespace) holding the operator-made CA and serving certificate,
    /// with --webhook-certs=operator. Every replica serves what it holds.
    #[arg(
        long,
        env = "MODFLEET_OPERATOR_WEBHOOK_SECRET_NAME",
        default_value = "modfleet-webhook-tls"
    )]
    pub webhook_secret_name: String,

    /// MutatingWebhookConfiguration whose webhooks' caBundle the operator keeps equal to its
    /// CA, with --webhook-certs=operator.
    #[arg(
        long,
        env = "MODFLEET_OPERATOR_WEBHOOK_CONFIGURATION_NAME",
        default_value = "modfleet-injection"
    )]
    pub webhook_configuration_name: String,

    /// Names the API server reaches the webhook by, comma-separated: DNS names (the webhook
    /// Service's `NAME.NAMESPACE.svc`) and IP addresses. They become the serving certificate's
    /// subject alternative names, with --webhook-certs=operator.
    #[arg(long, env = "MODFLEET_OPERATOR_WEBHOOK_HOSTS", value_delimiter = ',')]
    pub webhook_hosts: Vec<String>,

    /// Lifetime of the serving certificate; renewed when two thirds of it have passed.
    #[arg(long, env = "MODFLEET_OPERATOR_WEBHOOK_CERT_VALIDITY", default_value = "90d", value_parser = humantime::parse_duration)]
    pub webhook_cert_validity: Duration,

    /// Lifetime of the webhook's CA; renewed when two thirds of it have passed (the old CA
    /// stays in the caBundle until the certificates it signed have expired).
    #[arg(long, env = "MODFLEET_OPERATOR_WEBHOOK_CA_VALIDITY", default_value = "1825d", value_parser = humantime::parse_duration)]
    pub webhook_ca_validity: Duration,

    /// Namespaces whose GoModuleProxies may inject into Pods of any namespace their
    /// spec.injection selects, comma-separated. A fleet elsewhere injects only into Pods of its
    /// own namespace: whoever may create a GoModuleProxy must not decide where other teams'
    /// builds fetch their code. Default: --operator-namespace.
    #[arg(
        long,
        env = "MODFLEET_OPERATOR_INJECTION_FLEET_NAMESPACES",
        value_delimiter = ','
    )]
    pub injection_fleet_namespaces: Vec<String>,
}

/// See [`WebhookConfig::webhook_certs`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookCerts {
    Operator,
    Files,
}

impl Config {
    /// Watched namespaces with empty entries dropped; empty means all.
    pub fn namespaces(&self) -> Vec<String> {
        self.watch_namespaces
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The Lease holder identity of this process.
    pub fn identity(&self) -> String {
        self.leader_election_id
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                let host = std::env::var("HOSTNAME")
                    .ok()
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "modfleet-operator".into());
                format!("{host}-{}", std::process::id())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let c = Config::try_parse_from([
            "modfleet-operator",
            "--proxy-image",
            "img:1",
            "--watch-namespaces",
            "a,b,",
            "--leader-election",
            "--metrics-listen",
            "127.0.0.1:9000",
            "--log-format",
            "text",
        ])
        .unwrap();
        assert_eq!(c.proxy_image, "img:1");
        assert_eq!(c.namespaces(), ["a", "b"]);
        assert!(c.leader_election);
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        let d = Config::try_parse_from(["modfleet-operator"]).unwrap();
        assert!(d.namespaces().is_empty());
        assert!(!d.leader_election);
        assert_eq!(d.log_format, LogFormat::Json);
        assert_eq!(d.health_poll_interval, Duration::from_secs(30));
        assert_eq!(d.health_poll_timeout, Duration::from_secs(2));
        assert!(d.health_poll_networks.is_empty());
        assert_eq!(d.operator_namespace, None);
    }

    /// Run without `--proxy-image` (the image alone, no chart), the operator names the proxy
    /// image the chart and `hack/images.sh` make: repository and tag as in the chart.
    #[test]
    fn default_proxy_image_is_the_charts() {
        let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/modfleet");
        let read = |f: &str| {
            let text = std::fs::read_to_string(chart.join(f)).unwrap();
            serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text).unwrap()
        };
        let (meta, values) = (read("Chart.yaml"), read("values.yaml"));
        let want = format!(
            "{}:{}",
            values["proxyImage"]["repository"].as_str().unwrap(),
            meta["appVersion"].as_str().unwrap()
        );
        let d = Config::try_parse_from(["modfleet-operator"]).unwrap();
        assert_eq!(d.proxy_image, want);
    }

    #[test]
    fn health_poll_flags() {
        let c = Config::try_parse_from([
            "modfleet-operator",
            "--health-poll-interval",
            "0s",
            "--health-poll-timeout",
            "500ms",
            "--health-poll-networks",
            "127.0.0.0/8,fd00::/8",
            "--operator-namespace",
            "modfleet-system",
        ])
        .unwrap();
        assert_eq!(c.health_poll_interval, Duration::ZERO);
        assert_eq!(c.health_poll_timeout, Duration::from_millis(500));
        assert_eq!(
            c.health_poll_networks,
            ["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]
        );
        assert_eq!(c.operator_namespace.as_deref(), Some("modfleet-system"));
        let err =
            Config::try_parse_from(["modfleet-operator", "--health-poll-networks", "10.0.0.1"])
                .unwrap_err()
                .to_string();
        assert!(err.contains("CIDR notation"), "{err}");
    }
}
