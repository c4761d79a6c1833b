//! Azure Arc kinds.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, CommonStatus};

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum IsolationType {
    /// Only the Defender for Endpoint service stays reachable.
    #[default]
    Full,
    /// Outlook, Teams and Skype for Business keep working (Windows).
    Selective,
}

containment_kind! {
    kind = "ArcIsolation", shortname = "arciso", status = "ArcIsolationStatus",
    /// An Azure Arc server stays network-isolated through Defender for Endpoint (Arc has no
    /// isolate action): the Arc machine is matched to its MDE device by FQDN, isolated, and
    /// released (unisolated) on delete.
    pub struct ArcIsolationSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        #[serde(default)]
        pub isolation_type: IsolationType,
        /// Comment recorded with the MDE machine action (default: the resource and its reason).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 256))]
        pub comment: Option<String>,
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArcIsolationStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The Defender for Endpoint device id the Arc machine maps to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The latest isolate/unisolate machine action for the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_action_id: Option<String>,
    /// Isolated or NotIsolated, from the latest succeeded action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_state: Option<String>,
}
