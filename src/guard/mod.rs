//! The guard: who may contain what, where (design §6). Pure evaluation of the
//! `ContainmentPolicy` objects against one containment's resolved target, and the blast-radius
//! bookkeeping (admitted containments, writes in the last hour) the engine's guard phase uses.
//!
//! Deny by default: no covering policy, or none whose allowance matches, is `OutOfScope`.
//! Protection is global: an asset any policy protects is refused to every namespace.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod live;

pub use live::Guard;

use crate::api::policy::{Allowance, ContainmentPolicy, Limits};
use crate::azure::ResourceId;

/// What one containment asks for, as the guard sees it.
pub struct Request<'a> {
    pub namespace: &'a str,
    pub namespace_labels: &'a BTreeMap<String, String>,
    pub kind: &'a str,
    /// `spec.tenantId`, or the operator's default tenant.
    pub tenant: &'a str,
    pub default_tenant: &'a str,
    pub target: &'a ResourceId,
    /// Namespaces of Secrets the containment writes or reads.
    pub secret_namespaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allowed {
        policy: String,
        limits: Limits,
        /// The allowing policy is suspended: nothing may be sent.
        suspended: bool,
        /// The allowing policy requires four-eyes approval for this kind.
        approval: bool,
    },
    Denied {
        /// `OutOfScope` or `Protected`.
        reason: &'static str,
        message: String,
    },
}

pub const OUT_OF_SCOPE: &str = "OutOfScope";
pub const PROTECTED: &str = "Protected";
pub const BLAST_RADIUS: &str = "BlastRadiusExceeded";

/// Whether `policy` covers the namespace.
pub fn covers(
    policy: &ContainmentPolicy,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let ns = &policy.spec.namespaces;
    ns.names.iter().any(|n| n == namespace)
        || ns.selector.as_ref().is_some_and(|s| {
            s.match_labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|l| l == v))
        })
}

/// The guard's decision for `req` under `policies` (sorted by name for a stable choice).
pub fn evaluate(policies: &[ContainmentPolicy], req: &Request) -> Verdict {
    if let Some(message) = protected_resource(policies, &req.target.id) {
        return Verdict::Denied {
            reason: PROTECTED,
            message,
        };
    }
    let mut sorted: Vec<&ContainmentPolicy> = policies
        .iter()
        .filter(|p| covers(p, req.namespace, req.namespace_labels))
        .collect();
    sorted.sort_by_key(|p| p.metadata.name.clone());
    if sorted.is_empty() {
        return Verdict::Denied {
            reason: OUT_OF_SCOPE,
            message: format!(
                "no ContainmentPolicy covers namespace {}: {} on {} is not allowed (deny by default)",
                req.namespace, req.kind, req.target.id
            ),
        };
    }
    let mut missing = Vec::new();
    let mut allowed: Option<Verdict> = None;
    for p in sorted {
        let name = p.metadata.name.clone().unwrap_or_default();
        let miss: Vec<String> = p
            .spec
            .allow
            .iter()
            .map(|a| mismatch(a, req).err().unwrap_or_default())
            .collect();
        if miss.iter().any(String::is_empty) && !p.spec.allow.is_empty() {
            let verdict = Verdict::Allowed {
                policy: name,
                limits: p.spec.limits.unwrap_or_default(),
                suspended: p.spec.suspend,
                approval: p.spec.approval.as_ref().is_some_and(|a| {
                    a.kinds
                        .iter()
                        .any(|k| k == "*" || k.eq_ignore_ascii_case(req.kind))
                }),
            };
            // A suspended allowing policy wins: suspension is the safe answer.
            if p.spec.suspend {
                return verdict;
            }
            allowed.get_or_insert(verdict);
        } else if p.spec.allow.is_empty() {
            missing.push(format!("policy {name} allows nothing"));
        } else {
            missing.push(format!("policy {name}: {}", miss.join("; ")));
        }
    }
    allowed.unwrap_or_else(|| Verdict::Denied {
        reason: OUT_OF_SCOPE,
        message: format!(
            "namespace {} may not use {} on {} ({}): {}",
            req.namespace,
            req.kind,
            req.target.id,
            scope_of(req),
            missing.join(" | ")
        ),
    })
}

