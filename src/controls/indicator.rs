//! ThreatIndicator: one Defender for Endpoint indicator per resource, all of a tenant's
//! indicators one shared list. Every ThreatIndicator registers its wants under the tenant, and
//! the first one to write sends every missing or outdated one in one `indicators/import` batch
//! (≤ 500; an upsert keyed by type and value, so a repeat after a crash duplicates nothing),
//! checking its own item's `isFailed`. The list is read once for all of them (shared
//! observation), with `$top` at MDE's maximum. `expirationTime` is always set — at most
//! `LIFETIME` ahead, renewed while the resource is in force — so an indicator outlives a lost
//! operator by weeks, not forever (azure-api-facts §3.16).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::common::{CommonStatus, Mode, ReleasePolicy};
use crate::api::indicator::{IndicatorAction, IndicatorSeverity, IndicatorType, ThreatIndicator};
use crate::azure::{AzureError, Clients, ResourceId, Service};
use crate::controls::coalesce::Registry;
use crate::engine::composition::OnTarget;
use crate::engine::{Assessment, Control, Stall, Step};

const LIST: &str = "/api/indicators?$top=10000";
const IMPORT: &str = "/api/indicators/import";
/// MDE refuses bigger batches (`MaximumBatchSizeExceeded`).
pub const BATCH: usize = 500;
/// MDE's limit of active indicators per tenant.
pub const TENANT_LIMIT: usize = 15_000;
/// How far ahead `expirationTime` is set, and how close it may come before it is renewed.
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
const RENEW_BEFORE: Duration = Duration::from_secs(7 * 24 * 3600);

crate::impl_kind!(ThreatIndicator, tenant);

fn type_name(t: IndicatorType) -> &'static str {
    match t {
        IndicatorType::IpAddress => "IpAddress",
        IndicatorType::Url => "Url",
        IndicatorType::DomainName => "DomainName",
        IndicatorType::FileSha1 => "FileSha1",
        IndicatorType::FileSha256 => "FileSha256",
        IndicatorType::FileMd5 => "FileMd5",
        IndicatorType::CertificateThumbprint => "CertificateThumbprint",
    }
}

fn action_name(a: IndicatorAction) -> &'static str {
    match a {
        IndicatorAction::Block => "Block",
        IndicatorAction::Warn => "Warn",
        IndicatorAction::Audit => "Audit",
        IndicatorAction::BlockAndRemediate => "BlockAndRemediate",
        IndicatorAction::Allowed => "Allowed",
    }
}

fn severity_name(s: IndicatorSeverity) -> &'static str {
    match s {
        IndicatorSeverity::Informational => "Informational",
        IndicatorSeverity::Low => "Low",
        IndicatorSeverity::Medium => "Medium",
        IndicatorSeverity::High => "High",
    }
}

/// What one resource wants in Defender for Endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    pub indicator_type: &'static str,
    pub value: String,
    pub action: &'static str,
    pub severity: &'static str,
    pub title: String,
    pub description: String,
    pub generate_alert: bool,
    /// `spec.expiresAt`: the indicator need not (and should not) live longer.
    pub until: Option<Timestamp>,
}

pub fn want_of(obj: &ThreatIndicator) -> Want {
    let s = &obj.spec;
    let title = s.title.clone().unwrap_or_else(|| {
        format!(
            "containment-operator {}/{}",
            obj.namespace().unwrap_or_default(),
            obj.name_any()
        )
    });
    Want {
        indicator_type: type_name(s.indicator_type),
        value: s.value.clone(),
        action: action_name(s.action),
        severity: severity_name(s.severity),
        description: s
            .description
            .clone()
            .or_else(|| s.common.reason.clone())
            .unwrap_or_else(|| title.clone()),
        title,
        // MDE requires generateAlert for Audit.
        generate_alert: s.generate_alert || s.action == IndicatorAction::Audit,
        until: s.common.expires_at.as_ref().map(|t| t.0),
    }
}

