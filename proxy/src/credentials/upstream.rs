//! The `Authorization` header one upstream gets: HTTP Basic, a Bearer token or a netrc entry,
//! from files read again whenever they change (one `stat` per file and use; see [`file`]).
//!
//! Where it goes is the upstream pool's business (`upstream::response`): only requests to
//! the upstream's own base URL carry it, and the HTTP client drops it on a redirect that
//! changes the scheme, host or port.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use http::HeaderValue;
use reqwest::Url;

use super::file::{self, FileError, Version};
use super::netrc;

/// Where the credentials come from (validated: see `config::validate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// HTTP Basic: a user name and a file holding the password (or token).
    Basic {
        username: Username,
        password_file: PathBuf,
    },
    /// `Authorization: Bearer` with the token in a file.
    Bearer { token_file: PathBuf },
    /// HTTP Basic from the netrc entry for the upstream's host.
    Netrc { file: PathBuf },
}

/// The Basic user name: given as is, or in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Username {
    Name(String),
    File(PathBuf),
}

/// Why the credentials cannot be sent now. Names the setting and the file, never content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsError(String);

/// One upstream's credentials and the header last built from them.
pub struct UpstreamCredentials {
    source: CredentialSource,
    /// netrc `machine` names that fit the upstream, the most specific first.
    machines: Vec<String>,
    loaded: Mutex<Option<Loaded>>,
}

/// What the files held at `versions`.
struct Loaded {
    versions: Vec<Version>,
    /// A file changed so recently that a further change may not show in `versions` yet.
    racy: bool,
    header: HeaderValue,
    /// The secret strings as they could appear in an upstream's error body.
    secrets: Vec<Vec<u8>>,
}

