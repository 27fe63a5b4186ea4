//! The one error shape every sigma service answers with.
//!
//! Callers (Cloud Workflows, curl, other services) decide whether to retry from the status
//! and the `retryable` flag alone, so every failure, whatever crate it starts in, is turned
//! into this shape in exactly one place per service: its error enum implements [`HttpError`].

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::redact::redact;

/// What a service error must say about itself to be answered over HTTP.
///
/// `retryable` defaults to the HTTP convention (429 and 5xx are transient) so that an enum
/// only overrides it where the convention is wrong for a variant.
pub trait HttpError: std::error::Error {
    fn status(&self) -> StatusCode;
    /// A stable, machine-readable code such as `invalid_token`; part of the contract.
    fn code(&self) -> &'static str;
    fn retryable(&self) -> bool {
        is_transient(self.status())
    }
}

/// 429 and every 5xx except 501 are worth retrying; nothing else is.
pub fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

/// `{"error": {"code", "message", "retryable"}}` with its status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retryable: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    retryable: bool,
}

impl ApiError {
    /// The message is redacted here, the one door every answer and its log line pass
    /// through, so a session URL quoted by a transport error can never leave the service.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status,
            code,
            message: redact(&message).into_owned(),
            retryable: is_transient(status),
        }
    }

    pub fn from_error<E: HttpError + ?Sized>(error: &E) -> Self {
        Self {
            status: error.status(),
            code: error.code(),
            message: redact(&error.to_string()).into_owned(),
            retryable: error.retryable(),
        }
    }

    /// Whether an answer with this status carries `Retry-After`.
    pub fn says_retry_after(status: StatusCode) -> bool {
        status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
    }

    /// The JSON body, for places that need it outside a response (e.g. tests, events).
    pub fn body(&self) -> serde_json::Value {
        serde_json::to_value(Envelope {
            error: Body {
                code: self.code,
                message: &self.message,
                retryable: self.retryable,
            },
        })
        .expect("the error envelope always serializes")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(
                code = self.code,
                retryable = self.retryable,
                "{}",
                self.message
            );
        } else {
            tracing::warn!(code = self.code, "{}", self.message);
        }
        let mut response = (self.status, Json(self.body())).into_response();
        if Self::says_retry_after(self.status) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// Implements `IntoResponse` for a service error enum through [`ApiError`], so the mapping
/// to HTTP stays in the enum's [`HttpError`] impl and nowhere else.
#[macro_export]
macro_rules! into_response_via_api_error {
    ($ty:ty) => {
        impl ::axum::response::IntoResponse for $ty {
            fn into_response(self) -> ::axum::response::Response {
                $crate::error::ApiError::from_error(&self).into_response()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_statuses_are_429_and_5xx_but_not_501() {
        assert!(is_transient(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_transient(StatusCode::SERVICE_UNAVAILABLE));
        assert!(is_transient(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!is_transient(StatusCode::NOT_IMPLEMENTED));
        assert!(!is_transient(StatusCode::BAD_REQUEST));
        assert!(!is_transient(StatusCode::UNPROCESSABLE_ENTITY));
    }

    #[test]
    fn answers_never_carry_a_session_url() {
        let e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "interrupted",
            "writing failed: error sending request for url (http://127.0.0.2/upload/storage/v1/b/o/o?uploadType=resumable&upload_id=SECRET)",
        );
        assert!(!e.body().to_string().contains("upload_id"), "{}", e.body());
        assert!(!e.message.contains("SECRET"));
    }

    #[test]
    fn body_has_the_documented_shape() {
        let e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_token", "bad tag");
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"code": "invalid_token", "message": "bad tag", "retryable": false}})
        );
    }
}
