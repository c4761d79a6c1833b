//! The "one-shot with evidence" pattern shared by key rotations and revocations: what is still
//! to do in the current run, judged from Azure's evidence (creation times newer than those
//! recorded with the intent) and from calls Azure acknowledged.

use std::collections::BTreeMap;

use crate::api::common::CommonStatus;

/// Creation/generation time per key, as Azure reports it.
pub type Times = BTreeMap<String, String>;

fn newer(now: Option<&String>, before: Option<&str>) -> bool {
    match (now, before) {
        (Some(n), Some(b)) => match (n.parse::<jiff::Timestamp>(), b.parse::<jiff::Timestamp>()) {
            (Ok(n), Ok(b)) => n > b,
            _ => n.as_str() != b,
        },
        (Some(_), None) => true,
        _ => false,
    }
}

/// The evidence recorded with the intent: Azure's times before the first call.
pub fn evidence(observed: &Times) -> serde_json::Value {
    serde_json::json!({ "before": observed })
}

/// Was the step `what` acknowledged by Azure in the current run?
pub fn acknowledged(status: &CommonStatus, what: &str) -> bool {
    status
        .action
        .as_ref()
        .is_some_and(|l| l.done.iter().any(|d| d == what))
}

/// The keys of this run still to rotate. Without a ledger (DryRun) everything is pending.
pub fn pending<'a>(
    keys: &[&'a str],
    observed: &Times,
    status: &CommonStatus,
    what: impl Fn(&str) -> String,
) -> Vec<&'a str> {
    let before = status
        .action
        .as_ref()
        .and_then(|l| l.evidence.as_ref())
        .map(|e| &e["before"]);
    keys.iter()
        .copied()
        .filter(|k| {
            let Some(before) = before else { return true };
            !acknowledged(status, &what(k)) && !newer(observed.get(*k), before[*k].as_str())
        })
        .collect()
}

/// Keys of this run that Azure acknowledged rotating but whose new creation time it does not
/// show yet: the run is not Completed before the evidence, so the engine waits and re-reads.
pub fn awaiting_evidence(
    keys: &[&str],
    observed: &Times,
    status: &CommonStatus,
    what: impl Fn(&str) -> String,
) -> Option<crate::engine::Wait> {
    let before = status
        .action
        .as_ref()
        .and_then(|l| l.evidence.as_ref())
        .map(|e| &e["before"])?;
    let unproven: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| acknowledged(status, &what(k)) && !newer(observed.get(*k), before[*k].as_str()))
        .collect();
    (!unproven.is_empty()).then(|| crate::engine::Wait {
        reason: "AwaitingEvidence".into(),
        message: format!(
            "Azure acknowledged rotating {}; waiting for it to show the new creation time",
            unproven.join(", ")
        ),
        recheck: std::time::Duration::from_secs(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{ActionLedger, ActionPhase};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn obs(k1: &str, k2: &str) -> Times {
        BTreeMap::from([("key1".into(), k1.into()), ("key2".into(), k2.into())])
    }

    fn status_with(before: &Times, done: &[&str]) -> CommonStatus {
        CommonStatus {
            action: Some(ActionLedger {
                run_id: "created".into(),
                phase: ActionPhase::InProgress,
                started_time: Time(jiff::Timestamp::UNIX_EPOCH),
                completed_time: None,
                evidence: Some(json!({"before": before})),
                done: done.iter().map(|s| s.to_string()).collect(),
                sent: Vec::new(),
            }),
            ..Default::default()
        }
    }

    const KEYS: [&str; 2] = ["key1", "key2"];
    const T0: &str = "2024-01-01T00:00:00.0000000Z";
    const T1: &str = "2026-11-23T10:00:00.1234567Z";

    fn what(k: &str) -> String {
        format!("regenerate {k}")
    }

    #[test]
    fn evidence_decides_what_is_left() {
        let before = obs(T0, T0);
        assert_eq!(
            pending(&KEYS, &before, &status_with(&before, &[]), what),
            vec!["key1", "key2"]
        );
        // key1 rotated (newer creation time) before a crash: only key2 remains.
        assert_eq!(
            pending(&KEYS, &obs(T1, T0), &status_with(&before, &[]), what),
            vec!["key2"]
        );
        assert!(pending(&KEYS, &obs(T1, T1), &status_with(&before, &[]), what).is_empty());
        // Acknowledged by Azure but not yet visible in a (lagging) read: not repeated.
        assert_eq!(
            pending(
                &KEYS,
                &before,
                &status_with(&before, &["regenerate key1"]),
                what
            ),
            vec!["key2"]
        );
    }

    #[test]
    fn without_a_ledger_everything_is_pending() {
        assert_eq!(
            pending(&KEYS, &obs(T1, T1), &CommonStatus::default(), what),
            vec!["key1", "key2"]
        );
    }

    #[test]
    fn completed_only_on_evidence() {
        let before = obs(T0, T0);
        let acked = status_with(&before, &["regenerate key1"]);
        let w = awaiting_evidence(&KEYS, &before, &acked, what).expect("waits");
        assert_eq!(w.reason, "AwaitingEvidence");
        assert!(w.message.contains("key1"), "{}", w.message);
        assert_eq!(awaiting_evidence(&KEYS, &obs(T1, T0), &acked, what), None);
    }
}
