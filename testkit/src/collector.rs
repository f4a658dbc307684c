//! A real OpenTelemetry Collector for tests, and what it received.
//!
//! [`Collector::start`] runs `otelcol-modfleet` (a minimal Collector built from its Go modules by
//! `hack/tools.sh build`: the OTLP receiver, gRPC and HTTP, and the file exporter; source in
//! `hack/otelcol/`) on two free localhost ports, with a config in a fresh temporary directory.
//! Each signal goes to its own file there, one OTLP/JSON export request per line, flushed every
//! 50 ms. [`Collector::spans`] parses the trace file into plain [`Span`]s;
//! [`Collector::wait_for_spans`] polls it until a condition holds. The process is killed when the
//! [`Collector`] is dropped (so keep one per test, not in a `static`: statics are never dropped).
//!
//! The binary is `$MODFLEET_OTELCOL` if set, else whatever `hack/tools.sh path
//! otelcol-modfleet` prints. When it is missing, [`Collector::start`] panics with the fix: tests
//! that need a Collector fail, they never skip.
//!
//! ```no_run
//! use std::time::Duration;
//! use modfleet_testkit::Collector;
//!
//! let collector = Collector::start();
//! // e.g. OTEL_EXPORTER_OTLP_ENDPOINT=<collector.grpc_endpoint()> for the process under test
//! let spans = collector.wait_for_spans(
//!     |spans| spans.iter().any(|s| s.name == "GET /{module}/@v/{version}"),
//!     Duration::from_secs(10),
//! );
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// How long [`Collector::start`] waits for the Collector to listen (a loaded 2-core machine
/// starts it in well under a second; this is only the point where the test gives up).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval for start-up and [`Collector::wait_for_spans`].
const POLL: Duration = Duration::from_millis(25);
/// Logged by the Collector's service once every component has started (pinned Collector
/// version, see hack/otelcol/go.mod).
const READY_LINE: &str = "Everything is ready";
/// Tries with fresh ports when another process took a port between picking and binding it.
const PORT_ATTEMPTS: usize = 5;

/// A telemetry signal; each has its own output file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    fn file_name(self) -> &'static str {
        match self {
            Signal::Traces => "traces.jsonl",
            Signal::Metrics => "metrics.jsonl",
            Signal::Logs => "logs.jsonl",
        }
    }

    fn exporter(self) -> &'static str {
        match self {
            Signal::Traces => "file/traces",
            Signal::Metrics => "file/metrics",
            Signal::Logs => "file/logs",
        }
    }

    fn pipeline(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];
}

/// A running `otelcol-modfleet`, killed on drop.
pub struct Collector {
    child: Child,
    /// `None` only while dropping.
    dir: Option<TempDir>,
    dir_path: PathBuf,
    grpc_port: u16,
    http_port: u16,
}

impl Collector {
    /// Starts a Collector on free 127.0.0.1 ports and waits until it accepts data.
    ///
    /// Panics (with the fix, or the Collector's log) if the binary is missing, the Collector
    /// exits, or it is not ready within 30 s.
    pub fn start() -> Collector {
        let binary = otelcol_binary();
        let mut attempt = 1;
        loop {
            match Self::try_start(&binary) {
                Ok(collector) => return collector,
                Err(log) if attempt < PORT_ATTEMPTS && log.contains("address already in use") => {
                    attempt += 1;
                }
                Err(log) => panic!(
                    "the OpenTelemetry Collector ({}) did not start; its log ends with:\n{log}",
                    binary.display()
                ),
            }
        }
    }

    /// One start on fresh ports; `Err(log tail)` if the process exited before it was ready.
    fn try_start(binary: &Path) -> Result<Collector, String> {
        let dir = tempfile::Builder::new()
            .prefix("modfleet-otelcol-")
            .tempdir()
            .expect("create a temporary directory for the Collector");
        let dir_path = dir.path().to_path_buf();
        let (grpc_port, http_port) = two_free_ports();
        let config = dir_path.join("config.yaml");
        fs::write(&config, config_yaml(&dir_path, grpc_port, http_port))
            .expect("write the Collector's config");
        let log_path = dir_path.join("collector.log");
        let log = File::create(&log_path).expect("create the Collector's log file");
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .current_dir(&dir_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run the Collector {}: {e}", binary.display()));
        let mut collector = Collector {
            child,
            dir: Some(dir),
            dir_path,
            grpc_port,
            http_port,
        };

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = collector.exited() {
                let tail = collector.log_tail(60);
                return Err(format!("(exited: {status})\n{tail}"));
            }
            if collector.listening() && collector.log_contains(READY_LINE) {
                return Ok(collector);
            }
            if Instant::now() >= deadline {
                let tail = collector.log_tail(60);
                panic!(
                    "the OpenTelemetry Collector was not ready after {START_TIMEOUT:?} (ports {grpc_port}, \
                     {http_port}); its log ends with:\n{tail}"
                );
            }
            thread::sleep(POLL);
        }
    }

