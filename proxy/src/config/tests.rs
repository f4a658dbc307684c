//! Tests of the merge: precedence, defaults and the errors of each setting.

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
        r.breaker.open_for.get(),
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

    let file: FileConfig =
        serde_yaml_ng::from_str("sumdbs:\n  - name: sum.corp.example\n    url: http://db.corp\n")
            .unwrap();
    let err = Config::merge(&args(&["https://up.example"]), file, no_env).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("sum.corp.example") && msg.contains("--verify-sumdb off"),
        "{msg}"
    );

    let file: FileConfig =
        serde_yaml_ng::from_str("verifySumdb: off\nsumdbs:\n  - name: sum.corp.example\n").unwrap();
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

/// The README's example file is one the proxy accepts, and its values are the defaults where it
/// says nothing else.
#[test]
fn the_readme_example_file_is_valid() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md at the workspace root");
    let section = readme
        .split_once("### Configuration file")
        .expect("the README's \"Configuration file\" section")
        .1;
    let yaml = section
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a yaml block in that section")
        .0;
    let file: FileConfig = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let c = Config::merge(&args(&[]), file, no_env).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(c.upstreams.len(), 2);
    assert_eq!(c.upstreams[1].timeout, defaults::UPSTREAM_TIMEOUT.get());
    assert_eq!(c.resilience.health_check, HealthCheckConfig::default());
    assert_eq!(c.resilience.breaker, BreakerConfig::default());
    assert_eq!(c.resilience.retry, RetryConfig::default());
    let store = c.object_store.expect("the example's objectStore");
    assert_eq!(store.url, "s3://go-modules/fleet-a");
    assert_eq!(store.timeout, defaults::OBJECT_STORE_TIMEOUT);
}

/// A private pattern is implicitly noSum (so also never prefetched from upstreams).
#[test]
fn private_patterns_are_no_sum() {
    let file: FileConfig = serde_yaml_ng::from_str(
        "privateModules:\n  - pattern: git.corp.example/*\nnoSum: [other.example/*]\n",
    )
    .unwrap();
    let c = Config::merge(&args(&["https://up.example"]), file, no_env).unwrap();
    assert!(c.is_no_sum("git.corp.example/a/b"));
    assert!(c.is_no_sum("other.example/x"));
    assert!(c.private_module("git.corp.example/a/b").is_some());
    assert!(c.private_module("other.example/x").is_none());
    assert!(!c.is_excluded("git.corp.example/a/b"));
}

#[test]
fn prefetch_is_on_by_default_and_the_flag_wins_over_the_file() {
    let up = || args(&["https://up.example"]);
    assert!(
        Config::merge(&up(), FileConfig::default(), no_env)
            .unwrap()
            .prefetch
    );
    let file: FileConfig = serde_yaml_ng::from_str("prefetch: off\n").unwrap();
    assert_eq!(file.prefetch, Some(OnOff::Off));
    assert!(!Config::merge(&up(), file.clone(), no_env).unwrap().prefetch);
    let mut a = up();
    a.prefetch = Some(OnOff::On);
    assert!(Config::merge(&a, file, no_env).unwrap().prefetch);
    assert!(serde_yaml_ng::from_str::<FileConfig>("prefetch: sometimes\n").is_err());
    let c = Config::merge(&up(), FileConfig::default(), no_env).unwrap();
    assert!(!c.prefetch_zips, "zips are off by default");
    let file: FileConfig = serde_yaml_ng::from_str("prefetchZips: on\n").unwrap();
    assert!(Config::merge(&up(), file, no_env).unwrap().prefetch_zips);
}

fn upstream_file(yaml: &str) -> Result<Config, ConfigError> {
    let file: FileConfig = serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("{e}"));
    Config::merge(&args(&[]), file, no_env)
}

#[test]
fn upstream_credentials_take_one_kind_from_files() {
    use crate::credentials::{CredentialSource, Username};
    let c = upstream_file(
        "upstreams:
  - url: https://basic.example
    credentials: {username: ci, passwordFile: /s/password}
  - url: https://bearer.example
    credentials: {bearerTokenFile: /s/token}
  - url: http://athens.internal:3000
    insecure: true
    credentials: {netrcFile: /s/netrc}
  - url: https://anonymous.example
",
    )
    .unwrap();
    let source = |i: usize| {
        c.upstreams[i]
            .credentials
            .as_ref()
            .map(|c| c.source().clone())
    };
    assert_eq!(
        source(0),
        Some(CredentialSource::Basic {
            username: Username::Name("ci".into()),
            password_file: "/s/password".into()
        })
    );
    assert_eq!(
        source(1),
        Some(CredentialSource::Bearer {
            token_file: "/s/token".into()
        })
    );
    assert_eq!(
        source(2),
        Some(CredentialSource::Netrc {
            file: "/s/netrc".into()
        })
    );
    assert_eq!(source(3), None);
}

#[test]
fn upstream_credential_errors_name_the_upstream_and_the_fix() {
    let error = |yaml: &str| upstream_file(yaml).unwrap_err().to_string();
    let e = error(
        "upstreams:\n  - url: http://plain.example\n    credentials: {bearerTokenFile: /t}\n",
    );
    assert!(
        e.contains("http://plain.example") && e.contains("insecure: true"),
        "{e}"
    );
    let e = error(
        "upstreams:\n  - url: https://u.example\n    credentials: {bearerTokenFile: /t, netrcFile: /n}\n",
    );
    assert!(
        e.contains("https://u.example") && e.contains("not several"),
        "{e}"
    );
    let e = error("upstreams:\n  - url: https://u.example\n    credentials: {username: ci}\n");
    assert!(e.contains("passwordFile"), "{e}");
    let e = error("upstreams:\n  - url: https://u.example\n    credentials: {passwordFile: /p}\n");
    assert!(e.contains("username (or usernameFile)"), "{e}");
    let e = error(
        "upstreams:\n  - url: https://u.example\n    credentials: {username: 'a:b', passwordFile: /p}\n",
    );
    assert!(e.contains("without ':'"), "{e}");
    let e = error("upstreams:\n  - url: https://u.example\n    credentials: {}\n");
    assert!(e.contains("bearerTokenFile"), "{e}");
    let e = serde_yaml_ng::from_str::<FileConfig>(
        "upstreams:\n  - url: https://u.example\n    credentials: {tokenFile: /t}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown field `tokenFile`"), "{e}");
}

