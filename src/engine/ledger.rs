//! The one-shot ledger: which run of an action is due. Pure, so the exactly-once rules are unit
//! tested: a run starts once per `trigger` value (or at creation), and again each `schedule`.

use std::time::Duration;

use jiff::Timestamp;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::common::{ActionLedger, ActionPhase, SentStep};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunDecision {
    /// Record intent for this new run, then act.
    Start(String),
    /// A run is recorded as in progress: finish it (evidence decides what is left).
    Continue,
    /// Nothing to do; the next scheduled run is due at this time, if any.
    Done(Option<Timestamp>),
}

/// The run id of a trigger (without a schedule suffix).
pub fn run_id_for(trigger: Option<&str>) -> String {
    base_run(trigger)
}

fn base_run(trigger: Option<&str>) -> String {
    match trigger {
        Some(t) => format!("trigger:{t}"),
        None => "created".into(),
    }
}

pub fn decide(
    trigger: Option<&str>,
    schedule: Option<Duration>,
    ledger: Option<&ActionLedger>,
    now: Timestamp,
) -> RunDecision {
    let base = base_run(trigger);
    let Some(l) = ledger else {
        return RunDecision::Start(base);
    };
    let same = l.run_id == base || l.run_id.starts_with(&format!("{base}@"));
    if !same {
        return RunDecision::Start(base);
    }
    if l.phase == ActionPhase::InProgress {
        return RunDecision::Continue;
    }
    let Some(every) = schedule else {
        return RunDecision::Done(None);
    };
    let last = l
        .completed_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(l.started_time.0);
    let next = last
        .checked_add(jiff::SignedDuration::try_from(every).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    if now >= next {
        RunDecision::Start(format!("{base}@{next}"))
    } else {
        RunDecision::Done(Some(next))
    }
}

/// Intent, recorded before a non-idempotent call leaves.
pub fn sent(l: Option<&mut ActionLedger>, what: &str, time: Time) {
    let Some(l) = l else { return };
    l.sent.retain(|s| s.what != what);
    l.sent.push(SentStep {
        what: what.to_string(),
        time,
        operation: None,
    });
}

/// Azure refused the call: it had no effect.
pub fn unsent(l: Option<&mut ActionLedger>, what: &str) {
    if let Some(l) = l {
        l.sent.retain(|s| s.what != what);
    }
}

/// Azure accepted the call and answered with an operation to poll.
pub fn operation(l: Option<&mut ActionLedger>, what: &str, url: &str) {
    if let Some(s) = l.and_then(|l| l.sent.iter_mut().find(|s| s.what == what)) {
        s.operation = Some(url.to_string());
    }
}

/// The call succeeded (a 2xx without an operation).
pub fn done(l: Option<&mut ActionLedger>, what: &str) {
    let Some(l) = l else { return };
    l.sent.retain(|s| s.what != what);
    if !l.done.iter().any(|d| d == what) {
        l.done.push(what.to_string());
    }
}

/// The operation ended Succeeded: every call waiting for it is done.
pub fn operation_succeeded(l: Option<&mut ActionLedger>, url: &str) {
    let Some(l) = l else { return };
    let finished: Vec<String> = l
        .sent
        .iter()
        .filter(|s| s.operation.as_deref() == Some(url))
        .map(|s| s.what.clone())
        .collect();
    for what in finished {
        done(Some(l), &what);
    }
}

/// The operation ended Failed or Canceled: its calls had no effect, and may be sent again.
pub fn operation_failed(l: Option<&mut ActionLedger>, url: &str) {
    if let Some(l) = l {
        l.sent.retain(|s| s.operation.as_deref() != Some(url));
    }
}

/// Azure forgot the operation: its calls stay unresolved, for the evidence to decide.
pub fn operation_unknown(l: Option<&mut ActionLedger>, url: &str) {
    if let Some(l) = l {
        for s in l
            .sent
            .iter_mut()
            .filter(|s| s.operation.as_deref() == Some(url))
        {
            s.operation = None;
        }
    }
}

/// What to do about planned calls that were sent before but never answered (a crash or a lost
/// answer): Azure may have acted on them, so they are not sent again while the wait lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unconfirmed {
    /// None of the planned calls is unresolved: send them.
    None,
    /// Wait for Azure's evidence: this call was sent at this time.
    Wait { what: String, since: Timestamp },
    /// The wait ran out without evidence: these calls had no effect; send them again.
    Expired(Vec<String>),
}

