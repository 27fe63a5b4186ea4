//! One invocation per idempotency key, across retries, instances and restarts.
//!
//! `workflowInvocations.create` takes no request id, so a retried `/invoke` (the workflow
//! retries on timeouts; Eventarc delivers at least once) would start the same actions twice.
//! Each key owns one record, written only with a precondition so that of two concurrent
//! requests exactly one may create the invocation:
//!
//! 1. no record: write `claimed` if it still does not exist; the winner creates the invocation
//!    and replaces its claim (if the generation is still its own) with `created`;
//! 2. `created`: a replay, answered with the invocation already created;
//! 3. `claimed` recently: another request is creating it, answer 503 so the caller retries;
//! 4. `released` (the create failed) or a claim older than the lease (its owner died): taken
//!    over with a generation precondition, like 1.
//!
//! Records live in `DATAFORM_STATE_BUCKET` (Cloud Run instances are ephemeral); without it
//! they live in memory, which only dedupes within one instance.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use google_cloud_storage::client::Storage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sigma_shared::storage::{self, Precondition, StorageError, WriteOptions};
use sigma_shared::{BucketName, Generation, ObjectRef};

use crate::closure::ActionView;
use crate::error::DataformError;

/// Longer than a create call can take with its retries: a claim this old belongs to a
/// request that died between claiming and recording.
const LEASE_SECONDS: u64 = 120;
const MAX_RECORD_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Record {
    Claimed {
        claimed_at: u64,
    },
    Created {
        invocation: String,
        compilation_result: String,
        actions: Vec<ActionView>,
    },
    Released,
}

/// The right to create the invocation for a key, held until `complete` or `release`.
#[derive(Debug)]
pub struct Ticket {
    object: String,
    version: i64,
}

#[derive(Debug)]
pub enum Claim {
    /// Replay: the invocation, compilation and actions recorded the first time.
    Existing {
        invocation: String,
        compilation_result: String,
        actions: Vec<ActionView>,
    },
    Acquired(Ticket),
}

pub enum Ledger {
    Memory(Mutex<HashMap<String, (i64, Record)>>),
    Gcs {
        client: Box<Storage>,
        bucket: BucketName,
    },
}

/// Another writer changed the record between our read and our write.
struct Conflict;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Keys carry object names; hashing them gives a fixed-size, safe object name.
pub fn record_name(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("dataform/invocations/{hex}.json")
}

impl Ledger {
    pub fn memory() -> Self {
        Self::Memory(Mutex::new(HashMap::new()))
    }

    fn object(bucket: &BucketName, name: &str) -> Result<ObjectRef, DataformError> {
        let name = name
            .parse()
            .map_err(|e| DataformError::CorruptRecord(format!("{name}: {e}")))?;
        Ok(ObjectRef::new(bucket.clone(), name))
    }

