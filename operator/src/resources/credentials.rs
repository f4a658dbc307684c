//! The Git credentials of `spec.privateModules`: which keys of each referenced Secret the
//! members get as files under `/etc/modfleet-private/<index>/`, and a hash of those keys'
//! contents for the pod template (a changed Secret rolls the members). Pure: the reconcile
//! reads the Secrets and hands their data to [`check`]; the builders read the [`Credentials`]
//! it returns. No credential byte leaves this module but into the hash.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::crd::GoModuleProxy;

/// Where the Secret of `privateModules[i]` is mounted: `PRIVATE_DIR/i/`. Beside the config
/// directory, not in it: a container runtime cannot create a mount point inside the ConfigMap's
/// read-only mount (runc: "mkdir .../etc/modfleet/private: read-only file system").
pub const PRIVATE_DIR: &str = "/etc/modfleet-private";
/// Pod template annotation with the hash of the mounted credentials.
pub const CREDENTIALS_HASH_ANNOTATION: &str = "modfleet.dev/credentials-hash";

/// A Secret key the members use, named as `kubernetes.io/basic-auth` and
/// `kubernetes.io/ssh-auth` Secrets name them (`known_hosts` as OpenSSH names the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Username,
    Password,
    SshPrivateKey,
    KnownHosts,
}

impl Key {
    pub const ALL: [Key; 4] = [
        Key::Username,
        Key::Password,
        Key::SshPrivateKey,
        Key::KnownHosts,
    ];

    /// The key in the Secret, and the file name in the mount.
    pub const fn secret_key(self) -> &'static str {
        match self {
            Key::Username => "username",
            Key::Password => "password",
            Key::SshPrivateKey => "ssh-privatekey",
            Key::KnownHosts => "known_hosts",
        }
    }
}

/// One entry's Secret as the members get it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub secret: String,
    /// The keys the Secret has, in [`Key::ALL`] order: only these are mounted and rendered.
    pub keys: Vec<Key>,
}

/// What the members get of the referenced Secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// By `privateModules` index, for the entries with a `credentialsSecretRef`.
    pub mounts: BTreeMap<usize, Mount>,
    /// Hash of the mounted keys' contents; `None` when no entry has a Secret.
    pub hash: Option<String>,
}

/// The directory of entry `index`'s credential files.
pub fn dir(index: usize) -> String {
    format!("{PRIVATE_DIR}/{index}")
}

/// The file of `key` for entry `index`.
pub fn file(index: usize, key: Key) -> PathBuf {
    PathBuf::from(format!("{}/{}", dir(index), key.secret_key()))
}

/// The data of the referenced Secrets as read: by name, `None` when there is no such Secret.
pub type SecretData = BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>;

/// Why a referenced Secret cannot be used. Names the entry, the Secret and the key, never
/// a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    NotFound {
        index: usize,
        secret: String,
    },
    MissingKey {
        index: usize,
        secret: String,
        key: Key,
        /// Why it is needed and how to add it.
        because: &'static str,
    },
    NoCredentials {
        index: usize,
        secret: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NotFound { index, secret } => write!(
                f,
                "privateModules[{index}].credentialsSecretRef: Secret {secret} not found in the \
                 fleet's namespace; create it with keys username and password \
                 (kubernetes.io/basic-auth) or ssh-privatekey and known_hosts \
                 (kubernetes.io/ssh-auth)"
            ),
            Problem::MissingKey {
                index,
                secret,
                key,
                because,
            } => write!(
                f,
                "privateModules[{index}].credentialsSecretRef: Secret {secret} has no key {}: {because}",
                key.secret_key()
            ),
            Problem::NoCredentials { index, secret } => write!(
                f,
                "privateModules[{index}].credentialsSecretRef: Secret {secret} has none of the keys \
                 username, password, ssh-privatekey, known_hosts; add username and password \
                 (kubernetes.io/basic-auth) or ssh-privatekey and known_hosts \
                 (kubernetes.io/ssh-auth)"
            ),
        }
    }
}

/// The referenced Secrets cannot be used as they are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct CredentialsError {
    pub problems: Vec<Problem>,
}

