//! Microsoft.Storage: account PATCH (sync), keys, user-delegation key revocation, blob service
//! properties, and Defender for Storage settings.

use std::collections::BTreeMap;

use base64::Engine;
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{
    Ctx, bad_request, get_stored, key, now_str, ok_resource, parent_of, parse_ipv4_or_cidr,
};
use crate::State;
use crate::http_util::{Resp, merge_patch};

pub fn new_key() -> String {
    let b: [u8; 64] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn init_account(st: &mut State, id: &str, r: &mut Value) {
    let mut keys = BTreeMap::new();
    keys.insert("key1".to_string(), new_key());
    keys.insert("key2".to_string(), new_key());
    st.keys.insert(key(id), keys);
    let props = &mut r["properties"];
    if props.get("keyCreationTime").is_none() {
        props["keyCreationTime"] =
            json!({"key1": "2024-01-01T00:00:00.0000000Z", "key2": "2024-01-01T00:00:00.0000000Z"});
    }
    props
        .as_object_mut()
        .map(|p| p.entry("provisioningState").or_insert(json!("Succeeded")));
}

/// Kerberos keys have no `keyCreationTime` entry in Azure; their times are kept with the keys.
const KERB_CREATED: &str = "created:";

/// `kerb`: the Kerberos keys too (listKeys lists them only with `$expand=kerb`, the spec's
/// `ListKeyExpand`; a regenerateKey answer lists every key).
fn keys_body(st: &State, id: &str, created: &Value, kerb: bool) -> Value {
    let keys = st.keys.get(&key(id)).cloned().unwrap_or_default();
    let list: Vec<Value> = keys
        .iter()
        .filter(|(name, _)| !name.starts_with(KERB_CREATED))
        .filter(|(name, _)| kerb || !name.starts_with("kerb"))
        .map(|(name, value)| {
            let mut k = json!({"keyName": name, "value": value, "permissions": "Full"});
            let time = created
                .get(name)
                .cloned()
                .or_else(|| keys.get(&format!("{KERB_CREATED}{name}")).map(|t| json!(t)));
            if let Some(t) = time {
                k["creationTime"] = t;
            }
            k
        })
        .collect();
    json!({"keys": list})
}

pub fn handle(st: &mut State, ctx: &Ctx) -> Resp {
    let path = ctx.path;
    if ctx.m.route.template.ends_with("{BlobServicesName}") {
        return blob_services(st, ctx);
    }
    let action = path.rsplit('/').next().unwrap_or("");
    match (&ctx.req.method, action) {
        (&Method::GET, _) => ok_resource(st, path),
        (&Method::PATCH, _) => patch(st, ctx),
        (&Method::POST, a) => {
            let id = parent_of(path);
            if get_stored(st, id).is_none() {
                return Resp::not_found(id);
            }
            match a.to_ascii_lowercase().as_str() {
                "listkeys" => {
                    let created = created_times(st, id);
                    let kerb = ctx.req.query_ci("$expand") == Some("kerb");
                    Resp::json(StatusCode::OK, &keys_body(st, id, &created, kerb))
                }
                "regeneratekey" => regenerate(st, ctx, id),
                _ => {
                    // revokeUserDelegationKeys: no observable state in Azure; counted for tests.
                    *st.counters
                        .entry(format!("{}/revokeUserDelegationKeys", key(id)))
                        .or_default() += 1;
                    Resp::empty(StatusCode::OK)
                }
            }
        }
        _ => Resp::arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "Unsupported.",
        ),
    }
}

fn created_times(st: &State, id: &str) -> Value {
    get_stored(st, id)
        .map(|r| r["properties"]["keyCreationTime"].clone())
        .unwrap_or(Value::Null)
}

