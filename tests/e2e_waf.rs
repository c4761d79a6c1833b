//! End to end, the owned-rule-in-a-shared-list kinds: WafIpBlock on App Gateway and Front Door
//! policies, NsgDenyRule on network security groups.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

fn rules(policy: &Value) -> Vec<(String, i64)> {
    let list = policy["properties"]["customRules"]
        .as_array()
        .or_else(|| policy["properties"]["customRules"]["rules"].as_array())
        .cloned()
        .unwrap_or_default();
    list.iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["priority"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn app_gateway_rule_prevention_mode_drift_and_release() {
    let env = Env::new("e2e-waf").await;
    let _op = env.operator();
    let original = env.sim.resource(WAF).await;
    let t = env
        .apply("WafIpBlock", "attacker", json!({"target": target(WAF), "ipAddresses": ["203.0.113.7", "198.51.100.0/24"], "enforcePreventionMode": true}))
        .await;
    let o = env
        .wait_condition("WafIpBlock", "attacker", "Ready", "True", Some("Contained"))
        .await;
    eprintln!(
        "apply→Ready WafIpBlock (App Gateway): {} ms",
        t.elapsed().as_millis()
    );
    let rule = o["status"]["ruleName"].as_str().unwrap().to_string();
    assert_eq!(
        o["status"]["priority"], 2,
        "lowest priority not used by 1, 5, 10"
    );
    assert_eq!(o["status"]["restore"]["mode"], "Detection");
    let p = env.sim.resource(WAF).await;
    assert_eq!(
        rules(&p),
        vec![
            ("AllowHealthProbe".into(), 1),
            (rule.clone(), 2),
            ("BlockKnownBad".into(), 5),
            ("GeoBlock".into(), 10)
        ]
    );
    assert_eq!(p["properties"]["policySettings"]["mode"], "Prevention");
    assert_eq!(
        p["properties"]["managedRules"], original["properties"]["managedRules"],
        "managed rules preserved"
    );
    assert_eq!(
        p["properties"]["applicationGateways"],
        original["properties"]["applicationGateways"]
    );
    let ours = p["properties"]["customRules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == rule.as_str())
        .unwrap()
        .clone();
    assert_eq!(ours["action"], "Block");
    assert_eq!(
        ours["matchConditions"][0]["matchValues"],
        json!(["198.51.100.0/24", "203.0.113.7"])
    );
    assert_eq!(env.sim.successful_writes().await.len(), 1);

    // Drift: someone puts the old policy back.
    env.sim.put(WAF, original.clone()).await;
    env.wait(
        "WafIpBlock",
        "attacker",
        "drift corrected",
        Duration::from_secs(20),
        |o| {
            o.is_some_and(|o| {
                o["status"]["driftCount"] == 1
                    && condition(o, "Ready").is_some_and(|c| c["status"] == "True")
            })
        },
    )
    .await;
    assert!(rules(&env.sim.resource(WAF).await).contains(&(rule.clone(), 2)));

    env.delete("WafIpBlock", "attacker").await;
    env.wait_gone("WafIpBlock", "attacker").await;
    let p = env.sim.resource(WAF).await;
    assert_eq!(rules(&p), rules(&original), "only our rule is removed");
    assert_eq!(p["properties"]["policySettings"]["mode"], "Detection");
}

#[tokio::test]
async fn many_blocks_on_one_policy_are_coalesced() {
    let env = Env::new("e2e-waf-coalesce").await;
    for i in 0..6 {
        env.apply(
            "WafIpBlock",
            &format!("b{i}"),
            json!({"target": target(WAF), "ipAddresses": [format!("203.0.113.{}", 10 + i)]}),
        )
        .await;
    }
    let started = Instant::now();
    let _op = env.operator();
    for i in 0..6 {
        env.wait_ready("WafIpBlock", &format!("b{i}")).await;
    }
    eprintln!(
        "6 WafIpBlocks on one policy Ready in {} ms",
        started.elapsed().as_millis()
    );
    let puts = env.sim.successful_writes().await.len();
    eprintln!("6 WafIpBlocks coalesced into {puts} PUT(s)");
    assert!(puts <= 2, "6 resources coalesced into {puts} PUT(s)");
    let r = rules(&env.sim.resource(WAF).await);
    assert_eq!(r.len(), 9);
    let mut prios: Vec<i64> = r.iter().map(|x| x.1).collect();
    prios.sort();
    prios.dedup();
    assert_eq!(prios.len(), 9, "priorities unique: {r:?}");
    // Each one owns its rule even when a sibling wrote it: deleting them all removes all six.
    for i in 0..6 {
        env.delete("WafIpBlock", &format!("b{i}")).await;
    }
    for i in 0..6 {
        env.wait_gone("WafIpBlock", &format!("b{i}")).await;
    }
    assert_eq!(
        rules(&env.sim.resource(WAF).await).len(),
        3,
        "only the policy's own rules remain"
    );
}

#[tokio::test]
async fn a_concurrent_change_between_read_and_write_is_kept() {
    let env = Env::new("e2e-waf-race").await;
    env.sim.settings(json!({"latencyMs": 1500})).await;
    let op = env.operator();
    env.apply(
        "WafIpBlock",
        "race",
        json!({"target": target(WAF), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    // As soon as the operator has read the policy, someone else writes it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let read = env
            .sim
            .requests()
            .await
            .iter()
            .any(|r| r["method"] == "GET" && r["path"] == WAF);
        if read {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the operator never read the policy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut p = env.sim.resource(WAF).await;
    p["etag"] = json!("W/\"someone-else\"");
    p["properties"]["customRules"].as_array_mut().unwrap().push(json!({
        "name": "AddedByAdmin", "priority": 2, "ruleType": "MatchRule", "action": "Block", "state": "Enabled",
        "matchConditions": [{"matchVariables": [{"variableName": "RemoteAddr"}], "operator": "IPMatch", "matchValues": ["192.0.2.99"]}]}));
    env.sim.put(WAF, p).await;
    env.sim.settings(json!({"latencyMs": 0})).await;
    let o = env
        .wait_condition("WafIpBlock", "race", "Ready", "True", Some("Contained"))
        .await;
    let r = rules(&env.sim.resource(WAF).await);
    assert!(
        r.contains(&("AddedByAdmin".into(), 2)),
        "the other writer's rule survives: {r:?}"
    );
    assert_eq!(o["status"]["priority"], 3, "re-planned around the new rule");
    assert!(op.logs().contains("ConcurrentModification"));
}

#[tokio::test]
async fn front_door_rule_through_a_long_running_put() {
    let env = Env::new("e2e-fdwaf").await;
    let _op = env.operator();
    let t = env.apply("WafIpBlock", "fd", json!({"target": target(FD_WAF), "policyType": "FrontDoor", "ipAddresses": ["203.0.113.7"], "priority": 50})).await;
    let o = env
        .wait_condition("WafIpBlock", "fd", "Ready", "True", Some("Contained"))
        .await;
    eprintln!(
        "apply→Ready WafIpBlock (Front Door, long-running PUT): {} ms",
        t.elapsed().as_millis()
    );
    let p = env.sim.resource(FD_WAF).await;
    let rule = &p["properties"]["customRules"]["rules"][0];
    assert_eq!(rule["name"], o["status"]["ruleName"]);
    assert_eq!(rule["priority"], 50);
    assert_eq!(
        rule["matchConditions"][0]["matchValue"],
        json!(["203.0.113.7"])
    );
    assert_eq!(p["sku"]["name"], "Premium_AzureFrontDoor");
    env.delete("WafIpBlock", "fd").await;
    env.wait_gone("WafIpBlock", "fd").await;
    assert_eq!(
        env.sim.resource(FD_WAF).await["properties"]["customRules"]["rules"],
        json!([])
    );
}

#[tokio::test]
async fn wrong_policy_type_for_the_target_stalls() {
    let env = Env::new("e2e-waf-type").await;
    let _op = env.operator();
    env.apply(
        "WafIpBlock",
        "x",
        json!({"target": target(WAF), "policyType": "FrontDoor", "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    let o = env
        .wait_condition("WafIpBlock", "x", "Stalled", "True", Some("InvalidTarget"))
        .await;
    assert!(
        condition(&o, "Stalled").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("FrontDoorWebApplicationFirewallPolicies")
    );
}

/// The policy's prior mode belongs to the policy, not to the block that switched it: deleting
/// that block while another still wants Prevention keeps Prevention, and the last one restores
/// Detection. A block whose rule a sibling wrote, and that recorded nothing itself, still has its
/// rule removed on release (by its deterministic name).
#[tokio::test]
async fn prevention_mode_outlives_no_block_and_unrecorded_rules_are_released() {
    let env = Env::new("e2e-waf-mode").await;
    let _op = env.operator();
    let original = env.sim.resource(WAF).await;
    for (name, ip) in [("first", "203.0.113.7"), ("second", "203.0.113.9")] {
        env.apply(
            "WafIpBlock",
            name,
            json!({"target": target(WAF), "ipAddresses": [ip], "enforcePreventionMode": true}),
        )
        .await;
        env.wait_condition("WafIpBlock", name, "Ready", "True", Some("Contained"))
            .await;
    }
    let mode = |p: &Value| p["properties"]["policySettings"]["mode"].clone();
    assert_eq!(mode(&env.sim.resource(WAF).await), "Prevention");
    env.delete("WafIpBlock", "first").await;
    env.wait_gone("WafIpBlock", "first").await;
    let p = env.sim.resource(WAF).await;
    assert_eq!(mode(&p), "Prevention", "another block still wants it");

    // The remaining block as if a sibling's coalesced write had done its work before it
    // recorded anything.
    let second = env.get("WafIpBlock", "second").await.unwrap();
    let rule = second["status"]["ruleName"].as_str().unwrap().to_string();
    env.patch_status_sealed("WafIpBlock", "second", json!({"restore": null}))
        .await;
    env.wait(
        "WafIpBlock",
        "second",
        "no record",
        Duration::from_secs(10),
        |o| o.is_some_and(|o| o["status"].get("restore").is_none()),
    )
    .await;
    env.delete("WafIpBlock", "second").await;
    env.wait_gone("WafIpBlock", "second").await;
    let p = env.sim.resource(WAF).await;
    assert!(
        !rules(&p).iter().any(|(n, _)| *n == rule),
        "orphan rule {rule}: {p}"
    );
    assert_eq!(rules(&p), rules(&original));
    assert_eq!(mode(&p), "Detection");
    assert!(
        p["tags"].get("containment-operator-prior-mode").is_none(),
        "{p}"
    );
}

async fn nsg_rules(env: &Env) -> Vec<Value> {
    env.sim.children(&format!("{NSG}/securityRules")).await
}

fn named<'a>(rules: &'a [Value], name: &str) -> Option<&'a Value> {
    rules.iter().find(|r| r["name"] == name)
}

/// Every rule but the operator's, as Azure holds them (etags aside).
fn foreign(rules: &[Value]) -> Vec<Value> {
    rules
        .iter()
        .filter(|r| !r["name"].as_str().unwrap().starts_with("ctr-deny-"))
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("etag");
            r
        })
        .collect()
}

#[tokio::test]
async fn nsg_deny_rule_takes_a_free_priority_keeps_foreign_rules_and_moves_aside() {
    let env = Env::new("e2e-nsg").await;
    let _op = env.operator();
    let before = nsg_rules(&env).await;
    // The first PUT finds its priority taken meanwhile, the second the NSG busy: both retried
    // from a fresh read, and only the third is a write.
    for (status, code) in [
        (400, "SecurityRuleConflict"),
        (429, "RetryableErrorDueToAnotherOperation"),
    ] {
        env.sim
            .fault(json!({"match": {"method": "PUT", "pathRegex": "/securityRules/ctr-deny-"}, "status": status, "errorCode": code, "count": 1, "retryAfterSeconds": 1}))
            .await;
    }
    let t = env
        .apply(
            "NsgDenyRule",
            "scanner",
            json!({"target": target(NSG), "ipAddresses": ["203.0.113.66", "198.51.100.0/26"]}),
        )
        .await;
    let o = env
        .wait_condition("NsgDenyRule", "scanner", "Ready", "True", Some("Contained"))
        .await;
    eprintln!("apply→Ready NsgDenyRule: {} ms", t.elapsed().as_millis());
    let rule = o["status"]["ruleName"].as_str().unwrap().to_string();
    assert!(rule.starts_with("ctr-deny-in-"), "{rule}");
    assert_eq!(
        o["status"]["priority"], 101,
        "inbound 100 and 110 are the admin's; outbound 100 does not count"
    );
    let path = format!("{NSG}/securityRules/{rule}");
    let ours = env.sim.resource(&path).await;
    let p = &ours["properties"];
    assert_eq!(
        (&p["access"], &p["direction"], &p["protocol"]),
        (&json!("Deny"), &json!("Inbound"), &json!("*"))
    );
    assert_eq!(
        p["sourceAddressPrefixes"],
        json!(["198.51.100.0/26", "203.0.113.66"])
    );
    assert_eq!(p["destinationAddressPrefix"], "*");
    assert_eq!(p["destinationPortRange"], "*");
    assert_eq!(
        env.sim.successful_writes().await,
        vec![("PUT".to_string(), path.clone())],
        "one long-running PUT of our rule, nothing else"
    );
    let refused: Vec<u16> = env.sim.writes().await.iter().map(|w| w.2).collect();
    assert_eq!(refused, [400, 429, 201], "both faults were met");
    assert_eq!(foreign(&nsg_rules(&env).await), foreign(&before));

    // An admin edits one of their rules and deletes ours: ours comes back, theirs stays edited.
    let https_id = format!("{NSG}/securityRules/AllowHttps");
    let mut https = named(&before, "AllowHttps").unwrap().clone();
    https["properties"]["destinationPortRange"] = json!("8443");
    env.sim.put(&https_id, https).await;
    env.sim
        .admin(
            reqwest::Method::DELETE,
            &format!("/_sim/resources{path}"),
            None,
        )
        .await;
    env.wait(
        "NsgDenyRule",
        "scanner",
        "drift corrected",
        Duration::from_secs(30),
        |o| {
            o.is_some_and(|o| {
                o["status"]["driftCount"] == 1
                    && condition(o, "Ready").is_some_and(|c| c["status"] == "True")
            })
        },
    )
    .await;
    let now = nsg_rules(&env).await;
    assert_eq!(
        named(&now, "AllowHttps").unwrap()["properties"]["destinationPortRange"],
        "8443"
    );
    assert_eq!(named(&now, &rule).unwrap()["properties"]["priority"], 101);

    // A rule unaware of us takes our priority: we move, it stays.
    let admin_id = format!("{NSG}/securityRules/AdminDenyScanners");
    let admin_rule = json!({"properties": {"priority": 101, "direction": "Inbound", "access": "Deny", "protocol": "*",
        "sourceAddressPrefix": "203.0.113.0/24", "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "*"}});
    env.sim.put(&admin_id, admin_rule).await;
    env.reconcile_now("NsgDenyRule", "scanner", "moved").await;
    env.wait(
        "NsgDenyRule",
        "scanner",
        "moved aside",
        Duration::from_secs(30),
        |o| {
            o.is_some_and(|o| {
                o["status"]["priority"] == 102
                    && condition(o, "Ready").is_some_and(|c| c["status"] == "True")
            })
        },
    )
    .await;
    let now = nsg_rules(&env).await;
    assert_eq!(named(&now, &rule).unwrap()["properties"]["priority"], 102);
    assert_eq!(
        named(&now, "AdminDenyScanners").unwrap()["properties"]["priority"],
        101
    );
    let kept = foreign(&now);

    // Release deletes our rule and nothing else.
    env.delete("NsgDenyRule", "scanner").await;
    env.wait_gone("NsgDenyRule", "scanner").await;
    let after = nsg_rules(&env).await;
    assert!(named(&after, &rule).is_none(), "{after:?}");
    assert_eq!(foreign(&after), kept, "foreign rules untouched by release");
    let deletes: Vec<_> = env
        .sim
        .successful_writes()
        .await
        .into_iter()
        .filter(|w| w.0 == "DELETE")
        .collect();
    assert_eq!(deletes, vec![("DELETE".to_string(), path)]);
}

#[tokio::test]
async fn fifty_nsg_deny_rules_share_one_rule_written_at_most_twice() {
    let env = Env::new("e2e-nsg-burst").await;
    let ip = |i: usize| format!("203.0.113.{}", 100 + i);
    for i in 0..50 {
        env.apply(
            "NsgDenyRule",
            &format!("n{i}"),
            json!({"target": target(NSG), "ipAddresses": [ip(i)]}),
        )
        .await;
    }
    // One of another shape (outbound) owns a rule of its own.
    env.apply(
        "NsgDenyRule",
        "c2",
        json!({"target": target(NSG), "ipAddresses": ["198.51.100.77"], "direction": "Outbound", "protocol": "Tcp", "ports": ["443"]}),
    )
    .await;
    let started = Instant::now();
    let _op = env.operator();
    for i in 0..50 {
        env.wait_ready("NsgDenyRule", &format!("n{i}")).await;
    }
    let c2 = env.wait_ready("NsgDenyRule", "c2").await;
    let writes = env.sim.successful_writes().await;
    eprintln!(
        "51 NsgDenyRules (50 sharing a rule) Ready in {} ms, {} write(s)",
        started.elapsed().as_millis(),
        writes.len()
    );
    let inbound = env.get("NsgDenyRule", "n0").await.unwrap()["status"]["ruleName"]
        .as_str()
        .unwrap()
        .to_string();
    let to = |rule: &str| writes.iter().filter(|w| w.1.ends_with(rule)).count();
    assert!(
        to(&inbound) <= 2,
        "50 resources, {} writes: {writes:?}",
        to(&inbound)
    );
    let c2_rule = c2["status"]["ruleName"].as_str().unwrap();
    assert_ne!(c2_rule, inbound);
    assert_eq!(to(c2_rule), 1);
    let prefixes = |rules: &[Value]| -> Vec<String> {
        let mut v: Vec<String> =
            named(rules, &inbound).unwrap()["properties"]["sourceAddressPrefixes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect();
        v.sort();
        v
    };
    let mut all: Vec<String> = (0..50).map(ip).collect();
    all.sort();
    let rules = nsg_rules(&env).await;
    assert_eq!(prefixes(&rules), all);
    let out = named(&rules, c2_rule).unwrap();
    assert_eq!(
        out["properties"]["destinationAddressPrefixes"],
        json!(["198.51.100.77"])
    );
    assert_eq!(out["properties"]["destinationPortRanges"], json!(["443"]));
    assert_eq!(
        out["properties"]["priority"], 101,
        "outbound 100 is the admin's"
    );

    // Each one releases only its own address.
    for i in [3, 7] {
        env.delete("NsgDenyRule", &format!("n{i}")).await;
        env.wait_gone("NsgDenyRule", &format!("n{i}")).await;
    }
    all.retain(|a| *a != ip(3) && *a != ip(7));
    assert_eq!(prefixes(&nsg_rules(&env).await), all);
}
