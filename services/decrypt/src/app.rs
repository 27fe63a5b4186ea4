//! The HTTP service: `POST /decrypt` over a [`Pipeline`], plus what every sigma service has.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use google_cloud_storage::client::Storage;
use sigma_shared::HttpError;
use sigma_shared::config::ConfigError;
use sigma_shared::events::{Event, EventType, Events};
use sigma_shared::extract::JsonBody;

use crate::config::Config;
use crate::error::Error;
use crate::fernet::{Decryptor, KeyRing};
use crate::pipeline::Pipeline;
use crate::request::{DecryptRequest, DecryptResponse, Job};

#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    pipeline: Arc<Pipeline>,
    events: Events,
}

impl AppState {
    pub fn new(config: Config, storage: Storage, keys: KeyRing) -> Self {
        let pipeline = Pipeline {
            storage,
            decryptor: Decryptor::new(keys).with_ttl(config.ttl),
            max_object_bytes: config.max_object_bytes,
            verify_gzip: config.verify_gzip,
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
    )
}

/// Loads the keys (from Secret Manager if configured) and builds the app; fails, naming the
/// variable, when the keys cannot be had.
pub async fn build(
    config: Config,
    storage: Storage,
    events: Events,
) -> Result<Router, ConfigError> {
    let keys = config.keys.clone().load().await?;
    tracing::info!(keys = keys.len(), output_bucket = %config.output_bucket, "keys loaded");
    Ok(app(AppState::new(config, storage, keys).with_events(events)))
}

async fn decrypt(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<DecryptRequest>,
) -> Result<Json<DecryptResponse>, Error> {
    let job = request.validate(&state.config)?;
    tracing::Span::current().record("object", tracing::field::display(&job.source));
    let outcome = state.pipeline.clone().run(job.clone()).await;
    publish(&state.events, &job, &outcome);
    outcome.map(Json)
}

/// A written output is `decrypted`; a file refused for what it is (a bad token, not gzip,
/// too large...) is `rejected`. Skips, transient failures and refusals of the request
/// itself report nothing: no file outcome was decided.
fn publish(events: &Events, job: &Job, outcome: &Result<DecryptResponse, Error>) {
    let event = match outcome {
        Ok(response) if response.skipped => return,
        Ok(response) => Event::new(EventType::Decrypted, job.source.clone())
            .generation(response.source.generation)
            .detail(serde_json::json!({
                "output": job.output.to_string(),
                "generation": response.generation,
                "size": response.size,
            })),
        Err(error) if is_rejection(error) => Event::new(EventType::Rejected, job.source.clone())
            .generation(job.generation)
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
