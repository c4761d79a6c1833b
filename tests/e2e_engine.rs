//! End to end, engine behaviour shared by every kind: expiry, leader election, health and
//! metrics endpoints, DryRun of an action.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[tokio::test]
async fn expires_at_releases_the_containment_and_keeps_the_resource() {
    let env = Env::new("e2e-expiry").await;
    let _op = env.operator();
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(6);
    env.apply(
        "StoragePublicAccessLockdown",
        "boxed",
        json!({"target": target(STORAGE), "expiresAt": expires.to_string()}),
    )
    .await;
    env.wait_condition(
        "StoragePublicAccessLockdown",
        "boxed",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    assert_eq!(
        env.sim.resource(STORAGE).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
    let o = env
        .wait(
            "StoragePublicAccessLockdown",
            "boxed",
            "expiry",
            Duration::from_secs(30),
            |o| o.is_some_and(|o| condition(o, "Ready").is_some_and(|c| c["reason"] == "Expired")),
        )
        .await
        .unwrap();
    assert!(o["status"]["releasedTime"].is_string());
    let props = env.sim.resource(STORAGE).await["properties"].clone();
    assert_eq!(props["publicNetworkAccess"], "Enabled");
    assert_eq!(props["allowBlobPublicAccess"], true);
    // Released means released: later checks do not re-apply, and delete writes nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = env.sim.writes().await.len();
    assert_eq!(writes, 2, "one lockdown, one release");
    // Re-armed: a later expiresAt applies the containment again and clears the released mark,
    // so that the new expiry releases it again.
    let again = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(8);
    env.apply(
        "StoragePublicAccessLockdown",
        "boxed",
        json!({"target": target(STORAGE), "expiresAt": again.to_string()}),
    )
    .await;
    let o = env
        .wait_condition(
            "StoragePublicAccessLockdown",
            "boxed",
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
    assert!(o["status"]["releasedTime"].is_null(), "{o}");
    assert_eq!(
        env.sim.resource(STORAGE).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
    env.wait(
        "StoragePublicAccessLockdown",
        "boxed",
        "second expiry",
        Duration::from_secs(30),
        |o| o.is_some_and(|o| condition(o, "Ready").is_some_and(|c| c["reason"] == "Expired")),
    )
    .await;
    assert_eq!(
        env.sim.resource(STORAGE).await["properties"]["publicNetworkAccess"],
        "Enabled"
    );
    let writes = env.sim.writes().await.len();
    assert_eq!(writes, 4, "lockdown, release, lockdown, release");
    env.delete("StoragePublicAccessLockdown", "boxed").await;
    env.wait_gone("StoragePublicAccessLockdown", "boxed").await;
    assert_eq!(env.sim.writes().await.len(), writes);
}

#[tokio::test]
async fn two_replicas_never_act_twice_and_the_standby_takes_over() {
    let env = Env::new("e2e-leader").await;
    let args = ["--leader-elect=true", "--lease-duration", "3s"];
    let mut a = Operator::start(&env, &args);
    let mut b = Operator::start(&env, &args);
    env.apply(
        "SqlIpBlock",
        "ip",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    env.wait_ready("SqlIpBlock", "ip").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.sim.successful_writes().await.len(),
        3,
        "exactly one replica acted"
    );
    let leader_a = a.logs().contains("became the leader");
    let leader_b = b.logs().contains("became the leader");
    assert!(
        leader_a ^ leader_b,
        "exactly one leader: a={leader_a} b={leader_b}"
    );
    // The leader crashes; the standby takes the lease and corrects the next drift.
    let standby = if leader_a {
        a.kill();
        &b
    } else {
        b.kill();
        &a
    };
    env.sim
        .put(
            &format!("{SQL_PROD}/firewallRules/AllowAll"),
            json!({"properties": {"startIpAddress": "0.0.0.0", "endIpAddress": "255.255.255.255"}}),
        )
        .await;
    env.wait(
        "SqlIpBlock",
        "ip",
        "drift corrected by the standby",
        Duration::from_secs(30),
        |o| {
            o.is_some_and(|o| {
                o["status"]["driftCount"] == 1
                    && condition(o, "Ready").is_some_and(|c| c["status"] == "True")
            })
        },
    )
    .await;
    assert!(standby.logs().contains("became the leader"));
}

#[tokio::test]
async fn health_readiness_and_metrics_endpoints() {
    let env = Env::new("e2e-metrics").await;
    let op = env.operator();
    let addr = op.metrics_addr().await;
    env.apply(
        "SqlIpBlock",
        "ip",
        json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    let o = env.wait_ready("SqlIpBlock", "ip").await;
    assert_eq!(o["status"]["targetName"], "sql-prod-01");
    env.apply(
        "SqlIpBlock",
        "wrong",
        json!({"target": target(STORAGE), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    env.wait_condition(
        "SqlIpBlock",
        "wrong",
        "Stalled",
        "True",
        Some("InvalidTarget"),
    )
    .await;
    let get = |p: &str| {
        let url = format!("http://{addr}{p}");
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    // Ready once every kind's watch cache has synced (moments after start).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while get("/readyz").await.0 != 200 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get("/readyz").await.0, 200);
    assert_eq!(get("/nope").await.0, 404);
    let (status, m) = get("/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        r#"containment_reconciles_total{kind="SqlIpBlock",result="ok"}"#,
        r#"containment_azure_requests_total{operation="PUT Microsoft.Sql/servers/firewallRules",status="201"} 2"#,
        r#"containment_azure_requests_total{operation="DELETE Microsoft.Sql/servers/firewallRules",status="200"} 1"#,
        "containment_azure_writes_total 3",
        "containment_reconcile_duration_seconds_bucket",
        "containment_queue_depth",
        "containment_azure_throttled_total 0",
        // Counters start at 0 (so `increase()` sees the first drift).
        r#"containment_drifts_total{kind="SqlIpBlock"} 0"#,
    ] {
        assert!(m.contains(needle), "missing {needle} in:\n{m}");
    }
    // What is Ready / Stalled right now, counted from the watch cache at each scrape.
    let conditions = |rest: &str| {
        format!(
            "containment_resource_conditions{{kind=\"SqlIpBlock\",namespace=\"{}\",{rest}",
            env.ns
        )
    };
    for needle in [
        r#"condition="Ready",status="True",reason="Contained"} 1"#,
        r#"condition="Stalled",status="True",reason="InvalidTarget"} 1"#,
        r#"condition="Stalled",status="False",reason="Contained"} 1"#,
    ] {
        let needle = conditions(needle);
        assert!(m.contains(&needle), "missing {needle} in:\n{m}");
    }
    assert!(m.contains("containment_leader 1"), "{m}");
    // Every metric the chart's alerts and dashboard query is one this operator exports.
    let chart = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/containment-operator/files"
    );
    for file in ["prometheus-rules.yaml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(format!("{chart}/{file}")).unwrap();
        if file.ends_with(".json") {
            let d: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
            assert!(d["panels"].as_array().is_some_and(|p| p.len() >= 8), "{d}");
        }
        let names = metric_names(&text);
        assert!(names.len() >= 5, "{file}: {names:?}");
        for name in names {
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                m.contains(&format!("# TYPE {family} ")),
                "{file} queries {name}, which the operator does not export:\n{m}"
            );
        }
    }
    // A deleted containment leaves the count at once (no stale series).
    env.delete("SqlIpBlock", "wrong").await;
    env.wait_gone("SqlIpBlock", "wrong").await;
    let stalled = conditions(r#"condition="Stalled",status="True""#);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric_sum(&get("/metrics").await.1, &stalled) != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            get("/metrics").await.1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn dry_run_action_plans_without_rotating() {
    let env = Env::new("e2e-stkr-dry").await;
    let _op = env.operator();
    env.apply(
        "StorageKeyRotation",
        "dry",
        json!({"target": target(STORAGE), "mode": "DryRun", "keys": ["key2"]}),
    )
    .await;
    let o = env
        .wait_condition("StorageKeyRotation", "dry", "Ready", "True", Some("DryRun"))
        .await;
    assert_eq!(
        o["status"]["plan"],
        json!([format!(
            "POST {STORAGE}/regenerateKey?api-version=2023-05-01 {{\"keyName\":\"key2\"}}"
        )])
    );
    assert!(
        o["status"]["action"].is_null(),
        "no intent is recorded in DryRun"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(env.sim.writes().await.is_empty());
}

#[tokio::test]
async fn invalid_target_type_stalls_naming_the_field() {
    let env = Env::new("e2e-bad-target").await;
    let _op = env.operator();
    env.apply(
        "SqlIpBlock",
        "wrong",
        json!({"target": target(STORAGE), "ipAddresses": ["203.0.113.7"]}),
    )
    .await;
    let o = env
        .wait_condition(
            "SqlIpBlock",
            "wrong",
            "Stalled",
            "True",
            Some("InvalidTarget"),
        )
        .await;
    let msg = condition(&o, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("spec.target.resourceId is a Microsoft.Storage/storageAccounts"),
        "{msg}"
    );
    assert!(
        env.sim
            .requests()
            .await
            .iter()
            .all(|r| r["method"] == "POST" && r["path"].as_str().unwrap().contains("oauth2"))
    );
}

#[tokio::test]
async fn workload_identity_with_a_projected_service_account_token() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use kube::api::{Api, PostParams};

    // Entra trusts the cluster's issuer with the keys from its OpenID discovery, as it would
    // fetch them: the simulator checks the projected token's signature against them.
    let cp = testenv::shared().await.unwrap();
    let admin = cp.client().await.unwrap();
    let get = |path: &'static str| {
        let admin = admin.clone();
        async move {
            let req = http::Request::get(path).body(Vec::new()).unwrap();
            serde_json::from_str::<serde_json::Value>(&admin.request_text(req).await.unwrap())
                .unwrap()
        }
    };
    let issuer = get("/.well-known/openid-configuration").await["issuer"]
        .as_str()
        .unwrap()
        .to_string();
    let jwks = get("/openid/v1/jwks").await;
    let env = Env::with_world("e2e-wi", printed_actions(&[]), |w| {
        w.issuers = vec![azure_sim::world::Issuer { issuer, jwks }];
    })
    .await;
    // The demo world trusts system:serviceaccount:containment-system:containment-operator.
    let nss: Api<Namespace> = Api::all(env.client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "containment-system"}})).unwrap();
    let _ = nss.create(&PostParams::default(), &ns).await;
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), "containment-system");
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "containment-operator"}})).unwrap();
    let _ = sas.create(&PostParams::default(), &sa).await;
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec!["api://AzureADTokenExchange".into()]),
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let tok = sas
        .create_token_request("containment-operator", &PostParams::default(), &req)
        .await
        .unwrap();
    let file = env.dir.path().join("azure-identity-token");
    let token = tok.status.unwrap().token.unwrap();
    std::fs::write(&file, &token).unwrap();

    let op = Operator::start_with(
        &env,
        &[],
        &[
            ("AZURE_CREDENTIAL", "auto"),
            ("AZURE_CLIENT_SECRET", ""),
            ("AZURE_FEDERATED_TOKEN_FILE", file.to_str().unwrap()),
        ],
    );
    env.apply(
        "StoragePublicAccessLockdown",
        "wi",
        json!({"target": target(STORAGE)}),
    )
    .await;
    env.wait_condition(
        "StoragePublicAccessLockdown",
        "wi",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    let signature = &token[token.len() - 40..];
    assert!(
        !op.logs().contains(signature),
        "the federated token reached the logs"
    );
}