fn regenerate(st: &mut State, ctx: &Ctx, id: &str) -> Resp {
    let body = json_body!(ctx);
    let name = body["keyName"].as_str().unwrap_or("");
    if !matches!(name, "key1" | "key2" | "kerb1" | "kerb2") {
        return bad_request(
            "InvalidValuesForRequestParameters",
            &format!("Values for request parameters are invalid: keyName '{name}'."),
        );
    }
    let now = now_str();
    let keys = st.keys.entry(key(id)).or_default();
    keys.insert(name.to_string(), new_key());
    if name.starts_with("kerb") {
        keys.insert(format!("{KERB_CREATED}{name}"), now);
    } else if let Some(r) = st.resources.get_mut(&key(id)) {
        r["properties"]["keyCreationTime"][name] = json!(now);
    }
    let created = created_times(st, id);
    Resp::json(StatusCode::OK, &keys_body(st, id, &created, true))
}

fn patch(st: &mut State, ctx: &Ctx) -> Resp {
    let path = ctx.path;
    if get_stored(st, path).is_none() {
        return Resp::not_found(path);
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
            "InvalidValuesForRequestParameters",
            &format!("Invalid value for properties.publicNetworkAccess: {v}"),
        );
    }
    if let Some(acls) = props.get("networkAcls") {
        if !matches!(acls["defaultAction"].as_str(), Some("Allow" | "Deny")) {
            return bad_request(
                "InvalidValuesForRequestParameters",
                "properties.networkAcls.defaultAction is required and must be Allow or Deny.",
            );
        }
        for rule in acls["ipRules"].as_array().into_iter().flatten() {
            let value = rule["value"].as_str().unwrap_or("");
            if parse_ipv4_or_cidr(value).is_none() {
                return bad_request(
                    "NetworkAclsValidationFailure",
                    &format!(
                        "Validation of network acls failure: Invalid IP address or range '{value}'. Only IPV4 address is allowed."
                    ),
                );
            }
            if rule.get("action").is_some_and(|a| a != "Allow") {
                return bad_request(
                    "NetworkAclsValidationFailure",
                    "Validation of network acls failure: ipRules action must be Allow.",
                );
            }
        }
    }
    let Some(r) = st.resources.get_mut(&key(path)) else {
        return Resp::not_found(path);
    };
    // PATCH merges properties; arrays (networkAcls.ipRules …) are replaced as a unit.
    merge_patch(&mut r["properties"], props);
    if let Some(tags) = body.get("tags") {
        r["tags"] = tags.clone();
    }
    Resp::json(StatusCode::OK, r)
}

fn blob_services(st: &mut State, ctx: &Ctx) -> Resp {
    let account = ctx.path.rsplitn(3, '/').nth(2).unwrap_or("");
    if ctx.m.param("BlobServicesName") != "default" {
        return bad_request(
            "InvalidResourceName",
            "The blob service name must be 'default'.",
        );
    }
    if get_stored(st, account).is_none() {
        return Resp::not_found(account);
    }
    let id = format!("{account}/blobServices/default");
    let current = get_stored(st, &id).cloned().unwrap_or_else(|| json!({
        "id": id, "name": "default", "type": "Microsoft.Storage/storageAccounts/blobServices",
        "properties": {"cors": {"corsRules": []}, "deleteRetentionPolicy": {"enabled": false}, "containerDeleteRetentionPolicy": {"enabled": false}}
    }));
    if ctx.req.method == Method::GET {
        return Resp::json(StatusCode::OK, &current);
    }
    let body = json_body!(ctx);
    for policy in ["deleteRetentionPolicy", "containerDeleteRetentionPolicy"] {
        if let Some(days) = body["properties"][policy].get("days")
            && !days.as_u64().is_some_and(|d| (1..=365).contains(&d))
        {
            return bad_request(
                "InvalidValuesForRequestParameters",
                &format!("properties.{policy}.days must be between 1 and 365."),
            );
        }
    }
    // Up to five CorsRule elements [spec: BlobServiceProperties.cors].
    if body["properties"]["cors"]["corsRules"]
        .as_array()
        .is_some_and(|r| r.len() > 5)
    {
        return bad_request(
            "InvalidXmlNodeValue",
            "properties.cors.corsRules: at most five CORS rules are allowed.",
        );
    }
    // allowPermanentDelete applies to the blob policy only [spec: DeleteRetentionPolicy].
    if body["properties"]["containerDeleteRetentionPolicy"]
        .get("allowPermanentDelete")
        .is_some()
    {
        return bad_request(
            "InvalidValuesForRequestParameters",
            "properties.containerDeleteRetentionPolicy.allowPermanentDelete is not allowed: it applies to the blob service's deleteRetentionPolicy only.",
        );
    }
    // A PUT replaces the properties: omitting cors deletes every CORS rule, as in Azure.
    let mut next = current;
    next["properties"] = body["properties"].clone();
    st.resources.insert(key(&id), next.clone());
    Resp::json(StatusCode::OK, &next)
}

