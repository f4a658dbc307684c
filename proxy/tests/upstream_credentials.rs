//! Upstreams that require credentials, with the real go command as the client and real
//! HTTPS upstreams (testkit's, with a test CA the proxy trusts through `SSL_CERT_FILE`):
//! HTTP Basic, Bearer and netrc credentials from files; refused credentials failing the
//! build with the fix and without the secret; a Secret rotated (the kubelet's symlink swap)
//! while requests run; and credentials never following a redirect to another origin.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Corpus, GoEnv, Proxy, Reply, Upstream, config_file, wait_for};
use modfleet_testkit::tls::TestCa;
use modfleet_testkit::upstream::{Auth, basic_header};

const PASSWORD: &str = "s3cret-Pa55word";
const TOKEN: &str = "tok3n-0ne.abc";
const ROTATED: &str = "tok3n-tw0.xyz";

/// `module@version` with a go.mod and one file.
fn add(c: &Corpus, module: &str, version: &str, require: &str) {
    c.add(
        module,
        version,
        Some(&format!("module {module}\n\ngo 1.21\n{require}")),
        &[("a.go", b"package a\n")],
    );
}

/// A proxy on `yaml` that trusts the test CA; health probes every 200ms unless `yaml` says.
fn proxy(dir: &tempfile::TempDir, ca: &TestCa, yaml: &str) -> Proxy {
    let mut yaml = yaml.to_string();
    if !yaml.contains("healthCheck") {
        yaml.push_str("healthCheck: {interval: 200ms, timeout: 2s}\n");
    }
    let cfg = config_file(dir.path(), &yaml);
    let ca = ca.ca_pem();
    Proxy::start_with_env(
        &[],
        "127.0.0.1",
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap()],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    )
}

fn secret_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// Everything a person or a tool can read of the proxy: its log, /status, /metrics.
async fn visible(proxy: &Proxy) -> String {
    let metrics = reqwest::get(format!("{}/metrics", proxy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    format!("{}\n{}\n{metrics}", proxy.logs(), proxy.status().await)
}

fn assert_hidden(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret:?} shown in:\n{text}");
    }
}

/// The go command downloads through modfleet from two upstreams that refuse anonymous
/// requests, one with HTTP Basic and one with a Bearer token; every request to each carries
/// its own credentials (health probes included), the checksum database's direct URL gets
/// none, and nothing readable shows them.
#[tokio::test(flavor = "multi_thread")]
async fn the_go_command_downloads_through_upstreams_that_require_credentials() {
    let ca = TestCa::new();
    let basic_corpus = Corpus::new();
    add(
        &basic_corpus,
        "example.test/basic",
        "v1.0.0",
        "\nrequire example.test/bearer v1.0.0\n",
    );
    let bearer_corpus = Corpus::new();
    add(&bearer_corpus, "example.test/bearer", "v1.0.0", "");
    let basic = Upstream::builder()
        .dir(basic_corpus.root())
        .auth(Auth::basic("ci", PASSWORD))
        .tls(&ca)
        .start();
    let bearer = Upstream::builder()
        .dir(bearer_corpus.root())
        .auth(Auth::bearer(TOKEN))
        .tls(&ca)
        .start();
    let direct_sumdb = Upstream::builder().tls(&ca).start();
    let dir = tempfile::tempdir().unwrap();
    let password = secret_file(dir.path(), "password", &format!("{PASSWORD}\n"));
    let token = secret_file(dir.path(), "token", TOKEN);
    let proxy = proxy(
        &dir,
        &ca,
        &format!(
            "upstreams:
  - url: {}
    credentials: {{username: ci, passwordFile: {}}}
  - url: {}
    credentials: {{bearerTokenFile: {}}}
sumdbs:
  - name: sum.golang.org
    url: {}
",
            basic.url,
            password.display(),
            bearer.url,
            token.display(),
            direct_sumdb.url
        ),
    );

    let go = GoEnv::new();
    let work = tempfile::tempdir().unwrap();
    let mut c = go.command(work.path(), &proxy.url);
    c.args([
        "mod",
        "download",
        "-json",
        "example.test/basic@v1.0.0",
        "example.test/bearer@v1.0.0",
    ])
    .env("GONOSUMDB", "example.test");
    let out = go.run(c);
    assert!(out.contains("\"Zip\""), "{out}");

    let basic_header = basic_header("ci", PASSWORD);
    let bearer_header = format!("Bearer {TOKEN}");
    for (up, want) in [(&basic, &basic_header), (&bearer, &bearer_header)] {
        let seen = up.all_authorizations();
        let zip = seen.keys().filter(|p| p.ends_with(".zip")).count();
        assert!(zip >= 1, "{} got no zip request: {seen:?}", up.url);
        for (path, headers) in &seen {
            assert!(
                headers.iter().all(|h| h.as_ref() == Some(want)),
                "{} got {headers:?} for {path}",
                up.url
            );
        }
    }
    // Health probes carry them too.
    wait_for(
        "a probe of each upstream",
        Duration::from_secs(10),
        || async {
            !basic.authorizations("/").is_empty() && !bearer.authorizations("/").is_empty()
        },
    )
    .await;

    // The checksum database: each upstream's own /sumdb/ endpoint with its credentials, the
    // database's direct URL without any.
    let lookup = "/sumdb/sum.golang.org/lookup/example.test/basic@v1.0.0";
    assert_eq!(proxy.get(lookup).await.status(), 404);
    assert_eq!(basic.authorizations(lookup), [Some(basic_header.clone())]);
    assert_eq!(bearer.authorizations(lookup), [Some(bearer_header.clone())]);
    assert_eq!(
        direct_sumdb.authorizations("/lookup/example.test/basic@v1.0.0"),
        [None]
    );

    let shown = visible(&proxy).await;
    assert_hidden(&shown, &[PASSWORD, TOKEN, &basic_header["Basic ".len()..]]);
}

