//! azure-sim: a faithful local Azure for tests, the demo and benchmarks.
//!
//! One HTTPS listener serves the Entra token endpoint (`/{tenant}/oauth2/v2.0/token`, and the
//! IMDS form), ARM (`/subscriptions/…`), Microsoft Graph (`/v1.0/…`, `/beta/…`), Defender for
//! Endpoint (`/api/…`) and the simulator's own admin API (`/_sim/…`).

pub mod admin;
pub mod arm;
pub mod authz;
pub mod graph;
pub mod http_util;
pub mod jwt;
pub mod mde;
pub mod routes;
pub mod server;
pub mod throttle;
pub mod token;
pub mod world;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use crate::http_util::{Req, Resp};
use crate::throttle::Throttle;
use crate::world::{Principal, Settings, World};

/// The audiences (resources) tokens are issued for.
pub const ARM_AUDIENCE: &str = "https://management.azure.com";
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
pub const MDE_AUDIENCE: &str = "https://api.securitycenter.microsoft.com";

/// One line of the request log (`GET /_sim/requests`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub method: String,
    pub path: String,
    pub api_version: Option<String>,
    pub status: u16,
    pub principal: Option<String>,
    pub time: String,
    pub request_id: String,
}

/// A fault injected through `POST /_sim/faults`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<String>,
    pub path: regex::Regex,
    pub status: u16,
    pub remaining: u32,
    pub delay_ms: u64,
    pub retry_after_seconds: Option<u64>,
    pub error_code: Option<String>,
    /// Let the request take effect, then drop the connection without answering.
    pub lose_answer: bool,
    /// Let the request start its long-running operation, which then fails.
    pub fail_operation: bool,
}

/// A response carrying this header is never sent: the server closes the connection instead
/// (the `loseAnswer` fault). Never seen by clients.
pub const LOSE_ANSWER: &str = "x-azure-sim-lose-answer";

/// Everything that changes while the simulator runs.
pub struct State {
    pub world: World,
    pub settings: Settings,
    /// ARM resources keyed by lower-cased id.
    pub resources: BTreeMap<String, Value>,
    /// Secrets (storage and Cosmos keys), never returned by GET.
    pub keys: HashMap<String, BTreeMap<String, String>>,
    pub operations: HashMap<String, arm::lro::Operation>,
    pub throttle: Throttle,
    pub faults: Vec<Fault>,
    pub log: Vec<LogEntry>,
    pub graph: graph::GraphState,
    pub mde: mde::MdeState,
    /// Counters of calls without observable state (e.g. revokeUserDelegationKeys), per id.
    pub counters: BTreeMap<String, u64>,
}

const LOG_LIMIT: usize = 200_000;

impl State {
    pub fn new(world: World) -> Self {
        let mut s = Self {
            settings: world.settings.clone(),
            resources: BTreeMap::new(),
            keys: HashMap::new(),
            operations: HashMap::new(),
            throttle: Throttle::default(),
            faults: Vec::new(),
            log: Vec::new(),
            graph: graph::GraphState::from_world(&world.graph),
            mde: mde::MdeState::from_world(&world.mde),
            counters: BTreeMap::new(),
            world,
        };
        s.throttle.config.enabled = s.settings.throttling;
        for r in s.world.resources.clone() {
            arm::insert_resource(&mut s, r);
        }
        s
    }

    pub fn principal_by_oid(&self, oid: &str) -> Option<&Principal> {
        self.world.principals.iter().find(|p| p.object_id == oid)
    }

    pub fn push_log(&mut self, e: LogEntry) {
        if self.log.len() >= LOG_LIMIT {
            self.log.drain(..LOG_LIMIT / 10);
        }
        self.log.push(e);
    }
}

/// The simulator: state behind one lock (requests are short; a single lock keeps every
/// multi-resource rule, such as SQL's firewall/public-access interplay, trivially consistent).
pub struct Sim {
    pub state: Mutex<State>,
    pub token_key: [u8; 32],
    /// `https://127.0.0.1:PORT`, used in operation URLs and token issuers.
    pub base_url: String,
    pub world_path: Option<PathBuf>,
    pub started: Instant,
}

impl Sim {
    pub fn new(world: World, base_url: String, world_path: Option<PathBuf>) -> Self {
        Self {
            state: Mutex::new(State::new(world)),
            token_key: rand::random(),
            base_url,
            world_path,
            started: Instant::now(),
        }
    }

