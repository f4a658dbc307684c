//! The workspace the tests run in: its root, its binaries (built on first use), free ports.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The repository root (the workspace `Cargo.toml`'s directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives in the workspace")
        .to_path_buf()
}

/// The binary `name` of the workspace package of the same name: the path in the environment
/// variable `override_var` if set, else built with `cargo build -p NAME --bin NAME
/// --message-format=json`, taking the executable path cargo reports.
pub fn workspace_binary(name: &str, override_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(override_var).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["build", "-p", name, "--bin", name, "--message-format=json"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {name}: {e}"));
    assert!(out.status.success(), "cargo build -p {name} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no {name} executable"))
}

/// A loopback port free now (bound, then released), not handed out before by this process,
/// and below the range the kernel takes outgoing connections' local ports from. A port from
/// that range (what binding port 0 gives) can be taken by any connect() on the machine
/// between this choice and the server's bind, and bind(0) may give a port again that a test
/// running beside was just handed.
pub fn free_port() -> u16 {
    use std::collections::BTreeSet;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let low = ephemeral_low();
    let random = RandomState::new();
    if low > 11_000 {
        for i in 0..500u32 {
            let port = 10_000 + (random.hash_one(i) % u64::from(low - 10_000)) as u16;
            if !handed.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                handed.insert(port);
                return port;
            }
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port");
    handed.insert(port);
    port
}

/// The lowest port of the kernel's range for outgoing connections' local ports.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A loopback port nothing listens on: a dead upstream.
pub fn closed_port() -> u16 {
    free_port()
}

/// A test tool `hack/tools.sh` builds and caches (`tool`: its name there): `$env_var` when
/// set (it must be a file), else `hack/tools.sh path TOOL`. Panics with what to run when it
/// is not built; `what` says what it is, `how` how long the build takes or what it runs.
pub fn test_tool(env_var: &str, tool: &str, what: &str, how: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env_var}={} is not a file: unset it to use the one hack/tools.sh builds, or \
             point it at a {tool} binary",
            path.display()
        );
        return path;
    }
    let root = workspace_root();
    let script = root.join("hack/tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["path", tool])
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    if !out.status.success() {
        panic!(
            "{what} is not built: run hack/tools.sh build (in {}{how}), or set {env_var} to a \
             {tool} binary. {} said: {}",
            root.display(),
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
