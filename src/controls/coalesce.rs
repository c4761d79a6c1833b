//! Coalescing the writes of many resources that share one Azure list (a WAF policy's custom
//! rules, a tenant's indicators): every resource registers what it wants under its target, the
//! first one to write sends everyone's wants in one request, and while resources keep arriving
//! on a target (a burst) a write waits until none has arrived for `SETTLE`, at most `MAX_HOLD`
//! from its own arrival. A lone resource is never held.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SETTLE: Duration = Duration::from_secs(1);
pub const MAX_HOLD: Duration = Duration::from_secs(5);

/// Wants per target (lower case), per resource key (`namespace/name`), in key order, and when
/// each resource was first seen.
pub struct Registry<W> {
    wants: Mutex<HashMap<String, BTreeMap<String, W>>>,
    arrivals: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

impl<W> Default for Registry<W> {
    fn default() -> Self {
        Self {
            wants: Mutex::default(),
            arrivals: Mutex::default(),
        }
    }
}

impl<W: Clone> Registry<W> {
    /// Replace the target's wants with `wants` (the resource and its peers from the watch
    /// cache); resources not seen before arrive now.
    pub fn register(&self, target: &str, wants: BTreeMap<String, W>) {
        let target = target.to_ascii_lowercase();
        let now = Instant::now();
        {
            let mut arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
            let seen = arrivals.entry(target.clone()).or_default();
            seen.retain(|k, _| wants.contains_key(k));
            for k in wants.keys() {
                seen.entry(k.clone()).or_insert(now);
            }
        }
        let mut reg = self.wants.lock().unwrap_or_else(|e| e.into_inner());
        reg.insert(target, wants);
    }

    /// The resource no longer wants anything on the target.
    pub fn remove(&self, target: &str, key: &str) {
        let target = target.to_ascii_lowercase();
        if let Some(m) = self
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&target)
        {
            m.remove(key);
        }
        if let Some(m) = self
            .wants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&target)
        {
            m.remove(key);
        }
    }

    /// Every registered want on the target, with its resource key, in key order.
    pub fn wants(&self, target: &str) -> Vec<(String, W)> {
        let reg = self.wants.lock().unwrap_or_else(|e| e.into_inner());
        reg.get(&target.to_ascii_lowercase())
            .map(|m| m.iter().map(|(k, w)| (k.clone(), w.clone())).collect())
            .unwrap_or_default()
    }

    /// How long the write of resource `key` should still wait for others arriving on `target`.
    pub fn hold(&self, target: &str, key: &str) -> Option<Duration> {
        let arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        let seen = arrivals.get(&target.to_ascii_lowercase())?;
        let own = *seen.get(key)?;
        let newest = seen
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(_, t)| *t)
            .max()?;
        let until = (newest + SETTLE).min(own + MAX_HOLD);
        until.checked_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_resource_is_never_held_and_a_burst_is_held_briefly() {
        let r: Registry<u32> = Registry::default();
        r.register("T", BTreeMap::from([("ns/a".to_string(), 1)]));
        assert_eq!(r.hold("t", "ns/a"), None);
        r.register(
            "t",
            BTreeMap::from([("ns/a".to_string(), 1), ("ns/b".to_string(), 2)]),
        );
        let h = r.hold("t", "ns/a").expect("held while b just arrived");
        assert!(h <= SETTLE, "{h:?}");
        assert_eq!(
            r.wants("t"),
            [("ns/a".to_string(), 1), ("ns/b".to_string(), 2)]
        );
        r.remove("t", "ns/b");
        assert_eq!(r.hold("t", "ns/a"), None);
        assert_eq!(r.wants("t"), [("ns/a".to_string(), 1)]);
    }
}
