//! The HTTP contract: `POST /closure`, `POST /invoke`, `GET /invocations/{id}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sigma_shared::events::{Event, EventType};
use sigma_shared::extract::JsonBody;
use sigma_shared::{BucketName, Generation, ObjectName, ObjectRef};

use crate::AppState;
use crate::closure::{ActionView, Report, closure};
use crate::error::DataformError;
use crate::graph::{Graph, Target};
use crate::idempotency::{Claim, Record};
use crate::name::{Resolution, TableName};

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/closure", post(closure_of))
        .route("/invoke", post(invoke))
        .route("/invocations/{*id}", get(invocation))
        .with_state(state)
}

/// Which table was loaded: named (`table`, or the registry's `dataform_table`), or derived
/// from the loaded object's name.
#[derive(Debug, Deserialize)]
struct TableRequest {
    table: Option<String>,
    dataform_table: Option<String>,
    bucket: Option<BucketName>,
    name: Option<ObjectName>,
    generation: Option<Generation>,
}

impl TableRequest {
    fn table_name(&self) -> Result<TableName, DataformError> {
        let span = tracing::Span::current();
        if let Some(name) = &self.name {
            let bucket = self
                .bucket
                .as_ref()
                .map(BucketName::as_str)
                .unwrap_or_default();
            span.record("object", format!("{bucket}/{name}"));
        }
        if let Some(generation) = self.generation {
            span.record("generation", generation.get());
        }
        let invalid = |e: crate::name::NameError| DataformError::InvalidRequest(e.to_string());
        match (&self.table, &self.dataform_table, &self.name) {
            (Some(table), _, _) | (None, Some(table), _) => table.parse().map_err(invalid),
            (None, None, Some(name)) => TableName::from_object(name).map_err(invalid),
            (None, None, None) => Err(DataformError::InvalidRequest(
                "give \"table\" (name, schema.name or database.schema.name), or \"bucket\" and \"name\" of the loaded file".into(),
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
struct InvokeRequest {
    #[serde(flatten)]
    table: TableRequest,
    #[serde(default)]
    fully_refresh_incremental: bool,
    #[serde(default)]
    dry_run: bool,
    idempotency_key: Option<String>,
}

const MAX_KEY_BYTES: usize = 2048;

impl InvokeRequest {
    /// The caller's key, else `bucket/name/generation` of the loaded object when all three
    /// are given: the same upload must never start the same actions twice.
    fn idempotency_key(&self) -> Result<Option<String>, DataformError> {
        if let Some(key) = &self.idempotency_key {
            if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control) {
                return Err(DataformError::InvalidRequest(format!(
                    "idempotency_key must be 1-{MAX_KEY_BYTES} bytes without control characters"
                )));
            }
            return Ok(Some(key.clone()));
        }
        let t = &self.table;
        Ok(match (&t.bucket, &t.name, t.generation) {
            (Some(bucket), Some(name), Some(generation)) => {
                Some(format!("{bucket}/{name}/{generation}"))
            }
            _ => None,
        })
    }
}

fn resolve(graph: &Graph, name: &TableName) -> Result<u32, DataformError> {
    match name.resolve(graph) {
        Resolution::Found(node) => Ok(node),
        Resolution::Unknown => Err(DataformError::UnknownTable(name.to_string())),
        Resolution::Ambiguous(candidates) => Err(DataformError::AmbiguousTable {
            name: name.to_string(),
            candidates,
        }),
    }
}

async fn closure_of(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<TableRequest>,
) -> Result<Json<Report>, DataformError> {
    let name = request.table_name()?;
    let snapshot = state.source.current().await?;
    let source = resolve(&snapshot.graph, &name)?;
    let nodes = closure(&snapshot.graph, source);
    Ok(Json(Report::new(&snapshot.graph, source, &nodes)))
}

#[derive(Debug, Serialize)]
struct InvokeResponse {
    invocation: Option<String>,
    compilation_result: Option<String>,
    state: Option<String>,
    source: Target,
    actions: Vec<ActionView>,
    count: usize,
    skipped: bool,
    dry_run: bool,
    replayed: bool,
}

async fn invoke(
    State(state): State<Arc<AppState>>,
    JsonBody(request): JsonBody<InvokeRequest>,
) -> Result<Json<InvokeResponse>, DataformError> {
    let name = request.table.table_name()?;
    let key = request.idempotency_key()?;
    let snapshot = state.source.current().await?;
    let source = resolve(&snapshot.graph, &name)?;
    let nodes = closure(&snapshot.graph, source);
    let mut response = InvokeResponse {
        invocation: None,
        compilation_result: snapshot.compilation.clone(),
        state: None,
        source: snapshot.graph.action(source).target.clone(),
        actions: nodes
            .iter()
            .map(|&node| ActionView::of(&snapshot.graph, node))
            .collect(),
        count: nodes.len(),
        skipped: nodes.is_empty(),
        dry_run: request.dry_run,
        replayed: false,
    };
    // An invocation without targets runs the whole project: never create one.
    if response.skipped || request.dry_run {
        if response.skipped && !request.dry_run {
            publish(&state, EventType::Skipped, &request, &response);
        }
        return Ok(Json(response));
    }
    let (Some(api), Some(compilation)) = (&state.api, &snapshot.compilation) else {
        return Err(DataformError::InvocationsUnavailable);
    };
    let targets: Vec<Target> = response.actions.iter().map(ActionView::target).collect();
    let ticket = match &key {
        None => None,
        Some(key) => match state.ledger.claim(key).await? {
            Claim::Existing {
                invocation,
                compilation_result,
                actions,
            } => {
                response.state = Some(api.state(&invocation).await?);
                response.invocation = Some(invocation);
                response.compilation_result = Some(compilation_result);
                response.count = actions.len();
                response.actions = actions;
                response.replayed = true;
                return Ok(Json(response));
            }
            Claim::Acquired(ticket) => Some(ticket),
        },
    };
    let created = match api
        .invoke(compilation, &targets, request.fully_refresh_incremental)
        .await
    {
        Ok(created) => created,
        Err(e) => {
            if let Some(ticket) = ticket {
                state.ledger.release(ticket).await;
            }
            return Err(e);
        }
    };
    tracing::info!(
        invocation = created.name,
        actions = targets.len(),
        "invocation created"
    );
    if let Some(ticket) = ticket {
        let record = Record::Created {
            invocation: created.name.clone(),
            compilation_result: compilation.clone(),
            actions: response.actions.clone(),
        };
        state.ledger.complete(ticket, record).await;
    }
    response.invocation = Some(created.name);
    response.state = Some(created.state);
    publish(&state, EventType::Invoked, &request, &response);
    Ok(Json(response))
}

/// Reports an invocation created, or one not needed, for the loaded object when the caller
/// named it; replays publish nothing, their first delivery did.
fn publish(
    state: &AppState,
    event_type: EventType,
    request: &InvokeRequest,
    response: &InvokeResponse,
) {
    let t = &request.table;
    let object = t
        .bucket
        .clone()
        .zip(t.name.clone())
        .map(|(bucket, name)| ObjectRef::new(bucket, name));
    state.events.publish(
        Event::new(event_type, object)
            .generation(t.generation)
            .entity(&response.source.name)
            .detail(serde_json::json!({
                "table": response.source,
                "invocation": response.invocation,
                "compilation_result": response.compilation_result,
                "actions": response.count,
            })),
    );
}

fn invocation_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

/// Accepts the invocation's id or its full name as `/invoke` returns it (plain or URL-encoded).
async fn invocation(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<crate::api::Status>, DataformError> {
    let api = state
        .api
        .as_ref()
        .ok_or(DataformError::InvocationsUnavailable)?;
    let prefix = api.invocation_name("");
    let id = id.strip_prefix(&prefix).unwrap_or(&id);
    if !invocation_id_ok(id) {
        return Err(DataformError::InvalidRequest(format!(
            "the invocation must be an id or a name under {prefix}"
        )));
    }
    Ok(Json(api.status(&api.invocation_name(id)).await?))
}
