//! The invoke protocol, whatever the deliveries and failures: resolve the loaded table,
//! compute its closure, claim the key, create one invocation for exactly that closure,
//! record it, and report it on the events topic.
//!
//! The handlers in `routes.rs` only parse requests and shape answers; every decision about
//! claims, replays and events is made here, in one place.

use std::sync::Arc;

use serde::Serialize;
use sigma_shared::config::ConfigError;
use sigma_shared::events::{Event, EventType, Events};

use crate::api::{DataformApi, Status};
use crate::closure::{ActionView, Report, closure};
use crate::config::{Config, GraphOrigin};
use crate::error::DataformError;
use crate::graph::{Graph, Target};
use crate::idempotency::{Claim, Ledger, Record};
use crate::name::{Resolution, TableName};
use crate::request::{Invoke, Loaded};
use crate::source::{GraphSource, Origin};

/// Everything a request needs: where the graph comes from, the API to invoke through, the
/// claim records and the events topic.
pub struct Invoker {
    pub source: GraphSource,
    /// Present when the graph comes from the API: only then can invocations be created.
    api: Option<Arc<DataformApi>>,
    ledger: Ledger,
    events: Events,
}

/// The `/invoke` answer.
#[derive(Debug, Serialize)]
pub struct Invoked {
    pub invocation: Option<String>,
    pub compilation_result: Option<String>,
    pub state: Option<String>,
    pub source: Target,
    pub actions: Vec<ActionView>,
    pub count: usize,
    pub skipped: bool,
    pub dry_run: bool,
    pub replayed: bool,
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

impl Invoker {
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

    /// Keeps the claim records here instead of where the configuration says (tests point
    /// a ledger at a proxy in front of the emulator).
    pub fn with_ledger(self, ledger: Ledger) -> Self {
        Self { ledger, ..self }
    }

    fn api(&self) -> Result<&DataformApi, DataformError> {
        self.api
            .as_deref()
            .ok_or(DataformError::InvocationsUnavailable)
    }

    pub async fn closure(&self, loaded: &Loaded) -> Result<Report, DataformError> {
        let snapshot = self.source.current().await?;
        let source = resolve(&snapshot.graph, &loaded.table)?;
        let nodes = closure(&snapshot.graph, source);
        Ok(Report::new(&snapshot.graph, source, &nodes))
    }

    pub async fn invoke(&self, request: &Invoke) -> Result<Invoked, DataformError> {
        let snapshot = self.source.current().await?;
        let source = resolve(&snapshot.graph, &request.loaded.table)?;
        let nodes = closure(&snapshot.graph, source);
        let mut answer = Invoked {
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
        if answer.skipped || request.dry_run {
            if answer.skipped && !request.dry_run {
                self.publish(EventType::Skipped, &request.loaded, &answer);
            }
            return Ok(answer);
        }
        let api = self.api()?;
        let Some(compilation) = &snapshot.compilation else {
            return Err(DataformError::InvocationsUnavailable);
        };
        let targets: Vec<Target> = answer.actions.iter().map(ActionView::target).collect();
        let ticket = match &request.key {
            None => None,
            Some(key) => match self.ledger.claim(key).await? {
                Claim::Existing {
                    invocation,
                    compilation_result,
                    actions,
                } => {
                    answer.state = Some(api.state(&invocation).await?);
                    answer.invocation = Some(invocation);
                    answer.compilation_result = Some(compilation_result);
                    answer.count = actions.len();
                    answer.actions = actions;
                    answer.replayed = true;
                    return Ok(answer);
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
                    self.ledger.release(ticket).await;
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
                actions: answer.actions.clone(),
            };
            self.ledger.complete(ticket, record).await;
        }
        answer.invocation = Some(created.name);
        answer.state = Some(created.state);
        self.publish(EventType::Invoked, &request.loaded, &answer);
        Ok(answer)
    }

    /// The invocation named by its id or by its full name as `/invoke` returns it.
    pub async fn status(&self, id: &str) -> Result<Status, DataformError> {
        let api = self.api()?;
        let prefix = api.invocation_name("");
        let id = id.strip_prefix(&prefix).unwrap_or(id);
        if !invocation_id_ok(id) {
            return Err(DataformError::InvalidRequest(format!(
                "the invocation must be an id or a name under {prefix}"
            )));
        }
        api.status(&api.invocation_name(id)).await
    }

    /// Reports an invocation created, or one not needed, for the loaded object when the
    /// caller named it; replays publish nothing, their first delivery did.
    fn publish(&self, event_type: EventType, loaded: &Loaded, answer: &Invoked) {
        self.events.publish(
            Event::new(event_type, loaded.object.clone())
                .generation(loaded.generation)
                .entity(&answer.source.name)
                .detail(serde_json::json!({
                    "table": answer.source,
                    "invocation": answer.invocation,
                    "compilation_result": answer.compilation_result,
                    "actions": answer.count,
                })),
        );
    }
}

fn invocation_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}
