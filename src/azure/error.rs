//! Azure errors, classified the way the engine needs them: wait, retry, or stop and ask a human.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// ARM (or Graph / MDE) answered with an error status and envelope.
    #[error("{request}: HTTP {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// `METHOD path`.
        request: String,
        retry_after: Option<Duration>,
        request_id: Option<String>,
    },
    /// The request never got an HTTP answer (connect, TLS, timeout).
    #[error("{request}: {detail}")]
    Transport { request: String, detail: String },
    /// No token could be obtained (wrong secret, federation mismatch, token endpoint down).
    #[error("could not get an access token for {scope}: {detail}")]
    Auth {
        scope: String,
        detail: String,
        /// Entra did not refuse: its endpoint was unreachable or answered 5xx/429. A short
        /// outage must not stall every containment.
        transient: bool,
    },
    /// A long-running operation ended Failed or Canceled.
    #[error("long-running operation ended {status}: {code}: {message}")]
    Operation {
        status: String,
        code: String,
        message: String,
    },
    /// A 2xx answer whose body was not what the API documents.
    #[error("unexpected response from {path}: {detail}")]
    Decode { path: String, detail: String },
    /// Configuration the operator refuses to use (e.g. an LRO URL on another host).
    #[error("{0}")]
    Config(String),
}

/// What the engine does with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Throttled: wait (at least) this long, then retry; not a failure.
    Throttled(Option<Duration>),
    /// Retry with backoff (5xx, conflicts, transport, busy resource).
    Transient,
    /// Needs a human: Stalled with this reason.
    Permanent,
}

/// 409 codes that mean "someone else is writing right now", not a real conflict.
const BUSY_409: &[&str] = &[
    "Conflict",
    "AnotherOperationInProgress",
    "ConflictingServerOperation",
    "UpsertLogicalServerRequestAlreadyInProgress",
    "OperationInterrupted",
];

/// 400 codes that clear on their own once another containment on the same resource settles.
/// `SecurityRuleConflict`: another rule took the priority between our read and our write; the
/// re-read picks a free one.
const SETTLES_400: &[&str] = &["DenyPublicEndpointEnabled", "SecurityRuleConflict"];

/// Whether a failure to get a token is Entra's passing trouble (retry) rather than a refusal
/// (wrong secret, unknown app, federation mismatch: Entra's own `AADSTS` codes and 4xx answers).
pub fn token_error_is_transient(e: &azure_core::Error) -> bool {
    use azure_core::error::ErrorKind;
    let mut text = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(&s.to_string());
        src = s.source();
    }
    if text.contains("AADSTS") || text.contains("invalid_client") || text.contains("invalid_grant")
    {
        return false;
    }
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => {
            let s = u16::from(*status);
            s == 408 || s == 429 || s >= 500
        }
        ErrorKind::Connection | ErrorKind::Io => true,
        // A status in the text (the credential wraps the token endpoint's answer).
        _ => !["400", "401", "403"].iter().any(|c| text.contains(c)),
    }
}

/// Long-running-operation error codes that mean "Azure had a passing problem; try again".
const TRANSIENT_OPERATION: &[&str] = &[
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
    "GatewayTimeout",
    "OperationTimedOut",
    "OperationTimeout",
    "RetryableError",
    "TooManyRequests",
    "AnotherOperationInProgress",
    "Conflict",
];

impl AzureError {
    /// A non-idempotent call that ended this way may still have been carried out by Azure: the
    /// answer was lost, or the gateway gave up waiting for the resource provider (504), which
    /// may still finish. Any other answer, 5xx included, is Azure saying it failed.
    pub fn may_have_taken_effect(&self) -> bool {
        match self {
            AzureError::Transport { .. } => true,
            AzureError::Api { status, .. } => *status == 504,
            _ => false,
        }
    }

