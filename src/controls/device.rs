//! DeviceIsolation and DeviceCodeRestriction: a Defender for Endpoint device named by id or
//! DNS name, kept isolated / restricted through the shared machine-action mechanism.

use std::borrow::Cow;

use serde_json::Value;

use crate::api::common::{CommonSpec, CommonStatus, ReleasePolicy};
use crate::api::device::{
    DeviceCodeRestriction, DeviceIsolation, DeviceIsolationType, DeviceTarget,
};
use crate::azure::{AzureError, Clients, ResourceId};
use crate::controls::machine_action::{self, CODE_RESTRICTION, Device, ISOLATION, Lever, Lookup};
use crate::engine::{Assessment, Control, Stall, Step, Subject};

/// The device's key: its id or its name, lower-cased (MDE compares both case-insensitively).
fn device_target(t: &DeviceTarget) -> Result<ResourceId, String> {
    let name = t
        .device_id
        .as_deref()
        .or(t.computer_dns_name.as_deref())
        .ok_or("spec.target: set deviceId or computerDnsName")?
        .to_ascii_lowercase();
    Ok(ResourceId {
        id: format!("device/{name}"),
        subscription: String::new(),
        resource_group: None,
        name,
    })
}

async fn observe_device(
    az: &Clients,
    t: &DeviceTarget,
    status: Option<&CommonStatus>,
    lever: &Lever,
) -> Result<Device, AzureError> {
    let recorded = machine_action::recorded_device(status.and_then(|s| s.restore.as_ref()));
    let names: Vec<String> = t.computer_dns_name.iter().cloned().collect();
    let lookup = match t.device_id.as_deref() {
        Some(id) => Lookup::Id(id),
        None => Lookup::Names(&names),
    };
    machine_action::observe(az, lookup, recorded, lever).await
}

macro_rules! device_kind {
    ($kind:ty) => {
        impl crate::engine::Kind for $kind {
            fn common(&self) -> Cow<'_, CommonSpec> {
                Cow::Owned(self.spec.common.to_common())
            }
            fn common_status(&self) -> Option<&CommonStatus> {
                self.status.as_ref().map(|s| &s.common)
            }
        }
    };
}
device_kind!(DeviceIsolation);
device_kind!(DeviceCodeRestriction);

fn scope_name(t: DeviceIsolationType) -> &'static str {
    match t {
        DeviceIsolationType::Full => "Full",
        DeviceIsolationType::Selective => "Selective",
        DeviceIsolationType::UnManagedDevice => "UnManagedDevice",
    }
}

#[derive(Default)]
pub struct DeviceIsolationControl;

#[async_trait::async_trait]
impl Control for DeviceIsolationControl {
    type K = DeviceIsolation;
    type Observed = Device;
    const RESOURCE_TYPE: &'static str = "microsoft.defender.endpoint/machines";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const COMPOSES: bool = true;
    const ACTIONS: &'static [&'static str] = &[];

    fn target(obj: &DeviceIsolation) -> Result<ResourceId, String> {
        device_target(&obj.spec.target)
    }

    /// Full over Selective; an unmanaged-device containment is a different action and does
    /// not mix with either.
    fn compose(&self, acc: &mut DeviceIsolation, other: &DeviceIsolation) -> Result<(), String> {
        use DeviceIsolationType::*;
        match (acc.spec.isolation_type, other.spec.isolation_type) {
            (a, b) if a == b => Ok(()),
            (UnManagedDevice, _) | (_, UnManagedDevice) => Err(format!(
                "isolationType {} and {} cannot both hold on one device",
                scope_name(acc.spec.isolation_type),
                scope_name(other.spec.isolation_type)
            )),
            _ => {
                acc.spec.isolation_type = Full;
                Ok(())
            }
        }
    }

    fn subject(&self, observed: &Device) -> Option<Subject> {
        Some(Subject::Device(observed.names()))
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &DeviceIsolation,
        _t: &ResourceId,
    ) -> Result<Device, AzureError> {
        observe_device(
            az,
            &obj.spec.target,
            obj.status.as_ref().map(|s| &s.common),
            &ISOLATION,
        )
        .await
    }

    fn assess(
        &self,
        obj: &DeviceIsolation,
        _t: &ResourceId,
        o: &Device,
        _status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let device = o.chosen()?;
        let comment = machine_action::comment(
            obj,
            obj.spec.comment.as_deref(),
            obj.spec.common.reason.as_deref(),
        );
        Ok(ISOLATION.plan(
            &device,
            &o.actions,
            Some(scope_name(obj.spec.isolation_type)),
            &comment,
            jiff::Timestamp::now(),
        ))
    }

    fn release_wait(&self, o: &Device) -> Option<String> {
        ISOLATION.release_wait(&o.actions)
    }

    fn release(
        &self,
        obj: &DeviceIsolation,
        _t: &ResourceId,
        o: &Device,
        _restore: &Value,
    ) -> Vec<Step> {
        ISOLATION.release(
            o.device_id.as_deref(),
            &o.actions,
            &machine_action::release_comment(obj),
        )
    }
}