/// A short Entra outage (the token endpoint answering 503 for a while) is retried, not Stalled:
/// the containment converges once tokens can be had again.
#[tokio::test]
async fn a_token_endpoint_outage_is_retried_not_stalled() {
    let env = Env::new("e2e-entra-outage").await;
    env.sim
        .fault(json!({"match": {"method": "POST", "pathRegex": "/oauth2/v2.0/token$"}, "status": 503, "count": 6}))
        .await;
    let _op = env.operator();
    env.apply(
        "SqlPublicAccessLockdown",
        "entra",
        json!({"target": target(SQL_PROD)}),
    )
    .await;
    let o = env
        .wait(
            "SqlPublicAccessLockdown",
            "entra",
            "converged after the outage",
            Duration::from_secs(60),
            |o| {
                o.is_some_and(|o| {
                    condition(o, "Ready").is_some_and(|c| c["status"] == "True")
                        || condition(o, "Stalled").is_some_and(|c| c["status"] == "True")
                })
            },
        )
        .await
        .unwrap();
    assert!(
        condition(&o, "Ready").is_some_and(|c| c["status"] == "True"),
        "an Entra outage stalled the containment: {}",
        o["status"]
    );
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
}

/// The chart's oldest supported release (`kubeVersion` in Chart.yaml, built by `make
/// controlplane` from `testenv/go/floor/`): the CRDs, CEL rules included, install there, bad input
/// is still refused at admission, and the operator contains. Streaming lists are off (the
/// WatchList feature, alpha and off by default on that release; forced off so the test keeps
/// covering the fallback when the floor moves): the streaming watch answers 422, the operator
/// falls back to list + watch, and `/readyz` turns ok only once its caches have synced.
#[tokio::test]
async fn works_on_the_charts_oldest_supported_kubernetes() {
    let cp = testenv::ControlPlane::start(testenv::StartOptions {
        assets: Some(testenv::Assets::floor().unwrap()),
        extra_apiserver_args: vec!["--feature-gates=WatchList=false".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let version = cp
        .client()
        .await
        .unwrap()
        .apiserver_version()
        .await
        .unwrap();
    assert_eq!(version.git_version, testenv::FLOOR_K8S_VERSION);
    let env = Env::on_control_plane("e2e-floor", &cp).await;
    let refused = env
        .try_apply(
            "SqlIpBlock",
            "bad",
            json!({"target": target(SQL_PROD), "ipAddresses": ["203.0.113.300"]}),
        )
        .await
        .unwrap_err();
    assert!(refused.contains("ipAddresses"), "{refused}");
    // Alone on this control plane, the operator may watch every namespace: it then also
    // reports which namespaces each ContainmentPolicy covers.
    let op = Operator::cluster_wide(&env);
    env.apply(
        "SqlPublicAccessLockdown",
        "old",
        json!({"target": target(SQL_PROD)}),
    )
    .await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "old",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    let o = env.get("SqlPublicAccessLockdown", "old").await.unwrap();
    assert_eq!(o["status"]["policy"], json!(env.ns));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let p = env.policies().get(&env.ns).await.unwrap();
        let status = &p.data["status"];
        if status["coveredNamespaces"] == json!([env.ns]) {
            assert_eq!(status["conditions"][0]["reason"], "Accepted", "{status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "coveredNamespaces never written: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = reqwest::get(format!("http://{}/readyz", op.metrics_addr().await))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    assert!(
        op.logs().contains("using list + watch"),
        "the fallback is logged"
    );
}

/// A TCP proxy to `upstream` that the test can cut: then every connection is dropped and no new
/// one is accepted (the API server unreachable for one process only).
async fn cuttable_proxy(upstream: String) -> (String, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let mut cut = rx.clone();
            tokio::select! {
                _ = cut.wait_for(|c| *c) => return,
                accepted = listener.accept() => {
                    let Ok((mut down, _)) = accepted else { return };
                    let upstream = upstream.clone();
                    let mut cut = rx.clone();
                    tokio::spawn(async move {
                        let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                            _ = cut.wait_for(|c| *c) => {}
                        }
                    });
                }
            }
        }
    });
    (addr, tx)
}

/// The leader loses the API server (and so its lease renewals) while Azure stays reachable:
/// it must stop writing to Azure and exit before the lease can pass to another replica, even
/// though kube-lease-manager never tells it that renewals fail.
#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_writing_and_exits() {
    let env = Env::new("e2e-fence").await;
    let kubeconfig = std::fs::read_to_string(&env.kubeconfig).unwrap();
    let kc: serde_yaml::Value = serde_yaml::from_str(&kubeconfig).unwrap();
    let server = kc["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_string();
    let (addr, cut) = cuttable_proxy(server.trim_start_matches("https://").to_string()).await;
    let proxied = env.dir.path().join("kubeconfig-proxied");
    std::fs::write(
        &proxied,
        kubeconfig.replace(&server, &format!("https://{addr}")),
    )
    .unwrap();
    let mut op = Operator::start_with(
        &env,
        &["--leader-elect=true", "--lease-duration", "5s"],
        &[("KUBECONFIG", proxied.to_str().unwrap())],
    );
    env.apply(
        "StoragePublicAccessLockdown",
        "fence",
        json!({"target": target(STORAGE)}),
    )
    .await;
    env.wait_condition(
        "StoragePublicAccessLockdown",
        "fence",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    let writes = env.sim.writes().await.len();
    cut.send(true).unwrap();
    let cut_at = std::time::Instant::now();
    // Drift the operator would correct if it kept acting.
    env.sim
        .patch(
            STORAGE,
            json!({"properties": {"publicNetworkAccess": "Enabled"}}),
        )
        .await;
    while !op.exited() && cut_at.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = cut_at.elapsed();
    assert!(
        op.exited(),
        "still running {after:?} after losing the API server"
    );
    eprintln!("leader cut off from the API server exited after {after:?} (lease 5s)");
    // The fence closes at the last renewal + 4.5 s; the lease can pass at renewal + 5 s. The
    // bound leaves room for a loaded machine.
    assert!(
        after < Duration::from_secs(7),
        "exited only after {after:?}"
    );
    assert_eq!(
        env.sim.writes().await.len(),
        writes,
        "no Azure write after the cut"
    );
    assert!(op.logs().contains("Azure writes stopped"), "{}", op.logs());
}

/// Status writes are conditional on the version the run read: someone else writing the object
/// mid-run (here a label, while the PATCH is in flight) makes the run's next status write fail,
/// and the resource is decided again from a fresh read — no second write to Azure.
#[tokio::test]
async fn a_write_by_someone_else_mid_run_makes_the_run_start_again() {
    let env = Env::new("e2e-conditional").await;
    env.sim.settings(json!({"latencyMs": 1500})).await;
    let op = env.operator();
    env.apply(
        "StoragePublicAccessLockdown",
        "lock",
        json!({"target": target(STORAGE)}),
    )
    .await;
    env.wait_condition(
        "StoragePublicAccessLockdown",
        "lock",
        "Reconciling",
        "True",
        Some("Applying"),
    )
    .await;
    env.api("StoragePublicAccessLockdown")
        .patch(
            "lock",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"labels": {"team": "soc"}}})),
        )
        .await
        .unwrap();
    env.sim.settings(json!({"latencyMs": 0})).await;
    env.wait_condition(
        "StoragePublicAccessLockdown",
        "lock",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    assert!(
        op.logs()
            .contains("the object changed while it was reconciled"),
        "{}",
        op.logs()
    );
    let writes = env.sim.successful_writes().await;
    assert_eq!(writes.len(), 1, "{writes:?}");
}

