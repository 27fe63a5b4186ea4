//! What the service tests share: the sample projects, a running service in front of a graph
//! file or the fake Dataform API, and helpers that say what they do.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::retry_policy::RetryableErrors;
use serde_json::{Value, json};
use sigma_dataform::config::{ApiSettings, CompileFrom, Config, GraphOrigin};
use sigma_dataform::{Invoker, app};
use sigma_fakes::dataform::FakeDataform;

pub const REPOSITORY: &str = "projects/acme-dwh-prod/locations/us-central1/repositories/dwh";
pub const SERVICE_ACCOUNT: &str = "dataform-runner@acme-dwh-prod.iam.gserviceaccount.com";

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap()
}

/// A fixture as JSON (`dataform compile --json` outputs, expected closures, API samples).
pub fn compiled(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// A graph file as the source (the offline default).
pub fn file_config(fixture: &str) -> Config {
    Config {
        ttl: Duration::from_secs(60),
        settle: Duration::ZERO,
        ..Config::new(GraphOrigin::File(fixture_path(fixture)))
    }
}

/// The fake Dataform API at `endpoint` as the source, compiling a release config; loads
/// start at once unless a test gives them a settle window.
pub fn api_config(endpoint: &str) -> Config {
    Config {
        settle: Duration::ZERO,
        ..Config::new(GraphOrigin::Api(ApiSettings {
            repository: REPOSITORY.into(),
            compile_from: CompileFrom::ReleaseConfig(format!(
                "{REPOSITORY}/releaseConfigs/production"
            )),
            endpoint: Some(endpoint.to_owned()),
            service_account: Some(SERVICE_ACCOUNT.into()),
        }))
    }
}

/// A Cloud Storage client for `endpoint` (fake-gcs-server, or a fault proxy in front of it).
pub async fn storage(endpoint: &str) -> Storage {
    Storage::builder()
        .with_endpoint(endpoint)
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        // The default keeps retrying an unreachable server for five minutes.
        .with_retry_policy(RetryableErrors.with_time_limit(Duration::from_secs(5)))
        .build()
        .await
        .unwrap()
}

/// A running sigma-dataform and a client for it.
pub struct Service {
    pub base: String,
    pub http: reqwest::Client,
}

impl Service {
    pub async fn start(config: Config) -> Self {
        Self::serve(Invoker::new(config).await.unwrap()).await
    }

    pub async fn serve(invoker: Invoker) -> Self {
        let address = sigma_shared::server::spawn(app(Arc::new(invoker)))
            .await
            .unwrap();
        Self {
            base: format!("http://{address}"),
            http: reqwest::Client::new(),
        }
    }

    /// POSTs `body` and returns the status and the JSON answer.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub async fn closure(&self, body: Value) -> (u16, Value) {
        self.post("/closure", body).await
    }

    pub async fn invoke(&self, body: Value) -> (u16, Value) {
        self.post("/invoke", body).await
    }
}

/// The fake Dataform API serving the 3.x sample (7 actions a page, so reads take pages),
/// and a service compiling through it.
pub struct Api {
    pub fake: FakeDataform,
    pub service: Service,
}

impl Api {
    pub async fn start() -> Self {
        let fake = sample_fake().await;
        let service = Service::start(api_config(&fake.endpoint)).await;
        Self { fake, service }
    }

    /// The `workflowInvocations.create` requests the fake accepted.
    pub fn created(&self) -> Vec<Value> {
        self.fake.handle.created_invocations()
    }
}

pub async fn sample_fake() -> FakeDataform {
    let fake = FakeDataform::start(&compiled("sample_v3.compiled.json"))
        .await
        .unwrap();
    fake.handle.set_page_size(7);
    fake
}

/// `database.schema.name` of each target, sorted.
pub fn keys(targets: &Value) -> Vec<String> {
    let mut names: Vec<String> = targets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}.{}.{}",
                t["database"].as_str().unwrap(),
                t["schema"].as_str().unwrap(),
                t["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

/// The closure of `raw.lkp_fechas` in the 3.x sample, as Dataform's own selection computes it.
pub fn expected_lkp_fechas() -> Vec<String> {
    let expected = compiled("sample_v3.closures.json");
    let mut names: Vec<String> = expected["closures"]["acme-dwh-prod.raw.lkp_fechas"]["closure"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Asserts the answer is the documented error shape with this status and code, retryable
/// exactly when the status is.
pub fn assert_refused((status, body): &(u16, Value), expected_status: u16, code: &str) {
    assert_eq!(*status, expected_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["error"]["retryable"],
        json!(expected_status == 429 || expected_status >= 500),
        "{body}"
    );
}

/// A `dataform compile --json` document: the declaration `raw.src` and `tables` tables, each
/// reading `raw.src` and the one before it, so the closure of `src` holds every table.
pub fn generated(tables: usize) -> Value {
    let target =
        |schema: &str, name: &str| json!({"database": "p", "schema": schema, "name": name});
    let tables: Vec<Value> = (0..tables)
        .map(|i| {
            let mut dependencies = vec![target("raw", "src")];
            if i > 0 {
                dependencies.push(target("warehouse", &format!("t{:06}", i - 1)));
            }
            json!({
                "target": target("warehouse", &format!("t{i:06}")),
                "type": "table",
                "disabled": false,
                "dependencyTargets": dependencies,
            })
        })
        .collect();
    json!({
        "tables": tables,
        "declarations": [{"target": target("raw", "src")}],
    })
}
