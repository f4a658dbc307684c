//! The chaos experiments of `chaos/` (Chaos Mesh in a real cluster), run here for real: a
//! proxy, two upstream origins and a client in network namespaces joined by veth pairs; packet
//! loss (nftables), bandwidth limits (tbf) and partitions (links down) injected in the kernel,
//! and the proxy killed with SIGKILL. This kernel has no netem, so the 2s ± 200ms delay is
//! injected by the primary origin before each answer (see common/netns.rs).
//!
//! Like the Chaos Mesh Workflow, the experiments run in sequence on one fleet member, each with
//! its own assertions about what a client sees. Needs root and iproute2 (tc).

mod common;

use std::time::{Duration, Instant};

use common::netns::{Lab, Link, PROXY_IP, UPSTREAM1_IP, UPSTREAM2_IP};
use common::{
    Corpus, Fault, PROXY_BIN, Proxy, Upstream, config_file, noise, sha256, tmp_files, wait_for,
};

const SMALL: usize = 30;
const BIG: usize = 4;
const HEDGE_MS: u64 = 300;

fn small(i: usize) -> String {
    format!("example.test/chaos{i}")
}

fn big(i: usize) -> String {
    format!("example.test/big{i}")
}

fn artifacts(module: &str) -> [String; 3] {
    ["info", "mod", "zip"].map(|ext| format!("{module}/@v/v1.0.0.{ext}"))
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * 0.99).round() as usize]
}

/// GETs `rel` from the proxy: status, latency, body checked against the corpus on 200.
async fn fetch(
    client: &reqwest::Client,
    proxy: &Proxy,
    corpus: &Corpus,
    rel: &str,
) -> (u16, Duration) {
    let started = Instant::now();
    let r = client
        .get(format!("{}/{rel}", proxy.url))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    let took = started.elapsed();
    if status == 200 && !rel.ends_with("/list") {
        assert_eq!(
            sha256(&body),
            sha256(&corpus.read(rel)),
            "{rel}: wrong bytes"
        );
    }
    (status, took)
}

