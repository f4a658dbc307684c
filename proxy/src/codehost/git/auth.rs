//! Which transports git may use for a repository URL, and how our credentials reach it:
//! HTTPS through a credential helper that `cat`s the configured files when git asks (the
//! secret is never in an argument, an environment variable or a message), SSH through
//! `GIT_SSH_COMMAND` with our key, our known_hosts and nothing of the machine's SSH setup.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::codehost::{HostError, display_url, sanitize};

/// How to authenticate to one repository. The files are read each time git needs them, so a
/// rotated Secret takes effect on the next fetch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Credentials {
    /// Anonymous (HTTPS), or SSH with no key (which then fails on any real server).
    #[default]
    None,
    /// HTTP Basic: a username and a file holding the password or token.
    Https {
        username: HttpsUser,
        password_file: PathBuf,
    },
    /// An SSH private key and the known_hosts file that pins the server's host key.
    Ssh {
        private_key_file: PathBuf,
        known_hosts_file: PathBuf,
    },
}

/// The HTTPS username: given as is (`x-access-token`, `oauth2`, a user), or in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpsUser {
    Name(String),
    File(PathBuf),
}

/// The transports a repository URL may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Https,
    Http,
    Ssh,
}

/// Checks a repository URL (it may come from a go-get meta tag: hostile) and says which
/// transport it uses. Only `https://`, `ssh://` and, when allowed, `http://`; no userinfo on
/// HTTP(S) (credentials come from files), no password anywhere, no spaces or controls.
pub(crate) fn transport(url: &str, allow_http: bool) -> Result<Transport, HostError> {
    let shown = sanitize(&display_url(url), 200);
    let refuse =
        |why: &str| HostError::NotFound(format!("repository URL {shown:?} refused: {why}"));
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(refuse("it is too long or has spaces or control characters"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| refuse("use https://, ssh:// (or http:// where allowed) URL syntax"))?;
    let authority = rest.split('/').next().unwrap_or("");
    let userinfo = authority.rfind('@').map(|at| &authority[..at]);
    if authority.is_empty() || authority.starts_with('-') || rest.len() <= authority.len() + 1 {
        return Err(refuse("it names no host or no path"));
    }
    let t = match scheme {
        "https" => Transport::Https,
        "http" if allow_http => Transport::Http,
        "http" => {
            return Err(refuse(
                "plain http is not allowed (it would send credentials in clear text)",
            ));
        }
        "ssh" => Transport::Ssh,
        _ => return Err(refuse("only https:// and ssh:// repositories are fetched")),
    };
    match (t, userinfo) {
        (_, None) => Ok(t),
        (Transport::Ssh, Some(u)) if !u.contains(':') && !u.is_empty() => Ok(t),
        _ => Err(refuse(
            "put the username and password in the credentials, not in the URL",
        )),
    }
}

/// A credential helper (git runs `!...` through the shell) that answers `get` with the
/// username and the password read from files at that moment; `store` and `erase` are
/// ignored. Only variable names are on its command line. Shell builtins only (`read`, `test`,
/// `printf`): the proxy image holds `sh` for git but no other programs. `read` takes the
/// file's first line, so a mounted Secret's trailing newline (or its absence) does not matter.
const CREDENTIAL_HELPER: &str = "!f() { while IFS= read -r l; do :; done; \
    test \"$1\" = get || exit 0; \
    if test -n \"${MODFLEET_GIT_USERNAME_FILE-}\"; then \
    u=; IFS= read -r u <\"$MODFLEET_GIT_USERNAME_FILE\" || test -n \"$u\" || exit 1; \
    else u=$MODFLEET_GIT_USERNAME; fi; \
    p=; IFS= read -r p <\"$MODFLEET_GIT_PASSWORD_FILE\" || test -n \"$p\" || exit 1; \
    printf 'username=%s\\npassword=%s\\n' \"$u\" \"$p\"; }; f";

/// What a run of git needs for these credentials: environment and `-c` settings.
#[derive(Debug, Default)]
pub(crate) struct AuthSetup {
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) config: Vec<String>,
}

