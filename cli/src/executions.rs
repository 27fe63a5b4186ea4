//! The Workflow Executions API, through the official `google-cloud-workflows-executions-v1`
//! client, in the words of [`crate::run`]: list and get give [`Run`]s, start takes a
//! [`ReplayArgument`].
//!
//! The endpoint and the workflow are parsed where they enter (flags or environment). An
//! `http://` endpoint is a local stand-in (`tests/python/stack.py up` prints one) and is
//! reached with anonymous credentials, as `STORAGE_EMULATOR_HOST` is by
//! `sigma_shared::storage::client`; otherwise Application Default Credentials are used.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use google_cloud_gax::paginator::Paginator as _;
use google_cloud_workflows_executions_v1::client::Executions as ExecutionsClient;
use google_cloud_workflows_executions_v1::model::{self, ExecutionView, execution::State};
use indicatif::ProgressBar;

use crate::run::{Argument, Completion, Failure, Outcome, ReplayArgument, Run, RunState};

pub const WORKFLOW_VAR: &str = "SIGMA_WORKFLOW";
pub const ENDPOINT_VAR: &str = "WORKFLOW_EXECUTIONS_ENDPOINT";

/// The API's largest page in the FULL view.
const PAGE_SIZE: i32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} is not projects/PROJECT/locations/LOCATION/workflows/WORKFLOW")]
    Workflow(String),
    #[error(
        "{0:?} is not an execution id or projects/PROJECT/locations/LOCATION/workflows/WORKFLOW/executions/ID"
    )]
    Execution(String),
    #[error("{0:?} is not an http:// or https:// URL")]
    Endpoint(String),
}

/// A resource-name segment: what Google's ids are made of, nothing that could change a path.
fn segment(s: &str) -> Option<&str> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    ok.then_some(s)
}

/// `projects/P/locations/L/workflows/W`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkflowName {
    project: String,
    location: String,
    workflow: String,
}

impl WorkflowName {
    /// The execution's page in the Cloud console.
    pub fn console_url(&self, execution: &ExecutionName) -> String {
        format!(
            "https://console.cloud.google.com/workflows/workflow/{}/{}/execution/{}?project={}",
            self.location,
            self.workflow,
            execution.id(),
            self.project
        )
    }
}

impl FromStr for WorkflowName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NameError::Workflow(s.to_owned());
        match s.split('/').collect::<Vec<_>>()[..] {
            [
                "projects",
                project,
                "locations",
                location,
                "workflows",
                workflow,
            ] => Ok(Self {
                project: segment(project).ok_or_else(bad)?.to_owned(),
                location: segment(location).ok_or_else(bad)?.to_owned(),
                workflow: segment(workflow).ok_or_else(bad)?.to_owned(),
            }),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for WorkflowName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "projects/{}/locations/{}/workflows/{}",
            self.project, self.location, self.workflow
        )
    }
}

/// `projects/P/locations/L/workflows/W/executions/ID`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecutionName {
    workflow: WorkflowName,
    id: String,
}

impl ExecutionName {
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl FromStr for ExecutionName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NameError::Execution(s.to_owned());
        let (workflow, id) = s.rsplit_once("/executions/").ok_or_else(bad)?;
        Ok(Self {
            workflow: workflow.parse().map_err(|_| bad())?,
            id: segment(id).ok_or_else(bad)?.to_owned(),
        })
    }
}

impl fmt::Display for ExecutionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/executions/{}", self.workflow, self.id)
    }
}

/// An execution as an operator names it: its id, or its whole resource name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionRef {
    Id(String),
    Name(ExecutionName),
}

impl ExecutionRef {
    /// The execution of `workflow` this names; a whole name must be of that workflow.
    pub fn resolve(self, workflow: &WorkflowName) -> anyhow::Result<ExecutionName> {
        match self {
            Self::Id(id) => Ok(ExecutionName {
                workflow: workflow.clone(),
                id,
            }),
            Self::Name(name) if name.workflow == *workflow => Ok(name),
            Self::Name(name) => anyhow::bail!(
                "{name} is an execution of {}, not of {workflow} (--workflow or {WORKFLOW_VAR})",
                name.workflow
            ),
        }
    }
}

