//! Where the graph comes from, how long one is reused, and what happens when loading fails.
//!
//! Compiling a real project takes seconds; doing it for every request under load would queue
//! them behind Dataform. So:
//! - a snapshot is reused for `DATAFORM_GRAPH_TTL_SECONDS`; when it expires exactly one
//!   request refreshes it while the others wait for that refresh (single flight);
//! - a failed load is remembered and shared: requests arriving (or waiting) before its
//!   backoff has passed get the same failure instead of compiling again, and the backoff
//!   doubles with each consecutive failure (`DATAFORM_GRAPH_RETRY_SECONDS`, up to a minute);
//! - while refreshes fail, the last good graph keeps serving for
//!   `DATAFORM_GRAPH_STALE_SECONDS` past its TTL (a broken commit or a Dataform outage must
//!   not stop loads that the last good graph describes well), then the failure is answered;
//! - parsing and building a graph run on the blocking pool, never on the async threads.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use google_cloud_storage::client::Storage;
use sigma_shared::ObjectRef;
use sigma_shared::storage;

use crate::api::DataformApi;
use crate::error::DataformError;
use crate::graph::{Graph, GraphError};

/// The largest graph file read from Cloud Storage (a 100,000-action project is ~60 MB).
const MAX_GRAPH_BYTES: u64 = 1 << 30;
/// The longest wait between loads while they keep failing.
const MAX_RETRY: Duration = Duration::from_secs(60);

pub enum Origin {
    File(PathBuf),
    Gcs {
        client: Box<Storage>,
        object: ObjectRef,
    },
    Api(Arc<DataformApi>),
}

/// A graph and, when it came from the API, the compilation result it was read from.
pub struct Snapshot {
    pub graph: Graph,
    pub compilation: Option<String>,
}

/// How long graphs are reused, kept past their time, and retried.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub ttl: Duration,
    pub stale: Duration,
    pub retry: Duration,
}

struct Good {
    loaded: Instant,
    snapshot: Arc<Snapshot>,
}

struct Failed {
    error: Arc<DataformError>,
    /// No load is tried again before this.
    until: Instant,
    consecutive: u32,
}

#[derive(Default)]
struct Cache {
    good: Option<Good>,
    failed: Option<Failed>,
}

pub struct GraphSource {
    origin: Origin,
    freshness: Freshness,
    cache: RwLock<Cache>,
    refresh: tokio::sync::Mutex<()>,
}

/// What the cache can answer without loading.
enum Cached {
    Fresh(Arc<Snapshot>),
    /// The last load failed and its backoff has not passed.
    BackingOff(Arc<DataformError>),
    Expired,
}

impl GraphSource {
    pub fn new(origin: Origin, freshness: Freshness) -> Self {
        Self {
            origin,
            freshness,
            cache: RwLock::new(Cache::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> Cached {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        if let Some(good) = &cache.good
            && good.loaded.elapsed() < self.freshness.ttl
        {
            return Cached::Fresh(good.snapshot.clone());
        }
        match &cache.failed {
            Some(failed) if Instant::now() < failed.until => {
                Cached::BackingOff(failed.error.clone())
            }
            _ => Cached::Expired,
        }
    }

    /// The last good graph while it is within its stale time, else the failure.
    fn stale_or(&self, error: Arc<DataformError>) -> Result<Arc<Snapshot>, DataformError> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        match &cache.good {
            Some(good) if good.loaded.elapsed() < self.freshness.ttl + self.freshness.stale => {
                tracing::warn!(
                    age_s = good.loaded.elapsed().as_secs(),
                    "serving the last good graph while loading a new one fails: {error}"
                );
                Ok(good.snapshot.clone())
            }
            _ => Err(DataformError::GraphUnavailable(error)),
        }
    }

    /// The graph to answer with: the cached one while it is fresh, else a new one; while
    /// loads fail, the last good one within its stale time, else the (shared) failure.
    pub async fn current(&self) -> Result<Arc<Snapshot>, DataformError> {
        match self.cached() {
            Cached::Fresh(snapshot) => return Ok(snapshot),
            Cached::BackingOff(error) => return self.stale_or(error),
            Cached::Expired => {}
        }
        let _refreshing = self.refresh.lock().await;
        // Whoever held the lock may have loaded, or failed, while this request waited.
        match self.cached() {
            Cached::Fresh(snapshot) => return Ok(snapshot),
            Cached::BackingOff(error) => return self.stale_or(error),
            Cached::Expired => {}
        }
        match self.load().await {
            Ok(snapshot) => {
                let snapshot = Arc::new(snapshot);
                *self.cache.write().unwrap_or_else(|e| e.into_inner()) = Cache {
                    good: Some(Good {
                        loaded: Instant::now(),
                        snapshot: snapshot.clone(),
                    }),
                    failed: None,
                };
                Ok(snapshot)
            }
            Err(error) => {
                let error = Arc::new(error);
                {
                    let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
                    let consecutive = cache.failed.as_ref().map_or(0, |f| f.consecutive) + 1;
                    let wait = self
                        .freshness
                        .retry
                        .saturating_mul(1 << (consecutive - 1).min(16))
                        .min(MAX_RETRY);
                    tracing::warn!(
                        consecutive,
                        retry_in_ms = wait.as_millis() as u64,
                        "the graph could not be loaded: {error}"
                    );
                    cache.failed = Some(Failed {
                        error: error.clone(),
                        until: Instant::now() + wait,
                        consecutive,
                    });
                }
                self.stale_or(error)
            }
        }
    }

    async fn load(&self) -> Result<Snapshot, DataformError> {
        let started = Instant::now();
        let snapshot = match &self.origin {
            Origin::File(path) => {
                let path = path.clone();
                Snapshot {
                    graph: off_thread(move || load_file(&path)).await?,
                    compilation: None,
                }
            }
            Origin::Gcs { client, object } => {
                let (bytes, _) = storage::read_to_bytes(client, object, MAX_GRAPH_BYTES).await?;
                Snapshot {
                    graph: off_thread(move || Ok(Graph::from_compiled_json(&bytes)?)).await?,
                    compilation: None,
                }
            }
            Origin::Api(api) => {
                let compiled = api.compile().await?;
                let actions = compiled.actions;
                Snapshot {
                    graph: off_thread(move || Ok(Graph::build(actions)?)).await?,
                    compilation: Some(compiled.name),
                }
            }
        };
        tracing::info!(
            actions = snapshot.graph.len(),
            edges = snapshot.graph.edges(),
            dangling = snapshot.graph.dangling(),
            compilation = snapshot.compilation.as_deref().unwrap_or(""),
            load_ms = started.elapsed().as_millis() as u64,
            "graph loaded"
        );
        Ok(snapshot)
    }
}

/// Runs a CPU-bound graph step on the blocking pool, so the async threads keep serving.
async fn off_thread(
    build: impl FnOnce() -> Result<Graph, DataformError> + Send + 'static,
) -> Result<Graph, DataformError> {
    tokio::task::spawn_blocking(build)
        .await
        .map_err(|e| DataformError::InvalidGraph(GraphError::Malformed(e.to_string())))?
}

/// Reads a `dataform compile --json` file, as the service and the CLI do.
pub fn load_file(path: &std::path::Path) -> Result<Graph, DataformError> {
    let bytes = std::fs::read(path).map_err(|e| {
        DataformError::InvalidGraph(GraphError::Malformed(format!(
            "cannot read {}: {e}",
            path.display()
        )))
    })?;
    Ok(Graph::from_compiled_json(&bytes)?)
}
