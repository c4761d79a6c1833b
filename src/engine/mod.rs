//! The one generic reconcile engine every kind shares. A kind supplies a [`Control`]: observe
//! the target, assess it against the spec (a pure function), and describe its release; the
//! engine owns finalizers, modes, conditions, events, the audit log, drift checks, the one-shot
//! ledger, expiry, long-running operations and error handling.

pub mod audit;
pub mod composition;
pub mod conditions;
pub mod ledger;
pub mod observations;
pub mod plan;
mod reconcile;
pub mod seal;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use plan::{Assessment, Stall, Step, Wait};
pub use reconcile::run;

use crate::api::common::{CommonSpec, CommonStatus, ReleasePolicy};
use crate::azure::{AzureError, Clients, ResourceId};
use crate::metrics::Metrics;

/// Stalled reason (and error label) for a `spec.tenantId` the operator has no credentials for.
pub const TENANT_NOT_CONFIGURED: &str = "TenantNotConfigured";
pub const FINALIZER: &str = "containment.defenderc2.io/release";
pub const FIELD_MANAGER: &str = "containment-operator";
/// Any new value of this annotation reconciles the resource at once (bypassing drift-interval
/// and backoff waits); the value handled is echoed in `status.lastHandledReconcileAt`.
pub const RECONCILE_REQUESTED_AT: &str = "containment.defenderc2.io/reconcile-requested-at";

/// A custom resource kind the engine can drive.
pub trait Kind:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The common spec fields (owned for kinds that have no Azure target, e.g. submissions).
    fn common(&self) -> std::borrow::Cow<'_, CommonSpec>;
    fn common_status(&self) -> Option<&CommonStatus>;
    /// One-shot actions: the current `spec.trigger`.
    fn trigger(&self) -> Option<&str> {
        None
    }
    /// One-shot actions: `spec.schedule`, already validated at admission.
    fn schedule(&self) -> Option<&str> {
        None
    }
}

/// Implements [`Kind`] for a generated CRD type whose status is `CommonStatus` or flattens it.
#[macro_export]
macro_rules! impl_kind {
    ($t:ty, status: $st:ident => $common:expr) => {
        impl $crate::engine::Kind for $t {
            fn common(&self) -> std::borrow::Cow<'_, $crate::api::common::CommonSpec> {
                std::borrow::Cow::Borrowed(&self.spec.common)
            }
            fn common_status(&self) -> Option<&$crate::api::common::CommonStatus> {
                self.status.as_ref().map(|$st| $common)
            }
        }
    };
    // Tenant-scoped kinds (`spec.common` is a `TenantCommonSpec`: no ARM target), their status
    // flattening `CommonStatus` as `common`; `trigger` for those that also run actions.
    ($t:ty, tenant $(, $trigger:ident)?) => {
        impl $crate::engine::Kind for $t {
            fn common(&self) -> std::borrow::Cow<'_, $crate::api::common::CommonSpec> {
                std::borrow::Cow::Owned(self.spec.common.to_common())
            }
            fn common_status(&self) -> Option<&$crate::api::common::CommonStatus> {
                self.status.as_ref().map(|s| &s.common)
            }
            $(fn $trigger(&self) -> Option<&str> {
                self.spec.$trigger.as_deref()
            })?
        }
    };
    // One-shot actions whose status flattens `CommonStatus` beside their own evidence.
    ($t:ty, action, status: $st:ident => $common:expr) => {
        impl $crate::engine::Kind for $t {
            fn common(&self) -> std::borrow::Cow<'_, $crate::api::common::CommonSpec> {
                std::borrow::Cow::Borrowed(&self.spec.common)
            }
            fn common_status(&self) -> Option<&$crate::api::common::CommonStatus> {
                self.status.as_ref().map(|$st| $common)
            }
            fn trigger(&self) -> Option<&str> {
                self.spec.trigger.as_deref()
            }
        }
    };
    // One-shot actions: `spec.trigger` and optionally `spec.schedule`.
    ($t:ty, action $(, schedule = $schedule:ident)?) => {
        impl $crate::engine::Kind for $t {
            fn common(&self) -> std::borrow::Cow<'_, $crate::api::common::CommonSpec> {
                std::borrow::Cow::Borrowed(&self.spec.common)
            }
            fn common_status(&self) -> Option<&$crate::api::common::CommonStatus> {
                self.status.as_ref()
            }
            fn trigger(&self) -> Option<&str> {
                self.spec.trigger.as_deref()
            }
            $(fn schedule(&self) -> Option<&str> {
                self.spec.$schedule.as_deref()
            })?
        }
    };
}

/// What a device or identity kind acts on, by its ids and names (see [`Control::subject`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A Defender for Endpoint device: checked against the policies' `protected.devices`.
    Device(Vec<String>),
    /// An Entra user, group or service principal: checked against `protected.identities`.
    Identity(Vec<String>),
}

