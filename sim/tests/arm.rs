//! The ARM engine and the first-wave resource behaviours.

mod common;
use common::*;
use serde_json::{Value, json};

const V_SQL: &str = "api-version=2021-11-01";

fn sql(server: &str) -> String {
    format!("{}/Microsoft.Sql/servers/{server}", rg("rg-prod"))
}

#[tokio::test]
async fn api_version_is_required_and_checked_per_resource_type() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let (s, h, b) = sim.call(&t, "GET", &sql("sql-prod-01"), None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (400, "MissingApiVersionParameter")
    );
    assert!(h.contains_key("x-ms-request-id") && h.contains_key("x-ms-correlation-request-id"));
    let (s, _, b) = sim
        .call(
            &t,
            "GET",
            &format!("{}?api-version=2023-05-01", sql("sql-prod-01")),
            None,
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(b["error"]["code"], "InvalidApiVersionParameter");
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("'2023-05-01' is invalid") && msg.contains("2021-11-01,2023-08-01-preview"),
        "{msg}"
    );
    // The same version is fine on the storage type, and ids are case-insensitive.
    let (s, _, b) = sim.call(&t, "GET", &format!("/SUBSCRIPTIONS/{SUB}/resourcegroups/RG-PROD/providers/microsoft.storage/storageaccounts/STPROD01?api-version=2023-05-01"), None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["name"], "stprod01");
}

