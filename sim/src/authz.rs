//! Azure RBAC evaluation: does any role assignment whose scope covers the resource grant the
//! action (wildcards allowed, NotActions subtracted)?

use crate::world::Principal;

fn glob(pattern: &str, action: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let a = action.to_ascii_lowercase();
    match p.split_once('*') {
        None => p == a,
        Some((pre, post)) => {
            a.len() >= pre.len() + post.len() && a.starts_with(pre) && a.ends_with(post)
        }
    }
}

fn scope_covers(scope: &str, resource_id: &str) -> bool {
    let s = scope.trim_end_matches('/').to_ascii_lowercase();
    let r = resource_id.to_ascii_lowercase();
    s.is_empty() || s == "/" || r == s || r.starts_with(&format!("{s}/"))
}

pub fn allowed(p: &Principal, action: &str, resource_id: &str) -> bool {
    p.role_assignments.iter().any(|ra| {
        scope_covers(&ra.scope, resource_id)
            && ra.actions.iter().any(|a| glob(a, action))
            && !ra.not_actions.iter().any(|a| glob(a, action))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::RoleAssignment;

    fn principal(scope: &str, actions: &[&str], not: &[&str]) -> Principal {
        Principal {
            name: "p".into(),
            tenant_id: "t".into(),
            client_id: "c".into(),
            object_id: "o".into(),
            client_secret: None,
            federated_credentials: vec![],
            managed_identity: false,
            role_assignments: vec![RoleAssignment {
                scope: scope.into(),
                actions: actions.iter().map(|s| s.to_string()).collect(),
                not_actions: not.iter().map(|s| s.to_string()).collect(),
            }],
            graph_permissions: vec![],
            mde_permissions: vec![],
        }
    }

    #[test]
    fn scope_wildcards_and_not_actions() {
        let id = "/subscriptions/S/resourceGroups/rg/providers/Microsoft.Sql/servers/a";
        let p = principal(
            "/subscriptions/s/resourceGroups/RG",
            &["Microsoft.Sql/servers/*"],
            &["Microsoft.Sql/servers/delete"],
        );
        assert!(allowed(&p, "Microsoft.Sql/servers/write", id));
        assert!(!allowed(&p, "Microsoft.Sql/servers/delete", id));
        assert!(!allowed(&p, "Microsoft.Storage/storageAccounts/write", id));
        // A sibling resource group whose name starts the same is not covered.
        assert!(!allowed(
            &p,
            "Microsoft.Sql/servers/write",
            "/subscriptions/s/resourceGroups/rg2/providers/Microsoft.Sql/servers/a"
        ));
        let exact = principal(
            "/subscriptions/s",
            &["Microsoft.Sql/servers/firewallRules/read"],
            &[],
        );
        assert!(allowed(
            &exact,
            "microsoft.sql/servers/firewallrules/read",
            id
        ));
        assert!(!allowed(
            &exact,
            "Microsoft.Sql/servers/firewallRules/write",
            id
        ));
    }
}
