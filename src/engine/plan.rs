//! What a control asks the engine to do: Azure requests (steps), shown verbatim in DryRun and
//! Observe, and executed in order in Enforce.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub method: &'static str,
    pub path: String,
    pub api_version: &'static str,
    pub body: Option<Value>,
    /// The answer may be 201/202 with an operation to poll.
    pub lro: bool,
    /// False for actions that create something new each time.
    pub idempotent: bool,
    /// For events and the audit line, e.g. "delete firewall rule AllowAll".
    pub what: String,
    /// Whole-object writes: the etag the plan was computed from. The engine re-reads the object
    /// just before sending and re-plans if someone else wrote it in between.
    pub expect_etag: Option<String>,
    /// The API the request goes to (ARM unless said otherwise).
    pub service: crate::azure::Service,
    /// Due once per run of an action, yet safe to repeat (e.g. setting the password the run
    /// generated): kept in the run's ledger like an action, so a done one is not planned
    /// again, but retried and re-sent freely since a repeat changes nothing.
    pub once: bool,
    /// Body fields holding a secret (top level or under `properties`; `*`: every value under
    /// `properties`): `status.plan` shows `<secret>` instead.
    pub secret_fields: &'static [&'static str],
}

impl Step {
    fn new(method: &'static str, path: String, api_version: &'static str) -> Self {
        Self {
            method,
            path,
            api_version,
            body: None,
            lro: false,
            idempotent: true,
            what: String::new(),
            expect_etag: None,
            service: crate::azure::Service::Arm,
            once: false,
            secret_fields: &[],
        }
    }

    pub fn put(path: String, api_version: &'static str, body: Value) -> Self {
        Self {
            body: Some(body),
            ..Self::new("PUT", path, api_version)
        }
    }

    pub fn patch(path: String, api_version: &'static str, body: Value) -> Self {
        Self {
            body: Some(body),
            ..Self::new("PATCH", path, api_version)
        }
    }

    pub fn delete(path: String, api_version: &'static str) -> Self {
        Self::new("DELETE", path, api_version)
    }

    /// A non-idempotent action (each call creates something new).
    pub fn action(path: String, api_version: &'static str, body: Option<Value>) -> Self {
        Self {
            body,
            idempotent: false,
            ..Self::new("POST", path, api_version)
        }
    }

    /// An action that is safe to repeat (e.g. setting an alert's state).
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// See [`Step::once`].
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    /// See [`Step::secret_fields`]: the fields are looked up under the body and its `properties`.
    pub fn secret(mut self, fields: &'static [&'static str]) -> Self {
        self.secret_fields = fields;
        self
    }

    /// Tracked in the run's ledger (sent before it leaves, done once Azure says so).
    pub fn tracked(&self) -> bool {
        !self.idempotent || self.once
    }

    pub fn on(mut self, service: crate::azure::Service) -> Self {
        self.service = service;
        self
    }

    pub fn lro(mut self) -> Self {
        self.lro = true;
        self
    }

    pub fn expect_etag(mut self, etag: Option<String>) -> Self {
        self.expect_etag = etag;
        self
    }

    pub fn what(mut self, what: impl Into<String>) -> Self {
        self.what = what.into();
        self
    }

    /// The exact request, as shown in `status.plan`.
    pub fn render(&self) -> String {
        let body = self
            .body
            .as_ref()
            .map(|b| {
                let mut b = b.clone();
                // Submitted file content is data, not plan: show its size only.
                if let Some(c) = b.get("fileContent").and_then(Value::as_str) {
                    b["fileContent"] = Value::String(format!("<{} base64 characters>", c.len()));
                }
                for f in self.secret_fields {
                    if *f == "*"
                        && let Some(p) = b.get_mut("properties").and_then(Value::as_object_mut)
                    {
                        p.values_mut()
                            .for_each(|v| *v = Value::String("<secret>".into()));
                    }
                    for at in ["", "/properties"] {
                        if let Some(v) = b.pointer_mut(&format!("{at}/{f}")) {
                            *v = Value::String("<secret>".into());
                        }
                    }
                }
                format!(" {b}")
            })
            .unwrap_or_default();
        if self.api_version.is_empty() {
            return format!("{} {}{body}", self.method, self.path);
        }
        format!(
            "{} {}?api-version={}{body}",
            self.method, self.path, self.api_version
        )
    }
}

/// The outcome of comparing desired and observed state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    /// Empty when compliant.
    pub steps: Vec<Step>,
    /// Compliance summary (Ready message), or what is out of compliance.
    pub message: String,
    /// The restore record to keep in status before any write (replaces the previous one).
    pub record: Option<Value>,
    /// Kind-specific status fields.
    pub extra: Map<String, Value>,
    /// Nothing to send now, but not done either: something else is in progress on the target
    /// (e.g. a machine action); the engine reports Reconciling and re-checks.
    pub wait: Option<Wait>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wait {
    /// Reconciling reason, e.g. `AwaitingMachineAction`.
    pub reason: String,
    pub message: String,
    pub recheck: std::time::Duration,
}

/// Cannot proceed without a human: becomes Stalled with this reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    pub reason: String,
    pub message: String,
    /// Kind-specific status fields that explain it (e.g. a failed script's output summary).
    pub extra: Map<String, Value>,
}

impl Stall {
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
            extra: Map::new(),
        }
    }

    pub fn with_extra(mut self, extra: Map<String, Value>) -> Self {
        self.extra = extra;
        self
    }
}
