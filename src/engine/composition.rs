//! Several containments of one kind on one Azure target. They compose: each resource plans the
//! one state that satisfies every Enforce resource on the target (so no two of them undo each
//! other's writes), they share one restore record (the oldest holder's, with what the others saw
//! added), and only the last one to go puts the prior state back. The peers come from the
//! kind's watch cache; the per-target lock keeps their Azure work apart.

use std::sync::Arc;

use jiff::Timestamp;
use kube::ResourceExt;
use serde_json::Value;

use super::{Control, Kind};
use crate::api::common::Mode;
use crate::azure::ResourceId;

/// The other resources of the kind on one target.
pub struct OnTarget<K> {
    /// Enforce now (not expired, not being deleted), oldest first.
    pub enforcing: Vec<Arc<K>>,
    /// Holding a restore record not yet released (deleting ones included), oldest first.
    pub holders: Vec<Arc<K>>,
    /// Enforce now but not admitted by the guard yet (their first reconcile is still to come):
    /// a coalesced write may wait for them, never carry them.
    pub arriving: Vec<Arc<K>>,
}

/// `namespace/name`.
pub fn name_of<K: Kind>(k: &K) -> String {
    format!("{}/{}", k.namespace().unwrap_or_default(), k.name_any())
}

/// Creation order: "the later one" of two resources. Within one second (the timestamp's
/// precision) one that already holds a record came first, then name order.
type Age = (Option<Timestamp>, bool, String);

fn age<K: Kind>(k: &K) -> Age {
    (
        k.meta().creation_timestamp.as_ref().map(|t| t.0),
        !holds_record(k),
        name_of(k),
    )
}

fn same<K: Kind>(a: &K, b: &K) -> bool {
    match (&a.meta().uid, &b.meta().uid) {
        (Some(x), Some(y)) => x == y,
        _ => name_of(a) == name_of(b),
    }
}

pub fn enforcing<K: Kind>(k: &K, now: Timestamp) -> bool {
    let c = k.common();
    c.mode == Mode::Enforce
        && c.expires_at.as_ref().is_none_or(|e| e.0 > now)
        && k.meta().deletion_timestamp.is_none()
}

/// The guard admitted it (`status.policy`): only admitted resources' wants are folded into
/// what is written, so a refused one can never ride on a peer's write.
pub fn admitted<K: Kind>(k: &K) -> bool {
    k.common_status().is_some_and(|s| s.policy.is_some())
}

fn holds_record<K: Kind>(k: &K) -> bool {
    k.common_status()
        .is_some_and(|s| s.restore.is_some() && s.released_time.is_none())
}

pub fn on_target<C: Control>(all: &[Arc<C::K>], obj: &C::K, target: &ResourceId) -> OnTarget<C::K> {
    let now = Timestamp::now();
    let mut others: Vec<Arc<C::K>> = all
        .iter()
        .filter(|p| !same(p.as_ref(), obj))
        .filter(|p| C::target(p).is_ok_and(|t| t.id.eq_ignore_ascii_case(&target.id)))
        .cloned()
        .collect();
    others.sort_by_key(|p| age(p.as_ref()));
    OnTarget {
        enforcing: others
            .iter()
            .filter(|p| enforcing(p.as_ref(), now) && admitted(p.as_ref()))
            .cloned()
            .collect(),
        holders: others
            .iter()
            .filter(|p| holds_record(p.as_ref()))
            .cloned()
            .collect(),
        arriving: others
            .iter()
            .filter(|p| enforcing(p.as_ref(), now) && !admitted(p.as_ref()))
            .cloned()
            .collect(),
    }
}

/// `obj` cannot be composed with an older resource.
#[derive(Debug, PartialEq)]
pub struct Conflict {
    pub with: String,
    pub why: String,
}

/// `obj` with every enforcing peer's wants folded in. A peer that cannot be composed makes
/// `obj` the one in conflict when the peer is older; a later peer is left out (it stalls itself).
pub fn compose<C: Control>(
    control: &C,
    obj: &C::K,
    enforcing: &[Arc<C::K>],
) -> Result<C::K, Conflict> {
    let mut acc = obj.clone();
    for p in enforcing {
        if let Err(why) = control.compose(&mut acc, p)
            && age(p.as_ref()) < age(obj)
        {
            return Err(Conflict {
                with: name_of(p.as_ref()),
                why,
            });
        }
    }
    Ok(acc)
}

