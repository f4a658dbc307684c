//! HTTP: the GOPROXY endpoint and the admin endpoint (`/healthz`, `/readyz`, `/metrics`,
//! `/status`, `/admin/refresh`). With `access` configured, [`crate::access`] decides every
//! request before it is answered or fetched.
//!
//! The GOPROXY side turns a [`Request`] and the [`Fetcher`]'s answer into a response with the
//! headers the go command and HTTP caches expect: Content-Type, Content-Length, a strong ETag
//! (with `If-None-Match` → 304), Cache-Control (immutable for canonical artifacts, `--list-ttl`
//! for lists), and one-line `text/plain` errors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Uri};
use modfleet_contract::status::ProxyStatus;
use tracing::Instrument;

use crate::access::{Access, CHALLENGES, Refusal, Target};
use crate::config::Config;
use crate::fetch::{Body, CacheResult, Fetcher, Served};
use crate::file_body::FileBody;
use crate::liveness::{self, ServingCheck};
use crate::metrics::{
    IdentityLabel, ListenerReasonLabels, Metrics, RequestLabels, RouteLabel, TraceExemplar,
};
use crate::protocol::{ModulePath, ProtocolError, Request, Route, SumdbPath, VersionQuery};
use crate::upstream::UpstreamPool;

const IMMUTABLE: &str = "public, max-age=604800, immutable";
const TEXT: &str = "text/plain; charset=utf-8";
/// The longest `POST /admin/refresh` waits for its fetch (a cold clone may take longer: it
/// goes on in the background and the caller may retry).
const REFRESH_DEADLINE: Duration = Duration::from_secs(120);
/// `POST /admin/refresh` requests running at once; more are answered 429.
const MAX_REFRESHES: usize = 4;

/// State of the GOPROXY endpoint.
pub struct AppState {
    pub config: Config,
    pub fetcher: Arc<Fetcher>,
    pub metrics: Arc<Metrics>,
}

/// State of the admin endpoint, which serves before the cache is indexed.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub pool: Arc<UpstreamPool>,
    /// Set once the cache is open and the GOPROXY endpoint listens.
    pub ready: AtomicBool,
    /// What `/healthz` checks once ready.
    pub serving: ServingCheck,
    /// Set once the fetcher exists: `/admin/refresh` refreshes through it.
    pub fetcher: OnceLock<Arc<Fetcher>>,
    /// Bounds the refreshes running at once.
    pub refreshes: Arc<tokio::sync::Semaphore>,
    /// With `access`, `/status` and `/admin/*` need an admin identity.
    pub access: Option<Arc<Access>>,
}

impl AdminState {
    pub fn new(
        metrics: Arc<Metrics>,
        pool: Arc<UpstreamPool>,
        serving: ServingCheck,
        access: Option<Arc<Access>>,
    ) -> Self {
        AdminState {
            metrics,
            pool,
            access,
            ready: AtomicBool::new(false),
            serving,
            fetcher: OnceLock::new(),
            refreshes: Arc::new(tokio::sync::Semaphore::new(MAX_REFRESHES)),
        }
    }
}

/// The GOPROXY endpoint. Every path goes through [`Request::parse`].
pub fn proxy_router(state: Arc<AppState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// The admin endpoint.
pub fn admin_router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/admin/refresh", post(refresh))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin_guard,
        ))
        .with_state(state)
}

/// Paths of the admin port open to all even with `access`: the kubelet's probes and
/// Prometheus carry no token.
const OPEN_ADMIN_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// With `access`, everything on the admin port but [`OPEN_ADMIN_PATHS`] needs an identity
/// of `access.admin`.
async fn admin_guard(
    State(state): State<Arc<AdminState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(access) = state.access.as_deref() else {
        return next.run(req).await;
    };
    if OPEN_ADMIN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let decided = access
        .authenticate(req.headers())
        .and_then(|caller| access.authorize_admin(&caller).map(|()| caller));
    match decided {
        Ok(caller) => {
            tracing::debug!(
                identity = caller.name(),
                path = req.uri().path(),
                "admin request"
            );
            next.run(req).await
        }
        Err(r) => {
            tracing::info!(
                path = req.uri().path(),
                reason = r.reason,
                "admin request refused: {}",
                r.message
            );
            refusal(&state.metrics, "admin", r)
        }
    }
}

