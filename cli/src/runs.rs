//! `sigma runs`: the workflow's recent executions, one line each, read as uploads: which
//! object and attempt, how it ended (the failed step and error, or the job and invocation it
//! ran), how long it took, and for a failed run the command that runs it again.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::executions::{ApiArgs, ExecutionName, Executions, WorkflowName, block_on};
use crate::run::{Argument, Attempted, Completion, Failure, Outcome, Run, RunState, Upload};
use crate::selection::{SelectionArgs, StateArg};

/// How much of an error message a text line shows (`--json` has all of it).
const MESSAGE_CHARS: usize = 240;

#[derive(clap::Args)]
pub struct RunsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    selection: SelectionArgs,
    /// Only runs in this state
    #[arg(long, value_enum, conflicts_with = "failed")]
    state: Option<StateArg>,
    /// Only failed runs (--state failed)
    #[arg(long)]
    failed: bool,
    /// One JSON object per line
    #[arg(long)]
    json: bool,
}

pub fn runs(args: RunsArgs) -> anyhow::Result<()> {
    block_on(async {
        let state = if args.failed {
            Some(StateArg::Failed)
        } else {
            args.state
        };
        let filter = args
            .selection
            .filter(state.map(StateArg::states), Utc::now())?;
        let executions = Executions::connect(args.api).await?;
        let progress = counting("reading executions");
        let mut listed = Vec::new();
        for query in filter.queries() {
            listed.extend(executions.list(&query, &progress).await?);
        }
        progress.finish_and_clear();
        let now = Utc::now();
        for run in filter.select(listed) {
            let view = View::of(
                &run,
                executions.workflow(),
                |name| executions.replay_command(name),
                filter.entity_of(&run).map(|e| e.to_string()),
            );
            if args.json {
                println!("{}", serde_json::to_string(&view)?);
            } else {
                println!("{}", view.line(now));
            }
        }
        Ok(())
    })
}

/// A spinner on stderr that counts what was read (drawn only on a terminal).
pub fn counting(what: &'static str) -> ProgressBar {
    let progress = ProgressBar::new_spinner().with_message(what);
    progress.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {pos}").expect("the template is valid"),
    );
    progress.enable_steady_tick(Duration::from_millis(120));
    progress
}

/// One run as `sigma runs` shows it: the fields of a `--json` line, and the text line.
#[derive(Serialize)]
struct View<'a> {
    execution: String,
    id: &'a str,
    state: RunState,
    start_time: Option<String>,
    duration_seconds: Option<f64>,
    object: Option<&'a Upload>,
    #[serde(flatten)]
    attempted: Attempted<'a>,
    /// The argument as sent, when it is neither an event nor a replay.
    #[serde(skip_serializing_if = "Option::is_none")]
    argument: Option<&'a str>,
    entity: Option<String>,
    /// Where a queued or active run is.
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<&'a Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Completion>,
    /// The command that runs a failed or cancelled upload again.
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<String>,
    console: String,
}

impl<'a> View<'a> {
    fn of(
        run: &'a Run,
        workflow: &WorkflowName,
        replay_command: impl Fn(&ExecutionName) -> String,
        entity: Option<String>,
    ) -> Self {
        let entity = entity.or_else(|| match &run.outcome {
            Outcome::Succeeded(Completion::Succeeded(summary)) => Some(summary.job.entity.clone()),
            _ => None,
        });
        Self {
            execution: run.name.to_string(),
            id: run.name.id(),
            state: run.state,
            start_time: run
                .start
                .map(|start| start.to_rfc3339_opts(SecondsFormat::Millis, true)),
            duration_seconds: run.duration.map(|d| d.as_secs_f64()),
            object: run.upload(),
            attempted: (&run.argument).into(),
            argument: match &run.argument {
                Argument::Unreadable(text) => Some(text),
                _ => None,
            },
            entity,
            step: match &run.outcome {
                Outcome::Pending { step } => step.as_deref(),
                _ => None,
            },
            failure: run.failure(),
            result: match &run.outcome {
                Outcome::Succeeded(completion) => Some(completion),
                _ => None,
            },
            replay: (run.needs_replay() && run.upload().is_some())
                .then(|| replay_command(&run.name)),
            console: workflow.console_url(&run.name),
        }
    }

