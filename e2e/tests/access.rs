//! e2e: a fleet with `spec.tls` and `spec.access` on the local cluster (`hack/cluster.sh up`),
//! with the operator running as a real process against the API server.
//!
//! What is checked is what the operator renders and how it follows the Secrets: the config's
//! `tls` and `access` naming the mounted files, the TLS Secret (certificate and key only) and
//! the tokens Secrets mounted read-only beside the config, the operator's own token Secret
//! (made once, kept across reconciles and operator restarts, made anew when tampered with,
//! deleted when `spec.access` goes), a rotated tokens Secret rolling the members while a
//! renewed certificate does not, `https://` in `status.endpoint`, and `CredentialsMissing`
//! for a missing Secret or key. The members are kwok pods (no container runs): that the proxy
//! serves HTTPS and enforces the rules is tested on the proxy's side.

use std::io::Write;
use std::process::{Command, Stdio};

use modfleet_e2e::fleet_secrets::{SecretsEnv, item_keys, mounts, pod_spec, secret_volume};
use modfleet_e2e::operator::{Operator, install_crd};
use modfleet_e2e::{Cluster, DEFAULT_TIMEOUT, Namespace};
use serde_json::Value;

const CI_LINE: &str =
    "ci-bot sha256:1111111111111111111111111111111111111111111111111111111111111111 ci";
const OPS_LINE: &str =
    "alice sha256:2222222222222222222222222222222222222222222222222222222222222222 ops";
const ROTATED_LINE: &str =
    "alice sha256:3333333333333333333333333333333333333333333333333333333333333333 ops";

fn tls(cert: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: guarded-tls\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: \"{cert}\"\n  tls.key: \"-----BEGIN PRIVATE KEY-----e2e\"\n  ca.crt: \"-----BEGIN CERTIFICATE-----ca\"\n"
    )
}

fn tokens(name: &str, key: &str, line: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  {key}: \"# e2e\\n{line}\\n\"\n"
    )
}

const FLEET: &str = "apiVersion: modfleet.dev/v1alpha1
kind: GoModuleProxy
metadata:
  name: guarded