/// Wrong credentials: the build fails with a message naming the upstream and the file to
/// check, never the secret (not even when the upstream echoes it), and the go command does
/// not fall back to the next GOPROXY entry. The upstream turns unhealthy; once the file holds
/// the right password it works again, with no restart.
#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_fail_the_build_with_the_fix_and_not_the_secret() {
    let ca = TestCa::new();
    let corpus = Corpus::new();
    add(&corpus, "example.test/basic", "v1.0.0", "");
    let upstream = Upstream::builder()
        .dir(corpus.root())
        .auth(Auth::basic("ci", "the-right-one"))
        .tls(&ca)
        .start();
    let next = Upstream::start(vec![], Some(corpus.root().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let password = secret_file(dir.path(), "password", PASSWORD);
    let proxy = proxy(
        &dir,
        &ca,
        &format!(
            "upstreams:\n  - url: {}\n    credentials: {{username: ci, passwordFile: {}}}\nretry: {{attempts: 1}}\n",
            upstream.url,
            password.display()
        ),
    );
    let go = GoEnv::new();
    let work = tempfile::tempdir().unwrap();
    let download = || {
        let mut c = go.command(work.path(), &format!("{},{}", proxy.url, next.url));
        c.args(["mod", "download", "example.test/basic@v1.0.0"])
            .env("GONOSUMDB", "example.test");
        c.output().unwrap()
    };
    let out = download();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("502 Bad Gateway")
            && err.contains(&upstream.url)
            && err.contains("refused our credentials (401 Unauthorized)")
            && err.contains(&format!("passwordFile {}", password.display())),
        "{err}"
    );
    let sent = basic_header("ci", PASSWORD);
    assert_hidden(&err, &[PASSWORD, &sent["Basic ".len()..]]);
    assert_eq!(next.total_hits(), 0, "the go command fell back: {err}");
    assert!(
        proxy
            .metric(r#"modfleet_proxy_upstream_requests_total{outcome="unauthorized"}"#)
            .await
            >= 1.0
    );
    // The probes (with the same credentials) find it unusable.
    wait_for(
        "the upstream unhealthy",
        Duration::from_secs(10),
        || async {
            common::status_upstream(&proxy.status().await, &upstream.url)["healthy"] == false
        },
    )
    .await;
    assert_hidden(&visible(&proxy).await, &[PASSWORD, &sent["Basic ".len()..]]);

    // The Secret is fixed: the next probe and the next build take it.
    std::fs::write(&password, "the-right-one\n").unwrap();
    wait_for(
        "the upstream healthy again",
        Duration::from_secs(10),
        || async {
            common::status_upstream(&proxy.status().await, &upstream.url)["healthy"] == true
        },
    )
    .await;
    let out = download();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(next.total_hits(), 0);
}

/// A Secret volume as the kubelet writes it: `token` → `..data/token`, `..data` → a
/// timestamped directory, updated by swapping `..data` atomically.
struct SecretVolume {
    dir: tempfile::TempDir,
    generation: u32,
}

impl SecretVolume {
    fn new(token: &str) -> SecretVolume {
        let mut v = SecretVolume {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
        };
        v.update(token);
        std::os::unix::fs::symlink("..data/token", v.dir.path().join("token")).unwrap();
        v
    }

    fn token(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    fn update(&mut self, token: &str) {
        self.generation += 1;
        let version = format!("..2026_01_01_00_00_0{}", self.generation);
        std::fs::create_dir(self.dir.path().join(&version)).unwrap();
        std::fs::write(self.dir.path().join(&version).join("token"), token).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

/// A token rotated while requests run: the upstream takes both during the swap, then only
/// the new one; every request succeeds, and those after the swap carry the new token, with no
/// restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_is_used_without_a_restart() {
    const VERSIONS: usize = 400;
    let ca = TestCa::new();
    let corpus = Corpus::new();
    for v in 0..VERSIONS {
        add(&corpus, "example.test/rotate", &format!("v1.0.{v}"), "");
    }
    let upstream = Upstream::builder()
        .dir(corpus.root())
        .auth(Auth::bearer(TOKEN))
        .tls(&ca)
        .start();
    let mut volume = SecretVolume::new(TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy(
        &dir,
        &ca,
        &format!(
            "upstreams:\n  - url: {}\n    credentials: {{bearerTokenFile: {}}}\n",
            upstream.url,
            volume.token().display()
        ),
    );
    let info = |v: usize| format!("/example.test/rotate/@v/v1.0.{v}.info");
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let get = {
        let (url, next) = (proxy.url.clone(), next.clone());
        move || {
            let (url, next) = (url.clone(), next.clone());
            async move {
                let v = next.fetch_add(1, Ordering::SeqCst);
                assert!(v < VERSIONS, "the corpus ran out of versions");
                let status = reqwest::get(format!("{url}{}", info(v)))
                    .await
                    .unwrap()
                    .status();
                (v, status.as_u16())
            }
        }
    };
    for _ in 0..3 {
        assert_eq!(get().await.1, 200);
    }

    // Four clients keep asking while the Secret is rotated.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (get, stop) = (get.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    answers.push(get().await);
                }
                answers
            })
        })
        .collect();
    let new_header = format!("Bearer {ROTATED}");
    upstream.set_auth(Some(Auth::bearer(TOKEN).or(Auth::bearer(ROTATED))));
    volume.update(ROTATED);
    wait_for(
        "a request with the new token",
        Duration::from_secs(10),
        || {
            let seen = upstream.all_authorizations();
            let new_header = new_header.clone();
            async move {
                seen.values()
                    .flatten()
                    .any(|h| h.as_ref() == Some(&new_header))
            }
        },
    )
    .await;
    upstream.set_auth(Some(Auth::bearer(ROTATED)));
    let revoked_at = next.load(Ordering::SeqCst);
    wait_for(
        "requests after the old token's revocation",
        Duration::from_secs(10),
        || {
            let n = next.load(Ordering::SeqCst);
            async move { n > revoked_at + 8 }
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        for (v, status) in w.await.unwrap() {
            assert_eq!(status, 200, "{} during the rotation", info(v));
        }
    }
    // From now on, only the new token.
    for _ in 0..3 {
        let (v, status) = get().await;
        assert_eq!(status, 200);
        assert_eq!(
            upstream.authorizations(&info(v)),
            [Some(new_header.clone())]
        );
    }
    let shown = visible(&proxy).await;
    assert!(shown.contains("upstream credentials changed"), "{shown}");
    assert_hidden(&shown, &[TOKEN, ROTATED]);
}

