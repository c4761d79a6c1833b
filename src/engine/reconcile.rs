//! The generic reconcile loop shared by every kind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalize, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Map, Value};

mod apply;

use super::composition::{self, OnTarget};
use super::conditions::{self, State};
use super::ledger::{self, Unconfirmed};
use super::{Control, Ctx, FIELD_MANAGER, FINALIZER, Kind, RunError, Step, audit};
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::azure::{ArmRequest, AzureError, Class, Poll, ResourceId};
use crate::guard;
use crate::metrics::{ConditionLabels, KindLabel, KindReason, KindResult};
use apply::apply;

struct Shared<C: Control> {
    control: C,
    cx: Arc<Ctx>,
    /// The watch cache of this kind.
    store: reflector::Store<C::K>,
    /// Reconcile these now (peers on a target one of them just left).
    wake: futures::channel::mpsc::UnboundedSender<ObjectRef<C::K>>,
}

/// Run the controller for one kind until shutdown.
pub async fn run<C: Control>(
    control: C,
    cx: Arc<Ctx>,
    namespace: Option<String>,
    concurrency: u16,
) {
    let api: Api<C::K> = match &namespace {
        Some(ns) => Api::namespaced(cx.client.clone(), ns),
        None => Api::all(cx.client.clone()),
    };
    let (reader, writer) = reflector::store();
    let kind = kind_of::<C>();
    // /readyz waits for every controller's cache: until then this kind acts on nothing.
    {
        let reader = reader.clone();
        let metrics = cx.metrics.clone();
        let kind = kind.clone();
        tokio::spawn(async move {
            cache_ready(&reader).await;
            metrics.cache_synced();
            tracing::info!(kind, "watch cache synced");
        });
    }
    // Streaming lists: the initial state arrives as watch events, not as one list response
    // holding every object at once (the resident-memory peak with many resources). API servers
    // without the WatchList feature refuse them; list + watch works everywhere.
    let config = if streaming_lists_served(&api).await {
        watcher::Config::default().streaming_lists()
    } else {
        tracing::warn!(
            kind,
            "the API server does not serve streaming lists (its WatchList feature is off, as on \
             older versions): using list + watch"
        );
        watcher::Config::default()
    };
    cx.metrics
        .count_conditions(condition_source::<C>(kind.clone(), reader.clone()));
    // Counters start at 0, so that `increase()` in the chart's alerts sees the first one.
    let _ = cx
        .metrics
        .drifts
        .get_or_create(&KindLabel { kind: kind.clone() });
    for reason in [guard::OUT_OF_SCOPE, guard::PROTECTED, guard::BLAST_RADIUS] {
        let _ = cx.metrics.guard_denials.get_or_create(&KindReason {
            kind: kind.clone(),
            reason: reason.into(),
        });
    }
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let shared = Arc::new(Shared {
        control,
        cx,
        store: reader.clone(),
        wake,
    });
    // Only spec, finalizer and deletion changes trigger a reconcile: our own status writes must
    // not cause another round of Azure reads.
    let stream = watcher(api, config)
        .default_backoff()
        .inspect_err(
            move |e| tracing::warn!(kind, error = %e, "watch failed; retrying with backoff"),
        )
        .then(|ev| async move {
            if let Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) = &ev {
                lag().await;
            }
            ev
        })
        .modify(slim::<C::K>)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(trigger_hash::<C::K>, Default::default());
    // A policy change re-evaluates every resource (a revoked allowance stops further writes).
    let policy_changes = shared.cx.guard.changes();
    Controller::for_stream(stream, reader)
        .reconcile_on(woken)
        .reconcile_all_on(policy_changes)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(reconcile::<C>, error_policy::<C>, shared)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reconcile ended with an error");
            }
        })
        .await;
}

/// The conditions of every resource in this kind's watch cache (a resource with none yet counts
/// as Ready `Unknown`).
fn condition_source<C: Control>(
    kind: String,
    store: reflector::Store<C::K>,
) -> crate::metrics::ConditionSource {
    Box::new(move || {
        let mut out = Vec::new();
        for obj in store.state() {
            let labels = |condition: &str, status: &str, reason: &str| ConditionLabels {
                kind: kind.clone(),
                namespace: obj.namespace().unwrap_or_default(),
                condition: condition.into(),
                status: status.into(),
                reason: reason.into(),
            };
            let conditions = obj
                .common_status()
                .map(|s| s.conditions.as_slice())
                .unwrap_or_default();
            if conditions.is_empty() {
                out.push(labels("Ready", "Unknown", ""));
            }
            out.extend(
                conditions
                    .iter()
                    .map(|c| labels(&c.type_, &c.status, &c.reason)),
            );
        }
        out
    })
}