/// Every shape a long-running operation comes in (`../shared/azure-api-facts.md` §2.3), forced
/// on azure-sim one after the other: both headers, `Azure-AsyncOperation` only, `Location` only,
/// a 200 with the header, and a 200 with a non-terminal `provisioningState` and no header. Each
/// is followed to its end the way it was announced: a write is done only when its operation
/// succeeded, an action is completed once, and a failed operation is seen as failed (a `Location`
/// URL answers it with a 4xx; a resource with `provisioningState: Failed`).
#[tokio::test]
async fn every_long_running_operation_shape_is_followed_to_its_outcome() {
    // A Location-only answer is polled at the account's operationResults URL, which the printed
    // role does not cover (the services here announce Azure-AsyncOperation).
    let mut actions = printed_actions(&[]);
    actions.push("Microsoft.DocumentDB/databaseAccounts/operationResults/read".into());
    let env = Env::with_actions("e2e-lro-shapes", actions).await;
    env.sim
        .settings(json!({"lroDelayMs": 300, "lroRetryAfterSeconds": 0}))
        .await;
    let _op = env.operator();
    // (shape, the URL polled, the reason a failed operation stalls with: Azure's code, except
    // that a resource's provisioningState carries none)
    let shapes = [
        ("Both", "/operationsStatus/", "BadRequest"),
        ("AzureAsyncOperation", "/operationsStatus/", "BadRequest"),
        ("Location", "/operationResults/", "BadRequest"),
        ("OkWithHeader", "/operationsStatus/", "BadRequest"),
        (
            "ProvisioningState",
            "databaseAccounts/cosmos-prod-01",
            "ProvisioningFailed",
        ),
    ];
    for (i, (shape, polled, failed)) in shapes.into_iter().enumerate() {
        env.sim.settings(json!({"lroShape": shape})).await;
        let before = env.sim.requests().await.len();
        let lock = format!("lock-{}", i);
        env.apply(
            "CosmosPublicAccessLockdown",
            &lock,
            json!({"target": target(COSMOS)}),
        )
        .await;
        env.wait_condition(
            "CosmosPublicAccessLockdown",
            &lock,
            "Ready",
            "True",
            Some("Contained"),
        )
        .await;
        let account = env.sim.resource(COSMOS).await;
        assert_eq!(
            account["properties"]["publicNetworkAccess"], "Disabled",
            "{shape}"
        );
        let log = env.sim.requests().await.split_off(before);
        let patches = log.iter().filter(|r| r["method"] == "PATCH").count();
        assert_eq!(patches, 1, "{shape}: one PATCH, followed to its end");
        assert!(
            log.iter()
                .any(|r| r["method"] == "GET"
                    && r["path"].as_str().is_some_and(|p| p.contains(polled))),
            "{shape}: polled through {polled}"
        );
        env.delete("CosmosPublicAccessLockdown", &lock).await;
        env.wait_gone("CosmosPublicAccessLockdown", &lock).await;
        assert_eq!(
            env.sim.resource(COSMOS).await["properties"]["publicNetworkAccess"],
            "Enabled",
            "{shape}: released through the same shape"
        );

        // One rotation per shape (a POST: no resource to poll, so ProvisioningState answers
        // as Location does): the action is Completed, the key rotated exactly once.
        let rot = format!("rot-{}", i);
        let before = env.sim.requests().await.len();
        env.apply(
            "CosmosKeyRotation",
            &rot,
            json!({"target": target(COSMOS), "keyKinds": ["secondary"], "trigger": shape}),
        )
        .await;
        env.wait_condition(
            "CosmosKeyRotation",
            &rot,
            "Ready",
            "True",
            Some("Completed"),
        )
        .await;
        let regens = env.sim.requests().await.split_off(before);
        let regens = regens
            .iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/regenerateKey"))
            })
            .count();
        assert_eq!(regens, 1, "{shape}: the key is rotated once");

        // A failed operation is a failure, whatever the shape: Stalled with Azure's code.
        env.sim
            .settings(json!({"lroFailNext": 1, "lroFailCode": "BadRequest"}))
            .await;
        let bad = format!("bad-{}", i);
        env.apply(
            "CosmosPublicAccessLockdown",
            &bad,
            json!({"target": target(COSMOS)}),
        )
        .await;
        env.wait_condition(
            "CosmosPublicAccessLockdown",
            &bad,
            "Stalled",
            "True",
            Some(failed),
        )
        .await;
        assert_eq!(
            env.sim.resource(COSMOS).await["properties"]["publicNetworkAccess"],
            "Enabled",
            "{shape}: the failed operation changed nothing"
        );
        env.delete("CosmosPublicAccessLockdown", &bad).await;
        env.wait_gone("CosmosPublicAccessLockdown", &bad).await;
    }
}