fn scope_of(req: &Request) -> String {
    let mut s = format!("tenant {}", req.tenant);
    if !req.target.subscription.is_empty() {
        s.push_str(&format!(", subscription {}", req.target.subscription));
    }
    if let Some(rg) = &req.target.resource_group {
        s.push_str(&format!(", resource group {rg}"));
    }
    s
}

/// Ok, or the first dimension of `a` that does not allow `req`.
fn mismatch(a: &Allowance, req: &Request) -> Result<(), String> {
    let any = |l: &[String], v: &str| l.iter().any(|x| x == "*" || x.eq_ignore_ascii_case(v));
    if !any(&a.kinds, req.kind) {
        return Err(format!("kinds {:?} do not include {}", a.kinds, req.kind));
    }
    let tenant_ok = if a.tenants.is_empty() {
        req.tenant.eq_ignore_ascii_case(req.default_tenant)
    } else {
        any(&a.tenants, req.tenant)
    };
    if !tenant_ok {
        let listed = if a.tenants.is_empty() {
            format!("only the operator's tenant {}", req.default_tenant)
        } else {
            format!("tenants {:?}", a.tenants)
        };
        return Err(format!("{listed}, not tenant {}", req.tenant));
    }
    // Tenant-scoped targets (Graph, MDE) have no subscription or resource group to check.
    let sub = &req.target.subscription;
    if !sub.is_empty() && !a.subscriptions.is_empty() && !any(&a.subscriptions, sub) {
        return Err(format!(
            "subscriptions {:?}, not subscription {sub}",
            a.subscriptions
        ));
    }
    if let Some(rg) = &req.target.resource_group
        && !a.resource_groups.is_empty()
        && !any(&a.resource_groups, rg)
    {
        return Err(format!(
            "resource groups {:?}, not resource group {rg}",
            a.resource_groups
        ));
    }
    if let Some(ns) = req
        .secret_namespaces
        .iter()
        .find(|ns| *ns != req.namespace && !any(&a.secret_namespaces, ns))
    {
        return Err(format!(
            "secretNamespaces {:?} do not include {ns} (a Secret outside the containment's own namespace)",
            a.secret_namespaces
        ));
    }
    Ok(())
}

/// The requester annotation (checked by the chart's ValidatingAdmissionPolicy to be the user
/// who wrote the spec).
pub const REQUESTED_BY: &str = "containment.defenderc2.io/requested-by";
pub const AWAITING_APPROVAL: &str = "AwaitingApproval";

/// The approver of `kind/name` at `generation` among `approvals` (same namespace), or why it
/// still waits. The requester's own approval never counts.
pub fn approved(
    approvals: &[crate::api::approval::ContainmentApproval],
    kind: &str,
    name: &str,
    generation: i64,
    requester: Option<&str>,
) -> Result<String, String> {
    let Some(requester) = requester.filter(|r| !r.is_empty()) else {
        return Err(format!(
            "approval is required for {kind} and the annotation {REQUESTED_BY} (the user who wrote the spec) is missing: set it to your user name"
        ));
    };
    let mine: Vec<_> = approvals
        .iter()
        .filter(|a| a.spec.target.kind == kind && a.spec.target.name == name)
        .collect();
    if let Some(a) = mine
        .iter()
        .find(|a| a.spec.target.generation == generation && a.spec.approver != requester)
    {
        return Ok(a.spec.approver.clone());
    }
    let why = if mine.iter().any(|a| a.spec.target.generation == generation) {
        format!(
            "the only approval of generation {generation} is by the requester {requester}, which does not count"
        )
    } else if mine.is_empty() {
        format!("no ContainmentApproval for {kind} {name} yet")
    } else {
        format!(
            "approvals exist for other generations only; the spec changed, generation {generation} needs a new one"
        )
    };
    Err(format!(
        "waiting for a ContainmentApproval of {kind} {name} generation {generation} by someone other than {requester}: {why}"
    ))
}

/// Why `id` is protected (it or a parent scope is listed by some policy), if it is.
pub fn protected_resource(policies: &[ContainmentPolicy], id: &str) -> Option<String> {
    let id = id.to_ascii_lowercase();
    policies.iter().find_map(|p| {
        p.spec.protected.resource_ids.iter().find_map(|r| {
            let r = r.trim_end_matches('/').to_ascii_lowercase();
            (id == r || id.starts_with(&format!("{r}/"))).then(|| {
                format!(
                    "{id} is protected by ContainmentPolicy {} (protected.resourceIds: {r}): no containment may act on it",
                    p.metadata.name.clone().unwrap_or_default()
                )
            })
        })
    })
}

