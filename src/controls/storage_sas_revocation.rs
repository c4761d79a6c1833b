//! StorageSasRevocation: revokeUserDelegationKeys once per trigger (it leaves no evidence, so the
//! acknowledged call in the ledger is the proof); with `rotateAccountKeys`, key1 and key2 are
//! rotated too (evidence: keyCreationTime), the only way to invalidate account and service SAS.
//! The status says exactly which SAS kinds are now invalid.

use serde_json::{Value, json};

use super::rotation::{self, Times};
use super::storage_key_rotation::regenerate_what;
use super::storage_public_access::STORAGE_API;
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::storage::StorageSasRevocation;
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

impl crate::engine::Kind for StorageSasRevocation {
    fn common(&self) -> std::borrow::Cow<'_, crate::api::common::CommonSpec> {
        std::borrow::Cow::Borrowed(&self.spec.common)
    }
    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
    fn trigger(&self) -> Option<&str> {
        self.spec.trigger.as_deref()
    }
}

pub const REVOKE: &str = "revoke user delegation keys";
const ACCOUNT_KEYS: [&str; 2] = ["key1", "key2"];

/// `sasStatus`: which SAS kinds this run has invalidated.
pub fn sas_status(revoked: bool, keys_rotated: bool) -> Value {
    let state = |b: bool| if b { "Revoked" } else { "StillValid" };
    json!({
        "userDelegation": state(revoked),
        "account": state(keys_rotated),
        "service": state(keys_rotated),
    })
}

pub fn plan(account: &str, rotate: bool, observed: &Times, status: &CommonStatus) -> Assessment {
    let mut steps = Vec::new();
    let revoked = status.action.is_some() && rotation::acknowledged(status, REVOKE);
    if !revoked {
        steps.push(
            Step::action(
                format!("{account}/revokeUserDelegationKeys"),
                STORAGE_API,
                None,
            )
            .what(REVOKE),
        );
    }
    let todo = if rotate {
        rotation::pending(&ACCOUNT_KEYS, observed, status, regenerate_what)
    } else {
        Vec::new()
    };
    for k in &todo {
        steps.push(
            Step::action(
                format!("{account}/regenerateKey"),
                STORAGE_API,
                Some(json!({"keyName": k})),
            )
            .what(regenerate_what(k)),
        );
    }
    let keys_rotated = rotate && todo.is_empty() && status.action.is_some();
    let mut extra = serde_json::Map::new();
    extra.insert("sasStatus".into(), sas_status(revoked, keys_rotated));
    let message = if !steps.is_empty() {
        format!("{} call(s) to make", steps.len())
    } else if keys_rotated {
        "user-delegation, account and service SAS are invalid (delegation keys revoked, key1 and key2 rotated)".into()
    } else {
        "user-delegation SAS are invalid; account and service SAS stay valid until they expire (set rotateAccountKeys to rotate key1 and key2)".into()
    };
    let wait = if steps.is_empty() && rotate {
        rotation::awaiting_evidence(&ACCOUNT_KEYS, observed, status, regenerate_what)
    } else {
        None
    };
    Assessment {
        steps,
        message,
        extra,
        wait,
        ..Default::default()
    }
}

#[derive(Default)]
pub struct StorageSasRevocationControl;

#[async_trait::async_trait]
impl Control for StorageSasRevocationControl {
    type K = StorageSasRevocation;
    type Observed = Times;
    const RESOURCE_TYPE: &'static str = "Microsoft.Storage/storageAccounts";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = None;
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Storage/storageAccounts/read",
        "Microsoft.Storage/storageAccounts/revokeUserDelegationKeys/action",
        // rotateAccountKeys only.
        "Microsoft.Storage/storageAccounts/regeneratekey/action",
    ];
    const ACTION_VARIANTS: &'static [(&'static str, &'static [&'static str])] = &[(
        "DelegationKeysOnly",
        &[
            "Microsoft.Storage/storageAccounts/read",
            "Microsoft.Storage/storageAccounts/revokeUserDelegationKeys/action",
        ],
    )];

    async fn observe(
        &self,
        az: &Clients,
        _obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Times, AzureError> {
        let acct = az.arm.get(&t.id, STORAGE_API).await?;
        Ok(super::storage_key_rotation::key_creation_times(&acct))
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
        Ok(plan(&t.id, obj.spec.rotate_account_keys, o, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{ActionLedger, ActionPhase};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn status(done: &[&str]) -> CommonStatus {
        CommonStatus {
            action: Some(ActionLedger {
                run_id: "created".into(),
                phase: ActionPhase::InProgress,
                started_time: Time(jiff::Timestamp::UNIX_EPOCH),
                completed_time: None,
                evidence: Some(
                    json!({"before": {"key1": "2024-01-01T00:00:00Z", "key2": "2024-01-01T00:00:00Z"}}),
                ),
                done: done.iter().map(|s| s.to_string()).collect(),
                sent: Vec::new(),
            }),
            ..Default::default()
        }
    }

    fn times(t: &str) -> Times {
        Times::from([("key1".into(), t.into()), ("key2".into(), t.into())])
    }

    #[test]
    fn revoke_only_reports_account_and_service_sas_still_valid() {
        let a = plan("/acct", false, &times("2024-01-01T00:00:00Z"), &status(&[]));
        assert_eq!(a.steps.len(), 1);
        assert!(a.steps[0].path.ends_with("/revokeUserDelegationKeys"));
        let done = plan(
            "/acct",
            false,
            &times("2024-01-01T00:00:00Z"),
            &status(&[REVOKE]),
        );
        assert!(done.steps.is_empty());
        assert_eq!(
            done.extra["sasStatus"],
            json!({"userDelegation": "Revoked", "account": "StillValid", "service": "StillValid"})
        );
    }

    #[test]
    fn rotating_both_keys_invalidates_every_kind() {
        let a = plan("/acct", true, &times("2024-01-01T00:00:00Z"), &status(&[]));
        assert_eq!(a.steps.len(), 3);
        let done = plan(
            "/acct",
            true,
            &times("2026-11-23T00:00:00Z"),
            &status(&[REVOKE]),
        );
        assert!(done.steps.is_empty());
        assert_eq!(
            done.extra["sasStatus"],
            json!({"userDelegation": "Revoked", "account": "Revoked", "service": "Revoked"})
        );
    }
}
