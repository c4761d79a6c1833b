//! The CRD types: shared fields in `common`, one module per Azure service.

/// Declares a kind: the shared group/version, namespaced scope, category `containment` and the
/// printer columns every kind shows (api-contract §2), then the spec struct as written.
macro_rules! containment_kind {
    (kind = $kind:tt, shortname = $short:tt, status = $status:tt, $($item:tt)*) => {
        #[derive(kube::CustomResource, kube::KubeSchema, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
        #[kube(
            group = "containment.defenderc2.io", version = "v1alpha1", kind = $kind, namespaced,
            status = $status, shortname = $short, category = "containment",
            printcolumn = r#"{"name":"Target","type":"string","jsonPath":".status.targetName"}"#,
            printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
            printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
            printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
            printcolumn = r#"{"name":"Drifts","type":"integer","jsonPath":".status.driftCount"}"#,
            printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
            printcolumn = r#"{"name":"Resource","type":"string","priority":1,"jsonPath":".status.target"}"#,
            printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
        )]
        #[serde(rename_all = "camelCase")]
        $($item)*
    };
}

pub mod approval;
pub mod arc;
pub mod common;
pub mod cosmos;
pub mod device;
pub mod graph;
pub mod identity;
pub mod indicator;
pub mod network;
pub mod policy;
pub mod reference;
pub mod security;
pub mod sql;
pub mod storage;
pub mod web;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD this operator serves, in a stable order (the source of `crds/`): the kinds of
/// `kinds::KINDS` (one registration per kind), then the guard's.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut all = crate::kinds::crds();
    all.push(policy::ContainmentPolicy::crd());
    all.push(approval::ContainmentApproval::crd());
    all
}
