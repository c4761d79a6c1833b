//! The ARM operations the simulator serves, as path templates copied from the official specs.
//!
//! Adding a resource type is a table entry here plus a behaviour in `arm/`; the conformance test
//! checks every entry against `shared/azure-specs/`.

use http::Method;

/// Which token bucket an operation draws from (ARM counts by HTTP method).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    Read,
    Write,
    Delete,
}

impl OpClass {
    pub fn of(method: &Method) -> Self {
        match *method {
            Method::GET | Method::HEAD => OpClass::Read,
            Method::DELETE => OpClass::Delete,
            _ => OpClass::Write,
        }
    }
}

/// What the engine does for a route; the behaviour modules match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    List,
    Put,
    Patch,
    Delete,
    /// A POST action (the last path segment).
    Action,
    /// Replace every child of the collection (SQL `FirewallRules_Replace`).
    ReplaceAll,
}

#[derive(Debug)]
pub struct Route {
    pub method: Method,
    /// The path template exactly as in the spec.
    pub template: &'static str,
    pub api_versions: &'static [&'static str],
    pub op: Op,
    /// The RBAC action the caller needs.
    pub permission: &'static str,
}

const STORAGE: &[&str] = &["2023-05-01"];
const SQL: &[&str] = &["2021-11-01", "2023-08-01-preview"];
const SQL_FW: &[&str] = &["2021-11-01", "2023-08-01-preview", "2025-01-01"];
const COSMOS: &[&str] = &["2024-05-15"];
const APPGW_WAF: &[&str] = &["2024-01-01"];
const FD_WAF: &[&str] = &["2024-02-01"];
const ALERTS: &[&str] = &["2022-01-01"];
const ARC: &[&str] = &["2022-12-27", "2024-05-20-preview"];
const ARC_RUN: &[&str] = &["2024-05-20-preview"];
const DEFENDER_STORAGE: &[&str] = &["2022-12-01-preview", "2025-01-01"];
const WEB: &[&str] = &["2023-12-01"];
const NETWORK: &[&str] = &["2024-01-01"];

macro_rules! route {
    ($m:ident $t:literal $v:expr, $op:ident, $perm:literal) => {
        Route {
            method: Method::$m,
            template: $t,
            api_versions: $v,
            op: Op::$op,
            permission: $perm,
        }
    };
}

const ACCT: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}";

