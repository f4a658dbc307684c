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

    /// When the presented certificate expires (Unix seconds), for a gauge read at scrape
    /// time (e.g. `modfleet_operator_webhook_certificate_expiry_seconds`); `None` before
    /// the first certificate.
    pub fn not_after(&self) -> Option<i64> {
        let key = self.get()?;
        pki::ParsedCert::parse(key.cert.first()?)
            .ok()
            .map(|c| c.not_after)
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

mod files;
mod operator;
pub mod pki;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{WebhookCerts, WebhookConfig};
use pki::{Host, Lifetimes, MAX_VALIDITY, MIN_VALIDITY};

/// How often the Secret (or the files) are read again when nothing is due sooner: edits by
/// others (a `helm upgrade` emptying the caBundle, a replica's renewal, cert-manager's new
/// files) are noticed within this time.
pub const POLL_INTERVAL: Duration = Duration::from_secs(10);

/// A configuration with which the webhook cannot get a certificate; the message names the
/// flag to set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertError {
    #[error(
        "--webhook-certs=operator needs --operator-namespace, the namespace of the Secret \
         --webhook-secret-name (the chart sets it from the downward API)"
    )]
    NoNamespace,
    #[error(
        "--webhook-hosts is empty: name the webhook Service as NAME.NAMESPACE.svc (and any IP \
         address the API server calls it by), comma-separated; they become the serving \
         certificate's names"
    )]
    NoHosts,
    #[error(
        "--webhook-hosts entry {0:?} is neither a DNS name nor an IP address (wildcards are not allowed)"
    )]
    BadHost(String),
    #[error(
        "{flag} is {value:?}: at least {MIN_VALIDITY:?}, so renewals do not chase the poll interval"
    )]
    TooShort { flag: &'static str, value: Duration },
    #[error("{flag} is {value:?}: at most 100 years")]
    TooLong { flag: &'static str, value: Duration },
    #[error(
        "--webhook-cert-validity ({cert:?}) is longer than --webhook-ca-validity ({ca:?}): a \
         serving certificate cannot outlive its CA; shorten the first or lengthen the second"
    )]
    CertOutlivesCa { cert: Duration, ca: Duration },
    #[error("{0} is empty: name the object (the chart's default is fine)")]
    EmptyName(&'static str),
    #[error(
        "--webhook-certs=files needs --webhook-cert-dir, the directory holding tls.crt and \
         tls.key (e.g. a cert-manager Certificate's Secret, mounted)"
    )]
    NoCertDir,
}

/// What operator mode runs on, checked.
#[derive(Debug, Clone)]
pub(crate) struct OperatorSettings {
    pub namespace: String,
    pub secret_name: String,
    pub configuration_name: String,
    pub hosts: Vec<Host>,
    pub life: Lifetimes,
}

fn validity(flag: &'static str, value: Duration) -> Result<i64, CertError> {
    if value < MIN_VALIDITY {
        return Err(CertError::TooShort { flag, value });
    }
    if value > MAX_VALIDITY {
        return Err(CertError::TooLong { flag, value });
    }
    Ok(i64::try_from(value.as_secs()).expect("at most 100 years"))
}

fn operator_settings(
    config: &WebhookConfig,
    operator_namespace: Option<&str>,
) -> Result<OperatorSettings, CertError> {
    let namespace = operator_namespace
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or(CertError::NoNamespace)?;
    let mut hosts = Vec::new();
    for raw in config.webhook_hosts.iter().filter(|h| !h.trim().is_empty()) {
        let host = Host::parse(raw).ok_or_else(|| CertError::BadHost(raw.clone()))?;
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return Err(CertError::NoHosts);
    }
    let cert = validity("--webhook-cert-validity", config.webhook_cert_validity)?;
    let ca = validity("--webhook-ca-validity", config.webhook_ca_validity)?;
    if cert > ca {
        return Err(CertError::CertOutlivesCa {
            cert: config.webhook_cert_validity,
            ca: config.webhook_ca_validity,
        });
    }
    if config.webhook_secret_name.trim().is_empty() {
        return Err(CertError::EmptyName("--webhook-secret-name"));
    }
    if config.webhook_configuration_name.trim().is_empty() {
        return Err(CertError::EmptyName("--webhook-configuration-name"));
    }
    Ok(OperatorSettings {
        namespace: namespace.to_owned(),
        secret_name: config.webhook_secret_name.trim().to_owned(),
        configuration_name: config.webhook_configuration_name.trim().to_owned(),
        hosts,
        life: Lifetimes { cert, ca },
    })
}

