//! Per-kind controls: what to observe, the pure assessment, and the release.

pub mod app_service_restart;
pub mod app_service_secret_rotation;
pub mod arc_isolation;
pub mod arc_run_command;
pub mod coalesce;
pub mod consent;
pub mod cosmos;
pub mod defender_alert;
pub mod device;
pub mod email_remediation;
pub mod indicator;
pub mod ipv4;
pub mod lockdown;
pub mod machine_action;
pub mod nsg;
pub mod privileged_access;
pub mod rotation;
pub mod service_principal;
pub mod sql_admin_password;
pub mod sql_auditing;
pub mod sql_entra_only;
pub mod sql_ip_block;
pub mod sql_public_access;
pub mod sql_tde;
pub mod storage_defender;
pub mod storage_key_rotation;
pub mod storage_public_access;
pub mod storage_sas_revocation;
pub mod storage_soft_delete;
pub mod threat_submission;
pub mod user;
pub mod waf;

/// An ARM resource's tags, as the guard's protected-tag check reads them.
pub fn tags_of(resource: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    resource["tags"].as_object().cloned().unwrap_or_default()
}

/// The text values of a Secret in `ns` that a spec field names: a missing Secret or a value
/// that is not UTF-8 is a configuration error naming `field` (the resource goes Stalled).
pub async fn secret_text(
    kube: &kube::Client,
    ns: &str,
    name: &str,
    field: &str,
) -> Result<std::collections::BTreeMap<String, String>, crate::azure::AzureError> {
    use crate::azure::AzureError;
    let secret = kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(kube.clone(), ns)
        .get_opt(name)
        .await
        .map_err(|e| AzureError::from_secret_access(e, format!("GET Secret {ns}/{name}")))?
        .ok_or_else(|| AzureError::Config(format!("{field}: Secret {ns}/{name} does not exist")))?;
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            String::from_utf8(v.0).map(|v| (k.clone(), v)).map_err(|_| {
                AzureError::Config(format!(
                    "{field}: the value of {k} in Secret {ns}/{name} is not UTF-8 text"
                ))
            })
        })
        .collect()
}
