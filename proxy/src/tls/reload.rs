//! The served certificate, read again when its files change.
//!
//! At most once per [`CHECK_INTERVAL`], a handshake `stat`s both files (as the upstream
//! credentials do, `credentials::file`): a replaced file (a Secret update swaps a symlink), a
//! changed size or time, or a file changed within the last seconds (a rewrite within one tick
//! of the kernel's clock keeps its times) is read again. A new pair that parses and matches is
//! served to the next handshakes; connections already open keep theirs. One that does not is
//! refused (logged, counted) and the last good pair keeps serving — but not while either file
//! changed within [`file::RACY_WINDOW`]: a writer replacing the certificate and then the key
//! is between the two, and is looked at again at the next check.
//!
//! The look runs in the handshake that finds it due, on its runtime thread: two `stat`s, and
//! after a change two reads of at most [`super::MAX_PEM_BYTES`] (a few KiB in practice) once.
//! A handshake that finds another one looking does not wait: it gets the current pair.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{Loaded, TlsConfig, TlsError, Versions, load};
use crate::credentials::file;
use crate::metrics::{OutcomeLabel, TlsMetrics};

/// How often a handshake may look at the files.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A [`ResolvesServerCert`] serving the certificate of two PEM files.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsConfig,
    current: RwLock<Arc<CertifiedKey>>,
    check: Mutex<Check>,
    /// Milliseconds since `started` of the last check (a lock-free "not yet").
    last_check_ms: AtomicU64,
    started: Instant,
    metrics: TlsMetrics,
}

/// What the last checks found.
#[derive(Debug)]
struct Check {
    /// The versions last read, good or refused: unchanged files are not read again.
    seen: Option<Versions>,
    /// Of the pair being served.
    digest: [u8; 32],
    /// The last refusal's message, so that a file broken for hours is logged once.
    last_error: Option<String>,
}

impl ReloadingCert {
    /// Reads the pair once; an error here stops the start.
    pub fn new(files: TlsConfig, metrics: TlsMetrics) -> Result<ReloadingCert, TlsError> {
        let (versions, loaded) = load(&files)?;
        set_expiry(&metrics, &loaded);
        Ok(ReloadingCert {
            files,
            current: RwLock::new(loaded.key),
            check: Mutex::new(Check {
                seen: Some(versions),
                digest: loaded.digest,
                last_error: None,
            }),
            last_check_ms: AtomicU64::new(0),
            started: Instant::now(),
            metrics,
        })
    }

    /// The pair served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Looks at the files if the last look is older than [`CHECK_INTERVAL`]; a handshake
    /// that finds another one looking does not wait for it.
    pub fn refresh(&self) {
        let now_ms = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.last_check_ms.load(Ordering::Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < CHECK_INTERVAL.as_millis() as u64 {
            return;
        }
        let Ok(mut check) = self.check.try_lock() else {
            return;
        };
        self.last_check_ms.store(now_ms, Ordering::Relaxed);
        self.look(&mut check, SystemTime::now());
    }

    /// [`Self::refresh`] at `now`, whatever the time of the last check.
    #[cfg(test)]
    pub fn look_at(&self, now: SystemTime) {
        self.look(&mut self.check.lock().unwrap(), now);
    }

    fn look(&self, check: &mut Check, now: SystemTime) {
        let stat = match (
            file::version(&self.files.cert_file),
            file::version(&self.files.key_file),
        ) {
            (Ok(c), Ok(k)) => Some((c, k)),
            _ => None,
        };
        let racy = |(c, k): &Versions| c.racy(now) || k.racy(now);
        if stat.is_some() && stat == check.seen && !stat.as_ref().is_some_and(racy) {
            return;
        }
        match load(&self.files) {
            Ok((versions, loaded)) => {
                check.seen = Some(versions);
                check.last_error = None;
                if loaded.digest != check.digest {
                    check.digest = loaded.digest;
                    self.serve(loaded);
                }
            }
            Err(e) => {
                if stat.as_ref().is_some_and(racy) {
                    // Perhaps half-way through a rotation: read again at the next check.
                    check.seen = None;
                    return;
                }
                check.seen = stat;
                let message = e.to_string();
                if check.last_error.as_deref() != Some(message.as_str()) {
                    tracing::error!(
                        "the new TLS certificate or key is refused, the previous one is still \
                         served: {message}"
                    );
                    self.count("refused");
                    check.last_error = Some(message);
                }
            }
        }
    }

    fn serve(&self, loaded: Loaded) {
        set_expiry(&self.metrics, &loaded);
        tracing::info!(
            cert_file = %self.files.cert_file.display(),
            not_after_unix = loaded.not_after,
            "serving a new TLS certificate (read again after its files changed)"
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded.key;
        self.count("loaded");
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .certificate_reloads
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}

fn set_expiry(metrics: &TlsMetrics, loaded: &Loaded) {
    metrics
        .certificate_expiry
        .set(loaded.not_after.unwrap_or(0));
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(self.current())
    }
}
