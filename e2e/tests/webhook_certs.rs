//! The injection webhook's operator-made certificates on the local cluster's real API server
//! (`hack/cluster.sh up`): two replicas of `modfleet_operator::webhook::certs::maintain`
//! race on one Secret and one MutatingWebhookConfiguration. Each replica's certificate is
//! presented by a minimal admission webhook on loopback (one webhook of the configuration
//! per replica, called only for the test's labelled ConfigMaps, `failurePolicy: Fail`), and
//! while the serving certificate and then the CA are renewed a probe creates such ConfigMaps
//! continuously: the API server itself must verify both replicas' certificates every time.
//! Short validities (serving 20 s, CA 60 s) make every renewal happen within the test; each
//! stage is awaited on the API with a deadline. Chains are also checked by `openssl verify`,
//! an implementation other than the one that made them.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use clap::Parser as _;
use modfleet_e2e::{Cluster, Namespace};
use modfleet_operator::config::Config;
use modfleet_operator::webhook::certs::{CertError, ServingCert, maintain_polling};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "webhook-tls";
const HOSTS: &str = "127.0.0.1,localhost";
/// Short, so the test sees edits quickly; the product default is 10 s.
const POLL: Duration = Duration::from_secs(1);
/// The label of the probe's ConfigMaps, the only objects the test's webhooks are called for.
const PROBE_LABEL: &str = "modfleet.dev/e2e-webhook-certs-probe";

/// A minimal admission webhook presenting `cert` (one replica's [`ServingCert`], as the
/// operator's listener does): allows every request, counts the calls. Returns its URL.
async fn webhook(cert: ServingCert, calls: Arc<AtomicUsize>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(cert));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, calls) = (acceptor.clone(), calls.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = serve_reviews(tls, calls).await;
                }
            });
        }
    });
    format!("https://{addr}/mutate")
}

/// HTTP/1.1 requests on one connection (the API server keeps it alive): each is an
/// AdmissionReview, answered `allowed: true` with its uid.
async fn serve_reviews(
    mut conn: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    calls: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = conn.read(&mut chunk).await?;
            if n == 0 || buf.len() > 1 << 20 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 8192];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let review: Value =
            serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
        buf.drain(..head_end + len);
        calls.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": true},
        })
        .to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(resp.as_bytes()).await?;
    }
}

/// Creates labelled ConfigMaps in `ns` one after another until `stop`, each admitted only
/// if the API server could call both replicas' webhooks; returns the refusals.
fn probe(
    ns_name: String,
    cluster: Cluster,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut made, mut refused) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let yaml = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe-{made}\n  \
                 labels:\n    {PROBE_LABEL}: \"yes\"\n"
            );
            let out =
                cluster.try_kubectl_stdin(&["create", "--namespace", &ns_name, "-f", "-"], &yaml);
            if !out.status.success() {
                refused.push(String::from_utf8_lossy(&out.stderr).trim().to_owned());
            }
            made += 1;
            // Pacing, not synchronisation: about three admissions a second.
            std::thread::sleep(Duration::from_millis(300));
        }
        (made, refused)
    })
}

/// The test's MutatingWebhookConfiguration, deleted on drop (it is cluster-scoped).
struct Configuration {
    cluster: Cluster,
    name: String,
}

impl Configuration {
    /// Two webhooks, one per replica's `urls`, called for ConfigMaps created in `ns` with the
    /// label [`PROBE_LABEL`] only. `failurePolicy: Fail`, so a call the API server cannot
    /// make (a certificate it cannot verify) refuses the ConfigMap: the probe sees it.
    fn create(ns: &Namespace, urls: [&str; 2]) -> Configuration {
        let name = format!("{}-certs", ns.name());
        let hook = |n: &str, url: &str| {
            format!(
                r#"- name: {n}.webhook-certs.modfleet.dev
  clientConfig:
    url: {url}
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {ns}
  objectSelector:
    matchLabels:
      {PROBE_LABEL}: "yes"
  rules:
    - operations: ["CREATE"]
      apiGroups: [""]
      apiVersions: ["v1"]
      resources: ["configmaps"]
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: ["v1"]
  timeoutSeconds: 5
"#,
                ns = ns.name()
            )
        };
        let yaml = format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n\
             metadata:\n  name: {name}\n  labels:\n    app.kubernetes.io/created-by: modfleet-e2e\n\
             webhooks:\n{}{}",
            hook("a", urls[0]),
            hook("b", urls[1])
        );
        ns.cluster().kubectl_stdin(&["create", "-f", "-"], &yaml);
        Configuration {
            cluster: ns.cluster().clone(),
            name,
        }
    }

    /// Each webhook's caBundle, decoded ("" when unset).
    fn bundles(&self) -> Vec<String> {
        let mwc = self
            .cluster
            .get_json(&["mutatingwebhookconfiguration", &self.name]);
        mwc["webhooks"]
            .as_array()
            .expect("webhooks")
            .iter()
            .map(|w| decode(&w["clientConfig"]["caBundle"]))
            .collect()
    }
}

