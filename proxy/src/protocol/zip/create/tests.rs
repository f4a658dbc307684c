//! Unit tests of create.rs; `tests/zip_create_reference.rs` compares with x/mod on real Git
//! repositories.

use std::collections::HashMap;

use super::*;
use crate::protocol::zip::{Limits, check_zip};

fn m() -> ModulePath {
    ModulePath::parse("example.com/m").unwrap()
}

fn v() -> Version {
    Version::parse(&m(), "v1.0.0").unwrap()
}

fn file(path: &str, kind: SourceKind, size: u64) -> SourceFile {
    SourceFile {
        path: path.as_bytes().to_vec(),
        kind,
        size,
    }
}

/// A tree in memory: (path, kind, content).
fn tree(entries: &[(&str, SourceKind, &str)]) -> (Vec<SourceFile>, HashMap<Vec<u8>, Vec<u8>>) {
    let files = entries
        .iter()
        .map(|&(p, k, c)| file(p, k, c.len() as u64))
        .collect();
    let contents = entries
        .iter()
        .map(|&(p, _, c)| (p.as_bytes().to_vec(), c.as_bytes().to_vec()))
        .collect();
    (files, contents)
}

/// Creates the zip, checks it with check_zip, and returns the paths in it.
fn zip_of(entries: &[(&str, SourceKind, &str)]) -> Result<Vec<String>, CreateError> {
    let (files, contents) = tree(entries);
    let mut out = Vec::new();
    let created = create(&mut out, &m(), &v(), files, &mut |f| {
        Ok(contents[&f.path].clone())
    })?;
    let checked = check_zip(&out[..], out.len() as u64, &m(), &v(), &Limits::default())
        .expect("a created zip passes check_zip");
    assert_eq!(checked.h1, created.h1);
    assert_eq!(checked.files, created.files);
    assert_eq!(checked.bytes, created.content_bytes);
    assert_eq!(created.zip_bytes, out.len() as u64);
    Ok(names(&out))
}

/// The entry names of a zip, in order, without the prefix (central directory walk).
fn names(zip: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = zip[at..].windows(4).position(|w| w == b"PK\x01\x02") {
        let h = at + i;
        let len = u16::from_le_bytes([zip[h + 28], zip[h + 29]]) as usize;
        let name = std::str::from_utf8(&zip[h + 46..h + 46 + len]).unwrap();
        out.push(
            name.strip_prefix("example.com/m@v1.0.0/")
                .unwrap()
                .to_string(),
        );
        at = h + 46 + len;
    }
    out
}

use SourceKind::{Executable, File, Submodule, Symlink};

#[test]
fn files_keep_their_order_and_omissions_are_left_out() {
    let got = zip_of(&[
        ("LICENSE", File, "license"),
        ("a.go", File, "package a"),
        ("bin/run.sh", Executable, "#!/bin/sh"),
        ("link", Symlink, "a.go"),
        ("sub", Submodule, ""),
        ("nested/go.mod", File, "module example.com/m/nested"),
        ("nested/x.go", File, "package x"),
        ("GO.MOD.d/GO.MOD", File, "module other"),
        ("GO.MOD.d/y.go", File, "package y"),
        ("symmod/go.mod", Symlink, "../go.mod"),
        ("symmod/z.go", File, "package z"),
        (".hg_archival.txt", File, "hg"),
        ("x/.hg_archival.txt", File, "kept"),
        (
            ".git/config",
            File,
            "kept: only a directory walk skips VCS directories",
        ),
        ("go.mod", File, "module example.com/m\n"),
    ])
    .unwrap();
    assert_eq!(
        got,
        [
            "LICENSE",
            "a.go",
            "bin/run.sh",
            "symmod/z.go",
            "x/.hg_archival.txt",
            ".git/config",
            "go.mod"
        ]
    );
}

#[test]
fn vendor_rules_follow_the_go_version() {
    let entries = |go_mod: &'static str| {
        [
            ("go.mod", File, go_mod),
            ("vendor/modules.txt", File, "# m"),
            ("vendor/example.com/dep/dep.go", File, "package dep"),
            ("vendor/top.go", File, "package vendor"),
            ("pkg/vendor/vendor.go", File, "package vendor"),
            ("pkg/vendor/foo/foo.go", File, "package foo"),
            ("pkg/vendored.go", File, "package pkg"),
            ("ab/vendor/x", File, "x"),
        ]
    };
    let old = zip_of(&entries("module example.com/m\ngo 1.23\n")).unwrap();
    assert_eq!(
        old,
        [
            "go.mod",
            "vendor/modules.txt",
            "vendor/top.go",
            "pkg/vendored.go"
        ],
        "before 1.24: modules.txt kept, pkg/vendor/vendor.go and ab/vendor/x dropped by the \
         old bug (it looks for a slash 8 bytes into the path)"
    );
    let new = zip_of(&entries("module example.com/m\ngo 1.24\n")).unwrap();
    assert_eq!(
        new,
        [
            "go.mod",
            "vendor/top.go",
            "pkg/vendor/vendor.go",
            "pkg/vendored.go",
            "ab/vendor/x"
        ]
    );
    // A go.mod that does not parse has no go version: the old rules.
    let broken = zip_of(&entries("module example.com/m\ngo 1.24\nrequire x\n")).unwrap();
    assert_eq!(broken, old);
}

