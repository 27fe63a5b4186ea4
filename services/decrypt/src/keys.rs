//! Where the Fernet keys come from: inline for local runs, or a Secret Manager version.
//!
//! Keys are read at start-up, so a bad secret stops the revision from becoming ready
//! instead of failing every request. A secret is then read again, because instances live
//! for hours and keys rotate: periodically, and when a token verifies with none of the
//! loaded keys (a file encrypted with a key added since), so the new key is used without a
//! restart. A failed re-read keeps the keys in use. No error here ever includes the
//! secret's payload.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use google_cloud_secretmanager_v1::client::SecretManagerService;
use sigma_shared::config::ConfigError;

use crate::config::FERNET_KEYS_SECRET;
use crate::fernet::KeyRing;

#[derive(Debug, Clone)]
pub enum KeySource {
    Keys(KeyRing),
    Secret {
        version: SecretVersion,
        /// A Secret Manager endpoint other than Google's (then with anonymous credentials).
        endpoint: Option<String>,
    },
}

/// `projects/P/secrets/S/versions/V`, the name `versions.access` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion(String);

impl FromStr for SecretVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = matches!(
            parts.as_slice(),
            ["projects", project, "secrets", secret, "versions", version]
                if [project, secret, version].iter().all(|p| {
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                })
        );
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "{s:?} is not a secret version name such as projects/my-project/secrets/fernet-keys/versions/latest"
            ))
        }
    }
}

impl fmt::Display for SecretVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl KeySource {
    /// The key ring, fetching the secret if that is where the keys are.
    pub async fn load(self) -> Result<KeyRing, ConfigError> {
        match self {
            Self::Keys(keys) => Ok(keys),
            Self::Secret { version, endpoint } => {
                let payload = access(&version, endpoint).await?;
                parse_keys(&payload).map_err(|reason| {
                    ConfigError::new(FERNET_KEYS_SECRET, format!("secret {version}: {reason}"))
                })
            }
        }
    }
}

/// Re-reads caused by tokens no key verifies happen at most this often: a stream of files
/// encrypted with a foreign key must not become a stream of Secret Manager calls.
pub const MIN_RENEWAL_INTERVAL: Duration = Duration::from_secs(10);

/// The key ring in use, renewed from its secret while the service runs.
#[derive(Debug)]
pub struct LiveKeys {
    current: RwLock<KeyRing>,
    source: KeySource,
    /// When a token last caused a re-read; held during one, so concurrent callers wait for
    /// that read instead of making their own (single flight).
    last_renewal: tokio::sync::Mutex<Option<Instant>>,
}

impl LiveKeys {
    /// Loads the keys from `source`; fails as start-up should.
    pub async fn load(source: KeySource) -> Result<Self, ConfigError> {
        let ring = source.clone().load().await?;
        Ok(Self {
            current: RwLock::new(ring),
            source,
            last_renewal: tokio::sync::Mutex::new(None),
        })
    }

    pub fn current(&self) -> KeyRing {
        self.current.read().expect("never poisoned").clone()
    }

    /// After `tried` verified no token: re-reads the secret, unless the keys are inline, a
    /// re-read happened less than [`MIN_RENEWAL_INTERVAL`] ago, or another request already
    /// replaced `tried`. True when the keys in use now differ from `tried`.
    pub async fn renew_after(&self, tried: &KeyRing) -> bool {
        if matches!(self.source, KeySource::Keys(_)) {
            return false;
        }
        let mut last = self.last_renewal.lock().await;
        if self.current() != *tried {
            return true;
        }
        if last.is_some_and(|at| at.elapsed() < MIN_RENEWAL_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        self.reload("a token verified with none of the keys").await;
        self.current() != *tried
    }

    /// Re-reads the secret every `every`, for as long as the service runs.
    pub fn refresh_every(self: Arc<Self>, every: Duration) {
        if matches!(self.source, KeySource::Keys(_)) || every.is_zero() {
            return;
        }
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                ticks.tick().await;
                self.reload("periodic refresh").await;
            }
        });
    }

    async fn reload(&self, why: &str) {
        match self.source.clone().load().await {
            Ok(ring) => {
                let mut current = self.current.write().expect("never poisoned");
                if *current != ring {
                    tracing::info!(keys = ring.len(), reason = why, "new Fernet keys loaded");
                    *current = ring;
                }
            }
            Err(error) => {
                tracing::warn!(%error, reason = why, "keys not renewed; the loaded keys stay in use");
            }
        }
    }
}

