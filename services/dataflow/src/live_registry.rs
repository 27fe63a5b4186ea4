//! The registry in use, renewed while the service runs.
//!
//! Cloud Run instances live for hours, and a team onboards an entity by uploading a new
//! `pipelines.yaml`. Waiting for every instance to restart would refuse the new entity's
//! files (422 `unknown_entity`, which the workflow does not retry) for as long as the
//! oldest instance lives. So a `gs://` registry's generation is checked every
//! `PIPELINES_REFRESH_SECONDS` (one small read), and a new generation is loaded when it
//! passes every check start-up makes, against the site this instance runs with. A request
//! keeps the registry it started with from its first step to its last.
//!
//! A version that fails is refused whole, never half-applied: the registry in use keeps
//! serving, and the refusal is logged and published as `sigma.dataflow.registry_rejected`
//! naming the entry and field, once per generation and instance. A read that fails (a
//! storage hiccup) changes nothing and is tried again at the next tick. A local file (local
//! runs) is read at start-up only.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use google_cloud_storage::client::Storage;
use sigma_shared::events::{Event, EventType, Events};
use sigma_shared::storage::{self, StorageError};
use sigma_shared::{Generation, ObjectRef};

use crate::config::MAX_REGISTRY;
use crate::plan::{self, Site};
use crate::registry::{Registry, RegistryError, SiteDefaults};

/// How often a registry in Cloud Storage is checked when `PIPELINES_REFRESH_SECONDS` is not
/// set: a new entity's first files wait at most this long, and each instance makes one
/// small read per interval.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

pub struct LiveRegistry {
    current: RwLock<Arc<Registry>>,
    watched: Option<Watched>,
}

/// A registry object and what a new version of it is checked against.
pub struct Watched {
    object: ObjectRef,
    storage: Storage,
    overrides: SiteDefaults,
    site: Site,
    events: Events,
    /// The generation last loaded or refused, so each is considered once; held for a whole
    /// check, so checks never overlap.
    seen: tokio::sync::Mutex<Generation>,
}

impl Watched {
    /// `object`, read at `generation`; `overrides` are the env vars that override the
    /// registry's `defaults`, and `site` what they resolved to at start-up. The site never
    /// changes while the instance runs: records already written are found where they were
    /// written.
    pub fn new(
        object: ObjectRef,
        generation: Generation,
        storage: Storage,
        overrides: SiteDefaults,
        site: Site,
        events: Events,
    ) -> Self {
        Self {
            object,
            storage,
            overrides,
            site,
            events,
            seen: tokio::sync::Mutex::new(generation),
        }
    }

    /// Every check start-up makes, plus one: the site must stay the one in use.
    fn accept(&self, text: &str) -> Result<Registry, RegistryError> {
        let registry = Registry::parse(text)?;
        let site = Site::resolve(&registry.site, self.overrides.clone()).map_err(|reason| {
            RegistryError::Invalid {
                at: "defaults".into(),
                reason,
            }
        })?;
        if site != self.site {
            return Err(RegistryError::Invalid {
                at: "defaults".into(),
                reason: format!(
                    "the project, region or config bucket would change from {:?} to {:?}; \
                     they are read at start-up, so a change takes a new revision",
                    self.site, site
                ),
            });
        }
        plan::check_labels(&registry, &site)?;
        Ok(registry)
    }

    fn refuse(&self, generation: Generation, error: &RegistryError) {
        let (at, reason) = match error {
            RegistryError::Invalid { at, reason } => (at.clone(), reason.clone()),
            RegistryError::Syntax(e) => (
                e.location()
                    .map(|l| format!("line {} column {}", l.line(), l.column()))
                    .unwrap_or_default(),
                e.to_string(),
            ),
        };
        tracing::error!(registry = %self.object, generation = generation.get(), at = %at, %reason, "a new pipeline registry was refused; the one in use keeps serving");
        let mut event = Event::new(EventType::RegistryRejected, self.object.clone())
            .generation(generation)
            .detail(serde_json::json!({"at": at, "reason": reason}));
        if let Some(entity) = at
            .strip_prefix("pipelines.")
            .and_then(|rest| rest.split('.').next())
        {
            event = event.entity(entity);
        }
        self.events.publish(event);
    }
}

/// What one check of the registry object found.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    Unchanged,
    Loaded(Generation),
    Refused(Generation),
}

impl LiveRegistry {
    /// A registry that never changes (a local file, or a test's).
    pub fn fixed(registry: Registry) -> Self {
        Self {
            current: RwLock::new(Arc::new(registry)),
            watched: None,
        }
    }

    /// `registry`, renewed from `watched` by [`LiveRegistry::check`].
    pub fn watching(registry: Registry, watched: Watched) -> Self {
        Self {
            current: RwLock::new(Arc::new(registry)),
            watched: Some(watched),
        }
    }

    pub fn current(&self) -> Arc<Registry> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Checks the object every `every`, for as long as the service runs.
    pub fn refresh_every(self: Arc<Self>, every: Duration) {
        if self.watched.is_none() || every.is_zero() {
            return;
        }
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(error) = self.check().await {
                    tracing::warn!(%error, "the registry could not be checked; the one in use keeps serving");
                }
            }
        });
    }

    /// Loads the object's current generation if it is new and valid.
    pub async fn check(&self) -> Result<Checked, StorageError> {
        let Some(watched) = &self.watched else {
            return Ok(Checked::Unchanged);
        };
        let mut seen = watched.seen.lock().await;
        let found = storage::stat(&watched.storage, &watched.object)
            .await?
            .ok_or_else(|| StorageError::NotFound(watched.object.clone()))?;
        if found.generation == seen.get() {
            return Ok(Checked::Unchanged);
        }
        let (bytes, read) =
            storage::read_to_bytes(&watched.storage, &watched.object, MAX_REGISTRY).await?;
        let Ok(generation) = Generation::new(read.generation) else {
            return Ok(Checked::Unchanged);
        };
        *seen = generation;
        let verdict = std::str::from_utf8(&bytes)
            .map_err(|_| RegistryError::Invalid {
                at: "(file)".into(),
                reason: "the registry is not UTF-8 text".into(),
            })
            .and_then(|text| watched.accept(text));
        match verdict {
            Ok(registry) => {
                tracing::info!(registry = %watched.object, generation = generation.get(), entries = registry.pipelines().len(), "a new pipeline registry is in use");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(registry);
                Ok(Checked::Loaded(generation))
            }
            Err(error) => {
                watched.refuse(generation, &error);
                Ok(Checked::Refused(generation))
            }
        }
    }
}
