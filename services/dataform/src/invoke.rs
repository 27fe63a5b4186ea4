//! The invoke protocol, whatever the deliveries and failures: resolve the loaded table,
//! compute its closure, claim the key, create one invocation for exactly that closure,
//! record it, and report it on the events topic.
//!
//! The handlers in `routes.rs` only parse requests and shape answers; every decision about
//! claims, replays and events is made here, in one place.
//!
//! A re-run (attempt 2 and up, from `sigma replay`) has a claim record of its own and first
//! looks at the earlier attempts' invocations: one that succeeded, or one still running, is
//! adopted. After failed or cancelled ones, the new invocation covers the closure's actions
//! that succeeded in none of them, and their dependents (`rerun: failed`, the default), or
//! the whole closure (`rerun: all`); with nothing left to run it answers at once.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use sigma_shared::config::ConfigError;
use sigma_shared::events::{Event, EventType, Events};
use sigma_shared::{Attempt as RunAttempt, Rerun};

use crate::api::{DataformApi, Found, Status};
use crate::closure::{ActionView, Report, closure};
use crate::config::{Config, GraphOrigin};
use crate::error::DataformError;
use crate::graph::{Graph, Target};
use crate::idempotency::{Attempt, Claim, Ledger, Record, Ticket, attempt_key, targets_digest};
use crate::name::{Resolution, TableName};
use crate::request::{Closure, Invoke, Loaded, Sample};
use crate::source::{Freshness, GraphSource, Origin};

/// Everything a request needs: where the graph comes from, the API to invoke through, the
/// claim records and the events topic.
pub struct Invoker {
    pub source: GraphSource,
    /// Present when the graph comes from the API: only then can invocations be created.
    api: Option<Arc<DataformApi>>,
    ledger: Ledger,
    events: Events,
}

/// The `/invoke` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Invoked {
    /// The invocation's full name; `null` when nothing was created (a dry run, an empty
    /// closure or nothing left to re-run).
    pub invocation: Option<String>,
    pub compilation_result: Option<String>,
    /// Dataform's state of the invocation: `RUNNING`, `SUCCEEDED`, `FAILED`, `CANCELLED`
    /// or `CANCELING`.
    pub state: Option<String>,
    pub source: Target,
    /// The actions, dependencies first; at most `actions_sample` of them.
    pub actions: Vec<ActionView>,
    /// How many actions there are, however many are listed.
    pub count: usize,
    pub skipped: bool,
    pub dry_run: bool,
    /// This request created nothing: the invocation was created by an earlier one.
    pub replayed: bool,
    /// The attempt whose invocation this is: the request's own, or the earlier one adopted.
    pub attempt: RunAttempt,
}

/// The `POST /invocations/{id}:cancel` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = InvocationCancelled)]
pub struct Cancelled {
    #[serde(flatten)]
    pub status: Status,
    /// `false` when the invocation had already ended, so nothing was asked of Dataform.
    pub cancel_requested: bool,
}

/// What the earlier attempts of a re-run left.
enum Earlier {
    /// An invocation that succeeded or is still running: adopted, nothing is created.
    Adopt(Found, RunAttempt),
    /// Invocations that failed or were cancelled, and the targets that succeeded in them.
    Ended(HashSet<Target>),
    /// No earlier attempt got as far as an invocation.
    Nothing,
}

/// The closure's actions still to run after earlier invocations: those that succeeded in
/// none of them, and everything downstream of those (the closure is ordered dependencies
/// first, so one pass sees every dependency before its dependents).
fn still_to_run(graph: &Graph, nodes: &[u32], succeeded: &HashSet<Target>) -> Vec<u32> {
    let mut again = HashSet::new();
    nodes
        .iter()
        .copied()
        .filter(|&node| {
            let redo = !succeeded.contains(&graph.action(node).target)
                || graph.dependencies(node).iter().any(|d| again.contains(d));
            if redo {
                again.insert(node);
            }
            redo
        })
        .collect()
}