#[derive(Default)]
pub struct DeviceCodeRestrictionControl;

#[async_trait::async_trait]
impl Control for DeviceCodeRestrictionControl {
    type K = DeviceCodeRestriction;
    type Observed = Device;
    const RESOURCE_TYPE: &'static str = "microsoft.defender.endpoint/machines";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Restore);
    const COMPOSES: bool = true;
    const ACTIONS: &'static [&'static str] = &[];

    fn target(obj: &DeviceCodeRestriction) -> Result<ResourceId, String> {
        device_target(&obj.spec.target)
    }

    fn subject(&self, observed: &Device) -> Option<Subject> {
        Some(Subject::Device(observed.names()))
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &DeviceCodeRestriction,
        _t: &ResourceId,
    ) -> Result<Device, AzureError> {
        observe_device(
            az,
            &obj.spec.target,
            obj.status.as_ref().map(|s| &s.common),
            &CODE_RESTRICTION,
        )
        .await
    }

    fn assess(
        &self,
        obj: &DeviceCodeRestriction,
        _t: &ResourceId,
        o: &Device,
        _status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        let device = o.chosen()?;
        let comment = machine_action::comment(
            obj,
            obj.spec.comment.as_deref(),
            obj.spec.common.reason.as_deref(),
        );
        Ok(CODE_RESTRICTION.plan(&device, &o.actions, None, &comment, jiff::Timestamp::now()))
    }

    fn release_wait(&self, o: &Device) -> Option<String> {
        CODE_RESTRICTION.release_wait(&o.actions)
    }

    fn release(
        &self,
        obj: &DeviceCodeRestriction,
        _t: &ResourceId,
        o: &Device,
        _restore: &Value,
    ) -> Vec<Step> {
        CODE_RESTRICTION.release(
            o.device_id.as_deref(),
            &o.actions,
            &machine_action::release_comment(obj),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_key_is_its_id_or_name_lower_cased() {
        let t = DeviceTarget {
            computer_dns_name: Some("WS-Finance-07.corp.example".into()),
            ..Default::default()
        };
        assert_eq!(
            device_target(&t).unwrap().id,
            "device/ws-finance-07.corp.example"
        );
        assert!(device_target(&DeviceTarget::default()).is_err());
    }

    #[test]
    fn isolation_types_compose_to_full_and_unmanaged_mixes_with_nothing() {
        let obj = |t: &str| -> DeviceIsolation {
            serde_json::from_value(serde_json::json!({"apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "DeviceIsolation", "metadata": {"name": "d", "namespace": "n"}, "spec": {"target": {"deviceId": "7a2cfa31e4b4d6a1f0b3c2d1e0f9a8b7c6d5e4f3"}, "isolationType": t}})).unwrap()
        };
        let c = DeviceIsolationControl;
        let mut acc = obj("Selective");
        c.compose(&mut acc, &obj("Full")).unwrap();
        assert_eq!(acc.spec.isolation_type, DeviceIsolationType::Full);
        let err = c.compose(&mut acc, &obj("UnManagedDevice")).unwrap_err();
        assert!(err.contains("UnManagedDevice"), "{err}");
        assert_eq!(acc.spec.isolation_type, DeviceIsolationType::Full);
    }
}