    async fn read(&self, name: &str) -> Result<Option<(i64, Record)>, DataformError> {
        match self {
            Self::Memory(records) => Ok(records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .cloned()),
            Self::Gcs { client, bucket } => {
                let object = Self::object(bucket, name)?;
                match storage::read_to_bytes(client, &object, MAX_RECORD_BYTES).await {
                    Ok((bytes, highlights)) => {
                        let record = serde_json::from_slice(&bytes)
                            .map_err(|_| DataformError::CorruptRecord(object.to_string()))?;
                        Ok(Some((highlights.generation, record)))
                    }
                    Err(StorageError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Writes `record` if the stored version is still `expected` (`None`: no record yet).
    async fn write(
        &self,
        name: &str,
        record: &Record,
        expected: Option<i64>,
    ) -> Result<Result<i64, Conflict>, DataformError> {
        match self {
            Self::Memory(records) => {
                let mut records = records.lock().unwrap_or_else(|e| e.into_inner());
                let current = records.get(name).map(|(version, _)| *version);
                if current != expected {
                    return Ok(Err(Conflict));
                }
                let version = current.unwrap_or(0) + 1;
                records.insert(name.to_owned(), (version, record.clone()));
                Ok(Ok(version))
            }
            Self::Gcs { client, bucket } => {
                let object = Self::object(bucket, name)?;
                let precondition = match expected {
                    None => Precondition::DoesNotExist,
                    Some(version) => Precondition::GenerationMatch(
                        Generation::new(version)
                            .map_err(|e| DataformError::CorruptRecord(e.to_string()))?,
                    ),
                };
                let body =
                    Bytes::from(serde_json::to_vec(record).expect("records always serialize"));
                let options = WriteOptions {
                    content_type: "application/json".into(),
                    ..WriteOptions::default()
                };
                match storage::write(client, &object, body, precondition, options).await {
                    Ok(written) => Ok(Ok(written.generation)),
                    Err(StorageError::PreconditionFailed(_)) => Ok(Err(Conflict)),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Either the invocation already created for `key`, or the right to create it.
    pub async fn claim(&self, key: &str) -> Result<Claim, DataformError> {
        let name = record_name(key);
        for _ in 0..3 {
            let expected = match self.read(&name).await? {
                None => None,
                Some((
                    _,
                    Record::Created {
                        invocation,
                        compilation_result,
                        actions,
                    },
                )) => {
                    return Ok(Claim::Existing {
                        invocation,
                        compilation_result,
                        actions,
                    });
                }
                Some((_, Record::Claimed { claimed_at }))
                    if now().saturating_sub(claimed_at) < LEASE_SECONDS =>
                {
                    return Err(DataformError::InvocationInProgress);
                }
                Some((version, _)) => Some(version),
            };
            if let Ok(version) = self
                .write(&name, &Record::Claimed { claimed_at: now() }, expected)
                .await?
            {
                return Ok(Claim::Acquired(Ticket {
                    object: name,
                    version,
                }));
            }
        }
        Err(DataformError::InvocationInProgress)
    }

    /// Records the invocation created under `ticket`, for replays to find.
    ///
    /// The invocation exists whatever happens here, so a failure is logged rather than
    /// returned: answering an error would make the caller retry a request that succeeded.
    pub async fn complete(&self, ticket: Ticket, record: Record) {
        match self
            .write(&ticket.object, &record, Some(ticket.version))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(Conflict)) => tracing::warn!(
                record = ticket.object,
                "the claim expired before the invocation was recorded"
            ),
            Err(e) => tracing::error!(record = ticket.object, "cannot record the invocation: {e}"),
        }
    }

    /// Gives the key back after a failed create, so the caller's retry can try again at once.
    pub async fn release(&self, ticket: Ticket) {
        match self
            .write(&ticket.object, &Record::Released, Some(ticket.version))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(Conflict)) => tracing::warn!(
                record = ticket.object,
                "the claim was taken over before release"
            ),
            Err(e) => tracing::warn!(
                record = ticket.object,
                "cannot release the claim; it expires by itself: {e}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claimed_key_is_busy_until_completed_then_replays_the_record() {
        let ledger = Ledger::memory();
        let Claim::Acquired(ticket) = ledger.claim("b/n/1").await.unwrap() else {
            panic!("first claim must win")
        };
        assert!(matches!(
            ledger.claim("b/n/1").await,
            Err(DataformError::InvocationInProgress)
        ));
        let record = Record::Created {
            invocation: "inv".into(),
            compilation_result: "comp".into(),
            actions: vec![],
        };
        ledger.complete(ticket, record).await;
        assert!(
            matches!(ledger.claim("b/n/1").await.unwrap(), Claim::Existing { invocation, .. } if invocation == "inv")
        );
    }

    #[tokio::test]
    async fn a_released_key_can_be_claimed_again() {
        let ledger = Ledger::memory();
        let Claim::Acquired(ticket) = ledger.claim("k").await.unwrap() else {
            panic!()
        };
        ledger.release(ticket).await;
        assert!(matches!(
            ledger.claim("k").await.unwrap(),
            Claim::Acquired(_)
        ));
    }

    #[test]
    fn record_names_are_fixed_size_hashes() {
        assert_eq!(
            record_name("b/data/x.gz/17").len(),
            "dataform/invocations/.json".len() + 64
        );
        assert_ne!(record_name("a"), record_name("b"));
    }
}
