//! Private modules served from Git, end to end: a real Git server (git's own smart-HTTP
//! backend), the real modfleet-proxy binary configured with `privateModules`, and the real go
//! command as the client with `GOPROXY` pointing at modfleet alone. The go command going
//! direct to the same Git server (`GOPROXY=direct`, `GOPRIVATE`, `url.insteadOf`) is the
//! reference: the same versions, the same `h1:` of every zip and go.mod (tags lightweight and
//! annotated, a subdirectory module, a /v2 subdirectory, `+incompatible`, a branch and a short
//! hash resolved to versions, `latest`).
//!
//! Also: private paths never reach the upstream proxy nor the checksum database (the
//! upstream, which is also the configured checksum database, counts its hits), refused
//! credentials name the module and the repository and not the password, a Git server that
//! is down is a 5xx, and `POST /admin/refresh` shows a new tag before the list TTL.

mod common;

use std::path::Path;
use std::process::Command;

use common::private_go::{Go, download, run};
use common::{Proxy, Upstream, config_file, wait_for};
use modfleet_testkit::gitserver::{BasicAuth, Change, GitHttpServer, RepoRoot, Sshd, TestRepo};

/// The module path prefix: `HOST/NAME.git` names repository NAME (the `.git` qualifier).
const HOST: &str = "git.modfleet.test/private";
const WRONG_PASSWORD: &str = "wrong-Pa55word-1e7c";

const T0: i64 = 1_700_000_000;

/// `lib`: a root module with tags (lightweight and annotated), a module in `sub` with
/// prefixed tags, a v2 in the major subdirectory `v2`, and a branch `dev` past the tags.
fn make_lib(root: &RepoRoot) -> TestRepo {
    let r = root.create("lib");
    let m = format!("{HOST}/lib.git");
    let c1 = r.commit(
        "v1",
        T0,
        &[
            ("go.mod", Change::text(&format!("module {m}\n\ngo 1.21\n"))),
            (
                "lib.go",
                Change::text(
                    "package lib\n\nfunc Greeting() string { return \"hello from lib\" }\n",
                ),
            ),
            ("LICENSE", Change::text("license text\n")),
            (
                "sub/go.mod",
                Change::text(&format!("module {m}/sub\n\ngo 1.21\n")),
            ),
            (
                "sub/sub.go",
                Change::text("package sub\n\nconst Name = \"sub\"\n"),
            ),
        ],
    );
    r.tag("v1.0.0", &c1);
    r.tag("sub/v0.1.0", &c1);
    let c2 = r.commit(
        "v1.1 and v2",
        T0 + 100,
        &[
            (
                "lib.go",
                Change::text(
                    "package lib\n\nfunc Greeting() string { return \"hello from lib v1.1\" }\n",
                ),
            ),
            (
                "v2/go.mod",
                Change::text(&format!("module {m}/v2\n\ngo 1.21\n")),
            ),
            (
                "v2/lib.go",
                Change::text("package lib\n\nconst Major = 2\n"),
            ),
        ],
    );
    r.annotated_tag("v1.1.0", &c2, "release v1.1.0", T0 + 110);
    r.tag("v2.0.0", &c2);
    r.branch("dev", &c2);
    r.switch("dev");
    r.commit(
        "dev work",
        T0 + 200,
        &[("dev.go", Change::text("package lib\n\nconst Dev = true\n"))],
    );
    r.switch("main");
    r
}

/// `attrs`: a module whose `.gitattributes` (committed after the files, so the blobs are as
/// written) make `git archive` convert it: CRLF line ends everywhere, go.mod included (the
/// zip's go.mod then differs from the `.mod`, which the go command reads as the blob),
/// `$Id$` expanded, an `export-ignore` the go command turns off.
fn make_attrs(root: &RepoRoot) {
    let r = root.create("attrs");
    let m = format!("{HOST}/attrs.git");
    r.commit(
        "files",
        T0,
        &[
            ("go.mod", Change::text(&format!("module {m}\n\ngo 1.21\n"))),
            (
                "attrs.go",
                Change::text("package attrs // $Id$\n\nconst Name = \"attrs\"\n"),
            ),
            (
                "ignored.go",
                Change::text("package attrs\n\nconst Kept = true\n"),
            ),
        ],
    );
    let c2 = r.commit(
        "attributes",
        T0 + 10,
        &[(
            ".gitattributes",
            Change::text("* text eol=crlf\n*.go ident\nignored.go export-ignore\n"),
        )],
    );
    r.tag("v1.0.0", &c2);
}