    /// The OTLP/gRPC endpoint, `http://127.0.0.1:PORT`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The OTLP/HTTP endpoint (base URL; traces go to `/v1/traces`), `http://127.0.0.1:PORT`.
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.grpc_port))
    }

    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_port))
    }

    /// The temporary directory with the config, the Collector's log and the output files.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// The file a signal is written to (one OTLP/JSON export request per line).
    pub fn output_path(&self, signal: Signal) -> PathBuf {
        self.dir_path.join(signal.file_name())
    }

    /// The Collector's own log (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir_path.join("collector.log")
    }

    /// The last `lines` lines of the Collector's own log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Every complete export request written so far for `signal`, as raw OTLP/JSON
    /// (`{"resourceSpans": ...}`, `{"resourceMetrics": ...}`, `{"resourceLogs": ...}`).
    pub fn json_lines(&self, signal: Signal) -> Vec<Value> {
        let path = self.output_path(signal);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        };
        // The exporter flushes a buffer, not whole lines: a last line without its newline is
        // still being written, and is read next time.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..i],
            None => return Vec::new(),
        };
        complete
            .split('\n')
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!(
                        "{}: a line that is not JSON ({e}): {}",
                        path.display(),
                        truncate(line)
                    )
                })
            })
            .collect()
    }

    /// Every span received so far, in the order they were exported.
    pub fn spans(&self) -> Vec<Span> {
        self.json_lines(Signal::Traces)
            .iter()
            .flat_map(|request| {
                parse_traces_request(request).unwrap_or_else(|e| {
                    panic!(
                        "unexpected OTLP/JSON in the trace file ({e}): {}",
                        truncate(&request.to_string())
                    )
                })
            })
            .collect()
    }

    /// Polls [`Collector::spans`] until `pred` holds, and returns those spans. Panics after
    /// `timeout` listing the spans seen, or at once if the Collector has exited.
    ///
    /// Blocks the thread: in a `#[tokio::test]` whose runtime also runs the code under test,
    /// use [`Collector::wait_for_spans_async`].
    pub fn wait_for_spans(&self, pred: impl Fn(&[Span]) -> bool, timeout: Duration) -> Vec<Span> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(spans) = self.poll_spans(&pred, deadline, timeout) {
                return spans;
            }
            thread::sleep(POLL);
        }
    }

    /// [`Collector::wait_for_spans`] that sleeps on the tokio runtime instead of blocking it.
    pub async fn wait_for_spans_async(
        &self,
        pred: impl Fn(&[Span]) -> bool,
        timeout: Duration,
    ) -> Vec<Span> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(spans) = self.poll_spans(&pred, deadline, timeout) {
                return spans;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn poll_spans(
        &self,
        pred: &impl Fn(&[Span]) -> bool,
        deadline: Instant,
        timeout: Duration,
    ) -> Option<Vec<Span>> {
        let spans = self.spans();
        if pred(&spans) {
            return Some(spans);
        }
        if let Some(status) = self.exited_now() {
            panic!(
                "the OpenTelemetry Collector exited ({status}) while waiting for spans; its log ends with:\n{}",
                self.log_tail(60)
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for spans; the Collector received {} span(s):\n{}",
                spans.len(),
                describe(&spans)
            );
        }
        None
    }

    /// The Collector's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn listening(&self) -> bool {
        [self.grpc_addr(), self.http_addr()]
            .iter()
            .all(|addr| TcpStream::connect_timeout(addr, Duration::from_millis(250)).is_ok())
    }

    fn log_contains(&self, needle: &str) -> bool {
        fs::read_to_string(self.log_path()).is_ok_and(|log| log.contains(needle))
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("check the Collector process")
    }

    /// Like `exited`, through `&self`: `/proc/PID` of an exited (zombie, not yet reaped) child
    /// says `Z`.
    fn exited_now(&self) -> Option<String> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let state = stat.rsplit_once(") ")?.1.split(' ').next()?;
        (state == "Z" || state == "X").then(|| format!("process state {state}"))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep the evidence of a failed test; otherwise the directory goes with `dir`.
        if let Some(dir) = self.dir.take()
            && thread::panicking()
        {
            let kept = dir.keep();
            eprintln!(
                "modfleet-testkit: kept the Collector's directory (config, log, output): {}",
                kept.display()
            );
        }
    }
}