/// Tests only: debug builds hold every watch change `CONTAINMENT_TEST_WATCH_LAG_MS` before the
/// cache sees it, so tests can show that no decision is taken from a lagging cache.
#[cfg(debug_assertions)]
async fn lag() {
    static LAG: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    let d = *LAG.get_or_init(|| {
        std::env::var("CONTAINMENT_TEST_WATCH_LAG_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default()
    });
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

#[cfg(not(debug_assertions))]
async fn lag() {}

/// Until the store has its initial state. kube-runtime's readiness is a oneshot that wakes only
/// its latest poller, so with the controller also waiting a plain `wait_until_ready` can sleep
/// forever: poll it again now and then.
async fn cache_ready<K: Kind>(store: &reflector::Store<K>) {
    while tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// Whether the API server serves streaming lists (`sendInitialEvents`): one short watch, the
/// way kube-runtime starts its own. Refused (422/400) means no; any other failure is for the
/// real watcher to meet and retry.
async fn streaming_lists_served<K: Kind>(api: &Api<K>) -> bool {
    // The API server validates the options before it starts streaming: a refusal is the answer
    // to the request itself.
    let wp = kube::api::WatchParams::streaming_lists().timeout(1);
    !matches!(api.watch(&wp, "0").await, Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400)
}

/// What the cache keeps of an object: of managedFields, only the entry `audit::requested_by`
/// picks (its manager and time, the field set reduced to "owns spec"), and no client-side-apply
/// annotation. Those are most of a small object's size, and the cache holds every object.
fn slim<K: Kind>(obj: &mut K) {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    let meta = obj.meta_mut();
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    let who = audit::requested_by(meta);
    let entry = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(who.as_str()))
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .map(|m| ManagedFieldsEntry {
            manager: m.manager.clone(),
            time: m.time.clone(),
            fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {}}))),
            ..Default::default()
        });
    meta.managed_fields = entry.map(|e| vec![e]);
}

fn trigger_hash<K: Kind>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.meta().generation.hash(&mut h);
    obj.meta().finalizers.hash(&mut h);
    obj.meta().deletion_timestamp.is_some().hash(&mut h);
    // Reconcile now: any new value of the annotation is a change worth a reconcile.
    obj.annotations()
        .get(super::RECONCILE_REQUESTED_AT)
        .hash(&mut h);
    Some(h.finish())
}

/// A status write refused because the object changed since it was read.
fn conflict(e: kube::Error) -> RunError {
    match e {
        kube::Error::Api(s) if s.code == 409 => RunError::Conflict(s.message),
        e => RunError::Kube(e),
    }
}

/// The object as the API server has it now (a quorum read, not the watch cache, which may lag):
/// the ledger and the restore record are decided from this. `None`: gone or replaced.
async fn fresh<K: Kind>(api: &Api<K>, obj: &K) -> Result<Option<Arc<K>>, RunError> {
    let Some(mut o) = api.get_opt(&obj.name_any()).await? else {
        return Ok(None);
    };
    if o.meta().uid != obj.meta().uid {
        return Ok(None);
    }
    slim(&mut o);
    Ok(Some(Arc::new(o)))
}

/// The target's lock, then the object as it is now under it (a peer that just left may have
/// handed it the target's restore record; a status write meanwhile is seen). None: gone.
async fn locked_fresh<'a, C: Control>(
    obj: &C::K,
    sh: &'a Shared<C>,
    target: &ResourceId,
) -> Result<Option<(Arc<C::K>, super::TargetGuard<'a>)>, RunError> {
    let lock = sh.cx.lock_target(&target.id).await;
    let api = Api::<C::K>::namespaced(sh.cx.client.clone(), &obj.namespace().unwrap_or_default());
    Ok(fresh(&api, obj).await?.map(|o| (o, lock)))
}

fn kind_of<C: Control>() -> String {
    C::K::kind(&()).to_string()
}

/// The clients of the object's tenant (`spec.tenantId`; the guard and cleanup refuse a tenant
/// that is not configured before any call, so the default is never used in its place).
fn az<'a, C: Control>(sh: &'a Shared<C>, obj: &C::K) -> &'a crate::azure::Clients {
    sh.cx
        .clients_for(obj.common().tenant_id.as_deref())
        .unwrap_or(&sh.cx.az)
}

/// Why the object's tenant cannot be acted in, if it cannot.
fn tenant_not_configured<C: Control>(sh: &Shared<C>, obj: &C::K) -> Option<String> {
    let tenant = obj.common().tenant_id.clone()?;
    sh.cx.clients_for(Some(&tenant)).is_none().then(|| {
        format!(
            "spec.tenantId {tenant} is not configured: the operator acts in its own tenant {} and in --additional-tenants (AZURE_ADDITIONAL_TENANTS) only",
            sh.cx.guard.default_tenant
        )
    })
}

fn uid_of<K: Kind>(obj: &K) -> String {
    obj.meta().uid.clone().unwrap_or_default()
}

/// Peers on the target, keeping as record holders only those whose records verify (a forged
/// record must not flow into this one's through the shared restore).
fn on_target_sealed<C: Control>(sh: &Shared<C>, obj: &C::K, target: &ResourceId) -> OnTarget<C::K> {
    let mut on = composition::on_target::<C>(&sh.store.state(), obj, target);
    on.holders.retain(|h| {
        let status = h.common_status().cloned().unwrap_or_default();
        sh.cx.seal.verify(&uid_of(h.as_ref()), &status).is_ok()
    });
    on
}

