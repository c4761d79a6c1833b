//! StorageSoftDeleteProtection: blob and container soft delete kept on for at least N days.
//! `blobServices/default` is a singleton written by PUT, and a PUT without `cors` deletes every
//! CORS rule (azure-api-facts §3.5): every write sends back the whole GET result with only the
//! two retention policies changed. The policies are lockdown fields (`controls::lockdown`).

use serde_json::{Map, Value, json};

use super::storage_public_access::STORAGE_API;
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::storage::{StorageSoftDeleteProtection, StorageSoftDeleteProtectionSpec};
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

crate::impl_kind!(StorageSoftDeleteProtection, status: s => s);

const BLOBS: &str = "deleteRetentionPolicy";
const CONTAINERS: &str = "containerDeleteRetentionPolicy";

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The account's Azure tags (the guard's protected tag).
    pub tags: Map<String, Value>,
    /// `blobServices/default` `properties`, as read.
    pub blob_service: Value,
}

fn blob_service(account: &str) -> String {
    format!("{account}/blobServices/default")
}

/// The policy that satisfies `days`: on, at least `days`, an existing longer retention kept,
/// permanent delete off; `None` when `current` already does.
fn wanted(current: &Value, days: u32) -> Option<Value> {
    let on = current["enabled"].as_bool().unwrap_or(false);
    let kept = current["days"].as_u64().unwrap_or(0);
    let purgeable = current["allowPermanentDelete"].as_bool().unwrap_or(false);
    if on && kept >= u64::from(days) && !purgeable {
        return None;
    }
    let mut next = current.as_object().cloned().unwrap_or_default();
    next.insert("enabled".into(), json!(true));
    next.insert(
        "days".into(),
        json!(if on {
            kept.max(u64::from(days))
        } else {
            u64::from(days)
        }),
    );
    if purgeable {
        next.insert("allowPermanentDelete".into(), json!(false));
    }
    Some(Value::Object(next))
}

/// The policies to write (only those that fall short); empty when compliant.
pub fn desired_patch(spec: &StorageSoftDeleteProtectionSpec, props: &Value) -> Map<String, Value> {
    let mut patch = Map::new();
    for (field, days) in [
        (BLOBS, spec.blob_retention_days),
        (CONTAINERS, spec.container_retention_days),
    ] {
        if let Some(p) = wanted(&props[field], days) {
            patch.insert(field.into(), p);
        }
    }
    patch
}

/// The PUT: the blob service as read, with `patch`'s policies in place.
fn put_step(account: &str, current: &Value, patch: Map<String, Value>, what: String) -> Step {
    let mut props = current.as_object().cloned().unwrap_or_default();
    props.extend(patch);
    Step::put(
        blob_service(account),
        STORAGE_API,
        json!({"properties": props}),
    )
    .what(what)
}

/// A policy that was never set means soft delete off.
fn absent(_field: &str) -> Value {
    json!({"enabled": false})
}

fn same(_field: &str, prior: &Value, now: &Value) -> bool {
    let on = |v: &Value| v["enabled"].as_bool().unwrap_or(false);
    on(prior) == on(now)
        && (!on(prior)
            || (prior["days"] == now["days"]
                && prior["allowPermanentDelete"].as_bool().unwrap_or(false)
                    == now["allowPermanentDelete"].as_bool().unwrap_or(false)))
}

fn summary(props: &Value) -> String {
    let days = |f: &str| props[f]["days"].as_u64().unwrap_or(0);
    format!(
        "blob soft delete {} days, container soft delete {} days",
        days(BLOBS),
        days(CONTAINERS)
    )
}

#[derive(Default)]
pub struct StorageSoftDeleteProtectionControl;

