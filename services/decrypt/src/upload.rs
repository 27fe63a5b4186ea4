//! A blocking `Write` whose bytes become a Cloud Storage object only when it is finished.
//!
//! The decryptor writes plaintext before it knows whether the token is genuine (the tag is
//! at the end), so the object must stay invisible until the caller commits it. A resumable
//! upload does exactly that: nothing is visible until its last request. The writer feeds the
//! upload through a bounded channel (constant memory whatever the file size); dropping it
//! without [`UploadWriter::finish`] makes the stream end in an error, the client abandons
//! the session, and no object ever appears.
//!
//! Retries are per chunk. The client's retry loop spans the whole upload, so a time limit on
//! it (the shared client's is 60 s) would refuse to retry a transient error that comes after
//! a minute of uploading, and a multi-GiB decryption would fail and start over. Here the
//! client retries without a time limit, resuming the session where Cloud Storage says it
//! stands, and a watchdog gives up only when one chunk has made no progress for
//! [`UploadSettings::chunk_retry_limit`].

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use google_cloud_storage::client::Storage;
use google_cloud_storage::model::Object;
use google_cloud_storage::retry_policy::RetryableErrors;
use google_cloud_storage::streaming_source::StreamingSource;
use sigma_shared::ObjectRef;
use sigma_shared::storage::{Precondition, StorageError, WriteOptions};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes are handed to the upload in pieces of this size: large enough that the channel
/// costs little per byte, small enough that a few in flight stay far below the memory budget.
pub const PIECE_BYTES: usize = 1024 * 1024;
/// Pieces waiting for the upload; with the client's chunk buffer this bounds the memory an
/// upload can hold.
const CHANNEL_PIECES: usize = 4;
/// Cloud Storage takes resumable uploads in multiples of 256 KiB.
pub const CHUNK_GRANULE: usize = 256 * 1024;

/// How the plaintext is uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadSettings {
    /// Bytes per resumable-upload request, a multiple of [`CHUNK_GRANULE`]. The client
    /// holds one chunk in memory until Cloud Storage has it, and sends the next only then,
    /// so larger chunks pay fewer round trips at the cost of their size in memory.
    pub chunk_bytes: usize,
    /// How long one chunk may take, retries included, before the upload is given up.
    pub chunk_retry_limit: Duration,
}

impl UploadSettings {
    pub const DEFAULT_CHUNK_MIB: usize = 32;
    pub const DEFAULT_CHUNK_RETRY_LIMIT: Duration = Duration::from_secs(60);
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            chunk_bytes: Self::DEFAULT_CHUNK_MIB * 1024 * 1024,
            chunk_retry_limit: Self::DEFAULT_CHUNK_RETRY_LIMIT,
        }
    }
}

enum Message {
    Data(Bytes),
    End,
}

#[derive(Debug, thiserror::Error)]
#[error("the upload was abandoned before it was finished")]
pub struct Abandoned;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The upload task is gone without an answer (the runtime is shutting down).
    #[error("the upload stopped before it was committed")]
    Stopped,
    #[error("Cloud Storage accepted no upload chunk for {} s, retries included", .0.as_secs())]
    Stalled(Duration),
}

/// When the upload last asked for data: `Some(t)` while it has been busy with Cloud
/// Storage since `t` (sending a chunk, retrying it, committing), `None` while it waits for
/// the decryptor. The client only asks for more once a chunk is persisted, so a long
/// `Some` is a chunk that is not getting through.
#[derive(Debug)]
struct Progress(Mutex<Option<Instant>>);

impl Progress {
    fn busy_since(&self) -> Option<Instant> {
        *self.0.lock().expect("never poisoned")
    }

    fn set(&self, busy_since: Option<Instant>) {
        *self.0.lock().expect("never poisoned") = busy_since;
    }

