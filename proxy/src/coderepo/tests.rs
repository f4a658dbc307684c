//! Unit tests of the module-to-repository mapping on an in-memory code host: each of the go
//! command's decisions, and the failure modes (stale mirror, outage, refused credentials).
//! `tests/coderepo_reference.rs` holds the same answers to the real go command.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::fake::{FakeHost, time};
use super::*;
use crate::protocol::pseudo::format_timestamp;

const M: &str = "git.example.com/r";
const URL: &str = "https://git.example.com/r";
const T1: i64 = 1_700_000_000;
const T2: i64 = 1_700_000_100;
const T3: i64 = 1_700_000_200;
const T4: i64 = 1_700_000_300;
const GO_MOD: &str = "module git.example.com/r\n";

fn code_repo(host: &Arc<FakeHost>, module: &str, root: &str, subdir: &str) -> CodeRepo {
    code_repo_every(host, module, root, subdir, Duration::from_secs(3600))
}

fn code_repo_every(
    host: &Arc<FakeHost>,
    module: &str,
    root: &str,
    subdir: &str,
    interval: Duration,
) -> CodeRepo {
    let repo = Arc::new(Repository::new(host.clone(), URL, interval));
    CodeRepo::new(repo, root, subdir, module).unwrap()
}

fn pseudo(base: &str, t: i64, hash: &str) -> String {
    crate::protocol::pseudo::pseudo_version("", base, time(t), &hash[..12])
}

fn ts(t: i64) -> String {
    format_timestamp(time(t))
}

#[test]
fn new_places_the_module_as_new_code_repo_does() {
    let host = Arc::new(FakeHost::default());
    for (module, root, subdir, dir, major, prefix, pseudo_major) in [
        (M, M, "", "", "", M, ""),
        (
            "git.example.com/r/sub",
            M,
            "",
            "sub",
            "",
            "git.example.com/r/sub",
            "",
        ),
        ("git.example.com/r/v2", M, "", "", "/v2", M, "v2"),
        (
            "git.example.com/r/a/b/v3",
            M,
            "",
            "a/b",
            "/v3",
            "git.example.com/r/a/b",
            "v3",
        ),
        (
            "git.example.com/r/v2",
            "git.example.com/r/v2",
            "",
            "",
            "/v2",
            "git.example.com/r/v2",
            "v2",
        ),
        (
            "git.example.com/r/v2",
            M,
            "go/lib",
            "go/lib",
            "/v2",
            M,
            "v2",
        ),
        (
            "gopkg.in/yaml.v2",
            "gopkg.in/yaml.v2",
            "",
            "",
            ".v2",
            "gopkg.in/yaml.v2",
            "v2",
        ),
    ] {
        let r = code_repo(&host, module, root, subdir);
        assert_eq!(
            (
                r.code_dir.as_str(),
                r.path_major.as_str(),
                r.path_prefix.as_str(),
                r.pseudo_major.as_str()
            ),
            (dir, major, prefix, pseudo_major),
            "{module} in {root} {subdir}"
        );
    }
    let repo = Arc::new(Repository::new(host.clone(), URL, Duration::ZERO));
    for (module, root, subdir, want) in [
        ("other.example.com/r", M, "", "mismatched repo"),
        ("git.example.com/rr", M, "", "mismatched repo"),
        ("git.example.com/r/sub", M, "../x", "invalid subdirectory"),
        ("git.example.com/r/sub", M, "a//b", "invalid subdirectory"),
        ("git.example.com/r/v1", M, "", "malformed module path"),
    ] {
        let e = CodeRepo::new(repo.clone(), root, subdir, module)
            .err()
            .unwrap_or_else(|| panic!("{module} accepted"));
        assert!(e.to_string().contains(want), "{module}: {e}");
        assert!(e.to_string().contains(module), "{e}");
    }
}

