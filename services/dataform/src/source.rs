//! Where the graph comes from, and how long one is reused.
//!
//! Compiling a real project takes seconds; doing it for every request under load would queue
//! them behind Dataform. A snapshot is therefore kept for a configurable time, and when it
//! expires exactly one request refreshes it while the others wait for that refresh instead of
//! starting their own (single flight).

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

pub struct GraphSource {
    origin: Origin,
    ttl: Duration,
    current: RwLock<Option<(Instant, Arc<Snapshot>)>>,
    refresh: tokio::sync::Mutex<()>,
}

impl GraphSource {
    pub fn new(origin: Origin, ttl: Duration) -> Self {
        Self {
            origin,
            ttl,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Arc<Snapshot>> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|(loaded, _)| loaded.elapsed() < self.ttl)
            .map(|(_, snapshot)| snapshot.clone())
    }

    /// The graph to answer with: the cached one while it is fresh, else a new one.
    pub async fn current(&self) -> Result<Arc<Snapshot>, DataformError> {
        if let Some(snapshot) = self.fresh() {
            return Ok(snapshot);
        }
        let _refreshing = self.refresh.lock().await;
        if let Some(snapshot) = self.fresh() {
            return Ok(snapshot);
        }
        let snapshot = Arc::new(self.load().await?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), snapshot.clone()));
        Ok(snapshot)
    }

    async fn load(&self) -> Result<Snapshot, DataformError> {
        let started = Instant::now();
        let snapshot = match &self.origin {
            Origin::File(path) => {
                let path = path.clone();
                let graph = tokio::task::spawn_blocking(move || load_file(&path))
                    .await
                    .map_err(|e| {
                        DataformError::InvalidGraph(GraphError::Malformed(e.to_string()))
                    })??;
                Snapshot {
                    graph,
                    compilation: None,
                }
            }
            Origin::Gcs { client, object } => {
                let (bytes, _) = storage::read_to_bytes(client, object, MAX_GRAPH_BYTES).await?;
                let graph = tokio::task::spawn_blocking(move || Graph::from_compiled_json(&bytes))
                    .await
                    .map_err(|e| {
                        DataformError::InvalidGraph(GraphError::Malformed(e.to_string()))
                    })??;
                Snapshot {
                    graph,
                    compilation: None,
                }
            }
            Origin::Api(api) => {
                let compilation = api.compile().await?;
                Snapshot {
                    graph: compilation.graph,
                    compilation: Some(compilation.name),
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
