//! Microsoft.Security alerts: status changes only through the dismiss / resolve / activate /
//! inProgress actions (POST, no body, 204).

use http::{Method, StatusCode};

use super::{Ctx, key, ok_resource, parent_of};
use crate::State;
use crate::http_util::Resp;

pub fn handle(st: &mut State, ctx: &Ctx) -> Resp {
    if ctx.req.method == Method::GET {
        return ok_resource(st, ctx.path);
    }
    let id = parent_of(ctx.path);
    let status = match ctx.path.rsplit('/').next().unwrap_or("") {
        "dismiss" => "Dismissed",
        "resolve" => "Resolved",
        "activate" => "Active",
        _ => "InProgress",
    };
    match st.resources.get_mut(&key(id)) {
        Some(a) => {
            a["properties"]["status"] = status.into();
            Resp::empty(StatusCode::NO_CONTENT)
        }
        None => Resp::not_found(id),
    }
}
