//! Semantic versions as golang.org/x/mod/semver parses, compares and takes them apart.

use std::cmp::Ordering;

/// A parsed semantic version, as `golang.org/x/mod/semver` parses it.
pub(crate) struct Semver<'a> {
    pub(crate) major: &'a str,
    pub(crate) minor: &'a str,
    pub(crate) patch: &'a str,
    /// Including the leading `-`, or empty.
    pub(crate) prerelease: &'a str,
    /// Including the leading `+`, or empty.
    pub(crate) build: &'a str,
    /// `v1` or `v1.2`: valid, but not canonical.
    pub(crate) short: bool,
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
pub(crate) fn parse_semver(v: &str) -> Option<Semver<'_>> {
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

/// `semver.IsValid`: `v` is a semantic version (`v1`, `v1.2` and build metadata included).
pub fn is_valid(v: &str) -> bool {
    parse_semver(v).is_some()
}

/// `semver.Canonical`: `vMAJOR.MINOR.PATCH[-PRERELEASE]`, build metadata dropped (even
/// `+incompatible`: `module::canonical_version` keeps that); `None` when `v` is invalid.
pub fn canonical(v: &str) -> Option<String> {
    let p = parse_semver(v)?;
    Some(format!(
        "v{}.{}.{}{}",
        p.major, p.minor, p.patch, p.prerelease
    ))
}

/// `semver.Major`: `vMAJOR` (`v2` for `v2.1.0`); `None` when `v` is invalid.
pub fn major(v: &str) -> Option<&str> {
    let p = parse_semver(v)?;
    Some(&v[..1 + p.major.len()])
}

/// `semver.MajorMinor`: `vMAJOR.MINOR` (`v2.1` for `v2.1.0`, `v2.0` for `v2`); `None` when
/// `v` is invalid.
pub fn major_minor(v: &str) -> Option<String> {
    let p = parse_semver(v)?;
    let i = 1 + p.major.len();
    let j = i + 1 + p.minor.len();
    if j <= v.len() && v.as_bytes()[i] == b'.' && &v[i + 1..j] == p.minor {
        return Some(v[..j].to_string());
    }
    Some(format!("{}.{}", &v[..i], p.minor))
}

/// `semver.Prerelease`: `-pre` of `v1.2.3-pre+meta`; empty when there is none or `v` is
/// invalid (as Go's).
pub fn prerelease(v: &str) -> &str {
    parse_semver(v).map_or("", |p| p.prerelease)
}

/// `semver.Build`: `+meta` of `v1.2.3-pre+meta`; empty when there is none or `v` is invalid
/// (as Go's).
pub fn build(v: &str) -> &str {
    parse_semver(v).map_or("", |p| p.build)
}

/// `semver.Compare`: semantic-version precedence, build metadata ignored; an invalid version
/// is less than every valid one and equal to every invalid one.
pub fn compare(v: &str, w: &str) -> Ordering {
    match (parse_semver(v), parse_semver(w)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => compare_int(a.major, b.major)
            .then_with(|| compare_int(a.minor, b.minor))
            .then_with(|| compare_int(a.patch, b.patch))
            .then_with(|| compare_prerelease(a.prerelease, b.prerelease)),
    }
}

/// `semver.Max`: the larger of the two versions' canonical forms (`w`'s when they are equal);
/// empty when both are invalid, as Go's.
pub fn max(v: &str, w: &str) -> String {
    let (v, w) = (
        canonical(v).unwrap_or_default(),
        canonical(w).unwrap_or_default(),
    );
    if compare(&v, &w) == Ordering::Greater {
        v
    } else {
        w
    }
}

/// Decimal strings without leading zeros: the longer is larger.
fn compare_int(x: &str, y: &str) -> Ordering {
    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
}

/// SemVer 2.0 prerelease precedence; `x` and `y` include their leading `-` (or are empty).
fn compare_prerelease(x: &str, y: &str) -> Ordering {
    match (x.is_empty(), y.is_empty()) {
        _ if x == y => return Ordering::Equal,
        (true, _) => return Ordering::Greater,
        (_, true) => return Ordering::Less,
        _ => {}
    }
    let mut xs = x[1..].split('.');
    let mut ys = y[1..].split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(dx), Some(dy)) if dx == dy => {}
            (Some(dx), Some(dy)) => {
                let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
                return match (numeric(dx), numeric(dy)) {
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (true, true) => compare_int(dx, dy),
                    (false, false) => dx.cmp(dy),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::module::{canonical_version, is_canonical_semver};

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
    fn precedence_as_semver_2_orders_it() {
        // From SemVer 2.0 and x/mod's semver_test.go, in increasing order.
        let ordered = [
            "bad",
            "v0.0.0",
            "v0.0.1",
            "v0.1.0",
            "v1.0.0-alpha",
            "v1.0.0-alpha.1",
            "v1.0.0-alpha.beta",
            "v1.0.0-beta",
            "v1.0.0-beta.2",
            "v1.0.0-beta.11",
            "v1.0.0-rc.1",
            "v1.0.0",
            "v1.2.0",
            "v1.2.3-456",
            "v1.2.3-456.789",
            "v1.2.3-456-789",
            "v1.2.3-456a",
            "v1.2.3-pre",
            "v1.2.3",
            "v1.10.0",
            "v2.0.0",
            "v10.0.0",
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(compare(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(compare("v1.2", "v1.2.0"), Ordering::Equal);
        assert_eq!(compare("v1.2.3+meta", "v1.2.3"), Ordering::Equal);
        assert_eq!(compare("x", "y"), Ordering::Equal);
        assert_eq!(max("v1.2", "v1.1.9+meta"), "v1.2.0");
        assert_eq!(max("v1.2.0", "v1.2"), "v1.2.0");
        assert_eq!(max("bad", "worse"), "");
        assert_eq!(max("bad", "v0.1"), "v0.1.0");
    }

    #[test]
    fn parts() {
        assert_eq!(major("v2.1.0"), Some("v2"));
        assert_eq!(major("v2"), Some("v2"));
        assert_eq!(major("2.1.0"), None);
        assert_eq!(major_minor("v2.1.0").as_deref(), Some("v2.1"));
        assert_eq!(major_minor("v2").as_deref(), Some("v2.0"));
        assert_eq!(major_minor("v2.1").as_deref(), Some("v2.1"));
        assert_eq!(prerelease("v1.2.3-pre+meta"), "-pre");
        assert_eq!(prerelease("v1.2"), "");
        assert_eq!(build("v1.2.3-pre+meta"), "+meta");
        assert_eq!(build("bad+meta"), "");
        assert_eq!(canonical("v1.2.3+incompatible").as_deref(), Some("v1.2.3"));
        assert_eq!(canonical("v1.2").as_deref(), Some("v1.2.0"));
        assert_eq!(canonical("v1-pre"), None);
    }
}