impl Drop for Configuration {
    fn drop(&mut self) {
        let _ = self.cluster.try_kubectl(&[
            "delete",
            "mutatingwebhookconfiguration",
            &self.name,
            "--wait=false",
        ]);
    }
}

fn decode(v: &Value) -> String {
    let b = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or(""))
        .expect("base64 from the API server");
    String::from_utf8(b).expect("PEM is text")
}

/// The Secret's ca.crt, tls.crt and type; `None` until it exists.
#[derive(Debug, Clone, PartialEq)]
struct Held {
    type_: String,
    ca: String,
    crt: String,
}

fn held(ns: &Namespace) -> Option<Held> {
    let out = ns.try_kubectl(&["get", "secret", SECRET, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let s: Value = serde_json::from_slice(&out.stdout).expect("Secret JSON");
    Some(Held {
        type_: s["type"].as_str().unwrap_or("").to_owned(),
        ca: decode(&s["data"]["ca.crt"]),
        crt: decode(&s["data"]["tls.crt"]),
    })
}

fn pems(bundle: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(bundle.as_bytes())
        .collect::<Result<_, _>>()
        .expect("PEM certificates")
}

/// `openssl verify` of `crt` against the CAs in `ca` for both hosts (and as a TLS server).
fn openssl_verifies(dir: &Path, ca: &str, crt: &str) -> bool {
    let (ca_file, crt_file) = (dir.join("ca.pem"), dir.join("crt.pem"));
    std::fs::write(&ca_file, ca).unwrap();
    std::fs::write(&crt_file, crt).unwrap();
    [
        ["-verify_ip", "127.0.0.1"],
        ["-verify_hostname", "localhost"],
    ]
    .iter()
    .all(|check| {
        let out = Command::new("openssl")
            .arg("verify")
            .args(["-x509_strict", "-purpose", "sslserver", "-CAfile"])
            .arg(&ca_file)
            .args(check)
            .arg(&crt_file)
            .output()
            .expect("cannot run openssl: install it (apt-get install openssl)");
        out.status.success()
    })
}

/// What both replicas present, as DER, when they agree.
fn presented(replicas: &[ServingCert]) -> Option<CertificateDer<'static>> {
    let first = replicas[0].get()?.cert.first()?.clone();
    replicas
        .iter()
        .all(|r| r.get().is_some_and(|c| c.cert.first() == Some(&first)))
        .then_some(first)
}

/// A consistent state: the Secret holds a chain openssl accepts, every webhook's caBundle is
/// ca.crt, and both replicas present tls.crt.
fn settled(
    ns: &Namespace,
    mwc: &Configuration,
    dir: &Path,
    replicas: &[ServingCert],
) -> Option<Held> {
    let h = held(ns)?;
    let leaf = pems(&h.crt).into_iter().next()?;
    (h.type_ == "kubernetes.io/tls"
        && mwc.bundles().iter().all(|b| *b == h.ca)
        && openssl_verifies(dir, &h.ca, &h.crt)
        && presented(replicas) == Some(leaf))
    .then_some(h)
}

#[test]
fn operator_certificates_rotate_publish_and_heal() {
    let cluster = Cluster::from_env();
    let ns = cluster.namespace("webhook-certs");
    let dir = tempfile::tempdir().unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("modfleet_operator=info")
        .with_test_writer()
        .try_init();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let replicas = [ServingCert::default(), ServingCert::default()];
    let calls = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let urls = [
        rt.block_on(webhook(replicas[0].clone(), calls[0].clone())),
        rt.block_on(webhook(replicas[1].clone(), calls[1].clone())),
    ];
    let mwc = Configuration::create(&ns, [&urls[0], &urls[1]]);
    let client = rt
        .block_on(kube::Client::try_default())
        .expect("a kube client from KUBECONFIG");
    let config = Config::try_parse_from([
        "modfleet-operator",
        "--operator-namespace",
        ns.name(),
        "--webhook-secret-name",
        SECRET,
        "--webhook-configuration-name",
        &mwc.name,
        "--webhook-hosts",
        HOSTS,
        "--webhook-cert-validity",
        "20s",
        "--webhook-ca-validity",
        "60s",
    ])
    .unwrap();

    // A configuration error comes back at once, naming the flag.
    let err = rt
        .block_on(maintain_polling(
            client.clone(),
            config.webhook.clone(),
            None,
            ServingCert::default(),
            CancellationToken::new(),
            POLL,
        ))
        .unwrap_err();
    assert_eq!(err, CertError::NoNamespace);

    let stop = CancellationToken::new();
    let tasks: Vec<_> = replicas
        .iter()
        .map(|cert| {
            rt.spawn(maintain_polling(
                client.clone(),
                config.webhook.clone(),
                config.operator_namespace.clone(),
                cert.clone(),
                stop.clone(),
                POLL,
            ))
        })
        .collect();
    let settle = |what: &str, timeout: u64, extra: &dyn Fn(&Held) -> bool| {
        ns.eventually(what, Duration::from_secs(timeout), || {
            settled(&ns, &mwc, dir.path(), &replicas).filter(|h| extra(h))
        })
    };

    // 1. Both replicas start at once; one CA, one serving certificate, published.
    let first = settle("a first chain", 30, &|h| pems(&h.ca).len() == 1);
    let ca1 = first.ca.clone();

    // From here through both renewals, the API server calls both replicas for every probe
    // ConfigMap (`failurePolicy: Fail`): not one may be refused.
    let probe_stop = Arc::new(AtomicBool::new(false));
    let prober = probe(ns.name().to_owned(), cluster.clone(), probe_stop.clone());

    // 2. After two thirds of 20 s: a new serving certificate from the same CA.
    let renewed = settle("a renewed serving certificate", 40, &|h| {
        h.ca == ca1 && h.crt != first.crt
    });

    // 3. After two thirds of 60 s: a new CA; the old one stays in the bundle (and in every
    //    webhook's caBundle) behind it, and the serving certificate is signed by the new one.
    //    (The reissue waits a few seconds for the API server to load the new caBundle.)
    let first_pem = |bundle: &str| {
        bundle
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let overlap = settle("a new CA with the old one behind it, signing", 60, &|h| {
        let cas = pems(&h.ca);
        cas.len() == 2
            && cas[1] == pems(&ca1)[0]
            && openssl_verifies(dir.path(), &first_pem(&h.ca), &h.crt)
    });
    let ca2 = pems(&overlap.ca)[0].clone();
    assert_ne!(overlap.crt, renewed.crt);
    assert!(
        !openssl_verifies(dir.path(), &ca1, &overlap.crt),
        "the old CA does not verify the new serving certificate"
    );

    // 4. Once the old CA's certificates have expired, it leaves the bundle.
    let pruned = settle("the old CA pruned from the bundle", 40, &|h| {
        pems(&h.ca) == [ca2.clone()]
    });

    probe_stop.store(true, Ordering::Relaxed);
    let (made, refused) = prober.join().unwrap();
    assert!(
        refused.is_empty(),
        "{} of {made} admissions refused during the renewals: {refused:?}",
        refused.len()
    );
    let called = [
        calls[0].load(Ordering::Relaxed),
        calls[1].load(Ordering::Relaxed),
    ];
    eprintln!("{made} probe ConfigMaps admitted; the webhooks were called {called:?} times");
    assert!(
        made >= 50 && called.iter().all(|&c| c >= made),
        "{made} probes; the replicas were called {called:?} times"
    );

    // 5. A caBundle reset by hand (as a `helm upgrade` rendering an empty one would) is
    //    mended.
    let out = cluster.kubectl(&[
        "patch",
        "mutatingwebhookconfiguration",
        &mwc.name,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/webhooks/1/clientConfig/caBundle"}]"#,
        "-o",
        "json",
    ]);
    let patched: Value = serde_json::from_str(&out).unwrap();
    assert!(patched["webhooks"][1]["clientConfig"]["caBundle"].is_null());
    settle("the caBundle restored", 15, &|h| h.ca == pruned.ca);

    // 6. Garbage in the Secret (of the right type): replaced by a new CA and certificate.
    let garbage = |type_: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {SECRET}\ntype: {type_}\n\
             stringData:\n  tls.crt: garbage\n  tls.key: garbage\n  ca.crt: garbage\n  ca.key: garbage\n"
        )
    };
    let out = ns.cluster().kubectl_stdin(
        &["replace", "--namespace", ns.name(), "-o", "json", "-f", "-"],
        &garbage("kubernetes.io/tls"),
    );
    let replaced: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(decode(&replaced["data"]["ca.crt"]), "garbage");
    let healed = settle("a garbage Secret replaced", 20, &|h| {
        pems(&h.ca).len() == 1 && pems(&h.ca)[0] != ca2
    });

    // 7. A Secret of another type (the type cannot change in place): deleted and made anew.
    //    The replicas may recreate it between delete and create: try again until ours is in.
    ns.eventually("an Opaque Secret created", Duration::from_secs(30), || {
        ns.kubectl(&["delete", "secret", SECRET, "--ignore-not-found"]);
        let out = cluster.try_kubectl_stdin(
            &["create", "--namespace", ns.name(), "-f", "-"],
            &garbage("Opaque"),
        );
        out.status.success().then_some(())
    });
    settle("an Opaque Secret replaced", 20, &|h| h.ca != healed.ca);

    stop.cancel();
    for t in tasks {
        let res = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), t).await })
            .expect("maintain returns on stop")
            .expect("maintain did not panic");
        assert_eq!(res, Ok(()));
    }
}
