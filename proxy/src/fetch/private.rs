//! The fetcher's side of private modules: their misses are answered from Git
//! ([`PrivateModules`]) instead of the upstream pool, through the same cache, coalescing and
//! checks as other artifacts. A zip built here is checked by the same zip check as a
//! downloaded one (and its `h1:` compared with the one computed while writing) before it is
//! served or kept.

use std::sync::Arc;

use bytes::Bytes;

use super::{Fetched, Fetcher, Origin, Shared, artifact, cache_write_span, record_write};
use crate::cache::{CacheKey, ServedFile};
use crate::coalesce::Publish;
use crate::private_modules::PrivateModules;
use crate::protocol::{ModulePath, Request, Version, VersionQuery};
use crate::upstream::{AttemptError, PoolError};

impl Fetcher {
    /// Routes the requests of private module paths to Git (set once at start).
    pub fn serve_private(&self, private: Arc<PrivateModules>) {
        if self.private.set(private).is_err() {
            panic!("private modules set up twice");
        }
    }

    /// The private modules, when `module` is one of them.
    pub(super) fn private_for(&self, module: &ModulePath) -> Option<Arc<PrivateModules>> {
        self.private
            .get()
            .filter(|p| p.serves(module.as_str()))
            .cloned()
    }

    pub(super) fn private_for_req(&self, req: &Request) -> Option<Arc<PrivateModules>> {
        req.module().and_then(|m| self.private_for(m))
    }

    /// For an `.info` query of a private module: where to ask, the module and the query.
    pub(super) fn private_request(
        &self,
        req: &Request,
    ) -> Option<(Arc<PrivateModules>, String, String)> {
        match req {
            Request::Info { module, version } => self
                .private_for(module)
                .map(|git| (git, module.as_str().to_string(), version.to_string())),
            _ => None,
        }
    }

    /// `POST /admin/refresh?module=PATH`: fetches the module's repository now, then its list
    /// and `@latest` again, so a tag pushed a moment ago is listed before `--list-ttl`
    /// expires. `None` when the module is not private.
    pub async fn refresh_private(
        self: &Arc<Self>,
        module: &ModulePath,
    ) -> Option<Result<(), PoolError>> {
        let git = self.private_for(module)?;
        Some(self.refresh_private_with(&git, module).await)
    }

    async fn refresh_private_with(
        self: &Arc<Self>,
        git: &Arc<PrivateModules>,
        module: &ModulePath,
    ) -> Result<(), PoolError> {
        git.refresh(module.as_str()).await?;
        for req in [
            Request::List {
                module: module.clone(),
            },
            Request::Latest {
                module: module.clone(),
            },
        ] {
            let bytes = small(git, &req).await;
            let bytes = match bytes {
                // A module without versions has no @latest until it has commits: not an error
                // of the refresh.
                Err(PoolError::NotFound { .. }) => continue,
                other => other?,
            };
            let bytes = super::check_refreshable(&req, bytes).map_err(refused_attempt)?;
            self.put(&CacheKey::of(&req), &bytes).await;
        }
        Ok(())
    }

    /// A private module's zip: its `.mod` first (from Git, like any `.mod`), then the zip
    /// built into a cache writer, checked, served and committed.
    pub(super) async fn private_zip(
        self: &Arc<Self>,
        git: &Arc<PrivateModules>,
        module: &ModulePath,
        version: &Version,
        key: &CacheKey,
        origin: Origin,
        publish: &Publish<Shared>,
    ) -> Result<ServedFile, PoolError> {
        let local = |e: String| PoolError::Local(e);
        // Its verdict (a version the rules refuse) is the zip's too; it is cached alongside.
        self.go_mod(module, version, origin).await?;
        let (cache, owned_key) = (self.cache.clone(), key.clone());
        let writer = tokio::task::spawn_blocking(move || cache.writer_or_loose(&owned_key))
            .await
            .map_err(|e| local(e.to_string()))?
            .map_err(|e| local(format!("cannot keep the zip anywhere: {e}")))?;
        let (mut writer, created) = git.zip(module.as_str(), version.as_str(), writer).await?;
        let span = cache_write_span(key, created.zip_bytes);
        let reader = writer.reader().map_err(|e| local(e.to_string()))?;
        let (m, v) = (module.clone(), version.clone());
        let checked = tokio::task::spawn_blocking(move || artifact::zip(&reader, &m, &v))
            .await
            .map_err(|e| local(e.to_string()))?;
        let refuse = |why: String| {
            record_write(&span, "invalid");
            local(format!(
                "{module}@{version}: the zip built from Git failed modfleet's zip check ({why}); this is a modfleet bug, please report it"
            ))
        };
        let checked = checked.map_err(|e| refuse(e.to_string()))?;
        if checked.h1 != created.h1 {
            return Err(refuse(format!(
                "{} while writing, {} when read back",
                created.h1, checked.h1
            )));
        }
        // The zip's go.mod is not compared with the `.mod`: the go command's own may differ
        // (the zip is `git archive`'s, with `.gitattributes` conversions such as `eol=crlf`;
        // the `.mod` is the blob), and modfleet serves both as the go command makes them.
        if let Some(served) = writer.served_before_commit() {
            publish.send(Ok(Fetched::File(served)));
        }
        let file = tokio::task::spawn_blocking(move || writer.commit())
            .await
            .map_err(|e| local(e.to_string()))?;
        record_write(&span, if file.cached { "committed" } else { "uncached" });
        Ok(file)
    }
}

/// A private module's `.info`, `.mod`, list or `@latest` from Git.
pub(super) async fn small(git: &Arc<PrivateModules>, req: &Request) -> Result<Bytes, PoolError> {
    match req {
        Request::List { module } => git.list(module.as_str()).await,
        Request::Latest { module } => git.latest(module.as_str()).await,
        Request::Info { module, version } => {
            let rev = match version {
                VersionQuery::Canonical(v) => v.as_str().to_string(),
                VersionQuery::Query(q) => q.clone(),
            };
            git.info(module.as_str(), &rev).await
        }
        Request::Mod { module, version } => git.go_mod(module.as_str(), version.as_str()).await,
        Request::Zip { .. } | Request::Sumdb { .. } => Err(PoolError::Local(
            "not a small private-module request".into(),
        )),
    }
}

/// An answer built from Git that failed the checks every answer passes: the version is not
/// servable (404, with why).
pub(super) fn refused(e: artifact::ArtifactError) -> PoolError {
    PoolError::NotFound {
        message: format!("refused the answer built from Git: {e}"),
    }
}

pub(super) fn refused_attempt(e: AttemptError) -> PoolError {
    PoolError::NotFound {
        message: format!("refused the answer built from Git: {e}"),
    }
}
