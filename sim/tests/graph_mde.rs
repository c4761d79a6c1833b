//! Microsoft Graph and Defender for Endpoint.

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn threat_submission_progresses_to_a_verdict_and_needs_the_permission() {
    let sim = start().await;
    let g = sim.token(OPERATOR, GRAPH).await;
    let (s, _, b) = sim.call(&g, "POST", "/beta/security/threatSubmission/urlThreats", Some(json!({"@odata.type": "#microsoft.graph.security.urlThreatSubmission", "category": "phishing", "webUrl": "http://phish.example/login"}))).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["status"], "notStarted");
    let id = b["id"].as_str().unwrap().to_string();
    let mut seen = vec![];
    for _ in 0..40 {
        let (_, _, b) = sim
            .call(
                &g,
                "GET",
                &format!("/beta/security/threatSubmission/urlThreats/{id}"),
                None,
            )
            .await;
        let st = b["status"].as_str().unwrap().to_string();
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        if st == "succeeded" {
            assert_eq!(b["result"]["category"], "phishing");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, vec!["notStarted", "running", "succeeded"]);
    let (s, _, b) = sim.call(&g, "POST", "/beta/security/threatSubmission/urlThreats", Some(json!({"@odata.type": "#microsoft.graph.security.fileUrlThreatSubmission", "category": "malware"}))).await;
    assert_eq!(s, 400, "{b}");
    let auditor = sim.token(AUDITOR, GRAPH).await;
    let (s, _, b) = sim
        .call(
            &auditor,
            "GET",
            &format!("/beta/security/threatSubmission/urlThreats/{id}"),
            None,
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (403, "Authorization_RequestDenied")
    );
}

#[tokio::test]
async fn users_can_be_disabled_and_sessions_revoked_with_the_right_permission() {
    let sim = start_with(|mut w| {
        w.principals[0]
            .graph_permissions
            .push("User.ReadWrite.All".into());
        w
    })
    .await;
    let g = sim.token(OPERATOR, GRAPH).await;
    let u = "/v1.0/users/mallory@contoso.example";
    assert_eq!(
        sim.call(&g, "PATCH", u, Some(json!({"accountEnabled": false})))
            .await
            .0,
        204
    );
    assert_eq!(
        sim.call(&g, "GET", u, None).await.2["accountEnabled"],
        false
    );
    let (s, _, b) = sim
        .call(&g, "POST", &format!("{u}/revokeSignInSessions"), None)
        .await;
    assert_eq!((s, b["value"].as_bool()), (200, Some(true)));
    let a = sim.token(AUDITOR, GRAPH).await;
    assert_eq!(
        sim.call(&a, "PATCH", u, Some(json!({"accountEnabled": true})))
            .await
            .0,
        403
    );
}

const MACHINE: &str = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07";

#[tokio::test]
async fn isolation_is_a_machine_action_and_a_second_one_is_refused_while_pending() {
    let sim = start().await;
    let m = sim.token(OPERATOR, MDE).await;
    let (s, _, b) = sim
        .call(
            &m,
            "GET",
            "/api/machines?$filter=computerDnsName%20eq%20%27ARC-WEB-01.corp.contoso.example%27",
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        b["value"].as_array().unwrap().len(),
        1,
        "match is case-insensitive: {b}"
    );
    assert_eq!(b["value"][0]["id"], MACHINE);

    let iso = format!("/api/machines/{MACHINE}/isolate");
    let (s, _, a) = sim
        .call(
            &m,
            "POST",
            &iso,
            Some(json!({"Comment": "INC-4711", "IsolationType": "Selective"})),
        )
        .await;
    assert_eq!(
        (
            s,
            a["status"].as_str(),
            a["type"].as_str(),
            a["scope"].as_str()
        ),
        (201, Some("Pending"), Some("Isolate"), Some("Selective"))
    );
    // The same action again while one is pending is refused (the docs); an opposite one would
    // be accepted (see the device kinds' race test).
    let (s, _, b) = sim
        .call(
            &m,
            "POST",
            &iso,
            Some(json!({"Comment": "again", "IsolationType": "Selective"})),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("ActiveRequestAlreadyExists"))
    );
    let id = a["id"].as_str().unwrap();
    let mut statuses = vec![];
    for _ in 0..40 {
        let (_, _, b) = sim
            .call(&m, "GET", &format!("/api/machineactions/{id}"), None)
            .await;
        let st = b["status"].as_str().unwrap().to_string();
        if statuses.last() != Some(&st) {
            statuses.push(st.clone());
        }
        if st == "Succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    assert_eq!(statuses, vec!["Pending", "InProgress", "Succeeded"]);
    let (_, _, list) = sim.call(&m, "GET", &format!("/api/machineactions?$filter=machineId%20eq%20%27{MACHINE}%27%20and%20type%20eq%20%27Isolate%27"), None).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        sim.call(
            &m,
            "POST",
            &format!("/api/machines/{MACHINE}/unisolate"),
            Some(json!({"Comment": "undo"}))
        )
        .await
        .0,
        201
    );
}

