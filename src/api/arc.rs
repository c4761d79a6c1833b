//! Azure Arc kinds.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::common::{CommonSpec, CommonStatus};

#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum IsolationType {
    /// Only the Defender for Endpoint service stays reachable.
    #[default]
    Full,
    /// Outlook, Teams and Skype for Business keep working (Windows).
    Selective,
}

containment_kind! {
    kind = "ArcIsolation", shortname = "arciso", status = "ArcIsolationStatus",
    /// An Azure Arc server stays network-isolated through Defender for Endpoint (Arc has no
    /// isolate action): the Arc machine is matched to its MDE device by FQDN, isolated, and
    /// released (unisolated) on delete.
    pub struct ArcIsolationSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        #[serde(default)]
        pub isolation_type: IsolationType,
        /// Comment recorded with the MDE machine action (default: the resource and its reason).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 256))]
        pub comment: Option<String>,
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArcIsolationStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// The Defender for Endpoint device id the Arc machine maps to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The latest isolate/unisolate machine action for the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_action_id: Option<String>,
    /// Isolated or NotIsolated, from the latest succeeded action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation_state: Option<String>,
}

/// A plain script parameter (shown nowhere but sent as is).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunCommandParameter {
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// A Secret in the resource's namespace whose keys become `protectedParameters`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProtectedParametersFrom {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

fn one_hour() -> i32 {
    3600
}

containment_kind! {
    kind = "ArcRunCommand", shortname = "arcrc", status = "ArcRunCommandStatus",
    /// One-shot: run a script on an Azure Arc server once per `trigger` value (or at creation)
    /// through a run command (`machines/{name}/runCommands/{name}`), summarise its result in
    /// status, and delete the run command afterwards unless `keepRunCommand`. Never re-run after
    /// a crash: the run command's name comes from the resource and the trigger, and it is read
    /// before it is ever created. Irreversible: `releasePolicy` does not apply.
    pub struct ArcRunCommandSpec {
        #[serde(flatten)]
        pub common: CommonSpec,
        /// The script (shell on Linux, PowerShell on Windows).
        #[schemars(length(min = 1, max = 65536))]
        pub script: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        #[schemars(length(max = 50))]
        pub parameters: Vec<RunCommandParameter>,
        /// Each key of this Secret is sent as a protected parameter; values never reach status,
        /// events or logs, and are masked in the output summary.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub protected_parameters_from: Option<ProtectedParametersFrom>,
        /// Azure stops the script after this long (`timeoutInSeconds`).
        #[serde(default = "one_hour")]
        #[schemars(range(min = 60, max = 86400))]
        pub timeout_seconds: i32,
        /// Keep the run command resource (and its instance view) in Azure after the run.
        #[serde(default)]
        pub keep_run_command: bool,
        /// Change to run again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 253))]
        pub trigger: Option<String>,
    }
}

/// What the run reported (`instanceView`), with output and error truncated and any protected
/// parameter value masked.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunCommandResult {
    /// The run command resource this run created.
    pub run_command: String,
    /// Unknown | Pending | Running | Failed | Succeeded | TimedOut | Canceled.
    pub execution_state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The first 1024 characters of the output.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// The first 1024 characters of the error stream.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArcRunCommandStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunCommandResult>,
}