/// Finds `otelcol-modfleet`: `$MODFLEET_OTELCOL`, else `hack/tools.sh path otelcol-modfleet`.
fn otelcol_binary() -> PathBuf {
    crate::workspace::test_tool(
        "MODFLEET_OTELCOL",
        "otelcol-modfleet",
        "the OpenTelemetry Collector for the tests",
        "",
    )
}

/// Two distinct free ports (a race with other processes remains, which `Collector::start`
/// covers by retrying on "address already in use").
fn two_free_ports() -> (u16, u16) {
    (crate::workspace::free_port(), crate::workspace::free_port())
}

fn config_yaml(dir: &Path, grpc_port: u16, http_port: u16) -> String {
    // JSON strings are valid YAML scalars: quoting by serde_json is safe for any path.
    let quote = |p: PathBuf| serde_json::to_string(&p.to_string_lossy()).expect("quote a path");
    let mut yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: \"127.0.0.1:{grpc_port}\"\n      \
         http:\n        endpoint: \"127.0.0.1:{http_port}\"\nexporters:\n"
    );
    for signal in Signal::ALL {
        yaml += &format!(
            "  {}:\n    path: {}\n    format: json\n    flush_interval: 50ms\n",
            signal.exporter(),
            quote(dir.join(signal.file_name()))
        );
    }
    // No internal metrics: they would listen on a fixed port (8888) shared by every test.
    yaml += "service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n";
    for signal in Signal::ALL {
        yaml += &format!(
            "    {}:\n      receivers: [otlp]\n      exporters: [{}]\n",
            signal.pipeline(),
            signal.exporter()
        );
    }
    yaml
}

fn truncate(s: &str) -> String {
    if s.len() <= 2000 {
        s.to_string()
    } else {
        let mut end = 2000;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &s[..end], s.len())
    }
}

/// One line per span, for failure messages: `service: name [kind, status] attributes`.
fn describe(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "  {}: {:?} [{:?}, {:?}] {:?}",
                s.service_name.as_deref().unwrap_or("?"),
                s.name,
                s.kind,
                s.status_code,
                s.attributes
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A span as the Collector received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    /// The resource attribute `service.name`.
    pub service_name: Option<String>,
    pub resource_attributes: BTreeMap<String, AttrValue>,
    /// The instrumentation scope's name (often the crate or tracer name).
    pub scope_name: String,
    pub attributes: BTreeMap<String, AttrValue>,
    pub events: Vec<SpanEvent>,
    pub status_code: StatusCode,
    pub status_message: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    /// The attribute as a string, if it is a string.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key)? {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The attribute as an integer, if it is an integer.
    pub fn attr_i64(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key)? {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The attribute as a bool, if it is a bool.
    pub fn attr_bool(&self, key: &str) -> Option<bool> {
        match self.attributes.get(key)? {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The attribute as a float, if it is a double.
    pub fn attr_f64(&self, key: &str) -> Option<f64> {
        match self.attributes.get(key)? {
            AttrValue::Double(d) => Some(*d),
            _ => None,
        }
    }

    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_none()
    }

    /// `true` if `self` is a direct child of `parent` (same trace, parent link).
    pub fn is_child_of(&self, parent: &Span) -> bool {
        self.trace_id == parent.trace_id && self.parent_span_id.as_deref() == Some(&parent.span_id)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nanos.saturating_sub(self.start_unix_nanos))
    }
}

/// An event recorded on a span (e.g. `exception`).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_nanos: u64,
    pub attributes: BTreeMap<String, AttrValue>,
}

/// An OTLP attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
    /// Base64, as in OTLP/JSON.
    Bytes(String),
    Array(Vec<AttrValue>),
    KvList(BTreeMap<String, AttrValue>),
    /// A value with none of the above set.
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

