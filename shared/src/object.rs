//! Names of Cloud Storage objects, parsed once at the edge.
//!
//! Everything past a handler's first line works with these types, so no inner function has
//! to wonder whether a name could climb out of its prefix or smuggle a control character
//! into a log line.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("bucket name {0:?} is not a valid Cloud Storage bucket name")]
    Bucket(String),
    #[error("object name is empty")]
    EmptyObject,
    #[error("object name is longer than 1024 bytes")]
    ObjectTooLong,
    #[error("object name {0:?} contains \"..\"")]
    DotDot(String),
    #[error("object name contains a control character")]
    ControlCharacter,
    #[error("object name {0:?} starts with \"/\"")]
    LeadingSlash(String),
    #[error("generation {0:?} is not a positive integer")]
    Generation(String),
    #[error("{0:?} is not a gs://bucket/object URI")]
    Uri(String),
}

/// A bucket name as Cloud Storage accepts it: 3-63 characters (222 with dots) of lower-case
/// letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketName(String);

impl BucketName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BucketName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let max = if s.contains('.') { 222 } else { 63 };
        let edge_ok =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let valid = (3..=max).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
            && edge_ok(s.chars().next())
            && edge_ok(s.chars().last())
            && !s.starts_with("goog")
            && !s.contains("..");
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Bucket(s.to_owned()))
        }
    }
}

/// An object name that is safe to derive other names from: valid UTF-8 (by construction),
/// 1-1024 bytes, no control characters, no `..`, no leading `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName(String);

impl ObjectName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without `suffix`, if it ends with it and something is left.
    pub fn strip_suffix(&self, suffix: &str) -> Option<ObjectName> {
        self.0
            .strip_suffix(suffix)
            .filter(|rest| !rest.is_empty() && !rest.ends_with('/'))
            .map(|rest| ObjectName(rest.to_owned()))
    }

    /// The last path segment: `data/20240115/lkp_fechas.gz` -> `lkp_fechas.gz`.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl FromStr for ObjectName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            Err(NameError::EmptyObject)
        } else if s.len() > 1024 {
            Err(NameError::ObjectTooLong)
        } else if s.chars().any(char::is_control) {
            Err(NameError::ControlCharacter)
        } else if s.contains("..") {
            Err(NameError::DotDot(s.to_owned()))
        } else if s.starts_with('/') {
            Err(NameError::LeadingSlash(s.to_owned()))
        } else {
            Ok(Self(s.to_owned()))
        }
    }
}

/// A generation number. Cloud Storage events carry it as a decimal string (it overflows
/// JavaScript numbers), people type it as a number: both are accepted, it is written back
/// as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Generation(i64);

impl Generation {
    pub fn new(value: i64) -> Result<Self, NameError> {
        if value > 0 {
            Ok(Self(value))
        } else {
            Err(NameError::Generation(value.to_string()))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl FromStr for Generation {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<i64>()
            .ok()
            .filter(|g| *g > 0)
            .map(Self)
            .ok_or_else(|| NameError::Generation(s.to_owned()))
    }
}

/// `bucket` + `name`: the address of an object, without a generation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: BucketName,
    pub name: ObjectName,
}

impl ObjectRef {
    pub fn new(bucket: BucketName, name: ObjectName) -> Self {
        Self { bucket, name }
    }

    pub fn uri(&self) -> GsUri {
        GsUri(self.clone())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gs://{}/{}", self.bucket, self.name)
    }
}

/// `gs://bucket/object`, as configuration and Dataflow parameters write object addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GsUri(pub ObjectRef);

impl FromStr for GsUri {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || NameError::Uri(s.to_owned());
        let rest = s.strip_prefix("gs://").ok_or_else(bad)?;
        let (bucket, name) = rest.split_once('/').ok_or_else(bad)?;
        Ok(Self(ObjectRef::new(bucket.parse()?, name.parse()?)))
    }
}

impl fmt::Display for GsUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! string_newtype_impls {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

string_newtype_impls!(BucketName, ObjectName);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Generation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Generation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Generation::new(n),
            Raw::Text(s) => s.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_that_could_escape_or_corrupt_logs_are_rejected() {
        for bad in [
            "",
            "../etc/passwd",
            "data/../x",
            "/abs",
            "a\nb",
            "a\u{7}b",
            "a\u{85}b",
        ] {
            assert!(bad.parse::<ObjectName>().is_err(), "{bad:?} accepted");
        }
        assert!("x".repeat(1025).parse::<ObjectName>().is_err());
        assert!(
            "data/20240115/lkp_fechas.gz.encrypted"
                .parse::<ObjectName>()
                .is_ok()
        );
        assert!("datos/ñandú €.gz".parse::<ObjectName>().is_ok());
    }

    #[test]
    fn bucket_names_follow_cloud_storage_rules() {
        for good in ["company_trigger_bucket", "abc", "a.b-c_d", "b1"] {
            let ok = good.len() >= 3;
            assert_eq!(good.parse::<BucketName>().is_ok(), ok, "{good}");
        }
        for bad in [
            "AB",
            "Upper",
            "-lead",
            "trail-",
            "goog-bucket",
            "a..b",
            "sp ace",
            &"a".repeat(64),
        ] {
            assert!(bad.parse::<BucketName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn generation_accepts_strings_and_numbers_and_writes_strings() {
        let g: Generation = serde_json::from_str("\"1705312800123456\"").unwrap();
        assert_eq!(g.get(), 1705312800123456);
        let g: Generation = serde_json::from_str("42").unwrap();
        assert_eq!(serde_json::to_string(&g).unwrap(), "\"42\"");
        assert!(serde_json::from_str::<Generation>("0").is_err());
        assert!(serde_json::from_str::<Generation>("\"-3\"").is_err());
        assert!(serde_json::from_str::<Generation>("\"12abc\"").is_err());
    }

    #[test]
    fn strip_suffix_never_yields_an_empty_or_directory_name() {
        let n: ObjectName = "data/x.gz.encrypted".parse().unwrap();
        assert_eq!(n.strip_suffix(".encrypted").unwrap().as_str(), "data/x.gz");
        let dir: ObjectName = "data/.encrypted".parse().unwrap();
        assert!(dir.strip_suffix(".encrypted").is_none());
        assert_eq!(n.file_name(), "x.gz.encrypted");
    }

    #[test]
    fn gs_uris_round_trip() {
        let u: GsUri = "gs://bkt/configs/a_2024-01-15.config".parse().unwrap();
        assert_eq!(u.0.bucket.as_str(), "bkt");
        assert_eq!(u.to_string(), "gs://bkt/configs/a_2024-01-15.config");
        assert!("s3://bkt/x".parse::<GsUri>().is_err());
        assert!("gs://bkt".parse::<GsUri>().is_err());
    }
}
