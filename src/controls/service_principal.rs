//! ServicePrincipalContainment: a rogue or compromised app is cut off — its service principal
//! disabled, optionally its delegated grants and app-role assignments removed (recorded and
//! re-created on release), and on request its client secrets removed once per trigger
//! (irreversible). Microsoft first-party apps and the operator's own principal are refused
//! (azure-api-facts §3.24).

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::identity::{ServicePrincipalContainment, ServicePrincipalTarget};
use crate::azure::{AzureError, Clients, ResourceId, Service, odata_eq_filter};
use crate::engine::{Assessment, Control, Stall, Step, Subject};

/// `appOwnerOrganizationId` of Microsoft's own (first-party) applications.
pub const MICROSOFT_TENANT: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";
const SELECT: &str = "id,appId,displayName,accountEnabled,appOwnerOrganizationId";
const GRANT_KEY: &[&str] = &["clientId", "consentType", "principalId", "resourceId"];
const ASSIGNMENT_KEY: &[&str] = &["resourceId", "appRoleId"];

crate::impl_kind!(ServicePrincipalContainment, tenant, trigger);

/// The service principal and what it holds, as Graph shows them.
#[derive(Debug, Clone, Default)]
pub struct App {
    pub asked: String,
    pub sp: Option<Value>,
    /// Read only when removed or recorded for release.
    pub grants: Option<Vec<Value>>,
    pub assignments: Option<Vec<Value>>,
    /// Its application registration (with removePasswordCredentials); `Some(Null)`: the app is
    /// registered in another tenant.
    pub application: Option<Value>,
    /// The operator's own (appId, object id).
    pub own: (String, String),
}

impl App {
    fn get(&self, f: &str) -> &str {
        self.sp
            .as_ref()
            .and_then(|s| s[f].as_str())
            .unwrap_or_default()
    }
    fn key_ids(&self) -> Vec<String> {
        self.application
            .iter()
            .flat_map(|a| a["passwordCredentials"].as_array().into_iter().flatten())
            .filter_map(|c| c["keyId"].as_str().map(str::to_string))
            .collect()
    }
}

fn asked(t: &ServicePrincipalTarget) -> (bool, String) {
    match (&t.object_id, &t.app_id) {
        (Some(id), _) => (false, id.to_ascii_lowercase()),
        (None, Some(app)) => (true, app.to_ascii_lowercase()),
        _ => (false, String::new()),
    }
}

fn same(a: &Value, b: &Value, key: &[&str]) -> bool {
    key.iter()
        .all(|k| a[*k].as_str().unwrap_or_default() == b[*k].as_str().unwrap_or_default())
}

/// What a recorded grant or assignment needs to be created again (no id: a new one is made).
fn snapshot(v: &Value, fields: &[&str]) -> Value {
    let mut out = json!({});
    for f in fields {
        if let Some(s) = v[*f].as_str() {
            out[*f] = json!(s);
        }
    }
    out
}

/// Items recorded for release that are not there now.
fn missing<'a>(recorded: &'a Value, current: Option<&[Value]>, key: &[&str]) -> Vec<&'a Value> {
    recorded
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| !current.unwrap_or_default().iter().any(|c| same(r, c, key)))
        .collect()
}

/// Why the app may never be contained, if it may not.
fn refusal(a: &App) -> Option<Stall> {
    let name = format!("{} ({})", a.get("displayName"), a.get("appId"));
    if a.get("appOwnerOrganizationId")
        .eq_ignore_ascii_case(MICROSOFT_TENANT)
    {
        return Some(Stall::new(
            "Protected",
            format!(
                "{name} is a Microsoft first-party application (appOwnerOrganizationId {MICROSOFT_TENANT}): never contained"
            ),
        ));
    }
    let (app, oid) = &a.own;
    if a.get("id").eq_ignore_ascii_case(oid) || a.get("appId").eq_ignore_ascii_case(app) {
        return Some(Stall::new(
            "Protected",
            format!(
                "{name} is this operator's own service principal: containing it would lock the operator out"
            ),
        ));
    }
    None
}