#[tokio::test]
async fn mde_permissions_and_per_minute_rate_limit() {
    let sim = start_with(|mut w| {
        w.mde.calls_per_minute = 3;
        w
    })
    .await;
    let a = sim.token(AUDITOR, MDE).await;
    let (s, _, b) = sim.call(&a, "GET", "/api/machines", None).await;
    assert_eq!((s, b["error"]["code"].as_str()), (403, Some("Forbidden")));
    let m = sim.token(OPERATOR, MDE).await;
    for _ in 0..3 {
        assert_eq!(
            sim.call(&m, "GET", "/api/machineactions", None).await.0,
            200
        );
    }
    let (s, h, _) = sim.call(&m, "GET", "/api/machineactions", None).await;
    assert_eq!(s, 429);
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn indicators_upsert_filter_and_delete() {
    let sim = start_with(|mut w| {
        w.principals[0].mde_permissions.push("Ti.ReadWrite".into());
        w
    })
    .await;
    let m = sim.token(OPERATOR, MDE).await;
    let ind = json!({"indicatorValue": "203.0.113.5", "indicatorType": "IpAddress", "action": "Block", "title": "t", "description": "d"});
    let (s, _, a) = sim
        .call(&m, "POST", "/api/indicators", Some(ind.clone()))
        .await;
    assert_eq!(s, 200);
    let (_, _, b) = sim.call(&m, "POST", "/api/indicators", Some(ind)).await;
    assert_eq!(a["id"], b["id"], "POST is an upsert");
    let bad = json!({"indicatorValue": "203.0.113.0/24", "indicatorType": "IpAddress", "action": "Block", "title": "t", "description": "d"});
    assert_eq!(
        sim.call(&m, "POST", "/api/indicators", Some(bad)).await.0,
        400,
        "no CIDR"
    );
    let (_, _, l) = sim
        .call(
            &m,
            "GET",
            "/api/indicators?$filter=indicatorValue%20eq%20%27203.0.113.5%27",
            None,
        )
        .await;
    assert_eq!(l["value"].as_array().unwrap().len(), 1);
    let id = a["id"].as_str().unwrap();
    assert_eq!(
        sim.call(&m, "DELETE", &format!("/api/indicators/{id}"), None)
            .await
            .0,
        204
    );
    assert_eq!(
        sim.call(&m, "DELETE", &format!("/api/indicators/{id}"), None)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn authorization_policy_read_and_patch_need_their_permissions() {
    let sim = start_with(|mut w| {
        w.principals[0]
            .graph_permissions
            .push("Policy.ReadWrite.Authorization".into());
        w
    })
    .await;
    let g = sim.token(OPERATOR, GRAPH).await;
    let p = "/v1.0/policies/authorizationPolicy";
    let body = json!({"defaultUserRolePermissions": {"permissionGrantPoliciesAssigned": []}});
    assert_eq!(sim.call(&g, "PATCH", p, Some(body)).await.0, 204);
    let (s, _, b) = sim.call(&g, "GET", p, None).await;
    assert_eq!(
        (
            s,
            b["defaultUserRolePermissions"]["permissionGrantPoliciesAssigned"].clone()
        ),
        (200, json!([]))
    );
    let a = sim.token(AUDITOR, GRAPH).await;
    assert_eq!(sim.call(&a, "GET", p, None).await.0, 403);
}

/// Graph and MDE lists are paged with `@odata.nextLink` (absolute, the same filter kept), and a
/// filtered machine list that matches nothing is a 404, as in Defender for Endpoint.
#[tokio::test]
async fn lists_page_through_odata_next_link_and_an_empty_machine_filter_is_404() {
    let sim = start().await;
    let (s, _) = sim
        .admin("POST", "/_sim/settings", Some(json!({"odataPageSize": 1})))
        .await;
    assert_eq!(s, 200);
    let g = sim.token(OPERATOR, GRAPH).await;
    for url in [
        "https://a.example/",
        "https://b.example/",
        "https://c.example/",
    ] {
        let (s, _, _) = sim
            .call(
                &g,
                "POST",
                "/beta/security/threatSubmission/urlThreats",
                Some(json!({"@odata.type": "#microsoft.graph.security.urlThreatSubmission", "category": "spam", "webUrl": url})),
            )
            .await;
        assert_eq!(s, 201);
    }
    let mut seen = Vec::new();
    let mut next = Some("/beta/security/threatSubmission/urlThreats".to_string());
    while let Some(url) = next.take() {
        let (s, _, page) = sim.call(&g, "GET", &url, None).await;
        assert_eq!(s, 200, "{url}");
        let items = page["value"].as_array().unwrap();
        assert!(items.len() <= 1);
        seen.extend(
            items
                .iter()
                .map(|i| i["webUrl"].as_str().unwrap().to_string()),
        );
        next = page["@odata.nextLink"].as_str().map(|n| {
            assert!(n.starts_with(&sim.url), "absolute: {n}");
            n.to_string()
        });
    }
    assert_eq!(
        seen,
        [
            "https://a.example/",
            "https://b.example/",
            "https://c.example/"
        ]
    );

    let m = sim.token(OPERATOR, MDE).await;
    let (s, _, b) = sim
        .call(
            &m,
            "GET",
            "/api/machines?$filter=computerDnsName%20eq%20'nobody.example'",
            None,
        )
        .await;
    assert_eq!(s, 404, "{b}");
}

/// Conditional Access policies as the v1.0 CSDL shapes them: created with 201 and an id, the
/// required properties and enums checked, read-only fields refused on PATCH; writes need both
/// `Policy.Read.All` and `Policy.ReadWrite.ConditionalAccess`; a new policy is missing from the
/// list until replicas catch up.
#[tokio::test]
async fn conditional_access_policies_are_validated_replicated_late_and_need_both_permissions() {
    let sim = start_with(|mut w| {
        w.settings.graph_replication_lag_ms = 400;
        w
    })
    .await;
    let g = sim.token(OPERATOR, GRAPH).await;
    let p = "/v1.0/identity/conditionalAccess/policies";
    let good = json!({"displayName": "admins need MFA", "state": "enabledForReportingButNotEnforced",
        "conditions": {"clientAppTypes": ["all"], "applications": {"includeApplications": ["All"]},
                       "users": {"includeRoles": ["62e90394-69f5-4237-9190-012177145e10"], "excludeUsers": ["33333333-0000-4000-8000-0000000000e1"]}},
        "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}});
    let bad = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };
    for (body, why) in [
        (bad(&|b| b["state"] = json!("on")), "state"),
        (bad(&|b| b["displayName"] = json!("")), "displayName"),
        (
            bad(&|b| b["conditions"]["clientAppTypes"] = json!([])),
            "clientAppTypes",
        ),
        (bad(&|b| b["conditions"]["users"] = json!({})), "users"),
        (
            bad(&|b| {
                b["conditions"]["users"]["excludeUsers"] = json!(["emergency@contoso.example"])
            }),
            "excludeUsers",
        ),
        (
            bad(&|b| b["grantControls"]["builtInControls"] = json!(["mfaPlease"])),
            "builtInControls",
        ),
        (
            bad(&|b| b["grantControls"]["operator"] = json!("XOR")),
            "operator",
        ),
        (
            bad(&|b| b["conditions"]["applications"] = json!({"includeApplications": []})),
            "includeApplications",
        ),
    ] {
        let (s, _, b) = sim.call(&g, "POST", p, Some(body)).await;
        assert_eq!(s, 400, "{why}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(why),
            "{why}: {b}"
        );
    }
    let (s, _, created) = sim.call(&g, "POST", p, Some(good.clone())).await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert!(created["createdDateTime"].is_string());
    let listed = |b: &serde_json::Value| {
        b["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id.as_str())
    };
    // The world's own policy is listed at once, the new one only after the lag.
    let (_, _, b) = sim.call(&g, "GET", p, None).await;
    assert!(!listed(&b), "{b}");
    assert_eq!(b["value"].as_array().unwrap().len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    let (_, _, b) = sim.call(&g, "GET", p, None).await;
    assert!(listed(&b), "{b}");
    let one = format!("{p}/{id}");
    let (s, _, b) = sim
        .call(
            &g,
            "PATCH",
            &one,
            Some(json!({"createdDateTime": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        sim.call(&g, "PATCH", &one, Some(json!({"state": "enabled"})))
            .await
            .0,
        204
    );
    let (_, _, b) = sim.call(&g, "GET", &one, None).await;
    assert_eq!(
        (b["state"].as_str(), b["modifiedDateTime"].is_string()),
        (Some("enabled"), true)
    );
    // Either permission reads; a write needs both.
    for missing in ["Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"] {
        let sim = start_with(|mut w| {
            w.principals[0].graph_permissions.retain(|x| x != missing);
            w
        })
        .await;
        let t = sim.token(OPERATOR, GRAPH).await;
        assert_eq!(sim.call(&t, "GET", p, None).await.0, 200, "{missing}");
        let (s, _, b) = sim.call(&t, "POST", p, Some(good.clone())).await;
        assert_eq!(s, 403, "{missing}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(missing),
            "{b}"
        );
    }
    assert_eq!(sim.call(&g, "DELETE", &one, None).await.0, 204);
    assert_eq!(sim.call(&g, "GET", &one, None).await.0, 404);
    let a = sim.token(AUDITOR, GRAPH).await;
    assert_eq!(sim.call(&a, "GET", p, None).await.0, 403);
}

#[tokio::test]
async fn email_remediation_checks_the_enum_and_types_and_answers_with_an_action_center_link() {
    let sim = start().await;
    let g = sim.token(OPERATOR, GRAPH).await;
    let url = "/v1.0/security/collaboration/analyzedEmails/remediate";
    let mail = json!([{"networkMessageId": "6f1c0d9e-0000-4000-8000-000000000001", "recipientEmailAddress": "alice@contoso.example"}]);
    for (body, why) in [
        (
            json!({"action": "moveToQuarantine", "analyzedEmails": mail}),
            "not supported",
        ),
        (
            json!({"action": "purge", "analyzedEmails": mail}),
            "not in the enum",
        ),
        (
            json!({"action": "moveToJunk", "remediateSendersCopy": "false", "analyzedEmails": mail}),
            "a string, not a boolean",
        ),
        (
            json!({"action": "moveToJunk", "analyzedEmails": []}),
            "no messages",
        ),
        (
            json!({"action": "moveToJunk", "severity": "critical", "analyzedEmails": mail}),
            "severity",
        ),
    ] {
        assert_eq!(sim.call(&g, "POST", url, Some(body)).await.0, 400, "{why}");
    }
    let (s, h, _) = sim
        .call(&g, "POST", url, Some(json!({"action": "moveToJunk", "remediateSendersCopy": false, "analyzedEmails": mail})))
        .await;
    assert_eq!(s, 202);
    let location = h["location"].to_str().unwrap();
    assert!(
        location.starts_with(
            "https://security.microsoft.com/action-center/history?filters=%7B%22bulkId%22"
        ),
        "{location}"
    );
    let auditor = sim.token(AUDITOR, GRAPH).await;
    let (s, _, b) = sim
        .call(
            &auditor,
            "POST",
            url,
            Some(json!({"action": "moveToJunk", "analyzedEmails": mail})),
        )
        .await;
    assert_eq!(s, 403);
    assert!(
        b.to_string()
            .contains("SecurityAnalyzedMessage.ReadWrite.All"),
        "{b}"
    );
}
