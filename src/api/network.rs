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

/// Which traffic an NSG rule matches.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum NsgDirection {
    /// Traffic from the listed addresses (`sourceAddressPrefixes`).
    #[default]
    Inbound,
    /// Traffic to the listed addresses (`destinationAddressPrefixes`), e.g. a C2 server.
    Outbound,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum NsgProtocol {
    /// Every protocol.
    #[default]
    #[serde(rename = "*")]
    Any,
    Tcp,
    Udp,
    Icmp,
}

fn band_from() -> i32 {
    100
}

fn band_to() -> i32 {
    199
}

/// The priorities (100–4096; lower wins) the operator may give its rules on the NSG.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.from <= self.to").message("spec.priorityBand: from must not be greater than to"))]
pub struct PriorityBand {
    #[serde(default = "band_from")]
    #[schemars(range(min = 100, max = 4096))]
    pub from: i32,
    #[serde(default = "band_to")]
    #[schemars(range(min = 100, max = 4096))]
    pub to: i32,
}

impl Default for PriorityBand {
    fn default() -> Self {
        Self {
            from: band_from(),
            to: band_to(),
        }
    }
}

containment_kind! {
    kind = "NsgDenyRule", shortname = "nsgdr", status = "NsgDenyRuleStatus",
    /// A network security group denies traffic from (Inbound) or to (Outbound) the listed
    /// addresses with a security rule owned by the operator: NsgDenyRules on one NSG with the
    /// same direction, protocol, ports and priority band share one rule holding all their
    /// addresses. No other rule of the NSG is touched; release takes out only this resource's
    /// addresses (the rule is deleted with the last of them).
    pub struct NsgDenyRuleSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        #[schemars(length(min = 1, max = 100), inner(length(max = 18)))]
        #[x_kube(validation = Rule::new("self.all(x, size(x) <= 18 && ((isIP(x) && ip(x).family() == 4) || (isCIDR(x) && cidr(x).ip().family() == 4)))").message("spec.ipAddresses: every entry must be an IPv4 address or IPv4 CIDR (e.g. 203.0.113.5 or 203.0.113.0/24)"))]
        pub ip_addresses: Vec<String>,
        #[serde(default)]
        pub direction: NsgDirection,
        #[serde(default)]
        pub protocol: NsgProtocol,
        /// Destination ports or ranges (`443`, `8000-8100`); every port when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(length(max = 15), inner(length(min = 1, max = 11)), extend("x-kubernetes-list-type" = "set"))]
        #[x_kube(validation = Rule::new("self.all(p, p.matches('^([0-9]{1,5})(-[0-9]{1,5})?$') && p.split('-').all(n, int(n) <= 65535) && (size(p.split('-')) == 1 || int(p.split('-')[0]) <= int(p.split('-')[1])))").message("spec.ports: every entry must be a port (0-65535) or a range low-high (e.g. 443 or 8000-8100)"))]
        pub ports: Vec<String>,
        /// The priorities the rule may take (lowest free one, unique per direction in the NSG).
        #[serde(default)]
        pub priority_band: PriorityBand,
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NsgDenyRuleStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The security rule holding this resource's addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}
