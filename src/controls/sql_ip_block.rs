//! SqlIpBlock: server firewall rules are allow-only, so "block" means no rule may admit the
//! listed addresses. Covering rules are split around them (parts named `<rule>-cx<n>`) or removed;
//! the originals are recorded and put back exactly on release.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ipv4::{self, Range};
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::sql::SqlIpBlock;
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

pub const SQL_API: &str = "2021-11-01";
/// The 0.0.0.0–0.0.0.0 rule means "any Azure-hosted client", an attacker's Azure VM included.
pub const AZURE_SERVICES: Range = (0, 0);

crate::impl_kind!(SqlIpBlock, status: s => &s.common);

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub range: Range,
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The target's Azure tags (the guard's protected tag).
    pub tags: serde_json::Map<String, Value>,
    pub public_network_access: Option<String>,
    pub rules: Vec<Rule>,
    pub ipv6: Vec<String>,
}

/// What `status.restore` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Rules we removed or split, as they were.
    #[serde(default)]
    pub originals: BTreeMap<String, RuleRange>,
    /// Rules we created (split parts).
    #[serde(default)]
    pub created: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleRange {
    pub start_ip_address: String,
    pub end_ip_address: String,
}

impl RuleRange {
    fn of(r: Range) -> Self {
        Self {
            start_ip_address: ipv4::fmt(r.0),
            end_ip_address: ipv4::fmt(r.1),
        }
    }
    fn range(&self) -> Option<Range> {
        ipv4::parse_pair(&self.start_ip_address, &self.end_ip_address)
    }
}

fn rule_path(server: &str, name: &str) -> String {
    format!("{server}/firewallRules/{name}")
}

fn put_rule(server: &str, name: &str, r: Range, what: String) -> Step {
    let rr = RuleRange::of(r);
    Step::put(
        rule_path(server, name),
        SQL_API,
        json!({"properties": {"startIpAddress": rr.start_ip_address, "endIpAddress": rr.end_ip_address}}),
    )
    .what(what)
}

fn part_name(original: &str, i: usize) -> String {
    // Azure allows 128 characters; keep room for the suffix.
    let base: String = original.chars().take(120).collect();
    format!("{base}-cx{i}")
}

/// The pure plan: the steps that leave no rule admitting `blocked`, and the updated record.
pub fn plan(
    server: &str,
    rules: &[Rule],
    blocked: &[Range],
    remove_azure_services: bool,
    previous: &Record,
) -> (Vec<Step>, Record) {
    let mut record = previous.clone();
    let current: BTreeMap<&str, Range> = rules.iter().map(|r| (r.name.as_str(), r.range)).collect();
    for r in rules {
        if record.created.contains(&r.name) || record.originals.contains_key(&r.name) {
            continue;
        }
        let admits = blocked.iter().any(|b| ipv4::intersects(r.range, *b));
        if admits || (remove_azure_services && r.range == AZURE_SERVICES) {
            record
                .originals
                .insert(r.name.clone(), RuleRange::of(r.range));
        }
    }
    let mut desired: BTreeMap<String, (Range, String)> = BTreeMap::new();
    for (name, rr) in &record.originals {
        let Some(range) = rr.range() else { continue };
        if range == AZURE_SERVICES && remove_azure_services {
            continue;
        }
        for (i, part) in ipv4::subtract(range, blocked).into_iter().enumerate() {
            desired.insert(part_name(name, i + 1), (part, name.clone()));
        }
    }
    let mut steps = Vec::new();
    for (name, (range, from)) in &desired {
        if current.get(name.as_str()) != Some(range) {
            steps.push(put_rule(
                server,
                name,
                *range,
                format!("create firewall rule {name} (part of {from} that does not admit the blocked addresses)"),
            ));
        }
        record.created.insert(name.clone());
    }
    for (name, rr) in &record.originals {
        // A rule that reuses an original's name with another range, admitting none of the
        // blocked addresses, is someone's new rule: not ours to delete.
        let ours_or_admits = current.get(name.as_str()).is_some_and(|cur| {
            rr.range() == Some(*cur) || blocked.iter().any(|b| ipv4::intersects(*cur, *b))
        });
        if ours_or_admits && !desired.contains_key(name) {
            steps.push(
                Step::delete(rule_path(server, name), SQL_API)
                    .what(format!("delete firewall rule {name}")),
            );
        }
    }
    for name in &record.created {
        if current.contains_key(name.as_str()) && !desired.contains_key(name) {
            steps.push(
                Step::delete(rule_path(server, name), SQL_API)
                    .what(format!("delete firewall rule {name} (no longer needed)")),
            );
        }
    }
    (steps, record)
}

