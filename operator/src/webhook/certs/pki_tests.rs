use super::*;

const LIFE: Lifetimes = Lifetimes { cert: 30, ca: 90 };
const T0: i64 = 1_800_000_000;

fn hosts() -> Vec<Host> {
    vec![
        Host::Dns("hook.sys.svc".into()),
        Host::Ip("127.0.0.1".parse().unwrap()),
    ]
}

/// A Secret as the loop writes it: a CA made at `ca_at`, a serving certificate issued at
/// `cert_at`.
fn secret(ca_at: i64, cert_at: i64) -> Stored {
    let ca = new_ca(LIFE, ca_at).unwrap();
    let mut s = Stored {
        ca_crt: ca.cert_pem.into_bytes(),
        ca_key: ca.key_pem.into_bytes(),
        ..Stored::default()
    };
    with_serving(&mut s, cert_at);
    s
}

fn with_serving(s: &mut Stored, at: i64) {
    let m = assess(Some(s), &hosts(), LIFE, at).unwrap();
    let p = issue(&m.ca, &hosts(), LIFE, at).unwrap();
    s.tls_crt = p.cert_pem.into_bytes();
    s.tls_key = p.key_pem.into_bytes();
}

fn decide(s: &Stored, now: i64) -> Plan {
    plan(&assess(Some(s), &hosts(), LIFE, now), Some(s), LIFE, now)
}

fn serving_err(s: &Stored, now: i64) -> String {
    assess(Some(s), &hosts(), LIFE, now)
        .unwrap()
        .serving
        .unwrap_err()
}

#[test]
fn a_fresh_pair_waits_for_the_serving_renewal() {
    let s = secret(T0, T0);
    let m = assess(Some(&s), &hosts(), LIFE, T0).unwrap();
    let serving = m.serving.as_ref().unwrap();
    assert!(serving.by_current_ca);
    assert_eq!(
        (serving.cert.not_before, serving.cert.not_after),
        (T0, T0 + 30)
    );
    assert_eq!((m.ca.cert.not_before, m.ca.cert.not_after), (T0, T0 + 90));
    assert!(m.previous.is_empty() && m.dropped.is_empty());
    assert!(
        !m.bundle_needs_rewrite(&s),
        "the stored bundle is already normal"
    );
    // Renewal at two thirds: 20 s of 30.
    assert_eq!(decide(&s, T0), Plan::Wait { until: T0 + 20 });
    assert_eq!(decide(&s, T0 + 19), Plan::Wait { until: T0 + 20 });
    assert!(matches!(decide(&s, T0 + 20), Plan::Issue { .. }));
}

#[test]
fn the_ca_is_renewed_at_two_thirds_and_kept_until_its_certificates_expired() {
    // The CA is 50 s old; its serving certificate was issued at 45 s.
    let mut s = secret(T0, T0 + 45);
    assert_eq!(decide(&s, T0 + 50), Plan::Wait { until: T0 + 60 });
    assert_eq!(decide(&s, T0 + 60), Plan::RotateCa);

    // What the loop writes: the new CA first, the old one behind it, the serving cert kept.
    let rotated_at = T0 + 60;
    let new = new_ca(LIFE, rotated_at).unwrap();
    let old_bundle = String::from_utf8(s.ca_crt.clone()).unwrap();
    s.ca_crt = format!("{}{old_bundle}", new.cert_pem).into_bytes();
    s.ca_key = new.key_pem.into_bytes();
    let m = assess(Some(&s), &hosts(), LIFE, rotated_at).unwrap();
    assert_eq!(m.previous.len(), 1, "the old CA stays");
    let serving = m
        .serving
        .as_ref()
        .expect("the old serving cert is still presentable");
    assert!(!serving.by_current_ca);
    // It is reissued once the new CA had time to reach the API server.
    assert_eq!(
        decide(&s, rotated_at),
        Plan::Wait {
            until: rotated_at + CA_SETTLE
        }
    );
    assert_eq!(
        decide(&s, rotated_at + CA_SETTLE),
        Plan::Issue {
            reason: "signed by the previous CA".into()
        }
    );

    // Once reissued, the old CA stays until the last certificate it signed (issued before
    // the rotation) has expired: rotation time + 30 s + 1 s of truncation.
    with_serving(&mut s, rotated_at + 5);
    let m = assess(Some(&s), &hosts(), LIFE, rotated_at + 5).unwrap();
    assert!(m.serving.as_ref().unwrap().by_current_ca);
    assert_eq!(m.previous.len(), 1);
    assert_eq!(
        decide(&s, rotated_at + 5),
        Plan::Wait {
            until: rotated_at + 25
        }
    );
    // The old CA expires (T0 + 90) before its keep time: pruned then.
    with_serving(&mut s, rotated_at + 25);
    assert_eq!(
        decide(&s, rotated_at + 25),
        Plan::Wait {
            until: rotated_at + 30
        }
    );
    assert_eq!(decide(&s, rotated_at + 30), Plan::RewriteBundle);
    let m = assess(Some(&s), &hosts(), LIFE, rotated_at + 30).unwrap();
    assert!(m.previous.is_empty(), "pruned");
    assert_eq!(m.dropped.len(), 1);
    assert_eq!(m.bundle_pem.as_bytes(), new.cert_pem.as_bytes());
    s.ca_crt = m.bundle_pem.into_bytes();
    assert!(matches!(decide(&s, rotated_at + 30), Plan::Wait { .. }));
}

