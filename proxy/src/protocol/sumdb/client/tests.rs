//! Failure modes of the [`Checker`] against an in-process database built from the tlog
//! functions (the reference server is in tests/sumdb_reference.rs). No sleeps: every source
//! answers at once or never.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;

use super::*;
use crate::protocol::sumdb::note::signer::Signer;
use crate::protocol::sumdb::tlog::tile::{parse_tile_path, read_tile_data};
use crate::protocol::sumdb::tlog::{format_record, format_tree, stored_hashes, tree_hash};

/// A checksum database in memory, serving lookups and hash tiles as sum.golang.org does.
struct Db {
    signer: Signer,
    records: Vec<Vec<u8>>,
    hashes: Vec<tlog::Hash>,
    ids: HashMap<String, u64>,
}

impl Db {
    fn new(seed: u8) -> Db {
        Db {
            signer: Signer::from_seed("sum.test.example", [seed; 32]),
            records: Vec::new(),
            hashes: Vec::new(),
            ids: HashMap::new(),
        }
    }

    fn add(&mut self, module: &str, version: &str, zip: &str, go_mod: &str) {
        let text = format!("{module} {version} {zip}\n{module} {version}/go.mod {go_mod}\n");
        let id = self.records.len() as u64;
        let hashes = stored_hashes(id, text.as_bytes(), &self.hashes).unwrap();
        self.hashes.extend(hashes);
        self.records.push(text.into_bytes());
        self.ids.insert(lookup_path(module, version), id);
    }

    /// Adds `n` filler modules.
    fn fill(&mut self, n: usize) {
        for _ in 0..n {
            let i = self.records.len();
            self.add(
                &format!("example.com/fill{i}"),
                "v1.0.0",
                &h1(i),
                &h1(i + 1),
            );
        }
    }

    fn tree(&self) -> Tree {
        let n = self.records.len() as u64;
        Tree {
            n,
            hash: tree_hash(n, &self.hashes).unwrap(),
        }
    }

    fn signed(&self) -> Vec<u8> {
        self.signer.sign(&format_tree(self.tree()))
    }

    fn lookup(&self, path: &str) -> Option<Vec<u8>> {
        let id = *self.ids.get(path)?;
        let mut body = format_record(id, &self.records[id as usize]).unwrap();
        body.extend(self.signed());
        Some(body)
    }

    /// A hash tile of the current tree, if the tree has it.
    fn tile(&self, path: &str) -> Option<Vec<u8>> {
        let tile = parse_tile_path(path).ok()?;
        let level_size = self.tree().n.checked_shr(tile.h * tile.l as u32)?;
        if tile.l < 0 || (tile.n << tile.h) + u64::from(tile.w) > level_size {
            return None;
        }
        read_tile_data(tile, &self.hashes).ok()
    }
}

fn lookup_path(module: &str, version: &str) -> String {
    let m = ModulePath::parse(module).unwrap();
    let v = Version::parse(&m, version).unwrap();
    format!("lookup/{}@{}", m.escaped(), v.escaped())
}

/// A distinct well-formed `h1:` per number.
fn h1(i: usize) -> String {
    super::super::dirhash::hash_go_mod(i.to_string().as_bytes())
}

/// The database behind a [`SumdbSource`], with an attacker's knobs.
struct Fake {
    db: Mutex<Db>,
    /// Flip a bit in every tile served.
    tamper_tiles: AtomicBool,
    /// Answer NotFound for partial tiles whose full tile exists (as after a cache of full
    /// tiles only).
    full_tiles_only: AtomicBool,
    /// Flip a bit in every full tile `get` serves, but not in what `refetch` serves: a copy
    /// kept on the way (disk, peer, store) went bad; the database is fine.
    kept_tiles_tampered: AtomicBool,
    refetches: Mutex<Vec<String>>,
    /// Fail every request.
    down: AtomicBool,
    /// Never answer.
    hang: AtomicBool,
    /// Lookups answered with these bodies instead of the database's.
    canned: Mutex<HashMap<String, Vec<u8>>>,
    gets: Mutex<Vec<String>>,
}

