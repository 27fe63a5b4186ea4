//! Every way a decryption request can fail, and the one place each becomes an HTTP answer.

use axum::http::StatusCode;
use sigma_shared::object::NameError;
use sigma_shared::openapi::ErrorDoc;
use sigma_shared::storage::StorageError;
use sigma_shared::{BucketName, Generation, HttpError, ObjectRef};

use crate::fernet::TokenError;
use crate::gzip::GzipError;
use crate::upload::UploadError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidName(NameError),
    #[error("bucket {0} is not one of the trigger buckets this service may read")]
    BucketNotAllowed(BucketName),
    #[error("{0} does not end in \".encrypted\"")]
    NotEncrypted(ObjectRef),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{object}: {reason}")]
    Token {
        object: ObjectRef,
        reason: TokenError,
    },
    #[error("the plaintext of {0} is not gzip")]
    NotGzip(ObjectRef),
    #[error("the plaintext of {object} is not a complete, intact gzip stream: {reason}")]
    CorruptGzip { object: ObjectRef, reason: String },
    /// A newer upload of the same name was decrypted already: this event is stale, and
    /// writing its plaintext would replace newer data with older.
    #[error(
        "{output} already holds the decryption of {source_object} generation {newer}, newer than {requested}"
    )]
    Superseded {
        output: ObjectRef,
        source_object: ObjectRef,
        newer: Generation,
        requested: Generation,
    },
    /// The output holds the decryption of an object of the same name in another trigger
    /// bucket. Which of two uploads to different buckets is newer cannot be known (their
    /// generations are unrelated), so neither may replace the other.
    #[error(
        "{output} already holds the decryption of {} in bucket {existing_bucket}; {source_object} must not overwrite it",
        source_object.name
    )]
    OutputConflict {
        output: ObjectRef,
        existing_bucket: BucketName,
        source_object: ObjectRef,
    },
    /// Another request replaced the output while this one was decrypting; trying again
    /// decides from what is there now.
    #[error("{0} was written by another request at the same time")]
    WriteConflict(ObjectRef),
    /// A read or the upload broke off in a way Cloud Storage did not explain.
    #[error("decrypting {object} was interrupted: {reason}")]
    Interrupted { object: ObjectRef, reason: String },
    #[error("decryption of {0} stopped unexpectedly")]
    Internal(ObjectRef),
}

impl Error {
    pub fn from_gzip(object: &ObjectRef, error: GzipError) -> Self {
        match error {
            GzipError::NotGzip => Self::NotGzip(object.clone()),
            GzipError::Corrupt(reason) => Self::CorruptGzip {
                object: object.clone(),
                reason,
            },
        }
    }

    pub fn from_upload(object: &ObjectRef, error: UploadError) -> Self {
        match error {
            UploadError::Storage(e) => Self::Storage(e),
            e @ (UploadError::Stopped | UploadError::Stalled(_)) => Self::Interrupted {
                object: object.clone(),
                reason: e.to_string(),
            },
        }
    }
}

impl HttpError for Error {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidName(_) => StatusCode::BAD_REQUEST,
            Self::BucketNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::NotEncrypted(_)
            | Self::Token { .. }
            | Self::NotGzip(_)
            | Self::CorruptGzip { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Storage(e) => e.status(),
            Self::Superseded { .. } | Self::OutputConflict { .. } | Self::WriteConflict(_) => {
                StatusCode::CONFLICT
            }
            Self::Interrupted { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidName(_) => "invalid_name",
            Self::BucketNotAllowed(_) => "bucket_not_allowed",
            Self::NotEncrypted(_) => "not_encrypted",
            Self::Storage(e) => e.code(),
            Self::Token { reason, .. } => reason.code(),
            Self::NotGzip(_) => "not_gzip",
            Self::CorruptGzip { .. } => "corrupt_gzip",
            Self::Superseded { .. } => "superseded",
            Self::OutputConflict { .. } => "output_conflict",
            Self::WriteConflict(_) => "write_conflict",
            Self::Interrupted { .. } => "interrupted",
            Self::Internal(_) => "internal",
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Self::Storage(e) => e.retryable(),
            Self::WriteConflict(_) => true,
            other => sigma_shared::error::is_transient(other.status()),
        }
    }
}

