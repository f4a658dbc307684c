//! A GOPROXY request: the routes, parsed from a raw URL path into validated values, and
//! rendered back into the canonical escaped path used upstream and in the cache.

use std::collections::HashSet;
use std::fmt;

use super::module::escape_string;
use super::sumdb::path::{SumdbPath, parse_sumdb};
use super::{
    MAX_ELEM_LEN, MAX_PATH_LEN, MAX_QUERY_LEN, MAX_RAW_PATH_LEN, ModulePath, ProtocolError,
    ROUTE_SHAPES, Version, is_canonical_semver, is_pseudo_version, quote, unescape_version,
};

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

pub(crate) fn not_found(raw: &str) -> ProtocolError {
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
pub(crate) mod tests;
