//! End to end: StorageSasRevocation, CosmosKeyRotation, CosmosPublicAccessLockdown,
//! DefenderAlertState and ArcRunCommand against the real API server and azure-sim.

mod support;

use std::time::Duration;

use kube::api::{DynamicObject, PostParams};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn defender_alert_state_apply_drift_dry_run_and_restore() {
    let env = Env::new("e2e-dalert").await;
    let _op = env.operator();
    env.apply(
        "DefenderAlertState",
        "dry",
        json!({"target": target(ALERT), "state": "Resolved", "mode": "DryRun"}),
    )
    .await;
    let dry = env
        .wait_condition("DefenderAlertState", "dry", "Ready", "True", Some("DryRun"))
        .await;
    assert_eq!(
        dry["status"]["plan"],
        json!([format!("POST {ALERT}/resolve?api-version=2022-01-01")])
    );
    env.delete("DefenderAlertState", "dry").await;
    env.wait_gone("DefenderAlertState", "dry").await;
    assert!(env.sim.writes().await.is_empty());

    let t = env
        .apply(
            "DefenderAlertState",
            "fp",
            json!({"target": target(ALERT), "state": "Dismissed", "reason": "false positive"}),
        )
        .await;
    let o = env
        .wait_condition(
            "DefenderAlertState",
            "fp",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready DefenderAlertState: {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(o["status"]["restore"]["status"], "Active");
    assert_eq!(
        env.sim.resource(ALERT).await["properties"]["status"],
        "Dismissed"
    );
    // Reactivated behind our back: dismissed again.
    env.sim
        .patch(ALERT, json!({"properties": {"status": "Active"}}))
        .await;
    env.wait(
        "DefenderAlertState",
        "fp",
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
    assert_eq!(
        env.sim.resource(ALERT).await["properties"]["status"],
        "Dismissed"
    );
    assert_eq!(env.sim.successful_writes().await.len(), 2);
    env.delete("DefenderAlertState", "fp").await;
    env.wait_gone("DefenderAlertState", "fp").await;
    assert_eq!(
        env.sim.resource(ALERT).await["properties"]["status"],
        "Active"
    );
}

#[tokio::test]
async fn alert_target_must_be_an_alert_id() {
    let env = Env::new("e2e-dalert-admission").await;
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "DefenderAlertState",
        "metadata": {"name": "bad"},
        "spec": {"target": {"subscriptionId": SUB, "resourceGroup": "rg", "name": "x"}, "state": "Dismissed"}
    }))
    .unwrap();
    let err = env
        .api("DefenderAlertState")
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.target.resourceId must be the alert's full id"),
        "{err}"
    );
}

#[tokio::test]
async fn sas_revocation_once_per_trigger_with_and_without_key_rotation() {
    let env = Env::new("e2e-stsr").await;
    let _op = env.operator();
    let counters = |v: serde_json::Value| {
        v[format!("{}/revokeUserDelegationKeys", STORAGE.to_ascii_lowercase())]
            .as_u64()
            .unwrap_or(0)
    };
    let t = env
        .apply(
            "StorageSasRevocation",
            "sas",
            json!({"target": target(STORAGE), "trigger": "INC-9"}),
        )
        .await;
    let o = env
        .wait_condition(
            "StorageSasRevocation",
            "sas",
            "Ready",
            "True",
            Some("Completed"),
        )
        .await;
    eprintln!(
        "apply→Ready StorageSasRevocation: {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(
        o["status"]["sasStatus"],
        json!({"userDelegation": "Revoked", "account": "StillValid", "service": "StillValid"})
    );
    assert!(
        condition(&o, "Ready").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("account and service SAS stay valid")
    );
    assert_eq!(
        counters(
            env.sim
                .admin(reqwest::Method::GET, "/_sim/counters", None)
                .await
        ),
        1
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        counters(
            env.sim
                .admin(reqwest::Method::GET, "/_sim/counters", None)
                .await
        ),
        1,
        "never twice for one trigger"
    );

    env.apply(
        "StorageSasRevocation",
        "sas",
        json!({"target": target(STORAGE), "trigger": "INC-10", "rotateAccountKeys": true}),
    )
    .await;
    let o = env
        .wait(
            "StorageSasRevocation",
            "sas",
            "run INC-10",
            Duration::from_secs(20),
            |o| {
                o.is_some_and(|o| {
                    o["status"]["action"]["runId"] == "trigger:INC-10"
                        && o["status"]["action"]["phase"] == "Completed"
                })
            },
        )
        .await
        .unwrap();
    assert_eq!(
        o["status"]["sasStatus"],
        json!({"userDelegation": "Revoked", "account": "Revoked", "service": "Revoked"})
    );
    assert_eq!(
        counters(
            env.sim
                .admin(reqwest::Method::GET, "/_sim/counters", None)
                .await
        ),
        2
    );
    let regen = env
        .sim
        .writes()
        .await
        .into_iter()
        .filter(|w| w.1.ends_with("/regenerateKey"))
        .count();
    assert_eq!(regen, 2);
}

