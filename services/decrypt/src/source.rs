//! The encrypted object as a blocking `Read`, for the decryptor's thread.
//!
//! The object is never held: chunks come from the streaming read as the decryptor asks for
//! them. The reader also counts what it reads, because the size Cloud Storage announces is
//! not always there to trust (the emulator says 0), so `MAX_OBJECT_BYTES` is enforced on the
//! bytes themselves; and it logs progress, so a long decryption is visibly alive.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use sigma_shared::ObjectRef;
use sigma_shared::storage::{ReadObjectResponse, StorageError};
use tokio::runtime::Handle;
use tokio_util::io::{StreamReader, SyncIoBridge};

/// A progress line is logged after this many bytes or this much time, whichever first.
const PROGRESS_BYTES: u64 = 64 * 1024 * 1024;
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

type Chunks = std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// One pass over the object. Errors are `io::Error`s wrapping a [`StorageError`], so the
/// caller can answer with what Cloud Storage said.
pub struct SourceReader {
    inner: SyncIoBridge<StreamReader<Chunks, Bytes>>,
    object: ObjectRef,
    limit: Option<u64>,
    pass: usize,
    read: u64,
    started: Instant,
    logged_bytes: u64,
    logged_at: Instant,
}

impl SourceReader {
    /// Wraps an open read; `pass` numbers the passes over the same object for the logs.
    pub fn new(
        runtime: Handle,
        response: ReadObjectResponse,
        object: ObjectRef,
        limit: Option<u64>,
        pass: usize,
    ) -> Self {
        let chunks = futures::stream::unfold(
            (response, object.clone()),
            |(mut response, object)| async move {
                let chunk = response.next().await?;
                let chunk = chunk.map_err(|e| io::Error::other(StorageError::from_gax(&object, e)));
                Some((chunk, (response, object)))
            },
        );
        let now = Instant::now();
        Self {
            inner: SyncIoBridge::new_with_handle(
                StreamReader::new(Box::pin(chunks) as Chunks),
                runtime,
            ),
            object,
            limit,
            pass,
            read: 0,
            started: now,
            logged_bytes: 0,
            logged_at: now,
        }
    }

    fn log_progress(&mut self) {
        if self.read - self.logged_bytes < PROGRESS_BYTES
            && self.logged_at.elapsed() < PROGRESS_INTERVAL
        {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        tracing::info!(
            object = %self.object,
            pass = self.pass,
            bytes_read = self.read,
            mib_per_second = format!("{:.1}", self.read as f64 / (1024.0 * 1024.0) / elapsed.max(1e-3)),
            "decrypting"
        );
        self.logged_bytes = self.read;
        self.logged_at = Instant::now();
    }
}

impl Read for SourceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(limit) = self.limit
            && self.read > limit
        {
            return Err(io::Error::other(StorageError::TooLarge {
                object: self.object.clone(),
                limit,
            }));
        }
        self.log_progress();
        Ok(n)
    }
}
