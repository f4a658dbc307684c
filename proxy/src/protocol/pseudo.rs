//! Pseudo-versions, as golang.org/x/mod/module/pseudo.go builds and takes them apart, and the
//! checks the go command's `codeRepo.validatePseudoVersion` (cmd/go/internal/modfetch/
//! coderepo.go) makes before it serves a pseudo-version a client asked for.
//!
//! A pseudo-version names an untagged commit: `vX.0.0-yyyymmddhhmmss-abcdef123456` when no
//! tag precedes it, `vX.Y.(Z+1)-0.yyyymmddhhmmss-abcdef123456` after the tag `vX.Y.Z`, and
//! `vX.Y.Z-pre.0.yyyymmddhhmmss-abcdef123456` after the tag `vX.Y.Z-pre` (both keeping a
//! `+incompatible` of the tag). The timestamp is the commit time in UTC, the suffix the
//! commit's 12-hex short hash. `tests/pseudo_reference.rs` holds every function here to
//! x/mod's answers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::semver::{self, parse_semver};

/// Why a version is not a usable pseudo-version (x/mod's `InvalidVersionError` with
/// `Pseudo: true`; the same text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pseudo-version {version:?} invalid: {reason}")]
pub struct PseudoError {
    pub version: String,
    pub reason: PseudoReason,
}

/// The rule a pseudo-version breaks; the texts are x/mod's and cmd/go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PseudoReason {
    #[error("syntax error")]
    Syntax,
    #[error("malformed time {0:?}")]
    MalformedTime(String),
    #[error("lacks base version, but has build metadata {0:?}")]
    BuildWithoutBase(String),
    #[error("version before {0} would have negative patch number")]
    NegativePatch(String),
    #[error("revision is longer than canonical (expected {0})")]
    RevisionLonger(String),
    #[error("revision is shorter than canonical (expected {0})")]
    RevisionShorter(String),
    #[error("does not match short name of revision (expected {0})")]
    RevisionMismatch(String),
    #[error("does not match version-control timestamp (expected {0})")]
    TimeMismatch(String),
    #[error("major version without preceding tag must be v0, not v1")]
    V1WithoutTag,
    #[error(
        "tag ({tag}) found on revision {rev} is already canonical, so should not be replaced \
         with a pseudo-version derived from that tag"
    )]
    TagOnRevision { tag: String, rev: String },
    #[error("preceding tag ({0}) not found")]
    PrecedingTagNotFound(String),
    #[error("revision {rev} is not a descendent of preceding tag ({tag})")]
    NotDescendant { rev: String, tag: String },
}

impl PseudoReason {
    fn of(self, version: &str) -> PseudoError {
        PseudoError {
            version: version.to_string(),
            reason: self,
        }
    }
}

/// A pseudo-version the go command would refuse for a module (its `ModuleError` around an
/// `InvalidVersionError`: `path@version: invalid pseudo-version: reason`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{module}@{version}: invalid pseudo-version: {reason}")]
pub struct ModulePseudoError {
    pub module: String,
    /// The version as the go command names it in the message.
    pub version: String,
    pub reason: PseudoReason,
}

/// x/mod's `PseudoVersionTimestampFormat` (`20060102150405`) is 14 digits.
const TIMESTAMP_LEN: usize = 14;

/// `module.PseudoVersion`: the pseudo-version for a commit at `time` with short hash `rev`,
/// after the tag `older` (`""` when none; an invalid one counts as none) of major version
/// `major` (`""` means `v0`).
pub fn pseudo_version(major: &str, older: &str, time: SystemTime, rev: &str) -> String {
    let major = if major.is_empty() { "v0" } else { major };
    let segment = format!("{}-{rev}", format_timestamp(time));
    let build = semver::build(older);
    let Some(older) = semver::canonical(older) else {
        return format!("{major}.0.0-{segment}"); // form (1)
    };
    if !semver::prerelease(&older).is_empty() {
        return format!("{older}.0.{segment}{build}"); // forms (4), (5)
    }
    // Forms (2), (3): vMAJOR.MINOR.(PATCH+1)-0.
    let i = older.rfind('.').map_or(0, |i| i + 1);
    let (v, patch) = older.split_at(i);
    format!("{v}{}-0.{segment}{build}", inc_decimal(patch))
}

