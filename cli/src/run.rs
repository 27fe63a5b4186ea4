//! One execution of the workflow, read as what it did to one upload.
//!
//! The Executions API hands back JSON strings (the argument, the result) and an error whose
//! payload is the workflow's raised error as a JSON string. They are parsed here, once, into
//! the domain's words: which upload, which attempt, which step failed with which code, which
//! job and invocation a success ran. Nothing past this module looks at raw JSON.
//!
//! What the workflow raises (workflows/sigma.yaml) decides what can be known of a failure. Its
//! own errors carry `reason` and, for a job or invocation, the id that names the phase
//! (`job_id`, `invocation`) or the `step` itself (`backpressure_timeout`). A service's HTTP
//! error or a connection error is re-raised as Cloud Workflows gave it (tags, code, body), and
//! the execution's stack trace then ends at the re-raise: for those the step is not in the
//! execution, and only the `sigma.chain.failed` event has it. A `step` field in any raised
//! error is read first, so a workflow that adds one is shown at once.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sigma_shared::object::NameError;
use sigma_shared::{Attempt, Generation, GsUri, ObjectRef, Rerun};

use crate::executions::ExecutionName;

/// One upload: the exact object generation a chain run is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Upload {
    #[serde(flatten)]
    pub object: ObjectRef,
    pub generation: Generation,
}

impl fmt::Display for Upload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.object, self.generation)
    }
}

/// `gs://BUCKET/NAME` or `gs://BUCKET/NAME#GENERATION`: an object, and maybe its exact upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectTarget {
    pub object: ObjectRef,
    pub generation: Option<Generation>,
}

impl FromStr for ObjectTarget {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (uri, generation) = match s.rsplit_once('#') {
            Some((uri, generation)) => (uri, Some(generation.parse()?)),
            None => (s, None),
        };
        Ok(Self {
            object: uri.parse::<GsUri>()?.0,
            generation,
        })
    }
}

/// What an execution was started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Argument {
    /// Eventarc's object-finalized event: the upload's first attempt.
    Event { upload: Upload, event_id: String },
    /// An operator's re-run (`sigma replay`).
    Replay(ReplayArgument),
    /// Neither (the workflow refused it with `invalid_argument`), kept as it was sent.
    Unreadable(String),
}

/// The replay argument the workflow accepts (README, "Attempts and the replay argument").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayArgument {
    pub replay: Upload,
    pub attempt: Attempt,
    #[serde(default)]
    pub rerun: Rerun,
    #[serde(default)]
    pub reason: String,
}

impl Argument {
    pub fn parse(text: &str) -> Self {
        #[derive(Deserialize)]
        struct Event {
            data: Upload,
            #[serde(default)]
            id: String,
        }
        let unreadable = || Self::Unreadable(text.to_owned());
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return unreadable();
        };
        // As the workflow reads it: `replay` decides first, then `data`.
        if value.get("replay").is_some() {
            serde_json::from_value(value).map_or_else(|_| unreadable(), Self::Replay)
        } else {
            serde_json::from_value::<Event>(value).map_or_else(
                |_| unreadable(),
                |event| Self::Event {
                    upload: event.data,
                    event_id: event.id,
                },
            )
        }
    }

    pub fn upload(&self) -> Option<&Upload> {
        match self {
            Self::Event { upload, .. } | Self::Replay(ReplayArgument { replay: upload, .. }) => {
                Some(upload)
            }
            Self::Unreadable(_) => None,
        }
    }

    /// Eventarc starts attempt 1; a replay says which it is.
    pub fn attempt(&self) -> Option<Attempt> {
        match self {
            Self::Event { .. } => Some(Attempt::FIRST),
            Self::Replay(replay) => Some(replay.attempt),
            Self::Unreadable(_) => None,
        }
    }
}

/// Which attempt a run is, and for a replay what it re-runs and why: the fields every
/// `--json` line about a run or a replay carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Attempted<'a> {
    pub attempt: Option<Attempt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerun: Option<Rerun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

