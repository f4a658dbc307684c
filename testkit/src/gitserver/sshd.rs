//! A real OpenSSH server on a loopback port: generated host and client keys, only that
//! client key authorized, the current user's repositories reached by absolute path.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::workspace::free_port;

/// Where Debian's openssh-server puts it.
const SSHD: &str = "/usr/sbin/sshd";

/// A running `sshd -D -e`; killed when dropped.
pub struct Sshd {
    child: Child,
    port: u16,
    user: String,
    dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// Starts sshd on a free loopback port and waits until it listens. Panics, saying how to
    /// install it, when OpenSSH's server is missing.
    pub fn start() -> Sshd {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing: install OpenSSH's server (apt-get install -y openssh-server)"
        );
        let dir = tempfile::tempdir().expect("sshd directory");
        let d = dir.path();
        keygen(&d.join("host_ed25519"));
        keygen(&d.join("client_ed25519"));
        keygen(&d.join("stranger_ed25519"));
        std::fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        let user = current_user();
        if rustix::process::geteuid().is_root() {
            // Privilege separation needs it; systemd's tmpfiles makes it on a booted system.
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd (sshd as root needs it)");
        }
        // A free port can be taken between our look and sshd's bind: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = d.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile none\n\
                     AuthorizedKeysFile {auth}\nStrictModes no\nUsePAM no\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                     AllowUsers {user}\nUseDNS no\nPrintMotd no\nMaxStartups 100\n\
                     MaxSessions 100\nLogLevel VERBOSE\n",
                    host = d.join("host_ed25519").display(),
                    auth = d.join("authorized_keys").display(),
                ),
            )
            .expect("sshd_config");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            let log = Arc::new(Mutex::new(Vec::new()));
            let (ready_tx, ready_rx) = mpsc::channel();
            let stderr = child.stderr.take().expect("piped stderr");
            let keep = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("Server listening on 127.0.0.1") {
                        let _ = ready_tx.send(true);
                    }
                    keep.lock().unwrap().push(line);
                }
                let _ = ready_tx.send(false);
            });
            match ready_rx.recv_timeout(Duration::from_secs(30)) {
                Ok(true) => {
                    return Sshd {
                        child,
                        port,
                        user,
                        dir,
                        log,
                    };
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = log.lock().unwrap().join("\n");
                }
            }
        }
        panic!("sshd did not start listening: {last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ssh://USER@127.0.0.1:PORT/ABSOLUTE/PATH` of a repository on this machine.
    pub fn url(&self, repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.display()
        )
    }

    /// The private key the server accepts.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// A valid private key the server does not accept.
    pub fn stranger_key(&self) -> PathBuf {
        self.dir.path().join("stranger_ed25519")
    }

    /// A known_hosts file pinning this server's host key (written on first call).
    pub fn known_hosts(&self) -> PathBuf {
        let path = self.dir.path().join("known_hosts");
        let key = std::fs::read_to_string(self.dir.path().join("host_ed25519.pub"))
            .expect("host public key");
        std::fs::write(&path, format!("[127.0.0.1]:{} {}", self.port, key.trim()))
            .expect("known_hosts");
        path
    }

    /// A known_hosts file that pins another key for this server (a man in the middle).
    pub fn wrong_known_hosts(&self) -> PathBuf {
        let path = self.dir.path().join("wrong_known_hosts");
        let key = std::fs::read_to_string(self.dir.path().join("stranger_ed25519.pub"))
            .expect("stranger public key");
        std::fs::write(&path, format!("[127.0.0.1]:{} {}", self.port, key.trim()))
            .expect("known_hosts");
        path
    }

    /// What sshd logged so far (for failure messages).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "modfleet-test", "-f"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run ssh-keygen (apt-get install -y openssh-client): {e}")
        });
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    assert!(out.status.success(), "id -un failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
