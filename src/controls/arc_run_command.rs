//! ArcRunCommand: a script run once per trigger on an Azure Arc server (azure-api-facts §3.11:
//! `PUT {machine}/runCommands/{name}`, a long-running operation that ends when the script does
//! with `asyncExecution: false`). A PUT of an existing run command runs the script again, so
//! the run command's name is derived from the resource's uid and the trigger, and it is read
//! before any PUT: once it exists, this run never creates it again, crash or not. The result
//! (`instanceView`) is summarised in `status.result`, truncated and with protected parameter
//! values masked; then the run command is deleted unless `keepRunCommand`.

use kube::ResourceExt;
use serde_json::{Map, Value, json};

use crate::api::arc::{ArcRunCommand, RunCommandResult};
use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::azure::{AzureError, Clients, ResourceId};
use crate::engine::{Assessment, Control, Stall, Step, Wait, ledger};

crate::impl_kind!(ArcRunCommand, action, status: s => &s.common);

/// The first API version that serves run commands among the saved specs (preview).
pub const RUN_COMMAND_API: &str = "2024-05-20-preview";
const MACHINE_API: &str = "2022-12-27";
const SUMMARY_CHARS: usize = 1024;
const TERMINAL: [&str; 4] = ["Succeeded", "Failed", "TimedOut", "Canceled"];

#[derive(Clone, Default)]
pub struct Observed {
    pub tags: Map<String, Value>,
    pub location: String,
    /// The machine's `properties.status` (Connected, Disconnected, Error).
    pub machine_status: String,
    /// This run's run command name, and the resource if it exists.
    pub name: String,
    pub run_command: Option<Value>,
    /// The protected parameters (name, value) from the Secret.
    pub protected: Vec<(String, String)>,
}

/// `ctr-` and 16 hex digits of SHA-256 over the resource's uid and the run: one name per run.
pub fn run_command_name(uid: &str, run_id: &str) -> String {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{uid}/{run_id}").as_bytes(),
    );
    let hex: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("ctr-{hex}")
}

fn create_what(name: &str) -> String {
    format!("create run command {name}")
}

/// Output as status may show it: protected values masked, then truncated.
pub fn summarise(text: &str, protected: &[(String, String)]) -> String {
    let mut t = text.to_string();
    for (_, v) in protected.iter().filter(|(_, v)| !v.is_empty()) {
        t = t.replace(v.as_str(), "***");
    }
    t.chars().take(SUMMARY_CHARS).collect()
}

pub fn result_of(name: &str, rc: &Value, protected: &[(String, String)]) -> RunCommandResult {
    let iv = &rc["properties"]["instanceView"];
    let text = |k: &str| summarise(iv[k].as_str().unwrap_or_default(), protected);
    RunCommandResult {
        run_command: name.to_string(),
        execution_state: iv["executionState"]
            .as_str()
            .unwrap_or("Unknown")
            .to_string(),
        exit_code: iv["exitCode"].as_i64(),
        output: text("output"),
        error: text("error"),
        start_time: iv["startTime"].as_str().map(String::from),
        end_time: iv["endTime"].as_str().map(String::from),
    }
}

fn describe(r: &RunCommandResult) -> String {
    match r.exit_code {
        Some(c) => format!("script {} with exit code {c}", r.execution_state),
        None => format!("script {}", r.execution_state),
    }
}

fn failed(r: &RunCommandResult, keep: bool) -> Stall {
    let mut m = describe(r);
    if !r.error.is_empty() {
        m.push_str(&format!(": {}", r.error));
    }
    if !keep {
        m.push_str(" (the run command was deleted; status.result keeps the summary)");
    }
    m.push_str("; change spec.trigger to run again");
    Stall::new("ScriptFailed", m)
}

fn extra(r: &RunCommandResult) -> Map<String, Value> {
    Map::from_iter([(
        "result".to_string(),
        serde_json::to_value(r).unwrap_or_default(),
    )])
}