fn resolve(graph: &Graph, name: &TableName) -> Result<u32, DataformError> {
    match name.resolve(graph) {
        Resolution::Found(node) => Ok(node),
        Resolution::Unknown => Err(DataformError::UnknownTable(name.to_string())),
        Resolution::Ambiguous(candidates) => Err(DataformError::AmbiguousTable {
            name: name.to_string(),
            candidates,
        }),
    }
}

impl Invoker {
    pub async fn new(config: Config) -> Result<Self, ConfigError> {
        let (origin, api) = match config.origin {
            GraphOrigin::File(path) => (Origin::File(path), None),
            GraphOrigin::Gcs(object) => (
                Origin::Gcs {
                    client: Box::new(sigma_shared::storage::client().await?),
                    object,
                },
                None,
            ),
            GraphOrigin::Api(settings) => {
                let api = Arc::new(DataformApi::connect(settings).await?);
                (Origin::Api(api.clone()), Some(api))
            }
        };
        let ledger = match config.state_bucket {
            Some(bucket) => Ledger::Gcs {
                client: Box::new(sigma_shared::storage::client().await?),
                bucket,
            },
            None => Ledger::memory(config.ledger_capacity),
        };
        let freshness = Freshness {
            ttl: config.ttl,
            stale: config.stale,
            retry: config.retry,
        };
        Ok(Self {
            source: GraphSource::new(origin, freshness),
            api,
            ledger,
            events: Events::disabled(),
        })
    }

    /// Publishes invocations created and skipped on these events.
    pub fn with_events(self, events: Events) -> Self {
        Self { events, ..self }
    }