/// Checks the webhook's certificate flags, so the operator can refuse to start with a
/// message naming the flag instead of serving no certificate.
pub fn validate(config: &WebhookConfig, operator_namespace: Option<&str>) -> Result<(), CertError> {
    match config.webhook_certs {
        WebhookCerts::Operator => operator_settings(config, operator_namespace).map(|_| ()),
        WebhookCerts::Files => config
            .webhook_cert_dir
            .as_ref()
            .filter(|d| !d.as_os_str().is_empty())
            .map(|_| ())
            .ok_or(CertError::NoCertDir),
    }
}

/// Keeps `cert` filled with the webhook's serving certificate until `stop`: run it in every
/// replica. With `--webhook-certs=operator` it makes, stores, renews and publishes (caBundle)
/// the CA and certificate in the Secret, racing other replicas safely; with `files` it
/// re-reads `--webhook-cert-dir`. Returns only on `stop` (`Ok`) or a configuration error
/// ([`validate`]'s); API errors are logged and retried with backoff.
pub async fn maintain(
    client: kube::Client,
    config: WebhookConfig,
    operator_namespace: Option<String>,
    cert: ServingCert,
    stop: CancellationToken,
) -> Result<(), CertError> {
    maintain_polling(
        client,
        config,
        operator_namespace,
        cert,
        stop,
        POLL_INTERVAL,
    )
    .await
}

/// [`maintain`] with another poll interval (tests use a short one).
pub async fn maintain_polling(
    client: kube::Client,
    config: WebhookConfig,
    operator_namespace: Option<String>,
    cert: ServingCert,
    stop: CancellationToken,
    poll: Duration,
) -> Result<(), CertError> {
    validate(&config, operator_namespace.as_deref())?;
    match config.webhook_certs {
        WebhookCerts::Operator => {
            let settings = operator_settings(&config, operator_namespace.as_deref())?;
            operator::run(client, settings, cert, stop, poll).await;
        }
        WebhookCerts::Files => {
            let dir = config.webhook_cert_dir.ok_or(CertError::NoCertDir)?;
            files::run(&dir, &cert, &stop, poll).await;
        }
    }
    Ok(())
}

