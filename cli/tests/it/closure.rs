//! `sigma closure` prints the same closure as `POST /closure`, as a tree or as JSON.

use std::process::Command;

fn sigma_closure(args: &[&str]) -> std::process::Output {
    let graph = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../services/dataform/tests/fixtures/sample_v3.compiled.json"
    );
    Command::new(env!("CARGO_BIN_EXE_sigma"))
        .args(["closure", "--graph", graph])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn json_output_has_the_closure_endpoints_shape() {
    let output = sigma_closure(&["raw.lkp_fechas", "--json"]);
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["count"], 16);
    assert_eq!(report["source"]["name"], "lkp_fechas");
    assert_eq!(report["actions"].as_array().unwrap().len(), 16);
}

#[test]
fn the_tree_lists_every_action_once_under_the_loaded_table() {
    let output = sigma_closure(&["lkp_fechas"]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("acme-dwh-prod.raw.lkp_fechas\n"));
    assert_eq!(text.matches("── ").count(), 16);
    assert!(text.contains("16 action(s) depend on acme-dwh-prod.raw.lkp_fechas"));
}

#[test]
fn an_ambiguous_name_fails_listing_the_candidates() {
    let output = sigma_closure(&["clientes"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8(output.stderr)
            .unwrap()
            .contains("acme-dwh-prod.staging.clientes")
    );
}