impl Fake {
    fn new(db: Db) -> Arc<Fake> {
        Arc::new(Fake {
            db: Mutex::new(db),
            tamper_tiles: AtomicBool::new(false),
            full_tiles_only: AtomicBool::new(false),
            kept_tiles_tampered: AtomicBool::new(false),
            refetches: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            hang: AtomicBool::new(false),
            canned: Mutex::new(HashMap::new()),
            gets: Mutex::new(Vec::new()),
        })
    }

    fn serve(&self, path: &str) -> Result<Bytes, SourceError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(SourceError::Failed("connection refused".into()));
        }
        if let Some(body) = self.canned.lock().unwrap().get(path) {
            return Ok(Bytes::from(body.clone()));
        }
        let db = self.db.lock().unwrap();
        if path.starts_with("lookup/") {
            return db
                .lookup(path)
                .map(Bytes::from)
                .ok_or(SourceError::NotFound);
        }
        if self.full_tiles_only.load(Ordering::Relaxed)
            && let Ok(t) = parse_tile_path(path)
            && !t.is_full()
            && db.tile(&t.full().path()).is_some()
        {
            return Err(SourceError::NotFound);
        }
        let mut data = db.tile(path).ok_or(SourceError::NotFound)?;
        if self.tamper_tiles.load(Ordering::Relaxed) {
            data[0] ^= 0x80;
        }
        Ok(Bytes::from(data))
    }

    fn gets(&self) -> Vec<String> {
        self.gets.lock().unwrap().clone()
    }
}

impl SumdbSource for Fake {
    fn refetch<'a>(
        &'a self,
        path: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, SourceError>> {
        Box::pin(async move {
            self.refetches.lock().unwrap().push(path.to_string());
            let body = self.serve(path)?;
            if body.len() > max_bytes {
                return Err(SourceError::TooLarge { limit: max_bytes });
            }
            Ok(body)
        })
    }

    fn get<'a>(
        &'a self,
        path: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, SourceError>> {
        Box::pin(async move {
            self.gets.lock().unwrap().push(path.to_string());
            if self.hang.load(Ordering::Relaxed) {
                futures::future::pending::<()>().await;
            }
            let mut body = self.serve(path)?;
            if self.kept_tiles_tampered.load(Ordering::Relaxed)
                && parse_tile_path(path).is_ok_and(|t| t.is_full())
            {
                let mut data = body.to_vec();
                data[0] ^= 0x80;
                body = Bytes::from(data);
            }
            if body.len() > max_bytes {
                return Err(SourceError::TooLarge { limit: max_bytes });
            }
            Ok(body)
        })
    }
}

fn mv(module: &str, version: &str) -> (ModulePath, Version) {
    let m = ModulePath::parse(module).unwrap();
    let v = Version::parse(&m, version).unwrap();
    (m, v)
}

struct Setup {
    fake: Arc<Fake>,
    state: tempfile::TempDir,
    key: String,
}

impl Setup {
    /// A database with `filler` records, then example.com/a v1.0.0 (zip h1(1000), mod h1(1001)).
    fn new(filler: usize) -> Setup {
        let mut db = Db::new(1);
        db.fill(filler);
        db.add("example.com/a", "v1.0.0", &h1(1000), &h1(1001));
        let key = db.signer.verifier_key();
        Setup {
            fake: Fake::new(db),
            state: tempfile::tempdir().unwrap(),
            key,
        }
    }

    fn state_file(&self) -> PathBuf {
        self.state.path().join("sumdb/latest")
    }

    fn checker(&self) -> Checker {
        Checker::open(&self.key, self.fake.clone(), self.state_file()).unwrap()
    }
}

