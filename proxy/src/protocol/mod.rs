//! The GOPROXY protocol's request paths: parsing, validation and escaping.
//!
//! Everything that decides whether a request path is acceptable lives here, so
//! the server, the cache and the upstream client only ever see validated,
//! canonical values:
//!
//! * [`Request::parse`] turns the raw URL path of a request (percent-encoding
//!   not yet decoded) into a [`Request`], or refuses it with a
//!   [`ProtocolError`] that carries a 400 or 404 status and a one-line reason.
//! * [`ModulePath`] and [`Version`] mirror `golang.org/x/mod/module`
//!   (`CheckPath`, `Check`, `SplitPathVersion`, `CheckPathMajor`) and
//!   `golang.org/x/mod/semver`; [`escape_path`], [`unescape_path`],
//!   [`escape_version`] and [`unescape_version`] mirror the `!`-for-uppercase
//!   escaping of module paths and versions.
//! * [`Request::escaped_path`] renders a request back into its canonical,
//!   escaped, relative form, used both for the upstream URL and for the cache
//!   layout. It never contains `..`, `.`, empty elements, `\` or NUL.
//! * [`filter_list`] cleans an upstream `@v/list` body.
//! * [`sumdb`] verifies checksums against a checksum database.
//!
//! Status codes: anything that is unsafe or malformed (bad percent-encoding,
//! control characters, `\`, `.`/`..`/empty elements, over-long paths, an
//! invalid module path, escape or version) is 400; a path that is safe but
//! matches no route of the protocol (including a trailing slash) is 404.

use http::StatusCode;

/// Longest accepted request path, in bytes after percent-decoding.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest accepted path element, in bytes after percent-decoding.
pub const MAX_ELEM_LEN: usize = 255;
/// Longest accepted module path, in bytes of its escaped form.
pub const MAX_MODULE_LEN: usize = 512;
/// Longest accepted version, in bytes of its escaped form.
pub const MAX_VERSION_LEN: usize = MAX_ELEM_LEN - ".info".len();
/// Longest accepted `.info` query (`master`, a commit hash, `v1.2`, ...).
pub const MAX_QUERY_LEN: usize = 128;
/// Longest accepted raw request path (every decoded byte may be `%xx`).
pub(crate) const MAX_RAW_PATH_LEN: usize = 3 * MAX_PATH_LEN;
/// Longest prefix of an offending input quoted in an error message.
const MAX_QUOTED_LEN: usize = 200;

/// The shapes of the protocol, for 404 messages.
pub(crate) const ROUTE_SHAPES: &str = "want /<module>/@v/list, /<module>/@v/<version>.info|.mod|.zip, \
/<module>/@latest or /sumdb/<name>/supported|latest|lookup/<module>@<version>|tile/...";

/// Why a request path was refused; maps to a one-line text/plain reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProtocolError {
    /// 400 (malformed or unsafe) or 404 (no such route).
    pub status: StatusCode,
    /// One line, no newline; quotes the offending input.
    pub message: String,
}

impl ProtocolError {
    /// A 400 Bad Request with the given reason.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message.into())
    }

    /// A 404 Not Found with the given reason.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message.into())
    }

    fn new(status: StatusCode, message: String) -> Self {
        // Messages quote inputs with `{:?}`, so they are one line already;
        // this only guards against a future careless format string.
        let message = if message.contains(['\n', '\r']) {
            message.replace(['\n', '\r'], " ")
        } else {
            message
        };
        Self { status, message }
    }
}

/// Quotes an input for an error message: Rust string escaping (control
/// characters visible, one line), truncated when very long.
pub(crate) fn quote(s: &str) -> String {
    if s.len() <= MAX_QUOTED_LEN {
        return format!("{s:?}");
    }
    let mut end = MAX_QUOTED_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &s[..end], s.len())
}

pub mod artifact;
pub mod gover;
pub mod modfile;
pub mod module;
pub mod pseudo;
mod request;
pub mod semver;
pub mod sumdb;
pub mod unicode;
pub mod zip;

pub use module::{
    ModulePath, Version, canonical_version, escape_path, escape_version, is_canonical_semver,
    unescape_path, unescape_version,
};
pub use pseudo::is_pseudo_version;
pub use request::{Request, Route, VersionQuery, filter_list};
pub use semver::is_valid as is_valid_semver;
pub use sumdb::path::{SumdbPath, TileLevel};