/// With serving certificates much shorter than the CA, the old CA leaves the bundle once the
/// last certificate it signed has expired, long before the CA itself.
#[test]
fn a_previous_ca_leaves_when_its_last_certificate_expired() {
    let life = Lifetimes { cert: 10, ca: 90 };
    let mut s = secret(T0, T0);
    let new = new_ca(life, T0 + 60).unwrap();
    let old = String::from_utf8(s.ca_crt.clone()).unwrap();
    s.ca_crt = format!("{}{old}", new.cert_pem).into_bytes();
    s.ca_key = new.key_pem.into_bytes();
    let m = assess(Some(&s), &hosts(), life, T0 + 61).unwrap();
    let p = issue(&m.ca, &hosts(), life, T0 + 61).unwrap();
    s.tls_crt = p.cert_pem.into_bytes();
    s.tls_key = p.key_pem.into_bytes();
    let at = |now| plan(&assess(Some(&s), &hosts(), life, now), Some(&s), life, now);
    // Serving renewal at 61 + 6; the old CA may go at 60 + 10 + 1.
    assert_eq!(at(T0 + 61), Plan::Wait { until: T0 + 67 });
    assert_eq!(
        at(T0 + 70),
        Plan::Issue {
            reason: "two thirds of its lifetime have passed".into()
        }
    );
    let m = assess(Some(&s), &hosts(), life, T0 + 71).unwrap();
    assert!(m.previous.is_empty());
    assert_eq!(at(T0 + 71), Plan::RewriteBundle);
}

/// Should the serving lifetime be shortened between restarts, a previous CA is kept while
/// it still signs the presented certificate, whatever the keep time says.
#[test]
fn a_previous_ca_that_still_signs_the_serving_cert_is_not_pruned() {
    let mut s = secret(T0, T0 + 59);
    let new = new_ca(LIFE, T0 + 60).unwrap();
    let old = String::from_utf8(s.ca_crt.clone()).unwrap();
    s.ca_crt = format!("{}{old}", new.cert_pem).into_bytes();
    s.ca_key = new.key_pem.into_bytes();
    let shorter = Lifetimes { cert: 10, ca: 90 };
    // Keep time: 60 + 10 + 1 = 71; the old serving cert is valid to 89.
    let m = assess(Some(&s), &hosts(), shorter, T0 + 80).unwrap();
    assert_eq!(m.previous.len(), 1);
    assert!(!m.serving.unwrap().by_current_ca);
}

/// A serving certificate that expires before the new CA has settled is reissued at once.
#[test]
fn no_settling_for_a_certificate_about_to_expire() {
    let mut s = secret(T0, T0 + 59);
    let new = new_ca(LIFE, T0 + 86).unwrap();
    let old = String::from_utf8(s.ca_crt.clone()).unwrap();
    s.ca_crt = format!("{}{old}", new.cert_pem).into_bytes();
    s.ca_key = new.key_pem.into_bytes();
    assert!(matches!(decide(&s, T0 + 86), Plan::Issue { .. }));
}

#[test]
fn missing_or_garbage_secrets_get_a_new_ca() {
    let reason = |p: Plan| match p {
        Plan::NewCa { reason } => reason,
        other => panic!("want NewCa, got {other:?}"),
    };
    assert!(
        reason(plan(&assess(None, &hosts(), LIFE, T0), None, LIFE, T0)).contains("does not exist")
    );
    let good = secret(T0, T0);
    let mut s = good.clone();
    s.ca_crt = b"garbage".to_vec();
    assert!(reason(decide(&s, T0)).contains("no certificate"));
    s.ca_crt = b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec();
    assert!(reason(decide(&s, T0)).contains("ca.crt"));
    s.ca_crt = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
    assert!(reason(decide(&s, T0)).contains("ca.crt"));
    // The serving certificate in ca.crt's place: not a CA.
    s.ca_crt = good.tls_crt.clone();
    assert!(reason(decide(&s, T0)).contains("not a CA"));
    // The CA key of another CA.
    let mut s = good.clone();
    s.ca_key = new_ca(LIFE, T0).unwrap().key_pem.into_bytes();
    assert!(reason(decide(&s, T0)).contains("not the key"));
    let mut s = good.clone();
    s.ca_key = b"garbage".to_vec();
    assert!(reason(decide(&s, T0)).contains("ca.key"));
    s.ca_key = vec![0xff; 10];
    assert!(reason(decide(&s, T0)).contains("not text"));
    // Expired and not-yet-valid CAs.
    assert!(reason(decide(&good, T0 + 90)).contains("expired"));
    assert!(reason(decide(&good, T0 - 3600)).contains("future"));
    // Oversized input is not parsed.
    let mut s = good.clone();
    s.ca_crt = vec![b'a'; MAX_PEM_BYTES + 1];
    assert!(reason(decide(&s, T0)).contains("larger"));
}

