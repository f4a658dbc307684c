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
//!
//! Status codes: anything that is unsafe or malformed (bad percent-encoding,
//! control characters, `\`, `.`/`..`/empty elements, over-long paths, an
//! invalid module path, escape or version) is 400; a path that is safe but
//! matches no route of the protocol (including a trailing slash) is 404.

use std::collections::HashSet;
use std::fmt;

use http::StatusCode;

pub mod unicode;
pub mod zip;

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
const MAX_RAW_PATH_LEN: usize = 3 * MAX_PATH_LEN;
/// Longest prefix of an offending input quoted in an error message.
const MAX_QUOTED_LEN: usize = 200;
/// Highest tile height accepted, as in `golang.org/x/mod/sumdb/tlog`.
const MAX_TILE_HEIGHT: u8 = 30;
/// Most `NNN` parts of a tile index (1000^6 keeps the index within an i64).
const MAX_TILE_INDEX_PARTS: usize = 6;

/// The shapes of the protocol, for 404 messages.
const ROUTE_SHAPES: &str = "want /<module>/@v/list, /<module>/@v/<version>.info|.mod|.zip, \
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
fn quote(s: &str) -> String {
    if s.len() <= MAX_QUOTED_LEN {
        return format!("{s:?}");
    }
    let mut end = MAX_QUOTED_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &s[..end], s.len())
}

// ---------------------------------------------------------------------------
// Module paths
// ---------------------------------------------------------------------------

/// A decoded, validated module path (module.CheckPath rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModulePath(String);

impl ModulePath {
    /// Validates a decoded module path like Go's `module.CheckPath`.
    pub fn parse(decoded: &str) -> Result<Self, ProtocolError> {
        match check_module_path(decoded) {
            Ok(()) => Ok(Self(decoded.to_owned())),
            Err(reason) => Err(ProtocolError::bad_request(format!(
                "malformed module path {}: {reason}",
                quote(decoded)
            ))),
        }
    }

    /// Unescapes (`!x` → `X`) and validates an escaped module path, like Go's
    /// `module.UnescapePath`.
    pub fn from_escaped(escaped: &str) -> Result<Self, ProtocolError> {
        unescape_path(escaped).map(Self)
    }

    /// The decoded module path, e.g. `github.com/BurntSushi/toml`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The escaped module path, e.g. `github.com/!burnt!sushi/toml`.
    pub fn escaped(&self) -> String {
        escape_string(&self.0)
    }

    /// The major-version suffix of the path (`""`, `"/v2"`, `".v1"`,
    /// `".v1-unstable"`), as `module.SplitPathVersion` returns it.
    pub fn path_major(&self) -> &str {
        split_path_version(&self.0).map_or("", |(_, major)| major)
    }
}

impl fmt::Display for ModulePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Can `c` appear in the first element of a module path (a lowercase LDH
/// domain name)?
fn first_path_ok(c: char) -> bool {
    c == '-' || c == '.' || c.is_ascii_digit() || c.is_ascii_lowercase()
}

/// Can `c` appear in a module path element?
fn mod_path_ok(c: char) -> bool {
    c == '-' || c == '.' || c == '_' || c == '~' || c.is_ascii_alphanumeric()
}

/// Can `c` appear in a version (Go checks versions as file names; its escaping
/// then refuses non-ASCII, so only ASCII is accepted here)?
fn version_char_ok(c: char) -> bool {
    c.is_ascii() && file_name_ok(c)
}

/// Go's `module.fileNameOK`: ASCII letters, digits, space and
/// `!#$%&()+,-.=@[]^_{}~`; beyond ASCII, letters (Go's `unicode.IsLetter`).
fn file_name_ok(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&()+,-.=@[]^_{}~ ".contains(c)
    } else {
        unicode::is_letter(c)
    }
}

const BAD_WINDOWS_NAMES: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// What `check_elem` checks an element of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ElemKind {
    /// A module path (`modPathOK` characters, no leading dot, no short names).
    Module,
    /// A version, checked as a file name but ASCII only.
    Version,
    /// A file path in a module zip (`fileNameOK` characters).
    File,
}

/// Go's `checkElem`. Returns a reason that does not repeat the whole path.
fn check_elem(elem: &str, kind: ElemKind) -> Result<(), String> {
    if elem.is_empty() {
        return Err("empty path element".into());
    }
    if elem.bytes().all(|b| b == b'.') {
        return Err(format!("invalid path element {}", quote(elem)));
    }
    if elem.starts_with('.') && kind == ElemKind::Module {
        return Err("leading dot in path element".into());
    }
    if elem.ends_with('.') {
        return Err("trailing dot in path element".into());
    }
    let char_ok = match kind {
        ElemKind::Module => mod_path_ok,
        ElemKind::Version => version_char_ok,
        ElemKind::File => file_name_ok,
    };
    if let Some(c) = elem.chars().find(|&c| !char_ok(c)) {
        return Err(format!("invalid char {c:?}"));
    }
    let short = elem.split('.').next().unwrap_or(elem);
    if BAD_WINDOWS_NAMES
        .iter()
        .any(|bad| unicode::equal_fold(bad, short))
    {
        return Err(format!(
            "{} disallowed as path element component on Windows",
            quote(short)
        ));
    }
    if kind == ElemKind::Module {
        // Windows short names end in a tilde and digits.
        if let Some(tilde) = short.rfind('~')
            && tilde + 1 < short.len()
            && short[tilde + 1..].bytes().all(|b| b.is_ascii_digit())
        {
            return Err("trailing tilde and digits in path element".into());
        }
    }
    Ok(())
}

/// Go's `module.CheckPath`, plus length limits. Returns the reason only.
fn check_module_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty string".into());
    }
    // Limits apply to the escaped form (each uppercase letter takes two
    // bytes), which is what appears in request paths and the cache.
    if escaped_len(path) > MAX_MODULE_LEN {
        return Err(format!(
            "too long ({} bytes escaped, at most {MAX_MODULE_LEN})",
            escaped_len(path)
        ));
    }
    if path.starts_with('-') {
        return Err("leading dash".into());
    }
    if path.contains("//") {
        return Err("double slash".into());
    }
    if path.ends_with('/') {
        return Err("trailing slash".into());
    }
    for elem in path.split('/') {
        check_elem(elem, ElemKind::Module)?;
        if escaped_len(elem) > MAX_ELEM_LEN {
            return Err(format!("path element longer than {MAX_ELEM_LEN} bytes"));
        }
    }
    let first = path.split('/').next().unwrap_or(path);
    if !first.contains('.') {
        return Err("missing dot in first path element".into());
    }
    if let Some(c) = first.chars().find(|&c| !first_path_ok(c)) {
        return Err(format!("invalid char {c:?} in first path element"));
    }
    if split_path_version(path).is_none() {
        return Err(
            "invalid major version suffix (want /vN with N >= 2 and no leading zero, \
             or .vN for gopkg.in)"
                .into(),
        );
    }
    Ok(())
}

/// Go's `module.CheckFilePath`: a slash-separated, relative file path whose
/// elements are valid file names. Returns the reason only.
pub fn check_file_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty string".into());
    }
    if path.contains("//") {
        return Err("double slash".into());
    }
    if path.ends_with('/') {
        return Err("trailing slash".into());
    }
    path.split('/')
        .try_for_each(|elem| check_elem(elem, ElemKind::File))
}

/// Go's `module.SplitPathVersion`: `Some((prefix, path_major))` with
/// `prefix + path_major == path`; `None` when the suffix is malformed
/// (`/v0`, `/v1`, `/v01`, `/v2.0`, a gopkg.in path without `.vN`).
fn split_path_version(path: &str) -> Option<(&str, &str)> {
    if path.starts_with("gopkg.in/") {
        return split_gopkg_in(path);
    }
    let b = path.as_bytes();
    let mut i = b.len();
    let mut dot = false;
    while i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.') {
        dot |= b[i - 1] == b'.';
        i -= 1;
    }
    if i <= 1 || i == b.len() || b[i - 1] != b'v' || b[i - 2] != b'/' {
        return Some((path, ""));
    }
    let (prefix, major) = path.split_at(i - 2);
    if dot || major.len() <= 2 || major.as_bytes()[2] == b'0' || major == "/v1" {
        return None;
    }
    Some((prefix, major))
}

/// Go's `splitGopkgIn`.
fn split_gopkg_in(path: &str) -> Option<(&str, &str)> {
    let b = path.as_bytes();
    let mut i = b.len();
    if path.ends_with("-unstable") {
        i -= "-unstable".len();
    }
    while i > 0 && b[i - 1].is_ascii_digit() {
        i -= 1;
    }
    if i <= 1 || b[i - 1] != b'v' || b[i - 2] != b'.' {
        return None;
    }
    let (prefix, major) = path.split_at(i - 2);
    if major.len() <= 2 || (major.as_bytes()[2] == b'0' && major != ".v0") {
        return None;
    }
    Some((prefix, major))
}

// ---------------------------------------------------------------------------
// Escaping
// ---------------------------------------------------------------------------

/// Length of the escaped form of `s`.
fn escaped_len(s: &str) -> usize {
    s.len() + s.bytes().filter(u8::is_ascii_uppercase).count()
}

/// Replaces each uppercase ASCII letter by `!` + its lowercase. The input must
/// be ASCII without `!` (guaranteed by the callers' checks).
fn escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Inverse of [`escape_string`]; the reason on failure.
fn unescape_string(escaped: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(escaped.len());
    let mut bang = false;
    for c in escaped.chars() {
        if !c.is_ascii() {
            return Err("non-ASCII characters are not allowed");
        }
        if bang {
            bang = false;
            if !c.is_ascii_lowercase() {
                return Err("'!' must be followed by a lowercase letter");
            }
            out.push(c.to_ascii_uppercase());
        } else if c == '!' {
            bang = true;
        } else if c.is_ascii_uppercase() {
            return Err("uppercase letters must be escaped as '!' + lowercase");
        } else {
            out.push(c);
        }
    }
    if bang {
        return Err("'!' must be followed by a lowercase letter");
    }
    Ok(out)
}

/// Go's `module.EscapePath`: validates the module path, then escapes it.
pub fn escape_path(decoded: &str) -> Result<String, ProtocolError> {
    ModulePath::parse(decoded).map(|m| m.escaped())
}

/// Go's `module.UnescapePath`: unescapes, then validates the module path.
pub fn unescape_path(escaped: &str) -> Result<String, ProtocolError> {
    let invalid = |reason: &str| {
        ProtocolError::bad_request(format!(
            "invalid escaped module path {}: {reason}",
            quote(escaped)
        ))
    };
    let path = unescape_string(escaped).map_err(invalid)?;
    check_module_path(&path).map_err(|reason| invalid(&reason))?;
    Ok(path)
}

