//! The one fake upstream of modfleet's tests: an HTTP/1.1 server on loopback (or any address,
//! or inside a network namespace) that serves a directory in the GOPROXY layout and scripted
//! answers per path, counts requests, records `traceparent` and `Authorization` headers, and
//! misbehaves on demand (slow, cut short, endless, hanging, redirecting, throttling) — the
//! failure modes a real upstream will not produce when asked. It can require HTTP Basic or
//! Bearer credentials (401 with `WWW-Authenticate`, as real servers answer), changed while it
//! runs, and serve HTTPS with a [`TestCa`] certificate (plain HTTP still answered on the same
//! port, for redirects that change only the scheme).
//!
//! It writes raw HTTP on purpose: the misbehaviours are exactly what a well-behaved server
//! library refuses to do. It runs on a runtime and thread of its own, so synchronous and
//! asynchronous tests use it alike and it outlives nothing it should not: dropping it stops it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::tls::TestCa;

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

/// The credentials the upstream takes: any request (but to an open path) without one of the
/// accepted `Authorization` values gets 401 with a `WWW-Authenticate` challenge, and a body
/// that echoes what it got (as careless servers do: what a proxy passes on must not hold it).
#[derive(Debug, Clone)]
pub struct Auth {
    accepted: Vec<String>,
    challenge: String,
    open: Vec<String>,
}

impl Auth {
    /// HTTP Basic with this user and password.
    pub fn basic(user: &str, password: &str) -> Auth {
        Auth {
            accepted: vec![basic_header(user, password)],
            challenge: "Basic realm=\"modfleet test upstream\"".into(),
            open: Vec::new(),
        }
    }

    /// `Authorization: Bearer TOKEN`.
    pub fn bearer(token: &str) -> Auth {
        Auth {
            accepted: vec![format!("Bearer {token}")],
            challenge: "Bearer realm=\"modfleet test upstream\"".into(),
            open: Vec::new(),
        }
    }

    /// Takes `other`'s credentials too (a rotation's overlap).
    pub fn or(mut self, other: Auth) -> Auth {
        self.accepted.extend(other.accepted);
        self
    }

    /// Answers `path` without credentials (storage a redirect points to).
    pub fn open(mut self, path: &str) -> Auth {
        self.open.push(path.to_string());
        self
    }
}

/// The `Authorization` value of HTTP Basic for `user` and `password`.
pub fn basic_header(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
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
    auth: Mutex<Option<Auth>>,
    /// Each request's `Authorization` (None: it had none), by path.
    authorizations: Mutex<HashMap<String, Vec<Option<String>>>>,
}

/// How to start an [`Upstream`].
#[derive(Default)]
pub struct Builder {
    state: State,
    bind: Option<SocketAddr>,
    netns: Option<String>,
    tls: Option<Arc<rustls::ServerConfig>>,
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

    /// Requires these credentials (see [`Auth`]; [`Upstream::set_auth`] changes them).
    pub fn auth(self, auth: Auth) -> Builder {
        *self.state.auth.lock().unwrap() = Some(auth);
        self
    }

