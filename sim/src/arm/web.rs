//! Microsoft.Web: sites and deployment slots (read), and their restart action: sync 200, not
//! long-running [spec: WebApps_Restart, WebApps_RestartSlot]. The world's `properties.state`
//! says whether the app runs; restarting a Stopped app is refused as Azure refuses it.

use http::{Method, StatusCode};
use serde_json::json;

use super::{Ctx, bad_request, get_stored, now_str, ok_resource};
use crate::State;
use crate::http_util::Resp;

pub fn handle(st: &mut State, ctx: &Ctx) -> Resp {
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
