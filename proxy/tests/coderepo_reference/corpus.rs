//! The repositories the reference test serves, and what is asked of each module: every case
//! the go command's module-to-repository mapping distinguishes.

use modfleet_testkit::gitserver::{Change, RepoRoot, TestRepo};

/// Where the go command finds them: `HOST/NAME.git` (the `.git` qualifier: no go-get
/// discovery, the repository is `https://HOST/NAME`).
pub const HOST: &str = "git.modfleet.test/private";

const T: i64 = 1_700_000_000;

/// The commit time of the `n`th commit of a repository (distinct minutes, fixed dates).
fn t(n: i64) -> i64 {
    T + 60 * n
}

/// One module of the corpus and the queries to compare.
pub struct Case {
    /// The repository's name (`NAME.git` on the server).
    pub repo: &'static str,
    /// The module path.
    pub module: String,
    pub queries: Vec<String>,
    /// Files whose content in the zip is pinned (beyond agreeing with the go command's): that
    /// the corpus exercises what it claims, e.g. a conversion `git archive` applies.
    pub pinned: Vec<(&'static str, Pinned)>,
}

/// What a pinned file of a zip holds.
pub enum Pinned {
    Exactly(Vec<u8>),
    /// Starts with this (an `$Id$` expansion names a blob hash).
    StartsWith(&'static str),
}

fn module(repo: &str, suffix: &str) -> String {
    format!("{HOST}/{repo}.git{suffix}")
}

fn go_mod(path: &str) -> Change {
    Change::text(&format!("module {path}\n\ngo 1.21\n"))
}

fn case(repo: &'static str, suffix: &str, queries: &[&str]) -> Case {
    Case {
        repo,
        module: module(repo, suffix),
        queries: queries.iter().map(|q| q.to_string()).collect(),
        pinned: Vec::new(),
    }
}

fn short(hash: &str) -> &str {
    &hash[..12]
}

/// `20231114221320`-style timestamp of `t(n)`.
fn stamp(n: i64) -> String {
    let secs = t(n);
    let days = secs.div_euclid(86_400);
    let s = secs.rem_euclid(86_400);
    // 2023-11-14 is day 19675 since 1970-01-01; the corpus stays within that day.
    assert_eq!(days, 19_675, "the corpus's times stay on 2023-11-14");
    format!("20231114{:02}{:02}{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Builds every repository under `root` and returns the cases.
pub fn build(root: &RepoRoot) -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(root_repo(root.create("root")));
    cases.extend(prereleases(root.create("pre")));
    cases.extend(untagged(root.create("notags")));
    cases.extend(monorepo(root.create("mono")));
    cases.extend(major_subdirectory(root.create("majorsub")));
    cases.extend(major_branch(root.create("majorbranch")));
    cases.extend(legacy(root.create("legacy")));
    cases.extend(foreign(root.create("foreign")));
    cases.extend(retracted(root.create("retract")));
    cases.extend(zip_rules(root.create("zips")));
    cases.extend(attributes(root.create("attrs")));
    cases.extend(sha256(root.create_sha256("sha256")));
    cases
}

/// A root module: lightweight and annotated tags, a pre-release, tags that are not
/// canonical, a feature branch; queries by tag, branch, hash of every length, pseudo-versions
/// good and bad.
fn root_repo(r: TestRepo) -> Vec<Case> {
    let m = module("root", "");
    let c1 = r.commit(
        "one",
        t(1),
        &[
            ("go.mod", go_mod(&m)),
            ("root.go", Change::text("package root\n")),
        ],
    );
    r.tag("v1.0.0", &c1);
    let c2 = r.commit(
        "two",
        t(2),
        &[("root.go", Change::text("package root // 2\n"))],
    );
    r.annotated_tag("v1.1.0", &c2, "release 1.1.0", t(2));
    let c3 = r.commit("three", t(3), &[("x.go", Change::text("package root\n"))]);
    r.annotated_tag("v1.2.0-rc.1", &c3, "rc", t(3));
    let c4 = r.commit("four", t(4), &[("y.go", Change::text("package root\n"))]);
    r.tag("v1.3", &c4);
    r.tag("v1.2.0+build", &c4);
    r.tag("not-a-version", &c4);
    r.branch("feature", &c2);
    r.switch("feature");
    let c5 = r.commit(
        "on feature",
        t(5),
        &[("f.go", Change::text("package root\n"))],
    );
    r.switch("main");
    let good = format!("v1.1.1-0.{}-{}", stamp(5), short(&c5));
    let wrong_time = format!("v1.1.1-0.{}-{}", stamp(4), short(&c5));
    let wrong_base = format!("v1.2.0-rc.1.0.{}-{}", stamp(5), short(&c5));
    let v0 = format!("v0.0.0-{}-{}", stamp(5), short(&c5));
    vec![Case {
        repo: "root",
        module: m,
        queries: [
            "v1.0.0",
            "v1.1.0",
            "v1.2.0-rc.1",
            "v1.2.0+build",
            "main",
            "feature",
            "HEAD",
            &c1,
            short(&c5),
            &c4[..7],
            &c3,
            "latest",
            &good,
            &wrong_time,
            &wrong_base,
            &v0,
            "v9.9.9",
            "v1.0.0+incompatible",
            "no-such-branch",
        ]
        .iter()
        .map(|q| q.to_string())
        .collect(),
        pinned: Vec::new(),
    }]
}

/// Only pre-releases: `latest` is the highest, a branch counts from it.
fn prereleases(r: TestRepo) -> Vec<Case> {
    let m = module("pre", "");
    let c1 = r.commit("one", t(1), &[("go.mod", go_mod(&m))]);
    r.tag("v0.1.0-alpha", &c1);
    let c2 = r.commit("two", t(2), &[("a.go", Change::text("package pre\n"))]);
    r.annotated_tag("v0.1.0-beta.2", &c2, "beta", t(2));
    r.commit("three", t(3), &[("b.go", Change::text("package pre\n"))]);
    vec![case(
        "pre",
        "",
        &["main", "latest", "v0.1.0-alpha", "v0.1.0-beta.2"],
    )]
}

/// No tags at all, and a default branch other than main.
fn untagged(r: TestRepo) -> Vec<Case> {
    let m = module("notags", "");
    let c1 = r.commit("one", t(1), &[("go.mod", go_mod(&m))]);
    let c2 = r.commit("two", t(2), &[("a.go", Change::text("package notags\n"))]);
    r.branch("trunk", &c2);
    r.switch("trunk");
    r.commit("three", t(3), &[("b.go", Change::text("package notags\n"))]);
    r.switch("main");
    r.set_head("trunk");
    vec![Case {
        repo: "notags",
        module: m,
        queries: ["main", "trunk", "HEAD", "latest", &c1, short(&c2)]
            .iter()
            .map(|q| q.to_string())
            .collect(),
        pinned: Vec::new(),
    }]
}

/// A module at the root and one in a subdirectory (prefixed tags), with a root LICENSE, a
/// nested module, vendored packages, a symlink, an executable and a submodule in it.
fn monorepo(r: TestRepo) -> Vec<Case> {
    let root = module("mono", "");
    let sub = module("mono", "/sub");
    let nested = module("mono", "/sub/nested");
    let c1 = r.commit(
        "one",
        t(1),
        &[
            ("go.mod", go_mod(&root)),
            ("LICENSE", Change::text("The root licence.\n")),
            ("main.go", Change::text("package main\n")),
            ("sub/go.mod", go_mod(&sub)),
            ("sub/s.go", Change::text("package sub\n")),
            ("sub/link.go", Change::Symlink("s.go".into())),
            ("sub/run.sh", Change::Executable(b"#!/bin/sh\n".to_vec())),
            ("sub/nested/go.mod", go_mod(&nested)),
            ("sub/nested/n.go", Change::text("package nested\n")),
            (
                "sub/vendor/modules.txt",
                Change::text("# example.com/dep v1.0.0\n"),
            ),
            (
                "sub/vendor/example.com/dep/dep.go",
                Change::text("package dep\n"),
            ),
            ("sub/testdata/data.txt", Change::text("data\n")),
            (
                "sub/deps/tool",
                Change::Gitlink("0123456789abcdef0123456789abcdef01234567".into()),
            ),
        ],
    );
    r.tag("v1.0.0", &c1);
    r.tag("sub/v0.1.0", &c1);
    let c2 = r.commit(
        "two",
        t(2),
        &[("sub/s.go", Change::text("package sub // 2\n"))],
    );
    r.annotated_tag("sub/v0.2.0", &c2, "sub 0.2.0", t(2));
    r.commit(
        "three",
        t(3),
        &[("main.go", Change::text("package main // 3\n"))],
    );
    vec![
        case("mono", "", &["v1.0.0", "main", "latest", "v0.1.0"]),
        Case {
            repo: "mono",
            module: sub,
            queries: ["v0.1.0", "v0.2.0", "main", "latest", short(&c1), "v1.0.0"]
                .iter()
                .map(|q| q.to_string())
                .collect(),
            pinned: Vec::new(),
        },
        case("mono", "/sub/nested", &["main", "latest"]),
    ]
}

/// v1 at the root, v2 in the `v2/` subdirectory.
fn major_subdirectory(r: TestRepo) -> Vec<Case> {
    let m = module("majorsub", "");
    let m2 = module("majorsub", "/v2");
    let c1 = r.commit(
        "one",
        t(1),
        &[
            ("go.mod", go_mod(&m)),
            ("a.go", Change::text("package a\n")),
        ],
    );
    r.tag("v1.0.0", &c1);
    let c2 = r.commit(
        "two",
        t(2),
        &[
            ("v2/go.mod", go_mod(&m2)),
            ("v2/a.go", Change::text("package a\n")),
        ],
    );
    r.tag("v2.0.0", &c2);
    let c3 = r.commit("three", t(3), &[("v2/b.go", Change::text("package a\n"))]);
    r.annotated_tag("v2.1.0", &c3, "v2.1.0", t(3));
    r.commit("four", t(4), &[("c.go", Change::text("package a\n"))]);
    vec![
        case(
            "majorsub",
            "",
            &["v1.0.0", "v2.0.0", "v2.0.0+incompatible", "main", "latest"],
        ),
        case(
            "majorsub",
            "/v2",
            &["v2.0.0", "v2.1.0", "main", "latest", "v1.0.0"],
        ),
    ]
}

/// v1 on the `release-1` branch, v2 on main with go.mod at the root naming `/v2`.
fn major_branch(r: TestRepo) -> Vec<Case> {
    let m = module("majorbranch", "");
    let m2 = module("majorbranch", "/v2");
    let c1 = r.commit(
        "one",
        t(1),
        &[
            ("go.mod", go_mod(&m)),
            ("a.go", Change::text("package a\n")),
        ],
    );
    r.tag("v1.0.0", &c1);
    let c2 = r.commit("two", t(2), &[("b.go", Change::text("package a\n"))]);
    r.tag("v1.1.0", &c2);
    r.branch("release-1", &c2);
    let c3 = r.commit("three", t(3), &[("go.mod", go_mod(&m2))]);
    r.tag("v2.0.0", &c3);
    let c4 = r.commit("four", t(4), &[("c.go", Change::text("package a\n"))]);
    r.annotated_tag("v2.0.1", &c4, "v2.0.1", t(4));
    r.commit("five", t(5), &[("d.go", Change::text("package a\n"))]);
    r.switch("release-1");
    r.commit(
        "on release-1",
        t(6),
        &[("e.go", Change::text("package a\n"))],
    );
    r.switch("main");
    vec![
        case(
            "majorbranch",
            "",
            &["v1.1.0", "release-1", "latest", "v2.0.0", "main"],
        ),
        case(
            "majorbranch",
            "/v2",
            &["v2.0.0", "v2.0.1", "main", "latest", "v1.0.0", "release-1"],
        ),
    ]
}

/// No go.mod anywhere, v2+ tags: `+incompatible`.
fn legacy(r: TestRepo) -> Vec<Case> {
    let c1 = r.commit("one", t(1), &[("a.go", Change::text("package legacy\n"))]);
    r.tag("v1.0.0", &c1);
    let c2 = r.commit("two", t(2), &[("b.go", Change::text("package legacy\n"))]);
    r.tag("v2.0.0", &c2);
    let c3 = r.commit("three", t(3), &[("c.go", Change::text("package legacy\n"))]);
    r.tag("v2.1.0", &c3);
    let c4 = r.commit("four", t(4), &[("d.go", Change::text("package legacy\n"))]);
    r.annotated_tag("v3.0.0", &c4, "v3", t(4));
    r.commit("five", t(5), &[("e.go", Change::text("package legacy\n"))]);
    vec![
        case(
            "legacy",
            "",
            &[
                "v1.0.0",
                "v2.0.0",
                "v2.0.0+incompatible",
                "v3.0.0+incompatible",
                "main",
                "latest",
            ],
        ),
        case("legacy", "/v2", &["v2.0.0", "main", "latest"]),
    ]
}

/// Tags whose go.mod names another module: another path of the same major (the go command
/// does not look), and a /v2 path at a v1 tag (refused).
fn foreign(r: TestRepo) -> Vec<Case> {
    let m = module("foreign", "");
    let c1 = r.commit(
        "one",
        t(1),
        &[
            ("go.mod", go_mod(&m)),
            ("a.go", Change::text("package a\n")),
        ],
    );
    r.tag("v1.0.0", &c1);
    let c2 = r.commit("two", t(2), &[("go.mod", go_mod("example.com/other"))]);
    r.tag("v1.1.0", &c2);
    let c3 = r.commit(
        "three",
        t(3),
        &[("go.mod", go_mod(&module("foreign", "/v2")))],
    );
    r.tag("v1.2.0", &c3);
    r.commit("four", t(4), &[("go.mod", go_mod(&m))]);
    vec![case(
        "foreign",
        "",
        &["v1.0.0", "v1.1.0", "v1.2.0", "latest", "main"],
    )]
}

/// The newest release retracts itself and the one before: `latest` skips them, and
/// pseudo-versions do not count from them.
fn retracted(r: TestRepo) -> Vec<Case> {
    let m = module("retract", "");
    let c1 = r.commit("one", t(1), &[("go.mod", go_mod(&m))]);
    r.tag("v1.0.0", &c1);
    let c2 = r.commit("two", t(2), &[("a.go", Change::text("package a\n"))]);
    r.tag("v1.1.0", &c2);
    let retracting = format!("module {m}\n\ngo 1.21\n\n// Broken.\nretract [v1.1.0, v1.2.0]\n");
    let c3 = r.commit("three", t(3), &[("go.mod", Change::text(&retracting))]);
    r.tag("v1.2.0", &c3);
    r.commit("four", t(4), &[("b.go", Change::text("package a\n"))]);
    vec![case("retract", "", &["latest", "main", "v1.1.0", "v1.2.0"])]
}

/// What goes into a zip: a module with its own LICENSE (the root's is not added), Go 1.24's
/// vendor rules, a tree the zip rules refuse (names equal under case folding), Git
/// attributes that `git archive` applies (`attrs`) and ones that change nothing under the go
/// command's settings (`plain`, CRLF in the blobs included).
fn zip_rules(r: TestRepo) -> Vec<Case> {
    let own = module("zips", "/own");
    let new = module("zips", "/new");
    let clash = module("zips", "/clash");
    let attrs = module("zips", "/attrs");
    let plain = module("zips", "/plain");
    let c1 = r.commit(
        "one",
        t(1),
        &[
            ("LICENSE", Change::text("root licence\n")),
            ("own/go.mod", go_mod(&own)),
            ("own/LICENSE", Change::text("own licence\n")),
            ("own/o.go", Change::text("package own\n")),
            (
                "new/go.mod",
                Change::text(&format!("module {new}\n\ngo 1.24\n")),
            ),
            ("new/n.go", Change::text("package new\n")),
            (
                "new/vendor/modules.txt",
                Change::text("# example.com/dep v1.0.0\n"),
            ),
            (
                "new/vendor/example.com/dep/dep.go",
                Change::text("package dep\n"),
            ),
            ("new/x/vendor/y/y.go", Change::text("package y\n")),
            ("clash/go.mod", go_mod(&clash)),
            ("clash/a.go", Change::text("package clash\n")),
            ("clash/A.go", Change::text("package clash\n")),
            ("attrs/go.mod", go_mod(&attrs)),
            (
                "attrs/.gitattributes",
                Change::text("*.txt eol=crlf\n*.go ident\n"),
            ),
            ("attrs/a.txt", Change::text("one\ntwo\n")),
            ("attrs/a.go", Change::text("package attrs // $Id$\n")),
            ("plain/go.mod", go_mod(&plain)),
            (
                "plain/.gitattributes",
                Change::text("* text=auto eol=lf\n*.bat text eol=crlf\n*.png binary\n"),
            ),
            ("plain/p.go", Change::text("package plain\r\n")),
            ("plain/p.txt", Change::text("crlf\r\nkept\n")),
        ],
    );
    for tag in [
        "own/v1.0.0",
        "new/v1.0.0",
        "clash/v1.0.0",
        "attrs/v1.0.0",
        "plain/v1.0.0",
    ] {
        r.tag(tag, &c1);
    }
    vec![
        case("zips", "/own", &["v1.0.0"]),
        case("zips", "/new", &["v1.0.0", "main"]),
        case("zips", "/clash", &["v1.0.0"]),
        case("zips", "/attrs", &["v1.0.0"]),
        case("zips", "/plain", &["v1.0.0"]),
    ]
}

/// `.gitattributes` as `git archive` applies them under the go command's settings (its zip is
/// that archive): `export-ignore` and `export-subst` off (a file and two directories kept,
/// `$Format:...$` kept), `eol=crlf` on text files (directly and through a macro, from the
/// root's file and the module's own, `go.mod` included: the zip's go.mod then differs from
/// the `.mod`, which is the blob), `ident`, `-text`/`binary` winning over `eol=crlf`, and
/// `working-tree-encoding`. The blobs are committed first and the attributes after, so the
/// blobs are exactly the bytes written here (CRLF included); the root LICENSE that a module
/// in a subdirectory gets is read unconverted, as the go command reads it.
fn attributes(r: TestRepo) -> Vec<Case> {
    let names = ["ignore", "subst", "crlf", "ident", "binary", "encoding"];
    let modules: Vec<String> = names
        .iter()
        .map(|n| module("attrs", &format!("/{n}")))
        .collect();
    let go_mod_of = |i: usize| go_mod(&modules[i]);
    let binary: Vec<u8> = vec![
        0, 1, b'\n', 2, b'\r', b'\n', 0xff, b'\n', b'$', b'I', b'd', b'$',
    ];
    let c1 = r.commit(
        "files",
        t(1),
        &[
            ("LICENSE", Change::text("root licence\n")),
            ("ignore/go.mod", go_mod_of(0)),
            ("ignore/a.go", Change::text("package ignore\n")),
            (
                "ignore/ignored.go",
                Change::text("package ignore // ignored\n"),
            ),
            ("ignore/docs/readme.md", Change::text("docs\n")),
            ("ignore/tools/t.go", Change::text("package tools\n")),
            ("subst/go.mod", go_mod_of(1)),
            (
                "subst/version.go",
                Change::text("package subst\n\nconst Commit = \"$Format:%H$\"\n"),
            ),
            (
                "crlf/go.mod",
                Change::text(&format!("module {}\n\ngo 1.24\n", modules[2])),
            ),
            ("crlf/notes.txt", Change::text("one\ntwo\n")),
            ("crlf/mixed.txt", Change::text("crlf\r\nlf\n")),
            ("crlf/run.bat", Change::text("echo hi\n")),
            ("crlf/auto.md", Change::text("a\nb\n")),
            (
                "crlf/vendor/modules.txt",
                Change::text("# example.com/dep v1.0.0\n"),
            ),
            ("ident/go.mod", go_mod_of(3)),
            ("ident/a.c", Change::text("/* $Id$ */\n")),
            ("ident/b.go", Change::text("package ident // $Id$\n")),
            ("binary/go.mod", go_mod_of(4)),
            ("binary/data.bin", Change::File(binary.clone())),
            ("binary/blob.dat", Change::File(binary.clone())),
            ("encoding/go.mod", go_mod_of(5)),
            ("encoding/hello.utf16", Change::text("héllo\n")),
        ],
    );
    let c2 = r.commit(
        "attributes",
        t(2),
        &[
            (
                ".gitattributes",
                Change::text(
                    "*.txt text eol=crlf\n[attr]windows text eol=crlf\n*.bat windows\n\
                     *.md text\n*.c ident\n*.bin -text eol=crlf\n*.dat binary eol=crlf\n\
                     *.utf16 working-tree-encoding=UTF-16LE-BOM\nLICENSE text eol=crlf\n",
                ),
            ),
            (
                "ignore/.gitattributes",
                Change::text(
                    "ignored.go export-ignore\ndocs export-ignore\ntools/** export-ignore\n",
                ),
            ),
            ("subst/.gitattributes", Change::text("*.go export-subst\n")),
            (
                "crlf/.gitattributes",
                Change::text("go.mod text eol=crlf\n"),
            ),
            ("ident/.gitattributes", Change::text("*.go ident\n")),
        ],
    );
    assert_ne!(c1, c2);
    for n in names {
        r.tag(&format!("{n}/v1.0.0"), &c2);
    }
    let exactly = |s: &str| Pinned::Exactly(s.as_bytes().to_vec());
    let mut cases: Vec<Case> = names
        .iter()
        .map(|n| case("attrs", &format!("/{n}"), &["v1.0.0"]))
        .collect();
    cases[0].pinned = vec![
        ("ignored.go", exactly("package ignore // ignored\n")),
        ("docs/readme.md", exactly("docs\n")),
        ("tools/t.go", exactly("package tools\n")),
        ("LICENSE", exactly("root licence\n")),
    ];
    cases[1].pinned = vec![(
        "version.go",
        exactly("package subst\n\nconst Commit = \"$Format:%H$\"\n"),
    )];
    cases[2].queries.push("main".into());
    cases[2].pinned = vec![
        (
            "go.mod",
            Pinned::Exactly(format!("module {}\r\n\r\ngo 1.24\r\n", modules[2]).into_bytes()),
        ),
        ("notes.txt", exactly("one\r\ntwo\r\n")),
        ("mixed.txt", exactly("crlf\r\nlf\r\n")),
        ("run.bat", exactly("echo hi\r\n")),
        ("auto.md", exactly("a\nb\n")),
    ];
    cases[3].pinned = vec![
        ("a.c", Pinned::StartsWith("/* $Id: ")),
        ("b.go", Pinned::StartsWith("package ident // $Id: ")),
    ];
    cases[4].pinned = vec![
        ("data.bin", Pinned::Exactly(binary.clone())),
        ("blob.dat", Pinned::Exactly(binary)),
    ];
    let mut utf16 = vec![0xff, 0xfe];
    utf16.extend("héllo\n".encode_utf16().flat_map(|u| u.to_le_bytes()));
    cases[5].pinned = vec![("hello.utf16", Pinned::Exactly(utf16))];
    cases
}

/// A repository with SHA-256 object names: 64-hex hashes, 12-hex pseudo-version suffixes.
fn sha256(r: TestRepo) -> Vec<Case> {
    let m = module("sha256", "");
    let c1 = r.commit("one", t(1), &[("go.mod", go_mod(&m))]);
    r.tag("v1.0.0", &c1);
    let c2 = r.commit("two", t(2), &[("a.go", Change::text("package a\n"))]);
    assert_eq!(c2.len(), 64);
    vec![Case {
        repo: "sha256",
        module: m,
        queries: ["v1.0.0", "main", "latest", &c2, short(&c2)]
            .iter()
            .map(|q| q.to_string())
            .collect(),
        pinned: Vec::new(),
    }]
}
