//! SqlAuditing: `auditingSettings/default` kept Enabled with this resource's destinations and
//! action groups (azure-api-facts §3.8). The settings are written whole (long-running PUT), so
//! what this resource does not ask for is carried as read; the whole prior settings are recorded
//! and put back on release. Azure never returns a storage account key, and none is sent: with
//! a storage endpoint the server's managed identity writes the logs.

use serde_json::{Map, Value, json};

use super::sql_ip_block::SQL_API;
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::sql::{SqlAuditing, SqlAuditingSpec};
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

crate::impl_kind!(SqlAuditing, status: s => s);

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The server's Azure tags (the guard's protected tag).
    pub tags: Map<String, Value>,
    /// `auditingSettings/default` `properties` as read.
    pub settings: Value,
}

fn settings(server: &str) -> String {
    format!("{server}/auditingSettings/default")
}

/// The settings that satisfy `spec`, built on `current`.
pub fn desired(spec: &SqlAuditingSpec, current: &Value) -> Value {
    let mut p = current.as_object().cloned().unwrap_or_default();
    // A key may be write-only state on Azure's side; it is never carried.
    p.remove("storageAccountAccessKey");
    p.insert("state".into(), json!("Enabled"));
    if let Some(endpoint) = &spec.storage_endpoint {
        p.insert("storageEndpoint".into(), json!(endpoint));
        p.insert("isManagedIdentityInUse".into(), json!(true));
        p.insert("retentionDays".into(), json!(spec.retention_days));
    }
    if spec.azure_monitor {
        p.insert("isAzureMonitorTargetEnabled".into(), json!(true));
    }
    let mut groups: Vec<Value> = p
        .get("auditActionsAndGroups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for g in &spec.audit_actions_and_groups {
        if !groups.iter().any(|x| x == g) {
            groups.push(json!(g));
        }
    }
    p.insert("auditActionsAndGroups".into(), Value::Array(groups));
    Value::Object(p)
}

fn put_step(server: &str, props: Value, what: &str) -> Step {
    Step::put(settings(server), SQL_API, json!({"properties": props}))
        .lro()
        .what(what)
}

fn summary(spec: &SqlAuditingSpec) -> String {
    let mut to = Vec::new();
    if let Some(e) = &spec.storage_endpoint {
        to.push(format!("{e} ({} days)", spec.retention_days));
    }
    if spec.azure_monitor {
        to.push("Azure Monitor".into());
    }
    format!(
        "auditing Enabled to {}, {} action group(s)",
        to.join(" and "),
        spec.audit_actions_and_groups.len()
    )
}

#[derive(Default)]
pub struct SqlAuditingControl;