async fn access(version: &SecretVersion, endpoint: Option<String>) -> Result<Vec<u8>, ConfigError> {
    let fail = |reason: String| {
        ConfigError::new(FERNET_KEYS_SECRET, format!("secret {version}: {reason}"))
    };
    let builder = SecretManagerService::builder();
    let builder = match endpoint {
        Some(endpoint) => builder
            .with_endpoint(endpoint)
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build()),
        None => builder,
    };
    let client = builder
        .build()
        .await
        .map_err(|e| fail(format!("cannot build the Secret Manager client: {e}")))?;
    let response = client
        .access_secret_version()
        .set_name(version.to_string())
        .send()
        .await
        .map_err(|e| {
            fail(format!(
                "cannot access it: {}",
                sigma_shared::google::message(&e)
            ))
        })?;
    let payload = response
        .payload
        .ok_or_else(|| fail("the response has no payload".into()))?;
    // Secret Manager returns the checksum so clients can detect corruption in transit.
    if let Some(expected) = payload.data_crc32c
        && i64::from(crc32c::crc32c(&payload.data)) != expected
    {
        return Err(fail("the payload does not match its CRC32C".into()));
    }
    Ok(payload.data.to_vec())
}

/// The secret's keys, newest first, separated as everywhere else (`KeyRing::parse`: commas
/// or whitespace, one per line included), so a list means the same in the secret,
/// `FERNET_KEYS` and the CLI.
fn parse_keys(payload: &[u8]) -> Result<KeyRing, String> {
    let text =
        std::str::from_utf8(payload).map_err(|_| "the payload is not UTF-8 text".to_owned())?;
    KeyRing::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fernet::Key;

    #[test]
    fn secret_version_names_must_be_full_version_paths() {
        assert!(
            "projects/p/secrets/fernet-keys/versions/latest"
                .parse::<SecretVersion>()
                .is_ok()
        );
        assert!(
            "projects/p/secrets/s/versions/3"
                .parse::<SecretVersion>()
                .is_ok()
        );
        for bad in [
            "",
            "fernet-keys",
            "projects/p/secrets/s",
            "projects/p/secrets/s/versions/",
            "projects/p/secrets/s/versions/1/x",
            "projects/p/secrets/a b/versions/1",
        ] {
            assert!(bad.parse::<SecretVersion>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn secret_payloads_separate_keys_as_fernet_keys_and_the_cli_do() {
        let (a, b) = (Key::generate().to_base64(), Key::generate().to_base64());
        assert_eq!(parse_keys(format!("{a} {b}").as_bytes()).unwrap().len(), 2);
        assert_eq!(
            parse_keys(format!("{a}, {b}\t").as_bytes()).unwrap().len(),
            2
        );
        assert_eq!(parse_keys(format!("{a},{b}").as_bytes()).unwrap().len(), 2);
        assert_eq!(
            parse_keys(format!("{a}\n{b}\n").as_bytes()).unwrap().len(),
            2
        );
        assert_eq!(parse_keys(format!("{a}\r\n").as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn bad_secret_payloads_are_refused_without_echoing_them() {
        let secret_looking = "c2VjcmV0LWtleS1tYXRlcmlhbC10aGF0LWlzLXdyb25n";
        let error = parse_keys(secret_looking.as_bytes()).unwrap_err();
        assert!(!error.contains(secret_looking), "{error}");
        assert!(parse_keys(b"").is_err());
        assert!(parse_keys(&[0xff, 0xfe]).is_err());
    }
}