async fn check_a(c: &Checker, artifact: Artifact, h: &str) -> Result<(), SumdbError> {
    let (m, v) = mv("example.com/a", "v1.0.0");
    c.check(&m, &v, artifact, h).await
}

#[tokio::test]
async fn correct_hashes_verify_and_the_record_is_reused() {
    let s = Setup::new(300);
    let c = s.checker();
    check_a(&c, Artifact::Zip, &h1(1000)).await.unwrap();
    let gets = s.fake.gets();
    assert_eq!(gets[0], "lookup/example.com/a@v1.0.0");
    assert!(
        gets[1..].iter().all(|p| p.starts_with("tile/8/")),
        "{gets:?}"
    );
    check_a(&c, Artifact::GoMod, &h1(1001)).await.unwrap();
    assert_eq!(s.fake.gets(), gets, "the verified record is kept in memory");
    assert_eq!(c.latest(), s.fake.db.lock().unwrap().tree());
}

#[tokio::test]
async fn wrong_hashes_are_mismatches_that_name_both_hashes() {
    let s = Setup::new(3);
    let c = s.checker();
    let err = check_a(&c, Artifact::Zip, &h1(7)).await.unwrap_err();
    assert_eq!(
        err,
        SumdbError::Mismatch {
            db: "sum.test.example".into(),
            module: "example.com/a".into(),
            version: "v1.0.0".into(),
            artifact: Artifact::Zip,
            got: h1(7),
            want: h1(1000),
        }
    );
    assert!(err.is_security_event());
    assert!(err.to_string().contains("SECURITY"), "{err}");
    // The go.mod hash in the place of the zip's is a mismatch too: the lines are distinct.
    let err = check_a(&c, Artifact::GoMod, &h1(1000)).await.unwrap_err();
    assert!(
        matches!(&err, SumdbError::Mismatch { artifact: Artifact::GoMod, want, .. } if *want == h1(1001)),
        "{err}"
    );
}

#[tokio::test]
async fn a_module_the_database_does_not_know_is_not_found() {
    let s = Setup::new(3);
    let (m, v) = mv("example.com/Unknown", "v1.2.3");
    let err = s
        .checker()
        .check(&m, &v, Artifact::Zip, &h1(1))
        .await
        .unwrap_err();
    assert!(matches!(err, SumdbError::NotFound { .. }), "{err}");
    assert!(!err.is_security_event());
    assert_eq!(s.fake.gets(), ["lookup/example.com/!unknown@v1.2.3"]);
}

#[tokio::test]
async fn a_note_signed_by_another_key_is_invalid() {
    let s = Setup::new(3);
    let other = Signer::from_seed("sum.test.example", [2; 32]);
    let c = Checker::open(&other.verifier_key(), s.fake.clone(), s.state_file()).unwrap();
    let err = check_a(&c, Artifact::Zip, &h1(1000)).await.unwrap_err();
    let SumdbError::Invalid { reason, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        reason.contains("not signed by sum.test.example+"),
        "{reason}"
    );
    assert!(err.is_security_event());
}

#[tokio::test]
async fn a_forged_signature_or_record_is_invalid() {
    let s = Setup::new(3);
    let path = lookup_path("example.com/a", "v1.0.0");
    let good = s.fake.db.lock().unwrap().lookup(&path).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();

    // The record's zip hash replaced: no longer the record in the signed tree.
    let forged = text.replacen(&h1(1000), &h1(7), 1);
    s.fake
        .canned
        .lock()
        .unwrap()
        .insert(path.clone(), forged.into_bytes());
    let err = check_a(&s.checker(), Artifact::Zip, &h1(7))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("not the record in the signed tree")),
        "{err}"
    );

    // A byte of the signature changed.
    let sig_at = text.rfind("— ").unwrap() + "— sum.test.example ".len() + 10;
    let mut forged = good.clone();
    forged[sig_at] = if forged[sig_at] == b'A' { b'B' } else { b'A' };
    s.fake.canned.lock().unwrap().insert(path.clone(), forged);
    let err = check_a(&s.checker(), Artifact::Zip, &h1(1000))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("invalid signature")),
        "{err}"
    );

    // A record id past the signed tree.
    let forged = text.replacen("3\n", "99\n", 1);
    s.fake
        .canned
        .lock()
        .unwrap()
        .insert(path, forged.into_bytes());
    let err = check_a(&s.checker(), Artifact::Zip, &h1(1000))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("not in the signed tree")),
        "{err}"
    );
}

