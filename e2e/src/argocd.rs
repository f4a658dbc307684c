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
    modfleet_testkit::go::program(&workspace_root().join("e2e/argocd-health"), ".")
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
