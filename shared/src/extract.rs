//! Request bodies as JSON, whatever `Content-Type` the caller sent; queries and paths whose
//! rejections keep the JSON error shape.
//!
//! `curl -d '{...}'` sends `application/x-www-form-urlencoded`; rejecting that with 415
//! would fail the most common hand-typed call, so the body is parsed as JSON regardless and
//! malformed JSON or a missing field becomes the usual 400 with serde's explanation.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The one refusal of a request the extractors cannot read (the OpenAPI documents list it).
pub fn invalid_request(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError::new(status, "invalid_request", message)
}

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
            .map_err(|e| invalid_request(e.status(), e.body_text()))?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            invalid_request(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {e}"),
            )
        })
    }
}

/// A query string parsed into `T`, refused with the JSON error shape (axum's own `Query`
/// answers plain text). Give `T` `#[serde(deny_unknown_fields)]` so a misspelt parameter is
/// an error, not a silent default.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| {
                invalid_request(
                    StatusCode::BAD_REQUEST,
                    format!("invalid query string: {}", e.body_text()),
                )
            })
    }
}

/// Path parameters parsed into `T`, refused with the JSON error shape.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e| {
                invalid_request(
                    StatusCode::BAD_REQUEST,
                    format!("invalid path: {}", e.body_text()),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use serde::Deserialize;
    use tower::ServiceExt;

    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Params {
        #[allow(dead_code)]
        region: Option<String>,
    }

    async fn call(uri: &str) -> (StatusCode, serde_json::Value) {
        let app = Router::new().route(
            "/jobs/{id}",
            get(|Path(id): Path<u32>, Query(_): Query<Params>| async move { id.to_string() }),
        );
        let response = app
            .oneshot(axum::http::Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    #[tokio::test]
    async fn query_and_path_rejections_use_the_json_error_shape() {
        for uri in ["/jobs/7?regoin=x", "/jobs/seven"] {
            let (status, body) = call(uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(body["error"]["code"], "invalid_request", "{uri}: {body}");
            assert_eq!(body["error"]["retryable"], false, "{uri}");
        }
        assert_eq!(call("/jobs/7?region=x").await.0, StatusCode::OK);
    }
}
