//! The cache tiers above each member's disk as the members get them: the object store
//! (`spec.cache.objectStore`: the proxy's `objectStore`, its Secret's keys mounted as files
//! under [`STORE_DIR`]) and peer fill (`spec.fleet.peerFill`: the proxy's `peerFill`, the
//! fleet's peer token mounted under [`PEER_DIR`], the membership read from the `NAME-peers`
//! Service's EndpointSlices). Pure: the reconcile reads the Secrets and hands their data to
//! [`check`]; the builders read the [`Tiers`] it returns. No credential byte leaves this
//! module but into the hash.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use modfleet_contract::config::{
    EndpointSlicesConfig, ObjectStoreConfig, ObjectStoreCredentialsConfig, PeerFillConfig,
};
use modfleet_contract::defaults;
use modfleet_contract::values::HumanDuration;
use sha2::{Digest, Sha256};

use super::credentials::SecretData;
use super::labels::Component;
use super::{meta, names};
use crate::crd::{GoModuleProxy, ObjectStoreSpec};

/// Where the object store's Secret is mounted (beside the config directory, not in it).
pub const STORE_DIR: &str = "/etc/modfleet-store";
/// The pod volume of the object store's Secret.
pub const STORE_VOLUME: &str = "store-credentials";
/// Where the peer token Secret is mounted; the file is [`PEER_TOKEN_KEY`] in it.
pub const PEER_DIR: &str = "/etc/modfleet-peer";
/// The pod volume of the peer token Secret.
pub const PEER_VOLUME: &str = "peer-token";
/// The key of the peer token Secret (and the file name in the mount).
pub const PEER_TOKEN_KEY: &str = "token";
/// Shortest peer token the proxy accepts (`peerFill.tokenFile`).
pub const MIN_PEER_TOKEN_LEN: usize = 32;
/// Pod template annotation with the hash of the store's keys and the peer token: the proxy
/// reads both at start, so a change rolls the members.
pub const TIERS_HASH_ANNOTATION: &str = "modfleet.dev/tiers-hash";

/// The peer port (container and `NAME-peers` Service port `peer`), members only.
pub fn peer_port() -> i32 {
    i32::from(defaults::PEER_LISTEN.port())
}

/// The kind of store, from its URL's scheme (the CRD admits only these three).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    S3,
    Gcs,
    Azure,
}

impl Provider {
    pub fn of(url: &str) -> Provider {
        if url.starts_with("gs://") {
            Provider::Gcs
        } else if url.starts_with("az://") {
            Provider::Azure
        } else {
            Provider::S3
        }
    }

    /// The keys a Secret for this store may hold, in mount order.
    fn keys(self) -> &'static [StoreKey] {
        match self {
            Provider::S3 => &[
                StoreKey::AccessKeyId,
                StoreKey::SecretAccessKey,
                StoreKey::SessionToken,
            ],
            Provider::Gcs => &[StoreKey::ServiceAccountKey],
            Provider::Azure => &[StoreKey::AccessKey],
        }
    }

    /// The keys it must hold.
    fn required(self) -> &'static [StoreKey] {
        match self {
            Provider::S3 => &[StoreKey::AccessKeyId, StoreKey::SecretAccessKey],
            Provider::Gcs => &[StoreKey::ServiceAccountKey],
            Provider::Azure => &[StoreKey::AccessKey],
        }
    }
}

/// A key of the object store's Secret, named for what it holds (as AWS, Google and Azure
/// name them, in camelCase like the CRD's fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StoreKey {
    AccessKeyId,
    SecretAccessKey,
    SessionToken,
    ServiceAccountKey,
    AccessKey,
}

impl StoreKey {
    /// The key in the Secret, and the file name in the mount.
    pub const fn secret_key(self) -> &'static str {
        match self {
            StoreKey::AccessKeyId => "accessKeyId",
            StoreKey::SecretAccessKey => "secretAccessKey",
            StoreKey::SessionToken => "sessionToken",
            StoreKey::ServiceAccountKey => "serviceAccountKey",
            StoreKey::AccessKey => "accessKey",
        }
    }

    /// The file of this key in the mount.
    pub fn file(self) -> PathBuf {
        PathBuf::from(format!("{STORE_DIR}/{}", self.secret_key()))
    }
}