impl Want {
    fn is(&self, i: &Value) -> bool {
        i["indicatorType"] == self.indicator_type
            && i["indicatorValue"]
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(&self.value))
    }

    /// The expiry to send now: `LIFETIME` ahead, or `expiresAt` if that is sooner.
    fn expiry(&self, now: Timestamp) -> Timestamp {
        let ahead = now + LIFETIME;
        self.until.map_or(ahead, |u| u.min(ahead))
    }

    /// In force as wanted, with enough time left (or lasting until `expiresAt`).
    fn satisfied_by(&self, i: &Value, now: Timestamp) -> bool {
        let renew_by = self
            .until
            .map_or(now + RENEW_BEFORE, |u| u.min(now + RENEW_BEFORE));
        if !self.is(i) {
            return false;
        }
        let expires = i["expirationTime"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok());
        i["action"] == self.action
            && i["severity"] == self.severity
            && i["title"] == self.title.as_str()
            && i["description"] == self.description.as_str()
            && i["generateAlert"].as_bool().unwrap_or(false) == self.generate_alert
            && expires.is_some_and(|e| e >= renew_by - jiff::SignedDuration::from_secs(1))
    }

    fn body(&self, now: Timestamp) -> Value {
        json!({
            "indicatorValue": self.value,
            "indicatorType": self.indicator_type,
            "action": self.action,
            "severity": self.severity,
            "title": self.title,
            "description": self.description,
            "generateAlert": self.generate_alert,
            "expirationTime": self.expiry(now).strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        })
    }

    fn label(&self) -> String {
        format!("{} {}", self.indicator_type, self.value)
    }
}

fn import(items: Vec<Value>, what: String) -> Step {
    Step::action(IMPORT.to_string(), "", Some(json!({ "Indicators": items })))
        .idempotent()
        .on(Service::Mde)
        .what(what)
}

