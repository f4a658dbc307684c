//! Tests of the CRD: its shape, and its CEL rules run as the API server would (kube-cel).

use super::*;
use kube::CustomResourceExt;
use serde_json::{Value, json};

fn schema() -> Value {
    let crd = GoModuleProxy::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

fn valid() -> Value {
    json!({
        "apiVersion": "modfleet.dev/v1alpha1",
        "kind": "GoModuleProxy",
        "metadata": {"name": "gomod", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "upstreams": [{"url": "https://goproxy.example.com", "weight": 1, "timeout": "30s"}],
            "cache": {"size": "20Gi", "mode": "PerMember", "retainPolicy": "Retain"},
            "networkPolicy": {"enabled": true, "allowFrom": [], "metricsFrom": [], "egressTo": [], "egressPorts": [443]},
            "service": {"type": "ClusterIP", "port": 80, "annotations": {}},
            "telemetry": {"otlpEndpoint": "", "samplingRatio": 0.1}
        }
    })
}

/// Runs the CRD's CEL rules client-side (kube-cel), as the API server would.
fn cel(obj: &Value, old: Option<&Value>) -> Result<(), String> {
    kube::core::cel::Validator::new()
        .validate(&schema(), obj, old)
        .map_err(|e| format!("{e:?}"))
}

fn with(path: &[&str], value: Value) -> Value {
    let mut v = valid();
    let mut cur = &mut v;
    for p in &path[..path.len() - 1] {
        cur = if let Ok(i) = p.parse::<usize>() {
            &mut cur[i]
        } else {
            &mut cur[*p]
        };
    }
    cur[path[path.len() - 1]] = value;
    v
}

#[test]
fn crd_names_subresources_and_columns() {
    let crd = GoModuleProxy::crd();
    assert_eq!(crd.spec.group, GROUP);
    assert_eq!(crd.spec.names.kind, "GoModuleProxy");
    assert_eq!(crd.spec.names.short_names, Some(vec!["gmp".to_owned()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    let sub = v.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.members");
    // An HPA needs the pods' selector.
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let status = &schema()["properties"]["status"]["properties"];
    assert_eq!(status["selector"]["type"], "string");
    let cols: Vec<_> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cols, ["Members", "Ready", "Endpoint", "Age"]);
}

#[test]
fn schema_shape_has_rules_and_defaults() {
    let s = schema();
    let spec = &s["properties"]["spec"];
    assert_eq!(spec["required"], json!(["upstreams"]));
    let ups = &spec["properties"]["upstreams"];
    assert!(ups["x-kubernetes-validations"][0]["rule"].is_string());
    let url = &ups["items"]["properties"]["url"];
    assert!(
        url["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("isURL")
    );
    let cache = &spec["properties"]["cache"];
    assert_eq!(cache["properties"]["mode"]["default"], "PerMember");
    assert_eq!(
        cache["properties"]["mode"]["x-kubernetes-validations"][0]["rule"],
        "self == oldSelf"
    );
    assert_eq!(
        cache["properties"]["mode"]["enum"],
        json!(["PerMember", "Shared"])
    );
    assert_eq!(
        spec["properties"]["replicas"]["minimum"].as_f64(),
        Some(0.0)
    );
    assert!(s["x-kubernetes-validations"].as_array().unwrap().len() >= 2);
}

#[test]
fn valid_object_passes_cel() {
    cel(&valid(), None).unwrap();
    let mut ok = valid();
    ok["spec"]["upstreams"][0]["url"] = json!("http://athens.internal:3000/");
    cel(&ok, None).unwrap();
}

#[test]
fn cel_rejects_bad_urls() {
    for bad in [
        "ftp://x.example.com",
        "goproxy.example.com",
        "not a url",
        "",
    ] {
        let v = with(&["spec", "upstreams", "0", "url"], json!(bad));
        let err = cel(&v, None).expect_err(bad);
        assert!(err.contains("http:// or https://"), "{bad}: {err}");
    }
}

#[test]
fn cel_needs_a_key_for_an_unknown_sumdb_and_a_key_for_the_name() {
    let key = "sum.example.com+12345678+AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    for ok in [
        json!({}),
        json!({"name": ""}),
        json!({"name": "sum.golang.org"}),
        json!({"name": "sum.golang.org", "url": "https://sum.example.com"}),
        json!({"name": "sum.example.com", "key": key}),
    ] {
        cel(&with(&["spec", "sumdb"], ok.clone()), None).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        json!({"name": "sum.example.com"}),
        json!({"name": "sum.golang.org", "key": key}),
        json!({"name": "", "key": key}),
        json!({"key": key}),
    ] {
        let Err(err) = cel(&with(&["spec", "sumdb"], bad.clone()), None) else {
            panic!("{bad} passed");
        };
        assert!(err.contains("sumdb.key is required"), "{bad}: {err}");
        assert!(err.contains("'sum.golang.org'"), "{bad}: {err}");
    }
}

#[test]
fn cel_rejects_empty_upstreams_weight_zero_bad_timeout() {
    let err = cel(&with(&["spec", "upstreams"], json!([])), None).unwrap_err();
    assert!(err.contains("at least one upstream"), "{err}");
    let err = cel(&with(&["spec", "upstreams", "0", "weight"], json!(0)), None).unwrap_err();
    assert!(err.contains("weight must be at least 1"), "{err}");
    let err = cel(
        &with(&["spec", "upstreams", "0", "timeout"], json!("soon")),
        None,
    )
    .unwrap_err();
    assert!(err.contains("duration like 30s"), "{err}");
    cel(
        &with(&["spec", "upstreams", "0", "timeout"], json!("1m30s")),
        None,
    )
    .unwrap();
}

#[test]
fn cel_checks_cache_size_is_a_quantity() {
    for bad in ["lots", "20 Gi", "0", "-1Gi"] {
        let err = cel(&with(&["spec", "cache", "size"], json!(bad)), None).expect_err(bad);
        assert!(err.contains("positive quantity"), "{bad}: {err}");
    }
    for good in ["20Gi", "500Mi", "1G", "1073741824"] {
        cel(&with(&["spec", "cache", "size"], json!(good)), None).expect(good);
    }
}

#[test]
fn cel_makes_mode_immutable_and_shared_needs_a_class() {
    let old = valid();
    let mut new = valid();
    new["spec"]["cache"]["mode"] = json!("Shared");
    new["spec"]["cache"]["storageClassName"] = json!("modfleet-rwx");
    let err = cel(&new, Some(&old)).unwrap_err();
    assert!(err.contains("cache.mode is immutable"), "{err}");
    // On create the same object is fine.
    cel(&new, None).unwrap();
    // Shared without a class is refused.
    new["spec"]["cache"]
        .as_object_mut()
        .unwrap()
        .remove("storageClassName");
    let err = cel(&new, None).unwrap_err();
    assert!(err.contains("supports ReadWriteMany"), "{err}");
}

#[test]
fn cel_checks_name_ports_and_ratio() {
    let err = cel(&with(&["metadata", "name"], json!("9lives")), None).unwrap_err();
    assert!(err.contains("DNS-1035"), "{err}");
    let long = "a".repeat(51);
    let err = cel(&with(&["metadata", "name"], json!(long)), None).unwrap_err();
    assert!(err.contains("at most 50"), "{err}");
    let err = cel(&with(&["spec", "service", "port"], json!(70000)), None).unwrap_err();
    assert!(err.contains("service.port"), "{err}");
    let err = cel(
        &with(&["spec", "networkPolicy", "egressPorts"], json!([0])),
        None,
    )
    .unwrap_err();
    assert!(err.contains("egressPorts"), "{err}");
    let err = cel(
        &with(&["spec", "telemetry", "samplingRatio"], json!(1.5)),
        None,
    )
    .unwrap_err();
    assert!(err.contains("samplingRatio"), "{err}");
}

#[test]
fn cel_checks_private_modules() {
    let ok = |v: Value| {
        cel(&with(&["spec", "privateModules"], v.clone()), None)
            .unwrap_or_else(|e| panic!("{v}: {e}"))
    };
    let bad = |v: Value, want: &str| {
        let Err(err) = cel(&with(&["spec", "privateModules"], v.clone()), None) else {
            panic!("{v} passed");
        };
        assert!(err.contains(want), "{v}: {err}");
    };
    ok(json!([{"pattern": "git.corp.example.com/*"}]));
    ok(json!([{
        "pattern": "git.corp.example.com/team/lib",
        "repository": {"url": "ssh://git@git.corp.example.com/team/lib.git", "root": "git.corp.example.com/team/lib"},
        "credentialsSecretRef": {"name": "git-ssh"}
    }]));
    ok(json!([{
        "pattern": "git.corp.example.com/*",
        "repository": {"url": "https://git.corp.example.com/team/lib.git", "root": "git.corp.example.com/team/lib"},
        "credentialsSecretRef": {"name": "git.basic-auth"}
    }]));
    ok(json!([{
        "pattern": "git.internal/*",
        "insecure": true,
        "repository": {"url": "http://git.internal/lib.git", "root": "git.internal/lib"}
    }]));
    bad(
        json!([{"pattern": "git.internal/*", "repository": {"url": "http://git.internal/lib.git", "root": "git.internal/lib"}}]),
        "needs insecure: true",
    );
    for url in [
        "ftp://git.internal/lib.git",
        "git@git.internal:lib.git",
        "lib.git",
        "",
    ] {
        bad(
            json!([{"pattern": "git.internal/*", "repository": {"url": url, "root": "git.internal/lib"}}]),
            "absolute https:// or ssh:// URL",
        );
    }
    for root in [
        "https://git.internal/lib",
        "/git.internal/lib",
        "git.internal/lib/",
    ] {
        bad(
            json!([{"pattern": "git.internal/*", "repository": {"url": "https://git.internal/lib.git", "root": root}}]),
            "module path prefix",
        );
    }
    bad(
        json!([{"pattern": "a.example.com/*,b.example.com/*"}]),
        "without commas",
    );
    for name in ["Git_Creds", "-x", "a/b"] {
        bad(
            json!([{"pattern": "a.example.com/*", "credentialsSecretRef": {"name": name}}]),
            "the name of a Secret",
        );
    }
}

#[test]
fn cel_checks_upstream_credentials() {
    let upstream = |v: Value| with(&["spec", "upstreams"], json!([v]));
    for ok in [
        json!({"url": "https://goproxy.corp.example", "credentialsSecretRef": {"name": "upstream-basic"}}),
        json!({"url": "http://athens.internal:3000", "insecure": true, "credentialsSecretRef": {"name": "athens"}}),
        json!({"url": "http://athens.internal:3000"}),
        json!({"url": "https://goproxy.corp.example/go@v1"}),
    ] {
        cel(&upstream(ok.clone()), None).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let err = cel(
        &upstream(json!({"url": "http://athens.internal:3000", "credentialsSecretRef": {"name": "athens"}})),
        None,
    )
    .unwrap_err();
    assert!(err.contains("needs insecure: true"), "{err}");
    for url in [
        "https://ci:s3cret@goproxy.corp.example",
        "https://ci@goproxy.corp.example/go",
    ] {
        let err = cel(&upstream(json!({"url": url})), None).unwrap_err();
        assert!(
            err.contains("must not hold a user name or password"),
            "{url}: {err}"
        );
    }
    let err = cel(
        &upstream(json!({"url": "https://goproxy.corp.example", "credentialsSecretRef": {"name": "Bad_Name"}})),
        None,
    )
    .unwrap_err();
    assert!(err.contains("the name of a Secret"), "{err}");
}

#[test]
fn defaults_deserialize_from_a_minimal_spec() {
    let spec: GoModuleProxySpec =
        serde_json::from_value(json!({"upstreams": [{"url": "https://goproxy.example.com"}]}))
            .unwrap();
    assert_eq!(spec.replicas, 1);
    assert_eq!(spec.cache, CacheSpec::default());
    assert!(spec.network_policy.enabled);
    assert_eq!(spec.network_policy.egress_ports, vec![443]);
    assert_eq!(spec.service.port, 80);
}

#[test]
fn cel_checks_tls_and_access() {
    let ok = |spec_key: &str, v: Value| {
        let obj = with(&["spec", spec_key], v.clone());
        cel(&obj, None).unwrap_or_else(|e| panic!("{v}: {e}"));
    };
    let bad = |spec_key: &str, v: Value, want: &str| {
        let err = cel(&with(&["spec", spec_key], v.clone()), None)
            .err()
            .unwrap_or_else(|| panic!("accepted: {v}"));
        assert!(err.contains(want), "{v}: want {want:?}, got {err}");
    };
    ok("tls", json!({"secretName": "proxy-tls"}));
    bad(
        "tls",
        json!({"secretName": "Proxy_TLS"}),
        "the name of a Secret",
    );
    ok(
        "access",
        json!({
            "tokenSecretRefs": [{"name": "ci-tokens", "key": "tokens"}, {"name": "ops", "key": "lines.txt"}],
            "rules": [
                {"modules": ["git.corp.example.com/*"], "allow": ["group:ci", "ci-bot@corp"]},
                {"modules": ["*"], "allow": ["anonymous"]}
            ],
            "admin": ["group:ops", "authenticated", "modfleet-operator"]
        }),
    );
    let rules = |allow: Value| json!({"rules": [{"modules": ["*"], "allow": allow}]});
    for principal in ["group:", "a b", "group:anonymous", "x/y", &"n".repeat(65)] {
        bad(
            "access",
            rules(json!([principal])),
            "anonymous, authenticated, group:NAME or NAME",
        );
    }
    // An empty allow refuses its modules to everyone (a rule before broader ones).
    ok("access", rules(json!([])));
    bad(
        "access",
        json!({"rules": []}),
        "access.rules needs at least one rule",
    );
    bad(
        "access",
        json!({"rules": [{"modules": [], "allow": ["anonymous"]}]}),
        "at least one GOPRIVATE glob",
    );
    bad(
        "access",
        json!({"rules": [{"modules": ["a.example/*,b.example/*"], "allow": ["anonymous"]}]}),
        "without commas or spaces",
    );
    bad(
        "access",
        json!({"rules": [{"modules": ["*"], "allow": ["anonymous"]}], "admin": ["group:anonymous"]}),
        "access.admin entries",
    );
    bad(
        "access",
        json!({"tokenSecretRefs": [{"name": "ci", "key": "a/b"}], "rules": [{"modules": ["*"], "allow": ["anonymous"]}]}),
        "must be a Secret key",
    );
    // The tokens key defaults to `tokens`.
    let spec: GoModuleProxySpec = serde_json::from_value(json!({
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "access": {"tokenSecretRefs": [{"name": "ci"}], "rules": [{"modules": ["*"], "allow": ["anonymous"]}]}
    }))
    .unwrap();
    assert_eq!(spec.access.unwrap().token_secret_refs[0].key, "tokens");
}

/// `spec.injection` is off unless written: a spec without it serializes without it, so
/// existing fleets keep the same bytes (and hashes).
#[test]
fn injection_is_absent_unless_written() {
    let spec: GoModuleProxySpec =
        serde_json::from_value(json!({"upstreams": [{"url": "https://goproxy.example.com"}]}))
            .unwrap();
    assert_eq!(spec.injection, None);
    assert!(
        serde_json::to_value(&spec)
            .unwrap()
            .get("injection")
            .is_none()
    );
}

#[test]
fn cel_checks_the_injection_fallback() {
    let injection = |fallback: Value| {
        with(
            &["spec", "injection"],
            json!({"namespaceSelector": {"matchLabels": {"team": "builds"}}, "fallback": fallback}),
        )
    };
    cel(
        &with(&["spec", "injection"], json!({"namespaceSelector": {}})),
        None,
    )
    .unwrap();
    for ok in [
        "https://mirror.corp.example.com",
        "http://athens.internal:3000/go",
    ] {
        cel(&injection(json!({"url": ok})), None).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, want) in [
        ("direct", "http:// or https://"),
        ("ftp://mirror.example.com", "http:// or https://"),
        ("", "http:// or https://"),
        ("https://a.example.com,direct", "one proxy URL"),
        (
            "https://a.example.com|https://b.example.com",
            "one proxy URL",
        ),
        (
            "https://user:pw@mirror.example.com",
            "user name or password",
        ),
    ] {
        let err = cel(&injection(json!({"url": bad})), None).expect_err(bad);
        assert!(err.contains(want), "{bad}: {err}");
    }
}

#[test]
fn cel_checks_the_object_store() {
    let store = |v: Value| with(&["spec", "cache", "objectStore"], v);
    for ok in [
        json!({"url": "s3://go-modules"}),
        json!({"url": "s3://go-modules/fleet-a/v2", "region": "eu-west-1", "timeout": "3s"}),
        json!({"url": "s3://go-modules/fleet-a", "endpoint": "http://minio.minio.svc:9000",
               "allowHttp": true, "credentialsSecretRef": {"name": "minio-keys"}}),
        json!({"url": "s3://go.modules", "endpoint": "https://rgw.corp.example"}),
        json!({"url": "gs://corp_modules/fleet", "credentialsSecretRef": {"name": "gcs-key"}}),
        json!({"url": "az://modules", "accountName": "corpmods",
               "credentialsSecretRef": {"name": "az-key"}}),
        json!({"url": "az://modules", "accountName": "corpmods"}),
    ] {
        cel(&store(ok.clone()), None).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let refused = |v: Value, want: &str| {
        let err = cel(&store(v.clone()), None).unwrap_err();
        assert!(err.contains(want), "{v}: {err}");
    };
    let scheme = "url must be s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX";
    for url in [
        "https://go-modules.s3.amazonaws.com",
        "s3:/go-modules",
        "s3://",
        "S3://go-modules",
        "s3://Go-Modules",
        "file:///var/modules",
        "s3://go-modules?versionId=1",
        "minio://go-modules",
    ] {
        refused(json!({"url": url}), scheme);
    }
    refused(
        json!({"url": "s3://m", "endpoint": "minio:9000"}),
        "endpoint must be an absolute http:// or https:// URL",
    );
    refused(
        json!({"url": "s3://mods", "endpoint": "http://minio:9000"}),
        "an http:// endpoint needs allowHttp: true",
    );
    refused(
        json!({"url": "s3://mods", "accountName": "corpmods"}),
        "accountName is for Azure Blob",
    );
    refused(
        json!({"url": "az://mods", "credentialsSecretRef": {"name": "az-key"}}),
        "needs accountName",
    );
    refused(
        json!({"url": "s3://mods", "timeout": "soon"}),
        "objectStore.timeout must be a duration",
    );
    refused(
        json!({"url": "s3://mods", "region": "EU West"}),
        "region must be a region name",
    );
    refused(
        json!({"url": "s3://mods", "credentialsSecretRef": {"name": "Bad_Name"}}),
        "the name of a Secret",
    );
}

#[test]
fn fleet_and_store_are_absent_unless_written() {
    let spec: GoModuleProxySpec =
        serde_json::from_value(json!({"upstreams": [{"url": "https://goproxy.example.com"}]}))
            .unwrap();
    let v = serde_json::to_value(&spec).unwrap();
    assert!(v.get("fleet").is_none(), "{v}");
    assert!(v["cache"].get("objectStore").is_none(), "{v}");
    let peer_fill =
        &schema()["properties"]["spec"]["properties"]["fleet"]["properties"]["peerFill"];
    assert_eq!(peer_fill["type"], "boolean");
    assert!(
        peer_fill.get("default").is_none(),
        "unset means: by cache.mode"
    );
    let status = &schema()["properties"]["status"]["properties"]["store"]["properties"];
    for field in ["url", "healthyMembers", "members", "lastError"] {
        assert!(status.get(field).is_some(), "status.store.{field}");
    }
}