    /// `START  OBJECT#GENERATION  attempt N  STATE  what happened  DURATION  replay: ...`
    fn line(&self, now: DateTime<Utc>) -> String {
        let start = self
            .start_time
            .as_deref()
            .map(|t| format!("{}Z", &t[..19]))
            .unwrap_or_else(|| "(not started)".into());
        let object = match (self.object, self.argument) {
            (Some(upload), _) => upload.to_string(),
            (None, Some(argument)) => format!("argument {}", one_line(argument, 80)),
            (None, None) => "(no argument)".into(),
        };
        let attempt = self
            .attempted
            .attempt
            .map_or_else(|| "attempt ?".into(), |a| format!("attempt {a}"));
        let mut parts = vec![
            format!("{start:<20}"),
            object,
            attempt,
            format!("{:<9}", self.state.name()),
        ];
        parts.extend(self.what_happened());
        match (self.duration_seconds, &self.start_time) {
            (Some(seconds), _) => parts.push(format!("in {}", human(seconds))),
            (None, Some(start)) if self.state == RunState::Active => {
                let started = DateTime::parse_from_rfc3339(start).map(|s| s.to_utc());
                if let Ok(started) = started {
                    let running = (now - started).num_milliseconds().max(0) as f64 / 1000.0;
                    parts.push(format!("running {}", human(running)));
                }
            }
            _ => {}
        }
        if let Some(replay) = &self.replay {
            parts.push(format!("replay: {replay}"));
        }
        parts.join("  ")
    }

    fn what_happened(&self) -> Option<String> {
        if let Some(failure) = self.failure {
            let step = failure
                .step
                .map_or_else(|| "failed".into(), |step| format!("failed at {step}"));
            let status = match failure.status {
                0 => String::new(),
                status => format!(" (HTTP {status})"),
            };
            return Some(format!(
                "{step}: {}{status}: {}",
                failure.code,
                one_line(&failure.message, MESSAGE_CHARS)
            ));
        }
        if let Some(step) = self.step {
            return Some(format!("at {step}"));
        }
        Some(match self.result? {
            Completion::Succeeded(summary) => {
                let job = format!("job {} ({})", summary.job.name, summary.job.id);
                let dataform = &summary.dataform;
                match &dataform.invocation {
                    None => format!("{job}, no Dataform actions depend on {}", dataform.table),
                    Some(invocation) => {
                        let counts: Vec<String> = dataform
                            .action_states
                            .iter()
                            .map(|(state, n)| format!("{n} {state}"))
                            .collect();
                        format!(
                            "{job}, invocation {} {}: {} actions ({})",
                            invocation.rsplit('/').next().unwrap_or(invocation),
                            dataform.state,
                            dataform.count,
                            counts.join(", ")
                        )
                    }
                }
            }
            Completion::Ignored { reason } => format!("ignored: {reason}"),
            Completion::Unreadable { result } => format!("result {}", one_line(result, 80)),
        })
    }
}

/// On one line, at most `limit` characters.
fn one_line(text: &str, limit: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= limit {
        return flat;
    }
    let cut: String = flat.chars().take(limit).collect();
    format!("{cut}…")
}

/// `4.2s`, `2m03s`, `1h02m`.
fn human(seconds: f64) -> String {
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let whole = seconds as u64;
    if whole < 3600 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h{:02}m", whole / 3600, whole % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{Failure, Step};

    const WORKFLOW: &str = "projects/p/locations/l/workflows/w";

    fn line(state: RunState, outcome: Outcome, duration: Option<f64>) -> String {
        let run = Run {
            name: format!("{WORKFLOW}/executions/e1").parse().unwrap(),
            state,
            start: Some("2024-01-15T10:00:03.250Z".parse().unwrap()),
            duration: duration.map(Duration::from_secs_f64),
            argument: Argument::parse(
                r#"{"data": {"bucket": "bkt", "name": "data/x.gz.encrypted", "generation": "7"}}"#,
            ),
            outcome,
        };
        let workflow = WORKFLOW.parse().unwrap();
        let view = View::of(
            &run,
            &workflow,
            |name| format!("sigma replay {}", name.id()),
            None,
        );
        view.line("2024-01-15T10:02:03Z".parse().unwrap())
    }

    #[test]
    fn a_failed_run_reads_start_object_attempt_state_error_duration_then_its_replay() {
        let failure = Failure {
            step: Some(Step::DataflowJob),
            code: "dataflow_job_failed".into(),
            status: 0,
            message: "Dataflow job J\nended FAILED".into(),
        };

        assert_eq!(
            line(RunState::Failed, Outcome::Failed(failure), Some(125.0)),
            "2024-01-15T10:00:03Z  gs://bkt/data/x.gz.encrypted#7  attempt 1  FAILED     \
             failed at dataflow_job: dataflow_job_failed: Dataflow job J ended FAILED  in 2m05s  \
             replay: sigma replay e1"
        );
    }

    #[test]
    fn a_running_run_says_where_it_is_and_for_how_long() {
        let pending = Outcome::Pending {
            step: Some("poll_job".into()),
        };

        assert_eq!(
            line(RunState::Active, pending, None),
            "2024-01-15T10:00:03Z  gs://bkt/data/x.gz.encrypted#7  attempt 1  ACTIVE     at poll_job  running 1m59s"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human(4.25), "4.2s");
        assert_eq!(human(123.0), "2m03s");
        assert_eq!(human(3720.5), "1h02m");
    }

    #[test]
    fn messages_are_kept_on_one_line_and_cut() {
        assert_eq!(one_line("a\n  b\tc", 10), "a b c");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
