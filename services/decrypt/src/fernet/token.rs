//! One pass over a token: decode, authenticate, decrypt, all streaming.
//!
//! The tag sits at the end of the token, so nothing decrypted may be trusted until the
//! whole token has been read. The scanner therefore always holds back the last 48 decoded
//! bytes (the final cipher block and the tag): everything before them is authenticated and
//! decrypted as it arrives, and the final block, the only one carrying padding, is released
//! after the tag has been compared in constant time. The caller's output is provisional
//! until the pass returns `Ok`.

use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use aes::cipher::{BlockDecryptMut, KeyIvInit};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use inout::InOutBuf;
use sha2::Sha256;

use super::encoding::Decoder;
use super::key::Key;

pub(crate) type HmacSha256 = Hmac<Sha256>;
type CbcDecryptor = cbc::Decryptor<aes::Aes128>;

pub(crate) const VERSION: u8 = 0x80;
pub(crate) const HEADER: usize = 1 + 8 + 16;
pub(crate) const BLOCK: usize = 16;
pub(crate) const TAG: usize = 32;
const HELD: usize = BLOCK + TAG;
/// Base64 text read per call: large enough to amortise the per-chunk work and the hand-off
/// to the HMAC thread, small enough that memory stays a few MiB whatever the file size.
const TEXT_CHUNK: usize = 1 << 20;
/// Chunks in flight to the HMAC thread.
const HMAC_QUEUE: usize = 4;
/// Python's `_MAX_CLOCK_SKEW`.
const MAX_CLOCK_SKEW: u64 = 60;

/// Why a token was refused; Python raises `InvalidToken` for every one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the file is not a Fernet token: it is not valid base64")]
    Base64,
    #[error("the file is not a Fernet token: it does not start with version byte 0x80")]
    Version,
    #[error("the token is too short to be a Fernet token (truncated?)")]
    TooShort,
    #[error("the token's ciphertext is not a whole number of AES blocks (truncated?)")]
    Length,
    #[error(
        "the token's signature does not verify with any configured key: wrong key, or the file was altered or truncated"
    )]
    Signature,
    #[error("the token's padding is invalid")]
    Padding,
    #[error("the token expired: it was created {age} s ago and the TTL is {ttl} s")]
    Expired { age: u64, ttl: u64 },
    #[error(
        "the token's timestamp is {ahead} s in the future, more than the 60 s of clock skew allowed"
    )]
    FromTheFuture { ahead: u64 },
}

impl TokenError {
    /// The stable code callers match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Expired { .. } | Self::FromTheFuture { .. } => "token_expired",
            _ => "invalid_token",
        }
    }
}

/// What can end a pass early.
#[derive(Debug)]
pub(crate) enum PassError {
    Token(TokenError),
    Read(io::Error),
    Write(io::Error),
}

impl From<TokenError> for PassError {
    fn from(e: TokenError) -> Self {
        Self::Token(e)
    }
}

/// Python's TTL rule, applied only when a TTL is configured: a token older than the TTL,
/// or stamped more than 60 s ahead of the clock, is refused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Freshness {
    pub ttl: Duration,
    pub now: u64,
}

impl Freshness {
    fn check(self, timestamp: u64) -> Result<(), TokenError> {
        let ttl = self.ttl.as_secs();
        if timestamp.saturating_add(ttl) < self.now {
            return Err(TokenError::Expired {
                age: self.now - timestamp,
                ttl,
            });
        }
        if self.now.saturating_add(MAX_CLOCK_SKEW) < timestamp {
            return Err(TokenError::FromTheFuture {
                ahead: timestamp - self.now,
            });
        }
        Ok(())
    }
}

/// The decoded token, released in pieces that are safe to process.
struct Scanner<R> {
    input: R,
    decoder: Decoder,
    text: Vec<u8>,
    pending: Vec<u8>,
    released: u64,
    freshness: Option<Freshness>,
    header_checked: bool,
    timestamp: u64,
    iv: [u8; 16],
}

/// What the scanner hands out: `authenticated` goes to the HMAC, `ciphertext` (a suffix of
/// it: the header is authenticated but not encrypted) to AES.
struct Piece {
    authenticated: Bytes,
    ciphertext: Bytes,
}

