//! End to end, App Service kinds: the operator process against the real API server and azure-sim.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

fn restarts(writes: &[(String, String, u16)]) -> Vec<String> {
    writes
        .iter()
        .filter(|(m, p, s)| m == "POST" && p.ends_with("/restart") && *s == 200)
        .map(|(_, p, _)| p.clone())
        .collect()
}

#[tokio::test]
async fn app_service_restart_runs_once_per_trigger_on_the_site_and_its_slots() {
    let env = Env::new("e2e-asrst").await;
    let _op = env.operator();
    let t = env
        .apply(
            "AppServiceRestart",
            "r",
            json!({"target": target(APP), "slots": ["staging"], "trigger": "INC-4740"}),
        )
        .await;
    let o = env
        .wait_condition("AppServiceRestart", "r", "Ready", "True", Some("Completed"))
        .await;
    eprintln!(
        "apply→Ready AppServiceRestart: {} ms",
        t.elapsed().as_millis()
    );
    let first = restarts(&env.sim.writes().await);
    assert_eq!(
        first,
        [
            format!("{APP}/restart"),
            format!("{APP}/slots/staging/restart")
        ]
    );
    assert_eq!(o["status"]["action"]["runId"], "trigger:INC-4740");
    assert!(o["status"]["action"]["completedTime"].is_string(), "{o}");
    // The call time is the evidence.
    assert!(env.sim.resource(APP).await["properties"]["lastRestartTime"].is_string());

    // Re-checks (and a reconcile request) restart nothing more.
    env.reconcile_now("AppServiceRestart", "r", "again").await;
    env.wait_reconcile_handled("AppServiceRestart", "r", "again")
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(restarts(&env.sim.writes().await).len(), 2);

    // A new trigger value: once more.
    env.apply(
        "AppServiceRestart",
        "r",
        json!({"target": target(APP), "slots": ["staging"], "trigger": "INC-4740-b"}),
    )
    .await;
    env.wait(
        "AppServiceRestart",
        "r",
        "the second run completed",
        Duration::from_secs(20),
        |o| {
            o.is_some_and(|o| {
                o["status"]["action"]["runId"] == "trigger:INC-4740-b"
                    && o["status"]["action"]["phase"] == "Completed"
            })
        },
    )
    .await;
    assert_eq!(restarts(&env.sim.writes().await).len(), 4);

    // Deleting it undoes nothing (a restart cannot be undone) and sends nothing.
    env.delete("AppServiceRestart", "r").await;
    env.wait_gone("AppServiceRestart", "r").await;
    assert_eq!(restarts(&env.sim.writes().await).len(), 4);

    // A slot that does not exist: Stalled naming it, nothing sent.
    env.apply(
        "AppServiceRestart",
        "typo",
        json!({"target": target(APP), "slots": ["stagign"]}),
    )
    .await;
    let o = env
        .wait_condition(
            "AppServiceRestart",
            "typo",
            "Stalled",
            "True",
            Some("SlotNotFound"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("stagign"), "{msg}");
    assert_eq!(restarts(&env.sim.writes().await).len(), 4);
}

async fn settings(env: &Env, app: &str) -> serde_json::Value {
    env.sim.resource(&format!("{app}/config/appsettings")).await["properties"].clone()
}

async fn basic_auth(env: &Env, app: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in ["ftp", "scm"] {
        let r = env
            .sim
            .arm(
                reqwest::Method::GET,
                &format!("{app}/basicPublishingCredentialsPolicies/{p}?api-version=2023-12-01"),
            )
            .await;
        out.push(r["properties"]["allow"].clone());
    }
    out
}

/// The Secret's values land in the site's and the slot's app settings without dropping any
/// other setting; a change in Azure is re-applied; a new Secret value is pushed on request;
/// basic-auth publishing is off while in force and back on release; no value is ever shown.
#[tokio::test]
async fn app_service_secret_rotation_sets_the_secret_keeps_the_rest_and_never_shows_a_value() {
    let env = Env::new("e2e-assr").await;
    env.secret(
        "app-secrets",
        &[("DB_PASSWORD", "n3w-db-pw"), ("API_KEY", "k3y-1")],
    )
    .await;
    let op = env.operator();
    let slot = format!("{APP}/slots/staging");
    assert_eq!(basic_auth(&env, APP).await, [json!(true), json!(true)]);
    let t = env
        .apply(
            "AppServiceSecretRotation",
            "s",
            json!({"target": target(APP), "settingsFrom": {"secretName": "app-secrets"}, "slots": ["staging"], "disableBasicAuth": true}),
        )
        .await;
    let o = env
        .wait_condition(
            "AppServiceSecretRotation",
            "s",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready AppServiceSecretRotation: {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(
        settings(&env, APP).await,
        json!({"DB_PASSWORD": "n3w-db-pw", "API_KEY": "k3y-1", "WEBSITE_NODE_DEFAULT_VERSION": "~20", "FEATURE_FLAGS": "checkout-v2"})
    );
    assert_eq!(
        settings(&env, &slot).await,
        json!({"DB_PASSWORD": "n3w-db-pw", "API_KEY": "k3y-1", "SLOT_ONLY": "1"})
    );
    assert_eq!(basic_auth(&env, APP).await, [json!(false), json!(false)]);
    assert_eq!(basic_auth(&env, &slot).await, [json!(false), json!(false)]);
    let hashes = &o["status"]["appSettings"];
    for k in ["DB_PASSWORD", "API_KEY"] {
        assert!(
            hashes[k].as_str().unwrap().starts_with("hmac-sha256:"),
            "{hashes}"
        );
    }
    let leaks = |o: &serde_json::Value, logs: &str| {
        ["n3w-db-pw", "k3y-1", "leaked-in-inc-4711", "checkout-v2"]
            .iter()
            .any(|v| o.to_string().contains(v) || logs.contains(v))
    };
    assert!(
        !leaks(&o, &op.logs()),
        "a setting value reached status or logs"
    );
    for e in env.events("s").await {
        assert!(!leaks(&json!(e.2), ""), "a setting value reached an event");
    }

    // Someone puts the leaked value back (and adds a setting): corrected, theirs kept.
    env.sim
        .put(
            &format!("{APP}/config/appsettings"),
            json!({"id": format!("{APP}/config/appsettings"), "properties": {"DB_PASSWORD": "leaked-in-inc-4711", "API_KEY": "k3y-1", "NEW_ONE": "x"}}),
        )
        .await;
    env.wait_drift_corrected("AppServiceSecretRotation", "s", 1)
        .await;
    assert_eq!(
        settings(&env, APP).await,
        json!({"DB_PASSWORD": "n3w-db-pw", "API_KEY": "k3y-1", "NEW_ONE": "x"})
    );

    // Rotated again: the new Secret value is pushed on request, to the site and the slot.
    env.secret(
        "app-secrets",
        &[("DB_PASSWORD", "n3w-db-pw-2"), ("API_KEY", "k3y-1")],
    )
    .await;
    env.reconcile_now("AppServiceSecretRotation", "s", "rotate-2")
        .await;
    let o = env
        .wait_reconcile_handled("AppServiceSecretRotation", "s", "rotate-2")
        .await;
    assert_ne!(
        o["status"]["appSettings"]["DB_PASSWORD"],
        hashes["DB_PASSWORD"]
    );
    assert_eq!(settings(&env, APP).await["DB_PASSWORD"], "n3w-db-pw-2");
    assert_eq!(settings(&env, &slot).await["DB_PASSWORD"], "n3w-db-pw-2");

    // Release: publishing policies as they were; the settings keep their new values.
    env.delete("AppServiceSecretRotation", "s").await;
    env.wait_gone("AppServiceSecretRotation", "s").await;
    assert_eq!(basic_auth(&env, APP).await, [json!(true), json!(true)]);
    assert_eq!(basic_auth(&env, &slot).await, [json!(true), json!(true)]);
    assert_eq!(settings(&env, APP).await["DB_PASSWORD"], "n3w-db-pw-2");

    // A Secret that does not exist: Stalled, naming the field; nothing written.
    let before = env.sim.writes().await.len();
    env.apply(
        "AppServiceSecretRotation",
        "missing",
        json!({"target": target(APP), "settingsFrom": {"secretName": "no-such-secret"}}),
    )
    .await;
    let o = env
        .wait_condition(
            "AppServiceSecretRotation",
            "missing",
            "Stalled",
            "True",
            None,
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.contains("spec.settingsFrom.secretName") && msg.contains("no-such-secret"),
        "{msg}"
    );
    assert_eq!(env.sim.writes().await.len(), before);
}
