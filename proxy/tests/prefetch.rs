//! Dependency prefetch, against the real proxy binary and the fake upstream: a fetched go.mod's
//! requires are fetched once, in the background, within bounds, never for private or excluded
//! paths, and not at all with `--prefetch off`.

mod common;

use std::time::Duration;

use common::{Corpus, Proxy, Reply, Upstream, wait_committed, wait_for};

const APP: &str = "example.com/app";
const WAIT: Duration = Duration::from_secs(30);

fn mod_path(module: &str) -> String {
    format!("/{}/@v/v1.0.0.mod", common::escape(module))
}

fn add(c: &Corpus, module: &str, go_mod: &str) {
    c.add(module, "v1.0.0", Some(go_mod), &[("a.go", b"package a\n")]);
}

async fn prefetch_metric(p: &Proxy, outcome: &str) -> f64 {
    p.metric(&format!(
        r#"modfleet_proxy_prefetch_total{{outcome="{outcome}"}}"#
    ))
    .await
}

/// The app's go.mod names three public dependencies (single-line and block forms, one
/// `// indirect`), an excluded one, a private (no-sum) one, and two that no client could ask
/// for. The client gets the app's `.mod` while the upstream still holds the dependencies'
/// `.mod` requests (a proxy that waited for its prefetches would hang here); each dependency is
/// fetched once; a client asking for one then hits the cache; a prefetched `.mod`'s own
/// requires wait until a client asks for it (one level per client request).
#[tokio::test(flavor = "multi_thread")]
async fn requires_are_prefetched_once_in_the_background_never_private_ones() {
    let c = Corpus::new();
    let deps = ["example.com/one", "example.com/two", "example.com/Three"];
    add(
        &c,
        APP,
        &format!(
            "module {APP}\n\ngo 1.21\n\nrequire {} v1.0.0\n\nrequire (\n\t\"{}\" v1.0.0 // indirect\n\t\
             {} v1.0.0\n\tcorp.example.com/secret v1.0.0\n\tprivate.example.com/lib v1.0.0\n\t\
             example.com/short v1.0\n\t../../etc/passwd v1.0.0\n)\n",
            deps[0], deps[1], deps[2]
        ),
    );
    add(
        &c,
        deps[0],
        &format!("module {}\n\nrequire example.com/deeper v1.0.0\n", deps[0]),
    );
    for d in &deps[1..] {
        add(&c, d, &format!("module {d}\n"));
    }
    for m in [
        "example.com/deeper",
        "corp.example.com/secret",
        "private.example.com/lib",
    ] {
        add(&c, m, &format!("module {m}\n"));
    }
    let (open, gate) = tokio::sync::watch::channel(false);
    let mut up = Upstream::builder().dir(c.root());
    for d in deps {
        up = up.route(
            &mod_path(d),
            Reply::Gated(c.read(&mod_path(d)[1..]), gate.clone()),
        );
    }
    let up = up.start();
    let cache = tempfile::tempdir().unwrap();
    let p = Proxy::start(
        cache.path(),
        &[
            "--upstream",
            &up.url,
            "--exclude",
            "corp.example.com/*",
            "--no-sum",
            "private.example.com/*",
        ],
    );

    let r = tokio::time::timeout(WAIT, p.get(&mod_path(APP)))
        .await
        .expect("the client's .mod does not wait for the prefetches");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), c.read(&mod_path(APP)[1..]));
    wait_for("the three prefetches at the upstream", WAIT, || async {
        deps.iter().all(|d| up.hits(&mod_path(d)) == 1)
    })
    .await;
    assert_eq!(prefetch_metric(&p, "fetched").await, 0.0, "still held");
    open.send(true).unwrap();
    wait_for("three prefetches fetched", WAIT, || async {
        prefetch_metric(&p, "fetched").await == 3.0
    })
    .await;
    assert_eq!(
        prefetch_metric(&p, "skipped").await,
        4.0,
        "excluded, private, not canonical, not a module path"
    );
    for m in [
        "corp.example.com/secret",
        "private.example.com/lib",
        "example.com/deeper",
    ] {
        assert_eq!(up.hits(&mod_path(m)), 0, "{m} was prefetched");
    }

    // Cached (committed just after the prefetch ended): the client's request is a hit, the
    // upstream is not asked again.
    for d in deps {
        wait_committed(&cache.path().join("download").join(&mod_path(d)[1..])).await;
    }
    for d in deps {
        let r = p.get(&mod_path(d)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), c.read(&mod_path(d)[1..]));
        assert_eq!(up.hits(&mod_path(d)), 1, "{d}: fetched once");
    }
    assert_eq!(
        p.metric(r#"modfleet_proxy_requests_total{route="mod",cache="hit"}"#)
            .await,
        3.0
    );
    assert_eq!(p.metric("modfleet_proxy_prefetch_hits_total").await, 3.0);
    // The first client of a prefetched .mod starts the next level.
    wait_for("the next level, once a client asked", WAIT, || async {
        up.hits(&mod_path("example.com/deeper")) == 1
    })
    .await;
    // Asking again changes nothing: no second hit counted, nothing fetched twice.
    p.get(&mod_path(deps[0])).await;
    p.get(&mod_path(APP)).await;
    assert_eq!(p.metric("modfleet_proxy_prefetch_hits_total").await, 3.0);
    wait_for("the deeper prefetch counted", WAIT, || async {
        prefetch_metric(&p, "fetched").await == 4.0
    })
    .await;
    for d in deps {
        assert_eq!(up.hits(&mod_path(d)), 1, "{d}");
    }
    assert_eq!(up.hits(&mod_path("corp.example.com/secret")), 0);
    assert_eq!(up.hits(&mod_path("private.example.com/lib")), 0);
    for d in deps {
        let zip = mod_path(d).replace(".mod", ".zip");
        assert_eq!(up.hits(&zip), 0, "{d}: zips are not prefetched by default");
    }
}