#[tokio::test]
async fn cosmos_lockdown_restricted_drift_and_restore() {
    let env = Env::new("e2e-cspal").await;
    let _op = env.operator();
    let t = env
        .apply(
            "CosmosPublicAccessLockdown",
            "lock",
            json!({"target": target(COSMOS), "publicNetworkAccess": "Restricted", "allowedIpRanges": ["203.0.113.0/24"], "disableLocalAuth": true}),
        )
        .await;
    let o = env
        .wait_condition(
            "CosmosPublicAccessLockdown",
            "lock",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready CosmosPublicAccessLockdown: {} ms (long-running PATCH)",
        t.elapsed().as_millis()
    );
    let p = env.sim.resource(COSMOS).await["properties"].clone();
    assert_eq!(
        p["ipRules"],
        json!([{"ipAddressOrRange": "203.0.113.0/24"}])
    );
    assert_eq!(p["disableLocalAuth"], true);
    assert_eq!(
        o["status"]["restore"]["prior"]["isVirtualNetworkFilterEnabled"],
        false
    );
    env.sim
        .patch(COSMOS, json!({"properties": {"ipRules": []}}))
        .await;
    env.wait(
        "CosmosPublicAccessLockdown",
        "lock",
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
    assert_eq!(
        env.sim.resource(COSMOS).await["properties"]["ipRules"],
        json!([{"ipAddressOrRange": "203.0.113.0/24"}])
    );
    env.delete("CosmosPublicAccessLockdown", "lock").await;
    env.wait_gone("CosmosPublicAccessLockdown", "lock").await;
    let p = env.sim.resource(COSMOS).await["properties"].clone();
    assert_eq!(
        (
            p["ipRules"].clone(),
            p["disableLocalAuth"].clone(),
            p["publicNetworkAccess"].clone()
        ),
        (json!([]), json!(false), json!("Enabled"))
    );
}

#[tokio::test]
async fn cosmos_private_ranges_are_rejected_at_admission() {
    let env = Env::new("e2e-cspal-admission").await;
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "CosmosPublicAccessLockdown",
        "metadata": {"name": "bad"},
        "spec": {"target": target(COSMOS), "publicNetworkAccess": "Restricted", "allowedIpRanges": ["10.1.2.0/24"]}
    }))
    .unwrap();
    let err = env
        .api("CosmosPublicAccessLockdown")
        .create(&PostParams::default(), &obj)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.allowedIpRanges: private ranges"),
        "{err}"
    );
}

