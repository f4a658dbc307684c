//! Test harness shared by modfleet's tests (not published, not shipped).
//!
//! - [`collector`]: starts a real OpenTelemetry Collector (`otelcol-modfleet`, built from Go
//!   modules by `hack/tools.sh build`) on free localhost ports, and reads back the spans it
//!   received from the file its file exporter writes.
//! - [`gitserver`]: real Git servers (`git http-backend` with Basic auth, OpenSSH's `sshd`)
//!   serving repositories the tests make.
//! - [`go`]: the go toolchain as the reference: the tests' Go programs, built once; the
//!   machine's Go module proxy, read from `go env GOPROXY`.
//! - [`netns`]: a network namespace of a test's own (ports 80 and 443 free), and running code
//!   inside it.
//! - [`s3`]: a real S3 server (`s3s-fs`, built by `hack/tools.sh build`) over a temporary
//!   directory, stopped and started at will, its objects readable as plain files.
//! - [`tls`]: a test CA and a server certificate (made by `openssl`) for HTTPS on loopback.
//! - [`upstream`]: the one fake upstream: a GOPROXY directory and scripted answers, failures
//!   on demand, on any address or inside a network namespace, over HTTP or HTTPS, with HTTP
//!   Basic or Bearer authentication when asked.
//! - [`workspace`]: the workspace root, its binaries (built on first use), free ports.
//! - [`zipfile`]: writes zip archives byte by byte, malformed ones included, for the module-zip
//!   checks' tests.

pub mod collector;
pub mod gitserver;
pub mod go;
pub mod netns;
pub mod s3;
pub mod tls;
pub mod upstream;
pub mod workspace;
pub mod zipfile;

pub use collector::{AttrValue, Collector, Signal, Span, SpanEvent, SpanKind, StatusCode};
