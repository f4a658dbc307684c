//! The shared object-storage tier against a real S3 server (s3s-fs, testkit/src/s3.rs) and the
//! real go command: a member started empty on a warm store serves a module graph without the
//! upstream; a store that dies mid-run costs no client an error; a corrupted object is refused
//! and fetched upstream instead; lists and `@latest` never reach the store.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::graph::{app_dir, corpus, immutable_served};
use common::{Corpus, GoEnv, PROXY_BIN, Proxy, Upstream, config_file, wait_for};
use modfleet_testkit::s3::{BUCKET, S3Server};

const WAIT: Duration = Duration::from_secs(30);
/// The store's prefix in the bucket (from the URL `s3://modfleet/fleet`).
const PREFIX: &str = "fleet/v1";

/// The proxy's config: one upstream, the store at `s3://modfleet/fleet` with its keys in
/// files, a short timeout and a quick breaker.
fn store_config(dir: &Path, s3: &S3Server, upstream: &str) -> std::path::PathBuf {
    let (id, secret) = s3.credentials_files(dir);
    config_file(
        dir,
        &format!(
            "upstreams: [{{url: {upstream}}}]
breaker: {{failures: 2, openFor: 1s}}
objectStore:
  url: s3://{BUCKET}/fleet
  endpoint: {endpoint}
  region: us-east-1
  allowHttp: true
  timeout: 2s
  credentials:
    accessKeyIdFile: {id}
    secretAccessKeyFile: {secret}
",
            endpoint = s3.endpoint,
            id = id.display(),
            secret = secret.display(),
        ),
    )
}

/// A member on a fresh, empty disk cache.
fn member(dir: &tempfile::TempDir, s3: &S3Server, upstream: &str) -> Proxy {
    let cfg = store_config(dir.path(), s3, upstream);
    Proxy::start(
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap()],
    )
}

/// `go ARGS` in `dir` through `proxy`, with a module cache of `go`'s own.
fn go_cmd(go: &GoEnv, dir: &Path, proxy: &Proxy, args: &[&str]) -> Command {
    let mut c = go.command(dir, &proxy.url);
    c.args(args).env("GONOSUMDB", "example.test");
    c
}

/// Waits until each of `paths` (GOPROXY paths) is an object of the store.
async fn wait_stored(s3: &S3Server, paths: &[String]) {
    wait_for("the member's writes to reach the store", WAIT, || async {
        paths
            .iter()
            .all(|p| s3.object_file(&format!("{PREFIX}{p}")).is_file())
    })
    .await;
}

async fn store_metric(p: &Proxy, name: &str, result: &str) -> f64 {
    p.metric(&format!(
        r#"modfleet_proxy_store_{name}_total{{result="{result}"}}"#
    ))
    .await
}

/// (a) Member A downloads the app's module graph from the upstream and fills the store. Member
/// B, started on an empty disk with another upstream (counting requests), serves the same
/// graph to a clean go command, which then builds the app, without one request to its
/// upstream: every artifact came from the store, and was verified on the way.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_member_on_a_warm_store_serves_the_graph_without_the_upstream() {
    let s3 = S3Server::start();
    let corpus = corpus();
    let up_a = Upstream::serve(corpus.root());
    let dir_a = tempfile::tempdir().unwrap();
    let a = member(&dir_a, &s3, &up_a.url);
    let go = GoEnv::new();
    let app = app_dir();
    let cold = Instant::now();
    go.run(go_cmd(&go, app.path(), &a, &["mod", "download"]));
    // The build needs more than `go mod download` fetched (the zip of a module only required).
    go.run(go_cmd(&go, app.path(), &a, &["build", "-o", "app", "."]));
    let cold = cold.elapsed();
    let served = immutable_served(&up_a, &corpus);
    assert!(
        served.contains(&"/example.test/greet/@v/v1.0.0.zip".to_string()),
        "{served:?}"
    );
    wait_stored(&s3, &served).await;
    assert_eq!(store_metric(&a, "writes", "error").await, 0.0);

    let up_b = Upstream::serve(corpus.root());
    let dir_b = tempfile::tempdir().unwrap();
    let b = member(&dir_b, &s3, &up_b.url);
    // A clean client and a fresh copy of the app (A's go command updated go.mod and go.sum).
    let go_b = GoEnv::new();
    let app_b = app_dir();
    let warm = Instant::now();
    go_b.run(go_cmd(&go_b, app_b.path(), &b, &["mod", "download"]));
    go_b.run(go_cmd(
        &go_b,
        app_b.path(),
        &b,
        &["build", "-o", "app", "."],
    ));
    let warm = warm.elapsed();
    let out = Command::new(app_b.path().join("app")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello! Case 2\n");
    assert_eq!(
        up_b.total_hits(),
        0,
        "member B asked its upstream: {:?}",
        up_b.all_hits()
    );
    let hits = store_metric(&b, "reads", "hit").await;
    assert!(hits >= 4.0, "store hits (at least the four zips): {hits}");
    assert_eq!(store_metric(&b, "reads", "invalid").await, 0.0);
    // B read everything from the store, so it wrote nothing back.
    assert_eq!(store_metric(&b, "writes", "ok").await, 0.0);
    let status = b.status().await;
    assert_eq!(status["store"]["url"], "s3://modfleet/fleet", "{status}");
    assert_eq!(status["store"]["healthy"], true, "{status}");
    assert!(
        status["store"]["reads"]["hit"].as_u64().unwrap() >= 1,
        "{status}"
    );
    eprintln!(
        "go mod download + go build of the graph ({} artifacts): through member A from the \
         upstream {:?}, through empty member B from the store {:?}",
        served.len(),
        cold,
        warm
    );
}

