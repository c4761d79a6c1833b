//! Microsoft.Storage kinds.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, CommonStatus};

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum StorageKey {
    Key1,
    Key2,
    Kerb1,
    Kerb2,
}

fn default_keys() -> Vec<StorageKey> {
    vec![StorageKey::Key1, StorageKey::Key2]
}

/// Where to publish the new key (never into status or logs).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PublishTo {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Defaults to the resource's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

containment_kind! {
    kind = "StorageKeyRotation", shortname = "stkr", status = "CommonStatus",
    /// One-shot: regenerate the listed keys once per `trigger` (or every `schedule`); completion is
    /// proven by `keyCreationTime`.
    pub struct StorageKeyRotationSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        #[serde(default = "default_keys")]
        #[schemars(length(min = 1, max = 4))]
        #[x_kube(validation = Rule::new("self.all(k, self.exists_one(j, j == k))").message("spec.keys must not list a key twice"))]
        pub keys: Vec<StorageKey>,
        /// Change to rotate again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 253))]
        pub trigger: Option<String>,
        /// Rotate periodically, e.g. `720h`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 32))]
        #[x_kube(validation = Rule::new("self.matches('^([0-9]+(h|m|s))+$') && duration(self) >= duration('1h')").message("spec.schedule must be a duration of at least 1h, e.g. 720h"))]
        pub schedule: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub publish_to: Option<PublishTo>,
    }
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum PublicNetworkAccess {
    #[default]
    Disabled,
    /// Deny by default with `allowedIpRanges` as the allow-list.
    Restricted,
    Unchanged,
}

fn yes() -> bool {
    true
}

containment_kind! {
    kind = "StoragePublicAccessLockdown", shortname = "stpal", status = "CommonStatus",
    /// Anonymous blob access off and/or public network access disabled or restricted; optionally
    /// Shared Key off. The previous values are recorded and restored on release.
    #[x_kube(validation = Rule::new("!has(self.allowedIpRanges) || self.publicNetworkAccess == 'Restricted'").message("spec.allowedIpRanges is only valid with publicNetworkAccess: Restricted"))]
    pub struct StoragePublicAccessLockdownSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        #[serde(default = "yes")]
        pub disable_anonymous_blob_access: bool,
        #[serde(default)]
        pub public_network_access: PublicNetworkAccess,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 100), inner(length(max = 18)))]
        #[x_kube(validation = Rule::new("self.all(x, size(x) <= 18 && ((isIP(x) && ip(x).family() == 4) || (isCIDR(x) && cidr(x).ip().family() == 4)))").message("spec.allowedIpRanges: every entry must be an IPv4 address or IPv4 CIDR"))]
        pub allowed_ip_ranges: Option<Vec<String>>,
        /// `true` breaks every key- and SAS-based client: only Entra ID remains.
        #[serde(default)]
        pub disable_shared_key_access: bool,
    }
}

containment_kind! {
    kind = "StorageSasRevocation", shortname = "stsr", status = "StorageSasRevocationStatus",
    /// One-shot: revoke every user-delegation SAS once per `trigger`; with `rotateAccountKeys`
    /// also regenerate key1 and key2, the only way to invalidate account and service SAS.
    pub struct StorageSasRevocationSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        #[serde(default)]
        pub rotate_account_keys: bool,
        /// Change to revoke again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 253))]
        pub trigger: Option<String>,
    }
}

/// Which SAS kinds the last run invalidated: `Revoked` or `StillValid`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SasStatus {
    /// SAS signed with a user-delegation key (revokeUserDelegationKeys).
    pub user_delegation: String,
    /// Account SAS (signed with key1 or key2).
    pub account: String,
    /// Service SAS (signed with key1 or key2).
    pub service: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSasRevocationStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_status: Option<SasStatus>,
}

fn fourteen() -> u32 {
    14
}

containment_kind! {
    kind = "StorageSoftDeleteProtection", shortname = "stsd", status = "CommonStatus",
    /// Blob and container soft delete on for at least the given days (an existing longer
    /// retention is kept), and permanent delete of soft-deleted data off. The previous retention
    /// policies are recorded and restored on release; every other blob service property is sent
    /// back as read.
    pub struct StorageSoftDeleteProtectionSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        /// Soft-deleted blobs are kept at least this many days (1–365).
        #[serde(default = "fourteen")]
        #[schemars(range(min = 1, max = 365))]
        pub blob_retention_days: u32,
        /// Deleted containers are kept at least this many days (1–365).
        #[serde(default = "fourteen")]
        #[schemars(range(min = 1, max = 365))]
        pub container_retention_days: u32,
    }
}

/// On-upload malware scanning (billed per GB scanned).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MalwareScanning {
    /// At most this many GB scanned per month; -1 means no cap.
    #[serde(default = "five_thousand", rename = "capGBPerMonth")]
    #[schemars(range(min = -1))]
    #[x_kube(validation = Rule::new("self == -1 || self >= 1").message("spec.malwareScanning.capGBPerMonth must be -1 (no cap) or at least 1"))]
    pub cap_gb_per_month: i32,
    /// Event Grid topic that receives scan results (its ARM id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.startsWith('/subscriptions/') && self.contains('/providers/Microsoft.EventGrid/topics/')").message("spec.malwareScanning.scanResultsEventGridTopicResourceId must be an Event Grid topic id (/subscriptions/…/providers/Microsoft.EventGrid/topics/…)"))]
    pub scan_results_event_grid_topic_resource_id: Option<String>,
}

fn five_thousand() -> i32 {
    5000
}

containment_kind! {
    kind = "StorageDefenderProtection", shortname = "stdp", status = "StorageDefenderProtectionStatus",
    /// Defender for Storage on for the account, overriding the subscription's plan, with
    /// optional on-upload malware scanning and sensitive data discovery. The previous settings
    /// are recorded and put back on release (no setting before: back to the subscription's).
    pub struct StorageDefenderProtectionSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        /// Scan every uploaded blob for malware.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub malware_scanning: Option<MalwareScanning>,
        /// Classify sensitive data in the account's blobs.
        #[serde(default)]
        pub sensitive_data_discovery: bool,
    }
}

/// The outcome Azure reported for enabling one Defender feature (`operationStatus`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FeatureStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageDefenderProtectionStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Malware scanning's `operationStatus` from the last write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malware_scanning: Option<FeatureStatus>,
    /// Sensitive data discovery's `operationStatus` from the last write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive_data_discovery: Option<FeatureStatus>,
}