#[test]
fn versions_are_the_canonical_tags_of_the_module() {
    let host = Arc::new(FakeHost::default());
    // No go.mod anywhere but at v3.1.0.
    let c1 = host.commit(&[], T1, &[("a.go", "package a\n")]);
    let c2 = host.commit(&[&c1], T2, &[("a.go", "package a\n"), ("v3/go.mod", "x")]);
    let c3 = host.commit(&[&c2], T3, &[("go.mod", GO_MOD)]);
    for (tag, at) in [
        ("v1.0.0", &c1),
        ("v1.1.0-pre", &c1),
        ("v1.2", &c1),
        ("v1.2.0+meta", &c1),
        ("v0.0.0-20200101000000-abcdefabcdef", &c1),
        ("sub/v1.0.0", &c1),
        ("sub/v2.0.0", &c1),
        ("release", &c1),
        ("v2.0.0", &c1),
        ("v2.1.0", &c2),
        ("v3.0.0", &c1),
        ("v3.1.0", &c3),
        ("v10.0.0", &c1),
    ] {
        host.tag(tag, at);
    }
    let root = code_repo(&host, M, M, "");
    assert_eq!(
        root.versions("").unwrap(),
        [
            "v1.0.0",
            "v1.1.0-pre",
            "v2.0.0+incompatible",
            "v2.1.0+incompatible",
            "v10.0.0+incompatible"
        ],
        "v3's newest tag has a go.mod: no v3 +incompatible"
    );
    assert_eq!(root.versions("v1.").unwrap(), ["v1.0.0", "v1.1.0-pre"]);
    assert_eq!(
        root.versions("v2.").unwrap(),
        ["v2.0.0+incompatible", "v2.1.0+incompatible"]
    );
    let sub = code_repo(&host, "git.example.com/r/sub", M, "");
    assert_eq!(
        sub.versions("").unwrap(),
        ["v1.0.0"],
        "no +incompatible in a subdirectory"
    );
    let v2 = code_repo(&host, "git.example.com/r/v2", M, "");
    assert_eq!(v2.versions("").unwrap(), ["v2.0.0", "v2.1.0"]);

    // The newest compatible version has a go.mod: the v0/v1 line is meant.
    host.tag("v1.3.0", &c3);
    assert_eq!(
        root.versions("").unwrap(),
        ["v1.0.0", "v1.1.0-pre", "v1.3.0"]
    );
}

/// c1 (go.mod, v1.0.0) ← c2 (v1.1.0-pre) ← c3 (main, HEAD); c1 ← c4 (old).
struct Linear {
    host: Arc<FakeHost>,
    c: [String; 4],
}

fn linear() -> Linear {
    let host = Arc::new(FakeHost::default());
    let files = [("go.mod", GO_MOD), ("a.go", "package a\n")];
    let c1 = host.commit(&[], T1, &files);
    let c2 = host.commit(&[&c1], T2, &files);
    let c3 = host.commit(&[&c2], T3, &files);
    let c4 = host.commit(&[&c1], T4, &files);
    host.tag("v1.0.0", &c1);
    host.tag("v1.1.0-pre", &c2);
    host.branch("main", &c3);
    host.branch("old", &c4);
    host.head("main");
    Linear {
        host,
        c: [c1, c2, c3, c4],
    }
}

