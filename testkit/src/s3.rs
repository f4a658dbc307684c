//! A real S3 server for the object-store tests: `s3s-fs` (built once by `hack/tools.sh build`),
//! serving a fresh temporary directory on a free loopback port with one bucket and SigV4
//! authentication. Each object is the plain file `<root>/<bucket>/<key>`, so a test can list,
//! read and corrupt objects without an S3 client. It can be stopped and started again on the
//! same port and directory (a store outage); it is killed when dropped.
//!
//! The binary is `$MODFLEET_S3S_FS` if set, else whatever `hack/tools.sh path s3s-fs` prints;
//! when it is missing, [`S3Server::start`] panics with the command that builds it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::workspace::free_port;

/// The bucket every server has.
pub const BUCKET: &str = "modfleet";
pub const ACCESS_KEY: &str = "modfleet-test";
pub const SECRET_KEY: &str = "modfleet-test-secret";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `s3s-fs`.
pub struct S3Server {
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    root: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl S3Server {
    /// Starts a server with an empty bucket [`BUCKET`].
    pub fn start() -> S3Server {
        let binary = s3s_fs_binary();
        let root = tempfile::tempdir().expect("temporary directory");
        // s3s-fs keeps a bucket as a directory of its root.
        std::fs::create_dir(root.path().join(BUCKET)).expect("create the bucket");
        let port = free_port();
        let mut server = S3Server {
            child: None,
            binary,
            port,
            root,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("s3s-fs exited at start ({status}) on port {}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on port {} within {START_TIMEOUT:?}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown); its port then refuses.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The file holding object `key` of [`BUCKET`].
    pub fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// Every object key in [`BUCKET`], sorted.
    pub fn objects(&self) -> Vec<String> {
        let bucket = self.root.path().join(BUCKET);
        let mut out = Vec::new();
        walk(&bucket, &bucket, &mut out);
        out.sort();
        out
    }

    /// Writes the access key and secret into `dir` (as a mounted Secret would hold them):
    /// (access key id file, secret access key file).
    pub fn credentials_files(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (id, secret) = (dir.join("access-key-id"), dir.join("secret-access-key"));
        std::fs::write(&id, format!("{ACCESS_KEY}\n")).expect("write the key id");
        std::fs::write(&secret, format!("{SECRET_KEY}\n")).expect("write the secret");
        (id, secret)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            walk(base, &path, out);
        } else if let Ok(rel) = path.strip_prefix(base) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

fn s3s_fs_binary() -> PathBuf {
    crate::workspace::test_tool(
        "MODFLEET_S3S_FS",
        "s3s-fs",
        "the S3 server for the object-store tests (s3s-fs)",
        "; it runs `cargo install s3s-fs --locked --features binary`, about 4 minutes",
    )
}
