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
