//! End to end, the Entra ID kinds (Microsoft Graph): ConsentLockdown.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
const LEGACY: &str = "ManagePermissionGrantsForSelf.microsoft-user-default-legacy";
const TEAM_OWNERS: &str =
    "ManagePermissionGrantsForOwnedResource.microsoft-dynamically-managed-permissions-for-team";
const LOW: &str = "ManagePermissionGrantsForSelf.microsoft-user-default-low";

async fn consent(env: &Env) -> Value {
    env.sim
        .as_operator(
            reqwest::Method::GET,
            "/v1.0/policies/authorizationPolicy",
            GRAPH_SCOPE,
            None,
        )
        .await["defaultUserRolePermissions"]["permissionGrantPoliciesAssigned"]
        .clone()
}

async fn set_consent(env: &Env, list: Value) {
    env.sim
        .as_operator(
            reqwest::Method::PATCH,
            "/v1.0/policies/authorizationPolicy",
            GRAPH_SCOPE,
            Some(json!({"defaultUserRolePermissions": {"permissionGrantPoliciesAssigned": list}})),
        )
        .await;
}

/// Self-consent off with the team-owner entry kept; an admin turning it back on is corrected;
/// release puts the list back exactly as it was.
#[tokio::test]
async fn consent_lockdown_keeps_other_entries_corrects_drift_and_restores_exactly() {
    let env = Env::new("e2e-cnsl").await;
    let _op = env.operator();
    let t = env
        .apply(
            "ConsentLockdown",
            "tenant",
            json!({"reason": "INC-90 illicit consent grant"}),
        )
        .await;
    let o = env
        .wait_condition(
            "ConsentLockdown",
            "tenant",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready ConsentLockdown: {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(consent(&env).await, json!([TEAM_OWNERS]));
    assert_eq!(
        o["status"]["permissionGrantPoliciesAssigned"],
        json!([TEAM_OWNERS])
    );
    assert_eq!(env.sim.successful_writes().await.len(), 1);

    set_consent(&env, json!([TEAM_OWNERS, LEGACY])).await;
    env.wait(
        "ConsentLockdown",
        "tenant",
        "drift corrected",
        Duration::from_secs(30),
        |o| o.is_some_and(|o| o["status"]["driftCount"] == 1),
    )
    .await;
    assert_eq!(consent(&env).await, json!([TEAM_OWNERS]));

    env.delete("ConsentLockdown", "tenant").await;
    env.wait_gone("ConsentLockdown", "tenant").await;
    assert_eq!(consent(&env).await, json!([LEGACY, TEAM_OWNERS]));
}

/// Low-risk consent only, sent in Microsoft's documented lower-case spelling is accepted as
/// compliant in the service's casing; a second lockdown wanting none composes to none, and the
/// last one to go restores.
#[tokio::test]
async fn low_risk_and_none_compose_to_none_and_the_last_one_restores() {
    let env = Env::new("e2e-cnsl-compose").await;
    let _op = env.operator();
    env.apply(
        "ConsentLockdown",
        "low",
        json!({"userConsent": "LowRiskOnly"}),
    )
    .await;
    env.wait_ready("ConsentLockdown", "low").await;
    assert_eq!(consent(&env).await, json!([TEAM_OWNERS, LOW]));
    env.apply(
        "ConsentLockdown",
        "none",
        json!({"userConsent": "Disabled"}),
    )
    .await;
    env.wait_ready("ConsentLockdown", "none").await;
    env.wait_verified_again("ConsentLockdown", "low").await;
    assert_eq!(consent(&env).await, json!([TEAM_OWNERS]));
    env.delete("ConsentLockdown", "none").await;
    env.wait_gone("ConsentLockdown", "none").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while consent(&env).await != json!([TEAM_OWNERS, LOW]) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            consent(&env).await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    env.delete("ConsentLockdown", "low").await;
    env.wait_gone("ConsentLockdown", "low").await;
    assert_eq!(consent(&env).await, json!([LEGACY, TEAM_OWNERS]));
}

/// Least privilege: exactly the printed Graph permission suffices, and without it the resource
/// is Stalled AuthorizationFailed naming it.
#[tokio::test]
async fn exactly_the_printed_graph_permissions_suffice_and_each_is_needed() {
    for (kind, spec) in [("ConsentLockdown", json!({}))] {
        let printed = std::process::Command::new(env!("CARGO_BIN_EXE_containment-operator"))
            .args(["permissions", "--kinds", kind])
            .output()
            .unwrap();
        let doc: Value = serde_json::from_slice(&printed.stdout).unwrap();
        let graph: Vec<String> =
            serde_json::from_value(doc["graphApplicationPermissions"].clone()).unwrap();
        assert!(!graph.is_empty(), "{kind}");
        let with = |perms: Vec<String>| {
            move |w: &mut azure_sim::world::World| {
                let p = w
                    .principals
                    .iter_mut()
                    .find(|p| p.client_id == CLIENT_ID)
                    .unwrap();
                p.graph_permissions = perms;
                p.mde_permissions.clear();
            }
        };
        let env = Env::with_world(
            "e2e-graph-perm-ok",
            printed_actions(&[kind]),
            with(graph.clone()),
        )
        .await;
        let _op = env.operator();
        env.apply(kind, "x", spec.clone()).await;
        env.wait_ready(kind, "x").await;
        drop(_op);
        for missing in &graph {
            let rest = graph.iter().filter(|m| *m != missing).cloned().collect();
            let env = Env::with_world("e2e-graph-perm", printed_actions(&[kind]), with(rest)).await;
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

#[tokio::test]
async fn invalid_identity_specs_are_rejected_naming_the_field() {
    let env = Env::new("e2e-identity-admission").await;
    let cases = [
        (
            "ConsentLockdown",
            json!({"userConsent": "Everyone"}),
            "spec.userConsent",
        ),
        (
            "ConsentLockdown",
            json!({"tenantId": "contoso"}),
            "spec.tenantId",
        ),
        ("ConsentLockdown", json!({"mode": "Sometimes"}), "spec.mode"),
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
