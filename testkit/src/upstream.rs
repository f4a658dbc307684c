//! The one fake upstream of modfleet's tests: an HTTP/1.1 server on loopback (or any address,
//! or inside a network namespace) that serves a directory in the GOPROXY layout and scripted
//! answers per path, counts requests, records `traceparent` headers, and misbehaves on demand
//! (slow, cut short, endless, hanging, redirecting, throttling) — the failure modes a real
//! upstream will not produce when asked.
//!
//! It writes raw HTTP on purpose: the misbehaviours are exactly what a well-behaved server
//! library refuses to do. It runs on a runtime and thread of its own, so synchronous and
//! asynchronous tests use it alike and it outlives nothing it should not: dropping it stops it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the upstream answers for a path.
#[derive(Clone)]
pub enum Reply {
    /// A status with a text body.
    Status(u16, &'static str),
    /// 200 with this body.
    Body(Vec<u8>),
    /// 200 whose Content-Length promises more than is sent before the connection closes.
    Truncated(Vec<u8>),
    /// Headers are never sent.
    Hang,
    /// 200 with this body, sent only once the gate is opened.
    Gated(Vec<u8>, tokio::sync::watch::Receiver<bool>),
    /// The first `n` requests for the path get this status, later ones the body.
    FailFirst(u64, u16, Vec<u8>),
    /// 429 with this Retry-After (seconds).
    Throttle(u64),
    /// 200 with headers at once, then this body at about `bytes_per_sec`.
    Paced(Vec<u8>, u64),
    /// This status with a body that never ends (no Content-Length); bytes written are counted
    /// in [`Upstream::written`].
    Endless(u16),
    /// 302 to this location.
    Redirect(String),
}

/// A delay injected before every answer (a slow upstream, as `tc netem` would make one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fault {
    pub delay: Duration,
    /// The delay varies by up to this much either way.
    pub jitter: Duration,
}

/// What the connections share.
#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    dir: Option<PathBuf>,
    /// Bodies served from `dir` go at about this many bytes per second.
    rate: Option<u64>,
    fault: Mutex<Fault>,
    hits: Mutex<HashMap<String, u64>>,
    traceparents: Mutex<HashMap<String, Vec<String>>>,
    written: Mutex<HashMap<String, u64>>,
}

/// How to start an [`Upstream`].
#[derive(Default)]
pub struct Builder {
    state: State,
    bind: Option<SocketAddr>,
    netns: Option<String>,
}

impl Builder {
    /// Answers `path` (e.g. `/example.com/m/@v/list`, or `*` for every path not otherwise
    /// answered) with `reply`.
    pub fn route(mut self, path: &str, reply: Reply) -> Builder {
        self.state.routes.insert(path.to_string(), reply);
        self
    }

    /// Serves the files under `dir` (a GOPROXY layout) for paths without a route.
    pub fn dir(mut self, dir: &Path) -> Builder {
        self.state.dir = Some(dir.to_path_buf());
        self
    }

    /// Sends bodies from the directory at about `bytes_per_sec` (to kill a proxy mid-download).
    pub fn rate(mut self, bytes_per_sec: u64) -> Builder {
        self.state.rate = Some(bytes_per_sec);
        self
    }

    /// Listens on `addr` (default `127.0.0.1:0`).
    pub fn bind(mut self, addr: SocketAddr) -> Builder {
        self.bind = Some(addr);
        self
    }

    /// Listens inside the network namespace `name` (`ip netns add NAME`): its socket belongs to
    /// that namespace, while this process stays where it is.
    pub fn netns(mut self, name: &str) -> Builder {
        self.netns = Some(name.to_string());
        self
    }

    /// Starts serving. Panics when the address cannot be bound.
    pub fn start(self) -> Upstream {
        let addr = self
            .bind
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = match &self.netns {
            Some(ns) => bind_in_netns(ns, addr),
            None => std::net::TcpListener::bind(addr),
        }
        .unwrap_or_else(|e| panic!("fake upstream: cannot bind {addr}: {e}"));
        listener.set_nonblocking(true).expect("non-blocking socket");
        let addr = listener.local_addr().expect("bound address");
        let state = Arc::new(self.state);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-upstream")
            .enable_all()
            .build()
            .expect("fake upstream runtime");
        let serving = state.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(answer(sock, serving.clone()));
            }
        });
        Upstream {
            url: format!("http://{addr}"),
            addr,
            state,
            runtime: Some(runtime),
        }
    }
}

