//! Network security groups (`network/2024-01-01/networkSecurityGroup.json`): each security rule
//! is its own resource, written by a long-running PUT (200/201, final-state-via
//! azure-async-operation) and DELETE (202/204, final-state-via location); the NSG's GET embeds
//! them. A rule is validated as the Network RP does: required fields and enums [spec], priority
//! 100–4096 [spec] and unique per direction (a 400, azure-api-facts §3.20; the error codes here are
//! [unverified]: `SecurityRuleConflict` as Azure's answers are commonly quoted), one of the singular/plural address and port forms, and
//! `429 RetryableErrorDueToAnotherOperation` while another write on the NSG runs [docs].

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::lro::{self, Effect, Shape};
use super::{Ctx, bad_request, children, get_stored, key, ok_resource, parse_ipv4_or_cidr};
use crate::State;
use crate::http_util::{Resp, guid};

const RULE_TYPE: &str = "Microsoft.Network/networkSecurityGroups/securityRules";

/// A world file's NSG may list its rules inline: they become rule resources of their own.
pub fn init_nsg(st: &mut State, id: &str, r: &mut Value) {
    let rules = r["properties"]
        .as_object_mut()
        .and_then(|p| p.remove("securityRules"))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    for mut rule in rules {
        let name = rule["name"].as_str().unwrap_or_default().to_string();
        let rid = format!("{id}/securityRules/{name}");
        rule["id"] = json!(rid);
        rule["type"] = json!(RULE_TYPE);
        rule["etag"] = json!(format!("W/\"{}\"", guid()));
        rule["properties"]["provisioningState"] = json!("Succeeded");
        st.resources.insert(key(&rid), rule);
    }
}

fn nsg_of(path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    match lower.find("/securityrules") {
        Some(i) => path[..i].to_string(),
        None => path.to_string(),
    }
}

pub fn handle(st: &mut State, ctx: &Ctx) -> Resp {
    let nsg = nsg_of(ctx.path);
    let Some(stored) = get_stored(st, &nsg).cloned() else {
        return Resp::not_found(&nsg);
    };
    let rules = format!("{nsg}/securityRules");
    match ctx.req.method {
        Method::GET if ctx.path.eq_ignore_ascii_case(&nsg) => {
            let mut n = stored;
            n["properties"]["securityRules"] = json!(children(st, &rules));
            Resp::json(StatusCode::OK, &n)
        }
        Method::GET if ctx.path.eq_ignore_ascii_case(&rules) => {
            Resp::json(StatusCode::OK, &json!({"value": children(st, &rules)}))
        }
        Method::GET => ok_resource(st, ctx.path),
        _ if busy(st, &rules) => Resp::arm_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RetryableErrorDueToAnotherOperation",
            &format!(
                "Operation on network security group {} is not allowed because another operation is in progress on it. Retry the request later.",
                ctx.m.param("networkSecurityGroupName")
            ),
        )
        .with_header("Retry-After", "1"),
        Method::DELETE => lro::delete(st, ctx, remove_rule),
        _ => put(st, ctx, &rules),
    }
}

/// A write on one of the NSG's rules is still running.
fn busy(st: &State, rules: &str) -> bool {
    let prefix = format!("{}/", key(rules));
    st.operations.values().any(|o| {
        o.status == "InProgress"
            && o.effect
                .as_ref()
                .is_some_and(|e| key(e.target()).starts_with(&prefix))
    })
}

fn put(st: &mut State, ctx: &Ctx, rules: &str) -> Resp {
    let body = json_body!(ctx);
    let name = ctx.m.param("securityRuleName").to_string();
    if let Err(r) = validate(&name, &body["properties"]) {
        return r;
    }
    let p = &body["properties"];
    if let Some(other) = children(st, rules).into_iter().find(|r| {
        !r["name"].as_str().unwrap_or("").eq_ignore_ascii_case(&name)
            && r["properties"]["priority"] == p["priority"]
            && r["properties"]["direction"] == p["direction"]
    }) {
        return bad_request(
            "SecurityRuleConflict",
            &format!(
                "Security rule {name} conflicts with rule {}. Rules cannot have the same Priority and Direction. To learn more, see aka.ms/nsgrules.",
                other["name"].as_str().unwrap_or("")
            ),
        );
    }
    let existed = get_stored(st, ctx.path).is_some();
    let mut rule = json!({"properties": p.clone()});
    rule["id"] = json!(ctx.path);
    rule["name"] = json!(name);
    rule["type"] = json!(RULE_TYPE);
    rule["etag"] = json!(format!("W/\"{}\"", guid()));
    rule["properties"]["provisioningState"] = json!("Succeeded");
    let mut accepted = rule.clone();
    accepted["properties"]["provisioningState"] = json!("Updating");
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    lro::start(
        st,
        ctx,
        Shape::AzureAsyncOperation,
        status,
        Effect::Replace {
            id: ctx.path.to_string(),
            body: rule,
        },
        Some(ctx.path.to_string()),
        Some(accepted),
    )
}

