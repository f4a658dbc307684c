//! e2e: a fleet whose upstreams need credentials (`spec.upstreams[].credentialsSecretRef`) on
//! the local cluster (`hack/cluster.sh up`), with the operator running as a real process
//! against the API server.
//!
//! What is checked is what the operator renders and how it follows the Secrets: the config's
//! upstreams naming the credential files, the Secrets mounted read-only under
//! `/etc/modfleet-upstream/<index>/` with only the keys of their kind, the pod template's
//! credentials hash that rolls the members when a Secret changes, and `CredentialsMissing`
//! when a Secret is missing or ambiguous. The members are kwok pods (no container runs): that
//! the proxy sends these files' credentials is tested on the proxy's side
//! (proxy/tests/upstream_credentials.rs).

use std::time::Duration;

use modfleet_e2e::operator::{Operator, install_crd};
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT, Namespace, condition};
use serde_json::Value;

const PASSWORD: &str = "up-s3cret-e2e";
const TOKEN: &str = "up-t0ken-e2e";
const ROTATED: &str = "up-r0tated-e2e";
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
            "gmp/upstream",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]);
    }
}

fn env() -> Env {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("op-upstream-creds");
    ns.kubectl(&[
        "label",
        "namespace",
        ns.name(),
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
    ]);
    // No health polling: its requeue would reconcile a changed Secret anyway; without it the
    // Secret watch is what acts.
    let op = Operator::start(&ns, "op", &["--health-poll-interval", "0s"]);
    Env { op, ns }
}

const BASIC: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: up-basic\ntype: kubernetes.io/basic-auth\nstringData:\n  username: ci\n  password: up-s3cret-e2e\n";

fn token(token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: up-token\nstringData:\n  token: {token}\n  unrelated: x\n"
    )
}

const FLEET: &str = "apiVersion: modfleet.dev/v1alpha1
kind: GoModuleProxy
metadata:
  name: upstream
spec:
  replicas: 2
  upstreams:
    - url: https://artifactory.corp.example/api/go/go
      credentialsSecretRef: {name: up-basic}
    - url: https://goproxy.example.com
    - url: https://nexus.corp.example/repository/go
      credentialsSecretRef: {name: up-token}
";

/// The config's `upstreams`, as rendered.
const RENDERED: &str = "upstreams:
- url: https://artifactory.corp.example/api/go/go
  weight: 1
  timeout: 30s
  credentials:
    usernameFile: /etc/modfleet-upstream/0/username
    passwordFile: /etc/modfleet-upstream/0/password
- url: https://goproxy.example.com
  weight: 1
  timeout: 30s
- url: https://nexus.corp.example/repository/go
  weight: 1
  timeout: 30s
  credentials:
    bearerTokenFile: /etc/modfleet-upstream/2/token
";

/// The lines of `key`'s value in a YAML document (up to the next top-level key).
fn top_level_block(yaml: &str, key: &str) -> String {
    let start = yaml
        .find(&format!("\n{key}:\n"))
        .unwrap_or_else(|| panic!("no {key} in {yaml}"))
        + 1;
    yaml[start..]
        .split_inclusive('\n')
        .enumerate()
        .take_while(|(i, line)| *i == 0 || line.starts_with(['-', ' ']))
        .map(|(_, line)| line)
        .collect()
}

/// The pod template's credentials hash of each member, in member order.
fn hashes(ns: &Namespace) -> Vec<Value> {
    (0..2)
        .map(|i| {
            let d = ns.get_json(&["deployment", &format!("upstream-{i}")]);
            d["spec"]["template"]["metadata"]["annotations"][HASH].clone()
        })
        .collect()
}

fn degraded(ns: &Namespace) -> Value {
    condition(&ns.get_json(&["gmp", "upstream"]), "Degraded")
}

/// Nothing the operator writes where people and tools read it carries a credential.
fn assert_no_credentials(ns: &Namespace, op: &Operator) {
    let places = [
        (
            "the GoModuleProxy",
            ns.kubectl(&["get", "gmp", "upstream", "-o", "json"]),
        ),
        (
            "the ConfigMap",
            ns.kubectl(&["get", "configmap", "upstream-config", "-o", "json"]),
        ),
        (
            "the Deployments",
            ns.kubectl(&["get", "deployments", "-o", "json"]),
        ),
        ("the Events", ns.kubectl(&["get", "events", "-o", "json"])),
        ("the operator's log", op.logs()),
    ];
    for (what, text) in places {
        for secret in [PASSWORD, TOKEN, ROTATED] {
            assert!(
                !text.contains(secret),
                "{what} contains a credential: {text}"
            );
        }
    }
}

