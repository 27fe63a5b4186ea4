//! Batch coalescing of Dataform invocations (issue 10), simulated: how many action executions
//! it saves, that it never runs one action twice at once, and what its settle window costs in
//! latency, against one invocation per load, so that the service's window is chosen on numbers.
//! It runs `coalesce::plan`, the rule the service runs, on a generated graph.
//!
//! The model, seeded so that every run prints the same table:
//! - **Graph**: 5,000 actions in layers: 100 source tables (declarations, loaded by files), then
//!   400 staging, 1,500 intermediate, 2,000 mart and 1,000 report actions. Each layer is cut
//!   into 20 business domains (consecutive twentieths). Each non-source action depends on 1 to
//!   4 earlier actions, each drawn from its domain in the layer just before (probability 0.85),
//!   from its domain's earlier actions in its own layer (0.1, so chains grow deeper than the
//!   layers), or from any earlier action (0.05). Staging actions also read the source at their
//!   relative position (4 per source), so every source is read. The first 4 staging actions
//!   are hubs (a date dimension and the like): every action after the staging layer also
//!   depends on one of them with probability 0.1.
//! - **Loads**: 200 in 10 minutes, each of a source drawn uniformly. 75% arrive in one of four
//!   30-second batches starting at 0:00, 2:30, 5:00 and 7:30 (an on-premise scheduler exporting
//!   in waves), the rest at any time. A load's actions are its source's closure: every action
//!   that depends on it, directly or transitively.
//! - **Invocations**: Dataform runs an action once its dependencies within the invocation have
//!   run, so an invocation takes 20 s of overhead, then 40 s per level of its longest dependency
//!   chain; an action at level `d` runs during `[start + 20 + 40 (d - 1), start + 20 + 40 d)`.
//!   An execution is *overlapping* when another execution of the same action meets that interval.
//! - **Strategies**: *naive* starts one invocation per load on arrival (what Airflow, or one run
//!   per trigger, does). *Coalesced* asks `coalesce::plan` at every arrival, invocation end and
//!   settle window expiry, and starts the loads it names as one invocation of the union of their
//!   closures. A waiting load is ready once its settle window has passed, or once a blocker it
//!   waited behind has ended, as the planner specifies.
//!
//! A load is transformed when the invocation that covers it ends; its latency runs from arrival.

use std::ops::Range;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sigma_dataform::coalesce::{self, Nodes, Waiting};

const SEED: u64 = 10;
const SOURCES: usize = 100;
/// The sizes of the layers after the sources: staging, intermediate, mart, report.
const LAYERS: [usize; 4] = [400, 1_500, 2_000, 1_000];
const MAX_DEPENDENCIES: usize = 4;
const DOMAINS: usize = 20;
const CROSS_DOMAIN_SHARE: f64 = 0.05;
const SAME_LAYER_SHARE: f64 = 0.1;
const HUBS: usize = 4;
const HUB_SHARE: f64 = 0.1;
const LOADS: usize = 200;
const WINDOW_S: u32 = 600;
const BATCHES_S: [u32; 4] = [0, 150, 300, 450];
const BATCH_WIDTH_S: u32 = 30;
const BATCHED_SHARE: f64 = 0.75;
const OVERHEAD_S: u32 = 20;
const ACTION_S: u32 = 40;
const SETTLES_S: [u32; 4] = [0, 30, 60, 120];

/// Actions numbered in dependency order: every dependency's id is below its dependent's.
struct Graph {
    dependencies: Vec<Vec<u32>>,
}

impl Graph {
    fn generate(rng: &mut StdRng) -> Self {
        let mut dependencies = vec![Vec::new(); SOURCES];
        let mut previous = 0..SOURCES;
        for size in LAYERS {
            let layer = previous.end..previous.end + size;
            for id in layer.clone() {
                dependencies.push(pick_dependencies(rng, id, &layer, &previous));
            }
            previous = layer;
        }
        Self { dependencies }
    }

    fn actions(&self) -> usize {
        self.dependencies.len()
    }

    fn edges(&self) -> usize {
        self.dependencies.iter().map(Vec::len).sum()
    }

