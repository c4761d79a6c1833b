//! `containment-operator run`: configuration, Azure and Kubernetes clients, leader election,
//! the metrics endpoint, and one controller per enabled kind.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use kube::Api;
use kube::runtime::WatchStreamExt;

use crate::azure::arm::USER_AGENT;
use crate::azure::auth::{self, CredentialConfig, CredentialKind};
use crate::azure::limiter::{BucketSpec, Limiter, LimiterConfig};
use crate::azure::{Arm, Clients};
use crate::engine::Ctx;
use crate::kinds;
use crate::metrics::Metrics;

/// A duration such as `300s`, `5m`, `1h30m` or `720h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 30s, 5m or 1h: {e}"))?;
    let d = Duration::try_from(d).map_err(|_| format!("{s:?} must not be negative"))?;
    if d.is_zero() {
        return Err(format!("{s:?} must be greater than zero"));
    }
    Ok(d)
}

fn parse_override(s: &str) -> Result<(String, Duration), String> {
    let (kind, d) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KIND=DURATION, e.g. SqlIpBlock=1m"))?;
    let info = kinds::select(&[kind.to_string()])?;
    Ok((info[0].kind.to_string(), parse_duration(d)?))
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Kinds to run, comma-separated (default: all).
    #[arg(long, env = "CONTAINMENT_KINDS", value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// How often each containment is re-read from Azure to catch drift (jittered ±10 %).
    #[arg(long, env = "DRIFT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub drift_interval: Duration,
    /// Per-kind drift interval, e.g. `SqlIpBlock=1m` (repeatable).
    #[arg(long = "drift-interval-for", value_parser = parse_override)]
    pub drift_interval_for: Vec<(String, Duration)>,
    /// Reconciles running at once per kind.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 64)]
    pub max_concurrent_reconciles: u16,

    /// Azure Resource Manager endpoint (sovereign clouds, the simulator).
    #[arg(
        long,
        env = "AZURE_ARM_ENDPOINT",
        default_value = "https://management.azure.com"
    )]
    pub arm_endpoint: String,
    /// Token audience for ARM.
    #[arg(
        long,
        env = "AZURE_ARM_AUDIENCE",
        default_value = "https://management.azure.com"
    )]
    pub arm_audience: String,
    /// Microsoft Graph endpoint (kinds that use Graph).
    #[arg(
        long,
        env = "AZURE_GRAPH_ENDPOINT",
        default_value = "https://graph.microsoft.com"
    )]
    pub graph_endpoint: String,
    /// Defender for Endpoint API endpoint (kinds that use MDE).
    #[arg(
        long,
        env = "AZURE_MDE_ENDPOINT",
        default_value = "https://api.securitycenter.microsoft.com"
    )]
    pub mde_endpoint: String,
    /// Token audience for Defender for Endpoint.
    #[arg(
        long,
        env = "AZURE_MDE_AUDIENCE",
        default_value = "https://api.securitycenter.microsoft.com"
    )]
    pub mde_audience: String,
    /// Token audience for Microsoft Graph.
    #[arg(
        long,
        env = "AZURE_GRAPH_AUDIENCE",
        default_value = "https://graph.microsoft.com"
    )]
    pub graph_audience: String,
    /// Entra ID authority host.
    #[arg(
        long,
        env = "AZURE_AUTHORITY_HOST",
        default_value = "https://login.microsoftonline.com"
    )]
    pub authority_host: String,
    /// Extra trusted CA bundle (PEM) for Azure endpoints.
    #[arg(long, env = "AZURE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Credential type. The client secret is read from AZURE_CLIENT_SECRET only.
    #[arg(long, env = "AZURE_CREDENTIAL", value_enum, default_value = "auto")]
    pub credential: CredentialKind,
    /// Default tenant.
    #[arg(long, env = "AZURE_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// More tenants the identity (a multi-tenant application) may act in, comma-separated:
    /// containments naming one in `spec.tenantId` get that tenant's tokens; any other tenant is
    /// Stalled/TenantNotConfigured.
    #[arg(long, env = "AZURE_ADDITIONAL_TENANTS", value_delimiter = ',')]
    pub additional_tenants: Vec<String>,
    /// Application (client) id, or the user-assigned managed identity's client id.
    #[arg(long, env = "AZURE_CLIENT_ID")]
    pub client_id: Option<String>,
    /// ARM read bucket per subscription, CAPACITY:PER_SECOND.
    #[arg(long, env = "ARM_READ_BUCKET", default_value = "250:25")]
    pub arm_read_bucket: BucketSpec,
    /// ARM write bucket per subscription, CAPACITY:PER_SECOND.
    #[arg(long, env = "ARM_WRITE_BUCKET", default_value = "200:10")]
    pub arm_write_bucket: BucketSpec,
    /// ARM delete bucket per subscription, CAPACITY:PER_SECOND.
    #[arg(long, env = "ARM_DELETE_BUCKET", default_value = "200:10")]
    pub arm_delete_bucket: BucketSpec,

    /// Elect one active replica through a Lease.
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    #[arg(long, env = "LEASE_NAME", default_value = "containment-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (default: POD_NAMESPACE, else --namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// The kill switch: while a ConfigMap of this name exists in the operator's namespace
    /// (POD_NAMESPACE, else --namespace, else `default`), no Azure call is started, releases
    /// included (`data.frozen: "false"` lifts it without deleting it).
    #[arg(
        long,
        env = "FREEZE_CONFIGMAP",
        default_value = "containment-operator-freeze"
    )]
    pub freeze_configmap: String,
    /// A file holding the secret (at least 32 bytes) that seals status.restore, status.action and
    /// status.policy, so that whoever can write a containment's status cannot forge what release
    /// or an action does (the chart mounts a generated Secret). Unset: records are not sealed.
    #[arg(long, env = "RESTORE_KEY_FILE")]
    pub restore_key_file: Option<PathBuf>,
    /// How long a one-shot call (e.g. regenerateKey) sent without an answer is given to show its
    /// effect in Azure before it is considered lost and sent again.
    #[arg(long, env = "UNCONFIRMED_ACTION_WAIT", default_value = "10m", value_parser = parse_duration)]
    pub unconfirmed_action_wait: Duration,
}

