//! modfleet's module zip creation (`protocol::zip::create`) against golang.org/x/mod's, on
//! real Git repositories.
//!
//! The reference is x/mod's `zip.CreateFromVCS`: `git archive` of the revision (and
//! subdirectory), then `zip.Create`, with the repository root's LICENSE added to a module in
//! a subdirectory that has none: what the go command's `codeRepo.Zip` (cmd/go/internal/
//! modfetch/coderepo.go) does with a Git repository. (`zip.CreateFromDir` is not the
//! reference: its directory walk adds rules the go command does not apply to repositories,
//! such as skipping `.hg` directories and treating a symlinked `go.mod` as a module boundary.)
//! `tests/support/checkzip/createzip` runs it, and also lists the files it hands to `Create`,
//! which modfleet's side turns into its listing: so both sides start from the same bytes and
//! the test compares what each decides and writes: success or failure, the invalid files,
//! the entries of the zip in order, and the `h1:` hash. Every zip modfleet writes must also
//! pass x/mod's `CheckZip` + `HashZip` with the same `h1:`, and modfleet's own `check_zip`.
//!
//! Each case's `git archive` is also read by modfleet's `git_archive::ArchivedFiles`, as its
//! code host reads it: the same files, kinds, sizes and bytes as Go's `archive/zip` reads
//! (`.gitattributes` conversions included).
//!
//! The vendor rules depend on the root go.mod's go version as `modfile.ParseLax` finds it, so
//! `lax_go_version` is compared with x/mod's on a corpus and thousands of generated go.mods.

#[path = "zip_create_reference/cases.rs"]
mod cases;
mod common;
#[path = "zip_create_reference/repo.rs"]
mod repo;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use cases::{Case, build, go_mods};
use repo::{Repo, git_env};

use modfleet_proxy::protocol::modfile::lax_go_version;
use modfleet_proxy::protocol::zip::create::{
    self, CreateError, SourceFile, SourceKind, go_1_24_rules, root_license,
};
use modfleet_proxy::protocol::zip::{Limits, check_zip};
use modfleet_proxy::protocol::{ModulePath, Version};
use serde::{Deserialize, Serialize};

const SUPPORT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/checkzip");
const MODULE: &str = "example.com/m";
const VERSION: &str = "v1.0.0";

/// base64 for `[]byte` fields, as Go's encoding/json writes them.
mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const E: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&E.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        E.decode(s.unwrap_or_default())
            .map_err(serde::de::Error::custom)
    }

    /// A list of `[]byte`, read as (lossy) strings.
    pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let list: Option<Vec<String>> = Option::deserialize(d)?;
        list.unwrap_or_default()
            .iter()
            .map(|s| {
                E.decode(s)
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

#[derive(Debug, Default, Serialize)]
struct Ask {
    op: &'static str,
    repo: String,
    rev: String,
    subdir: String,
    module: String,
    version: String,
    out: String,
    zip: String,
    #[serde(with = "b64")]
    data: Vec<u8>,
}

#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(with = "b64")]
    name: Vec<u8>,
    kind: String,
    size: u64,
    #[serde(with = "b64", default)]
    data: Vec<u8>,
}

#[derive(Debug, Default, Deserialize)]
struct Invalid {
    #[serde(with = "b64")]
    path: Vec<u8>,
    err: String,
}

#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    entries: Option<Vec<Entry>>,
    h1: String,
    #[serde(default, deserialize_with = "b64::strings")]
    names: Vec<String>,
    err: String,
    #[serde(default)]
    invalid: Option<Vec<Invalid>>,
    go: String,
    go124: bool,
}

/// Asks the Go reference, one answer per question.
fn ask_go(home: &Path, asks: &[Ask]) -> Vec<Answer> {
    common::require_tool("go", "building the x/mod zip creation reference");
    let bin = modfleet_testkit::go::program(Path::new(SUPPORT), "./createzip");
    let mut cmd = Command::new(bin);
    git_env(&mut cmd, home);
    modfleet_testkit::go::ask_json_lines(cmd, asks)
}

