//! The HTTP service: `POST /decrypt` over a [`Pipeline`], plus what every sigma service has.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use google_cloud_storage::client::Storage;
use sigma_shared::config::ConfigError;
use sigma_shared::extract::JsonBody;

use crate::config::Config;
use crate::error::Error;
use crate::fernet::{Decryptor, KeyRing};
use crate::pipeline::Pipeline;
use crate::request::{DecryptRequest, DecryptResponse};

#[derive(Clone)]
pub struct AppState {
    config: Arc<Config>,
    pipeline: Arc<Pipeline>,
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
        }
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
pub async fn build(config: Config, storage: Storage) -> Result<Router, ConfigError> {
    let keys = config.keys.clone().load().await?;
    tracing::info!(keys = keys.len(), output_bucket = %config.output_bucket, "keys loaded");
    Ok(app(AppState::new(config, storage, keys)))
}

async fn decrypt(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<DecryptRequest>,
) -> Result<Json<DecryptResponse>, Error> {
    let job = request.validate(&state.config)?;
    tracing::Span::current().record("object", tracing::field::display(&job.source));
    state.pipeline.clone().run(job).await.map(Json)
}
