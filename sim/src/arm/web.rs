//! Microsoft.Web: sites and deployment slots (read), and their restart action: sync 200, not
//! long-running [spec: WebApps_Restart, WebApps_RestartSlot]. The world's `properties.state`
//! says whether the app runs; restarting a Stopped app is refused as Azure refuses it.
//! App settings: values only through `POST config/appsettings/list`; `PUT config/appsettings`
//! replaces the whole map, so a key left out is gone [spec: WebApps_UpdateApplicationSettings].
//! Basic-auth publishing policies (`ftp`, `scm`): GET/PUT `{"properties":{"allow":bool}}`,
//! allowed unless set [spec: WebApps_UpdateFtpAllowed, WebApps_UpdateScmAllowed].

use http::{Method, StatusCode};
use serde_json::json;

use super::{Ctx, bad_request, get_stored, now_str, ok_resource};
use crate::State;
use crate::http_util::Resp;

pub fn handle(st: &mut State, ctx: &Ctx) -> Resp {
    let t = ctx.m.route.template;
    if t.contains("/config/appsettings") {
        return app_settings(st, ctx);
    }
    if t.contains("/basicPublishingCredentialsPolicies/") {
        return publishing_policy(st, ctx);
    }
    if ctx.req.method == Method::GET {
        return ok_resource(st, ctx.path);
    }
    let app = ctx.path.trim_end_matches("/restart").to_string();
    let Some(current) = get_stored(st, &app) else {
        return Resp::not_found(&app);
    };
    for flag in ["softRestart", "synchronous"] {
        if let Some(v) = ctx.req.query_ci(flag)
            && v != "true"
            && v != "false"
        {
            return bad_request(
                "InvalidParameter",
                &format!("The query parameter {flag} must be true or false, not '{v}'."),
            );
        }
    }
    if current["properties"]["state"] == "Stopped" {
        return Resp::arm_error(
            StatusCode::CONFLICT,
            "Conflict",
            "Cannot restart a stopped site. Start the site first.",
        );
    }
    if let Some(r) = st.resources.get_mut(&super::key(&app)) {
        r["properties"]["lastRestartTime"] = json!(now_str());
    }
    Resp::empty(StatusCode::OK)
}

/// The site or slot a child path belongs to.
fn app_of(path: &str) -> &str {
    [
        "/config/appsettings",
        "/basicPublishingCredentialsPolicies/",
    ]
    .iter()
    .find_map(|m| path.find(m).map(|i| &path[..i]))
    .unwrap_or(path)
}

fn app_settings(st: &mut State, ctx: &Ctx) -> Resp {
    let app = app_of(ctx.path).to_string();
    if get_stored(st, &app).is_none() {
        return Resp::not_found(&app);
    }
    let id = format!("{app}/config/appsettings");
    if ctx.req.method == Method::POST {
        let props = get_stored(st, &id)
            .map(|r| r["properties"].clone())
            .unwrap_or_else(|| json!({}));
        return Resp::json(
            StatusCode::OK,
            &json!({"id": id, "name": "appsettings", "type": "Microsoft.Web/sites/config", "properties": props}),
        );
    }
    let body = json_body!(ctx);
    let Some(props) = body["properties"].as_object() else {
        return bad_request(
            "BadRequest",
            "The request body must carry properties: a map of app setting names to values.",
        );
    };
    // StringDictionary: every value a string [spec].
    if let Some((k, _)) = props.iter().find(|(_, v)| !v.is_string()) {
        return bad_request(
            "BadRequest",
            &format!("The value of app setting '{k}' must be a string."),
        );
    }
    let resource = json!({"id": id, "name": "appsettings", "type": "Microsoft.Web/sites/config", "properties": props});
    st.resources.insert(super::key(&id), resource.clone());
    Resp::json(StatusCode::OK, &resource)
}

fn publishing_policy(st: &mut State, ctx: &Ctx) -> Resp {
    let app = app_of(ctx.path).to_string();
    if get_stored(st, &app).is_none() {
        return Resp::not_found(&app);
    }
    let name = ctx.path.rsplit('/').next().unwrap_or_default().to_string();
    let stored = get_stored(st, ctx.path).cloned();
    if ctx.req.method == Method::GET {
        return Resp::json(
            StatusCode::OK,
            &stored.unwrap_or_else(|| policy(ctx.path, &name, true)),
        );
    }
    let body = json_body!(ctx);
    let Some(allow) = body["properties"]["allow"].as_bool() else {
        return bad_request(
            "BadRequest",
            "properties.allow is required and must be a boolean.",
        );
    };
    let resource = policy(ctx.path, &name, allow);
    st.resources.insert(super::key(ctx.path), resource.clone());
    Resp::json(StatusCode::OK, &resource)
}

fn policy(id: &str, name: &str, allow: bool) -> serde_json::Value {
    json!({"id": id, "name": name, "type": "Microsoft.Web/sites/basicPublishingCredentialsPolicies", "properties": {"allow": allow}})
}
