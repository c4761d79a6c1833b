//! The simulator's admin API (`/_sim/…`): inspect and mutate state behind the operator's back,
//! read the request log, inject faults, tune throttling, reset. Never throttled or logged.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http_util::{Req, Resp, merge_patch};
use crate::throttle::BucketSpec;
use crate::world::World;
use crate::{Fault, Sim, State, arm};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultSpec {
    #[serde(rename = "match")]
    matcher: FaultMatch,
    /// The error answered instead of the operation (not with `loseAnswer`).
    #[serde(default)]
    status: u16,
    /// The request takes effect as usual, then its answer is lost: after `delayMs` the
    /// connection is closed without a response (what a client sees when a reply never arrives).
    #[serde(default)]
    lose_answer: bool,
    /// The request is carried out and starts its long-running operation as usual, and that
    /// operation ends `Failed` (`lroFailCode`). Only for requests that start one.
    #[serde(default)]
    fail_operation: bool,
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    retry_after_seconds: Option<u64>,
    #[serde(default)]
    error_code: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultMatch {
    #[serde(default)]
    method: Option<String>,
    #[serde(default = "any_path")]
    path_regex: String,
}

fn one() -> u32 {
    1
}
fn any_path() -> String {
    ".*".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ThrottlePatch {
    enabled: Option<bool>,
    reads: Option<BucketSpec>,
    writes: Option<BucketSpec>,
    deletes: Option<BucketSpec>,
}

fn bad(msg: impl std::fmt::Display) -> Resp {
    Resp::json(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"code": "BadRequest", "message": msg.to_string()}}),
    )
}

