//! `sigma replay`: runs uploads through the chain again, each as its next attempt.
//!
//! Eventarc never retries a failed execution, so an upload stays failed until someone starts
//! the workflow again with a replay argument (README, "Attempts and the replay argument").
//! What to run again is named by execution, by object, by the failed runs of a window, or by
//! an entity's batch dates (a backfill). Every input is resolved to an exact upload before
//! anything starts; then each upload gets attempt 1 + the highest attempt any of its
//! executions had (read from the workflow's execution history), so a service always tells a
//! re-run from a duplicate delivery of an earlier attempt.

use std::collections::HashSet;
use std::str::FromStr;

use anyhow::{Context, bail};
use chrono::Utc;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sigma_dataflow::naming::{EntityName, FechaLote};
use sigma_dataflow::registry::Registry;
use sigma_shared::attempt::MAX_ATTEMPT;
use sigma_shared::{Attempt, BucketName, Rerun};

use crate::bucket;
use crate::executions::{ApiArgs, ExecutionName, ExecutionRef, Executions, block_on};
use crate::pipelines;
use crate::run::{Attempted, ObjectTarget, ReplayArgument, Run, RunState, Upload};
use crate::runs::counting;
use crate::selection::{SelectionArgs, StateArg};

#[derive(clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// Executions (an id or the whole name) or objects (gs://BUCKET/NAME[#GENERATION]; without
    /// a generation, the object's current one) to run again
    #[arg(value_name = "EXECUTION|gs://BUCKET/NAME[#GENERATION]")]
    targets: Vec<Target>,
    /// Run again the uploads whose runs failed in the window (--since, --entity, --object),
    /// unless a later attempt succeeded or one is running
    #[arg(long, conflicts_with = "targets")]
    failed: bool,
    #[command(flatten)]
    selection: SelectionArgs,
    /// Backfill: the entity's uploads (--entity) with a batch date from this day...
    #[arg(long, value_name = "DATE", requires_all = ["to", "entity"], conflicts_with_all = ["targets", "failed"])]
    from: Option<FechaLote>,
    /// ...to this day (inclusive)
    #[arg(long, value_name = "DATE", requires = "from")]
    to: Option<FechaLote>,
    /// The trigger bucket a backfill lists
    #[arg(long, env = "TRIGGER_BUCKET")]
    bucket: Option<BucketName>,
    /// Which Dataform actions run again: only those that did not succeed before (and what
    /// depends on them), or the whole closure
    #[arg(long, value_name = "failed|all", default_value = "failed", value_parser = rerun)]
    rerun: Rerun,
    /// Why, carried into the outcome and the events
    #[arg(long, value_name = "TEXT", default_value = "")]
    reason: String,
    /// Print what would start, and start nothing
    #[arg(long)]
    dry_run: bool,
    /// Executions started at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// One JSON object per upload
    #[arg(long)]
    json: bool,
}

fn rerun(s: &str) -> Result<Rerun, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("{s:?} is not failed or all"))
}

/// An execution or an object, as given on the command line.
#[derive(Debug, Clone)]
enum Target {
    Execution(ExecutionRef),
    Object(ObjectTarget),
}

impl FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s.starts_with("gs://") {
            Self::Object(s.parse()?)
        } else {
            Self::Execution(s.parse()?)
        })
    }
}

/// What the command was asked to run again.
enum Source {
    Targets(Vec<Target>),
    Failed,
    Backfill {
        registry: Registry,
        entity: EntityName,
        from: FechaLote,
        to: FechaLote,
        bucket: BucketName,
    },
}

impl ReplayArgs {
    fn source(&mut self) -> anyhow::Result<Source> {
        let window = self.selection.since.is_some() || self.selection.object.is_some();
        let source = if let (Some(from), Some(to)) = (self.from, self.to) {
            if from > to {
                bail!("--from {from} is after --to {to}");
            }
            let Some(bucket) = self.bucket.clone() else {
                bail!("a backfill lists the trigger bucket: pass --bucket or set TRIGGER_BUCKET");
            };
            if window {
                bail!("--since and --object choose failed runs (--failed), not a backfill's files");
            }
            // clap requires --entity with --from, and --pipelines with --entity.
            let (Some(entity), Some(pipelines)) =
                (&self.selection.entity, &self.selection.pipelines)
            else {
                bail!("a backfill needs --entity and --pipelines");
            };
            Source::Backfill {
                registry: pipelines::load(pipelines)?,
                entity: entity.clone(),
                from,
                to,
                bucket,
            }
        } else if self.failed {
            Source::Failed
        } else if !self.targets.is_empty() {
            if window || self.selection.entity.is_some() {
                bail!("--since, --entity and --object choose runs with --failed, not named ones");
            }
            Source::Targets(std::mem::take(&mut self.targets))
        } else {
            bail!(
                "say what to replay: EXECUTION..., gs://BUCKET/NAME[#GENERATION]..., --failed [--since 24h], or --entity E --from DATE --to DATE"
            );
        };
        Ok(source)
    }
}

