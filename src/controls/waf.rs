//! WafIpBlock: one owned custom rule per resource in an App Gateway or Front Door WAF policy.
//! The policy is written whole (PUT), so the write is read-modify-write of everything we read,
//! guarded by the etag; WafIpBlocks on one policy that reconcile together are coalesced into one
//! PUT; release removes only the owned rule (and restores the mode if this resource changed it).

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::network::{WafIpBlock, WafPolicyType};
use crate::azure::{AzureError, Clients, ResourceId};
use crate::controls::coalesce::Registry;
use crate::engine::composition::OnTarget;
use crate::engine::{Assessment, Control, Stall, Step};

pub const APPGW_API: &str = "2024-01-01";
pub const FD_API: &str = "2024-02-01";
const APPGW_TYPE: &str = "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies";
const FD_TYPE: &str = "Microsoft.Network/FrontDoorWebApplicationFirewallPolicies";
const PRIORITIES: std::ops::RangeInclusive<i64> = 1..=100;
/// The policy's mode before the first WafIpBlock switched it to Prevention, kept on the policy
/// itself: whichever WafIpBlock is the last to want Prevention puts it back, even when the one
/// that switched it is long gone.
pub const PRIOR_MODE_TAG: &str = "containment-operator-prior-mode";

crate::impl_kind!(WafIpBlock, status: s => &s.common);

/// What one WafIpBlock wants in the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    pub rule: String,
    pub ips: Vec<String>,
    pub priority: Option<i64>,
    pub prevention: bool,
}

/// Deterministic, alphanumeric (Front Door requires it) rule name per resource.
pub fn rule_name(namespace: &str, name: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{namespace}/{name}").bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("ctr{h:016x}")
}

fn want_of(obj: &WafIpBlock) -> Want {
    let mut ips = obj.spec.ip_addresses.clone();
    ips.sort();
    ips.dedup();
    Want {
        rule: rule_name(&obj.namespace().unwrap_or_default(), &obj.name_any()),
        ips,
        priority: obj.spec.priority.map(i64::from),
        prevention: obj.spec.enforce_prevention_mode,
    }
}

/// The flavour differences: where rules live and how a match condition is spelled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flavour {
    pub front_door: bool,
}

impl Flavour {
    fn rules<'a>(&self, policy: &'a Value) -> Vec<&'a Value> {
        let v = if self.front_door {
            &policy["properties"]["customRules"]["rules"]
        } else {
            &policy["properties"]["customRules"]
        };
        v.as_array().map(|a| a.iter().collect()).unwrap_or_default()
    }

    fn set_rules(&self, policy: &mut Value, rules: Vec<Value>) {
        if self.front_door {
            policy["properties"]["customRules"]["rules"] = Value::Array(rules);
        } else {
            policy["properties"]["customRules"] = Value::Array(rules);
        }
    }

    fn rule(&self, w: &Want, priority: i64) -> Value {
        if self.front_door {
            json!({"name": w.rule, "priority": priority, "enabledState": "Enabled", "ruleType": "MatchRule", "action": "Block",
                   "matchConditions": [{"matchVariable": "RemoteAddr", "operator": "IPMatch", "negateCondition": false, "matchValue": w.ips}]})
        } else {
            json!({"name": w.rule, "priority": priority, "state": "Enabled", "ruleType": "MatchRule", "action": "Block",
                   "matchConditions": [{"matchVariables": [{"variableName": "RemoteAddr"}], "operator": "IPMatch", "negationConditon": false, "matchValues": w.ips}]})
        }
    }

    fn mode<'a>(&self, policy: &'a Value) -> &'a str {
        policy["properties"]["policySettings"]["mode"]
            .as_str()
            .unwrap_or("Detection")
    }

    fn api(&self) -> &'static str {
        if self.front_door { FD_API } else { APPGW_API }
    }
}

