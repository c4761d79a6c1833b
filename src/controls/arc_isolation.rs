//! ArcIsolation: Arc has no isolate action, so the Arc machine is mapped to its Defender for
//! Endpoint device (its FQDN = the device's computerDnsName) and isolated through MDE. No isolate
//! or unisolate is ever sent while another action for the device is Pending or InProgress (the
//! documented race that leaves devices isolated); the state is read from the latest succeeded
//! action.

use kube::ResourceExt;
use serde_json::{Value, json};

use crate::api::arc::{ArcIsolation, IsolationType};
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::azure::{AzureError, Clients, ResourceId, Service};
use crate::engine::{Assessment, Control, Stall, Step, Wait};

pub const ARC_API: &str = "2022-12-27";

impl crate::engine::Kind for ArcIsolation {
    fn common(&self) -> std::borrow::Cow<'_, crate::api::common::CommonSpec> {
        std::borrow::Cow::Borrowed(&self.spec.common)
    }
    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The target's Azure tags (the guard's protected tag).
    pub tags: serde_json::Map<String, Value>,
    /// The Arc machine's names (`machineFqdn`, and `dnsFqdn` where it differs).
    pub fqdn: String,
    /// MDE machines whose computerDnsName matches any of the names.
    pub candidates: Vec<Value>,
    /// The device whose actions were read: the one recorded when it was isolated, else the
    /// one the names resolve to.
    pub device_id: Option<String>,
    /// Isolate/unisolate actions of that device.
    pub actions: Vec<Value>,
}

/// The device recorded before the first isolate (release acts on it, whatever the names say
/// now).
fn recorded_device(obj: &ArcIsolation) -> Option<String> {
    obj.status
        .as_ref()
        .and_then(|s| s.common.restore.as_ref())
        .and_then(|r| r["deviceId"].as_str())
        .filter(|id| !id.is_empty())
        .map(str::to_string)
}

/// The Arc machine's DNS names, without duplicates (case-insensitive), `machineFqdn` first.
fn names(arc: &Value, fallback: &str) -> Vec<String> {
    let p = &arc["properties"];
    let mut out: Vec<String> = Vec::new();
    for n in [p["machineFqdn"].as_str(), p["dnsFqdn"].as_str()]
        .into_iter()
        .flatten()
    {
        if !n.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(n)) {
            out.push(n.to_string());
        }
    }
    if out.is_empty() {
        out.push(fallback.to_string());
    }
    out
}

