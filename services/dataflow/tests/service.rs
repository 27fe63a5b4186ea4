//! sigma-dataflow over HTTP against fake-gcs-server, the fake Dataflow API and the fake
//! metadata server: the same clients production uses, only the endpoints differ.

use std::sync::Arc;

use google_cloud_storage::client::Storage;
use serde_json::{Value, json};
use sigma_dataflow::dataflow::{self, Dataflow};
use sigma_dataflow::live_registry::{Checked, LiveRegistry, Watched};
use sigma_dataflow::plan::Site;
use sigma_dataflow::registry::{Registry, SiteDefaults};
use sigma_dataflow::{Launcher, app};
use sigma_fakes::dataflow::{FakeDataflow, Method};
use sigma_fakes::faults::{Break, Fault, FaultProxy};
use sigma_fakes::gcs::FakeGcs;
use sigma_fakes::metadata::FakeMetadata;
use sigma_fakes::pubsub::FakePubsub;
use sigma_shared::events::Events;
use sigma_shared::{Attempt, Generation, GsUri};

const EXAMPLE: &str = include_str!("../../../examples/pipelines.yaml");
const OUTPUT: &str = "company_output_bucket";
const CONFIGS: &str = "company_config_bucket";
const REGISTRY_BUCKET: &str = "company_registry_bucket";
const REGISTRY_OBJECT: &str = "sigma/pipelines.yaml";
const PROJECT: &str = "company-data-prod";
const REGION: &str = "europe-west1";
const TOPIC: &str = "projects/company-data-prod/topics/sigma-events";

struct Stack {
    gcs: FakeGcs,
    /// In front of fake-gcs-server when the stack was assembled with one.
    storage_proxy: Option<FaultProxy>,
    dataflow: FakeDataflow,
    metadata: FakeMetadata,
    pubsub: FakePubsub,
    /// The service's registry, read from `gs://REGISTRY_BUCKET/REGISTRY_OBJECT`; checked
    /// for new versions only when a test asks.
    registry: Arc<LiveRegistry>,
    url: String,
    http: reqwest::Client,
}

impl Stack {
    async fn start() -> Self {
        Self::with_registry(EXAMPLE).await
    }

    async fn with_registry(yaml: &str) -> Self {
        let dataflow_fake = FakeDataflow::start().await.unwrap();
        let endpoint = dataflow_fake.endpoint();
        Self::with_dataflow_endpoint(yaml, dataflow_fake, &endpoint).await
    }

    /// The service talks to Dataflow at `endpoint` (a fault proxy in front of the fake).
    async fn with_dataflow_endpoint(
        yaml: &str,
        dataflow_fake: FakeDataflow,
        endpoint: &str,
    ) -> Self {
        Self::assemble(yaml, dataflow_fake, endpoint, false).await
    }

