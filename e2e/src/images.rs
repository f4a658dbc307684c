//! The container images `hack/images.sh build` makes, and containers run from them with the
//! real podman (runc) on that script's image store: every podman call goes through
//! `hack/images.sh podman ...`, so the tests use the same storage and engine configuration as
//! the build (and `MODFLEET_CLUSTER_NAME` picks the same store). Also what the tests check in a
//! running container's process (uid, capabilities, read-only root) and a go command with a
//! private module cache.
//!
//! A missing image fails the test with the command that builds it; nothing is pulled.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use modfleet_testkit::go::machine_goproxy;
use modfleet_testkit::workspace::workspace_root;

const CONTAINER_PREFIX: &str = "modfleet-e2e-";

/// `hack/images.sh`.
pub fn images_script() -> PathBuf {
    workspace_root().join("hack/images.sh")
}

/// `hack/images.sh podman ARGS...`: podman on the images' store.
pub fn podman(args: &[&str]) -> Command {
    let mut cmd = Command::new(images_script());
    cmd.arg("podman").args(args).stdin(Stdio::null());
    cmd
}

/// Runs podman and returns its output, whatever the exit status.
pub fn try_podman(args: &[&str]) -> Output {
    podman(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", images_script().display()))
}

/// Runs podman and returns stdout; panics with stderr on failure.
pub fn podman_ok(args: &[&str]) -> String {
    let out = try_podman(args);
    assert!(
        out.status.success(),
        "podman {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The local name of the image of Dockerfile target `target` (`proxy` or `operator`), e.g.
/// `docker.io/modfleet/modfleet-proxy:0.1.0`: the chart's default name, fully qualified.
///
/// # Panics
/// When the image is not in the store: the message says how to build it.
pub fn image(target: &str) -> String {
    let out = Command::new(images_script())
        .args(["name", target])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", images_script().display()));
    assert!(
        out.status.success(),
        "hack/images.sh name {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let exists = try_podman(&["image", "exists", &name]);
    assert!(
        exists.status.success(),
        "no image {name} in the store of MODFLEET_CLUSTER_NAME={}: build it with \
         `hack/images.sh build` (same MODFLEET_CLUSTER_NAME), or run `hack/test.sh images`",
        std::env::var("MODFLEET_CLUSTER_NAME").unwrap_or_else(|_| "modfleet".into())
    );
    name
}

/// A container started with `podman run -d`; removed (`podman rm -f`) on drop, its log
/// printed first when the test is failing.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run -d --name modfleet-e2e-<pid>-<n> ARGS...` (ARGS: options, image, command).
    pub fn run(args: &[String]) -> Container {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        remove_stale_containers();
        let name = format!(
            "{CONTAINER_PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend(args.iter().map(String::as_str));
        podman_ok(&all);
        Container { name }
    }

    /// `podman inspect --format FORMAT`.
    pub fn inspect(&self, format: &str) -> String {
        podman_ok(&["inspect", "--format", format, &self.name])
            .trim()
            .to_owned()
    }

    pub fn running(&self) -> bool {
        self.inspect("{{.State.Running}}") == "true"
    }

    /// The container's main process, as the test's namespace sees it.
    pub fn pid(&self) -> u32 {
        let pid = self.inspect("{{.State.Pid}}");
        pid.parse()
            .ok()
            .filter(|p| *p != 0)
            .unwrap_or_else(|| panic!("container {} is not running:\n{}", self.name, self.logs()))
    }

    pub fn logs(&self) -> String {
        let out = try_podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Panics with the log when the container has exited.
    pub fn assert_running(&self) {
        if !self.running() {
            panic!(
                "container {} exited ({}):\n{}",
                self.name,
                self.inspect("{{.State.ExitCode}}"),
                self.logs()
            );
        }
    }

    /// `podman stop` (SIGTERM, then SIGKILL after `timeout_s`); the exit code.
    pub fn stop(&self, timeout_s: u32) -> i32 {
        podman_ok(&["stop", "-t", &timeout_s.to_string(), &self.name]);
        self.inspect("{{.State.ExitCode}}").parse().unwrap_or(-1)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- container {} log:\n{}", self.name, self.logs());
        }
        let _ = try_podman(&["rm", "-f", "-t", "5", &self.name]);
    }
}

/// Removes `modfleet-e2e-<pid>-*` containers whose test process is gone.
fn remove_stale_containers() {
    let out = try_podman(&["ps", "-a", "--format", "{{.Names}}"]);
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(pid) = name
            .strip_prefix(CONTAINER_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = try_podman(&["rm", "-f", "-t", "0", name]);
        }
    }
}

/// What the kernel says about a running process: what a securityContext promises, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessFacts {
    /// Real, effective, saved, filesystem uid.
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective and bounding capability sets (hex masks).
    pub cap_eff: u64,
    pub cap_bnd: u64,
    pub no_new_privs: bool,
    /// 2: a seccomp filter is in force.
    pub seccomp: u32,
    /// Its root file system is mounted read-only.
    pub root_read_only: bool,
}

impl ProcessFacts {
    pub fn of(pid: u32) -> ProcessFacts {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let field = |name: &str| -> String {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
                .trim()
                .to_owned()
        };
        let ids = |name: &str| -> Vec<u32> {
            field(name)
                .split_whitespace()
                .map(|n| n.parse().expect("numeric id"))
                .collect()
        };
        let hex = |name: &str| u64::from_str_radix(&field(name), 16).expect("hex mask");
        // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ..."; "/" is the root.
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/mountinfo: {e}"));
        let root_read_only = mountinfo
            .lines()
            .rev()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(4) == Some(&"/")).then(|| f.get(5).copied().unwrap_or_default())
            })
            .is_some_and(|opts| opts.split(',').any(|o| o == "ro"));
        ProcessFacts {
            uids: ids("Uid"),
            gids: ids("Gid"),
            groups: ids("Groups"),
            cap_eff: hex("CapEff"),
            cap_bnd: hex("CapBnd"),
            no_new_privs: field("NoNewPrivs") == "1",
            seccomp: field("Seccomp").parse().unwrap_or(0),
            root_read_only,
        }
    }
}

