//! A pod of a Deployment run the way a kubelet runs it, with the real podman: what kwok cannot
//! show. [`KubeletPod::of_deployment`] takes the Deployment and the ConfigMaps, Secrets and
//! claims it names exactly as the operator rendered them on the API server, and
//! [`KubeletPod::run`] starts the pod's container:
//!
//! - a network namespace of its own (a kubelet's pod sandbox), which the container joins;
//! - the image by its normalized name (`modfleet/x:1` is `docker.io/modfleet/x:1`, as every
//!   CRI reads it), never pulled (`IfNotPresent` with the image present);
//! - `command` as the entrypoint, `args`, `env`: values, and the downward API's
//!   `fieldRef` to `status.podIP`, `metadata.name` and `metadata.namespace` (the kwok pod's,
//!   as the API server has them); `$(VAR)` references to earlier variables expanded in env
//!   values, command and args, `$$` as `$`, unknown references left as written;
//! - `automountServiceAccountToken: true`: the service account's token (made with
//!   `kubectl create token`), the cluster's CA and the namespace as files in
//!   `/var/run/secrets/kubernetes.io/serviceaccount` (read-only, 0644 as a kubelet's projected
//!   volume), `KUBERNETES_SERVICE_HOST`/`_PORT` set, and the API server reachable at them
//!   from inside the pod's namespace (forwarded to the real one);
//! - volumes: a ConfigMap's keys as files (read-only), a Secret's keys (or its `items`) as
//!   files with their modes (read-only), a PersistentVolumeClaim as the directory
//!   of its bound PersistentVolume (a per-test directory: kwok's nodes have no disks), an
//!   emptyDir as a fresh world-writable directory; `fsGroup` applied to them as a kubelet does
//!   (group-owned, setgid directories; group-writable, or group-readable for ConfigMaps and
//!   Secrets); mounts nested in a read-only mount fail as they do under runc;
//! - the securityContext (container over pod): user and group, `fsGroup` and supplemental
//!   groups, read-only root file system (no extra tmpfs), `allowPrivilegeEscalation: false` as
//!   no_new_privs, dropped/added capabilities, `RuntimeDefault` seccomp, `runAsNonRoot` checked
//!   against the user it would run as, memory and CPU limits;
//! - probes polled on their ports inside the pod's namespace (httpGet and tcpSocket).
//!
//! Anything in the pod spec it cannot reproduce (another volume type, `subPath`, `envFrom`, a
//! second container, ...) fails the test naming the field, so the check never silently covers
//! less than the operator renders.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Namespace;
use crate::images::{Container, podman_ok};
use crate::netns::{Forwarder, NetNs};

/// A container probe (readiness, liveness or startup), as the pod spec says.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `Some(path)`: httpGet; `None`: tcpSocket.
    pub http_path: Option<String>,
    pub port: u16,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
}

/// The pod's container, running; removed (and its namespace and directories) on drop.
pub struct KubeletPod {
    /// Declared before `ns`: the container leaves the namespace before it is deleted.
    pub container: Container,
    /// The API server as the pod reaches it (with a service account token mounted).
    _to_api_server: Option<Forwarder>,
    pub ns: NetNs,
    /// Named container ports (`http`, `admin`, ...).
    pub ports: BTreeMap<String, u16>,
    pub readiness: Option<Probe>,
    pub liveness: Option<Probe>,
    /// Host directories standing in for the pod's volumes, by volume name.
    pub volumes: BTreeMap<String, PathBuf>,
    /// The uid:gid the container runs as (resolved as a kubelet would).
    pub user: (u32, u32),
    dir: PathBuf,
}

/// What a kubelet knows of the pod it runs beyond its template: the downward API's fields,
/// and the API server with the service account's token when the pod mounts one.
#[derive(Clone, Debug)]
pub struct PodIdentity {
    pub name: String,
    pub namespace: String,
    pub ip: IpAddr,
    pub api: Option<ApiAccess>,
}

/// The service account token mount's contents and the API server (in the test's namespace).
#[derive(Clone, Debug)]
pub struct ApiAccess {
    pub token: String,
    pub ca_pem: Vec<u8>,
    pub server: SocketAddr,
}

/// Where a kubelet mounts the service account token.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The `kubernetes` Service's port, as `KUBERNETES_SERVICE_PORT` says it in a pod.
const API_PORT_IN_POD: u16 = 443;

