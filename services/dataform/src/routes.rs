//! The HTTP contract: `POST /closure`, `POST /invoke`, `GET /invocations/{id}` and
//! `POST /invocations/{id}:cancel`. Handlers parse the request and hand it to the
//! [`Invoker`].

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use sigma_shared::extract::{JsonBody, Path, Query};

use crate::api::Status;
use crate::closure::Report;
use crate::error::DataformError;
use crate::invoke::{Cancelled, Invoked, Invoker};
use crate::request::{ClosureRequest, InvokeRequest, StatusQuery};

/// The service's routes with the shared health check, fallbacks and request logging.
pub fn app(invoker: Arc<Invoker>) -> Router {
    sigma_shared::server::finish(
        Router::new()
            .route("/closure", post(closure_of))
            .route("/invoke", post(invoke))
            .route(
                "/invocations/{*id}",
                get(invocation).post(invocation_method),
            )
            .with_state(invoker),
    )
}

async fn closure_of(
    State(invoker): State<Arc<Invoker>>,
    JsonBody(request): JsonBody<ClosureRequest>,
) -> Result<Json<Report>, DataformError> {
    Ok(Json(invoker.closure(&request.parse()?).await?))
}

async fn invoke(
    State(invoker): State<Arc<Invoker>>,
    JsonBody(request): JsonBody<InvokeRequest>,
) -> Result<Json<Invoked>, DataformError> {
    Ok(Json(invoker.invoke(&request.parse()?).await?))
}

/// Accepts the invocation's id or its full name as `/invoke` returns it (plain or URL-encoded).
async fn invocation(
    State(invoker): State<Arc<Invoker>>,
    Path(id): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<Status>, DataformError> {
    Ok(Json(invoker.status(&id, query.sample()).await?))
}

/// `POST /invocations/{id}:cancel`: the workflow's way out at its poll deadline.
async fn invocation_method(
    State(invoker): State<Arc<Invoker>>,
    Path(target): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<Cancelled>, DataformError> {
    let Some(id) = target.strip_suffix(":cancel") else {
        return Err(DataformError::UnknownMethod(target));
    };
    Ok(Json(invoker.cancel(id, query.sample()).await?))
}