/// Does the policy hold this rule exactly as wanted (any priority)?
fn rule_in_force(f: Flavour, policy: &Value, w: &Want) -> Option<i64> {
    let r = f
        .rules(policy)
        .into_iter()
        .find(|r| r["name"] == w.rule.as_str())?;
    let c = &r["matchConditions"][0];
    let (values, enabled) = if f.front_door {
        (&c["matchValue"], r["enabledState"] == "Enabled")
    } else {
        (
            &c["matchValues"],
            r["state"] == "Enabled" || r["state"].is_null(),
        )
    };
    let mut have: Vec<String> = values
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    have.sort();
    let ok = enabled
        && r["action"] == "Block"
        && c["operator"] == "IPMatch"
        && have == w.ips
        && w.priority.is_none_or(|p| r["priority"] == p);
    ok.then(|| r["priority"].as_i64().unwrap_or_default())
}

/// The policy to PUT and the priority chosen for each rule in it.
pub type PolicyWrite = (Value, BTreeMap<String, i64>);

/// The pure plan: the policy to PUT so that `own` (and every coalesced sibling) is in force.
/// Returns None when `own` is already in force (siblings then write for themselves).
/// Siblings are best-effort: one whose priority cannot be had is left as it is in the policy
/// (its own reconcile stalls it), and only `own`'s trouble stalls this resource. Claims are
/// settled in rule-name order, so every resource on the policy plans the same outcome.
pub fn plan_policy(
    f: Flavour,
    policy: &Value,
    own: &Want,
    siblings: &[Want],
) -> Result<Option<PolicyWrite>, Stall> {
    let own_ok = rule_in_force(f, policy, own).is_some()
        && (!own.prevention || f.mode(policy) == "Prevention");
    if own_ok {
        return Ok(None);
    }
    let mut wants: Vec<&Want> = vec![own];
    wants.extend(siblings.iter().filter(|s| s.rule != own.rule));
    wants.sort_by(|a, b| a.rule.cmp(&b.rule));
    let ours: Vec<&str> = wants.iter().map(|w| w.rule.as_str()).collect();
    let existing = f.rules(policy);
    let foreign: Vec<&Value> = existing
        .iter()
        .copied()
        .filter(|r| !ours.contains(&r["name"].as_str().unwrap_or_default()))
        .collect();
    let mut used: Vec<i64> = foreign
        .iter()
        .filter_map(|r| r["priority"].as_i64())
        .collect();
    let mut chosen = BTreeMap::new();
    let mut left_out: Vec<&str> = Vec::new();
    // Explicit priorities first, then rules that already have one, then the lowest free value.
    let current_priority = |w: &Want| {
        existing
            .iter()
            .find(|r| r["name"] == w.rule.as_str())
            .and_then(|r| r["priority"].as_i64())
    };
    for w in &wants {
        let Some(p) = w.priority else { continue };
        let refusal = if let Some(r) = foreign.iter().find(|r| r["priority"] == p) {
            Some(format!(
                "spec.priority {p} is already used by custom rule {} in the policy; choose another or omit it",
                r["name"].as_str().unwrap_or("?")
            ))
        } else if used.contains(&p) {
            Some(format!(
                "spec.priority {p} is also requested by another WafIpBlock on this policy"
            ))
        } else {
            None
        };
        match refusal {
            Some(m) if w.rule == own.rule => return Err(Stall::new("PriorityInUse", m)),
            Some(_) => left_out.push(&w.rule),
            None => {
                used.push(p);
                chosen.insert(w.rule.clone(), p);
            }
        }
    }
    let planned =
        |w: &&&Want| !chosen.contains_key(&w.rule) && !left_out.contains(&w.rule.as_str());
    for w in wants.iter().filter(planned).copied().collect::<Vec<_>>() {
        if let Some(p) = current_priority(w).filter(|p| !used.contains(p)) {
            used.push(p);
            chosen.insert(w.rule.clone(), p);
        }
    }
    let planned =
        |w: &&&Want| !chosen.contains_key(&w.rule) && !left_out.contains(&w.rule.as_str());
    for w in wants.iter().filter(planned).copied().collect::<Vec<_>>() {
        match PRIORITIES.clone().find(|p| !used.contains(p)) {
            Some(p) => {
                used.push(p);
                chosen.insert(w.rule.clone(), p);
            }
            None if w.rule == own.rule => {
                return Err(Stall::new(
                    "NoFreePriority",
                    "every custom rule priority from 1 to 100 is taken in this policy",
                ));
            }
            None => left_out.push(&w.rule),
        }
    }
    // A sibling left out keeps whatever rule it already has, where that collides with nothing.
    let mut rules: Vec<Value> = foreign.into_iter().cloned().collect();
    for r in &existing {
        let name = r["name"].as_str().unwrap_or_default();
        if left_out.contains(&name) && r["priority"].as_i64().is_some_and(|p| !used.contains(&p)) {
            rules.push((*r).clone());
        }
    }
    let planned: Vec<&&Want> = wants
        .iter()
        .filter(|w| chosen.contains_key(&w.rule))
        .collect();
    for w in &planned {
        rules.push(f.rule(w, chosen[&w.rule]));
    }
    rules.sort_by_key(|r| r["priority"].as_i64().unwrap_or_default());
    let mut next = writable(policy);
    f.set_rules(&mut next, rules);
    if planned.iter().any(|w| w.prevention) && f.mode(policy) != "Prevention" {
        next["properties"]["policySettings"]["mode"] = json!("Prevention");
        if policy["tags"].get(PRIOR_MODE_TAG).is_none() {
            next["tags"][PRIOR_MODE_TAG] = json!(f.mode(policy));
        }
    }
    Ok(Some((next, chosen)))
}