/// Direct to the Git server, as coderepo_reference runs it: `https://HOST/NAME` (what the go
/// command derives from `HOST/NAME.git`) rewritten to the server.
fn direct(go: &Go, server: &GitHttpServer, names: &[&str], args: &[&str]) -> Command {
    let gitconfig = go.home.path().join("gitconfig");
    let config: String = names
        .iter()
        .map(|n| {
            format!(
                "[url \"{}\"]\n\tinsteadOf = https://{HOST}/{n}\n",
                server.url(n)
            )
        })
        .collect();
    std::fs::write(&gitconfig, config).unwrap();
    let mut c = go.direct(args);
    c.env("GIT_CONFIG_GLOBAL", &gitconfig);
    c
}

struct Setup {
    /// The proxy's config file and cache directory (for `modfleet-proxy verify`).
    cfg: std::path::PathBuf,
    cache: std::path::PathBuf,
    _root: RepoRoot,
    lib: TestRepo,
    server: GitHttpServer,
    _locked: GitHttpServer,
    upstream: Upstream,
    proxy: Proxy,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let root = RepoRoot::new();
    let lib = make_lib(&root);
    let other = root.create("other");
    other.commit(
        "init",
        T0,
        &[(
            "go.mod",
            Change::text(&format!("module {HOST}/other.git\n")),
        )],
    );
    other.tag("v1.0.0", &other.rev_parse("HEAD"));
    // No go.mod, a v2 tag: v2.0.0+incompatible of the root path.
    let legacy = root.create("legacy");
    let l1 = legacy.commit(
        "legacy",
        T0,
        &[("legacy.go", Change::text("package legacy\n"))],
    );
    legacy.tag("v2.0.0", &l1);
    make_attrs(&root);
    let server = GitHttpServer::start(root.path(), None);
    let locked = GitHttpServer::start(
        root.path(),
        Some(BasicAuth {
            user: "alice".into(),
            password: "the-right-one".into(),
        }),
    );
    let upstream = Upstream::start(vec![], None);
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, WRONG_PASSWORD).unwrap();
    let up = &upstream.url;
    let entry = |name: &str, url: String| {
        format!(
            "  - pattern: {HOST}/{name}.git\n    insecure: true\n    repository: {{url: {url}, root: {HOST}/{name}.git}}\n"
        )
    };
    // The last entry covers the whole host: the go command also asks for the path's
    // prefixes (`git.modfleet.test/private/@v/v1.1.0.info`), and those must not leave either.
    let yaml = format!(
        "upstreams:\n  - url: {up}\nsumdbs:\n  - name: sum.golang.org\n    url: {up}\nlistTtl: 1h\nprefetch: on\nprivateModules:\n{}{}{}{}{}    credentials: {{username: alice, passwordFile: {}}}\n  - pattern: git.modfleet.test\n",
        entry("lib", server.url("lib")),
        entry("other", server.url("other")),
        entry("legacy", server.url("legacy")),
        entry("attrs", server.url("attrs")),
        entry("locked", locked.url("lib")),
        password.display(),
    );
    let cfg = config_file(dir.path(), &yaml);
    let proxy = Proxy::start(
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap()],
    );
    Setup {
        cfg,
        cache: dir.path().join("cache"),
        _root: root,
        lib,
        server,
        _locked: locked,
        upstream,
        proxy,
        _dir: dir,
    }
}

