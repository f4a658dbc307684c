//! Tests of resources/access.rs: what the members get of `spec.tls` and `spec.access`.

use std::collections::BTreeMap;

use modfleet_contract::access::TokenHash;
use serde_json::json;

use super::*;
use crate::resources::credentials::tests::secret;
use crate::resources::testutil::gmp;

const CI_TOKEN: &str = "mf_ci-token-for-the-unit-tests-0123456789abc";

/// A fleet with TLS (Secret `proxy-tls`), two tokens Secrets (`ci-tokens` under the default
/// key, `ops-tokens` under `lines`), rules and an admin group.
pub fn access_fleet() -> GoModuleProxy {
    gmp(json!({
        "replicas": 2,
        "upstreams": [{"url": "https://goproxy.example.com"}],
        "tls": {"secretName": "proxy-tls"},
        "access": {
            "tokenSecretRefs": [{"name": "ci-tokens"}, {"name": "ops-tokens", "key": "lines"}],
            "rules": [
                {"modules": ["git.corp.example.com/*"], "allow": ["group:ci"]},
                {"modules": ["*"], "allow": ["anonymous"]}
            ],
            "admin": ["group:ops"]
        }
    }))
}

/// The token the operator's Secret holds in [`access_secrets`].
pub fn admin_token() -> AdminToken {
    AdminToken("mf_operator-token-for-the-unit-tests-0123456".into())
}

fn data(s: &Secret) -> Option<BTreeMap<String, Vec<u8>>> {
    Some(
        s.data
            .clone()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect(),
    )
}

pub fn access_secrets() -> SecretData {
    let ci = TokenLine::for_token("ci-bot", CI_TOKEN, &["ci".to_owned()]);
    let ops = TokenLine::for_token("alice", "mf_alice-token-0123456789abcdef0123456", &[]);
    BTreeMap::from([
        (
            "proxy-tls".to_owned(),
            secret(&[
                ("tls.crt", "-----BEGIN CERTIFICATE-----"),
                ("tls.key", "-----BEGIN PRIVATE KEY-----"),
                ("ca.crt", "-----BEGIN CERTIFICATE-----"),
            ]),
        ),
        (
            "ci-tokens".to_owned(),
            secret(&[("tokens", &format!("# CI\n{ci}\n"))]),
        ),
        (
            "ops-tokens".to_owned(),
            secret(&[("lines", &format!("{ops}\n")), ("tokens", "ignored")]),
        ),
        (
            "gomod-operator-token".to_owned(),
            data(&operator_token_secret(&access_fleet(), &admin_token())),
        ),
    ])
}