#[async_trait::async_trait]
impl Control for SqlAuditingControl {
    type K = SqlAuditing;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.Sql/servers";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const SHARED_OBSERVATION: bool = true;
    /// One auditing setting per server: resources on it want the union.
    const COMPOSES: bool = true;
    /// SQL Security Manager has these; SQL Server Contributor excludes auditing (facts §3.8).
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Sql/servers/read",
        "Microsoft.Sql/servers/auditingSettings/read",
        "Microsoft.Sql/servers/auditingSettings/write",
        "Microsoft.Sql/locations/*/read",
    ];

    fn compose(&self, acc: &mut Self::K, other: &Self::K) -> Result<(), String> {
        let (a, b) = (&mut acc.spec, &other.spec);
        match (&a.storage_endpoint, &b.storage_endpoint) {
            (Some(x), Some(y)) if x.trim_end_matches('/') != y.trim_end_matches('/') => {
                return Err(format!(
                    "both send auditing to a storage account, and they differ ({x} vs {y})"
                ));
            }
            (None, Some(_)) => {
                a.storage_endpoint = b.storage_endpoint.clone();
                a.retention_days = b.retention_days;
            }
            _ => {}
        }
        if a.retention_days != 0 && (b.retention_days == 0 || b.retention_days > a.retention_days) {
            a.retention_days = b.retention_days;
        }
        a.azure_monitor |= b.azure_monitor;
        for g in &b.audit_actions_and_groups {
            if !a.audit_actions_and_groups.contains(g) {
                a.audit_actions_and_groups.push(g.clone());
            }
        }
        Ok(())
    }

    fn tags(&self, observed: &Observed) -> Option<Map<String, Value>> {
        Some(observed.tags.clone())
    }

    async fn observe(
        &self,
        az: &Clients,
        _obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let server = az.arm.get(&t.id, SQL_API).await?;
        let mut s = az.arm.get(&settings(&t.id), SQL_API).await?;
        Ok(Observed {
            tags: super::tags_of(&server),
            settings: s["properties"].take(),
        })
    }

    fn assess(
        &self,
        obj: &Self::K,
        t: &ResourceId,
        o: &Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let want = desired(&obj.spec, &o.settings);
        let mut read = o.settings.clone();
        if let Some(m) = read.as_object_mut() {
            m.remove("storageAccountAccessKey");
        }
        if read == want {
            return Ok(Assessment {
                message: summary(&obj.spec),
                ..Default::default()
            });
        }
        Ok(Assessment {
            steps: vec![put_step(&t.id, want, "enable server auditing")],
            message: format!(
                "auditing {} or not as asked",
                o.settings["state"].as_str().unwrap_or("Disabled")
            ),
            record: Some(
                status
                    .restore
                    .clone()
                    .unwrap_or_else(|| json!({"settings": read})),
            ),
            ..Default::default()
        })
    }

    fn release(&self, _obj: &Self::K, t: &ResourceId, o: &Observed, restore: &Value) -> Vec<Step> {
        let prior = &restore["settings"];
        if prior.is_null() || &o.settings == prior {
            return Vec::new();
        }
        vec![put_step(&t.id, prior.clone(), "restore server auditing")]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> SqlAuditingSpec {
        let mut base = json!({"target": {"resourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/servers/x"}});
        for (k, x) in v.as_object().unwrap() {
            base[k] = x.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn enables_with_identity_keeps_extra_groups_and_never_carries_a_key() {
        let s = spec(json!({"storageEndpoint": "https://staudit.blob.core.windows.net/"}));
        let current = json!({"state": "Disabled", "retentionDays": 0, "storageAccountAccessKey": "k",
            "auditActionsAndGroups": ["DATABASE_LOGOUT_GROUP"], "isAzureMonitorTargetEnabled": false});
        let want = desired(&s, &current);
        assert_eq!(want["state"], "Enabled");
        assert_eq!(want["isManagedIdentityInUse"], true);
        assert_eq!(want["retentionDays"], 90);
        assert!(want.get("storageAccountAccessKey").is_none());
        assert_eq!(want["isAzureMonitorTargetEnabled"], false);
        assert_eq!(
            want["auditActionsAndGroups"],
            json!([
                "DATABASE_LOGOUT_GROUP",
                "BATCH_COMPLETED_GROUP",
                "SUCCESSFUL_DATABASE_AUTHENTICATION_GROUP",
                "FAILED_DATABASE_AUTHENTICATION_GROUP"
            ])
        );
        // Applied: compliant.
        assert_eq!(desired(&s, &want), want);
    }

    #[test]
    fn composition_unions_and_two_storage_accounts_conflict() {
        let c = SqlAuditingControl;
        let mut a = SqlAuditing::new(
            "a",
            spec(json!({"azureMonitor": true, "auditActionsAndGroups": ["A"]})),
        );
        let b = SqlAuditing::new(
            "b",
            spec(
                json!({"storageEndpoint": "https://st1.blob.core.windows.net/", "retentionDays": 30, "auditActionsAndGroups": ["B"]}),
            ),
        );
        c.compose(&mut a, &b).unwrap();
        assert!(a.spec.azure_monitor);
        assert_eq!(a.spec.retention_days, 30);
        assert_eq!(a.spec.audit_actions_and_groups, ["A", "B"]);
        let other = SqlAuditing::new(
            "c",
            spec(json!({"storageEndpoint": "https://st2.blob.core.windows.net/"})),
        );
        assert!(c.compose(&mut a, &other).unwrap_err().contains("st2"));
    }
}
