//! `privateModules`: module path patterns served from their Git repositories, each with how
//! its repository is found and the credentials for it. Checked here, once, so a typo is an
//! error at start naming the entry (`privateModules[N]`) and the fix, not a 5xx later.

use modfleet_contract::config::{GitCredentialsConfig, PrivateModuleConfig};

use super::{ConfigError, ModulePattern};
use crate::codehost::git::{Credentials, HttpsUser};

/// One validated `privateModules` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateModule {
    /// The GOPRIVATE glob (the go command's `module.MatchPrefixPatterns` semantics).
    pub pattern: ModulePattern,
    /// The one repository of the entry; `None`: found from the module path.
    pub repository: Option<PrivateRepository>,
    /// Plain http allowed (GOINSECURE).
    pub insecure: bool,
    pub credentials: Credentials,
}

/// An explicit repository and the module path prefix at its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateRepository {
    pub url: String,
    pub root: String,
}

pub(super) fn private_modules(
    entries: Option<Vec<PrivateModuleConfig>>,
) -> Result<Vec<PrivateModule>, ConfigError> {
    entries
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, entry)| private_module(index, entry))
        .collect()
}

/// `--private-module PATH=URL` values as the entries they stand for.
pub(super) fn from_flags(values: &[String]) -> Result<Vec<PrivateModuleConfig>, ConfigError> {
    values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let Some((path, url)) = value.split_once('=') else {
                return Err(ConfigError::Private {
                    index,
                    reason: "--private-module wants PATH=REPOSITORY_URL, such as \
                             git.corp.example.com/team/lib=https://git.corp.example.com/team/lib.git"
                        .into(),
                });
            };
            let path = path.trim().trim_end_matches('/');
            Ok(PrivateModuleConfig {
                pattern: path.to_string(),
                repository: Some(modfleet_contract::config::RepositoryConfig {
                    url: url.trim().to_string(),
                    root: path.to_string(),
                }),
                insecure: false,
                credentials: None,
            })
        })
        .collect()
}

