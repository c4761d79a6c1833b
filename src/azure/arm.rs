//! The ARM REST client: tokens, the per-subscription limiter, jittered retries, error mapping,
//! long-running-operation polling, request and correlation ids, and metrics.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use serde_json::Value;

use super::error::{AzureError, Class, parse_error_body};
use super::limiter::{Limiter, OpClass};
use super::resource_id::{operation_label, subscription_of};
use crate::metrics::{Metrics, OpStatus};

pub const USER_AGENT: &str = concat!("containment-operator/", env!("CARGO_PKG_VERSION"));

/// One ARM request.
#[derive(Debug, Clone)]
pub struct ArmRequest<'a> {
    pub method: &'a str,
    /// An ARM path (`/subscriptions/…`) or an absolute operation URL from Azure.
    pub path: &'a str,
    pub api_version: Option<&'a str>,
    pub body: Option<&'a Value>,
    /// False for actions that create something new each time (regenerateKey): then a 5xx or a
    /// lost answer is not retried blindly; the caller re-reads evidence first.
    pub idempotent: bool,
}

/// A successful answer.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub request_id: Option<String>,
    pub correlation_id: Option<String>,
    /// The long-running operation this answer started, in whichever shape Azure announced it.
    pub operation: Option<Operation>,
    pub retry_after: Option<Duration>,
}

/// Non-terminal operation statuses (ARM's `Accepted`/`InProgress`/`Running`, and the
/// provisioning states some resource providers report while they work).
const RUNNING: &[&str] = &[
    "InProgress",
    "Running",
    "Accepted",
    "NotStarted",
    "Enqueued",
    "Creating",
    "Updating",
    "Deleting",
    "Provisioning",
];

/// How a long-running operation is followed; persisted with its URL so a restart polls the
/// same way (`../shared/azure-api-facts.md` §2.3).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub enum OperationVia {
    /// The `Azure-AsyncOperation` URL: `{"status": …, "error": …}` until terminal.
    AzureAsyncOperation,
    /// The `Location` URL: 202 while running, then 200/204, or the operation's error.
    Location,
    /// No header: the resource itself, until its `provisioningState` is terminal.
    ProvisioningState,
}

/// A long-running operation to follow.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub url: String,
    pub via: OperationVia,
}

/// The operation an answer announces: `Azure-AsyncOperation` on any 2xx (some services answer
/// 200 with it), else `Location` on 201/202, else for a PUT/PATCH a 202, or a non-terminal
/// `provisioningState` in the body, means the resource itself is to be polled.
fn operation_of(
    method: &str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    url: &str,
) -> Option<Operation> {
    if let Some(url) = header(headers, "azure-asyncoperation") {
        return Some(Operation {
            url,
            via: OperationVia::AzureAsyncOperation,
        });
    }
    if let Some(url) = header(headers, "location").filter(|_| matches!(status, 201 | 202)) {
        return Some(Operation {
            url,
            via: OperationVia::Location,
        });
    }
    let running = body["properties"]["provisioningState"]
        .as_str()
        .is_some_and(is_running);
    (matches!(method, "PUT" | "PATCH") && (status == 202 || running)).then(|| Operation {
        url: url.to_string(),
        via: OperationVia::ProvisioningState,
    })
}

fn is_running(status: &str) -> bool {
    RUNNING.iter().any(|r| r.eq_ignore_ascii_case(status))
}

/// The state of a long-running operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    Running(Duration),
    Done,
}

pub struct Arm {
    http: reqwest::Client,
    base: String,
    scope: String,
    tenant: String,
    cred: Arc<dyn TokenCredential>,
    limiter: Arc<Limiter>,
    metrics: Arc<Metrics>,
    max_attempts: u32,
    /// The service in metric labels of paths without an ARM provider (`graph`, `mde`).
    service: &'static str,
    /// Closed when this replica may no longer hold the leader lease: no write leaves then.
    write_fence: Option<Arc<std::sync::atomic::AtomicBool>>,
}

fn random_id() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s).min(super::limiter::MAX_RETRY_AFTER))
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Backoff for the n-th retry (1-based): 0.5 s doubling to 8 s, with ±25 % jitter.
pub fn backoff(n: u32) -> Duration {
    let base = 0.5 * 2f64.powi(n.saturating_sub(1).min(4) as i32);
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    Duration::from_secs_f64(base * jitter)
}

