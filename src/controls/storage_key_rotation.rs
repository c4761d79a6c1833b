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
use crate::azure::{ArmRequest, AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Ctx, FIELD_MANAGER, RunError, Stall, Step};

crate::impl_kind!(StorageKeyRotation, action, schedule = schedule);

pub fn key_name(k: StorageKey) -> &'static str {
    match k {
        StorageKey::Key1 => "key1",
        StorageKey::Key2 => "key2",
        StorageKey::Kerb1 => "kerb1",
        StorageKey::Kerb2 => "kerb2",
    }
}

pub type Observed = super::rotation::Times;

/// `properties.keyCreationTime` of an account (key1, key2; Kerberos keys have no entry).
pub fn key_creation_times(account: &Value) -> Observed {
    account["properties"]["keyCreationTime"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

pub fn regenerate_what(key: &str) -> String {
    format!("regenerate {key}")
}

#[derive(Default)]
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
    // key1/key2 without publishTo never list keys.
    const ACTION_VARIANTS: &'static [(&'static str, &'static [&'static str])] = &[(
        "AccountKeysOnly",
        &[
            "Microsoft.Storage/storageAccounts/read",
            "Microsoft.Storage/storageAccounts/regeneratekey/action",
        ],
    )];

    async fn observe(
        &self,
        az: &Clients,
        obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let acct = az.arm.get(&t.id, STORAGE_API).await?;
        let mut out = key_creation_times(&acct);
        // keyCreationTime has no Kerberos entries; their creationTime is only in listKeys.
        if obj
            .spec
            .keys
            .iter()
            .any(|k| matches!(k, StorageKey::Kerb1 | StorageKey::Kerb2))
        {
            for k in list_keys(&az.arm, t, true).await? {
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
        super::rotation::evidence(observed)
    }

    /// `publishTo` in another namespace needs the policy's `secretNamespaces` (and the chart's
    /// `secretNamespaces` for RBAC).
    fn secret_namespaces(&self, obj: &Self::K) -> Vec<String> {
        obj.spec
            .publish_to
            .as_ref()
            .map(|p| p.namespace.clone().or_else(|| obj.namespace()))
            .into_iter()
            .flatten()
            .collect()
    }

    fn assess(
        &self,
        obj: &Self::K,
        t: &ResourceId,
        o: &Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let names: Vec<&str> = obj.spec.keys.iter().map(|k| key_name(*k)).collect();
        let todo = super::rotation::pending(&names, o, status, regenerate_what);
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
        let wait = if steps.is_empty() {
            super::rotation::awaiting_evidence(&names, o, status, regenerate_what)
        } else {
            None
        };
        Ok(Assessment {
            wait,
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
        az: &Clients,
        obj: &Self::K,
        t: &ResourceId,
        _run: &crate::api::common::ActionLedger,
    ) -> Result<(), RunError> {
        let Some(p) = &obj.spec.publish_to else {
            return Ok(());
        };
        let wanted: Vec<&str> = obj.spec.keys.iter().map(|k| key_name(*k)).collect();
        let kerb = wanted.iter().any(|k| k.starts_with("kerb"));
        let mut data = BTreeMap::new();
        for k in list_keys(&az.arm, t, kerb).await? {
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
        .await
        .map_err(|e| {
            AzureError::from_secret_access(e, format!("PATCH Secret {ns}/{}", p.secret_name))
        })?;
        Ok(())
    }
}

async fn list_keys(
    arm: &crate::azure::Arm,
    t: &ResourceId,
    kerb: bool,
) -> Result<Vec<Value>, AzureError> {
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