#[test]
fn renders_tls_and_access_with_the_operator_as_admin() {
    let g = access_fleet();
    assert_eq!(
        referenced_secrets(&g),
        [
            "ci-tokens",
            "gomod-operator-token",
            "ops-tokens",
            "proxy-tls"
        ]
    );
    let a = check(&g, &access_secrets()).unwrap();
    let (secret, tls) = a.tls.clone().unwrap();
    assert_eq!(secret, "proxy-tls");
    assert_eq!(tls.cert_file, PathBuf::from("/etc/modfleet-tls/tls.crt"));
    assert_eq!(tls.key_file, PathBuf::from("/etc/modfleet-tls/tls.key"));
    let mounts: Vec<(Tokens, &str, &str)> = a
        .tokens
        .iter()
        .map(|t| (t.tokens, t.secret.as_str(), t.key.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [
            (Tokens::Ref(0), "ci-tokens", "tokens"),
            (Tokens::Ref(1), "ops-tokens", "lines"),
            (Tokens::Operator, "gomod-operator-token", "tokens"),
        ]
    );
    let config = serde_json::to_value(a.config.as_ref().unwrap()).unwrap();
    assert_eq!(
        config,
        json!({
            "tokensFiles": [
                "/etc/modfleet-access/0/tokens",
                "/etc/modfleet-access/1/tokens",
                "/etc/modfleet-access/operator/tokens"
            ],
            "rules": [
                {"modules": ["git.corp.example.com/*"], "allow": ["group:ci"]},
                {"modules": ["*"], "allow": ["anonymous"]}
            ],
            "admin": ["group:ops", "modfleet-operator"]
        })
    );
    assert_eq!(a.hash.as_ref().unwrap().len(), 16);
    assert_eq!(Tokens::Ref(1).volume(), "access-1");
    assert_eq!(Tokens::Operator.volume(), "access-operator");
}

#[test]
fn without_access_only_tls_and_no_hash() {
    let mut g = access_fleet();
    g.spec.access = None;
    assert_eq!(referenced_secrets(&g), ["proxy-tls"]);
    let a = check(&g, &access_secrets()).unwrap();
    assert!(a.tls.is_some() && a.tokens.is_empty() && a.config.is_none());
    assert_eq!(a.hash, None);
    g.spec.tls = None;
    assert_eq!(check(&g, &SecretData::new()).unwrap(), Access::default());
}

#[test]
fn the_operator_named_as_admin_is_not_added_twice() {
    let mut g = access_fleet();
    g.spec.access.as_mut().unwrap().admin = vec!["modfleet-operator".into()];
    let a = check(&g, &access_secrets()).unwrap();
    assert_eq!(
        a.config.unwrap().admin,
        [Principal::Identity(OPERATOR_IDENTITY.into())]
    );
}

/// Tokens files roll the members (the hash follows them); the TLS Secret is reloaded in
/// place (a renewal leaves the hash alone).
#[test]
fn the_hash_follows_the_tokens_files_not_the_certificate() {
    let g = access_fleet();
    let base = check(&g, &access_secrets()).unwrap().hash;
    let mut renewed = access_secrets();
    renewed.insert(
        "proxy-tls".into(),
        secret(&[("tls.crt", "RENEWED"), ("tls.key", "NEW KEY")]),
    );
    assert_eq!(base, check(&g, &renewed).unwrap().hash);
    let mut rotated = access_secrets();
    let line = TokenLine::for_token("ci-bot", "mf_rotated-token-0123456789abcdef012345", &[]);
    rotated.insert(
        "ci-tokens".into(),
        secret(&[("tokens", &format!("{line}\n"))]),
    );
    assert_ne!(base, check(&g, &rotated).unwrap().hash);
    let mut other_key = access_secrets();
    let ops = other_key.get_mut("ops-tokens").unwrap().as_mut().unwrap();
    ops.insert("tokens".into(), b"still ignored".to_vec());
    assert_eq!(base, check(&g, &other_key).unwrap().hash);
    let mut new_operator = access_secrets();
    new_operator.insert(
        "gomod-operator-token".into(),
        data(&operator_token_secret(&g, &AdminToken::generate())),
    );
    assert_ne!(base, check(&g, &new_operator).unwrap().hash);
}

#[test]
fn credentials_hash_keeps_the_old_value_without_access() {
    assert_eq!(credentials_hash(None, None), None);
    assert_eq!(credentials_hash(Some("c"), None).as_deref(), Some("c"));
    assert_eq!(credentials_hash(None, Some("a")).as_deref(), Some("a"));
    let both = credentials_hash(Some("c"), Some("a")).unwrap();
    assert_eq!(both.len(), 16);
    assert_ne!(Some(both), credentials_hash(Some("c"), Some("b")));
}

#[test]
fn problems_name_the_field_the_secret_and_the_fix() {
    let g = access_fleet();
    let with = |name: &str, value: Option<BTreeMap<String, Vec<u8>>>| {
        let mut s = access_secrets();
        s.insert(name.into(), value);
        check(&g, &s).unwrap_err()
    };
    let e = with("proxy-tls", None);
    assert_eq!(
        e.problems,
        [Problem::TlsNotFound {
            secret: "proxy-tls".into()
        }]
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("tls.secretName: Secret proxy-tls not found")
            && msg.contains("cert-manager Certificate with spec.secretName: proxy-tls"),
        "{msg}"
    );
    let msg = with("proxy-tls", secret(&[("tls.crt", "C"), ("tls.key", "")])).to_string();
    assert!(
        msg.contains("tls.secretName: Secret proxy-tls has no key tls.key"),
        "{msg}"
    );
    let msg = with("ops-tokens", None).to_string();
    assert!(
        msg.contains("access.tokenSecretRefs[1]: Secret ops-tokens not found")
            && msg.contains("hash-token"),
        "{msg}"
    );
    let msg = with("ops-tokens", secret(&[("tokens", "x")])).to_string();
    assert!(
        msg.contains("access.tokenSecretRefs[1]: Secret ops-tokens has no key lines"),
        "{msg}"
    );
    // A token pasted where its hash belongs: the line is named, the token never shown.
    let msg = with(
        "ci-tokens",
        secret(&[("tokens", &format!("ci-bot {CI_TOKEN}\n"))]),
    )
    .to_string();
    assert!(
        msg.contains(
            "access.tokenSecretRefs[0]: Secret ci-tokens key tokens: line 1: invalid token hash"
        ),
        "{msg}"
    );
    assert!(!msg.contains(&CI_TOKEN[..8]), "{msg}");
    let own = TokenLine::for_token(OPERATOR_IDENTITY, CI_TOKEN, &[]);
    let e = with("ci-tokens", secret(&[("tokens", &own.to_string())]));
    assert_eq!(
        e.problems,
        [Problem::ReservedIdentity {
            index: 0,
            secret: "ci-tokens".into(),
            key: "tokens".into()
        }]
    );
    assert!(e.to_string().contains("the operator's own identity"), "{e}");
    let e = with("gomod-operator-token", None);
    assert_eq!(
        e.problems,
        [Problem::OperatorToken {
            secret: "gomod-operator-token".into()
        }]
    );
    // Several at once, each named.
    let mut s = access_secrets();
    s.insert("proxy-tls".into(), None);
    s.insert("ci-tokens".into(), None);
    assert_eq!(check(&g, &s).unwrap_err().problems.len(), 2);
}

#[test]
fn a_principal_the_contract_refuses_is_a_problem() {
    let mut g = access_fleet();
    g.spec.access.as_mut().unwrap().rules[0].allow = vec!["group:".into()];
    let msg = check(&g, &access_secrets()).unwrap_err().to_string();
    assert!(msg.starts_with("access.rules[0].allow: "), "{msg}");
}

#[test]
fn the_operator_token_secret_is_whole_or_made_anew() {
    let g = access_fleet();
    let token = AdminToken::generate();
    let s = operator_token_secret(&g, &token);
    assert_eq!(s.metadata.name.as_deref(), Some("gomod-operator-token"));
    crate::resources::testutil::assert_owned(&s.metadata, "access");
    let d = data(&s).unwrap();
    assert_eq!(operator_token(&d), Some(token.clone()));
    let line = String::from_utf8(d["tokens"].clone()).unwrap();
    let parsed = parse_tokens_file(&line).unwrap();
    assert_eq!(parsed[0].identity, OPERATOR_IDENTITY);
    assert_eq!(parsed[0].hash, TokenHash::of(token.as_str()));
    assert!(
        !line.contains(token.as_str()),
        "the members' key has no token"
    );
    // Changed by someone: not whole.
    let mut other = d.clone();
    other.insert("tokens".into(), AdminToken::generate().line().into_bytes());
    assert_eq!(operator_token(&other), None);
    let mut short = d.clone();
    short.insert("token".into(), b"mf_short".to_vec());
    assert_eq!(operator_token(&short), None);
    let mut no_line = d;
    no_line.remove("tokens");
    assert_eq!(operator_token(&no_line), None);
}