/// (uid, gid) of every file and directory under `dir` (itself included).
pub fn owners(dir: &Path) -> BTreeSet<(u32, u32)> {
    let mut set = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        set.insert((m.uid(), m.gid()));
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) {
                stack.push(e.expect("directory entry").path());
            }
        }
    }
    set
}

/// Files under `dir` whose name ends with `suffix`.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) {
                stack.push(e.expect("directory entry").path());
            }
        } else if p.to_string_lossy().ends_with(suffix) {
            found.push(p);
        }
    }
    found
}

/// A go command with a module cache and GOPATH of its own (removed on drop), so every module
/// it needs really comes through the GOPROXY it is given.
pub struct GoEnv {
    pub dir: PathBuf,
}

impl GoEnv {
    pub fn new(tag: &str) -> GoEnv {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "modfleet-e2e-go-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("gopath")).expect("GOPATH");
        GoEnv { dir }
    }

    /// `go ARGS` in `module_dir` with only `goproxy` as GOPROXY (checksums still verified,
    /// through the proxy's /sumdb/ unless `go.sum` has them).
    pub fn command(&self, module_dir: &Path, goproxy: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("go");
        cmd.current_dir(module_dir)
            .args(args)
            .env("GOPROXY", goproxy)
            .env("GOPATH", self.dir.join("gopath"))
            .env("GOMODCACHE", self.dir.join("gopath/pkg/mod"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOTOOLCHAIN", "local")
            .env_remove("GOPRIVATE")
            .env_remove("GONOPROXY")
            .env_remove("GONOSUMDB")
            .env_remove("GOSUMDB")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a go command; its stdout, or a panic with everything it said.
    pub fn run(&self, module_dir: &Path, goproxy: &str, args: &[&str]) -> String {
        let out = self
            .command(module_dir, goproxy, args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run go: {e}"));
        assert!(
            out.status.success(),
            "go {} (GOPROXY={goproxy}) failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for GoEnv {
    fn drop(&mut self) {
        // The module cache is read-only; the go command knows how to remove it.
        let _ = Command::new("go")
            .args(["clean", "-modcache"])
            .env("GOPATH", self.dir.join("gopath"))
            .env("GOMODCACHE", self.dir.join("gopath/pkg/mod"))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
