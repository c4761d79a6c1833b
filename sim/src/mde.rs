//! Defender for Endpoint: machines (with `$filter` on computerDnsName), isolate / unisolate and
//! restrict / unrestrict app execution as machine actions (Pending → InProgress → Succeeded,
//! Pending while the device is offline; 400 for the same action while one is pending),
//! indicators, and the documented per-minute rate limits (429 + Retry-After).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::State;
use crate::http_util::{Req, Resp, guid, now, odata_page, parse_eq_filter, rfc3339};
use crate::token::Claims;
use crate::world::MdeWorld;

#[derive(Debug, Clone)]
pub struct Action {
    pub body: Value,
    pub created: Instant,
    /// When the device took the action up: unset while it is offline (the action stays
    /// Pending). Pending for one step from then, InProgress for another, then Succeeded.
    pub started: Option<Instant>,
}

/// A machine action that switches a device state on or off.
pub struct Lever {
    pub verb: &'static str,
    pub kind: &'static str,
    /// Actions of one family change the same device state (and share one rate-limit window).
    pub family: &'static str,
    pub permission: &'static str,
}

/// The machine actions the operator uses (azure-api-facts §3.23; restrict app execution from
/// the Defender for Endpoint API reference: `Machine.RestrictExecution`, Windows only).
pub const LEVERS: &[Lever] = &[
    Lever {
        verb: "isolate",
        kind: "Isolate",
        family: "isolation",
        permission: "Machine.Isolate",
    },
    Lever {
        verb: "unisolate",
        kind: "Unisolate",
        family: "isolation",
        permission: "Machine.Isolate",
    },
    Lever {
        verb: "restrictCodeExecution",
        kind: "RestrictCodeExecution",
        family: "codeExecution",
        permission: "Machine.RestrictExecution",
    },
    Lever {
        verb: "unrestrictCodeExecution",
        kind: "UnrestrictCodeExecution",
        family: "codeExecution",
        permission: "Machine.RestrictExecution",
    },
];

#[derive(Debug, Default)]
pub struct MdeState {
    pub machines: Vec<Value>,
    pub actions: Vec<Action>,
    pub indicators: Vec<Value>,
    /// The last indicator id given out (ids are never reused).
    pub next_indicator: u64,
    /// Active indicators allowed per tenant.
    pub indicator_limit: usize,
    pub calls_per_minute: u32,
    windows: HashMap<(String, &'static str), (Instant, u32)>,
}

impl MdeState {
    pub fn from_world(w: &MdeWorld) -> Self {
        Self {
            machines: w.machines.clone(),
            calls_per_minute: w.calls_per_minute,
            indicator_limit: w.indicator_limit,
            ..Default::default()
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    Resp::json(
        status,
        &json!({"error": {"code": code, "message": message, "target": guid()}}),
    )
}

fn require(claims: &Claims, any_of: &[&str]) -> Result<(), Resp> {
    if claims.has_any_role(any_of) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "The application does not have any of the required application permissions ({}) to access the resource.",
                any_of.join(", ")
            ),
        ))
    }
}

fn phase(a: &Action, step: Duration) -> &'static str {
    let now = Instant::now();
    match a.started {
        Some(s) if now >= s + step * 2 => "Succeeded",
        Some(s) if now >= s + step => "InProgress",
        _ => "Pending",
    }
}

fn action_json(a: &Action, step: Duration) -> Value {
    let mut b = a.body.clone();
    b["status"] = json!(phase(a, step));
    b
}

fn active(a: &Action, step: Duration) -> bool {
    phase(a, step) != "Succeeded"
}

/// Devices that are online take up their queued actions, newest first, one after the other.
fn tick(st: &mut State, step: Duration) {
    let offline = &st.settings.mde_offline_devices;
    let mut queued: Vec<usize> = (0..st.mde.actions.len())
        .filter(|i| {
            let a = &st.mde.actions[*i];
            a.started.is_none()
                && !offline.iter().any(|d| {
                    a.body["machineId"]
                        .as_str()
                        .is_some_and(|m| m.eq_ignore_ascii_case(d))
                })
        })
        .collect();
    queued.sort_by_key(|i| std::cmp::Reverse(st.mde.actions[*i].created));
    let now = Instant::now();
    for (k, i) in queued.into_iter().enumerate() {
        st.mde.actions[i].started = Some(now + step * 2 * k as u32);
    }
}

/// Every machine action with its status now (the admin view).
pub fn actions_now(st: &mut State) -> Vec<Value> {
    let step = Duration::from_millis(st.settings.mde_action_step_ms);
    tick(st, step);
    st.mde
        .actions
        .iter()
        .map(|a| action_json(a, step))
        .collect()
}

