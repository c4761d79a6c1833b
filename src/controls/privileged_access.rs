//! PrivilegedAccessPolicy: a Conditional Access policy the operator owns (Graph
//! `identity/conditionalAccess/policies`). It is found by the tag in its display name (the
//! resource's uid), so a crash after the create, or a lost answer, never leaves a second one
//! behind: any duplicate is deleted. Created report-only, switched on once the soak has passed
//! since the policy's own `createdDateTime` (Azure's clock and record, so a restart or a lost
//! status does not restart the soak). Edits to what it owns are put back; release deletes it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::identity::{GrantOperator, PolicyResources, PrivilegedAccessPolicy};
use crate::azure::{AzureError, Clients, ResourceId, Service};
use crate::engine::{Assessment, Control, Stall, Step, Subject, Wait};

pub const POLICIES: &str = "/v1.0/identity/conditionalAccess/policies";
/// The Azure management API ("Windows Azure Service Management API", Azure Resource Manager).
pub const AZURE_MANAGEMENT_APP: &str = "797f4846-ba00-4fd7-ba43-dac1f8f63013";
pub const REPORT_ONLY: &str = "enabledForReportingButNotEnforced";
pub const ENABLED: &str = "enabled";
/// Reconciling reason while the policy soaks in report-only.
pub const SOAKING: &str = "ReportOnly";

crate::impl_kind!(PrivilegedAccessPolicy, tenant);

/// The tenant's policies that carry this resource's tag (oldest first), as read at `now`.
#[derive(Debug, Clone)]
pub struct Owned {
    pub tag: String,
    pub ours: Vec<Value>,
    pub now: Timestamp,
    /// The operator's own object id.
    pub own_oid: String,
    /// The users and groups the policy applies to.
    pub included: Vec<String>,
}

/// The tag that marks a policy as this resource's: the uid, unique and never reused.
pub fn tag(obj: &PrivilegedAccessPolicy) -> String {
    format!(
        "containment-operator/{}",
        obj.metadata.uid.as_deref().unwrap_or_default()
    )
}

fn display_name(obj: &PrivilegedAccessPolicy, tag: &str) -> String {
    format!(
        "Privileged access {}/{} ({tag})",
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The soak, from `spec.reportOnlyFor` (admission checks its shape).
fn soak(obj: &PrivilegedAccessPolicy) -> Result<Duration, Stall> {
    let s = &obj.spec.report_only_for;
    let d: SignedDuration = s.parse().map_err(|e| {
        Stall::new(
            "InvalidSpec",
            format!("spec.reportOnlyFor {s:?} is not a duration: {e}"),
        )
    })?;
    Duration::try_from(d).map_err(|_| {
        Stall::new(
            "InvalidSpec",
            format!("spec.reportOnlyFor {s:?} must not be negative"),
        )
    })
}

/// Everything the operator owns in the policy except its state. Exclusions and conditions it
/// does not use are sent empty, so an admin's addition (a weaker policy) is taken out again
/// whether the service merges or replaces them.
pub fn owned_fields(obj: &PrivilegedAccessPolicy, tag: &str) -> Value {
    let s = &obj.spec;
    let apps = match s.resources {
        PolicyResources::All => json!(["All"]),
        PolicyResources::AzureManagement => json!([AZURE_MANAGEMENT_APP]),
    };
    let mut controls = Vec::new();
    if s.require_mfa {
        controls.push("mfa");
    }
    if s.require_compliant_device {
        controls.push("compliantDevice");
    }
    let operator = match s.grant_operator {
        GrantOperator::AllOf => "AND",
        GrantOperator::AnyOf => "OR",
    };
    json!({
        "displayName": display_name(obj, tag),
        "conditions": {
            "clientAppTypes": ["all"],
            "applications": {"includeApplications": apps, "excludeApplications": [], "includeUserActions": []},
            "users": {
                "includeUsers": s.users,
                "includeGroups": s.groups,
                "includeRoles": s.directory_roles,
                "excludeUsers": s.break_glass_accounts,
                "excludeGroups": [],
                "excludeRoles": [],
            },
            "locations": null,
            "platforms": null,
            "devices": null,
            "signInRiskLevels": [],
            "userRiskLevels": [],
        },
        "grantControls": {"operator": operator, "builtInControls": controls},
    })
}

/// Values compared as Conditional Access means them: nulls, empty lists and empty objects are
/// absent, and lists of ids are sets (the service answers in its own order and casing).
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let out: serde_json::Map<String, Value> = m
                .iter()
                .map(|(k, v)| (k.clone(), canonical(v)))
                .filter(|(_, v)| !absent(v))
                .collect();
            Value::Object(out)
        }
        Value::Array(a) => {
            let mut items: Vec<Value> = a.iter().map(canonical).collect();
            if items.iter().all(Value::is_string) {
                items = items
                    .iter()
                    .map(|s| json!(s.as_str().unwrap_or_default().to_ascii_lowercase()))
                    .collect();
                items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                items.dedup();
            }
            Value::Array(items)
        }
        other => other.clone(),
    }
}

