//! Git attributes that make `git archive` (what the go command zips) differ from the blobs
//! in the repository. The go command archives with `core.autocrlf=input`, `core.eol=lf` and
//! `export-subst`/`export-ignore` off, but the tree's own `.gitattributes` still apply:
//! `eol=crlf` turns LF into CRLF, `ident` expands `$Id$`, `working-tree-encoding` re-encodes.
//! The zip is built from the blobs as stored, so a module with a file under such an attribute
//! would get another `h1:` than the go command's; it is refused instead (never a wrong
//! checksum). Conservatively: a later rule unsetting the attribute is not looked at.

use super::{CodeRepo, CodeRepoError, join};
use crate::codehost::HostError;
use crate::protocol::zip::create::{SourceFile, SourceKind};

/// The most bytes of one `.gitattributes` read (real ones are small).
const MAX_ATTRIBUTES: u64 = 1 << 20;
/// The most converting rules looked at; past it, the module is refused.
const MAX_RULES: usize = 256;
/// The most pattern-matching work (pattern length × path length, summed) spent on a zip;
/// past it, the module is refused rather than the proxy kept busy.
const MAX_WORK: usize = 50_000_000;

/// A rule setting a converting attribute: the `.gitattributes` it is in and its pattern.
struct Rule {
    file: String,
    /// The directory of that file, from the repository root (`""` at the root).
    base: String,
    pattern: String,
    attr: String,
}

impl CodeRepo {
    /// Refuses the zip when a file the go command would archive from `dir` at `hash` falls
    /// under a content-changing attribute: from the root's `.gitattributes`, those of the
    /// directories above `dir`, or those in the module's tree (`listing`). `kept` are the
    /// files that go into the zip from the tree (paths relative to `dir`).
    pub(super) fn check_archive_attributes(
        &self,
        version: &str,
        hash: &str,
        dir: &str,
        listing: &[SourceFile],
        kept: &[&SourceFile],
    ) -> Result<(), CodeRepoError> {
        let mut files: Vec<String> = vec![".gitattributes".into()];
        let mut above = String::new();
        for elem in dir.split('/').filter(|e| !e.is_empty()) {
            above = join(&above, elem);
            files.push(join(&above, ".gitattributes"));
        }
        for f in listing {
            let regular = matches!(f.kind, SourceKind::File | SourceKind::Executable);
            if regular
                && (f.path == b".gitattributes" || f.path.ends_with(b"/.gitattributes"))
                && let Ok(p) = std::str::from_utf8(&f.path)
            {
                files.push(join(dir, p));
            }
        }
        files.sort();
        files.dedup();
        let mut rules = Vec::new();
        for file in files {
            let data = match self.host().read_file(hash, &file, MAX_ATTRIBUTES) {
                Ok(Some(data)) => data,
                Ok(None) => continue,
                Err(HostError::TooLarge(_)) => {
                    return Err(self.refuse_attributes(version, &file, "rules too large to read"));
                }
                Err(e) => return Err(self.fail(e, Some(version))),
            };
            let base = file
                .strip_suffix(".gitattributes")
                .unwrap_or("")
                .trim_end_matches('/')
                .to_string();
            for (pattern, attr) in converting_rules(&data) {
                rules.push(Rule {
                    file: file.clone(),
                    base: base.clone(),
                    pattern,
                    attr,
                });
            }
        }
        if rules.is_empty() {
            return Ok(());
        }
        if rules.len() > MAX_RULES {
            let r = &rules[0];
            return Err(self.refuse_attributes(version, &r.file, &r.attr));
        }
        let mut work = 0usize;
        for f in kept {
            let Ok(path) = std::str::from_utf8(&f.path) else {
                continue;
            };
            let full = join(dir, path);
            for r in &rules {
                let rel = if r.base.is_empty() {
                    full.as_str()
                } else {
                    match full.strip_prefix(&r.base).and_then(|p| p.strip_prefix('/')) {
                        Some(rel) => rel,
                        None => continue,
                    }
                };
                work += r.pattern.len() * rel.len();
                if work > MAX_WORK || pattern_matches(&r.pattern, rel) {
                    let what = format!("{} for {full}", r.attr);
                    return Err(self.refuse_attributes(version, &r.file, &what));
                }
            }
        }
        Ok(())
    }

