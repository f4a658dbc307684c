//! The real client: the go command downloads and builds a program through modfleet-proxy,
//! from a local module corpus served by a separate origin process, then again from the cache
//! alone once the origin is gone.

mod common;

use std::path::Path;

use common::{Corpus, GoEnv, Proxy, Upstream};

fn corpus() -> Corpus {
    let c = Corpus::new();
    c.add(
        "example.test/util",
        "v1.1.0",
        Some("module example.test/util\n\ngo 1.21\n"),
        &[(
            "util.go",
            b"package util\n\nfunc Shout(s string) string { return s + \"!\" }\n",
        )],
    );
    c.add(
        "example.test/util",
        "v1.0.0",
        Some("module example.test/util\n\ngo 1.21\n"),
        &[(
            "util.go",
            b"package util\n\nfunc Shout(s string) string { return s }\n",
        )],
    );
    c.add(
        "example.test/greet",
        "v1.0.0",
        Some("module example.test/greet\n\ngo 1.21\n\nrequire example.test/util v1.1.0\n"),
        &[(
            "greet.go",
            b"package greet\n\nimport \"example.test/util\"\n\nfunc Hello() string { return util.Shout(\"hello\") }\n",
        )],
    );
    c.add(
        "example.test/greet/v2",
        "v2.0.1",
        Some("module example.test/greet/v2\n\ngo 1.21\n"),
        &[(
            "greet.go",
            b"package greet\n\nfunc Hello() string { return \"hello v2\" }\n",
        )],
    );
    c.add(
        "example.test/Upper/Case",
        "v1.2.0",
        Some("module example.test/Upper/Case\n\ngo 1.21\n"),
        &[(
            "case.go",
            b"package Case\n\nfunc Name() string { return \"Case\" }\n",
        )],
    );
    c.add(
        "example.test/legacy",
        "v2.0.0+incompatible",
        None,
        &[("legacy.go", b"package legacy\n\nconst Version = 2\n")],
    );
    c.add(
        "example.test/pseudo",
        "v0.0.0-20240102030405-abcdefabcdef",
        Some("module example.test/pseudo\n\ngo 1.21\n"),
        &[("pseudo.go", b"package pseudo\n\nconst Answer = 42\n")],
    );
    c
}

const MAIN_GO: &str = r#"package main

import (
	"fmt"

	Case "example.test/Upper/Case"
	"example.test/greet"
	greet2 "example.test/greet/v2"
	"example.test/legacy"
	"example.test/pseudo"
)

func main() {
	fmt.Println(greet.Hello(), greet2.Hello(), Case.Name(), legacy.Version, pseudo.Answer)
}
"#;

const GO_MOD: &str = "module example.test/app

go 1.21

require (
	example.test/Upper/Case v1.2.0
	example.test/greet v1.0.0
	example.test/greet/v2 v2.0.1
	example.test/legacy v2.0.0+incompatible
	example.test/pseudo v0.0.0-20240102030405-abcdefabcdef
)
";

fn write_app(dir: &Path) {
    std::fs::write(dir.join("go.mod"), GO_MOD).unwrap();
    std::fs::write(dir.join("main.go"), MAIN_GO).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn go_downloads_and_builds_through_the_proxy() {
    let corpus = corpus();
    let origin = Upstream::serve(corpus.root());
    let cache = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(cache.path(), &["--upstream", &origin.url]);
    let go = GoEnv::new();
    let app = tempfile::tempdir().unwrap();
    write_app(app.path());

    let local = |args: &[&str]| {
        let mut c = go.command(app.path(), &proxy.url);
        c.args(args).env("GONOSUMDB", "example.test");
        c
    };
    go.run(local(&["mod", "download", "-x"]));
    go.run(local(&["build", "-o", "app", "."]));
    let out = std::process::Command::new(app.path().join("app"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello! hello v2 Case 2 42\n"
    );

    // list and @latest: `go list -m -versions` and `go get ...@latest`.
    let versions = go.run(local(&["list", "-m", "-versions", "example.test/util"]));
    assert_eq!(versions.trim(), "example.test/util v1.0.0 v1.1.0");
    go.run(local(&["get", "example.test/util@latest"]));
    let listed = go.run(local(&["list", "-m", "example.test/util"]));
    assert_eq!(listed.trim(), "example.test/util v1.1.0");

    // The origin is gone: a clean client builds again from the proxy's cache alone.
    assert!(origin.hits("/example.test/greet/@v/v1.0.0.zip") == 1);
    drop(origin);
    go.run(local(&["clean", "-modcache"]));
    go.run(local(&["mod", "download"]));
    go.run(local(&["build", "-o", "app2", "."]));
    let out = std::process::Command::new(app.path().join("app2"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello! hello v2 Case 2 42\n"
    );
    assert!(
        proxy
            .metric(r#"modfleet_proxy_requests_total{route="zip",status="200",cache="hit"}"#)
            .await
            >= 6.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn go_reports_missing_modules_and_outages_differently() {
    let corpus = corpus();
    let origin = Upstream::serve(corpus.root());
    let cache = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(cache.path(), &["--upstream", &origin.url]);
    let go = GoEnv::new();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("go.mod"),
        "module example.test/app\n\ngo 1.21\n",
    )
    .unwrap();

    // A module nobody has: 404, so `,direct`-style fallback would be allowed.
    let mut c = go.command(app.path(), &proxy.url);
    c.args(["mod", "download", "example.test/nothere@v1.0.0"])
        .env("GONOSUMDB", "example.test");
    let out = c.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404 Not Found"), "{err}");

    // The origin is down and nothing is cached: 502, and the go command does not fall back.
    drop(origin);
    let mut c = go.command(app.path(), &format!("{},direct", proxy.url));
    c.args(["mod", "download", "example.test/greet@v1.0.0"])
        .env("GONOSUMDB", "example.test");
    let out = c.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("502 Bad Gateway"), "{err}");
    assert!(
        !err.contains("unrecognized import path"),
        "fell back to direct: {err}"
    );
}