    /// Every source's closure, indexed by source.
    fn closures(&self) -> Vec<Vec<u32>> {
        let mut dependents = vec![Vec::new(); self.actions()];
        for (id, dependencies) in self.dependencies.iter().enumerate() {
            for &dependency in dependencies {
                dependents[dependency as usize].push(id);
            }
        }
        (0..SOURCES)
            .map(|source| closure(&dependents, source))
            .collect()
    }

    /// Each action's level in an invocation of `nodes`: one more than the highest level among
    /// its dependencies in the invocation. Sorted ids are in dependency order, so one pass does.
    fn levels(&self, nodes: &Nodes) -> Vec<u32> {
        let mut level = vec![0; self.actions()];
        nodes
            .iter()
            .map(|&id| {
                let below = self.dependencies[id as usize]
                    .iter()
                    .map(|&dependency| level[dependency as usize])
                    .max();
                level[id as usize] = 1 + below.unwrap_or(0);
                level[id as usize]
            })
            .collect()
    }
}

/// The dependencies of action `id` of `layer`, whose previous layer is `previous`.
fn pick_dependencies(
    rng: &mut StdRng,
    id: usize,
    layer: &Range<usize>,
    previous: &Range<usize>,
) -> Vec<u32> {
    let position = id - layer.start;
    let n = position * DOMAINS / layer.len();
    let (own_layer, previous_layer) = (domain(layer, n).start..id, domain(previous, n));
    let mut picked: Vec<u32> = (0..rng.random_range(1..=MAX_DEPENDENCIES))
        .map(|_| {
            let roll: f64 = rng.random();
            let from = if roll < CROSS_DOMAIN_SHARE {
                0..id
            } else if roll < CROSS_DOMAIN_SHARE + SAME_LAYER_SHARE && !own_layer.is_empty() {
                own_layer.clone()
            } else {
                previous_layer.clone()
            };
            rng.random_range(from) as u32
        })
        .collect();
    let staging = previous.start == 0;
    if staging {
        // Every source is read: by the staging actions at its relative position.
        picked.push((position * previous.len() / layer.len()) as u32);
    }
    if !staging && rng.random_bool(HUB_SHARE) {
        picked.push(rng.random_range(SOURCES..SOURCES + HUBS) as u32);
    }
    picked.sort_unstable();
    picked.dedup();
    picked
}

/// The part of `layer` in business domain `n`.
fn domain(layer: &Range<usize>, n: usize) -> Range<usize> {
    let boundary = |n: usize| layer.start + n * layer.len() / DOMAINS;
    boundary(n)..boundary(n + 1)
}

/// Every action that depends on `source`, directly or transitively, sorted.
fn closure(dependents: &[Vec<usize>], source: usize) -> Vec<u32> {
    let mut seen = vec![false; dependents.len()];
    let mut stack = vec![source];
    let mut found = Vec::new();
    while let Some(id) = stack.pop() {
        for &dependent in &dependents[id] {
            if !seen[dependent] {
                seen[dependent] = true;
                found.push(dependent as u32);
                stack.push(dependent);
            }
        }
    }
    found.sort_unstable();
    found
}

struct Load {
    arrival: u32,
    source: usize,
}

/// The loads, in arrival order.
fn loads(rng: &mut StdRng) -> Vec<Load> {
    let mut loads: Vec<Load> = (0..LOADS)
        .map(|_| Load {
            arrival: arrival(rng),
            source: rng.random_range(0..SOURCES),
        })
        .collect();
    loads.sort_by_key(|load| load.arrival);
    loads
}

fn arrival(rng: &mut StdRng) -> u32 {
    if rng.random_bool(BATCHED_SHARE) {
        BATCHES_S[rng.random_range(0..BATCHES_S.len())] + rng.random_range(0..BATCH_WIDTH_S)
    } else {
        rng.random_range(0..WINDOW_S)
    }
}

struct Invocation {
    /// The loads it covers (indices into the loads).
    loads: Vec<usize>,
    nodes: Vec<u32>,
    levels: Vec<u32>,
    start: u32,
    end: u32,
}