#[async_trait::async_trait]
impl Control for StorageSoftDeleteProtectionControl {
    type K = StorageSoftDeleteProtection;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.Storage/storageAccounts";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const SHARED_OBSERVATION: bool = true;
    /// Every one of them wants "at least N days": they share the record, the longest wins.
    const COMPOSES: bool = true;
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Storage/storageAccounts/read",
        "Microsoft.Storage/storageAccounts/blobServices/read",
        "Microsoft.Storage/storageAccounts/blobServices/write",
    ];

    fn compose(&self, acc: &mut Self::K, other: &Self::K) -> Result<(), String> {
        let (a, b) = (&mut acc.spec, &other.spec);
        a.blob_retention_days = a.blob_retention_days.max(b.blob_retention_days);
        a.container_retention_days = a.container_retention_days.max(b.container_retention_days);
        Ok(())
    }

    fn merge_restore(&self, older: &Value, newer: &Value) -> Value {
        super::lockdown::merge(older, newer)
    }

    fn tags(&self, observed: &Observed) -> Option<Map<String, Value>> {
        Some(observed.tags.clone())
    }

    async fn observe(
        &self,
        az: &Clients,
        _obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let account = az.arm.get(&t.id, STORAGE_API).await?;
        let mut service = az.arm.get(&blob_service(&t.id), STORAGE_API).await?;
        Ok(Observed {
            tags: super::tags_of(&account),
            blob_service: service["properties"].take(),
        })
    }

    fn assess(
        &self,
        obj: &Self::K,
        t: &ResourceId,
        o: &Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let patch = desired_patch(&obj.spec, &o.blob_service);
        if patch.is_empty() {
            return Ok(Assessment {
                message: summary(&o.blob_service),
                ..Default::default()
            });
        }
        Ok(super::lockdown::lock(
            patch,
            status.restore.as_ref(),
            &o.blob_service,
            |p, what| put_step(&t.id, &o.blob_service, p, what),
        ))
    }

    fn release(&self, _obj: &Self::K, t: &ResourceId, o: &Observed, restore: &Value) -> Vec<Step> {
        let patch = super::lockdown::release_patch(&o.blob_service, restore, absent, same);
        super::lockdown::unlock(patch, |p, what| put_step(&t.id, &o.blob_service, p, what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(blob: u32, container: u32) -> StorageSoftDeleteProtectionSpec {
        serde_json::from_value(json!({
            "target": {"resourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a"},
            "blobRetentionDays": blob, "containerRetentionDays": container
        }))
        .unwrap()
    }

    #[test]
    fn turns_soft_delete_on_and_never_shortens_a_longer_retention() {
        let off = json!({"cors": {"corsRules": [{"allowedOrigins": ["https://a.example"]}]},
            "deleteRetentionPolicy": {"enabled": false},
            "containerDeleteRetentionPolicy": {"enabled": true, "days": 30}});
        let patch = desired_patch(&spec(14, 14), &off);
        assert_eq!(
            Value::Object(patch.clone()),
            json!({"deleteRetentionPolicy": {"enabled": true, "days": 14}})
        );
        // The PUT carries everything else as read (CORS survives).
        let step = put_step("/acct", &off, patch, "x".into());
        let body = step.body.unwrap();
        assert_eq!(body["properties"]["cors"], off["cors"]);
        assert_eq!(
            body["properties"]["containerDeleteRetentionPolicy"]["days"],
            30
        );
        assert_eq!(step.method, "PUT");
        assert_eq!(step.path, "/acct/blobServices/default");
        // Too short: raised to N; longer: kept.
        let short = json!({"deleteRetentionPolicy": {"enabled": true, "days": 3},
            "containerDeleteRetentionPolicy": {"enabled": true, "days": 60}});
        assert_eq!(
            Value::Object(desired_patch(&spec(7, 30), &short)),
            json!({"deleteRetentionPolicy": {"enabled": true, "days": 7}})
        );
        assert!(desired_patch(&spec(3, 60), &short).is_empty());
    }

    #[test]
    fn permanent_delete_allowed_is_not_compliant() {
        let purgeable = json!({"deleteRetentionPolicy": {"enabled": true, "days": 30, "allowPermanentDelete": true},
            "containerDeleteRetentionPolicy": {"enabled": true, "days": 30}});
        assert_eq!(
            Value::Object(desired_patch(&spec(14, 14), &purgeable)),
            json!({"deleteRetentionPolicy": {"enabled": true, "days": 30, "allowPermanentDelete": false}})
        );
    }

    #[test]
    fn release_puts_back_the_recorded_policies_only_where_they_differ() {
        let before = json!({"deleteRetentionPolicy": {"enabled": false}});
        let patch = desired_patch(&spec(14, 14), &before);
        let record = super::super::lockdown::record(None, &patch, &before);
        assert_eq!(
            record["prior"],
            json!({"deleteRetentionPolicy": {"enabled": false}, "containerDeleteRetentionPolicy": null})
        );
        let after = json!({"deleteRetentionPolicy": {"enabled": true, "days": 14},
            "containerDeleteRetentionPolicy": {"enabled": true, "days": 14}});
        let back = super::super::lockdown::release_patch(&after, &record, absent, same);
        assert_eq!(
            Value::Object(back),
            json!({"deleteRetentionPolicy": {"enabled": false}, "containerDeleteRetentionPolicy": {"enabled": false}})
        );
        // Someone already turned it off again: nothing to send for that policy.
        let half = json!({"deleteRetentionPolicy": {"enabled": false, "days": 14},
            "containerDeleteRetentionPolicy": {"enabled": true, "days": 14}});
        let back = super::super::lockdown::release_patch(&half, &record, absent, same);
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            ["containerDeleteRetentionPolicy"]
        );
    }
}
