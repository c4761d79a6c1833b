//! Entra identity kinds: the target is a user (or a service principal), not an ARM resource.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, TenantCommonSpec};

fn yes() -> bool {
    true
}

/// The user: its Entra object id, or its userPrincipalName. Name a user the same way in every
/// containment of it, so that they compose.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.objectId) != has(self.userPrincipalName)").message("spec.target: set exactly one of objectId and userPrincipalName"))]
pub struct UserTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')").message("spec.target.objectId must be a GUID"))]
    pub object_id: Option<String>,
    /// e.g. `mallory@contoso.example`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 113))]
    #[x_kube(validation = Rule::new("self.matches('^[^@\\\\s/]+@[A-Za-z0-9]([-A-Za-z0-9]*)([.][A-Za-z0-9]([-A-Za-z0-9]*))+$')").message("spec.target.userPrincipalName must look like name@domain.example"))]
    pub user_principal_name: Option<String>,
}

containment_kind! {
    kind = "UserContainment", shortname = "usrc", status = "UserContainmentStatus",
    /// A compromised Entra user: the account stays disabled (re-enabled on release if it was
    /// enabled), its sign-in sessions are revoked once at creation and again at each new
    /// `trigger` (no undo), and optionally its directory roles are removed (direct, PIM active
    /// and PIM eligible; re-created on release). Tokens already issued stay valid until they
    /// expire.
    #[x_kube(validation = Rule::new("self.disableAccount || self.revokeSessions || self.removeDirectoryRoles").message("spec: at least one of disableAccount, revokeSessions and removeDirectoryRoles must be true"))]
    pub struct UserContainmentSpec {
        pub target: UserTarget,
        #[serde(flatten)]
        pub common: TenantCommonSpec,
        /// `accountEnabled: false` while this resource exists.
        #[serde(default = "yes")]
        pub disable_account: bool,
        /// Revoke refresh tokens and session cookies (`revokeSignInSessions`) once per trigger.
        #[serde(default = "yes")]
        pub revoke_sessions: bool,
        /// Remove every directory role the user holds: direct assignments, PIM active and PIM
        /// eligible ones (needs the Tier-0 `RoleManagement.ReadWrite.Directory`).
        #[serde(default)]
        pub remove_directory_roles: bool,
        /// Change to revoke the sessions again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 253))]
        pub trigger: Option<String>,
    }
}

/// A directory role the user held, as recorded for release.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryRole {
    pub role_definition_id: String,
    pub directory_scope_id: String,
    /// Direct, Active (PIM) or Eligible (PIM).
    pub assignment: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserContainmentStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The user's object id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
    /// The user is synced from on-premises Active Directory: the next sync can undo a change
    /// made in Entra; disable the account on-premises too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_premises_synced: bool,
    /// Sessions and refresh tokens issued before this time no longer work (the evidence of the
    /// revocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_sessions_valid_from_date_time: Option<String>,
    /// The directory roles the user holds now (with removeDirectoryRoles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_roles: Option<Vec<DirectoryRole>>,
}

/// The service principal: its object id, or its application's appId.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.objectId) != has(self.appId)").message("spec.target: set exactly one of objectId and appId"))]
pub struct ServicePrincipalTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')").message("spec.target.objectId must be a GUID"))]
    pub object_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')").message("spec.target.appId must be a GUID"))]
    pub app_id: Option<String>,
}

containment_kind! {
    kind = "ServicePrincipalContainment", shortname = "spc", status = "ServicePrincipalContainmentStatus",
    /// A rogue or compromised app: its service principal stays disabled (no new tokens;
    /// re-enabled on release), optionally its delegated grants and app-role assignments are
    /// removed (recorded, re-created on release), and, only when asked, its client secrets
    /// are removed once per trigger (irreversible). Microsoft first-party apps and the
    /// operator's own principal are always refused.
    #[x_kube(validation = Rule::new("self.disableServicePrincipal || self.removeDelegatedGrants || self.removeAppRoleAssignments || self.removePasswordCredentials").message("spec: at least one of disableServicePrincipal, removeDelegatedGrants, removeAppRoleAssignments and removePasswordCredentials must be true"))]
    pub struct ServicePrincipalContainmentSpec {
        pub target: ServicePrincipalTarget,
        #[serde(flatten)]
        pub common: TenantCommonSpec,
        /// `accountEnabled: false` while this resource exists.
        #[serde(default = "yes")]
        pub disable_service_principal: bool,
        /// Remove the delegated permission grants the app holds (tenant-wide and per user).
        #[serde(default)]
        pub remove_delegated_grants: bool,
        /// Remove the application permissions granted to it (its app-role assignments).
        #[serde(default)]
        pub remove_app_role_assignments: bool,
        /// Irreversible: remove every client secret its application registration has when a
        /// run starts (once at creation, again at each new trigger). Only for apps registered
        /// in this tenant.
        #[serde(default)]
        pub remove_password_credentials: bool,
        /// Change to remove the secrets present then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 253))]
        pub trigger: Option<String>,
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipalContainmentStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_principal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_enabled: Option<bool>,
    /// Delegated grants it holds now (with removeDelegatedGrants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated_grants: Option<u32>,
    /// App-role assignments it holds now (with removeAppRoleAssignments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_role_assignments: Option<u32>,
    /// keyIds of the client secrets its application has now (with removePasswordCredentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key_ids: Option<Vec<String>>,
}

/// What a privileged sign-in must satisfy.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum GrantOperator {
    /// Every listed requirement (`AND`).
    #[default]
    AllOf,
    /// Any one of them (`OR`).
    AnyOf,
}

