//! Conformance with the official API descriptions in `shared/azure-specs/`:
//! - every ARM route the simulator serves is an operation (path template, method) of a spec file
//!   saved for that api-version — a route that is not in the specs fails;
//! - request and response bodies of the first-wave operations validate against the spec schemas
//!   (`$ref`s resolved across files; refs to files not saved here become permissive `{}`).

mod common;
use common::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

fn specs_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/azure-specs");
    assert!(
        d.is_dir(),
        "shared/azure-specs not found at {} — CI provides ../shared beside the repo",
        d.display()
    );
    d
}

fn spec_files() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![specs_dir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().unwrap() != "examples" {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "json") {
                // The saved layout is <provider>/<api-version>/<file>.json.
                let version = p
                    .parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.push((version, p));
            }
        }
    }
    out
}

fn load(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Does a spec saved for `version` declare `method` on `template`?
fn in_specs(
    files: &[(String, PathBuf)],
    cache: &mut HashMap<PathBuf, Value>,
    method: &str,
    template: &str,
    version: &str,
) -> bool {
    files.iter().filter(|(v, _)| v == version).any(|(_, p)| {
        let doc = cache.entry(p.clone()).or_insert_with(|| load(p));
        doc["paths"][template]
            .get(method.to_ascii_lowercase())
            .is_some()
    })
}

#[test]
fn every_route_is_an_operation_in_the_saved_specs() {
    let files = spec_files();
    let mut cache = HashMap::new();
    let mut missing = Vec::new();
    let mut checked = 0;
    for r in azure_sim::routes::ROUTES {
        for v in r.api_versions {
            checked += 1;
            if !in_specs(&files, &mut cache, r.method.as_str(), r.template, v) {
                missing.push(format!("{} {} @ {v}", r.method, r.template));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes not in the specs:\n{}",
        missing.join("\n")
    );
    assert!(checked > 40, "checked only {checked} route/version pairs");
    // The checker itself must reject invented endpoints from the seed documents.
    for (m, t, v) in [
        (
            "POST",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Storage/storageAccounts/{accountName}/rotateKeys",
            "2023-05-01",
        ),
        (
            "POST",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.HybridCompute/machines/{machineName}/isolate",
            "2022-12-27",
        ),
        (
            "PATCH",
            "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Sql/servers/{serverName}",
            "2025-01-01",
        ),
    ] {
        assert!(
            !in_specs(&files, &mut cache, m, t, v),
            "{m} {t} @ {v} must not be in the specs"
        );
    }
}

/// Inlines `$ref`s (same file and cross-file) into a self-contained JSON schema.
struct Resolver {
    root: PathBuf,
    docs: HashMap<PathBuf, Value>,
}

impl Resolver {
    fn doc(&mut self, p: &Path) -> Option<Value> {
        if !p.is_file() {
            return None;
        }
        let p = p.canonicalize().unwrap();
        Some(
            self.docs
                .entry(p.clone())
                .or_insert_with(|| load(&p))
                .clone(),
        )
    }

    fn locate(&self, base: &Path, file: &str) -> PathBuf {
        let direct = base.parent().unwrap().join(file);
        if direct.is_file() {
            return direct;
        }
        // Upstream layout `…/common-types/resource-management/vN/types.json` is saved as
        // `common-types/vN/types.json`.
        if let Some(i) = file.find("common-types/resource-management/") {
            let rest = &file[i + "common-types/resource-management/".len()..];
            return self.root.join("common-types").join(rest);
        }
        direct
    }

    fn resolve(&mut self, file: &Path, v: &Value, depth: usize) -> Value {
        if depth > 14 {
            return json!({});
        }
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    let (f, pointer) = r.split_once('#').unwrap_or((r, ""));
                    let target = if f.is_empty() {
                        file.to_path_buf()
                    } else {
                        self.locate(file, f)
                    };
                    let Some(doc) = self.doc(&target) else {
                        return json!({}); // a file not saved here: accept anything
                    };
                    let Some(node) = doc.pointer(pointer).cloned() else {
                        return json!({});
                    };
                    return self.resolve(&target, &node, depth + 1);
                }
                let mut out = serde_json::Map::new();
                for (k, val) in o {
                    if k.starts_with("x-ms-") || k == "discriminator" || k == "example" {
                        continue;
                    }
                    out.insert(k.clone(), self.resolve(file, val, depth));
                }
                Value::Object(out)
            }
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| self.resolve(file, x, depth)).collect())
            }
            other => other.clone(),
        }
    }
}

