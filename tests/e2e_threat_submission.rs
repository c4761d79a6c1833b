//! End to end, ThreatSubmission through Graph beta.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};
use support::*;

async fn posts(env: &Env, coll: &str) -> usize {
    env.sim
        .requests()
        .await
        .iter()
        .filter(|r| {
            r["method"] == "POST"
                && r["path"] == format!("/beta/security/threatSubmission/{coll}").as_str()
                && r["status"] == 201
        })
        .count()
}

#[tokio::test]
async fn url_submission_once_per_trigger_with_verdict() {
    let env = Env::new("e2e-tsub").await;
    let _op = env.operator();
    let spec = |trigger: &str| json!({"submissionType": "Url", "category": "phishing", "url": "https://login.contoso-security.example/reset", "trigger": trigger});
    let t = env.apply("ThreatSubmission", "phish", spec("INC-1")).await;
    let o = env
        .wait_condition(
            "ThreatSubmission",
            "phish",
            "Ready",
            "True",
            Some("Completed"),
        )
        .await;
    eprintln!(
        "apply→Ready ThreatSubmission (notStarted→running→succeeded, 2×300 ms): {} ms",
        t.elapsed().as_millis()
    );
    assert_eq!(o["status"]["submissionStatus"], "succeeded");
    assert_eq!(o["status"]["verdict"], "phishing");
    assert!(o["status"]["submissionId"].is_string());
    assert_eq!(
        o["status"]["target"],
        "url:https://login.contoso-security.example/reset"
    );
    assert_eq!(posts(&env, "urlThreats").await, 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        posts(&env, "urlThreats").await,
        1,
        "never resubmitted for the same trigger"
    );
    env.apply("ThreatSubmission", "phish", spec("INC-2")).await;
    env.wait(
        "ThreatSubmission",
        "phish",
        "second run",
        Duration::from_secs(20),
        |o| {
            o.is_some_and(|o| {
                o["status"]["action"]["runId"] == "trigger:INC-2"
                    && o["status"]["action"]["phase"] == "Completed"
            })
        },
    )
    .await;
    assert_eq!(posts(&env, "urlThreats").await, 2);
}

/// A new run starts clean: when the re-triggered run's first POST fails (a 504 gateway timeout,
/// whose effect is unknown), the next attempt must not pick up the previous run's submission and
/// verdict as its own; once the wait for evidence runs out it submits again, exactly once.
#[tokio::test]
async fn a_retriggered_run_never_reports_the_previous_verdict() {
    let env = Env::new("e2e-tsub-rerun").await;
    let _op = Operator::start(&env, &["--unconfirmed-action-wait", "2s"]);
    let spec = |trigger: &str| json!({"submissionType": "Url", "category": "phishing", "url": "https://login.contoso-security.example/reset", "trigger": trigger});
    env.apply("ThreatSubmission", "rerun", spec("INC-1")).await;
    let first = env
        .wait_condition(
            "ThreatSubmission",
            "rerun",
            "Ready",
            "True",
            Some("Completed"),
        )
        .await;
    let first_id = first["status"]["submissionId"]
        .as_str()
        .unwrap()
        .to_string();
    env.sim
        .fault(json!({"match": {"method": "POST", "pathRegex": "/urlThreats$"}, "status": 504, "count": 1}))
        .await;
    env.apply("ThreatSubmission", "rerun", spec("INC-2")).await;
    let second = env
        .wait(
            "ThreatSubmission",
            "rerun",
            "second run completed",
            Duration::from_secs(40),
            |o| {
                o.is_some_and(|o| {
                    o["status"]["action"]["runId"] == "trigger:INC-2"
                        && o["status"]["action"]["phase"] == "Completed"
                })
            },
        )
        .await
        .unwrap();
    assert_ne!(
        second["status"]["submissionId"].as_str(),
        Some(first_id.as_str()),
        "the second run reported the first run's submission"
    );
    assert_eq!(
        posts(&env, "urlThreats").await,
        2,
        "one submission per trigger"
    );
    assert!(second["status"]["action"]["sent"].is_null());
    let reasons: Vec<String> = env.events("rerun").await.into_iter().map(|e| e.1).collect();
    assert!(reasons.iter().any(|r| r == "Unconfirmed"), "{reasons:?}");
}