/// Go's `module.EscapeVersion`: the version must be a valid file name
/// without `!`; uppercase letters are escaped.
pub fn escape_version(v: &str) -> Result<String, ProtocolError> {
    if let Err(reason) = check_elem(v, ElemKind::Version) {
        return Err(ProtocolError::bad_request(format!(
            "disallowed version string {}: {reason}",
            quote(v)
        )));
    }
    if v.contains('!') {
        return Err(ProtocolError::bad_request(format!(
            "disallowed version string {}: '!' is not allowed",
            quote(v)
        )));
    }
    Ok(escape_string(v))
}

/// Go's `module.UnescapeVersion`: unescapes and checks the result is a valid
/// file name.
pub fn unescape_version(escaped: &str) -> Result<String, ProtocolError> {
    let invalid = |reason: &str| {
        ProtocolError::bad_request(format!(
            "invalid escaped version {}: {reason}",
            quote(escaped)
        ))
    };
    let v = unescape_string(escaped).map_err(invalid)?;
    check_elem(&v, ElemKind::Version).map_err(|reason| invalid(&reason))?;
    Ok(v)
}

// ---------------------------------------------------------------------------
// Semantic versions
// ---------------------------------------------------------------------------

/// A parsed semantic version, as `golang.org/x/mod/semver` parses it.
struct Semver<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    /// Including the leading `-`, or empty.
    prerelease: &'a str,
    /// Including the leading `+`, or empty.
    build: &'a str,
    /// `v1` or `v1.2`: valid, but not canonical.
    short: bool,
}

/// Splits off a decimal number without a leading zero.
fn parse_num(s: &str) -> Option<(&str, &str)> {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(end);
    if num.is_empty() || (num.len() > 1 && num.starts_with('0')) {
        return None;
    }
    Some((num, rest))
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// `-a.b.c`: non-empty identifiers, numeric ones without leading zeros.
fn is_prerelease(s: &str) -> bool {
    let Some(s) = s.strip_prefix('-') else {
        return false;
    };
    s.split('.').all(|id| {
        !id.is_empty()
            && id.bytes().all(is_ident_char)
            && !(id.len() > 1 && id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// `+a.b.c`: non-empty identifiers.
fn is_build(s: &str) -> bool {
    let Some(s) = s.strip_prefix('+') else {
        return false;
    };
    s.split('.')
        .all(|id| !id.is_empty() && id.bytes().all(is_ident_char))
}

/// Go's `semver` parser; `None` when `semver.IsValid(v)` is false.
fn parse_semver(v: &str) -> Option<Semver<'_>> {
    let rest = v.strip_prefix('v')?;
    let (major, rest) = parse_num(rest)?;
    let short = |minor, patch| Semver {
        major,
        minor,
        patch,
        prerelease: "",
        build: "",
        short: true,
    };
    if rest.is_empty() {
        return Some(short("0", "0"));
    }
    let (minor, rest) = parse_num(rest.strip_prefix('.')?)?;
    if rest.is_empty() {
        return Some(short(minor, "0"));
    }
    let (patch, mut rest) = parse_num(rest.strip_prefix('.')?)?;
    let mut prerelease = "";
    if rest.starts_with('-') {
        let end = rest.find('+').unwrap_or(rest.len());
        prerelease = &rest[..end];
        if !is_prerelease(prerelease) {
            return None;
        }
        rest = &rest[end..];
    }
    let mut build = "";
    if rest.starts_with('+') {
        if !is_build(rest) {
            return None;
        }
        build = rest;
    } else if !rest.is_empty() {
        return None;
    }
    Some(Semver {
        major,
        minor,
        patch,
        prerelease,
        build,
        short: false,
    })
}

/// Go's `module.CanonicalVersion`: `semver.Canonical` keeping `+incompatible`.
/// `None` for an invalid semantic version.
pub fn canonical_version(v: &str) -> Option<String> {
    let p = parse_semver(v)?;
    let mut out = format!("v{}.{}.{}{}", p.major, p.minor, p.patch, p.prerelease);
    if p.build == "+incompatible" {
        out.push_str(p.build);
    }
    Some(out)
}

/// `semver.IsValid(v)` and `v` is its own canonical form, where the canonical
/// form keeps `+incompatible` (and drops any other build metadata).
pub fn is_canonical_semver(v: &str) -> bool {
    match parse_semver(v) {
        Some(p) => !p.short && (p.build.is_empty() || p.build == "+incompatible"),
        None => false,
    }
}

/// Skips a non-empty run of ASCII digits.
fn skip_digits(s: &str) -> Option<&str> {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    (end > 0).then(|| &s[end..])
}

/// Go's `module.IsPseudoVersion`: at least two dashes, valid semver, and
/// `^v[0-9]+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)\d{14}-[A-Za-z0-9]+(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`.
pub fn is_pseudo_version(v: &str) -> bool {
    if v.bytes().filter(|&b| b == b'-').count() < 2 || parse_semver(v).is_none() {
        return false;
    }
    // Build metadata was checked by parse_semver; the regexp's body cannot
    // contain '+', so it ends at the first '+'.
    let body = v.split('+').next().unwrap_or(v);
    // The revision cannot contain '-', so it follows the last '-'.
    let Some(dash) = body.rfind('-') else {
        return false;
    };
    let (head, rev) = (&body[..dash], &body[dash + 1..]);
    if rev.is_empty() || !rev.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    if head.len() < 14 {
        return false;
    }
    let (prefix, timestamp) = head.split_at(head.len() - 14);
    if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    // prefix must be v\d+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)
    let Some(rest) = prefix.strip_prefix('v').and_then(skip_digits) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix('.') else {
        return false;
    };
    if rest == "0.0-" {
        return true;
    }
    let rest = skip_digits(rest)
        .and_then(|r| r.strip_prefix('.'))
        .and_then(skip_digits)
        .and_then(|r| r.strip_prefix('-'));
    matches!(rest, Some(r) if r == "0." || r.ends_with(".0."))
}

/// A canonical semantic version valid for its module (module.Check):
/// canonical semver, pseudo-versions in their three forms, +incompatible only
/// where allowed, major version matching the path's /vN or gopkg.in .vN
/// suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(String);

impl Version {
    /// Validates a decoded version for `module`: it must be canonical
    /// ([`is_canonical_semver`]) and pass Go's `module.Check`. In addition,
    /// like the go command, `+incompatible` is only accepted for major
    /// versions >= 2 of a module path without a major-version suffix.
    pub fn parse(module: &ModulePath, decoded: &str) -> Result<Self, ProtocolError> {
        let Some(p) = parse_semver(decoded) else {
            return Err(ProtocolError::bad_request(format!(
                "invalid version {}: not a semantic version (want a canonical version like v1.2.3)",
                quote(decoded)
            )));
        };
        if escaped_len(decoded) > MAX_VERSION_LEN {
            return Err(ProtocolError::bad_request(format!(
                "invalid version {}: longer than {MAX_VERSION_LEN} bytes escaped",
                quote(decoded)
            )));
        }
        if !is_canonical_semver(decoded) {
            let canonical = canonical_version(decoded).unwrap_or_default();
            return Err(ProtocolError::bad_request(format!(
                "version {} is not canonical; did you mean {canonical:?}?",
                quote(decoded)
            )));
        }
        let invalid = |why: String| {
            ProtocolError::bad_request(format!(
                "version {} is invalid for module {}: {why}",
                quote(decoded),
                quote(module.as_str())
            ))
        };
        let path_major = module.path_major();
        let major = format!("v{}", p.major);
        if p.build == "+incompatible" {
            if !path_major.is_empty() {
                return Err(invalid(
                    "+incompatible is not allowed for a module path with a major version suffix"
                        .into(),
                ));
            }
            if p.major == "0" || p.major == "1" {
                return Err(invalid(format!(
                    "+incompatible is only allowed for major versions v2 and later, not {major}"
                )));
            }
        }
        check_path_major(decoded, &major, p.build, path_major).map_err(invalid)?;
        Ok(Self(decoded.to_owned()))
    }

    /// Unescapes an escaped version and validates it for `module`.
    pub fn from_escaped(module: &ModulePath, escaped: &str) -> Result<Self, ProtocolError> {
        Self::parse(module, &unescape_version(escaped)?)
    }

    /// The decoded version, e.g. `v1.0.0-RC1`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The escaped version, e.g. `v1.0.0-!r!c1`.
    pub fn escaped(&self) -> String {
        escape_string(&self.0)
    }

    /// Whether this is a pseudo-version (`module.IsPseudoVersion`).
    pub fn is_pseudo(&self) -> bool {
        is_pseudo_version(&self.0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Go's `module.CheckPathMajor`; the reason on mismatch.
fn check_path_major(v: &str, major: &str, build: &str, path_major: &str) -> Result<(), String> {
    let mut path_major = path_major;
    if path_major.starts_with(".v") {
        path_major = path_major.strip_suffix("-unstable").unwrap_or(path_major);
    }
    if v.starts_with("v0.0.0-") && path_major == ".v1" {
        // Old pseudo-versions generated v0.0.0- for gopkg.in .v1 paths.
        return Ok(());
    }
    let want = if path_major.is_empty() {
        if major == "v0" || major == "v1" || build == "+incompatible" {
            return Ok(());
        }
        "v0 or v1"
    } else {
        let want = &path_major[1..];
        if want == major {
            return Ok(());
        }
        want
    };
    Err(format!("should be {want}, not {major}"))
}

// ---------------------------------------------------------------------------
// Version queries
// ---------------------------------------------------------------------------

/// What a `.info` request asks for: a canonical version (immutable,
/// cacheable) or a query such as `master`, a commit hash, `v1.2` (resolved
/// upstream, never cached as immutable).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VersionQuery {
    /// A canonical version valid for the module.
    Canonical(Version),
    /// The decoded query string.
    Query(String),
}

impl VersionQuery {
    /// Classifies a decoded `.info` version for `module`: a canonical semver
    /// must be valid for the module (else 400); anything else must be a
    /// conservative query (`[A-Za-z0-9._+~-]`, starting with a letter or
    /// digit, not ending in '.', at most [`MAX_QUERY_LEN`] bytes).
    pub fn parse(module: &ModulePath, decoded: &str) -> Result<Self, ProtocolError> {
        if is_canonical_semver(decoded) {
            return Version::parse(module, decoded).map(Self::Canonical);
        }
        check_query(decoded)?;
        Ok(Self::Query(decoded.to_owned()))
    }

    /// The escaped form, as it appears before `.info`.
    pub fn escaped(&self) -> String {
        match self {
            Self::Canonical(v) => v.escaped(),
            Self::Query(q) => escape_string(q),
        }
    }

    /// The decoded version or query.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Canonical(v) => v.as_str(),
            Self::Query(q) => q,
        }
    }
}

impl fmt::Display for VersionQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn check_query(q: &str) -> Result<(), ProtocolError> {
    let invalid = |why: &str| {
        ProtocolError::bad_request(format!("invalid version query {}: {why}", quote(q)))
    };
    if q.is_empty() {
        return Err(invalid("empty"));
    }
    if q.len() > MAX_QUERY_LEN {
        return Err(invalid(&format!("longer than {MAX_QUERY_LEN} bytes")));
    }
    if let Some(c) = q
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "._+~-".contains(c)))
    {
        return Err(invalid(&format!(
            "invalid char {c:?} (want a version, branch, tag or commit hash made of \
             letters, digits and ._+~-)"
        )));
    }
    if !q.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid("must start with a letter or digit"));
    }
    if q.ends_with('.') {
        return Err(invalid("must not end with '.'"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// One request of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `/<module>/@v/list`
    List { module: ModulePath },
    /// `/<module>/@latest`
    Latest { module: ModulePath },
    /// `/<module>/@v/<version or query>.info`
    Info {
        module: ModulePath,
        version: VersionQuery,
    },
    /// `/<module>/@v/<version>.mod`
    Mod {
        module: ModulePath,
        version: Version,
    },
    /// `/<module>/@v/<version>.zip`
    Zip {
        module: ModulePath,
        version: Version,
    },
    /// `/sumdb/<name>/<path>`
    Sumdb { name: String, path: SumdbPath },
}

/// The part of a `/sumdb/<name>/...` request after the database name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SumdbPath {
    /// `supported`
    Supported,
    /// `latest`
    Latest,
    /// lookup/<escaped module>@<escaped version>; keep the escaped form for forwarding
    Lookup {
        module: ModulePath,
        version: Version,
    },
    /// tile/<H>/<L or "data">/<NNN path>[.p/<W>]; `partial` is Some(W) for .p/W
    Tile {
        height: u8,
        level: TileLevel,
        /// The x001/x234/567 parts, most significant first.
        index: Vec<u16>,
        partial: Option<u16>,
    },
}

/// The level of a tile: a hash level or the `data` tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileLevel {
    Level(u8),
    Data,
}

impl SumdbPath {
    /// The canonical path below `sumdb/<name>/`, e.g. `latest`,
    /// `lookup/github.com/!azure/x@v1.0.0`, `tile/8/0/x001/234.p/5`.
    pub fn as_upstream_path(&self) -> String {
        match self {
            Self::Supported => "supported".into(),
            Self::Latest => "latest".into(),
            Self::Lookup { module, version } => {
                format!("lookup/{}@{}", module.escaped(), version.escaped())
            }
            Self::Tile {
                height,
                level,
                index,
                partial,
            } => {
                let mut out = format!("tile/{height}/");
                match level {
                    TileLevel::Level(l) => out.push_str(&l.to_string()),
                    TileLevel::Data => out.push_str("data"),
                }
                for (i, part) in index.iter().enumerate() {
                    let x = if i + 1 < index.len() { "x" } else { "" };
                    out.push_str(&format!("/{x}{part:03}"));
                }
                if let Some(w) = partial {
                    out.push_str(&format!(".p/{w}"));
                }
                out
            }
        }
    }

    /// Only full tiles (no `.p/`) are immutable.
    pub fn is_immutable(&self) -> bool {
        matches!(self, Self::Tile { partial: None, .. })
    }
}

/// The route kind, for metrics labels and logs: "list","latest","info","mod","zip","sumdb".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    List,
    Latest,
    Info,
    Mod,
    Zip,
    Sumdb,
}