impl fmt::Debug for UpstreamCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamCredentials")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl UpstreamCredentials {
    /// Credentials for the upstream at `base` (its host picks the netrc entry). Nothing is
    /// read until [`UpstreamCredentials::authorization`].
    pub fn new(source: CredentialSource, base: &Url) -> UpstreamCredentials {
        UpstreamCredentials {
            source,
            machines: netrc_machines(base),
            loaded: Mutex::new(None),
        }
    }

    pub fn source(&self) -> &CredentialSource {
        &self.source
    }

    /// The files, for messages: "passwordFile /etc/…".
    pub fn describe(&self) -> String {
        match &self.source {
            CredentialSource::Basic {
                username: Username::File(user),
                password_file,
            } => format!(
                "usernameFile {} and passwordFile {}",
                user.display(),
                password_file.display()
            ),
            CredentialSource::Basic { password_file, .. } => {
                format!("passwordFile {}", password_file.display())
            }
            CredentialSource::Bearer { token_file } => {
                format!("bearerTokenFile {}", token_file.display())
            }
            CredentialSource::Netrc { file } => format!(
                "netrcFile {} (machine {})",
                file.display(),
                self.machines.last().map_or("?", String::as_str)
            ),
        }
    }

    fn files(&self) -> Vec<&Path> {
        match &self.source {
            CredentialSource::Basic {
                username: Username::File(user),
                password_file,
            } => vec![user, password_file],
            CredentialSource::Basic { password_file, .. } => vec![password_file],
            CredentialSource::Bearer { token_file } => vec![token_file],
            CredentialSource::Netrc { file } => vec![file],
        }
    }

    /// The header for the files as they are now: rebuilt when a file changed since the last
    /// call (a `stat` per file tells), else the one built then.
    pub fn authorization(&self) -> Result<HeaderValue, CredentialsError> {
        let versions = self
            .files()
            .into_iter()
            .map(file::version)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.file_error(e))?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = loaded
            .as_ref()
            .filter(|l| l.versions == versions && !l.racy)
        {
            return Ok(l.header.clone());
        }
        let before = loaded.as_ref().map(|l| l.header.clone());
        let fresh = self.load()?;
        let header = fresh.header.clone();
        *loaded = Some(fresh);
        if before.is_some_and(|b| b != header) {
            tracing::info!(files = %self.describe(), "upstream credentials changed: read again");
        }
        Ok(header)
    }

    /// `text` (an upstream's error message) with every secret it holds replaced by `***`: a
    /// server may echo what it refused.
    pub fn redact(&self, text: &str) -> String {
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = text.to_string();
        for secret in loaded.iter().flat_map(|l| &l.secrets) {
            if let Ok(s) = std::str::from_utf8(secret)
                && !s.is_empty()
            {
                out = out.replace(s, "***");
            }
        }
        out
    }

    fn file_error(&self, e: FileError) -> CredentialsError {
        CredentialsError(format!(
            "credentials: {e} (from {}; mount it, or fix the upstream's credentials)",
            self.describe()
        ))
    }

    fn bad(&self, setting: &str, path: &Path, why: &str) -> CredentialsError {
        CredentialsError(format!("credentials: {setting} {}: {why}", path.display()))
    }

    fn load(&self) -> Result<Loaded, CredentialsError> {
        let mut versions = Vec::new();
        let mut read = |path: &Path| {
            let (version, bytes) = file::read(path).map_err(|e| self.file_error(e))?;
            versions.push(version);
            Ok::<_, CredentialsError>(bytes)
        };
        let (header, secrets) = match &self.source {
            CredentialSource::Basic {
                username,
                password_file,
            } => {
                let user = match username {
                    Username::Name(name) => name.clone().into_bytes(),
                    Username::File(path) => {
                        let bytes = read(path)?;
                        let user = file::first_line(&bytes).to_vec();
                        if user.is_empty() {
                            return Err(self.bad("usernameFile", path, "it is empty"));
                        }
                        if user.contains(&b':') || user.iter().any(u8::is_ascii_control) {
                            return Err(self.bad(
                                "usernameFile",
                                path,
                                "an HTTP Basic user name cannot hold ':' or control characters",
                            ));
                        }
                        user
                    }
                };
                let bytes = read(password_file)?;
                let password = file::first_line(&bytes);
                if password.is_empty() {
                    return Err(self.bad("passwordFile", password_file, "it is empty"));
                }
                basic(&user, password)
            }
            CredentialSource::Bearer { token_file } => {
                let bytes = read(token_file)?;
                let token = file::first_line(&bytes);
                if token.is_empty() {
                    return Err(self.bad("bearerTokenFile", token_file, "it is empty"));
                }
                if !token.iter().all(u8::is_ascii_graphic) {
                    return Err(self.bad(
                        "bearerTokenFile",
                        token_file,
                        "a Bearer token is visible ASCII without spaces (is it the right file?)",
                    ));
                }
                let mut value = b"Bearer ".to_vec();
                value.extend_from_slice(token);
                (value, vec![token.to_vec()])
            }
            CredentialSource::Netrc { file: path } => {
                let bytes = read(path)?;
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| self.bad("netrcFile", path, "it is not UTF-8 text"))?;
                let entries = netrc::parse(text);
                let Some(entry) = self.machines.iter().find_map(|m| netrc::find(&entries, m))
                else {
                    return Err(self.bad(
                        "netrcFile",
                        path,
                        &format!(
                            "it has no complete entry (machine, login and password) for machine {}",
                            self.machines.join(" or ")
                        ),
                    ));
                };
                if entry.login.contains(':') {
                    return Err(self.bad(
                        "netrcFile",
                        path,
                        &format!(
                            "the login of machine {} holds ':', which HTTP Basic cannot send",
                            entry.machine
                        ),
                    ));
                }
                basic(entry.login.as_bytes(), entry.password.as_bytes())
            }
        };
        let mut header = HeaderValue::from_bytes(&header).map_err(|_| {
            CredentialsError(format!(
                "credentials: {} hold characters an HTTP header cannot carry",
                self.describe()
            ))
        })?;
        header.set_sensitive(true);
        let mut secrets = secrets;
        secrets.push(header.as_bytes().to_vec());
        // The longest first: a password may be part of the header's text.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let now = std::time::SystemTime::now();
        Ok(Loaded {
            racy: versions.iter().any(|v| v.racy(now)),
            versions,
            header,
            secrets,
        })
    }
}

/// `Basic base64(user:password)`, and the secrets it holds (the password and the encoding).
fn basic(user: &[u8], password: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut pair = user.to_vec();
    pair.push(b':');
    pair.extend_from_slice(password);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&pair);
    let value = format!("Basic {encoded}").into_bytes();
    (value, vec![password.to_vec(), encoded.into_bytes()])
}

