//! Client access control against the real proxy binary and a real (fake) upstream on
//! loopback: tokens as Bearer or Basic, the rules' 401/403 before any upstream request, the
//! admin port's rules, the identity in the access log line and the metrics, tokens files
//! rotated while requests run, and bad tokens files at start. The go command's side (it sends
//! credentials only over HTTPS) is in client_access_go.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use common::{Corpus, PROXY_BIN, Proxy, Upstream, config_file, escape, wait_for};
use modfleet_contract::access::{TokenHash, TokenLine};

const PUBLIC: &str = "example.test/hello";
const PRIVATE: &str = "corp.example.test/secret";
const CI_TOKEN: &str = "mf_ci-token-0123456789abcdefghijklmnopqrstuv";
const DEV_TOKEN: &str = "mf_dev-token-0123456789abcdefghijklmnopqrstu";
const OPS_TOKEN: &str = "mf_ops-token-0123456789abcdefghijklmnopqrstu";

fn corpus() -> Corpus {
    let c = Corpus::new();
    for module in [PUBLIC, PRIVATE] {
        let go_mod = format!("module {module}\n\ngo 1.21\n");
        c.add(module, "v1.0.0", Some(&go_mod), &[("x.go", b"package x\n")]);
    }
    c
}

fn line(identity: &str, token: &str, groups: &[&str]) -> String {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    format!("{}\n", TokenLine::for_token(identity, token, &groups))
}

fn tokens() -> String {
    [
        line("ci", CI_TOKEN, &["builders"]),
        line("dev", DEV_TOKEN, &[]),
        line("ops", OPS_TOKEN, &["ops"]),
    ]
    .concat()
}

/// The README's shape: the private host for the builders, the rest for everyone.
fn config(origin: &str, tokens_file: &Path, rules: &str) -> String {
    format!(
        "upstreams:\n  - url: {origin}\nretry: {{attempts: 1}}\naccess:\n  tokensFiles: [{}]\n  \
         rules:\n{rules}  admin: [group:ops]\n",
        tokens_file.display()
    )
}

const RULES: &str = "    - modules: [corp.example.test]\n      allow: [group:builders]\n    \
                     - modules: ['*']\n      allow: [anonymous]\n";

/// A proxy with `access`, logging its access lines (debug).
fn start(dir: &Path, origin: &str, rules: &str) -> (Proxy, PathBuf) {
    let tokens_file = dir.join("tokens");
    std::fs::write(&tokens_file, tokens()).unwrap();
    let cfg = config_file(dir, &config(origin, &tokens_file, rules));
    let proxy = Proxy::start_with_env(
        &[],
        "127.0.0.1",
        &dir.join("cache"),
        &["--config", cfg.to_str().unwrap()],
        &[("RUST_LOG", "info,modfleet_proxy::server=debug")],
    );
    (proxy, tokens_file)
}

fn info_path(module: &str) -> String {
    format!("/{}/@v/v1.0.0.info", escape(module))
}

