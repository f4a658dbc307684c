//! What `.info` says about a version: [`RevInfo`] and its [`Origin`], written byte for byte
//! as the go command writes them (`encoding/json` of `modfetch.RevInfo`, RFC 3339 UTC times,
//! `omitempty` fields in declaration order, `<`, `>`, `&` escaped), and the `TagSum` of a tag
//! list as `codehost.(*gitRepo).Tags` computes it.

use std::fmt::Write as _;
use std::time::SystemTime;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::codehost::Tag;
use crate::protocol::{is_pseudo_version, pseudo, semver};

/// Where an answer came from (`codehost.Origin`): enough for the go command to check later
/// whether it still holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// `git`.
    pub vcs: String,
    /// The repository URL as the go command names it.
    pub url: String,
    /// The module's directory in the repository, `""` at the root.
    pub subdir: String,
    /// The commit hash.
    pub hash: String,
    /// With `tag_sum`: the answer depends on the tags with this prefix.
    pub tag_prefix: String,
    /// `t1:` + base64(SHA-256) of those tags and their hashes.
    pub tag_sum: String,
    /// The ref the revision was resolved through (`refs/heads/main`, `refs/tags/v1.0.0`,
    /// `HEAD`); empty for a hash.
    pub reference: String,
    /// `r1:` checksum of all refs (go records it for answers about missing versions only).
    pub repo_sum: String,
}

/// A resolved version (`modfetch.RevInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevInfo {
    /// The module version: a semantic version or pseudo-version.
    pub version: String,
    /// The commit time.
    pub time: SystemTime,
    /// The full commit hash (go's `Name`).
    pub hash: String,
    /// Its 12-hex-digit short form.
    pub short: String,
    pub origin: Origin,
}

impl RevInfo {
    /// The `.info` file as the go command writes it into its module cache (`writeDiskStat`),
    /// which is also what a proxy serves: the Origin without `TagPrefix`, `TagSum` and
    /// `RepoSum` (they only matter for the query that found the version), and without `Ref`
    /// for a pseudo-version. `None` when the time cannot be written (a year past 9999, which
    /// Go's JSON encoder refuses too).
    pub fn info_json(&self) -> Option<Vec<u8>> {
        let mut origin = self.origin.clone();
        origin.tag_prefix.clear();
        origin.tag_sum.clear();
        origin.repo_sum.clear();
        if is_pseudo_version(&self.version) {
            origin.reference.clear();
        }
        self.json(&origin)
    }

    /// The answer to a query (`master`, a hash) with its whole Origin, as `go mod download
    /// -json` reports it: `Ref`, `TagPrefix` and `TagSum` included.
    pub fn query_json(&self) -> Option<Vec<u8>> {
        self.json(&self.origin)
    }

    fn json(&self, o: &Origin) -> Option<Vec<u8>> {
        let mut out = String::from("{\"Version\":");
        json_string(&mut out, &self.version);
        out.push_str(",\"Time\":\"");
        out.push_str(&rfc3339(self.time)?);
        out.push('"');
        let fields = [
            ("VCS", &o.vcs),
            ("URL", &o.url),
            ("Subdir", &o.subdir),
            ("Hash", &o.hash),
            ("TagPrefix", &o.tag_prefix),
            ("TagSum", &o.tag_sum),
            ("Ref", &o.reference),
            ("RepoSum", &o.repo_sum),
        ];
        if fields.iter().any(|(_, v)| !v.is_empty()) {
            out.push_str(",\"Origin\":{");
            let mut first = true;
            for (name, value) in fields {
                if value.is_empty() {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(out, "\"{name}\":");
                json_string(&mut out, value);
            }
            out.push('}');
        }
        out.push('}');
        Some(out.into_bytes())
    }
}

/// Go's `time.Time.MarshalJSON` of a UTC time with whole seconds: `2006-01-02T15:04:05Z`
/// (fractions are never there: Git times are seconds). `None` outside years 0–9999.
pub fn rfc3339(t: SystemTime) -> Option<String> {
    let ts = pseudo::format_timestamp(t);
    if ts.len() != 14 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &ts[0..4],
        &ts[4..6],
        &ts[6..8],
        &ts[8..10],
        &ts[10..12],
        &ts[12..14]
    ))
}

