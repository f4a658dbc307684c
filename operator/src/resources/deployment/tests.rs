//! Tests of the member Deployment: pod spec, volumes, rollout hashes.

use super::super::testutil::*;
use super::*;
use serde_json::json;

/// The claim behind the pod's `cache` volume.
fn cache_claim(d: &Deployment) -> &str {
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let cache = pod.volumes.iter().flatten().find(|v| v.name == "cache");
    &cache
        .unwrap()
        .persistent_volume_claim
        .as_ref()
        .unwrap()
        .claim_name
}

fn container(d: &Deployment) -> &Container {
    &d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

#[test]
fn per_member_deployment() {
    let d = build(&minimal(), &ctx(), Some(1), "abc");
    assert_owned(&d.metadata, "proxy");
    assert_eq!(d.metadata.name.as_deref(), Some("gomod-1"));
    assert_eq!(
        d.metadata.labels.as_ref().unwrap()["modfleet.dev/member"],
        "1"
    );
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.strategy.as_ref().unwrap().type_.as_deref(),
        Some("Recreate")
    );
    let sel = spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(sel["modfleet.dev/member"], "1");
    let tl = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for (k, v) in sel {
        assert_eq!(&tl[k], v, "template labels must match the selector");
    }
    let ann = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap();
    assert_eq!(ann[CONFIG_HASH_ANNOTATION], "abc");
    assert_eq!(cache_claim(&d), "gomod-cache-1");
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("gomod"));
    // Peer fill (on by default for PerMember) reads EndpointSlices with the pod's token.
    assert_eq!(pod.automount_service_account_token, Some(true));
    let c = container(&d);
    assert_eq!(c.image.as_deref(), Some("modfleet/modfleet-proxy:test"));
    assert_eq!(
        c.args.as_ref().unwrap(),
        &["--config", "/etc/modfleet/config.yaml"]
    );
    let ports: Vec<_> = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap(), p.container_port))
        .collect();
    // 7070: peer fill, on by default for PerMember fleets.
    assert_eq!(
        ports,
        [
            ("http".into(), 8080),
            ("admin".into(), 9090),
            ("peer".into(), 7070)
        ]
    );
    let r = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(r.path.as_deref(), Some("/readyz"));
    assert_eq!(r.port, IntOrString::String("admin".into()));
    let l = c
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(l.path.as_deref(), Some("/healthz"));
    let mounts: Vec<_> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(
        mounts,
        [
            "/etc/modfleet",
            "/var/cache/modfleet",
            "/tmp",
            // The peer token (peer fill, on by default for PerMember fleets).
            "/etc/modfleet-peer"
        ]
    );
}

#[test]
fn shared_deployment() {
    let g = gmp(json!({
        "replicas": 4,
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "cache": {"mode": "Shared", "storageClassName": "modfleet-rwx"}
    }));
    let d = build(&g, &ctx(), None, "abc");
    assert_eq!(d.metadata.name.as_deref(), Some("gomod"));
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(4));
    assert!(
        !spec
            .selector
            .match_labels
            .as_ref()
            .unwrap()
            .contains_key("modfleet.dev/member")
    );
    let s = spec.strategy.as_ref().unwrap();
    assert_eq!(s.type_.as_deref(), Some("RollingUpdate"));
    assert_eq!(
        s.rolling_update.as_ref().unwrap().max_unavailable,
        Some(IntOrString::Int(1))
    );
    assert_eq!(cache_claim(&d), "gomod-cache");
}

#[test]
fn pods_pass_the_restricted_standard() {
    for g in [
        minimal(),
        gmp(json!({
            "replicas": 2,
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "cache": {"mode": "Shared", "storageClassName": "modfleet-rwx"}
        })),
    ] {
        for d in super::super::desired(&g, &ctx()).deployments {
            let pod = d.spec.unwrap().template.spec.unwrap();
            assert_eq!(restricted_violations(&pod), Vec::<String>::new());
            let c = &pod.containers[0];
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true));
        }
    }
}

#[test]
fn restricted_check_catches_violations() {
    let d = build(&minimal(), &ctx(), Some(0), "abc");
    let mut pod = d.spec.unwrap().template.spec.unwrap();
    let sc = pod.containers[0].security_context.as_mut().unwrap();
    sc.allow_privilege_escalation = None;
    sc.capabilities = None;
    sc.run_as_non_root = None;
    pod.security_context = None;
    sc.seccomp_profile = None;
    let v = restricted_violations(&pod);
    assert_eq!(v.len(), 4, "{v:?}");
}

