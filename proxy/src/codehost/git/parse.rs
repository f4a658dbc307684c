//! What git prints, parsed: ref listings, tree listings, `cat-file --batch` headers, and
//! stderr mapped to a [`HostError`]. Pure functions; git's output is untrusted like any other.

use std::collections::BTreeMap;

use crate::codehost::{HostError, is_lower_hex, sanitize, scrub_userinfo};

/// The mirror's refs that the go command looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Refs {
    /// The remote's HEAD (its default branch's commit), if it has one.
    pub(crate) head: Option<String>,
    /// Tag name → the object it names, annotated tags peeled.
    pub(crate) tags: BTreeMap<String, String>,
    /// Branch name → commit.
    pub(crate) branches: BTreeMap<String, String>,
}

/// Where we keep the remote's HEAD in the mirror (a bare mirror's own HEAD is not the
/// remote's).
pub(crate) const HEAD_REF: &str = "refs/modfleet/HEAD";

/// Lines of `HASH<space or tab>REF`, as `git ls-remote` and `git show-ref -d` print them.
/// Malformed lines are an error: git prints none.
pub(crate) fn ref_lines(out: &[u8]) -> Result<Vec<(String, String)>, HostError> {
    let text = std::str::from_utf8(out)
        .map_err(|_| HostError::Corrupt("git listed a ref name that is not UTF-8".into()))?;
    let mut lines = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (hash, name) = line
            .split_once(['\t', ' '])
            .filter(|(h, n)| (h.len() == 40 || h.len() == 64) && is_lower_hex(h) && !n.is_empty())
            .ok_or_else(|| {
                HostError::Corrupt(format!(
                    "unexpected ref line from git: {:?}",
                    sanitize(line, 200)
                ))
            })?;
        lines.push((hash.to_string(), name.to_string()));
    }
    Ok(lines)
}

impl Refs {
    /// From `git show-ref -d` in the mirror: branches, tags (peeled through `^{}` lines) and
    /// [`HEAD_REF`]; other refs ignored.
    pub(crate) fn from_show_ref(out: &[u8]) -> Result<Refs, HostError> {
        let mut refs = Refs::default();
        let mut peeled = BTreeMap::new();
        for (hash, name) in ref_lines(out)? {
            if name == HEAD_REF {
                refs.head = Some(hash);
            } else if let Some(branch) = name.strip_prefix("refs/heads/") {
                refs.branches.insert(branch.to_string(), hash);
            } else if let Some(tag) = name.strip_prefix("refs/tags/") {
                match tag.strip_suffix("^{}") {
                    Some(tag) => peeled.insert(tag.to_string(), hash),
                    None => refs.tags.insert(tag.to_string(), hash),
                };
            }
        }
        for (tag, hash) in peeled {
            if let Some(t) = refs.tags.get_mut(&tag) {
                *t = hash;
            }
        }
        Ok(refs)
    }

    /// Tags naming `hash`, sorted.
    pub(crate) fn tags_at(&self, hash: &str) -> Vec<String> {
        self.tags
            .iter()
            .filter(|(_, h)| *h == hash)
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// The header `git cat-file --batch` prints before each object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchHeader {
    /// `OID TYPE SIZE`; the contents and a newline follow.
    Object { kind: String, size: u64 },
    /// `NAME missing` (or `ambiguous`): nothing follows.
    Missing,
}

pub(crate) fn batch_header(line: &[u8]) -> Result<BatchHeader, HostError> {
    let bad = || {
        HostError::Corrupt(format!(
            "unexpected header from git cat-file: {:?}",
            sanitize(&String::from_utf8_lossy(line), 200)
        ))
    };
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    if text.ends_with(" missing") || text.ends_with(" ambiguous") {
        return Ok(BatchHeader::Missing);
    }
    let mut f = text.split(' ');
    match (f.next(), f.next(), f.next(), f.next()) {
        (Some(oid), Some(kind), Some(size), None)
            if (oid.len() == 40 || oid.len() == 64) && is_lower_hex(oid) =>
        {
            Ok(BatchHeader::Object {
                kind: kind.to_string(),
                size: size.parse().map_err(|_| bad())?,
            })
        }
        _ => Err(bad()),
    }
}

/// `git log -n1 --format=%H %ct`: the full hash and the committer time (Unix seconds).
pub(crate) fn hash_and_time(out: &[u8]) -> Result<(String, i64), HostError> {
    let text = String::from_utf8_lossy(out);
    let mut f = text.split_whitespace();
    match (f.next(), f.next(), f.next()) {
        (Some(h), Some(t), None) if (h.len() == 40 || h.len() == 64) && is_lower_hex(h) => t
            .parse()
            .map(|t| (h.to_string(), t))
            .map_err(|_| HostError::Corrupt(format!("invalid time from git log: {text:?}"))),
        _ => Err(HostError::Corrupt(format!(
            "unexpected output from git log: {:?}",
            sanitize(&text, 200)
        ))),
    }
}

/// Whether a git run talked to the remote (then failures are the network's or the server's)
/// or only read the mirror (then an unknown name is just that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Remote,
    Local,
}

