//! Microsoft.Sql kinds.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, CommonStatus};

containment_kind! {
    kind = "SqlIpBlock", shortname = "sqlipb", status = "SqlIpBlockStatus",
    /// No server-level firewall rule may admit the listed IPv4 addresses or CIDRs: covering allow
    /// rules are split or removed (recorded for restore). SQL firewall rules are allow-only.
    pub struct SqlIpBlockSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        /// IPv4 addresses or CIDRs that no firewall rule may admit.
        #[schemars(length(min = 1, max = 100), inner(length(max = 18)))]
        #[x_kube(validation = Rule::new("self.all(x, size(x) <= 18 && ((isIP(x) && ip(x).family() == 4) || (isCIDR(x) && cidr(x).ip().family() == 4)))").message("spec.ipAddresses: every entry must be an IPv4 address or IPv4 CIDR (e.g. 203.0.113.5 or 203.0.113.0/24)"))]
        pub ip_addresses: Vec<String>,
        /// Also remove the 0.0.0.0 "allow Azure services" rule, which admits any Azure-hosted client.
        #[serde(default)]
        pub remove_allow_azure_services_rule: bool,
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SqlIpBlockStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// IPv6 rules are left alone but reported here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6_rules_not_checked: Vec<String>,
}

containment_kind! {
    kind = "SqlPublicAccessLockdown", shortname = "sqlpal", status = "CommonStatus",
    /// The server's public network access stays Disabled (requires a private endpoint).
    pub struct SqlPublicAccessLockdownSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
    }
}

containment_kind! {
    kind = "SqlEntraOnlyAuthentication", shortname = "sqleoa", status = "CommonStatus",
    /// SQL authentication (password logins) off on the server: Entra ID only. Azure refuses
    /// this while the server has no Entra admin; that case is Stalled, nothing is sent. The
    /// previous setting is recorded and restored on release.
    pub struct SqlEntraOnlyAuthenticationSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
    }
}

containment_kind! {
    kind = "SqlTransparentDataEncryption", shortname = "sqltde", status = "CommonStatus",
    /// Transparent data encryption `Enabled` on each listed database of the server. The
    /// previous states are recorded and restored on release.
    pub struct SqlTransparentDataEncryptionSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        /// Database names on the target server (the saved SQL specs have no database list, so
        /// "every database" cannot be discovered: name them).
        #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 128)), extend("x-kubernetes-list-type" = "set"))]
        #[x_kube(validation = Rule::new("self.all(d, d != 'master')").message("spec.databases: master cannot be listed (TDE does not apply to it)"))]
        pub databases: Vec<String>,
    }
}
