//! The same matrix for every kind: DryRun and Observe write nothing and publish the plan; Enforce
//! reaches Ready with exactly the minimal writes, also through a storm of 429s and 5xx; a second
//! reconcile writes nothing; and for long-running operations, a SIGKILL mid-operation is resumed
//! without a second write.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::{Value, json};
use support::*;

struct Case {
    kind: &'static str,
    spec: Value,
    /// Successful Azure writes Enforce needs.
    writes: usize,
    /// Regex of the request paths to inject faults on.
    fault_path: &'static str,
    /// The first write is a long-running operation.
    lro: bool,
}

fn case(kind: &str) -> Case {
    let c = |kind, spec, writes, fault_path, lro| Case {
        kind,
        spec,
        writes,
        fault_path,
        lro,
    };
    match kind {
        "SqlIpBlock" => c(
            "SqlIpBlock",
            json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
            3,
            "sql-prod-01/firewallRules/",
            false,
        ),
        "SqlPublicAccessLockdown" => c(
            "SqlPublicAccessLockdown",
            json!({"target": target(SQL_PROD)}),
            1,
            "servers/sql-prod-01$",
            true,
        ),
        "SqlAdminPasswordRotation" => c(
            "SqlAdminPasswordRotation",
            json!({"target": target(SQL_PROD), "publishTo": {"secretName": "sql-admin"}}),
            1,
            "servers/sql-prod-01$",
            true,
        ),
        "SqlEntraOnlyAuthentication" => c(
            "SqlEntraOnlyAuthentication",
            json!({"target": target(SQL_PROD)}),
            1,
            "azureADOnlyAuthentications/Default$",
            true,
        ),
        "SqlTransparentDataEncryption" => c(
            "SqlTransparentDataEncryption",
            json!({"target": target(SQL_PROD), "databases": ["orders"]}),
            1,
            "orders/transparentDataEncryption/current$",
            true,
        ),
        "SqlAuditing" => c(
            "SqlAuditing",
            json!({"target": target(SQL_PROD), "azureMonitor": true}),
            1,
            "auditingSettings/default$",
            true,
        ),
        "StorageKeyRotation" => c(
            "StorageKeyRotation",
            json!({"target": target(STORAGE)}),
            2,
            "stprod01/regenerateKey",
            false,
        ),
        "StoragePublicAccessLockdown" => c(
            "StoragePublicAccessLockdown",
            json!({"target": target(STORAGE)}),
            1,
            "storageAccounts/stprod01$",
            false,
        ),
        "StorageSasRevocation" => c(
            "StorageSasRevocation",
            json!({"target": target(STORAGE)}),
            1,
            "revokeUserDelegationKeys",
            false,
        ),
        "StorageSoftDeleteProtection" => c(
            "StorageSoftDeleteProtection",
            json!({"target": target(STORAGE)}),
            1,
            "stprod01/blobServices/default$",
            false,
        ),
        "StorageDefenderProtection" => c(
            "StorageDefenderProtection",
            json!({"target": target(STORAGE), "malwareScanning": {}, "sensitiveDataDiscovery": true}),
            1,
            "defenderForStorageSettings/current$",
            false,
        ),
        "CosmosKeyRotation" => c(
            "CosmosKeyRotation",
            json!({"target": target(COSMOS)}),
            2,
            "cosmos-prod-01/regenerateKey",
            true,
        ),
        "CosmosPublicAccessLockdown" => c(
            "CosmosPublicAccessLockdown",
            json!({"target": target(COSMOS)}),
            1,
            "databaseAccounts/cosmos-prod-01$",
            true,
        ),
        "DefenderAlertState" => c(
            "DefenderAlertState",
            json!({"target": target(ALERT), "state": "Resolved"}),
            1,
            "/resolve$",
            false,
        ),
        "WafIpBlock" => c(
            "WafIpBlock",
            json!({"target": target(FD_WAF), "policyType": "FrontDoor", "ipAddresses": ["203.0.113.7"]}),
            1,
            "FrontDoorWebApplicationFirewallPolicies/fdwafprod$",
            true,
        ),
        "NsgDenyRule" => c(
            "NsgDenyRule",
            json!({"target": target(NSG), "ipAddresses": ["203.0.113.7"]}),
            1,
            "/securityRules/ctr-deny-in-[0-9a-f]+$",
            true,
        ),
        "ArcRunCommand" => c(
            "ArcRunCommand",
            json!({"target": target(ARC), "script": "echo contained"}),
            2,
            "/runCommands/ctr-[0-9a-f]+$",
            true,
        ),
        "ArcIsolation" => c(
            "ArcIsolation",
            json!({"target": target(ARC)}),
            1,
            "/api/machines/.*/isolate$",
            false,
        ),
        "DeviceIsolation" => c(
            "DeviceIsolation",
            json!({"target": {"computerDnsName": WS_NAME}}),
            1,
            "/api/machines/.*/isolate$",
            false,
        ),
        "DeviceCodeRestriction" => c(
            "DeviceCodeRestriction",
            json!({"target": {"deviceId": WS_DEVICE}}),
            1,
            "/restrictCodeExecution$",
            false,
        ),
        "ThreatSubmission" => c(
            "ThreatSubmission",
            json!({"submissionType": "Url", "category": "phishing", "url": "https://evil.example/x"}),
            1,
            "threatSubmission/urlThreats$",
            false,
        ),
        "EmailRemediation" => c(
            "EmailRemediation",
            json!({"emails": [{"networkMessageId": "6f1c0d9e-0000-4000-8000-000000000001", "recipientEmailAddress": "alice@contoso.example"}]}),
            1,
            "analyzedEmails/remediate$",
            false,
        ),
        "ThreatIndicator" => c(
            "ThreatIndicator",
            json!({"indicatorType": "IpAddress", "value": "203.0.113.66"}),
            1,
            "/api/indicators/import$",
            false,
        ),
        "ConsentLockdown" => c(
            "ConsentLockdown",
            json!({"userConsent": "Disabled"}),
            1,
            "policies/authorizationPolicy$",
            false,
        ),
        "UserContainment" => c(
            "UserContainment",
            json!({"target": {"userPrincipalName": "mallory@contoso.example"}}),
            2,
            "/v1.0/users/[^/]+$",
            false,
        ),
        "ServicePrincipalContainment" => c(
            "ServicePrincipalContainment",
            json!({"target": {"objectId": "44444444-0000-4000-8000-000000000004"}}),
            1,
            "/v1.0/servicePrincipals/[^/]+$",
            false,
        ),
        "AppServiceSecretRotation" => c(
            "AppServiceSecretRotation",
            json!({"target": target(APP), "settingsFrom": {"secretName": "app-secrets"}}),
            1,
            "app-portal/config/appsettings$",
            false,
        ),
        "AppServiceRestart" => c(
            "AppServiceRestart",
            json!({"target": target(APP)}),
            1,
            "app-portal/restart$",
            false,
        ),
        "PrivilegedAccessPolicy" => c(
            "PrivilegedAccessPolicy",
            json!({"users": ["33333333-0000-4000-8000-0000000000a1"], "breakGlassAccounts": ["33333333-0000-4000-8000-0000000000e1"], "reportOnlyFor": "0s"}),
            1,
            "/v1.0/identity/conditionalAccess/policies",
            false,
        ),
        other => panic!("no matrix case for {other}"),
    }
}

