//! The least privilege the enabled kinds need: an Azure custom role (actions) plus Graph and
//! Defender for Endpoint application permissions.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::kinds::{KindInfo, select};

/// One entry of `permissions --kinds`: a kind, or one variant of it (`WafIpBlock:FrontDoor`).
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub info: &'static KindInfo,
    pub variant: Option<&'static str>,
    pub actions: &'static [&'static str],
}

/// Resolve `permissions --kinds`: kinds as for [`select`], each optionally narrowed to one of
/// its variants with `:Variant` (case-insensitive).
pub fn grants(names: &[String]) -> Result<Vec<Grant>, String> {
    let (kinds, variants): (Vec<String>, Vec<Option<String>>) = names
        .iter()
        .map(|n| match n.split_once(':') {
            Some((k, v)) => (k.to_string(), Some(v.trim().to_string())),
            None => (n.clone(), None),
        })
        .unzip();
    let infos = select(&kinds)?;
    let variants: Vec<Option<String>> = if names.is_empty() {
        vec![None; infos.len()]
    } else {
        variants
    };
    infos
        .into_iter()
        .zip(variants)
        .map(|(info, v)| match v {
            None => Ok(Grant {
                info,
                variant: None,
                actions: info.actions,
            }),
            Some(v) => info
                .variants
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&v))
                .map(|(name, actions)| Grant {
                    info,
                    variant: Some(name),
                    actions,
                })
                .ok_or_else(|| {
                    let known: Vec<&str> = info.variants.iter().map(|(n, _)| *n).collect();
                    format!(
                        "--kinds: {} has no variant {v:?}; known: {}",
                        info.kind,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )
                }),
        })
        .collect()
}

pub fn actions(grants: &[Grant]) -> Vec<String> {
    let set: BTreeSet<&str> = grants
        .iter()
        .flat_map(|g| g.actions.iter().copied())
        .collect();
    set.into_iter().map(str::to_string).collect()
}

/// Application permissions that let their holder take over the tenant or widen its own reach
/// (Tier 0): `permissions` warns about each one it prints, with why.
pub const TIER0: &[(&str, &str)] = &[
    (
        "Policy.ReadWrite.Authorization",
        "rewrites the tenant-wide authorization policy (what every user may consent to, create or invite)",
    ),
    (
        "Application.ReadWrite.All",
        "can add credentials to any application, and so act as it",
    ),
    (
        "AppRoleAssignment.ReadWrite.All",
        "can grant any application permission to any app, this one included",
    ),
    (
        "Policy.ReadWrite.ConditionalAccess",
        "can switch off, loosen or rewrite every Conditional Access policy of the tenant",
    ),
    (
        "RoleManagement.ReadWrite.Directory",
        "can assign any directory role, Global Administrator included",
    ),
];

