//! Code hosts: where private modules come from when no proxy has them.
//!
//! [`CodeHost`] mirrors the go command's `codehost.Repo` (`cmd/go/internal/modfetch/codehost`):
//! tags, revisions, files and trees of one repository, nothing about modules. The mapping from a
//! module path to a repository, its subdirectory and its versions is built on top of it.
//! [`git::GitRepo`] implements it with the `git` command over a local bare mirror.
//!
//! Everything here is synchronous and may take as long as a network fetch: async callers use
//! `spawn_blocking`.

pub mod git;

use std::time::SystemTime;

/// One repository as the go command sees it. Revisions are full commit hashes after [`stat`].
///
/// [`stat`]: CodeHost::stat
pub trait CodeHost: Send + Sync {
    /// Fetches new refs from the remote (incremental; creates the bare mirror the first time).
    /// The read methods below answer from the mirror as last fetched (they fetch once themselves
    /// if it never was): a commit pushed since is `NotFound` until the next `refresh`.
    fn refresh(&self) -> Result<(), HostError>;
    /// Tags starting with `prefix`, sorted by name, with the object each points at (annotated
    /// tags peeled, as `git ls-remote` reports `TAG^{}`).
    fn tags(&self, prefix: &str) -> Result<Vec<Tag>, HostError>;
    /// Resolves what the go command accepts as a revision: a hash or unique hash prefix of at
    /// least 7 hex digits, a tag, a branch, or `HEAD`, tried in that order.
    fn stat(&self, rev: &str) -> Result<RevInfo, HostError>;
    /// The default branch's head (go's `Latest`): the remote's `HEAD`.
    fn latest(&self) -> Result<RevInfo, HostError>;
    /// A file at a commit (`path` from the repository root); `Ok(None)` when absent or not a
    /// file; [`HostError::TooLarge`] past `max_bytes`.
    fn read_file(
        &self,
        hash: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<Option<Vec<u8>>, HostError>;
    /// The go command's `ReadZip`: the files under `subdir` ("" = root) at a commit as
    /// `git archive --format=zip --prefix=prefix/` exports them, run as the go command runs
    /// it (`core.autocrlf=input`, `core.eol=lf`, `export-ignore` and `export-subst` off, so
    /// the tree's `eol`/`text`, `ident` and `working-tree-encoding` attributes apply), spooled
    /// to an unnamed file. `NotFound` when nothing is at `subdir`; `TooLarge` past
    /// `max_bytes` of archive. The archive is as hostile as the repository: read it with
    /// `protocol::zip::create::git_archive`.
    fn read_zip(&self, hash: &str, subdir: &str, max_bytes: u64) -> Result<SpooledZip, HostError>;
    /// The highest semver tag with `prefix` reachable from `hash` for which `allowed(tag)`
    /// (go's `RecentTag`); the comparison is on the tag without its prefix.
    fn recent_tag(
        &self,
        hash: &str,
        prefix: &str,
        allowed: &dyn Fn(&str) -> bool,
    ) -> Result<Option<String>, HostError>;
    /// Whether `hash` descends from (or is) the commit the tag `tag` names (go's
    /// `DescendsFrom`); false when there is no such tag.
    fn descends_from(&self, hash: &str, tag: &str) -> Result<bool, HostError>;
}

/// What [`CodeHost::read_zip`] gives: the archive in a file of its own (deleted when
/// dropped) and its size.
#[derive(Debug)]
pub struct SpooledZip {
    pub file: std::fs::File,
    pub size: u64,
}

/// A tag and the object it names (annotated tags peeled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    pub hash: String,
}

/// A resolved revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevInfo {
    /// The full commit hash.
    pub hash: String,
    /// Its first 12 hex digits, as pseudo-versions carry it.
    pub short: String,
    /// Committer time (what the go command's pseudo-versions and `.info` use).
    pub time: SystemTime,
    /// Tags naming this commit, sorted.
    pub tags: Vec<String>,
    /// The revision as asked.
    pub name: String,
    /// The ref it was resolved through (`refs/tags/v1.0.0`, `refs/heads/main`, `HEAD` for
    /// [`CodeHost::latest`]), as the go command records `Origin.Ref` on a fresh clone: for a
    /// hash, the least ref name naming that commit; `None` when that is the remote's `HEAD`,
    /// when no ref names it, and for `HEAD` asked for by name.
    pub reference: Option<String>,
}

/// Why a code host could not answer. Messages name the repository (without userinfo) and say
/// what to do; they never carry a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Unknown revision, tag or path, or the repository does not exist: a 404/410 upstream.
    #[error("not found: {0}")]
    NotFound(String),
    /// The server refused our credentials (or we could not verify the server's host key).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Network failure, timeout, server error: a 5xx at our edge, never a 404.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Past a size or count limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// Git said something we could not parse, or the mirror is damaged.
    #[error("corrupt: {0}")]
    Corrupt(String),
}

