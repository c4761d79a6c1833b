//! AppServiceRestart: `POST {site}/restart` (and `{site}/slots/{slot}/restart`) once per
//! trigger (azure-api-facts §3.15). A restart leaves no evidence in Azure, so the acknowledged
//! call in the action ledger is the proof; a call whose answer was lost is re-sent only after
//! the engine's unconfirmed wait (a second restart does no harm a missing one would not).

use serde_json::{Map, Value};

use super::rotation;
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::web::AppServiceRestart;
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step};

crate::impl_kind!(AppServiceRestart, action);

pub const WEB_API: &str = "2023-12-01";

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The site's Azure tags (the guard's protected tag).
    pub tags: Map<String, Value>,
    /// `properties.state` of the site and of each listed slot (null: the slot does not exist).
    pub states: Vec<(Option<String>, Value)>,
}

/// The site, or one of its deployment slots (shared by the App Service kinds).
pub fn base(site: &str, slot: Option<&str>) -> String {
    match slot {
        Some(s) => format!("{site}/slots/{s}"),
        None => site.to_string(),
    }
}

fn what(slot: Option<&str>) -> String {
    match slot {
        Some(s) => format!("restart slot {s}"),
        None => "restart site".into(),
    }
}

/// The site (`None`) and then each listed slot.
pub fn targets(slots: &[String]) -> impl Iterator<Item = Option<&str>> {
    std::iter::once(None).chain(slots.iter().map(|s| Some(s.as_str())))
}

/// Stalled `SlotNotFound` naming every listed slot the site does not have.
pub fn slots_exist<'a>(site: &str, missing: impl Iterator<Item = &'a str>) -> Result<(), Stall> {
    let missing: Vec<&str> = missing.collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Stall::new(
        "SlotNotFound",
        format!(
            "{site} has no deployment slot {} (spec.slots)",
            missing.join(", ")
        ),
    ))
}

pub fn plan(
    site: &str,
    obj: &AppServiceRestart,
    o: &Observed,
    status: &CommonStatus,
) -> Result<Assessment, Stall> {
    slots_exist(
        site,
        o.states
            .iter()
            .filter(|(_, s)| s.is_null())
            .filter_map(|(slot, _)| slot.as_deref()),
    )?;
    let soft = obj.spec.soft_restart;
    let steps: Vec<Step> = targets(&obj.spec.slots)
        .filter(|slot| !rotation::acknowledged(status, &what(*slot)))
        .map(|slot| {
            Step::action(
                format!(
                    "{}/restart?softRestart={soft}&synchronous=true",
                    base(site, slot)
                ),
                WEB_API,
                None,
            )
            .what(what(slot))
        })
        .collect();
    let n = obj.spec.slots.len() + 1;
    let message = if steps.is_empty() {
        let at = status
            .action
            .as_ref()
            .and_then(|l| l.completed_time.as_ref().or(Some(&l.started_time)))
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        format!(
            "restarted {} ({n} target(s)) at {at}",
            if soft { "softly" } else { "fully" }
        )
    } else {
        format!("{} of {n} restart(s) to send", steps.len())
    };
    Ok(Assessment {
        steps,
        message,
        ..Default::default()
    })
}

#[derive(Default)]
pub struct AppServiceRestartControl;

#[async_trait::async_trait]
impl Control for AppServiceRestartControl {
    type K = AppServiceRestart;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.Web/sites";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = None;
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.Web/sites/read",
        "Microsoft.Web/sites/restart/action",
        // spec.slots only.
        "Microsoft.Web/sites/slots/read",
        "Microsoft.Web/sites/slots/restart/action",
    ];
    const ACTION_VARIANTS: &'static [(&'static str, &'static [&'static str])] = &[(
        "SiteOnly",
        &[
            "Microsoft.Web/sites/read",
            "Microsoft.Web/sites/restart/action",
        ],
    )];

    fn tags(&self, observed: &Observed) -> Option<Map<String, Value>> {
        Some(observed.tags.clone())
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let site = az.arm.get(&t.id, WEB_API).await?;
        let mut states = vec![(None, site["properties"]["state"].clone())];
        for slot in &obj.spec.slots {
            let state = az
                .arm
                .find(&base(&t.id, Some(slot)), WEB_API)
                .await?
                .map_or(Value::Null, |s| s["properties"]["state"].clone());
            states.push((Some(slot.clone()), state));
        }
        Ok(Observed {
            tags: super::tags_of(&site),
            states,
        })
    }

    fn assess(
        &self,
        obj: &Self::K,
        t: &ResourceId,
        o: &Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        plan(&t.id, obj, o, status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{ActionLedger, ActionPhase};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn obj(v: Value) -> AppServiceRestart {
        let mut spec = json!({"target": {"resourceId": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Web/sites/app"}});
        for (k, x) in v.as_object().unwrap() {
            spec[k] = x.clone();
        }
        AppServiceRestart::new("x", serde_json::from_value(spec).unwrap())
    }

    fn running(slots: &[&str]) -> Observed {
        let mut states = vec![(None, json!("Running"))];
        states.extend(
            slots
                .iter()
                .map(|s| (Some(s.to_string()), json!("Running"))),
        );
        Observed {
            tags: Map::new(),
            states,
        }
    }

    #[test]
    fn restarts_the_site_and_each_slot_not_yet_acknowledged() {
        let o = obj(json!({"slots": ["staging"]}));
        let a = plan(
            "/site",
            &o,
            &running(&["staging"]),
            &CommonStatus::default(),
        )
        .unwrap();
        let paths: Vec<&str> = a.steps.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/site/restart?softRestart=false&synchronous=true",
                "/site/slots/staging/restart?softRestart=false&synchronous=true"
            ]
        );
        assert!(a.steps.iter().all(|s| s.method == "POST" && !s.idempotent));
        let done = CommonStatus {
            action: Some(ActionLedger {
                run_id: "created".into(),
                phase: ActionPhase::InProgress,
                started_time: Time(jiff::Timestamp::UNIX_EPOCH),
                completed_time: None,
                evidence: None,
                done: vec!["restart site".into()],
                sent: Vec::new(),
            }),
            ..Default::default()
        };
        let a = plan("/site", &o, &running(&["staging"]), &done).unwrap();
        assert_eq!(a.steps.len(), 1);
        assert_eq!(a.steps[0].what, "restart slot staging");
    }

    #[test]
    fn a_missing_slot_stalls_naming_it() {
        let o = obj(json!({"slots": ["stagign"]}));
        let mut seen = running(&[]);
        seen.states.push((Some("stagign".into()), Value::Null));
        let e = plan("/site", &o, &seen, &CommonStatus::default()).unwrap_err();
        assert_eq!(e.reason, "SlotNotFound");
        assert!(e.message.contains("stagign"), "{}", e.message);
    }
}
