//! Batch coalescing: a load whose actions overlap a running invocation waits for it to end,
//! and everything waiting then starts as one invocation.
//!
//! Two invocations running one incremental table at once can insert its rows twice; two
//! running DML on one table fail BigQuery's concurrent-update check; and an action that was
//! already running when a load landed read the old data. So every `/invoke` takes a ticket
//! and goes through the [schedule](crate::schedule), and no batch starts while an
//! invocation sharing one of its actions runs ([`crate::coalesce`] decides).
//!
//! Nothing runs in the background (Cloud Run may stop an idle instance's CPU): the schedule
//! moves on when a request looks at it, `/invoke` or a ticket poll. Whoever first sees that
//! a blocking invocation ended starts the next batch; the claim under the batch's key makes
//! sure exactly one request creates its invocation, across instances and crashes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use serde::Serialize;
use sigma_shared::HttpError;
use sigma_shared::events::{Event, EventType};

use crate::api::{FailedAction, Found, Status};
use crate::coalesce::{self, Waiting};
use crate::error::DataformError;
use crate::graph::{Graph, Target};
use crate::idempotency::{Attempt, Claim, Record, record_name, targets_digest, ticket_record};
use crate::invoke::Invoker;
use crate::request::Sample;
use crate::schedule::{Batch, Member, Position, SCHEDULE, Schedule};
use crate::source::Snapshot;

/// How many times a decision is made again after another instance's write won.
const ROUNDS: usize = 8;

/// Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// What a batch is doing, as the ledger and Dataform tell.
enum BatchState {
    /// Nobody is creating its invocation: the next request that sees it does.
    Unstarted,
    /// A request holds the claim and is creating it.
    Starting,
    Running(Found),
    Ended(Found),
}

/// Where a ticket stands once the schedule has moved on.
#[derive(Debug)]
pub enum Turn {
    Started {
        invocation: String,
        state: String,
        /// This request created the invocation.
        created: bool,
    },
    /// Another request is creating its batch's invocation.
    Starting,
    /// Behind these invocations (or, before they are created, `ticket:` their first
    /// ticket); empty while it settles.
    Waiting { waiting_for: Vec<String> },
    /// Not in the schedule.
    Absent,
}

/// The schedule as written, with what each batch is doing and who waits for whom.
struct Advanced {
    schedule: Schedule,
    states: Vec<BatchState>,
    blocked: HashMap<String, Vec<String>>,
    /// The ticket was added to the schedule by this request.
    admitted: bool,
}

/// The `GET /tickets/{id}` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TicketStatus {
    pub ticket: String,
    /// `QUEUED` (waiting for overlapping invocations, or settling), `STARTING`, `RUNNING`,
    /// then `SUCCEEDED`, `FAILED` or `CANCELLED`: judged by the ticket's own actions, so a
    /// load whose actions all succeeded has succeeded even when another load's action in the
    /// same invocation failed.
    pub state: String,
    /// True once the state will not change: poll until it is.
    pub terminal: bool,
    /// The loaded table; `null` for an invocation recorded before tickets existed (its
    /// actions are then all the invocation's).
    pub source: Option<Target>,
    /// What it waits for: invocation names, or `ticket:ID` for a batch being started.
    pub waiting_for: Vec<String>,
    /// The invocation that runs its actions, once started.
    pub invocation: Option<String>,
    /// Dataform's state of that invocation.
    pub invocation_state: Option<String>,
    /// How many of the load's own actions there are.
    pub count: usize,
    /// The load's own actions per state in the invocation.
    pub actions: BTreeMap<String, usize>,
    /// The load's own failed actions, at most `actions_sample` of them.
    pub failed: Vec<FailedAction>,
}

/// The `POST /tickets/{id}:cancel` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TicketCancelled {
    #[serde(flatten)]
    pub status: TicketStatus,
    /// A waiting ticket was withdrawn, or the invocation that only it needed was asked to
    /// cancel; `false` when it had ended, or when its invocation also serves other loads
    /// (which it goes on running for).
    pub cancel_requested: bool,
}