#[test]
fn upstream_credentials_render_mount_roll_on_secret_change_and_report_missing_secrets() {
    let env = env();
    let ns = &env.ns;
    ns.apply(BASIC);
    ns.apply(&token(TOKEN));
    ns.apply(FLEET);
    ns.wait("gmp/upstream", "condition=Ready", DEFAULT_TIMEOUT);

    // The config names the files of each upstream's kind, by upstream index.
    let cm = ns.get_json(&["configmap", "upstream-config"]);
    let yaml = cm["data"]["config.yaml"].as_str().expect("config.yaml");
    assert_eq!(top_level_block(yaml, "upstreams"), RENDERED, "{yaml}");

    // Each Secret mounted read-only at /etc/modfleet-upstream/<index>, only its kind's keys,
    // 0400, beside (not inside) the ConfigMap's /etc/modfleet.
    let d = ns.get_json(&["deployment", "upstream-0"]);
    let pod = &d["spec"]["template"]["spec"];
    for (name, secret, keys) in [
        ("upstream-0", "up-basic", vec!["username", "password"]),
        ("upstream-2", "up-token", vec!["token"]),
    ] {
        let v = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}: {pod}"));
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
        .filter(|m| m["name"].as_str().unwrap().starts_with("upstream-"))
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
            ("upstream-0".into(), "/etc/modfleet-upstream/0".into(), true),
            ("upstream-2".into(), "/etc/modfleet-upstream/2".into(), true),
        ]
    );

    // A rotated token changes every member's template (one at a time): the fleet rolls.
    let before = hashes(ns);
    assert!(before.iter().all(Value::is_string), "{before:?}");
    assert_eq!(before[0], before[1]);
    let config_before = cm["data"]["config.yaml"].clone();
    ns.apply(&token(ROTATED));
    // Within 180s: less than the 5-minute requeue of a settled fleet, so only the Secret
    // watch can make this happen.
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
    ns.wait("gmp/upstream", "condition=Ready", DEFAULT_TIMEOUT);
    let cm = ns.get_json(&["configmap", "upstream-config"]);
    assert_eq!(
        cm["data"]["config.yaml"], config_before,
        "the config names files, not contents"
    );
    let rolled = ns.kubectl(&["get", "events", "-o", "jsonpath={.items[*].message}"]);
    for i in 0..2 {
        assert!(
            rolled.contains(&format!(
                "Updating upstream-{i} to the current configuration"
            )),
            "no rollout event for upstream-{i}: {rolled}"
        );
    }

    // The Secret deleted: Degraded, naming the upstream and the Secret; the members are left
    // as they run.
    let templates = |ns: &Namespace| -> Vec<Value> {
        (0..2)
            .map(|i| {
                ns.get_json(&["deployment", &format!("upstream-{i}")])["metadata"]["annotations"]
                    ["modfleet.dev/template-hash"]
                    .clone()
            })
            .collect()
    };
    let running = templates(ns);
    ns.kubectl(&["delete", "secret", "up-basic"]);
    let d = ns.eventually("Degraded=True CredentialsMissing", DEFAULT_TIMEOUT, || {
        let d = degraded(ns);
        (d["status"] == "True").then_some(d)
    });
    assert_eq!(d["reason"], "CredentialsMissing", "{d}");
    let msg = d["message"].as_str().unwrap();
    assert!(
        msg.contains("upstreams[0].credentialsSecretRef: Secret up-basic not found"),
        "{msg}"
    );
    assert_eq!(templates(ns), running, "nothing changed under the members");

    // Back with two kinds at once: the condition says to keep one.
    ns.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: up-basic\nstringData:\n  username: ci\n  password: up-s3cret-e2e\n  token: up-t0ken-e2e\n",
    );
    ns.eventually("the condition names the two kinds", DEFAULT_TIMEOUT, || {
        degraded(ns)["message"]
            .as_str()
            .is_some_and(|m| m.contains("Secret up-basic holds keys of more than one kind"))
            .then_some(())
    });

    // Whole again: the fleet converges without any change to the GoModuleProxy.
    ns.kubectl(&["delete", "secret", "up-basic"]);
    ns.apply(BASIC);
    ns.eventually("Degraded=False", DEFAULT_TIMEOUT, || {
        (degraded(ns)["status"] == "False").then_some(())
    });
    ns.wait("gmp/upstream", "condition=Ready", DEFAULT_TIMEOUT);
    assert_no_credentials(ns, &env.op);
}

/// The API server itself refuses credentials on plain http without `insecure`, and
/// credentials in an upstream's URL, with the CRD's messages.
#[test]
fn the_api_server_refuses_bad_upstream_credentials() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("op-upstream-creds-invalid");
    let fleet = |entry: &str| {
        format!(
            "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: bad\nspec:\n  upstreams:\n    - {entry}\n"
        )
    };
    let cases = [
        (
            "{url: 'http://athens.internal:3000', credentialsSecretRef: {name: athens}}",
            "credentialsSecretRef on an http:// url needs insecure: true",
        ),
        (
            "{url: 'https://ci:hunter2@goproxy.corp.example'}",
            "must not hold a user name or password",
        ),
        (
            "{url: 'https://goproxy.corp.example', credentialsSecretRef: {name: Up_Creds}}",
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
        "{url: 'http://athens.internal:3000', insecure: true, credentialsSecretRef: {name: athens}}",
    ));
}
