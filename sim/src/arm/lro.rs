//! Long-running operations: `Azure-AsyncOperation` status polling, `Location` result polling and
//! `provisioningState` polling, InProgress until a configurable delay has passed, then the effect
//! is applied. Each route answers in the [`Shape`] its spec declares (response codes and
//! `final-state-via`, `../shared/azure-api-facts.md` §2.3); the `lroShape` setting forces one
//! shape on every operation so a client can be tested against each.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};

use crate::http_util::{Req, Resp, guid, merge_patch, rfc3339};
use crate::token::Claims;
use crate::{State, arm};

/// How a long-running operation is announced and followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Shape {
    /// 201/202 with `Azure-AsyncOperation` and `Location` (ARM's usual answer; no
    /// `final-state-via`, so clients GET the resource at the end): SQL server PATCH, Front Door
    /// WAF PUT, Cosmos regenerateKey.
    Both,
    /// 200/201 with `Azure-AsyncOperation` only (`final-state-via: azure-async-operation`, no 202
    /// declared): Arc runCommands PUT.
    AzureAsyncOperation,
    /// 202 with `Location` only (`final-state-via: location`): the Location URL answers 202
    /// while running, then the result, or the operation's error with a 4xx.
    Location,
    /// 200 with the accepted body and an `Azure-AsyncOperation` header (only 200 declared):
    /// Cosmos account PATCH.
    OkWithHeader,
    /// 200/201 with a non-terminal `provisioningState` and no header: the resource itself is
    /// polled. A POST has no resource to poll and answers as [`Shape::Location`].
    ProvisioningState,
}

/// What happens to the world when an operation completes.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Merge-patch the resource.
    Merge { id: String, patch: Value },
    /// Replace (or create) the resource.
    Replace { id: String, body: Value },
    /// A change only the resource's own module knows (e.g. Cosmos regenerateKey): it passes
    /// the function, so this module never calls back into behaviour modules.
    Apply {
        id: String,
        arg: String,
        apply: fn(&mut State, &str, &str) -> bool,
    },
}

impl Effect {
    /// The resource the operation changes.
    pub fn target(&self) -> &str {
        match self {
            Effect::Merge { id, .. } | Effect::Replace { id, .. } | Effect::Apply { id, .. } => id,
        }
    }
}

/// Whether an operation changing `id` is still running (services that lock a resource for the
/// length of an operation refuse other writes to it meanwhile).
pub fn running_on(st: &State, id: &str) -> bool {
    st.operations.values().any(|o| {
        o.status == "InProgress"
            && o.effect
                .as_ref()
                .is_some_and(|e| e.target().eq_ignore_ascii_case(id))
    })
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    pub status: &'static str,
    pub start: String,
    pub end: Option<String>,
    pub due: Instant,
    pub effect: Option<Effect>,
    /// The resource whose final state the Location URL returns; `None` for POST actions.
    pub result_id: Option<String>,
    pub subscription: String,
    /// Injected failure: end `Failed` without applying the effect.
    pub fail: bool,
    /// Polled through the resource's `provisioningState` (kept in step with the status).
    pub on_resource: bool,
    pub urls: Polling,
}

