//! Microsoft.DocumentDB: long-running PATCH and regenerateKey (evidence in keysMetadata).

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::lro::{self, Effect, Shape};
use super::storage::new_key;
use super::{
    Ctx, bad_request, get_stored, key, now_str, ok_resource, parent_of, parse_ipv4_or_cidr,
};
use crate::State;
use crate::http_util::Resp;

const KINDS: [(&str, &str); 4] = [
    ("primary", "primaryMasterKey"),
    ("secondary", "secondaryMasterKey"),
    ("primaryReadonly", "primaryReadonlyMasterKey"),
    ("secondaryReadonly", "secondaryReadonlyMasterKey"),
];

pub fn init_account(st: &mut State, id: &str, r: &mut Value) {
    let keys: BTreeMap<String, String> = KINDS
        .iter()
        .map(|(_, f)| (f.to_string(), new_key()))
        .collect();
    st.keys.insert(key(id), keys);
    if r["properties"].get("keysMetadata").is_none() {
        let md: serde_json::Map<String, Value> = KINDS
            .iter()
            .map(|(_, f)| {
                (
                    f.to_string(),
                    json!({"generationTime": "2024-01-01T00:00:00Z"}),
                )
            })
            .collect();
        r["properties"]["keysMetadata"] = Value::Object(md);
    }
}

fn regenerate(st: &mut State, id: &str, kind: &str) -> bool {
    let Some(field) = KINDS.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f) else {
        return false;
    };
    let Some(r) = st.resources.get_mut(&key(id)) else {
        return false;
    };
    r["properties"]["keysMetadata"][field] = json!({"generationTime": now_str()});
    st.keys
        .entry(key(id))
        .or_default()
        .insert(field.to_string(), new_key());
    true
}

fn private(ip: std::net::Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 10
        || (o[0] == 172 && (16..32).contains(&o[1]))
        || (o[0] == 192 && o[1] == 168)
        || (o[0] == 100 && (64..128).contains(&o[1]))
}

/// Cosmos DB takes an exclusive lock on the account for an update or a key regeneration: any
/// other write meanwhile is refused (412 PreconditionFailed, e.g. hashicorp/terraform-provider-
/// azurerm#15842), and must be retried once the operation is done.
fn locked(st: &State, id: &str) -> Option<Resp> {
    lro::running_on(st, id).then(|| {
        let name = id.rsplit('/').next().unwrap_or(id);
        Resp::arm_error(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            &format!(
                "There is another user operation in progress which requires an exclusive lock on [{name}]. Please retry after sometime."
            ),
        )
    })
}

pub fn handle(st: &mut State, ctx: &Ctx) -> Resp {
    match ctx.req.method {
        Method::GET => ok_resource(st, ctx.path),
        Method::PATCH => {
            if get_stored(st, ctx.path).is_none() {
                return Resp::not_found(ctx.path);
            }
            if let Some(r) = locked(st, ctx.path) {
                return r;
            }
            let body = json_body!(ctx);
            let props = &body["properties"];
            if let Some(v) = props.get("publicNetworkAccess")
                && !matches!(
                    v.as_str(),
                    Some("Enabled" | "Disabled" | "SecuredByPerimeter")
                )
            {
                return bad_request(
                    "BadRequest",
                    &format!("Invalid value {v} for publicNetworkAccess."),
                );
            }
            for rule in props["ipRules"].as_array().into_iter().flatten() {
                let v = rule["ipAddressOrRange"].as_str().unwrap_or("");
                match parse_ipv4_or_cidr(v) {
                    None => {
                        return bad_request(
                            "BadRequest",
                            &format!("Invalid IP address or range '{v}' in ipRules."),
                        );
                    }
                    Some((ip, _)) if private(ip) => {
                        return bad_request(
                            "BadRequest",
                            &format!(
                                "IP address or range '{v}' is in a private range (10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16) and cannot be used in ipRules."
                            ),
                        );
                    }
                    _ => {}
                }
            }
            let patch = json!({"properties": props});
            // PATCH: LRO, only 200 declared, no final-state-via [spec].
            lro::start(
                st,
                ctx,
                Shape::OkWithHeader,
                StatusCode::OK,
                Effect::Merge {
                    id: ctx.path.to_string(),
                    patch,
                },
                Some(ctx.path.to_string()),
                None,
            )
        }
        _ => {
            let id = parent_of(ctx.path).to_string();
            if get_stored(st, &id).is_none() {
                return Resp::not_found(&id);
            }
            if ctx.path.to_ascii_lowercase().ends_with("/listkeys") {
                let keys = st.keys.get(&key(&id)).cloned().unwrap_or_default();
                return Resp::json(StatusCode::OK, &json!(keys));
            }
            if let Some(r) = locked(st, &id) {
                return r;
            }
            let body = json_body!(ctx);
            let kind = body["keyKind"].as_str().unwrap_or("");
            if !KINDS.iter().any(|(k, _)| *k == kind) {
                return bad_request(
                    "BadRequest",
                    &format!(
                        "Invalid keyKind '{kind}'; expected primary, secondary, primaryReadonly or secondaryReadonly."
                    ),
                );
            }
            // regenerateKey: LRO, 200/202, no final-state-via; the 202 carries both headers
            // [spec, facts §3.12].
            lro::start(
                st,
                ctx,
                Shape::Both,
                StatusCode::ACCEPTED,
                Effect::Apply {
                    id,
                    arg: kind.to_string(),
                    apply: regenerate,
                },
                None,
                None,
            )
        }
    }
}