/// `--prefetch-zips on`: the required module's `.info` and zip are prefetched too (the zip
/// checked against its `.mod` like a client's zip), a client's requests for them are then hits,
/// and neither the prefetched `.mod` nor the one the prefetched zip is checked against starts
/// the next level.
#[tokio::test(flavor = "multi_thread")]
async fn zips_are_prefetched_with_the_flag_and_start_no_next_level() {
    let c = Corpus::new();
    let dep = "example.com/one";
    add(&c, APP, &format!("module {APP}\n\nrequire {dep} v1.0.0\n"));
    add(
        &c,
        dep,
        &format!("module {dep}\n\nrequire example.com/deeper v1.0.0\n"),
    );
    add(&c, "example.com/deeper", "module example.com/deeper\n");
    let up = Upstream::serve(c.root());
    let cache = tempfile::tempdir().unwrap();
    let p = Proxy::start(
        cache.path(),
        &["--upstream", &up.url, "--prefetch-zips", "on"],
    );
    assert_eq!(p.get(&mod_path(APP)).await.status(), 200);
    let zip = mod_path(dep).replace(".mod", ".zip");
    let info = mod_path(dep).replace(".mod", ".info");
    wait_for(
        "the .mod, the .info and the zip prefetched",
        WAIT,
        || async {
            prefetch_metric(&p, "fetched").await + prefetch_metric(&p, "cached").await == 3.0
        },
    )
    .await;
    for f in [&zip, &info] {
        wait_committed(&cache.path().join("download").join(&f[1..])).await;
    }
    assert_eq!(up.hits(&zip), 1);
    assert_eq!(up.hits(&info), 1);
    assert_eq!(
        up.hits(&mod_path(dep)),
        1,
        "the zip's .mod and the .mod: one fetch"
    );
    let r = p.get(&zip).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), c.read(&zip[1..]));
    assert_eq!(
        p.metric(r#"modfleet_proxy_requests_total{route="zip",cache="hit"}"#)
            .await,
        1.0
    );
    assert_eq!(up.hits(&zip), 1);
    let r = p.get(&info).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), c.read(&info[1..]));
    assert_eq!(up.hits(&info), 1, "the .info is a hit");
    assert_eq!(p.metric("modfleet_proxy_prefetch_hits_total").await, 2.0);
    let deeper = "example.com/deeper";
    assert_eq!(up.hits(&mod_path(deeper)), 0, "no second level unasked");
    assert_eq!(up.hits(&mod_path(deeper).replace(".mod", ".zip")), 0);
}

