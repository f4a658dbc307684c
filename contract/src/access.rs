//! Who may use a member, as the config file says it (`tls`, `access`) and as the tokens files
//! write it. Defined here because three parties share it: the proxy reads the config and the
//! tokens files, its `hash-token` command writes token lines, and the operator renders the
//! config and writes the line for its own identity (it reads members' `/status` as an admin).
//!
//! Tokens are random and long (`generate_token`: 256 bits), so one SHA-256 of a token is as
//! hard to reverse as guessing the token; a slow password hash would only slow every request.
//! A file holds hashes, never tokens: a leaked ConfigMap or Secret of hashes grants nothing.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// `tls`: serve the client port over HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this PEM
/// certificate chain and key, read again when the files change (a cert-manager renewal needs
/// no restart). Unset: plain HTTP, the default for in-cluster use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `access`: client authentication and authorization. Unset: every client may fetch every
/// module and the admin port's `/status` and `/admin/*` are open (only a NetworkPolicy
/// stands in the way).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessConfig {
    /// Files of token lines ([`TokenLine`]), read again when they change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens_files: Vec<PathBuf>,
    /// Module path rules, the first whose pattern matches a request's module path decides.
    /// A path no rule matches is refused (401 without credentials, 403 with).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AccessRule>,
    /// Who may use the admin port's `/status` and `/admin/*` (`/healthz`, `/readyz` and
    /// `/metrics` stay open to the kubelet and Prometheus). Empty: nobody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin: Vec<Principal>,
}

/// One rule: the modules (GOPRIVATE globs, `*` for all) and who may fetch them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessRule {
    pub modules: Vec<String>,
    pub allow: Vec<Principal>,
}

/// Who a rule or `admin` names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// `anonymous`: everyone, with or without credentials.
    Anonymous,
    /// `authenticated`: any identity of a tokens file.
    Authenticated,
    /// `group:NAME`: identities whose token line lists the group.
    Group(String),
    /// `NAME`: one identity.
    Identity(String),
}

const ANONYMOUS: &str = "anonymous";
const AUTHENTICATED: &str = "authenticated";
const GROUP_PREFIX: &str = "group:";

/// The identity the operator uses for members' `/status` (its token line is rendered into a
/// tokens file of its own; the fleet's `access.admin` gets this name added).
pub const OPERATOR_IDENTITY: &str = "modfleet-operator";

/// Identity and group names: 1 to 64 of `A-Z a-z 0-9 . _ @ -`, so they are safe in a log
/// line, a metric label and a netrc `login`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    if !ok {
        return Err(format!(
            "invalid name {name:?}: use 1 to 64 letters, digits, '.', '_', '@' or '-'"
        ));
    }
    if name == ANONYMOUS || name == AUTHENTICATED {
        return Err(format!(
            "{name:?} is reserved for everyone (anonymous) or any identity (authenticated): pick another name"
        ));
    }
    Ok(())
}

impl FromStr for Principal {
    type Err = String;
    fn from_str(s: &str) -> Result<Principal, String> {
        Ok(match s {
            ANONYMOUS => Principal::Anonymous,
            AUTHENTICATED => Principal::Authenticated,
            _ => match s.strip_prefix(GROUP_PREFIX) {
                Some(group) => {
                    check_name(group).map_err(|e| format!("{s:?}: {e}"))?;
                    Principal::Group(group.to_string())
                }
                None => {
                    check_name(s)
                        .map_err(|e| format!("{e} (or anonymous, authenticated, group:NAME)"))?;
                    Principal::Identity(s.to_string())
                }
            },
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => f.write_str(ANONYMOUS),
            Principal::Authenticated => f.write_str(AUTHENTICATED),
            Principal::Group(g) => write!(f, "{GROUP_PREFIX}{g}"),
            Principal::Identity(i) => f.write_str(i),
        }
    }
}

impl Serialize for Principal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Principal, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The hash a tokens file holds: `sha256:` and 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

const HASH_PREFIX: &str = "sha256:";

impl TokenHash {
    /// The hash of a token as a client presents it (Bearer token, or Basic password).
    pub fn of(token: &str) -> TokenHash {
        let digest = Sha256::digest(token.as_bytes());
        let mut s = String::with_capacity(HASH_PREFIX.len() + 64);
        s.push_str(HASH_PREFIX);
        // Once per request that presents a token: no allocation per byte.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in digest {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        TokenHash(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TokenHash {
    type Err = String;
    fn from_str(s: &str) -> Result<TokenHash, String> {
        match s.strip_prefix(HASH_PREFIX) {
            Some(hex)
                if hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(TokenHash(s.to_string()))
            }
            // Never echoed: a token pasted where its hash belongs must not reach a log.
            _ => Err(
                "invalid token hash: expected sha256: and 64 lowercase hex digits, as \
                      `modfleet-proxy hash-token` prints (the token itself does not belong in \
                      a tokens file)"
                    .to_string(),
            ),
        }
    }
}

/// Tokens shorter than this are refused by `hash-token` (a guessable token behind a fast
/// hash would be weak).
pub const MIN_TOKEN_LEN: usize = 32;

/// A new random token: `mf_` and 43 base64url characters (256 bits from the OS).
pub fn generate_token() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's random source failed");
    format!(
        "mf_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// One line of a tokens file: `IDENTITY HASH [GROUP,GROUP...]`, separated by spaces or tabs.
/// Blank lines and lines starting with `#` are comments. An identity may have several lines
/// (several tokens, e.g. during a rotation); its groups are the union of its lines'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLine {
    pub identity: String,
    pub hash: TokenHash,
    pub groups: Vec<String>,
}

impl TokenLine {
    /// The line for `identity` holding `token`, as `hash-token` prints it.
    pub fn for_token(identity: &str, token: &str, groups: &[String]) -> TokenLine {
        TokenLine {
            identity: identity.to_string(),
            hash: TokenHash::of(token),
            groups: groups.to_vec(),
        }
    }
}

impl fmt::Display for TokenLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.identity, self.hash.0)?;
        if !self.groups.is_empty() {
            write!(f, " {}", self.groups.join(","))?;
        }
        Ok(())
    }
}

