//! modfleet's checksum-database verification against the reference: golang.org/x/mod/sumdb's
//! own server (tests/support/sumdbtest, built here with the machine's `go env GOPROXY`) signing
//! a database of modules whose hashes this test computes, and the real sum.golang.org through
//! the machine's Go module proxy (`<GOPROXY>/sumdb/sum.golang.org/`, read at run time).

mod common;

use common::sumdb::{Rec, RefDb};

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use modfleet_proxy::protocol::sumdb::dirhash::hash_go_mod;
use modfleet_proxy::protocol::sumdb::{
    Artifact, Checker, SourceError, SumdbError, SumdbSource, known_key,
};
use modfleet_proxy::protocol::zip::{check_zip, check_zip_file};
use modfleet_proxy::protocol::{ModulePath, Version};

/// The checker's seam over HTTP, with an attacker's knob: flip a bit of every tile. The base
/// URL can change, as when a database restarts elsewhere.
struct HttpSource {
    base: Mutex<String>,
    client: reqwest::Client,
    tamper_tiles: AtomicBool,
}

impl HttpSource {
    fn new(base: String) -> Arc<HttpSource> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Arc::new(HttpSource {
            base: Mutex::new(base),
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap(),
            tamper_tiles: AtomicBool::new(false),
        })
    }
}

impl SumdbSource for HttpSource {
    fn get<'a>(
        &'a self,
        path: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, SourceError>> {
        Box::pin(async move {
            let failed = |e: reqwest::Error| SourceError::Failed(e.to_string());
            let mut r = self
                .client
                .get(format!("{}{path}", self.base.lock().unwrap()))
                .send()
                .await
                .map_err(failed)?;
            match r.status().as_u16() {
                200 => {}
                404 | 410 => return Err(SourceError::NotFound),
                s => return Err(SourceError::Failed(format!("{path}: HTTP {s}"))),
            }
            let mut body = Vec::new();
            while let Some(chunk) = r.chunk().await.map_err(failed)? {
                if body.len() + chunk.len() > max_bytes {
                    return Err(SourceError::TooLarge { limit: max_bytes });
                }
                body.extend_from_slice(&chunk);
            }
            if path.starts_with("tile/") && self.tamper_tiles.load(Ordering::Relaxed) {
                body[0] ^= 0x80;
            }
            Ok(Bytes::from(body))
        })
    }
}

fn mv(module: &str, version: &str) -> (ModulePath, Version) {
    let m = ModulePath::parse(module).unwrap();
    let v = Version::parse(&m, version).unwrap();
    (m, v)
}

/// A module zip and go.mod for module@version, and their h1: hashes.
struct Module {
    path: String,
    version: String,
    zip: Vec<u8>,
    go_mod: Vec<u8>,
}

impl Module {
    fn new(path: &str, version: &str, content: &str) -> Module {
        let go_mod = format!("module {path}\n\ngo 1.22\n").into_bytes();
        let prefix = format!("{path}@{version}/");
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        for (name, data) in [
            ("go.mod", &go_mod[..]),
            ("main.go", content.as_bytes()),
            ("sub/LICENSE", b"BSD\n"),
        ] {
            w.start_file(format!("{prefix}{name}"), opts).unwrap();
            w.write_all(data).unwrap();
        }
        let zip = w.finish().unwrap().into_inner();
        Module {
            path: path.into(),
            version: version.into(),
            zip,
            go_mod,
        }
    }

    fn zip_h1(&self) -> String {
        let (m, v) = mv(&self.path, &self.version);
        let z = self.zip.as_slice();
        check_zip(z, z.len() as u64, &m, &v, &Default::default())
            .unwrap()
            .h1
    }

    fn mod_h1(&self) -> String {
        hash_go_mod(&self.go_mod)
    }

    fn rec(&self) -> Rec {
        Rec(
            self.path.clone(),
            self.version.clone(),
            self.zip_h1(),
            self.mod_h1(),
        )
    }

    async fn check(&self, c: &Checker, artifact: Artifact, h1: &str) -> Result<(), SumdbError> {
        let (m, v) = mv(&self.path, &self.version);
        c.check(&m, &v, artifact, h1).await
    }
}