/// A go.mod with 500 requires: at most 64 prefetches, the rest skipped and counted.
#[tokio::test(flavor = "multi_thread")]
async fn prefetches_per_go_mod_are_bounded() {
    let c = Corpus::new();
    let mut go_mod = format!("module {APP}\n\nrequire (\n");
    for i in 0..500 {
        go_mod.push_str(&format!("\texample.com/dep{i} v1.0.0\n"));
    }
    go_mod.push_str(")\n");
    add(&c, APP, &go_mod);
    let up = Upstream::serve(c.root());
    let cache = tempfile::tempdir().unwrap();
    let p = Proxy::start(cache.path(), &["--upstream", &up.url]);
    assert_eq!(p.get(&mod_path(APP)).await.status(), 200);
    // Every require is accounted for: queued ones end as failed (the upstream has none of
    // them), the others are skipped.
    wait_for("every require accounted for", WAIT, || async {
        prefetch_metric(&p, "failed").await + prefetch_metric(&p, "skipped").await == 500.0
    })
    .await;
    assert_eq!(prefetch_metric(&p, "failed").await, 64.0);
    assert_eq!(prefetch_metric(&p, "skipped").await, 436.0);
    let asked = (0..500)
        .filter(|i| up.hits(&mod_path(&format!("example.com/dep{i}"))) > 0)
        .count();
    assert_eq!(
        asked, 64,
        "prefetches beyond the bound reached the upstream"
    );
    assert_eq!(
        up.total_hits(),
        65,
        "the app's .mod and one request per prefetch (a 404 is not retried)"
    );
}

/// `--prefetch off` (here as its environment variable): a fetched go.mod starts nothing. The
/// dependency's own request is then the only one upstream, and a miss: the upstream holds it
/// until it has arrived, so a prefetch in flight or done would show as a second request or as
/// a hit.
#[tokio::test(flavor = "multi_thread")]
async fn prefetch_off_fetches_nothing() {
    let c = Corpus::new();
    let dep = "example.com/one";
    add(&c, APP, &format!("module {APP}\n\nrequire {dep} v1.0.0\n"));
    add(&c, dep, &format!("module {dep}\n"));
    let (open, gate) = tokio::sync::watch::channel(false);
    let up = Upstream::builder()
        .dir(c.root())
        .route(
            &mod_path(dep),
            Reply::Gated(c.read(&mod_path(dep)[1..]), gate),
        )
        .start();
    let cache = tempfile::tempdir().unwrap();
    let p = Proxy::start_with_env(
        &[],
        "127.0.0.1",
        cache.path(),
        &["--upstream", &up.url],
        &[("MODFLEET_PREFETCH", "off")],
    );
    assert_eq!(p.get(&mod_path(APP)).await.status(), 200);
    let url = format!("{}{}", p.url, mod_path(dep));
    let client = tokio::spawn(async move { reqwest::get(url).await.unwrap() });
    wait_for("the client's own request upstream", WAIT, || async {
        up.hits(&mod_path(dep)) == 1
    })
    .await;
    open.send(true).unwrap();
    assert_eq!(client.await.unwrap().status(), 200);
    assert_eq!(up.hits(&mod_path(dep)), 1);
    assert_eq!(
        p.metric(r#"modfleet_proxy_requests_total{route="mod",cache="miss"}"#)
            .await,
        2.0
    );
    for outcome in ["fetched", "cached", "skipped", "dropped", "failed"] {
        assert_eq!(prefetch_metric(&p, outcome).await, 0.0, "{outcome}");
    }
}
