//! Long-running operations: `Azure-AsyncOperation` status polling and `Location` result polling,
//! InProgress until a configurable delay has passed, then the effect is applied.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};

use crate::http_util::{Req, Resp, guid, merge_patch, rfc3339};
use crate::token::Claims;
use crate::{State, arm};

/// What happens to the world when an operation completes.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Merge-patch the resource.
    Merge { id: String, patch: Value },
    /// Replace (or create) the resource.
    Replace { id: String, body: Value },
    /// Cosmos `regenerateKey`.
    CosmosRegen { id: String, key_kind: String },
    /// Arc run command finished.
    RunCommand { id: String },
}

impl Effect {
    /// The resource the operation changes.
    pub fn target(&self) -> &str {
        match self {
            Effect::Merge { id, .. }
            | Effect::Replace { id, .. }
            | Effect::CosmosRegen { id, .. }
            | Effect::RunCommand { id } => id,
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
}

/// Starts an operation and returns the 201/202 response with the polling headers.
pub fn start(
    st: &mut State,
    ctx: &arm::Ctx,
    status: StatusCode,
    effect: Effect,
    result_id: Option<String>,
    body: Option<Value>,
) -> Resp {
    let id = guid();
    let ns = ctx
        .m
        .route
        .template
        .split("/providers/")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or("Microsoft.Resources");
    let base = format!(
        "{}/subscriptions/{}/providers/{}/locations/local",
        ctx.sim.base_url,
        ctx.subscription(),
        ns
    );
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
        },
    );
    let resp = match body {
        Some(b) => Resp::json(status, &b),
        None => Resp::empty(status),
    };
    resp.with_header(
        "Azure-AsyncOperation",
        format!("{base}/operationStatuses/{id}?api-version={}", ctx.version),
    )
    .with_header(
        "Location",
        format!("{base}/operationResults/{id}?api-version={}", ctx.version),
    )
    .with_header(
        "Retry-After",
        st.settings.lro_retry_after_seconds.to_string(),
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
        let (effect, fail) = match st.operations.get_mut(&id) {
            Some(o) => (o.effect.take(), o.fail),
            None => (None, false),
        };
        let ok = match effect {
            _ if fail => false,
            Some(e) => apply(st, e),
            None => true,
        };
        if let Some(o) = st.operations.get_mut(&id) {
            o.status = if ok { "Succeeded" } else { "Failed" };
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
        Effect::CosmosRegen { id, key_kind } => arm::cosmos::regenerate(st, &id, &key_kind),
        Effect::RunCommand { id } => arm::arc::finish_run_command(st, &id),
    }
}

/// Serves the polling URLs; `None` when the path is not one.
pub fn poll(st: &mut State, _req: &Req, path: &str, _claims: &Claims) -> Option<Resp> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // subscriptions/{s}/providers/{ns}/locations/{loc}/(operationStatuses|operationResults)/{id}
    if segs.len() != 8
        || !segs[2].eq_ignore_ascii_case("providers")
        || !segs[4].eq_ignore_ascii_case("locations")
    {
        return None;
    }
    let kind = segs[6];
    if kind != "operationStatuses" && kind != "operationResults" {
        return None;
    }
    let Some(op) = st.operations.get(segs[7]).cloned() else {
        return Some(Resp::arm_error(
            StatusCode::NOT_FOUND,
            "OperationNotFound",
            &format!("Operation '{}' was not found.", segs[7]),
        ));
    };
    Some(if kind == "operationStatuses" {
        let mut body =
            json!({"id": path, "name": op.id, "status": op.status, "startTime": op.start});
        if let Some(end) = &op.end {
            body["endTime"] = json!(end);
        }
        if op.status == "Failed" {
            let (code, message) = if op.fail {
                (
                    st.settings.lro_fail_code.as_str(),
                    "Injected failure (azure-sim lroFailNext).",
                )
            } else {
                ("ResourceNotFound", "The target resource no longer exists.")
            };
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
