//! sigma-dataform: given the table a file just loaded, run every Dataform action that
//! depends on it, directly or transitively, and nothing else.
//!
//! Neither Dataform's API nor its CLI selects a declaration's dependents, and an invocation
//! with no targets runs the whole project; so the graph is read here (from a compiled graph
//! file or from an API compilation), the closure computed here, and the invocation lists
//! exactly that closure.

pub mod api;
pub mod closure;
pub mod config;
pub mod error;
pub mod graph;
pub mod idempotency;
pub mod name;
pub mod routes;
pub mod source;

use std::sync::Arc;

use axum::Router;
use sigma_shared::config::ConfigError;
use sigma_shared::events::Events;

use crate::api::DataformApi;
use crate::config::{Config, GraphOrigin};
use crate::idempotency::Ledger;
use crate::source::{GraphSource, Origin};

pub struct AppState {
    pub source: GraphSource,
    /// Present when the graph comes from the API: only then can invocations be created.
    pub api: Option<Arc<DataformApi>>,
    pub ledger: Ledger,
    pub events: Events,
}

impl AppState {
    pub async fn new(config: Config) -> Result<Self, ConfigError> {
        let (origin, api) = match config.origin {
            GraphOrigin::File(path) => (Origin::File(path), None),
            GraphOrigin::Gcs(object) => (
                Origin::Gcs {
                    client: Box::new(sigma_shared::storage::client().await?),
                    object,
                },
                None,
            ),
            GraphOrigin::Api(settings) => {
                let api = Arc::new(DataformApi::connect(settings).await?);
                (Origin::Api(api.clone()), Some(api))
            }
        };
        let ledger = match config.state_bucket {
            Some(bucket) => Ledger::Gcs {
                client: Box::new(sigma_shared::storage::client().await?),
                bucket,
            },
            None => Ledger::memory(),
        };
        Ok(Self {
            source: GraphSource::new(origin, config.ttl),
            api,
            ledger,
            events: Events::disabled(),
        })
    }

    /// Publishes invocations created and skipped on these events.
    pub fn with_events(self, events: Events) -> Self {
        Self { events, ..self }
    }
}

/// The service's routes with the shared health check, fallbacks and request logging.
pub fn app(state: Arc<AppState>) -> Router {
    sigma_shared::server::finish(routes::router(state))
}
