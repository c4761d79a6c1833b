//! Coalescing the writes of many resources that share one Azure list (a WAF policy's custom
//! rules, a tenant's indicators): every resource registers what it wants under its target, and
//! one write carries everyone's wants. In a burst (resources arriving on a target within
//! `MAX_HOLD`), the one with the smallest key leads: it writes once nothing has arrived for
//! `SETTLE` and no peer is still waiting for the guard's admission (at most `MAX_HOLD` from its
//! own arrival). The rest hold for `MAX_HOLD` from their own arrival, so they neither crowd the
//! work queue with re-checks nor write what the leader already wrote; a kind with small bursts
//! has the leader's write wake the peers it carried (`Control::carried`). A peer not yet admitted is waited for, never written. A lone
//! resource is never held. Where one write has a size cap, a full one goes at once, held or not
//! (ThreatIndicator: 500 per import), since waiting could not make it carry more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::Kind;
use crate::engine::composition::{OnTarget, name_of};
use crate::engine::conditions::{READY, STALLED};

pub const SETTLE: Duration = Duration::from_secs(1);
/// Long enough for a thousand first reconciles (each admits one resource) on one target.
pub const MAX_HOLD: Duration = Duration::from_secs(30);

/// The Reconciling state of a resource held for a coalesced write: `what` says what the write
/// will carry, e.g. "other WafIpBlocks are arriving on this policy; writing them in one PUT".
pub fn held(what: &str, wait: Duration) -> crate::engine::Wait {
    crate::engine::Wait {
        reason: "Coalescing".into(),
        message: format!("{what} in {} ms", wait.as_millis()),
        recheck: wait,
    }
}

/// Wants per target (lower case), per resource key (`namespace/name`), in key order, and when
/// each resource was first seen (and whether it still waits for admission).
pub struct Registry<W> {
    wants: Mutex<HashMap<String, BTreeMap<String, W>>>,
    arrivals: Mutex<HashMap<String, HashMap<String, Arrival>>>,
}

#[derive(Clone, Copy)]
struct Arrival {
    at: Instant,
    admitted: bool,
    /// Neither Ready nor Stalled for its current generation: it may still write (and lead).
    writing: bool,
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
    /// Replace the target's wants with `wants` (the resource and its admitted peers from the
    /// watch cache); `arriving` are peers the guard has not admitted yet, `idle` peers that are
    /// done (Ready or Stalled: they count as arrivals but do not lead, since they will not
    /// write). Resources not seen before arrive now.
    pub fn register<'k>(
        &self,
        target: &str,
        wants: BTreeMap<String, W>,
        arriving: impl IntoIterator<Item = &'k String>,
        idle: &HashSet<String>,
    ) {
        let target = target.to_ascii_lowercase();
        let now = Instant::now();
        {
            let arriving: HashSet<&String> = arriving.into_iter().collect();
            let mut arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
            let seen = arrivals.entry(target.clone()).or_default();
            seen.retain(|k, _| wants.contains_key(k) || arriving.contains(k));
            for (k, admitted) in wants
                .keys()
                .map(|k| (k, true))
                .chain(arriving.into_iter().map(|k| (k, false)))
            {
                let a = seen.entry(k.clone()).or_insert(Arrival {
                    at: now,
                    admitted,
                    writing: true,
                });
                a.admitted = admitted;
                a.writing = !idle.contains(k);
            }
        }
        let mut reg = self.wants.lock().unwrap_or_else(|e| e.into_inner());
        reg.insert(target, wants);
    }

    /// [`Registry::register`] from the engine's view of the target: `obj` and its admitted
    /// peers want, the others are arriving.
    pub fn register_on<K: Kind>(
        &self,
        target: &str,
        obj: &K,
        on: &OnTarget<K>,
        want_of: impl Fn(&K) -> W,
    ) {
        let mut wants: BTreeMap<String, W> = on
            .enforcing
            .iter()
            .map(|p| (name_of(p.as_ref()), want_of(p)))
            .collect();
        wants.insert(name_of(obj), want_of(obj));
        let arriving: Vec<String> = on.arriving.iter().map(|p| name_of(p.as_ref())).collect();
        let idle: HashSet<String> = on
            .enforcing
            .iter()
            .filter(|p| !writing(p.as_ref()))
            .map(|p| name_of(p.as_ref()))
            .collect();
        self.register(target, wants, &arriving, &idle);
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
        let own = seen.get(key)?.at;
        let now = Instant::now();
        let burst: Vec<(&String, &Arrival)> = seen
            .iter()
            .filter(|(k, a)| *k != key && now.duration_since(a.at) < MAX_HOLD)
            .collect();
        // A peer still waiting for admission is as good as arriving now.
        let newest = burst
            .iter()
            .map(|(_, a)| if a.admitted { a.at } else { now })
            .max()?;
        let leads = burst.iter().all(|(k, a)| !a.writing || k.as_str() > key);
        let until = if leads {
            (newest + SETTLE).min(own + MAX_HOLD)
        } else {
            own + MAX_HOLD
        };
        until.checked_duration_since(now)
    }
}

