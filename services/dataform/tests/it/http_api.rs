//! The API path: the official client against the fake Dataform REST API.

use crate::common;

use common::{
    Api, REPOSITORY, Service, api_config, assert_refused, compiled, expected_lkp_fechas, keys,
    sample_fake,
};
use std::time::Duration;

use serde_json::{Value, json};
use sigma_dataform::Invoker;

#[tokio::test]
async fn the_closure_from_an_api_compilation_reads_every_page_and_matches_the_file() {
    let Api { fake, service } = Api::start().await;
    let (status, body) = service.closure(json!({"table": "lkp_fechas"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body["actions"]), expected_lkp_fechas());
    let (_, agentes) = service.closure(json!({"table": "raw.agentes"})).await;
    assert_eq!(agentes["count"], 10);
    assert_eq!(
        fake.handle.compile_calls(),
        1,
        "the compilation is reused within its TTL"
    );
}

#[tokio::test]
async fn concurrent_requests_share_one_compilation() {
    let Api { fake, service } = Api::start().await;
    let requests = (0..16).map(|_| service.closure(json!({"table": "lkp_fechas"})));
    for (status, _) in futures::future::join_all(requests).await {
        assert_eq!(status, 200);
    }
    assert_eq!(fake.handle.compile_calls(), 1);
}

#[tokio::test]
async fn compilation_errors_answer_422_with_the_compilers_messages() {
    let Api { fake, service } = Api::start().await;
    fake.handle.set_compilation_errors(vec![
        json!({"path": "definitions/x.sqlx", "message": "Could not resolve \"no_existe\""}),
    ]);
    let (status, body) = service.closure(json!({"table": "lkp_fechas"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("compilation_failed"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("definitions/x.sqlx: Could not resolve")
    );
}

#[tokio::test]
async fn invoke_creates_one_invocation_for_exactly_the_closure() {
    let Api { fake, service } = Api::start().await;
    let (status, body) = service
        .invoke(json!({"table": "raw.lkp_fechas", "fully_refresh_incremental": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "RUNNING");
    assert_eq!(body["skipped"], false);
    assert!(
        body["invocation"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{REPOSITORY}/workflowInvocations/"))
    );
    let created = fake.handle.created_invocations();
    assert_eq!(created.len(), 1);
    let request = &created[0];
    assert_eq!(request["compilationResult"], body["compilation_result"]);
    let config = &request["invocationConfig"];
    assert_eq!(keys(&config["includedTargets"]), expected_lkp_fechas());
    assert_ne!(
        config.get("transitiveDependentsIncluded"),
        Some(&json!(true))
    );
    assert_ne!(
        config.get("transitiveDependenciesIncluded"),
        Some(&json!(true))
    );
    assert_eq!(config["fullyRefreshIncrementalTablesEnabled"], true);
    assert_eq!(
        config["serviceAccount"],
        "dataform-runner@acme-dwh-prod.iam.gserviceaccount.com"
    );
}

#[tokio::test]
async fn an_empty_closure_never_creates_an_invocation() {
    let Api { fake, service } = Api::start().await;
    let (status, body) = service
        .invoke(json!({"table": "productos", "idempotency_key": "b/data/productos.gz/1"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            body["invocation"].clone(),
            body["skipped"].clone(),
            body["actions"].clone()
        ),
        (Value::Null, json!(true), json!([]))
    );
    assert!(fake.handle.created_invocations().is_empty());
}

#[tokio::test]
async fn a_replay_with_the_same_key_returns_the_invocation_already_created() {
    let Api { fake, service } = Api::start().await;
    let request = json!({"bucket": "out-bucket", "name": "data/20240115/lkp_fechas.gz", "generation": "1705312800123456"});
    let (_, first) = service.invoke(request.clone()).await;
    let (status, second) = service.invoke(request).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["invocation"], first["invocation"]);
    assert_eq!(second["replayed"], true);
    assert_eq!(second["actions"], first["actions"]);
    assert_eq!(fake.handle.created_invocations().len(), 1);
}

#[tokio::test]
async fn concurrent_replays_create_a_single_invocation() {
    let Api { fake, service } = Api::start().await;
    service.closure(json!({"table": "lkp_fechas"})).await;
    let request =
        json!({"table": "lkp_fechas", "idempotency_key": "out-bucket/data/lkp_fechas.gz/7"});
    let answers = futures::future::join_all((0..8).map(|_| service.invoke(request.clone()))).await;
    let mut invocations = Vec::new();
    for (status, body) in answers {
        match status {
            200 => invocations.push(body["invocation"].as_str().unwrap().to_owned()),
            503 => assert_eq!(
                (
                    body["error"]["code"].as_str(),
                    body["error"]["retryable"].as_bool()
                ),
                (Some("invocation_in_progress"), Some(true))
            ),
            other => panic!("{other}: {body}"),
        }
    }
    invocations.dedup();
    assert_eq!(invocations.len(), 1);
    assert_eq!(fake.handle.created_invocations().len(), 1);
}

#[tokio::test]
async fn a_failed_create_frees_the_key_for_the_retry() {
    let Api { fake, service } = Api::start().await;
    service.closure(json!({"table": "lkp_fechas"})).await;
    let request = json!({"table": "lkp_fechas", "idempotency_key": "k-1"});
    fake.handle.fail_next(503, 1);
    let (status, body) = service.invoke(request.clone()).await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["error"]["retryable"].as_bool()
        ),
        (503, Some("dataform_unavailable"), Some(true))
    );
    let (status, body) = service.invoke(request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fake.handle.created_invocations().len(), 1);
}

#[tokio::test]
async fn google_throttling_answers_429_and_server_errors_503_both_retryable() {
    for (injected, answered) in [(429, 429), (500, 503)] {
        let fake = sample_fake().await;
        let mut config = api_config(&fake.endpoint);
        config.retry = Duration::from_millis(100);
        let service = Service::start(config).await;
        fake.handle.fail_next(injected, 1);
        let (status, body) = service.closure(json!({"table": "lkp_fechas"})).await;
        assert_eq!(
            (status, body["error"]["retryable"].as_bool()),
            (answered, Some(true)),
            "{injected}: {body}"
        );
        // A failed compilation is shared until its backoff ends (tests/graph_loading.rs).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (status, _) = service.closure(json!({"table": "lkp_fechas"})).await;
        assert_eq!(
            status, 200,
            "the first request after the backoff compiles again"
        );
    }
}

#[tokio::test]
async fn status_reports_state_counts_and_failures_from_every_page() {
    let Api { fake, service } = Api::start().await;
    fake.handle.set_page_size(3);
    let (_, created) = service.invoke(json!({"table": "lkp_fechas"})).await;
    let name = created["invocation"].as_str().unwrap();
    let id = name.rsplit('/').next().unwrap();
    let (status, running) = service.get(&format!("/invocations/{id}")).await;
    assert_eq!(status, 200, "{running}");
    assert_eq!(
        (running["state"].as_str(), running["terminal"].as_bool()),
        (Some("RUNNING"), Some(false))
    );
    assert_eq!(running["actions"]["PENDING"], 16);

    fake.handle
        .complete(
            id,
            &[(
                "acme-dwh-prod.warehouse.cal_resumen",
                "Query error: division by zero",
            )],
        )
        .unwrap();
    let (_, done) = service
        .get(&format!("/invocations/{}", name.replace('/', "%2F")))
        .await;
    assert_eq!(
        (done["state"].as_str(), done["terminal"].as_bool()),
        (Some("FAILED"), Some(true))
    );
    assert_eq!(done["invocation"], name);
    let (_, by_plain_name) = service.get(&format!("/invocations/{name}")).await;
    assert_eq!(by_plain_name, done);
    assert_eq!(
        done["failed"],
        json!([{"target": "acme-dwh-prod.warehouse.cal_resumen", "failure_reason": "Query error: division by zero"}])
    );
    let counts = done["actions"].as_object().unwrap();
    assert_eq!(
        counts.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        16
    );
    assert_eq!(counts["FAILED"], 1);
    assert!(
        counts["SKIPPED"].as_u64().unwrap() >= 2,
        "rpt_kpi_siniestralidad and its dependents: {done}"
    );
}

#[tokio::test]
async fn unknown_and_malformed_invocations_are_the_callers_fault() {
    let Api { fake, service } = Api::start().await;
    let (status, body) = service.get("/invocations/does-not-exist").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_invocation"))
    );
    let (status, _) = service.get("/invocations/bad%20id").await;
    assert_eq!(status, 400);
    fake.handle.fail_next(429, 1);
    let (status, body) = service.get("/invocations/whatever").await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["error"]["retryable"].as_bool()
        ),
        (429, Some("quota_exhausted"), Some(true))
    );
}

/// The fake's conversion of a compiled graph must give what the API would: same targets,
/// same kind of compiled object, same dependencies and `disabled` flags as the API sample.
#[test]
fn the_fake_converts_a_compiled_graph_into_the_apis_shape() {
    let sample = compiled("sample_v3.compilationResults.query.page1.json");
    let summary = |actions: &[Value]| {
        let mut rows: Vec<String> = actions
            .iter()
            .map(|a| {
                // The sample writes a declaration without a description as no object at all.
                let kind = ["relation", "operations", "assertion"]
                    .into_iter()
                    .find(|k| a.get(*k).is_some())
                    .unwrap_or("declaration");
                let body = a.get(kind).unwrap_or(&Value::Null);
                let deps = body
                    .get("dependencyTargets")
                    .map(|d| keys(d).join(","))
                    .unwrap_or_default();
                format!(
                    "{} {kind} {:?} [{deps}] {}",
                    keys(&json!([a["target"]]))[0],
                    body.get("relationType"),
                    body.get("disabled") == Some(&json!(true))
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let converted = sigma_fakes::dataform::api_actions(&compiled("sample_v3.compiled.json"));
    assert_eq!(
        summary(&converted),
        summary(sample["compilationResultActions"].as_array().unwrap())
    );
}

#[tokio::test]
async fn invocations_created_and_skipped_are_published_once_and_replays_are_not() {
    const TOPIC: &str = "projects/acme-dwh-prod/topics/sigma-events";
    let fake = sample_fake().await;
    let pubsub = sigma_fakes::pubsub::FakePubsub::start(&[TOPIC])
        .await
        .unwrap();
    let events = sigma_shared::events::Events::connect(
        Some(TOPIC.parse().unwrap()),
        Some(pubsub.emulator_host()),
    )
    .await
    .unwrap();
    let invoker = Invoker::new(api_config(&fake.endpoint))
        .await
        .unwrap()
        .with_events(events);
    let service = Service::serve(invoker).await;
    let loaded = json!({
        "table": "lkp_fechas",
        "bucket": "company_output_bucket",
        "name": "data/20240115/lkp_fechas.gz",
        "generation": "17",
        "idempotency_key": "company_trigger_bucket/data/20240115/lkp_fechas.gz.encrypted/16",
    });
    let (status, created) = service.invoke(loaded.clone()).await;
    assert_eq!(status, 200, "{created}");
    let (status, replay) = service.invoke(loaded).await;
    assert_eq!((status, &replay["replayed"]), (200, &json!(true)));
    let (status, _) = service.invoke(json!({"table": "productos"})).await;
    assert_eq!(status, 200);

    let messages = pubsub.wait_for(2).await;
    let types: Vec<&str> = messages
        .iter()
        .map(|m| m.attributes["event_type"].as_str())
        .collect();
    assert_eq!(types, ["sigma.dataform.invoked", "sigma.dataform.skipped"]);
    let invoked = messages[0].json().unwrap();
    assert_eq!(
        invoked["object"],
        "gs://company_output_bucket/data/20240115/lkp_fechas.gz"
    );
    assert_eq!(invoked["generation"], "17");
    assert_eq!(invoked["entity"], "lkp_fechas");
    assert_eq!(invoked["detail"]["invocation"], created["invocation"]);
    let skipped = messages[1].json().unwrap();
    assert_eq!(skipped["object"], Value::Null);
    assert!(!messages[1].attributes.contains_key("object"));
}

#[tokio::test]
async fn unknown_fields_are_refused_and_create_nothing() {
    let Api { fake, service } = Api::start().await;
    let refused = service
        .invoke(json!({"table": "lkp_fechas", "dryRun": true}))
        .await;
    assert_refused(&refused, 400, "invalid_request");
    assert!(
        refused.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dryRun"),
        "{}",
        refused.1
    );
    assert!(fake.handle.created_invocations().is_empty());
    for body in [
        json!({"table": "lkp_fechas", "tabel": "x"}),
        json!({"table": "lkp_fechas", "idempotency_key": "k", "dry_run": false, "extra": 1}),
    ] {
        assert_refused(&service.invoke(body.clone()).await, 400, "invalid_request");
        assert_refused(&service.closure(body).await, 400, "invalid_request");
    }
    assert!(fake.handle.created_invocations().is_empty());
    assert_refused(
        &service.get("/invocations/some-id?actionsSample=3").await,
        400,
        "invalid_request",
    );
    assert_refused(
        &service
            .get("/invocations/some-id?actions_sample=many")
            .await,
        400,
        "invalid_request",
    );
    assert_refused(
        &service.get("/invocations/%FF").await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn dataform_aborted_over_http_409_is_transient_and_the_retry_creates_one_invocation() {
    let Api { fake, service } = Api::start().await;
    service.closure(json!({"table": "lkp_fechas"})).await;
    let request = json!({"table": "lkp_fechas", "idempotency_key": "aborted-1"});
    fake.handle.fail_next_as(409, "ABORTED", 1);
    let refused = service.invoke(request.clone()).await;
    assert_refused(&refused, 503, "dataform_unavailable");
    let (status, body) = service.invoke(request).await;
    assert_eq!((status, &body["replayed"]), (200, &json!(false)), "{body}");
    assert_eq!(fake.handle.created_invocations().len(), 1);
}

#[tokio::test]
async fn actions_sample_bounds_the_lists_and_count_stays_the_total() {
    let Api { fake, service } = Api::start().await;
    let (status, closure) = service
        .closure(json!({"table": "lkp_fechas", "actions_sample": 2}))
        .await;
    assert_eq!(status, 200, "{closure}");
    assert_eq!(
        (
            closure["actions"].as_array().unwrap().len(),
            &closure["count"]
        ),
        (2, &json!(16))
    );

    let request = json!({"table": "lkp_fechas", "idempotency_key": "sampled", "actions_sample": 3});
    let (status, invoked) = service.invoke(request.clone()).await;
    assert_eq!(status, 200, "{invoked}");
    assert_eq!(
        (
            invoked["actions"].as_array().unwrap().len(),
            &invoked["count"]
        ),
        (3, &json!(16))
    );
    let created = fake.handle.created_invocations();
    assert_eq!(
        created[0]["invocationConfig"]["includedTargets"]
            .as_array()
            .unwrap()
            .len(),
        16,
        "the sample bounds the answer, never the invocation"
    );
    let (_, replay) = service.invoke(request).await;
    assert_eq!(
        (
            replay["actions"].as_array().unwrap().len(),
            &replay["count"],
            &replay["replayed"]
        ),
        (3, &json!(16), &json!(true))
    );
    let (_, all) = service
        .invoke(json!({"table": "lkp_fechas", "idempotency_key": "sampled"}))
        .await;
    assert_eq!(
        all["actions"].as_array().unwrap().len(),
        16,
        "absent: every action"
    );

    let id = invoked["invocation"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    fake.handle
        .complete(
            &id,
            &[
                ("acme-dwh-prod.warehouse.cal_resumen", "division by zero"),
                ("acme-dwh-prod.warehouse.dim_fecha", "quota"),
            ],
        )
        .unwrap();
    let (status, sampled) = service
        .get(&format!("/invocations/{id}?actions_sample=1"))
        .await;
    assert_eq!(status, 200, "{sampled}");
    assert_eq!(sampled["count"], 16);
    assert_eq!(sampled["actions"]["FAILED"], 2);
    assert_eq!(sampled["failed"].as_array().unwrap().len(), 1);
    let (_, full) = service.get(&format!("/invocations/{id}")).await;
    assert_eq!(full["failed"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_replay_lists_the_invocations_own_targets() {
    let Api { fake, service } = Api::start().await;
    let request = json!({"table": "lkp_fechas", "idempotency_key": "own-targets"});
    let (_, first) = service.invoke(request.clone()).await;
    let (status, replay) = service.invoke(request).await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["replayed"], true);
    assert_eq!(replay["actions"], first["actions"]);
    assert_eq!(replay["count"], 16);
    assert_eq!(fake.handle.created_invocations().len(), 1);
}

fn load(attempt: u32) -> Value {
    json!({
        "bucket": "out-bucket",
        "name": "data/20240115/lkp_fechas.gz",
        "generation": "1705312800123456",
        "attempt": attempt,
    })
}

fn invocation_id(answer: &Value) -> String {
    answer["invocation"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_rerun_after_a_failed_invocation_runs_only_what_did_not_succeed_and_then_adopts_its_success()
 {
    let Api { fake, service } = Api::start().await;
    let (_, first) = service.invoke(load(1)).await;
    let first_id = invocation_id(&first);
    fake.handle
        .complete(
            &first_id,
            &[("acme-dwh-prod.warehouse.cal_resumen", "division by zero")],
        )
        .unwrap();
    let (_, failed) = service.get(&format!("/invocations/{first_id}")).await;
    let counts = &failed["actions"];
    let did_not_succeed =
        16 - counts["SUCCEEDED"].as_u64().unwrap_or(0) - counts["DISABLED"].as_u64().unwrap_or(0);
    assert!(did_not_succeed >= 3, "{failed}");

    let (status, second) = service.invoke(load(2)).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["invocation"], first["invocation"]);
    assert_eq!(
        (second["attempt"].as_u64(), second["replayed"].as_bool()),
        (Some(2), Some(false))
    );
    let created = fake.handle.created_invocations();
    assert_eq!(created.len(), 2);
    let rerun = keys(&created[1]["invocationConfig"]["includedTargets"]);
    assert_eq!(rerun.len() as u64, did_not_succeed, "{rerun:?}");
    assert!(rerun.contains(&"acme-dwh-prod.warehouse.cal_resumen".to_owned()));
    assert!(rerun.iter().all(|t| expected_lkp_fechas().contains(t)));

    let (_, again) = service.invoke(load(2)).await;
    assert_eq!(
        (again["invocation"].clone(), again["replayed"].as_bool()),
        (second["invocation"].clone(), Some(true))
    );
    fake.handle.complete(&invocation_id(&second), &[]).unwrap();
    let (_, third) = service.invoke(load(3)).await;
    assert_eq!(third["invocation"], second["invocation"], "{third}");
    assert_eq!(
        (third["attempt"].as_u64(), third["replayed"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(
        fake.handle.created_invocations().len(),
        2,
        "a success is never run again"
    );
}

#[tokio::test]
async fn a_rerun_adopts_a_running_invocation_and_rerun_all_covers_the_whole_closure() {
    let Api { fake, service } = Api::start().await;
    let (_, first) = service.invoke(load(1)).await;
    let (_, adopted) = service.invoke(load(2)).await;
    assert_eq!(adopted["invocation"], first["invocation"]);
    assert_eq!(adopted["attempt"], 1);
    assert_eq!(fake.handle.created_invocations().len(), 1);

    fake.handle
        .complete(
            &invocation_id(&first),
            &[("acme-dwh-prod.warehouse.cal_resumen", "division by zero")],
        )
        .unwrap();
    let mut all = load(3);
    all["rerun"] = json!("all");
    let (status, rerun) = service.invoke(all).await;
    assert_eq!(status, 200, "{rerun}");
    let created = fake.handle.created_invocations();
    assert_eq!(created.len(), 2);
    assert_eq!(
        keys(&created[1]["invocationConfig"]["includedTargets"]),
        expected_lkp_fechas()
    );

    let mut bad = load(4);
    bad["rerun"] = json!("some");
    assert_refused(&service.invoke(bad).await, 400, "invalid_request");
    assert_refused(&service.invoke(load(0)).await, 400, "invalid_request");
}

#[tokio::test]
async fn cancel_stops_a_running_invocation_and_answers_an_ended_one_with_its_state() {
    let Api { fake, service } = Api::start().await;
    let (_, created) = service.invoke(load(1)).await;
    let id = invocation_id(&created);
    let (status, cancelled) = service
        .post(&format!("/invocations/{id}:cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(
        (
            cancelled["cancel_requested"].as_bool(),
            cancelled["state"].as_str(),
            cancelled["terminal"].as_bool()
        ),
        (Some(true), Some("CANCELLED"), Some(true))
    );
    assert_eq!(cancelled["actions"]["CANCELLED"], 16);

    let (status, again) = service
        .post(&format!("/invocations/{id}:cancel"), json!({}))
        .await;
    assert_eq!(
        (status, again["cancel_requested"].as_bool()),
        (200, Some(false))
    );
    assert_eq!(again["state"], "CANCELLED");

    let (_, other) = service
        .invoke(json!({"table": "lkp_fechas", "idempotency_key": "k2"}))
        .await;
    let other_id = invocation_id(&other);
    fake.handle.complete(&other_id, &[]).unwrap();
    let (status, ended) = service
        .post(&format!("/invocations/{other_id}:cancel"), json!({}))
        .await;
    assert_eq!(
        (
            status,
            ended["state"].as_str(),
            ended["cancel_requested"].as_bool()
        ),
        (200, Some("SUCCEEDED"), Some(false))
    );

    assert_refused(
        &service
            .post(&format!("/invocations/{id}:pause"), json!({}))
            .await,
        404,
        "not_found",
    );
    assert_refused(
        &service.post("/invocations/nope:cancel", json!({})).await,
        404,
        "unknown_invocation",
    );
}
