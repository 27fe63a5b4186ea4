//! Cloud Storage through the official client, with the emulator switch and the few
//! operations sigma needs.
//!
//! Only the JSON-API `Storage` client is used: it is what the services need (streaming reads,
//! resumable writes with preconditions), and it is also what fake-gcs-server speaks, so every
//! storage call production makes is the one the tests exercise.

use std::collections::HashMap;

use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::client::Storage;
use google_cloud_storage::model::Object;
use google_cloud_storage::model_ext::{ObjectHighlights, ReadRange};
use google_cloud_storage::retry_policy::RetryableErrors;
use google_cloud_storage::streaming_source::{Payload, StreamingSource};

use crate::config::{self, ConfigError};
use crate::error::HttpError;
use crate::google::{self, Failure};
use crate::object::{Generation, ObjectRef};

pub use google_cloud_storage::read_object::ReadObjectResponse;

/// Set to `http://HOST[:PORT]` to talk to an emulator with anonymous credentials, the same
/// variable the gcloud tools and other client libraries honour.
pub const EMULATOR_VAR: &str = "STORAGE_EMULATOR_HOST";

/// How long one call keeps retrying transient failures. The client's default (300 s) holds
/// a request open through an outage; sigma's callers (the workflow) retry 503s with backoff
/// themselves, so a minute of retrying and then a 503 serves them better.
const RETRY_LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0} does not exist")]
    NotFound(ObjectRef),
    #[error("{0} was changed by another writer")]
    PreconditionFailed(ObjectRef),
    #[error("{object} is larger than the {limit} bytes allowed")]
    TooLarge { object: ObjectRef, limit: u64 },
    #[error("Cloud Storage failed on {object}: {message}")]
    Google {
        object: ObjectRef,
        failure: Failure,
        message: String,
    },
}

impl StorageError {
    pub fn from_gax(object: &ObjectRef, error: google_cloud_storage::Error) -> Self {
        match Failure::of(&error) {
            Failure::NotFound => Self::NotFound(object.clone()),
            Failure::PreconditionFailed => Self::PreconditionFailed(object.clone()),
            failure => Self::Google {
                object: object.clone(),
                failure,
                message: google::message(&error),
            },
        }
    }
}

impl HttpError for StorageError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PreconditionFailed(_) => StatusCode::CONFLICT,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Google { failure, .. } => failure.status(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "object_not_found",
            Self::PreconditionFailed(_) => "write_conflict",
            Self::TooLarge { .. } => "object_too_large",
            Self::Google {
                failure: Failure::Throttled,
                ..
            } => "quota_exhausted",
            Self::Google {
                failure: Failure::Transient,
                ..
            } => "storage_unavailable",
            Self::Google { .. } => "storage_error",
        }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Builds the client: the emulator with anonymous credentials when [`EMULATOR_VAR`] is set,
/// Application Default Credentials (the metadata server on Cloud Run) otherwise.
pub async fn client() -> std::result::Result<Storage, ConfigError> {
    let builder =
        Storage::builder().with_retry_policy(RetryableErrors.with_time_limit(RETRY_LIMIT));
    let builder = match config::optional(EMULATOR_VAR) {
        Some(endpoint) => {
            if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                return Err(ConfigError::new(
                    EMULATOR_VAR,
                    "must be a URL such as http://127.0.0.2",
                ));
            }
            builder
                .with_endpoint(endpoint.trim_end_matches('/'))
                .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        }
        None => builder,
    };
    builder.build().await.map_err(|e| {
        ConfigError::new(
            EMULATOR_VAR,
            format!("cannot build the Cloud Storage client: {e}"),
        )
    })
}

fn bucket_path(object: &ObjectRef) -> String {
    format!("projects/_/buckets/{}", object.bucket)
}

/// Opens a streaming read; `generation` pins the exact upload.
pub async fn open(
    client: &Storage,
    object: &ObjectRef,
    generation: Option<Generation>,
) -> Result<ReadObjectResponse> {
    let mut read = client.read_object(bucket_path(object), object.name.as_str());
    if let Some(generation) = generation {
        read = read.set_generation(generation.get());
    }
    read.send()
        .await
        .map_err(|e| StorageError::from_gax(object, e))
}

/// The object's metadata, or `None` when it does not exist.
///
/// The JSON `Storage` client has no metadata call, so this reads the first byte and keeps
/// the highlights the read returns; that costs one small GET, like a metadata request would.
pub async fn stat(client: &Storage, object: &ObjectRef) -> Result<Option<ObjectHighlights>> {
    let read = client
        .read_object(bucket_path(object), object.name.as_str())
        .set_read_range(ReadRange::head(1))
        .send()
        .await;
    match read {
        Ok(response) => Ok(Some(response.object())),
        Err(e) => match StorageError::from_gax(object, e) {
            StorageError::NotFound(_) => Ok(None),
            other => Err(other),
        },
    }
}

/// Reads a whole small object (configuration, records), refusing anything over `limit`.
pub async fn read_to_bytes(
    client: &Storage,
    object: &ObjectRef,
    limit: u64,
) -> Result<(Bytes, ObjectHighlights)> {
    let mut response = open(client, object, None).await?;
    let highlights = response.object();
    let mut buffer = Vec::new();
    while let Some(chunk) = response.next().await {
        let chunk = chunk.map_err(|e| StorageError::from_gax(object, e))?;
        if (buffer.len() + chunk.len()) as u64 > limit {
            return Err(StorageError::TooLarge {
                object: object.clone(),
                limit,
            });
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok((Bytes::from(buffer), highlights))
}

/// What must hold for a write to go through; the write fails with
/// [`StorageError::PreconditionFailed`] otherwise, so concurrent writers never both win.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// The object must not exist yet.
    DoesNotExist,
    /// The object must still be at this generation.
    GenerationMatch(Generation),
}

impl Precondition {
    /// `DoesNotExist` when nothing is there yet, else the generation that is there.
    pub fn replacing(existing: Option<&ObjectHighlights>) -> Self {
        existing
            .and_then(|o| Generation::new(o.generation).ok())
            .map_or(Self::DoesNotExist, Self::GenerationMatch)
    }

    fn generation(self) -> i64 {
        match self {
            Self::DoesNotExist => 0,
            Self::GenerationMatch(g) => g.get(),
        }
    }
}

/// How a new object is described.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub content_type: String,
    pub metadata: HashMap<String, String>,
}

/// Writes an object, finalized only when the payload ends cleanly.
///
/// A payload is `Bytes` for small documents or a [`StreamingSource`] for streams; if a
/// stream yields an error the upload is abandoned and no object appears, which is how
/// nothing half-written or unverified is ever visible.
pub async fn write<S, P>(
    client: &Storage,
    object: &ObjectRef,
    payload: P,
    precondition: Precondition,
    options: WriteOptions,
) -> Result<Object>
where
    P: Into<Payload<S>>,
    S: StreamingSource + Send + Sync + 'static,
{
    client
        .write_object(bucket_path(object), object.name.as_str(), payload)
        .set_if_generation_match(precondition.generation())
        .set_content_type(options.content_type)
        .set_metadata(options.metadata)
        .send_buffered()
        .await
        .map_err(|e| StorageError::from_gax(object, e))
}
