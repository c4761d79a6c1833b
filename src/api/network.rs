//! Microsoft.Network kinds.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, CommonStatus};

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum WafPolicyType {
    /// `Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies`
    #[default]
    ApplicationGateway,
    /// `Microsoft.Network/FrontDoorWebApplicationFirewallPolicies`
    FrontDoor,
}

containment_kind! {
    kind = "WafIpBlock", shortname = "wafipb", status = "WafIpBlockStatus",
    /// A WAF policy blocks the listed addresses with one custom rule owned by this resource
    /// (deterministic name, a priority that collides with nothing). Everything else in the
    /// policy is preserved; release removes only this rule.
    pub struct WafIpBlockSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        #[schemars(length(min = 1, max = 100), inner(length(max = 18)))]
        #[x_kube(validation = Rule::new("self.all(x, size(x) <= 18 && ((isIP(x) && ip(x).family() == 4) || (isCIDR(x) && cidr(x).ip().family() == 4)))").message("spec.ipAddresses: every entry must be an IPv4 address or IPv4 CIDR (e.g. 203.0.113.5 or 203.0.113.0/24)"))]
        pub ip_addresses: Vec<String>,
        #[serde(default)]
        pub policy_type: WafPolicyType,
        /// 1–100; chosen automatically (lowest free) when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 100))]
        pub priority: Option<i32>,
        /// Also switch the policy to Prevention mode (Detection only logs); the previous mode is
        /// recorded and restored.
        #[serde(default)]
        pub enforce_prevention_mode: bool,
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WafIpBlockStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The custom rule this resource owns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}
