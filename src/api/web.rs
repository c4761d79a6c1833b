//! Microsoft.Web (App Service) kinds.

use super::common::{CommonSpec, CommonStatus};

containment_kind! {
    kind = "AppServiceRestart", shortname = "apprs", status = "CommonStatus",
    /// One-shot: restart the web app, and each listed deployment slot, once per `trigger`
    /// value (or at creation) — e.g. to drop what an attacker loaded into the running worker.
    /// Irreversible: `releasePolicy` does not apply.
    pub struct AppServiceRestartSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        /// Deployment slots restarted too (the production site always is).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(length(max = 20), inner(length(min = 1, max = 59)), extend("x-kubernetes-list-type" = "set"))]
        #[x_kube(validation = Rule::new("self.all(s, s.matches('^[A-Za-z0-9-]+$'))").message("spec.slots: a slot name is letters, digits and hyphens"))]
        pub slots: Vec<String>,
        /// Restart only what needs it (`softRestart=true`) instead of recycling every worker.
        #[serde(default)]
        pub soft_restart: bool,
        /// Change to restart again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 253))]
        pub trigger: Option<String>,
    }
}

/// The Secret whose keys are app setting names and whose values are their new values.
#[derive(kube::KubeSchema, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SettingsFrom {
    /// A Secret in the resource's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

containment_kind! {
    kind = "AppServiceSecretRotation", shortname = "appsr", status = "AppServiceSecretRotationStatus",
    /// The web app's (and each listed slot's) app settings hold the values of a Secret: listed,
    /// overlaid with the Secret's keys and written back whole, so no other setting is dropped;
    /// re-applied when changed in Azure. Optionally basic-auth (FTP and SCM) publishing off.
    pub struct AppServiceSecretRotationSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        pub settings_from: SettingsFrom,
        /// Deployment slots whose settings are set too (the production site always is).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(length(max = 20), inner(length(min = 1, max = 59)), extend("x-kubernetes-list-type" = "set"))]
        #[x_kube(validation = Rule::new("self.all(s, s.matches('^[A-Za-z0-9-]+$'))").message("spec.slots: a slot name is letters, digits and hyphens"))]
        pub slots: Vec<String>,
        /// Also turn off basic-auth publishing credentials (FTP and SCM) on the site and slots;
        /// the previous policies are restored on release.
        #[serde(default)]
        pub disable_basic_auth: bool,
    }
}

#[derive(
    kube::KubeSchema, serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq,
)]
#[serde(rename_all = "camelCase")]
pub struct AppServiceSecretRotationStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// Per app setting: `hmac-sha256:` and the first 16 hex digits of HMAC-SHA256(key: the
    /// resource's uid, message: the desired value) — the evidence, never the value.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub app_settings: std::collections::BTreeMap<String, String>,
}
