//! The Git code host against real Git servers: git's own smart-HTTP server (`git
//! http-backend`) with Basic auth, and OpenSSH's `sshd` with a test key, both on loopback,
//! serving repositories made here with fixed dates.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use modfleet_proxy::codehost::git::{Credentials, GitOptions, GitRepo, HttpsUser};
use modfleet_proxy::codehost::{CodeHost, HostError};
use modfleet_proxy::protocol::zip::Limits as ZipLimits;
use modfleet_proxy::protocol::zip::create::SourceKind;
use modfleet_proxy::protocol::zip::create::git_archive::ArchivedFiles;
use modfleet_testkit::gitserver::{
    BasicAuth, Change, GitHttpServer, RepoRoot, Sshd, TestRepo, git,
};

const USER: &str = "gopher";
const PASSWORD: &str = "s3cret-t0ken";
const T1: i64 = 1_700_000_000;
const T2: i64 = 1_700_000_100;
const T3: i64 = 1_700_000_200;

/// The repository most tests read, and its commits.
struct Corpus {
    root: RepoRoot,
    repo: TestRepo,
    /// main: c1 (v1.0.0, sub/v0.1.0) ← c2 (v1.1.0 annotated, v1.2.0-pre); feature: c1 ← c3.
    c1: String,
    c2: String,
    c3: String,
}

const GITLINK: &str = "0123456789abcdef0123456789abcdef01234567";

fn corpus() -> Corpus {
    let root = RepoRoot::new();
    let repo = root.create("corpus");
    let c1 = repo.commit(
        "first",
        T1,
        &[
            ("go.mod", Change::text("module example.test/corpus\n")),
            ("a.go", Change::text("package a\n")),
            (
                "run.sh",
                Change::Executable(b"#!/bin/sh\necho hi\n".to_vec()),
            ),
            ("link", Change::Symlink("a.go".into())),
            (
                "sub/go.mod",
                Change::text("module example.test/corpus/sub\n"),
            ),
            ("sub/b.go", Change::text("package b\n")),
            ("sub/deep/c.go", Change::text("package c\n")),
            ("deps/dep", Change::Gitlink(GITLINK.into())),
            ("big.bin", Change::File(vec![7u8; 200_000])),
        ],
    );
    repo.tag("v1.0.0", &c1);
    repo.annotated_tag("sub/v0.1.0", &c1, "sub first", T1);
    let c2 = repo.commit(
        "second",
        T2,
        &[("a.go", Change::text("package a // v1.1\n"))],
    );
    repo.annotated_tag("v1.1.0", &c2, "release 1.1", T2);
    repo.tag("v1.2.0-pre", &c2);
    repo.tag("not-semver", &c2);
    repo.branch("feature", &c1);
    repo.switch("feature");
    let c3 = repo.commit(
        "on a branch",
        T3,
        &[("feature.go", Change::text("package a\n"))],
    );
    repo.switch("main");
    Corpus {
        root,
        repo,
        c1,
        c2,
        c3,
    }
}

/// Where mirrors and credentials live for one test.
struct Env {
    mirrors: tempfile::TempDir,
    secrets: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            mirrors: tempfile::tempdir().unwrap(),
            secrets: tempfile::tempdir().unwrap(),
        }
    }

    fn options(&self) -> GitOptions {
        let mut o = GitOptions::new(self.mirrors.path().join("git"));
        o.allow_insecure_http = true;
        o.fetch_deadline = Duration::from_secs(60);
        o.read_deadline = Duration::from_secs(60);
        o
    }

    fn https(&self, password: &str) -> Credentials {
        let file = self.secrets.path().join("password");
        // As a mounted Secret often is: with a trailing newline.
        std::fs::write(&file, format!("{password}\n")).unwrap();
        Credentials::Https {
            username: HttpsUser::Name(USER.into()),
            password_file: file,
        }
    }

    fn ssh(&self, sshd: &Sshd) -> Credentials {
        Credentials::Ssh {
            private_key_file: sshd.client_key(),
            known_hosts_file: sshd.known_hosts(),
        }
    }
}