/// Redirects: within the upstream's origin the credentials go along; to another host, port
/// or scheme they do not (the storage a mirror redirects zips to never sees them).
#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_follow_a_redirect_to_another_origin() {
    let ca = TestCa::new();
    let corpus = Corpus::new();
    let module = "example.test/redirect";
    let versions = ["v1.0.1", "v1.0.2", "v1.0.3", "v1.0.4"];
    for v in versions {
        add(&corpus, module, v, "");
    }
    let zip = |v: &str| format!("/{module}/@v/{v}.zip");
    let body = |v: &str| corpus.read(&zip(v)[1..]);
    // The second origin: another port.
    let other_port = Upstream::builder()
        .route("/storage/port.zip", Reply::Body(body("v1.0.3")))
        .tls(&ca)
        .start();
    // The upstream redirects each zip elsewhere, and answers two storage paths itself
    // without asking for credentials ("another host", "another scheme"); its routes name its
    // own port, so it is chosen first.
    let port = modfleet_testkit::workspace::free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let own = format!("https://127.0.0.1:{port}");
    let upstream = Upstream::builder()
        .dir(corpus.root())
        .tls(&ca)
        .bind(addr)
        .route(
            &zip("v1.0.1"),
            Reply::Redirect(format!("{own}/storage/same.zip")),
        )
        .route(
            &zip("v1.0.2"),
            Reply::Redirect(format!("https://localhost:{port}/storage/host.zip")),
        )
        .route(
            &zip("v1.0.3"),
            Reply::Redirect(format!("{}/storage/port.zip", other_port.url)),
        )
        .route(
            &zip("v1.0.4"),
            Reply::Redirect(format!("http://127.0.0.1:{port}/storage/scheme.zip")),
        )
        .route("/storage/same.zip", Reply::Body(body("v1.0.1")))
        .route("/storage/host.zip", Reply::Body(body("v1.0.2")))
        .route("/storage/scheme.zip", Reply::Body(body("v1.0.4")))
        .auth(
            Auth::basic("ci", PASSWORD)
                .open("/storage/host.zip")
                .open("/storage/scheme.zip"),
        )
        .start();
    assert_eq!(upstream.url, own);
    let dir = tempfile::tempdir().unwrap();
    let password = secret_file(dir.path(), "password", PASSWORD);
    let proxy = proxy(
        &dir,
        &ca,
        &format!(
            "upstreams:\n  - url: {own}\n    credentials: {{username: ci, passwordFile: {}}}\nhedgeDelay: off\n",
            password.display()
        ),
    );
    for v in versions {
        let r = proxy.get(&zip(v)).await;
        assert_eq!(r.status(), 200, "{v}: {}", proxy.logs());
        assert_eq!(r.bytes().await.unwrap(), body(v), "{v}");
    }
    let sent = Some(basic_header("ci", PASSWORD));
    assert_eq!(upstream.authorizations(&zip("v1.0.1")), vec![sent.clone()]);
    // Same origin, another path: along.
    assert_eq!(upstream.authorizations("/storage/same.zip"), vec![sent]);
    // Another host name for the same address and port: dropped.
    assert_eq!(upstream.authorizations("/storage/host.zip"), [None]);
    // Another port: dropped.
    assert_eq!(other_port.authorizations("/storage/port.zip"), [None]);
    // Another scheme, same host and port (https to http): dropped.
    assert_eq!(upstream.authorizations("/storage/scheme.zip"), [None]);
}

