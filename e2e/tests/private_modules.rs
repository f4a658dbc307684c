//! e2e: a fleet with `privateModules` on the local cluster (`hack/cluster.sh up`), with the
//! operator running as a real process against the API server.
//!
//! What is checked is what the operator renders and how it follows the Secrets: the config's
//! `privateModules` with credential file paths, the Secrets mounted read-only with only the
//! keys they have, the Git egress, the pod template's credentials hash that rolls the members
//! when a Secret changes, and the `CredentialsMissing` condition when a Secret or a key is
//! missing. The members are kwok pods (no container runs), so whether the proxy reads these
//! keys is tested on the proxy's side, not here.

use modfleet_e2e::fleet_secrets::{SecretsEnv, item_keys, mounts, pod_spec, secret_volume};
use modfleet_e2e::operator::install_crd;
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT};

const PASSWORD: &str = "s3cret-token-e2e";
const ROTATED: &str = "n3w-token-e2e";
const SSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----e2e";

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

#[test]
fn private_modules_render_mounts_roll_on_secret_change_and_report_missing_secrets() {
    let env = SecretsEnv::start("op-private", "private");
    let ns = &env.ns;
    ns.apply(&basic_auth(PASSWORD));
    ns.apply(SSH_AUTH);
    ns.apply(FLEET);
    ns.wait("gmp/private", "condition=Ready", DEFAULT_TIMEOUT);

    // The config names the files, by entry index, of the keys each Secret has.
    let cm = ns.get_json(&["configmap", "private-config"]);
    let yaml = cm["data"]["config.yaml"].as_str().expect("config.yaml");
    let (_, private) = yaml.split_once("privateModules:\n").expect(yaml);
    // Up to the peer fill block that follows (on by default for PerMember fleets).
    let (private, _) = private.split_once("peerFill:\n").expect(yaml);
    assert_eq!(format!("privateModules:\n{private}"), RENDERED);

    // Each Secret mounted read-only at /etc/modfleet-private/<index>, only its keys, 0400.
    let pod = pod_spec(ns, "private-0");
    for (name, secret, keys) in [
        ("private-0", "git-basic", ["username", "password"]),
        ("private-2", "git-ssh", ["ssh-privatekey", "known_hosts"]),
    ] {
        let (secret_name, mode, items) = secret_volume(&pod, name);
        assert_eq!(secret_name, secret, "{name}");
        assert_eq!(mode, 0o400, "{name}");
        assert_eq!(item_keys(&items), keys, "{name}");
    }
    assert_eq!(
        mounts(&pod, |n| n.starts_with("private-")),
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
    env.assert_rotation_rolls(2, || {
        ns.apply(&basic_auth(ROTATED));
    });

    // The Secret deleted: Degraded, naming the Secret; the members are left as they run.
    env.assert_missing_secret_degrades(
        2,
        "git-ssh",
        "privateModules[2].credentialsSecretRef: Secret git-ssh not found",
    );
    let g = ns.get_json(&["gmp", "private"]);
    assert_eq!(g["status"]["readyMembers"], 2, "{g}");

    // Back with a key missing: the condition names the key.
    ns.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: git-ssh\ntype: kubernetes.io/ssh-auth\nstringData:\n  ssh-privatekey: \"-----BEGIN OPENSSH PRIVATE KEY-----e2e\"\n",
    );
    env.await_degraded_message("Secret git-ssh has no key known_hosts");

    // Whole again: the fleet converges without any change to the GoModuleProxy.
    ns.apply(SSH_AUTH);
    env.await_whole();
    let reasons = ns.kubectl(&["get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(
        reasons.contains("CredentialsMissing"),
        "a Warning Event: {reasons}"
    );
    env.assert_not_shown(&[PASSWORD, ROTATED, SSH_KEY]);
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
        ns.assert_refused(&fleet(entry), want);
    }
    // insecure makes http:// acceptable.
    ns.apply(&fleet(
        "{pattern: git.internal/*, insecure: true, repository: {url: http://git.internal/lib.git, root: git.internal/lib}}",
    ));
}
