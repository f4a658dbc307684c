//! Module zips: streamed to disk (never whole into memory), verified as the go command
//! verifies them and against the module's `.mod` (fetched alongside, so a slow upstream's wait
//! is paid once), committed only when both pass.

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tracing::Instrument;

use super::prefetch::Origin;
use super::{
    Body, CacheResult, Fetched, Fetcher, InflightGuard, Served, Shared, cache_write_span,
    read_whole, record_write, served,
};
use crate::cache::{CacheKey, ServedFile, StreamError};
use crate::coalesce::Publish;
use crate::protocol::artifact;
use crate::protocol::{ModulePath, Request, Version};
use crate::store::Payload;
use crate::upstream::{AttemptError, Endpoint, PoolError, Target, UpstreamResponse};

impl Fetcher {
    /// A module zip: from the cache, or fetched once (see [`Fetcher::download_zip`]).
    pub(super) async fn zip(
        self: &Arc<Self>,
        module: &ModulePath,
        version: &Version,
        key: &CacheKey,
        origin: Origin,
    ) -> Result<Served, PoolError> {
        if let Some(body) = self.hit(key).await {
            self.count_prefetch_hit(key, CacheResult::Hit, origin);
            return Ok(served(body, CacheResult::Hit, None));
        }
        let (this, module, version, owned_key) =
            (self.clone(), module.clone(), version.clone(), key.clone());
        let (fetched, role) = self.coalesced(key.as_str(), move |publish| {
            this.download_zip(module, version, owned_key, origin, publish)
                .boxed()
        });
        let fetched = fetched.await?;
        let cache = CacheResult::fetched(role, fetched.cached());
        self.count_prefetch_hit(key, cache, origin);
        Ok(served(fetched.into_body(), cache, None))
    }

    /// The leader's side of a zip miss: the module's `.mod` (to check the zip against) and the
    /// zip are fetched at once, so a slow upstream's wait is paid once, not twice. Each zip
    /// attempt streams the zip into a writer (the cache, or a loose file) and verifies it, then
    /// waits for the `.mod` before comparing and committing: no zip is committed before its
    /// `.mod` passed. A failed `.mod` is the answer (as when it was fetched first), whatever
    /// the zip's fetch came to. The `.mod` is had for `origin` (a prefetch's starts no further
    /// prefetch).
    async fn download_zip(
        self: Arc<Self>,
        module: ModulePath,
        version: Version,
        key: CacheKey,
        origin: Origin,
        publish: Publish<Shared>,
    ) -> Shared {
        if let Some(body) = self.hit(&key).await {
            return Ok(Fetched::from_hit(body));
        }
        if let Some(git) = self.private_for(&module) {
            let _inflight = InflightGuard::start(&self.metrics);
            return self
                .private_zip(&git, &module, &version, &key, origin, &publish)
                .await
                .map(Fetched::File);
        }
        let go_mod: GoMod = {
            let (this, module, version) = (self.clone(), module.clone(), version.clone());
            async move { this.go_mod(&module, &version, origin).await }
                .boxed()
                .shared()
        };
        let _inflight = InflightGuard::start(&self.metrics);
        let zip = ZipCheck {
            module: &module,
            version: &version,
            key: &key,
            go_mod: &go_mod,
            publish: &publish,
        };
        let this = &self;
        let accept =
            |response: UpstreamResponse| async move { this.accept_zip(response, zip).await };
        let req = Request::Zip {
            module: module.clone(),
            version: version.clone(),
        };
        let from_tier = match self.read_peer(&req, &key, origin, &accept).await? {
            Some(file) => Some(file),
            None => {
                self.read_store(&req, &key, artifact::MAX_ZIP_BYTES, &accept)
                    .await
            }
        };
        if let Some(file) = from_tier {
            return Ok(Fetched::File(file));
        }
        let fetch = self.pool.fetch(Target::Modules, key.as_str(), &accept);
        tokio::pin!(fetch);
        let mut mod_ok = false;
        let file = loop {
            tokio::select! {
                checked = go_mod.clone(), if !mod_ok => {
                    checked?;
                    mod_ok = true;
                }
                file = &mut fetch => {
                    // The .mod's verdict comes first, as when it was fetched before the zip.
                    go_mod.clone().await?;
                    break file?;
                }
            }
        };
        self.write_store(&req, &key, Payload::File(file.clone()));
        Ok(Fetched::File(file))
    }