/// The environment and settings for `transport` with `creds`. The files must be readable
/// now (a clear error beats git's "authentication failed" for a missing mount).
pub(crate) fn setup(
    transport: Transport,
    creds: &Credentials,
    repo: &str,
) -> Result<AuthSetup, HostError> {
    let mut s = AuthSetup::default();
    match (transport, creds) {
        (
            Transport::Https | Transport::Http,
            Credentials::Https {
                username,
                password_file,
            },
        ) => {
            readable(password_file, "password/token", repo)?;
            match username {
                HttpsUser::Name(name) => s.env.push(("MODFLEET_GIT_USERNAME".into(), name.into())),
                HttpsUser::File(file) => {
                    readable(file, "username", repo)?;
                    s.env
                        .push(("MODFLEET_GIT_USERNAME_FILE".into(), file.into()));
                }
            }
            s.env
                .push(("MODFLEET_GIT_PASSWORD_FILE".into(), password_file.into()));
            // Only for the repository's own origin: a redirect elsewhere gets nothing.
            s.config.push(format!(
                "credential.{}.helper={CREDENTIAL_HELPER}",
                origin(repo)
            ));
        }
        (Transport::Https | Transport::Http, Credentials::None) => {}
        (
            Transport::Ssh,
            Credentials::Ssh {
                private_key_file,
                known_hosts_file,
            },
        ) => {
            readable(private_key_file, "SSH private key", repo)?;
            readable(known_hosts_file, "known_hosts", repo)?;
            s.env.push((
                "GIT_SSH_COMMAND".into(),
                ssh_command(Some(private_key_file), known_hosts_file).into(),
            ));
        }
        (Transport::Ssh, Credentials::None) => {
            s.env.push((
                "GIT_SSH_COMMAND".into(),
                ssh_command(None, Path::new("/dev/null")).into(),
            ));
        }
        (Transport::Ssh, Credentials::Https { .. }) => {
            return Err(HostError::Unauthorized(format!(
                "{repo}: HTTPS credentials were configured for an ssh:// repository (configure an SSH key, or use the https:// URL)"
            )));
        }
        (Transport::Https | Transport::Http, Credentials::Ssh { .. }) => {
            return Err(HostError::Unauthorized(format!(
                "{repo}: an SSH key was configured for an https:// repository (configure a username and token, or use the ssh:// URL)"
            )));
        }
    }
    if transport == Transport::Ssh {
        s.env.push(("GIT_SSH_VARIANT".into(), "ssh".into()));
    }
    Ok(s)
}

/// `scheme://host[:port]` of a URL (without userinfo), which git matches credential
/// settings against.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{host}")
}

/// `ssh` with only what we give it: no config files, no agent, no prompts, the host key
/// checked against our known_hosts only. No timeouts of its own: the run's deadline kills it.
fn ssh_command(key: Option<&Path>, known_hosts: &Path) -> String {
    let mut cmd = String::from(
        "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes \
         -o IdentityAgent=none -o ControlMaster=no -o ControlPath=none -o UpdateHostKeys=no \
         -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
         -o GlobalKnownHostsFile=/dev/null -o ServerAliveInterval=15 -o ServerAliveCountMax=3",
    );
    cmd.push_str(" -o UserKnownHostsFile=");
    cmd.push_str(&shell_quote(&known_hosts.to_string_lossy()));
    match key {
        Some(key) => {
            cmd.push_str(" -o IdentityFile=");
            cmd.push_str(&shell_quote(&key.to_string_lossy()));
        }
        None => cmd.push_str(" -o IdentityFile=none"),
    }
    cmd
}

