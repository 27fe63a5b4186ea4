//! The Dataform v1 API through the official client: compile, read the compiled actions,
//! create an invocation, read its progress.

use std::collections::BTreeMap;
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
use crate::graph::{Action, Graph, Kind, RawAction, Target};

/// The most actions a page may hold; the server may send fewer.
const PAGE_SIZE: i32 = 1000;

pub struct DataformApi {
    client: Dataform,
    settings: ApiSettings,
}

/// A compilation the graph was read from; invocations must name the same one so that the
/// targets they include exist in it.
pub struct Compilation {
    pub name: String,
    pub graph: Graph,
}

#[derive(Debug, Clone)]
pub struct Created {
    pub name: String,
    pub state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedAction {
    pub target: String,
    pub failure_reason: String,
}

/// The `/invocations/{id}` answer.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub invocation: String,
    pub state: String,
    pub terminal: bool,
    pub actions: BTreeMap<String, usize>,
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
    pub async fn compile(&self) -> Result<Compilation, DataformError> {
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
        Ok(Compilation {
            name: created.name,
            graph: Graph::build(actions)?,
        })
    }

    /// Runs exactly `targets`: no dependencies, no dependents added by Dataform.
    pub async fn invoke(
        &self,
        compilation: &str,
        targets: &[Target],
        fully_refresh: bool,
    ) -> Result<Created, DataformError> {
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
            .map_err(|e| DataformError::google("create the invocation", &e))?;
        Ok(Created {
            state: created
                .state
                .name()
                .unwrap_or("STATE_UNSPECIFIED")
                .to_owned(),
            name: created.name,
        })
    }

    pub fn invocation_name(&self, id: &str) -> String {
        format!("{}/workflowInvocations/{id}", self.settings.repository)
    }

    pub async fn state(&self, name: &str) -> Result<String, DataformError> {
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
        Ok(invocation
            .state
            .name()
            .unwrap_or("STATE_UNSPECIFIED")
            .to_owned())
    }

    /// The invocation's state and its actions' outcomes, from every page.
    pub async fn status(&self, name: &str) -> Result<Status, DataformError> {
        let state = self.state(name).await?;
        let mut pages = self
            .client
            .query_workflow_invocation_actions()
            .set_name(name)
            .set_page_size(PAGE_SIZE)
            .by_page();
        let mut actions = BTreeMap::new();
        let mut failed = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| DataformError::google("read the invocation's actions", &e))?;
            for action in page.workflow_invocation_actions {
                let action_state = action
                    .state
                    .name()
                    .unwrap_or("STATE_UNSPECIFIED")
                    .to_owned();
                if action.state == model::workflow_invocation_action::State::Failed {
                    failed.push(FailedAction {
                        target: action
                            .target
                            .map(|t| graph_target(&t).to_string())
                            .unwrap_or_default(),
                        failure_reason: action.failure_reason,
                    });
                }
                *actions.entry(action_state).or_insert(0) += 1;
            }
        }
        Ok(Status {
            invocation: name.to_owned(),
            terminal: matches!(state.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED"),
            state,
            actions,
            failed,
        })
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
