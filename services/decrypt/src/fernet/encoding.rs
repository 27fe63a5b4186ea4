//! Base64 exactly as Python's `base64.urlsafe_b64decode` reads it, streaming.
//!
//! "Same acceptance as Python" is decided here: CPython's non-strict `a2b_base64` skips any
//! character outside the alphabet (newlines, spaces, junk), accepts the standard `+` and `/`
//! as well as the URL-safe `-` and `_`, stops at the first complete padding and ignores
//! whatever follows it, and rejects input that ends mid-quantum without padding. Clean runs
//! of URL-safe text, which is all a Fernet token normally is, go through a SIMD decoder; the
//! scalar state machine below handles everything else, and both produce identical bytes.

/// The input is not base64 that Python would decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

const INVALID: u8 = 0xff;

const TABLE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table[b'+' as usize] = 62;
    table[b'-' as usize] = 62;
    table[b'/' as usize] = 63;
    table[b'_' as usize] = 63;
    table
};

/// Incremental decoder; feed it text in chunks of any size.
#[derive(Debug, Default)]
pub struct Decoder {
    quad_pos: u8,
    left: u8,
    pads: u8,
    done: bool,
}

impl Decoder {
    /// Decodes `text`, appending the bytes to `out`.
    pub fn decode(&mut self, text: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while self.quad_pos != 0 && i < text.len() && !self.done {
            self.scalar(text[i], out);
            i += 1;
        }
        if self.done {
            return;
        }
        let whole = (text.len() - i) & !3;
        if whole > 0
            && base64_simd::URL_SAFE_NO_PAD
                .decode_append(&text[i..i + whole], out)
                .is_ok()
        {
            i += whole;
        }
        for &c in &text[i..] {
            if self.done {
                break;
            }
            self.scalar(c, out);
        }
    }

    /// Whether the text so far ends where a token may end.
    pub fn finish(&self) -> Result<(), Malformed> {
        if self.done || self.quad_pos == 0 {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn scalar(&mut self, c: u8, out: &mut Vec<u8>) {
        if c == b'=' {
            if self.quad_pos >= 2 {
                self.pads += 1;
                if self.quad_pos + self.pads >= 4 {
                    self.done = true;
                }
            }
            return;
        }
        let v = TABLE[c as usize];
        if v == INVALID {
            return;
        }
        self.pads = 0;
        match self.quad_pos {
            0 => {
                self.quad_pos = 1;
                self.left = v;
            }
            1 => {
                self.quad_pos = 2;
                out.push((self.left << 2) | (v >> 4));
                self.left = v & 0x0f;
            }
            2 => {
                self.quad_pos = 3;
                out.push((self.left << 4) | (v >> 2));
                self.left = v & 0x03;
            }
            _ => {
                self.quad_pos = 0;
                out.push((self.left << 6) | v);
                self.left = 0;
            }
        }
    }
}

/// Decodes a whole short string (a key) the way Python does.
pub fn decode_all(text: &[u8]) -> Result<Vec<u8>, Malformed> {
    let mut decoder = Decoder::default();
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 3);
    decoder.decode(text, &mut out);
    decoder.finish().map(|()| out)
}

/// Incremental URL-safe encoder with `=` padding at the end, as `urlsafe_b64encode` writes.
#[derive(Debug, Default)]
pub struct Encoder {
    carry: Vec<u8>,
}

impl Encoder {
    pub fn encode(&mut self, mut bytes: &[u8], out: &mut Vec<u8>) {
        if !self.carry.is_empty() {
            let need = 3 - self.carry.len();
            let take = need.min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() < 3 {
                return;
            }
            base64_simd::URL_SAFE.encode_append(&self.carry, out);
            self.carry.clear();
        }
        let whole = bytes.len() / 3 * 3;
        base64_simd::URL_SAFE.encode_append(&bytes[..whole], out);
        self.carry.extend_from_slice(&bytes[whole..]);
    }

    pub fn finish(self, out: &mut Vec<u8>) {
        base64_simd::URL_SAFE.encode_append(&self.carry, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(text: &[u8], piece: usize) -> Result<Vec<u8>, Malformed> {
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        for chunk in text.chunks(piece.max(1)) {
            decoder.decode(chunk, &mut out);
        }
        decoder.finish().map(|()| out)
    }

    #[test]
    fn follows_pythons_lenient_rules() {
        // Each case was checked with base64.urlsafe_b64decode on CPython 3.11.
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"aGVsbG8=", Some(b"hello")),
            (b"aGVsbG8=\n", Some(b"hello")),
            (b"aGVs\nbG8=", Some(b"hello")),
            (b"aGVsbG8", None),
            (b"aGVsbG8==", Some(b"hello")),
            (b"aGVsbG8=garbage", Some(b"hello")),
            (b"aGVsbA==", Some(b"hell")),
            (b"aGVsbA=", None),
            (b"a", None),
            (b"", Some(b"")),
            (b"====", Some(b"")),
            (b"-_-_", Some(&[0xfb, 0xff, 0xbf])),
            (b"+/+/", Some(&[0xfb, 0xff, 0xbf])),
            (b"a*G!V s", Some(b"hel")),
            (b"a*G!V sbG8=", Some(b"hello")),
            (b"aG=VsbG8=", Some(b"hello")),
        ];
        for (text, expected) in cases {
            for piece in 1..=text.len().max(1) {
                assert_eq!(
                    decode_in_pieces(text, piece).ok().as_deref(),
                    *expected,
                    "{:?} in pieces of {piece}",
                    String::from_utf8_lossy(text)
                );
            }
        }
    }

    #[test]
    fn streaming_encoder_matches_one_shot_encoding_at_every_split() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let expected = base64_simd::URL_SAFE.encode_to_string(&data);
        for split in [1, 2, 3, 4, 7, 64, 999] {
            let mut encoder = Encoder::default();
            let mut out = Vec::new();
            for chunk in data.chunks(split) {
                encoder.encode(chunk, &mut out);
            }
            encoder.finish(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "split {split}");
        }
    }
}
