//! The upstream layer under failure: breakers, probes, hedging, retries, weighted selection,
//! negative caching and stale-while-revalidate, against the real proxy binary and in-process
//! fake upstreams.

mod common;

use std::time::{Duration, Instant};

use common::{
    Proxy, Reply, Upstream, start_with_config, status_upstream, wait_committed, wait_for,
};

const LIST: &str = "/example.com/m/@v/list";

#[tokio::test(flavor = "multi_thread")]
async fn the_breaker_opens_and_then_fails_fast() {
    let flaky = Upstream::start(vec![("*", Reply::Status(500, "boom"))], None);
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_config(
        &dir,
        &format!(
            "upstreams:\n  - url: {}\nbreaker:\n  failures: 3\n  openFor: 1h\nretry:\n  attempts: 1\nhealthCheck:\n  interval: 1h\nstaleWhileRevalidate: 0s\n",
            flaky.url
        ),
    );
    for i in 0..3 {
        assert_eq!(
            p.get(&format!("/example.com/m{i}/@v/list")).await.status(),
            502
        );
    }
    let s = p.status().await;
    assert_eq!(status_upstream(&s, &flaky.url)["breaker"], "open", "{s}");
    assert_eq!(status_upstream(&s, &flaky.url)["healthy"], false);
    assert_eq!(
        p.metric(&format!(
            r#"modfleet_proxy_upstream_breaker_state{{upstream="{}"}}"#,
            flaky.url
        ))
        .await,
        2.0
    );

    // Open: fail fast, without asking the upstream, and still never 404.
    let before = flaky.total_hits();
    let r = p.get("/example.com/other/@v/list").await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains("circuit breaker open"), "{text}");
    assert_eq!(flaky.total_hits(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn half_open_trial_closes_the_breaker_when_the_upstream_recovers() {
    // Fails three times (opening the breaker), then answers.
    let up = Upstream::start(
        vec![(LIST, Reply::FailFirst(3, 503, b"v1.0.0\n".to_vec()))],
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_config(
        &dir,
        &format!(
            "upstreams:\n  - url: {}\nbreaker:\n  failures: 3\n  openFor: 200ms\nretry:\n  attempts: 1\nhealthCheck:\n  interval: 1h\nlistTtl: 1ms\nstaleWhileRevalidate: 0s\nnegativeTtl: 0s\n",
            up.url
        ),
    );
    for _ in 0..3 {
        assert_eq!(p.get(LIST).await.status(), 502);
    }
    assert_eq!(
        status_upstream(&p.status().await, &up.url)["breaker"],
        "open"
    );
    // Until openFor has passed, requests fail fast; then the trial succeeds and closes it.
    wait_for("a successful trial", Duration::from_secs(10), || async {
        p.get(LIST).await.status() == 200
    })
    .await;
    assert_eq!(
        up.hits(LIST),
        4,
        "only the trial reached the upstream after it opened"
    );
    assert_eq!(
        status_upstream(&p.status().await, &up.url)["breaker"],
        "closed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_requests_opens_the_breaker_for_retry_after() {
    let throttled = Upstream::start(vec![("*", Reply::Throttle(3600))], None);
    let backup = Upstream::start(vec![("*", Reply::Body(b"v1.0.0\n".to_vec()))], None);
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_config(
        &dir,
        &format!(
            "upstreams:\n  - url: {}\n  - url: {}\nbreaker:\n  failures: 5\n  openFor: 1s\nhealthCheck:\n  interval: 1h\n",
            throttled.url, backup.url
        ),
    );
    assert_eq!(p.get("/example.com/a/@v/list").await.status(), 200);
    assert_eq!(
        status_upstream(&p.status().await, &throttled.url)["breaker"],
        "open"
    );
    for i in 0..5 {
        assert_eq!(
            p.get(&format!("/example.com/b{i}/@v/list")).await.status(),
            200
        );
    }
    assert_eq!(throttled.total_hits(), 1, "Retry-After is honoured");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_upstream_is_hedged_and_the_fast_answer_wins() {
    let (_never, gate) = tokio::sync::watch::channel(false);
    let slow = Upstream::start(vec![("*", Reply::Gated(b"v9.9.9\n".to_vec(), gate))], None);
    let fast = Upstream::start(vec![("*", Reply::Body(b"v1.0.0\n".to_vec()))], None);
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_config(
        &dir,
        &format!(
            "upstreams:\n  - url: {}\n    timeout: 30s\n  - url: {}\nhedgeDelay: 100ms\nhealthCheck:\n  interval: 1h\n",
            slow.url, fast.url
        ),
    );
    let started = Instant::now();
    let r = p.get(LIST).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "v1.0.0\n");
    assert!(
        took < Duration::from_secs(5),
        "answered by the hedge in {took:?}, not after the slow upstream's 30s timeout"
    );
    assert!(
        took >= Duration::from_millis(100),
        "the hedge waited for the delay: {took:?}"
    );
    assert_eq!(slow.hits(LIST), 1);
    assert_eq!(fast.hits(LIST), 1);
    assert_eq!(
        p.metric(&format!(
            r#"modfleet_proxy_upstream_hedges_total{{upstream="{}"}}"#,
            fast.url
        ))
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_pass_is_retried_with_backoff() {
    let up = Upstream::start(
        vec![(LIST, Reply::FailFirst(1, 502, b"v1.0.0\n".to_vec()))],
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_config(
        &dir,
        &format!(
            "upstreams:\n  - url: {}\nretry:\n  attempts: 3\n  backoff: 50ms\nhealthCheck:\n  interval: 1h\n",
            up.url
        ),
    );
    let r = p.get(LIST).await;
    assert_eq!(r.status(), 200);
    assert_eq!(up.hits(LIST), 2);
    assert_eq!(p.metric("modfleet_proxy_upstream_retries_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn equal_priorities_share_traffic_by_weight() {
    let heavy = Upstream::start(vec![("*", Reply::Body(b"v1.0.0\n".to_vec()))], None);
    let light = Upstream::start(vec![("*", Reply::Body(b"v1.0.0\n".to_vec()))], None);
    let backup = Upstream::start(vec![("*", Reply::Body(b"v1.0.0\n".to_vec()))], None);
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_config(
        &dir,
        &format!(
            "upstreams:\n  - url: {}\n    priority: 0\n    weight: 3\n  - url: {}\n    priority: 0\n    weight: 1\n  - url: {}\n    priority: 1\nhedgeDelay: off\nhealthCheck:\n  interval: 1h\n",
            heavy.url, light.url, backup.url
        ),
    );
    let n = 400;
    for i in 0..n {
        assert_eq!(
            p.get(&format!("/example.com/w{i}/@v/list")).await.status(),
            200
        );
    }
    let (h, l) = (heavy.total_hits(), light.total_hits());
    assert_eq!(h + l, n, "every request went to priority 0");
    assert_eq!(backup.total_hits(), 0);
    let ratio = h as f64 / l as f64;
    assert!((2.0..5.0).contains(&ratio), "3:1 weights gave {h}:{l}");
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_probes_move_an_upstream_to_the_end_of_the_plan() {
    let sick = Upstream::start(
        vec![
            ("/", Reply::Status(503, "down")),
            ("*", Reply::Body(b"v0.0.1\n".to_vec())),
        ],
        None,
    );
    let well = Upstream::start(vec![("*", Reply::Body(b"v1.0.0\n".to_vec()))], None);
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_config(
        &dir,
        &format!(
            "upstreams:\n  - url: {}\n  - url: {}\nhealthCheck:\n  interval: 50ms\n  timeout: 1s\n",
            sick.url, well.url
        ),
    );
    wait_for(
        "the probe to mark the first upstream down",
        Duration::from_secs(10),
        || async {
            status_upstream(&p.status().await, &sick.url)["probe"] == "failing"
                && status_upstream(&p.status().await, &sick.url)["healthy"] == false
        },
    )
    .await;
    let s = p.status().await;
    assert!(
        status_upstream(&s, &sick.url)["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("503"),
        "{s}"
    );
    assert_eq!(s["upstreamsHealthy"], 1);
    assert_eq!(
        p.get(LIST).await.text().await.unwrap(),
        "v1.0.0\n",
        "the healthy upstream answered first"
    );
    assert_eq!(sick.hits(LIST), 0);
    assert_eq!(
        p.metric(&format!(
            r#"modfleet_proxy_upstream_healthy{{upstream="{}"}}"#,
            sick.url
        ))
        .await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn not_found_is_remembered_for_the_negative_ttl() {
    let up = Upstream::start(vec![], None);
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_config(
        &dir,
        &format!(
            "upstreams:\n  - url: {}\nnegativeTtl: 1h\nhealthCheck:\n  interval: 1h\n",
            up.url
        ),
    );
    let path = "/example.com/missing/@v/v1.0.0.info";
    for _ in 0..20 {
        assert_eq!(p.get(path).await.status(), 404);
    }
    assert_eq!(up.hits(path), 1);
    assert_eq!(
        p.metric(r#"modfleet_proxy_requests_total{route="info",status="404",cache="negative"}"#)
            .await,
        19.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_lists_are_served_at_once_and_refreshed_behind() {
    let (open, gate) = tokio::sync::watch::channel(false);
    // First answer v1.0.0; later answers wait for the gate and say v1.1.0.
    let first = Upstream::start(vec![(LIST, Reply::Body(b"v1.0.0\n".to_vec()))], None);
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_config(
        &dir,
        &format!(
            "upstreams:\n  - url: {}\nlistTtl: 1ms\nstaleWhileRevalidate: 1h\nhealthCheck:\n  interval: 1h\n",
            first.url
        ),
    );
    assert_eq!(p.get(LIST).await.text().await.unwrap(), "v1.0.0\n");
    wait_committed(&dir.path().join("cache/download").join(&LIST[1..])).await;
    drop(p);
    let slow = Upstream::start(
        vec![(LIST, Reply::Gated(b"v1.0.0\nv1.1.0\n".to_vec(), gate))],
        None,
    );
    let p = Proxy::start(
        &dir.path().join("cache"),
        &[
            "--upstream",
            &slow.url,
            "--list-ttl",
            "1ms",
            "--stale-while-revalidate",
            "1h",
        ],
    );
    // The refresh is held at the gate, yet the client is answered at once from the cache.
    let r = p.get(LIST).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("age"));
    assert_eq!(r.text().await.unwrap(), "v1.0.0\n");
    wait_for("a refresh to start", Duration::from_secs(10), || async {
        slow.hits(LIST) == 1
    })
    .await;
    open.send(true).unwrap();
    wait_for(
        "the background refresh to land",
        Duration::from_secs(10),
        || async { p.get(LIST).await.text().await.unwrap() == "v1.0.0\nv1.1.0\n" },
    )
    .await;
}

/// A zip miss asks for the module's `.mod` and its zip at once, so a slow upstream's wait is
/// paid once. The upstream answers the `.mod` only after the zip request has arrived: a proxy
/// that fetched the `.mod` first would never ask for the zip, and this test would time out.
/// The zip is still checked against that `.mod` (a zip whose go.mod differs is refused).
#[tokio::test(flavor = "multi_thread")]
async fn a_zip_miss_fetches_its_mod_and_zip_at_once() {
    const MODULE: &str = "example.com/both";
    let c = common::Corpus::new();
    let go_mod = format!("module {MODULE}\n\ngo 1.21\n");
    c.add(MODULE, "v1.0.0", Some(&go_mod), &[("a.go", b"package a\n")]);
    let (mod_path, zip_path) = (
        format!("/{MODULE}/@v/v1.0.0.mod"),
        format!("/{MODULE}/@v/v1.0.0.zip"),
    );
    for (served_mod, want) in [(go_mod.clone(), 200), (format!("module {MODULE}\n"), 502)] {
        let (open, gate) = tokio::sync::watch::channel(false);
        let up = Upstream::start(
            vec![(&mod_path, Reply::Gated(served_mod.into_bytes(), gate))],
            Some(c.root().to_path_buf()),
        );
        let dir = tempfile::tempdir().unwrap();
        let p = start_with_config(
            &dir,
            &format!(
                "upstreams:\n  - url: {}\nhedgeDelay: 'off'\nretry:\n  attempts: 1\n",
                up.url
            ),
        );
        let url = format!("{}{zip_path}", p.url);
        let client = tokio::spawn(async move { reqwest::get(url).await.unwrap() });
        // Both asked while the .mod is held: the zip did not wait for it. (The two requests
        // go out together, so either may reach the upstream first.)
        wait_for(
            "the zip and the .mod requests while the .mod is held",
            Duration::from_secs(20),
            || async { up.hits(&zip_path) == 1 && up.hits(&mod_path) == 1 },
        )
        .await;
        assert!(!client.is_finished(), "answered before the .mod arrived");
        open.send(true).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(20), client)
            .await
            .expect("the zip is answered once the .mod arrives")
            .unwrap();
        assert_eq!(r.status(), want, "{}", r.text().await.unwrap());
        let cached = dir.path().join("cache/download").join(&zip_path[1..]);
        if want == 200 {
            wait_committed(&cached).await;
        } else {
            assert!(!cached.exists(), "{}", cached.display());
        }
    }
}
