//! Module paths and versions, as golang.org/x/mod/module checks and escapes them:
//! `CheckPath`, `CheckFilePath`'s element rules, `SplitPathVersion`, `CheckPathMajor`,
//! `EscapePath`/`UnescapePath`, `EscapeVersion`/`UnescapeVersion` and `CanonicalVersion`
//! (pseudo-versions are in `pseudo.rs`).

use std::fmt;

use super::semver::parse_semver;
use super::unicode;
use super::{MAX_ELEM_LEN, MAX_MODULE_LEN, MAX_VERSION_LEN, ProtocolError, quote};

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
pub(crate) fn split_path_version(path: &str) -> Option<(&str, &str)> {
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
pub(crate) fn escape_string(s: &str) -> String {
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
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Go's `module.CheckPathMajor(v, pathMajor)`: whether version `v` may be a version of a module
/// whose path ends in `path_major` (`""`, `/v2`, `.v1`, `.v1-unstable`); the reason
/// (`should be v2, not v3`) when not.
pub(crate) fn check_path_major_of(v: &str, path_major: &str) -> Result<(), String> {
    let major = super::semver::major(v).unwrap_or("");
    check_path_major(v, major, super::semver::build(v), path_major)
}

/// Go's `module.MatchPathMajor`.
pub(crate) fn match_path_major(v: &str, path_major: &str) -> bool {
    check_path_major_of(v, path_major).is_ok()
}

/// Go's `module.CheckPathMajor`; the reason on mismatch.
pub(crate) fn check_path_major(
    v: &str,
    major: &str,
    build: &str,
    path_major: &str,
) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

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
    fn pseudo_versions_are_versions() {
        use crate::protocol::pseudo::is_pseudo_version;
        assert!(is_pseudo_version(
            v("example.com/m", "v0.0.0-20191109021931-daa7c04131f5").as_str()
        ));
        assert!(!is_pseudo_version(v("example.com/m", "v1.2.3").as_str()));
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
}