fn http_server(root: &RepoRoot) -> GitHttpServer {
    GitHttpServer::start(
        root.path(),
        Some(BasicAuth {
            user: USER.into(),
            password: PASSWORD.into(),
        }),
    )
}

/// Every read the go command needs, against one transport.
fn check_reads(host: &GitRepo, c: &Corpus) {
    host.refresh().unwrap();

    // Tags with a prefix, annotated ones peeled to their commit.
    let tags: BTreeMap<String, String> = host
        .tags("v")
        .unwrap()
        .into_iter()
        .map(|t| (t.name, t.hash))
        .collect();
    let want: BTreeMap<String, String> =
        [("v1.0.0", &c.c1), ("v1.1.0", &c.c2), ("v1.2.0-pre", &c.c2)]
            .into_iter()
            .map(|(n, h)| (n.to_string(), h.clone()))
            .collect();
    assert_eq!(tags, want);
    let sub = host.tags("sub/").unwrap();
    assert_eq!(sub.len(), 1);
    assert_eq!((sub[0].name.as_str(), &sub[0].hash), ("sub/v0.1.0", &c.c1));
    assert!(host.tags("nothing/").unwrap().is_empty());

    // stat: tag, annotated tag, branch, full and short hash, HEAD.
    let v11 = host.stat("v1.1.0").unwrap();
    assert_eq!(v11.hash, c.c2);
    assert_eq!(v11.short, c.c2[..12]);
    assert_eq!(v11.time, UNIX_EPOCH + Duration::from_secs(T2 as u64));
    assert_eq!(v11.tags, ["not-semver", "v1.1.0", "v1.2.0-pre"]);
    assert_eq!(v11.name, "v1.1.0");
    assert_eq!(v11.reference.as_deref(), Some("refs/tags/v1.1.0"));
    let feature = host.stat("feature").unwrap();
    assert_eq!(feature.hash, c.c3);
    assert_eq!(feature.reference.as_deref(), Some("refs/heads/feature"));
    assert!(feature.tags.is_empty());
    // A hash records the least ref naming its commit, as the go command does on a fresh
    // clone; none for the remote's HEAD, or for HEAD asked for by name.
    let full = host.stat(&c.c1).unwrap();
    assert_eq!(
        (full.hash.as_str(), full.reference.as_deref()),
        (c.c1.as_str(), Some("refs/tags/sub/v0.1.0"))
    );
    assert_eq!(
        host.stat(&c.c3[..12]).unwrap().reference.as_deref(),
        Some("refs/heads/feature")
    );
    assert_eq!(host.stat(&c.c2).unwrap().reference, None);
    assert_eq!(host.stat("HEAD").unwrap().reference, None);
    assert_eq!(full.tags, ["sub/v0.1.0", "v1.0.0"]);
    let short = host.stat(&c.c1[..12]).unwrap();
    assert_eq!(
        (short.hash.as_str(), short.name.as_str()),
        (c.c1.as_str(), &c.c1[..12])
    );
    assert_eq!(host.stat(&c.c3[..7].to_uppercase()).unwrap().hash, c.c3);
    assert_eq!(host.stat("HEAD").unwrap().hash, c.c2);
    for unknown in ["v9.9.9", "nope", "0000000", &"0".repeat(40), "feature/x"] {
        assert!(
            matches!(host.stat(unknown), Err(HostError::NotFound(_))),
            "{unknown}"
        );
    }
    let latest = host.latest().unwrap();
    assert_eq!(latest.hash, c.c2);
    assert_eq!(latest.reference.as_deref(), Some("HEAD"));

    // Files: present, absent, a directory, too large, a symlink's target.
    assert_eq!(
        host.read_file(&c.c1, "go.mod", 1 << 20).unwrap().unwrap(),
        b"module example.test/corpus\n"
    );
    assert_eq!(
        host.read_file(&c.c2, "a.go", 1 << 20).unwrap().unwrap(),
        b"package a // v1.1\n"
    );
    assert_eq!(host.read_file(&c.c1, "missing.go", 1 << 20).unwrap(), None);
    assert_eq!(host.read_file(&c.c1, "sub", 1 << 20).unwrap(), None);
    assert_eq!(host.read_file(&c.c1, "deps/dep", 1 << 20).unwrap(), None);
    assert_eq!(
        host.read_file(&c.c1, "link", 100).unwrap().unwrap(),
        b"a.go"
    );
    assert!(matches!(
        host.read_file(&c.c1, "big.bin", 199_999),
        Err(HostError::TooLarge(_))
    ));
    assert_eq!(
        host.read_file(&c.c1, "big.bin", 200_000)
            .unwrap()
            .unwrap()
            .len(),
        200_000
    );

    // The go command's ReadZip: the tree as `git archive` exports it (submodules as
    // directories, so no file), read as the go command reads it; bounded in size.
    let listing = |subdir: &str| -> Vec<(String, SourceKind, u64, Vec<u8>)> {
        let z = host.read_zip(&c.c1, subdir, 1 << 20).unwrap();
        let mut a = ArchivedFiles::read(&z.file, z.size, subdir, &ZipLimits::default()).unwrap();
        let files = a.files().to_vec();
        files
            .into_iter()
            .map(|f| {
                let data = a.content(&f.path).unwrap();
                (String::from_utf8(f.path).unwrap(), f.kind, f.size, data)
            })
            .collect()
    };
    let root = listing("");
    let by_path: BTreeMap<&str, _> = root.iter().map(|f| (f.0.as_str(), f)).collect();
    assert_eq!(
        root.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        [
            "a.go",
            "big.bin",
            "go.mod",
            "link",
            "run.sh",
            "sub/b.go",
            "sub/deep/c.go",
            "sub/go.mod"
        ]
    );
    assert_eq!(by_path["a.go"].1, SourceKind::File);
    assert_eq!(by_path["a.go"].3, b"package a\n");
    assert_eq!(by_path["run.sh"].1, SourceKind::Executable);
    assert_eq!(by_path["link"].1, SourceKind::Symlink);
    assert_eq!(
        (by_path["link"].2, &by_path["link"].3[..]),
        (4, &b"a.go"[..])
    );
    assert_eq!(by_path["big.bin"].2, 200_000);
    assert_eq!(by_path["big.bin"].3, vec![7u8; 200_000]);
    let sub: Vec<(String, Vec<u8>)> = listing("sub").into_iter().map(|f| (f.0, f.3)).collect();
    assert_eq!(
        sub,
        [
            ("b.go".to_string(), b"package b\n".to_vec()),
            ("deep/c.go".to_string(), b"package c\n".to_vec()),
            (
                "go.mod".to_string(),
                b"module example.test/corpus/sub\n".to_vec()
            ),
        ]
    );
    // A file named like the directory: in the archive, but no file under it.
    assert!(listing("a.go").is_empty());
    assert!(matches!(
        host.read_zip(&c.c1, "nope", 1 << 20),
        Err(HostError::NotFound(_))
    ));
    // Past the limit stored (big.bin alone is 200 000 bytes) but within it as the go
    // command compresses it: the go command's archive decides, and it fits.
    let z = host.read_zip(&c.c1, "", 100_000).unwrap();
    assert!(z.size < 100_000, "{}", z.size);
    let a = ArchivedFiles::read(&z.file, z.size, "", &ZipLimits::default()).unwrap();
    assert_eq!(a.files().len(), 8);
    // Past it either way.
    let err = host.read_zip(&c.c1, "", 100).unwrap_err();
    assert!(matches!(err, HostError::TooLarge(_)), "{err:?}");
    // What the go command's ensureGitAttributes leaves, and nothing else.
    assert_eq!(
        std::fs::read(host.mirror_dir().join("info/attributes")).unwrap(),
        b"\n* -export-subst -export-ignore\n"
    );

    // RecentTag and DescendsFrom, as the go command uses them for pseudo-versions.
    // The highest semver (a prerelease of a higher version included), as `allowed` lets.
    let all = |_: &str| true;
    assert_eq!(
        host.recent_tag(&c.c2, "", &all).unwrap().as_deref(),
        Some("v1.2.0-pre")
    );
    assert_eq!(
        host.recent_tag(&c.c2, "", &|t: &str| !t.contains("pre"))
            .unwrap()
            .as_deref(),
        Some("v1.1.0")
    );
    assert_eq!(
        host.recent_tag(&c.c2, "", &|t: &str| t == "v1.0.0")
            .unwrap()
            .as_deref(),
        Some("v1.0.0")
    );
    assert_eq!(
        host.recent_tag(&c.c3, "", &all).unwrap().as_deref(),
        Some("v1.0.0")
    );
    assert_eq!(
        host.recent_tag(&c.c2, "sub/", &all).unwrap().as_deref(),
        Some("sub/v0.1.0")
    );
    assert_eq!(host.recent_tag(&c.c2, "other/", &all).unwrap(), None);
    assert!(host.descends_from(&c.c2, "v1.0.0").unwrap());
    assert!(host.descends_from(&c.c1, "v1.0.0").unwrap());
    assert!(!host.descends_from(&c.c3, "v1.1.0").unwrap());
    assert!(!host.descends_from(&c.c1, "v1.1.0").unwrap());
    assert!(!host.descends_from(&c.c2, "v7.0.0").unwrap());
}

