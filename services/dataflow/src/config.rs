//! The service's settings, read from the environment once at start-up.
//!
//! Tests build [`Config`] (and the app) directly, so no test depends on process-wide env
//! vars; `main` is the only caller of [`Config::from_env`].

use std::time::Duration;

use google_cloud_storage::client::Storage;
use sigma_shared::config::{self, ConfigError};
use sigma_shared::storage;
use sigma_shared::{BucketName, Generation, GsUri, ObjectRef};

use crate::dataflow;
use crate::live_registry;
use crate::plan::Site;
use crate::registry::{Registry, SiteDefaults};

pub const PIPELINES: &str = "PIPELINES";
pub const PIPELINES_REFRESH_SECONDS: &str = "PIPELINES_REFRESH_SECONDS";

/// A registry larger than this is a mistake, not a registry.
pub(crate) const MAX_REGISTRY: u64 = 4 << 20;

pub struct Config {
    pub registry: Registry,
    /// The registry's object and the generation read, when it is in Cloud Storage: a newer
    /// generation is loaded while the service runs.
    pub registry_version: Option<(ObjectRef, Generation)>,
    /// How often that object is checked; zero turns checking off.
    pub registry_refresh: Duration,
    /// The env vars that override the registry's `defaults`.
    pub overrides: SiteDefaults,
    pub site: Site,
    pub dataflow_endpoint: String,
    pub dataflow_timeout: Duration,
}

/// The registry's text from a local path or a `gs://` URI, with the object and generation
/// read in the second case.
pub async fn read_registry(
    source: &str,
    storage: Option<&Storage>,
) -> Result<(String, Option<(ObjectRef, Generation)>), ConfigError> {
    if source.starts_with("gs://") {
        let uri: GsUri = source.parse().map_err(|e| ConfigError::new(PIPELINES, e))?;
        let storage = storage
            .ok_or_else(|| ConfigError::new(PIPELINES, "a gs:// registry needs Cloud Storage"))?;
        let (bytes, read) = storage::read_to_bytes(storage, &uri.0, MAX_REGISTRY)
            .await
            .map_err(|e| ConfigError::new(PIPELINES, format!("cannot read {uri}: {e}")))?;
        let generation = Generation::new(read.generation)
            .map_err(|e| ConfigError::new(PIPELINES, format!("{uri}: {e}")))?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ConfigError::new(PIPELINES, format!("{uri} is not UTF-8")))?;
        Ok((text, Some((uri.0, generation))))
    } else {
        let text = std::fs::read_to_string(source)
            .map_err(|e| ConfigError::new(PIPELINES, format!("cannot read {source}: {e}")))?;
        Ok((text, None))
    }
}

/// The env vars that override the registry's `defaults` (shared with `sigma plan`).
pub fn site_overrides() -> Result<SiteDefaults, ConfigError> {
    Ok(SiteDefaults {
        project: match config::parsed("PROJECT_ID")? {
            Some(project) => Some(project),
            None => config::parsed("GOOGLE_CLOUD_PROJECT")?,
        },
        region: config::parsed("DATAFLOW_REGION")?,
        config_bucket: config::parsed::<BucketName>("CONFIG_BUCKET")?,
    })
}

impl Config {
    pub async fn from_env(storage: &Storage) -> Result<Self, ConfigError> {
        let source = config::required(PIPELINES)?;
        let (text, registry_version) = read_registry(&source, Some(storage)).await?;
        let registry = Registry::parse(&text).map_err(|e| ConfigError::new(PIPELINES, e))?;
        let overrides = site_overrides()?;
        let site = Site::resolve(&registry.site, overrides.clone())
            .map_err(|e| ConfigError::new("PROJECT_ID/DATAFLOW_REGION/CONFIG_BUCKET", e))?;
        crate::plan::check_labels(&registry, &site).map_err(|e| ConfigError::new(PIPELINES, e))?;
        let dataflow_endpoint = config::optional("DATAFLOW_ENDPOINT")
            .unwrap_or_else(|| dataflow::DEFAULT_ENDPOINT.to_owned());
        if !dataflow_endpoint.starts_with("http://") && !dataflow_endpoint.starts_with("https://") {
            return Err(ConfigError::new(
                "DATAFLOW_ENDPOINT",
                "must be an http(s) URL",
            ));
        }
        let timeout: u64 = config::parsed("DATAFLOW_TIMEOUT_SECONDS")?.unwrap_or(60);
        if timeout == 0 {
            return Err(ConfigError::new(
                "DATAFLOW_TIMEOUT_SECONDS",
                "must be positive",
            ));
        }
        let registry_refresh = config::parsed::<u64>(PIPELINES_REFRESH_SECONDS)?
            .map_or(live_registry::DEFAULT_REFRESH, Duration::from_secs);
        Ok(Self {
            registry,
            registry_version,
            registry_refresh,
            overrides,
            site,
            dataflow_endpoint,
            dataflow_timeout: Duration::from_secs(timeout),
        })
    }
}
