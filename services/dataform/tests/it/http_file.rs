//! The HTTP contract with a compiled graph file as the source (the offline default).

use crate::common;

use common::{Service, file_config};
use serde_json::{Value, json};

async fn serve(fixture: &str) -> Service {
    Service::start(file_config(fixture)).await
}

#[tokio::test]
async fn closure_answers_source_actions_in_dependency_order_and_count() {
    let service = serve("sample_v3.compiled.json").await;
    let (status, body) = service.closure(json!({"table": "lkp_fechas"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["source"],
        json!({"database": "acme-dwh-prod", "schema": "raw", "name": "lkp_fechas"})
    );
    assert_eq!(body["count"], 16);
    let actions = body["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 16);
    let position = |name: &str| actions.iter().position(|a| a["name"] == name).unwrap();
    assert!(position("stg_fechas") < position("dim_fecha"));
    assert!(position("dim_fecha") < position("rpt_kpi_siniestralidad"));
    let first = &actions[0];
    for field in ["database", "schema", "name", "type", "disabled", "tags"] {
        assert!(first.get(field).is_some(), "{field} missing in {first}");
    }
}

#[tokio::test]
async fn the_table_is_derived_from_the_loaded_object_or_taken_from_the_registry() {
    let service = serve("sample_v3.compiled.json").await;
    let (status, body) = service
        .closure(json!({"bucket": "out-bucket", "name": "data/20240115/lkp_fechas.gz"}))
        .await;
    assert_eq!((status, body["count"].clone()), (200, json!(16)), "{body}");
    let (_, body) = service.closure(json!({"bucket": "out-bucket", "name": "data/20240115/fechas.gz", "dataform_table": "raw.siniestros"}),
    )
    .await;
    assert_eq!(body["source"]["name"], "siniestros");
    assert_eq!(body["count"], 9);
}

#[tokio::test]
async fn ambiguous_unknown_and_invalid_names_are_the_callers_fault() {
    let service = serve("sample_v3.compiled.json").await;
    let (status, body) = service.closure(json!({"table": "clientes"})).await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "ambiguous_table");
    assert_eq!(body["error"]["retryable"], false);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("acme-dwh-prod.staging.clientes")
    );
    let (status, body) = service.closure(json!({"table": "raw.no_existe"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_table"))
    );
    for bad in [
        json!({"table": "a.b.c.d"}),
        json!({}),
        json!({"bucket": "b", "name": "../x"}),
        json!({"table": 3}),
    ] {
        let (status, body) = service.closure(bad.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn invoke_without_dependents_is_skipped_and_dry_run_shows_the_closure() {
    let service = serve("sample_v3.compiled.json").await;
    let (status, body) = service.invoke(json!({"table": "productos"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["invocation"], Value::Null);
    assert_eq!(body["skipped"], true);
    assert_eq!(body["actions"], json!([]));
    let (status, body) = service
        .invoke(json!({"table": "lkp_fechas", "dry_run": true}))
        .await;
    assert_eq!(
        (status, body["count"].clone(), body["invocation"].clone()),
        (200, json!(16), Value::Null)
    );
}

#[tokio::test]
async fn invoke_needs_the_api_when_the_graph_comes_from_a_file() {
    let service = serve("sample_v3.compiled.json").await;
    let (status, body) = service.invoke(json!({"table": "lkp_fechas"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (501, Some("invocations_unavailable"))
    );
}

#[tokio::test]
async fn a_graph_file_with_compilation_errors_answers_422_with_the_messages() {
    let service = serve("broken_v3.compiled.json").await;
    let (status, body) = service.closure(json!({"table": "x"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("compilation_failed"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_existe")
    );
}
