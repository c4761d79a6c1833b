//! End to end, Storage kinds: the operator process against the real API server and azure-sim.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn storage_lockdown_apply_drift_dry_run_and_restore() {
    let env = Env::new("e2e-stpal").await;
    let _op = env.operator();
    env.apply(
        "StoragePublicAccessLockdown",
        "dry",
        json!({"target": target(STORAGE), "mode": "DryRun", "disableSharedKeyAccess": true}),
    )
    .await;
    let dry = env
        .wait_condition(
            "StoragePublicAccessLockdown",
            "dry",
            "Ready",
            "True",
            Some("DryRun"),
        )
        .await;
    let plan = dry["status"]["plan"][0].as_str().unwrap().to_string();
    assert!(
        plan.starts_with(&format!("PATCH {STORAGE}?api-version=2023-05-01 ")),
        "{plan}"
    );
    let body: Value =
        serde_json::from_str(plan.split_once(' ').unwrap().1.split_once(' ').unwrap().1).unwrap();
    assert_eq!(
        body,
        json!({"properties": {"allowBlobPublicAccess": false, "publicNetworkAccess": "Disabled", "allowSharedKeyAccess": false}})
    );
    assert!(env.sim.writes().await.is_empty());
    env.delete("StoragePublicAccessLockdown", "dry").await;

    let t = env
        .apply(
            "StoragePublicAccessLockdown",
            "lock",
            json!({"target": target(STORAGE)}),
        )
        .await;
    let o = env
        .wait_condition(
            "StoragePublicAccessLockdown",
            "lock",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready StoragePublicAccessLockdown: {} ms",
        t.elapsed().as_millis()
    );
    let props = env.sim.resource(STORAGE).await["properties"].clone();
    assert_eq!(
        (
            props["allowBlobPublicAccess"].clone(),
            props["publicNetworkAccess"].clone()
        ),
        (json!(false), json!("Disabled"))
    );
    assert_eq!(
        props["allowSharedKeyAccess"], true,
        "not owned by this containment: untouched"
    );
    assert_eq!(
        o["status"]["restore"]["prior"],
        json!({"allowBlobPublicAccess": true, "publicNetworkAccess": "Enabled"})
    );
    assert_eq!(env.sim.writes().await.len(), 1);

    env.sim
        .patch(
            STORAGE,
            json!({"properties": {"publicNetworkAccess": "Enabled"}}),
        )
        .await;
    env.wait_drift_corrected("StoragePublicAccessLockdown", "lock", 1)
        .await;
    assert_eq!(
        env.sim.resource(STORAGE).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
    // The correction PATCHes only the field that drifted.
    let writes = env.sim.writes().await;
    assert_eq!(writes.len(), 2, "{writes:?}");

    env.delete("StoragePublicAccessLockdown", "lock").await;
    env.wait_gone("StoragePublicAccessLockdown", "lock").await;
    let props = env.sim.resource(STORAGE).await["properties"].clone();
    assert_eq!(
        (
            props["allowBlobPublicAccess"].clone(),
            props["publicNetworkAccess"].clone()
        ),
        (json!(true), json!("Enabled"))
    );
}

#[tokio::test]
async fn storage_lockdown_restricted_allow_list_and_observe() {
    let env = Env::new("e2e-stpal-restricted").await;
    let _op = env.operator();
    env.apply(
        "StoragePublicAccessLockdown",
        "watch",
        json!({"target": target(STORAGE), "mode": "Observe"}),
    )
    .await;
    env.wait_condition(
        "StoragePublicAccessLockdown",
        "watch",
        "Ready",
        "False",
        Some("NotCompliant"),
    )
    .await;
    assert!(env.sim.writes().await.is_empty(), "Observe never writes");
    env.apply(
        "StoragePublicAccessLockdown",
        "allow",
        json!({"target": target(STORAGE), "publicNetworkAccess": "Restricted", "allowedIpRanges": ["198.51.100.0/24"], "disableAnonymousBlobAccess": false}),
    )
    .await;
    env.wait_ready("StoragePublicAccessLockdown", "allow").await;
    let acls = env.sim.resource(STORAGE).await["properties"]["networkAcls"].clone();
    assert_eq!(acls["defaultAction"], "Deny");
    assert_eq!(
        acls["ipRules"],
        json!([{"value": "198.51.100.0/24", "action": "Allow"}])
    );
    assert_eq!(acls["bypass"], "AzureServices");
    env.delete("StoragePublicAccessLockdown", "allow").await;
    env.wait_gone("StoragePublicAccessLockdown", "allow").await;
    let acls = env.sim.resource(STORAGE).await["properties"]["networkAcls"].clone();
    assert_eq!(acls["defaultAction"], "Allow");
    assert_eq!(acls["ipRules"], json!([]));
}