/// The end of the token, known only once the input is exhausted.
struct End {
    rest: Option<Piece>,
    last_block: [u8; BLOCK],
    tag: [u8; TAG],
}

impl<R: Read> Scanner<R> {
    fn new(input: R, freshness: Option<Freshness>) -> Self {
        Self {
            input,
            decoder: Decoder::default(),
            text: vec![0; TEXT_CHUNK],
            pending: Vec::new(),
            released: 0,
            freshness,
            header_checked: false,
            timestamp: 0,
            iv: [0; 16],
        }
    }

    /// The next piece, or `None` once the input is exhausted (then call [`Self::end`]).
    fn next_piece(&mut self) -> Result<Option<Piece>, PassError> {
        loop {
            let n = match self.input.read(&mut self.text) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(PassError::Read(e)),
            };
            if self.pending.capacity() - self.pending.len() < n {
                self.pending.reserve(n / 4 * 3 + 3);
            }
            self.decoder.decode(&self.text[..n], &mut self.pending);
            self.check_header()?;
            if let Some(piece) = self.release() {
                return Ok(Some(piece));
            }
        }
    }

    /// Checks what Python checks before the signature, as soon as the bytes are there.
    fn check_header(&mut self) -> Result<(), TokenError> {
        if self.header_checked || self.released > 0 {
            return Ok(());
        }
        if let Some(&version) = self.pending.first()
            && version != VERSION
        {
            return Err(TokenError::Version);
        }
        if self.pending.len() >= 9 {
            self.timestamp = u64::from_be_bytes(self.pending[1..9].try_into().expect("8 bytes"));
            if let Some(freshness) = self.freshness {
                freshness.check(self.timestamp)?;
            }
        }
        if self.pending.len() >= HEADER {
            self.iv.copy_from_slice(&self.pending[9..HEADER]);
            self.header_checked = true;
        }
        Ok(())
    }

    /// Splits off the longest prefix that keeps the last 48 bytes back and ends on a block.
    fn release(&mut self) -> Option<Piece> {
        let skip = if self.released == 0 { HEADER } else { 0 };
        let available = self.pending.len().checked_sub(HELD + skip)?;
        let blocks = available / BLOCK * BLOCK;
        if blocks == 0 {
            return None;
        }
        let cut = skip + blocks;
        let mut next = Vec::with_capacity(self.pending.capacity().max(TEXT_CHUNK));
        next.extend_from_slice(&self.pending[cut..]);
        let mut current = std::mem::replace(&mut self.pending, next);
        current.truncate(cut);
        self.released += cut as u64;
        let authenticated = Bytes::from(current);
        Some(Piece {
            ciphertext: authenticated.slice(skip..),
            authenticated,
        })
    }

    fn end(mut self) -> Result<End, TokenError> {
        self.decoder.finish().map_err(|_| TokenError::Base64)?;
        self.check_header()?;
        let total = self.released + self.pending.len() as u64;
        if total == 0 {
            return Err(TokenError::Version);
        }
        if total < (HEADER + BLOCK + TAG) as u64 {
            return Err(TokenError::TooShort);
        }
        let len = self.pending.len();
        let skip = if self.released == 0 { HEADER } else { 0 };
        if !(len - skip - TAG).is_multiple_of(BLOCK) {
            return Err(TokenError::Length);
        }
        let mut tag = [0; TAG];
        tag.copy_from_slice(&self.pending[len - TAG..]);
        let mut last_block = [0; BLOCK];
        last_block.copy_from_slice(&self.pending[len - HELD..len - TAG]);
        self.pending.truncate(len - HELD);
        let rest = (!self.pending.is_empty()).then(|| {
            let authenticated = Bytes::from(self.pending);
            Piece {
                ciphertext: authenticated.slice(skip..),
                authenticated,
            }
        });
        Ok(End {
            rest,
            last_block,
            tag,
        })
    }
}

/// What a successful decrypting pass reports.
pub(crate) struct PassReport {
    pub plaintext_len: u64,
    pub timestamp: u64,
}