    /// Handles one request (already read into memory) and returns the response.
    pub async fn handle(&self, req: Req) -> Resp {
        let request_id = http_util::guid();
        let correlation = req
            .header("x-ms-correlation-request-id")
            .map(str::to_string)
            .unwrap_or_else(|| request_id.clone());
        if req.path.starts_with("/_sim/") {
            return admin::handle(self, &req).await;
        }
        let (latency, fault_delay, resp, principal) = {
            let mut st = self.state.lock().expect("state lock");
            let latency = st.settings.latency_ms;
            let (resp, principal, delay) = self.route(&mut st, &req);
            let api_version = req.query_ci("api-version").map(str::to_string);
            st.push_log(LogEntry {
                method: req.method.to_string(),
                path: req.path.clone(),
                api_version,
                status: resp.status.as_u16(),
                principal: principal.clone(),
                time: http_util::rfc3339(http_util::now()),
                request_id: request_id.clone(),
            });
            (latency, delay, resp, principal)
        };
        let _ = principal;
        let wait = latency + fault_delay;
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        }
        resp.with_header("x-ms-request-id", request_id)
            .with_header("x-ms-correlation-request-id", correlation)
    }

    fn route(&self, st: &mut State, req: &Req) -> (Resp, Option<String>, u64) {
        let p = req.path.as_str();
        if p.ends_with("/oauth2/v2.0/token") || p == "/metadata/identity/oauth2/token" {
            // An Entra outage can be injected too (a fault whose pathRegex matches the token
            // path).
            if let Some(Taken::Answer(resp, delay)) = take_fault(st, req) {
                return (resp, None, delay);
            }
            return (token::handle(self, st, req), None, 0);
        }
        let lower = p.to_ascii_lowercase();
        let (api, audience) =
            if lower.starts_with("/subscriptions/") || lower.starts_with("/providers/") {
                (Api::Arm, ARM_AUDIENCE)
            } else if p.starts_with("/v1.0/") || p.starts_with("/beta/") {
                (Api::Graph, GRAPH_AUDIENCE)
            } else if p.starts_with("/api/") {
                (Api::Mde, MDE_AUDIENCE)
            } else {
                return (
                    Resp::arm_error(StatusCode::NOT_FOUND, "NotFound", &format!("No API at {p}")),
                    None,
                    0,
                );
            };
        // ARM's front door refuses a body-less POST that does not say `Content-Length: 0`
        // (HTTP 411 Length Required: azure-sdk-for-rust#166, hashicorp/go-azure-sdk#425).
        if api == Api::Arm
            && req.method == http::Method::POST
            && req.body.is_empty()
            && req.header("content-length").is_none()
        {
            return (length_required(), None, 0);
        }
        // ARM checks the api-version before it looks at the caller.
        if api == Api::Arm
            && let Err(r) = arm::check_api_version(req)
        {
            return (r, None, 0);
        }
        let claims = match token::authenticate(self, req, audience, api) {
            Ok(c) => c,
            Err(r) => return (r, None, 0),
        };
        let principal = claims.oid.clone();
        let mut lost = None;
        let mut fail_operation = None;
        match take_fault(st, req) {
            Some(Taken::Answer(resp, delay)) => return (resp, Some(principal), delay),
            Some(Taken::LoseAnswer(delay)) => lost = Some(delay),
            // The operation this request starts is the next one.
            Some(Taken::FailOperation(idx)) => {
                st.settings.lro_fail_next += 1;
                fail_operation = Some(idx);
            }
            None => {}
        }
        let started = st.operations.len();
        let resp = match api {
            Api::Arm => arm::handle(self, st, req, &claims),
            Api::Graph => graph::handle(st, req, &claims, &self.base_url),
            Api::Mde => mde::handle(st, req, &claims, &self.base_url),
        };
        if let Some(idx) = fail_operation {
            if st.operations.len() > started {
                st.faults[idx].remaining -= 1;
                if st.faults[idx].remaining == 0 {
                    st.faults.remove(idx);
                }
            } else {
                st.settings.lro_fail_next -= 1;
            }
        }
        match lost {
            Some(delay) => (resp.with_header(LOSE_ANSWER, "1"), Some(principal), delay),
            None => (resp, Some(principal), 0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Arm,
    Graph,
    Mde,
}

/// ARM's answer to a POST without a length: a plain HTML 411 from the front door, no JSON.
fn length_required() -> Resp {
    Resp {
        status: StatusCode::LENGTH_REQUIRED,
        content_type: "text/html; charset=us-ascii",
        headers: Vec::new(),
        body: Some(bytes::Bytes::from_static(
            b"<h2>Length Required</h2><p>HTTP Error 411. The request must be chunked or have a content length.</p>",
        )),
    }
}

enum Taken {
    /// Answer this instead of the operation, after the delay.
    Answer(Resp, u64),
    /// Carry out the operation, then lose its answer after the delay.
    LoseAnswer(u64),
    /// Carry out the request; the long-running operation it starts fails. The fault (its
    /// index) is spent only if the request did start one (it may be refused first, e.g. 412).
    FailOperation(usize),
}

fn take_fault(st: &mut State, req: &Req) -> Option<Taken> {
    let method = req.method.as_str();
    let idx = st.faults.iter().position(|f| {
        f.remaining > 0
            && f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && f.path.is_match(&req.path)
    })?;
    let f = &mut st.faults[idx];
    f.remaining -= 1;
    if f.fail_operation {
        f.remaining += 1;
        return Some(Taken::FailOperation(idx));
    }
    if f.lose_answer {
        let delay = f.delay_ms;
        if f.remaining == 0 {
            st.faults.remove(idx);
        }
        return Some(Taken::LoseAnswer(delay));
    }
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = f.error_code.clone().unwrap_or_else(|| {
        match f.status {
            429 => "TooManyRequests",
            409 => "Conflict",
            500 => "InternalServerError",
            502 => "BadGateway",
            503 => "ServiceUnavailable",
            504 => "GatewayTimeout",
            _ => "InjectedFault",
        }
        .to_string()
    });
    let mut resp = Resp::arm_error(status, &code, "Fault injected by azure-sim.");
    if let Some(s) = f.retry_after_seconds {
        resp = resp.with_header("Retry-After", s.to_string());
    }
    let delay = f.delay_ms;
    if f.remaining == 0 {
        st.faults.remove(idx);
    }
    Some(Taken::Answer(resp, delay))
}
