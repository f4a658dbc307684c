//! modfleet's module zip check against the go toolchain's own.
//!
//! `tests/support/checkzip` is a small Go program calling golang.org/x/mod/zip's `CheckZip` and
//! then `dirhash.HashZip` (what `go mod download` does with a zip it fetched); this test builds
//! it with the local go command (modules from `go env GOPROXY`), writes every zip of
//! `zip_reference/cases.rs`, and asserts that modfleet accepts exactly the zips Go accepts.
//! It also checks that the Unicode tables modfleet embeds are the local Go toolchain's.

#[path = "zip_reference/cases.rs"]
mod cases;
mod common;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use cases::{Case, Content};
use modfleet_proxy::protocol::{ModulePath, Version};

const SUPPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/checkzip");

/// A package of the checkzip module, built once per sources and Go version.
fn go_binary(package: &str) -> PathBuf {
    common::require_tool("go", "building the go toolchain's zip checker");
    modfleet_testkit::go::program(Path::new(SUPPORT), package)
}

/// Writes a case's zip into `dir`.
fn write_case(dir: &Path, i: usize, case: &Case) -> PathBuf {
    let path = dir.join(format!("{i:03}.zip"));
    let mut file = std::fs::File::create(&path).unwrap();
    match &case.zip {
        Content::Bytes(b) => file.write_all(b).unwrap(),
        Content::AfterHole(hole, b) => {
            file.seek(SeekFrom::Start(*hole)).unwrap();
            file.write_all(b).unwrap();
        }
    }
    path
}

/// Go's verdicts, in order: `Ok` or the go toolchain's reason.
fn go_verdicts(cases: &[Case], paths: &[PathBuf]) -> Vec<Result<(), String>> {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    let bin = BIN.get_or_init(|| go_binary("."));
    let mut input = String::new();
    for (case, path) in cases.iter().zip(paths) {
        writeln!(
            input,
            "{}\t{}\t{}",
            case.module,
            case.version,
            path.display()
        )
        .unwrap();
    }
    let mut child = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run checkzip");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "checkzip failed");
    // Go quotes names as it finds them: not always UTF-8.
    let text = String::from_utf8_lossy(&out.stdout);
    let verdicts: Vec<_> = text
        .lines()
        .map(|l| match l.split_once('\t') {
            None if l == "ok" => Ok(()),
            Some(("error", why)) => Err(why.to_string()),
            _ => panic!("checkzip printed {l:?}"),
        })
        .collect();
    assert_eq!(verdicts.len(), cases.len(), "one verdict per case");
    verdicts
}

/// modfleet's verdict on one case.
fn modfleet_verdict(case: &Case, path: &Path) -> Result<(), String> {
    let module = ModulePath::parse(case.module).unwrap();
    let version = Version::parse(&module, case.version).unwrap();
    modfleet_proxy::protocol::zip::check_zip_file(path, &module, &version)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn short(s: &str) -> String {
    let mut s = s.replace('\n', " ");
    if s.len() > 110 {
        let mut end = 110;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[test]
fn modfleet_accepts_exactly_the_zips_the_go_command_accepts() {
    let started = std::time::Instant::now();
    let cases = cases::all();
    let mut names = HashSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "two cases named {:?}", c.name);
    }
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| write_case(dir.path(), i, c))
        .collect();
    let written = started.elapsed();
    let go = go_verdicts(&cases, &paths);
    let go_time = started.elapsed() - written;

    let mut table = String::new();
    let mut mismatches = 0;
    for ((case, path), go) in cases.iter().zip(&paths).zip(&go) {
        let ours = modfleet_verdict(case, path);
        let same = ours.is_ok() == go.is_ok();
        if !same {
            mismatches += 1;
        }
        let word = |v: &Result<(), String>| if v.is_ok() { "ok" } else { "reject" };
        writeln!(
            table,
            "{} {:<62} go: {:<6} modfleet: {:<6}",
            if same { " " } else { "✗" },
            case.name,
            word(go),
            word(&ours)
        )
        .unwrap();
        if let Err(why) = go {
            writeln!(table, "      go:       {}", short(why)).unwrap();
        }
        if let Err(why) = &ours {
            writeln!(table, "      modfleet: {}", short(why)).unwrap();
        }
    }
    println!("{table}");
    println!(
        "{} zips: written in {written:.1?}, judged by go in {go_time:.1?}, by modfleet in {:.1?}",
        cases.len(),
        started.elapsed() - written - go_time
    );
    assert_eq!(
        mismatches,
        0,
        "modfleet and the go command disagree on {mismatches} of {} zips (✗):\n{table}",
        cases.len()
    );
}

#[test]
fn the_embedded_unicode_tables_are_the_go_toolchains() {
    let bin = go_binary("./unicodetables");
    let out = Command::new(bin).output().expect("run unicodetables");
    assert!(out.status.success(), "unicodetables failed");
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protocol/unicode/tables.rs");
    let committed = std::fs::read_to_string(committed).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "src/protocol/unicode/tables.rs is not what this Go toolchain's unicode package gives \
         (a new Unicode version?): regenerate it with `cd proxy/tests/support/checkzip && \
         go run ./unicodetables > ../../../src/protocol/unicode/tables.rs` and review the diff"
    );
}