/// The object store's Secret as the members get it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreMount {
    pub secret: String,
    /// The keys the members get, in [`Provider`]'s key order.
    pub keys: Vec<StoreKey>,
}

/// What the members get of the tiers' Secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tiers {
    /// With `objectStore.credentialsSecretRef`. (The peer token Secret is mounted whenever
    /// peer fill is on: its name is the fleet's.)
    pub store: Option<StoreMount>,
    /// Hash of the mounted keys' contents and the peer token; `None` when neither is mounted.
    pub hash: Option<String>,
}

/// The fleet's peer token. Never printed: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerToken(String);

impl PeerToken {
    /// A new token from the operating system's CSPRNG (256 bits, `mf_` + base64url: 46
    /// characters).
    pub fn generate() -> PeerToken {
        PeerToken(modfleet_contract::access::generate_token())
    }

    /// The token of an existing Secret's data, when it is one the proxy accepts: one line of
    /// at least [`MIN_PEER_TOKEN_LEN`] printable characters. `None`: make it anew.
    pub fn from_secret(data: &BTreeMap<String, Vec<u8>>) -> Option<PeerToken> {
        let token = std::str::from_utf8(data.get(PEER_TOKEN_KEY)?).ok()?;
        let ok = token.len() >= MIN_PEER_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| PeerToken(token.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PeerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerToken(..)")
    }
}

/// The peer token Secret `NAME-peer-token` of `gmp`, owned by it (deleted with it, or when
/// peer fill goes off).
pub fn peer_token_secret(gmp: &GoModuleProxy, token: &PeerToken) -> Secret {
    Secret {
        metadata: meta(
            gmp,
            names::peer_token(&gmp.name_any()),
            Component::Access,
            None,
        ),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            PEER_TOKEN_KEY.to_owned(),
            ByteString(token.0.clone().into_bytes()),
        )])),
        ..Secret::default()
    }
}

/// Why the object store's Secret cannot be used. Names the Secret and the keys, never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TiersError {
    #[error(
        "cache.objectStore.credentialsSecretRef: Secret {secret} not found in the fleet's namespace; create it with keys {wanted}"
    )]
    NotFound { secret: String, wanted: String },
    #[error(
        "cache.objectStore.credentialsSecretRef: Secret {secret} has no key {missing}; a {provider} store needs {wanted}"
    )]
    MissingKey {
        secret: String,
        missing: String,
        provider: &'static str,
        wanted: String,
    },
}

/// What a Secret for `provider` holds, for messages.
fn wanted(provider: Provider) -> String {
    match provider {
        Provider::S3 => "accessKeyId and secretAccessKey (and sessionToken for temporary keys)",
        Provider::Gcs => "serviceAccountKey (a service account's JSON key)",
        Provider::Azure => "accessKey (the storage account's key; accountName in the spec)",
    }
    .to_owned()
}

/// The Secret `objectStore.credentialsSecretRef` names, if any.
pub fn referenced_secrets(gmp: &GoModuleProxy) -> Vec<String> {
    gmp.spec
        .cache
        .object_store
        .as_ref()
        .and_then(|s| s.credentials_secret_ref.as_ref())
        .map(|r| vec![r.name.clone()])
        .unwrap_or_default()
}

