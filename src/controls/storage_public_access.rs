//! StoragePublicAccessLockdown: PATCH only the account properties this containment owns, after
//! recording their previous values (networkAcls as a whole: its arrays are replaced, not merged).

use serde_json::{Map, Value, json};

use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::storage::{
    PublicNetworkAccess, StoragePublicAccessLockdown, StoragePublicAccessLockdownSpec,
};
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

pub const STORAGE_API: &str = "2023-05-01";

crate::impl_kind!(StoragePublicAccessLockdown, status: s => s);

fn allow_list(ranges: &[String]) -> Value {
    Value::Array(
        ranges
            .iter()
            .map(|r| json!({"value": r, "action": "Allow"}))
            .collect(),
    )
}

fn same_ip_rules(a: &Value, b: &Value) -> bool {
    super::lockdown::values_of(a, "value") == super::lockdown::values_of(b, "value")
}

/// The properties to PATCH (only those that differ); empty when compliant.
pub fn desired_patch(spec: &StoragePublicAccessLockdownSpec, props: &Value) -> Map<String, Value> {
    let mut patch = Map::new();
    if spec.disable_anonymous_blob_access
        && props["allowBlobPublicAccess"].as_bool().unwrap_or(false)
    {
        patch.insert("allowBlobPublicAccess".into(), json!(false));
    }
    match spec.public_network_access {
        PublicNetworkAccess::Disabled => {
            if props["publicNetworkAccess"].as_str() != Some("Disabled") {
                patch.insert("publicNetworkAccess".into(), json!("Disabled"));
            }
        }
        PublicNetworkAccess::Restricted => {
            let allowed = allow_list(spec.allowed_ip_ranges.as_deref().unwrap_or_default());
            let acls = &props["networkAcls"];
            if acls["defaultAction"].as_str() != Some("Deny")
                || !same_ip_rules(&acls["ipRules"], &allowed)
            {
                let mut next = acls.as_object().cloned().unwrap_or_default();
                next.insert("defaultAction".into(), json!("Deny"));
                next.insert("ipRules".into(), allowed);
                next.entry("bypass").or_insert(json!("AzureServices"));
                patch.insert("networkAcls".into(), Value::Object(next));
            }
            // An endpoint that is Disabled admits nothing, which is stricter than an allow-list:
            // containment never opens it (the ACL is in place should someone enable it).
        }
        PublicNetworkAccess::Unchanged => {}
    }
    if spec.disable_shared_key_access && props["allowSharedKeyAccess"].as_bool().unwrap_or(true) {
        patch.insert("allowSharedKeyAccess".into(), json!(false));
    }
    patch
}

/// Azure's documented meaning of an absent property, so release can send a concrete value.
fn absent_equivalent(field: &str) -> Value {
    match field {
        "allowBlobPublicAccess" => json!(false),
        "allowSharedKeyAccess" => json!(true),
        "publicNetworkAccess" => json!("Enabled"),
        _ => {
            json!({"defaultAction": "Allow", "bypass": "AzureServices", "ipRules": [], "virtualNetworkRules": []})
        }
    }
}

pub fn release_patch(props: &Value, restore: &Value) -> Map<String, Value> {
    super::lockdown::release_patch(props, restore, absent_equivalent, |f, prior, now| {
        if f == "networkAcls" {
            prior["defaultAction"] == now["defaultAction"]
                && same_ip_rules(&prior["ipRules"], &now["ipRules"])
        } else {
            prior == now
        }
    })
}

fn patch_step(account: &str, patch: Map<String, Value>, what: String) -> Step {
    Step::patch(
        account.to_string(),
        STORAGE_API,
        json!({"properties": patch}),
    )
    .what(what)
}

#[derive(Default)]
pub struct StoragePublicAccessLockdownControl;

