//! Every way a request can fail, mapped to HTTP in one place.

use axum::http::StatusCode;
use sigma_shared::HttpError;
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

sigma_shared::into_response_via_api_error!(Error);