/// What the device really is now: the succeeded actions applied in the order they finished
/// (which is not always the order they were created in).
pub fn device_state(st: &mut State, id: &str) -> Value {
    let step = Duration::from_millis(st.settings.mde_action_step_ms);
    tick(st, step);
    let mut done: Vec<&Action> = st
        .mde
        .actions
        .iter()
        .filter(|a| a.body["machineId"] == id && phase(a, step) == "Succeeded")
        .collect();
    done.sort_by_key(|a| a.started);
    let (mut isolated, mut scope, mut restricted) = (false, Value::Null, false);
    for a in done {
        match a.body["type"].as_str() {
            Some("Isolate") => (isolated, scope) = (true, a.body["scope"].clone()),
            Some("Unisolate") => (isolated, scope) = (false, Value::Null),
            Some("RestrictCodeExecution") => restricted = true,
            Some("UnrestrictCodeExecution") => restricted = false,
            _ => {}
        }
    }
    json!({"isolated": isolated, "isolationScope": scope, "codeExecutionRestricted": restricted})
}

fn machine_action(
    st: &mut State,
    req: &Req,
    claims: &Claims,
    id: &str,
    lever: &Lever,
) -> Result<Value, Resp> {
    let step = Duration::from_millis(st.settings.mde_action_step_ms);
    tick(st, step);
    let Some(machine) = st.mde.machines.iter().find(|m| m["id"] == id).cloned() else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("Machine {id} was not found"),
        ));
    };
    let body = req.json()?;
    // Body names are case-sensitive (azure-api-facts §3.23).
    let Some(comment) = body["Comment"].as_str() else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            "Comment is required.",
        ));
    };
    let mut scope = None;
    if lever.kind == "Isolate" {
        let isolation = body["IsolationType"].as_str().unwrap_or("Full");
        if !matches!(isolation, "Full" | "Selective" | "UnManagedDevice") {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestBody",
                &format!("Invalid IsolationType '{isolation}'."),
            ));
        }
        scope = Some(isolation);
    } else if lever.kind == "Unisolate" {
        scope = Some("Full");
    }
    if lever.family == "codeExecution"
        && !machine["osPlatform"]
            .as_str()
            .is_some_and(|p| p.starts_with("Windows"))
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "OsPlatformNotSupported",
            &format!(
                "Restrict app execution is not supported on {}.",
                machine["osPlatform"].as_str().unwrap_or("this platform")
            ),
        ));
    }
    // The same action again while one is pending is refused (the docs); an opposite one is
    // accepted, which is how a late duplicate isolate ends up overriding an unisolate.
    if st
        .mde
        .actions
        .iter()
        .any(|a| a.body["machineId"] == id && a.body["type"] == lever.kind && active(a, step))
    {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "ActiveRequestAlreadyExists",
            "Action is already in progress",
        ));
    }
    let ts = rfc3339(now());
    let mut a = json!({
        "id": guid(), "type": lever.kind,
        "requestor": claims.app_id, "requestorComment": comment,
        "machineId": id, "computerDnsName": machine["computerDnsName"],
        "creationDateTimeUtc": ts, "lastUpdateDateTimeUtc": ts,
    });
    if let Some(s) = scope {
        a["scope"] = json!(s);
    }
    let action = Action {
        body: a,
        created: Instant::now(),
        started: None,
    };
    st.mde.actions.push(action);
    tick(st, step);
    Ok(action_json(
        st.mde.actions.last().expect("just pushed"),
        step,
    ))
}

fn rate_limit(st: &mut State, tenant: &str, family: &'static str, limit: u32) -> Result<(), Resp> {
    let now = Instant::now();
    let w = st
        .mde
        .windows
        .entry((tenant.to_string(), family))
        .or_insert((now, 0));
    if now.duration_since(w.0) >= Duration::from_secs(60) {
        *w = (now, 0);
    }
    if w.1 >= limit {
        let after = 60u64
            .saturating_sub(now.duration_since(w.0).as_secs())
            .max(1);
        return Err(error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", &format!("API calls quota exceeded! Maximum allowed {limit} per minute. Try again in {after} seconds."))
            .with_header("Retry-After", after.to_string()));
    }
    w.1 += 1;
    Ok(())
}

fn filtered<'a>(items: impl Iterator<Item = &'a Value>, req: &Req) -> Result<Vec<&'a Value>, Resp> {
    let clauses = match req.query.get("$filter") {
        Some(f) => parse_eq_filter(f)
            .map_err(|e| error(StatusCode::BAD_REQUEST, "InvalidRequestBody", &e))?,
        None => Vec::new(),
    };
    Ok(items
        .filter(|i| {
            clauses.iter().all(|(k, v)| {
                i[k.as_str()]
                    .as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(v))
            })
        })
        .collect())
}

