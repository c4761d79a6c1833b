//! ThreatSubmission: a URL, file or email submitted to Microsoft for analysis through the Graph
//! beta threatSubmission API, once per trigger, followed to its final status. The submission id
//! is saved from the POST's answer; if the operator dies before that, the submission is found
//! again by its content and creation time, so it is never submitted twice.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use serde_json::{Map, Value, json};

use crate::api::common::{CommonSpec, CommonStatus, ReleasePolicy};
use crate::api::graph::{SubmissionCategory, SubmissionType, ThreatSubmission};
use crate::azure::{AzureError, Clients, ResourceId, Service};
use crate::engine::{Assessment, Control, Stall, Step, Wait};

const BASE: &str = "/beta/security/threatSubmission";

impl crate::engine::Kind for ThreatSubmission {
    fn common(&self) -> Cow<'_, CommonSpec> {
        Cow::Owned(CommonSpec {
            mode: self.spec.mode,
            reason: self.spec.reason.clone(),
            tenant_id: self.spec.tenant_id.clone(),
            ..Default::default()
        })
    }
    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }
    fn trigger(&self) -> Option<&str> {
        self.spec.trigger.as_deref()
    }
}

fn collection(t: SubmissionType) -> &'static str {
    match t {
        SubmissionType::Url => "urlThreats",
        SubmissionType::File => "fileThreats",
        SubmissionType::Email => "emailThreats",
    }
}

fn category(c: SubmissionCategory) -> &'static str {
    match c {
        SubmissionCategory::Malware => "malware",
        SubmissionCategory::Phishing => "phishing",
        SubmissionCategory::Spam => "spam",
        SubmissionCategory::NotJunk => "notJunk",
    }
}

/// The field that identifies what was submitted, and its value.
fn identity(obj: &ThreatSubmission) -> (&'static str, String) {
    match obj.spec.submission_type {
        SubmissionType::Url => ("webUrl", obj.spec.url.clone().unwrap_or_default()),
        SubmissionType::File => (
            "fileName",
            obj.spec
                .file
                .as_ref()
                .map(|f| f.name.clone())
                .unwrap_or_default(),
        ),
        SubmissionType::Email => (
            "messageUrl",
            obj.spec
                .email
                .as_ref()
                .map(|e| e.message_url.clone())
                .unwrap_or_default(),
        ),
    }
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The submission of the current run, if it exists.
    pub submission: Option<Value>,
    /// File content (base64), read from the Secret only when a submission is still to be made.
    pub file_content: Option<String>,
    /// Before a new run: ids of earlier submissions of the same content, recorded with the intent
    /// so that crash recovery never takes one of them for the new run's.
    pub existing: Vec<String>,
}

const FINAL: [&str; 3] = ["succeeded", "failed", "skipped"];

/// Poll young submissions often and old ones rarely (Graph asks for 30–60 s).
fn recheck(submission: &Value) -> Duration {
    let age = submission["createdDateTime"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            jiff::Timestamp::now()
                .duration_since(t)
                .as_secs_f64()
                .max(0.0)
        })
        .unwrap_or(0.0);
    Duration::from_secs_f64((age / 4.0).clamp(1.0, 60.0))
}