fn http_client(ca_file: Option<&PathBuf>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).with_context(|| format!("--ca-file {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--ca-file {}: not a PEM bundle", path.display()))?;
        if certs.is_empty() {
            bail!("--ca-file {}: no certificate in it", path.display());
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    Ok(b.build()?)
}

/// The Azure clients of one tenant: its own credential (tokens for that tenant) and limiters.
fn tenant_clients(
    args: &RunArgs,
    tenant: &str,
    http: &reqwest::Client,
    metrics: &Arc<Metrics>,
    write_fence: &Arc<std::sync::atomic::AtomicBool>,
    client: &kube::Client,
) -> anyhow::Result<Clients> {
    let tenant = tenant.to_string();
    let http = http.clone();
    let cred = auth::credential(
        &CredentialConfig {
            kind: args.credential,
            tenant_id: args.tenant_id.clone(),
            client_id: args.client_id.clone(),
            authority_host: args.authority_host.clone(),
        },
        if tenant.is_empty() {
            "organizations"
        } else {
            &tenant
        },
        &http,
    )
    .map_err(anyhow::Error::msg)?;
    let limiter = Arc::new(Limiter::new(LimiterConfig {
        read: args.arm_read_bucket,
        write: args.arm_write_bucket,
        delete: args.arm_delete_bucket,
    }));
    let arm = Arc::new(
        Arm::new(
            http.clone(),
            &args.arm_endpoint,
            &args.arm_audience,
            &tenant,
            cred.clone(),
            limiter,
            metrics.clone(),
        )
        .with_write_fence(write_fence.clone()),
    );
    // Defender for Endpoint: 100 calls per minute and 1,500 per hour per API (isolate,
    // machineactions, ...).
    let per_minute = |n: f64| BucketSpec {
        capacity: n,
        per_second: n / 60.0,
    };
    let per_hour = |n: f64| BucketSpec {
        capacity: n,
        per_second: n / 3600.0,
    };
    let mde = Arc::new(
        Arm::new(
            http.clone(),
            &args.mde_endpoint,
            &args.mde_audience,
            &tenant,
            cred.clone(),
            Arc::new(
                Limiter::new(LimiterConfig {
                    read: per_minute(100.0),
                    write: per_minute(100.0),
                    delete: per_minute(100.0),
                })
                .and_window(LimiterConfig {
                    read: per_hour(1500.0),
                    write: per_hour(1500.0),
                    delete: per_hour(1500.0),
                }),
            ),
            metrics.clone(),
        )
        .labelled("mde")
        .with_write_fence(write_fence.clone()),
    );
    // Graph security APIs: about 150 requests per minute per app and tenant.
    let graph = Arc::new(
        Arm::new(
            http,
            &args.graph_endpoint,
            &args.graph_audience,
            &tenant,
            cred,
            Arc::new(Limiter::new(LimiterConfig {
                read: per_minute(150.0),
                write: per_minute(150.0),
                delete: per_minute(150.0),
            })),
            metrics.clone(),
        )
        .labelled("graph")
        .with_write_fence(write_fence.clone()),
    );
    Ok(Clients {
        arm,
        mde,
        graph,
        kube: client.clone(),
    })
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let kinds = kinds::select(&args.kinds).map_err(anyhow::Error::msg)?;
    let metrics = Arc::new(Metrics::default());
    let addr = crate::metrics::serve(args.metrics_addr, metrics.clone())
        .await
        .with_context(|| format!("--metrics-addr {}", args.metrics_addr))?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");

    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    client
        .apiserver_version()
        .await
        .context("reading the Kubernetes API server version")?;

    let http = http_client(args.ca_file.as_ref())?;
    // Closed by the lease fence (leader election): every client refuses writes from then on.
    let write_fence = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let default_tenant = args.tenant_id.clone().unwrap_or_default();
    let az = tenant_clients(
        &args,
        &default_tenant,
        &http,
        &metrics,
        &write_fence,
        &client,
    )?;
    // A multi-tenant application: the same identity, tokens (and rate limits) per tenant.
    let mut tenants = HashMap::new();
    for t in &args.additional_tenants {
        if args.credential == CredentialKind::ManagedIdentity {
            bail!(
                "--additional-tenants {t}: a managed identity lives in one tenant; use workload identity or a client secret of a multi-tenant application"
            );
        }
        tenants.insert(
            t.to_ascii_lowercase(),
            tenant_clients(&args, t, &http, &metrics, &write_fence, &client)?,
        );
    }
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "containment-operator".into());
    let reporter = kube::runtime::events::Reporter {
        controller: "containment-operator".into(),
        instance: Some(identity.clone()),
    };
    let overrides: HashMap<String, Duration> = args.drift_interval_for.iter().cloned().collect();
    let guard = crate::guard::Guard::start(
        client.clone(),
        args.namespace.clone(),
        args.tenant_id.clone().unwrap_or_default(),
    )
    .await?;
    let mut cx = Ctx::new(
        client.clone(),
        az,
        metrics.clone(),
        reporter,
        args.drift_interval,
        overrides,
        guard.clone(),
    );
    cx.unconfirmed_wait = args.unconfirmed_action_wait;
    cx.tenants = tenants;
    cx.seal = restore_seal(args.restore_key_file.as_deref())?;
    let own_ns = args
        .lease_namespace
        .clone()
        .or(args.namespace.clone())
        .unwrap_or_else(|| "default".into());
    freeze_switch(
        Api::namespaced(client.clone(), &own_ns),
        args.freeze_configmap.clone(),
        cx.frozen.clone(),
    )
    .await?;
    let cx = Arc::new(cx);
    metrics.ready.store(true, Ordering::Relaxed);

    let mut leadership = None;
    if args.leader_elect {
        let ns = args
            .lease_namespace
            .clone()
            .or(args.namespace.clone())
            .unwrap_or_else(|| "default".into());
        let secs = args.lease_duration.as_secs().max(2);
        // One holder identity per process: the lease manager writes it, the fence checks it.
        let lease_identity = format!("{identity}-{}", std::process::id());
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.lease_name)
                .with_namespace(&ns)
                .with_identity(&lease_identity)
                .with_duration(secs)
                .with_grace((secs / 3).max(1))
                .build()
                .await
                .context("creating the leader-election lease manager")?;
        let (mut rx, task) = manager.watch().await;
        tracing::info!(lease = %args.lease_name, namespace = %ns, "waiting to become the leader");
        while !*rx.borrow_and_update() {
            rx.changed().await.context("leader election stopped")?;
        }
        tracing::info!("became the leader");
        let fence = tokio::spawn(lease_fence(
            client.clone(),
            ns.clone(),
            args.lease_name.clone(),
            lease_identity,
            Duration::from_secs(secs),
            Duration::from_secs((secs / 3).max(1)),
            write_fence.clone(),
        ));
        leadership = Some((rx, task, fence));
    }

    if args.namespace.is_none() {
        tokio::spawn(guard.publish_status(client.clone()));
    }
    // Only the leader (or the only replica) gets here; losing the lease ends the process.
    metrics.leader.set(1);
    let ns = args.namespace.clone();
    let n = args.max_concurrent_reconciles;
    let mut tasks = tokio::task::JoinSet::new();
    metrics.controllers_starting(kinds.len());
    for k in kinds {
        kinds::spawn(k.kind, &mut tasks, cx.clone(), ns.clone(), n).map_err(anyhow::Error::msg)?;
        tracing::info!(kind = k.kind, "controller started");
    }
    match leadership {
        Some((mut rx, _task, fence)) => {
            tokio::select! {
                lost = fence => {
                    bail!("{}", lost.map(|e| e.to_string()).unwrap_or_else(|e| e.to_string()));
                }
                r = async {
                    while let Some(ended) = tasks.join_next().await {
                        controller_ended(ended)?;
                    }
                    anyhow::Ok(())
                } => r?,
                _ = async {
                    loop {
                        if rx.changed().await.is_err() || !*rx.borrow() { break; }
                    }
                } => {
                    // Never act without the lease: stop, and let the restart wait for it.
                    bail!("lost the leader lease; exiting so that only the leader acts");
                }
            }
        }
        None => {
            while let Some(ended) = tasks.join_next().await {
                controller_ended(ended)?;
            }
        }
    }
    tracing::info!("controllers stopped");
    Ok(())
}

