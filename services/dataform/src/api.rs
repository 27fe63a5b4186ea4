//! The Dataform v1 API through the official client: compile, read the compiled actions,
//! create an invocation, read its progress.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use google_cloud_dataform_v1::client::Dataform;
use google_cloud_dataform_v1::model;
use google_cloud_dataform_v1::model::compilation_result_action::CompiledObject;
use google_cloud_dataform_v1::model::compilation_result_action::relation::RelationType;
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::paginator::Paginator as _;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt as _};
use serde::Serialize;
use sigma_shared::config::ConfigError;
use sigma_shared::google::Failure;

use crate::config::{ApiSettings, CompileFrom};
use crate::error::DataformError;
use crate::graph::{Action, Kind, RawAction, Target};
use crate::idempotency::{Attempt, targets_digest};
use crate::request::Sample;

/// The most actions a page may hold; the server may send fewer.
const PAGE_SIZE: i32 = 1000;
/// How many of the repository's most recent invocations are searched for one an ambiguous
/// create may have made. Invocation ids begin with their creation time, so `name desc`
/// lists the newest first, and the search happens within minutes of the create.
const SEARCH_LIMIT: usize = 500;
const SEARCH_PAGE_SIZE: i32 = 100;

pub struct DataformApi {
    client: Dataform,
    settings: ApiSettings,
}

/// A compilation's actions as read, before the graph is built from them (off the async
/// threads: a 100,000-action graph takes a large part of a second). Invocations must name
/// the same compilation so that the targets they include exist in it.
pub struct Compiled {
    pub name: String,
    pub actions: Vec<RawAction>,
}

#[derive(Debug, Clone)]
pub struct Created {
    pub name: String,
    pub state: String,
}

/// A create that failed, and whether Dataform may have carried it out anyway.
#[derive(Debug)]
pub struct CreateFailed {
    pub error: DataformError,
    /// A timeout, a broken connection or a 5xx: the invocation may exist. Only a refusal
    /// (4xx) or a request that never left proves that nothing was created.
    pub ambiguous: bool,
}

/// An existing invocation, with the targets it runs (in the order they were sent).
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub state: String,
    pub compilation_result: String,
    pub targets: Vec<Target>,
}

fn state_name(state: &model::workflow_invocation::State) -> String {
    state.name().unwrap_or("STATE_UNSPECIFIED").to_owned()
}

impl Found {
    fn of(invocation: model::WorkflowInvocation) -> Self {
        let compilation_result = match invocation.compilation_source {
            Some(model::workflow_invocation::CompilationSource::CompilationResult(name)) => name,
            _ => invocation.resolved_compilation_result,
        };
        Self {
            state: state_name(&invocation.state),
            targets: invocation
                .invocation_config
                .map(|c| c.included_targets.iter().map(graph_target).collect())
                .unwrap_or_default(),
            name: invocation.name,
            compilation_result,
        }
    }
}

fn may_have_happened(error: &google_cloud_gax::error::Error) -> bool {
    if error.is_transient_and_before_rpc() || error.is_connect() {
        return false;
    }
    !matches!(error.http_status_code(), Some(400..=499))
}

/// A failed action and why it failed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FailedAction {
    pub target: String,
    pub failure_reason: String,
}

/// The `/invocations/{id}` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = InvocationStatus)]
pub struct Status {
    /// The invocation's full name.
    pub invocation: String,
    /// Dataform's state: `RUNNING`, `SUCCEEDED`, `FAILED`, `CANCELLED` or `CANCELING`.
    pub state: String,
    /// True for `SUCCEEDED`, `FAILED` and `CANCELLED`: poll until it is.
    pub terminal: bool,
    /// How many actions the invocation runs.
    pub count: usize,
    /// How many actions are in each state.
    pub actions: BTreeMap<String, usize>,
    /// The failed actions, at most `actions_sample` of them (all of them are counted in
    /// `actions.FAILED`).
    pub failed: Vec<FailedAction>,
}

