//! NsgDenyRule: an operator-owned deny rule among a network security group's security rules
//! (azure-api-facts §3.20). Each security rule is its own ARM resource (long-running PUT and
//! DELETE), so only the owned rule is ever written and every other rule stays as it is, even
//! one an admin changes between our read and our write. NsgDenyRules on one NSG with the same
//! direction, protocol, ports and priority band share one rule (its name is a hash of that
//! shape), and a burst of them is coalesced into one PUT carrying all their addresses. The
//! priority is the lowest one in the band no other rule of that direction uses; a rule that
//! takes ours moves us, never them.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::api::common::{CommonStatus, Mode, ReleasePolicy};
use crate::api::network::{NsgDenyRule, NsgDirection, NsgProtocol};
use crate::azure::{AzureError, Clients, ResourceId};
use crate::controls::coalesce::Registry;
use crate::engine::composition::{OnTarget, name_of};
use crate::engine::{Assessment, Control, Stall, Step};

pub const NETWORK_API: &str = "2024-01-01";
const NSG_TYPE: &str = "Microsoft.Network/networkSecurityGroups";
/// Written on the rule so that whoever reads the NSG in the portal knows who owns it.
pub const DESCRIPTION: &str = "containment-operator NsgDenyRule: owned rule, changes are reverted";

crate::impl_kind!(NsgDenyRule, status: s => &s.common);

/// What one NsgDenyRule wants on the NSG.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    /// The shared rule's name (from the shape below).
    pub rule: String,
    pub outbound: bool,
    pub protocol: &'static str,
    /// Sorted; empty: every port.
    pub ports: Vec<String>,
    pub band: (i64, i64),
    /// Sorted, deduplicated.
    pub ips: Vec<String>,
}

fn protocol(p: NsgProtocol) -> &'static str {
    match p {
        NsgProtocol::Any => "*",
        NsgProtocol::Tcp => "Tcp",
        NsgProtocol::Udp => "Udp",
        NsgProtocol::Icmp => "Icmp",
    }
}