/// Where an operation is polled and the RBAC action ARM checks there. These URLs are outside
/// the resource (some outside its resource group), so a role scoped to the resource alone cannot
/// poll them.
#[derive(Debug, Clone)]
pub struct Polling {
    /// The `Azure-AsyncOperation` path and its action.
    pub status: (String, &'static str),
    /// The `Location` path and its action.
    pub result: (String, &'static str),
}

impl Polling {
    /// The polling URLs of the resource provider that owns `resource` (shapes as seen in ARM
    /// answers and the provider operations list; `../shared/azure-api-facts.md` §2.3):
    /// - SQL: under the resource group, `locations/{l}/serverAzureAsyncOperation|serverOperationResults`;
    ///   Microsoft publishes no action for the first, so only `Microsoft.Sql/locations/*/read`
    ///   (what the SQL built-in roles grant) covers it.
    /// - Cosmos DB: `/subscriptions/{s}/providers/Microsoft.DocumentDB/locations/{l}/operationsStatus`
    ///   (subscription scope), and `{account}/operationResults`.
    /// - Front Door: `/subscriptions/{s}/providers/Microsoft.Network/frontdoorOperationResults`.
    /// - Arc: `/subscriptions/{s}/providers/Microsoft.HybridCompute/locations/{l}/operationStatus|operationResults`.
    /// - Network (NSG rules): `/subscriptions/{s}/providers/Microsoft.Network/locations/{l}/operations|operationResults`.
    /// - Others: `/subscriptions/{s}/providers/{ns}/locations/{l}/operationStatuses|operationResults`.
    pub fn of(resource: &str, subscription: &str, id: &str) -> Polling {
        let lower = resource.to_ascii_lowercase();
        let rg = resource
            .split('/')
            .nth(4)
            .map(|rg| format!("/resourceGroups/{rg}"))
            .unwrap_or_default();
        let sub = format!("/subscriptions/{subscription}");
        if lower.contains("/providers/microsoft.sql/") {
            let base = format!("{sub}{rg}/providers/Microsoft.Sql/locations/local");
            Polling {
                status: (
                    format!("{base}/serverAzureAsyncOperation/{id}"),
                    "Microsoft.Sql/locations/serverAzureAsyncOperation/read",
                ),
                result: (
                    format!("{base}/serverOperationResults/{id}"),
                    "Microsoft.Sql/locations/serverOperationResults/read",
                ),
            }
        } else if lower.contains("/providers/microsoft.documentdb/") {
            let account = resource.split('/').take(9).collect::<Vec<_>>().join("/");
            Polling {
                status: (
                    format!(
                        "{sub}/providers/Microsoft.DocumentDB/locations/local/operationsStatus/{id}"
                    ),
                    "Microsoft.DocumentDB/locations/operationsStatus/read",
                ),
                result: (
                    format!("{account}/operationResults/{id}"),
                    "Microsoft.DocumentDB/databaseAccounts/operationResults/read",
                ),
            }
        } else if lower.contains("/frontdoorwebapplicationfirewallpolicies/") {
            let base = format!("{sub}/providers/Microsoft.Network/frontdoorOperationResults/{id}");
            Polling {
                status: (
                    base.clone(),
                    "Microsoft.Network/frontdooroperationresults/read",
                ),
                result: (
                    format!("{base}/frontdoorResults/{id}"),
                    "Microsoft.Network/frontdooroperationresults/frontdoorResults/read",
                ),
            }
        } else if lower.contains("/providers/microsoft.network/networksecuritygroups/") {
            // The Network RP's operation URLs, at subscription scope [unverified].
            let base = format!("{sub}/providers/Microsoft.Network/locations/local");
            Polling {
                status: (
                    format!("{base}/operations/{id}"),
                    "Microsoft.Network/locations/operations/read",
                ),
                result: (
                    format!("{base}/operationResults/{id}"),
                    "Microsoft.Network/locations/operationResults/read",
                ),
            }
        } else if lower.contains("/providers/microsoft.hybridcompute/") {
            let base = format!("{sub}/providers/Microsoft.HybridCompute/locations/local");
            Polling {
                status: (
                    format!("{base}/operationStatus/{id}"),
                    "Microsoft.HybridCompute/locations/operationStatus/read",
                ),
                result: (
                    format!("{base}/operationResults/{id}"),
                    "Microsoft.HybridCompute/locations/operationResults/read",
                ),
            }
        } else {
            let ns = resource
                .split("/providers/")
                .nth(1)
                .and_then(|s| s.split('/').next())
                .unwrap_or("Microsoft.Resources");
            let base = format!("{sub}/providers/{ns}/locations/local");
            Polling {
                status: (
                    format!("{base}/operationStatuses/{id}"),
                    "locations/operationStatuses/read",
                ),
                result: (
                    format!("{base}/operationResults/{id}"),
                    "locations/operationResults/read",
                ),
            }
        }
    }
}

/// Starts an operation and returns the response in the route's `shape` (or the `lroShape`
/// setting's) with its polling headers. `status` is the route's answer for
/// [`Shape::Both`]/[`Shape::AzureAsyncOperation`] (201/202, or 200 on update).
#[allow(clippy::too_many_arguments)]
pub fn start(
    st: &mut State,
    ctx: &arm::Ctx,
    shape: Shape,
    status: StatusCode,
    effect: Effect,
    result_id: Option<String>,
    body: Option<Value>,
) -> Resp {
    let post = ctx.req.method == http::Method::POST;
    let shape = match st.settings.lro_shape.unwrap_or(shape) {
        Shape::ProvisioningState if post => Shape::Location,
        s => s,
    };
    let id = guid();
    let urls = Polling::of(ctx.path, ctx.subscription(), &id);
    let delay = Duration::from_millis(st.settings.lro_delay_ms);
    let fail = st.settings.lro_fail_next > 0;
    if fail {
        st.settings.lro_fail_next -= 1;
    }
    st.operations.insert(
        id.clone(),
        Operation {
            id: id.clone(),
            status: "InProgress",
            start: rfc3339(crate::http_util::now()),
            end: None,
            due: Instant::now() + delay,
            effect: Some(effect),
            result_id,
            subscription: ctx.subscription().to_string(),
            fail,
            on_resource: shape == Shape::ProvisioningState,
            urls: urls.clone(),
        },
    );
    let status = match shape {
        Shape::Both | Shape::AzureAsyncOperation => status,
        Shape::Location => StatusCode::ACCEPTED,
        Shape::OkWithHeader => StatusCode::OK,
        Shape::ProvisioningState if status == StatusCode::CREATED => status,
        Shape::ProvisioningState => StatusCode::OK,
    };
    let body = if shape == Shape::ProvisioningState {
        let target = arm::key(
            st.operations[&id]
                .effect
                .as_ref()
                .map_or("", Effect::target),
        );
        let mut b = body
            .or_else(|| st.resources.get(&target).cloned())
            .unwrap_or_else(|| json!({"properties": {}}));
        b["properties"]["provisioningState"] = json!("Updating");
        if let Some(r) = st.resources.get_mut(&target) {
            r["properties"]["provisioningState"] = json!("Updating");
        }
        Some(b)
    } else {
        body
    };
    let resp = match body {
        Some(b) => Resp::json(status, &b),
        None => Resp::empty(status),
    };
    let base = &ctx.sim.base_url;
    let status_url = format!("{base}{}?api-version={}", urls.status.0, ctx.version);
    let result_url = format!("{base}{}?api-version={}", urls.result.0, ctx.version);
    let resp = match shape {
        Shape::Both => resp
            .with_header("Azure-AsyncOperation", status_url)
            .with_header("Location", result_url),
        Shape::AzureAsyncOperation | Shape::OkWithHeader => {
            resp.with_header("Azure-AsyncOperation", status_url)
        }
        Shape::Location => resp.with_header("Location", result_url),
        Shape::ProvisioningState => resp,
    };
    resp.with_header(
        "Retry-After",
        st.settings.lro_retry_after_seconds.to_string(),
    )
}

/// A long-running DELETE with `final-state-via: location` (202, `Location` only): 204 when the
/// resource is already gone, else `remove` runs when the operation completes.
pub fn delete(st: &mut State, ctx: &arm::Ctx, remove: fn(&mut State, &str, &str) -> bool) -> Resp {
    if arm::get_stored(st, ctx.path).is_none() {
        return Resp::empty(StatusCode::NO_CONTENT);
    }
    start(
        st,
        ctx,
        Shape::Location,
        StatusCode::ACCEPTED,
        Effect::Apply {
            id: ctx.path.to_string(),
            arg: String::new(),
            apply: remove,
        },
        None,
        None,
    )
}

/// Completes every operation whose delay has passed.
pub fn settle(st: &mut State, now: Instant) {
    let due: Vec<String> = st
        .operations
        .values()
        .filter(|o| o.status == "InProgress" && o.due <= now)
        .map(|o| o.id.clone())
        .collect();
    for id in due {
        let (effect, fail, on_resource) = match st.operations.get_mut(&id) {
            Some(o) => (o.effect.take(), o.fail, o.on_resource),
            None => (None, false, false),
        };
        let target = effect.as_ref().map(|e| arm::key(e.target()));
        let ok = match effect {
            _ if fail => false,
            Some(e) => apply(st, e),
            None => true,
        };
        let status = if ok { "Succeeded" } else { "Failed" };
        if let Some(r) = target
            .filter(|_| on_resource)
            .and_then(|t| st.resources.get_mut(&t))
        {
            r["properties"]["provisioningState"] = json!(status);
        }
        if let Some(o) = st.operations.get_mut(&id) {
            o.status = status;
            o.end = Some(arm::now_str());
        }
    }
}

fn apply(st: &mut State, effect: Effect) -> bool {
    match effect {
        Effect::Merge { id, patch } => match st.resources.get_mut(&arm::key(&id)) {
            Some(r) => {
                merge_patch(r, &patch);
                true
            }
            None => false,
        },
        Effect::Replace { id, body } => {
            st.resources.insert(arm::key(&id), body);
            true
        }
        Effect::Apply { id, arg, apply } => apply(st, &id, &arg),
    }
}

/// The error a failed operation ends with.
fn failure(st: &State, op: &Operation) -> (String, &'static str) {
    if op.fail {
        (
            st.settings.lro_fail_code.clone(),
            "Injected failure (azure-sim lroFailNext).",
        )
    } else {
        (
            "ResourceNotFound".into(),
            "The target resource no longer exists.",
        )
    }
}

/// Serves the polling URLs; `None` when the path is not one. ARM authorizes a poll like any
/// request: the caller needs the provider's read action for that URL, at its scope.
pub fn poll(st: &mut State, _req: &Req, path: &str, claims: &Claims) -> Option<Resp> {
    let (op, status) = st.operations.values().find_map(|o| {
        if o.urls.status.0.eq_ignore_ascii_case(path) {
            Some((o.clone(), true))
        } else if o.urls.result.0.eq_ignore_ascii_case(path) {
            Some((o.clone(), false))
        } else {
            None
        }
    })?;
    let action = if status {
        op.urls.status.1
    } else {
        op.urls.result.1
    };
    let action = match action.strip_prefix("locations/") {
        // The generic shape: the action is under the provider of the URL.
        Some(rest) => {
            let ns = path.split("/providers/").nth(1)?.split('/').next()?;
            format!("{ns}/locations/{rest}")
        }
        None => action.to_string(),
    };
    let allowed = st
        .principal_by_oid(&claims.oid)
        .is_some_and(|p| crate::authz::allowed(p, &action, path));
    if !allowed {
        return Some(Resp::arm_error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            &format!(
                "The client '{oid}' with object id '{oid}' does not have authorization to perform action '{action}' over scope '{path}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                oid = claims.oid
            ),
        ));
    }
    Some(if status {
        let mut body =
            json!({"id": path, "name": op.id, "status": op.status, "startTime": op.start});
        if let Some(end) = &op.end {
            body["endTime"] = json!(end);
        }
        if op.status == "Failed" {
            let (code, message) = failure(st, &op);
            body["error"] = json!({"code": code, "message": message});
        }
        let r = Resp::json(StatusCode::OK, &body);
        if op.status == "InProgress" {
            r.with_header(
                "Retry-After",
                st.settings.lro_retry_after_seconds.to_string(),
            )
        } else {
            r
        }
    } else if op.status == "InProgress" {
        Resp::empty(StatusCode::ACCEPTED).with_header(
            "Retry-After",
            st.settings.lro_retry_after_seconds.to_string(),
        )
    } else if op.status == "Failed" {
        // ARM: the Location URL of a failed operation answers with the operation's error.
        let (code, message) = failure(st, &op);
        Resp::arm_error(StatusCode::BAD_REQUEST, &code, message)
    } else {
        match op
            .result_id
            .as_deref()
            .and_then(|id| arm::get_stored(st, id))
        {
            Some(v) => Resp::json(StatusCode::OK, v),
            None => Resp::empty(StatusCode::NO_CONTENT),
        }
    })
}
