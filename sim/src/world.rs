//! The world file: tenants, subscriptions, principals with their permissions, and the initial
//! Azure, Graph and Defender for Endpoint objects.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Issuer {
    /// The `iss` claim, e.g. a cluster's service-account issuer URL.
    pub issuer: String,
    /// `{"keys": [JWK, …]}`: EC P-256 (ES256) or RSA (RS256) public keys.
    pub jwks: Value,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct World {
    #[serde(default)]
    pub settings: Settings,
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
    #[serde(default)]
    pub principals: Vec<Principal>,
    /// OpenID issuers whose tokens are accepted as federated assertions, with their signing
    /// keys (the JWK set Entra reads from each issuer's `jwks_uri`). An assertion from an
    /// issuer not listed, or not signed by one of its keys, is refused as Entra refuses it.
    #[serde(default)]
    pub issuers: Vec<Issuer>,
    /// ARM resources: each needs `id`; `name` and `type` are derived from it when absent.
    #[serde(default)]
    pub resources: Vec<Value>,
    #[serde(default)]
    pub graph: GraphWorld,
    #[serde(default)]
    pub mde: MdeWorld,
}

/// Simulator behaviour knobs (also settable at run time through `POST /_sim/settings`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Settings {
    /// How long a long-running operation stays InProgress.
    pub lro_delay_ms: u64,
    /// `Retry-After` (seconds) sent with long-running operation responses.
    pub lro_retry_after_seconds: u64,
    /// Added to every Azure API response (not the admin API).
    pub latency_ms: u64,
    /// How long an MDE machine action stays in each of Pending and InProgress.
    pub mde_action_step_ms: u64,
    /// Defender for Endpoint devices that are offline: their machine actions stay Pending, and
    /// once a device is back, what queued up is carried out newest first (the order behind the
    /// documented duplicate-isolate incident, azure-api-facts §3.23).
    pub mde_offline_devices: Vec<String>,
    /// How long a Graph threat submission stays in each of notStarted and running.
    pub submission_step_ms: u64,
    /// ARM throttling on/off (buckets are set with `POST /_sim/throttle`).
    pub throttling: bool,
    /// The next N long-running operations to start end `Failed` (their change is not applied).
    pub lro_fail_next: u32,
    /// The error code those operations end with: `InternalServerError` (Azure's own passing
    /// failure, worth a retry) unless set, e.g. `BadRequest` for one that fails every time.
    pub lro_fail_code: String,
    /// Answer every long-running operation in this shape instead of the one its route declares
    /// (`Both`, `AzureAsyncOperation`, `Location`, `OkWithHeader`, `ProvisioningState`).
    pub lro_shape: Option<crate::arm::lro::Shape>,
    /// Items per page of Graph and Defender for Endpoint lists (the rest through
    /// `@odata.nextLink`).
    pub odata_page_size: usize,
    /// Entra's eventual consistency: for this long after a write, reads of the user or
    /// service principal still show it as it was.
    pub graph_replication_lag_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lro_delay_ms: 1000,
            lro_retry_after_seconds: 1,
            latency_ms: 0,
            mde_action_step_ms: 500,
            mde_offline_devices: Vec::new(),
            submission_step_ms: 500,
            throttling: true,
            lro_fail_next: 0,
            lro_fail_code: "InternalServerError".into(),
            lro_shape: None,
            odata_page_size: 100,
            graph_replication_lag_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tenant {
    pub id: String,
    #[serde(default)]
    pub domain: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscription {
    pub id: String,
    pub tenant_id: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Principal {
    pub name: String,
    pub tenant_id: String,
    /// The application (client) id.
    pub client_id: String,
    /// The service principal's object id (`oid` in tokens).
    pub object_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub federated_credentials: Vec<FederatedCredential>,
    /// Token requests through the IMDS form (`Metadata: true`) get this principal.
    #[serde(default)]
    pub managed_identity: bool,
    #[serde(default)]
    pub role_assignments: Vec<RoleAssignment>,
    /// Graph application permissions (app roles), e.g. `ThreatSubmission.ReadWrite.All`.
    #[serde(default)]
    pub graph_permissions: Vec<String>,
    /// Defender for Endpoint application permissions, e.g. `Machine.Isolate`.
    #[serde(default)]
    pub mde_permissions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FederatedCredential {
    pub issuer: String,
    pub subject: String,
    #[serde(default = "default_audience")]
    pub audience: String,
}

fn default_audience() -> String {
    "api://AzureADTokenExchange".into()
}

/// A role assignment flattened to its actions, as ARM evaluates it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignment {
    pub scope: String,
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GraphWorld {
    #[serde(default)]
    pub users: Vec<Value>,
    #[serde(default)]
    pub service_principals: Vec<Value>,
    #[serde(default)]
    pub authorization_policy: Option<Value>,
    /// Direct directory-role assignments (unifiedRoleAssignment).
    #[serde(default)]
    pub role_assignments: Vec<Value>,
    /// PIM active assignments (unifiedRoleAssignmentScheduleInstance).
    #[serde(default)]
    pub role_assignment_schedules: Vec<Value>,
    /// PIM eligible assignments (unifiedRoleEligibilityScheduleInstance).
    #[serde(default)]
    pub role_eligibility_schedules: Vec<Value>,
    /// Delegated permission grants (oAuth2PermissionGrant).
    #[serde(default)]
    pub oauth2_permission_grants: Vec<Value>,
    /// App-role assignments granted to service principals (appRoleAssignment).
    #[serde(default)]
    pub app_role_assignments: Vec<Value>,
    /// Application registrations of this tenant (with `passwordCredentials` metadata).
    #[serde(default)]
    pub applications: Vec<Value>,
    /// Conditional Access policies (conditionalAccessPolicy) already in the tenant.
    #[serde(default)]
    pub conditional_access_policies: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MdeWorld {
    #[serde(default)]
    pub machines: Vec<Value>,
    /// Per-minute call limit per tenant for each rate-limited MDE API (docs: 100).
    #[serde(default = "default_mde_limit")]
    pub calls_per_minute: u32,
    /// Active indicators allowed per tenant (docs: 15,000).
    #[serde(default = "default_indicator_limit")]
    pub indicator_limit: usize,
}

impl Default for MdeWorld {
    fn default() -> Self {
        Self {
            machines: Vec::new(),
            calls_per_minute: default_mde_limit(),
            indicator_limit: default_indicator_limit(),
        }
    }
}

fn default_mde_limit() -> u32 {
    100
}

fn default_indicator_limit() -> usize {
    15_000
}

impl World {
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let w: World = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        w.validate()?;
        Ok(w)
    }

    fn validate(&self) -> Result<(), String> {
        let mut ids = BTreeMap::new();
        for r in &self.resources {
            let id = r
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("resource without an id: {r}"))?;
            if !id.starts_with("/subscriptions/") {
                return Err(format!("resource id must start with /subscriptions/: {id}"));
            }
            if ids.insert(id.to_ascii_lowercase(), ()).is_some() {
                return Err(format!("duplicate resource id: {id}"));
            }
        }
        for p in &self.principals {
            if !self.tenants.iter().any(|t| t.id == p.tenant_id) {
                return Err(format!(
                    "principal {}: unknown tenantId {}",
                    p.name, p.tenant_id
                ));
            }
        }
        Ok(())
    }
}