/// Authenticates and decrypts the token with `key`, writing plaintext to `output` as it
/// goes and the final, padded block only after the tag verified.
///
/// The HMAC runs on its own thread: SHA-256 is the slowest step, and overlapping it with
/// decoding and AES roughly doubles throughput on two cores.
pub(crate) fn decrypt<R: Read, W: Write>(
    key: &Key,
    input: R,
    freshness: Option<Freshness>,
    output: &mut W,
) -> Result<PassReport, PassError> {
    let mut scanner = Scanner::new(input, freshness);
    let (to_hmac, from_scanner) = mpsc::sync_channel::<Bytes>(HMAC_QUEUE);
    let signing = key.signing().to_vec();
    std::thread::scope(|scope| {
        let hmac = scope.spawn(move || {
            let mut mac = HmacSha256::new_from_slice(&signing).expect("HMAC takes any key length");
            for piece in from_scanner {
                mac.update(&piece);
            }
            mac
        });
        let mut plaintext = Vec::new();
        let mut cbc: Option<CbcDecryptor> = None;
        let mut written = 0u64;
        let mut process = |piece: Piece, scanner_iv: [u8; 16]| -> Result<(), PassError> {
            // A closed channel means the HMAC thread died; its panic surfaces at join.
            let _ = to_hmac.send(piece.authenticated);
            let cbc = cbc.get_or_insert_with(|| {
                CbcDecryptor::new(key.encryption().into(), &scanner_iv.into())
            });
            decrypt_blocks(cbc, &piece.ciphertext, &mut plaintext);
            output.write_all(&plaintext).map_err(PassError::Write)?;
            written += plaintext.len() as u64;
            Ok(())
        };
        while let Some(piece) = scanner.next_piece()? {
            process(piece, scanner.iv)?;
        }
        let (iv, timestamp) = (scanner.iv, scanner.timestamp);
        let end = scanner.end()?;
        if let Some(rest) = end.rest {
            process(rest, iv)?;
        }
        let mut cbc = cbc.unwrap_or_else(|| CbcDecryptor::new(key.encryption().into(), &iv.into()));
        drop(to_hmac);
        let mut mac = hmac.join().expect("the HMAC thread does not panic");
        mac.update(&end.last_block);
        mac.verify_slice(&end.tag)
            .map_err(|_| TokenError::Signature)?;
        let mut last = [0u8; BLOCK];
        decrypt_blocks(&mut cbc, &end.last_block, &mut plaintext);
        last.copy_from_slice(&plaintext);
        let kept = unpad(&last)?;
        output.write_all(kept).map_err(PassError::Write)?;
        Ok(PassReport {
            plaintext_len: written + kept.len() as u64,
            timestamp,
        })
    })
}

/// Finds the first of `keys` whose HMAC matches, reading the token once and decrypting
/// nothing: the rare path, taken only when the first key failed.
pub(crate) fn identify<R: Read>(
    keys: &[Key],
    input: R,
    freshness: Option<Freshness>,
) -> Result<Option<usize>, PassError> {
    let mut scanner = Scanner::new(input, freshness);
    let mut macs: Vec<HmacSha256> = keys
        .iter()
        .map(|k| HmacSha256::new_from_slice(k.signing()).expect("HMAC takes any key length"))
        .collect();
    let mut update = |bytes: &[u8]| macs.iter_mut().for_each(|m| m.update(bytes));
    while let Some(piece) = scanner.next_piece()? {
        update(&piece.authenticated);
    }
    let end = scanner.end()?;
    if let Some(rest) = &end.rest {
        update(&rest.authenticated);
    }
    update(&end.last_block);
    Ok(macs
        .into_iter()
        .position(|mac| mac.verify_slice(&end.tag).is_ok()))
}

fn decrypt_blocks(cbc: &mut CbcDecryptor, ciphertext: &[u8], plaintext: &mut Vec<u8>) {
    plaintext.resize(ciphertext.len(), 0);
    let buffer = InOutBuf::new(ciphertext, plaintext).expect("equal lengths");
    let (blocks, tail) = buffer.into_chunks();
    debug_assert!(tail.is_empty(), "the scanner releases whole blocks");
    cbc.decrypt_blocks_inout_mut(blocks);
}

/// PKCS#7, checked only after authentication, so its timing reveals nothing.
fn unpad(block: &[u8; BLOCK]) -> Result<&[u8], TokenError> {
    let n = block[BLOCK - 1] as usize;
    if n == 0 || n > BLOCK || block[BLOCK - n..].iter().any(|&b| b as usize != n) {
        return Err(TokenError::Padding);
    }
    Ok(&block[..BLOCK - n])
}
