//! The GOPROXY protocol over HTTP and the failure modes of upstreams, against the real proxy
//! binary and in-process fake upstreams that fail on cue.

mod common;

use std::time::Duration;

use common::{Corpus, Proxy, Reply, Upstream, config_file, wait_committed, wait_for};

const MODULE: &str = "example.com/hello";

fn corpus() -> Corpus {
    let c = Corpus::new();
    c.add(
        MODULE,
        "v1.0.0",
        Some("module example.com/hello\n\ngo 1.21\n"),
        &[("hello.go", b"package hello\n")],
    );
    c
}

async fn proxy_over(upstreams: &[&str], extra: &[&str]) -> (Proxy, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = Vec::new();
    for u in upstreams {
        args.extend(["--upstream", u]);
    }
    args.extend(extra);
    (Proxy::start(cache.path(), &args), cache)
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_every_route_with_the_right_headers() {
    let c = corpus();
    let list = "v1.0.0\nv1.1.0-0.20240101000000-abcdefabcdef\nv0.9.0\nv1.2\nv0.9.0\n";
    let up = Upstream::start(
        vec![("/example.com/hello/@v/list", Reply::Body(list.into()))],
        Some(c.root().to_path_buf()),
    );
    let (p, cache) = proxy_over(&[&up.url], &[]).await;

    let r = p.get("/example.com/hello/@v/list").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    assert_eq!(
        r.text().await.unwrap(),
        "v1.0.0\nv0.9.0\n",
        "pseudo-versions and non-canonical versions dropped"
    );

    let r = p.get("/example.com/hello/@v/v1.0.0.info").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=604800, immutable"
    );
    assert_eq!(
        r.bytes().await.unwrap(),
        c.read("example.com/hello/@v/v1.0.0.info"),
        ".info passed through unchanged"
    );

    let r = p.get("/example.com/hello/@v/v1.0.0.mod").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        r.text().await.unwrap(),
        "module example.com/hello\n\ngo 1.21\n"
    );

    let r = p.get("/example.com/hello/@v/v1.0.0.zip").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let zip = c.read("example.com/hello/@v/v1.0.0.zip");
    assert_eq!(
        r.headers()["content-length"],
        zip.len().to_string().as_str()
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong etag: {etag}"
    );
    assert_eq!(r.bytes().await.unwrap(), zip);
    // Committed just after the answer: the requests below are hits.
    wait_committed(
        &cache
            .path()
            .join("download/example.com/hello/@v/v1.0.0.zip"),
    )
    .await;

    let r = p.get("/example.com/hello/@latest").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");

    // Conditional and HEAD requests.
    let client = reqwest::Client::new();
    let zip_url = format!("{}/example.com/hello/@v/v1.0.0.zip", p.url);
    let r = client
        .get(&zip_url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());
    let r = client.head(&zip_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        zip.len().to_string().as_str()
    );
    assert_eq!(r.headers()["etag"], etag.as_str());

    // Cached artifacts never go upstream again.
    for _ in 0..3 {
        assert_eq!(
            p.get("/example.com/hello/@v/v1.0.0.zip").await.status(),
            200
        );
    }
    assert_eq!(up.hits("/example.com/hello/@v/v1.0.0.zip"), 1);
    assert_eq!(up.hits("/example.com/hello/@v/v1.0.0.mod"), 1);
    assert_eq!(
        p.metric(r#"modfleet_proxy_requests_total{route="zip",status="200",cache="hit"}"#)
            .await,
        4.0,
        "three GETs and a HEAD"
    );
    assert_eq!(
        p.metric(r#"modfleet_proxy_requests_total{route="zip",status="304",cache="hit"}"#)
            .await,
        1.0
    );
    assert_eq!(
        p.metric(r#"modfleet_proxy_requests_total{route="zip",status="200",cache="miss"}"#)
            .await,
        1.0
    );
    let r = client.post(&zip_url).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn case_encoded_paths_incompatible_and_pseudo_versions() {
    let c = Corpus::new();
    c.add(
        "github.com/BurntSushi/toml",
        "v1.3.2",
        Some("module github.com/BurntSushi/toml\n"),
        &[("toml.go", b"package toml\n")],
    );
    c.add(
        "example.com/old",
        "v2.1.0+incompatible",
        None,
        &[("old.go", b"package old\n")],
    );
    c.add(
        "example.com/pseudo",
        "v0.0.0-20240102030405-abcdefabcdef",
        None,
        &[("p.go", b"package pseudo\n")],
    );
    let up = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let (p, cache) = proxy_over(&[&up.url], &[]).await;
    for path in [
        "/github.com/!burnt!sushi/toml/@v/v1.3.2.zip",
        "/example.com/old/@v/v2.1.0+incompatible.zip",
        "/example.com/pseudo/@v/v0.0.0-20240102030405-abcdefabcdef.zip",
    ] {
        let r = p.get(path).await;
        assert_eq!(r.status(), 200, "{path}: {}", r.text().await.unwrap());
        assert_eq!(r.bytes().await.unwrap(), c.read(&path[1..]));
        // Cached in GOPROXY layout.
        wait_committed(&cache.path().join("download").join(&path[1..])).await;
    }
    // The unescaped spelling is refused, never fetched.
    let r = p.get("/github.com/BurntSushi/toml/@v/v1.3.2.zip").await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("github.com/BurntSushi/toml")
    );
    assert_eq!(up.hits("/github.com/BurntSushi/toml/@v/v1.3.2.zip"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_paths_are_4xx_with_one_line_and_never_leave_the_cache() {
    let up = Upstream::start(vec![], None);
    let (p, _cache) = proxy_over(&[&up.url], &[]).await;
    for path in [
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/example.com/x/@v/..%2f..%2f..%2fetc%2fpasswd.zip",
        "/example.com/x/@v/v1.0.0.zip%00",
        "/example.com/%00/@v/list",
        "//etc/passwd",
        "/example.com/x/@v/v1.0.zip",
        "/example.com/x/@v/latest.zip",
        "/example.com/x/@v/v1.0.0.tar",
        "/nodot/@v/list",
        "/example.com/x\\..\\y/@v/list",
    ] {
        let (status, head, body) = raw_get(&p.url, path).await;
        assert!(status == 400 || status == 404, "{path}: {status}");
        assert!(
            head.contains("content-type: text/plain; charset=utf-8"),
            "{path}: {head}"
        );
        assert_eq!(body.matches('\n').count(), 1, "{path}: one line: {body:?}");
    }
    let long = format!("/example.com/{}/@v/list", "a/".repeat(2000));
    assert_eq!(raw_get(&p.url, &long).await.0 / 100, 4);
    assert_eq!(
        up.total_hits(),
        0,
        "nothing malformed went upstream: {:?}",
        up.all_hits()
    );
}

/// A GET with the path sent byte for byte (HTTP clients normalise `..` and `\\` away).
async fn raw_get(base: &str, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    sock.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn not_found_only_when_every_upstream_says_so() {
    let c = corpus();
    let gone = Upstream::start(
        vec![(
            "/example.com/hello/@v/v1.0.0.info",
            Reply::Status(410, "gone: for reasons"),
        )],
        None,
    );
    let missing = Upstream::start(vec![], None);
    let broken = Upstream::start(
        vec![(
            "/example.com/hello/@v/v1.0.0.info",
            Reply::Status(500, "internal error"),
        )],
        None,
    );
    let good = Upstream::start(vec![], Some(c.root().to_path_buf()));

    // 404 and 410 fall through to the next upstream.
    let (p, _c1) = proxy_over(&[&gone.url, &missing.url, &good.url], &[]).await;
    assert_eq!(
        p.get("/example.com/hello/@v/v1.0.0.info").await.status(),
        200
    );

    // Every upstream says not found: 404, with an upstream's reason.
    let (p, _c2) = proxy_over(&[&gone.url, &missing.url], &[]).await;
    let r = p.get("/example.com/hello/@v/v1.0.0.info").await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("gone: for reasons"));

    // A failure anywhere and no answer: 502, never 404 (an outage must not send clients to
    // the next GOPROXY entry with a private module path).
    let (p, _c3) = proxy_over(&[&broken.url, &missing.url], &[]).await;
    let r = p.get("/example.com/hello/@v/v1.0.0.info").await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains("500") && text.contains(&broken.url), "{text}");

    // ... but a failing primary does not stop a healthy secondary.
    let (p, _c4) = proxy_over(&[&broken.url, &good.url], &[]).await;
    assert_eq!(
        p.get("/example.com/hello/@v/v1.0.0.info").await.status(),
        200
    );
    assert_eq!(
        p.metric(&format!(
            r#"modfleet_proxy_upstream_requests_total{{upstream="{}",outcome="error"}}"#,
            broken.url
        ))
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn other_client_errors_stop_there_like_the_go_command() {
    // 403 is not "not here": the go command would not try the next GOPROXY entry, nor do we.
    let forbidding = Upstream::start(vec![("*", Reply::Status(403, "forbidden by policy"))], None);
    let c = corpus();
    let good = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let (p, _cache) = proxy_over(&[&forbidding.url, &good.url], &[]).await;
    let r = p.get("/example.com/hello/@v/v1.0.0.info").await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("forbidden by policy"));
    assert_eq!(good.total_hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_upstream_is_a_504_after_its_timeout() {
    let hang = Upstream::start(vec![("/example.com/hello/@v/list", Reply::Hang)], None);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        dir.path(),
        &format!("upstreams:\n  - url: {}\n    timeout: 500ms\n", hang.url),
    );
    let (p, _c) = proxy_over(&[], &["--config", cfg.to_str().unwrap()]).await;
    let r = p.get("/example.com/hello/@v/list").await;
    assert_eq!(r.status(), 504);
    assert!(r.text().await.unwrap().contains("no response within 500ms"));
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_and_corrupt_answers_are_never_cached_and_the_next_upstream_is_tried() {
    let c = corpus();
    let zip = c.read("example.com/hello/@v/v1.0.0.zip");
    let zip_path = "/example.com/hello/@v/v1.0.0.zip";
    // Damage the stored content of hello.go: its CRC no longer matches.
    let mut corrupt = zip.clone();
    let at = zip.windows(13).position(|w| w == b"package hello").unwrap();
    corrupt[at] ^= 0x55;
    let truncating = Upstream::start(
        vec![(zip_path, Reply::Truncated(zip[..zip.len() / 2].to_vec()))],
        Some(c.root().to_path_buf()),
    );
    let corrupting = Upstream::start(
        vec![(zip_path, Reply::Body(corrupt))],
        Some(c.root().to_path_buf()),
    );
    let wrong_info = Upstream::start(
        vec![(
            "/example.com/hello/@v/v1.0.0.info",
            Reply::Body(br#"{"Version":"v1.0.1"}"#.to_vec()),
        )],
        None,
    );
    let good = Upstream::start(vec![], Some(c.root().to_path_buf()));

    // Alone, a truncating upstream yields 502 and leaves nothing in the cache.
    let (p, cache) = proxy_over(&[&truncating.url], &[]).await;
    let r = p.get(zip_path).await;
    assert_eq!(r.status(), 502, "{}", r.text().await.unwrap());
    assert!(!cache.path().join("download").join(&zip_path[1..]).exists());
    let leftovers = common::tmp_files(cache.path());
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // In front of a good one, each bad answer is skipped.
    let (p, cache) = proxy_over(
        &[&truncating.url, &corrupting.url, &wrong_info.url, &good.url],
        &[],
    )
    .await;
    let r = p.get(zip_path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), zip);
    let r = p.get("/example.com/hello/@v/v1.0.0.info").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().await.unwrap(),
        c.read("example.com/hello/@v/v1.0.0.info")
    );
    assert_eq!(good.hits(zip_path), 1);
    assert_eq!(
        p.metric(&format!(
            r#"modfleet_proxy_upstream_requests_total{{upstream="{}",outcome="invalid"}}"#,
            corrupting.url
        ))
        .await,
        1.0
    );
    // The good zip's commit (just after its answer) renames the last temporary file.
    wait_for(
        "no temporary files left",
        Duration::from_secs(20),
        || async { common::tmp_files(cache.path()).is_empty() },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn zips_the_go_command_rejects_are_never_cached_and_the_next_upstream_is_tried() {
    use modfleet_testkit::zipfile::{Entry, Zip};
    let c = corpus();
    let zip = c.read("example.com/hello/@v/v1.0.0.zip");
    let zip_path = "/example.com/hello/@v/v1.0.0.zip";
    let go_mod = c.read("example.com/hello/@v/v1.0.0.mod");
    // Each is a well-formed zip with the right go.mod that the go command refuses, and that
    // modfleet's zip-crate check used to accept and cache.
    let hostile = |extra: Vec<(&str, &[u8])>| {
        let p = "example.com/hello@v1.0.0/";
        let mut entries = vec![
            Entry::file(format!("{p}go.mod"), &go_mod),
            Entry::file(format!("{p}hello.go"), b"package hello\n"),
        ];
        entries.extend(
            extra
                .into_iter()
                .map(|(n, b)| Entry::file(format!("{p}{n}"), b)),
        );
        Zip::new(entries).build()
    };
    let bad_zips = [
        hostile(vec![("hello.go", b"package evil\n")]),
        hostile(vec![
            ("s.go", b"package hello\n"),
            ("\u{17F}.go", b"package evil\n"),
        ]),
        hostile(vec![("sub/go.mod", b"module example.com/hello/sub\n")]),
        hostile(vec![("x", b"file"), ("x/y.go", b"package y\n")]),
    ];
    let mut bad = Vec::new();
    for z in &bad_zips {
        bad.push(Upstream::start(
            vec![(zip_path, Reply::Body(z.clone()))],
            Some(c.root().to_path_buf()),
        ));
    }
    let good = Upstream::start(vec![], Some(c.root().to_path_buf()));

    // Alone, a hostile upstream yields 502 and leaves nothing in the cache.
    let (p, cache) = proxy_over(&[&bad[0].url], &[]).await;
    let r = p.get(zip_path).await;
    assert_eq!(r.status(), 502, "{}", r.text().await.unwrap());
    assert!(!cache.path().join("download").join(&zip_path[1..]).exists());
    assert!(common::tmp_files(cache.path()).is_empty());

    // In front of a good one, each is tried once, counted invalid, and skipped.
    let before: Vec<u64> = bad.iter().map(|u| u.hits(zip_path)).collect();
    let mut urls: Vec<&str> = bad.iter().map(|u| u.url.as_str()).collect();
    urls.push(&good.url);
    let (p, cache) = proxy_over(&urls, &[]).await;
    let r = p.get(zip_path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), zip);
    assert_eq!(good.hits(zip_path), 1);
    for (u, before) in bad.iter().zip(&before) {
        assert_eq!(u.hits(zip_path), before + 1, "{}", u.url);
        let invalid = p
            .metric(&format!(
                r#"modfleet_proxy_upstream_requests_total{{upstream="{}",outcome="invalid"}}"#,
                u.url
            ))
            .await;
        assert_eq!(invalid, 1.0, "{}", u.url);
    }
    let cached = cache.path().join("download").join(&zip_path[1..]);
    wait_committed(&cached).await;
    let cached = std::fs::read(cached).unwrap();
    assert_eq!(cached, zip, "the good upstream's zip is what is cached");
    // Served from the cache from now on: no upstream is asked again.
    let r = p.get(zip_path).await;
    assert_eq!(r.bytes().await.unwrap(), zip);
    assert_eq!(good.hits(zip_path), 1);
    assert!(
        bad.iter()
            .zip(&before)
            .all(|(u, b)| u.hits(zip_path) == b + 1)
    );
    assert!(common::tmp_files(cache.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_cause_exactly_one_upstream_request() {
    let c = Corpus::new();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    c.add(MODULE, "v1.2.0", None, &[("blob.bin", &big)]);
    let zip_path = "/example.com/hello/@v/v1.2.0.zip";
    let zip = c.read(&zip_path[1..]);
    let (open, gate) = tokio::sync::watch::channel(false);
    let up = Upstream::start(
        vec![(zip_path, Reply::Gated(zip.clone(), gate))],
        Some(c.root().to_path_buf()),
    );
    let (p, _cache) = proxy_over(&[&up.url], &[]).await;
    let url = format!("{}{zip_path}", p.url);
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { reqwest::get(url).await.unwrap().bytes().await.unwrap() })
        })
        .collect();
    wait_for(
        "49 requests to join the first one",
        Duration::from_secs(20),
        || async { p.metric("modfleet_proxy_coalesced_waiters_total").await == 49.0 },
    )
    .await;
    open.send(true).unwrap();
    for c in clients {
        assert_eq!(c.await.unwrap(), zip);
    }
    assert_eq!(up.hits(zip_path), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_are_refreshed_after_the_ttl_and_served_stale_when_upstreams_fail() {
    let c = corpus();
    let up = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let no_swr = ["--list-ttl", "1ms", "--stale-while-revalidate", "0s"];
    let (mut p, cache) = proxy_over(&[&up.url], &no_swr).await;
    assert_eq!(
        p.get("/example.com/hello/@v/list")
            .await
            .text()
            .await
            .unwrap(),
        "v1.0.0\n"
    );
    c.add(MODULE, "v1.1.0", None, &[]);
    assert_eq!(
        p.get("/example.com/hello/@v/list")
            .await
            .text()
            .await
            .unwrap(),
        "v1.0.0\nv1.1.0\n"
    );
    assert_eq!(up.hits("/example.com/hello/@v/list"), 2);
    // Committed just after the answer (which does not wait for the fsync).
    let cached = cache.path().join("download/example.com/hello/@v/list");
    wait_for(
        "the refreshed list committed",
        Duration::from_secs(20),
        || async { std::fs::read(&cached).is_ok_and(|b| b == b"v1.0.0\nv1.1.0\n") },
    )
    .await;

    // Upstream down: the cached list is served with an Age instead of an error.
    let down = Upstream::start(vec![("*", Reply::Status(503, "down"))], None);
    drop(p);
    p = Proxy::start(
        cache.path(),
        &["--upstream", &down.url, "--list-ttl", "1ms"],
    );
    let r = p.get("/example.com/hello/@v/list").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("age"));
    assert_eq!(r.text().await.unwrap(), "v1.0.0\nv1.1.0\n");
    assert_eq!(
        p.metric(r#"modfleet_proxy_requests_total{route="list",cache="stale"}"#)
            .await,
        1.0
    );
    // Nothing cached for it: the outage is a 502.
    assert_eq!(p.get("/example.com/other/@v/list").await.status(), 502);
}

#[tokio::test(flavor = "multi_thread")]
async fn sumdb_is_proxied_through_upstreams_then_direct() {
    let lookup = "/sumdb/sum.golang.org/lookup/example.com/hello@v1.0.0";
    let tile = "/sumdb/sum.golang.org/tile/8/0/001";
    let via_proxy = Upstream::start(
        vec![
            (
                lookup,
                Reply::Body(b"42\nexample.com/hello v1.0.0 h1:x=\n".to_vec()),
            ),
            (tile, Reply::Body(vec![7; 8192])),
        ],
        None,
    );
    let direct = Upstream::start(
        vec![(
            "/latest",
            Reply::Body(b"go.sum database tree\n1\nx=\n".to_vec()),
        )],
        None,
    );
    let sumdb = format!("sum.golang.org={}", direct.url);
    let (p, _cache) = proxy_over(&[&via_proxy.url], &["--sumdb", &sumdb]).await;

    let r = p.get("/sumdb/sum.golang.org/supported").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        p.get("/sumdb/sum.evil.example/supported").await.status(),
        404
    );
    assert_eq!(p.get("/sumdb/sum.evil.example/latest").await.status(), 404);

    let r = p.get(lookup).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("h1:x="));
    let r = p.get("/sumdb/sum.golang.org/latest").await;
    assert_eq!(r.status(), 200, "falls back to the direct URL");
    assert!(r.text().await.unwrap().starts_with("go.sum database tree"));
    assert_eq!(via_proxy.hits("/sumdb/sum.golang.org/latest"), 1);
    assert_eq!(direct.hits("/latest"), 1);

    for _ in 0..3 {
        let r = p.get(tile).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=604800, immutable"
        );
    }
    assert_eq!(via_proxy.hits(tile), 1, "full tiles are cached forever");
}

#[tokio::test(flavor = "multi_thread")]
async fn checksum_lookups_of_no_sum_modules_never_leave_the_proxy() {
    let up = Upstream::start(vec![("*", Reply::Body(b"1\nx\n".to_vec()))], None);
    let (p, _cache) = proxy_over(&[&up.url], &["--no-sum", "corp.example.com/*"]).await;
    let private = "/sumdb/sum.golang.org/lookup/corp.example.com/secret@v1.0.0";
    let r = p.get(private).await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("GONOSUMDB"));
    assert_eq!(up.total_hits(), 0, "the private path was not sent anywhere");
    let public = "/sumdb/sum.golang.org/lookup/example.com/public@v1.0.0";
    assert_eq!(p.get(public).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn excluded_modules_are_refused_with_403() {
    let c = corpus();
    let up = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let (p, _cache) = proxy_over(&[&up.url], &["--exclude", "example.com/*"]).await;
    let r = p.get("/example.com/hello/@v/list").await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("excluded"));
    assert_eq!(up.total_hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_stays_under_its_bound() {
    let c = Corpus::new();
    for minor in 0..6 {
        c.add(
            MODULE,
            &format!("v1.{minor}.0"),
            None,
            &[("blob", &vec![minor as u8; 100_000])],
        );
    }
    let up = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let (p, cache) = proxy_over(&[&up.url], &["--cache-max-bytes", "350000"]).await;
    for minor in 0..6 {
        let path = format!("/example.com/hello/@v/v1.{minor}.0.zip");
        assert_eq!(
            p.get(&path).await.bytes().await.unwrap(),
            c.read(&path[1..])
        );
    }
    // Evictions follow the commits, which follow the answers.
    wait_for("three evictions", Duration::from_secs(20), || async {
        p.metric("modfleet_proxy_cache_evictions_total").await >= 3.0
    })
    .await;
    wait_committed(
        &cache
            .path()
            .join("download/example.com/hello/@v/v1.5.0.zip"),
    )
    .await;
    assert!(p.metric("modfleet_proxy_cache_bytes").await <= 350_000.0);
    let on_disk: u64 = walk_sizes(&cache.path().join("download"));
    assert!(on_disk <= 350_000, "{on_disk} bytes on disk");
}

fn walk_sizes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk_sizes(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}