/// `spec.suspend: true` pauses a containment (Flux's convention): no Azure request at all, not
/// even a read; Reconciling=True with reason Suspended (kstatus InProgress, not Failed); a
/// change made meanwhile in Azure is not corrected; setting it false resumes (and corrects).
#[tokio::test]
async fn a_suspended_containment_makes_no_azure_call_and_resumes() {
    let env = Env::new("e2e-suspend").await;
    let _op = env.operator();
    let spec = |suspend: bool| json!({"target": target(SQL_PROD), "suspend": suspend});
    env.apply("SqlPublicAccessLockdown", "s", spec(true)).await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "s",
        "Reconciling",
        "True",
        Some("Suspended"),
    )
    .await;
    // Several drift intervals (2 s here): still nothing sent, not even a read.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let to_sql = |log: &[serde_json::Value]| {
        log.iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("/Microsoft.Sql/"))
            })
            .count()
    };
    assert_eq!(
        to_sql(&env.sim.requests().await),
        0,
        "a suspended containment calls nothing"
    );
    let o = env.get("SqlPublicAccessLockdown", "s").await.unwrap();
    assert_eq!(
        condition(&o, "Stalled").map(|c| c["status"].clone()),
        Some(json!("False"))
    );

    env.apply("SqlPublicAccessLockdown", "s", spec(false)).await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "s",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    env.apply("SqlPublicAccessLockdown", "s", spec(true)).await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "s",
        "Reconciling",
        "True",
        Some("Suspended"),
    )
    .await;
    let before = to_sql(&env.sim.requests().await);
    env.sim
        .patch(
            SQL_PROD,
            json!({"properties": {"publicNetworkAccess": "Enabled"}}),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        to_sql(&env.sim.requests().await),
        before,
        "no drift check while suspended"
    );
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Enabled",
        "not corrected while suspended"
    );
    env.apply("SqlPublicAccessLockdown", "s", spec(false)).await;
    // A new generation: re-applied as a fresh plan (Contained), not counted as drift.
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "s",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
    // Deleting is an explicit instruction: a suspended containment is still released.
    env.apply("SqlPublicAccessLockdown", "s", spec(true)).await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "s",
        "Reconciling",
        "True",
        Some("Suspended"),
    )
    .await;
    env.delete("SqlPublicAccessLockdown", "s").await;
    env.wait_gone("SqlPublicAccessLockdown", "s").await;
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Enabled",
        "released"
    );
}

