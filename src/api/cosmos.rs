//! Microsoft.DocumentDB kinds.

use super::common::{CommonSpec, CommonStatus};

#[derive(
    schemars::JsonSchema, serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq,
)]
#[serde(rename_all = "camelCase")]
pub enum CosmosKeyKind {
    Primary,
    Secondary,
    PrimaryReadonly,
    SecondaryReadonly,
}

fn default_key_kinds() -> Vec<CosmosKeyKind> {
    vec![CosmosKeyKind::Primary, CosmosKeyKind::Secondary]
}

containment_kind! {
    kind = "CosmosKeyRotation", shortname = "cskr", status = "CommonStatus",
    /// One-shot: regenerate the listed keys (one long-running operation each, in order) once per
    /// `trigger` or every `schedule`; completion is proven by `keysMetadata.*.generationTime`.
    pub struct CosmosKeyRotationSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        #[serde(default = "default_key_kinds")]
        #[schemars(length(min = 1, max = 4))]
        #[x_kube(validation = Rule::new("self.all(k, self.exists_one(j, j == k))").message("spec.keyKinds must not list a key twice"))]
        pub key_kinds: Vec<CosmosKeyKind>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 253))]
        pub trigger: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 32))]
        #[x_kube(validation = Rule::new("self.matches('^([0-9]+(h|m|s))+$') && duration(self) >= duration('1h')").message("spec.schedule must be a duration of at least 1h, e.g. 720h"))]
        pub schedule: Option<String>,
    }
}

#[derive(
    schemars::JsonSchema,
    serde::Serialize,
    serde::Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
)]
pub enum CosmosNetworkAccess {
    #[default]
    Disabled,
    /// Public endpoint on, limited to `allowedIpRanges`.
    Restricted,
}

containment_kind! {
    kind = "CosmosPublicAccessLockdown", shortname = "cspal", status = "CommonStatus",
    /// Public network access disabled, or limited to an allow-list; optionally local (key)
    /// auth off. Previous values are recorded and restored on release.
    #[x_kube(validation = Rule::new("!has(self.allowedIpRanges) || self.publicNetworkAccess == 'Restricted'").message("spec.allowedIpRanges is only valid with publicNetworkAccess: Restricted"))]
    #[x_kube(validation = Rule::new("self.publicNetworkAccess != 'Restricted' || (has(self.allowedIpRanges) && size(self.allowedIpRanges) > 0)").message("spec.allowedIpRanges: at least one range is required with publicNetworkAccess: Restricted"))]
    pub struct CosmosPublicAccessLockdownSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        #[serde(default)]
        pub public_network_access: CosmosNetworkAccess,
        /// Public IPv4 addresses or CIDRs; Cosmos DB refuses private ranges.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 100), inner(length(max = 18)))]
        #[x_kube(validation = Rule::new("self.all(x, size(x) <= 18 && ((isIP(x) && ip(x).family() == 4) || (isCIDR(x) && cidr(x).ip().family() == 4)))").message("spec.allowedIpRanges: every entry must be an IPv4 address or IPv4 CIDR"))]
        #[x_kube(validation = Rule::new("self.all(x, !(isCIDR(x) || isIP(x)) || !['10.0.0.0/8', '100.64.0.0/10', '172.16.0.0/12', '192.168.0.0/16'].exists(p, isIP(x) ? cidr(p).containsIP(x) : cidr(p).containsCIDR(x)))").message("spec.allowedIpRanges: private ranges (10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16) are not accepted by Cosmos DB"))]
        pub allowed_ip_ranges: Option<Vec<String>>,
        /// `true` breaks every key-based client: only Entra ID remains.
        #[serde(default)]
        pub disable_local_auth: bool,
    }
}