/// One record from two of the same server: the older one's originals win; a rule the newer one
/// took for an original but the older one created is a split part, not a prior state.
pub fn merge_records(older: Record, newer: Record) -> Record {
    let mut r = older;
    for (name, rr) in newer.originals {
        if !r.created.contains(&name) {
            r.originals.entry(name).or_insert(rr);
        }
    }
    r.created.extend(newer.created);
    r
}

/// The pure release: originals back first (no outage for legitimate clients), then our parts go.
pub fn release_plan(server: &str, rules: &[Rule], record: &Record) -> Vec<Step> {
    let current: BTreeMap<&str, Range> = rules.iter().map(|r| (r.name.as_str(), r.range)).collect();
    let mut steps = Vec::new();
    for (name, rr) in &record.originals {
        let Some(range) = rr.range() else { continue };
        if current.get(name.as_str()) != Some(&range) {
            steps.push(put_rule(
                server,
                name,
                range,
                format!("restore firewall rule {name}"),
            ));
        }
    }
    for name in &record.created {
        if current.contains_key(name.as_str()) && !record.originals.contains_key(name) {
            steps.push(Step::delete(rule_path(server, name), SQL_API).what(format!(
                "delete firewall rule {name} (created by this containment)"
            )));
        }
    }
    steps
}

#[derive(Default)]
pub struct SqlIpBlockControl;

