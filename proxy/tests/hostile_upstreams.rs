//! Upstreams that misbehave, on purpose or through a bad network: bodies that crawl, error
//! bodies that never end, redirects to anywhere. The real proxy binary against in-process fake
//! upstreams on loopback; each test fails on a proxy without the defence it names.

mod common;

use std::time::Duration;

use common::{Corpus, Proxy, Reply, Upstream, config_file, wait_for};

const MODULE: &str = "example.com/hostile";
const VERSION: &str = "v1.0.0";

fn path(ext: &str) -> String {
    format!("/{MODULE}/@v/{VERSION}.{ext}")
}

/// The same path relative to the corpus root.
fn rel(ext: &str) -> String {
    path(ext).trim_start_matches('/').to_string()
}

/// A corpus with one module whose zip holds `size` incompressible bytes.
fn corpus(size: usize) -> Corpus {
    let c = Corpus::new();
    let body = common::noise(7, size);
    c.add(
        MODULE,
        VERSION,
        Some(&format!("module {MODULE}\n")),
        &[("big.bin", body.as_slice())],
    );
    c
}

/// The proxy over `upstreams` in priority order, each with its own settings (`timeout: 30s`;
/// several joined by `; `), and `settings` (YAML lines); health probes out of the way.
fn over(dir: &tempfile::TempDir, upstreams: &[(&Upstream, &str)], settings: &str) -> Proxy {
    let mut yaml = String::from("upstreams:\n");
    for (up, extra) in upstreams {
        yaml.push_str(&format!("  - url: {}\n", up.url));
        for setting in extra.split("; ").filter(|s| !s.is_empty()) {
            yaml.push_str(&format!("    {setting}\n"));
        }
    }
    yaml.push_str(settings);
    yaml.push_str("healthCheck:\n  interval: 1h\n");
    let cfg = config_file(dir.path(), &yaml);
    Proxy::start(
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap()],
    )
}

/// A client that gives up long before the proxy's request deadline: a request still waiting
/// when it gives up is a proxy that waits for a bad upstream instead of moving on.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Item 1: the hedge delay is a wait for the answer's headers, not for the whole body. A zip
/// that streams for two seconds from an upstream that answered at once is fetched once, by
/// all 24 waiters together, even though the 1 s hedge delay passes mid-body. (Fixed, not
/// `auto`: `auto` is now bounded by the other upstream's outlier threshold, as short as
/// 100 ms, which a loaded machine's headers can miss; that is hedging before headers, which
/// is right, and not what this test is about.)
#[tokio::test(flavor = "multi_thread")]
async fn a_large_body_that_takes_a_while_is_not_hedged() {
    let c = corpus(6 << 20);
    let zip = c.read(&rel("zip"));
    let rate = zip.len() as u64 / 2;
    let primary = Upstream::start(
        vec![(&path("zip"), Reply::Paced(zip.clone(), rate))],
        Some(c.root().to_path_buf()),
    );
    let secondary = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let p = over(
        &dir,
        &[(&primary, ""), (&secondary, "")],
        "hedgeDelay: 1s\n",
    );
    let http = client();
    let clients = (0..24).map(|_| {
        let url = format!("{}{}", p.url, path("zip"));
        let http = http.clone();
        async move { http.get(url).send().await.unwrap().bytes().await.unwrap() }
    });
    for body in futures::future::join_all(clients).await {
        assert_eq!(body.len(), zip.len());
        assert!(body == zip, "a waiter got other bytes");
    }
    assert_eq!(primary.hits(&path("zip")), 1);
    assert_eq!(
        secondary.hits(&path("zip")),
        0,
        "the zip was downloaded twice: hedged although the primary had answered"
    );
}