/// The pure plan of `own` against the tenant's indicators, given the other resources' wants
/// (in key order) and how long to hold for arrivals.
pub fn plan(
    own_key: &str,
    own: &Want,
    indicators: &[Value],
    siblings: &[(String, Want)],
    hold: Option<Duration>,
    now: Timestamp,
) -> Result<Assessment, Stall> {
    let mut extra = serde_json::Map::new();
    // The same indicator wanted differently by an earlier resource: one of them must go.
    if let Some((k, _)) = siblings.iter().find(|(k, w)| {
        k.as_str() < own_key
            && w.is(&json!({"indicatorType": own.indicator_type, "indicatorValue": own.value}))
            && w != own
    }) {
        return Err(Stall::new(
            "ConflictsWith",
            format!(
                "ThreatIndicator {k} already wants {} with other settings; change one of them",
                own.label()
            ),
        ));
    }
    let record = json!({"indicatorType": own.indicator_type, "indicatorValue": own.value});
    // By type and value: a plan looks up hundreds of wants among thousands of indicators.
    let mut index: HashMap<(&str, String), Vec<&Value>> = HashMap::new();
    for i in indicators {
        let key = (
            i["indicatorType"].as_str().unwrap_or_default(),
            i["indicatorValue"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase(),
        );
        index.entry(key).or_default().push(i);
    }
    let existing = |w: &Want| -> &[&Value] {
        index
            .get(&(w.indicator_type, w.value.to_ascii_lowercase()))
            .map_or(&[], Vec::as_slice)
    };
    let satisfied = |w: &Want| existing(w).iter().find(|i| w.satisfied_by(i, now)).copied();
    if let Some(i) = satisfied(own) {
        extra.insert("indicatorId".into(), i["id"].clone());
        extra.insert(
            "indicatorExpirationTime".into(),
            i["expirationTime"].clone(),
        );
        return Ok(Assessment {
            message: format!(
                "indicator {} ({}) is in force: {}, severity {}",
                i["id"].as_str().unwrap_or("?"),
                own.label(),
                own.action,
                own.severity
            ),
            record: Some(record),
            extra,
            ..Default::default()
        });
    }
    let missing = existing(own).is_empty();
    if missing && indicators.len() >= TENANT_LIMIT {
        return Err(Stall::new(
            "IndicatorLimitReached",
            format!(
                "the tenant holds {} active indicators; Defender for Endpoint allows {TENANT_LIMIT}: remove some (or let them expire) before {} can be added",
                indicators.len(),
                own.label()
            ),
        ));
    }
    let message = format!(
        "indicator {} is {}",
        own.label(),
        if missing { "missing" } else { "outdated" }
    );
    let mut items = vec![own];
    let mut seen = HashSet::from([(own.indicator_type, own.value.to_ascii_lowercase())]);
    for (_, w) in siblings {
        if items.len() >= BATCH {
            break;
        }
        // The first resource (in key order) to want an indicator decides it: a later one that
        // wants it otherwise is Stalled on its own, never written by a sibling's batch.
        if !seen.insert((w.indicator_type, w.value.to_ascii_lowercase())) {
            continue;
        }
        if satisfied(w).is_none() {
            items.push(w);
        }
    }
    // A full batch goes at once, held or not: waiting cannot make it carry more.
    if let Some(wait) = hold.filter(|_| items.len() < BATCH) {
        return Ok(Assessment {
            message,
            extra,
            wait: Some(super::coalesce::held(
                "other ThreatIndicators are arriving; importing them together",
                wait,
            )),
            ..Default::default()
        });
    }
    let what = if items.len() > 1 {
        format!(
            "import indicator {} (and {} other ThreatIndicator(s))",
            own.label(),
            items.len() - 1
        )
    } else {
        format!("import indicator {}", own.label())
    };
    let items = items.iter().map(|w| w.body(now)).collect();
    Ok(Assessment {
        steps: vec![import(items, what)],
        message,
        record: Some(record),
        extra,
        wait: None,
    })
}

#[derive(Default)]
pub struct ThreatIndicatorControl {
    registry: Registry<Want>,
}

fn key_of(obj: &ThreatIndicator) -> String {
    crate::engine::composition::name_of(obj)
}

#[async_trait::async_trait]
impl Control for ThreatIndicatorControl {
    type K = ThreatIndicator;
    type Observed = Vec<Value>;
    const RESOURCE_TYPE: &'static str = "microsoft.defender.endpoint/indicators";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    // The list is the tenant's, whichever resource reads it.
    const SHARED_OBSERVATION: bool = true;
    const ACTIONS: &'static [&'static str] = &[];

    /// The tenant's indicator list: every ThreatIndicator of a tenant shares it.
    fn target(obj: &ThreatIndicator) -> Result<ResourceId, String> {
        let tenant = obj
            .spec
            .common
            .tenant_id
            .as_deref()
            .unwrap_or("default")
            .to_ascii_lowercase();
        Ok(ResourceId {
            id: format!("tenant/{tenant}/indicators"),
            subscription: String::new(),
            resource_group: None,
            name: "indicators".into(),
        })
    }

    /// The tenant's list is every indicator's target: the value says which one this is.
    fn target_name(obj: &ThreatIndicator, _t: &ResourceId) -> String {
        obj.spec.value.clone()
    }

    fn register(&self, obj: &ThreatIndicator, t: &ResourceId, on: &OnTarget<ThreatIndicator>) {
        self.registry.register_on(&t.id, obj, on, want_of);
    }

    /// The peers whose indicator an import carried.
    fn carried<'p>(
        &self,
        steps: &[Step],
        peers: &'p [std::sync::Arc<ThreatIndicator>],
    ) -> Vec<&'p std::sync::Arc<ThreatIndicator>> {
        let sent: HashSet<(String, String)> = steps
            .iter()
            .filter(|s| s.path == IMPORT)
            .filter_map(|s| s.body.as_ref()?["Indicators"].as_array())
            .flatten()
            .map(|i| {
                (
                    i["indicatorType"].as_str().unwrap_or_default().to_string(),
                    i["indicatorValue"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
                )
            })
            .collect();
        peers
            .iter()
            .filter(|p| {
                let w = want_of(p);
                sent.contains(&(w.indicator_type.to_string(), w.value.to_ascii_lowercase()))
            })
            .collect()
    }

    fn unregister(&self, obj: &ThreatIndicator, t: &ResourceId) {
        self.registry.remove(&t.id, &key_of(obj));
    }

    async fn observe(
        &self,
        az: &Clients,
        _obj: &ThreatIndicator,
        _t: &ResourceId,
    ) -> Result<Vec<Value>, AzureError> {
        az.mde.list(LIST, "").await
    }

    fn assess(
        &self,
        obj: &ThreatIndicator,
        t: &ResourceId,
        indicators: &Vec<Value>,
        _status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let key = key_of(obj);
        let enforce = obj.spec.common.mode == Mode::Enforce;
        let siblings: Vec<(String, Want)> = if enforce {
            self.registry
                .wants(&t.id)
                .into_iter()
                .filter(|(k, _)| *k != key)
                .collect()
        } else {
            Vec::new()
        };
        let hold = if enforce {
            self.registry.hold(&t.id, &key)
        } else {
            None
        };
        plan(
            &key,
            &want_of(obj),
            indicators,
            &siblings,
            hold,
            Timestamp::now(),
        )
    }

    /// Our item of the batch: `isFailed` with MDE's reason (e.g. the tenant limit).
    fn reply_error(&self, obj: &ThreatIndicator, step: &Step, reply: &Value) -> Option<AzureError> {
        if step.path != IMPORT {
            return None;
        }
        let own = want_of(obj);
        let items = reply["value"].as_array()?;
        let failed = items.iter().find(|r| {
            r["indicator"]
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(&own.value))
                && r["isFailed"].as_bool() == Some(true)
        })?;
        let why = failed["failureReason"]
            .as_str()
            .unwrap_or("no reason given");
        let limit = why.to_ascii_lowercase().contains("maximum");
        Some(AzureError::Api {
            status: 400,
            code: if limit {
                "IndicatorLimitReached"
            } else {
                "IndicatorRejected"
            }
            .into(),
            message: format!(
                "Defender for Endpoint refused indicator {}: {why}",
                own.label()
            ),
            request: format!("POST {IMPORT}"),
            retry_after: None,
            request_id: None,
        })
    }

    fn on_reply(&self, step: &Step, r: &crate::azure::Reply) -> serde_json::Map<String, Value> {
        let reply = &r.body;
        let mut m = serde_json::Map::new();
        if step.path == IMPORT
            && let Some(first) = reply["value"].as_array().and_then(|v| v.first())
            && first["isFailed"] == false
        {
            // The batch's first item is always the writing resource's own.
            m.insert("indicatorId".into(), first["id"].clone());
        }
        m
    }

    /// Delete the indicator, unless another ThreatIndicator still wants the same one.
    fn release(
        &self,
        obj: &ThreatIndicator,
        t: &ResourceId,
        indicators: &Vec<Value>,
        _restore: &Value,
    ) -> Vec<Step> {
        let own = want_of(obj);
        let key = key_of(obj);
        let shared = self.registry.wants(&t.id).iter().any(|(k, w)| {
            *k != key
                && w.is(&json!({"indicatorType": own.indicator_type, "indicatorValue": own.value}))
        });
        if shared {
            return Vec::new();
        }
        indicators
            .iter()
            .filter(|i| own.is(i))
            .filter_map(|i| i["id"].as_str())
            .map(|id| {
                Step::delete(format!("/api/indicators/{id}"), "")
                    .on(Service::Mde)
                    .what(format!("delete indicator {id} ({})", own.label()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(v: &str) -> Want {
        Want {
            indicator_type: "IpAddress",
            value: v.into(),
            action: "Block",
            severity: "High",
            title: "t".into(),
            description: "d".into(),
            generate_alert: false,
            until: None,
        }
    }

    fn now() -> Timestamp {
        "2026-12-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_batch_holds_own_first_then_every_missing_sibling_up_to_500() {
        let siblings: Vec<(String, Want)> = (0..700)
            .map(|n| {
                (
                    format!("ns/s{n:04}"),
                    want(&format!("198.51.{}.{}", n / 256, n % 256)),
                )
            })
            .collect();
        let a = plan("ns/a", &want("203.0.113.7"), &[], &siblings, None, now()).unwrap();
        let items = a.steps[0].body.as_ref().unwrap()["Indicators"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(items.len(), BATCH);
        assert_eq!(items[0]["indicatorValue"], "203.0.113.7");
        assert_eq!(items[0]["expirationTime"], "2026-12-31T00:00:00Z");
        assert!(a.steps[0].idempotent);
        // Held while others arrive.
        let held = plan(
            "ns/a",
            &want("203.0.113.7"),
            &[],
            &siblings[..10],
            Some(Duration::from_millis(300)),
            now(),
        )
        .unwrap();
        assert!(held.steps.is_empty());
        assert_eq!(held.wait.unwrap().reason, "Coalescing");
        // Unless a full batch is missing: it goes now, whoever sends it.
        let full = &siblings[..BATCH - 1];
        let now_full = plan(
            "ns/z",
            &want("203.0.113.7"),
            &[],
            full,
            Some(Duration::from_millis(300)),
            now(),
        )
        .unwrap();
        assert_eq!(
            now_full.steps[0].body.as_ref().unwrap()["Indicators"]
                .as_array()
                .unwrap()
                .len(),
            BATCH
        );
        assert!(now_full.wait.is_none());
    }

    #[test]
    fn in_force_needs_the_same_settings_and_time_left() {
        let w = want("203.0.113.7");
        let mut i = w.body(now());
        i["id"] = json!("17");
        let ok = plan("ns/a", &w, std::slice::from_ref(&i), &[], None, now()).unwrap();
        assert!(ok.steps.is_empty());
        assert_eq!(ok.extra["indicatorId"], "17");
        // Six days left: renewed.
        let later: Timestamp = "2026-12-25T00:00:00Z".parse().unwrap();
        assert_eq!(
            plan("ns/a", &w, std::slice::from_ref(&i), &[], None, later)
                .unwrap()
                .steps
                .len(),
            1
        );
        // Someone switched it to Audit.
        i["action"] = json!("Audit");
        assert_eq!(
            plan("ns/a", &w, &[i], &[], None, now())
                .unwrap()
                .steps
                .len(),
            1
        );
        // expiresAt sooner than the lifetime: that is the expiry sent, and enough.
        let mut soon = want("203.0.113.7");
        soon.until = Some("2026-12-03T00:00:00Z".parse().unwrap());
        let mut j = soon.body(now());
        assert_eq!(j["expirationTime"], "2026-12-03T00:00:00Z");
        j["id"] = json!("18");
        assert!(
            plan("ns/a", &soon, &[j], &[], None, now())
                .unwrap()
                .steps
                .is_empty()
        );
    }

    #[test]
    fn a_batch_never_carries_a_later_conflicting_want() {
        let mut allowed = want("198.51.100.1");
        allowed.action = "Allowed";
        let block = want("198.51.100.1");
        let mut in_force = block.body(now());
        in_force["id"] = json!("1");
        let siblings = vec![("ns/a".to_string(), block), ("ns/b".to_string(), allowed)];
        let a = plan(
            "ns/c",
            &want("203.0.113.7"),
            &[in_force],
            &siblings,
            None,
            now(),
        )
        .unwrap();
        let items = a.steps[0].body.as_ref().unwrap()["Indicators"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(items.len(), 1, "{items:?}");
    }

    #[test]
    fn the_same_indicator_wanted_differently_conflicts_and_the_limit_is_named() {
        let mut other = want("203.0.113.7");
        other.action = "Allowed";
        let err = plan(
            "ns/b",
            &want("203.0.113.7"),
            &[],
            &[("ns/a".into(), other)],
            None,
            now(),
        )
        .unwrap_err();
        assert_eq!(err.reason, "ConflictsWith");
        assert!(err.message.contains("ns/a"), "{}", err.message);
        let full: Vec<Value> = (0..TENANT_LIMIT).map(|n| json!({"id": n.to_string(), "indicatorType": "FileSha256", "indicatorValue": format!("{n:064x}")})).collect();
        let err = plan("ns/a", &want("203.0.113.7"), &full, &[], None, now()).unwrap_err();
        assert_eq!(err.reason, "IndicatorLimitReached");
        assert!(err.message.contains("15000"), "{}", err.message);
    }
}
