//! HTTPS on the GOPROXY port, against the real proxy binary with certificates from a test CA
//! (testkit's `TestCa`, made by openssl): the real go command downloading over HTTPS with the
//! CA in `SSL_CERT_FILE`; HTTP/2 and HTTP/1.1 both negotiated; certificates rotated (a
//! Secret's symlink swap, a rewrite in place, an invalid replacement) while requests run;
//! bad files at start; and clients that stall the handshake or speak plain HTTP to the port.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    Corpus, GoEnv, PROXY_BIN, Proxy, Upstream, config_file, https_client, peer_certificate,
    wait_for,
};
use modfleet_testkit::tls::TestCa;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MODULE: &str = "example.test/hello";
const MOD_PATH: &str = "/example.test/hello/@v/v1.0.0.mod";
const GO_MOD: &str = "module example.test/hello\n\ngo 1.21\n";

fn corpus() -> Corpus {
    let c = Corpus::new();
    c.add(
        MODULE,
        "v1.0.0",
        Some(GO_MOD),
        &[(
            "hello.go",
            b"package hello\n\nfunc Hello() string { return \"hello over https\" }\n",
        )],
    );
    c
}

/// The DER of the first certificate of a PEM file.
fn der_of(pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .expect("a certificate")
        .unwrap()
        .to_vec()
}

/// `notAfter` of a PEM certificate as openssl and date(1) read it, seconds since the epoch.
fn openssl_not_after(pem: &Path) -> f64 {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let date = text.trim().strip_prefix("notAfter=").expect("notAfter=...");
    let out = Command::new("date")
        .args(["-u", "-d", date, "+%s"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The go command downloads and builds through modfleet over HTTPS, trusting the test CA by
/// `SSL_CERT_FILE` (as it would a company CA); without the CA it refuses the certificate (the
/// proxy counts the client's alert); pointed at the port with http:// it is told to use
/// https://.
#[tokio::test(flavor = "multi_thread")]
async fn the_go_command_downloads_over_https_with_a_private_ca() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_files();
    let corpus = corpus();
    let origin = Upstream::serve(corpus.root());
    let cache = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_tls(cache.path(), &cert, &key, &["--upstream", &origin.url]);
    assert!(proxy.url.starts_with("https://127.0.0.1:"), "{}", proxy.url);
    assert!(
        proxy.admin.starts_with("http://"),
        "the admin port stays plain HTTP"
    );

    let go = GoEnv::new();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("go.mod"),
        format!("module example.test/app\n\ngo 1.21\n\nrequire {MODULE} v1.0.0\n"),
    )
    .unwrap();
    std::fs::write(
        app.path().join("main.go"),
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.test/hello\"\n)\n\nfunc main() { fmt.Println(hello.Hello()) }\n",
    )
    .unwrap();
    let command = |goproxy: &str, ca_file: Option<&Path>| {
        let mut c = go.command(app.path(), goproxy);
        c.env("GONOSUMDB", "example.test");
        match ca_file {
            Some(ca) => c.env("SSL_CERT_FILE", ca),
            None => c.env_remove("SSL_CERT_FILE"),
        };
        c
    };

    // Without the CA: the certificate is refused, and the proxy counts the client's alert.
    let mut c = command(&proxy.url, None);
    c.args(["mod", "download", "-x"]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "trusted a certificate of an unknown CA"
    );
    assert!(err.contains("certificate"), "{err}");
    wait_for(
        "the refused handshake counted",
        Duration::from_secs(10),
        || async {
            proxy
                .metric(r#"modfleet_proxy_tls_handshake_failures_total{reason="alert"}"#)
                .await
                >= 1.0
        },
    )
    .await;

    // http:// to the HTTPS port: a 400 whose message the go command shows.
    let plain = proxy.url.replace("https://", "http://");
    let mut c = command(&plain, Some(&ca.ca_pem()));
    c.args(["mod", "download"]);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("400 Bad Request") && err.contains("use an https:// URL"),
        "{err}"
    );

    // With the CA: downloaded and built.
    let mut c = command(&proxy.url, Some(&ca.ca_pem()));
    c.args(["mod", "download", "-x"]);
    go.run(c);
    let mut c = command(&proxy.url, Some(&ca.ca_pem()));
    c.args(["build", "-o", "app", "."]);
    go.run(c);
    let out = Command::new(app.path().join("app")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello over https\n");
    assert!(
        proxy
            .metric(r#"modfleet_proxy_requests_total{route="zip",status="200"}"#)
            .await
            >= 1.0
    );
    assert_eq!(
        proxy
            .metric("modfleet_proxy_tls_certificate_expiry_timestamp_seconds")
            .await,
        openssl_not_after(&cert),
        "the expiry gauge is the certificate's notAfter"
    );
}

/// Both protocols are offered by ALPN and served: a client offering h2 gets HTTP/2, one
/// offering only http/1.1 gets HTTP/1.1, with the same bytes (`tls:` from the config file).
#[tokio::test(flavor = "multi_thread")]
async fn http2_and_http11_are_both_negotiated() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_files();
    let corpus = corpus();
    let origin = Upstream::serve(corpus.root());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        &format!(
            "upstreams: [{{url: {}}}]\ntls: {{certFile: {}, keyFile: {}}}\n",
            origin.url,
            cert.display(),
            key.display()
        ),
    );
    let proxy = Proxy::start(
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap()],
    );
    assert!(proxy.url.starts_with("https://"), "{}", proxy.url);
    let url = format!("{}{MOD_PATH}", proxy.url);
    for (client, want) in [
        (
            https_client(&ca.ca_pem()).build().unwrap(),
            reqwest::Version::HTTP_2,
        ),
        (
            https_client(&ca.ca_pem()).http1_only().build().unwrap(),
            reqwest::Version::HTTP_11,
        ),
    ] {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), want);
        assert_eq!(peer_certificate(&response), der_of(&cert));
        assert_eq!(response.text().await.unwrap(), GO_MOD);
    }
}