/// Modules whose paths and versions exercise escaping (capitals), +incompatible and
/// pseudo-versions, after enough filler records that the tree spans two tile levels.
fn corpus() -> (Vec<Module>, Vec<Rec>) {
    let modules = vec![
        Module::new("example.com/hello", "v1.0.0", "package hello\n"),
        Module::new("github.com/BurntSushi/Toml", "v1.3.2", "package toml\n"),
        Module::new("example.com/old", "v2.0.0+incompatible", "package old\n"),
        Module::new(
            "example.com/pseudo/v3",
            "v3.0.0-20240101000000-abcdefabcdef",
            "package pseudo\n",
        ),
    ];
    let mut recs: Vec<Rec> = (0..300)
        .map(|i| {
            Module::new(
                &format!("example.com/fill/m{i}"),
                "v1.0.0",
                &format!("// {i}\n"),
            )
            .rec()
        })
        .collect();
    recs.extend(modules.iter().map(Module::rec));
    (modules, recs)
}

#[tokio::test(flavor = "multi_thread")]
async fn hashes_are_checked_against_the_reference_database() {
    let (modules, recs) = corpus();
    let db = RefDb::start(&recs, None);
    let state = tempfile::tempdir().unwrap();
    let c = Checker::open(&db.verifier, db.source_http(), state.path().join("latest")).unwrap();
    for m in &modules {
        m.check(&c, Artifact::Zip, &m.zip_h1()).await.unwrap();
        m.check(&c, Artifact::GoMod, &m.mod_h1()).await.unwrap();
    }
    assert_eq!(c.latest().n, 304);

    // A zip with one byte changed, a go.mod naming another module: mismatches naming both.
    let hello = &modules[0];
    let mut evil = Module::new(
        &hello.path,
        &hello.version,
        "package hello\n\nfunc init() {}\n",
    );
    let err = hello
        .check(&c, Artifact::Zip, &evil.zip_h1())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SumdbError::Mismatch {
            db: "sum.test.example".into(),
            module: hello.path.clone(),
            version: hello.version.clone(),
            artifact: Artifact::Zip,
            got: evil.zip_h1(),
            want: hello.zip_h1(),
        }
    );
    evil.go_mod = b"module example.com/evil\n".to_vec();
    let err = hello
        .check(&c, Artifact::GoMod, &evil.mod_h1())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SumdbError::Mismatch { artifact: Artifact::GoMod, want, .. } if *want == hello.mod_h1()),
        "{err}"
    );
    assert!(err.is_security_event());

    // A module the database does not have.
    let (m, v) = mv("example.com/unknown", "v1.0.0");
    let err = c.check(&m, &v, Artifact::Zip, "h1:x").await.unwrap_err();
    assert!(matches!(err, SumdbError::NotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_note_signed_by_another_key_fails() {
    let (modules, recs) = corpus();
    let db = RefDb::start(&recs, None);
    let impostor = RefDb::start(&recs, None);
    assert_ne!(db.verifier, impostor.verifier);
    let state = tempfile::tempdir().unwrap();
    let c = Checker::open(
        &db.verifier,
        impostor.source_http(),
        state.path().join("latest"),
    )
    .unwrap();
    let m = &modules[1];
    let err = m.check(&c, Artifact::Zip, &m.zip_h1()).await.unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("not signed by")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_tile_fails() {
    let (modules, recs) = corpus();
    let db = RefDb::start(&recs, None);
    let source = db.source_http();
    let state = tempfile::tempdir().unwrap();
    let c = Checker::open(&db.verifier, source.clone(), state.path().join("latest")).unwrap();
    source.tamper_tiles.store(true, Ordering::Relaxed);
    let m = &modules[2];
    let err = m.check(&c, Artifact::Zip, &m.zip_h1()).await.unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("tiles do not match")),
        "{err}"
    );
    source.tamper_tiles.store(false, Ordering::Relaxed);
    m.check(&c, Artifact::Zip, &m.zip_h1()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_restarted_with_another_history_is_detected() {
    let (modules, recs) = corpus();
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("sum.test.example/latest");
    let db = RefDb::start(&recs, None);
    let source = db.source_http();
    let c = Checker::open(&db.verifier, source.clone(), &state_file).unwrap();
    let m = &modules[3];
    m.check(&c, Artifact::GoMod, &m.mod_h1()).await.unwrap();
    let (signer, verifier) = (db.signer.clone(), db.verifier.clone());
    drop(db);

    // Same key, another history: the first record differs and the log is longer.
    let mut forked = vec![Module::new("example.com/evil", "v1.0.0", "package evil\n").rec()];
    forked.extend(recs.into_iter().skip(1));
    forked.push(Module::new("example.com/later", "v1.0.0", "package later\n").rec());
    let db = RefDb::start(&forked, Some(&signer));
    assert_eq!(db.verifier, verifier);
    *source.base.lock().unwrap() = format!("http://{}/", db.addr);

    // The restarted process reads the tree it verified before from the state file.
    let restarted = Checker::open(&verifier, db.source_http(), &state_file).unwrap();
    assert_eq!(restarted.latest().n, 304);
    let later = Module::new("example.com/later", "v1.0.0", "package later\n");
    let err = later
        .check(&restarted, Artifact::Zip, &later.zip_h1())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("forked")),
        "{err}"
    );
    // The process that saw the first history detects the fork as well.
    let err = later
        .check(&c, Artifact::Zip, &later.zip_h1())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("forked")),
        "{err}"
    );
    // What catches it is the tree seen before: alone, the new history is self-consistent.
    let fresh = Checker::open(&verifier, db.source_http(), state.path().join("fresh")).unwrap();
    later
        .check(&fresh, Artifact::Zip, &later.zip_h1())
        .await
        .unwrap();
}

