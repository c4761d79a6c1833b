//! SqlTransparentDataEncryption: `databases/{db}/transparentDataEncryption/current` kept at
//! `Enabled` for each listed database (azure-api-facts §3.8). Each database's state is a
//! lockdown field (`controls::lockdown`): first-seen values recorded, restored on release.

use serde_json::{Map, Value, json};

use super::sql_ip_block::SQL_API;
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::sql::SqlTransparentDataEncryption;
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

crate::impl_kind!(SqlTransparentDataEncryption, status: s => s);

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The server's Azure tags (the guard's protected tag).
    pub tags: Map<String, Value>,
    /// Each listed database's TDE state, or null when the database does not exist.
    pub states: Map<String, Value>,
}

fn tde(server: &str, db: &str) -> String {
    format!("{server}/databases/{db}/transparentDataEncryption/current")
}

/// One PUT per database whose state differs (2021-11-01 may answer 202: polled).
fn steps(server: &str, patch: Map<String, Value>) -> Vec<Step> {
    patch
        .into_iter()
        .map(|(db, state)| {
            let what = format!("set TDE {} on database {db}", state.as_str().unwrap_or("?"));
            Step::put(
                tde(server, &db),
                SQL_API,
                json!({"properties": {"state": state}}),
            )
            .lro()
            .what(what)
        })
        .collect()
}

pub fn plan(
    server: &str,
    databases: &[String],
    o: &Observed,
    status: &CommonStatus,
) -> Result<Assessment, Stall> {
    let missing: Vec<&str> = databases
        .iter()
        .filter(|d| o.states.get(d.as_str()).is_none_or(Value::is_null))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(Stall::new(
            "DatabaseNotFound",
            format!(
                "{server} has no database {} (spec.databases)",
                missing.join(", ")
            ),
        ));
    }
    let patch: Map<String, Value> = databases
        .iter()
        .filter(|d| o.states[d.as_str()] != "Enabled")
        .map(|d| (d.clone(), json!("Enabled")))
        .collect();
    if patch.is_empty() {
        return Ok(Assessment {
            message: format!("TDE Enabled on {}", databases.join(", ")),
            ..Default::default()
        });
    }
    let current = Value::Object(o.states.clone());
    let record = super::lockdown::record(status.restore.as_ref(), &patch, &current);
    Ok(Assessment {
        message: format!(
            "TDE not Enabled on {}",
            patch.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
        steps: steps(server, patch),
        record: Some(record),
        ..Default::default()
    })
}

#[derive(Default)]
pub struct SqlTransparentDataEncryptionControl;

#[async_trait::async_trait]
impl Control for SqlTransparentDataEncryptionControl {
    type K = SqlTransparentDataEncryption;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.Sql/servers";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    /// Resources on one server compose: the union of their databases.
    const COMPOSES: bool = true;
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Sql/servers/read",
        "Microsoft.Sql/servers/databases/transparentDataEncryption/read",
        "Microsoft.Sql/servers/databases/transparentDataEncryption/write",
        "Microsoft.Sql/locations/*/read",
    ];

    fn compose(&self, acc: &mut Self::K, other: &Self::K) -> Result<(), String> {
        for d in &other.spec.databases {
            if !acc.spec.databases.contains(d) {
                acc.spec.databases.push(d.clone());
            }
        }
        Ok(())
    }

    fn merge_restore(&self, older: &Value, newer: &Value) -> Value {
        super::lockdown::merge(older, newer)
    }

    fn tags(&self, observed: &Observed) -> Option<Map<String, Value>> {
        Some(observed.tags.clone())
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let server = az.arm.get(&t.id, SQL_API).await?;
        let mut states = Map::new();
        for db in &obj.spec.databases {
            let state = az
                .arm
                .find(&tde(&t.id, db), SQL_API)
                .await?
                .map_or(Value::Null, |r| r["properties"]["state"].clone());
            states.insert(db.clone(), state);
        }
        Ok(Observed {
            tags: super::tags_of(&server),
            states,
        })
    }

    fn assess(
        &self,
        obj: &Self::K,
        t: &ResourceId,
        o: &Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        plan(&t.id, &obj.spec.databases, o, status)
    }

    fn release(&self, _obj: &Self::K, t: &ResourceId, o: &Observed, restore: &Value) -> Vec<Step> {
        let current = Value::Object(o.states.clone());
        // A database gone since (null now) has nothing left to restore.
        let patch: Map<String, Value> = super::lockdown::release_patch(
            &current,
            restore,
            |_| json!("Enabled"),
            |_, a, b| a == b,
        )
        .into_iter()
        .filter(|(db, _)| !o.states.get(db).is_none_or(Value::is_null))
        .collect();
        steps(&t.id, patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(v: Value) -> Observed {
        Observed {
            tags: Map::new(),
            states: v.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn enables_only_what_is_off_and_records_it() {
        let dbs = vec!["orders".to_string(), "customers".to_string()];
        let o = observed(json!({"orders": "Disabled", "customers": "Enabled"}));
        let a = plan("/srv", &dbs, &o, &CommonStatus::default()).unwrap();
        assert_eq!(a.steps.len(), 1);
        assert_eq!(
            a.steps[0].path,
            "/srv/databases/orders/transparentDataEncryption/current"
        );
        assert_eq!(
            a.steps[0].body.as_ref().unwrap(),
            &json!({"properties": {"state": "Enabled"}})
        );
        assert_eq!(
            a.record.unwrap(),
            json!({"prior": {"orders": "Disabled"}, "owned": ["orders"]})
        );
        let done = observed(json!({"orders": "Enabled", "customers": "Enabled"}));
        assert!(
            plan("/srv", &dbs, &done, &CommonStatus::default())
                .unwrap()
                .steps
                .is_empty()
        );
    }

    #[test]
    fn a_missing_database_stalls_naming_it() {
        let dbs = vec!["orders".to_string(), "gone".to_string()];
        let o = observed(json!({"orders": "Disabled", "gone": null}));
        let e = plan("/srv", &dbs, &o, &CommonStatus::default()).unwrap_err();
        assert_eq!(e.reason, "DatabaseNotFound");
        assert!(e.message.contains("gone"), "{}", e.message);
    }
}