#[tokio::test]
async fn rbac_denial_is_authorization_failed_with_action_and_scope() {
    let sim = start().await;
    let t = sim.token(AUDITOR, ARM).await;
    let (s, _, _) = sim
        .call(
            &t,
            "GET",
            &format!("{}/firewallRules?{V_SQL}", sql("sql-prod-01")),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let path = format!("{}/firewallRules/x?{V_SQL}", sql("sql-prod-01"));
    let (s, _, b) = sim
        .call(
            &t,
            "PUT",
            &path,
            Some(json!({"properties": {"startIpAddress": "1.1.1.1", "endIpAddress": "1.1.1.1"}})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (403, "AuthorizationFailed")
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'Microsoft.Sql/servers/firewallRules/write'")
    );
}

#[tokio::test]
async fn sql_patch_is_a_long_running_operation_then_firewall_writes_are_refused() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let (s, h, b) = sim
        .call(
            &t,
            "PATCH",
            &format!("{}?{V_SQL}", sql("sql-prod-01")),
            Some(json!({"properties": {"publicNetworkAccess": "Disabled"}})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert!(h.contains_key("retry-after") && h.contains_key("location"));
    let op = h["azure-asyncoperation"].to_str().unwrap().to_string();
    // Not applied until the operation completes.
    let (_, _, server) = sim
        .call(&t, "GET", &format!("{}?{V_SQL}", sql("sql-prod-01")), None)
        .await;
    assert_eq!(server["properties"]["publicNetworkAccess"], "Enabled");
    let loc = h["location"].to_str().unwrap().to_string();
    let (s, _, _) = sim.call(&t, "GET", &loc, None).await;
    assert_eq!(s, 202);
    let seen = sim.poll(&t, &op).await;
    assert_eq!(seen.first().map(String::as_str), Some("InProgress"));
    assert_eq!(seen.last().map(String::as_str), Some("Succeeded"));
    let (s, _, fin) = sim.call(&t, "GET", &loc, None).await;
    assert_eq!(
        (s, fin["properties"]["publicNetworkAccess"].as_str()),
        (200, Some("Disabled"))
    );

    let (s, _, b) = sim
        .call(
            &t,
            "PUT",
            &format!("{}/firewallRules/new?{V_SQL}", sql("sql-prod-01")),
            Some(json!({"properties": {"startIpAddress": "1.2.3.4", "endIpAddress": "1.2.3.4"}})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (400, "DenyPublicEndpointEnabled")
    );
}

#[tokio::test]
async fn sql_public_access_cannot_be_denied_without_a_private_endpoint() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let (s, _, b) = sim
        .call(
            &t,
            "PATCH",
            &format!("{}?{V_SQL}", sql("sql-legacy-02")),
            Some(json!({"properties": {"publicNetworkAccess": "Disabled"}})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (400, "PECsNotExistingToDenyPublicNetworkAccess")
    );
    let (s, _, b) = sim
        .call(
            &t,
            "PATCH",
            &format!("{}?{V_SQL}", sql("sql-prod-01")),
            Some(json!({"properties": {"publicNetworkAccess": "SecuredByPerimeter"}})),
        )
        .await;
    assert_eq!(s, 400, "2021-11-01 has no SecuredByPerimeter: {b}");
}

#[tokio::test]
async fn sql_firewall_rule_crud_validation_and_replace_all() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let rules = format!("{}/firewallRules", sql("sql-prod-01"));
    let (_, _, list) = sim.call(&t, "GET", &format!("{rules}?{V_SQL}"), None).await;
    let names: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["AllowAll", "AllowAllWindowsAzureIps", "office"]);

    let put = |name: &str, a: &str, b: &str| {
        (
            format!("{rules}/{name}?api-version=2025-01-01"),
            json!({"properties": {"startIpAddress": a, "endIpAddress": b}}),
        )
    };
    let (p, body) = put("split-1", "0.0.0.0", "203.0.113.4");
    let (s, _, r) = sim.call(&t, "PUT", &p, Some(body.clone())).await;
    assert_eq!(
        (s, r["type"].as_str()),
        (201, Some("Microsoft.Sql/servers/firewallRules"))
    );
    let (s, _, _) = sim.call(&t, "PUT", &p, Some(body)).await;
    assert_eq!(s, 200, "second PUT of the same rule is an update");
    let (p, body) = put("bad", "10.0.0.9", "10.0.0.1");
    assert_eq!(
        sim.call(&t, "PUT", &p, Some(body)).await.2["error"]["code"],
        "FirewallRuleInvalidRange"
    );
    let (p, body) = put("v6", "::1", "::1");
    assert_eq!(
        sim.call(&t, "PUT", &p, Some(body)).await.2["error"]["code"],
        "FirewallRuleNotIPv4Address"
    );

    let (s, _, _) = sim
        .call(&t, "DELETE", &format!("{rules}/AllowAll?{V_SQL}"), None)
        .await;
    assert_eq!(s, 200);
    let (s, _, _) = sim
        .call(&t, "DELETE", &format!("{rules}/AllowAll?{V_SQL}"), None)
        .await;
    assert_eq!(s, 204, "deleting a missing rule is 204");

    let (s, _, b) = sim.call(&t, "PUT", &format!("{rules}?{V_SQL}"), Some(json!({"values": [{"name": "only", "properties": {"startIpAddress": "198.51.100.1", "endIpAddress": "198.51.100.1"}}]}))).await;
    assert_eq!(s, 200, "{b}");
    let (_, _, list) = sim.call(&t, "GET", &format!("{rules}?{V_SQL}"), None).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    assert_eq!(list["value"][0]["name"], "only");
}

#[tokio::test]
async fn storage_patch_keys_and_revocation() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let acct = format!(
        "{}/Microsoft.Storage/storageAccounts/stprod01",
        rg("rg-prod")
    );
    let v = "api-version=2023-05-01";
    let (s, _, b) = sim.call(&t, "PATCH", &format!("{acct}?{v}"), Some(json!({"properties": {"allowBlobPublicAccess": false, "networkAcls": {"defaultAction": "Deny", "ipRules": [{"value": "203.0.113.0/24", "action": "Allow"}]}}}))).await;
    assert_eq!(s, 200, "storage PATCH is synchronous: {b}");
    assert_eq!(b["properties"]["allowBlobPublicAccess"], false);
    assert_eq!(
        b["properties"]["networkAcls"]["ipRules"][0]["value"],
        "203.0.113.0/24"
    );
    assert_eq!(
        b["properties"]["networkAcls"]["bypass"], "AzureServices",
        "unsent fields are kept"
    );
    let (s, _, b) = sim.call(&t, "PATCH", &format!("{acct}?{v}"), Some(json!({"properties": {"networkAcls": {"defaultAction": "Deny", "ipRules": [{"value": "2001:db8::/32"}]}}}))).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (400, "NetworkAclsValidationFailure")
    );

    let before =
        sim.call(&t, "GET", &format!("{acct}?{v}"), None).await.2["properties"]["keyCreationTime"]
            ["key1"]
            .clone();
    let (_, _, keys0) = sim
        .call(&t, "POST", &format!("{acct}/listKeys?{v}"), None)
        .await;
    let (s, _, keys) = sim
        .call(
            &t,
            "POST",
            &format!("{acct}/regenerateKey?{v}"),
            Some(json!({"keyName": "key1"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        keys["keys"].as_array().unwrap().len(),
        2,
        "the response lists every key"
    );
    assert_ne!(keys["keys"][0]["value"], keys0["keys"][0]["value"]);
    // Kerberos keys are listed only when asked for ($expand=kerb), like ARM.
    sim.call(
        &t,
        "POST",
        &format!("{acct}/regenerateKey?{v}"),
        Some(json!({"keyName": "kerb1"})),
    )
    .await;
    let names = |b: &serde_json::Value| -> Vec<String> {
        b["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["keyName"].as_str().unwrap().to_string())
            .collect()
    };
    let plain = sim
        .call(&t, "POST", &format!("{acct}/listKeys?{v}"), None)
        .await
        .2;
    assert_eq!(names(&plain), ["key1", "key2"]);
    let expanded = sim
        .call(
            &t,
            "POST",
            &format!("{acct}/listKeys?{v}&$expand=kerb"),
            None,
        )
        .await
        .2;
    assert_eq!(names(&expanded), ["kerb1", "key1", "key2"]);
    let (_, _, keys) = sim
        .call(&t, "POST", &format!("{acct}/listKeys?{v}"), None)
        .await;
    assert_eq!(keys["keys"][1]["value"], keys0["keys"][1]["value"]);
    let after = sim.call(&t, "GET", &format!("{acct}?{v}"), None).await.2;
    assert_ne!(after["properties"]["keyCreationTime"]["key1"], before);
    assert!(
        !after
            .to_string()
            .contains(keys["keys"][0]["value"].as_str().unwrap()),
        "GET never returns keys"
    );
    let (s, _, _) = sim
        .call(
            &t,
            "POST",
            &format!("{acct}/regenerateKey?{v}"),
            Some(json!({"keyName": "key3"})),
        )
        .await;
    assert_eq!(s, 400);

    let (s, _, b) = sim
        .call(
            &t,
            "POST",
            &format!("{acct}/revokeUserDelegationKeys?{v}"),
            None,
        )
        .await;
    assert_eq!((s, b), (200, Value::Null));
    let (_, counters) = sim.admin("GET", "/_sim/counters", None).await;
    assert_eq!(
        counters.as_object().unwrap().values().next(),
        Some(&json!(1))
    );
}

#[tokio::test]
async fn blob_service_put_replaces_and_defender_settings_are_created() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let acct = format!(
        "{}/Microsoft.Storage/storageAccounts/stprod01",
        rg("rg-prod")
    );
    let blob = format!("{acct}/blobServices/default?api-version=2023-05-01");
    sim.call(
        &t,
        "PUT",
        &blob,
        Some(json!({"properties": {"cors": {"corsRules": [{"allowedOrigins": ["*"]}]}}})),
    )
    .await;
    let (s, _, b) = sim
        .call(
            &t,
            "PUT",
            &blob,
            Some(json!({"properties": {"deleteRetentionPolicy": {"enabled": true, "days": 14}}})),
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        b["properties"].get("cors").is_none(),
        "omitting cors deletes the CORS rules: {b}"
    );
    let six =
        json!({"properties": {"cors": {"corsRules": vec![json!({"allowedOrigins": ["*"]}); 6]}}});
    assert_eq!(sim.call(&t, "PUT", &blob, Some(six)).await.0, 400);
    let container_purge = json!({"properties": {"containerDeleteRetentionPolicy": {"enabled": true, "days": 7, "allowPermanentDelete": false}}});
    assert_eq!(
        sim.call(&t, "PUT", &blob, Some(container_purge)).await.0,
        400
    );
    let too_long = json!({"properties": {"deleteRetentionPolicy": {"enabled": true, "days": 366}}});
    assert_eq!(sim.call(&t, "PUT", &blob, Some(too_long)).await.0, 400);
    let d = format!(
        "{acct}/providers/Microsoft.Security/defenderForStorageSettings/current?api-version=2025-01-01"
    );
    assert_eq!(sim.call(&t, "GET", &d, None).await.0, 404);
    let body = json!({"properties": {"isEnabled": true, "overrideSubscriptionLevelSettings": true, "malwareScanning": {"onUpload": {"isEnabled": true, "capGBPerMonth": 5000}}}});
    assert_eq!(sim.call(&t, "PUT", &d, Some(body.clone())).await.0, 201);
    let (s, _, b) = sim.call(&t, "PUT", &d, Some(body)).await;
    assert_eq!(s, 200);
    assert_eq!(
        b["properties"]["malwareScanning"]["operationStatus"]["code"],
        "Succeeded"
    );
}

#[tokio::test]
async fn cosmos_patch_and_regenerate_key_are_long_running() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let acct = format!(
        "{}/Microsoft.DocumentDB/databaseAccounts/cosmos-prod-01",
        rg("rg-prod")
    );
    let v = "api-version=2024-05-15";
    let (s, _, b) = sim
        .call(
            &t,
            "PATCH",
            &format!("{acct}?{v}"),
            Some(json!({"properties": {"ipRules": [{"ipAddressOrRange": "10.1.0.0/16"}]}})),
        )
        .await;
    assert_eq!(s, 400, "private ranges are refused: {b}");
    let before = sim.call(&t, "GET", &format!("{acct}?{v}"), None).await.2["properties"]["keysMetadata"]["primaryMasterKey"]["generationTime"].clone();
    let (s, h, _) = sim
        .call(
            &t,
            "POST",
            &format!("{acct}/regenerateKey?{v}"),
            Some(json!({"keyKind": "primary"})),
        )
        .await;
    assert_eq!(s, 202);
    let op = h["azure-asyncoperation"].to_str().unwrap().to_string();
    // The account is locked while the operation runs: other writes are refused, like Cosmos DB.
    for (m, path, body) in [
        (
            "POST",
            format!("{acct}/regenerateKey?{v}"),
            json!({"keyKind": "secondary"}),
        ),
        (
            "PATCH",
            format!("{acct}?{v}"),
            json!({"properties": {"disableLocalAuth": true}}),
        ),
    ] {
        let (s, _, b) = sim.call(&t, m, &path, Some(body)).await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (412, Some("PreconditionFailed")),
            "{m}: {b}"
        );
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("exclusive lock on [cosmos-prod-01]")
        );
    }
    assert_eq!(sim.poll(&t, &op).await.last().unwrap(), "Succeeded");
    let after = sim.call(&t, "GET", &format!("{acct}?{v}"), None).await.2;
    assert_ne!(
        after["properties"]["keysMetadata"]["primaryMasterKey"]["generationTime"],
        before
    );
    assert_eq!(
        after["properties"]["keysMetadata"]["secondaryMasterKey"]["generationTime"],
        "2024-01-01T00:00:00Z"
    );
    let (s, h, _) = sim
        .call(
            &t,
            "PATCH",
            &format!("{acct}?{v}"),
            Some(json!({"properties": {"publicNetworkAccess": "Disabled"}})),
        )
        .await;
    // Only 200 is declared for the account PATCH: the operation is announced on a 200.
    assert_eq!(s, 200);
    sim.poll(&t, h["azure-asyncoperation"].to_str().unwrap())
        .await;
    assert_eq!(
        sim.call(&t, "GET", &format!("{acct}?{v}"), None).await.2["properties"]["publicNetworkAccess"],
        "Disabled"
    );
}