#[test]
fn stat_gives_tags_their_version_and_other_revisions_a_pseudo_version() {
    let Linear { host, c } = linear();
    let r = code_repo(&host, M, M, "");

    let v = r.stat("v1.0.0").unwrap();
    assert_eq!(
        (v.version.as_str(), v.hash.as_str()),
        ("v1.0.0", c[0].as_str())
    );
    assert_eq!(v.time, time(T1));
    assert_eq!(
        v.origin,
        Origin {
            vcs: "git".into(),
            url: URL.into(),
            hash: c[0].clone(),
            reference: "refs/tags/v1.0.0".into(),
            ..Origin::default()
        }
    );

    // A branch: counted from the highest ancestor tag, a pre-release here.
    let main = r.stat("main").unwrap();
    assert_eq!(
        main.version,
        format!("v1.1.0-pre.0.{}-{}", ts(T3), &c[2][..12])
    );
    assert_eq!(main.origin.reference, "refs/heads/main");
    assert_eq!(main.origin.tag_prefix, "");
    assert_eq!(main.origin.tag_sum, tag_sum("", &host.tags("").unwrap()));
    assert_eq!(r.stat("HEAD").unwrap().version, main.version);
    let head = r.head().unwrap();
    assert_eq!(
        (head.version.as_str(), head.origin.reference.as_str()),
        (main.version.as_str(), "HEAD")
    );
    assert_eq!(r.stat("latest").unwrap().version, main.version);

    // A hash, short or full: the ref naming it, if any.
    let old = r.stat(&c[3][..12]).unwrap();
    assert_eq!(old.version, pseudo("v1.0.0", T4, &c[3]));
    assert_eq!(old.origin.reference, "refs/heads/old");
    assert_eq!(
        r.stat(&c[1][..12]).unwrap().origin.reference,
        "refs/tags/v1.1.0-pre"
    );
    assert_eq!(
        r.stat(&c[2][..12]).unwrap().origin.reference,
        "",
        "HEAD's commit"
    );
    assert_eq!(r.stat(&c[3]).unwrap().version, old.version);
    // A tagged commit by hash is its tag.
    assert_eq!(r.stat(&c[1]).unwrap().version, "v1.1.0-pre");

    // The pseudo-version itself resolves to itself, and so does its .mod.
    assert_eq!(r.stat(&old.version).unwrap().version, old.version);
    assert_eq!(r.go_mod(&old.version).unwrap(), GO_MOD.as_bytes());

    // A v2 module path without tags: vX.0.0 of its major.
    let none = Arc::new(FakeHost::default());
    let n1 = none.commit(&[], T1, &[("go.mod", "module git.example.com/r/v2\n")]);
    none.branch("main", &n1);
    none.head("main");
    let v2 = code_repo(&none, "git.example.com/r/v2", M, "");
    let want = format!("v2.0.0-{}-{}", ts(T1), &n1[..12]);
    let got = v2.stat("main").unwrap();
    assert_eq!(got.version, want);
    assert_eq!(got.origin.tag_prefix, "v2.", "the tags of its major only");
    // The unversioned path is not this go.mod's module.
    let e = code_repo(&none, M, M, "").stat("main").unwrap_err();
    assert!(e.to_string().contains("has post-v0 module path"), "{e}");

    // Asked for by itself, a v0.0.0- pseudo-version's tags do not matter (no TagSum);
    // asked for by branch, they do.
    let untagged = Arc::new(FakeHost::default());
    let u1 = untagged.commit(&[], T1, &[("go.mod", GO_MOD)]);
    untagged.branch("main", &u1);
    untagged.head("main");
    let r = code_repo(&untagged, M, M, "");
    let by_branch = r.stat("main").unwrap();
    assert_eq!(
        by_branch.version,
        format!("v0.0.0-{}-{}", ts(T1), &u1[..12])
    );
    assert!(by_branch.origin.tag_sum.starts_with("t1:"));
    let by_version = r.stat(&by_branch.version).unwrap();
    assert_eq!(
        (
            by_version.origin.tag_sum.as_str(),
            by_version.origin.reference.as_str()
        ),
        ("", "")
    );
}

#[test]
fn unknown_and_foreign_revisions_are_refused_by_the_rule() {
    let Linear { host, c } = linear();
    let r = code_repo(&host, M, M, "");
    for (rev, status, want) in [
        ("v9.9.9", 404, "unknown revision v9.9.9"),
        ("nope", 404, "unknown revision nope"),
        (
            "v1.0.0+incompatible",
            404,
            "+incompatible suffix not allowed: major version v1 is compatible",
        ),
    ] {
        let e = r.stat(rev).unwrap_err();
        assert_eq!(e.status(), status, "{rev}: {e}");
        assert!(e.to_string().contains(want), "{rev}: {e}");
        assert!(e.to_string().contains(&format!("{M}@{rev}")), "{rev}: {e}");
    }
    // A tag whose go.mod names a /v2 path is not a v1 version of this module.
    let v2mod = host.commit(&[&c[0]], T4, &[("go.mod", "module git.example.com/r/v2\n")]);
    host.tag("v1.5.0", &v2mod);
    let e = r.stat("v1.5.0").unwrap_err();
    assert!(
        e.to_string()
            .contains("go.mod has post-v1 module path \"git.example.com/r/v2\" at revision v1.5.0"),
        "{e}"
    );
    assert_eq!(e.status(), 404);
    // A branch named like a version it is not: refused, not renamed.
    host.branch("v1.6.0", &c[2]);
    let e = r.stat("v1.6.0").unwrap_err();
    assert!(e.to_string().contains("(v1.6.0 is not a tag)"), "{e}");
}