/// The document `containment-operator permissions` prints.
pub fn document(grants: &[Grant], scopes: &[String]) -> Value {
    let graph: BTreeSet<&str> = grants
        .iter()
        .flat_map(|g| g.info.graph.iter().copied())
        .collect();
    let mde: BTreeSet<&str> = grants
        .iter()
        .flat_map(|g| g.info.mde.iter().copied())
        .collect();
    let label = |g: &Grant| match g.variant {
        Some(v) => format!("{}:{v}", g.info.kind),
        None => g.info.kind.to_string(),
    };
    json!({
        "azureCustomRole": {
            "Name": "containment-operator",
            "IsCustom": true,
            "Description": format!("Least privilege for containment-operator kinds: {}", grants.iter().map(label).collect::<Vec<_>>().join(", ")),
            "Actions": actions(grants),
            "NotActions": [],
            "DataActions": [],
            "NotDataActions": [],
            "AssignableScopes": scopes,
        },
        "graphApplicationPermissions": graph,
        "defenderForEndpointApplicationPermissions": mde,
        "warnings": TIER0.iter().filter(|(p, _)| graph.contains(p)).map(|(p, why)| format!("{p} is a Tier-0 permission: it {why}; grant it only to this operator's own identity, and only with the kinds that need it")).collect::<Vec<_>>(),
        "perKind": grants.iter().map(|g| json!({"kind": label(g), "actions": g.actions, "graph": g.info.graph, "mde": g.info.mde})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier0_graph_permissions_are_warned_about_only_when_printed() {
        let doc = document(&grants(&["ConsentLockdown".into()]).unwrap(), &[]);
        let w = doc["warnings"].as_array().unwrap();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].as_str()
                .unwrap()
                .starts_with("Policy.ReadWrite.Authorization is a Tier-0")
        );
        let doc = document(&grants(&["DeviceIsolation".into()]).unwrap(), &[]);
        assert!(doc["warnings"].as_array().unwrap().is_empty());
    }

    #[test]
    fn union_is_sorted_and_deduplicated() {
        let all = grants(&[]).unwrap();
        let a = actions(&all);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(a, sorted);
        assert!(a.contains(&"Microsoft.Sql/servers/firewallRules/delete".to_string()));
        let one = grants(&["sqlpublicaccesslockdown".into()]).unwrap();
        assert_eq!(
            actions(&one),
            vec![
                "Microsoft.Sql/locations/*/read",
                "Microsoft.Sql/servers/read",
                "Microsoft.Sql/servers/write"
            ]
        );
        assert!(
            select(&["Nope".into()])
                .unwrap_err()
                .contains("unknown kind \"Nope\"")
        );
    }

    #[test]
    fn a_variant_narrows_a_kind_to_its_resource_type() {
        let fd = actions(&grants(&["WafIpBlock:frontdoor".into()]).unwrap());
        assert!(
            fd.iter().all(|a| !a.contains("ApplicationGateway")),
            "{fd:?}"
        );
        assert!(
            fd.iter()
                .any(|a| a.contains("frontDoorWebApplicationFirewallPolicies/write"))
        );
        let appgw = actions(&grants(&["WafIpBlock:AppGateway".into()]).unwrap());
        assert_eq!(appgw.len(), 2, "{appgw:?}");
        let both = actions(&grants(&["WafIpBlock".into()]).unwrap());
        assert_eq!(both.len(), fd.len() + appgw.len());
        let err = grants(&["WafIpBlock:Cdn".into()]).unwrap_err();
        assert!(err.contains("AppGateway, FrontDoor"), "{err}");
        let err = grants(&["SqlIpBlock:X".into()]).unwrap_err();
        assert!(err.contains("no variant"), "{err}");
    }

    /// Every printed action is one Microsoft publishes: a custom role naming an unknown action
    /// cannot be created. The list is what was checked by hand in the provider operations pages
    /// (learn.microsoft.com/azure/role-based-access-control/permissions/: databases, networking,
    /// security, storage, hybrid-multicloud); a new action must be checked there and added.
    /// `Microsoft.Sql/locations/*/read` is the wildcard the SQL built-in roles grant: SQL's
    /// `serverAzureAsyncOperation` status URLs have no published action of their own.
    #[test]
    fn no_printed_action_is_one_azure_does_not_publish() {
        const PUBLISHED: &[&str] = &[
            "Microsoft.DocumentDB/databaseAccounts/read",
            "Microsoft.DocumentDB/databaseAccounts/write",
            "Microsoft.DocumentDB/databaseAccounts/regenerateKey/action",
            "Microsoft.DocumentDB/locations/operationsStatus/read",
            "Microsoft.HybridCompute/machines/read",
            // ArcRunCommand (azure-api-facts §3.11; runCommands/delete is unverified there).
            "Microsoft.HybridCompute/machines/runCommands/read",
            "Microsoft.HybridCompute/machines/runCommands/write",
            "Microsoft.HybridCompute/machines/runCommands/delete",
            "Microsoft.HybridCompute/locations/operationStatus/read",
            "Microsoft.HybridCompute/locations/operationResults/read",
            "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/read",
            "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/write",
            "Microsoft.Network/frontDoorWebApplicationFirewallPolicies/read",
            "Microsoft.Network/frontDoorWebApplicationFirewallPolicies/write",
            // NsgDenyRule (azure-api-facts §3.20; the Network RP's operation URLs are [unverified]).
            "Microsoft.Network/networkSecurityGroups/read",
            "Microsoft.Network/networkSecurityGroups/securityRules/read",
            "Microsoft.Network/networkSecurityGroups/securityRules/write",
            "Microsoft.Network/networkSecurityGroups/securityRules/delete",
            "Microsoft.Network/locations/operations/read",
            "Microsoft.Network/locations/operationResults/read",
            "Microsoft.Network/frontdooroperationresults/read",
            "Microsoft.Security/locations/alerts/read",
            "Microsoft.Security/locations/alerts/dismiss/action",
            "Microsoft.Security/locations/alerts/activate/action",
            "Microsoft.Security/locations/alerts/resolve/action",
            "Microsoft.Sql/locations/*/read",
            "Microsoft.Sql/servers/read",
            "Microsoft.Sql/servers/write",
            "Microsoft.Sql/servers/firewallRules/read",
            "Microsoft.Sql/servers/firewallRules/write",
            "Microsoft.Sql/servers/firewallRules/delete",
            "Microsoft.Sql/servers/ipv6FirewallRules/read",
            "Microsoft.Storage/storageAccounts/read",
            "Microsoft.Storage/storageAccounts/write",
            "Microsoft.Storage/storageAccounts/listkeys/action",
            "Microsoft.Storage/storageAccounts/regeneratekey/action",
            "Microsoft.Storage/storageAccounts/revokeUserDelegationKeys/action",
            // The hardening kinds' actions, as azure-api-facts §3.4, §3.5, §3.8 and §3.15 name
            // them (Defender for Storage's Event Grid and role-assignment needs: its docs).
            "Microsoft.Storage/storageAccounts/blobServices/read",
            "Microsoft.Storage/storageAccounts/blobServices/write",
            "Microsoft.Security/defenderForStorageSettings/read",
            "Microsoft.Security/defenderForStorageSettings/write",
            "Microsoft.EventGrid/eventSubscriptions/read",
            "Microsoft.EventGrid/eventSubscriptions/write",
            "Microsoft.EventGrid/eventSubscriptions/delete",
            "Microsoft.Authorization/roleAssignments/read",
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "Microsoft.Sql/servers/administrators/read",
            "Microsoft.Sql/servers/azureADOnlyAuthentications/read",
            "Microsoft.Sql/servers/azureADOnlyAuthentications/write",
            "Microsoft.Sql/servers/databases/transparentDataEncryption/read",
            "Microsoft.Sql/servers/databases/transparentDataEncryption/write",
            "Microsoft.Sql/servers/auditingSettings/read",
            "Microsoft.Sql/servers/auditingSettings/write",
            "Microsoft.Web/sites/read",
            "Microsoft.Web/sites/restart/action",
            "Microsoft.Web/sites/slots/read",
            "Microsoft.Web/sites/slots/restart/action",
            "Microsoft.Web/sites/config/list/action",
            "Microsoft.Web/sites/config/write",
            "Microsoft.Web/sites/slots/config/list/action",
            "Microsoft.Web/sites/slots/config/write",
            "Microsoft.Web/sites/basicPublishingCredentialsPolicies/read",
            "Microsoft.Web/sites/basicPublishingCredentialsPolicies/write",
            "Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies/read",
            "Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies/write",
        ];
        for a in actions(&grants(&[]).unwrap()) {
            assert!(
                PUBLISHED.iter().any(|p| p.eq_ignore_ascii_case(&a)),
                "{a} is not in the provider operations list checked by hand"
            );
        }
    }
}