#[tokio::test]
async fn appgw_waf_put_validates_custom_rules_and_changes_etag() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let p = format!(
        "{}/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/waf-prod?api-version=2024-01-01",
        rg("rg-edge")
    );
    let (_, _, policy) = sim.call(&t, "GET", &p, None).await;
    let etag = policy["etag"].clone();
    let mut next = policy.clone();
    let rule = json!({"name": "ctrBlock1", "priority": 5, "ruleType": "MatchRule", "action": "Block",
        "matchConditions": [{"matchVariables": [{"variableName": "RemoteAddr"}], "operator": "IPMatch", "matchValues": ["203.0.113.5/32"]}]});
    next["properties"]["customRules"]
        .as_array_mut()
        .unwrap()
        .push(rule.clone());
    let (s, _, b) = sim.call(&t, "PUT", &p, Some(next.clone())).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (400, "DuplicateCustomRulePriority")
    );
    next["properties"]["customRules"][3]["priority"] = json!(2);
    let mut no_managed = next.clone();
    no_managed["properties"]
        .as_object_mut()
        .unwrap()
        .remove("managedRules");
    assert_eq!(sim.call(&t, "PUT", &p, Some(no_managed)).await.0, 400);
    let mut bad_op = next.clone();
    bad_op["properties"]["customRules"][3]["matchConditions"][0]["operator"] = json!("Contains");
    assert_eq!(
        sim.call(&t, "PUT", &p, Some(bad_op)).await.2["error"]["code"],
        "InvalidCustomRuleOperator"
    );
    let (s, _, b) = sim.call(&t, "PUT", &p, Some(next)).await;
    assert_eq!(s, 200, "{b}");
    assert_ne!(b["etag"], etag);
    assert_eq!(b["properties"]["customRules"].as_array().unwrap().len(), 4);
    assert!(
        b["properties"]["applicationGateways"].is_array(),
        "read-only back-references survive"
    );
}

