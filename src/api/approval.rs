//! `ContainmentApproval`: a second person's approval of one generation of a containment, for
//! the kinds a ContainmentPolicy names under `approval.kinds` (four eyes). Who is who is the API
//! server's business: the chart's ValidatingAdmissionPolicy requires `approver` to be the user
//! creating the approval (and approvals to be immutable), and a containment's
//! `containment.defenderc2.io/requested-by` annotation to be the user writing its spec; the
//! operator accepts an approval only from someone other than the requester.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

#[derive(
    kube::CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq,
)]
#[kube(
    group = "containment.defenderc2.io",
    version = "v1alpha1",
    kind = "ContainmentApproval",
    shortname = "capr",
    namespaced,
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.target.kind"}"#,
    printcolumn = r#"{"name":"Name","type":"string","jsonPath":".spec.target.name"}"#,
    printcolumn = r#"{"name":"Generation","type":"integer","jsonPath":".spec.target.generation"}"#,
    printcolumn = r#"{"name":"Approver","type":"string","jsonPath":".spec.approver"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ContainmentApprovalSpec {
    /// The containment approved, in this namespace, at exactly this `metadata.generation`
    /// (a spec change needs a new approval).
    pub target: ApprovedTarget,
    /// The approving user, exactly as the API server names them (checked at admission to be
    /// the user creating this approval).
    #[schemars(length(min = 1, max = 512))]
    pub approver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub comment: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApprovedTarget {
    /// The containment's kind, e.g. `ArcIsolation`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(range(min = 1))]
    pub generation: i64,
}
