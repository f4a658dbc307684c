//! `spec.tls` and `spec.access` as the members get them: which Secrets are mounted where,
//! the `tls` and `access` keys of the config naming those files, and a hash of the tokens
//! files for the pod template. Pure, like [`super::credentials`]: the reconcile reads the
//! Secrets and hands their data to [`check`].
//!
//! Roll or reload: the tokens files are in the pod template's `modfleet.dev/credentials-hash`
//! (a changed tokens Secret rolls the members, as upstream credentials do: the kubelet would
//! bring the change only eventually); the TLS Secret is not (the proxy reads the certificate
//! again when the kubelet updates the file, so a cert-manager renewal does not roll the fleet).
//!
//! The operator's own identity: a Secret per fleet, `NAME-operator-token`, created once by
//! the reconcile ([`operator_token_secret`]) and kept; its `token` key is what the operator
//! sends to the members' `/status`, its `tokens` key (the line of that token) the only key
//! the members mount.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use modfleet_contract::access::{
    AccessConfig, AccessRule, MIN_TOKEN_LEN, OPERATOR_IDENTITY, Principal, TlsConfig, TokenLine,
    generate_token, parse_tokens_file,
};
use sha2::{Digest, Sha256};

use super::credentials::SecretData;
use super::labels::Component;
use super::{meta, names};
use crate::crd::GoModuleProxy;

/// Where the TLS Secret is mounted (beside the config's `/etc/modfleet`, not in it: a
/// container runtime cannot create a mount point inside the ConfigMap's read-only mount).
pub const TLS_DIR: &str = "/etc/modfleet-tls";
/// The pod volume of the TLS Secret.
pub const TLS_VOLUME: &str = "tls";
/// The keys of a `kubernetes.io/tls` Secret, and the file names in the mount.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
/// Where each tokens file is mounted: `ACCESS_DIR/<index>/tokens`, the operator's at
/// `ACCESS_DIR/operator/tokens`.
pub const ACCESS_DIR: &str = "/etc/modfleet-access";
pub const TOKENS_FILE: &str = "tokens";
/// The key of the operator's Secret it reads its token from (never mounted).
pub const OPERATOR_TOKEN_KEY: &str = "token";
/// The key of the operator's Secret with its token's line (the only key members mount).
pub const OPERATOR_TOKENS_KEY: &str = "tokens";

/// A tokens file of the fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tokens {
    /// `access.tokenSecretRefs[i]`.
    Ref(usize),
    /// The operator's own Secret.
    Operator,
}

impl Tokens {
    pub fn dir(self) -> String {
        match self {
            Tokens::Ref(i) => format!("{ACCESS_DIR}/{i}"),
            Tokens::Operator => format!("{ACCESS_DIR}/operator"),
        }
    }

    pub fn file(self) -> PathBuf {
        PathBuf::from(format!("{}/{TOKENS_FILE}", self.dir()))
    }

    /// The pod volume of its Secret.
    pub fn volume(self) -> String {
        match self {
            Tokens::Ref(i) => format!("access-{i}"),
            Tokens::Operator => "access-operator".to_owned(),
        }
    }
}

/// One tokens file as the members get it: `key` of `secret`, mounted as [`Tokens::file`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokensMount {
    pub tokens: Tokens,
    pub secret: String,
    pub key: String,
}

/// What the members get of `spec.tls` and `spec.access`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// The TLS Secret (checked to have `tls.crt` and `tls.key`) and the config's `tls`.
    pub tls: Option<(String, TlsConfig)>,
    /// The tokens files: `tokenSecretRefs` in order, then the operator's.
    pub tokens: Vec<TokensMount>,
    /// The config's `access`.
    pub config: Option<AccessConfig>,
    /// Hash of the tokens files' contents; `None` without `spec.access`.
    pub hash: Option<String>,
}