/// `module.ZeroPseudoVersion`: the placeholder `vX.0.0-00010101000000-000000000000`.
pub fn zero_pseudo_version(major: &str) -> String {
    pseudo_version(major, "", go_zero_time(), "000000000000")
}

/// `module.IsZeroPseudoVersion`.
pub fn is_zero_pseudo_version(v: &str) -> bool {
    v == zero_pseudo_version(semver::major(v).unwrap_or(""))
}

/// `module.IsPseudoVersion`: at least two dashes, valid semver, and
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
    if head.len() < TIMESTAMP_LEN {
        return false;
    }
    let (prefix, timestamp) = head.split_at(head.len() - TIMESTAMP_LEN);
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

/// Skips a non-empty run of ASCII digits.
fn skip_digits(s: &str) -> Option<&str> {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    (end > 0).then(|| &s[end..])
}

/// A pseudo-version's parts (x/mod's `parsePseudoVersion`).
struct Parts<'a> {
    /// `vX.0.0`, `vX.Y.(Z+1)-0` or `vX.Y.Z-pre.0`.
    base: &'a str,
    timestamp: &'a str,
    rev: &'a str,
    build: &'a str,
}

fn parse(v: &str) -> Result<Parts<'_>, PseudoError> {
    if !is_pseudo_version(v) {
        return Err(PseudoReason::Syntax.of(v));
    }
    let build = semver::build(v);
    let body = &v[..v.len() - build.len()];
    // is_pseudo_version guarantees two dashes before the build metadata.
    let j = body.rfind('-').expect("a pseudo-version has dashes");
    let (body, rev) = (&body[..j], &body[j + 1..]);
    let i = body.rfind('-').expect("a pseudo-version has two dashes");
    let (base, timestamp) = match body.rfind('.') {
        Some(j) if j > i => (&body[..j], &body[j + 1..]),
        _ => (&body[..i], &body[i + 1..]),
    };
    Ok(Parts {
        base,
        timestamp,
        rev,
        build,
    })
}

/// `module.PseudoVersionRev`: the revision (the short commit hash) at the end.
pub fn pseudo_version_rev(v: &str) -> Result<&str, PseudoError> {
    parse(v).map(|p| p.rev)
}

/// `module.PseudoVersionTime`: the commit time the pseudo-version records (UTC, seconds).
pub fn pseudo_version_time(v: &str) -> Result<SystemTime, PseudoError> {
    let ts = parse(v)?.timestamp;
    parse_timestamp(ts).ok_or_else(|| PseudoReason::MalformedTime(ts.to_string()).of(v))
}

/// `module.PseudoVersionBase`: the tagged version the pseudo-version counts from
/// (`v1.2.3` for `v1.2.4-0.…`, `v1.2.3-pre` for `v1.2.3-pre.0.…`, keeping `+incompatible`),
/// or `None` for the `vX.0.0-…` form, which has none.
pub fn pseudo_version_base(v: &str) -> Result<Option<String>, PseudoError> {
    let Parts { base, build, .. } = parse(v)?;
    match semver::prerelease(base) {
        "" => {
            // `vX.0.0-…+incompatible` makes no sense: no parent tag, yet an incompatible one.
            if !build.is_empty() {
                return Err(PseudoReason::BuildWithoutBase(build.to_string()).of(v));
            }
            Ok(None)
        }
        "-0" => {
            let base = &base[..base.len() - 2];
            let i = base.rfind('.').expect("a base has a patch number");
            match dec_decimal(&base[i + 1..]) {
                Some(patch) => Ok(Some(format!("{}{patch}{build}", &base[..=i]))),
                None => Err(PseudoReason::NegativePatch(base.to_string()).of(v)),
            }
        }
        _ => {
            let base = base
                .strip_suffix(".0")
                .expect("the regexp ends the base in .0");
            Ok(Some(format!("{base}{build}")))
        }
    }
}

