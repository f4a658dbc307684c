//! Peer fill with real members on loopback and the real go command: three go commands through
//! three members download a cold graph for one upstream fetch per artifact; the owner of a zip
//! killed mid-transfer leaves its waiters with correct bytes (and they were streamed the zip
//! while the owner fetched it); a peer that lies or refuses is routed around; the peer port
//! admits only the fleet's token; bad settings stop the start.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::graph::{app_dir, corpus, immutable_served};
use common::{Corpus, GoEnv, PROXY_BIN, Proxy, Upstream, config_file, sha256, tmp_files, wait_for};
use modfleet_proxy::peers::ring;
use modfleet_testkit::upstream::Auth;
use modfleet_testkit::workspace::free_port;

const WAIT: Duration = Duration::from_secs(30);
/// The members' `peerFill.timeout`: past it an asker fetches for itself, which is right but
/// would make "fetched once" fail on a machine too loaded to answer in the default 2s
/// (seen once in a run beside a release build); the fallback has its own tests.
const PEER_TIMEOUT: &str = "10s";

/// The fleet's shared peer token.
const TOKEN: &str = "0123456789abcdef0123456789abcdef-fleet-token";

/// Members on loopback, each with its own disk cache and peer port, all knowing each other.
struct Fleet {
    members: Vec<Proxy>,
    /// Each member's peer address, in the order of `members`.
    peers: Vec<String>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Fleet {
    /// `n` members of one upstream; `extra` is added to every member's config.
    fn start(n: usize, upstream: &str, extra: &str) -> Fleet {
        let peers: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let mut dirs = Vec::new();
        let mut members = Vec::new();
        for peer in &peers {
            let dir = tempfile::tempdir().unwrap();
            let cfg = member_config(dir.path(), upstream, peer, &peers, extra);
            members.push(Proxy::start(
                &dir.path().join("cache"),
                &["--config", cfg.to_str().unwrap(), "--peer-advertise", peer],
            ));
            dirs.push(dir);
        }
        Fleet {
            members,
            peers,
            _dirs: dirs,
        }
    }

    /// The index of the member that owns the artifact at GOPROXY path `path` (`/m/@v/v.zip`).
    fn owner_of(&self, path: &str) -> usize {
        let owner = ring::owner(&self.peers, &path[1..]).unwrap();
        self.peers.iter().position(|p| p == owner).unwrap()
    }
}

fn member_config(
    dir: &Path,
    upstream: &str,
    listen: &str,
    members: &[String],
    extra: &str,
) -> std::path::PathBuf {
    let token = dir.join("peer-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    config_file(
        dir,
        &format!(
            "upstreams: [{{url: {upstream}}}]
peerFill:
  listen: {listen}
  tokenFile: {token}
  members: [{members}]
  timeout: {PEER_TIMEOUT}
{extra}",
            token = token.display(),
            members = members.join(", "),
        ),
    )
}

fn go_cmd(go: &GoEnv, dir: &Path, proxy: &Proxy, args: &[&str]) -> Command {
    let mut c = go.command(dir, &proxy.url);
    c.args(args).env("GONOSUMDB", "example.test");
    c
}

async fn peer_metric(p: &Proxy, result: &str) -> f64 {
    p.metric(&format!(
        r#"modfleet_proxy_peer_asks_total{{result="{result}"}}"#
    ))
    .await
}

/// Three go commands at once, each through a different member, download the same cold graph:
/// every immutable artifact is fetched from the upstream exactly once for the whole fleet
/// (owners coalesce the members' asks with their own clients'), and the app builds.
#[tokio::test(flavor = "multi_thread")]
async fn three_go_commands_through_three_members_cost_one_upstream_fetch_per_artifact() {
    let corpus = corpus();
    let up = Upstream::serve(corpus.root());
    let fleet = Fleet::start(3, &up.url, "");
    std::thread::scope(|s| {
        for member in &fleet.members {
            s.spawn(move || {
                let go = GoEnv::new();
                let app = app_dir();
                go.run(go_cmd(&go, app.path(), member, &["mod", "download"]));
                go.run(go_cmd(
                    &go,
                    app.path(),
                    member,
                    &["build", "-o", "app", "."],
                ));
                let out = Command::new(app.path().join("app")).output().unwrap();
                assert_eq!(String::from_utf8_lossy(&out.stdout), "hello! Case 2\n");
            });
        }
    });
    let served = immutable_served(&up, &corpus);
    for zip in [
        "/example.test/greet/@v/v1.0.0.zip",
        "/example.test/util/@v/v1.1.0.zip",
        "/example.test/!upper/!case/@v/v1.2.0.zip",
        "/example.test/legacy/@v/v2.0.0+incompatible.zip",
    ] {
        assert!(
            served.contains(&zip.to_string()),
            "{zip} not served: {served:?}"
        );
    }
    let fetched_more_than_once: Vec<(String, u64)> = served
        .iter()
        .map(|p| (p.clone(), up.hits(p)))
        .filter(|(_, n)| *n != 1)
        .collect();
    if !fetched_more_than_once.is_empty() {
        let mut fallbacks = Vec::new();
        for m in &fleet.members {
            fallbacks.push(peer_metric(m, "fallback").await);
        }
        panic!(
            "artifacts fetched more than once by the fleet: {fetched_more_than_once:?}; peer asks that fell back, by member: {fallbacks:?} (their logs say why; all hits: {:?})",
            up.all_hits()
        );
    }
    let mut hits = 0.0;
    let mut answered = 0;
    for m in &fleet.members {
        hits += peer_metric(m, "hit").await;
        assert_eq!(peer_metric(m, "fallback").await, 0.0, "{}", m.logs());
        let status = m.status().await;
        let peers = &status["peers"];
        assert_eq!(peers["members"].as_array().unwrap().len(), 3, "{status}");
        answered += peers["served"].as_u64().unwrap();
    }
    assert!(
        hits >= 4.0,
        "members got artifacts from their owners: {hits}"
    );
    assert!(answered as f64 >= hits, "served {answered}, asked {hits}");
}

/// An artifact no upstream has: its owner's "not found" is the fleet's answer. Asked of each
/// member in turn, it costs the upstream one request, and every client gets the 404.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_artifact_costs_the_fleet_one_upstream_request() {
    let corpus = corpus();
    let up = Upstream::serve(corpus.root());
    let fleet = Fleet::start(3, &up.url, "");
    let path = "/example.test/util/@v/v1.9.9.info";
    let owner = fleet.owner_of(path);
    let order: Vec<usize> = (0..3).filter(|i| *i != owner).chain([owner]).collect();
    for i in order {
        let r = fleet.members[i].get(path).await;
        let status = r.status();
        assert_eq!(status, 404, "member {i}: {}", r.text().await.unwrap());
    }
    assert_eq!(up.hits(path), 1, "{:?}", up.all_hits());
    let mut not_found = 0.0;
    for m in &fleet.members {
        not_found += peer_metric(m, "not_found").await;
        assert_eq!(peer_metric(m, "fallback").await, 0.0);
    }
    assert_eq!(not_found, 2.0, "each asking member took the owner's 404");
}