/// A Secret volume's layout: `tls.crt` and `tls.key` link into `..data`, a link to a
/// timestamped directory that the kubelet swaps in one rename.
struct SecretVolume {
    dir: tempfile::TempDir,
    generation: usize,
}

impl SecretVolume {
    fn new(cert: &Path, key: &Path) -> SecretVolume {
        let mut v = SecretVolume {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        v.update(&std::fs::read(cert).unwrap(), &std::fs::read(key).unwrap());
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), v.path(name)).unwrap();
        }
        v
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Both files replaced at once, as the kubelet does.
    fn update(&mut self, cert: &[u8], key: &[u8]) {
        self.generation += 1;
        let data = format!("..2026_{}", self.generation);
        std::fs::create_dir(self.path(&data)).unwrap();
        std::fs::write(self.path(&data).join("tls.crt"), cert).unwrap();
        std::fs::write(self.path(&data).join("tls.key"), key).unwrap();
        let tmp = self.path("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp).unwrap();
        std::fs::rename(&tmp, self.path("..data")).unwrap();
    }
}

/// The certificate a new client gets (a new one: a client resuming its TLS session is not
/// sent the certificate again, and keeps the one it saw).
async fn served_certificate(ca: &Path, url: &str) -> Vec<u8> {
    let client = https_client(ca).build().unwrap();
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    peer_certificate(&response)
}