#[test]
fn otel_env_from_telemetry() {
    let g = gmp(json!({
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "telemetry": {"otlpEndpoint": "http://otel.obs:4317", "samplingRatio": 0.25}
    }));
    let d = build(&g, &ctx(), Some(0), "abc");
    let env: BTreeMap<_, _> = container(&d)
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.as_str(), e.value.clone()?)))
        .collect();
    assert_eq!(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://otel.obs:4317");
    assert_eq!(env["OTEL_EXPORTER_OTLP_PROTOCOL"], "grpc");
    assert_eq!(env["OTEL_TRACES_SAMPLER"], "parentbased_traceidratio");
    assert_eq!(env["OTEL_TRACES_SAMPLER_ARG"], "0.25");
    assert_eq!(env["OTEL_SERVICE_NAME"], "modfleet-proxy");
    let d = build(&minimal(), &ctx(), Some(0), "abc");
    assert!(
        container(&d)
            .env
            .iter()
            .flatten()
            .all(|e| e.name != "OTEL_EXPORTER_OTLP_ENDPOINT")
    );
}

#[test]
fn scheduling_fields_and_pod_metadata_pass_through() {
    let g = gmp(json!({
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "image": "registry.internal/proxy:v2",
        "imagePullPolicy": "Always",
        "imagePullSecrets": [{"name": "pull"}],
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "priorityClassName": "high",
        "podAnnotations": {"a": "b"},
        "podLabels": {"team": "go", "app.kubernetes.io/instance": "evil"},
        "resources": {"requests": {"cpu": "100m"}}
    }));
    let d = build(&g, &ctx(), Some(0), "abc");
    let t = &d.spec.as_ref().unwrap().template;
    let l = t.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(l["team"], "go");
    assert_eq!(l["app.kubernetes.io/instance"], "gomod", "our labels win");
    assert_eq!(
        t.metadata.as_ref().unwrap().annotations.as_ref().unwrap()["a"],
        "b"
    );
    let pod = t.spec.as_ref().unwrap();
    assert_eq!(pod.node_selector.as_ref().unwrap()["disk"], "ssd");
    assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1);
    assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
    assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "pull");
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.internal/proxy:v2"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert!(c.resources.is_some());
}

#[test]
fn private_module_secrets_are_mounted_read_only_with_their_keys() {
    use crate::resources::credentials::tests::{good_secrets, private_fleet, secret};
    let g = private_fleet();
    let with = |secrets| Context {
        credentials: crate::resources::credentials::check(&g, &secrets).unwrap(),
        ..ctx()
    };
    let c = with(good_secrets());
    let d = build(&g, &c, Some(0), "abc");
    let t = &d.spec.as_ref().unwrap().template;
    let pod = t.spec.as_ref().unwrap();
    let secret_volumes: Vec<(String, String, Vec<String>, Option<i32>)> = pod
        .volumes
        .iter()
        .flatten()
        // The peer token's volume (peer fill, on by default) is tested in resources/tiers.
        .filter(|v| v.name != crate::resources::tiers::PEER_VOLUME)
        .filter_map(|v| {
            let s = v.secret.as_ref()?;
            let keys = s.items.iter().flatten().map(|i| i.key.clone()).collect();
            Some((
                v.name.clone(),
                s.secret_name.clone().unwrap(),
                keys,
                s.default_mode,
            ))
        })
        .collect();
    assert_eq!(
        secret_volumes,
        [
            (
                "private-0".into(),
                "git-ssh".into(),
                vec!["ssh-privatekey".into(), "known_hosts".into()],
                Some(0o400)
            ),
            (
                "private-2".into(),
                "git-basic".into(),
                vec!["username".into(), "password".into()],
                Some(0o400)
            ),
        ]
    );
    let mounts: Vec<(&str, &str, Option<bool>)> = container(&d)
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name.starts_with("private-"))
        .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            ("private-0", "/etc/modfleet-private/0", Some(true)),
            ("private-2", "/etc/modfleet-private/2", Some(true)),
        ]
    );
    assert_eq!(restricted_violations(pod), Vec::<String>::new());
    let annotation = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CREDENTIALS_HASH_ANNOTATION]
            .clone()
    };
    assert_eq!(&annotation(&d), c.credentials.hash.as_ref().unwrap());

    // A rotated password: a new annotation, so a new template (the members roll).
    let mut rotated = good_secrets();
    rotated.insert(
        "git-basic".into(),
        secret(&[("username", "ci"), ("password", "n3w")]),
    );
    let d2 = build(&g, &with(rotated), Some(0), "abc");
    assert_ne!(annotation(&d), annotation(&d2));
    let th =
        |d: &Deployment| d.metadata.annotations.as_ref().unwrap()[TEMPLATE_HASH_ANNOTATION].clone();
    assert_ne!(th(&d), th(&d2));
    let json = serde_json::to_string(&d2).unwrap();
    assert!(
        !json.contains("n3w") && !json.contains("BEGIN"),
        "no credential in the Deployment"
    );
}