/// A filtered collection (`$filter`), one OData page of it.
fn listed<'a>(
    items: impl Iterator<Item = &'a Value>,
    req: &Req,
    base: &str,
    page_size: usize,
) -> Result<Resp, Resp> {
    let list = filtered(items, req)?.into_iter().cloned().collect();
    Ok(odata_page(base, req, list, page_size, Default::default()))
}

pub fn handle(st: &mut State, req: &Req, claims: &Claims, base: &str) -> Resp {
    match inner(st, req, claims, base) {
        Ok(r) | Err(r) => r,
    }
}

fn inner(st: &mut State, req: &Req, claims: &Claims, base: &str) -> Result<Resp, Resp> {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let step = Duration::from_millis(st.settings.mde_action_step_ms);
    let limit = st.mde.calls_per_minute;
    let read = ["Machine.Read.All", "Machine.ReadWrite.All"];
    match (&req.method, segs.as_slice()) {
        (&Method::GET, ["api", "machines"]) => {
            require(claims, &read)?;
            let list: Vec<Value> = filtered(st.mde.machines.iter(), req)?
                .into_iter()
                .cloned()
                .collect();
            // A filter that matches nothing is a 404, not an empty list (azure-api-facts §3.10,
            // §3.23).
            if list.is_empty() && req.query.contains_key("$filter") {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    "No machine matches the filter.",
                ));
            }
            let mut body = serde_json::Map::new();
            body.insert(
                "@odata.context".into(),
                json!("https://api.securitycenter.microsoft.com/api/$metadata#Machines"),
            );
            Ok(odata_page(
                base,
                req,
                list,
                st.settings.odata_page_size,
                body,
            ))
        }
        (&Method::GET, ["api", "machines", id]) => {
            require(claims, &read)?;
            st.mde
                .machines
                .iter()
                .find(|m| m["id"] == *id)
                .map(|m| Resp::json(StatusCode::OK, m))
                .ok_or_else(|| {
                    error(
                        StatusCode::NOT_FOUND,
                        "ResourceNotFound",
                        &format!("Machine {id} was not found"),
                    )
                })
        }
        (&Method::POST, ["api", "machines", id, verb]) => {
            let Some(lever) = LEVERS.iter().find(|l| l.verb == *verb) else {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    &format!("No API at {}", req.path),
                ));
            };
            require(claims, &[lever.permission])?;
            rate_limit(st, &claims.tenant, lever.family, limit)?;
            let id = id.to_string();
            machine_action(st, req, claims, &id, lever).map(|a| Resp::json(StatusCode::CREATED, &a))
        }
        (&Method::GET, ["api", "machineactions", rest @ ..]) => {
            require(claims, &read)?;
            rate_limit(st, &claims.tenant, "machineactions", limit)?;
            tick(st, step);
            let all: Vec<Value> = st
                .mde
                .actions
                .iter()
                .map(|a| action_json(a, step))
                .collect();
            match rest {
                [] => listed(all.iter(), req, base, st.settings.odata_page_size),
                [id] => all
                    .into_iter()
                    .find(|a| a["id"] == *id)
                    .map(|a| Resp::json(StatusCode::OK, &a))
                    .ok_or_else(|| {
                        error(
                            StatusCode::NOT_FOUND,
                            "ResourceNotFound",
                            &format!("Machine action {id} was not found"),
                        )
                    }),
                _ => Err(error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    "Unknown path",
                )),
            }
        }
        (m, ["api", "indicators", rest @ ..]) => {
            require(claims, &["Ti.ReadWrite", "Ti.ReadWrite.All"])?;
            let import = rest == ["import"];
            rate_limit(
                st,
                &claims.tenant,
                if import {
                    "indicators-import"
                } else {
                    "indicators"
                },
                if import { 30 } else { limit },
            )?;
            // Ti.ReadWrite sees and changes only the indicators this app created; active ones
            // only (expired ones are gone from the API).
            let all = claims.has_any_role(&["Ti.ReadWrite.All"]);
            let app = claims.app_id.clone();
            let now_ts = rfc3339(now());
            st.mde.indicators.retain(|i| {
                i["expirationTime"]
                    .as_str()
                    .is_none_or(|e| e > now_ts.as_str())
            });
            let visible = |i: &Value| all || i["createdBy"] == app.as_str();
            match (m, rest) {
                (&Method::GET, []) => {
                    let page = match req.query.get("$top") {
                        None => st.settings.odata_page_size,
                        Some(t) => match t.parse::<usize>() {
                            Ok(n @ 1..=10_000) => n,
                            _ => {
                                return Err(error(
                                    StatusCode::BAD_REQUEST,
                                    "InvalidRequestBody",
                                    &format!("$top must be between 1 and 10000, not {t}."),
                                ));
                            }
                        },
                    };
                    listed(
                        st.mde.indicators.iter().filter(|i| visible(i)),
                        req,
                        base,
                        page,
                    )
                }
                (&Method::POST, []) => upsert_indicator(st, &req.json()?, claims)
                    .map(|i| Resp::json(StatusCode::OK, &i)),
                (&Method::POST, ["import"]) => {
                    let body = req.json()?;
                    let items = body["Indicators"].as_array().cloned().unwrap_or_default();
                    if items.len() > 500 {
                        return Err(error(
                            StatusCode::BAD_REQUEST,
                            "MaximumBatchSizeExceeded",
                            "Maximum batch size is 500 indicators.",
                        ));
                    }
                    let results: Vec<Value> = items.iter().map(|i| match upsert_indicator(st, i, claims) {
                        Ok(v) => json!({"id": v["id"], "indicator": v["indicatorValue"], "isFailed": false, "failureReason": null}),
                        Err(r) => json!({"id": null, "indicator": i["indicatorValue"], "isFailed": true, "failureReason": r.body_json().map(|b| b["error"]["message"].clone())}),
                    }).collect();
                    Ok(Resp::json(StatusCode::OK, &json!({"value": results})))
                }
                (&Method::DELETE, [id]) => {
                    let before = st.mde.indicators.len();
                    st.mde.indicators.retain(|i| i["id"] != *id || !visible(i));
                    if st.mde.indicators.len() < before {
                        Ok(Resp::empty(StatusCode::NO_CONTENT))
                    } else {
                        Err(error(
                            StatusCode::NOT_FOUND,
                            "ResourceNotFound",
                            &format!("Indicator {id} was not found"),
                        ))
                    }
                }
                _ => Err(error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    "Unknown path",
                )),
            }
        }
        _ => Err(error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("No API at {}", req.path),
        )),
    }
}

