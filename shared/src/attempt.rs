//! Which run of an upload's chain a request belongs to, and what a re-run redoes.
//!
//! Eventarc starts attempt 1; `sigma replay` starts attempt 2, 3, ... of the same upload.
//! Every service call carries its attempt, so a service can tell a duplicate delivery of
//! the same attempt (answered from its records) from a re-run (which redoes what did not
//! succeed, and adopts what did).

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Far more re-runs than anyone makes by hand; the bound keeps derived names short.
pub const MAX_ATTEMPT: u32 = 999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Attempt(NonZeroU32);

impl Attempt {
    pub const FIRST: Self = Self(NonZeroU32::MIN);

    pub fn new(n: u32) -> Option<Self> {
        NonZeroU32::new(n)
            .filter(|n| n.get() <= MAX_ATTEMPT)
            .map(Self)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }

    pub fn is_first(self) -> bool {
        self == Self::FIRST
    }

    /// Attempts 1 to this one, oldest first.
    pub fn up_to(self) -> impl DoubleEndedIterator<Item = Attempt> {
        (1..=self.get()).map(|n| Self(NonZeroU32::new(n).expect("counted from 1")))
    }
}

impl Default for Attempt {
    fn default() -> Self {
        Self::FIRST
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Attempt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u32>().ok().and_then(Self::new).ok_or_else(|| {
            format!("attempt must be a whole number from 1 to {MAX_ATTEMPT}, got {s:?}")
        })
    }
}

impl<'de> Deserialize<'de> for Attempt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(deserializer)?;
        u32::try_from(n).ok().and_then(Self::new).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "attempt must be a whole number from 1 to {MAX_ATTEMPT}, got {n}"
            ))
        })
    }
}

/// What a re-run covers after a failure: only what did not succeed (and what depends on
/// it), or everything again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rerun {
    #[default]
    Failed,
    All,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_whole_numbers_from_one_and_default_to_the_first() {
        let parse = |s: &str| serde_json::from_str::<Attempt>(s).map(Attempt::get);
        assert_eq!(parse("1").unwrap(), 1);
        assert_eq!(parse("999").unwrap(), 999);
        for bad in ["0", "-1", "1000", "1.5", "\"2\"", "null", "4294967297"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Attempt::default(), Attempt::FIRST);
        let three = Attempt::new(3).unwrap();
        assert_eq!(
            three.up_to().map(Attempt::get).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn a_rerun_is_failed_or_all_and_nothing_else() {
        assert_eq!(
            serde_json::from_str::<Rerun>("\"all\"").unwrap(),
            Rerun::All
        );
        assert_eq!(Rerun::default(), Rerun::Failed);
        assert!(serde_json::from_str::<Rerun>("\"some\"").is_err());
    }
}