    /// With `proxy_storage`, the service reaches Cloud Storage through a fault proxy.
    async fn assemble(
        yaml: &str,
        dataflow_fake: FakeDataflow,
        endpoint: &str,
        proxy_storage: bool,
    ) -> Self {
        let gcs = FakeGcs::start(&[OUTPUT, CONFIGS, REGISTRY_BUCKET])
            .await
            .unwrap();
        let registry_generation = gcs
            .put(REGISTRY_BUCKET, REGISTRY_OBJECT, yaml.to_owned())
            .await
            .unwrap();
        let storage_proxy = if proxy_storage {
            Some(FaultProxy::start(&gcs.endpoint).await.unwrap())
        } else {
            None
        };
        let storage_endpoint = storage_proxy
            .as_ref()
            .map_or_else(|| gcs.endpoint.clone(), |proxy| proxy.endpoint.clone());
        let metadata = FakeMetadata::start_with("token-from-metadata", PROJECT)
            .await
            .unwrap();
        let storage = Storage::builder()
            .with_endpoint(storage_endpoint)
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .build()
            .await
            .unwrap();
        let credentials = google_cloud_auth::credentials::mds::Builder::default()
            .with_endpoint(metadata.endpoint())
            .with_scopes([dataflow::SCOPE])
            .build_access_token_credentials()
            .unwrap();
        let pubsub = FakePubsub::start(&[TOPIC]).await.unwrap();
        let events = Events::connect(Some(TOPIC.parse().unwrap()), Some(pubsub.emulator_host()))
            .await
            .unwrap();
        let registry = Registry::parse(yaml).unwrap();
        let site = Site::resolve(&registry.site, SiteDefaults::default()).unwrap();
        let registry = Arc::new(LiveRegistry::watching(
            registry,
            Watched::new(
                format!("gs://{REGISTRY_BUCKET}/{REGISTRY_OBJECT}")
                    .parse::<GsUri>()
                    .unwrap()
                    .0,
                Generation::new(registry_generation).unwrap(),
                storage.clone(),
                SiteDefaults::default(),
                site.clone(),
                events.clone(),
            ),
        ));
        let launcher = Launcher {
            registry: registry.clone(),
            site,
            storage,
            dataflow: Dataflow::new(endpoint, credentials, std::time::Duration::from_secs(10)),
            events,
        };
        let addr = sigma_shared::server::spawn(app(launcher)).await.unwrap();
        Self {
            gcs,
            storage_proxy,
            dataflow: dataflow_fake,
            metadata,
            pubsub,
            registry,
            url: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    async fn upload(&self, name: &str) -> i64 {
        self.gcs.put(OUTPUT, name, "a|b\n1|2\n").await.unwrap()
    }

    /// Uploads a new version of the registry the service watches; its generation.
    async fn publish_registry(&self, yaml: impl Into<String>) -> Generation {
        let generation = self
            .gcs
            .put(REGISTRY_BUCKET, REGISTRY_OBJECT, yaml.into())
            .await
            .unwrap();
        Generation::new(generation).unwrap()
    }

    async fn launch(&self, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/launch", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn status(&self, job_id: &str, query: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/jobs/{job_id}{query}", self.url))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn cancel(&self, job_id: &str, query: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/jobs/{job_id}:cancel{query}", self.url))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn config_objects(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .gcs
            .list(CONFIGS)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        names.sort();
        names
    }
}

fn request(name: &str, generation: i64) -> Value {
    json!({"bucket": OUTPUT, "name": name, "generation": generation.to_string()})
}

fn base36(mut n: u64) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn launch_writes_the_config_then_launches_the_template_with_every_registry_field() {
    let stack = Stack::start().await;
    let name = "data/20240115/poliza_detalle.gz";
    let generation = stack.upload(name).await;
    let (status, body) = stack.launch(request(name, generation)).await;
    assert_eq!(status, 200, "{body}");

    let job_name = format!("poliza-detalle-2024-01-15-{}", base36(generation as u64));
    let config_object = format!("configs/poliza_detalle/2024-01-15/{job_name}.config");
    let config_uri = format!("gs://{CONFIGS}/{config_object}");
    let jobs = stack.dataflow.handle.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(body["job_id"], jobs[0].id);
    assert_eq!(body["job_name"], job_name);
    assert_eq!(body["project"], PROJECT);
    assert_eq!(body["region"], REGION);
    assert_eq!(body["state"], "PENDING");
    assert_eq!(body["dataflow_state"], "JOB_STATE_PENDING");
    assert_eq!(body["entity"], "poliza_detalle");
    assert_eq!(body["fecha_lote"], "2024-01-15");
    assert_eq!(body["config_uri"], config_uri);
    assert_eq!(body["dataform_table"], "polizas");
    assert_eq!(body["adopted"], false);
    assert_eq!(
        body["console_url"],
        format!(
            "https://console.cloud.google.com/dataflow/jobs/{REGION}/{}?project={PROJECT}",
            jobs[0].id
        )
    );

    let input = format!("gs://{OUTPUT}/{name}");
    assert_eq!(
        stack.dataflow.handle.launches()[0],
        json!({"launchParameter": {
            "jobName": job_name,
            "containerSpecGcsPath": "gs://company-dataflow-templates/flex/poliza_detalle.json",
            "parameters": {
                "input": input,
                "batchDate": "2024-01-15",
                "outputTable": "company-data-prod:raw.polizas",
                "jobConfig": config_uri,
            },
            "environment": {
                "tempLocation": "gs://company-dataflow-temp/tmp",
                "stagingLocation": "gs://company-dataflow-temp/staging",
                "serviceAccountEmail": "dataflow-worker@company-data-prod.iam.gserviceaccount.com",
                "network": "company-vpc",
                "subnetwork": "regions/europe-west1/subnetworks/dataflow",
                "ipConfiguration": "WORKER_IP_PRIVATE",
                "numWorkers": 2,
                "maxWorkers": 10,
                "machineType": "n2-highmem-4",
                "launcherMachineType": "n2-standard-2",
                "workerRegion": "europe-west4",
                "diskSizeGb": 50,
                "additionalExperiments": ["use_runner_v2", "enable_prime"],
                "additionalUserLabels": {"app": "sigma", "entity": "poliza_detalle", "fecha_lote": "2024-01-15", "lote": "20240115"},
                "kmsKeyName": "projects/company-security/locations/europe-west1/keyRings/data/cryptoKeys/dataflow",
            },
        }})
    );

    let config_bytes = stack
        .gcs
        .get(CONFIGS, &config_object)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stack
            .gcs
            .get(CONFIGS, "configs/poliza_detalle_2024-01-15.config")
            .await
            .unwrap()
            .unwrap(),
        config_bytes,
        "the per-day name holds a copy of the latest upload's config"
    );
    let config: Value = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(
        config,
        json!({
            "entity": "poliza_detalle",
            "fecha_lote": "2024-01-15",
            "job_name": job_name,
            "project": PROJECT,
            "region": REGION,
            "source": {
                "uri": input,
                "bucket": OUTPUT,
                "name": name,
                "generation": generation.to_string(),
                "format": {"type": "csv", "compression": "gzip", "delimiter": ";", "header": true, "quote": "\"", "encoding": "ISO-8859-1", "null_marker": "\\N"},
            },
            "destination": {"table": "company-data-prod.raw.polizas", "write_disposition": "WRITE_APPEND", "create_disposition": "CREATE_NEVER"},
            "schema": [
                {"name": "poliza_id", "type": "STRING", "mode": "REQUIRED", "description": "Policy number"},
                {"name": "ramo", "type": "STRING", "mode": "NULLABLE"},
                {"name": "prima", "type": "NUMERIC", "mode": "NULLABLE"},
                {"name": "fecha_emision", "type": "DATE", "mode": "NULLABLE"},
                {"name": "actualizado", "type": "TIMESTAMP", "mode": "NULLABLE"},
            ],
            "validations": [
                {"check": "row_count", "min": 1, "max": 50000000},
                {"check": "not_null", "columns": ["poliza_id", "ramo"]},
                {"check": "unique", "columns": ["poliza_id"]},
                {"check": "accepted_values", "column": "ramo", "values": ["AUTO", "HOGAR", "VIDA"]},
            ],
            "dataform_table": "polizas",
        })
    );
    assert_eq!(
        stack.config_objects().await,
        vec![
            format!("configs/{job_name}.launch.json"),
            config_object,
            "configs/poliza_detalle_2024-01-15.config".to_owned()
        ]
    );
    assert!(
        stack
            .dataflow
            .handle
            .tokens()
            .iter()
            .all(|t| t == "token-from-metadata")
    );
    assert!(stack.metadata.handle.token_requests() >= 1);
}

#[tokio::test]
async fn defaults_fill_an_entry_that_names_only_its_own_fields() {
    let stack = Stack::start().await;
    let name = "data/20240116/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    let (status, body) = stack.launch(request(name, generation)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dataform_table"], "lkp_fechas");
    let launch = &stack.dataflow.handle.launches()[0]["launchParameter"];
    assert_eq!(
        launch["containerSpecGcsPath"],
        "gs://company-dataflow-templates/flex/gcs_to_bigquery.json"
    );
    assert_eq!(
        launch["parameters"]["config"],
        format!(
            "gs://company_config_bucket/configs/lkp_fechas/2024-01-16/lkp-fechas-2024-01-16-{}.config",
            base36(generation as u64)
        )
    );
    assert_eq!(launch["environment"]["maxWorkers"], 4);
    assert_eq!(
        launch["environment"]["additionalExperiments"],
        json!(["use_runner_v2"])
    );
    assert!(launch["environment"].get("numWorkers").is_none());
}