fn key_values(listed: &Value) -> Vec<(String, String)> {
    listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["keyName"].as_str().unwrap().to_string(),
                k["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn storage_key_rotation_once_per_trigger_publishes_and_never_leaks() {
    let env = Env::new("e2e-stkr").await;
    let op = env.operator();
    let before = key_values(
        &env.sim
            .arm(
                reqwest::Method::POST,
                &format!("{STORAGE}/listKeys?api-version=2023-05-01"),
            )
            .await,
    );
    let t = env
        .apply("StorageKeyRotation", "leak", json!({"target": target(STORAGE), "trigger": "INC-1", "publishTo": {"secretName": "stprod01-keys"}}))
        .await;
    let o = env
        .wait_condition(
            "StorageKeyRotation",
            "leak",
            "Ready",
            "True",
            Some("Completed"),
        )
        .await;
    eprintln!(
        "apply→Ready StorageKeyRotation: {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(o["status"]["action"]["runId"], "trigger:INC-1");
    assert_eq!(o["status"]["action"]["phase"], "Completed");
    let after = key_values(
        &env.sim
            .arm(
                reqwest::Method::POST,
                &format!("{STORAGE}/listKeys?api-version=2023-05-01"),
            )
            .await,
    );
    assert_ne!(before, after);
    let regen = |w: &Vec<(String, String, u16)>| {
        w.iter().filter(|w| w.1.ends_with("/regenerateKey")).count()
    };
    assert_eq!(regen(&env.sim.writes().await), 2);
    let created = env.sim.resource(STORAGE).await["properties"]["keyCreationTime"].clone();
    assert_ne!(created["key1"], "2024-01-01T00:00:00.0000000Z");
    assert_ne!(created["key2"], "2024-01-01T00:00:00.0000000Z");

    // Published to the named Secret, and nowhere else.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let s = secrets.get("stprod01-keys").await.unwrap();
    let data = s.data.unwrap();
    for (name, value) in &after {
        assert_eq!(String::from_utf8(data[name].0.clone()).unwrap(), *value);
        assert!(
            !op.logs().contains(value.as_str()),
            "a key value reached the logs"
        );
        assert!(
            !o.to_string().contains(value.as_str()),
            "a key value reached the status"
        );
        for e in env.events("leak").await {
            assert!(
                !e.2.contains(value.as_str()),
                "a key value reached an event"
            );
        }
    }

    // Same trigger: never again, not even after the drift interval.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(regen(&env.sim.writes().await), 2);
    // New trigger: one more run.
    env.apply("StorageKeyRotation", "leak", json!({"target": target(STORAGE), "trigger": "INC-2", "keys": ["key1"], "publishTo": {"secretName": "stprod01-keys"}})).await;
    env.wait(
        "StorageKeyRotation",
        "leak",
        "run INC-2 completed",
        Duration::from_secs(20),
        |o| {
            o.is_some_and(|o| {
                o["status"]["action"]["runId"] == "trigger:INC-2"
                    && o["status"]["action"]["phase"] == "Completed"
            })
        },
    )
    .await;
    assert_eq!(regen(&env.sim.writes().await), 3);
}

#[tokio::test]
async fn operator_killed_mid_rotation_never_rotates_twice() {
    let env = Env::new("e2e-stkr-crash").await;
    // Every answer takes 2 s: the operator is killed after Azure rotated key1 but before it
    // heard back.
    env.sim.settings(json!({"latencyMs": 2000})).await;
    let mut op = env.operator();
    env.apply(
        "StorageKeyRotation",
        "rot",
        json!({"target": target(STORAGE)}),
    )
    .await;
    env.wait(
        "StorageKeyRotation",
        "rot",
        "intent recorded",
        Duration::from_secs(30),
        |o| o.is_some_and(|o| o["status"]["action"]["phase"] == "InProgress"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    op.kill();
    env.sim.settings(json!({"latencyMs": 0})).await;
    let _op2 = env.operator();
    env.wait_condition(
        "StorageKeyRotation",
        "rot",
        "Ready",
        "True",
        Some("Completed"),
    )
    .await;
    let regen: Vec<_> = env
        .sim
        .writes()
        .await
        .into_iter()
        .filter(|w| w.1.ends_with("/regenerateKey"))
        .collect();
    assert_eq!(regen.len(), 2, "key1 and key2 exactly once each: {regen:?}");
}

/// Five lockdowns on one account: their drift checks share one read of it per interval
/// instead of five (ARM's read bucket is per subscription), and still detect drift.
#[tokio::test]
async fn lockdowns_on_one_account_share_their_drift_reads() {
    let env = Env::new("e2e-shared-reads").await;
    let _op = env.operator(); // drift interval 2 s
    for i in 0..5 {
        env.apply(
            "StoragePublicAccessLockdown",
            &format!("s{i}"),
            json!({"target": target(STORAGE)}),
        )
        .await;
    }
    for i in 0..5 {
        env.wait_ready("StoragePublicAccessLockdown", &format!("s{i}"))
            .await;
    }
    let gets = |reqs: &[Value]| {
        reqs.iter()
            .filter(|r| {
                r["method"] == "GET" && r["path"].as_str().unwrap().eq_ignore_ascii_case(STORAGE)
            })
            .count()
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = gets(&env.sim.requests().await);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let reads = gets(&env.sim.requests().await) - before;
    // Unshared, 4 intervals × 5 resources = about 20 reads; shared, about one per interval.
    assert!(
        (2..=8).contains(&reads),
        "{reads} reads of the account in 4 intervals"
    );

    // Drift is still seen and corrected once.
    env.sim
        .patch(
            STORAGE,
            json!({"properties": {"allowBlobPublicAccess": true}}),
        )
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while env.sim.resource(STORAGE).await["properties"]["allowBlobPublicAccess"] != false {
        assert!(std::time::Instant::now() < deadline, "drift not corrected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let patches = env
        .sim
        .successful_writes()
        .await
        .iter()
        .filter(|(m, p)| m == "PATCH" && p.eq_ignore_ascii_case(STORAGE))
        .count();
    assert_eq!(patches, 2, "one lockdown PATCH, one correction");
}

const BLOB_SERVICE: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/stprod01/blobServices/default";

#[tokio::test]
async fn soft_delete_is_raised_not_shortened_keeps_cors_corrects_drift_and_restores() {
    let env = Env::new("e2e-stsdp").await;
    let before = env.sim.resource(BLOB_SERVICE).await["properties"].clone();
    assert_eq!(before["cors"]["corsRules"].as_array().unwrap().len(), 1);
    let _op = env.operator();
    // Container soft delete is already on for 7 days: asking for 3 keeps 7.
    let t = env
        .apply(
            "StorageSoftDeleteProtection",
            "sd",
            json!({"target": target(STORAGE), "blobRetentionDays": 30, "containerRetentionDays": 3}),
        )
        .await;
    let o = env
        .wait_condition(
            "StorageSoftDeleteProtection",
            "sd",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready StorageSoftDeleteProtection: {} ms",
        t.elapsed().as_millis()
    );
    let props = env.sim.resource(BLOB_SERVICE).await["properties"].clone();
    assert_eq!(
        props["deleteRetentionPolicy"],
        json!({"enabled": true, "days": 30})
    );
    assert_eq!(
        props["containerDeleteRetentionPolicy"],
        json!({"enabled": true, "days": 7})
    );
    // Everything the PUT does not own came back as read (a PUT without cors deletes CORS).
    assert_eq!(props["cors"], before["cors"]);
    assert_eq!(props["isVersioningEnabled"], true);
    assert_eq!(
        o["status"]["restore"]["prior"],
        json!({"deleteRetentionPolicy": {"enabled": false}})
    );
    assert_eq!(o["status"]["targetName"], "stprod01");
    assert_eq!(env.sim.successful_writes().await.len(), 1);

    // Someone shortens blob retention to 1 day: put back to 30, CORS still intact.
    let mut drifted = env.sim.resource(BLOB_SERVICE).await;
    drifted["properties"]["deleteRetentionPolicy"] = json!({"enabled": true, "days": 1});
    env.sim.put(BLOB_SERVICE, drifted).await;
    env.wait_drift_corrected("StorageSoftDeleteProtection", "sd", 1)
        .await;
    let props = env.sim.resource(BLOB_SERVICE).await["properties"].clone();
    assert_eq!(props["deleteRetentionPolicy"]["days"], 30);
    assert_eq!(props["cors"], before["cors"]);
    assert_eq!(env.sim.successful_writes().await.len(), 2);

    // Release: blob soft delete back off as recorded; the container policy was never ours.
    env.delete("StorageSoftDeleteProtection", "sd").await;
    env.wait_gone("StorageSoftDeleteProtection", "sd").await;
    let props = env.sim.resource(BLOB_SERVICE).await["properties"].clone();
    assert_eq!(props["deleteRetentionPolicy"], json!({"enabled": false}));
    assert_eq!(
        props["containerDeleteRetentionPolicy"],
        json!({"enabled": true, "days": 7})
    );
    assert_eq!(props["cors"], before["cors"]);
    assert_eq!(props["isVersioningEnabled"], true);
}

const DEFENDER: &str = "/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/stprod01/providers/Microsoft.Security/defenderForStorageSettings/current";

#[tokio::test]
async fn defender_for_storage_is_enabled_reported_corrected_and_handed_back() {
    let env = Env::new("e2e-stdfp").await;
    let _op = env.operator();
    let t = env
        .apply(
            "StorageDefenderProtection",
            "dfp",
            json!({"target": target(STORAGE), "malwareScanning": {"capGBPerMonth": 1000}}),
        )
        .await;
    let o = env
        .wait_condition(
            "StorageDefenderProtection",
            "dfp",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready StorageDefenderProtection: {} ms",
        t.elapsed().as_millis()
    );
    let props = env.sim.resource(DEFENDER).await["properties"].clone();
    assert_eq!(
        (
            &props["isEnabled"],
            &props["overrideSubscriptionLevelSettings"]
        ),
        (&json!(true), &json!(true))
    );
    assert_eq!(
        props["malwareScanning"]["onUpload"],
        json!({"isEnabled": true, "capGBPerMonth": 1000})
    );
    // Azure's per-feature outcome is in status and in the message.
    assert_eq!(o["status"]["malwareScanning"]["code"], "Succeeded", "{o}");
    let msg = condition(&o, "Ready").unwrap()["message"].as_str().unwrap();
    assert!(
        msg.contains("cap 1000 GB/month") && msg.contains("malwareScanning Succeeded"),
        "{msg}"
    );
    assert_eq!(o["status"]["restore"], json!({"hadSetting": false}));
    assert_eq!(env.sim.successful_writes().await.len(), 1);

    // Someone turns malware scanning off: turned back on.
    let mut drifted = env.sim.resource(DEFENDER).await;
    drifted["properties"]["malwareScanning"]["onUpload"]["isEnabled"] = json!(false);
    env.sim.put(DEFENDER, drifted).await;
    env.wait_drift_corrected("StorageDefenderProtection", "dfp", 1)
        .await;
    assert_eq!(
        env.sim.resource(DEFENDER).await["properties"]["malwareScanning"]["onUpload"]["isEnabled"],
        true
    );

    // Release: it had no setting of its own, so the subscription's plan applies again.
    env.delete("StorageDefenderProtection", "dfp").await;
    env.wait_gone("StorageDefenderProtection", "dfp").await;
    let props = env.sim.resource(DEFENDER).await["properties"].clone();
    assert_eq!(props["overrideSubscriptionLevelSettings"], false);
    assert_eq!(props["isEnabled"], false);

    // A 2xx whose feature status says Failed is not success (here: a scan-results topic that
    // does not exist): Stalled with Azure's words, not Ready.
    env.apply(
        "StorageDefenderProtection",
        "topic",
        json!({"target": target(STORAGE), "malwareScanning": {"scanResultsEventGridTopicResourceId": format!("/subscriptions/{SUB}/resourceGroups/rg-prod/providers/Microsoft.EventGrid/topics/missing")}}),
    )
    .await;
    let o = env
        .wait_condition(
            "StorageDefenderProtection",
            "topic",
            "Stalled",
            "True",
            Some("MalwareScanningFailed"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("topics/missing"), "{msg}");
    assert_eq!(o["status"]["malwareScanning"]["code"], "Failed", "{o}");
}