#[tokio::test]
async fn front_door_waf_put_is_long_running_with_its_own_field_names() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let p = format!(
        "{}/Microsoft.Network/FrontDoorWebApplicationFirewallPolicies/fdwafprod?api-version=2024-02-01",
        rg("rg-edge")
    );
    let (_, _, mut policy) = sim.call(&t, "GET", &p, None).await;
    policy["properties"]["customRules"]["rules"] = json!([{"name": "ctrBlock1", "priority": 1, "ruleType": "MatchRule", "action": "Block",
        "matchConditions": [{"matchVariable": "RemoteAddr", "operator": "IPMatch", "matchValue": ["203.0.113.5"]}]}]);
    let (s, h, _) = sim.call(&t, "PUT", &p, Some(policy)).await;
    assert_eq!(s, 202);
    sim.poll(&t, h["azure-asyncoperation"].to_str().unwrap())
        .await;
    let (_, _, b) = sim.call(&t, "GET", &p, None).await;
    assert_eq!(
        b["properties"]["customRules"]["rules"][0]["name"],
        "ctrBlock1"
    );
}

#[tokio::test]
async fn defender_alert_actions_return_204_and_change_status() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let a = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Security/locations/centralus/alerts/2518770965529163669_F144EE95-A3E5-42DA-A279-967D115809AA"
    );
    let v = "api-version=2022-01-01";
    let (s, _, b) = sim
        .call(&t, "POST", &format!("{a}/dismiss?{v}"), None)
        .await;
    assert_eq!((s, b), (204, Value::Null));
    assert_eq!(
        sim.call(&t, "GET", &format!("{a}?{v}"), None).await.2["properties"]["status"],
        "Dismissed"
    );
    sim.call(&t, "POST", &format!("{a}/inProgress?{v}"), None)
        .await;
    assert_eq!(
        sim.call(&t, "GET", &format!("{a}?{v}"), None).await.2["properties"]["status"],
        "InProgress"
    );
    assert_eq!(
        sim.call(&t, "POST", &format!("{a}/isolate?{v}"), None)
            .await
            .0,
        404,
        "invented actions do not exist"
    );
}

