//! The invoke protocol, whatever the deliveries and failures: resolve the loaded table,
//! compute its closure, take its turn in the schedule (`queue.rs`: it waits while an
//! invocation sharing its actions runs), claim the key, create one invocation for its batch,
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
use std::time::Duration;

use serde::Serialize;
use sigma_shared::config::ConfigError;
use sigma_shared::events::{Event, EventType, Events};
use sigma_shared::{Attempt as RunAttempt, Rerun};

use crate::api::{DataformApi, Found, Status};
use crate::closure::{ActionView, Report, closure};
use crate::config::{Config, GraphOrigin};
use crate::error::DataformError;
use crate::graph::{Graph, Target};
use crate::idempotency::{
    Attempt, Ledger, Record, Ticket, attempt_key, record_name, targets_digest, ticket_id,
};
use crate::name::{Resolution, TableName};
use crate::queue::{Turn, now_ms};
use crate::request::{Closure, Invoke, Loaded, Sample};
use crate::schedule::Member;
use crate::source::{Freshness, GraphSource, Origin};

/// Everything a request needs: where the graph comes from, the API to invoke through, the
/// claim records and the events topic.
pub struct Invoker {
    pub source: GraphSource,
    /// Present when the graph comes from the API: only then can invocations be created.
    api: Option<Arc<DataformApi>>,
    pub(crate) ledger: Ledger,
    pub(crate) events: Events,
    /// How long a load waits for siblings before its batch may start.
    settle: Duration,
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
    /// The request's place in the schedule: `GET /tickets/{ticket}` reports its own actions
    /// in the invocation. `null` when nothing was created.
    pub ticket: Option<String>,
}

/// The `/invoke` answer when the load waits for its turn (HTTP 202).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Queued {
    /// Always `true`: poll `GET /tickets/{ticket}` until it is started, then until it ends.
    pub queued: bool,
    pub ticket: String,
    /// The running invocations that share its actions (or `ticket:ID` for a batch being
    /// started); empty while it only waits `DATAFORM_SETTLE_SECONDS` for siblings.
    pub waiting_for: Vec<String>,
    /// How many actions the load needs.
    pub actions: usize,
    pub source: Target,
    pub attempt: RunAttempt,
}

/// What `/invoke` answers.
#[derive(Debug)]
pub enum Answer {
    Invoked(Invoked),
    Queued(Queued),
}

impl axum::response::IntoResponse for Answer {
    fn into_response(self) -> axum::response::Response {
        match self {
            Self::Invoked(invoked) => axum::Json(invoked).into_response(),
            Self::Queued(queued) => {
                (axum::http::StatusCode::ACCEPTED, axum::Json(queued)).into_response()
            }
        }
    }
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
            settle: config.settle,
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

    pub(crate) fn api(&self) -> Result<&DataformApi, DataformError> {
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

    pub async fn invoke(&self, request: &Invoke) -> Result<Answer, DataformError> {
        let mut answer = self.invoke_all(request).await?;
        if let Answer::Invoked(invoked) = &mut answer {
            request.sample.apply(&mut invoked.actions);
        }
        Ok(answer)
    }

    /// `/invoke` with every action listed.
    async fn invoke_all(&self, request: &Invoke) -> Result<Answer, DataformError> {
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
                    answer.ticket = Some(ticket_id(&attempt_key(base, attempt)));
                    return Ok(Answer::Invoked(replay(
                        &snapshot.graph,
                        answer,
                        &digest,
                        found,
                    )));
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
            return Ok(Answer::Invoked(answer));
        }
        let api = self.api()?;
        if snapshot.compilation.is_none() {
            return Err(DataformError::InvocationsUnavailable);
        }
        // Without a key of the caller's the request still takes its turn, under a key of
        // its own.
        let key = key.unwrap_or_else(|| format!("sigma/ticket/{:032x}", rand::random::<u128>()));
        let ticket = ticket_id(&key);
        let mut answer = answer;
        answer.ticket = Some(ticket.clone());
        if let Some((_, Record::Created { invocation, .. })) =
            self.ledger.read::<Record>(&record_name(&key)).await?
        {
            let found = api.invocation(&invocation).await?;
            answer.invocation = Some(found.name);
            answer.compilation_result = Some(found.compilation_result);
            answer.state = Some(found.state);
            answer.replayed = true;
            return Ok(Answer::Invoked(answer));
        }
        let now = now_ms();
        let member = Member {
            ticket: ticket.clone(),
            key,
            table: answer.source.clone(),
            only: (!request.attempt.is_first())
                .then(|| answer.actions.iter().map(ActionView::target).collect()),
            object: request.loaded.object.clone(),
            generation: request.loaded.generation,
            fully_refresh_incremental: request.fully_refresh_incremental,
            queued_at: now,
            ready_at: now + self.settle.as_millis() as u64,
        };
        let (turn, admitted) = self.take_turn(&snapshot, Some(&member), &ticket).await?;
        match turn {
            Turn::Started {
                invocation,
                state,
                created,
            } => {
                answer.invocation = Some(invocation);
                answer.state = Some(state);
                answer.replayed = !created;
                Ok(Answer::Invoked(answer))
            }
            Turn::Waiting { waiting_for } => {
                if admitted {
                    tracing::info!(
                        ticket,
                        waiting_for = waiting_for.join(","),
                        "queued behind overlapping invocations, or to settle"
                    );
                    self.publish_queued(&member, &waiting_for, answer.count);
                }
                self.record_queued(&member).await?;
                Ok(Answer::Queued(Queued {
                    queued: true,
                    ticket,
                    waiting_for,
                    actions: answer.count,
                    source: answer.source,
                    attempt: request.attempt,
                }))
            }
            Turn::Starting => Err(DataformError::InvocationInProgress),
            Turn::Absent => Err(DataformError::ScheduleBusy),
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
            ticket: None,
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
        if !api.status(&name, Sample::NONE, None).await?.terminal {
            match api.cancel(&name).await {
                Ok(()) => {
                    cancel_requested = true;
                    tracing::info!(invocation = name, "asked Dataform to cancel the invocation");
                }
                Err(refused) => {
                    if !api.status(&name, Sample::NONE, None).await?.terminal {
                        return Err(refused);
                    }
                }
            }
        }
        Ok(Cancelled {
            status: api.status(&name, sample, None).await?,
            cancel_requested,
        })
    }

    /// The invocation one of the ticket's earlier attempts created, if any did.
    pub(crate) async fn search(
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

    /// The invocation named by its id or by its full name as `/invoke` returns it.
    pub async fn status(&self, id: &str, sample: Sample) -> Result<Status, DataformError> {
        let name = self.invocation_name(id)?;
        self.api()?.status(&name, sample, None).await
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
