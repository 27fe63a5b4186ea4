//! Dataflow's job states, mapped explicitly to the five sigma reports.
//!
//! Callers poll until `terminal` and then branch on `state`; so a state is terminal only
//! when Dataflow says no further change can happen, and only `JOB_STATE_DONE` counts as
//! success. `JOB_STATE_UPDATED` (the job was replaced by another) and `JOB_STATE_DRAINED`
//! (input was cut off) are terminal but do not prove that this job loaded the whole file,
//! so they map to `CANCELLED`: downstream Dataform never runs on a partial load. Anything
//! unknown is reported as `PENDING`, never as a failure: a new Dataflow state must not fail
//! a healthy load.
//!
//! The v1b3 discovery document (`Job.currentState`) is the reference:
//! - `JOB_STATE_STOPPED` "indicates that the job has not yet started to run": `PENDING`,
//!   not terminal (despite its name it is not an end).
//! - `JOB_STATE_PAUSING` and `JOB_STATE_PAUSED` are newer than that document: `gcloud
//!   dataflow jobs pause` moves a (streaming) job through `PAUSING` into `PAUSED`, from which
//!   it can be resumed. The job has started and may still change, so both are `RUNNING`,
//!   not terminal: a paused load is neither done nor failed, and the caller keeps polling.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// `(state, terminal)` for a `JOB_STATE_*` value (absent: the job was just created).
pub fn map(dataflow_state: Option<&str>) -> (State, bool) {
    match dataflow_state.unwrap_or("JOB_STATE_UNKNOWN") {
        "JOB_STATE_DONE" => (State::Succeeded, true),
        "JOB_STATE_FAILED" => (State::Failed, true),
        "JOB_STATE_CANCELLED" | "JOB_STATE_UPDATED" | "JOB_STATE_DRAINED" => {
            (State::Cancelled, true)
        }
        "JOB_STATE_RUNNING"
        | "JOB_STATE_DRAINING"
        | "JOB_STATE_CANCELLING"
        | "JOB_STATE_RESOURCE_CLEANING_UP"
        | "JOB_STATE_PAUSING"
        | "JOB_STATE_PAUSED" => (State::Running, false),
        "JOB_STATE_QUEUED" | "JOB_STATE_PENDING" | "JOB_STATE_STOPPED" => (State::Pending, false),
        _ => (State::Pending, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dataflow_state_has_an_explicit_mapping_including_stopped_pausing_and_paused() {
        let table = [
            ("JOB_STATE_DONE", State::Succeeded, true),
            ("JOB_STATE_FAILED", State::Failed, true),
            ("JOB_STATE_CANCELLED", State::Cancelled, true),
            ("JOB_STATE_UPDATED", State::Cancelled, true),
            ("JOB_STATE_DRAINED", State::Cancelled, true),
            ("JOB_STATE_RUNNING", State::Running, false),
            ("JOB_STATE_DRAINING", State::Running, false),
            ("JOB_STATE_CANCELLING", State::Running, false),
            ("JOB_STATE_RESOURCE_CLEANING_UP", State::Running, false),
            ("JOB_STATE_PAUSING", State::Running, false),
            ("JOB_STATE_PAUSED", State::Running, false),
            ("JOB_STATE_QUEUED", State::Pending, false),
            ("JOB_STATE_PENDING", State::Pending, false),
            ("JOB_STATE_STOPPED", State::Pending, false),
            ("JOB_STATE_UNKNOWN", State::Pending, false),
            ("JOB_STATE_SOMETHING_NEW", State::Pending, false),
        ];
        for (dataflow, state, terminal) in table {
            assert_eq!(map(Some(dataflow)), (state, terminal), "{dataflow}");
        }
        assert_eq!(map(None), (State::Pending, false));
    }
}
