//! StorageKeyRotation: one regenerateKey per key per run. Intent and each key's creation time
//! are recorded before the first call; a key counts as rotated once Azure shows a newer
//! creation time (or acknowledged our call), so a crash or retry never rotates twice. Key values
//! go only to the optional `publishTo` Secret — never to status, events or logs.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::storage_public_access::STORAGE_API;
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::storage::{StorageKey, StorageKeyRotation};
use crate::azure::{Arm, ArmRequest, AzureError, ResourceId};
use crate::engine::{Assessment, Control, Ctx, FIELD_MANAGER, Kind, RunError, Stall, Step};

impl Kind for StorageKeyRotation {
    fn common(&self) -> &crate::api::common::CommonSpec {
        &self.spec.common
    }
    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref()
    }
    fn trigger(&self) -> Option<&str> {
        self.spec.trigger.as_deref()
    }
    fn schedule(&self) -> Option<&str> {
        self.spec.schedule.as_deref()
    }
}

pub fn key_name(k: StorageKey) -> &'static str {
    match k {
        StorageKey::Key1 => "key1",
        StorageKey::Key2 => "key2",
        StorageKey::Kerb1 => "kerb1",
        StorageKey::Kerb2 => "kerb2",
    }
}

/// Creation time per key name, as Azure reports it.
pub type Observed = BTreeMap<String, String>;

fn newer(now: Option<&String>, before: Option<&str>) -> bool {
    match (now, before) {
        (Some(n), Some(b)) => match (n.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
            (Ok(n), Ok(b)) => n > b,
            _ => n.as_str() != b,
        },
        (Some(_), None) => true,
        _ => false,
    }
}

fn regenerate_what(key: &str) -> String {
    format!("regenerate {key}")
}

/// The keys of this run still to rotate.
pub fn pending(
    keys: &[StorageKey],
    observed: &Observed,
    status: &CommonStatus,
) -> Vec<&'static str> {
    let ledger = status.action.as_ref();
    let before = ledger
        .and_then(|l| l.evidence.as_ref())
        .map(|e| &e["before"]);
    keys.iter()
        .map(|k| key_name(*k))
        .filter(|k| {
            let Some(before) = before else { return true };
            let acked = ledger.is_some_and(|l| l.done.iter().any(|d| d == &regenerate_what(k)));
            !acked && !newer(observed.get(*k), before[*k].as_str())
        })
        .collect()
}

pub struct StorageKeyRotationControl;

