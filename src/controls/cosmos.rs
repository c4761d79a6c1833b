//! Cosmos DB: CosmosKeyRotation (one long-running regenerateKey per key kind, in order; evidence
//! `keysMetadata.*.generationTime`) and CosmosPublicAccessLockdown (long-running PATCH of the
//! owned network fields, recorded and restored).

use serde_json::{Map, Value, json};

use super::lockdown;
use super::rotation::{self, Times};
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::cosmos::{
    CosmosKeyKind, CosmosKeyRotation, CosmosNetworkAccess, CosmosPublicAccessLockdown,
    CosmosPublicAccessLockdownSpec,
};
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

pub const COSMOS_API: &str = "2024-05-15";
const COSMOS_TYPE: &str = "Microsoft.DocumentDB/databaseAccounts";

crate::impl_kind!(CosmosKeyRotation, action, schedule = schedule);
crate::impl_kind!(CosmosPublicAccessLockdown, status: s => s);

pub fn key_kind(k: CosmosKeyKind) -> &'static str {
    match k {
        CosmosKeyKind::Primary => "primary",
        CosmosKeyKind::Secondary => "secondary",
        CosmosKeyKind::PrimaryReadonly => "primaryReadonly",
        CosmosKeyKind::SecondaryReadonly => "secondaryReadonly",
    }
}

/// `keysMetadata` field of a key kind.
fn metadata_field(kind: &str) -> String {
    format!("{kind}MasterKey")
}

fn regenerate_what(kind: &str) -> String {
    format!("regenerate {kind} key")
}

#[derive(Default)]
pub struct CosmosKeyRotationControl;

#[async_trait::async_trait]
impl Control for CosmosKeyRotationControl {
    type K = CosmosKeyRotation;
    type Observed = Times;
    const RESOURCE_TYPE: &'static str = COSMOS_TYPE;
    const DEFAULT_RELEASE: Option<ReleasePolicy> = None;
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.DocumentDB/databaseAccounts/read",
        "Microsoft.DocumentDB/databaseAccounts/regenerateKey/action",
        // Polling the operation (its URL is at subscription scope, outside the account).
        "Microsoft.DocumentDB/locations/operationsStatus/read",
    ];

    async fn observe(
        &self,
        az: &Clients,
        _obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Times, AzureError> {
        let acct = az.arm.get(&t.id, COSMOS_API).await?;
        let md = &acct["properties"]["keysMetadata"];
        Ok([
            "primary",
            "secondary",
            "primaryReadonly",
            "secondaryReadonly",
        ]
        .iter()
        .filter_map(|k| {
            let t = md[metadata_field(k)]["generationTime"].as_str()?;
            Some((k.to_string(), t.to_string()))
        })
        .collect())
    }

    fn evidence(&self, observed: &Times) -> Value {
        super::rotation::evidence(observed)
    }

    fn assess(
        &self,
        obj: &Self::K,
        t: &ResourceId,
        o: &Times,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let kinds: Vec<&str> = obj.spec.key_kinds.iter().map(|k| key_kind(*k)).collect();
        let todo = rotation::pending(&kinds, o, status, regenerate_what);
        // One at a time: the account takes one update at a time, and each is a long-running
        // operation that the engine polls to the end before the next.
        let steps: Vec<Step> = todo
            .iter()
            .map(|k| {
                Step::action(
                    format!("{}/regenerateKey", t.id),
                    COSMOS_API,
                    Some(json!({"keyKind": k})),
                )
                .lro()
                .what(regenerate_what(k))
            })
            .collect();
        let message = if steps.is_empty() {
            let times: Vec<String> = kinds
                .iter()
                .map(|k| {
                    format!(
                        "{k} generated {}",
                        o.get(*k).map(String::as_str).unwrap_or("(unknown)")
                    )
                })
                .collect();
            format!("rotated: {}", times.join(", "))
        } else {
            format!("to rotate: {}", todo.join(", "))
        };
        let wait = if steps.is_empty() {
            rotation::awaiting_evidence(&kinds, o, status, regenerate_what)
        } else {
            None
        };
        Ok(Assessment {
            steps,
            message,
            wait,
            ..Default::default()
        })
    }
}

fn same_ip_rules(a: &Value, b: &Value) -> bool {
    lockdown::values_of(a, "ipAddressOrRange") == lockdown::values_of(b, "ipAddressOrRange")
}

/// The properties to PATCH (only those that differ); empty when compliant.
pub fn desired_patch(spec: &CosmosPublicAccessLockdownSpec, props: &Value) -> Map<String, Value> {
    let mut patch = Map::new();
    match spec.public_network_access {
        CosmosNetworkAccess::Disabled => {
            if props["publicNetworkAccess"].as_str() != Some("Disabled") {
                patch.insert("publicNetworkAccess".into(), json!("Disabled"));
            }
        }
        CosmosNetworkAccess::Restricted => {
            let allowed: Value = spec
                .allowed_ip_ranges
                .iter()
                .flatten()
                .map(|r| json!({"ipAddressOrRange": r}))
                .collect();
            if !same_ip_rules(&props["ipRules"], &allowed) {
                patch.insert("ipRules".into(), allowed);
            }
            // Disabled (or perimeter-secured) admits less than an allow-list: containment never
            // widens it to Enabled.
        }
    }
    if spec.disable_local_auth && !props["disableLocalAuth"].as_bool().unwrap_or(false) {
        patch.insert("disableLocalAuth".into(), json!(true));
    }
    patch
}