#[tokio::test]
async fn cosmos_key_rotation_survives_a_crash_mid_operation() {
    let env = Env::new("e2e-cskr").await;
    env.sim.settings(json!({"lroDelayMs": 3000})).await;
    let mut op = env.operator();
    let before = cosmos_keys(&env).await;
    env.apply(
        "CosmosKeyRotation",
        "rot",
        json!({"target": target(COSMOS), "trigger": "INC-5"}),
    )
    .await;
    env.wait(
        "CosmosKeyRotation",
        "rot",
        "a pending regenerateKey",
        Duration::from_secs(20),
        |o| o.is_some_and(|o| o["status"]["azure"]["pendingOperation"].is_string()),
    )
    .await;
    op.kill();
    env.sim.settings(json!({"lroDelayMs": 300})).await;
    let _op2 = env.operator();
    let o = env
        .wait_condition(
            "CosmosKeyRotation",
            "rot",
            "Ready",
            "True",
            Some("Completed"),
        )
        .await;
    let posts: Vec<_> = env
        .sim
        .writes()
        .await
        .into_iter()
        .filter(|w| w.1.ends_with("/regenerateKey"))
        .collect();
    assert_eq!(
        posts.len(),
        2,
        "primary and secondary exactly once each: {posts:?}"
    );
    let after = cosmos_keys(&env).await;
    assert_masters_rotated(&before, &after);
    assert_eq!(
        before["primaryReadonlyMasterKey"],
        after["primaryReadonlyMasterKey"]
    );
    assert!(
        condition(&o, "Ready").unwrap()["message"]
            .as_str()
            .unwrap()
            .starts_with("rotated: primary generated")
    );
}

/// The Cosmos account's `keysMetadata` (generation time per key).
async fn cosmos_keys(env: &Env) -> Value {
    env.sim.resource(COSMOS).await["properties"]["keysMetadata"].clone()
}

/// The primary and secondary master keys were regenerated between `before` and `after`.
fn assert_masters_rotated(before: &Value, after: &Value) {
    assert_ne!(
        before["primaryMasterKey"], after["primaryMasterKey"],
        "primary rotated"
    );
    assert_ne!(
        before["secondaryMasterKey"], after["secondaryMasterKey"],
        "secondary rotated"
    );
}

fn regenerate_posts(writes: &[(String, String, u16)]) -> Vec<(String, u16)> {
    writes
        .iter()
        .filter(|w| w.1.ends_with("/regenerateKey"))
        .map(|w| (w.1.clone(), w.2))
        .collect()
}

/// Cosmos DB locks the account while another update runs (someone else's PATCH here) and
/// refuses regenerateKey with 412: that is a refusal, retried until the lock is gone, and each
/// key is still rotated exactly once.
#[tokio::test]
async fn cosmos_rotation_waits_out_an_update_someone_else_started() {
    let env = Env::new("e2e-cskr-locked").await;
    env.sim.settings(json!({"lroDelayMs": 3000})).await;
    env.sim
        .as_operator(
            reqwest::Method::PATCH,
            &format!("{COSMOS}?api-version=2024-05-15"),
            "https://management.azure.com/.default",
            Some(json!({"properties": {"disableLocalAuth": false}})),
        )
        .await;
    let _op = env.operator();
    let before = cosmos_keys(&env).await;
    env.apply(
        "CosmosKeyRotation",
        "rot",
        json!({"target": target(COSMOS), "trigger": "INC-9"}),
    )
    .await;
    env.wait_condition(
        "CosmosKeyRotation",
        "rot",
        "Ready",
        "True",
        Some("Completed"),
    )
    .await;
    let posts = regenerate_posts(&env.sim.writes().await);
    assert!(
        posts.iter().any(|p| p.1 == 412),
        "the lock was met: {posts:?}"
    );
    let accepted: Vec<_> = posts.iter().filter(|p| p.1 == 202).collect();
    assert_eq!(accepted.len(), 2, "each key once: {posts:?}");
    assert_masters_rotated(&before, &cosmos_keys(&env).await);
}

/// A regenerateKey whose operation ends Failed rotated nothing: it is not "done", the run is
/// not Completed, and the key is rotated by a second call (the leaked key must not stay valid).
#[tokio::test]
async fn cosmos_rotation_whose_operation_failed_is_not_completed() {
    let env = Env::new("e2e-cskr-lrofail").await;
    env.sim.settings(json!({"lroFailNext": 1})).await;
    let _op = env.operator();
    let before = cosmos_keys(&env).await;
    env.apply(
        "CosmosKeyRotation",
        "rot",
        json!({"target": target(COSMOS), "trigger": "INC-6"}),
    )
    .await;
    env.wait_condition(
        "CosmosKeyRotation",
        "rot",
        "Ready",
        "True",
        Some("Completed"),
    )
    .await;
    let after = cosmos_keys(&env).await;
    assert_masters_rotated(&before, &after);
    let posts = regenerate_posts(&env.sim.writes().await);
    assert_eq!(
        posts.len(),
        3,
        "failed primary, primary again, secondary: {posts:?}"
    );
}