fn upsert_indicator(st: &mut State, body: &Value, claims: &Claims) -> Result<Value, Resp> {
    for f in [
        "indicatorValue",
        "indicatorType",
        "action",
        "title",
        "description",
    ] {
        if !body[f].is_string() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestBody",
                &format!("{f} is required."),
            ));
        }
    }
    let ty = body["indicatorType"].as_str().unwrap_or("");
    if !matches!(
        ty,
        "FileSha1"
            | "FileMd5"
            | "CertificateThumbprint"
            | "FileSha256"
            | "IpAddress"
            | "DomainName"
            | "Url"
    ) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            &format!("Invalid indicatorType '{ty}'."),
        ));
    }
    let value = body["indicatorValue"].as_str().unwrap_or("");
    if ty == "IpAddress" && value.parse::<std::net::IpAddr>().is_err() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            &format!("'{value}' is not an IP address (ranges are not supported)."),
        ));
    }
    if !matches!(
        body["action"].as_str(),
        Some("Warn" | "Block" | "Audit" | "BlockAndRemediate" | "Allowed")
    ) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            "Invalid action.",
        ));
    }
    let ts = rfc3339(now());
    let existing = st.mde.indicators.iter_mut().find(|i| {
        i["indicatorType"] == ty
            && i["indicatorValue"]
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(value))
    });
    match existing {
        Some(i) => {
            // An update keeps who created it (Ti.ReadWrite's visibility depends on it).
            let keep: Vec<(&str, Value)> =
                ["id", "creationTimeDateTimeUtc", "createdBy", "sourceType"]
                    .into_iter()
                    .map(|f| (f, i[f].clone()))
                    .collect();
            *i = body.clone();
            for (f, v) in keep {
                i[f] = v;
            }
            i["lastUpdateTime"] = json!(ts);
            i["lastUpdatedBy"] = json!(claims.app_id);
            Ok(i.clone())
        }
        None => {
            // Active indicators per tenant (azure-api-facts §3.16; the error text is ours).
            if st.mde.indicators.len() >= st.mde.indicator_limit {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestBody",
                    &format!(
                        "Maximum number of active indicators ({}) reached.",
                        st.mde.indicator_limit
                    ),
                ));
            }
            st.mde.next_indicator += 1;
            let mut i = body.clone();
            i["id"] = json!(st.mde.next_indicator.to_string());
            i["creationTimeDateTimeUtc"] = json!(ts);
            i["createdBy"] = json!(claims.app_id);
            i["sourceType"] = json!("AadApp");
            st.mde.indicators.push(i.clone());
            Ok(i)
        }
    }
}
