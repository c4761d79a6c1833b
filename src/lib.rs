//! containment-operator: declarative Azure and Microsoft security containment for Kubernetes.

pub mod api;
pub mod azure;
pub mod controls;
pub mod engine;
pub mod guard;
pub mod kinds;
pub mod metrics;
pub mod overview;
pub mod permissions;
pub mod run;

/// All CRDs as one multi-document YAML stream (what `containment-operator crds` prints and
/// `crds/` holds).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in api::crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

/// The API reference (`docs/api.md`), generated from the CRD schemas.
pub fn api_reference() -> String {
    api::reference::markdown(&api::crds())
}