/// The ticket's own outcome from its actions' states.
fn outcome(status: &Status) -> &'static str {
    if !status.terminal {
        return "RUNNING";
    }
    let unfinished: usize = status
        .actions
        .iter()
        .filter(|(state, _)| !matches!(state.as_str(), "SUCCEEDED" | "DISABLED"))
        .map(|(_, n)| n)
        .sum();
    match status.state.as_str() {
        _ if unfinished == 0 && (status.count > 0 || status.state == "SUCCEEDED") => "SUCCEEDED",
        "CANCELLED" => "CANCELLED",
        _ => "FAILED",
    }
}

/// The decision [`Invoker::advance`] writes.
struct Decided {
    /// What each batch left in the schedule is doing (a batch formed now: `Unstarted`).
    states: Vec<BatchState>,
    /// Batches whose invocations ended, taken out of the schedule.
    ended: Vec<(Batch, Found)>,
    /// Each waiting ticket's blockers, by invocation name (or `ticket:ID` while unnamed).
    blocked: HashMap<String, Vec<String>>,
    changed: bool,
}

/// Takes the ended batches out, starts the waiting loads [`coalesce::plan`] says may start,
/// and marks the loads that waited behind a blocker as settled (they start as soon as it
/// ends). Pure: what instances decide depends only on the record and what Dataform said.
fn decide(schedule: &mut Schedule, states: Vec<BatchState>, graph: &Graph, now: u64) -> Decided {
    let mut ended = Vec::new();
    let mut kept = Vec::new();
    let mut kept_states = Vec::new();
    for (batch, state) in schedule.batches.drain(..).zip(states) {
        match state {
            BatchState::Ended(found) => ended.push((batch, found)),
            state => {
                kept.push(batch);
                kept_states.push(state);
            }
        }
    }
    schedule.batches = kept;
    let mut changed = !ended.is_empty();
    let busy: Vec<Vec<u32>> = schedule
        .batches
        .iter()
        .zip(&kept_states)
        .map(|(batch, state)| match state {
            // Running: exactly what Dataform runs, whatever the graph has become since.
            BatchState::Running(found) => {
                let mut nodes: Vec<u32> =
                    found.targets.iter().filter_map(|t| graph.node(t)).collect();
                nodes.sort_unstable();
                nodes.dedup();
                nodes
            }
            _ => batch.nodes(graph),
        })
        .collect();
    let names: Vec<String> = schedule
        .batches
        .iter()
        .zip(&kept_states)
        .map(|(batch, state)| match state {
            BatchState::Running(found) => found.name.clone(),
            _ => format!("ticket:{}", batch.members[0].ticket),
        })
        .collect();
    let waiting_nodes: Vec<Vec<u32>> = schedule.waiting.iter().map(|m| m.nodes(graph)).collect();
    let waiting: Vec<Waiting> = schedule
        .waiting
        .iter()
        .zip(&waiting_nodes)
        .map(|(member, nodes)| Waiting {
            nodes,
            ready: now >= member.ready_at,
        })
        .collect();
    let running: Vec<&[u32]> = busy.iter().map(Vec::as_slice).collect();
    let plan = coalesce::plan(&running, &waiting);
    let mut blocked = HashMap::new();
    for (member, by) in schedule.waiting.iter_mut().zip(&plan.blocked_by) {
        blocked.insert(
            member.ticket.clone(),
            by.iter().map(|&r| names[r].clone()).collect(),
        );
        if !by.is_empty() && member.ready_at > member.queued_at {
            member.ready_at = member.queued_at;
            changed = true;
        }
    }
    if !plan.start.is_empty() {
        schedule.form(&plan.start, now);
        kept_states.push(BatchState::Unstarted);
        changed = true;
    }
    Decided {
        states: kept_states,
        ended,
        blocked,
        changed,
    }
}

/// Waits a little, more each round, at random: instances that lost the same write do not
/// all come back at once.
async fn contended(round: usize) {
    let millis = rand::random_range(10..50) * round as u64;
    tokio::time::sleep(Duration::from_millis(millis)).await;
}