fn with_mode(spec: &Value, mode: &str) -> Value {
    let mut s = spec.clone();
    s["mode"] = json!(mode);
    s
}

async fn matrix(kind: &str) {
    let c = case(kind);
    assert_eq!(c.kind, kind);

    // DryRun and Observe: the plan, and nothing sent.
    let env = Env::new("e2e-matrix").await;
    env.prerequisites(kind).await;
    let _op = env.operator();
    env.apply(kind, "dry", with_mode(&c.spec, "DryRun")).await;
    env.apply(kind, "watch", with_mode(&c.spec, "Observe"))
        .await;
    let dry = env
        .wait_condition(kind, "dry", "Ready", "True", Some("DryRun"))
        .await;
    assert!(
        !dry["status"]["plan"].as_array().unwrap().is_empty(),
        "{kind}: DryRun publishes its plan"
    );
    let obs = env
        .wait_condition(kind, "watch", "Ready", "False", Some("NotCompliant"))
        .await;
    assert!(!obs["status"]["plan"].as_array().unwrap().is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        env.sim.writes().await.is_empty(),
        "{kind}: DryRun/Observe wrote: {:?}",
        env.sim.writes().await
    );
    drop(_op);

    // Enforce through 429s and 5xx: Ready, with exactly the minimal successful writes.
    let env = Env::new("e2e-matrix").await;
    env.prerequisites(kind).await;
    env.sim
        .fault(json!({"match": {"pathRegex": c.fault_path}, "status": 503, "count": 2}))
        .await;
    env.sim.fault(json!({"match": {"pathRegex": c.fault_path}, "status": 429, "count": 3, "retryAfterSeconds": 1})).await;
    let _op = env.operator();
    env.apply(kind, "x", c.spec.clone()).await;
    env.wait_ready(kind, "x").await;
    let ok = env.sim.successful_writes().await;
    assert_eq!(ok.len(), c.writes, "{kind}: {ok:?}");
    let faulted = env
        .sim
        .requests()
        .await
        .iter()
        .filter(|r| r["status"] == 503 || r["status"] == 429)
        .count();
    assert_eq!(faulted, 5, "{kind}: every injected fault was hit");
    // A second reconcile (drift check) writes nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.sim.successful_writes().await.len(),
        c.writes,
        "{kind}: a compliant re-check wrote"
    );
    drop(_op);

    if c.lro {
        // SIGKILL while Azure runs the long-running operation: resumed, not re-sent.
        let env = Env::new("e2e-matrix").await;
        env.prerequisites(kind).await;
        env.sim.settings(json!({"lroDelayMs": 3000})).await;
        let mut op = env.operator();
        env.apply(kind, "x", c.spec.clone()).await;
        env.wait(
            kind,
            "x",
            "a pending operation",
            Duration::from_secs(20),
            |o| o.is_some_and(|o| o["status"]["azure"]["pendingOperation"].is_string()),
        )
        .await;
        op.kill();
        env.sim.settings(json!({"lroDelayMs": 300})).await;
        let _op = env.operator();
        env.wait_ready(kind, "x").await;
        assert_eq!(
            env.sim.successful_writes().await.len(),
            c.writes,
            "{kind}: an operation was re-sent after the restart"
        );
    }
}