/// One netrc file for two upstreams: each gets its own entry, by host and port (and path
/// prefix), as the go command picks it; the host's entry without the port and the default
/// entry are never sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_netrc_file_gives_each_upstream_its_own_entry() {
    let ca = TestCa::new();
    let one_corpus = Corpus::new();
    add(&one_corpus, "example.test/one", "v1.0.0", "");
    let two_corpus = Corpus::new();
    add(&two_corpus, "example.test/two", "v1.0.0", "");
    // The second upstream's base URL has a path: its files are under /goproxy/.
    let two_root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(two_corpus.root(), two_root.path().join("goproxy")).unwrap();
    let one = Upstream::builder()
        .dir(one_corpus.root())
        .auth(Auth::basic("one", "pw-one"))
        .tls(&ca)
        .start();
    let two = Upstream::builder()
        .dir(two_root.path())
        .auth(Auth::basic("two", "pw-two"))
        .tls(&ca)
        .start();
    let (p1, p2) = (one.addr().port(), two.addr().port());
    let dir = tempfile::tempdir().unwrap();
    let netrc = secret_file(
        dir.path(),
        "netrc",
        &format!(
            "machine 127.0.0.1 login host password pw-host\n\
             machine 127.0.0.1:{p1} login one password pw-one\n\
             machine 127.0.0.1:{p2} login port password pw-port\n\
             machine 127.0.0.1:{p2}/goproxy\n  login two\n  password pw-two\n\
             default login anonymous password pw-default\n"
        ),
    );
    let proxy = proxy(
        &dir,
        &ca,
        &format!(
            "upstreams:
  - url: {}
    credentials: {{netrcFile: {}}}
  - url: {}/goproxy
    credentials: {{netrcFile: {}}}
",
            one.url,
            netrc.display(),
            two.url,
            netrc.display()
        ),
    );
    let go = GoEnv::new();
    let work = tempfile::tempdir().unwrap();
    let mut c = go.command(work.path(), &proxy.url);
    c.args([
        "mod",
        "download",
        "example.test/one@v1.0.0",
        "example.test/two@v1.0.0",
    ])
    .env("GONOSUMDB", "example.test");
    go.run(c);
    for (up, want, module) in [
        (&one, basic_header("one", "pw-one"), "/example.test/one/"),
        (
            &two,
            basic_header("two", "pw-two"),
            "/goproxy/example.test/two/",
        ),
    ] {
        let seen = up.all_authorizations();
        assert!(
            seen.keys()
                .any(|p| p.starts_with(module) && p.ends_with(".zip")),
            "{seen:?}"
        );
        for (path, headers) in &seen {
            assert!(
                headers.iter().all(|h| h.as_deref() == Some(want.as_str())),
                "{} got {headers:?} for {path}",
                up.url
            );
        }
    }
    assert_hidden(&visible(&proxy).await, &["pw-one", "pw-two", "pw-host"]);
}

