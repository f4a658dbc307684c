//! The webhook's serving certificate: [`ServingCert`] is what the TLS listener presents,
//! swapped in place when the certificate is renewed or its files change.

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate the webhook presents; cheap to clone (one shared slot). Empty until the
/// first certificate is loaded: handshakes fail until then (the API server then ignores the
/// webhook, `failurePolicy: Ignore`).
#[derive(Clone, Default, Debug)]
pub struct ServingCert {
    current: Arc<RwLock<Option<Arc<CertifiedKey>>>>,
}

impl ServingCert {
    /// Presents `key` from the next handshake on.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(key);
    }

    /// The certificate presented now, if any.
    pub fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}