#[test]
fn pseudo_versions_must_match_their_commit_and_base() {
    let Linear { host, c } = linear();
    let r = code_repo(&host, M, M, "");
    let ok = pseudo("v1.0.0", T4, &c[3]);
    assert_eq!(r.stat(&ok).unwrap().version, ok);
    for (version, want) in [
        (
            pseudo("v1.0.0", T3, &c[3]),
            "does not match version-control timestamp",
        ),
        (
            format!("v1.0.1-0.{}-{}", ts(T4), &c[3][..10]),
            "revision is shorter than canonical",
        ),
        (
            pseudo("v1.1.0-pre", T4, &c[3]),
            "is not a descendent of preceding tag (v1.1.0-pre)",
        ),
        (
            pseudo("v1.5.0", T4, &c[3]),
            "preceding tag (v1.5.0) not found",
        ),
        (
            pseudo("v1.0.0", T1, &c[0]),
            "tag (v1.0.0) found on revision",
        ),
        (
            format!("v1.0.0-{}-{}", ts(T4), &c[3][..12]),
            "major version without preceding tag must be v0, not v1",
        ),
    ] {
        let e = r.stat(&version).unwrap_err();
        assert!(e.to_string().contains(want), "{version}: {e}");
        assert!(e.to_string().contains("invalid pseudo-version"), "{e}");
        assert_eq!(e.status(), 404, "{e}");
        // .mod checks the same first.
        assert!(r.go_mod(&version).is_err(), "{version}");
    }
}

#[test]
fn incompatible_versions_where_the_module_has_no_go_mod() {
    let host = Arc::new(FakeHost::default());
    let c1 = host.commit(&[], T1, &[("a.go", "package a\n")]);
    let c2 = host.commit(&[&c1], T2, &[("a.go", "package a\n")]);
    let c3 = host.commit(&[&c2], T3, &[("a.go", "package a\n")]);
    let c4 = host.commit(&[&c3], T4, &[("go.mod", GO_MOD)]);
    host.tag("v2.0.0", &c1);
    host.tag("v2.1.0", &c2);
    host.tag("v2.2.0", &c4);
    host.branch("main", &c3);
    host.head("main");
    let r = code_repo(&host, M, M, "");
    assert_eq!(r.stat("v2.0.0").unwrap().version, "v2.0.0+incompatible");
    assert_eq!(
        r.stat("v2.0.0+incompatible").unwrap().version,
        "v2.0.0+incompatible"
    );
    assert_eq!(
        r.stat("main").unwrap().version,
        format!("v2.1.1-0.{}-{}+incompatible", ts(T3), &c3[..12])
    );
    let e = r.stat("v2.2.0").unwrap_err();
    assert!(
        e.to_string().contains(
            "module contains a go.mod file, so module path must match major version (\"git.example.com/r/v2\")"
        ),
        "{e}"
    );
    assert_eq!(
        r.go_mod("v2.0.0+incompatible").unwrap(),
        b"module git.example.com/r\n"
    );
    assert_eq!(r.go_mod("v2.2.0+incompatible").unwrap(), GO_MOD.as_bytes());
    let e = r.go_mod("v2.0").unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    // The /v2 module of the same repository has no go.mod for v2.0.0: refused.
    let v2 = code_repo(&host, "git.example.com/r/v2", M, "");
    let e = v2.stat("v2.0.0").unwrap_err();
    assert!(
        e.to_string()
            .contains("missing git.example.com/r/go.mod and .../v2/go.mod at revision v2.0.0"),
        "{e}"
    );
}