fn graph(step: Step, what: String) -> Step {
    step.on(Service::Graph).what(what)
}

fn extra(a: &App) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("servicePrincipalId".into(), json!(a.get("id")));
    m.insert("appId".into(), json!(a.get("appId")));
    m.insert("displayName".into(), json!(a.get("displayName")));
    if let Some(e) = a.sp.as_ref().and_then(|s| s["accountEnabled"].as_bool()) {
        m.insert("accountEnabled".into(), json!(e));
    }
    if let Some(g) = &a.grants {
        m.insert("delegatedGrants".into(), json!(g.len()));
    }
    if let Some(r) = &a.assignments {
        m.insert("appRoleAssignments".into(), json!(r.len()));
    }
    if a.application.as_ref().is_some_and(|x| !x.is_null()) {
        m.insert("passwordKeyIds".into(), json!(a.key_ids()));
    }
    m
}

/// The state before the first write, with lists a later resource on the app removes added.
fn record(a: &App, previous: Option<&Value>) -> Value {
    let sp = a.sp.as_ref().map(|s| s["accountEnabled"].clone());
    let mut r = previous
        .cloned()
        .unwrap_or_else(|| json!({"accountEnabled": sp.unwrap_or(json!(true))}));
    if r.get("grants").is_none()
        && let Some(g) = &a.grants
    {
        r["grants"] = g
            .iter()
            .map(|x| {
                snapshot(
                    x,
                    &[
                        "clientId",
                        "consentType",
                        "principalId",
                        "resourceId",
                        "scope",
                    ],
                )
            })
            .collect();
    }
    if r.get("appRoleAssignments").is_none()
        && let Some(g) = &a.assignments
    {
        r["appRoleAssignments"] = g
            .iter()
            .map(|x| snapshot(x, &["principalId", "resourceId", "appRoleId"]))
            .collect();
    }
    r
}

pub fn plan(
    obj: &ServicePrincipalContainment,
    a: &App,
    status: &CommonStatus,
) -> Result<Assessment, Stall> {
    if a.sp.is_none() {
        return Err(Stall::new(
            "ServicePrincipalNotFound",
            format!(
                "spec.target: no service principal {} in the tenant",
                a.asked
            ),
        ));
    }
    if let Some(s) = refusal(a) {
        return Err(s);
    }
    let spec = &obj.spec;
    let id = a.get("id");
    let mut steps = Vec::new();
    let mut fine = Vec::new();
    if spec.disable_service_principal {
        if a.sp.as_ref().is_some_and(|s| s["accountEnabled"] == false) {
            fine.push("disabled".to_string());
        } else {
            steps.push(graph(
                Step::patch(
                    format!("/v1.0/servicePrincipals/{id}"),
                    "",
                    json!({"accountEnabled": false}),
                ),
                format!("disable service principal {}", a.get("displayName")),
            ));
        }
    }
    if spec.remove_delegated_grants {
        for g in a.grants.iter().flatten() {
            let gid = g["id"].as_str().unwrap_or_default();
            steps.push(graph(
                Step::delete(format!("/v1.0/oauth2PermissionGrants/{gid}"), ""),
                format!(
                    "remove delegated grant {gid} ({})",
                    g["scope"].as_str().unwrap_or_default()
                ),
            ));
        }
        fine.push("no delegated grants".into());
    }
    if spec.remove_app_role_assignments {
        for r in a.assignments.iter().flatten() {
            let rid = r["id"].as_str().unwrap_or_default();
            steps.push(graph(
                Step::delete(
                    format!("/v1.0/servicePrincipals/{id}/appRoleAssignments/{rid}"),
                    "",
                ),
                format!("remove app-role assignment {rid}"),
            ));
        }
        fine.push("no application permissions".into());
    }
    if spec.remove_password_credentials {
        let Some(app) = a.application.as_ref().filter(|x| !x.is_null()) else {
            return Err(Stall::new(
                "ApplicationInAnotherTenant",
                format!(
                    "spec.removePasswordCredentials: {} is registered in another tenant ({}); its secrets can only be removed there",
                    a.get("appId"),
                    a.get("appOwnerOrganizationId")
                ),
            ));
        };
        // Once per run: the secrets the run found when it started (all, before any run).
        let at_start: Option<Vec<String>> = status.action.as_ref().and_then(|l| {
            serde_json::from_value(l.evidence.as_ref()?["passwordKeyIds"].clone()).ok()
        });
        let app_id = app["id"].as_str().unwrap_or_default();
        for k in a.key_ids() {
            if at_start.as_ref().is_none_or(|s| s.contains(&k)) {
                steps.push(graph(
                    Step::action(
                        format!("/v1.0/applications/{app_id}/removePassword"),
                        "",
                        Some(json!({"keyId": k})),
                    )
                    .idempotent(),
                    format!("remove client secret {k}"),
                ));
            }
        }
        fine.push("client secrets removed".into());
    }
    let name = a.get("displayName");
    let message = if steps.is_empty() {
        format!("{name}: {}", fine.join("; "))
    } else {
        format!("{name}: {} change(s) to make", steps.len())
    };
    let record =
        (!steps.is_empty() || status.restore.is_some()).then(|| record(a, status.restore.as_ref()));
    Ok(Assessment {
        steps,
        message,
        record,
        extra: extra(a),
        wait: None,
    })
}

