//! The HTTP contract: `POST /closure`, `POST /invoke`, `GET /tickets/{id}`,
//! `POST /tickets/{id}:cancel`, `GET /invocations/{id}` and `POST /invocations/{id}:cancel`.
//! Handlers parse the request and hand it to the [`Invoker`].

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use sigma_shared::extract::{JsonBody, Path, Query};

use crate::api::Status;
use crate::closure::Report;
use crate::error::DataformError;
use crate::invoke::{Answer, Cancelled, Invoked, Invoker, Queued};
use crate::queue::{TicketCancelled, TicketStatus};
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
            .route("/tickets/{*id}", get(ticket).post(ticket_method))
            .with_state(invoker),
        &crate::openapi::document(),
    )
}

/// The actions that depend on the loaded table, directly or transitively, dependencies
/// first; the table itself is not one of them. Nothing is created.
#[utoipa::path(
    post,
    path = "/closure",
    tag = "dataform",
    operation_id = "closure",
    request_body(
        content = ClosureRequest,
        description = "Any `Content-Type`: the body is read as JSON. The loaded table is `table`, else `dataform_table`, else the loaded object's file name without directories or extensions. Unknown fields are refused.",
        example = json!({"table": "lkp_fechas"})
    ),
    responses(
        (status = 200, description = "The closure.", body = Report,
         example = json!({"source": {"database": "acme-dwh-prod", "schema": "raw", "name": "lkp_fechas"},
                          "actions": [{"database": "acme-dwh-prod", "schema": "dataform_assertions", "name": "assert_fechas_raw",
                                       "type": "assertion", "disabled": false, "tags": ["calidad", "raw"]}],
                          "count": 16}))
    )
)]
pub(crate) async fn closure_of(
    State(invoker): State<Arc<Invoker>>,
    JsonBody(request): JsonBody<ClosureRequest>,
) -> Result<Json<Report>, DataformError> {
    Ok(Json(invoker.closure(&request.parse()?).await?))
}

/// Runs the closure in a Dataform invocation, never at the same time as another invocation
/// sharing one of its actions.
///
/// A load with nothing in its way waits `DATAFORM_SETTLE_SECONDS` for siblings (202); one
/// whose actions overlap a running invocation waits for it to end (202); loads waiting
/// together then start as one invocation covering their union. With no settle window and
/// nothing in the way the invocation starts at once (200). Poll `GET /tickets/{ticket}`.
///
/// Exactly one invocation per idempotency key and attempt, whatever fails: a replay answers
/// the invocation created the first time (`"replayed": true`), or the same ticket while it
/// waits. An empty closure creates nothing (`"skipped": true`). A re-run (`attempt` 2 and
/// up) adopts an earlier attempt's invocation that succeeded or still runs, else covers what
/// did not succeed (`rerun`).
#[utoipa::path(
    post,
    path = "/invoke",
    tag = "dataform",
    operation_id = "invoke",
    request_body(
        content = InvokeRequest,
        description = "Any `Content-Type`: the body is read as JSON. Unknown fields (`dryRun`, a typo) are refused, never read as a real invocation.",
        example = json!({"table": "lkp_fechas", "idempotency_key": "out/data/20240115/lkp_fechas.gz/1705312800123456", "actions_sample": 20})
    ),
    responses(
        (status = 200, description = "The invocation, created now or earlier (`replayed`), or none (`skipped`, `dry_run`).", body = Invoked,
         example = json!({"invocation": "projects/acme-dwh-prod/locations/europe-west1/repositories/dwh/workflowInvocations/1705312800-abc",
                          "compilation_result": "projects/acme-dwh-prod/locations/europe-west1/repositories/dwh/compilationResults/1705312790-def",
                          "state": "RUNNING",
                          "source": {"database": "acme-dwh-prod", "schema": "raw", "name": "lkp_fechas"},
                          "actions": [{"database": "acme-dwh-prod", "schema": "dataform_assertions", "name": "assert_fechas_raw",
                                       "type": "assertion", "disabled": false, "tags": ["calidad", "raw"]}],
                          "count": 16, "skipped": false, "dry_run": false, "replayed": false, "attempt": 1,
                          "ticket": "5f1c0e3a9d2b4c7e8f6a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e"})),
        (status = 202, description = "Queued: the load waits for overlapping invocations to end, or settles. Poll the ticket.", body = Queued,
         example = json!({"queued": true, "ticket": "5f1c0e3a9d2b4c7e8f6a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e",
                          "waiting_for": ["projects/acme-dwh-prod/locations/europe-west1/repositories/dwh/workflowInvocations/1705312800-abc"],
                          "actions": 16, "source": {"database": "acme-dwh-prod", "schema": "raw", "name": "lkp_fechas"}, "attempt": 1}))
    )
)]
pub(crate) async fn invoke(
    State(invoker): State<Arc<Invoker>>,
    JsonBody(request): JsonBody<InvokeRequest>,
) -> Result<Answer, DataformError> {
    invoker.invoke(&request.parse()?).await
}

