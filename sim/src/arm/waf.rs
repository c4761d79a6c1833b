//! WAF policies: Application Gateway (sync whole-resource PUT) and Front Door (long-running PUT),
//! each with its own field names; custom rules validated as Azure does; a new etag per write.

use std::collections::HashSet;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::lro::{self, Effect, Shape};
use super::{Ctx, bad_request, get_stored, key, ok_resource, parse_ipv4_or_cidr};
use crate::State;
use crate::http_util::{Resp, guid};

struct Flavour {
    front_door: bool,
}

impl Flavour {
    fn rules<'a>(&self, props: &'a Value) -> Option<&'a Vec<Value>> {
        if self.front_door {
            props["customRules"]["rules"].as_array()
        } else {
            props["customRules"].as_array()
        }
    }
    /// (variable names, operator, values) of a match condition.
    fn condition(&self, c: &Value) -> (Vec<String>, String, Vec<String>) {
        let strs = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        if self.front_door {
            (
                vec![c["matchVariable"].as_str().unwrap_or("").to_string()],
                c["operator"].as_str().unwrap_or("").to_string(),
                strs(&c["matchValue"]),
            )
        } else {
            let vars = c["matchVariables"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m["variableName"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (
                vars,
                c["operator"].as_str().unwrap_or("").to_string(),
                strs(&c["matchValues"]),
            )
        }
    }
}

fn validate(f: &Flavour, body: &Value) -> Result<(), Resp> {
    if !body["location"].is_string() {
        return Err(bad_request(
            "LocationRequired",
            "The location property is required for this definition.",
        ));
    }
    let props = &body["properties"];
    if f.front_door {
        let sku = body["sku"]["name"].as_str().unwrap_or("");
        if !matches!(
            sku,
            "Classic_AzureFrontDoor" | "Standard_AzureFrontDoor" | "Premium_AzureFrontDoor"
        ) {
            return Err(bad_request(
                "InvalidSku",
                &format!(
                    "sku.name '{sku}' is invalid; expected Classic_AzureFrontDoor, Standard_AzureFrontDoor or Premium_AzureFrontDoor."
                ),
            ));
        }
    } else if props["managedRules"]["managedRuleSets"]
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        return Err(bad_request(
            "ApplicationGatewayFirewallPolicyManagedRulesMissing",
            "properties.managedRules.managedRuleSets is required: resend the managed rules read from the policy.",
        ));
    }
    let mut names = HashSet::new();
    let mut priorities = HashSet::new();
    for rule in f.rules(props).into_iter().flatten() {
        let name = rule["name"].as_str().unwrap_or("");
        let Some(priority) = rule["priority"].as_i64() else {
            return Err(bad_request(
                "CustomRulePriorityRequired",
                &format!("Custom rule '{name}' has no priority."),
            ));
        };
        if !names.insert(name.to_ascii_lowercase()) {
            return Err(bad_request(
                "DuplicateCustomRuleName",
                &format!("Custom rule name '{name}' is used more than once."),
            ));
        }
        if !priorities.insert(priority) {
            return Err(bad_request(
                "DuplicateCustomRulePriority",
                &format!(
                    "Custom rule '{name}': priority {priority} is already used by another custom rule; priorities must be unique within a policy."
                ),
            ));
        }
        let conds = rule["matchConditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if conds.is_empty() {
            return Err(bad_request(
                "CustomRuleMatchConditionsRequired",
                &format!("Custom rule '{name}' needs at least one match condition."),
            ));
        }
        for c in &conds {
            let (vars, op, values) = f.condition(c);
            let addr = vars.iter().any(|v| v == "RemoteAddr" || v == "SocketAddr");
            if addr && !matches!(op.as_str(), "IPMatch" | "GeoMatch" | "Any") {
                return Err(bad_request(
                    "InvalidCustomRuleOperator",
                    &format!(
                        "Custom rule '{name}': variable RemoteAddr supports only the IPMatch and GeoMatch operators, not '{op}'."
                    ),
                ));
            }
            if op == "IPMatch" {
                if !addr {
                    return Err(bad_request(
                        "InvalidCustomRuleOperator",
                        &format!("Custom rule '{name}': IPMatch requires RemoteAddr."),
                    ));
                }
                if let Some(bad) = values.iter().find(|v| {
                    parse_ipv4_or_cidr(v).is_none() && v.parse::<std::net::Ipv6Addr>().is_err()
                }) {
                    return Err(bad_request(
                        "InvalidCustomRuleMatchValue",
                        &format!(
                            "Custom rule '{name}': '{bad}' is not an IP address or CIDR range."
                        ),
                    ));
                }
            }
            if op == "GeoMatch"
                && values
                    .iter()
                    .any(|v| v.len() != 2 || !v.chars().all(|c| c.is_ascii_uppercase()))
            {
                return Err(bad_request(
                    "InvalidCustomRuleMatchValue",
                    &format!(
                        "Custom rule '{name}': GeoMatch values must be two-letter country codes."
                    ),
                ));
            }
        }
    }
    Ok(())
}

pub fn handle(st: &mut State, ctx: &Ctx) -> Resp {
    if ctx.req.method == Method::GET {
        return ok_resource(st, ctx.path);
    }
    let flavour = Flavour {
        front_door: ctx.m.route.template.contains("FrontDoor"),
    };
    let body = json_body!(ctx);
    if let Err(r) = validate(&flavour, &body) {
        return r;
    }
    let current = get_stored(st, ctx.path).cloned();
    let mut next = body.clone();
    next["id"] = json!(ctx.path);
    next["name"] = json!(ctx.m.param("policyName"));
    next["type"] = json!(if flavour.front_door {
        "Microsoft.Network/frontdoorwebapplicationfirewallpolicies"
    } else {
        "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies"
    });
    next["etag"] = json!(format!("W/\"{}\"", guid()));
    next["properties"]["provisioningState"] = json!("Succeeded");
    // Read-only back-references survive a PUT that omits them.
    for ro in [
        "applicationGateways",
        "httpListeners",
        "pathBasedRules",
        "frontendEndpointLinks",
        "securityPolicyLinks",
        "routingRuleLinks",
    ] {
        if let Some(v) = current.as_ref().and_then(|c| c["properties"].get(ro)) {
            next["properties"][ro] = v.clone();
        }
    }
    let status = if current.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    if flavour.front_door {
        let mut accepted = next.clone();
        accepted["properties"]["provisioningState"] = json!("Updating");
        // Front Door PUT: LRO, 200/201/202, no final-state-via [spec].
        lro::start(
            st,
            ctx,
            Shape::Both,
            StatusCode::ACCEPTED,
            Effect::Replace {
                id: ctx.path.to_string(),
                body: next,
            },
            Some(ctx.path.to_string()),
            Some(accepted),
        )
    } else {
        st.resources.insert(key(ctx.path), next.clone());
        Resp::json(status, &next)
    }
}
