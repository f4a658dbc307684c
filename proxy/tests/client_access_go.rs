//! The real go command as an access-controlled client. It sends credentials only over HTTPS
//! (`cmd/go/internal/auth/auth.go` panics otherwise), so the proxy serves HTTPS with a test CA
//! the go command trusts by `SSL_CERT_FILE`. Credentials come from a `.netrc` (`NETRC`, the
//! default `GOAUTH=netrc`) or a `GOAUTH` helper command. After every proxy comes a second,
//! counting proxy in `GOPROXY` (`https://modfleet,http://second`): a 401 or 403 must stop the
//! go command's comma fallback (`cmd/go/internal/web/api.go`: only 404 and 410 are "not
//! exist"; `modfetch/proxy.go` moves on only then), so a private path never reaches it.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Corpus, GoEnv, Proxy, Upstream, config_file};
use modfleet_contract::access::TokenLine;
use modfleet_testkit::tls::TestCa;

const PUBLIC: &str = "example.test/hello";
const PRIVATE: &str = "corp.example.test/secret";
const CI_TOKEN: &str = "mf_ci-token-0123456789abcdefghijklmnopqrstuv";
const DEV_TOKEN: &str = "mf_dev-token-0123456789abcdefghijklmnopqrstu";

/// The proxy (HTTPS, `access` on), its upstream, the second GOPROXY entry and the test CA.
struct Fleet {
    ca: TestCa,
    proxy: Proxy,
    _origin: Upstream,
    second: Upstream,
    _corpus: Corpus,
    dir: tempfile::TempDir,
}

impl Fleet {
    fn start() -> Fleet {
        let corpus = Corpus::new();
        for (module, pkg) in [(PUBLIC, "hello"), (PRIVATE, "secret")] {
            let go_mod = format!("module {module}\n\ngo 1.21\n");
            let src = format!("package {pkg}\n\nfunc Name() string {{ return \"{module}\" }}\n");
            corpus.add(module, "v1.0.0", Some(&go_mod), &[("x.go", src.as_bytes())]);
        }
        let origin = Upstream::serve(corpus.root());
        let second = Upstream::serve(corpus.root());
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        let lines = [
            TokenLine::for_token("ci", CI_TOKEN, &["builders".to_string()]),
            TokenLine::for_token("dev", DEV_TOKEN, &[]),
        ];
        std::fs::write(&tokens, lines.map(|l| format!("{l}\n")).concat()).unwrap();
        let cfg = config_file(
            dir.path(),
            &format!(
                "upstreams: [{{url: '{}'}}]\naccess:\n  tokensFiles: [{}]\n  rules:\n    \
                 - modules: [corp.example.test]\n      allow: [group:builders]\n    \
                 - modules: ['*']\n      allow: [anonymous]\n",
                origin.url,
                tokens.display()
            ),
        );
        let ca = TestCa::new();
        let (cert, key) = ca.server_files();
        let proxy = Proxy::start_tls(
            &dir.path().join("cache"),
            &cert,
            &key,
            &["--config", cfg.to_str().unwrap()],
        );
        Fleet {
            ca,
            proxy,
            _origin: origin,
            second,
            _corpus: corpus,
            dir,
        }
    }

    /// `HOST:PORT` of the proxy: what the go command looks credentials up by.
    fn host_port(&self) -> &str {
        self.proxy.url.trim_start_matches("https://")
    }