macro_rules! matrix_tests {
    ($($name:ident => $kind:literal),* $(,)?) => {
        $(#[tokio::test]
        async fn $name() {
            matrix($kind).await;
        })*

        #[test]
        fn every_kind_is_in_the_matrix() {
            let mut covered = vec![$($kind),*];
            covered.sort();
            let mut all: Vec<&str> = containment_operator::kinds::KINDS.iter().map(|k| k.kind).collect();
            all.sort();
            assert_eq!(covered, all);
        }
    };
}

matrix_tests! {
    sql_ip_block => "SqlIpBlock",
    sql_public_access_lockdown => "SqlPublicAccessLockdown",
    sql_entra_only_authentication => "SqlEntraOnlyAuthentication",
    sql_transparent_data_encryption => "SqlTransparentDataEncryption",
    sql_auditing => "SqlAuditing",
    sql_admin_password_rotation => "SqlAdminPasswordRotation",
    storage_key_rotation => "StorageKeyRotation",
    storage_public_access_lockdown => "StoragePublicAccessLockdown",
    storage_sas_revocation => "StorageSasRevocation",
    storage_soft_delete_protection => "StorageSoftDeleteProtection",
    storage_defender_protection => "StorageDefenderProtection",
    cosmos_key_rotation => "CosmosKeyRotation",
    cosmos_public_access_lockdown => "CosmosPublicAccessLockdown",
    defender_alert_state => "DefenderAlertState",
    waf_ip_block => "WafIpBlock",
    arc_isolation => "ArcIsolation",
    arc_run_command => "ArcRunCommand",
    nsg_deny_rule => "NsgDenyRule",
    device_isolation => "DeviceIsolation",
    device_code_restriction => "DeviceCodeRestriction",
    threat_submission => "ThreatSubmission",
    email_remediation => "EmailRemediation",
    consent_lockdown => "ConsentLockdown",
    threat_indicator => "ThreatIndicator",
    user_containment => "UserContainment",
    service_principal_containment => "ServicePrincipalContainment",
    privileged_access_policy => "PrivilegedAccessPolicy",
    app_service_restart => "AppServiceRestart",
    app_service_secret_rotation => "AppServiceSecretRotation",
}

