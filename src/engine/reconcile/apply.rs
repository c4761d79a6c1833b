//! One reconcile of a live (not deleted) containment, as a pipeline of named phases:
//!
//! resolve → lock (fresh read) → records (sealed) → suspend → guard → expiry → resume → observe (+ protected)
//! → decide → prepare → plan → report (DryRun, Observe) | act → verify → complete.
//!
//! Each phase either hands the next one what it found or ends the reconcile with the action to
//! requeue by ([`Next::Stop`]). Every status write goes through [`Run`].

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::{
    Run, Shared, composed, key_of, kind_of, now, observe_shared, release_or_hand_over, resolve,
    schedule_of,
};
use crate::api::common::{ActionLedger, ActionPhase, CommonSpec, Mode};
use crate::azure::ResourceId;
use crate::engine::composition::{self, OnTarget};
use crate::engine::conditions::{self, State};
use crate::engine::ledger::{self, RunDecision};
use crate::engine::{Assessment, Control, Kind, RunError, Step, TargetGuard, Wait, observations};
use crate::guard;
use crate::metrics::KindLabel;
use kube::ResourceExt;

/// What a phase hands on: go on with `T`, or end this reconcile with `Action`.
enum Next<T> {
    Go(T),
    Stop(Action),
}

/// `let x = go!(phase)`: the phase's value, or return its requeue.
macro_rules! go {
    ($e:expr) => {
        match $e {
            Next::Go(v) => v,
            Next::Stop(a) => return Ok(a),
        }
    };
}

/// A run's end (a stall, a failure) as a phase result.
fn stop<T>(r: Result<Action, RunError>) -> Result<Next<T>, RunError> {
    r.map(Next::Stop)
}

pub(super) async fn apply<C: Control>(obj: Arc<C::K>, sh: &Shared<C>) -> Result<Action, RunError> {
    let target = go!(resolve_target(&obj, sh).await?);
    let (obj, _lock) = go!(lock_and_read(obj, sh, &target).await?);
    let mut p = Pipeline::new(obj, sh, target);
    go!(p.records().await?);
    go!(p.suspend().await?);
    go!(p.guard().await?);
    go!(p.expiry().await?);
    go!(p.resume().await?);
    let observed = go!(p.observe().await?);
    go!(p.protected(&observed).await?);
    go!(p.decide(&observed).await?);
    let observed = go!(p.prepare(observed).await?);
    let (desired, assessment) = go!(p.plan(&observed).await?);
    go!(p.report(&assessment).await?);
    let outcome = go!(p.act(&desired, &observed, &assessment).await?);
    p.complete(&assessment, outcome).await
}

/// resolve: the Azure target, and the resource registered among its peers (coalescing kinds).
async fn resolve_target<C: Control>(
    obj: &Arc<C::K>,
    sh: &Shared<C>,
) -> Result<Next<ResourceId>, RunError> {
    let target = match resolve::<C>(obj) {
        Ok(t) => t,
        Err(msg) => {
            return stop(
                Run::new(obj.clone(), sh)
                    .stalled("InvalidTarget", msg)
                    .await,
            );
        }
    };
    // The cache is complete once the initial list is in; peers are read from it.
    super::cache_ready(&sh.store).await;
    if composition::enforcing(obj.as_ref(), Timestamp::now()) && composition::admitted(obj.as_ref())
    {
        let peers = composition::on_target::<C>(&sh.store.state(), obj, &target);
        sh.control.register(obj, &target, &peers);
    } else {
        sh.control.unregister(obj, &target);
    }
    Ok(Next::Go(target))
}

/// lock: the target's lock and a fresh read; one being deleted is cleanup's business.
async fn lock_and_read<'a, C: Control>(
    obj: Arc<C::K>,
    sh: &'a Shared<C>,
    target: &ResourceId,
) -> Result<Next<(Arc<C::K>, TargetGuard<'a>)>, RunError> {
    match super::locked_fresh(obj.as_ref(), sh, target).await? {
        Some((obj, lock)) if obj.meta().deletion_timestamp.is_none() => Ok(Next::Go((obj, lock))),
        _ => Ok(Next::Stop(Action::await_change())),
    }
}