/// `$(VAR)` expanded from `vars` as a kubelet expands env values, command and args: `$$` is a
/// literal `$`, a reference to an unknown variable (or an unclosed one) stays as written.
pub fn expand(value: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&rest[i..i + 2 + end + 1]),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn unsupported(what: &str, value: &Value) -> ! {
    panic!(
        "the pod runner cannot reproduce {what} = {value}: teach e2e/src/pod.rs how a kubelet \
         does it before relying on it"
    )
}

/// Fails on keys of `obj` outside `known` (fields this runner would otherwise ignore).
fn only_known(what: &str, obj: &Value, known: &[&str]) {
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if !known.contains(&k.as_str()) {
                unsupported(&format!("{what}.{k}"), v);
            }
        }
    }
}

/// `modfleet/x:1` → `docker.io/modfleet/x:1`, `x` → `docker.io/library/x:latest`: the
/// normalization every CRI applies to a reference without a registry host.
pub fn normalize_image(reference: &str) -> String {
    let (first, rest) = reference.split_once('/').unwrap_or(("", reference));
    let qualified = if !first.is_empty()
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        reference.to_owned()
    } else if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else {
        format!("docker.io/{reference}")
    };
    let last = qualified.rsplit('/').next().unwrap_or_default();
    if last.contains(':') || last.contains('@') {
        qualified
    } else {
        format!("{qualified}:latest")
    }
}

fn secs(v: &Value, default: u64) -> Duration {
    Duration::from_secs(v.as_u64().unwrap_or(default))
}

fn probe(v: &Value, ports: &BTreeMap<String, u16>) -> Option<Probe> {
    if v.is_null() {
        return None;
    }
    only_known(
        "probe",
        v,
        &[
            "httpGet",
            "tcpSocket",
            "initialDelaySeconds",
            "periodSeconds",
            "timeoutSeconds",
            "failureThreshold",
            "successThreshold",
        ],
    );
    let port_of = |p: &Value| -> u16 {
        match p {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()).unwrap(),
            Value::String(name) => *ports
                .get(name)
                .unwrap_or_else(|| panic!("probe port {name:?} is not a named container port")),
            _ => unsupported("probe port", p),
        }
    };
    let (http_path, port) = if !v["httpGet"].is_null() {
        let h = &v["httpGet"];
        only_known("httpGet", h, &["path", "port", "scheme"]);
        if h["scheme"].as_str().is_some_and(|s| s != "HTTP") {
            unsupported("httpGet.scheme", &h["scheme"]);
        }
        (
            Some(h["path"].as_str().unwrap_or("/").to_owned()),
            port_of(&h["port"]),
        )
    } else if !v["tcpSocket"].is_null() {
        (None, port_of(&v["tcpSocket"]["port"]))
    } else {
        unsupported("probe handler", v)
    };
    Some(Probe {
        http_path,
        port,
        initial_delay: secs(&v["initialDelaySeconds"], 0),
        period: secs(&v["periodSeconds"], 10),
        timeout: secs(&v["timeoutSeconds"], 1),
        failure_threshold: v["failureThreshold"].as_u64().unwrap_or(3) as u32,
    })
}

/// Applies `fsGroup` to a volume directory as the kubelet's SetVolumeOwnership does: group
/// read and write, or read only for read-only volumes (ConfigMaps, Secrets).
fn apply_fs_group(dir: &Path, gid: u32, writable: bool) {
    let out = Command::new("chgrp")
        .args(["-R", &gid.to_string()])
        .arg(dir)
        .output()
        .expect("chgrp");
    assert!(out.status.success(), "chgrp: {out:?}");
    let out = Command::new("chmod")
        .args(["-R", if writable { "g+rwX" } else { "g+rX" }])
        .arg(dir)
        .output()
        .expect("chmod");
    assert!(out.status.success(), "chmod: {out:?}");
    let out = Command::new("find")
        .arg(dir)
        .args(["-type", "d", "-exec", "chmod", "g+s", "{}", "+"])
        .output()
        .expect("find");
    assert!(out.status.success(), "chmod g+s: {out:?}");
}

/// The ConfigMap or Secret `name` among `sources`.
fn source<'a>(sources: &'a [Value], kind: &str, name: &str) -> &'a Value {
    sources
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the pod mounts {kind} {name}, not given"))
}