    /// Returns once the upload has been busy for `limit` without asking for data.
    async fn stalled(&self, limit: Duration) {
        loop {
            let wait = match self.busy_since() {
                Some(since) if since.elapsed() >= limit => return,
                Some(since) => limit - since.elapsed(),
                None => limit,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// The upload's side of the channel: yields pieces until `End`; a writer gone without
/// `End` is an error, which is what aborts the resumable upload.
struct ChannelSource {
    receiver: mpsc::Receiver<Message>,
    ended: bool,
    progress: Arc<Progress>,
}

impl StreamingSource for ChannelSource {
    type Error = Abandoned;

    async fn next(&mut self) -> Option<Result<Bytes, Self::Error>> {
        if self.ended {
            return None;
        }
        self.progress.set(None);
        let message = self.receiver.recv().await;
        self.progress.set(Some(Instant::now()));
        match message {
            Some(Message::Data(bytes)) => Some(Ok(bytes)),
            Some(Message::End) => {
                self.ended = true;
                None
            }
            None => Some(Err(Abandoned)),
        }
    }
}

/// The resumable upload of `source` to `target`, retried per chunk (see the module doc).
async fn upload(
    client: Storage,
    target: ObjectRef,
    source: ChannelSource,
    precondition: Precondition,
    options: WriteOptions,
    settings: UploadSettings,
) -> Result<Object, UploadError> {
    let progress = source.progress.clone();
    let generation_match = match precondition {
        Precondition::DoesNotExist => 0,
        Precondition::GenerationMatch(generation) => generation.get(),
    };
    let write = client
        .write_object(
            format!("projects/_/buckets/{}", target.bucket),
            target.name.as_str(),
            source,
        )
        .set_if_generation_match(generation_match)
        .set_content_type(options.content_type)
        .set_metadata(options.metadata)
        .with_resumable_upload_buffer_size(settings.chunk_bytes)
        .with_retry_policy(RetryableErrors)
        .send_buffered();
    tokio::select! {
        written = write => written.map_err(|e| StorageError::from_gax(&target, e).into()),
        () = progress.stalled(settings.chunk_retry_limit) => {
            Err(UploadError::Stalled(settings.chunk_retry_limit))
        }
    }
}

pub struct UploadWriter {
    sender: Option<mpsc::Sender<Message>>,
    buffer: BytesMut,
    upload: Option<JoinHandle<Result<Object, UploadError>>>,
    runtime: Handle,
}

impl UploadWriter {
    /// Starts the upload task on `runtime`; the writer itself must then be used from a
    /// blocking thread (it waits for the upload to take its chunks).
    pub fn new(
        runtime: Handle,
        client: Storage,
        target: ObjectRef,
        precondition: Precondition,
        options: WriteOptions,
        settings: UploadSettings,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(CHANNEL_PIECES);
        let source = ChannelSource {
            receiver,
            ended: false,
            progress: Arc::new(Progress(Mutex::new(Some(Instant::now())))),
        };
        let upload = runtime.spawn(upload(
            client,
            target,
            source,
            precondition,
            options,
            settings,
        ));
        Self {
            sender: Some(sender),
            buffer: BytesMut::with_capacity(PIECE_BYTES),
            upload: Some(upload),
            runtime,
        }
    }

    fn send(&mut self, message: Message) -> Result<(), UploadError> {
        let sender = self.sender.as_ref().ok_or(UploadError::Stopped)?;
        if sender.blocking_send(message).is_ok() {
            return Ok(());
        }
        // The upload stopped taking chunks, so it has failed: report why, so the caller
        // answers with the storage error (e.g. a failed precondition) rather than "EOF".
        self.sender = None;
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => Err(UploadError::Stopped),
        }
    }

    fn join(&mut self) -> Result<Object, UploadError> {
        let upload = self.upload.take().ok_or(UploadError::Stopped)?;
        match self.runtime.block_on(upload) {
            Ok(result) => result,
            Err(_) => Err(UploadError::Stopped),
        }
    }

    fn send_buffer(&mut self) -> Result<(), UploadError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = self.buffer.split().freeze();
        self.buffer.reserve(PIECE_BYTES);
        self.send(Message::Data(chunk))
    }

    /// Sends what is buffered, ends the stream and waits for the object to be committed.
    /// Blocking, like `write`.
    pub fn finish(mut self) -> Result<Object, UploadError> {
        self.send_buffer()?;
        self.send(Message::End)?;
        self.join()
    }
}

impl Write for UploadWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = PIECE_BYTES - self.buffer.len();
        let taken = data.len().min(room);
        self.buffer.extend_from_slice(&data[..taken]);
        if self.buffer.len() == PIECE_BYTES {
            self.send_buffer().map_err(io::Error::other)?;
        }
        Ok(taken)
    }

    /// Buffered bytes are sent with the next chunk; nothing is visible before `finish`
    /// anyway, so flushing early would only cost smaller chunks.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
