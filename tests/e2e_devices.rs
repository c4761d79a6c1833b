//! End to end, the Defender for Endpoint device kinds: ArcIsolation (an Arc server's device),
//! DeviceIsolation and DeviceCodeRestriction, on the one machine-action mechanism.

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
    assert_eq!(settled_state(&env, DEVICE).await["isolated"], false);
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

/// Least privilege for the device kinds: exactly the printed Defender for Endpoint permissions
/// suffice, and without any one of them the resource is Stalled AuthorizationFailed naming it.
#[tokio::test]
async fn exactly_the_printed_mde_permissions_suffice_and_each_is_needed() {
    let cases = [
        (
            "ArcIsolation",
            json!({"target": target(ARC)}),
            &["Machine.Isolate", "Machine.Read.All"],
        ),
        (
            "DeviceIsolation",
            json!({"target": {"computerDnsName": WS_NAME}}),
            &["Machine.Isolate", "Machine.Read.All"],
        ),
        (
            "DeviceCodeRestriction",
            json!({"target": {"deviceId": WS_DEVICE}}),
            &["Machine.Read.All", "Machine.RestrictExecution"],
        ),
    ];
    for (kind, spec, expected) in cases {
        let printed = std::process::Command::new(env!("CARGO_BIN_EXE_containment-operator"))
            .args(["permissions", "--kinds", kind])
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&printed.stdout).unwrap();
        let mde: Vec<String> =
            serde_json::from_value(doc["defenderForEndpointApplicationPermissions"].clone())
                .unwrap();
        assert_eq!(mde, expected, "{kind}");
        let with = |perms: Vec<String>| {
            move |w: &mut azure_sim::world::World| {
                let p = w
                    .principals
                    .iter_mut()
                    .find(|p| p.client_id == CLIENT_ID)
                    .unwrap();
                p.mde_permissions = perms;
            }
        };
        let env = Env::with_world(
            "e2e-mde-perm-ok",
            printed_actions(&[kind]),
            with(mde.clone()),
        )
        .await;
        let _op = env.operator();
        env.apply(kind, "x", spec.clone()).await;
        env.wait_ready(kind, "x").await;
        drop(_op);
        for missing in &mde {
            let rest = mde.iter().filter(|m| *m != missing).cloned().collect();
            let env = Env::with_world("e2e-mde-perm", printed_actions(&[kind]), with(rest)).await;
            let _op = env.operator();
            env.apply(kind, "x", spec.clone()).await;
            let o = env
                .wait_condition(kind, "x", "Stalled", "True", Some("AuthorizationFailed"))
                .await;
            let msg = condition(&o, "Stalled").unwrap()["message"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                msg.contains(missing.as_str()),
                "{kind} without {missing}: {msg}"
            );
        }
    }
}

/// The device's real state, once its last action has been carried out (release returns when
/// Defender for Endpoint accepted the unisolate, which the device then applies).
async fn settled_state(env: &Env, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while actions(env)
        .await
        .iter()
        .any(|a| a["machineId"] == id && a["status"] != "Succeeded")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "actions still running on {id}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    device_state(env, id).await
}

async fn device_state(env: &Env, id: &str) -> Value {
    env.sim
        .admin(
            reqwest::Method::GET,
            &format!("/_sim/mde/machines/{id}"),
            None,
        )
        .await
}

async fn admin_action(env: &Env, verb: &str) {
    env.sim
        .as_operator(
            reqwest::Method::POST,
            &format!("/api/machines/{WS_DEVICE}/{verb}"),
            MDE_SCOPE,
            Some(json!({"Comment": "admin"})),
        )
        .await;
}

fn types(a: &[Value]) -> Vec<String> {
    a.iter()
        .map(|a| a["type"].as_str().unwrap().to_string())
        .collect()
}

