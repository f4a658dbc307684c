//! `--webhook-certs=files`: present tls.crt and tls.key from a directory (e.g. a mounted
//! cert-manager Secret), re-read on every poll and swapped when their contents change. A new
//! pair that does not load (a half-written update, a key of another certificate, an
//! expired certificate) is refused with a warning and the last good pair stays: an outage of
//! the issuer must not take the webhook's TLS down. The caBundle is the CA injector's job.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::pki::{self, MAX_PEM_BYTES, ParsedCert};
use super::{ServingCert, pause, unix_now};

/// Runs until `stop`.
pub(super) async fn run(dir: &Path, cert: &ServingCert, stop: &CancellationToken, poll: Duration) {
    let mut last = None;
    loop {
        check(dir, cert, &mut last).await;
        if !pause(stop, poll).await {
            return;
        }
    }
}

/// What the files held at the last check (or why they could not be read).
type Seen = Option<Result<(Vec<u8>, Vec<u8>), String>>;

/// Reads the files; when they differ from `last`, presents them or warns why not.
async fn check(dir: &Path, cert: &ServingCert, last: &mut Seen) {
    let read = read_pair(dir).await;
    if last.as_ref() == Some(&read) {
        return;
    }
    match &read {
        Ok((crt, key)) => match load(crt, key, unix_now()) {
            Ok((ck, not_after)) => {
                info!(dir = %dir.display(), not_after, "presenting the webhook's serving certificate from files");
                cert.set(ck);
            }
            Err(reason) => warn!(
                file = %dir.join("tls.crt").display(),
                %reason,
                "refusing the webhook's certificate files; keeping the last good pair"
            ),
        },
        Err(reason) => {
            warn!(dir = %dir.display(), %reason, "cannot read the webhook's certificate files; keeping the last good pair")
        }
    }
    *last = Some(read);
}

async fn read_file(path: PathBuf) -> Result<Vec<u8>, String> {
    let meta = tokio::fs::metadata(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_PEM_BYTES as u64 {
        return Err(format!(
            "{}: larger than {MAX_PEM_BYTES} bytes",
            path.display()
        ));
    }
    tokio::fs::read(&path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))
}

async fn read_pair(dir: &Path) -> Result<(Vec<u8>, Vec<u8>), String> {
    Ok((
        read_file(dir.join("tls.crt")).await?,
        read_file(dir.join("tls.key")).await?,
    ))
}

/// A key pair to present from PEM files, with the leaf's notAfter; refused when it does not
/// parse, the key is not the certificate's, or the certificate is not valid at `now`.
pub(super) fn load(crt: &[u8], key: &[u8], now: i64) -> Result<(Arc<CertifiedKey>, i64), String> {
    let chain = CertificateDer::pem_slice_iter(crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt is not PEM: {e}"))?;
    let leaf = chain.first().ok_or("tls.crt holds no certificate")?;
    let parsed = ParsedCert::parse(leaf).map_err(|e| format!("tls.crt: {e}"))?;
    if now >= parsed.not_after {
        return Err(format!(
            "tls.crt expired at {} (Unix time)",
            parsed.not_after
        ));
    }
    if now < parsed.not_before {
        return Err(format!(
            "tls.crt is valid only from {} (Unix time)",
            parsed.not_before
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("tls.key: {e}"))?;
    let ck = pki::certified_key(chain, key)?;
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(format!("tls.key is not the key of tls.crt: {e}")),
    }
    Ok((ck, parsed.not_after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::certs::pki::{Host, Lifetimes};

    const LIFE: Lifetimes = Lifetimes { cert: 60, ca: 600 };

    fn pair(now: i64) -> (Vec<u8>, Vec<u8>) {
        let ca = pki::new_ca(LIFE, now).unwrap();
        let stored = pki::Stored {
            ca_crt: ca.cert_pem.into_bytes(),
            ca_key: ca.key_pem.into_bytes(),
            ..Default::default()
        };
        let hosts = [Host::Ip("127.0.0.1".parse().unwrap())];
        let m = pki::assess(Some(&stored), &hosts, LIFE, now).unwrap();
        let p = pki::issue(&m.ca, &hosts, LIFE, now).unwrap();
        (p.cert_pem.into_bytes(), p.key_pem.into_bytes())
    }

    #[test]
    fn load_refuses_hostile_pairs() {
        let now = unix_now();
        let (crt, key) = pair(now);
        let (other_crt, other_key) = pair(now);
        assert!(load(&crt, &key, now).is_ok());
        assert!(load(&other_crt, &other_key, now).is_ok());
        let err = load(&crt, &other_key, now).unwrap_err();
        assert!(err.contains("not the key"), "{err}");
        let err = load(b"garbage", &key, now).unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
        let err = load(
            &crt,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            now,
        )
        .unwrap_err();
        assert!(err.contains("tls.key") || err.contains("unusable"), "{err}");
        let err = load(&crt, &key, now + 61).unwrap_err();
        assert!(err.contains("expired"), "{err}");
    }

    /// Files that change are presented; a bad replacement keeps the last good pair; a good
    /// one after it is presented.
    #[tokio::test]
    async fn files_are_reread_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let write = |(c, k): &(Vec<u8>, Vec<u8>)| {
            std::fs::write(dir.path().join("tls.crt"), c).unwrap();
            std::fs::write(dir.path().join("tls.key"), k).unwrap();
        };
        let leaf = |p: &(Vec<u8>, Vec<u8>)| {
            CertificateDer::pem_slice_iter(&p.0)
                .next()
                .unwrap()
                .unwrap()
        };
        let cert = ServingCert::default();
        let mut last = None;
        check(dir.path(), &cert, &mut last).await;
        assert!(cert.get().is_none(), "nothing to present without files");
        let now = unix_now();
        let first = pair(now);
        write(&first);
        check(dir.path(), &cert, &mut last).await;
        assert_eq!(cert.get().unwrap().cert[0], leaf(&first));
        // A mismatched pair (as in a half-done update) is refused.
        let (second, third) = (pair(now), pair(now));
        std::fs::write(dir.path().join("tls.crt"), &second.0).unwrap();
        std::fs::write(dir.path().join("tls.key"), &third.1).unwrap();
        check(dir.path(), &cert, &mut last).await;
        assert_eq!(cert.get().unwrap().cert[0], leaf(&first));
        write(&second);
        check(dir.path(), &cert, &mut last).await;
        assert_eq!(cert.get().unwrap().cert[0], leaf(&second));
        std::fs::remove_file(dir.path().join("tls.key")).unwrap();
        check(dir.path(), &cert, &mut last).await;
        assert_eq!(cert.get().unwrap().cert[0], leaf(&second));
        std::fs::write(dir.path().join("tls.key"), vec![b'a'; MAX_PEM_BYTES + 1]).unwrap();
        check(dir.path(), &cert, &mut last).await;
        assert_eq!(cert.get().unwrap().cert[0], leaf(&second));
    }

    /// `run` polls until stopped.
    #[tokio::test]
    async fn run_presents_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let p = pair(unix_now());
        std::fs::write(dir.path().join("tls.crt"), &p.0).unwrap();
        std::fs::write(dir.path().join("tls.key"), &p.1).unwrap();
        let cert = ServingCert::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (dir, cert, stop) = (dir.path().to_owned(), cert.clone(), stop.clone());
            async move { run(&dir, &cert, &stop, Duration::from_millis(20)).await }
        });
        for _ in 0..500 {
            if cert.get().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(cert.get().is_some(), "not presented within 5 s");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("run returns on stop")
            .unwrap();
    }
}