    fn refuse_attributes(&self, version: &str, file: &str, attr: &str) -> CodeRepoError {
        CodeRepoError::NotFound {
            module: self.module.clone(),
            version: Some(version.to_string()),
            reason: format!(
                "{file} sets {attr}, which git archive applies to the files the go command \
                 zips; modfleet does not build such zips yet (fetch this module direct, or \
                 drop the attribute)"
            ),
        }
    }
}

fn converting(attr: &str) -> bool {
    attr == "eol=crlf" || attr == "ident" || attr.starts_with("working-tree-encoding=")
}

/// The rules of a `.gitattributes` that set an attribute changing archived content:
/// `eol=crlf`, `ident`, `working-tree-encoding=...` (set, not `-x` or `!x`), directly or
/// through a macro (`[attr]name ...`) that sets one.
fn converting_rules(data: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(data);
    let mut lines = Vec::new();
    let mut macros: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (pattern, attrs) = match line.strip_prefix('"') {
            Some(rest) => match rest.split_once('"') {
                Some((p, a)) => (p.replace("\\\\", "\\").replace("\\\"", "\""), a),
                None => continue,
            },
            None => match line.split_once(char::is_whitespace) {
                Some((p, a)) => (p.to_string(), a),
                None => continue,
            },
        };
        let attrs: Vec<&str> = attrs.split_whitespace().collect();
        if let Some(name) = pattern.strip_prefix("[attr]") {
            if attrs.iter().any(|a| converting(a)) {
                macros.push(name.to_string());
            }
            continue;
        }
        lines.push((
            pattern,
            attrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        ));
    }
    let mut rules = Vec::new();
    for (pattern, attrs) in lines {
        if let Some(a) = attrs
            .iter()
            .find(|a| converting(a) || macros.iter().any(|m| m == *a))
        {
            rules.push((pattern, a.clone()));
        }
    }
    rules
}

/// Whether a `.gitattributes` pattern matches `path` (relative to the file's directory): a
/// pattern without `/` matches the base name at any depth; one with `/` matches the whole
/// path, `*` and `?` not crossing `/`, `**/` any directories, `/**` everything inside.
fn pattern_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.strip_suffix('/').unwrap_or(pattern);
    if pattern.contains('/') {
        let pattern = pattern.strip_prefix('/').unwrap_or(pattern);
        glob(&tokens(pattern), path.as_bytes())
    } else {
        let base = path.rsplit('/').next().unwrap_or(path);
        glob(&tokens(pattern), base.as_bytes())
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Byte(u8),
    /// `?`: one byte but `/`.
    Any,
    /// `[...]`: (negated, ranges).
    Class(bool, Vec<(u8, u8)>),
    /// `*`: any bytes but `/`.
    Star,
    /// `**` alone as an element at the end (`a/**`): anything.
    StarStar,
    /// `**/`: nothing, or directories (anything ending in `/`).
    StarStarSlash,
}

fn tokens(p: &str) -> Vec<Token> {
    let b = p.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'*' if b[i..].starts_with(b"**")
                && (i == 0 || b[i - 1] == b'/')
                && (i + 2 == b.len() || b[i + 2] == b'/') =>
            {
                if i + 2 == b.len() {
                    out.push(Token::StarStar);
                    i += 2;
                } else {
                    out.push(Token::StarStarSlash);
                    i += 3;
                }
            }
            b'*' => {
                out.push(Token::Star);
                while i < b.len() && b[i] == b'*' {
                    i += 1;
                }
            }
            b'?' => {
                out.push(Token::Any);
                i += 1;
            }
            b'[' => match class(&b[i + 1..]) {
                Some((t, used)) => {
                    out.push(t);
                    i += 1 + used;
                }
                None => {
                    out.push(Token::Byte(b'['));
                    i += 1;
                }
            },
            b'\\' if i + 1 < b.len() => {
                out.push(Token::Byte(b[i + 1]));
                i += 2;
            }
            c => {
                out.push(Token::Byte(c));
                i += 1;
            }
        }
    }
    out
}

