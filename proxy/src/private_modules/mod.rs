//! Private modules: paths matching a `privateModules` pattern are answered from their Git
//! repositories through [`CodeRepo`], never from an upstream proxy. One [`Repository`] (a
//! bare mirror under `<cache-dir>/vcs/`, never served) per repository URL, kept in a bounded
//! map. Every call here runs the git work on the blocking pool.

pub mod discovery;
mod locate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;

use crate::cache::CacheWriter;
use crate::codehost::git::{GitOptions, GitRepo};
use crate::coderepo::{CodeRepo, CodeRepoError, DEFAULT_MIN_REFRESH_INTERVAL, Repository};
use crate::config::{Config, PrivateModule};
use crate::protocol::zip::create::CreatedZip;
use crate::upstream::PoolError;
pub use locate::{Location, NotLocated, locate};

/// Most repositories kept open at once; past it, one no request is using is dropped (its
/// mirror stays on disk and is reopened when asked for again).
const MAX_REPOSITORIES: usize = 1024;
/// Most go-get discovery answers remembered; past it the oldest is dropped.
const MAX_DISCOVERED: usize = 4096;
/// How long a discovered repository is used before the page is asked again.
const DISCOVERED_TTL: Duration = Duration::from_secs(600);
/// How long "no go-import tag for this path" is remembered (the go command asks for every
/// prefix of a path; each would otherwise cost a request to the Git host).
const NOT_DISCOVERED_TTL: Duration = Duration::from_secs(60);

/// go-get discovery's answers (a location, or why there is none) by module path, with when.
type Discovered = HashMap<String, (Instant, Result<Location, String>)>;

/// The private module patterns and their repositories.
pub struct PrivateModules {
    entries: Vec<PrivateModule>,
    options: GitOptions,
    repos: Mutex<HashMap<String, Arc<Repository>>>,
    /// go-get discovery's answers by module path, with when they were had.
    discovered: Mutex<Discovered>,
    /// Discovery's HTTP clients: https only, and with http allowed (`insecure`).
    https_client: reqwest::Client,
    insecure_client: reqwest::Client,
}

impl PrivateModules {
    /// `None` when no `privateModules` are configured.
    pub fn new(config: &Config) -> Option<Arc<PrivateModules>> {
        if config.private.is_empty() {
            return None;
        }
        Some(Arc::new(PrivateModules {
            entries: config.private.clone(),
            options: GitOptions::new(config.cache_dir.join("vcs")),
            repos: Mutex::new(HashMap::new()),
            discovered: Mutex::new(HashMap::new()),
            https_client: discovery::client(false),
            insecure_client: discovery::client(true),
        }))
    }

    /// Whether `module` is private (served from Git).
    pub fn serves(&self, module: &str) -> bool {
        self.entry(module).is_some()
    }

    fn entry(&self, module: &str) -> Option<&PrivateModule> {
        self.entries.iter().find(|e| e.pattern.matches(module))
    }

