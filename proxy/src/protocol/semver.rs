//! Semantic versions as golang.org/x/mod/semver parses them.

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

/// `semver.Compare`: invalid versions sort below valid ones and equal to each other; build
/// metadata is ignored; a prerelease sorts below its release.
pub fn compare(v: &str, w: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (pv, pw) = match (parse_semver(v), parse_semver(w)) {
        (None, None) => return Ordering::Equal,
        (None, Some(_)) => return Ordering::Less,
        (Some(_), None) => return Ordering::Greater,
        (Some(pv), Some(pw)) => (pv, pw),
    };
    // Numbers without leading zeros: the longer is larger, else by digits.
    let num = |a: &str, b: &str| a.len().cmp(&b.len()).then_with(|| a.cmp(b));
    num(pv.major, pw.major)
        .then_with(|| num(pv.minor, pw.minor))
        .then_with(|| num(pv.patch, pw.patch))
        .then_with(|| compare_prerelease(pv.prerelease, pw.prerelease))
}

/// Go's `comparePrerelease` on `-a.b` strings (empty: a release).
fn compare_prerelease(x: &str, y: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    if x == y {
        return Ordering::Equal;
    }
    if x.is_empty() {
        return Ordering::Greater;
    }
    if y.is_empty() {
        return Ordering::Less;
    }
    let mut xs = x[1..].split('.');
    let mut ys = y[1..].split('.');
    loop {
        match (xs.next(), ys.next()) {
            (Some(dx), Some(dy)) if dx == dy => continue,
            (Some(dx), Some(dy)) => {
                let is_num = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
                return match (is_num(dx), is_num(dy)) {
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    (true, true) => dx.len().cmp(&dy.len()).then_with(|| dx.cmp(dy)),
                    (false, false) => dx.cmp(dy),
                };
            }
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (None, None) => return Ordering::Equal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{compare, parse_semver};
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

    /// The order golang.org/x/mod/semver's own tests list, each below the next.
    #[test]
    fn compare_follows_go() {
        let ordered = [
            "bad",
            "v0.0.0",
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
        use std::cmp::Ordering::Equal;
        assert_eq!(compare("v1.2.3+meta", "v1.2.3"), Equal);
        assert_eq!(compare("v1", "v1.0.0"), Equal);
        assert_eq!(compare("v1.2", "v1.2.0"), Equal);
        assert_eq!(compare("bad", "worse"), Equal);
    }
}
