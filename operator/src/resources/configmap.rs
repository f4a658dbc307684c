//! ConfigMap `NAME-config`: the proxy's YAML config (the proxy's own schema, camelCase keys;
//! the proxy rejects unknown keys, so only keys it knows are rendered).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::labels::Component;
use super::{ADMIN_PORT, CACHE_DIR, CONFIG_KEY, Context, HTTP_PORT, meta, names, quantity_bytes};
use crate::crd::GoModuleProxy;

/// Share of the cache volume the proxy may fill before evicting: it must evict before the
/// filesystem is full, and filesystems keep some space for themselves.
const CACHE_FILL_RATIO: f64 = 0.9;
const DEFAULT_UPSTREAM_TIMEOUT: &str = "30s";

/// The proxy's config file (`proxy/src/config.rs`, `FileConfig`).
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfig {
    pub listen: String,
    pub admin_listen: String,
    pub cache_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_max_bytes: Option<u64>,
    pub upstreams: Vec<ProxyUpstream>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sumdbs: Vec<ProxySumdb>,
    pub list_ttl: String,
    pub log_format: String,
    pub exclude: Vec<String>,
    pub no_sum: Vec<String>,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ProxyUpstream {
    pub url: String,
    pub weight: i32,
    pub timeout: String,
}

#[derive(Serialize, Debug, PartialEq)]
pub struct ProxySumdb {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The config the proxies of this fleet run with.
pub fn proxy_config(gmp: &GoModuleProxy, ctx: &Context) -> ProxyConfig {
    let spec = &gmp.spec;
    let sumdbs = match &spec.sumdb {
        Some(s) if !s.name.is_empty() => vec![ProxySumdb {
            name: s.name.clone(),
            url: (!s.url.is_empty()).then(|| s.url.clone()),
        }],
        _ => Vec::new(),
    };
    ProxyConfig {
        listen: format!("0.0.0.0:{HTTP_PORT}"),
        admin_listen: format!("0.0.0.0:{ADMIN_PORT}"),
        cache_dir: CACHE_DIR.to_owned(),
        cache_max_bytes: quantity_bytes(&spec.cache.size)
            .map(|b| ctx.smallest_cache_bytes.map_or(b, |s| s.min(b)))
            .map(|b| (b as f64 * CACHE_FILL_RATIO) as u64),
        upstreams: spec
            .upstreams
            .iter()
            .map(|u| ProxyUpstream {
                url: u.url.clone(),
                weight: u.weight.unwrap_or(1).max(1),
                timeout: u
                    .timeout
                    .clone()
                    .unwrap_or_else(|| DEFAULT_UPSTREAM_TIMEOUT.to_owned()),
            })
            .collect(),
        sumdbs,
        list_ttl: "60s".to_owned(),
        log_format: "json".to_owned(),
        exclude: spec.exclude_patterns.clone(),
        no_sum: spec.no_sum_patterns.clone(),
    }
}

/// ConfigMap `NAME-config` with key `config.yaml`.
pub fn build(gmp: &GoModuleProxy, ctx: &Context) -> ConfigMap {
    let yaml = serde_yaml_ng::to_string(&proxy_config(gmp, ctx))
        .expect("the proxy config is plain strings and numbers");
    ConfigMap {
        metadata: meta(gmp, names::config(&gmp.name_any()), Component::Config, None),
        data: Some(BTreeMap::from([(CONFIG_KEY.to_owned(), yaml)])),
        ..ConfigMap::default()
    }
}

/// Hash of the ConfigMap's data, put on the pod template so a config change rolls the fleet.
pub fn hash(cm: &ConfigMap) -> String {
    let mut h = Sha256::new();
    for (k, v) in cm.data.iter().flatten() {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_the_proxy_schema() {
        let g = gmp(json!({
            "upstreams": [
                {"url": "https://goproxy.example.com", "weight": 2, "timeout": "10s"},
                {"url": "http://athens.internal:3000"}
            ],
            "sumdb": {"name": "sum.golang.org", "url": ""},
            "excludePatterns": ["corp.example.com/*"],
            "noSumPatterns": ["corp.example.com/*", "git.internal/*"],
            "cache": {"size": "20Gi"}
        }));
        let cm = build(&g, &ctx());
        assert_owned(&cm.metadata, "config");
        assert_eq!(cm.metadata.name.as_deref(), Some("gomod-config"));
        let yaml = &cm.data.as_ref().unwrap()["config.yaml"];
        let v: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(
            v,
            json!({
                "listen": "0.0.0.0:8080",
                "adminListen": "0.0.0.0:9090",
                "cacheDir": "/var/cache/modfleet",
                "cacheMaxBytes": 19327352832u64,
                "upstreams": [
                    {"url": "https://goproxy.example.com", "weight": 2, "timeout": "10s"},
                    {"url": "http://athens.internal:3000", "weight": 1, "timeout": "30s"}
                ],
                "sumdbs": [{"name": "sum.golang.org"}],
                "listTtl": "60s",
                "logFormat": "json",
                "exclude": ["corp.example.com/*"],
                "noSum": ["corp.example.com/*", "git.internal/*"]
            })
        );
    }

    #[test]
    fn sumdb_key_is_omitted_without_a_name() {
        let mut g = minimal();
        g.spec.sumdb = Some(crate::crd::SumDb {
            name: String::new(),
            url: "https://sum.example.com".into(),
        });
        let yaml = &build(&g, &ctx()).data.unwrap()["config.yaml"];
        assert!(!yaml.contains("sumdbs"), "{yaml}");
    }

    #[test]
    fn eviction_limit_fits_the_smallest_real_volume() {
        let mut g = minimal();
        g.spec.cache.size = "2Gi".into();
        let mut c = ctx();
        assert_eq!(proxy_config(&g, &c).cache_max_bytes, Some(1_932_735_283));
        c.smallest_cache_bytes = Some(1 << 30);
        assert_eq!(proxy_config(&g, &c).cache_max_bytes, Some(966_367_641));
        c.smallest_cache_bytes = Some(4 << 30);
        assert_eq!(proxy_config(&g, &c).cache_max_bytes, Some(1_932_735_283));
    }

    #[test]
    fn hash_changes_with_the_config() {
        let g = minimal();
        let a = hash(&build(&g, &ctx()));
        assert_eq!(a, hash(&build(&g, &ctx())));
        let mut g2 = g.clone();
        g2.spec.exclude_patterns = vec!["x.example.com/*".into()];
        assert_ne!(a, hash(&build(&g2, &ctx())));
        assert_eq!(a.len(), 16);
    }
}