pub fn replay(mut args: ReplayArgs) -> anyhow::Result<()> {
    let source = args.source()?;
    block_on(async move {
        let executions = Executions::connect(args.api).await?;
        let reading = counting("reading the execution history");
        let history = History(executions.list("", &reading).await?);
        reading.finish_and_clear();
        let (uploads, mut skipped) = match source {
            Source::Targets(targets) => (resolve(targets, &executions, &history).await?, vec![]),
            Source::Failed => {
                let filter = args
                    .selection
                    .filter(Some(StateArg::Failed.states()), Utc::now())?;
                let (failed, unreadable): (Vec<Run>, Vec<Run>) = filter
                    .select(history.0.clone())
                    .into_iter()
                    .partition(|run| run.upload().is_some());
                for run in unreadable {
                    eprintln!(
                        "sigma: execution {} is not replayed: its argument names no upload",
                        run.name.id()
                    );
                }
                history.still_failed(failed)
            }
            Source::Backfill {
                registry,
                entity,
                from,
                to,
                bucket,
            } => {
                let prefix = pipelines::listing_prefix(&registry, &entity)?;
                let listed = bucket::list(&bucket, &prefix).await?;
                let uploads = pipelines::uploads_between(&registry, &entity, from, to, listed);
                (uploads, vec![])
            }
        };
        let mut planned = Vec::new();
        let mut seen = HashSet::new();
        for upload in uploads {
            if !seen.insert(upload.clone()) {
                continue;
            }
            if let Some(running) = history.running(&upload) {
                skipped.push(Skipped {
                    why: format!(
                        "already {} (execution {})",
                        running.state,
                        running.name.id()
                    ),
                    upload,
                });
                continue;
            }
            let attempt = next_attempt(history.attempts(&upload))
                .with_context(|| format!("{upload} cannot be replayed"))?;
            planned.push(ReplayArgument {
                replay: upload,
                attempt,
                rerun: args.rerun,
                reason: args.reason.clone(),
            });
        }
        let report = Report { json: args.json };
        for skip in &skipped {
            report.skipped(skip);
        }
        if planned.is_empty() {
            eprintln!("sigma: nothing to replay");
            return Ok(());
        }
        if args.dry_run {
            for argument in &planned {
                report.would_start(argument)?;
            }
            return Ok(());
        }
        let started = start_all(&executions, planned, usize::from(args.concurrency)).await;
        let failures = report.started(&executions, &started);
        if failures > 0 {
            bail!("{failures} replay(s) did not start");
        }
        Ok(())
    })
}

/// Each target as the exact upload it names; all of them, or the first that does not resolve.
async fn resolve(
    targets: Vec<Target>,
    executions: &Executions,
    history: &History,
) -> anyhow::Result<Vec<Upload>> {
    let mut uploads = Vec::new();
    for target in targets {
        let upload = match target {
            Target::Execution(reference) => {
                let name = reference.resolve(executions.workflow())?;
                let run = match history.find(&name) {
                    Some(run) => run.clone(),
                    None => executions.get(&name).await?,
                };
                run.upload().cloned().with_context(|| {
                    format!(
                        "execution {} was started with an argument that names no upload",
                        name.id()
                    )
                })?
            }
            Target::Object(ObjectTarget {
                object,
                generation: Some(generation),
            }) => Upload { object, generation },
            Target::Object(ObjectTarget {
                object,
                generation: None,
            }) => bucket::current(object).await?,
        };
        uploads.push(upload);
    }
    Ok(uploads)
}

/// The next attempt after those seen: 1 + the highest, and at least 2 (Eventarc's run is
/// attempt 1 even when its execution is no longer in the history).
fn next_attempt(seen: impl IntoIterator<Item = Attempt>) -> anyhow::Result<Attempt> {
    let highest = seen.into_iter().max().unwrap_or(Attempt::FIRST);
    Attempt::new(highest.get() + 1)
        .with_context(|| format!("it has had {MAX_ATTEMPT} attempts, the most there may be"))
}

/// The workflow's executions, as the API keeps them (about 90 days).
struct History(Vec<Run>);

