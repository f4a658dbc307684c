//! The signal that ends either binary.
//!
//! It lives in this crate because this crate holds what is process-wide and the same in both
//! binaries (the global subscriber, the trace export and its final flush); how a process is
//! told to stop is one more such thing, and the export's last flush follows it.

/// Resolves on SIGTERM (what Kubernetes sends) or SIGINT (Ctrl-C). A signal whose handler
/// cannot be installed never resolves, with a warning, rather than stopping the process at
/// once.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT (Ctrl-C)");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A real SIGTERM to this process ends the wait.
    #[tokio::test]
    async fn sigterm_ends_the_wait() {
        // Installed first, so that no SIGTERM of this test can reach the default action (the
        // end of the test process) before `shutdown_signal` listens.
        let _guard = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        let mut waiting = tokio::spawn(shutdown_signal());
        // A signal sent before the spawned task listens is not seen by it: send until it is.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                // SAFETY: kill(2) on this process's own pid with a handled signal.
                assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGTERM) }, 0);
                if tokio::time::timeout(Duration::from_millis(100), &mut waiting)
                    .await
                    .is_ok()
                {
                    return;
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "SIGTERM did not end shutdown_signal()");
    }
}
