//! Prometheus metrics, and the `/metrics`, `/healthz`, `/readyz` endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindResult {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindReason {
    pub kind: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpStatus {
    pub operation: String,
    pub status: String,
}

/// One condition of one containment: what `containment_resource_conditions` counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub kind: String,
    pub namespace: String,
    /// `Ready`, `Reconciling` or `Stalled`.
    pub condition: String,
    /// `True`, `False` or `Unknown` (no condition written yet).
    pub status: String,
    pub reason: String,
}

/// A kind's watch cache, read at scrape time: the conditions of every resource it holds.
pub type ConditionSource = Box<dyn Fn() -> Vec<ConditionLabels> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<KindResult, Counter>,
    pub errors: Family<KindReason, Counter>,
    pub azure_requests: Family<OpStatus, Counter>,
    pub azure_throttled: Counter,
    pub azure_writes: Counter,
    pub drifts: Family<KindLabel, Counter>,
    /// Containments the guard refused, by kind and reason (OutOfScope, Protected,
    /// BlastRadiusExceeded).
    pub guard_denials: Family<KindReason, Counter>,
    pub reconcile_duration: Family<KindLabel, Histogram>,
    pub in_flight: Gauge,
    /// 1 while this replica acts: it holds the leader lease, or leader election is off.
    pub leader: Gauge,
    /// Containments by kind, namespace and condition, recounted from the watch caches at every
    /// scrape (so deleted resources vanish and nothing drifts from the API server's truth).
    conditions: Family<ConditionLabels, Gauge>,
    condition_sources: std::sync::Mutex<Vec<ConditionSource>>,
    pub ready: AtomicBool,
    /// Controllers started whose watch cache is not complete yet (`/readyz` waits for them).
    unsynced: std::sync::atomic::AtomicUsize,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("containment");
        let reconciles = Family::<KindResult, Counter>::default();
        let errors = Family::<KindReason, Counter>::default();
        let azure_requests = Family::<OpStatus, Counter>::default();
        let azure_throttled = Counter::default();
        let azure_writes = Counter::default();
        let drifts = Family::<KindLabel, Counter>::default();
        let guard_denials = Family::<KindReason, Counter>::default();
        let reconcile_duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let in_flight = Gauge::default();
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica acts on containments (it holds the leader lease, or leader election is off)",
            leader.clone(),
        );
        let conditions = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "resource_conditions",
            "Containments by kind, namespace and condition (Ready, Reconciling, Stalled) with status and reason",
            conditions.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by kind and reason",
            errors.clone(),
        );
        registry.register(
            "azure_requests",
            "Azure requests by operation (method and resource type) and HTTP status",
            azure_requests.clone(),
        );
        registry.register(
            "azure_throttled",
            "Azure 429 responses",
            azure_throttled.clone(),
        );
        registry.register(
            "azure_writes",
            "Azure write requests sent",
            azure_writes.clone(),
        );
        registry.register(
            "guard_denials",
            "Containments refused by the guard (scope, protection, blast radius) by kind and reason",
            guard_denials.clone(),
        );
        registry.register(
            "drifts",
            "Containments found undone and re-applied",
            drifts.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            reconcile_duration.clone(),
        );
        registry.register(
            "queue_depth",
            "Reconciles in progress or waiting for an Azure rate-limit token",
            in_flight.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            azure_requests,
            azure_throttled,
            azure_writes,
            drifts,
            guard_denials,
            reconcile_duration,
            in_flight,
            leader,
            conditions,
            condition_sources: Default::default(),
            ready: AtomicBool::new(false),
            unsynced: Default::default(),
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        // Held until encoded: a concurrent scrape must not recount in between.
        let _counted = self.recount_conditions();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Metrics {
    /// Count this kind's resources by condition at every scrape.
    pub fn count_conditions(&self, source: ConditionSource) {
        if let Ok(mut s) = self.condition_sources.lock() {
            s.push(source);
        }
    }

    fn recount_conditions(&self) -> Option<std::sync::MutexGuard<'_, Vec<ConditionSource>>> {
        let sources = self.condition_sources.lock().ok()?;
        self.conditions.clear();
        for labels in sources.iter().flat_map(|source| source()) {
            self.conditions.get_or_create(&labels).inc();
        }
        Some(sources)
    }

    /// Controllers are about to start: not ready until each has synced its cache.
    pub fn controllers_starting(&self, n: usize) {
        self.unsynced.fetch_add(n, Ordering::SeqCst);
    }

    pub fn cache_synced(&self) {
        let _ = self
            .unsynced
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.unsynced.load(Ordering::SeqCst) == 0
    }
}

fn respond(m: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (status, body, ctype) = match path {
        "/metrics" => (
            StatusCode::OK,
            m.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/healthz" => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" if m.is_ready() => (StatusCode::OK, "ok\n".to_string(), "text/plain"),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready\n".to_string(),
            "text/plain",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n".to_string(),
            "text/plain",
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Bind the listener (so the caller learns the port) and serve in the background.
pub async fn serve(addr: SocketAddr, m: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let m = m.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let m = m.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&m, req.uri().path())) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    Ok(local)
}