fn basic(user: &str, token: &str) -> String {
    let pair = format!("{user}:{token}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// GET with an optional Authorization: (status, WWW-Authenticate values, body).
async fn get(url: &str, authorization: Option<&str>) -> (u16, Vec<String>, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let challenges = r
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    (status, challenges, r.text().await.unwrap())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Log lines (JSON) whose message is `message`.
fn log_lines(proxy: &Proxy, message: &str) -> Vec<serde_json::Value> {
    proxy
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn module_requests_are_decided_by_the_rules_before_any_upstream_request() {
    let corpus = corpus();
    let origin = Upstream::serve(corpus.root());
    let dir = tempfile::tempdir().unwrap();
    let (proxy, _) = start(dir.path(), &origin.url, RULES);
    let private = info_path(PRIVATE);
    let url = format!("{}{private}", proxy.url);

    // No credentials: 401 with both challenges and the reason; nothing asked upstream.
    let (status, challenges, body) = get(&url, None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        challenges,
        ["Basic realm=\"modfleet\"", "Bearer realm=\"modfleet\""]
    );
    assert!(
        body.starts_with(&format!("authentication required for module {PRIVATE}:")),
        "{body}"
    );
    // An identity the rule does not name: 403 with the reason, no challenge.
    let (status, challenges, body) = get(&url, Some(&bearer(DEV_TOKEN))).await;
    assert_eq!(status, 403, "{body}");
    assert!(challenges.is_empty());
    assert_eq!(
        body,
        format!("identity dev may not fetch module {PRIVATE}: no access rule allows it\n")
    );
    // Wrong credentials are a 401 even where anonymous clients are let in.
    for (auth, reason) in [
        (
            bearer("mf_not-a-token-of-this-proxy-0123456789abc"),
            "unknown_token",
        ),
        (basic("dev", CI_TOKEN), "user_mismatch"),
        ("Negotiate abc".to_string(), "malformed_credentials"),
    ] {
        for path in [&private, &info_path(PUBLIC)] {
            let (status, challenges, body) =
                get(&format!("{}{path}", proxy.url), Some(&auth)).await;
            assert_eq!(status, 401, "{reason} {path}: {body}");
            assert_eq!(challenges.len(), 2);
            assert!(!body.contains("mf_"), "{body}");
        }
        let n = proxy
            .metric(&format!(
                r#"modfleet_proxy_access_refusals_total{{listener="goproxy",reason="{reason}"}}"#
            ))
            .await;
        assert_eq!(n, 2.0, "{reason}");
    }
    assert_eq!(
        origin.total_hits(),
        0,
        "a refused request asked the upstream: {:?}",
        origin.all_hits()
    );
    assert!(
        common::files_under(&proxy.cache_dir, &|_| true).is_empty(),
        "a refused request filled the cache"
    );

    // The builders' identity, as Bearer and as Basic with its own name.
    let (status, _, body) = get(&url, Some(&bearer(CI_TOKEN))).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = get(&url, Some(&basic("ci", CI_TOKEN))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(origin.hits(&private), 1);
    // The rest is anyone's, and so is the checksum database.
    for auth in [None, Some(bearer(DEV_TOKEN))] {
        let (status, _, body) = get(
            &format!("{}{}", proxy.url, info_path(PUBLIC)),
            auth.as_deref(),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let sumdb = format!("{}/sumdb/sum.golang.org/supported", proxy.url);
        assert_eq!(get(&sumdb, auth.as_deref()).await.0, 200);
    }

    // Counted by reason and identity; the identity is on the access log line.
    let metric = |s: &'static str| proxy.metric(s);
    assert_eq!(
        metric(r#"modfleet_proxy_access_refusals_total{listener="goproxy",reason="missing_credentials"}"#).await,
        1.0
    );
    assert_eq!(
        metric(r#"modfleet_proxy_access_refusals_total{listener="goproxy",reason="not_allowed"}"#)
            .await,
        1.0
    );
    assert_eq!(
        metric(r#"modfleet_proxy_client_requests_total{identity="ci"}"#).await,
        2.0
    );
    assert_eq!(
        metric(r#"modfleet_proxy_client_requests_total{identity="dev"}"#).await,
        2.0
    );
    assert_eq!(
        metric(r#"modfleet_proxy_client_requests_total{identity="anonymous"}"#).await,
        2.0
    );
    let lines = log_lines(&proxy, "request");
    let ci: Vec<_> = lines.iter().filter(|l| l["identity"] == "ci").collect();
    assert_eq!(ci.len(), 2, "{lines:?}");
    assert!(ci.iter().all(|l| l["status"] == 200));
    let refused: Vec<_> = lines
        .iter()
        .filter(|l| l["identity"] == "dev" && l["status"] == 403)
        .collect();
    assert_eq!(refused.len(), 1, "{lines:?}");
    assert!(
        !proxy.logs().contains("mf_") && !proxy.logs().contains("sha256:"),
        "a token or its hash reached the log"
    );
    // Never a server error.
    assert_eq!(
        metric(r#"modfleet_proxy_requests_total{status="500"}"#).await
            + metric(r#"modfleet_proxy_requests_total{status="502"}"#).await,
        0.0
    );
}

/// Without a rule for anonymous clients, everything on the GOPROXY port needs an identity some
/// rule admits: the checksum database, `/`, a path that is not a GOPROXY path, a module no rule
/// matches.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_proxy_answers_nothing_to_strangers() {
    let corpus = corpus();
    let origin = Upstream::serve(corpus.root());
    let dir = tempfile::tempdir().unwrap();
    let rules = "    - modules: [corp.example.test]\n      allow: [ci]\n    \
                 - modules: [example.test]\n      allow: [authenticated]\n";
    let (proxy, _) = start(dir.path(), &origin.url, rules);
    for path in [
        "/sumdb/sum.golang.org/supported",
        "/",
        "/not/a/goproxy/path",
        "/other.example/m/@v/list",
        &info_path(PUBLIC),
    ] {
        let (status, challenges, body) = get(&format!("{}{path}", proxy.url), None).await;
        assert_eq!((status, challenges.len()), (401, 2), "{path}: {body}");
    }
    let (status, _, body) = get(
        &format!("{}/sumdb/sum.golang.org/supported", proxy.url),
        Some(&bearer(DEV_TOKEN)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = get(&format!("{}/", proxy.url), Some(&bearer(DEV_TOKEN))).await;
    assert_eq!(
        status, 404,
        "an identity some rule admits gets the usual answer: {body}"
    );
    let (status, _, body) = get(
        &format!("{}/other.example/m/@v/list", proxy.url),
        Some(&bearer(CI_TOKEN)),
    )
    .await;
    assert_eq!(status, 403, "no rule matches: {body}");
    let (status, _, _) = get(
        &format!("{}{}", proxy.url, info_path(PUBLIC)),
        Some(&bearer(DEV_TOKEN)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(origin.hits("/other.example/m/@v/list"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_port_needs_an_admin_and_probes_stay_open() {
    let corpus = corpus();
    let origin = Upstream::serve(corpus.root());
    let dir = tempfile::tempdir().unwrap();
    let (proxy, _) = start(dir.path(), &origin.url, RULES);
    let admin = |path: &str| format!("{}{path}", proxy.admin);
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(&admin(path), None).await.0, 200, "{path}");
    }
    let (status, challenges, body) = get(&admin("/status"), None).await;
    assert_eq!((status, challenges.len()), (401, 2), "{body}");
    let (status, _, body) = get(&admin("/status"), Some(&bearer(CI_TOKEN))).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("identity ci") && body.contains("access.admin"),
        "{body}"
    );
    let (status, _, body) = get(&admin("/status"), Some(&basic("ops", OPS_TOKEN))).await;
    assert_eq!(status, 200, "{body}");
    let status_doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(status_doc["upstreams"].is_array(), "{body}");

    let post = |auth: Option<String>| {
        let mut r = reqwest::Client::new().post(admin("/admin/refresh?module=corp.example.test/x"));
        if let Some(a) = auth {
            r = r.header("Authorization", a);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(None).await, 401);
    assert_eq!(post(Some(bearer(DEV_TOKEN))).await, 403);
    assert_eq!(
        post(Some(bearer("mf_wrong-0123456789012345678901234567890"))).await,
        401
    );
    // Past the guard: not a private module here.
    assert_eq!(post(Some(bearer(OPS_TOKEN))).await, 404);
    for (reason, n) in [
        ("missing_credentials", 2.0),
        ("not_admin", 2.0),
        ("unknown_token", 1.0),
    ] {
        let sample = format!(
            r#"modfleet_proxy_access_refusals_total{{listener="admin",reason="{reason}"}}"#
        );
        assert_eq!(proxy.metric(&sample).await, n, "{reason}");
    }
}

/// Replaces a file the way a Secret volume is updated: a new file renamed over the old.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A token rotated while clients keep fetching: the new token added beside the old, the
/// clients moved to it, the old removed; no request with a valid token fails, the old one
/// stops working and the new one works, all without a restart. A broken rewrite keeps the
/// last good tokens.
#[tokio::test(flavor = "multi_thread")]
async fn tokens_rotate_while_requests_run() {
    const NEW_CI: &str = "mf_ci-rotated-0123456789abcdefghijklmnopqrst";
    let corpus = corpus();
    let origin = Upstream::serve(corpus.root());
    let dir = tempfile::tempdir().unwrap();
    let (proxy, tokens_file) = start(dir.path(), &origin.url, RULES);
    let pid = proxy.pid();
    let url = format!("{}{}", proxy.url, info_path(PRIVATE));
    let status_with = |token: &str| {
        let (url, auth) = (url.clone(), bearer(token));
        async move { get(&url, Some(&auth)).await.0 }
    };
    assert_eq!(status_with(NEW_CI).await, 401);

    // Clients fetching with whichever token they are told to use, each request checked.
    const CLIENTS: usize = 4;
    let use_new = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let on_new: Arc<Vec<AtomicUsize>> =
        Arc::new((0..CLIENTS).map(|_| AtomicUsize::new(0)).collect());
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (url, use_new, stop, on_new) =
            (url.clone(), use_new.clone(), stop.clone(), on_new.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut sent = 0;
            // Bounded: at most 20000 requests per client.
            while !stop.load(Ordering::Relaxed) && sent < 20_000 {
                let new = use_new.load(Ordering::Relaxed);
                let token = if new { NEW_CI } else { CI_TOKEN };
                let (status, _, body) = get(&url, Some(&bearer(token))).await;
                if status != 200 {
                    failures.push(format!(
                        "{status} with the {} token: {body}",
                        if new { "new" } else { "old" }
                    ));
                }
                if new {
                    on_new[i].fetch_add(1, Ordering::Relaxed);
                }
                sent += 1;
            }
            (sent, failures)
        }));
    }

    // Both tokens, then the clients on the new one, then the old one removed.
    replace(
        &tokens_file,
        &[tokens(), line("ci", NEW_CI, &["builders"])].concat(),
    );
    wait_for("the new token accepted", Duration::from_secs(10), || {
        let s = status_with(NEW_CI);
        async move { s.await == 200 }
    })
    .await;
    assert_eq!(
        status_with(CI_TOKEN).await,
        200,
        "the old token still works during the overlap"
    );
    use_new.store(true, Ordering::Relaxed);
    wait_for(
        "every client on the new token",
        Duration::from_secs(10),
        || {
            let on_new = on_new.clone();
            async move { on_new.iter().all(|n| n.load(Ordering::Relaxed) > 0) }
        },
    )
    .await;
    let rotated = [
        line("ci", NEW_CI, &["builders"]),
        line("dev", DEV_TOKEN, &[]),
        line("ops", OPS_TOKEN, &["ops"]),
    ]
    .concat();
    replace(&tokens_file, &rotated);
    wait_for("the old token refused", Duration::from_secs(10), || {
        let s = status_with(CI_TOKEN);
        async move { s.await == 401 }
    })
    .await;

    // A broken rewrite: the last good tokens stay, the failure is logged (naming the file and
    // the line, not the content) and counted.
    replace(
        &tokens_file,
        "ci mf_pasted-token-instead-of-its-hash-0123456789\n",
    );
    wait_for(
        "the failed reload counted",
        Duration::from_secs(10),
        || async {
            proxy
                .metric(r#"modfleet_proxy_access_token_reloads_total{outcome="failed"}"#)
                .await
                == 1.0
        },
    )
    .await;
    assert_eq!(status_with(NEW_CI).await, 200);
    assert_eq!(status_with(CI_TOKEN).await, 401);
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let (sent, failures) = c.await.unwrap();
        assert!(
            failures.is_empty(),
            "requests with a valid token failed: {failures:?}"
        );
        total += sent;
    }
    assert!(total > CLIENTS * 2, "only {total} requests ran");
    assert_eq!(proxy.pid(), pid, "not restarted");
    assert_eq!(
        proxy
            .metric(r#"modfleet_proxy_access_token_reloads_total{outcome="reloaded"}"#)
            .await,
        2.0
    );
    let logs = proxy.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("tokens read before stay in use"))
        .unwrap_or_else(|| panic!("no warning about the broken file:\n{logs}"));
    assert!(
        warning.contains(&tokens_file.display().to_string()) && warning.contains("line 1"),
        "{warning}"
    );
    assert!(!logs.contains("mf_"), "a token reached the log");
}

fn run(args: &[&str], stdin: Option<&str>) -> (bool, Option<i32>, String, String) {
    use std::io::Write;
    let mut c = Command::new(PROXY_BIN);
    c.args(args)
        .env_remove("GOPROXY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let o = child.wait_with_output().unwrap();
    (
        o.status.success(),
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn bad_tokens_files_stop_the_start_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("tokens");
    std::fs::write(
        &bad,
        format!(
            "{}# a comment\nci {CI_TOKEN}\n",
            line("ops", OPS_TOKEN, &[])
        ),
    )
    .unwrap();
    let missing = dir.path().join("missing");
    for (file, wanted) in [
        (&bad, "line 3: invalid token hash"),
        (&missing, "No such file"),
    ] {
        let cfg = config_file(dir.path(), &config("http://127.0.0.1:9", file, RULES));
        let cache = dir.path().join("cache");
        let (ok, code, _, stderr) = run(
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--cache-dir",
                cache.to_str().unwrap(),
            ],
            None,
        );
        assert!(!ok);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("access.tokensFiles {}", file.display()))
                && stderr.contains(wanted),
            "{stderr}"
        );
        assert!(!stderr.contains("mf_"), "{stderr}");
    }
    // A rule without modules is a config error too.
    let cfg = config_file(
        dir.path(),
        "upstreams: [{url: 'http://127.0.0.1:9'}]\naccess:\n  rules: [{modules: [], allow: [anonymous]}]\n",
    );
    let (_, code, _, stderr) = run(&["--config", cfg.to_str().unwrap()], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("access.rules[0]: `modules` is empty"),
        "{stderr}"
    );
}

#[test]
fn hash_token_prints_a_new_token_once_and_its_line() {
    let (ok, _, out, err) = run(
        &["hash-token", "--identity", "ci", "--groups", "builders,ops"],
        None,
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with('#') && lines[0].contains("Store it now"),
        "{out}"
    );
    let token = lines[1];
    assert!(token.starts_with("mf_") && token.len() == 46, "{out}");
    assert_eq!(
        lines[3],
        format!("ci {} builders,ops", TokenHash::of(token).as_str())
    );
    // --stdin: the line of a given token, and a short one refused.
    let given = "a-token-of-my-own-that-is-long-enough-0123";
    let (ok, _, out, err) = run(
        &["hash-token", "--identity", "ci", "--stdin"],
        Some(&format!("{given}\n")),
    );
    assert!(ok, "{err}");
    assert_eq!(out, format!("ci {}\n", TokenHash::of(given).as_str()));
    let (ok, code, out, err) = run(
        &["hash-token", "--identity", "ci", "--stdin"],
        Some("short\n"),
    );
    assert!(!ok && out.is_empty());
    assert_eq!(code, Some(2));
    assert!(err.contains("at least 32"), "{err}");
    let (_, _, out, _) = run(&["--help"], None);
    assert!(
        out.contains("hash-token") && out.contains("`access`"),
        "{out}"
    );
    let (_, _, out, _) = run(&["hash-token", "--help"], None);
    assert!(
        out.contains("--stdin") && out.contains("--identity") && out.contains("netrc"),
        "{out}"
    );
}

/// The identity (or the refusal's reason) is on the request's server span, read back from a
/// real OpenTelemetry Collector; no attribute holds a token or its hash.
#[tokio::test(flavor = "multi_thread")]
async fn the_identity_is_on_the_request_span() {
    use modfleet_testkit::collector::Collector;
    let collector = Collector::start();
    let corpus = corpus();
    let origin = Upstream::serve(corpus.root());
    let dir = tempfile::tempdir().unwrap();
    let tokens_file = dir.path().join("tokens");
    std::fs::write(&tokens_file, tokens()).unwrap();
    let cfg = config_file(dir.path(), &config(&origin.url, &tokens_file, RULES));
    let grpc = collector.grpc_endpoint();
    let proxy = Proxy::start_with_env(
        &[],
        "127.0.0.1",
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let url = format!("{}{}", proxy.url, info_path(PRIVATE));
    assert_eq!(get(&url, Some(&bearer(CI_TOKEN))).await.0, 200);
    assert_eq!(get(&url, Some(&bearer(DEV_TOKEN))).await.0, 403);
    assert_eq!(get(&url, None).await.0, 401);
    let name = "GET /{module}/@v/{version}.info";
    let spans = collector
        .wait_for_spans_async(
            |spans| spans.iter().filter(|s| s.name == name).count() >= 3,
            Duration::from_secs(30),
        )
        .await;
    let server: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    let find = |status: i64| {
        *server
            .iter()
            .find(|s| s.attr_i64("http.response.status_code") == Some(status))
            .unwrap_or_else(|| panic!("no {status} span in {server:#?}"))
    };
    assert_eq!(find(200).attr_str("enduser.id"), Some("ci"));
    assert_eq!(find(200).attr_str("modfleet.access"), None);
    assert_eq!(find(403).attr_str("enduser.id"), Some("dev"));
    assert_eq!(find(403).attr_str("modfleet.access"), Some("not_allowed"));
    assert_eq!(find(401).attr_str("enduser.id"), Some("anonymous"));
    assert_eq!(
        find(401).attr_str("modfleet.access"),
        Some("missing_credentials")
    );
    let dump = format!("{spans:?}");
    assert!(
        !dump.contains("mf_") && !dump.contains("sha256:"),
        "a token or its hash is in a span"
    );
}
