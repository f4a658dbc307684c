//! go-get discovery end to end, with the go command as the reference: modfleet must find a
//! private module's repository exactly where the go command finds it.
//!
//! The go command asks `https://PATH?go-get=1` (then `http://` under GOINSECURE) on the default
//! ports, and a module path cannot carry a port. So everything runs in a network namespace of
//! the test's own, where port 80 of 127.0.0.1 is free: the go-get pages are served there
//! (testkit's `Upstream` with scripted pages), Git (`git http-backend`) on any port (a
//! repository URL may carry one), and modules are named `127.0.0.1/corp/...` (the go command
//! takes an IP address as a module path's host: the first element needs a dot, and
//! `urlForImportPath` makes `http://127.0.0.1/corp/...?go-get=1` of it; `localhost` has no dot).
//! Nothing on 443: the https attempt is refused and both fall back to http, as GOINSECURE and
//! `insecure: true` allow.
//!
//! The go command direct (`GOPROXY=direct`) and the go command through modfleet alone (an
//! `insecure` privateModules entry with no repository: discovery decides) must agree on
//! versions, `h1:` hashes and `Origin`, ask the same pages, and fail for the same paths: no
//! matching go-import tag, a prefix page that disagrees.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::private_go::{Go, parse_download, run};
use common::{Proxy, Reply, Upstream, config_file};
use modfleet_testkit::gitserver::{Change, GitHttpServer, RepoRoot};
use modfleet_testkit::netns::Netns;
use serde_json::Value;

/// The module paths' host, and the GOPRIVATE/GOINSECURE pattern of both sides.
const HOST: &str = "127.0.0.1";
const CORP: &str = "127.0.0.1/corp";
const T0: i64 = 1_700_000_000;

/// A page a go-get server answers: its go-import tags (prefix, repository, subdirectory).
fn page(tags: &[(&str, &str, &str)]) -> Reply {
    let metas: String = tags
        .iter()
        .map(|(prefix, repo, subdir)| {
            format!("<meta name=\"go-import\" content=\"{prefix} git {repo} {subdir}\">\n")
        })
        .collect();
    Reply::Body(
        format!(
            "<!DOCTYPE html>\n<html><head>\n<meta charset=\"utf-8\">\n{metas}</head>\n\
             <body>go get {}</body></html>\n",
            tags.first().map_or("", |t| t.0)
        )
        .into_bytes(),
    )
}

/// Repository NAME: module `CORP/NAME` at its root (v1.0.0, then v1.1.0 annotated) and
/// `CORP/NAME/sub` in `sub` (tag `sub/v0.1.0`).
fn make_module_repo(root: &RepoRoot, name: &str) {
    let r = root.create(name);
    let m = format!("{CORP}/{name}");
    let file = format!("{name}.go");
    let code =
        |v: &str| format!("package {name}\n\nfunc Name() string {{ return \"{name} {v}\" }}\n");
    let c1 = r.commit(
        "v1.0",
        T0,
        &[
            ("go.mod", Change::text(&format!("module {m}\n\ngo 1.21\n"))),
            (&file, Change::text(&code("v1.0"))),
            (
                "sub/go.mod",
                Change::text(&format!("module {m}/sub\n\ngo 1.21\n")),
            ),
            (
                "sub/sub.go",
                Change::text(&format!("package sub\n\nconst Name = \"{name}/sub\"\n")),
            ),
        ],
    );
    r.tag("v1.0.0", &c1);
    r.tag("sub/v0.1.0", &c1);
    let c2 = r.commit("v1.1", T0 + 100, &[(&file, Change::text(&code("v1.1")))]);
    r.annotated_tag("v1.1.0", &c2, "release v1.1.0", T0 + 110);
}