/// `url` without its userinfo (`https://user:secret@host/x` → `https://host/x`), for messages.
/// scp-like `user@host:path` loses the `user@` too.
pub fn display_url(url: &str) -> String {
    scrub_userinfo(url)
}

/// Removes the userinfo of every URL in `text` (anything `scheme://userinfo@host`), and of an
/// scp-like address at its start.
pub(crate) fn scrub_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', or at whitespace or a quote in running text.
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    if !out.contains("://")
        && let Some((user, host)) = out.split_once('@')
        && !user.contains([':', '/', ' '])
        && host.contains(':')
    {
        return host.to_string();
    }
    out
}

/// A revision as a client may name it: refused when git could take it for an option or for
/// revision syntax beyond a plain name (`rev^`, `rev~2`, `:/text`, `@{...}`), which the go
/// command never resolves either.
pub(crate) fn check_rev(rev: &str) -> Result<(), HostError> {
    let bad = rev.is_empty()
        || rev.len() > 1024
        || rev.starts_with('-')
        || rev.starts_with('/')
        || rev.ends_with('/')
        || rev.ends_with(".lock")
        || rev.contains("..")
        || rev.contains("@{")
        || rev.contains("//")
        || rev
            .chars()
            .any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'));
    if bad {
        return Err(HostError::NotFound(format!(
            "invalid revision {:?}: not a tag, branch or commit hash",
            sanitize(rev, 80)
        )));
    }
    Ok(())
}

/// A path inside the repository: relative, `/`-separated, no `.`/`..`/empty components, no
/// control characters. `""` is the root when `allow_root`.
pub(crate) fn check_path(path: &str, allow_root: bool) -> Result<(), HostError> {
    if path.is_empty() && allow_root {
        return Ok(());
    }
    let bad = path.is_empty()
        || path.len() > 4096
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || path.chars().any(|c| c.is_control());
    if bad {
        return Err(HostError::NotFound(format!(
            "invalid path {:?} in a repository",
            sanitize(path, 200)
        )));
    }
    Ok(())
}

/// A full commit hash (40 hex digits, or 64 for SHA-256 repositories), lower case.
pub(crate) fn check_hash(hash: &str) -> Result<(), HostError> {
    if (hash.len() == 40 || hash.len() == 64) && is_lower_hex(hash) {
        return Ok(());
    }
    Err(HostError::NotFound(format!(
        "{:?} is not a full commit hash (stat the revision first)",
        sanitize(hash, 80)
    )))
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Text from a hostile source made fit for a message: control characters replaced, cut to
/// `max` characters.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_scrubbed_from_urls_and_text() {
        assert_eq!(
            display_url("https://bob:hunter2@git.example.com/a/b.git"),
            "https://git.example.com/a/b.git"
        );
        assert_eq!(
            display_url("ssh://git@127.0.0.1:2222/srv/r.git"),
            "ssh://127.0.0.1:2222/srv/r.git"
        );
        assert_eq!(display_url("git@github.com:o/r.git"), "github.com:o/r.git");
        assert_eq!(
            display_url("https://git.example.com/x"),
            "https://git.example.com/x"
        );
        assert_eq!(
            scrub_userinfo("fatal: Authentication failed for 'https://u:p@h/r.git/'\n"),
            "fatal: Authentication failed for 'https://h/r.git/'\n"
        );
        assert_eq!(
            scrub_userinfo("a http://x@h b https://y:z@k/p"),
            "a http://h b https://k/p"
        );
    }

    #[test]
    fn revisions_that_git_could_misread_are_refused() {
        for ok in [
            "v1.2.3",
            "main",
            "feature/x",
            "HEAD",
            "0123456789ab",
            "a-b_c.d",
        ] {
            assert!(check_rev(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "--upload-pack=touch /tmp/x",
            "-n",
            "v1^",
            "main~2",
            ":/fix",
            "HEAD@{1}",
            "a..b",
            "a b",
            "x\n",
            "/abs",
            "x.lock",
            "a*",
        ] {
            assert!(
                matches!(check_rev(bad), Err(HostError::NotFound(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn paths_must_be_plain_relative() {
        assert!(check_path("", true).is_ok());
        assert!(check_path("", false).is_err());
        assert!(check_path("a/b.go", false).is_ok());
        for bad in ["/a", "a/", "a//b", "./a", "a/../b", "..", "a\0b", "a\nb"] {
            assert!(check_path(bad, true).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hashes_are_full_lower_hex() {
        assert!(check_hash(&"a".repeat(40)).is_ok());
        assert!(check_hash(&"0".repeat(64)).is_ok());
        for bad in ["abc", &"A".repeat(40), &"g".repeat(40), &"a".repeat(41)] {
            assert!(check_hash(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sanitize_strips_control_characters_and_cuts() {
        assert_eq!(sanitize("a\x1b[31mb\n", 100), "a [31mb ");
        assert_eq!(sanitize("abcdef", 3), "abc…");
    }
}