/// No request of the upstream (which is also the checksum database) names a private path.
fn assert_private_paths_stayed(s: &Setup) {
    let leaked: Vec<String> = s
        .upstream
        .all_hits()
        .into_keys()
        .filter(|p| p.contains("git.modfleet.test"))
        .collect();
    assert!(
        leaked.is_empty(),
        "private paths reached the upstream: {leaked:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_go_command_gets_private_modules_through_modfleet_as_it_gets_them_direct() {
    let s = setup();
    let go = Go::new(HOST);
    let lib = format!("{HOST}/lib.git");
    let short = s.lib.rev_parse("v1.0.0")[..12].to_string();
    let queries = [
        (lib.clone(), short.as_str()),
        (format!("{HOST}/legacy.git"), "v2.0.0+incompatible"),
        (format!("{HOST}/legacy.git"), "latest"),
        (lib.clone(), "v1.0.0"),
        (lib.clone(), "v1.1.0"),
        (lib.clone(), "latest"),
        (lib.clone(), "dev"),
        (format!("{lib}/sub"), "v0.1.0"),
        (format!("{lib}/v2"), "v2.0.0"),
        (format!("{HOST}/attrs.git"), "v1.0.0"),
    ];
    for (module, query) in &queries {
        let arg = format!("{module}@{query}");
        let ours = download(
            go.via(&s.proxy.url, &["mod", "download", "-json", &arg]),
            &arg,
        );
        // A fresh module cache for the reference, so nothing comes from ours.
        go.forget_modules();
        let theirs = download(
            direct(
                &go,
                &s.server,
                &["lib", "legacy", "attrs"],
                &["mod", "download", "-json", &arg],
            ),
            &arg,
        );
        go.forget_modules();
        assert!(theirs["Error"].is_null(), "{arg} direct: {theirs}");
        assert_eq!(ours, theirs, "{arg}: modfleet vs the go command direct");
        assert!(
            ours["Sum"].as_str().unwrap().starts_with("h1:"),
            "{arg}: {ours}"
        );
    }
    // The branch query resolved to a pseudo-version past v1.1.0.
    let dev = download(
        go.via(
            &s.proxy.url,
            &["mod", "download", "-json", &format!("{lib}@dev")],
        ),
        "dev",
    );
    assert!(
        dev["Version"].as_str().unwrap().starts_with("v1.1.1-0."),
        "{dev}"
    );

    for module in [
        lib.clone(),
        format!("{lib}/sub"),
        format!("{lib}/v2"),
        format!("{HOST}/legacy.git"),
    ] {
        let args = ["list", "-m", "-versions", module.as_str()];
        let (ok, ours, err) = run(go.via(&s.proxy.url, &args));
        assert!(ok, "{err}");
        go.forget_modules();
        let (ok, theirs, err) = run(direct(&go, &s.server, &["lib", "legacy"], &args));
        assert!(ok, "{err}");
        assert_eq!(ours, theirs, "go list -m -versions {module}");
    }
    assert!(
        run(go.via(&s.proxy.url, &["list", "-m", "-versions", &lib]))
            .1
            .contains("v1.0.0 v1.1.0")
    );

    // A program importing private modules builds (and runs) through modfleet alone.
    let prog = go.program(&format!(
        "package main\n\nimport (\n\t\"fmt\"\n\n\tlib \"{lib}\"\n\t\"{lib}/sub\"\n\tv2 \"{lib}/v2\"\n\t\"{HOST}/attrs.git\"\n)\n\nfunc main() {{ fmt.Println(lib.Greeting(), sub.Name, v2.Major, attrs.Name, attrs.Kept) }}\n"
    ));
    let mut get = go.via(
        &s.proxy.url,
        &[
            "get",
            &format!("{lib}@v1.1.0"),
            &format!("{lib}/sub@v0.1.0"),
            &format!("{lib}/v2@v2.0.0"),
            &format!("{HOST}/attrs.git@v1.0.0"),
        ],
    );
    get.current_dir(&prog);
    let (ok, _, err) = run(get);
    assert!(ok, "go get through modfleet: {err}");
    let mut build = go.via(&s.proxy.url, &["run", "."]);
    build.current_dir(&prog);
    let (ok, out, err) = run(build);
    assert!(ok, "go run through modfleet: {err}");
    assert_eq!(out, "hello from lib v1.1 sub 2 attrs true\n");

    assert_private_paths_stayed(&s);

    // `verify` passes the cache as served: the attrs zip's go.mod (CRLF, as `git archive`
    // converts it) differs from its `.mod` (the blob) by design, as in the go command's own.
    let attrs = s
        .cache
        .join("download/git.modfleet.test/private/attrs.git/@v");
    let (zip_file, mod_file) = (attrs.join("v1.0.0.zip"), attrs.join("v1.0.0.mod"));
    common::wait_committed(&zip_file).await;
    common::wait_committed(&mod_file).await;
    let inside = {
        use std::io::Read;
        let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip_file).unwrap()).unwrap();
        let mut entry = archive
            .by_name(&format!("{HOST}/attrs.git@v1.0.0/go.mod"))
            .unwrap();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        bytes
    };
    assert_ne!(
        inside,
        std::fs::read(&mod_file).unwrap(),
        "the test needs them to differ"
    );
    let verify = Command::new(common::PROXY_BIN)
        .arg("verify")
        .arg("--config")
        .arg(&s.cfg)
        .arg("--cache-dir")
        .arg(&s.cache)
        .args(["--verify-sumdb", "off"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && report.contains(" 0 bad"),
        "{report}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_and_outages_are_clear_5xx_answers() {
    let s = setup();
    let go = Go::new(HOST);
    let module = format!("{HOST}/locked.git");
    let (ok, _, err) = run(go.via(
        &s.proxy.url,
        &["mod", "download", "-json", &format!("{module}@v1.0.0")],
    ));
    let (_, out, _) = run(go.via(
        &s.proxy.url,
        &["mod", "download", "-json", &format!("{module}@v1.0.0")],
    ));
    let all = format!("{out}\n{err}");
    assert!(!ok, "{all}");
    assert!(all.contains(&module), "names the module: {all}");
    assert!(
        all.contains(&s._locked.url("lib")),
        "names the repository: {all}"
    );
    assert!(all.contains("credentials"), "says what is wrong: {all}");
    assert!(!all.contains(WRONG_PASSWORD), "never the password: {all}");
    let r = s.proxy.get(&format!("/{module}/@v/list")).await;
    assert_eq!(r.status(), 502);
    // A checksum lookup of a private path is answered here, never passed on.
    let r = s
        .proxy
        .get(&format!(
            "/sumdb/sum.golang.org/lookup/{HOST}/lib.git@v1.0.0"
        ))
        .await;
    assert_eq!(r.status(), 404);
    assert!(
        !s.proxy.logs().contains(WRONG_PASSWORD),
        "the password is in no log line"
    );

    // The Git server down: a 5xx, never a 404 (the go command must not fall back).
    s.server.fail_with(Some(503));
    let r = s
        .proxy
        .get(&format!("/{HOST}/other.git/@v/v1.0.0.info"))
        .await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status.is_server_error(), "{status}: {body}");
    assert!(body.contains(&s.server.url("other")), "{body}");
    s.server.fail_with(None);
    assert_private_paths_stayed(&s);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_refresh_shows_a_pushed_tag_before_the_list_ttl() {
    let s = setup();
    let lib = format!("{HOST}/lib.git");
    let list = |body: String| body.lines().map(str::to_string).collect::<Vec<_>>();
    let r = s.proxy.get(&format!("/{lib}/@v/list")).await;
    assert_eq!(r.status(), 200);
    // v2.0.0 is the /v2 module's (the root go.mod says v0/v1): not listed here.
    assert_eq!(list(r.text().await.unwrap()), ["v1.0.0", "v1.1.0"]);
    let head = s.lib.rev_parse("main");
    s.lib.tag("v1.2.0", &head);
    // Within listTtl (1h) the cached list stands.
    let r = s.proxy.get(&format!("/{lib}/@v/list")).await;
    assert!(!r.text().await.unwrap().contains("v1.2.0"));

    let client = reqwest::Client::new();
    let refresh = |module: &str| {
        client
            .post(format!("{}/admin/refresh?module={module}", s.proxy.admin))
            .send()
    };
    let r = refresh(&lib).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = s.proxy.get(&format!("/{lib}/@v/list")).await;
    assert!(r.text().await.unwrap().lines().any(|l| l == "v1.2.0"));
    let r = s.proxy.get(&format!("/{lib}/@latest")).await;
    assert!(r.text().await.unwrap().contains("\"Version\":\"v1.2.0\""));

    let r = refresh("example.com/public").await.unwrap();
    assert_eq!(r.status(), 404);
    let r = refresh("Not%20A%20Path").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_private_paths_stayed(&s);
}

/// SSH with a key and known_hosts: the same answers as the go command direct over HTTP to
/// the same repository; a key the server does not accept is a clear 502 naming module and
/// repository.
#[tokio::test(flavor = "multi_thread")]
async fn ssh_repositories_are_served_with_a_key_and_pinned_host_key() {
    let root = RepoRoot::new();
    let lib = make_lib(&root);
    let server = GitHttpServer::start(root.path(), None);
    let sshd = Sshd::start();
    let upstream = Upstream::start(vec![], None);
    let dir = tempfile::tempdir().unwrap();
    let entry = |name: &str, key: &Path, known_hosts: &Path| {
        format!(
            "  - pattern: {HOST}/{name}.git\n    repository: {{url: \"{}\", root: {HOST}/{name}.git}}\n    credentials: {{sshPrivateKeyFile: {}, sshKnownHostsFile: {}}}\n",
            sshd.url(&lib.bare),
            key.display(),
            known_hosts.display(),
        )
    };
    let yaml = format!(
        "upstreams:\n  - url: {up}\nsumdbs:\n  - name: sum.golang.org\n    url: {up}\nprivateModules:\n{}{}{}  - pattern: git.modfleet.test\n",
        entry("lib", &sshd.client_key(), &sshd.known_hosts()),
        entry("stranger", &sshd.stranger_key(), &sshd.known_hosts()),
        entry("mitm", &sshd.client_key(), &sshd.wrong_known_hosts()),
        up = upstream.url,
    );
    let cfg = config_file(dir.path(), &yaml);
    let proxy = Proxy::start(
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap()],
    );
    let go = Go::new(HOST);
    let arg = format!("{HOST}/lib.git@v1.1.0");
    let ours = download(
        go.via(&proxy.url, &["mod", "download", "-json", &arg]),
        &arg,
    );
    go.forget_modules();
    let theirs = download(
        direct(&go, &server, &["lib"], &["mod", "download", "-json", &arg]),
        &arg,
    );
    assert!(theirs["Error"].is_null(), "{theirs}");
    assert_eq!(ours, theirs, "over SSH: {}", sshd.log());

    let module = format!("{HOST}/stranger.git");
    let r = proxy.get(&format!("/{module}/@v/list")).await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains(&module) && body.contains("127.0.0.1"),
        "{body}"
    );
    assert!(body.contains("credentials"), "{body}");
    // A host key other than the pinned one: refused, never a 404.
    let r = proxy.get(&format!("/{HOST}/mitm.git/@v/list")).await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains(&format!("{HOST}/mitm.git")), "{body}");
    drop(lib);
    let leaked = upstream
        .all_hits()
        .into_keys()
        .filter(|p| p.contains("git.modfleet.test"))
        .count();
    assert_eq!(leaked, 0);
}

