//! Cloud Storage as production uses it, through fake-gcs-server: a `gs://` graph file,
//! idempotency records shared by instances, and their size. The storage client finds the
//! emulator through a process-wide variable, so only one test here relies on it; the
//! others give their client the emulator's address.

mod common;

use common::{REPOSITORY, Service, api_config, fixture, generated, storage};
use serde_json::json;
use sigma_dataform::Invoker;
use sigma_dataform::config::{ApiSettings, CompileFrom, Config, GraphOrigin};
use sigma_dataform::idempotency::{Ledger, Record, record_name};
use sigma_fakes::dataform::FakeDataform;
use sigma_fakes::gcs::FakeGcs;

#[tokio::test]
async fn graphs_load_from_gs_uris_and_replays_are_recognised_by_another_instance() {
    let gcs = FakeGcs::start(&["sigma-graphs", "sigma-state"])
        .await
        .unwrap();
    // SAFETY: the only test in this binary; set before any storage client is built.
    unsafe { std::env::set_var("STORAGE_EMULATOR_HOST", &gcs.endpoint) };

    gcs.put(
        "sigma-graphs",
        "dataform/compiled.json",
        fixture("sample_v2.compiled.json"),
    )
    .await
    .unwrap();
    let from_gcs = Service::start(Config::new(GraphOrigin::Gcs(
        "gs://sigma-graphs/dataform/compiled.json"
            .parse::<sigma_shared::GsUri>()
            .unwrap()
            .0,
    )))
    .await;
    let (status, body) = from_gcs.closure(json!({"table": "raw.agentes"})).await;
    assert_eq!((status, body["count"].clone()), (200, json!(6)), "{body}");

    let fake =
        FakeDataform::start(&serde_json::from_slice(&fixture("sample_v3.compiled.json")).unwrap())
            .await
            .unwrap();
    let config = Config {
        state_bucket: Some("sigma-state".parse().unwrap()),
        settle: std::time::Duration::ZERO,
        ..Config::new(GraphOrigin::Api(ApiSettings {
            repository: REPOSITORY.into(),
            compile_from: CompileFrom::GitCommitish("main".into()),
            endpoint: Some(fake.endpoint.clone()),
            service_account: None,
        }))
    };
    let first_instance = Service::start(config.clone()).await;
    let second_instance = Service::start(config).await;
    let request =
        json!({"bucket": "out-bucket", "name": "data/20240115/lkp_fechas.gz", "generation": 42});
    let (status, first) = first_instance.invoke(request.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = second_instance.invoke(request).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["invocation"], first["invocation"]);
    assert_eq!(second["replayed"], true);
    assert_eq!(fake.handle.created_invocations().len(), 1);
    let names: Vec<String> = gcs
        .list("sigma-state")
        .await
        .unwrap()
        .into_iter()
        .map(|object| object.name)
        .collect();
    let records: Vec<&String> = names
        .iter()
        .filter(|name| name.starts_with("dataform/invocations/"))
        .collect();
    assert_eq!(records.len(), 1, "{names:?}");
    assert!(names.contains(&"dataform/schedule.json".to_owned()));
}

/// Issue 11 §4.4: a claim record holds a digest of the targets, never the list; the
/// invocation keeps the list (and a replay reads it from there).
#[tokio::test]
async fn the_record_of_a_100k_action_closure_stays_small() {
    let gcs = FakeGcs::start(&["sigma-state"]).await.unwrap();
    let fake = FakeDataform::start(&generated(100_000)).await.unwrap();
    fake.handle.set_page_size(100_000);
    let invoker = Invoker::new(api_config(&fake.endpoint))
        .await
        .unwrap()
        .with_ledger(Ledger::Gcs {
            client: Box::new(storage(&gcs.endpoint).await),
            bucket: "sigma-state".parse().unwrap(),
        });
    let service = Service::serve(invoker).await;
    let request = json!({"table": "raw.src", "idempotency_key": "big", "actions_sample": 20});
    let (status, body) = service.invoke(request.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["count"].clone(),
            body["actions"].as_array().unwrap().len()
        ),
        (json!(100_000), 20)
    );
    let created = fake.handle.created_invocations();
    assert_eq!(
        created[0]["invocationConfig"]["includedTargets"]
            .as_array()
            .unwrap()
            .len(),
        100_000
    );

    let stored = gcs
        .get("sigma-state", &record_name("big"))
        .await
        .unwrap()
        .unwrap();
    eprintln!(
        "the record of a 100,000-action invocation is {} bytes",
        stored.len()
    );
    assert!(stored.len() < 1024, "{} bytes", stored.len());
    let record: Record = serde_json::from_slice(&stored).unwrap();
    assert!(
        matches!(record, Record::Created { count: 100_000, .. }),
        "{record:?}"
    );

    let (status, replay) = service.invoke(request).await;
    assert_eq!(
        (status, &replay["replayed"], &replay["count"]),
        (200, &json!(true), &json!(100_000))
    );
}
