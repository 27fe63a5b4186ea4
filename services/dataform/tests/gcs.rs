//! Cloud Storage as production uses it, through fake-gcs-server: a `gs://` graph file, and
//! idempotency records shared by instances. One test, because the storage client finds the
//! emulator through a process-wide variable.

mod common;

use common::{REPOSITORY, Service, fixture};
use serde_json::json;
use sigma_dataform::config::{ApiSettings, CompileFrom, Config, GraphOrigin};
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
    let records = gcs.list("sigma-state").await.unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0].name.starts_with("dataform/invocations/"));
}