fn key_of<K: Kind>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

async fn reconcile<C: Control>(obj: Arc<C::K>, sh: Arc<Shared<C>>) -> Result<Action, RunError> {
    let kind = kind_of::<C>();
    let started = Instant::now();
    sh.cx.metrics.in_flight.inc();
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<C::K> = Api::namespaced(sh.cx.client.clone(), &ns);
    let result = if C::DEFAULT_RELEASE.is_some() {
        finalizer(&api, FINALIZER, obj, |ev| async {
            match ev {
                Finalize::Apply(o) => apply::<C>(o, &sh).await,
                Finalize::Cleanup(o) => cleanup::<C>(o, &sh).await,
            }
        })
        .await
        .map_err(|e| match e {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            other => RunError::Other(other.to_string()),
        })
    } else if obj.meta().deletion_timestamp.is_some() {
        Ok(Action::await_change())
    } else {
        apply::<C>(obj, &sh).await
    };
    sh.cx.metrics.in_flight.dec();
    let m = &sh.cx.metrics;
    m.reconcile_duration
        .get_or_create(&KindLabel { kind: kind.clone() })
        .observe(started.elapsed().as_secs_f64());
    m.reconciles
        .get_or_create(&KindResult {
            kind,
            result: if result.is_ok() { "ok" } else { "error" }.into(),
        })
        .inc();
    result
}

/// Observe, or reuse what a resource of the same kind read on the same target no more than
/// `max_age` ago with no write since (`None`: always read). Every read is offered for reuse.
async fn observe_shared<C: Control>(
    sh: &Shared<C>,
    obj: &C::K,
    target: &ResourceId,
    max_age: Option<Duration>,
) -> Result<C::Observed, AzureError> {
    let key = std::any::type_name::<C>();
    let cache = &sh.cx.observations;
    if C::SHARED_OBSERVATION
        && let Some(age) = max_age
        && let Some(o) = cache.get::<C::Observed>(key, &target.id, age)
    {
        return Ok(o);
    }
    let epoch = cache.epoch(&target.id);
    let o = sh.control.observe(az(sh, obj), obj, target).await?;
    if C::SHARED_OBSERVATION {
        cache.put(key, &target.id, epoch, o.clone());
    }
    Ok(o)
}

fn error_policy<C: Control>(obj: Arc<C::K>, err: &RunError, sh: Arc<Shared<C>>) -> Action {
    // Azure still working (e.g. on a release's operation) is not a failure: no backoff.
    if let RunError::AwaitingOperation(wait) = err {
        return Action::requeue(*wait);
    }
    // Frozen is an instruction, not a failure: no backoff, re-check the switch.
    if let RunError::Frozen = err {
        return Action::requeue(FROZEN_RECHECK);
    }
    let n = sh.cx.failure(&key_of(obj.as_ref()), true);
    sh.cx
        .metrics
        .errors
        .get_or_create(&KindReason {
            kind: kind_of::<C>(),
            reason: err.reason(),
        })
        .inc();
    tracing::warn!(object = %key_of(obj.as_ref()), error = %err, "reconcile failed");
    Action::requeue(requeue_backoff(n))
}

/// 2 s doubling to 5 min, jittered.
fn requeue_backoff(n: u32) -> Duration {
    let secs = (2.0 * 2f64.powi(n.saturating_sub(1).min(8) as i32)).min(300.0);
    Duration::from_secs_f64(secs * (0.8 + rand::random::<f64>() * 0.4))
}

/// How long one reconcile polls a long-running operation before it lets go of the target and
/// requeues (the URL is in status; the next reconcile resumes).
const POLL_BUDGET: Duration = Duration::from_secs(20);

use super::TENANT_NOT_CONFIGURED;

/// How often a frozen containment re-checks the kill switch.
const FROZEN_RECHECK: Duration = Duration::from_secs(5);
const FROZEN: &str = "Azure calls are frozen process-wide (the kill switch: the freeze ConfigMap exists in the operator's namespace); nothing is observed, applied or released until it is deleted";

fn now() -> Time {
    Time(Timestamp::now())
}

/// One reconcile of one object: its status as we build it, and the means to publish it.
struct Run<'a, C: Control> {
    sh: &'a Shared<C>,
    obj: Arc<C::K>,
    api: Api<C::K>,
    recorder: Recorder,
    status: CommonStatus,
    extra: Map<String, Value>,
    published: Value,
    generation: Option<i64>,
    /// The version this run read: every status write is conditional on it (a conflict means
    /// someone else wrote since, so re-read, never act on what this run decided).
    resource_version: Option<String>,
    /// Why the records read fail the seal: nothing is acted on, and they are never re-sealed.
    tampered: Option<String>,
    /// The reconcile request this run handles: echoed with the run's final write only, so
    /// whoever waits for the echo sees the outcome, not a step in between.
    handling: Option<String>,
}