/// The netrc `machine` names for the upstream at `base`, as the go command matches them for
/// a request under it: the URL without its scheme (`host[:port]/path`), then each shorter
/// prefix ending before a `/`, down to `host[:port]`. A default port is not written (the URL
/// is normalised).
fn netrc_machines(base: &Url) -> Vec<String> {
    let host = base.host_str().unwrap_or_default();
    let mut key = match base.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    key.push_str(base.path().trim_end_matches('/'));
    let mut machines = vec![key.clone()];
    while let Some(slash) = key.rfind('/') {
        key.truncate(slash);
        machines.push(key.clone());
    }
    machines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(source: CredentialSource, base: &str) -> UpstreamCredentials {
        UpstreamCredentials::new(source, &Url::parse(base).unwrap())
    }

    #[test]
    fn basic_bearer_and_netrc_headers() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").unwrap();
        let c = creds(
            CredentialSource::Basic {
                username: Username::Name("ci".into()),
                password_file: password.clone(),
            },
            "https://goproxy.corp.example",
        );
        // base64("ci:s3cret")
        assert_eq!(c.authorization().unwrap(), "Basic Y2k6czNjcmV0");
        assert!(c.authorization().unwrap().is_sensitive());

        let token = dir.path().join("token");
        std::fs::write(&token, "tok.en-1\r\n").unwrap();
        let c = creds(
            CredentialSource::Bearer {
                token_file: token.clone(),
            },
            "https://goproxy.corp.example",
        );
        assert_eq!(c.authorization().unwrap(), "Bearer tok.en-1");

        let netrc = dir.path().join("netrc");
        std::fs::write(
            &netrc,
            "machine other.example login x password y\n\
             machine goproxy.corp.example:8443 login port password p1\n\
             machine goproxy.corp.example login host password p2\n\
             machine goproxy.corp.example:8443/api login path password p3\n",
        )
        .unwrap();
        let header = |base: &str| {
            creds(
                CredentialSource::Netrc {
                    file: netrc.clone(),
                },
                base,
            )
            .authorization()
        };
        let basic_of = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        // The host alone; with a port, host:port (never the host's entry without it); a
        // longer prefix of the URL is more specific.
        assert_eq!(
            header("https://goproxy.corp.example/go").unwrap(),
            basic_of("host", "p2").as_str()
        );
        assert_eq!(
            header("https://goproxy.corp.example:8443").unwrap(),
            basic_of("port", "p1").as_str()
        );
        assert_eq!(
            header("https://goproxy.corp.example:8443/api/go").unwrap(),
            basic_of("path", "p3").as_str()
        );
        // A default port is not part of the name.
        assert_eq!(
            header("https://goproxy.corp.example:443").unwrap(),
            basic_of("host", "p2").as_str()
        );
        let e = header("https://elsewhere.example").unwrap_err().to_string();
        assert!(
            e.contains("no complete entry") && e.contains("machine elsewhere.example"),
            "{e}"
        );
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_missing_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "first").unwrap();
        let c = creds(
            CredentialSource::Bearer {
                token_file: token.clone(),
            },
            "https://u.example",
        );
        assert_eq!(c.authorization().unwrap(), "Bearer first");
        // Rewritten in place at once, same length: seen although stat may tell no change.
        std::fs::write(&token, "fir5t").unwrap();
        assert_eq!(c.authorization().unwrap(), "Bearer fir5t");
        // Replaced by rename, as a Secret update does.
        let tmp = dir.path().join("token.new");
        std::fs::write(&tmp, "second").unwrap();
        std::fs::rename(&tmp, &token).unwrap();
        assert_eq!(c.authorization().unwrap(), "Bearer second");
        std::fs::remove_file(&token).unwrap();
        let e = c.authorization().unwrap_err().to_string();
        assert!(
            e.contains(&token.display().to_string())
                && e.contains("bearerTokenFile")
                && !e.contains("second"),
            "{e}"
        );
    }

    #[test]
    fn bad_contents_are_refused_without_showing_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        let check = |content: &str, source: CredentialSource, want: &str| {
            std::fs::write(&file, content).unwrap();
            let c = creds(source, "https://u.example");
            let e = c.authorization().unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            if !content.trim().is_empty() {
                assert!(!e.contains(content.trim()), "{e}");
            }
        };
        let bearer = CredentialSource::Bearer {
            token_file: file.clone(),
        };
        check("\n", bearer.clone(), "it is empty");
        check("two words", bearer, "visible ASCII");
        let password = dir.path().join("password");
        std::fs::write(&password, "pw").unwrap();
        check(
            "a:b",
            CredentialSource::Basic {
                username: Username::File(file.clone()),
                password_file: password,
            },
            "cannot hold ':'",
        );
        check(
            "machine u.example login a:b password pw-netrc",
            CredentialSource::Netrc { file: file.clone() },
            "holds ':'",
        );
    }

    #[test]
    fn redact_hides_what_was_sent() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret").unwrap();
        let c = creds(
            CredentialSource::Basic {
                username: Username::Name("ci".into()),
                password_file: password,
            },
            "https://u.example",
        );
        c.authorization().unwrap();
        assert_eq!(
            c.redact("bad password s3cret in Basic Y2k6czNjcmV0"),
            "bad password *** in ***"
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("Y2k6"),
            "{shown}"
        );
    }
}
