//! The one-shot ledger: which run of an action is due. Pure, so the exactly-once rules are unit
//! tested: a run starts once per `trigger` value (or at creation), and again each `schedule`.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::common::{ActionLedger, ActionPhase};

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
}