impl History {
    fn of<'a>(&'a self, upload: &Upload) -> impl Iterator<Item = &'a Run> {
        let upload = upload.clone();
        self.0
            .iter()
            .filter(move |run| run.upload() == Some(&upload))
    }

    fn attempts(&self, upload: &Upload) -> Vec<Attempt> {
        self.of(upload).filter_map(Run::attempt).collect()
    }

    fn running(&self, upload: &Upload) -> Option<&Run> {
        self.of(upload).find(|run| run.state.is_pending())
    }

    fn find(&self, name: &ExecutionName) -> Option<&Run> {
        self.0.iter().find(|run| run.name == *name)
    }

    /// The uploads of `failed` whose latest attempt has not succeeded since.
    fn still_failed(&self, failed: Vec<Run>) -> (Vec<Upload>, Vec<Skipped>) {
        let mut uploads = Vec::new();
        let mut skipped = Vec::new();
        let mut seen = HashSet::new();
        for run in failed {
            let Some(upload) = run.upload().cloned() else {
                continue;
            };
            if !seen.insert(upload.clone()) {
                continue;
            }
            let latest = self
                .of(&upload)
                .max_by_key(|run| (run.attempt(), run.start))
                .unwrap_or(&run);
            if latest.state == RunState::Succeeded {
                skipped.push(Skipped {
                    why: format!(
                        "attempt {} succeeded since (execution {})",
                        latest.attempt().unwrap_or(Attempt::FIRST),
                        latest.name.id()
                    ),
                    upload,
                });
            } else {
                uploads.push(upload);
            }
        }
        (uploads, skipped)
    }
}

struct Skipped {
    upload: Upload,
    why: String,
}

/// Starts every replay, `concurrency` at a time, with a progress bar on stderr.
async fn start_all(
    executions: &Executions,
    planned: Vec<ReplayArgument>,
    concurrency: usize,
) -> Vec<(ReplayArgument, anyhow::Result<ExecutionName>)> {
    let progress = ProgressBar::new(planned.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} replays started")
            .expect("the template is valid"),
    );
    let started = futures::stream::iter(planned)
        .map(|argument| async {
            let started = executions.start(&argument).await;
            progress.inc(1);
            (argument, started)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    progress.finish_and_clear();
    started
}

/// A line (or JSON object) per upload.
#[derive(Serialize)]
struct Line<'a> {
    status: &'static str,
    object: &'a Upload,
    #[serde(flatten)]
    attempted: Option<Attempted<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    execution: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    console: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    argument: Option<&'a ReplayArgument>,
    #[serde(skip_serializing_if = "Option::is_none")]
    why: Option<String>,
}

impl<'a> Line<'a> {
    fn new(status: &'static str, object: &'a Upload) -> Self {
        Self {
            status,
            object,
            attempted: None,
            execution: None,
            console: None,
            argument: None,
            why: None,
        }
    }

    fn of(status: &'static str, argument: &'a ReplayArgument) -> Self {
        Self {
            attempted: Some(argument.into()),
            ..Self::new(status, &argument.replay)
        }
    }
}

struct Report {
    json: bool,
}