#[test]
fn invalid_files_fail_the_zip_and_are_all_named() {
    let err = zip_of(&[
        ("a.go", File, ""),
        ("A.go", File, ""),
        ("a\\b", File, ""),
        ("GO.MOD", File, ""),
        ("con.go", File, ""),
        ("ok.go", File, ""),
        ("./x", File, ""),
        ("/abs", File, ""),
        ("vendor/a\\b/c", File, "omitted before its name is checked"),
        ("link\u{1}", Symlink, "a symlink's name is checked too"),
    ])
    .unwrap_err();
    let CreateError::Invalid(list) = &err else {
        panic!("{err}");
    };
    let paths: Vec<&str> = list.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "\"A.go\"",
            "\"a\\\\b\"",
            "\"GO.MOD\"",
            "\"con.go\"",
            "\"./x\"",
            "\"/abs\"",
            "\"link\\u{1}\""
        ]
    );
    assert_eq!(list[0].rule, FileRule::CaseCollision("\"a.go\"".into()));
    assert_eq!(list[2].rule, FileRule::GoModCase);
    let msg = err.to_string();
    assert!(
        msg.starts_with("7 files cannot be in a module zip: \"A.go\": equal to"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[test]
fn names_that_are_not_utf8_are_omitted_or_invalid() {
    let mut files = vec![
        SourceFile {
            path: b"vendor/x/\xff.go".to_vec(),
            kind: File,
            size: 1,
        },
        SourceFile {
            path: b"\xff.go".to_vec(),
            kind: File,
            size: 1,
        },
    ];
    let checked = check_files(&m(), &v(), files.clone(), None).unwrap();
    assert_eq!(checked.omitted.len(), 1);
    assert_eq!(checked.invalid.len(), 1);
    assert_eq!(
        checked.invalid[0].rule,
        FileRule::FilePath("invalid UTF-8".into())
    );
    files.remove(1);
    assert!(check_files(&m(), &v(), files, None).unwrap().err().is_ok());
}

#[test]
fn size_limits_use_the_listed_sizes() {
    let big = |p: &str, size| file(p, File, size);
    let checked = check_files(
        &m(),
        &v(),
        vec![big("a", 300 << 20), big("b", 200 << 20), big("c", 1)],
        None,
    )
    .unwrap();
    assert!(matches!(checked.err(), Err(CreateError::TooLarge)));
    let checked = check_files(
        &m(),
        &v(),
        vec![big("a", 300 << 20), big("b", 200 << 20)],
        None,
    )
    .unwrap();
    assert!(checked.err().is_ok(), "exactly MaxZipFile is allowed");
    let checked = check_files(
        &m(),
        &v(),
        vec![
            big("go.mod", MAX_GO_MOD + 1),
            big("LICENSE", MAX_LICENSE + 1),
            big("sub/LICENSE", MAX_LICENSE + 1),
        ],
        None,
    )
    .unwrap();
    let rules: Vec<_> = checked.invalid.iter().map(|e| e.rule.clone()).collect();
    assert_eq!(
        rules,
        [
            FileRule::GoModTooLarge(MAX_GO_MOD + 1),
            FileRule::LicenseTooLarge(MAX_LICENSE + 1)
        ]
    );
    assert_eq!(checked.valid.len(), 1);
}

#[test]
fn the_root_go_mod_must_be_given() {
    let files = vec![file("go.mod", File, 10), file("a.go", File, 1)];
    assert!(matches!(
        check_files(&m(), &v(), files.clone(), None),
        Err(CreateError::GoModNotGiven(10))
    ));
    assert!(check_files(&m(), &v(), files, Some(b"module m\n")).is_ok());
    // A symlink go.mod is no go.mod.
    assert!(check_files(&m(), &v(), vec![file("go.mod", Symlink, 10)], None).is_ok());
}

#[test]
fn duplicates_are_invalid_once() {
    let checked = check_files(
        &m(),
        &v(),
        vec![
            file("a", File, 1),
            file("a", File, 1),
            file("a", File, 1),
            file("a/b", File, 1),
        ],
        None,
    )
    .unwrap();
    let rules: Vec<_> = checked.invalid.iter().map(|e| e.rule.clone()).collect();
    assert_eq!(
        rules,
        [
            FileRule::Duplicate,
            FileRule::FileAndDirectory("\"a\"".into())
        ]
    );
}

#[test]
fn root_license_rule() {
    let own = [file("LICENSE", Symlink, 3), file("a.go", File, 1)];
    let none = [file("a.go", File, 1)];
    let sub = [file("LICENSE", Submodule, 0)];
    let root = Some((File, 11));
    assert_eq!(root_license("", &none, root), None, "a module at the root");
    assert_eq!(
        root_license("sub", &own, root),
        None,
        "its own LICENSE, even a symlink"
    );
    assert_eq!(
        root_license("sub", &none, root),
        Some(file("LICENSE", File, 11))
    );
    assert_eq!(
        root_license("sub", &sub, Some((Symlink, 5))),
        Some(file("LICENSE", File, 5)),
        "a submodule named LICENSE is a directory; a root symlink's target text is the file"
    );
    assert_eq!(root_license("sub", &none, Some((Submodule, 0))), None);
    assert_eq!(root_license("sub", &none, None), None);
}

#[test]
fn the_writer_takes_files_in_order_and_at_most_their_size() {
    let checked = check_files(
        &m(),
        &v(),
        vec![file("a", File, 3), file("b", File, 3)],
        None,
    )
    .unwrap();
    let mut w = ZipWriter::new(Vec::new(), &m(), &v(), checked.clone()).unwrap();
    assert_eq!(w.paths(), ["a", "b"]);
    assert!(matches!(
        w.add("b", b"x"),
        Err(CreateError::OutOfOrder { .. })
    ));
    assert!(matches!(
        w.add("a", b"long"),
        Err(CreateError::LargerThanDeclared { size: 3, .. })
    ));
    w.add("a", b"ab").unwrap(); // shorter is written as it is, as Go does
    assert!(matches!(
        w.finish(),
        Err(CreateError::Missing { added: 1, want: 2 })
    ));

    let mut out = Vec::new();
    let mut w = ZipWriter::new(&mut out, &m(), &v(), checked).unwrap();
    w.add("a", b"abc").unwrap();
    w.add("b", b"").unwrap();
    assert!(matches!(
        w.add("c", b""),
        Err(CreateError::OutOfOrder { .. })
    ));
    let created = w.finish().unwrap();
    let checked = check_zip(&out[..], out.len() as u64, &m(), &v(), &Limits::default()).unwrap();
    assert_eq!(checked.h1, created.h1);
}

#[test]
fn zips_of_65535_files_or_more_get_a_zip64_end() {
    let entries: Vec<(String, SourceKind, &str)> =
        (0..70_000).map(|i| (format!("f/{i}"), File, "")).collect();
    let borrowed: Vec<(&str, SourceKind, &str)> = entries
        .iter()
        .map(|(p, k, c)| (p.as_str(), *k, *c))
        .collect();
    let got = zip_of(&borrowed).unwrap();
    assert_eq!(got.len(), 70_000);
}

#[test]
fn modfleet_bounds() {
    let long = "a/".repeat(40_000) + "x";
    assert!(matches!(
        check_files(&m(), &v(), vec![file(&long, File, 1)], None),
        Err(CreateError::PathTooLong { .. })
    ));
    let many = vec![file("a", File, 0); MAX_FILES + 1];
    assert!(matches!(
        check_files(&m(), &v(), many, None),
        Err(CreateError::TooManyFiles)
    ));
}

#[test]
fn nested_modules_at_any_depth() {
    let deep = "a/".repeat(20_000);
    let files = vec![
        file(&format!("{deep}go.mod"), File, 1),
        file(&format!("{deep}x/y.go"), File, 1),
        file(&format!("{deep}y.go"), File, 1),
        file("a/a/z.go", File, 1),
        file("b/go.mod", File, 1),
        file("b/../go.mod", Symlink, 1),
        file("bb/c.go", File, 1),
        file("b/c/d.go", File, 1),
    ];
    let checked = check_files(&m(), &v(), files, None).unwrap();
    let valid: Vec<String> = checked
        .valid
        .iter()
        .map(|f| String::from_utf8(f.path.clone()).unwrap())
        .collect();
    assert_eq!(valid, ["a/a/z.go", "bb/c.go"]);
    let omitted = checked
        .omitted
        .iter()
        .filter(|(_, why)| *why == Omission::OtherModule)
        .count();
    assert_eq!(omitted, 5);
}
