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
    kind = "SqlEntraOnlyAuthentication", shortname = "sqleo", status = "CommonStatus",
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

fn ninety() -> i32 {
    90
}

fn recommended_audit_groups() -> Vec<String> {
    [
        "BATCH_COMPLETED_GROUP",
        "SUCCESSFUL_DATABASE_AUTHENTICATION_GROUP",
        "FAILED_DATABASE_AUTHENTICATION_GROUP",
    ]
    .map(String::from)
    .to_vec()
}

containment_kind! {
    kind = "SqlAuditing", shortname = "sqlaud", status = "CommonStatus",
    /// Server auditing on, to a storage account (through the server's managed identity) and/or
    /// Azure Monitor. The previous auditing settings are recorded and restored on release.
    #[x_kube(validation = Rule::new("has(self.storageEndpoint) || self.azureMonitor").message("spec: set storageEndpoint, or azureMonitor: true (auditing needs a destination)"))]
    pub struct SqlAuditingSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        /// Blob endpoint of the audit storage account, e.g. `https://staudit.blob.core.windows.net/`.
        /// The server's managed identity writes there (no account key is sent or kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 256))]
        #[x_kube(validation = Rule::new("self.matches('^https://[a-z0-9]{3,24}\\\\.blob\\\\.core\\\\.windows\\\\.net/?$')").message("spec.storageEndpoint must be a storage account blob endpoint (https://<account>.blob.core.windows.net/)"))]
        pub storage_endpoint: Option<String>,
        /// Days audit logs are kept in the storage account (0: forever).
        #[serde(default = "ninety")]
        #[schemars(range(min = 0, max = 3285))]
        pub retention_days: i32,
        /// Send audit logs to Azure Monitor (`isAzureMonitorTargetEnabled`); where they go from
        /// there (Log Analytics, Event Hubs) is the master database's diagnostic setting.
        #[serde(default)]
        pub azure_monitor: bool,
        /// Action groups and actions to audit (kept in addition to any already configured).
        #[serde(default = "recommended_audit_groups")]
        #[schemars(length(min = 1, max = 50), inner(length(min = 1, max = 256)), extend("x-kubernetes-list-type" = "set"))]
        pub audit_actions_and_groups: Vec<String>,
    }
}

fn thirty_two() -> i32 {
    32
}

containment_kind! {
    kind = "SqlAdminPasswordRotation", shortname = "sqlpr", status = "CommonStatus",
    /// One-shot: the server admin's password replaced with a generated one once per `trigger`
    /// (or every `schedule`), published to a Secret (`username`, `password`). The password is
    /// stored in the Secret before Azure is asked, so a crash never leaves one nobody has.
    pub struct SqlAdminPasswordRotationSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        /// The Secret that receives `username` and `password` (never status, events or logs).
        pub publish_to: super::storage::PublishTo,
        /// Characters in the generated password (Azure SQL allows 8–128).
        #[serde(default = "thirty_two")]
        #[schemars(range(min = 16, max = 128))]
        pub length: i32,
        /// Change to rotate again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 253))]
        pub trigger: Option<String>,
        /// Rotate periodically, e.g. `720h`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 32))]
        #[x_kube(validation = Rule::new("self.matches('^([0-9]+(h|m|s))+$') && duration(self) >= duration('1h')").message("spec.schedule must be a duration of at least 1h, e.g. 720h"))]
        pub schedule: Option<String>,
    }
}
