//! `git http-backend` behind a small HTTP/1.1 CGI host on loopback, with Basic auth.
//!
//! One request per connection (`Connection: close`); request bodies with Content-Length or
//! chunked (git sends large negotiations chunked, and may gzip them: http-backend inflates);
//! `Expect: 100-continue` answered. The CGI's own headers (`Status:` included) become the
//! response's. Runs on a runtime of its own; dropping the server stops it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The user and password the server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    pub user: String,
    pub password: String,
}

/// A request the server saw, and the status it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub status: u16,
}

struct State {
    root: PathBuf,
    backend: PathBuf,
    /// `Basic BASE64` expected in Authorization; None: anonymous.
    expected: Option<(String, String)>,
    fail_with: Mutex<Option<u16>>,
    requests: Mutex<Vec<HttpRequest>>,
}

/// A running smart-HTTP Git server.
pub struct GitHttpServer {
    addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Largest request body taken (fetch negotiations are far smaller).
const MAX_BODY: usize = 64 << 20;

impl GitHttpServer {
    /// Serves the repositories under `root` (`GIT_PROJECT_ROOT`, every repository exported)
    /// on 127.0.0.1 at a free port; with `auth`, only to that user.
    pub fn start(root: &Path, auth: Option<BasicAuth>) -> GitHttpServer {
        let exec_path = super::git(root, &["--exec-path"]);
        let backend = Path::new(exec_path.trim()).join("git-http-backend");
        assert!(
            backend.is_file(),
            "{} is missing: install git (apt-get install -y git)",
            backend.display()
        );
        let expected = auth.map(|a| {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", a.user, a.password));
            (format!("Basic {token}"), a.user)
        });
        let state = Arc::new(State {
            root: root.to_path_buf(),
            backend,
            expected,
            fail_with: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("non-blocking socket");
        let addr = listener.local_addr().expect("bound address");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("git-http-server")
            .enable_all()
            .build()
            .expect("git http server runtime");
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
        GitHttpServer {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/NAME.git`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}.git", self.addr)
    }

    /// From now on every request is answered with `status` (a failing server); None ends it.
    pub fn fail_with(&self, status: Option<u16>) {
        *self.state.fail_with.lock().unwrap() = status;
    }

    /// Requests seen so far, in order.
    pub fn requests(&self) -> Vec<HttpRequest> {
        self.state.requests.lock().unwrap().clone()
    }
}

async fn answer(sock: TcpStream, state: Arc<State>) {
    let mut sock = BufReader::new(sock);
    let Some(req) = read_request(&mut sock).await else {
        return;
    };
    let status = respond(&mut sock, &req, &state).await;
    state.requests.lock().unwrap().push(HttpRequest {
        method: req.method.clone(),
        target: req.target.clone(),
        status,
    });
    let _ = sock.get_mut().shutdown().await;
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn read_request(sock: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    let mut lines = Vec::new();
    loop {
        line.clear();
        let n = (&mut *sock)
            .take(16 << 10)
            .read_line(&mut line)
            .await
            .ok()?;
        if n == 0 || lines.len() > 200 {
            return None;
        }
        let l = line.trim_end_matches(['\r', '\n']).to_string();
        if l.is_empty() {
            break;
        }
        lines.push(l);
    }
    let mut first = lines.first()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines[1..]
        .iter()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let mut req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    if req
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        sock.get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .ok()?;
    }
    if req
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            line.clear();
            (&mut *sock).take(1024).read_line(&mut line).await.ok()?;
            let size_text = line.trim().split(';').next()?;
            let size = usize::from_str_radix(size_text, 16).ok()?;
            if req.body.len() + size > MAX_BODY {
                return None;
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            sock.read_exact(&mut req.body[start..]).await.ok()?;
            line.clear();
            (&mut *sock).take(1024).read_line(&mut line).await.ok()?;
            if size == 0 {
                break;
            }
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().ok()?;
        if len > MAX_BODY {
            return None;
        }
        req.body.resize(len, 0);
        sock.read_exact(&mut req.body).await.ok()?;
    }
    Some(req)
}

/// Answers `req` and returns the status sent.
async fn respond(sock: &mut BufReader<TcpStream>, req: &Request, state: &State) -> u16 {
    let out = sock.get_mut();
    let failing = *state.fail_with.lock().unwrap();
    if let Some(status) = failing {
        let _ = out
            .write_all(
                format!(
                    "HTTP/1.1 {status} Failing\r\nContent-Type: text/plain\r\n\
                     Content-Length: 8\r\nConnection: close\r\n\r\nfailing\n"
                )
                .as_bytes(),
            )
            .await;
        return status;
    }
    let mut remote_user = None;
    if let Some((expected, user)) = &state.expected {
        if req.header("authorization") != Some(expected.as_str()) {
            let _ = out
                .write_all(
                    b"HTTP/1.1 401 Unauthorized\r\n\
                      WWW-Authenticate: Basic realm=\"modfleet test git\"\r\n\
                      Content-Type: text/plain\r\nContent-Length: 13\r\n\
                      Connection: close\r\n\r\nunauthorized\n",
                )
                .await;
            return 401;
        }
        remote_user = Some(user.clone());
    }
    let (path, query) = req
        .target
        .split_once('?')
        .unwrap_or((req.target.as_str(), ""));
    let mut cgi = tokio::process::Command::new(&state.backend);
    cgi.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &state.root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &req.method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", req.body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (header, var) in [
        ("content-type", "CONTENT_TYPE"),
        ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ("git-protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(v) = req.header(header) {
            cgi.env(var, v);
        }
    }
    if let Some(user) = remote_user {
        cgi.env("REMOTE_USER", user);
    }
    let Ok(mut child) = cgi.spawn() else {
        let _ = out
            .write_all(b"HTTP/1.1 500 No CGI\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return 500;
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    let body = req.body.clone();
    let feeding = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let mut cgi_out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut status = 200u16;
    let mut head = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut cgi_out).take(16 << 10).read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        match l.split_once(':') {
            Some((n, v)) if n.eq_ignore_ascii_case("status") => {
                status = v
                    .trim()
                    .split(' ')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(500);
            }
            _ => {
                head.push_str(l);
                head.push_str("\r\n");
            }
        }
    }
    let _ = out
        .write_all(format!("HTTP/1.1 {status} CGI\r\n{head}Connection: close\r\n\r\n").as_bytes())
        .await;
    let _ = tokio::io::copy(&mut cgi_out, out).await;
    let _ = feeding.await;
    let _ = child.wait().await;
    status
}
