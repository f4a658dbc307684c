//! Where a private module's repository is: the entry's explicit repository, or the go
//! command's rule for `.git`-qualified paths (`cmd/go/internal/vcs/vcs.go`, the last of
//! `vcsPaths`: the shortest path prefix whose last element ends in `.git` is the repository
//! root, and `https://` + that prefix without `.git` is the repository), its static rule for
//! github.com, else go-get discovery ([`super::discovery`]). Pure: no I/O.

use crate::config::PrivateModule;

/// A module's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The repository URL git fetches (and `Origin.URL`).
    pub url: String,
    /// The module path prefix at the repository's root (`codeRoot`).
    pub root: String,
    /// The directory below the one the path implies (a go-import tag's fourth field).
    pub subdir: String,
}

/// Why no repository was found for a module (an answer of 404: the module is not there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotLocated(pub String);

/// The repository of `module`, which matches `entry`'s pattern; `Ok(None)`: ask go-get
/// discovery.
pub fn locate(entry: &PrivateModule, module: &str) -> Result<Option<Location>, NotLocated> {
    if let Some(repo) = &entry.repository {
        if !has_path_prefix(module, &repo.root) {
            return Err(NotLocated(format!(
                "module {module} is not in the configured repository {}, whose root is {}",
                crate::codehost::display_url(&repo.url),
                repo.root
            )));
        }
        return Ok(Some(Location {
            url: repo.url.clone(),
            root: repo.root.clone(),
            subdir: String::new(),
        }));
    }
    // vcsPaths' order: the well-known hosts' rules before the generic `.git` one.
    if let Some(location) = super::discovery::static_rule(module) {
        return Ok(Some(location));
    }
    Ok(git_qualified_root(module).map(|root| Location {
        url: format!("https://{}", &root[..root.len() - ".git".len()]),
        root: root.to_string(),
        subdir: String::new(),
    }))
}

/// The root of a `.git`-qualified path: `host/a/b.git` of `host/a/b.git/sub`. The host must
/// have a dot; elements are `~?[\w.-]+`, as vcs.go's expression has them.
fn git_qualified_root(module: &str) -> Option<&str> {
    let mut elems = module.split('/');
    let host = elems.next()?;
    let host_ok = host.contains('.')
        && !host.starts_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !host_ok {
        return None;
    }
    let mut end = host.len();
    for elem in elems {
        let name = elem.strip_prefix('~').unwrap_or(elem);
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return None;
        }
        end += 1 + elem.len();
        if elem.len() > ".git".len() && elem.ends_with(".git") {
            return Some(&module[..end]);
        }
    }
    None
}

/// `hasPathPrefix`: whether `s` begins with the path elements of `prefix`.
fn has_path_prefix(s: &str, prefix: &str) -> bool {
    s == prefix || (s.starts_with(prefix) && s.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codehost::git::Credentials;
    use crate::config::{ModulePattern, PrivateRepository};

    fn entry(repository: Option<(&str, &str)>) -> PrivateModule {
        PrivateModule {
            pattern: ModulePattern::parse("git.corp.example/*").unwrap(),
            repository: repository.map(|(url, root)| PrivateRepository {
                url: url.into(),
                root: root.into(),
            }),
            insecure: false,
            credentials: Credentials::None,
        }
    }

    #[test]
    fn explicit_repositories_hold_the_paths_under_their_root() {
        let e = entry(Some((
            "ssh://git@h/team/lib.git",
            "git.corp.example/team/lib",
        )));
        let l = locate(&e, "git.corp.example/team/lib/sub/v2")
            .unwrap()
            .unwrap();
        assert_eq!(l.url, "ssh://git@h/team/lib.git");
        assert_eq!(l.root, "git.corp.example/team/lib");
        let err = locate(&e, "git.corp.example/team/library").unwrap_err();
        assert!(err.0.contains("not in the configured repository"), "{err}");
    }

    #[test]
    fn git_qualified_paths_name_their_repository_as_the_go_command_does() {
        let e = entry(None);
        let l = locate(&e, "git.corp.example/a/b.git/sub/v2")
            .unwrap()
            .unwrap();
        assert_eq!(l.root, "git.corp.example/a/b.git");
        assert_eq!(l.url, "https://git.corp.example/a/b");
        let l = locate(&e, "git.corp.example/a.git").unwrap().unwrap();
        assert_eq!(l.url, "https://git.corp.example/a");
        // The shortest prefix wins.
        let l = locate(&e, "git.corp.example/a.git/b.git").unwrap().unwrap();
        assert_eq!(l.root, "git.corp.example/a.git");
        for m in [
            "git.corp.example/a/b",
            "git.corp.example/.git",
            "localhost/a.git",
        ] {
            // github.com's rule comes first, as in vcsPaths.
            let l = locate(&e, "github.com/corp/lib.git/sub").unwrap().unwrap();
            assert_eq!(l.url, "https://github.com/corp/lib.git");
            assert_eq!(l.root, "github.com/corp/lib.git");
            // Neither: go-get discovery decides.
            assert_eq!(locate(&e, m).unwrap(), None, "{m}");
        }
    }
}