#[tokio::test]
async fn throttling_token_buckets_headers_and_recovery() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    sim.admin(
        "POST",
        "/_sim/throttle",
        Some(json!({"writes": {"capacity": 3, "refillPerSecond": 1}})),
    )
    .await;
    let alert = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Security/locations/centralus/alerts/2518770965529163669_F144EE95-A3E5-42DA-A279-967D115809AA/resolve?api-version=2022-01-01"
    );
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let (s, h, _) = sim.call(&t, "POST", &alert, None).await;
        assert_eq!(s, 204);
        remaining.push(
            h["x-ms-ratelimit-remaining-subscription-writes"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(remaining, vec!["2", "1", "0"]);
    let (s, h, b) = sim.call(&t, "POST", &alert, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (429, "TooManyRequests")
    );
    let after: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(after, 1);
    // Reads have their own bucket.
    let (s, h, _) = sim
        .call(&t, "GET", &format!("{}?{V_SQL}", sql("sql-prod-01")), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(h["x-ms-ratelimit-remaining-subscription-reads"], "249");
    tokio::time::sleep(std::time::Duration::from_secs(after)).await;
    assert_eq!(
        sim.call(&t, "POST", &alert, None).await.0,
        204,
        "recovers after Retry-After"
    );
}

#[tokio::test]
async fn arc_machine_read_and_run_command_lro() {
    let sim = start_with(|mut w| {
        for p in &mut w.principals {
            for a in &mut p.role_assignments {
                a.actions.retain(|x| !x.contains("/runCommands/"));
            }
        }
        w
    })
    .await;
    let t = sim.token(OPERATOR, ARM).await;
    let m = format!(
        "{}/Microsoft.HybridCompute/machines/arc-web-01",
        rg("rg-onprem")
    );
    let (s, _, b) = sim
        .call(&t, "GET", &format!("{m}?api-version=2022-12-27"), None)
        .await;
    assert_eq!(
        (s, b["properties"]["machineFqdn"].as_str()),
        (200, Some("arc-web-01.corp.contoso.example"))
    );
    assert_eq!(
        sim.call(
            &t,
            "POST",
            &format!("{m}/isolate?api-version=2022-12-27"),
            None
        )
        .await
        .0,
        404,
        "there is no Arc isolate"
    );
    // Run commands need their own permission.
    let rc = format!("{m}/runCommands/rc1?api-version=2024-05-20-preview");
    let (s, _, _) = sim
        .call(
            &t,
            "PUT",
            &rc,
            Some(json!({"location": "eastus", "properties": {"source": {"script": "echo hi"}}})),
        )
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn arc_run_command_put_is_long_running_and_ends_with_an_instance_view() {
    let sim = start_with(|mut w| {
        w.principals[0].role_assignments[0].actions.extend([
            "Microsoft.HybridCompute/machines/runCommands/write".to_string(),
            "Microsoft.HybridCompute/machines/runCommands/read".to_string(),
            "Microsoft.HybridCompute/locations/operationStatus/read".to_string(),
        ]);
        w
    })
    .await;
    let t = sim.token(OPERATOR, ARM).await;
    let rc = format!(
        "{}/Microsoft.HybridCompute/machines/arc-web-01/runCommands/rc1?api-version=2024-05-20-preview",
        rg("rg-onprem")
    );
    let (s, _, b) = sim
        .call(
            &t,
            "PUT",
            &rc,
            Some(json!({"properties": {"source": {"script": "echo hi"}}})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("LocationRequired"))
    );
    let (s, h, b) = sim
        .call(
            &t,
            "PUT",
            &rc,
            Some(json!({"location": "eastus", "properties": {"source": {"script": "echo hi"}}})),
        )
        .await;
    assert_eq!(
        (s, b["properties"]["provisioningState"].as_str()),
        (201, Some("Creating"))
    );
    let seen = sim
        .poll(&t, h["azure-asyncoperation"].to_str().unwrap())
        .await;
    assert_eq!(seen.last().unwrap(), "Succeeded");
    let (_, _, b) = sim.call(&t, "GET", &rc, None).await;
    assert_eq!(
        b["properties"]["instanceView"]["executionState"],
        "Succeeded"
    );
    assert_eq!(b["properties"]["instanceView"]["exitCode"], 0);
}

/// ARM's front door answers 411 to a body-less HTTP/1.1 POST without `Content-Length`
/// (azure-sdk-for-rust#166); with `Content-Length: 0` the same call goes through. Raw requests:
/// HTTP client libraries differ in whether they add the header themselves.
#[tokio::test]
async fn a_bodyless_post_without_content_length_is_411() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let path = format!(
        "{}/Microsoft.Storage/storageAccounts/stprod01/revokeUserDelegationKeys?api-version=2023-05-01",
        rg("rg-prod")
    );
    let head = |extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {t}\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    let (status, text) = sim.raw_http1(&head("")).await;
    assert_eq!(status, 411, "{text}");
    assert!(text.contains("Length Required"), "{text}");
    let (status, text) = sim.raw_http1(&head("Content-Length: 0\r\n")).await;
    assert_eq!(status, 200, "{text}");
}

/// Each long-running-operation shape `lroShape` forces: the answer's status code and headers,
/// how it is polled, and how a failed one ends (a `Location` URL answers with the error; a
/// polled resource ends `provisioningState: Failed`).
#[tokio::test]
async fn every_long_running_operation_shape_is_served_and_polled() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let srv = format!("{}/Microsoft.Sql/servers/sql-prod-01", rg("rg-prod"));
    let v = "api-version=2021-11-01";
    let patch = json!({"properties": {"minimalTlsVersion": "1.2"}});
    // (shape, status, has Azure-AsyncOperation, has Location)
    for (shape, status, aao, loc) in [
        ("Both", 202, true, true),
        ("AzureAsyncOperation", 202, true, false),
        ("Location", 202, false, true),
        ("OkWithHeader", 200, true, false),
        ("ProvisioningState", 200, false, false),
    ] {
        for fail in [false, true] {
            let fail_next = u32::from(fail);
            sim.admin(
                "POST",
                "/_sim/settings",
                Some(json!({"lroShape": shape, "lroDelayMs": 100, "lroFailNext": fail_next, "lroFailCode": "BadRequest"})),
            )
            .await;
            let (s, h, b) = sim
                .call(&t, "PATCH", &format!("{srv}?{v}"), Some(patch.clone()))
                .await;
            assert_eq!(s, status, "{shape}: {b}");
            assert_eq!(h.contains_key("azure-asyncoperation"), aao, "{shape}");
            assert_eq!(h.contains_key("location"), loc, "{shape}");
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            let (url, want) = if aao {
                let u = h["azure-asyncoperation"].to_str().unwrap().to_string();
                (u, if fail { "Failed" } else { "Succeeded" })
            } else if loc {
                (h["location"].to_str().unwrap().to_string(), "")
            } else {
                (
                    format!("{srv}?{v}"),
                    if fail { "Failed" } else { "Succeeded" },
                )
            };
            let (s, _, b) = sim.call(&t, "GET", &url, None).await;
            if aao {
                assert_eq!((s, b["status"].as_str()), (200, Some(want)), "{shape}: {b}");
            } else if loc {
                let want = if fail { 400 } else { 200 };
                assert_eq!(s, want, "{shape}: the Location URL: {b}");
                if fail {
                    assert_eq!(b["error"]["code"], "BadRequest", "{shape}");
                }
            } else {
                assert_eq!(b["properties"]["provisioningState"], want, "{shape}: {b}");
            }
        }
    }
    // A POST has no resource to poll: ProvisioningState answers it as Location does.
    let acct = format!(
        "{}/Microsoft.DocumentDB/databaseAccounts/cosmos-prod-01",
        rg("rg-prod")
    );
    let (s, h, _) = sim
        .call(
            &t,
            "POST",
            &format!("{acct}/regenerateKey?api-version=2024-05-15"),
            Some(json!({"keyKind": "secondary"})),
        )
        .await;
    assert_eq!(s, 202);
    assert!(h.contains_key("location") && !h.contains_key("azure-asyncoperation"));
}

/// Polling is authorized like any ARM request: the operation's URL needs the provider's read
/// action at its own scope (Cosmos DB's is the subscription, outside the account).
#[tokio::test]
async fn polling_an_operation_needs_its_own_read_action() {
    let sim = start_with(|mut w| {
        for ra in &mut w.principals[0].role_assignments {
            ra.actions
                .retain(|a| a != "Microsoft.DocumentDB/locations/operationsStatus/read");
        }
        w
    })
    .await;
    let t = sim.token(OPERATOR, ARM).await;
    let acct = format!(
        "{}/Microsoft.DocumentDB/databaseAccounts/cosmos-prod-01",
        rg("rg-prod")
    );
    let (s, h, _) = sim
        .call(
            &t,
            "PATCH",
            &format!("{acct}?api-version=2024-05-15"),
            Some(json!({"properties": {"disableLocalAuth": true}})),
        )
        .await;
    assert_eq!(s, 200);
    let url = h["azure-asyncoperation"].to_str().unwrap().to_string();
    assert!(
        url.contains("/subscriptions/00000000-0000-4000-8000-0000000000aa/providers/Microsoft.DocumentDB/locations/"),
        "{url}"
    );
    let (s, _, b) = sim.call(&t, "GET", &url, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("AuthorizationFailed")),
        "{b}"
    );
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'Microsoft.DocumentDB/locations/operationsStatus/read'"),
        "{b}"
    );
}

