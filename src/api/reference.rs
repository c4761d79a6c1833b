//! `docs/api.md`: the API reference, generated from the CRD schemas (`make crds` writes it, a
//! test fails when it is stale), so that it can never disagree with what the API server admits.

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// The whole reference: an index, then one section per kind.
pub fn markdown(crds: &[CustomResourceDefinition]) -> String {
    let mut out = String::from(
        "# API reference\n\n\
         Generated from the CRD schemas by `make crds` (do not edit: a test fails when this file \
         is stale). Group `containment.defenderc2.io`, version `v1alpha1`; every kind is \
         namespaced. Rules are CEL validations the API server enforces at admission, with the \
         message it answers.\n\n",
    );
    for crd in crds {
        let kind = &crd.spec.names.kind;
        let _ = writeln!(out, "- [{kind}](#{})", kind.to_ascii_lowercase());
    }
    for crd in crds {
        out.push('\n');
        section(&mut out, crd);
    }
    out
}

fn section(out: &mut String, crd: &CustomResourceDefinition) {
    let names = &crd.spec.names;
    let _ = writeln!(out, "## {}\n", names.kind);
    let short = names.short_names.clone().unwrap_or_default().join("`, `");
    let categories = names.categories.clone().unwrap_or_default().join("`, `");
    let _ = write!(out, "Plural `{}`, short name `{short}`", names.plural);
    if !categories.is_empty() {
        let _ = write!(out, ", category `{categories}`");
    }
    match example(&names.kind) {
        Some(file) => {
            let _ = writeln!(out, ". Example: [`examples/{file}`](../examples/{file}).\n");
        }
        None => {
            let _ = writeln!(out, ". Use: [README](../README.md#who-may-contain-what).\n");
        }
    }
    let Some(version) = crd.spec.versions.first() else {
        return;
    };
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_default();
    for part in ["spec", "status"] {
        let node = &schema["properties"][part];
        if node.is_null() {
            continue;
        }
        let _ = writeln!(out, "### {part}\n");
        if let Some(d) = node["description"].as_str() {
            let _ = writeln!(out, "{}\n", one_line(d));
        }
        out.push_str(
            "| Field | Type | Required | Default | Description |\n|---|---|---|---|---|\n",
        );
        let mut rules = Vec::new();
        rules_of(part, node, &mut rules);
        fields(out, part, node, &mut rules);
        if !rules.is_empty() {
            let _ = writeln!(out, "\nRules:\n");
            for (path, rule, message) in rules {
                let _ = writeln!(out, "- `{path}`: `{rule}` — {message}");
            }
        }
        out.push('\n');
    }
    if let Some(columns) = &version.additional_printer_columns {
        let list: Vec<String> = columns
            .iter()
            .map(|c| {
                let wide = if c.priority.unwrap_or(0) > 0 {
                    " (wide)"
                } else {
                    ""
                };
                format!("`{}`{wide} = `{}`", c.name, c.json_path)
            })
            .collect();
        let _ = writeln!(out, "`kubectl get` columns: {}.", list.join(", "));
    }
}

/// One table row per field, depth first (array items and map values under `[]` / `{}`).
fn fields(out: &mut String, path: &str, node: &Value, rules: &mut Vec<(String, String, String)>) {
    let required: Vec<&str> = node["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = node["properties"].as_object() else {
        return;
    };
    for (name, child) in props {
        let here = format!("{path}.{name}");
        let _ = writeln!(
            out,
            "| `{here}` | {} | {} | {} | {} |",
            type_of(child),
            if required.contains(&name.as_str()) {
                "yes"
            } else {
                ""
            },
            child
                .get("default")
                .map(|d| format!("`{d}`"))
                .unwrap_or_default(),
            describe(child)
        );
        rules_of(&here, child, rules);
        if child["type"] == "array" {
            let items = format!("{here}[]");
            rules_of(&items, &child["items"], rules);
            fields(out, &items, &child["items"], rules);
        } else {
            fields(out, &here, child, rules);
        }
    }
}

fn rules_of(path: &str, node: &Value, rules: &mut Vec<(String, String, String)>) {
    for r in node["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        rules.push((
            path.to_string(),
            r["rule"].as_str().unwrap_or_default().to_string(),
            r["message"].as_str().unwrap_or("(no message)").to_string(),
        ));
    }
}

fn type_of(node: &Value) -> String {
    match node["type"].as_str() {
        Some("array") => format!("array of {}", type_of(&node["items"])),
        Some("object") if node["additionalProperties"].is_object() => {
            format!("map of {}", type_of(&node["additionalProperties"]))
        }
        Some(t) => match node["format"].as_str() {
            Some(f) => format!("{t} ({f})"),
            None => t.to_string(),
        },
        None if node["x-kubernetes-preserve-unknown-fields"] == true => "any".into(),
        None if node["x-kubernetes-int-or-string"] == true => "integer or string".into(),
        None => "object".into(),
    }
}

fn describe(node: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(d) = node["description"].as_str() {
        parts.push(one_line(d));
    }
    let inner = if node["type"] == "array" {
        &node["items"]
    } else {
        node
    };
    if let Some(e) = inner["enum"].as_array() {
        let values: Vec<String> = e
            .iter()
            .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
            .collect();
        parts.push(format!("One of {}.", values.join(", ")));
    }
    parts.extend(limits(node, ""));
    if !std::ptr::eq(inner, node) {
        parts.extend(limits(inner, "Each entry: "));
    }
    parts.join(" ").replace('|', "\\|")
}

fn limits(node: &Value, prefix: &str) -> Vec<String> {
    [
        ("pattern", "Pattern"),
        ("minLength", "Min length"),
        ("maxLength", "Max length"),
        ("minimum", "Minimum"),
        ("maximum", "Maximum"),
        ("minItems", "Min items"),
        ("maxItems", "Max items"),
    ]
    .into_iter()
    .filter_map(|(key, label)| {
        let v = node.get(key)?;
        let v = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        Some(format!("{prefix}{label} `{v}`."))
    })
    .collect()
}

/// Descriptions on one line (a table cell holds no newline).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The example manifest of a kind under `examples/`: `SqlIpBlock` → `sql-ip-block.yaml`
/// (an approval names one live object, so it has none).
pub fn example(kind: &str) -> Option<String> {
    match kind {
        "ContainmentPolicy" => return Some("policy/containment-demo.yaml".into()),
        "ContainmentApproval" => return None,
        _ => {}
    }
    let mut out = String::new();
    for (i, c) in kind.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    Some(out + ".yaml")
}
