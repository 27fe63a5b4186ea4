//! One decryption, from the source upload to the committed output object.
//!
//! The order is what makes the guarantees: the source generation is fixed first (every pass
//! reads that exact upload), the output is checked for an earlier result before any byte is
//! decrypted, the plaintext streams into an upload that stays invisible until the tag and
//! padding have been verified and the gzip check passed, and the commit is conditional on
//! the output generation seen at the start.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use google_cloud_storage::client::Storage;
use google_cloud_storage::model_ext::ObjectHighlights;
use sigma_shared::Generation;
use sigma_shared::storage::{self, Precondition, StorageError, WriteOptions};
use tokio::runtime::Handle;

use crate::error::Error;
use crate::fernet::{DecryptError, Decryptor, KeyRing, TokenError};
use crate::gzip::GzipCheck;
use crate::idempotency::{self, Decision, OutputLocks};
use crate::keys::LiveKeys;
use crate::request::{DecryptResponse, Job, Source};
use crate::source::SourceReader;
use crate::upload::{UploadError, UploadSettings, UploadWriter};

/// Output objects are gzip files, served as such (never `Content-Encoding: gzip`, which
/// would make clients inflate them on download).
pub const CONTENT_TYPE: &str = "application/gzip";

enum Next {
    /// Nothing to write: the answer is already known.
    Answer(DecryptResponse),
    Write(Precondition),
}

pub struct Pipeline {
    pub storage: Storage,
    pub keys: Arc<LiveKeys>,
    /// Python's `ttl`, for every decryption.
    pub ttl: Option<Duration>,
    pub max_object_bytes: Option<u64>,
    pub verify_gzip: bool,
    pub upload: UploadSettings,
    pub locks: OutputLocks,
}

/// How a run ended, and the source generation it read (the pinned one, or the one Cloud
/// Storage served; `None` when the object could not be read at all), which events report
/// whatever the outcome.
pub struct Outcome {
    pub generation: Option<Generation>,
    pub result: Result<DecryptResponse, Error>,
}

impl Pipeline {
    pub async fn run(self: Arc<Self>, job: Job) -> Outcome {
        let mut generation = job.generation;
        let result = self.run_resolving(&job, &mut generation).await;
        Outcome { generation, result }
    }

    async fn run_resolving(
        self: Arc<Self>,
        job: &Job,
        resolved: &mut Option<Generation>,
    ) -> Result<DecryptResponse, Error> {
        let _writing = self.locks.lock(&job.output).await;
        let source = &job.source;
        let reading = storage::open(&self.storage, source, job.generation).await?;
        let highlights = reading.object();
        let generation = match job.generation {
            Some(pinned) => pinned,
            None => Generation::new(highlights.generation).map_err(|_| Error::Interrupted {
                object: source.clone(),
                reason: "Cloud Storage reported no generation for it".into(),
            })?,
        };
        *resolved = Some(generation);
        tracing::Span::current().record("generation", generation.get());
        if let Some(limit) = self.max_object_bytes
            && u64::try_from(highlights.size).is_ok_and(|size| size > limit)
        {
            return Err(StorageError::TooLarge {
                object: source.clone(),
                limit,
            }
            .into());
        }
        let existing = storage::stat(&self.storage, &job.output).await?;
        let precondition = match self.decide(existing, job, generation)? {
            Next::Answer(done) => return Ok(done),
            Next::Write(precondition) => precondition,
        };
        let keys = self.keys.current();
        let committed = self
            .clone()
            .decrypt(
                job.clone(),
                generation,
                Some(reading),
                precondition,
                keys.clone(),
            )
            .await;
        // Keys rotate: a token no loaded key verifies may be from a key added since start-up.
        let committed = match committed {
            Err(Error::Token {
                reason: TokenError::Signature,
                ..
            }) if self.keys.renew_after(&keys).await => {
                tracing::info!("trying again with the renewed keys");
                let renewed = self.keys.current();
                self.clone()
                    .decrypt(job.clone(), generation, None, precondition, renewed)
                    .await
            }
            other => other,
        };
        match committed {
            Err(Error::Storage(StorageError::PreconditionFailed(_))) => {
                // Another request committed first; if it wrote this very upload, the work
                // is done, otherwise the caller should ask again and get a fresh decision.
                let existing = storage::stat(&self.storage, &job.output).await?;
                match self.decide(existing, job, generation)? {
                    Next::Answer(done) => Ok(done),
                    Next::Write(_) => Err(Error::WriteConflict(job.output.clone())),
                }
            }
            other => other,
        }
    }