/// Repository `mono`: no module at its root (a LICENSE there), `CORP/mono` in `go` and
/// `CORP/sdk` in `sdk/go`, found through the go-import tag's fourth field.
fn make_mono(root: &RepoRoot) {
    let r = root.create("mono");
    let c1 = r.commit(
        "go and sdk",
        T0,
        &[
            ("LICENSE", Change::text("the root license\n")),
            ("README", Change::text("not in any module\n")),
            (
                "go/go.mod",
                Change::text(&format!("module {CORP}/mono\n\ngo 1.21\n")),
            ),
            (
                "go/mono.go",
                Change::text("package mono\n\nconst Name = \"mono v1.0\"\n"),
            ),
            (
                "sdk/go/go.mod",
                Change::text(&format!("module {CORP}/sdk\n\ngo 1.21\n")),
            ),
            (
                "sdk/go/sdk.go",
                Change::text("package sdk\n\nconst Name = \"sdk v0.2\"\n"),
            ),
        ],
    );
    r.tag("go/v1.0.0", &c1);
    r.tag("sdk/go/v0.2.0", &c1);
    let c2 = r.commit(
        "mono v1.1",
        T0 + 100,
        &[(
            "go/mono.go",
            Change::text("package mono\n\nconst Name = \"mono v1.1\"\n"),
        )],
    );
    r.annotated_tag("go/v1.1.0", &c2, "mono v1.1.0", T0 + 110);
}

/// Everything in one network namespace: Git, the go-get pages on port 80, an upstream proxy
/// (which must never see a private path), and modfleet.
struct Lab {
    ns: Netns,
    _repos: RepoRoot,
    _git: GitHttpServer,
    pages: Upstream,
    upstream: Upstream,
    proxy: Proxy,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn start() -> Lab {
        let ns = Netns::new();
        let repos = RepoRoot::new();
        for name in ["lib", "liar", "extra"] {
            make_module_repo(&repos, name);
        }
        make_mono(&repos);
        let git = ns.enter(|| GitHttpServer::start(repos.path(), None));
        let url = |name: &str| git.url(name);
        let (lib, liar, extra, mono) = (url("lib"), url("liar"), url("extra"), url("mono"));
        let at = |module: &str| format!("{}?go-get=1", &module[HOST.len()..]);
        let p = |name: &str| format!("{CORP}/{name}");
        let pages = Upstream::builder()
            .netns(ns.name())
            .bind(SocketAddr::from(([127, 0, 0, 1], 80)))
            // A root module, and a module below it: the tag names the repository root.
            .route(&at(&p("lib")), page(&[(&p("lib"), &lib, "")]))
            .route(&at(&p("lib/sub")), page(&[(&p("lib"), &lib, "")]))
            // The fourth field: the module's directory in the repository (Go 1.25+); a
            // trailing slash the go command cleans away.
            .route(&at(&p("mono")), page(&[(&p("mono"), &mono, "go")]))
            .route(&at(&p("sdk")), page(&[(&p("sdk"), &mono, "sdk/go/")]))
            // No tag for the path.
            .route(&at(&p("nomatch")), page(&[(&p("other"), &lib, "")]))
            // The prefix's own page names another repository.
            .route(&at(&p("liar/sub")), page(&[(&p("liar"), &liar, "")]))
            .route(&at(&p("liar")), page(&[(&p("liar"), &lib, "")]))
            // The prefix's own page has a second tag that holds the path too: the go command
            // matches the path (not the prefix) against it, finds two, and refuses.
            .route(&at(&p("extra/sub")), page(&[(&p("extra"), &extra, "")]))
            .route(
                &at(&p("extra")),
                page(&[(&p("extra"), &extra, ""), (&p("extra/sub"), &extra, "sub")]),
            )
            .route("*", Reply::Status(404, "no such page"))
            .start();
        let upstream = Upstream::builder().netns(ns.name()).start();
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "upstreams:\n  - url: {up}\nsumdbs:\n  - name: sum.golang.org\n    url: {up}\n\
             listTtl: 1h\nprivateModules:\n  - pattern: {HOST}\n    insecure: true\n",
            up = upstream.url
        );
        let cfg = config_file(dir.path(), &yaml);
        let cache = dir.path().join("cache");
        let proxy = ns.enter(|| Proxy::start(&cache, &["--config", cfg.to_str().unwrap()]));
        Lab {
            ns,
            _repos: repos,
            _git: git,
            pages,
            upstream,
            proxy,
            _dir: dir,
        }
    }

    /// Runs `go ARGS` through modfleet (`via`) or direct, inside the namespace; also returns
    /// the go-get pages asked meanwhile (request target → times).
    fn go(
        &self,
        go: &Go,
        via: bool,
        args: &[&str],
    ) -> ((bool, String, String), BTreeMap<String, u64>) {
        let before = self.pages.all_hits();
        let cmd = if via {
            go.via(&self.proxy.url, args)
        } else {
            go.direct(args)
        };
        let out = self.ns.enter(|| run(cmd));
        let asked = self
            .pages
            .all_hits()
            .into_iter()
            .filter_map(|(target, n)| {
                let new = n - before.get(&target).copied().unwrap_or(0);
                (new > 0).then_some((target, new))
            })
            .collect();
        (out, asked)
    }

    /// `go mod download -json ARG`, through modfleet or direct, with a fresh module cache
    /// before and after (nothing of one side reaches the other).
    fn download(&self, go: &Go, via: bool, arg: &str) -> (Value, BTreeMap<String, u64>) {
        go.forget_modules();
        let ((_, out, err), asked) = self.go(go, via, &["mod", "download", "-json", arg]);
        go.forget_modules();
        let json = parse_download(arg, &out, &err);
        (json, asked)
    }

    /// modfleet's status and body for a path, asked from inside the namespace.
    fn get(&self, path: &str) -> (u16, String) {
        self.ns.block_on(async {
            let r = self.proxy.get(path).await;
            (r.status().as_u16(), r.text().await.unwrap())
        })
    }

    /// No request of the upstream proxy (and checksum database) named a private path.
    fn assert_private_paths_stayed(&self) {
        let leaked: Vec<String> = self
            .upstream
            .all_hits()
            .into_keys()
            .filter(|p| p.contains("corp"))
            .collect();
        assert!(
            leaked.is_empty(),
            "private paths reached the upstream: {leaked:?}"
        );
    }
}

