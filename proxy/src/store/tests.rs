//! The store tier's pure parts, and its failure modes against in-process fake servers (a
//! closed port, a server that never answers, one that answers 503): the real S3 server's
//! tests are proxy/tests/object_store.rs.

use super::*;
use crate::protocol::Request;

fn key(path: &str) -> CacheKey {
    CacheKey::of(&Request::parse(path).unwrap())
}

#[test]
fn keys_are_the_cache_layout_under_the_prefix() {
    assert_eq!(
        object_path("fleet", &key("/github.com/!burnt!sushi/toml/@v/v1.3.2.zip")).as_ref(),
        "fleet/v1/github.com/!burnt!sushi/toml/@v/v1.3.2.zip"
    );
    assert_eq!(
        object_path("", &key("/sumdb/sum.golang.org/tile/8/0/x001/234")).as_ref(),
        "v1/sumdb/sum.golang.org/tile/8/0/x001/234"
    );
    assert_eq!(
        object_path("a/b", &key("/example.com/m/@v/v2.0.0+incompatible.mod")).as_ref(),
        "a/b/v1/example.com/m/@v/v2.0.0+incompatible.mod"
    );
}

async fn collect(chunks: Vec<&'static [u8]>, size: u64) -> Result<Vec<u8>, String> {
    let inner =
        futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))).boxed();
    let mut out = Vec::new();
    let mut s = std::pin::pin!(exact_length(inner, size));
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[tokio::test]
async fn a_body_must_be_exactly_the_objects_size() {
    assert_eq!(collect(vec![b"ab", b"c"], 3).await.unwrap(), b"abc");
    let short = collect(vec![b"ab"], 3).await.unwrap_err();
    assert!(short.contains("ended after 2 of its 3 bytes"), "{short}");
    let long = collect(vec![b"ab", b"cd"], 3).await.unwrap_err();
    assert!(long.contains("longer than its 3 bytes"), "{long}");
}

use std::time::Duration;

use modfleet_contract::config::{ObjectStoreConfig, ObjectStoreCredentialsConfig};
use modfleet_contract::status::BreakerState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A store at `endpoint` with keys in files (so the library never looks for ambient
/// credentials), a short timeout and a breaker that opens after two failures.
fn store_at(endpoint: &str, dir: &std::path::Path) -> Arc<Store> {
    let (id, secret) = (dir.join("id"), dir.join("secret"));
    std::fs::write(&id, "id").unwrap();
    std::fs::write(&secret, "secret").unwrap();
    let config = ObjectStoreConfig {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        allow_http: true,
        timeout: "300ms".parse().unwrap(),
        credentials: Some(ObjectStoreCredentialsConfig {
            access_key_id_file: Some(id),
            secret_access_key_file: Some(secret),
            ..ObjectStoreCredentialsConfig::default()
        }),
        ..ObjectStoreConfig::new("s3://bucket/prefix")
    };
    let breaker = BreakerSettings {
        failures: 2,
        open_for: Duration::from_secs(60),
    };
    Store::start(
        &config,
        breaker,
        Duration::from_secs(5),
        StoreMetrics::default(),
    )
    .unwrap()
}

fn mod_path(store: &Store) -> ObjectPath {
    let req = Request::parse("/example.com/m/@v/v1.0.0.mod").unwrap();
    store.path_of(&req, &CacheKey::of(&req)).unwrap()
}

/// A server that answers every request with `response` (None: accepts and never answers).
async fn fake_server(response: Option<&'static str>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            match response {
                None => held.push(conn),
                Some(text) => {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 << 10];
                        while let Ok(n) = conn.read(&mut buf).await {
                            if n == 0 || conn.write_all(text.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn only_immutable_artifacts_have_a_place_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_at("http://127.0.0.1:9", dir.path());
    for path in [
        "/example.com/m/@v/list",
        "/example.com/m/@latest",
        "/example.com/m/@v/master.info",
        "/sumdb/sum.golang.org/latest",
        "/sumdb/sum.golang.org/lookup/example.com/m@v1.0.0",
        "/sumdb/sum.golang.org/tile/8/0/000.p/5",
    ] {
        let req = Request::parse(path).unwrap();
        assert!(store.path_of(&req, &CacheKey::of(&req)).is_none(), "{path}");
    }
    for path in [
        "/example.com/m/@v/v1.0.0.info",
        "/example.com/m/@v/v1.0.0.mod",
        "/example.com/m/@v/v1.0.0.zip",
        "/sumdb/sum.golang.org/tile/8/0/000",
    ] {
        let req = Request::parse(path).unwrap();
        assert!(store.path_of(&req, &CacheKey::of(&req)).is_some(), "{path}");
    }
}

/// Connection refused: each read is a miss to the caller, counted as an error; after two the
/// breaker opens and the store is not asked at all.
#[tokio::test]
async fn a_dead_store_opens_the_breaker_and_is_then_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = store_at(&format!("http://127.0.0.1:{port}"), dir.path());
    let path = mod_path(&store);
    for _ in 0..3 {
        assert!(store.read(&path, 1 << 20).await.is_none());
    }
    let status = store.status();
    assert_eq!(status.breaker, BreakerState::Open);
    assert!(!status.healthy);
    assert_eq!(status.reads.error, 3, "two failures and one skipped");
    assert_eq!(
        store
            .metrics
            .reads
            .get_or_create(&StoreResultLabel { result: "skipped" })
            .get(),
        1
    );
    assert_eq!(store.metrics.breaker_state.get(), 2);
    let message = status.last_error.unwrap().message;
    assert!(
        message.contains("prefix/v1/example.com/m/@v/v1.0.0.mod"),
        "{message}"
    );
}

/// A store that accepts and never answers costs one timeout per call, never more.
#[tokio::test]
async fn a_store_that_never_answers_costs_one_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_at(&fake_server(None).await, dir.path());
    let path = mod_path(&store);
    let started = std::time::Instant::now();
    assert!(store.read(&path, 1 << 20).await.is_none());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let status = store.status();
    assert_eq!(status.reads.error, 1);
    let message = status.last_error.unwrap().message;
    assert!(message.contains("no answer within 300ms"), "{message}");
}

/// 5xx is an error (it counts against the breaker), not a miss.
#[tokio::test]
async fn a_5xx_is_an_error_not_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let server = fake_server(Some(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
    ))
    .await;
    let store = store_at(&server, dir.path());
    assert!(store.read(&mod_path(&store), 1 << 20).await.is_none());
    let status = store.status();
    assert_eq!((status.reads.error, status.reads.miss), (1, 0));
    assert_eq!(status.consecutive_failures, 1);
}

