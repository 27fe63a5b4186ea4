//! Every way a request can fail, mapped to HTTP in one place.

use axum::http::StatusCode;
use sigma_shared::HttpError;
use sigma_shared::google::Failure;
use sigma_shared::openapi::ErrorDoc;
use sigma_shared::storage::StorageError;
use sigma_shared::{Generation, ObjectRef};

use crate::dataflow::DataflowError;
use crate::labels::LabelError;
use crate::naming::JobName;
use crate::plan::PlanError;
use crate::registry::MatchError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Match(#[from] MatchError),
    #[error("the labels of job {job_name} break Dataflow's label rules: {error}")]
    InvalidLabels {
        job_name: JobName,
        error: LabelError,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Dataflow(#[from] DataflowError),
    #[error(
        "{object} is at generation {current}, not {requested}: a newer upload replaced it and is launched on its own"
    )]
    StaleGeneration {
        object: ObjectRef,
        requested: Generation,
        current: Generation,
    },
    #[error(
        "{config} already describes generation {newer} of the same batch, newer than {requested}"
    )]
    NewerConfig {
        config: ObjectRef,
        requested: Generation,
        newer: Generation,
    },
    #[error("Dataflow reports job {0} as running but does not list it yet; retry")]
    ConflictUnresolved(JobName),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0:?} names no job method: the one there is is {{job_id}}:cancel")]
    UnknownMethod(String),
}

impl From<PlanError> for Error {
    fn from(error: PlanError) -> Self {
        match error {
            PlanError::Match(e) => Self::Match(e),
            PlanError::Labels { job_name, error } => Self::InvalidLabels { job_name, error },
        }
    }
}

impl HttpError for Error {
    fn status(&self) -> StatusCode {
        match self {
            Self::Match(_) | Self::InvalidLabels { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Storage(e) => e.status(),
            Self::Dataflow(e) => e.status(),
            Self::StaleGeneration { .. } | Self::NewerConfig { .. } => StatusCode::CONFLICT,
            Self::ConflictUnresolved(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnknownMethod(_) => StatusCode::NOT_FOUND,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Match(MatchError::UnknownEntity(_)) => "unknown_entity",
            Self::Match(MatchError::Ambiguous { .. }) => "ambiguous_entity",
            Self::Match(MatchError::InvalidDate { .. }) => "invalid_fecha_lote",
            Self::InvalidLabels { .. } => "invalid_labels",
            Self::Storage(e) => e.code(),
            Self::Dataflow(e) => e.code(),
            Self::StaleGeneration { .. } | Self::NewerConfig { .. } => "stale_generation",
            Self::ConflictUnresolved(_) => "dataflow_unavailable",
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnknownMethod(_) => "not_found",
        }
    }

    fn retryable(&self) -> bool {
        match self {
            // Another writer of the same config won every round: retrying decides afresh.
            Self::Storage(StorageError::PreconditionFailed(_)) => true,
            Self::Storage(e) => e.retryable(),
            Self::Dataflow(e) => e.retryable(),
            other => sigma_shared::error::is_transient(other.status()),
        }
    }
}

impl Error {
    /// One error of each kind the service answers, with when it happens: the OpenAPI
    /// document takes status, code and retryability from them through [`HttpError`].
    pub fn documented() -> Vec<ErrorDoc> {
        let object = ObjectRef::new(
            "company_output_bucket".parse().expect("a bucket name"),
            "data/20240115/poliza_detalle.gz"
                .parse()
                .expect("an object name"),
        );
        let generation = Generation::new(1705312800123456).expect("a generation");
        let job_name: JobName = "poliza-detalle-2024-01-15-gshdvvbl1c"
            .parse()
            .expect("a job name");
        let google = |failure: Failure| {
            Self::Dataflow(DataflowError::Google {
                status: failure.status().as_u16(),
                rpc: None,
                failure,
                message: String::new(),
            })
        };
        let mut documented = vec![
            ErrorDoc::of(
                &Self::InvalidRequest(String::new()),
                "Malformed bucket, object name, generation, attempt, job id or region.",
            ),
            ErrorDoc::of(
                &Self::UnknownMethod(String::new()),
                "A `POST` under `/jobs/` other than `/jobs/{job_id}:cancel`.",
            ),
            ErrorDoc::of(
                &Self::Storage(StorageError::NotFound(object.clone())),
                "No `generation` given and the object does not exist.",
            ),
            ErrorDoc::of(
                &google(Failure::NotFound),
                "Dataflow says 404 (e.g. an unknown job id, or a job of another region).",
            ),
            ErrorDoc::of(
                &Self::StaleGeneration {
                    object: object.clone(),
                    requested: generation,
                    current: generation,
                },
                "The upload was replaced by a newer one (object or config).",
            ),
            ErrorDoc::of(
                &Self::Storage(StorageError::PreconditionFailed(object.clone())),
                "Concurrent writers of the config kept winning; retry.",
            ),
            ErrorDoc::of(
                &Self::Match(MatchError::UnknownEntity(object.clone())),
                "The name matches no registry entry; nothing is written or launched.",
            ),
            ErrorDoc::of(
                &Self::Match(MatchError::Ambiguous {
                    object: object.clone(),
                    entities: Vec::new(),
                }),
                "The name matches several entries (fix the registry).",
            ),
            ErrorDoc::of(
                &Self::Match(MatchError::InvalidDate {
                    object: object.clone(),
                    entity: "poliza_detalle".parse().expect("an entity"),
                    date: "20241345".into(),
                }),
                "The date in the name is impossible (`20241345`).",
            ),
            ErrorDoc::of(
                &Self::InvalidLabels {
                    job_name: job_name.clone(),
                    error: LabelError::TooMany(65),
                },
                "The job's expanded labels break Google's label rules; nothing is written or launched.",
            ),
            ErrorDoc::of(
                &google(Failure::Throttled),
                "Dataflow answered `RESOURCE_EXHAUSTED` or 429 (typically the concurrent-jobs quota is full), or Cloud Storage throttled: wait and retry.",
            ),
            ErrorDoc::of(
                &google(Failure::Transient),
                "Dataflow answered `UNAVAILABLE`, `ABORTED`, `DEADLINE_EXCEEDED`, `INTERNAL`, or 5xx without a code, timed out or was unreachable.",
            ),
            ErrorDoc::of(
                &Self::ConflictUnresolved(job_name),
                "Dataflow reports the job as running but does not list it yet; retry.",
            ),
            ErrorDoc::of(
                &Self::Dataflow(DataflowError::Credentials(String::new())),
                "No access token (metadata server unreachable).",
            ),
            ErrorDoc::of(
                &Self::Dataflow(DataflowError::Malformed(String::new())),
                "Dataflow's answer could not be read, or Dataflow answered HTTP 412.",
            ),
        ];
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::CONFLICT,
        ] {
            documented.push(ErrorDoc::of(
                &google(Failure::Rejected(status)),
                "Dataflow refused the request (`INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `PERMISSION_DENIED`...); the message is Google's, with its RPC code.",
            ));
        }
        documented.extend(sigma_shared::openapi::storage_errors(&object));
        documented
    }
}

sigma_shared::into_response_via_api_error!(Error);
