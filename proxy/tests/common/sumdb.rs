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
