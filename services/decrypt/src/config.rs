//! The service's configuration, read from the environment once at start-up.
//!
//! Tests build [`Config`] directly instead of setting variables, so tests running in
//! parallel never see each other's settings.

use std::time::Duration;

use sigma_shared::BucketName;
use sigma_shared::config::{self, ConfigError};

use crate::fernet::KeyRing;
use crate::keys::{KeySource, SecretVersion};
use crate::upload::UploadSettings;

pub const OUTPUT_BUCKET: &str = "OUTPUT_BUCKET";
pub const TRIGGER_BUCKETS: &str = "TRIGGER_BUCKETS";
pub const FERNET_KEYS: &str = "FERNET_KEYS";
pub const FERNET_KEYS_SECRET: &str = "FERNET_KEYS_SECRET";
pub const SECRET_MANAGER_ENDPOINT: &str = "SECRET_MANAGER_ENDPOINT";
pub const FERNET_TTL_SECONDS: &str = "FERNET_TTL_SECONDS";
pub const MAX_OBJECT_BYTES: &str = "MAX_OBJECT_BYTES";
pub const VERIFY_GZIP: &str = "VERIFY_GZIP";
pub const UPLOAD_CHUNK_MIB: &str = "UPLOAD_CHUNK_MIB";
pub const FERNET_KEYS_REFRESH_SECONDS: &str = "FERNET_KEYS_REFRESH_SECONDS";
/// How often a secret's keys are re-read by default.
pub const DEFAULT_KEYS_REFRESH: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Config {
    /// Where decrypted files are written.
    pub output_bucket: BucketName,
    /// Buckets the service may read from; empty means any.
    pub trigger_buckets: Vec<BucketName>,
    pub keys: KeySource,
    /// How often keys from a secret are read again; zero: only when a token needs it.
    pub keys_refresh: Duration,
    /// Python's `ttl`: tokens older than this (by their own timestamp) are refused.
    pub ttl: Option<Duration>,
    /// Encrypted objects larger than this are refused with 413.
    pub max_object_bytes: Option<u64>,
    /// Inflate the whole plaintext (CRC and length) before committing it, on another
    /// thread; otherwise only the gzip header is checked. The HMAC already proves the bytes
    /// are exactly what was encrypted, so this only catches an uploader that encrypted a
    /// broken file, at the cost of inflating it (slower than decryption).
    pub verify_gzip: bool,
    pub upload: UploadSettings,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let output_bucket = config::parsed(OUTPUT_BUCKET)?
            .ok_or_else(|| ConfigError::new(OUTPUT_BUCKET, "must be set"))?;
        let ttl = config::parsed::<u64>(FERNET_TTL_SECONDS)?.map(Duration::from_secs);
        Ok(Self {
            output_bucket,
            trigger_buckets: config::list(TRIGGER_BUCKETS)?,
            keys: key_source_from_env()?,
            keys_refresh: config::parsed::<u64>(FERNET_KEYS_REFRESH_SECONDS)?
                .map_or(DEFAULT_KEYS_REFRESH, Duration::from_secs),
            ttl,
            max_object_bytes: config::parsed(MAX_OBJECT_BYTES)?,
            verify_gzip: config::parsed(VERIFY_GZIP)?.unwrap_or(false),
            upload: upload_settings_from_env()?,
        })
    }
}

/// Exactly one of the two key variables: keys inline for local runs, or the Secret Manager
/// version that holds them.
fn key_source_from_env() -> Result<KeySource, ConfigError> {
    let inline = config::optional(FERNET_KEYS);
    let secret = config::optional(FERNET_KEYS_SECRET);
    match (inline, secret) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            FERNET_KEYS,
            format!("set either {FERNET_KEYS} or {FERNET_KEYS_SECRET}, not both"),
        )),
        (Some(keys), None) => KeyRing::parse(keys.trim())
            .map(KeySource::Keys)
            .map_err(|e| ConfigError::new(FERNET_KEYS, e)),
        (None, Some(version)) => Ok(KeySource::Secret {
            version: version
                .trim()
                .parse::<SecretVersion>()
                .map_err(|e| ConfigError::new(FERNET_KEYS_SECRET, e))?,
            endpoint: config::optional(SECRET_MANAGER_ENDPOINT),
        }),
        (None, None) => Err(ConfigError::new(
            FERNET_KEYS_SECRET,
            format!("set {FERNET_KEYS_SECRET} (a Secret Manager version) or {FERNET_KEYS}"),
        )),
    }
}

/// Whole MiB, so every value is a multiple of the 256 KiB Cloud Storage requires.
fn upload_settings_from_env() -> Result<UploadSettings, ConfigError> {
    let defaults = UploadSettings::default();
    let Some(mib) = config::parsed::<usize>(UPLOAD_CHUNK_MIB)? else {
        return Ok(defaults);
    };
    if !(1..=1024).contains(&mib) {
        return Err(ConfigError::new(
            UPLOAD_CHUNK_MIB,
            "must be 1 to 1024 (MiB)",
        ));
    }
    Ok(UploadSettings {
        chunk_bytes: mib * 1024 * 1024,
        ..defaults
    })
}