/// A zip is fetched slowly by its owner for two other members. Both members' files grow while
/// the owner's upstream transfer is still going (the owner streams while it fetches); then the
/// owner is killed. Both members still answer with the exact zip, fetched directly.
#[tokio::test(flavor = "multi_thread")]
async fn the_owner_killed_mid_transfer_leaves_its_waiters_with_correct_bytes() {
    let corpus = Corpus::new();
    let noise = common::noise(7, 1_500_000);
    corpus.add(
        "example.test/big",
        "v1.0.0",
        Some("module example.test/big\n\ngo 1.21\n"),
        &[("data.go", b"package big\n"), ("blob.bin", &noise)],
    );
    let zip_path = "/example.test/big/@v/v1.0.0.zip";
    let want = sha256(&corpus.read(&zip_path[1..]));
    // About six seconds for the zip: time to look at the transfer in the middle.
    let up = Upstream::builder()
        .dir(corpus.root())
        .rate(256 << 10)
        .start();
    let mut fleet = Fleet::start(3, &up.url, "");
    let owner = fleet.owner_of(zip_path);
    let askers: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
    let gets: Vec<_> = askers
        .iter()
        .map(|&i| {
            let url = format!("{}{zip_path}", fleet.members[i].url);
            tokio::spawn(async move {
                let r = reqwest::get(&url).await.unwrap();
                (r.status(), r.bytes().await.unwrap())
            })
        })
        .collect();
    let growing = |i: usize| {
        let cache = fleet.members[i].cache_dir.clone();
        move || {
            let cache = cache.clone();
            async move {
                tmp_files(&cache)
                    .iter()
                    .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
            }
        }
    };
    wait_for("the owner to write the zip", WAIT, growing(owner)).await;
    for &i in &askers {
        wait_for(
            "an asking member to write the zip streamed by its owner",
            WAIT,
            growing(i),
        )
        .await;
    }
    assert_eq!(up.hits(zip_path), 1, "only the owner fetched so far");
    fleet.members[owner].kill9();
    for get in gets {
        let (status, body) = get.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            sha256(&body),
            want,
            "the member served other bytes than the zip"
        );
    }
    assert_eq!(
        up.hits(zip_path),
        3,
        "each asking member fetched directly once"
    );
    for &i in &askers {
        assert!(peer_metric(&fleet.members[i], "fallback").await >= 1.0);
    }
}

