//! The action graph: one model whether it came from `dataform compile --json` (core 2.x or
//! 3.x) or from the API's `compilationResults.query`.
//!
//! Nodes are addressed by index and both edge directions are stored as compact adjacency
//! arrays, so a closure over a 100,000-action project touches only the nodes it reaches.
//! Declarations (and 2.x inline tables) are nodes, because dependencies point at them, but
//! they are never selected: Dataform cannot run them.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an action writes: `database.schema.name` (project, dataset, table for BigQuery).
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub struct Target {
    #[serde(default)]
    pub database: String,
    #[serde(default)]
    pub schema: String,
    pub name: String,
}

impl Target {
    pub fn new(database: &str, schema: &str, name: &str) -> Self {
        Self {
            database: database.to_owned(),
            schema: schema.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in [&self.database, &self.schema] {
            if !part.is_empty() {
                write!(f, "{part}.")?;
            }
        }
        f.write_str(&self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Table,
    View,
    Incremental,
    Assertion,
    Operation,
    Notebook,
    DataPreparation,
    /// A 2.x inline table: its SQL is pasted into its dependents, it never runs itself.
    Inline,
    Declaration,
}

impl Kind {
    /// Whether Dataform can run the action, i.e. whether it may appear in `includedTargets`.
    pub fn is_runnable(self) -> bool {
        !matches!(self, Self::Inline | Self::Declaration)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The graph's key: dependency targets are written in this form.
    pub target: Target,
    /// The target without schema suffix or table prefix, which users also name tables by.
    pub canonical: Target,
    pub kind: Kind,
    pub disabled: bool,
    pub tags: Vec<String>,
}

/// An action as a source describes it, before its dependencies are resolved to nodes.
#[derive(Debug, Clone)]
pub struct RawAction {
    pub action: Action,
    pub dependencies: Vec<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("the project does not compile: {}", .0.join("; "))]
    Compilation(Vec<String>),
    #[error("the compiled graph is not valid JSON of `dataform compile --json`: {0}")]
    Malformed(String),
    #[error("two actions write {0}")]
    DuplicateTarget(String),
    #[error("the dependencies form a cycle through {0}")]
    Cycle(String),
}

/// Adjacency lists in one allocation: the neighbours of `i` are
/// `items[starts[i]..starts[i + 1]]`.
#[derive(Debug, Default)]
struct Adjacency {
    starts: Vec<u32>,
    items: Vec<u32>,
}

impl Adjacency {
    fn build(nodes: usize, edges: &[(u32, u32)]) -> Self {
        let mut starts = vec![0u32; nodes + 1];
        for &(from, _) in edges {
            starts[from as usize + 1] += 1;
        }
        for i in 0..nodes {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut items = vec![0u32; edges.len()];
        for &(from, to) in edges {
            items[next[from as usize] as usize] = to;
            next[from as usize] += 1;
        }
        Self { starts, items }
    }

    fn of(&self, node: u32) -> &[u32] {
        &self.items[self.starts[node as usize] as usize..self.starts[node as usize + 1] as usize]
    }
}

#[derive(Debug)]
pub struct Graph {
    actions: Vec<Action>,
    by_target: HashMap<Target, u32>,
    /// Every node whose target or canonical target has this name.
    by_name: HashMap<String, Vec<u32>>,
    dependencies: Adjacency,
    dependents: Adjacency,
    /// Position of each node when sorted by target: ties in a topological order are broken
    /// by it, so the order does not depend on how the source listed the actions.
    rank: Vec<u32>,
    /// Dependency targets that name no action: `resolve()` outside the project, or a
    /// 2.x graph that omits them. They add no edge.
    dangling: usize,
}

impl Graph {
    pub fn build(raw: Vec<RawAction>) -> Result<Self, GraphError> {
        let mut by_target = HashMap::with_capacity(raw.len());
        for (index, item) in raw.iter().enumerate() {
            let index = u32::try_from(index)
                .map_err(|_| GraphError::Malformed("too many actions".into()))?;
            if by_target
                .insert(item.action.target.clone(), index)
                .is_some()
            {
                return Err(GraphError::DuplicateTarget(item.action.target.to_string()));
            }
        }
        let mut edges = Vec::new();
        let mut dangling = 0;
        for (index, item) in raw.iter().enumerate() {
            let mut deps: Vec<u32> = item
                .dependencies
                .iter()
                .filter_map(|target| {
                    let found = by_target.get(target).copied();
                    dangling += usize::from(found.is_none());
                    found
                })
                .collect();
            deps.sort_unstable();
            deps.dedup();
            edges.extend(deps.into_iter().map(|dep| (index as u32, dep)));
        }
        let nodes = raw.len();
        let dependencies = Adjacency::build(nodes, &edges);
        let reversed: Vec<(u32, u32)> = edges.iter().map(|&(from, to)| (to, from)).collect();
        let dependents = Adjacency::build(nodes, &reversed);

        let actions: Vec<Action> = raw.into_iter().map(|item| item.action).collect();
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::with_capacity(actions.len());
        for (index, action) in actions.iter().enumerate() {
            by_name
                .entry(action.target.name.clone())
                .or_default()
                .push(index as u32);
            if action.canonical.name != action.target.name {
                by_name
                    .entry(action.canonical.name.clone())
                    .or_default()
                    .push(index as u32);
            }
        }
        let mut order: Vec<u32> = (0..nodes as u32).collect();
        order
            .sort_unstable_by(|&a, &b| actions[a as usize].target.cmp(&actions[b as usize].target));
        let mut rank = vec![0u32; nodes];
        for (position, &node) in order.iter().enumerate() {
            rank[node as usize] = position as u32;
        }
        let graph = Self {
            actions,
            by_target,
            by_name,
            dependencies,
            dependents,
            rank,
            dangling,
        };
        graph.reject_cycles()?;
        Ok(graph)
    }

    /// Dataform refuses cyclic projects, but a hand-edited graph file could hold one, and a
    /// topological order would then silently drop the actions on the cycle.
    fn reject_cycles(&self) -> Result<(), GraphError> {
        let mut pending: Vec<u32> = (0..self.len() as u32)
            .map(|n| self.dependencies.of(n).len() as u32)
            .collect();
        let mut ready: Vec<u32> = (0..self.len() as u32)
            .filter(|&n| pending[n as usize] == 0)
            .collect();
        let mut seen = 0;
        while let Some(node) = ready.pop() {
            seen += 1;
            for &dependent in self.dependents.of(node) {
                pending[dependent as usize] -= 1;
                if pending[dependent as usize] == 0 {
                    ready.push(dependent);
                }
            }
        }
        if seen == self.len() {
            return Ok(());
        }
        let stuck = (0..self.len())
            .filter(|&n| pending[n] > 0)
            .min_by_key(|&n| self.rank[n])
            .unwrap_or_default();
        Err(GraphError::Cycle(self.actions[stuck].target.to_string()))
    }

    /// Parses the output of `dataform compile --json` (core 2.x or 3.x).
    pub fn from_compiled_json(bytes: &[u8]) -> Result<Self, GraphError> {
        let compiled: compiled::Graph =
            serde_json::from_slice(bytes).map_err(|e| GraphError::Malformed(e.to_string()))?;
        Self::build(compiled.into_actions()?)
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    pub fn action(&self, node: u32) -> &Action {
        &self.actions[node as usize]
    }

    pub fn node(&self, target: &Target) -> Option<u32> {
        self.by_target.get(target).copied()
    }

    pub fn named(&self, name: &str) -> &[u32] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn dependencies(&self, node: u32) -> &[u32] {
        self.dependencies.of(node)
    }

    pub fn dependents(&self, node: u32) -> &[u32] {
        self.dependents.of(node)
    }

    pub fn rank(&self, node: u32) -> u32 {
        self.rank[node as usize]
    }

    pub fn edges(&self) -> usize {
        self.dependencies.items.len()
    }

    pub fn dangling(&self) -> usize {
        self.dangling
    }
}

/// The JSON of `dataform compile --json`. Only what the graph needs is read; missing lists
/// mean empty lists (the CLI omits empty keys).
mod compiled {
    use serde::Deserialize;

    use super::{Action, GraphError, Kind, RawAction, Target};

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Graph {
        #[serde(default)]
        tables: Vec<Table>,
        #[serde(default)]
        operations: Vec<Common>,
        #[serde(default)]
        assertions: Vec<Common>,
        #[serde(default)]
        declarations: Vec<Common>,
        #[serde(default)]
        graph_errors: Option<GraphErrors>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct GraphErrors {
        #[serde(default)]
        compilation_errors: Vec<CompilationError>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct CompilationError {
        #[serde(default)]
        file_name: String,
        #[serde(default)]
        message: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Common {
        target: Target,
        canonical_target: Option<Target>,
        #[serde(default)]
        disabled: bool,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        dependency_targets: Vec<Target>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Table {
        #[serde(flatten)]
        common: Common,
        /// 2.x and 3.x: `table`, `view`, `incremental` (2.x also `inline`).
        #[serde(rename = "type", default)]
        kind: Option<String>,
        /// 3.x only: `TABLE`, `VIEW`, `INCREMENTAL`.
        #[serde(default)]
        enum_type: Option<String>,
    }

    impl Common {
        fn into_raw(self, kind: Kind) -> RawAction {
            RawAction {
                action: Action {
                    canonical: self.canonical_target.unwrap_or_else(|| self.target.clone()),
                    target: self.target,
                    kind,
                    disabled: self.disabled,
                    tags: self.tags,
                },
                dependencies: self.dependency_targets,
            }
        }
    }

    fn table_kind(kind: Option<&str>) -> Result<Kind, String> {
        match kind.map(str::to_ascii_lowercase).as_deref() {
            Some("table") | None => Ok(Kind::Table),
            Some("view") | Some("materialized_view") => Ok(Kind::View),
            Some("incremental") => Ok(Kind::Incremental),
            Some("inline") => Ok(Kind::Inline),
            Some(other) => Err(format!("unknown table type {other:?}")),
        }
    }

    impl Graph {
        pub fn into_actions(self) -> Result<Vec<RawAction>, GraphError> {
            if let Some(errors) = self
                .graph_errors
                .filter(|e| !e.compilation_errors.is_empty())
            {
                return Err(GraphError::Compilation(
                    errors
                        .compilation_errors
                        .into_iter()
                        .map(|e| {
                            if e.file_name.is_empty() {
                                e.message
                            } else {
                                format!("{}: {}", e.file_name, e.message)
                            }
                        })
                        .collect(),
                ));
            }
            let mut actions = Vec::with_capacity(
                self.tables.len()
                    + self.operations.len()
                    + self.assertions.len()
                    + self.declarations.len(),
            );
            for table in self.tables {
                let kind = table_kind(table.kind.as_deref().or(table.enum_type.as_deref()))
                    .map_err(GraphError::Malformed)?;
                actions.push(table.common.into_raw(kind));
            }
            actions.extend(
                self.operations
                    .into_iter()
                    .map(|a| a.into_raw(Kind::Operation)),
            );
            actions.extend(
                self.assertions
                    .into_iter()
                    .map(|a| a.into_raw(Kind::Assertion)),
            );
            actions.extend(
                self.declarations
                    .into_iter()
                    .map(|a| a.into_raw(Kind::Declaration)),
            );
            Ok(actions)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, kind: Kind, deps: &[&str]) -> RawAction {
        RawAction {
            action: Action {
                target: Target::new("p", "s", name),
                canonical: Target::new("p", "s", name),
                kind,
                disabled: false,
                tags: vec![],
            },
            dependencies: deps.iter().map(|d| Target::new("p", "s", d)).collect(),
        }
    }

    #[test]
    fn edges_are_stored_both_ways_and_deduplicated() {
        let graph = Graph::build(vec![
            raw("src", Kind::Declaration, &[]),
            raw("a", Kind::Table, &["src", "src"]),
            raw("b", Kind::View, &["a", "src", "missing"]),
        ])
        .unwrap();
        assert_eq!(graph.dependents(0), &[1, 2]);
        assert_eq!(graph.dependencies(2), &[0, 1]);
        assert_eq!(graph.edges(), 3);
        assert_eq!(graph.dangling(), 1);
    }

    #[test]
    fn cycles_and_duplicate_targets_are_refused() {
        let cycle = Graph::build(vec![
            raw("a", Kind::Table, &["b"]),
            raw("b", Kind::Table, &["a"]),
        ]);
        assert!(matches!(cycle, Err(GraphError::Cycle(_))));
        let twice = Graph::build(vec![raw("a", Kind::Table, &[]), raw("a", Kind::View, &[])]);
        assert!(matches!(twice, Err(GraphError::DuplicateTarget(_))));
    }

    #[test]
    fn compile_errors_in_the_file_are_reported_with_their_messages() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/broken_v3.compiled.json"
        ))
        .unwrap();
        match Graph::from_compiled_json(&bytes) {
            Err(GraphError::Compilation(messages)) => {
                assert_eq!(messages.len(), 4);
                assert!(
                    messages
                        .iter()
                        .any(|m| m.contains("Could not resolve \\\"no_existe\\\"")
                            || m.contains("no_existe"))
                );
            }
            other => panic!("expected compilation errors, got {other:?}"),
        }
    }
}
