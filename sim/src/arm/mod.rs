//! The ARM engine: api-version checks, authorization, throttling, resources keyed by id
//! (case-insensitively), long-running operations, and a behaviour per resource provider.

/// The request body as JSON, or return the 400 that explains why it is not.
macro_rules! json_body {
    ($ctx:expr) => {
        match $ctx.body() {
            Ok(b) => b,
            Err(r) => return r,
        }
    };
}

pub mod alerts;
pub mod arc;
pub mod cosmos;
pub mod lro;
pub mod nsg;
pub mod sql;
pub mod storage;
pub mod waf;
pub mod web;

use std::time::Instant;

use http::StatusCode;
use serde_json::{Value, json};

use crate::http_util::{Req, Resp};
use crate::routes::{self, Matched, OpClass};
use crate::throttle::Take;
use crate::token::Claims;
use crate::{Sim, State, authz};

pub fn check_api_version(req: &Req) -> Result<(), Resp> {
    match req.query_ci("api-version") {
        Some(v) if !v.is_empty() => Ok(()),
        _ => Err(Resp::arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
    }
}

/// Lower-cased key for an ARM id (ARM ids are case-insensitive).
pub fn key(id: &str) -> String {
    id.trim_end_matches('/').to_ascii_lowercase()
}

/// `type` and `name` of an ARM id: the segments after the last `providers/`.
pub fn type_and_name(id: &str) -> (String, String) {
    let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
    let p = segs
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"));
    let Some(p) = p else {
        return (String::new(), segs.last().unwrap_or(&"").to_string());
    };
    let rest = &segs[p + 1..];
    let mut ty = rest.first().unwrap_or(&"").to_string();
    for (i, s) in rest.iter().enumerate().skip(1) {
        if i % 2 == 1 {
            ty.push('/');
            ty.push_str(s);
        }
    }
    (ty, rest.last().unwrap_or(&"").to_string())
}

/// Adds a resource (from the world file or the admin API), filling `name`, `type` and the
/// secrets a resource type has.
pub fn insert_resource(st: &mut State, mut r: Value) {
    let id = r["id"].as_str().unwrap_or_default().to_string();
    let (ty, name) = type_and_name(&id);
    if r.get("name").is_none() {
        r["name"] = json!(name);
    }
    if r.get("type").is_none() {
        r["type"] = json!(ty);
    }
    let lower = ty.to_ascii_lowercase();
    if lower == "microsoft.storage/storageaccounts" {
        storage::init_account(st, &id, &mut r);
    } else if lower == "microsoft.documentdb/databaseaccounts" {
        cosmos::init_account(st, &id, &mut r);
    } else if lower == "microsoft.network/networksecuritygroups" {
        nsg::init_nsg(st, &id, &mut r);
    }
    st.resources.insert(key(&id), r);
}

pub fn get_stored<'a>(st: &'a State, id: &str) -> Option<&'a Value> {
    st.resources.get(&key(id))
}

/// The direct children of a collection path, e.g. every `…/firewallRules/{name}`.
pub fn children(st: &State, collection: &str) -> Vec<Value> {
    let prefix = format!("{}/", key(collection));
    st.resources
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| !k[prefix.len()..].contains('/'))
        .map(|(_, v)| v.clone())
        .collect()
}

pub fn ok_resource(st: &State, id: &str) -> Resp {
    match get_stored(st, id) {
        Some(v) => Resp::json(StatusCode::OK, v),
        None => Resp::not_found(id),
    }
}

pub fn bad_request(code: &str, message: &str) -> Resp {
    Resp::arm_error(StatusCode::BAD_REQUEST, code, message)
}

/// The path without a trailing action segment, i.e. the resource a POST acts on.
pub fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or(path)
}

