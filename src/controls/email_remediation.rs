//! EmailRemediation: Graph's `analyzedEmails/remediate` once per trigger (azure-api-facts
//! §3.18). Graph answers 202 with no body and a `Location` that is an Action center page, not
//! an operation, and documents no read-back by message id: the acknowledged call (in the
//! ledger) is the evidence, with the `bulkId` parsed from that link. Release, when asked
//! (`releasePolicy: Restore`), is the documented undo: `moveToInbox` for the same messages.
//! Quarantine is out of reach: Graph has no API for it.

use serde_json::{Map, Value, json};

use crate::api::common::{CommonStatus, ReleasePolicy};
use crate::api::graph::{EmailAction, EmailRemediation, RemediationSeverity};
use crate::azure::{AzureError, Clients, ResourceId, Service};
use crate::engine::{Assessment, Control, Stall, Step, Subject};
use kube::ResourceExt;

crate::impl_kind!(EmailRemediation, tenant, trigger);

const REMEDIATE: &str = "/v1.0/security/collaboration/analyzedEmails/remediate";

/// The mailboxes whose mail this resource touches (the guard's protected identities).
pub type Observed = Vec<String>;

pub fn action_name(a: EmailAction) -> &'static str {
    match a {
        EmailAction::MoveToJunk => "moveToJunk",
        EmailAction::MoveToDeletedItems => "moveToDeletedItems",
        EmailAction::SoftDelete => "softDelete",
        EmailAction::HardDelete => "hardDelete",
    }
}

fn severity(s: RemediationSeverity) -> &'static str {
    match s {
        RemediationSeverity::Low => "low",
        RemediationSeverity::Medium => "medium",
        RemediationSeverity::High => "high",
    }
}

fn what(obj: &EmailRemediation) -> String {
    format!(
        "remediate {} message(s): {}",
        obj.spec.emails.len(),
        action_name(obj.spec.action)
    )
}

fn emails(obj: &EmailRemediation) -> Value {
    json!(
        obj.spec
            .emails
            .iter()
            .map(|e| json!({"networkMessageId": e.network_message_id, "recipientEmailAddress": e.recipient_email_address}))
            .collect::<Vec<_>>()
    )
}

fn display_name(obj: &EmailRemediation) -> String {
    obj.spec.display_name.clone().unwrap_or_else(|| {
        let who = format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any());
        match &obj.spec.common.reason {
            Some(r) => format!("containment-operator {who}: {r}"),
            None => format!("containment-operator {who}"),
        }
    })
}

fn remediate(obj: &EmailRemediation, action: &str, emails: Value, what: String) -> Step {
    let mut body = json!({
        "displayName": display_name(obj),
        "severity": severity(obj.spec.severity),
        "action": action,
        // A JSON boolean: the docs' example sends the string "false" [facts §3.18].
        "remediateSendersCopy": obj.spec.remediate_senders_copy,
        "analyzedEmails": emails,
    });
    if let Some(r) = &obj.spec.common.reason {
        body["description"] = json!(r);
    }
    Step::action(REMEDIATE.into(), "", Some(body))
        .on(Service::Graph)
        .what(what)
}