/// A refused request's answer: 401 with the challenges, or 403; counted by reason.
fn refusal(metrics: &Metrics, listener: &'static str, r: Refusal) -> Response {
    metrics
        .access_refusals
        .get_or_create(&ListenerReasonLabels {
            listener,
            reason: r.reason,
        })
        .inc();
    if !r.unauthorized {
        return text_error(StatusCode::FORBIDDEN, &r.message);
    }
    let mut resp = text_error(StatusCode::UNAUTHORIZED, &r.message);
    for challenge in CHALLENGES {
        resp.headers_mut().append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    resp
}

/// Access control of a GOPROXY request, before anything is fetched: the caller's name (when
/// it has one), and the refusal to answer instead.
fn admit(
    metrics: &Metrics,
    access: &Access,
    method: &Method,
    parsed: &Result<Request, ProtocolError>,
    headers: &HeaderMap,
) -> (Option<String>, Result<(), Response>) {
    let caller = match access.authenticate(headers) {
        Ok(caller) => caller,
        Err(r) => {
            tracing::Span::current().record("modfleet.access", r.reason);
            return (None, Err(refusal(metrics, "goproxy", r)));
        }
    };
    let target = match parsed {
        Ok(req) if method == Method::GET || method == Method::HEAD => req
            .module()
            .map_or(Target::Other, |m| Target::Module(m.as_str())),
        _ => Target::Other,
    };
    let name = Some(caller.name().to_string());
    if let Err(r) = access.authorize(&caller, target) {
        tracing::Span::current().record("modfleet.access", r.reason);
        return (name, Err(refusal(metrics, "goproxy", r)));
    }
    metrics
        .client_requests
        .get_or_create(&IdentityLabel {
            identity: access.label(&caller),
        })
        .inc();
    (name, Ok(()))
}

/// Liveness: ok while starting (indexing a large cache must not get the member restarted),
/// then ok only while a cached request could be served ([`crate::liveness`]).
async fn healthz(State(state): State<Arc<AdminState>>) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        return (StatusCode::OK, "ok\n").into_response();
    }
    match state.serving.run(liveness::DEADLINE).await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => {
            tracing::warn!("/healthz: cannot serve cached requests: {why}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot serve cached requests: {why}\n"),
            )
                .into_response()
        }
    }
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: indexing the cache\n",
        )
            .into_response()
    }
}

/// Each upstream's health as JSON (`modfleet_contract::status`): what the operator reads into
/// the fleet's status.
async fn status(State(state): State<Arc<AdminState>>) -> Response {
    let ready = state.ready.load(Ordering::Acquire);
    let mut status = ProxyStatus::new(ready, state.pool.status());
    status.store = state.fetcher.get().and_then(|f| f.store_status());
    status.peers = state.fetcher.get().and_then(|f| f.peers_status());
    axum::Json(status).into_response()
}

