//! Request/response types shared by every API the simulator serves.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

#[derive(Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    /// Query parameters; keys as sent.
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, matching the name case-insensitively (ARM does).
    pub fn query_ci(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Result<Value, Resp> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            Resp::arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                &format!("The request content was invalid and could not be deserialized: {e}"),
            )
        })
    }

    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization").and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
    }
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Option<Bytes>,
    pub content_type: &'static str,
}

impl Resp {
    pub fn json(status: StatusCode, body: &Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(Bytes::from(body.to_string())),
            content_type: "application/json; charset=utf-8",
        }
    }

    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
            content_type: "application/json; charset=utf-8",
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The ARM error envelope `{"error":{"code","message"}}`.
    pub fn arm_error(status: StatusCode, code: &str, message: &str) -> Self {
        Self::json(
            status,
            &json!({"error": {"code": code, "message": message}}),
        )
    }

    pub fn not_found(id: &str) -> Self {
        Self::arm_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("The Resource '{id}' was not found."),
        )
    }

    pub fn body_json(&self) -> Option<Value> {
        self.body
            .as_ref()
            .and_then(|b| serde_json::from_slice(b).ok())
    }
}

pub fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn guid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Parses `a eq 'x' and b eq 'y'` (the OData subset MDE and Graph clients use) into pairs.
pub fn parse_eq_filter(filter: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for clause in filter.split(" and ") {
        let (field, value) = clause
            .trim()
            .split_once(" eq ")
            .ok_or_else(|| format!("unsupported $filter clause: {clause}"))?;
        let value = value.trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(value);
        out.push((field.trim().to_string(), value.to_string()));
    }
    Ok(out)
}

/// One page of an OData collection, as Graph and Defender for Endpoint serve lists: at most
/// `page_size` items in `value`, and an absolute `@odata.nextLink` (same query, `$skiptoken`
/// holding the offset) while more remain. `body` carries other fields (`@odata.context`).
pub fn odata_page(
    base: &str,
    req: &Req,
    items: Vec<Value>,
    page_size: usize,
    mut body: serde_json::Map<String, Value>,
) -> Resp {
    let page_size = page_size.max(1);
    let skip: usize = req
        .query
        .get("$skiptoken")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(skip).take(page_size).collect();
    if skip + page.len() < total {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        let mut keys: Vec<&String> = req.query.keys().filter(|k| *k != "$skiptoken").collect();
        keys.sort();
        for k in keys {
            q.append_pair(k, &req.query[k]);
        }
        q.append_pair("$skiptoken", &(skip + page.len()).to_string());
        body.insert(
            "@odata.nextLink".into(),
            Value::String(format!("{base}{}?{}", req.path, q.finish())),
        );
    }
    body.insert("value".into(), Value::Array(page));
    Resp::json(StatusCode::OK, &Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(
            &mut t,
            &json!({"b": {"c": null, "x": 9}, "e": [2, 3], "f": "n"}),
        );
        assert_eq!(
            t,
            json!({"a": 1, "b": {"d": 3, "x": 9}, "e": [2, 3], "f": "n"})
        );
    }

    #[test]
    fn filter_parsing() {
        assert_eq!(
            parse_eq_filter("machineId eq 'm1' and type eq 'Isolate'").unwrap(),
            vec![
                ("machineId".into(), "m1".into()),
                ("type".into(), "Isolate".into())
            ]
        );
        assert!(parse_eq_filter("startswith(name,'x')").is_err());
    }

    #[test]
    fn guids_are_v4_shaped() {
        let g = guid();
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
    }
}
