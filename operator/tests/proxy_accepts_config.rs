//! The ConfigMap the operator renders must be a config the real proxy accepts: the proxy
//! rejects unknown keys, so a drift between the two schemas fails here, not in a cluster.

use clap::Parser;
use modfleet_operator::crd::{GoModuleProxy, GoModuleProxySpec};
use modfleet_operator::resources::{Context, configmap};
use modfleet_proxy::config::{Cli, Config, Environment};
use serde_json::json;

fn load(spec: serde_json::Value) -> Config {
    let spec: GoModuleProxySpec = serde_json::from_value(spec).unwrap();
    let mut gmp = GoModuleProxy::new("gomod", spec);
    gmp.metadata.namespace = Some("ns".into());
    gmp.metadata.uid = Some("uid".into());
    let ctx = Context {
        proxy_image: "img".into(),
        ..Context::default()
    };
    let cm = configmap::build(&gmp, &ctx);
    let yaml = &cm.data.as_ref().unwrap()["config.yaml"];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let cli = Cli::try_parse_from(["modfleet-proxy", "--config", path.to_str().unwrap()]).unwrap();
    Config::load(&cli.serve, Environment::default)
        .unwrap_or_else(|e| panic!("the proxy rejects the rendered config: {e}\n{yaml}"))
}

#[test]
fn full_spec_renders_a_config_the_proxy_loads() {
    let c = load(json!({
        "upstreams": [
            {"url": "https://goproxy.example.com", "weight": 3, "timeout": "1m30s"},
            {"url": "http://athens.internal:3000"}
        ],
        "sumdb": {"name": "sum.golang.org", "url": "https://sum.example.com"},
        "excludePatterns": ["corp.example.com/*"],
        "noSumPatterns": ["git.internal/*"],
        "cache": {"size": "20Gi"}
    }));
    assert_eq!(c.upstreams.len(), 2);
    assert_eq!(c.upstreams[0].weight, 3);
    assert_eq!(c.upstreams[0].timeout, std::time::Duration::from_secs(90));
    assert_eq!(c.cache_max_bytes, Some(19_327_352_832));
    assert_eq!(c.listen.port(), 8080);
    assert_eq!(c.admin_listen.port(), 9090);
    assert_eq!(c.cache_dir, std::path::PathBuf::from("/var/cache/modfleet"));
    assert!(c.is_excluded("corp.example.com/x"));
    assert!(c.is_no_sum("git.internal/y"));
}

#[test]
fn minimal_spec_renders_a_config_the_proxy_loads() {
    let c = load(json!({"upstreams": [{"url": "https://goproxy.example.com"}]}));
    assert_eq!(c.upstreams.len(), 1);
}