impl Invocation {
    fn new(graph: &Graph, loads: Vec<usize>, nodes: Vec<u32>, start: u32) -> Self {
        let levels = graph.levels(&nodes);
        let chain = levels.iter().copied().max().unwrap_or(0);
        let end = start + OVERHEAD_S + ACTION_S * chain;
        Self {
            loads,
            nodes,
            levels,
            start,
            end,
        }
    }

    /// Each action it runs, with the interval it runs in.
    fn executions(&self) -> impl Iterator<Item = (usize, (u32, u32))> + '_ {
        self.nodes.iter().zip(&self.levels).map(|(&id, &level)| {
            let begin = self.start + OVERHEAD_S + ACTION_S * (level - 1);
            (id as usize, (begin, begin + ACTION_S))
        })
    }
}

fn naive(graph: &Graph, closures: &[Vec<u32>], loads: &[Load]) -> Vec<Invocation> {
    loads
        .iter()
        .enumerate()
        .map(|(n, load)| {
            Invocation::new(graph, vec![n], closures[load.source].clone(), load.arrival)
        })
        .collect()
}

struct Pending {
    load: usize,
    /// It has been blocked by a running invocation.
    waited: bool,
}

/// The event-driven simulation of coalescing with one settle window.
struct Coalescer<'a> {
    graph: &'a Graph,
    closures: &'a [Vec<u32>],
    loads: &'a [Load],
    settle: u32,
    arrived: usize,
    waiting: Vec<Pending>,
    invocations: Vec<Invocation>,
}

impl Coalescer<'_> {
    fn run(mut self) -> Vec<Invocation> {
        let mut now = 0;
        loop {
            self.arrive(now);
            self.start_ready(now);
            match self.next_event(now) {
                Some(next) => now = next,
                None => return self.invocations,
            }
        }
    }

    fn arrive(&mut self, now: u32) {
        while self
            .loads
            .get(self.arrived)
            .is_some_and(|load| load.arrival <= now)
        {
            self.waiting.push(Pending {
                load: self.arrived,
                waited: false,
            });
            self.arrived += 1;
        }
    }

    fn start_ready(&mut self, now: u32) {
        let (closures, loads) = (self.closures, self.loads);
        let running: Vec<&Nodes> = self
            .invocations
            .iter()
            .filter(|invocation| invocation.end > now)
            .map(|invocation| invocation.nodes.as_slice())
            .collect();
        let waiting: Vec<Waiting> = self
            .waiting
            .iter()
            .map(|pending| Waiting {
                nodes: &closures[loads[pending.load].source],
                ready: pending.waited || now >= loads[pending.load].arrival + self.settle,
            })
            .collect();
        let plan = coalesce::plan(&running, &waiting);
        for (pending, blockers) in self.waiting.iter_mut().zip(&plan.blocked_by) {
            pending.waited |= !blockers.is_empty();
        }
        if plan.start.is_empty() {
            return;
        }
        let started: Vec<usize> = plan.start.iter().map(|&n| self.waiting[n].load).collect();
        let nodes = coalesce::union(
            started
                .iter()
                .map(|&load| closures[loads[load].source].as_slice()),
        );
        self.waiting
            .retain(|pending| !started.contains(&pending.load));
        let invocation = Invocation::new(self.graph, started, nodes, now);
        self.invocations.push(invocation);
    }

    /// The next arrival, invocation end or settle window expiry after `now`.
    fn next_event(&self, now: u32) -> Option<u32> {
        let arrival = self.loads.get(self.arrived).map(|load| load.arrival);
        let ends = self.invocations.iter().map(|invocation| invocation.end);
        let settled = self
            .waiting
            .iter()
            .map(|pending| self.loads[pending.load].arrival + self.settle);
        arrival
            .into_iter()
            .chain(ends)
            .chain(settled)
            .filter(|&time| time > now)
            .min()
    }
}