#[tokio::test]
async fn an_object_that_matches_no_entry_is_422_unknown_entity_and_nothing_happens() {
    let stack = Stack::start().await;
    let generation = stack.upload("data/20240115/otra_cosa.gz").await;
    let (status, body) = stack
        .launch(request("data/20240115/otra_cosa.gz", generation))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "unknown_entity");
    assert_eq!(body["error"]["retryable"], false);
    let (status, body) = stack
        .launch(request("data/20241399/lkp_fechas.gz", generation))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "invalid_fecha_lote");
    assert!(stack.dataflow.handle.launches().is_empty());
    assert!(stack.config_objects().await.is_empty());
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let stack = Stack::start().await;
    for body in [
        json!({"name": "data/20240115/lkp_fechas.gz"}),
        json!({"bucket": OUTPUT, "name": "../x"}),
        json!({"bucket": OUTPUT, "name": "a", "generation": "abc"}),
    ] {
        let (status, answer) = stack.launch(body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_request");
    }
}

#[tokio::test]
async fn unknown_fields_and_bad_query_strings_are_refused_as_json_invalid_request() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    let mut misspelt = request(name, generation);
    misspelt["dryRun"] = json!(true);
    let (status, answer) = stack.launch(misspelt).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_request");
    assert_eq!(answer["error"]["retryable"], false);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("dryRun"),
        "{answer}"
    );
    assert!(stack.dataflow.handle.launches().is_empty());
    assert!(stack.config_objects().await.is_empty());

    let job = stack
        .dataflow
        .handle
        .insert_job(PROJECT, REGION, "some-job", "JOB_STATE_RUNNING");
    for query in [
        "?regoin=us-central1",
        "?region=Bad_Region",
        "?region=a&region=b",
    ] {
        let (status, answer) = stack.status(&job, query).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request", "{query}");
        assert_eq!(answer["error"]["retryable"], false, "{query}");
    }
    let (status, answer) = stack.status(&job, &format!("?region={REGION}")).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn without_a_generation_the_current_upload_is_launched_and_a_missing_object_is_404() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let (status, body) = stack.launch(json!({"bucket": OUTPUT, "name": name})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "object_not_found");
    let generation = stack.upload(name).await;
    let (status, body) = stack.launch(json!({"bucket": OUTPUT, "name": name})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["generation"], generation.to_string());
}

#[tokio::test]
async fn duplicate_delivery_after_the_job_finished_returns_the_recorded_job() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    let (_, first) = stack.launch(request(name, generation)).await;
    let job_id = first["job_id"].as_str().unwrap().to_owned();
    let mut last = Value::Null;
    for _ in 0..5 {
        let (status, body) = stack.status(&job_id, "").await;
        assert_eq!(status, 200);
        last = body;
        if last["terminal"] == true {
            break;
        }
    }
    assert_eq!(last["state"], "SUCCEEDED");
    let (status, again) = stack.launch(request(name, generation)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["job_id"], job_id);
    assert_eq!(again["adopted"], true);
    assert_eq!(again["state"], "SUCCEEDED");
    assert_eq!(stack.dataflow.handle.jobs().len(), 1);
    assert_eq!(stack.dataflow.handle.launches().len(), 1);
}

#[tokio::test]
async fn a_running_job_of_the_same_name_is_adopted_when_dataflow_answers_409() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    let job_name = format!("lkp-fechas-2024-01-15-{}", base36(generation as u64));
    let running = stack
        .dataflow
        .handle
        .insert_job(PROJECT, REGION, &job_name, "JOB_STATE_RUNNING");
    stack.dataflow.handle.hide_from_lists(&running, 1);
    let (status, body) = stack.launch(request(name, generation)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["job_id"], running);
    assert_eq!(body["adopted"], true);
    assert_eq!(body["state"], "RUNNING");
    assert_eq!(stack.dataflow.handle.jobs().len(), 1, "no second job");
    let record: Value = serde_json::from_slice(
        &stack
            .gcs
            .get(CONFIGS, &format!("configs/{job_name}.launch.json"))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["job_id"], running);
}

#[tokio::test]
async fn a_launch_that_failed_at_the_client_but_created_the_job_is_adopted_on_retry() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    stack.dataflow.handle.create_then_fail(503);
    let (status, body) = stack.launch(request(name, generation)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["retryable"], true);
    let (status, body) = stack.launch(request(name, generation)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["adopted"], true);
    assert_eq!(body["job_id"], stack.dataflow.handle.jobs()[0].id);
    assert_eq!(stack.dataflow.handle.jobs().len(), 1);
}

#[tokio::test]
async fn concurrent_duplicate_deliveries_launch_one_job() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    let (a, b) = tokio::join!(
        stack.launch(request(name, generation)),
        stack.launch(request(name, generation))
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    assert_eq!(a.1["job_id"], b.1["job_id"]);
    assert_eq!(stack.dataflow.handle.jobs().len(), 1);
    let adopted = [&a.1, &b.1].iter().filter(|r| r["adopted"] == true).count();
    assert_eq!(adopted, 1);
}

#[tokio::test]
async fn a_new_upload_of_the_same_day_gets_its_own_job_and_an_older_one_is_refused() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let first = stack.upload(name).await;
    let (_, one) = stack.launch(request(name, first)).await;
    let second = stack.upload(name).await;
    let (status, two) = stack.launch(request(name, second)).await;
    assert_eq!(status, 200, "{two}");
    assert_ne!(one["job_name"], two["job_name"]);
    assert_eq!(two["adopted"], false);
    let config: Value = serde_json::from_slice(
        &stack
            .gcs
            .get(CONFIGS, "configs/lkp_fechas_2024-01-15.config")
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(config["source"]["generation"], second.to_string());
    assert_eq!(config["job_name"], two["job_name"]);

    let (status, again) = stack.launch(request(name, first)).await;
    assert_eq!(
        status, 200,
        "the first upload's duplicate still answers with its job: {again}"
    );
    assert_eq!(again["job_id"], one["job_id"]);

    let third = stack.upload(name).await;
    stack.upload(name).await;
    let (status, stale) = stack.launch(request(name, third)).await;
    assert_eq!(status, 409, "{stale}");
    assert_eq!(stale["error"]["code"], "stale_generation");
    assert_eq!(stale["error"]["retryable"], false);
    assert_eq!(stack.dataflow.handle.jobs().len(), 2);
}

