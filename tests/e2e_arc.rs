//! End to end, ArcIsolation through Defender for Endpoint.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

async fn actions(env: &Env) -> Vec<Value> {
    env.sim
        .admin(reqwest::Method::GET, "/_sim/mde/actions", None)
        .await["value"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn isolate_verify_drift_and_unisolate_on_release() {
    let env = Env::new("e2e-arciso").await;
    let _op = env.operator();
    let t = env
        .apply(
            "ArcIsolation",
            "web",
            json!({"target": target(ARC), "reason": "INC-77 ransomware"}),
        )
        .await;
    let o = env
        .wait_condition("ArcIsolation", "web", "Ready", "True", Some("Contained"))
        .await;
    eprintln!(
        "apply→Ready ArcIsolation (MDE action Pending→InProgress→Succeeded, 2×300 ms): {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(o["status"]["deviceId"], DEVICE);
    assert_eq!(o["status"]["isolationState"], "Isolated");
    let a = actions(&env).await;
    assert_eq!(a.len(), 1);
    assert_eq!(
        (a[0]["type"].as_str(), a[0]["scope"].as_str()),
        (Some("Isolate"), Some("Full"))
    );
    assert!(
        a[0]["requestorComment"]
            .as_str()
            .unwrap()
            .contains("INC-77")
    );
    assert_eq!(o["status"]["machineActionId"], a[0]["id"]);

    // Someone unisolates the device: the operator isolates it again once that action is done.
    env.sim
        .as_operator(
            reqwest::Method::POST,
            &format!("/api/machines/{DEVICE}/unisolate"),
            MDE_SCOPE,
            Some(json!({"Comment": "admin"})),
        )
        .await;
    env.wait(
        "ArcIsolation",
        "web",
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
    let types: Vec<String> = actions(&env)
        .await
        .iter()
        .map(|a| a["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["Isolate", "Unisolate", "Isolate"]);

    env.delete("ArcIsolation", "web").await;
    env.wait_gone("ArcIsolation", "web").await;
    let types: Vec<String> = actions(&env)
        .await
        .iter()
        .map(|a| a["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["Isolate", "Unisolate", "Isolate", "Unisolate"]);
    // Never raced an action in progress.
    assert!(
        env.sim.requests().await.iter().all(|r| r["status"] != 400),
        "an action was sent while another was pending"
    );
}

#[tokio::test]
async fn release_waits_for_a_pending_isolation() {
    let env = Env::with_world("e2e-arciso-race", printed_actions(&[]), |w| {
        w.settings.mde_action_step_ms = 1500
    })
    .await;
    let _op = env.operator();
    env.apply(
        "ArcIsolation",
        "web",
        json!({"target": target(ARC), "isolationType": "Selective"}),
    )
    .await;
    env.wait_condition(
        "ArcIsolation",
        "web",
        "Reconciling",
        "True",
        Some("AwaitingMachineAction"),
    )
    .await;
    env.delete("ArcIsolation", "web").await;
    env.wait_gone("ArcIsolation", "web").await;
    let a = actions(&env).await;
    let types: Vec<&str> = a.iter().map(|a| a["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["Isolate", "Unisolate"]);
    assert_eq!(a[0]["scope"], "Selective");
    assert!(
        env.sim.requests().await.iter().all(|r| r["status"] != 400),
        "unisolate sent while isolate was pending"
    );
}

#[tokio::test]
async fn ambiguous_or_missing_device_stalls_naming_candidates() {
    let env = Env::with_world("e2e-arciso-ambiguous", printed_actions(&[]), |w| {
        w.mde.machines.push(json!({"id": "9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f", "computerDnsName": "ARC-WEB-01.corp.contoso.example", "osPlatform": "Linux", "healthStatus": "Active", "lastSeen": "2026-11-23T09:00:00Z"}));
    })
    .await;
    let _op = env.operator();
    env.apply("ArcIsolation", "web", json!({"target": target(ARC)}))
        .await;
    let o = env
        .wait_condition(
            "ArcIsolation",
            "web",
            "Stalled",
            "True",
            Some("AmbiguousDevice"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains(DEVICE) && msg.contains("9f9f9f9f"), "{msg}");
    assert!(actions(&env).await.is_empty());
}

#[tokio::test]
async fn each_printed_mde_permission_is_needed() {
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_containment-operator"))
        .args(["permissions", "--kinds", "ArcIsolation"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&printed.stdout).unwrap();
    let mde: Vec<String> =
        serde_json::from_value(doc["defenderForEndpointApplicationPermissions"].clone()).unwrap();
    assert_eq!(mde, ["Machine.Isolate", "Machine.Read.All"]);
    for missing in &mde {
        let env = Env::with_world("e2e-arciso-perm", printed_actions(&[]), |w| {
            let p = w
                .principals
                .iter_mut()
                .find(|p| p.client_id == CLIENT_ID)
                .unwrap();
            p.mde_permissions = mde.iter().filter(|m| *m != missing).cloned().collect();
        })
        .await;
        let _op = env.operator();
        env.apply("ArcIsolation", "web", json!({"target": target(ARC)}))
            .await;
        let o = env
            .wait_condition(
                "ArcIsolation",
                "web",
                "Stalled",
                "True",
                Some("AuthorizationFailed"),
            )
            .await;
        let msg = condition(&o, "Stalled").unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(missing.as_str()), "without {missing}: {msg}");
    }
}

/// The Arc machine's two names (`machineFqdn`, `dnsFqdn`) lead to two Active devices: that is
/// ambiguous, whichever name comes first, and nothing is isolated.
#[tokio::test]
async fn two_names_for_two_devices_are_ambiguous() {
    let env = Env::with_world("e2e-arciso-twonames", printed_actions(&[]), |w| {
        let arc = w
            .resources
            .iter_mut()
            .find(|r| r["id"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(ARC)))
            .unwrap();
        arc["properties"]["dnsFqdn"] = json!("arc-web-01-old.corp.contoso.example");
        w.mde.machines.push(json!({"id": "8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e8e", "computerDnsName": "arc-web-01-old.corp.contoso.example", "osPlatform": "Linux", "healthStatus": "Active", "lastSeen": "2026-11-23T09:00:00Z"}));
    })
    .await;
    let _op = env.operator();
    env.apply("ArcIsolation", "web", json!({"target": target(ARC)}))
        .await;
    let o = env
        .wait_condition(
            "ArcIsolation",
            "web",
            "Stalled",
            "True",
            Some("AmbiguousDevice"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains(DEVICE) && msg.contains("8e8e8e8e"), "{msg}");
    assert!(actions(&env).await.is_empty());
}

/// Release unisolates the device recorded when it was isolated, even when the Arc machine's
/// names no longer lead to it (renamed, re-onboarded, MDE record gone from the lookup).
#[tokio::test]
async fn release_unisolates_the_recorded_device_after_a_rename() {
    let env = Env::new("e2e-arciso-renamed").await;
    let _op = env.operator();
    env.apply("ArcIsolation", "web", json!({"target": target(ARC)}))
        .await;
    env.wait_condition("ArcIsolation", "web", "Ready", "True", Some("Contained"))
        .await;
    env.sim
        .patch(
            ARC,
            json!({"properties": {"machineFqdn": "renamed.corp.contoso.example", "dnsFqdn": "renamed.corp.contoso.example"}}),
        )
        .await;
    env.delete("ArcIsolation", "web").await;
    env.wait_gone("ArcIsolation", "web").await;
    let a = actions(&env).await;
    let done: Vec<(&str, &str)> = a
        .iter()
        .map(|a| {
            (
                a["type"].as_str().unwrap(),
                a["machineId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(done, [("Isolate", DEVICE), ("Unisolate", DEVICE)]);
}

/// Selective and Full isolation of one device compose to Full: no back-and-forth, and deleting
/// the Full one leaves the device isolated (Selective) for the one still asking, never
/// unisolated while a containment wants it.
#[tokio::test]
async fn two_isolations_of_one_device_compose_and_the_last_one_unisolates() {
    let env = Env::new("e2e-arciso-compose").await;
    let _op = env.operator();
    let kinds = |a: &[Value]| -> Vec<(String, String)> {
        a.iter()
            .map(|a| {
                (
                    a["type"].as_str().unwrap().to_string(),
                    a["scope"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let pair = |t: &str, s: &str| (t.to_string(), s.to_string());
    env.apply(
        "ArcIsolation",
        "selective",
        json!({"target": target(ARC), "isolationType": "Selective"}),
    )
    .await;
    env.wait_condition(
        "ArcIsolation",
        "selective",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    env.apply(
        "ArcIsolation",
        "full",
        json!({"target": target(ARC), "isolationType": "Full"}),
    )
    .await;
    env.wait_condition("ArcIsolation", "full", "Ready", "True", Some("Contained"))
        .await;
    // Two drift checks of the Selective one: it wants Full now too, so it sends nothing.
    for _ in 0..2 {
        env.wait_verified_again("ArcIsolation", "selective").await;
    }
    assert_eq!(
        kinds(&actions(&env).await),
        [pair("Isolate", "Selective"), pair("Isolate", "Full")]
    );
    let sel = env.get("ArcIsolation", "selective").await.unwrap();
    assert_eq!(
        sel["status"]["driftCount"].as_i64().unwrap_or(0),
        0,
        "{sel}"
    );

    // The Full one goes: the device stays isolated, now as the remaining one asks.
    env.delete("ArcIsolation", "full").await;
    env.wait_gone("ArcIsolation", "full").await;
    env.wait(
        "ArcIsolation",
        "selective",
        "re-planned without the Full one",
        Duration::from_secs(30),
        |o| {
            o.is_some_and(|o| {
                o["status"].get("sharedWith").is_none()
                    && condition(o, "Ready").is_some_and(|c| c["status"] == "True")
            })
        },
    )
    .await;
    let a = kinds(&actions(&env).await);
    assert!(!a.iter().any(|(t, _)| t == "Unisolate"), "{a:?}");
    assert_eq!(a.last(), Some(&pair("Isolate", "Selective")), "{a:?}");

    env.delete("ArcIsolation", "selective").await;
    env.wait_gone("ArcIsolation", "selective").await;
    assert_eq!(
        kinds(&actions(&env).await).last(),
        Some(&pair("Unisolate", "Full"))
    );
}