impl FromStr for ExecutionRef {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('/') {
            s.parse().map(Self::Name)
        } else {
            segment(s)
                .map(|id| Self::Id(id.to_owned()))
                .ok_or_else(|| NameError::Execution(s.to_owned()))
        }
    }
}

/// Where the API is: Google's, or an `http://` stand-in reached without credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint(String);

impl Endpoint {
    fn is_local(&self) -> bool {
        self.0.starts_with("http://")
    }
}

impl FromStr for Endpoint {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = s.trim_end_matches('/');
        let host = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        match host {
            Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
                Ok(Self(url.to_owned()))
            }
            _ => Err(NameError::Endpoint(s.to_owned())),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which workflow, and where its Executions API is.
#[derive(clap::Args)]
pub struct ApiArgs {
    /// The workflow: projects/PROJECT/locations/LOCATION/workflows/WORKFLOW
    #[arg(long, env = WORKFLOW_VAR, value_name = "NAME")]
    workflow: WorkflowName,
    /// The Workflow Executions API [default: Google's]; an http:// URL (a local stack) is
    /// reached with anonymous credentials
    #[arg(long, env = ENDPOINT_VAR, value_name = "URL")]
    endpoint: Option<Endpoint>,
}

/// The executions of one workflow.
pub struct Executions {
    client: ExecutionsClient,
    workflow: WorkflowName,
    endpoint: Option<Endpoint>,
}

impl Executions {
    pub async fn connect(args: ApiArgs) -> anyhow::Result<Self> {
        let mut builder = ExecutionsClient::builder();
        if let Some(endpoint) = &args.endpoint {
            builder = builder.with_endpoint(endpoint.to_string());
            if endpoint.is_local() {
                builder = builder.with_credentials(
                    google_cloud_auth::credentials::anonymous::Builder::new().build(),
                );
            }
        }
        let client = builder
            .build()
            .await
            .context("cannot build the Workflow Executions client")?;
        Ok(Self {
            client,
            workflow: args.workflow,
            endpoint: args.endpoint,
        })
    }

    pub fn workflow(&self) -> &WorkflowName {
        &self.workflow
    }

    /// Every execution `filter` selects (the API's filter syntax; empty for all), every page
    /// of them, with their arguments and results. `progress` counts them.
    pub async fn list(&self, filter: &str, progress: &ProgressBar) -> anyhow::Result<Vec<Run>> {
        let mut pages = self
            .client
            .list_executions()
            .set_parent(self.workflow.to_string())
            .set_view(ExecutionView::Full)
            .set_page_size(PAGE_SIZE)
            .set_filter(filter)
            .by_page();
        let mut runs = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.with_context(|| format!("listing the executions of {}", self.workflow))?;
            progress.inc(page.executions.len() as u64);
            for execution in page.executions {
                runs.push(read(execution)?);
            }
        }
        Ok(runs)
    }

    pub async fn get(&self, name: &ExecutionName) -> anyhow::Result<Run> {
        let execution = self
            .client
            .get_execution()
            .set_name(name.to_string())
            .set_view(ExecutionView::Full)
            .send()
            .await
            .with_context(|| format!("reading execution {name}"))?;
        read(execution)
    }

    /// Starts an execution with this argument; returns its name.
    pub async fn start(&self, argument: &ReplayArgument) -> anyhow::Result<ExecutionName> {
        let argument = serde_json::to_string(argument).context("writing the replay argument")?;
        let execution = self
            .client
            .create_execution()
            .set_parent(self.workflow.to_string())
            .set_execution(model::Execution::new().set_argument(argument))
            .send()
            .await
            .with_context(|| format!("starting an execution of {}", self.workflow))?;
        Ok(execution.name.parse()?)
    }

