//! End to end, SQL kinds: the operator process against the real API server and azure-sim.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;
use support::*;

fn rules(v: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    v.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

fn demo_rules() -> Vec<(String, String, String)> {
    rules(&[
        ("AllowAll", "0.0.0.0", "255.255.255.255"),
        ("AllowAllWindowsAzureIps", "0.0.0.0", "0.0.0.0"),
        ("office", "198.51.100.0", "198.51.100.255"),
    ])
}

#[tokio::test]
async fn sql_ip_block_apply_noop_drift_and_restore() {
    let env = Env::new("e2e-sqlipb").await;
    let op = env.operator();
    let t = env
        .apply("SqlIpBlock", "attacker", json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"], "reason": "INC-4711"}))
        .await;
    let o = env.wait_ready("SqlIpBlock", "attacker").await;
    eprintln!("apply→Ready SqlIpBlock: {} ms", t.elapsed().as_millis());
    assert_eq!(condition(&o, "Ready").unwrap()["reason"], "Contained");
    assert_eq!(
        condition(&o, "Ready").unwrap()["message"],
        "no server firewall rule admits 203.0.113.7 (1 rule(s) narrowed or removed: AllowAll)"
    );
    assert_eq!(o["status"]["target"], SQL_PROD);
    let expected = rules(&[
        ("AllowAll-cx1", "0.0.0.0", "203.0.113.6"),
        ("AllowAll-cx2", "203.0.113.8", "255.255.255.255"),
        ("AllowAllWindowsAzureIps", "0.0.0.0", "0.0.0.0"),
        ("office", "198.51.100.0", "198.51.100.255"),
    ]);
    assert_eq!(env.sim.firewall_rules(SQL_PROD).await, expected);
    assert_eq!(
        o["status"]["restore"]["originals"]["AllowAll"]["endIpAddress"],
        "255.255.255.255"
    );
    let writes = env.sim.successful_writes().await;
    assert_eq!(writes.len(), 3, "{writes:?}");

    // Later drift checks (every ~2 s) read Azure and write nothing.
    env.wait_verified_again("SqlIpBlock", "attacker").await;
    assert_eq!(
        env.sim.writes().await.len(),
        3,
        "a compliant re-check must not write"
    );

    // Drift: someone re-creates the allow-all rule behind the operator's back.
    env.sim
        .put(
            &format!("{SQL_PROD}/firewallRules/AllowAll"),
            json!({"properties": {"startIpAddress": "0.0.0.0", "endIpAddress": "255.255.255.255"}}),
        )
        .await;
    let o = env
        .wait(
            "SqlIpBlock",
            "attacker",
            "drift corrected",
            Duration::from_secs(20),
            |o| {
                o.is_some_and(|o| {
                    o["status"]["driftCount"] == 1
                        && condition(o, "Ready").is_some_and(|c| c["reason"] == "DriftCorrected")
                })
            },
        )
        .await
        .unwrap();
    assert!(o["status"]["lastDriftTime"].is_string());
    assert_eq!(env.sim.firewall_rules(SQL_PROD).await, expected);
    let events = env.events("attacker").await;
    assert!(
        events
            .iter()
            .any(|e| e.1 == "DriftDetected" && e.0 == "Warning"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.1 == "Applied" && e.2.contains("INC-4711")),
        "{events:?}"
    );

    // One JSON audit line per write, with who asked and Azure's request id.
    let audits: Vec<serde_json::Value> = op
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["audit"] == true)
        .collect();
    assert_eq!(audits.len(), env.sim.writes().await.len(), "{audits:?}");
    assert!(audits.iter().all(|a| a["requested_by"] == "kubectl"
        && a["request_id"].as_str().is_some_and(|s| !s.is_empty())));
    assert!(
        audits
            .iter()
            .any(|a| a["method"] == "DELETE" && a["reason"] == "INC-4711")
    );

    // Delete: the original rules come back exactly.
    env.delete("SqlIpBlock", "attacker").await;
    env.wait_gone("SqlIpBlock", "attacker").await;
    assert_eq!(env.sim.firewall_rules(SQL_PROD).await, demo_rules());
    drop(op);
}

#[tokio::test]
async fn sql_ip_block_retain_keeps_the_block_and_azure_services_rule_removal() {
    let env = Env::new("e2e-sqlipb-retain").await;
    let _op = env.operator();
    env.apply(
        "SqlIpBlock",
        "office",
        json!({"target": {"subscriptionId": SUB, "resourceGroup": "rg-prod", "name": "sql-prod-01"},
               "ipAddresses": ["198.51.100.0/24"], "removeAllowAzureServicesRule": true, "releasePolicy": "Retain"}),
    )
    .await;
    env.wait_ready("SqlIpBlock", "office").await;
    let expected = rules(&[
        ("AllowAll-cx1", "0.0.0.0", "198.51.99.255"),
        ("AllowAll-cx2", "198.51.101.0", "255.255.255.255"),
    ]);
    assert_eq!(env.sim.firewall_rules(SQL_PROD).await, expected);
    env.delete("SqlIpBlock", "office").await;
    env.wait_gone("SqlIpBlock", "office").await;
    assert_eq!(
        env.sim.firewall_rules(SQL_PROD).await,
        expected,
        "Retain leaves the block in force"
    );
    let events = env.events("office").await;
    assert!(events.iter().any(|e| e.1 == "Retained"), "{events:?}");
}

/// Deleting a SqlIpBlock while the server's public access is Disabled cannot restore its rules
/// (Azure refuses firewall changes then): it stalls saying what to do, and completes once public
/// access is back. Switching it to DryRun first still releases what Enforce applied.
#[tokio::test]
async fn sql_ip_block_release_stalls_while_public_access_is_disabled() {
    let env = Env::new("e2e-sqlipb-denypub").await;
    let _op = env.operator();
    let original = env.sim.firewall_rules(SQL_PROD).await;
    env.apply(
        "SqlIpBlock",
        "ip",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    env.wait_ready("SqlIpBlock", "ip").await;
    assert_ne!(env.sim.firewall_rules(SQL_PROD).await, original);
    // Enforce → DryRun: nothing more is written, but what was applied is still owned.
    env.apply(
        "SqlIpBlock",
        "ip",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"], "mode": "DryRun"}),
    )
    .await;
    env.wait_condition("SqlIpBlock", "ip", "Ready", "True", Some("Compliant"))
        .await;
    env.sim
        .patch(
            SQL_PROD,
            json!({"properties": {"publicNetworkAccess": "Disabled"}}),
        )
        .await;
    env.delete("SqlIpBlock", "ip").await;
    let o = env
        .wait_condition(
            "SqlIpBlock",
            "ip",
            "Stalled",
            "True",
            Some("DenyPublicEndpointEnabled"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("restore public access first") && msg.contains("releasePolicy: Retain"),
        "{msg}"
    );
    env.sim
        .patch(
            SQL_PROD,
            json!({"properties": {"publicNetworkAccess": "Enabled"}}),
        )
        .await;
    env.wait_gone("SqlIpBlock", "ip").await;
    assert_eq!(
        env.sim.firewall_rules(SQL_PROD).await,
        original,
        "restored after all"
    );
}

#[tokio::test]
async fn sql_ip_block_dry_run_and_observe_write_nothing() {
    let env = Env::new("e2e-sqlipb-modes").await;
    let _op = env.operator();
    env.apply(
        "SqlIpBlock",
        "dry",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"], "mode": "DryRun"}),
    )
    .await;
    env.apply(
        "SqlIpBlock",
        "watch",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"], "mode": "Observe"}),
    )
    .await;
    let dry = env
        .wait_condition("SqlIpBlock", "dry", "Ready", "True", Some("DryRun"))
        .await;
    let plan: Vec<String> = serde_json::from_value(dry["status"]["plan"].clone()).unwrap();
    assert_eq!(plan.len(), 3, "{plan:?}");
    assert!(
        plan[0].starts_with(&format!(
            "PUT {SQL_PROD}/firewallRules/AllowAll-cx1?api-version=2021-11-01 "
        )),
        "{plan:?}"
    );
    assert!(
        plan[2].starts_with(&format!("DELETE {SQL_PROD}/firewallRules/AllowAll?")),
        "{plan:?}"
    );
    let obs = env
        .wait_condition(
            "SqlIpBlock",
            "watch",
            "Ready",
            "False",
            Some("NotCompliant"),
        )
        .await;
    assert_eq!(condition(&obs, "Stalled").unwrap()["status"], "False");
    assert_eq!(obs["status"]["plan"].as_array().unwrap().len(), 3);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        env.sim.writes().await.is_empty(),
        "DryRun and Observe never write"
    );
    assert_eq!(env.sim.firewall_rules(SQL_PROD).await, demo_rules());
}

#[tokio::test]
async fn sql_public_access_lockdown_lro_release_and_private_endpoint_stall() {
    let env = Env::new("e2e-sqlpal").await;
    let _op = env.operator();
    let t = env
        .apply(
            "SqlPublicAccessLockdown",
            "lock",
            json!({"target": target(SQL_PROD)}),
        )
        .await;
    let o = env
        .wait_condition(
            "SqlPublicAccessLockdown",
            "lock",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready SqlPublicAccessLockdown: {} ms (LRO {} ms in the sim)",
        t.elapsed().as_millis(),
        300
    );
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
    assert_eq!(o["status"]["restore"]["publicNetworkAccess"], "Enabled");
    assert!(o["status"]["azure"]["pendingOperation"].is_null());
    assert!(o["status"]["azure"]["lastRequestId"].is_string());

    // No private endpoint: a precise Stall and no write at all.
    env.apply(
        "SqlPublicAccessLockdown",
        "legacy",
        json!({"target": target(SQL_LEGACY)}),
    )
    .await;
    let s = env
        .wait_condition(
            "SqlPublicAccessLockdown",
            "legacy",
            "Stalled",
            "True",
            Some("PrivateEndpointRequired"),
        )
        .await;
    assert!(
        condition(&s, "Ready").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("sql-legacy-02 has no private endpoint")
    );
    assert!(
        env.sim
            .writes()
            .await
            .iter()
            .all(|w| !w.1.ends_with("sql-legacy-02"))
    );

    // Drift: someone turns public access back on.
    env.sim
        .patch(
            SQL_PROD,
            json!({"properties": {"publicNetworkAccess": "Enabled"}}),
        )
        .await;
    env.wait(
        "SqlPublicAccessLockdown",
        "lock",
        "drift corrected",
        Duration::from_secs(20),
        |o| {
            o.is_some_and(|o| {
                o["status"]["driftCount"] == 1
                    && condition(o, "Ready").is_some_and(|c| c["reason"] == "DriftCorrected")
            })
        },
    )
    .await;
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
    env.delete("SqlPublicAccessLockdown", "lock").await;
    env.wait_gone("SqlPublicAccessLockdown", "lock").await;
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Enabled"
    );
    env.delete("SqlPublicAccessLockdown", "legacy").await;
    env.wait_gone("SqlPublicAccessLockdown", "legacy").await;
}

#[tokio::test]
async fn sql_lockdown_and_ip_block_release_together_in_a_safe_order() {
    let env = Env::new("e2e-sql-both").await;
    let _op = env.operator();
    env.apply(
        "SqlIpBlock",
        "ip",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    env.wait_ready("SqlIpBlock", "ip").await;
    env.apply(
        "SqlPublicAccessLockdown",
        "lock",
        json!({"target": target(SQL_PROD)}),
    )
    .await;
    env.wait_ready("SqlPublicAccessLockdown", "lock").await;
    // Both deleted at once: firewall rules can only be restored once public access is back.
    env.delete("SqlIpBlock", "ip").await;
    env.delete("SqlPublicAccessLockdown", "lock").await;
    env.wait_gone("SqlIpBlock", "ip").await;
    env.wait_gone("SqlPublicAccessLockdown", "lock").await;
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Enabled"
    );
    assert_eq!(env.sim.firewall_rules(SQL_PROD).await, demo_rules());
}

#[tokio::test]
async fn operator_killed_during_a_long_running_operation_resumes_polling() {
    let env = Env::new("e2e-sqlpal-crash").await;
    env.sim.settings(json!({"lroDelayMs": 4000})).await;
    let mut op = env.operator();
    env.apply(
        "SqlPublicAccessLockdown",
        "lock",
        json!({"target": target(SQL_PROD)}),
    )
    .await;
    let o = env
        .wait(
            "SqlPublicAccessLockdown",
            "lock",
            "a pending operation",
            Duration::from_secs(20),
            |o| o.is_some_and(|o| o["status"]["azure"]["pendingOperation"].is_string()),
        )
        .await
        .unwrap();
    assert_eq!(
        condition(&o, "Reconciling").unwrap()["reason"],
        "AwaitingOperation"
    );
    op.kill();
    let _op2 = env.operator();
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "lock",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    let patches: Vec<_> = env
        .sim
        .writes()
        .await
        .into_iter()
        .filter(|w| w.0 == "PATCH")
        .collect();
    assert_eq!(
        patches.len(),
        1,
        "the PATCH is never re-issued: {patches:?}"
    );
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
}

#[tokio::test]
async fn throttling_storm_and_server_errors_complete_without_duplicate_writes() {
    let env = Env::new("e2e-faults").await;
    // Five 429s on rule writes, two 500s on the delete, one failed long-running operation.
    env.sim
        .fault(json!({"match": {"method": "PUT", "pathRegex": "firewallRules/"}, "status": 429, "count": 5, "retryAfterSeconds": 1}))
        .await;
    env.sim
        .fault(json!({"match": {"method": "DELETE", "pathRegex": "firewallRules/"}, "status": 500, "count": 2}))
        .await;
    env.sim.settings(json!({"lroFailNext": 1})).await;
    let _op = env.operator();
    let started = Instant::now();
    env.apply(
        "SqlIpBlock",
        "ip",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    env.wait_ready("SqlIpBlock", "ip").await;
    env.apply(
        "SqlPublicAccessLockdown",
        "prod",
        json!({"target": target(SQL_PROD)}),
    )
    .await;
    env.wait_ready("SqlPublicAccessLockdown", "prod").await;
    eprintln!(
        "fault scenario converged in {} ms",
        started.elapsed().as_millis()
    );
    let ok = env.sim.successful_writes().await;
    let puts = ok.iter().filter(|w| w.0 == "PUT").count();
    let deletes = ok.iter().filter(|w| w.0 == "DELETE").count();
    let patches = ok.iter().filter(|w| w.0 == "PATCH").count();
    // The failed operation changed nothing, so exactly one more PATCH was needed.
    assert_eq!((puts, deletes, patches), (2, 1, 2), "{ok:?}");
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
    let throttled = env.sim.writes().await.iter().filter(|w| w.2 == 429).count();
    assert_eq!(throttled, 5, "each 429 is waited out, not hammered");
    let metrics = reqwest::get(format!("http://{}/metrics", _op.metrics_addr().await))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("containment_azure_throttled_total 5"),
        "{metrics}"
    );
}

/// Two blocks inside one wide rule compose: neither re-creates the other's split part, neither
/// counts the other's write as drift, and the rule comes back only when the last one goes.
#[tokio::test]
async fn two_blocks_in_one_rule_compose_and_the_last_one_restores() {
    let env = Env::new("e2e-sqlipb-compose").await;
    let _op = env.operator();
    env.apply(
        "SqlIpBlock",
        "first",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    env.wait_ready("SqlIpBlock", "first").await;
    env.apply(
        "SqlIpBlock",
        "second",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.9"]}),
    )
    .await;
    let second = env.wait_ready("SqlIpBlock", "second").await;
    assert_eq!(
        second["status"]["sharedWith"],
        json!([format!("{}/first", env.ns)])
    );
    let rules = env.sim.firewall_rules(SQL_PROD).await;
    assert!(
        !admits(&rules, "203.0.113.7") && !admits(&rules, "203.0.113.9"),
        "{rules:?}"
    );
    assert!(
        admits(&rules, "203.0.113.8") && admits(&rules, "203.0.113.10"),
        "{rules:?}"
    );

    // Several drift checks of each (every ~2 s): nothing written, nothing counted as drift.
    let writes = env.sim.successful_writes().await.len();
    for name in ["first", "second"] {
        env.wait_verified_again("SqlIpBlock", name).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.sim.successful_writes().await.len(),
        writes,
        "the two blocks undo each other"
    );
    for name in ["first", "second"] {
        let o = env.get("SqlIpBlock", name).await.unwrap();
        assert_eq!(
            o["status"]["driftCount"].as_i64().unwrap_or(0),
            0,
            "{name}: {o}"
        );
        assert_eq!(
            o["status"]["restore"]["originals"]["AllowAll"]["endIpAddress"], "255.255.255.255",
            "{name}"
        );
    }

    // The older one goes: its address is admitted again, the other's stays blocked.
    env.delete("SqlIpBlock", "first").await;
    env.wait_gone("SqlIpBlock", "first").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rules = env.sim.firewall_rules(SQL_PROD).await;
        assert!(
            !admits(&rules, "203.0.113.9"),
            "the remaining block was lifted: {rules:?}"
        );
        if admits(&rules, "203.0.113.7") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "203.0.113.7 stays blocked: {rules:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let o = env.wait_ready("SqlIpBlock", "second").await;
    assert_eq!(o["status"]["driftCount"].as_i64().unwrap_or(0), 0, "{o}");
    assert!(o["status"].get("sharedWith").is_none(), "{o}");

    // The last one restores the original rules exactly.
    env.delete("SqlIpBlock", "second").await;
    env.wait_gone("SqlIpBlock", "second").await;
    assert_eq!(env.sim.firewall_rules(SQL_PROD).await, demo_rules());
}

/// Releasing one of two blocks on a server wakes the other at once: it re-plans without the
/// released address, which is let back in within seconds rather than at the other's next drift
/// check (10 minutes here), and its own address stays blocked throughout.
#[tokio::test]
async fn releasing_one_block_wakes_the_other_on_its_server() {
    let env = Env::new("e2e-sqlipb-wake").await;
    let _op = Operator::start_with(&env, &["--drift-interval-for", "SqlIpBlock=10m"], &[]);
    for (name, ip) in [("older", "203.0.113.9"), ("newer", "203.0.113.7")] {
        env.apply(
            "SqlIpBlock",
            name,
            json!({"target": target(SQL_PROD), "ipAddresses": [ip]}),
        )
        .await;
        env.wait_ready("SqlIpBlock", name).await;
    }
    let rules = env.sim.firewall_rules(SQL_PROD).await;
    assert!(
        !admits(&rules, "203.0.113.7") && !admits(&rules, "203.0.113.9"),
        "{rules:?}"
    );
    env.delete("SqlIpBlock", "newer").await;
    env.wait_gone("SqlIpBlock", "newer").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let rules = env.sim.firewall_rules(SQL_PROD).await;
        assert!(
            !admits(&rules, "203.0.113.9"),
            "the older block holds: {rules:?}"
        );
        if admits(&rules, "203.0.113.7") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the released address is still blocked: {rules:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn entra_only_authentication_is_turned_on_kept_on_and_restored() {
    let env = Env::new("e2e-sqleoa").await;
    let auth = format!("{SQL_PROD}/azureADOnlyAuthentications/Default");
    let _op = env.operator();
    let t = env
        .apply(
            "SqlEntraOnlyAuthentication",
            "eoa",
            json!({"target": target(SQL_PROD), "reason": "INC-4711 sa password guessed"}),
        )
        .await;
    let o = env
        .wait_condition(
            "SqlEntraOnlyAuthentication",
            "eoa",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready SqlEntraOnlyAuthentication: {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(
        env.sim.resource(&auth).await["properties"]["azureADOnlyAuthentication"],
        true
    );
    assert_eq!(
        o["status"]["restore"],
        json!({"azureADOnlyAuthentication": false})
    );
    let msg = condition(&o, "Ready").unwrap()["message"].as_str().unwrap();
    assert!(msg.contains("sql-admins"), "{msg}");
    assert_eq!(env.sim.successful_writes().await.len(), 1);

    // Someone turns SQL logins back on: turned off again.
    env.sim
        .put(
            &auth,
            json!({"properties": {"azureADOnlyAuthentication": false}}),
        )
        .await;
    env.wait_drift_corrected("SqlEntraOnlyAuthentication", "eoa", 1)
        .await;
    assert_eq!(
        env.sim.resource(&auth).await["properties"]["azureADOnlyAuthentication"],
        true
    );

    env.delete("SqlEntraOnlyAuthentication", "eoa").await;
    env.wait_gone("SqlEntraOnlyAuthentication", "eoa").await;
    assert_eq!(
        env.sim.resource(&auth).await["properties"]["azureADOnlyAuthentication"],
        false
    );
    assert_eq!(env.sim.successful_writes().await.len(), 3);
}

#[tokio::test]
async fn entra_only_authentication_without_an_entra_admin_stalls_and_sends_nothing() {
    let env = Env::with_world("e2e-sqleoa-noadmin", printed_actions(&[]), |w| {
        w.resources.retain(|r| {
            !r["id"]
                .as_str()
                .unwrap_or("")
                .ends_with("/administrators/ActiveDirectory")
        });
    })
    .await;
    let _op = env.operator();
    env.apply(
        "SqlEntraOnlyAuthentication",
        "eoa",
        json!({"target": target(SQL_PROD)}),
    )
    .await;
    let o = env
        .wait_condition(
            "SqlEntraOnlyAuthentication",
            "eoa",
            "Stalled",
            "True",
            Some("EntraAdminRequired"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("no Entra admin"), "{msg}");
    assert!(env.sim.writes().await.is_empty());
}

#[tokio::test]
async fn tde_is_enabled_on_the_listed_databases_kept_and_restored() {
    let env = Env::new("e2e-sqltde").await;
    let orders = format!("{SQL_PROD}/databases/orders/transparentDataEncryption/current");
    let _op = env.operator();
    let t = env
        .apply(
            "SqlTransparentDataEncryption",
            "tde",
            json!({"target": target(SQL_PROD), "databases": ["orders", "customers"]}),
        )
        .await;
    let o = env
        .wait_condition(
            "SqlTransparentDataEncryption",
            "tde",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready SqlTransparentDataEncryption: {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(
        env.sim.resource(&orders).await["properties"]["state"],
        "Enabled"
    );
    // customers was already encrypted: only orders is written, and only it is owned.
    assert_eq!(env.sim.successful_writes().await.len(), 1);
    assert_eq!(
        o["status"]["restore"],
        json!({"prior": {"orders": "Disabled"}, "owned": ["orders"]})
    );

    env.sim
        .put(&orders, json!({"properties": {"state": "Disabled"}}))
        .await;
    env.wait_drift_corrected("SqlTransparentDataEncryption", "tde", 1)
        .await;
    assert_eq!(
        env.sim.resource(&orders).await["properties"]["state"],
        "Enabled"
    );

    env.delete("SqlTransparentDataEncryption", "tde").await;
    env.wait_gone("SqlTransparentDataEncryption", "tde").await;
    assert_eq!(
        env.sim.resource(&orders).await["properties"]["state"],
        "Disabled"
    );
    assert_eq!(env.sim.successful_writes().await.len(), 3);

    // A database that does not exist: Stalled naming it, nothing sent.
    env.apply(
        "SqlTransparentDataEncryption",
        "typo",
        json!({"target": target(SQL_PROD), "databases": ["ordres"]}),
    )
    .await;
    let o = env
        .wait_condition(
            "SqlTransparentDataEncryption",
            "typo",
            "Stalled",
            "True",
            Some("DatabaseNotFound"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.contains("ordres") && msg.contains("spec.databases"),
        "{msg}"
    );
    assert_eq!(env.sim.successful_writes().await.len(), 3);
}

#[tokio::test]
async fn auditing_is_enabled_to_storage_kept_on_and_restored() {
    let env = Env::new("e2e-sqlaud").await;
    let audit = format!("{SQL_PROD}/auditingSettings/default");
    let before = env.sim.resource(&audit).await;
    let _op = env.operator();
    let t = env
        .apply(
            "SqlAuditing",
            "aud",
            json!({"target": target(SQL_PROD), "storageEndpoint": "https://staudit01.blob.core.windows.net/", "retentionDays": 180}),
        )
        .await;
    let o = env
        .wait_condition("SqlAuditing", "aud", "Ready", "True", Some("Contained"))
        .await;
    eprintln!("apply→Ready SqlAuditing: {} ms", t.elapsed().as_millis());
    let p = env.sim.resource(&audit).await["properties"].clone();
    assert_eq!(
        (
            &p["state"],
            &p["storageEndpoint"],
            &p["retentionDays"],
            &p["isManagedIdentityInUse"]
        ),
        (
            &json!("Enabled"),
            &json!("https://staudit01.blob.core.windows.net/"),
            &json!(180),
            &json!(true)
        )
    );
    assert_eq!(
        p["auditActionsAndGroups"],
        json!([
            "BATCH_COMPLETED_GROUP",
            "SUCCESSFUL_DATABASE_AUTHENTICATION_GROUP",
            "FAILED_DATABASE_AUTHENTICATION_GROUP"
        ])
    );
    assert!(p.get("storageAccountAccessKey").is_none());
    assert_eq!(o["status"]["restore"]["settings"]["state"], "Disabled");
    assert_eq!(env.sim.successful_writes().await.len(), 1);

    // Someone turns auditing off: back on.
    let mut off = env.sim.resource(&audit).await;
    off["properties"]["state"] = json!("Disabled");
    env.sim.put(&audit, off).await;
    env.wait_drift_corrected("SqlAuditing", "aud", 1).await;
    assert_eq!(
        env.sim.resource(&audit).await["properties"]["state"],
        "Enabled"
    );

    // Release: the settings as first read (auditing off).
    env.delete("SqlAuditing", "aud").await;
    env.wait_gone("SqlAuditing", "aud").await;
    assert_eq!(
        env.sim.resource(&audit).await["properties"],
        before["properties"]
    );
}

async fn published(env: &Env, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .get_opt(name)
        .await
        .unwrap()
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    let b = s.data.as_ref()?.get(key)?;
    Some(String::from_utf8(b.0.clone()).unwrap())
}

fn annotation(s: &Secret, key: &str) -> Option<String> {
    s.metadata.annotations.as_ref()?.get(key).cloned()
}

async fn azure_password(env: &Env) -> Option<String> {
    env.sim
        .admin(reqwest::Method::GET, &format!("/_sim/keys{SQL_PROD}"), None)
        .await["administratorLoginPassword"]
        .as_str()
        .map(String::from)
}

/// One password per run, staged in the Secret before the PATCH leaves and the same one sent
/// again when the PATCH fails; published once Azure has it; never in status, events or logs.
#[tokio::test]
async fn sql_admin_password_is_staged_before_the_patch_published_once_and_never_leaked() {
    let env = Env::new("e2e-sqlpwr").await;
    // The first PATCH's operation fails (nothing changed); the second takes effect but its
    // answer is lost. Each time the same staged password must be sent again.
    for f in [
        json!({"match": {"method": "PATCH", "pathRegex": "servers/sql-prod-01$"}, "failOperation": true}),
        json!({"match": {"method": "PATCH", "pathRegex": "servers/sql-prod-01$"}, "loseAnswer": true}),
    ] {
        env.sim.fault(f).await;
    }
    let op = env.operator();
    let spec = |trigger: &str| json!({"target": target(SQL_PROD), "publishTo": {"secretName": "sql-admin"}, "length": 24, "trigger": trigger});
    let t = env
        .apply("SqlAdminPasswordRotation", "pw", spec("INC-1"))
        .await;
    // Staged before the first PATCH left.
    let deadline = Instant::now() + Duration::from_secs(20);
    let staged = loop {
        if let Some(p) = published(&env, "sql-admin")
            .await
            .as_ref()
            .and_then(|s| secret_value(s, "pendingPassword"))
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no password was staged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(staged.len(), 24);
    let o = env
        .wait_condition(
            "SqlAdminPasswordRotation",
            "pw",
            "Ready",
            "True",
            Some("Completed"),
        )
        .await;
    eprintln!(
        "apply→Ready SqlAdminPasswordRotation (through a failed operation and a lost answer): {} ms",
        t.elapsed().as_millis()
    );
    let patches = |w: &Vec<(String, String, u16)>| {
        w.iter()
            .filter(|w| w.0 == "PATCH" && w.1.ends_with("servers/sql-prod-01"))
            .count()
    };
    assert_eq!(patches(&env.sim.writes().await), 3);
    // Azure holds exactly the staged password, which the Secret now publishes.
    assert_eq!(azure_password(&env).await.as_deref(), Some(staged.as_str()));
    let s = published(&env, "sql-admin").await.unwrap();
    assert_eq!(
        secret_value(&s, "password").as_deref(),
        Some(staged.as_str())
    );
    assert_eq!(secret_value(&s, "username").as_deref(), Some("sqladmin"));
    assert_eq!(secret_value(&s, "pendingPassword"), None);
    assert_eq!(
        annotation(&s, "containment.defenderc2.io/run").as_deref(),
        Some("trigger:INC-1")
    );
    assert_eq!(
        annotation(&s, "containment.defenderc2.io/pending-run"),
        None
    );
    // Azure's GET never shows it either.
    let server = env
        .sim
        .arm(
            reqwest::Method::GET,
            &format!("{SQL_PROD}?api-version=2021-11-01"),
        )
        .await;
    assert!(
        server["properties"]
            .get("administratorLoginPassword")
            .is_none()
    );
    assert!(
        !o.to_string().contains(&staged),
        "the password reached the status"
    );
    assert!(
        !op.logs().contains(&staged),
        "the password reached the logs"
    );
    for e in env.events("pw").await {
        assert!(!e.2.contains(&staged), "the password reached an event");
    }

    // Same trigger: nothing more. A new trigger: a new password, one more PATCH.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(patches(&env.sim.writes().await), 3);
    env.sim.settings(json!({"lroDelayMs": 1500})).await;
    let started = Instant::now();
    env.apply("SqlAdminPasswordRotation", "pw", spec("INC-2"))
        .await;
    // Until Azure has the new one, `password` is the one Azure still holds.
    let mut staged_seen = false;
    loop {
        let s = published(&env, "sql-admin").await.unwrap();
        if secret_value(&s, "pendingPassword").is_some() {
            staged_seen = true;
            assert_eq!(
                secret_value(&s, "password").as_deref(),
                Some(staged.as_str())
            );
        }
        let o = env.get("SqlAdminPasswordRotation", "pw").await.unwrap();
        if o["status"]["action"]["runId"] == "trigger:INC-2"
            && o["status"]["action"]["phase"] == "Completed"
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "run INC-2 did not complete"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(staged_seen, "the new password was staged before it was set");
    let second = azure_password(&env).await.unwrap();
    assert_ne!(second, staged);
    let s = published(&env, "sql-admin").await.unwrap();
    assert_eq!(secret_value(&s, "password"), Some(second));
    assert_eq!(patches(&env.sim.writes().await), 4);
}

#[tokio::test]
async fn sql_admin_password_rotation_without_a_sql_login_stalls_and_stages_nothing() {
    let env = Env::new("e2e-sqlpwr-nologin").await;
    let _op = env.operator();
    env.apply(
        "SqlAdminPasswordRotation",
        "pw",
        json!({"target": target(SQL_LEGACY), "publishTo": {"secretName": "legacy-admin"}}),
    )
    .await;
    let o = env
        .wait_condition(
            "SqlAdminPasswordRotation",
            "pw",
            "Stalled",
            "True",
            Some("NoSqlAdministrator"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("administratorLogin"), "{msg}");
    assert!(env.sim.writes().await.is_empty());
    assert!(published(&env, "legacy-admin").await.is_none());
}