/// The Action center id in Graph's `Location`
/// (`…/action-center/history?filters={"bulkId":["<id>"]}&tid=…`, usually percent-encoded).
pub fn bulk_id(location: &str) -> Option<String> {
    let decoded = percent_decode(location);
    let after = &decoded[decoded.find("\"bulkId\"")? + "\"bulkId\"".len()..];
    let start = after.find('"')? + 1;
    let len = after[start..].find('"')?;
    Some(after[start..start + len].to_string()).filter(|s| !s.is_empty())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(v) => {
                out.push(v);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn plan(obj: &EmailRemediation, status: &CommonStatus) -> Assessment {
    let n = obj.spec.emails.len();
    let action = action_name(obj.spec.action);
    let bulk = obj
        .status
        .as_ref()
        .and_then(|s| s.bulk_id.clone())
        .unwrap_or_else(|| "unknown".into());
    if super::rotation::acknowledged(status, &what(obj)) {
        return Assessment {
            message: format!("{action} accepted for {n} message(s) (Action center bulkId {bulk})"),
            ..Default::default()
        };
    }
    Assessment {
        message: format!("to {action} {n} message(s)"),
        steps: vec![remediate(obj, action, emails(obj), what(obj))],
        record: Some(json!({"action": action, "analyzedEmails": emails(obj)})),
        ..Default::default()
    }
}

/// Every mailbox the listed messages are in.
pub fn recipients(obj: &EmailRemediation) -> Observed {
    obj.spec
        .emails
        .iter()
        .map(|e| e.recipient_email_address.clone())
        .collect()
}

#[derive(Default)]
pub struct EmailRemediationControl;

#[async_trait::async_trait]
impl Control for EmailRemediationControl {
    type K = EmailRemediation;
    type Observed = Observed;
    const RESOURCE_TYPE: &'static str = "microsoft.graph.security/analyzedEmails";
    // Putting phish back in the Inbox is never a default.
    const DEFAULT_RELEASE: Option<ReleasePolicy> = Some(ReleasePolicy::Retain);
    const ONE_SHOT_STEPS: bool = true;
    const ACTIONS: &'static [&'static str] = &[];

    fn target(obj: &EmailRemediation) -> Result<ResourceId, String> {
        let first = obj
            .spec
            .emails
            .first()
            .ok_or("spec.emails: at least one message is required")?;
        let more = obj.spec.emails.len() - 1;
        Ok(ResourceId {
            id: format!("analyzedEmails:{}", first.network_message_id),
            subscription: String::new(),
            resource_group: None,
            name: if more == 0 {
                first.recipient_email_address.clone()
            } else {
                format!("{} +{more}", first.recipient_email_address)
            },
        })
    }

    /// Nothing to read: Graph documents no read-back by message id.
    async fn observe(
        &self,
        _az: &Clients,
        obj: &Self::K,
        _t: &ResourceId,
    ) -> Result<Observed, AzureError> {
        Ok(recipients(obj))
    }

    fn subject(&self, o: &Observed) -> Option<Subject> {
        Some(Subject::Identity(o.clone()))
    }

    fn assess(
        &self,
        obj: &Self::K,
        _t: &ResourceId,
        _o: &Observed,
        status: &CommonStatus,
    ) -> Result<Assessment, Stall> {
        Ok(plan(obj, status))
    }

    fn on_reply(&self, step: &Step, r: &crate::azure::Reply) -> Map<String, Value> {
        let mut m = Map::new();
        let location = r.operation.as_ref().map(|o| o.url.as_str());
        if step.path == REMEDIATE
            && !step.what.starts_with("move")
            && let Some(l) = location
        {
            m.insert("actionCenterUrl".into(), json!(l));
            if let Some(b) = bulk_id(l) {
                m.insert("bulkId".into(), json!(b));
            }
        }
        m
    }

    /// The documented undo: the same messages back to the Inbox (never after hardDelete).
    fn release(&self, obj: &Self::K, _t: &ResourceId, _o: &Observed, restore: &Value) -> Vec<Step> {
        let emails = restore["analyzedEmails"].clone();
        let n = emails.as_array().map(Vec::len).unwrap_or(0);
        if restore["action"] == "hardDelete" || n == 0 {
            return Vec::new();
        }
        vec![remediate(
            obj,
            "moveToInbox",
            emails,
            format!("move {n} message(s) back to the Inbox"),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{ActionLedger, ActionPhase};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn obj(spec: Value) -> EmailRemediation {
        serde_json::from_value(
            json!({"apiVersion": "containment.defenderc2.io/v1alpha1", "kind": "EmailRemediation",
            "metadata": {"name": "phish", "namespace": "soc"}, "spec": spec}),
        )
        .unwrap()
    }

    fn two() -> EmailRemediation {
        obj(
            json!({"action": "SoftDelete", "reason": "INC-9", "emails": [
            {"networkMessageId": "6f1c0d9e-0000-4000-8000-000000000001", "recipientEmailAddress": "alice@contoso.example"},
            {"networkMessageId": "6f1c0d9e-0000-4000-8000-000000000001", "recipientEmailAddress": "bob@contoso.example"}]}),
        )
    }

    #[test]
    fn the_body_is_graphs_with_a_boolean_senders_copy() {
        let a = plan(&two(), &CommonStatus::default());
        let s = &a.steps[0];
        assert_eq!(s.path, REMEDIATE);
        assert!(!s.idempotent, "each call is one more Action center entry");
        let b = s.body.as_ref().unwrap();
        assert_eq!(b["action"], "softDelete");
        assert_eq!(b["severity"], "medium");
        assert_eq!(b["remediateSendersCopy"], json!(false));
        assert_eq!(b["analyzedEmails"].as_array().unwrap().len(), 2);
        assert_eq!(b["displayName"], "containment-operator soc/phish: INC-9");
        assert_eq!(a.record.unwrap()["action"], "softDelete");
        let t = EmailRemediationControl::target(&two()).unwrap();
        assert_eq!(t.name, "alice@contoso.example +1");
    }

    #[test]
    fn done_once_acknowledged() {
        let status = CommonStatus {
            action: Some(ActionLedger {
                run_id: "created".into(),
                phase: ActionPhase::Completed,
                started_time: Time(jiff::Timestamp::UNIX_EPOCH),
                completed_time: None,
                evidence: None,
                done: vec![what(&two())],
                sent: Vec::new(),
            }),
            ..Default::default()
        };
        assert!(plan(&two(), &status).steps.is_empty());
    }

    #[test]
    fn every_recipient_is_checked_against_the_protected_identities() {
        assert_eq!(
            EmailRemediationControl.subject(&recipients(&two())),
            Some(Subject::Identity(vec![
                "alice@contoso.example".into(),
                "bob@contoso.example".into()
            ]))
        );
    }

    #[test]
    fn bulk_id_from_the_action_center_link() {
        let raw = r#"https://security.microsoft.com/action-center/history?filters={"bulkId":["a1b2-c3"]}&tid=t"#;
        assert_eq!(bulk_id(raw).as_deref(), Some("a1b2-c3"));
        let enc = "https://security.microsoft.com/action-center/history?filters=%7B%22bulkId%22%3A%5B%22a1b2-c3%22%5D%7D&tid=t";
        assert_eq!(bulk_id(enc).as_deref(), Some("a1b2-c3"));
        assert_eq!(bulk_id("https://security.microsoft.com/"), None);
    }

    #[test]
    fn release_moves_back_to_the_inbox_except_after_hard_delete() {
        let c = EmailRemediationControl;
        let t = EmailRemediationControl::target(&two()).unwrap();
        let record = plan(&two(), &CommonStatus::default()).record.unwrap();
        let back = c.release(&two(), &t, &Vec::new(), &record);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].body.as_ref().unwrap()["action"], "moveToInbox");
        assert_eq!(
            back[0].body.as_ref().unwrap()["analyzedEmails"],
            record["analyzedEmails"]
        );
        let hard = json!({"action": "hardDelete", "analyzedEmails": record["analyzedEmails"]});
        assert!(c.release(&two(), &t, &Vec::new(), &hard).is_empty());
    }
}
