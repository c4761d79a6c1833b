//! Defender for Endpoint machine actions that switch a device state on and off (isolate /
//! unisolate, restrict / unrestrict app execution), shared by every device kind. The machine
//! entity has no state field: the state is the newest Succeeded action of the pair, and no
//! action is ever sent while one of the pair is Pending or InProgress — a duplicate that stays
//! Pending can finish after its opposite and leave the device isolated (azure-api-facts §3.23).

use kube::ResourceExt;
use serde_json::{Map, Value, json};

use crate::azure::{AzureError, Clients, Service, odata_eq_filter};
use crate::engine::{Assessment, Stall, Step, Wait};

/// One on/off pair of machine actions.
#[derive(Debug)]
pub struct Lever {
    /// Action types, as MDE reports them.
    pub on: &'static str,
    pub off: &'static str,
    /// Path verbs under `/api/machines/{id}/`.
    pub on_verb: &'static str,
    pub off_verb: &'static str,
    /// The status field the state is published in, and its two values.
    pub state_field: &'static str,
    pub state_on: &'static str,
    pub state_off: &'static str,
}

pub const ISOLATION: Lever = Lever {
    on: "Isolate",
    off: "Unisolate",
    on_verb: "isolate",
    off_verb: "unisolate",
    state_field: "isolationState",
    state_on: "Isolated",
    state_off: "NotIsolated",
};

pub const CODE_RESTRICTION: Lever = Lever {
    on: "RestrictCodeExecution",
    off: "UnrestrictCodeExecution",
    on_verb: "restrictCodeExecution",
    off_verb: "unrestrictCodeExecution",
    state_field: "restrictionState",
    state_on: "Restricted",
    state_off: "NotRestricted",
};

fn created(a: &Value) -> String {
    a["creationDateTimeUtc"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl Lever {
    fn owns(&self, a: &Value) -> bool {
        a["type"] == self.on || a["type"] == self.off
    }

    /// An action of the pair that is still Pending or InProgress.
    pub fn running<'a>(&self, actions: &'a [Value]) -> Option<&'a Value> {
        actions
            .iter()
            .filter(|a| self.owns(a))
            .find(|a| matches!(a["status"].as_str(), Some("Pending" | "InProgress")))
    }

    /// The newest succeeded action of the pair (sorted client-side: `$orderby` is unverified).
    pub fn latest_succeeded<'a>(&self, actions: &'a [Value]) -> Option<&'a Value> {
        actions
            .iter()
            .filter(|a| self.owns(a) && a["status"] == "Succeeded")
            .max_by_key(|a| created(a))
    }

    /// Whether the device is in the "on" state now.
    pub fn is_on(&self, actions: &[Value]) -> bool {
        self.latest_succeeded(actions)
            .is_some_and(|a| a["type"] == self.on)
    }

    /// Why release must wait, if an action of the pair is in flight.
    pub fn release_wait(&self, actions: &[Value]) -> Option<String> {
        self.running(actions).map(describe)
    }

    /// The state `device` must reach: `scope` is the isolation type for isolation, `None` for a
    /// lever without one. Waits while an action runs; one POST otherwise.
    pub fn plan(
        &self,
        device: &Value,
        actions: &[Value],
        scope: Option<&str>,
        comment: &str,
        now: jiff::Timestamp,
    ) -> Assessment {
        let id = device["id"].as_str().unwrap_or_default();
        let mut extra = Map::new();
        extra.insert("deviceId".into(), json!(id));
        if let Some(name) = device["computerDnsName"].as_str() {
            extra.insert("computerDnsName".into(), json!(name));
        }
        if let Some(a) = actions
            .iter()
            .filter(|a| self.owns(a))
            .max_by_key(|a| created(a))
        {
            extra.insert("machineActionId".into(), a["id"].clone());
        }
        let last = self.latest_succeeded(actions);
        let on = self.is_on(actions);
        extra.insert(
            self.state_field.into(),
            json!(if on { self.state_on } else { self.state_off }),
        );
        if let Some(r) = self.running(actions) {
            return Assessment {
                extra,
                wait: Some(Wait {
                    reason: "AwaitingMachineAction".into(),
                    recheck: recheck_pending(r, now),
                    message: format!(
                        "{} on device {id}; nothing is sent until it finishes",
                        describe(r)
                    ),
                }),
                ..Default::default()
            };
        }
        let scope_ok = scope.is_none_or(|s| last.is_some_and(|a| a["scope"] == s));
        if on && scope_ok {
            return Assessment {
                message: format!(
                    "device {id} is {}{}, action {}",
                    self.state_on.to_ascii_lowercase(),
                    scope.map(|s| format!(" ({s})")).unwrap_or_default(),
                    last.and_then(|a| a["id"].as_str()).unwrap_or("?")
                ),
                extra,
                ..Default::default()
            };
        }
        let mut body = json!({ "Comment": comment });
        if let Some(s) = scope {
            body["IsolationType"] = json!(s);
        }
        Assessment {
            steps: vec![
                Step::action(
                    format!("/api/machines/{id}/{}", self.on_verb),
                    "",
                    Some(body),
                )
                .on(Service::Mde)
                .what(format!(
                    "{} device {id}{}",
                    self.on_verb,
                    scope.map(|s| format!(" ({s})")).unwrap_or_default()
                )),
            ],
            message: format!("device {id} is not {}", self.state_on.to_ascii_lowercase()),
            record: Some(json!({ "deviceId": id })),
            extra,
            wait: None,
        }
    }

    /// The step that switches the recorded device back off, if it is on.
    pub fn release(&self, device_id: Option<&str>, actions: &[Value], comment: &str) -> Vec<Step> {
        let Some(id) = device_id else {
            return Vec::new();
        };
        if !self.is_on(actions) {
            return Vec::new();
        }
        vec![
            Step::action(
                format!("/api/machines/{id}/{}", self.off_verb),
                "",
                Some(json!({ "Comment": comment })),
            )
            .on(Service::Mde)
            .what(format!("{} device {id}", self.off_verb)),
        ]
    }
}