/// The Secrets `gmp`'s private modules reference, each name once.
pub fn referenced_secrets(gmp: &GoModuleProxy) -> Vec<String> {
    let mut names: Vec<String> = gmp
        .spec
        .private_modules
        .iter()
        .filter_map(|m| m.credentials_secret_ref.as_ref().map(|r| r.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Checks the referenced Secrets (`secrets` holds every name [`referenced_secrets`] gives)
/// and says what the members get: HTTPS needs `username` and `password`, SSH needs
/// `ssh-privatekey` and `known_hosts` (host keys are always checked).
pub fn check(gmp: &GoModuleProxy, secrets: &SecretData) -> Result<Credentials, CredentialsError> {
    let mut mounts = BTreeMap::new();
    let mut problems = Vec::new();
    let mut hash = Sha256::new();
    for (index, entry) in gmp.spec.private_modules.iter().enumerate() {
        let Some(secret) = entry
            .credentials_secret_ref
            .as_ref()
            .map(|r| r.name.clone())
        else {
            continue;
        };
        let Some(Some(data)) = secrets.get(&secret) else {
            problems.push(Problem::NotFound { index, secret });
            continue;
        };
        let keys: Vec<Key> = Key::ALL
            .into_iter()
            .filter(|k| data.contains_key(k.secret_key()))
            .collect();
        let has = |k: Key| keys.contains(&k);
        let missing = |key: Key, because: &'static str| Problem::MissingKey {
            index,
            secret: secret.clone(),
            key,
            because,
        };
        let before = problems.len();
        if keys.is_empty() {
            problems.push(Problem::NoCredentials {
                index,
                secret: secret.clone(),
            });
        }
        if has(Key::SshPrivateKey) && !has(Key::KnownHosts) {
            problems.push(missing(
                Key::KnownHosts,
                "SSH checks the Git server's host keys; add them (as ssh-keyscan HOST prints them)",
            ));
        }
        if has(Key::KnownHosts) && !has(Key::SshPrivateKey) && !has(Key::Password) {
            problems.push(missing(
                Key::SshPrivateKey,
                "known_hosts alone authenticates nobody; add the SSH private key",
            ));
        }
        if has(Key::Password) && !has(Key::Username) {
            problems.push(missing(
                Key::Username,
                "HTTPS needs a user name with the password or token; add it (any name for most token servers)",
            ));
        }
        if has(Key::Username) && !has(Key::Password) {
            problems.push(missing(
                Key::Password,
                "HTTPS needs a password or token with the user name; add it",
            ));
        }
        if problems.len() > before {
            continue;
        }
        hash.update(index.to_string().as_bytes());
        hash.update([0]);
        hash.update(secret.as_bytes());
        hash.update([0]);
        for key in &keys {
            let value = &data[key.secret_key()];
            hash.update(key.secret_key().as_bytes());
            hash.update([0]);
            hash.update((value.len() as u64).to_be_bytes());
            hash.update(value);
        }
        mounts.insert(index, Mount { secret, keys });
    }
    if !problems.is_empty() {
        return Err(CredentialsError { problems });
    }
    let hash = (!mounts.is_empty()).then(|| {
        let digest = hash.finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    });
    Ok(Credentials { mounts, hash })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::testutil::gmp;
    use super::*;
    use serde_json::json;

    /// A fleet with an SSH entry (Secret `git-ssh`), an anonymous one and an HTTPS entry
    /// (Secret `git-basic`).
    pub fn private_fleet() -> GoModuleProxy {
        gmp(json!({
            "replicas": 2,
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "privateModules": [
                {
                    "pattern": "git.corp.example.com/team/lib",
                    "repository": {"url": "ssh://git@git.corp.example.com/team/lib.git", "root": "git.corp.example.com/team/lib"},
                    "credentialsSecretRef": {"name": "git-ssh"}
                },
                {"pattern": "git.internal/*", "insecure": true},
                {"pattern": "git.corp.example.com/*", "credentialsSecretRef": {"name": "git-basic"}}
            ]
        }))
    }

    pub fn secret(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Vec<u8>>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    pub fn good_secrets() -> SecretData {
        BTreeMap::from([
            (
                "git-ssh".to_owned(),
                secret(&[
                    ("ssh-privatekey", "-----BEGIN OPENSSH PRIVATE KEY-----"),
                    ("known_hosts", "git.corp.example.com ssh-ed25519 AAAA"),
                ]),
            ),
            (
                "git-basic".to_owned(),
                secret(&[
                    ("username", "ci"),
                    ("password", "s3cret-token"),
                    ("unrelated", "x"),
                ]),
            ),
        ])
    }

    #[test]
    fn mounts_the_keys_each_secret_has() {
        let g = private_fleet();
        assert_eq!(referenced_secrets(&g), ["git-basic", "git-ssh"]);
        let c = check(&g, &good_secrets()).unwrap();
        assert_eq!(
            c.mounts,
            BTreeMap::from([
                (
                    0,
                    Mount {
                        secret: "git-ssh".into(),
                        keys: vec![Key::SshPrivateKey, Key::KnownHosts],
                    }
                ),
                (
                    2,
                    Mount {
                        secret: "git-basic".into(),
                        keys: vec![Key::Username, Key::Password],
                    }
                ),
            ])
        );
        assert_eq!(c.hash.as_ref().unwrap().len(), 16);
        assert_eq!(
            file(2, Key::Password),
            PathBuf::from("/etc/modfleet-private/2/password")
        );
    }

    #[test]
    fn the_hash_follows_the_mounted_contents_only() {
        let g = private_fleet();
        let base = check(&g, &good_secrets()).unwrap().hash;
        assert_eq!(base, check(&g, &good_secrets()).unwrap().hash);
        let mut rotated = good_secrets();
        rotated.insert(
            "git-basic".into(),
            secret(&[
                ("username", "ci"),
                ("password", "n3w-token"),
                ("unrelated", "x"),
            ]),
        );
        assert_ne!(base, check(&g, &rotated).unwrap().hash);
        let mut unrelated = good_secrets();
        unrelated.insert(
            "git-basic".into(),
            secret(&[
                ("username", "ci"),
                ("password", "s3cret-token"),
                ("unrelated", "y"),
            ]),
        );
        assert_eq!(base, check(&g, &unrelated).unwrap().hash);
        // No Secret at all: no hash (and so no annotation).
        let anonymous = gmp(json!({
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "privateModules": [{"pattern": "git.internal/*"}]
        }));
        assert_eq!(
            check(&anonymous, &SecretData::new()).unwrap(),
            Credentials::default()
        );
    }

    #[test]
    fn problems_name_the_secret_and_the_key_never_a_value() {
        let g = private_fleet();
        let mut secrets = good_secrets();
        secrets.insert("git-basic".into(), None);
        let err = check(&g, &secrets).unwrap_err();
        assert_eq!(
            err.problems,
            [Problem::NotFound {
                index: 2,
                secret: "git-basic".into()
            }]
        );
        let msg = err.to_string();
        assert!(
            msg.contains("privateModules[2].credentialsSecretRef: Secret git-basic not found"),
            "{msg}"
        );

        let mut secrets = good_secrets();
        secrets.insert(
            "git-ssh".into(),
            secret(&[("ssh-privatekey", "-----BEGIN OPENSSH PRIVATE KEY-----")]),
        );
        secrets.insert("git-basic".into(), secret(&[("password", "s3cret-token")]));
        let err = check(&g, &secrets).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("Secret git-ssh has no key known_hosts"),
            "{msg}"
        );
        assert!(
            msg.contains("Secret git-basic has no key username"),
            "{msg}"
        );
        assert!(!msg.contains("s3cret") && !msg.contains("BEGIN"), "{msg}");

        let mut secrets = good_secrets();
        secrets.insert("git-ssh".into(), secret(&[("token", "x")]));
        let err = check(&g, &secrets).unwrap_err();
        assert_eq!(
            err.problems,
            [Problem::NoCredentials {
                index: 0,
                secret: "git-ssh".into()
            }]
        );
        let mut secrets = good_secrets();
        secrets.insert("git-basic".into(), secret(&[("username", "ci")]));
        let msg = check(&g, &secrets).unwrap_err().to_string();
        assert!(
            msg.contains("Secret git-basic has no key password"),
            "{msg}"
        );
    }
}