impl Route {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Latest => "latest",
            Self::Info => "info",
            Self::Mod => "mod",
            Self::Zip => "zip",
            Self::Sumdb => "sumdb",
        }
    }

    /// The route template (OpenTelemetry `http.route`): low-cardinality, for span names.
    pub fn template(self) -> &'static str {
        match self {
            Self::List => "/{module}/@v/list",
            Self::Latest => "/{module}/@latest",
            Self::Info => "/{module}/@v/{version}.info",
            Self::Mod => "/{module}/@v/{version}.mod",
            Self::Zip => "/{module}/@v/{version}.zip",
            Self::Sumdb => "/sumdb/{sumdb}/{path}",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Request {
    /// Parses the URL path of a request (with the leading '/', exactly as it
    /// arrived, percent-encoding NOT yet decoded).
    ///
    /// 400 for anything unsafe or malformed, 404 for a safe path matching no
    /// route (see the module documentation).
    pub fn parse(path: &str) -> Result<Request, ProtocolError> {
        if path.len() > MAX_RAW_PATH_LEN {
            return Err(ProtocolError::bad_request(format!(
                "request path {} is too long ({} bytes; at most {MAX_PATH_LEN} bytes decoded)",
                quote(path),
                path.len()
            )));
        }
        if !path.starts_with('/') {
            return Err(ProtocolError::bad_request(format!(
                "request path {} must start with '/'",
                quote(path)
            )));
        }
        let decoded = percent_decode(path)?;
        let rel = &decoded[1..];
        if rel.is_empty() {
            return Err(not_found(path));
        }
        if rel.starts_with('/') {
            return Err(ProtocolError::bad_request(format!(
                "request path {} is absolute (starts with \"//\"); want a relative module path",
                quote(&decoded)
            )));
        }
        // A single trailing slash is harmless but matches no route: 404
        // after the safety checks below.
        let (rel, trailing_slash) = match rel.strip_suffix('/') {
            Some(r) => (r, true),
            None => (rel, false),
        };
        let elems: Vec<&str> = rel.split('/').collect();
        for elem in &elems {
            let why = if elem.is_empty() {
                "empty path element (\"//\")"
            } else if *elem == "." || *elem == ".." {
                "\".\" and \"..\" path elements are not allowed"
            } else if elem.len() > MAX_ELEM_LEN {
                "path element longer than 255 bytes"
            } else {
                continue;
            };
            return Err(ProtocolError::bad_request(format!(
                "invalid request path {}: {why}",
                quote(&decoded)
            )));
        }
        if trailing_slash {
            return Err(not_found(path));
        }
        if elems[0] == "sumdb" {
            return parse_sumdb(&elems[1..], path);
        }
        parse_module_route(&elems, path)
    }

    /// The route kind.
    pub fn route(&self) -> Route {
        match self {
            Self::List { .. } => Route::List,
            Self::Latest { .. } => Route::Latest,
            Self::Info { .. } => Route::Info,
            Self::Mod { .. } => Route::Mod,
            Self::Zip { .. } => Route::Zip,
            Self::Sumdb { .. } => Route::Sumdb,
        }
    }

    /// The escaped path relative to a proxy base URL, e.g.
    /// "github.com/!burnt!sushi/toml/@v/v1.2.0.zip", "golang.org/x/text/@v/list",
    /// "golang.org/x/text/@latest", "sumdb/sum.golang.org/lookup/..." — used
    /// both for the upstream URL and the cache layout.
    pub fn escaped_path(&self) -> String {
        match self {
            Self::List { module } => format!("{}/@v/list", module.escaped()),
            Self::Latest { module } => format!("{}/@latest", module.escaped()),
            Self::Info { module, version } => {
                format!("{}/@v/{}.info", module.escaped(), version.escaped())
            }
            Self::Mod { module, version } => {
                format!("{}/@v/{}.mod", module.escaped(), version.escaped())
            }
            Self::Zip { module, version } => {
                format!("{}/@v/{}.zip", module.escaped(), version.escaped())
            }
            Self::Sumdb { name, path } => format!("sumdb/{name}/{}", path.as_upstream_path()),
        }
    }

    /// True for .info/.mod/.zip of a canonical version and full sumdb tiles:
    /// never changes, never refetched.
    pub fn is_immutable(&self) -> bool {
        match self {
            Self::Info { version, .. } => matches!(version, VersionQuery::Canonical(_)),
            Self::Mod { .. } | Self::Zip { .. } => true,
            Self::List { .. } | Self::Latest { .. } => false,
            Self::Sumdb { path, .. } => path.is_immutable(),
        }
    }

    /// The module the request is about, if any (not for sumdb requests).
    pub fn module(&self) -> Option<&ModulePath> {
        match self {
            Self::List { module }
            | Self::Latest { module }
            | Self::Info { module, .. }
            | Self::Mod { module, .. }
            | Self::Zip { module, .. } => Some(module),
            Self::Sumdb { .. } => None,
        }
    }
}

fn not_found(raw: &str) -> ProtocolError {
    ProtocolError::not_found(format!("not found: {} ({ROUTE_SHAPES})", quote(raw)))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%xx` escapes and refuses anything that could not be part of a
/// protocol path or could escape a directory: invalid escapes, an encoded
/// '/', control characters, '\', non-ASCII, more than [`MAX_PATH_LEN`] bytes.
fn percent_decode(raw: &str) -> Result<String, ProtocolError> {
    let bad = |why: String| {
        ProtocolError::bad_request(format!("invalid request path {}: {why}", quote(raw)))
    };
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = if b[i] == b'%' {
            let hi = b.get(i + 1).copied().and_then(hex_val);
            let lo = b.get(i + 2).copied().and_then(hex_val);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(bad(
                    "invalid percent-encoding (want '%' followed by two hex digits)".into(),
                ));
            };
            let c = hi << 4 | lo;
            if c == b'/' {
                return Err(bad("encoded '/' (%2F) is not allowed".into()));
            }
            i += 3;
            c
        } else {
            i += 1;
            b[i - 1]
        };
        if c.is_ascii_control() {
            return Err(bad(format!(
                "control character {:?} is not allowed",
                char::from(c)
            )));
        }
        if c == b'\\' {
            return Err(bad("'\\' is not allowed".into()));
        }
        if !c.is_ascii() {
            return Err(bad("non-ASCII characters are not allowed".into()));
        }
        out.push(c);
        if out.len() > MAX_PATH_LEN {
            return Err(bad(format!(
                "too long (more than {MAX_PATH_LEN} bytes decoded)"
            )));
        }
    }
    // Only ASCII bytes were pushed.
    String::from_utf8(out).map_err(|_| bad("invalid UTF-8".into()))
}

/// `<module>/@v/list`, `<module>/@v/<v>.info|.mod|.zip`, `<module>/@latest`.
/// Go splits at the first `@v` element: module paths cannot contain '@'.
fn parse_module_route(elems: &[&str], raw: &str) -> Result<Request, ProtocolError> {
    let Some(at) = elems.iter().position(|e| *e == "@v" || *e == "@latest") else {
        return Err(not_found(raw));
    };
    if at == 0 {
        return Err(not_found(raw));
    }
    enum Shape<'a> {
        List,
        Latest,
        File(&'a str, Route),
    }
    let shape = match (elems[at], &elems[at + 1..]) {
        ("@latest", []) => Shape::Latest,
        ("@v", ["list"]) => Shape::List,
        ("@v", [file]) => {
            let found = [
                (".info", Route::Info),
                (".mod", Route::Mod),
                (".zip", Route::Zip),
            ]
            .into_iter()
            .find_map(|(ext, route)| file.strip_suffix(ext).map(|v| (v, route)));
            match found {
                Some((v, route)) if !v.is_empty() => Shape::File(v, route),
                _ => return Err(not_found(raw)),
            }
        }
        _ => return Err(not_found(raw)),
    };
    let module = ModulePath::from_escaped(&elems[..at].join("/"))?;
    Ok(match shape {
        Shape::List => Request::List { module },
        Shape::Latest => Request::Latest { module },
        Shape::File(escaped, route) => {
            let v = unescape_version(escaped)?;
            match route {
                Route::Info => {
                    let version = VersionQuery::parse(&module, &v)?;
                    Request::Info { module, version }
                }
                Route::Mod => {
                    let version = Version::parse(&module, &v)?;
                    Request::Mod { module, version }
                }
                _ => {
                    let version = Version::parse(&module, &v)?;
                    Request::Zip { module, version }
                }
            }
        }
    })
}

/// A checksum database name must look like a lowercase host name.
fn check_sumdb_name(name: &str) -> Result<(), ProtocolError> {
    let ok = name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::bad_request(format!(
            "invalid checksum database name {}: want a lowercase host name like \"sum.golang.org\"",
            quote(name)
        )))
    }
}

/// `sumdb/<name>/supported|latest|lookup/<mod>@<ver>|tile/...` (without the
/// leading `sumdb`).
fn parse_sumdb(elems: &[&str], raw: &str) -> Result<Request, ProtocolError> {
    let [name, kind, rest @ ..] = elems else {
        return Err(not_found(raw));
    };
    match (*kind, rest.len()) {
        ("supported" | "latest", 0) | ("lookup" | "tile", 1..) => {}
        _ => return Err(not_found(raw)),
    }
    check_sumdb_name(name)?;
    let path = match *kind {
        "supported" => SumdbPath::Supported,
        "latest" => SumdbPath::Latest,
        "lookup" => {
            let target = rest.join("/");
            let Some((module, version)) = target.split_once('@') else {
                return Err(ProtocolError::bad_request(format!(
                    "invalid checksum database lookup {}: want lookup/<module>@<version>",
                    quote(&target)
                )));
            };
            let module = ModulePath::from_escaped(module)?;
            let version = Version::from_escaped(&module, version)?;
            SumdbPath::Lookup { module, version }
        }
        _ => parse_tile(rest).map_err(|why| {
            ProtocolError::bad_request(format!(
                "invalid tile path {}: {why} (want tile/<H>/<L or data>/<NNN path>[.p/<W>] \
                 in canonical form)",
                quote(&format!("tile/{}", rest.join("/")))
            ))
        })?,
    };
    Ok(Request::Sumdb {
        name: (*name).to_owned(),
        path,
    })
}

/// A canonical decimal number (no sign, no leading zero) up to `max`.
fn parse_dec(s: &str, max: u32) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>()
        .ok()
        .filter(|&n| n <= u64::from(max))
        .map(|n| n as u32)
}

/// Exactly three digits.
fn parse_nnn(s: &str) -> Option<u16> {
    if s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Go's `tlog.ParseTilePath` (elements after `tile`), including its check
/// that the path is the canonical rendering of the tile.
fn parse_tile(elems: &[&str]) -> Result<SumdbPath, String> {
    let [h, l, parts @ ..] = elems else {
        return Err("too few elements".into());
    };
    let height = parse_dec(h, u32::from(MAX_TILE_HEIGHT))
        .filter(|&h| h >= 1)
        .ok_or("height must be 1 to 30")? as u8;
    let level = if *l == "data" {
        TileLevel::Data
    } else {
        TileLevel::Level(parse_dec(l, 255).ok_or("level must be 0 to 255 or \"data\"")? as u8)
    };
    let mut parts: Vec<&str> = parts.to_vec();
    let mut partial = None;
    if parts.len() >= 2 && parts[parts.len() - 2].ends_with(".p") {
        let full = 1u32 << height;
        let w = parts
            .pop()
            .and_then(|w| parse_dec(w, full - 1))
            .filter(|&w| w >= 1)
            .ok_or("partial width must be 1 to 2^H-1")?;
        partial = Some(u16::try_from(w).map_err(|_| "partial width too large")?);
        let last = parts.len() - 1;
        parts[last] = parts[last].strip_suffix(".p").unwrap_or(parts[last]);
    }
    if parts.is_empty() || parts.len() > MAX_TILE_INDEX_PARTS {
        return Err("index must have 1 to 6 parts".into());
    }
    let mut index = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let digits = if i + 1 < parts.len() {
            part.strip_prefix('x')
                .ok_or("index parts but the last need an 'x' prefix")?
        } else {
            part
        };
        index.push(parse_nnn(digits).ok_or("index parts must be three digits")?);
    }
    if index.len() > 1 && index[0] == 0 {
        return Err("leading x000 index part".into());
    }
    Ok(SumdbPath::Tile {
        height,
        level,
        index,
        partial,
    })
}

/// Keeps lines of an upstream `list` that are canonical, non-pseudo versions
/// (the first whitespace-separated field of each line); dedups; preserves
/// order. Each kept version is followed by '\n'.
pub fn filter_list(body: &str) -> String {
    let mut seen = HashSet::new();
    let mut out = String::new();
    for line in body.lines() {
        let Some(v) = line.split_whitespace().next() else {
            continue;
        };
        if is_canonical_semver(v) && !is_pseudo_version(v) && seen.insert(v) {
            out.push_str(v);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_ok(path: &str) -> Request {
        match Request::parse(path) {
            Ok(r) => r,
            Err(e) => panic!("parse({path:?}) failed: {e}"),
        }
    }

    fn parse_err(path: &str) -> ProtocolError {
        match Request::parse(path) {
            Ok(r) => panic!("parse({path:?}) = {r:?}, want error"),
            Err(e) => {
                assert!(!e.message.contains(['\n', '\r']), "multi-line: {e:?}");
                assert!(
                    e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::NOT_FOUND,
                    "{e:?}"
                );
                e
            }
        }
    }

    fn m(p: &str) -> ModulePath {
        ModulePath::parse(p).unwrap()
    }

    fn v(module: &str, version: &str) -> Version {
        Version::parse(&m(module), version).unwrap()
    }

    // From x/mod module_test.go checkPathTests: (path, CheckPath ok).
    const CHECK_PATH_TESTS: &[(&str, bool)] = &[
        ("x.y/z", true),
        ("x.y", true),
        ("", false),
        ("x.y/\u{FFFD}z", false),
        ("/x.y/z", false),
        ("x./z", false),
        (".x/z", false),
        ("-x/z", false),
        ("x..y/z", true),
        ("x.y/z/../../w", false),
        ("x.y//z", false),
        ("x.y/z//w", false),
        ("x.y/z/", false),
        ("x.y/z/v0", false),
        ("x.y/z/v1", false),
        ("x.y/z/v2", true),
        ("x.y/z/v2.0", false),
        ("X.y/z", false),
        ("!x.y/z", false),
        ("_x.y/z", false),
        ("x.y!/z", false),
        ("x.y\"/z", false),
        ("x.y#/z", false),
        ("x.y$/z", false),
        ("x.y%/z", false),
        ("x.y&/z", false),
        ("x.y'/z", false),
        ("x.y(/z", false),
        ("x.y)/z", false),
        ("x.y*/z", false),
        ("x.y+/z", false),
        ("x.y,/z", false),
        ("x.y-/z", true),
        ("x.y./zt", false),
        ("x.y:/z", false),
        ("x.y;/z", false),
        ("x.y</z", false),
        ("x.y=/z", false),
        ("x.y>/z", false),
        ("x.y?/z", false),
        ("x.y@/z", false),
        ("x.y[/z", false),
        ("x.y\\/z", false),
        ("x.y]/z", false),
        ("x.y^/z", false),
        ("x.y_/z", false),
        ("x.y`/z", false),
        ("x.y{/z", false),
        ("x.y}/z", false),
        ("x.y~/z", false),
        ("x.y/z!", false),
        ("x.y/z\"", false),
        ("x.y/z#", false),
        ("x.y/z$", false),
        ("x.y/z%", false),
        ("x.y/z&", false),
        ("x.y/z'", false),
        ("x.y/z(", false),
        ("x.y/z)", false),
        ("x.y/z*", false),
        ("x.y/z+", false),
        ("x.y/z,", false),
        ("x.y/z-", true),
        ("x.y/z.t", true),
        ("x.y/z/t", true),
        ("x.y/z:", false),
        ("x.y/z;", false),
        ("x.y/z<", false),
        ("x.y/z=", false),
        ("x.y/z>", false),
        ("x.y/z?", false),
        ("x.y/z@", false),
        ("x.y/z[", false),
        ("x.y/z\\", false),
        ("x.y/z]", false),
        ("x.y/z^", false),
        ("x.y/z_", true),
        ("x.y/z`", false),
        ("x.y/z{", false),
        ("x.y/z}", false),
        ("x.y/z~", true),
        ("x.y/x.foo", true),
        ("x.y/aux.foo", false),
        ("x.y/prn", false),
        ("x.y/prn2", true),
        ("x.y/com", true),
        ("x.y/com1", false),
        ("x.y/com1.txt", false),
        ("x.y/calm1", true),
        ("x.y/z~0", false),
        ("x.y/z~09", false),
        ("x.y/z09", true),
        ("x.y/z09~", true),
        ("x.y/z09~09z", true),
        ("x.y/z09~09z~09", false),
        ("github.com/!123/logrus", false),
        ("github.com/user/unicode/испытание", false),
        ("../x", false),
        ("./y", false),
        ("x:y", false),
        ("\\temp\\foo", false),
        (".gitignore", false),
        (".github/ISSUE_TEMPLATE", false),
        ("x☺y", false),
        // More.
        ("github.com/BurntSushi/toml", true),
        ("golang.org/x/text", true),
        ("example.com", true),
        ("example", false),
        ("example.com/m/v10", true),
        ("example.com/m/v01", false),
        ("example.com/m/v1.5", false),
        ("example.com/m/vx", true),
        ("example.com/CON/x", false),
        ("example.com/lpt9.go", false),
        ("example.com/m/..", false),
        ("example.com/m/.", false),
        ("example.com/m/...", false),
        ("example.com/a\0b", false),
        ("example.com/a b", false),
        ("gopkg.in/yaml.v2", true),
        ("gopkg.in/yaml.v0", true),
        ("gopkg.in/yaml.v1", true),
        ("gopkg.in/yaml.v01", false),
        ("gopkg.in/yaml", false),
        ("gopkg.in/check.v1-unstable", true),
        ("gopkg.in/user/pkg.v3", true),
        ("gopkg.in/yaml.v2/v2", false),
    ];

    #[test]
    fn check_path_table() {
        for &(path, ok) in CHECK_PATH_TESTS {
            let got = ModulePath::parse(path);
            assert_eq!(got.is_ok(), ok, "ModulePath::parse({path:?}) = {got:?}");
            if let Err(e) = got {
                assert_eq!(e.status, StatusCode::BAD_REQUEST);
                assert!(e.message.starts_with("malformed module path"), "{e}");
                assert!(!e.message.contains('\n'));
                assert!(escape_path(path).is_err());
                assert!(unescape_path(path).is_err());
            } else {
                assert_eq!(escape_path(path).unwrap(), m(path).escaped());
            }
        }
    }

    #[test]
    fn long_module_paths() {
        let long_elem = format!("example.com/{}", "a".repeat(256));
        assert!(ModulePath::parse(&long_elem).is_err());
        let ok_elem = format!("example.com/{}", "a".repeat(255));
        assert_eq!(ok_elem.len(), 267);
        assert!(ModulePath::parse(&ok_elem).is_ok());
        let upper_elem = format!("example.com/{}", "A".repeat(128));
        assert!(
            ModulePath::parse(&upper_elem).is_err(),
            "escaped element is 256 bytes"
        );
        assert!(ModulePath::parse(&format!("example.com/{}", "A".repeat(127))).is_ok());
        let at_limit = format!("example.com{}", "/abcdefg".repeat(62)); // 11 + 496 bytes
        assert!(ModulePath::parse(&at_limit).is_ok());
        assert!(ModulePath::parse(&format!("{at_limit}/abcdef")).is_err());
        let long_version = format!("v1.0.0-{}", "a".repeat(MAX_VERSION_LEN));
        assert!(Version::parse(&m("example.com/m"), &long_version).is_err());
        let long = format!("example.com{}", "/abcdefgh".repeat(200));
        let e = ModulePath::parse(&long).unwrap_err();
        assert!(
            e.message.len() < 400,
            "message not truncated: {}",
            e.message.len()
        );
    }

    #[test]
    fn split_path_version_table() {
        for (prefix, major) in [
            ("x.y/z", ""),
            ("x.y/z", "/v2"),
            ("x.y/z", "/v3"),
            ("x.y/v", ""),
            ("gopkg.in/yaml", ".v0"),
            ("gopkg.in/yaml", ".v1"),
            ("gopkg.in/yaml", ".v2"),
            ("gopkg.in/yaml", ".v3"),
            ("gopkg.in/yaml", ".v1-unstable"),
        ] {
            let path = format!("{prefix}{major}");
            assert_eq!(split_path_version(&path), Some((prefix, major)), "{path}");
        }
        for bad in [
            "x.y/z/v1",
            "x.y/z/v0",
            "x.y/z/v01",
            "x.y/z/v2.1",
            "gopkg.in/yaml",
        ] {
            assert_eq!(split_path_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn escape_table() {
        for (path, esc) in [
            (
                "ascii.com/abcdefghijklmnopqrstuvwxyz.-/~_0123456789",
                "ascii.com/abcdefghijklmnopqrstuvwxyz.-/~_0123456789",
            ),
            (
                "github.com/GoogleCloudPlatform/omega",
                "github.com/!google!cloud!platform/omega",
            ),
            (
                "github.com/Azure/azure-sdk-for-go",
                "github.com/!azure/azure-sdk-for-go",
            ),
            ("github.com/Sirupsen/logrus", "github.com/!sirupsen/logrus"),
        ] {
            assert_eq!(escape_path(path).unwrap(), esc);
            assert_eq!(unescape_path(esc).unwrap(), path);
            assert_eq!(ModulePath::from_escaped(esc).unwrap().as_str(), path);
        }
        for bad in [
            "github.com/GoogleCloudPlatform/omega",
            "github.com/!google!cloud!platform!/omega",
            "github.com/!0google!cloud!platform/omega",
            "github.com/!_google!cloud!platform/omega",
            "github.com/!!google!cloud!platform/omega",
            "github.com/omega!",
            "",
        ] {
            let e = unescape_path(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.starts_with("invalid escaped module path"), "{e}");
        }
        let e = unescape_path("github.com/Foo/bar").unwrap_err();
        assert_eq!(
            e.message,
            "invalid escaped module path \"github.com/Foo/bar\": \
             uppercase letters must be escaped as '!' + lowercase"
        );
    }

    #[test]
    fn escape_version_table() {
        assert_eq!(escape_version("v1.0.0-RC1").unwrap(), "v1.0.0-!r!c1");
        assert_eq!(unescape_version("v1.0.0-!r!c1").unwrap(), "v1.0.0-RC1");
        assert_eq!(escape_version("v1.2.3").unwrap(), "v1.2.3");
        for bad in [
            "", ".", "..", "v1!", "a/b", "a\\b", "v1.", "con", "a\0", "a*b", "ü",
        ] {
            assert!(escape_version(bad).is_err(), "{bad:?}");
        }
        for bad in ["V1.0.0", "v1!", "v1!0", "a/b", "..", "", "!"] {
            assert!(unescape_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn semver_table() {
        // (version, valid, canonical (keeping +incompatible))
        for (ver, valid, canonical) in [
            ("v1.2.3", true, true),
            ("v0.0.0", true, true),
            ("v1.2.3-pre", true, true),
            ("v1.2.3-pre.1.x-y", true, true),
            ("v1.2.3-0.pre", true, true),
            ("v1.2.3-01", false, false),
            ("v1.2.3-a.01", false, false),
            ("v1.2.3-a..b", false, false),
            ("v1.2.3-", false, false),
            ("v1.2.3+meta", true, false),
            ("v1.2.3+incompatible", true, true),
            ("v1.2.3-pre+incompatible", true, true),
            ("v1.2.3+incompatible.x", true, false),
            ("v1.2.3+", false, false),
            ("v1.2.3+a..b", false, false),
            ("v1.2.3+01", true, false),
            ("v1", true, false),
            ("v1.2", true, false),
            ("v1-pre", false, false),
            ("v1.2-pre", false, false),
            ("1.2.3", false, false),
            ("V1.2.3", false, false),
            ("v01.2.3", false, false),
            ("v1.02.3", false, false),
            ("v1.2.03", false, false),
            ("v1.2.3.4", false, false),
            ("v", false, false),
            ("", false, false),
            ("v1.2.3 ", false, false),
            ("v1..3", false, false),
            ("v18446744073709551616.0.0", true, true),
        ] {
            assert_eq!(parse_semver(ver).is_some(), valid, "valid {ver:?}");
            assert_eq!(is_canonical_semver(ver), canonical, "canonical {ver:?}");
        }
        assert_eq!(canonical_version("v1.2").as_deref(), Some("v1.2.0"));
        assert_eq!(canonical_version("v1").as_deref(), Some("v1.0.0"));
        assert_eq!(canonical_version("v1.2.3+meta").as_deref(), Some("v1.2.3"));
        assert_eq!(
            canonical_version("v2.0.0+incompatible").as_deref(),
            Some("v2.0.0+incompatible")
        );
        assert_eq!(canonical_version("vx"), None);
    }

    #[test]
    fn pseudo_version_table() {
        for (ver, pseudo) in [
            ("v0.0.0-20191109021931-daa7c04131f5", true),
            ("v1.0.0-20191109021931-daa7c04131f5", true),
            ("v2.0.0-20191109021931-daa7c04131f5", true),
            ("v3.0.0-20191109021931-daa7c04131f5+incompatible", true),
            ("v1.1.0-20191109021931-daa7c04131f5", false),
            ("v0.0.0-20191109021931-daa7c04131f5+incompatible", true),
            ("v1.2.3-pre.0.20191109021931-daa7c04131f5", true),
            ("v1.2.3-pre.x.0.20191109021931-daa7c04131f5", true),
            ("v1.2.4-0.20191109021931-daa7c04131f5", true),
            ("v1.2.4-0.20191109021931-daa7c04131f5+incompatible", true),
            ("v2.0.0-0.20191109021931-daa7c04131f5", true),
            ("v0.0.0-2019110902193-daa7c04131f5", false), // 13 digits
            ("v0.0.0-201911090219310-daa7c04131f5", false), // 15 digits
            ("v0.0.0-20191109021931-", false),
            ("v0.0.0-20191109021931-daa7_04131f5", false),
            ("v1.2.4-1.20191109021931-daa7c04131f5", false),
            ("v1.2.4-pre.20191109021931-daa7c04131f5", false),
            ("v1.2.3", false),
            ("v1.2.3-pre", false),
            ("v1.2.3-a-b", false),
            ("v0.0.0-20191109021931-daa7c04131f5-x", false),
            ("v00.0.0-20191109021931-daa7c04131f5", false),
            ("v0.0-20191109021931-daa7c04131f5", false),
            ("", false),
        ] {
            assert_eq!(is_pseudo_version(ver), pseudo, "{ver:?}");
        }
        assert!(v("example.com/m", "v0.0.0-20191109021931-daa7c04131f5").is_pseudo());
        assert!(!v("example.com/m", "v1.2.3").is_pseudo());
    }

    #[test]
    fn module_check_table() {
        // From x/mod module_test.go checkTests, plus the +incompatible rules
        // the go command enforces on top of module.Check.
        for (path, ver, ok) in [
            ("rsc.io/quote", "0.1.0", false),
            ("github.com/go-yaml/yaml", "v0.8.0", true),
            ("github.com/go-yaml/yaml", "v1.0.0", true),
            ("github.com/go-yaml/yaml", "v2.0.0", false),
            ("github.com/go-yaml/yaml", "v2.1.5", false),
            ("github.com/go-yaml/yaml", "v3.0.0", false),
            ("github.com/go-yaml/yaml/v2", "v1.0.0", false),
            ("github.com/go-yaml/yaml/v2", "v2.0.0", true),
            ("github.com/go-yaml/yaml/v2", "v2.1.5", true),
            ("github.com/go-yaml/yaml/v2", "v3.0.0", false),
            ("gopkg.in/yaml.v0", "v0.8.0", true),
            ("gopkg.in/yaml.v0", "v1.0.0", false),
            ("gopkg.in/yaml.v0", "v2.0.0", false),
            ("gopkg.in/yaml.v1", "v0.8.0", false),
            ("gopkg.in/yaml.v1", "v1.0.0", true),
            ("gopkg.in/yaml.v1", "v2.0.0", false),
            ("gopkg.in/check.v1", "v0.0.0", false),
            (
                "gopkg.in/check.v1",
                "v0.0.0-20160102150405-abcdef123456",
                true,
            ),
            ("gopkg.in/yaml.v2", "v1.0.0", false),
            ("gopkg.in/yaml.v2", "v2.0.0", true),
            ("gopkg.in/yaml.v2", "v2.1.5", true),
            ("gopkg.in/yaml.v2", "v3.0.0", false),
            ("gopkg.in/yaml.v1-unstable", "v1.0.0", true),
            ("gopkg.in/yaml.v1-unstable", "v2.0.0", false),
            ("rsc.io/quote", "v17.0.0", false),
            ("rsc.io/quote", "v17.0.0+incompatible", true),
            ("rsc.io/quote", "v2.0.0+incompatible", true),
            (
                "rsc.io/quote",
                "v2.0.0-0.20191109021931-daa7c04131f5+incompatible",
                true,
            ),
            ("rsc.io/quote", "v1.0.0+incompatible", false),
            ("rsc.io/quote", "v0.1.0+incompatible", false),
            ("rsc.io/quote/v2", "v2.0.0+incompatible", false),
            ("gopkg.in/yaml.v2", "v2.0.0+incompatible", false),
            (
                "rsc.io/quote/v3",
                "v3.0.0-20191109021931-daa7c04131f5",
                true,
            ),
            (
                "rsc.io/quote/v3",
                "v0.0.0-20191109021931-daa7c04131f5",
                false,
            ),
            ("rsc.io/quote", "v1.2", false),
            ("rsc.io/quote", "v1.2.3+meta", false),
        ] {
            let got = Version::parse(&m(path), ver);
            assert_eq!(
                got.is_ok(),
                ok,
                "Version::parse({path:?}, {ver:?}) = {got:?}"
            );
            if let Err(e) = got {
                assert_eq!(e.status, StatusCode::BAD_REQUEST);
            }
        }
        let e = Version::parse(&m("rsc.io/quote"), "v1.2").unwrap_err();
        assert_eq!(
            e.message,
            "version \"v1.2\" is not canonical; did you mean \"v1.2.0\"?"
        );
        let e = Version::parse(&m("rsc.io/quote"), "v2.0.0").unwrap_err();
        assert_eq!(
            e.message,
            "version \"v2.0.0\" is invalid for module \"rsc.io/quote\": should be v0 or v1, not v2"
        );
        let e = Version::parse(&m("rsc.io/quote"), "master").unwrap_err();
        assert!(e.message.starts_with("invalid version \"master\""), "{e}");
    }

    #[test]
    fn routes() {
        let text = m("golang.org/x/text");
        assert_eq!(
            parse_ok("/golang.org/x/text/@v/list"),
            Request::List {
                module: text.clone()
            }
        );
        assert_eq!(
            parse_ok("/golang.org/x/text/@latest"),
            Request::Latest {
                module: text.clone()
            }
        );
        assert_eq!(
            parse_ok("/golang.org/x/text/@v/v0.3.0.info"),
            Request::Info {
                module: text.clone(),
                version: VersionQuery::Canonical(v("golang.org/x/text", "v0.3.0")),
            }
        );
        assert_eq!(
            parse_ok("/golang.org/x/text/@v/v0.3.0.mod"),
            Request::Mod {
                module: text.clone(),
                version: v("golang.org/x/text", "v0.3.0"),
            }
        );
        let zip = parse_ok("/github.com/!burnt!sushi/toml/@v/v1.2.0.zip");
        assert_eq!(
            zip,
            Request::Zip {
                module: m("github.com/BurntSushi/toml"),
                version: v("github.com/BurntSushi/toml", "v1.2.0"),
            }
        );
        assert_eq!(
            zip.escaped_path(),
            "github.com/!burnt!sushi/toml/@v/v1.2.0.zip"
        );
        assert_eq!(zip.route(), Route::Zip);
        assert!(zip.is_immutable());
        assert_eq!(zip.module().unwrap().as_str(), "github.com/BurntSushi/toml");

        for (query, want) in [
            ("master", "master"),
            ("v1.2", "v1.2"),
            ("latest", "latest"),
            ("daa7c04131f5", "daa7c04131f5"),
            ("!feature-!x", "Feature-X"),
            ("v1.2.3+meta", "v1.2.3+meta"),
            ("release~1_2", "release~1_2"),
        ] {
            let r = parse_ok(&format!("/golang.org/x/text/@v/{query}.info"));
            assert_eq!(
                r,
                Request::Info {
                    module: text.clone(),
                    version: VersionQuery::Query(want.into()),
                }
            );
            assert!(!r.is_immutable());
            assert_eq!(
                r.escaped_path(),
                format!("golang.org/x/text/@v/{query}.info")
            );
        }

        // Uppercase in version, escaped.
        let r = parse_ok("/example.com/m/@v/v1.0.0-!r!c1.mod");
        assert_eq!(
            r,
            Request::Mod {
                module: m("example.com/m"),
                version: v("example.com/m", "v1.0.0-RC1"),
            }
        );
        assert_eq!(r.escaped_path(), "example.com/m/@v/v1.0.0-!r!c1.mod");

        // Percent-encoded but harmless characters decode.
        assert_eq!(
            parse_ok("/golang%2eorg/x/text/@v/v0.3.0%2Ezip"),
            parse_ok("/golang.org/x/text/@v/v0.3.0.zip")
        );

        let routes = [
            ("/golang.org/x/text/@v/list", Route::List, "list", false),
            ("/golang.org/x/text/@latest", Route::Latest, "latest", false),
            (
                "/golang.org/x/text/@v/v0.3.0.info",
                Route::Info,
                "info",
                true,
            ),
            ("/golang.org/x/text/@v/v0.3.0.mod", Route::Mod, "mod", true),
            ("/golang.org/x/text/@v/v0.3.0.zip", Route::Zip, "zip", true),
            (
                "/sumdb/sum.golang.org/supported",
                Route::Sumdb,
                "sumdb",
                false,
            ),
        ];
        for (path, route, label, immutable) in routes {
            let r = parse_ok(path);
            assert_eq!(r.route(), route);
            assert_eq!(r.route().as_str(), label);
            assert_eq!(r.is_immutable(), immutable, "{path}");
            assert_eq!(format!("/{}", r.escaped_path()), path);
        }
    }

    #[test]
    fn sumdb_routes() {
        let cases = [
            ("supported", SumdbPath::Supported, false),
            ("latest", SumdbPath::Latest, false),
            (
                "lookup/github.com/!azure/x@v1.0.0",
                SumdbPath::Lookup {
                    module: m("github.com/Azure/x"),
                    version: v("github.com/Azure/x", "v1.0.0"),
                },
                false,
            ),
            (
                "tile/8/0/x001/234.p/5",
                SumdbPath::Tile {
                    height: 8,
                    level: TileLevel::Level(0),
                    index: vec![1, 234],
                    partial: Some(5),
                },
                false,
            ),
            (
                "tile/8/1/000",
                SumdbPath::Tile {
                    height: 8,
                    level: TileLevel::Level(1),
                    index: vec![0],
                    partial: None,
                },
                true,
            ),
            (
                "tile/8/data/x002/x000/999",
                SumdbPath::Tile {
                    height: 8,
                    level: TileLevel::Data,
                    index: vec![2, 0, 999],
                    partial: None,
                },
                true,
            ),
            (
                "tile/8/data/000.p/255",
                SumdbPath::Tile {
                    height: 8,
                    level: TileLevel::Data,
                    index: vec![0],
                    partial: Some(255),
                },
                false,
            ),
            (
                "tile/1/0/001.p/1",
                SumdbPath::Tile {
                    height: 1,
                    level: TileLevel::Level(0),
                    index: vec![1],
                    partial: Some(1),
                },
                false,
            ),
        ];
        for (rest, want, immutable) in cases {
            let raw = format!("/sumdb/sum.golang.org/{rest}");
            let r = parse_ok(&raw);
            assert_eq!(
                r,
                Request::Sumdb {
                    name: "sum.golang.org".into(),
                    path: want.clone(),
                }
            );
            assert_eq!(want.as_upstream_path(), rest);
            assert_eq!(want.is_immutable(), immutable);
            assert_eq!(r.is_immutable(), immutable);
            assert_eq!(r.escaped_path(), format!("sumdb/sum.golang.org/{rest}"));
        }

        // 400: bad names, bad tiles, bad lookups.
        for bad in [
            "/sumdb/Sum.golang.org/latest",
            "/sumdb/localhost/latest",
            "/sumdb/-sum.golang.org/latest",
            "/sumdb/sum-.golang.org/latest",
            "/sumdb/sum..golang.org/latest",
            "/sumdb/sum.golang.org./latest",
            "/sumdb/sum_db.org/latest",
            "/sumdb/sum.golang.org/tile/8/0",
            "/sumdb/sum.golang.org/tile/8/0/1",
            "/sumdb/sum.golang.org/tile/8/0/0001",
            "/sumdb/sum.golang.org/tile/8/0/x001",
            "/sumdb/sum.golang.org/tile/8/0/001/002",
            "/sumdb/sum.golang.org/tile/8/0/x000/002",
            "/sumdb/sum.golang.org/tile/0/0/001",
            "/sumdb/sum.golang.org/tile/31/0/001",
            "/sumdb/sum.golang.org/tile/08/0/001",
            "/sumdb/sum.golang.org/tile/8/00/001",
            "/sumdb/sum.golang.org/tile/8/-1/001",
            "/sumdb/sum.golang.org/tile/8/256/001",
            "/sumdb/sum.golang.org/tile/8/0/001.p/0",
            "/sumdb/sum.golang.org/tile/8/0/001.p/256",
            "/sumdb/sum.golang.org/tile/8/0/001.p/05",
            "/sumdb/sum.golang.org/tile/8/0/001.p",
            "/sumdb/sum.golang.org/tile/8/0/x001/x002/x003/x004/x005/x006/007",
            "/sumdb/sum.golang.org/tile/20/0/001.p/70000",
            "/sumdb/sum.golang.org/tile/+8/0/001",
            "/sumdb/sum.golang.org/lookup/github.com/x/y",
            "/sumdb/sum.golang.org/lookup/github.com/X/y@v1.0.0",
            "/sumdb/sum.golang.org/lookup/github.com/x/y@v1.0",
            "/sumdb/sum.golang.org/lookup/github.com/x/y@v2.0.0",
            "/sumdb/sum.golang.org/lookup/github.com/x/y@v1.0.0/go.mod",
            "/sumdb/sum.golang.org/lookup/github.com/x/y@v1.0.0@v1.0.0",
        ] {
            assert_eq!(parse_err(bad).status, StatusCode::BAD_REQUEST, "{bad}");
        }
        // 404: no such sumdb route.
        for bad in [
            "/sumdb",
            "/sumdb/sum.golang.org",
            "/sumdb/sum.golang.org/foo",
            "/sumdb/sum.golang.org/supported/x",
            "/sumdb/sum.golang.org/latest/x",
            "/sumdb/sum.golang.org/lookup",
            "/sumdb/sum.golang.org/tile",
            "/sumdb/sum.golang.org/latest/",
        ] {
            assert_eq!(parse_err(bad).status, StatusCode::NOT_FOUND, "{bad}");
        }
    }

    #[test]
    fn not_found_shapes() {
        for path in [
            "/",
            "/foo",
            "/x/@v/",
            "/x/@v/v1.0.0.tar",
            "/golang.org/x/text",
            "/golang.org/x/text/",
            "/golang.org/x/text/@v",
            "/golang.org/x/text/@v/list/",
            "/golang.org/x/text/@v/lists",
            "/golang.org/x/text/@v/.info",
            "/golang.org/x/text/@v/.zip",
            "/golang.org/x/text/@v/v1.0.0",
            "/golang.org/x/text/@v/v1.0.0.zip/extra",
            "/golang.org/x/text/@latest/x",
            "/golang.org/x/text/@v/v1.0.0.ZIP",
            "/@v/list",
            "/@latest",
            "/golang.org/x/text/@V/list",
        ] {
            let e = parse_err(path);
            assert_eq!(e.status, StatusCode::NOT_FOUND, "{path}: {e}");
            assert!(e.message.starts_with("not found: "), "{e}");
        }
    }

    #[test]
    fn bad_requests() {
        for path in [
            // Module path problems.
            "/x/@v/list",
            "/github.com/Foo/bar/@v/list",
            "/github.com/!!foo/bar/@v/list",
            "/github.com/foo!/bar/@v/list",
            "/github.com/!0/bar/@v/list",
            "/GitHub.com/foo/@v/list",
            "/example.com/m/v1/@v/list",
            "/example.com/a@b/@v/list",
            "/example.com/m@v1.0.0/@v/list",
            "/example.com/m/@v1/@v/list",
            "/example.com/con/@v/list",
            "/example.com/m~1/@latest",
            "/example.com/.hidden/@latest",
            "/example.com/m./@latest",
            "/example.com/m%20x/@latest",
            "/example.com/m%25/@latest",
            "/example.com/%c3%a9/@latest",
            "/example.com/é/@latest",
            // Version problems.
            "/example.com/m/@v/v1.2.mod",
            "/example.com/m/@v/master.zip",
            "/example.com/m/@v/v2.0.0.zip",
            "/example.com/m/@v/v2.0.0.info",
            "/example.com/m/@v/v1.0.0+incompatible.mod",
            "/example.com/m/v2/@v/v2.0.0+incompatible.mod",
            "/example.com/m/@v/V1.0.0.mod",
            "/example.com/m/@v/v1.0.0-RC1.mod",
            "/example.com/m/@v/v1.0.0-!.mod",
            "/example.com/m/@v/v1.2.3+meta.zip",
            "/example.com/m/@v/-x.info",
            "/example.com/m/@v/x..info",
            "/example.com/m/@v/a%40b.info",
            "/example.com/m/@v/a=b.info",
            "/example.com/m/@v/a%20b.info",
            // Query length.
            &format!("/example.com/m/@v/{}.info", "a".repeat(129)),
        ] {
            let e = parse_err(path);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{path}: {e}");
        }
        let e = parse_err("/github.com/Foo/bar/@v/list");
        assert_eq!(
            e.message,
            "invalid escaped module path \"github.com/Foo/bar\": \
             uppercase letters must be escaped as '!' + lowercase"
        );
        let e = parse_err("/example.com/m/@v/v1.2.zip");
        assert!(e.message.contains("did you mean \"v1.2.0\""), "{e}");
        let ok_query = format!("/example.com/m/@v/{}.info", "a".repeat(128));
        parse_ok(&ok_query);
    }

    #[test]
    fn traversal_attempts() {
        let long_2000 = format!("/example.com/{}/@v/list", "a".repeat(2000));
        let long_many = format!("/example.com{}/@v/list", "/ab".repeat(700));
        let long_encoded = format!("/example.com/{}/@v/list", "%61".repeat(1100));
        let long_raw = "/".to_string() + &"%2e".repeat(2000);
        for path in [
            "/../../etc/passwd",
            "/..",
            "/.",
            "/./golang.org/x/text/@v/list",
            "/%2e%2e/x/@v/list",
            "/%2E%2E/%2e%2e/etc/passwd",
            "/golang.org/x/text/@v/..%2f..%2fsecret.zip",
            "/golang.org/x/text/@v/..%2F..%2Fsecret.zip",
            "/golang.org%2fx%2ftext/@v/list",
            "/golang.org/x/../../text/@v/list",
            "/golang.org/x/text/@v/../../../etc/passwd.zip",
            "/golang.org/x/text/@v/%2e%2e.zip",
            "/golang.org/x/text/@v/v1.0.0.zip%00",
            "/golang.org/x/text%00/@v/list",
            "/golang.org/x/text/@v/list%0a",
            "/golang.org/x/text/@v/list%0d%0aX-Injected: 1",
            "/golang.org/x/text/@v/\u{7f}.zip",
            "/golang.org\\x\\text/@v/list",
            "/golang.org/x/text/@v/..\\..\\secret.zip",
            "/golang.org/x/text%5c..%5c/@v/list",
            "//etc/passwd",
            "///etc/passwd",
            "//golang.org/x/text/@v/list",
            "/golang.org//x/text/@v/list",
            "/golang.org/x/text/@v//list",
            "/sumdb/sum.golang.org/../../etc/passwd",
            "/sumdb/sum.golang.org/lookup/../../x@v1.0.0",
            "/sumdb/%2e%2e/latest",
            "/golang.org/x/text/@v/v1.0.0.zip%",
            "/golang.org/x/text/@v/v1.0.0.zip%2",
            "/golang.org/x/text/@v/v1.0.0.zip%zz",
            "/golang.org/x/text/@v/v1.0.0.zip%%30",
            "golang.org/x/text/@v/list",
            "",
            &long_2000,
            &long_many,
            &long_encoded,
            &long_raw,
        ] {
            let e = parse_err(path);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{path:?}: {e}");
            assert!(e.message.len() < 600, "message too long for {path:?}");
        }
        let e = parse_err("/golang.org/x/text%00/@v/list");
        assert!(e.message.contains("\\0"), "{e}");
    }

    #[test]
    fn filter_list_table() {
        let body = "v1.0.0\nv1.1.0 2019-01-01T00:00:00Z\r\n\nv1.0.0\nmaster\nv1.2\n\
                    v0.0.0-20191109021931-daa7c04131f5\nv2.0.0+incompatible\nv1.3.0+meta\n  v1.4.0-rc.1  \n\
                    v1.2.4-0.20191109021931-daa7c04131f5\nv01.0.0\n";
        assert_eq!(
            filter_list(body),
            "v1.0.0\nv1.1.0\nv2.0.0+incompatible\nv1.4.0-rc.1\n"
        );
        assert_eq!(filter_list(""), "");
        assert_eq!(filter_list("\n\n"), "");
    }

    #[test]
    fn error_messages_are_one_line_and_quoted() {
        let e = parse_err("/example.com/m/@v/a%0Ab.info");
        assert!(e.message.contains("\\n"), "{e}");
        let e = ModulePath::parse("example.com/a\nb").unwrap_err();
        assert!(!e.message.contains('\n'));
        assert!(e.message.contains("\\n"), "{e}");
        let e = ProtocolError::bad_request("a\nb\rc");
        assert_eq!(e.message, "a b c");
        assert_eq!(e.to_string(), "a b c");
    }

    #[test]
    fn display_and_accessors() {
        let module = m("github.com/BurntSushi/toml");
        assert_eq!(module.to_string(), "github.com/BurntSushi/toml");
        assert_eq!(module.escaped(), "github.com/!burnt!sushi/toml");
        assert_eq!(m("example.com/m/v3").path_major(), "/v3");
        assert_eq!(m("gopkg.in/yaml.v2").path_major(), ".v2");
        let ver = v("example.com/m", "v1.0.0-RC1");
        assert_eq!(ver.to_string(), "v1.0.0-RC1");
        assert_eq!(ver.as_str(), "v1.0.0-RC1");
        assert_eq!(ver.escaped(), "v1.0.0-!r!c1");
        let q = VersionQuery::Query("Main".into());
        assert_eq!(q.escaped(), "!main");
        assert_eq!(q.to_string(), "Main");
        assert_eq!(VersionQuery::Canonical(ver).escaped(), "v1.0.0-!r!c1");
        assert_eq!(Route::Sumdb.to_string(), "sumdb");
    }

    // ------------------------------------------------------------------
    // Property tests
    // ------------------------------------------------------------------

    fn module_path_strategy() -> impl Strategy<Value = ModulePath> {
        (
            "[a-z0-9][a-z0-9-]{0,8}\\.[a-z]{2,4}",
            prop::collection::vec("[A-Za-z0-9_~][A-Za-z0-9._~-]{0,8}[A-Za-z0-9_~-]?", 0..4),
            prop::option::of(2u32..30),
        )
            .prop_filter_map("valid module path", |(host, elems, major)| {
                let mut p = host;
                for e in elems {
                    p.push('/');
                    p.push_str(&e);
                }
                if let Some(n) = major {
                    p.push_str(&format!("/v{n}"));
                }
                ModulePath::parse(&p).ok()
            })
    }

    fn gopkg_in_strategy() -> impl Strategy<Value = ModulePath> {
        ("[a-z][a-z0-9]{0,8}", 0u32..5, any::<bool>()).prop_filter_map(
            "valid gopkg.in path",
            |(name, n, unstable)| {
                let suffix = if unstable { "-unstable" } else { "" };
                ModulePath::parse(&format!("gopkg.in/{name}.v{n}{suffix}")).ok()
            },
        )
    }

    fn version_string_strategy() -> BoxedStrategy<String> {
        let num = prop_oneof![Just(0u64), 1u64..5, 0u64..1_000_000];
        let pre = prop::option::of("-[0-9A-Za-z-]{1,6}(\\.[0-9A-Za-z-]{1,6}){0,2}");
        let build = prop_oneof![
            Just(String::new()),
            Just("+incompatible".to_string()),
            "\\+[0-9A-Za-z-]{1,6}",
        ];
        let pseudo = (
            0u64..5,
            "[0-9]{14}",
            "[0-9a-f]{12}",
            prop_oneof![Just(""), Just("+incompatible")],
        )
            .prop_map(|(major, ts, rev, b)| format!("v{major}.0.0-{ts}-{rev}{b}"));
        let pseudo_pre = (0u64..5, 0u64..9, 0u64..9, "[0-9]{14}", "[0-9a-f]{12}")
            .prop_map(|(a, b, c, ts, rev)| format!("v{a}.{b}.{c}-0.{ts}-{rev}"));
        prop_oneof![
            (num.clone(), num.clone(), num, pre, build).prop_map(|(a, b, c, pre, build)| {
                format!("v{a}.{b}.{c}{}{build}", pre.unwrap_or_default())
            }),
            pseudo,
            pseudo_pre,
            "v[0-9]{1,3}(\\.[0-9]{1,3})?",
        ]
        .boxed()
    }

    /// Rewrites the major version (and `+incompatible`) of a generated
    /// version so that it suits `module`, to keep rejections rare.
    fn fit_major(module: &ModulePath, ver: &str) -> String {
        let Some(rest) = ver.strip_prefix('v') else {
            return ver.to_string();
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (major, rest) = rest.split_at(digits);
        let major: u64 = major.parse().unwrap_or(0);
        let path_major = module.path_major();
        let wanted = path_major
            .trim_start_matches(['/', '.'])
            .trim_start_matches('v')
            .trim_end_matches("-unstable");
        if wanted.is_empty() {
            if rest.ends_with("+incompatible") {
                format!("v{}{rest}", major.max(2))
            } else {
                format!("v{}{rest}", major % 2)
            }
        } else {
            format!("v{wanted}{}", rest.trim_end_matches("+incompatible"))
        }
    }

    fn module_and_version() -> impl Strategy<Value = (ModulePath, Version)> {
        (
            prop_oneof![module_path_strategy(), gopkg_in_strategy()],
            version_string_strategy(),
        )
            .prop_filter_map("valid version for module", |(module, ver)| {
                let version = Version::parse(&module, &fit_major(&module, &ver)).ok()?;
                Some((module, version))
            })
    }

    /// Checks the round-trip and safety properties of a successful parse.
    fn check_round_trip(req: &Request) {
        let p = req.escaped_path();
        assert!(!p.starts_with('/'), "absolute: {p:?}");
        assert!(
            !p.contains('\\') && !p.contains('\0') && !p.contains('%'),
            "{p:?}"
        );
        assert!(
            p.split('/').all(|e| !e.is_empty() && e != "." && e != ".."),
            "bad element in {p:?}"
        );
        let again = Request::parse(&format!("/{p}"))
            .unwrap_or_else(|e| panic!("escaped path {p:?} does not re-parse: {e}"));
        assert_eq!(&again, req);
        assert_eq!(again.escaped_path(), p);
    }

    /// Concatenations of protocol-ish pieces: mostly invalid paths.
    fn random_pieces_strategy() -> BoxedStrategy<String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just("%".to_string()),
            Just("!".to_string()),
            Just("@".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("@v".to_string()),
            Just("@latest".to_string()),
            Just("list".to_string()),
            Just(".info".to_string()),
            Just(".mod".to_string()),
            Just(".zip".to_string()),
            Just("sumdb".to_string()),
            Just("sum.golang.org".to_string()),
            Just("lookup".to_string()),
            Just("tile".to_string()),
            Just(".p".to_string()),
            Just("x001".to_string()),
            Just("%2e".to_string()),
            Just("%2f".to_string()),
            Just("%00".to_string()),
            Just("\\".to_string()),
            Just("example.com".to_string()),
            Just("v1.0.0".to_string()),
            Just("v2.0.0+incompatible".to_string()),
            "[a-zA-Z0-9._~+-]{1,6}",
            "%[0-9a-fA-F]{2}",
            ".",
        ];
        prop::collection::vec(piece.boxed(), 0..16)
            .prop_map(|v| v.concat())
            .boxed()
    }

    /// Route-shaped paths, many of them valid.
    fn structured_path_strategy() -> BoxedStrategy<String> {
        let module = prop_oneof![
            Just("example.com/m".to_string()),
            Just("github.com/!burnt!sushi/toml".to_string()),
            Just("gopkg.in/yaml.v2".to_string()),
            Just("gopkg.in/check.v1".to_string()),
            Just("example.com/m/v2".to_string()),
            "[a-z0-9-]{1,5}\\.[a-z]{2,3}(/[a-z0-9!._~-]{1,6}){0,3}",
        ]
        .boxed();
        let version = prop_oneof![
            version_string_strategy().prop_map(|v| escape_string(&v)),
            "[a-z0-9!._+~-]{1,10}",
        ]
        .boxed();
        let ext = prop_oneof![Just("info"), Just("mod"), Just("zip")];
        let tile_part = prop_oneof![
            "[0-9]{3}",
            "x[0-9]{3}",
            "[0-9]{3}\\.p/[0-9]{1,3}",
            "[0-9]{1,4}",
        ];
        let sumdb = prop_oneof![
            Just("supported".to_string()),
            Just("latest".to_string()),
            (module.clone(), version.clone()).prop_map(|(m, v)| format!("lookup/{m}@{v}")),
            (
                prop_oneof![Just("8".to_string()), "[0-9]{1,2}"],
                prop_oneof![Just("data".to_string()), "[0-9]{1,3}"],
                prop::collection::vec(tile_part, 1..4),
            )
                .prop_map(|(h, l, parts)| format!("tile/{h}/{l}/{}", parts.join("/"))),
        ]
        .boxed();
        prop_oneof![
            module.clone().prop_map(|m| format!("{m}/@v/list")),
            module.clone().prop_map(|m| format!("{m}/@latest")),
            (module, version, ext).prop_map(|(m, v, e)| format!("{m}/@v/{v}.{e}")),
            (
                prop_oneof![Just("sum.golang.org"), Just("sum.example-db.org")],
                sumdb
            )
                .prop_map(|(n, p)| format!("sumdb/{n}/{p}")),
        ]
        .boxed()
    }

    /// Structured paths, random pieces, and structured paths with a random
    /// piece spliced in.
    fn arbitrary_path_strategy() -> BoxedStrategy<String> {
        prop_oneof![
            3 => structured_path_strategy(),
            1 => random_pieces_strategy(),
            2 => (structured_path_strategy(), random_pieces_strategy(), any::<prop::sample::Index>())
                .prop_map(|(s, piece, at)| {
                    let i = at.index(s.len() + 1);
                    format!("{}{piece}{}", &s[..i], &s[i..])
                }),
        ]
        .boxed()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prop_path_escape_round_trip(module in prop_oneof![module_path_strategy(), gopkg_in_strategy()]) {
            let esc = escape_path(module.as_str()).unwrap();
            prop_assert_eq!(&esc, &module.escaped());
            prop_assert!(!esc.bytes().any(|b| b.is_ascii_uppercase()));
            prop_assert_eq!(unescape_path(&esc).unwrap(), module.as_str());
            prop_assert_eq!(ModulePath::from_escaped(&esc).unwrap(), module);
        }

        #[test]
        fn prop_version_escape_round_trip((module, version) in module_and_version()) {
            let esc = escape_version(version.as_str()).unwrap();
            prop_assert_eq!(&esc, &version.escaped());
            prop_assert!(!esc.bytes().any(|b| b.is_ascii_uppercase()));
            prop_assert_eq!(unescape_version(&esc).unwrap(), version.as_str());
            prop_assert_eq!(Version::from_escaped(&module, &esc).unwrap(), version);
        }

        #[test]
        fn prop_valid_requests_round_trip((module, version) in module_and_version(), kind in 0u8..6) {
            let req = match kind {
                0 => Request::List { module },
                1 => Request::Latest { module },
                2 => Request::Info { module, version: VersionQuery::Canonical(version) },
                3 => Request::Mod { module, version },
                4 => Request::Zip { module, version },
                _ => Request::Sumdb {
                    name: "sum.golang.org".into(),
                    path: SumdbPath::Lookup { module, version },
                },
            };
            check_round_trip(&req);
        }

        #[test]
        fn prop_tiles_round_trip(
            height in 1u8..=30,
            level in prop_oneof![Just(TileLevel::Data), any::<u8>().prop_map(TileLevel::Level)],
            first in 1u16..1000,
            rest in prop::collection::vec(0u16..1000, 0..5),
            w in any::<u16>(),
            has_partial in any::<bool>(),
        ) {
            let mut index = vec![first];
            index.extend(rest);
            if index.len() == 1 && first % 2 == 0 {
                index[0] = 0;
            }
            let full = 1u32 << height;
            let partial = (has_partial && full > 1)
                .then(|| (u32::from(w) % (full - 1)) as u16 + 1);
            let path = SumdbPath::Tile { height, level, index, partial };
            prop_assert_eq!(path.is_immutable(), partial.is_none());
            check_round_trip(&Request::Sumdb { name: "sum.golang.org".into(), path });
        }

        #[test]
        fn prop_parse_never_panics_any_string(s in any::<String>()) {
            let _ = Request::parse(&s);
            let _ = Request::parse(&format!("/{s}"));
        }

        #[test]
        fn prop_parse_never_panics_and_round_trips(s in arbitrary_path_strategy()) {
            let raw = format!("/{s}");
            match Request::parse(&raw) {
                Ok(req) => check_round_trip(&req),
                Err(e) => {
                    prop_assert!(e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::NOT_FOUND);
                    prop_assert!(!e.message.contains(['\n', '\r']));
                }
            }
        }

        #[test]
        fn prop_module_routes_round_trip(
            module in prop_oneof![module_path_strategy(), gopkg_in_strategy()],
            ver in prop_oneof![version_string_strategy(), "[A-Za-z0-9._+~-]{1,12}"],
            ext in prop_oneof![Just("info"), Just("mod"), Just("zip")],
        ) {
            // Escape whatever we can; parse; any success must round-trip.
            if let Ok(esc_ver) = escape_version(&ver) {
                let raw = format!("/{}/@v/{esc_ver}.{ext}", module.escaped());
                match Request::parse(&raw) {
                    Ok(req) => {
                        check_round_trip(&req);
                        prop_assert_eq!(req.escaped_path(), &raw[1..]);
                    }
                    Err(e) => prop_assert_eq!(e.status, StatusCode::BAD_REQUEST),
                }
            }
        }

        #[test]
        fn prop_filter_list_output_is_canonical(
            lines in prop::collection::vec(prop_oneof![version_string_strategy(), "[ -~]{0,12}"], 0..20)
        ) {
            let body = lines.join("\n");
            let out = filter_list(&body);
            let mut seen = HashSet::new();
            for line in out.lines() {
                prop_assert!(is_canonical_semver(line), "{line:?}");
                prop_assert!(!is_pseudo_version(line), "{line:?}");
                prop_assert!(seen.insert(line.to_string()), "duplicate {line:?}");
            }
            prop_assert_eq!(filter_list(&out), out.clone());
        }
    }
}