#[tokio::test]
async fn sql_admin_password_is_checked_write_only_and_kept_with_the_secrets() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let server = format!("{}?{V_SQL}", sql("sql-prod-01"));
    for weak in ["Sh0rt!", "alllowercase1", "Xsqladmin1!"] {
        let (s, _, b) = sim
            .call(
                &t,
                "PATCH",
                &server,
                Some(json!({"properties": {"administratorLoginPassword": weak}})),
            )
            .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (400, Some("PasswordNotComplex")),
            "{weak}"
        );
    }
    let (s, h, _) = sim
        .call(
            &t,
            "PATCH",
            &server,
            Some(json!({"properties": {"administratorLoginPassword": "Str0ng-Enough_pw"}})),
        )
        .await;
    assert_eq!(s, 202);
    let seen = sim
        .poll(&t, h["azure-asyncoperation"].to_str().unwrap())
        .await;
    assert_eq!(seen.last().map(String::as_str), Some("Succeeded"));
    let (_, _, got) = sim.call(&t, "GET", &server, None).await;
    assert!(
        got["properties"]
            .get("administratorLoginPassword")
            .is_none(),
        "{got}"
    );
    assert_eq!(got["properties"]["administratorLogin"], "sqladmin");
    let (_, keys) = sim
        .admin("GET", &format!("/_sim/keys{}", sql("sql-prod-01")), None)
        .await;
    assert_eq!(keys["administratorLoginPassword"], "Str0ng-Enough_pw");
}