/// The only "member" a proxy knows is a hostile one: first it sends a corrupted zip (refused:
/// the client gets the upstream's), then it refuses the token (the member warns, fetches
/// directly). No client sees an error.
#[tokio::test(flavor = "multi_thread")]
async fn a_lying_or_refusing_peer_is_routed_around() {
    let good = corpus();
    let evil = corpus();
    let zip = "example.test/greet/@v/v1.0.0.zip";
    let mut bytes = evil.read(zip);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(evil.root().join(zip), &bytes).unwrap();
    let up = Upstream::serve(good.root());
    let liar = Upstream::builder().dir(evil.root()).start();
    let dir = tempfile::tempdir().unwrap();
    let liar_addr = liar.addr().to_string();
    let cfg = member_config(dir.path(), &up.url, "127.0.0.1:0", &[liar_addr], "");
    // No --peer-advertise: this member owns nothing and asks the liar for everything.
    let p = Proxy::start(
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap()],
    );
    let r = p.get(&format!("/{zip}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sha256(&r.bytes().await.unwrap()), sha256(&good.read(zip)));
    assert_eq!(up.hits(&format!("/{zip}")), 1);
    assert!(liar.hits(&format!("/{zip}")) >= 1, "the peer was asked");
    assert!(peer_metric(&p, "fallback").await >= 1.0);
    assert!(
        p.logs()
            .contains("SECURITY: an answer from a peer failed verification")
    );
    // The peer sent the member's token with each request.
    assert!(
        liar.authorizations(&format!("/{zip}"))
            .iter()
            .all(|a| a.as_deref() == Some(&format!("Bearer {TOKEN}")[..])),
        "{:?}",
        liar.authorizations(&format!("/{zip}"))
    );

    liar.set_auth(Some(Auth::bearer("another-fleets-token-0123456789abcdef")));
    // Not fetched before (the zip's check fetched greet's .mod).
    let mod_path = "/example.test/util/@v/v1.0.0.mod";
    let r = p.get(mod_path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), good.read(&mod_path[1..]));
    assert!(p.logs().contains("a peer refused this member's token"));
}

/// The peer port answers only requests with the fleet's token, and only for immutable
/// artifacts; the GOPROXY port is unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn the_peer_port_admits_only_the_fleets_token() {
    let corpus = corpus();
    let up = Upstream::serve(corpus.root());
    let fleet = Fleet::start(1, &up.url, "");
    let peer = format!("http://{}", fleet.peers[0]);
    let client = reqwest::Client::new();
    let path = "/example.test/util/@v/v1.1.0.mod";
    for auth in [None, Some("Bearer wrong"), Some("Basic Zm9vOmJhcg==")] {
        let mut req = client.get(format!("{peer}{path}"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(r.text().await.unwrap().contains("peer token"));
    }
    assert_eq!(
        up.total_hits(),
        0,
        "nothing fetched for a refused peer request"
    );
    let with_token = |p: &str| client.get(format!("{peer}{p}")).bearer_auth(TOKEN);
    let r = with_token(path).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), corpus.read(&path[1..]));
    for mutable in ["/example.test/util/@v/list", "/example.test/util/@latest"] {
        let r = with_token(mutable).send().await.unwrap();
        assert_eq!(r.status(), 400, "{mutable}");
    }
    for elsewhere in [
        "/sumdb/sum.evil.example/tile/8/0/000",
        "/sumdb/sum.evil.example/lookup/example.test/util@v1.1.0",
    ] {
        let r = with_token(elsewhere).send().await.unwrap();
        assert_eq!(r.status(), 400, "{elsewhere}");
    }
    let r = with_token("/../etc/passwd").send().await.unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    // The fleet's "not found": said as such, and not counted as served.
    let r = with_token("/example.test/missing/@v/v1.0.0.info")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let status = fleet.members[0].status().await;
    assert_eq!(status["peers"]["advertise"], fleet.peers[0], "{status}");
    assert_eq!(status["peers"]["served"], 1, "only the artifact: {status}");
}

