//! Fernet keys and the ordered set of keys a service accepts.

use std::fmt;
use std::str::FromStr;

use super::encoding;

/// A Fernet key: 16 bytes of HMAC-SHA256 signing key, then 16 bytes of AES-128 key.
///
/// Nothing here ever prints key material: `Debug` is redacted and parse errors describe
/// the problem without quoting the input, so a key in an env var cannot leak into a log.
/// Key bytes are wiped when a key is dropped (a rotated-out ring, a refused secret), and
/// comparing keys takes the same time whatever bytes differ.
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Key([u8; 32]);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl Eq for Key {}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key {position} is not url-safe base64 of 32 bytes")]
    Invalid { position: usize },
    #[error("no key given")]
    Empty,
}

impl Key {
    pub fn generate() -> Self {
        Self(rand::random())
    }

    pub(crate) fn signing(&self) -> &[u8] {
        &self.0[..16]
    }

    pub(crate) fn encryption(&self) -> &[u8] {
        &self.0[16..]
    }

    /// The key as Python's `Fernet.generate_key()` writes it.
    pub fn to_base64(&self) -> String {
        base64_simd::URL_SAFE.encode_to_string(self.0)
    }

    fn parse_at(text: &str, position: usize) -> Result<Self, KeyError> {
        encoding::decode_all(text.trim().as_bytes())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .map(Self)
            .ok_or(KeyError::Invalid { position })
    }
}

impl FromStr for Key {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse_at(text, 1)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Keys in the order they are tried, newest first, as Python's `MultiFernet` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRing(Vec<Key>);

impl KeyRing {
    pub fn new(keys: Vec<Key>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            Err(KeyError::Empty)
        } else {
            Ok(Self(keys))
        }
    }

    /// Keys separated by commas or whitespace (a secret may hold one per line).
    pub fn parse(list: &str) -> Result<Self, KeyError> {
        let keys = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
            .enumerate()
            .map(|(i, item)| Key::parse_at(item, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The key new tokens are made with (a ring lists the newest first, as `MultiFernet`).
    pub fn newest(&self) -> &Key {
        &self.0[0]
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn get(&self, index: usize) -> &Key {
        &self.0[index]
    }

    pub(crate) fn keys(&self) -> &[Key] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_KEY: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";

    #[test]
    fn a_generated_key_round_trips_through_its_text_form() {
        let key = Key::generate();
        assert_eq!(key.to_base64().parse::<Key>().unwrap(), key);
        assert_eq!(key.to_base64().len(), 44);
    }

    #[test]
    fn keys_parse_like_python_and_errors_never_quote_them() {
        assert!(SPEC_KEY.parse::<Key>().is_ok());
        assert!(format!("{SPEC_KEY}\n").parse::<Key>().is_ok());
        let short = &SPEC_KEY[..40];
        let error = short.parse::<Key>().unwrap_err().to_string();
        assert!(!error.contains(short), "{error}");
        assert!(format!("{:?}", SPEC_KEY.parse::<Key>().unwrap()).contains("redacted"));
    }

    #[test]
    fn a_ring_keeps_order_and_names_the_bad_position() {
        let other = Key::generate().to_base64();
        let ring = KeyRing::parse(&format!("{SPEC_KEY}, {other}\n")).unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.get(0), &SPEC_KEY.parse::<Key>().unwrap());
        assert_eq!(
            KeyRing::parse(&format!("{SPEC_KEY},nope")).unwrap_err(),
            KeyError::Invalid { position: 2 }
        );
        assert_eq!(KeyRing::parse(" , ").unwrap_err(), KeyError::Empty);
    }
}
