//! ARM resource ids: resolving `spec.target` and naming the parts the limiter and metrics need.

use crate::api::common::Target;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceId {
    /// Canonical id as given (ARM ids are case-insensitive; we keep the user's spelling).
    pub id: String,
    pub subscription: String,
    pub resource_group: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

/// Resolve a target to the id of a resource of `rtype` (e.g. `Microsoft.Sql/servers`).
/// The error message names the field at fault.
pub fn resolve(target: &Target, rtype: &str) -> Result<ResourceId, String> {
    let id = match (&target.resource_id, &target.subscription_id) {
        (Some(id), _) => {
            let t = resource_type(id);
            if !t.eq_ignore_ascii_case(rtype) {
                return Err(format!(
                    "spec.target.resourceId is a {t} but this kind targets {rtype}"
                ));
            }
            id.trim_end_matches('/').to_string()
        }
        (None, Some(sub)) => {
            let rg = target.resource_group.as_deref().unwrap_or_default();
            let name = target.name.as_deref().unwrap_or_default();
            if rg.is_empty() || name.is_empty() {
                return Err("spec.target: subscriptionId needs resourceGroup and name".to_string());
            }
            format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{rtype}/{name}")
        }
        (None, None) => return Err("spec.target: set resourceId or subscriptionId".into()),
    };
    let segs: Vec<&str> = id.split('/').collect();
    let subscription = segs.get(2).copied().unwrap_or_default().to_string();
    let resource_group = segs
        .iter()
        .position(|s| s.eq_ignore_ascii_case("resourceGroups"))
        .and_then(|i| segs.get(i + 1))
        .map(|s| s.to_string());
    let name = segs.last().copied().unwrap_or_default().to_string();
    Ok(ResourceId {
        id,
        subscription,
        resource_group,
        name,
    })
}

/// `Microsoft.Sql/servers/firewallRules` for any id or path below `/providers/`.
pub fn resource_type(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let lower = path.to_ascii_lowercase();
    let Some(i) = lower.rfind("/providers/") else {
        return String::new();
    };
    let rest: Vec<&str> = path[i + "/providers/".len()..].split('/').collect();
    let mut parts = vec![rest[0]];
    parts.extend(rest.iter().skip(1).step_by(2));
    parts.join("/")
}

/// The metric label of a request. ARM paths name their resource type (`PUT
/// Microsoft.Sql/servers/firewallRules`); Graph and Defender for Endpoint paths have no provider,
/// so they are named by service and path with the ids left out (`POST mde machines/isolate`,
/// `PATCH graph users`): a bounded label set that still says which API was called.
pub fn operation_label(service: &str, method: &str, path: &str) -> String {
    let rtype = resource_type(path);
    if !rtype.is_empty() || service.is_empty() {
        return format!("{method} {rtype}");
    }
    let path = path.split('?').next().unwrap_or_default();
    // Absolute URLs (next links, operation URLs): the path after the host.
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => path,
    };
    let template: Vec<&str> = path
        .split('/')
        .filter(|s| !matches!(*s, "" | "v1.0" | "beta" | "api"))
        // `servicePrincipals(appId='…')` is the collection `servicePrincipals` keyed by appId.
        .map(|s| s.split('(').next().unwrap_or_default())
        // API words are letters (and `microsoft.graph.…` casts); ids, UPNs and hashes are not.
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic() || c == '.'))
        .collect();
    format!("{method} {service} {}", template.join("/"))
}

/// The subscription id in an ARM path, for the limiter scope.
pub fn subscription_of(path: &str) -> Option<&str> {
    let mut it = path.split('/');
    while let Some(s) = it.next() {
        if s.eq_ignore_ascii_case("subscriptions") {
            return it.next();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRV: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-prod/providers/Microsoft.Sql/servers/sql-prod-01";

    #[test]
    fn resolves_both_target_forms() {
        let by_id = resolve(
            &Target {
                resource_id: Some(SRV.into()),
                ..Default::default()
            },
            "Microsoft.Sql/servers",
        )
        .unwrap();
        let by_parts = resolve(
            &Target {
                subscription_id: Some("00000000-0000-4000-8000-0000000000aa".into()),
                resource_group: Some("rg-prod".into()),
                name: Some("sql-prod-01".into()),
                ..Default::default()
            },
            "Microsoft.Sql/servers",
        )
        .unwrap();
        assert_eq!(by_id, by_parts);
        assert_eq!(by_id.name, "sql-prod-01");
        assert_eq!(by_id.resource_group.as_deref(), Some("rg-prod"));
    }

    #[test]
    fn rejects_wrong_type_naming_the_field() {
        let err = resolve(
            &Target {
                resource_id: Some(SRV.into()),
                ..Default::default()
            },
            "Microsoft.Storage/storageAccounts",
        )
        .unwrap_err();
        assert!(
            err.contains("spec.target.resourceId is a Microsoft.Sql/servers"),
            "{err}"
        );
    }

    #[test]
    fn graph_and_mde_operations_are_labelled_by_service_and_path_without_ids() {
        let label = |svc, m, p| operation_label(svc, m, p);
        assert_eq!(
            label(
                "mde",
                "POST",
                "/api/machines/1e5bc9d7e413ddd7902c2932e418702b84d0cc07/isolate"
            ),
            "POST mde machines/isolate"
        );
        assert_eq!(
            label(
                "mde",
                "GET",
                "/api/machineactions?$filter=machineId eq 'abc1'"
            ),
            "GET mde machineactions"
        );
        assert_eq!(
            label("mde", "DELETE", "/api/indicators/42"),
            "DELETE mde indicators"
        );
        assert_eq!(
            label(
                "graph",
                "POST",
                "/v1.0/security/threatSubmission/urlThreats"
            ),
            "POST graph security/threatSubmission/urlThreats"
        );
        assert_eq!(
            label(
                "graph",
                "GET",
                "/v1.0/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')?$select=id"
            ),
            "GET graph servicePrincipals"
        );
        assert_eq!(
            label("graph", "PATCH", "/v1.0/users/alice@contoso.com"),
            "PATCH graph users"
        );
        assert_eq!(
            label(
                "graph",
                "GET",
                "https://graph.microsoft.com/beta/identity/conditionalAccess/policies?$skiptoken=x1"
            ),
            "GET graph identity/conditionalAccess/policies"
        );
        // ARM keeps its resource-type label, whatever the client.
        assert_eq!(
            label("", "PUT", &format!("{SRV}/firewallRules/AllowAll")),
            "PUT Microsoft.Sql/servers/firewallRules"
        );
    }

    #[test]
    fn types_and_subscriptions_of_paths() {
        assert_eq!(
            resource_type(&format!("{SRV}/firewallRules/AllowAll?api-version=1")),
            "Microsoft.Sql/servers/firewallRules"
        );
        assert_eq!(
            resource_type(&format!("{SRV}/firewallRules")),
            "Microsoft.Sql/servers/firewallRules"
        );
        assert_eq!(
            subscription_of(SRV),
            Some("00000000-0000-4000-8000-0000000000aa")
        );
    }
}
