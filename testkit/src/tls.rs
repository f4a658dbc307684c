//! A test certificate authority and a server certificate it signed, made by the `openssl`
//! command: for servers on loopback that clients reach over HTTPS while trusting only this CA
//! (`SSL_CERT_FILE=ca.pem` for the go command and for rustls' platform verifier alike).
//!
//! The server certificate names `127.0.0.1`, `127.0.0.2` and `localhost`, and is valid for
//! two days.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA and a server key pair in a temporary directory (removed when dropped).
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Makes the CA and the server certificate. Panics with how to install `openssl` when it
    /// is missing.
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("temporary directory for the test CA");
        let ext = dir.path().join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:localhost\n\
             extendedKeyUsage=serverAuth\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n",
        )
        .expect("write the extension file");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            dir.path(),
            &[
                &["req", "-x509"],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=modfleet test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        issue(dir.path(), "server");
        TestCa { dir }
    }

    /// The CA certificate (PEM): what clients trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate chain and key, PEM files.
    pub fn server_files(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("server.pem"),
            self.dir.path().join("server.key"),
        )
    }

    /// A further server certificate and key from the same CA, for the same names, in
    /// `STEM.pem` and `STEM.key` (a renewal: another key and serial). `stem` must not be
    /// `ca` or `server`.
    pub fn reissue(&self, stem: &str) -> (PathBuf, PathBuf) {
        assert!(!matches!(stem, "ca" | "server"), "{stem} is taken");
        issue(self.dir.path(), stem);
        (
            self.dir.path().join(format!("{stem}.pem")),
            self.dir.path().join(format!("{stem}.key")),
        )
    }

    /// A rustls server configuration with the server certificate (HTTP/1.1 only).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let (cert, key) = self.server_files();
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
            .expect("server.pem")
            .collect::<Result<_, _>>()
            .expect("server.pem certificates");
        let key = PrivateKeyDer::from_pem_file(&key).expect("server.key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Default for TestCa {
    fn default() -> TestCa {
        TestCa::new()
    }
}

/// A P-256 key `STEM.key` and its certificate `STEM.pem`, signed by the CA in `dir`, valid
/// for two days for the names of `server.ext`.
fn issue(dir: &Path, stem: &str) {
    let (key, csr, pem) = (
        format!("{stem}.key"),
        format!("{stem}.csr"),
        format!("{stem}.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("`openssl` is required for the test CA (apt-get install openssl): {e}")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
