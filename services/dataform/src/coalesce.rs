//! Which waiting loads start now, and together: the one decision of batch coalescing, kept
//! free of I/O so that the service, its tests and the simulation bench all run the same rule.
//!
//! Two invocations running the same action at once can insert an incremental table's rows
//! twice, or fail on BigQuery's concurrent-update check; an action that was already running
//! when a load landed read the old data. So a load whose actions overlap a running invocation
//! waits for it to end, and everything waiting then starts as **one** invocation.
//!
//! The rule, over the waiting loads in arrival order:
//! - a load is *blocked* when its actions overlap a running (or starting) invocation, or an
//!   earlier blocked load: later loads never overtake earlier ones on the same actions, so
//!   a steady stream of new loads cannot starve an old one;
//! - the unblocked loads start together, as one invocation, as soon as any of them is
//!   *ready* (its settle window has passed, or it has waited behind a blocker that ended).

/// A set of graph nodes, sorted and without duplicates.
pub type Nodes = [u32];

/// Whether two sorted node sets share a node.
pub fn overlap(a: &Nodes, b: &Nodes) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// The union of sorted node sets, sorted.
pub fn union<'a>(sets: impl IntoIterator<Item = &'a Nodes>) -> Vec<u32> {
    let mut all: Vec<u32> = sets.into_iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// A load waiting to start.
#[derive(Debug, Clone, Copy)]
pub struct Waiting<'a> {
    pub nodes: &'a Nodes,
    /// Its settle window has passed.
    pub ready: bool,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The waiting loads (indices into `waiting`, in order) that start now as one
    /// invocation; empty when none may.
    pub start: Vec<usize>,
    /// For each waiting load, the running invocations (indices into `running`) it waits for,
    /// directly or behind an earlier load; empty for the loads that start or still settle.
    pub blocked_by: Vec<Vec<usize>>,
}

/// Decides which of `waiting` (in arrival order) start now, given the node sets of the
/// invocations `running` (or being created).
pub fn plan(running: &[&Nodes], waiting: &[Waiting]) -> Plan {
    let mut blocked_by: Vec<Vec<usize>> = Vec::with_capacity(waiting.len());
    let mut free = Vec::new();
    for (n, load) in waiting.iter().enumerate() {
        let mut blockers: Vec<usize> = running
            .iter()
            .enumerate()
            .filter(|(_, nodes)| overlap(nodes, load.nodes))
            .map(|(r, _)| r)
            .collect();
        for (earlier, theirs) in blocked_by.iter().enumerate() {
            if !theirs.is_empty() && overlap(waiting[earlier].nodes, load.nodes) {
                blockers.extend(theirs);
            }
        }
        blockers.sort_unstable();
        blockers.dedup();
        if blockers.is_empty() {
            free.push(n);
        }
        blocked_by.push(blockers);
    }
    let start = if free.iter().any(|&n| waiting[n].ready) {
        free
    } else {
        Vec::new()
    };
    Plan { start, blocked_by }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(nodes: &Nodes) -> Waiting<'_> {
        Waiting { nodes, ready: true }
    }

    fn settling(nodes: &Nodes) -> Waiting<'_> {
        Waiting {
            nodes,
            ready: false,
        }
    }

    #[test]
    fn overlap_and_union_work_on_sorted_sets() {
        assert!(overlap(&[1, 4, 9], &[2, 9]));
        assert!(!overlap(&[1, 4, 9], &[2, 5, 10]));
        assert!(!overlap(&[], &[1]));
        assert_eq!(union([&[1, 4][..], &[2, 4, 7][..]]), [1, 2, 4, 7]);
    }

    #[test]
    fn loads_with_nothing_running_start_together_once_one_is_ready() {
        let plan = super::plan(&[], &[ready(&[1, 2]), settling(&[2, 3]), settling(&[7])]);
        assert_eq!(plan.start, [0, 1, 2]);
        assert!(plan.blocked_by.iter().all(Vec::is_empty));
    }

    #[test]
    fn loads_still_settling_wait_for_siblings() {
        let plan = super::plan(&[], &[settling(&[1]), settling(&[2])]);
        assert!(plan.start.is_empty());
    }

    #[test]
    fn a_load_overlapping_a_running_invocation_waits_for_it_and_the_rest_start() {
        let plan = super::plan(&[&[5, 6], &[9]], &[ready(&[1, 6]), ready(&[2])]);
        assert_eq!(plan.start, [1]);
        assert_eq!(plan.blocked_by, [vec![0], vec![]]);
    }

    #[test]
    fn a_later_load_never_overtakes_an_earlier_blocked_one_on_shared_actions() {
        let plan = super::plan(&[&[5]], &[ready(&[1, 5]), ready(&[1, 2]), ready(&[3])]);
        assert_eq!(plan.start, [2]);
        assert_eq!(plan.blocked_by, [vec![0], vec![0], vec![]]);
    }

    #[test]
    fn blockers_accumulate_through_a_chain_of_waiting_loads() {
        let plan = super::plan(
            &[&[5], &[8]],
            &[ready(&[1, 5]), ready(&[1, 8]), ready(&[8, 9])],
        );
        assert!(plan.start.is_empty());
        assert_eq!(plan.blocked_by, [vec![0], vec![0, 1], vec![0, 1]]);
    }
}