pub fn unconfirmed(
    l: Option<&ActionLedger>,
    planned: &[&str],
    wait: Duration,
    now: Timestamp,
) -> Unconfirmed {
    let Some(l) = l else {
        return Unconfirmed::None;
    };
    let mut expired = Vec::new();
    for s in l.sent.iter().filter(|s| planned.contains(&s.what.as_str())) {
        let until = s
            .time
            .0
            .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        if now < until {
            return Unconfirmed::Wait {
                what: s.what.clone(),
                since: s.time.0,
            };
        }
        expired.push(s.what.clone());
    }
    if expired.is_empty() {
        Unconfirmed::None
    } else {
        Unconfirmed::Expired(expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn ledger(run: &str, phase: ActionPhase, done: Option<i64>) -> ActionLedger {
        ActionLedger {
            run_id: run.into(),
            phase,
            started_time: Time(ts(100)),
            completed_time: done.map(|d| Time(ts(d))),
            evidence: None,
            done: Vec::new(),
            sent: Vec::new(),
        }
    }

    #[test]
    fn first_run_at_creation_or_trigger() {
        assert_eq!(
            decide(None, None, None, ts(0)),
            RunDecision::Start("created".into())
        );
        assert_eq!(
            decide(Some("INC-1"), None, None, ts(0)),
            RunDecision::Start("trigger:INC-1".into())
        );
    }

    #[test]
    fn never_twice_for_the_same_trigger() {
        let l = ledger("trigger:a", ActionPhase::Completed, Some(200));
        assert_eq!(
            decide(Some("a"), None, Some(&l), ts(10_000)),
            RunDecision::Done(None)
        );
        let running = ledger("trigger:a", ActionPhase::InProgress, None);
        assert_eq!(
            decide(Some("a"), None, Some(&running), ts(10_000)),
            RunDecision::Continue
        );
        assert_eq!(
            decide(Some("b"), None, Some(&l), ts(10_000)),
            RunDecision::Start("trigger:b".into())
        );
    }

    #[test]
    fn schedule_runs_again_after_the_period() {
        let l = ledger("created", ActionPhase::Completed, Some(200));
        let hour = Duration::from_secs(3600);
        assert_eq!(
            decide(None, Some(hour), Some(&l), ts(300)),
            RunDecision::Done(Some(ts(3800)))
        );
        let RunDecision::Start(id) = decide(None, Some(hour), Some(&l), ts(3800)) else {
            panic!("due");
        };
        assert!(id.starts_with("created@"), "{id}");
        // The scheduled run, once completed, belongs to the same base and is not repeated.
        let l2 = ledger(&id, ActionPhase::Completed, Some(3801));
        assert_eq!(
            decide(None, Some(hour), Some(&l2), ts(3900)),
            RunDecision::Done(Some(ts(7401)))
        );
    }

    #[test]
    fn a_call_is_done_only_when_its_operation_succeeded() {
        let mut l = ledger("created", ActionPhase::InProgress, None);
        sent(Some(&mut l), "regenerate primary", Time(ts(100)));
        operation(Some(&mut l), "regenerate primary", "https://op/1");
        sent(Some(&mut l), "regenerate secondary", Time(ts(100)));
        operation(Some(&mut l), "regenerate secondary", "https://op/2");
        // The 202 alone proves nothing.
        assert!(l.done.is_empty());
        operation_failed(Some(&mut l), "https://op/1");
        operation_succeeded(Some(&mut l), "https://op/2");
        assert_eq!(l.done, vec!["regenerate secondary".to_string()]);
        // The failed one had no effect: neither done nor waiting for evidence.
        assert!(l.sent.is_empty());
    }

    #[test]
    fn an_unanswered_call_waits_for_evidence_then_expires() {
        let mut l = ledger("created", ActionPhase::InProgress, None);
        sent(Some(&mut l), "regenerate primary", Time(ts(100)));
        let wait = Duration::from_secs(600);
        assert_eq!(
            unconfirmed(Some(&l), &["regenerate primary"], wait, ts(200)),
            Unconfirmed::Wait {
                what: "regenerate primary".into(),
                since: ts(100)
            }
        );
        // Another call of the run is not held back by it.
        assert_eq!(
            unconfirmed(Some(&l), &["regenerate secondary"], wait, ts(200)),
            Unconfirmed::None
        );
        assert_eq!(
            unconfirmed(Some(&l), &["regenerate primary"], wait, ts(701)),
            Unconfirmed::Expired(vec!["regenerate primary".into()])
        );
        // A refused call is forgotten; an unknown operation leaves the call unresolved.
        operation(Some(&mut l), "regenerate primary", "https://op/1");
        operation_unknown(Some(&mut l), "https://op/1");
        assert_eq!(l.sent[0].operation, None);
        unsent(Some(&mut l), "regenerate primary");
        assert_eq!(
            unconfirmed(Some(&l), &["regenerate primary"], wait, ts(200)),
            Unconfirmed::None
        );
    }
}