/// What act hands to complete.
struct Outcome {
    drifted: bool,
    message: String,
}

/// The state one reconcile carries from phase to phase.
struct Pipeline<'a, C: Control> {
    run: Run<'a, C>,
    sh: &'a Shared<C>,
    obj: Arc<C::K>,
    target: ResourceId,
    common: CommonSpec,
    on: OnTarget<C::K>,
    /// The peers the last run saw: a change is a new plan, not drift.
    shared_before: Vec<String>,
    drift_after: Duration,
    is_action: bool,
    /// The policy that allowed this run (its writes count against its limits).
    policy: Option<String>,
}

impl<'a, C: Control> Pipeline<'a, C> {
    fn new(obj: Arc<C::K>, sh: &'a Shared<C>, target: ResourceId) -> Self {
        let mut run = Run::new(obj.clone(), sh);
        run.status.target = Some(target.id.clone());
        run.status.target_name = Some(short(&C::target_name(&obj, &target)));
        let on = super::on_target_sealed(sh, &obj, &target);
        let shared_before = std::mem::take(&mut run.status.shared_with);
        if C::COMPOSES {
            run.status.shared_with = on
                .enforcing
                .iter()
                .map(|p| composition::name_of(p.as_ref()))
                .collect();
        }
        Self {
            common: obj.common().into_owned(),
            drift_after: sh.cx.drift_after(&kind_of::<C>()),
            is_action: C::DEFAULT_RELEASE.is_none(),
            run,
            sh,
            obj,
            target,
            on,
            shared_before,
            policy: None,
        }
    }

    /// records: the status this run acts on is the operator's own (its seal verifies).
    async fn records(&mut self) -> Result<Next<()>, RunError> {
        match self.run.tampered.clone() {
            None => Ok(Next::Go(())),
            Some(why) => stop(self.run.stalled(crate::engine::seal::TAMPERED, why).await),
        }
    }

    /// suspend: a suspended containment, or any while the kill switch is on, makes no Azure
    /// call at all (no observe, no correction, no release at expiry). A suspended one waits for
    /// its spec to change; a frozen one re-checks the switch.
    async fn suspend(&mut self) -> Result<Next<()>, RunError> {
        let (message, next) = if self.sh.cx.frozen() {
            (
                super::FROZEN.to_string(),
                Action::requeue(super::FROZEN_RECHECK),
            )
        } else if self.common.suspend {
            (
                "spec.suspend is true: nothing is observed, applied or released until it is false (deleting still releases)".to_string(),
                Action::await_change(),
            )
        } else {
            return Ok(Next::Go(()));
        };
        self.run
            .finish(State::Progressing {
                reason: "Suspended".into(),
                message,
                keep_ready: false,
            })
            .await?;
        Ok(Next::Stop(next))
    }

