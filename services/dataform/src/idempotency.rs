//! One invocation per idempotency key, across retries, instances, restarts and ambiguous
//! failures.
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
//! A create that timed out, broke its connection or got a 5xx may still have been carried
//! out by Dataform. So every claim lists its [`Attempt`]s (the compilation result and the
//! digest of the targets it asked for), and a release after such a failure keeps its
//! attempt: whoever takes the key over first searches Dataform for an invocation matching
//! one of them and adopts it instead of creating another. Only a failure that proves nothing
//! was created (Dataform refused the request) drops the attempt.
//!
//! Records hold a digest, never the target list: the list of a 100,000-action closure is
//! megabytes, and the invocation itself keeps it (`invocationConfig.includedTargets`).
//!
//! Records live in `DATAFORM_STATE_BUCKET` (Cloud Run instances are ephemeral); without it
//! they live in memory, bounded to `DATAFORM_LEDGER_CAPACITY` keys, which only dedupes
//! within one instance.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use google_cloud_storage::client::Storage;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sigma_shared::record::{self, Conflict, RecordError};
use sigma_shared::{BucketName, Generation, ObjectRef};

use crate::api::Found;
use crate::error::DataformError;
use crate::graph::Target;
use crate::schedule::Member;

/// Longer than a create call can take with its retries: a claim this old belongs to a
/// request that died between claiming and recording.
const LEASE_SECONDS: u64 = 120;
/// Writing the `created` record is retried this many times: the invocation exists, and a
/// record lost here would leave only the (slower) search to find it.
const RECORD_WRITES: u32 = 4;