/// `POST /admin/refresh?module=PATH`: fetches a private module's repository now and renews
/// its cached list and `@latest` (a Git server's push webhook calls it). 404 for a module
/// that is not private.
async fn refresh(
    State(state): State<Arc<AdminState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(raw) = query.get("module") else {
        return text_error(
            StatusCode::BAD_REQUEST,
            "missing ?module=PATH: name the private module to refresh",
        );
    };
    let module = match ModulePath::parse(raw) {
        Ok(m) => m,
        Err(e) => return text_error(StatusCode::BAD_REQUEST, &e.message),
    };
    let Some(fetcher) = state.fetcher.get().cloned() else {
        return text_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: indexing the cache; retry shortly",
        );
    };
    let Ok(_permit) = state.refreshes.clone().try_acquire_owned() else {
        return text_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("{MAX_REFRESHES} refreshes are running already; retry shortly"),
        );
    };
    // Its own task: a caller that hangs up does not cut a fetch short.
    let task =
        tokio::spawn(async move { fetcher.refresh_private(&module).await.map(|r| (module, r)) });
    match tokio::time::timeout(REFRESH_DEADLINE, task).await {
        Err(_) => text_error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "the refresh takes longer than {}s; it goes on in the background",
                REFRESH_DEADLINE.as_secs()
            ),
        ),
        Ok(Err(e)) => text_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("refresh task failed: {e}"),
        ),
        Ok(Ok(None)) => text_error(
            StatusCode::NOT_FOUND,
            &format!(
                "module {raw} matches no privateModules pattern: only private modules are refreshed from Git"
            ),
        ),
        Ok(Ok(Some((module, Ok(()))))) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, TEXT)],
            format!("refreshed {module}\n"),
        )
            .into_response(),
        Ok(Ok(Some((_, Err(e))))) => text_error(e.status(), &e.to_string()),
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn handle(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let started = Instant::now();
    crate::malloc::note_activity();
    let parsed = Request::parse(uri.path());
    // Only GET and HEAD are GOPROXY requests (others are answered 405 under route "other").
    let route = parsed
        .as_ref()
        .ok()
        .filter(|_| method == Method::GET || method == Method::HEAD)
        .map(Request::route);
    // The server span (OpenTelemetry HTTP conventions): named by the route template, or by the
    // method alone when the path is not a GOPROXY path. `answer` adds the module attributes.
    // Debug level: with traces off (and RUST_LOG above debug) no layer wants it, and it costs
    // nothing; the trace layer takes modfleet's debug spans.
    let span = tracing::debug_span!(
        "request",
        otel.name = match route {
            Some(route) => format!("{method} {}", route.template()),
            None => method.to_string(),
        },
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = route.map(Route::template),
        url.path = %uri.path(),
        http.response.status_code = tracing::field::Empty,
        modfleet.artifact = tracing::field::Empty,
        modfleet.module = tracing::field::Empty,
        modfleet.version = tracing::field::Empty,
        modfleet.cache = tracing::field::Empty,
        enduser.id = tracing::field::Empty,
        modfleet.access = tracing::field::Empty,
    );
    modfleet_telemetry::adopt_remote_parent(&span, &headers);
    let (identity, admitted) = match state.config.access.as_deref() {
        None => (None, Ok(())),
        Some(access) => span.in_scope(|| admit(&state.metrics, access, &method, &parsed, &headers)),
    };
    if let Some(identity) = &identity {
        span.record("enduser.id", identity.as_str());
    }
    let (response, cache) = match admitted {
        Ok(()) => {
            answer(&state, &method, parsed, &headers)
                .instrument(span.clone())
                .await
        }
        Err(refused) => (refused, CacheResult::None),
    };
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    span.record("modfleet.cache", cache.as_str());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let route = route.map_or("other", Route::as_str);
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            status: status.as_u16(),
            cache: cache.as_str(),
        })
        .inc();
    state
        .metrics
        .request_duration
        .get_or_create(&RouteLabel { route })
        .observe(
            started.elapsed().as_secs_f64(),
            TraceExemplar::of(&span),
            None,
        );
    // Access log at debug level (RUST_LOG=modfleet_proxy=debug): one line per request costs
    // more than the cache hit itself.
    span.in_scope(|| {
        tracing::debug!(
            status = status.as_u16(),
            cache = cache.as_str(),
            identity = identity.as_deref(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        )
    });
    response
}

