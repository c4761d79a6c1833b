//! Conditional Access policies (`/v1.0/identity/conditionalAccess/policies`): list, get,
//! create (201 with the stored policy), PATCH (204) and DELETE (204), shaped and validated after
//! the v1.0 CSDL `conditionalAccessPolicy` (required properties, the `state`, grant-control and
//! client-app enums, user ids or the documented keywords). Reads need `Policy.Read.All` (or
//! `Policy.ReadWrite.ConditionalAccess`); writes need both (the documented pair for create and
//! update). A policy created less than `graphReplicationLagMs` ago is missing from the list
//! (Entra is eventually consistent). PATCH is applied as a JSON merge; clients that send whole
//! sub-objects see the same result as with the service's replace of complex properties.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{error, require};
use crate::http_util::{Req, Resp, guid, merge_patch, now, odata_page, rfc3339};
use crate::token::Claims;

const READ: &[&str] = &["Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"];
const WRITE: &[&str] = &["Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"];
const STATES: &[&str] = &["enabled", "disabled", "enabledForReportingButNotEnforced"];
const GRANTS: &[&str] = &[
    "block",
    "mfa",
    "compliantDevice",
    "domainJoinedDevice",
    "approvedApplication",
    "compliantApplication",
    "passwordChange",
    "riskRemediation",
];
const CLIENT_APPS: &[&str] = &[
    "all",
    "browser",
    "mobileAppsAndDesktopClients",
    "exchangeActiveSync",
    "easSupported",
    "other",
];
const USER_KEYWORDS: &[&str] = &["All", "None", "GuestsOrExternalUsers"];

#[derive(Debug, Default)]
pub struct Policies {
    /// Each policy, and when it was created here (`None`: in the world file, long replicated).
    pub items: Vec<(Value, Option<Instant>)>,
}

impl Policies {
    pub fn from_world(list: &[Value]) -> Self {
        Self {
            items: list.iter().map(|p| (p.clone(), None)).collect(),
        }
    }
}

/// `segs`: the path after `v1.0/identity/conditionalAccess/policies`.
pub fn handle(
    p: &mut Policies,
    req: &Req,
    claims: &Claims,
    base: &str,
    page_size: usize,
    lag: Duration,
    segs: &[&str],
) -> Result<Resp, Resp> {
    match (&req.method, segs) {
        (&Method::GET, []) => {
            require_all(claims, READ, false)?;
            let visible: Vec<Value> = p
                .items
                .iter()
                .filter(|(_, at)| at.is_none_or(|t| t.elapsed() >= lag))
                .map(|(v, _)| v.clone())
                .collect();
            Ok(odata_page(
                base,
                req,
                visible,
                page_size,
                Default::default(),
            ))
        }
        (&Method::POST, []) => {
            require_all(claims, WRITE, true)?;
            let mut body = req.json()?;
            validate(&body, true)?;
            let t = rfc3339(now());
            body["id"] = json!(guid());
            body["createdDateTime"] = json!(t);
            body["modifiedDateTime"] = Value::Null;
            p.items.push((body.clone(), Some(Instant::now())));
            Ok(Resp::json(StatusCode::CREATED, &body))
        }
        (m, [id]) => {
            let Some(i) = p.items.iter().position(|(v, _)| v["id"] == *id) else {
                require_all(claims, READ, false)?;
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    &format!("Could not find the policy with id '{id}'."),
                ));
            };
            match *m {
                Method::GET => {
                    require_all(claims, READ, false)?;
                    Ok(Resp::json(StatusCode::OK, &p.items[i].0))
                }
                Method::PATCH => {
                    require_all(claims, WRITE, true)?;
                    let body = req.json()?;
                    for ro in ["id", "createdDateTime", "modifiedDateTime"] {
                        if body.get(ro).is_some() {
                            return Err(bad(&format!("The property '{ro}' is read-only.")));
                        }
                    }
                    let mut next = p.items[i].0.clone();
                    merge_patch(&mut next, &body);
                    validate(&next, false)?;
                    next["modifiedDateTime"] = json!(rfc3339(now()));
                    p.items[i].0 = next;
                    Ok(Resp::empty(StatusCode::NO_CONTENT))
                }
                Method::DELETE => {
                    require_all(claims, WRITE, true)?;
                    p.items.remove(i);
                    Ok(Resp::empty(StatusCode::NO_CONTENT))
                }
                _ => Err(error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Request_BadRequest",
                    "Unsupported method.",
                )),
            }
        }
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Resource not found for the segment 'policies'.",
        )),
    }
}