/// Requests run without pause on new connections (HTTP/1.1 and HTTP/2) and on one kept-alive
/// connection while the certificate is rotated three ways: a Secret update (a symlink swap),
/// a rewrite in place (certificate, then key), and an invalid replacement. No request fails;
/// new connections get each new certificate; the invalid one is refused and counted, and the
/// last good one keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn certificates_rotate_while_requests_run() {
    let ca = TestCa::new();
    let (cert0, key0) = ca.server_files();
    let (cert1, key1) = ca.reissue("second");
    let (cert2, key2) = ca.reissue("third");
    let corpus = corpus();
    let origin = Upstream::serve(corpus.root());
    let mut volume = SecretVolume::new(&cert0, &key0);
    let cache = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_tls(
        cache.path(),
        &volume.path("tls.crt"),
        &volume.path("tls.key"),
        &["--upstream", &origin.url],
    );
    let url = format!("{}{MOD_PATH}", proxy.url);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut loops = Vec::new();
    for client in [
        // A new connection for every request.
        https_client(&ca.ca_pem())
            .http1_only()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        https_client(&ca.ca_pem())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
        // One connection kept throughout.
        https_client(&ca.ca_pem()).build().unwrap(),
    ] {
        let (stop, done, url) = (stop.clone(), done.clone(), url.clone());
        loops.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => match r.text().await {
                        Ok(body) if body == GO_MOD => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.push(format!("{other:?}")),
                    },
                    other => failures.push(format!("{other:?}")),
                }
            }
            failures
        }));
    }
    let ca_pem = ca.ca_pem();
    let served = || served_certificate(&ca_pem, &url);
    let serves = |want: PathBuf| {
        let want = der_of(&want);
        let (ca_pem, url) = (&ca_pem, &url);
        async move {
            wait_for(
                "new connections to get the new certificate",
                Duration::from_secs(20),
                || async { served_certificate(ca_pem, url).await == want },
            )
            .await
        }
    };
    let metric = |sample: &'static str| proxy.metric(sample);
    const LOADED: &str = r#"modfleet_proxy_tls_certificate_reloads_total{outcome="loaded"}"#;
    const REFUSED: &str = r#"modfleet_proxy_tls_certificate_reloads_total{outcome="refused"}"#;
    const EXPIRY: &str = "modfleet_proxy_tls_certificate_expiry_timestamp_seconds";
    assert_eq!(served().await, der_of(&cert0));
    wait_for("requests under way", Duration::from_secs(20), || async {
        done.load(Ordering::Relaxed) >= 20
    })
    .await;

    // 1. A Secret update: both files swapped in one rename.
    volume.update(
        &std::fs::read(&cert1).unwrap(),
        &std::fs::read(&key1).unwrap(),
    );
    serves(cert1.clone()).await;
    assert_eq!(metric(EXPIRY).await, openssl_not_after(&cert1));

    // 2. Rewritten in place, the certificate first: the pair is served once the key follows
    // (in between, the pair does not match: not refused while the files are that fresh).
    std::fs::copy(&cert2, volume.path("tls.crt")).unwrap();
    std::fs::copy(&key2, volume.path("tls.key")).unwrap();
    serves(cert2.clone()).await;
    assert_eq!(metric(LOADED).await, 2.0);
    assert_eq!(metric(REFUSED).await, 0.0);

    // 3. An invalid replacement (a certificate whose key is another's): refused, counted,
    // logged, and the last good pair keeps serving.
    let before = done.load(Ordering::Relaxed);
    volume.update(
        &std::fs::read(&cert0).unwrap(),
        &std::fs::read(&key2).unwrap(),
    );
    wait_for(
        "the invalid pair refused",
        Duration::from_secs(20),
        || async { metric(REFUSED).await == 1.0 },
    )
    .await;
    assert_eq!(served().await, der_of(&cert2));
    assert!(
        proxy.logs().contains("does not belong to the certificate"),
        "{}",
        proxy.logs()
    );
    assert_eq!(metric(LOADED).await, 2.0);
    assert_eq!(metric(EXPIRY).await, openssl_not_after(&cert2));
    wait_for(
        "requests after the refusal",
        Duration::from_secs(20),
        || async { done.load(Ordering::Relaxed) >= before + 20 },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    for l in loops {
        let failures = l.await.unwrap();
        assert!(failures.is_empty(), "requests failed: {failures:#?}");
    }
    assert_eq!(
        metric(r#"modfleet_proxy_tls_handshake_failures_total{reason="error"}"#).await,
        0.0
    );
}

/// Bad TLS settings stop the start with status 2 and a message naming the file and the fix.
#[test]
fn bad_files_at_start_exit_2_with_the_fix() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_files();
    let (_, other_key) = ca.reissue("other");
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.crt");
    let run = |args: &[&Path]| {
        let mut c = Command::new(PROXY_BIN);
        c.args([
            "--upstream",
            "http://127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--admin-listen", "127.0.0.1:0", "--cache-dir"])
        .arg(dir.path().join("cache"))
        .env_remove("MODFLEET_TLS_CERT")
        .env_remove("MODFLEET_TLS_KEY");
        for (flag, path) in ["--tls-cert", "--tls-key"].iter().zip(args) {
            c.arg(flag).arg(path);
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&[&cert]);
    assert!(e.contains("--tls-cert and --tls-key go together"), "{e}");
    let e = run(&[&missing, &key]);
    assert!(
        e.contains(&missing.display().to_string()) && e.contains("No such file"),
        "{e}"
    );
    let e = run(&[&key, &cert]);
    assert!(
        e.contains("no PEM certificate") && e.contains(&key.display().to_string()),
        "{e}"
    );
    let e = run(&[&cert, &other_key]);
    assert!(
        e.contains("does not belong to the certificate") && e.contains("same issuance"),
        "{e}"
    );
    let mut c = Command::new(PROXY_BIN);
    c.args(["--upstream", "http://127.0.0.1:1", "--tls-key"])
        .arg(&key)
        .env_remove("MODFLEET_TLS_CERT");
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Reads until the proxy closes the connection (EOF or a reset), within `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(within, read)
        .await
        .expect("the proxy closes the connection");
    got
}

/// A client that never finishes the handshake (silent, or a ClientHello's first bytes only)
/// is closed by the header-read timeout and counted like a slowloris, and its slot is freed;
/// plain HTTP to the port is answered 400 and closed at once, without that timeout.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_handshakes_time_out_and_plain_http_is_refused() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_files();
    let corpus = corpus();
    let origin = Upstream::serve(corpus.root());
    let cache = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_tls(
        cache.path(),
        &cert,
        &key,
        &["--upstream", &origin.url, "--header-read-timeout", "2s"],
    );
    let addr = proxy.url.trim_start_matches("https://").to_string();
    const TIMED_OUT: &str =
        r#"modfleet_proxy_connections_closed_total{listener="goproxy",reason="header_timeout"}"#;

    let mut plain = TcpStream::connect(&addr).await.unwrap();
    plain
        .write_all(b"GET /example.test/hello/@v/list HTTP/1.1\r\nHost: proxy\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut plain, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request") && answer.contains("use an https:// URL"),
        "{answer}"
    );
    assert_eq!(
        proxy.metric(TIMED_OUT).await,
        0.0,
        "closed at once, not by the header timeout"
    );
    assert_eq!(
        proxy
            .metric(r#"modfleet_proxy_tls_handshake_failures_total{reason="plain_http"}"#)
            .await,
        1.0
    );

    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut partial = TcpStream::connect(&addr).await.unwrap();
    // A handshake record header announcing 512 bytes, then nothing.
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let started = Instant::now();
    for stream in [&mut silent, &mut partial] {
        let got = read_until_closed(stream, Duration::from_secs(30)).await;
        assert!(got.is_empty(), "{got:?}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed before the header timeout"
    );
    wait_for(
        "both counted as header timeouts",
        Duration::from_secs(10),
        || async { proxy.metric(TIMED_OUT).await == 2.0 },
    )
    .await;
    wait_for("their slots freed", Duration::from_secs(10), || async {
        proxy
            .metric(r#"modfleet_proxy_connections_open{listener="goproxy"}"#)
            .await
            == 0.0
    })
    .await;
    // A client that is not TLS at all (a binary protocol): closed, counted as an error.
    let mut junk = TcpStream::connect(&addr).await.unwrap();
    junk.write_all(&[0x00, 0x01, 0x02]).await.unwrap();
    read_until_closed(&mut junk, Duration::from_secs(10)).await;
    wait_for(
        "the non-TLS client counted",
        Duration::from_secs(10),
        || async {
            proxy
                .metric(r#"modfleet_proxy_tls_handshake_failures_total{reason="error"}"#)
                .await
                == 1.0
        },
    )
    .await;
    // Real clients are still served.
    let response = https_client(&ca.ca_pem())
        .build()
        .unwrap()
        .get(format!("{}{MOD_PATH}", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A TLS client that asks for a large zip and stops reading is closed by the send timeout,
/// as on plain HTTP: what rustls buffers for it is bounded, and the watchdog sees the writes
/// (and the flushes of what rustls holds) that cannot go through.
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_client_that_stops_reading_is_closed_by_the_send_timeout() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_files();
    let corpus = Corpus::new();
    let blob = common::noise(7, 8 << 20);
    corpus.add(
        MODULE,
        "v1.0.0",
        Some(GO_MOD),
        &[("hello.go", b"package hello\n"), ("blob.bin", &blob)],
    );
    let zip_path = "/example.test/hello/@v/v1.0.0.zip";
    let origin = Upstream::serve(corpus.root());
    let cache = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_tls(
        cache.path(),
        &cert,
        &key,
        &["--upstream", &origin.url, "--send-timeout", "2s"],
    );
    let client = https_client(&ca.ca_pem()).build().unwrap();
    let zip = client
        .get(format!("{}{zip_path}", proxy.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(zip.as_ref(), corpus.read(&zip_path[1..]));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca.ca_pem()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // A small receive buffer: the kernel takes little of the zip for the client.
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = proxy.url.trim_start_matches("https://").parse().unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(format!("GET {zip_path} HTTP/1.1\r\nHost: proxy\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tls.flush().await.unwrap();
    // Never read again: closed by the send timeout.
    wait_for("the stalled TLS download closed", Duration::from_secs(30), || async {
        proxy
            .metric(
                r#"modfleet_proxy_connections_closed_total{listener="goproxy",reason="send_timeout"}"#,
            )
            .await
            == 1.0
    })
    .await;
    drop(tls);
}