/// Why the target's tags protect it (a policy's `protected.azureTag` set to `true`), if they do.
pub fn protected_by_tag(
    policies: &[ContainmentPolicy],
    id: &str,
    tags: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    policies.iter().find_map(|p| {
        let tag = p.spec.protected.azure_tag.as_deref()?;
        let on = tags
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(tag))
            .and_then(|(_, v)| v.as_str())
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        on.then(|| {
            format!(
                "{id} carries the Azure tag {tag}=true, protected by ContainmentPolicy {}: no containment may act on it",
                p.metadata.name.clone().unwrap_or_default()
            )
        })
    })
}

/// Why an identity (object id or UPN) or device is protected, for kinds that act on them.
pub fn protected_principal(
    policies: &[ContainmentPolicy],
    who: &str,
    device: bool,
) -> Option<String> {
    policies.iter().find_map(|p| {
        let list = if device {
            &p.spec.protected.devices
        } else {
            &p.spec.protected.identities
        };
        list.iter().any(|x| x.eq_ignore_ascii_case(who)).then(|| {
            format!(
                "{who} is protected by ContainmentPolicy {} (protected.{}): no containment may act on it",
                p.metadata.name.clone().unwrap_or_default(),
                if device { "devices" } else { "identities" }
            )
        })
    })
}

/// Blast-radius bookkeeping of this process: which containments each policy admitted (so that
/// admissions racing ahead of the watch cache are counted) and the writes sent under it.
#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (policy, kind) → admitted `namespace/name`.
    admitted: HashMap<(String, String), HashSet<String>>,
    /// policy → times of writes in the last hour.
    writes: HashMap<String, VecDeque<Instant>>,
}

const HOUR: Duration = Duration::from_secs(3600);

impl Ledger {
    /// Admit `key` under `policy` unless a limit is reached. `cached` are the keys the watch
    /// cache shows as admitted by `policy` for `kind` (Enforce, still present); `present` says
    /// whether a key this process admitted still exists. Err: the limit's message.
    pub fn admit(
        &self,
        policy: &str,
        kind: &str,
        key: &str,
        limits: &Limits,
        cached: &HashSet<String>,
        present: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let slot = (policy.to_string(), kind.to_string());
        let set = inner.admitted.entry(slot.clone()).or_default();
        set.retain(|k| present(k));
        if set.contains(key) || cached.contains(key) {
            return Ok(());
        }
        let active = set.union(cached).count();
        if let Some(max) = limits.max_active_per_kind
            && active >= max.max(0) as usize
        {
            return Err(format!(
                "ContainmentPolicy {policy} allows at most {max} active {kind} (limits.maxActivePerKind); {active} are active: this one waits until one goes"
            ));
        }
        if let Some(max) = limits.max_writes_per_hour {
            let n = inner.recent_writes(policy);
            if n >= max.max(0) as usize {
                return Err(format!(
                    "ContainmentPolicy {policy} allows {max} Azure writes per hour (limits.maxWritesPerHour); {n} were sent in the last hour: this one waits"
                ));
            }
        }
        inner
            .admitted
            .entry(slot)
            .or_default()
            .insert(key.to_string());
        Ok(())
    }

    /// `key` no longer counts against `policy` (released, deleted, or no longer Enforce).
    pub fn forget(&self, kind: &str, key: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for ((_, k), set) in inner.admitted.iter_mut() {
            if k == kind {
                set.remove(key);
            }
        }
    }

    /// A write was sent under `policy`.
    pub fn wrote(&self, policy: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .writes
            .entry(policy.to_string())
            .or_default()
            .push_back(Instant::now());
    }

    pub fn writes_last_hour(&self, policy: &str) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recent_writes(policy)
    }
}