/// The policy as read, minus what Azure computes (etag, provisioning state).
fn writable(policy: &Value) -> Value {
    let mut next = policy.clone();
    if let Some(o) = next.as_object_mut() {
        o.remove("etag");
    }
    if let Some(p) = next["properties"].as_object_mut() {
        p.remove("provisioningState");
        p.remove("resourceState");
    }
    next
}

/// Release: the policy without our rule, and with the recorded mode back if no remaining
/// WafIpBlock wants Prevention. None when there is nothing to change.
pub fn release_policy(
    f: Flavour,
    policy: &Value,
    rule: &str,
    prior_mode: Option<&str>,
    others_need_prevention: bool,
) -> Option<Value> {
    let rules = f.rules(policy);
    let has_rule = rules.iter().any(|r| r["name"] == rule);
    let tagged = policy["tags"][PRIOR_MODE_TAG].as_str();
    let restore_mode = tagged
        .or(prior_mode)
        .filter(|m| !others_need_prevention && *m != f.mode(policy));
    let drop_tag = !others_need_prevention && tagged.is_some();
    if !has_rule && restore_mode.is_none() && !drop_tag {
        return None;
    }
    let mut next = writable(policy);
    f.set_rules(
        &mut next,
        rules
            .into_iter()
            .filter(|r| r["name"] != rule)
            .cloned()
            .collect(),
    );
    if let Some(m) = restore_mode {
        next["properties"]["policySettings"]["mode"] = json!(m);
    }
    if drop_tag && let Some(t) = next["tags"].as_object_mut() {
        t.remove(PRIOR_MODE_TAG);
    }
    Some(next)
}

/// Registered WafIpBlocks (Enforce) per policy, for coalescing (see `coalesce`).
#[derive(Default)]
pub struct WafIpBlockControl {
    registry: Registry<Want>,
}

fn key_of(obj: &WafIpBlock) -> String {
    crate::engine::composition::name_of(obj)
}

impl WafIpBlockControl {
    fn siblings(&self, policy: &str) -> Vec<Want> {
        self.registry
            .wants(policy)
            .into_iter()
            .map(|(_, w)| w)
            .collect()
    }
}

