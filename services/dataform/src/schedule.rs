//! The schedule: which loads wait, and which batches of loads have been given an
//! invocation, as one record in the state bucket.
//!
//! Every decision to queue a load or to start a batch is a replacement of this one record at
//! the generation it was read at, so instances deciding at the same time cannot both start
//! invocations sharing an action: one write wins, the others read again and decide on what
//! won. The record stays small: a load is kept as its table (its closure is recomputed from
//! the graph when needed), never as its list of actions, which can run to 100,000.
//!
//! A batch's invocation is created under the ledger key of its first member, with the
//! claim, search and record protocol of [`crate::idempotency`]: that is the lock that holds
//! across instances, and it survives a creator that dies half-way.

use serde::{Deserialize, Serialize};
use sigma_shared::{Generation, ObjectRef};

use crate::closure::{closure, dependencies_first};
use crate::coalesce::union;
use crate::graph::{Graph, Target};

/// The schedule's record in the state bucket (or in memory without one).
pub const SCHEDULE: &str = "dataform/schedule.json";

/// One load's request to run its closure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// [`crate::idempotency::ticket_id`] of `key`.
    pub ticket: String,
    /// The ledger key of the request (with its attempt).
    pub key: String,
    /// The loaded table.
    pub table: Target,
    /// A re-run's actions, when it covers only part of the closure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<Target>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,
    #[serde(default)]
    pub fully_refresh_incremental: bool,
    /// Unix milliseconds.
    pub queued_at: u64,
    /// Unix milliseconds: the end of its settle window, or `queued_at` once it has waited
    /// behind a blocker.
    pub ready_at: u64,
}

impl Member {
    /// Its actions in `graph`, sorted by node: the closure of its table, or the re-run's
    /// part of it. Actions the graph no longer has are left out (they cannot run).
    pub fn nodes(&self, graph: &Graph) -> Vec<u32> {
        let mut nodes = match (&self.only, graph.node(&self.table)) {
            (Some(only), _) => only.iter().filter_map(|t| graph.node(t)).collect(),
            (None, Some(source)) => closure(graph, source),
            (None, None) => Vec::new(),
        };
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }
}

/// Loads given one invocation together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The ledger key its invocation is created and recorded under: its first member's.
    pub key: String,
    pub members: Vec<Member>,
    /// Unix milliseconds.
    pub formed_at: u64,
}

impl Batch {
    /// The union of its members' actions, sorted by node.
    pub fn nodes(&self, graph: &Graph) -> Vec<u32> {
        let sets: Vec<Vec<u32>> = self.members.iter().map(|m| m.nodes(graph)).collect();
        union(sets.iter().map(Vec::as_slice))
    }

    /// The union of its members' actions, dependencies first.
    pub fn targets(&self, graph: &Graph) -> Vec<Target> {
        dependencies_first(graph, &self.nodes(graph))
            .into_iter()
            .map(|node| graph.action(node).target.clone())
            .collect()
    }

    pub fn fully_refresh_incremental(&self) -> bool {
        self.members.iter().any(|m| m.fully_refresh_incremental)
    }
}

/// Waiting loads in arrival order, and the batches not yet seen to have ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    #[serde(default)]
    pub waiting: Vec<Member>,
    #[serde(default)]
    pub batches: Vec<Batch>,
}

/// Where a ticket is in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Waiting(usize),
    InBatch(usize),
    Absent,
}

impl Schedule {
    pub fn position(&self, ticket: &str) -> Position {
        if let Some(n) = self.waiting.iter().position(|m| m.ticket == ticket) {
            return Position::Waiting(n);
        }
        match self
            .batches
            .iter()
            .position(|b| b.members.iter().any(|m| m.ticket == ticket))
        {
            Some(n) => Position::InBatch(n),
            None => Position::Absent,
        }
    }

    /// Moves the waiting loads at `indices` (ascending) into a new batch.
    pub fn form(&mut self, indices: &[usize], now: u64) -> &Batch {
        let mut members = Vec::with_capacity(indices.len());
        for &n in indices.iter().rev() {
            members.push(self.waiting.remove(n));
        }
        members.reverse();
        self.batches.push(Batch {
            key: members[0].key.clone(),
            members,
            formed_at: now,
        });
        self.batches.last().expect("just pushed")
    }
}