/// DeviceIsolation by DNS name: isolated as asked (Selective), the device and its name in
/// status, an unisolate behind the operator's back corrected, unisolated on release.
#[tokio::test]
async fn device_isolation_isolates_by_name_corrects_drift_and_unisolates_on_release() {
    let env = Env::new("e2e-deviso").await;
    let op = env.operator();
    let t = env
        .apply(
            "DeviceIsolation",
            "ws",
            json!({"target": {"computerDnsName": WS_NAME}, "isolationType": "Selective", "reason": "INC-81 credential theft"}),
        )
        .await;
    let o = env
        .wait_condition("DeviceIsolation", "ws", "Ready", "True", Some("Contained"))
        .await;
    eprintln!(
        "apply→Ready DeviceIsolation (MDE action Pending→InProgress→Succeeded, 2×500 ms): {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(o["status"]["deviceId"], WS_DEVICE);
    assert_eq!(o["status"]["computerDnsName"], WS_NAME);
    assert_eq!(o["status"]["isolationState"], "Isolated");
    assert_eq!(o["status"]["target"], format!("device/{WS_NAME}"));
    assert_eq!(o["status"]["targetName"], WS_NAME);
    assert_eq!(
        device_state(&env, WS_DEVICE).await,
        json!({"isolated": true, "isolationScope": "Selective", "codeExecutionRestricted": false})
    );
    let a = actions(&env).await;
    assert_eq!(types(&a), ["Isolate"]);
    assert!(
        a[0]["requestorComment"]
            .as_str()
            .unwrap()
            .contains("INC-81")
    );

    admin_action(&env, "unisolate").await;
    env.wait(
        "DeviceIsolation",
        "ws",
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
    assert_eq!(
        types(&actions(&env).await),
        ["Isolate", "Unisolate", "Isolate"]
    );
    assert_eq!(device_state(&env, WS_DEVICE).await["isolated"], true);

    env.delete("DeviceIsolation", "ws").await;
    env.wait_gone("DeviceIsolation", "ws").await;
    assert_eq!(
        types(&actions(&env).await),
        ["Isolate", "Unisolate", "Isolate", "Unisolate"]
    );
    assert_eq!(settled_state(&env, WS_DEVICE).await["isolated"], false);
    assert!(
        env.sim.requests().await.iter().all(|r| r["status"] != 400),
        "an action was sent while another was pending"
    );
    // Defender for Endpoint calls are labelled by API, ids left out (not `POST `).
    let m = op.metrics().await;
    let calls = |op: &str| requests_of(&m, op, "201");
    assert_eq!(calls("POST mde machines/isolate"), 2.0, "{m}");
    assert_eq!(calls("POST mde machines/unisolate"), 1.0, "{m}");
    assert!(requests_of(&m, "GET mde machines", "2") > 0.0, "{m}");
    assert!(
        !m.contains(r#"operation="POST ""#) && !m.contains(r#"operation="GET ""#),
        "{m}"
    );
}

/// DeviceCodeRestriction by device id: restricted, re-restricted after an admin lifts it, lifted
/// on release; an isolation of the same device neither holds it up nor is touched by it.
#[tokio::test]
async fn code_restriction_restricts_by_id_corrects_drift_and_lifts_on_release() {
    let env = Env::new("e2e-devcr").await;
    let _op = env.operator();
    let t = env
        .apply(
            "DeviceCodeRestriction",
            "ws",
            json!({"target": {"deviceId": WS_DEVICE}}),
        )
        .await;
    let o = env
        .wait_condition(
            "DeviceCodeRestriction",
            "ws",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready DeviceCodeRestriction (MDE action Pending→InProgress→Succeeded, 2×500 ms): {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(o["status"]["restrictionState"], "Restricted");
    assert_eq!(o["status"]["computerDnsName"], WS_NAME);
    assert_eq!(
        device_state(&env, WS_DEVICE).await["codeExecutionRestricted"],
        true
    );

    admin_action(&env, "unrestrictCodeExecution").await;
    admin_action(&env, "isolate").await;
    env.wait(
        "DeviceCodeRestriction",
        "ws",
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
    env.delete("DeviceCodeRestriction", "ws").await;
    env.wait_gone("DeviceCodeRestriction", "ws").await;
    assert_eq!(
        types(&actions(&env).await),
        [
            "RestrictCodeExecution",
            "UnrestrictCodeExecution",
            "Isolate",
            "RestrictCodeExecution",
            "UnrestrictCodeExecution"
        ]
    );
    assert_eq!(
        settled_state(&env, WS_DEVICE).await,
        json!({"isolated": true, "isolationScope": "Full", "codeExecutionRestricted": false}),
        "release lifts the restriction only"
    );
}

/// The documented incident (azure-api-facts §3.23): an isolate that stays Pending on an offline
/// device and finishes after a later unisolate leaves the device isolated. The containment is
/// deleted while its isolate is Pending: release waits for it, then unisolates, and the device
/// really ends unisolated (azure-sim carries queued actions out newest first).
#[tokio::test]
async fn a_pending_isolate_racing_the_release_never_leaves_the_device_isolated() {
    let env = Env::new("e2e-deviso-race").await;
    env.sim
        .settings(json!({"mdeOfflineDevices": [WS_DEVICE]}))
        .await;
    let _op = env.operator();
    env.apply(
        "DeviceIsolation",
        "ws",
        json!({"target": {"deviceId": WS_DEVICE}}),
    )
    .await;
    env.wait_condition(
        "DeviceIsolation",
        "ws",
        "Reconciling",
        "True",
        Some("AwaitingMachineAction"),
    )
    .await;
    env.delete("DeviceIsolation", "ws").await;
    // The device stays offline a while: the release waits, and sends nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        env.get("DeviceIsolation", "ws").await.is_some(),
        "released while the isolate was pending"
    );
    assert_eq!(types(&actions(&env).await), ["Isolate"]);
    env.sim.settings(json!({"mdeOfflineDevices": []})).await;
    env.wait_gone("DeviceIsolation", "ws").await;
    assert_eq!(types(&actions(&env).await), ["Isolate", "Unisolate"]);
    assert_eq!(settled_state(&env, WS_DEVICE).await["isolated"], false);
}

/// A device a policy protects is refused under every name it goes by: protected by DNS name,
/// asked for by id, Stalled Protected and nothing sent.
#[tokio::test]
async fn a_protected_device_is_refused_by_id_and_by_name() {
    // Protection is global: a device of this test's own.
    let id = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
    let name = "dc-01.corp.contoso.example";
    let env = Env::with_world("e2e-deviso-protected", printed_actions(&[]), |w| {
        w.mde.machines.push(json!({"id": id, "computerDnsName": name, "osPlatform": "WindowsServer2022", "healthStatus": "Active", "lastSeen": "2026-11-23T09:00:00Z"}));
    })
    .await;
    env.named_policy(
        &format!("{}-shield", env.ns),
        json!({"namespaces": {"names": ["nobody"]}, "protected": {"devices": [name.to_uppercase()]}}),
    )
    .await;
    let _op = env.operator();
    env.apply("DeviceIsolation", "dc", json!({"target": {"deviceId": id}}))
        .await;
    env.apply(
        "DeviceCodeRestriction",
        "dc",
        json!({"target": {"computerDnsName": name}}),
    )
    .await;
    for kind in ["DeviceIsolation", "DeviceCodeRestriction"] {
        let o = env
            .wait_condition(kind, "dc", "Stalled", "True", Some("Protected"))
            .await;
        let msg = condition(&o, "Stalled").unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("protected.devices"), "{kind}: {msg}");
    }
    assert!(actions(&env).await.is_empty());
    let _ = env
        .policies()
        .delete(&format!("{}-shield", env.ns), &Default::default())
        .await;
}

#[tokio::test]
async fn invalid_device_specs_are_rejected_naming_the_field() {
    let env = Env::new("e2e-device-admission").await;
    let cases = [
        (
            "DeviceIsolation",
            json!({"target": {"deviceId": "not-a-device"}}),
            "spec.target.deviceId",
        ),
        (
            "DeviceIsolation",
            json!({"target": {}}),
            "spec.target: set exactly one of deviceId and computerDnsName",
        ),
        (
            "DeviceIsolation",
            json!({"target": {"deviceId": WS_DEVICE, "computerDnsName": WS_NAME}}),
            "spec.target: set exactly one",
        ),
        (
            "DeviceIsolation",
            json!({"target": {"deviceId": WS_DEVICE}, "isolationType": "Partial"}),
            "spec.isolationType",
        ),
        (
            "DeviceCodeRestriction",
            json!({"target": {"computerDnsName": "ws 07/../x"}}),
            "spec.target.computerDnsName",
        ),
        (
            "DeviceCodeRestriction",
            json!({"target": {"deviceId": WS_DEVICE}, "tenantId": "contoso"}),
            "spec.tenantId",
        ),
    ];
    for (i, (kind, spec, field)) in cases.into_iter().enumerate() {
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": kind,
            "metadata": {"name": format!("bad-{i}")}, "spec": spec
        }))
        .unwrap();
        let err = env
            .api(kind)
            .create(&kube::api::PostParams::default(), &obj)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(field),
            "{kind} {spec}: {err}",
            spec = obj.data["spec"]
        );
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

async fn indicators(env: &Env) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/api/indicators?$top=10000".to_string();
    loop {
        let page = env
            .sim
            .as_operator(reqwest::Method::GET, &path, MDE_SCOPE, None)
            .await;
        out.extend(page["value"].as_array().cloned().unwrap_or_default());
        match page["@odata.nextLink"].as_str() {
            Some(next) => path = next.trim_start_matches(env.sim.url.as_str()).to_string(),
            None => return out,
        }
    }
}

fn imports(writes: &[(String, String)]) -> usize {
    writes
        .iter()
        .filter(|(m, p)| m == "POST" && p == "/api/indicators/import")
        .count()
}

/// 120 ThreatIndicators applied at once reach MDE in a few `import` batches, each exactly as
/// asked with an expiry; one deleted behind the operator's back comes back; release deletes
/// each, and nothing else.
#[tokio::test]
async fn many_threat_indicators_are_imported_in_batches_and_deleted_on_release() {
    // Release deletes one by one (MDE documents no batch delete), 100 calls/min: let this test's
    // tenant allow more, keeping the import limit (30/min) as it is.
    let env = Env::with_world("e2e-tind", printed_actions(&[]), |w| {
        w.mde.calls_per_minute = 2000
    })
    .await;
    // Someone else's indicator on the tenant: never touched.
    env.sim
        .as_operator(
            reqwest::Method::POST,
            "/api/indicators",
            MDE_SCOPE,
            Some(json!({"indicatorValue": "198.51.100.250", "indicatorType": "IpAddress", "action": "Audit", "title": "analyst", "description": "kept", "generateAlert": true})),
        )
        .await;
    let _op = env.operator();
    let n = 120;
    let ip = |i: usize| format!("203.0.{}.{}", 100 + i / 250, 1 + i % 250);
    let t = std::time::Instant::now();
    // Applied as a pipeline would (kubectl apply -f dir/): many at once.
    let names: Vec<String> = (0..n).map(|i| format!("ip-{i:03}")).collect();
    for chunk in (0..n).collect::<Vec<_>>().chunks(30) {
        futures::future::join_all(chunk.iter().map(|i| {
            env.apply(
                "ThreatIndicator",
                &names[*i],
                json!({"indicatorType": "IpAddress", "value": ip(*i), "reason": "INC-95 C2 addresses"}),
            )
        }))
        .await;
    }
    for i in 0..n {
        env.wait_ready("ThreatIndicator", &format!("ip-{i:03}"))
            .await;
    }
    let took = t.elapsed();
    eprintln!("apply→Ready {n} ThreatIndicators: {} ms", took.as_millis());
    // The import wakes the resources it carried: none waits out its hold.
    assert!(
        took < containment_operator::controls::coalesce::MAX_HOLD,
        "{took:?}: resources imported by a peer waited out their hold"
    );
    let writes = env.sim.successful_writes().await;
    assert!(
        imports(&writes) <= 3,
        "{} imports for {n}",
        imports(&writes)
    );
    let all = indicators(&env).await;
    assert_eq!(all.len(), n + 1);
    for i in 0..n {
        let found: Vec<&Value> = all
            .iter()
            .filter(|x| x["indicatorValue"] == ip(i).as_str())
            .collect();
        assert_eq!(found.len(), 1, "{}", ip(i));
        let x = found[0];
        assert_eq!(
            (
                x["action"].as_str(),
                x["severity"].as_str(),
                x["indicatorType"].as_str()
            ),
            (Some("Block"), Some("High"), Some("IpAddress"))
        );
        assert_eq!(x["description"], "INC-95 C2 addresses");
        assert!(x["expirationTime"].is_string(), "{x}");
    }
    let o = env.get("ThreatIndicator", "ip-007").await.unwrap();
    let id = o["status"]["indicatorId"].as_str().unwrap().to_string();
    assert_eq!(
        all.iter()
            .find(|x| x["indicatorValue"] == ip(7).as_str())
            .unwrap()["id"],
        id.as_str()
    );

    // Drift: deleted behind the operator's back, imported again.
    env.sim
        .as_operator(
            reqwest::Method::DELETE,
            &format!("/api/indicators/{id}"),
            MDE_SCOPE,
            None,
        )
        .await;
    env.wait(
        "ThreatIndicator",
        "ip-007",
        "drift corrected",
        Duration::from_secs(30),
        |o| o.is_some_and(|o| o["status"]["driftCount"] == 1),
    )
    .await;
    assert!(
        indicators(&env)
            .await
            .iter()
            .any(|x| x["indicatorValue"] == ip(7).as_str())
    );

    for i in 0..n {
        env.delete("ThreatIndicator", &format!("ip-{i:03}")).await;
    }
    for i in 0..n {
        env.wait_gone("ThreatIndicator", &format!("ip-{i:03}"))
            .await;
    }
    let left = indicators(&env).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["indicatorValue"], "198.51.100.250");
    let calls = env.sim.requests().await;
    let per_min = calls
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/api/indicators"))
        })
        .count();
    eprintln!(
        "{n} ThreatIndicators: {} imports, {per_min} indicator API calls in all",
        imports(&env.sim.successful_writes().await)
    );
    assert!(
        calls.iter().all(|r| r["status"] != 429),
        "a rate limit was hit"
    );
}

