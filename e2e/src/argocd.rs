//! Argo CD's health check for GoModuleProxies (`examples/argocd/health.lua`) run in Argo CD's own
//! Lua engine: the Go program in `e2e/argocd-health` (github.com/yuin/gopher-lua at the version
//! Argo CD pins, only the base, table and package libraries, `obj` a global, the returned table
//! read as Argo CD reads it). The tests build it once with `go build` into a directory keyed by
//! a hash of its sources, so a warm run reuses it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use modfleet_testkit::workspace::workspace_root;

/// What Argo CD makes of one object: its health, or the error it reports instead (a Lua error,
/// or a return value that is not a table).
pub type Health = Result<(String, String), String>;

/// `examples/argocd/health.lua`.
pub fn health_script() -> PathBuf {
    workspace_root().join("examples/argocd/health.lua")
}

/// The built `argocd-health` program (built on first use).
///
/// # Panics
/// When `go` is missing or the build fails; the message says what to install.
pub fn health_program() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_health_program).clone()
}

fn build_health_program() -> PathBuf {
    let src = workspace_root().join("e2e/argocd-health");
    let mut key = Vec::new();
    for f in ["go.mod", "go.sum", "main.go"] {
        key.extend(std::fs::read(src.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")));
    }
    let dir = std::env::temp_dir().join(format!("modfleet-argocd-health-{:016x}", fnv1a(&key)));
    let bin = dir.join("argocd-health");
    if bin.is_file() {
        return bin;
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    // Built under a temporary name and renamed: tests running at once never see half a file.
    let tmp = dir.join(format!("argocd-health.{}.tmp", std::process::id()));
    let out = Command::new("go")
        .current_dir(&src)
        .args(["build", "-mod=readonly", "-trimpath", "-o"])
        .arg(&tmp)
        .arg(".")
        .env("GOFLAGS", "")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run go to build e2e/argocd-health: {e} (install Go >= 1.23)")
        });
    assert!(
        out.status.success(),
        "go build in e2e/argocd-health failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &bin).unwrap_or_else(|e| panic!("renaming {}: {e}", tmp.display()));
    bin
}

/// 64-bit FNV-1a: a stable key for the build directory (no hashing crate needed).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Runs `script` on each object as Argo CD does and returns what Argo CD makes of each.
pub fn health_of(script: &Path, objs: &[Value]) -> Vec<Health> {
    let bin = health_program();
    let mut child = Command::new(&bin)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(Value::Array(objs.to_vec()).to_string().as_bytes())
        .expect("writing objects to argocd-health");
    let out = child.wait_with_output().expect("waiting for argocd-health");
    assert!(
        out.status.success(),
        "argocd-health failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("argocd-health printed no JSON array: {e}"));
    assert_eq!(results.len(), objs.len(), "one result per object");
    results
        .iter()
        .map(|r| match r["error"].as_str() {
            Some(e) => Err(e.to_owned()),
            None => Ok((
                r["status"].as_str().unwrap_or_default().to_owned(),
                r["message"].as_str().unwrap_or_default().to_owned(),
            )),
        })
        .collect()
}

/// `examples/argocd/health.lua` on `obj`, as Argo CD runs it; returns (status, message).
///
/// # Panics
/// When Argo CD would report an error instead of a health (the message has the Lua error).
pub fn argocd_health(obj: &Value) -> (String, String) {
    let mut results = health_of(&health_script(), std::slice::from_ref(obj));
    results
        .pop()
        .expect("one result")
        .unwrap_or_else(|e| panic!("health.lua fails in Argo CD on {obj}: {e}"))
}