/// modfleet's verdict: the zip's h1 and entries, or the error.
#[derive(Debug)]
struct Made {
    result: Result<(String, Vec<String>), CreateError>,
    zip: Vec<u8>,
}

fn module() -> (ModulePath, Version) {
    let m = ModulePath::parse(MODULE).unwrap();
    let v = Version::parse(&m, VERSION).unwrap();
    (m, v)
}

/// Builds modfleet's zip from a listing and the root LICENSE.
fn make(
    mut files: Vec<SourceFile>,
    mut contents: Vec<Vec<u8>>,
    subdir: &str,
    root: Option<Vec<u8>>,
) -> Made {
    let (m, v) = module();
    if let Some(license) = root_license(
        subdir,
        &files,
        root.as_ref().map(|r| (SourceKind::File, r.len() as u64)),
    ) {
        files.push(license);
        contents.push(root.unwrap());
    }
    // Paths may repeat in a crafted tree; the last content wins, as a zip's would.
    let by_path: HashMap<Vec<u8>, Vec<u8>> =
        files.iter().map(|f| f.path.clone()).zip(contents).collect();
    let mut zip = Vec::new();
    let result = create::create(&mut zip, &m, &v, files, &mut |f| {
        Ok(by_path[&f.path].clone())
    })
    .map(|created| {
        let checked = check_zip(&zip[..], zip.len() as u64, &m, &v, &Limits::default())
            .expect("modfleet's check_zip accepts the zip modfleet created");
        assert_eq!(checked.h1, created.h1);
        (created.h1, entry_names(&zip))
    });
    Made { result, zip }
}

/// The entry names of a zip modfleet wrote, in order, without the prefix.
fn entry_names(zip: &[u8]) -> Vec<String> {
    let prefix = format!("{MODULE}@{VERSION}/");
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = zip[at..].windows(4).position(|w| w == b"PK\x01\x02") {
        let h = at + i;
        let len = u16::from_le_bytes([zip[h + 28], zip[h + 29]]) as usize;
        let name = std::str::from_utf8(&zip[h + 46..h + 46 + len]).unwrap();
        out.push(name.strip_prefix(&prefix).unwrap().to_string());
        at = h + 46 + len;
    }
    out
}

fn kind_of(e: &Entry) -> SourceKind {
    match e.kind.as_str() {
        "file" => SourceKind::File,
        "exec" => SourceKind::Executable,
        "symlink" => SourceKind::Symlink,
        other => panic!("git archive gave a {other} entry"),
    }
}

fn quoted(path: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(path))
}

/// Compares one case; returns a line for the table, or Err with the difference.
fn compare(case: &Case, go: &Answer, ours: &Made) -> Result<String, String> {
    let go_ok = go.err.is_empty();
    match (&ours.result, go_ok) {
        (Ok((h1, names)), true) => {
            if *h1 != go.h1 {
                return Err(format!("h1 {h1} vs go's {}", go.h1));
            }
            if *names != go.names {
                let first = names.iter().zip(&go.names).position(|(a, b)| a != b);
                return Err(format!(
                    "{} entries, go {}; first difference at {first:?}:\n   {:?}\n   vs go's {:?}",
                    names.len(),
                    go.names.len(),
                    names.iter().take(40).collect::<Vec<_>>(),
                    go.names.iter().take(40).collect::<Vec<_>>()
                ));
            }
            Ok(format!("ok {} files {h1}", names.len()))
        }
        (Err(e), false) => {
            if let Some(invalid) = &go.invalid {
                let CreateError::Invalid(list) = e else {
                    return Err(format!("go: invalid files {invalid:?}; modfleet: {e}"));
                };
                let go_paths: BTreeSet<String> = invalid.iter().map(|i| quoted(&i.path)).collect();
                let ours: BTreeSet<String> = list.iter().map(|f| f.path.clone()).collect();
                // With several collisions, x/mod's map remembers paths that already failed and
                // flags later files too; modfleet stops at the first element that collides.
                let collisions = invalid.iter().any(|i| i.err.contains("collision"));
                let same = ours == go_paths || (collisions && ours.is_subset(&go_paths));
                if !same {
                    return Err(format!("invalid {ours:?}\n   vs go's {go_paths:?}"));
                }
            } else if go.err.contains("module source tree too large") {
                if !matches!(e, CreateError::TooLarge) {
                    return Err(format!("go: {}; modfleet: {e}", go.err));
                }
            } else {
                return Err(format!("go: {}; modfleet: {e}", go.err));
            }
            Ok(format!("error: {}", short(&e.to_string())))
        }
        (Ok(_), false) => Err(format!("go fails ({}), modfleet succeeds", go.err)),
        (Err(e), true) => Err(format!("go succeeds, modfleet fails: {e}")),
    }
    .map(|s| format!("{:<58} {s}", case.name))
}