#[test]
fn modules_in_subdirectories_and_major_subdirectories() {
    let host = Arc::new(FakeHost::default());
    let c1 = host.commit(
        &[],
        T1,
        &[
            ("go.mod", GO_MOD),
            ("sub/go.mod", "module git.example.com/r/sub\n"),
            ("v2/go.mod", "module git.example.com/r/v2\n"),
        ],
    );
    let c2 = host.commit(&[&c1], T2, &[("go.mod", GO_MOD)]);
    host.tag("sub/v1.0.0", &c1);
    host.tag("sub/v1.1.0", &c2);
    host.tag("v2.0.0", &c1);
    let sub = code_repo(&host, "git.example.com/r/sub", M, "");
    let v = sub.stat("v1.0.0").unwrap();
    assert_eq!(v.origin.subdir, "sub");
    assert_eq!(v.origin.reference, "refs/tags/sub/v1.0.0");
    assert_eq!(
        sub.go_mod("v1.0.0").unwrap(),
        b"module git.example.com/r/sub\n"
    );
    let e = sub.stat("v1.1.0").unwrap_err();
    assert!(
        e.to_string()
            .contains("missing git.example.com/r/sub/go.mod at revision sub/v1.1.0"),
        "{e}"
    );
    let v2 = code_repo(&host, "git.example.com/r/v2", M, "");
    assert_eq!(v2.stat("v2.0.0").unwrap().version, "v2.0.0");
    assert_eq!(
        v2.go_mod("v2.0.0").unwrap(),
        b"module git.example.com/r/v2\n"
    );
}

#[test]
fn latest_is_the_highest_allowed_release_else_the_head() {
    let Linear { host, c } = linear();
    let r = code_repo(&host, M, M, "");
    assert_eq!(r.latest().unwrap().version, "v1.0.0");

    // A newer release that retracts itself: the one before.
    let retracting = format!("{GO_MOD}retract v1.2.0 // broken\n");
    let c5 = host.commit(&[&c[2]], T4, &[("go.mod", &retracting)]);
    host.tag("v1.2.0", &c5);
    assert_eq!(r.latest().unwrap().version, "v1.0.0");
    assert_eq!(
        r.versions("").unwrap(),
        ["v1.0.0", "v1.1.0-pre", "v1.2.0"],
        "lists keep retracted versions"
    );

    // Only a pre-release: it.
    let pre = Arc::new(FakeHost::default());
    let p1 = pre.commit(&[], T1, &[("go.mod", GO_MOD)]);
    pre.tag("v0.1.0-rc.1", &p1);
    pre.branch("main", &p1);
    pre.head("main");
    assert_eq!(
        code_repo(&pre, M, M, "").latest().unwrap().version,
        "v0.1.0-rc.1"
    );

    // No tags: the head's pseudo-version.
    let none = Arc::new(FakeHost::default());
    let n1 = none.commit(&[], T1, &[("go.mod", GO_MOD)]);
    none.branch("main", &n1);
    none.head("main");
    let latest = code_repo(&none, M, M, "").latest().unwrap();
    assert_eq!(latest.version, format!("v0.0.0-{}-{}", ts(T1), &n1[..12]));
    assert_eq!(latest.origin.reference, "HEAD");

    // No commits at all: 404.
    let empty = Arc::new(FakeHost::default());
    let e = code_repo(&empty, M, M, "").latest().unwrap_err();
    assert_eq!(e.status(), 404, "{e}");
}