fn breakers(s: &serde_json::Value) -> Vec<String> {
    s["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["breaker"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn chaos_experiments() {
    let lab = Lab::new();
    let corpus = Corpus::new();
    for i in 0..SMALL {
        let m = small(i);
        corpus.add(
            &m,
            "v1.0.0",
            Some(&format!("module {m}\n")),
            &[("data.bin", &noise(i as u32, 20_000))],
        );
    }
    for i in 0..BIG {
        let m = big(i);
        corpus.add(
            &m,
            "v1.0.0",
            Some(&format!("module {m}\n")),
            &[("blob.bin", &noise(100 + i as u32, 2 << 20))],
        );
    }
    let exec = |host: &str| lab.exec(host);
    let dir = tempfile::tempdir().unwrap();
    // Each upstream listens in its own host's namespace, on that host's address.
    let upstream_on = |host: &str, ip: &str| {
        Upstream::builder()
            .dir(corpus.root())
            .netns(&lab.netns(host))
            .bind(format!("{ip}:0").parse().unwrap())
            .start()
    };
    let up1 = upstream_on("up1", UPSTREAM1_IP);
    let up2 = upstream_on("up2", UPSTREAM2_IP);
    let cfg = config_file(
        dir.path(),
        &format!(
            "upstreams:\n  - url: {}\n    timeout: 5s\n  - url: {}\n    timeout: 5s\n\
             hedgeDelay: {HEDGE_MS}ms\nlistTtl: 1s\nstaleWhileRevalidate: 0s\nnegativeTtl: 0s\n\
             breaker:\n  failures: 3\n  openFor: 500ms\nhealthCheck:\n  interval: 200ms\n  timeout: 500ms\n\
             retry:\n  attempts: 2\n  backoff: 100ms\n",
            up1.url, up2.url
        ),
    );
    let cache = dir.path().join("cache");
    let proxy_prefix = exec("proxy");
    let prefix: Vec<&str> = proxy_prefix.iter().map(String::as_str).collect();
    let mut proxy = Proxy::start_in(
        &prefix,
        PROXY_IP,
        &cache,
        &["--config", cfg.to_str().unwrap()],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // Baseline: warm the cache with modules 0..10 and measure the healthy latency.
    let mut baseline = Vec::new();
    for i in 0..10 {
        let list = format!("{}/@v/list", small(i));
        assert_eq!(fetch(&client, &proxy, &corpus, &list).await.0, 200);
        for rel in artifacts(&small(i)) {
            let (status, took) = fetch(&client, &proxy, &corpus, &rel).await;
            assert_eq!(status, 200, "baseline {rel}");
            baseline.push(took);
        }
    }
    let healthy = p99(baseline);
    println!("baseline p99 through the lab: {healthy:?}");

    // 1. NetworkChaos delay: the primary upstream answers 2s ± 200ms late. Hedging sends each
    //    request to the secondary after the hedge delay; no request fails or waits for the
    //    primary.
    up1.set_fault(Fault {
        delay: Duration::from_millis(2000),
        jitter: Duration::from_millis(200),
    });
    let mut delayed = Vec::new();
    for i in 10..20 {
        for rel in artifacts(&small(i)) {
            let (status, took) = fetch(&client, &proxy, &corpus, &rel).await;
            assert_eq!(status, 200, "delay: {rel}");
            delayed.push(took);
        }
    }
    let s = proxy.status().await;
    up1.set_fault(Fault::default());
    assert_eq!(
        s["upstreams"][0]["probe"], "failing",
        "the probe noticed the delay: {s}"
    );
    let bound = Duration::from_millis(HEDGE_MS) + healthy + Duration::from_millis(700);
    let delayed_p99 = p99(delayed);
    println!("delay experiment: client p99 {delayed_p99:?} (bound {bound:?})");
    assert!(
        delayed_p99 < bound,
        "client p99 {delayed_p99:?} over hedge delay + healthy latency + margin ({bound:?})"
    );
    // The first slow requests were hedged; meanwhile the health probes (500ms timeout) found the
    // primary slow and moved it behind the secondary, so later requests went there directly.
    let hedges = proxy.metric("modfleet_proxy_upstream_hedges_total").await;
    assert!(hedges >= 1.0, "{hedges} hedges");
    wait_for(
        "the primary to be healthy again",
        Duration::from_secs(10),
        || async { proxy.status().await["upstreamsHealthy"] == 2 },
    )
    .await;

    // 2. NetworkChaos loss: 30% of the packets to the primary are lost. TCP retransmits,
    //    hedging and retries hide it.
    lab.loss(Link::Upstream1, 30);
    for i in 20..25 {
        for rel in artifacts(&small(i)) {
            assert_eq!(
                fetch(&client, &proxy, &corpus, &rel).await.0,
                200,
                "loss: {rel}"
            );
        }
    }
    lab.clear(Link::Upstream1);

    // 3. NetworkChaos partition: the member is cut off from every upstream. Cached artifacts
    //    are served as ever, expired lists are served stale with an Age, an uncached artifact
    //    is a 502/504 (never a 404), and the breakers open.
    lab.set_link(Link::Upstream1, false);
    lab.set_link(Link::Upstream2, false);
    let list0 = cache.join("download").join(format!("{}/@v/list", small(0)));
    wait_for(
        "the cached lists to expire (listTtl 1s)",
        Duration::from_secs(10),
        || async {
            std::fs::metadata(&list0)
                .unwrap()
                .modified()
                .unwrap()
                .elapsed()
                .unwrap()
                > Duration::from_millis(1100)
        },
    )
    .await;
    for i in 0..10 {
        for rel in artifacts(&small(i)) {
            assert_eq!(
                fetch(&client, &proxy, &corpus, &rel).await.0,
                200,
                "partition, cached: {rel}"
            );
        }
        let r = client
            .get(format!("{}/{}/@v/list", proxy.url, small(i)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "partition: stale list");
        assert!(r.headers().contains_key("age"));
        assert_eq!(r.text().await.unwrap(), "v1.0.0\n");
    }
    let (status, _) = fetch(&client, &proxy, &corpus, &artifacts(&small(25))[0]).await;
    assert!(
        status == 502 || status == 504,
        "partition, uncached: {status}, never 404"
    );
    wait_for("both breakers to open", Duration::from_secs(20), || async {
        let _ = fetch(&client, &proxy, &corpus, &format!("{}/@v/list", small(26))).await;
        breakers(&proxy.status().await) == ["open", "open"]
    })
    .await;
    let s = proxy.status().await;
    assert_eq!(s["upstreamsHealthy"], 0, "{s}");

    // The partition heals: probes pass again and the next request's trial closes the breakers.
    lab.set_link(Link::Upstream1, true);
    lab.set_link(Link::Upstream2, true);
    wait_for(
        "the breakers to close again",
        Duration::from_secs(20),
        || async {
            let _ = fetch(&client, &proxy, &corpus, &artifacts(&small(26))[0]).await;
            let _ = fetch(&client, &proxy, &corpus, &format!("{}/@v/list", small(27))).await;
            let s = proxy.status().await;
            breakers(&s).iter().all(|b| b == "closed") && s["upstreamsHealthy"] == 2
        },
    )
    .await;
    for rel in artifacts(&small(25)) {
        assert_eq!(
            fetch(&client, &proxy, &corpus, &rel).await.0,
            200,
            "healed: {rel}"
        );
    }

    // 4. PodChaos pod-kill: SIGKILL in the middle of downloads (the links are slowed so the
    //    kill lands mid-body). After the restart every artifact is whole.
    lab.rate(Link::Upstream1, "16mbit");
    lab.rate(Link::Upstream2, "16mbit");
    let downloads: Vec<_> = (0..BIG)
        .map(|i| {
            let url = format!("{}/{}", proxy.url, artifacts(&big(i))[2]);
            let client = client.clone();
            tokio::spawn(async move {
                if let Ok(r) = client.get(url).send().await {
                    let _ = r.bytes().await;
                }
            })
        })
        .collect();
    let download = cache.join("download");
    wait_for("a download in flight", Duration::from_secs(30), || async {
        !tmp_files(&download).is_empty()
    })
    .await;
    proxy.kill9();
    for d in downloads {
        let _ = d.await;
    }
    lab.clear(Link::Upstream1);
    lab.clear(Link::Upstream2);
    proxy.restart();
    assert!(
        tmp_files(&download).is_empty(),
        "unfinished downloads are cleaned up at start"
    );
    for i in 0..BIG {
        for rel in artifacts(&big(i)) {
            assert_eq!(
                fetch(&client, &proxy, &corpus, &rel).await.0,
                200,
                "after kill: {rel}"
            );
        }
    }
    let out = std::process::Command::new(PROXY_BIN)
        .arg("verify")
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(proxy);
    drop(up1);
    drop(up2);
}