/// Not Ready and not Stalled for its current generation: the resource may still write.
fn writing<K: Kind>(k: &K) -> bool {
    let generation = k.meta().generation;
    let Some(status) = k.common_status() else {
        return true;
    };
    !status.conditions.iter().any(|c| {
        (c.type_ == READY || c.type_ == STALLED)
            && c.status == "True"
            && c.observed_generation == generation
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wants(keys: &[&str]) -> BTreeMap<String, u32> {
        keys.iter().map(|k| (k.to_string(), 1)).collect()
    }

    #[test]
    fn a_lone_resource_is_never_held_and_a_burst_is_held_briefly() {
        let r: Registry<u32> = Registry::default();
        r.register("T", wants(&["ns/a"]), [], &HashSet::new());
        assert_eq!(r.hold("t", "ns/a"), None);
        r.register("t", wants(&["ns/a", "ns/b"]), [], &HashSet::new());
        let h = r.hold("t", "ns/a").expect("held while b just arrived");
        assert!(h <= SETTLE, "{h:?}");
        assert_eq!(
            r.wants("t"),
            [("ns/a".to_string(), 1), ("ns/b".to_string(), 1)]
        );
        r.remove("t", "ns/b");
        assert_eq!(r.hold("t", "ns/a"), None);
        assert_eq!(r.wants("t"), [("ns/a".to_string(), 1)]);
    }

    #[test]
    fn in_a_burst_the_smallest_key_leads_and_the_others_hold_longer() {
        let r: Registry<u32> = Registry::default();
        r.register("t", wants(&["ns/a", "ns/b", "ns/c"]), [], &HashSet::new());
        let lead = r.hold("t", "ns/a").expect("a leads the burst");
        assert!(lead <= SETTLE, "the leader settles: {lead:?}");
        for k in ["ns/b", "ns/c"] {
            let h = r.hold("t", k).expect("followers hold");
            assert!(h > SETTLE && h <= MAX_HOLD, "{k}: {h:?}");
        }
    }

    #[test]
    fn a_peer_that_is_done_does_not_lead() {
        let r: Registry<u32> = Registry::default();
        let idle = HashSet::from(["ns/a".to_string()]);
        r.register("t", wants(&["ns/a", "ns/b"]), [], &idle);
        let h = r.hold("t", "ns/b").expect("a just arrived");
        assert!(h <= SETTLE, "a is Ready or Stalled, so b leads: {h:?}");
    }

    #[test]
    fn peers_not_yet_admitted_are_arriving_but_never_wanted() {
        let r: Registry<u32> = Registry::default();
        let pending = ["ns/b".to_string()];
        r.register("t", wants(&["ns/a"]), &pending, &HashSet::new());
        std::thread::sleep(SETTLE);
        let h = r
            .hold("t", "ns/a")
            .expect("b still waits for admission: a waits");
        assert!(h > SETTLE / 2, "as if b arrived now: {h:?}");
        assert_eq!(r.wants("t"), [("ns/a".to_string(), 1)]);
        // Refused for good (no longer arriving): a is alone again.
        r.register("t", wants(&["ns/a"]), [], &HashSet::new());
        assert_eq!(r.hold("t", "ns/a"), None);
    }
}
