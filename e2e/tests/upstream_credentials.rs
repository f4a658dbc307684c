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

use modfleet_e2e::fleet_secrets::{SecretsEnv, item_keys, mounts, pod_spec, secret_volume};
use modfleet_e2e::operator::install_crd;
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT};

const PASSWORD: &str = "up-s3cret-e2e";
const TOKEN: &str = "up-t0ken-e2e";
const ROTATED: &str = "up-r0tated-e2e";

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

#[test]
fn upstream_credentials_render_mount_roll_on_secret_change_and_report_missing_secrets() {
    let env = SecretsEnv::start("op-upstream-creds", "upstream");
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
    let pod = pod_spec(ns, "upstream-0");
    for (name, secret, keys) in [
        ("upstream-0", "up-basic", vec!["username", "password"]),
        ("upstream-2", "up-token", vec!["token"]),
    ] {
        let (secret_name, mode, items) = secret_volume(&pod, name);
        assert_eq!(secret_name, secret, "{name}");
        assert_eq!(mode, 0o400, "{name}");
        assert_eq!(item_keys(&items), keys, "{name}");
    }
    assert_eq!(
        mounts(&pod, |n| n.starts_with("upstream-")),
        [
            ("upstream-0".into(), "/etc/modfleet-upstream/0".into(), true),
            ("upstream-2".into(), "/etc/modfleet-upstream/2".into(), true),
        ]
    );

    // A rotated token changes every member's template (one at a time): the fleet rolls.
    env.assert_rotation_rolls(2, || {
        ns.apply(&token(ROTATED));
    });

    // The Secret deleted: Degraded, naming the upstream and the Secret; the members are left
    // as they run.
    env.assert_missing_secret_degrades(
        2,
        "up-basic",
        "upstreams[0].credentialsSecretRef: Secret up-basic not found",
    );

    // Back with two kinds at once: the condition says to keep one.
    ns.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: up-basic\nstringData:\n  username: ci\n  password: up-s3cret-e2e\n  token: up-t0ken-e2e\n",
    );
    env.await_degraded_message("Secret up-basic holds keys of more than one kind");

    // Whole again: the fleet converges without any change to the GoModuleProxy.
    ns.kubectl(&["delete", "secret", "up-basic"]);
    ns.apply(BASIC);
    env.await_whole();
    env.assert_not_shown(&[PASSWORD, TOKEN, ROTATED]);
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
        ns.assert_refused(&fleet(entry), want);
    }
    // insecure makes http:// acceptable.
    ns.apply(&fleet(
        "{url: 'http://athens.internal:3000', insecure: true, credentialsSecretRef: {name: athens}}",
    ));
}