/// The device: the only candidate, or the only Active one; otherwise a Stall naming them all.
pub fn choose(fqdn: &str, candidates: &[Value]) -> Result<Value, Stall> {
    let active: Vec<&Value> = candidates
        .iter()
        .filter(|m| m["healthStatus"] == "Active")
        .collect();
    match (candidates.len(), active.len()) {
        (0, _) => Err(Stall::new(
            "DeviceNotFound",
            format!(
                "no Defender for Endpoint device has computerDnsName {fqdn:?} (the Arc machine's FQDN); is the MDE extension installed and onboarded?"
            ),
        )),
        (1, _) => Ok(candidates[0].clone()),
        (_, 1) => Ok(active[0].clone()),
        _ => Err(Stall::new(
            "AmbiguousDevice",
            format!(
                "{} Defender for Endpoint devices match {fqdn:?}: {}",
                candidates.len(),
                candidates
                    .iter()
                    .map(|m| format!(
                        "{} ({}, last seen {})",
                        m["id"].as_str().unwrap_or("?"),
                        m["healthStatus"].as_str().unwrap_or("?"),
                        m["lastSeen"].as_str().unwrap_or("?")
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )),
    }
}

fn is_isolation(a: &Value) -> bool {
    matches!(a["type"].as_str(), Some("Isolate" | "Unisolate"))
}

/// An isolate/unisolate action that is still Pending or InProgress.
pub fn running(actions: &[Value]) -> Option<&Value> {
    actions
        .iter()
        .filter(|a| is_isolation(a))
        .find(|a| matches!(a["status"].as_str(), Some("Pending" | "InProgress")))
}

/// The latest succeeded isolate/unisolate action.
pub fn latest_succeeded(actions: &[Value]) -> Option<&Value> {
    actions
        .iter()
        .filter(|a| is_isolation(a) && a["status"] == "Succeeded")
        .max_by_key(|a| {
            a["creationDateTimeUtc"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
}

fn scope_name(t: IsolationType) -> &'static str {
    match t {
        IsolationType::Full => "Full",
        IsolationType::Selective => "Selective",
    }
}

/// How soon to look again at a pending action: soon while it is fresh (online devices finish in
/// seconds), then ever more rarely up to 30 s. Each look costs two MDE calls against 100/min for
/// the whole tenant, and an offline device keeps an action Pending for hours.
pub fn recheck_pending(action: &Value, now: jiff::Timestamp) -> std::time::Duration {
    let age = action["creationDateTimeUtc"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .and_then(|t| std::time::Duration::try_from(now.duration_since(t)).ok())
        .unwrap_or_default();
    (age / 4).clamp(
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(30),
    )
}

pub fn plan(
    device: &Value,
    actions: &[Value],
    want: IsolationType,
    comment: &str,
    now: jiff::Timestamp,
) -> Assessment {
    let id = device["id"].as_str().unwrap_or_default();
    let mut extra = serde_json::Map::new();
    extra.insert("deviceId".into(), json!(id));
    let latest_any = actions.iter().filter(|a| is_isolation(a)).max_by_key(|a| {
        a["creationDateTimeUtc"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    if let Some(a) = latest_any {
        extra.insert("machineActionId".into(), a["id"].clone());
    }
    let last = latest_succeeded(actions);
    let isolated = last.is_some_and(|a| a["type"] == "Isolate");
    extra.insert(
        "isolationState".into(),
        json!(if isolated { "Isolated" } else { "NotIsolated" }),
    );
    if let Some(r) = running(actions) {
        return Assessment {
            extra,
            wait: Some(Wait {
                reason: "AwaitingMachineAction".into(),
                recheck: recheck_pending(r, now),
                message: format!(
                    "{} action {} on device {id} is {}; nothing is sent until it finishes",
                    r["type"].as_str().unwrap_or("?"),
                    r["id"].as_str().unwrap_or("?"),
                    r["status"].as_str().unwrap_or("?")
                ),
            }),
            ..Default::default()
        };
    }
    let scope = scope_name(want);
    if isolated && last.is_some_and(|a| a["scope"] == scope) {
        return Assessment {
            message: format!(
                "device {id} is isolated ({scope}), action {}",
                last.and_then(|a| a["id"].as_str()).unwrap_or("?")
            ),
            extra,
            ..Default::default()
        };
    }
    Assessment {
        steps: vec![
            Step::action(
                format!("/api/machines/{id}/isolate"),
                "",
                Some(json!({"Comment": comment, "IsolationType": scope})),
            )
            .on(Service::Mde)
            .what(format!("isolate device {id} ({scope})")),
        ],
        message: format!("device {id} is not isolated"),
        record: Some(json!({"deviceId": id})),
        extra,
        wait: None,
    }
}

#[derive(Default)]
pub struct ArcIsolationControl;

fn quoted(s: &str) -> String {
    s.replace('\'', "''")
}

#[async_trait::async_trait]
impl Control for ArcIsolationControl {
    type K = ArcIsolation;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.HybridCompute/machines";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const COMPOSES: bool = true;
    const ACTIONS: &'static [&'static str] = &["Microsoft.HybridCompute/machines/read"];

    /// The strictest isolation any of them wants (Full over Selective).
    fn compose(&self, acc: &mut ArcIsolation, other: &ArcIsolation) -> Result<(), String> {
        if other.spec.isolation_type == IsolationType::Full {
            acc.spec.isolation_type = IsolationType::Full;
        }
        Ok(())
    }

    fn tags(&self, observed: &Observed) -> Option<serde_json::Map<String, Value>> {
        Some(observed.tags.clone())
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &ArcIsolation,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let m = az.arm.get(&t.id, ARC_API).await?;
        let names = names(&m, &t.name);
        let mut candidates: Vec<Value> = Vec::new();
        for name in &names {
            let filter = format!("computerDnsName eq '{}'", quoted(name));
            let path = format!("/api/machines?$filter={}", urlencode(&filter));
            let found = match az.mde.list(&path, "").await {
                Ok(found) => found,
                // A filtered list that matches nothing is a 404 in Defender for Endpoint.
                Err(e) if e.status() == Some(404) => Vec::new(),
                Err(e) => return Err(e),
            };
            for d in found {
                if !candidates.iter().any(|c| c["id"] == d["id"]) {
                    candidates.push(d);
                }
            }
        }
        let fqdn = names.join(" / ");
        let device_id = recorded_device(obj).or_else(|| {
            choose(&fqdn, &candidates)
                .ok()
                .and_then(|d| d["id"].as_str().map(str::to_string))
        });
        let mut actions = Vec::new();
        if let Some(id) = &device_id {
            let filter = format!("machineId eq '{}'", quoted(id));
            actions = az
                .mde
                .list(
                    &format!("/api/machineactions?$filter={}", urlencode(&filter)),
                    "",
                )
                .await?;
        }
        Ok(Observed {
            tags: m["tags"].as_object().cloned().unwrap_or_default(),
            fqdn,
            candidates,
            device_id,
            actions,
        })
    }

    fn assess(
        &self,
        obj: &ArcIsolation,
        _t: &ResourceId,
        o: &Observed,
        _status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let device = choose(&o.fqdn, &o.candidates)?;
        let comment = obj.spec.comment.clone().unwrap_or_else(|| {
            format!(
                "containment-operator {}/{}{}",
                obj.namespace().unwrap_or_default(),
                obj.name_any(),
                obj.spec
                    .common
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )
        });
        Ok(plan(
            &device,
            &o.actions,
            obj.spec.isolation_type,
            &comment,
            jiff::Timestamp::now(),
        ))
    }

    fn release_wait(&self, o: &Observed) -> Option<String> {
        running(&o.actions).map(|a| {
            format!(
                "{} action {} is {}",
                a["type"].as_str().unwrap_or("?"),
                a["id"].as_str().unwrap_or("?"),
                a["status"].as_str().unwrap_or("?")
            )
        })
    }

    fn release(
        &self,
        obj: &ArcIsolation,
        _t: &ResourceId,
        o: &Observed,
        _restore: &Value,
    ) -> Vec<Step> {
        // The device recorded when it was isolated: never "nothing to do" because the names
        // resolve to no device, or to another one, today.
        let Some(id) = o.device_id.as_deref() else {
            return Vec::new();
        };
        if !latest_succeeded(&o.actions).is_some_and(|a| a["type"] == "Isolate") {
            return Vec::new();
        }
        let comment = format!(
            "containment-operator release of {}/{}",
            obj.namespace().unwrap_or_default(),
            obj.name_any()
        );
        vec![
            Step::action(
                format!("/api/machines/{id}/unisolate"),
                "",
                Some(json!({"Comment": comment})),
            )
            .on(Service::Mde)
            .what(format!("unisolate device {id}")),
        ]
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(id: &str, health: &str) -> Value {
        json!({"id": id, "computerDnsName": "arc-web-01.corp.contoso.example", "healthStatus": health, "lastSeen": "2026-11-23T08:00:00Z"})
    }

    fn action(id: &str, t: &str, status: &str, at: &str, scope: &str) -> Value {
        json!({"id": id, "type": t, "status": status, "creationDateTimeUtc": at, "scope": scope})
    }

    #[test]
    fn device_mapping_prefers_the_single_active_and_names_ambiguity() {
        assert_eq!(choose("h", &[machine("a", "Inactive")]).unwrap()["id"], "a");
        assert_eq!(
            choose("h", &[machine("a", "Inactive"), machine("b", "Active")]).unwrap()["id"],
            "b"
        );
        let err = choose("h", &[machine("a", "Active"), machine("b", "Active")]).unwrap_err();
        assert_eq!(err.reason, "AmbiguousDevice");
        assert!(
            err.message.contains("a (Active") && err.message.contains("b (Active"),
            "{}",
            err.message
        );
        assert_eq!(choose("h", &[]).unwrap_err().reason, "DeviceNotFound");
    }

    #[test]
    fn never_sends_while_an_action_runs_and_reads_state_from_the_latest_success() {
        let d = machine("dev", "Active");
        let a = plan(
            &d,
            &[],
            IsolationType::Full,
            "c",
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(a.steps.len(), 1);
        assert_eq!(a.steps[0].path, "/api/machines/dev/isolate");
        assert_eq!(a.steps[0].service, Service::Mde);
        let pending = [action(
            "1",
            "Isolate",
            "Pending",
            "2026-11-23T10:00:00Z",
            "Full",
        )];
        let w = plan(
            &d,
            &pending,
            IsolationType::Full,
            "c",
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert!(w.steps.is_empty());
        assert_eq!(w.wait.unwrap().reason, "AwaitingMachineAction");
        let done = [
            action("1", "Isolate", "Succeeded", "2026-11-23T10:00:00Z", "Full"),
            action(
                "2",
                "Unisolate",
                "Succeeded",
                "2026-11-23T11:00:00Z",
                "Full",
            ),
        ];
        // Someone unisolated it later: not compliant.
        assert_eq!(
            plan(
                &d,
                &done,
                IsolationType::Full,
                "c",
                jiff::Timestamp::UNIX_EPOCH
            )
            .steps
            .len(),
            1
        );
        let iso = [action(
            "1",
            "Isolate",
            "Succeeded",
            "2026-11-23T10:00:00Z",
            "Full",
        )];
        let ok = plan(
            &d,
            &iso,
            IsolationType::Full,
            "c",
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert!(ok.steps.is_empty() && ok.wait.is_none());
        assert_eq!(ok.extra["isolationState"], "Isolated");
        assert_eq!(ok.extra["machineActionId"], "1");
    }

    #[test]
    fn pending_actions_are_rechecked_ever_more_rarely() {
        let a = action("1", "Isolate", "Pending", "2026-11-23T10:00:00Z", "Full");
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(recheck_pending(&a, at("2026-11-23T10:00:01Z")).as_secs(), 2);
        assert_eq!(
            recheck_pending(&a, at("2026-11-23T10:01:00Z")).as_secs(),
            15
        );
        // An offline device: at most two MDE calls every 30 s, not two a second.
        assert_eq!(
            recheck_pending(&a, at("2026-11-23T14:00:00Z")).as_secs(),
            30
        );
    }

    #[test]
    fn both_names_of_the_arc_machine_are_looked_up() {
        let arc = json!({"properties": {"machineFqdn": "web.corp.example", "dnsFqdn": "WEB.corp.example"}});
        assert_eq!(names(&arc, "x"), ["web.corp.example"]);
        let arc = json!({"properties": {"machineFqdn": "web.corp.example", "dnsFqdn": "web-old.corp.example"}});
        assert_eq!(
            names(&arc, "x"),
            ["web.corp.example", "web-old.corp.example"]
        );
        assert_eq!(
            names(&json!({"properties": {}}), "arc-web-01"),
            ["arc-web-01"]
        );
    }
}