/// (b) The store is killed between two downloads: the second go command still gets every
/// module (from the upstream), the failures are counted and reported in /status, and the
/// breaker stops asking the dead store.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_dies_mid_run_costs_clients_nothing() {
    let mut s3 = S3Server::start();
    let corpus = corpus();
    let up = Upstream::serve(corpus.root());
    let dir = tempfile::tempdir().unwrap();
    let p = member(&dir, &s3, &up.url);
    let go = GoEnv::new();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("go.mod"), "module example.test/work\n").unwrap();
    go.run(go_cmd(
        &go,
        work.path(),
        &p,
        &["mod", "download", "example.test/util@v1.0.0"],
    ));
    assert!(store_metric(&p, "reads", "miss").await >= 1.0);

    s3.stop();
    go.run(go_cmd(
        &go,
        work.path(),
        &p,
        &[
            "mod",
            "download",
            "example.test/greet@v1.0.0",
            "example.test/Upper/Case@v1.2.0",
            "example.test/legacy@v2.0.0+incompatible",
        ],
    ));
    for path in [
        "/example.test/greet/@v/v1.0.0.zip",
        "/example.test/!upper/!case/@v/v1.2.0.zip",
        "/example.test/legacy/@v/v2.0.0+incompatible.zip",
    ] {
        assert_eq!(up.hits(path), 1, "{path}");
    }
    let errors = store_metric(&p, "reads", "error").await;
    let skipped = store_metric(&p, "reads", "skipped").await;
    assert!(errors >= 2.0, "read errors: {errors}");
    assert!(
        skipped >= 1.0,
        "the breaker never skipped the dead store (errors {errors})"
    );
    let status = p.status().await;
    let store = &status["store"];
    assert!(
        store["lastError"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("fleet/v1/example.test/")),
        "{status}"
    );
    assert_eq!(store["healthy"], false, "{status}");
    assert!(store["reads"]["error"].as_u64().unwrap() >= 3, "{status}");
    assert!(p.logs().contains("object store call failed"));

    // Back up: once the open period is over a trial read goes through and closes the breaker.
    s3.restart();
    let mut n = 0;
    wait_for("the store's breaker to close", WAIT, || {
        n += 1;
        // A version nobody has: a disk miss each time, so the store is asked (when allowed).
        let path = format!("/example.test/util/@v/v1.9.{n}.mod");
        let p = &p;
        async move {
            assert_eq!(p.get(&path).await.status(), 404);
            p.metric("modfleet_proxy_store_breaker_state").await == 0.0
        }
    })
    .await;
    assert!(store_metric(&p, "reads", "miss").await >= 2.0);
}

