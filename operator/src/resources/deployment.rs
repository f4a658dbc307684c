//! Member Deployments. PerMember: `NAME-i`, one replica, strategy Recreate (an RWO volume
//! cannot be mounted by the old and the new pod at once). Shared: `NAME` with `replicas`
//! pods on one RWX volume, rolling one pod at a time.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::ObjectMeta;
use modfleet_contract::defaults;
use sha2::{Digest, Sha256};

use super::access::{self, TLS_CERT_KEY, TLS_DIR, TLS_KEY_KEY, TLS_VOLUME, TOKENS_FILE};
use super::credentials::CREDENTIALS_HASH_ANNOTATION;
use super::labels::{self, Component};
use super::tiers::{
    self, PEER_DIR, PEER_TOKEN_KEY, PEER_VOLUME, STORE_DIR, STORE_VOLUME, TIERS_HASH_ANNOTATION,
};
use super::{
    ADMIN_PORT, CACHE_DIR, CONFIG_DIR, CONFIG_HASH_ANNOTATION, CONFIG_KEY, Context, HTTP_PORT,
    TEMPLATE_HASH_ANNOTATION, merge_labels, meta, names, service,
};
use crate::crd::GoModuleProxy;

/// UID/GID the proxy runs as (the distroless "nonroot" user).
pub const RUN_AS: i64 = 65532;
pub const CONTAINER: &str = "proxy";

/// Deployment for `member` (PerMember mode) or the single shared Deployment (`None`).
pub fn build(
    gmp: &GoModuleProxy,
    ctx: &Context,
    member: Option<usize>,
    config_hash: &str,
) -> Deployment {
    let name = gmp.name_any();
    let (dep_name, claim, replicas, strategy) = match member {
        Some(i) => (
            names::deployment(&name, member),
            names::member_cache(&name, i),
            1,
            DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            },
        ),
        None => (
            names::deployment(&name, member),
            names::shared_cache(&name),
            gmp.replicas(),
            DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
            },
        ),
    };
    let mut pod_annotations = gmp.spec.pod_annotations.clone();
    pod_annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.to_owned());
    // Credentials and tokens are files read at use, but a rotated Secret reaches a running
    // pod only eventually (the kubelet's sync period): rolling makes the change take effect
    // now. The TLS Secret is not in it: a renewed certificate is read in place.
    if let Some(h) =
        access::credentials_hash(ctx.credentials.hash.as_deref(), ctx.access.hash.as_deref())
    {
        pod_annotations.insert(CREDENTIALS_HASH_ANNOTATION.into(), h);
    }
    // The store's keys and the peer token are read at start: a change rolls the members.
    if let Some(h) = &ctx.tiers.hash {
        pod_annotations.insert(TIERS_HASH_ANNOTATION.into(), h.clone());
    }
    let pod_labels = merge_labels(
        &gmp.spec.pod_labels,
        labels::labels(&name, Component::Proxy, member),
    );
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: Some(pod_annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(gmp, ctx, &claim)),
    };
    let mut metadata = meta(gmp, dep_name, Component::Proxy, member);
    metadata.annotations = Some(BTreeMap::from([(
        TEMPLATE_HASH_ANNOTATION.to_owned(),
        template_hash(&template),
    )]));
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels::member_selector(&name, member)),
                match_expressions: None,
            },
            strategy: Some(strategy),
            template,
            revision_history_limit: Some(3),
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// Stable hash of a pod template (serde_json sorts nothing, but our maps are BTreeMaps and
/// the builders are deterministic, so equal specs serialize equally).
pub fn template_hash(t: &PodTemplateSpec) -> String {
    let bytes = serde_json::to_vec(t).expect("pod templates serialize");
    let d = Sha256::digest(&bytes);
    d[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn pod_spec(gmp: &GoModuleProxy, ctx: &Context, claim: &str) -> PodSpec {
    let spec = &gmp.spec;
    let peer_fill = gmp.peer_fill();
    let image = spec
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| ctx.proxy_image.clone());
    let probe = |path: &str, failure: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(2),
        failure_threshold: Some(failure),
        ..Probe::default()
    };
    let container = Container {
        name: CONTAINER.into(),
        image: Some(image),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_owned()),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        ]),
        ports: Some(
            [
                ContainerPort {
                    name: Some(service::client_port_name(gmp).into()),
                    container_port: HTTP_PORT,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                },
                ContainerPort {
                    name: Some("admin".into()),
                    container_port: ADMIN_PORT,
                    protocol: Some("TCP".into()),
                    ..ContainerPort::default()
                },
            ]
            .into_iter()
            .chain(peer_fill.then(|| ContainerPort {
                name: Some(defaults::PEER_PORT_NAME.into()),
                container_port: tiers::peer_port(),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            }))
            .collect(),
        ),
        env: Some(
            otel_env(gmp)
                .into_iter()
                .chain(peer_env(peer_fill))
                .collect(),
        ),
        readiness_probe: Some(probe("/readyz", 3)),
        liveness_probe: Some(probe("/healthz", 6)),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(
            [
                VolumeMount {
                    name: "config".into(),
                    mount_path: CONFIG_DIR.into(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "cache".into(),
                    mount_path: CACHE_DIR.into(),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: "tmp".into(),
                    mount_path: "/tmp".into(),
                    ..VolumeMount::default()
                },
            ]
            .into_iter()
            .chain(ctx.credentials.mounts.keys().map(|owner| VolumeMount {
                name: owner.volume(),
                mount_path: owner.dir(),
                read_only: Some(true),
                ..VolumeMount::default()
            }))
            .chain(access_mounts(&ctx.access))
            .chain(tier_mounts(ctx, peer_fill))
            .collect(),
        ),
        ..Container::default()
    };
    PodSpec {
        containers: vec![container],
        service_account_name: Some(names::service_account(&gmp.name_any())),
        // Only peer fill talks to the API server (its membership: resources/membership.rs).
        automount_service_account_token: Some(peer_fill),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(
            [
                Volume {
                    name: "config".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: names::config(&gmp.name_any()),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "cache".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: claim.to_owned(),
                        read_only: None,
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "tmp".into(),
                    empty_dir: Some(EmptyDirVolumeSource {
                        size_limit: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                            "256Mi".into(),
                        )),
                        ..EmptyDirVolumeSource::default()
                    }),
                    ..Volume::default()
                },
            ]
            .into_iter()
            // Only the keys the Secret has: a missing item would keep the pod from starting,
            // and keys we do not use stay out of the pod.
            .chain(ctx.credentials.mounts.iter().map(|(owner, mount)| {
                let items: Vec<(&str, &str)> = mount
                    .keys
                    .iter()
                    .map(|k| (k.secret_key(), k.secret_key()))
                    .collect();
                secret_volume(owner.volume(), &mount.secret, &items)
            }))
            .chain(access_volumes(&ctx.access))
            .chain(tier_volumes(gmp, ctx, peer_fill))
            .collect(),
        ),
        image_pull_secrets: (!spec.image_pull_secrets.is_empty())
            .then(|| spec.image_pull_secrets.clone()),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        affinity: spec.affinity.clone(),
        topology_spread_constraints: (!spec.topology_spread_constraints.is_empty())
            .then(|| spec.topology_spread_constraints.clone()),
        priority_class_name: spec.priority_class_name.clone().filter(|p| !p.is_empty()),
        ..PodSpec::default()
    }
}

