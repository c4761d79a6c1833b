//! Microsoft.Sql: server PATCH as a long-running operation with the private-endpoint
//! precondition; firewall rules (sync CRUD and replace-all) refused while public access is off.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::lro::{self, Effect, Shape};
use super::{Ctx, bad_request, children, get_stored, key, ok_resource};
use crate::State;
use crate::http_util::Resp;

pub fn handle(st: &mut State, ctx: &Ctx) -> Resp {
    let t = ctx.m.route.template;
    if t.ends_with("{serverName}") {
        return match ctx.req.method {
            Method::GET => ok_resource(st, ctx.path),
            _ => patch_server(st, ctx),
        };
    }
    let server = server_id(ctx);
    if get_stored(st, &server).is_none() {
        return Resp::arm_error(
            StatusCode::NOT_FOUND,
            "ParentResourceNotFound",
            &format!(
                "Can not perform requested operation on nested resource. Parent resource '{server}' not found."
            ),
        );
    }
    if t.ends_with("{authenticationName}") {
        return entra_only(st, ctx, &server);
    }
    if t.ends_with("{blobAuditingPolicyName}") && !t.contains("/databases/") {
        return auditing(st, ctx, &server);
    }
    if t.ends_with("{tdeName}") {
        return tde(st, ctx, &server);
    }
    if t.ends_with("{administratorName}") {
        return ok_resource(st, ctx.path);
    }
    if t.ends_with("ipv6FirewallRules") {
        return Resp::json(StatusCode::OK, &json!({"value": children(st, ctx.path)}));
    }
    match (&ctx.req.method, t.ends_with("firewallRules")) {
        (&Method::GET, true) => {
            Resp::json(StatusCode::OK, &json!({"value": children(st, ctx.path)}))
        }
        (&Method::PUT, true) => replace_all(st, ctx, &server),
        (&Method::GET, false) => ok_resource(st, ctx.path),
        (&Method::PUT, false) => put_rule(st, ctx, &server),
        (&Method::DELETE, false) => {
            if st.resources.remove(&key(ctx.path)).is_some() {
                Resp::empty(StatusCode::OK)
            } else {
                Resp::empty(StatusCode::NO_CONTENT)
            }
        }
        _ => Resp::arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "Unsupported.",
        ),
    }
}

fn server_id(ctx: &Ctx) -> String {
    let marker = "/providers/microsoft.sql/servers/";
    let lower = ctx.path.to_ascii_lowercase();
    let start = lower.find(marker).map(|i| i + marker.len()).unwrap_or(0);
    let end = ctx.path[start..]
        .find('/')
        .map(|i| start + i)
        .unwrap_or(ctx.path.len());
    ctx.path[..end].to_string()
}

fn public_access_disabled(st: &State, server: &str) -> bool {
    get_stored(st, server).is_some_and(|s| s["properties"]["publicNetworkAccess"] == "Disabled")
}

fn deny_public_endpoint() -> Resp {
    bad_request(
        "DenyPublicEndpointEnabled",
        "Unable to create or modify firewall rules when public network interface for the server is disabled. To manage server or database level firewall rules, please enable the public network interface.",
    )
}