#[test]
fn every_read_over_smart_http_with_basic_auth() {
    let c = corpus();
    let http = http_server(&c.root);
    let env = Env::new();
    let host = GitRepo::open(&http.url("corpus"), env.https(PASSWORD), &env.options()).unwrap();
    check_reads(&host, &c);
    let mirror = host
        .mirror_dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(mirror.len(), 64, "{mirror}");
    assert!(mirror.bytes().all(|b| b.is_ascii_hexdigit()), "{mirror}");
    // The 401 challenge was met with the credentials from the file.
    let reqs = http.requests();
    assert!(reqs.iter().any(|r| r.status == 401), "{reqs:?}");
    assert!(
        reqs.iter().any(|r| r.status == 200 && r.method == "POST"),
        "{reqs:?}"
    );
    // The first fetch is one `git fetch`, no ls-remote before it: the challenge, the refs
    // advertisement, ls-refs and the pack (what a second ls-remote would add: 2 more).
    let served: Vec<&str> = reqs
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| r.method.as_str())
        .collect();
    assert_eq!(served, ["GET", "POST", "POST"], "{reqs:?}");
}

#[test]
fn every_read_over_ssh_with_a_key() {
    let c = corpus();
    let sshd = Sshd::start();
    let env = Env::new();
    let host = GitRepo::open(&sshd.url(&c.repo.bare), env.ssh(&sshd), &env.options())
        .unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    check_reads(&host, &c);
}

