//! Request bodies as JSON, whatever `Content-Type` the caller sent.
//!
//! `curl -d '{...}'` sends `application/x-www-form-urlencoded`; rejecting that with 415
//! would fail the most common hand-typed call, so the body is parsed as JSON regardless and
//! malformed JSON or a missing field becomes the usual 400 with serde's explanation.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "invalid_request", e.body_text()))?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("invalid request body: {e}"),
            )
        })
    }
}
