//! The CRD types: shared fields in `common`, one module per Azure service.

pub mod common;
pub mod sql;
pub mod storage;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD this operator serves, in a stable order (the source of `crds/`).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        sql::SqlIpBlock::crd(),
        sql::SqlPublicAccessLockdown::crd(),
        storage::StorageKeyRotation::crd(),
        storage::StoragePublicAccessLockdown::crd(),
    ]
}