// ---- OTLP/JSON parsing ----
//
// What the file exporter writes (pdata's JSON marshaller), which tests rely on:
// - one `ExportTraceServiceRequest` per line: resourceSpans[].scopeSpans[].spans[];
// - ids are lowercase hex strings; a root span has no `parentSpanId` (or "");
// - 64-bit integers are JSON strings: `intValue`, `startTimeUnixNano`, `timeUnixNano`;
// - enums are numbers (`"kind": 2`, `"status": {"code": 2}`) and fields at their default
//   value are left out (`"status": {}` for UNSET, no `kind` for UNSPECIFIED, no `attributes`).
// The parser also accepts numbers where strings are usual and enum names, as OTLP/JSON allows.

fn parse_traces_request(request: &Value) -> Result<Vec<Span>, String> {
    let mut out = Vec::new();
    for rs in array(request, "resourceSpans")? {
        let resource_attributes = match rs.get("resource") {
            Some(resource) => attributes(resource)?,
            None => BTreeMap::new(),
        };
        let service_name = match resource_attributes.get("service.name") {
            Some(AttrValue::Str(s)) => Some(s.clone()),
            _ => None,
        };
        for ss in array(rs, "scopeSpans")? {
            let scope_name = ss
                .get("scope")
                .and_then(|s| s.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            for span in array(ss, "spans")? {
                out.push(parse_span(
                    span,
                    &service_name,
                    &resource_attributes,
                    &scope_name,
                )?);
            }
        }
    }
    Ok(out)
}

fn parse_span(
    span: &Value,
    service_name: &Option<String>,
    resource_attributes: &BTreeMap<String, AttrValue>,
    scope_name: &str,
) -> Result<Span, String> {
    let status = span.get("status");
    let events = array(span, "events")?
        .iter()
        .map(|e| {
            Ok(SpanEvent {
                name: string(e, "name"),
                time_unix_nanos: u64_field(e, "timeUnixNano")?,
                attributes: attributes(e)?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Span {
        trace_id: string(span, "traceId"),
        span_id: string(span, "spanId"),
        parent_span_id: Some(string(span, "parentSpanId")).filter(|p| !p.is_empty()),
        name: string(span, "name"),
        kind: match enum_field(span.get("kind"), "SPAN_KIND_")? {
            EnumValue::Num(0) => SpanKind::Unspecified,
            EnumValue::Num(1) => SpanKind::Internal,
            EnumValue::Num(2) => SpanKind::Server,
            EnumValue::Num(3) => SpanKind::Client,
            EnumValue::Num(4) => SpanKind::Producer,
            EnumValue::Num(5) => SpanKind::Consumer,
            EnumValue::Name(n) => match n.as_str() {
                "UNSPECIFIED" => SpanKind::Unspecified,
                "INTERNAL" => SpanKind::Internal,
                "SERVER" => SpanKind::Server,
                "CLIENT" => SpanKind::Client,
                "PRODUCER" => SpanKind::Producer,
                "CONSUMER" => SpanKind::Consumer,
                _ => return Err(format!("unknown span kind {n}")),
            },
            EnumValue::Num(n) => return Err(format!("unknown span kind {n}")),
        },
        service_name: service_name.clone(),
        resource_attributes: resource_attributes.clone(),
        scope_name: scope_name.to_string(),
        attributes: attributes(span)?,
        events,
        status_code: match enum_field(status.and_then(|s| s.get("code")), "STATUS_CODE_")? {
            EnumValue::Num(0) => StatusCode::Unset,
            EnumValue::Num(1) => StatusCode::Ok,
            EnumValue::Num(2) => StatusCode::Error,
            EnumValue::Name(n) if n == "UNSET" => StatusCode::Unset,
            EnumValue::Name(n) if n == "OK" => StatusCode::Ok,
            EnumValue::Name(n) if n == "ERROR" => StatusCode::Error,
            other => return Err(format!("unknown status code {other:?}")),
        },
        status_message: status.map(|s| string(s, "message")).unwrap_or_default(),
        start_unix_nanos: u64_field(span, "startTimeUnixNano")?,
        end_unix_nanos: u64_field(span, "endTimeUnixNano")?,
    })
}

/// `v[key]` as an array; a missing key (OTLP/JSON omits empty lists) is an empty one.
fn array<'a>(v: &'a Value, key: &str) -> Result<&'a [Value], String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(format!("{key} is not an array: {other}")),
    }
}

/// `v[key]` as a string; missing is "".
fn string(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A 64-bit unsigned integer, a string in OTLP/JSON (a number is accepted); missing is 0.
fn u64_field(v: &Value, key: &str) -> Result<u64, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|e| format!("{key}={s:?}: {e}")),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| format!("{key}={n} is not a u64")),
        Some(other) => Err(format!("{key} is not an integer: {other}")),
    }
}