/// Which cloud apps the policy covers.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum PolicyResources {
    /// Every resource (`includeApplications: ["All"]`).
    #[default]
    All,
    /// Only the Azure management API (Azure Resource Manager: portal, CLI, PowerShell, REST).
    AzureManagement,
}

fn one_day() -> String {
    "24h".into()
}

containment_kind! {
    kind = "PrivilegedAccessPolicy", shortname = "papol", status = "PrivilegedAccessPolicyStatus",
    /// A Conditional Access policy the operator owns: the listed users, groups and directory
    /// roles must sign in with MFA and/or from a compliant device, for every resource or the
    /// Azure management API. It is created report-only (sign-ins are evaluated, not blocked)
    /// and switched on once `reportOnlyFor` has passed since its creation; the break-glass
    /// accounts are always excluded; edits to it are put back; it is deleted on release.
    #[x_kube(validation = Rule::new("(has(self.users) ? size(self.users) : 0) + (has(self.groups) ? size(self.groups) : 0) + (has(self.directoryRoles) ? size(self.directoryRoles) : 0) > 0").message("spec: list at least one of users, groups and directoryRoles"))]
    #[x_kube(validation = Rule::new("self.requireMfa || self.requireCompliantDevice").message("spec: at least one of requireMfa and requireCompliantDevice must be true"))]
    #[x_kube(validation = Rule::new("!has(self.users) || !has(self.breakGlassAccounts) || !self.users.exists(u, self.breakGlassAccounts.exists(b, b.lowerAscii() == u.lowerAscii()))").message("spec.users: a break-glass account cannot also be included"))]
    pub struct PrivilegedAccessPolicySpec {
        #[serde(flatten)]
        pub common: TenantCommonSpec,
        /// Object ids of the users the policy applies to.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(length(max = 100), inner(length(max = 36)))]
        #[x_kube(validation = Rule::new("self.all(x, x.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'))").message("spec.users must be user object ids (GUIDs)"))]
        pub users: Vec<String>,
        /// Object ids of the groups the policy applies to.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(length(max = 100), inner(length(max = 36)))]
        #[x_kube(validation = Rule::new("self.all(x, x.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'))").message("spec.groups must be group object ids (GUIDs)"))]
        pub groups: Vec<String>,
        /// Role template ids of the directory roles the policy applies to (e.g. Global
        /// Administrator `62e90394-69f5-4237-9190-012177145e10`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(length(max = 100), inner(length(max = 36)))]
        #[x_kube(validation = Rule::new("self.all(x, x.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'))").message("spec.directoryRoles must be role template ids (GUIDs)"))]
        pub directory_roles: Vec<String>,
        /// Object ids of the emergency-access users the policy never applies to (at least one,
        /// so a mistake cannot lock every administrator out).
        #[schemars(length(min = 1, max = 20), inner(length(max = 36)))]
        #[x_kube(validation = Rule::new("self.all(x, x.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'))").message("spec.breakGlassAccounts must be user object ids (GUIDs)"))]
        pub break_glass_accounts: Vec<String>,
        /// Multi-factor authentication (`mfa`).
        #[serde(default = "yes")]
        pub require_mfa: bool,
        /// A device Intune marks compliant (`compliantDevice`).
        #[serde(default)]
        pub require_compliant_device: bool,
        /// With both requirements: AllOf (default) or AnyOf.
        #[serde(default)]
        pub grant_operator: GrantOperator,
        #[serde(default)]
        pub resources: PolicyResources,
        /// The soak: how long the policy stays report-only after it is created before it is
        /// switched on, e.g. `24h` (default) or `0s` to create it switched on.
        #[serde(default = "one_day")]
        #[schemars(length(max = 16))]
        #[x_kube(validation = Rule::new("self.matches('^([0-9]+(h|m|s))+$')").message("spec.reportOnlyFor must be a duration such as 24h, 90m or 0s"))]
        pub report_only_for: String,
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrivilegedAccessPolicyStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The Conditional Access policy's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// enabledForReportingButNotEnforced (report-only), enabled or disabled, as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_state: Option<String>,
    /// When the report-only soak ends (the policy's creation time plus reportOnlyFor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_after: Option<String>,
}