    /// Where the module's repository is: configured, `.git`-qualified, github.com, or found
    /// by go-get discovery (remembered for a while).
    async fn location(&self, module: &str) -> Result<Location, CodeRepoError> {
        let not_found = |reason: String| CodeRepoError::NotFound {
            module: module.to_string(),
            version: None,
            reason,
        };
        let entry = self
            .entry(module)
            .ok_or_else(|| not_found("it matches no privateModules pattern".into()))?;
        if let Some(location) = locate(entry, module).map_err(|e| not_found(e.0))? {
            return Ok(location);
        }
        if let Some((at, answer)) = self.lock_discovered().get(module) {
            let ttl = if answer.is_ok() {
                DISCOVERED_TTL
            } else {
                NOT_DISCOVERED_TTL
            };
            if at.elapsed() < ttl {
                return answer.clone().map_err(not_found);
            }
        }
        let client = if entry.insecure {
            &self.insecure_client
        } else {
            &self.https_client
        };
        let page = |scheme: &str, path: &str| format!("{scheme}://{path}?go-get=1");
        let answer = match discovery::discover(client, module, entry.insecure, &page).await {
            Ok(location) => Ok(location),
            Err(discovery::DiscoveryError::NotFound(why)) => Err(why),
            Err(discovery::DiscoveryError::Unavailable(why)) => {
                return Err(CodeRepoError::Unavailable {
                    module: module.to_string(),
                    version: None,
                    repository: format!("https://{module}?go-get=1"),
                    reason: format!("go-get discovery failed: {why}"),
                });
            }
        };
        let mut discovered = self.lock_discovered();
        if discovered.len() >= MAX_DISCOVERED
            && let Some(oldest) = discovered
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            discovered.remove(&oldest);
        }
        discovered.insert(module.to_string(), (Instant::now(), answer.clone()));
        answer.map_err(|why| not_found(format!("go-get discovery: {why}")))
    }

    fn lock_discovered(&self) -> std::sync::MutexGuard<'_, Discovered> {
        self.discovered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The module's [`CodeRepo`] on its repository, opened (no network yet).
    fn code_repo(&self, module: &str, location: &Location) -> Result<CodeRepo, CodeRepoError> {
        let entry = self.entry(module).ok_or_else(|| CodeRepoError::NotFound {
            module: module.to_string(),
            version: None,
            reason: "it matches no privateModules pattern".into(),
        })?;
        if entry.repository.is_none()
            && entry.credentials != crate::codehost::git::Credentials::None
            && url_host(&location.url) != module.split('/').next()
        {
            // A go-get page names the repository: a hostile or mistaken one must not get the
            // entry's secret sent to a host of its choosing.
            return Err(CodeRepoError::NotFound {
                module: module.to_string(),
                version: None,
                reason: format!(
                    "go-get discovery names the repository {}, on another host than the module's: \
                     credentials are only sent to the module's own host; set `repository` in its \
                     privateModules entry to use them there",
                    crate::codehost::display_url(&location.url)
                ),
            });
        }
        let repo = self.repository(entry, &location.url).map_err(|e| {
            CodeRepoError::from_host(
                e,
                module,
                None,
                &crate::codehost::display_url(&location.url),
            )
        })?;
        CodeRepo::new(repo, &location.root, &location.subdir, module)
    }

    /// The shared [`Repository`] of `url`, opened on first use.
    fn repository(
        &self,
        entry: &PrivateModule,
        url: &str,
    ) -> Result<Arc<Repository>, crate::codehost::HostError> {
        // One mirror per repository and way in: entries with other credentials for the same
        // URL never read a mirror fetched with these (each keeps its own refusals).
        let access = access_key(entry);
        let key = format!("{access}\n{url}");
        let mut repos = self.repos.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(repo) = repos.get(&key) {
            return Ok(repo.clone());
        }
        if repos.len() >= MAX_REPOSITORIES {
            let unused = repos
                .iter()
                .find(|(_, r)| Arc::strong_count(r) == 1)
                .map(|(k, _)| k.clone());
            match unused {
                Some(k) => {
                    repos.remove(&k);
                }
                None => {
                    return Err(crate::codehost::HostError::Unavailable(format!(
                        "more than {MAX_REPOSITORIES} repositories are in use at once"
                    )));
                }
            }
        }
        let mut options = self.options.clone();
        options.dir = options.dir.join(&access);
        options.allow_insecure_http = entry.insecure;
        let host = GitRepo::open(url, entry.credentials.clone(), &options)?;
        let repo = Arc::new(Repository::new(
            Arc::new(host),
            url,
            DEFAULT_MIN_REFRESH_INTERVAL,
        ));
        repos.insert(key, repo.clone());
        Ok(repo)
    }

    /// Runs `f` on the module's [`CodeRepo`] on the blocking pool.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        module: &str,
        f: impl FnOnce(&CodeRepo) -> Result<T, CodeRepoError> + Send + 'static,
    ) -> Result<T, PoolError> {
        let location = self.location(module).await.map_err(pool_error)?;
        let (this, module) = (self.clone(), module.to_string());
        tokio::task::spawn_blocking(move || f(&this.code_repo(&module, &location)?))
            .await
            .map_err(|e| PoolError::Local(format!("Git task failed: {e}")))?
            .map_err(pool_error)
    }

    /// `@v/list`: one version per line.
    pub async fn list(self: &Arc<Self>, module: &str) -> Result<Bytes, PoolError> {
        self.with(module, |code| {
            let versions = code.versions("")?;
            Ok(Bytes::from(
                versions
                    .iter()
                    .map(|v| format!("{v}\n"))
                    .collect::<String>(),
            ))
        })
        .await
    }

    /// `.info` of a version or a query (branch, hash, pseudo-version).
    pub async fn info(self: &Arc<Self>, module: &str, rev: &str) -> Result<Bytes, PoolError> {
        let rev = rev.to_string();
        self.with(module, move |code| info_bytes(code, code.stat(&rev)?))
            .await
    }

    /// `@latest`.
    pub async fn latest(self: &Arc<Self>, module: &str) -> Result<Bytes, PoolError> {
        self.with(module, |code| info_bytes(code, code.latest()?))
            .await
    }

    /// `.mod`.
    pub async fn go_mod(self: &Arc<Self>, module: &str, version: &str) -> Result<Bytes, PoolError> {
        let version = version.to_string();
        self.with(module, move |code| code.go_mod(&version).map(Bytes::from))
            .await
    }

    /// `.zip`, written into `writer` (handed back with the zip's `h1:`).
    pub async fn zip(
        self: &Arc<Self>,
        module: &str,
        version: &str,
        writer: CacheWriter,
    ) -> Result<(CacheWriter, CreatedZip), PoolError> {
        let version = version.to_string();
        self.with(module, move |code| {
            let mut out = WriterAdapter(writer);
            let created = code.zip(&version, &mut out)?;
            Ok((out.0, created))
        })
        .await
    }

    /// Fetches the module's repository now (`POST /admin/refresh`).
    pub async fn refresh(self: &Arc<Self>, module: &str) -> Result<(), PoolError> {
        self.with(module, |code| {
            code.repository().refresh_now().map_err(|e| {
                CodeRepoError::from_host(e, code.module_path(), None, code.repository().url())
            })
        })
        .await
    }
}

