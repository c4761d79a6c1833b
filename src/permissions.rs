//! The least privilege the enabled kinds need: an Azure custom role (actions) plus Graph and
//! Defender for Endpoint application permissions.

use std::collections::BTreeSet;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::engine::{self, Control, Ctx};

#[derive(Debug)]
pub struct KindInfo {
    pub kind: &'static str,
    pub actions: &'static [&'static str],
    pub graph: &'static [&'static str],
    pub mde: &'static [&'static str],
}

/// The one list of kinds: their permissions and how to start their controller.
macro_rules! kinds {
    ($($kind:literal => $control:ty { graph: $graph:expr, mde: $mde:expr }),* $(,)?) => {
        /// Every kind this build serves.
        pub const KINDS: &[KindInfo] = &[
            $(KindInfo { kind: $kind, actions: <$control as Control>::ACTIONS, graph: $graph, mde: $mde }),*
        ];

        /// Start the controller of `kind` on `tasks`.
        pub fn spawn(
            kind: &str,
            tasks: &mut tokio::task::JoinSet<()>,
            cx: Arc<Ctx>,
            namespace: Option<String>,
            concurrency: u16,
        ) -> Result<(), String> {
            match kind {
                $($kind => { tasks.spawn(engine::run(<$control>::default(), cx, namespace, concurrency)); })*
                other => return Err(format!("kind {other} has no controller in this build")),
            }
            Ok(())
        }
    };
}

use crate::controls::{
    arc_isolation, cosmos, defender_alert, sql_ip_block, sql_public_access, storage_key_rotation,
    storage_public_access, storage_sas_revocation, threat_submission, waf,
};

kinds! {
    "SqlIpBlock" => sql_ip_block::SqlIpBlockControl { graph: &[], mde: &[] },
    "SqlPublicAccessLockdown" => sql_public_access::SqlPublicAccessLockdownControl { graph: &[], mde: &[] },
    "StorageKeyRotation" => storage_key_rotation::StorageKeyRotationControl { graph: &[], mde: &[] },
    "StoragePublicAccessLockdown" => storage_public_access::StoragePublicAccessLockdownControl { graph: &[], mde: &[] },
    "StorageSasRevocation" => storage_sas_revocation::StorageSasRevocationControl { graph: &[], mde: &[] },
    "CosmosKeyRotation" => cosmos::CosmosKeyRotationControl { graph: &[], mde: &[] },
    "CosmosPublicAccessLockdown" => cosmos::CosmosPublicAccessLockdownControl { graph: &[], mde: &[] },
    "DefenderAlertState" => defender_alert::DefenderAlertStateControl { graph: &[], mde: &[] },
    "WafIpBlock" => waf::WafIpBlockControl { graph: &[], mde: &[] },
    "ArcIsolation" => arc_isolation::ArcIsolationControl { graph: &[], mde: &["Machine.Read.All", "Machine.Isolate"] },
    "ThreatSubmission" => threat_submission::ThreatSubmissionControl { graph: &["ThreatSubmission.ReadWrite.All"], mde: &[] },
}

/// Resolve `--kinds` (names, case-insensitive; empty = all) or say which name is unknown.
pub fn select(names: &[String]) -> Result<Vec<&'static KindInfo>, String> {
    if names.is_empty() {
        return Ok(KINDS.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            KINDS
                .iter()
                .find(|k| k.kind.eq_ignore_ascii_case(n.trim()))
                .ok_or_else(|| {
                    format!(
                        "--kinds: unknown kind {n:?}; known: {}",
                        KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
                    )
                })
        })
        .collect()
}

pub fn actions(kinds: &[&KindInfo]) -> Vec<String> {
    let set: BTreeSet<&str> = kinds
        .iter()
        .flat_map(|k| k.actions.iter().copied())
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// The document `containment-operator permissions` prints.
pub fn document(kinds: &[&KindInfo], scopes: &[String]) -> Value {
    let graph: BTreeSet<&str> = kinds.iter().flat_map(|k| k.graph.iter().copied()).collect();
    let mde: BTreeSet<&str> = kinds.iter().flat_map(|k| k.mde.iter().copied()).collect();
    json!({
        "azureCustomRole": {
            "Name": "containment-operator",
            "IsCustom": true,
            "Description": format!("Least privilege for containment-operator kinds: {}", kinds.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")),
            "Actions": actions(kinds),
            "NotActions": [],
            "DataActions": [],
            "NotDataActions": [],
            "AssignableScopes": scopes,
        },
        "graphApplicationPermissions": graph,
        "defenderForEndpointApplicationPermissions": mde,
        "perKind": kinds.iter().map(|k| json!({"kind": k.kind, "actions": k.actions, "graph": k.graph, "mde": k.mde})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_is_sorted_and_deduplicated() {
        let all = select(&[]).unwrap();
        let a = actions(&all);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(a, sorted);
        assert!(a.contains(&"Microsoft.Sql/servers/firewallRules/delete".to_string()));
        let one = select(&["sqlpublicaccesslockdown".into()]).unwrap();
        assert_eq!(
            actions(&one),
            vec!["Microsoft.Sql/servers/read", "Microsoft.Sql/servers/write"]
        );
        assert!(
            select(&["Nope".into()])
                .unwrap_err()
                .contains("unknown kind \"Nope\"")
        );
    }
}