impl<'a, C: Control> Run<'a, C> {
    fn new(obj: Arc<C::K>, sh: &'a Shared<C>) -> Self {
        let ns = obj.namespace().unwrap_or_default();
        let published = serde_json::to_value(obj.as_ref())
            .ok()
            .and_then(|v| v.get("status").cloned())
            .unwrap_or(Value::Null);
        let extra = published
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| !COMMON_KEYS.contains(&k.as_str()))
            .collect();
        let status = obj.common_status().cloned().unwrap_or_default();
        let handling = obj
            .annotations()
            .get(super::RECONCILE_REQUESTED_AT)
            .cloned();
        let tampered = sh.cx.seal.verify(&uid_of(obj.as_ref()), &status).err();
        Self {
            sh,
            tampered,
            api: Api::namespaced(sh.cx.client.clone(), &ns),
            recorder: Recorder::new(sh.cx.client.clone(), sh.cx.reporter.clone()),
            status,
            extra,
            published,
            generation: obj.meta().generation,
            resource_version: obj.meta().resource_version.clone(),
            handling,
            obj,
        }
    }

    /// Publish the status if it changed (merge patch; keys we dropped are nulled).
    async fn save(&mut self) -> Result<(), RunError> {
        if self.tampered.is_none() {
            self.status.record_seal = self
                .sh
                .cx
                .seal
                .sign(&uid_of(self.obj.as_ref()), &self.status);
        }
        let mut next =
            serde_json::to_value(&self.status).map_err(|e| RunError::Other(e.to_string()))?;
        if let Some(m) = next.as_object_mut() {
            for (k, v) in &self.extra {
                m.insert(k.clone(), v.clone());
            }
        }
        if next == self.published {
            return Ok(());
        }
        let patch = merge_diff(&self.published, &next);
        let written = self
            .api
            .patch_status(
                &self.obj.name_any(),
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Merge(serde_json::json!({
                    "metadata": {"resourceVersion": self.resource_version},
                    "status": patch,
                })),
            )
            .await
            .map_err(conflict)?;
        self.resource_version = written.meta().resource_version.clone();
        self.published = next;
        Ok(())
    }

    /// The object with the status as published by this run so far.
    fn current_object(&self) -> Option<C::K> {
        let mut v = serde_json::to_value(self.obj.as_ref()).ok()?;
        v["status"] = self.published.clone();
        serde_json::from_value(v).ok()
    }

    async fn finish(&mut self, state: State) -> Result<(), RunError> {
        conditions::apply(&mut self.status.conditions, &state, self.generation, &now());
        self.status.observed_generation = self.generation;
        if self.handling.is_some() {
            self.status.last_handled_reconcile_at = self.handling.clone();
        }
        self.save().await
    }

    async fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let mut note = note;
        if let Some(r) = &self.obj.common().reason.clone() {
            note = format!("{note} (reason: {r})");
        }
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &self.obj.object_ref(&())).await {
            tracing::warn!(error = %e, "could not publish event");
        }
    }

    /// Send one step; poll its long-running operation (URL persisted first). A non-idempotent
    /// call of a run is recorded as sent before it leaves, and done only once Azure says it
    /// succeeded (its operation too), so neither a crash nor a lost answer makes it twice.
    async fn execute(&mut self, step: &Step) -> Result<(), RunError> {
        // Whatever happens next (a write, or an etag showing someone else wrote), earlier reads
        // of the target are suspect: no sibling may plan from them.
        self.sh.cx.observations.wrote(&step.path);
        // A tenant-scoped target (an MDE or Graph list) is not a prefix of the paths written
        // to it.
        if let Ok(t) = C::target(&self.obj) {
            self.sh.cx.observations.wrote(&t.id);
        }
        if let Some(expected) = &step.expect_etag {
            self.check_etag(step, expected).await?;
        }
        let tracked = step.tracked() && self.status.action.is_some();
        if tracked {
            ledger::sent(self.status.action.as_mut(), &step.what, now());
            self.save().await?;
        }
        let reply = az(self.sh, self.obj.as_ref())
            .get(step.service)
            .call(&ArmRequest {
                method: step.method,
                path: &step.path,
                api_version: (!step.api_version.is_empty()).then_some(step.api_version),
                body: step.body.as_ref(),
                idempotent: step.idempotent,
            })
            .await;
        let common = self.obj.common().into_owned();
        let reason = common.reason.as_deref();
        // What an answer reports is kept even when it reports a failure (e.g. which feature
        // of a write failed), so status shows Azure's own account of it.
        if let Ok(r) = &reply {
            let from_reply = self.sh.control.on_reply(step, r);
            self.extra.extend(from_reply);
        }
        let reply = reply.and_then(|r| {
            match self
                .sh
                .control
                .reply_error(self.obj.as_ref(), step, &r.body)
            {
                Some(e) => Err(e),
                None => Ok(r),
            }
        });
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                let rid = match &e {
                    AzureError::Api { request_id, .. } => request_id.as_deref(),
                    _ => None,
                };
                audit::record(
                    self.obj.as_ref(),
                    reason,
                    &write_of(step, &e.reason(), e.status(), rid, None),
                );
                // Azure answered and refused: the call had no effect. A lost answer or a 5xx
                // may have: it stays "sent" until evidence resolves it.
                if tracked && !e.may_have_taken_effect() {
                    ledger::unsent(self.status.action.as_mut(), &step.what);
                    self.save().await?;
                }
                return Err(e.into());
            }
        };
        audit::record(
            self.obj.as_ref(),
            reason,
            &write_of(
                step,
                "Succeeded",
                Some(reply.status),
                reply.request_id.as_deref(),
                reply.correlation_id.as_deref(),
            ),
        );
        let az = self.status.azure.get_or_insert_with(Default::default);
        az.last_request_id = reply.request_id.clone();
        az.last_correlation_id = reply.correlation_id.clone();
        self.status.last_applied_time = Some(now());
        self.event(
            EventType::Normal,
            "Applied",
            "AzureWrite",
            format!("{}: {} {}", step.what, step.method, step.path),
        )
        .await;
        match reply.operation.filter(|_| step.lro) {
            Some(op) => {
                if tracked {
                    ledger::operation(self.status.action.as_mut(), &step.what, &op.url);
                }
                let az = self.status.azure.get_or_insert_with(Default::default);
                az.pending_operation = Some(op.url);
                az.pending_operation_via = Some(op.via);
                conditions::apply(
                    &mut self.status.conditions,
                    &State::Progressing {
                        reason: "AwaitingOperation".into(),
                        message: format!("waiting for Azure to finish: {}", step.what),
                        keep_ready: true,
                    },
                    self.generation,
                    &now(),
                );
                self.save().await?;
                self.await_operation().await
            }
            None => {
                if tracked {
                    ledger::done(self.status.action.as_mut(), &step.what);
                }
                // Record progress (ledger, ids) after every write: a crash never repeats it.
                self.save().await
            }
        }
    }

    /// Whole-object writes: re-read just before sending; someone else's write means re-plan.
    async fn check_etag(&self, step: &Step, expected: &str) -> Result<(), RunError> {
        let now = az(self.sh, self.obj.as_ref())
            .get(step.service)
            .get(&step.path, step.api_version)
            .await?;
        if now["etag"].as_str() == Some(expected) {
            return Ok(());
        }
        // Someone wrote the object since we read it: re-read and re-plan, never overwrite
        // their change.
        Err(AzureError::Api {
            status: 412,
            code: "ConcurrentModification".into(),
            message: format!(
                "{} changed between read and write (etag {expected} → {}); re-planning",
                step.path,
                now["etag"].as_str().unwrap_or("none")
            ),
            request: format!("{} {}", step.method, step.path),
            retry_after: None,
            request_id: None,
        }
        .into())
    }

    /// Poll the persisted operation for at most [`POLL_BUDGET`]. When it ends, the steps that
    /// waited for it are done (Succeeded) or not (Failed/Canceled) and the URL is cleared. Still
    /// running: [`RunError::AwaitingOperation`], the URL kept, so the next reconcile resumes
    /// without holding the target's lock meanwhile. A failed poll keeps the URL too.
    async fn await_operation(&mut self) -> Result<(), RunError> {
        let Some((url, via)) = self.status.azure.as_ref().and_then(|a| {
            a.pending_operation
                .clone()
                .map(|url| (url, a.pending_operation_via))
        }) else {
            return Ok(());
        };
        let deadline = Instant::now() + POLL_BUDGET;
        let outcome = loop {
            match az(self.sh, self.obj.as_ref()).arm.poll(&url, via).await {
                Ok(Poll::Running(wait)) => {
                    let wait = wait.clamp(Duration::from_millis(200), Duration::from_secs(30));
                    if Instant::now() + wait > deadline {
                        return Err(RunError::AwaitingOperation(wait));
                    }
                    tokio::time::sleep(wait).await
                }
                Ok(Poll::Done) => break Ok(Some(())),
                Err(e @ AzureError::Operation { .. }) => break Err(e),
                // Azure no longer knows the operation: its outcome is for the evidence to show.
                Err(e) if e.status() == Some(404) => break Ok(None),
                Err(e) => return Err(e.into()),
            }
        };
        let ledger = self.status.action.as_mut();
        match &outcome {
            Ok(Some(())) => ledger::operation_succeeded(ledger, &url),
            Ok(None) => ledger::operation_unknown(ledger, &url),
            Err(_) => ledger::operation_failed(ledger, &url),
        }
        if let Some(a) = self.status.azure.as_mut() {
            a.pending_operation = None;
            a.pending_operation_via = None;
        }
        self.save().await?;
        outcome.map(|_| ()).map_err(Into::into)
    }

    /// Planned calls of this run that were sent before without an answer (a crash, a lost
    /// reply) may have taken effect in Azure: wait for the evidence rather than send them
    /// twice. Once the wait has run out with no evidence, they had none; they are sent again.
    async fn unconfirmed(&mut self, steps: &[Step]) -> Option<super::Wait> {
        // A lost answer to a step that is safe to repeat is settled by sending it again.
        let planned: Vec<&str> = steps
            .iter()
            .filter(|s| !s.idempotent)
            .map(|s| s.what.as_str())
            .collect();
        let wait = self.sh.cx.unconfirmed_wait;
        match ledger::unconfirmed(
            self.status.action.as_ref(),
            &planned,
            wait,
            Timestamp::now(),
        ) {
            Unconfirmed::None => None,
            Unconfirmed::Wait { what, since } => Some(super::Wait {
                reason: "AwaitingEvidence".into(),
                message: format!(
                    "{what}: sent at {since} without an answer; waiting up to {} for Azure to \
                     show its effect before sending it again",
                    jiff::SignedDuration::try_from(wait).unwrap_or_default()
                ),
                recheck: Duration::from_secs(5).min(wait),
            }),
            Unconfirmed::Expired(calls) => {
                for what in &calls {
                    ledger::unsent(self.status.action.as_mut(), what);
                }
                let note = format!(
                    "no evidence of {} after {:?}: sending again",
                    calls.join(", "),
                    wait
                );
                tracing::warn!(object = %key_of(self.obj.as_ref()), "{note}");
                self.event(EventType::Warning, "Unconfirmed", "Action", note)
                    .await;
                None
            }
        }
    }

    /// How a reconcile that hit `e` ends: Azure errors become conditions and a requeue; an
    /// operation still running is progress, re-checked when Azure says.
    async fn failed(&mut self, e: RunError) -> Result<Action, RunError> {
        match e {
            RunError::Azure(e) => self.azure_failed(e).await,
            RunError::AwaitingOperation(wait) => {
                self.finish(State::Progressing {
                    reason: "AwaitingOperation".into(),
                    message: "waiting for an Azure long-running operation to finish".into(),
                    keep_ready: true,
                })
                .await?;
                Ok(Action::requeue(wait))
            }
            other => Err(other),
        }
    }

    /// Turn an Azure error into conditions and a requeue.
    async fn azure_failed(&mut self, e: AzureError) -> Result<Action, RunError> {
        let key = key_of(self.obj.as_ref());
        let kind = kind_of::<C>();
        self.sh
            .cx
            .metrics
            .errors
            .get_or_create(&KindReason {
                kind,
                reason: e.reason(),
            })
            .inc();
        let (state, after) = match e.class() {
            Class::Throttled(d) => (
                State::Progressing {
                    reason: "Throttled".into(),
                    message: format!("Azure is throttling this subscription: {e}"),
                    keep_ready: true,
                },
                d.unwrap_or(Duration::from_secs(10)),
            ),
            Class::Transient => {
                let n = self.sh.cx.failure(&key, true);
                (
                    State::Progressing {
                        reason: e.reason(),
                        message: format!("retrying: {e}"),
                        keep_ready: true,
                    },
                    requeue_backoff(n),
                )
            }
            Class::Permanent => {
                self.stall_event(&e.reason(), &e.to_string()).await;
                (
                    State::Stalled {
                        reason: e.reason(),
                        message: e.to_string(),
                    },
                    Duration::from_secs(300),
                )
            }
        };
        tracing::warn!(object = %key, error = %e, "azure request failed");
        self.finish(state).await?;
        Ok(Action::requeue(after))
    }

    async fn stall_event(&self, reason: &str, message: &str) {
        let already = conditions::get(&self.status.conditions, conditions::STALLED)
            .is_some_and(|c| c.status == "True" && c.reason == reason);
        if !already {
            self.event(EventType::Warning, reason, "Stall", message.to_string())
                .await;
        }
    }

    async fn stalled(&mut self, reason: &str, message: String) -> Result<Action, RunError> {
        self.stall_event(reason, &message).await;
        self.finish(State::Stalled {
            reason: reason.into(),
            message,
        })
        .await?;
        Ok(Action::requeue(Duration::from_secs(300)))
    }
}