impl Arm {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        audience: &str,
        tenant: &str,
        cred: Arc<dyn TokenCredential>,
        limiter: Arc<Limiter>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            scope: format!("{}/.default", audience.trim_end_matches('/')),
            tenant: tenant.to_string(),
            cred,
            limiter,
            metrics,
            max_attempts: 5,
            service: "",
            write_fence: None,
        }
    }

    /// Name the service in the metric labels of its requests (`graph`, `mde`).
    pub fn labelled(mut self, service: &'static str) -> Self {
        self.service = service;
        self
    }

    /// Refuse every write once `fence` is closed (leadership may have passed to another replica).
    pub fn with_write_fence(mut self, fence: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.write_fence = Some(fence);
        self
    }

    fn fenced(&self, class: OpClass) -> bool {
        class != OpClass::Read
            && self
                .write_fence
                .as_ref()
                .is_some_and(|f| f.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn url(&self, path: &str, api_version: Option<&str>) -> Result<String, AzureError> {
        if path.starts_with("https://") || path.starts_with("http://") {
            // Operation URLs come from Azure; never send our token to another host.
            if !path.starts_with(&format!("{}/", self.base)) {
                return Err(AzureError::Config(format!(
                    "refusing to poll an operation URL outside {}: {path}",
                    self.base
                )));
            }
            return Ok(path.to_string());
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        Ok(match api_version {
            Some(v) => format!("{}{path}{sep}api-version={v}", self.base),
            None => format!("{}{path}", self.base),
        })
    }

    fn limiter_scope(&self, path: &str) -> String {
        let p = path.strip_prefix(&self.base).unwrap_or(path);
        format!("{}/{}", self.tenant, subscription_of(p).unwrap_or("-"))
    }

    async fn token(&self) -> Result<String, AzureError> {
        let t = self
            .cred
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| AzureError::Auth {
                scope: self.scope.clone(),
                detail: e.to_string(),
                transient: super::error::token_error_is_transient(&e),
            })?;
        Ok(t.token.secret().to_string())
    }

    /// The operator's own identity as its access token names it: (`appid` or `azp`, `oid`).
    /// The token is the operator's own, fresh from Entra, so its payload is read unverified.
    pub async fn own_identity(&self) -> Result<(String, String), AzureError> {
        use base64::Engine as _;
        let token = self.token().await?;
        let claims: Value = token
            .split('.')
            .nth(1)
            .and_then(|p| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p.trim_end_matches('='))
                    .ok()
            })
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let text = |k: &str| claims[k].as_str().unwrap_or_default().to_string();
        let app = Some(text("appid"))
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| text("azp"));
        Ok((app, text("oid")))
    }

    /// Send one request, waiting for the limiter and retrying throttling and transient failures.
    pub async fn call(&self, r: &ArmRequest<'_>) -> Result<Reply, AzureError> {
        let url = self.url(r.path, r.api_version)?;
        let class = OpClass::of(r.method);
        let scope = self.limiter_scope(r.path);
        let operation = operation_label(self.service, r.method, r.path);
        let method = reqwest::Method::from_bytes(r.method.as_bytes())
            .map_err(|e| AzureError::Config(e.to_string()))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.limiter.acquire(&scope, class).await;
            if self.fenced(class) {
                return Err(AzureError::Config(
                    "this replica may have lost the leader lease: Azure writes are stopped".into(),
                ));
            }
            let token = self.token().await?;
            let correlation = random_id();
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token)
                .header("x-ms-client-request-id", random_id())
                .header("x-ms-correlation-request-id", &correlation);
            match r.body {
                Some(b) => req = req.json(b),
                // ARM answers 411 to a body-less write without a length (azure-sdk-for-rust#166).
                None if class != OpClass::Read => {
                    req = req.header(reqwest::header::CONTENT_LENGTH, "0");
                }
                None => {}
            }
            if class != OpClass::Read {
                self.metrics.azure_writes.inc();
            }
            let res = match req.send().await {
                Ok(res) => res,
                Err(e) => {
                    self.count(&operation, "transport");
                    let err = AzureError::Transport {
                        request: format!("{} {}", r.method, r.path),
                        detail: e.to_string(),
                    };
                    // A lost answer to a non-idempotent action may have taken effect: stop.
                    if attempt < self.max_attempts && (r.idempotent || e.is_connect()) {
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = res.status().as_u16();
            self.count(&operation, &status.to_string());
            let headers = res.headers().clone();
            if let Some(rem) =
                header(&headers, class.remaining_header()).and_then(|v| v.parse::<f64>().ok())
            {
                self.limiter.observe_remaining(&scope, class, rem);
            }
            let bytes = res.bytes().await.unwrap_or_default();
            let request_id = header(&headers, "x-ms-request-id");
            if (200..300).contains(&status) {
                let body = if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).map_err(|e| AzureError::Decode {
                        path: r.path.into(),
                        detail: e.to_string(),
                    })?
                };
                let operation = operation_of(r.method, status, &headers, &body, &url);
                return Ok(Reply {
                    status,
                    body,
                    request_id,
                    correlation_id: header(&headers, "x-ms-correlation-request-id")
                        .or(Some(correlation)),
                    operation,
                    retry_after: retry_after(&headers),
                });
            }
            let (code, message) = parse_error_body(status, &bytes);
            let err = AzureError::Api {
                status,
                code,
                message,
                request: format!("{} {}", r.method, r.path),
                retry_after: retry_after(&headers),
                request_id,
            };
            match err.class() {
                Class::Throttled(after) => {
                    self.metrics.azure_throttled.inc();
                    // The whole bucket waits, not just this caller: no 429 storm.
                    self.limiter
                        .block_for(&scope, class, after.unwrap_or(Duration::from_secs(5)));
                    if attempt < self.max_attempts {
                        continue;
                    }
                }
                Class::Transient
                    if attempt < self.max_attempts && (r.idempotent || status < 500) =>
                {
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                _ => {}
            }
            return Err(err);
        }
    }

    fn count(&self, operation: &str, status: &str) {
        self.metrics
            .azure_requests
            .get_or_create(&OpStatus {
                operation: operation.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// GET; an empty `api_version` sends none (Defender for Endpoint is not versioned).
    pub async fn get(&self, path: &str, api_version: &str) -> Result<Value, AzureError> {
        Ok(self
            .call(&ArmRequest {
                method: "GET",
                path,
                api_version: (!api_version.is_empty()).then_some(api_version),
                body: None,
                idempotent: true,
            })
            .await?
            .body)
    }

    /// `get`, with a 404 as `None`: for resources that may not exist (yet).
    pub async fn find(&self, path: &str, api_version: &str) -> Result<Option<Value>, AzureError> {
        match self.get(path, api_version).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A pageable list, following `nextLink` (ARM) or `@odata.nextLink` (Graph, Defender for
    /// Endpoint).
    pub async fn list(&self, path: &str, api_version: &str) -> Result<Vec<Value>, AzureError> {
        let mut out = Vec::new();
        let mut page = self.get(path, api_version).await?;
        loop {
            if let Some(items) = page["value"].as_array() {
                out.extend(items.iter().cloned());
            }
            match page["nextLink"]
                .as_str()
                .or_else(|| page["@odata.nextLink"].as_str())
            {
                Some(next) if !next.is_empty() => {
                    let next = next.to_string();
                    page = self
                        .call(&ArmRequest {
                            method: "GET",
                            path: &next,
                            api_version: None,
                            body: None,
                            idempotent: true,
                        })
                        .await?
                        .body;
                }
                _ => return Ok(out),
            }
        }
    }

    /// One poll of a long-running operation, the way it was announced (`None`: persisted by a
    /// version that did not record it; read as an `Azure-AsyncOperation` or `Location` URL).
    pub async fn poll(&self, url: &str, via: Option<OperationVia>) -> Result<Poll, AzureError> {
        let reply = match self
            .call(&ArmRequest {
                method: "GET",
                path: url,
                api_version: None,
                body: None,
                idempotent: true,
            })
            .await
        {
            Err(e) if via == Some(OperationVia::Location) => return Err(location_failure(e)),
            r => r?,
        };
        let wait = reply.retry_after.unwrap_or(Duration::from_secs(10));
        if reply.status == 202 {
            return Ok(Poll::Running(wait));
        }
        let (status, error) = match via {
            Some(OperationVia::Location) => return Ok(Poll::Done),
            Some(OperationVia::ProvisioningState) => (
                reply.body["properties"]["provisioningState"].as_str(),
                &Value::Null,
            ),
            Some(OperationVia::AzureAsyncOperation) | None => {
                (reply.body["status"].as_str(), &reply.body["error"])
            }
        };
        match status {
            None | Some("Succeeded") => Ok(Poll::Done),
            Some(s @ ("Failed" | "Canceled")) => Err(AzureError::Operation {
                status: s.to_string(),
                code: error["code"].as_str().map_or_else(
                    || match via {
                        Some(OperationVia::ProvisioningState) => "ProvisioningFailed".into(),
                        _ => s.to_string(),
                    },
                    str::to_string,
                ),
                message: error["message"]
                    .as_str()
                    .map_or_else(|| format!("the operation ended {s}"), str::to_string),
            }),
            Some(s) if is_running(s) => Ok(Poll::Running(wait)),
            // Polling a status nobody documents would never end: stop and say so.
            Some(other) => Err(AzureError::Decode {
                path: url.split('?').next().unwrap_or(url).to_string(),
                detail: format!("long-running operation status {other:?} is not a documented one"),
            }),
        }
    }
}

/// A `Location` URL answers a failed operation with the operation's own error (a 4xx): that is
/// the operation's outcome, not a failed poll. 404 (the operation is unknown), timeouts,
/// throttling and 5xx stay errors of the poll, to be retried.
fn location_failure(e: AzureError) -> AzureError {
    match e {
        AzureError::Api {
            status,
            code,
            message,
            ..
        } if (400..500).contains(&status) && !matches!(status, 404 | 408 | 429) => {
            AzureError::Operation {
                status: "Failed".into(),
                code,
                message,
            }
        }
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..50 {
            let b1 = backoff(1).as_secs_f64();
            assert!((0.375..=0.625).contains(&b1), "{b1}");
            let b9 = backoff(9).as_secs_f64();
            assert!((6.0..=10.0).contains(&b9), "{b9}");
        }
    }

    #[test]
    fn ids_look_like_guids() {
        let id = random_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }
}
