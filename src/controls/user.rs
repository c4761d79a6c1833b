//! UserContainment: a compromised Entra user is disabled, its sessions revoked once per
//! trigger, and optionally its directory roles removed (azure-api-facts §3.25). Graph writes
//! are synchronous, but reads are eventually consistent: the engine retries the read-back
//! (`READ_LAG`).

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::api::common::{ActionLedger, CommonStatus, ReleasePolicy};
use crate::api::identity::{DirectoryRole, UserContainment, UserTarget};
use crate::azure::{AzureError, Clients, ResourceId, Service, odata_eq_filter};
use crate::engine::{Assessment, Control, Stall, Step, Subject};

/// The one-shot step's ledger name.
pub const REVOKE: &str = "revoke sign-in sessions";
const ROLES: &str = "/v1.0/roleManagement/directory";
const SELECT: &str =
    "id,userPrincipalName,accountEnabled,onPremisesSyncEnabled,signInSessionsValidFromDateTime";

crate::impl_kind!(UserContainment, tenant, trigger);

/// A directory role held, and how (its assignment id for a direct one).
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub role: DirectoryRole,
    pub id: Option<String>,
    pub end: Option<String>,
}

/// The user as Graph shows it; `None` fields: not found.
#[derive(Debug, Clone, Default)]
pub struct User {
    pub asked: String,
    pub found: Option<Value>,
    /// Read only when roles are removed or were recorded for release.
    pub roles: Option<Vec<Held>>,
    pub observed_at: Option<Timestamp>,
}

impl User {
    fn get(&self, f: &str) -> &Value {
        self.found.as_ref().map(|u| &u[f]).unwrap_or(&Value::Null)
    }
    fn id(&self) -> &str {
        self.get("id").as_str().unwrap_or(&self.asked)
    }
    fn enabled(&self) -> bool {
        self.get("accountEnabled").as_bool().unwrap_or(false)
    }
    fn synced(&self) -> bool {
        self.get("onPremisesSyncEnabled").as_bool().unwrap_or(false)
    }
    fn valid_from(&self) -> Option<Timestamp> {
        self.get("signInSessionsValidFromDateTime")
            .as_str()
            .and_then(|s| s.parse().ok())
    }
}