fn ticket_id_ok(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Invoker {
    /// Adds `admit` to the schedule unless it is there, moves the schedule on (ends what
    /// Dataform says ended, starts what may start), creates every batch invocation nobody
    /// is creating, and tells where `ticket` stands.
    pub(crate) async fn take_turn(
        &self,
        snapshot: &Snapshot,
        admit: Option<&Member>,
        ticket: &str,
    ) -> Result<(Turn, bool), DataformError> {
        let advanced = self.advance(snapshot, admit).await?;
        let mut own = None;
        for (batch, state) in advanced.schedule.batches.iter().zip(&advanced.states) {
            if !matches!(state, BatchState::Unstarted) {
                continue;
            }
            let mine = batch.members.iter().any(|m| m.ticket == ticket);
            match self.start_batch(snapshot, batch).await {
                Ok(started) if mine => own = Some(started),
                Ok(_) => {}
                Err(e) if mine => return Err(e),
                Err(e) => tracing::warn!(batch = batch.key, "cannot start a waiting batch: {e}"),
            }
        }
        let turn = match advanced.schedule.position(ticket) {
            Position::Waiting(_) => Turn::Waiting {
                waiting_for: advanced.blocked.get(ticket).cloned().unwrap_or_default(),
            },
            Position::InBatch(n) => match (own, &advanced.states[n]) {
                (Some(Some(turn)), _) => turn,
                (Some(None), _) | (None, BatchState::Starting | BatchState::Unstarted) => {
                    Turn::Starting
                }
                (None, BatchState::Running(found) | BatchState::Ended(found)) => Turn::Started {
                    invocation: found.name.clone(),
                    state: found.state.clone(),
                    created: false,
                },
            },
            Position::Absent => Turn::Absent,
        };
        Ok((turn, advanced.admitted))
    }

    /// One decision on the schedule, written at the generation it was read at; made again
    /// on what won when another instance wrote first.
    async fn advance(
        &self,
        snapshot: &Snapshot,
        admit: Option<&Member>,
    ) -> Result<Advanced, DataformError> {
        let graph = &snapshot.graph;
        for round in 0..ROUNDS {
            if round > 0 {
                contended(round).await;
            }
            let (version, mut schedule) = match self.ledger.read::<Schedule>(SCHEDULE).await? {
                Some((version, schedule)) => (Some(version), schedule),
                None => (None, Schedule::default()),
            };
            let mut changed = false;
            let mut admitted = false;
            if let Some(member) = admit
                && schedule.position(&member.ticket) == Position::Absent
            {
                schedule.waiting.push(member.clone());
                changed = true;
                admitted = true;
            }
            let states = join_all(schedule.batches.iter().map(|b| self.batch_state(b)))
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            let decided = decide(&mut schedule, states, graph, now_ms());
            changed |= decided.changed;
            if changed
                && self
                    .ledger
                    .write(SCHEDULE, &schedule, version)
                    .await?
                    .is_err()
            {
                continue;
            }
            for (batch, found) in &decided.ended {
                tracing::info!(
                    invocation = found.name,
                    state = found.state,
                    tickets = batch.members.len(),
                    "a batch's invocation ended"
                );
                self.record_started(batch, found, &targets_digest(&found.targets))
                    .await;
            }
            return Ok(Advanced {
                schedule,
                states: decided.states,
                blocked: decided.blocked,
                admitted,
            });
        }
        Err(DataformError::ScheduleBusy)
    }

    async fn batch_state(&self, batch: &Batch) -> Result<BatchState, DataformError> {
        match self.ledger.read::<Record>(&record_name(&batch.key)).await? {
            Some((_, Record::Created { invocation, .. })) => {
                let found = self.api()?.invocation(&invocation).await?;
                Ok(
                    if matches!(found.state.as_str(), "SUCCEEDED" | "FAILED" | "CANCELLED") {
                        BatchState::Ended(found)
                    } else {
                        BatchState::Running(found)
                    },
                )
            }
            Some((_, record)) if record.is_live_claim() => Ok(BatchState::Starting),
            _ => Ok(BatchState::Unstarted),
        }
    }

    /// Creates the batch's invocation under its key, unless it exists (then answers it) or
    /// another request is creating it (`None`).
    async fn start_batch(
        &self,
        snapshot: &Snapshot,
        batch: &Batch,
    ) -> Result<Option<Turn>, DataformError> {
        let api = self.api()?;
        let Some(compilation) = &snapshot.compilation else {
            return Err(DataformError::InvocationsUnavailable);
        };
        let targets = batch.targets(&snapshot.graph);
        // An invocation without targets runs the whole project: never create one.
        if targets.is_empty() {
            return Err(DataformError::UnknownTable(
                batch.members[0].table.to_string(),
            ));
        }
        let attempt = Attempt {
            compilation_result: compilation.clone(),
            targets: targets_digest(&targets),
        };
        let ticket = match self.ledger.claim(&batch.key, &attempt).await {
            Ok(Claim::Acquired(ticket)) => ticket,
            Ok(Claim::Existing { invocation }) => {
                let found = api.invocation(&invocation).await?;
                return Ok(Some(Turn::Started {
                    invocation,
                    state: found.state,
                    created: false,
                }));
            }
            Err(DataformError::InvocationInProgress) => return Ok(None),
            Err(e) => return Err(e),
        };
        // An earlier create under this key failed ambiguously: it may have been carried out.
        let adopted = match self.search(api, &ticket).await {
            Ok(found) => found,
            Err(e) => {
                self.ledger.release(ticket, false).await;
                return Err(e);
            }
        };
        let (found, created) = match adopted {
            Some(found) => {
                tracing::info!(
                    invocation = found.name,
                    "adopting the invocation an earlier, ambiguously failed create made"
                );
                (found, false)
            }
            None => match api
                .invoke(compilation, &targets, batch.fully_refresh_incremental())
                .await
            {
                Ok(made) => (
                    Found {
                        name: made.name,
                        state: made.state,
                        compilation_result: compilation.clone(),
                        targets,
                    },
                    true,
                ),
                Err(failed) => {
                    if failed.ambiguous {
                        tracing::warn!(
                            "the create may have been carried out; the next attempt searches for it: {}",
                            failed.error
                        );
                    }
                    self.ledger.release(ticket, failed.ambiguous).await;
                    // Refused for good: the batch must not block overlapping loads forever.
                    // Its members' polls answer the refusal and queue them again.
                    if !failed.ambiguous && !failed.error.retryable() {
                        self.drop_batch(&batch.key).await;
                    }
                    return Err(failed.error);
                }
            },
        };
        let digest = targets_digest(&found.targets);
        self.ledger
            .complete(
                ticket,
                Record::created(&found, &digest, Some(&batch.members[0])),
            )
            .await;
        tracing::info!(
            invocation = found.name,
            actions = found.targets.len(),
            tickets = batch.members.len(),
            "invocation created"
        );
        self.publish_invoked(batch, &found);
        self.record_started(batch, &found, &digest).await;
        Ok(Some(Turn::Started {
            invocation: found.name,
            state: found.state,
            created,
        }))
    }

    /// Takes a batch whose invocation Dataform refused out of the schedule (best effort).
    async fn drop_batch(&self, key: &str) {
        for round in 0..ROUNDS {
            if round > 0 {
                contended(round).await;
            }
            let Ok(Some((version, mut schedule))) = self.ledger.read::<Schedule>(SCHEDULE).await
            else {
                return;
            };
            schedule.batches.retain(|b| b.key != key);
            match self.ledger.write(SCHEDULE, &schedule, Some(version)).await {
                Ok(Ok(_)) => return,
                Ok(Err(_)) => {}
                Err(e) => {
                    tracing::warn!(batch = key, "cannot drop a refused batch: {e}");
                    return;
                }
            }
        }
    }

    /// Records the batch's invocation under each member's own key still queued, so that
    /// duplicates, tickets and re-runs find it after the batch leaves the schedule. Best
    /// effort: a member left queued is queued again by its next poll, and runs again.
    async fn record_started(&self, batch: &Batch, found: &Found, digest: &str) {
        join_all(
            batch
                .members
                .iter()
                .filter(|m| m.key != batch.key)
                .map(|member| async {
                    let name = record_name(&member.key);
                    let expected = match self.ledger.read::<Record>(&name).await {
                        Ok(Some((version, Record::Queued { .. }))) => Some(version),
                        Ok(None) => None,
                        Ok(Some(_)) => return,
                        Err(e) => {
                            tracing::warn!(ticket = member.ticket, "cannot read the ticket: {e}");
                            return;
                        }
                    };
                    let record = Record::created(found, digest, Some(member));
                    if let Err(e) = self.ledger.write(&name, &record, expected).await {
                        tracing::warn!(
                            ticket = member.ticket,
                            "cannot record the ticket's invocation: {e}"
                        );
                    }
                }),
        )
        .await;
    }

    fn publish_invoked(&self, batch: &Batch, found: &Found) {
        let first = &batch.members[0];
        let tickets: Vec<serde_json::Value> = batch
            .members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "ticket": m.ticket,
                    "table": m.table,
                    "object": m.object.as_ref().map(ToString::to_string),
                    "generation": m.generation,
                })
            })
            .collect();
        self.events.publish(
            Event::new(EventType::Invoked, first.object.clone())
                .generation(first.generation)
                .entity(&first.table.name)
                .detail(serde_json::json!({
                    "table": first.table,
                    "invocation": found.name,
                    "compilation_result": found.compilation_result,
                    "actions": found.targets.len(),
                    "tickets": tickets,
                })),
        );
    }

    pub(crate) fn publish_queued(&self, member: &Member, waiting_for: &[String], count: usize) {
        self.events.publish(
            Event::new(EventType::Queued, member.object.clone())
                .generation(member.generation)
                .entity(&member.table.name)
                .detail(serde_json::json!({
                    "table": member.table,
                    "ticket": member.ticket,
                    "waiting_for": waiting_for,
                    "actions": count,
                })),
        );
    }

    /// Keeps a waiting ticket's record, so that a duplicate request and the ticket's polls
    /// find it.
    pub(crate) async fn record_queued(&self, member: &Member) -> Result<(), DataformError> {
        let name = record_name(&member.key);
        let expected = match self.ledger.read::<Record>(&name).await? {
            None => None,
            Some((_, Record::Queued { .. } | Record::Created { .. })) => return Ok(()),
            Some((version, _)) => Some(version),
        };
        let queued = Record::Queued {
            ticket: member.clone(),
        };
        // Lost to a concurrent writer: what it wrote stands.
        let _ = self.ledger.write(&name, &queued, expected).await?;
        Ok(())
    }

    /// `GET /tickets/{id}`: where the ticket stands, moving the schedule on first.
    pub async fn ticket(&self, id: &str, sample: Sample) -> Result<TicketStatus, DataformError> {
        let (member, recorded) = self.ticket_member(id).await?;
        let snapshot = self.source.current().await?;
        let turn = match (recorded, &member) {
            (Some(invocation), _) => Turn::Started {
                state: String::new(),
                invocation,
                created: false,
            },
            (None, Some(member)) => {
                let (mut turn, _) = self.take_turn(&snapshot, None, id).await?;
                if let Turn::Absent = turn {
                    tracing::warn!(
                        ticket = id,
                        "a ticket lost from the schedule is queued again"
                    );
                    turn = self.take_turn(&snapshot, Some(member), id).await?.0;
                }
                turn
            }
            (None, None) => return Err(DataformError::InvocationInProgress),
        };
        self.ticket_status(&snapshot, id, member.as_ref(), turn, sample)
            .await
    }

    /// The ticket's load, and its invocation when its record names one.
    async fn ticket_member(
        &self,
        id: &str,
    ) -> Result<(Option<Member>, Option<String>), DataformError> {
        if !ticket_id_ok(id) {
            return Err(DataformError::InvalidRequest(
                "a ticket is the 64 lowercase hex digits /invoke answered".into(),
            ));
        }
        match self.ledger.read::<Record>(&ticket_record(id)).await? {
            Some((
                _,
                Record::Created {
                    invocation, ticket, ..
                },
            )) => Ok((ticket, Some(invocation))),
            Some((_, Record::Queued { ticket })) => Ok((Some(ticket), None)),
            // A request creating its own batch's invocation: the schedule has its load.
            Some(_) => {
                let schedule = self
                    .ledger
                    .read::<Schedule>(SCHEDULE)
                    .await?
                    .map(|(_, s)| s)
                    .unwrap_or_default();
                let member = schedule
                    .batches
                    .iter()
                    .flat_map(|b| &b.members)
                    .find(|m| m.ticket == id)
                    .cloned()
                    .ok_or(DataformError::InvocationInProgress)?;
                Ok((Some(member), None))
            }
            None => Err(DataformError::UnknownTicket(id.to_owned())),
        }
    }

    async fn ticket_status(
        &self,
        snapshot: &Snapshot,
        id: &str,
        member: Option<&Member>,
        turn: Turn,
        sample: Sample,
    ) -> Result<TicketStatus, DataformError> {
        let mut status = TicketStatus {
            ticket: id.to_owned(),
            state: "QUEUED".into(),
            terminal: false,
            source: member.map(|m| m.table.clone()),
            waiting_for: Vec::new(),
            invocation: None,
            invocation_state: None,
            count: 0,
            actions: BTreeMap::new(),
            failed: Vec::new(),
        };
        match turn {
            Turn::Waiting { waiting_for } => status.waiting_for = waiting_for,
            Turn::Starting | Turn::Absent => status.state = "STARTING".into(),
            Turn::Started { invocation, .. } => {
                let own: Option<HashSet<Target>> = member.map(|member| {
                    member
                        .nodes(&snapshot.graph)
                        .into_iter()
                        .map(|node| snapshot.graph.action(node).target.clone())
                        .collect()
                });
                let progress = self
                    .api()?
                    .status(&invocation, sample, own.as_ref())
                    .await?;
                status.state = outcome(&progress).into();
                status.terminal = progress.terminal;
                status.invocation = Some(invocation);
                status.invocation_state = Some(progress.state);
                status.count = progress.count;
                status.actions = progress.actions;
                status.failed = progress.failed;
            }
        }
        Ok(status)
    }

    /// `POST /tickets/{id}:cancel`: withdraws a waiting ticket; cancels a started one's
    /// invocation only when no other load shares it.
    pub async fn cancel_ticket(
        &self,
        id: &str,
        sample: Sample,
    ) -> Result<TicketCancelled, DataformError> {
        let (member, _) = self.ticket_member(id).await?;
        let snapshot = self.source.current().await?;
        for round in 0..ROUNDS {
            if round > 0 {
                contended(round).await;
            }
            let Some(member) = &member else { break };
            let Some((version, mut schedule)) = self.ledger.read::<Schedule>(SCHEDULE).await?
            else {
                break;
            };
            match schedule.position(id) {
                Position::Waiting(n) => {
                    schedule.waiting.remove(n);
                    if self
                        .ledger
                        .write(SCHEDULE, &schedule, Some(version))
                        .await?
                        .is_err()
                    {
                        continue;
                    }
                    self.withdraw(member).await?;
                    let mut status = self
                        .ticket_status(&snapshot, id, Some(member), Turn::Absent, sample)
                        .await?;
                    status.state = "CANCELLED".into();
                    status.terminal = true;
                    return Ok(TicketCancelled {
                        status,
                        cancel_requested: true,
                    });
                }
                Position::InBatch(n) if schedule.batches[n].members.len() == 1 => {
                    if let Some((_, Record::Created { invocation, .. })) = self
                        .ledger
                        .read::<Record>(&record_name(&schedule.batches[n].key))
                        .await?
                    {
                        let cancelled = self.cancel(&invocation, Sample::NONE).await?;
                        let status = self
                            .ticket_status(
                                &snapshot,
                                id,
                                Some(member),
                                Turn::Started {
                                    invocation,
                                    state: String::new(),
                                    created: false,
                                },
                                sample,
                            )
                            .await?;
                        return Ok(TicketCancelled {
                            status,
                            cancel_requested: cancelled.cancel_requested,
                        });
                    }
                    break;
                }
                _ => break,
            }
        }
        Ok(TicketCancelled {
            status: self.ticket(id, sample).await?,
            cancel_requested: false,
        })
    }

    /// A withdrawn ticket's record is released, so that a re-run of its load queues again.
    async fn withdraw(&self, member: &Member) -> Result<(), DataformError> {
        let name = record_name(&member.key);
        if let Some((version, Record::Queued { .. })) = self.ledger.read::<Record>(&name).await? {
            let released = Record::Released {
                attempts: Vec::new(),
            };
            let _ = self.ledger.write(&name, &released, Some(version)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> Graph {
        Graph::from_compiled_json(include_bytes!("../tests/fixtures/sample_v3.compiled.json"))
            .unwrap()
    }

    fn member(n: u32, table: &str, ready_at: u64) -> Member {
        Member {
            ticket: format!("t{n}"),
            key: format!("k{n}"),
            table: Target::new("acme-dwh-prod", "raw", table),
            only: None,
            object: None,
            generation: None,
            fully_refresh_incremental: false,
            queued_at: 0,
            ready_at,
        }
    }

    #[test]
    fn a_load_behind_a_running_batch_counts_as_settled_and_starts_the_moment_it_ends() {
        let graph = graph();
        let running = Batch {
            key: "k1".into(),
            members: vec![member(1, "lkp_fechas", 0)],
            formed_at: 0,
        };
        let found = |state: &str| Found {
            name: "inv-1".into(),
            state: state.into(),
            compilation_result: "c".into(),
            targets: running.targets(&graph),
        };
        let mut schedule = Schedule {
            waiting: vec![member(2, "lkp_fechas", 1_000_000)],
            batches: vec![running.clone()],
        };

        let decided = decide(
            &mut schedule,
            vec![BatchState::Running(found("RUNNING"))],
            &graph,
            10,
        );
        assert_eq!(decided.blocked["t2"], ["inv-1"]);
        assert_eq!(schedule.waiting[0].ready_at, 0, "waiting settles it");
        assert!(decided.changed);

        let decided = decide(
            &mut schedule,
            vec![BatchState::Ended(found("SUCCEEDED"))],
            &graph,
            20,
        );
        assert_eq!(decided.ended.len(), 1);
        assert!(schedule.waiting.is_empty());
        assert_eq!(schedule.batches.len(), 1);
        assert_eq!(schedule.batches[0].key, "k2");
        assert!(matches!(decided.states[..], [BatchState::Unstarted]));
    }

    #[test]
    fn a_load_with_nothing_in_its_way_starts_when_its_settle_window_ends_with_its_siblings() {
        let graph = graph();
        let mut schedule = Schedule {
            waiting: vec![member(1, "lkp_fechas", 100), member(2, "agentes", 150)],
            batches: Vec::new(),
        };
        let decided = decide(&mut schedule, Vec::new(), &graph, 99);
        assert!(!decided.changed, "nothing to write while it settles");
        assert!(decided.blocked.values().all(Vec::is_empty));

        let decided = decide(&mut schedule, Vec::new(), &graph, 100);
        assert!(decided.changed);
        assert_eq!(schedule.batches.len(), 1);
        assert_eq!(schedule.batches[0].members.len(), 2, "the sibling joins");
        assert!(schedule.waiting.is_empty());
    }

    #[test]
    fn a_batch_still_being_created_blocks_by_its_members_actions() {
        let graph = graph();
        let mut schedule = Schedule {
            waiting: vec![member(2, "lkp_fechas", 0)],
            batches: vec![Batch {
                key: "k1".into(),
                members: vec![member(1, "siniestros", 0)],
                formed_at: 0,
            }],
        };
        let decided = decide(&mut schedule, vec![BatchState::Starting], &graph, 10);
        assert_eq!(decided.blocked["t2"], ["ticket:t1"]);
        assert_eq!(schedule.batches.len(), 1);
    }
}