/// Userinfo in an upstream URL would be shown wherever the URL is (logs, metrics, /status):
/// refused, and the error does not repeat it.
#[test]
fn passwords_in_upstream_urls_are_refused_unshown() {
    let err = Config::merge(
        &args(&["https://ci:hunter2@goproxy.corp.example"]),
        FileConfig::default(),
        no_env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("https://goproxy.corp.example") && err.contains("credentials"),
        "{err}"
    );
    assert!(!err.contains("hunter2") && !err.contains("ci:"), "{err}");
    let err = Config::merge(
        &args(&["ftp://ci:hunter2@x.example"]),
        FileConfig::default(),
        no_env,
    )
    .unwrap_err()
    .to_string();
    assert!(!err.contains("hunter2"), "{err}");
}

/// A credentials file that cannot be read stops the start, naming the upstream and the file.
#[test]
fn load_reads_the_credentials_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("password");
    let config = dir.path().join("modfleet.yaml");
    std::fs::write(
        &config,
        format!(
            "upstreams:\n  - url: https://u.example\n    credentials: {{username: ci, passwordFile: {}}}\n",
            missing.display()
        ),
    )
    .unwrap();
    let a = ServeArgs {
        config: Some(config),
        ..ServeArgs::default()
    };
    let e = Config::load(&a, no_env).unwrap_err().to_string();
    assert!(
        e.contains("upstream https://u.example/")
            && e.contains(&missing.display().to_string())
            && e.contains("passwordFile"),
        "{e}"
    );
    std::fs::write(&missing, "s3cret\n").unwrap();
    let c = Config::load(&a, no_env).unwrap();
    assert!(c.upstreams[0].credentials.is_some());
}

#[test]
fn tls_takes_both_files_from_the_flags_or_the_file_and_never_one() {
    let file = || -> FileConfig {
        serde_yaml_ng::from_str("tls: {certFile: /file/tls.crt, keyFile: /file/tls.key}\n").unwrap()
    };
    let c = Config::merge(&args(&["http://a.example"]), file(), no_env).unwrap();
    let tls = c.tls.unwrap();
    assert_eq!(tls.cert_file, PathBuf::from("/file/tls.crt"));
    assert_eq!(tls.key_file, PathBuf::from("/file/tls.key"));

    let mut a = args(&["http://a.example"]);
    a.tls_cert = Some("/flag/tls.crt".into());
    a.tls_key = Some("/flag/tls.key".into());
    let tls = Config::merge(&a, file(), no_env).unwrap().tls.unwrap();
    assert_eq!(tls.cert_file, PathBuf::from("/flag/tls.crt"));
    assert_eq!(tls.key_file, PathBuf::from("/flag/tls.key"));

    a.tls_key = None;
    let e = Config::merge(&a, file(), no_env).unwrap_err().to_string();
    assert!(e.contains("--tls-cert and --tls-key go together"), "{e}");
    let mut a = args(&["http://a.example"]);
    a.tls_key = Some("/flag/tls.key".into());
    assert!(matches!(
        Config::merge(&a, FileConfig::default(), no_env),
        Err(ConfigError::TlsPair)
    ));

    let plain = Config::merge(&args(&["http://a.example"]), FileConfig::default(), no_env).unwrap();
    assert!(plain.tls.is_none(), "plain HTTP by default");
}

#[test]
fn a_tls_pair_that_cannot_be_served_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(&["http://a.example"]);
    a.tls_cert = Some(dir.path().join("missing.crt"));
    a.tls_key = Some(dir.path().join("missing.key"));
    let e = Config::load(&a, no_env).unwrap_err().to_string();
    assert!(e.contains("missing.crt") && e.contains("--tls-cert"), "{e}");
}

/// `access`: rules validated by `merge` (errors name the rule), tokens files read by `load`.
#[test]
fn access_rules_are_checked_and_tokens_read_at_load() {
    let merge = |yaml: &str| {
        let file: FileConfig = serde_yaml_ng::from_str(yaml).unwrap();
        Config::merge(&args(&["https://up.example"]), file, no_env)
    };
    let e = merge(
        "access: {rules: [{modules: ['*'], allow: [anonymous]}, {modules: ['/x'], allow: []}]}",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("invalid access.rules[1].modules: "), "{e}");
    let c =
        merge("access: {rules: [{modules: ['corp.example/*', '*'], allow: [group:ci]}]}").unwrap();
    let access = c.access.expect("access set");
    assert_eq!(access.rules[0].modules.len(), 2);
    assert!(merge("{}").unwrap().access.is_none());

    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "ci sha256:00\n").unwrap();
    let cfg = dir.path().join("modfleet.yaml");
    std::fs::write(
        &cfg,
        format!(
            "upstreams: [{{url: 'https://up.example'}}]\naccess: {{tokensFiles: [{}]}}\n",
            tokens.display()
        ),
    )
    .unwrap();
    let mut a = args(&[]);
    a.config = Some(cfg);
    let e = Config::load(&a, no_env).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("access.tokensFiles {}: line 1:", tokens.display())),
        "{e}"
    );
}