    pub fn class(&self) -> Class {
        match self {
            AzureError::Api {
                status,
                code,
                message,
                retry_after,
                ..
            } => match *status {
                // A Network RP 429 that means "resource busy" must not slow the whole subscription.
                429 if code == "RetryableErrorDueToAnotherOperation" => Class::Transient,
                429 => Class::Throttled(*retry_after),
                408 | 412 | 500..=599 => Class::Transient,
                409 if BUSY_409.contains(&code.as_str()) => Class::Transient,
                400 if SETTLES_400.contains(&code.as_str()) => Class::Transient,
                // Defender for Endpoint: another machine action is pending on the device. The
                // docs give the message, not a stable code: re-list the actions and wait.
                400 if message.to_ascii_lowercase().contains("already in progress") => {
                    Class::Transient
                }
                _ => Class::Permanent,
            },
            AzureError::Transport { .. } => Class::Transient,
            // The change was not applied. Re-planning and re-sending is safe for our writes
            // (idempotent PATCH/PUT; one-shot POSTs are guarded by the ledger), but only worth it
            // when the failure is Azure's own and passing; any other code needs a human.
            AzureError::Operation { status, code, .. } => {
                if status == "Canceled" || TRANSIENT_OPERATION.contains(&code.as_str()) {
                    Class::Transient
                } else {
                    Class::Permanent
                }
            }
            AzureError::Auth {
                transient: true, ..
            } => Class::Transient,
            AzureError::Auth { .. } | AzureError::Decode { .. } | AzureError::Config(_) => {
                Class::Permanent
            }
        }
    }

    /// The stable CamelCase reason for conditions and metrics: the Azure error code when there
    /// is one.
    pub fn reason(&self) -> String {
        match self {
            // Graph and Defender for Endpoint say Forbidden / Authorization_RequestDenied where
            // ARM says AuthorizationFailed: one stable reason for "a permission is missing".
            AzureError::Api {
                status: 403, code, ..
            } if matches!(code.as_str(), "Forbidden" | "Authorization_RequestDenied") => {
                "AuthorizationFailed".into()
            }
            AzureError::Api { code, status, .. } => {
                if code.is_empty() {
                    format!("Http{status}")
                } else {
                    code.clone()
                }
            }
            AzureError::Transport { .. } => "AzureUnreachable".into(),
            AzureError::Auth { .. } => "AuthenticationFailed".into(),
            AzureError::Operation { code, .. } => {
                if code.is_empty() {
                    "OperationFailed".into()
                } else {
                    code.clone()
                }
            }
            AzureError::Decode { .. } => "UnexpectedResponse".into(),
            AzureError::Config(_) => "InvalidConfiguration".into(),
        }
    }