/// The volume of a Secret with only `items` (key, file name), read-only to the proxy.
fn secret_volume(name: String, secret: &str, items: &[(&str, &str)]) -> Volume {
    Volume {
        name,
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(
                items
                    .iter()
                    .map(|(key, path)| KeyToPath {
                        key: (*key).into(),
                        path: (*path).into(),
                        mode: None,
                    })
                    .collect(),
            ),
            // Owner-only; fsGroup adds group read for the proxy's group.
            default_mode: Some(0o400),
            optional: None,
        }),
        ..Volume::default()
    }
}

/// The TLS Secret (its certificate and key only: not cert-manager's `ca.crt`) and each
/// tokens file (its one key, as `tokens`).
fn access_volumes(access: &access::Access) -> Vec<Volume> {
    let tls = access.tls.iter().map(|(secret, _)| {
        let items = [(TLS_CERT_KEY, TLS_CERT_KEY), (TLS_KEY_KEY, TLS_KEY_KEY)];
        secret_volume(TLS_VOLUME.into(), secret, &items)
    });
    let tokens = access
        .tokens
        .iter()
        .map(|t| secret_volume(t.tokens.volume(), &t.secret, &[(&t.key, TOKENS_FILE)]));
    tls.chain(tokens).collect()
}

/// Where [`access_volumes`] are mounted: beside `/etc/modfleet`, read-only.
fn access_mounts(access: &access::Access) -> Vec<VolumeMount> {
    let mount = |name: String, path: String| VolumeMount {
        name,
        mount_path: path,
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let tls = access
        .tls
        .iter()
        .map(|_| mount(TLS_VOLUME.into(), TLS_DIR.into()));
    let tokens = access
        .tokens
        .iter()
        .map(|t| mount(t.tokens.volume(), t.tokens.dir()));
    tls.chain(tokens).collect()
}

/// The object store's Secret (the keys it has) and the peer token Secret, read-only.
fn tier_volumes(gmp: &GoModuleProxy, ctx: &Context, peer_fill: bool) -> Vec<Volume> {
    let store = ctx.tiers.store.iter().map(|m| {
        let items: Vec<(&str, &str)> = m
            .keys
            .iter()
            .map(|k| (k.secret_key(), k.secret_key()))
            .collect();
        secret_volume(STORE_VOLUME.into(), &m.secret, &items)
    });
    let peer = peer_fill.then(|| {
        let secret = names::peer_token(&gmp.name_any());
        let items = [(PEER_TOKEN_KEY, PEER_TOKEN_KEY)];
        secret_volume(PEER_VOLUME.into(), &secret, &items)
    });
    store.chain(peer).collect()
}

/// Where [`tier_volumes`] are mounted: beside `/etc/modfleet`, read-only.
fn tier_mounts(ctx: &Context, peer_fill: bool) -> Vec<VolumeMount> {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    };
    let store = ctx
        .tiers
        .store
        .iter()
        .map(|_| mount(STORE_VOLUME, STORE_DIR));
    let peer = peer_fill.then(|| mount(PEER_VOLUME, PEER_DIR));
    store.chain(peer).collect()
}