/// `encoding/json`'s string encoding (HTML-safe, as `json.Marshal` does).
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `TagSum` of `tags` (those listed for `prefix`, sorted by name): the tags that matter to
/// versions and pseudo-versions (`isOriginTag`, judged after the prefix's directory part),
/// hashed as `"%q %s\n"` lines.
pub fn tag_sum(prefix: &str, tags: &[Tag]) -> String {
    let dir = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
    let mut h = Sha256::new();
    for tag in tags {
        if is_origin_tag(tag.name.strip_prefix(dir).unwrap_or(&tag.name)) {
            h.update(go_quote(&tag.name).as_bytes());
            h.update(b" ");
            h.update(tag.hash.as_bytes());
            h.update(b"\n");
        }
    }
    format!(
        "t1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    )
}

/// `codehost.isOriginTag`: a valid semver whose canonical form is a prefix of it (build
/// metadata allowed), not a pseudo-version.
fn is_origin_tag(tag: &str) -> bool {
    matches!(semver::canonical(tag), Some(c) if tag.starts_with(&c)) && !is_pseudo_version(tag)
}

/// `strconv.Quote` (`%q`) for the tag names that reach it: module-path directories and a
/// semantic version, so printable ASCII; anything else escaped as Go would for ASCII and as
/// `\u`/`\U` beyond (close enough for names no module path allows).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !c.is_control() && !c.is_whitespace() => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn info(version: &str) -> RevInfo {
        RevInfo {
            version: version.into(),
            time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            hash: "68f895974865c56445d7834aa277d75a59c73c0a".into(),
            short: "68f895974865".into(),
            origin: Origin {
                vcs: "git".into(),
                url: "https://git.modfleet.test/private/root".into(),
                hash: "68f895974865c56445d7834aa277d75a59c73c0a".into(),
                tag_sum: "t1:d1NS4+eo4A3BEWvVFO1nqFTOPVTdZnYXdJmCprrGvjs=".into(),
                reference: "refs/heads/main".into(),
                ..Origin::default()
            },
        }
    }

    /// The bytes the go command wrote for this answer (go 1.26, a repository with the one
    /// tag v1.0.0 at 3352196640762718a128c507b67611575de7b6d5).
    #[test]
    fn json_as_the_go_command_writes_it() {
        let i = info("v1.0.1-0.20231114221320-68f895974865");
        assert_eq!(
            String::from_utf8(i.info_json().unwrap()).unwrap(),
            r#"{"Version":"v1.0.1-0.20231114221320-68f895974865","Time":"2023-11-14T22:13:20Z","Origin":{"VCS":"git","URL":"https://git.modfleet.test/private/root","Hash":"68f895974865c56445d7834aa277d75a59c73c0a"}}"#
        );
        assert_eq!(
            String::from_utf8(i.query_json().unwrap()).unwrap(),
            r#"{"Version":"v1.0.1-0.20231114221320-68f895974865","Time":"2023-11-14T22:13:20Z","Origin":{"VCS":"git","URL":"https://git.modfleet.test/private/root","Hash":"68f895974865c56445d7834aa277d75a59c73c0a","TagSum":"t1:d1NS4+eo4A3BEWvVFO1nqFTOPVTdZnYXdJmCprrGvjs=","Ref":"refs/heads/main"}}"#
        );
        // A tag keeps its Ref in the cache form.
        let t = info("v1.0.0");
        assert!(
            String::from_utf8(t.info_json().unwrap())
                .unwrap()
                .ends_with(r#""Ref":"refs/heads/main"}}"#)
        );
        let mut none = info("v1.0.0");
        none.origin = Origin::default();
        assert_eq!(
            none.info_json().unwrap(),
            br#"{"Version":"v1.0.0","Time":"2023-11-14T22:13:20Z"}"#
        );
    }

    #[test]
    fn tag_sum_as_git_repo_tags_computes_it() {
        let tags = [Tag {
            name: "v1.0.0".into(),
            hash: "3352196640762718a128c507b67611575de7b6d5".into(),
        }];
        assert_eq!(
            tag_sum("", &tags),
            "t1:d1NS4+eo4A3BEWvVFO1nqFTOPVTdZnYXdJmCprrGvjs="
        );
        // Tags that are no version, and pseudo-versions, do not count.
        let mut more = tags.to_vec();
        more.push(Tag {
            name: "v1.0.0-20231114221320-68f895974865".into(),
            hash: "1".repeat(40),
        });
        more.push(Tag {
            name: "vfoo".into(),
            hash: "2".repeat(40),
        });
        assert_eq!(tag_sum("", &more), tag_sum("", &tags));
        // With a directory prefix, judged after it.
        let sub = [Tag {
            name: "sub/v1.0.0".into(),
            hash: "3".repeat(40),
        }];
        assert_ne!(tag_sum("sub/", &sub), tag_sum("sub/", &[]));
    }

    #[test]
    fn json_strings_and_times_as_go() {
        let mut s = String::new();
        json_string(&mut s, "a<b>&\"\\\n\u{1}\u{2028}é");
        assert_eq!(s, r#""a\u003cb\u003e\u0026\"\\\n\u0001\u2028é""#);
        assert_eq!(rfc3339(UNIX_EPOCH).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(86_400)).unwrap(),
            "1969-12-31T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            None
        );
        assert_eq!(go_quote("sub/v1.0.0+x"), "\"sub/v1.0.0+x\"");
        assert_eq!(go_quote("a\"\u{7f}"), "\"a\\\"\\x7f\"");
    }
}