/// The operator's token for one fleet's members. Never printed: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn generate() -> AdminToken {
        AdminToken(generate_token())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tokens-file line of this token, for the operator's identity.
    pub fn line(&self) -> String {
        TokenLine::for_token(OPERATOR_IDENTITY, &self.0, &[]).to_string()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// The operator's token Secret of `gmp`, owned by it (deleted with it, or when `spec.access`
/// goes). Opaque: `token` for the operator, `tokens` for the members.
pub fn operator_token_secret(gmp: &GoModuleProxy, token: &AdminToken) -> Secret {
    let line = format!("{}\n", token.line());
    Secret {
        metadata: meta(
            gmp,
            names::operator_token(&gmp.name_any()),
            Component::Access,
            None,
        ),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (
                OPERATOR_TOKEN_KEY.to_owned(),
                ByteString(token.0.clone().into_bytes()),
            ),
            (
                OPERATOR_TOKENS_KEY.to_owned(),
                ByteString(line.into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

/// The token of an existing operator Secret, when the Secret is whole: a token as
/// [`AdminToken::generate`] makes them and, under `tokens`, exactly its line. `None`: the
/// Secret must be made anew (someone changed it).
pub fn operator_token(data: &BTreeMap<String, Vec<u8>>) -> Option<AdminToken> {
    let token = std::str::from_utf8(data.get(OPERATOR_TOKEN_KEY)?).ok()?;
    let token = AdminToken(token.to_owned());
    let lines = std::str::from_utf8(data.get(OPERATOR_TOKENS_KEY)?).ok()?;
    let ok = token.0.len() >= MIN_TOKEN_LEN
        && token.0.bytes().all(|b| b.is_ascii_graphic())
        && lines.trim_end() == token.line();
    ok.then_some(token)
}

/// The Secrets `gmp`'s `tls` and `access` name, the operator's own included, each once.
pub fn referenced_secrets(gmp: &GoModuleProxy) -> Vec<String> {
    let mut names: Vec<String> = gmp.spec.tls.iter().map(|t| t.secret_name.clone()).collect();
    if let Some(a) = &gmp.spec.access {
        names.extend(a.token_secret_refs.iter().map(|r| r.name.clone()));
        names.push(names::operator_token(&gmp.name_any()));
    }
    names.sort();
    names.dedup();
    names
}

/// Why `tls` or `access` cannot be rendered. Names the field, the Secret and the key, never
/// a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    TlsNotFound {
        secret: String,
    },
    TlsMissingKey {
        secret: String,
        key: &'static str,
    },
    TokensNotFound {
        index: usize,
        secret: String,
    },
    TokensMissingKey {
        index: usize,
        secret: String,
        key: String,
    },
    /// The tokens file cannot be read as the proxy reads it (`why` names the line).
    TokensUnreadable {
        index: usize,
        secret: String,
        key: String,
        why: String,
    },
    /// A tokens file names the operator's identity, which would make its tokens admins.
    ReservedIdentity {
        index: usize,
        secret: String,
        key: String,
    },
    /// The operator's own Secret is not whole (the operator makes it anew).
    OperatorToken {
        secret: String,
    },
    /// A principal the contract refuses (the CRD's rules should have refused it first).
    Principal {
        field: String,
        why: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::TlsNotFound { secret } => write!(
                f,
                "tls.secretName: Secret {secret} not found in the fleet's namespace; create a \
                 kubernetes.io/tls Secret with tls.crt and tls.key (e.g. a cert-manager \
                 Certificate with spec.secretName: {secret})"
            ),
            Problem::TlsMissingKey { secret, key } => write!(
                f,
                "tls.secretName: Secret {secret} has no key {key}; it needs tls.crt (the PEM \
                 certificate chain) and tls.key (its private key), as a kubernetes.io/tls Secret has"
            ),
            Problem::TokensNotFound { index, secret } => write!(
                f,
                "access.tokenSecretRefs[{index}]: Secret {secret} not found in the fleet's \
                 namespace; create it with the lines `modfleet-proxy hash-token` prints, e.g. \
                 kubectl create secret generic {secret} --from-file=tokens=./tokens"
            ),
            Problem::TokensMissingKey { index, secret, key } => write!(
                f,
                "access.tokenSecretRefs[{index}]: Secret {secret} has no key {key}; add the \
                 tokens file under it, or set key to the key that holds it"
            ),
            Problem::TokensUnreadable {
                index,
                secret,
                key,
                why,
            } => write!(
                f,
                "access.tokenSecretRefs[{index}]: Secret {secret} key {key}: {why}"
            ),
            Problem::ReservedIdentity { index, secret, key } => write!(
                f,
                "access.tokenSecretRefs[{index}]: Secret {secret} key {key} has a line for \
                 {OPERATOR_IDENTITY}, the operator's own identity (an admin); rename that identity"
            ),
            Problem::OperatorToken { secret } => write!(
                f,
                "the operator's token Secret {secret} is missing or was changed; the operator \
                 makes it anew (delete it if this persists)"
            ),
            Problem::Principal { field, why } => write!(f, "{field}: {why}"),
        }
    }
}

/// `tls` or `access` cannot be rendered as the Secrets are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct AccessError {
    pub problems: Vec<Problem>,
}

/// Checks the Secrets `tls` and `access` name (`secrets` holds every name
/// [`referenced_secrets`] gives) and says what the members get.
pub fn check(gmp: &GoModuleProxy, secrets: &SecretData) -> Result<Access, AccessError> {
    let mut problems = Vec::new();
    let data = |name: &str| secrets.get(name).and_then(Option::as_ref);
    let tls = gmp.spec.tls.as_ref().and_then(|t| {
        let secret = t.secret_name.clone();
        let Some(d) = data(&secret) else {
            problems.push(Problem::TlsNotFound { secret });
            return None;
        };
        let missing: Vec<&'static str> = [TLS_CERT_KEY, TLS_KEY_KEY]
            .into_iter()
            .filter(|k| d.get(*k).is_none_or(Vec::is_empty))
            .collect();
        for key in &missing {
            problems.push(Problem::TlsMissingKey {
                secret: secret.clone(),
                key,
            });
        }
        missing.is_empty().then(|| {
            let file = |key: &str| PathBuf::from(format!("{TLS_DIR}/{key}"));
            let config = TlsConfig {
                cert_file: file(TLS_CERT_KEY),
                key_file: file(TLS_KEY_KEY),
            };
            (secret, config)
        })
    });
    let Some(spec) = &gmp.spec.access else {
        return match problems.is_empty() {
            true => Ok(Access {
                tls,
                ..Access::default()
            }),
            false => Err(AccessError { problems }),
        };
    };

    let mut hash = Sha256::new();
    let mut tokens = Vec::new();
    for (index, r) in spec.token_secret_refs.iter().enumerate() {
        let (secret, key) = (r.name.clone(), r.key.clone());
        let Some(d) = data(&secret) else {
            problems.push(Problem::TokensNotFound { index, secret });
            continue;
        };
        let Some(value) = d.get(&key) else {
            problems.push(Problem::TokensMissingKey { index, secret, key });
            continue;
        };
        let lines = std::str::from_utf8(value)
            .map_err(|_| "not UTF-8 text".to_owned())
            .and_then(|text| parse_tokens_file(text).map_err(|e| without_quoted(&e)));
        match lines {
            Err(why) => problems.push(Problem::TokensUnreadable {
                index,
                secret,
                key,
                why: format!("{why}; write the lines as `modfleet-proxy hash-token` prints them"),
            }),
            Ok(lines) if lines.iter().any(|l| l.identity == OPERATOR_IDENTITY) => {
                problems.push(Problem::ReservedIdentity { index, secret, key })
            }
            Ok(_) => {
                hash_file(&mut hash, &format!("access[{index}]"), &secret, &key, value);
                tokens.push(TokensMount {
                    tokens: Tokens::Ref(index),
                    secret,
                    key,
                });
            }
        }
    }
    let own = names::operator_token(&gmp.name_any());
    match data(&own).and_then(|d| Some((operator_token(d)?, &d[OPERATOR_TOKENS_KEY]))) {
        Some((_, line)) => {
            hash_file(
                &mut hash,
                "access-operator",
                &own,
                OPERATOR_TOKENS_KEY,
                line,
            );
            tokens.push(TokensMount {
                tokens: Tokens::Operator,
                secret: own,
                key: OPERATOR_TOKENS_KEY.to_owned(),
            });
        }
        None => problems.push(Problem::OperatorToken { secret: own }),
    }

    let mut principals = |field: String, list: &[String]| -> Vec<Principal> {
        list.iter()
            .filter_map(|p| match p.parse::<Principal>() {
                Ok(p) => Some(p),
                Err(why) => {
                    problems.push(Problem::Principal {
                        field: field.clone(),
                        why,
                    });
                    None
                }
            })
            .collect()
    };
    let rules: Vec<AccessRule> = spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| AccessRule {
            modules: r.modules.clone(),
            allow: principals(format!("access.rules[{i}].allow"), &r.allow),
        })
        .collect();
    let mut admin = principals("access.admin".to_owned(), &spec.admin);
    let operator = Principal::Identity(OPERATOR_IDENTITY.to_owned());
    if !admin.contains(&operator) {
        admin.push(operator);
    }
    if !problems.is_empty() {
        return Err(AccessError { problems });
    }
    let config = AccessConfig {
        tokens_files: tokens.iter().map(|t| t.tokens.file()).collect(),
        rules,
        admin,
    };
    let digest = hash.finalize();
    Ok(Access {
        tls,
        tokens,
        config: Some(config),
        hash: Some(digest[..8].iter().map(|b| format!("{b:02x}")).collect()),
    })
}

fn hash_file(hash: &mut Sha256, tag: &str, secret: &str, key: &str, value: &[u8]) {
    for part in [tag, secret, key] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.update((value.len() as u64).to_be_bytes());
    hash.update(value);
}

/// `why` with its quoted parts left out: a line that is not a token line may be a token
/// pasted by mistake, and the message lands in the status, which more people read than the
/// Secret.
fn without_quoted(why: &str) -> String {
    let mut out = String::with_capacity(why.len());
    for (i, part) in why.split('"').enumerate() {
        out.push_str(if i % 2 == 0 { part } else { "…" });
    }
    out
}

/// The pod template's `modfleet.dev/credentials-hash`: the upstream and private-module
/// credentials' hash as it was (existing fleets keep their value), with the tokens files'
/// folded in when the fleet has `spec.access`.
pub fn credentials_hash(credentials: Option<&str>, access: Option<&str>) -> Option<String> {
    match (credentials, access) {
        (c, None) => c.map(str::to_owned),
        (None, Some(a)) => Some(a.to_owned()),
        (Some(c), Some(a)) => {
            let digest = Sha256::digest(format!("{c}\0{a}").as_bytes());
            Some(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