/// With peer fill: the member's address among its peers, `$(POD_IP):7070` (the Pod's IP from
/// the downward API; the proxy reads `MODFLEET_PEER_ADVERTISE`).
fn peer_env(peer_fill: bool) -> Vec<EnvVar> {
    if !peer_fill {
        return Vec::new();
    }
    vec![
        EnvVar {
            name: "POD_IP".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: Some("v1".into()),
                    field_path: "status.podIP".into(),
                }),
                ..EnvVarSource::default()
            }),
        },
        EnvVar {
            name: "MODFLEET_PEER_ADVERTISE".into(),
            value: Some(format!("$(POD_IP):{}", tiers::peer_port())),
            value_from: None,
        },
    ]
}

fn otel_env(gmp: &GoModuleProxy) -> Vec<EnvVar> {
    let var = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        value_from: None,
    };
    let ratio = gmp
        .spec
        .telemetry
        .as_ref()
        .map(|t| t.sampling_ratio)
        .unwrap_or(0.1);
    let mut env = vec![
        var("OTEL_SERVICE_NAME", "modfleet-proxy".into()),
        var("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".into()),
        var("OTEL_TRACES_SAMPLER_ARG", ratio.to_string()),
    ];
    if let Some(t) = gmp
        .spec
        .telemetry
        .as_ref()
        .filter(|t| !t.otlp_endpoint.is_empty())
    {
        // otlpEndpoint is an OTLP/gRPC endpoint (the Collector's port 4317).
        env.insert(
            0,
            var("OTEL_EXPORTER_OTLP_ENDPOINT", t.otlp_endpoint.clone()),
        );
        env.insert(1, var("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()));
    }
    env
}

/// Violations of the `restricted` Pod Security Standard (v1.33 rules that apply to the
/// fields we set); empty when the pod spec passes. Used by unit tests and e2e.
pub fn restricted_violations(pod: &PodSpec) -> Vec<String> {
    let mut v = Vec::new();
    let psc = pod.security_context.clone().unwrap_or_default();
    if pod.host_network == Some(true) || pod.host_pid == Some(true) || pod.host_ipc == Some(true) {
        v.push("host namespaces".to_owned());
    }
    for vol in pod.volumes.iter().flatten() {
        let allowed = vol.config_map.is_some()
            || vol.empty_dir.is_some()
            || vol.persistent_volume_claim.is_some()
            || vol.secret.is_some()
            || vol.projected.is_some()
            || vol.downward_api.is_some()
            || vol.ephemeral.is_some()
            || vol.csi.is_some();
        if !allowed {
            v.push(format!("volume {} has a restricted type", vol.name));
        }
    }
    let pod_seccomp = psc.seccomp_profile.as_ref().map(|s| s.type_.as_str());
    let containers = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten());
    for c in containers {
        let sc = c.security_context.clone().unwrap_or_default();
        if sc.privileged == Some(true) {
            v.push(format!("{}: privileged", c.name));
        }
        if sc.allow_privilege_escalation != Some(false) {
            v.push(format!(
                "{}: allowPrivilegeEscalation must be false",
                c.name
            ));
        }
        let non_root = sc.run_as_non_root.or(psc.run_as_non_root);
        if non_root != Some(true) {
            v.push(format!("{}: runAsNonRoot must be true", c.name));
        }
        if sc.run_as_user.or(psc.run_as_user) == Some(0) {
            v.push(format!("{}: runAsUser must not be 0", c.name));
        }
        let seccomp = sc
            .seccomp_profile
            .as_ref()
            .map(|s| s.type_.as_str())
            .or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            v.push(format!("{}: seccompProfile must be RuntimeDefault", c.name));
        }
        let caps = sc.capabilities.clone().unwrap_or_default();
        if !caps.drop.iter().flatten().any(|d| d == "ALL") {
            v.push(format!("{}: capabilities must drop ALL", c.name));
        }
        if caps.add.iter().flatten().any(|a| a != "NET_BIND_SERVICE") {
            v.push(format!("{}: only NET_BIND_SERVICE may be added", c.name));
        }
        for p in c.ports.iter().flatten() {
            if p.host_port.is_some_and(|h| h != 0) {
                v.push(format!("{}: hostPort", c.name));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests;