/// `sha256` of the sorted `database.schema.name` of a set of targets, in hex: equal
/// digests mean the same set, whatever the order.
pub fn targets_digest<'a>(targets: impl IntoIterator<Item = &'a Target>) -> String {
    let mut names: Vec<String> = targets.into_iter().map(Target::to_string).collect();
    names.sort_unstable();
    let mut hasher = Sha256::new();
    for name in &names {
        hasher.update(name.as_bytes());
        hasher.update(b"\n");
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A create that may have been carried out: which compilation and which targets it named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub compilation_result: String,
    /// [`targets_digest`] of the `includedTargets` it sent.
    pub targets: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Record {
    Claimed {
        claimed_at: u64,
        /// Random per claim: a claim whose write answer was lost is recognised as ours
        /// when read back, and never confused with a concurrent claim.
        #[serde(default)]
        owner: String,
        /// Creates made (or about to be made) under this key that may have succeeded.
        #[serde(default)]
        attempts: Vec<Attempt>,
    },
    Created {
        invocation: String,
        compilation_result: String,
        /// [`targets_digest`] of the invocation's targets (empty in records written before
        /// digests were kept).
        #[serde(default)]
        targets: String,
        #[serde(default)]
        count: usize,
        /// The load this key queued, when it waited for its turn: its own actions are the
        /// ones its ticket reports.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ticket: Option<Member>,
    },
    /// Waiting in the schedule for overlapping invocations to end (batch coalescing).
    Queued { ticket: Member },
    Released {
        /// Creates that failed ambiguously: search for them before creating again.
        #[serde(default)]
        attempts: Vec<Attempt>,
    },
}

impl Record {
    /// The record of a key whose load `member` runs in `found`, `digest` being
    /// [`targets_digest`] of its targets: the invocation's own compilation result, not the
    /// one this instance compiled (an adopted invocation may come from another's).
    pub fn created(found: &Found, digest: &str, member: Option<&Member>) -> Self {
        Self::Created {
            invocation: found.name.clone(),
            compilation_result: found.compilation_result.clone(),
            targets: digest.to_owned(),
            count: found.targets.len(),
            ticket: member.cloned(),
        }
    }

    /// A claim whose owner may still be creating the invocation.
    pub fn is_live_claim(&self) -> bool {
        matches!(self, Self::Claimed { claimed_at, .. } if now().saturating_sub(*claimed_at) < LEASE_SECONDS)
    }
}

/// The right to create the invocation for a key, held until `complete` or `release`.
#[derive(Debug)]
pub struct Ticket {
    object: String,
    version: i64,
    /// Earlier attempts that may have created the invocation: search them first.
    pub earlier: Vec<Attempt>,
    attempt: Attempt,
}

#[derive(Debug)]
pub enum Claim {
    /// Replay: the invocation recorded the first time.
    Existing {
        invocation: String,
    },
    Acquired(Ticket),
}

/// Records in this instance's memory, the least recently written dropped beyond `capacity`.
pub struct MemoryLedger {
    records: HashMap<String, (i64, serde_json::Value, u64)>,
    /// Last write's tick of each record, oldest first.
    order: BTreeMap<u64, String>,
    tick: u64,
    capacity: usize,
}

impl MemoryLedger {
    fn get(&self, name: &str) -> Option<(i64, serde_json::Value)> {
        self.records
            .get(name)
            .map(|(version, record, _)| (*version, record.clone()))
    }

    fn put(&mut self, name: &str, version: i64, record: serde_json::Value) {
        self.tick += 1;
        if let Some((_, _, tick)) = self
            .records
            .insert(name.to_owned(), (version, record, self.tick))
        {
            self.order.remove(&tick);
        }
        self.order.insert(self.tick, name.to_owned());
        while self.records.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.records.remove(&oldest);
        }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

pub enum Ledger {
    Memory(Mutex<MemoryLedger>),
    Gcs {
        client: Box<Storage>,
        bucket: BucketName,
    },
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The key of one attempt's record: attempt 1 keeps the caller's key as it is (so records
/// written before attempts existed still count), later attempts get records of their own,
/// and no attempt ever overwrites another's.
pub fn attempt_key(key: &str, attempt: sigma_shared::Attempt) -> String {
    if attempt.is_first() {
        key.to_owned()
    } else {
        format!("{key}#attempt={attempt}")
    }
}

/// Keys carry object names; hashing them gives a fixed-size, safe object name.
pub fn record_name(key: &str) -> String {
    ticket_record(&ticket_id(key))
}

/// The id of the ticket a key's request holds: the hash its record is named by, so that a
/// ticket leads to its record without a second index.
pub fn ticket_id(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// The record of the key whose ticket is `id`.
pub fn ticket_record(id: &str) -> String {
    format!("dataform/invocations/{id}.json")
}

fn with(mut attempts: Vec<Attempt>, attempt: &Attempt) -> Vec<Attempt> {
    if !attempts.contains(attempt) {
        attempts.push(attempt.clone());
    }
    attempts
}

impl Ledger {
    /// In memory, keeping at most `capacity` keys.
    pub fn memory(capacity: usize) -> Self {
        Self::Memory(Mutex::new(MemoryLedger {
            records: HashMap::new(),
            order: BTreeMap::new(),
            tick: 0,
            capacity: capacity.max(1),
        }))
    }

    fn object(bucket: &BucketName, name: &str) -> Result<ObjectRef, DataformError> {
        let name = name
            .parse()
            .map_err(|e| DataformError::CorruptRecord(format!("{name}: {e}")))?;
        Ok(ObjectRef::new(bucket.clone(), name))
    }

    /// The stored record of `key` and its size as stored, for tests and operators.
    pub async fn record(&self, key: &str) -> Result<Option<(usize, Record)>, DataformError> {
        Ok(self
            .read::<Record>(&record_name(key))
            .await?
            .map(|(_, record)| {
                let size = serde_json::to_vec(&record).map_or(0, |b| b.len());
                (size, record)
            }))
    }

    /// The record stored under `name` and its version.
    pub(crate) async fn read<T: DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<(i64, T)>, DataformError> {
        match self {
            Self::Memory(records) => {
                let stored = records.lock().unwrap_or_else(|e| e.into_inner()).get(name);
                stored
                    .map(|(version, value)| {
                        serde_json::from_value(value)
                            .map(|record| (version, record))
                            .map_err(|e| DataformError::CorruptRecord(format!("{name}: {e}")))
                    })
                    .transpose()
            }
            Self::Gcs { client, bucket } => {
                match record::read(client, &Self::object(bucket, name)?).await {
                    Ok(stored) => Ok(stored.map(|s| (s.generation.get(), s.record))),
                    Err(RecordError::Corrupt { object, .. }) => {
                        Err(DataformError::CorruptRecord(object.to_string()))
                    }
                    Err(RecordError::Storage(e)) => Err(e.into()),
                }
            }
        }
    }

    /// Writes `record` under `name` if the stored version is still `expected` (`None`: no
    /// record yet).
    pub(crate) async fn write<T: Serialize>(
        &self,
        name: &str,
        record: &T,
        expected: Option<i64>,
    ) -> Result<Result<i64, Conflict>, DataformError> {
        match self {
            Self::Memory(records) => {
                let value = serde_json::to_value(record)
                    .map_err(|e| DataformError::CorruptRecord(format!("{name}: {e}")))?;
                let mut records = records.lock().unwrap_or_else(|e| e.into_inner());
                let current = records.get(name).map(|(version, _)| version);
                if current != expected {
                    return Ok(Err(Conflict));
                }
                let version = current.unwrap_or(0) + 1;
                records.put(name, version, value);
                Ok(Ok(version))
            }
            Self::Gcs { client, bucket } => {
                let expected = expected
                    .map(Generation::new)
                    .transpose()
                    .map_err(|e| DataformError::CorruptRecord(e.to_string()))?;
                let written =
                    record::write(client, &Self::object(bucket, name)?, record, expected).await?;
                Ok(written.map(Generation::get))
            }
        }
    }

    /// Either the invocation already created for `key`, or the right to create it with
    /// `attempt` (recorded in the claim before anything is created).
    pub async fn claim(&self, key: &str, attempt: &Attempt) -> Result<Claim, DataformError> {
        let name = record_name(key);
        for _ in 0..3 {
            let (expected, earlier) = match self.read::<Record>(&name).await? {
                None => (None, Vec::new()),
                Some((_, Record::Created { invocation, .. })) => {
                    return Ok(Claim::Existing { invocation });
                }
                Some((_, record)) if record.is_live_claim() => {
                    return Err(DataformError::InvocationInProgress);
                }
                Some((version, Record::Claimed { attempts, .. }))
                | Some((version, Record::Released { attempts })) => (Some(version), attempts),
                Some((version, Record::Queued { .. })) => (Some(version), Vec::new()),
            };
            let claimed = Record::Claimed {
                claimed_at: now(),
                owner: format!("{:016x}", rand::random::<u64>()),
                attempts: with(earlier.clone(), attempt),
            };
            let version = match self.write(&name, &claimed, expected).await? {
                Ok(version) => Some(version),
                // The write may have landed with its answer lost (the client retried it
                // and met its own write): ours if what is stored is exactly it.
                Err(Conflict) => match self.read::<Record>(&name).await? {
                    Some((version, stored)) if stored == claimed => Some(version),
                    _ => None,
                },
            };
            if let Some(version) = version {
                return Ok(Claim::Acquired(Ticket {
                    object: name,
                    version,
                    earlier,
                    attempt: attempt.clone(),
                }));
            }
        }
        Err(DataformError::InvocationInProgress)
    }

    /// Records the invocation created (or found) under `ticket`, for replays to find.
    ///
    /// The invocation exists whatever happens here, so after the retries a failure is
    /// logged rather than returned: answering an error would make the caller retry a request
    /// that succeeded. The claim then still lists the attempt, so whoever takes the key over
    /// after the lease finds the invocation by searching instead of creating another.
    pub async fn complete(&self, ticket: Ticket, record: Record) {
        let mut delay = Duration::from_millis(100);
        for write in 1..=RECORD_WRITES {
            match self
                .write(&ticket.object, &record, Some(ticket.version))
                .await
            {
                Ok(Ok(_)) => return,
                // A write whose answer was lost may have landed: read it back.
                Ok(Err(Conflict)) => match self.read::<Record>(&ticket.object).await {
                    Ok(Some((_, stored))) if stored == record => return,
                    Ok(_) => {
                        tracing::warn!(
                            record = ticket.object,
                            "the claim was taken over before the invocation was recorded"
                        );
                        return;
                    }
                    Err(e) => tracing::warn!(
                        record = ticket.object,
                        "cannot read the record back (write {write} of {RECORD_WRITES}): {e}"
                    ),
                },
                Err(e) => tracing::warn!(
                    record = ticket.object,
                    "cannot record the invocation (write {write} of {RECORD_WRITES}): {e}"
                ),
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        tracing::error!(
            record = ticket.object,
            "the invocation is not recorded; its claim keeps the attempt, so it will be found by search"
        );
    }

    /// Gives the key back after a failed create, so the caller's retry can try again at
    /// once. `ambiguous`: the create may have been carried out, so the retry must search for
    /// it first; otherwise Dataform refused it and only the earlier attempts stay.
    pub async fn release(&self, ticket: Ticket, ambiguous: bool) {
        let attempts = if ambiguous {
            with(ticket.earlier, &ticket.attempt)
        } else {
            ticket.earlier
        };
        match self
            .write(
                &ticket.object,
                &Record::Released { attempts },
                Some(ticket.version),
            )
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(Conflict)) => tracing::warn!(
                record = ticket.object,
                "the claim was taken over before release"
            ),
            Err(e) => tracing::warn!(
                record = ticket.object,
                "cannot release the claim; it expires by itself and keeps its attempts: {e}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: u32) -> Attempt {
        Attempt {
            compilation_result: format!("c{n}"),
            targets: format!("d{n}"),
        }
    }

    fn created(invocation: &str) -> Record {
        Record::Created {
            invocation: invocation.into(),
            compilation_result: "comp".into(),
            targets: "d".into(),
            count: 1,
            ticket: None,
        }
    }

    #[tokio::test]
    async fn a_claimed_key_is_busy_until_completed_then_replays_the_record() {
        let ledger = Ledger::memory(10);
        let Claim::Acquired(ticket) = ledger.claim("b/n/1", &attempt(1)).await.unwrap() else {
            panic!("first claim must win")
        };
        assert!(matches!(
            ledger.claim("b/n/1", &attempt(1)).await,
            Err(DataformError::InvocationInProgress)
        ));
        ledger.complete(ticket, created("inv")).await;
        assert!(
            matches!(ledger.claim("b/n/1", &attempt(1)).await.unwrap(), Claim::Existing { invocation, .. } if invocation == "inv")
        );
    }

    #[tokio::test]
    async fn a_refused_create_frees_the_key_and_an_ambiguous_one_must_be_searched_first() {
        let ledger = Ledger::memory(10);
        let Claim::Acquired(ticket) = ledger.claim("k", &attempt(1)).await.unwrap() else {
            panic!()
        };
        assert!(ticket.earlier.is_empty());
        ledger.release(ticket, false).await;
        let Claim::Acquired(ticket) = ledger.claim("k", &attempt(2)).await.unwrap() else {
            panic!()
        };
        assert!(
            ticket.earlier.is_empty(),
            "a refused create left nothing to find"
        );
        ledger.release(ticket, true).await;
        let Claim::Acquired(ticket) = ledger.claim("k", &attempt(3)).await.unwrap() else {
            panic!()
        };
        assert_eq!(ticket.earlier, vec![attempt(2)]);
    }

    #[tokio::test]
    async fn the_memory_ledger_keeps_at_most_its_capacity_dropping_the_oldest() {
        let ledger = Ledger::memory(3);
        for key in ["a", "b", "c", "d"] {
            let Claim::Acquired(ticket) = ledger.claim(key, &attempt(1)).await.unwrap() else {
                panic!()
            };
            ledger.complete(ticket, created(key)).await;
        }
        let Ledger::Memory(memory) = &ledger else {
            unreachable!()
        };
        assert_eq!(memory.lock().unwrap().len(), 3);
        assert!(
            ledger.record("a").await.unwrap().is_none(),
            "the oldest went"
        );
        for key in ["b", "c", "d"] {
            assert!(ledger.record(key).await.unwrap().is_some(), "{key}");
        }
    }

    #[test]
    fn target_digests_ignore_order_and_tell_sets_apart() {
        let a = Target::new("p", "s", "a");
        let b = Target::new("p", "s", "b");
        assert_eq!(targets_digest([&a, &b]), targets_digest([&b, &a]));
        assert_ne!(targets_digest([&a]), targets_digest([&a, &b]));
        assert_eq!(targets_digest([&a]).len(), 64);
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
