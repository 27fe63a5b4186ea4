//! Google API failures, sorted into what the caller should do about them.
//!
//! Every official client returns `google_cloud_gax::error::Error`; whether that means "your
//! request was wrong" or "try again later" decides the status sigma answers with, so the
//! decision is made here once for Storage, Dataform, Secret Manager and Pub/Sub alike.

use axum::http::StatusCode;
use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;

use crate::redact::redact;

/// What a failed Google call means for the request that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    NotFound,
    /// A precondition (e.g. `ifGenerationMatch`) did not hold: someone else wrote first.
    PreconditionFailed,
    /// Google says the request itself is wrong (400-class other than the above).
    Rejected(StatusCode),
    /// A quota or rate limit (`RESOURCE_EXHAUSTED`, HTTP 429): come back later. Answered as
    /// 429 so the workflow waits it out as backpressure, for as long as a quota stays full,
    /// instead of spending its few retries for broken calls on it.
    Throttled,
    /// 5xx, timeouts, broken connections: worth retrying.
    Transient,
    /// Anything else: a bug or an unexpected answer, not worth retrying blindly.
    Unexpected,
}

impl Failure {
    /// The RPC code decides when Google sent one: it says what happened, while the HTTP
    /// status only says how it was carried (Dataform answers ABORTED, a transient conflict,
    /// over HTTP 409). Errors without a code fall back to the HTTP status, then to what
    /// went wrong on the way.
    pub fn of(error: &GaxError) -> Self {
        if let Some(failure) = error.status().and_then(|status| Self::of_code(status.code)) {
            return failure;
        }
        if let Some(status) = error.http_status_code() {
            return Self::of_http(status);
        }
        if is_damaged_download(error) {
            return Self::Transient;
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

    /// `None` for the codes that say nothing (`OK`, `UNKNOWN`: what Google's JSON APIs report
    /// when their error has no `status`), so the HTTP status decides instead.
    pub fn of_code(code: Code) -> Option<Self> {
        Some(match code {
            Code::Ok | Code::Unknown => return None,
            Code::NotFound => Self::NotFound,
            Code::FailedPrecondition => Self::PreconditionFailed,
            Code::AlreadyExists => Self::Rejected(StatusCode::CONFLICT),
            Code::PermissionDenied => Self::Rejected(StatusCode::FORBIDDEN),
            Code::Unauthenticated => Self::Rejected(StatusCode::UNAUTHORIZED),
            Code::InvalidArgument | Code::OutOfRange => Self::Rejected(StatusCode::BAD_REQUEST),
            Code::Unimplemented => Self::Rejected(StatusCode::NOT_IMPLEMENTED),
            Code::ResourceExhausted => Self::Throttled,
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Internal
            | Code::Aborted
            | Code::Cancelled => Self::Transient,
            _ => Self::Unexpected,
        })
    }

    pub fn of_http(status: u16) -> Self {
        match status {
            404 => Self::NotFound,
            412 => Self::PreconditionFailed,
            429 => Self::Throttled,
            408 | 500..=599 => Self::Transient,
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
            Self::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Self::Transient => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::Transient)
    }
}

/// The human part of a Google error: its status message when there is one, so callers see
/// Google's own words ("Bucket not found") rather than a Rust debug dump.
/// Redacted: transport errors quote the URL they failed on, which for an upload is the
/// session URL, a credential.
pub fn message(error: &GaxError) -> String {
    let message = error
        .status()
        .map(|s| s.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| error.to_string());
    redact(&message).into_owned()
}

/// A download whose bytes did not match the checksums Cloud Storage announced, or that
/// ended early: the object is fine, the transfer was not, so reading again will do.
fn is_damaged_download(error: &GaxError) -> bool {
    use google_cloud_storage::error::ReadError;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(read) = cause.downcast_ref::<ReadError>() {
            return matches!(
                read,
                ReadError::ChecksumMismatch(_)
                    | ReadError::ShortRead(_)
                    | ReadError::LongRead { .. }
            );
        }
        source = cause.source();
    }
    false
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
        assert_eq!(Failure::of_http(429), Failure::Throttled);
        assert_eq!(Failure::Throttled.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(Failure::Throttled.retryable());
        for transient in [408, 500, 502, 503, 504] {
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

    fn service_error(http: u16, rpc: &str) -> GaxError {
        let body = serde_json::json!({"error": {"code": http, "message": "m", "status": rpc}});
        GaxError::http(http, http::HeaderMap::new(), body.to_string().into())
    }

    #[test]
    fn the_rpc_code_decides_before_the_http_status() {
        let aborted = GaxError::service_with_http_metadata(
            google_cloud_gax::error::rpc::Status::default()
                .set_code(Code::Aborted)
                .set_message("concurrent update"),
            Some(409),
            None,
        );
        assert_eq!(Failure::of(&aborted), Failure::Transient);
        assert!(Failure::of(&aborted).retryable());
        let quota = GaxError::service_with_http_metadata(
            google_cloud_gax::error::rpc::Status::default().set_code(Code::ResourceExhausted),
            Some(403),
            None,
        );
        assert_eq!(Failure::of(&quota), Failure::Throttled);
        let exists = GaxError::service_with_http_metadata(
            google_cloud_gax::error::rpc::Status::default().set_code(Code::AlreadyExists),
            Some(409),
            None,
        );
        assert_eq!(
            Failure::of(&exists),
            Failure::Rejected(StatusCode::CONFLICT)
        );
    }

    #[test]
    fn errors_without_an_rpc_code_fall_back_to_the_http_status() {
        let unknown = GaxError::service_with_http_metadata(
            google_cloud_gax::error::rpc::Status::default().set_code(Code::Unknown),
            Some(412),
            None,
        );
        assert_eq!(Failure::of(&unknown), Failure::PreconditionFailed);
        assert_eq!(
            Failure::of(&service_error(403, "")),
            Failure::Rejected(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            Failure::of(&service_error(401, "")),
            Failure::Rejected(StatusCode::UNAUTHORIZED)
        );
    }

    #[test]
    fn a_damaged_download_is_worth_reading_again() {
        use google_cloud_storage::error::{ChecksumMismatch, ReadError};
        let mismatch = GaxError::deser(ReadError::ChecksumMismatch(ChecksumMismatch::Crc32c {
            got: 1,
            want: 2,
        }));
        assert_eq!(Failure::of(&mismatch), Failure::Transient);
        assert_eq!(
            Failure::of(&GaxError::deser(ReadError::ShortRead(3))),
            Failure::Transient
        );
    }

    #[test]
    fn messages_never_carry_a_session_url() {
        let error = GaxError::io(
            "error sending request for url (http://h/upload/storage/v1/b/b/o?uploadType=resumable&upload_id=SECRET)",
        );
        assert!(!message(&error).contains("SECRET"), "{}", message(&error));
    }
}