/// Azure writes stop once the lease may have passed to another replica: our last renewal is
/// older than the lease duration minus half the grace (the renewal is due a whole grace before
/// expiry, so half of it is left for a slow renewal and half for this check's own delay).
/// kube-lease-manager retries a failing renewal without telling its holder, so the holder
/// checks for itself. Returns why it fenced.
async fn lease_fence(
    client: kube::Client,
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
    grace: Duration,
    fence: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Error {
    use k8s_openapi::api::coordination::v1::Lease;
    let leases: kube::Api<Lease> = kube::Api::namespaced(client, &namespace);
    let usable = duration.saturating_sub(grace / 2);
    let mut valid_until = std::time::Instant::now() + usable;
    loop {
        tokio::time::sleep((grace / 4).max(Duration::from_millis(100))).await;
        if let Ok(lease) = leases.get(&name).await {
            let spec = lease.spec.unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(identity.as_str()) {
                fence.store(true, Ordering::SeqCst);
                return anyhow::anyhow!(
                    "the lease {namespace}/{name} is held by {:?} now: Azure writes stopped; exiting",
                    spec.holder_identity.unwrap_or_default()
                );
            }
            if let Some(renewed) = spec.renew_time {
                let age =
                    std::time::Duration::try_from(jiff::Timestamp::now().duration_since(renewed.0))
                        .unwrap_or_default();
                valid_until = std::time::Instant::now() + usable.saturating_sub(age);
            }
        }
        if std::time::Instant::now() >= valid_until {
            fence.store(true, Ordering::SeqCst);
            return anyhow::anyhow!(
                "the leader lease {namespace}/{name} was not renewed for {usable:?}: Azure writes stopped; exiting"
            );
        }
    }
}

/// A controller task ends on shutdown; a panic means that kind is no longer reconciled while
/// `/healthz` would still say ok: exit, so that Kubernetes restarts the pod.
fn controller_ended(r: Result<(), tokio::task::JoinError>) -> anyhow::Result<()> {
    r.map_err(|e| anyhow::anyhow!("a controller stopped unexpectedly ({e}); exiting"))
}

/// The seal of status records, from the key file (trailing whitespace ignored).
fn restore_seal(path: Option<&std::path::Path>) -> anyhow::Result<crate::engine::seal::Seal> {
    let Some(path) = path else {
        tracing::warn!(
            "no --restore-key-file: status records are not sealed, so whoever can write a containment's status can change what its release does"
        );
        return Ok(crate::engine::seal::Seal::new(None));
    };
    let raw = std::fs::read(path)
        .with_context(|| format!("reading --restore-key-file {}", path.display()))?;
    let key = raw.trim_ascii_end();
    if key.len() < 32 {
        bail!(
            "--restore-key-file {}: the key must be at least 32 bytes (it has {})",
            path.display(),
            key.len()
        );
    }
    Ok(crate::engine::seal::Seal::new(Some(key)))
}

/// Watches the kill-switch ConfigMap and keeps `frozen` in step with it. Returns once its state
/// is known (the controllers must not start before), or fails when it cannot be read: a kill
/// switch that silently does not work is worse than none.
async fn freeze_switch(
    api: Api<k8s_openapi::api::core::v1::ConfigMap>,
    name: String,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    use kube::runtime::watcher::{self, Event};
    let is_on = |cm: &k8s_openapi::api::core::v1::ConfigMap| {
        cm.data
            .as_ref()
            .and_then(|d| d.get("frozen"))
            .is_none_or(|v| v != "false")
    };
    let set = move |on: bool, frozen: &std::sync::atomic::AtomicBool| {
        if frozen.swap(on, Ordering::SeqCst) != on {
            if on {
                tracing::warn!("kill switch ON: no Azure call is started until it is lifted");
            } else {
                tracing::warn!("kill switch lifted: Azure calls resume");
            }
        }
    };
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    // The first outcome: its state is known, or the first read failed.
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let mut ready_tx = Some(ready_tx);
    let ns_name = name.clone();
    tokio::spawn(async move {
        let mut seen = false;
        while let Some(ev) = events.next().await {
            match ev {
                Ok(Event::Init) => seen = false,
                Ok(Event::InitApply(cm)) | Ok(Event::Apply(cm)) => {
                    seen = true;
                    set(is_on(&cm), &frozen);
                }
                Ok(Event::InitDone) => {
                    if !seen {
                        set(false, &frozen);
                    }
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                Ok(Event::Delete(_)) => set(false, &frozen),
                // A refusal before the state is known fails the start at once.
                Err(e) => match ready_tx.take() {
                    Some(tx) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                    None => {
                        tracing::warn!(configmap = %ns_name, error = %e, "watching the kill switch failed")
                    }
                },
            }
        }
    });
    let cannot = |why: String| {
        anyhow::anyhow!(
            "cannot read the kill-switch ConfigMap {name} ({why}; RBAC: get/list/watch configmaps with resourceNames [{name}] in the operator's namespace)"
        )
    };
    tokio::time::timeout(Duration::from_secs(30), ready_rx)
        .await
        .map_err(|_| cannot("no answer in 30 s".into()))?
        .context("kill-switch watch ended")?
        .map_err(cannot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("0s").is_err());
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        assert_eq!(
            parse_override("sqlipblock=1m").unwrap(),
            ("SqlIpBlock".into(), Duration::from_secs(60))
        );
        assert!(parse_override("SqlIpBlock").is_err());
    }
}