impl<'a> From<&'a ReplayArgument> for Attempted<'a> {
    fn from(replay: &'a ReplayArgument) -> Self {
        Self {
            attempt: Some(replay.attempt),
            rerun: Some(replay.rerun),
            reason: Some(&replay.reason),
        }
    }
}

impl<'a> From<&'a Argument> for Attempted<'a> {
    fn from(argument: &'a Argument) -> Self {
        match argument {
            Argument::Replay(replay) => replay.into(),
            other => Self {
                attempt: other.attempt(),
                rerun: None,
                reason: None,
            },
        }
    }
}

/// The execution's state, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    Queued,
    Active,
    Succeeded,
    Failed,
    Cancelled,
    Unavailable,
}

impl RunState {
    /// Started or waiting for its turn: the upload is being worked on.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Queued | Self::Active)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Active => "ACTIVE",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
            Self::Unavailable => "UNAVAILABLE",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A step of the chain, as `sigma.chain.failed` names it, plus the two checks before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The workflow's settings (`invalid_settings`), before any call.
    Settings,
    /// The execution's argument (`invalid_argument`), before any call.
    Argument,
    Decrypt,
    Launch,
    DataflowJob,
    DataformInvoke,
    DataformInvocation,
    Publish,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = serde_json::to_value(self).expect("a unit variant serializes");
        f.write_str(name.as_str().expect("as a string"))
    }
}

/// Why a run failed: the workflow's `describe_error` applied to what the execution kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// `None` when the execution does not say (a service's or a connection's error).
    pub step: Option<Step>,
    /// The workflow's `reason`, the service's error code, `http_<status>`, or the
    /// connection error's tag.
    pub code: String,
    /// The HTTP status of a service's error, 0 for any other.
    pub status: u16,
    pub message: String,
}

impl Failure {
    /// From `error.payload`, the raised error as a JSON string.
    pub fn parse(payload: &str) -> Self {
        let Ok(error) = serde_json::from_str::<Value>(payload) else {
            return Self {
                step: None,
                code: "error".into(),
                status: 0,
                message: payload.to_owned(),
            };
        };
        let text =
            |value: &Value, key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let tags: Vec<&str> = error
            .get("tags")
            .and_then(Value::as_array)
            .map(|tags| tags.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let http = tags.contains(&"HttpError");
        let status = error
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|code| u16::try_from(code).ok())
            .filter(|_| http)
            .unwrap_or(0);
        let service_error = error
            .get("body")
            .and_then(|body| body.get("error"))
            .filter(|e| e.is_object());
        let connection = tags
            .iter()
            .find(|tag| ["ConnectionError", "ConnectionFailedError", "TimeoutError"].contains(tag));
        let code = text(&error, "reason")
            .or_else(|| service_error.and_then(|e| text(e, "code")))
            .or_else(|| http.then(|| format!("http_{status}")))
            .or_else(|| connection.map(|tag| (*tag).to_owned()))
            .unwrap_or_else(|| "error".into());
        let message = service_error
            .and_then(|e| text(e, "message"))
            .or_else(|| text(&error, "message"))
            .unwrap_or_default();
        Self {
            step: step_of(&error),
            code,
            status,
            message,
        }
    }
}

/// The step, where the raised error names it or its phase.
fn step_of(error: &Value) -> Option<Step> {
    if let Some(step) = error
        .get("step")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
    {
        return Some(step);
    }
    Some(match error.get("reason").and_then(Value::as_str)? {
        "invalid_settings" => Step::Settings,
        "invalid_argument" => Step::Argument,
        "dataflow_job_failed" => Step::DataflowJob,
        "dataform_invocation_failed" => Step::DataformInvocation,
        "poll_deadline_exceeded" if error.get("job_id").is_some() => Step::DataflowJob,
        "poll_deadline_exceeded" if error.get("invocation").is_some() => Step::DataformInvocation,
        _ => return None,
    })
}

/// What a succeeded execution returned: the chain's summary, or why the upload was ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Completion {
    Succeeded(Summary),
    Ignored {
        reason: String,
    },
    /// A result this CLI does not know (another workflow revision), kept as it was.
    Unreadable {
        result: String,
    },
}