impl Error {
    /// One error of each kind the service answers, with when it happens: the OpenAPI
    /// document takes status, code and retryability from them through [`HttpError`].
    pub fn documented() -> Vec<ErrorDoc> {
        let bucket: BucketName = "company_trigger_bucket".parse().expect("a bucket name");
        let source = ObjectRef::new(
            bucket.clone(),
            "data/20240115/lkp_fechas.gz.encrypted"
                .parse()
                .expect("an object name"),
        );
        let output = ObjectRef::new(
            "company_output_bucket".parse().expect("a bucket name"),
            "data/20240115/lkp_fechas.gz"
                .parse()
                .expect("an object name"),
        );
        let generation = Generation::new(1705312800123456).expect("a generation");
        let mut documented = vec![
            ErrorDoc::of(
                &Self::InvalidName(NameError::EmptyObject),
                "Invalid bucket name; object name empty, over 1024 bytes, with `..`, a control character or a leading `/`.",
            ),
            ErrorDoc::of(
                &Self::BucketNotAllowed(bucket.clone()),
                "The bucket is not one of `TRIGGER_BUCKETS`.",
            ),
            ErrorDoc::of(
                &Self::Storage(StorageError::NotFound(source.clone())),
                "The source object (or the pinned generation) does not exist.",
            ),
            ErrorDoc::of(
                &Self::Superseded {
                    output: output.clone(),
                    source_object: source.clone(),
                    newer: generation,
                    requested: generation,
                },
                "The output already holds the decryption of a newer upload of this source.",
            ),
            ErrorDoc::of(
                &Self::OutputConflict {
                    output: output.clone(),
                    existing_bucket: bucket,
                    source_object: source.clone(),
                },
                "The output holds the decryption of the same name from another trigger bucket.",
            ),
            ErrorDoc::of(
                &Self::WriteConflict(output),
                "Another request replaced the output while this one decrypted; retrying decides afresh.",
            ),
            ErrorDoc::of(
                &Self::Storage(StorageError::TooLarge {
                    object: source.clone(),
                    limit: 1,
                }),
                "The source (its announced size or the bytes read) is larger than `MAX_OBJECT_BYTES`.",
            ),
            ErrorDoc::of(
                &Self::NotEncrypted(source.clone()),
                "The name does not end in `.encrypted`.",
            ),
            ErrorDoc::of(
                &Self::Token {
                    object: source.clone(),
                    reason: TokenError::Signature,
                },
                "Not a Fernet token, altered, truncated, wrong key, bad padding.",
            ),
            ErrorDoc::of(
                &Self::Token {
                    object: source.clone(),
                    reason: TokenError::Expired { age: 2, ttl: 1 },
                },
                "Older than `FERNET_TTL_SECONDS`, or too far in the future (only with a TTL).",
            ),
            ErrorDoc::of(
                &Self::NotGzip(source.clone()),
                "The plaintext does not start with a gzip header.",
            ),
            ErrorDoc::of(
                &Self::CorruptGzip {
                    object: source.clone(),
                    reason: String::new(),
                },
                "With `VERIFY_GZIP=true`: the gzip stream is truncated or its CRC/length is wrong.",
            ),
            ErrorDoc::of(
                &Self::Interrupted {
                    object: source.clone(),
                    reason: String::new(),
                },
                "A read or the upload broke off without an explanation from Cloud Storage, or one upload chunk got nowhere for 60 s.",
            ),
            ErrorDoc::of(
                &Self::Internal(source.clone()),
                "A defect: the decryption stopped unexpectedly. Nothing was written.",
            ),
        ];
        documented.extend(sigma_shared::openapi::storage_errors(&source));
        documented
    }
}

sigma_shared::into_response_via_api_error!(Error);