    /// guard: a policy must allow this namespace, kind, tenant and target (deny by default),
    /// the target must not be protected, and a new Enforce containment must fit the policy's
    /// blast radius. Nothing is sent to Azure otherwise. Expiry comes after: a containment whose
    /// allowance was revoked is released by deleting it, not by the operator on its own.
    async fn guard(&mut self) -> Result<Next<()>, RunError> {
        let cx = &self.sh.cx;
        let kind = kind_of::<C>();
        let ns = self.obj.namespace().unwrap_or_default();
        let labels = cx.guard.labels(&ns);
        let tenant = self
            .common
            .tenant_id
            .clone()
            .unwrap_or_else(|| cx.guard.default_tenant.clone());
        let req = guard::Request {
            namespace: &ns,
            namespace_labels: &labels,
            kind: &kind,
            tenant: &tenant,
            default_tenant: &cx.guard.default_tenant,
            target: &self.target,
            secret_namespaces: self.sh.control.secret_namespaces(&self.obj),
        };
        let (policy, limits) = match cx.guard.evaluate(&req) {
            guard::Verdict::Denied { reason, message } => {
                return self.denied(reason, message, Duration::from_secs(300)).await;
            }
            guard::Verdict::Allowed {
                policy,
                suspended: true,
                ..
            } => {
                self.run.status.policy = Some(policy.clone());
                self.run
                    .finish(State::Progressing {
                        reason: "Suspended".into(),
                        message: format!("ContainmentPolicy {policy} is suspended (spec.suspend): nothing is observed, applied or released until it is resumed (deleting still releases)"),
                        keep_ready: false,
                    })
                    .await?;
                return Ok(Next::Stop(Action::await_change()));
            }
            guard::Verdict::Allowed {
                policy,
                limits,
                approval,
                ..
            } => {
                if approval
                    && self.common.mode == Mode::Enforce
                    && let Next::Stop(a) = self.approval(&policy).await?
                {
                    return Ok(Next::Stop(a));
                }
                (policy, limits)
            }
        };
        if let Some(why) = super::tenant_not_configured(self.sh, self.obj.as_ref()) {
            return self
                .denied(super::TENANT_NOT_CONFIGURED, why, Duration::from_secs(300))
                .await;
        }
        let key = key_of(self.obj.as_ref());
        if self.common.mode != Mode::Enforce {
            cx.guard.ledger.forget(&kind, &key);
        } else if self.run.status.policy.as_deref() != Some(policy.as_str()) {
            // Admitted ones are counted from the cache (and from this process's own admissions,
            // which the cache may not show yet); an admitted one is never limited again.
            let store = self.sh.store.state();
            let cached = store
                .iter()
                .filter(|o| {
                    o.common().mode == Mode::Enforce
                        && o.common_status().and_then(|s| s.policy.as_deref())
                            == Some(policy.as_str())
                })
                .map(|o| key_of(o.as_ref()))
                .collect();
            let present = |k: &str| store.iter().any(|o| key_of(o.as_ref()) == k);
            if let Err(message) = cx
                .guard
                .ledger
                .admit(&policy, &kind, &key, &limits, &cached, present)
            {
                return self
                    .denied(guard::BLAST_RADIUS, message, Duration::from_secs(15))
                    .await;
            }
        }
        if self.run.status.policy.is_none()
            && composition::enforcing(self.obj.as_ref(), Timestamp::now())
        {
            // Newly admitted: its wants may now join a coalesced write.
            self.sh.control.register(&self.obj, &self.target, &self.on);
        }
        self.run.status.policy = Some(policy.clone());
        self.policy = Some(policy);
        Ok(Next::Go(()))
    }

    /// approval (four eyes): the current generation approved by someone other than the
    /// requester; until then Reconciling/AwaitingApproval and no Azure call. Approvals changing
    /// re-evaluate every resource (the guard's watch).
    async fn approval(&mut self, policy: &str) -> Result<Next<()>, RunError> {
        let ns = self.obj.namespace().unwrap_or_default();
        let requester = self.obj.annotations().get(guard::REQUESTED_BY).cloned();
        match guard::approved(
            &self.sh.cx.guard.approvals(&ns),
            &kind_of::<C>(),
            &self.obj.name_any(),
            self.run.generation.unwrap_or_default(),
            requester.as_deref(),
        ) {
            Ok(_) => Ok(Next::Go(())),
            Err(why) => {
                self.run
                    .finish(State::Progressing {
                        reason: guard::AWAITING_APPROVAL.into(),
                        message: format!("ContainmentPolicy {policy} requires approval: {why}"),
                        keep_ready: false,
                    })
                    .await?;
                Ok(Next::Stop(Action::await_change()))
            }
        }
    }

    /// protected: a target whose observed tags carry a policy's protected tag, or a device or
    /// identity a policy protects (by any of its names), is refused before anything is planned
    /// or sent. Both change in Azure, unseen by any watch: re-read at the drift interval.
    async fn protected(&mut self, observed: &C::Observed) -> Result<Next<()>, RunError> {
        let policies = self.sh.cx.guard.policies();
        let by_tag = self
            .sh
            .control
            .tags(observed)
            .and_then(|tags| guard::protected_by_tag(&policies, &self.target.id, &tags));
        let by_name = || {
            let (names, device) = match self.sh.control.subject(observed)? {
                crate::engine::Subject::Device(n) => (n, true),
                crate::engine::Subject::Identity(n) => (n, false),
            };
            names
                .iter()
                .find_map(|n| guard::protected_principal(&policies, n, device))
        };
        match by_tag.or_else(by_name) {
            Some(message) => {
                self.denied(guard::PROTECTED, message, self.drift_after)
                    .await
            }
            None => Ok(Next::Go(())),
        }
    }