/// Parses a tokens file. Errors name the line (never its hash) and say how to fix it.
pub fn parse_tokens_file(text: &str) -> Result<Vec<TokenLine>, String> {
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |e: String| format!("line {}: {e}", n + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (identity, hash, groups) = match fields[..] {
            [identity, hash] => (identity, hash, None),
            [identity, hash, groups] => (identity, hash, Some(groups)),
            _ => {
                return Err(at(
                    "expected IDENTITY HASH [GROUP,...], as `modfleet-proxy hash-token` prints"
                        .to_string(),
                ));
            }
        };
        check_name(identity).map_err(at)?;
        let hash = hash.parse().map_err(at)?;
        let groups = match groups {
            None => Vec::new(),
            Some(g) => g
                .split(',')
                .map(|g| check_name(g).map(|()| g.to_string()))
                .collect::<Result<_, _>>()
                .map_err(at)?,
        };
        lines.push(TokenLine {
            identity: identity.to_string(),
            hash,
            groups,
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_round_trip_and_refuse_bad_names() {
        for s in ["anonymous", "authenticated", "group:ci", "ci-bot@corp"] {
            assert_eq!(s.parse::<Principal>().unwrap().to_string(), s);
        }
        assert_eq!("group:ci".parse(), Ok(Principal::Group("ci".into())));
        for bad in [
            "",
            "a b",
            "group:",
            "group:anonymous",
            "x/y",
            &"n".repeat(65),
        ] {
            assert!(bad.parse::<Principal>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_generated_token_hashes_to_its_line() {
        let token = generate_token();
        assert!(token.starts_with("mf_") && token.len() == 46, "{token}");
        assert_ne!(token, generate_token());
        let line = TokenLine::for_token("ci", &token, &["builders".to_string()]);
        let parsed = parse_tokens_file(&format!("# comment\n\n{line}\n")).unwrap();
        assert_eq!(parsed, vec![line]);
        assert_eq!(parsed[0].hash, TokenHash::of(&token));
        assert_ne!(parsed[0].hash, TokenHash::of("another"));
    }

    #[test]
    fn sha256_is_the_known_digest() {
        assert_eq!(
            TokenHash::of("abc").as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bad_lines_name_the_line_and_not_the_secret() {
        let e = parse_tokens_file("ok sha256:00\n").unwrap_err();
        assert!(e.starts_with("line 1: invalid token hash"), "{e}");
        let e = parse_tokens_file("\nci mf_plaintexttoken\n").unwrap_err();
        assert!(e.starts_with("line 2:") && !e.contains("mf_"), "{e}");
        let e = parse_tokens_file("only-one-field\n").unwrap_err();
        assert!(e.contains("IDENTITY HASH"), "{e}");
    }

    #[test]
    fn access_config_reads_as_the_readme_writes_it() {
        let yaml = "tokensFiles: [/etc/modfleet-access/0/tokens]\n\
                    rules:\n\
                    - modules: [git.corp.example.com/*]\n  allow: [group:ci]\n\
                    - modules: ['*']\n  allow: [anonymous]\n\
                    admin: [group:ops, modfleet-operator]\n";
        let c: AccessConfig = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(c.rules[0].allow, vec![Principal::Group("ci".into())]);
        assert_eq!(c.admin[1], Principal::Identity(OPERATOR_IDENTITY.into()));
        let back: AccessConfig =
            serde_yaml_ng::from_str(&serde_yaml_ng::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(
            serde_yaml_ng::from_str::<AccessConfig>("rules: [{modules: ['*'], allow: ['a b']}]")
                .is_err()
        );
    }
}
