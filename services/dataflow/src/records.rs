//! What sigma keeps in `CONFIG_BUCKET/configs/`: job configs and launch records.
//!
//! A job is given its upload's own config (`configs/{entity}/{fecha_lote}/{job_name}.config`),
//! created only if absent and never replaced: a job starts minutes after its launch, and a
//! same-day re-upload in between must not change what it loads. The contract's per-day
//! name (`configs/{entity}_{fecha_lote}.config`) is kept as a copy of the latest upload's
//! config for people and older readers; it is replaced on a re-upload, conditionally on the
//! generation read just before, and never by an older upload's config. Launch records are
//! keyed by job name (so per upload) and created only if absent: once one exists, every
//! later delivery of that upload returns its job instead of launching.

use bytes::Bytes;
use google_cloud_storage::client::Storage;
use serde::{Deserialize, Serialize};
use sigma_shared::record::{self, Created, RecordError};
use sigma_shared::storage::{self, Precondition, StorageError};
use sigma_shared::{Attempt, Generation, ObjectRef};

use crate::error::Error;
use crate::naming::{DataformTable, EntityName, FechaLote, JobId, JobName, ProjectId, Region};
use crate::plan::{LaunchPlan, Site};

/// Concurrent writers of one config (duplicate deliveries) settle within a few rounds.
const WRITE_ATTEMPTS: usize = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchRecord {
    pub job_id: JobId,
    pub job_name: JobName,
    pub project: ProjectId,
    pub region: Region,
    pub entity: EntityName,
    pub fecha_lote: FechaLote,
    pub generation: Generation,
    pub config_uri: String,
    pub dataform_table: DataformTable,
    /// Records written before attempts existed are the first attempt's.
    #[serde(default)]
    pub attempt: Attempt,
    pub recorded_at: String,
}

/// `configs/{job_name}.launch.json`, next to the config.
pub fn record_object(site: &Site, job_name: &JobName) -> ObjectRef {
    let name = format!("configs/{job_name}.launch.json");
    ObjectRef::new(
        site.config_bucket.clone(),
        name.parse().expect("job names make safe object names"),
    )
}

pub async fn read_record(
    storage: &Storage,
    object: &ObjectRef,
) -> Result<Option<LaunchRecord>, StorageError> {
    match record::read(storage, object).await {
        Ok(stored) => Ok(stored.map(|s| s.record)),
        Err(RecordError::Corrupt { object, source }) => {
            tracing::warn!(object = %object, "ignoring an unreadable launch record: {source}");
            Ok(None)
        }
        Err(RecordError::Storage(e)) => Err(e),
    }
}

/// Creates the record unless one exists; returns the record that is stored afterwards.
pub async fn write_record(
    storage: &Storage,
    object: &ObjectRef,
    ours: LaunchRecord,
) -> Result<LaunchRecord, StorageError> {
    match record::create(storage, object, &ours).await {
        Ok(Created::Ours(_)) => Ok(ours),
        Ok(Created::Theirs(stored)) => {
            if stored.record.job_id != ours.job_id {
                tracing::error!(job_name = %ours.job_name, stored = %stored.record.job_id, ours = %ours.job_id, "two jobs recorded for one upload");
            }
            Ok(stored.record)
        }
        // Another writer's record is there and cannot be read: nothing to answer with.
        Err(RecordError::Corrupt { object, .. }) => Err(StorageError::PreconditionFailed(object)),
        Err(RecordError::Storage(e)) => Err(e),
    }
}

#[derive(Deserialize)]
struct Peek {
    source: PeekSource,
}

#[derive(Deserialize)]
struct PeekSource {
    generation: Option<Generation>,
}

/// Creates this upload's config unless it exists. An existing one is kept as it is: it may
/// already be what a launched job reads, so a registry changed in between does not rewrite
/// it (the difference is logged).
pub async fn write_upload_config(storage: &Storage, plan: &LaunchPlan) -> Result<(), Error> {
    let object = &plan.config_object;
    let wanted = plan.config_bytes();
    match storage::write(
        storage,
        object,
        Bytes::from(wanted.clone()),
        Precondition::DoesNotExist,
        record::json(),
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(StorageError::PreconditionFailed(_)) => {
            if let Some((bytes, _)) = record::read_bytes(storage, object).await?
                && bytes[..] != wanted[..]
            {
                tracing::warn!(config = %object, "keeping this upload's existing config, which differs from the current registry's");
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes the plan's config under the per-day name unless the same document is already
/// there; refuses to replace the config of a newer upload.
pub async fn write_latest_config(storage: &Storage, plan: &LaunchPlan) -> Result<(), Error> {
    let object = &plan.latest_config_object;
    let wanted = plan.config_bytes();
    for _ in 0..WRITE_ATTEMPTS {
        let precondition = match record::read_bytes(storage, object).await? {
            Some((bytes, _)) if bytes[..] == wanted[..] => return Ok(()),
            Some((bytes, generation)) => {
                let existing = serde_json::from_slice::<Peek>(&bytes)
                    .ok()
                    .and_then(|p| p.source.generation);
                if let (Some(newer), Some(requested)) = (existing, plan.generation)
                    && newer > requested
                {
                    return Err(Error::NewerConfig {
                        config: object.clone(),
                        requested,
                        newer,
                    });
                }
                Precondition::GenerationMatch(generation)
            }
            None => Precondition::DoesNotExist,
        };
        match storage::write(
            storage,
            object,
            Bytes::from(wanted.clone()),
            precondition,
            record::json(),
        )
        .await
        {
            Ok(_) => return Ok(()),
            Err(StorageError::PreconditionFailed(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StorageError::PreconditionFailed(object.clone()).into())
}