    /// The guard refused: Stalled with its reason, counted, no longer admitted anywhere.
    async fn denied(
        &mut self,
        reason: &str,
        message: String,
        recheck: Duration,
    ) -> Result<Next<()>, RunError> {
        let kind = kind_of::<C>();
        self.sh
            .cx
            .guard
            .ledger
            .forget(&kind, &key_of(self.obj.as_ref()));
        self.sh
            .cx
            .metrics
            .guard_denials
            .get_or_create(&crate::metrics::KindReason {
                kind,
                reason: reason.to_string(),
            })
            .inc();
        self.run.status.policy = None;
        self.sh.control.unregister(&self.obj, &self.target);
        self.run.stalled(reason, message).await?;
        Ok(Next::Stop(Action::requeue(recheck)))
    }

    /// expiry: once `expiresAt` has passed, release what was applied (whatever the mode is now)
    /// once, then stay released. Enforcing again re-arms the release.
    async fn expiry(&mut self) -> Result<Next<()>, RunError> {
        let Some(exp) = self
            .common
            .expires_at
            .clone()
            .filter(|e| e.0 <= Timestamp::now())
        else {
            if self.common.mode == Mode::Enforce {
                self.run.status.released_time = None;
            }
            return Ok(Next::Go(()));
        };
        if self.run.status.released_time.is_none() {
            if let Err(e) = release_or_hand_over::<C>(&mut self.run, &self.target, &self.on).await {
                return stop(self.run.failed(e).await);
            }
            self.run.status.released_time = Some(now());
            self.run
                .event(
                    EventType::Normal,
                    "Expired",
                    "Release",
                    format!("expiresAt {} passed; released", exp.0),
                )
                .await;
        }
        self.run
            .finish(State::Ready {
                reason: "Expired".into(),
                message: format!("expired at {}; containment released", exp.0),
            })
            .await?;
        Ok(Next::Stop(Action::await_change()))
    }

    /// resume: a long-running operation from before a restart is polled to its end, never
    /// re-issued.
    async fn resume(&mut self) -> Result<Next<()>, RunError> {
        match self.run.await_operation().await {
            Ok(()) => Ok(Next::Go(())),
            Err(e) => stop(self.run.failed(e).await),
        }
    }

    /// observe: Azure's state. A converged resource's drift check may use what a sibling on the
    /// same target read since this one was last verified (never its own last read); a new or
    /// changed one only a read from the last moments.
    async fn observe(&mut self) -> Result<Next<C::Observed>, RunError> {
        let status = &self.run.status;
        let converged = conditions::get(&status.conditions, conditions::READY)
            .is_some_and(|c| c.status == "True" && c.observed_generation == self.run.generation);
        let since_verified = status
            .last_verified_time
            .as_ref()
            .and_then(|t| Duration::try_from(Timestamp::now().duration_since(t.0)).ok())
            // The stored time has second precision: up to a second older than the real check.
            .map(|d| d.saturating_sub(Duration::from_secs(1)))
            .unwrap_or_default();
        let max_age = if converged {
            since_verified.min(self.sh.cx.drift_base(&kind_of::<C>()))
        } else {
            observations::BURST_REUSE
        };
        match observe_shared(self.sh, &self.obj, &self.target, Some(max_age)).await {
            Ok(o) => Ok(Next::Go(o)),
            Err(e) => stop(self.run.azure_failed(e).await),
        }
    }