pub static ROUTES: &[Route] = &[
    // Storage
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}" STORAGE, Get, "Microsoft.Storage/storageAccounts/read"),
    route!(PATCH "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}" STORAGE, Patch, "Microsoft.Storage/storageAccounts/write"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}/listKeys" STORAGE, Action, "Microsoft.Storage/storageAccounts/listkeys/action"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}/regenerateKey" STORAGE, Action, "Microsoft.Storage/storageAccounts/regeneratekey/action"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}/revokeUserDelegationKeys" STORAGE, Action, "Microsoft.Storage/storageAccounts/revokeUserDelegationKeys/action"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}/blobServices/{BlobServicesName}" STORAGE, Get, "Microsoft.Storage/storageAccounts/blobServices/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}/blobServices/{BlobServicesName}" STORAGE, Put, "Microsoft.Storage/storageAccounts/blobServices/write"),
    route!(GET "/{resourceId}/providers/Microsoft.Security/defenderForStorageSettings/{settingName}" DEFENDER_STORAGE, Get, "Microsoft.Security/defenderForStorageSettings/read"),
    route!(PUT "/{resourceId}/providers/Microsoft.Security/defenderForStorageSettings/{settingName}" DEFENDER_STORAGE, Put, "Microsoft.Security/defenderForStorageSettings/write"),
    // SQL
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}" SQL, Get, "Microsoft.Sql/servers/read"),
    route!(PATCH "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}" SQL, Patch, "Microsoft.Sql/servers/write"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/firewallRules" SQL_FW, List, "Microsoft.Sql/servers/firewallRules/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/firewallRules" SQL_FW, ReplaceAll, "Microsoft.Sql/servers/firewallRules/write"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/firewallRules/{firewallRuleName}" SQL_FW, Get, "Microsoft.Sql/servers/firewallRules/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/firewallRules/{firewallRuleName}" SQL_FW, Put, "Microsoft.Sql/servers/firewallRules/write"),
    route!(DELETE "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/firewallRules/{firewallRuleName}" SQL_FW, Delete, "Microsoft.Sql/servers/firewallRules/delete"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/ipv6FirewallRules" SQL, List, "Microsoft.Sql/servers/ipv6FirewallRules/read"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/azureADOnlyAuthentications/{authenticationName}" SQL, Get, "Microsoft.Sql/servers/azureADOnlyAuthentications/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/azureADOnlyAuthentications/{authenticationName}" SQL, Put, "Microsoft.Sql/servers/azureADOnlyAuthentications/write"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/administrators/{administratorName}" SQL, Get, "Microsoft.Sql/servers/administrators/read"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/auditingSettings/{blobAuditingPolicyName}" SQL, Get, "Microsoft.Sql/servers/auditingSettings/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/auditingSettings/{blobAuditingPolicyName}" SQL, Put, "Microsoft.Sql/servers/auditingSettings/write"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/databases/{databaseName}/transparentDataEncryption/{tdeName}" SQL, Get, "Microsoft.Sql/servers/databases/transparentDataEncryption/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}/databases/{databaseName}/transparentDataEncryption/{tdeName}" SQL, Put, "Microsoft.Sql/servers/databases/transparentDataEncryption/write"),
    // Cosmos DB
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DocumentDB/databaseAccounts/{accountName}" COSMOS, Get, "Microsoft.DocumentDB/databaseAccounts/read"),
    route!(PATCH "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DocumentDB/databaseAccounts/{accountName}" COSMOS, Patch, "Microsoft.DocumentDB/databaseAccounts/write"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DocumentDB/databaseAccounts/{accountName}/regenerateKey" COSMOS, Action, "Microsoft.DocumentDB/databaseAccounts/regenerateKey/action"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.DocumentDB/databaseAccounts/{accountName}/listKeys" COSMOS, Action, "Microsoft.DocumentDB/databaseAccounts/listKeys/action"),
    // Network security groups and their security rules (each rule its own resource)
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/networkSecurityGroups/{networkSecurityGroupName}" NETWORK, Get, "Microsoft.Network/networkSecurityGroups/read"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/networkSecurityGroups/{networkSecurityGroupName}/securityRules" NETWORK, List, "Microsoft.Network/networkSecurityGroups/securityRules/read"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/networkSecurityGroups/{networkSecurityGroupName}/securityRules/{securityRuleName}" NETWORK, Get, "Microsoft.Network/networkSecurityGroups/securityRules/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/networkSecurityGroups/{networkSecurityGroupName}/securityRules/{securityRuleName}" NETWORK, Put, "Microsoft.Network/networkSecurityGroups/securityRules/write"),
    route!(DELETE "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/networkSecurityGroups/{networkSecurityGroupName}/securityRules/{securityRuleName}" NETWORK, Delete, "Microsoft.Network/networkSecurityGroups/securityRules/delete"),
    // WAF policies
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/{policyName}" APPGW_WAF, Get, "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/{policyName}" APPGW_WAF, Put, "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/write"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/FrontDoorWebApplicationFirewallPolicies/{policyName}" FD_WAF, Get, "Microsoft.Network/frontDoorWebApplicationFirewallPolicies/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Network/FrontDoorWebApplicationFirewallPolicies/{policyName}" FD_WAF, Put, "Microsoft.Network/frontDoorWebApplicationFirewallPolicies/write"),
    // Defender for Cloud alerts (subscription and resource-group level)
    route!(GET "/subscriptions/{subscriptionId}/providers/Microsoft.Security/locations/{ascLocation}/alerts/{alertName}" ALERTS, Get, "Microsoft.Security/locations/alerts/read"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/alerts/{alertName}" ALERTS, Get, "Microsoft.Security/locations/alerts/read"),
    route!(POST "/subscriptions/{subscriptionId}/providers/Microsoft.Security/locations/{ascLocation}/alerts/{alertName}/dismiss" ALERTS, Action, "Microsoft.Security/locations/alerts/dismiss/action"),
    route!(POST "/subscriptions/{subscriptionId}/providers/Microsoft.Security/locations/{ascLocation}/alerts/{alertName}/resolve" ALERTS, Action, "Microsoft.Security/locations/alerts/resolve/action"),
    route!(POST "/subscriptions/{subscriptionId}/providers/Microsoft.Security/locations/{ascLocation}/alerts/{alertName}/activate" ALERTS, Action, "Microsoft.Security/locations/alerts/activate/action"),
    route!(POST "/subscriptions/{subscriptionId}/providers/Microsoft.Security/locations/{ascLocation}/alerts/{alertName}/inProgress" ALERTS, Action, "Microsoft.Security/locations/alerts/inProgress/action"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/alerts/{alertName}/dismiss" ALERTS, Action, "Microsoft.Security/locations/alerts/dismiss/action"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/alerts/{alertName}/resolve" ALERTS, Action, "Microsoft.Security/locations/alerts/resolve/action"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/alerts/{alertName}/activate" ALERTS, Action, "Microsoft.Security/locations/alerts/activate/action"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/alerts/{alertName}/inProgress" ALERTS, Action, "Microsoft.Security/locations/alerts/inProgress/action"),
    // App Service
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}" WEB, Get, "Microsoft.Web/sites/read"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/restart" WEB, Action, "Microsoft.Web/sites/restart/action"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/slots/{slot}" WEB, Get, "Microsoft.Web/sites/slots/read"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/slots/{slot}/restart" WEB, Action, "Microsoft.Web/sites/slots/restart/action"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/config/appsettings/list" WEB, Action, "Microsoft.Web/sites/config/list/action"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/config/appsettings" WEB, Put, "Microsoft.Web/sites/config/write"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/basicPublishingCredentialsPolicies/ftp" WEB, Get, "Microsoft.Web/sites/basicPublishingCredentialsPolicies/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/basicPublishingCredentialsPolicies/ftp" WEB, Put, "Microsoft.Web/sites/basicPublishingCredentialsPolicies/write"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/basicPublishingCredentialsPolicies/scm" WEB, Get, "Microsoft.Web/sites/basicPublishingCredentialsPolicies/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/basicPublishingCredentialsPolicies/scm" WEB, Put, "Microsoft.Web/sites/basicPublishingCredentialsPolicies/write"),
    route!(POST "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/slots/{slot}/config/appsettings/list" WEB, Action, "Microsoft.Web/sites/slots/config/list/action"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/slots/{slot}/config/appsettings" WEB, Put, "Microsoft.Web/sites/slots/config/write"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/slots/{slot}/basicPublishingCredentialsPolicies/ftp" WEB, Get, "Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/slots/{slot}/basicPublishingCredentialsPolicies/ftp" WEB, Put, "Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies/write"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/slots/{slot}/basicPublishingCredentialsPolicies/scm" WEB, Get, "Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Web/sites/{name}/slots/{slot}/basicPublishingCredentialsPolicies/scm" WEB, Put, "Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies/write"),
    // Azure Arc
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.HybridCompute/machines/{machineName}" ARC, Get, "Microsoft.HybridCompute/machines/read"),
    route!(GET "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.HybridCompute/machines/{machineName}/runCommands/{runCommandName}" ARC_RUN, Get, "Microsoft.HybridCompute/machines/runCommands/read"),
    route!(PUT "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.HybridCompute/machines/{machineName}/runCommands/{runCommandName}" ARC_RUN, Put, "Microsoft.HybridCompute/machines/runCommands/write"),
    route!(DELETE "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.HybridCompute/machines/{machineName}/runCommands/{runCommandName}" ARC_RUN, Delete, "Microsoft.HybridCompute/machines/runCommands/delete"),
];