/// What must be equal in `go mod download -json`: the version, its hashes, where it came from.
fn download_facts(json: &Value, with_origin: bool) -> Value {
    serde_json::json!({
        "Version": json["Version"],
        "Sum": json["Sum"],
        "GoModSum": json["GoModSum"],
        "Error": json["Error"],
        "Origin": if with_origin { json["Origin"].clone() } else { Value::Null },
    })
}

/// modfleet asked the same go-get pages as the go command, as often (once each), and asked
/// at least one.
fn assert_same_pages(arg: &str, ours: &BTreeMap<String, u64>, theirs: &BTreeMap<String, u64>) {
    assert_eq!(
        ours, theirs,
        "{arg}: go-get pages asked by modfleet, by the go command"
    );
    assert!(!ours.is_empty(), "{arg}: no go-get page asked");
    for target in ours.keys() {
        assert!(
            target.ends_with("?go-get=1"),
            "not a go-get request: {target}"
        );
    }
}

#[test]
fn modfleet_discovers_repositories_as_the_go_command_does() {
    let lab = Lab::start();
    let go = Go::new(HOST);
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "lib",
            &["v1.0.0", "v1.1.0", "latest"],
            &["v1.0.0", "v1.1.0"],
        ),
        ("lib/sub", &["v0.1.0"], &["v0.1.0"]),
        ("mono", &["v1.0.0", "latest"], &["v1.0.0", "v1.1.0"]),
        ("sdk", &["v0.2.0"], &["v0.2.0"]),
        // The extra tag on this prefix page is harmless for the root itself.
        ("extra", &["v1.1.0"], &["v1.0.0", "v1.1.0"]),
    ];
    for (name, queries, versions) in cases {
        let module = format!("{CORP}/{name}");
        for (i, query) in queries.iter().enumerate() {
            let arg = format!("{module}@{query}");
            let (ours, ours_asked) = lab.download(&go, true, &arg);
            let (theirs, theirs_asked) = lab.download(&go, false, &arg);
            assert!(theirs["Error"].is_null(), "{arg} direct: {theirs}");
            // For `latest` the go command direct reports the query's Origin (with a TagSum);
            // through any proxy it reports none. Exact versions: the same Origin.
            let exact = *query != "latest";
            assert_eq!(
                download_facts(&ours, exact),
                download_facts(&theirs, exact),
                "{arg}: modfleet vs the go command direct"
            );
            assert!(ours["Sum"].as_str().unwrap().starts_with("h1:"), "{ours}");
            // The go-import tag's fourth field, cleaned, is where the module is.
            if exact && matches!(*name, "mono" | "sdk") {
                let subdir = if *name == "mono" { "go" } else { "sdk/go" };
                assert_eq!(ours["Origin"]["Subdir"], subdir, "{ours}");
            }
            if i == 0 {
                // modfleet's first look at the module: the pages it asked are the go
                // command's (later ones are answered from what it remembers).
                assert_same_pages(&arg, &ours_asked, &theirs_asked);
            }
        }
        let args = ["list", "-m", "-versions", module.as_str()];
        let ((ok, ours, err), _) = lab.go(&go, true, &args);
        assert!(ok, "{err}");
        let ((ok, theirs, err), _) = lab.go(&go, false, &args);
        assert!(ok, "{err}");
        assert_eq!(ours, theirs, "go list -m -versions {module}");
        assert_eq!(ours, format!("{module} {}\n", versions.join(" ")));
    }
    // A program importing them builds and runs through modfleet alone.
    let prog = go.program(&format!(
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"{CORP}/lib\"\n\t\"{CORP}/lib/sub\"\n\t\"{CORP}/mono\"\n\t\"{CORP}/sdk\"\n)\n\n\
         func main() {{ fmt.Println(lib.Name(), sub.Name, mono.Name, sdk.Name) }}\n"
    ));
    let get_args = [
        "get",
        &format!("{CORP}/lib@v1.1.0"),
        &format!("{CORP}/lib/sub@v0.1.0"),
        &format!("{CORP}/mono@v1.1.0"),
        &format!("{CORP}/sdk@v0.2.0"),
    ]
    .map(|s| s.to_string());
    let get_args: Vec<&str> = get_args.iter().map(String::as_str).collect();
    let mut get = go.via(&lab.proxy.url, &get_args);
    get.current_dir(&prog);
    let (ok, _, err) = lab.ns.enter(|| run(get));
    assert!(ok, "go get through modfleet: {err}");
    let mut build = go.via(&lab.proxy.url, &["run", "."]);
    build.current_dir(&prog);
    let (ok, out, err) = lab.ns.enter(|| run(build));
    assert!(ok, "go run through modfleet: {err}");
    assert_eq!(out, "lib v1.1 lib/sub mono v1.1 sdk v0.2\n");
    lab.assert_private_paths_stayed();
}