/// Writes a ConfigMap's or Secret's files (path relative to the volume, bytes, mode).
fn write_files(dir: &Path, files: impl IntoIterator<Item = (String, Vec<u8>, u32)>) {
    std::fs::create_dir_all(dir).unwrap();
    for (path, bytes, mode) in files {
        assert!(
            !path.starts_with('/') && !path.split('/').any(|c| c == ".." || c.is_empty()),
            "a kubelet refuses the volume path {path:?}"
        );
        let f = dir.join(&path);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, bytes).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl PodIdentity {
    /// The (kwok) pod of `deployment` as the API server has it: its name, namespace and IP;
    /// with a service account token mounted, a fresh token of its ServiceAccount and the
    /// cluster's API server and CA.
    pub fn of_deployment(ns: &Namespace, deployment: &Value) -> PodIdentity {
        let selector: Vec<String> = deployment["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("the Deployment selects by labels")
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect();
        let pods = ns.get_json(&["pods", "-l", &selector.join(",")]);
        let pod = pods["items"]
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .find(|p| p["metadata"]["deletionTimestamp"].is_null())
            })
            .unwrap_or_else(|| panic!("no pod of {selector:?} on the API server"));
        let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
        let ip = pod["status"]["podIP"]
            .as_str()
            .unwrap_or_else(|| panic!("pod {name} has no IP yet"))
            .parse()
            .unwrap();
        let spec = &deployment["spec"]["template"]["spec"];
        let api = (spec["automountServiceAccountToken"] == Value::Bool(true)).then(|| {
            let sa = spec["serviceAccountName"].as_str().unwrap_or("default");
            let token = ns.kubectl(&["create", "token", sa, "--duration", "1h"]);
            let dir = std::env::temp_dir().join(format!("modfleet-e2e-ca-{}", ns.name()));
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            let (server, ca) = ns.cluster().api_server(&dir);
            let server = server
                .strip_prefix("https://")
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| {
                    panic!("the kubeconfig's server {server} is not https://IP:PORT")
                });
            let ca_pem = std::fs::read(ca).expect("the CA just written");
            let _ = std::fs::remove_dir_all(&dir);
            ApiAccess {
                token: token.trim().to_owned(),
                ca_pem,
                server,
            }
        });
        PodIdentity {
            name,
            namespace: ns.name().to_owned(),
            ip,
            api,
        }
    }
}

impl KubeletPod {
    /// Runs the first pod of Deployment `name` in `ns` with the ConfigMaps and Secrets its
    /// volumes name and its claims' bound volumes, all as they are on the API server now.
    pub fn of_deployment(ns: &Namespace, name: &str, volumes_root: &Path) -> KubeletPod {
        KubeletPod::of_deployment_at(ns, name, volumes_root, None)
    }

