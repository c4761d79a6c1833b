//! Defender for Endpoint device kinds: the target is an MDE device, not an ARM resource.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, TenantCommonSpec};

/// The device: its Defender for Endpoint id, or its computer DNS name (several devices can
/// share a name: the only one, or the only Active one, is chosen; otherwise the resource is
/// Stalled `AmbiguousDevice` naming them all). Name a device the same way in every
/// containment of it, so that they compose.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.deviceId) != has(self.computerDnsName)").message("spec.target: set exactly one of deviceId and computerDnsName"))]
pub struct DeviceTarget {
    /// The Defender for Endpoint device id (40 hex characters; an alert's `mdeDeviceId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 40))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-fA-F]{40}$')").message("spec.target.deviceId must be a Defender for Endpoint device id: 40 hex characters"))]
    pub device_id: Option<String>,
    /// The device's `computerDnsName`, e.g. `ws-finance-07.corp.contoso.example`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9]([-A-Za-z0-9_]{0,62})([.][A-Za-z0-9]([-A-Za-z0-9_]{0,62}))*$')").message("spec.target.computerDnsName must be a DNS name: labels of letters, digits, '-' or '_' separated by '.'"))]
    pub computer_dns_name: Option<String>,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum DeviceIsolationType {
    /// Only the Defender for Endpoint service stays reachable (Windows 10 1703+, Windows 11,
    /// Linux).
    #[default]
    Full,
    /// Outlook, Teams and Skype for Business keep working (Windows 10 1709+, Windows 11).
    Selective,
    /// Contain a device Defender for Endpoint discovered but does not manage.
    UnManagedDevice,
}

containment_kind! {
    kind = "DeviceIsolation", shortname = "deviso", status = "DeviceIsolationStatus",
    /// A Defender for Endpoint device stays network-isolated (Full, Selective or
    /// UnManagedDevice); no action is sent while another isolate/unisolate is pending, the state
    /// is read from the newest succeeded action, and the device is unisolated on release.
    pub struct DeviceIsolationSpec {
        pub target: DeviceTarget,
        #[serde(flatten)]
        pub common: TenantCommonSpec,
        #[serde(default)]
        pub isolation_type: DeviceIsolationType,
        /// Comment recorded with the MDE machine action (default: the resource and its reason).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 256))]
        pub comment: Option<String>,
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceIsolationStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The Defender for Endpoint device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The device's computerDnsName, as Defender for Endpoint knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_dns_name: Option<String>,
    /// The latest isolate/unisolate machine action for the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_action_id: Option<String>,
    /// Isolated or NotIsolated, from the newest succeeded action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_state: Option<String>,
}

containment_kind! {
    kind = "DeviceCodeRestriction", shortname = "devcr", status = "DeviceCodeRestrictionStatus",
    /// A Defender for Endpoint device may run only Microsoft-signed code ("restrict app
    /// execution", Windows 10 1709+ and Windows 11 with Defender Antivirus); lifted on release.
    pub struct DeviceCodeRestrictionSpec {
        pub target: DeviceTarget,
        #[serde(flatten)]
        pub common: TenantCommonSpec,
        /// Comment recorded with the MDE machine action (default: the resource and its reason).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 256))]
        pub comment: Option<String>,
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCodeRestrictionStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The Defender for Endpoint device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The device's computerDnsName, as Defender for Endpoint knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_dns_name: Option<String>,
    /// The latest restrict/unrestrict machine action for the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_action_id: Option<String>,
    /// Restricted or NotRestricted, from the newest succeeded action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction_state: Option<String>,
}