/// Reads take either permission; writes need every one of `perms` (`all`).
fn require_all(claims: &Claims, perms: &[&str], all: bool) -> Result<(), Resp> {
    if !all {
        return require(claims, perms);
    }
    for p in perms {
        require(claims, &[p])?;
    }
    Ok(())
}

fn bad(message: &str) -> Resp {
    error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn strings<'a>(v: &'a Value, field: &str) -> Result<Vec<&'a str>, Resp> {
    match &v[field] {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| bad(&format!("'{field}' must be a collection of strings.")))
            })
            .collect(),
        _ => Err(bad(&format!("'{field}' must be a collection."))),
    }
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The policy as stored after a create or an update: what the service refuses, it refuses.
fn validate(p: &Value, create: bool) -> Result<(), Resp> {
    if p["displayName"].as_str().is_none_or(str::is_empty) {
        return Err(bad("The displayName property is required."));
    }
    let state = p["state"].as_str().unwrap_or_default();
    if !STATES.contains(&state) {
        return Err(bad(&format!(
            "Invalid value '{state}' for property 'state'; expected one of {STATES:?}."
        )));
    }
    let c = &p["conditions"];
    if !c.is_object() {
        return Err(bad("The conditions property is required."));
    }
    let apps = strings(&c["applications"], "includeApplications")?;
    let actions = strings(&c["applications"], "includeUserActions")?;
    if apps.is_empty() && actions.is_empty() {
        return Err(bad(
            "conditions.applications: includeApplications or includeUserActions is required.",
        ));
    }
    let client = strings(c, "clientAppTypes")?;
    if client.is_empty() || client.iter().any(|a| !CLIENT_APPS.contains(a)) {
        return Err(bad(&format!(
            "conditions.clientAppTypes must list values of {CLIENT_APPS:?}."
        )));
    }
    let u = &c["users"];
    if !u.is_object() {
        return Err(bad("conditions.users is required."));
    }
    let mut included = 0;
    for f in ["includeUsers", "excludeUsers"] {
        for x in strings(u, f)? {
            if !is_guid(x) && !USER_KEYWORDS.contains(&x) {
                return Err(bad(&format!(
                    "conditions.users.{f}: '{x}' is neither an object id nor one of {USER_KEYWORDS:?}."
                )));
            }
        }
    }
    for f in [
        "includeUsers",
        "includeGroups",
        "includeRoles",
        "excludeGroups",
        "excludeRoles",
    ] {
        let list = strings(u, f)?;
        if f.starts_with("include") {
            included += list.len();
        }
        if f != "includeUsers" && list.iter().any(|x| !is_guid(x)) {
            return Err(bad(&format!("conditions.users.{f} must hold object ids.")));
        }
    }
    if included == 0
        && u.get("includeGuestsOrExternalUsers")
            .is_none_or(Value::is_null)
    {
        return Err(bad(
            "conditions.users: at least one of includeUsers, includeGroups and includeRoles is required.",
        ));
    }
    let g = &p["grantControls"];
    if !g.is_null() {
        let controls = strings(g, "builtInControls")?;
        if let Some(x) = controls.iter().find(|x| !GRANTS.contains(x)) {
            return Err(bad(&format!(
                "grantControls.builtInControls: '{x}' is not one of {GRANTS:?}."
            )));
        }
        let op = g["operator"].as_str().unwrap_or_default();
        if !controls.is_empty() && op != "AND" && op != "OR" {
            return Err(bad("grantControls.operator must be AND or OR."));
        }
    } else if create && p["sessionControls"].is_null() {
        return Err(bad("A policy needs grantControls or sessionControls."));
    }
    Ok(())
}