/// Upstream Secrets beside the private modules': own volumes, sibling directories of
/// the ConfigMap's mount, after the private modules' (whose order stays as it was).
#[test]
fn upstream_secrets_are_mounted_beside_private_ones() {
    use crate::resources::credentials::tests::{
        good_secrets, private_fleet, secret, upstream_secrets,
    };
    let mut g = private_fleet();
    g.spec.upstreams = crate::resources::credentials::tests::upstream_fleet()
        .spec
        .upstreams;
    let mut secrets = good_secrets();
    secrets.extend(upstream_secrets());
    let with = |secrets| Context {
        credentials: crate::resources::credentials::check(&g, &secrets).unwrap(),
        ..ctx()
    };
    let c = with(secrets.clone());
    let d = build(&g, &c, Some(0), "abc");
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let volumes: Vec<(String, String, Vec<String>)> = pod
        .volumes
        .iter()
        .flatten()
        // The peer token's volume (peer fill, on by default) is tested in resources/tiers.
        .filter(|v| v.name != crate::resources::tiers::PEER_VOLUME)
        .filter_map(|v| {
            let s = v.secret.as_ref()?;
            let keys = s.items.iter().flatten().map(|i| i.key.clone()).collect();
            Some((v.name.clone(), s.secret_name.clone().unwrap(), keys))
        })
        .collect();
    let v = |name: &str, secret: &str, keys: &[&str]| {
        (
            name.to_string(),
            secret.to_string(),
            keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        volumes,
        [
            v("private-0", "git-ssh", &["ssh-privatekey", "known_hosts"]),
            v("private-2", "git-basic", &["username", "password"]),
            v("upstream-0", "up-basic", &["username", "password"]),
            v("upstream-2", "up-token", &["token"]),
            v("upstream-3", "up-netrc", &["netrc"]),
        ]
    );
    let mounts: Vec<(&str, &str, Option<bool>)> = container(&d)
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name.starts_with("upstream-"))
        .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            ("upstream-0", "/etc/modfleet-upstream/0", Some(true)),
            ("upstream-2", "/etc/modfleet-upstream/2", Some(true)),
            ("upstream-3", "/etc/modfleet-upstream/3", Some(true)),
        ]
    );
    for m in container(&d).volume_mounts.iter().flatten() {
        assert!(
            m.name == "config" || !m.mount_path.starts_with("/etc/modfleet/"),
            "{} is mounted inside the ConfigMap's read-only mount",
            m.mount_path
        );
    }
    assert_eq!(restricted_violations(pod), Vec::<String>::new());
    // A rotated upstream token rolls the members; nothing of it is in the Deployment.
    let mut rotated = secrets;
    rotated.insert("up-token".into(), secret(&[("token", "up-t0ken-2")]));
    let d2 = build(&g, &with(rotated), Some(0), "abc");
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CREDENTIALS_HASH_ANNOTATION]
            .clone()
    };
    assert_ne!(hash(&d), hash(&d2));
    let json = serde_json::to_string(&d2).unwrap();
    assert!(
        !json.contains("up-t0ken") && !json.contains("up-s3cret"),
        "{json}"
    );
}

/// (Peer fill, on by default for PerMember fleets, adds its own Secret volume and annotation:
/// resources/tiers/tests.rs; off here.)
#[test]
fn fleets_without_private_modules_keep_their_template() {
    let mut g = minimal();
    g.spec.fleet = Some(crate::crd::FleetSpec {
        peer_fill: Some(false),
    });
    let d = build(&g, &ctx(), Some(0), "abc");
    let t = &d.spec.as_ref().unwrap().template;
    assert!(
        !t.metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()
            .contains_key(CREDENTIALS_HASH_ANNOTATION)
    );
    let pod = t.spec.as_ref().unwrap();
    assert!(pod.volumes.iter().flatten().all(|v| v.secret.is_none()));
}

#[test]
fn template_hash_tracks_the_template() {
    let a = build(&minimal(), &ctx(), Some(0), "abc");
    let b = build(&minimal(), &ctx(), Some(0), "def");
    let ha = &a.metadata.annotations.as_ref().unwrap()[TEMPLATE_HASH_ANNOTATION];
    let hb = &b.metadata.annotations.as_ref().unwrap()[TEMPLATE_HASH_ANNOTATION];
    assert_ne!(ha, hb);
    let a2 = build(&minimal(), &ctx(), Some(0), "abc");
    assert_eq!(
        ha,
        &a2.metadata.annotations.unwrap()[TEMPLATE_HASH_ANNOTATION]
    );
}

