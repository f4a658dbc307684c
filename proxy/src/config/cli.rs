//! The command line: `modfleet-proxy [FLAGS]` serves, `modfleet-proxy verify [FLAGS]` checks a
//! cache. Every server flag is also an environment variable `MODFLEET_<FLAG>` (clap reads both)
//! and a key of the config file; [`super::Config::merge`] puts them together.

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use modfleet_telemetry::LogFormat;

use modfleet_contract::values::parse_duration;

use super::{ByteSize, HedgeDelay, OnOff, SumdbConfig, defaults};

#[derive(Debug, Parser)]
#[command(
    name = "modfleet-proxy",
    version,
    about = "A Go module proxy (GOPROXY protocol) with a verified, crash-safe disk cache.",
    long_about = "A Go module proxy (GOPROXY protocol) with a verified, crash-safe disk cache.\n\n\
        Serves list, .info, .mod, .zip and @latest for `go` commands pointed at it with \
        GOPROXY=http://HOST:PORT (https:// with --tls-cert and --tls-key), and proxies the checksum database so GOSUMDB verification \
        works through it. Artifacts of canonical versions are fetched once, verified and kept; \
        lists and @latest are kept for --list-ttl.\n\n\
        Every flag can also be set with an environment variable MODFLEET_<FLAG> (for example \
        MODFLEET_CACHE_DIR) or in the --config YAML file. Flags win over environment variables, \
        which win over the file.\n\n\
        Access control (client tokens, which identities may fetch which modules, who may use \
        the admin port) is set in the --config file's `access`; `modfleet-proxy hash-token` \
        makes the tokens and their tokens-file lines.",
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
    Verify(Box<VerifyArgs>),
    /// Make a client token and its tokens-file line (access.tokensFiles).
    #[command(long_about = "Make a client token and the line of a tokens file \
        (access.tokensFiles) that holds its hash.\n\n\
        By default a new random token (256 bits) is generated and printed once, with the \
        line to add to a tokens file; store the token now: the file holds only its SHA-256 \
        hash, from which it cannot be recovered. With --stdin the token is read from standard \
        input instead (its first line; 32 to 512 characters, visible ASCII without spaces) \
        and only the line is printed.\n\n\
        Clients present the token as `Authorization: Bearer TOKEN`, or as HTTP Basic with the \
        identity as user and the token as password (a .netrc entry: machine HOST login \
        IDENTITY password TOKEN).")]
    HashToken(HashTokenArgs),
}

/// `hash-token`: what the line says about its token.
#[derive(Debug, Args)]
pub struct HashTokenArgs {
    /// The identity the token authenticates (letters, digits, '.', '_', '@', '-'); without
    /// it, only the hash is printed.
    #[arg(long, value_name = "NAME")]
    pub identity: Option<String>,
    /// Groups of the identity, comma-separated (rules and admin name them as group:NAME).
    #[arg(long, value_name = "GROUP,...", value_delimiter = ',')]
    pub groups: Vec<String>,
    /// Hash the token given on standard input instead of generating one.
    #[arg(long)]
    pub stdin: bool,
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

