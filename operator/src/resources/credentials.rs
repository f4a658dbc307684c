//! The Secrets a fleet's entries name, as its members get them: `spec.upstreams[]` (the
//! credentials sent to an upstream) and `spec.privateModules[]` (Git credentials). For each
//! entry with a `credentialsSecretRef`: which keys of the Secret the members get as files
//! under the entry's own directory ([`Owner::dir`]), and a hash of those keys' contents for
//! the pod template (a changed Secret rolls the members). Pure: the reconcile reads the
//! Secrets and hands their data to [`check`]; the builders read the [`Credentials`] it
//! returns. No credential byte leaves this module but into the hash.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::crd::GoModuleProxy;

/// Where the Secret of `privateModules[i]` is mounted: `PRIVATE_DIR/i/`. Beside the config
/// directory, not in it: a container runtime cannot create a mount point inside the ConfigMap's
/// read-only mount (runc: "mkdir .../etc/modfleet/private: read-only file system").
pub const PRIVATE_DIR: &str = "/etc/modfleet-private";
/// Where the Secret of `upstreams[i]` is mounted: `UPSTREAM_DIR/i/` (beside the config
/// directory too).
pub const UPSTREAM_DIR: &str = "/etc/modfleet-upstream";
/// Pod template annotation with the hash of the mounted credentials.
pub const CREDENTIALS_HASH_ANNOTATION: &str = "modfleet.dev/credentials-hash";

/// The spec entry a Secret belongs to. Ordered as the pod template lists their volumes:
/// private modules first (as before upstreams had Secrets), then upstreams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    PrivateModule(usize),
    Upstream(usize),
}

impl Owner {
    /// The directory of the entry's credential files.
    pub fn dir(self) -> String {
        match self {
            Owner::PrivateModule(i) => format!("{PRIVATE_DIR}/{i}"),
            Owner::Upstream(i) => format!("{UPSTREAM_DIR}/{i}"),
        }
    }

    /// The file of `key` for this entry.
    pub fn file(self, key: Key) -> PathBuf {
        PathBuf::from(format!("{}/{}", self.dir(), key.secret_key()))
    }

    /// The pod volume of the entry's Secret.
    pub fn volume(self) -> String {
        match self {
            Owner::PrivateModule(i) => format!("private-{i}"),
            Owner::Upstream(i) => format!("upstream-{i}"),
        }
    }

    /// The spec field naming the Secret, for messages.
    fn field(self) -> String {
        match self {
            Owner::PrivateModule(i) => format!("privateModules[{i}].credentialsSecretRef"),
            Owner::Upstream(i) => format!("upstreams[{i}].credentialsSecretRef"),
        }
    }

    /// The keys this kind of entry uses, in mount order.
    fn keys(self) -> &'static [Key] {
        match self {
            Owner::PrivateModule(_) => &[
                Key::Username,
                Key::Password,
                Key::SshPrivateKey,
                Key::KnownHosts,
            ],
            Owner::Upstream(_) => &[Key::Username, Key::Password, Key::Token, Key::Netrc],
        }
    }

    /// What a Secret for this kind of entry holds, for messages.
    fn wanted(self) -> &'static str {
        match self {
            Owner::PrivateModule(_) => {
                "username and password (kubernetes.io/basic-auth) or ssh-privatekey and \
                 known_hosts (kubernetes.io/ssh-auth)"
            }
            Owner::Upstream(_) => {
                "username and password (kubernetes.io/basic-auth), or token (a Bearer token), \
                 or netrc (a netrc file with the upstream's host)"
            }
        }
    }
}

/// A Secret key the members use, named as `kubernetes.io/basic-auth` and
/// `kubernetes.io/ssh-auth` Secrets name them (`known_hosts` as OpenSSH names the file,
/// `token` and `netrc` for what they hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Username,
    Password,
    SshPrivateKey,
    KnownHosts,
    Token,
    Netrc,
}

impl Key {
    /// The key in the Secret, and the file name in the mount.
    pub const fn secret_key(self) -> &'static str {
        match self {
            Key::Username => "username",
            Key::Password => "password",
            Key::SshPrivateKey => "ssh-privatekey",
            Key::KnownHosts => "known_hosts",
            Key::Token => "token",
            Key::Netrc => "netrc",
        }
    }
}

/// One entry's Secret as the members get it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub secret: String,
    /// The keys the members get, in [`Owner`]'s key order: only these are mounted and
    /// rendered.
    pub keys: Vec<Key>,
}