fn absent(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// The owned fields of `policy` that differ from `want` (by name), if any.
fn differs(want: &Value, policy: &Value) -> Vec<&'static str> {
    ["displayName", "conditions", "grantControls"]
        .into_iter()
        .filter(|f| canonical(&want[*f]) != canonical(&policy[*f]))
        .collect()
}

fn created(policy: &Value) -> Option<Timestamp> {
    policy["createdDateTime"].as_str()?.parse().ok()
}

fn graph(step: Step, what: String) -> Step {
    step.on(Service::Graph).what(what)
}

fn policy_path(policy: &Value) -> String {
    format!("{POLICIES}/{}", policy["id"].as_str().unwrap_or_default())
}

/// Once the soak has been completed, the record says so: a policy deleted and created again
/// does not soak a second time, and one put back to report-only is switched on again.
fn enforced_before(status: &CommonStatus) -> bool {
    status
        .restore
        .as_ref()
        .is_some_and(|r| r["enforced"] == true)
}

pub fn plan(
    obj: &PrivilegedAccessPolicy,
    o: &Owned,
    status: &CommonStatus,
) -> Result<Assessment, Stall> {
    if !o.own_oid.is_empty()
        && obj
            .spec
            .users
            .iter()
            .any(|u| u.eq_ignore_ascii_case(&o.own_oid))
    {
        return Err(Stall::new(
            "Protected",
            format!(
                "spec.users: {} is the operator's own principal; it is never subject to a policy it manages",
                o.own_oid
            ),
        ));
    }
    let soak = soak(obj)?;
    let want = owned_fields(obj, &o.tag);
    let mut record = json!({"tag": o.tag, "enforced": enforced_before(status)});
    let mut steps: Vec<Step> = o
        .ours
        .iter()
        .skip(1)
        .map(|p| {
            graph(
                Step::delete(policy_path(p), ""),
                format!("delete duplicate policy {}", p["id"]),
            )
        })
        .collect();
    let mut extra = serde_json::Map::new();
    let Some(p) = o.ours.first() else {
        let state = if soak.is_zero() || enforced_before(status) {
            ENABLED
        } else {
            REPORT_ONLY
        };
        let mut body = want.clone();
        body["state"] = json!(state);
        // Found again by its tag after a crash or a lost answer, so sending it twice is
        // harmless (the younger one is deleted).
        steps.push(graph(
            Step::action(POLICIES.to_string(), "", Some(body)).idempotent(),
            format!(
                "create Conditional Access policy {:?} ({state})",
                want["displayName"]
            ),
        ));
        return Ok(Assessment {
            steps,
            message: "the Conditional Access policy does not exist".into(),
            record: Some(record),
            extra,
            wait: None,
        });
    };
    let state = p["state"].as_str().unwrap_or_default();
    extra.insert("policyId".into(), p["id"].clone());
    extra.insert("displayName".into(), p["displayName"].clone());
    extra.insert("policyState".into(), json!(state));
    let ends = created(p).and_then(|c| c.checked_add(SignedDuration::try_from(soak).ok()?).ok());
    if let Some(t) = ends {
        extra.insert("enforceAfter".into(), json!(t.to_string()));
    }
    let soaked = soak.is_zero() || enforced_before(status) || ends.is_some_and(|t| o.now >= t);
    let mut patch = serde_json::Map::new();
    let changed = differs(&want, p);
    for f in &changed {
        patch.insert(f.to_string(), want[*f].clone());
    }
    let want_state = if soaked { ENABLED } else { REPORT_ONLY };
    if state != want_state {
        patch.insert("state".into(), json!(want_state));
    }
    if soaked {
        record["enforced"] = json!(true);
    }
    let mut message = if soaked {
        "the Conditional Access policy is on".to_string()
    } else {
        format!(
            "report-only until {}: sign-ins are evaluated, not yet blocked",
            ends.map(|t| t.to_string()).unwrap_or_default()
        )
    };
    if !patch.is_empty() {
        let mut what: Vec<String> = changed.iter().map(|f| f.to_string()).collect();
        if state != want_state {
            what.push(format!("state {state} → {want_state}"));
        }
        message = format!("the policy differs: {}", what.join(", "));
        steps.push(graph(
            Step::patch(policy_path(p), "", Value::Object(patch)),
            format!(
                "set {} of Conditional Access policy {}",
                what.join(", "),
                p["id"]
            ),
        ));
    }
    let wait = (!soaked && steps.is_empty()).then(|| Wait {
        reason: SOAKING.into(),
        message: message.clone(),
        recheck: ends
            .and_then(|t| Duration::try_from(t.duration_since(o.now)).ok())
            .unwrap_or(Duration::from_secs(60))
            .clamp(Duration::from_secs(1), Duration::from_secs(300)),
    });
    Ok(Assessment {
        steps,
        message,
        record: Some(record),
        extra,
        wait,
    })
}