/// The target's one record: every holder's and `obj`'s own, merged oldest first.
pub fn shared_restore<C: Control>(
    control: &C,
    obj: &C::K,
    own: Option<&Value>,
    holders: &[Arc<C::K>],
) -> Option<Value> {
    let mut records: Vec<(Age, &Value)> = holders
        .iter()
        .filter_map(|h| Some((age(h.as_ref()), h.common_status()?.restore.as_ref()?)))
        .collect();
    if let Some(r) = own {
        records.push((age(obj), r));
    }
    records.sort_by(|a, b| a.0.cmp(&b.0));
    let mut it = records.into_iter().map(|(_, r)| r);
    let first = it.next()?.clone();
    Some(it.fold(first, |acc, r| control.merge_restore(&acc, r)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::security::DefenderAlertState;
    use crate::api::sql::SqlIpBlock;
    use crate::controls::defender_alert::DefenderAlertStateControl;
    use crate::controls::sql_ip_block::SqlIpBlockControl;
    use serde_json::json;

    const SERVER: &str =
        "/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/servers/sql-prod-01";
    const ALERT: &str =
        "/subscriptions/s/providers/Microsoft.Security/locations/westeurope/alerts/a1";

    fn at(secs: i64) -> String {
        Timestamp::from_second(1_800_000_000 + secs)
            .unwrap()
            .to_string()
    }

    fn block(name: &str, created: i64, ips: &[&str], extra: Value) -> Arc<SqlIpBlock> {
        let mut v = json!({
            "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "SqlIpBlock",
            "metadata": {"name": name, "namespace": "soc", "uid": name, "creationTimestamp": at(created)},
            "spec": {"target": {"resourceId": SERVER}, "ipAddresses": ips},
            "status": {"policy": "soc"}});
        for (k, x) in extra.as_object().unwrap() {
            v[k.as_str()] = x.clone();
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn alert(name: &str, created: i64, state: &str) -> Arc<DefenderAlertState> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "DefenderAlertState",
                "metadata": {"name": name, "namespace": "soc", "uid": name, "creationTimestamp": at(created)},
                "spec": {"target": {"resourceId": ALERT}, "state": state},
                "status": {"policy": "soc"}}))
            .unwrap(),
        )
    }

    fn target() -> ResourceId {
        <SqlIpBlockControl as Control>::target(&block("x", 0, &["1.2.3.4"], json!({}))).unwrap()
    }

    #[test]
    fn peers_are_enforcing_resources_on_the_same_target_oldest_first() {
        let me = block("me", 5, &["203.0.113.7"], json!({}));
        let all = vec![
            me.clone(),
            block("later", 9, &["203.0.113.9"], json!({})),
            block("older", 1, &["203.0.113.5"], json!({})),
            block(
                "dry",
                2,
                &["203.0.113.6"],
                json!({"spec": {"target": {"resourceId": SERVER}, "ipAddresses": ["203.0.113.6"], "mode": "DryRun"}}),
            ),
            block(
                "other-server",
                3,
                &["203.0.113.8"],
                json!({"spec": {"target": {"resourceId": format!("{SERVER}-b")}, "ipAddresses": ["203.0.113.8"]}}),
            ),
            // The guard refused it: its wants never join a write.
            block("refused", 3, &["203.0.113.3"], json!({"status": {}})),
            block(
                "expired",
                4,
                &["203.0.113.4"],
                json!({"spec": {"target": {"resourceId": SERVER}, "ipAddresses": ["203.0.113.4"], "expiresAt": "2020-01-01T00:00:00Z"}}),
            ),
        ];
        let on = on_target::<SqlIpBlockControl>(&all, &me, &target());
        let names: Vec<String> = on.enforcing.iter().map(|p| name_of(p.as_ref())).collect();
        assert_eq!(names, ["soc/older", "soc/later"]);
        let c = compose(&SqlIpBlockControl, &me, &on.enforcing).unwrap();
        assert_eq!(
            c.spec.ip_addresses,
            ["203.0.113.7", "203.0.113.5", "203.0.113.9"]
        );
        // The composed object is still this resource.
        assert_eq!(name_of(&c), "soc/me");
    }

    #[test]
    fn the_later_of_two_conflicting_resources_is_the_one_in_conflict() {
        let older = alert("older", 1, "Dismissed");
        let later = alert("later", 2, "Active");
        let c = DefenderAlertStateControl;
        let e = compose(&c, &later, std::slice::from_ref(&older)).unwrap_err();
        assert_eq!(e.with, "soc/older");
        assert!(e.why.contains("Dismissed"), "{}", e.why);
        // The older one keeps its own wants.
        let kept = compose(&c, &older, std::slice::from_ref(&later)).unwrap();
        assert_eq!(kept.spec.state, older.spec.state);
    }

    #[test]
    fn the_shared_record_is_the_oldest_with_what_the_others_saw_added() {
        let with = |name: &str, created: i64, restore: Value| {
            block(
                name,
                created,
                &["203.0.113.7"],
                json!({"status": {"restore": restore}}),
            )
        };
        let first = with(
            "first",
            1,
            json!({"originals": {"AllowAll": {"startIpAddress": "0.0.0.0", "endIpAddress": "255.255.255.255"}},
                   "created": ["AllowAll-cx1", "AllowAll-cx2"]}),
        );
        // The second one took the first one's split part for an original, and saw a new rule.
        let second = with(
            "second",
            2,
            json!({"originals": {"AllowAll-cx2": {"startIpAddress": "203.0.113.8", "endIpAddress": "255.255.255.255"},
                                 "vpn": {"startIpAddress": "203.0.113.0", "endIpAddress": "203.0.113.255"}},
                   "created": ["AllowAll-cx2-cx1", "vpn-cx1"]}),
        );
        let me = block("me", 3, &["203.0.113.9"], json!({}));
        let on = on_target::<SqlIpBlockControl>(&[second, first, me.clone()], &me, &target());
        assert_eq!(on.holders.len(), 2);
        let r = shared_restore(&SqlIpBlockControl, &me, None, &on.holders).unwrap();
        assert_eq!(
            r,
            json!({"originals": {"AllowAll": {"startIpAddress": "0.0.0.0", "endIpAddress": "255.255.255.255"},
                                 "vpn": {"startIpAddress": "203.0.113.0", "endIpAddress": "203.0.113.255"}},
                   "created": ["AllowAll-cx1", "AllowAll-cx2", "AllowAll-cx2-cx1", "vpn-cx1"]})
        );
        assert!(shared_restore(&SqlIpBlockControl, &me, None, &[]).is_none());
    }
}
