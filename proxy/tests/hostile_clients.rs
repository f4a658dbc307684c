//! Hostile clients as real connections on loopback against the real proxy binary: slowloris
//! headers, floods of idle connections, clients that never read. Each test fails on a proxy
//! without the listener's limits (issue 12, items 9 and 10) and passes with them.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{
    Corpus, Proxy, Upstream, escape, metric_value, noise, raise_open_file_limit, wait_committed,
    wait_for,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const MODULE: &str = "example.com/hostile";
const VERSION: &str = "v1.0.0";

fn mod_path() -> String {
    format!("/{}/@v/{VERSION}.mod", escape(MODULE))
}

fn zip_path() -> String {
    format!("/{}/@v/{VERSION}.zip", escape(MODULE))
}

/// A module whose zip holds `big` bytes of incompressible data (stored).
fn corpus(big: usize) -> Corpus {
    let corpus = Corpus::new();
    let data = noise(12, big);
    corpus.add(
        MODULE,
        VERSION,
        Some("module example.com/hostile\n"),
        &[("a.go", b"package hostile\n"), ("blob.bin", &data)],
    );
    corpus
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

/// A connection from `local` (any 127.0.0.0/8 address works on Linux's loopback).
async fn connect_from(local: &str, to: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    socket.connect(to).await.unwrap()
}

async fn metrics_text(proxy: &Proxy) -> String {
    reqwest::get(format!("{}/metrics", proxy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// GETs a cached file as a real client would, within `within`; panics if it does not finish.
async fn real_client_gets(proxy: &Proxy, path: &str, within: Duration) -> Vec<u8> {
    let client = reqwest::Client::builder()
        .local_address(Some("127.0.0.1".parse().unwrap()))
        .build()
        .unwrap();
    let fetch = async {
        let response = client
            .get(format!("{}{path}", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.bytes().await.unwrap().to_vec()
    };
    tokio::time::timeout(within, fetch)
        .await
        .unwrap_or_else(|_| panic!("a real client's GET {path} did not finish within {within:?}"))
}

/// Sends a request head one byte every 500 ms, forever; returns how long the proxy let it.
async fn drip_headers(to: SocketAddr) -> Duration {
    let started = Instant::now();
    let stream = TcpStream::connect(to).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = b"GET /example.com/hostile/@v/list HTTP/1.1\r\nHost: proxy\r\nX-Drip: ";
    let writer = async {
        for byte in head.iter().chain(std::iter::repeat(&b'a')) {
            if write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let reader = async {
        let mut buf = [0u8; 256];
        // No answer is due: the head never ends. EOF or a reset is the proxy closing.
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = writer => {}
        () = reader => {}
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dripping_headers_are_closed_by_the_header_timeout() {
    raise_open_file_limit();
    let corpus = corpus(1000);
    let origin = Upstream::serve(corpus.root());
    let cache = tempfile::tempdir().unwrap();
    // The default header timeout (10s).
    let proxy = Proxy::start(cache.path(), &["--upstream", &origin.url]);
    let to = addr_of(&proxy.url);
    let drips: Vec<_> = (0..300).map(|_| tokio::spawn(drip_headers(to))).collect();
    let all = async {
        let mut lasted = Vec::new();
        for d in drips {
            lasted.push(d.await.unwrap());
        }
        lasted
    };
    let lasted = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("connections dripping header bytes are still open after 60s");
    let shortest = lasted.iter().min().unwrap();
    assert!(
        *shortest >= Duration::from_secs(9),
        "closed after {shortest:?}: before the 10s header timeout"
    );
    let text = metrics_text(&proxy).await;
    assert!(
        metric_value(
            &text,
            r#"modfleet_proxy_connections_closed_total{listener="goproxy",reason="header_timeout"}"#
        ) >= 300.0,
        "{text}"
    );
    real_client_gets(&proxy, &mod_path(), Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_locks_no_real_client_out() {
    raise_open_file_limit();
    let corpus = corpus(1000);
    let origin = Upstream::serve(corpus.root());
    let cache = tempfile::tempdir().unwrap();
    // Started with a soft open-file limit of 1024 (a common default): 1,100 connections are
    // more than it allows, so the proxy must raise it and stay under its own cap. The cap is
    // low to keep the test cheap; long timeouts so that only the cap is at work.
    let proxy = Proxy::start_in(
        &["sh", "-c", r#"ulimit -Sn 1024 && exec "$@""#, "sh"],
        "127.0.0.1",
        cache.path(),
        &[
            "--upstream",
            &origin.url,
            "--max-connections",
            "256",
            "--header-read-timeout",
            "5m",
            "--idle-timeout",
            "5m",
        ],
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", proxy.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = open_files.split_whitespace().collect();
    assert_eq!(
        fields[3], fields[4],
        "the soft open-file limit is raised to the hard one: {open_files}"
    );
    real_client_gets(&proxy, &mod_path(), Duration::from_secs(30)).await;
    let to = addr_of(&proxy.url);
    let handled = |text: &str| {
        metric_value(
            text,
            r#"modfleet_proxy_connections_accepted_total{listener="goproxy"}"#,
        ) + metric_value(
            text,
            r#"modfleet_proxy_connections_refused_total{listener="goproxy"}"#,
        )
    };
    let before = handled(&metrics_text(&proxy).await);

    // 1,100 connections that send nothing, from one address, then from twenty. A proxy out of
    // descriptors stops accepting: its backlog fills and connecting hangs.
    let connect_all = async {
        let mut flood = Vec::new();
        for _ in 0..1100 {
            flood.push(connect_from("127.0.0.2", to, None).await);
        }
        for i in 0..1100 {
            let local = format!("127.0.0.{}", 3 + i % 20);
            flood.push(connect_from(&local, to, None).await);
        }
        flood
    };
    let flood = tokio::time::timeout(Duration::from_secs(60), connect_all)
        .await
        .expect("the proxy stopped taking connections during the flood");
    wait_for(
        "the proxy to have taken every flood connection",
        Duration::from_secs(60),
        || async { handled(&metrics_text(&proxy).await) >= before + 2200.0 },
    )
    .await;

    // A real client from another address still gets its answer, and so do the probes.
    let body = real_client_gets(&proxy, &mod_path(), Duration::from_secs(30)).await;
    assert_eq!(body, corpus.read(&mod_path()[1..]));
    let health = reqwest::get(format!("{}/healthz", proxy.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let text = metrics_text(&proxy).await;
    let open = metric_value(
        &text,
        r#"modfleet_proxy_connections_open{listener="goproxy"}"#,
    );
    assert!(
        open <= 256.0,
        "{open} connections open, over the cap of 256"
    );
    assert!(
        metric_value(
            &text,
            r#"modfleet_proxy_connections_closed_total{listener="goproxy",reason="evicted"}"#
        ) > 0.0,
        "{text}"
    );
    assert!(
        metric_value(
            &text,
            r#"modfleet_proxy_connections_refused_total{listener="goproxy",reason="per_ip"}"#
        ) + metric_value(
            &text,
            r#"modfleet_proxy_connections_closed_total{listener="goproxy",reason="evicted"}"#
        ) >= 1100.0 - 64.0,
        "one address holds at most its quarter of the slots: {text}"
    );
    let fds = proxy.open_fds();
    assert!(
        fds < 256 * 2 + 100,
        "{fds} descriptors open: the cap does not bound them"
    );
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_do_not_starve_cached_requests() {
    raise_open_file_limit();
    // A zip larger than what the kernel and hyper buffer for a client that does not read.
    let corpus = corpus(12 << 20);
    let origin = Upstream::serve(corpus.root());
    let cache = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(cache.path(), &["--upstream", &origin.url]);
    let zip = real_client_gets(&proxy, &zip_path(), Duration::from_secs(60)).await;
    assert_eq!(zip, corpus.read(&zip_path()[1..]));
    real_client_gets(&proxy, &mod_path(), Duration::from_secs(30)).await;
    // Committed just after the answers: every request below is a hit.
    for path in [zip_path(), mod_path()] {
        wait_committed(&cache.path().join("download").join(&path[1..])).await;
    }
    let hits = |text: &str| {
        metric_value(
            text,
            r#"modfleet_proxy_requests_total{route="zip",status="200",cache="hit"}"#,
        )
    };
    let before = hits(&metrics_text(&proxy).await);

    // More slow readers than tokio's blocking pool has threads (512).
    const SLOW: usize = 600;
    let to = addr_of(&proxy.url);
    let request = format!("GET {} HTTP/1.1\r\nHost: proxy\r\n\r\n", zip_path());
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        // A small receive buffer keeps the kernel's share of each stalled download small.
        let mut stream = connect_from("127.0.0.1", to, Some(4096)).await;
        stream.write_all(request.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    // Until every slow reader has its answer (a proxy whose lookups starve never gets there:
    // then the .mod below shows it).
    let deadline = Instant::now() + Duration::from_secs(60);
    while hits(&metrics_text(&proxy).await) < before + SLOW as f64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let body = real_client_gets(&proxy, &mod_path(), Duration::from_secs(30)).await;
    assert_eq!(body, corpus.read(&mod_path()[1..]));
    let answered = hits(&metrics_text(&proxy).await) - before;
    assert!(
        answered >= SLOW as f64,
        "only {answered} of {SLOW} slow readers were answered"
    );
    let health = reqwest::get(format!("{}/healthz", proxy.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let text = metrics_text(&proxy).await;
    let open = metric_value(
        &text,
        r#"modfleet_proxy_connections_open{listener="goproxy"}"#,
    );
    assert!(
        open >= SLOW as f64,
        "the slow readers are still connected (served, not dropped): {open}"
    );
    drop(slow);
}

/// Large hits get a deeper kernel send queue, at most 16 at once (`listener::send_queue`):
/// more large downloads than that at once all arrive whole, and each connection, back to the
/// normal queue after its body, serves the next request it carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_large_downloads_at_once_arrive_whole_and_keep_their_connections() {
    let corpus = corpus(6 << 20);
    let origin = Upstream::serve(corpus.root());
    let cache = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(cache.path(), &["--upstream", &origin.url]);
    let zip = real_client_gets(&proxy, &zip_path(), Duration::from_secs(60)).await;
    assert_eq!(zip, corpus.read(&zip_path()[1..]));
    let go_mod = corpus.read(&mod_path()[1..]);
    wait_committed(&cache.path().join("download").join(&zip_path()[1..])).await;
    let accepted = |text: &str| {
        metric_value(
            text,
            r#"modfleet_proxy_connections_accepted_total{listener="goproxy"}"#,
        )
    };
    let before = accepted(&metrics_text(&proxy).await);

    const CLIENTS: usize = 40;
    let client = reqwest::Client::builder().http1_only().build().unwrap();
    let downloads = (0..CLIENTS).map(|_| {
        let (client, url) = (client.clone(), proxy.url.clone());
        let (zip, go_mod) = (&zip, &go_mod);
        async move {
            for (path, want) in [(zip_path(), zip), (mod_path(), go_mod), (zip_path(), zip)] {
                let response = client.get(format!("{url}{path}")).send().await.unwrap();
                assert_eq!(response.status(), 200, "{path}");
                let got = response.bytes().await.unwrap();
                assert!(got.as_ref() == want.as_slice(), "{path}: wrong bytes");
            }
        }
    });
    tokio::time::timeout(
        Duration::from_secs(120),
        futures::future::join_all(downloads),
    )
    .await
    .expect("the downloads finish");
    // Three requests per client: 120 connections if none were kept. A pooled client may open a
    // few more than one each (a connection is back in its pool a moment after the body ends).
    let opened = accepted(&metrics_text(&proxy).await) - before;
    assert!(
        opened < (CLIENTS + CLIENTS / 2) as f64,
        "{opened} connections for {CLIENTS} clients: connections were not kept for the next request"
    );
}
