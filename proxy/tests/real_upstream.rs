//! A real upstream: the Go module proxy this machine is configured with (read from
//! `go env GOPROXY` at run time) behind modfleet-proxy, a real dependency graph downloaded by the
//! go command with checksum verification on, through modfleet's sumdb proxying.

mod common;

use std::process::Command;

use common::{GoEnv, Proxy};

#[tokio::test(flavor = "multi_thread")]
async fn a_real_dependency_graph_with_checksum_verification() {
    common::require_tool("go", "the real-upstream test");
    let upstream = modfleet_testkit::go::machine_goproxy();
    let cache = tempfile::tempdir().unwrap();
    // Every .mod and zip is also checked against the real checksum database, which the proxy
    // reaches through the upstream's own /sumdb/ endpoint.
    let proxy = Proxy::start(
        cache.path(),
        &["--upstream", &upstream, "--verify-sumdb", "on"],
    );
    let go = GoEnv::new();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("go.mod"),
        "module example.test/real\n\ngo 1.22\n",
    )
    .unwrap();
    std::fs::write(
        app.path().join("main.go"),
        r#"package main

import (
	"fmt"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"golang.org/x/net/html"
	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

func main() {
	_ = html.NewTokenizer
	_ = &cobra.Command{Use: "x"}
	fmt.Println(cases.Title(language.English).String("modfleet"), cmp.Equal(1, 1))
}
"#,
    )
    .unwrap();
    // GOSUMDB stays at the go command's default: with only modfleet in GOPROXY, the go command
    // verifies every download against the checksum database through /sumdb/ on the proxy.
    let cmd = |args: &[&str]| {
        let mut c = go.command(app.path(), &proxy.url);
        c.args(args);
        c
    };
    go.run(cmd(&[
        "get",
        "golang.org/x/text@v0.21.0",
        "golang.org/x/net@v0.33.0",
        "github.com/google/go-cmp@v0.6.0",
        "github.com/spf13/cobra@v1.8.1",
    ]));
    go.run(cmd(&["mod", "tidy"]));
    go.run(cmd(&["mod", "download", "all"]));
    let verified = go.run(cmd(&["mod", "verify"]));
    assert!(verified.contains("all modules verified"), "{verified}");
    go.run(cmd(&["build", "-o", "real", "."]));
    let out = Command::new(app.path().join("real")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Modfleet true\n");

    let go_sum = std::fs::read_to_string(app.path().join("go.sum")).unwrap();
    assert!(
        go_sum.contains("github.com/spf13/cobra v1.8.1 h1:"),
        "{go_sum}"
    );
    let sumdb_ok = proxy
        .metric(r#"modfleet_proxy_requests_total{route="sumdb",status="200"}"#)
        .await;
    assert!(
        sumdb_ok >= 2.0,
        "checksum lookups went through the proxy: {sumdb_ok}"
    );
    let zips = proxy
        .metric(r#"modfleet_proxy_requests_total{route="zip",status="200"}"#)
        .await;
    assert!(zips >= 5.0, "{zips} zips");
    let failures = proxy
        .metric(r#"modfleet_proxy_upstream_requests_total{outcome="invalid"}"#)
        .await;
    assert_eq!(failures, 0.0, "every real artifact passed verification");
    let unconfirmed = proxy.metric("modfleet_proxy_checksum_failures_total").await;
    assert_eq!(
        unconfirmed, 0.0,
        "the checksum database confirmed every artifact"
    );
    println!("real upstream: {zips} zips, {sumdb_ok} sumdb answers through the proxy");
}