/// The RFC 7386 merge patch that turns `old` into `new` (removed keys become null, at any depth).
fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old.as_object(), new.as_object()) {
        (Some(o), Some(n)) => {
            let mut p = Map::new();
            for (k, v) in n {
                match o.get(k) {
                    Some(ov) if ov == v => {}
                    Some(ov) => {
                        p.insert(k.clone(), merge_diff(ov, v));
                    }
                    None => {
                        p.insert(k.clone(), v.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                p.insert(k.clone(), Value::Null);
            }
            Value::Object(p)
        }
        _ => new.clone(),
    }
}

fn write_of<'a>(
    step: &'a Step,
    result: &'a str,
    status: Option<u16>,
    request_id: Option<&'a str>,
    correlation_id: Option<&'a str>,
) -> audit::Write<'a> {
    audit::Write {
        method: step.method,
        path: &step.path,
        api_version: step.api_version,
        what: &step.what,
        result,
        status,
        request_id,
        correlation_id,
    }
}

/// Keys of CommonStatus (everything else in a status is kind-specific).
const COMMON_KEYS: &[&str] = &[
    "observedGeneration",
    "target",
    "targetName",
    "conditions",
    "lastAppliedTime",
    "lastVerifiedTime",
    "driftCount",
    "lastDriftTime",
    "plan",
    "restore",
    "sharedWith",
    "azure",
    "action",
    "releasedTime",
    "lastHandledReconcileAt",
    "policy",
    "recordSeal",
];

