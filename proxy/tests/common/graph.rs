//! A small module graph the go command downloads and builds: `example.test/app` requires
//! greet (which requires util v1.1.0, while util v1.0.0 exists too), a module with upper-case
//! letters in its path and a `+incompatible` version without a go.mod. The app prints
//! "hello! Case 2".

use super::{Corpus, Upstream};

pub fn corpus() -> Corpus {
    let c = Corpus::new();
    for (v, body) in [("v1.0.0", "s"), ("v1.1.0", "s + \"!\"")] {
        c.add(
            "example.test/util",
            v,
            Some("module example.test/util\n\ngo 1.21\n"),
            &[(
                "util.go",
                format!("package util\n\nfunc Shout(s string) string {{ return {body} }}\n")
                    .as_bytes(),
            )],
        );
    }
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
    c
}

pub const APP_GO_MOD: &str = "module example.test/app

go 1.21

require (
	example.test/Upper/Case v1.2.0
	example.test/greet v1.0.0
	example.test/legacy v2.0.0+incompatible
)
";

pub const APP_MAIN: &str = r#"package main

import (
	"fmt"

	Case "example.test/Upper/Case"
	"example.test/greet"
	"example.test/legacy"
)

func main() { fmt.Println(greet.Hello(), Case.Name(), legacy.Version) }
"#;

/// A fresh copy of the app (a go command updates go.mod and go.sum).
pub fn app_dir() -> tempfile::TempDir {
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("go.mod"), APP_GO_MOD).unwrap();
    std::fs::write(app.path().join("main.go"), APP_MAIN).unwrap();
    app
}

/// The immutable artifacts `up` served from `corpus` (what a member writes to the store).
pub fn immutable_served(up: &Upstream, corpus: &Corpus) -> Vec<String> {
    let mut paths: Vec<String> = up
        .all_hits()
        .into_keys()
        .filter(|p| p.ends_with(".info") || p.ends_with(".mod") || p.ends_with(".zip"))
        .filter(|p| corpus.root().join(&p[1..]).is_file())
        .collect();
    paths.sort();
    paths
}