#[test]
fn a_stale_mirror_is_refreshed_once_per_interval() {
    let Linear { host, c } = linear();
    let r = code_repo(&host, M, M, "");
    // A commit pushed since the mirror's last fetch: found after one refresh.
    let pushed = host.commit_remote(&[&c[2]], T4, &[("go.mod", GO_MOD)]);
    let before = host.refreshes.load(Ordering::Relaxed);
    assert_eq!(r.stat(&pushed).unwrap().hash, pushed);
    assert_eq!(host.refreshes.load(Ordering::Relaxed), before + 1);
    // A hostile client asking for missing hashes: one more fetch at most per interval.
    let before = host.refreshes.load(Ordering::Relaxed);
    for i in 0..50 {
        let e = r.stat(&format!("{i:07}abcdef")).unwrap_err();
        assert_eq!(e.status(), 404, "{e}");
    }
    assert!(host.refreshes.load(Ordering::Relaxed) <= before + 1);
    // Lists and branches follow the remote, within the interval's bound.
    let quick = code_repo_every(&host, M, M, "", Duration::ZERO);
    host.remote_only(|s| s.tags.insert("v1.3.0".into(), pushed.clone()));
    assert_eq!(quick.versions("").unwrap().last().unwrap(), "v1.3.0");
    host.remote_only(|s| s.branches.insert("main".into(), c[3].clone()));
    assert_eq!(quick.stat("main").unwrap().hash, c[3]);
}

#[test]
fn an_outage_is_never_a_404() {
    let Linear { host, c } = linear();
    let r = code_repo(&host, M, M, "");
    *host.refresh_fails.lock().unwrap() = Some(HostError::Unavailable("connection refused".into()));
    // What the mirror has is served.
    assert_eq!(r.stat("v1.0.0").unwrap().version, "v1.0.0");
    assert_eq!(r.stat(&c[3]).unwrap().hash, c[3]);
    // What it has not cannot be called missing: 502, each time (the failure is remembered).
    for _ in 0..2 {
        let e = r.stat("0123456789ab").unwrap_err();
        assert_eq!(e.status(), 502, "{e}");
        assert!(
            e.to_string().contains(URL) && e.to_string().contains(M),
            "{e}"
        );
    }
    assert_eq!(
        host.refreshes.load(Ordering::Relaxed),
        1,
        "once per interval"
    );
    // Moving answers need the remote.
    assert_eq!(r.versions("").unwrap_err().status(), 502);
    assert_eq!(r.stat("main").unwrap_err().status(), 502);
    assert_eq!(r.latest().unwrap_err().status(), 502);

    // Refused credentials: named, 502, not the secret.
    *host.refresh_fails.lock().unwrap() = None;
    *host.reads_fail.lock().unwrap() =
        Some(HostError::Unauthorized("HTTP 401 from the server".into()));
    let e = code_repo(&host, M, M, "").stat("v1.0.0").unwrap_err();
    assert_eq!(e.status(), 502);
    assert!(matches!(e, CodeRepoError::Unauthorized { .. }), "{e}");
    assert!(
        e.to_string().contains(M) && e.to_string().contains(URL),
        "{e}"
    );
}

