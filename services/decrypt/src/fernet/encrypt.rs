//! Streaming encryption into a token Python's `Fernet.decrypt` accepts.
//!
//! Operators use it (`sigma encrypt`) to produce test files and to re-encrypt on key
//! rotation without loading files into memory; tests use it to make tokens of any size.

use std::io::{self, Read, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use aes::cipher::{BlockEncryptMut, KeyIvInit};
use hmac::Mac;
use inout::InOutBuf;

use super::encoding::Encoder;
use super::key::Key;
use super::token::{BLOCK, HmacSha256, VERSION};

type CbcEncryptor = cbc::Encryptor<aes::Aes128>;

const PLAINTEXT_CHUNK: usize = 768 * 1024;

/// Encrypts `input` with the current time and a random IV; returns the token's length.
pub fn encrypt<R: Read, W: Write>(key: &Key, input: R, output: W) -> io::Result<u64> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    encrypt_at(key, now, rand::random(), input, output)
}

/// Encrypts with a given timestamp and IV, for reproducible tokens (the spec's vectors).
pub fn encrypt_at<R: Read, W: Write>(
    key: &Key,
    timestamp: u64,
    iv: [u8; 16],
    mut input: R,
    mut output: W,
) -> io::Result<u64> {
    let mut mac = HmacSha256::new_from_slice(key.signing()).expect("HMAC takes any key length");
    let mut cbc = CbcEncryptor::new(key.encryption().into(), &iv.into());
    let mut encoder = Encoder::default();
    let mut text = Vec::new();
    let mut header = Vec::with_capacity(25);
    header.push(VERSION);
    header.extend_from_slice(&timestamp.to_be_bytes());
    header.extend_from_slice(&iv);
    mac.update(&header);
    encoder.encode(&header, &mut text);
    output.write_all(&text)?;

    let mut plaintext = vec![0u8; PLAINTEXT_CHUNK + BLOCK];
    let mut ciphertext = Vec::new();
    let mut filled = 0;
    let mut written = text.len() as u64;
    loop {
        let n = match input.read(&mut plaintext[filled..PLAINTEXT_CHUNK]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        filled += n;
        let end = n == 0;
        if end {
            let pad = BLOCK - filled % BLOCK;
            plaintext[filled..filled + pad].fill(pad as u8);
            filled += pad;
        }
        let whole = filled / BLOCK * BLOCK;
        if whole > 0 && (end || filled == PLAINTEXT_CHUNK) {
            ciphertext.resize(whole, 0);
            let buffer =
                InOutBuf::new(&plaintext[..whole], &mut ciphertext).expect("equal lengths");
            cbc.encrypt_blocks_inout_mut(buffer.into_chunks().0);
            mac.update(&ciphertext);
            text.clear();
            encoder.encode(&ciphertext, &mut text);
            output.write_all(&text)?;
            written += text.len() as u64;
            plaintext.copy_within(whole..filled, 0);
            filled -= whole;
        }
        if end {
            break;
        }
    }
    text.clear();
    encoder.encode(&mac.finalize().into_bytes(), &mut text);
    encoder.finish(&mut text);
    output.write_all(&text)?;
    output.flush()?;
    Ok(written + text.len() as u64)
}