/// Every object file of a mirror with its inode: a re-clone would make all of them anew.
fn objects(mirror: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![mirror.join("objects")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dirs.push(e.path());
            } else {
                out.insert(e.path(), m.ino());
            }
        }
    }
    out
}

#[test]
fn a_refresh_fetches_only_what_is_new() {
    let c = corpus();
    let http = http_server(&c.root);
    let env = Env::new();
    let host = GitRepo::open(&http.url("corpus"), env.https(PASSWORD), &env.options()).unwrap();
    host.refresh().unwrap();
    let mirror_inode = std::fs::metadata(host.mirror_dir()).unwrap().ino();
    let before = objects(host.mirror_dir());
    assert!(before.len() > 10, "{before:?}");

    let c4 = c.repo.commit(
        "fourth",
        T3 + 100,
        &[("new.go", Change::text("package a\n"))],
    );
    c.repo.annotated_tag("v1.3.0", &c4, "release 1.3", T3 + 100);
    c.repo.delete_tag("v1.2.0-pre");
    // Reads answer from the mirror as fetched until the next refresh.
    assert!(
        !host
            .tags("v1.3")
            .unwrap()
            .iter()
            .any(|t| t.name == "v1.3.0")
    );
    assert!(matches!(host.stat("v1.3.0"), Err(HostError::NotFound(_))));

    host.refresh().unwrap();
    let tags: Vec<String> = host
        .tags("v")
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(
        tags,
        ["v1.0.0", "v1.1.0", "v1.3.0"],
        "new tag in, deleted tag pruned"
    );
    assert_eq!(host.stat("v1.3.0").unwrap().hash, c4);
    assert_eq!(host.latest().unwrap().hash, c4);

    // Not a re-clone: the same mirror, every object of the first fetch untouched, and only
    // the new commit, its tree, blob and tag object added.
    assert_eq!(
        std::fs::metadata(host.mirror_dir()).unwrap().ino(),
        mirror_inode
    );
    let after = objects(host.mirror_dir());
    for (path, ino) in &before {
        assert_eq!(
            after.get(path),
            Some(ino),
            "{} was rewritten",
            path.display()
        );
    }
    let added = after.len() - before.len();
    assert!((1..=6).contains(&added), "{added} object files added");

    // A second instance (another process, say) sees the refreshed mirror too.
    let other = GitRepo::open(&http.url("corpus"), env.https(PASSWORD), &env.options()).unwrap();
    assert_eq!(other.stat("v1.3.0").unwrap().hash, c4);
}