fn patch_server(st: &mut State, ctx: &Ctx) -> Resp {
    let Some(current) = get_stored(st, ctx.path).cloned() else {
        return Resp::not_found(ctx.path);
    };
    let body = json_body!(ctx);
    let props = body["properties"].clone();
    if let Some(v) = props.get("publicNetworkAccess") {
        let allowed: &[&str] = if ctx.version == "2021-11-01" {
            &["Enabled", "Disabled"]
        } else {
            &["Enabled", "Disabled", "SecuredByPerimeter"]
        };
        if !v.as_str().is_some_and(|s| allowed.contains(&s)) {
            return bad_request(
                "InvalidPublicNetworkAccessValue",
                &format!(
                    "Invalid value {v} for properties.publicNetworkAccess; allowed: {}.",
                    allowed.join(", ")
                ),
            );
        }
        let pecs = current["properties"]["privateEndpointConnections"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0);
        if v == "Disabled" && pecs == 0 {
            return bad_request(
                "PECsNotExistingToDenyPublicNetworkAccess",
                "Unable to set Deny Public Network Access to Yes since there is no private endpoint enabled to access the server. Please set up private endpoints and retry the operation.",
            );
        }
    }
    if let Some(p) = props.get("administratorLoginPassword") {
        let login = current["properties"]["administratorLogin"]
            .as_str()
            .unwrap_or("");
        if !p
            .as_str()
            .is_some_and(|p| password_complex_enough(p, login))
        {
            return bad_request(
                "PasswordNotComplex",
                "Password validation failed. The password does not meet policy requirements because it is not complex enough.",
            );
        }
    }
    let mut patch = json!({"properties": props});
    if let Some(tags) = body.get("tags") {
        patch["tags"] = tags.clone();
    }
    // The password is write-only (`x-ms-secret` [spec]): kept with the secrets, never in
    // what GET returns.
    let effect = if patch["properties"]
        .get("administratorLoginPassword")
        .is_some()
    {
        Effect::Apply {
            id: ctx.path.to_string(),
            arg: patch.to_string(),
            apply: merge_with_password,
        }
    } else {
        Effect::Merge {
            id: ctx.path.to_string(),
            patch,
        }
    };
    // PATCH: LRO, 200/202, no final-state-via [spec].
    lro::start(
        st,
        ctx,
        Shape::Both,
        StatusCode::ACCEPTED,
        effect,
        Some(ctx.path.to_string()),
        None,
    )
}