fn absent(field: &str) -> Value {
    match field {
        "publicNetworkAccess" => json!("Enabled"),
        "ipRules" => json!([]),
        _ => json!(false),
    }
}

pub fn release_patch(props: &Value, restore: &Value) -> Map<String, Value> {
    lockdown::release_patch(props, restore, absent, |f, prior, now| {
        if f == "ipRules" {
            same_ip_rules(prior, now)
        } else {
            prior == now
        }
    })
}

fn patch_step(account: &str, patch: Map<String, Value>, what: String) -> Step {
    Step::patch(
        account.to_string(),
        COSMOS_API,
        json!({"properties": patch}),
    )
    .lro()
    .what(what)
}

#[derive(Default)]
pub struct CosmosPublicAccessLockdownControl;

#[async_trait::async_trait]
impl Control for CosmosPublicAccessLockdownControl {
    type K = CosmosPublicAccessLockdown;
    type Observed = Value;
    const RESOURCE_TYPE: &'static str = COSMOS_TYPE;
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const SHARED_OBSERVATION: bool = true;
    const COMPOSES: bool = true;
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.DocumentDB/databaseAccounts/read",
        "Microsoft.DocumentDB/databaseAccounts/write",
        "Microsoft.DocumentDB/locations/operationsStatus/read",
    ];

    /// Disabled over an allow-list; local auth off if any of them turns it off.
    fn compose(&self, acc: &mut Self::K, other: &Self::K) -> Result<(), String> {
        let rank = |p: CosmosNetworkAccess| match p {
            CosmosNetworkAccess::Restricted => 1,
            CosmosNetworkAccess::Disabled => 2,
        };
        let (a, b) = (&mut acc.spec, &other.spec);
        if lockdown::stricter_access(
            (rank(a.public_network_access), a.allowed_ip_ranges.as_ref()),
            (rank(b.public_network_access), b.allowed_ip_ranges.as_ref()),
            1,
        )? {
            a.public_network_access = b.public_network_access;
            a.allowed_ip_ranges = b.allowed_ip_ranges.clone();
        }
        a.disable_local_auth |= b.disable_local_auth;
        Ok(())
    }

    fn merge_restore(&self, older: &Value, newer: &Value) -> Value {
        lockdown::merge(older, newer)
    }

    async fn observe(
        &self,
        az: &Clients,
        _obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Value, AzureError> {
        Ok(az.arm.get(&t.id, COSMOS_API).await?["properties"].take())
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
            let mut m = match obj.spec.public_network_access {
                CosmosNetworkAccess::Disabled => "public network access Disabled".to_string(),
                CosmosNetworkAccess::Restricted => format!(
                    "public network access limited to {} range(s)",
                    obj.spec
                        .allowed_ip_ranges
                        .as_ref()
                        .map(Vec::len)
                        .unwrap_or(0)
                ),
            };
            if obj.spec.disable_local_auth {
                m.push_str(", local (key) auth disabled");
            }
            return Ok(Assessment {
                message: m,
                ..Default::default()
            });
        }
        let mut a = lockdown::lock(patch, status.restore.as_ref(), props, |p, what| {
            patch_step(&t.id, p, what)
        });
        // isVirtualNetworkFilterEnabled is recorded with the rest, for the record.
        if let Some(r) = a.record.as_mut()
            && r["prior"].get("isVirtualNetworkFilterEnabled").is_none()
        {
            r["prior"]["isVirtualNetworkFilterEnabled"] =
                props["isVirtualNetworkFilterEnabled"].clone();
        }
        Ok(a)
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

    fn spec(v: Value) -> CosmosPublicAccessLockdownSpec {
        let mut base = json!({"target": {"resourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.DocumentDB/databaseAccounts/c"}});
        for (k, x) in v.as_object().unwrap() {
            base[k] = x.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn open() -> Value {
        json!({"publicNetworkAccess": "Enabled", "ipRules": [], "isVirtualNetworkFilterEnabled": false, "disableLocalAuth": false})
    }

    #[test]
    fn disabled_and_restricted_patches() {
        assert_eq!(
            Value::Object(desired_patch(&spec(json!({})), &open())),
            json!({"publicNetworkAccess": "Disabled"})
        );
        let r = spec(
            json!({"publicNetworkAccess": "Restricted", "allowedIpRanges": ["203.0.113.0/24"], "disableLocalAuth": true}),
        );
        assert_eq!(
            Value::Object(desired_patch(&r, &open())),
            json!({"ipRules": [{"ipAddressOrRange": "203.0.113.0/24"}], "disableLocalAuth": true})
        );
        let done = json!({"publicNetworkAccess": "Enabled", "ipRules": [{"ipAddressOrRange": "203.0.113.0/24"}], "disableLocalAuth": true});
        assert!(desired_patch(&r, &done).is_empty());
        let mut closed = done.clone();
        closed["publicNetworkAccess"] = json!("Disabled");
        assert!(
            desired_patch(&r, &closed).is_empty(),
            "Restricted must not open a Disabled endpoint"
        );
    }

    #[test]
    fn release_restores_whole_arrays() {
        let restore = json!({"prior": {"ipRules": [], "disableLocalAuth": false}, "owned": ["ipRules", "disableLocalAuth"]});
        let now =
            json!({"ipRules": [{"ipAddressOrRange": "203.0.113.0/24"}], "disableLocalAuth": true});
        assert_eq!(
            Value::Object(release_patch(&now, &restore)),
            json!({"ipRules": [], "disableLocalAuth": false})
        );
    }
}
