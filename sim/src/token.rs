//! The Entra ID token endpoint (client credentials with a secret or a federated assertion), the
//! IMDS managed-identity form, and validation of the bearer tokens the APIs receive.

use std::collections::HashMap;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::http_util::{Req, Resp, guid, now};
use crate::world::Principal;
use crate::{ARM_AUDIENCE, Api, GRAPH_AUDIENCE, MDE_AUDIENCE, Sim, State, jwt};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
const TOKEN_LIFETIME: i64 = 3599;

/// What the APIs learn from a valid bearer token.
#[derive(Debug, Clone)]
pub struct Claims {
    pub tenant: String,
    pub app_id: String,
    pub oid: String,
    pub roles: Vec<String>,
}

fn known_resource(resource: &str) -> Option<&'static str> {
    let r = resource.trim_end_matches('/');
    [ARM_AUDIENCE, GRAPH_AUDIENCE, MDE_AUDIENCE]
        .into_iter()
        .find(|a| a.eq_ignore_ascii_case(r))
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Resp {
    let trace = guid();
    let corr = guid();
    Resp::json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {corr} Timestamp: {}", crate::http_util::rfc3339(now())),
            "error_codes": [code],
            "timestamp": crate::http_util::rfc3339(now()),
            "trace_id": trace,
            "correlation_id": corr,
        }),
    )
}

pub fn handle(sim: &Sim, st: &mut State, req: &Req) -> Resp {
    if req.path == "/metadata/identity/oauth2/token" {
        return imds(sim, st, req);
    }
    if req.method != Method::POST {
        return aad_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        );
    }
    let tenant = req
        .path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or("");
    if !st.world.tenants.iter().any(|t| {
        t.id.eq_ignore_ascii_case(tenant)
            || t.domain
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case(tenant))
    }) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let Some(client_id) = form.get("client_id") else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let scope = form.get("scope").map(String::as_str).unwrap_or("");
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let resource = match scopes.as_slice() {
        [one] => one.strip_suffix("/.default").and_then(known_resource),
        _ => None,
    };
    let Some(resource) = resource else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            &format!(
                "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid: '{scope}'. One resource per request, as '<resource>/.default'."
            ),
        );
    };
    let Some(p) = st.world.principals.iter().find(|p| {
        p.client_id.eq_ignore_ascii_case(client_id) && (p.tenant_id.eq_ignore_ascii_case(tenant))
    }) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    };
    if let Some(secret) = form.get("client_secret") {
        if p.client_secret.as_deref() != Some(secret.as_str()) {
            return aad_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            );
        }
    } else if let Some(assertion) = form.get("client_assertion") {
        if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                50027,
                "Invalid client_assertion_type.",
            );
        }
        if let Err(r) = check_assertion(&st.world.issuers, p, assertion.trim()) {
            return r;
        }
    } else {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    let token = issue(sim, p, resource);
    Resp::json(
        StatusCode::OK,
        &json!({
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "ext_expires_in": TOKEN_LIFETIME,
            "access_token": token,
        }),
    )
}

fn check_assertion(
    issuers: &[crate::world::Issuer],
    p: &Principal,
    assertion: &str,
) -> Result<(), Resp> {
    let Some(claims) = jwt::claims_unverified(assertion) else {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            50027,
            "JWT token is invalid or malformed.",
        ));
    };
    let iss = claims["iss"].as_str().unwrap_or("");
    let sub = claims["sub"].as_str().unwrap_or("");
    let auds: Vec<&str> = match &claims["aud"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let exp = claims["exp"].as_i64().unwrap_or(0);
    if exp <= now().unix_timestamp() {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.",
        ));
    }
    // Entra reads the issuer's keys from its OpenID configuration and checks the signature.
    let Some(issuer) = issuers
        .iter()
        .find(|i| i.issuer.trim_end_matches('/') == iss.trim_end_matches('/'))
    else {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            700211,
            &format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'."
            ),
        ));
    };
    if !jwt::signed_by(assertion, &issuer.jwks) {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            700027,
            "Client assertion failed signature validation.",
        ));
    }
    let matched = p.federated_credentials.iter().any(|fc| {
        (fc.issuer == "*" || fc.issuer.trim_end_matches('/') == iss.trim_end_matches('/'))
            && fc.subject == sub
            && auds.contains(&fc.audience.as_str())
    });
    if !auds.contains(&EXCHANGE_AUDIENCE) || !matched {
        return Err(aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            70021,
            &format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{}'.",
                auds.join(",")
            ),
        ));
    }
    Ok(())
}