/// The same indicator wanted two ways: the later resource is Stalled ConflictsWith naming the
/// earlier; the tenant's indicator limit is reported as such.
#[tokio::test]
async fn conflicting_indicators_and_the_tenant_limit_stall_with_their_reason() {
    let env = Env::with_world("e2e-tind-limit", printed_actions(&[]), |w| {
        w.mde.indicator_limit = 2
    })
    .await;
    let _op = env.operator();
    env.apply(
        "ThreatIndicator",
        "a",
        json!({"indicatorType": "DomainName", "value": "evil.example"}),
    )
    .await;
    env.wait_ready("ThreatIndicator", "a").await;
    env.apply(
        "ThreatIndicator",
        "b",
        json!({"indicatorType": "DomainName", "value": "EVIL.example", "action": "Allowed"}),
    )
    .await;
    let o = env
        .wait_condition(
            "ThreatIndicator",
            "b",
            "Stalled",
            "True",
            Some("ConflictsWith"),
        )
        .await;
    assert!(
        condition(&o, "Stalled").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("/a "),
        "{o}"
    );
    env.apply(
        "ThreatIndicator",
        "c",
        json!({"indicatorType": "FileSha256", "value": "a".repeat(64)}),
    )
    .await;
    env.wait_ready("ThreatIndicator", "c").await;
    env.apply(
        "ThreatIndicator",
        "d",
        json!({"indicatorType": "Url", "value": "https://evil.example/payload"}),
    )
    .await;
    let o = env
        .wait_condition(
            "ThreatIndicator",
            "d",
            "Stalled",
            "True",
            Some("IndicatorLimitReached"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("https://evil.example/payload") && msg.contains("Maximum number"),
        "{msg}"
    );
    assert_eq!(indicators(&env).await.len(), 2);
}
