//! Microsoft.HybridCompute: machines (read) and run commands: long-running PUT (200/201,
//! final-state-via azure-async-operation) and DELETE (202/204, final-state-via location)
//! [spec 2024-05-20-preview]. The agent is imitated: a script's `echo` lines (with `$name`
//! parameters substituted) are its output, and an `exit N` line ends it Failed with exit code
//! N. Protected parameters are kept with the secrets, never in what GET returns [docs].

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
    if ctx.req.method == Method::DELETE {
        return lro::delete(st, ctx, remove_run_command);
    }
    let mut body = json_body!(ctx);
    if !body["location"].is_string() {
        return bad_request(
            "LocationRequired",
            "The location property is required for this definition.",
        );
    }
    if let Err(r) = validate(&body["properties"]) {
        return r;
    }
    let protected = body["properties"]
        .as_object_mut()
        .and_then(|p| p.remove("protectedParameters"));
    let secrets = st.keys.entry(key(ctx.path)).or_default();
    secrets.clear();
    for p in protected
        .as_ref()
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
    {
        secrets.insert(
            p["name"].as_str().unwrap_or_default().to_string(),
            p["value"].as_str().unwrap_or_default().to_string(),
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

/// Exactly one script source, and well-formed parameters and timeout [spec].
fn validate(props: &serde_json::Value) -> Result<(), Resp> {
    let sources = ["script", "scriptUri", "commandId"]
        .iter()
        .filter(|k| props["source"][**k].is_string())
        .count();
    if sources != 1 {
        return Err(bad_request(
            "InvalidParameter",
            "properties.source must specify exactly one of script, scriptUri or commandId.",
        ));
    }
    for list in ["parameters", "protectedParameters"] {
        let ok = props.get(list).is_none_or(|l| {
            l.as_array().is_some_and(|a| {
                a.iter()
                    .all(|p| p["name"].is_string() && p["value"].is_string())
            })
        });
        if !ok {
            return Err(bad_request(
                "InvalidParameter",
                &format!("properties.{list} must be a list of {{name, value}} strings."),
            ));
        }
    }
    if props.get("timeoutInSeconds").is_some_and(|t| !t.is_i64()) {
        return Err(bad_request(
            "InvalidParameter",
            "properties.timeoutInSeconds must be an integer.",
        ));
    }
    Ok(())
}

fn remove_run_command(st: &mut State, id: &str, _: &str) -> bool {
    st.keys.remove(&key(id));
    st.resources.remove(&key(id));
    true
}

/// What the imitated agent reports for `script`: its echo lines, and the exit code of its
/// first `exit N` line (0 without one).
fn run_script(script: &str, params: &[(String, String)]) -> (String, i64) {
    let mut out = Vec::new();
    for line in script.lines().map(str::trim) {
        if let Some(code) = line.strip_prefix("exit ") {
            return (out.join("\n"), code.trim().parse().unwrap_or(1));
        }
        if let Some(text) = line.strip_prefix("echo ") {
            let mut text = text.trim_matches('"').to_string();
            for (n, v) in params {
                text = text
                    .replace(&format!("${{{n}}}"), v)
                    .replace(&format!("${n}"), v);
            }
            out.push(text);
        }
    }
    (out.join("\n"), 0)
}

fn finish_run_command(st: &mut State, id: &str, _: &str) -> bool {
    let mut params: Vec<(String, String)> = st
        .keys
        .get(&key(id))
        .map(|k| k.iter().map(|(n, v)| (n.clone(), v.clone())).collect())
        .unwrap_or_default();
    let Some(r) = st.resources.get_mut(&key(id)) else {
        return false;
    };
    for p in r["properties"]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let (Some(n), Some(v)) = (p["name"].as_str(), p["value"].as_str()) {
            params.push((n.to_string(), v.to_string()));
        }
    }
    let (output, code) = match r["properties"]["source"]["script"].as_str() {
        Some(script) => run_script(script, &params),
        None => (String::new(), 0),
    };
    r["properties"]["provisioningState"] = json!("Succeeded");
    let iv = &mut r["properties"]["instanceView"];
    iv["executionState"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
    iv["exitCode"] = json!(code);
    iv["output"] = json!(if output.is_empty() {
        "azure-sim: script accepted (not executed)".to_string()
    } else {
        output
    });
    iv["error"] = json!(if code == 0 {
        String::new()
    } else {
        format!("azure-sim: the script exited {code}")
    });
    iv["endTime"] = json!(now_str());
    true
}
