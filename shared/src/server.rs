//! The HTTP server every service runs: the same port handling, health check, fallbacks,
//! request logging and shutdown, so services differ only in their routes.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::config::{self, ConfigError};
use crate::error::ApiError;
use crate::openapi;
use crate::telemetry::TraceParent;
use utoipa::openapi::OpenApi;

/// Adds what every service answers besides its own routes: `GET /healthz`, its OpenAPI
/// document at `GET /openapi.json`, JSON 404/405, and one span per request that handlers
/// fill in (`object`, `generation`, `bytes`) and that ends in exactly one log line with
/// status and latency.
pub fn finish(routes: Router, document: &OpenApi) -> Router {
    let document = Bytes::from(openapi::to_json(document));
    routes
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], document) }),
        )
        .fallback(|| async { not_found() })
        .method_not_allowed_fallback(|| async { method_not_allowed() })
        .layer(middleware::from_fn(request_span))
}

/// A path no route serves.
pub fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// A route asked with a method it does not serve.
pub fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

async fn request_span(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if path == "/healthz" {
        return next.run(request).await;
    }
    let span = tracing::info_span!(
        "request",
        method = %method,
        path = %path,
        object = tracing::field::Empty,
        generation = tracing::field::Empty,
        attempt = tracing::field::Empty,
        bytes = tracing::field::Empty,
    );
    if let Some(parent) = TraceParent::from_headers(request.headers()) {
        parent.adopt(&span);
    }
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let latency = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            http_request.request_method = %method,
            http_request.request_url = %path,
            http_request.status = status,
            http_request.latency = format!("{:.3}s", latency.as_secs_f64()),
            duration_ms = latency.as_millis() as u64,
            "request finished"
        );
    });
    response
}

/// Binds `0.0.0.0:$PORT` (default 8080), as Cloud Run expects.
pub async fn bind_from_env() -> Result<TcpListener, ConfigError> {
    let port: u16 = config::parsed("PORT")?.unwrap_or(8080);
    TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .map_err(|e| ConfigError::new("PORT", format!("cannot listen on port {port}: {e}")))
}

/// Serves until SIGTERM or Ctrl-C, then lets requests in flight finish: Cloud Run sends
/// SIGTERM and allows ten seconds before it kills the instance.
pub async fn serve(listener: TcpListener, app: Router) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "listening");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Serves `app` on a random loopback port in the background; for tests.
pub async fn spawn(app: Router) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_json_errors() {
        let app = finish(
            Router::new().route("/x", axum::routing::post(|| async { "x" })),
            &OpenApi::default(),
        );
        let not_found = app
            .clone()
            .oneshot(
                Request::get("/nope")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(not_found.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["code"], "not_found");
        assert_eq!(json["error"]["retryable"], false);

        let wrong_method = app
            .clone()
            .oneshot(Request::get("/x").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);

        let health = app
            .oneshot(
                Request::get("/healthz")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }
}
