//! Fernet, streaming, with exactly the acceptance of Python's `cryptography.fernet`.
//!
//! Files arrive as one Fernet token each, as `Fernet(key).encrypt(gzip_bytes)` writes them.
//! Python and the `fernet` crate hold the whole token and its plaintext in memory (about
//! 6x the file for Python); this reads the token as a stream and keeps a few MiB whatever the
//! file size, while releasing nothing that has not been authenticated.

mod encoding;
mod encrypt;
mod key;
mod token;

use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use encrypt::{encrypt, encrypt_at};
pub use key::{Key, KeyError, KeyRing};
pub use token::TokenError;

use token::{Freshness, PassError};

/// Decrypts tokens with a ring of keys and an optional TTL.
#[derive(Debug, Clone)]
pub struct Decryptor {
    keys: KeyRing,
    ttl: Option<Duration>,
    clock: Option<u64>,
}

/// A verified decryption whose output the caller has yet to commit.
#[derive(Debug)]
pub struct Decrypted<W> {
    pub output: W,
    pub plaintext_len: u64,
    /// Which key of the ring opened the token (0: the newest).
    pub key_index: usize,
    /// The token's creation time, seconds since the epoch.
    pub timestamp: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("reading the token failed: {0}")]
    Read(#[source] io::Error),
    #[error("writing the plaintext failed: {0}")]
    Write(#[source] io::Error),
}

impl From<PassError> for DecryptError {
    fn from(e: PassError) -> Self {
        match e {
            PassError::Token(e) => Self::Token(e),
            PassError::Read(e) => Self::Read(e),
            PassError::Write(e) => Self::Write(e),
        }
    }
}

impl Decryptor {
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            ttl: None,
            clock: None,
        }
    }

    /// Refuse tokens older than `ttl`, with Python's rules (see [`TokenError::Expired`]).
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// Judges token age against this time instead of the system clock.
    pub fn with_clock(mut self, now: u64) -> Self {
        self.clock = Some(now);
        self
    }

    fn freshness(&self) -> Option<Freshness> {
        self.ttl.map(|ttl| Freshness {
            ttl,
            now: self.clock.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            }),
        })
    }

    /// Decrypts one token. `open` is called once per pass over the token and `create` once
    /// per decryption attempt; the output of a failed attempt is dropped, never returned, so
    /// `W`'s `Drop` must discard what it received. On `Ok`, the output holds exactly the
    /// verified plaintext and is returned unfinished: committing it is the caller's move.
    ///
    /// The newest key is tried first, in the same pass that decrypts, so the common case
    /// costs one pass. Only if its tag does not match and other keys exist does a second,
    /// HMAC-only pass find the key, and a third decrypt with it.
    pub fn decrypt<R, W>(
        &self,
        mut open: impl FnMut() -> io::Result<R>,
        mut create: impl FnMut() -> io::Result<W>,
    ) -> Result<Decrypted<W>, DecryptError>
    where
        R: Read,
        W: Write,
    {
        match self.attempt(0, &mut open, &mut create) {
            Err(DecryptError::Token(TokenError::Signature)) if self.keys.len() > 1 => {
                let input = open().map_err(DecryptError::Read)?;
                let others = &self.keys.keys()[1..];
                match token::identify(others, input, self.freshness())? {
                    Some(offset) => self.attempt(1 + offset, &mut open, &mut create),
                    None => Err(TokenError::Signature.into()),
                }
            }
            result => result,
        }
    }

    fn attempt<R: Read, W: Write>(
        &self,
        index: usize,
        open: &mut impl FnMut() -> io::Result<R>,
        create: &mut impl FnMut() -> io::Result<W>,
    ) -> Result<Decrypted<W>, DecryptError> {
        let input = open().map_err(DecryptError::Read)?;
        let mut output = create().map_err(DecryptError::Write)?;
        let report = token::decrypt(self.keys.get(index), input, self.freshness(), &mut output)?;
        Ok(Decrypted {
            output,
            plaintext_len: report.plaintext_len,
            key_index: index,
            timestamp: report.timestamp,
        })
    }
}