/// The names in a zip the code repo wrote.
fn zip_names(data: Vec<u8>) -> Vec<String> {
    let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(data)).unwrap();
    let mut names: Vec<String> = (0..z.len())
        .map(|i| z.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn zips_take_the_module_directory_and_the_root_licence() {
    let host = Arc::new(FakeHost::default());
    let c1 = host.commit(
        &[],
        T1,
        &[
            ("go.mod", GO_MOD),
            ("LICENSE", "root\n"),
            ("a.go", "package a\n"),
            ("sub/go.mod", "module git.example.com/r/sub\n"),
            ("sub/s.go", "package sub\n"),
            ("sub/nested/go.mod", "module git.example.com/r/sub/nested\n"),
            ("sub/nested/n.go", "package nested\n"),
            ("own/go.mod", "module git.example.com/r/own\n"),
            ("own/LICENSE", "own\n"),
            ("crlf/go.mod", "module git.example.com/r/crlf\n"),
            ("crlf/.gitattributes", "*.txt eol=crlf\n*.bat eol=crlf\n"),
            ("crlf/a.txt", "one\n"),
        ],
    );
    for tag in ["v1.0.0", "sub/v1.0.0", "own/v1.0.0", "crlf/v1.0.0"] {
        host.tag(tag, &c1);
    }
    let mut out = Vec::new();
    let root = code_repo(&host, M, M, "").zip("v1.0.0", &mut out).unwrap();
    assert_eq!(
        root.files, 3,
        "go.mod, LICENSE, a.go: the other directories are modules"
    );
    let mut out = Vec::new();
    let sub = code_repo(&host, "git.example.com/r/sub", M, "");
    let z = sub.zip("v1.0.0", &mut out).unwrap();
    assert!(z.h1.starts_with("h1:"));
    let p = "git.example.com/r/sub@v1.0.0/";
    assert_eq!(
        zip_names(out),
        [
            format!("{p}LICENSE"),
            format!("{p}go.mod"),
            format!("{p}s.go")
        ],
        "the root LICENSE added, the nested module left out"
    );
    let mut out = Vec::new();
    code_repo(&host, "git.example.com/r/own", M, "")
        .zip("v1.0.0", &mut out)
        .unwrap();
    let data = {
        let mut z = ::zip::ZipArchive::new(std::io::Cursor::new(out)).unwrap();
        let mut f = z.by_name("git.example.com/r/own@v1.0.0/LICENSE").unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        s
    };
    assert_eq!(data, "own\n", "its own LICENSE, not the root's");

    // The fake archives without attributes: the blobs as they are (the go command's
    // conversions are held to it in tests/coderepo_reference.rs, on real repositories).
    let mut out = Vec::new();
    code_repo(&host, "git.example.com/r/crlf", M, "")
        .zip("v1.0.0", &mut out)
        .unwrap();
    assert_eq!(
        zip_names(out).len(),
        4,
        "go.mod, .gitattributes, a.txt, LICENSE"
    );

    // Versions the go command would not zip.
    assert_eq!(sub.zip("v1.0", std::io::sink()).unwrap_err().status(), 400);
    assert_eq!(
        sub.zip("v9.0.0", std::io::sink()).unwrap_err().status(),
        404
    );
    let bad = format!("v1.0.1-0.{}-{}", ts(T2), &c1[..12]);
    assert!(
        sub.zip(&bad, std::io::sink())
            .unwrap_err()
            .to_string()
            .contains("invalid pseudo-version")
    );

    // A mirror that fails while reading: a 5xx, not a missing module.
    *host.reads_fail.lock().unwrap() = Some(HostError::Unavailable("disk".into()));
    assert_eq!(
        sub.zip("v1.0.0", std::io::sink()).unwrap_err().status(),
        502
    );
}

#[test]
fn gopkg_in_paths_as_the_go_command_maps_them() {
    let host = Arc::new(FakeHost::default());
    let c1 = host.commit(&[], T1, &[("yaml.go", "package yaml\n")]);
    let c2 = host.commit(&[&c1], T2, &[("yaml.go", "package yaml // 2\n")]);
    host.tag("v1.0.0", &c1);
    host.tag("v2.0.0", &c2);
    host.branch("main", &c2);
    host.head("main");
    let v2 = code_repo(&host, "gopkg.in/yaml.v2", "gopkg.in/yaml.v2", "");
    assert_eq!(v2.versions("").unwrap(), ["v2.0.0"]);
    assert_eq!(v2.stat("v2.0.0").unwrap().version, "v2.0.0");
    assert_eq!(v2.go_mod("v2.0.0").unwrap(), b"module gopkg.in/yaml.v2\n");
    let v1 = code_repo(&host, "gopkg.in/yaml.v1", "gopkg.in/yaml.v1", "");
    assert_eq!(v1.versions("").unwrap(), ["v1.0.0"]);
    let unstable = code_repo(
        &host,
        "gopkg.in/yaml.v2-unstable",
        "gopkg.in/yaml.v2-unstable",
        "",
    );
    assert!(
        unstable.versions("").unwrap().is_empty(),
        "-unstable has no tags"
    );
}

#[test]
fn hostile_numbers_of_major_versions_are_bounded() {
    let host = Arc::new(FakeHost::default());
    let c1 = host.commit(&[], T1, &[("a.go", "package a\n")]);
    for major in 2..1100 {
        host.remote_only(|s| s.tags.insert(format!("v{major}.0.0"), c1.clone()));
    }
    host.refresh().unwrap();
    let e = code_repo(&host, M, M, "").versions("").unwrap_err();
    assert!(
        e.to_string().contains("more than 1000 major versions"),
        "{e}"
    );
    assert_eq!(e.status(), 404);
}