impl Report {
    fn print(&self, line: &Line, text: String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string(line).expect("a line serializes")
            );
        } else {
            println!("{text}");
        }
    }

    fn skipped(&self, skipped: &Skipped) {
        let line = Line {
            why: Some(skipped.why.clone()),
            ..Line::new("skipped", &skipped.upload)
        };
        self.print(
            &line,
            format!("skipped  {}  {}", skipped.upload, skipped.why),
        );
    }

    fn would_start(&self, argument: &ReplayArgument) -> anyhow::Result<()> {
        let line = Line {
            argument: Some(argument),
            ..Line::of("dry_run", argument)
        };
        let text = format!(
            "would start  {}  attempt {}  argument {}",
            argument.replay,
            argument.attempt,
            serde_json::to_string(argument)?
        );
        self.print(&line, text);
        Ok(())
    }

    /// Prints what started, with its console URL, then what did not; returns how many did not.
    fn started(
        &self,
        executions: &Executions,
        started: &[(ReplayArgument, anyhow::Result<ExecutionName>)],
    ) -> usize {
        let mut failures = 0;
        for (argument, outcome) in started {
            match outcome {
                Ok(name) => {
                    let console = executions.workflow().console_url(name);
                    let text = format!(
                        "started  {}  attempt {}  {console}",
                        argument.replay, argument.attempt
                    );
                    let line = Line {
                        execution: Some(name.to_string()),
                        console: Some(console),
                        ..Line::of("started", argument)
                    };
                    self.print(&line, text);
                }
                Err(error) => {
                    failures += 1;
                    let line = Line {
                        why: Some(format!("{error:#}")),
                        ..Line::of("not_started", argument)
                    };
                    self.print(
                        &line,
                        format!(
                            "NOT STARTED  {}  attempt {}  {error:#}",
                            argument.replay, argument.attempt
                        ),
                    );
                }
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{Argument, Outcome};

    fn attempt(n: u32) -> Attempt {
        Attempt::new(n).unwrap()
    }

    fn upload(name: &str) -> Upload {
        Upload {
            object: format!("gs://company_trigger_bucket/{name}")
                .parse::<sigma_shared::GsUri>()
                .unwrap()
                .0,
            generation: "7".parse().unwrap(),
        }
    }

    fn run(id: &str, upload: &Upload, attempt: u32, state: RunState, start: i64) -> Run {
        let argument = if attempt == 1 {
            Argument::Event {
                upload: upload.clone(),
                event_id: String::new(),
            }
        } else {
            Argument::Replay(ReplayArgument {
                replay: upload.clone(),
                attempt: Attempt::new(attempt).unwrap(),
                rerun: Rerun::Failed,
                reason: String::new(),
            })
        };
        Run {
            name: format!("projects/p/locations/l/workflows/w/executions/{id}")
                .parse()
                .unwrap(),
            state,
            start: chrono::DateTime::from_timestamp(start, 0),
            duration: None,
            argument,
            outcome: Outcome::Unavailable,
        }
    }

    #[test]
    fn the_next_attempt_follows_the_highest_seen_and_is_at_least_two() {
        assert_eq!(next_attempt([]).unwrap(), attempt(2));
        assert_eq!(next_attempt([attempt(1)]).unwrap(), attempt(2));
        assert_eq!(
            next_attempt([attempt(1), attempt(4), attempt(2)]).unwrap(),
            attempt(5)
        );
        assert!(next_attempt([attempt(MAX_ATTEMPT)]).is_err());
    }

    #[test]
    fn history_counts_every_attempt_of_the_upload_and_only_of_it() {
        let a = upload("data/20240115/lkp_fechas.gz.encrypted");
        let b = upload("data/20240116/lkp_fechas.gz.encrypted");
        let history = History(vec![
            run("a1", &a, 1, RunState::Failed, 10),
            run("a3", &a, 3, RunState::Failed, 30),
            run("b1", &b, 1, RunState::Active, 40),
        ]);

        assert_eq!(next_attempt(history.attempts(&a)).unwrap(), attempt(4));
        assert_eq!(history.running(&b).unwrap().name.id(), "b1");
        assert!(history.running(&a).is_none());
        let b1 = "projects/p/locations/l/workflows/w/executions/b1"
            .parse()
            .unwrap();
        assert_eq!(history.find(&b1).unwrap().upload(), Some(&b));
    }

    #[test]
    fn a_failure_since_fixed_by_a_later_attempt_is_not_replayed_again() {
        let fixed = upload("data/20240115/lkp_fechas.gz.encrypted");
        let broken = upload("data/20240116/lkp_fechas.gz.encrypted");
        let history = History(vec![
            run("f1", &fixed, 1, RunState::Failed, 10),
            run("f2", &fixed, 2, RunState::Succeeded, 20),
            run("b1", &broken, 1, RunState::Failed, 30),
            run("b2", &broken, 2, RunState::Failed, 40),
        ]);
        let failed = vec![
            history.0[0].clone(),
            history.0[2].clone(),
            history.0[3].clone(),
        ];

        let (uploads, skipped) = history.still_failed(failed);

        assert_eq!(uploads, [broken]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].upload, fixed);
        assert!(
            skipped[0].why.contains("attempt 2 succeeded"),
            "{}",
            skipped[0].why
        );
    }

    #[test]
    fn targets_are_objects_from_gs_and_executions_otherwise() {
        assert!(matches!(
            "gs://bkt/data/x.gz.encrypted#12".parse::<Target>().unwrap(),
            Target::Object(ObjectTarget {
                generation: Some(_),
                ..
            })
        ));
        assert!(matches!(
            "0f3c-9a".parse::<Target>().unwrap(),
            Target::Execution(ExecutionRef::Id(_))
        ));
        assert!("gs://bkt".parse::<Target>().is_err());
        assert!("has space".parse::<Target>().is_err());
    }

    #[test]
    fn rerun_is_failed_or_all() {
        assert_eq!(rerun("all").unwrap(), Rerun::All);
        assert_eq!(rerun("failed").unwrap(), Rerun::Failed);
        assert!(rerun("some").is_err());
    }
}