/// Arms a lost answer: the first regenerateKey is carried out but its answer never arrives, and
/// its operation (hence Azure's evidence) takes `lro_ms` to complete.
async fn lose_the_first_regenerate_answer(env: &Env, lro_ms: u64) {
    env.sim.settings(json!({"lroDelayMs": lro_ms})).await;
    env.sim
        .fault(json!({"match": {"method": "POST", "pathRegex": "/regenerateKey$"}, "loseAnswer": true}))
        .await;
}

/// Lets operations finish quickly, waits for Completed, and checks each master key was
/// rotated by exactly one call.
async fn completes_with_one_call_per_key(env: &Env, before: &Value) {
    env.sim.settings(json!({"lroDelayMs": 300})).await;
    env.wait_condition(
        "CosmosKeyRotation",
        "rot",
        "Ready",
        "True",
        Some("Completed"),
    )
    .await;
    let posts = regenerate_posts(&env.sim.writes().await);
    assert_eq!(
        posts.len(),
        2,
        "primary and secondary exactly once each: {posts:?}"
    );
    assert_masters_rotated(before, &cosmos_keys(env).await);
}

/// The first regenerateKey's answer is lost, and Azure's evidence (generationTime) moves only
/// when the operation completes seconds later. It must be resolved from that evidence, never
/// sent again.
#[tokio::test]
async fn cosmos_rotation_whose_answer_was_lost_is_never_sent_twice() {
    let env = Env::new("e2e-cskr-lost").await;
    lose_the_first_regenerate_answer(&env, 4000).await;
    let _op = env.operator();
    let before = cosmos_keys(&env).await;
    env.apply(
        "CosmosKeyRotation",
        "rot",
        json!({"target": target(COSMOS), "trigger": "INC-7"}),
    )
    .await;
    env.wait_condition(
        "CosmosKeyRotation",
        "rot",
        "Reconciling",
        "True",
        Some("AwaitingEvidence"),
    )
    .await;
    completes_with_one_call_per_key(&env, &before).await;
}

