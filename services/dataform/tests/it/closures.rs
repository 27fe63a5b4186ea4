//! Closures and name resolution on the real compiled sample projects (core 2.x and 3.x),
//! checked against the expected closures cross-checked with Dataform's own selection code,
//! and against a naive implementation on random graphs.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use serde_json::Value;
use sigma_dataform::closure::{ActionView, closure};
use sigma_dataform::graph::{Action, Graph, Kind, RawAction, Target};
use sigma_dataform::name::{Resolution, TableName};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn graph(version: &str) -> Graph {
    Graph::from_compiled_json(&fixture(&format!("sample_{version}.compiled.json"))).unwrap()
}

fn resolve(graph: &Graph, name: &str) -> Resolution {
    name.parse::<TableName>().unwrap().resolve(graph)
}

fn found(graph: &Graph, name: &str) -> u32 {
    match resolve(graph, name) {
        Resolution::Found(node) => node,
        other => panic!("{name}: {other:?}"),
    }
}

/// Every action in `order` comes after each of its dependencies that is also in `order`.
fn assert_dependency_order(graph: &Graph, order: &[u32]) {
    let position: HashMap<u32, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    for (i, &node) in order.iter().enumerate() {
        for dep in graph.dependencies(node) {
            if let Some(&p) = position.get(dep) {
                assert!(
                    p < i,
                    "{} runs before its dependency {}",
                    graph.action(node).target,
                    graph.action(*dep).target
                );
            }
        }
    }
}