    #[arg(
        long,
        env = "MODFLEET_LISTEN",
        value_name = "ADDR",
        help = with_default(
            "Address of the GOPROXY endpoint",
            defaults::LISTEN
        )
    )]
    pub listen: Option<SocketAddr>,

    /// Serve the GOPROXY port over HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate
    /// chain, the server's certificate first; needs --tls-key. Both files are read again when
    /// they change (a cert-manager renewal or a Secret update needs no restart); a new pair
    /// that is invalid is refused and the previous one kept. The admin port stays plain HTTP.
    /// Config file: `tls: {certFile, keyFile}` [default: plain HTTP]
    #[arg(long, env = "MODFLEET_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (unencrypted PKCS#8, PKCS#1 RSA or SEC1 EC); needs
    /// --tls-cert
    #[arg(long, env = "MODFLEET_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    #[arg(
        long,
        env = "MODFLEET_ADMIN_LISTEN",
        value_name = "ADDR",
        help = with_default(
            "Address of the admin endpoint: /healthz, /readyz, /metrics, and /status and \
             /admin/* (for access.admin identities when the config file sets `access`; plain \
             HTTP, also with --tls-cert)",
            defaults::ADMIN_LISTEN
        )
    )]
    pub admin_listen: Option<SocketAddr>,

    #[arg(
        long,
        env = "MODFLEET_CACHE_DIR",
        value_name = "DIR",
        help = with_default(
            "Directory of the disk cache; laid out like GOMODCACHE's cache/download",
            defaults::CACHE_DIR
        )
    )]
    pub cache_dir: Option<PathBuf>,

    /// Upper bound of the cache size (bytes, or with a suffix: 500Mi, 20Gi, 10G). Past it the
    /// least recently used artifacts are evicted [default: no bound].
    #[arg(long, env = "MODFLEET_CACHE_MAX_BYTES", value_name = "SIZE")]
    pub cache_max_bytes: Option<ByteSize>,

    /// Upstream proxy URL, repeatable, in priority order (the go command's comma semantics:
    /// 404/410 moves on to the next). Default: the http(s) entries of $GOPROXY, then of
    /// `go env GOPROXY`. The environment variable takes a comma-separated list. Credentials
    /// for an upstream are files named in the --config file (`upstreams[].credentials`).
    #[arg(
        long = "upstream",
        env = "MODFLEET_UPSTREAM",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub upstreams: Vec<String>,

    #[arg(
        long = "sumdb",
        env = "MODFLEET_SUMDB",
        value_name = "NAME[=URL]|KEY [URL]",
        value_delimiter = ',',
        help = with_default(
            "Checksum database to proxy, as NAME or NAME=URL, or in GOSUMDB form: `KEY [URL]` or \
             `NAME URL`, where KEY is its verifier key NAME+HASH+BASE64KEY. Repeatable. The URL \
             is used after the upstreams' own /sumdb/NAME/ endpoints; it defaults to \
             https://NAME. The key of sum.golang.org is known (the go command's)",
            defaults::SUMDB
        )
    )]
    pub sumdbs: Vec<SumdbConfig>,

    #[arg(
        long,
        env = "MODFLEET_VERIFY_SUMDB",
        value_name = "on|off",
        help = with_default(
            "Check the h1: hashes of every .mod and .zip fetched from upstream against the first \
             --sumdb (verifying its signed tree and proofs as the go command does) before it is \
             cached or served, except for modules matching --no-sum. Needs that database's \
             verifier key",
            defaults::VERIFY_SUMDB
        )
    )]
    pub verify_sumdb: Option<OnOff>,

    #[arg(
        long,
        env = "MODFLEET_PREFETCH",
        value_name = "on|off",
        help = with_default(
            "When a .mod comes from an upstream, fetch the .mod files its require lines name in \
             the background (at most 64 per .mod, 4 at once, 256 queued; never for --exclude, \
             --no-sum or privateModules modules), so they are cached when the go command asks",
            defaults::PREFETCH
        )
    )]
    pub prefetch: Option<OnOff>,

    #[arg(
        long,
        env = "MODFLEET_PREFETCH_ZIPS",
        value_name = "on|off",
        help = with_default(
            "With --prefetch, fetch the required modules' .info files and zips in the \
             background too, what `go mod download` asks for next (the same bounds; up to 4 \
             prefetches at once)",
            defaults::PREFETCH_ZIPS
        )
    )]
    pub prefetch_zips: Option<OnOff>,

    #[arg(
        long,
        env = "MODFLEET_LIST_TTL",
        value_name = "DURATION",
        value_parser = parse_duration,
        help = with_default(
            "How long list and @latest answers (and sumdb latest/lookups) are served from the \
             cache before they are asked upstream again",
            defaults::LIST_TTL
        )
    )]
    pub list_ttl: Option<Duration>,

    #[arg(
        long,
        env = "MODFLEET_LOG_FORMAT",
        value_enum,
        help = with_default(
            "Log format",
            defaults::LOG_FORMAT
        )
    )]
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

    /// A private module path served from its Git repository, `PATH=REPOSITORY_URL`
    /// (https:// or ssh://), anonymously: the short form of a `privateModules` entry whose
    /// pattern and root are PATH. Repeatable; replaces the file's `privateModules`. Credentials,
    /// http:// and go-get discovery need the file.
    #[arg(
        long = "private-module",
        env = "MODFLEET_PRIVATE_MODULE",
        value_name = "PATH=URL",
        value_delimiter = ','
    )]
    pub private_modules: Vec<String>,

    #[arg(
        long,
        env = "MODFLEET_HEDGE_DELAY",
        value_name = "auto|off|DURATION",
        help = with_default(
            "When an upstream has not answered within this delay, the same request also goes to \
             the next healthy upstream and the first verified answer wins: `auto` (that \
             upstream's observed p95, at most 1s, and with --outlier-latency at most 3x the next \
             upstream's p95 or 100ms), `off`, or a duration",
            defaults::HEDGE_DELAY
        )
    )]
    pub hedge_delay: Option<HedgeDelay>,

    #[arg(
        long,
        env = "MODFLEET_OUTLIER_LATENCY",
        value_name = "on|off",
        help = with_default(
            "Latency-outlier demotion: an upstream whose median time to headers is at least 3x \
             the p95 of a healthy alternative (and at least 100ms) is asked after it for 30s \
             (doubling on repeats, at most 5m), then given a trial request; `auto` hedge delays \
             are then at most that threshold of the next upstream. `off`: priority order and \
             hedging by the upstream's own p95 only",
            defaults::OUTLIER_LATENCY
        )
    )]
    pub outlier_latency: Option<OnOff>,

    #[arg(
        long,
        env = "MODFLEET_NEGATIVE_TTL",
        value_name = "DURATION",
        value_parser = parse_duration,
        help = with_default(
            "How long a \"not found\" from every upstream is remembered, so a storm of lookups \
             for a missing module does not reach the upstreams; 0s turns it off",
            defaults::NEGATIVE_TTL
        )
    )]
    pub negative_ttl: Option<Duration>,

    #[arg(
        long,
        env = "MODFLEET_STALE_WHILE_REVALIDATE",
        value_name = "DURATION",
        value_parser = parse_duration,
        help = with_default(
            "For this long past --list-ttl, a cached list or @latest is served at once while it \
             is refreshed in the background",
            defaults::STALE_WHILE_REVALIDATE
        )
    )]
    pub stale_while_revalidate: Option<Duration>,

    #[arg(
        long,
        env = "MODFLEET_REQUEST_DEADLINE",
        value_name = "DURATION",
        value_parser = parse_duration,
        help = with_default(
            "Total time one client request may spend on upstream attempts and retries",
            defaults::REQUEST_DEADLINE
        )
    )]
    pub request_deadline: Option<Duration>,

    #[arg(
        long,
        env = "MODFLEET_HEADER_READ_TIMEOUT",
        value_name = "DURATION",
        value_parser = parse_duration,
        help = with_default(
            "Longest time a client may take to send a request's headers, counted from the accept \
             for a connection's first request and from the first byte for later ones (like Go's \
             ReadHeaderTimeout). Slower connections (slowloris) are closed",
            defaults::HEADER_READ_TIMEOUT
        )
    )]
    pub header_read_timeout: Option<Duration>,

    #[arg(
        long,
        env = "MODFLEET_IDLE_TIMEOUT",
        value_name = "DURATION",
        value_parser = parse_duration,
        help = with_default(
            "A kept-alive connection with no request in progress for this long is closed",
            defaults::IDLE_TIMEOUT
        )
    )]
    pub idle_timeout: Option<Duration>,

    #[arg(
        long,
        env = "MODFLEET_SEND_TIMEOUT",
        value_name = "DURATION",
        value_parser = parse_duration,
        help = with_default(
            "A connection whose client takes no response bytes for this long (it stopped \
             reading) is closed",
            defaults::SEND_TIMEOUT
        )
    )]
    pub send_timeout: Option<Duration>,

    #[arg(
        long,
        env = "MODFLEET_MAX_CONNECTIONS",
        value_name = "N",
        help = with_default(
            "Most open client connections on the GOPROXY port. At the limit a new connection \
             closes the connection idle the longest (of the address holding the most); when none \
             is idle it is answered 503. Lowered, with a warning, to what the open-file limit \
             allows (two descriptors per connection)",
            defaults::MAX_CONNECTIONS
        )
    )]
    pub max_connections: Option<usize>,

    /// Most open connections from one client address (IPv6: one /64) on the GOPROXY port. Past
    /// it, that address's own idle connections make room, else its new connections get 503.
    /// Set it above the client count when many clients share one address (a NAT, a node's
    /// SNAT) [default: a quarter of --max-connections].
    #[arg(long, env = "MODFLEET_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// With `peerFill` in the --config file: HOST:PORT at which the fleet's other members reach
    /// this member's peer port (how it finds itself in the membership). Per member, so a
    /// flag or environment variable (a fleet sets MODFLEET_PEER_ADVERTISE=$(POD_IP):7070).
    #[arg(long, env = "MODFLEET_PEER_ADVERTISE", value_name = "HOST:PORT")]
    pub peer_advertise: Option<String>,
}