#[derive(Debug)]
enum EnumValue {
    Num(i64),
    /// The name without its prefix (`SPAN_KIND_SERVER` -> `SERVER`).
    Name(String),
}

/// An OTLP/JSON enum: a number (what pdata writes), or its name; missing is 0.
fn enum_field(v: Option<&Value>, prefix: &str) -> Result<EnumValue, String> {
    match v {
        None | Some(Value::Null) => Ok(EnumValue::Num(0)),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(EnumValue::Num)
            .ok_or_else(|| format!("bad enum {n}")),
        Some(Value::String(s)) => Ok(EnumValue::Name(
            s.strip_prefix(prefix).unwrap_or(s).to_string(),
        )),
        Some(other) => Err(format!("bad enum {other}")),
    }
}

/// `v.attributes`: a list of `{"key": ..., "value": AnyValue}`.
fn attributes(v: &Value) -> Result<BTreeMap<String, AttrValue>, String> {
    key_values(array(v, "attributes")?)
}

fn key_values(items: &[Value]) -> Result<BTreeMap<String, AttrValue>, String> {
    items
        .iter()
        .map(|kv| {
            let key = kv
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("attribute without a key: {kv}"))?;
            let value = match kv.get("value") {
                Some(value) => any_value(value)?,
                None => AttrValue::Empty,
            };
            Ok((key.to_string(), value))
        })
        .collect()
}