fn sorted(v: &[String]) -> Vec<String> {
    v.iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Deterministic per shape: `ctr-deny-in-<16 hex>` (NSG rule names allow 80 characters).
pub fn rule_name(outbound: bool, protocol: &str, ports: &[String], band: (i64, i64)) -> String {
    let shape = format!(
        "{outbound}|{protocol}|{}|{}-{}",
        ports.join(","),
        band.0,
        band.1
    );
    let mut h: u64 = 0xcbf29ce484222325;
    for b in shape.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let dir = if outbound { "out" } else { "in" };
    format!("ctr-deny-{dir}-{h:016x}")
}

pub fn want_of(obj: &NsgDenyRule) -> Want {
    let s = &obj.spec;
    let outbound = s.direction == NsgDirection::Outbound;
    let ports = sorted(&s.ports);
    let band = (
        i64::from(s.priority_band.from),
        i64::from(s.priority_band.to),
    );
    Want {
        rule: rule_name(outbound, protocol(s.protocol), &ports, band),
        outbound,
        protocol: protocol(s.protocol),
        ports,
        band,
        ips: sorted(&s.ip_addresses),
    }
}

fn rules(nsg: &Value) -> Vec<&Value> {
    nsg["properties"]["securityRules"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn find<'a>(nsg: &'a Value, name: &str) -> Option<&'a Value> {
    rules(nsg).into_iter().find(|r| {
        r["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

fn direction(outbound: bool) -> &'static str {
    if outbound { "Outbound" } else { "Inbound" }
}

/// A list field in its singular or plural form (`sourceAddressPrefix` / `…Prefixes`), sorted.
fn listed(props: &Value, singular: &str) -> Vec<String> {
    let mut v: Vec<String> = props[format!("{singular}es").as_str()]
        .as_array()
        .or_else(|| props[format!("{singular}s").as_str()].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(one) = props[singular].as_str().filter(|s| !s.is_empty()) {
        v.push(one.to_string());
    }
    sorted(&v)
}

/// The addresses an owned rule of this direction matches.
fn addresses(rule: &Value, outbound: bool) -> Vec<String> {
    let side = if outbound { "destination" } else { "source" };
    listed(&rule["properties"], &format!("{side}AddressPrefix"))
}

fn ports_of(rule: &Value) -> Vec<String> {
    let p = listed(&rule["properties"], "destinationPortRange");
    if p == ["*"] { Vec::new() } else { p }
}

/// Priorities taken by rules of this direction other than `except`.
fn used(nsg: &Value, outbound: bool, except: &str) -> BTreeSet<i64> {
    rules(nsg)
        .into_iter()
        .filter(|r| r["properties"]["direction"] == direction(outbound))
        .filter(|r| {
            !r["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(except))
        })
        .filter_map(|r| r["properties"]["priority"].as_i64())
        .collect()
}

/// The owned rule's priority when it holds `w`'s addresses with `w`'s shape, at a priority in
/// the band that no other rule of its direction shares.
pub fn in_force(nsg: &Value, w: &Want) -> Option<i64> {
    let r = find(nsg, &w.rule)?;
    let p = &r["properties"];
    let other_side = if w.outbound { "source" } else { "destination" };
    let have = addresses(r, w.outbound);
    let priority = p["priority"].as_i64()?;
    let ok = p["access"] == "Deny"
        && p["direction"] == direction(w.outbound)
        && p["protocol"] == w.protocol
        && ports_of(r) == w.ports
        && listed(p, &format!("{other_side}AddressPrefix")) == ["*"]
        && w.ips.iter().all(|ip| have.contains(ip))
        && (w.band.0..=w.band.1).contains(&priority)
        && !used(nsg, w.outbound, &w.rule).contains(&priority);
    ok.then_some(priority)
}

/// The body of the owned rule holding `ips` with `w`'s shape.
pub fn rule_body(w: &Want, ips: &[String], priority: i64) -> Value {
    let (ours, other) = if w.outbound {
        ("destinationAddressPrefixes", "sourceAddressPrefix")
    } else {
        ("sourceAddressPrefixes", "destinationAddressPrefix")
    };
    let mut props = json!({
        "description": DESCRIPTION,
        "protocol": w.protocol,
        "access": "Deny",
        "direction": direction(w.outbound),
        "priority": priority,
        "sourcePortRange": "*",
        ours: ips,
        other: "*",
    });
    if w.ports.is_empty() {
        props["destinationPortRange"] = json!("*");
    } else {
        props["destinationPortRanges"] = json!(w.ports);
    }
    json!({ "properties": props })
}

/// What the plan writes: the rule body, its priority and how many resources it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleWrite {
    pub body: Value,
    pub priority: i64,
    pub carried: usize,
}

/// The pure plan: `None` when `own`'s addresses are in force; otherwise the owned rule with
/// the addresses of `own` and of every sibling sharing its rule, at its current priority if
/// that is still its own, else at the lowest free one in the band.
pub fn plan_rule(nsg: &Value, own: &Want, siblings: &[Want]) -> Result<Option<RuleWrite>, Stall> {
    if in_force(nsg, own).is_some() {
        return Ok(None);
    }
    let sharing: Vec<&Want> = siblings.iter().filter(|s| s.rule == own.rule).collect();
    let ips: Vec<String> = sorted(
        &own.ips
            .iter()
            .chain(sharing.iter().flat_map(|s| s.ips.iter()))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let taken = used(nsg, own.outbound, &own.rule);
    let (from, to) = own.band;
    let current = find(nsg, &own.rule)
        .and_then(|r| r["properties"]["priority"].as_i64())
        .filter(|p| (from..=to).contains(p) && !taken.contains(p));
    let Some(priority) = current.or_else(|| (from..=to).find(|p| !taken.contains(p))) else {
        return Err(Stall::new(
            "NoFreePriority",
            format!(
                "every priority in spec.priorityBand {from}-{to} is taken by another {} rule of this NSG; widen or move the band",
                direction(own.outbound)
            ),
        ));
    };
    Ok(Some(RuleWrite {
        body: rule_body(own, &ips, priority),
        priority,
        carried: sharing.len(),
    }))
}

/// Release: the owned rule without this resource's addresses, or deleted when no remaining
/// NsgDenyRule shares it. Nothing when the rule is gone or already right.
pub fn release_rule(nsg: &Value, rule: &str, remaining: &[Want]) -> Option<Result<Value, ()>> {
    let r = find(nsg, rule)?;
    let Some(w) = remaining.iter().find(|w| w.rule == rule) else {
        return Some(Err(()));
    };
    let ips = sorted(
        &remaining
            .iter()
            .filter(|w| w.rule == rule)
            .flat_map(|w| w.ips.iter().cloned())
            .collect::<Vec<_>>(),
    );
    if addresses(r, w.outbound) == ips {
        return None;
    }
    let priority = r["properties"]["priority"].as_i64().unwrap_or(w.band.0);
    Some(Ok(rule_body(w, &ips, priority)))
}

/// Registered NsgDenyRules (Enforce) per NSG, for coalescing and release (see `coalesce`).
#[derive(Default)]
pub struct NsgDenyRuleControl {
    registry: Registry<Want>,
}

/// Coalescing is per owned rule, not per NSG: resources of another shape write another rule,
/// so they neither lead nor hold this rule's burst.
fn list_key(nsg: &ResourceId, rule: &str) -> String {
    format!("{}#{rule}", nsg.id)
}

impl NsgDenyRuleControl {
    /// The other registered NsgDenyRules sharing `rule` on the NSG.
    fn others(&self, nsg: &ResourceId, rule: &str, obj: &NsgDenyRule) -> Vec<Want> {
        let own = name_of(obj);
        self.registry
            .wants(&list_key(nsg, rule))
            .into_iter()
            .filter(|(k, _)| *k != own)
            .map(|(_, w)| w)
            .collect()
    }
}

fn rule_path(t: &ResourceId, rule: &str) -> String {
    format!("{}/securityRules/{rule}", t.id)
}

#[async_trait::async_trait]
impl Control for NsgDenyRuleControl {
    type K = NsgDenyRule;
    type Observed = Value;
    const RESOURCE_TYPE: &'static str = NSG_TYPE;
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const SHARED_OBSERVATION: bool = true;
    const ACTIONS: &'static [&'static str] = &[
        // The NSG's GET embeds its rules: no securityRules/read.
        "Microsoft.Network/networkSecurityGroups/read",
        "Microsoft.Network/networkSecurityGroups/securityRules/write",
        "Microsoft.Network/networkSecurityGroups/securityRules/delete",
        // The PUT's and DELETE's operation URLs, at subscription scope.
        "Microsoft.Network/locations/operations/read",
        "Microsoft.Network/locations/operationResults/read",
    ];

    fn register(&self, obj: &NsgDenyRule, t: &ResourceId, on: &OnTarget<NsgDenyRule>) {
        let rule = want_of(obj).rule;
        let same = |v: &[std::sync::Arc<NsgDenyRule>]| -> Vec<_> {
            v.iter()
                .filter(|p| want_of(p).rule == rule)
                .cloned()
                .collect()
        };
        let sharing = OnTarget {
            enforcing: same(&on.enforcing),
            holders: same(&on.holders),
            arriving: same(&on.arriving),
        };
        self.registry
            .register_on(&list_key(t, &rule), obj, &sharing, want_of);
    }

    fn unregister(&self, obj: &NsgDenyRule, t: &ResourceId) {
        self.registry
            .remove(&list_key(t, &want_of(obj).rule), &name_of(obj));
    }

    /// A write of the shared rule carries the peers that share it.
    fn carried<'p>(
        &self,
        steps: &[Step],
        peers: &'p [std::sync::Arc<NsgDenyRule>],
    ) -> Vec<&'p std::sync::Arc<NsgDenyRule>> {
        peers
            .iter()
            .filter(|p| {
                let rule = want_of(p).rule;
                steps.iter().any(|s| s.path.ends_with(&format!("/{rule}")))
            })
            .collect()
    }

    fn tags(&self, nsg: &Value) -> Option<serde_json::Map<String, Value>> {
        Some(super::tags_of(nsg))
    }

    async fn observe(
        &self,
        az: &Clients,
        _obj: &NsgDenyRule,
        t: &ResourceId,
    ) -> Result<Value, AzureError> {
        az.arm.get(&t.id, NETWORK_API).await
    }

    fn assess(
        &self,
        obj: &NsgDenyRule,
        t: &ResourceId,
        nsg: &Value,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let own = want_of(obj);
        let siblings = if obj.spec.common.mode == Mode::Enforce {
            self.others(t, &own.rule, obj)
        } else {
            Vec::new()
        };
        let mut extra = serde_json::Map::new();
        extra.insert("ruleName".into(), json!(own.rule));
        let list = own.ips.join(", ");
        let dir = direction(own.outbound);
        let record = || {
            status
                .restore
                .clone()
                .unwrap_or_else(|| json!({"ruleName": own.rule}))
        };
        match plan_rule(nsg, &own, &siblings)? {
            None => {
                extra.insert("priority".into(), json!(in_force(nsg, &own)));
                Ok(Assessment {
                    // A coalesced sibling may have written our addresses: own them for release.
                    record: status.restore.is_none().then(record),
                    message: format!("security rule {} denies {dir} {list}", own.rule),
                    extra,
                    ..Default::default()
                })
            }
            Some(_)
                if let Some(wait) = self.registry.hold(&list_key(t, &own.rule), &name_of(obj)) =>
            {
                Ok(Assessment {
                    message: format!("security rule {} is missing or differs", own.rule),
                    extra,
                    wait: Some(super::coalesce::held(
                        "other NsgDenyRules are arriving on this NSG; writing them in one PUT",
                        wait,
                    )),
                    ..Default::default()
                })
            }
            Some(w) => {
                extra.insert("priority".into(), json!(w.priority));
                let and = match w.carried {
                    0 => String::new(),
                    n => format!(" (and the addresses of {n} other NsgDenyRule(s))"),
                };
                Ok(Assessment {
                    steps: vec![
                        Step::put(rule_path(t, &own.rule), NETWORK_API, w.body)
                            .lro()
                            .what(format!(
                                "write security rule {} at priority {} denying {dir} {list}{and}",
                                own.rule, w.priority
                            )),
                    ],
                    message: format!("security rule {} is missing or differs", own.rule),
                    record: Some(record()),
                    extra,
                    wait: None,
                })
            }
        }
    }

    /// The rule name is deterministic: one whose addresses a sibling's write carried before it
    /// recorded anything still takes them out on release.
    fn implicit_restore(&self, obj: &NsgDenyRule) -> Option<Value> {
        Some(json!({"ruleName": want_of(obj).rule}))
    }

    fn release(
        &self,
        obj: &NsgDenyRule,
        t: &ResourceId,
        nsg: &Value,
        restore: &Value,
    ) -> Vec<Step> {
        let rule = restore["ruleName"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| want_of(obj).rule);
        let remaining = self.others(t, &rule, obj);
        match release_rule(nsg, &rule, &remaining) {
            None => Vec::new(),
            Some(Err(())) => vec![
                Step::delete(rule_path(t, &rule), NETWORK_API)
                    .lro()
                    .what(format!("delete security rule {rule}")),
            ],
            Some(Ok(body)) => vec![
                Step::put(rule_path(t, &rule), NETWORK_API, body)
                    .lro()
                    .what(format!(
                        "remove this resource's addresses from security rule {rule}"
                    )),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(ips: &[&str]) -> Want {
        let ports = vec![];
        Want {
            rule: rule_name(false, "*", &ports, (100, 199)),
            outbound: false,
            protocol: "*",
            ports,
            band: (100, 199),
            ips: ips.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn nsg(rules: Vec<Value>) -> Value {
        json!({"properties": {"securityRules": rules}})
    }

    fn foreign(name: &str, priority: i64, dir: &str) -> Value {
        json!({"name": name, "properties": {"priority": priority, "direction": dir, "access": "Allow", "protocol": "Tcp",
               "sourceAddressPrefix": "*", "destinationAddressPrefix": "*", "sourcePortRange": "*", "destinationPortRange": "22"}})
    }

    fn owned(w: &Want, ips: &[&str], priority: i64) -> Value {
        let ips: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
        let mut r = rule_body(w, &ips, priority);
        r["name"] = json!(w.rule);
        r
    }

    #[test]
    fn takes_the_lowest_priority_no_rule_of_its_direction_uses() {
        let w = want(&["203.0.113.5"]);
        let n = nsg(vec![
            foreign("ssh", 100, "Inbound"),
            foreign("out", 101, "Outbound"),
        ]);
        let p = plan_rule(&n, &w, &[]).unwrap().unwrap();
        assert_eq!(p.priority, 101, "100 is taken inbound; 101 only outbound");
        assert_eq!(
            p.body["properties"]["sourceAddressPrefixes"],
            json!(["203.0.113.5"])
        );
        assert_eq!(p.body["properties"]["destinationAddressPrefix"], "*");
        assert_eq!(p.body["properties"]["access"], "Deny");
    }

    #[test]
    fn a_rule_taking_our_priority_moves_us_not_them() {
        let w = want(&["203.0.113.5"]);
        let n = nsg(vec![
            owned(&w, &["203.0.113.5"], 100),
            foreign("admin", 100, "Inbound"),
        ]);
        assert_eq!(in_force(&n, &w), None, "a shared priority is not in force");
        let p = plan_rule(&n, &w, &[]).unwrap().unwrap();
        assert_eq!(p.priority, 101);
    }

    #[test]
    fn siblings_sharing_the_rule_are_carried_and_others_are_not() {
        let w = want(&["203.0.113.5"]);
        let mut other_shape = want(&["198.51.100.1"]);
        other_shape.rule = "ctr-deny-in-other".into();
        let sib = want(&["198.51.100.9", "203.0.113.5"]);
        let p = plan_rule(&nsg(vec![]), &w, &[sib, other_shape])
            .unwrap()
            .unwrap();
        assert_eq!(p.carried, 1);
        assert_eq!(
            p.body["properties"]["sourceAddressPrefixes"],
            json!(["198.51.100.9", "203.0.113.5"])
        );
        let n = nsg(vec![owned(&w, &["198.51.100.9", "203.0.113.5"], 150)]);
        assert_eq!(in_force(&n, &w), Some(150), "a superset holds ours");
    }

    #[test]
    fn a_full_band_stalls_naming_it() {
        let mut w = want(&["203.0.113.5"]);
        w.band = (100, 101);
        let n = nsg(vec![
            foreign("a", 100, "Inbound"),
            foreign("b", 101, "Inbound"),
        ]);
        let e = plan_rule(&n, &w, &[]).unwrap_err();
        assert_eq!(e.reason, "NoFreePriority");
        assert!(
            e.message.contains("spec.priorityBand 100-101"),
            "{}",
            e.message
        );
    }

    #[test]
    fn release_keeps_the_remaining_addresses_or_deletes_with_the_last() {
        let w = want(&["203.0.113.5"]);
        let sib = want(&["198.51.100.9"]);
        let n = nsg(vec![owned(&w, &["198.51.100.9", "203.0.113.5"], 120)]);
        let body = release_rule(&n, &w.rule, std::slice::from_ref(&sib))
            .unwrap()
            .unwrap();
        assert_eq!(
            body["properties"]["sourceAddressPrefixes"],
            json!(["198.51.100.9"])
        );
        assert_eq!(body["properties"]["priority"], 120);
        assert_eq!(release_rule(&n, &w.rule, &[]), Some(Err(())));
        assert_eq!(release_rule(&nsg(vec![]), &w.rule, &[]), None);
        let only_sib = nsg(vec![owned(&w, &["198.51.100.9"], 120)]);
        assert_eq!(release_rule(&only_sib, &w.rule, &[sib]), None);
    }

    #[test]
    fn outbound_rules_match_destinations_and_ports() {
        let ports = vec!["443".to_string(), "8000-8100".to_string()];
        let w = Want {
            rule: rule_name(true, "Tcp", &ports, (100, 199)),
            outbound: true,
            protocol: "Tcp",
            ports,
            band: (100, 199),
            ips: vec!["203.0.113.0/24".into()],
        };
        assert_ne!(w.rule, want(&[]).rule, "the shape names the rule");
        let p = plan_rule(&nsg(vec![]), &w, &[]).unwrap().unwrap();
        let props = &p.body["properties"];
        assert_eq!(
            props["destinationAddressPrefixes"],
            json!(["203.0.113.0/24"])
        );
        assert_eq!(props["sourceAddressPrefix"], "*");
        assert_eq!(props["destinationPortRanges"], json!(["443", "8000-8100"]));
        assert_eq!(props["direction"], "Outbound");
        let mut n = nsg(vec![p.body.clone()]);
        n["properties"]["securityRules"][0]["name"] = json!(w.rule);
        assert_eq!(in_force(&n, &w), Some(100));
    }
}
