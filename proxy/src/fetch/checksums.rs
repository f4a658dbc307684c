//! Downloads checked against the checksum database before they are cached or served
//! (`--verify-sumdb`, on by default).
//!
//! Builds with `GOSUMDB=off` or broad `GONOSUMDB` patterns leave the proxy's cache as the only
//! defence against a compromised mirror, so the proxy does what the go command would: the `h1:`
//! hash of every downloaded `.mod` and zip must be the one the database records, proven to be
//! in its signed tree. Lookups and tiles go through the proxy's own `/sumdb/` proxying (and its
//! tile cache), so a cluster whose only way out is the proxy still verifies. Modules matching
//! `--no-sum` are never looked up (their paths must not leave the network).

use std::sync::{Arc, Weak};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Body, Fetcher, read_whole};
use crate::config::ModulePattern;
use crate::metrics::{Metrics, OutcomeLabel};
use crate::protocol::sumdb::dirhash;
use crate::protocol::sumdb::{Artifact, Checker, SourceError, SumdbError, SumdbSource};
use crate::protocol::{ModulePath, Request, Version};
use crate::upstream::{AttemptError, PoolError};

/// The checksum database check of a fetcher.
pub struct Checksums {
    checker: Checker,
    no_sum: Vec<ModulePattern>,
    metrics: Arc<Metrics>,
}

impl Checksums {
    pub fn new(checker: Checker, no_sum: Vec<ModulePattern>, metrics: Arc<Metrics>) -> Checksums {
        Checksums {
            checker,
            no_sum,
            metrics,
        }
    }

    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Whether `module` is checked (it does not match a no-sum pattern).
    pub fn applies(&self, module: &ModulePath) -> bool {
        !self.no_sum.iter().any(|p| p.matches(module.as_str()))
    }

    /// Checks a downloaded `.mod`.
    pub async fn check_go_mod(
        &self,
        module: &ModulePath,
        version: &Version,
        go_mod: &[u8],
    ) -> Result<(), AttemptError> {
        if !self.applies(module) {
            return Ok(());
        }
        let h1 = dirhash::hash_go_mod(go_mod);
        self.check(module, version, Artifact::GoMod, &h1).await
    }

    /// Checks a downloaded zip by its `h1:` hash (computed by the zip check's one pass).
    pub async fn check_zip(
        &self,
        module: &ModulePath,
        version: &Version,
        h1: &str,
    ) -> Result<(), AttemptError> {
        if !self.applies(module) {
            return Ok(());
        }
        self.check(module, version, Artifact::Zip, h1).await
    }

    async fn check(
        &self,
        module: &ModulePath,
        version: &Version,
        artifact: Artifact,
        h1: &str,
    ) -> Result<(), AttemptError> {
        let count = |outcome| {
            self.metrics
                .checksum_checks
                .get_or_create(&OutcomeLabel { outcome })
                .inc();
        };
        let Err(e) = self.checker.check(module, version, artifact, h1).await else {
            count("confirmed");
            return Ok(());
        };
        count(match &e {
            SumdbError::Mismatch { .. } => "mismatch",
            SumdbError::Invalid { .. } => "invalid_database_answer",
            SumdbError::NotFound { .. } => "not_in_database",
            SumdbError::Unavailable { .. } => "database_unavailable",
        });
        if e.is_security_event() {
            tracing::error!(module = %module, version = %version, error = %e, "checksum verification failed");
        } else {
            tracing::warn!(module = %module, version = %version, error = %e, "checksum verification failed");
        }
        Err(match e {
            // What this upstream sent is not what everyone else sees: try the next one.
            SumdbError::Mismatch { .. } => AttemptError::Invalid(e.to_string()),
            // The go command refuses such a module too; say how to let it through.
            SumdbError::NotFound { .. } => AttemptError::Unverifiable {
                refused: true,
                message: format!(
                    "{e}: if it is private, add it to --no-sum (and GONOSUMDB on clients); \
                     or turn verification off with --verify-sumdb off"
                ),
            },
            SumdbError::Invalid { .. } | SumdbError::Unavailable { .. } => {
                AttemptError::Unverifiable {
                    refused: false,
                    message: e.to_string(),
                }
            }
        })
    }
}

/// The fetcher's own `/sumdb/<name>/` answers, as the checker's source: lookups are cached for
/// `--list-ttl`, full tiles for ever.
pub struct FetcherSource {
    pub fetcher: Weak<Fetcher>,
    pub name: String,
}

impl FetcherSource {
    /// The fetcher, and the request for `path` of this database.
    fn request(&self, path: &str) -> Result<(Arc<Fetcher>, Request), SourceError> {
        let fetcher = self
            .fetcher
            .upgrade()
            .ok_or_else(|| SourceError::Failed("the proxy is shutting down".into()))?;
        let req = Request::parse(&format!("/sumdb/{}/{path}", self.name))
            .map_err(|e| SourceError::Failed(format!("bad checksum database path: {e}")))?;
        Ok((fetcher, req))
    }
}

impl SumdbSource for FetcherSource {
    /// A full tile from the upstreams (their `/sumdb/` endpoints, then the database's direct
    /// URL), past the disk cache, the owner and the store, whose copies it then replaces.
    fn refetch<'a>(
        &'a self,
        path: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, SourceError>> {
        async move {
            let (fetcher, req) = self.request(path)?;
            let bytes = fetcher
                .refetch_from_upstreams(&req, max_bytes as u64)
                .await
                .map_err(source_error)?;
            within(bytes, max_bytes)
        }
        .boxed()
    }

    fn get<'a>(
        &'a self,
        path: &'a str,
        max_bytes: usize,
    ) -> BoxFuture<'a, Result<Bytes, SourceError>> {
        async move {
            let (fetcher, req) = self.request(path)?;
            let bytes = match fetcher.get(&req).await {
                Ok(served) => match served.body {
                    Body::Bytes { bytes, .. } => bytes,
                    Body::File(file) => tokio::task::spawn_blocking(move || read_whole(&file))
                        .await
                        .map_err(|e| SourceError::Failed(e.to_string()))?
                        .map_err(|e| SourceError::Failed(e.to_string()))?,
                },
                Err(e) => return Err(source_error(e.error)),
            };
            within(bytes, max_bytes)
        }
        .boxed()
    }
}

/// A fetch's failure as the checksum database client sees it: "not found", or anything else.
fn source_error(e: PoolError) -> SourceError {
    match e {
        PoolError::NotFound { .. } => SourceError::NotFound,
        other => SourceError::Failed(other.to_string()),
    }
}

/// `bytes`, unless past the client's bound for what it asked.
fn within(bytes: Bytes, max_bytes: usize) -> Result<Bytes, SourceError> {
    if bytes.len() > max_bytes {
        return Err(SourceError::TooLarge { limit: max_bytes });
    }
    Ok(bytes)
}
