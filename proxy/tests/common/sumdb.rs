//! The reference checksum database: golang.org/x/mod/sumdb's own server
//! (tests/support/sumdbtest, built here with the machine's `go env GOPROXY`), signing the
//! records a test gives it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The reference server's binary, built once per test run.
pub fn sumdbtest_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        super::require_tool("go", "the checksum-database reference tests");
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sumdbtest");
        modfleet_testkit::go::program(&src, ".")
    })
}

/// One record: module, version, zip hash, go.mod hash.
pub struct Rec(pub String, pub String, pub String, pub String);

/// A running reference database; stopped on drop.
pub struct RefDb {
    child: Child,
    pub addr: String,
    pub signer: String,
    pub verifier: String,
    _records: tempfile::TempDir,
}

impl RefDb {
    /// Serves `records` (in this order), signed with `signer` or a fresh key.
    pub fn start(records: &[Rec], signer: Option<&str>) -> RefDb {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("records");
        let mut text = String::new();
        for Rec(m, v, z, g) in records {
            text.push_str(&format!("{m} {v} {z} {g}\n"));
        }
        std::fs::write(&file, text).unwrap();
        let mut cmd = Command::new(sumdbtest_binary());
        cmd.arg("-records").arg(&file);
        if let Some(s) = signer {
            cmd.args(["-signer", s]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sumdbtest");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut field = |want: &str| {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("sumdbtest exited before printing {want}"))
                .unwrap();
            line.strip_prefix(&format!("{want} "))
                .unwrap_or_else(|| panic!("sumdbtest printed {line:?}, want {want}"))
                .to_string()
        };
        let (signer, verifier, addr) = (field("signer"), field("verifier"), field("addr"));
        RefDb {
            child,
            addr,
            signer,
            verifier,
            _records: dir,
        }
    }
}

impl Drop for RefDb {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // it exits when stdin closes
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds `module` v1.0.0 to `good`, and to `evil` a tampered copy that is valid on its own
/// (another go.mod requiring a backdoor, other code): what a compromised mirror, store or
/// fleet member would serve.
pub fn add_tampered(good: &super::Corpus, evil: &super::Corpus, module: &str) {
    good.add(
        module,
        "v1.0.0",
        Some(&format!("module {module}\n")),
        &[("a.go", b"package a\n".as_slice())],
    );
    evil.add(
        module,
        "v1.0.0",
        Some(&format!(
            "module {module}\n\nrequire example.com/backdoor v1.0.0\n"
        )),
        &[(
            "a.go",
            b"package a\n\nimport _ \"example.com/backdoor\"\n".as_slice(),
        )],
    );
}

/// The database's record of `module` v1.0.0 as `good` has it (its zip's and go.mod's h1).
pub fn record(good: &super::Corpus, module: &str) -> Rec {
    use modfleet_proxy::protocol::sumdb::dirhash::hash_go_mod;
    use modfleet_proxy::protocol::zip::check_zip;
    use modfleet_proxy::protocol::{ModulePath, Version};
    let zip = good.read(&format!("{module}/@v/v1.0.0.zip"));
    let go_mod = good.read(&format!("{module}/@v/v1.0.0.mod"));
    let m = ModulePath::parse(module).unwrap();
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
    Rec(module.into(), "v1.0.0".into(), h1_zip, hash_go_mod(&go_mod))
}

/// `n` records of made-up modules, so that the tree grows full tiles (256 hashes each).
pub fn filler(n: u32) -> Vec<Rec> {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    (0..n)
        .map(|i| {
            let h = |what: &str| {
                let digest = Sha256::digest(format!("{what}{i}"));
                format!(
                    "h1:{}",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                )
            };
            Rec(
                format!("example.com/filler{i}"),
                "v1.0.0".into(),
                h("zip"),
                h("mod"),
            )
        })
        .collect()
}
