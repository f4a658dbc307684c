//! A cache that cannot be written, or that someone tampered with: verification, limits and
//! coalescing never depend on the cache, a symlink is never followed, and `verify --purge`
//! removes what is wrong and only that. The real proxy binary; disks are real tmpfs mounts
//! (the tests run as root, as in CI).

mod common;

use std::io::Write;

use common::{Corpus, Proxy, Reply, Tmpfs, Upstream, verify_cache, wait_committed, wait_for};

const MODULE: &str = "example.com/disk";

fn corpus() -> Corpus {
    let c = Corpus::new();
    c.add(
        MODULE,
        "v1.0.0",
        Some(&format!("module {MODULE}\n")),
        &[("disk.go", b"package disk\n".as_slice())],
    );
    c
}

/// A cache on a file system that turned read-only after the proxy indexed it.
fn read_only_cache() -> Tmpfs {
    let disk = Tmpfs::mount("16m");
    std::fs::create_dir_all(disk.path().join("download")).unwrap();
    disk.remount_read_only();
    disk
}

/// A zip whose entry climbs out of the module: valid as a zip, refused by the go command.
fn traversal_zip() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    z.start_file(
        format!("{MODULE}@v1.0.0/../../evil.go"),
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    z.write_all(b"package evil\n").unwrap();
    z.finish().unwrap();
    out.into_inner()
}

/// Item 6: with a cache that cannot be written, a zip is still verified (one with `../`
/// entries is refused: 502, never served), an endless zip stops at the go command's size limit,
/// and 20 concurrent misses still share one upstream fetch, served from a loose file.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_cache_still_verifies_bounds_and_coalesces() {
    let c = corpus();
    let zip_path = format!("/{MODULE}/@v/v1.0.0.zip");
    let (open, gate) = tokio::sync::watch::channel(false);
    let good = Upstream::start(
        vec![(&zip_path, Reply::Gated(c.read(&zip_path[1..]), gate))],
        Some(c.root().to_path_buf()),
    );
    let disk = read_only_cache();
    let p = Proxy::start(disk.path(), &["--upstream", &good.url]);
    let url = format!("{}{zip_path}", p.url);
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let r = reqwest::get(url).await.unwrap();
                (r.status(), r.bytes().await.unwrap())
            })
        })
        .collect();
    wait_for(
        "19 requests to join the first one",
        std::time::Duration::from_secs(20),
        || async { p.metric("modfleet_proxy_coalesced_waiters_total").await >= 19.0 },
    )
    .await;
    open.send(true).unwrap();
    for client in clients {
        let (status, body) = client.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, c.read(&zip_path[1..]));
    }
    assert_eq!(good.hits(&zip_path), 1, "one upstream fetch for 20 misses");
    assert_eq!(
        p.metric(r#"modfleet_proxy_requests_total{route="zip",cache="bypass"}"#)
            .await,
        20.0
    );
    drop(p);

    // A zip with `../` entries, and one that never ends: refused, not passed through.
    let bad = Upstream::start(
        vec![
            (&zip_path, Reply::Body(traversal_zip())),
            (
                "/example.com/endless/@v/v1.0.0.mod",
                Reply::Body(b"module example.com/endless\n".to_vec()),
            ),
            ("/example.com/endless/@v/v1.0.0.zip", Reply::Endless(200)),
        ],
        Some(c.root().to_path_buf()),
    );
    let disk = read_only_cache();
    let p = Proxy::start(
        disk.path(),
        &["--upstream", &bad.url, "--hedge-delay", "off"],
    );
    let r = p.get(&zip_path).await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains("invalid module zip"), "{text}");

    let r = p.get("/example.com/endless/@v/v1.0.0.mod").await;
    assert_eq!(r.status(), 200, "the endless module's .mod");
    let r = reqwest::get(format!("{}/example.com/endless/@v/v1.0.0.zip", p.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains("larger than"), "{text}");
}

/// Item 7: a cached file replaced by a symlink (to a file the attacker wants served) is not a
/// cache entry: never served, live or after a restart; the proxy fetches the real one again.
/// `verify` reports it and `--purge` removes the link, never its target.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_in_the_cache_is_never_followed() {
    let c = corpus();
    let up = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let cache = tempfile::tempdir().unwrap();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let mod_path = format!("/{MODULE}/@v/v1.0.0.mod");
    let cached = cache.path().join("download").join(&mod_path[1..]);
    let plant = || {
        std::fs::remove_file(&cached).unwrap();
        std::os::unix::fs::symlink(secret.path(), &cached).unwrap();
    };
    let mut p = Proxy::start(cache.path(), &["--upstream", &up.url]);
    assert_eq!(p.get(&mod_path).await.status(), 200);
    wait_committed(&cached).await;
    for round in ["live", "after a restart"] {
        plant();
        if round == "after a restart" {
            p.restart();
        }
        let body = p.get(&mod_path).await.text().await.unwrap();
        assert_eq!(body, format!("module {MODULE}\n"), "{round}");
        // The fetched file replaces the link.
        wait_committed(&cached).await;
    }
    drop(p);

    plant();
    let (ok, report) = verify_cache(cache.path(), false);
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!("bad {}: not a regular file", &mod_path[1..])),
        "{report}"
    );
    let (ok, report) = verify_cache(cache.path(), true);
    assert!(ok, "{report}");
    assert!(std::fs::symlink_metadata(&cached).is_err(), "link removed");
    assert!(secret.path().exists(), "its target left alone");
}

/// Item 8: a tampered `.mod` next to a good zip. Without the checksum database `verify` cannot
/// tell which one is wrong: both are bad, and `--purge` removes both (not only the zip, which
/// would leave the module answering 502 for ever). Afterwards the module is served again.
#[tokio::test(flavor = "multi_thread")]
async fn verify_purge_blames_both_files_of_a_disagreeing_pair() {
    let c = corpus();
    let up = Upstream::start(vec![], Some(c.root().to_path_buf()));
    let cache = tempfile::tempdir().unwrap();
    let p = Proxy::start(cache.path(), &["--upstream", &up.url]);
    let zip_path = format!("/{MODULE}/@v/v1.0.0.zip");
    assert_eq!(p.get(&zip_path).await.status(), 200);
    let root = cache.path().join("download");
    let mod_file = root.join(format!("{MODULE}/@v/v1.0.0.mod"));
    wait_committed(&root.join(&zip_path[1..])).await;
    wait_committed(&mod_file).await;
    drop(p);
    std::fs::write(
        &mod_file,
        format!("module {MODULE}\n\nrequire example.com/backdoor v1.0.0\n"),
    )
    .unwrap();
    let (ok, report) = verify_cache(cache.path(), false);
    assert!(!ok);
    for file in [".mod", ".zip"] {
        assert!(
            report.contains(&format!("bad {MODULE}/@v/v1.0.0{file}")),
            "{file}: {report}"
        );
    }
    let (ok, report) = verify_cache(cache.path(), true);
    assert!(ok, "{report}");
    assert!(!mod_file.exists() && !root.join(&zip_path[1..]).exists());

    let p = Proxy::start(cache.path(), &["--upstream", &up.url]);
    let r = p.get(&zip_path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), c.read(&zip_path[1..]));
    wait_committed(&mod_file).await;
    assert_eq!(
        std::fs::read_to_string(&mod_file).unwrap(),
        format!("module {MODULE}\n")
    );
}
