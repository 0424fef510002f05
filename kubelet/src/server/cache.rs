//! A small cache of review answers that expire, so a busy client (metrics scrapes, log
//! follows) does not send the API server a review per request.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries beyond which expired ones are swept on insert (the cache stays small).
const SWEEP_AT: usize = 1024;

/// Answers kept for a time that depends on the answer (upstream keeps a "yes" longer
/// than a "no").
pub struct Cache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    /// An empty cache.
    pub fn new() -> Cache<K, V> {
        Cache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The answer for `key`, if it has not expired at `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(value, _)| value.clone())
    }

    /// Keep `value` for `key` for `ttl` from `now`.
    pub fn put(&self, key: K, value: V, now: Instant, ttl: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= SWEEP_AT {
            entries.retain(|_, (_, until)| now < *until);
        }
        entries.insert(key, (value, now + ttl));
    }
}

impl<K: Eq + Hash, V: Clone> Default for Cache<K, V> {
    fn default() -> Self {
        Cache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_expire() {
        let cache = Cache::new();
        let now = Instant::now();
        cache.put("a", 1, now, Duration::from_secs(10));
        assert_eq!(cache.get(&"a", now + Duration::from_secs(9)), Some(1));
        assert_eq!(cache.get(&"a", now + Duration::from_secs(10)), None);
        assert_eq!(cache.get(&"b", now), None);
    }
}
