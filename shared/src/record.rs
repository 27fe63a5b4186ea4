//! Records: the small JSON objects in Cloud Storage that hold what must outlive a request
//! (launch records, claims, attempts), one model for every service.
//!
//! Cloud Run instances come and go and several run at once, so a record is only ever
//! written with a generation precondition: created if absent, or replaced if still at the
//! generation read. Of two concurrent writers exactly one wins; the other learns it
//! ([`Created::Theirs`], [`Conflict`]) and works from what won, never over it.

use bytes::Bytes;
use google_cloud_storage::client::Storage;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::google::Failure;
use crate::object::{Generation, ObjectRef};
use crate::storage::{self, Precondition, StorageError, WriteOptions};

/// Records are small; anything bigger is not one of ours.
pub const MAX_RECORD: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The object exists but is not the record its name promises (written by something
    /// else, or by an incompatible version).
    #[error("{object} is not a readable record: {source}")]
    Corrupt {
        object: ObjectRef,
        source: serde_json::Error,
    },
}

/// A record as stored, with the generation a replacement must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    pub record: T,
    pub generation: Generation,
}

/// What [`create`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Created<T> {
    /// This call wrote the record.
    Ours(Generation),
    /// Another writer's record was there first; it is returned as stored.
    Theirs(Stored<T>),
}

/// Another writer replaced (or created) the record since it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict;

/// The record at `object`, or `None` when there is none.
pub async fn read<T: DeserializeOwned>(
    client: &Storage,
    object: &ObjectRef,
) -> Result<Option<Stored<T>>, RecordError> {
    let Some((bytes, generation)) = read_bytes(client, object).await? else {
        return Ok(None);
    };
    let record = serde_json::from_slice(&bytes).map_err(|source| RecordError::Corrupt {
        object: object.clone(),
        source,
    })?;
    Ok(Some(Stored { record, generation }))
}

/// The bytes of a small document at `object` and their generation, or `None` when there is
/// none.
pub async fn read_bytes(
    client: &Storage,
    object: &ObjectRef,
) -> Result<Option<(Bytes, Generation)>, StorageError> {
    match storage::read_to_bytes(client, object, MAX_RECORD).await {
        Ok((bytes, highlights)) => Ok(Some((bytes, generation(object, highlights.generation)?))),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the record unless one exists, in which case that one is read back.
pub async fn create<T: Serialize + DeserializeOwned>(
    client: &Storage,
    object: &ObjectRef,
    record: &T,
) -> Result<Created<T>, RecordError> {
    match write(client, object, record, None).await? {
        Ok(generation) => Ok(Created::Ours(generation)),
        Err(Conflict) => read(client, object)
            .await?
            .map(Created::Theirs)
            .ok_or_else(|| StorageError::PreconditionFailed(object.clone()).into()),
    }
}

/// Writes `record` if the stored one is still at `expected` (`None`: if there is none).
pub async fn write<T: Serialize>(
    client: &Storage,
    object: &ObjectRef,
    record: &T,
    expected: Option<Generation>,
) -> Result<Result<Generation, Conflict>, StorageError> {
    let precondition = expected.map_or(Precondition::DoesNotExist, Precondition::GenerationMatch);
    let body = Bytes::from(serde_json::to_vec_pretty(record).expect("records always serialize"));
    match storage::write(client, object, body, precondition, json()).await {
        Ok(written) => Ok(Ok(generation(object, written.generation)?)),
        Err(StorageError::PreconditionFailed(_)) => Ok(Err(Conflict)),
        Err(e) => Err(e),
    }
}

/// Cloud Storage's generations are positive; anything else is an answer not to act on.
fn generation(object: &ObjectRef, value: i64) -> Result<Generation, StorageError> {
    Generation::new(value).map_err(|e| StorageError::Google {
        object: object.clone(),
        failure: Failure::Unexpected,
        message: e.to_string(),
    })
}

/// How JSON documents are described.
pub fn json() -> WriteOptions {
    WriteOptions {
        content_type: "application/json".into(),
        ..WriteOptions::default()
    }
}
