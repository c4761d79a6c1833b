//! `ContainmentPolicy`: who may contain what, where (design §6). Cluster-scoped, so only a
//! cluster administrator writes one; deny by default — a containment that no policy allows
//! is `Stalled/OutOfScope` and nothing is sent to Azure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which namespaces may use which kinds against which tenants, subscriptions and resource
/// groups; which assets no containment may touch; how much may happen at once.
#[derive(
    kube::CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq,
)]
#[kube(
    group = "containment.defenderc2.io",
    version = "v1alpha1",
    kind = "ContainmentPolicy",
    shortname = "cpol",
    category = "containment",
    status = "ContainmentPolicyStatus",
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspend"}"#,
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".status.coveredNamespaces"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ContainmentPolicySpec {
    /// The namespaces this policy covers: those named, and those whose labels match.
    pub namespaces: NamespaceSelector,
    /// What the covered namespaces may do. Nothing listed: nothing allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub allow: Vec<Allowance>,
    /// Assets no containment may touch, whichever namespace and policy it comes from.
    #[serde(default, skip_serializing_if = "Protected::is_empty")]
    pub protected: Protected,
    /// Blast radius: beyond these, new containments wait (existing ones stay enforced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Four eyes: containments of these kinds (or `"*"`) wait, Reconciling/AwaitingApproval,
    /// until a ContainmentApproval by someone other than the requester approves their current
    /// generation (Enforce only: DryRun and Observe send no write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// Pause everything this policy allows: no Azure call until false (deleting still releases).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.names) && size(self.names) > 0) || has(self.selector)").message("spec.namespaces: list names or give a selector"))]
pub struct NamespaceSelector {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub names: Vec<String>,
    /// Namespaces whose labels include all of these (`matchLabels: {}` covers every namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// One allowance: every list must match (an omitted list matches anything, except `tenants`,
/// which defaults to the operator's own tenant). `"*"` in a list matches anything.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Allowance {
    /// Kind names (e.g. `SqlIpBlock`), or `"*"` for every kind.
    #[schemars(length(min = 1, max = 64))]
    pub kinds: Vec<String>,
    /// Entra tenant ids. Omitted: the operator's default tenant only.
    #[serde(default)]
    #[schemars(length(max = 256))]
    #[schemars(inner(regex(
        pattern = r"^(\*|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )))]
    pub tenants: Vec<String>,
    /// Subscription ids. Omitted: any.
    #[serde(default)]
    #[schemars(length(max = 256))]
    #[schemars(inner(regex(
        pattern = r"^(\*|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )))]
    pub subscriptions: Vec<String>,
    /// Resource group names (case-insensitive). Omitted: any.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub resource_groups: Vec<String>,
    /// Namespaces other than the containment's own where it may write or read Secrets
    /// (StorageKeyRotation `publishTo`). Its own namespace is always allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub secret_namespaces: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Protected {
    /// ARM ids never contained: the resource and everything under it (a resource group or a
    /// subscription id protects all it holds). Case-insensitive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub resource_ids: Vec<String>,
    /// An Azure tag name: a target carrying it with the value `true` is never contained (read
    /// during observe by the kinds that read the target itself: SQL, WAF and Arc kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_tag: Option<String>,
    /// Entra object ids or user principal names never contained (break-glass accounts, the
    /// operator's own principal), for the kinds that act on identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub identities: Vec<String>,
    /// Defender for Endpoint device ids never contained, for the kinds that act on devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub devices: Vec<String>,
}

impl Protected {
    pub fn is_empty(&self) -> bool {
        self.resource_ids.is_empty()
            && self.azure_tag.is_none()
            && self.identities.is_empty()
            && self.devices.is_empty()
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    #[schemars(length(min = 1, max = 64))]
    pub kinds: Vec<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// At most this many Enforce containments of one kind admitted under this policy at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_active_per_kind: Option<i32>,
    /// No new containment is admitted once this many Azure writes were sent under this policy
    /// in the last hour (counted by this operator process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_writes_per_hour: Option<i32>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainmentPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The namespaces the policy covers now.
    #[serde(default)]
    pub covered_namespaces: Vec<String>,
}