/// A bracket expression after `[`: the token and the bytes used (through `]`).
fn class(b: &[u8]) -> Option<(Token, usize)> {
    let mut i = 0;
    let negated = matches!(b.first(), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < b.len() {
        if b[i] == b']' && !first {
            return Some((Token::Class(negated, ranges), i + 1));
        }
        first = false;
        let lo = b[i];
        if i + 2 < b.len() && b[i + 1] == b'-' && b[i + 2] != b']' {
            ranges.push((lo, b[i + 2]));
            i += 3;
        } else {
            ranges.push((lo, lo));
            i += 1;
        }
    }
    None
}

/// Dynamic programming over pattern tokens and path bytes: no backtracking blow-up.
fn glob(tokens: &[Token], text: &[u8]) -> bool {
    let n = text.len();
    let mut cur = vec![false; n + 1];
    cur[0] = true;
    for t in tokens {
        let mut next = vec![false; n + 1];
        match t {
            Token::Star | Token::StarStar => {
                let mut reach = false;
                for j in 0..=n {
                    if cur[j] {
                        reach = true;
                    }
                    next[j] = reach;
                    if *t == Token::Star && j < n && text[j] == b'/' {
                        reach = false;
                    }
                }
            }
            Token::StarStarSlash => {
                let mut reach = false;
                for j in 0..=n {
                    next[j] = cur[j] || (reach && j > 0 && text[j - 1] == b'/');
                    reach |= cur[j];
                }
            }
            one => {
                for j in 0..n {
                    if cur[j] {
                        let c = text[j];
                        next[j + 1] = match one {
                            Token::Byte(b) => c == *b,
                            Token::Any => c != b'/',
                            Token::Class(neg, ranges) => {
                                c != b'/'
                                    && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
                                        != *neg
                            }
                            _ => unreachable!("handled above"),
                        };
                    }
                }
            }
        }
        cur = next;
    }
    cur[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_that_change_archived_bytes() {
        let rules = |t: &str| converting_rules(t.as_bytes());
        assert!(rules("* text=auto\n*.go text eol=lf\n*.png binary\n# *.x eol=crlf\n").is_empty());
        assert_eq!(
            rules("*.bat text eol=crlf\n"),
            [("*.bat".into(), "eol=crlf".into())]
        );
        assert!(rules("*.go -ident\n*.txt !eol\n").is_empty());
        assert_eq!(rules("*.go ident\n"), [("*.go".into(), "ident".into())]);
        assert_eq!(
            rules("*.txt working-tree-encoding=UTF-16\n")[0].1,
            "working-tree-encoding=UTF-16"
        );
        assert_eq!(
            rules("[attr]windows text eol=crlf\n*.ps1 windows\n"),
            [("*.ps1".into(), "windows".into())]
        );
        assert_eq!(rules("\"a b.txt\" eol=crlf\n")[0].0, "a b.txt");
        assert!(
            rules("eol=crlf\n").is_empty(),
            "a pattern alone sets nothing"
        );
    }

    #[test]
    fn patterns_as_gitattributes_match_them() {
        for (pattern, path, want) in [
            ("*.bat", "run.bat", true),
            ("*.bat", "scripts/run.bat", true),
            ("*.bat", "run.sh", false),
            ("*", "a/b/c.go", true),
            ("scripts/*.bat", "scripts/run.bat", true),
            ("scripts/*.bat", "scripts/x/run.bat", false),
            ("/scripts/*.bat", "scripts/run.bat", true),
            ("**/x.txt", "x.txt", true),
            ("**/x.txt", "a/b/x.txt", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**", "a/x/y", true),
            ("a/**", "b/x", false),
            ("[Rr]eadme.?d", "README.md", false),
            ("[Rr]eadme.?d", "Readme.md", true),
            ("[!a]*.go", "b.go", true),
            ("[!a]*.go", "a.go", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("dir/", "dir/file", false),
        ] {
            assert_eq!(pattern_matches(pattern, path), want, "{pattern} {path}");
        }
        // Pathological patterns cost their length times the path's, no more.
        let p = "*a".repeat(500) + "b";
        assert!(!pattern_matches(&p, &"a".repeat(2000)));
    }
}
