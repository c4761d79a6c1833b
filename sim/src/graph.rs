//! Microsoft Graph: beta threat submissions (notStarted → running → succeeded), users and
//! service principals (accountEnabled, revokeSignInSessions), and the authorization policy
//! (`permissionGrantPoliciesAssigned` validated and stored in the service's casing), and
//! directory roles (`roles`), and Conditional Access policies (`conditional_access`). Entra is eventually consistent: with `graphReplicationLagMs`, a
//! user or service principal read within that time of a write still shows it as it was
//! (azure-api-facts §3.24–3.26 intro).

pub mod apps;
pub mod conditional_access;
pub mod email;
pub mod roles;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::State;
use crate::http_util::{Req, Resp, guid, merge_patch, now, odata_page, rfc3339};
use crate::token::Claims;
use crate::world::GraphWorld;

#[derive(Debug, Clone)]
pub struct Submission {
    pub kind: String,
    pub body: Value,
    pub created: Instant,
}

#[derive(Debug, Default)]
pub struct GraphState {
    pub users: Vec<Value>,
    pub service_principals: Vec<Value>,
    pub authorization_policy: Value,
    pub submissions: Vec<Submission>,
    pub roles: roles::Roles,
    pub grants: Vec<Value>,
    pub app_role_assignments: Vec<Value>,
    pub applications: Vec<Value>,
    pub conditional_access: conditional_access::Policies,
    /// Users and service principals (by id) as replicas still show them after a write, and
    /// until when.
    pub stale: HashMap<String, (Value, Instant)>,
    /// Accepted email remediations, oldest first.
    pub remediations: Vec<Value>,
}

impl GraphState {
    pub fn from_world(w: &GraphWorld) -> Self {
        Self {
            users: w.users.clone(),
            service_principals: w.service_principals.clone(),
            authorization_policy: w.authorization_policy.clone().unwrap_or_else(|| json!({
                "id": "authorizationPolicy",
                "defaultUserRolePermissions": {"permissionGrantPoliciesAssigned": ["ManagePermissionGrantsForSelf.microsoft-user-default-legacy"]}
            })),
            submissions: Vec::new(),
            roles: roles::Roles::from_world(w),
            grants: w.oauth2_permission_grants.clone(),
            app_role_assignments: w.app_role_assignments.clone(),
            applications: w.applications.clone(),
            conditional_access: conditional_access::Policies::from_world(
                &w.conditional_access_policies,
            ),
            stale: HashMap::new(),
            remediations: Vec::new(),
        }
    }
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {"code": code, "message": message, "innerError": {"request-id": guid(), "date": rfc3339(now())}}}),
    )
}

pub(crate) fn require(claims: &Claims, any_of: &[&str]) -> Result<(), Resp> {
    if claims.has_any_role(any_of) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            &format!(
                "Insufficient privileges to complete the operation. Requires one of: {}.",
                any_of.join(", ")
            ),
        ))
    }
}

fn submission_json(s: &Submission, step: Duration) -> Value {
    let mut b = s.body.clone();
    let elapsed = s.created.elapsed();
    let category = b["category"].clone();
    if elapsed < step {
        b["status"] = json!("notStarted");
    } else if elapsed < step * 2 {
        b["status"] = json!("running");
        b["result"] = json!({"detail": "underInvestigation", "category": "unknown"});
    } else {
        b["status"] = json!("succeeded");
        b["result"] = json!({"detail": "allowedByPolicy", "category": category, "detectedUrls": [], "detectedFiles": []});
    }
    b
}

pub fn handle(st: &mut State, req: &Req, claims: &Claims, base: &str) -> Resp {
    match inner(st, req, claims, base) {
        Ok(r) | Err(r) => r,
    }
}