/// `module.PathMajorPrefix`: the major version pseudo-versions of a module path with this
/// major-version suffix must have (`/v2` → `v2`, `.v1-unstable` → `v1`, `""` → `""`, which
/// allows v0 and v1). `None` for a suffix that is not one.
pub fn path_major_prefix(path_major: &str) -> Option<&str> {
    if path_major.is_empty() {
        return Some("");
    }
    let m = match path_major.strip_suffix("-unstable") {
        Some(m) if path_major.starts_with(".v") => m,
        _ => path_major,
    };
    let m = m.strip_prefix(['/', '.'])?;
    (semver::major(m) == Some(m)).then_some(m)
}

/// What the go command knows about the commit a pseudo-version names, and about the module,
/// when it checks the pseudo-version (`validatePseudoVersion`'s inputs).
#[derive(Debug, Clone)]
pub struct PseudoCommit<'a> {
    /// The module path, for messages.
    pub module: &'a str,
    /// [`path_major_prefix`] of the module path's major-version suffix.
    pub pseudo_major: &'a str,
    /// The module's directory in the repository plus `/`, or `""` at the root.
    pub tag_prefix: &'a str,
    /// The commit's short hash (12 hex digits for Git).
    pub short: &'a str,
    /// The commit time.
    pub time: SystemTime,
    /// The tags on the commit itself.
    pub tags: &'a [String],
}

/// The part of `codeRepo.validatePseudoVersion` (coderepo.go) that needs no repository
/// history: the revision and time must be the commit's exactly, a `vX.0.0-` form of a
/// v0/v1 module must be v0, and the base may not be a tag on the commit itself. `Ok(None)`:
/// nothing more to check. `Ok(Some(base))`: the caller must find a tag `tag_prefix + t` with
/// `semver::compare(t, base)` equal that the commit descends from ([`PseudoReason::
/// PrecedingTagNotFound`] or [`PseudoReason::NotDescendant`] otherwise).
pub fn validate_pseudo_version(
    version: &str,
    commit: &PseudoCommit<'_>,
) -> Result<Option<String>, ModulePseudoError> {
    let fail = |e: PseudoError| ModulePseudoError {
        module: commit.module.to_string(),
        version: e.version,
        reason: e.reason,
    };
    let reason = |r: PseudoReason| fail(r.of(version));
    let rev = pseudo_version_rev(version).map_err(fail)?;
    if rev != commit.short {
        let short = commit.short.to_string();
        return Err(reason(if rev.starts_with(commit.short) {
            PseudoReason::RevisionLonger(short)
        } else if commit.short.starts_with(rev) {
            PseudoReason::RevisionShorter(short)
        } else {
            PseudoReason::RevisionMismatch(short)
        }));
    }
    let t = pseudo_version_time(version).map_err(fail)?;
    if unix_seconds(t) != unix_seconds(commit.time) {
        return Err(reason(PseudoReason::TimeMismatch(format_timestamp(
            commit.time,
        ))));
    }
    let trimmed = version.strip_suffix("+incompatible").unwrap_or(version);
    let Some(base) = pseudo_version_base(trimmed).map_err(fail)? else {
        if commit.pseudo_major.is_empty() && semver::major(version) == Some("v1") {
            return Err(reason(PseudoReason::V1WithoutTag));
        }
        return Ok(None);
    };
    for tag in commit.tags {
        if tag.strip_prefix(commit.tag_prefix).unwrap_or(tag) == base {
            return Err(reason(PseudoReason::TagOnRevision {
                tag: tag.clone(),
                rev: rev.to_string(),
            }));
        }
    }
    Ok(Some(base))
}