pub fn handle(sim: &Sim, st: &mut State, req: &Req, claims: &Claims) -> Resp {
    lro::settle(st, Instant::now());
    let path = req.path.trim_end_matches('/').to_string();
    let subscription = path.split('/').nth(2).unwrap_or("").to_string();
    let Some(sub) = st
        .world
        .subscriptions
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(&subscription))
    else {
        return Resp::arm_error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            &format!("The subscription '{subscription}' could not be found."),
        );
    };
    if !sub.tenant_id.eq_ignore_ascii_case(&claims.tenant) {
        return Resp::arm_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenTenant",
            &format!(
                "The access token is from the wrong issuer. It must match the tenant associated with subscription '{subscription}'."
            ),
        );
    }
    let class = OpClass::of(&req.method);
    let remaining = match st
        .throttle
        .take(&subscription, &claims.oid, class, Instant::now())
    {
        Take::Ok(n) => n,
        Take::Throttled(after) => {
            return Resp::arm_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "The request is being throttled as the limit has been reached for operation type. Please try again after the time in the Retry-After header.")
                .with_header("Retry-After", after.to_string());
        }
    };
    let header = match class {
        OpClass::Read => "x-ms-ratelimit-remaining-subscription-reads",
        OpClass::Write => "x-ms-ratelimit-remaining-subscription-writes",
        OpClass::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
    };
    let resp = if let Some(r) = lro::poll(st, req, &path, claims) {
        r
    } else {
        dispatch(sim, st, req, &path, claims)
    };
    resp.with_header(header, remaining.to_string())
}

fn dispatch(sim: &Sim, st: &mut State, req: &Req, path: &str, claims: &Claims) -> Resp {
    let m = match routes::find(&req.method, path) {
        Ok(m) => m,
        Err(true) => {
            return Resp::arm_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!(
                    "The requested resource does not support http method '{}'.",
                    req.method
                ),
            );
        }
        Err(false) => {
            let (ty, _) = type_and_name(path);
            return Resp::arm_error(
                StatusCode::NOT_FOUND,
                "InvalidResourceType",
                &format!(
                    "The resource type '{ty}' could not be found for the request path '{path}'."
                ),
            );
        }
    };
    let version = req.query_ci("api-version").unwrap_or_default();
    if !m.route.api_versions.contains(&version) {
        let (ty, _) = type_and_name(path);
        return bad_request(
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{version}' is invalid. The supported versions are '{}'. (resource type '{ty}')",
                m.route.api_versions.join(",")
            ),
        );
    }
    let Some(p) = st.principal_by_oid(&claims.oid) else {
        return Resp::arm_error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            "Unknown principal.",
        );
    };
    if !authz::allowed(p, m.route.permission, path) {
        return Resp::arm_error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            &format!(
                "The client '{oid}' with object id '{oid}' does not have authorization to perform action '{}' over scope '{path}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
                m.route.permission,
                oid = claims.oid
            ),
        );
    }
    // Owned: behaviours borrow the state mutably.
    let principal = p.clone();
    let ctx = Ctx {
        sim,
        req,
        path,
        m: &m,
        version,
        principal: &principal,
    };
    let t = m.route.template;
    if t.contains("/Microsoft.Storage/") {
        storage::handle(st, &ctx)
    } else if t.contains("/defenderForStorageSettings/") {
        storage::defender(st, &ctx)
    } else if t.contains("/Microsoft.Sql/") {
        sql::handle(st, &ctx)
    } else if t.contains("/Microsoft.DocumentDB/") {
        cosmos::handle(st, &ctx)
    } else if t.contains("/networkSecurityGroups/") {
        nsg::handle(st, &ctx)
    } else if t.contains("WebApplicationFirewallPolicies") {
        waf::handle(st, &ctx)
    } else if t.contains("/alerts/") {
        alerts::handle(st, &ctx)
    } else if t.contains("/Microsoft.HybridCompute/") {
        arc::handle(st, &ctx)
    } else if t.contains("/Microsoft.Web/") {
        web::handle(st, &ctx)
    } else {
        Resp::arm_error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "No behaviour for this route.",
        )
    }
}

/// What a behaviour needs to know about the request.
pub struct Ctx<'a> {
    pub sim: &'a Sim,
    pub req: &'a Req,
    pub path: &'a str,
    pub m: &'a Matched,
    pub version: &'a str,
    /// The caller, for behaviours whose effects need more than the route's permission.
    pub principal: &'a crate::world::Principal,
}

impl Ctx<'_> {
    pub fn body(&self) -> Result<Value, Resp> {
        self.req.json()
    }
    pub fn subscription(&self) -> &str {
        self.path.split('/').nth(2).unwrap_or("")
    }
}

/// Validates an IPv4 address or IPv4 CIDR.
pub fn parse_ipv4_or_cidr(s: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().ok().filter(|l| *l <= 32)?),
        None => (s, 32),
    };
    Some((addr.parse().ok()?, len))
}

pub fn now_str() -> String {
    crate::http_util::rfc3339(crate::http_util::now())
}