fn private_module(index: usize, e: PrivateModuleConfig) -> Result<PrivateModule, ConfigError> {
    let bad = |reason: String| ConfigError::Private { index, reason };
    if e.pattern.contains(',') {
        return Err(bad(format!(
            "pattern {:?} holds a list: give each pattern its own privateModules entry",
            e.pattern
        )));
    }
    let pattern = ModulePattern::parse(&e.pattern).map_err(|err| {
        bad(format!(
            "pattern: {err} (a GOPRIVATE glob such as git.corp.example.com/*)"
        ))
    })?;
    let repository = match e.repository {
        None => None,
        Some(r) => {
            let url = r.url.trim().to_string();
            // Shown without userinfo: a password put there must not reach a log.
            check_url(&url, e.insecure).map_err(|why| {
                let shown = crate::codehost::display_url(&url);
                bad(format!("repository url {shown:?}: {why}"))
            })?;
            let root = r.root.trim().trim_end_matches('/').to_string();
            crate::protocol::ModulePath::parse(&root).map_err(|err| {
                bad(format!(
                    "repository root {root:?} is not a module path ({}): give the module path at the repository's root, such as git.corp.example.com/team/lib",
                    err.message
                ))
            })?;
            if !pattern.matches(&root) {
                return Err(bad(format!(
                    "repository root {root:?} does not match the pattern {:?}: the root must be a module path the pattern covers",
                    e.pattern
                )));
            }
            Some(PrivateRepository { url, root })
        }
    };
    let credentials = credentials(e.credentials.unwrap_or_default()).map_err(bad)?;
    if let Some(r) = &repository {
        let ssh = r.url.starts_with("ssh://");
        match (&credentials, ssh) {
            (Credentials::Https { .. }, true) => {
                return Err(bad(
                    "an ssh:// repository needs sshPrivateKeyFile and sshKnownHostsFile, not a username and password".into(),
                ));
            }
            (Credentials::Ssh { .. }, false) => {
                return Err(bad(
                    "an SSH key is only used for ssh:// repositories: use usernameFile and passwordFile for https://".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(PrivateModule {
        pattern,
        repository,
        insecure: e.insecure,
        credentials,
    })
}

/// `https://` and `ssh://` (and `http://` with `insecure`), with a host and a path, and no
/// password in it.
fn check_url(url: &str, insecure: bool) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("use https://HOST/PATH or ssh://[USER@]HOST/PATH")?;
    match scheme {
        "https" | "ssh" => {}
        "http" if insecure => {}
        "http" => return Err("plain http needs `insecure: true` (credentials and code would cross the network in clear text)".into()),
        _ => return Err(format!("scheme {scheme:?} is not supported: use https:// or ssh://")),
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("it has spaces or control characters".into());
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() || path.is_empty() {
        return Err("it names no host or no path".into());
    }
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && (scheme != "ssh" || userinfo.contains(':'))
    {
        return Err("put the username and password in `credentials`, not in the URL".into());
    }
    Ok(())
}

fn credentials(c: GitCredentialsConfig) -> Result<Credentials, String> {
    let https = c.username.is_some() || c.username_file.is_some() || c.password_file.is_some();
    let ssh = c.ssh_private_key_file.is_some() || c.ssh_known_hosts_file.is_some();
    if https && ssh {
        return Err("credentials: give either a username and passwordFile (https) or sshPrivateKeyFile and sshKnownHostsFile (ssh), not both".into());
    }
    if ssh {
        let (Some(key), Some(known)) = (c.ssh_private_key_file, c.ssh_known_hosts_file) else {
            return Err("credentials: SSH needs both sshPrivateKeyFile and sshKnownHostsFile (the server's host key is always checked)".into());
        };
        return Ok(Credentials::Ssh {
            private_key_file: key,
            known_hosts_file: known,
        });
    }
    if !https {
        return Ok(Credentials::None);
    }
    let username = match (c.username, c.username_file) {
        (Some(_), Some(_)) => {
            return Err("credentials: give username or usernameFile, not both".into());
        }
        (Some(name), None) if !name.trim().is_empty() => HttpsUser::Name(name.trim().to_string()),
        (None, Some(file)) => HttpsUser::File(file),
        _ => {
            return Err(
                "credentials: https needs a username (or usernameFile) with passwordFile".into(),
            );
        }
    };
    let Some(password_file) = c.password_file else {
        return Err("credentials: https needs passwordFile with the username".into());
    };
    Ok(Credentials::Https {
        username,
        password_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use modfleet_contract::config::RepositoryConfig;

    fn entry(pattern: &str, url: Option<&str>, root: &str) -> PrivateModuleConfig {
        PrivateModuleConfig {
            pattern: pattern.into(),
            repository: url.map(|url| RepositoryConfig {
                url: url.into(),
                root: root.into(),
            }),
            insecure: false,
            credentials: None,
        }
    }

    fn error(e: PrivateModuleConfig) -> String {
        private_modules(Some(vec![entry("ok.example/*", None, ""), e]))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn valid_entries_are_taken() {
        let mut e = entry(
            "git.corp.example/*",
            Some("ssh://git@git.corp.example/team/lib.git"),
            "git.corp.example/team/lib",
        );
        e.credentials = Some(GitCredentialsConfig {
            ssh_private_key_file: Some("/k".into()),
            ssh_known_hosts_file: Some("/kh".into()),
            ..Default::default()
        });
        let p = private_modules(Some(vec![e])).unwrap();
        assert!(p[0].pattern.matches("git.corp.example/team/lib/v2"));
        assert!(matches!(p[0].credentials, Credentials::Ssh { .. }));
        assert_eq!(
            p[0].repository.as_ref().unwrap().root,
            "git.corp.example/team/lib"
        );
    }

    #[test]
    fn the_flag_form_is_an_anonymous_entry() {
        let flags = ["git.corp.example/lib=https://git.corp.example/lib.git".to_string()];
        let p = private_modules(Some(from_flags(&flags).unwrap())).unwrap();
        assert!(p[0].pattern.matches("git.corp.example/lib/v2"));
        assert!(!p[0].pattern.matches("git.corp.example/other"));
        assert_eq!(
            p[0].repository.as_ref().unwrap().root,
            "git.corp.example/lib"
        );
        assert_eq!(p[0].credentials, Credentials::None);
        let e = from_flags(&["git.corp.example/lib".to_string()]).unwrap_err();
        assert!(e.to_string().contains("PATH=REPOSITORY_URL"), "{e}");
        let wild = from_flags(&["git.corp.example/*=https://h/r".to_string()]).unwrap();
        let e = private_modules(Some(wild)).unwrap_err().to_string();
        assert!(e.contains("privateModules[0]: repository root"), "{e}");
    }

    #[test]
    fn errors_name_the_entry_and_the_fix() {
        let e = error(entry(
            "git.corp.example/*",
            Some("http://h/r"),
            "git.corp.example/r",
        ));
        assert!(
            e.contains("privateModules[1]") && e.contains("insecure: true"),
            "{e}"
        );
        let e = error(entry(
            "git.corp.example/*",
            Some("ftp://h/r"),
            "git.corp.example/r",
        ));
        assert!(e.contains("https://"), "{e}");
        let e = error(entry(
            "git.corp.example/*",
            Some("https://u:p@h/r"),
            "git.corp.example/r",
        ));
        assert!(e.contains("credentials") && !e.contains("u:p"), "{e}");
        let e = error(entry(
            "git.corp.example/*",
            Some("https://h/r"),
            "other.example/r",
        ));
        assert!(e.contains("does not match the pattern"), "{e}");
        let e = error(entry("a.example/*,b.example/*", None, ""));
        assert!(e.contains("its own privateModules entry"), "{e}");
        let e = error(entry("/abs", None, ""));
        assert!(e.contains("privateModules[1]: pattern"), "{e}");
        let mut both = entry("git.corp.example/*", None, "");
        both.credentials = Some(GitCredentialsConfig {
            username: Some("u".into()),
            password_file: Some("/p".into()),
            ssh_private_key_file: Some("/k".into()),
            ..Default::default()
        });
        assert!(error(both).contains("not both"));
        let mut half = entry("git.corp.example/*", None, "");
        half.credentials = Some(GitCredentialsConfig {
            ssh_private_key_file: Some("/k".into()),
            ..Default::default()
        });
        assert!(error(half).contains("sshKnownHostsFile"));
        let mut no_password = entry("git.corp.example/*", None, "");
        no_password.credentials = Some(GitCredentialsConfig {
            username: Some("u".into()),
            ..Default::default()
        });
        assert!(error(no_password).contains("passwordFile"));
        let mut ssh_for_https = entry(
            "git.corp.example/*",
            Some("https://h/r"),
            "git.corp.example/r",
        );
        ssh_for_https.credentials = Some(GitCredentialsConfig {
            ssh_private_key_file: Some("/k".into()),
            ssh_known_hosts_file: Some("/kh".into()),
            ..Default::default()
        });
        assert!(error(ssh_for_https).contains("only used for ssh://"));
    }
}