/// Waits `d`; `false` when `stop` came first.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Seconds since the Unix epoch (certificate time).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use clap::Parser;

    fn config(args: &[&str]) -> Config {
        let mut all = vec!["modfleet-operator"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap()
    }

    fn check(args: &[&str]) -> Result<(), CertError> {
        let c = config(args);
        validate(&c.webhook, c.operator_namespace.as_deref())
    }

    #[test]
    fn validate_names_the_flag_to_set() {
        let ns = ["--operator-namespace", "sys"];
        let hosts = ["--webhook-hosts", "svc.sys.svc,10.0.0.1"];
        assert_eq!(check(&hosts), Err(CertError::NoNamespace));
        assert!(
            check(&hosts)
                .unwrap_err()
                .to_string()
                .contains("--operator-namespace")
        );
        assert_eq!(check(&ns), Err(CertError::NoHosts));
        assert!(
            check(&ns)
                .unwrap_err()
                .to_string()
                .contains("--webhook-hosts")
        );
        assert_eq!(check(&[&ns[..], &hosts[..]].concat()), Ok(()));
        assert_eq!(
            check(&[&ns[..], &["--webhook-hosts", "a.b,*.x.svc"]].concat()),
            Err(CertError::BadHost("*.x.svc".into()))
        );
        assert_eq!(
            check(&[&ns[..], &["--webhook-hosts", "a b"]].concat()),
            Err(CertError::BadHost("a b".into()))
        );
        let short = [&ns[..], &hosts[..], &["--webhook-cert-validity", "5s"]].concat();
        let err = check(&short).unwrap_err();
        assert!(
            matches!(
                err,
                CertError::TooShort {
                    flag: "--webhook-cert-validity",
                    ..
                }
            ),
            "{err}"
        );
        let short = [&ns[..], &hosts[..], &["--webhook-ca-validity", "9s"]].concat();
        assert!(
            check(&short)
                .unwrap_err()
                .to_string()
                .contains("--webhook-ca-validity")
        );
        let long = [&ns[..], &hosts[..], &["--webhook-ca-validity", "200years"]].concat();
        assert!(matches!(check(&long), Err(CertError::TooLong { .. })));
        let inverted = [
            &ns[..],
            &hosts[..],
            &[
                "--webhook-cert-validity",
                "90s",
                "--webhook-ca-validity",
                "30s",
            ],
        ]
        .concat();
        assert!(matches!(
            check(&inverted),
            Err(CertError::CertOutlivesCa { .. })
        ));
        let tests = [
            &ns[..],
            &hosts[..],
            &[
                "--webhook-cert-validity",
                "30s",
                "--webhook-ca-validity",
                "90s",
            ],
        ]
        .concat();
        assert_eq!(check(&tests), Ok(()));
        assert_eq!(
            check(&[&ns[..], &hosts[..], &["--webhook-secret-name", ""]].concat()),
            Err(CertError::EmptyName("--webhook-secret-name"))
        );
        // files mode needs only the directory.
        assert_eq!(
            check(&["--webhook-certs", "files"]),
            Err(CertError::NoCertDir)
        );
        assert_eq!(
            check(&["--webhook-certs", "files", "--webhook-cert-dir", "/certs"]),
            Ok(())
        );
    }

    #[test]
    fn serving_cert_reports_its_expiry() {
        let cert = ServingCert::default();
        assert_eq!(cert.not_after(), None);
        let life = Lifetimes { cert: 30, ca: 90 };
        let now = 1_800_000_000;
        let ca = pki::new_ca(life, now).unwrap();
        let stored = pki::Stored {
            ca_crt: ca.cert_pem.into_bytes(),
            ca_key: ca.key_pem.into_bytes(),
            ..Default::default()
        };
        let hosts = [Host::Ip("127.0.0.1".parse().unwrap())];
        let m = pki::assess(Some(&stored), &hosts, life, now).unwrap();
        let pair = pki::issue(&m.ca, &hosts, life, now).unwrap();
        let (crt, key) = (pair.cert_pem.as_bytes(), pair.key_pem.as_bytes());
        use rustls::pki_types::pem::PemObject;
        let chain = vec![rustls::pki_types::CertificateDer::from_pem_slice(crt).unwrap()];
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key).unwrap();
        cert.set(pki::certified_key(chain, key).unwrap());
        assert_eq!(cert.not_after(), Some(now + 30));
    }

    #[test]
    fn hosts_are_deduplicated_and_lowercased() {
        let c = config(&[
            "--operator-namespace",
            "sys",
            "--webhook-hosts",
            "Hook.Sys.svc,hook.sys.svc,,::1",
        ]);
        let s = operator_settings(&c.webhook, c.operator_namespace.as_deref()).unwrap();
        assert_eq!(
            s.hosts,
            [
                Host::Dns("hook.sys.svc".into()),
                Host::Ip("::1".parse().unwrap())
            ]
        );
        assert_eq!(
            s.life,
            Lifetimes {
                cert: 90 * 86_400,
                ca: 1825 * 86_400
            }
        );
    }
}