impl Inner {
    fn recent_writes(&mut self, policy: &str) -> usize {
        let q = self.writes.entry(policy.to_string()).or_default();
        while q.front().is_some_and(|t| t.elapsed() > HOUR) {
            q.pop_front();
        }
        q.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::policy::{ContainmentPolicySpec, LabelSelector, NamespaceSelector, Protected};

    const SUB_A: &str = "00000000-0000-4000-8000-0000000000aa";
    const SUB_B: &str = "00000000-0000-4000-8000-0000000000bb";
    const TENANT: &str = "11111111-1111-4111-8111-111111111111";
    const OTHER_TENANT: &str = "22222222-2222-4222-8222-222222222222";

    fn policy(name: &str, spec: ContainmentPolicySpec) -> ContainmentPolicy {
        ContainmentPolicy::new(name, spec)
    }

    fn allow(kinds: &[&str], subs: &[&str], rgs: &[&str]) -> Allowance {
        Allowance {
            kinds: kinds.iter().map(|s| s.to_string()).collect(),
            subscriptions: subs.iter().map(|s| s.to_string()).collect(),
            resource_groups: rgs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn soc(allow: Vec<Allowance>) -> ContainmentPolicy {
        policy(
            "soc",
            ContainmentPolicySpec {
                namespaces: NamespaceSelector {
                    names: vec!["soc".into()],
                    selector: None,
                },
                allow,
                ..Default::default()
            },
        )
    }

    fn target(sub: &str, rg: &str) -> ResourceId {
        ResourceId {
            id: format!(
                "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Sql/servers/sql-1"
            ),
            subscription: sub.into(),
            resource_group: Some(rg.into()),
            name: "sql-1".into(),
        }
    }

    fn ask<'a>(
        ns: &'a str,
        kind: &'a str,
        tenant: &'a str,
        t: &'a ResourceId,
        labels: &'a BTreeMap<String, String>,
    ) -> Request<'a> {
        Request {
            namespace: ns,
            namespace_labels: labels,
            kind,
            tenant,
            default_tenant: TENANT,
            target: t,
            secret_namespaces: vec![],
        }
    }

    fn denied(v: &Verdict) -> (&'static str, String) {
        match v {
            Verdict::Denied { reason, message } => (reason, message.clone()),
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn deny_by_default_names_namespace_kind_and_target() {
        let t = target(SUB_A, "rg-prod");
        let l = BTreeMap::new();
        let (reason, msg) = denied(&evaluate(&[], &ask("soc", "SqlIpBlock", TENANT, &t, &l)));
        assert_eq!(reason, OUT_OF_SCOPE);
        assert!(
            msg.contains("namespace soc") && msg.contains("SqlIpBlock") && msg.contains(&t.id),
            "{msg}"
        );
    }

    #[test]
    fn an_allowance_matches_every_dimension_or_names_the_missing_one() {
        let p = [soc(vec![allow(&["SqlIpBlock"], &[SUB_A], &["rg-prod"])])];
        let l = BTreeMap::new();
        let ok = target(SUB_A, "RG-PROD");
        assert_eq!(
            evaluate(&p, &ask("soc", "SqlIpBlock", TENANT, &ok, &l)),
            Verdict::Allowed {
                policy: "soc".into(),
                limits: Limits::default(),
                suspended: false,
                approval: false,
            }
        );
        let other_sub = target(SUB_B, "rg-prod");
        let (_, m) = denied(&evaluate(
            &p,
            &ask("soc", "SqlIpBlock", TENANT, &other_sub, &l),
        ));
        assert!(m.contains(&format!("not subscription {SUB_B}")), "{m}");
        let other_rg = target(SUB_A, "rg-dev");
        let (_, m) = denied(&evaluate(
            &p,
            &ask("soc", "SqlIpBlock", TENANT, &other_rg, &l),
        ));
        assert!(m.contains("not resource group rg-dev"), "{m}");
        let (_, m) = denied(&evaluate(&p, &ask("soc", "WafIpBlock", TENANT, &ok, &l)));
        assert!(m.contains("do not include WafIpBlock"), "{m}");
        let (_, m) = denied(&evaluate(
            &p,
            &ask("soc", "SqlIpBlock", OTHER_TENANT, &ok, &l),
        ));
        assert!(m.contains(&format!("not tenant {OTHER_TENANT}")), "{m}");
        let (_, m) = denied(&evaluate(&p, &ask("dev", "SqlIpBlock", TENANT, &ok, &l)));
        assert!(
            m.contains("no ContainmentPolicy covers namespace dev"),
            "{m}"
        );
    }

    #[test]
    fn wildcards_selectors_and_listed_tenants() {
        let mut a = allow(&["*"], &["*"], &[]);
        a.tenants = vec![OTHER_TENANT.into()];
        let p = [policy(
            "mssp",
            ContainmentPolicySpec {
                namespaces: NamespaceSelector {
                    names: vec![],
                    selector: Some(LabelSelector {
                        match_labels: [("customer".to_string(), "contoso".to_string())].into(),
                    }),
                },
                allow: vec![a],
                ..Default::default()
            },
        )];
        let t = target(SUB_B, "rg-x");
        let contoso: BTreeMap<_, _> = [("customer".to_string(), "contoso".to_string())].into();
        assert!(matches!(
            evaluate(&p, &ask("c1", "ArcIsolation", OTHER_TENANT, &t, &contoso)),
            Verdict::Allowed { .. }
        ));
        // Listing tenants replaces the default: the operator's own tenant is not implied.
        assert!(matches!(
            evaluate(&p, &ask("c1", "ArcIsolation", TENANT, &t, &contoso)),
            Verdict::Denied { .. }
        ));
        let fabrikam: BTreeMap<_, _> = [("customer".to_string(), "fabrikam".to_string())].into();
        assert!(matches!(
            evaluate(&p, &ask("c1", "ArcIsolation", OTHER_TENANT, &t, &fabrikam)),
            Verdict::Denied { .. }
        ));
    }

    #[test]
    fn protection_is_global_and_covers_children() {
        let mut guarded = soc(vec![allow(&["*"], &[], &[])]);
        guarded.metadata.name = Some("soc".into());
        let shield = policy(
            "shield",
            ContainmentPolicySpec {
                namespaces: NamespaceSelector {
                    names: vec!["nobody".into()],
                    selector: None,
                },
                protected: Protected {
                    resource_ids: vec![format!("/subscriptions/{SUB_A}/resourceGroups/RG-CROWN/")],
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let p = [guarded, shield];
        let l = BTreeMap::new();
        let t = target(SUB_A, "rg-crown");
        let (reason, m) = denied(&evaluate(&p, &ask("soc", "SqlIpBlock", TENANT, &t, &l)));
        assert_eq!(reason, PROTECTED);
        assert!(m.contains("shield"), "{m}");
        assert!(matches!(
            evaluate(
                &p,
                &ask("soc", "SqlIpBlock", TENANT, &target(SUB_A, "rg-crown2"), &l)
            ),
            Verdict::Allowed { .. }
        ));
    }

    #[test]
    fn tags_identities_and_devices() {
        let p = [policy(
            "shield",
            ContainmentPolicySpec {
                protected: Protected {
                    azure_tag: Some("containment-protected".into()),
                    identities: vec!["breakglass@contoso.com".into()],
                    devices: vec!["abc123".into()],
                    ..Default::default()
                },
                ..Default::default()
            },
        )];
        let tags = serde_json::json!({"Containment-Protected": "TRUE"});
        assert!(protected_by_tag(&p, "/x", tags.as_object().unwrap()).is_some());
        let tags = serde_json::json!({"containment-protected": "false"});
        assert!(protected_by_tag(&p, "/x", tags.as_object().unwrap()).is_none());
        assert!(protected_principal(&p, "BreakGlass@contoso.com", false).is_some());
        assert!(protected_principal(&p, "abc123", false).is_none());
        assert!(protected_principal(&p, "abc123", true).is_some());
    }

    #[test]
    fn a_suspended_allowing_policy_wins() {
        let mut paused = soc(vec![allow(&["*"], &[], &[])]);
        paused.metadata.name = Some("b-paused".into());
        paused.spec.suspend = true;
        let mut open = soc(vec![allow(&["*"], &[], &[])]);
        open.metadata.name = Some("a-open".into());
        let l = BTreeMap::new();
        let t = target(SUB_A, "rg");
        assert!(matches!(
            evaluate(&[open, paused], &ask("soc", "SqlIpBlock", TENANT, &t, &l)),
            Verdict::Allowed {
                suspended: true,
                ..
            }
        ));
    }

    #[test]
    fn secrets_outside_the_own_namespace_need_an_allowance() {
        let mut a = allow(&["*"], &[], &[]);
        let l = BTreeMap::new();
        let t = target(SUB_A, "rg");
        let mut r = ask("soc", "StorageKeyRotation", TENANT, &t, &l);
        r.secret_namespaces = vec!["soc".into()];
        assert!(matches!(
            evaluate(&[soc(vec![a.clone()])], &r),
            Verdict::Allowed { .. }
        ));
        r.secret_namespaces = vec!["apps".into()];
        let (_, m) = denied(&evaluate(&[soc(vec![a.clone()])], &r));
        assert!(m.contains("do not include apps"), "{m}");
        a.secret_namespaces = vec!["apps".into()];
        assert!(matches!(
            evaluate(&[soc(vec![a])], &r),
            Verdict::Allowed { .. }
        ));
    }

    #[test]
    fn the_ledger_holds_the_active_limit_and_the_write_budget() {
        let l = Ledger::default();
        let lim = Limits {
            max_active_per_kind: Some(2),
            max_writes_per_hour: None,
        };
        let none = HashSet::new();
        assert!(l.admit("p", "K", "ns/a", &lim, &none, |_| true).is_ok());
        assert!(l.admit("p", "K", "ns/b", &lim, &none, |_| true).is_ok());
        // Re-admitting an admitted one is not a new admission.
        assert!(l.admit("p", "K", "ns/a", &lim, &none, |_| true).is_ok());
        let e = l
            .admit("p", "K", "ns/c", &lim, &none, |_| true)
            .unwrap_err();
        assert!(e.contains("at most 2 active K"), "{e}");
        // Another kind has its own count; one gone frees a slot.
        assert!(l.admit("p", "J", "ns/c", &lim, &none, |_| true).is_ok());
        l.forget("K", "ns/a");
        assert!(l.admit("p", "K", "ns/c", &lim, &none, |_| true).is_ok());
        // What the cache shows admitted counts too (a restart forgot the in-memory set).
        let cached: HashSet<String> = ["ns/x".to_string(), "ns/y".to_string()].into();
        let fresh = Ledger::default();
        assert!(
            fresh
                .admit("p", "K", "ns/z", &lim, &cached, |_| true)
                .is_err()
        );
        let w = Limits {
            max_active_per_kind: None,
            max_writes_per_hour: Some(2),
        };
        l.wrote("q");
        l.wrote("q");
        assert_eq!(l.writes_last_hour("q"), 2);
        let e = l.admit("q", "K", "ns/n", &w, &none, |_| true).unwrap_err();
        assert!(e.contains("maxWritesPerHour"), "{e}");
    }

    #[test]
    fn an_approval_counts_for_its_generation_and_never_from_the_requester() {
        use crate::api::approval::{ApprovedTarget, ContainmentApproval, ContainmentApprovalSpec};
        let by = |who: &str, generation: i64| {
            ContainmentApproval::new(
                &format!("{who}-{generation}"),
                ContainmentApprovalSpec {
                    target: ApprovedTarget {
                        kind: "ArcIsolation".into(),
                        name: "web".into(),
                        generation,
                    },
                    approver: who.into(),
                    comment: None,
                },
            )
        };
        let e = approved(&[], "ArcIsolation", "web", 1, None).unwrap_err();
        assert!(e.contains(REQUESTED_BY), "{e}");
        let e = approved(&[by("alice", 1)], "ArcIsolation", "web", 1, Some("alice")).unwrap_err();
        assert!(e.contains("by the requester alice"), "{e}");
        assert_eq!(
            approved(
                &[by("alice", 1), by("bob", 1)],
                "ArcIsolation",
                "web",
                1,
                Some("alice")
            )
            .unwrap(),
            "bob"
        );
        let e = approved(&[by("bob", 1)], "ArcIsolation", "web", 2, Some("alice")).unwrap_err();
        assert!(e.contains("generation 2 needs a new one"), "{e}");
        assert!(approved(&[by("bob", 1)], "ArcIsolation", "other", 1, Some("alice")).is_err());
        assert!(approved(&[by("bob", 1)], "DeviceIsolation", "web", 1, Some("alice")).is_err());
    }
}