fn release_policy<C: Control>(obj: &C::K) -> Option<ReleasePolicy> {
    C::DEFAULT_RELEASE.map(|d| obj.common().release_policy.unwrap_or(d))
}

fn resolve<C: Control>(obj: &C::K) -> Result<ResourceId, String> {
    C::target(obj)
}

fn schedule_of<K: Kind>(obj: &K) -> Option<Duration> {
    obj.schedule()
        .and_then(|s| s.parse::<jiff::SignedDuration>().ok())
        .and_then(|d| Duration::try_from(d).ok())
}

/// What `obj` plans for: its own spec, or with every Enforce peer's wants folded in.
fn composed<C: Control>(
    sh: &Shared<C>,
    obj: &Arc<C::K>,
    on: &OnTarget<C::K>,
) -> Result<Arc<C::K>, composition::Conflict> {
    if !C::COMPOSES || on.enforcing.is_empty() {
        return Ok(obj.clone());
    }
    composition::compose(&sh.control, obj, &on.enforcing).map(Arc::new)
}

/// Release one resource. While other resources still enforce on the target (a composing kind),
/// nothing of the prior state comes back: the target's record goes to the oldest of them and
/// they re-plan without this one. The last one restores.
async fn release_or_hand_over<C: Control>(
    run: &mut Run<'_, C>,
    target: &ResourceId,
    on: &OnTarget<C::K>,
) -> Result<(), RunError> {
    if C::COMPOSES
        && let Some(heir) = on.enforcing.first()
        && release_policy::<C>(&run.obj) == Some(ReleasePolicy::Restore)
    {
        hand_over(run, target, heir, on).await?;
    } else {
        release_steps::<C>(run, target).await?;
    }
    wake(run.sh, &on.enforcing);
    Ok(())
}