/// `spec.tls` and `spec.access`: the TLS Secret's certificate and key only, each tokens file
/// as `tokens` in its own directory, the operator's too, all read-only, 0400, beside the
/// ConfigMap's mount; the client port named for what it speaks; the tokens files (not the
/// certificate) in the credentials hash.
#[test]
fn tls_and_tokens_secrets_are_mounted_beside_the_config() {
    use crate::resources::access::tests::{access_fleet, access_secrets};
    use crate::resources::credentials::tests::secret;
    let g = access_fleet();
    let with = |secrets| Context {
        access: crate::resources::access::check(&g, &secrets).unwrap(),
        ..ctx()
    };
    let d = build(&g, &with(access_secrets()), Some(0), "abc");
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    /// (volume, Secret, items as (key, path), defaultMode)
    type SecretVolume = (String, String, Vec<(String, String)>, Option<i32>);
    let volumes: Vec<SecretVolume> = pod
        .volumes
        .iter()
        .flatten()
        // The peer token's volume (peer fill, on by default) is tested in resources/tiers.
        .filter(|v| v.name != crate::resources::tiers::PEER_VOLUME)
        .filter_map(|v| {
            let s = v.secret.as_ref()?;
            let items = s
                .items
                .iter()
                .flatten()
                .map(|i| (i.key.clone(), i.path.clone()))
                .collect();
            Some((
                v.name.clone(),
                s.secret_name.clone().unwrap(),
                items,
                s.default_mode,
            ))
        })
        .collect();
    let v = |name: &str, secret: &str, items: &[(&str, &str)]| {
        (
            name.to_string(),
            secret.to_string(),
            items
                .iter()
                .map(|(k, p)| (k.to_string(), p.to_string()))
                .collect::<Vec<_>>(),
            Some(0o400),
        )
    };
    assert_eq!(
        volumes,
        [
            v(
                "tls",
                "proxy-tls",
                &[("tls.crt", "tls.crt"), ("tls.key", "tls.key")]
            ),
            v("access-0", "ci-tokens", &[("tokens", "tokens")]),
            v("access-1", "ops-tokens", &[("lines", "tokens")]),
            v(
                "access-operator",
                "gomod-operator-token",
                &[("tokens", "tokens")]
            ),
        ]
    );
    let mounts: Vec<(&str, &str, Option<bool>)> = container(&d)
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.name == "tls" || m.name.starts_with("access-"))
        .map(|m| (m.name.as_str(), m.mount_path.as_str(), m.read_only))
        .collect();
    assert_eq!(
        mounts,
        [
            ("tls", "/etc/modfleet-tls", Some(true)),
            ("access-0", "/etc/modfleet-access/0", Some(true)),
            ("access-1", "/etc/modfleet-access/1", Some(true)),
            (
                "access-operator",
                "/etc/modfleet-access/operator",
                Some(true)
            ),
        ]
    );
    for m in container(&d).volume_mounts.iter().flatten() {
        assert!(
            m.name == "config" || !m.mount_path.starts_with("/etc/modfleet/"),
            "{} is mounted inside the ConfigMap's read-only mount",
            m.mount_path
        );
    }
    assert_eq!(restricted_violations(pod), Vec::<String>::new());
    let ports: Vec<(Option<&str>, i32)> = container(&d)
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("https"), 8080),
            (Some("admin"), 9090),
            (Some("peer"), 7070)
        ]
    );
    // Probes stay on the plain-HTTP admin port.
    let probe = container(&d).readiness_probe.as_ref().unwrap();
    let get = probe.http_get.as_ref().unwrap();
    assert_eq!(
        (get.port.clone(), get.scheme.clone()),
        (IntOrString::String("admin".into()), None)
    );

    let hash = |d: &Deployment| {
        let template = &d.spec.as_ref().unwrap().template;
        let annotations = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref());
        annotations.and_then(|a| a.get(CREDENTIALS_HASH_ANNOTATION).cloned())
    };
    assert!(hash(&d).is_some());
    // A renewed certificate: the same template (the proxy reloads it in place).
    let mut renewed = access_secrets();
    renewed.insert(
        "proxy-tls".into(),
        secret(&[("tls.crt", "RENEWED"), ("tls.key", "NEW")]),
    );
    assert_eq!(hash(&d), hash(&build(&g, &with(renewed), Some(0), "abc")));
    // A rotated tokens file: a new template (the members roll).
    let mut rotated = access_secrets();
    rotated.insert(
        "ci-tokens".into(),
        secret(&[(
            "tokens",
            "ci-bot sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
        )]),
    );
    assert_ne!(hash(&d), hash(&build(&g, &with(rotated), Some(0), "abc")));
}
