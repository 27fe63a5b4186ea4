//! What callers send, parsed once into what the service works with.
//!
//! Every body and query refuses fields it does not know (400 `invalid_request`): a typo such
//! as `"dryRun": true` must never be read as "run it for real". `#[serde(flatten)]` cannot be
//! combined with `deny_unknown_fields`, so the loaded-table fields are spelled out in both
//! bodies and parsed by one function.

use serde::Deserialize;
use sigma_shared::{Attempt, BucketName, Generation, ObjectName, ObjectRef, Rerun};
use utoipa::{IntoParams, ToSchema};

use crate::error::DataformError;
use crate::name::TableName;

/// `POST /closure`: which table was loaded, named (`table`, or the registry's
/// `dataform_table`) or derived from the loaded object's name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClosureRequest {
    /// The loaded table: `name`, `schema.name` or `database.schema.name`.
    #[schema(examples("lkp_fechas"))]
    table: Option<String>,
    /// The pipeline registry's `dataform_table`, used when `table` is absent.
    dataform_table: Option<String>,
    /// The loaded file's bucket.
    bucket: Option<BucketName>,
    /// The loaded file; without `table` its file name without directories or extensions
    /// is the table.
    name: Option<ObjectName>,
    generation: Option<Generation>,
    /// List at most this many actions (`count` is always the total).
    actions_sample: Option<usize>,
}

/// `POST /invoke`: the loaded table as for `/closure`, and how to invoke.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    /// The loaded table: `name`, `schema.name` or `database.schema.name`.
    #[schema(examples("lkp_fechas"))]
    table: Option<String>,
    /// The pipeline registry's `dataform_table`, used when `table` is absent.
    dataform_table: Option<String>,
    /// The loaded file's bucket.
    bucket: Option<BucketName>,
    /// The loaded file; without `table` its file name without directories or extensions
    /// is the table.
    name: Option<ObjectName>,
    generation: Option<Generation>,
    #[serde(default)]
    fully_refresh_incremental: bool,
    /// Answer what would run, create nothing.
    #[serde(default)]
    dry_run: bool,
    /// The same key never starts the same actions twice; when absent and `bucket`, `name`
    /// and `generation` are all given, the key is `bucket/name/generation`.
    #[schema(min_length = 1, max_length = 2048)]
    idempotency_key: Option<String>,
    /// List at most the first this many actions, dependencies first; the invocation always
    /// runs the whole closure.
    actions_sample: Option<usize>,
    #[serde(default)]
    attempt: Attempt,
    #[serde(default)]
    rerun: Rerun,
}

/// `GET /invocations/{id}?actions_sample=N`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// List at most this many failed actions (all of them are counted).
    actions_sample: Option<usize>,
}

/// How many actions an answer lists; `count` always says how many there are. Cloud
/// Workflows keeps answers in variables of at most 512 KB, so the workflow asks for a
/// sample; people and the CLI get every action by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample(Option<usize>);

impl Sample {
    pub const ALL: Self = Self(None);
    /// Counts only, for a state check.
    pub const NONE: Self = Self(Some(0));

    /// Whether an item may join `listed` items already listed.
    pub fn admits(self, listed: usize) -> bool {
        self.0.is_none_or(|limit| listed < limit)
    }

    pub fn apply<T>(self, items: &mut Vec<T>) {
        if let Some(limit) = self.0 {
            items.truncate(limit);
        }
    }
}

/// The loaded table, and the loaded object when the caller named it (events report it).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub table: TableName,
    pub object: Option<ObjectRef>,
    pub generation: Option<Generation>,
}

/// A `/closure` request, checked.
#[derive(Debug, Clone)]
pub struct Closure {
    pub loaded: Loaded,
    pub sample: Sample,
}

/// An `/invoke` request, checked.
#[derive(Debug, Clone)]
pub struct Invoke {
    pub loaded: Loaded,
    /// The same key never starts the same actions twice.
    pub key: Option<String>,
    pub fully_refresh_incremental: bool,
    pub dry_run: bool,
    pub sample: Sample,
    /// Which run of the load's chain this is (1 unless replayed).
    pub attempt: Attempt,
    /// After an earlier attempt's invocation failed: what this one covers.
    pub rerun: Rerun,
}

const MAX_KEY_BYTES: usize = 2048;

fn loaded(
    table: Option<String>,
    dataform_table: Option<String>,
    bucket: Option<BucketName>,
    name: Option<ObjectName>,
    generation: Option<Generation>,
) -> Result<Loaded, DataformError> {
    let span = tracing::Span::current();
    if let Some(name) = &name {
        let bucket = bucket.as_ref().map(BucketName::as_str).unwrap_or_default();
        span.record("object", format!("{bucket}/{name}"));
    }
    if let Some(generation) = generation {
        span.record("generation", generation.get());
    }
    let invalid = |e: crate::name::NameError| DataformError::InvalidRequest(e.to_string());
    let table = match (table.or(dataform_table), &name) {
        (Some(table), _) => table.parse().map_err(invalid)?,
        (None, Some(name)) => TableName::from_object(name).map_err(invalid)?,
        (None, None) => return Err(DataformError::InvalidRequest(
            "give \"table\" (name, schema.name or database.schema.name), or \"bucket\" and \"name\" of the loaded file".into(),
        )),
    };
    Ok(Loaded {
        table,
        object: bucket
            .zip(name)
            .map(|(bucket, name)| ObjectRef::new(bucket, name)),
        generation,
    })
}

impl ClosureRequest {
    pub fn parse(self) -> Result<Closure, DataformError> {
        Ok(Closure {
            loaded: loaded(
                self.table,
                self.dataform_table,
                self.bucket,
                self.name,
                self.generation,
            )?,
            sample: Sample(self.actions_sample),
        })
    }
}

impl InvokeRequest {
    pub fn parse(self) -> Result<Invoke, DataformError> {
        if let Some(key) = &self.idempotency_key
            && (key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control))
        {
            return Err(DataformError::InvalidRequest(format!(
                "idempotency_key must be 1-{MAX_KEY_BYTES} bytes without control characters"
            )));
        }
        tracing::Span::current().record("attempt", self.attempt.get());
        let loaded = loaded(
            self.table,
            self.dataform_table,
            self.bucket,
            self.name,
            self.generation,
        )?;
        // Without a key of its own, the loaded upload is the key: the same upload must never
        // start the same actions twice.
        let key = self.idempotency_key.or_else(|| {
            let object = loaded.object.as_ref()?;
            Some(format!(
                "{}/{}/{}",
                object.bucket, object.name, loaded.generation?
            ))
        });
        Ok(Invoke {
            loaded,
            key,
            fully_refresh_incremental: self.fully_refresh_incremental,
            dry_run: self.dry_run,
            sample: Sample(self.actions_sample),
            attempt: self.attempt,
            rerun: self.rerun,
        })
    }
}

impl StatusQuery {
    pub fn sample(&self) -> Sample {
        Sample(self.actions_sample)
    }
}