/// Item 1, the other side: a body trickling a byte a second never trips the per-read idle
/// timeout; it gives way to the healthy next upstream (a hedge) instead of holding the client
/// until the request deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_trickling_body_gives_way_to_the_next_upstream() {
    let c = corpus(4096);
    let primary = Upstream::start(
        vec![
            (&path("mod"), Reply::Paced(c.read(&rel("mod")), 1)),
            (&path("zip"), Reply::Paced(c.read(&rel("zip")), 1)),
        ],
        Some(c.root().to_path_buf()),
    );
    let secondary = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let p = over(
        &dir,
        &[(&primary, "timeout: 30s"), (&secondary, "")],
        "hedgeDelay: 200ms\nrequestDeadline: 10m\n",
    );
    let http = client();
    for ext in ["mod", "zip"] {
        let r = http
            .get(format!("{}{}", p.url, path(ext)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{ext}");
        assert_eq!(r.bytes().await.unwrap(), c.read(&rel(ext)), "{ext}");
        assert_eq!(secondary.hits(&path(ext)), 1, "{ext}: the next upstream");
    }
    let hedges = p
        .metric(&format!(
            r#"modfleet_proxy_upstream_hedges_total{{upstream="{}"}}"#,
            secondary.url
        ))
        .await;
    assert!(hedges >= 2.0, "hedges: {hedges}");
}

/// Item 1 without hedging: the low-speed limit fails an attempt whose body crawls, so the next
/// upstream is asked rather than the client waiting out the request deadline.
#[tokio::test(flavor = "multi_thread")]
async fn without_hedging_the_low_speed_limit_moves_on() {
    let c = corpus(4096);
    let primary = Upstream::start(
        vec![(&path("mod"), Reply::Paced(c.read(&rel("mod")), 1))],
        Some(c.root().to_path_buf()),
    );
    let secondary = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let p = over(
        &dir,
        &[(&primary, "timeout: 30s"), (&secondary, "")],
        "hedgeDelay: off\nrequestDeadline: 10m\n",
    );
    let r = client()
        .get(format!("{}{}", p.url, path("mod")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), c.read(&rel("mod")));
    assert_eq!(secondary.hits(&path("mod")), 1);
    let s = p.status().await;
    let primary_status = s["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["url"] == primary.url)
        .unwrap();
    let last = primary_status["last_error"]["message"].as_str().unwrap();
    assert!(last.contains("low-speed limit"), "{last}");
}

/// Item 5: an error body is read only as far as its first line needs. An upstream answering
/// 404 with a body that never ends neither grows the proxy nor holds the request: the next
/// upstream answers, and the endless body was abandoned after a few hundred KiB (what the
/// sockets buffer), not read for the upstream's whole timeout.
#[tokio::test(flavor = "multi_thread")]
async fn an_endless_error_body_is_not_read() {
    let c = corpus(4096);
    let primary = Upstream::start(vec![("*", Reply::Endless(404))], None);
    let secondary = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let p = over(&dir, &[(&primary, "timeout: 20s"), (&secondary, "")], "");
    let r = client()
        .get(format!("{}{}", p.url, path("mod")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for(
        "the endless body's connection to be closed by the proxy",
        Duration::from_secs(30),
        || async { primary.written(&path("mod")).is_some() },
    )
    .await;
    let written = primary.written(&path("mod")).unwrap();
    assert!(
        written < 32 << 20,
        "the proxy read {written} bytes of an error body"
    );
}

/// Item 12: redirects are followed (mirrors send zips to storage), to http(s) only and at
/// most five times; a longer chain or another scheme is a failed attempt, and the next
/// upstream answers.
#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_followed_within_a_policy() {
    let c = corpus(4096);
    let storage = Upstream::start(vec![], Some(c.root().to_path_buf()));
    // A chain of five hops to storage is fine.
    let mut hops: Vec<Upstream> = Vec::new();
    let mut target = format!("{}{}", storage.url, path("zip"));
    for _ in 0..4 {
        let hop = Upstream::start(vec![("*", Reply::Redirect(target.clone()))], None);
        target = format!("{}{}", hop.url, path("zip"));
        hops.push(hop);
    }
    let mirror = Upstream::start(
        vec![(&path("zip"), Reply::Redirect(target))],
        Some(c.root().to_path_buf()),
    );
    let dir = tempfile::tempdir().unwrap();
    let p = over(&dir, &[(&mirror, "")], "");
    let r = client()
        .get(format!("{}{}", p.url, path("zip")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), c.read(&rel("zip")));
    assert_eq!(storage.hits(&path("zip")), 1);

    // Seven hops, or a redirect to file:, are refused; the next upstream answers.
    let mut target = format!("{}{}", storage.url, path("info"));
    for _ in 0..6 {
        let hop = Upstream::start(vec![("*", Reply::Redirect(target.clone()))], None);
        target = format!("{}{}", hop.url, path("info"));
        hops.push(hop);
    }
    let looping = Upstream::start(vec![("*", Reply::Redirect(target))], None);
    let to_file = Upstream::start(
        vec![("*", Reply::Redirect("file:///etc/passwd".into()))],
        None,
    );
    let fallback = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let p = over(
        &dir,
        &[(&looping, ""), (&to_file, ""), (&fallback, "")],
        "hedgeDelay: off\nretry:\n  attempts: 1\n",
    );
    let r = client()
        .get(format!("{}{}", p.url, path("info")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(fallback.hits(&path("info")), 1);
    assert_eq!(
        storage.hits(&path("info")),
        0,
        "a seven-hop chain was followed to its end"
    );
    let s = p.status().await;
    let errors: Vec<String> = s["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["last_error"]["message"].as_str().map(str::to_string))
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("redirect")),
        "no redirect error in {errors:?}"
    );
}

/// Item 3: a `.mod` is the module's go.mod or nothing. A captive-portal page, a go.mod naming
/// another module, or one cut short inside a block is a failed attempt: the next upstream's
/// `.mod` is served and cached.
#[tokio::test(flavor = "multi_thread")]
async fn a_mod_that_is_not_the_modules_go_mod_is_refused() {
    let c = corpus(4096);
    let bad_mods: [&[u8]; 3] = [
        b"<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>\n",
        b"module example.com/somebody-else\n",
        b"module example.com/hostile\n\nrequire (\n\texample.com/dep v1.0.0\n",
    ];
    for bad in bad_mods {
        let primary = Upstream::start(vec![(&path("mod"), Reply::Body(bad.to_vec()))], None);
        let secondary = Upstream::start(vec![], Some(c.root().to_path_buf()));
        let dir = tempfile::tempdir().unwrap();
        let p = over(&dir, &[(&primary, ""), (&secondary, "")], "");
        let r = p.get(&path("mod")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), c.read(&rel("mod")));
        assert_eq!(secondary.hits(&path("mod")), 1);
    }
}

/// Item 3, the other half: when a zip and the cached `.mod` disagree, the `.mod` is as suspect
/// as the zip. Here the primary served a go.mod cut short at a line (its Content-Length lied),
/// which parses; the zip comes from the secondary, whose own `.mod` matches its zip: that pair
/// wins and replaces the cached `.mod`, instead of the module answering 502 for ever.
#[tokio::test(flavor = "multi_thread")]
async fn a_zip_and_a_bad_cached_mod_resolve_to_the_consistent_pair() {
    let full = format!("module {MODULE}\n\nrequire example.com/dep v1.2.3\n");
    let c = Corpus::new();
    c.add(MODULE, VERSION, Some(&full), &[("h.go", b"package h\n")]);
    let short = format!("module {MODULE}\n");
    let primary = Upstream::start(
        vec![
            (&path("mod"), Reply::Body(short.clone().into_bytes())),
            (&path("zip"), Reply::Status(404, "not here")),
        ],
        None,
    );
    let secondary = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let p = over(&dir, &[(&primary, ""), (&secondary, "")], "");
    assert_eq!(p.get(&path("mod")).await.text().await.unwrap(), short);
    let r = p.get(&path("zip")).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        p.get(&path("mod")).await.text().await.unwrap(),
        full,
        "the cached .mod was replaced by the one that matches the zip"
    );
}

/// Item 11: an HTML page as `@v/list` is not an empty list, and an `@latest` that is not a
/// version `.info` is not an answer: both are failed attempts, and the next upstream answers.
#[tokio::test(flavor = "multi_thread")]
async fn a_page_is_not_a_list_or_a_latest() {
    let c = corpus(4096);
    let page = b"<!DOCTYPE html>\n<html><body>Sign in</body></html>\n".to_vec();
    let primary = Upstream::start(
        vec![
            (&format!("/{MODULE}/@v/list"), Reply::Body(page.clone())),
            (&format!("/{MODULE}/@latest"), Reply::Body(page)),
        ],
        None,
    );
    let secondary = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let p = over(&dir, &[(&primary, ""), (&secondary, "")], "");
    let r = p.get(&format!("/{MODULE}/@v/list")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), format!("{VERSION}\n"));
    let r = p.get(&format!("/{MODULE}/@latest")).await;
    assert_eq!(r.status(), 200);
    let latest: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(latest["Version"], VERSION);
    assert_eq!(secondary.hits(&format!("/{MODULE}/@v/list")), 1);
    assert_eq!(secondary.hits(&format!("/{MODULE}/@latest")), 1);
}