pub fn plan(obj: &ThreatSubmission, o: &Observed) -> Result<Assessment, Stall> {
    let mut extra = Map::new();
    let Some(s) = &o.submission else {
        let mut body = json!({"category": category(obj.spec.category)});
        let (field, value) = identity(obj);
        match obj.spec.submission_type {
            SubmissionType::Url => {
                body["@odata.type"] = json!("#microsoft.graph.security.urlThreatSubmission");
                body[field] = json!(value);
            }
            SubmissionType::File => {
                body["@odata.type"] =
                    json!("#microsoft.graph.security.fileContentThreatSubmission");
                body[field] = json!(value);
                body["fileContent"] = json!(o.file_content.clone().unwrap_or_default());
            }
            SubmissionType::Email => {
                let e = obj.spec.email.as_ref();
                body["@odata.type"] = json!("#microsoft.graph.security.emailUrlThreatSubmission");
                body["recipientEmailAddress"] = json!(e.map(|e| e.recipient_email_address.clone()));
                body[field] = json!(value);
            }
        }
        return Ok(Assessment {
            steps: vec![
                Step::action(
                    format!("{BASE}/{}", collection(obj.spec.submission_type)),
                    "",
                    Some(body),
                )
                .on(Service::Graph)
                .what(format!("submit {value} as {}", category(obj.spec.category))),
            ],
            message: format!("{value} is to be submitted"),
            extra,
            ..Default::default()
        });
    };
    let status = s["status"].as_str().unwrap_or("notStarted").to_string();
    extra.insert("submissionId".into(), s["id"].clone());
    extra.insert("submissionStatus".into(), json!(status));
    if !FINAL.contains(&status.as_str()) {
        return Ok(Assessment {
            extra,
            wait: Some(Wait {
                reason: "AwaitingVerdict".into(),
                message: format!("submission {} is {status}", s["id"].as_str().unwrap_or("?")),
                recheck: recheck(s),
            }),
            ..Default::default()
        });
    }
    let verdict = s["result"]["category"]
        .as_str()
        .unwrap_or("unknown")
        .to_string();
    extra.insert("verdict".into(), json!(verdict));
    extra.insert("resultDetail".into(), s["result"]["detail"].clone());
    Ok(Assessment {
        message: format!(
            "submission {} {status}: verdict {verdict}",
            s["id"].as_str().unwrap_or("?")
        ),
        extra,
        ..Default::default()
    })
}

#[derive(Default)]
pub struct ThreatSubmissionControl;

async fn file_content(az: &Clients, obj: &ThreatSubmission) -> Result<Option<String>, AzureError> {
    let Some(f) = &obj.spec.file else {
        return Ok(None);
    };
    let r = &f.content_from.secret_key_ref;
    let secrets: kube::Api<Secret> =
        kube::Api::namespaced(az.kube.clone(), &obj.namespace().unwrap_or_default());
    let secret = secrets.get_opt(&r.name).await.map_err(|e| {
        AzureError::from_secret_access(
            e,
            format!(
                "GET Secret {}/{}",
                obj.namespace().unwrap_or_default(),
                r.name
            ),
        )
    })?;
    let bytes = secret
        .and_then(|s| s.data)
        .and_then(|mut d| d.remove(&r.key))
        .ok_or_else(|| {
            AzureError::Config(format!(
                "spec.file.contentFrom.secretKeyRef: Secret {} has no key {}",
                r.name, r.key
            ))
        })?;
    Ok(Some(
        base64::engine::general_purpose::STANDARD.encode(bytes.0),
    ))
}