/// The request-body and response schemas of one operation.
fn op_schemas(
    file: &str,
    template: &str,
    method: &str,
    status: &str,
) -> (Option<Value>, Option<Value>) {
    let root = specs_dir();
    let path = root.join(file);
    let doc = load(&path);
    let op = &doc["paths"][template][method];
    assert!(op.is_object(), "{method} {template} not in {file}");
    let mut r = Resolver {
        root,
        docs: HashMap::new(),
    };
    let body = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| r.resolve(&path, p, 0))
        .find(|p| p["in"] == "body")
        .map(|p| p["schema"].clone());
    let resp = op["responses"]
        .get(status)
        .and_then(|x| x.get("schema"))
        .map(|s| r.resolve(&path, s, 0));
    (body, resp)
}

/// Swagger 2.0 schemas are JSON Schema draft 4 (e.g. boolean `exclusiveMinimum`).
fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(schema)
        .map_err(|e| e.to_string())
}

fn assert_valid(what: &str, schema: &Value, instance: &Value) {
    let validator =
        compile(schema).unwrap_or_else(|e| panic!("{what}: schema does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the spec:\n{}\ninstance: {instance}",
        errors.join("\n")
    );
}

/// Sends a request, validates its body against the spec's request schema and the response against
/// the schema of the status returned.
async fn exchange(
    sim: &TestSim,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    file: &str,
    template: &str,
) -> Value {
    let (s, _, resp) = sim.call(token, method, path, body.clone()).await;
    assert!(s < 300, "{method} {path}: {s} {resp}");
    let (req_schema, resp_schema) =
        op_schemas(file, template, &method.to_ascii_lowercase(), &s.to_string());
    if let (Some(rs), Some(b)) = (req_schema, body) {
        assert_valid(&format!("request of {method} {template}"), &rs, &b);
    }
    match resp_schema {
        Some(rs) if !resp.is_null() => {
            assert_valid(&format!("{s} response of {method} {template}"), &rs, &resp)
        }
        _ => {}
    }
    resp
}

fn template(suffix: &str) -> String {
    azure_sim::routes::ROUTES
        .iter()
        .find(|r| r.template.ends_with(suffix))
        .unwrap()
        .template
        .to_string()
}

#[tokio::test]
async fn first_wave_bodies_validate_against_the_spec_schemas() {
    let sim = start().await;
    let t = sim.token(OPERATOR, ARM).await;
    let acct = format!(
        "{}/Microsoft.Storage/storageAccounts/stprod01",
        rg("rg-prod")
    );
    let st = "storage/2023-05-01/storage.json";
    let acct_t = template("storageAccounts/{accountName}");
    exchange(
        &sim,
        &t,
        "GET",
        &format!("{acct}?api-version=2023-05-01"),
        None,
        st,
        &acct_t,
    )
    .await;
    exchange(&sim, &t, "PATCH", &format!("{acct}?api-version=2023-05-01"),
        Some(json!({"properties": {"allowBlobPublicAccess": false, "publicNetworkAccess": "Disabled", "allowSharedKeyAccess": false,
            "networkAcls": {"defaultAction": "Deny", "bypass": "AzureServices", "ipRules": [{"value": "203.0.113.0/24", "action": "Allow"}]}}})),
        st, &acct_t).await;
    exchange(
        &sim,
        &t,
        "POST",
        &format!("{acct}/regenerateKey?api-version=2023-05-01"),
        Some(json!({"keyName": "key2"})),
        st,
        &template("/regenerateKey"),
    )
    .await;
    exchange(
        &sim,
        &t,
        "POST",
        &format!("{acct}/listKeys?api-version=2023-05-01"),
        None,
        st,
        &template("storageAccounts/{accountName}/listKeys"),
    )
    .await;

    let srv = format!("{}/Microsoft.Sql/servers/sql-legacy-02", rg("rg-prod"));
    let fw_t = template("firewallRules/{firewallRuleName}");
    for (v, file) in [
        ("2021-11-01", "sql/2021-11-01/FirewallRules.json"),
        ("2025-01-01", "sql/2025-01-01/FirewallRules.json"),
    ] {
        exchange(&sim, &t, "PUT", &format!("{srv}/firewallRules/ctr-split-{v}?api-version={v}"),
            Some(json!({"properties": {"startIpAddress": "203.0.113.0", "endIpAddress": "203.0.113.4"}})), file, &fw_t).await;
        exchange(
            &sim,
            &t,
            "GET",
            &format!("{srv}/firewallRules?api-version={v}"),
            None,
            file,
            &template("{serverName}/firewallRules"),
        )
        .await;
    }
    exchange(
        &sim,
        &t,
        "GET",
        &format!("{srv}?api-version=2021-11-01"),
        None,
        "sql/2021-11-01/Servers.json",
        &template("servers/{serverName}"),
    )
    .await;
    let (req, _) = op_schemas(
        "sql/2021-11-01/Servers.json",
        &template("servers/{serverName}"),
        "patch",
        "202",
    );
    assert_valid(
        "SQL ServerUpdate",
        &req.unwrap(),
        &json!({"properties": {"publicNetworkAccess": "Disabled"}}),
    );

    let cos = format!(
        "{}/Microsoft.DocumentDB/databaseAccounts/cosmos-prod-01",
        rg("rg-prod")
    );
    let cf = "cosmos-db/2024-05-15/cosmos-db.json";
    exchange(
        &sim,
        &t,
        "GET",
        &format!("{cos}?api-version=2024-05-15"),
        None,
        cf,
        &template("databaseAccounts/{accountName}"),
    )
    .await;
    exchange(
        &sim,
        &t,
        "POST",
        &format!("{cos}/regenerateKey?api-version=2024-05-15"),
        Some(json!({"keyKind": "secondary"})),
        cf,
        &template("databaseAccounts/{accountName}/regenerateKey"),
    )
    .await;
    let (req, _) = op_schemas(
        cf,
        &template("databaseAccounts/{accountName}"),
        "patch",
        "200",
    );
    assert_valid(
        "Cosmos update",
        &req.unwrap(),
        &json!({"properties": {"publicNetworkAccess": "Disabled", "ipRules": [{"ipAddressOrRange": "203.0.113.5"}], "disableLocalAuth": true}}),
    );

    let waf = format!(
        "{}/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/waf-prod?api-version=2024-01-01",
        rg("rg-edge")
    );
    let wf = "network/2024-01-01/webapplicationfirewall.json";
    let wt = template("ApplicationGatewayWebApplicationFirewallPolicies/{policyName}");
    let mut policy = exchange(&sim, &t, "GET", &waf, None, wf, &wt).await;
    policy["properties"]["customRules"].as_array_mut().unwrap().push(json!({"name": "ctrBlock1", "priority": 2, "ruleType": "MatchRule", "action": "Block", "state": "Enabled",
        "matchConditions": [{"matchVariables": [{"variableName": "RemoteAddr"}], "operator": "IPMatch", "negationConditon": false, "matchValues": ["203.0.113.5/32"]}]}));
    exchange(&sim, &t, "PUT", &waf, Some(policy), wf, &wt).await;

    let fd = format!(
        "{}/Microsoft.Network/FrontDoorWebApplicationFirewallPolicies/fdwafprod?api-version=2024-02-01",
        rg("rg-edge")
    );
    let ff = "frontdoor/2024-02-01/webapplicationfirewall.json";
    let ft = template("FrontDoorWebApplicationFirewallPolicies/{policyName}");
    let mut fpol = exchange(&sim, &t, "GET", &fd, None, ff, &ft).await;
    fpol["properties"]["customRules"]["rules"] = json!([{"name": "ctrBlock1", "priority": 1, "ruleType": "MatchRule", "action": "Block", "enabledState": "Enabled",
        "matchConditions": [{"matchVariable": "RemoteAddr", "operator": "IPMatch", "matchValue": ["203.0.113.5"]}]}]);
    exchange(&sim, &t, "PUT", &fd, Some(fpol), ff, &ft).await;

    let alert = format!(
        "/subscriptions/{SUB}/providers/Microsoft.Security/locations/centralus/alerts/2518770965529163669_F144EE95-A3E5-42DA-A279-967D115809AA?api-version=2022-01-01"
    );
    exchange(
        &sim,
        &t,
        "GET",
        &alert,
        None,
        "security/2022-01-01/alerts.json",
        &template("{ascLocation}/alerts/{alertName}"),
    )
    .await;

    let arc = format!(
        "{}/Microsoft.HybridCompute/machines/arc-web-01?api-version=2022-12-27",
        rg("rg-onprem")
    );
    exchange(
        &sim,
        &t,
        "GET",
        &arc,
        None,
        "hybridcompute/2022-12-27/HybridCompute.json",
        &template("machines/{machineName}"),
    )
    .await;
}

#[test]
fn a_body_that_breaks_the_spec_is_caught() {
    // Guards the validator: a wrong type and an unknown enum value must fail.
    let (req, _) = op_schemas(
        "sql/2021-11-01/FirewallRules.json",
        &template("firewallRules/{firewallRuleName}"),
        "put",
        "200",
    );
    let schema = req.unwrap();
    let bad = json!({"properties": {"startIpAddress": 17}});
    assert!(!compile(&schema).unwrap().is_valid(&bad));
    let (req, _) = op_schemas(
        "storage/2023-05-01/storage.json",
        &template("/regenerateKey"),
        "post",
        "200",
    );
    assert!(
        !compile(&req.unwrap())
            .unwrap()
            .is_valid(&json!({"keyName": 5}))
    );
}