/// What the members get of the referenced Secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// By entry, for the entries with a `credentialsSecretRef`.
    pub mounts: BTreeMap<Owner, Mount>,
    /// Hash of the mounted keys' contents; `None` when no entry has a Secret.
    pub hash: Option<String>,
}

impl Credentials {
    /// The file of `key` for `owner`, when its Secret is mounted with that key.
    pub fn file(&self, owner: Owner, key: Key) -> Option<PathBuf> {
        self.mounts
            .get(&owner)
            .filter(|m| m.keys.contains(&key))
            .map(|_| owner.file(key))
    }
}

/// The data of the referenced Secrets as read: by name, `None` when there is no such Secret.
pub type SecretData = BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>;

/// Why a referenced Secret cannot be used. Names the entry, the Secret and the key, never
/// a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    NotFound {
        owner: Owner,
        secret: String,
    },
    MissingKey {
        owner: Owner,
        secret: String,
        key: Key,
        /// Why it is needed and how to add it.
        because: &'static str,
    },
    NoCredentials {
        owner: Owner,
        secret: String,
    },
    /// An upstream's Secret holds keys of more than one kind (Basic, token, netrc).
    SeveralKinds {
        owner: Owner,
        secret: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NotFound { owner, secret } => write!(
                f,
                "{}: Secret {secret} not found in the fleet's namespace; create it with keys {}",
                owner.field(),
                owner.wanted()
            ),
            Problem::MissingKey {
                owner,
                secret,
                key,
                because,
            } => write!(
                f,
                "{}: Secret {secret} has no key {}: {because}",
                owner.field(),
                key.secret_key()
            ),
            Problem::NoCredentials { owner, secret } => {
                let keys: Vec<&str> = owner.keys().iter().map(|k| k.secret_key()).collect();
                write!(
                    f,
                    "{}: Secret {secret} has none of the keys {}; add {}",
                    owner.field(),
                    keys.join(", "),
                    owner.wanted()
                )
            }
            Problem::SeveralKinds { owner, secret } => write!(
                f,
                "{}: Secret {secret} holds keys of more than one kind of credentials \
                 (username and password, token, netrc); keep the one the upstream takes",
                owner.field()
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

/// The entries of `gmp` that name a Secret, in [`Owner`] order.
fn owners(gmp: &GoModuleProxy) -> Vec<(Owner, String)> {
    let private = gmp
        .spec
        .private_modules
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let r = m.credentials_secret_ref.as_ref()?;
            Some((Owner::PrivateModule(i), r.name.clone()))
        });
    let upstreams = gmp.spec.upstreams.iter().enumerate().filter_map(|(i, u)| {
        let r = u.credentials_secret_ref.as_ref()?;
        Some((Owner::Upstream(i), r.name.clone()))
    });
    private.chain(upstreams).collect()
}

/// The Secrets `gmp`'s upstreams and private modules reference, each name once.
pub fn referenced_secrets(gmp: &GoModuleProxy) -> Vec<String> {
    let mut names: Vec<String> = owners(gmp).into_iter().map(|(_, name)| name).collect();
    names.sort();
    names.dedup();
    names
}

