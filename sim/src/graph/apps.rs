//! What an app holds in a tenant (azure-api-facts §3.24): delegated permission grants
//! (`oauth2PermissionGrants`, keyed by the client service principal's object id), app-role
//! assignments (`servicePrincipals/{id}/appRoleAssignments`, the application permissions it was
//! granted), and its application registration's client secrets (`removePassword`; the secret
//! values are never returned).

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{GraphState, error, require};
use crate::http_util::{Req, Resp, guid, now, odata_page, parse_eq_filter, rfc3339};
use crate::token::Claims;

const GRANT_READ: &[&str] = &[
    "DelegatedPermissionGrant.Read.All",
    "DelegatedPermissionGrant.ReadWrite.All",
    "Directory.Read.All",
];
const GRANT_WRITE: &[&str] = &["DelegatedPermissionGrant.ReadWrite.All"];
const ASSIGNMENT_READ: &[&str] = &[
    "Application.Read.All",
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "Directory.Read.All",
];
const ASSIGNMENT_WRITE: &[&str] = &["AppRoleAssignment.ReadWrite.All"];
const APP_READ: &[&str] = &[
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Directory.Read.All",
];
const APP_WRITE: &[&str] = &["Application.ReadWrite.All"];

fn not_found(what: &str) -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{what}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

fn required(body: &Value, fields: &[&str]) -> Result<(), Resp> {
    match fields
        .iter()
        .find(|f| body[**f].as_str().is_none_or(str::is_empty))
    {
        Some(f) => Err(error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            &format!("Missing required property '{f}'."),
        )),
        None => Ok(()),
    }
}

/// `segs` without the leading `v1.0`; `None` when the path is not one of these.
pub fn handle(
    g: &mut GraphState,
    req: &Req,
    claims: &Claims,
    base: &str,
    page: usize,
    segs: &[&str],
) -> Option<Result<Resp, Resp>> {
    Some(match (&req.method, segs) {
        (&Method::GET, ["oauth2PermissionGrants"]) => (|| {
            require(claims, GRANT_READ)?;
            let mut items = g.grants.clone();
            if let Some(f) = req.query.get("$filter") {
                let clauses = parse_eq_filter(f)
                    .map_err(|e| error(StatusCode::BAD_REQUEST, "BadRequest", &e))?;
                items.retain(|i| clauses.iter().all(|(k, v)| i[k.as_str()] == *v));
            }
            Ok(odata_page(base, req, items, page, Default::default()))
        })(),
        (&Method::POST, ["oauth2PermissionGrants"]) => (|| {
            require(claims, GRANT_WRITE)?;
            let mut body = req.json()?;
            required(&body, &["clientId", "consentType", "resourceId", "scope"])?;
            match body["consentType"].as_str() {
                Some("AllPrincipals") => {}
                Some("Principal") => required(&body, &["principalId"])?,
                _ => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "Request_BadRequest",
                        "consentType must be AllPrincipals or Principal.",
                    ));
                }
            }
            let same = |x: &Value| {
                ["clientId", "consentType", "principalId", "resourceId"]
                    .iter()
                    .all(|k| x[*k] == body[*k])
            };
            if g.grants.iter().any(same) {
                return Err(error(
                    StatusCode::CONFLICT,
                    "Request_MultipleObjectsWithSameKeyValue",
                    "Permission entry already exists.",
                ));
            }
            body["id"] = json!(guid());
            g.grants.push(body.clone());
            Ok(Resp::json(StatusCode::CREATED, &body))
        })(),
        (&Method::DELETE, ["oauth2PermissionGrants", id]) => (|| {
            require(claims, GRANT_WRITE)?;
            let before = g.grants.len();
            g.grants.retain(|x| x["id"] != *id);
            if g.grants.len() == before {
                return Err(not_found(id));
            }
            Ok(Resp::empty(StatusCode::NO_CONTENT))
        })(),
        (m, ["servicePrincipals", sp, "appRoleAssignments", rest @ ..]) => {
            if !g.service_principals.iter().any(|s| s["id"] == *sp) {
                return Some(Err(not_found(sp)));
            }
            (|| match (m, rest) {
                (&Method::GET, []) => {
                    require(claims, ASSIGNMENT_READ)?;
                    let items = g
                        .app_role_assignments
                        .iter()
                        .filter(|a| a["principalId"] == *sp)
                        .cloned()
                        .collect();
                    Ok(odata_page(base, req, items, page, Default::default()))
                }
                (&Method::POST, []) => {
                    require(claims, ASSIGNMENT_WRITE)?;
                    let mut body = req.json()?;
                    required(&body, &["principalId", "resourceId", "appRoleId"])?;
                    if body["principalId"] != *sp {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            "Request_BadRequest",
                            "principalId must be the service principal in the path.",
                        ));
                    }
                    body["id"] = json!(guid());
                    body["principalType"] = json!("ServicePrincipal");
                    body["createdDateTime"] = json!(rfc3339(now()));
                    g.app_role_assignments.push(body.clone());
                    Ok(Resp::json(StatusCode::CREATED, &body))
                }
                (&Method::DELETE, [id]) => {
                    require(claims, ASSIGNMENT_WRITE)?;
                    let before = g.app_role_assignments.len();
                    g.app_role_assignments
                        .retain(|a| !(a["id"] == *id && a["principalId"] == *sp));
                    if g.app_role_assignments.len() == before {
                        return Err(not_found(id));
                    }
                    Ok(Resp::empty(StatusCode::NO_CONTENT))
                }
                _ => Err(error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Request_BadRequest",
                    "Unsupported method.",
                )),
            })()
        }
        (m, ["applications", app, rest @ ..]) => (|| {
            let i = g
                .applications
                .iter()
                .position(|a| a["id"] == *app)
                .ok_or_else(|| not_found(app))?;
            match (m, rest) {
                (&Method::GET, []) => {
                    require(claims, APP_READ)?;
                    Ok(Resp::json(StatusCode::OK, &g.applications[i]))
                }
                (&Method::POST, ["removePassword"]) => {
                    require(claims, APP_WRITE)?;
                    let body = req.json()?;
                    required(&body, &["keyId"])?;
                    let creds = g.applications[i]["passwordCredentials"]
                        .as_array_mut()
                        .ok_or_else(|| not_found("passwordCredentials"))?;
                    let before = creds.len();
                    creds.retain(|c| c["keyId"] != body["keyId"]);
                    if creds.len() == before {
                        return Err(error(
                            StatusCode::NOT_FOUND,
                            "Request_ResourceNotFound",
                            &format!("No password credential with keyId {}.", body["keyId"]),
                        ));
                    }
                    Ok(Resp::empty(StatusCode::NO_CONTENT))
                }
                _ => Err(error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Request_BadRequest",
                    "Unsupported method.",
                )),
            }
        })(),
        _ => return None,
    })
}

/// `name(appId='…')`, the documented alternate key of service principals and applications.
pub fn alternate_key<'a>(seg: &'a str, coll: &str) -> Option<&'a str> {
    seg.strip_prefix(coll)?
        .strip_prefix("(appId='")?
        .strip_suffix("')")
}
