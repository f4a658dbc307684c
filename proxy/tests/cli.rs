//! The command line: --help, and bad flags or config that exit 2 with a message naming the
//! problem.

mod common;

use std::process::{Command, Output};

use common::PROXY_BIN;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(PROXY_BIN);
    c.args(args).env_remove("GOPROXY");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_explains_every_flag_and_its_environment_variable() {
    let o = run(&["--help"], &[]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--listen",
        "--admin-listen",
        "--cache-dir",
        "--cache-max-bytes",
        "--upstream",
        "--sumdb",
        "--list-ttl",
        "--log-format",
        "--config",
        "--exclude",
        "--header-read-timeout",
        "--idle-timeout",
        "--send-timeout",
        "--max-connections",
        "--max-connections-per-ip",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
        let env = format!(
            "MODFLEET_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(text.contains(&env), "--help lacks {env}");
    }
    assert!(text.contains("verify"));
}

#[test]
fn no_upstream_exits_2_and_says_how_to_set_one() {
    // No GOPROXY with an http entry and no go command on PATH.
    let o = run(&[], &[("GOPROXY", "off"), ("PATH", "/nonexistent")]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("no upstream proxy configured") && e.contains("--upstream"),
        "{e}"
    );
}

#[test]
fn bad_values_exit_2_naming_the_problem() {
    let o = run(&["--upstream", "ftp://x.example"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("ftp://x.example"));

    let o = run(
        &[
            "--upstream",
            "http://x.example",
            "--cache-max-bytes",
            "12parsecs",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid size"));

    let o = run(
        &["--upstream", "http://x.example", "--list-ttl", "soon"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid duration"));

    let o = run(&["--no-such-flag"], &[]);
    assert_eq!(o.status.code(), Some(2));

    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config_file(
        dir.path(),
        "upstreams:\n  - url: http://x.example\ncachedir: /tmp\n",
    );
    let o = run(&["--config", cfg.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("modfleet.yaml") && e.contains("cachedir"), "{e}");

    let o = run(&["--config", "/nonexistent/modfleet.yaml"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/modfleet.yaml"));
}

#[test]
fn environment_variables_set_flags() {
    // A bad value through the environment is reported like a bad flag.
    let o = run(&[], &[("MODFLEET_UPSTREAM", "gopher://x.example")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("gopher://x.example"));
}