/// What Defender for Storage's malware scanning and sensitive data discovery do on the caller's
/// behalf [docs: "Required permissions for enabling Defender for Storage"].
const DEFENDER_FEATURE_ACTIONS: [&str; 7] = [
    "Microsoft.Storage/storageAccounts/write",
    "Microsoft.EventGrid/eventSubscriptions/read",
    "Microsoft.EventGrid/eventSubscriptions/write",
    "Microsoft.EventGrid/eventSubscriptions/delete",
    "Microsoft.Authorization/roleAssignments/read",
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleAssignments/delete",
];

pub fn defender(st: &mut State, ctx: &Ctx) -> Resp {
    let parent = ctx.m.param("resourceId");
    if ctx.m.param("settingName") != "current" {
        return bad_request("InvalidSettingName", "The setting name must be 'current'.");
    }
    if get_stored(st, parent).is_none() {
        return Resp::not_found(parent);
    }
    let id = ctx.path.to_string();
    if ctx.req.method == Method::GET {
        return ok_resource(st, &id);
    }
    let body = json_body!(ctx);
    if !body["properties"]["isEnabled"].is_boolean() {
        return bad_request("InvalidRequestContent", "properties.isEnabled is required.");
    }
    // Malware scanning and sensitive data discovery create (and on disable delete) Event Grid
    // subscriptions and role assignments on the account in the caller's name, so the caller
    // needs those permissions too (facts §3.4, "Required permissions").
    let features_on = |p: &Value| {
        p["isEnabled"] == true
            && (p["malwareScanning"]["onUpload"]["isEnabled"] == true
                || p["sensitiveDataDiscovery"]["isEnabled"] == true)
    };
    let stored_on = get_stored(st, &id).is_some_and(|r| features_on(&r["properties"]));
    if features_on(&body["properties"]) || stored_on {
        for action in DEFENDER_FEATURE_ACTIONS {
            if !crate::authz::allowed(ctx.principal, action, parent) {
                return Resp::arm_error(
                    StatusCode::FORBIDDEN,
                    "AuthorizationFailed",
                    &format!(
                        "The client '{oid}' with object id '{oid}' does not have authorization to perform action '{action}' over scope '{parent}' or the scope is invalid. Enabling or disabling malware scanning or sensitive data discovery needs it.",
                        oid = ctx.principal.object_id
                    ),
                );
            }
        }
    }
    let existed = get_stored(st, &id).is_some();
    let mut props = body["properties"].clone();
    let mut partial = false;
    for part in ["malwareScanning", "sensitiveDataDiscovery"] {
        if props.get(part).is_some() {
            props[part]["operationStatus"] = json!({"code": "Succeeded", "message": "Succeeded"});
        }
    }
    // A scan-results topic that does not exist: the setting is saved, malware scanning's part
    // fails, and the answer is 201 "partially succeeded" [spec]. The failure code is not
    // documented; the simulator says Failed.
    if let Some(topic) = props["malwareScanning"]["scanResultsEventGridTopicResourceId"].as_str()
        && get_stored(st, topic).is_none()
    {
        props["malwareScanning"]["operationStatus"] = json!({"code": "Failed",
            "message": format!("The Event Grid topic '{topic}' was not found.")});
        partial = true;
    }
    let r = json!({"id": id, "name": "current", "type": "Microsoft.Security/defenderForStorageSettings", "properties": props});
    st.resources.insert(key(&id), r.clone());
    Resp::json(
        // 201 is both "created" and "partially succeeded" in the spec.
        if partial || !existed {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &r,
    )
}
