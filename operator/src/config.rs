//! Command-line flags; each can also be set as `MODFLEET_OPERATOR_<FLAG>`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "modfleet-operator",
    version,
    about = "Runs fleets of modfleet Go module proxies from GoModuleProxy objects"
)]
pub struct Config {
    /// Proxy image for GoModuleProxies that do not set spec.image.
    #[arg(
        long,
        env = "MODFLEET_OPERATOR_PROXY_IMAGE",
        default_value = "modfleet/modfleet-proxy:latest"
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
    }
}