fn coalesced(graph: &Graph, closures: &[Vec<u32>], loads: &[Load], settle: u32) -> Vec<Invocation> {
    Coalescer {
        graph,
        closures,
        loads,
        settle,
        arrived: 0,
        waiting: Vec::new(),
        invocations: Vec::new(),
    }
    .run()
}

struct Outcome {
    invocations: usize,
    executions: usize,
    overlapping: usize,
    p50_s: u32,
    p95_s: u32,
}

fn measure(invocations: &[Invocation], loads: &[Load], actions: usize) -> Outcome {
    let latencies = latencies(invocations, loads);
    Outcome {
        invocations: invocations.len(),
        executions: invocations
            .iter()
            .map(|invocation| invocation.nodes.len())
            .sum(),
        overlapping: overlapping(invocations, actions),
        p50_s: percentile(&latencies, 50),
        p95_s: percentile(&latencies, 95),
    }
}

/// Each load's latency from arrival to transformed, sorted.
fn latencies(invocations: &[Invocation], loads: &[Load]) -> Vec<u32> {
    let mut latencies: Vec<u32> = invocations
        .iter()
        .flat_map(|invocation| {
            invocation
                .loads
                .iter()
                .map(|&load| invocation.end - loads[load].arrival)
        })
        .collect();
    assert_eq!(latencies.len(), loads.len(), "every load is covered once");
    latencies.sort_unstable();
    latencies
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: usize) -> u32 {
    sorted[(p * sorted.len()).div_ceil(100) - 1]
}

/// How many executions met another execution of the same action.
fn overlapping(invocations: &[Invocation], actions: usize) -> usize {
    let mut runs = vec![Vec::new(); actions];
    for (id, interval) in invocations.iter().flat_map(Invocation::executions) {
        runs[id].push(interval);
    }
    runs.iter_mut()
        .map(|intervals| overlapping_runs(intervals))
        .sum()
}

/// How many of one action's half-open intervals meet another: sorted by start, one meets an
/// earlier one when the latest end so far is past its start, and a later one when the next
/// start is before its end.
fn overlapping_runs(intervals: &mut [(u32, u32)]) -> usize {
    intervals.sort_unstable();
    let mut latest_end = 0;
    let mut count = 0;
    for (n, &(start, end)) in intervals.iter().enumerate() {
        let meets_later = intervals.get(n + 1).is_some_and(|&(next, _)| next < end);
        if latest_end > start || meets_later {
            count += 1;
        }
        latest_end = latest_end.max(end);
    }
    count
}

fn describe(graph: &Graph, closures: &[Vec<u32>]) -> String {
    let sizes: Vec<usize> = closures.iter().map(Vec::len).collect();
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    let max = sizes.iter().max().copied().unwrap_or(0);
    format!(
        "Graph: {} actions ({SOURCES} sources, {HUBS} hubs), {} edges; a source's closure: mean {mean:.1}, max {max} actions. {LOADS} loads in {} min.",
        graph.actions(),
        graph.edges(),
        WINDOW_S / 60,
    )
}

fn row(strategy: &str, outcome: &Outcome, naive: &Outcome) {
    println!(
        "| {strategy} | {} | {} | {:.2}x | {} | {} s | {} s |",
        outcome.invocations,
        outcome.executions,
        outcome.executions as f64 / naive.executions as f64,
        outcome.overlapping,
        outcome.p50_s,
        outcome.p95_s,
    );
}

fn main() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let graph = Graph::generate(&mut rng);
    let closures = graph.closures();
    let loads = loads(&mut rng);
    println!("{}\n", describe(&graph, &closures));
    println!(
        "| strategy | invocations | action executions | executions vs naive | overlapping executions | p50 latency | p95 latency |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let naive = measure(&naive(&graph, &closures, &loads), &loads, graph.actions());
    row("naive", &naive, &naive);
    for settle in SETTLES_S {
        let invocations = coalesced(&graph, &closures, &loads, settle);
        let outcome = measure(&invocations, &loads, graph.actions());
        assert_eq!(
            outcome.overlapping, 0,
            "coalescing with a {settle} s settle window ran an action twice at once"
        );
        row(&format!("coalesced, settle {settle} s"), &outcome, &naive);
    }
}
