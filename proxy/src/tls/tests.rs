//! Loading and reloading the served pair, on real certificates made by openssl (testkit's
//! `TestCa`). The listener's side is tested end to end in tests/tls_serving.rs.

use std::path::Path;
use std::time::{Duration, SystemTime};

use modfleet_testkit::tls::TestCa;

use super::reload::ReloadingCert;
use super::*;
use crate::metrics::{Metrics, OutcomeLabel};

fn files(cert: &Path, key: &Path) -> TlsConfig {
    TlsConfig {
        cert_file: cert.to_path_buf(),
        key_file: key.to_path_buf(),
    }
}

fn served(resolver: &ReloadingCert) -> Vec<u8> {
    resolver.current().cert[0].to_vec()
}

fn first_cert(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

#[test]
fn a_pair_loads_and_its_expiry_is_read() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_files();
    let (_, loaded) = load(&files(&cert, &key)).unwrap();
    assert_eq!(loaded.key.cert[0].to_vec(), first_cert(&cert));
    // openssl made it valid for two days from now.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let not_after = loaded.not_after.expect("notAfter read");
    assert!(
        (now + 2 * 86_400 - not_after).abs() < 120,
        "notAfter {not_after}, now {now}"
    );
}

#[test]
fn bad_files_are_refused_with_the_file_and_the_fix() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_files();
    let (other_cert, other_key) = ca.reissue("other");
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem file\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'x'; MAX_PEM_BYTES as usize + 1]).unwrap();

    let err = |c: &Path, k: &Path| load(&files(c, k)).unwrap_err();
    let e = err(&key, &key);
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    assert!(e.to_string().contains(&key.display().to_string()), "{e}");
    let e = err(&cert, &cert);
    assert!(matches!(e, TlsError::NoKey { .. }), "{e}");
    assert!(e.to_string().contains("tls.key"), "{e}");
    let e = err(&cert, &other_key);
    assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
    assert!(
        e.to_string().contains(&other_key.display().to_string())
            && e.to_string().contains(&cert.display().to_string()),
        "{e}"
    );
    assert!(load(&files(&other_cert, &other_key)).is_ok());
    let e = err(&garbage, &key);
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    let e = err(&missing, &key);
    assert!(
        matches!(e, TlsError::CertFile(_)) && e.to_string().contains("--tls-cert"),
        "{e}"
    );
    let e = err(&cert, &big);
    assert!(
        matches!(e, TlsError::KeyFile(_)) && e.to_string().contains("larger than"),
        "{e}"
    );
    // A certificate whose DER is not a certificate.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(
        &bogus,
        "-----BEGIN CERTIFICATE-----\nAAECAwQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = err(&bogus, &key);
    assert!(matches!(e, TlsError::BadCertificate { .. }), "{e}");
}

#[test]
fn changed_files_are_served_and_bad_ones_refused_until_fixed() {
    let ca = TestCa::new();
    let (cert0, key0) = ca.server_files();
    let (cert1, key1) = ca.reissue("second");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(&cert0, &cert).unwrap();
    std::fs::copy(&key0, &key).unwrap();
    let mut metrics = Metrics::new();
    let tls = metrics.register_tls();
    let resolver = ReloadingCert::new(files(&cert, &key), tls.clone()).unwrap();
    let count = |outcome| {
        tls.certificate_reloads
            .get_or_create(&OutcomeLabel { outcome })
            .get()
    };
    assert_eq!(served(&resolver), first_cert(&cert0));
    let later = |s| SystemTime::now() + Duration::from_secs(s);

    // Replaced by rename (a new inode each): the new pair is served.
    for (from, to) in [(&cert1, &cert), (&key1, &key)] {
        let tmp = dir.path().join("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
    resolver.look_at(later(10));
    assert_eq!(served(&resolver), first_cert(&cert1));
    assert_eq!(count("loaded"), 1);

    // Unchanged and no longer racy: nothing is read, nothing counted.
    resolver.look_at(later(10));
    assert_eq!(count("loaded"), 1);

    // Half-way through an in-place rotation (the certificate written, not yet the key), just
    // after the write: not refused yet.
    std::fs::copy(&cert0, &cert).unwrap();
    resolver.look_at(SystemTime::now());
    assert_eq!((count("loaded"), count("refused")), (1, 0));
    assert_eq!(served(&resolver), first_cert(&cert1));
    // Left so: refused once, logged once, the old pair still served.
    resolver.look_at(later(10));
    resolver.look_at(later(11));
    assert_eq!(count("refused"), 1);
    assert_eq!(served(&resolver), first_cert(&cert1));
    // The key follows: served.
    std::fs::copy(&key0, &key).unwrap();
    resolver.look_at(later(12));
    assert_eq!(served(&resolver), first_cert(&cert0));
    assert_eq!((count("loaded"), count("refused")), (2, 1));

    // Garbage, then a missing file: each refused once, the last good pair kept.
    std::fs::write(&cert, "garbage").unwrap();
    resolver.look_at(later(20));
    std::fs::remove_file(&key).unwrap();
    resolver.look_at(later(21));
    resolver.look_at(later(22));
    assert_eq!(count("refused"), 3);
    assert_eq!(served(&resolver), first_cert(&cert0));
    assert!(tls.certificate_expiry.get() > 0);
}