/// (c) Objects corrupted in the store (a zip of junk, another module's go.mod, an `.info` that
/// is not JSON) are refused by the same checks as an upstream's answer, counted, and fetched
/// from the upstream; the upstream's good answer then replaces them in the store.
#[tokio::test(flavor = "multi_thread")]
async fn corrupted_objects_are_refused_and_fetched_upstream() {
    let s3 = S3Server::start();
    let corpus = corpus();
    let up_a = Upstream::serve(corpus.root());
    let dir_a = tempfile::tempdir().unwrap();
    let a = member(&dir_a, &s3, &up_a.url);
    let go = GoEnv::new();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("go.mod"), "module example.test/work\n").unwrap();
    let get = ["mod", "download", "example.test/util@v1.1.0"];
    go.run(go_cmd(&go, work.path(), &a, &get));
    let base = "/example.test/util/@v/v1.1.0";
    let files: Vec<String> = ["info", "mod", "zip"]
        .iter()
        .map(|e| format!("{base}.{e}"))
        .collect();
    wait_stored(&s3, &files).await;
    drop(a);

    let object = |ext: &str| s3.object_file(&format!("{PREFIX}{base}.{ext}"));
    let mut junk = std::fs::read(object("zip")).unwrap();
    junk[40] ^= 0xff; // inside the first entry's header or data: a CRC or name mismatch
    junk.truncate(junk.len() - 10);
    std::fs::write(object("zip"), &junk).unwrap();
    std::fs::write(object("mod"), "module example.test/evil\n").unwrap();
    std::fs::write(object("info"), "<html>not json</html>").unwrap();

    let up_b = Upstream::serve(corpus.root());
    let dir_b = tempfile::tempdir().unwrap();
    let b = member(&dir_b, &s3, &up_b.url);
    let go_b = GoEnv::new();
    go_b.run(go_cmd(&go_b, work.path(), &b, &get));
    for f in &files {
        assert_eq!(up_b.hits(f), 1, "{f} was not fetched upstream");
    }
    assert_eq!(store_metric(&b, "reads", "invalid").await, 3.0);
    assert_eq!(store_metric(&b, "reads", "hit").await, 0.0);
    assert!(b.logs().contains("failed verification"));
    let cached = |ext: &str| {
        std::fs::read(dir_b.path().join(format!("cache/download{base}.{ext}"))).unwrap()
    };
    assert_eq!(cached("mod"), corpus.read(&format!("{}.mod", &base[1..])));
    assert_eq!(cached("zip"), corpus.read(&format!("{}.zip", &base[1..])));
    // The upstream's verified answers replace the bad objects.
    wait_for("the store's objects to be repaired", WAIT, || async {
        ["mod", "zip"].iter().all(|e| {
            std::fs::read(object(e)).ok() == Some(corpus.read(&format!("{}.{e}", &base[1..])))
        })
    })
    .await;
}

/// (d) Lists, `@latest` and queries are fetched through a member with a store, and only
/// immutable artifacts of canonical versions appear in the store.
#[tokio::test(flavor = "multi_thread")]
async fn lists_and_latest_never_reach_the_store() {
    let s3 = S3Server::start();
    let corpus = corpus();
    let up = Upstream::serve(corpus.root());
    let dir = tempfile::tempdir().unwrap();
    let p = member(&dir, &s3, &up.url);
    let go = GoEnv::new();
    let app = app_dir();
    go.run(go_cmd(
        &go,
        app.path(),
        &p,
        &["list", "-m", "-versions", "example.test/util"],
    ));
    go.run(go_cmd(
        &go,
        app.path(),
        &p,
        &["get", "example.test/util@latest"],
    ));
    go.run(go_cmd(&go, app.path(), &p, &["mod", "download"]));
    assert!(up.hits("/example.test/util/@v/list") >= 1);
    let served = immutable_served(&up, &corpus);
    wait_stored(&s3, &served).await;
    // Let the queue drain (a list written late would show up below).
    wait_for("the write queue to drain", WAIT, || async {
        p.metric("modfleet_proxy_store_queue_depth").await == 0.0
    })
    .await;
    let objects = s3.objects();
    assert!(!objects.is_empty());
    for o in &objects {
        let rest = o
            .strip_prefix(&format!("{PREFIX}/"))
            .unwrap_or_else(|| panic!("{o} is outside {PREFIX}/"));
        let (_, file) = rest
            .rsplit_once("/@v/")
            .unwrap_or_else(|| panic!("{o} is not a module artifact"));
        assert!(
            [".info", ".mod", ".zip"].iter().any(|e| file.ends_with(e)) && file.starts_with('v'),
            "{o} may not be in the store"
        );
        assert!(!o.contains("@latest") && !o.ends_with("/list"), "{o}");
    }
    // And nothing was skipped: everything immutable the upstream served is there.
    assert_eq!(objects.len(), served.len(), "{objects:?} vs {served:?}");
}