/// Per-kind behaviour: observe → assess (pure) → the engine applies → release.
#[async_trait::async_trait]
pub trait Control: Send + Sync + 'static {
    type K: Kind;
    type Observed: Clone + Send + Sync + 'static;
    /// The ARM resource type the target must be, e.g. `Microsoft.Sql/servers`.
    const RESOURCE_TYPE: &'static str;
    /// `None` for one-shot actions (irreversible: releasePolicy is ignored).
    const DEFAULT_RELEASE: Option<ReleasePolicy>;
    /// The observation depends on the target only (not on the resource), so resources of this
    /// kind on one target may share it (see `observations`).
    const SHARED_OBSERVATION: bool = false;
    /// Azure RBAC actions this kind needs (the `permissions` command prints their union).
    const ACTIONS: &'static [&'static str];
    /// Named subsets of [`Control::ACTIONS`] for kinds whose targets come in several resource
    /// types (`permissions --kinds WafIpBlock:FrontDoor` prints only what that one needs).
    const ACTION_VARIANTS: &'static [(&'static str, &'static [&'static str])] = &[];

    /// Several Enforce resources of this kind on one target compose: each plans the state that
    /// satisfies them all (see [`Control::compose`]), they share one restore record, and only
    /// the last one to go restores. `false`: resources do not interact (one-shot actions, or a
    /// kind whose resources each own their own entry on the target).
    const COMPOSES: bool = false;

    /// An enforced kind some of whose steps are one-shot actions, due once per `spec.trigger`
    /// (e.g. revoking a user's sessions): the engine keeps the action ledger for them as for
    /// actions (`status.action`: intent recorded before the call, evidence decides after a
    /// crash or a lost answer). `assess` plans such a step only while the ledger of the
    /// current trigger does not show it done.
    const ONE_SHOT_STEPS: bool = false;

    /// How long the service may keep answering reads from replicas that have not seen a write
    /// (Entra is eventually consistent): the read-back after a write is retried for up to this
    /// long before the write is taken as not applied, so a stale replica never causes a second
    /// write or a drift.
    const READ_LAG: Duration = Duration::ZERO;

    /// Fold `other`'s wants into `acc` (union of blocks, the strictest level), or say why the
    /// two cannot hold at once: the later of the two is then Stalled `ConflictsWith`.
    /// Leaves `acc` untouched when it fails.
    fn compose(&self, _acc: &mut Self::K, _other: &Self::K) -> Result<(), String> {
        Ok(())
    }

    /// Two restore records of one target (composed resources each hold one): what the older
    /// one recorded wins, what only the newer one saw is added.
    fn merge_restore(&self, older: &Value, _newer: &Value) -> Value {
        older.clone()
    }

    /// The ARM type of this object's target (when it depends on the spec).
    fn resource_type(_obj: &Self::K) -> &'static str {
        Self::RESOURCE_TYPE
    }

    /// The Azure object this resource acts on (also the key that serialises work on it).
    fn target(obj: &Self::K) -> Result<ResourceId, String> {
        crate::azure::resource_id::resolve(&obj.common().target, Self::resource_type(obj))
    }

    /// The target in a few characters: `kubectl get`'s TARGET column (`status.targetName`; the
    /// full id is `status.target`, shown by `-o wide`).
    fn target_name(_obj: &Self::K, target: &ResourceId) -> String {
        target.name.clone()
    }

    /// A 2xx answer that still reports this resource's part as failed (a batch call answers
    /// per item): the error the write ends with instead, e.g. a limit reached.
    fn reply_error(&self, _obj: &Self::K, _step: &Step, _reply: &Value) -> Option<AzureError> {
        None
    }

    /// Kind-specific status fields taken from a write's answer (e.g. the id Azure assigned),
    /// saved together with the write's ledger entry; also from a 2xx that
    /// [`Control::reply_error`] turns into a failure.
    fn on_reply(
        &self,
        _step: &Step,
        _reply: &crate::azure::Reply,
    ) -> serde_json::Map<String, Value> {
        serde_json::Map::new()
    }

    /// Called before the per-target lock is taken, with the other resources of the kind on the
    /// same target (from the watch cache, oldest first; see `composition::on_target`), so that
    /// controls which coalesce writes know every resource that wants to write there.
    fn register(&self, _obj: &Self::K, _target: &ResourceId, _on: &composition::OnTarget<Self::K>) {
    }

    /// The resource no longer wants its containment (deleted, expired, or not Enforce).
    fn unregister(&self, _obj: &Self::K, _target: &ResourceId) {}

    /// The Enforce peers on the target whose wants `steps` carried (`controls::coalesce`): they
    /// are woken after the write to confirm theirs rather than waiting out their hold. Only
    /// those: waking every peer of a large burst costs a reconcile each for nothing.
    fn carried<'p>(&self, _steps: &[Step], _peers: &'p [Arc<Self::K>]) -> Vec<&'p Arc<Self::K>> {
        Vec::new()
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &Self::K,
        target: &ResourceId,
    ) -> Result<Self::Observed, AzureError>;

    /// Compare desired with observed. For actions, `status.action` carries the ledger whose
    /// evidence tells what is already done.
    fn assess(
        &self,
        obj: &Self::K,
        target: &ResourceId,
        observed: &Self::Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall>;

    /// The steps that put back the recorded prior state (reversible controls).
    fn release(
        &self,
        _obj: &Self::K,
        _target: &ResourceId,
        _observed: &Self::Observed,
        _restore: &Value,
    ) -> Vec<Step> {
        Vec::new()
    }

    /// What release works from when the resource recorded nothing itself, because another
    /// resource's coalesced write did its work before it ran (e.g. a rule with a deterministic
    /// name). `None`: nothing recorded, nothing to release.
    fn implicit_restore(&self, _obj: &Self::K) -> Option<Value> {
        None
    }

    /// What a human must do about an Azure error that keeps a release from finishing (e.g. the
    /// target refuses changes in its current state), or `None` to retry it as usual. With
    /// advice the resource is Stalled with it (and still retried, with backoff).
    fn release_advice(&self, _e: &AzureError) -> Option<String> {
        None
    }

    /// Release must wait (e.g. an action on the target is still running): the message why.
    fn release_wait(&self, _observed: &Self::Observed) -> Option<String> {
        None
    }

    /// Namespaces of the Secrets this resource writes or reads (the guard allows its own
    /// namespace; others need the policy's `secretNamespaces`).
    fn secret_namespaces(&self, _obj: &Self::K) -> Vec<String> {
        Vec::new()
    }

    /// The Azure tags of the target as observed (the guard refuses a target carrying the
    /// policy's protected tag), for kinds whose observation holds them.
    fn tags(&self, _observed: &Self::Observed) -> Option<serde_json::Map<String, Value>> {
        None
    }

    /// The device or identity this resource acts on, by every name it goes by as observed
    /// (the guard refuses one a policy protects), for kinds whose target is one.
    fn subject(&self, _observed: &Self::Observed) -> Option<Subject> {
        None
    }

    /// Actions: what Azure shows before the first call, recorded with the intent.
    fn evidence(&self, _observed: &Self::Observed) -> Value {
        Value::Null
    }

    /// The observation after `steps` all succeeded, when the kind can derive it from Azure's
    /// acknowledgements (`None`: read it back). The engine then skips the read-back, and the
    /// next resource on the same target plans from it (see `observations`), so N blocks on
    /// one server cost one read, not N. The next drift check reads for real.
    fn after_steps(&self, _observed: &Self::Observed, _steps: &[Step]) -> Option<Self::Observed> {
        None
    }

    /// Actions: runs once a run's intent is recorded and before its first call, with what was
    /// observed; returns what the run plans from. For what must exist before Azure is asked,
    /// e.g. a generated password stored where it is published, so that no crash can leave
    /// Azure holding a secret nobody has. Must be idempotent within one run (`run.run_id`).
    async fn prepare(
        &self,
        _az: &Clients,
        _obj: &Self::K,
        _run: &crate::api::common::ActionLedger,
        observed: Self::Observed,
    ) -> Result<Self::Observed, RunError> {
        Ok(observed)
    }

    /// Actions: runs once the Azure side of a run is complete, before the run is marked
    /// Completed (e.g. publishing a new key to a Secret). Must be idempotent.
    async fn after_run(
        &self,
        _cx: &Ctx,
        _az: &Clients,
        _obj: &Self::K,
        _target: &ResourceId,
        _run: &crate::api::common::ActionLedger,
    ) -> Result<(), RunError> {
        Ok(())
    }
}

