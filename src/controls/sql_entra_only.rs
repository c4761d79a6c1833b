//! SqlEntraOnlyAuthentication: `azureADOnlyAuthentications/Default` kept at `true`, so no SQL
//! login (password) can sign in — the real answer to a leaked or guessed SQL admin password
//! (azure-api-facts §3.8; the seed's "RotateSQLPassword" path does not exist). Azure refuses the
//! PUT while the server has no Entra admin, so that is a Stall, never a retry loop.

use serde_json::{Map, Value, json};

use super::sql_ip_block::SQL_API;
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::sql::SqlEntraOnlyAuthentication;
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

crate::impl_kind!(SqlEntraOnlyAuthentication, status: s => s);

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The server's Azure tags (the guard's protected tag).
    pub tags: Map<String, Value>,
    pub entra_only: bool,
    /// The Entra admin's login, if one is set.
    pub admin: Option<String>,
}

fn set_entra_only(server: &str, on: bool) -> Step {
    Step::put(
        format!("{server}/azureADOnlyAuthentications/Default"),
        SQL_API,
        json!({"properties": {"azureADOnlyAuthentication": on}}),
    )
    .lro()
    .what(if on {
        "turn SQL authentication off (Entra only)"
    } else {
        "turn SQL authentication back on"
    })
}

pub fn plan(server: &str, o: &Observed, status: &CommonStatus) -> Result<Assessment, Stall> {
    if o.entra_only {
        return Ok(Assessment {
            message: format!(
                "Entra-only authentication on (Entra admin {})",
                o.admin.as_deref().unwrap_or("not set")
            ),
            ..Default::default()
        });
    }
    let Some(_) = &o.admin else {
        return Err(Stall::new(
            "EntraAdminRequired",
            format!(
                "{server} has no Entra admin; Azure refuses Entra-only authentication without one (InvalidServerAADOnlyAuthNoAADAdminPropertyName). Set the server's Microsoft Entra admin, then this applies"
            ),
        ));
    };
    Ok(Assessment {
        steps: vec![set_entra_only(server, true)],
        message: "SQL authentication is allowed".into(),
        // Keep the first recorded prior state across drift corrections.
        record: Some(
            status
                .restore
                .clone()
                .unwrap_or_else(|| json!({"azureADOnlyAuthentication": false})),
        ),
        ..Default::default()
    })
}

#[derive(Default)]
pub struct SqlEntraOnlyAuthenticationControl;

#[async_trait::async_trait]
impl Control for SqlEntraOnlyAuthenticationControl {
    type K = SqlEntraOnlyAuthentication;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.Sql/servers";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const SHARED_OBSERVATION: bool = true;
    /// Every one of them wants the same (on): they share the record, the last one restores.
    const COMPOSES: bool = true;
    /// The operation status URLs are under `Microsoft.Sql/locations/…` (see
    /// SqlPublicAccessLockdown); SQL Server Contributor excludes this write, SQL Security
    /// Manager has it.
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Sql/servers/read",
        "Microsoft.Sql/servers/administrators/read",
        "Microsoft.Sql/servers/azureADOnlyAuthentications/read",
        "Microsoft.Sql/servers/azureADOnlyAuthentications/write",
        "Microsoft.Sql/locations/*/read",
    ];

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
        let auth = az
            .arm
            .get(
                &format!("{}/azureADOnlyAuthentications/Default", t.id),
                SQL_API,
            )
            .await?;
        let admin = az
            .arm
            .find(&format!("{}/administrators/ActiveDirectory", t.id), SQL_API)
            .await?
            .map(|a| a["properties"]["login"].as_str().unwrap_or("?").to_string());
        Ok(Observed {
            tags: super::tags_of(&server),
            entra_only: auth["properties"]["azureADOnlyAuthentication"] == true,
            admin,
        })
    }

    fn assess(
        &self,
        _obj: &Self::K,
        t: &ResourceId,
        o: &Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        plan(&t.id, o, status)
    }

    fn release(&self, _obj: &Self::K, t: &ResourceId, o: &Observed, restore: &Value) -> Vec<Step> {
        let prior = restore["azureADOnlyAuthentication"] == true;
        if o.entra_only == prior {
            return Vec::new();
        }
        vec![set_entra_only(&t.id, prior)]
    }

    fn after_steps(&self, observed: &Observed, steps: &[Step]) -> Option<Observed> {
        let last = steps.last()?;
        Some(Observed {
            entra_only: last.body.as_ref()?["properties"]["azureADOnlyAuthentication"] == true,
            ..observed.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(entra_only: bool, admin: Option<&str>) -> Observed {
        Observed {
            tags: Map::new(),
            entra_only,
            admin: admin.map(str::to_string),
        }
    }

    #[test]
    fn turns_sql_auth_off_records_and_stalls_without_an_admin() {
        let a = plan(
            "/srv",
            &observed(false, Some("sql-admins")),
            &CommonStatus::default(),
        )
        .unwrap();
        assert_eq!(a.steps.len(), 1);
        assert!(a.steps[0].lro);
        assert_eq!(a.steps[0].path, "/srv/azureADOnlyAuthentications/Default");
        assert_eq!(
            a.steps[0].body.as_ref().unwrap(),
            &json!({"properties": {"azureADOnlyAuthentication": true}})
        );
        assert_eq!(a.record.unwrap()["azureADOnlyAuthentication"], false);
        let done = plan(
            "/srv",
            &observed(true, Some("sql-admins")),
            &CommonStatus::default(),
        )
        .unwrap();
        assert!(done.steps.is_empty());
        assert!(done.message.contains("sql-admins"), "{}", done.message);
        let e = plan("/srv", &observed(false, None), &CommonStatus::default()).unwrap_err();
        assert_eq!(e.reason, "EntraAdminRequired");
    }

    #[test]
    fn release_turns_it_back_only_if_it_was_off() {
        let c = SqlEntraOnlyAuthenticationControl;
        let obj: SqlEntraOnlyAuthentication = serde_json::from_value(json!({
            "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "SqlEntraOnlyAuthentication",
            "metadata": {"name": "x"}, "spec": {"target": {"resourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/servers/x"}}
        }))
        .unwrap();
        let t =
            crate::azure::resource_id::resolve(&obj.spec.common.target, "Microsoft.Sql/servers")
                .unwrap();
        let on = observed(true, Some("a"));
        let steps = c.release(&obj, &t, &on, &json!({"azureADOnlyAuthentication": false}));
        assert_eq!(
            steps[0].body.as_ref().unwrap()["properties"]["azureADOnlyAuthentication"],
            false
        );
        assert!(
            c.release(&obj, &t, &on, &json!({"azureADOnlyAuthentication": true}))
                .is_empty()
        );
    }
}