/// Bad peer settings stop the start (exit 2) with the fix in the message.
#[test]
fn bad_peer_settings_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short-token");
    std::fs::write(&short, "tooshort\n").unwrap();
    let good = dir.path().join("token");
    std::fs::write(&good, TOKEN).unwrap();
    let run = |yaml: String| {
        let cfg = config_file(dir.path(), &yaml);
        Command::new(PROXY_BIN)
            .args(["--config", cfg.to_str().unwrap(), "--cache-dir"])
            .arg(dir.path().join("cache"))
            .env_remove("GOPROXY")
            .output()
            .unwrap()
    };
    let up = "upstreams: [{url: http://127.0.0.1:1}]\n";
    for (yaml, says) in [
        (
            format!(
                "{up}peerFill: {{tokenFile: {}, members: [a:1]}}\n",
                short.display()
            ),
            "at least 32",
        ),
        (
            format!("{up}peerFill: {{tokenFile: /nonexistent/t, members: [a:1]}}\n"),
            "cannot read it",
        ),
        (
            format!("{up}peerFill: {{tokenFile: {}}}\n", good.display()),
            "set members",
        ),
        (
            format!(
                "{up}peerFill: {{tokenFile: {}, members: [a:1], endpointSlices: {{service: x}}}}\n",
                good.display()
            ),
            "not both",
        ),
        (
            format!(
                "{up}peerFill: {{tokenFile: {}, members: [\"http://a:1\"]}}\n",
                good.display()
            ),
            "is not HOST:PORT",
        ),
    ] {
        let o = run(yaml.clone());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{yaml}: {stderr}");
        assert!(stderr.contains(says), "{yaml}: {stderr}");
    }
}

/// A compromised member serves a tampered module that is valid on its own (another go.mod and
/// code, a well-formed zip): the checksum database catches it at the asking member, which
/// fetches the real one from its upstream. What a peer sends is checked like an upstream's.
#[tokio::test(flavor = "multi_thread")]
async fn a_compromised_member_cannot_plant_a_module_past_the_checksum_database() {
    use common::sumdb::{RefDb, add_tampered, record};

    const SIGNED: &str = "example.com/signed";
    let (good, evil) = (Corpus::new(), Corpus::new());
    add_tampered(&good, &evil, SIGNED);
    let db = RefDb::start(&[record(&good, SIGNED)], None);
    let up = Upstream::serve(good.root());
    let compromised = Upstream::builder().dir(evil.root()).start();
    let dir = tempfile::tempdir().unwrap();
    let name = db.verifier.split('+').next().unwrap();
    let cfg = member_config(
        dir.path(),
        &up.url,
        "127.0.0.1:0",
        &[compromised.addr().to_string()],
        &format!(
            "sumdbs: [{{name: {name}, key: {}, url: http://{}/}}]\nverifySumdb: true\n",
            db.verifier, db.addr
        ),
    );
    let p = Proxy::start(
        &dir.path().join("cache"),
        &["--config", cfg.to_str().unwrap(), "--verify-sumdb", "on"],
    );
    for ext in ["mod", "zip"] {
        let path = format!("/example.com/signed/@v/v1.0.0.{ext}");
        let r = p.get(&path).await;
        assert_eq!(r.status(), 200, "{ext}: {}", p.logs());
        assert_eq!(r.bytes().await.unwrap(), good.read(&path[1..]), "{ext}");
        assert!(
            compromised.hits(&path) >= 1,
            "{ext}: the member was asked first"
        );
        assert_eq!(up.hits(&path), 1, "{ext}: then the upstream");
    }
    assert!(
        p.metric(r#"modfleet_proxy_checksum_checks_total{outcome="mismatch"}"#)
            .await
            >= 1.0
    );
    assert!(p.logs().contains("SECURITY"));
    assert!(peer_metric(&p, "fallback").await >= 2.0);
}
