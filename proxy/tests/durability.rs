//! The cache survives SIGKILL at any moment and a full disk, and `verify` finds what is bad.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    Corpus, Proxy, Tmpfs, Upstream, files_under, noise, sha256, tmp_files, verify_cache as verify,
    wait_committed, wait_for,
};

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_downloads_never_leaves_a_bad_artifact() {
    let corpus = Corpus::new();
    let modules: Vec<String> = (0..6).map(|i| format!("example.com/big{i}")).collect();
    for (i, m) in modules.iter().enumerate() {
        corpus.add(
            m,
            "v1.0.0",
            Some(&format!("module {m}\n")),
            // 1 to 6 MB: the downloads end one after another, so each round's kill condition
            // (some zips committed, others still in flight) holds for a while, not an instant.
            &[("blob.bin", &noise(i as u32, (i + 1) << 20))],
        );
    }
    // 6 MB/s per connection: a zip takes 0.2 to 1 s, so kills land mid-download.
    let origin = Upstream::builder()
        .dir(corpus.root())
        .rate(6_000_000)
        .start();
    let cache = tempfile::tempdir().unwrap();
    let mut proxy = Proxy::start(cache.path(), &["--upstream", &origin.url]);
    let download = cache.path().join("download");

    for round in 1..=3usize {
        let clients: Vec<_> = modules
            .iter()
            .map(|m| {
                let url = format!("{}/{m}/@v/v1.0.0.zip", proxy.url);
                tokio::spawn(async move {
                    if let Ok(r) = reqwest::get(url).await {
                        let _ = r.bytes().await;
                    }
                })
            })
            .collect();
        // Kill while downloads are in flight, later in each round.
        wait_for("downloads in flight", Duration::from_secs(30), || async {
            let tmp = tmp_files(&download).len();
            let zips = files_under(&download, &|n| n.ends_with(".zip")).len();
            tmp > 0 && zips >= round - 1
        })
        .await;
        proxy.kill9();
        for c in clients {
            let _ = c.await;
        }
        // Whatever is under a final name is whole and verified.
        let (ok, report) = verify(cache.path(), false);
        assert!(ok, "round {round}: verify found bad files:\n{report}");
        for zip in files_under(&download, &|n| n.ends_with(".zip")) {
            let rel = zip
                .strip_prefix(&download)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            assert_eq!(
                std::fs::read(&zip).unwrap(),
                corpus.read(&rel),
                "round {round}: {rel} is not whole"
            );
        }
        proxy.restart();
        assert!(
            tmp_files(&download).is_empty(),
            "restart removes unfinished temporary files"
        );
    }
    // After the last restart, every artifact is served whole.
    for m in &modules {
        for ext in ["info", "mod", "zip"] {
            let rel = format!("{m}/@v/v1.0.0.{ext}");
            let r = proxy.get(&format!("/{rel}")).await;
            assert_eq!(r.status(), 200, "{rel}");
            assert_eq!(
                sha256(&r.bytes().await.unwrap()),
                sha256(&corpus.read(&rel)),
                "{rel}"
            );
        }
    }
    let (ok, report) = verify(cache.path(), false);
    assert!(ok, "{report}");
    assert!(report.contains("0 bad"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_and_purges_bad_files() {
    let corpus = Corpus::new();
    corpus.add(
        "example.com/v",
        "v1.0.0",
        Some("module example.com/v\n"),
        &[("v.go", b"package v\n")],
    );
    let up = Upstream::start(vec![], Some(corpus.root().to_path_buf()));
    let cache = tempfile::tempdir().unwrap();
    let p = Proxy::start(cache.path(), &["--upstream", &up.url]);
    assert_eq!(p.get("/example.com/v/@v/v1.0.0.zip").await.status(), 200);
    assert_eq!(p.get("/example.com/v/@v/v1.0.0.info").await.status(), 200);
    for f in ["zip", "info", "mod"] {
        let path = cache
            .path()
            .join(format!("download/example.com/v/@v/v1.0.0.{f}"));
        wait_committed(&path).await;
    }
    let (ok, report) = verify(cache.path(), false);
    assert!(ok, "{report}");

    // Damage the zip and the .info behind the proxy's back.
    let zip = cache.path().join("download/example.com/v/@v/v1.0.0.zip");
    let mut bytes = std::fs::read(&zip).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&zip, bytes).unwrap();
    std::fs::write(
        cache.path().join("download/example.com/v/@v/v1.0.0.info"),
        b"{}",
    )
    .unwrap();
    std::fs::write(cache.path().join("download/stray.txt"), b"?").unwrap();

    let (ok, report) = verify(cache.path(), false);
    assert!(!ok);
    assert!(
        report.contains("bad example.com/v/@v/v1.0.0.zip"),
        "{report}"
    );
    assert!(
        report.contains("bad example.com/v/@v/v1.0.0.info"),
        "{report}"
    );
    assert!(report.contains("unknown stray.txt"), "{report}");
    assert!(zip.exists(), "without --purge nothing is removed");

    let (ok, report) = verify(cache.path(), true);
    assert!(ok, "{report}");
    assert!(!zip.exists());
    assert!(
        cache.path().join("download/stray.txt").exists(),
        "unknown files are left alone"
    );
    let (ok, _) = verify(cache.path(), false);
    assert!(ok);

    let (ok, report) = verify(Path::new("/nonexistent-cache"), false);
    assert!(!ok);
    let _ = report;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_degrades_to_serving_uncached() {
    let corpus = Corpus::new();
    corpus.add(
        "example.com/huge",
        "v1.0.0",
        Some("module example.com/huge\n"),
        &[("blob.bin", &noise(9, 3 << 20))],
    );
    let up = Upstream::start(vec![], Some(corpus.root().to_path_buf()));
    let disk = Tmpfs::mount("1m");
    let p = Proxy::start(disk.0.path(), &["--upstream", &up.url]);
    let rel = "example.com/huge/@v/v1.0.0.zip";
    for attempt in 0..2 {
        let r = p.get(&format!("/{rel}")).await;
        assert_eq!(r.status(), 200, "attempt {attempt}");
        assert_eq!(
            r.bytes().await.unwrap(),
            corpus.read(rel),
            "attempt {attempt}: whole and correct"
        );
    }
    assert!(
        p.metric(r#"modfleet_proxy_cache_write_errors_total{reason="enospc"}"#)
            .await
            >= 1.0
    );
    assert_eq!(
        p.metric(r#"modfleet_proxy_requests_total{route="zip",cache="bypass"}"#)
            .await,
        2.0
    );
    let download = disk.0.path().join("download");
    // Small files still fit and are cached (committed just after the answer); the proxy is
    // alive.
    wait_committed(&download.join("example.com/huge/@v/v1.0.0.mod")).await;
    assert!(tmp_files(&download).is_empty(), "no temporary files left");
    assert!(!download.join(rel).exists());
    let (ok, report) = verify(disk.0.path(), false);
    assert!(ok, "{report}");
    drop(p);
}
