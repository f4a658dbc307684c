//! Go toolchain versions (`1.21`, `1.21.3`, `1.22rc1`, without the `go` prefix), as the go
//! command's `internal/gover` (and `go/version` on top of it) parses, shortens and compares
//! them. Module zips depend on them: x/mod/zip's vendor rules changed with the go.mod's
//! `go 1.24`.

use std::cmp::Ordering;

/// A parsed Go version; every field empty when the version is invalid (as Go's `Version{}`).
#[derive(Debug, Default, PartialEq, Eq)]
struct GoVersion<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
    /// `""`, `alpha`, `beta`, `rc` (any lowercase letters).
    kind: &'a str,
    pre: &'a str,
}

/// A decimal without a needless leading zero, and what follows it.
fn cut_int(x: &str) -> Option<(&str, &str)> {
    let i = x.bytes().take_while(u8::is_ascii_digit).count();
    if i == 0 || (x.starts_with('0') && i != 1) {
        return None;
    }
    Some(x.split_at(i))
}

/// `gover.Parse`: `1` is `1.0.0`, and before Go 1.21 `1.N` is `1.N.0`.
fn parse(x: &str) -> GoVersion<'_> {
    parse_valid(x).unwrap_or_default()
}

fn parse_valid(x: &str) -> Option<GoVersion<'_>> {
    let mut v = GoVersion::default();
    let (major, x) = cut_int(x)?;
    v.major = major;
    if x.is_empty() {
        (v.minor, v.patch) = ("0", "0");
        return Some(v);
    }
    let (minor, x) = cut_int(x.strip_prefix('.')?)?;
    v.minor = minor;
    if x.is_empty() {
        if compare_int(minor, "21") == Ordering::Less {
            v.patch = "0";
        }
        return Some(v);
    }
    if let Some(x) = x.strip_prefix('.') {
        // No prereleases of patch releases.
        let (patch, rest) = cut_int(x)?;
        if !rest.is_empty() {
            return None;
        }
        v.patch = patch;
        return Some(v);
    }
    let i = x.bytes().take_while(|b| !b.is_ascii_digit()).count();
    if i == 0 || !x[..i].bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let (kind, x) = x.split_at(i);
    v.kind = kind;
    if x.is_empty() {
        return Some(v);
    }
    let (pre, rest) = cut_int(x)?;
    if !rest.is_empty() {
        return None;
    }
    v.pre = pre;
    Some(v)
}

/// `gover.CmpInt`: decimals without leading zeros (or empty, the smallest).
fn compare_int(x: &str, y: &str) -> Ordering {
    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
}

/// `gover.Compare`: invalid versions are smaller than every valid one; `1.21rc1 < 1.21.0`.
pub fn compare(x: &str, y: &str) -> Ordering {
    let (x, y) = (parse(x), parse(y));
    compare_int(x.major, y.major)
        .then_with(|| compare_int(x.minor, y.minor))
        .then_with(|| compare_int(x.patch, y.patch))
        .then_with(|| x.kind.cmp(y.kind))
        .then_with(|| compare_int(x.pre, y.pre))
}

/// `gover.Lang`: the language version (`1.21` for `1.21.3` and `1.21rc1`, `1` for `1.0`);
/// empty when `x` is invalid.
pub fn lang(x: &str) -> String {
    let v = parse(x);
    if v.minor.is_empty() || (v.major == "1" && v.minor == "0") {
        return v.major.to_string();
    }
    format!("{}.{}", v.major, v.minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_languages() {
        let ordered = [
            "",
            "1",
            "1.0.1",
            "1.20",
            "1.21",
            "1.21rc1",
            "1.21rc2",
            "1.21.0",
            "1.21.1",
            "1.24",
            "1.24beta1",
            "1.24.0",
            "2",
            "10",
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(compare(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(compare("1.20", "1.20.0"), Ordering::Equal);
        assert_eq!(compare("bad", ""), Ordering::Equal);
        for (x, want) in [
            ("1.21.3", "1.21"),
            ("1.21rc1", "1.21"),
            ("1.24", "1.24"),
            ("1", "1"),
            ("1.0", "1"),
            ("2.0", "2.0"),
            ("1.24.0rc1", ""),
            ("01.2", ""),
            ("1.2x", "1.2"),
            ("1.2X", ""),
            ("1.2rc01", ""),
            ("", ""),
        ] {
            assert_eq!(lang(x), want, "{x:?}");
        }
    }
}