    /// A Kubernetes API error on a Secret the operator reads or writes for a kind. A 403 is the
    /// chart's `secretNamespaces` not covering the namespace: Stalled AuthorizationFailed, with
    /// the namespace named. Anything else is the API server being unavailable: retried.
    pub fn from_secret_access(e: kube::Error, request: String) -> AzureError {
        match e {
            kube::Error::Api(s) if s.code == 403 => AzureError::Api {
                status: 403,
                code: "Forbidden".into(),
                message: format!(
                    "the operator's service account may not do this; add the namespace to the \
                     chart's secretNamespaces ({})",
                    s.message
                ),
                request,
                retry_after: None,
                request_id: None,
            },
            other => AzureError::Transport {
                request,
                detail: other.to_string(),
            },
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            AzureError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The ARM error envelope, tolerant: every field optional, unknown fields ignored.
#[derive(Deserialize, Default)]
struct Envelope {
    #[serde(default)]
    error: Option<ErrorBody>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// (code, message) from an error body; falls back to the HTTP reason.
pub fn parse_error_body(status: u16, body: &[u8]) -> (String, String) {
    let env: Envelope = serde_json::from_slice(body).unwrap_or_default();
    let (code, message) = match env.error {
        Some(e) => (e.code, e.message),
        None => (env.code, env.message),
    };
    let fallback = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error");
    (
        code.unwrap_or_default(),
        message.unwrap_or_else(|| fallback.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> AzureError {
        AzureError::Api {
            status,
            code: code.into(),
            message: "m".into(),
            request: "GET /x".into(),
            retry_after: Some(Duration::from_secs(3)),
            request_id: None,
        }
    }

    #[test]
    fn classifies_arm_codes() {
        assert_eq!(
            api(429, "TooManyRequests").class(),
            Class::Throttled(Some(Duration::from_secs(3)))
        );
        assert_eq!(
            api(429, "RetryableErrorDueToAnotherOperation").class(),
            Class::Transient
        );
        assert_eq!(api(503, "ServiceUnavailable").class(), Class::Transient);
        assert_eq!(
            api(409, "AnotherOperationInProgress").class(),
            Class::Transient
        );
        assert_eq!(api(409, "ScopeLocked").class(), Class::Permanent);
        assert_eq!(api(403, "AuthorizationFailed").class(), Class::Permanent);
        assert_eq!(
            api(403, "AuthorizationFailed").reason(),
            "AuthorizationFailed"
        );
        assert_eq!(api(404, "").reason(), "Http404");
        let busy_device = AzureError::Api {
            status: 400,
            code: "ActiveRequestAlreadyExists".into(),
            message: "Action is already in progress".into(),
            request: "POST /api/machines/x/isolate".into(),
            retry_after: None,
            request_id: None,
        };
        assert_eq!(busy_device.class(), Class::Transient);
        assert_eq!(api(400, "InvalidRequestBody").class(), Class::Permanent);
        assert_eq!(api(403, "Forbidden").reason(), "AuthorizationFailed");
    }

    #[test]
    fn operation_failures_are_classified_by_code() {
        let op = |status: &str, code: &str| AzureError::Operation {
            status: status.into(),
            code: code.into(),
            message: "m".into(),
        };
        assert_eq!(
            op("Failed", "InternalServerError").class(),
            Class::Transient
        );
        assert_eq!(op("Canceled", "Canceled").class(), Class::Transient);
        // A failure that repeats on every retry must stall, not loop.
        assert_eq!(op("Failed", "BadRequest").class(), Class::Permanent);
        assert_eq!(op("Failed", "Failed").class(), Class::Permanent);
        assert_eq!(op("Failed", "BadRequest").reason(), "BadRequest");
    }

    #[test]
    fn token_failures_from_an_outage_are_retried() {
        use azure_core::error::{Error, ErrorKind};
        let refused = Error::with_message(
            ErrorKind::Credential,
            "ClientSecretCredential authentication failed: AADSTS7000215: Invalid client secret provided.",
        );
        assert!(!token_error_is_transient(&refused));
        let down = Error::with_message(ErrorKind::Connection, "connection refused");
        assert!(token_error_is_transient(&down));
        let auth = |transient| AzureError::Auth {
            scope: "s".into(),
            detail: "d".into(),
            transient,
        };
        assert_eq!(auth(true).class(), Class::Transient);
        assert_eq!(auth(false).class(), Class::Permanent);
    }

    #[test]
    fn which_failures_may_have_taken_effect() {
        assert!(api(504, "GatewayTimeout").may_have_taken_effect());
        assert!(!api(503, "ServiceUnavailable").may_have_taken_effect());
        assert!(!api(429, "TooManyRequests").may_have_taken_effect());
        assert!(!api(400, "BadRequest").may_have_taken_effect());
        let lost = AzureError::Transport {
            request: "POST /x".into(),
            detail: "connection reset".into(),
        };
        assert!(lost.may_have_taken_effect());
    }

    #[test]
    fn parses_nested_and_flat_envelopes() {
        let (c, m) = parse_error_body(
            403,
            br#"{"error":{"code":"AuthorizationFailed","message":"no","details":[{"code":"x"}]}}"#,
        );
        assert_eq!((c.as_str(), m.as_str()), ("AuthorizationFailed", "no"));
        let (c, m) = parse_error_body(400, br#"{"code":"BadRequest","message":"flat"}"#);
        assert_eq!((c.as_str(), m.as_str()), ("BadRequest", "flat"));
        let (c, m) = parse_error_body(502, b"<html>");
        assert_eq!((c.as_str(), m.as_str()), ("", "Bad Gateway"));
    }
}