    /// The command that replays this execution, with the flags this shell's environment
    /// would not supply.
    pub fn replay_command(&self, execution: &ExecutionName) -> String {
        replay_command(execution, &self.workflow, self.endpoint.as_ref(), |var| {
            std::env::var(var).ok()
        })
    }
}

fn replay_command(
    execution: &ExecutionName,
    workflow: &WorkflowName,
    endpoint: Option<&Endpoint>,
    env: impl Fn(&str) -> Option<String>,
) -> String {
    let mut command = format!("sigma replay {}", execution.id());
    let workflow_from_env = env(WORKFLOW_VAR).and_then(|value| value.parse().ok());
    if workflow_from_env.as_ref() != Some(workflow) {
        command.push_str(&format!(" --workflow {workflow}"));
    }
    let endpoint_from_env: Option<Endpoint> =
        env(ENDPOINT_VAR).and_then(|value| value.parse().ok());
    if let Some(endpoint) = endpoint.filter(|e| endpoint_from_env.as_ref() != Some(*e)) {
        command.push_str(&format!(" --endpoint {endpoint}"));
    }
    command
}

/// An execution as the API gives it, read into a [`Run`].
fn read(execution: model::Execution) -> anyhow::Result<Run> {
    let name: ExecutionName = execution.name.parse()?;
    let state = match execution.state {
        State::Queued => RunState::Queued,
        State::Active => RunState::Active,
        State::Succeeded => RunState::Succeeded,
        State::Failed => RunState::Failed,
        State::Cancelled => RunState::Cancelled,
        _ => RunState::Unavailable,
    };
    let outcome = match state {
        RunState::Queued | RunState::Active => Outcome::Pending {
            step: execution
                .status
                .and_then(|status| status.current_steps.into_iter().last())
                .map(|step| step.step),
        },
        RunState::Succeeded => Outcome::Succeeded(Completion::parse(&execution.result)),
        RunState::Failed => Outcome::Failed(Failure::parse(
            &execution.error.map(|e| e.payload).unwrap_or_default(),
        )),
        RunState::Cancelled => Outcome::Cancelled,
        RunState::Unavailable => Outcome::Unavailable,
    };
    Ok(Run {
        name,
        state,
        start: execution
            .start_time
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds(), t.nanos().try_into().ok()?)),
        duration: execution.duration.and_then(|d| {
            Some(Duration::new(
                d.seconds().try_into().ok()?,
                d.nanos().try_into().ok()?,
            ))
        }),
        argument: Argument::parse(&execution.argument),
        outcome,
    })
}