fn short(s: &str) -> String {
    let s = s.replace('\n', " ");
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

#[test]
fn created_zips_are_the_go_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let cases = build(&tmp.path().join("repos"), &home);

    let mut asks = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let base = Ask {
            repo: c.repo.clone(),
            rev: c.rev.clone(),
            subdir: c.subdir.to_string(),
            module: MODULE.into(),
            version: VERSION.into(),
            ..Ask::default()
        };
        asks.push(Ask {
            op: "archive",
            ..base
        });
        asks.push(Ask {
            op: "create",
            repo: c.repo.clone(),
            rev: c.rev.clone(),
            subdir: c.subdir.to_string(),
            module: MODULE.into(),
            version: VERSION.into(),
            out: tmp
                .path()
                .join(format!("go-{i}.zip"))
                .to_string_lossy()
                .into(),
            ..Ask::default()
        });
    }
    let answers = ask_go(&home, &asks);

    let mut table = String::new();
    let mut failures = Vec::new();
    let mut ours_for_go = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let (listing, go) = (&answers[2 * i], &answers[2 * i + 1]);
        assert!(
            listing.err.is_empty(),
            "{}: git archive: {}",
            c.name,
            listing.err
        );
        let repo = Repo {
            dir: PathBuf::from(&c.repo),
            home: home.clone(),
            gitlinks: Vec::new(),
        };
        let root = repo.root_license(&c.rev);
        let entries = listing.entries.as_deref().unwrap_or_default();
        let files = entries
            .iter()
            .map(|e| SourceFile {
                path: e.name.clone(),
                kind: kind_of(e),
                size: e.size,
            })
            .collect();
        let contents = entries.iter().map(|e| e.data.clone()).collect();
        let ours = make(files, contents, c.subdir, root.clone());
        match compare(c, go, &ours) {
            Ok(line) => writeln!(table, "  {line}").unwrap(),
            Err(why) => {
                writeln!(table, "✗ {:<58} {why}", c.name).unwrap();
                failures.push(c.name.clone());
            }
        }
        if let Ok((h1, _)) = &ours.result {
            let path = tmp.path().join(format!("ours-{i}.zip"));
            std::fs::write(&path, &ours.zip).unwrap();
            ours_for_go.push((c.name.clone(), h1.clone(), path));
        }

        // modfleet's own reading of `git archive` (its code host's path) lists the same
        // files with the same bytes as Go's reading of it.
        match repo.archive_listing(&c.rev, c.subdir) {
            Ok((files, contents)) => {
                let theirs: Vec<(Vec<u8>, SourceKind, u64, Vec<u8>)> = entries
                    .iter()
                    .map(|e| (e.name.clone(), kind_of(e), e.size, e.data.clone()))
                    .collect();
                let ours: Vec<(Vec<u8>, SourceKind, u64, Vec<u8>)> = files
                    .into_iter()
                    .zip(contents)
                    .map(|(f, data)| (f.path, f.kind, f.size, data))
                    .collect();
                if ours != theirs {
                    writeln!(
                        table,
                        "✗ {:<58} modfleet's reading of git archive differs from Go's",
                        c.name
                    )
                    .unwrap();
                    failures.push(c.name.clone());
                }
            }
            Err(e) => {
                writeln!(table, "✗ {:<58} modfleet's git archive: {e}", c.name).unwrap();
                failures.push(c.name.clone());
            }
        }
    }

    // x/mod's CheckZip and HashZip accept every zip modfleet wrote, with the same h1.
    let checks: Vec<Ask> = ours_for_go
        .iter()
        .map(|(_, _, path)| Ask {
            op: "check",
            zip: path.to_string_lossy().into(),
            module: MODULE.into(),
            version: VERSION.into(),
            ..Ask::default()
        })
        .collect();
    for ((name, h1, _), go) in ours_for_go.iter().zip(ask_go(&home, &checks)) {
        if !go.err.is_empty() || go.h1 != *h1 {
            writeln!(
                table,
                "✗ {name:<58} x/mod's CheckZip of modfleet's zip: {} {}",
                go.err, go.h1
            )
            .unwrap();
            failures.push(name.clone());
        }
    }
    println!("{table}");
    assert!(
        failures.is_empty(),
        "modfleet and x/mod disagree on {} of {} cases (✗):\n{table}",
        failures.len(),
        cases.len()
    );
}

