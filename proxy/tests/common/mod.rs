//! Shared harness for modfleet-proxy's end-to-end tests: a module corpus written in GOPROXY
//! layout, the workspace's one fake upstream serving it (testkit's `Upstream`), the real proxy binary, and
//! the real `go` command as the client.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_modfleet-proxy");

/// The one fake upstream of the workspace's tests (testkit/src/upstream.rs).
#[allow(unused_imports)] // each test binary uses a different part
pub use modfleet_testkit::upstream::{Fault, Reply, Upstream};

/// Fails (never skips) when a tool the tests need is missing.
pub fn require_tool(tool: &str, why: &str) {
    let ok = Command::new(tool)
        .arg(if tool == "go" { "version" } else { "--version" })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{tool}` is required on PATH for {why}; install it (see .ci/run)"
    );
}

/// The escaped form of a module path ('!' + lowercase for capitals).
pub fn escape(s: &str) -> String {
    modfleet_proxy::protocol::escape_path(s).expect("test corpus paths are valid")
}

/// Incompressible bytes, different per seed (xorshift).
pub fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Files under `dir` (recursively) whose name satisfies `pred`.
pub fn files_under(dir: &Path, pred: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path(), pred));
        } else if pred(&e.file_name().to_string_lossy()) {
            out.push(e.path());
        }
    }
    out
}

/// The cache's unfinished downloads.
pub fn tmp_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir, &|n| n.starts_with(".tmp-"))
}

/// A directory in GOPROXY layout that tests fill with modules.
pub struct Corpus {
    pub dir: tempfile::TempDir,
}

impl Default for Corpus {
    fn default() -> Self {
        Self::new()
    }
}

impl Corpus {
    pub fn new() -> Corpus {
        Corpus {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Adds `module@version` with the given files. `go_mod` is the go.mod put both in the zip
    /// and in the `.mod` file; without one, the `.mod` is synthesized as `module <path>` and
    /// the zip has no go.mod (like pre-modules and +incompatible versions).
    pub fn add(&self, module: &str, version: &str, go_mod: Option<&str>, files: &[(&str, &[u8])]) {
        let dir = self.root().join(escape(module)).join("@v");
        std::fs::create_dir_all(&dir).unwrap();
        let ev = modfleet_proxy::protocol::escape_version(version).expect("valid test version");
        std::fs::write(
            dir.join(format!("{ev}.info")),
            format!(r#"{{"Version":"{version}","Time":"2024-01-02T03:04:05Z"}}"#),
        )
        .unwrap();
        let mod_text = go_mod.map_or_else(|| format!("module {module}\n"), str::to_string);
        std::fs::write(dir.join(format!("{ev}.mod")), &mod_text).unwrap();
        let zip_file = std::fs::File::create(dir.join(format!("{ev}.zip"))).unwrap();
        let mut zip = zip::ZipWriter::new(zip_file);
        let prefix = format!("{module}@{version}/");
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        if let Some(m) = go_mod {
            zip.start_file(format!("{prefix}go.mod"), opts).unwrap();
            zip.write_all(m.as_bytes()).unwrap();
        }
        for (name, body) in files {
            zip.start_file(format!("{prefix}{name}"), opts).unwrap();
            zip.write_all(body).unwrap();
        }
        zip.finish().unwrap();
        let list = dir.join("list");
        let mut versions = std::fs::read_to_string(&list).unwrap_or_default();
        if !versions.lines().any(|l| l == version) {
            versions.push_str(version);
            versions.push('\n');
        }
        std::fs::write(list, versions).unwrap();
        std::fs::write(
            self.root().join(escape(module)).join("@latest"),
            format!(r#"{{"Version":"{version}","Time":"2024-01-02T03:04:05Z"}}"#),
        )
        .unwrap();
    }

    /// Bytes of a corpus file (relative GOPROXY path).
    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.root().join(rel)).unwrap()
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running modfleet-proxy binary.
pub struct Proxy {
    child: Option<Killed>,
    pub url: String,
    pub admin: String,
    pub cache_dir: PathBuf,
    args: Vec<String>,
    /// Command prefix (e.g. `ip netns exec NS`) and the address to listen on.
    prefix: Vec<String>,
    host: String,
    /// Extra environment variables (e.g. OTEL_*).
    env: Vec<(String, String)>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    /// Starts the proxy on loopback ports chosen by the OS, with `args` added.
    pub fn start(cache_dir: &Path, args: &[&str]) -> Proxy {
        Self::start_in(&[], "127.0.0.1", cache_dir, args)
    }

    /// Starts the proxy serving HTTPS with `cert` and `key` (PEM files, e.g. testkit's
    /// `TestCa::server_files`); `url` is then `https://`. Clients: [`https_client`], or the go
    /// command with `SSL_CERT_FILE` set to the CA.
    pub fn start_tls(cache_dir: &Path, cert: &Path, key: &Path, args: &[&str]) -> Proxy {
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let args = [&["--tls-cert", cert, "--tls-key", key][..], args].concat();
        Self::start(cache_dir, &args)
    }

    /// Starts the proxy under a command prefix (e.g. `ip netns exec NS`), listening on `host`.
    pub fn start_in(prefix: &[&str], host: &str, cache_dir: &Path, args: &[&str]) -> Proxy {
        Self::start_with_env(prefix, host, cache_dir, args, &[])
    }

    /// Like [`Proxy::start_in`], with extra environment variables.
    pub fn start_with_env(
        prefix: &[&str],
        host: &str,
        cache_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proxy {
        let mut p = Proxy {
            child: None,
            url: String::new(),
            admin: String::new(),
            cache_dir: cache_dir.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
            host: host.to_string(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            logs: Arc::default(),
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let mut cmd = match self.prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(PROXY_BIN);
                c
            }
            None => Command::new(PROXY_BIN),
        };
        let listen = format!("{}:0", self.host);
        let mut child = cmd
            .args(["--listen", &listen, "--admin-listen", &listen])
            .args(["--log-format", "json"])
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(&self.args)
            .env("RUST_LOG", "info")
            // The test corpora are made-up modules no checksum database knows: checking them is
            // off unless a test turns it on (tests/checksums.rs, real_upstream.rs).
            .env("MODFLEET_VERIFY_SUMDB", "off")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("GOPROXY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start modfleet-proxy");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = self.logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in stderr.lines().map_while(Result::ok) {
                if line.contains("modfleet-proxy serving")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line.clone());
                }
                logs.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let status = child.try_wait().ok().flatten();
                panic!(
                    "modfleet-proxy did not start (exit: {status:?}); log:\n{}",
                    self.logs.lock().unwrap().join("\n")
                );
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let scheme = v["scheme"].as_str().unwrap_or("http");
        self.url = format!("{scheme}://{}", v["listen"].as_str().unwrap());
        self.admin = format!("http://{}", v["admin"].as_str().unwrap());
        self.child = Some(Killed(child));
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.0.kill().unwrap();
            c.0.wait().unwrap();
        }
    }

    /// Starts again on the same cache and flags (new ports).
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// The process id (a command prefix must `exec` the proxy for this to be the proxy's).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").0.id()
    }

    /// Descriptors the process holds open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("read /proc/PID/fd")
            .count()
    }

    /// The admin endpoint's `/status`, parsed.
    pub async fn status(&self) -> serde_json::Value {
        let body = reqwest::get(format!("{}/status", self.admin))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.url)).await.unwrap()
    }

    /// The value of one sample of /metrics, e.g.
    /// `modfleet_proxy_requests_total{route="zip",status="200",cache="hit"}`; 0 when absent.
    /// Label order does not matter.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(&text, sample)
    }
}

