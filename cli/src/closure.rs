//! `sigma closure`: which actions sigma-dataform would run after a table is loaded, offline,
//! from a `dataform compile --json` file.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use sigma_dataform::closure::{Report, closure as dependents};
use sigma_dataform::graph::Graph;
use sigma_dataform::name::{Resolution, TableName};

#[derive(Args)]
pub struct ClosureArgs {
    /// Output of `dataform compile --json` (core 2.x or 3.x)
    #[arg(long)]
    graph: PathBuf,
    /// The loaded table: name, schema.name or database.schema.name (target or canonical)
    table: String,
    /// Print the JSON that POST /closure answers instead of a tree
    #[arg(long)]
    json: bool,
}

pub fn closure(args: ClosureArgs) -> anyhow::Result<()> {
    let graph = sigma_dataform::source::load_file(&args.graph)?;
    let name: TableName = args.table.parse()?;
    let source = match name.resolve(&graph) {
        Resolution::Found(node) => node,
        Resolution::Unknown => bail!(
            "no action or declaration is named {name} in {}",
            args.graph.display()
        ),
        Resolution::Ambiguous(candidates) => bail!(
            "{name} names several tables, say which: {}",
            candidates.join(", ")
        ),
    };
    let order = dependents(&graph, source);
    if args.json {
        let report = Report::new(&graph, source, &order);
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serializing the closure")?
        );
    } else {
        print!("{}", tree(&graph, source, &order));
    }
    Ok(())
}

/// Each action under the last of its dependencies to run (the deepest path that reaches it);
/// an action with several such dependencies lists the others after it.
fn tree(graph: &Graph, source: u32, order: &[u32]) -> String {
    let position: HashMap<u32, usize> = std::iter::once(source)
        .chain(order.iter().copied())
        .enumerate()
        .map(|(i, n)| (n, i))
        .collect();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut also: HashMap<u32, Vec<u32>> = HashMap::new();
    for &node in order {
        let mut parents: Vec<u32> = graph
            .dependencies(node)
            .iter()
            .copied()
            .filter(|d| position.contains_key(d))
            .collect();
        parents.sort_by_key(|p| position[p]);
        let parent = parents.pop().unwrap_or(source);
        children.entry(parent).or_default().push(node);
        also.insert(node, parents);
    }
    let label = |node: u32| {
        let action = graph.action(node);
        let mut text = format!(
            "{} [{}]",
            action.target,
            serde_json::to_value(action.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
        if action.disabled {
            text.push_str(" (disabled)");
        }
        if let Some(others) = also.get(&node).filter(|o| !o.is_empty()) {
            let names: Vec<String> = others
                .iter()
                .map(|&o| graph.action(o).target.name.clone())
                .collect();
            text.push_str(&format!("  also after {}", names.join(", ")));
        }
        text
    };
    let mut out = format!("{}\n", graph.action(source).target);
    let mut stack: Vec<(u32, String, bool)> = children
        .get(&source)
        .into_iter()
        .flatten()
        .rev()
        .enumerate()
        .map(|(i, &n)| (n, String::new(), i == 0))
        .collect();
    while let Some((node, prefix, last)) = stack.pop() {
        out.push_str(&format!(
            "{prefix}{}{}\n",
            if last { "└── " } else { "├── " },
            label(node)
        ));
        let inner = format!("{prefix}{}", if last { "    " } else { "│   " });
        stack.extend(
            children
                .get(&node)
                .into_iter()
                .flatten()
                .rev()
                .enumerate()
                .map(|(i, &n)| (n, inner.clone(), i == 0)),
        );
    }
    out.push_str(&format!(
        "{} action(s) depend on {}\n",
        order.len(),
        graph.action(source).target
    ));
    out
}