    /// decide (one-shot actions): whether a run is due, finished, or starts now; a new run's
    /// intent and evidence are recorded before any call.
    async fn decide(&mut self, observed: &C::Observed) -> Result<Next<()>, RunError> {
        if !self.is_action {
            if C::ONE_SHOT_STEPS && self.common.mode == Mode::Enforce {
                self.one_shot_run(observed).await?;
            }
            return Ok(Next::Go(()));
        }
        let decision = ledger::decide(
            self.obj.trigger(),
            schedule_of(self.obj.as_ref()),
            self.run.status.action.as_ref(),
            Timestamp::now(),
        );
        match decision {
            RunDecision::Done(next) => {
                let when = self
                    .run
                    .status
                    .action
                    .as_ref()
                    .and_then(|l| l.completed_time.as_ref())
                    .map(|t| t.0.to_string())
                    .unwrap_or_default();
                self.run
                    .finish(State::Ready {
                        reason: "Completed".into(),
                        message: format!("completed at {when}"),
                    })
                    .await?;
                self.succeeded();
                Ok(Next::Stop(match next {
                    Some(t) => Action::requeue(
                        Duration::try_from(t.duration_since(Timestamp::now()))
                            .unwrap_or(Duration::from_secs(1))
                            .min(Duration::from_secs(3600)),
                    ),
                    None => Action::await_change(),
                }))
            }
            RunDecision::Start(run_id) if self.common.mode == Mode::Enforce => {
                // A new run starts clean: the kind's fields (a submission id, a verdict) belong
                // to the run that wrote them.
                self.run.extra.clear();
                self.run.status.action = Some(ActionLedger {
                    run_id: run_id.clone(),
                    phase: ActionPhase::InProgress,
                    started_time: now(),
                    completed_time: None,
                    evidence: Some(self.sh.control.evidence(observed)),
                    done: Vec::new(),
                    sent: Vec::new(),
                });
                self.progress("Running", format!("run {run_id} started"));
                self.run.save().await?;
                Ok(Next::Go(()))
            }
            _ => Ok(Next::Go(())),
        }
    }

    /// prepare (actions, Enforce): what the run needs in place before its first call (the
    /// kind's [`Control::prepare`]), once its intent is recorded.
    async fn prepare(&mut self, observed: C::Observed) -> Result<Next<C::Observed>, RunError> {
        let run = match &self.run.status.action {
            Some(l)
                if self.is_action
                    && self.common.mode == Mode::Enforce
                    && l.phase == ActionPhase::InProgress =>
            {
                l.clone()
            }
            _ => return Ok(Next::Go(observed)),
        };
        let sh = self.sh;
        match sh
            .control
            .prepare(super::az(sh, self.obj.as_ref()), &self.obj, &run, observed)
            .await
        {
            Ok(o) => Ok(Next::Go(o)),
            Err(e) => stop(self.run.failed(e).await),
        }
    }

    /// An enforced kind's one-shot steps: the ledger of the current trigger (a new one, with
    /// the evidence before any call, when the trigger changed).
    async fn one_shot_run(&mut self, observed: &C::Observed) -> Result<(), RunError> {
        let run_id = ledger::run_id_for(self.obj.trigger());
        if self
            .run
            .status
            .action
            .as_ref()
            .is_some_and(|l| l.run_id == run_id)
        {
            return Ok(());
        }
        self.run.status.action = Some(ActionLedger {
            run_id,
            phase: ActionPhase::InProgress,
            started_time: now(),
            completed_time: None,
            evidence: Some(self.sh.control.evidence(observed)),
            done: Vec::new(),
            sent: Vec::new(),
        });
        self.run.save().await
    }

    /// plan: the state that satisfies every Enforce resource on the target, assessed against
    /// Azure from the target's one restore record (adopted when Enforce, so the last one to go
    /// restores). A kind that must wait for something in progress ends here.
    async fn plan(
        &mut self,
        observed: &C::Observed,
    ) -> Result<Next<(Arc<C::K>, Assessment)>, RunError> {
        let desired = match composed::<C>(self.sh, &self.obj, &self.on) {
            Ok(d) => d,
            Err(c) => {
                let message = format!(
                    "conflicts with {} {} on {}: {}; it stays in force, this one waits until it goes",
                    kind_of::<C>(),
                    c.with,
                    self.target.id,
                    c.why
                );
                return stop(self.run.stalled("ConflictsWith", message).await);
            }
        };
        let mut view = self.run.status.clone();
        if C::COMPOSES {
            view.restore = composition::shared_restore(
                &self.sh.control,
                &self.obj,
                self.run.status.restore.as_ref(),
                &self.on.holders,
            );
            if self.common.mode == Mode::Enforce {
                self.run.status.restore = view.restore.clone();
            }
        }
        let assessment = match self
            .sh
            .control
            .assess(&desired, &self.target, observed, &view)
        {
            Ok(a) => a,
            Err(stall) => {
                self.run.extra.extend(stall.extra);
                return stop(self.run.stalled(&stall.reason, stall.message).await);
            }
        };
        self.run.extra.extend(assessment.extra.clone());
        if let Some(w) = assessment.wait.clone()
            && assessment.steps.is_empty()
        {
            return self.waiting(w).await.map(Next::Stop);
        }
        Ok(Next::Go((desired, assessment)))
    }

