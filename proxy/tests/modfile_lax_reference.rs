//! How modfleet reads a go.mod fetched from a repository, against golang.org/x/mod itself:
//! `module_path_lax` is `modfile.ModulePath` (whose go.mod it is, for `coderepo`'s findDir)
//! and `lax_retractions` is the `retract` list of `modfile.ParseLax` (which versions
//! `coderepo` and `@latest` skip). `tests/support/checkzip/modfileref` answers for x/mod; the
//! cases combine module lines, retract forms and other directives, well- and ill-formed.

mod common;

use std::path::Path;
use std::process::Command;

use modfleet_proxy::protocol::modfile::{lax_retractions, module_path_lax};
use serde::{Deserialize, Serialize};

const SUPPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/checkzip");

#[derive(Serialize)]
struct Case {
    #[serde(with = "base64_bytes")]
    data: Vec<u8>,
}

#[derive(Deserialize)]
struct Answer {
    module: String,
    parsed: bool,
    retract: Vec<(String, String)>,
}

mod base64_bytes {
    use base64::Engine;
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }
}

fn go_answers(cases: &[Vec<u8>]) -> Vec<Answer> {
    common::require_tool("go", "building the x/mod modfile reference");
    let bin = modfleet_testkit::go::program(Path::new(SUPPORT), "./modfileref");
    let cases: Vec<Case> = cases
        .iter()
        .map(|data| Case { data: data.clone() })
        .collect();
    modfleet_testkit::go::ask_json_lines(Command::new(bin), &cases)
}

/// Every combination of a module line, retract directives and another directive.
fn cases() -> Vec<Vec<u8>> {
    let modules: &[&[u8]] = &[
        b"module example.com/m\n",
        b"module \"example.com/q\"\n",
        b"module `example.com/r`\n",
        b"  module   example.com/s // comment\n",
        b"module \"example.com/\\x41\\u00e9\"\n",
        b"module \"unterminated\n",
        b"module\n",
        b"modulex example.com/t\n",
        b"module a b\n",
        b"module (\n\texample.com/u\n)\n",
        b"// module example.com/v\n",
        b"\xc2\xa0module\xc2\xa0example.com/w\n",
        b"module example.com/\xff\n",
        b"module \"a\\q\"\n",
        b"",
    ];
    let retracts: &[&[u8]] = &[
        b"",
        b"retract v1.0.0\n",
        b"retract v1.0.0 // broken\n",
        b"// Rationale.\nretract [v1.1.0, v1.2.0]\n",
        b"retract (\n\tv1.3.0\n\t[v1.4.0, v1.5.0] // range\n\n\t\"v1.6.0\"\n)\n",
        b"retract [v1.0.0 v2.0.0]\n",
        b"retract [v1.0.0,\n",
        b"retract\n",
        b"retract not-a-version\n",
        b"retract v1.0\n",
        b"retract \"v1.0.0\n",
        b"retract [ v1.0.0 , v1.1.0 ] trailing\n",
        b"retract ( )\n",
        b"retract (\n\tv1.0.0\n",
        b"retract `v1.0.0`\n",
        b"retract v1.0.0 /* no */\n",
    ];
    let others: &[&[u8]] = &[
        b"",
        b"go 1.21\n",
        b"go 1.21.3-custom\n",
        b"go v1.21\n",
        b"go 1.21\ngo 1.22\n",
        b"require example.com/x v1.0.0\n",
        b"require example.com/x\n",
        b"require example.com/x/v2 v1.0.0\n",
        b"require (\n\texample.com/x v1.2.3 // indirect\n)\n",
        b"replace example.com/x => ../x\nexclude a b c\n",
        b"unknown (\n\twhatever\n)\n",
        b")\n",
        b"toolchain go1.22.0\ngodebug x=y\n",
        b"module example.com/again\n",
        b"ignore ./x\n",
    ];
    let mut out = Vec::new();
    for m in modules {
        for r in retracts {
            for o in others {
                out.push([*m, *r, *o].concat());
                out.push([*o, *r, *m].concat());
            }
        }
    }
    out
}

#[test]
fn module_paths_and_retractions_are_x_mods() {
    let cases = cases();
    let answers = go_answers(&cases);
    let mut wrong = Vec::new();
    let (mut parsed, mut with_retractions) = (0, 0);
    for (data, go) in cases.iter().zip(&answers) {
        parsed += usize::from(go.parsed);
        with_retractions += usize::from(!go.retract.is_empty());
        let ours_module = module_path_lax(data);
        let ours: Vec<(String, String)> = lax_retractions(data)
            .into_iter()
            .map(|r| (r.low, r.high))
            .collect();
        if ours_module != go.module || ours != go.retract {
            wrong.push(format!(
                "{:?}:\n    x/mod:    {:?} {:?}\n    modfleet: {ours_module:?} {ours:?}",
                String::from_utf8_lossy(data),
                go.module,
                go.retract
            ));
        }
    }
    println!(
        "{} go.mods, {parsed} parse, {with_retractions} with retractions",
        cases.len()
    );
    assert!(
        parsed > cases.len() / 10 && with_retractions > cases.len() / 10,
        "the corpus should mix files that parse and files that do not"
    );
    assert!(
        wrong.is_empty(),
        "{} of {} go.mods read differently:\n{}",
        wrong.len(),
        cases.len(),
        wrong[..wrong.len().min(15)].join("\n")
    );
}