#[async_trait::async_trait]
impl Control for StorageKeyRotationControl {
    type K = StorageKeyRotation;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.Storage/storageAccounts";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = None;
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Storage/storageAccounts/read",
        "Microsoft.Storage/storageAccounts/regeneratekey/action",
        // Kerberos key evidence and publishTo only.
        "Microsoft.Storage/storageAccounts/listkeys/action",
    ];

    async fn observe(
        &self,
        arm: &Arm,
        obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let acct = arm.get(&t.id, STORAGE_API).await?;
        let mut out: Observed = acct["properties"]["keyCreationTime"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        // keyCreationTime has no Kerberos entries; their creationTime is only in listKeys.
        if obj
            .spec
            .keys
            .iter()
            .any(|k| matches!(k, StorageKey::Kerb1 | StorageKey::Kerb2))
        {
            for k in list_keys(arm, t, true).await? {
                if let (Some(n), Some(c)) = (k["keyName"].as_str(), k["creationTime"].as_str())
                    && n.starts_with("kerb")
                {
                    out.insert(n.to_string(), c.to_string());
                }
            }
        }
        Ok(out)
    }

    fn evidence(&self, observed: &Observed) -> Value {
        json!({ "before": observed })
    }

    fn assess(
        &self,
        obj: &Self::K,
        t: &ResourceId,
        o: &Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        if let Some(p) = &obj.spec.publish_to
            && p.namespace
                .as_deref()
                .is_some_and(|ns| Some(ns) != obj.namespace().as_deref())
        {
            return Err(Stall::new(
                "OutOfScope",
                format!(
                    "spec.publishTo.namespace {:?}: the new key can only be published in this resource's namespace",
                    p.namespace.as_deref().unwrap_or_default()
                ),
            ));
        }
        let todo = pending(&obj.spec.keys, o, status);
        let steps: Vec<Step> = todo
            .iter()
            .map(|k| {
                Step::action(
                    format!("{}/regenerateKey", t.id),
                    STORAGE_API,
                    Some(json!({"keyName": k})),
                )
                .what(regenerate_what(k))
            })
            .collect();
        let times: Vec<String> = obj
            .spec
            .keys
            .iter()
            .map(|k| {
                let n = key_name(*k);
                format!(
                    "{n} created {}",
                    o.get(n).map(String::as_str).unwrap_or("(unknown)")
                )
            })
            .collect();
        Ok(Assessment {
            message: if steps.is_empty() {
                format!("rotated: {}", times.join(", "))
            } else {
                format!("to rotate: {}", todo.join(", "))
            },
            steps,
            ..Default::default()
        })
    }

    async fn after_run(
        &self,
        cx: &Ctx,
        arm: &Arm,
        obj: &Self::K,
        t: &ResourceId,
    ) -> Result<(), RunError> {
        let Some(p) = &obj.spec.publish_to else {
            return Ok(());
        };
        let wanted: Vec<&str> = obj.spec.keys.iter().map(|k| key_name(*k)).collect();
        let kerb = wanted.iter().any(|k| k.starts_with("kerb"));
        let mut data = BTreeMap::new();
        for k in list_keys(arm, t, kerb).await? {
            if let (Some(n), Some(v)) = (k["keyName"].as_str(), k["value"].as_str())
                && wanted.contains(&n)
            {
                data.insert(n.to_string(), ByteString(v.as_bytes().to_vec()));
            }
        }
        let ns = obj.namespace().unwrap_or_default();
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(p.secret_name.clone()),
                namespace: Some(ns.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "containment-operator".to_string(),
                )])),
                annotations: Some(BTreeMap::from([(
                    "containment.defenderc2.io/source".to_string(),
                    format!("{}/{}", ns, obj.name_any()),
                )])),
                ..Default::default()
            },
            data: Some(data),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        let api: Api<Secret> = Api::namespaced(cx.client.clone(), &ns);
        api.patch(
            &p.secret_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
        Ok(())
    }
}

async fn list_keys(arm: &Arm, t: &ResourceId, kerb: bool) -> Result<Vec<Value>, AzureError> {
    let path = if kerb {
        format!("{}/listKeys?$expand=kerb", t.id)
    } else {
        format!("{}/listKeys", t.id)
    };
    let reply = arm
        .call(&ArmRequest {
            method: "POST",
            path: &path,
            api_version: Some(STORAGE_API),
            body: None,
            idempotent: true,
        })
        .await?;
    Ok(reply.body["keys"].as_array().cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{ActionLedger, ActionPhase};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn obs(k1: &str, k2: &str) -> Observed {
        BTreeMap::from([("key1".into(), k1.into()), ("key2".into(), k2.into())])
    }

    fn status_with(before: &Observed, done: &[&str]) -> CommonStatus {
        CommonStatus {
            action: Some(ActionLedger {
                run_id: "created".into(),
                phase: ActionPhase::InProgress,
                started_time: Time(jiff::Timestamp::UNIX_EPOCH),
                completed_time: None,
                evidence: Some(json!({"before": before})),
                done: done.iter().map(|s| s.to_string()).collect(),
            }),
            ..Default::default()
        }
    }

    const KEYS: [StorageKey; 2] = [StorageKey::Key1, StorageKey::Key2];
    const T0: &str = "2024-01-01T00:00:00.0000000Z";
    const T1: &str = "2026-11-23T10:00:00.1234567Z";

    #[test]
    fn evidence_decides_what_is_left() {
        let before = obs(T0, T0);
        assert_eq!(
            pending(&KEYS, &before, &status_with(&before, &[])),
            vec!["key1", "key2"]
        );
        // key1 rotated (newer creation time) before a crash: only key2 remains.
        assert_eq!(
            pending(&KEYS, &obs(T1, T0), &status_with(&before, &[])),
            vec!["key2"]
        );
        assert!(pending(&KEYS, &obs(T1, T1), &status_with(&before, &[])).is_empty());
        // Acknowledged by Azure but not yet visible in a (lagging) read: not repeated.
        assert_eq!(
            pending(&KEYS, &before, &status_with(&before, &["regenerate key1"])),
            vec!["key2"]
        );
    }

    #[test]
    fn without_a_ledger_everything_is_pending() {
        assert_eq!(
            pending(&KEYS, &obs(T1, T1), &CommonStatus::default()),
            vec!["key1", "key2"]
        );
    }
}