/// Azure SQL's admin password rules [docs: "Identify the right Azure SQL Database SKU" (Data
/// Migration Assistant); the error code is unverified]: 8–128 characters from three of the
/// four classes (upper, lower, digit, other), without three or more consecutive alphanumeric
/// characters of the login.
fn password_complex_enough(p: &str, login: &str) -> bool {
    let classes = [
        p.chars().any(|c| c.is_ascii_uppercase()),
        p.chars().any(|c| c.is_ascii_lowercase()),
        p.chars().any(|c| c.is_ascii_digit()),
        p.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    let lower = p.to_ascii_lowercase();
    let login: Vec<char> = login.to_ascii_lowercase().chars().collect();
    let shares_login = login.windows(3).any(|w| {
        w.iter().all(char::is_ascii_alphanumeric) && lower.contains(&w.iter().collect::<String>())
    });
    (8..=128).contains(&p.chars().count())
        && classes.iter().filter(|c| **c).count() >= 3
        && !shares_login
}

fn merge_with_password(st: &mut State, id: &str, patch: &str) -> bool {
    let Ok(mut patch) = serde_json::from_str::<Value>(patch) else {
        return false;
    };
    let password = patch["properties"]
        .as_object_mut()
        .and_then(|p| p.remove("administratorLoginPassword"));
    let Some(r) = st.resources.get_mut(&key(id)) else {
        return false;
    };
    crate::http_util::merge_patch(r, &patch);
    if let Some(Value::String(p)) = password {
        st.keys
            .entry(key(id))
            .or_default()
            .insert("administratorLoginPassword".into(), p);
    }
    true
}

fn validate_rule(name: &str, props: &Value) -> Result<(), Resp> {
    if name.is_empty() {
        return Err(bad_request(
            "FirewallRuleNameEmpty",
            "The firewall rule name cannot be empty.",
        ));
    }
    if name.len() > 128 {
        return Err(bad_request(
            "FirewallRuleNameTooLong",
            "The firewall rule name exceeds the maximum length of 128 characters.",
        ));
    }
    if name.chars().any(|c| "<>*%&:\\/?".contains(c)) || name.ends_with('.') {
        return Err(bad_request(
            "FirewallRuleNameInvalid",
            &format!("The firewall rule name '{name}' contains invalid characters."),
        ));
    }
    let ip = |f: &str| {
        props[f]
            .as_str()
            .and_then(|s| s.parse::<std::net::Ipv4Addr>().ok())
    };
    let (Some(start), Some(end)) = (ip("startIpAddress"), ip("endIpAddress")) else {
        return Err(bad_request(
            "FirewallRuleNotIPv4Address",
            "The firewall rule start and end addresses must be IPv4 addresses.",
        ));
    };
    if u32::from(start) > u32::from(end) {
        return Err(bad_request(
            "FirewallRuleInvalidRange",
            &format!(
                "The firewall rule start IP address {start} cannot exceed the end IP address {end}."
            ),
        ));
    }
    Ok(())
}

fn rule_body(id: &str, name: &str, props: &Value) -> Value {
    json!({"id": id, "name": name, "type": "Microsoft.Sql/servers/firewallRules",
        "properties": {"startIpAddress": props["startIpAddress"], "endIpAddress": props["endIpAddress"]}})
}

fn put_rule(st: &mut State, ctx: &Ctx, server: &str) -> Resp {
    if public_access_disabled(st, server) {
        return deny_public_endpoint();
    }
    let body = json_body!(ctx);
    let name = ctx.m.param("firewallRuleName");
    if let Err(r) = validate_rule(name, &body["properties"]) {
        return r;
    }
    let existed = get_stored(st, ctx.path).is_some();
    let rule = rule_body(ctx.path, name, &body["properties"]);
    st.resources.insert(key(ctx.path), rule.clone());
    Resp::json(
        if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        &rule,
    )
}

fn replace_all(st: &mut State, ctx: &Ctx, server: &str) -> Resp {
    if public_access_disabled(st, server) {
        return deny_public_endpoint();
    }
    let body = json_body!(ctx);
    let Some(values) = body["values"].as_array() else {
        return bad_request(
            "InvalidRequestContent",
            "The request must carry 'values', the complete list of firewall rules.",
        );
    };
    let mut rules = Vec::new();
    for v in values {
        let name = v["name"].as_str().unwrap_or("");
        if let Err(r) = validate_rule(name, &v["properties"]) {
            return r;
        }
        rules.push(rule_body(
            &format!("{}/{name}", ctx.path),
            name,
            &v["properties"],
        ));
    }
    for old in children(st, ctx.path) {
        st.resources.remove(&key(old["id"].as_str().unwrap_or("")));
    }
    for r in &rules {
        st.resources
            .insert(key(r["id"].as_str().unwrap_or("")), r.clone());
    }
    Resp::json(StatusCode::OK, &rules.first().cloned().unwrap_or(json!({})))
}

/// `azureADOnlyAuthentications/Default`: a singleton (off until set); the PUT is long-running
/// and refused while the server has no Entra admin [spec 2023-08-01-preview, the error example].
fn entra_only(st: &mut State, ctx: &Ctx, server: &str) -> Resp {
    if ctx.m.param("authenticationName") != "Default" {
        return bad_request(
            "InvalidParameterValue",
            "The authentication name must be 'Default'.",
        );
    }
    let id = format!("{server}/azureADOnlyAuthentications/Default");
    if ctx.req.method == Method::GET {
        let current = get_stored(st, &id).cloned().unwrap_or_else(|| {
            json!({"id": id, "name": "Default", "type": "Microsoft.Sql/servers/azureADOnlyAuthentications",
                "properties": {"azureADOnlyAuthentication": false}})
        });
        return Resp::json(StatusCode::OK, &current);
    }
    let body = json_body!(ctx);
    let Some(on) = body["properties"]["azureADOnlyAuthentication"].as_bool() else {
        return bad_request(
            "InvalidRequestContent",
            "properties.azureADOnlyAuthentication is required and must be a boolean.",
        );
    };
    if get_stored(st, &format!("{server}/administrators/ActiveDirectory")).is_none() {
        return bad_request(
            "InvalidServerAADOnlyAuthNoAADAdminPropertyName",
            "AAD Admin is not configured, AAD Admin must be set before enabling/disabling AAD Only Authentication.",
        );
    }
    let resource = json!({"id": id, "name": "Default", "type": "Microsoft.Sql/servers/azureADOnlyAuthentications",
        "properties": {"azureADOnlyAuthentication": on}});
    replace_later(st, ctx, id, resource)
}

/// `databases/{db}/transparentDataEncryption/current`: the database must exist; the PUT may
/// answer 202 and is polled (long-running in 2023-08-01-preview, 200/201/202 in 2021-11-01).
fn tde(st: &mut State, ctx: &Ctx, server: &str) -> Resp {
    if ctx.m.param("tdeName") != "current" {
        return bad_request(
            "InvalidParameterValue",
            "The transparent data encryption name must be 'current'.",
        );
    }
    let db = format!("{server}/databases/{}", ctx.m.param("databaseName"));
    if get_stored(st, &db).is_none() {
        return Resp::arm_error(
            StatusCode::NOT_FOUND,
            "ParentResourceNotFound",
            &format!(
                "Can not perform requested operation on nested resource. Parent resource '{db}' not found."
            ),
        );
    }
    let id = format!("{db}/transparentDataEncryption/current");
    if ctx.req.method == Method::GET {
        // New databases are encrypted by default.
        let current = get_stored(st, &id).cloned().unwrap_or_else(|| {
            json!({"id": id, "name": "current", "type": "Microsoft.Sql/servers/databases/transparentDataEncryption",
                "properties": {"state": "Enabled"}})
        });
        return Resp::json(StatusCode::OK, &current);
    }
    let body = json_body!(ctx);
    let state = body["properties"]["state"].as_str().unwrap_or_default();
    if !["Enabled", "Disabled"].contains(&state) {
        return bad_request(
            "InvalidParameterValue",
            &format!("Invalid value '{state}' for properties.state; allowed: Enabled, Disabled."),
        );
    }
    let resource = json!({"id": id, "name": "current", "type": "Microsoft.Sql/servers/databases/transparentDataEncryption",
        "properties": {"state": state}});
    replace_later(st, ctx, id, resource)
}

/// `auditingSettings/default`: Disabled until set; the PUT is long-running (200/202, no
/// final-state-via) and needs a destination when Enabled [spec: ServerBlobAuditingPolicyProperties,
/// facts §3.8]. The storage account key is write-only: stored, never returned.
fn auditing(st: &mut State, ctx: &Ctx, server: &str) -> Resp {
    if ctx.m.param("blobAuditingPolicyName") != "default" {
        return bad_request(
            "InvalidParameterValue",
            "The auditing policy name must be 'default'.",
        );
    }
    let id = format!("{server}/auditingSettings/default");
    if ctx.req.method == Method::GET {
        let mut current = get_stored(st, &id).cloned().unwrap_or_else(|| {
            json!({"id": id, "name": "default", "type": "Microsoft.Sql/servers/auditingSettings",
                "properties": {"state": "Disabled", "retentionDays": 0, "auditActionsAndGroups": [],
                    "isStorageSecondaryKeyInUse": false, "isAzureMonitorTargetEnabled": false,
                    "isManagedIdentityInUse": false, "storageAccountSubscriptionId": "00000000-0000-0000-0000-000000000000"}})
        });
        if let Some(p) = current["properties"].as_object_mut() {
            p.remove("storageAccountAccessKey");
        }
        return Resp::json(StatusCode::OK, &current);
    }
    let body = json_body!(ctx);
    let p = &body["properties"];
    let state = p["state"].as_str().unwrap_or_default();
    if !["Enabled", "Disabled"].contains(&state) {
        return bad_request(
            "InvalidParameterValue",
            &format!("properties.state is required: Enabled or Disabled, not '{state}'."),
        );
    }
    let storage = p["storageEndpoint"].as_str().is_some_and(|s| !s.is_empty());
    if state == "Enabled" && !storage && p["isAzureMonitorTargetEnabled"] != true {
        return bad_request(
            "InvalidParameterValue",
            "When state is Enabled, storageEndpoint or isAzureMonitorTargetEnabled is required.",
        );
    }
    if let Some(days) = p.get("retentionDays")
        && !days.as_i64().is_some_and(|d| (0..=3285).contains(&d))
    {
        return bad_request(
            "InvalidParameterValue",
            "properties.retentionDays must be between 0 and 3285.",
        );
    }
    let resource = json!({"id": id, "name": "default", "type": "Microsoft.Sql/servers/auditingSettings",
        "properties": p});
    replace_later(st, ctx, id, resource)
}

/// A long-running PUT of a server child: 202 with both polling headers (200/201/202, no
/// final-state-via in the specs of auditing, TDE and Entra-only authentication); the resource
/// is replaced when the operation ends.
fn replace_later(st: &mut State, ctx: &Ctx, id: String, resource: Value) -> Resp {
    lro::start(
        st,
        ctx,
        Shape::Both,
        StatusCode::ACCEPTED,
        Effect::Replace {
            id: id.clone(),
            body: resource,
        },
        Some(id),
        None,
    )
}