async fn answer(
    state: &AppState,
    method: &Method,
    parsed: Result<Request, ProtocolError>,
    headers: &HeaderMap,
) -> (Response, CacheResult) {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("method {method} is not allowed: a GOPROXY serves GET and HEAD"),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return (r, CacheResult::None);
    }
    let req = match parsed {
        Ok(req) => req,
        Err(e) => return (text_error(e.status, &e.message), CacheResult::None),
    };
    record_request(&req);
    // Checksum lookups are not module downloads (`module()` is None for them): an excluded
    // module may still be verified.
    if let Some(module) = req.module().map(|m| m.as_str())
        && state.config.is_excluded(module)
    {
        let msg = format!("module {module} is excluded by this proxy's configuration");
        return (text_error(StatusCode::FORBIDDEN, &msg), CacheResult::None);
    }
    if let Request::Sumdb { name, path } = &req {
        if !state.config.sumdbs.iter().any(|s| &s.name == name) {
            let configured: Vec<&str> = state
                .config
                .sumdbs
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            let msg = format!(
                "checksum database {name} is not proxied here (configured: {})",
                configured.join(", ")
            );
            return (text_error(StatusCode::NOT_FOUND, &msg), CacheResult::None);
        }
        if let SumdbPath::Lookup { module, .. } = path
            && state.config.is_no_sum(module.as_str())
        {
            let msg = format!(
                "module {module} matches a no-sum pattern: its checksum is not looked up through this proxy (set GONOSUMDB or GOPRIVATE on the client)"
            );
            return (text_error(StatusCode::NOT_FOUND, &msg), CacheResult::None);
        }
        if matches!(path, SumdbPath::Supported) {
            let r = ([(header::CONTENT_TYPE, TEXT)], "").into_response();
            return (r, CacheResult::None);
        }
    }
    match state.fetcher.get(&req).await {
        Ok(served) => {
            let cache = served.cache;
            let r = respond(state, &req, served, method == Method::HEAD, headers).await;
            (r, cache)
        }
        Err(e) => (text_error(e.error.status(), &e.error.to_string()), e.cache),
    }
}

/// Module attributes of the current (server) span.
fn record_request(req: &Request) {
    let span = tracing::Span::current();
    span.record("modfleet.artifact", req.route().as_str());
    if let Some(module) = req.module() {
        span.record("modfleet.module", module.as_str());
    }
    match req {
        Request::Info { version, .. } => {
            span.record("modfleet.version", version.to_string());
        }
        Request::Mod { version, .. } | Request::Zip { version, .. } => {
            span.record("modfleet.version", version.as_str());
        }
        _ => {}
    }
}

fn content_type(req: &Request) -> &'static str {
    match req {
        Request::Info { .. } | Request::Latest { .. } => "application/json",
        Request::Zip { .. } => "application/zip",
        Request::Sumdb {
            path: SumdbPath::Tile { .. },
            ..
        } => "application/octet-stream",
        _ => TEXT,
    }
}

fn cache_control(state: &AppState, req: &Request) -> String {
    let immutable = req.is_immutable()
        && !matches!(
            req,
            Request::Info {
                version: VersionQuery::Query(_),
                ..
            }
        );
    if immutable {
        IMMUTABLE.to_string()
    } else {
        format!("public, max-age={}", state.fetcher.list_ttl().as_secs())
    }
}

async fn respond(
    state: &AppState,
    req: &Request,
    served: Served,
    head: bool,
    headers: &HeaderMap,
) -> Response {
    let (etag, len) = match &served.body {
        Body::File(f) => (f.etag.clone(), f.len),
        Body::Bytes { bytes, etag } => (etag.clone(), bytes.len() as u64),
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type(req))
        .header(header::CACHE_CONTROL, cache_control(state, req));
    builder = builder.header(header::ETAG, &etag);
    if let Some(age) = served.age {
        builder = builder.header(header::AGE, age.as_secs());
    }
    let not_modified = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == etag || candidate == "*");
    if not_modified {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(AxumBody::empty())
            .expect("valid response");
    }
    builder = builder.header(header::CONTENT_LENGTH, len);
    let body = if head {
        AxumBody::empty()
    } else {
        match served.body {
            Body::File(f) => AxumBody::new(FileBody::new(f.file, f.len)),
            Body::Bytes { bytes, .. } => AxumBody::from(bytes),
        }
    };
    builder.body(body).expect("valid response")
}

/// A one-line text/plain error, as the go command prints it.
fn text_error(status: StatusCode, message: &str) -> Response {
    let line: String = message.lines().next().unwrap_or("").to_string();
    let mut r = (status, format!("{line}\n")).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