/// `s` as one word for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn readable(path: &Path, what: &str, repo: &str) -> Result<(), HostError> {
    std::fs::File::open(path).map(drop).map_err(|e| {
        HostError::Unauthorized(format!(
            "{repo}: cannot read the {what} file {}: {e} (is the Secret mounted there?)",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            transport("https://git.example.com/a/b.git", false).unwrap(),
            Transport::Https
        );
        assert_eq!(
            transport("ssh://git@git.example.com:22/a.git", false).unwrap(),
            Transport::Ssh
        );
        assert_eq!(
            transport("http://127.0.0.1:8080/r.git", true).unwrap(),
            Transport::Http
        );
        for (bad, allow_http) in [
            ("http://127.0.0.1/r.git", false),
            ("ext::sh -c touch% /tmp/x", true),
            ("file:///srv/r.git", true),
            ("git@github.com:o/r.git", true),
            ("/srv/r.git", true),
            ("-upload-pack=x", true),
            ("https://bob:secret@h/r.git", true),
            ("https://bob@h/r.git", true),
            ("ssh://bob:secret@h/r.git", true),
            ("https://h", true),
            ("https:///r.git", true),
            ("https://-oProxyCommand=x/r", true),
            ("https://h/a b", true),
            ("git://h/r.git", true),
        ] {
            let e = transport(bad, allow_http).unwrap_err();
            assert!(matches!(e, HostError::NotFound(_)), "{bad}: {e:?}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn mismatched_credentials_are_refused() {
        let key = Credentials::Ssh {
            private_key_file: "/k".into(),
            known_hosts_file: "/kh".into(),
        };
        let e = setup(Transport::Https, &key, "R").unwrap_err();
        assert!(
            matches!(e, HostError::Unauthorized(ref m) if m.contains("SSH key")),
            "{e}"
        );
    }

    #[test]
    fn missing_secret_files_are_named() {
        let creds = Credentials::Https {
            username: HttpsUser::Name("u".into()),
            password_file: "/nonexistent/password".into(),
        };
        let e = setup(Transport::Https, &creds, "https://h/r.git").unwrap_err();
        assert!(
            matches!(e, HostError::Unauthorized(ref m) if m.contains("/nonexistent/password") && m.contains("https://h/r.git")),
            "{e}"
        );
    }

    /// The helper, run as git runs it, answers `get` from the files (trailing newline of a
    /// mounted Secret dropped) and nothing else.
    #[test]
    fn the_credential_helper_reads_the_files_at_use() {
        let dir = tempfile::tempdir().unwrap();
        let (user, pass) = (dir.path().join("user"), dir.path().join("pass"));
        std::fs::write(&user, "alice\n").unwrap();
        std::fs::write(&pass, "t0k'en $x\n").unwrap();
        // What git writes to the helper's stdin, which it must drain.
        let request = dir.path().join("request");
        std::fs::write(&request, "protocol=https\nhost=h\n\n".repeat(10_000)).unwrap();
        let script = CREDENTIAL_HELPER.strip_prefix('!').unwrap();
        let run = |op: &str| {
            let out = Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("{script} \"$@\""))
                .arg("sh")
                .arg(op)
                .env("MODFLEET_GIT_USERNAME_FILE", &user)
                .env("MODFLEET_GIT_PASSWORD_FILE", &pass)
                // Builtins only: the proxy image has no `cat`.
                .env("PATH", "/nonexistent")
                .stdin(std::fs::File::open(&request).unwrap())
                .output()
                .unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap()
        };
        assert_eq!(run("get"), "username=alice\npassword=t0k'en $x\n");
        assert_eq!(run("erase"), "");
        std::fs::write(&pass, "rotated").unwrap();
        assert_eq!(run("get"), "username=alice\npassword=rotated\n");
        std::fs::write(&pass, "").unwrap();
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("{script} \"$@\""))
            .args(["sh", "get"])
            .env("MODFLEET_GIT_USERNAME_FILE", &user)
            .env("MODFLEET_GIT_PASSWORD_FILE", &pass)
            .output()
            .unwrap();
        assert!(!out.status.success(), "an empty password file is an error");
    }

    #[test]
    fn credentials_are_scoped_to_the_origin_and_never_inline() {
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("p");
        std::fs::write(&pass, "pa55-w0rd-xyz").unwrap();
        let creds = Credentials::Https {
            username: HttpsUser::Name("u".into()),
            password_file: pass,
        };
        let s = setup(
            Transport::Https,
            &creds,
            "https://git.example.com:8443/a/b.git",
        )
        .unwrap();
        assert_eq!(s.config.len(), 1);
        assert!(
            s.config[0].starts_with("credential.https://git.example.com:8443.helper=!"),
            "{:?}",
            s.config
        );
        // The secret is in no argument and no environment variable: only the file's path.
        assert!(!s.config[0].contains("pa55"));
        assert!(
            s.env
                .iter()
                .all(|(_, v)| !v.to_string_lossy().contains("pa55"))
        );
    }

    #[test]
    fn ssh_command_quotes_paths() {
        let c = ssh_command(Some(Path::new("/k/it's")), Path::new("/kh"));
        assert!(c.contains("IdentityFile='/k/it'\\''s'"), "{c}");
        assert!(c.contains("UserKnownHostsFile='/kh'"), "{c}");
        assert!(
            c.contains("BatchMode=yes") && c.contains("-F /dev/null"),
            "{c}"
        );
    }
}
