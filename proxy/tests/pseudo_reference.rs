//! modfleet's pseudo-versions and semantic versions against golang.org/x/mod's.
//!
//! `tests/support/checkzip/pseudoref` is a small Go program answering with x/mod's
//! `module.PseudoVersion`, `IsPseudoVersion`, `PseudoVersionBase/Rev/Time`,
//! `ZeroPseudoVersion`, `PathMajorPrefix`, every `semver` function, and the history-free part
//! of the go command's `validatePseudoVersion`. This test builds it with the local go command
//! (modules from `go env GOPROXY`), generates tens of thousands of cases (v0, v1, v2+,
//! prereleases, build metadata, `+incompatible`, bad dates, bad revisions, bad syntax), and
//! asserts that every answer of modfleet's `protocol::pseudo` and `protocol::semver` is Go's.

mod common;

use std::cmp::Ordering;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use modfleet_proxy::protocol::pseudo::{self, PseudoCommit};
use modfleet_proxy::protocol::semver;
use serde::{Deserialize, Serialize};

const SUPPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/checkzip");

#[derive(Debug, Clone, Default, Serialize)]
struct Case {
    op: &'static str,
    v: String,
    w: String,
    major: String,
    older: String,
    rev: String,
    sec: i64,
    nsec: i64,
    module: String,
    pseudo_major: String,
    tag_prefix: String,
    short: String,
    tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
struct Answer {
    out: String,
    bool: bool,
    sec: i64,
    err: String,
    canonical: String,
    major: String,
    major_minor: String,
    prerelease: String,
    build: String,
    compare: i32,
    max: String,
}

/// Go's answers, one per case, in order.
fn go_answers(cases: &[Case]) -> Vec<Answer> {
    common::require_tool("go", "building the x/mod pseudo-version reference");
    let bin = modfleet_testkit::go::program(Path::new(SUPPORT), "./pseudoref");
    modfleet_testkit::go::ask_json_lines(Command::new(bin), cases)
}

/// Go's `time.Unix(sec, nsec)` for `0 <= nsec < 1e9`.
fn time(sec: i64, nsec: i64) -> SystemTime {
    let whole = Duration::from_secs(sec.unsigned_abs());
    let at = if sec >= 0 {
        UNIX_EPOCH + whole
    } else {
        UNIX_EPOCH - whole
    };
    at + Duration::from_nanos(nsec as u64)
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// Whether Go's `%q` and Rust's `{:?}` quote `s` alike (messages are compared only then).
fn quotes_alike(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// modfleet's answer to a case, in the reference program's shape.
fn ours(c: &Case) -> Answer {
    let mut a = Answer::default();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    match c.op {
        "pseudo" => a.out = pseudo::pseudo_version(&c.major, &c.older, time(c.sec, c.nsec), &c.rev),
        "zero" => a.out = pseudo::zero_pseudo_version(&c.major),
        "iszero" => a.bool = pseudo::is_zero_pseudo_version(&c.v),
        "is" => a.bool = pseudo::is_pseudo_version(&c.v),
        "base" => match pseudo::pseudo_version_base(&c.v) {
            Ok(b) => a.out = b.unwrap_or_default(),
            Err(e) => a.err = err(&e),
        },
        "rev" => match pseudo::pseudo_version_rev(&c.v) {
            Ok(r) => a.out = r.to_string(),
            Err(e) => a.err = err(&e),
        },
        "time" => match pseudo::pseudo_version_time(&c.v) {
            Ok(t) => a.sec = unix(t),
            Err(e) => {
                a.err = err(&e);
                a.sec = unix(time(-62_135_596_800, 0)); // Go's zero time
            }
        },
        "pathmajor" => match pseudo::path_major_prefix(&c.v) {
            Some(m) => a.out = m.to_string(),
            None => a.err = "panic".into(),
        },
        "semver" => {
            a.bool = semver::is_valid(&c.v);
            a.canonical = semver::canonical(&c.v).unwrap_or_default();
            a.major = semver::major(&c.v).unwrap_or_default().to_string();
            a.major_minor = semver::major_minor(&c.v).unwrap_or_default();
            a.prerelease = semver::prerelease(&c.v).to_string();
            a.build = semver::build(&c.v).to_string();
            a.compare = match semver::compare(&c.v, &c.w) {
                Ordering::Less => -1,
                Ordering::Equal => 0,
                Ordering::Greater => 1,
            };
            a.max = semver::max(&c.v, &c.w);
        }
        "validate" => {
            let commit = PseudoCommit {
                module: &c.module,
                pseudo_major: &c.pseudo_major,
                tag_prefix: &c.tag_prefix,
                short: &c.short,
                time: time(c.sec, c.nsec),
                tags: &c.tags,
            };
            match pseudo::validate_pseudo_version(&c.v, &commit) {
                Ok(base) => a.out = base.unwrap_or_default(),
                Err(e) => a.err = err(&e),
            }
        }
        op => panic!("unknown op {op}"),
    }
    a
}

/// Versions that are and are not semantic versions, as tags and as `older`.
const VERSIONS: &[&str] = &[
    "",
    "v",
    "v0",
    "v1",
    "v2",
    "v1.2",
    "v0.0.0",
    "v0.0.1",
    "v0.1.0",
    "v1.0.0",
    "v1.2.3",
    "v1.2.9",
    "v1.2.99",
    "v1.9.9",
    "v1.2.99999999999999999",
    "v2.0.0",
    "v10.20.30",
    "v18446744073709551616.0.0",
    "v1.2.3-pre",
    "v1.2.3-pre.1",
    "v1.2.3-pre.0",
    "v1.2.3-0",
    "v1.2.3-0.1",
    "v1.2.3-rc.1.x-y",
    "v1.3.0-pre",
    "v0.0.0--",
    "v1.0.0-alpha.beta",
    "v1.0.0-alpha.1",
    "v1.0.0-alpha",
    "v1.0.0-beta.11",
    "v1.0.0-beta.2",
    "v1.0.0+metadata",
    "v1.0.0+meta.data-x",
    "v2.0.0+incompatible",
    "v2.3.0-pre+incompatible",
    "v3.1.4+incompatible",
    "v1.2.3-pre+meta",
    "v1.2.3-01",
    "v1.2.3-a..b",
    "v1.2.3+",
    "v1.2.3+a..b",
    "v1.2-pre",
    "v01.2.3",
    "v1.02.3",
    "1.2.3",
    "V1.2.3",
    "v1.2.3.4",
    "v1.2.3 ",
    "vx.y.z",
    "master",
    "v1.2.3-é",
];

const MAJORS: &[&str] = &["", "v0", "v1", "v2", "v17", "unused"];

/// Commit times: ordinary, at the edges of the calendar, before 1970, with fractions.
const TIMES: &[(i64, i64)] = &[
    (1_136_214_245, 0),
    (1_136_214_245, 999_999_999),
    (0, 0),
    (-1, 0),
    (-1, 500_000_000),
    (951_782_400, 0),
    (951_868_799, 1),
    (1_700_000_000, 123),
    (4_102_444_800, 0),
    (-62_135_596_800, 0),
    (-62_167_219_200, 0),
    (-62_167_219_201, 0),
    (253_402_300_799, 0),
    (253_402_300_800, 0),
    (-2_208_988_800, 0),
];

const REVS: &[&str] = &[
    "abcdefabcdef",
    "hash",
    "ABCDEF012345",
    "0123456789abcdef0123456789abcdef01234567",
    "a",
    "",
    "a-b",
    "a_b",
    "a.b",
];

const TIMESTAMPS: &[&str] = &[
    "20060102150405",
    "00010101000000",
    "00000101000000",
    "99991231235959",
    "20000229120000",
    "19000229120000",
    "20060230150405",
    "20061301150405",
    "20060001150405",
    "20060100150405",
    "20060132150405",
    "20060102240000",
    "20060102156000",
    "20060102150460",
    "2006010215040",
    "200601021504050",
];

const BUILDS: &[&str] = &[
    "",
    "+incompatible",
    "+meta",
    "+a.b-c",
    "+",
    "+a..b",
    "+incompatible.x",
];

/// Pseudo-version-shaped strings: every base form, good and bad timestamps, revisions and
/// build metadata, and near misses of the pattern.
fn pseudo_shaped() -> Vec<String> {
    let bases = [
        "v0.0.0-",
        "v1.0.0-",
        "v2.0.0-",
        "v0.0.1-0.",
        "v1.2.4-0.",
        "v1.2.0-0.",
        "v1.0.0-0.",
        "v0.1.0-0.",
        "v0.0.0-0.",
        "v2.0.1-0.",
        "v1.2.3-pre.0.",
        "v1.2.3-pre.x.0.",
        "v1.2.3-0.0.",
        "v0.0.0--.0.",
        "v1.2.4-1.",
        "v1.2.4-pre.",
        "v1.1.0-",
        "v00.0.0-",
        "v0.0-",
        "v1.2.3-01.0.",
        "v1.2.100000000000000000-0.",
        "v1.10.0-0.",
        "v1.0.0-0.0.",
    ];
    let mut out = Vec::new();
    for base in bases {
        for ts in TIMESTAMPS {
            for rev in ["abcdefabcdef", "hash", "", "a_b"] {
                for build in BUILDS {
                    out.push(format!("{base}{ts}-{rev}{build}"));
                }
            }
        }
    }
    out.extend(
        [
            "v0.0.0-20191109021931-daa7c04131f5-x",
            "---",
            "v0.0.0-00010101000000-000000000000",
            "v2.0.0-00010101000000-000000000000",
            "v2.0.0-00010101000000-000000000000+incompatible",
            "v0.0.0-00010101000000-000000000001",
            "v1.2.3-20191109021931-daa7c04131f5",
            "v1.2.3-pre.20191109021931.0.20191109021931-daa7c04131f5",
        ]
        .map(String::from),
    );
    out
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let case = |op| Case {
        op,
        ..Case::default()
    };
    for major in MAJORS {
        for older in VERSIONS {
            for &(sec, nsec) in TIMES {
                for rev in REVS {
                    cases.push(Case {
                        major: major.to_string(),
                        older: older.to_string(),
                        sec,
                        nsec,
                        rev: rev.to_string(),
                        ..case("pseudo")
                    });
                }
            }
        }
        cases.push(Case {
            major: major.to_string(),
            ..case("zero")
        });
    }
    let mut versions: Vec<String> = VERSIONS.iter().map(|v| v.to_string()).collect();
    versions.extend(pseudo_shaped());
    // Every generated pseudo-version is taken apart again.
    let generated: Vec<String> = cases
        .iter()
        .filter(|c| c.op == "pseudo")
        .step_by(7)
        .map(|c| pseudo::pseudo_version(&c.major, &c.older, time(c.sec, c.nsec), &c.rev))
        .collect();
    versions.extend(generated);
    for v in &versions {
        for op in ["is", "iszero", "base", "rev", "time"] {
            cases.push(Case {
                v: v.clone(),
                ..case(op)
            });
        }
    }
    for (i, v) in versions.iter().enumerate() {
        // Every plain version with every other; each pseudo-version with a few of each.
        let plain = if i < VERSIONS.len() { 1 } else { 13 };
        for w in VERSIONS
            .iter()
            .skip(i % plain)
            .step_by(plain)
            .map(|w| w.to_string())
            .chain(versions.iter().skip(i % 97).step_by(4001).cloned())
        {
            cases.push(Case {
                v: v.clone(),
                w,
                ..case("semver")
            });
        }
    }
    for suffix in [
        "",
        "/v2",
        "/v10",
        ".v0",
        ".v1",
        ".v1-unstable",
        ".v2-unstable",
        "/v2-unstable",
        "/v2.1",
        "/vx",
        "/v",
    ] {
        cases.push(Case {
            v: suffix.to_string(),
            ..case("pathmajor")
        });
    }
    validate_cases(&mut cases, &versions);
    cases
}

/// The go command's checks of a requested pseudo-version against the commit it names.
fn validate_cases(cases: &mut Vec<Case>, versions: &[String]) {
    let time = (1_136_214_245, 250_000_000);
    let mut requested: Vec<String> = versions
        .iter()
        .filter(|v| v.contains("20060102150405") || !v.contains('-'))
        .cloned()
        .collect();
    for base in [
        "v0.0.0-",
        "v1.0.0-",
        "v2.0.0-",
        "v1.2.4-0.",
        "v1.2.3-pre.0.",
    ] {
        for ts in ["20060102150405", "20060102150404", "20060102150406"] {
            for rev in ["abcdefabcdef", "abcdefabcdef0", "abcdef", "bbcdefabcdef"] {
                for build in ["", "+incompatible", "+meta"] {
                    requested.push(format!("{base}{ts}-{rev}{build}"));
                }
            }
        }
    }
    let tag_sets: [&[&str]; 5] = [
        &[],
        &["v1.2.3"],
        &["sub/v1.2.3", "v1.2.3-pre"],
        &["sub/v1.2.3-pre", "other"],
        &["v1.2.3+incompatible", "sub/v1.2.3+meta"],
    ];
    for v in requested {
        for (pseudo_major, tag_prefix) in [("", ""), ("v2", ""), ("", "sub/"), ("v1", "sub/")] {
            for tags in tag_sets {
                cases.push(Case {
                    op: "validate",
                    v: v.clone(),
                    module: "example.com/m".into(),
                    pseudo_major: pseudo_major.into(),
                    tag_prefix: tag_prefix.into(),
                    short: "abcdefabcdef".into(),
                    sec: time.0,
                    nsec: time.1,
                    tags: tags.iter().map(|t| t.to_string()).collect(),
                    ..Case::default()
                });
            }
        }
    }
}

#[test]
fn pseudo_versions_and_semver_answer_as_x_mod_does() {
    let cases = cases();
    let go = go_answers(&cases);
    let mut mismatches = Vec::new();
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (c, go) in cases.iter().zip(&go) {
        *counts.entry(c.op).or_default() += 1;
        let mut ours = ours(c);
        // Error texts are compared where Go's %q and Rust's {:?} quote alike; otherwise
        // only that both failed.
        let comparable = [&c.v, &c.w, &c.older].iter().all(|s| quotes_alike(s));
        if !comparable && !ours.err.is_empty() && !go.err.is_empty() {
            ours.err = go.err.clone();
        }
        if c.op == "pathmajor" && !go.err.is_empty() && !ours.err.is_empty() {
            ours.err = go.err.clone(); // a panic in Go, None here
        }
        if &ours != go {
            mismatches.push(format!("{c:?}\n  go:       {go:?}\n  modfleet: {ours:?}"));
        }
    }
    println!("{} cases: {counts:?}", cases.len());
    assert!(
        mismatches.is_empty(),
        "{} of {} answers differ from x/mod's; the first ones:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches[..mismatches.len().min(20)].join("\n")
    );
}