/// A flag's help with its default, which comes from [`defaults`] so that it is written once.
fn with_default(about: &str, default: impl Display) -> String {
    format!("{about} [default: {default}]")
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_sumdb_flag_parses_and_is_documented() {
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
    fn help_shows_the_named_defaults() {
        let help = Cli::command().render_long_help().to_string();
        for want in [
            "[default: 0.0.0.0:8080]",
            "[default: 60s]",
            "[default: 5m]",
            "[default: auto]",
            "[default: on]",
            "[default: text]",
            "[default: 4096]",
        ] {
            assert!(help.contains(want), "{want} missing from:\n{help}");
        }
    }

    /// The README's configuration table says what the flags say: for each flag, its
    /// environment variable, a YAML key the file schema knows, and the default of its help.
    #[test]
    fn the_readme_table_matches_the_flags() {
        let readme = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
        )
        .expect("README.md at the workspace root");
        let command = Cli::command();
        let mut checked = 0;
        for arg in command.get_arguments() {
            let Some(flag) = arg.get_long() else { continue };
            if matches!(flag, "help" | "version") {
                continue;
            }
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `--{flag}")))
                .unwrap_or_else(|| panic!("no row for --{flag} in the README's table"));
            let cells: Vec<String> = row
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().replace('`', ""))
                .collect();
            assert_eq!(cells.len(), 4, "{row}");
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            assert!(
                cells[1].starts_with(env),
                "--{flag}: README says {}",
                cells[1]
            );
            if cells[2] != "—" {
                let yaml = format!("{}: null\n", cells[2]);
                assert!(
                    serde_yaml_ng::from_str::<super::super::FileConfig>(&yaml).is_ok(),
                    "--{flag}: the README's YAML key {} is not in the file schema",
                    cells[2]
                );
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if let Some((_, rest)) = help.split_once("[default: ") {
                let default = rest.split_once(']').map_or(rest, |(d, _)| d);
                let default = default.replace('`', "");
                assert!(
                    cells[3].starts_with(&default),
                    "--{flag}: help says [default: {default}], the README {}",
                    cells[3]
                );
            }
            checked += 1;
        }
        assert!(checked > 20, "only {checked} flags checked");
    }
}