/// The same lost answer while the operator's watch lags (every change held 3 s before its cache
/// sees it): the requeue 5 s later must not start from the cache's stale status (which does not
/// show the call as sent yet) and rotate again. Runs decide from a fresh read.
#[tokio::test]
async fn a_lagging_watch_never_causes_a_second_rotation() {
    let env = Env::new("e2e-cskr-lag").await;
    lose_the_first_regenerate_answer(&env, 8000).await;
    let _op = Operator::start_with(&env, &[], &[("CONTAINMENT_TEST_WATCH_LAG_MS", "3000")]);
    let before = cosmos_keys(&env).await;
    env.apply(
        "CosmosKeyRotation",
        "rot",
        json!({"target": target(COSMOS), "trigger": "INC-8"}),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while regenerate_posts(&env.sim.writes().await).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no regenerateKey sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the first recheck, with the cache still behind.
    tokio::time::sleep(Duration::from_secs(7)).await;
    completes_with_one_call_per_key(&env, &before).await;
}

#[tokio::test]
async fn cosmos_faults_complete_with_one_effective_write() {
    let env = Env::new("e2e-cosmos-faults").await;
    env.sim
        .fault(json!({"match": {"method": "PATCH", "pathRegex": "databaseAccounts/cosmos-prod-01$"}, "status": 503, "count": 2}))
        .await;
    env.sim
        .fault(json!({"match": {"method": "PATCH", "pathRegex": "databaseAccounts/cosmos-prod-01$"}, "status": 429, "count": 2, "retryAfterSeconds": 1}))
        .await;
    let _op = env.operator();
    env.apply(
        "CosmosPublicAccessLockdown",
        "lock",
        json!({"target": target(COSMOS)}),
    )
    .await;
    env.wait_condition(
        "CosmosPublicAccessLockdown",
        "lock",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    let ok: Vec<_> = env.sim.successful_writes().await;
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(
        env.sim.resource(COSMOS).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
}

#[tokio::test]
async fn invalid_specs_of_the_second_wave_are_rejected_naming_the_field() {
    let env = Env::new("e2e-admission-more").await;
    let cases = [
        (
            "WafIpBlock",
            json!({"target": target(WAF), "ipAddresses": ["203.0.113.7"], "priority": 0}),
            "spec.priority",
        ),
        (
            "WafIpBlock",
            json!({"target": target(WAF), "ipAddresses": ["not-an-ip"]}),
            "spec.ipAddresses",
        ),
        (
            "WafIpBlock",
            json!({"target": target(WAF), "ipAddresses": []}),
            "spec.ipAddresses",
        ),
        (
            "ArcIsolation",
            json!({"target": target(ARC), "isolationType": "Partial"}),
            "spec.isolationType",
        ),
        (
            "CosmosKeyRotation",
            json!({"target": target(COSMOS), "keyKinds": ["primary", "primary"]}),
            "spec.keyKinds",
        ),
        (
            "CosmosPublicAccessLockdown",
            json!({"target": target(COSMOS), "publicNetworkAccess": "Restricted"}),
            "spec.allowedIpRanges",
        ),
        (
            "DefenderAlertState",
            json!({"target": target(ALERT), "state": "Closed"}),
            "spec.state",
        ),
        (
            "ThreatSubmission",
            json!({"submissionType": "Url", "category": "malware", "url": "ftp://x"}),
            "spec.url",
        ),
        (
            "ThreatSubmission",
            json!({"submissionType": "Url", "category": "virus", "url": "https://x.example"}),
            "spec.category",
        ),
    ];
    for (i, (kind, spec, field)) in cases.into_iter().enumerate() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": kind,
            "metadata": {"name": format!("bad-{i}")}, "spec": spec
        }))
        .unwrap();
        let err = env
            .api(kind)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(field),
            "{kind} {spec}: {err}",
            spec = obj.data["spec"]
        );
    }
}