/// A zip of 70 000 files needs a zip64 end record; x/mod reads modfleet's.
#[test]
fn x_mod_reads_modfleets_zip64() {
    let (m, v) = module();
    let files: Vec<SourceFile> = (0..70_000)
        .map(|i| SourceFile {
            path: format!("d{}/f{i}", i % 100).into_bytes(),
            kind: SourceKind::File,
            size: 2,
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("zip64.zip");
    let out = std::fs::File::create(&path).unwrap();
    let created = create::create(std::io::BufWriter::new(out), &m, &v, files, &mut |_| {
        Ok(b"x\n".to_vec())
    })
    .unwrap();
    assert_eq!(created.files, 70_000);
    let go = ask_go(
        tmp.path(),
        &[Ask {
            op: "check",
            zip: path.to_string_lossy().into(),
            module: MODULE.into(),
            version: VERSION.into(),
            ..Ask::default()
        }],
    );
    assert_eq!(go[0].err, "");
    assert_eq!(go[0].h1, created.h1);
}

#[test]
fn go_versions_of_go_mods_are_x_mods() {
    let mods = go_mods();
    let asks: Vec<Ask> = mods
        .iter()
        .map(|data| Ask {
            op: "gomod",
            data: data.clone(),
            ..Ask::default()
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let answers = ask_go(tmp.path(), &asks);
    let mut wrong = Vec::new();
    let mut with_version = 0;
    for (data, go) in mods.iter().zip(&answers) {
        let ours = lax_go_version(data).unwrap_or_default();
        with_version += usize::from(!go.go.is_empty());
        if ours != go.go || go_1_24_rules(data) != go.go124 {
            wrong.push(format!(
                "{:?}: go {:?} (1.24 rules {}), modfleet {ours:?} ({})",
                String::from_utf8_lossy(data),
                go.go,
                go.go124,
                go_1_24_rules(data)
            ));
        }
    }
    println!(
        "{} go.mods, {with_version} with a go version x/mod accepts",
        mods.len()
    );
    assert!(
        with_version > mods.len() / 10 && with_version < mods.len() * 9 / 10,
        "the corpus should mix files that parse and files that do not"
    );
    assert!(
        wrong.is_empty(),
        "{} of {} go.mods read differently:\n{}",
        wrong.len(),
        mods.len(),
        wrong[..wrong.len().min(20)].join("\n")
    );
}