/// Checks the referenced Secrets (`secrets` holds every name [`referenced_secrets`] gives)
/// and says what the members get. A private module's HTTPS needs `username` and `password`,
/// its SSH `ssh-privatekey` and `known_hosts` (host keys are always checked); an upstream
/// takes one of `username` and `password`, `token`, `netrc`.
pub fn check(gmp: &GoModuleProxy, secrets: &SecretData) -> Result<Credentials, CredentialsError> {
    let mut mounts = BTreeMap::new();
    let mut problems = Vec::new();
    let mut hash = Sha256::new();
    for (owner, secret) in owners(gmp) {
        let Some(Some(data)) = secrets.get(&secret) else {
            problems.push(Problem::NotFound { owner, secret });
            continue;
        };
        let present: Vec<Key> = owner
            .keys()
            .iter()
            .copied()
            .filter(|k| data.contains_key(k.secret_key()))
            .collect();
        let before = problems.len();
        let keys = match owner {
            Owner::PrivateModule(_) => private_module_keys(owner, &secret, present, &mut problems),
            Owner::Upstream(_) => upstream_keys(owner, &secret, present, &mut problems),
        };
        if problems.len() > before {
            continue;
        }
        // A private module's entry is hashed as before upstreams had Secrets (its bare
        // index), so existing fleets keep their hash and do not roll on an upgrade.
        let tag = match owner {
            Owner::PrivateModule(i) => i.to_string(),
            Owner::Upstream(i) => format!("upstreams[{i}]"),
        };
        hash.update(tag.as_bytes());
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
        mounts.insert(owner, Mount { secret, keys });
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

/// A private module: HTTPS (`username` and `password`) or SSH (`ssh-privatekey` and
/// `known_hosts`); every key it has is mounted.
fn private_module_keys(
    owner: Owner,
    secret: &str,
    keys: Vec<Key>,
    problems: &mut Vec<Problem>,
) -> Vec<Key> {
    let has = |k: Key| keys.contains(&k);
    let missing = |key: Key, because: &'static str| Problem::MissingKey {
        owner,
        secret: secret.to_owned(),
        key,
        because,
    };
    if keys.is_empty() {
        problems.push(Problem::NoCredentials {
            owner,
            secret: secret.to_owned(),
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
    basic_pair(&keys, missing, problems);
    keys
}

/// An upstream: exactly one of HTTP Basic (`username` and `password`), `token`, `netrc`;
/// only that kind's keys are mounted.
fn upstream_keys(
    owner: Owner,
    secret: &str,
    keys: Vec<Key>,
    problems: &mut Vec<Problem>,
) -> Vec<Key> {
    let basic = keys.contains(&Key::Username) || keys.contains(&Key::Password);
    let kinds = [
        basic,
        keys.contains(&Key::Token),
        keys.contains(&Key::Netrc),
    ];
    match kinds.iter().filter(|&&k| k).count() {
        0 => problems.push(Problem::NoCredentials {
            owner,
            secret: secret.to_owned(),
        }),
        1 => {}
        _ => problems.push(Problem::SeveralKinds {
            owner,
            secret: secret.to_owned(),
        }),
    }
    let missing = |key: Key, because: &'static str| Problem::MissingKey {
        owner,
        secret: secret.to_owned(),
        key,
        because,
    };
    basic_pair(&keys, missing, problems);
    keys
}

/// `username` and `password` go together.
fn basic_pair(
    keys: &[Key],
    missing: impl Fn(Key, &'static str) -> Problem,
    problems: &mut Vec<Problem>,
) {
    let has = |k: Key| keys.contains(&k);
    if has(Key::Password) && !has(Key::Username) {
        problems.push(missing(
            Key::Username,
            "HTTP Basic needs a user name with the password or token; add it (any name for most token servers)",
        ));
    }
    if has(Key::Username) && !has(Key::Password) {
        problems.push(missing(
            Key::Password,
            "HTTP Basic needs a password or token with the user name; add it",
        ));
    }
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
                    Owner::PrivateModule(0),
                    Mount {
                        secret: "git-ssh".into(),
                        keys: vec![Key::SshPrivateKey, Key::KnownHosts],
                    }
                ),
                (
                    Owner::PrivateModule(2),
                    Mount {
                        secret: "git-basic".into(),
                        keys: vec![Key::Username, Key::Password],
                    }
                ),
            ])
        );
        assert_eq!(c.hash.as_ref().unwrap().len(), 16);
        assert_eq!(
            Owner::PrivateModule(2).file(Key::Password),
            PathBuf::from("/etc/modfleet-private/2/password")
        );
        assert_eq!(
            c.file(Owner::PrivateModule(0), Key::KnownHosts),
            Some(PathBuf::from("/etc/modfleet-private/0/known_hosts"))
        );
        assert_eq!(c.file(Owner::PrivateModule(0), Key::Password), None);
        assert_eq!(c.file(Owner::PrivateModule(1), Key::Password), None);
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

    /// Existing fleets keep their pod template hash (they do not roll when the operator that
    /// knows upstream Secrets takes over): the value the hash had before.
    #[test]
    fn a_private_module_hash_is_what_it_was() {
        let c = check(&private_fleet(), &good_secrets()).unwrap();
        assert_eq!(c.hash.as_deref(), Some("a08e46a2ea6e08b7"));
    }

    /// A fleet whose upstreams use Basic (Secret `up-basic`), a token (`up-token`), netrc
    /// (`up-netrc`), and none.
    pub fn upstream_fleet() -> GoModuleProxy {
        gmp(json!({
            "upstreams": [
                {"url": "https://artifactory.corp.example/api/go/go", "credentialsSecretRef": {"name": "up-basic"}},
                {"url": "https://goproxy.example.com"},
                {"url": "https://nexus.corp.example/repository/go", "credentialsSecretRef": {"name": "up-token"}},
                {"url": "http://athens.internal:3000", "insecure": true, "credentialsSecretRef": {"name": "up-netrc"}}
            ]
        }))
    }

    pub fn upstream_secrets() -> SecretData {
        BTreeMap::from([
            (
                "up-basic".to_owned(),
                secret(&[
                    ("username", "ci"),
                    ("password", "up-s3cret"),
                    ("other", "x"),
                ]),
            ),
            ("up-token".to_owned(), secret(&[("token", "up-t0ken")])),
            (
                "up-netrc".to_owned(),
                secret(&[(
                    "netrc",
                    "machine athens.internal:3000 login a password up-n3trc",
                )]),
            ),
        ])
    }

    #[test]
    fn upstreams_get_the_keys_of_their_one_kind() {
        let g = upstream_fleet();
        assert_eq!(referenced_secrets(&g), ["up-basic", "up-netrc", "up-token"]);
        let c = check(&g, &upstream_secrets()).unwrap();
        let keys = |i: usize| c.mounts.get(&Owner::Upstream(i)).map(|m| m.keys.clone());
        assert_eq!(keys(0), Some(vec![Key::Username, Key::Password]));
        assert_eq!(keys(1), None);
        assert_eq!(keys(2), Some(vec![Key::Token]));
        assert_eq!(keys(3), Some(vec![Key::Netrc]));
        assert_eq!(
            c.file(Owner::Upstream(2), Key::Token),
            Some(PathBuf::from("/etc/modfleet-upstream/2/token"))
        );
        assert_eq!(Owner::Upstream(3).volume(), "upstream-3");
        // The hash follows each upstream's Secret, and differs from a private module's with
        // the same index and Secret.
        let base = c.hash.clone().unwrap();
        let mut rotated = upstream_secrets();
        rotated.insert("up-token".into(), secret(&[("token", "up-t0ken-2")]));
        assert_ne!(Some(base.clone()), check(&g, &rotated).unwrap().hash);
        let private = gmp(json!({
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "privateModules": [{"pattern": "a.example/*", "credentialsSecretRef": {"name": "up-token"}}]
        }));
        let as_upstream = gmp(json!({
            "upstreams": [{"url": "https://goproxy.example.com", "credentialsSecretRef": {"name": "up-token"}}]
        }));
        let private_secret = BTreeMap::from([(
            "up-token".to_owned(),
            secret(&[("username", "u"), ("password", "p")]),
        )]);
        assert_ne!(
            check(&private, &private_secret).unwrap().hash,
            check(&as_upstream, &private_secret).unwrap().hash
        );
    }

    #[test]
    fn upstream_problems_name_the_entry_and_the_fix() {
        let g = upstream_fleet();
        let with = |name: &str, data: Option<BTreeMap<String, Vec<u8>>>| {
            let mut s = upstream_secrets();
            s.insert(name.into(), data);
            check(&g, &s).unwrap_err()
        };
        let e = with("up-token", None);
        assert_eq!(
            e.problems,
            [Problem::NotFound {
                owner: Owner::Upstream(2),
                secret: "up-token".into()
            }]
        );
        let msg = e.to_string();
        assert!(
            msg.contains("upstreams[2].credentialsSecretRef: Secret up-token not found")
                && msg.contains("token (a Bearer token)"),
            "{msg}"
        );
        let msg = with("up-basic", secret(&[("password", "up-s3cret")])).to_string();
        assert!(
            msg.contains("upstreams[0].credentialsSecretRef: Secret up-basic has no key username"),
            "{msg}"
        );
        let msg = with(
            "up-basic",
            secret(&[
                ("username", "ci"),
                ("password", "up-s3cret"),
                ("token", "up-t0ken"),
            ]),
        )
        .to_string();
        assert!(msg.contains("more than one kind"), "{msg}");
        let msg = with("up-netrc", secret(&[("ssh-privatekey", "KEY")])).to_string();
        assert!(
            msg.contains("Secret up-netrc has none of the keys username, password, token, netrc"),
            "{msg}"
        );
        for secret in ["up-s3cret", "up-t0ken", "up-n3trc", "KEY"] {
            assert!(!msg.contains(secret), "{msg}");
        }
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
                owner: Owner::PrivateModule(2),
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
                owner: Owner::PrivateModule(0),
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
