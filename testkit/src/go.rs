//! The go toolchain as the tests' reference: Go programs of the tests (x/mod's zip checker and
//! checksum database, gopher-lua for Argo CD's health check) built once per source and Go
//! version, and the machine's Go module proxy, read from `go env GOPROXY` at run time (never
//! written into the repository).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The first http(s) entry of `go env GOPROXY`, without a trailing slash. Panics, saying why,
/// when `go` is missing or its GOPROXY has no such entry.
pub fn machine_goproxy() -> String {
    let out = Command::new("go")
        .args(["env", "GOPROXY"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `go env GOPROXY` (install Go): {e}"));
    let list = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    list.split([',', '|'])
        .find(|e| e.starts_with("http://") || e.starts_with("https://"))
        .unwrap_or_else(|| {
            panic!("`go env GOPROXY` ({list:?}) has no http(s) entry to use as the real upstream")
        })
        .trim_end_matches('/')
        .to_owned()
}

/// The go command with nothing from this machine's Go environment but `PATH`: `HOME`,
/// `GOPATH`, `GOCACHE` and `GOMODCACHE` under `home`, no go env file and no workspace, modules
/// on, no toolchain switch and no telemetry, a module cache the test can remove
/// (`-modcacherw`), `home` as the working directory and stdin closed. What a case needs
/// (`GOPROXY`, `GOPRIVATE`, another directory, ...) is set on the returned command, replacing
/// what is set here.
pub fn isolated(home: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GOPATH", home.join("gopath"))
        .env("GOCACHE", home.join("gocache"))
        .env("GOMODCACHE", home.join("modcache"))
        .env("GOENV", "off")
        .env("GOWORK", "off")
        .env("GO111MODULE", "on")
        .env("GOTOOLCHAIN", "local")
        .env("GOTELEMETRY", "off")
        .env("GOFLAGS", "-modcacherw")
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

/// Builds `package` of the Go module in `module_dir` (its dependencies from the machine's
/// GOPROXY, checked against its go.sum) and returns the binary. Built once per content of the
/// module's files and Go version, into the system's temporary directory, under a temporary
/// name renamed when whole, so concurrent tests never see half a binary.
pub fn program(module_dir: &Path, package: &str) -> PathBuf {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _build = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let name = Path::new(package)
        .file_name()
        .filter(|n| *n != ".")
        .or_else(|| module_dir.file_name())
        .expect("a package or module directory name")
        .to_string_lossy()
        .into_owned();
    let go_version = Command::new("go")
        .args(["env", "GOVERSION"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run go to build {name} (install Go): {e}"))
        .stdout;
    let mut key = fnv1a(0xcbf2_9ce4_8422_2325, &go_version);
    key = fnv1a(key, package.as_bytes());
    for file in sources(module_dir) {
        key = fnv1a(key, file.to_string_lossy().as_bytes());
        key = fnv1a(key, &std::fs::read(&file).expect("readable Go source"));
    }
    let dir = std::env::temp_dir().join(format!("modfleet-go-{name}-{key:016x}"));
    let bin = dir.join(&name);
    if bin.is_file() {
        return bin;
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let partial = dir.join(format!(".{name}.{}", std::process::id()));
    let out = Command::new("go")
        .current_dir(module_dir)
        .args(["build", "-mod=readonly", "-trimpath", "-o"])
        .arg(&partial)
        .arg(package)
        .env("GOFLAGS", "")
        .env("GOTOOLCHAIN", "local")
        .env("GOTELEMETRY", "off")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run go to build {name}: {e} (install Go)"));
    assert!(
        out.status.success(),
        "go build {package} in {} failed (its modules come from `go env GOPROXY`):\n{}",
        module_dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &bin).unwrap_or_else(|e| panic!("renaming {}: {e}", bin.display()));
    bin
}

/// The module's go.mod, go.sum and .go files, sorted (the build's inputs besides Go).
fn sources(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                walk(&path, out);
            } else if name == "go.mod" || name == "go.sum" || name.ends_with(".go") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// Runs a reference program that reads one JSON question per line on stdin and writes one JSON
/// answer per line, and returns the answers in order (panicking, with `cmd`'s name, when it
/// fails or does not answer every question).
pub fn ask_json_lines<Q, A>(mut cmd: Command, questions: &[Q]) -> Vec<A>
where
    Q: serde::Serialize,
    A: serde::de::DeserializeOwned,
{
    use std::io::Write;
    let name = cmd.get_program().to_string_lossy().into_owned();
    let mut input = Vec::new();
    for q in questions {
        serde_json::to_writer(&mut input, q).unwrap();
        input.push(b'\n');
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    // Written from a thread: the program answers while it reads, and both pipes are bounded.
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{name} failed");
    let answers: Vec<A> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    assert_eq!(
        answers.len(),
        questions.len(),
        "{name}: one answer per question"
    );
    answers
}

/// 64-bit FNV-1a: a stable cache key without a hashing crate.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