pub async fn handle(sim: &Sim, req: &Req) -> Resp {
    if req.method == Method::POST && req.path == "/_sim/reset" {
        return reset(sim);
    }
    let mut st = sim.state.lock().expect("state lock");
    arm::lro::settle(&mut st, std::time::Instant::now());
    match (&req.method, req.path.as_str()) {
        (&Method::GET, "/_sim/resources") => {
            let prefix = arm::key(req.query.get("prefix").map(String::as_str).unwrap_or(""));
            let list: Vec<&Value> = st
                .resources
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(_, v)| v)
                .collect();
            Resp::json(StatusCode::OK, &json!({"value": list}))
        }
        (m @ (&Method::PUT | &Method::PATCH | &Method::GET | &Method::DELETE), p)
            if p.starts_with("/_sim/resources/") =>
        {
            let id = &p["/_sim/resources".len()..];
            resource(&mut st, m, id, req)
        }
        // Write-only secrets (account keys, a SQL admin password): what Azure holds.
        (&Method::GET, p) if p.starts_with("/_sim/keys/") => Resp::json(
            StatusCode::OK,
            &json!(
                st.keys
                    .get(&arm::key(&p["/_sim/keys".len()..]))
                    .cloned()
                    .unwrap_or_default()
            ),
        ),
        (&Method::GET, "/_sim/requests") => {
            let since: usize = req
                .query
                .get("since")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let entries = st.log.get(since..).unwrap_or(&[]);
            Resp::json(
                StatusCode::OK,
                &json!({"total": st.log.len(), "value": entries}),
            )
        }
        (&Method::DELETE, "/_sim/requests") => {
            st.log.clear();
            Resp::empty(StatusCode::NO_CONTENT)
        }
        (&Method::POST, "/_sim/faults") => {
            let spec: FaultSpec = match serde_json::from_slice(&req.body) {
                Ok(s) => s,
                Err(e) => return bad(format!("fault: {e}")),
            };
            let path = match regex::Regex::new(&spec.matcher.path_regex) {
                Ok(r) => r,
                Err(e) => return bad(format!("match.pathRegex: {e}")),
            };
            if !spec.lose_answer && !spec.fail_operation && !(100..=599).contains(&spec.status) {
                return bad(format!("status {} is not an HTTP status", spec.status));
            }
            st.faults.push(Fault {
                method: spec.matcher.method,
                path,
                status: spec.status,
                remaining: spec.count,
                delay_ms: spec.delay_ms,
                retry_after_seconds: spec.retry_after_seconds,
                error_code: spec.error_code,
                lose_answer: spec.lose_answer,
                fail_operation: spec.fail_operation,
            });
            Resp::json(StatusCode::CREATED, &json!({"active": st.faults.len()}))
        }
        (&Method::DELETE, "/_sim/faults") => {
            st.faults.clear();
            Resp::empty(StatusCode::NO_CONTENT)
        }
        (&Method::GET, "/_sim/throttle") => Resp::json(StatusCode::OK, &json!(st.throttle.config)),
        (&Method::POST, "/_sim/throttle") => {
            let p: ThrottlePatch = match serde_json::from_slice(&req.body) {
                Ok(p) => p,
                Err(e) => return bad(format!("throttle: {e}")),
            };
            let mut c = st.throttle.config;
            c.enabled = p.enabled.unwrap_or(c.enabled);
            c.reads = p.reads.unwrap_or(c.reads);
            c.writes = p.writes.unwrap_or(c.writes);
            c.deletes = p.deletes.unwrap_or(c.deletes);
            st.throttle = crate::throttle::Throttle::new(c);
            Resp::json(StatusCode::OK, &json!(c))
        }
        (&Method::GET, "/_sim/settings") => Resp::json(StatusCode::OK, &json!(st.settings)),
        (&Method::POST, "/_sim/settings") => {
            let mut v = json!(st.settings);
            match serde_json::from_slice::<Value>(&req.body) {
                Ok(p) => merge_patch(&mut v, &p),
                Err(e) => return bad(format!("settings: {e}")),
            }
            match serde_json::from_value(v) {
                Ok(s) => st.settings = s,
                Err(e) => return bad(format!("settings: {e}")),
            }
            st.throttle.config.enabled = st.settings.throttling;
            Resp::json(StatusCode::OK, &json!(st.settings))
        }
        (&Method::GET, "/_sim/counters") => Resp::json(StatusCode::OK, &json!(st.counters)),
        (&Method::GET, p) if p.starts_with("/_sim/mde/machines/") => Resp::json(
            StatusCode::OK,
            &crate::mde::device_state(&mut st, &p["/_sim/mde/machines/".len()..]),
        ),
        (&Method::GET, "/_sim/graph/remediations") => {
            Resp::json(StatusCode::OK, &json!({"value": st.graph.remediations}))
        }
        (&Method::GET, "/_sim/mde/actions") => Resp::json(
            StatusCode::OK,
            &json!({"value": crate::mde::actions_now(&mut st)}),
        ),
        _ => Resp::json(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": "NotFound", "message": format!("no admin route {} {}", req.method, req.path)}}),
        ),
    }
}

fn resource(st: &mut State, m: &Method, id: &str, req: &Req) -> Resp {
    match *m {
        Method::GET => arm::ok_resource(st, id),
        Method::DELETE => match st.resources.remove(&arm::key(id)) {
            Some(_) => Resp::empty(StatusCode::NO_CONTENT),
            None => Resp::not_found(id),
        },
        Method::PUT => {
            let mut body: Value = match serde_json::from_slice(&req.body) {
                Ok(b) => b,
                Err(e) => return bad(e),
            };
            body["id"] = json!(id);
            arm::insert_resource(st, body);
            arm::ok_resource(st, id)
        }
        _ => {
            let patch: Value = match serde_json::from_slice(&req.body) {
                Ok(b) => b,
                Err(e) => return bad(e),
            };
            match st.resources.get_mut(&arm::key(id)) {
                Some(r) => {
                    merge_patch(r, &patch);
                    Resp::json(StatusCode::OK, r)
                }
                None => Resp::not_found(id),
            }
        }
    }
}

fn reset(sim: &Sim) -> Resp {
    let world = match &sim.world_path {
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| World::from_yaml(&t))
        {
            Ok(w) => w,
            Err(e) => return bad(format!("reload {}: {e}", p.display())),
        },
        None => sim.state.lock().expect("state lock").world.clone(),
    };
    *sim.state.lock().expect("state lock") = State::new(world);
    Resp::empty(StatusCode::NO_CONTENT)
}
