//! The guard's view of the cluster: the `ContainmentPolicy` objects and the labels of the
//! watched namespaces, kept by watches; a signal when what they decide may have changed (every
//! controller then re-evaluates its resources); and, for a cluster-wide operator, each policy's
//! status (the namespaces it covers).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::{Ledger, Request, Verdict, covers, evaluate};
use crate::api::approval::ContainmentApproval;
use crate::api::policy::{ContainmentPolicy, ContainmentPolicyStatus};

/// A watch error, and whether it lasts (denied, or the resource type is not served) rather
/// than heals with a relist (410 Expired, 5xx, a dropped connection).
struct Failure {
    message: String,
    lasting: bool,
}

impl Failure {
    fn of(e: watcher::Error) -> Failure {
        let code = match &e {
            watcher::Error::InitialListFailed(kube::Error::Api(s))
            | watcher::Error::WatchStartFailed(kube::Error::Api(s))
            | watcher::Error::WatchFailed(kube::Error::Api(s)) => Some(s.code),
            watcher::Error::WatchError(s) => Some(s.code),
            _ => None,
        };
        Failure {
            message: e.to_string(),
            lasting: matches!(code, Some(401 | 403 | 404)),
        }
    }
}

pub struct Guard {
    policies: Store<ContainmentPolicy>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    approvals: Store<ContainmentApproval>,
    pub ledger: Ledger,
    /// `spec.tenantId` when unset, and what an allowance without `tenants` means.
    pub default_tenant: String,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Guard {
    /// Starts the watches (of the one watched namespace, or of all) and returns once both have
    /// their initial state; fails when they cannot be read: a guard that cannot see the
    /// policies must not let anything through, nor deny everything silently.
    pub async fn start(
        client: kube::Client,
        watch_namespace: Option<String>,
        default_tenant: String,
    ) -> anyhow::Result<Arc<Guard>> {
        let (policies, pw) = reflector::store::<ContainmentPolicy>();
        let (namespaces, nw) = reflector::store::<PartialObjectMeta<Namespace>>();
        let (approvals, aw) = reflector::store::<ContainmentApproval>();
        let (changed, _) = tokio::sync::watch::channel(0);
        let guard = Arc::new(Guard {
            policies,
            namespaces,
            approvals,
            ledger: Ledger::default(),
            default_tenant,
            changed,
        });
        let ns_config = match &watch_namespace {
            Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
            None => watcher::Config::default(),
        };
        let policy_events = watcher(
            Api::<ContainmentPolicy>::all(client.clone()),
            Default::default(),
        )
        .default_backoff()
        .reflect(pw)
        .map(|e| e.map(|_| ()).map_err(Failure::of));
        let ns_events = watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            ns_config,
        )
        .default_backoff()
        .reflect(nw)
        .map(|e| e.map(|_| ()).map_err(Failure::of));
        let approvals_api: Api<ContainmentApproval> = match &watch_namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let approval_events = watcher(approvals_api, Default::default())
            .default_backoff()
            .reflect(aw)
            .map(|e| e.map(|_| ()).map_err(Failure::of));
        let (err_tx, mut err_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let g = guard.clone();
        tokio::spawn(async move {
            let mut events = futures::stream::select_all([
                policy_events.boxed(),
                ns_events.boxed(),
                approval_events.boxed(),
            ]);
            let mut last = None;
            while let Some(ev) = events.next().await {
                if let Err(e) = ev {
                    // Only what will not heal by itself ends the start-up wait; an expired
                    // resource version or a restarting API server is relisted with backoff.
                    if e.lasting {
                        let _ = err_tx.send(e.message.clone());
                    }
                    tracing::warn!(error = %e.message, "watching ContainmentPolicies or namespaces failed; retrying");
                    continue;
                }
                let now = g.fingerprint();
                if last.as_ref() != Some(&now) {
                    last = Some(now);
                    g.changed.send_modify(|n| *n += 1);
                }
            }
        });
        let ready = async {
            guard.policies.wait_until_ready().await?;
            guard.namespaces.wait_until_ready().await?;
            guard.approvals.wait_until_ready().await
        };
        let outcome: anyhow::Result<()> = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(30), ready) => match r {
                Err(_) => Err(anyhow::anyhow!("no answer in 30 s")),
                Ok(r) => r.context("policy watch ended"),
            },
            Some(e) = err_rx.recv() => Err(anyhow::anyhow!("{e}")),
        };
        outcome.map_err(|e| {
            anyhow::anyhow!(
                "cannot read ContainmentPolicies, namespaces and ContainmentApprovals ({e}; RBAC: get/list/watch containmentpolicies.containment.defenderc2.io and namespaces cluster-wide, containmentapprovals where containments are watched)"
            )
        })?;
        Ok(guard)
    }

    /// What decides verdicts in this process: the policies that cover a watched namespace or
    /// protect something, and the watched namespaces' labels. Other changes (another tenant's
    /// policy, in a namespace this operator does not watch) wake nothing.
    fn fingerprint(&self) -> String {
        let ns = self.namespaces.state();
        let mut relevant: Vec<(String, String)> = self
            .policies
            .state()
            .iter()
            .filter(|p| {
                !p.spec.protected.is_empty()
                    || ns.iter().any(|n| {
                        covers(
                            p,
                            &n.name_any(),
                            n.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                        )
                    })
            })
            .map(|p| {
                (
                    p.name_any(),
                    serde_json::to_string(&p.spec).unwrap_or_default(),
                )
            })
            .collect();
        relevant.sort();
        let mut labels: Vec<(String, BTreeMap<String, String>)> = ns
            .iter()
            .map(|n| (n.name_any(), n.metadata.labels.clone().unwrap_or_default()))
            .collect();
        labels.sort();
        let mut approvals: Vec<String> = self
            .approvals
            .state()
            .iter()
            .map(|a| {
                format!(
                    "{}/{}:{:?}",
                    a.namespace().unwrap_or_default(),
                    a.name_any(),
                    a.spec
                )
            })
            .collect();
        approvals.sort();
        format!("{relevant:?}{labels:?}{approvals:?}")
    }

    /// Fires whenever a verdict may have changed.
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        let rx = self.changed.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }

    pub fn policies(&self) -> Vec<ContainmentPolicy> {
        self.policies
            .state()
            .iter()
            .map(|p| p.as_ref().clone())
            .collect()
    }

    pub fn labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.namespaces
            .state()
            .iter()
            .find(|n| n.name_any() == namespace)
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default()
    }

    /// The approvals in `namespace`.
    pub fn approvals(&self, namespace: &str) -> Vec<ContainmentApproval> {
        self.approvals
            .state()
            .iter()
            .filter(|a| a.namespace().as_deref() == Some(namespace))
            .map(|a| a.as_ref().clone())
            .collect()
    }

    pub fn evaluate(&self, req: &Request) -> Verdict {
        evaluate(&self.policies(), req)
    }

    /// Keeps every policy's status (covered namespaces) current. Only a cluster-wide operator
    /// sees every namespace, so only it writes these.
    pub async fn publish_status(self: Arc<Self>, client: kube::Client) {
        let api: Api<ContainmentPolicy> = Api::all(client);
        let mut changes = Box::pin(self.changes());
        loop {
            for p in self.policies.state() {
                let status = self.status_of(&p);
                if p.status
                    .as_ref()
                    .map(|s| (&s.covered_namespaces, s.observed_generation))
                    == Some((&status.covered_namespaces, status.observed_generation))
                {
                    continue;
                }
                let patch = serde_json::json!({"status": status});
                if let Err(e) = api
                    .patch_status(
                        &p.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    tracing::warn!(policy = %p.name_any(), error = %e, "cannot write the policy's status");
                }
            }
            // Also now and then: a status write lost to a conflict is retried.
            let _ = tokio::time::timeout(Duration::from_secs(60), changes.next()).await;
        }
    }

    fn status_of(&self, p: &ContainmentPolicy) -> ContainmentPolicyStatus {
        let mut covered: Vec<String> = self
            .namespaces
            .state()
            .iter()
            .filter(|n| {
                covers(
                    p,
                    &n.name_any(),
                    n.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                )
            })
            .map(|n| n.name_any())
            .collect();
        covered.sort();
        let message = if p.spec.suspend {
            format!(
                "suspended: nothing it allows is sent to Azure ({} namespace(s) covered)",
                covered.len()
            )
        } else {
            format!("covers {} namespace(s)", covered.len())
        };
        let last = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .cloned();
        let reason = if p.spec.suspend {
            "Suspended"
        } else {
            "Accepted"
        };
        let condition = Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: reason.into(),
            message: message.clone(),
            observed_generation: p.metadata.generation,
            last_transition_time: last
                .filter(|c| c.reason == reason)
                .map(|c| c.last_transition_time)
                .unwrap_or_else(|| Time(jiff::Timestamp::now())),
        };
        ContainmentPolicyStatus {
            observed_generation: p.metadata.generation,
            conditions: vec![condition],
            covered_namespaces: covered,
        }
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;
    use kube::core::Status;

    /// A start-up relist after "too old resource version" (seen when the operator starts right
    /// after many writes) must not end the process; being denied must.
    #[test]
    fn expired_and_server_errors_heal_denied_and_missing_last() {
        let watch = |code| {
            Failure::of(watcher::Error::WatchError(
                Status::failure("too old resource version: 340 (344)", "Expired")
                    .with_code(code)
                    .boxed(),
            ))
        };
        let list = |code| {
            Failure::of(watcher::Error::InitialListFailed(kube::Error::Api(
                Status::failure("denied", "Forbidden")
                    .with_code(code)
                    .boxed(),
            )))
        };
        assert!(!watch(410).lasting);
        assert!(!list(500).lasting);
        assert!(!list(503).lasting);
        assert!(list(403).lasting);
        assert!(list(404).lasting);
        assert!(watch(403).lasting);
        assert!(
            list(403).message.contains("denied"),
            "{}",
            list(403).message
        );
    }
}
