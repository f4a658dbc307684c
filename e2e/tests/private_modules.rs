//! e2e: a fleet with `privateModules` on the local cluster (`hack/cluster.sh up`), with the
//! operator running as a real process against the API server.
//!
//! What is checked is what the operator renders and how it follows the Secrets: the config's
//! `privateModules` with credential file paths, the Secrets mounted read-only with only the
//! keys they have, the Git egress, the pod template's credentials hash that rolls the members
//! when a Secret changes, and the `CredentialsMissing` condition when a Secret or a key is
//! missing. The members are kwok pods (no container runs), so whether the proxy reads these
//! keys is tested on the proxy's side, not here.

use std::time::Duration;

use modfleet_e2e::operator::{Operator, install_crd};
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT, Namespace, condition};
use serde_json::Value;

const PASSWORD: &str = "s3cret-token-e2e";
const ROTATED: &str = "n3w-token-e2e";
const SSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----e2e";
const HASH: &str = "modfleet.dev/credentials-hash";

/// Lifts the fleet's finalizer on drop (the operator stops before the namespace goes).
struct Env {
    op: Operator,
    ns: Namespace,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.ns.try_kubectl(&[
            "patch",
            "gmp/private",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
}

fn env() -> Env {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("op-private");
    // The API server itself refuses pods that break the restricted standard.
    ns.kubectl(&[
        "label",
        "namespace",
        ns.name(),
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]);
    // No health polling: its requeue (every poll interval) would reconcile a changed Secret
    // anyway; without it the next requeue is minutes away, so the Secret watch is what acts.
    let op = Operator::start(&ns, "op", &["--health-poll-interval", "0s"]);
    Env { op, ns }
}

fn basic_auth(password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: git-basic\ntype: kubernetes.io/basic-auth\nstringData:\n  username: ci\n  password: {password}\n"
    )
}

const SSH_AUTH: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: git-ssh\ntype: kubernetes.io/ssh-auth\nstringData:\n  ssh-privatekey: \"-----BEGIN OPENSSH PRIVATE KEY-----e2e\"\n  known_hosts: \"git.corp.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e\"\n";

const FLEET: &str = "apiVersion: modfleet.dev/v1alpha1
kind: GoModuleProxy
metadata:
  name: private
spec:
  replicas: 2
  upstreams:
    - url: https://goproxy.example.com
  privateModules:
    - pattern: git.corp.example.com/*
      credentialsSecretRef: {name: git-basic}
    - pattern: git.internal/*
      insecure: true
    - pattern: git.corp.example.com/team/lib
      repository:
        url: ssh://git@git.corp.example.com/team/lib.git
        root: git.corp.example.com/team/lib
      credentialsSecretRef: {name: git-ssh}
";

/// The end of the rendered config: `privateModules` is its last key.
const RENDERED: &str = "privateModules:
- pattern: git.corp.example.com/*
  credentials:
    usernameFile: /etc/modfleet-private/0/username
    passwordFile: /etc/modfleet-private/0/password
- pattern: git.internal/*
  insecure: true
- pattern: git.corp.example.com/team/lib
  repository:
    url: ssh://git@git.corp.example.com/team/lib.git
    root: git.corp.example.com/team/lib
  credentials:
    sshPrivateKeyFile: /etc/modfleet-private/2/ssh-privatekey
    sshKnownHostsFile: /etc/modfleet-private/2/known_hosts
";

/// The pod template's credentials hash of each member, in member order.
fn hashes(ns: &Namespace) -> Vec<Value> {
    (0..2)
        .map(|i| {
            let d = ns.get_json(&["deployment", &format!("private-{i}")]);
            d["spec"]["template"]["metadata"]["annotations"][HASH].clone()
        })
        .collect()
}

fn degraded(ns: &Namespace) -> Value {
    condition(&ns.get_json(&["gmp", "private"]), "Degraded")
}

/// Nothing the operator writes where people and tools read it carries a credential.
fn assert_no_credentials(ns: &Namespace, op: &Operator) {
    let mut places = vec![
        (
            "the GoModuleProxy",
            ns.kubectl(&["get", "gmp", "private", "-o", "json"]),
        ),
        (
            "the ConfigMap",
            ns.kubectl(&["get", "configmap", "private-config", "-o", "json"]),
        ),
        (
            "the Deployments",
            ns.kubectl(&["get", "deployments", "-o", "json"]),
        ),
        ("the Events", ns.kubectl(&["get", "events", "-o", "json"])),
    ];
    places.push(("the operator's log", op.logs()));
    for (what, text) in places {
        for secret in [PASSWORD, ROTATED, SSH_KEY] {
            assert!(
                !text.contains(secret),
                "{what} contains a credential: {text}"
            );
        }
    }
}

#[test]
fn private_modules_render_mounts_roll_on_secret_change_and_report_missing_secrets() {
    let env = env();
    let ns = &env.ns;
    ns.apply(&basic_auth(PASSWORD));
    ns.apply(SSH_AUTH);
    ns.apply(FLEET);
    ns.wait("gmp/private", "condition=Ready", DEFAULT_TIMEOUT);

    // The config names the files, by entry index, of the keys each Secret has.
    let cm = ns.get_json(&["configmap", "private-config"]);
    let yaml = cm["data"]["config.yaml"].as_str().expect("config.yaml");
    let (_, private) = yaml.split_once("privateModules:\n").expect(yaml);
    assert_eq!(format!("privateModules:\n{private}"), RENDERED);

    // Each Secret mounted read-only at /etc/modfleet-private/<index>, only its keys, 0400.
    let d = ns.get_json(&["deployment", "private-0"]);
    let pod = &d["spec"]["template"]["spec"];
    let volume = |name: &str| -> Value {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}: {pod}"))
            .clone()
    };
    for (name, secret, keys) in [
        ("private-0", "git-basic", ["username", "password"]),
        ("private-2", "git-ssh", ["ssh-privatekey", "known_hosts"]),
    ] {
        let v = volume(name);
        assert_eq!(v["secret"]["secretName"], secret, "{v}");
        assert_eq!(v["secret"]["defaultMode"], 0o400, "{v}");
        let items: Vec<&str> = v["secret"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["key"].as_str().unwrap())
            .collect();
        assert_eq!(items, keys, "{v}");
    }
    let mounts: Vec<(String, String, bool)> = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"].as_str().unwrap().starts_with("private-"))
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["mountPath"].as_str().unwrap().to_owned(),
                m["readOnly"] == true,
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("private-0".into(), "/etc/modfleet-private/0".into(), true),
            ("private-2".into(), "/etc/modfleet-private/2".into(), true),
        ]
    );

    // Git's ports to anywhere; 80 because one entry is insecure.
    let np = ns.get_json(&["networkpolicy", "private"]);
    let git_rule = np["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["port"] == 22)
        })
        .unwrap_or_else(|| panic!("no egress rule for port 22: {np}"));
    let ports: Vec<i64> = git_rule["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [443, 22, 80]);

    // A rotated password changes every member's template (one at a time): the fleet rolls.
    let before = hashes(ns);
    assert!(before.iter().all(Value::is_string), "{before:?}");
    assert_eq!(before[0], before[1]);
    let config_before = cm["data"]["config.yaml"].clone();
    ns.apply(&basic_auth(ROTATED));
    // Within 180s: less than the 5-minute requeue of a settled fleet, so only the Secret
    // watch can make this happen (without it, this wait times out).
    let after = ns.eventually(
        "both members on a new credentials hash",
        Duration::from_secs(180),
        || {
            let now = hashes(ns);
            now.iter()
                .all(|h| h.is_string() && *h != before[0])
                .then_some(now)
        },
    );
    assert_eq!(after[0], after[1]);
    ns.wait("gmp/private", "condition=Ready", DEFAULT_TIMEOUT);
    let cm = ns.get_json(&["configmap", "private-config"]);
    assert_eq!(
        cm["data"]["config.yaml"], config_before,
        "the config names files, not contents"
    );
    let rolled = ns.kubectl(&["get", "events", "-o", "jsonpath={.items[*].message}"]);
    for i in 0..2 {
        assert!(
            rolled.contains(&format!(
                "Updating private-{i} to the current configuration"
            )),
            "no rollout event for private-{i}: {rolled}"
        );
    }

    // The Secret deleted: Degraded, naming the Secret; the members are left as they run.
    let templates = |ns: &Namespace| -> Vec<Value> {
        (0..2)
            .map(|i| {
                ns.get_json(&["deployment", &format!("private-{i}")])["metadata"]["annotations"]
                    ["modfleet.dev/template-hash"]
                    .clone()
            })
            .collect()
    };
    let running = templates(ns);
    ns.kubectl(&["delete", "secret", "git-ssh"]);
    let d = ns.eventually("Degraded=True CredentialsMissing", DEFAULT_TIMEOUT, || {
        let d = degraded(ns);
        (d["status"] == "True").then_some(d)
    });
    assert_eq!(d["reason"], "CredentialsMissing", "{d}");
    let msg = d["message"].as_str().unwrap();
    assert!(
        msg.contains("privateModules[2].credentialsSecretRef: Secret git-ssh not found"),
        "{msg}"
    );
    assert_eq!(templates(ns), running, "nothing changed under the members");
    let g = ns.get_json(&["gmp", "private"]);
    assert_eq!(g["status"]["readyMembers"], 2, "{g}");

    // Back with a key missing: the condition names the key.
    ns.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: git-ssh\ntype: kubernetes.io/ssh-auth\nstringData:\n  ssh-privatekey: \"-----BEGIN OPENSSH PRIVATE KEY-----e2e\"\n",
    );
    ns.eventually("the condition names known_hosts", DEFAULT_TIMEOUT, || {
        let d = degraded(ns);
        d["message"]
            .as_str()
            .is_some_and(|m| m.contains("Secret git-ssh has no key known_hosts"))
            .then_some(())
    });

    // Whole again: the fleet converges without any change to the GoModuleProxy.
    ns.apply(SSH_AUTH);
    ns.eventually("Degraded=False", DEFAULT_TIMEOUT, || {
        (degraded(ns)["status"] == "False").then_some(())
    });
    ns.wait("gmp/private", "condition=Ready", DEFAULT_TIMEOUT);
    let reasons = ns.kubectl(&["get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(
        reasons.contains("CredentialsMissing"),
        "a Warning Event: {reasons}"
    );
    assert_no_credentials(ns, &env.op);
}

/// The API server itself (not only kube-cel in the unit tests) refuses bad entries with the
/// CRD's messages.
#[test]
fn the_api_server_refuses_bad_private_modules() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("op-private-invalid");
    let fleet = |entry: &str| {
        format!(
            "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: bad\nspec:\n  upstreams: [{{url: https://goproxy.example.com}}]\n  privateModules:\n    - {entry}\n"
        )
    };
    let cases = [
        (
            "{pattern: git.internal/*, repository: {url: http://git.internal/lib.git, root: git.internal/lib}}",
            "an http:// repository url needs insecure: true",
        ),
        (
            "{pattern: git.internal/*, repository: {url: ftp://git.internal/lib.git, root: git.internal/lib}}",
            "must be an absolute https:// or ssh:// URL",
        ),
        (
            "{pattern: git.internal/*, repository: {url: https://git.internal/lib.git, root: https://git.internal/lib}}",
            "repository root is a module path prefix",
        ),
        (
            "{pattern: \"a.example.com/*,b.example.com/*\"}",
            "without commas or spaces",
        ),
        (
            "{pattern: git.internal/*, credentialsSecretRef: {name: Git_Creds}}",
            "must be the name of a Secret",
        ),
    ];
    for (entry, want) in cases {
        let yaml = fleet(entry);
        let out = cluster.try_kubectl_stdin(&["--namespace", ns.name(), "apply", "-f", "-"], &yaml);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{yaml}");
        assert!(err.contains(want), "want {want:?} for\n{yaml}\ngot: {err}");
    }
    // insecure makes http:// acceptable.
    ns.apply(&fleet(
        "{pattern: git.internal/*, insecure: true, repository: {url: http://git.internal/lib.git, root: git.internal/lib}}",
    ));
}