#[tokio::test]
async fn cosmos_key_rotation_rotates_in_order_once() {
    let env = Env::new("e2e-cskr-order").await;
    let _op = env.operator();
    let t = env
        .apply(
            "CosmosKeyRotation",
            "rot",
            json!({"target": target(COSMOS), "keyKinds": ["secondary", "primaryReadonly"]}),
        )
        .await;
    env.wait_condition(
        "CosmosKeyRotation",
        "rot",
        "Ready",
        "True",
        Some("Completed"),
    )
    .await;
    eprintln!(
        "apply→Ready CosmosKeyRotation (two sequential long-running operations): {} ms",
        t.elapsed().as_millis()
    );
    let after = cosmos_keys(&env).await;
    let t2 = |k: &str| {
        after[k]["generationTime"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
    };
    assert!(
        t2("secondaryMasterKey") < t2("primaryReadonlyMasterKey"),
        "rotated in the order listed"
    );
    assert_eq!(
        after["primaryMasterKey"]["generationTime"],
        "2024-01-01T00:00:00Z"
    );
}

/// Two states for one alert cannot be composed: the later resource stalls naming the earlier,
/// which stays in force; once the earlier goes, the later one takes over.
#[tokio::test]
async fn two_states_for_one_alert_conflict_and_the_later_waits() {
    let env = Env::new("e2e-dalert-conflict").await;
    let _op = env.operator();
    env.apply(
        "DefenderAlertState",
        "dismiss",
        json!({"target": {"resourceId": ALERT}, "state": "Dismissed"}),
    )
    .await;
    env.wait_ready("DefenderAlertState", "dismiss").await;
    env.apply(
        "DefenderAlertState",
        "activate",
        json!({"target": {"resourceId": ALERT}, "state": "Active"}),
    )
    .await;
    let o = env
        .wait_condition(
            "DefenderAlertState",
            "activate",
            "Stalled",
            "True",
            Some("ConflictsWith"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains(&format!("{}/dismiss", env.ns)) && msg.contains("Dismissed"),
        "{msg}"
    );
    assert!(o["status"].get("restore").is_none(), "{o}");
    assert_eq!(
        env.sim.resource(ALERT).await["properties"]["status"],
        "Dismissed"
    );
    env.delete("DefenderAlertState", "dismiss").await;
    env.wait_gone("DefenderAlertState", "dismiss").await;
    env.wait_condition("DefenderAlertState", "activate", "Ready", "True", None)
        .await;
    assert_eq!(
        env.sim.resource(ALERT).await["properties"]["status"],
        "Active"
    );
}

fn run_command_writes(writes: &[(String, String, u16)]) -> Vec<String> {
    writes
        .iter()
        .filter(|(_, p, s)| p.contains("/runCommands/") && (200..300).contains(s))
        .map(|(m, _, _)| m.clone())
        .collect()
}

/// Once per trigger: the script runs with its parameters, its result is summarised (protected
/// values masked), the run command is deleted; a failed script is Stalled with its exit code.
#[tokio::test]
async fn arc_run_command_runs_once_per_trigger_summarises_and_cleans_up() {
    let env = Env::new("e2e-arcrun").await;
    env.secret("arc-token", &[("TOKEN", "s3cr3t-arc-token")])
        .await;
    let op = env.operator();
    let spec = json!({"target": target(ARC), "script": "echo stopping miner with $TOKEN\necho mode=$mode",
        "parameters": [{"name": "mode", "value": "kill"}], "protectedParametersFrom": {"secretName": "arc-token"},
        "trigger": "INC-1"});
    let t = env.apply("ArcRunCommand", "run", spec.clone()).await;
    let o = env
        .wait_condition("ArcRunCommand", "run", "Ready", "True", Some("Completed"))
        .await;
    eprintln!("apply→Ready ArcRunCommand: {} ms", t.elapsed().as_millis());
    let r = &o["status"]["result"];
    assert_eq!(r["executionState"], "Succeeded", "{r}");
    assert_eq!(r["exitCode"], 0);
    assert_eq!(r["output"], "stopping miner with ***\nmode=kill");
    assert!(r["runCommand"].as_str().unwrap().starts_with("ctr-"));
    assert!(
        env.sim
            .children(&format!("{ARC}/runCommands"))
            .await
            .is_empty(),
        "deleted after the run"
    );
    assert_eq!(
        run_command_writes(&env.sim.writes().await),
        ["PUT", "DELETE"]
    );
    assert!(
        !o.to_string().contains("s3cr3t-arc-token"),
        "the token reached the status"
    );
    assert!(
        !op.logs().contains("s3cr3t-arc-token"),
        "the token reached the logs"
    );
    for e in env.events("run").await {
        assert!(
            !e.2.contains("s3cr3t-arc-token"),
            "the token reached an event"
        );
    }

    // Same trigger: never again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(run_command_writes(&env.sim.writes().await).len(), 2);

    // A new trigger whose script fails, kept for inspection: Stalled with the exit code.
    let mut failing = spec;
    failing["trigger"] = json!("INC-2");
    failing["script"] = json!("echo trying\nexit 3");
    failing["keepRunCommand"] = json!(true);
    env.apply("ArcRunCommand", "run", failing).await;
    let o = env
        .wait_condition(
            "ArcRunCommand",
            "run",
            "Stalled",
            "True",
            Some("ScriptFailed"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("exit code 3"), "{msg}");
    assert_eq!(o["status"]["result"]["output"], "trying");
    let kept = env.sim.children(&format!("{ARC}/runCommands")).await;
    assert_eq!(kept.len(), 1, "kept");
    assert!(
        kept[0]["properties"].get("protectedParameters").is_none(),
        "Azure never returns them"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        run_command_writes(&env.sim.writes().await),
        ["PUT", "DELETE", "PUT"],
        "a failed run is not re-run"
    );
}