pub fn release_steps(a: &App, restore: &Value) -> Vec<Step> {
    let Some(sp) = &a.sp else { return Vec::new() };
    let id = a.get("id");
    let mut steps = Vec::new();
    if restore["accountEnabled"] == true && sp["accountEnabled"] == false {
        steps.push(graph(
            Step::patch(
                format!("/v1.0/servicePrincipals/{id}"),
                "",
                json!({"accountEnabled": true}),
            ),
            "re-enable the service principal".into(),
        ));
    }
    for g in missing(&restore["grants"], a.grants.as_deref(), GRANT_KEY) {
        steps.push(graph(
            Step::action("/v1.0/oauth2PermissionGrants".into(), "", Some(g.clone())).idempotent(),
            format!(
                "restore delegated grant ({})",
                g["scope"].as_str().unwrap_or_default()
            ),
        ));
    }
    for r in missing(
        &restore["appRoleAssignments"],
        a.assignments.as_deref(),
        ASSIGNMENT_KEY,
    ) {
        steps.push(graph(
            Step::action(
                format!("/v1.0/servicePrincipals/{id}/appRoleAssignments"),
                "",
                Some(r.clone()),
            )
            .idempotent(),
            format!(
                "restore app-role assignment {}",
                r["appRoleId"].as_str().unwrap_or_default()
            ),
        ));
    }
    steps
}

#[derive(Default)]
pub struct ServicePrincipalContainmentControl;

