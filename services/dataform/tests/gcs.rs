//! Cloud Storage as production uses it, through fake-gcs-server: a `gs://` graph file, and
//! idempotency records shared by instances. One test, because the storage client finds the
//! emulator through a process-wide variable.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sigma_dataform::config::{ApiSettings, CompileFrom, Config, GraphOrigin};
use sigma_dataform::{AppState, app};
use sigma_fakes::dataform::FakeDataform;
use sigma_fakes::gcs::FakeGcs;

const REPOSITORY: &str = "projects/acme-dwh-prod/locations/us-central1/repositories/dwh";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn serve(config: Config) -> String {
    let state = AppState::new(config).await.unwrap();
    let address = sigma_shared::server::spawn(app(Arc::new(state)))
        .await
        .unwrap();
    format!("http://{address}")
}

async fn post(base: &str, body: Value, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

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
    let from_gcs = serve(Config {
        origin: GraphOrigin::Gcs(
            "gs://sigma-graphs/dataform/compiled.json"
                .parse::<sigma_shared::GsUri>()
                .unwrap()
                .0,
        ),
        ttl: Duration::from_secs(60),
        state_bucket: None,
    })
    .await;
    let (status, body) = post(&from_gcs, json!({"table": "raw.agentes"}), "/closure").await;
    assert_eq!((status, body["count"].clone()), (200, json!(6)), "{body}");

    let fake =
        FakeDataform::start(&serde_json::from_slice(&fixture("sample_v3.compiled.json")).unwrap())
            .await
            .unwrap();
    let config = Config {
        origin: GraphOrigin::Api(ApiSettings {
            repository: REPOSITORY.into(),
            compile_from: CompileFrom::GitCommitish("main".into()),
            endpoint: Some(fake.endpoint.clone()),
            service_account: None,
        }),
        ttl: Duration::from_secs(300),
        state_bucket: Some("sigma-state".parse().unwrap()),
    };
    let first_instance = serve(config.clone()).await;
    let second_instance = serve(config).await;
    let request =
        json!({"bucket": "out-bucket", "name": "data/20240115/lkp_fechas.gz", "generation": 42});
    let (status, first) = post(&first_instance, request.clone(), "/invoke").await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = post(&second_instance, request, "/invoke").await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["invocation"], first["invocation"]);
    assert_eq!(second["replayed"], true);
    assert_eq!(fake.handle.created_invocations().len(), 1);
    let records = gcs.list("sigma-state").await.unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0].name.starts_with("dataform/invocations/"));
}
