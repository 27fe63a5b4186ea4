//! `sigma plan` against the example registry, as an operator runs it.

use std::process::{Command, Output};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/pipelines.yaml");

fn sigma_plan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sigma"))
        .arg("plan")
        .args(args)
        .args(["--pipelines", EXAMPLE])
        .env_remove("PROJECT_ID")
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env_remove("DATAFLOW_REGION")
        .env_remove("CONFIG_BUCKET")
        .output()
        .unwrap()
}

#[test]
fn plan_json_has_the_documented_keys_and_the_services_job_name() {
    let output = sigma_plan(&[
        "data/20240115/poliza_detalle.gz",
        "--generation",
        "1705312800123456",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for key in [
        "entity",
        "fecha_lote",
        "job_name",
        "parameters",
        "environment",
        "config",
    ] {
        assert!(plan.get(key).is_some(), "missing {key}");
    }
    assert_eq!(plan["entity"], "poliza_detalle");
    assert_eq!(plan["fecha_lote"], "2024-01-15");
    assert_eq!(plan["job_name"], "poliza-detalle-2024-01-15-gshdvvbl1c");
    assert_eq!(
        plan["parameters"]["input"],
        "gs://company_output_bucket/data/20240115/poliza_detalle.gz"
    );
    assert_eq!(
        plan["parameters"]["jobConfig"],
        "gs://company_config_bucket/configs/poliza_detalle/2024-01-15/poliza-detalle-2024-01-15-gshdvvbl1c.config"
    );
    assert_eq!(plan["environment"]["ipConfiguration"], "WORKER_IP_PRIVATE");
    assert_eq!(plan["config"]["source"]["generation"], "1705312800123456");
    assert_eq!(plan["config"]["dataform_table"], "polizas");
}

#[test]
fn plan_text_names_the_entity_job_and_config() {
    let output = sigma_plan(&[
        "gs://other_bucket/data/20240115/lkp_fechas.gz",
        "--project",
        "other-project",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("entity      lkp_fechas"), "{text}");
    assert!(
        text.contains("job name    lkp-fechas-2024-01-15\n"),
        "{text}"
    );
    assert!(
        text.contains("input = gs://other_bucket/data/20240115/lkp_fechas.gz"),
        "{text}"
    );
    assert!(text.contains("other-project.raw.lkp_fechas"), "{text}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--generation"));
}

#[test]
fn an_object_that_matches_no_entry_exits_non_zero_with_the_reason() {
    let output = sigma_plan(&["data/20240115/otra_cosa.gz"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("matches no pipeline"), "{stderr}");
    assert!(output.stdout.is_empty());
}