#[async_trait::async_trait]
impl Control for ServicePrincipalContainmentControl {
    type K = ServicePrincipalContainment;
    type Observed = App;
    const RESOURCE_TYPE: &'static str = "microsoft.graph/servicePrincipals";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const COMPOSES: bool = true;
    const ONE_SHOT_STEPS: bool = true;
    const READ_LAG: Duration = Duration::from_secs(10);
    const ACTIONS: &'static [&'static str] = &[];

    fn target(obj: &ServicePrincipalContainment) -> Result<ResourceId, String> {
        let (by_app, name) = asked(&obj.spec.target);
        if name.is_empty() {
            return Err("spec.target: set objectId or appId".into());
        }
        let kind = if by_app { "app" } else { "serviceprincipal" };
        Ok(ResourceId {
            id: format!("{kind}/{name}"),
            subscription: String::new(),
            resource_group: None,
            name,
        })
    }

    /// Disabled if any wants it; what each removes is its own.
    fn compose(
        &self,
        acc: &mut ServicePrincipalContainment,
        other: &ServicePrincipalContainment,
    ) -> Result<(), String> {
        acc.spec.disable_service_principal |= other.spec.disable_service_principal;
        Ok(())
    }

    /// The older record's state wins; lists only the newer one recorded are added.
    fn merge_restore(&self, older: &Value, newer: &Value) -> Value {
        let mut out = older.clone();
        for k in ["grants", "appRoleAssignments"] {
            if out.get(k).is_none()
                && let Some(v) = newer.get(k)
            {
                out[k] = v.clone();
            }
        }
        out
    }

    fn subject(&self, a: &App) -> Option<Subject> {
        let mut names = vec![a.asked.clone()];
        for f in ["id", "appId", "displayName"] {
            let v = a.get(f);
            if !v.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(v)) {
                names.push(v.to_string());
            }
        }
        Some(Subject::Identity(names))
    }

    /// The secrets a run removes are the ones there when it starts.
    fn evidence(&self, a: &App) -> Value {
        if a.application.as_ref().is_some_and(|x| !x.is_null()) {
            json!({"passwordKeyIds": a.key_ids()})
        } else {
            json!({})
        }
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &ServicePrincipalContainment,
        t: &ResourceId,
    ) -> Result<App, AzureError> {
        let (by_app, name) = asked(&obj.spec.target);
        let path = if by_app {
            format!("/v1.0/servicePrincipals(appId='{name}')?$select={SELECT}")
        } else {
            format!("/v1.0/servicePrincipals/{name}?$select={SELECT}")
        };
        let mut a = App {
            asked: t.name.clone(),
            ..Default::default()
        };
        match az.graph.get(&path, "").await {
            Ok(v) => a.sp = Some(v),
            Err(e) if e.status() == Some(404) => return Ok(a),
            Err(e) => return Err(e),
        }
        a.own = az.graph.own_identity().await?;
        let id = a.get("id").to_string();
        let restore = obj.status.as_ref().and_then(|s| s.common.restore.as_ref());
        let recorded = |k: &str| restore.is_some_and(|r| r.get(k).is_some());
        let spec = &obj.spec;
        if spec.remove_delegated_grants || recorded("grants") {
            let path = format!(
                "/v1.0/oauth2PermissionGrants?{}",
                odata_eq_filter("clientId", &id)
            );
            a.grants = Some(az.graph.list(&path, "").await?);
        }
        if spec.remove_app_role_assignments || recorded("appRoleAssignments") {
            let path = format!("/v1.0/servicePrincipals/{id}/appRoleAssignments");
            a.assignments = Some(az.graph.list(&path, "").await?);
        }
        if spec.remove_password_credentials {
            let path = format!(
                "/v1.0/applications(appId='{}')?$select=id,appId,passwordCredentials",
                a.get("appId")
            );
            a.application = Some(match az.graph.get(&path, "").await {
                Ok(v) => v,
                Err(e) if e.status() == Some(404) => Value::Null,
                Err(e) => return Err(e),
            });
        }
        Ok(a)
    }

    fn assess(
        &self,
        obj: &ServicePrincipalContainment,
        _t: &ResourceId,
        a: &App,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        plan(obj, a, status)
    }

    fn release(
        &self,
        _obj: &ServicePrincipalContainment,
        _t: &ResourceId,
        a: &App,
        restore: &Value,
    ) -> Vec<Step> {
        release_steps(a, restore)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(spec: Value) -> ServicePrincipalContainment {
        serde_json::from_value(json!({"apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "ServicePrincipalContainment", "metadata": {"name": "s", "namespace": "n"}, "spec": spec})).unwrap()
    }

    fn app(owner: &str) -> App {
        App {
            asked: "sp1".into(),
            sp: Some(
                json!({"id": "sp1", "appId": "app1", "displayName": "rogue", "accountEnabled": true, "appOwnerOrganizationId": owner}),
            ),
            own: ("op-app".into(), "op-oid".into()),
            ..Default::default()
        }
    }

    #[test]
    fn first_party_apps_and_the_operator_itself_are_refused() {
        let o = obj(json!({"target": {"objectId": "00000000-0000-4000-8000-000000000001"}}));
        let s = plan(&o, &app(MICROSOFT_TENANT), &CommonStatus::default()).unwrap_err();
        assert_eq!(s.reason, "Protected");
        assert!(s.message.contains("first-party"));
        let mut own = app("t1");
        own.own = ("app1".into(), "x".into());
        assert!(
            plan(&o, &own, &CommonStatus::default())
                .unwrap_err()
                .message
                .contains("own service principal")
        );
        assert_eq!(
            plan(&o, &app("t1"), &CommonStatus::default())
                .unwrap()
                .steps
                .len(),
            1
        );
    }

    #[test]
    fn grants_and_assignments_are_recorded_removed_and_recreated_and_secrets_once_per_run() {
        let o = obj(
            json!({"target": {"appId": "00000000-0000-4000-8000-000000000001"}, "removeDelegatedGrants": true, "removeAppRoleAssignments": true, "removePasswordCredentials": true}),
        );
        let mut a = app("t1");
        a.grants = Some(vec![
            json!({"id": "g1", "clientId": "sp1", "consentType": "AllPrincipals", "principalId": null, "resourceId": "graph", "scope": "Mail.Read"}),
        ]);
        a.assignments = Some(vec![
            json!({"id": "r1", "principalId": "sp1", "resourceId": "graph", "appRoleId": "role"}),
        ]);
        a.application = Some(
            json!({"id": "appobj", "passwordCredentials": [{"keyId": "k1"}, {"keyId": "k2"}]}),
        );
        let p = plan(&o, &a, &CommonStatus::default()).unwrap();
        let shown: Vec<String> = p.steps.iter().map(|s| s.render()).collect();
        assert_eq!(shown.len(), 5, "{shown:?}");
        assert_eq!(shown[1], "DELETE /v1.0/oauth2PermissionGrants/g1");
        assert_eq!(
            shown[2],
            "DELETE /v1.0/servicePrincipals/sp1/appRoleAssignments/r1"
        );
        assert!(
            shown[3].contains("/v1.0/applications/appobj/removePassword")
                && shown[3].contains("k1")
        );
        let rec = p.record.unwrap();
        assert_eq!(
            rec["grants"][0],
            json!({"clientId": "sp1", "consentType": "AllPrincipals", "resourceId": "graph", "scope": "Mail.Read"})
        );
        // A run that found only k1 does not remove a secret added later.
        let st = CommonStatus {
            action: Some(serde_json::from_value(json!({"runId": "created", "phase": "InProgress", "startedTime": "2026-12-01T00:00:00Z", "evidence": {"passwordKeyIds": ["k1"]}})).unwrap()),
            ..Default::default()
        };
        let later = plan(&o, &a, &st).unwrap();
        assert_eq!(
            later
                .steps
                .iter()
                .filter(|s| s.path.ends_with("removePassword"))
                .count(),
            1
        );
        // Release: enabled again, the grant and the assignment made anew.
        let mut now = app("t1");
        now.sp.as_mut().unwrap()["accountEnabled"] = json!(false);
        now.grants = Some(Vec::new());
        now.assignments = Some(Vec::new());
        let back: Vec<String> = release_steps(&now, &rec)
            .iter()
            .map(|s| s.render())
            .collect();
        assert_eq!(back.len(), 3, "{back:?}");
        assert!(back[1].starts_with("POST /v1.0/oauth2PermissionGrants {"));
        assert!(back[2].starts_with("POST /v1.0/servicePrincipals/sp1/appRoleAssignments {"));
        now.grants = a.grants.clone();
        assert_eq!(release_steps(&now, &rec).len(), 2);
    }

    #[test]
    fn secrets_of_an_app_registered_elsewhere_stall_naming_the_field() {
        let o = obj(
            json!({"target": {"objectId": "00000000-0000-4000-8000-000000000001"}, "removePasswordCredentials": true}),
        );
        let mut a = app("other-tenant");
        a.application = Some(Value::Null);
        let s = plan(&o, &a, &CommonStatus::default()).unwrap_err();
        assert_eq!(s.reason, "ApplicationInAnotherTenant");
        assert!(s.message.starts_with("spec.removePasswordCredentials"));
    }
}