/// The template of a storage account, for behaviours that address the parent of a child route.
pub const STORAGE_ACCOUNT_TEMPLATE: &str = ACCT;

/// A matched route and the values of its path parameters.
#[derive(Debug)]
pub struct Matched {
    pub route: &'static Route,
    pub params: Vec<(&'static str, String)>,
}

impl Matched {
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// Matches `path` against a template: literals case-insensitively (ARM paths are), `{x}` one
/// segment, and a leading `{resourceId}` any number of segments (an extension resource).
pub fn match_template(template: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let t: Vec<&'static str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut params = Vec::new();
    let (t, p) = if t.first() == Some(&"{resourceId}") {
        let rest = &t[1..];
        if p.len() <= rest.len() {
            return None;
        }
        let split = p.len() - rest.len();
        params.push(("resourceId", format!("/{}", p[..split].join("/"))));
        (rest.to_vec(), p[split..].to_vec())
    } else {
        (t, p)
    };
    if t.len() != p.len() {
        return None;
    }
    for (ts, ps) in t.iter().zip(p.iter()) {
        if ts.starts_with('{') && ts.ends_with('}') {
            if ps.is_empty() {
                return None;
            }
            params.push((&ts[1..ts.len() - 1], (*ps).to_string()));
        } else if !ts.eq_ignore_ascii_case(ps) {
            return None;
        }
    }
    Some(params)
}

/// Every route whose template matches `path`, whatever the method (to tell 404 from 405).
pub fn find(method: &Method, path: &str) -> Result<Matched, bool> {
    let mut path_known = false;
    for route in ROUTES {
        if let Some(params) = match_template(route.template, path) {
            if route.method == *method {
                return Ok(Matched { route, params });
            }
            path_known = true;
        }
    }
    Err(path_known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_case_insensitively_and_extracts_params() {
        let m = find(
            &Method::GET,
            "/subscriptions/s1/resourcegroups/rg/providers/microsoft.sql/servers/srv/firewallRules/r1",
        )
        .unwrap();
        assert_eq!(m.param("serverName"), "srv");
        assert_eq!(m.param("firewallRuleName"), "r1");
        assert_eq!(m.route.op, Op::Get);
    }

    #[test]
    fn extension_resource_takes_the_whole_parent_id() {
        let m = find(
            &Method::PUT,
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/providers/Microsoft.Security/defenderForStorageSettings/current",
        )
        .unwrap();
        assert_eq!(
            m.param("resourceId"),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a"
        );
    }

    #[test]
    fn unknown_method_on_known_path_is_distinguished_from_unknown_path() {
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/p";
        assert!(matches!(find(&Method::PATCH, p), Err(true)));
        assert!(matches!(
            find(&Method::GET, "/subscriptions/s/isolate"),
            Err(false)
        ));
    }
}