/// Traces: the attempt refused for its credentials is a span saying so, and no span (nor the
/// log) holds the credentials, neither those sent nor the refused ones an upstream echoes.
#[tokio::test(flavor = "multi_thread")]
async fn traces_show_refusals_and_never_credentials() {
    use modfleet_testkit::{Collector, Signal};
    let collector = Collector::start();
    let ca = TestCa::new();
    let corpus = Corpus::new();
    add(&corpus, "example.test/traced", "v1.0.0", "");
    let refusing = Upstream::builder()
        .dir(corpus.root())
        .auth(Auth::basic("ci", "another-one"))
        .tls(&ca)
        .start();
    let accepting = Upstream::builder()
        .dir(corpus.root())
        .auth(Auth::bearer(TOKEN))
        .tls(&ca)
        .start();
    let dir = tempfile::tempdir().unwrap();
    let password = secret_file(dir.path(), "password", PASSWORD);
    let token = secret_file(dir.path(), "token", TOKEN);
    let cfg = config_file(
        dir.path(),
        &format!(
            "upstreams:
  - url: {}
    credentials: {{username: ci, passwordFile: {}}}
  - url: {}
    credentials: {{bearerTokenFile: {}}}
healthCheck: {{interval: 1h}}
retry: {{attempts: 1}}
",
            refusing.url,
            password.display(),
            accepting.url,
            token.display()
        ),
    );
    let ca_pem = ca.ca_pem();
    let grpc = collector.grpc_endpoint();
    let proxy = Proxy::start_with_env(
        &[],
        "127.0.0.1",
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap()],
        &[
            ("SSL_CERT_FILE", ca_pem.to_str().unwrap()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let r = proxy.get("/example.test/traced/@v/v1.0.0.info").await;
    assert_eq!(r.status(), 200);
    let spans = collector
        .wait_for_spans_async(
            |spans| {
                spans
                    .iter()
                    .filter(|s| s.name == "upstream attempt")
                    .count()
                    >= 2
            },
            Duration::from_secs(30),
        )
        .await;
    let refused = spans
        .iter()
        .find(|s| s.attr_str("modfleet.outcome") == Some("unauthorized"))
        .unwrap_or_else(|| panic!("no refused attempt in {spans:#?}"));
    assert_eq!(
        refused.attr_str("modfleet.upstream"),
        Some(refusing.url.as_str())
    );
    let error = refused.attr_str("modfleet.error").unwrap_or_default();
    assert!(error.contains("refused our credentials"), "{error}");
    // The refusing upstream echoed the credentials it got in its 401 body.
    assert_eq!(
        refusing.authorizations("/example.test/traced/@v/v1.0.0.info"),
        [Some(basic_header("ci", PASSWORD))]
    );
    let exported = collector
        .json_lines(Signal::Traces)
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let sent = basic_header("ci", PASSWORD);
    assert_hidden(
        &format!("{exported}\n{}", visible(&proxy).await),
        &[PASSWORD, TOKEN, &sent["Basic ".len()..]],
    );
}
