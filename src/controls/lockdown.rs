//! The "property lockdown" pattern shared by the public-access kinds: PATCH only the fields a
//! containment owns, after recording their first-seen values; on release, send back the recorded
//! value of each owned field that differs now.

use serde_json::{Map, Value, json};

/// The restore record after `patch` is applied: fields are added with their value as first seen
/// (the state before this containment ever wrote them), and marked owned.
pub fn record(previous: Option<&Value>, patch: &Map<String, Value>, current: &Value) -> Value {
    let mut record = previous
        .cloned()
        .unwrap_or_else(|| json!({"prior": {}, "owned": []}));
    for f in patch.keys() {
        if record["prior"].get(f).is_none() {
            record["prior"][f] = current[f].clone();
        }
        if let Some(o) = record["owned"].as_array_mut()
            && !o.iter().any(|x| x == f)
        {
            o.push(json!(f));
        }
    }
    record
}

/// The fields to PATCH back on release. `absent` gives the documented meaning of a field that
/// was not set; `same` compares a field's recorded and current value.
pub fn release_patch(
    current: &Value,
    restore: &Value,
    absent: impl Fn(&str) -> Value,
    same: impl Fn(&str, &Value, &Value) -> bool,
) -> Map<String, Value> {
    let mut patch = Map::new();
    let Some(owned) = restore["owned"].as_array() else {
        return patch;
    };
    for f in owned.iter().filter_map(Value::as_str) {
        let prior = match &restore["prior"][f] {
            Value::Null => absent(f),
            v => v.clone(),
        };
        let now = match &current[f] {
            Value::Null => absent(f),
            v => v.clone(),
        };
        if !same(f, &prior, &now) {
            patch.insert(f.to_string(), prior);
        }
    }
    patch
}

/// Enforce: one PATCH of the owned fields that differ, after recording their first-seen values.
pub fn lock(
    patch: Map<String, Value>,
    previous: Option<&Value>,
    current: &Value,
    make_step: impl Fn(Map<String, Value>, String) -> crate::engine::Step,
) -> crate::engine::Assessment {
    let fields = patch.keys().cloned().collect::<Vec<_>>().join(", ");
    let record = record(previous, &patch, current);
    crate::engine::Assessment {
        steps: vec![make_step(patch, format!("lock down {fields}"))],
        message: format!("not compliant: {fields}"),
        record: Some(record),
        ..Default::default()
    }
}

/// Release: one PATCH putting back the owned fields that differ, or nothing.
pub fn unlock(
    patch: Map<String, Value>,
    make_step: impl Fn(Map<String, Value>, String) -> crate::engine::Step,
) -> Vec<crate::engine::Step> {
    if patch.is_empty() {
        return Vec::new();
    }
    let fields = patch.keys().cloned().collect::<Vec<_>>().join(", ");
    vec![make_step(patch, format!("restore {fields}"))]
}

/// Two lockdown records of one target: the older one's first-seen values win, fields only the
/// newer one owns are added with its first-seen value.
pub fn merge(older: &Value, newer: &Value) -> Value {
    let mut r = older.clone();
    if let Some(prior) = newer["prior"].as_object() {
        for (f, v) in prior {
            if r["prior"].get(f).is_none() {
                r["prior"][f] = v.clone();
            }
        }
    }
    for f in newer["owned"].as_array().into_iter().flatten() {
        if let Some(o) = r["owned"].as_array_mut()
            && !o.contains(f)
        {
            o.push(f.clone());
        }
    }
    r
}

/// Composing two network-access wants ranked `rank` (higher is stricter, e.g. Disabled over an
/// allow-list): whether `other`'s replaces `acc`'s, or why they conflict (two allow-lists).
pub fn stricter_access(
    (acc_rank, acc_ranges): (u8, Option<&Vec<String>>),
    (other_rank, other_ranges): (u8, Option<&Vec<String>>),
    restricted: u8,
) -> Result<bool, String> {
    let set = |r: Option<&Vec<String>>| {
        let mut v: Vec<String> = r
            .into_iter()
            .flatten()
            .map(|s| s.trim_end_matches("/32").to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if acc_rank == restricted && other_rank == restricted && set(acc_ranges) != set(other_ranges) {
        return Err(format!(
            "both limit public network access to an allow-list, and the lists differ ({} vs {})",
            set(acc_ranges).join(","),
            set(other_ranges).join(",")
        ));
    }
    Ok(other_rank > acc_rank)
}

/// The values of `field` in a list of objects, sorted (order-insensitive rule comparison).
pub fn values_of(list: &Value, field: &str) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r[field].as_str())
        .map(|s| s.trim_end_matches("/32").to_string())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_seen_value_wins_and_release_sends_only_differences() {
        let cur = json!({"a": 1, "b": "x"});
        let mut p = Map::new();
        p.insert("a".into(), json!(2));
        let r1 = record(None, &p, &cur);
        assert_eq!(r1, json!({"prior": {"a": 1}, "owned": ["a"]}));
        // A later write (after drift) keeps the first-seen value.
        let r2 = record(Some(&r1), &p, &json!({"a": 5}));
        assert_eq!(r2, r1);
        let same = |_: &str, a: &Value, b: &Value| a == b;
        assert_eq!(
            Value::Object(release_patch(&json!({"a": 2}), &r1, |_| Value::Null, same)),
            json!({"a": 1})
        );
        assert!(release_patch(&json!({"a": 1}), &r1, |_| Value::Null, same).is_empty());
        let r3 = json!({"prior": {"c": null}, "owned": ["c"]});
        assert_eq!(
            release_patch(&json!({"c": false}), &r3, |_| json!(true), same)["c"],
            json!(true)
        );
    }

    #[test]
    fn merged_records_keep_the_oldest_first_seen_value() {
        let older = json!({"prior": {"a": 1}, "owned": ["a"]});
        let newer = json!({"prior": {"a": 2, "b": true}, "owned": ["a", "b"]});
        assert_eq!(
            merge(&older, &newer),
            json!({"prior": {"a": 1, "b": true}, "owned": ["a", "b"]})
        );
    }

    #[test]
    fn the_stricter_access_wins_and_two_allow_lists_conflict() {
        let l1 = vec!["1.2.3.4".to_string()];
        let l2 = vec!["1.2.3.4/32".to_string()];
        let l3 = vec!["5.6.7.8".to_string()];
        // 2 = Disabled, 1 = Restricted, 0 = unchanged
        assert_eq!(stricter_access((1, Some(&l1)), (2, None), 1), Ok(true));
        assert_eq!(stricter_access((2, None), (1, Some(&l1)), 1), Ok(false));
        assert_eq!(
            stricter_access((1, Some(&l1)), (1, Some(&l2)), 1),
            Ok(false)
        );
        let e = stricter_access((1, Some(&l1)), (1, Some(&l3)), 1).unwrap_err();
        assert!(e.contains("1.2.3.4 vs 5.6.7.8"), "{e}");
    }

    #[test]
    fn values_ignore_order_and_host_prefix() {
        let a = json!([{"v": "1.2.3.4/32"}, {"v": "10.0.0.0/8"}]);
        let b = json!([{"v": "10.0.0.0/8"}, {"v": "1.2.3.4"}]);
        assert_eq!(values_of(&a, "v"), values_of(&b, "v"));
    }
}
