//! Fields and status shared by every kind (api-contract §1–2).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The Azure object a control applies to: either `resourceId`, or `subscriptionId` +
/// `resourceGroup` + `name`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.resourceId) && (has(self.subscriptionId) || has(self.resourceGroup) || has(self.name)))").message("spec.target: set either resourceId or subscriptionId + resourceGroup + name, not both"))]
#[x_kube(validation = Rule::new("has(self.resourceId) || (has(self.subscriptionId) && has(self.resourceGroup) && has(self.name))").message("spec.target: set resourceId, or all three of subscriptionId, resourceGroup and name"))]
pub struct Target {
    /// Full ARM id, e.g. `/subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.Sql/servers/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    // Segments reach request URLs: no query, fragment, escape, whitespace or dot segments.
    #[x_kube(validation = Rule::new("self.matches('^/subscriptions/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(/resourceGroups/[-\\\\w._()]{1,90})?/providers/[A-Za-z0-9.]+/[^/?#%\\\\\\\\\\\\s]+/[^/?#%\\\\\\\\\\\\s]+(/[^/?#%\\\\\\\\\\\\s]+/[^/?#%\\\\\\\\\\\\s]+)*$')").message("spec.target.resourceId must be an ARM resource id: /subscriptions/<guid>[/resourceGroups/<name>]/providers/<namespace>/<type>/<name>, with no '?', '#', '%', backslash or whitespace"))]
    #[x_kube(validation = Rule::new("!self.matches('/[.]{1,2}(/|$)')").message("spec.target.resourceId: no segment may be '.' or '..'"))]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')").message("spec.target.subscriptionId must be a GUID"))]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 90))]
    #[x_kube(validation = Rule::new("self.matches('^[-\\\\w._()]{1,90}$') && !self.endsWith('.')").message("spec.target.resourceGroup must be 1-90 letters, digits, '-', '_', '.', '(' or ')' and not end with '.'"))]
    pub resource_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 260))]
    #[x_kube(validation = Rule::new("self.matches('^[^/?#%\\\\\\\\\\\\s]+$') && self != '.' && self != '..'").message("spec.target.name must be one resource name: no '/', '?', '#', '%', backslash or whitespace, and not '.' or '..'"))]
    pub name: Option<String>,
}

/// What the controller does with the desired state.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum Mode {
    /// Apply the control and keep it applied.
    #[default]
    Enforce,
    /// Compute and publish the exact plan in status; change nothing.
    DryRun,
    /// Report compliance only.
    Observe,
}

/// What happens on delete.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleasePolicy {
    /// Put back the prior state recorded before the first write.
    Restore,
    /// Leave the control in force.
    Retain,
}

/// Status shared by every kind; kind-specific evidence sits beside it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The resolved ARM id of the target (shown by `kubectl get -o wide`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The target in short, its name (shown by `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<String>,
    /// Ready, Reconciling and Stalled (kstatus semantics).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_time: Option<Time>,
    #[serde(default)]
    pub drift_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drift_time: Option<Time>,
    /// DryRun / Observe: the exact requests Enforce would send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<String>,
    /// The prior state recorded before the first write (used on release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown")]
    pub restore: Option<serde_json::Value>,
    /// Other Enforce containments of this kind on the same target (`namespace/name`): what is
    /// applied satisfies them all, and the prior state comes back only when the last one goes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureStatus>,
    /// One-shot actions: the ledger of the current or last run (intent is recorded here before
    /// Azure is called, so a crash never repeats the action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionLedger>,
    /// When the containment was released because `expiresAt` passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_time: Option<Time>,
    /// The last value of the `containment.defenderc2.io/reconcile-requested-at` annotation a
    /// reconcile handled (Flux's convention), so that scripts can wait for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The ContainmentPolicy that allowed this containment (none: not allowed, nothing sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The operator's seal over `restore`, `action` and `policy` (an HMAC only it can make):
    /// a record it did not write is never acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_seal: Option<String>,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum ActionPhase {
    #[default]
    InProgress,
    Completed,
}

/// The one-shot ledger.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActionLedger {
    /// Which run this is: `created`, `trigger:<value>`, with `@<time>` for scheduled runs.
    pub run_id: String,
    pub phase: ActionPhase,
    pub started_time: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_time: Option<Time>,
    /// What Azure showed before the first call (e.g. key creation times), to prove completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown")]
    pub evidence: Option<serde_json::Value>,
    /// Steps of this run that succeeded in Azure: answered 2xx, and their long-running
    /// operation ended Succeeded (so a lagging read never causes a repeat).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub done: Vec<String>,
    /// Non-idempotent calls sent whose outcome is not known yet (intent recorded before the
    /// call). Such a call is never sent again until Azure's evidence or its operation resolves
    /// it, or the wait for them has run out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<SentStep>,
}

/// A non-idempotent call that may have taken effect.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SentStep {
    pub what: String,
    pub time: Time,
    /// Its long-running operation, once Azure answered with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
}

/// Correlation with Azure's Activity Log.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_correlation_id: Option<String>,
    /// The long-running operation being polled, so a restart resumes instead of re-issuing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_operation: Option<String>,
    /// How it is polled: its `Azure-AsyncOperation` URL, its `Location` URL, or the resource's
    /// `provisioningState`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_operation_via: Option<crate::azure::OperationVia>,
}

fn preserve_unknown(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

/// The common spec fields, flattened into every kind's spec.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommonSpec {
    pub target: Target,
    #[serde(default)]
    pub mode: Mode,
    /// Default per kind: Restore for reversible controls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_policy: Option<ReleasePolicy>,
    /// Free text copied into events and the audit log (e.g. an incident number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub reason: Option<String>,
    /// Release automatically at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Pause (Flux's convention): while true nothing is observed, applied, corrected or
    /// expired; Reconciling=True with reason Suspended. Deleting the resource still releases.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// The tenant every call for this containment is made in (default: the operator's own);
    /// another one must be among the operator's --additional-tenants and a policy's tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')").message("spec.tenantId must be a GUID"))]
    pub tenant_id: Option<String>,
}

/// The common fields of a containment whose target is not an ARM resource (a Defender for
/// Endpoint device, an Entra identity): everything in [`CommonSpec`] but `target`, which each
/// such kind declares in its own terms.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantCommonSpec {
    #[serde(default)]
    pub mode: Mode,
    /// Default per kind: Restore for reversible controls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_policy: Option<ReleasePolicy>,
    /// Free text copied into events and the audit log (e.g. an incident number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub reason: Option<String>,
    /// Release automatically at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// Pause (Flux's convention): while true nothing is observed, applied, corrected or
    /// expired; Reconciling=True with reason Suspended. Deleting the resource still releases.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// The tenant every call for this containment is made in (default: the operator's own);
    /// another one must be among the operator's --additional-tenants and a policy's tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')").message("spec.tenantId must be a GUID"))]
    pub tenant_id: Option<String>,
}

impl TenantCommonSpec {
    /// The engine's view: the same fields, with no ARM target.
    pub fn to_common(&self) -> CommonSpec {
        CommonSpec {
            target: Target::default(),
            mode: self.mode,
            release_policy: self.release_policy,
            reason: self.reason.clone(),
            expires_at: self.expires_at.clone(),
            suspend: self.suspend,
            tenant_id: self.tenant_id.clone(),
        }
    }
}
