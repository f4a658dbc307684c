//! What `/healthz` (the kubelet's liveness probe) checks: that a cached request could be
//! served now.
//!
//! Every cache hit needs a thread of tokio's blocking pool and an answer from the cache's disk
//! (see [`crate::file_body`]). The check is exactly that: a `stat` of the cache directory
//! through the same pool, within [`DEADLINE`] (under the probe's 2 s timeout). When the pool is
//! exhausted or the disk hangs, it fails, so a member that cannot serve stops saying ok and is
//! restarted after the probe's failure threshold. A check still queued from an earlier probe
//! fails the next one at once, so a stuck pool never accumulates checks.
//!
//! Not checked on purpose: the GOPROXY port's connection cap. A full listener is what an
//! attacker can cause at will; restarting the member would drop every real download with it.
//! It is visible in `modfleet_proxy_connections_refused_total`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long the check may take.
pub const DEADLINE: Duration = Duration::from_secs(1);

/// The serving-path check of one cache directory.
#[derive(Debug)]
pub struct ServingCheck {
    dir: PathBuf,
    /// True while a check waits for, or runs on, a blocking thread.
    pending: Arc<AtomicBool>,
}

impl ServingCheck {
    pub fn new(dir: PathBuf) -> ServingCheck {
        ServingCheck {
            dir,
            pending: Arc::default(),
        }
    }

    /// Ok, or why a cached request could not be served now.
    pub async fn run(&self, deadline: Duration) -> Result<(), String> {
        if self.pending.swap(true, Ordering::AcqRel) {
            return Err(
                "the previous check is still waiting for a blocking thread or the disk".into(),
            );
        }
        let dir = self.dir.clone();
        let pending = self.pending.clone();
        let stat = tokio::task::spawn_blocking(move || {
            let result = std::fs::metadata(&dir);
            pending.store(false, Ordering::Release);
            result
        });
        match tokio::time::timeout(deadline, stat).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!(
                "cannot stat the cache directory {}: {e}",
                self.dir.display()
            )),
            Ok(Err(e)) => Err(format!("the check failed: {e}")),
            Err(_) => Err(format!(
                "no blocking thread or no answer from the cache's disk within {deadline:?}: \
                 cached requests would wait too"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_while_the_blocking_pool_is_exhausted_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let check = ServingCheck::new(dir.path().to_path_buf());
        runtime.block_on(async {
            assert_eq!(check.run(DEADLINE).await, Ok(()));
            // Every blocking thread taken (as slow readers took them before file_body).
            let (release, released) = std::sync::mpsc::channel::<()>();
            let released = Arc::new(std::sync::Mutex::new(released));
            let (started, mut all_started) = tokio::sync::mpsc::channel(2);
            let holders: Vec<_> = (0..2)
                .map(|_| {
                    let released = released.clone();
                    let started = started.clone();
                    tokio::task::spawn_blocking(move || {
                        started.blocking_send(()).unwrap();
                        let _ = released.lock().unwrap().recv();
                    })
                })
                .collect();
            for _ in 0..2 {
                all_started.recv().await.unwrap();
            }
            let err = check.run(Duration::from_millis(200)).await.unwrap_err();
            assert!(err.contains("no blocking thread"), "{err}");
            let err = check.run(Duration::from_millis(200)).await.unwrap_err();
            assert!(err.contains("still waiting"), "{err}");
            drop(release);
            for h in holders {
                h.await.unwrap();
            }
            // The queued check runs once a thread is free; then checks pass again.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while check.pending.load(Ordering::Acquire) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "queued check never ran"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(check.run(DEADLINE).await, Ok(()));
        });
    }

    #[tokio::test]
    async fn a_missing_cache_directory_fails() {
        let check = ServingCheck::new(PathBuf::from("/nonexistent/modfleet-cache"));
        let err = check.run(DEADLINE).await.unwrap_err();
        assert!(err.contains("cannot stat"), "{err}");
    }
}