#[tokio::test]
async fn file_and_email_submissions() {
    let env = Env::new("e2e-tsub-file").await;
    let _op = env.operator();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "sample"}, "stringData": {"invoice.exe": "MZ-not-really-malware"}})).unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    env.apply(
        "ThreatSubmission",
        "dry",
        json!({"submissionType": "File", "category": "malware", "mode": "DryRun", "file": {"name": "invoice.exe", "contentFrom": {"secretKeyRef": {"name": "sample", "key": "invoice.exe"}}}}),
    )
    .await;
    let d = env
        .wait_condition("ThreatSubmission", "dry", "Ready", "True", Some("DryRun"))
        .await;
    let plan = d["status"]["plan"][0].as_str().unwrap();
    assert!(
        plan.starts_with("POST /beta/security/threatSubmission/fileThreats "),
        "{plan}"
    );
    assert!(
        !plan.contains("TVot"),
        "file content must not appear in the plan: {plan}"
    );
    env.apply(
        "ThreatSubmission",
        "file",
        json!({"submissionType": "File", "category": "malware", "file": {"name": "invoice.exe", "contentFrom": {"secretKeyRef": {"name": "sample", "key": "invoice.exe"}}}}),
    )
    .await;
    let o = env
        .wait_condition(
            "ThreatSubmission",
            "file",
            "Ready",
            "True",
            Some("Completed"),
        )
        .await;
    assert_eq!(o["status"]["verdict"], "malware");
    env.apply(
        "ThreatSubmission",
        "mail",
        json!({"submissionType": "Email", "category": "spam", "email": {"recipientEmailAddress": "alice@contoso.example", "messageUrl": "https://graph.microsoft.com/v1.0/users/alice@contoso.example/messages/AAMk1"}}),
    )
    .await;
    let o = env
        .wait_condition(
            "ThreatSubmission",
            "mail",
            "Ready",
            "True",
            Some("Completed"),
        )
        .await;
    assert_eq!(o["status"]["verdict"], "spam");
    assert_eq!(
        (
            posts(&env, "fileThreats").await,
            posts(&env, "emailThreats").await
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn crash_after_submitting_never_submits_twice() {
    let env = Env::new("e2e-tsub-crash").await;
    // One submission per page, and an earlier one first: recovery must follow
    // `@odata.nextLink` to find its own.
    env.sim.settings(json!({"odataPageSize": 1})).await;
    env.sim
        .as_operator(
            reqwest::Method::POST,
            "/beta/security/threatSubmission/urlThreats",
            "https://graph.microsoft.com/.default",
            Some(json!({"@odata.type": "#microsoft.graph.security.urlThreatSubmission", "category": "spam", "webUrl": "https://earlier.example/"})),
        )
        .await;
    env.sim.settings(json!({"latencyMs": 2000})).await;
    let mut op = env.operator();
    env.apply("ThreatSubmission", "x", json!({"submissionType": "Url", "category": "malware", "url": "https://dl.evil.example/a.zip"})).await;
    env.wait(
        "ThreatSubmission",
        "x",
        "intent recorded",
        Duration::from_secs(30),
        |o| o.is_some_and(|o| o["status"]["action"]["phase"] == "InProgress"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    op.kill();
    assert!(
        env.get("ThreatSubmission", "x").await.unwrap()["status"]["submissionId"].is_null(),
        "killed before the answer arrived"
    );
    env.sim.settings(json!({"latencyMs": 0})).await;
    let _op2 = env.operator();
    let o = env
        .wait_condition("ThreatSubmission", "x", "Ready", "True", Some("Completed"))
        .await;
    assert_eq!(
        posts(&env, "urlThreats").await,
        2,
        "the earlier one and ours, once"
    );
    assert_eq!(o["status"]["verdict"], "malware");
}

#[tokio::test]
async fn missing_graph_permission_and_invalid_spec() {
    let env = Env::with_world("e2e-tsub-perm", printed_actions(&[]), |w| {
        let p = w
            .principals
            .iter_mut()
            .find(|p| p.client_id == CLIENT_ID)
            .unwrap();
        p.graph_permissions.clear();
    })
    .await;
    let _op = env.operator();
    env.apply("ThreatSubmission", "x", json!({"submissionType": "Url", "category": "malware", "url": "https://dl.evil.example/a.zip"})).await;
    let o = env
        .wait_condition(
            "ThreatSubmission",
            "x",
            "Stalled",
            "True",
            Some("AuthorizationFailed"),
        )
        .await;
    assert!(
        condition(&o, "Stalled").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("ThreatSubmission.ReadWrite.All")
    );
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "ThreatSubmission", "metadata": {"name": "bad"},
        "spec": {"submissionType": "Url", "category": "malware"}
    }))
    .unwrap();
    let err = env
        .api("ThreatSubmission")
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.url is required"), "{err}");
}

async fn remediations(env: &Env) -> Vec<Value> {
    env.sim
        .admin(reqwest::Method::GET, "/_sim/graph/remediations", None)
        .await["value"]
        .as_array()
        .unwrap()
        .clone()
}

/// Remediated once per trigger, the Action center's bulkId in status; with releasePolicy
/// Restore, delete moves the mail back to the Inbox; by default nothing is put back.
#[tokio::test]
async fn email_remediation_once_with_bulk_id_and_inbox_only_on_restore() {
    let env = Env::new("e2e-emrem").await;
    let _op = env.operator();
    let mail = json!([
        {"networkMessageId": "6f1c0d9e-0000-4000-8000-000000000001", "recipientEmailAddress": "alice@contoso.example"},
        {"networkMessageId": "6f1c0d9e-0000-4000-8000-000000000001", "recipientEmailAddress": "bob@contoso.example"}]);
    let t = env
        .apply("EmailRemediation", "phish", json!({"emails": mail, "action": "MoveToDeletedItems", "releasePolicy": "Restore", "reason": "INC-4711"}))
        .await;
    let o = env
        .wait_condition(
            "EmailRemediation",
            "phish",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    eprintln!(
        "apply→Ready EmailRemediation: {} ms",
        t.elapsed().as_millis()
    );
    let r = remediations(&env).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["action"], "moveToDeletedItems");
    assert_eq!(r[0]["remediateSendersCopy"], json!(false));
    assert_eq!(r[0]["analyzedEmails"], mail);
    assert_eq!(o["status"]["bulkId"], r[0]["bulkId"]);
    assert!(
        o["status"]["actionCenterUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://security.microsoft.com/action-center/history?")
    );
    assert_eq!(o["status"]["targetName"], "alice@contoso.example +1");

    // A drift check sends nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(remediations(&env).await.len(), 1);

    env.delete("EmailRemediation", "phish").await;
    env.wait_gone("EmailRemediation", "phish").await;
    let r = remediations(&env).await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[1]["action"], "moveToInbox");
    assert_eq!(r[1]["analyzedEmails"], mail);

    // The default keeps the mail where it was put.
    env.apply("EmailRemediation", "junk", json!({"emails": [mail[0]]}))
        .await;
    env.wait_condition(
        "EmailRemediation",
        "junk",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    env.delete("EmailRemediation", "junk").await;
    env.wait_gone("EmailRemediation", "junk").await;
    let r = remediations(&env).await;
    assert_eq!(r.len(), 3);
    assert_eq!(r[2]["action"], "moveToJunk");
}