#[test]
fn concurrent_refreshes_and_reads_share_one_mirror() {
    let c = corpus();
    let http = http_server(&c.root);
    let env = Env::new();
    let host = GitRepo::open(&http.url("corpus"), env.https(PASSWORD), &env.options()).unwrap();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|i| {
                let (host, c) = (&host, &c);
                s.spawn(move || {
                    if i % 2 == 0 {
                        host.refresh()?;
                    }
                    let info = host.stat("v1.1.0")?;
                    assert_eq!(info.hash, c.c2);
                    host.read_file(&c.c1, "go.mod", 1 << 20).map(|_| ())
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap().unwrap();
        }
    });
}

#[test]
fn a_wrong_password_is_unauthorized_naming_the_repository_not_the_secret() {
    let c = corpus();
    let http = http_server(&c.root);
    let env = Env::new();
    let url = http.url("corpus");
    let wrong = "wr0ng-passw0rd";
    let host = GitRepo::open(&url, env.https(wrong), &env.options()).unwrap();
    let err = host.refresh().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HostError::Unauthorized(_)), "{err:?}");
    assert!(msg.contains(&url), "{msg}");
    assert!(!msg.contains(wrong) && !msg.contains(PASSWORD), "{msg}");
    // No mirror is made for a repository we could not read.
    assert!(!host.mirror_dir().exists());

    // Anonymous: git would prompt; it is told not to.
    let anon = GitRepo::open(&url, Credentials::None, &env.options()).unwrap();
    assert!(matches!(
        anon.stat("v1.0.0"),
        Err(HostError::Unauthorized(_))
    ));

    // The file is read at use: fixing it fixes the next fetch.
    env.https(PASSWORD);
    host.refresh().unwrap();
    std::fs::write(env.secrets.path().join("password"), wrong).unwrap();
    assert!(matches!(host.refresh(), Err(HostError::Unauthorized(_))));
}

