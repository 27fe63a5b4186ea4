//! Every runnable action that depends, directly or transitively, on one node, in an order
//! that runs dependencies first.
//!
//! Disabled actions are traversed and reported: Dataform ends them `DISABLED`, which counts
//! as success, so their enabled dependents must still be in the invocation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use crate::graph::{Graph, Kind, Target};

/// The runnable dependents of `source` (never `source` itself), dependencies first, ties
/// broken by target so the same graph always gives the same order.
pub fn closure(graph: &Graph, source: u32) -> Vec<u32> {
    let mut seen = vec![false; graph.len()];
    seen[source as usize] = true;
    let mut reached = vec![source];
    let mut next = 0;
    while next < reached.len() {
        let node = reached[next];
        next += 1;
        for &dependent in graph.dependents(node) {
            if !seen[dependent as usize] {
                seen[dependent as usize] = true;
                reached.push(dependent);
            }
        }
    }
    dependencies_first(graph, &reached[1..])
        .into_iter()
        .filter(|&node| graph.action(node).kind.is_runnable())
        .collect()
}

/// `nodes` ordered so that each comes after its dependencies among them, ties broken by
/// target: the order a union of closures is listed in.
pub fn dependencies_first(graph: &Graph, nodes: &[u32]) -> Vec<u32> {
    const OUTSIDE: u32 = u32::MAX;
    // One slot per node: OUTSIDE, or how many of its dependencies among `nodes` have not
    // been ordered yet. Dense arrays keep a 100,000-node closure in cache.
    let mut pending = vec![OUTSIDE; graph.len()];
    for &node in nodes {
        pending[node as usize] = 0;
    }
    let mut ready = BinaryHeap::new();
    for &node in nodes {
        let inside = graph
            .dependencies(node)
            .iter()
            .filter(|&&d| pending[d as usize] != OUTSIDE)
            .count();
        pending[node as usize] = inside as u32;
        if inside == 0 {
            ready.push(Reverse((graph.rank(node), node)));
        }
    }
    let mut ordered = Vec::with_capacity(nodes.len());
    while let Some(Reverse((_, node))) = ready.pop() {
        ordered.push(node);
        for &dependent in graph.dependents(node) {
            let count = &mut pending[dependent as usize];
            if *count == OUTSIDE {
                continue;
            }
            *count -= 1;
            if *count == 0 {
                ready.push(Reverse((graph.rank(dependent), dependent)));
            }
        }
    }
    ordered
}

/// One action as `/closure`, `/invoke` and `sigma closure --json` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Action)]
pub struct ActionView {
    pub database: String,
    pub schema: String,
    pub name: String,
    /// Absent only for a replayed invocation's target that the current graph no longer has.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    pub disabled: bool,
    pub tags: Vec<String>,
}

impl ActionView {
    pub fn of(graph: &Graph, node: u32) -> Self {
        let action = graph.action(node);
        Self {
            database: action.target.database.clone(),
            schema: action.target.schema.clone(),
            name: action.target.name.clone(),
            kind: Some(action.kind),
            disabled: action.disabled,
            tags: action.tags.clone(),
        }
    }

    /// A target as the graph describes it, or bare when the graph does not have it.
    pub fn of_target(graph: &Graph, target: &Target) -> Self {
        match graph.node(target) {
            Some(node) => Self::of(graph, node),
            None => Self {
                database: target.database.clone(),
                schema: target.schema.clone(),
                name: target.name.clone(),
                kind: None,
                disabled: false,
                tags: Vec::new(),
            },
        }
    }

    pub fn target(&self) -> Target {
        Target::new(&self.database, &self.schema, &self.name)
    }
}

/// The `/closure` answer.
/// The actions that depend on the loaded table, dependencies first.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Closure)]
pub struct Report {
    pub source: Target,
    pub actions: Vec<ActionView>,
    pub count: usize,
}

impl Report {
    pub fn new(graph: &Graph, source: u32, closure: &[u32]) -> Self {
        Self {
            source: graph.action(source).target.clone(),
            actions: closure
                .iter()
                .map(|&node| ActionView::of(graph, node))
                .collect(),
            count: closure.len(),
        }
    }
}
