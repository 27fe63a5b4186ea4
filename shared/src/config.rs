//! Reading configuration from the environment, failing at start-up with the variable named.
//!
//! Cloud Run configures services through env vars; a typo there should stop the revision
//! from becoming ready with a message that says which variable is wrong, not surface as a
//! confusing runtime error on the first request.

use std::fmt::Display;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    pub var: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(var: &str, reason: impl Display) -> Self {
        Self {
            var: var.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The variable's value, or `None` when unset or blank.
pub fn optional(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

pub fn required(var: &str) -> Result<String, ConfigError> {
    optional(var).ok_or_else(|| ConfigError::new(var, "must be set"))
}

/// Parses the variable when set; the error names it and carries the parse failure.
///
/// The raw value is never echoed here: a type whose values are safe to show (a bucket name)
/// says so in its own parse error, one whose values are secret (a key) does not.
pub fn parsed<T>(var: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    optional(var)
        .map(|raw| raw.trim().parse().map_err(|e| ConfigError::new(var, e)))
        .transpose()
}

/// A comma-separated list of parsed values; empty when unset.
pub fn list<T>(var: &str) -> Result<Vec<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    optional(var)
        .map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| item.parse().map_err(|e| ConfigError::new(var, e)))
                .collect()
        })
        .unwrap_or_else(|| Ok(Vec::new()))
}
