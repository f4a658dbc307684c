//! Where a private module's repository is: the entry's explicit repository, or the go
//! command's rule for `.git`-qualified paths (`cmd/go/internal/vcs/vcs.go`, the last of
//! `vcsPaths`: the shortest path prefix whose last element ends in `.git` is the repository
//! root, and `https://` + that prefix without `.git` is the repository), its static rules for
//! the well-known Git hosts before that (github.com, bitbucket.org, ...), else go-get
//! discovery ([`super::discovery`]). Pure: no I/O.

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
    if let Some(location) = static_rule(module)? {
        return Ok(Some(location));
    }
    Ok(git_qualified_root(module).map(|root| Location {
        url: format!("https://{}", &root[..root.len() - ".git".len()]),
        root: root.to_string(),
        subdir: String::new(),
    }))
}

/// One of the go command's static rules for a well-known Git host (`vcsPaths` in
/// `cmd/go/internal/vcs/vcs.go`): a path under `prefix` has its repository root `elems.len()`
/// elements below it, each matching its check; the repository is `https://` + the root.
struct HostRule {
    prefix: &'static str,
    elems: &'static [fn(&str) -> bool],
    /// vcs.go's `noVCSSuffix`: a root ending in `.git` (or another VCS's suffix) is refused.
    no_vcs_suffix: bool,
}

/// `[\w.\-]+`.
fn word(e: &str) -> bool {
    !e.is_empty()
        && e.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+`.
fn lower_alnum(e: &str) -> bool {
    !e.is_empty()
        && e.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `[a-z0-9_.\-]+\.git`.
fn apache_repo(e: &str) -> bool {
    e.strip_suffix(".git").is_some_and(|name| {
        !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            })
    })
}

/// The Git hosts of `vcsPaths`, in its order (its Fossil and Bazaar hosts are not Git, and
/// are left to the explicit repository of a `privateModules` entry).
const HOST_RULES: &[HostRule] = &[
    HostRule {
        prefix: "github.com",
        elems: &[word, word],
        no_vcs_suffix: true,
    },
    HostRule {
        prefix: "bitbucket.org",
        elems: &[word, word],
        no_vcs_suffix: true,
    },
    HostRule {
        prefix: "hub.jazz.net/git",
        elems: &[lower_alnum, word],
        no_vcs_suffix: true,
    },
    HostRule {
        prefix: "git.apache.org",
        elems: &[apache_repo],
        no_vcs_suffix: false,
    },
    HostRule {
        prefix: "git.openstack.org",
        elems: &[word, word],
        no_vcs_suffix: false,
    },
];

/// The static rule for `module`'s host, as the go command applies it: `Ok(None)` when no
/// well-known host's prefix holds the path; an error (no discovery) when one does but the path
/// does not fit it, as `repoRootFromVCSPaths` answers "invalid ... import path".
pub fn static_rule(module: &str) -> Result<Option<Location>, NotLocated> {
    let Some(rule) = HOST_RULES
        .iter()
        .find(|r| has_path_prefix(module, r.prefix))
    else {
        return Ok(None);
    };
    let invalid = |why: &str| {
        NotLocated(format!(
            "{module} is not a valid {} path ({why}); give the privateModules entry an explicit repository if this module lives elsewhere",
            rule.prefix
        ))
    };
    let rest: Vec<&str> = match module[rule.prefix.len()..].strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => Vec::new(),
    };
    if rest.len() < rule.elems.len()
        || !rule.elems.iter().zip(&rest).all(|(ok, e)| ok(e))
        || !rest[rule.elems.len()..].iter().all(|e| word(e))
    {
        return Err(invalid(&format!(
            "the repository is the {} path elements after {}",
            rule.elems.len(),
            rule.prefix
        )));
    }
    let root_len = rule.prefix.len()
        + rest[..rule.elems.len()]
            .iter()
            .map(|e| 1 + e.len())
            .sum::<usize>();
    let root = &module[..root_len];
    if rule.no_vcs_suffix
        && [".bzr", ".fossil", ".git", ".hg", ".svn"]
            .iter()
            .any(|suffix| root.ends_with(suffix))
    {
        return Err(invalid("invalid version control suffix"));
    }
    Ok(Some(Location {
        url: format!("https://{root}"),
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

    /// vcsPaths' expressions, case by case.
    #[test]
    fn well_known_hosts_follow_the_go_commands_static_rules() {
        let found = |m: &str| {
            let l = static_rule(m).unwrap().unwrap();
            (l.url, l.root)
        };
        let pair = |root: &str| (format!("https://{root}"), root.to_string());
        assert_eq!(
            found("github.com/corp/lib/sub/v2"),
            pair("github.com/corp/lib")
        );
        assert_eq!(
            found("github.com/Corp_1/li.b-x"),
            pair("github.com/Corp_1/li.b-x")
        );
        assert_eq!(
            found("bitbucket.org/team/repo/pkg"),
            pair("bitbucket.org/team/repo")
        );
        assert_eq!(
            found("hub.jazz.net/git/user1/proj/x"),
            pair("hub.jazz.net/git/user1/proj")
        );
        assert_eq!(
            found("git.apache.org/thrift.git/lib/go"),
            pair("git.apache.org/thrift.git")
        );
        assert_eq!(
            found("git.openstack.org/openstack/nova"),
            pair("git.openstack.org/openstack/nova")
        );
        // Other hosts: not these rules' business.
        for other in [
            "gitlab.com/corp/lib",
            "github.community/a/b",
            "git.corp.example/a/b",
        ] {
            assert_eq!(static_rule(other).unwrap(), None, "{other}");
        }
        // A well-known prefix with a path that does not fit is an error, not discovery.
        for bad in [
            "github.com/corp",
            "github.com/corp/lib.git",
            "github.com/corp/lib.git/sub",
            "bitbucket.org/team/repo.hg",
            "hub.jazz.net/git/User/proj",
            "git.apache.org/thrift",
            "github.com/corp/l!b",
        ] {
            let e = static_rule(bad).unwrap_err();
            assert!(
                e.0.contains(bad) && e.0.contains("explicit repository"),
                "{bad}: {e}"
            );
        }
    }
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
            // Neither: go-get discovery decides.
            assert_eq!(locate(&e, m).unwrap(), None, "{m}");
        }
        // github.com's rule comes first, as in vcsPaths, and refuses a `.git` root
        // (noVCSSuffix) instead of leaving it to the generic rule.
        assert!(locate(&e, "github.com/corp/lib.git/sub").is_err());
    }
}