    /// A netrc file with this login and password for the proxy.
    fn netrc(&self, name: &str, login: &str, password: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let text = format!(
            "machine {} login {login} password {password}\n",
            self.host_port()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A GOAUTH helper printing `Authorization: Bearer TOKEN` for the proxy's URL, as
    /// `cmd/go/internal/auth/userauth.go` parses it (URLs, a blank line, headers, a blank
    /// line); it logs each call's arguments beside itself.
    fn helper(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        let calls = self.dir.path().join(format!("{name}.calls"));
        let script = format!(
            "#!/bin/sh\ncat >/dev/null\necho \"called $#: $*\" >> '{}'\n\
             printf '%s\\n\\n%s\\n\\n' '{}' 'Authorization: Bearer {token}'\n",
            calls.display(),
            self.proxy.url
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn helper_calls(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.calls"))).unwrap_or_default()
    }

    /// `go mod download` of an app requiring both modules, in a fresh module cache, with
    /// `GOPROXY=https://modfleet,http://second` and the given credential settings.
    fn download(&self, env: &[(&str, &Path)], goauth: Option<String>) -> Output {
        let go = GoEnv::new();
        let app = tempfile::tempdir().unwrap();
        std::fs::write(
            app.path().join("go.mod"),
            format!("module example.test/app\n\ngo 1.21\n\nrequire (\n\t{PUBLIC} v1.0.0\n\t{PRIVATE} v1.0.0\n)\n"),
        )
        .unwrap();
        let goproxy = format!("{},{}", self.proxy.url, self.second.url);
        let mut c = go.command(app.path(), &goproxy);
        c.env("SSL_CERT_FILE", self.ca.ca_pem())
            .env("GONOSUMDB", "example.test,corp.example.test")
            .env("NETRC", self.dir.path().join("no-netrc"))
            .env_remove("GOAUTH")
            .args(["mod", "download", "-x"]);
        for (k, v) in env {
            c.env(k, v);
        }
        if let Some(goauth) = goauth {
            c.env("GOAUTH", goauth);
        }
        c.output().unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failed download: the reason the proxy gave is in the go command's output, and the
/// second GOPROXY entry was never asked.
fn assert_refused(fleet: &Fleet, out: &Output, status: &str, reason: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "the download succeeded:\n{err}");
    assert!(
        err.contains(status) && err.contains(&format!("server response: {reason}")),
        "wanted {status} and {reason:?} in:\n{err}"
    );
    assert_eq!(
        fleet.second.total_hits(),
        0,
        "the next GOPROXY entry was asked: {:?}",
        fleet.second.all_hits()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_go_command_authenticates_with_netrc() {
    let fleet = Fleet::start();
    let ok = fleet.netrc("netrc-ci", "ci", CI_TOKEN);
    let out = fleet.download(&[("NETRC", &ok)], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        fleet
            .proxy
            .metric(r#"modfleet_proxy_client_requests_total{identity="ci"}"#)
            .await
            >= 2.0
    );

    // No credentials: the 401's reason, and the build stops there.
    let out = fleet.download(&[], None);
    let missing = format!("authentication required for module {PRIVATE}");
    assert_refused(&fleet, &out, "401 Unauthorized", &missing);
    // A wrong token, and a login that is not the token's identity.
    let wrong = fleet.netrc(
        "netrc-wrong",
        "ci",
        "mf_not-a-token-of-this-proxy-0123456789ab",
    );
    let out = fleet.download(&[("NETRC", &wrong)], None);
    assert_refused(
        &fleet,
        &out,
        "401 Unauthorized",
        "the token is not valid here",
    );
    let mismatch = fleet.netrc("netrc-mismatch", "dev", CI_TOKEN);
    let out = fleet.download(&[("NETRC", &mismatch)], None);
    assert_refused(
        &fleet,
        &out,
        "401 Unauthorized",
        "the Basic user name is not the identity",
    );
    // An identity the private rule does not name: 403, no fallback.
    let dev = fleet.netrc("netrc-dev", "dev", DEV_TOKEN);
    let out = fleet.download(&[("NETRC", &dev)], None);
    let forbidden = format!("identity dev may not fetch module {PRIVATE}");
    assert_refused(&fleet, &out, "403 Forbidden", &forbidden);
    assert!(
        fleet
            .proxy
            .metric(
                r#"modfleet_proxy_access_refusals_total{listener="goproxy",reason="not_allowed"}"#
            )
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_go_command_authenticates_with_a_goauth_helper() {
    let fleet = Fleet::start();
    let ok = fleet.helper("auth-ci", CI_TOKEN);
    let out = fleet.download(&[], Some(ok.display().to_string()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        fleet.helper_calls("auth-ci").starts_with("called 0:"),
        "the helper was not asked: {}",
        fleet.helper_calls("auth-ci")
    );
    assert!(
        fleet
            .proxy
            .metric(r#"modfleet_proxy_client_requests_total{identity="ci"}"#)
            .await
            >= 2.0
    );

    let wrong = fleet.helper("auth-wrong", "mf_not-a-token-of-this-proxy-0123456789ab");
    let out = fleet.download(&[], Some(wrong.display().to_string()));
    assert_refused(
        &fleet,
        &out,
        "401 Unauthorized",
        "the token is not valid here",
    );
    // After the 401 the go command asks the helper again with the URL (and retries once).
    assert!(
        fleet
            .helper_calls("auth-wrong")
            .contains(&format!("called 1: {}/", fleet.proxy.url)),
        "{}",
        fleet.helper_calls("auth-wrong")
    );
    let dev = fleet.helper("auth-dev", DEV_TOKEN);
    let out = fleet.download(&[], Some(dev.display().to_string()));
    let forbidden = format!("identity dev may not fetch module {PRIVATE}");
    assert_refused(&fleet, &out, "403 Forbidden", &forbidden);
}