#[derive(Default)]
pub struct PrivilegedAccessPolicyControl;

#[async_trait::async_trait]
impl Control for PrivilegedAccessPolicyControl {
    type K = PrivilegedAccessPolicy;
    type Observed = Owned;
    const RESOURCE_TYPE: &'static str = "microsoft.graph/identity/conditionalAccess/policies";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    /// A policy just created may be missing from the list for a moment.
    const READ_LAG: Duration = Duration::from_secs(10);
    const ACTIONS: &'static [&'static str] = &[];

    /// Each resource owns its own policy.
    fn target(obj: &PrivilegedAccessPolicy) -> Result<ResourceId, String> {
        let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
        let name = obj.metadata.name.as_deref().unwrap_or_default();
        Ok(ResourceId {
            id: format!("conditionalAccessPolicy/{ns}/{name}"),
            subscription: String::new(),
            resource_group: None,
            name: format!("{ns}/{name}"),
        })
    }

    /// Its own policy has no name worth showing: who it covers is the story.
    fn target_name(obj: &PrivilegedAccessPolicy, _t: &ResourceId) -> String {
        let s = &obj.spec;
        let count = |n: usize, what: &str| match n {
            0 => None,
            1 => Some(format!("1 {what}")),
            n => Some(format!("{n} {what}s")),
        };
        [
            count(s.users.len(), "user"),
            count(s.groups.len(), "group"),
            count(s.directory_roles.len(), "role"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
    }

    /// The guard refuses a policy that would apply to a protected identity.
    fn subject(&self, o: &Owned) -> Option<Subject> {
        Some(Subject::Identity(o.included.clone()))
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &PrivilegedAccessPolicy,
        _t: &ResourceId,
    ) -> Result<Owned, AzureError> {
        let tag = tag(obj);
        let mut ours: Vec<Value> = az
            .graph
            .list(POLICIES, "")
            .await?
            .into_iter()
            .filter(|p| p["displayName"].as_str().is_some_and(|n| n.contains(&tag)))
            .collect();
        ours.sort_by_key(|p| (created(p), p["id"].as_str().map(str::to_string)));
        let (_, own_oid) = az.graph.own_identity().await?;
        Ok(Owned {
            tag,
            ours,
            now: Timestamp::now(),
            own_oid,
            included: obj
                .spec
                .users
                .iter()
                .chain(&obj.spec.groups)
                .cloned()
                .collect(),
        })
    }

    fn assess(
        &self,
        obj: &PrivilegedAccessPolicy,
        _t: &ResourceId,
        o: &Owned,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        plan(obj, o, status)
    }

    fn on_reply(&self, step: &Step, r: &crate::azure::Reply) -> serde_json::Map<String, Value> {
        let reply = &r.body;
        let mut m = serde_json::Map::new();
        if step.method == "POST"
            && let Some(id) = reply["id"].as_str()
        {
            m.insert("policyId".into(), json!(id));
            m.insert("policyState".into(), reply["state"].clone());
        }
        m
    }

    /// Every policy carrying the tag goes (none left behind by a duplicate create).
    fn release(
        &self,
        _obj: &PrivilegedAccessPolicy,
        _t: &ResourceId,
        o: &Owned,
        _restore: &Value,
    ) -> Vec<Step> {
        o.ours
            .iter()
            .map(|p| {
                graph(
                    Step::delete(policy_path(p), ""),
                    format!("delete Conditional Access policy {}", p["id"]),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "33333333-0000-4000-8000-0000000000a1";
    const BG: &str = "33333333-0000-4000-8000-0000000000e1";

    fn obj(extra: Value) -> PrivilegedAccessPolicy {
        let mut spec = json!({"users": [ALICE], "breakGlassAccounts": [BG], "reportOnlyFor": "1h"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(json!({"apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "PrivilegedAccessPolicy",
            "metadata": {"name": "admins", "namespace": "soc", "uid": "u-1"}, "spec": spec}))
        .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn owned(ours: Vec<Value>, now: &str) -> Owned {
        Owned {
            tag: "containment-operator/u-1".into(),
            ours,
            now: at(now),
            own_oid: "op-oid".into(),
            included: vec![ALICE.into()],
        }
    }

    /// The policy as the service answers: every field present, nulls and empty lists, its own
    /// order and casing.
    fn served(o: &PrivilegedAccessPolicy, state: &str) -> Value {
        let mut p = owned_fields(o, &tag(o));
        p["id"] = json!("p-1");
        p["state"] = json!(state);
        p["createdDateTime"] = json!("2026-12-01T10:00:00Z");
        p["sessionControls"] = Value::Null;
        p["conditions"]["users"]["includeUsers"] = json!([ALICE.to_uppercase()]);
        p["conditions"]["users"]["includeGuestsOrExternalUsers"] = Value::Null;
        p["conditions"]["servicePrincipalRiskLevels"] = json!([]);
        p["grantControls"]["customAuthenticationFactors"] = json!([]);
        p["grantControls"]["termsOfUse"] = json!([]);
        p["grantControls"]["authenticationStrength"] = Value::Null;
        p
    }

    #[test]
    fn it_is_created_report_only_with_the_break_glass_account_excluded() {
        let o = obj(json!({"requireCompliantDevice": true, "resources": "AzureManagement"}));
        let a = plan(
            &o,
            &owned(vec![], "2026-12-01T10:00:00Z"),
            &CommonStatus::default(),
        )
        .unwrap();
        assert_eq!(a.steps.len(), 1);
        let s = &a.steps[0];
        assert_eq!((s.method, s.path.as_str()), ("POST", POLICIES));
        let b = s.body.as_ref().unwrap();
        assert_eq!(b["state"], REPORT_ONLY);
        assert!(
            b["displayName"]
                .as_str()
                .unwrap()
                .contains("containment-operator/u-1")
        );
        assert_eq!(b["conditions"]["users"]["excludeUsers"], json!([BG]));
        assert_eq!(
            b["conditions"]["applications"]["includeApplications"],
            json!([AZURE_MANAGEMENT_APP])
        );
        assert_eq!(
            b["grantControls"],
            json!({"operator": "AND", "builtInControls": ["mfa", "compliantDevice"]})
        );
        assert_eq!(a.record.unwrap()["tag"], "containment-operator/u-1");
        // No soak: created switched on.
        let a = plan(
            &obj(json!({"reportOnlyFor": "0s"})),
            &owned(vec![], "2026-12-01T10:00:00Z"),
            &CommonStatus::default(),
        )
        .unwrap();
        assert_eq!(a.steps[0].body.as_ref().unwrap()["state"], ENABLED);
    }

    #[test]
    fn it_soaks_from_the_policys_creation_time_then_is_switched_on_once() {
        let o = obj(json!({}));
        let p = served(&o, REPORT_ONLY);
        let during = plan(
            &o,
            &owned(vec![p.clone()], "2026-12-01T10:30:00Z"),
            &CommonStatus::default(),
        )
        .unwrap();
        assert!(during.steps.is_empty(), "{:?}", during.steps);
        let w = during.wait.unwrap();
        assert_eq!(w.reason, SOAKING);
        assert_eq!(w.recheck, Duration::from_secs(300));
        assert_eq!(during.extra["enforceAfter"], "2026-12-01T11:00:00Z");
        let after = plan(
            &o,
            &owned(vec![p], "2026-12-01T11:00:00Z"),
            &CommonStatus::default(),
        )
        .unwrap();
        assert_eq!(after.steps.len(), 1);
        assert_eq!(
            after.steps[0].body.as_ref().unwrap(),
            &json!({"state": ENABLED})
        );
        assert_eq!(after.record.as_ref().unwrap()["enforced"], true);
        // Once enforced, a policy put back to report-only, or created again, is on at once.
        let status = CommonStatus {
            restore: after.record,
            ..Default::default()
        };
        let again = plan(
            &o,
            &owned(vec![served(&o, REPORT_ONLY)], "2026-12-01T10:01:00Z"),
            &status,
        )
        .unwrap();
        assert_eq!(
            again.steps[0].body.as_ref().unwrap(),
            &json!({"state": ENABLED})
        );
        let recreated = plan(&o, &owned(vec![], "2026-12-01T10:01:00Z"), &status).unwrap();
        assert_eq!(recreated.steps[0].body.as_ref().unwrap()["state"], ENABLED);
        let on = plan(
            &o,
            &owned(vec![served(&o, ENABLED)], "2026-12-01T12:00:00Z"),
            &status,
        )
        .unwrap();
        assert!(on.steps.is_empty() && on.wait.is_none(), "{on:?}");
    }

    #[test]
    fn a_loosened_policy_is_put_back_and_a_twin_is_deleted() {
        let o = obj(json!({"reportOnlyFor": "0s"}));
        let mut p = served(&o, ENABLED);
        p["conditions"]["users"]["excludeGroups"] = json!(["g-1"]);
        p["conditions"]["locations"] =
            json!({"includeLocations": ["All"], "excludeLocations": ["trusted"]});
        let mut twin = served(&o, ENABLED);
        twin["id"] = json!("p-2");
        let a = plan(
            &o,
            &owned(vec![p, twin], "2026-12-02T00:00:00Z"),
            &CommonStatus::default(),
        )
        .unwrap();
        assert_eq!(a.steps.len(), 2, "{:?}", a.steps);
        assert_eq!(
            (a.steps[0].method, a.steps[0].path.as_str()),
            ("DELETE", "/v1.0/identity/conditionalAccess/policies/p-2")
        );
        let patch = a.steps[1].body.as_ref().unwrap();
        assert_eq!(
            patch.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["conditions"]
        );
        assert_eq!(patch["conditions"]["users"]["excludeGroups"], json!([]));
        assert_eq!(patch["conditions"]["locations"], Value::Null);
    }

    #[test]
    fn the_operators_own_principal_is_refused_and_release_deletes_every_tagged_policy() {
        let o = obj(json!({"users": ["OP-OID"]}));
        let e = plan(
            &o,
            &owned(vec![], "2026-12-01T10:00:00Z"),
            &CommonStatus::default(),
        )
        .unwrap_err();
        assert_eq!(e.reason, "Protected");
        assert!(e.message.contains("spec.users"), "{}", e.message);
        let o = obj(json!({}));
        let mut twin = served(&o, ENABLED);
        twin["id"] = json!("p-2");
        let t = PrivilegedAccessPolicyControl::target(&o).unwrap();
        let steps = PrivilegedAccessPolicyControl.release(
            &o,
            &t,
            &owned(vec![served(&o, ENABLED), twin], "2026-12-01T10:00:00Z"),
            &json!({}),
        );
        assert_eq!(
            steps
                .iter()
                .map(|s| (s.method, s.path.rsplit('/').next().unwrap()))
                .collect::<Vec<_>>(),
            [("DELETE", "p-1"), ("DELETE", "p-2")]
        );
    }
}
