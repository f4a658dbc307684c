//! Latency-outlier demotion against the real proxy binary and fake upstreams: a slow primary
//! is moved behind a fast secondary, is then not asked first, and gets its place back after a
//! fast trial once the demotion time is over. No timing assertions beyond generous bounds:
//! what is checked is which upstream was asked, and what `/status` and the metrics say.

mod common;

use std::time::{Duration, Instant};

use common::{Fault, Proxy, Reply, Upstream, start_with_config, status_upstream, wait_for};

/// What each upstream lists, so that an answer tells who gave it.
const PRIMARY: &[u8] = b"v2.0.0\n";
const SECONDARY: &[u8] = b"v1.0.0\n";

fn list(i: usize) -> String {
    format!("/example.com/m{i}/@v/list")
}

async fn demoted(p: &Proxy, url: &str) -> f64 {
    p.metric(&format!(
        r#"modfleet_proxy_upstream_demoted{{upstream="{url}"}}"#
    ))
    .await
}

/// A primary that answers every request after `delay` and a secondary that answers at once.
fn slow_primary_fast_secondary(delay: Duration) -> (Upstream, Upstream) {
    let primary = Upstream::start(vec![("*", Reply::Body(PRIMARY.to_vec()))], None);
    primary.set_fault(Fault {
        delay,
        jitter: Duration::ZERO,
    });
    let secondary = Upstream::start(vec![("*", Reply::Body(SECONDARY.to_vec()))], None);
    (primary, secondary)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_primary_is_demoted_then_restored_after_a_fast_trial() {
    let (primary, secondary) = slow_primary_fast_secondary(Duration::from_secs(5));
    let dir = tempfile::tempdir().unwrap();
    let p = start_with_config(
        &dir,
        &format!(
            "upstreams:\n  - url: {}\n  - url: {}\nhealthCheck:\n  interval: 1h\n  timeout: 30s\n",
            primary.url, secondary.url
        ),
    );
    assert_eq!(demoted(&p, &primary.url).await, 0.0);

    // Learning: each request asks the primary first and is answered by the hedge to the
    // secondary; the primary's dropped attempts say it is slow.
    // (Five dropped attempts are enough; the primary's start-up probe may add a sample.)
    let mut i = 0;
    while demoted(&p, &primary.url).await == 0.0 {
        assert!(
            i < 5,
            "not demoted after {i} requests: {}",
            p.status().await
        );
        let r = p.get(&list(i)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), SECONDARY);
        assert_eq!(primary.hits(&list(i)), 1, "the primary was asked first");
        i += 1;
    }
    let s = p.status().await;
    let d = &status_upstream(&s, &primary.url)["demoted"];
    assert_eq!(d["count"], 1, "{s}");
    assert!(
        d["reason"].as_str().unwrap().contains(&secondary.url),
        "{s}"
    );
    assert!(
        status_upstream(&s, &secondary.url).get("demoted").is_none(),
        "{s}"
    );
    assert_eq!(
        status_upstream(&s, &primary.url)["healthy"],
        true,
        "slow, not down"
    );
    assert_eq!(demoted(&p, &primary.url).await, 1.0);
    assert_eq!(demoted(&p, &secondary.url).await, 0.0);
    assert!(
        p.logs().contains("upstream demoted as a latency outlier"),
        "{}",
        p.logs()
    );

    // Demoted: the secondary is asked first, the primary not at all.
    let started = Instant::now();
    for _ in 0..5 {
        let r = p.get(&list(i)).await;
        assert_eq!(r.bytes().await.unwrap(), SECONDARY);
        assert_eq!(
            primary.hits(&list(i)),
            0,
            "the demoted primary was not asked"
        );
        i += 1;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "five requests took {:?}: one waited for the primary",
        started.elapsed()
    );

    // The primary is fast again: once the demotion time (30s) is over, a trial finds it so
    // and puts it back first.
    primary.set_fault(Fault::default());
    wait_for(
        "a trial to restore the primary",
        Duration::from_secs(90),
        || {
            i += 1;
            let path = list(i);
            let (p, url) = (&p, &primary.url);
            async move {
                assert_eq!(p.get(&path).await.status(), 200);
                let restored = demoted(p, url).await == 0.0;
                if !restored {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                restored
            }
        },
    )
    .await;
    assert!(
        status_upstream(&p.status().await, &primary.url)
            .get("demoted")
            .is_none()
    );
    assert!(p.logs().contains("latency outlier recovered"));
    i += 1;
    let r = p.get(&list(i)).await;
    assert_eq!(
        r.bytes().await.unwrap(),
        PRIMARY,
        "the primary answers first again"
    );
    assert_eq!(secondary.hits(&list(i)), 0);
}

/// Turned off, a slow primary keeps its place: every request asks it first.
#[tokio::test(flavor = "multi_thread")]
async fn with_outlier_latency_off_the_slow_primary_keeps_its_place() {
    for (switch, demote) in [("on", true), ("off", false)] {
        let (primary, secondary) = slow_primary_fast_secondary(Duration::from_millis(400));
        let dir = tempfile::tempdir().unwrap();
        let p = start_with_config(
            &dir,
            &format!(
                "upstreams:\n  - url: {}\n  - url: {}\nhedgeDelay: 'off'\noutlierLatency: {switch}\nhealthCheck:\n  interval: 1h\n  timeout: 30s\n",
                primary.url, secondary.url
            ),
        );
        // Hedging off: each request waits for the primary's answer (an exact 400 ms sample);
        // turned on, five of them (or four and the start-up probe) demote it.
        for i in 0..6 {
            let r = p.get(&list(i)).await.bytes().await.unwrap();
            if !demote {
                assert_eq!(r, PRIMARY);
            }
        }
        let r = p.get(&list(6)).await.bytes().await.unwrap();
        let s = p.status().await;
        assert_eq!(
            status_upstream(&s, &primary.url).get("demoted").is_some(),
            demote,
            "outlierLatency {switch}: {s}"
        );
        assert_eq!(r, if demote { SECONDARY } else { PRIMARY }, "{switch}");
        assert_eq!(primary.hits(&list(6)), u64::from(!demote), "{switch}");
    }
}
