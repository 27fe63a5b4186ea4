//! Google API failures, sorted into what the caller should do about them.
//!
//! Every official client returns `google_cloud_gax::error::Error`; whether that means "your
//! request was wrong" or "try again later" decides the status sigma answers with, so the
//! decision is made here once for Storage, Dataform, Secret Manager and Pub/Sub alike.

use axum::http::StatusCode;
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;

/// What a failed Google call means for the request that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    NotFound,
    /// A precondition (e.g. `ifGenerationMatch`) did not hold: someone else wrote first.
    PreconditionFailed,
    /// Google says the request itself is wrong (400-class other than the above).
    Rejected(StatusCode),
    /// Throttling, 5xx, timeouts, broken connections: worth retrying.
    Transient,
    /// Anything else: a bug or an unexpected answer, not worth retrying blindly.
    Unexpected,
}

impl Failure {
    pub fn of(error: &GaxError) -> Self {
        if let Some(status) = error.http_status_code() {
            return Self::of_http(status);
        }
        if let Some(status) = error.status() {
            return match status.code {
                Code::NotFound => Self::NotFound,
                Code::FailedPrecondition => Self::PreconditionFailed,
                Code::AlreadyExists => Self::Rejected(StatusCode::CONFLICT),
                Code::PermissionDenied => Self::Rejected(StatusCode::FORBIDDEN),
                Code::Unauthenticated => Self::Rejected(StatusCode::UNAUTHORIZED),
                Code::InvalidArgument | Code::OutOfRange => Self::Rejected(StatusCode::BAD_REQUEST),
                Code::Unavailable
                | Code::DeadlineExceeded
                | Code::ResourceExhausted
                | Code::Internal
                | Code::Aborted
                | Code::Unknown => Self::Transient,
                _ => Self::Unexpected,
            };
        }
        if error.is_timeout()
            || error.is_io()
            || error.is_connect()
            || error.is_transport()
            || error.is_exhausted()
            || error.is_transient_and_before_rpc()
            || error.is_authentication()
        {
            return Self::Transient;
        }
        Self::Unexpected
    }

    pub fn of_http(status: u16) -> Self {
        match status {
            404 => Self::NotFound,
            412 => Self::PreconditionFailed,
            408 | 429 | 500..=599 => Self::Transient,
            400..=499 => {
                Self::Rejected(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
            }
            _ => Self::Unexpected,
        }
    }

    /// The status sigma answers with when this failure ends a request.
    pub fn status(self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::PreconditionFailed => StatusCode::CONFLICT,
            Self::Rejected(status) => status,
            Self::Transient => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn retryable(self) -> bool {
        matches!(self, Self::Transient)
    }
}

/// The human part of a Google error: its status message when there is one, so callers see
/// Google's own words ("Bucket not found") rather than a Rust debug dump.
pub fn message(error: &GaxError) -> String {
    error
        .status()
        .map(|s| s.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_sort_into_the_callers_fault_or_transient() {
        assert_eq!(Failure::of_http(404), Failure::NotFound);
        assert_eq!(Failure::of_http(412), Failure::PreconditionFailed);
        assert_eq!(
            Failure::of_http(403),
            Failure::Rejected(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            Failure::of_http(400),
            Failure::Rejected(StatusCode::BAD_REQUEST)
        );
        for transient in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                Failure::of_http(transient),
                Failure::Transient,
                "{transient}"
            );
            assert!(Failure::of_http(transient).retryable());
        }
        assert_eq!(Failure::Transient.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(!Failure::of_http(403).retryable());
    }
}
