//! Email remediation: `POST /v1.0/security/collaboration/analyzedEmails/remediate`, a bound
//! action with no return type [spec CSDL]: 202, no body, and a `Location` that is an Action
//! center link carrying the `bulkId` [docs]. Azure's checks: the `remediationAction` enum
//! (`moveToQuarantine` "isn't currently supported"), a boolean `remediateSendersCopy`, one
//! `{networkMessageId, recipientEmailAddress}` per entry.

use http::StatusCode;
use serde_json::{Value, json};

use super::{error, require};
use crate::http_util::{Req, Resp, guid};
use crate::token::Claims;

const ACTIONS: &[&str] = &[
    "moveToJunk",
    "moveToInbox",
    "hardDelete",
    "softDelete",
    "moveToDeletedItems",
];

fn bad(message: &str) -> Resp {
    error(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// The remediation as accepted (kept for `GET /_sim/graph/remediations`).
pub fn remediate(log: &mut Vec<Value>, req: &Req, claims: &Claims) -> Result<Resp, Resp> {
    require(claims, &["SecurityAnalyzedMessage.ReadWrite.All"])?;
    let body = req.json()?;
    let action = body["action"].as_str().unwrap_or_default();
    if action == "moveToQuarantine" {
        return Err(bad(
            "The remediation action moveToQuarantine isn't currently supported.",
        ));
    }
    if !ACTIONS.contains(&action) {
        return Err(bad(&format!("Invalid value '{action}' for action.")));
    }
    if let Some(s) = body.get("severity")
        && !["low", "medium", "high"].contains(&s.as_str().unwrap_or_default())
    {
        return Err(bad(&format!("Invalid value {s} for severity.")));
    }
    if body
        .get("remediateSendersCopy")
        .is_some_and(|v| !v.is_boolean())
    {
        return Err(bad("remediateSendersCopy must be a boolean (Edm.Boolean)."));
    }
    let emails = body["analyzedEmails"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let well_formed = !emails.is_empty()
        && emails.iter().all(|e| {
            e["networkMessageId"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
                && e["recipientEmailAddress"]
                    .as_str()
                    .is_some_and(|s| s.contains('@'))
        });
    if !well_formed {
        return Err(bad(
            "analyzedEmails must list at least one {networkMessageId, recipientEmailAddress}.",
        ));
    }
    let bulk = guid();
    log.push(json!({"bulkId": bulk, "action": action, "displayName": body["displayName"],
        "severity": body["severity"], "remediateSendersCopy": body["remediateSendersCopy"], "analyzedEmails": emails}));
    let filter = format!("%7B%22bulkId%22%3A%5B%22{bulk}%22%5D%7D");
    Ok(Resp::empty(StatusCode::ACCEPTED).with_header(
        "location",
        format!(
            "https://security.microsoft.com/action-center/history?filters={filter}&tid={}",
            claims.tenant
        ),
    ))
}