#[test]
fn ssh_with_a_stranger_key_or_an_unknown_host_key_is_unauthorized() {
    let c = corpus();
    let sshd = Sshd::start();
    let env = Env::new();
    let url = sshd.url(&c.repo.bare);
    let stranger = Credentials::Ssh {
        private_key_file: sshd.stranger_key(),
        known_hosts_file: sshd.known_hosts(),
    };
    let err = GitRepo::open(&url, stranger, &env.options())
        .unwrap()
        .refresh()
        .unwrap_err();
    assert!(matches!(err, HostError::Unauthorized(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{}", sshd.port())),
        "{err}"
    );

    let mitm = Credentials::Ssh {
        private_key_file: sshd.client_key(),
        known_hosts_file: sshd.wrong_known_hosts(),
    };
    let err = GitRepo::open(&url, mitm, &env.options())
        .unwrap()
        .refresh()
        .unwrap_err();
    assert!(
        matches!(err, HostError::Unauthorized(ref m) if m.contains("known_hosts")),
        "{err:?}"
    );
}

#[test]
fn an_unknown_repository_is_not_found() {
    let c = corpus();
    let http = http_server(&c.root);
    let sshd = Sshd::start();
    let env = Env::new();
    let over_http = GitRepo::open(&http.url("nope"), env.https(PASSWORD), &env.options()).unwrap();
    let err = over_http.refresh().unwrap_err();
    assert!(matches!(err, HostError::NotFound(_)), "{err:?}");
    let missing = c.root.path().join("nope.git");
    let over_ssh = GitRepo::open(&sshd.url(&missing), env.ssh(&sshd), &env.options()).unwrap();
    let err = over_ssh.latest().unwrap_err();
    assert!(matches!(err, HostError::NotFound(_)), "{err:?}");
}

#[test]
fn a_server_that_is_down_or_failing_is_unavailable_never_not_found() {
    let env = Env::new();
    let port = modfleet_testkit::workspace::closed_port();
    let url = format!("http://127.0.0.1:{port}/corpus.git");
    let err = GitRepo::open(&url, env.https(PASSWORD), &env.options())
        .unwrap()
        .refresh()
        .unwrap_err();
    assert!(matches!(err, HostError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");

    let url = format!("ssh://git@127.0.0.1:{port}/srv/corpus.git");
    let err = GitRepo::open(&url, Credentials::None, &env.options())
        .unwrap()
        .refresh()
        .unwrap_err();
    assert!(matches!(err, HostError::Unavailable(_)), "{err:?}");

    let c = corpus();
    let http = http_server(&c.root);
    let host = GitRepo::open(&http.url("corpus"), env.https(PASSWORD), &env.options()).unwrap();
    host.refresh().unwrap();
    http.fail_with(Some(503));
    let err = host.refresh().unwrap_err();
    assert!(matches!(err, HostError::Unavailable(_)), "{err:?}");
    // The mirror still answers from what it has.
    assert_eq!(host.stat("v1.0.0").unwrap().hash, c.c1);
}

#[test]
fn a_hung_server_is_unavailable_within_the_deadline() {
    // Accepts connections (the kernel does) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = Env::new();
    let mut options = env.options();
    options.fetch_deadline = Duration::from_secs(2);
    for url in [
        format!("http://127.0.0.1:{port}/corpus.git"),
        format!("ssh://git@127.0.0.1:{port}/srv/corpus.git"),
    ] {
        let started = Instant::now();
        let err = GitRepo::open(&url, Credentials::None, &options)
            .unwrap()
            .refresh()
            .unwrap_err();
        assert!(
            matches!(err, HostError::Unavailable(ref m) if m.contains("no answer within 2s")),
            "{err:?}"
        );
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
        // The deadline plus the time to kill and reap.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
    }
    drop(listener);
}

#[test]
fn hostile_names_are_refused_before_git_sees_them() {
    let c = corpus();
    let http = http_server(&c.root);
    let env = Env::new();
    let host = GitRepo::open(&http.url("corpus"), env.https(PASSWORD), &env.options()).unwrap();
    host.refresh().unwrap();
    let canary = env.mirrors.path().join("pwned");
    let inject = format!("--upload-pack=touch {}", canary.display());
    assert!(matches!(host.stat(&inject), Err(HostError::NotFound(_))));
    assert!(matches!(host.stat("-n"), Err(HostError::NotFound(_))));
    assert!(matches!(host.stat("v1.1.0^"), Err(HostError::NotFound(_))));
    assert!(matches!(host.stat("HEAD@{1}"), Err(HostError::NotFound(_))));
    assert!(matches!(
        host.descends_from(&c.c2, "--all"),
        Err(HostError::NotFound(_))
    ));
    assert!(matches!(
        host.read_file(&c.c1, "../x", 10),
        Err(HostError::NotFound(_))
    ));
    assert!(matches!(
        host.read_file("--all", "go.mod", 10),
        Err(HostError::NotFound(_))
    ));
    let out = format!("--output={}", canary.display());
    assert!(host.read_zip(&c.c1, &out, 1 << 20).is_err());
    assert!(host.read_zip(&out, "", 1 << 20).is_err());
    assert!(matches!(
        host.recent_tag("HEAD", "", &|_| true),
        Err(HostError::NotFound(_))
    ));
    for url in [
        format!("ext::sh -c touch% {}", canary.display()),
        format!("file://{}", c.repo.bare.display()),
        c.repo.bare.display().to_string(),
        format!("--upload-pack=touch {}", canary.display()),
        format!("https://{USER}:{PASSWORD}@127.0.0.1/corpus.git"),
    ] {
        let err = GitRepo::open(&url, Credentials::None, &env.options()).err();
        assert!(
            matches!(err, Some(HostError::NotFound(_))),
            "{url}: {err:?}"
        );
        assert!(!err.unwrap().to_string().contains(PASSWORD));
    }
    // Plain http is refused unless allowed.
    let mut strict = env.options();
    strict.allow_insecure_http = false;
    assert!(GitRepo::open(&http.url("corpus"), Credentials::None, &strict).is_err());
    assert!(!canary.exists());
}

/// A tree with a path git will not write (`.git`), pushed as raw objects: `git archive`
/// refuses it, so the go command has no zip of it, and neither has modfleet: a 404 (a
/// property of the version), not a 5xx.
#[test]
fn trees_git_will_not_export_have_no_zip() {
    let c = corpus();
    let bare = &c.repo.bare;
    let scratch = tempfile::tempdir().unwrap();
    let blob_file = scratch.path().join("blob");
    std::fs::write(&blob_file, "x\n").unwrap();
    let blob = git(bare, &["hash-object", "-w", blob_file.to_str().unwrap()]);
    let oid: Vec<u8> = (0..40)
        .step_by(2)
        .map(|i| u8::from_str_radix(&blob.trim()[i..i + 2], 16).unwrap())
        .collect();
    let mut raw = Vec::new();
    for name in [".git", "ok.go"] {
        raw.extend_from_slice(format!("100644 {name}\0").as_bytes());
        raw.extend_from_slice(&oid);
    }
    let tree_file = scratch.path().join("tree");
    std::fs::write(&tree_file, raw).unwrap();
    let tree = git(
        bare,
        &[
            "hash-object",
            "-t",
            "tree",
            "-w",
            "--literally",
            tree_file.to_str().unwrap(),
        ],
    );
    let commit = git(bare, &["commit-tree", "-m", "crafted", tree.trim()]);
    git(bare, &["tag", "crafted", commit.trim()]);

    let http = http_server(&c.root);
    let env = Env::new();
    let host = GitRepo::open(&http.url("corpus"), env.https(PASSWORD), &env.options()).unwrap();
    let info = host.stat("crafted").unwrap();
    let err = host.read_zip(&info.hash, "", 1 << 20).unwrap_err();
    assert!(
        matches!(&err, HostError::NotFound(m) if m.contains("invalid path '.git'")),
        "{err:?}"
    );
}

#[test]
fn an_empty_repository_has_no_latest() {
    let root = RepoRoot::new();
    root.create("empty");
    let http = http_server(&root);
    let env = Env::new();
    let host = GitRepo::open(&http.url("empty"), env.https(PASSWORD), &env.options()).unwrap();
    host.refresh().unwrap();
    assert!(host.tags("").unwrap().is_empty());
    assert!(matches!(host.latest(), Err(HostError::NotFound(_))));
    assert!(matches!(host.stat("main"), Err(HostError::NotFound(_))));
}

#[test]
fn a_sha256_repository_is_mirrored_in_its_own_format() {
    let root = RepoRoot::new();
    let repo = root.create_sha256("sha256");
    let c1 = repo.commit(
        "first",
        T1,
        &[("go.mod", Change::text("module example.test/s\n"))],
    );
    assert_eq!(c1.len(), 64);
    repo.annotated_tag("v1.0.0", &c1, "one", T1);
    let http = http_server(&root);
    let env = Env::new();
    let host = GitRepo::open(&http.url("sha256"), env.https(PASSWORD), &env.options()).unwrap();
    let info = host.stat("v1.0.0").unwrap();
    assert_eq!(
        (info.hash.as_str(), info.short.as_str()),
        (c1.as_str(), &c1[..12])
    );
    assert_eq!(host.stat(&c1[..12]).unwrap().hash, c1);
    assert_eq!(host.latest().unwrap().hash, c1);
    assert_eq!(host.tags("v").unwrap()[0].hash, c1);
    assert_eq!(
        host.read_file(&c1, "go.mod", 100).unwrap().unwrap(),
        b"module example.test/s\n"
    );
    let z = host.read_zip(&c1, "", 1 << 20).unwrap();
    let a = ArchivedFiles::read(&z.file, z.size, "", &ZipLimits::default()).unwrap();
    assert_eq!(a.files().len(), 1);
}