fn create_step(obj: &ArcRunCommand, t: &ResourceId, o: &Observed) -> Step {
    let params = |v: Vec<(String, String)>| -> Vec<Value> {
        v.into_iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect()
    };
    let plain = obj
        .spec
        .parameters
        .iter()
        .map(|p| (p.name.clone(), p.value.clone()))
        .collect();
    let body = json!({
        "location": o.location,
        "properties": {
            "source": {"script": obj.spec.script},
            "parameters": params(plain),
            "protectedParameters": params(o.protected.clone()),
            "asyncExecution": false,
            "timeoutInSeconds": obj.spec.timeout_seconds,
        }
    });
    // A repeated PUT runs the script again: tracked like a POST action.
    Step {
        idempotent: false,
        ..Step::put(
            format!("{}/runCommands/{}", t.id, o.name),
            RUN_COMMAND_API,
            body,
        )
    }
    .lro()
    .secret(&["protectedParameters"])
    .what(create_what(&o.name))
}

pub fn plan(
    obj: &ArcRunCommand,
    t: &ResourceId,
    o: &Observed,
    status: &CommonStatus,
) -> Result<Assessment, Stall> {
    let keep = obj.spec.keep_run_command;
    if let Some(rc) = &o.run_command {
        let r = result_of(&o.name, rc, &o.protected);
        if !TERMINAL.contains(&r.execution_state.as_str()) {
            return Ok(Assessment {
                message: format!("run command {} is {}", o.name, r.execution_state),
                wait: Some(Wait {
                    reason: "AwaitingScript".into(),
                    message: format!("run command {} is {}", o.name, r.execution_state),
                    recheck: std::time::Duration::from_secs(10),
                }),
                extra: extra(&r),
                ..Default::default()
            });
        }
        if keep {
            if r.execution_state != "Succeeded" {
                return Err(failed(&r, keep).with_extra(extra(&r)));
            }
            return Ok(Assessment {
                message: format!("{}; run command {} kept", describe(&r), o.name),
                extra: extra(&r),
                ..Default::default()
            });
        }
        return Ok(Assessment {
            message: format!("{}; to delete run command {}", describe(&r), o.name),
            steps: vec![
                Step::delete(format!("{}/runCommands/{}", t.id, o.name), RUN_COMMAND_API)
                    .lro()
                    .what(format!("delete run command {}", o.name)),
            ],
            extra: extra(&r),
            ..Default::default()
        });
    }
    if super::rotation::acknowledged(status, &create_what(&o.name)) {
        // Created, finished and deleted: what it reported is in status.
        let r = obj.status.as_ref().and_then(|s| s.result.clone());
        return match r {
            Some(r) if r.execution_state != "Succeeded" => Err(failed(&r, keep)),
            Some(r) => Ok(Assessment {
                message: format!("{}; run command {} deleted", describe(&r), o.name),
                ..Default::default()
            }),
            None => Ok(Assessment {
                message: format!(
                    "run command {} ran, and was deleted before its result was read",
                    o.name
                ),
                ..Default::default()
            }),
        };
    }
    if o.machine_status != "Connected" {
        return Ok(Assessment {
            message: format!("{} is {}", t.id, o.machine_status),
            wait: Some(Wait {
                reason: "MachineNotConnected".into(),
                message: format!(
                    "{} is {} (properties.status): a run command needs a connected agent",
                    t.name, o.machine_status
                ),
                recheck: std::time::Duration::from_secs(60),
            }),
            ..Default::default()
        });
    }
    Ok(Assessment {
        message: format!("to run the script as run command {}", o.name),
        steps: vec![create_step(obj, t, o)],
        ..Default::default()
    })
}

async fn protected(az: &Clients, obj: &ArcRunCommand) -> Result<Vec<(String, String)>, AzureError> {
    let Some(from) = &obj.spec.protected_parameters_from else {
        return Ok(Vec::new());
    };
    let ns = obj.namespace().unwrap_or_default();
    let field = "spec.protectedParametersFrom.secretName";
    let values = super::secret_text(&az.kube, &ns, &from.secret_name, field).await?;
    Ok(values.into_iter().collect())
}

