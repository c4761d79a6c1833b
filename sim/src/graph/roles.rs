//! Entra directory roles (Graph `roleManagement/directory`): direct assignments, and PIM
//! active and eligible assignments changed only through schedule requests
//! (azure-api-facts §3.25; entity shapes from the v1.0 CSDL: unifiedRoleAssignment,
//! unifiedRoleAssignmentScheduleInstance, unifiedRoleEligibilityScheduleInstance,
//! unifiedRoleAssignmentScheduleRequest).
//!
//! The three are kept apart here: `roleAssignments` lists the permanent direct assignments,
//! the schedule-instance lists only PIM's. (Real Entra also lists direct assignments among the
//! active instances, with `roleAssignmentOriginId` = the assignment's id; clients must skip
//! those, and the operator does.)

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{error, require};
use crate::http_util::{Req, Resp, guid, now, odata_page, parse_eq_filter, rfc3339};
use crate::token::Claims;
use crate::world::GraphWorld;

const READ: &[&str] = &[
    "RoleManagement.Read.Directory",
    "RoleManagement.Read.All",
    "RoleManagement.ReadWrite.Directory",
    "Directory.Read.All",
];
const WRITE: &[&str] = &["RoleManagement.ReadWrite.Directory"];
const ACTIONS: &[&str] = &[
    "adminAssign",
    "adminUpdate",
    "adminRemove",
    "selfActivate",
    "selfDeactivate",
    "adminExtend",
    "adminRenew",
    "selfExtend",
    "selfRenew",
];

#[derive(Debug, Default)]
pub struct Roles {
    /// Direct (permanent, non-PIM) assignments.
    pub assignments: Vec<Value>,
    /// PIM active assignments (`assignmentType: Assigned`).
    pub active: Vec<Value>,
    /// PIM eligible assignments.
    pub eligible: Vec<Value>,
}

impl Roles {
    pub fn from_world(w: &GraphWorld) -> Self {
        Self {
            assignments: w.role_assignments.clone(),
            active: w.role_assignment_schedules.clone(),
            eligible: w.role_eligibility_schedules.clone(),
        }
    }
}

/// `$filter=principalId eq '…'` (the only filter these lists get here).
fn filtered(req: &Req, items: &[Value]) -> Result<Vec<Value>, Resp> {
    let Some(f) = req.query.get("$filter") else {
        return Ok(items.to_vec());
    };
    let clauses =
        parse_eq_filter(f).map_err(|e| error(StatusCode::BAD_REQUEST, "BadRequest", &e))?;
    Ok(items
        .iter()
        .filter(|i| clauses.iter().all(|(k, v)| i[k.as_str()] == *v))
        .cloned()
        .collect())
}

fn same_role(a: &Value, b: &Value) -> bool {
    ["principalId", "roleDefinitionId", "directoryScopeId"]
        .iter()
        .all(|k| a[*k] == b[*k])
}

pub fn handle(
    roles: &mut Roles,
    req: &Req,
    claims: &Claims,
    base: &str,
    page: usize,
) -> Result<Resp, Resp> {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').skip(3).collect();
    let list = |items: &[Value]| -> Result<Resp, Resp> {
        require(claims, READ)?;
        Ok(odata_page(
            base,
            req,
            filtered(req, items)?,
            page,
            Default::default(),
        ))
    };
    match (&req.method, segs.as_slice()) {
        (&Method::GET, ["roleAssignments"]) => list(&roles.assignments),
        (&Method::GET, ["roleAssignmentScheduleInstances"]) => list(&roles.active),
        (&Method::GET, ["roleEligibilityScheduleInstances"]) => list(&roles.eligible),
        (&Method::POST, ["roleAssignments"]) => {
            require(claims, WRITE)?;
            let body = req.json()?;
            let mut a = fields(&body)?;
            if roles.assignments.iter().any(|x| same_role(x, &a)) {
                return Err(error(
                    StatusCode::CONFLICT,
                    "Request_BadRequest",
                    "A conflicting object with one or more of the specified property values is present in the directory.",
                ));
            }
            a["id"] = json!(guid());
            roles.assignments.push(a.clone());
            Ok(Resp::json(StatusCode::CREATED, &a))
        }
        (&Method::DELETE, ["roleAssignments", id]) => {
            require(claims, WRITE)?;
            let before = roles.assignments.len();
            roles.assignments.retain(|a| a["id"] != *id);
            if roles.assignments.len() == before {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "Request_ResourceNotFound",
                    &format!(
                        "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
                    ),
                ));
            }
            Ok(Resp::empty(StatusCode::NO_CONTENT))
        }
        (
            &Method::POST,
            [kind @ ("roleAssignmentScheduleRequests" | "roleEligibilityScheduleRequests")],
        ) => {
            require(claims, WRITE)?;
            let body = req.json()?;
            let eligible = *kind == "roleEligibilityScheduleRequests";
            let set = if eligible {
                &mut roles.eligible
            } else {
                &mut roles.active
            };
            schedule_request(set, &body, eligible)
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

/// principalId, roleDefinitionId and directoryScopeId, all required.
fn fields(body: &Value) -> Result<Value, Resp> {
    let mut out = json!({});
    for k in ["principalId", "roleDefinitionId", "directoryScopeId"] {
        match body[k].as_str() {
            Some(v) if !v.is_empty() => out[k] = json!(v),
            _ => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "Request_BadRequest",
                    &format!("Missing required property '{k}'."),
                ));
            }
        }
    }
    Ok(out)
}

/// adminAssign adds a schedule, adminRemove ends one; the default PIM role settings require a
/// justification for both. Other actions are not modelled.
fn schedule_request(set: &mut Vec<Value>, body: &Value, eligible: bool) -> Result<Resp, Resp> {
    let action = body["action"].as_str().unwrap_or_default();
    if !ACTIONS.contains(&action) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Invalid value for property 'action': '{action}'."),
        ));
    }
    let mut item = fields(body)?;
    if body["justification"].as_str().is_none_or(str::is_empty) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "JustificationRule",
            "Justification is required by the role's settings.",
        ));
    }
    let status = match action {
        "adminRemove" => {
            let before = set.len();
            set.retain(|x| !same_role(x, &item));
            if set.len() == before {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "RoleAssignmentDoesNotExist",
                    "The Role assignment does not exist.",
                ));
            }
            "Revoked"
        }
        "adminAssign" => {
            let schedule = &body["scheduleInfo"];
            let expiration = schedule["expiration"]["type"].as_str().unwrap_or_default();
            if !matches!(
                expiration,
                "noExpiration" | "afterDateTime" | "afterDuration"
            ) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "scheduleInfo.expiration.type must be noExpiration, afterDateTime or afterDuration.",
                ));
            }
            if set.iter().any(|x| same_role(x, &item)) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "RoleAssignmentExists",
                    "The Role assignment already exists.",
                ));
            }
            item["id"] = json!(guid());
            item["memberType"] = json!("Direct");
            item["startDateTime"] = schedule["startDateTime"].clone();
            item["endDateTime"] = schedule["expiration"]["endDateTime"].clone();
            if !eligible {
                item["assignmentType"] = json!("Assigned");
                item["roleAssignmentOriginId"] = item["id"].clone();
            }
            set.push(item.clone());
            "Provisioned"
        }
        other => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("action '{other}' is not supported by this simulator."),
            ));
        }
    };
    let mut out = body.clone();
    out["id"] = json!(guid());
    out["status"] = json!(status);
    out["createdDateTime"] = json!(rfc3339(now()));
    Ok(Resp::json(StatusCode::CREATED, &out))
}