#[async_trait::async_trait]
impl Control for StoragePublicAccessLockdownControl {
    type K = StoragePublicAccessLockdown;
    type Observed = Value;
    const RESOURCE_TYPE: &'static str = "Microsoft.Storage/storageAccounts";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const SHARED_OBSERVATION: bool = true;
    const COMPOSES: bool = true;
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Storage/storageAccounts/read",
        "Microsoft.Storage/storageAccounts/write",
    ];

    /// Every lever any of them pulls; the strictest network access.
    fn compose(&self, acc: &mut Self::K, other: &Self::K) -> Result<(), String> {
        let rank = |p: PublicNetworkAccess| match p {
            PublicNetworkAccess::Unchanged => 0,
            PublicNetworkAccess::Restricted => 1,
            PublicNetworkAccess::Disabled => 2,
        };
        let (a, b) = (&mut acc.spec, &other.spec);
        if super::lockdown::stricter_access(
            (rank(a.public_network_access), a.allowed_ip_ranges.as_ref()),
            (rank(b.public_network_access), b.allowed_ip_ranges.as_ref()),
            1,
        )? {
            a.public_network_access = b.public_network_access;
            a.allowed_ip_ranges = b.allowed_ip_ranges.clone();
        }
        a.disable_anonymous_blob_access |= b.disable_anonymous_blob_access;
        a.disable_shared_key_access |= b.disable_shared_key_access;
        Ok(())
    }

    fn merge_restore(&self, older: &Value, newer: &Value) -> Value {
        super::lockdown::merge(older, newer)
    }

    async fn observe(
        &self,
        az: &Clients,
        _obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Value, AzureError> {
        Ok(az.arm.get(&t.id, STORAGE_API).await?["properties"].take())
    }

    fn assess(
        &self,
        obj: &Self::K,
        t: &ResourceId,
        props: &Value,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let patch = desired_patch(&obj.spec, props);
        if patch.is_empty() {
            let mut parts = Vec::new();
            if obj.spec.disable_anonymous_blob_access {
                parts.push("anonymous blob access off".to_string());
            }
            match obj.spec.public_network_access {
                PublicNetworkAccess::Disabled => {
                    parts.push("public network access Disabled".into())
                }
                PublicNetworkAccess::Restricted => parts.push(format!(
                    "network ACL deny-by-default, {} allowed range(s)",
                    obj.spec
                        .allowed_ip_ranges
                        .as_ref()
                        .map(Vec::len)
                        .unwrap_or(0)
                )),
                PublicNetworkAccess::Unchanged => {}
            }
            if obj.spec.disable_shared_key_access {
                parts.push("shared key access off".into());
            }
            return Ok(Assessment {
                message: parts.join(", "),
                ..Default::default()
            });
        }
        Ok(super::lockdown::lock(
            patch,
            status.restore.as_ref(),
            props,
            |p, what| patch_step(&t.id, p, what),
        ))
    }

    fn release(&self, _obj: &Self::K, t: &ResourceId, props: &Value, restore: &Value) -> Vec<Step> {
        super::lockdown::unlock(release_patch(props, restore), |p, what| {
            patch_step(&t.id, p, what)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> StoragePublicAccessLockdownSpec {
        let mut base = json!({"target": {"resourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/a"}});
        for (k, x) in v.as_object().unwrap() {
            base[k] = x.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn open() -> Value {
        json!({"allowBlobPublicAccess": true, "publicNetworkAccess": "Enabled", "allowSharedKeyAccess": true,
               "networkAcls": {"defaultAction": "Allow", "bypass": "AzureServices", "ipRules": [], "virtualNetworkRules": []}})
    }

    #[test]
    fn defaults_close_blob_access_and_public_network() {
        let p = desired_patch(&spec(json!({})), &open());
        assert_eq!(
            Value::Object(p),
            json!({"allowBlobPublicAccess": false, "publicNetworkAccess": "Disabled"})
        );
        let closed = json!({"allowBlobPublicAccess": false, "publicNetworkAccess": "Disabled"});
        assert!(desired_patch(&spec(json!({})), &closed).is_empty());
        // Absent allowBlobPublicAccess means false: compliant.
        assert!(
            desired_patch(
                &spec(json!({})),
                &json!({"publicNetworkAccess": "Disabled"})
            )
            .is_empty()
        );
    }

    #[test]
    fn restricted_sets_deny_acl_and_keeps_other_acl_parts() {
        let s = spec(
            json!({"publicNetworkAccess": "Restricted", "allowedIpRanges": ["198.51.100.0/24"], "disableAnonymousBlobAccess": false}),
        );
        let mut props = open();
        props["networkAcls"]["virtualNetworkRules"] = json!([{"id": "subnet-1"}]);
        let p = desired_patch(&s, &props);
        assert_eq!(p["networkAcls"]["defaultAction"], "Deny");
        assert_eq!(
            p["networkAcls"]["ipRules"],
            json!([{"value": "198.51.100.0/24", "action": "Allow"}])
        );
        assert_eq!(
            p["networkAcls"]["virtualNetworkRules"],
            json!([{"id": "subnet-1"}])
        );
        assert!(!p.contains_key("publicNetworkAccess"));
        // A Disabled endpoint is stricter than any allow-list: never Enabled by a lockdown.
        let mut closed = open();
        closed["publicNetworkAccess"] = json!("Disabled");
        let p = desired_patch(&s, &closed);
        assert!(!p.contains_key("publicNetworkAccess"), "{p:?}");
        assert_eq!(p["networkAcls"]["defaultAction"], "Deny");
    }

    #[test]
    fn release_patches_recorded_values_only_where_they_differ() {
        let restore = json!({"prior": {"allowBlobPublicAccess": true, "publicNetworkAccess": "Enabled"}, "owned": ["allowBlobPublicAccess", "publicNetworkAccess"]});
        let now = json!({"allowBlobPublicAccess": false, "publicNetworkAccess": "Disabled", "allowSharedKeyAccess": false});
        let p = release_patch(&now, &restore);
        assert_eq!(
            Value::Object(p),
            json!({"allowBlobPublicAccess": true, "publicNetworkAccess": "Enabled"})
        );
        assert!(release_patch(&open(), &restore).is_empty());
        // A field absent before is restored to its documented equivalent.
        let r2 =
            json!({"prior": {"allowSharedKeyAccess": null}, "owned": ["allowSharedKeyAccess"]});
        assert_eq!(
            release_patch(&now, &r2)["allowSharedKeyAccess"],
            json!(true)
        );
    }
}
