//! Microsoft.HybridCompute: machines (read) and run commands (long-running PUT).

use http::{Method, StatusCode};
use serde_json::json;

use super::lro::{self, Effect, Shape};
use super::{Ctx, bad_request, get_stored, key, now_str, ok_resource};
use crate::State;
use crate::http_util::Resp;

pub fn handle(st: &mut State, ctx: &Ctx) -> Resp {
    if ctx.req.method == Method::GET {
        return ok_resource(st, ctx.path);
    }
    let machine = ctx.path.rsplitn(3, '/').nth(2).unwrap_or("").to_string();
    if get_stored(st, &machine).is_none() {
        return Resp::not_found(&machine);
    }
    let body = json_body!(ctx);
    if !body["location"].is_string() {
        return bad_request(
            "LocationRequired",
            "The location property is required for this definition.",
        );
    }
    let existed = get_stored(st, ctx.path).is_some();
    let mut r = body.clone();
    r["id"] = json!(ctx.path);
    r["name"] = json!(ctx.m.param("runCommandName"));
    r["type"] = json!("Microsoft.HybridCompute/machines/runCommands");
    r["properties"]["provisioningState"] = json!("Creating");
    r["properties"]["instanceView"] = json!({"executionState": "Running", "startTime": now_str()});
    st.resources.insert(key(ctx.path), r.clone());
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    // runCommands PUT: LRO, 200/201, final-state-via azure-async-operation [spec].
    lro::start(
        st,
        ctx,
        Shape::AzureAsyncOperation,
        status,
        Effect::Apply {
            id: ctx.path.to_string(),
            arg: String::new(),
            apply: finish_run_command,
        },
        Some(ctx.path.to_string()),
        Some(r),
    )
}

fn finish_run_command(st: &mut State, id: &str, _: &str) -> bool {
    let Some(r) = st.resources.get_mut(&key(id)) else {
        return false;
    };
    r["properties"]["provisioningState"] = json!("Succeeded");
    let iv = &mut r["properties"]["instanceView"];
    iv["executionState"] = json!("Succeeded");
    iv["exitCode"] = json!(0);
    iv["output"] = json!("azure-sim: script accepted (not executed)");
    iv["endTime"] = json!(now_str());
    true
}