    /// report (DryRun, Observe): the plan is published, nothing is sent.
    async fn report(&mut self, assessment: &Assessment) -> Result<Next<()>, RunError> {
        if self.common.mode == Mode::Enforce {
            self.run.status.plan.clear();
            return Ok(Next::Go(()));
        }
        self.run.status.plan = assessment.steps.iter().map(Step::render).collect();
        self.run.status.last_verified_time = Some(now());
        let state = match (self.common.mode, assessment.steps.is_empty()) {
            (_, true) => State::Ready {
                reason: "Compliant".into(),
                message: assessment.message.clone(),
            },
            (Mode::DryRun, false) => State::Ready {
                reason: "DryRun".into(),
                message: format!(
                    "{} request(s) planned, none sent: {}",
                    self.run.status.plan.len(),
                    assessment.message
                ),
            },
            _ => State::NotReady {
                reason: "NotCompliant".into(),
                message: assessment.message.clone(),
            },
        };
        self.run.finish(state).await?;
        self.succeeded();
        Ok(Next::Stop(Action::requeue(self.drift_after)))
    }

    /// act: calls whose answer was lost are resolved from evidence first; the prior state is
    /// recorded before the first write; a write on a contained target is drift; then each step
    /// is sent (and its operation followed) and the result verified.
    async fn act(
        &mut self,
        desired: &Arc<C::K>,
        observed: &C::Observed,
        assessment: &Assessment,
    ) -> Result<Next<Outcome>, RunError> {
        if (self.is_action || C::ONE_SHOT_STEPS)
            && let Some(wait) = self.run.unconfirmed(&assessment.steps).await
        {
            return self.waiting(wait).await.map(Next::Stop);
        }
        // Also when another resource's coalesced write already did the work, so that this
        // one's release still knows what it owns.
        if let Some(record) = assessment.record.clone() {
            self.run.status.restore = Some(record);
        }
        let mut outcome = Outcome {
            drifted: false,
            message: assessment.message.clone(),
        };
        if assessment.steps.is_empty() {
            return Ok(Next::Go(outcome));
        }
        outcome.drifted = self.drift(assessment).await;
        let n = assessment.steps.len();
        self.progress("Applying", format!("{n} request(s) to send"));
        self.run.save().await?;
        for step in &assessment.steps {
            if let Err(e) = self.run.execute(step).await {
                return stop(self.run.failed(e).await);
            }
            if let Some(p) = &self.policy {
                self.sh.cx.guard.ledger.wrote(p);
            }
        }
        let carried: Vec<Arc<C::K>> = self
            .sh
            .control
            .carried(&assessment.steps, &self.on.enforcing)
            .into_iter()
            .cloned()
            .collect();
        super::wake(self.sh, &carried);
        outcome.message = match self.verify(desired, observed, assessment).await? {
            Next::Go(message) => message,
            Next::Stop(a) => return Ok(Next::Stop(a)),
        };
        Ok(Next::Go(outcome))
    }

    /// Observe the target again, with the status as it is now (ledger and ids included).
    async fn read_back(&mut self) -> Result<Next<C::Observed>, RunError> {
        let now = self
            .run
            .current_object()
            .unwrap_or_else(|| self.obj.as_ref().clone());
        match observe_shared(self.sh, &now, &self.target, None).await {
            Ok(o) => Ok(Next::Go(o)),
            Err(e) => self.run.azure_failed(e).await.map(Next::Stop),
        }
    }