/// Errors a reconcile can end with (Azure errors are turned into conditions before this).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Azure(#[from] AzureError),
    /// A long-running operation is still running after this reconcile's polling budget: not a
    /// failure; check again after this long (its URL is in status).
    #[error("waiting for a long-running operation")]
    AwaitingOperation(Duration),
    /// A status write met a newer version of the object: re-read it and decide again.
    #[error("the object changed while it was reconciled: {0}")]
    Conflict(String),
    /// The kill switch is on: nothing may be sent (a release keeps its finalizer and waits).
    #[error("Azure calls are frozen by the kill switch")]
    Frozen,
    /// The status records fail the operator's seal: nothing is released or run from them.
    #[error("{0}")]
    RecordTampered(String),
    /// The containment's `spec.tenantId` is not one the operator has credentials for.
    #[error("{0}")]
    TenantNotConfigured(String),
    #[error("{0}")]
    Other(String),
}

impl RunError {
    /// The stable reason label for metrics.
    pub fn reason(&self) -> String {
        match self {
            RunError::Kube(_) => "KubernetesApi".into(),
            RunError::Azure(e) => e.reason(),
            RunError::AwaitingOperation(_) => "AwaitingOperation".into(),
            RunError::Conflict(_) => "Conflict".into(),
            RunError::Frozen => "Frozen".into(),
            RunError::RecordTampered(_) => seal::TAMPERED.into(),
            RunError::TenantNotConfigured(_) => TENANT_NOT_CONFIGURED.into(),
            RunError::Other(_) => "Other".into(),
        }
    }
}