    /// As [`KubeletPod::of_deployment`], with `ip` as the pod's IP (`status.podIP` in the
    /// downward API) instead of the kwok pod's: kwok's are loopback addresses, which
    /// EndpointSlices refuse, so pods that find each other through a slice get others.
    pub fn of_deployment_at(
        ns: &Namespace,
        name: &str,
        volumes_root: &Path,
        ip: Option<IpAddr>,
    ) -> KubeletPod {
        let dep = ns.get_json(&["deployment", name]);
        let mut sources = Vec::new();
        let mut claims = BTreeMap::new();
        for v in dep["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(cm) = v["configMap"]["name"].as_str() {
                sources.push(ns.get_json(&["configmap", cm]));
            } else if let Some(secret) = v["secret"]["secretName"].as_str() {
                sources.push(ns.get_json(&["secret", secret]));
            } else if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
                let pvc = ns.get_json(&["pvc", claim]);
                assert_eq!(
                    pvc["status"]["phase"], "Bound",
                    "a kubelet would wait for the claim: {pvc}"
                );
                claims.insert(
                    claim.to_owned(),
                    pvc["spec"]["volumeName"].as_str().unwrap().to_owned(),
                );
            }
        }
        let mut identity = PodIdentity::of_deployment(ns, &dep);
        if let Some(ip) = ip {
            identity.ip = ip;
        }
        KubeletPod::run(&dep, &sources, &claims, volumes_root, &identity)
    }

    /// Runs the first (only) pod of `deployment`. `sources` are the ConfigMaps and Secrets
    /// its volumes may name; `claims` maps each PersistentVolumeClaim name to the bound
    /// PersistentVolume's name (a directory of that name stands in for the volume, kept across
    /// pods of one test when the same `volumes_root` is given).
    pub fn run(
        deployment: &Value,
        sources: &[Value],
        claims: &BTreeMap<String, String>,
        volumes_root: &Path,
        identity: &PodIdentity,
    ) -> KubeletPod {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let template = &deployment["spec"]["template"];
        let spec = &template["spec"];
        only_known(
            "pod spec",
            spec,
            &[
                "containers",
                "volumes",
                "securityContext",
                "serviceAccountName",
                "automountServiceAccountToken",
                "enableServiceLinks",
                "terminationGracePeriodSeconds",
                // Scheduling only: where the pod runs, not how.
                "nodeSelector",
                "tolerations",
                "affinity",
                "topologySpreadConstraints",
                "priorityClassName",
                "imagePullSecrets",
                // Defaults the API server fills in (serviceAccount: the deprecated alias of
                // serviceAccountName).
                "serviceAccount",
                "restartPolicy",
                "dnsPolicy",
                "schedulerName",
            ],
        );
        let api = match &spec["automountServiceAccountToken"] {
            Value::Bool(false) => None,
            Value::Bool(true) => Some(identity.api.as_ref().unwrap_or_else(|| {
                panic!("the pod mounts its service account token: give PodIdentity an ApiAccess")
            })),
            // Unset: the ServiceAccount decides; say it in the template.
            other => unsupported("automountServiceAccountToken", other),
        };
        let containers = spec["containers"].as_array().expect("containers");
        if containers.len() != 1 {
            unsupported("containers (more than one)", &spec["containers"]);
        }
        let c = &containers[0];
        only_known(
            "container",
            c,
            &[
                "name",
                "image",
                "imagePullPolicy",
                "command",
                "args",
                "env",
                "ports",
                "readinessProbe",
                "livenessProbe",
                "resources",
                "securityContext",
                "volumeMounts",
                "terminationMessagePath",
                "terminationMessagePolicy",
            ],
        );
        let dir = std::env::temp_dir().join(format!(
            "modfleet-e2e-pod-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("pod directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();

        let mut args: Vec<String> = vec!["--pull=never".into()];
        let pod_name = format!(
            "{}-kubelet",
            deployment["metadata"]["name"].as_str().unwrap_or("pod")
        );
        args.push(format!("--hostname={pod_name}"));

        // Image: IfNotPresent (the default for a tag other than latest) or Never.
        let image = c["image"].as_str().expect("container image");
        match c["imagePullPolicy"].as_str() {
            None | Some("IfNotPresent") | Some("Never") => {}
            Some(_) => unsupported(
                "imagePullPolicy (nothing can be pulled here)",
                &c["imagePullPolicy"],
            ),
        }
        let image = normalize_image(image);

        // Security context: the container's fields win over the pod's.
        let psc = &spec["securityContext"];
        let csc = &c["securityContext"];
        only_known(
            "pod securityContext",
            psc,
            &[
                "runAsUser",
                "runAsGroup",
                "runAsNonRoot",
                "fsGroup",
                "supplementalGroups",
                "seccompProfile",
            ],
        );
        only_known(
            "container securityContext",
            csc,
            &[
                "runAsUser",
                "runAsGroup",
                "runAsNonRoot",
                "readOnlyRootFilesystem",
                "allowPrivilegeEscalation",
                "capabilities",
                "seccompProfile",
                "privileged",
            ],
        );
        let field = |k: &str| -> &Value { if csc[k].is_null() { &psc[k] } else { &csc[k] } };
        let image_user = podman_ok(&["image", "inspect", "--format", "{{.Config.User}}", &image])
            .trim()
            .to_owned();
        let (img_uid, img_gid) = match image_user.split_once(':') {
            Some((u, g)) => (u.to_owned(), Some(g.to_owned())),
            None => (image_user.clone(), None),
        };
        let uid: u32 = match field("runAsUser").as_u64() {
            Some(u) => u as u32,
            None if img_uid.is_empty() => 0,
            None => img_uid.parse().unwrap_or_else(|_| {
                panic!(
                    "image user {image_user:?} is not numeric: a kubelet cannot check runAsNonRoot"
                )
            }),
        };
        let gid: u32 = match field("runAsGroup").as_u64() {
            Some(g) => g as u32,
            None => img_gid.and_then(|g| g.parse().ok()).unwrap_or(0),
        };
        if field("runAsNonRoot") == &Value::Bool(true) {
            assert_ne!(
                uid, 0,
                "runAsNonRoot: the container would run as root; a kubelet refuses to start it"
            );
        }
        args.push(format!("--user={uid}:{gid}"));
        let fs_group = psc["fsGroup"].as_u64().map(|g| g as u32);
        for g in fs_group.iter().copied().chain(
            psc["supplementalGroups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_u64().map(|g| g as u32)),
        ) {
            args.push(format!("--group-add={g}"));
        }
        if csc["privileged"] == Value::Bool(true) {
            unsupported("privileged", &csc["privileged"]);
        }
        if csc["readOnlyRootFilesystem"] == Value::Bool(true) {
            // A kubelet mounts nothing writable that the pod spec does not ask for.
            args.push("--read-only".into());
            args.push("--read-only-tmpfs=false".into());
        }
        if csc["allowPrivilegeEscalation"] == Value::Bool(false) {
            args.push("--security-opt=no-new-privileges".into());
        }
        let caps = &csc["capabilities"];
        only_known("capabilities", caps, &["drop", "add"]);
        for cap in caps["drop"].as_array().into_iter().flatten() {
            args.push(format!(
                "--cap-drop={}",
                cap.as_str().unwrap().to_lowercase()
            ));
        }
        for cap in caps["add"].as_array().into_iter().flatten() {
            args.push(format!(
                "--cap-add={}",
                cap.as_str().unwrap().to_lowercase()
            ));
        }
        match field("seccompProfile")["type"].as_str() {
            // Podman's default profile is the runtime's default, as containerd's and CRI-O's.
            Some("RuntimeDefault") => {}
            Some("Unconfined") => args.push("--security-opt=seccomp=unconfined".into()),
            None => unsupported(
                "seccompProfile (unset: a kubelet runs Unconfined)",
                &Value::Null,
            ),
            Some(_) => unsupported("seccompProfile", field("seccompProfile")),
        }
        if let Some(t) = spec["terminationGracePeriodSeconds"].as_u64() {
            args.push(format!("--stop-timeout={t}"));
        }

        // Resources: limits are what the runtime enforces (requests only schedule).
        let res = &c["resources"];
        only_known("resources", res, &["limits", "requests"]);
        if let Some(m) = res["limits"]["memory"].as_str() {
            args.push(format!("--memory={}", quantity_bytes(m)));
        }
        if let Some(cpu) = res["limits"]["cpu"].as_str() {
            args.push(format!("--cpus={}", quantity_cpus(cpu)));
        }

        // Environment: the kubelet's own first (the API server, as the `kubernetes` Service),
        // then the container's in order, each expanded with those before it.
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        if api.is_some() {
            env.insert("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into());
            env.insert(
                "KUBERNETES_SERVICE_PORT".into(),
                API_PORT_IN_POD.to_string(),
            );
        }
        for e in c["env"].as_array().into_iter().flatten() {
            only_known("env", e, &["name", "value", "valueFrom"]);
            let name = e["name"].as_str().unwrap().to_owned();
            let value = if e["valueFrom"].is_null() {
                expand(e["value"].as_str().unwrap_or_default(), &env)
            } else {
                let from = &e["valueFrom"];
                only_known("env valueFrom", from, &["fieldRef"]);
                only_known("fieldRef", &from["fieldRef"], &["fieldPath", "apiVersion"]);
                match from["fieldRef"]["fieldPath"].as_str() {
                    Some("status.podIP") => identity.ip.to_string(),
                    Some("metadata.name") => identity.name.clone(),
                    Some("metadata.namespace") => identity.namespace.clone(),
                    _ => unsupported("env valueFrom.fieldRef", &from["fieldRef"]),
                }
            };
            env.insert(name, value);
        }
        for (name, value) in &env {
            args.push(format!("--env={name}={value}"));
        }

        // Volumes and mounts.
        let mut volumes = BTreeMap::new();
        for v in spec["volumes"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().expect("volume name").to_owned();
            let host = dir.join("volumes").join(&name);
            let mut writable = true;
            if !v["configMap"].is_null() {
                let cm_src = &v["configMap"];
                only_known("configMap volume", cm_src, &["name", "defaultMode"]);
                let cm = source(sources, "ConfigMap", cm_src["name"].as_str().unwrap());
                let mode = cm_src["defaultMode"].as_u64().unwrap_or(0o644) as u32;
                let files = cm["data"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec(), mode));
                write_files(&host, files);
                writable = false;
            } else if !v["secret"].is_null() {
                let src = &v["secret"];
                only_known(
                    "secret volume",
                    src,
                    &["secretName", "items", "defaultMode", "optional"],
                );
                let secret = source(sources, "Secret", src["secretName"].as_str().unwrap());
                let mode = src["defaultMode"].as_u64().unwrap_or(0o644) as u32;
                let data = crate::secret_data(secret);
                let files: Vec<(String, Vec<u8>, u32)> = match src["items"].as_array() {
                    // A missing key keeps a kubelet from starting the pod.
                    Some(items) => items
                        .iter()
                        .map(|item| {
                            only_known("secret item", item, &["key", "path", "mode"]);
                            let key = item["key"].as_str().unwrap();
                            let bytes = data.get(key).unwrap_or_else(|| {
                                panic!("Secret has no key {key}: a kubelet would not start the pod")
                            });
                            let m = item["mode"].as_u64().map_or(mode, |m| m as u32);
                            (item["path"].as_str().unwrap().to_owned(), bytes.clone(), m)
                        })
                        .collect(),
                    None => data.into_iter().map(|(k, b)| (k, b, mode)).collect(),
                };
                write_files(&host, files);
                writable = false;
            } else if !v["persistentVolumeClaim"].is_null() {
                let claim = v["persistentVolumeClaim"]["claimName"].as_str().unwrap();
                let pv = claims.get(claim).unwrap_or_else(|| {
                    panic!("claim {claim} is not bound to a volume (a kubelet would wait)")
                });
                let pv_dir = volumes_root.join(pv);
                std::fs::create_dir_all(&pv_dir).unwrap();
                volumes.insert(name.clone(), pv_dir.clone());
                if let Some(g) = fs_group {
                    apply_fs_group(&pv_dir, g, true);
                }
                continue;
            } else if !v["emptyDir"].is_null() {
                // sizeLimit is enforced by eviction, not at the mount.
                only_known("emptyDir", &v["emptyDir"], &["sizeLimit"]);
                std::fs::create_dir_all(&host).unwrap();
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o777)).unwrap();
            } else {
                unsupported(&format!("volume {name}"), v);
            }
            if let Some(g) = fs_group {
                apply_fs_group(&host, g, writable);
            }
            volumes.insert(name, host);
        }
        // ConfigMap and Secret volumes are always mounted read-only by the kubelet.
        let read_only_volumes: Vec<String> = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| !v["configMap"].is_null() || !v["secret"].is_null())
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .collect();
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            only_known("volumeMount", m, &["name", "mountPath", "readOnly"]);
            let name = m["name"].as_str().unwrap();
            let host = volumes
                .get(name)
                .unwrap_or_else(|| panic!("volumeMount {name} names no volume"));
            let ro =
                m["readOnly"] == Value::Bool(true) || read_only_volumes.iter().any(|c| c == name);
            args.push(format!(
                "--volume={}:{}{}",
                host.display(),
                m["mountPath"].as_str().unwrap(),
                if ro { ":ro" } else { "" }
            ));
        }

        if let Some(api) = api {
            let host = dir.join("volumes").join("kube-api-access");
            write_files(
                &host,
                [
                    ("token".to_owned(), api.token.clone().into_bytes(), 0o644),
                    ("ca.crt".to_owned(), api.ca_pem.clone(), 0o644),
                    (
                        "namespace".to_owned(),
                        identity.namespace.clone().into_bytes(),
                        0o644,
                    ),
                ],
            );
            if let Some(g) = fs_group {
                apply_fs_group(&host, g, false);
            }
            args.push(format!(
                "--volume={}:{SERVICE_ACCOUNT_DIR}:ro",
                host.display()
            ));
        }

        // Ports: named, for the probes; the pod's namespace holds them.
        let mut ports = BTreeMap::new();
        for p in c["ports"].as_array().into_iter().flatten() {
            only_known("port", p, &["name", "containerPort", "protocol"]);
            if let Some(name) = p["name"].as_str() {
                ports.insert(name.to_owned(), p["containerPort"].as_u64().unwrap() as u16);
            }
        }
        let readiness = probe(&c["readinessProbe"], &ports);
        let liveness = probe(&c["livenessProbe"], &ports);

        let ns = NetNs::create();
        let to_api_server = api.map(|a| Forwarder::out_of(&ns, API_PORT_IN_POD, a.server));
        args.push(format!("--network=ns:{}", ns.path().display()));
        if let Some(cmd) = c["command"].as_array() {
            let cmd: Vec<Value> = cmd
                .iter()
                .map(|a| Value::String(expand(a.as_str().expect("string command"), &env)))
                .collect();
            args.push(format!("--entrypoint={}", Value::Array(cmd)));
        }
        args.push(image);
        for a in c["args"].as_array().into_iter().flatten() {
            args.push(expand(a.as_str().expect("string arg"), &env));
        }
        let container = Container::run(&args);
        KubeletPod {
            container,
            _to_api_server: to_api_server,
            ns,
            ports,
            readiness,
            liveness,
            volumes,
            user: (uid, gid),
            dir,
        }
    }

    /// Runs `probe` once, as a kubelet does: success is an HTTP status from 200 to 399, or an
    /// accepted connection for tcpSocket.
    pub fn probe_once(&self, probe: &Probe) -> bool {
        match &probe.http_path {
            Some(path) => self
                .ns
                .http_status(probe.port, path, probe.timeout)
                .is_some_and(|s| (200..400).contains(&s)),
            None => {
                let (port, timeout) = (probe.port, probe.timeout);
                self.ns.run(move || {
                    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)
                        .is_ok()
                })
            }
        }
    }

    /// Polls the readiness probe (more often than its period, so the test is quick) until it
    /// succeeds; panics with the container's log if it has not after `initialDelaySeconds +
    /// periodSeconds * failureThreshold`, or if the container exits.
    pub fn wait_ready(&self) -> Duration {
        let probe = self
            .readiness
            .as_ref()
            .expect("the pod has a readiness probe");
        let start = Instant::now();
        let limit = probe.initial_delay + probe.period * probe.failure_threshold;
        loop {
            self.container.assert_running();
            if self.probe_once(probe) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "readiness probe {probe:?} failed for {limit:?}:\n{}",
                self.container.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for KubeletPod {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Bytes of a Kubernetes memory quantity (`512Mi`, `1G`, `1000`).
pub fn quantity_bytes(q: &str) -> u64 {
    let units: [(&str, u64); 10] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("", 1),
    ];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix)
            && let Ok(n) = n.parse::<u64>()
        {
            return n * mult;
        }
    }
    panic!("unsupported memory quantity {q:?}")
}

