//! A blocking `Write` whose bytes become a Cloud Storage object only when it is finished.
//!
//! The decryptor writes plaintext before it knows whether the token is genuine (the tag is
//! at the end), so the object must stay invisible until the caller commits it. A resumable
//! upload does exactly that: nothing is visible until its last request. The writer feeds the
//! upload through a bounded channel (constant memory whatever the file size); dropping it
//! without [`UploadWriter::finish`] makes the stream end in an error, the client abandons
//! the session, and no object ever appears.

use std::io::{self, Write};

use bytes::{Bytes, BytesMut};
use google_cloud_storage::client::Storage;
use google_cloud_storage::model::Object;
use google_cloud_storage::streaming_source::StreamingSource;
use sigma_shared::ObjectRef;
use sigma_shared::storage::{self, Precondition, StorageError, WriteOptions};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Bytes are handed to the upload in pieces of this size: large enough that the channel
/// costs little per byte, small enough that a few in flight stay far below the memory budget.
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks waiting for the upload; with the client's own 8 MiB buffer this bounds the
/// memory an upload can hold.
const CHANNEL_CHUNKS: usize = 4;

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
}

/// The upload's side of the channel: yields chunks until `End`; a writer gone without
/// `End` is an error, which is what aborts the resumable upload.
struct ChannelSource {
    receiver: mpsc::Receiver<Message>,
    ended: bool,
}

impl StreamingSource for ChannelSource {
    type Error = Abandoned;

    async fn next(&mut self) -> Option<Result<Bytes, Self::Error>> {
        if self.ended {
            return None;
        }
        match self.receiver.recv().await {
            Some(Message::Data(bytes)) => Some(Ok(bytes)),
            Some(Message::End) => {
                self.ended = true;
                None
            }
            None => Some(Err(Abandoned)),
        }
    }
}

pub struct UploadWriter {
    sender: Option<mpsc::Sender<Message>>,
    buffer: BytesMut,
    upload: Option<JoinHandle<storage::Result<Object>>>,
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
    ) -> Self {
        let (sender, receiver) = mpsc::channel(CHANNEL_CHUNKS);
        let source = ChannelSource {
            receiver,
            ended: false,
        };
        let upload = runtime.spawn(async move {
            storage::write(&client, &target, source, precondition, options).await
        });
        Self {
            sender: Some(sender),
            buffer: BytesMut::with_capacity(CHUNK_BYTES),
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
            Ok(result) => result.map_err(UploadError::Storage),
            Err(_) => Err(UploadError::Stopped),
        }
    }

    fn send_buffer(&mut self) -> Result<(), UploadError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = self.buffer.split().freeze();
        self.buffer.reserve(CHUNK_BYTES);
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
        let room = CHUNK_BYTES - self.buffer.len();
        let taken = data.len().min(room);
        self.buffer.extend_from_slice(&data[..taken]);
        if self.buffer.len() == CHUNK_BYTES {
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
