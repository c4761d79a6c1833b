//! Defender for Endpoint: machines (with `$filter` on computerDnsName), isolate / unisolate as
//! machine actions (Pending → InProgress → Succeeded; 400 while one is pending), machine actions,
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
}

#[derive(Debug, Default)]
pub struct MdeState {
    pub machines: Vec<Value>,
    pub actions: Vec<Action>,
    pub indicators: Vec<Value>,
    pub calls_per_minute: u32,
    windows: HashMap<(String, &'static str), (Instant, u32)>,
}

impl MdeState {
    pub fn from_world(w: &MdeWorld) -> Self {
        Self {
            machines: w.machines.clone(),
            calls_per_minute: w.calls_per_minute,
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

fn action_json(a: &Action, step: Duration) -> Value {
    let mut b = a.body.clone();
    let e = a.created.elapsed();
    b["status"] = json!(if e < step {
        "Pending"
    } else if e < step * 2 {
        "InProgress"
    } else {
        "Succeeded"
    });
    b
}

fn active(a: &Action, step: Duration) -> bool {
    a.created.elapsed() < step * 2
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
        (&Method::POST, ["api", "machines", id, verb @ ("isolate" | "unisolate")]) => {
            require(claims, &["Machine.Isolate"])?;
            rate_limit(st, &claims.tenant, "isolate", limit)?;
            let Some(machine) = st.mde.machines.iter().find(|m| m["id"] == *id).cloned() else {
                return Err(error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    &format!("Machine {id} was not found"),
                ));
            };
            let body = req.json()?;
            let Some(comment) = body["Comment"].as_str() else {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestBody",
                    "Comment is required.",
                ));
            };
            let isolation = body["IsolationType"].as_str().unwrap_or("Full");
            if *verb == "isolate" && !matches!(isolation, "Full" | "Selective" | "UnManagedDevice")
            {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestBody",
                    &format!("Invalid IsolationType '{isolation}'."),
                ));
            }
            if st
                .mde
                .actions
                .iter()
                .any(|a| a.body["machineId"] == *id && active(a, step))
            {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "ActiveRequestAlreadyExists",
                    "Action is already in progress",
                ));
            }
            let ts = rfc3339(now());
            let mut a = json!({
                "id": guid(), "type": if *verb == "isolate" { "Isolate" } else { "Unisolate" },
                "scope": if *verb == "isolate" { isolation } else { "Full" },
                "requestor": claims.app_id, "requestorComment": comment,
                "machineId": id, "computerDnsName": machine["computerDnsName"],
                "creationDateTimeUtc": ts, "lastUpdateDateTimeUtc": ts,
            });
            let action = Action {
                body: a.take(),
                created: Instant::now(),
            };
            let out = action_json(&action, step);
            st.mde.actions.push(action);
            Ok(Resp::json(StatusCode::CREATED, &out))
        }
        (&Method::GET, ["api", "machineactions", rest @ ..]) => {
            require(claims, &read)?;
            rate_limit(st, &claims.tenant, "machineactions", limit)?;
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
            match (m, rest) {
                (&Method::GET, []) => listed(
                    st.mde.indicators.iter(),
                    req,
                    base,
                    st.settings.odata_page_size,
                ),
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
                    st.mde.indicators.retain(|i| i["id"] != *id);
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
            let id = i["id"].clone();
            let created = i["creationTimeDateTimeUtc"].clone();
            *i = body.clone();
            i["id"] = id;
            i["creationTimeDateTimeUtc"] = created;
            i["lastUpdateTime"] = json!(ts);
            i["lastUpdatedBy"] = json!(claims.app_id);
            Ok(i.clone())
        }
        None => {
            let mut i = body.clone();
            i["id"] = json!((st.mde.indicators.len() + 1).to_string());
            i["creationTimeDateTimeUtc"] = json!(ts);
            i["createdBy"] = json!(claims.app_id);
            i["sourceType"] = json!("AadApp");
            st.mde.indicators.push(i.clone());
            Ok(i)
        }
    }
}