#[tokio::test]
async fn each_same_day_upload_launches_with_a_config_describing_its_own_generation() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let first = stack.upload(name).await;
    let (status, one) = stack.launch(request(name, first)).await;
    assert_eq!(status, 200, "{one}");
    let second = stack.upload(name).await;
    let (status, two) = stack.launch(request(name, second)).await;
    assert_eq!(status, 200, "{two}");

    let launches = stack.dataflow.handle.launches();
    assert_eq!(launches.len(), 2);
    for (launch, generation, answer) in [(&launches[0], first, &one), (&launches[1], second, &two)]
    {
        let uri = launch["launchParameter"]["parameters"]["config"]
            .as_str()
            .unwrap();
        assert_eq!(answer["config_uri"], uri);
        let object = uri.strip_prefix(&format!("gs://{CONFIGS}/")).unwrap();
        let config: Value =
            serde_json::from_slice(&stack.gcs.get(CONFIGS, object).await.unwrap().unwrap())
                .unwrap();
        assert_eq!(
            config["source"]["generation"],
            generation.to_string(),
            "{uri}"
        );
        assert_eq!(config["job_name"], answer["job_name"], "{uri}");
    }
    assert_ne!(one["config_uri"], two["config_uri"]);
}

#[tokio::test]
async fn dry_run_returns_the_launch_request_and_config_and_writes_and_launches_nothing() {
    let stack = Stack::start().await;
    let name = "data/20240115/poliza_detalle.gz";
    let generation = stack.upload(name).await;
    let mut body = request(name, generation);
    body["dry_run"] = json!(true);
    let (status, answer) = stack.launch(body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["dry_run"], true);
    assert_eq!(answer["launch_request"]["validateOnly"], true);
    assert_eq!(
        answer["launch_request"]["launchParameter"]["jobName"],
        answer["plan"]["job_name"]
    );
    assert_eq!(
        answer["plan"]["config"]["source"]["generation"],
        generation.to_string()
    );
    assert_eq!(
        answer["plan"]["config_uri"],
        format!(
            "gs://company_config_bucket/configs/poliza_detalle/2024-01-15/{}.config",
            answer["plan"]["job_name"].as_str().unwrap()
        )
    );
    assert!(stack.config_objects().await.is_empty());
    assert!(stack.dataflow.handle.jobs().is_empty());
    assert_eq!(stack.dataflow.handle.launches()[0]["validateOnly"], true);
}

#[tokio::test]
async fn status_maps_every_dataflow_state_and_returns_a_failed_jobs_errors() {
    let stack = Stack::start().await;
    let table = [
        ("JOB_STATE_DONE", "SUCCEEDED", true),
        ("JOB_STATE_FAILED", "FAILED", true),
        ("JOB_STATE_CANCELLED", "CANCELLED", true),
        ("JOB_STATE_UPDATED", "CANCELLED", true),
        ("JOB_STATE_DRAINED", "CANCELLED", true),
        ("JOB_STATE_QUEUED", "PENDING", false),
        ("JOB_STATE_PENDING", "PENDING", false),
        ("JOB_STATE_STOPPED", "PENDING", false),
        ("JOB_STATE_RUNNING", "RUNNING", false),
        ("JOB_STATE_DRAINING", "RUNNING", false),
        ("JOB_STATE_CANCELLING", "RUNNING", false),
        ("JOB_STATE_RESOURCE_CLEANING_UP", "RUNNING", false),
        ("JOB_STATE_UNKNOWN", "PENDING", false),
        ("JOB_STATE_INVENTED_LATER", "PENDING", false),
    ];
    for (dataflow_state, state, terminal) in table {
        let id = stack
            .dataflow
            .handle
            .insert_job(PROJECT, REGION, "some-job", dataflow_state);
        let (status, body) = stack.status(&id, "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["job_id"], id);
        assert_eq!(body["job_name"], "some-job");
        assert_eq!(body["dataflow_state"], dataflow_state);
        assert_eq!(body["state"], state, "{dataflow_state}");
        assert_eq!(body["terminal"], terminal, "{dataflow_state}");
        assert_eq!(body["errors"], json!([]));
    }

    let failed =
        stack
            .dataflow
            .handle
            .insert_job(PROJECT, "us-central1", "failing", "JOB_STATE_RUNNING");
    stack.dataflow.handle.script_job(
        &failed,
        &["JOB_STATE_FAILED"],
        &[
            ("JOB_MESSAGE_BASIC", "Workers started"),
            ("JOB_MESSAGE_ERROR", "row 7: poliza_id is null"),
            ("JOB_MESSAGE_WARNING", "slow"),
            ("JOB_MESSAGE_ERROR", "Workflow failed."),
        ],
    );
    let (status, body) = stack.status(&failed, "?region=us-central1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "FAILED");
    assert_eq!(
        body["errors"],
        json!(["row 7: poliza_id is null", "Workflow failed."])
    );
}

#[tokio::test]
async fn a_job_is_walked_through_its_states_by_polling() {
    let stack = Stack::start().await;
    stack.dataflow.handle.set_script(
        &[
            "JOB_STATE_QUEUED",
            "JOB_STATE_PENDING",
            "JOB_STATE_RUNNING",
            "JOB_STATE_DRAINING",
            "JOB_STATE_DRAINED",
        ],
        &[],
    );
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    let (_, launched) = stack.launch(request(name, generation)).await;
    assert_eq!(launched["state"], "PENDING");
    let job_id = launched["job_id"].as_str().unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (_, body) = stack.status(job_id, "").await;
        seen.push((
            body["state"].as_str().unwrap().to_owned(),
            body["terminal"].as_bool().unwrap(),
        ));
    }
    let expected = [
        ("PENDING", false),
        ("PENDING", false),
        ("RUNNING", false),
        ("RUNNING", false),
        ("CANCELLED", true),
    ];
    assert_eq!(seen, expected.map(|(s, t)| (s.to_owned(), t)));
}

#[tokio::test]
async fn dataflow_errors_keep_googles_message_and_say_whether_to_retry() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    for (injected, status, retryable) in [
        (429, 429, true),
        (500, 503, true),
        (503, 503, true),
        (403, 403, false),
        (400, 400, false),
    ] {
        stack.dataflow.handle.fail_next(Method::Launch, injected);
        let (answer, body) = stack.launch(request(name, generation)).await;
        assert_eq!(answer, status, "{injected}: {body}");
        assert_eq!(body["error"]["retryable"], retryable, "{injected}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("injected failure {injected}")),
            "{body}"
        );
    }
    assert!(stack.dataflow.handle.jobs().is_empty());

    let (status, body) = stack.status("2024-01-15_00_00_00-404", "").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["retryable"], false);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be found")
    );
    stack.dataflow.handle.fail_next(Method::Get, 502);
    let (status, body) = stack.status("anything", "").await;
    assert_eq!(
        (status, body["error"]["retryable"].clone()),
        (503, json!(true))
    );
    for bad in ["a%2Fb", "x?region=Bad_Region"] {
        let (status, body) = stack.status(bad, "").await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[tokio::test]
async fn dataflow_errors_are_classified_by_their_rpc_code_and_a_412_is_a_non_retryable_502() {
    let dataflow_fake = FakeDataflow::start().await.unwrap();
    let proxy = FaultProxy::start(&dataflow_fake.endpoint()).await.unwrap();
    let stack = Stack::with_dataflow_endpoint(EXAMPLE, dataflow_fake, &proxy.endpoint).await;
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    for (http, rpc, status, code, retryable) in [
        (409, "ABORTED", 503, "dataflow_unavailable", true),
        (403, "RESOURCE_EXHAUSTED", 429, "quota_exhausted", true),
        (429, "RESOURCE_EXHAUSTED", 429, "quota_exhausted", true),
        (400, "FAILED_PRECONDITION", 400, "dataflow_rejected", false),
        (412, "FAILED_PRECONDITION", 502, "dataflow_error", false),
    ] {
        proxy.inject(
            Fault::status(http)
                .rpc_status(rpc)
                .method("POST")
                .path_contains("flexTemplates:launch"),
        );
        let (answer, body) = stack.launch(request(name, generation)).await;
        assert_eq!(answer, status, "{http} {rpc}: {body}");
        assert_eq!(body["error"]["code"], code, "{http} {rpc}");
        assert_eq!(body["error"]["retryable"], retryable, "{http} {rpc}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(rpc),
            "{http} {rpc}: {body}"
        );
    }
    assert!(
        !proxy.requests().iter().any(|r| r.method == "GET"
            && r.path_and_query.contains("/jobs?")
            && r.path_and_query.contains("ACTIVE")),
        "an ABORTED 409 is not a running duplicate to adopt"
    );
    assert!(stack.dataflow.handle.jobs().is_empty());
    let (status, body) = stack.launch(request(name, generation)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack.dataflow.handle.jobs().len(), 1);
}

#[tokio::test]
async fn the_fake_dataflow_rejects_what_dataflow_rejects() {
    let fake = FakeDataflow::start().await.unwrap();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/v1b3/projects/p-123456/locations/europe-west1/flexTemplates:launch",
        fake.endpoint()
    );
    let good = json!({"launchParameter": {"jobName": "ok-1", "containerSpecGcsPath": "gs://t/x.json", "parameters": {"a": "b"}}});
    let send = |body: Value, token: Option<&'static str>| {
        let mut request = http.post(&url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(send(good.clone(), None).await.0, 401);
    let malformed = [
        json!({"launchParameter": {"jobName": "Bad_Name", "containerSpecGcsPath": "gs://t/x.json"}}),
        json!({"launchParameter": {"jobName": "ends-", "containerSpecGcsPath": "gs://t/x.json"}}),
        json!({"launchParameter": {"containerSpecGcsPath": "gs://t/x.json"}}),
        json!({"launchParameter": {"jobName": "a"}}),
        json!({"launchParameter": {"jobName": "a", "containerSpecGcsPath": "/local/x.json"}}),
        json!({"launchParameter": {"jobName": "a", "containerSpecGcsPath": "gs://t/x.json", "parameters": {"n": 5}}}),
        json!({"launchParameter": {"jobName": "a", "containerSpecGcsPath": "gs://t/x.json", "unknownField": 1}}),
        json!({"launchParameter": {"jobName": "a", "containerSpecGcsPath": "gs://t/x.json", "environment": {"ipConfiguration": "PRIVATE"}}}),
        json!({"launchParameter": {"jobName": "a", "containerSpecGcsPath": "gs://t/x.json", "environment": {"tempLocation": "/tmp"}}}),
        json!({"jobName": "a"}),
    ];
    for body in malformed {
        let (status, answer) = send(body.clone(), Some("t")).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_eq!(answer["error"]["status"], "INVALID_ARGUMENT");
    }
    let (status, created) = send(good.clone(), Some("t")).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["job"]["name"], "ok-1");
    let (status, conflict) = send(good, Some("t")).await;
    assert_eq!(status, 409);
    assert_eq!(conflict["error"]["status"], "ALREADY_EXISTS");
}