impl DataformApi {
    pub async fn connect(settings: ApiSettings) -> Result<Self, ConfigError> {
        // Reads are retried a few times on 503 within a bounded time; creates never are (they
        // are not idempotent); what remains is answered 503 so the workflow retries instead.
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_delay(Duration::from_millis(200))
            .with_maximum_delay(Duration::from_secs(2))
            .build()
            .map_err(|e| ConfigError::new("DATAFORM_ENDPOINT", e))?;
        let mut builder = Dataform::builder()
            .with_retry_policy(
                Aip194Strict
                    .with_attempt_limit(3)
                    .with_time_limit(Duration::from_secs(20)),
            )
            .with_backoff_policy(backoff);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
            if endpoint.starts_with("http://") {
                builder = builder.with_credentials(
                    google_cloud_auth::credentials::anonymous::Builder::new().build(),
                );
            }
        }
        let client = builder.build().await.map_err(|e| {
            ConfigError::new(
                "DATAFORM_ENDPOINT",
                format!("cannot build the Dataform client: {e}"),
            )
        })?;
        Ok(Self { client, settings })
    }

    pub fn repository(&self) -> &str {
        &self.settings.repository
    }

    /// Compiles the configured source and reads every page of its actions.
    pub async fn compile(&self) -> Result<Compiled, DataformError> {
        let source = model::CompilationResult::new();
        let source = match &self.settings.compile_from {
            CompileFrom::ReleaseConfig(name) => source.set_release_config(name),
            CompileFrom::GitCommitish(commitish) => source.set_git_commitish(commitish),
            CompileFrom::Workspace(name) => source.set_workspace(name),
        };
        let created = self
            .client
            .create_compilation_result()
            .set_parent(&self.settings.repository)
            .set_compilation_result(source)
            .send()
            .await
            .map_err(|e| DataformError::google("compile", &e))?;
        if !created.compilation_errors.is_empty() {
            return Err(DataformError::CompilationFailed(
                created
                    .compilation_errors
                    .iter()
                    .map(|e| {
                        if e.path.is_empty() {
                            e.message.clone()
                        } else {
                            format!("{}: {}", e.path, e.message)
                        }
                    })
                    .collect(),
            ));
        }
        let mut pages = self
            .client
            .query_compilation_result_actions()
            .set_name(&created.name)
            .set_page_size(PAGE_SIZE)
            .by_page();
        let mut actions = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| DataformError::google("read the compiled actions", &e))?;
            for action in page.compilation_result_actions {
                actions.push(raw_action(action)?);
            }
        }
        Ok(Compiled {
            name: created.name,
            actions,
        })
    }

    /// Runs exactly `targets`: no dependencies, no dependents added by Dataform.
    pub async fn invoke(
        &self,
        compilation: &str,
        targets: &[Target],
        fully_refresh: bool,
    ) -> Result<Created, CreateFailed> {
        let mut config = model::InvocationConfig::new()
            .set_included_targets(targets.iter().map(model_target))
            .set_transitive_dependencies_included(false)
            .set_transitive_dependents_included(false)
            .set_fully_refresh_incremental_tables_enabled(fully_refresh);
        if let Some(account) = &self.settings.service_account {
            config = config.set_service_account(account);
        }
        let created = self
            .client
            .create_workflow_invocation()
            .set_parent(&self.settings.repository)
            .set_workflow_invocation(
                model::WorkflowInvocation::new()
                    .set_compilation_result(compilation)
                    .set_invocation_config(config),
            )
            .send()
            .await
            .map_err(|e| CreateFailed {
                ambiguous: may_have_happened(&e),
                error: DataformError::google("create the invocation", &e),
            })?;
        Ok(Created {
            state: state_name(&created.state),
            name: created.name,
        })
    }

    /// The invocation an ambiguous `attempt` created, if it did: among the repository's
    /// most recent invocations, the one of the attempt's compilation result whose
    /// `includedTargets` are exactly the attempt's targets.
    pub async fn find(&self, attempt: &Attempt) -> Result<Option<Found>, DataformError> {
        let mut pages = self
            .client
            .list_workflow_invocations()
            .set_parent(&self.settings.repository)
            .set_order_by("name desc")
            .set_page_size(SEARCH_PAGE_SIZE)
            .by_page();
        let mut searched = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| DataformError::google("list the invocations", &e))?;
            for invocation in page.workflow_invocations {
                let found = Found::of(invocation);
                if found.compilation_result == attempt.compilation_result
                    && targets_digest(&found.targets) == attempt.targets
                {
                    return Ok(Some(found));
                }
                searched += 1;
            }
            if searched >= SEARCH_LIMIT {
                break;
            }
        }
        Ok(None)
    }

    pub fn invocation_name(&self, id: &str) -> String {
        format!("{}/workflowInvocations/{id}", self.settings.repository)
    }

    /// The invocation, its state and the targets it runs.
    pub async fn invocation(&self, name: &str) -> Result<Found, DataformError> {
        let invocation = self
            .client
            .get_workflow_invocation()
            .set_name(name)
            .send()
            .await
            .map_err(|e| match Failure::of(&e) {
                Failure::NotFound => DataformError::UnknownInvocation(name.to_owned()),
                _ => DataformError::google("read the invocation", &e),
            })?;
        Ok(Found::of(invocation))
    }

    /// The invocation's state and its actions' outcomes, from every page; at most `sample`
    /// failures listed. With `only`, the actions counted are those of these targets (one
    /// load's share of an invocation that serves several).
    pub async fn status(
        &self,
        name: &str,
        sample: Sample,
        only: Option<&HashSet<Target>>,
    ) -> Result<Status, DataformError> {
        let state = self.invocation(name).await?.state;
        let mut actions = BTreeMap::new();
        let mut failed = Vec::new();
        let mut count = 0;
        self.each_action(name, |action| {
            if let Some(only) = only
                && !action
                    .target
                    .as_ref()
                    .is_some_and(|t| only.contains(&graph_target(t)))
            {
                return;
            }
            count += 1;
            let action_state = action
                .state
                .name()
                .unwrap_or("STATE_UNSPECIFIED")
                .to_owned();
            if action.state == model::workflow_invocation_action::State::Failed
                && sample.admits(failed.len())
            {
                failed.push(FailedAction {
                    target: action
                        .target
                        .map(|t| graph_target(&t).to_string())
                        .unwrap_or_default(),
                    failure_reason: action.failure_reason,
                });
            }
            *actions.entry(action_state).or_insert(0) += 1;
        })
        .await?;
        Ok(Status {
            invocation: name.to_owned(),
            terminal: matches!(state.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED"),
            state,
            count,
            actions,
            failed,
        })
    }
}