fn inner(st: &mut State, req: &Req, claims: &Claims, base: &str) -> Result<Resp, Resp> {
    let mut owned: Vec<String> = req
        .path
        .trim_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    // `servicePrincipals(appId='…')` / `applications(appId='…')`: the object with that appId.
    if let Some(seg) = owned.get_mut(1) {
        for (coll, list) in [
            ("servicePrincipals", &st.graph.service_principals),
            ("applications", &st.graph.applications),
        ] {
            if let Some(app_id) = apps::alternate_key(seg, coll) {
                let id = list
                    .iter()
                    .find(|o| o["appId"] == app_id)
                    .and_then(|o| o["id"].as_str())
                    .unwrap_or("(no such appId)");
                *seg = format!("{coll}/{id}");
            }
        }
    }
    let joined = owned.join("/");
    let segs: Vec<&str> = joined.split('/').collect();
    let step = Duration::from_millis(st.settings.submission_step_ms);
    if segs.first() == Some(&"v1.0")
        && let Some(r) = apps::handle(
            &mut st.graph,
            req,
            claims,
            base,
            st.settings.odata_page_size,
            &segs[1..],
        )
    {
        return r;
    }
    if segs.starts_with(&["v1.0", "roleManagement", "directory"]) {
        return roles::handle(
            &mut st.graph.roles,
            req,
            claims,
            base,
            st.settings.odata_page_size,
        );
    }
    let lag = Duration::from_millis(st.settings.graph_replication_lag_ms);
    if let [
        "v1.0",
        "identity",
        "conditionalAccess",
        "policies",
        rest @ ..,
    ] = segs.as_slice()
    {
        return conditional_access::handle(
            &mut st.graph.conditional_access,
            req,
            claims,
            base,
            st.settings.odata_page_size,
            lag,
            rest,
        );
    }
    match (&req.method, segs.as_slice()) {
        (
            &Method::POST,
            [
                "v1.0",
                "security",
                "collaboration",
                "analyzedEmails",
                "remediate",
            ],
        ) => email::remediate(&mut st.graph.remediations, req, claims),
        (&Method::POST, ["beta", "security", "threatSubmission", kind]) => {
            require(claims, &["ThreatSubmission.ReadWrite.All"])?;
            let body = req.json()?;
            let odata = body["@odata.type"].as_str().unwrap_or("");
            let required: &[&str] = match (*kind, odata) {
                ("emailThreats", "#microsoft.graph.security.emailUrlThreatSubmission") => {
                    &["category", "recipientEmailAddress", "messageUrl"]
                }
                ("emailThreats", "#microsoft.graph.security.emailContentThreatSubmission") => {
                    &["category", "recipientEmailAddress", "fileContent"]
                }
                ("urlThreats", "#microsoft.graph.security.urlThreatSubmission") => {
                    &["category", "webUrl"]
                }
                ("fileThreats", "#microsoft.graph.security.fileContentThreatSubmission") => {
                    &["category", "fileName", "fileContent"]
                }
                ("emailThreats" | "urlThreats" | "fileThreats", _) => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("'{odata}' is not a supported @odata.type for {kind}."),
                    ));
                }
                _ => {
                    return Err(error(
                        StatusCode::NOT_FOUND,
                        "ResourceNotFound",
                        "Unknown segment.",
                    ));
                }
            };
            if let Some(missing) = required.iter().find(|f| !body[**f].is_string()) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("Missing required property '{missing}'."),
                ));
            }
            if !matches!(
                body["category"].as_str(),
                Some("notJunk" | "spam" | "phishing" | "malware")
            ) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "category must be notJunk, spam, phishing or malware.",
                ));
            }
            let mut stored = body.clone();
            if let Some(o) = stored.as_object_mut() {
                o.remove("fileContent"); // content is analysed, not echoed back
            }
            stored["id"] = json!(guid());
            stored["createdDateTime"] = json!(rfc3339(now()));
            stored["source"] = json!("administrator");
            stored["createdBy"] = json!({"application": {"id": claims.app_id}});
            let s = Submission {
                kind: kind.to_string(),
                body: stored,
                created: Instant::now(),
            };
            let out = submission_json(&s, step);
            st.graph.submissions.push(s);
            Ok(Resp::json(StatusCode::CREATED, &out))
        }
        (&Method::GET, ["beta", "security", "threatSubmission", kind, rest @ ..]) => {
            require(
                claims,
                &[
                    "ThreatSubmission.Read.All",
                    "ThreatSubmission.ReadWrite.All",
                ],
            )?;
            let of_kind = st.graph.submissions.iter().filter(|s| s.kind == *kind);
            match rest {
                [] => Ok(odata_page(
                    base,
                    req,
                    of_kind.map(|s| submission_json(s, step)).collect(),
                    st.settings.odata_page_size,
                    Default::default(),
                )),
                [id] => of_kind
                    .into_iter()
                    .find(|s| s.body["id"] == *id)
                    .map(|s| Resp::json(StatusCode::OK, &submission_json(s, step)))
                    .ok_or_else(|| {
                        error(
                            StatusCode::NOT_FOUND,
                            "ResourceNotFound",
                            &format!("Submission '{id}' was not found."),
                        )
                    }),
                _ => Err(error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    "Unknown segment.",
                )),
            }
        }
        (
            m,
            [
                "v1.0",
                coll @ ("users" | "servicePrincipals"),
                id,
                rest @ ..,
            ],
        ) => {
            let users = *coll == "users";
            let (read, write): (&[&str], &[&str]) = if users {
                (
                    &["User.Read.All", "User.ReadWrite.All", "Directory.Read.All"],
                    &["User.ReadWrite.All", "User.EnableDisableAccount.All"],
                )
            } else {
                (
                    &[
                        "Application.Read.All",
                        "Application.ReadWrite.All",
                        "Directory.Read.All",
                    ],
                    &["Application.ReadWrite.All"],
                )
            };
            let list = if users {
                &mut st.graph.users
            } else {
                &mut st.graph.service_principals
            };
            let stale = &mut st.graph.stale;
            let Some(obj) = list.iter_mut().find(|o| {
                o["id"] == *id
                    || o["userPrincipalName"]
                        .as_str()
                        .is_some_and(|u| u.eq_ignore_ascii_case(id))
            }) else {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "Request_ResourceNotFound",
                    &format!(
                        "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
                    ),
                ));
            };
            let key = obj["id"].as_str().unwrap_or_default().to_string();
            // A write is seen by every replica only after the lag: until then reads show the
            // object as it was before the first unreplicated write.
            let mut lagging = |before: &Value| {
                if lag.is_zero() {
                    return;
                }
                let e = stale
                    .entry(key.clone())
                    .or_insert_with(|| (before.clone(), Instant::now()));
                if e.1 <= Instant::now() {
                    e.0 = before.clone();
                }
                e.1 = Instant::now() + lag;
            };
            match (m, rest) {
                (&Method::GET, []) => {
                    require(claims, read)?;
                    let replica = stale
                        .get(&key)
                        .filter(|(_, until)| Instant::now() < *until)
                        .map(|(old, _)| old);
                    Ok(Resp::json(StatusCode::OK, replica.unwrap_or(obj)))
                }
                (&Method::PATCH, []) => {
                    require(claims, write)?;
                    let body = req.json()?;
                    lagging(obj);
                    merge_patch(obj, &body);
                    Ok(Resp::empty(StatusCode::NO_CONTENT))
                }
                (&Method::POST, ["revokeSignInSessions"]) if users => {
                    require(claims, &["User.RevokeSessions.All", "User.ReadWrite.All"])?;
                    lagging(obj);
                    obj["signInSessionsValidFromDateTime"] = json!(rfc3339(now()));
                    Ok(Resp::json(
                        StatusCode::OK,
                        &json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean", "value": true}),
                    ))
                }
                _ => Err(error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Request_BadRequest",
                    "Unsupported method.",
                )),
            }
        }
        (&Method::GET, ["v1.0", "policies", "authorizationPolicy"]) => {
            require(
                claims,
                &["Policy.Read.All", "Policy.ReadWrite.Authorization"],
            )?;
            Ok(Resp::json(StatusCode::OK, &st.graph.authorization_policy))
        }
        (&Method::PATCH, ["v1.0", "policies", "authorizationPolicy"]) => {
            require(claims, &["Policy.ReadWrite.Authorization"])?;
            let mut body = req.json()?;
            canonical_grant_policies(&mut body)?;
            merge_patch(&mut st.graph.authorization_policy, &body);
            Ok(Resp::empty(StatusCode::NO_CONTENT))
        }
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                segs.last().unwrap_or(&"")
            ),
        )),
    }
}

/// `permissionGrantPoliciesAssigned` entries are `ManagePermissionGrantsForSelf.<policy>` or
/// `ManagePermissionGrantsForOwnedResource.<policy>`; the service stores them with its own
/// casing, whatever was sent (azure-api-facts §3.26), and the PATCH replaces the collection.
fn canonical_grant_policies(body: &mut Value) -> Result<(), Resp> {
    let Some(list) =
        body["defaultUserRolePermissions"]["permissionGrantPoliciesAssigned"].as_array_mut()
    else {
        return Ok(());
    };
    for e in list.iter_mut() {
        let s = e.as_str().unwrap_or_default();
        let canonical = [
            "ManagePermissionGrantsForSelf.",
            "ManagePermissionGrantsForOwnedResource.",
        ]
        .iter()
        .find(|p| s.len() > p.len() && s[..p.len()].eq_ignore_ascii_case(p))
        .map(|p| format!("{p}{}", &s[p.len()..]));
        match canonical {
            Some(c) => *e = json!(c),
            None => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    &format!(
                        "Invalid value specified for property 'permissionGrantPoliciesAssigned' of resource 'AuthorizationPolicy': {e}"
                    ),
                ));
            }
        }
    }
    Ok(())
}