/// Maps a failed git run's stderr to an error naming `what` (the operation and the
/// repository, without userinfo) and saying what to do. Server text is scrubbed of userinfo
/// and control characters and cut short.
pub(crate) fn classify(what: &str, scope: Scope, stderr: &[u8]) -> HostError {
    let text = String::from_utf8_lossy(stderr);
    let lower = text.to_ascii_lowercase();
    let detail = detail(&text);
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if scope == Scope::Remote {
        if has(&[
            "host key verification failed",
            "no matching host key",
            "remote host identification has changed",
        ]) {
            return HostError::Unauthorized(format!(
                "{what}: the server's SSH host key is not in the configured known_hosts file \
                 (add it, e.g. from ssh-keyscan output checked out of band): {detail}"
            ));
        }
        if has(&[
            "authentication failed",
            "could not read username",
            "could not read password",
            "permission denied (publickey",
            "permission denied, please try again",
            "returned error: 401",
            "returned error: 403",
            "http basic: access denied",
            "invalid username or password",
            "invalid credentials",
            "load key",
        ]) {
            return HostError::Unauthorized(format!(
                "{what}: the server refused our credentials (check the configured \
                 username/password or token files, or the SSH key and its access to the \
                 repository): {detail}"
            ));
        }
        // git's own "fatal: repository 'URL' not found" (HTTP 404), and what hosts say.
        let missing = has(&[
            "repository not found",
            "does not appear to be a git repository",
            "no such repository",
            "could not be found",
            "returned error: 404",
            "returned error: 410",
        ]) || (lower.contains("repository '") && lower.contains("' not found"));
        if missing {
            return HostError::NotFound(format!(
                "{what}: the repository does not exist (or is hidden from these \
                 credentials): {detail}"
            ));
        }
        return HostError::Unavailable(format!(
            "{what}: the Git server could not be reached or failed; retried on the next \
             request: {detail}"
        ));
    }
    if has(&[
        "unknown revision",
        "bad revision",
        "not a valid object name",
        "invalid object name",
        "not a tree object",
        "does not exist in",
        "bad object",
        "not a valid commit name",
        "ambiguous argument",
        // git archive of a directory that is not in the tree.
        "did not match any files",
    ]) {
        return HostError::NotFound(format!("{what}: {detail}"));
    }
    HostError::Corrupt(format!(
        "{what}: git failed on the local mirror (it is rebuilt if deleted): {detail}"
    ))
}