fn issue(sim: &Sim, p: &Principal, resource: &str) -> String {
    let roles: &[String] = if resource == GRAPH_AUDIENCE {
        &p.graph_permissions
    } else if resource == MDE_AUDIENCE {
        &p.mde_permissions
    } else {
        &[]
    };
    let iat = now().unix_timestamp();
    jwt::sign(
        &sim.token_key,
        &json!({
            "aud": resource,
            "iss": format!("https://sts.windows.net/{}/", p.tenant_id),
            "iat": iat, "nbf": iat, "exp": iat + TOKEN_LIFETIME,
            "tid": p.tenant_id,
            "appid": p.client_id,
            "oid": p.object_id,
            "sub": p.object_id,
            "idtyp": "app",
            "roles": roles,
        }),
    )
}

fn imds(sim: &Sim, st: &mut State, req: &Req) -> Resp {
    let err = |status, error: &str, desc: &str| {
        Resp::json(status, &json!({"error": error, "error_description": desc}))
    };
    if req.header("metadata") != Some("true") {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    if !matches!(
        req.query_ci("api-version"),
        Some("2018-02-01" | "2018-10-01" | "2019-08-01")
    ) {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid or missing api-version",
        );
    }
    let Some(resource) = req.query_ci("resource").and_then(known_resource) else {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            "Invalid or missing resource",
        );
    };
    let wanted = req.query_ci("client_id");
    let Some(p) = st.world.principals.iter().find(|p| {
        p.managed_identity && wanted.is_none_or(|c| c.eq_ignore_ascii_case(&p.client_id))
    }) else {
        return err(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        );
    };
    let iat = now().unix_timestamp();
    Resp::json(
        StatusCode::OK,
        &json!({
            "access_token": issue(sim, p, resource),
            "client_id": p.client_id,
            "expires_in": TOKEN_LIFETIME.to_string(),
            "expires_on": (iat + TOKEN_LIFETIME).to_string(),
            "ext_expires_in": TOKEN_LIFETIME.to_string(),
            "not_before": iat.to_string(),
            "resource": format!("{resource}/"),
            "token_type": "Bearer",
        }),
    )
}

/// Validates the bearer token of an API call for `audience`; errors are shaped per API.
pub fn authenticate(sim: &Sim, req: &Req, audience: &str, api: Api) -> Result<Claims, Resp> {
    let fail = |code: &str, msg: &str| {
        match api {
        Api::Arm => Resp::arm_error(StatusCode::UNAUTHORIZED, code, msg),
        Api::Graph => Resp::arm_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", msg),
        Api::Mde => Resp::arm_error(StatusCode::UNAUTHORIZED, "Unauthorized", msg),
    }
    .with_header("WWW-Authenticate", "Bearer authorization_uri=\"https://login.microsoftonline.com/common\", error=\"invalid_token\"")
    };
    let Some(token) = req.bearer() else {
        return Err(fail(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let Some(c) = jwt::verify(&sim.token_key, token) else {
        return Err(fail(
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        ));
    };
    if c["exp"].as_i64().unwrap_or(0) <= now().unix_timestamp() {
        return Err(fail(
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
        ));
    }
    let aud = c["aud"].as_str().unwrap_or("");
    if !aud.trim_end_matches('/').eq_ignore_ascii_case(audience) {
        return Err(fail(
            "InvalidAuthenticationTokenAudience",
            &format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences '{audience}'."
            ),
        ));
    }
    Ok(Claims {
        tenant: c["tid"].as_str().unwrap_or("").to_string(),
        app_id: c["appid"].as_str().unwrap_or("").to_string(),
        oid: c["oid"].as_str().unwrap_or("").to_string(),
        roles: c["roles"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

impl Claims {
    /// Whether the token carries any of these application permissions (Graph / MDE app roles).
    pub fn has_any_role(&self, any_of: &[&str]) -> bool {
        self.roles.iter().any(|r| any_of.contains(&r.as_str()))
    }
}
