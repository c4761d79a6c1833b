//! End to end, the guard (design §6): ContainmentPolicy scope (deny by default), protected
//! assets, blast radius, policy-level suspend. Policies are cluster-scoped and the control
//! plane is shared, so each test names what it protects or limits after its own namespace.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// Requests to Azure proper (not the token endpoint).
async fn azure_calls(env: &Env) -> Vec<Value> {
    env.sim
        .requests()
        .await
        .into_iter()
        .filter(|r| !r["path"].as_str().unwrap_or_default().contains("/oauth2/"))
        .collect()
}

fn message(o: &Value, type_: &str) -> String {
    condition(o, type_).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Deny by default, zero Azure requests; an allowance admits it (re-evaluated when the policy
/// changes, no restart, no wait for a backoff); a revoked allowance stops further writes (drift
/// is no longer corrected) but deleting still releases what was applied.
#[tokio::test]
async fn no_policy_no_azure_call_and_a_revoked_allowance_stops_writes_but_releases() {
    let env = Env::new("e2e-guard-scope").await;
    env.remove_policy().await;
    let _op = env.operator();
    env.apply(
        "SqlIpBlock",
        "b",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    let o = env
        .wait_condition("SqlIpBlock", "b", "Stalled", "True", Some("OutOfScope"))
        .await;
    let m = message(&o, "Stalled");
    assert!(
        m.contains(&format!("namespace {}", env.ns))
            && m.contains("SqlIpBlock")
            && m.contains(SQL_PROD),
        "{m}"
    );
    assert!(o["status"]["policy"].is_null());
    assert_eq!(
        azure_calls(&env).await,
        Vec::<Value>::new(),
        "nothing sent to Azure"
    );

    // Allowed: SqlIpBlock in this subscription only.
    env.policy(json!({"namespaces": {"names": [env.ns]},
        "allow": [{"kinds": ["SqlIpBlock"], "subscriptions": [SUB]}]}))
        .await;
    let o = env.wait_ready("SqlIpBlock", "b").await;
    assert_eq!(o["status"]["policy"], json!(env.ns));
    assert!(
        env.sim
            .firewall_rules(SQL_PROD)
            .await
            .iter()
            .any(|(n, _, _)| n.contains("-cx")),
        "the allow-all rule was split around the address"
    );

    // Revoked: another subscription only. No further writes, even when undone.
    env.policy(json!({"namespaces": {"names": [env.ns]},
        "allow": [{"kinds": ["SqlIpBlock"], "subscriptions": ["00000000-0000-4000-8000-0000000000bb"]}]}))
        .await;
    let o = env
        .wait_condition("SqlIpBlock", "b", "Stalled", "True", Some("OutOfScope"))
        .await;
    assert!(message(&o, "Stalled").contains("not subscription"), "{o}");
    // A spec change while out of scope: nothing more is written.
    let writes = env.sim.writes().await.len();
    env.apply(
        "SqlIpBlock",
        "b",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7", "203.0.113.8"]}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        env.sim.writes().await.len(),
        writes,
        "no write once the allowance is revoked"
    );
    let o = env.get("SqlIpBlock", "b").await.unwrap();
    assert_eq!(
        condition(&o, "Stalled").unwrap()["reason"],
        "OutOfScope",
        "{o}"
    );
    // Deleting still releases what was applied.
    env.delete("SqlIpBlock", "b").await;
    env.wait_gone("SqlIpBlock", "b").await;
    assert!(
        env.sim
            .firewall_rules(SQL_PROD)
            .await
            .iter()
            .all(|(n, _, _)| !n.contains("-cx")),
        "released although out of scope"
    );
}

/// A policy for subscription A, resource group rg-prod and SqlIpBlock does not allow another
/// subscription, resource group, kind or tenant — each refused naming what is missing, with
/// zero Azure requests.
#[tokio::test]
async fn a_policy_allows_its_subscription_resource_group_kind_and_tenant_only() {
    let env = Env::new("e2e-guard-dims").await;
    env.policy(json!({"namespaces": {"names": [env.ns]},
        "allow": [{"kinds": ["SqlIpBlock"], "subscriptions": [SUB], "resourceGroups": ["rg-prod"]}]}))
        .await;
    let _op = env.operator();
    let sql = |sub: &str, rg: &str| json!({"subscriptionId": sub, "resourceGroup": rg, "name": "sql-prod-01"});
    let cases = [
        (
            "other-sub",
            "SqlIpBlock",
            json!({"target": sql("00000000-0000-4000-8000-0000000000bb", "rg-prod"), "ipAddresses": ["203.0.113.7"]}),
            "not subscription",
        ),
        (
            "other-rg",
            "SqlIpBlock",
            json!({"target": sql(SUB, "rg-dev"), "ipAddresses": ["203.0.113.7"]}),
            "not resource group rg-dev",
        ),
        (
            "other-kind",
            "SqlPublicAccessLockdown",
            json!({"target": target(SQL_PROD)}),
            "do not include SqlPublicAccessLockdown",
        ),
        (
            "other-tenant",
            "SqlIpBlock",
            json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"],
            "tenantId": "99999999-0000-4000-8000-000000000009"}),
            "not tenant 99999999",
        ),
    ];
    for (name, kind, spec, _) in &cases {
        env.apply(kind, name, spec.clone()).await;
    }
    for (name, kind, _, why) in &cases {
        let o = env
            .wait_condition(kind, name, "Stalled", "True", Some("OutOfScope"))
            .await;
        assert!(message(&o, "Stalled").contains(why), "{name}: {o}");
    }
    assert_eq!(
        azure_calls(&env).await,
        Vec::<Value>::new(),
        "nothing sent to Azure"
    );
    // The allowed one goes through.
    env.apply(
        "SqlIpBlock",
        "allowed",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    env.wait_ready("SqlIpBlock", "allowed").await;
}

/// `id` tagged `tag=true`: a containment of it is Protected (naming the tag) and only read.
async fn tagged_is_refused(env: &Env, tag: &str, kind: &str, name: &str, id: &str, spec: Value) {
    env.sim.patch(id, json!({"tags": {tag: "true"}})).await;
    env.apply(kind, name, spec).await;
    let o = env
        .wait_condition(kind, name, "Stalled", "True", Some("Protected"))
        .await;
    assert!(message(&o, "Stalled").contains(tag), "{o}");
    assert_eq!(
        env.sim.writes().await,
        vec![],
        "a tagged target is only read"
    );
}

/// Protected resources (by id, from any policy, children included) and targets carrying a
/// policy's protected Azure tag are refused, whatever the namespace's own allowance says.
#[tokio::test]
async fn protected_resources_and_tagged_targets_are_never_contained() {
    let env = Env::new("e2e-guard-protected").await;
    // Unique to this test: protection is global.
    let crown = format!("/subscriptions/{SUB}/resourceGroups/rg-{}", env.ns);
    let tag = format!("protected-{}", env.ns);
    env.named_policy(
        &format!("{}-shield", env.ns),
        json!({"namespaces": {"names": ["nobody"]},
               "protected": {"resourceIds": [crown], "azureTag": tag}}),
    )
    .await;
    let _op = env.operator();
    env.apply(
        "SqlIpBlock",
        "crown",
        json!({"target": {"resourceId": format!("{crown}/providers/Microsoft.Sql/servers/sql-crown")},
               "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    let o = env
        .wait_condition("SqlIpBlock", "crown", "Stalled", "True", Some("Protected"))
        .await;
    assert!(message(&o, "Stalled").contains("-shield"), "{o}");
    assert_eq!(
        azure_calls(&env).await,
        Vec::<Value>::new(),
        "nothing sent to Azure"
    );

    tagged_is_refused(
        &env,
        &tag,
        "WafIpBlock",
        "tagged",
        WAF,
        json!({"target": target(WAF), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    // The same for the kinds that read a SQL server.
    tagged_is_refused(
        &env,
        &tag,
        "SqlPublicAccessLockdown",
        "tagged-sql",
        SQL_LEGACY,
        json!({"target": target(SQL_LEGACY)}),
    )
    .await;
    // The tag removed: contained.
    env.sim
        .patch(WAF, json!({"tags": {tag.clone(): "false"}}))
        .await;
    env.wait(
        "WafIpBlock",
        "tagged",
        "Ready after the tag went",
        Duration::from_secs(30),
        |o| {
            o.and_then(|o| condition(o, "Ready"))
                .is_some_and(|c| c["status"] == "True")
        },
    )
    .await;
}

/// A burst of 200 under `maxActivePerKind: 10`: exactly 10 are admitted and contained, the rest
/// wait as BlastRadiusExceeded with nothing sent for them; when admitted ones go, waiting ones
/// take their place; the denials are counted in the metrics.
#[tokio::test]
async fn the_blast_radius_holds_under_a_burst_and_the_excess_waits() {
    let env = Env::new("e2e-guard-blast").await;
    env.policy(
        json!({"namespaces": {"names": [env.ns]}, "allow": [{"kinds": ["*"]}],
        "limits": {"maxActivePerKind": 10}}),
    )
    .await;
    let op = env.operator();
    let n = 200;
    let env = &env;
    let applies = (0..n).map(|i| async move {
        env.apply(
            "SqlIpBlock",
            &format!("b{i}"),
            json!({"target": target(SQL_PROD), "ipAddresses": [format!("198.51.{}.{}", i / 250, i % 250 + 1)]}),
        )
        .await
    });
    futures::future::join_all(applies).await;
    let api = env.api("SqlIpBlock");
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let (ready, waiting) = loop {
        let list = api.list(&Default::default()).await.unwrap();
        let reason = |o: &kube::api::DynamicObject, t: &str| {
            let v = serde_json::to_value(o).unwrap();
            condition(&v, t)
                .filter(|c| c["status"] == "True")
                .map(|c| c["reason"].as_str().unwrap().to_string())
        };
        let ready = list
            .items
            .iter()
            .filter(|o| reason(o, "Ready").is_some())
            .count();
        let waiting = list
            .items
            .iter()
            .filter(|o| reason(o, "Stalled").as_deref() == Some("BlastRadiusExceeded"))
            .count();
        if ready + waiting == n || std::time::Instant::now() > deadline {
            break (ready, waiting);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        (ready, waiting),
        (10, n - 10),
        "exactly the limit is admitted"
    );
    let rules = env.sim.firewall_rules(SQL_PROD).await;
    let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().map(u32::from).unwrap();
    let allowed = |a: u32| rules.iter().any(|(_, s, e)| ip(s) <= a && a <= ip(e));
    let blocked = (0..n)
        .filter(|i| !allowed(ip(&format!("198.51.0.{}", i % 250 + 1))))
        .count();
    assert_eq!(
        blocked, 10,
        "only the admitted ones were applied: {rules:?}"
    );
    let list = api.list(&Default::default()).await.unwrap();
    let o = list
        .items
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .find(|v| condition(v, "Stalled").is_some_and(|c| c["status"] == "True"))
        .unwrap();
    assert!(message(&o, "Stalled").contains("maxActivePerKind"), "{o}");

    // Two admitted ones go: two waiting ones take their place within the re-check (15 s).
    let list = api.list(&Default::default()).await.unwrap();
    let admitted: Vec<String> = list
        .items
        .iter()
        .filter(|o| {
            let v = serde_json::to_value(o).unwrap();
            condition(&v, "Ready").is_some_and(|c| c["status"] == "True")
        })
        .map(|o| o.metadata.name.clone().unwrap())
        .take(2)
        .collect();
    for a in &admitted {
        env.delete("SqlIpBlock", a).await;
    }
    for a in &admitted {
        env.wait_gone("SqlIpBlock", a).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list = api.list(&Default::default()).await.unwrap();
        let ready = list
            .items
            .iter()
            .filter(|o| {
                let v = serde_json::to_value(o).unwrap();
                condition(&v, "Ready").is_some_and(|c| c["status"] == "True")
            })
            .count();
        assert!(ready <= 10, "over the limit: {ready}");
        if ready == 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no waiting one was admitted ({ready} ready)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let metrics = op.metrics().await;
    assert!(
        metric_sum(
            &metrics,
            r#"containment_guard_denials_total{kind="SqlIpBlock",reason="BlastRadiusExceeded"}"#
        ) >= 1.0,
        "{metrics}"
    );
}

/// `suspend: true` on a policy pauses everything it allows (no Azure call, Reconciling
/// Suspended naming the policy), and resuming it carries on.
#[tokio::test]
async fn a_suspended_policy_pauses_what_it_allows_and_resumes() {
    let env = Env::new("e2e-guard-suspend").await;
    let policy = |suspend: bool| json!({"namespaces": {"names": [env.ns]}, "allow": [{"kinds": ["*"]}], "suspend": suspend});
    env.policy(policy(true)).await;
    let _op = env.operator();
    env.apply(
        "SqlPublicAccessLockdown",
        "s",
        json!({"target": target(SQL_PROD)}),
    )
    .await;
    let o = env
        .wait_condition(
            "SqlPublicAccessLockdown",
            "s",
            "Reconciling",
            "True",
            Some("Suspended"),
        )
        .await;
    assert!(
        message(&o, "Reconciling").contains(&format!("ContainmentPolicy {}", env.ns)),
        "{o}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        azure_calls(&env).await,
        Vec::<Value>::new(),
        "nothing sent while suspended"
    );
    env.policy(policy(false)).await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "s",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
}

async fn patch_status(env: &Env, kind: &str, name: &str, status: Value) {
    env.api(kind)
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
}

/// Whoever can write a containment's status cannot choose what its release does: a
/// `status.restore` the operator did not seal stalls the resource (RestoreRecordTampered) and
/// deleting it releases nothing and keeps the finalizer; the record put back as the operator
/// wrote it, the release goes through. A record copied from another resource does not verify
/// either (the seal is bound to the object).
#[tokio::test]
async fn an_edited_restore_record_releases_nothing_and_stalls() {
    let env = Env::new("e2e-guard-tamper").await;
    let _op = env.operator();
    env.apply(
        "SqlIpBlock",
        "t",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    let o = env.wait_ready("SqlIpBlock", "t").await;
    assert!(o["status"]["recordSeal"].is_string(), "{o}");
    assert!(o["status"]["restore"].is_object(), "{o}");
    // A forged record: release would re-create an allow-all rule.
    patch_status(
        &env,
        "SqlIpBlock",
        "t",
        json!({"restore": {"forged": {"name": "AllowEveryone",
        "startIpAddress": "0.0.0.0", "endIpAddress": "255.255.255.255"}}}),
    )
    .await;
    env.reconcile_now("SqlIpBlock", "t", "1").await;
    let o = env
        .wait_condition(
            "SqlIpBlock",
            "t",
            "Stalled",
            "True",
            Some("RestoreRecordTampered"),
        )
        .await;
    assert!(
        message(&o, "Stalled").contains("not written by the operator"),
        "{o}"
    );
    let writes = env.sim.writes().await.len();
    env.delete("SqlIpBlock", "t").await;
    env.wait(
        "SqlIpBlock",
        "t",
        "the deletion held",
        Duration::from_secs(30),
        |o| {
            o.and_then(|o| condition(o, "Stalled"))
                .and_then(|c| c["message"].as_str())
                .is_some_and(|m| m.contains("deletion waits"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        env.get("SqlIpBlock", "t").await.is_some(),
        "the finalizer is kept"
    );
    assert_eq!(
        env.sim.writes().await.len(),
        writes,
        "nothing released from a forged record"
    );
    assert!(
        env.sim
            .firewall_rules(SQL_PROD)
            .await
            .iter()
            .all(|(n, _, _)| n != "AllowEveryone"),
    );
    // Put back as the operator wrote it: released.
    patch_status(
        &env,
        "SqlIpBlock",
        "t",
        json!({"restore": {"forged": null}}),
    )
    .await;
    env.reconcile_now("SqlIpBlock", "t", "2").await;
    env.wait_gone("SqlIpBlock", "t").await;
    assert!(
        env.sim
            .firewall_rules(SQL_PROD)
            .await
            .iter()
            .all(|(n, _, _)| !n.contains("-cx")),
        "released once the record was the operator's again"
    );

    // A sealed record copied onto another resource does not verify there.
    env.apply(
        "SqlIpBlock",
        "a",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    let a = env.wait_ready("SqlIpBlock", "a").await;
    env.apply(
        "SqlIpBlock",
        "b",
        json!({"target": target(SQL_LEGACY), "ipAddresses": ["203.0.113.9"]}),
    )
    .await;
    env.wait_ready("SqlIpBlock", "b").await;
    patch_status(
        &env,
        "SqlIpBlock",
        "b",
        json!({"restore": a["status"]["restore"],
        "recordSeal": a["status"]["recordSeal"]}),
    )
    .await;
    env.reconcile_now("SqlIpBlock", "b", "1").await;
    env.wait_condition(
        "SqlIpBlock",
        "b",
        "Stalled",
        "True",
        Some("RestoreRecordTampered"),
    )
    .await;
}

const TENANT_B: &str = "72f988bf-0000-4000-8000-0000000000b2";
const SUB_B: &str = "00000000-0000-4000-8000-0000000000b2";
const OID_B: &str = "11111111-0000-4000-8000-0000000000b2";

/// An MSSP's operator: one multi-tenant application, a service principal in each customer
/// tenant. Two tenants contained side by side, each with its own tenant's token (the simulator,
/// like ARM, refuses a token from the wrong tenant); a tenant the operator was not given is
/// Stalled/TenantNotConfigured with nothing sent; a policy without the tenant refuses it.
#[tokio::test]
async fn two_tenants_side_by_side_with_their_own_tokens() {
    let env = Env::with_world("e2e-guard-tenants", printed_actions(&[]), |w| {
        w.tenants.push(azure_sim::world::Tenant {
            id: TENANT_B.into(),
            domain: Some("fabrikam.example".into()),
        });
        w.subscriptions.push(azure_sim::world::Subscription {
            id: SUB_B.into(),
            tenant_id: TENANT_B.into(),
        });
        let mut p = w
            .principals
            .iter()
            .find(|p| p.client_id == CLIENT_ID)
            .unwrap()
            .clone();
        p.name = "containment-operator-fabrikam".into();
        p.tenant_id = TENANT_B.into();
        p.object_id = OID_B.into();
        for r in &mut p.role_assignments {
            r.scope = r.scope.replace(SUB, SUB_B);
        }
        w.principals.push(p);
        let mut server = w
            .resources
            .iter()
            .find(|r| r["id"] == SQL_PROD)
            .unwrap()
            .clone();
        server["id"] = json!(SQL_PROD.replace(SUB, SUB_B));
        w.resources.push(server);
    })
    .await;
    let sql_b = SQL_PROD.replace(SUB, SUB_B);
    // Only the operator's own tenant at first.
    env.policy(json!({"namespaces": {"names": [env.ns]}, "allow": [{"kinds": ["*"]}]}))
        .await;
    let _op = Operator::start(&env, &["--additional-tenants", TENANT_B]);
    env.apply(
        "SqlPublicAccessLockdown",
        "b",
        json!({"target": target(&sql_b), "tenantId": TENANT_B}),
    )
    .await;
    let o = env
        .wait_condition(
            "SqlPublicAccessLockdown",
            "b",
            "Stalled",
            "True",
            Some("OutOfScope"),
        )
        .await;
    assert!(
        message(&o, "Stalled").contains(&format!("not tenant {TENANT_B}")),
        "{o}"
    );
    env.policy(json!({"namespaces": {"names": [env.ns]},
        "allow": [{"kinds": ["*"], "tenants": [TENANT, TENANT_B]}, {"kinds": ["*"], "tenants": ["*"], "subscriptions": ["00000000-0000-4000-8000-0000000000cc"]}]}))
        .await;
    env.apply(
        "SqlPublicAccessLockdown",
        "a",
        json!({"target": target(SQL_PROD)}),
    )
    .await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "b",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "a",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    assert_eq!(
        env.sim.resource(&sql_b).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
    let calls = azure_calls(&env).await;
    let by = |sub: &str| -> Vec<String> {
        calls
            .iter()
            .filter(|r| r["path"].as_str().unwrap().contains(sub))
            .map(|r| r["principal"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let (a, b) = (by(SUB), by(SUB_B));
    assert!(
        !b.is_empty() && b.iter().all(|p| p == OID_B),
        "tenant B's calls used tenant B's principal: {b:?}"
    );
    assert!(
        !a.is_empty() && a.iter().all(|p| p != OID_B),
        "the default tenant's calls did not: {a:?}"
    );

    // A tenant the operator was not given (though a policy allows it): nothing sent.
    let before = azure_calls(&env).await.len();
    env.apply(
        "SqlPublicAccessLockdown",
        "c",
        json!({"target": {"resourceId":
        SQL_PROD.replace(SUB, "00000000-0000-4000-8000-0000000000cc")},
        "tenantId": "72f988bf-0000-4000-8000-0000000000c3"}),
    )
    .await;
    let o = env
        .wait_condition(
            "SqlPublicAccessLockdown",
            "c",
            "Stalled",
            "True",
            Some("TenantNotConfigured"),
        )
        .await;
    assert!(
        message(&o, "Stalled").contains("--additional-tenants"),
        "{o}"
    );
    assert_eq!(
        azure_calls(&env).await.len(),
        before,
        "nothing sent for an unknown tenant"
    );
    // Release in the other tenant uses its token too.
    env.delete("SqlPublicAccessLockdown", "b").await;
    env.wait_gone("SqlPublicAccessLockdown", "b").await;
    assert_ne!(
        env.sim.resource(&sql_b).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
}