struct TargetGuard<'a> {
    cx: &'a Ctx,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for TargetGuard<'_> {
    fn drop(&mut self) {
        let Some(g) = self.guard.take() else { return };
        let m = tokio::sync::OwnedMutexGuard::mutex(&g).clone();
        drop(g);
        let mut locks = self.cx.locks.lock().unwrap_or_else(|e| e.into_inner());
        // The map's reference and `m`: nobody else holds or waits (clones happen under `locks`).
        if Arc::strong_count(&m) == 2 {
            locks.remove(&self.key);
            // No read of the target is in flight (reads happen under this lock).
            self.cx.observations.forget_idle(&self.key);
        }
    }
}

/// Shared by every controller of the process.
pub struct Ctx {
    pub client: kube::Client,
    pub az: Clients,
    pub metrics: Arc<Metrics>,
    pub reporter: kube::runtime::events::Reporter,
    pub drift_interval: Duration,
    pub drift_overrides: HashMap<String, Duration>,
    /// Serialises work on one Azure resource (release ordering, no racing read-modify-writes).
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Consecutive transient failures per object, for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Reads shared between resources on one target.
    pub observations: observations::Observations,
    /// How long a non-idempotent call sent without an answer is given to show its effect in
    /// Azure before it is considered lost and sent again.
    pub unconfirmed_wait: Duration,
    /// The process-wide kill switch (set while the freeze ConfigMap exists): no Azure call is
    /// started, release included, until it is lifted.
    pub frozen: Arc<std::sync::atomic::AtomicBool>,
    /// Who may contain what: the policies, and the blast-radius bookkeeping.
    pub guard: Arc<crate::guard::Guard>,
    /// Seals the records release and actions act on (tamper-proof status).
    pub seal: seal::Seal,
    /// Clients of the additional tenants (lowercase id); `az` is the default tenant's.
    pub tenants: HashMap<String, Clients>,
}

impl Ctx {
    pub fn new(
        client: kube::Client,
        az: Clients,
        metrics: Arc<Metrics>,
        reporter: kube::runtime::events::Reporter,
        drift_interval: Duration,
        drift_overrides: HashMap<String, Duration>,
        guard: Arc<crate::guard::Guard>,
    ) -> Self {
        Self {
            client,
            az,
            metrics,
            reporter,
            drift_interval,
            drift_overrides,
            locks: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            observations: Default::default(),
            unconfirmed_wait: Duration::from_secs(600),
            frozen: Default::default(),
            guard,
            seal: Default::default(),
            tenants: HashMap::new(),
        }
    }

    /// The clients for a containment's `spec.tenantId` (none: the default tenant); `None`
    /// when that tenant is not configured.
    pub fn clients_for(&self, tenant: Option<&str>) -> Option<&Clients> {
        match tenant {
            None => Some(&self.az),
            Some(t) if t.eq_ignore_ascii_case(&self.guard.default_tenant) => Some(&self.az),
            Some(t) => self.tenants.get(&t.to_ascii_lowercase()),
        }
    }

    /// Whether the kill switch is on.
    pub fn frozen(&self) -> bool {
        self.frozen.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Serialise work on one Azure target. The entry (and the target's read epoch, when no
    /// shared read is cached) is dropped once nobody holds or waits for it, so the maps do not
    /// grow with every target ever seen.
    async fn lock_target(&self, target: &str) -> TargetGuard<'_> {
        let key = target.to_ascii_lowercase();
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        TargetGuard {
            cx: self,
            key,
            guard: Some(m.lock_owned().await),
        }
    }

    fn failure(&self, key: &str, failed: bool) -> u32 {
        let mut m = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failed {
            let n = m.entry(key.to_string()).or_default();
            *n += 1;
            *n
        } else {
            m.remove(key);
            0
        }
    }

    /// The drift-check interval for a kind, with ±10 % jitter so checks spread out.
    pub fn drift_after(&self, kind: &str) -> Duration {
        self.drift_base(kind)
            .mul_f64(0.9 + rand::random::<f64>() * 0.2)
    }

    pub fn drift_base(&self, kind: &str) -> Duration {
        self.drift_overrides
            .get(kind)
            .copied()
            .unwrap_or(self.drift_interval)
    }
}
