//! The pure part of the operator-made certificates: making a CA and serving certificates,
//! reading back what the Secret holds (hostile until every check passed) and deciding what
//! to do next at a given time. No I/O here, so every decision is a unit test.
//!
//! Times are Unix seconds: X.509 validity has second resolution, and the Secret is shared by
//! replicas whose only common clock is the certificates themselves.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Shortest accepted validity: below it renewals would chase the poll interval.
pub const MIN_VALIDITY: Duration = Duration::from_secs(10);
/// Longest accepted validity (100 years): keeps every time representable in X.509.
pub const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 86_400);
/// At most this many CAs in the bundle (current and previous); more is junk.
const MAX_BUNDLE: usize = 4;
/// At most this many bytes per Secret key are parsed.
pub const MAX_PEM_BYTES: usize = 64 * 1024;
/// Seconds between a new CA (its notBefore) and the first certificate it signs, for the
/// API server to load the caBundle that holds it.
pub const CA_SETTLE: i64 = 5;
/// A certificate whose notBefore lies further ahead than this is not from this clock.
const MAX_FUTURE_SKEW: i64 = 300;

/// A name the API server reaches the webhook by (`--webhook-hosts`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    Dns(String),
    Ip(IpAddr),
}

impl Host {
    /// Parses one `--webhook-hosts` entry: an IP address or a DNS name (lower-cased).
    pub fn parse(raw: &str) -> Option<Host> {
        let raw = raw.trim();
        if let Ok(ip) = raw.parse::<IpAddr>() {
            return Some(Host::Ip(ip));
        }
        let dns = raw.to_ascii_lowercase();
        match ServerName::try_from(dns.as_str()) {
            Ok(ServerName::DnsName(_)) if !dns.contains('*') => Some(Host::Dns(dns)),
            _ => None,
        }
    }