/// The host of a repository URL (no userinfo, no port).
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(host.split(':').next().unwrap_or(host))
}

/// A short name for an entry's way into its repositories (credentials files and `insecure`;
/// names of files, never their contents), the directory its mirrors live in.
fn access_key(entry: &PrivateModule) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{:?}/{}", entry.credentials, entry.insecure));
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn info_bytes(code: &CodeRepo, info: crate::coderepo::RevInfo) -> Result<Bytes, CodeRepoError> {
    info.info_json()
        .map(Bytes::from)
        .ok_or_else(|| CodeRepoError::NotFound {
            module: code.module_path().to_string(),
            version: Some(info.version.clone()),
            reason: "its commit time cannot be written as RFC 3339".into(),
        })
}

/// A [`CodeRepoError`] as the fetcher's error, keeping its status: 404 so the go command
/// falls back or stops, 400 for a malformed version, 502 for a Git outage or refused
/// credentials (the message names module and repository, never a secret).
pub fn pool_error(e: CodeRepoError) -> PoolError {
    let message = e.to_string();
    match e.status() {
        StatusCode::NOT_FOUND => PoolError::NotFound { message },
        status if status.is_client_error() => PoolError::Refused { status, message },
        _ => PoolError::Unavailable {
            timeout: false,
            message,
        },
    }
}

/// `std::io::Write` over a [`CacheWriter`].
struct WriterAdapter(CacheWriter);

impl std::io::Write for WriterAdapter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_hosts_are_read_without_userinfo_or_port() {
        assert_eq!(
            url_host("https://git.corp.example/a/b"),
            Some("git.corp.example")
        );
        assert_eq!(
            url_host("ssh://git@git.corp.example:2222/a"),
            Some("git.corp.example")
        );
        assert_eq!(
            url_host("https://evil.example@git.corp.example/a"),
            Some("git.corp.example")
        );
        assert_eq!(url_host("no-scheme"), None);
    }

    #[test]
    fn credentials_go_only_to_the_module_host_unless_configured() {
        use crate::codehost::git::{Credentials, HttpsUser};
        let dir = tempfile::tempdir().unwrap();
        let private = PrivateModules {
            entries: vec![PrivateModule {
                pattern: crate::config::ModulePattern::parse("git.corp.example").unwrap(),
                repository: None,
                insecure: false,
                credentials: Credentials::Https {
                    username: HttpsUser::Name("u".into()),
                    password_file: dir.path().join("password"),
                },
            }],
            options: GitOptions::new(dir.path().join("vcs")),
            repos: Mutex::new(HashMap::new()),
            discovered: Mutex::new(HashMap::new()),
            https_client: discovery::client(false),
            insecure_client: discovery::client(true),
        };
        let at = |url: &str| Location {
            url: url.into(),
            root: "git.corp.example/team/lib".into(),
            subdir: String::new(),
        };
        let module = "git.corp.example/team/lib";
        let Err(e) = private.code_repo(module, &at("https://evil.example/lib.git")) else {
            panic!("credentials for another host");
        };
        assert_eq!(e.status(), 404);
        assert!(
            e.to_string().contains("only sent to the module's own host"),
            "{e}"
        );
        let code = private
            .code_repo(module, &at("https://git.corp.example/team/lib.git"))
            .unwrap();
        assert_eq!(code.module_path(), module);
    }
}
