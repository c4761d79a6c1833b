//! The Entra token endpoint, IMDS and bearer-token validation.

mod common;
use common::*;
use serde_json::{Value, json};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn client_secret_gives_a_jwt_with_tenant_app_audience_and_roles() {
    let sim = start().await;
    let r = sim.token_response(OPERATOR, GRAPH).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["expires_in"].is_number(),
        "expires_in must be a JSON number: {body}"
    );
    let token = body["access_token"].as_str().unwrap();
    let claims = azure_sim::jwt::claims_unverified(token).unwrap();
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["appid"], OPERATOR.0);
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert!(
        claims["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("ThreatSubmission.ReadWrite.All"))
    );
}

async fn token_error(sim: &TestSim, form: &[(&str, &str)]) -> (u16, Value) {
    let r = sim
        .http
        .post(format!("{}/{TENANT}/oauth2/v2.0/token", sim.url))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn token_errors_are_aadsts_shaped() {
    let sim = start().await;
    let base = |id, secret, scope| {
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", scope),
        ]
    };
    let (s, b) = token_error(&sim, &base(OPERATOR.0, "wrong", ARM)).await;
    assert_eq!((s, b["error"].as_str().unwrap()), (401, "invalid_client"));
    assert_eq!(b["error_codes"], json!([7000215]));
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215")
    );
    assert!(b["trace_id"].is_string() && b["correlation_id"].is_string());

    let (s, b) = token_error(
        &sim,
        &base("99999999-0000-4000-8000-000000000009", "x", ARM),
    )
    .await;
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (400, "unauthorized_client")
    );
    assert_eq!(b["error_codes"], json!([700016]));

    let two = format!("{ARM} {GRAPH}");
    let (s, b) = token_error(&sim, &base(OPERATOR.0, OPERATOR.1, &two)).await;
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_scope"));
    let (s, _) = token_error(
        &sim,
        &base(OPERATOR.0, OPERATOR.1, "https://vault.azure.net/.default"),
    )
    .await;
    assert_eq!(s, 400);

    let r = sim
        .http
        .post(format!("{}/not-a-tenant/oauth2/v2.0/token", sim.url))
        .form(&base(OPERATOR.0, OPERATOR.1, ARM))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn federated_assertion_checks_issuer_signature_subject_audience_and_expiry() {
    let issuer = Issuer::new();
    let jwks = issuer.jwks.clone();
    let sim = start_with(move |mut w| {
        w.issuers = vec![azure_sim::world::Issuer {
            issuer: "https://oidc.example/cluster".into(),
            jwks,
        }];
        w
    })
    .await;
    let claims = |sub: &str, aud: &str, exp: i64| json!({"iss": "https://oidc.example/cluster", "sub": sub, "aud": [aud], "exp": exp});
    let assertion = |sub: &str, aud: &str, exp: i64| issuer.sign(claims(sub, aud, exp));
    let sa = "system:serviceaccount:containment-system:containment-operator";
    let try_it = |a: String| {
        let sim = &sim;
        async move {
            token_error(
                sim,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", OPERATOR.0),
                    ("scope", ARM),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", &a),
                ],
            )
            .await
        }
    };
    let (s, b) = try_it(assertion(sa, "api://AzureADTokenExchange", now() + 600)).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["access_token"].is_string());

    let (s, b) = try_it(assertion(
        "system:serviceaccount:other:sa",
        "api://AzureADTokenExchange",
        now() + 600,
    ))
    .await;
    assert_eq!(s, 400);
    let d = b["error_description"].as_str().unwrap();
    assert!(
        d.starts_with("AADSTS70021") && d.contains("system:serviceaccount:other:sa"),
        "{d}"
    );

    let (s, b) = try_it(assertion(sa, "https://kubernetes.default.svc", now() + 600)).await;
    assert_eq!((s, b["error_codes"][0].as_u64()), (400, Some(70021)));

    let (s, b) = try_it(assertion(sa, "api://AzureADTokenExchange", now() - 10)).await;
    assert_eq!((s, b["error_codes"][0].as_u64()), (400, Some(700024)));

    // Entra checks the signature against the issuer's keys: unsigned, forged or from an issuer
    // it does not know, the assertion is refused.
    let good = claims(sa, "api://AzureADTokenExchange", now() + 600);
    let (s, b) = try_it(jwt_unsigned(good.clone())).await;
    assert_eq!(
        (s, b["error_codes"][0].as_u64()),
        (400, Some(700027)),
        "{b}"
    );
    let (s, b) = try_it(Issuer::new().sign(good.clone())).await;
    assert_eq!(
        (s, b["error_codes"][0].as_u64()),
        (400, Some(700027)),
        "{b}"
    );
    let mut elsewhere = good;
    elsewhere["iss"] = json!("https://attacker.example");
    let (s, b) = try_it(issuer.sign(elsewhere)).await;
    assert_eq!(
        (s, b["error_codes"][0].as_u64()),
        (400, Some(700211)),
        "{b}"
    );
}

#[tokio::test]
async fn imds_form_returns_string_expiry_and_needs_the_metadata_header() {
    let sim = start().await;
    let url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F",
        sim.url
    );
    let r = sim.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = sim
        .http
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert!(
        b["expires_in"].is_string() && b["expires_on"].is_string(),
        "{b}"
    );
    let token = b["access_token"].as_str().unwrap();
    let (s, _, _) = sim
        .call(
            token,
            "GET",
            &format!(
                "{}/Microsoft.Sql/servers/sql-prod-01?api-version=2021-11-01",
                rg("rg-prod")
            ),
            None,
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn apis_reject_missing_forged_and_wrong_audience_tokens() {
    let sim = start().await;
    let path = format!(
        "{}/Microsoft.Sql/servers/sql-prod-01?api-version=2021-11-01",
        rg("rg-prod")
    );
    let r = sim
        .http
        .get(format!("{}{path}", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["error"]["code"], "AuthenticationFailed");

    let graph = sim.token(OPERATOR, GRAPH).await;
    let (s, _, b) = sim.call(&graph, "GET", &path, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (401, "InvalidAuthenticationTokenAudience")
    );

    let forged = jwt_unsigned(
        json!({"aud": "https://management.azure.com", "oid": "x", "tid": TENANT, "exp": now() + 100}),
    );
    let (s, _, b) = sim.call(&forged, "GET", &path, None).await;
    assert_eq!(
        (s, b["error"]["code"].as_str().unwrap()),
        (401, "InvalidAuthenticationToken")
    );
}