#[tokio::test]
async fn labels_that_expand_beyond_dataflows_rules_are_422_invalid_labels_before_dataflow_is_called()
 {
    let long_entity = "poliza_detalle_historico_con_nombre_muy_largo";
    let yaml = format!(
        "{EXAMPLE}\n  {long_entity}:\n    pattern: data/{{yyyymmdd}}/{{entity}}.gz\n    environment: {{labels: {{job: \"{{job_name}}\"}}}}\n    destination: {{table: t}}\n    schema: [{{name: a, type: STRING}}]\n"
    );
    let stack = Stack::with_registry(&yaml).await;
    let name = format!("data/20240115/{long_entity}.gz");
    let generation = stack.upload(&name).await;
    let (status, body) = stack.launch(request(&name, generation)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_labels");
    assert_eq!(body["error"]["retryable"], false);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("job"),
        "{body}"
    );
    assert!(stack.dataflow.handle.launches().is_empty());
    assert!(stack.config_objects().await.is_empty());
}

#[tokio::test]
async fn the_fake_dataflow_enforces_googles_label_rules() {
    let fake = FakeDataflow::start().await.unwrap();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/v1b3/projects/p-123456/locations/europe-west1/flexTemplates:launch",
        fake.endpoint()
    );
    let with_labels = |labels: Value| json!({"launchParameter": {"jobName": "ok-1", "containerSpecGcsPath": "gs://t/x.json", "environment": {"additionalUserLabels": labels}}, "validateOnly": true});
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    for labels in [
        json!({"job": "a".repeat(64)}),
        json!({"k".repeat(64): "v"}),
        json!({"project": "example.com:p"}),
        json!({"app": "Sigma"}),
        json!({"1app": "x"}),
        Value::Object(many),
    ] {
        let response = http
            .post(&url)
            .bearer_auth("t")
            .json(&with_labels(labels.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400, "{labels}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT", "{labels}");
    }
    for labels in [
        json!({"job": "a".repeat(63), "empty": "", "año": "ñandú"}),
        json!({"app": "sigma", "fecha_lote": "2024-01-15"}),
    ] {
        let response = http
            .post(&url)
            .bearer_auth("t")
            .json(&with_labels(labels.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{labels}");
    }
}

#[tokio::test]
async fn the_registry_can_be_read_from_cloud_storage() {
    let gcs = FakeGcs::start(&[CONFIGS]).await.unwrap();
    gcs.put(CONFIGS, "registry/pipelines.yaml", EXAMPLE)
        .await
        .unwrap();
    let storage = Storage::builder()
        .with_endpoint(gcs.endpoint.clone())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    let (text, _) = sigma_dataflow::config::read_registry(
        &format!("gs://{CONFIGS}/registry/pipelines.yaml"),
        Some(&storage),
    )
    .await
    .unwrap();
    let registry = Registry::parse(&text).unwrap();
    assert_eq!(registry.pipelines().len(), 2);
    let missing =
        sigma_dataflow::config::read_registry(&format!("gs://{CONFIGS}/nope.yaml"), Some(&storage))
            .await
            .unwrap_err();
    assert!(missing.to_string().starts_with("PIPELINES"), "{missing}");
}

#[tokio::test]
async fn a_config_describing_a_newer_upload_is_never_replaced_and_an_identical_one_is_not_rewritten()
 {
    use sigma_dataflow::error::Error;
    use sigma_dataflow::{plan, records};
    use sigma_shared::ObjectRef;

    let gcs = FakeGcs::start(&[CONFIGS]).await.unwrap();
    let storage = Storage::builder()
        .with_endpoint(gcs.endpoint.clone())
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap();
    let registry = Registry::parse(EXAMPLE).unwrap();
    let site = Site::resolve(&registry.site, SiteDefaults::default()).unwrap();
    let object = ObjectRef::new(
        OUTPUT.parse().unwrap(),
        "data/20240115/lkp_fechas.gz".parse().unwrap(),
    );
    let plan_for = |g: i64| {
        plan::plan(
            &registry,
            &site,
            &object,
            Some(Generation::new(g).unwrap()),
            Attempt::FIRST,
        )
        .unwrap()
    };
    let config = "configs/lkp_fechas_2024-01-15.config";

    records::write_latest_config(&storage, &plan_for(5))
        .await
        .unwrap();
    let written = gcs
        .metadata(CONFIGS, config)
        .await
        .unwrap()
        .unwrap()
        .generation;
    records::write_latest_config(&storage, &plan_for(5))
        .await
        .unwrap();
    assert_eq!(
        gcs.metadata(CONFIGS, config)
            .await
            .unwrap()
            .unwrap()
            .generation,
        written,
        "not rewritten"
    );

    let older = records::write_latest_config(&storage, &plan_for(3))
        .await
        .unwrap_err();
    assert!(matches!(older, Error::NewerConfig { .. }), "{older}");
    let stored: Value =
        serde_json::from_slice(&gcs.get(CONFIGS, config).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored["source"]["generation"], "5");

    records::write_latest_config(&storage, &plan_for(9))
        .await
        .unwrap();
    let stored: Value =
        serde_json::from_slice(&gcs.get(CONFIGS, config).await.unwrap().unwrap()).unwrap();
    assert_eq!(stored["source"]["generation"], "9");
}

#[tokio::test]
async fn a_launch_and_a_duplicate_delivery_publish_launched_then_adopted() {
    let stack = Stack::start().await;
    let generation = stack.upload("data/20240115/lkp_fechas.gz").await;
    let body = request("data/20240115/lkp_fechas.gz", generation);
    let (status, first) = stack.launch(body.clone()).await;
    assert_eq!(status, 200, "{first}");
    let (status, _) = stack.launch(body).await;
    assert_eq!(status, 200);
    let (status, _) = stack
        .launch(json!({"bucket": OUTPUT, "name": "data/20240115/unknown.gz"}))
        .await;
    assert_eq!(status, 422);

    let messages = stack.pubsub.wait_for(2).await;
    let types: Vec<&str> = messages
        .iter()
        .map(|m| m.attributes["event_type"].as_str())
        .collect();
    assert_eq!(types, ["sigma.dataflow.launched", "sigma.dataflow.adopted"]);
    let event = messages[0].json().unwrap();
    assert_eq!(event["entity"], "lkp_fechas");
    assert_eq!(event["generation"], generation.to_string());
    assert_eq!(event["detail"]["job_id"], first["job_id"]);
    assert_eq!(messages[0].attributes["entity"], "lkp_fechas");
}

fn attempt(name: &str, generation: i64, attempt: u32) -> Value {
    let mut body = request(name, generation);
    body["attempt"] = json!(attempt);
    body
}

#[tokio::test]
async fn a_rerun_after_a_failed_job_launches_its_own_job_and_a_later_one_adopts_its_success() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    stack.dataflow.handle.set_script(&["JOB_STATE_FAILED"], &[]);
    let (_, first) = stack.launch(attempt(name, generation, 1)).await;
    assert_eq!(
        (first["state"].as_str(), first["attempt"].as_u64()),
        (Some("FAILED"), Some(1))
    );
    let (_, duplicate) = stack.launch(attempt(name, generation, 1)).await;
    assert_eq!(
        (duplicate["job_id"].clone(), duplicate["adopted"].as_bool()),
        (first["job_id"].clone(), Some(true))
    );

    stack.dataflow.handle.set_script(&["JOB_STATE_DONE"], &[]);
    let (status, second) = stack.launch(attempt(name, generation, 2)).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["job_id"], first["job_id"]);
    let first_name = first["job_name"].as_str().unwrap();
    assert_eq!(second["job_name"], format!("{first_name}-a2"));
    assert_eq!(
        (second["attempt"].as_u64(), second["adopted"].as_bool()),
        (Some(2), Some(false))
    );
    assert!(
        second["config_uri"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{first_name}-a2.config"))
    );

    let (_, third) = stack.launch(attempt(name, generation, 3)).await;
    assert_eq!(
        third["job_id"], second["job_id"],
        "a loaded file is never loaded twice"
    );
    assert_eq!(
        (third["attempt"].as_u64(), third["adopted"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(stack.dataflow.handle.launches().len(), 2);
    let records: Vec<String> = stack
        .config_objects()
        .await
        .into_iter()
        .filter(|n| n.ends_with(".launch.json"))
        .collect();
    assert_eq!(
        records,
        [
            format!("configs/{first_name}-a2.launch.json"),
            format!("configs/{first_name}.launch.json")
        ]
    );
}

#[tokio::test]
async fn a_rerun_adopts_a_job_still_running_and_attempts_are_whole_numbers_from_one() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    stack
        .dataflow
        .handle
        .set_script(&["JOB_STATE_RUNNING"], &[]);
    let (_, first) = stack.launch(request(name, generation)).await;
    let (_, rerun) = stack.launch(attempt(name, generation, 2)).await;
    assert_eq!(
        (rerun["job_id"].clone(), rerun["attempt"].as_u64()),
        (first["job_id"].clone(), Some(1))
    );
    assert_eq!(stack.dataflow.handle.launches().len(), 1);
    for bad in [json!(0), json!("2"), json!(1.5), json!(1000)] {
        let mut body = request(name, generation);
        body["attempt"] = bad.clone();
        let (status, refused) = stack.launch(body).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (400, Some("invalid_request")),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn cancel_stops_a_running_job_and_answers_an_ended_one_with_its_state() {
    let stack = Stack::start().await;
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    stack
        .dataflow
        .handle
        .set_script(&["JOB_STATE_RUNNING"], &[]);
    let (_, launched) = stack.launch(request(name, generation)).await;
    let job_id = launched["job_id"].as_str().unwrap();
    let region = format!("?region={}", launched["region"].as_str().unwrap());

    let (status, cancelled) = stack.cancel(job_id, &region).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["cancel_requested"], true);
    assert_eq!(cancelled["dataflow_state"], "JOB_STATE_CANCELLING");
    let (_, ended) = stack.status(job_id, &region).await;
    assert_eq!(
        (ended["state"].as_str(), ended["terminal"].as_bool()),
        (Some("CANCELLED"), Some(true))
    );
    let (status, again) = stack.cancel(job_id, &region).await;
    assert_eq!(
        (
            status,
            again["cancel_requested"].as_bool(),
            again["state"].as_str()
        ),
        (200, Some(false), Some("CANCELLED"))
    );

    let other =
        stack
            .dataflow
            .handle
            .insert_job(PROJECT, REGION, "someone-elses-job", "JOB_STATE_RUNNING");
    let (status, refused) = stack.cancel(&other, "?drain=true").await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("dataflow_rejected")),
        "{refused}"
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only streaming jobs can be drained")
    );

    let (status, unknown) = stack.status(&format!("{job_id}:pause"), "").await;
    assert_eq!(status, 400, "{unknown}");
    let response = stack
        .http
        .post(format!("{}/jobs/{job_id}:pause", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn a_full_dataflow_quota_is_429_quota_exhausted_for_the_workflow_to_wait_out() {
    let stack = Stack::start().await;
    stack
        .dataflow
        .handle
        .set_script(&["JOB_STATE_RUNNING"], &[]);
    stack.dataflow.handle.limit_active_jobs(Some(1));
    let fechas = "data/20240115/lkp_fechas.gz";
    let polizas = "data/20240115/poliza_detalle.gz";
    let (g1, g2) = (stack.upload(fechas).await, stack.upload(polizas).await);
    let (status, _) = stack.launch(request(fechas, g1)).await;
    assert_eq!(status, 200);
    let (status, refused) = stack.launch(request(polizas, g2)).await;
    assert_eq!(status, 429, "{refused}");
    assert_eq!(refused["error"]["code"], "quota_exhausted");
    assert_eq!(refused["error"]["retryable"], true);
    assert_eq!(stack.dataflow.handle.stats().quota_refusals, 1);

    stack.dataflow.handle.limit_active_jobs(None);
    let (status, launched) = stack.launch(request(polizas, g2)).await;
    assert_eq!(
        status, 200,
        "the same request goes through once the quota has room: {launched}"
    );
}

/// Where the fault hits a launch: the upload's config, the launch itself, the launch record.
#[derive(Debug, Clone, Copy)]
enum Step {
    ConfigWrite,
    Launch,
    RecordWrite,
}

/// Issue 11's fault matrix, sigma-dataflow's row: whatever breaks, the first `/launch` and
/// the workflow's retry of it end in exactly one job, one config and one record.
async fn fault_cell(step: Step, how: Break) {
    let dataflow_fake = FakeDataflow::start().await.unwrap();
    let dataflow_proxy = FaultProxy::start(&dataflow_fake.endpoint()).await.unwrap();
    let stack = Stack::assemble(EXAMPLE, dataflow_fake, &dataflow_proxy.endpoint, true).await;
    let storage_proxy = stack.storage_proxy.as_ref().unwrap();
    let name = "data/20240115/lkp_fechas.gz";
    let generation = stack.upload(name).await;
    let job_name = format!("lkp-fechas-2024-01-15-{}", base36(generation as u64));
    let fault = how.fault().method("POST");
    match step {
        Step::ConfigWrite => {
            storage_proxy.inject(fault.path_contains(&format!("{job_name}.config")))
        }
        Step::Launch => dataflow_proxy.inject(fault.path_contains("flexTemplates:launch")),
        Step::RecordWrite => {
            storage_proxy.inject(fault.path_contains(&format!("{job_name}.launch.json")))
        }
    }
    let first = stack.launch(request(name, generation)).await;
    assert_eq!(
        storage_proxy.fired() + dataflow_proxy.fired(),
        1,
        "{step:?} x {how:?}: the fault must fire: {:?}",
        storage_proxy.requests()
    );
    match step {
        // Dataflow's answer is lost or refused: the caller is told to retry. Cloud Storage
        // writes carry preconditions, so the storage client retries them itself.
        Step::Launch => assert_eq!(
            (first.0, first.1["error"]["retryable"].as_bool()),
            (503, Some(true)),
            "{step:?} x {how:?}: {}",
            first.1
        ),
        Step::ConfigWrite | Step::RecordWrite => {
            assert_eq!(first.0, 200, "{step:?} x {how:?}: {}", first.1)
        }
    }
    let (status, retried) = stack.launch(request(name, generation)).await;
    assert_eq!(status, 200, "{step:?} x {how:?}: the retry: {retried}");
    if first.0 == 200 {
        assert_eq!(retried["job_id"], first.1["job_id"]);
    }
    let jobs = stack.dataflow.handle.jobs();
    assert_eq!(jobs.len(), 1, "{step:?} x {how:?}: one job: {jobs:?}");
    assert_eq!(retried["job_id"], jobs[0].id.as_str());
    let objects = stack.config_objects().await;
    let of_job = |suffix: &str| {
        objects
            .iter()
            .filter(|o| o.ends_with(&format!("{job_name}{suffix}")))
            .count()
    };
    assert_eq!(
        (of_job(".config"), of_job(".launch.json")),
        (1, 1),
        "{objects:?}"
    );
}

#[tokio::test]
async fn config_write_answered_503() {
    fault_cell(Step::ConfigWrite, Break::Status503).await;
}

#[tokio::test]
async fn config_write_cut_before_storage_saw_it() {
    fault_cell(Step::ConfigWrite, Break::CutRequest).await;
}

#[tokio::test]
async fn config_write_cut_after_storage_carried_it_out() {
    fault_cell(Step::ConfigWrite, Break::CutAfterUpstream).await;
}

#[tokio::test]
async fn launch_answered_503() {
    fault_cell(Step::Launch, Break::Status503).await;
}

#[tokio::test]
async fn launch_cut_before_dataflow_saw_it() {
    fault_cell(Step::Launch, Break::CutRequest).await;
}

/// The job was created, its answer lost: the retry finds it by name and adopts it.
#[tokio::test]
async fn launch_cut_after_dataflow_carried_it_out_is_adopted_not_repeated() {
    fault_cell(Step::Launch, Break::CutAfterUpstream).await;
}

#[tokio::test]
async fn record_write_answered_503() {
    fault_cell(Step::RecordWrite, Break::Status503).await;
}

#[tokio::test]
async fn record_write_cut_before_storage_saw_it() {
    fault_cell(Step::RecordWrite, Break::CutRequest).await;
}

#[tokio::test]
async fn record_write_cut_after_storage_carried_it_out() {
    fault_cell(Step::RecordWrite, Break::CutAfterUpstream).await;
}

/// The example registry plus an entry for `clientes` whose file feeds `dataform_table`, with
/// `labels` under its environment.
fn with_clientes(dataform_table: &str, labels: &str) -> String {
    format!(
        "{EXAMPLE}
  clientes:
    pattern: data/{{yyyymmdd}}/{{entity}}.gz
    destination:
      table: \"{{project}}.raw.clientes\"
    schema:
      - {{name: cliente_id, type: STRING, mode: REQUIRED}}
    environment:
      labels: {{{labels}}}
    dataform_table: {dataform_table}
"
    )
}

#[tokio::test]
async fn a_new_registry_version_is_loaded_while_the_service_runs_and_its_new_entity_launches() {
    let stack = Stack::start().await;
    let name = "data/20240117/clientes.gz";
    let generation = stack.upload(name).await;
    let (status, body) = stack.launch(request(name, generation)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unknown_entity");

    stack
        .publish_registry(with_clientes("clientes", "team: crm"))
        .await;
    stack
        .registry
        .clone()
        .refresh_every(std::time::Duration::from_millis(200));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let (status, body) = loop {
        let (status, body) = stack.launch(request(name, generation)).await;
        if status != 422 || tokio::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entity"], "clientes");
    assert_eq!(
        stack.dataflow.handle.launches()[0]["launchParameter"]["environment"]["additionalUserLabels"]
            ["team"],
        "crm"
    );
    assert_eq!(stack.registry.check().await.unwrap(), Checked::Unchanged);
}

#[tokio::test]
async fn an_invalid_registry_version_is_refused_once_the_old_one_keeps_serving_and_the_refusal_names_entry_and_field()
 {
    let stack = Stack::start().await;
    let too_long = "team: \"{job_name}-{job_name}\"";
    let refused = stack
        .publish_registry(with_clientes("clientes", too_long))
        .await;
    assert_eq!(
        stack.registry.check().await.unwrap(),
        Checked::Refused(refused)
    );
    assert_eq!(stack.registry.check().await.unwrap(), Checked::Unchanged);

    let served = "data/20240118/lkp_fechas.gz";
    let generation = stack.upload(served).await;
    let (status, body) = stack.launch(request(served, generation)).await;
    assert_eq!(status, 200, "the registry in use keeps serving: {body}");
    let ignored = "data/20240118/clientes.gz";
    let generation = stack.upload(ignored).await;
    let (status, _) = stack.launch(request(ignored, generation)).await;
    assert_eq!(status, 422);

    let messages = stack.pubsub.wait_for(2).await;
    let rejected: Vec<Value> = messages
        .iter()
        .filter(|m| m.attributes["event_type"] == "sigma.dataflow.registry_rejected")
        .map(|m| m.json().unwrap())
        .collect();
    assert_eq!(rejected.len(), 1, "one event per refused generation");
    let event = &rejected[0];
    assert_eq!(
        event["object"],
        format!("gs://{REGISTRY_BUCKET}/{REGISTRY_OBJECT}")
    );
    assert_eq!(event["generation"], refused.get().to_string());
    assert_eq!(event["entity"], "clientes");
    assert_eq!(
        event["detail"]["at"],
        "pipelines.clientes.environment.labels.team"
    );
    assert!(
        event["detail"]["reason"].as_str().unwrap().contains("63"),
        "{event}"
    );

    let syntax = stack.publish_registry("pipelines: [unclosed").await;
    assert_eq!(
        stack.registry.check().await.unwrap(),
        Checked::Refused(syntax)
    );
    let fixed = stack
        .publish_registry(with_clientes("clientes", "team: crm"))
        .await;
    assert_eq!(
        stack.registry.check().await.unwrap(),
        Checked::Loaded(fixed)
    );
    let (status, body) = stack.launch(request(ignored, generation)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_registry_version_that_would_move_the_site_is_refused() {
    let stack = Stack::start().await;
    let moved = EXAMPLE.replace(
        "region: europe-west1\n  config_bucket",
        "region: us-central1\n  config_bucket",
    );
    assert_ne!(moved, EXAMPLE);
    stack.publish_registry(moved).await;
    assert!(matches!(
        stack.registry.check().await.unwrap(),
        Checked::Refused(_)
    ));
    let event = stack.pubsub.wait_for(1).await[0].json().unwrap();
    assert_eq!(event["detail"]["at"], "defaults");
}

#[tokio::test]
async fn a_qualified_dataform_table_is_passed_through_to_the_answer_the_config_and_the_event() {
    let stack = Stack::with_registry(&with_clientes("raw.clientes", "team: crm")).await;
    let name = "data/20240119/clientes.gz";
    let generation = stack.upload(name).await;
    let (status, body) = stack.launch(request(name, generation)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dataform_table"], "raw.clientes");
    let config_uri = body["config_uri"].as_str().unwrap();
    let config_object = config_uri
        .strip_prefix(&format!("gs://{CONFIGS}/"))
        .unwrap();
    let config: Value = serde_json::from_slice(
        &stack
            .gcs
            .get(CONFIGS, config_object)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(config["dataform_table"], "raw.clientes");
    let event = stack.pubsub.wait_for(1).await[0].json().unwrap();
    assert_eq!(event["detail"]["dataform_table"], "raw.clientes");
}
