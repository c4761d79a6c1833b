//! Microsoft.Web (App Service) kinds.

use super::common::{CommonSpec, CommonStatus};

containment_kind! {
    kind = "AppServiceRestart", shortname = "asrst", status = "CommonStatus",
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