    /// Keeps the claim records here instead of where the configuration says (tests point
    /// a ledger at a proxy in front of the emulator).
    pub fn with_ledger(self, ledger: Ledger) -> Self {
        Self { ledger, ..self }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn api(&self) -> Result<&DataformApi, DataformError> {
        self.api
            .as_deref()
            .ok_or(DataformError::InvocationsUnavailable)
    }

    pub async fn closure(&self, request: &Closure) -> Result<Report, DataformError> {
        let snapshot = self.source.current().await?;
        let source = resolve(&snapshot.graph, &request.loaded.table)?;
        let nodes = closure(&snapshot.graph, source);
        let mut report = Report::new(&snapshot.graph, source, &nodes);
        request.sample.apply(&mut report.actions);
        Ok(report)
    }

    pub async fn invoke(&self, request: &Invoke) -> Result<Invoked, DataformError> {
        let mut answer = self.invoke_all(request).await?;
        request.sample.apply(&mut answer.actions);
        Ok(answer)
    }

    /// `/invoke` with every action listed.
    async fn invoke_all(&self, request: &Invoke) -> Result<Invoked, DataformError> {
        let snapshot = self.source.current().await?;
        let source = resolve(&snapshot.graph, &request.loaded.table)?;
        let mut nodes = closure(&snapshot.graph, source);
        let key = request
            .key
            .as_deref()
            .map(|key| attempt_key(key, request.attempt));
        if let (Some(base), false) = (&request.key, request.attempt.is_first() || request.dry_run) {
            match self.earlier(base, request.attempt).await? {
                Earlier::Adopt(found, attempt) => {
                    tracing::info!(
                        invocation = found.name,
                        attempt = attempt.get(),
                        "a re-run adopts an earlier attempt's invocation"
                    );
                    let mut answer = self.answer_for(&snapshot, source, &nodes, request);
                    let targets: Vec<Target> =
                        answer.actions.iter().map(ActionView::target).collect();
                    let digest = Attempt {
                        compilation_result: found.compilation_result.clone(),
                        targets: targets_digest(&targets),
                    };
                    answer.attempt = attempt;
                    return Ok(replay(&snapshot.graph, answer, &digest, found));
                }
                Earlier::Ended(succeeded) if request.rerun == Rerun::Failed => {
                    nodes = still_to_run(&snapshot.graph, &nodes, &succeeded);
                }
                Earlier::Ended(_) => {}
                Earlier::Nothing => {}
            }
        }
        let answer = self.answer_for(&snapshot, source, &nodes, request);
        // An invocation without targets runs the whole project: never create one.
        if answer.skipped || request.dry_run {
            if answer.skipped && !request.dry_run {
                self.publish(EventType::Skipped, &request.loaded, &answer);
            }
            return Ok(answer);
        }
        let api = self.api()?;
        let Some(compilation) = &snapshot.compilation else {
            return Err(DataformError::InvocationsUnavailable);
        };
        let targets: Vec<Target> = answer.actions.iter().map(ActionView::target).collect();
        let attempt = Attempt {
            compilation_result: compilation.clone(),
            targets: targets_digest(&targets),
        };
        let Some(key) = &key else {
            let created = api
                .invoke(compilation, &targets, request.fully_refresh_incremental)
                .await
                .map_err(|failed| failed.error)?;
            return Ok(self.created(request, answer, created.name, created.state));
        };
        let ticket = match self.ledger.claim(key, &attempt).await? {
            Claim::Existing { invocation } => {
                let found = api.invocation(&invocation).await?;
                return Ok(replay(&snapshot.graph, answer, &attempt, found));
            }
            Claim::Acquired(ticket) => ticket,
        };
        // An earlier create under this key failed ambiguously: it may have been carried out.
        match self.search(api, &ticket).await {
            Ok(Some(found)) => {
                tracing::info!(
                    invocation = found.name,
                    "adopting the invocation an earlier, ambiguously failed create made"
                );
                self.ledger
                    .complete(
                        ticket,
                        created_record(&found.name, &found.compilation_result, &found.targets),
                    )
                    .await;
                let answer = replay(&snapshot.graph, answer, &attempt, found);
                self.publish(EventType::Invoked, &request.loaded, &answer);
                return Ok(answer);
            }
            Ok(None) => {}
            Err(e) => {
                self.ledger.release(ticket, false).await;
                return Err(e);
            }
        }
        match api
            .invoke(compilation, &targets, request.fully_refresh_incremental)
            .await
        {
            Ok(created) => {
                self.ledger
                    .complete(ticket, created_record(&created.name, compilation, &targets))
                    .await;
                Ok(self.created(request, answer, created.name, created.state))
            }
            Err(failed) => {
                if failed.ambiguous {
                    tracing::warn!(
                        "the create may have been carried out; the next attempt searches for it: {}",
                        failed.error
                    );
                }
                self.ledger.release(ticket, failed.ambiguous).await;
                Err(failed.error)
            }
        }
    }

    /// The answer for `nodes` before anything is created.
    fn answer_for(
        &self,
        snapshot: &crate::source::Snapshot,
        source: u32,
        nodes: &[u32],
        request: &Invoke,
    ) -> Invoked {
        Invoked {
            invocation: None,
            compilation_result: snapshot.compilation.clone(),
            state: None,
            source: snapshot.graph.action(source).target.clone(),
            actions: nodes
                .iter()
                .map(|&node| ActionView::of(&snapshot.graph, node))
                .collect(),
            count: nodes.len(),
            skipped: nodes.is_empty(),
            dry_run: request.dry_run,
            replayed: false,
            attempt: request.attempt,
        }
    }

    /// The invocations the attempts before `attempt` created under `key`, newest first.
    async fn earlier(&self, key: &str, attempt: RunAttempt) -> Result<Earlier, DataformError> {
        let api = self.api()?;
        let mut succeeded = HashSet::new();
        let mut ended = false;
        for earlier in attempt.up_to().rev().skip(1) {
            let Some((_, Record::Created { invocation, .. })) =
                self.ledger.record(&attempt_key(key, earlier)).await?
            else {
                continue;
            };
            let found = api.invocation(&invocation).await?;
            if matches!(found.state.as_str(), "FAILED" | "CANCELLED") {
                ended = true;
                succeeded.extend(api.succeeded_targets(&invocation).await?);
            } else {
                return Ok(Earlier::Adopt(found, earlier));
            }
        }
        Ok(if ended {
            Earlier::Ended(succeeded)
        } else {
            Earlier::Nothing
        })
    }

    /// Cancels the invocation named by its id or full name, unless it has ended; either way
    /// answers with its state (idempotent, and a cancel racing the invocation's own end is
    /// answered the same way).
    pub async fn cancel(&self, id: &str, sample: Sample) -> Result<Cancelled, DataformError> {
        let api = self.api()?;
        let name = self.invocation_name(id)?;
        let mut cancel_requested = false;
        if !api.status(&name, Sample::NONE).await?.terminal {
            match api.cancel(&name).await {
                Ok(()) => {
                    cancel_requested = true;
                    tracing::info!(invocation = name, "asked Dataform to cancel the invocation");
                }
                Err(refused) => {
                    if !api.status(&name, Sample::NONE).await?.terminal {
                        return Err(refused);
                    }
                }
            }
        }
        Ok(Cancelled {
            status: api.status(&name, sample).await?,
            cancel_requested,
        })
    }

    /// The invocation one of the ticket's earlier attempts created, if any did.
    async fn search(
        &self,
        api: &DataformApi,
        ticket: &Ticket,
    ) -> Result<Option<Found>, DataformError> {
        for attempt in &ticket.earlier {
            if let Some(found) = api.find(attempt).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    fn created(
        &self,
        request: &Invoke,
        mut answer: Invoked,
        name: String,
        state: String,
    ) -> Invoked {
        tracing::info!(
            invocation = name,
            actions = answer.count,
            "invocation created"
        );
        answer.invocation = Some(name);
        answer.state = Some(state);
        self.publish(EventType::Invoked, &request.loaded, &answer);
        answer
    }

    /// The invocation named by its id or by its full name as `/invoke` returns it.
    pub async fn status(&self, id: &str, sample: Sample) -> Result<Status, DataformError> {
        let name = self.invocation_name(id)?;
        self.api()?.status(&name, sample).await
    }

    fn invocation_name(&self, id: &str) -> Result<String, DataformError> {
        let api = self.api()?;
        let prefix = api.invocation_name("");
        let id = id.strip_prefix(&prefix).unwrap_or(id);
        if !invocation_id_ok(id) {
            return Err(DataformError::InvalidRequest(format!(
                "the invocation must be an id or a name under {prefix}"
            )));
        }
        Ok(api.invocation_name(id))
    }

    /// Reports an invocation created, or one not needed, for the loaded object when the
    /// caller named it; replays publish nothing, their first delivery did.
    fn publish(&self, event_type: EventType, loaded: &Loaded, answer: &Invoked) {
        self.events.publish(
            Event::new(event_type, loaded.object.clone())
                .generation(loaded.generation)
                .entity(&answer.source.name)
                .detail(serde_json::json!({
                    "table": answer.source,
                    "invocation": answer.invocation,
                    "compilation_result": answer.compilation_result,
                    "actions": answer.count,
                })),
        );
    }
}

fn created_record(invocation: &str, compilation_result: &str, targets: &[Target]) -> Record {
    Record::Created {
        invocation: invocation.to_owned(),
        compilation_result: compilation_result.to_owned(),
        targets: targets_digest(targets),
        count: targets.len(),
    }
}

/// The answer for an invocation an earlier request created: its own targets (the record
/// keeps only their digest), described by the current graph; the closure just computed
/// when it is the same set, as it almost always is.
fn replay(graph: &Graph, mut answer: Invoked, attempt: &Attempt, found: Found) -> Invoked {
    if targets_digest(&found.targets) != attempt.targets {
        answer.actions = found
            .targets
            .iter()
            .map(|target| ActionView::of_target(graph, target))
            .collect();
    }
    answer.count = answer.actions.len();
    answer.invocation = Some(found.name);
    answer.compilation_result = Some(found.compilation_result);
    answer.state = Some(found.state);
    answer.replayed = true;
    answer
}

fn invocation_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}