/// A zip larger than one PUT goes to the store in parts (a multipart upload) and comes back
/// whole to an empty member, which asks its upstream nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_zip_is_written_in_parts_and_read_back_whole() {
    let s3 = S3Server::start();
    let c = Corpus::new();
    let blob = common::noise(7, 9 << 20);
    c.add(
        "example.test/big",
        "v1.0.0",
        Some("module example.test/big\n"),
        &[("big.go", b"package big\n"), ("blob.bin", &blob)],
    );
    let zip = "/example.test/big/@v/v1.0.0.zip";
    let want = c.read(&zip[1..]);
    assert!(want.len() > 8 << 20, "the zip is {} bytes", want.len());
    let up_a = Upstream::serve(c.root());
    let dir_a = tempfile::tempdir().unwrap();
    let a = member(&dir_a, &s3, &up_a.url);
    let got = a.get(zip).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), want.as_slice());
    let object = s3.object_file(&format!("{PREFIX}{zip}"));
    wait_for("the zip's upload to complete", WAIT, || async {
        std::fs::read(&object).ok().as_deref() == Some(want.as_slice())
    })
    .await;
    assert_eq!(store_metric(&a, "writes", "error").await, 0.0);

    let up_b = Upstream::serve(c.root());
    let dir_b = tempfile::tempdir().unwrap();
    let b = member(&dir_b, &s3, &up_b.url);
    let got = b.get(zip).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), want.as_slice());
    assert_eq!(up_b.total_hits(), 0, "{:?}", up_b.all_hits());
}

