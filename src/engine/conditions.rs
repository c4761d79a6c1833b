//! kstatus conditions: Ready, Reconciling and Stalled, each with observedGeneration; the
//! transition time only moves when a condition's status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// The state a reconcile ends in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Done: Ready=True.
    Ready { reason: String, message: String },
    /// Not done, and no progress is being made right now, but nothing is wrong either (Observe
    /// mode finding the target out of compliance): Ready=False only.
    NotReady { reason: String, message: String },
    /// Work in progress (waiting on an operation, throttled, retrying): Reconciling=True.
    /// `keep_ready` leaves a Ready=True in place (a drift check that is merely retrying).
    Progressing {
        reason: String,
        message: String,
        keep_ready: bool,
    },
    /// Needs a human: Stalled=True, Ready=False.
    Stalled { reason: String, message: String },
}

fn set(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    let message: String = message.chars().take(32_000).collect();
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conds.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// Apply a reconcile outcome to the condition list.
pub fn apply(conds: &mut Vec<Condition>, state: &State, generation: Option<i64>, now: &Time) {
    let g = generation;
    match state {
        State::Ready { reason, message } => {
            set(conds, READY, true, reason, message, g, now);
            set(conds, RECONCILING, false, reason, "", g, now);
            set(conds, STALLED, false, reason, "", g, now);
        }
        State::NotReady { reason, message } => {
            set(conds, READY, false, reason, message, g, now);
            set(conds, RECONCILING, false, reason, "", g, now);
            set(conds, STALLED, false, reason, "", g, now);
        }
        State::Progressing {
            reason,
            message,
            keep_ready,
        } => {
            let ready_now = conds
                .iter()
                .any(|c| c.type_ == READY && c.status == "True" && c.observed_generation == g);
            if !(*keep_ready && ready_now) {
                set(conds, READY, false, reason, message, g, now);
            }
            set(conds, RECONCILING, true, reason, message, g, now);
            set(conds, STALLED, false, reason, "", g, now);
        }
        State::Stalled { reason, message } => {
            set(conds, READY, false, reason, message, g, now);
            set(conds, RECONCILING, false, reason, "", g, now);
            set(conds, STALLED, true, reason, message, g, now);
        }
    }
}

/// Was the control in force for this generation (Ready=True from an Enforce apply or verify)?
pub fn was_contained(conds: &[Condition], generation: Option<i64>) -> bool {
    conds.iter().any(|c| {
        c.type_ == READY
            && c.status == "True"
            && c.observed_generation == generation
            && matches!(c.reason.as_str(), "Contained" | "DriftCorrected")
    })
}

pub fn get<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn ready_sets_all_three_and_transition_time_only_moves_on_change() {
        let mut c = Vec::new();
        let ready = State::Ready {
            reason: "Contained".into(),
            message: "ok".into(),
        };
        apply(&mut c, &ready, Some(2), &t(10));
        assert_eq!(c.len(), 3);
        assert_eq!(get(&c, READY).unwrap().status, "True");
        assert_eq!(get(&c, STALLED).unwrap().status, "False");
        assert_eq!(get(&c, READY).unwrap().observed_generation, Some(2));
        apply(&mut c, &ready, Some(2), &t(20));
        assert_eq!(get(&c, READY).unwrap().last_transition_time, t(10));
        assert!(was_contained(&c, Some(2)));
        assert!(!was_contained(&c, Some(3)));
    }

    #[test]
    fn stalled_and_progressing() {
        let mut c = Vec::new();
        apply(
            &mut c,
            &State::Stalled {
                reason: "AuthorizationFailed".into(),
                message: "no".into(),
            },
            Some(1),
            &t(1),
        );
        assert_eq!(get(&c, STALLED).unwrap().status, "True");
        assert_eq!(get(&c, READY).unwrap().reason, "AuthorizationFailed");
        apply(
            &mut c,
            &State::Progressing {
                reason: "Throttled".into(),
                message: "wait".into(),
                keep_ready: true,
            },
            Some(1),
            &t(2),
        );
        assert_eq!(get(&c, RECONCILING).unwrap().status, "True");
        assert_eq!(get(&c, STALLED).unwrap().status, "False");
        assert_eq!(get(&c, READY).unwrap().status, "False");
    }

    #[test]
    fn keep_ready_leaves_a_current_ready_in_place() {
        let mut c = Vec::new();
        apply(
            &mut c,
            &State::Ready {
                reason: "Contained".into(),
                message: "ok".into(),
            },
            Some(1),
            &t(1),
        );
        apply(
            &mut c,
            &State::Progressing {
                reason: "Throttled".into(),
                message: "wait".into(),
                keep_ready: true,
            },
            Some(1),
            &t(2),
        );
        assert_eq!(get(&c, READY).unwrap().status, "True");
        assert_eq!(get(&c, RECONCILING).unwrap().status, "True");
    }
}