#[tokio::test]
async fn a_tampered_tile_is_invalid_and_not_kept() {
    let s = Setup::new(600);
    let c = s.checker();
    s.fake.tamper_tiles.store(true, Ordering::Relaxed);
    let err = check_a(&c, Artifact::Zip, &h1(1000)).await.unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("tiles do not match")),
        "{err}"
    );
    s.fake.tamper_tiles.store(false, Ordering::Relaxed);
    check_a(&c, Artifact::Zip, &h1(1000)).await.unwrap();
}

#[tokio::test]
async fn a_forked_database_is_detected_across_restarts() {
    // 300 records: the level-1 tile 1/000.p/1 is the same tile in both histories.
    let s = Setup::new(299);
    let running = s.checker();
    check_a(&running, Artifact::Zip, &h1(1000)).await.unwrap();
    let seen = s.fake.db.lock().unwrap().signed();
    assert_eq!(
        std::fs::read(s.state_file()).unwrap(),
        seen,
        "the tree is persisted"
    );

    // The same key now signs another history: record 0 differs, and the tree is larger.
    let mut forked = Db::new(1);
    forked.add("example.com/evil", "v1.0.0", &h1(1), &h1(2));
    forked.fill(299);
    forked.add("example.com/a", "v1.0.0", &h1(1000), &h1(1001));
    forked.fill(10);
    *s.fake.db.lock().unwrap() = forked;

    let restarted = s.checker();
    assert_eq!(restarted.latest().n, 300, "starts from the persisted tree");
    let err = check_a(&restarted, Artifact::Zip, &h1(1000))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("forked")),
        "{err}"
    );
    assert_eq!(
        std::fs::read(s.state_file()).unwrap(),
        seen,
        "a fork never replaces the persisted tree"
    );
    // The running process sees it too, although it holds tiles of the first history.
    let (m, v) = mv("example.com/fill3", "v1.0.0");
    let err = running
        .check(&m, &v, Artifact::Zip, &h1(3))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("forked")),
        "{err}"
    );

    // Without the persisted tree, the forked history alone is self-consistent.
    let fresh = Checker::open(&s.key, s.fake.clone(), s.state.path().join("other")).unwrap();
    check_a(&fresh, Artifact::Zip, &h1(1000)).await.unwrap();
}

#[tokio::test]
async fn the_same_size_with_another_hash_is_invalid() {
    let s = Setup::new(5);
    let c = s.checker();
    check_a(&c, Artifact::Zip, &h1(1000)).await.unwrap();
    let mut other = Db::new(1);
    other.fill(5);
    other.add("example.com/b", "v1.0.0", &h1(3), &h1(4));
    *s.fake.db.lock().unwrap() = other;
    let (m, v) = mv("example.com/b", "v1.0.0");
    let err = c.check(&m, &v, Artifact::Zip, &h1(3)).await.unwrap_err();
    assert!(matches!(err, SumdbError::Invalid { .. }), "{err}");
}