#[test]
fn paths_discovery_refuses_fail_for_both() {
    let lab = Lab::start();
    let go = Go::new(HOST);
    // (module, what the go command says, what modfleet says)
    let cases = [
        ("nomatch", "no go-import meta tags", "no go-import meta tag"),
        ("liar/sub", "disagree about go-import", "disagree"),
        ("extra/sub", "disagree about go-import", "disagree"),
    ];
    for (name, go_says, we_say) in cases {
        let module = format!("{CORP}/{name}");
        let arg = format!("{module}@v0.1.0");
        let (theirs, theirs_asked) = lab.download(&go, false, &arg);
        let error = theirs["Error"].as_str().unwrap_or_default();
        assert!(error.contains(go_says), "{arg} direct: {theirs}");
        let (ours, ours_asked) = lab.download(&go, true, &arg);
        let error = ours["Error"].as_str().unwrap_or_default();
        assert!(
            error.contains("404 Not Found") || error.contains("410 Gone"),
            "{arg} through modfleet: {ours}"
        );
        assert_same_pages(&arg, &ours_asked, &theirs_asked);
        for path in ["@v/list", "@v/v0.1.0.info", "@latest"] {
            let (status, body) = lab.get(&format!("/{module}/{path}"));
            assert!(
                status == 404 || status == 410,
                "{module}/{path}: {status} {body}"
            );
            assert!(body.contains(we_say), "{module}/{path}: {body}");
        }
    }
    lab.assert_private_paths_stayed();
}