/// The parts of the workflow's summary (README, "Result") an operator reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub job: JobSummary,
    pub dataform: DataformSummary,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    pub id: String,
    pub name: String,
    pub entity: String,
    #[serde(default)]
    pub adopted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataformSummary {
    pub table: String,
    /// Nothing depended on the table: no invocation.
    pub skipped: bool,
    #[serde(default)]
    pub invocation: Option<String>,
    pub state: String,
    /// Actions in the closure.
    pub count: u64,
    #[serde(default)]
    pub action_states: BTreeMap<String, u64>,
}

impl Completion {
    pub fn parse(result: &str) -> Self {
        #[derive(Deserialize)]
        #[serde(tag = "status", rename_all = "snake_case")]
        enum Wire {
            Succeeded(Summary),
            Ignored { reason: String },
        }
        match serde_json::from_str::<Wire>(result) {
            Ok(Wire::Succeeded(summary)) => Self::Succeeded(summary),
            Ok(Wire::Ignored { reason }) => Self::Ignored { reason },
            Err(_) => Self::Unreadable {
                result: result.to_owned(),
            },
        }
    }
}

/// How the execution ended, or that it has not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Queued or active; the step it is at, when the API says.
    Pending {
        step: Option<String>,
    },
    Succeeded(Completion),
    Failed(Failure),
    Cancelled,
    Unavailable,
}

/// One execution, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub name: ExecutionName,
    pub state: RunState,
    pub start: Option<DateTime<Utc>>,
    pub duration: Option<Duration>,
    pub argument: Argument,
    pub outcome: Outcome,
}

impl Run {
    pub fn upload(&self) -> Option<&Upload> {
        self.argument.upload()
    }

    pub fn attempt(&self) -> Option<Attempt> {
        self.argument.attempt()
    }

    pub fn failure(&self) -> Option<&Failure> {
        match &self.outcome {
            Outcome::Failed(failure) => Some(failure),
            _ => None,
        }
    }

    /// Ended without doing its work: a re-run is what it needs.
    pub fn needs_replay(&self) -> bool {
        matches!(self.state, RunState::Failed | RunState::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"id": "ev-1", "type": "google.cloud.storage.object.v1.finalized",
        "data": {"bucket": "company_trigger_bucket", "name": "data/20240115/lkp_fechas.gz.encrypted",
                 "generation": "1705312800123456", "size": "42", "kind": "storage#object"}}"#;

    fn upload() -> Upload {
        Upload {
            object: "gs://company_trigger_bucket/data/20240115/lkp_fechas.gz.encrypted"
                .parse::<GsUri>()
                .unwrap()
                .0,
            generation: "1705312800123456".parse().unwrap(),
        }
    }

    #[test]
    fn an_eventarc_event_is_the_uploads_first_attempt() {
        let argument = Argument::parse(EVENT);

        assert_eq!(
            argument,
            Argument::Event {
                upload: upload(),
                event_id: "ev-1".into()
            }
        );
        assert_eq!(argument.attempt(), Some(Attempt::FIRST));
    }

    #[test]
    fn a_replay_argument_names_its_attempt_rerun_and_reason() {
        let argument = Argument::parse(
            r#"{"replay": {"bucket": "company_trigger_bucket", "name": "data/20240115/lkp_fechas.gz.encrypted",
                           "generation": "1705312800123456"}, "attempt": 3, "rerun": "all", "reason": "INC-42"}"#,
        );