#[tokio::test]
async fn a_growing_database_stays_consistent_under_concurrent_checks() {
    let s = Setup::new(100);
    let c = s.checker();
    check_a(&c, Artifact::Zip, &h1(1000)).await.unwrap();
    let mut modules = Vec::new();
    for round in 0..4 {
        {
            let mut db = s.fake.db.lock().unwrap();
            db.fill(150);
            let name = format!("example.com/round{round}");
            db.add(&name, "v1.0.0", &h1(round), &h1(round + 1));
            modules.push((name, round));
        }
        let checks = modules.iter().map(|(name, i)| {
            let c = &c;
            async move {
                let (m, v) = mv(name, "v1.0.0");
                c.check(&m, &v, Artifact::GoMod, &h1(i + 1)).await
            }
        });
        for r in join_all(checks).await {
            r.unwrap();
        }
        assert_eq!(c.latest(), s.fake.db.lock().unwrap().tree());
    }
    let persisted = Checker::open(&s.key, s.fake.clone(), s.state_file()).unwrap();
    assert_eq!(persisted.latest(), c.latest());
}

#[tokio::test]
async fn a_partial_tile_that_is_gone_is_cut_from_the_full_tile() {
    // A lookup cached by a proxy names tree 600; the database has moved on to 800, and only
    // full tiles are served where they exist.
    let s = Setup::new(599);
    let path = lookup_path("example.com/a", "v1.0.0");
    let stale = s.fake.db.lock().unwrap().lookup(&path).unwrap();
    s.fake.canned.lock().unwrap().insert(path, stale);
    s.fake.db.lock().unwrap().fill(200);
    s.fake.full_tiles_only.store(true, Ordering::Relaxed);
    check_a(&s.checker(), Artifact::Zip, &h1(1000))
        .await
        .unwrap();
    let gets: HashSet<String> = s.fake.gets().into_iter().collect();
    assert!(gets.contains("tile/8/0/002.p/88"), "{gets:?}");
    assert!(gets.contains("tile/8/0/002"), "{gets:?}");
}

#[tokio::test]
async fn failures_of_the_source_are_unavailable_and_time_is_bounded() {
    let s = Setup::new(3);
    s.fake.down.store(true, Ordering::Relaxed);
    let err = check_a(&s.checker(), Artifact::Zip, &h1(1000))
        .await
        .unwrap_err();
    assert!(matches!(err, SumdbError::Unavailable { .. }), "{err}");
    assert!(!err.is_security_event());

    s.fake.down.store(false, Ordering::Relaxed);
    s.fake.hang.store(true, Ordering::Relaxed);
    let c = s.checker().with_limits(Limits {
        deadline: Duration::from_millis(50),
        ..Limits::default()
    });
    let err = check_a(&c, Artifact::Zip, &h1(1000)).await.unwrap_err();
    assert!(
        matches!(&err, SumdbError::Unavailable { reason, .. } if reason.contains("within")),
        "{err}"
    );
}

#[tokio::test]
async fn answers_and_tile_fetches_are_bounded() {
    let s = Setup::new(600);
    let c = s.checker().with_limits(Limits {
        tile_fetches: 1,
        ..Limits::default()
    });
    let err = check_a(&c, Artifact::Zip, &h1(1000)).await.unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("more than 1 tile fetches")),
        "{err}"
    );

    let path = lookup_path("example.com/a", "v1.0.0");
    let huge = format!("3\n{}\n\n", "x".repeat(MAX_LOOKUP_BYTES)).into_bytes();
    s.fake.canned.lock().unwrap().insert(path, huge);
    let err = check_a(&s.checker(), Artifact::Zip, &h1(1000))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SumdbError::Invalid { reason, .. } if reason.contains("larger than")),
        "{err}"
    );
}

