//! Item 4 of the hardening step: every downloaded `.mod` and zip is checked against the
//! checksum database before it is cached or served, so one compromised mirror cannot poison
//! builds that run with `GOSUMDB=off`. The database is golang.org/x/mod/sumdb's reference
//! server (tests/support/sumdbtest) signing the hashes of the real corpus; the real proxy
//! binary reaches it through its own `/sumdb/` proxying (the direct URL of `--sumdb`).

mod common;

use common::sumdb::{RefDb, add_tampered, record};
use common::{Corpus, Proxy, Upstream, config_file, wait_committed};

const GOOD: &str = "example.com/signed";
const UNKNOWN: &str = "example.com/unknown";
const PRIVATE: &str = "corp.example.com/private";

fn rel(module: &str, ext: &str) -> String {
    format!("{module}/@v/v1.0.0.{ext}")
}

/// The real corpus, and a tampered copy of it (same modules, other bytes: a compromised
/// mirror's zip and `.mod`, each valid on its own).
fn corpora() -> (Corpus, Corpus) {
    let (good, evil) = (Corpus::new(), Corpus::new());
    for module in [GOOD, UNKNOWN, PRIVATE] {
        add_tampered(&good, &evil, module);
    }
    (good, evil)
}

/// A database that knows the real hashes of GOOD (and nothing of the others).
fn database(good: &Corpus) -> RefDb {
    RefDb::start(&[record(good, GOOD)], None)
}

fn proxy(dir: &tempfile::TempDir, db: &RefDb, upstreams: &[&str]) -> Proxy {
    let name = db.verifier.split('+').next().unwrap();
    let mut yaml = String::from("upstreams:\n");
    for u in upstreams {
        yaml.push_str(&format!("  - url: {u}\n"));
    }
    yaml.push_str(&format!(
        "sumdbs:\n  - name: {name}\n    key: {}\n    url: http://{}/\nverifySumdb: true\nnoSum: [\"corp.example.com/*\"]\nhealthCheck:\n  interval: 1h\nretry:\n  attempts: 1\n",
        db.verifier, db.addr
    ));
    let cfg = config_file(dir.path(), &yaml);
    Proxy::start(
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap(), "--verify-sumdb", "on"],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_artifact_is_a_failed_attempt_and_the_real_one_is_served() {
    let (good, evil) = corpora();
    let db = database(&good);
    let compromised = Upstream::start(vec![], Some(evil.root().to_path_buf()));
    let honest = Upstream::start(vec![], Some(good.root().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let p = proxy(&dir, &db, &[&compromised.url, &honest.url]);

    for ext in ["mod", "zip"] {
        let path = format!("/{}", rel(GOOD, ext));
        let r = p.get(&path).await;
        assert_eq!(r.status(), 200, "{ext}: {}", r.text().await.unwrap());
        assert_eq!(
            r.bytes().await.unwrap(),
            good.read(&rel(GOOD, ext)),
            "{ext}"
        );
        assert_eq!(
            compromised.hits(&path),
            1,
            "{ext}: the mirror was asked first"
        );
        assert_eq!(honest.hits(&path), 1, "{ext}: then the honest one");
    }
    assert_eq!(
        p.metric(r#"modfleet_proxy_checksum_checks_total{outcome="mismatch"}"#)
            .await,
        2.0
    );
    assert!(
        p.logs().contains("SECURITY: checksum mismatch"),
        "the mismatch is logged as a security event"
    );
    // What is cached is the real thing.
    let cached = dir.path().join("cache/download");
    for ext in ["mod", "zip"] {
        assert_eq!(
            std::fs::read(cached.join(rel(GOOD, ext))).unwrap(),
            good.read(&rel(GOOD, ext))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_private_and_unreachable() {
    let (good, _) = corpora();
    let db = database(&good);
    let up = Upstream::start(vec![], Some(good.root().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let p = proxy(&dir, &db, &[&up.url]);

    // A module the database does not know is refused, as the go command would, with the fix.
    let r = p.get(&format!("/{}", rel(UNKNOWN, "mod"))).await;
    assert_eq!(r.status(), 403);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("not in the checksum database") && text.contains("--no-sum"),
        "{text}"
    );
    assert!(
        !dir.path()
            .join("cache/download")
            .join(rel(UNKNOWN, "mod"))
            .exists()
    );

    // A no-sum (private) module is never looked up, so it is served.
    let r = p.get(&format!("/{}", rel(PRIVATE, "zip"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), good.read(&rel(PRIVATE, "zip")));

    // The database gone: nothing unverified is served or cached.
    drop(db);
    let r = p.get(&format!("/{}", rel(GOOD, "mod"))).await;
    assert_eq!(r.status(), 502);
    let text = r.text().await.unwrap();
    assert!(text.contains("unavailable"), "{text}");
    assert!(
        !dir.path()
            .join("cache/download")
            .join(rel(GOOD, "mod"))
            .exists()
    );
}

/// `verify` checks cached files against the database too, and so knows which file of a
/// disagreeing pair is wrong: only that one is removed.
#[tokio::test(flavor = "multi_thread")]
async fn verify_blames_the_file_the_database_disowns() {
    let (good, _) = corpora();
    let db = database(&good);
    let up = Upstream::start(vec![], Some(good.root().to_path_buf()));
    let dir = tempfile::tempdir().unwrap();
    let p = proxy(&dir, &db, &[&up.url]);
    let zip_path = format!("/{}", rel(GOOD, "zip"));
    assert_eq!(p.get(&zip_path).await.status(), 200);
    let cache = dir.path().join("cache");
    let mod_file = cache.join("download").join(rel(GOOD, "mod"));
    // Both are committed just after the answer; tamper with the committed .mod.
    wait_committed(&cache.join("download").join(rel(GOOD, "zip"))).await;
    wait_committed(&mod_file).await;
    std::fs::write(
        &mod_file,
        format!("module {GOOD}\n\nrequire example.com/backdoor v1.0.0\n"),
    )
    .unwrap();
    let cfg = dir.path().join("modfleet.yaml");
    let (ok, report) = verify_with(&cache, &cfg, false);
    assert!(!ok, "{report}");
    assert!(
        report.contains(&format!(
            "bad {}: SECURITY: checksum mismatch",
            rel(GOOD, "mod")
        )),
        "{report}"
    );
    assert!(
        !report.contains(&format!("bad {}", rel(GOOD, "zip"))),
        "{report}"
    );
    let (ok, report) = verify_with(&cache, &cfg, true);
    assert!(ok, "{report}");
    assert!(!mod_file.exists());
    assert!(
        cache.join("download").join(rel(GOOD, "zip")).exists(),
        "the good zip stays"
    );
    drop(p);
}

fn verify_with(cache: &std::path::Path, cfg: &std::path::Path, purge: bool) -> (bool, String) {
    let mut c = std::process::Command::new(common::PROXY_BIN);
    c.args(["verify", "--config"])
        .arg(cfg)
        .arg("--cache-dir")
        .arg(cache)
        .args(["--verify-sumdb", "on"]);
    if purge {
        c.arg("--purge");
    }
    let o = c.output().unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}