/// Checks the object store's Secret (`secrets` holds every name [`referenced_secrets`]
/// gives) and says what the members get; `peer_token` is the fleet's (with peer fill on).
pub fn check(
    gmp: &GoModuleProxy,
    secrets: &SecretData,
    peer_token: Option<&PeerToken>,
) -> Result<Tiers, TiersError> {
    let mut hash = Sha256::new();
    let mut hashed = false;
    let mut store = None;
    if let Some(spec) = &gmp.spec.cache.object_store
        && let Some(r) = &spec.credentials_secret_ref
    {
        let provider = Provider::of(&spec.url);
        let Some(Some(data)) = secrets.get(&r.name) else {
            return Err(TiersError::NotFound {
                secret: r.name.clone(),
                wanted: wanted(provider),
            });
        };
        let missing: Vec<&str> = provider
            .required()
            .iter()
            .filter(|k| !data.contains_key(k.secret_key()))
            .map(|k| k.secret_key())
            .collect();
        if !missing.is_empty() {
            return Err(TiersError::MissingKey {
                secret: r.name.clone(),
                missing: missing.join(", "),
                provider: match provider {
                    Provider::S3 => "S3",
                    Provider::Gcs => "GCS",
                    Provider::Azure => "Azure Blob",
                },
                wanted: wanted(provider),
            });
        }
        let keys: Vec<StoreKey> = provider
            .keys()
            .iter()
            .copied()
            .filter(|k| data.contains_key(k.secret_key()))
            .collect();
        hash_part(&mut hash, "objectStore", r.name.as_bytes());
        for key in &keys {
            hash_part(&mut hash, key.secret_key(), &data[key.secret_key()]);
        }
        hashed = true;
        store = Some(StoreMount {
            secret: r.name.clone(),
            keys,
        });
    }
    if let Some(token) = peer_token {
        hash_part(&mut hash, "peerToken", token.0.as_bytes());
        hashed = true;
    }
    let hash = hashed.then(|| {
        let digest = hash.finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    });
    Ok(Tiers { store, hash })
}

fn hash_part(hash: &mut Sha256, tag: &str, value: &[u8]) {
    hash.update(tag.as_bytes());
    hash.update([0]);
    hash.update((value.len() as u64).to_be_bytes());
    hash.update(value);
}

/// The proxy's `objectStore`, with the files of the keys its Secret has (never their
/// contents). The CRD admits only `([0-9]+(ms|s|m|h))+` timeouts; one the proxy cannot read
/// (longer than 500 years) gets the default.
pub fn object_store_config(spec: &ObjectStoreSpec, tiers: &Tiers) -> ObjectStoreConfig {
    let credentials = tiers.store.as_ref().map(|m| {
        let file = |key: StoreKey| m.keys.contains(&key).then(|| key.file());
        ObjectStoreCredentialsConfig {
            access_key_id_file: file(StoreKey::AccessKeyId),
            secret_access_key_file: file(StoreKey::SecretAccessKey),
            session_token_file: file(StoreKey::SessionToken),
            service_account_key_file: file(StoreKey::ServiceAccountKey),
            account_name: spec.account_name.clone(),
            access_key_file: file(StoreKey::AccessKey),
        }
    });
    // Azure's account name without a Secret: ambient credentials for that account.
    let credentials = credentials.or_else(|| {
        spec.account_name
            .as_ref()
            .map(|a| ObjectStoreCredentialsConfig {
                account_name: Some(a.clone()),
                ..ObjectStoreCredentialsConfig::default()
            })
    });
    ObjectStoreConfig {
        endpoint: spec.endpoint.clone(),
        region: spec.region.clone(),
        credentials,
        allow_http: spec.allow_http,
        timeout: spec
            .timeout
            .as_deref()
            .and_then(|t| t.parse::<HumanDuration>().ok())
            .unwrap_or(defaults::OBJECT_STORE_TIMEOUT),
        ..ObjectStoreConfig::new(&spec.url)
    }
}

/// The proxy's `peerFill`: listen on the peer port, the token from its mount, the membership
/// from the `NAME-peers` Service's EndpointSlices in the Pod's namespace. Each member's own
/// address comes from `MODFLEET_PEER_ADVERTISE` (the Deployment sets `$(POD_IP):7070`).
pub fn peer_fill_config(gmp: &GoModuleProxy) -> PeerFillConfig {
    PeerFillConfig {
        listen: defaults::PEER_LISTEN,
        advertise: None,
        token_file: PathBuf::from(format!("{PEER_DIR}/{PEER_TOKEN_KEY}")),
        members: Vec::new(),
        endpoint_slices: Some(EndpointSlicesConfig::new(names::peers(&gmp.name_any()))),
        timeout: defaults::PEER_TIMEOUT,
    }
}

#[cfg(test)]
mod tests;