#[async_trait::async_trait]
impl Control for ThreatSubmissionControl {
    type K = ThreatSubmission;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "microsoft.graph.security/threatSubmission";
    const DEFAULT_RELEASE: Option<ReleasePolicy> = None;
    const ACTIONS: &'static [&'static str] = &[];

    fn target(obj: &ThreatSubmission) -> Result<ResourceId, String> {
        let (field, value) = identity(obj);
        Ok(ResourceId {
            id: format!(
                "{}:{value}",
                match field {
                    "webUrl" => "url",
                    "fileName" => "file",
                    _ => "email",
                }
            ),
            subscription: String::new(),
            resource_group: None,
            name: value,
        })
    }

    async fn observe(
        &self,
        az: &Clients,
        obj: &ThreatSubmission,
        _t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        let coll = collection(obj.spec.submission_type);
        let status = obj.status.as_ref();
        let ledger = status.and_then(|s| s.common.action.as_ref());
        let run_is_current = ledger.is_some_and(|l| {
            l.run_id == crate::engine::ledger::run_id_for(obj.spec.trigger.as_deref())
        });
        let mut submission = None;
        let mut existing = Vec::new();
        let (field, value) = identity(obj);
        if !run_is_current && obj.spec.mode == crate::api::common::Mode::Enforce {
            existing = az
                .graph
                .list(&format!("{BASE}/{coll}"), "")
                .await?
                .into_iter()
                .filter(|s| s[field] == value.as_str())
                .filter_map(|s| s["id"].as_str().map(str::to_string))
                .collect();
        }
        if run_is_current {
            if let Some(id) = status.and_then(|s| s.submission_id.as_deref()) {
                submission = Some(az.graph.get(&format!("{BASE}/{coll}/{id}"), "").await?);
            } else if let Some(l) = ledger {
                // The POST may have been answered after a crash: find it by content and time,
                // never one that existed before this run.
                let before = &l.evidence.as_ref().unwrap_or(&Value::Null)["existing"];
                let earlier = |id: &Value| {
                    before
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|e| e == id))
                };
                let started = l.started_time.0;
                let all = az.graph.list(&format!("{BASE}/{coll}"), "").await?;
                submission = all.into_iter().find(|s| {
                    s[field] == value.as_str()
                        && !earlier(&s["id"])
                        && s["createdDateTime"]
                            .as_str()
                            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                            .is_some_and(|t| t >= started - jiff::SignedDuration::from_secs(5))
                });
            }
        }
        let file_content =
            if submission.is_none() && obj.spec.mode == crate::api::common::Mode::Enforce {
                file_content(az, obj).await?
            } else {
                None
            };
        Ok(Observed {
            submission,
            file_content,
            existing,
        })
    }

    fn assess(
        &self,
        obj: &ThreatSubmission,
        _t: &ResourceId,
        o: &Observed,
        _status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        plan(obj, o)
    }

    fn evidence(&self, o: &Observed) -> Value {
        json!({ "existing": o.existing })
    }

    fn on_reply(&self, _step: &Step, r: &crate::azure::Reply) -> Map<String, Value> {
        let reply = &r.body;
        let mut m = Map::new();
        if let Some(id) = reply["id"].as_str() {
            m.insert("submissionId".into(), json!(id));
            m.insert("submissionStatus".into(), reply["status"].clone());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(spec: Value) -> ThreatSubmission {
        serde_json::from_value(json!({"apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "ThreatSubmission", "metadata": {"name": "t", "namespace": "n"}, "spec": spec})).unwrap()
    }

    #[test]
    fn url_submission_body_then_wait_then_verdict() {
        let o = obj(
            json!({"submissionType": "Url", "category": "phishing", "url": "https://evil.example/login"}),
        );
        let a = plan(&o, &Observed::default()).unwrap();
        assert_eq!(
            a.steps[0].path,
            "/beta/security/threatSubmission/urlThreats"
        );
        assert_eq!(
            a.steps[0].body.as_ref().unwrap(),
            &json!({"@odata.type": "#microsoft.graph.security.urlThreatSubmission", "category": "phishing", "webUrl": "https://evil.example/login"})
        );
        let running = Observed {
            submission: Some(json!({"id": "s1", "status": "running"})),
            file_content: None,
            existing: Vec::new(),
        };
        let w = plan(&o, &running).unwrap();
        assert!(w.steps.is_empty());
        assert_eq!(w.wait.unwrap().reason, "AwaitingVerdict");
        let done = Observed {
            submission: Some(
                json!({"id": "s1", "status": "succeeded", "result": {"category": "phishing", "detail": "x"}}),
            ),
            file_content: None,
            existing: Vec::new(),
        };
        let d = plan(&o, &done).unwrap();
        assert!(d.steps.is_empty() && d.wait.is_none());
        assert_eq!(d.extra["verdict"], "phishing");
    }

    #[test]
    fn file_content_is_never_shown_in_the_plan() {
        let o = obj(
            json!({"submissionType": "File", "category": "malware", "file": {"name": "invoice.exe", "contentFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}}),
        );
        let a = plan(
            &o,
            &Observed {
                submission: None,
                file_content: Some("U0VDUkVU".into()),
                existing: Vec::new(),
            },
        )
        .unwrap();
        assert_eq!(a.steps[0].body.as_ref().unwrap()["fileContent"], "U0VDUkVU");
        assert!(
            !a.steps[0].render().contains("U0VDUkVU"),
            "{}",
            a.steps[0].render()
        );
    }
}
