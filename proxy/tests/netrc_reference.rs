//! netrc files held to the go command itself: for each file and each upstream base URL, the
//! credentials modfleet sends are the ones the go command sends with `GOAUTH=netrc` for a
//! GOPROXY of that URL (or none in both). The go command adds netrc credentials only over
//! HTTPS, so the upstream is testkit's with a test CA (`SSL_CERT_FILE`); it records what
//! each request carried.

mod common;

use std::path::Path;

use common::{GoEnv, Upstream};
use modfleet_proxy::credentials::{CredentialSource, UpstreamCredentials};
use modfleet_testkit::tls::TestCa;

/// netrc files, `HOST` standing for the upstream's `127.0.0.1:PORT`; and the base paths
/// whose credentials are compared.
const CASES: &[(&str, &[&str])] = &[
    // The go command's own test data (netrc_test.go), machines under one host.
    (
        "
machine HOST/incomplete
password none

machine HOST/api
  login user
  password pwd

machine HOST/incomlete.host
  login justlogin

machine HOST/test
login user2
password pwd2

machine HOST/oneline login user3 password pwd3

machine HOST/ignore macdef ignore
  login nobody
  password nothing

machine HOST/hasmacro macdef ignore-next-lines login user4 password pwd4
  login nobody
  password nothing

default
login anonymous
password gopher@golang.org

machine HOST/after.default
login oops
password too-late-in-file
",
        &[
            "/incomplete",
            "/api",
            "/incomlete.host",
            "/test",
            "/oneline",
            "/ignore",
            "/hasmacro",
            "/after.default",
        ],
    ),
    // `default` inside a pair is skipped with its partner; an odd `default` at a line's end
    // ends the file.
    (
        "default login anon password x\nmachine HOST/a login u password p default\nmachine HOST/b login v password q\n",
        &["/a", "/b"],
    ),
    // The first of a machine listed twice; tabs and CRLF; quotes are part of tokens.
    (
        "machine\tHOST/dup login first password 1\r\nmachine HOST/dup login second password 2\r\nmachine HOST/quoted login \"u\" password \"p\r\n",
        &["/dup", "/quoted"],
    ),
    // The host and port's entry serves every path under it; a longer prefix wins.
    (
        "machine HOST login port password pw-port\nmachine HOST/deep/er login deep password pw-deep\n",
        &["/deep/er", "/deep", "/elsewhere"],
    ),
    // Entries split over lines, and an entry missing its login.
    (
        "machine HOST/split\nlogin\nu\npassword p\nmachine HOST/nologin password p\n",
        &["/split", "/nologin"],
    ),
];

/// What the go command sends for a GOPROXY of `base` with `netrc`: the first request's
/// `Authorization` (it asks again after the 404, with the same).
fn go_sends(go: &GoEnv, ca: &TestCa, up: &Upstream, netrc: &Path, base: &str) -> Option<String> {
    let work = tempfile::tempdir().unwrap();
    let mut c = go.command(work.path(), &format!("{}{base}", up.url));
    c.args(["mod", "download", "example.test/m@v1.0.0"])
        .env("GOAUTH", "netrc")
        .env("NETRC", netrc)
        .env("SSL_CERT_FILE", ca.ca_pem())
        .env("GONOSUMDB", "example.test");
    let out = c.output().expect("run go");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404"), "go: {err}");
    let path = format!("{base}/example.test/m/@v/v1.0.0.info");
    up.authorizations(&path)
        .first()
        .unwrap_or_else(|| panic!("the go command did not ask for {path}: {err}"))
        .clone()
}

#[test]
fn the_credentials_for_each_base_url_are_the_go_command_s() {
    let go = GoEnv::new();
    let ca = TestCa::new();
    let up = Upstream::builder().tls(&ca).start();
    let host = format!("127.0.0.1:{}", up.addr().port());
    let dir = tempfile::tempdir().unwrap();
    let mut compared = 0;
    let mut sent = 0;
    for (i, (text, bases)) in CASES.iter().enumerate() {
        let netrc = dir.path().join(format!("netrc-{i}"));
        std::fs::write(&netrc, text.replace("HOST", &host)).unwrap();
        for base in *bases {
            let want = go_sends(&go, &ca, &up, &netrc, base);
            let url = reqwest::Url::parse(&format!("{}{base}", up.url)).unwrap();
            let ours = UpstreamCredentials::new(
                CredentialSource::Netrc {
                    file: netrc.clone(),
                },
                &url,
            )
            .authorization()
            .ok()
            .map(|h| h.to_str().unwrap().to_string());
            assert_eq!(ours, want, "netrc case {i}, base {base}");
            compared += 1;
            sent += usize::from(want.is_some());
        }
    }
    // Both outcomes were seen: credentials sent, and none.
    assert!(
        compared == 17 && sent > 5 && sent < compared,
        "{sent} of {compared}"
    );
}