fn wake<C: Control>(sh: &Shared<C>, peers: &[Arc<C::K>]) {
    for p in peers {
        let _ = sh.wake.unbounded_send(ObjectRef::from_obj(p.as_ref()));
    }
}

/// Merge this resource's record into the heir's (a quorum read, written with its version as a
/// precondition; the target lock keeps the heir's own runs out meanwhile).
async fn hand_over<C: Control>(
    run: &mut Run<'_, C>,
    target: &ResourceId,
    heir: &Arc<C::K>,
    on: &OnTarget<C::K>,
) -> Result<(), RunError> {
    let api: Api<C::K> = Api::namespaced(
        run.sh.cx.client.clone(),
        &heir.namespace().unwrap_or_default(),
    );
    let heir_name = composition::name_of(heir.as_ref());
    if let Some(h) = fresh(&api, heir.as_ref()).await? {
        let mut heir_status = h.common_status().cloned().unwrap_or_default();
        let seal = &run.sh.cx.seal;
        seal.verify(&uid_of(h.as_ref()), &heir_status)
            .map_err(|why| RunError::RecordTampered(format!("the heir {heir_name}: {why}")))?;
        let theirs = heir_status.restore.clone();
        let merged = composition::shared_restore(
            &run.sh.control,
            h.as_ref(),
            theirs.as_ref(),
            std::slice::from_ref(&run.obj),
        );
        if merged.is_some() && merged != theirs {
            heir_status.restore = merged.clone();
            let sealed = seal.sign(&uid_of(h.as_ref()), &heir_status);
            api.patch_status(
                &h.name_any(),
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Merge(serde_json::json!({
                    "metadata": {"resourceVersion": h.meta().resource_version},
                    "status": {"restore": merged, "recordSeal": sealed},
                })),
            )
            .await
            .map_err(conflict)?;
        }
    }
    run.status.restore = None;
    let others: Vec<String> = on
        .enforcing
        .iter()
        .map(|p| composition::name_of(p.as_ref()))
        .collect();
    run.event(
        EventType::Normal,
        "Released",
        "Release",
        format!(
            "released; {} still contain {target}, so its prior state comes back when the last of them goes (record kept by {heir_name})",
            others.join(", ")
        ),
    )
    .await;
    Ok(())
}