    fn decide(
        &self,
        existing: Option<ObjectHighlights>,
        job: &Job,
        generation: Generation,
    ) -> Result<Next, Error> {
        match idempotency::decide(existing, &job.source, generation) {
            Decision::Done(existing) => Ok(Next::Answer(respond(
                job,
                generation,
                existing.generation,
                existing.size,
                true,
            )?)),
            Decision::Superseded(newer) => Err(Error::Superseded {
                output: job.output.clone(),
                source_object: job.source.clone(),
                newer,
                requested: generation,
            }),
            Decision::OtherBucket(bucket) => Err(Error::OutputConflict {
                output: job.output.clone(),
                existing_bucket: bucket,
                source_object: job.source.clone(),
            }),
            Decision::Write(precondition) => Ok(Next::Write(precondition)),
        }
    }

    async fn decrypt(
        self: Arc<Self>,
        job: Job,
        generation: Generation,
        first_read: Option<storage::ReadObjectResponse>,
        precondition: Precondition,
        keys: KeyRing,
    ) -> Result<DecryptResponse, Error> {
        let decryptor = Decryptor::new(keys).with_ttl(self.ttl);
        let runtime = Handle::current();
        let span = tracing::Span::current();
        let options = WriteOptions {
            content_type: CONTENT_TYPE.to_owned(),
            metadata: idempotency::source_metadata(&job.source, generation),
        };
        let blocking_job = job.clone();
        let pipeline = self.clone();
        let object = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let job = blocking_job;
            let mut first_read = first_read;
            let mut pass = 0;
            let open = || {
                pass += 1;
                let response = match first_read.take() {
                    Some(response) => response,
                    None => runtime
                        .block_on(storage::open(
                            &pipeline.storage,
                            &job.source,
                            Some(generation),
                        ))
                        .map_err(io::Error::other)?,
                };
                Ok(SourceReader::new(
                    runtime.clone(),
                    response,
                    job.source.clone(),
                    pipeline.max_object_bytes,
                    pass,
                ))
            };
            let create = || {
                let upload = UploadWriter::new(
                    runtime.clone(),
                    pipeline.storage.clone(),
                    job.output.clone(),
                    precondition,
                    options.clone(),
                    pipeline.upload,
                );
                Ok(GzipCheck::new(upload, pipeline.verify_gzip))
            };
            let decrypted = decryptor
                .decrypt(open, create)
                .map_err(|e| from_decrypt_error(&job, e))?;
            tracing::info!(
                key_index = decrypted.key_index,
                token_timestamp = decrypted.timestamp,
                plaintext_bytes = decrypted.plaintext_len,
                "token verified"
            );
            let upload = decrypted
                .output
                .finish()
                .map_err(|e| Error::from_gzip(&job.source, e))?;
            upload
                .finish()
                .map_err(|e| Error::from_upload(&job.output, e))
        })
        .await
        .map_err(|_| Error::Internal(job.source.clone()))??;
        respond(&job, generation, object.generation, object.size, false)
    }
}

fn respond(
    job: &Job,
    source_generation: Generation,
    generation: i64,
    size: i64,
    skipped: bool,
) -> Result<DecryptResponse, Error> {
    let generation = Generation::new(generation).map_err(|_| Error::Interrupted {
        object: job.output.clone(),
        reason: "Cloud Storage reported no generation for it".into(),
    })?;
    tracing::Span::current().record("bytes", size);
    Ok(DecryptResponse {
        bucket: job.output.bucket.clone(),
        name: job.output.name.clone(),
        size: u64::try_from(size).unwrap_or_default(),
        generation,
        source: Source {
            bucket: job.source.bucket.clone(),
            name: job.source.name.clone(),
            generation: source_generation,
        },
        skipped,
    })
}

/// Reads and writes fail with `io::Error`s that carry this crate's typed errors; unwrapped
/// here so the answer says what Cloud Storage said.
fn from_decrypt_error(job: &Job, error: DecryptError) -> Error {
    let interrupted = |reason: String| Error::Interrupted {
        object: job.source.clone(),
        reason,
    };
    match error {
        DecryptError::Token(reason) => Error::Token {
            object: job.source.clone(),
            reason,
        },
        DecryptError::Read(e) => match e.downcast::<StorageError>() {
            Ok(storage) => Error::Storage(storage),
            Err(e) => interrupted(format!("reading failed: {e}")),
        },
        DecryptError::Write(e) => match e.downcast::<UploadError>() {
            Ok(upload) => Error::from_upload(&job.output, upload),
            Err(e) => interrupted(format!("writing failed: {e}")),
        },
    }
}