fn asked(t: &UserTarget) -> String {
    t.object_id
        .as_deref()
        .or(t.user_principal_name.as_deref())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn key(r: &DirectoryRole) -> (String, String, String) {
    (
        r.assignment.clone(),
        r.role_definition_id.to_ascii_lowercase(),
        r.directory_scope_id.clone(),
    )
}

fn held(v: &Value, assignment: &str) -> Held {
    Held {
        role: DirectoryRole {
            role_definition_id: v["roleDefinitionId"].as_str().unwrap_or_default().into(),
            directory_scope_id: v["directoryScopeId"].as_str().unwrap_or("/").into(),
            assignment: assignment.into(),
        },
        id: v["id"].as_str().map(str::to_string),
        end: v["endDateTime"].as_str().map(str::to_string),
    }
}

/// Direct assignments, then PIM active (without the direct ones real Entra lists there too),
/// then PIM eligible.
async fn roles(az: &Clients, user_id: &str) -> Result<Vec<Held>, AzureError> {
    let filter = odata_eq_filter("principalId", user_id);
    let list = |what: &str| format!("{ROLES}/{what}?{filter}");
    let direct = az.graph.list(&list("roleAssignments"), "").await?;
    let active = az
        .graph
        .list(&list("roleAssignmentScheduleInstances"), "")
        .await?;
    let eligible = az
        .graph
        .list(&list("roleEligibilityScheduleInstances"), "")
        .await?;
    let direct_ids: Vec<&Value> = direct.iter().map(|d| &d["id"]).collect();
    let mut out: Vec<Held> = direct.iter().map(|d| held(d, "Direct")).collect();
    out.extend(
        active
            .iter()
            .filter(|a| !direct_ids.contains(&&a["roleAssignmentOriginId"]))
            .map(|a| held(a, "Active")),
    );
    out.extend(eligible.iter().map(|e| held(e, "Eligible")));
    Ok(out)
}

fn recorded_roles(restore: Option<&Value>) -> Option<Vec<Held>> {
    let roles = restore?.get("roles")?.as_array()?;
    Some(
        roles
            .iter()
            .filter_map(|r| {
                Some(Held {
                    role: serde_json::from_value(r.clone()).ok()?,
                    id: None,
                    end: r["endDateTime"].as_str().map(str::to_string),
                })
            })
            .collect(),
    )
}

fn role_json(h: &Held) -> Value {
    let mut v = serde_json::to_value(&h.role).unwrap_or_default();
    v["endDateTime"] = json!(h.end);
    v
}

fn schedule_request(kind: &str, action: &str, user: &str, h: &Held, extra: Value) -> Step {
    let mut body = json!({
        "action": action,
        "principalId": user,
        "roleDefinitionId": h.role.role_definition_id,
        "directoryScopeId": h.role.directory_scope_id,
        "justification": "containment-operator UserContainment",
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    Step::action(format!("{ROLES}/{kind}"), "", Some(body))
        .idempotent()
        .on(Service::Graph)
}

fn requests_of(h: &Held) -> &'static str {
    if h.role.assignment == "Eligible" {
        "roleEligibilityScheduleRequests"
    } else {
        "roleAssignmentScheduleRequests"
    }
}

fn remove_role(user: &str, h: &Held) -> Step {
    let what = format!(
        "remove {} role {} at {}",
        h.role.assignment, h.role.role_definition_id, h.role.directory_scope_id
    );
    match (h.role.assignment.as_str(), &h.id) {
        ("Direct", Some(id)) => {
            Step::delete(format!("{ROLES}/roleAssignments/{id}"), "").on(Service::Graph)
        }
        _ => schedule_request(requests_of(h), "adminRemove", user, h, json!({})),
    }
    .what(what)
}

/// The role as recorded, assigned again (a time-bound PIM one until its recorded end).
fn restore_role(user: &str, h: &Held, now: Timestamp) -> Step {
    let what = format!(
        "restore {} role {} at {}",
        h.role.assignment, h.role.role_definition_id, h.role.directory_scope_id
    );
    if h.role.assignment == "Direct" {
        return Step::action(
            format!("{ROLES}/roleAssignments"),
            "",
            Some(json!({
                "@odata.type": "#microsoft.graph.unifiedRoleAssignment",
                "principalId": user,
                "roleDefinitionId": h.role.role_definition_id,
                "directoryScopeId": h.role.directory_scope_id,
            })),
        )
        .idempotent()
        .on(Service::Graph)
        .what(what);
    }
    let expiration = match &h.end {
        Some(end) => json!({"type": "afterDateTime", "endDateTime": end}),
        None => json!({"type": "noExpiration"}),
    };
    schedule_request(
        requests_of(h),
        "adminAssign",
        user,
        h,
        json!({"scheduleInfo": {"startDateTime": now.to_string(), "expiration": expiration}}),
    )
    .what(what)
}

/// The revocation of this trigger is done: the ledger says so, or it was sent and the user's
/// sessions are valid only from then on (Graph keeps whole seconds).
pub fn revoked(ledger: Option<&ActionLedger>, valid_from: Option<Timestamp>) -> bool {
    let Some(l) = ledger else { return false };
    l.done.iter().any(|d| d == REVOKE)
        || l.sent.iter().any(|s| {
            s.what == REVOKE && valid_from.is_some_and(|v| v.as_second() >= s.time.0.as_second())
        })
}

fn status_extra(u: &User) -> serde_json::Map<String, Value> {
    let mut extra = serde_json::Map::new();
    extra.insert("userId".into(), u.get("id").clone());
    extra.insert(
        "userPrincipalName".into(),
        u.get("userPrincipalName").clone(),
    );
    extra.insert("accountEnabled".into(), u.get("accountEnabled").clone());
    extra.insert("onPremisesSynced".into(), json!(u.synced()));
    extra.insert(
        "signInSessionsValidFromDateTime".into(),
        u.get("signInSessionsValidFromDateTime").clone(),
    );
    if let Some(r) = &u.roles {
        extra.insert(
            "directoryRoles".into(),
            json!(r.iter().map(|h| &h.role).collect::<Vec<_>>()),
        );
    }
    extra
}

/// The record kept before the first write: whether the account was enabled, and the roles it
/// held (added when a later resource on the user removes roles).
fn record(u: &User, remove_roles: bool, previous: Option<&Value>) -> Value {
    let mut r = previous
        .cloned()
        .unwrap_or_else(|| json!({"accountEnabled": u.enabled()}));
    if remove_roles
        && r.get("roles").is_none()
        && let Some(roles) = &u.roles
    {
        r["roles"] = json!(roles.iter().map(role_json).collect::<Vec<_>>());
    }
    r
}

pub fn plan(obj: &UserContainment, u: &User, status: &CommonStatus) -> Result<Assessment, Stall> {
    let Some(found) = &u.found else {
        return Err(Stall::new(
            "UserNotFound",
            format!("spec.target: no user {} in the tenant", u.asked),
        ));
    };
    let name = found["userPrincipalName"].as_str().unwrap_or(&u.asked);
    let path = format!("/v1.0/users/{}", u.id());
    let spec = &obj.spec;
    let mut steps = Vec::new();
    let mut wrong = Vec::new();
    let mut fine = Vec::new();
    if spec.disable_account {
        if u.enabled() {
            wrong.push("the account is enabled".to_string());
            steps.push(
                Step::patch(path.clone(), "", json!({"accountEnabled": false}))
                    .on(Service::Graph)
                    .what(format!("disable {name}")),
            );
        } else {
            fine.push("account disabled".to_string());
        }
    }
    if spec.revoke_sessions {
        if revoked(status.action.as_ref(), u.valid_from()) {
            fine.push(format!(
                "sessions revoked (valid from {})",
                u.get("signInSessionsValidFromDateTime")
                    .as_str()
                    .unwrap_or("?")
            ));
        } else {
            wrong.push("its sessions are not revoked for this trigger".to_string());
            steps.push(
                Step::action(format!("{path}/revokeSignInSessions"), "", None)
                    .on(Service::Graph)
                    .what(REVOKE),
            );
        }
    }
    if spec.remove_directory_roles {
        let roles = u.roles.as_deref().unwrap_or_default();
        if roles.is_empty() {
            fine.push("no directory roles".to_string());
        } else {
            wrong.push(format!("it holds {} directory role(s)", roles.len()));
            steps.extend(roles.iter().map(|h| remove_role(u.id(), h)));
        }
    }
    if u.synced() {
        fine.push(
            "synced from on-premises AD: disable it there too, or the next sync re-enables it"
                .to_string(),
        );
    }
    let message = if steps.is_empty() {
        format!("{name}: {}", fine.join("; "))
    } else {
        format!("{name}: {}", wrong.join("; "))
    };
    let record = (!steps.is_empty() || status.restore.is_some())
        .then(|| record(u, spec.remove_directory_roles, status.restore.as_ref()));
    Ok(Assessment {
        steps,
        message,
        record,
        extra: status_extra(u),
        wait: None,
    })
}

pub fn release_steps(u: &User, restore: &Value) -> Vec<Step> {
    if u.found.is_none() {
        return Vec::new();
    }
    let mut steps = Vec::new();
    if restore["accountEnabled"] == true && !u.enabled() {
        steps.push(
            Step::patch(
                format!("/v1.0/users/{}", u.id()),
                "",
                json!({"accountEnabled": true}),
            )
            .on(Service::Graph)
            .what("re-enable the account"),
        );
    }
    let now = u.observed_at.unwrap_or_else(Timestamp::now);
    let current: Vec<_> = u.roles.iter().flatten().map(|h| key(&h.role)).collect();
    for h in recorded_roles(Some(restore)).unwrap_or_default() {
        let expired = h
            .end
            .as_deref()
            .and_then(|e| e.parse::<Timestamp>().ok())
            .is_some_and(|e| e <= now);
        if !expired && !current.contains(&key(&h.role)) {
            steps.push(restore_role(u.id(), &h, now));
        }
    }
    steps
}

#[derive(Default)]
pub struct UserContainmentControl;

#[async_trait::async_trait]
impl Control for UserContainmentControl {
    type K = UserContainment;
    type Observed = User;
    const RESOURCE_TYPE: &'static str = "microsoft.graph/users";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const COMPOSES: bool = true;
    const ONE_SHOT_STEPS: bool = true;
    const READ_LAG: Duration = Duration::from_secs(10);
    const ACTIONS: &'static [&'static str] = &[];

    fn target(obj: &UserContainment) -> Result<ResourceId, String> {
        let name = asked(&obj.spec.target);
        if name.is_empty() {
            return Err("spec.target: set objectId or userPrincipalName".into());
        }
        Ok(ResourceId {
            id: format!("user/{name}"),
            subscription: String::new(),
            resource_group: None,
            name,
        })
    }

    /// Disabled if any wants it; sessions and roles are each resource's own.
    fn compose(&self, acc: &mut UserContainment, other: &UserContainment) -> Result<(), String> {
        acc.spec.disable_account |= other.spec.disable_account;
        Ok(())
    }

    /// The older record's account state wins; roles only the newer one recorded are added.
    fn merge_restore(&self, older: &Value, newer: &Value) -> Value {
        let mut out = older.clone();
        if out.get("roles").is_none()
            && let Some(r) = newer.get("roles")
        {
            out["roles"] = r.clone();
        }
        out
    }

    fn subject(&self, u: &User) -> Option<Subject> {
        let mut names = vec![u.asked.clone()];
        for f in ["id", "userPrincipalName"] {
            if let Some(v) = u.get(f).as_str()
                && !names.iter().any(|n| n.eq_ignore_ascii_case(v))
            {
                names.push(v.to_string());
            }
        }
        Some(Subject::Identity(names))
    }

    fn evidence(&self, u: &User) -> Value {
        json!({"signInSessionsValidFromDateTime": u.get("signInSessionsValidFromDateTime")})
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &UserContainment,
        t: &ResourceId,
    ) -> Result<User, AzureError> {
        let mut u = User {
            asked: t.name.clone(),
            observed_at: Some(Timestamp::now()),
            ..Default::default()
        };
        let path = format!("/v1.0/users/{}?$select={SELECT}", t.name);
        match az.graph.get(&path, "").await {
            Ok(v) => u.found = Some(v),
            Err(e) if e.status() == Some(404) => return Ok(u),
            Err(e) => return Err(e),
        }
        let restore = obj.status.as_ref().and_then(|s| s.common.restore.as_ref());
        if obj.spec.remove_directory_roles || recorded_roles(restore).is_some() {
            let id = u.id().to_string();
            u.roles = Some(roles(az, &id).await?);
        }
        Ok(u)
    }

    fn assess(
        &self,
        obj: &UserContainment,
        _t: &ResourceId,
        u: &User,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        plan(obj, u, status)
    }

    fn release(
        &self,
        _obj: &UserContainment,
        _t: &ResourceId,
        u: &User,
        restore: &Value,
    ) -> Vec<Step> {
        release_steps(u, restore)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{ActionPhase, SentStep};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn obj(spec: Value) -> UserContainment {
        serde_json::from_value(json!({"apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "UserContainment", "metadata": {"name": "u", "namespace": "n"}, "spec": spec})).unwrap()
    }

    fn user(enabled: bool, valid_from: &str) -> User {
        User {
            asked: "mallory@contoso.example".into(),
            found: Some(
                json!({"id": "u1", "userPrincipalName": "mallory@contoso.example", "accountEnabled": enabled, "signInSessionsValidFromDateTime": valid_from}),
            ),
            roles: None,
            observed_at: Some("2026-12-01T00:00:00Z".parse().unwrap()),
        }
    }

    fn ledger(done: &[&str], sent_at: Option<&str>) -> ActionLedger {
        ActionLedger {
            run_id: "created".into(),
            phase: ActionPhase::InProgress,
            started_time: Time("2026-12-01T00:00:00Z".parse().unwrap()),
            completed_time: None,
            evidence: None,
            done: done.iter().map(|d| d.to_string()).collect(),
            sent: sent_at
                .map(|t| SentStep {
                    what: REVOKE.into(),
                    time: Time(t.parse().unwrap()),
                    operation: None,
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn the_revocation_is_planned_once_per_trigger_and_evidence_settles_a_lost_answer() {
        let o = obj(json!({"target": {"userPrincipalName": "mallory@contoso.example"}}));
        let u = user(false, "2026-11-30T00:00:00Z");
        let mut st = CommonStatus::default();
        let a = plan(&o, &u, &st).unwrap();
        assert_eq!(a.steps.len(), 1);
        assert_eq!(a.steps[0].path, "/v1.0/users/u1/revokeSignInSessions");
        assert!(
            !a.steps[0].idempotent,
            "recorded as intent before it leaves"
        );
        st.action = Some(ledger(&[REVOKE], None));
        assert!(plan(&o, &u, &st).unwrap().steps.is_empty());
        // Sent, answer lost: sessions valid only from after the call → done; from before → not.
        st.action = Some(ledger(&[], Some("2026-12-01T10:00:00.400Z")));
        let after = user(false, "2026-12-01T10:00:00Z");
        assert!(plan(&o, &after, &st).unwrap().steps.is_empty());
        assert_eq!(plan(&o, &u, &st).unwrap().steps.len(), 1);
    }

    #[test]
    fn roles_are_removed_each_its_own_way_and_restored_from_the_record() {
        let o = obj(
            json!({"target": {"objectId": "33333333-0000-4000-8000-000000000003"}, "revokeSessions": false, "removeDirectoryRoles": true}),
        );
        let mut u = user(true, "2026-11-30T00:00:00Z");
        let role = |a: &str, id: Option<&str>, end: Option<&str>| Held {
            role: DirectoryRole {
                role_definition_id: format!("r-{a}"),
                directory_scope_id: "/".into(),
                assignment: a.into(),
            },
            id: id.map(str::to_string),
            end: end.map(str::to_string),
        };
        u.roles = Some(vec![
            role("Direct", Some("ra1"), None),
            role("Active", Some("s1"), Some("2027-01-01T00:00:00Z")),
            role("Eligible", Some("e1"), None),
        ]);
        let a = plan(&o, &u, &CommonStatus::default()).unwrap();
        let shown: Vec<String> = a.steps.iter().map(|s| s.render()).collect();
        assert!(shown[0].starts_with("PATCH /v1.0/users/u1"), "{shown:?}");
        assert_eq!(
            shown[1],
            "DELETE /v1.0/roleManagement/directory/roleAssignments/ra1"
        );
        assert!(
            shown[2].contains("roleAssignmentScheduleRequests")
                && shown[2].contains("\"adminRemove\"")
        );
        assert!(shown[3].contains("roleEligibilityScheduleRequests"));
        let rec = a.record.unwrap();
        assert_eq!(rec["accountEnabled"], true);
        assert_eq!(rec["roles"].as_array().unwrap().len(), 3);
        // Release: re-enable, and each role back its own way (the PIM one until its end).
        let mut now = user(false, "2026-11-30T00:00:00Z");
        now.roles = Some(Vec::new());
        let back: Vec<String> = release_steps(&now, &rec)
            .iter()
            .map(|s| s.render())
            .collect();
        assert_eq!(back.len(), 4, "{back:?}");
        assert!(back[1].contains("\"@odata.type\":\"#microsoft.graph.unifiedRoleAssignment\""));
        assert!(
            back[2].contains("\"adminAssign\"")
                && back[2].contains("\"endDateTime\":\"2027-01-01T00:00:00Z\"")
        );
        assert!(back[3].contains("\"noExpiration\""));
        // A role already back, or one whose end has passed, is not assigned again.
        now.observed_at = Some("2027-06-01T00:00:00Z".parse().unwrap());
        now.roles = Some(vec![role("Direct", Some("ra9"), None)]);
        assert_eq!(release_steps(&now, &rec).len(), 2);
        // Only enabled before → enabled again.
        assert!(release_steps(&now, &json!({"accountEnabled": false})).is_empty());
    }

    #[test]
    fn a_missing_user_stalls_naming_it() {
        let o = obj(json!({"target": {"userPrincipalName": "nobody@contoso.example"}}));
        let u = User {
            asked: "nobody@contoso.example".into(),
            ..Default::default()
        };
        let s = plan(&o, &u, &CommonStatus::default()).unwrap_err();
        assert_eq!(s.reason, "UserNotFound");
        assert!(s.message.contains("nobody@contoso.example"));
    }
}
