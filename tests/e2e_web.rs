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