    /// Serves HTTPS with `ca`'s server certificate; a connection that does not start a TLS
    /// handshake is answered in plain HTTP.
    pub fn tls(mut self, ca: &TestCa) -> Builder {
        self.tls = Some(ca.server_config());
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
        let tls = self.tls.map(tokio_rustls::TlsAcceptor::from);
        let scheme = if tls.is_some() { "https" } else { "http" };
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (tls, state) = (tls.clone(), serving.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) if starts_tls(&sock).await => {
                            if let Ok(sock) = acceptor.accept(sock).await {
                                answer(sock, state).await;
                            }
                        }
                        _ => answer(sock, state).await,
                    }
                });
            }
        });
        Upstream {
            url: format!("{scheme}://{addr}"),
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

/// Whether a connection opens with a TLS handshake record.
async fn starts_tls(sock: &tokio::net::TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(sock.peek(&mut first).await, Ok(1) if first[0] == 0x16)
}

/// A running fake upstream; stopped when dropped.
pub struct Upstream {
    /// `http://ADDR`, or `https://ADDR` when it serves TLS.
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

    /// `http://ADDR`, also for an upstream serving TLS (it answers plain HTTP too).
    pub fn plain_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Changes the credentials required from now on (None: none).
    pub fn set_auth(&self, auth: Option<Auth>) {
        *self.state.auth.lock().unwrap() = auth;
    }

    /// The `Authorization` header of each request for `path`, in arrival order (None: the
    /// request had none).
    pub fn authorizations(&self, path: &str) -> Vec<Option<String>> {
        self.state
            .authorizations
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Every path's `Authorization` headers.
    pub fn all_authorizations(&self) -> HashMap<String, Vec<Option<String>>> {
        self.state.authorizations.lock().unwrap().clone()
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

/// The value of the header `name` in a request head.
fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, value) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// Answers one connection (one request; the connection is closed after it).
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut sock: S, state: Arc<State>) {
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
    if let Some(tp) = header(&head, "traceparent") {
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
    let authorization = header(&head, "authorization");
    state
        .authorizations
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default()
        .push(authorization.clone());
    let auth = state.auth.lock().unwrap().clone();
    if let Some(auth) = auth
        && !auth.open.contains(&path)
        && !authorization
            .as_ref()
            .is_some_and(|a| auth.accepted.contains(a))
    {
        let body = format!(
            "unauthorized: {}\n",
            authorization.as_deref().unwrap_or("no credentials")
        );
        let text = format!(
            "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            auth.challenge,
            body.len()
        );
        let _ = sock.write_all(text.as_bytes()).await;
        let _ = sock.shutdown().await;
        return;
    }
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

async fn write_reply<S: AsyncWrite + Unpin>(
    sock: &mut S,
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

    fn get_with(up: &Upstream, path: &str, authorization: Option<&str>) -> (u16, String) {
        let mut conn = std::net::TcpStream::connect(up.addr()).unwrap();
        let extra = authorization.map_or(String::new(), |a| format!("authorization: {a}\r\n"));
        write!(conn, "GET {path} HTTP/1.1\r\nhost: x\r\n{extra}\r\n").unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, out)
    }

    #[test]
    fn auth_is_required_recorded_and_changed_while_running() {
        let up = Upstream::builder()
            .route("*", Reply::Body(b"ok".to_vec()))
            .auth(Auth::basic("ci", "pw").open("/storage"))
            .start();
        let (status, text) = get_with(&up, "/a", None);
        assert_eq!(status, 401);
        assert!(
            text.contains("www-authenticate: Basic realm=") && text.contains("no credentials"),
            "{text}"
        );
        let good = basic_header("ci", "pw");
        assert_eq!(good, "Basic Y2k6cHc=");
        assert_eq!(get_with(&up, "/a", Some(&good)).0, 200);
        let (status, text) = get_with(&up, "/a", Some("Bearer nope"));
        assert_eq!(status, 401);
        assert!(text.contains("unauthorized: Bearer nope"), "{text}");
        assert_eq!(get_with(&up, "/storage", None).0, 200);
        assert_eq!(
            up.authorizations("/a"),
            [None, Some(good.clone()), Some("Bearer nope".into())]
        );
        up.set_auth(Some(Auth::bearer("t1").or(Auth::bearer("t2"))));
        assert_eq!(get_with(&up, "/b", Some("Bearer t2")).0, 200);
        assert_eq!(get_with(&up, "/b", Some(&good)).0, 401);
        up.set_auth(None);
        assert_eq!(get_with(&up, "/b", None).0, 200);
    }

    #[test]
    fn https_with_the_test_ca_and_plain_http_on_the_same_port() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca = TestCa::new();
        let up = Upstream::builder()
            .route("*", Reply::Body(b"secure".to_vec()))
            .tls(&ca)
            .start();
        assert!(up.url.starts_with("https://127.0.0.1:"), "{}", up.url);
        let pem = std::fs::read(ca.ca_pem()).unwrap();
        let client = reqwest::blocking::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .build()
            .unwrap();
        let body = client.get(format!("{}/x", up.url)).send().unwrap();
        assert_eq!(body.text().unwrap(), "secure");
        // Another CA's clients refuse it.
        let untrusted = reqwest::blocking::Client::new()
            .get(format!("{}/x", up.url))
            .send();
        assert!(untrusted.is_err());
        assert_eq!(get(&up, "/plain"), (200, b"secure".to_vec()));
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
