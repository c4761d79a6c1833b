//! Observations shared between the resources on one Azure target, so that N containments of a
//! kind on one server cost one read, not N (ARM's read bucket is per subscription).
//!
//! An entry is valid only while no write has been sent to the target since the read started
//! (a per-target epoch, bumped before every write by any kind), and only up to a maximum age
//! chosen by the caller: one drift interval for resources already converged, a couple of
//! seconds for new or changed ones. Release always reads; after a write, the kind either derives
//! the new state from Azure's acknowledgements (`Control::after_steps`) or it is read back.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a fresh observation may serve a new or changed resource on the same target: long
/// enough for a burst queued behind the target lock, short enough to be no worse than the
/// read-then-write window every write already has.
pub const BURST_REUSE: Duration = Duration::from_secs(2);

struct Entry {
    at: Instant,
    epoch: u64,
    value: Arc<dyn Any + Send + Sync>,
}

#[derive(Default)]
pub struct Observations {
    /// Per target (lower case), per kind.
    entries: Mutex<HashMap<String, HashMap<&'static str, Entry>>>,
    epochs: Mutex<HashMap<String, u64>>,
}

impl Observations {
    /// The target's write epoch; take it before reading.
    pub fn epoch(&self, target: &str) -> u64 {
        let mut e = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        *e.entry(target.to_ascii_lowercase()).or_default()
    }

    /// A write to `path` is about to be sent: every target it is under is invalidated.
    pub fn wrote(&self, path: &str) {
        let path = path.to_ascii_lowercase();
        let mut e = self.epochs.lock().unwrap_or_else(|e| e.into_inner());
        for (target, n) in e.iter_mut() {
            if path == *target || path.starts_with(&format!("{target}/")) {
                *n += 1;
            }
        }
    }

    pub fn get<T: Clone + Send + Sync + 'static>(
        &self,
        kind: &'static str,
        target: &str,
        max_age: Duration,
    ) -> Option<T> {
        let epoch = self.epoch(target);
        let m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.get(&target.to_ascii_lowercase())?.get(kind)?;
        if e.epoch != epoch || e.at.elapsed() > max_age {
            return None;
        }
        e.value.downcast_ref::<T>().cloned()
    }

    /// Remember an observation whose read started at `epoch`.
    pub fn put<T: Send + Sync + 'static>(
        &self,
        kind: &'static str,
        target: &str,
        epoch: u64,
        value: T,
    ) {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(target.to_ascii_lowercase()).or_default().insert(
            kind,
            Entry {
                at: Instant::now(),
                epoch,
                value: Arc::new(value),
            },
        );
    }
}

impl Observations {
    /// The target is idle (no read in flight): its epoch is only needed while a shared read of
    /// it is remembered. Keeps the epoch map from growing with targets that never yield one
    /// (not found, forbidden, kinds that do not share).
    pub fn forget_idle(&self, target: &str) {
        let key = target.to_ascii_lowercase();
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !entries.contains_key(&key) {
            self.epochs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/servers/a";

    #[test]
    fn shared_until_a_write_to_the_target() {
        let o = Observations::default();
        let e = o.epoch(T);
        o.put("SqlIpBlock", T, e, 7u32);
        assert_eq!(
            o.get::<u32>("SqlIpBlock", &T.to_uppercase(), Duration::from_secs(9)),
            Some(7)
        );
        // Another kind's cache is its own.
        assert_eq!(
            o.get::<u32>("SqlPublicAccessLockdown", T, Duration::from_secs(9)),
            None
        );
        // A write to a sibling server does not invalidate; one under the target does.
        o.wrote(
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/servers/ab/firewallRules/x",
        );
        assert_eq!(
            o.get::<u32>("SqlIpBlock", T, Duration::from_secs(9)),
            Some(7)
        );
        o.wrote(&format!("{T}/firewallRules/x"));
        assert_eq!(o.get::<u32>("SqlIpBlock", T, Duration::from_secs(9)), None);
    }

    #[test]
    fn a_read_overlapping_a_write_is_never_served() {
        let o = Observations::default();
        let before = o.epoch(T);
        o.wrote(T);
        o.put("SqlIpBlock", T, before, 1u32);
        assert_eq!(o.get::<u32>("SqlIpBlock", T, Duration::from_secs(9)), None);
    }

    #[test]
    fn an_idle_target_without_a_shared_read_is_forgotten() {
        let o = Observations::default();
        let other = format!("{T}x");
        o.epoch(&other);
        o.wrote(&other);
        o.forget_idle(&other);
        assert!(o.epochs.lock().unwrap().is_empty());
        // With a shared read, its epoch stays (the read stays valid until a write).
        let e = o.epoch(T);
        o.put("SqlIpBlock", T, e, 1u32);
        o.forget_idle(T);
        assert_eq!(
            o.get::<u32>("SqlIpBlock", T, Duration::from_secs(9)),
            Some(1)
        );
        o.wrote(T);
        assert_eq!(o.get::<u32>("SqlIpBlock", T, Duration::from_secs(9)), None);
    }

    #[test]
    fn too_old_is_not_served() {
        let o = Observations::default();
        let e = o.epoch(T);
        o.put("SqlIpBlock", T, e, 1u32);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            o.get::<u32>("SqlIpBlock", T, Duration::from_millis(10)),
            None
        );
    }
}