/// A client of a proxy started with [`Proxy::start_tls`]: trusts only the test CA `ca_pem`,
/// offers `h2` and `http/1.1` by ALPN (`.http1_only()` for HTTP/1.1 alone) and keeps each
/// response's `reqwest::tls::TlsInfo` (the server's certificate) in its extensions.
pub fn https_client(ca_pem: &Path) -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pem = std::fs::read(ca_pem).expect("the test CA's certificate");
    let ca = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .tls_info(true)
}

/// The DER of the certificate a response came with (needs [`https_client`]'s `tls_info`).
pub fn peer_certificate(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("an HTTPS response from a client with tls_info")
        .to_vec()
}

/// Finds a sample in OpenMetrics text, matching the name and every label given.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    let (name, labels) = match sample.split_once('{') {
        Some((n, rest)) => (n, rest.trim_end_matches('}')),
        None => (sample, ""),
    };
    let wanted: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, ls) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let have: Vec<&str> = ls.split(',').collect();
            (n == name && wanted.iter().all(|w| have.contains(w)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// Raises this test process's soft open-file limit to its hard limit, for tests that hold
/// many connections (the proxy they start inherits it unless started under a prefix).
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Waits for a condition, polling, with a deadline; panics with `what` on timeout.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `path` is a regular file (not a link): a fetched file is committed to the cache
/// just after its clients are answered, since the answer does not wait for the fsync.
pub async fn wait_committed(path: &Path) {
    let what = format!("{} committed to the cache", path.display());
    wait_for(&what, Duration::from_secs(20), || async {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
    })
    .await
}

/// A `go` command with an isolated module cache and the given proxy.
pub struct GoEnv {
    pub home: tempfile::TempDir,
}

impl Default for GoEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl GoEnv {
    pub fn new() -> GoEnv {
        require_tool("go", "the end-to-end tests with the real go command");
        GoEnv {
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn command(&self, dir: &Path, goproxy: &str) -> Command {
        let mut c = Command::new("go");
        c.current_dir(dir)
            .env("GOPROXY", goproxy)
            .env("GOMODCACHE", self.home.path().join("modcache"))
            .env("GOPATH", self.home.path().join("gopath"))
            .env("GOFLAGS", "-modcacherw -mod=mod")
            .env("GOTOOLCHAIN", "local")
            .env("GOTELEMETRY", "off")
            .env_remove("GOPRIVATE")
            .env_remove("GONOPROXY")
            .env_remove("GONOSUMDB")
            .env_remove("GOSUMDB");
        c
    }

    /// Runs and returns stdout; panics with stderr on failure.
    pub fn run(&self, mut cmd: Command) -> String {
        let out = cmd.output().expect("run go");
        assert!(
            out.status.success(),
            "{:?} failed:\n{}",
            cmd,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A tmpfs mounted for the test and unmounted afterwards.
pub struct Tmpfs(pub tempfile::TempDir);

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test needs to mount a small tmpfs (run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir)
    }
}

impl Tmpfs {
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Makes the file system read-only (what a failing disk or a read-only volume looks like).
    pub fn remount_read_only(&self) {
        let out = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.0.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot remount read-only: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Runs `modfleet-proxy verify` on a cache: (exit status success, stdout).
pub fn verify_cache(cache: &Path, purge: bool) -> (bool, String) {
    let mut c = Command::new(PROXY_BIN);
    // The structure of made-up modules: not checked against a checksum database.
    c.arg("verify").arg("--cache-dir").arg(cache);
    c.args(["--verify-sumdb", "off"]);
    if purge {
        c.arg("--purge");
    }
    let o = c.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// Writes a proxy config file and returns its path (kept alive by the TempDir).
pub fn config_file(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("modfleet.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A proxy started on the config file `yaml`, its cache in `dir`.
pub fn start_with_config(dir: &tempfile::TempDir, yaml: &str) -> Proxy {
    let cfg = config_file(dir.path(), yaml);
    Proxy::start(
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap()],
    )
}

/// The entry for `url` in a `/status` document.
pub fn status_upstream<'a>(status: &'a serde_json::Value, url: &str) -> &'a serde_json::Value {
    status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["url"] == url)
        .unwrap_or_else(|| panic!("{url} not in {status}"))
}
#[allow(dead_code)]
pub mod graph;
pub mod netns;
#[allow(dead_code)]
pub mod private_go;
pub mod sumdb;
