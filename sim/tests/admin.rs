//! The admin API: drift injection, faults, request log, reset.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn drift_through_the_admin_api_is_visible_to_arm_clients_and_reset_restores() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let id = format!(
        "{}/Microsoft.Storage/storageAccounts/stprod01",
        rg("rg-prod")
    );
    let (s, _) = sim
        .admin(
            "PATCH",
            &format!("/_sim/resources{id}"),
            Some(json!({"properties": {"allowBlobPublicAccess": false}})),
        )
        .await;
    assert_eq!(s, 200);
    let (_, _, b) = sim
        .call(&t, "GET", &format!("{id}?api-version=2023-05-01"), None)
        .await;
    assert_eq!(b["properties"]["allowBlobPublicAccess"], false);
    let (_, listed) = sim
        .admin(
            "GET",
            &format!("/_sim/resources?prefix={}", rg("rg-prod")),
            None,
        )
        .await;
    assert!(listed["value"].as_array().unwrap().len() >= 8);
    // A PUT creates a new resource with name and type derived from its id.
    let new = format!("{}/Microsoft.Sql/servers/sql-new", rg("rg-prod"));
    let (s, b) = sim
        .admin(
            "PUT",
            &format!("/_sim/resources{new}"),
            Some(json!({"location": "eastus", "properties": {"publicNetworkAccess": "Enabled"}})),
        )
        .await;
    assert_eq!(
        (s, b["type"].as_str()),
        (200, Some("Microsoft.Sql/servers"))
    );
    let (s, _) = sim.admin("POST", "/_sim/reset", None).await;
    assert_eq!(s, 204);
    let (_, _, b) = sim
        .call(&t, "GET", &format!("{id}?api-version=2023-05-01"), None)
        .await;
    assert_eq!(b["properties"]["allowBlobPublicAccess"], true);
    assert_eq!(
        sim.call(&t, "GET", &format!("{new}?api-version=2021-11-01"), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn faults_fire_count_times_with_retry_after_then_stop() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let (s, _) = sim.admin("POST", "/_sim/faults", Some(json!({"match": {"method": "GET", "pathRegex": "sql-prod-01$"}, "status": 503, "count": 2, "retryAfterSeconds": 3}))).await;
    assert_eq!(s, 201);
    let p = format!(
        "{}/Microsoft.Sql/servers/sql-prod-01?api-version=2021-11-01",
        rg("rg-prod")
    );
    for _ in 0..2 {
        let (s, h, b) = sim.call(&t, "GET", &p, None).await;
        assert_eq!(
            (s, b["error"]["code"].as_str().unwrap()),
            (503, "ServiceUnavailable")
        );
        assert_eq!(h["retry-after"], "3");
    }
    assert_eq!(sim.call(&t, "GET", &p, None).await.0, 200);
    let (s, _) = sim
        .admin(
            "POST",
            "/_sim/faults",
            Some(json!({"match": {"pathRegex": "("}, "status": 500})),
        )
        .await;
    assert_eq!(s, 400, "a bad regex is rejected");
}

#[tokio::test]
async fn request_log_records_method_path_version_status_and_principal() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    sim.call(
        &t,
        "GET",
        &format!(
            "{}/Microsoft.Sql/servers/sql-prod-01?api-version=2021-11-01",
            rg("rg-prod")
        ),
        None,
    )
    .await;
    sim.call(
        &t,
        "GET",
        &format!("{}/Microsoft.Sql/servers/sql-prod-01", rg("rg-prod")),
        None,
    )
    .await;
    let (_, log) = sim.admin("GET", "/_sim/requests", None).await;
    let entries: Vec<_> = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["path"].as_str().unwrap().contains("sql-prod-01"))
        .collect();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["method"], "GET");
    assert_eq!(entries[0]["apiVersion"], "2021-11-01");
    assert_eq!(entries[0]["status"], 200);
    assert_eq!(
        entries[0]["principal"],
        "11111111-0000-4000-8000-0000000000f1"
    );
    assert_eq!(entries[1]["status"], 400);
    assert!(
        log["value"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["path"].as_str().unwrap().starts_with("/_sim")),
        "admin calls are not logged"
    );
}

#[tokio::test]
async fn an_injected_lro_failure_ends_failed_and_applies_nothing() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let (s, _) = sim
        .admin("POST", "/_sim/settings", Some(json!({"lroFailNext": 1})))
        .await;
    assert_eq!(s, 200);
    let srv = format!(
        "{}/Microsoft.Sql/servers/sql-prod-01?api-version=2021-11-01",
        rg("rg-prod")
    );
    let (s, h, _) = sim
        .call(
            &t,
            "PATCH",
            &srv,
            Some(json!({"properties": {"publicNetworkAccess": "Disabled"}})),
        )
        .await;
    assert_eq!(s, 202);
    let op = h["azure-asyncoperation"].to_str().unwrap().to_string();
    assert_eq!(sim.poll(&t, &op).await.last().unwrap(), "Failed");
    let (_, _, b) = sim.call(&t, "GET", &op, None).await;
    assert_eq!(b["error"]["code"], "InternalServerError");
    assert_eq!(
        sim.call(&t, "GET", &srv, None).await.2["properties"]["publicNetworkAccess"],
        "Enabled"
    );
    // Only the next one fails.
    let (_, h, _) = sim
        .call(
            &t,
            "PATCH",
            &srv,
            Some(json!({"properties": {"publicNetworkAccess": "Disabled"}})),
        )
        .await;
    assert_eq!(
        sim.poll(&t, h["azure-asyncoperation"].to_str().unwrap())
            .await
            .last()
            .unwrap(),
        "Succeeded"
    );
}

#[tokio::test]
async fn a_lost_answer_fault_applies_the_request_and_never_answers() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let acct = format!(
        "{}/Microsoft.Storage/storageAccounts/stprod01",
        rg("rg-prod")
    );
    let (s, _) = sim
        .admin(
            "POST",
            "/_sim/faults",
            Some(json!({"match": {"method": "POST", "pathRegex": "/regenerateKey$"}, "loseAnswer": true})),
        )
        .await;
    assert_eq!(s, 201);
    let (_, _, before) = sim
        .call(&t, "GET", &format!("{acct}?api-version=2023-05-01"), None)
        .await;
    let sent = sim
        .http
        .post(format!(
            "{}{acct}/regenerateKey?api-version=2023-05-01",
            sim.url
        ))
        .bearer_auth(&t)
        .json(&json!({"keyName": "key1"}))
        .send()
        .await;
    assert!(sent.is_err(), "no answer: {sent:?}");
    // ... yet the key was regenerated, and the log shows the call.
    let (_, _, after) = sim
        .call(&t, "GET", &format!("{acct}?api-version=2023-05-01"), None)
        .await;
    assert_ne!(
        before["properties"]["keyCreationTime"]["key1"],
        after["properties"]["keyCreationTime"]["key1"]
    );
    let (_, log) = sim.admin("GET", "/_sim/requests", None).await;
    assert!(
        log["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"].as_str().unwrap().ends_with("/regenerateKey"))
    );
    // One shot: the next call is answered.
    let (s, _, _) = sim
        .call(
            &t,
            "POST",
            &format!("{acct}/regenerateKey?api-version=2023-05-01"),
            Some(json!({"keyName": "key1"})),
        )
        .await;
    assert_eq!(s, 200);
}