#[tokio::test]
async fn app_settings_put_replaces_the_map_and_publishing_policies_take_a_boolean() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let app = format!("{}/Microsoft.Web/sites/app-portal", rg("rg-web"));
    let v = "api-version=2023-12-01";
    let (s, _, listed) = sim
        .call(
            &t,
            "POST",
            &format!("{app}/config/appsettings/list?{v}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(listed["properties"]["FEATURE_FLAGS"], "checkout-v2");
    let put = format!("{app}/config/appsettings?{v}");
    let (s, _, _) = sim
        .call(
            &t,
            "PUT",
            &put,
            Some(json!({"properties": {"DB_PASSWORD": 5}})),
        )
        .await;
    assert_eq!(s, 400, "values are strings");
    let (s, _, _) = sim
        .call(
            &t,
            "PUT",
            &put,
            Some(json!({"properties": {"DB_PASSWORD": "new"}})),
        )
        .await;
    assert_eq!(s, 200);
    let (_, _, listed) = sim
        .call(
            &t,
            "POST",
            &format!("{app}/config/appsettings/list?{v}"),
            None,
        )
        .await;
    assert_eq!(
        listed["properties"],
        json!({"DB_PASSWORD": "new"}),
        "a key left out is gone"
    );
    let ftp = format!("{app}/basicPublishingCredentialsPolicies/ftp?{v}");
    let (_, _, p) = sim.call(&t, "GET", &ftp, None).await;
    assert_eq!(p["properties"]["allow"], true, "allowed unless set");
    let (s, _, _) = sim
        .call(
            &t,
            "PUT",
            &ftp,
            Some(json!({"properties": {"allow": "false"}})),
        )
        .await;
    assert_eq!(s, 400);
    sim.call(
        &t,
        "PUT",
        &ftp,
        Some(json!({"properties": {"allow": false}})),
    )
    .await;
    let (_, _, p) = sim.call(&t, "GET", &ftp, None).await;
    assert_eq!(p["properties"]["allow"], false);
    let (s, _, _) = sim
        .call(
            &t,
            "POST",
            &format!("{app}/slots/nope/config/appsettings/list?{v}"),
            None,
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn nsg_rules_are_long_running_resources_unique_by_priority_and_direction() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let nsg = format!(
        "{}/Microsoft.Network/networkSecurityGroups/nsg-web",
        rg("rg-app")
    );
    let v = "api-version=2024-01-01";
    let rule = |priority: i64, direction: &str| {
        json!({"properties": {"priority": priority, "direction": direction, "access": "Deny", "protocol": "*",
            "sourceAddressPrefixes": ["203.0.113.5"], "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "*"}})
    };
    // The NSG embeds the world's rules, each its own resource.
    let (s, _, b) = sim.call(&t, "GET", &format!("{nsg}?{v}"), None).await;
    assert_eq!(s, 200);
    let names: Vec<&str> = b["properties"]["securityRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["AllowCorpSsh", "AllowHttps", "AllowMonitoringOut"]);
    // Validation: required fields, range, both forms, a priority taken in the same direction.
    for (body, code, says) in [
        (
            json!({"properties": {"priority": 200}}),
            "InvalidRequestFormat",
            "properties.protocol is required",
        ),
        (
            rule(99, "Inbound"),
            "SecurityRuleInvalidPriority",
            "Allowed range 100-4096",
        ),
        (
            {
                let mut r = rule(200, "Inbound");
                r["properties"]["sourceAddressPrefix"] = json!("10.0.0.1");
                r
            },
            "SecurityRuleInvalidParameter",
            "cannot both be given",
        ),
        (
            {
                let mut r = rule(200, "Inbound");
                r["properties"]["destinationPortRange"] = json!("90-80");
                r
            },
            "SecurityRuleInvalidParameter",
            "destinationPortRange",
        ),
        (
            rule(110, "Inbound"),
            "SecurityRuleConflict",
            "conflicts with rule AllowHttps",
        ),
    ] {
        let (s, _, b) = sim
            .call(
                &t,
                "PUT",
                &format!("{nsg}/securityRules/ours?{v}"),
                Some(body),
            )
            .await;
        assert_eq!((s, b["error"]["code"].as_str()), (400, Some(code)), "{b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(says),
            "{b}"
        );
    }
    // Priority 110 is free outbound. The PUT is long-running (201, Azure-AsyncOperation only),
    // and the NSG is busy meanwhile.
    let (s, h, b) = sim
        .call(
            &t,
            "PUT",
            &format!("{nsg}/securityRules/ours?{v}"),
            Some(rule(110, "Outbound")),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["properties"]["provisioningState"], "Updating");
    assert!(h.get("location").is_none());
    let op = h["azure-asyncoperation"].to_str().unwrap().to_string();
    assert!(
        op.contains("/providers/Microsoft.Network/locations/"),
        "{op}"
    );
    let (s, h, b) = sim
        .call(
            &t,
            "PUT",
            &format!("{nsg}/securityRules/other?{v}"),
            Some(rule(120, "Inbound")),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (429, Some("RetryableErrorDueToAnotherOperation")),
        "{b}"
    );
    assert!(h.contains_key("retry-after"));
    assert_eq!(sim.poll(&t, &op).await.last().unwrap(), "Succeeded");
    // The operator reads rules through the NSG (it holds no securityRules/read).
    let (s, _, _) = sim
        .call(&t, "GET", &format!("{nsg}/securityRules/ours?{v}"), None)
        .await;
    assert_eq!(s, 403);
    let ours = async || {
        let (s, _, b) = sim.call(&t, "GET", &format!("{nsg}?{v}"), None).await;
        assert_eq!(s, 200, "{b}");
        b["properties"]["securityRules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "ours")
            .cloned()
    };
    let got = ours().await.expect("rule ours is embedded in the NSG");
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");
    assert_eq!(got["properties"]["direction"], "Outbound");
    // DELETE: 202 with Location only (final-state-via location); absent: 204.
    let (s, h, _) = sim
        .call(&t, "DELETE", &format!("{nsg}/securityRules/ours?{v}"), None)
        .await;
    assert_eq!(s, 202);
    assert!(h.get("azure-asyncoperation").is_none());
    let loc = h["location"].to_str().unwrap().to_string();
    let mut done = 202;
    for _ in 0..100 {
        done = sim.call(&t, "GET", &loc, None).await.0;
        if done != 202 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(matches!(done, 200 | 204), "{done}");
    assert!(ours().await.is_none());
    let (s, _, _) = sim
        .call(&t, "DELETE", &format!("{nsg}/securityRules/ours?{v}"), None)
        .await;
    assert_eq!(s, 204);
}