fn remove_rule(st: &mut State, id: &str, _: &str) -> bool {
    st.resources.remove(&key(id)).is_some()
}

fn invalid(name: &str, what: &str) -> Resp {
    bad_request(
        "SecurityRuleInvalidParameter",
        &format!("Security rule {name} has an invalid value: {what}."),
    )
}

/// `*`, an IPv4 address or CIDR, or a service tag (letters, digits, `.`).
fn address_ok(a: &str) -> bool {
    a == "*"
        || parse_ipv4_or_cidr(a).is_some()
        || (!a.is_empty()
            && a.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'))
}

/// `*`, a port, or `low-high`, within 0–65535.
fn port_ok(p: &str) -> bool {
    if p == "*" {
        return true;
    }
    let n = |s: &str| s.parse::<u32>().ok().filter(|n| *n <= 65535);
    match p.split_once('-') {
        Some((a, b)) => matches!((n(a), n(b)), (Some(a), Some(b)) if a <= b),
        None => n(p).is_some(),
    }
}

/// One of `{field}` / `{field}s|es` must be given, not both; each entry must pass `ok`.
fn one_form(
    name: &str,
    p: &Value,
    singular: &str,
    plural: &str,
    ok: fn(&str) -> bool,
) -> Result<(), Resp> {
    let one = p.get(singular).filter(|v| !v.is_null());
    let many = p
        .get(plural)
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty());
    let values: Vec<&Value> = match (one, many) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                name,
                &format!("{singular} and {plural} cannot both be given"),
            ));
        }
        (Some(v), None) => vec![v],
        (None, Some(a)) => a.iter().collect(),
        // Both absent: Azure takes the ASG fields, which we never send.
        (None, None) => return Ok(()),
    };
    match values.iter().find(|v| !v.as_str().is_some_and(ok)) {
        Some(bad) => Err(invalid(name, &format!("{singular}: {bad}"))),
        None => Ok(()),
    }
}

fn validate(name: &str, p: &Value) -> Result<(), Resp> {
    for f in ["protocol", "access", "priority", "direction"] {
        if p.get(f).is_none_or(Value::is_null) {
            return Err(bad_request(
                "InvalidRequestFormat",
                &format!("Security rule {name}: properties.{f} is required."),
            ));
        }
    }
    let is = |f: &str, allowed: &[&str]| p[f].as_str().is_some_and(|v| allowed.contains(&v));
    if !is("protocol", &["Tcp", "Udp", "Icmp", "Esp", "*", "Ah"]) {
        return Err(invalid(name, &format!("protocol {}", p["protocol"])));
    }
    if !is("access", &["Allow", "Deny"]) {
        return Err(invalid(name, &format!("access {}", p["access"])));
    }
    if !is("direction", &["Inbound", "Outbound"]) {
        return Err(invalid(name, &format!("direction {}", p["direction"])));
    }
    if !p["priority"]
        .as_i64()
        .is_some_and(|n| (100..=4096).contains(&n))
    {
        return Err(bad_request(
            "SecurityRuleInvalidPriority",
            &format!(
                "Security rule {name} has invalid priority {}. Value provided: {0}. Allowed range 100-4096.",
                p["priority"]
            ),
        ));
    }
    if p["description"].as_str().is_some_and(|d| d.len() > 140) {
        return Err(invalid(name, "description longer than 140 characters"));
    }
    for side in ["source", "destination"] {
        one_form(
            name,
            p,
            &format!("{side}AddressPrefix"),
            &format!("{side}AddressPrefixes"),
            address_ok,
        )?;
        one_form(
            name,
            p,
            &format!("{side}PortRange"),
            &format!("{side}PortRanges"),
            port_ok,
        )?;
    }
    Ok(())
}