fn record_of(status: &CommonStatus) -> Record {
    status
        .restore
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Control for SqlIpBlockControl {
    type K = SqlIpBlock;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.Sql/servers";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const SHARED_OBSERVATION: bool = true;
    const COMPOSES: bool = true;
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Sql/servers/read",
        "Microsoft.Sql/servers/firewallRules/read",
        "Microsoft.Sql/servers/firewallRules/write",
        "Microsoft.Sql/servers/firewallRules/delete",
        "Microsoft.Sql/servers/ipv6FirewallRules/read",
    ];

    /// No rule may admit any address any of them blocks.
    fn compose(&self, acc: &mut SqlIpBlock, other: &SqlIpBlock) -> Result<(), String> {
        for ip in &other.spec.ip_addresses {
            if !acc.spec.ip_addresses.contains(ip) {
                acc.spec.ip_addresses.push(ip.clone());
            }
        }
        acc.spec.remove_allow_azure_services_rule |= other.spec.remove_allow_azure_services_rule;
        Ok(())
    }

    fn merge_restore(&self, older: &Value, newer: &Value) -> Value {
        let (Ok(o), Ok(n)) = (
            serde_json::from_value::<Record>(older.clone()),
            serde_json::from_value::<Record>(newer.clone()),
        ) else {
            return older.clone();
        };
        serde_json::to_value(merge_records(o, n)).unwrap_or_else(|_| older.clone())
    }

    /// Firewall rule PUTs and DELETEs answer with the rule's final state (ARM's PUT returns the
    /// rule; a DELETE that succeeded removed it): the rule list after them is known.
    fn after_steps(&self, observed: &Observed, steps: &[Step]) -> Option<Observed> {
        let mut o = observed.clone();
        for s in steps {
            let (_, name) = s.path.rsplit_once("/firewallRules/")?;
            o.rules.retain(|r| !r.name.eq_ignore_ascii_case(name));
            match s.method {
                "DELETE" => {}
                "PUT" => {
                    let p = &s.body.as_ref()?["properties"];
                    o.rules.push(Rule {
                        name: name.to_string(),
                        range: ipv4::parse_pair(
                            p["startIpAddress"].as_str()?,
                            p["endIpAddress"].as_str()?,
                        )?,
                    });
                }
                _ => return None,
            }
        }
        Some(o)
    }

    fn tags(&self, observed: &Observed) -> Option<serde_json::Map<String, Value>> {
        Some(observed.tags.clone())
    }

    async fn observe(
        &self,
        az: &Clients,
        _obj: &SqlIpBlock,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let server = az.arm.get(&t.id, SQL_API).await?;
        let rules = az
            .arm
            .list(&format!("{}/firewallRules", t.id), SQL_API)
            .await?;
        let ipv6 = az
            .arm
            .list(&format!("{}/ipv6FirewallRules", t.id), SQL_API)
            .await?;
        Ok(Observed {
            tags: super::tags_of(&server),
            public_network_access: server["properties"]["publicNetworkAccess"]
                .as_str()
                .map(str::to_string),
            rules: rules
                .iter()
                .filter_map(|r| {
                    let p = &r["properties"];
                    Some(Rule {
                        name: r["name"].as_str()?.to_string(),
                        range: ipv4::parse_pair(
                            p["startIpAddress"].as_str()?,
                            p["endIpAddress"].as_str()?,
                        )?,
                    })
                })
                .collect(),
            ipv6: ipv6
                .iter()
                .map(|r| {
                    let p = &r["properties"];
                    format!(
                        "{} ({}-{})",
                        r["name"].as_str().unwrap_or("?"),
                        p["startIPv6Address"].as_str().unwrap_or("?"),
                        p["endIPv6Address"].as_str().unwrap_or("?")
                    )
                })
                .collect(),
        })
    }

    fn assess(
        &self,
        obj: &SqlIpBlock,
        t: &ResourceId,
        o: &Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let mut blocked = Vec::new();
        for ip in &obj.spec.ip_addresses {
            blocked.push(ipv4::parse(ip).ok_or_else(|| {
                Stall::new(
                    "InvalidSpec",
                    format!("spec.ipAddresses: {ip:?} is not an IPv4 address or CIDR"),
                )
            })?);
        }
        let mut extra = serde_json::Map::new();
        extra.insert("ipv6RulesNotChecked".into(), json!(o.ipv6));
        let list = obj.spec.ip_addresses.join(", ");
        if o.public_network_access.as_deref() == Some("Disabled") {
            // Rule edits fail while public access is off, and the edge already blocks everyone.
            return Ok(Assessment {
                message: format!(
                    "public network access is Disabled, so {list} cannot reach the server; rules are narrowed if it is re-enabled"
                ),
                extra,
                ..Default::default()
            });
        }
        let previous = record_of(status);
        let (steps, record) = plan(
            &t.id,
            &o.rules,
            &blocked,
            obj.spec.remove_allow_azure_services_rule,
            &previous,
        );
        let message = if steps.is_empty() {
            let mut m = format!("no server firewall rule admits {list}");
            if !record.originals.is_empty() {
                m.push_str(&format!(
                    " ({} rule(s) narrowed or removed: {})",
                    record.originals.len(),
                    record
                        .originals
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !o.ipv6.is_empty() {
                m.push_str(&format!("; {} IPv6 rule(s) left alone", o.ipv6.len()));
            }
            m
        } else {
            format!(
                "{} change(s) needed so that no firewall rule admits {list}",
                steps.len()
            )
        };
        Ok(Assessment {
            record: (!steps.is_empty()).then(|| serde_json::to_value(&record).unwrap_or_default()),
            steps,
            message,
            extra,
            wait: None,
        })
    }

    fn release(
        &self,
        _obj: &SqlIpBlock,
        t: &ResourceId,
        o: &Observed,
        restore: &Value,
    ) -> Vec<Step> {
        let record: Record = serde_json::from_value(restore.clone()).unwrap_or_default();
        release_plan(&t.id, &o.rules, &record)
    }

    fn release_advice(&self, e: &AzureError) -> Option<String> {
        (e.reason() == "DenyPublicEndpointEnabled").then(|| {
            "the server's public network access is Disabled, and Azure refuses firewall-rule \
             changes while it is: restore public access first (e.g. delete the \
             SqlPublicAccessLockdown on this server), or set spec.releasePolicy: Retain to leave \
             the firewall rules as they are"
                .to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRV: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/srv";

    fn rule(name: &str, a: &str, b: &str) -> Rule {
        Rule {
            name: name.into(),
            range: ipv4::parse_pair(a, b).unwrap(),
        }
    }

    fn demo() -> Vec<Rule> {
        vec![
            rule("AllowAll", "0.0.0.0", "255.255.255.255"),
            rule("AllowAllWindowsAzureIps", "0.0.0.0", "0.0.0.0"),
            rule("office", "198.51.100.0", "198.51.100.255"),
        ]
    }

    /// Apply steps to a rule list, as Azure would.
    fn apply(rules: &[Rule], steps: &[Step]) -> Vec<Rule> {
        let mut out: BTreeMap<String, Range> =
            rules.iter().map(|r| (r.name.clone(), r.range)).collect();
        for s in steps {
            let name = s.path.rsplit('/').next().unwrap().to_string();
            match s.method {
                "PUT" => {
                    let p = &s.body.as_ref().unwrap()["properties"];
                    out.insert(
                        name,
                        ipv4::parse_pair(
                            p["startIpAddress"].as_str().unwrap(),
                            p["endIpAddress"].as_str().unwrap(),
                        )
                        .unwrap(),
                    );
                }
                "DELETE" => {
                    out.remove(&name);
                }
                m => panic!("unexpected {m}"),
            }
        }
        out.into_iter()
            .map(|(name, range)| Rule { name, range })
            .collect()
    }

    #[test]
    fn splits_allow_all_and_is_then_idempotent() {
        let blocked = [ipv4::parse("203.0.113.7").unwrap()];
        let (steps, record) = plan(SRV, &demo(), &blocked, false, &Record::default());
        let methods: Vec<_> = steps
            .iter()
            .map(|s| (s.method, s.path.rsplit('/').next().unwrap().to_string()))
            .collect();
        assert_eq!(
            methods,
            vec![
                ("PUT", "AllowAll-cx1".to_string()),
                ("PUT", "AllowAll-cx2".to_string()),
                ("DELETE", "AllowAll".to_string())
            ]
        );
        let after = apply(&demo(), &steps);
        assert!(after.iter().all(|r| !ipv4::intersects(r.range, blocked[0])));
        assert!(after.iter().any(|r| r.name == "office"));
        assert!(after.iter().any(|r| r.name == "AllowAllWindowsAzureIps"));
        let (again, record2) = plan(SRV, &after, &blocked, false, &record);
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(record, record2);
        // Release restores exactly the original list.
        let restored = apply(&after, &release_plan(SRV, &after, &record));
        assert_eq!(restored, demo());
    }

    /// What the engine derives after the writes equals what Azure then holds (the test's
    /// `apply` plays Azure), and planning from it again sends nothing.
    #[test]
    fn derived_observation_matches_azure_after_the_writes() {
        let blocked = [ipv4::parse("203.0.113.7").unwrap()];
        let (steps, record) = plan(SRV, &demo(), &blocked, true, &Record::default());
        let before = Observed {
            tags: Default::default(),
            public_network_access: Some("Enabled".into()),
            rules: demo(),
            ipv6: vec![],
        };
        let derived = SqlIpBlockControl.after_steps(&before, &steps).unwrap();
        let mut got: Vec<_> = derived
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.range))
            .collect();
        got.sort();
        let want: Vec<_> = apply(&demo(), &steps)
            .into_iter()
            .map(|r| (r.name, r.range))
            .collect();
        assert_eq!(got, want);
        assert!(
            plan(SRV, &derived.rules, &blocked, true, &record)
                .0
                .is_empty()
        );
        // Anything but firewall rule PUT/DELETE: read back instead.
        let other = Step::delete(format!("{SRV}/privateEndpointConnections/pe"), SQL_API);
        assert!(SqlIpBlockControl.after_steps(&before, &[other]).is_none());
    }

    #[test]
    fn removes_azure_services_rule_only_when_asked() {
        let blocked = [ipv4::parse("198.51.100.0/24").unwrap()];
        let (steps, record) = plan(SRV, &demo(), &blocked, true, &Record::default());
        let after = apply(&demo(), &steps);
        let names: Vec<_> = after.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["AllowAll-cx1", "AllowAll-cx2"]);
        assert!(record.originals.contains_key("AllowAllWindowsAzureIps"));
        assert!(record.originals.contains_key("office"));
        assert_eq!(apply(&after, &release_plan(SRV, &after, &record)), demo());
    }

    #[test]
    fn re_added_rule_is_drift_and_is_narrowed_again() {
        let blocked = [ipv4::parse("203.0.113.7").unwrap()];
        let (steps, record) = plan(SRV, &demo(), &blocked, false, &Record::default());
        let mut after = apply(&demo(), &steps);
        after.push(rule("AllowAll", "0.0.0.0", "255.255.255.255"));
        after.push(rule("evil", "203.0.113.0", "203.0.113.255"));
        let (fix, record2) = plan(SRV, &after, &blocked, false, &record);
        let fixed = apply(&after, &fix);
        assert!(fixed.iter().all(|r| !ipv4::intersects(r.range, blocked[0])));
        assert!(record2.originals.contains_key("evil"));
        assert!(fixed.iter().any(|r| r.name == "evil-cx1"));
    }

    #[test]
    fn a_later_rule_reusing_an_originals_name_is_left_alone() {
        let blocked = [ipv4::parse("198.51.100.7").unwrap()];
        let (steps, record) = plan(SRV, &demo(), &blocked, false, &Record::default());
        assert!(record.originals.contains_key("office"));
        let mut after = apply(&demo(), &steps);
        // An admin later creates a new "office" rule for another network.
        after.push(rule("office", "192.0.2.0", "192.0.2.255"));
        let (fix, _) = plan(SRV, &after, &blocked, false, &record);
        assert!(
            fix.iter()
                .all(|s| !s.path.ends_with("/firewallRules/office")),
            "{fix:?}"
        );
        // The same name admitting the blocked address again is drift: removed again.
        after.retain(|r| r.name != "office");
        after.push(rule("office", "198.51.100.0", "198.51.100.255"));
        let (fix, _) = plan(SRV, &after, &blocked, false, &record);
        assert!(
            fix.iter()
                .any(|s| s.method == "DELETE" && s.path.ends_with("/firewallRules/office"))
        );
    }
}
