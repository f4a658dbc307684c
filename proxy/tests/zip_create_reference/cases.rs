//! The cases of tests/zip_create_reference.rs: repositories with every rule's edge, and
//! go.mod files for the go version x/mod/zip's vendor rules depend on.

use std::path::Path;

use super::repo::Repo;

pub struct Case {
    pub name: String,
    pub repo: String,
    pub rev: String,
    pub subdir: &'static str,
}

fn go_mod(version: &str) -> String {
    format!("module example.com/m\n\ngo {version}\n")
}

/// The repositories and the cases over them.
pub fn build(root: &Path, home: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: &str, repo: &Repo, rev: &str, subdir| {
        cases.push(Case {
            name: name.to_string(),
            repo: repo.dir.to_string_lossy().into_owned(),
            rev: rev.to_string(),
            subdir,
        });
    };

    // Everything the rules omit or keep, under each vendor rule.
    let kitchen = |r: &mut Repo, go_mod: &str| {
        r.file("go.mod", go_mod)
            .file("a.go", "package a\n")
            .file("LICENSE", "license\n")
            .exec("bin/run.sh", "#!/bin/sh\n")
            .symlink("link", "a.go")
            .symlink("dirlink", "bin")
            .submodule("sub")
            .file("nested/go.mod", "module example.com/m/nested\n")
            .file("nested/x.go", "package x\n")
            .file("nested/deeper/y.go", "package y\n")
            .file("NESTED2/GO.MOD", "module other\n")
            .file("NESTED2/z.go", "package z\n")
            .symlink("symmod/go.mod", "../go.mod")
            .file("symmod/z.go", "package z\n")
            .file("vendor/modules.txt", "# example.com/dep v1.0.0\n")
            .file("vendor/example.com/dep/dep.go", "package dep\n")
            .file("vendor/top.go", "package vendor\n")
            .file("pkg/vendor/vendor.go", "package vendor\n")
            .file("pkg/vendor/foo/foo.go", "package foo\n")
            .file("pkg/vendored.go", "package pkg\n")
            .file("ab/vendor/x", "x\n")
            .file("a/vendor/modules.txt", "m\n")
            .file("vendor/go.mod", "module v\n")
            .file(".hg_archival.txt", "hg\n")
            .file("x/.hg_archival.txt", "kept\n")
            .file(".hg/store", "kept\n")
            .file(".svn/entries", "kept\n")
            .file(".bzr/x", "kept\n")
            .file(".github/workflows/ci.yml", "on: push\n")
            .file("-dash.go", "package a\n")
            .file("spaces in name.go", "package a\n")
            .file("é.go", "package a\n")
            .file("empty", "");
    };
    for (i, (name, text)) in [
        ("kitchen sink, go 1.23 vendor rules", go_mod("1.23")),
        ("kitchen sink, go 1.24 vendor rules", go_mod("1.24")),
        ("kitchen sink, go 1.24rc1", go_mod("1.24rc1")),
        ("kitchen sink, go 1.25.3", go_mod("1.25.3")),
        (
            "kitchen sink, go 1.24.0-custom (lax)",
            go_mod("1.24.0-custom"),
        ),
        ("kitchen sink, go 1.24.0rc1 (invalid)", go_mod("1.24.0rc1")),
        (
            "kitchen sink, no go directive",
            "module example.com/m\n".to_string(),
        ),
        (
            "kitchen sink, go 1.24 in a go.mod that does not parse",
            go_mod("1.24") + "require example.com/dep\n",
        ),
        (
            "kitchen sink, go 1.24 after a BOM",
            format!("\u{feff}{}", go_mod("1.24")),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = Repo::new(root, home, &format!("kitchen-{i}"));
        kitchen(&mut r, &text);
        let rev = r.commit();
        add(name, &r, &rev, "");
    }

    // Modules in subdirectories and the root LICENSE.
    let mut r = Repo::new(root, home, "subdirs");
    r.file("LICENSE", "root license\n")
        .file("go.mod", go_mod("1.22"))
        .file("mod/go.mod", "module example.com/m/mod\n")
        .file("mod/m.go", "package m\n")
        .file("mod/inner/LICENSE", "not at the module root\n")
        .file("own/go.mod", "module example.com/m/own\n")
        .file("own/LICENSE", "own license\n")
        .file("linked/go.mod", "module example.com/m/linked\n")
        .symlink("linked/LICENSE", "../LICENSE")
        .file("modsub/go.mod", "module example.com/m/modsub\n")
        .submodule("modsub/LICENSE")
        .file("deep/er/go.mod", "module example.com/m/deep/er\n")
        .file("deep/er/vendor/modules.txt", "v\n")
        .file("v2/go.mod", "module example.com/m/v2\n\ngo 1.24\n")
        .file("v2/vendor/modules.txt", "v\n")
        .file("v2/v.go", "package m\n");
    let rev = r.commit();
    for subdir in [
        "mod",
        "own",
        "linked",
        "modsub",
        "deep/er",
        "v2",
        "mod/inner",
    ] {
        add(&format!("module in {subdir}/"), &r, &rev, subdir);
    }
    let mut r = Repo::new(root, home, "root-license-kinds");
    r.symlink("LICENSE", "COPYING")
        .file("COPYING", "the text\n")
        .file("mod/m.go", "package m\n")
        .file("big/LICENSE.md", "x\n");
    let rev = r.commit();
    add("root LICENSE is a symlink", &r, &rev, "mod");
    let mut r = Repo::new(root, home, "root-license-dir");
    r.file("LICENSE/text", "in a directory\n")
        .file("mod/m.go", "package m\n");
    let rev = r.commit();
    add("root LICENSE is a directory", &r, &rev, "mod");
    let mut r = Repo::new(root, home, "root-license-big");
    r.file("LICENSE", vec![b'x'; (16 << 20) + 1])
        .file("mod/m.go", "package m\n");
    let rev = r.commit();
    add("root LICENSE over 16 MiB", &r, &rev, "mod");

    // Size limits of go.mod and LICENSE.
    let mut r = Repo::new(root, home, "big-go-mod");
    let mut big = go_mod("1.24").into_bytes();
    big.resize((16 << 20) + 1, b'\n');
    r.file("go.mod", big).file("a.go", "package a\n");
    let rev = r.commit();
    add("go.mod over 16 MiB", &r, &rev, "");
    let mut r = Repo::new(root, home, "big-license");
    r.file("LICENSE", vec![b'x'; (16 << 20) + 1])
        .file("sub/LICENSE", vec![b'x'; (16 << 20) + 1]);
    let rev = r.commit();
    add("LICENSE over 16 MiB", &r, &rev, "");
    let mut r = Repo::new(root, home, "at-limit");
    r.file("go.mod", vec![b'\n'; 16 << 20])
        .file("LICENSE", vec![b'x'; 16 << 20]);
    let rev = r.commit();
    add("go.mod and LICENSE of exactly 16 MiB", &r, &rev, "");

    // Names equal under case folding.
    for (i, names) in [
        &["README", "readme"][..],
        &["Sub/a.go", "sub/b.go"],
        &["s.go", "ſ.go"],
        &["k.go", "\u{212A}.go"],
        &["x/σ", "x/ς"],
        &["A", "a/b"],
        &["go.mod", "Go.Mod"],
    ]
    .iter()
    .enumerate()
    {
        let mut r = Repo::new(root, home, &format!("fold-{i}"));
        for n in *names {
            r.file(n, *n);
        }
        let rev = r.commit();
        add(&format!("case collision {names:?}"), &r, &rev, "");
    }
    let mut r = Repo::new(root, home, "fold-symlink");
    r.symlink("Link", "a").file("link", "file");
    let rev = r.commit();
    add("case collision with an omitted symlink", &r, &rev, "");
    let mut r = Repo::new(root, home, "fold-omitted");
    r.file("vendor/x/A.go", "a")
        .file("vendor/x/a.go", "a")
        .file("ok.go", "ok");
    let rev = r.commit();
    add("case collision inside a vendored package", &r, &rev, "");

    // File names module.CheckFilePath refuses.
    let mut r = Repo::new(root, home, "bad-names");
    for name in [
        &b"a\\b"[..],
        b"con.go",
        b"aux/x.go",
        b"a.",
        b"x\x01y",
        b"new\nline",
        b"\xff.go",
        b"GO.MOD",
        b"q?.go",
        b"star*.go",
        b"ok.go",
        b"\xe2\x80\x8b.go",
    ] {
        r.file(name, "x");
    }
    r.symlink("colon:link", "ok.go");
    let rev = r.commit();
    add("invalid file names", &r, &rev, "");
    let mut r = Repo::new(root, home, "bad-names-omitted");
    r.file(b"vendor/x/a\\b", "x")
        .file(b"vendor/x/\xff", "x")
        .file("nested/go.mod", "module n\n")
        .file(b"nested/con", "x")
        .file("ok.go", "x");
    let rev = r.commit();
    add("invalid names only where files are omitted", &r, &rev, "");

    // .gitattributes conversions `git archive` applies (export-ignore is off).
    let mut r = Repo::new(root, home, "attributes");
    r.file(
        ".gitattributes",
        "*.txt text eol=crlf\n*.c ident\nexport.go export-ignore\n",
    )
    .file("f.txt", "a\nb\n")
    .file("g.c", "$Id$\n")
    .file(
        "export.go",
        "kept: the go command turns export-ignore off\n",
    );
    let rev = r.commit();
    add(".gitattributes eol and ident", &r, &rev, "");

    // Trees git itself would not write: duplicates, a file and a directory of one name.
    let r = Repo::new(root, home, "crafted");
    let blob = r.blob(b"content\n");
    let inner = r.raw_tree(&[("100644", b"x", &blob)]);
    let dup = r.raw_tree(&[("100644", b"a", &blob), ("100644", b"a", &blob)]);
    let both = r.raw_tree(&[("100644", b"a", &blob), ("40000", b"a", &inner)]);
    let unsorted = r.raw_tree(&[("100644", b"b", &blob), ("100644", b"a", &blob)]);
    for (name, tree) in [
        ("crafted tree: an entry twice", dup),
        ("crafted tree: a file and a directory named alike", both),
        ("crafted tree: entries out of order", unsorted),
    ] {
        let rev = r.commit_tree(&tree);
        add(name, &r, &rev, "");
    }

    // Nothing in the zip; many files.
    let mut r = Repo::new(root, home, "empty");
    r.file("only/go.mod", "module n\n").submodule("gitlink");
    let rev = r.commit();
    add("no files at all", &r, &rev, "");
    let mut r = Repo::new(root, home, "many");
    for i in 0..2000 {
        r.file(
            format!("d{}/f{i}.go", i % 37),
            format!("package d // {i}\n"),
        );
    }
    let rev = r.commit();
    add("2000 files", &r, &rev, "");
    cases
}

/// go.mods as x/mod's modfile.ParseLax reads them: a corpus of edge cases, then generated
/// files mixing directives, blocks, strings, comments and odd characters.
pub fn go_mods() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = [
        "module m\ngo 1.24\n",
        "go 1.24",
        "module m\r\ngo 1.21.3\r\n",
        "go 1.22rc1 // comment\n",
        "go 1.24.0-custom\n",
        "go 1.24-x\n",
        "go 1.24.0rc1\n",
        "go 1.24rc\n",
        "go 1.0x\n",
        "go 0.5x\n",
        "go 1.05\n",
        "go 2.0\n",
        "go 1\n",
        "go v1.24\n",
        "go \"1.24\"\n",
        "go 1.24 1.25\n",
        "go\n",
        "go 1.24\ngo 1.24\n",
        "go (\n\t1.24\n)\n",
        "go 1.24 (\n)\n",
        "unknown (\n\tgo 1.24\n)\ngo 1.23\n",
        "unknown x (\n\tgo 1.24\n)\n",
        "replace x => y\nexclude a b c d\ntoolchain bad\ngodebug x\ngo 1.25\n",
        "go 1.24\nrequire example.com/a v1.0.0\n",
        "go 1.24\nrequire example.com/a v1.0\n",
        "go 1.24\nrequire example.com/a master\n",
        "go 1.24\nrequire example.com/a/v2 v1.0.0\n",
        "go 1.24\nrequire example.com/a v2.0.0\n",
        "go 1.24\nrequire example.com/a v2.0.0+incompatible\n",
        "go 1.24\nrequire gopkg.in/yaml.v2 v2.0.0\n",
        "go 1.24\nrequire gopkg.in/yaml v2.0.0\n",
        "go 1.24\nrequire gopkg.in/yaml.v1 v0.0.0-20191109021931-daa7c04131f5\n",
        "go 1.24\nrequire (\n\texample.com/a v1.0.0 // indirect\n)\n",
        "go 1.24\nrequire (\n\texample.com/a\n)\n",
        "go 1.24\nrequire \"example.com/a\" \"v1.0.0\"\n",
        "go 1.24\nrequire `example.com/a` v1.0.0\n",
        "go 1.24\nrequire a'b v1.0.0\n",
        "go 1.24\nmodule a\nmodule b\n",
        "go 1.24\nmodule\n",
        "go 1.24\nmodule (\n\ta\n\tb\n)\n",
        "go 1.24\nmodule \"a\\q\"\n",
        "go 1.24\nmodule \"a\\u00e9\\x41\\101\\\"\"\n",
        "go 1.24\nmodule \"\\ud800\"\n",
        "go 1.24\nmodule \"\\U00110000\"\n",
        "go 1.24\nmodule \"\\'\"\n",
        "go 1.24\nmodule \"\\400\"\n",
        "go 1.24\nretract [v1.0.0 v2\n",
        "go 1.24\nretract (\n\tbad\n)\n",
        "go 1.24\nrequire (\n",
        "go 1.24\nrequire (\n) x\n",
        "go 1.24\nrequire ( )\n",
        "go 1.24\nrequire ( ) x\n",
        "go 1.24\nrequire ( // c\n\ta v1.0.0\n) // c\n",
        "go 1.24 /* c */\n",
        "go 1.24\n/* c */\n",
        "go 1.24\na/*b\n",
        "\u{feff}go 1.24\n",
        "go\u{a0}1.24\n",
        "go\t1.24\u{b}\n",
        "go 1.24\n\"unterminated\n",
        "go 1.24\n`raw\nstring`\n",
        "go 1.24\nx\u{0}y\n",
        "go 1.24\nignore a b\n",
        "go 1.24\nignore \"a\"\n",
        "go 1.24\ntool (\n\ta b\n)\n",
        "go 1.24\n[ ] { } , ( )\n",
        "go 1.24\n)\n",
        "go 1.24 // a\n// b\n\n\t// c\n",
        "// only comments\n",
        "go 1.24//no space\n",
        "go 1.2é\n",
        "go 1.24\u{200b}\n",
        "",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    out.push(b"go 1.24\nmodule \xff\n".to_vec());
    out.push(b"go 1.24\nmodule \"\xff\"\n".to_vec());
    out.push(b"go 1.24\xff\n".to_vec());
    out.push(b"go 1.24\nrequire \xff/v2 v2.0.0\n".to_vec());
    // Generated: lines from fragments, deterministic.
    let fragments: &[&str] = &[
        "go 1.24",
        "go 1.23",
        "go 1.25rc1",
        "go 1.24.1",
        "go v1.24",
        "go 1.24-x",
        "module example.com/m",
        "module \"example.com/m\"",
        "module a b",
        "require example.com/a v1.0.0",
        "require example.com/a bad",
        "require x/v2 v2.0.0",
        "require (",
        ")",
        "replace (",
        "retract [v1.0.0, v1.1.0]",
        "retract [",
        "ignore ./x",
        "ignore",
        "tool x",
        "toolchain go1.24.0",
        "godebug a=b",
        "\texample.com/b v1.2.3",
        "\texample.com/b v1.2",
        "\t// comment",
        "// comment",
        "exclude a v1.0.0",
        "x ( )",
        "\"str\" \"in\\\"g\"",
        "`raw`",
        "a,b",
        "[x]",
        "{",
        "\u{feff}",
        "\u{a0}",
        "é",
        "\r",
        "",
        "/* no */",
        "go 1.24 // c",
    ];
    let mut x: u32 = 0x9e37_79b9;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as usize % n
    };
    for _ in 0..4000 {
        let lines = 1 + next(7);
        let mut text = String::new();
        for _ in 0..lines {
            text.push_str(fragments[next(fragments.len())]);
            text.push('\n');
        }
        out.push(text.into_bytes());
    }
    out
}