/// Runs an async command on a runtime of its own: the CLI is otherwise synchronous.
pub fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(work)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Step;

    const WORKFLOW: &str = "projects/sigma-local/locations/local/workflows/sigma";

    fn workflow() -> WorkflowName {
        WORKFLOW.parse().unwrap()
    }

    #[test]
    fn workflow_names_are_parsed_into_their_parts_and_written_back() {
        let name = workflow();

        assert_eq!(name.to_string(), WORKFLOW);
        for bad in [
            "projects/p/locations/l/workflows",
            "projects/p/locations/l/workflows/w/extra",
            "projects//locations/l/workflows/w",
            "project/p/locations/l/workflows/w",
            "projects/p/locations/l/workflows/w?x=1",
            "",
        ] {
            assert!(bad.parse::<WorkflowName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn executions_are_named_by_id_or_whole_name_of_the_same_workflow() {
        let whole = format!("{WORKFLOW}/executions/0f3c-9a");
        let other = "projects/p/locations/l/workflows/other/executions/0f3c-9a";

        let by_id = "0f3c-9a"
            .parse::<ExecutionRef>()
            .unwrap()
            .resolve(&workflow())
            .unwrap();
        let by_name = whole
            .parse::<ExecutionRef>()
            .unwrap()
            .resolve(&workflow())
            .unwrap();

        assert_eq!(by_id, by_name);
        assert_eq!(by_id.to_string(), whole);
        assert_eq!(by_id.id(), "0f3c-9a");
        assert!(
            other
                .parse::<ExecutionRef>()
                .unwrap()
                .resolve(&workflow())
                .is_err()
        );
        for bad in ["", "a b", "../x", "projects/p/executions/"] {
            assert!(bad.parse::<ExecutionRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_console_url_names_location_workflow_execution_and_project() {
        let execution: ExecutionName = format!("{WORKFLOW}/executions/abc").parse().unwrap();

        assert_eq!(
            workflow().console_url(&execution),
            "https://console.cloud.google.com/workflows/workflow/local/sigma/execution/abc?project=sigma-local"
        );
    }

    #[test]
    fn endpoints_are_http_urls_and_only_plain_http_is_local() {
        let local: Endpoint = "http://127.0.0.1:8080/".parse().unwrap();
        let google: Endpoint = "https://workflowexecutions.googleapis.com".parse().unwrap();

        assert_eq!(local.to_string(), "http://127.0.0.1:8080");
        assert!(local.is_local() && !google.is_local());
        for bad in ["127.0.0.1:8080", "http://", "ftp://x", "http://a b"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_replay_command_adds_only_what_the_environment_does_not_say() {
        let execution: ExecutionName = format!("{WORKFLOW}/executions/abc").parse().unwrap();
        let endpoint: Endpoint = "http://127.0.0.1:9".parse().unwrap();
        let same = |var: &str| {
            Some(match var {
                WORKFLOW_VAR => WORKFLOW.to_owned(),
                _ => "http://127.0.0.1:9/".to_owned(),
            })
        };

        let in_same_shell = replay_command(&execution, &workflow(), Some(&endpoint), same);
        let elsewhere = replay_command(&execution, &workflow(), Some(&endpoint), |_| None);
        let on_google = replay_command(&execution, &workflow(), None, |_| None);

        assert_eq!(in_same_shell, "sigma replay abc");
        assert_eq!(
            elsewhere,
            format!("sigma replay abc --workflow {WORKFLOW} --endpoint http://127.0.0.1:9")
        );
        assert_eq!(on_google, format!("sigma replay abc --workflow {WORKFLOW}"));
    }

    #[test]
    fn an_execution_is_read_with_its_argument_times_and_outcome() {
        let execution =
            |value: serde_json::Value| serde_json::from_value::<model::Execution>(value).unwrap();
        let failed = execution(serde_json::json!({
            "name": format!("{WORKFLOW}/executions/e1"),
            "state": "FAILED",
            "startTime": "2024-01-15T10:00:00.500Z",
            "duration": "125s",
            "argument": r#"{"data": {"bucket": "company_trigger_bucket", "name": "data/x.gz.encrypted", "generation": "7"}}"#,
            "error": {"payload": r#"{"reason": "dataflow_job_failed", "message": "m", "job_id": "j"}"#},
        }));
        let queued = execution(serde_json::json!({
            "name": format!("{WORKFLOW}/executions/e2"),
            "state": 6,
            "argument": "{}",
        }));

        let failed = read(failed).unwrap();
        let queued = read(queued).unwrap();

        assert_eq!(failed.name.id(), "e1");
        assert_eq!(failed.state, RunState::Failed);
        assert_eq!(
            failed.start.unwrap().to_rfc3339(),
            "2024-01-15T10:00:00.500+00:00"
        );
        assert_eq!(failed.duration, Some(Duration::from_secs(125)));
        assert_eq!(
            failed.upload().unwrap().to_string(),
            "gs://company_trigger_bucket/data/x.gz.encrypted#7"
        );
        assert_eq!(failed.failure().unwrap().step, Some(Step::DataflowJob));
        assert_eq!(queued.state, RunState::Queued);
        assert_eq!(queued.start, None);
        assert_eq!(queued.outcome, Outcome::Pending { step: None });
        assert_eq!(queued.upload(), None);
    }
}