#[test]
fn unusable_serving_certificates_are_reissued() {
    let good = secret(T0, T0);
    let mut s = good.clone();
    s.tls_crt.clear();
    s.tls_key.clear();
    assert_eq!(serving_err(&s, T0), "no serving certificate yet");
    assert!(matches!(decide(&s, T0), Plan::Issue { .. }));

    // Garbage PEM.
    let mut s = good.clone();
    s.tls_crt = b"garbage".to_vec();
    assert!(serving_err(&s, T0).contains("no certificate"));
    // The key of another certificate.
    let other = secret(T0, T0);
    let mut s = good.clone();
    s.tls_key = other.tls_key.clone();
    assert!(
        serving_err(&s, T0).contains("not the key"),
        "{}",
        serving_err(&s, T0)
    );
    // A pair from another CA: its key matches, but it does not verify against ca.crt.
    let mut s = good.clone();
    s.tls_crt = other.tls_crt.clone();
    s.tls_key = other.tls_key.clone();
    assert!(serving_err(&s, T0).contains("does not verify"));
    // Expired.
    let s = secret(T0, T0);
    assert!(serving_err(&s, T0 + 31).contains("does not verify"));
    // Other names than --webhook-hosts: fewer, and more.
    let m = assess(Some(&good), &hosts(), LIFE, T0).unwrap();
    let fewer = issue(&m.ca, &hosts()[..1], LIFE, T0).unwrap();
    let mut s = good.clone();
    s.tls_crt = fewer.cert_pem.into_bytes();
    s.tls_key = fewer.key_pem.into_bytes();
    assert!(
        serving_err(&s, T0).contains("[hook.sys.svc]"),
        "{}",
        serving_err(&s, T0)
    );
    let mut more = hosts();
    more.push(Host::Dns("evil.example".into()));
    let more = issue(&m.ca, &more, LIFE, T0).unwrap();
    s.tls_crt = more.cert_pem.into_bytes();
    s.tls_key = more.key_pem.into_bytes();
    assert!(serving_err(&s, T0).contains("evil.example"));
    assert!(matches!(decide(&s, T0), Plan::Issue { .. }));
}

#[test]
fn junk_in_the_bundle_is_pruned() {
    let good = secret(T0, T0);
    let mut s = good.clone();
    let expired_ca = new_ca(Lifetimes { cert: 10, ca: 10 }, T0 - 20).unwrap();
    let mut junk = good.ca_crt.clone();
    junk.extend_from_slice(expired_ca.cert_pem.as_bytes());
    junk.extend_from_slice(&good.tls_crt); // not a CA
    s.ca_crt = junk;
    let m = assess(Some(&s), &hosts(), LIFE, T0).unwrap();
    assert!(m.previous.is_empty());
    assert_eq!(m.dropped.len(), 2, "{:?}", m.dropped);
    assert_eq!(m.bundle_pem.as_bytes(), &good.ca_crt[..]);
    assert_eq!(decide(&s, T0), Plan::RewriteBundle);
}

#[test]
fn serving_certificates_do_not_outlive_their_ca() {
    let s = secret(T0, T0);
    let m = assess(Some(&s), &hosts(), LIFE, T0 + 80).unwrap();
    let p = issue(&m.ca, &hosts(), LIFE, T0 + 80).unwrap();
    let der = CertificateDer::from_pem_slice(p.cert_pem.as_bytes()).unwrap();
    assert_eq!(ParsedCert::parse(&der).unwrap().not_after, T0 + 90);
}

#[test]
fn generated_chains_verify_with_the_bundle_for_every_host() {
    let s = secret(T0, T0);
    let m = assess(Some(&s), &hosts(), LIFE, T0 + 1).unwrap();
    let serving = m.serving.unwrap();
    assert!(verifies(&serving.cert, &[&m.ca.cert], &hosts(), T0 + 1));
    let other = [Host::Dns("other.sys.svc".into())];
    assert!(!verifies(&serving.cert, &[&m.ca.cert], &other, T0 + 1));
    // notAfter is inclusive (RFC 5280).
    assert!(verifies(&serving.cert, &[&m.ca.cert], &hosts(), T0 + 30));
    assert!(!verifies(&serving.cert, &[&m.ca.cert], &hosts(), T0 + 31));
    assert!(!verifies(&serving.cert, &[], &hosts(), T0 + 1));
}

#[test]
fn hosts_parse() {
    assert_eq!(
        Host::parse(" Hook.NS.svc "),
        Some(Host::Dns("hook.ns.svc".into()))
    );
    assert_eq!(Host::parse("::1"), Some(Host::Ip("::1".parse().unwrap())));
    assert_eq!(Host::parse("*.ns.svc"), None);
    assert_eq!(Host::parse("a b"), None);
    assert_eq!(Host::parse(""), None);
}