#[derive(Default)]
pub struct ArcRunCommandControl;

#[async_trait::async_trait]
impl Control for ArcRunCommandControl {
    type K = ArcRunCommand;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "Microsoft.HybridCompute/machines";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = None;
    const ACTIONS: &'static [&'static str] = &[
        "Microsoft.HybridCompute/machines/read",
        "Microsoft.HybridCompute/machines/runCommands/read",
        "Microsoft.HybridCompute/machines/runCommands/write",
        "Microsoft.HybridCompute/machines/runCommands/delete",
        // The PUT's operation status and the DELETE's operation result URLs
        // (`…/locations/{l}/operationStatus/…`, `…/operationResults/…`).
        "Microsoft.HybridCompute/locations/operationStatus/read",
        "Microsoft.HybridCompute/locations/operationResults/read",
    ];
    // `keepRunCommand: true` never deletes.
    const ACTION_VARIANTS: &'static [(&'static str, &'static [&'static str])] = &[(
        "KeepRunCommand",
        &[
            "Microsoft.HybridCompute/machines/read",
            "Microsoft.HybridCompute/machines/runCommands/read",
            "Microsoft.HybridCompute/machines/runCommands/write",
            "Microsoft.HybridCompute/locations/operationStatus/read",
        ],
    )];

    async fn observe(
        &self,
        az: &Clients,
        obj: &Self::K,
        t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let machine = az.arm.get(&t.id, MACHINE_API).await?;
        let name = run_command_name(
            &obj.uid().unwrap_or_default(),
            &ledger::run_id_for(obj.spec.trigger.as_deref()),
        );
        let run_command = az
            .arm
            .find(&format!("{}/runCommands/{name}", t.id), RUN_COMMAND_API)
            .await?;
        Ok(Observed {
            tags: super::tags_of(&machine),
            location: machine["location"].as_str().unwrap_or_default().to_string(),
            machine_status: machine["properties"]["status"]
                .as_str()
                .unwrap_or("Unknown")
                .to_string(),
            name,
            run_command,
            protected: protected(az, obj).await?,
        })
    }

    fn tags(&self, o: &Observed) -> Option<Map<String, Value>> {
        Some(o.tags.clone())
    }

    fn assess(
        &self,
        obj: &Self::K,
        t: &ResourceId,
        o: &Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        plan(obj, t, o, status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{ActionLedger, ActionPhase};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn obj(keep: bool) -> ArcRunCommand {
        serde_json::from_value(json!({
            "apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "ArcRunCommand",
            "metadata": {"name": "r", "namespace": "soc", "uid": "u-1"},
            "spec": {"target": {"resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/m"},
                     "script": "pkill -f miner", "parameters": [{"name": "mode", "value": "kill"}],
                     "keepRunCommand": keep}
        }))
        .unwrap()
    }

    fn target() -> ResourceId {
        crate::azure::resource_id::resolve(
            &obj(false).spec.common.target,
            "Microsoft.HybridCompute/machines",
        )
        .unwrap()
    }

    fn observed(rc: Option<Value>) -> Observed {
        Observed {
            location: "eastus".into(),
            machine_status: "Connected".into(),
            name: "ctr-x".into(),
            run_command: rc,
            protected: vec![("TOKEN".into(), "s3cr3t-token".into())],
            ..Default::default()
        }
    }

    fn done(what: &str) -> CommonStatus {
        CommonStatus {
            action: Some(ActionLedger {
                run_id: "created".into(),
                phase: ActionPhase::InProgress,
                started_time: Time(jiff::Timestamp::UNIX_EPOCH),
                completed_time: None,
                evidence: None,
                done: vec![what.to_string()],
                sent: Vec::new(),
            }),
            ..Default::default()
        }
    }

    fn finished(state: &str, code: i64, output: &str) -> Value {
        json!({"properties": {"provisioningState": "Succeeded", "instanceView": {
            "executionState": state, "exitCode": code, "output": output, "error": ""}}})
    }

    #[test]
    fn one_name_per_resource_and_run() {
        let a = run_command_name("u-1", "created");
        assert!(a.starts_with("ctr-") && a.len() == 20, "{a}");
        assert_eq!(a, run_command_name("u-1", "created"));
        assert_ne!(a, run_command_name("u-1", "trigger:x"));
        assert_ne!(a, run_command_name("u-2", "created"));
    }

    #[test]
    fn the_put_carries_the_script_and_hides_protected_values() {
        let a = plan(
            &obj(false),
            &target(),
            &observed(None),
            &CommonStatus::default(),
        )
        .unwrap();
        let s = &a.steps[0];
        assert_eq!(s.method, "PUT");
        assert!(
            s.path.ends_with("/machines/m/runCommands/ctr-x"),
            "{}",
            s.path
        );
        assert!(
            !s.idempotent && s.lro,
            "a repeated PUT runs the script again"
        );
        let b = s.body.as_ref().unwrap();
        assert_eq!(b["location"], "eastus");
        assert_eq!(b["properties"]["source"]["script"], "pkill -f miner");
        assert_eq!(b["properties"]["asyncExecution"], false);
        assert_eq!(b["properties"]["timeoutInSeconds"], 3600);
        assert_eq!(
            b["properties"]["protectedParameters"][0]["value"],
            "s3cr3t-token"
        );
        assert!(!s.render().contains("s3cr3t-token"), "{}", s.render());
    }

    #[test]
    fn an_existing_run_command_is_never_created_again() {
        let running = json!({"properties": {"instanceView": {"executionState": "Running"}}});
        let a = plan(
            &obj(false),
            &target(),
            &observed(Some(running)),
            &CommonStatus::default(),
        )
        .unwrap();
        assert!(a.steps.is_empty());
        assert_eq!(a.wait.unwrap().reason, "AwaitingScript");
        // Finished: deleted (not re-run), the summary masked and truncated.
        let long = format!("token=s3cr3t-token {}", "x".repeat(2000));
        let a = plan(
            &obj(false),
            &target(),
            &observed(Some(finished("Succeeded", 0, &long))),
            &CommonStatus::default(),
        )
        .unwrap();
        assert_eq!(a.steps.len(), 1);
        assert_eq!(a.steps[0].method, "DELETE");
        let out = a.extra["result"]["output"].as_str().unwrap();
        assert!(
            out.starts_with("token=*** ") && out.chars().count() == 1024,
            "{out}"
        );
        // Kept: nothing to do.
        let a = plan(
            &obj(true),
            &target(),
            &observed(Some(finished("Succeeded", 0, ""))),
            &CommonStatus::default(),
        )
        .unwrap();
        assert!(a.steps.is_empty() && a.wait.is_none());
        // Gone after our create: the run is over, whatever happens, no second PUT.
        let a = plan(
            &obj(false),
            &target(),
            &observed(None),
            &done(&create_what("ctr-x")),
        )
        .unwrap();
        assert!(a.steps.is_empty());
    }

    #[test]
    fn a_failed_script_is_stalled_with_its_exit_code() {
        let e = plan(
            &obj(true),
            &target(),
            &observed(Some(finished("Failed", 3, ""))),
            &CommonStatus::default(),
        )
        .unwrap_err();
        assert_eq!(e.reason, "ScriptFailed");
        assert!(e.message.contains("exit code 3"), "{}", e.message);
        assert_eq!(
            e.extra["result"]["exitCode"], 3,
            "the summary goes with the stall"
        );
    }

    #[test]
    fn a_disconnected_machine_is_waited_for() {
        let o = Observed {
            machine_status: "Disconnected".into(),
            ..observed(None)
        };
        let a = plan(&obj(false), &target(), &o, &CommonStatus::default()).unwrap();
        assert!(a.steps.is_empty());
        assert_eq!(a.wait.unwrap().reason, "MachineNotConnected");
    }
}