/// Binds `addr` from a thread that has entered the network namespace `name`: the socket stays
/// in that namespace whatever thread then uses it.
fn bind_in_netns(name: &str, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    crate::netns::enter(name, || std::net::TcpListener::bind(addr))?
}

/// A running fake upstream; stopped when dropped.
pub struct Upstream {
    /// `http://ADDR`.
    pub url: String,
    addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Upstream {
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// An upstream with scripted `routes`, serving `dir` for the other paths when given
    /// (else the route for `*`, else 404).
    pub fn start(routes: Vec<(&str, Reply)>, dir: Option<PathBuf>) -> Upstream {
        let mut b = Builder::default();
        for (path, reply) in routes {
            b = b.route(path, reply);
        }
        if let Some(dir) = dir {
            b = b.dir(&dir);
        }
        b.start()
    }

    /// An upstream serving the GOPROXY-layout directory `dir`.
    pub fn serve(dir: &Path) -> Upstream {
        Builder::default().dir(dir).start()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Delays every answer from now on (a slow upstream); `Fault::default()` ends it.
    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
    }

    /// Requests seen for `path`.
    pub fn hits(&self, path: &str) -> u64 {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn all_hits(&self) -> HashMap<String, u64> {
        self.state.hits.lock().unwrap().clone()
    }

    /// Requests for anything but `/`, which is what health probes ask for.
    pub fn total_hits(&self) -> u64 {
        self.state
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _)| path.as_str() != "/")
            .map(|(_, n)| n)
            .sum()
    }

    /// The `traceparent` headers of the requests for `path`, in arrival order.
    pub fn traceparents(&self, path: &str) -> Vec<String> {
        self.state
            .traceparents
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Body bytes an `Endless` reply wrote for `path` before the client hung up (None while
    /// the connection is still open).
    pub fn written(&self, path: &str) -> Option<u64> {
        self.state.written.lock().unwrap().get(path).copied()
    }
}

/// Answers one connection (one request; the connection is closed after it).
async fn answer(mut sock: tokio::net::TcpStream, state: Arc<State>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 << 10 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    if let Some(tp) = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("traceparent")
            .then(|| value.trim().to_string())
    }) {
        state
            .traceparents
            .lock()
            .unwrap()
            .entry(path.clone())
            .or_default()
            .push(tp);
    }
    let seen = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let fault = *state.fault.lock().unwrap();
    if !fault.delay.is_zero() {
        let jitter = fault.jitter.as_secs_f64() * (2.0 * fastrand_f64() - 1.0);
        let delay = (fault.delay.as_secs_f64() + jitter).max(0.0);
        tokio::time::sleep(Duration::from_secs_f64(delay)).await;
    }
    let (reply, from_dir) = match state.routes.get(&path).cloned() {
        Some(r) => (Some(r), false),
        None => match state.dir.as_ref().and_then(|d| read_under(d, &path)) {
            Some(body) => (Some(Reply::Body(body)), true),
            None => (state.routes.get("*").cloned(), false),
        },
    };
    let reply = reply.unwrap_or(Reply::Status(404, "not found: scripted"));
    let reply = match (reply, state.rate) {
        (Reply::Body(body), Some(rate)) if from_dir => Reply::Paced(body, rate),
        (reply, _) => reply,
    };
    write_reply(&mut sock, reply, seen, &path, &state).await;
    let _ = sock.shutdown().await;
}

