//! HTTPS on the client (GOPROXY) port: the certificate and key from PEM files
//! (`--tls-cert`/`--tls-key`, `tls: {certFile, keyFile}`), checked at start and read again
//! when the files change ([`reload`]), so a cert-manager renewal or a Secret update needs no
//! restart. HTTP/1.1 and HTTP/2 are offered by ALPN. The admin port stays plain HTTP (kubelet
//! probes and Prometheus scrapes).
//!
//! The handshake itself, and what a hostile client meets during it, is the listener's
//! (`listener::handshake`).

pub mod reload;
mod validity;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

pub use modfleet_contract::config::TlsConfig;
pub use reload::ReloadingCert;

use crate::credentials::file::{self, FileError, Version};

/// Largest certificate or key file read: a chain of a few certificates is a few KiB, and a
/// wrong path (a log, a device) must not be read into memory.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// ALPN protocols offered, preferred first.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate and key cannot be served. Names the files and the fix, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "TLS certificate (--tls-cert, tls.certFile): {0}: give the path of the PEM \
         certificate chain (a mounted Secret's tls.crt)"
    )]
    CertFile(FileError),
    #[error(
        "TLS key (--tls-key, tls.keyFile): {0}: give the path of the PEM private key (a \
         mounted Secret's tls.key)"
    )]
    KeyFile(FileError),
    #[error(
        "TLS certificate {}: no PEM certificate in it (`-----BEGIN CERTIFICATE-----`): \
         is it the certificate (a Secret's tls.crt) and not the key?",
        path.display()
    )]
    NoCertificate { path: PathBuf },
    #[error(
        "TLS certificate {}: {reason}: it must be the PEM certificate chain, the server's \
         certificate first",
        path.display()
    )]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "TLS key {}: no PEM private key in it (`-----BEGIN PRIVATE KEY-----`, or the RSA or \
         EC forms): is it the key (a Secret's tls.key) and not the certificate?",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error(
        "TLS key {}: {reason}: use an unencrypted PEM key (PKCS#8, PKCS#1 RSA or SEC1 EC; \
         ECDSA P-256/P-384, RSA or Ed25519)",
        path.display()
    )]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "TLS key {} does not belong to the certificate {}: the chain's first certificate \
         must be the key's (write both files from the same issuance, e.g. one Secret's \
         tls.crt and tls.key)",
        key.display(),
        cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// A certificate and key ready to serve.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// The server certificate's `notAfter`, seconds since the epoch.
    pub not_after: Option<i64>,
    /// Of both files' bytes: a re-read that finds the same pair changes nothing.
    pub digest: [u8; 32],
}

/// The versions of the two files a [`Loaded`] was read from (certificate, key).
pub type Versions = (Version, Version);

/// Reads and checks both files.
pub fn load(files: &TlsConfig) -> Result<(Versions, Loaded), TlsError> {
    let (cert_version, cert) =
        file::read_at_most(&files.cert_file, MAX_PEM_BYTES).map_err(TlsError::CertFile)?;
    let (key_version, key) =
        file::read_at_most(&files.key_file, MAX_PEM_BYTES).map_err(TlsError::KeyFile)?;
    let loaded = parse(&files.cert_file, &cert, &files.key_file, &key)?;
    Ok(((cert_version, key_version), loaded))
}

/// Checks a PEM certificate chain and key: both parse, the key is one rustls can sign with,
/// and it is the first certificate's.
pub fn parse(
    cert_path: &Path,
    cert: &[u8],
    key_path: &Path,
    key: &[u8],
) -> Result<Loaded, TlsError> {
    let bad_cert = |reason: String| TlsError::BadCertificate {
        path: cert_path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(format!("not valid PEM ({e})")))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(key).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: key_path.to_path_buf(),
        },
        e => TlsError::BadKey {
            path: key_path.to_path_buf(),
            reason: format!("not valid PEM ({e})"),
        },
    })?;
    let signer = provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError::BadKey {
            path: key_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let not_after = validity::not_after(&chain[0]);
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::Mismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            });
        }
        Err(e) => return Err(bad_cert(e.to_string())),
    }
    let mut digest = Sha256::new();
    digest.update(cert);
    digest.update(key);
    Ok(Loaded {
        key: Arc::new(certified),
        not_after,
        digest: digest.finalize().into(),
    })
}

/// The process's TLS provider: ring, as both binaries install at start.
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The rustls server configuration of the client port: TLS 1.2 and 1.3, no client
/// certificates, ALPN `h2` and `http/1.1`, the certificate from `resolver`.
pub fn server_config(resolver: Arc<ReloadingCert>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

#[cfg(test)]
mod tests;