/// CPUs of a Kubernetes CPU quantity (`500m`, `2`).
pub fn quantity_cpus(q: &str) -> String {
    match q.strip_suffix('m') {
        Some(m) => format!("{:.3}", m.parse::<f64>().expect("millicores") / 1000.0),
        None => q.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_are_normalized_like_a_cri() {
        assert_eq!(
            normalize_image("modfleet/modfleet-proxy:0.1.0"),
            "docker.io/modfleet/modfleet-proxy:0.1.0"
        );
        assert_eq!(
            normalize_image("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_image("registry.example.com:5000/a/b@sha256:00"),
            "registry.example.com:5000/a/b@sha256:00"
        );
        assert_eq!(normalize_image("localhost/x"), "localhost/x:latest");
    }

    #[test]
    fn references_expand_as_a_kubelet_expands_them() {
        let vars: BTreeMap<String, String> = [("POD_IP".into(), "10.1.2.3".into())].into();
        assert_eq!(expand("$(POD_IP):7070", &vars), "10.1.2.3:7070");
        assert_eq!(expand("[$(POD_IP)]", &vars), "[10.1.2.3]");
        assert_eq!(expand("$$(POD_IP)", &vars), "$(POD_IP)");
        assert_eq!(expand("$(NOPE):1", &vars), "$(NOPE):1");
        assert_eq!(expand("a$b$(POD_IP", &vars), "a$b$(POD_IP");
        assert_eq!(expand("$(POD_IP)$(POD_IP)", &vars), "10.1.2.310.1.2.3");
        assert_eq!(expand("no refs", &vars), "no refs");
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("512Mi"), 512 << 20);
        assert_eq!(quantity_bytes("1G"), 1_000_000_000);
        assert_eq!(quantity_cpus("250m"), "0.250");
        assert_eq!(quantity_cpus("2"), "2");
    }
}
