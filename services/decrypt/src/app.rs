//! The HTTP service: `POST /decrypt` over a [`Pipeline`], plus what every sigma service has.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use google_cloud_storage::client::Storage;
use sigma_shared::HttpError;
use sigma_shared::ObjectRef;
use sigma_shared::config::ConfigError;
use sigma_shared::events::{Event, EventType, Events};
use sigma_shared::extract::JsonBody;
use tracing::Instrument;

use crate::config::Config;
use crate::error::Error;
use crate::keys::LiveKeys;
use crate::pipeline::{Outcome, Pipeline};
use crate::request::{DecryptRequest, DecryptResponse};

#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    pipeline: Arc<Pipeline>,
    events: Events,
}

impl AppState {
    pub fn new(config: Config, storage: Storage, keys: Arc<LiveKeys>) -> Self {
        let pipeline = Pipeline {
            storage,
            keys,
            ttl: config.ttl,
            max_object_bytes: config.max_object_bytes,
            verify_gzip: config.verify_gzip,
            upload: config.upload,
            locks: Default::default(),
        };
        Self {
            config: Arc::new(config),
            pipeline: Arc::new(pipeline),
            events: Events::disabled(),
        }
    }

    /// Reports outcomes on the events topic; without this, events are off.
    pub fn with_events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }
}

pub fn app(state: AppState) -> Router {
    sigma_shared::server::finish(
        Router::new()
            .route("/decrypt", post(decrypt))
            .with_state(state),
        &crate::openapi::document(),
    )
}

/// Loads the keys (from Secret Manager if configured, then re-read every
/// `config.keys_refresh`) and builds the app; fails, naming the variable, when the keys
/// cannot be had.
pub async fn build(
    config: Config,
    storage: Storage,
    events: Events,
) -> Result<Router, ConfigError> {
    let keys = Arc::new(LiveKeys::load(config.keys.clone()).await?);
    tracing::info!(keys = keys.current().len(), output_bucket = %config.output_bucket, "keys loaded");
    keys.clone().refresh_every(config.keys_refresh);
    Ok(app(AppState::new(config, storage, keys).with_events(events)))
}

/// Decrypts one uploaded file into the output bucket.
///
/// The output has `Content-Type: application/gzip` and the source's bucket, name and
/// generation in its custom metadata. A repeated request for the same source generation
/// writes nothing and answers `"skipped": true` with the existing output; an older upload
/// arriving after a newer one was decrypted is refused (409 `superseded`).
#[utoipa::path(
    post,
    path = "/decrypt",
    tag = "decrypt",
    operation_id = "decrypt",
    request_body(
        content = DecryptRequest,
        description = "Any `Content-Type`: the body is read as JSON.",
        example = json!({"bucket": "company_trigger_bucket", "name": "data/20240115/lkp_fechas.gz.encrypted"})
    ),
    responses(
        (status = 200, description = "Decrypted, or already decrypted (`skipped`).", body = DecryptResponse,
         example = json!({"bucket": "company_output_bucket", "name": "data/20240115/lkp_fechas.gz",
                          "size": 1048576, "generation": "1705312801234567",
                          "source": {"bucket": "company_trigger_bucket",
                                     "name": "data/20240115/lkp_fechas.gz.encrypted",
                                     "generation": "1705312800123456"},
                          "skipped": false}))
    )
)]
pub(crate) async fn decrypt(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<DecryptRequest>,
) -> Result<Json<DecryptResponse>, Error> {
    let source = request.source(&state.config)?;
    let span = tracing::Span::current();
    span.record("object", tracing::field::display(&source));
    span.record("attempt", request.attempt.get());
    // The work is a task of its own, not part of this handler: a client that disconnects
    // drops the handler, and dropping the work with it would release the per-output lock
    // while the blocking decryption (which cannot be cancelled) goes on, so a duplicate
    // could decrypt alongside it. The task ends when the work does, lock and event included.
    let work = tokio::spawn(serve(state, request, source.clone()).in_current_span());
    work.await.map_err(|_| Error::Internal(source))?.map(Json)
}

/// Runs the request to its end and reports the outcome.
async fn serve(
    state: AppState,
    request: DecryptRequest,
    source: ObjectRef,
) -> Result<DecryptResponse, Error> {
    let requested = request.generation;
    let outcome = match request.job(source.clone(), &state.config) {
        Ok(job) => state.pipeline.clone().run(job).await,
        Err(error) => Outcome {
            generation: requested,
            result: Err(error),
        },
    };
    publish(&state.events, &source, &outcome);
    outcome.result
}

/// A written output is `decrypted`; a file refused for what it is (a bad token, not gzip,
/// too large, not named `.encrypted`...) is `rejected`, with the generation that was read
/// (or asked for, when nothing was read). Skips, transient failures and refusals of the
/// request itself report nothing: no file outcome was decided.
fn publish(events: &Events, source: &ObjectRef, outcome: &Outcome) {
    let event = match &outcome.result {
        Ok(response) if response.skipped => return,
        Ok(response) => Event::new(EventType::Decrypted, source.clone())
            .generation(response.source.generation)
            .detail(serde_json::json!({
                "output": ObjectRef::new(response.bucket.clone(), response.name.clone()).to_string(),
                "generation": response.generation,
                "size": response.size,
            })),
        Err(error) if is_rejection(error) => Event::new(EventType::Rejected, source.clone())
            .generation(outcome.generation)
            .detail(serde_json::json!({"code": error.code(), "message": error.to_string()})),
        Err(_) => return,
    };
    events.publish(event);
}

fn is_rejection(error: &Error) -> bool {
    matches!(
        error.status(),
        axum::http::StatusCode::UNPROCESSABLE_ENTITY | axum::http::StatusCode::PAYLOAD_TOO_LARGE
    )
}