        let Argument::Replay(replay) = &argument else {
            panic!("{argument:?}")
        };
        assert_eq!(replay.replay, upload());
        assert_eq!(replay.attempt.get(), 3);
        assert_eq!(replay.rerun, Rerun::All);
        assert_eq!(replay.reason, "INC-42");
        assert_eq!(argument.upload(), Some(&upload()));
    }

    #[test]
    fn a_replay_argument_is_written_as_the_workflow_reads_it() {
        let argument = ReplayArgument {
            replay: upload(),
            attempt: Attempt::new(2).unwrap(),
            rerun: Rerun::Failed,
            reason: "schema fixed".into(),
        };

        let written = serde_json::to_value(&argument).unwrap();

        assert_eq!(
            written,
            serde_json::json!({
                "replay": {"bucket": "company_trigger_bucket",
                           "name": "data/20240115/lkp_fechas.gz.encrypted",
                           "generation": "1705312800123456"},
                "attempt": 2, "rerun": "failed", "reason": "schema fixed"})
        );
        assert_eq!(
            Argument::parse(&written.to_string()),
            Argument::Replay(argument)
        );
    }

    #[test]
    fn an_argument_the_workflow_refuses_is_kept_unread() {
        for text in [
            r#"{"not": "an event"}"#,
            r#"{"replay": {"bucket": "b-1", "name": "x", "generation": "1"}, "attempt": 0}"#,
            r#"{"replay": {"bucket": "b-1", "name": "x", "generation": "1"}}"#,
            r#"{"data": {"bucket": "B", "name": "x", "generation": "1"}}"#,
            "not json",
            "",
        ] {
            let argument = Argument::parse(text);
            assert_eq!(argument, Argument::Unreadable(text.into()), "{text}");
            assert_eq!(argument.attempt(), None);
        }
    }

    #[test]
    fn object_targets_take_an_optional_generation() {
        let exact: ObjectTarget = "gs://bkt/data/x.gz.encrypted#17".parse().unwrap();
        let current: ObjectTarget = "gs://bkt/data/x.gz.encrypted".parse().unwrap();

        assert_eq!(exact.generation.map(Generation::get), Some(17));
        assert_eq!(exact.object, current.object);
        assert_eq!(current.generation, None);
        for bad in ["gs://bkt/x#", "gs://bkt/x#-1", "bkt/x#1", "gs://bkt"] {
            assert!(bad.parse::<ObjectTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_workflows_own_errors_name_their_step() {
        let cases = [
            (
                r#"{"reason": "dataflow_job_failed", "message": "Dataflow job J ended FAILED", "job_id": "J",
                    "state": "FAILED", "errors": ["3 rows"], "tags": ["SigmaError"]}"#,
                Some(Step::DataflowJob),
                "dataflow_job_failed",
                "Dataflow job J ended FAILED",
            ),
            (
                r#"{"reason": "dataform_invocation_failed", "message": "m", "invocation": "i", "tags": ["SigmaError"]}"#,
                Some(Step::DataformInvocation),
                "dataform_invocation_failed",
                "m",
            ),
            (
                r#"{"reason": "poll_deadline_exceeded", "message": "m", "job_id": "J", "cancelled": null}"#,
                Some(Step::DataflowJob),
                "poll_deadline_exceeded",
                "m",
            ),
            (
                r#"{"reason": "poll_deadline_exceeded", "message": "m", "invocation": "I"}"#,
                Some(Step::DataformInvocation),
                "poll_deadline_exceeded",
                "m",
            ),
            (
                r#"{"reason": "backpressure_timeout", "message": "m", "step": "launch", "path": "/launch",
                    "last_error": {"status": 429, "code": "quota_exhausted"}}"#,
                Some(Step::Launch),
                "backpressure_timeout",
                "m",
            ),
            (
                r#"{"reason": "invalid_argument", "message": "attempt must be ...", "tags": ["SigmaError"]}"#,
                Some(Step::Argument),
                "invalid_argument",
                "attempt must be ...",
            ),
            (
                r#"{"reason": "invalid_settings", "message": "POLL_INTERVAL_SECONDS ..."}"#,
                Some(Step::Settings),
                "invalid_settings",
                "POLL_INTERVAL_SECONDS ...",
            ),
        ];
        for (payload, step, code, message) in cases {
            let failure = Failure::parse(payload);
            assert_eq!(failure.step, step, "{payload}");
            assert_eq!((failure.code.as_str(), failure.status), (code, 0));
            assert_eq!(failure.message, message);
        }
    }

    #[test]
    fn a_services_error_gives_its_code_and_message_but_no_step() {
        let failure = Failure::parse(
            r#"{"message": "HTTP server responded with error code 422", "tags": ["HttpError"], "code": 422,
                "headers": {"content-type": "application/json"},
                "body": {"error": {"code": "invalid_token", "message": "the token's signature does not verify",
                                   "retryable": false}}}"#,
        );

        assert_eq!(
            failure,
            Failure {
                step: None,
                code: "invalid_token".into(),
                status: 422,
                message: "the token's signature does not verify".into(),
            }
        );
    }

    #[test]
    fn errors_without_a_service_body_are_classified_as_the_workflow_does() {
        let html = Failure::parse(
            r#"{"message": "HTTP server responded with error code 503", "tags": ["HttpError"], "code": 503,
                "body": "<html>Service Unavailable</html>"}"#,
        );
        let refused = Failure::parse(
            r#"{"message": "connection refused", "tags": ["ConnectionFailedError"]}"#,
        );
        let stepped = Failure::parse(
            r#"{"message": "m", "tags": ["HttpError"], "code": 500, "step": "publish"}"#,
        );
        let garbage = Failure::parse("not json");

        assert_eq!((html.code.as_str(), html.status), ("http_503", 503));
        assert_eq!(html.message, "HTTP server responded with error code 503");
        assert_eq!(
            (refused.code.as_str(), refused.status, refused.step),
            ("ConnectionFailedError", 0, None)
        );
        assert_eq!(
            stepped.step,
            Some(Step::Publish),
            "a `step` field is read first"
        );
        assert_eq!(
            (garbage.code.as_str(), garbage.message.as_str()),
            ("error", "not json")
        );
    }

    #[test]
    fn a_success_is_the_chain_summary_an_ignored_upload_or_kept_unread() {
        let summary = Completion::parse(
            r#"{"status": "succeeded", "attempt": 2, "object": {}, "decrypted": {},
                "job": {"id": "2024-01-15_04_05_01-1", "name": "lkp-fechas-2024-01-15-x-a2", "entity": "lkp_fechas",
                        "fecha_lote": "2024-01-15", "adopted": false, "state": "SUCCEEDED", "states": ["SUCCEEDED"]},
                "dataform": {"table": "lkp_fechas", "skipped": false, "state": "SUCCEEDED", "count": 16,
                             "actions_sample": [], "action_states": {"SUCCEEDED": 15, "FAILED": 1},
                             "invocation": "projects/p/locations/l/repositories/r/workflowInvocations/7"},
                "seconds": {"total": 3.2}}"#,
        );
        let skipped = Completion::parse(
            r#"{"status": "succeeded", "job": {"id": "j", "name": "n", "entity": "e"},
                "dataform": {"table": "t", "skipped": true, "state": "SKIPPED", "count": 0, "action_states": {}}}"#,
        );
        let ignored = Completion::parse(
            r#"{"status": "ignored", "reason": "outside prefix data/", "object": {}}"#,
        );

        let Completion::Succeeded(summary) = summary else {
            panic!("{summary:?}")
        };
        assert_eq!(summary.job.name, "lkp-fechas-2024-01-15-x-a2");
        assert_eq!(summary.job.entity, "lkp_fechas");
        assert_eq!(summary.dataform.count, 16);
        assert_eq!(summary.dataform.action_states["FAILED"], 1);
        assert!(summary.dataform.invocation.unwrap().ends_with("/7"));
        let Completion::Succeeded(skipped) = skipped else {
            panic!("{skipped:?}")
        };
        assert!(skipped.dataform.skipped && skipped.dataform.invocation.is_none());
        assert_eq!(
            ignored,
            Completion::Ignored {
                reason: "outside prefix data/".into()
            }
        );
        assert!(matches!(
            Completion::parse(r#"{"status": "done"}"#),
            Completion::Unreadable { .. }
        ));
    }

    #[test]
    fn steps_are_written_as_the_failure_event_names_them() {
        assert_eq!(Step::DataformInvocation.to_string(), "dataform_invocation");
        assert_eq!(Step::Decrypt.to_string(), "decrypt");
    }
}