#[test]
fn the_known_keys_are_the_go_commands() {
    common::require_tool("go", "the checksum-database reference tests");
    let out = Command::new("go").args(["env", "GOROOT"]).output().unwrap();
    let goroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let key_go = goroot.join("src/cmd/go/internal/modfetch/key.go");
    let text = std::fs::read_to_string(&key_go).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the Go sources come with the toolchain)",
            key_go.display()
        )
    });
    for (name, key) in modfleet_contract::defaults::KNOWN_SUMDB_KEYS {
        assert!(
            text.contains(&format!("\"{name}\": \"{key}\"")),
            "{} does not list {name} as {key}:\n{text}",
            key_go.display()
        );
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Download {
    path: String,
    version: String,
    zip: PathBuf,
    go_mod: PathBuf,
    sum: String,
    go_mod_sum: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn real_modules_verify_against_the_real_database() {
    let proxy = modfleet_testkit::go::machine_goproxy();
    let base = format!("{proxy}/sumdb/sum.golang.org/");
    let source = HttpSource::new(base.clone());
    let supported = source
        .client
        .get(format!("{base}supported"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        supported, 200,
        "{base}supported: the machine's Go module proxy must proxy the checksum database"
    );

    let home = tempfile::tempdir().unwrap();
    let out = Command::new("go")
        .args([
            "mod",
            "download",
            "-json",
            "golang.org/x/text@v0.14.0",
            "github.com/BurntSushi/toml@v1.3.2",
        ])
        .current_dir(home.path())
        .env("GOMODCACHE", home.path().join("modcache"))
        .env("GOPATH", home.path().join("gopath"))
        .env("GOFLAGS", "-modcacherw")
        .env("GOTOOLCHAIN", "local")
        .env_remove("GOSUMDB")
        .env_remove("GONOSUMDB")
        .env_remove("GOPRIVATE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go mod download: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let downloads: Vec<Download> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(downloads.len(), 2);

    let state = tempfile::tempdir().unwrap();
    let c = Checker::open(
        known_key("sum.golang.org").unwrap(),
        source,
        state.path().join("latest"),
    )
    .unwrap();
    for d in &downloads {
        // modfleet's h1: hashes are the go command's.
        assert_eq!(
            {
                let (m, v) = mv(&d.path, &d.version);
                check_zip_file(&d.zip, &m, &v).unwrap().h1
            },
            d.sum,
            "{}",
            d.path
        );
        assert_eq!(
            hash_go_mod(&std::fs::read(&d.go_mod).unwrap()),
            d.go_mod_sum
        );
        let (m, v) = mv(&d.path, &d.version);
        c.check(&m, &v, Artifact::Zip, &d.sum).await.unwrap();
        c.check(&m, &v, Artifact::GoMod, &d.go_mod_sum)
            .await
            .unwrap();
        let err = c
            .check(&m, &v, Artifact::Zip, &d.go_mod_sum)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SumdbError::Mismatch { want, .. } if *want == d.sum),
            "{err}"
        );
    }
    let latest = c.latest();
    assert!(
        latest.n > 1_000_000,
        "the real tree has {} records",
        latest.n
    );
    let persisted = std::fs::read_to_string(state.path().join("latest")).unwrap();
    assert!(
        persisted.starts_with(&format!("go.sum database tree\n{}\n", latest.n)),
        "{persisted}"
    );

    let (m, v) = mv("github.com/golang/text-does-not-exist-modfleet", "v1.0.0");
    let err = c.check(&m, &v, Artifact::Zip, "h1:x").await.unwrap_err();
    assert!(matches!(err, SumdbError::NotFound { .. }), "{err}");
}

/// The reference database as the checker's source, over plain HTTP.
trait HttpSourceOf {
    fn source_http(&self) -> Arc<HttpSource>;
}

impl HttpSourceOf for RefDb {
    fn source_http(&self) -> Arc<HttpSource> {
        HttpSource::new(format!("http://{}/", self.addr))
    }
}