/// Where a load's ticket stands: queued (and behind what), starting, or started, with the
/// states of the load's own actions in its invocation.
///
/// Polling moves the schedule on: the first poll to see that a ticket's blockers ended
/// starts the invocation for everything waiting.
#[utoipa::path(
    get,
    path = "/tickets/{id}",
    tag = "dataform",
    operation_id = "ticket_status",
    params(("id" = String, Path, description = "The ticket `/invoke` answered."), StatusQuery),
    responses(
        (status = 200, description = "The ticket's state.", body = TicketStatus,
         example = json!({"ticket": "5f1c0e3a9d2b4c7e8f6a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e",
                          "state": "SUCCEEDED", "terminal": true,
                          "source": {"database": "acme-dwh-prod", "schema": "raw", "name": "lkp_fechas"},
                          "waiting_for": [],
                          "invocation": "projects/acme-dwh-prod/locations/europe-west1/repositories/dwh/workflowInvocations/1705312800-abc",
                          "invocation_state": "FAILED", "count": 16, "actions": {"SUCCEEDED": 16}, "failed": []}))
    )
)]
pub(crate) async fn ticket(
    State(invoker): State<Arc<Invoker>>,
    Path(id): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<TicketStatus>, DataformError> {
    Ok(Json(invoker.ticket(&id, query.sample()).await?))
}

/// Gives up a ticket: the workflow's way out at its poll deadline.
///
/// A waiting ticket is withdrawn. A started one's invocation is cancelled only when it
/// serves no other load; otherwise it runs on for them (`cancel_requested: false`).
#[utoipa::path(
    post,
    path = "/tickets/{id}:cancel",
    tag = "dataform",
    operation_id = "cancel_ticket",
    params(("id" = String, Path, description = "The ticket `/invoke` answered."), StatusQuery),
    responses(
        (status = 200, description = "The ticket's state, and whether anything was cancelled.", body = TicketCancelled,
         example = json!({"ticket": "5f1c0e3a9d2b4c7e8f6a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e",
                          "state": "CANCELLED", "terminal": true,
                          "source": {"database": "acme-dwh-prod", "schema": "raw", "name": "lkp_fechas"},
                          "waiting_for": [], "invocation": null, "invocation_state": null,
                          "count": 0, "actions": {}, "failed": [], "cancel_requested": true}))
    )
)]
pub(crate) async fn ticket_method(
    State(invoker): State<Arc<Invoker>>,
    Path(target): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<TicketCancelled>, DataformError> {
    let id = cancel_of(&target)?;
    Ok(Json(invoker.cancel_ticket(id, query.sample()).await?))
}

/// An invocation's state, its actions counted per state, and its failed actions.
///
/// Accepts the invocation's id or its full name as `/invoke` returns it (plain or URL-encoded).
#[utoipa::path(
    get,
    path = "/invocations/{id}",
    tag = "dataform",
    operation_id = "invocation_status",
    params(("id" = String, Path, description = "The invocation's id, or its full name (plain or URL-encoded)."), StatusQuery),
    responses(
        (status = 200, description = "The invocation's state.", body = Status,
         example = json!({"invocation": "projects/acme-dwh-prod/locations/europe-west1/repositories/dwh/workflowInvocations/1705312800-abc",
                          "state": "FAILED", "terminal": true, "count": 16,
                          "actions": {"SUCCEEDED": 12, "FAILED": 1, "SKIPPED": 3},
                          "failed": [{"target": "acme-dwh-prod.warehouse.cal_resumen", "failure_reason": "Query error: ..."}]}))
    )
)]
pub(crate) async fn invocation(
    State(invoker): State<Arc<Invoker>>,
    Path(id): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<Status>, DataformError> {
    Ok(Json(invoker.status(&id, query.sample()).await?))
}

/// Cancels an invocation unless it has ended: the workflow's way out at its poll deadline.
///
/// Idempotent: an invocation that has ended answers with `cancel_requested: false`.
#[utoipa::path(
    post,
    path = "/invocations/{id}:cancel",
    tag = "dataform",
    operation_id = "cancel_invocation",
    params(("id" = String, Path, description = "The invocation's id, or its full name (plain or URL-encoded)."), StatusQuery),
    responses(
        (status = 200, description = "The invocation's state, and whether a cancel was asked for.", body = Cancelled,
         example = json!({"invocation": "projects/acme-dwh-prod/locations/europe-west1/repositories/dwh/workflowInvocations/1705312800-abc",
                          "state": "CANCELING", "terminal": false, "count": 16,
                          "actions": {"SUCCEEDED": 4, "RUNNING": 2, "SKIPPED": 10}, "failed": [], "cancel_requested": true}))
    )
)]
pub(crate) async fn invocation_method(
    State(invoker): State<Arc<Invoker>>,
    Path(target): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<Cancelled>, DataformError> {
    let id = cancel_of(&target)?;
    Ok(Json(invoker.cancel(id, query.sample()).await?))
}

/// The id in `{id}:cancel`, the one method a `POST` under `/tickets/` or `/invocations/` may
/// name.
fn cancel_of(target: &str) -> Result<&str, DataformError> {
    target
        .strip_suffix(":cancel")
        .ok_or_else(|| DataformError::UnknownMethod(target.to_owned()))
}