    /// One attempt at a zip: stream, verify, commit.
    async fn accept_zip(
        &self,
        response: UpstreamResponse,
        zip: ZipCheck<'_>,
    ) -> Result<ServedFile, AttemptError> {
        let too_large = |limit: u64| {
            AttemptError::Invalid(format!(
                "zip is larger than the go command's limit of {limit} bytes"
            ))
        };
        if response
            .content_length()
            .is_some_and(|n| n > artifact::MAX_ZIP_BYTES)
        {
            return Err(too_large(artifact::MAX_ZIP_BYTES));
        }
        let source = response.source().clone();
        let (cache, key) = (self.cache.clone(), zip.key.clone());
        let mut writer = tokio::task::spawn_blocking(move || cache.writer_or_loose(&key))
            .await
            .map_err(|e| AttemptError::Local(e.to_string()))?
            .map_err(|e| AttemptError::Local(format!("cannot keep the download anywhere: {e}")))?;
        // Peers asking for this zip read the file as it is written (see `tail`).
        let tail = writer
            .reader()
            .ok()
            .and_then(|file| self.tails.watch(zip.key.as_str()).claim(file));
        let total = writer
            .write_stream_observed(response.into_stream(), artifact::MAX_ZIP_BYTES, |n| {
                if let Some(tail) = &tail {
                    tail.written(n);
                }
            })
            .await
            .map_err(|e| match e {
                StreamError::Source(e) => e,
                StreamError::TooLarge { limit } => too_large(limit),
                StreamError::Local(e) => AttemptError::Local(e.to_string()),
            })?;
        if let Some(tail) = tail {
            tail.done(total);
        }
        tracing::Span::current().record("modfleet.bytes", total as i64);
        let span = cache_write_span(zip.key, total);
        let reader = writer
            .reader()
            .map_err(|e| AttemptError::Local(e.to_string()))?;
        let (module, version) = (zip.module.clone(), zip.version.clone());
        let checked =
            tokio::task::spawn_blocking(move || artifact::zip(&reader, &module, &version))
                .instrument(span.clone())
                .await
                .map_err(|e| AttemptError::Local(e.to_string()))?
                .map_err(|e| AttemptError::Invalid(format!("invalid module zip: {e}")));
        let checked = checked.inspect_err(|_| record_write(&span, "invalid"))?;
        if let Some(checksums) = self.checksums.get() {
            checksums
                .check_zip(zip.module, zip.version, &checked.h1)
                .await
                .inspect_err(|_| record_write(&span, "invalid"))?;
        }
        // The .mod was fetched alongside the zip; its failure is the fetch's answer (see
        // download_zip), so here it only stops this attempt.
        let go_mod = zip.go_mod.clone().await.map_err(|e| {
            record_write(&span, "invalid");
            AttemptError::Local(format!("the module's .mod could not be had: {e}"))
        })?;
        if let Some(inside) = &checked.go_mod
            && !zip.version.as_str().ends_with("+incompatible")
            && inside.as_slice() != go_mod.as_ref()
        {
            self.resolve_go_mod_conflict(&source, zip, inside)
                .await
                .inspect_err(|_| record_write(&span, "invalid"))?;
        }
        // Verified and consistent with its .mod: the waiters are answered now, from the written
        // file, while the commit makes it durable (the key stays in flight until it has).
        if let Some(served) = writer.served_before_commit() {
            zip.publish.send(Ok(Fetched::File(served)));
        }
        let file = tokio::task::spawn_blocking(move || writer.commit())
            .instrument(span.clone())
            .await
            .map_err(|e| AttemptError::Local(e.to_string()))?;
        record_write(&span, if file.cached { "committed" } else { "uncached" });
        Ok(file)
    }

    /// The zip's go.mod differs from the `.mod` this proxy has for the module. The `.mod` is as
    /// suspect as the zip: when the upstream that sent the zip also sends a `.mod` equal to the
    /// zip's go.mod, that consistent pair wins and replaces the cached `.mod` (one upstream
    /// served a bad `.mod` earlier, e.g. a go.mod cut short at a lying Content-Length);
    /// otherwise the zip is refused and the next upstream is asked.
    async fn resolve_go_mod_conflict(
        &self,
        source: &Endpoint,
        zip: ZipCheck<'_>,
        inside: &[u8],
    ) -> Result<(), AttemptError> {
        let mismatch = || {
            AttemptError::Invalid(
                "the go.mod inside the zip differs from the module's .mod file".into(),
            )
        };
        if source.is_tier {
            // The store or a peer cannot be asked for its own pair: the upstreams decide.
            return Err(mismatch());
        }
        let mod_req = Request::Mod {
            module: zip.module.clone(),
            version: zip.version.clone(),
        };
        let theirs = self
            .pool
            .fetch_from(source, &mod_req.escaped_path())
            .await
            .map_err(|_| mismatch())?
            .bytes_limited(artifact::MAX_GO_MOD_BYTES)
            .await
            .map_err(|_| mismatch())?;
        if theirs.as_ref() != inside || artifact::go_mod(&theirs, zip.module).is_err() {
            return Err(mismatch());
        }
        self.check_go_mod_sum(zip.module, zip.version, &theirs)
            .await
            .map_err(|_| mismatch())?;
        tracing::warn!(
            module = %zip.module,
            version = %zip.version,
            upstream = %source.name,
            "the cached .mod differs from the go.mod in the zip, and this upstream's .mod matches its zip: replacing the cached .mod"
        );
        self.put(&CacheKey::of(&mod_req), &theirs).await;
        Ok(())
    }

    /// The module's go.mod: the `.mod` artifact, from the cache or fetched like any `.mod`.
    pub(super) async fn go_mod(
        self: &Arc<Self>,
        module: &ModulePath,
        version: &Version,
        origin: Origin,
    ) -> Result<Bytes, PoolError> {
        let req = Request::Mod {
            module: module.clone(),
            version: version.clone(),
        };
        match self.artifact(&req, &CacheKey::of(&req), origin).await?.body {
            Body::Bytes { bytes, .. } => Ok(bytes),
            Body::File(file) => tokio::task::spawn_blocking(move || read_whole(&file))
                .await
                .map_err(|e| PoolError::Local(e.to_string()))?
                .map_err(|e| PoolError::Local(format!("cannot read the cached go.mod: {e}"))),
        }
    }
}

/// What a zip attempt checks the zip against.
#[derive(Clone, Copy)]
struct ZipCheck<'a> {
    module: &'a ModulePath,
    version: &'a Version,
    key: &'a CacheKey,
    /// The module's `.mod`, fetched alongside the zip.
    go_mod: &'a GoMod,
    /// Answers the zip's waiters before its commit.
    publish: &'a Publish<Shared>,
}

/// The module's `.mod` for a zip fetch, awaited by the fetch and by each zip attempt.
type GoMod = futures::future::Shared<BoxFuture<'static, Result<Bytes, PoolError>>>;
