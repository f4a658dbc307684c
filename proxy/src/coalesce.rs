//! One upstream fetch per key, shared by every request that wants it meanwhile.
//!
//! The first request for a key (the leader) starts the fetch as its own task, so a client that
//! hangs up does not cancel a download others are waiting for. Later requests for the same key
//! wait for the same result. The entry is removed when the task ends, after its result has been
//! made durable by the task (e.g. committed to the cache), so a request that arrives after the
//! removal finds the cached file instead. A fetch may [`Publish`] its result before it ends:
//! the waiters are answered at once while the task makes it durable (a cache commit's fsync
//! costs 5-30 ms on a loaded disk, which every cold request would otherwise wait for), and a
//! request that arrives meanwhile joins and gets the published result.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tokio::sync::oneshot;
use tracing::Instrument;

/// Whether a request started the fetch or joined one in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Waiter,
}

type SharedResult<T> = Shared<BoxFuture<'static, T>>;

/// Hands a fetch's result to its waiters before the fetch has ended; the first value sent is
/// the result, later ones (and the fetch's own return value then) are ignored.
pub struct Publish<T>(Arc<Mutex<Option<oneshot::Sender<T>>>>);

impl<T> Clone for Publish<T> {
    fn clone(&self) -> Self {
        Publish(self.0.clone())
    }
}

impl<T> Publish<T> {
    pub fn send(&self, value: T) {
        let sender = self.0.lock().map(|mut s| s.take()).unwrap_or_default();
        if let Some(sender) = sender {
            // No receiver left only when every waiter is gone: nothing to tell.
            let _ = sender.send(value);
        }
    }
}

/// Single-flight map from key to an in-progress fetch producing `T` (cloned for each waiter).
pub struct Coalescer<T: Clone + Send + Sync + 'static> {
    inflight: Arc<Mutex<HashMap<String, SharedResult<T>>>>,
}

impl<T: Clone + Send + Sync + 'static> Default for Coalescer<T> {
    fn default() -> Self {
        Coalescer {
            inflight: Arc::default(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Coalescer<T> {
    /// Runs `fetch` for `key` unless a fetch for it is in progress; the result (the one the
    /// fetch publishes, else the one it returns), and at once whether this caller leads or
    /// waits (for metrics of waiters). `on_panic` turns a panicked fetch task into a result for
    /// the waiters.
    pub fn join<F, Fut>(
        &self,
        key: &str,
        fetch: F,
        on_panic: fn(String) -> T,
    ) -> (impl Future<Output = T> + Send + 'static, Role)
    where
        F: FnOnce(Publish<T>) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (shared, role) = {
            let mut map = self.inflight.lock().expect("coalescer poisoned");
            if let Some(existing) = map.get(key) {
                (existing.clone(), Role::Waiter)
            } else {
                let (sender, published) = oneshot::channel();
                let publish = Publish(Arc::new(Mutex::new(Some(sender))));
                let fut = fetch(publish.clone());
                let inflight = self.inflight.clone();
                let owned_key = key.to_string();
                // The fetch runs in the leader's span: its upstream attempts are children of
                // the request that started it.
                let task = tokio::spawn(
                    async move {
                        // Removes the entry when the fetch ends, even by panic.
                        let _guard = RemoveOnDrop {
                            inflight,
                            key: owned_key,
                        };
                        publish.send(fut.await);
                    }
                    .in_current_span(),
                );
                let shared = async move {
                    match published.await {
                        Ok(result) => result,
                        // Dropped unsent: the task panicked (or was cancelled at shutdown).
                        Err(_) => on_panic(match task.await {
                            Err(e) => e.to_string(),
                            Ok(()) => "the fetch ended without a result".into(),
                        }),
                    }
                }
                .boxed()
                .shared();
                map.insert(key.to_string(), shared.clone());
                (shared, Role::Leader)
            }
        };
        (shared, role)
    }
}

struct RemoveOnDrop<T: Clone + Send + Sync + 'static> {
    inflight: Arc<Mutex<HashMap<String, SharedResult<T>>>>,
    key: String,
}

impl<T: Clone + Send + Sync + 'static> Drop for RemoveOnDrop<T> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.inflight.lock() {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<T: Clone + Send + Sync + 'static> Coalescer<T> {
        async fn run<F, Fut>(&self, key: &str, fetch: F, on_panic: fn(String) -> T) -> (T, Role)
        where
            F: FnOnce(Publish<T>) -> Fut,
            Fut: Future<Output = T> + Send + 'static,
        {
            let (result, role) = self.join(key, fetch, on_panic);
            (result.await, role)
        }

        fn is_empty(&self) -> bool {
            self.inflight.lock().unwrap().is_empty()
        }
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let c: Coalescer<u32> = Coalescer::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        // All 50 join while the first fetch is still held at the gate.
        let joined: Vec<_> = (0..50)
            .map(|_| {
                let calls = calls.clone();
                let mut gate = gate.clone();
                c.join(
                    "k",
                    move |_| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.wait_for(|open| *open).await.unwrap();
                        7
                    },
                    |_| 0,
                )
            })
            .collect();
        assert_eq!(joined.iter().filter(|(_, r)| *r == Role::Leader).count(), 1);
        release.send(true).unwrap();
        for (result, _) in joined {
            assert_eq!(result.await, 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(c.is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_leader_does_not_cancel_the_fetch() {
        let c: Arc<Coalescer<u32>> = Arc::default();
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut g1 = gate.clone();
        let leader = {
            let c = c.clone();
            tokio::spawn(async move {
                c.run(
                    "k",
                    move |_| async move {
                        g1.wait_for(|o| *o).await.unwrap();
                        1
                    },
                    |_| 0,
                )
                .await
            })
        };
        while c.is_empty() {
            tokio::task::yield_now().await;
        }
        leader.abort();
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.run("k", |_| async { 2 }, |_| 0).await })
        };
        release.send(true).unwrap();
        assert_eq!(waiter.await.unwrap(), (1, Role::Waiter));
    }

    #[tokio::test]
    async fn a_panicking_fetch_reaches_waiters_as_a_value() {
        let c: Coalescer<Result<u32, String>> = Coalescer::default();
        let (v, _) = c.run("k", |_| async { panic!("boom") }, Err).await;
        assert!(v.unwrap_err().contains("panic"));
        assert!(c.is_empty());
    }

    /// A published result reaches the waiters while the fetch goes on; the key stays in flight
    /// until the fetch ends, so a request arriving meanwhile joins (and gets that result)
    /// rather than starting a second fetch.
    #[tokio::test]
    async fn a_published_result_is_answered_before_the_fetch_ends() {
        let c: Arc<Coalescer<u32>> = Arc::default();
        let (finish, finishing) = tokio::sync::oneshot::channel::<()>();
        let (first, role) = c.join(
            "k",
            move |publish| async move {
                publish.send(1);
                finishing.await.unwrap();
                2
            },
            |_| 0,
        );
        assert_eq!(role, Role::Leader);
        assert_eq!(first.await, 1, "answered before the fetch ended");
        let (late, role) = c.join("k", |_| async { 3 }, |_| 0);
        assert_eq!(
            (late.await, role),
            (1, Role::Waiter),
            "in flight until it ends"
        );
        finish.send(()).unwrap();
        while !c.is_empty() {
            tokio::task::yield_now().await;
        }
        let (next, role) = c.join("k", |_| async { 4 }, |_| 0);
        assert_eq!((next.await, role), (4, Role::Leader));
    }
}
