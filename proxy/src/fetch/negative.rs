//! Remembered "not found" answers (`--negative-ttl`), so a storm of lookups for a module that
//! does not exist stays here instead of going upstream.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Remembered "not found" answers, so a storm of lookups for a missing module stays here.
pub(super) struct NegativeCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, String)>>,
}

/// Most remembered answers; past it, expired ones are dropped (or all, if none expired).
const NEGATIVE_MAX: usize = 100_000;

impl NegativeCache {
    pub(super) fn new(ttl: Duration) -> NegativeCache {
        NegativeCache {
            ttl,
            entries: Mutex::default(),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<String> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut map = self.entries.lock().expect("negative cache poisoned");
        match map.get(key) {
            Some((expires, message)) if *expires > Instant::now() => Some(message.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub(super) fn insert(&self, key: String, message: String) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = self.entries.lock().expect("negative cache poisoned");
        if map.len() >= NEGATIVE_MAX {
            map.retain(|_, (expires, _)| *expires > now);
            if map.len() >= NEGATIVE_MAX {
                map.clear();
            }
        }
        map.insert(key, (now + self.ttl, message));
    }

    pub(super) fn len(&self) -> usize {
        self.entries.lock().expect("negative cache poisoned").len()
    }
}