    fn server_name(&self) -> ServerName<'static> {
        match self {
            Host::Dns(d) => ServerName::try_from(d.clone()).expect("checked by Host::parse"),
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        }
    }

    fn san(&self) -> Result<SanType, rcgen::Error> {
        Ok(match self {
            Host::Dns(d) => SanType::DnsName(d.clone().try_into()?),
            Host::Ip(ip) => SanType::IpAddress(*ip),
        })
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Dns(d) => f.write_str(d),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Validities in seconds (`--webhook-cert-validity`, `--webhook-ca-validity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetimes {
    pub cert: i64,
    pub ca: i64,
}

/// What the Secret holds, byte for byte (`ca.crt`, `ca.key`, `tls.crt`, `tls.key`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub ca_crt: Vec<u8>,
    pub ca_key: Vec<u8>,
    pub tls_crt: Vec<u8>,
    pub tls_key: Vec<u8>,
}

/// The facts of one certificate that the decisions need.
#[derive(Clone, Debug)]
pub struct ParsedCert {
    pub der: CertificateDer<'static>,
    pub not_before: i64,
    pub not_after: i64,
    spki: Vec<u8>,
    is_ca: bool,
    sans: BTreeSet<Host>,
}

impl ParsedCert {
    /// Parses one DER certificate; trailing bytes are refused.
    pub fn parse(der: &[u8]) -> Result<ParsedCert, String> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        let mut sans = BTreeSet::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(d) => {
                        sans.insert(Host::Dns(d.to_ascii_lowercase()));
                    }
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => IpAddr::from(<[u8; 4]>::try_from(*b).expect("length 4")),
                            16 => IpAddr::from(<[u8; 16]>::try_from(*b).expect("length 16")),
                            n => return Err(format!("IP address SAN of {n} bytes")),
                        };
                        sans.insert(Host::Ip(ip));
                    }
                    other => return Err(format!("unexpected SAN {other:?}")),
                }
            }
        }
        Ok(ParsedCert {
            der: CertificateDer::from(der.to_vec()),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            spki: cert.public_key().raw.to_vec(),
            is_ca: cert.is_ca(),
            sans,
        })
    }

    /// Renewal is due when two thirds of the lifetime have passed.
    pub fn renew_at(&self) -> i64 {
        self.not_before + (self.not_after - self.not_before).max(0) * 2 / 3
    }

    fn pem(&self) -> String {
        pem_cert(&self.der)
    }
}

fn pem_cert(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// PEM certificates of `bytes`, in order; any PEM error refuses the whole text.
fn pem_certs(bytes: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if bytes.len() > MAX_PEM_BYTES {
        return Err(format!("{what} is larger than {MAX_PEM_BYTES} bytes"));
    }
    CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} is not PEM: {e}"))
}

/// The current CA: its certificate and the key that signs with it.
#[derive(Debug)]
pub struct Ca {
    pub cert: ParsedCert,
    key_pem: String,
}

/// A serving certificate read from the Secret that may be presented.
#[derive(Debug)]
pub struct Serving {
    pub cert: ParsedCert,
    pub certified: Arc<CertifiedKey>,
    /// Signed by the current CA (else by a previous one still in the bundle).
    pub by_current_ca: bool,
}

/// What a usable Secret holds, after checks and pruning.
#[derive(Debug)]
pub struct Material {
    pub ca: Ca,
    /// Previous CAs still needed in the bundle, newest first.
    pub previous: Vec<ParsedCert>,
    /// The serving certificate, or why there is none to present.
    pub serving: Result<Serving, String>,
    /// `ca.crt` as it should be: the current CA, then `previous`.
    pub bundle_pem: String,
    /// Entries of the stored `ca.crt` dropped (junk, expired or no longer needed).
    pub dropped: Vec<String>,
}

impl Material {
    /// `ca.crt` as stored differs from [`Material::bundle_pem`].
    pub fn bundle_needs_rewrite(&self, stored: &Stored) -> bool {
        stored.ca_crt != self.bundle_pem.as_bytes()
    }
}

/// Reads a Secret's contents. `Err` says why nothing in it can be kept (then a fresh CA is
/// made); a usable CA with an unusable serving certificate is `Ok` with `serving: Err`.
pub fn assess(
    stored: Option<&Stored>,
    hosts: &[Host],
    life: Lifetimes,
    now: i64,
) -> Result<Material, String> {
    let stored = stored.ok_or("the Secret does not exist")?;
    let bundle = pem_certs(&stored.ca_crt, "ca.crt")?;
    let first = bundle.first().ok_or("ca.crt holds no certificate")?;
    let ca_cert = ParsedCert::parse(first).map_err(|e| format!("ca.crt: {e}"))?;
    if !ca_cert.is_ca {
        return Err("ca.crt's first certificate is not a CA".into());
    }
    if now >= ca_cert.not_after {
        return Err(format!("the CA expired at {}", ca_cert.not_after));
    }
    if ca_cert.not_before > now + MAX_FUTURE_SKEW {
        return Err(format!(
            "the CA is valid only from {}, in the future",
            ca_cert.not_before
        ));
    }
    if stored.ca_key.len() > MAX_PEM_BYTES {
        return Err("ca.key is too large".into());
    }
    let key_pem = std::str::from_utf8(&stored.ca_key).map_err(|_| "ca.key is not text")?;
    let key = KeyPair::from_pem(key_pem).map_err(|e| format!("ca.key: {e}"))?;
    if rcgen::PublicKeyData::subject_public_key_info(&key) != ca_cert.spki {
        return Err("ca.key is not the key of ca.crt's CA".into());
    }
    let ca = Ca {
        cert: ca_cert,
        key_pem: key_pem.to_owned(),
    };

    let mut dropped = Vec::new();
    let mut candidates = Vec::new();
    for (i, der) in bundle.iter().enumerate().skip(1) {
        match ParsedCert::parse(der) {
            Ok(c) if c.is_ca && now < c.not_after && candidates.len() < MAX_BUNDLE - 1 => {
                candidates.push(c)
            }
            Ok(c) if !c.is_ca => dropped.push(format!("ca.crt entry {i}: not a CA")),
            Ok(c) if now >= c.not_after => dropped.push(format!(
                "ca.crt entry {i}: expired at {} (Unix time)",
                c.not_after
            )),
            Ok(_) => dropped.push(format!(
                "ca.crt entry {i}: more than {MAX_BUNDLE} CAs in the bundle"
            )),
            Err(e) => dropped.push(format!("ca.crt entry {i}: {e}")),
        }
    }

    let serving = read_serving(stored, &ca, &candidates, hosts, now);
    // A previous CA stays while a serving certificate it signed may still be presented: the
    // last one was issued before the current CA was made, so it expires by the current CA's
    // notBefore plus a serving certificate's lifetime (+1 s for second truncation).
    let keep_until = ca.cert.not_before + life.cert + 1;
    let mut previous = Vec::new();
    for c in candidates {
        let signs_serving =
            matches!(&serving, Ok(s) if !s.by_current_ca && verifies(&s.cert, &[&c], hosts, now));
        if now < keep_until || signs_serving {
            previous.push(c);
        } else {
            dropped.push(format!(
                "previous CA (valid until {}): its certificates have expired",
                c.not_after
            ));
        }
    }
    let mut bundle_pem = ca.cert.pem();
    for c in &previous {
        bundle_pem.push_str(&c.pem());
    }
    Ok(Material {
        ca,
        previous,
        serving,
        bundle_pem,
        dropped,
    })
}

fn read_serving(
    stored: &Stored,
    ca: &Ca,
    previous: &[ParsedCert],
    hosts: &[Host],
    now: i64,
) -> Result<Serving, String> {
    if stored.tls_crt.is_empty() {
        return Err("no serving certificate yet".into());
    }
    let chain = pem_certs(&stored.tls_crt, "tls.crt")?;
    let leaf = chain.first().ok_or("tls.crt holds no certificate")?;
    let cert = ParsedCert::parse(leaf).map_err(|e| format!("tls.crt: {e}"))?;
    if stored.tls_key.len() > MAX_PEM_BYTES {
        return Err("tls.key is too large".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(&stored.tls_key).map_err(|e| format!("tls.key: {e}"))?;
    let certified = certified_key(vec![leaf.clone()], key)?;
    certified
        .keys_match()
        .map_err(|e| format!("tls.key is not the key of tls.crt: {e}"))?;
    let want: BTreeSet<Host> = hosts.iter().cloned().collect();
    if cert.sans != want {
        let names: Vec<String> = cert.sans.iter().map(Host::to_string).collect();
        return Err(format!(
            "tls.crt names [{}], not --webhook-hosts",
            names.join(",")
        ));
    }
    let by_current_ca = verifies(&cert, &[&ca.cert], hosts, now);
    if !by_current_ca && !previous.iter().any(|p| verifies(&cert, &[p], hosts, now)) {
        return Err("tls.crt does not verify against ca.crt (expired or another CA's)".into());
    }
    Ok(Serving {
        cert,
        certified,
        by_current_ca,
    })
}

/// A serving key pair for rustls, through the ring provider kube's rustls already uses.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, String> {
    let provider = rustls::crypto::ring::default_provider();
    match CertifiedKey::from_der(chain, key, &provider) {
        Ok(ck) => Ok(Arc::new(ck)),
        Err(rustls::Error::InconsistentKeys(_)) => {
            Err("tls.key is not the key of tls.crt".to_owned())
        }
        Err(e) => Err(format!("unusable key pair: {e}")),
    }
}

/// `cert` chains to one of `roots` and is valid for every host at `now` (what the API
/// server will check, done by webpki).
pub fn verifies(cert: &ParsedCert, roots: &[&ParsedCert], hosts: &[Host], now: i64) -> bool {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        if store.add(r.der.clone()).is_err() {
            return false;
        }
    }
    let Ok(verifier) = WebPkiServerVerifier::builder_with_provider(
        Arc::new(store),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build() else {
        return false;
    };
    let Ok(secs) = u64::try_from(now) else {
        return false;
    };
    let at = UnixTime::since_unix_epoch(Duration::from_secs(secs));
    !hosts.is_empty()
        && hosts.iter().all(|h| {
            verifier
                .verify_server_cert(&cert.der, &[], &h.server_name(), &[], at)
                .is_ok()
        })
}

/// What to do next with the Secret (and, for [`Plan::Issue`], the caBundle first).
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing in the Secret can be kept: write a new CA with no serving certificate yet.
    NewCa { reason: String },
    /// The CA is due: put a new one first in ca.crt, keep the current one behind it and the
    /// serving certificate as it is (it still verifies).
    RotateCa,
    /// ca.crt holds junk or CAs no longer needed: write the pruned bundle.
    RewriteBundle,
    /// Issue a serving certificate signed by the current CA, once every webhook's caBundle
    /// holds ca.crt.
    Issue { reason: String },
    /// Nothing is due before `until`.
    Wait { until: i64 },
}

/// The next step for what [`assess`] found at `now`.
pub fn plan(
    assessed: &Result<Material, String>,
    stored: Option<&Stored>,
    life: Lifetimes,
    now: i64,
) -> Plan {
    let m = match assessed {
        Err(reason) => {
            return Plan::NewCa {
                reason: reason.clone(),
            };
        }
        Ok(m) => m,
    };
    if now >= m.ca.cert.renew_at() {
        return Plan::RotateCa;
    }
    if stored.is_none_or(|s| m.bundle_needs_rewrite(s)) {
        return Plan::RewriteBundle;
    }
    let serving = match &m.serving {
        Err(reason) => {
            return Plan::Issue {
                reason: reason.clone(),
            };
        }
        Ok(s) => s,
    };
    if !serving.by_current_ca {
        // The new CA went into every caBundle just after it was made; give the API server's
        // informers time to load it before presenting a certificate only it verifies.
        let settled_at = m.ca.cert.not_before + CA_SETTLE;
        if now < settled_at && serving.cert.not_after > settled_at {
            return Plan::Wait { until: settled_at };
        }
        return Plan::Issue {
            reason: "signed by the previous CA".into(),
        };
    }
    if now >= serving.cert.renew_at() {
        return Plan::Issue {
            reason: "two thirds of its lifetime have passed".into(),
        };
    }
    let mut until = m.ca.cert.renew_at().min(serving.cert.renew_at());
    for p in &m.previous {
        until = until
            .min(m.ca.cert.not_before + life.cert + 1)
            .min(p.not_after);
    }
    Plan::Wait { until }
}

fn timestamp(secs: i64) -> Result<time::OffsetDateTime, rcgen::Error> {
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| rcgen::Error::Time)
}

/// A PEM certificate and its PKCS#8 PEM key.
#[derive(Debug, Clone)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// `O=modfleet, CN=common`.
fn subject(common: String) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "modfleet");
    dn.push(DnType::CommonName, common);
    dn
}

/// A new self-signed CA (ECDSA P-256), valid from `now` for `life.ca`. Its name carries the
/// time so that a bundle's CAs are told apart by subject as well as by key identifier.
pub fn new_ca(life: Lifetimes, now: i64) -> Result<Pair, rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(format!("modfleet-operator webhook CA {now}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = timestamp(now)?;
    params.not_after = timestamp(now + life.ca)?;
    let cert = params.self_signed(&key)?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new serving certificate for `hosts` signed by `ca`, valid from `now` for `life.cert`
/// but never past the CA.
pub fn issue(ca: &Ca, hosts: &[Host], life: Lifetimes, now: i64) -> Result<Pair, rcgen::Error> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_der(&ca.cert.der, ca_key)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(
        hosts
            .first()
            .map_or_else(|| "modfleet-operator webhook".to_owned(), Host::to_string),
    );
    params.subject_alt_names = hosts.iter().map(Host::san).collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = timestamp(now)?;
    params.not_after = timestamp((now + life.cert).min(ca.cert.not_after))?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
#[path = "pki_tests.rs"]
mod tests;
