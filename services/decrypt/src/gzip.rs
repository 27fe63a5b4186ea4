//! Checking that decrypted bytes are gzip, as a `Write` adapter in the pipeline.
//!
//! The plaintext passes straight through to the inner writer, byte for byte (the output
//! keeps its gzip bytes exactly). The header check costs nothing; the optional full check
//! inflates the stream on its own thread, because inflating (~200 MB/s) is several times
//! slower than decrypting and would otherwise set the pace of every file. A verdict is only
//! meaningful once the decryption it watched has been authenticated, so it is given by
//! [`GzipCheck::finish`], which the caller invokes after the decryptor succeeded.

use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

use flate2::read::MultiGzDecoder;

/// The fixed start of a gzip member: magic, and deflate as the method (RFC 1952 2.3.1).
const MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
/// Flag bits 5-7 are reserved and must be zero.
const RESERVED_FLAGS: u8 = 0xe0;
const HEADER_LEN: usize = 10;
/// Chunks in flight to the inflating thread; bounds memory when it falls behind.
const INFLATE_QUEUE: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GzipError {
    #[error("the decrypted file is not gzip (no gzip header)")]
    NotGzip,
    #[error("the decrypted file is not a valid gzip stream: {0}")]
    Corrupt(String),
}

pub struct GzipCheck<W> {
    inner: W,
    header: Vec<u8>,
    inflater: Option<Inflater>,
}

struct Inflater {
    chunks: mpsc::SyncSender<Vec<u8>>,
    thread: JoinHandle<io::Result<u64>>,
}

impl<W: Write> GzipCheck<W> {
    /// `full`: also inflate the whole stream, checking every member's CRC-32 and length.
    pub fn new(inner: W, full: bool) -> Self {
        Self {
            inner,
            header: Vec::with_capacity(HEADER_LEN),
            inflater: full.then(Inflater::spawn),
        }
    }

    /// The verdict, and the inner writer to commit if it is good.
    pub fn finish(self) -> Result<W, GzipError> {
        let header_ok = self.header.len() == HEADER_LEN
            && self.header[..3] == MAGIC
            && self.header[3] & RESERVED_FLAGS == 0;
        if let Some(inflater) = self.inflater {
            drop(inflater.chunks);
            let inflated = inflater
                .thread
                .join()
                .expect("the inflating thread does not panic");
            if header_ok {
                inflated.map_err(|e| GzipError::Corrupt(e.to_string()))?;
            }
        }
        if header_ok {
            Ok(self.inner)
        } else {
            Err(GzipError::NotGzip)
        }
    }
}

impl<W: Write> Write for GzipCheck<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = &buf[..n];
        let missing = HEADER_LEN - self.header.len();
        self.header.extend_from_slice(&written[..missing.min(n)]);
        if let Some(inflater) = &self.inflater {
            // A closed channel means the inflater already failed; finish() reports why.
            let _ = inflater.chunks.send(written.to_vec());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Inflater {
    fn spawn() -> Self {
        let (chunks, received) = mpsc::sync_channel(INFLATE_QUEUE);
        let thread = std::thread::spawn(move || {
            let mut decoder = MultiGzDecoder::new(ChannelReader {
                chunks: received,
                current: Vec::new(),
                offset: 0,
            });
            io::copy(&mut decoder, &mut io::sink())
        });
        Self { chunks, thread }
    }
}

/// Reads the chunks the writer side sends, in order, until it hangs up.
struct ChannelReader {
    chunks: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    offset: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.offset == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.offset = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.offset);
        buf[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn check(bytes: &[u8], full: bool, piece: usize) -> Result<Vec<u8>, GzipError> {
        let mut checker = GzipCheck::new(Vec::new(), full);
        for chunk in bytes.chunks(piece) {
            checker.write_all(chunk).unwrap();
        }
        checker.finish()
    }

    #[test]
    fn gzip_passes_through_unchanged_in_any_chunking() {
        let file = gzip(&b"fecha;valor\n".repeat(10_000));
        for piece in [1, 3, 10, 4096] {
            assert_eq!(check(&file, false, piece).unwrap(), file);
            assert_eq!(check(&file, true, piece).unwrap(), file);
        }
    }

    #[test]
    fn concatenated_members_are_valid_gzip() {
        let mut file = gzip(b"first member\n");
        file.extend(gzip(b"second member\n"));
        assert!(check(&file, true, 7).is_ok());
    }

    #[test]
    fn plain_text_and_short_files_are_not_gzip() {
        assert_eq!(
            check(b"fecha;valor\n2024-01-15;1\n", false, 5),
            Err(GzipError::NotGzip)
        );
        assert_eq!(
            check(b"fecha;valor\n2024-01-15;1\n", true, 5),
            Err(GzipError::NotGzip)
        );
        assert_eq!(
            check(&[0x1f, 0x8b, 0x08], false, 1),
            Err(GzipError::NotGzip)
        );
        assert_eq!(check(b"", true, 1), Err(GzipError::NotGzip));
    }

    #[test]
    fn a_damaged_stream_passes_the_header_check_but_fails_the_full_check() {
        let mut file = gzip(&b"x".repeat(100_000));
        let crc_at = file.len() - 8;
        file[crc_at] ^= 0xff;
        assert!(check(&file, false, 100).is_ok());
        assert!(matches!(
            check(&file, true, 100),
            Err(GzipError::Corrupt(_))
        ));
        let truncated = &gzip(&b"y".repeat(100_000))[..50];
        assert!(matches!(
            check(truncated, true, 7),
            Err(GzipError::Corrupt(_))
        ));
    }
}