spec:
  replicas: 2
  upstreams:
    - url: https://goproxy.example.com
  service:
    port: 443
  tls:
    secretName: guarded-tls
  access:
    tokenSecretRefs:
      - name: ci-tokens
      - name: ops-tokens
        key: lines
    rules:
      - modules: [git.corp.example.com/*]
        allow: [group:ci]
      - modules: ['*']
        allow: [anonymous]
    admin: [group:ops]
";

/// The end of the rendered config: `tls` and `access` are its last keys.
const RENDERED: &str = "tls:
  certFile: /etc/modfleet-tls/tls.crt
  keyFile: /etc/modfleet-tls/tls.key
access:
  tokensFiles:
  - /etc/modfleet-access/0/tokens
  - /etc/modfleet-access/1/tokens
  - /etc/modfleet-access/operator/tokens
  rules:
  - modules:
    - git.corp.example.com/*
    allow:
    - group:ci
  - modules:
    - '*'
    allow:
    - anonymous
  admin:
  - group:ops
  - modfleet-operator
";

/// `sha256:HEX` of `text`, as a tokens file holds a token's hash (coreutils' sha256sum).
fn sha256(text: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(text.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha256sum (coreutils) must be installed");
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", hex.split_whitespace().next().unwrap())
}

/// (uid, resourceVersion) of the operator's token Secret.
fn operator_secret(ns: &Namespace) -> (Value, Value) {
    let s = ns.get_json(&["secret", "guarded-operator-token"]);
    (
        s["metadata"]["uid"].clone(),
        s["metadata"]["resourceVersion"].clone(),
    )
}

/// Makes the operator reconcile (a change of the client Service's annotations) and waits
/// until it has: whatever it keeps, it has decided on by then.
fn reconciled(ns: &Namespace, mark: &str) {
    ns.kubectl(&[
        "patch",
        "gmp",
        "guarded",
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{{"service":{{"annotations":{{"e2e/mark":"{mark}"}}}}}}}}"#),
    ]);
    ns.eventually(
        &format!("Service annotated {mark}"),
        DEFAULT_TIMEOUT,
        || {
            let s = ns.get_json(&["service", "guarded"]);
            (s["metadata"]["annotations"]["e2e/mark"] == mark).then_some(())
        },
    );
}

#[test]
fn tls_and_access_render_mount_keep_the_operator_token_roll_on_tokens_and_report_missing_secrets() {
    let mut env = SecretsEnv::start("op-access", "guarded");
    let ns = &env.ns;
    ns.apply(&tls("-----BEGIN CERTIFICATE-----one"));
    ns.apply(&tokens("ci-tokens", "tokens", CI_LINE));
    ns.apply(&tokens("ops-tokens", "lines", OPS_LINE));
    ns.apply(FLEET);
    ns.wait("gmp/guarded", "condition=Ready", DEFAULT_TIMEOUT);

    // The config names the mounted files; the operator is an admin.
    let cm = ns.get_json(&["configmap", "guarded-config"]);
    let yaml = cm["data"]["config.yaml"].as_str().expect("config.yaml");
    let (_, tail) = yaml.split_once("\ntls:\n").expect(yaml);
    // Up to the peer fill block that follows (on by default for PerMember fleets).
    let (tail, _) = tail.split_once("peerFill:\n").expect(yaml);
    assert_eq!(format!("tls:\n{tail}"), RENDERED);

    // HTTPS: the endpoint says so, the client port is named for it.
    let g = ns.get_json(&["gmp", "guarded"]);
    assert_eq!(
        g["status"]["endpoint"],
        format!("https://guarded.{}.svc:443", ns.name())
    );
    let port = &ns.get_json(&["service", "guarded"])["spec"]["ports"][0];
    assert_eq!(
        (&port["name"], &port["port"], &port["targetPort"]),
        (&"https".into(), &443.into(), &"https".into()),
        "{port}"
    );

    // The Secrets mounted read-only, 0400, beside /etc/modfleet; the TLS Secret without
    // cert-manager's ca.crt; each tokens file as `tokens`; the operator's line only.
    let pod = pod_spec(ns, "guarded-0");
    for (volume, secret, items) in [
        (
            "tls",
            "guarded-tls",
            vec![("tls.crt", "tls.crt"), ("tls.key", "tls.key")],
        ),
        ("access-0", "ci-tokens", vec![("tokens", "tokens")]),
        ("access-1", "ops-tokens", vec![("lines", "tokens")]),
        (
            "access-operator",
            "guarded-operator-token",
            vec![("tokens", "tokens")],
        ),
    ] {
        let (name, mode, got) = secret_volume(&pod, volume);
        assert_eq!((name.as_str(), mode), (secret, 0o400), "{volume}");
        let got: Vec<(&str, &str)> = got.iter().map(|(k, p)| (k.as_str(), p.as_str())).collect();
        assert_eq!(got, items, "{volume}");
    }
    assert_eq!(
        mounts(&pod, |n| n == "tls" || n.starts_with("access-")),
        [
            ("tls".into(), "/etc/modfleet-tls".into(), true),
            ("access-0".into(), "/etc/modfleet-access/0".into(), true),
            ("access-1".into(), "/etc/modfleet-access/1".into(), true),
            (
                "access-operator".into(),
                "/etc/modfleet-access/operator".into(),
                true
            ),
        ]
    );

    // The operator's Secret: owned by the fleet, its token and that token's line.
    let s = ns.get_json(&["secret", "guarded-operator-token"]);
    let owner = &s["metadata"]["ownerReferences"][0];
    assert_eq!(
        (&owner["kind"], &owner["uid"], &owner["controller"]),
        (&"GoModuleProxy".into(), &g["metadata"]["uid"], &true.into()),
        "{s}"
    );
    let token = ns.secret_key("guarded-operator-token", "token");
    assert!(
        token.starts_with("mf_") && token.len() == 46,
        "a generated token"
    );
    assert_eq!(
        ns.secret_key("guarded-operator-token", "tokens"),
        format!("modfleet-operator {}\n", sha256(&token))
    );
    assert_eq!(
        item_keys(&secret_volume(&pod, "access-operator").2),
        ["tokens"]
    );

    // Kept: neither a reconcile nor a new operator process makes it anew, nor rolls anyone.
    let kept = operator_secret(ns);
    let hashes = env.credentials_hashes(2);
    let templates = env.template_hashes(2);
    reconciled(ns, "one");
    assert_eq!(operator_secret(ns), kept, "the Secret was written again");
    env.op.stop();
    env.op = Operator::start(ns, "op-again", &["--health-poll-interval", "0s"]);
    reconciled(ns, "two");
    assert_eq!(operator_secret(ns), kept, "a new operator made it anew");
    assert_eq!(env.credentials_hashes(2), hashes);

    // A renewed certificate is read in place by the proxy: no roll.
    ns.apply(&tls("-----BEGIN CERTIFICATE-----two"));
    reconciled(ns, "three");
    assert_eq!(
        env.credentials_hashes(2),
        hashes,
        "a renewal rolled the fleet"
    );
    let after_marks = env.template_hashes(2);
    assert_eq!(after_marks, templates, "the members' templates changed");

    // A rotated tokens file rolls the members.
    env.assert_rotation_rolls(2, || {
        ns.apply(&tokens("ops-tokens", "lines", ROTATED_LINE));
    });

    // Tampered with: made anew (a new Secret, a new token), and the members roll to it.
    let rolled = env.credentials_hashes(2);
    ns.kubectl(&[
        "patch",
        "secret",
        "guarded-operator-token",
        "--type=merge",
        "-p",
        r#"{"stringData":{"tokens":"modfleet-operator sha256:4444444444444444444444444444444444444444444444444444444444444444\n"}}"#,
    ]);
    ns.eventually("the operator's Secret made anew", DEFAULT_TIMEOUT, || {
        let out = ns.try_kubectl(&["get", "secret", "guarded-operator-token", "-o", "json"]);
        let s: Value = serde_json::from_slice(&out.stdout).ok()?;
        (s["metadata"]["uid"] != kept.0).then_some(())
    });
    let new_token = ns.secret_key("guarded-operator-token", "token");
    assert_ne!(new_token, token);
    assert_eq!(
        ns.secret_key("guarded-operator-token", "tokens"),
        format!("modfleet-operator {}\n", sha256(&new_token))
    );
    ns.eventually("the members on the new line", DEFAULT_TIMEOUT, || {
        let now = env.credentials_hashes(2);
        now.iter().all(|h| *h != rolled[0]).then_some(())
    });
    ns.wait("gmp/guarded", "condition=Ready", DEFAULT_TIMEOUT);

    // A tokens Secret deleted: Degraded naming the field, the members left as they run.
    env.assert_missing_secret_degrades(
        2,
        "ci-tokens",
        "access.tokenSecretRefs[0]: Secret ci-tokens not found",
    );
    // The TLS Secret without its key: named too.
    ns.kubectl(&["delete", "secret", "guarded-tls"]);
    ns.apply(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: guarded-tls\nstringData:\n  tls.crt: \"-----BEGIN CERTIFICATE-----\"\n",
    );
    env.await_degraded_message("tls.secretName: Secret guarded-tls has no key tls.key");
    // A token pasted where its hash belongs: the line is named, never the token.
    ns.apply(&tokens(
        "ci-tokens",
        "tokens",
        "ci-bot mf_pasted-token-e2e-0123456789",
    ));
    env.await_degraded_message("access.tokenSecretRefs[0]: Secret ci-tokens key tokens: line 2");

    // Whole again without a change to the GoModuleProxy.
    ns.kubectl(&["delete", "secret", "guarded-tls"]);
    ns.apply(&tls("-----BEGIN CERTIFICATE-----two"));
    ns.apply(&tokens("ci-tokens", "tokens", CI_LINE));
    env.await_whole();
    env.assert_not_shown(&[
        &token,
        &new_token,
        "mf_pasted-token-e2e",
        "BEGIN PRIVATE KEY",
    ]);

    // Access control off: the operator's Secret goes, and so do the tokens files.
    ns.kubectl(&[
        "patch",
        "gmp",
        "guarded",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/spec/access"}]"#,
    ]);
    ns.eventually("the operator's Secret deleted", DEFAULT_TIMEOUT, || {
        let out = ns.try_kubectl(&["get", "secret", "guarded-operator-token"]);
        (!out.status.success()).then_some(())
    });
    ns.eventually("no tokens files mounted", DEFAULT_TIMEOUT, || {
        let pod = pod_spec(ns, "guarded-1");
        mounts(&pod, |n| n.starts_with("access-"))
            .is_empty()
            .then_some(())
    });
    ns.wait("gmp/guarded", "condition=Ready", DEFAULT_TIMEOUT);
    let yaml = ns.get_json(&["configmap", "guarded-config"])["data"]["config.yaml"].clone();
    assert!(!yaml.as_str().unwrap().contains("access:"), "{yaml}");
}

/// The API server itself refuses bad `tls` and `access` with the CRD's messages.
#[test]
fn the_api_server_refuses_bad_access() {
    let cluster = Cluster::from_env();
    install_crd(&cluster);
    let ns = cluster.namespace("op-access-invalid");
    let fleet = |extra: &str| {
        format!(
            "apiVersion: modfleet.dev/v1alpha1\nkind: GoModuleProxy\nmetadata:\n  name: bad\nspec:\n  upstreams:\n    - url: https://goproxy.example.com\n{extra}"
        )
    };
    let cases = [
        (
            "  tls: {secretName: Bad_Name}\n",
            "tls.secretName must be the name of a Secret",
        ),
        (
            "  access: {rules: []}\n",
            "access.rules needs at least one rule",
        ),
        (
            "  access: {rules: [{modules: ['*'], allow: ['group:anonymous']}]}\n",
            "entries are anonymous, authenticated, group:NAME or NAME",
        ),
        (
            "  access: {rules: [{modules: ['a.example/*,b.example/*'], allow: [anonymous]}]}\n",
            "without commas or spaces",
        ),
    ];
    for (extra, want) in cases {
        ns.assert_refused(&fleet(extra), want);
    }
    ns.apply(&fleet(
        "  tls: {secretName: proxy-tls}\n  access:\n    tokenSecretRefs: [{name: ci}]\n    rules: [{modules: ['*'], allow: [anonymous]}]\n",
    ));
}