/// With the checksum database on: a store holding a tampered module that is valid on its own
/// (another go.mod, another zip: what a compromised store would serve) is refused by the
/// database check as an upstream's answer would be, and the real module is fetched upstream.
/// The database's full tiles are shared through the store too; its partial tiles, lookups and
/// `latest` never are.
#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_module_in_the_store_fails_the_checksum_database() {
    use base64::Engine;
    use common::sumdb::{Rec, RefDb};
    use modfleet_proxy::protocol::sumdb::dirhash::hash_go_mod;
    use modfleet_proxy::protocol::zip::check_zip;
    use modfleet_proxy::protocol::{ModulePath, Version};
    use sha2::{Digest, Sha256};

    const GOOD: &str = "example.com/signed";
    let (good, evil) = (Corpus::new(), Corpus::new());
    good.add(
        GOOD,
        "v1.0.0",
        Some(&format!("module {GOOD}\n")),
        &[("a.go", b"package a\n")],
    );
    evil.add(
        GOOD,
        "v1.0.0",
        Some(&format!(
            "module {GOOD}\n\nrequire example.com/backdoor v1.0.0\n"
        )),
        &[("a.go", b"package a\n\nimport _ \"example.com/backdoor\"\n")],
    );
    let rel = |ext: &str| format!("{GOOD}/@v/v1.0.0.{ext}");
    let (zip, go_mod) = (good.read(&rel("zip")), good.read(&rel("mod")));
    let m = ModulePath::parse(GOOD).unwrap();
    let v = Version::parse(&m, "v1.0.0").unwrap();
    let h1_zip = check_zip(
        zip.as_slice(),
        zip.len() as u64,
        &m,
        &v,
        &Default::default(),
    )
    .unwrap()
    .h1;
    // 300 records, so that the tree has a full tile (256 hashes) for the store to keep.
    let mut records = vec![Rec(
        GOOD.into(),
        "v1.0.0".into(),
        h1_zip,
        hash_go_mod(&go_mod),
    )];
    for i in 0..299u32 {
        let h = |what: &str| {
            let digest = Sha256::digest(format!("{what}{i}"));
            format!(
                "h1:{}",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        };
        records.push(Rec(
            format!("example.com/filler{i}"),
            "v1.0.0".into(),
            h("zip"),
            h("mod"),
        ));
    }
    let db = RefDb::start(&records, None);
    let name = db.verifier.split('+').next().unwrap().to_string();
    let s3 = S3Server::start();
    let start = |dir: &tempfile::TempDir, up: &Upstream| {
        let (id, secret) = s3.credentials_files(dir.path());
        let cfg = config_file(
            dir.path(),
            &format!(
                "upstreams: [{{url: {up}}}]
sumdbs: [{{name: {name}, key: {key}, url: http://{addr}/}}]
verifySumdb: true
healthCheck: {{interval: 1h}}
objectStore:
  url: s3://{BUCKET}/fleet
  endpoint: {endpoint}
  allowHttp: true
  credentials: {{accessKeyIdFile: {id}, secretAccessKeyFile: {secret}}}
",
                up = up.url,
                key = db.verifier,
                addr = db.addr,
                endpoint = s3.endpoint,
                id = id.display(),
                secret = secret.display(),
            ),
        );
        Proxy::start(
            &dir.path().join("cache"),
            &["--config", cfg.to_str().unwrap(), "--verify-sumdb", "on"],
        )
    };

    let up_a = Upstream::serve(good.root());
    let dir_a = tempfile::tempdir().unwrap();
    let a = start(&dir_a, &up_a);
    for ext in ["mod", "zip"] {
        let r = a.get(&format!("/{}", rel(ext))).await;
        assert_eq!(r.status(), 200, "{ext}: {}", r.text().await.unwrap());
    }
    let artifacts = [format!("/{}", rel("mod")), format!("/{}", rel("zip"))];
    wait_stored(&s3, &artifacts).await;
    let tile = format!("{PREFIX}/sumdb/{name}/tile/8/0/000");
    wait_for("a full tile in the store", WAIT, || async {
        s3.object_file(&tile).is_file()
    })
    .await;
    drop(a);
    for o in s3.objects() {
        assert!(
            !o.contains(".p/") && !o.contains("/lookup/") && !o.ends_with("/latest"),
            "{o} may not be in the store"
        );
    }
    for ext in ["mod", "zip"] {
        std::fs::write(
            s3.object_file(&format!("{PREFIX}/{}", rel(ext))),
            evil.read(&rel(ext)),
        )
        .unwrap();
    }

    let up_b = Upstream::serve(good.root());
    let dir_b = tempfile::tempdir().unwrap();
    let b = start(&dir_b, &up_b);
    for ext in ["mod", "zip"] {
        let path = format!("/{}", rel(ext));
        let r = b.get(&path).await;
        assert_eq!(r.status(), 200, "{ext}: {}", r.text().await.unwrap());
        assert_eq!(r.bytes().await.unwrap(), good.read(&rel(ext)), "{ext}");
        assert_eq!(up_b.hits(&path), 1, "{ext} was not fetched upstream");
    }
    assert_eq!(
        b.metric(r#"modfleet_proxy_checksum_checks_total{outcome="mismatch"}"#)
            .await,
        2.0
    );
    assert_eq!(store_metric(&b, "reads", "invalid").await, 2.0);
    // The full tile came from the store (B never fetched it from the database or upstream).
    assert!(store_metric(&b, "reads", "hit").await >= 1.0);
    assert_eq!(up_b.hits(&format!("/sumdb/{name}/tile/8/0/000")), 0);
    drop(b);

    // The full tile in the store goes bad: an empty member's check fails on it, asks the
    // database itself for the tile, passes, and puts the database's tile back in the store.
    let tile_object = s3.object_file(&tile);
    let good_tile = std::fs::read(&tile_object).unwrap();
    let mut bad_tile = good_tile.clone();
    bad_tile[0] ^= 0x80;
    std::fs::write(&tile_object, &bad_tile).unwrap();
    let up_c = Upstream::serve(good.root());
    let dir_c = tempfile::tempdir().unwrap();
    let c = start(&dir_c, &up_c);
    let path = format!("/{}", rel("mod"));
    let r = c.get(&path).await;
    assert_eq!(r.status(), 200, "{}", c.logs());
    assert_eq!(r.bytes().await.unwrap(), good.read(&rel("mod")));
    assert!(
        c.logs()
            .contains("a kept checksum-database tile did not match the signed tree"),
        "{}",
        c.logs()
    );
    wait_for("the database's tile back in the store", WAIT, || async {
        std::fs::read(&tile_object).ok().as_deref() == Some(good_tile.as_slice())
    })
    .await;
    let on_disk = dir_c
        .path()
        .join(format!("cache/download/sumdb/{name}/tile/8/0/000"));
    assert_eq!(
        std::fs::read(on_disk).unwrap(),
        good_tile,
        "the disk copy is the database's"
    );
}

/// A missing credentials file stops the start (exit 2) with the key and the fix; so does a
/// bad URL.
#[test]
fn bad_store_settings_stop_the_start_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let run = |yaml: &str| {
        let cfg = config_file(dir.path(), yaml);
        Command::new(PROXY_BIN)
            .args(["--config", cfg.to_str().unwrap(), "--cache-dir"])
            .arg(dir.path().join("cache"))
            .env_remove("GOPROXY")
            .output()
            .unwrap()
    };
    let o = run("upstreams: [{url: http://127.0.0.1:1}]
objectStore:
  url: s3://modfleet/x
  credentials: {accessKeyIdFile: /nonexistent/id, secretAccessKeyFile: /nonexistent/secret}
");
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("objectStore.credentials.accessKeyIdFile /nonexistent/id")
            && e.contains("mount the Secret"),
        "{e}"
    );
    let o = run("upstreams: [{url: http://127.0.0.1:1}]\nobjectStore: {url: ftp://modfleet/x}\n");
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("unknown scheme ftp://") && e.contains("s3://BUCKET/PREFIX"),
        "{e}"
    );
}
