//! Microsoft.Security kinds.

use super::common::{CommonSpec, CommonStatus};

#[derive(
    schemars::JsonSchema, serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq,
)]
pub enum AlertState {
    Dismissed,
    Resolved,
    InProgress,
    Active,
}

containment_kind! {
    kind = "DefenderAlertState", shortname = "dalert", status = "CommonStatus",
    /// A Defender for Cloud alert stays in `state` (re-applied if someone changes it); on
    /// release it returns to the state recorded before.
    #[x_kube(validation = Rule::new("has(self.target.resourceId) && self.target.resourceId.matches('(?i)/providers/Microsoft.Security/locations/[^/]+/alerts/[^/]+$')").message("spec.target.resourceId must be the alert's full id: /subscriptions/<guid>[/resourceGroups/<rg>]/providers/Microsoft.Security/locations/<ascLocation>/alerts/<name>"))]
    pub struct DefenderAlertStateSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        pub state: AlertState,
    }
}