impl DataformApi {
    /// `workflowInvocations.cancel`.
    pub async fn cancel(&self, name: &str) -> Result<(), DataformError> {
        self.client
            .cancel_workflow_invocation()
            .set_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match Failure::of(&e) {
                Failure::NotFound => DataformError::UnknownInvocation(name.to_owned()),
                _ => DataformError::google("cancel the invocation", &e),
            })
    }

    /// The targets whose actions ended well in the invocation: `SUCCEEDED`, or `DISABLED`,
    /// which Dataform counts as success.
    pub async fn succeeded_targets(&self, name: &str) -> Result<HashSet<Target>, DataformError> {
        use model::workflow_invocation_action::State;
        let mut succeeded = HashSet::new();
        self.each_action(name, |action| {
            if matches!(action.state, State::Succeeded | State::Disabled)
                && let Some(target) = &action.target
            {
                succeeded.insert(graph_target(target));
            }
        })
        .await?;
        Ok(succeeded)
    }

    /// Every action of the invocation, page by page (`queryWorkflowInvocationActions`),
    /// without holding more than a page: a closure can have 100,000 actions.
    async fn each_action(
        &self,
        name: &str,
        mut visit: impl FnMut(model::WorkflowInvocationAction),
    ) -> Result<(), DataformError> {
        let mut pages = self
            .client
            .query_workflow_invocation_actions()
            .set_name(name)
            .set_page_size(PAGE_SIZE)
            .by_page();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| DataformError::google("read the invocation's actions", &e))?;
            page.workflow_invocation_actions
                .into_iter()
                .for_each(&mut visit);
        }
        Ok(())
    }
}

fn graph_target(target: &model::Target) -> Target {
    Target::new(&target.database, &target.schema, &target.name)
}

fn model_target(target: &Target) -> model::Target {
    model::Target::new()
        .set_database(&target.database)
        .set_schema(&target.schema)
        .set_name(&target.name)
}

fn raw_action(action: model::CompilationResultAction) -> Result<RawAction, DataformError> {
    let target = action
        .target
        .as_ref()
        .map(graph_target)
        .ok_or_else(|| DataformError::Google {
            operation: "read the compiled actions",
            failure: Failure::Unexpected,
            message: "an action has no target".into(),
        })?;
    let canonical = action
        .canonical_target
        .as_ref()
        .map_or_else(|| target.clone(), graph_target);
    let (kind, disabled, tags, dependencies) = match action.compiled_object {
        Some(CompiledObject::Relation(r)) => {
            let kind = match r.relation_type {
                RelationType::View | RelationType::MaterializedView => Kind::View,
                RelationType::IncrementalTable => Kind::Incremental,
                _ => Kind::Table,
            };
            (kind, r.disabled, r.tags, r.dependency_targets)
        }
        Some(CompiledObject::Operations(o)) => {
            (Kind::Operation, o.disabled, o.tags, o.dependency_targets)
        }
        Some(CompiledObject::Assertion(a)) => {
            (Kind::Assertion, a.disabled, a.tags, a.dependency_targets)
        }
        Some(CompiledObject::Notebook(n)) => {
            (Kind::Notebook, n.disabled, n.tags, n.dependency_targets)
        }
        Some(CompiledObject::DataPreparation(d)) => (
            Kind::DataPreparation,
            d.disabled,
            d.tags,
            d.dependency_targets,
        ),
        // Declarations, and kinds this client does not know: kept so that dependencies on
        // them resolve, never selected.
        _ => (Kind::Declaration, false, Vec::new(), Vec::new()),
    };
    Ok(RawAction {
        action: Action {
            target,
            canonical,
            kind,
            disabled,
            tags,
        },
        dependencies: dependencies.iter().map(graph_target).collect(),
    })
}