/// An object larger than the artifact's limit is refused before its body is read.
#[tokio::test]
async fn an_object_over_the_limit_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let server = fake_server(Some(
        "HTTP/1.1 200 OK\r\ncontent-length: 2048\r\nlast-modified: Mon, 30 Nov 2026 12:00:00 GMT\r\n\r\n",
    ))
    .await;
    let store = store_at(&server, dir.path());
    assert!(store.read(&mod_path(&store), 1024).await.is_none());
    assert_eq!(store.status().reads.invalid, 1);
}

/// A body that stops coming fails under the same idle timeout as an upstream's: an error (the
/// upstreams are then asked), never a wait without end.
#[tokio::test]
async fn a_stalled_body_times_out_and_counts_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = fake_server(Some(
        "HTTP/1.1 200 OK\r\ncontent-length: 100\r\nlast-modified: Mon, 30 Nov 2026 12:00:00 GMT\r\n\r\nmodule m",
    ))
    .await;
    let store = store_at(&server, dir.path());
    let path = mod_path(&store);
    let response = store.read(&path, 1 << 20).await.expect("headers came");
    let started = std::time::Instant::now();
    let e = response.bytes_limited(1 << 20).await.unwrap_err();
    assert!(matches!(e, AttemptError::Timeout(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    store.rejected(&path, &e);
    let status = store.status();
    assert_eq!((status.reads.error, status.reads.invalid), (1, 0));
}

/// Writes never wait: past the queue's bounds they are dropped and counted. (The writers
/// cannot run before this test yields: the runtime has one thread.)
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_writes_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_at("http://127.0.0.1:9", dir.path());
    let path = mod_path(&store);
    for _ in 0..QUEUE_LIMIT + 3 {
        store.write(
            path.clone(),
            Payload::Bytes(Bytes::from_static(b"module m\n")),
        );
    }
    let status = store.status();
    assert_eq!(status.writes.dropped, 3);
    assert_eq!(status.queue_depth, QUEUE_LIMIT as u64);
    assert_eq!(store.metrics.queue_depth.get(), QUEUE_LIMIT as i64);

    let store = store_at("http://127.0.0.1:9", dir.path());
    let big = Bytes::from(vec![0u8; (QUEUE_BYTES_LIMIT / 2 + 1) as usize]);
    store.write(path.clone(), Payload::Bytes(big.clone()));
    store.write(path, Payload::Bytes(big));
    assert_eq!(store.status().writes.dropped, 1, "the bytes bound");

    let store = store_at("http://127.0.0.1:9", dir.path());
    let zip = ServedFile {
        file: Arc::new(crate::cache::HeldFile::new(tempfile::tempfile().unwrap())),
        len: 0,
        etag: String::new(),
        cached: true,
    };
    for _ in 0..QUEUE_FILES_LIMIT + 1 {
        store.write(path_of_zip(&store), Payload::File(zip.clone()));
    }
    assert_eq!(store.status().writes.dropped, 1, "the open-files bound");
}

fn path_of_zip(store: &Store) -> ObjectPath {
    let req = Request::parse("/example.com/m/@v/v1.0.0.zip").unwrap();
    store.path_of(&req, &CacheKey::of(&req)).unwrap()
}
