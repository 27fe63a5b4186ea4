//! What callers send, parsed once into what the service works with.

use serde::Deserialize;
use sigma_shared::{BucketName, Generation, ObjectName, ObjectRef};

use crate::error::DataformError;
use crate::name::TableName;

/// Which table was loaded: named (`table`, or the registry's `dataform_table`), or derived
/// from the loaded object's name.
#[derive(Debug, Deserialize)]
pub struct TableRequest {
    table: Option<String>,
    dataform_table: Option<String>,
    bucket: Option<BucketName>,
    name: Option<ObjectName>,
    generation: Option<Generation>,
}

#[derive(Debug, Deserialize)]
pub struct InvokeRequest {
    #[serde(flatten)]
    table: TableRequest,
    #[serde(default)]
    fully_refresh_incremental: bool,
    #[serde(default)]
    dry_run: bool,
    idempotency_key: Option<String>,
}

/// The loaded table, and the loaded object when the caller named it (events report it).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub table: TableName,
    pub object: Option<ObjectRef>,
    pub generation: Option<Generation>,
}

/// An `/invoke` request, checked.
#[derive(Debug, Clone)]
pub struct Invoke {
    pub loaded: Loaded,
    /// The same key never starts the same actions twice.
    pub key: Option<String>,
    pub fully_refresh_incremental: bool,
    pub dry_run: bool,
}

const MAX_KEY_BYTES: usize = 2048;

impl TableRequest {
    pub fn parse(self) -> Result<Loaded, DataformError> {
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
        let table = match (&self.table, &self.dataform_table, &self.name) {
            (Some(table), _, _) | (None, Some(table), _) => table.parse().map_err(invalid)?,
            (None, None, Some(name)) => TableName::from_object(name).map_err(invalid)?,
            (None, None, None) => return Err(DataformError::InvalidRequest(
                "give \"table\" (name, schema.name or database.schema.name), or \"bucket\" and \"name\" of the loaded file".into(),
            )),
        };
        let object = self
            .bucket
            .zip(self.name)
            .map(|(bucket, name)| ObjectRef::new(bucket, name));
        Ok(Loaded {
            table,
            object,
            generation: self.generation,
        })
    }
}

impl InvokeRequest {
    pub fn parse(self) -> Result<Invoke, DataformError> {
        let key = match self.idempotency_key {
            Some(key) => {
                if key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control)
                {
                    return Err(DataformError::InvalidRequest(format!(
                        "idempotency_key must be 1-{MAX_KEY_BYTES} bytes without control characters"
                    )));
                }
                Some(key)
            }
            None => None,
        };
        let loaded = self.table.parse()?;
        // Without a key of its own, the loaded upload is the key: the same upload must never
        // start the same actions twice.
        let key = key.or_else(|| {
            loaded
                .object
                .as_ref()
                .zip(loaded.generation)
                .map(|(object, generation)| {
                    format!("{}/{}/{generation}", object.bucket, object.name)
                })
        });
        Ok(Invoke {
            loaded,
            key,
            fully_refresh_incremental: self.fully_refresh_incremental,
            dry_run: self.dry_run,
        })
    }
}