/// The file at `path` (decoded) under `dir`, never outside it.
fn read_under(dir: &Path, path: &str) -> Option<Vec<u8>> {
    let rel = percent_decode(path.trim_start_matches('/'))?;
    if rel.split('/').any(|e| e == ".." || e == ".") || rel.contains('\0') {
        return None;
    }
    let file = dir.join(rel);
    file.is_file().then(|| std::fs::read(file).ok())?
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A number in [0, 1) without a dependency: the jitter need not be good randomness.
fn fastrand_f64() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64,
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

async fn write_reply(
    sock: &mut tokio::net::TcpStream,
    reply: Reply,
    seen: u64,
    path: &str,
    state: &State,
) {
    let head = |status: u16, len: usize| {
        format!("HTTP/1.1 {status} X\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n")
    };
    match reply {
        Reply::Status(code, text) => {
            let body = format!("{text}\n");
            let _ = sock.write_all(head(code, body.len()).as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        }
        Reply::Body(body) => {
            let _ = sock.write_all(head(200, body.len()).as_bytes()).await;
            let _ = sock.write_all(&body).await;
        }
        Reply::Truncated(body) => {
            let _ = sock.write_all(head(200, body.len() * 2).as_bytes()).await;
            let _ = sock.write_all(&body).await;
        }
        Reply::Hang => std::future::pending::<()>().await,
        Reply::Gated(body, mut gate) => {
            let _ = gate.wait_for(|open| *open).await;
            let _ = sock.write_all(head(200, body.len()).as_bytes()).await;
            let _ = sock.write_all(&body).await;
        }
        Reply::FailFirst(n, code, body) => {
            let (code, body) = if seen <= n {
                (code, b"scripted failure\n".to_vec())
            } else {
                (200, body)
            };
            let _ = sock.write_all(head(code, body.len()).as_bytes()).await;
            let _ = sock.write_all(&body).await;
        }
        Reply::Throttle(secs) => {
            let text = format!(
                "HTTP/1.1 429 X\r\nretry-after: {secs}\r\ncontent-length: 5\r\nconnection: close\r\n\r\nslow\n"
            );
            let _ = sock.write_all(text.as_bytes()).await;
        }
        Reply::Paced(body, rate) => {
            let _ = sock.write_all(head(200, body.len()).as_bytes()).await;
            // Ten pieces a second (at least a byte each), paced by the clock.
            let piece = (rate as usize / 10).max(1);
            let every = Duration::from_secs_f64(piece as f64 / rate as f64);
            let mut tick = tokio::time::interval(every);
            for part in body.chunks(piece) {
                tick.tick().await;
                if sock.write_all(part).await.is_err() {
                    break;
                }
            }
        }
        Reply::Endless(code) => {
            let text = format!(
                "HTTP/1.1 {code} X\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n"
            );
            let _ = sock.write_all(text.as_bytes()).await;
            let block = vec![b'<'; 64 << 10];
            let mut total = 0u64;
            while sock.write_all(&block).await.is_ok() {
                total += block.len() as u64;
            }
            *state
                .written
                .lock()
                .unwrap()
                .entry(path.to_string())
                .or_default() += total;
        }
        Reply::Redirect(location) => {
            let text = format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = sock.write_all(text.as_bytes()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(up: &Upstream, path: &str) -> (u16, Vec<u8>) {
        let mut conn = std::net::TcpStream::connect(up.addr()).unwrap();
        write!(conn, "GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut out = Vec::new();
        conn.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        (status, out[at..].to_vec())
    }

    #[test]
    fn routes_then_the_directory_then_star_then_404() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("m/@v")).unwrap();
        std::fs::write(dir.path().join("m/@v/list"), "v1.0.0\n").unwrap();
        let up = Upstream::builder()
            .route("/scripted", Reply::Status(503, "busy"))
            .dir(dir.path())
            .start();
        assert_eq!(get(&up, "/scripted"), (503, b"busy\n".to_vec()));
        assert_eq!(get(&up, "/m/@v/list"), (200, b"v1.0.0\n".to_vec()));
        assert_eq!(get(&up, "/m/@v/../../etc/passwd").0, 404);
        assert_eq!(get(&up, "/missing").0, 404);
        assert_eq!(up.hits("/m/@v/list"), 1);
        let star = Upstream::start(vec![("*", Reply::Body(b"any".to_vec()))], None);
        assert_eq!(get(&star, "/whatever"), (200, b"any".to_vec()));
    }

    #[test]
    fn a_fault_delays_every_answer_until_lifted() {
        let up = Upstream::start(vec![("*", Reply::Body(Vec::new()))], None);
        up.set_fault(Fault {
            delay: Duration::from_millis(300),
            jitter: Duration::ZERO,
        });
        let started = std::time::Instant::now();
        get(&up, "/a");
        assert!(started.elapsed() >= Duration::from_millis(300));
        up.set_fault(Fault::default());
        assert_eq!(get(&up, "/b").0, 200);
    }
}
