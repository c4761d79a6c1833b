//! One JSON audit line per Azure write: who asked (the resource and its last field manager),
//! what, on which target, the result, and Azure's request id. Never a secret: bodies of key
//! operations carry only key names.

use kube::Resource;
use kube::api::ObjectMeta;

use super::FIELD_MANAGER;

/// The last manager (other than us) that wrote the spec: who asked for this containment.
/// Managers that only touched metadata (e.g. the finalizer) do not count.
pub fn requested_by(meta: &ObjectMeta) -> String {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() != Some(FIELD_MANAGER))
        .filter(|m| m.subresource.as_deref().unwrap_or_default().is_empty())
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_none_or(|f| f.0.get("f:spec").is_some())
        })
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| m.manager.clone())
        .unwrap_or_else(|| "unknown".into())
}

pub struct Write<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub api_version: &'a str,
    pub what: &'a str,
    pub result: &'a str,
    pub status: Option<u16>,
    pub request_id: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
}

pub fn record<K: Resource<DynamicType = ()>>(obj: &K, reason: Option<&str>, w: &Write<'_>) {
    let meta = obj.meta();
    tracing::info!(
        target: "audit",
        audit = true,
        kind = %K::kind(&()),
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        name = meta.name.as_deref().unwrap_or_default(),
        requested_by = %requested_by(meta),
        reason = reason.unwrap_or_default(),
        method = w.method,
        path = w.path,
        api_version = w.api_version,
        what = w.what,
        result = w.result,
        status = w.status.unwrap_or_default(),
        request_id = w.request_id.unwrap_or_default(),
        correlation_id = w.correlation_id.unwrap_or_default(),
        "azure write"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    fn entry(manager: &str, sub: Option<&str>, t: i64) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                serde_json::json!({"f:spec": {}}),
            )),
            subresource: sub.map(Into::into),
            time: Some(Time(jiff::Timestamp::from_second(t).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn requested_by_is_the_latest_spec_writer_but_us() {
        let meta = ObjectMeta {
            managed_fields: Some(vec![
                entry("kubectl-client-side-apply", None, 10),
                entry("flux", None, 20),
                entry(FIELD_MANAGER, None, 30),
                entry("someone", Some("status"), 40),
                ManagedFieldsEntry {
                    manager: Some("finalizer-writer".into()),
                    fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
                        serde_json::json!({"f:metadata": {"f:finalizers": {}}}),
                    )),
                    time: Some(Time(jiff::Timestamp::from_second(50).unwrap())),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        assert_eq!(requested_by(&meta), "flux");
        assert_eq!(requested_by(&ObjectMeta::default()), "unknown");
    }
}