fn expected_closures_come_out_exactly(version: &str) {
    let graph = graph(version);
    let expected: Value =
        serde_json::from_slice(&fixture(&format!("sample_{version}.closures.json"))).unwrap();
    let closures = expected["closures"].as_object().unwrap();
    assert_eq!(closures.len(), 7);
    for (declaration, want) in closures {
        let source = found(&graph, declaration);
        let order = closure(&graph, source);
        let names = |field: &str| -> BTreeSet<String> {
            want[field]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let got: BTreeSet<String> = order
            .iter()
            .map(|&n| graph.action(n).target.to_string())
            .collect();
        assert_eq!(
            got.len(),
            order.len(),
            "{declaration}: an action is listed twice"
        );
        assert_eq!(got, names("closure"), "{declaration} ({version})");
        let disabled: BTreeSet<String> = order
            .iter()
            .filter(|&&n| graph.action(n).disabled)
            .map(|&n| graph.action(n).target.to_string())
            .collect();
        assert_eq!(
            disabled,
            names("disabled"),
            "{declaration} disabled ({version})"
        );
        for target in want["targets"].as_array().unwrap() {
            let node = found(
                &graph,
                &format!(
                    "{}.{}.{}",
                    target["database"].as_str().unwrap(),
                    target["schema"].as_str().unwrap(),
                    target["name"].as_str().unwrap()
                ),
            );
            let view = serde_json::to_value(ActionView::of(&graph, node)).unwrap();
            // The expectation says `operation(hasOutput)` where the graph only knows `operation`.
            let kind = target["kind"].as_str().unwrap().split('(').next().unwrap();
            assert_eq!(view["type"], kind, "{target}");
        }
        assert_dependency_order(&graph, &order);
    }
}

#[test]
fn every_expected_closure_comes_out_exactly_under_core_3() {
    expected_closures_come_out_exactly("v3");
}

#[test]
fn every_expected_closure_comes_out_exactly_under_core_2() {
    expected_closures_come_out_exactly("v2");
}

#[test]
fn core_3_dependency_assertions_make_larger_closures_than_core_2() {
    let count = |version| {
        let g = graph(version);
        closure(&g, found(&g, "raw.agentes")).len()
    };
    assert_eq!((count("v2"), count("v3")), (6, 10));
}

#[test]
fn the_loaded_table_is_never_in_its_own_closure_and_declarations_never_are() {
    let g = graph("v3");
    let source = found(&g, "lkp_fechas");
    let order = closure(&g, source);
    assert_eq!(order.len(), 16);
    assert!(!order.contains(&source));
    assert!(order.iter().all(|&n| g.action(n).kind != Kind::Declaration));
}

#[test]
fn closure_order_is_deterministic() {
    let g = graph("v3");
    let source = found(&g, "raw.clientes");
    assert_eq!(closure(&g, source), closure(&g, source));
}

#[test]
fn bare_schema_qualified_and_full_names_resolve() {
    let g = graph("v3");
    let node = found(&g, "lkp_fechas");
    assert_eq!(
        g.action(node).target,
        Target::new("acme-dwh-prod", "raw", "lkp_fechas")
    );
    assert_eq!(found(&g, "raw.lkp_fechas"), node);
    assert_eq!(found(&g, "acme-dwh-prod.raw.lkp_fechas"), node);
    assert_eq!(
        g.action(found(&g, "monedas")).target.database,
        "corp-shared-data"
    );
    assert_eq!(
        found(&g, "warehouse.clientes"),
        found(&g, "acme-dwh-prod.warehouse.clientes")
    );
}

#[test]
fn a_bare_name_in_several_schemas_is_ambiguous_and_lists_them() {
    let g = graph("v3");
    assert_eq!(
        resolve(&g, "clientes"),
        Resolution::Ambiguous(vec![
            "acme-dwh-prod.raw.clientes".into(),
            "acme-dwh-prod.reporting.clientes".into(),
            "acme-dwh-prod.staging.clientes".into(),
            "acme-dwh-prod.warehouse.clientes".into(),
        ])
    );
}

#[test]
fn unknown_names_and_wrong_schemas_or_databases_are_unknown() {
    let g = graph("v3");
    for name in [
        "no_existe",
        "raw.dim_fecha",
        "other-project.raw.lkp_fechas",
        "Lkp_Fechas",
    ] {
        assert_eq!(resolve(&g, name), Resolution::Unknown, "{name}");
    }
}

/// The v3 sample compiled as if with `schemaSuffix: dev` and `tablePrefix: tmp`: targets
/// change for every action but declarations, canonical targets do not.
fn suffixed_graph() -> Graph {
    let mut compiled: Value = serde_json::from_slice(&fixture("sample_v3.compiled.json")).unwrap();
    let declared: Vec<Value> = compiled["declarations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["target"].clone())
        .collect();
    let rename = |target: &mut Value| {
        if !declared.contains(target) {
            target["schema"] = Value::String(format!("{}_dev", target["schema"].as_str().unwrap()));
            target["name"] = Value::String(format!("tmp_{}", target["name"].as_str().unwrap()));
        }
    };
    for list in ["tables", "operations", "assertions"] {
        for action in compiled[list].as_array_mut().unwrap() {
            if let Some(deps) = action
                .get_mut("dependencyTargets")
                .and_then(Value::as_array_mut)
            {
                deps.iter_mut().for_each(&rename);
            }
            rename(&mut action["target"]);
        }
    }
    Graph::from_compiled_json(&serde_json::to_vec(&compiled).unwrap()).unwrap()
}

#[test]
fn tables_are_found_by_target_and_by_canonical_target() {
    let g = suffixed_graph();
    let by_target = found(&g, "staging_dev.tmp_stg_fechas");
    assert_eq!(found(&g, "staging.stg_fechas"), by_target);
    assert_eq!(found(&g, "acme-dwh-prod.staging.stg_fechas"), by_target);
    assert_eq!(found(&g, "stg_fechas"), by_target);
    assert_eq!(found(&g, "tmp_stg_fechas"), by_target);
    let order = closure(&g, found(&g, "raw.lkp_fechas"));
    assert_eq!(order.len(), 16);
    assert!(
        order
            .iter()
            .all(|&n| g.action(n).target.schema.ends_with("_dev"))
    );
}

fn random_graph(
    deps: &[Vec<usize>],
    declarations: &[bool],
    disabled: &[bool],
    reversed: bool,
) -> Graph {
    let mut raw: Vec<RawAction> = deps
        .iter()
        .enumerate()
        .map(|(i, ds)| {
            let target = Target::new("p", "s", &format!("n{i:03}"));
            let declaration = declarations[i] && ds.is_empty();
            RawAction {
                action: Action {
                    canonical: target.clone(),
                    target,
                    kind: if declaration {
                        Kind::Declaration
                    } else {
                        Kind::Table
                    },
                    disabled: disabled[i],
                    tags: vec![],
                },
                dependencies: ds
                    .iter()
                    .map(|&d| Target::new("p", "s", &format!("n{d:03}")))
                    .collect(),
            }
        })
        .collect();
    if reversed {
        raw.reverse();
    }
    Graph::build(raw).unwrap()
}

/// Grows the set of dependents until nothing changes: slow and obviously right.
fn naive_closure(deps: &[Vec<usize>], source: usize) -> BTreeSet<usize> {
    let mut reached = BTreeSet::new();
    loop {
        let before = reached.len();
        for (node, ds) in deps.iter().enumerate() {
            if node != source && ds.iter().any(|d| *d == source || reached.contains(d)) {
                reached.insert(node);
            }
        }
        if reached.len() == before {
            return reached;
        }
    }
}

fn dag() -> impl Strategy<Value = (Vec<Vec<usize>>, Vec<bool>, Vec<bool>, usize)> {
    (1usize..40).prop_flat_map(|n| {
        let deps = (0..n)
            .map(|i| {
                proptest::collection::vec(0..i.max(1), 0..4)
                    .prop_map(move |ds| if i == 0 { vec![] } else { ds })
            })
            .collect::<Vec<_>>();
        (
            deps,
            proptest::collection::vec(any::<bool>(), n),
            proptest::collection::vec(any::<bool>(), n),
            0..n,
        )
    })
}

proptest! {
    #[test]
    fn closure_matches_a_naive_fixpoint_on_random_dags((deps, declarations, disabled, source) in dag()) {
        let g = random_graph(&deps, &declarations, &disabled, false);
        let name = |n: u32| g.action(n).target.name.clone();
        let source_node = g.node(&Target::new("p", "s", &format!("n{source:03}"))).unwrap();
        let order = closure(&g, source_node);
        let got: BTreeSet<String> = order.iter().map(|&n| name(n)).collect();
        prop_assert_eq!(got.len(), order.len());
        let want: BTreeSet<String> = naive_closure(&deps, source)
            .into_iter()
            .filter(|&n| g.action(g.node(&Target::new("p", "s", &format!("n{n:03}"))).unwrap()).kind.is_runnable())
            .map(|n| format!("n{n:03}"))
            .collect();
        prop_assert_eq!(got, want);
        assert_dependency_order(&g, &order);

        let listed_backwards = random_graph(&deps, &declarations, &disabled, true);
        let backwards_source = listed_backwards.node(&Target::new("p", "s", &format!("n{source:03}"))).unwrap();
        let backwards: Vec<String> = closure(&listed_backwards, backwards_source).iter().map(|&n| listed_backwards.action(n).target.name.clone()).collect();
        let forwards: Vec<String> = order.iter().map(|&n| name(n)).collect();
        prop_assert_eq!(forwards, backwards);
    }
}