/// Lists follow `listTtl` and stale-while-revalidate as any list does: past the TTL the cached
/// list is served at once (with `Age`) while Git is asked again, and the new tag follows;
/// concurrent requests for a zip all get the same bytes.
#[tokio::test(flavor = "multi_thread")]
async fn lists_expire_and_revalidate_and_concurrent_zips_agree() {
    let root = RepoRoot::new();
    let lib = make_lib(&root);
    let server = GitHttpServer::start(root.path(), None);
    let upstream = Upstream::start(vec![], None);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "upstreams:\n  - url: {up}\nlistTtl: 1s\nstaleWhileRevalidate: 1h\nprivateModules:\n  - pattern: {HOST}/lib.git\n    insecure: true\n    repository: {{url: {url}, root: {HOST}/lib.git}}\n",
        up = upstream.url,
        url = server.url("lib"),
    );
    let cfg = config_file(dir.path(), &yaml);
    let proxy = Proxy::start(
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap()],
    );
    let list_path = format!("/{HOST}/lib.git/@v/list");
    let r = proxy.get(&list_path).await;
    assert_eq!(r.text().await.unwrap(), "v1.0.0\nv1.1.0\n");
    lib.tag("v1.3.0", &lib.rev_parse("main"));
    // The list's age must pass listTtl (1s): time passing is what is tested here.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = proxy.get(&list_path).await;
    assert!(
        r.headers().contains_key("age"),
        "a stale answer carries Age"
    );
    assert_eq!(r.text().await.unwrap(), "v1.0.0\nv1.1.0\n");
    wait_for(
        "the new tag in the revalidated list",
        std::time::Duration::from_secs(30),
        || async {
            proxy
                .get(&list_path)
                .await
                .text()
                .await
                .unwrap()
                .contains("v1.3.0")
        },
    )
    .await;

    let zip_path = format!("/{HOST}/lib.git/@v/v1.3.0.zip");
    let gets = (0..8).map(|_| async { proxy.get(&zip_path).await.bytes().await.unwrap() });
    let zips = futures::future::join_all(gets).await;
    assert!(zips[0].starts_with(b"PK"), "a zip");
    assert!(
        zips.iter().all(|z| z == &zips[0]),
        "every answer the same bytes"
    );
    let leaked = upstream
        .all_hits()
        .into_keys()
        .filter(|p| p.contains("git.modfleet.test"))
        .count();
    assert_eq!(leaked, 0, "nothing of a private module went upstream");
}
