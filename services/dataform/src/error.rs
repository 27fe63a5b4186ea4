//! Every way a sigma-dataform request can fail, and what each means over HTTP.

use std::sync::Arc;

use axum::http::StatusCode;
use sigma_shared::HttpError;
use sigma_shared::google::Failure;
use sigma_shared::openapi::ErrorDoc;
use sigma_shared::storage::StorageError;

use crate::graph::GraphError;

#[derive(Debug, thiserror::Error)]
pub enum DataformError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("no action or declaration is named {0}")]
    UnknownTable(String),
    #[error("{name} names several tables, say which: {}", candidates.join(", "))]
    AmbiguousTable {
        name: String,
        candidates: Vec<String>,
    },
    #[error("the Dataform project does not compile: {}", .0.join("; "))]
    CompilationFailed(Vec<String>),
    /// The configured graph cannot be used; an operator must fix it, retrying will not help.
    #[error("{0}")]
    InvalidGraph(GraphError),
    #[error("invocations need DATAFORM_REPOSITORY; this instance reads its graph from a file")]
    InvocationsUnavailable,
    #[error("no workflow invocation {0}")]
    UnknownInvocation(String),
    #[error("no ticket {0}")]
    UnknownTicket(String),
    #[error("{0:?} names no method: the one there is is {{id}}:cancel")]
    UnknownMethod(String),
    #[error("another request with this idempotency key is creating its invocation; retry shortly")]
    InvocationInProgress,
    #[error("Dataform failed to {operation}: {message}")]
    Google {
        operation: &'static str,
        failure: Failure,
        message: String,
    },
    /// Other instances kept replacing the schedule while this one decided.
    #[error("the schedule kept changing under this request; retry shortly")]
    ScheduleBusy,
    #[error("the idempotency record {0} is unreadable")]
    CorruptRecord(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The last graph load failed; every request until its backoff passes shares this
    /// failure, which answers as the failure itself.
    #[error(transparent)]
    GraphUnavailable(Arc<DataformError>),
}

impl From<GraphError> for DataformError {
    fn from(error: GraphError) -> Self {
        match error {
            GraphError::Compilation(messages) => Self::CompilationFailed(messages),
            other => Self::InvalidGraph(other),
        }
    }
}

impl DataformError {
    pub fn google(operation: &'static str, error: &google_cloud_gax::error::Error) -> Self {
        Self::Google {
            operation,
            failure: Failure::of(error),
            message: sigma_shared::google::message(error),
        }
    }
}

impl HttpError for DataformError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnknownTable(_)
            | Self::UnknownInvocation(_)
            | Self::UnknownTicket(_)
            | Self::UnknownMethod(_) => StatusCode::NOT_FOUND,
            Self::AmbiguousTable { .. } => StatusCode::CONFLICT,
            Self::CompilationFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidGraph(_) | Self::CorruptRecord(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::InvocationsUnavailable => StatusCode::NOT_IMPLEMENTED,
            Self::InvocationInProgress | Self::ScheduleBusy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Google { failure, .. } => failure.status(),
            Self::Storage(e) => e.status(),
            Self::GraphUnavailable(e) => e.status(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnknownTable(_) => "unknown_table",
            Self::AmbiguousTable { .. } => "ambiguous_table",
            Self::CompilationFailed(_) => "compilation_failed",
            Self::InvalidGraph(_) => "invalid_graph",
            Self::InvocationsUnavailable => "invocations_unavailable",
            Self::UnknownInvocation(_) => "unknown_invocation",
            Self::UnknownTicket(_) => "unknown_ticket",
            Self::ScheduleBusy => "schedule_busy",
            Self::UnknownMethod(_) => "not_found",
            Self::InvocationInProgress => "invocation_in_progress",
            Self::Google {
                failure: Failure::Throttled,
                ..
            } => "quota_exhausted",
            Self::Google {
                failure: Failure::Transient,
                ..
            } => "dataform_unavailable",
            Self::Google { .. } => "dataform_error",
            Self::CorruptRecord(_) => "corrupt_record",
            Self::Storage(e) => e.code(),
            Self::GraphUnavailable(e) => e.code(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Self::InvalidGraph(_) | Self::CorruptRecord(_) => false,
            Self::Google { failure, .. } => failure.retryable(),
            Self::Storage(e) => e.retryable(),
            Self::GraphUnavailable(e) => e.retryable(),
            other => sigma_shared::error::is_transient(other.status()),
        }
    }
}

