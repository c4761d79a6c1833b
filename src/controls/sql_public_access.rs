//! SqlPublicAccessLockdown: the server's public network access stays Disabled. Azure refuses
//! that while the server has no private endpoint, so that case is a clear Stall, not a retry loop.

use serde_json::{Value, json};

use super::sql_ip_block::SQL_API;
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::sql::SqlPublicAccessLockdown;
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

crate::impl_kind!(SqlPublicAccessLockdown, status: s => s);

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The target's Azure tags (the guard's protected tag).
    pub tags: serde_json::Map<String, Value>,
    pub public_network_access: Option<String>,
    pub private_endpoints: usize,
}

fn set_access(server: &str, value: &str) -> Step {
    Step::patch(
        server.to_string(),
        SQL_API,
        json!({"properties": {"publicNetworkAccess": value}}),
    )
    .lro()
    .what(format!("set public network access to {value}"))
}

pub fn plan(server: &str, o: &Observed, status: &CommonStatus) -> Result<Assessment, Stall> {
    let current = o.public_network_access.as_deref().unwrap_or("Enabled");
    if current == "Disabled" {
        return Ok(Assessment {
            message: "public network access is Disabled".into(),
            ..Default::default()
        });
    }
    if o.private_endpoints == 0 {
        return Err(Stall::new(
            "PrivateEndpointRequired",
            format!(
                "{server} has no private endpoint; Azure refuses to disable public network access without one (PECsNotExistingToDenyPublicNetworkAccess). Add a private endpoint, or use SqlIpBlock"
            ),
        ));
    }
    Ok(Assessment {
        steps: vec![set_access(server, "Disabled")],
        message: format!("public network access is {current}"),
        // Keep the first recorded prior state across drift corrections.
        record: Some(
            status
                .restore
                .clone()
                .unwrap_or_else(|| json!({"publicNetworkAccess": current})),
        ),
        ..Default::default()
    })
}

#[derive(Default)]
pub struct SqlPublicAccessLockdownControl;

#[async_trait::async_trait]
impl Control for SqlPublicAccessLockdownControl {
    type K = SqlPublicAccessLockdown;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.Sql/servers";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const SHARED_OBSERVATION: bool = true;
    /// Every one of them wants the same (Disabled): they share the record, the last one restores.
    const COMPOSES: bool = true;
    // The PATCH is long-running; SQL's operation status URLs
    // (`…/resourceGroups/{rg}/providers/Microsoft.Sql/locations/{l}/serverAzureAsyncOperation/…`)
    // have no action of their own in Microsoft's published list, so a custom role can only
    // cover them with the wildcard the SQL built-in roles use.
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Sql/servers/read",
        "Microsoft.Sql/servers/write",
        "Microsoft.Sql/locations/*/read",
    ];

    fn tags(&self, observed: &Observed) -> Option<serde_json::Map<String, Value>> {
        Some(observed.tags.clone())
    }

    async fn observe(
        &self,
        az: &Clients,
        _obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let s = az.arm.get(&t.id, SQL_API).await?;
        Ok(Observed {
            tags: super::tags_of(&s),
            public_network_access: s["properties"]["publicNetworkAccess"]
                .as_str()
                .map(str::to_string),
            private_endpoints: s["properties"]["privateEndpointConnections"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0),
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
        let prior = restore["publicNetworkAccess"].as_str().unwrap_or("Enabled");
        if o.public_network_access.as_deref() == Some(prior) {
            return Vec::new();
        }
        vec![set_access(&t.id, prior)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disables_records_and_stalls_without_private_endpoint() {
        let open = Observed {
            tags: Default::default(),
            public_network_access: Some("Enabled".into()),
            private_endpoints: 1,
        };
        let a = plan("/srv", &open, &CommonStatus::default()).unwrap();
        assert_eq!(a.steps.len(), 1);
        assert!(a.steps[0].lro);
        assert_eq!(
            a.steps[0].body.as_ref().unwrap()["properties"]["publicNetworkAccess"],
            "Disabled"
        );
        assert_eq!(a.record.unwrap()["publicNetworkAccess"], "Enabled");
        let closed = Observed {
            tags: Default::default(),
            public_network_access: Some("Disabled".into()),
            private_endpoints: 1,
        };
        assert!(
            plan("/srv", &closed, &CommonStatus::default())
                .unwrap()
                .steps
                .is_empty()
        );
        let no_pe = Observed {
            tags: Default::default(),
            public_network_access: Some("Enabled".into()),
            private_endpoints: 0,
        };
        assert_eq!(
            plan("/srv", &no_pe, &CommonStatus::default())
                .unwrap_err()
                .reason,
            "PrivateEndpointRequired"
        );
    }

    #[test]
    fn release_puts_back_the_prior_value_only_if_needed() {
        let c = SqlPublicAccessLockdownControl;
        let obj: SqlPublicAccessLockdown = serde_json::from_value(json!({
            "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "SqlPublicAccessLockdown",
            "metadata": {"name": "x"}, "spec": {"target": {"resourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Sql/servers/x"}}
        }))
        .unwrap();
        let t =
            crate::azure::resource_id::resolve(&obj.spec.common.target, "Microsoft.Sql/servers")
                .unwrap();
        let closed = Observed {
            tags: Default::default(),
            public_network_access: Some("Disabled".into()),
            private_endpoints: 1,
        };
        let steps = c.release(
            &obj,
            &t,
            &closed,
            &json!({"publicNetworkAccess": "Enabled"}),
        );
        assert_eq!(
            steps[0].body.as_ref().unwrap()["properties"]["publicNetworkAccess"],
            "Enabled"
        );
        let open = Observed {
            tags: Default::default(),
            public_network_access: Some("Enabled".into()),
            private_endpoints: 1,
        };
        assert!(
            c.release(&obj, &t, &open, &json!({"publicNetworkAccess": "Enabled"}))
                .is_empty()
        );
    }
}