#[tokio::test]
async fn the_state_file_is_checked_at_open_and_never_rolled_back() {
    let s = Setup::new(10);
    // Not a signed tree, signed by another key, too large: refused with the fix in the message.
    for bad in [
        b"garbage".to_vec(),
        Signer::from_seed("sum.test.example", [9; 32]).sign(&format_tree(Tree {
            n: 1,
            hash: empty_hash(),
        })),
        vec![b'x'; MAX_NOTE_BYTES + 1],
    ] {
        write_atomically(&s.state_file(), &bad).unwrap();
        let err = Checker::open(&s.key, s.fake.clone(), s.state_file()).unwrap_err();
        assert!(matches!(err, CheckerError::BadState { .. }), "{err}");
        assert!(err.to_string().contains("delete the file"), "{err}");
    }
    std::fs::write(s.state_file(), b"").unwrap();
    assert_eq!(s.checker().latest().n, 0, "an empty file is the empty tree");

    // Checker `old` starts at tree 11; `new` persists tree 20; `old` then verifies a stale
    // lookup of tree 11 and must not write it over tree 20.
    let old = s.checker();
    let stale_path = lookup_path("example.com/a", "v1.0.0");
    let stale = s.fake.db.lock().unwrap().lookup(&stale_path).unwrap();
    s.fake.db.lock().unwrap().fill(9);
    let new = s.checker();
    let (m, v) = mv("example.com/fill15", "v1.0.0");
    new.check(&m, &v, Artifact::Zip, &h1(15)).await.unwrap();
    let newest = std::fs::read(s.state_file()).unwrap();
    s.fake.canned.lock().unwrap().insert(stale_path, stale);
    check_a(&old, Artifact::Zip, &h1(1000)).await.unwrap();
    assert_eq!(std::fs::read(s.state_file()).unwrap(), newest);
}

#[test]
fn records_give_the_lines_of_each_artifact() {
    let (m, v) = mv("example.com/a", "v1.0.0");
    let r = VerifiedRecord {
        id: 0,
        text: Arc::from(
            "example.com/a v1.0.0 h1:zip=\nexample.com/a v1.0.0 h2:future\nexample.com/a v1.0.0/go.mod h1:mod=\n",
        ),
    };
    assert_eq!(r.h1(&m, &v, Artifact::Zip), Some("h1:zip="));
    assert_eq!(r.h1(&m, &v, Artifact::GoMod), Some("h1:mod="));
    assert_eq!(r.lines(&m, &v, Artifact::Zip).count(), 2);
}

#[tokio::test]
async fn a_state_file_that_cannot_be_written_is_counted_not_fatal() {
    let s = Setup::new(3);
    let dir = s.state.path().join("gone");
    let c = Checker::open(&s.key, s.fake.clone(), dir.join("latest")).unwrap();
    std::fs::write(&dir, b"a file where the directory should be").unwrap();
    check_a(&c, Artifact::Zip, &h1(1000)).await.unwrap();
    assert_eq!(c.persist_failures(), 1);
}

/// The fetch path spawns checks: their futures must be Send.
#[allow(dead_code)]
fn checks_can_be_spawned(c: &'static Checker, m: &'static ModulePath, v: &'static Version) {
    tokio::spawn(c.check(m, v, Artifact::Zip, "h1:"));
    tokio::spawn(c.lookup(m, v));
}

#[tokio::test]
async fn a_bad_kept_tile_is_refetched_from_the_database_and_the_check_passes() {
    // 256 records: example.com/a is the last hash of the first full tile.
    let s = Setup::new(255);
    let c = s.checker();
    s.fake.kept_tiles_tampered.store(true, Ordering::Relaxed);
    check_a(&c, Artifact::Zip, &h1(1000)).await.unwrap();
    let refetched = s.fake.refetches.lock().unwrap().clone();
    assert!(
        !refetched.is_empty(),
        "no tile was asked of the database again"
    );
    assert!(
        refetched
            .iter()
            .all(|p| parse_tile_path(p).is_ok_and(|t| t.is_full())),
        "only full tiles are kept on the way: {refetched:?}"
    );
    // A tampered database (every answer, refetched or not) is still refused.
    let s = Setup::new(255);
    s.fake.tamper_tiles.store(true, Ordering::Relaxed);
    let err = check_a(&s.checker(), Artifact::Zip, &h1(1000))
        .await
        .unwrap_err();
    assert!(matches!(&err, SumdbError::Invalid { .. }), "{err}");
}