/// The informative part of git's stderr: its `fatal:`/`error:`/`remote:` lines (or all of
/// it), scrubbed and cut short.
fn detail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let picked: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.starts_with("fatal:")
                || l.starts_with("error:")
                || l.starts_with("remote:")
                || l.starts_with("permission denied")
                || l.starts_with("host key")
        })
        .collect();
    let text = if picked.is_empty() {
        lines.join("; ")
    } else {
        picked.join("; ")
    };
    if text.is_empty() {
        return "git printed no reason".into();
    }
    sanitize(&scrub_userinfo(&text), 600)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const C: &str = "3333333333333333333333333333333333333333";

    #[test]
    fn show_ref_output_peels_annotated_tags() {
        let out = format!(
            "{A} refs/heads/main\n{B} refs/tags/v1.0.0\n{C} refs/tags/v1.0.0^{{}}\n\
             {A} refs/tags/v0.1.0\n{A} {HEAD_REF}\n{B} refs/pull/1/head\n"
        );
        let refs = Refs::from_show_ref(out.as_bytes()).unwrap();
        assert_eq!(refs.head.as_deref(), Some(A));
        assert_eq!(refs.branches["main"], A);
        assert_eq!(refs.tags["v1.0.0"], C);
        assert_eq!(refs.tags["v0.1.0"], A);
        assert_eq!(refs.tags.len(), 2);
        assert_eq!(refs.tags_at(A), vec!["v0.1.0".to_string()]);
        assert_eq!(refs.tags_at(C), vec!["v1.0.0".to_string()]);
    }

    #[test]
    fn malformed_ref_lines_are_corrupt() {
        for bad in [
            "zzz refs/heads/x\n",
            "1111 refs/heads/x\n",
            &format!("{A}\n"),
        ] {
            assert!(
                matches!(ref_lines(bad.as_bytes()), Err(HostError::Corrupt(_))),
                "{bad:?}"
            );
        }
        assert!(ref_lines(b"").unwrap().is_empty());
    }

    #[test]
    fn batch_headers() {
        assert_eq!(
            batch_header(format!("{A} blob 42").as_bytes()).unwrap(),
            BatchHeader::Object {
                kind: "blob".into(),
                size: 42
            }
        );
        assert_eq!(
            batch_header(format!("{A}:go.mod missing").as_bytes()).unwrap(),
            BatchHeader::Missing
        );
        assert!(batch_header(b"x blob 1").is_err());
        assert!(batch_header(format!("{A} blob -1").as_bytes()).is_err());
    }

    #[test]
    fn log_hash_and_time() {
        assert_eq!(
            hash_and_time(format!("{A} 1700000000").as_bytes()).unwrap(),
            (A.to_string(), 1700000000)
        );
        assert!(hash_and_time(b"nope").is_err());
        assert!(hash_and_time(format!("{A} x").as_bytes()).is_err());
    }

    #[derive(Debug, PartialEq)]
    enum Kind {
        Unauthorized,
        HostKey,
        NotFound,
        Unavailable,
        Other,
    }

    #[test]
    fn remote_failures_map_to_host_errors() {
        let what = "git fetch of https://git.example.com/r.git";
        let cases: &[(&str, Kind)] = &[
            (
                "fatal: Authentication failed for 'https://bob:s3cret@git.example.com/r.git/'\n",
                Kind::Unauthorized,
            ),
            (
                "fatal: could not read Username for 'https://git.example.com': terminal prompts disabled\n",
                Kind::Unauthorized,
            ),
            (
                "git@127.0.0.1: Permission denied (publickey).\r\nfatal: Could not read from remote repository.\n",
                Kind::Unauthorized,
            ),
            (
                "Host key verification failed.\nfatal: Could not read from remote repository.\n",
                Kind::HostKey,
            ),
            (
                "fatal: unable to access 'https://h/r/': The requested URL returned error: 403\n",
                Kind::Unauthorized,
            ),
            (
                "remote: Repository not found.\nfatal: repository 'https://h/r.git/' not found\n",
                Kind::NotFound,
            ),
            (
                "fatal: '/srv/x.git' does not appear to be a git repository\nfatal: Could not read from remote repository.\n",
                Kind::NotFound,
            ),
            (
                "fatal: unable to access 'https://h/r/': The requested URL returned error: 502\n",
                Kind::Unavailable,
            ),
            (
                "fatal: unable to access 'https://h/r/': Failed to connect to h port 443: Connection refused\n",
                Kind::Unavailable,
            ),
            (
                "fatal: unable to access 'https://nope/': Could not resolve host: nope\n",
                Kind::Unavailable,
            ),
            (
                "ssh: connect to host 127.0.0.1 port 1: Connection refused\n",
                Kind::Unavailable,
            ),
            (
                "sh: 1: ssh: not found\nfatal: Could not read from remote repository.\n",
                Kind::Unavailable,
            ),
            ("", Kind::Unavailable),
        ];
        for (stderr, want) in cases {
            let e = classify(what, Scope::Remote, stderr.as_bytes());
            let got = match &e {
                HostError::Unauthorized(m) if m.contains("known_hosts") => Kind::HostKey,
                HostError::Unauthorized(_) => Kind::Unauthorized,
                HostError::NotFound(_) => Kind::NotFound,
                HostError::Unavailable(_) => Kind::Unavailable,
                _ => Kind::Other,
            };
            assert_eq!(got, *want, "{stderr:?} -> {e:?}");
            let m = e.to_string();
            assert!(m.contains(what), "{m}");
            assert!(!m.contains("s3cret") && !m.contains("bob"), "{m}");
        }
        let silent = classify(what, Scope::Remote, b"").to_string();
        assert!(silent.contains("no reason"), "{silent}");
    }

    #[test]
    fn local_failures_map_to_not_found_or_corrupt() {
        let e = classify("git log", Scope::Local, b"fatal: bad revision 'nope'\n");
        assert!(matches!(e, HostError::NotFound(_)), "{e:?}");
        let e = classify(
            "git ls-tree",
            Scope::Local,
            b"fatal: Not a valid object name abc:sub\n",
        );
        assert!(matches!(e, HostError::NotFound(_)), "{e:?}");
        let e = classify("git log", Scope::Local, b"fatal: packfile is truncated\n");
        assert!(matches!(e, HostError::Corrupt(_)), "{e:?}");
    }

    #[test]
    fn details_are_scrubbed_and_short() {
        let noisy = format!(
            "remote: \x1b[31mred\x1b[0m\n{}\nfatal: x\n",
            "y".repeat(5000)
        );
        let d = detail(&noisy);
        assert!(d.starts_with("remote:  [31mred"), "{d}");
        assert!(d.ends_with("fatal: x"), "{d}");
        assert!(detail(&"z".repeat(5000)).chars().count() <= 601);
    }
}
