//! ArcIsolation: Arc has no isolate action, so the Arc machine is mapped to its Defender for
//! Endpoint device (its FQDN = the device's computerDnsName) and isolated through the shared
//! MDE machine-action mechanism (`machine_action`); this control adds only the Arc lookup.

use serde_json::Value;

use crate::api::arc::{ArcIsolation, IsolationType};
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::azure::{AzureError, Clients, ResourceId};
use crate::controls::machine_action::{self, Device, ISOLATION, Lookup};
use crate::engine::{Assessment, Control, Stall, Step, Subject};

pub const ARC_API: &str = "2022-12-27";

crate::impl_kind!(ArcIsolation, status: s => &s.common);

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The target's Azure tags (the guard's protected tag).
    pub tags: serde_json::Map<String, Value>,
    /// The MDE device the Arc machine's names lead to, and its isolation actions.
    pub device: Device,
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

fn scope_name(t: IsolationType) -> &'static str {
    match t {
        IsolationType::Full => "Full",
        IsolationType::Selective => "Selective",
    }
}

#[derive(Default)]
pub struct ArcIsolationControl;

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

    fn subject(&self, observed: &Observed) -> Option<Subject> {
        Some(Subject::Device(observed.device.names()))
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &ArcIsolation,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let m = az.arm.get(&t.id, ARC_API).await?;
        let names = names(&m, &t.name);
        let recorded = machine_action::recorded_device(
            obj.status.as_ref().and_then(|s| s.common.restore.as_ref()),
        );
        let device =
            machine_action::observe(az, Lookup::Names(&names), recorded, &ISOLATION).await?;
        Ok(Observed {
            tags: super::tags_of(&m),
            device,
        })
    }

    fn assess(
        &self,
        obj: &ArcIsolation,
        _t: &ResourceId,
        o: &Observed,
        _status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let device = o.device.chosen().map_err(|mut s| {
            if s.reason == "DeviceNotFound" {
                s.message = format!(
                    "no Defender for Endpoint device has computerDnsName {:?} (the Arc machine's FQDN); is the MDE extension installed and onboarded?",
                    o.device.label
                );
            }
            s
        })?;
        let comment = machine_action::comment(
            obj,
            obj.spec.comment.as_deref(),
            obj.spec.common.reason.as_deref(),
        );
        Ok(ISOLATION.plan(
            &device,
            &o.device.actions,
            Some(scope_name(obj.spec.isolation_type)),
            &comment,
            jiff::Timestamp::now(),
        ))
    }

    fn release_wait(&self, o: &Observed) -> Option<String> {
        ISOLATION.release_wait(&o.device.actions)
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
        ISOLATION.release(
            o.device.device_id.as_deref(),
            &o.device.actions,
            &machine_action::release_comment(obj),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