/// The fault-and-race run: one of every kind (and two blocks on one server) at once, while the
/// operator is SIGKILLed at random moments and azure-sim answers 429s and 5xx, loses answers and
/// fails operations. No non-idempotent action is duplicated, and everything ends Ready, or
/// Stalled with a reason.
#[tokio::test]
async fn a_burst_through_kills_and_faults_duplicates_no_action() {
    let env = Env::new("e2e-storm").await;
    env.sim.settings(json!({"lroDelayMs": 1500})).await;
    for f in [
        // The first Cosmos rotation's operation fails (so exactly one call is sent again), the
        // next one's answer is lost (so it must be resolved from evidence, never re-sent).
        json!({"match": {"method": "POST", "pathRegex": "cosmos-prod-01/regenerateKey$"}, "failOperation": true}),
        json!({"match": {"method": "POST", "pathRegex": "cosmos-prod-01/regenerateKey$"}, "loseAnswer": true}),
        json!({"match": {"method": "POST", "pathRegex": "stprod01/regenerateKey$"}, "loseAnswer": true}),
        json!({"match": {"method": "POST", "pathRegex": "/api/machines/.*/isolate$"}, "loseAnswer": true}),
        json!({"match": {"method": "POST", "pathRegex": "/restrictCodeExecution$"}, "loseAnswer": true}),
        json!({"match": {"method": "POST", "pathRegex": "/api/indicators/import$"}, "loseAnswer": true}),
        json!({"match": {"method": "POST", "pathRegex": "/revokeSignInSessions$"}, "loseAnswer": true}),
        json!({"match": {"method": "POST", "pathRegex": "/identity/conditionalAccess/policies$"}, "loseAnswer": true}),
        json!({"match": {"method": "PATCH", "pathRegex": "servers/sql-prod-01$"}, "failOperation": true}),
        json!({"match": {"method": "PATCH"}, "status": 503, "count": 2}),
        json!({"match": {"method": "PUT"}, "status": 500, "count": 2}),
        json!({"match": {}, "status": 429, "count": 6, "retryAfterSeconds": 1}),
    ] {
        env.sim.fault(f).await;
    }
    let kinds: Vec<&str> = containment_operator::kinds::KINDS
        .iter()
        .map(|k| k.kind)
        .collect();
    for kind in &kinds {
        env.prerequisites(kind).await;
        env.apply(kind, "x", case(kind).spec).await;
    }
    env.apply(
        "SqlIpBlock",
        "y",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.9"]}),
    )
    .await;
    let args = ["--unconfirmed-action-wait", "20s"];
    for _ in 0..4 {
        let mut op = Operator::start(&env, &args);
        let after = Duration::from_millis(500 + rand::random::<u64>() % 2500);
        tokio::time::sleep(after).await;
        op.kill();
    }
    let _op = Operator::start(&env, &args);
    let mut names: Vec<(&str, &str)> = kinds.iter().map(|k| (*k, "x")).collect();
    names.push(("SqlIpBlock", "y"));
    for (kind, name) in &names {
        env.wait(
            kind,
            name,
            "Ready or Stalled",
            Duration::from_secs(120),
            |o| {
                o.is_some_and(|o| {
                    condition(o, "Ready").is_some_and(|c| c["status"] == "True")
                        || condition(o, "Stalled").is_some_and(|c| {
                            c["status"] == "True"
                                && c["reason"].as_str().is_some_and(|r| !r.is_empty())
                        })
                })
            },
        )
        .await;
    }
    let accepted = |is: fn(&str) -> bool, writes: &[(String, String, u16)]| {
        writes
            .iter()
            .filter(|(m, p, s)| m == "POST" && is(p) && (200..300).contains(s))
            .count()
    };
    // Through the kills, one password per run: the one Azure holds is the one published.
    let secret = Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .get("sql-admin")
        .await
        .unwrap();
    let published = String::from_utf8(secret.data.unwrap()["password"].0.clone()).unwrap();
    let held = env
        .sim
        .admin(reqwest::Method::GET, &format!("/_sim/keys{SQL_PROD}"), None)
        .await["administratorLoginPassword"]
        .clone();
    assert_eq!(held, json!(published), "Azure holds the published password");
    let writes = env.sim.writes().await;
    assert_eq!(
        accepted(|p| p.ends_with("stprod01/regenerateKey"), &writes),
        2,
        "each storage key once: {writes:?}"
    );
    assert_eq!(
        accepted(|p| p.ends_with("cosmos-prod-01/regenerateKey"), &writes),
        3,
        "each Cosmos key once, plus the one whose operation failed: {writes:?}"
    );
    assert_eq!(
        accepted(|p| p == format!("/api/machines/{DEVICE}/isolate"), &writes),
        1,
        "one isolation of the Arc server's device: {writes:?}"
    );
    assert_eq!(
        accepted(
            |p| p == format!("/api/machines/{WS_DEVICE}/isolate"),
            &writes
        ),
        1,
        "one isolation of the workstation: {writes:?}"
    );
    assert_eq!(
        accepted(|p| p.ends_with("/restrictCodeExecution"), &writes),
        1,
        "one code restriction: {writes:?}"
    );
    assert_eq!(
        accepted(|p| p.ends_with("/revokeSignInSessions"), &writes),
        1,
        "one revocation of the user's sessions (its answer lost): {writes:?}"
    );
    assert_eq!(
        accepted(|p| p.ends_with("threatSubmission/urlThreats"), &writes),
        1,
        "one submission: {writes:?}"
    );
    // A lost import answer is sent again: an upsert, so still one indicator.
    let listed = env
        .sim
        .as_operator(
            reqwest::Method::GET,
            "/api/indicators?$top=10000",
            MDE_SCOPE,
            None,
        )
        .await;
    let same: Vec<&Value> = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["indicatorValue"] == "203.0.113.66")
        .collect();
    assert_eq!(same.len(), 1, "one indicator: {listed}");
    // A lost create answer may leave a twin Conditional Access policy: it is found by its tag
    // and deleted, so one is left.
    let policies = env
        .sim
        .as_operator(
            reqwest::Method::GET,
            "/v1.0/identity/conditionalAccess/policies",
            "https://graph.microsoft.com/.default",
            None,
        )
        .await;
    let ours = policies["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["displayName"]
                .as_str()
                .unwrap()
                .contains("containment-operator/")
        })
        .count();
    assert_eq!(ours, 1, "one Conditional Access policy: {policies}");
    let rules = env.sim.firewall_rules(SQL_PROD).await;
    let n = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
    for ip in ["203.0.113.7", "203.0.113.9"] {
        assert!(
            !rules.iter().any(|(_, a, b)| n(a) <= n(ip) && n(ip) <= n(b))
                || env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"]
                    == "Disabled",
            "{ip} admitted: {rules:?}"
        );
    }
}