fn describe(a: &Value) -> String {
    format!(
        "{} action {} is {}",
        a["type"].as_str().unwrap_or("?"),
        a["id"].as_str().unwrap_or("?"),
        a["status"].as_str().unwrap_or("?")
    )
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

/// The device: the only candidate, or the only Active one; otherwise a Stall naming them all.
pub fn choose(name: &str, candidates: &[Value]) -> Result<Value, Stall> {
    let active: Vec<&Value> = candidates
        .iter()
        .filter(|m| m["healthStatus"] == "Active")
        .collect();
    match (candidates.len(), active.len()) {
        (0, _) => Err(Stall::new(
            "DeviceNotFound",
            format!(
                "no Defender for Endpoint device is {name:?}; is it onboarded (and the id or name right)?"
            ),
        )),
        (1, _) => Ok(candidates[0].clone()),
        (_, 1) => Ok(active[0].clone()),
        _ => Err(Stall::new(
            "AmbiguousDevice",
            format!(
                "{} Defender for Endpoint devices match {name:?}: {}",
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

/// A device as observed: what its names lead to, and the actions of the one acted on.
#[derive(Debug, Clone, Default)]
pub struct Device {
    /// How the device was asked for (for messages): an id, or names joined by " / ".
    pub label: String,
    /// MDE machines that match.
    pub candidates: Vec<Value>,
    /// The device whose actions were read: the one recorded before the first write, else the
    /// one the lookup resolves to.
    pub device_id: Option<String>,
    /// Its actions of the lever's pair.
    pub actions: Vec<Value>,
}

impl Device {
    /// The lookup's device (a Stall when there is none or it is ambiguous).
    pub fn chosen(&self) -> Result<Value, Stall> {
        choose(&self.label, &self.candidates)
    }

    /// Every name the device goes by (ids and DNS names): the guard's protected devices.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.device_id.iter().cloned().collect();
        for c in &self.candidates {
            for f in ["id", "computerDnsName"] {
                if let Some(v) = c[f].as_str()
                    && !out.iter().any(|o| o.eq_ignore_ascii_case(v))
                {
                    out.push(v.to_string());
                }
            }
        }
        out
    }
}

/// How a device is asked for.
pub enum Lookup<'a> {
    Id(&'a str),
    /// DNS names, any of which may match (Arc gives two).
    Names(&'a [String]),
}

/// Find the device and read the lever's actions of the one acted on (`recorded`, when a write
/// recorded it, wins over what the lookup says today).
pub async fn observe(
    az: &Clients,
    lookup: Lookup<'_>,
    recorded: Option<String>,
    lever: &Lever,
) -> Result<Device, AzureError> {
    let mut candidates: Vec<Value> = Vec::new();
    let label = match lookup {
        Lookup::Id(id) => {
            match az.mde.get(&format!("/api/machines/{id}"), "").await {
                Ok(m) => candidates.push(m),
                Err(e) if e.status() == Some(404) => {}
                Err(e) => return Err(e),
            }
            id.to_string()
        }
        Lookup::Names(names) => {
            for name in names {
                let path = format!("/api/machines?{}", odata_eq_filter("computerDnsName", name));
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
            names.join(" / ")
        }
    };
    let device_id = recorded.or_else(|| {
        choose(&label, &candidates)
            .ok()
            .and_then(|d| d["id"].as_str().map(str::to_string))
    });
    let mut actions = Vec::new();
    if let Some(id) = &device_id {
        actions = az
            .mde
            .list(
                &format!("/api/machineactions?{}", odata_eq_filter("machineId", id)),
                "",
            )
            .await?
            .into_iter()
            .filter(|a| lever.owns(a))
            .collect();
    }
    Ok(Device {
        label,
        candidates,
        device_id,
        actions,
    })
}

/// The device recorded before the first write (release acts on it, whatever the lookup says
/// now).
pub fn recorded_device(restore: Option<&Value>) -> Option<String> {
    restore
        .and_then(|r| r["deviceId"].as_str())
        .filter(|id| !id.is_empty())
        .map(str::to_string)
}

/// The comment sent with an action: the user's, else the resource and its reason.
pub fn comment<K: ResourceExt>(obj: &K, given: Option<&str>, reason: Option<&str>) -> String {
    given.map(str::to_string).unwrap_or_else(|| {
        format!(
            "containment-operator {}/{}{}",
            obj.namespace().unwrap_or_default(),
            obj.name_any(),
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        )
    })
}

/// The comment sent with a release.
pub fn release_comment<K: ResourceExt>(obj: &K) -> String {
    format!(
        "containment-operator release of {}/{}",
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
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

    const T0: jiff::Timestamp = jiff::Timestamp::UNIX_EPOCH;

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
        let full = Some("Full");
        let a = ISOLATION.plan(&d, &[], full, "c", T0);
        assert_eq!(a.steps.len(), 1);
        assert_eq!(a.steps[0].path, "/api/machines/dev/isolate");
        assert_eq!(a.steps[0].service, Service::Mde);
        assert_eq!(
            a.steps[0].body.as_ref().unwrap(),
            &json!({"Comment": "c", "IsolationType": "Full"})
        );
        let pending = [action(
            "1",
            "Isolate",
            "Pending",
            "2026-11-23T10:00:00Z",
            "Full",
        )];
        let w = ISOLATION.plan(&d, &pending, full, "c", T0);
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
        assert_eq!(ISOLATION.plan(&d, &done, full, "c", T0).steps.len(), 1);
        let iso = [action(
            "1",
            "Isolate",
            "Succeeded",
            "2026-11-23T10:00:00Z",
            "Full",
        )];
        let ok = ISOLATION.plan(&d, &iso, full, "c", T0);
        assert!(ok.steps.is_empty() && ok.wait.is_none());
        assert_eq!(ok.extra["isolationState"], "Isolated");
        assert_eq!(ok.extra["machineActionId"], "1");
        // Isolated, but Selective where Full is wanted: isolate again.
        assert_eq!(
            ISOLATION.plan(&d, &iso, Some("Selective"), "c", T0).steps[0]
                .body
                .as_ref()
                .unwrap()["IsolationType"],
            "Selective"
        );
    }

    #[test]
    fn each_lever_reads_only_its_own_pair() {
        let d = machine("dev", "Active");
        // An isolation in flight does not hold up a code restriction, nor count as one.
        let acts = [action(
            "1",
            "Isolate",
            "Pending",
            "2026-11-23T10:00:00Z",
            "Full",
        )];
        let a = CODE_RESTRICTION.plan(&d, &acts, None, "c", T0);
        assert_eq!(a.steps.len(), 1);
        assert_eq!(a.steps[0].path, "/api/machines/dev/restrictCodeExecution");
        assert_eq!(a.steps[0].body.as_ref().unwrap(), &json!({"Comment": "c"}));
        assert_eq!(a.extra["restrictionState"], "NotRestricted");
        let on = [
            json!({"id": "2", "type": "RestrictCodeExecution", "status": "Succeeded", "creationDateTimeUtc": "2026-11-23T10:00:00Z"}),
        ];
        let ok = CODE_RESTRICTION.plan(&d, &on, None, "c", T0);
        assert!(ok.steps.is_empty(), "{:?}", ok.steps);
        assert_eq!(ok.extra["restrictionState"], "Restricted");
        let rel = CODE_RESTRICTION.release(Some("dev"), &on, "r");
        assert_eq!(rel[0].path, "/api/machines/dev/unrestrictCodeExecution");
        assert!(CODE_RESTRICTION.release(Some("dev"), &[], "r").is_empty());
        assert!(CODE_RESTRICTION.release(None, &on, "r").is_empty());
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
    fn a_device_goes_by_its_id_and_every_name() {
        let d = Device {
            label: "x".into(),
            candidates: vec![machine("ABC", "Active")],
            device_id: Some("abc".into()),
            actions: Vec::new(),
        };
        assert_eq!(d.names(), ["abc", "arc-web-01.corp.contoso.example"]);
    }
}