/// The kill switch (one command: `kubectl -n <operator namespace> create configmap
/// containment-operator-freeze`): while it exists no Azure call is started — no apply, no drift
/// check, no release (a deletion keeps its finalizer and waits), Reconciling reason Suspended —
/// and deleting it resumes everything cleanly.
#[tokio::test]
async fn the_kill_switch_freezes_every_azure_call_and_lifts_cleanly() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let env = Env::new("e2e-freeze").await;
    let _op = env.operator();
    env.apply(
        "SqlPublicAccessLockdown",
        "x",
        json!({"target": target(SQL_PROD)}),
    )
    .await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "x",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    // The operator's namespace is the watched one here (--namespace, no POD_NAMESPACE).
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(env.client.clone(), &env.ns);
    let switch: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "containment-operator-freeze"}, "data": {"reason": "INC-1"}}),
    )
    .unwrap();
    cms.create(&Default::default(), &switch).await.unwrap();
    env.apply(
        "StoragePublicAccessLockdown",
        "y",
        json!({"target": target(STORAGE)}),
    )
    .await;
    env.wait_condition(
        "StoragePublicAccessLockdown",
        "y",
        "Reconciling",
        "True",
        Some("Suspended"),
    )
    .await;
    env.delete("SqlPublicAccessLockdown", "x").await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "x",
        "Reconciling",
        "True",
        Some("Suspended"),
    )
    .await;
    let to_arm = |log: Vec<serde_json::Value>| {
        log.iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("/subscriptions/"))
            })
            .count()
    };
    let before = to_arm(env.sim.requests().await);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        to_arm(env.sim.requests().await),
        before,
        "nothing sent while frozen"
    );
    assert!(
        env.get("SqlPublicAccessLockdown", "x").await.is_some(),
        "the deletion waits"
    );
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );

    // `data.frozen: "false"` lifts it without deleting it.
    let frozen = |v: &str| kube::api::Patch::Merge(json!({"data": {"frozen": v}}));
    cms.patch(
        "containment-operator-freeze",
        &Default::default(),
        &frozen("false"),
    )
    .await
    .unwrap();
    env.wait_gone("SqlPublicAccessLockdown", "x").await;
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Enabled",
        "released once lifted"
    );
    env.wait_condition(
        "StoragePublicAccessLockdown",
        "y",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    // On again, then lifted by deleting the ConfigMap.
    cms.patch(
        "containment-operator-freeze",
        &Default::default(),
        &frozen("true"),
    )
    .await
    .unwrap();
    env.reconcile_now("StoragePublicAccessLockdown", "y", "frozen-again")
        .await;
    env.wait_condition(
        "StoragePublicAccessLockdown",
        "y",
        "Reconciling",
        "True",
        Some("Suspended"),
    )
    .await;
    cms.delete("containment-operator-freeze", &Default::default())
        .await
        .unwrap();
    env.wait_condition(
        "StoragePublicAccessLockdown",
        "y",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
}

/// Reconcile now (Flux's convention): a new value of
/// `containment.defenderc2.io/reconcile-requested-at` reconciles at once — here a drift made in
/// Azure is corrected in seconds though the drift interval is 10 minutes — and the value handled
/// is echoed in `status.lastHandledReconcileAt`.
#[tokio::test]
async fn a_reconcile_request_is_handled_at_once_and_echoed() {
    let env = Env::new("e2e-reconcile-now").await;
    let _op = Operator::start_with(
        &env,
        &["--drift-interval-for", "SqlPublicAccessLockdown=10m"],
        &[],
    );
    env.apply(
        "SqlPublicAccessLockdown",
        "now",
        json!({"target": target(SQL_PROD)}),
    )
    .await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "now",
        "Ready",
        "True",
        Some("Contained"),
    )
    .await;
    env.sim
        .patch(
            SQL_PROD,
            json!({"properties": {"publicNetworkAccess": "Enabled"}}),
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Enabled",
        "not yet checked: the drift interval is 10 min"
    );
    let requested = "2026-12-02T10:00:00Z";
    env.reconcile_now("SqlPublicAccessLockdown", "now", requested)
        .await;
    // The echo comes with the reconcile's outcome, never with a step in between.
    let o = env
        .wait_reconcile_handled("SqlPublicAccessLockdown", "now", requested)
        .await;
    let ready = condition(&o, "Ready").unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("DriftCorrected")),
        "{o}"
    );
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Disabled",
        "corrected by the requested reconcile"
    );
}

