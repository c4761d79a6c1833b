//! Defender for Endpoint indicators (IoCs).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonStatus, TenantCommonSpec};

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndicatorType {
    /// One IPv4 or IPv6 address (MDE takes no CIDR ranges).
    IpAddress,
    Url,
    DomainName,
    FileSha1,
    FileSha256,
    FileMd5,
    CertificateThumbprint,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum IndicatorAction {
    #[default]
    Block,
    Warn,
    /// Recorded and alerted (the operator sets `generateAlert`, which MDE requires for Audit).
    Audit,
    /// Block and remediate (files and certificates).
    BlockAndRemediate,
    /// Allowed (an exclusion; not "Allow").
    Allowed,
}

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum IndicatorSeverity {
    Informational,
    Low,
    Medium,
    #[default]
    High,
}

containment_kind! {
    kind = "ThreatIndicator", shortname = "tind", status = "ThreatIndicatorStatus",
    /// A Defender for Endpoint indicator (one IP, URL, domain, file hash or certificate
    /// thumbprint) is in force with the action and severity asked for, and deleted on release.
    /// Many ThreatIndicators are written together in `indicators/import` batches (at most 500);
    /// `expirationTime` is always set, so an indicator never outlives its containment by long.
    #[x_kube(validation = Rule::new("self.indicatorType != 'IpAddress' || (!self.value.contains('/') && (self.value.matches('^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$') || (self.value.contains(':') && self.value.matches('^[0-9a-fA-F:.]{2,45}$'))))").message("spec.value must be one IPv4 or IPv6 address with indicatorType IpAddress (Defender for Endpoint takes no CIDR ranges: one ThreatIndicator per address)"))]
    #[x_kube(validation = Rule::new("self.indicatorType != 'FileSha1' || self.value.matches('^[0-9a-fA-F]{40}$')").message("spec.value must be 40 hex characters with indicatorType FileSha1"))]
    #[x_kube(validation = Rule::new("self.indicatorType != 'FileSha256' || self.value.matches('^[0-9a-fA-F]{64}$')").message("spec.value must be 64 hex characters with indicatorType FileSha256"))]
    #[x_kube(validation = Rule::new("self.indicatorType != 'FileMd5' || self.value.matches('^[0-9a-fA-F]{32}$')").message("spec.value must be 32 hex characters with indicatorType FileMd5"))]
    #[x_kube(validation = Rule::new("self.indicatorType != 'CertificateThumbprint' || self.value.matches('^[0-9a-fA-F]{40}$')").message("spec.value must be a 40-hex-character SHA-1 thumbprint with indicatorType CertificateThumbprint"))]
    #[x_kube(validation = Rule::new("self.indicatorType != 'DomainName' || self.value.matches('^([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?[.])+[A-Za-z]{2,63}$')").message("spec.value must be a domain name (no scheme, path or wildcard) with indicatorType DomainName"))]
    #[x_kube(validation = Rule::new("self.indicatorType != 'Url' || self.value.matches('^https?://[^\\\\s]+$')").message("spec.value must be an http(s) URL with indicatorType Url"))]
    pub struct ThreatIndicatorSpec {
        #[serde(flatten)]
        pub common: TenantCommonSpec,
        pub indicator_type: IndicatorType,
        /// The address, URL, domain, hash or thumbprint.
        #[schemars(length(min = 1, max = 2048))]
        pub value: String,
        #[serde(default)]
        pub action: IndicatorAction,
        #[serde(default)]
        pub severity: IndicatorSeverity,
        /// Shown in the Defender portal (default: the resource's namespace/name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 256))]
        pub title: Option<String>,
        /// Default: `reason`, else the title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 1024))]
        pub description: Option<String>,
        /// Alert when the indicator matches (always on for Audit).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pub generate_alert: bool,
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ThreatIndicatorStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The indicator's id in Defender for Endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicator_id: Option<String>,
    /// When Defender for Endpoint expires it (renewed while this resource is in force).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicator_expiration_time: Option<Time>,
}
