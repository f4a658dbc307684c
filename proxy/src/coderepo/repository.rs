//! [`Repository`]: one Git repository shared by the modules it holds, with its refresh
//! policy. The mirror answers reads; it is refreshed before answers that follow moving refs
//! (lists, branches, `@latest`) and once when a tag, hash or pseudo-version is not in it, but
//! at most once per `min_refresh_interval`: a client asking for a thousand missing hashes
//! costs one fetch, not a thousand. Within the interval the last refresh's outcome stands,
//! failure included (during an outage a missing revision is a 5xx, never a 404).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::codehost::{CodeHost, HostError};

/// The default of [`Repository::new`]'s `min_refresh_interval`.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// A repository and how it is kept fresh.
pub struct Repository {
    host: Arc<dyn CodeHost>,
    /// `Origin.URL`: the repository as the go command names it (never with userinfo).
    url: String,
    min_refresh_interval: Duration,
    /// When the last refresh finished, and how. Held while refreshing, so concurrent callers
    /// wait for that fetch and then use it instead of starting another.
    last: Mutex<Option<(Instant, Result<(), HostError>)>>,
}

impl Repository {
    /// `url` is what `.info` files record as `Origin.URL`: the URL the go command itself would
    /// fetch from (for a `.git`-qualified path `host/a/b.git`, `https://host/a/b`); userinfo is
    /// removed.
    pub fn new(host: Arc<dyn CodeHost>, url: &str, min_refresh_interval: Duration) -> Repository {
        Repository {
            host,
            url: crate::codehost::display_url(url),
            min_refresh_interval,
            last: Mutex::new(None),
        }
    }

    pub fn host(&self) -> &dyn CodeHost {
        &*self.host
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Refreshes the mirror unless the last refresh finished less than the interval ago, in
    /// which case its outcome is returned again.
    pub fn refresh(&self) -> Result<(), HostError> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, outcome)) = &*last
            && at.elapsed() < self.min_refresh_interval
        {
            return outcome.clone();
        }
        let outcome = self.host.refresh();
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }

    /// Refreshes now, whatever the interval (a push webhook, an operator's request).
    pub fn refresh_now(&self) -> Result<(), HostError> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = self.host.refresh();
        *last = Some((Instant::now(), outcome.clone()));
        outcome
    }
}