    /// A write on a target this resource had contained (same generation, same peers) means
    /// someone undid it: count it, and say so.
    async fn drift(&mut self, assessment: &Assessment) -> bool {
        // Peers arriving or leaving change what is wanted: that is a new plan, not drift.
        let drifted = !self.is_action
            && conditions::was_contained(&self.run.status.conditions, self.run.generation)
            && self.shared_before == self.run.status.shared_with;
        if drifted {
            let kind = kind_of::<C>();
            self.run.status.drift_count += 1;
            self.run.status.last_drift_time = Some(now());
            self.sh
                .cx
                .metrics
                .drifts
                .get_or_create(&KindLabel { kind })
                .inc();
            self.run
                .event(
                    EventType::Warning,
                    "DriftDetected",
                    "Verify",
                    format!(
                        "containment was undone on {}: {}",
                        self.target.id, assessment.message
                    ),
                )
                .await;
        }
        drifted
    }

    /// verify: from Azure's acknowledgements where the kind can derive the result from them
    /// (offered to siblings on the target), otherwise by reading back (observing with the
    /// status as it is now, ledger and ids included; retried within the kind's read lag while
    /// a replica may still show the state before the write). Returns the Ready message.
    async fn verify(
        &mut self,
        desired: &Arc<C::K>,
        observed: &C::Observed,
        assessment: &Assessment,
    ) -> Result<Next<String>, RunError> {
        let derived = if C::SHARED_OBSERVATION {
            self.sh.control.after_steps(observed, &assessment.steps)
        } else {
            None
        };
        if let Some(o) = &derived {
            let cache = &self.sh.cx.observations;
            let epoch = cache.epoch(&self.target.id);
            cache.put(
                std::any::type_name::<C>(),
                &self.target.id,
                epoch,
                o.clone(),
            );
        }
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(250);
        let assessed = loop {
            let observed = match &derived {
                Some(o) => o.clone(),
                None => match self.read_back().await? {
                    Next::Go(o) => o,
                    Next::Stop(a) => return Ok(Next::Stop(a)),
                },
            };
            let a = self
                .sh
                .control
                .assess(desired, &self.target, &observed, &self.run.status);
            let unseen = a.as_ref().is_ok_and(|a| !a.steps.is_empty());
            if !unseen || derived.is_some() || started.elapsed() + pause > C::READ_LAG {
                break a;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        };
        match assessed {
            Ok(a) if a.steps.is_empty() && a.wait.is_none() => {
                self.run.extra.extend(a.extra);
                Ok(Next::Go(a.message))
            }
            Ok(a) if a.steps.is_empty() => {
                self.run.extra.extend(a.extra);
                self.waiting(a.wait.unwrap_or_default())
                    .await
                    .map(Next::Stop)
            }
            // An action's next phase (e.g. deleting what the finished call created): go on.
            Ok(a)
                if self.is_action
                    && !a
                        .steps
                        .iter()
                        .any(|s| assessment.steps.iter().any(|x| x.what == s.what)) =>
            {
                self.run.extra.extend(a.extra);
                self.run
                    .finish(State::Progressing {
                        reason: "Applying".into(),
                        message: a.message,
                        keep_ready: false,
                    })
                    .await?;
                Ok(Next::Stop(Action::requeue(Duration::from_millis(250))))
            }
            Ok(a) => {
                self.run
                    .finish(State::Progressing {
                        reason: "AwaitingAzure".into(),
                        message: format!("applied; Azure does not show it yet: {}", a.message),
                        keep_ready: false,
                    })
                    .await?;
                Ok(Next::Stop(Action::requeue(Duration::from_secs(5))))
            }
            Err(stall) => {
                self.run.extra.extend(stall.extra);
                self.run.stalled(&stall.reason, stall.message).await
            }
            .map(Next::Stop),
        }
    }

    /// complete: an action's run is Completed (its after-run hook done); a containment is Ready
    /// (Contained, or DriftCorrected until the spec changes), re-checked at the drift interval
    /// or at expiry, whichever is first.
    async fn complete(
        mut self,
        assessment: &Assessment,
        outcome: Outcome,
    ) -> Result<Action, RunError> {
        if self.is_action {
            return self.complete_action(assessment, outcome.message).await;
        }
        self.run.status.last_verified_time = Some(now());
        // One-shot steps of an enforced kind: compliant means this trigger's are all done (a
        // call still unanswered is no longer planned because the evidence shows it).
        if let Some(l) = self.run.status.action.as_mut()
            && l.phase == ActionPhase::InProgress
        {
            for s in std::mem::take(&mut l.sent) {
                ledger::done(Some(l), &s.what);
            }
            l.phase = ActionPhase::Completed;
            l.completed_time = Some(now());
        }
        let corrected_before = conditions::get(&self.run.status.conditions, conditions::READY)
            .is_some_and(|c| {
                c.reason == "DriftCorrected" && c.observed_generation == self.run.generation
            });
        let reason = if outcome.drifted || corrected_before {
            "DriftCorrected"
        } else {
            "Contained"
        };
        if outcome.drifted {
            self.run
                .event(
                    EventType::Normal,
                    "DriftCorrected",
                    "Apply",
                    format!("re-applied on {}", self.target.id),
                )
                .await;
        }
        self.run
            .finish(State::Ready {
                reason: reason.into(),
                message: outcome.message,
            })
            .await?;
        self.succeeded();
        let until_expiry = self
            .common
            .expires_at
            .as_ref()
            .and_then(|t| Duration::try_from(t.0.duration_since(Timestamp::now())).ok());
        Ok(Action::requeue(match until_expiry {
            Some(d) => d.min(self.drift_after),
            None => self.drift_after,
        }))
    }

    async fn complete_action(
        mut self,
        assessment: &Assessment,
        message: String,
    ) -> Result<Action, RunError> {
        let in_progress = self
            .run
            .status
            .action
            .clone()
            .filter(|l| l.phase == ActionPhase::InProgress);
        if let Some(run) = in_progress {
            let sh = self.sh;
            if let Err(e) = sh
                .control
                .after_run(
                    &sh.cx,
                    super::az(sh, self.obj.as_ref()),
                    &self.obj,
                    &self.target,
                    &run,
                )
                .await
            {
                return self.run.failed(e).await;
            }
            if let Some(l) = self.run.status.action.as_mut() {
                l.phase = ActionPhase::Completed;
                l.completed_time = Some(now());
                l.sent.clear();
            }
            self.run
                .event(
                    EventType::Normal,
                    "Completed",
                    "Action",
                    assessment.message.clone(),
                )
                .await;
        }
        self.run.status.last_verified_time = Some(now());
        self.run
            .finish(State::Ready {
                reason: "Completed".into(),
                message,
            })
            .await?;
        self.succeeded();
        let next = schedule_of(self.obj.as_ref()).map(|d| d.min(Duration::from_secs(3600)));
        Ok(next
            .map(Action::requeue)
            .unwrap_or_else(Action::await_change))
    }

    /// Reconciling with `reason` (the status is saved with the next write).
    fn progress(&mut self, reason: &str, message: String) {
        conditions::apply(
            &mut self.run.status.conditions,
            &State::Progressing {
                reason: reason.into(),
                message,
                keep_ready: false,
            },
            self.run.generation,
            &now(),
        );
    }

    /// Nothing to send now, not done either: Reconciling, re-checked after the wait.
    async fn waiting(&mut self, w: Wait) -> Result<Action, RunError> {
        self.run
            .finish(State::Progressing {
                reason: w.reason,
                message: w.message,
                keep_ready: false,
            })
            .await?;
        Ok(Action::requeue(w.recheck))
    }

    /// The run went through: the failure backoff of this resource starts over.
    fn succeeded(&self) {
        self.sh.cx.failure(&key_of(self.obj.as_ref()), false);
    }
}

/// At most 40 characters (a URL or a hash as indicator value would widen every row).
fn short(name: &str) -> String {
    const MAX: usize = 40;
    if name.chars().count() <= MAX {
        return name.to_string();
    }
    let head: String = name.chars().take(MAX - 1).collect();
    format!("{head}…")
}