/// An OTLP `AnyValue` in JSON: `{"stringValue": "x"}`, `{"intValue": "5"}` (a string!),
/// `{"boolValue": true}`, `{"doubleValue": 1.5}`, `{"bytesValue": "base64"}`,
/// `{"arrayValue": {"values": [...]}}`, `{"kvlistValue": {"values": [{key, value}]}}`, `{}`.
fn any_value(v: &Value) -> Result<AttrValue, String> {
    if let Some(s) = v.get("stringValue") {
        return s
            .as_str()
            .map(|s| AttrValue::Str(s.to_string()))
            .ok_or_else(|| format!("bad stringValue {s}"));
    }
    if let Some(i) = v.get("intValue") {
        return match i {
            Value::String(s) => s
                .parse()
                .map(AttrValue::Int)
                .map_err(|e| format!("intValue {s:?}: {e}")),
            Value::Number(n) => n
                .as_i64()
                .map(AttrValue::Int)
                .ok_or_else(|| format!("bad intValue {n}")),
            other => Err(format!("bad intValue {other}")),
        };
    }
    if let Some(b) = v.get("boolValue") {
        return b
            .as_bool()
            .map(AttrValue::Bool)
            .ok_or_else(|| format!("bad boolValue {b}"));
    }
    if let Some(d) = v.get("doubleValue") {
        return match d {
            Value::Number(n) => n
                .as_f64()
                .map(AttrValue::Double)
                .ok_or_else(|| format!("bad doubleValue {n}")),
            // Non-finite doubles are strings in OTLP/JSON.
            Value::String(s) => match s.as_str() {
                "NaN" => Ok(AttrValue::Double(f64::NAN)),
                "Infinity" => Ok(AttrValue::Double(f64::INFINITY)),
                "-Infinity" => Ok(AttrValue::Double(f64::NEG_INFINITY)),
                _ => s
                    .parse()
                    .map(AttrValue::Double)
                    .map_err(|e| format!("doubleValue {s:?}: {e}")),
            },
            other => Err(format!("bad doubleValue {other}")),
        };
    }
    if let Some(b) = v.get("bytesValue") {
        return b
            .as_str()
            .map(|s| AttrValue::Bytes(s.to_string()))
            .ok_or_else(|| format!("bad bytesValue {b}"));
    }
    if let Some(a) = v.get("arrayValue") {
        return array(a, "values")?
            .iter()
            .map(any_value)
            .collect::<Result<_, _>>()
            .map(AttrValue::Array);
    }
    if let Some(kv) = v.get("kvlistValue") {
        return key_values(array(kv, "values")?).map(AttrValue::KvList);
    }
    Ok(AttrValue::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as the file exporter writes it, with the quirks: 64-bit integers as strings,
    /// numeric enums, defaults left out.
    const LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"modfleet-proxy"}}]},"scopeSpans":[{"scope":{"name":"modfleet"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"root","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000250000000","attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}},{"key":"cache.hit","value":{"boolValue":false}},{"key":"ratio","value":{"doubleValue":0.5}},{"key":"nan","value":{"doubleValue":"NaN"}},{"key":"list","value":{"arrayValue":{"values":[{"stringValue":"a"},{"intValue":"-3"}]}}},{"key":"map","value":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":true}}]}}},{"key":"empty","value":{}}],"status":{}},{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"aaaaaaaaaaaaaaaa","parentSpanId":"eee19b7ec3c1b174","name":"child","startTimeUnixNano":"1700000000100000000","endTimeUnixNano":"1700000000200000000","events":[{"timeUnixNano":"1700000000150000000","name":"exception","attributes":[{"key":"exception.message","value":{"stringValue":"boom"}}]}],"status":{"code":2,"message":"boom"}}]}]}]}"#;

    #[test]
    fn parses_the_file_exporter_format() {
        let spans = parse_traces_request(&serde_json::from_str(LINE).unwrap()).unwrap();
        assert_eq!(spans.len(), 2);
        let (root, child) = (&spans[0], &spans[1]);

        assert_eq!(root.name, "root");
        assert_eq!(root.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(root.span_id, "eee19b7ec3c1b174");
        assert!(root.is_root());
        assert_eq!(root.kind, SpanKind::Server);
        assert_eq!(root.service_name.as_deref(), Some("modfleet-proxy"));
        assert_eq!(root.scope_name, "modfleet");
        assert_eq!(root.status_code, StatusCode::Unset);
        assert_eq!(root.attr_i64("http.response.status_code"), Some(200));
        assert_eq!(root.attr_str("http.response.status_code"), None);
        assert_eq!(root.attr_bool("cache.hit"), Some(false));
        assert_eq!(root.attr_f64("ratio"), Some(0.5));
        assert!(root.attr_f64("nan").unwrap().is_nan());
        assert_eq!(
            root.attr("list"),
            Some(&AttrValue::Array(vec![
                AttrValue::Str("a".into()),
                AttrValue::Int(-3)
            ]))
        );
        assert_eq!(
            root.attr("map"),
            Some(&AttrValue::KvList(BTreeMap::from([(
                "k".to_string(),
                AttrValue::Bool(true)
            )])))
        );
        assert_eq!(root.attr("empty"), Some(&AttrValue::Empty));
        assert_eq!(root.start_unix_nanos, 1_700_000_000_000_000_000);
        assert_eq!(root.duration(), Duration::from_millis(250));

        assert!(child.is_child_of(root));
        assert_eq!(child.kind, SpanKind::Unspecified);
        assert_eq!(child.status_code, StatusCode::Error);
        assert_eq!(child.status_message, "boom");
        assert!(child.attributes.is_empty());
        assert_eq!(child.events.len(), 1);
        assert_eq!(child.events[0].name, "exception");
        assert_eq!(child.events[0].time_unix_nanos, 1_700_000_000_150_000_000);
        assert_eq!(
            child.events[0].attributes.get("exception.message"),
            Some(&AttrValue::Str("boom".into()))
        );
    }

    #[test]
    fn accepts_enum_names_and_numeric_integers() {
        let line = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"01","spanId":"02","parentSpanId":"","name":"n","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":5,"endTimeUnixNano":7,"attributes":[{"key":"i","value":{"intValue":42}}],"status":{"code":"STATUS_CODE_OK"}}]}]}]}"#;
        let spans = parse_traces_request(&serde_json::from_str(line).unwrap()).unwrap();
        assert_eq!(spans[0].kind, SpanKind::Client);
        assert_eq!(spans[0].status_code, StatusCode::Ok);
        assert_eq!(spans[0].parent_span_id, None);
        assert_eq!(spans[0].service_name, None);
        assert_eq!(spans[0].attr_i64("i"), Some(42));
        assert_eq!(spans[0].end_unix_nanos, 7);
    }

    #[test]
    fn config_has_a_pipeline_per_signal() {
        let yaml = config_yaml(Path::new("/tmp/a \"b\""), 1234, 5678);
        assert!(yaml.contains("endpoint: \"127.0.0.1:1234\""));
        assert!(yaml.contains("endpoint: \"127.0.0.1:5678\""));
        assert!(yaml.contains(r#"path: "/tmp/a \"b\"/traces.jsonl""#));
        for p in ["traces", "metrics", "logs"] {
            assert!(yaml.contains(&format!(
                "    {p}:\n      receivers: [otlp]\n      exporters: [file/{p}]"
            )));
        }
    }
}