impl DataformError {
    /// One error of each kind the service answers, with when it happens: the OpenAPI
    /// document takes status, code and retryability from them through [`HttpError`].
    pub fn documented() -> Vec<ErrorDoc> {
        let google = |failure| Self::Google {
            operation: "invoke",
            failure,
            message: String::new(),
        };
        let mut documented = vec![
            ErrorDoc::of(
                &Self::InvalidRequest(String::new()),
                "No table given; an invalid table or object name, idempotency key, invocation id, `attempt` or `rerun`.",
            ),
            ErrorDoc::of(&Self::UnknownTable(String::new()), "No such target."),
            ErrorDoc::of(
                &Self::UnknownInvocation(String::new()),
                "No such invocation.",
            ),
            ErrorDoc::of(&Self::UnknownTicket(String::new()), "No such ticket."),
            ErrorDoc::of(
                &Self::UnknownMethod(String::new()),
                "A `POST` under `/invocations/` or `/tickets/` other than `{id}:cancel`.",
            ),
            ErrorDoc::of(
                &Self::ScheduleBusy,
                "Other instances kept changing the schedule while this request decided; retry shortly.",
            ),
            ErrorDoc::of(
                &Self::AmbiguousTable {
                    name: String::new(),
                    candidates: Vec::new(),
                },
                "A bare name matches several targets (listed in the message).",
            ),
            ErrorDoc::of(
                &Self::CompilationFailed(Vec::new()),
                "The project does not compile (`compilationErrors` or the file's `graphErrors`), with the compiler's messages.",
            ),
            ErrorDoc::of(
                &Self::InvocationsUnavailable,
                "`/invoke` (other than a dry run or an empty closure) or `/invocations` with a graph file as the source.",
            ),
            ErrorDoc::of(
                &google(Failure::Throttled),
                "Dataform answered `RESOURCE_EXHAUSTED` or HTTP 429, or Cloud Storage did for the state bucket: wait and retry.",
            ),
            ErrorDoc::of(
                &google(Failure::Transient),
                "Dataform answered 5xx or an RPC status that means \"try again\", or could not be reached.",
            ),
            ErrorDoc::of(
                &Self::InvocationInProgress,
                "Another request with this idempotency key is creating the invocation; retry shortly.",
            ),
            ErrorDoc::of(
                &Self::InvalidGraph(GraphError::Cycle(String::new())),
                "The configured graph file is unreadable, cyclic or has duplicate targets: an operator must fix it.",
            ),
            ErrorDoc::of(
                &Self::CorruptRecord(String::new()),
                "An idempotency record in `DATAFORM_STATE_BUCKET` is unreadable: an operator must look at it.",
            ),
            ErrorDoc::of(
                &google(Failure::Unexpected),
                "Dataform gave an answer that could not be read.",
            ),
        ];
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
            StatusCode::CONFLICT,
        ] {
            let failure = if status == StatusCode::NOT_FOUND {
                Failure::NotFound
            } else {
                Failure::Rejected(status)
            };
            documented.push(ErrorDoc::of(
                &google(failure),
                "Dataform refused the call for another reason (e.g. 403: permission denied).",
            ));
        }
        let state = sigma_shared::ObjectRef::new(
            "company_config_bucket".parse().expect("a bucket name"),
            "dataform/invocations/0.json"
                .parse()
                .expect("an object name"),
        );
        documented.extend(sigma_shared::openapi::storage_errors(&state));
        documented
    }
}

sigma_shared::into_response_via_api_error!(DataformError);