fn flavour(obj: &WafIpBlock) -> Flavour {
    Flavour {
        front_door: obj.spec.policy_type == WafPolicyType::FrontDoor,
    }
}

fn put(f: Flavour, t: &ResourceId, body: Value, etag: Option<String>, what: String) -> Step {
    let s = Step::put(t.id.clone(), f.api(), body)
        .expect_etag(etag)
        .what(what);
    if f.front_door { s.lro() } else { s }
}

const APPGW_ACTIONS: &[&str] = &[
    "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/read",
    "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/write",
];
const FD_ACTIONS: &[&str] = &[
    "Microsoft.Network/frontDoorWebApplicationFirewallPolicies/read",
    "Microsoft.Network/frontDoorWebApplicationFirewallPolicies/write",
    // The PUT is long-running; its status URL is at subscription scope.
    "Microsoft.Network/frontdooroperationresults/read",
];

#[async_trait::async_trait]
impl Control for WafIpBlockControl {
    type K = WafIpBlock;
    type Observed = Value;
    const RESOURCE_TYPE: &'static str = APPGW_TYPE;
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    // The policy read depends on the target only (its type decides the API version).
    const SHARED_OBSERVATION: bool = true;
    const ACTIONS: &'static [&'static str] = &[
        APPGW_ACTIONS[0],
        APPGW_ACTIONS[1],
        FD_ACTIONS[0],
        FD_ACTIONS[1],
        FD_ACTIONS[2],
    ];
    const ACTION_VARIANTS: &'static [(&'static str, &'static [&'static str])] =
        &[("AppGateway", APPGW_ACTIONS), ("FrontDoor", FD_ACTIONS)];

    fn resource_type(obj: &WafIpBlock) -> &'static str {
        if flavour(obj).front_door {
            FD_TYPE
        } else {
            APPGW_TYPE
        }
    }

    fn register(&self, obj: &WafIpBlock, t: &ResourceId, on: &OnTarget<WafIpBlock>) {
        self.registry.register_on(&t.id, obj, on, want_of);
    }

    /// The policy is written whole: one write carries every registered peer's rule.
    fn carried<'p>(
        &self,
        steps: &[Step],
        peers: &'p [std::sync::Arc<WafIpBlock>],
    ) -> Vec<&'p std::sync::Arc<WafIpBlock>> {
        if steps.is_empty() {
            return Vec::new();
        }
        peers.iter().collect()
    }

    fn unregister(&self, obj: &WafIpBlock, t: &ResourceId) {
        self.registry.remove(&t.id, &key_of(obj));
    }

    fn tags(&self, observed: &Value) -> Option<serde_json::Map<String, Value>> {
        Some(super::tags_of(observed))
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &WafIpBlock,
        t: &ResourceId,
    ) -> Result<Value, AzureError> {
        az.arm.get(&t.id, flavour(obj).api()).await
    }

    fn assess(
        &self,
        obj: &WafIpBlock,
        t: &ResourceId,
        policy: &Value,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let f = flavour(obj);
        let own = want_of(obj);
        let siblings = if obj.spec.common.mode == crate::api::common::Mode::Enforce {
            self.siblings(&t.id)
        } else {
            Vec::new()
        };
        let mut extra = serde_json::Map::new();
        extra.insert("ruleName".into(), json!(own.rule));
        let list = own.ips.join(", ");
        match plan_policy(f, policy, &own, &siblings)? {
            None => {
                extra.insert("priority".into(), json!(rule_in_force(f, policy, &own)));
                Ok(Assessment {
                    // Our rule may have been written by a coalesced sibling: own it for release.
                    record: status
                        .restore
                        .is_none()
                        .then(|| json!({"ruleName": own.rule})),
                    message: format!(
                        "custom rule {} blocks {list} (mode {})",
                        own.rule,
                        f.mode(policy)
                    ),
                    extra,
                    ..Default::default()
                })
            }
            Some(_) if let Some(wait) = self.registry.hold(&t.id, &key_of(obj)) => Ok(Assessment {
                message: format!("custom rule {} is missing or differs", own.rule),
                extra,
                wait: Some(super::coalesce::held(
                    "other WafIpBlocks are arriving on this policy; writing them in one PUT",
                    wait,
                )),
                ..Default::default()
            }),
            Some((next, chosen)) => {
                extra.insert("priority".into(), json!(chosen.get(&own.rule)));
                let mut record = status
                    .restore
                    .clone()
                    .unwrap_or_else(|| json!({"ruleName": own.rule}));
                let switches_mode = next["properties"]["policySettings"]["mode"]
                    != policy["properties"]["policySettings"]["mode"];
                if switches_mode && record.get("mode").is_none() {
                    record["mode"] = json!(f.mode(policy));
                }
                let coalesced = chosen.len() - 1;
                let what = if coalesced > 0 {
                    format!(
                        "write custom rule {} blocking {list} (and {coalesced} other WafIpBlock rule(s) on this policy)",
                        own.rule
                    )
                } else {
                    format!("write custom rule {} blocking {list}", own.rule)
                };
                Ok(Assessment {
                    steps: vec![put(
                        f,
                        t,
                        next,
                        policy["etag"].as_str().map(str::to_string),
                        what,
                    )],
                    message: format!("custom rule {} is missing or differs", own.rule),
                    record: Some(record),
                    extra,
                    wait: None,
                })
            }
        }
    }

    /// The rule name is deterministic: a WafIpBlock whose rule a sibling's coalesced PUT wrote
    /// before it recorded anything itself still removes it on release.
    fn implicit_restore(&self, obj: &WafIpBlock) -> Option<Value> {
        Some(json!({"ruleName": want_of(obj).rule}))
    }

    fn release(
        &self,
        obj: &WafIpBlock,
        t: &ResourceId,
        policy: &Value,
        restore: &Value,
    ) -> Vec<Step> {
        let f = flavour(obj);
        let rule = restore["ruleName"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| want_of(obj).rule);
        let others = self
            .siblings(&t.id)
            .iter()
            .any(|w| w.prevention && w.rule != rule);
        release_policy(f, policy, &rule, restore["mode"].as_str(), others)
            .map(|next| {
                put(
                    f,
                    t,
                    next,
                    policy["etag"].as_str().map(str::to_string),
                    format!("remove custom rule {rule}"),
                )
            })
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appgw() -> Value {
        json!({"location": "eastus", "etag": "W/\"1\"", "properties": {
            "policySettings": {"state": "Enabled", "mode": "Detection"},
            "managedRules": {"managedRuleSets": [{"ruleSetType": "OWASP", "ruleSetVersion": "3.2"}]},
            "customRules": [
                {"name": "AllowHealthProbe", "priority": 1, "action": "Allow", "matchConditions": []},
                {"name": "BlockKnownBad", "priority": 5, "action": "Block", "matchConditions": []},
                {"name": "GeoBlock", "priority": 10, "action": "Block", "matchConditions": []}
            ],
            "provisioningState": "Succeeded"}})
    }

    fn want(rule: &str, ips: &[&str], priority: Option<i64>) -> Want {
        Want {
            rule: rule.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            priority,
            prevention: false,
        }
    }

    const AG: Flavour = Flavour { front_door: false };

    fn block(name: &str) -> WafIpBlock {
        serde_json::from_value(json!({
            "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "WafIpBlock",
            "metadata": {"name": name, "namespace": "soc"},
            "spec": {"target": {"resourceId": POLICY}, "policyType": "ApplicationGateway",
                     "ipAddresses": ["203.0.113.7"]}}))
        .unwrap()
    }

    const POLICY: &str = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/p";

    #[test]
    fn a_lone_block_writes_at_once_a_burst_waits_to_settle() {
        let c = WafIpBlockControl::default();
        let t = <WafIpBlockControl as Control>::target(&block("a")).unwrap();
        let a = std::sync::Arc::new(block("a"));
        let on = |enforcing: Vec<std::sync::Arc<WafIpBlock>>| OnTarget {
            enforcing,
            holders: Vec::new(),
            arriving: Vec::new(),
        };
        c.register(&a, &t, &on(Vec::new()));
        assert_eq!(
            c.registry.hold(POLICY, "soc/a"),
            None,
            "a lone block is not held"
        );
        let b = std::sync::Arc::new(block("b"));
        c.register(&a, &t, &on(vec![b.clone()]));
        let wait = c
            .registry
            .hold(POLICY, "soc/a")
            .expect("b just arrived: hold a");
        let settle = crate::controls::coalesce::SETTLE;
        assert!(wait <= settle && wait > settle / 2, "{wait:?}");
        std::thread::sleep(settle);
        assert_eq!(c.registry.hold(POLICY, "soc/a"), None, "settled");
        c.unregister(&b, &t);
        assert_eq!(c.registry.hold(POLICY, "soc/a"), None);
    }
    const FD: Flavour = Flavour { front_door: true };

    #[test]
    fn lowest_free_priority_preserving_everything_else() {
        let own = want("ctra", &["203.0.113.7"], None);
        let (next, chosen) = plan_policy(AG, &appgw(), &own, &[]).unwrap().unwrap();
        assert_eq!(chosen["ctra"], 2);
        let rules = next["properties"]["customRules"].as_array().unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(
            next["properties"]["managedRules"],
            appgw()["properties"]["managedRules"]
        );
        assert!(next.get("etag").is_none());
        assert!(next["properties"].get("provisioningState").is_none());
        // Applied: in force, nothing more to do.
        assert!(plan_policy(AG, &next, &own, &[]).unwrap().is_none());
    }

    #[test]
    fn siblings_are_coalesced_with_distinct_priorities() {
        let own = want("ctra", &["203.0.113.7"], None);
        let sibs = vec![
            want("ctrb", &["198.51.100.9"], None),
            want("ctrc", &["192.0.2.1"], Some(3)),
        ];
        let (next, chosen) = plan_policy(AG, &appgw(), &own, &sibs).unwrap().unwrap();
        assert_eq!((chosen["ctrc"], chosen["ctra"], chosen["ctrb"]), (3, 2, 4));
        assert_eq!(
            next["properties"]["customRules"].as_array().unwrap().len(),
            6
        );
        for w in [&own, &sibs[0], &sibs[1]] {
            assert!(rule_in_force(AG, &next, w).is_some());
        }
    }

    #[test]
    fn explicit_priority_collision_stalls_naming_the_rule() {
        let own = want("ctra", &["203.0.113.7"], Some(5));
        let err = plan_policy(AG, &appgw(), &own, &[]).unwrap_err();
        assert_eq!(err.reason, "PriorityInUse");
        assert!(err.message.contains("BlockKnownBad"), "{}", err.message);
    }

    #[test]
    fn a_sibling_that_cannot_have_its_priority_is_left_out_alone() {
        let own = want("ctra", &["203.0.113.7"], None);
        // Clashes with a foreign rule, and with another sibling's claim (name order decides).
        let sibs = vec![
            want("ctrb", &["198.51.100.9"], Some(5)),
            want("ctrc", &["192.0.2.1"], Some(7)),
            want("ctrd", &["192.0.2.2"], Some(7)),
        ];
        let (next, chosen) = plan_policy(AG, &appgw(), &own, &sibs).unwrap().unwrap();
        assert_eq!(chosen.keys().collect::<Vec<_>>(), ["ctra", "ctrc"]);
        assert!(rule_in_force(AG, &next, &own).is_some());
        assert!(rule_in_force(AG, &next, &sibs[1]).is_some());
        // The one that lost the claim stalls alone, naming the reason.
        let err = plan_policy(AG, &appgw(), &sibs[2], &[own.clone(), sibs[1].clone()]).unwrap_err();
        assert_eq!(err.reason, "PriorityInUse");
        // Every priority taken: the sibling that gets none is left out, not the writer.
        let mut full = appgw();
        let rules: Vec<Value> = (1..=99)
            .map(|p| json!({"name": format!("foreign{p}"), "priority": p, "action": "Block", "matchConditions": []}))
            .collect();
        full["properties"]["customRules"] = json!(rules);
        let (_, chosen) = plan_policy(AG, &full, &own, &[want("ctrb", &["198.51.100.9"], None)])
            .unwrap()
            .unwrap();
        assert_eq!(chosen.keys().collect::<Vec<_>>(), ["ctra"]);
        let err = plan_policy(
            AG,
            &full,
            &want("ctrb", &["198.51.100.9"], None),
            std::slice::from_ref(&own),
        )
        .unwrap_err();
        assert_eq!(err.reason, "NoFreePriority");
    }

    #[test]
    fn prevention_mode_and_release_restore_only_what_we_changed() {
        let mut own = want("ctra", &["203.0.113.7"], None);
        own.prevention = true;
        let (next, _) = plan_policy(AG, &appgw(), &own, &[]).unwrap().unwrap();
        assert_eq!(next["properties"]["policySettings"]["mode"], "Prevention");
        let released = release_policy(AG, &next, "ctra", Some("Detection"), false).unwrap();
        assert_eq!(
            released["properties"]["customRules"],
            appgw()["properties"]["customRules"]
        );
        assert_eq!(
            released["properties"]["policySettings"]["mode"],
            "Detection"
        );
        // Another WafIpBlock still wants Prevention: the mode stays.
        let kept = release_policy(AG, &next, "ctra", Some("Detection"), true).unwrap();
        assert_eq!(kept["properties"]["policySettings"]["mode"], "Prevention");
        assert!(release_policy(AG, &appgw(), "ctra", None, false).is_none());
        // The prior mode is kept on the policy: the last one to want Prevention restores it,
        // though it never switched the mode itself (its record has no mode).
        assert_eq!(next["tags"][PRIOR_MODE_TAG], "Detection");
        assert_eq!(kept["tags"][PRIOR_MODE_TAG], "Detection");
        let last = release_policy(AG, &kept, "ctrb", None, false).unwrap();
        assert_eq!(last["properties"]["policySettings"]["mode"], "Detection");
        assert!(last["tags"].get(PRIOR_MODE_TAG).is_none(), "{last}");
        // A later switch records the mode then, not a stale one.
        let again = plan_policy(AG, &last, &own, &[]).unwrap().unwrap().0;
        assert_eq!(again["tags"][PRIOR_MODE_TAG], "Detection");
    }

    #[test]
    fn front_door_shape() {
        let fd = json!({"location": "Global", "sku": {"name": "Premium_AzureFrontDoor"}, "properties": {"policySettings": {"mode": "Detection"}, "customRules": {"rules": []}}});
        let own = want("ctra", &["203.0.113.7"], None);
        let (next, chosen) = plan_policy(FD, &fd, &own, &[]).unwrap().unwrap();
        assert_eq!(chosen["ctra"], 1);
        let r = &next["properties"]["customRules"]["rules"][0];
        assert_eq!(r["matchConditions"][0]["matchVariable"], "RemoteAddr");
        assert_eq!(
            r["matchConditions"][0]["matchValue"],
            json!(["203.0.113.7"])
        );
        assert!(rule_in_force(FD, &next, &own).is_some());
    }

    #[test]
    fn rule_names_are_deterministic_and_alphanumeric() {
        let a = rule_name("ns", "block");
        assert_eq!(a, rule_name("ns", "block"));
        assert_ne!(a, rule_name("ns", "block2"));
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()) && a.len() == 19);
    }
}