/// `incDecimal`: a decimal string plus one.
fn inc_decimal(decimal: &str) -> String {
    let mut digits = decimal.as_bytes().to_vec();
    let mut i = digits.len();
    while i > 0 && digits[i - 1] == b'9' {
        digits[i - 1] = b'0';
        i -= 1;
    }
    if i > 0 {
        digits[i - 1] += 1;
    } else {
        // All nines (or empty, which Go would panic on; a canonical patch is never empty).
        digits.insert(0, b'1');
    }
    String::from_utf8(digits).expect("ASCII digits")
}

/// `decDecimal`: a decimal string minus one, `None` when it is all zeros.
fn dec_decimal(decimal: &str) -> Option<String> {
    let mut digits = decimal.as_bytes().to_vec();
    let mut i = digits.len();
    while i > 0 && digits[i - 1] == b'0' {
        digits[i - 1] = b'9';
        i -= 1;
    }
    if i == 0 {
        return None;
    }
    if i == 1 && digits[0] == b'1' && digits.len() > 1 {
        digits.remove(0);
    } else {
        digits[i - 1] -= 1;
    }
    Some(String::from_utf8(digits).expect("ASCII digits"))
}

// ---------------------------------------------------------------------------
// Time: UTC civil dates without a calendar crate, over Go's whole range of years.
// ---------------------------------------------------------------------------

const DAY: i128 = 86_400;
/// Seconds from Go's zero time (0001-01-01 00:00:00 UTC) to the Unix epoch.
const GO_ZERO_TO_UNIX: u64 = 62_135_596_800;

/// Go's `time.Time{}`.
fn go_zero_time() -> SystemTime {
    UNIX_EPOCH - Duration::from_secs(GO_ZERO_TO_UNIX)
}

/// Whole seconds since the Unix epoch, rounded down (Go's `Truncate(time.Second)`).
fn unix_seconds(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::from(d.as_secs()),
        Err(e) => {
            let d = e.duration();
            -i128::from(d.as_secs()) - i128::from(d.subsec_nanos() > 0)
        }
    }
}

/// The time at whole seconds since the Unix epoch; `None` outside `SystemTime`'s range.
fn from_unix_seconds(secs: i128) -> Option<SystemTime> {
    let magnitude = Duration::from_secs(u64::try_from(secs.unsigned_abs()).ok()?);
    if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(year: i128, month: u32, day: u32) -> i128 {
    let year = year - i128::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i128::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i128::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `t.UTC().Format("20060102150405")`; a year outside 0..=9999 is written as Go writes it
/// (more digits, or a minus sign), which no pseudo-version accepts.
pub fn format_timestamp(t: SystemTime) -> String {
    let secs = unix_seconds(t);
    let (year, month, day) = civil_from_days(secs.div_euclid(DAY));
    let s = secs.rem_euclid(DAY);
    let sign = if year < 0 { "-" } else { "" };
    format!(
        "{sign}{:04}{month:02}{day:02}{:02}{:02}{:02}",
        year.unsigned_abs(),
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn is_leap(year: i128) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// `time.Parse("20060102150405", ts)` for 14 digits: `None` when a field is out of range.
fn parse_timestamp(ts: &str) -> Option<SystemTime> {
    if ts.len() != TIMESTAMP_LEN || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| ts[r].parse::<u32>().expect("digits");
    let (year, month, day) = (i128::from(num(0..4)), num(4..6), num(6..8));
    let (hour, minute, second) = (num(8..10), num(10..12), num(12..14));
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let secs =
        days_from_civil(year, month, day) * DAY + i128::from(hour * 3600 + minute * 60 + second);
    from_unix_seconds(secs)
}

#[cfg(test)]
mod tests;
