//! What the service tests share: a running service over fake-gcs-server, and tokens made
//! the way the on-premise job makes them.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::retry_policy::RetryableErrors;
use sigma_decrypt::app::{self, AppState};
use sigma_decrypt::config::Config;
use sigma_decrypt::fernet::{Key, KeyRing, encrypt_at};
use sigma_decrypt::keys::{KeySource, LiveKeys};
use sigma_fakes::gcs::FakeGcs;
use sigma_shared::events::Events;

pub const TRIGGER: &str = "company_trigger_bucket";
pub const OUTPUT: &str = "company_output_bucket";
pub const SOURCE_NAME: &str = "data/20240115/lkp_fechas.gz.encrypted";
pub const OUTPUT_NAME: &str = "data/20240115/lkp_fechas.gz";

pub async fn storage(gcs: &FakeGcs) -> Storage {
    storage_at(&gcs.endpoint).await
}

/// A client for Cloud Storage at `endpoint`: fake-gcs-server, or a fault proxy in front of it.
pub async fn storage_at(endpoint: &str) -> Storage {
    Storage::builder()
        .with_endpoint(endpoint)
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        // The default keeps retrying an unreachable server for five minutes.
        .with_retry_policy(RetryableErrors.with_time_limit(Duration::from_secs(5)))
        .build()
        .await
        .unwrap()
}

pub fn config(keys: &[&Key]) -> Config {
    let ring = KeyRing::new(keys.iter().map(|k| (*k).clone()).collect()).unwrap();
    Config {
        output_bucket: OUTPUT.parse().unwrap(),
        trigger_buckets: vec![TRIGGER.parse().unwrap()],
        keys: KeySource::Keys(ring),
        ttl: None,
        max_object_bytes: None,
        verify_gzip: false,
        upload: Default::default(),
        keys_refresh: sigma_decrypt::config::DEFAULT_KEYS_REFRESH,
    }
}

pub struct Service {
    pub gcs: FakeGcs,
    pub address: SocketAddr,
    pub http: reqwest::Client,
}

impl Service {
    pub async fn start(config: Config) -> Self {
        let gcs = FakeGcs::start(&[TRIGGER, OUTPUT]).await.unwrap();
        Self::start_on(gcs, config).await
    }

    pub async fn start_on(gcs: FakeGcs, config: Config) -> Self {
        Self::start_with_events(gcs, config, Events::disabled()).await
    }

    pub async fn start_with_events(gcs: FakeGcs, config: Config, events: Events) -> Self {
        let endpoint = gcs.endpoint.clone();
        Self::start_via(gcs, &endpoint, config, events).await
    }

    /// A service that reaches `gcs` through `endpoint` (a fault proxy in front of it).
    pub async fn start_via(gcs: FakeGcs, endpoint: &str, config: Config, events: Events) -> Self {
        let keys = LiveKeys::load(config.keys.clone()).await.unwrap();
        let state = AppState::new(
            config,
            storage_at(endpoint).await,
            std::sync::Arc::new(keys),
        )
        .with_events(events);
        let address = sigma_shared::server::spawn(app::app(state)).await.unwrap();
        Self {
            gcs,
            address,
            http: reqwest::Client::new(),
        }
    }

    /// POSTs `body` (raw, as curl would) and returns the status and the JSON answer.
    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(format!("http://{}/decrypt", self.address))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let json = response.json().await.unwrap();
        (status, json)
    }

    pub async fn post(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.post_raw(body.to_string()).await
    }

    /// Uploads `token` as the source object and returns its generation.
    pub async fn upload(&self, token: Vec<u8>) -> i64 {
        self.gcs.put(TRIGGER, SOURCE_NAME, token).await.unwrap()
    }

    pub async fn decrypt(&self, name: &str) -> (u16, serde_json::Value) {
        self.post(serde_json::json!({"bucket": TRIGGER, "name": name}))
            .await
    }

    pub async fn output_names(&self) -> Vec<String> {
        self.gcs
            .list(OUTPUT)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect()
    }

    /// Asserts the answer is the documented error, and that the output bucket is empty.
    pub async fn assert_refused(
        &self,
        (status, body): (u16, serde_json::Value),
        expected_status: u16,
        code: &str,
    ) {
        assert_eq!(status, expected_status, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert_eq!(body["error"]["retryable"], expected_status >= 500, "{body}");
        assert_eq!(
            self.output_names().await,
            Vec::<String>::new(),
            "something was written after {code}"
        );
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn token(key: &Key, plaintext: &[u8]) -> Vec<u8> {
    token_at(key, now(), plaintext)
}

pub fn token_at(key: &Key, timestamp: u64, plaintext: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encrypt_at(key, timestamp, rand::random(), plaintext, &mut out).unwrap();
    out
}

/// Bytes that do not compress, so a gzip of them is as large as they are.
pub fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

pub const HOUR: Duration = Duration::from_secs(3600);