/// Put back the recorded prior state (Restore), observing first so only what differs is sent.
async fn release_steps<C: Control>(
    run: &mut Run<'_, C>,
    target: &ResourceId,
) -> Result<(), RunError> {
    let obj = run.obj.clone();
    if release_policy::<C>(&obj) != Some(ReleasePolicy::Restore) {
        return Ok(());
    }
    let Some(restore) = run
        .status
        .restore
        .clone()
        .or_else(|| run.sh.control.implicit_restore(&obj))
    else {
        return Ok(());
    };
    run.await_operation().await?;
    let observed = match run.sh.control.observe(az(run.sh, &obj), &obj, target).await {
        Ok(o) => o,
        // The target is gone: nothing left to restore.
        Err(e) if e.status() == Some(404) => {
            run.event(
                EventType::Warning,
                "TargetGone",
                "Release",
                format!("{target} no longer exists; nothing to restore"),
            )
            .await;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(why) = run.sh.control.release_wait(&observed) {
        return Err(RunError::Azure(AzureError::Api {
            status: 409,
            code: "Conflict".into(),
            message: format!("release waits: {why}"),
            request: format!("release {target}"),
            retry_after: None,
            request_id: None,
        }));
    }
    let steps = run.sh.control.release(&obj, target, &observed, &restore);
    for step in &steps {
        run.execute(step).await?;
    }
    // The prior state is back: the record is spent (re-applying records afresh).
    run.status.restore = None;
    run.event(
        EventType::Normal,
        "Released",
        "Release",
        format!(
            "prior state restored on {target} ({} request(s))",
            steps.len()
        ),
    )
    .await;
    Ok(())
}

async fn cleanup<C: Control>(obj: Arc<C::K>, sh: &Shared<C>) -> Result<Action, RunError> {
    let Ok(target) = resolve::<C>(&obj) else {
        return Ok(Action::await_change());
    };
    sh.control.unregister(&obj, &target);
    let Some((obj, _guard)) = locked_fresh(obj.as_ref(), sh, &target).await? else {
        return Ok(Action::await_change());
    };
    let mut run = Run::new(obj.clone(), sh);
    if let Some(why) = run.tampered.clone() {
        // Keep the finalizer: releasing from a forged record is what the seal prevents.
        run.stalled(super::seal::TAMPERED, format!("deletion waits: {why}"))
            .await?;
        return Err(RunError::RecordTampered(why));
    }
    if let Some(why) = tenant_not_configured(sh, obj.as_ref()) {
        // Keep the finalizer: a release with another tenant's token cannot work.
        run.stalled(TENANT_NOT_CONFIGURED, format!("deletion waits: {why}"))
            .await?;
        return Err(RunError::TenantNotConfigured(why));
    }
    if sh.cx.frozen() {
        // Keep the finalizer: the release happens once the switch is lifted.
        run.finish(State::Progressing {
            reason: "Suspended".into(),
            message: format!("deletion waits: {FROZEN}"),
            keep_ready: false,
        })
        .await?;
        return Err(RunError::Frozen);
    }
    // Being deleted, it no longer counts against its policy's blast radius.
    sh.cx
        .guard
        .ledger
        .forget(&kind_of::<C>(), &key_of(obj.as_ref()));
    let policy = release_policy::<C>(&obj);
    // What was applied and not yet released, whatever the mode says now (Enforce → DryRun →
    // delete must still put the prior state back).
    let applied = (run.status.restore.is_some() || sh.control.implicit_restore(&obj).is_some())
        && run.status.released_time.is_none();
    let on = on_target_sealed(sh, &obj, &target);
    if !applied || policy == Some(ReleasePolicy::Retain) {
        // Peers planned with this one's wants folded in: they re-plan without them.
        wake(sh, &on.enforcing);
        if applied && run.status.restore.is_some() {
            run.event(
                EventType::Normal,
                "Retained",
                "Release",
                format!("releasePolicy Retain: containment left in force on {target}"),
            )
            .await;
        }
        return Ok(Action::await_change());
    }
    match release_or_hand_over::<C>(&mut run, &target, &on).await {
        Ok(()) => Ok(Action::await_change()),
        Err(RunError::Azure(e)) => {
            // Keep the finalizer: the prior state is not back yet.
            let reason = e.reason();
            let advice = sh.control.release_advice(&e);
            conditions::apply(
                &mut run.status.conditions,
                &match e.class() {
                    _ if advice.is_some() => State::Stalled {
                        reason: reason.clone(),
                        message: format!("release failed: {} ({e})", advice.unwrap_or_default()),
                    },
                    Class::Permanent => State::Stalled {
                        reason: reason.clone(),
                        message: format!("release failed: {e}"),
                    },
                    _ => State::Progressing {
                        reason: reason.clone(),
                        message: format!("release retrying: {e}"),
                        keep_ready: false,
                    },
                },
                run.generation,
                &now(),
            );
            run.save().await?;
            Err(RunError::Azure(e))
        }
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_diff_nulls_removed_nested_keys() {
        let old = json!({"azure": {"lastRequestId": "a", "pendingOperation": "u"}, "plan": ["x"], "driftCount": 1});
        let new = json!({"azure": {"lastRequestId": "b"}, "driftCount": 1});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"azure": {"lastRequestId": "b", "pendingOperation": null}, "plan": null})
        );
        assert_eq!(merge_diff(&Value::Null, &new), new);
    }
}