/// After the cause of a Stalled containment is fixed, a reconcile request heals it at once
/// instead of after the 5-minute Stalled retry, and the handled value is echoed.
#[tokio::test]
async fn a_reconcile_request_heals_a_stalled_resource_at_once() {
    let env = Env::new("e2e-reconcile-stalled").await;
    let _op = env.operator();
    // One refused read: Stalled AuthorizationFailed, retried in 5 minutes.
    env.sim
        .fault(
            json!({"match": {"method": "GET", "pathRegex": "servers/sql-prod-01$"},
            "status": 403, "errorCode": "AuthorizationFailed", "count": 1}),
        )
        .await;
    env.apply(
        "SqlPublicAccessLockdown",
        "fixed",
        json!({"target": target(SQL_PROD)}),
    )
    .await;
    env.wait_condition(
        "SqlPublicAccessLockdown",
        "fixed",
        "Stalled",
        "True",
        Some("AuthorizationFailed"),
    )
    .await;
    let requested = "2026-12-03T12:00:00Z";
    let t = std::time::Instant::now();
    env.reconcile_now("SqlPublicAccessLockdown", "fixed", requested)
        .await;
    // Echoed with the outcome: Ready, seconds after the request (not the 5-minute retry).
    let o = env
        .wait_reconcile_handled("SqlPublicAccessLockdown", "fixed", requested)
        .await;
    let echoed = t.elapsed();
    eprintln!(
        "reconcile request on a Stalled resource: Ready and echoed after {} ms",
        echoed.as_millis()
    );
    let ready = condition(&o, "Ready").unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("Contained")),
        "{o}"
    );
    assert!(echoed < Duration::from_secs(10), "echoed after {echoed:?}");
    assert_eq!(
        env.sim.resource(SQL_PROD).await["properties"]["publicNetworkAccess"],
        "Disabled"
    );
}

/// The `containment_…` metric names a PromQL-bearing file mentions.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("containment_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // Not part of a longer word (e.g. `promtool`'s file names, `co.containment_…`).
        if i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric() {
            names.insert(name.clone());
        }
        rest = &rest[i + name.len()..];
    }
    names
}
