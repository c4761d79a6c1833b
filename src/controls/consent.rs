//! ConsentLockdown: the tenant's authorization policy (a Graph singleton) keeps no user
//! self-consent, or only the low-risk policy. The PATCH replaces the whole collection, so it is
//! always the list as read with only the `ManagePermissionGrantsForSelf.*` entries changed
//! (azure-api-facts §3.26).

use serde_json::{Value, json};

use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::graph::{ConsentLockdown, UserConsent};
use crate::azure::{AzureError, Clients, ResourceId, Service};
use crate::engine::{Assessment, Control, Stall, Step};

const PATH: &str = "/v1.0/policies/authorizationPolicy";
const SELF_PREFIX: &str = "managepermissiongrantsforself.";
pub const LOW_RISK: &str = "ManagePermissionGrantsForSelf.microsoft-user-default-low";

crate::impl_kind!(ConsentLockdown, tenant);

fn is_self(entry: &str) -> bool {
    entry.to_ascii_lowercase().starts_with(SELF_PREFIX)
}

fn assigned(policy: &Value) -> Vec<String> {
    policy["defaultUserRolePermissions"]["permissionGrantPoliciesAssigned"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// `current` with its self-consent entries replaced by `self_entries` (the rest kept, in order).
fn with_self(current: &[String], self_entries: &[String]) -> Vec<String> {
    let mut out: Vec<String> = current.iter().filter(|e| !is_self(e)).cloned().collect();
    out.extend(self_entries.iter().cloned());
    out
}

fn self_set(list: &[String]) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .filter(|e| is_self(e))
        .map(|e| e.to_ascii_lowercase())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn wanted(c: UserConsent) -> Vec<String> {
    match c {
        UserConsent::Disabled => Vec::new(),
        UserConsent::LowRiskOnly => vec![LOW_RISK.to_string()],
    }
}

fn patch(list: Vec<String>, what: String) -> Step {
    Step::patch(
        PATH.to_string(),
        "",
        json!({"defaultUserRolePermissions": {"permissionGrantPoliciesAssigned": list}}),
    )
    .on(Service::Graph)
    .what(what)
}

/// `previous`: the record already kept (the state before the first write wins over what a
/// drift correction sees).
pub fn plan(want: UserConsent, policy: &Value, previous: Option<&Value>) -> Assessment {
    let current = assigned(policy);
    let mut extra = serde_json::Map::new();
    extra.insert("permissionGrantPoliciesAssigned".into(), json!(current));
    let target = wanted(want);
    if self_set(&current) == self_set(&target) {
        return Assessment {
            message: format!(
                "user consent is {}",
                match want {
                    UserConsent::Disabled => "disabled",
                    UserConsent::LowRiskOnly => "limited to low-risk apps",
                }
            ),
            extra,
            ..Default::default()
        };
    }
    let prior: Vec<String> = current.iter().filter(|e| is_self(e)).cloned().collect();
    Assessment {
        steps: vec![patch(
            with_self(&current, &target),
            format!("set user self-consent to {target:?} (was {prior:?})"),
        )],
        message: format!("user self-consent allows {prior:?}"),
        record: Some(
            previous
                .cloned()
                .unwrap_or_else(|| json!({ "selfConsent": prior, "assigned": current })),
        ),
        extra,
        wait: None,
    }
}

#[derive(Default)]
pub struct ConsentLockdownControl;

#[async_trait::async_trait]
impl Control for ConsentLockdownControl {
    type K = ConsentLockdown;
    type Observed = Value;
    const RESOURCE_TYPE: &'static str = "microsoft.graph/policies/authorizationPolicy";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const COMPOSES: bool = true;
    const ACTIONS: &'static [&'static str] = &[];

    /// The tenant's one authorization policy.
    fn target(obj: &ConsentLockdown) -> Result<ResourceId, String> {
        let tenant = obj
            .spec
            .common
            .tenant_id
            .as_deref()
            .unwrap_or("default")
            .to_ascii_lowercase();
        Ok(ResourceId {
            id: format!("tenant/{tenant}/authorizationPolicy"),
            subscription: String::new(),
            resource_group: None,
            name: "authorizationPolicy".into(),
        })
    }

    /// No consent is stricter than low-risk consent.
    fn compose(&self, acc: &mut ConsentLockdown, other: &ConsentLockdown) -> Result<(), String> {
        if other.spec.user_consent == UserConsent::Disabled {
            acc.spec.user_consent = UserConsent::Disabled;
        }
        Ok(())
    }

    async fn observe(
        &self,
        az: &Clients,
        _obj: &ConsentLockdown,
        _t: &ResourceId,
    ) -> Result<Value, AzureError> {
        az.graph.get(PATH, "").await
    }

    fn assess(
        &self,
        obj: &ConsentLockdown,
        _t: &ResourceId,
        policy: &Value,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        Ok(plan(obj.spec.user_consent, policy, status.restore.as_ref()))
    }

    /// The self-consent entries recorded before the first write, with whatever else the list
    /// holds now.
    fn release(
        &self,
        _obj: &ConsentLockdown,
        _t: &ResourceId,
        policy: &Value,
        restore: &Value,
    ) -> Vec<Step> {
        let prior: Vec<String> = restore["selfConsent"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let current = assigned(policy);
        if self_set(&current) == self_set(&prior) {
            return Vec::new();
        }
        // The list exactly as it was, unless its other entries changed since: then those as
        // they are now, with the prior self-consent entries.
        let before: Vec<String> = restore["assigned"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let others =
            |l: &[String]| -> Vec<String> { l.iter().filter(|e| !is_self(e)).cloned().collect() };
        let list = if !before.is_empty() && others(&before) == others(&current) {
            before
        } else {
            with_self(&current, &prior)
        };
        vec![patch(list, format!("restore user self-consent {prior:?}"))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(list: &[&str]) -> Value {
        json!({"id": "authorizationPolicy", "defaultUserRolePermissions": {"permissionGrantPoliciesAssigned": list}})
    }

    #[test]
    fn only_self_consent_entries_change_and_case_is_ignored() {
        let p = policy(&[
            "ManagePermissionGrantsForOwnedResource.microsoft-dynamically-managed-permissions-for-team",
            "ManagePermissionGrantsForSelf.microsoft-user-default-legacy",
        ]);
        let a = plan(UserConsent::Disabled, &p, None);
        assert_eq!(
            a.steps[0].body.as_ref().unwrap(),
            &json!({"defaultUserRolePermissions": {"permissionGrantPoliciesAssigned": ["ManagePermissionGrantsForOwnedResource.microsoft-dynamically-managed-permissions-for-team"]}})
        );
        assert_eq!(
            a.record.unwrap()["selfConsent"],
            json!(["ManagePermissionGrantsForSelf.microsoft-user-default-legacy"])
        );
        let low = plan(UserConsent::LowRiskOnly, &p, None);
        assert_eq!(
            low.steps[0].body.as_ref().unwrap()["defaultUserRolePermissions"]["permissionGrantPoliciesAssigned"]
                [1],
            LOW_RISK
        );
        // The service answers with its own casing: compliant either way.
        let ok = plan(
            UserConsent::LowRiskOnly,
            &policy(&["managePermissionGrantsForSelf.microsoft-user-default-low"]),
            None,
        );
        assert!(ok.steps.is_empty());
        assert!(
            plan(UserConsent::Disabled, &policy(&[]), None)
                .steps
                .is_empty()
        );
        // A drift correction keeps the record of the state before the first write.
        let kept = json!({"selfConsent": ["ManagePermissionGrantsForSelf.first"]});
        assert_eq!(
            plan(UserConsent::Disabled, &p, Some(&kept)).record.unwrap(),
            kept
        );
    }

    #[test]
    fn release_restores_the_prior_self_entries_and_keeps_the_rest_as_it_is_now() {
        let c = ConsentLockdownControl;
        let obj: ConsentLockdown = serde_json::from_value(json!({"apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "ConsentLockdown", "metadata": {"name": "c", "namespace": "n"}, "spec": {}})).unwrap();
        let t = ConsentLockdownControl::target(&obj).unwrap();
        let restore =
            json!({"selfConsent": ["ManagePermissionGrantsForSelf.microsoft-user-default-legacy"]});
        // An admin added a group-owner entry meanwhile: kept.
        let now = policy(&["ManagePermissionGrantsForOwnedResource.x"]);
        let steps = c.release(&obj, &t, &now, &restore);
        assert_eq!(
            steps[0].body.as_ref().unwrap()["defaultUserRolePermissions"]["permissionGrantPoliciesAssigned"],
            json!([
                "ManagePermissionGrantsForOwnedResource.x",
                "ManagePermissionGrantsForSelf.microsoft-user-default-legacy"
            ])
        );
        let back = policy(&["ManagePermissionGrantsForSelf.microsoft-user-default-legacy"]);
        assert!(c.release(&obj, &t, &back, &restore).is_empty());
        // Nothing else changed: the list comes back exactly, in its order.
        let restore = json!({"selfConsent": ["ManagePermissionGrantsForSelf.a"], "assigned": ["ManagePermissionGrantsForSelf.a", "ManagePermissionGrantsForOwnedResource.x"]});
        let steps = c.release(&obj, &t, &now, &restore);
        assert_eq!(
            steps[0].body.as_ref().unwrap()["defaultUserRolePermissions"]["permissionGrantPoliciesAssigned"],
            json!([
                "ManagePermissionGrantsForSelf.a",
                "ManagePermissionGrantsForOwnedResource.x"
            ])
        );
    }
}
