//! Dataflow's rules for job labels, applied to the values a job will actually carry.
//!
//! Label values come from registry templates (`{job_name}`, `{project}`...), so a template
//! that looks harmless can expand to something Dataflow refuses: a job name longer than 63
//! characters, a domain-scoped project with `:` and `.`. Every launch of such an entry would
//! then fail with Dataflow's 400, so the expanded labels are checked at start-up (at their
//! longest) and again before each launch, with the label named.

use std::collections::BTreeMap;

/// Google's limits: at most 64 labels per resource, keys and values at most 63 characters.
pub const MAX_LABELS: usize = 64;
pub const MAX_LENGTH: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error(
        "label key {0:?} must be 1-{MAX_LENGTH} lower-case letters, digits, '_' or '-', starting with a letter"
    )]
    Key(String),
    #[error(
        "label {key} = {value:?} must be at most {MAX_LENGTH} lower-case letters, digits, '_' or '-'"
    )]
    Value { key: String, value: String },
    #[error("{0} labels, more than Dataflow's {MAX_LABELS}")]
    TooMany(usize),
}

/// Lower-case letters (international ones included), digits, `_` and `-`.
fn allowed(c: char) -> bool {
    c.is_ascii_lowercase()
        || c.is_ascii_digit()
        || c == '_'
        || c == '-'
        || (!c.is_ascii() && c.is_alphanumeric() && !c.is_uppercase())
}

fn letter(c: char) -> bool {
    c.is_ascii_lowercase() || (!c.is_ascii() && c.is_alphabetic() && !c.is_uppercase())
}

pub fn check_key(key: &str) -> Result<(), LabelError> {
    let valid =
        key.starts_with(letter) && key.chars().count() <= MAX_LENGTH && key.chars().all(allowed);
    if valid {
        Ok(())
    } else {
        Err(LabelError::Key(key.to_owned()))
    }
}

/// Values may be empty.
pub fn check_value(key: &str, value: &str) -> Result<(), LabelError> {
    if value.chars().count() <= MAX_LENGTH && value.chars().all(allowed) {
        Ok(())
    } else {
        Err(LabelError::Value {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

pub fn check(labels: &BTreeMap<String, String>) -> Result<(), LabelError> {
    if labels.len() > MAX_LABELS {
        return Err(LabelError::TooMany(labels.len()));
    }
    labels.iter().try_for_each(|(key, value)| {
        check_key(key)?;
        check_value(key, value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(key: &str, value: &str) -> Result<(), LabelError> {
        check(&BTreeMap::from([(key.to_owned(), value.to_owned())]))
    }

    #[test]
    fn googles_label_rules_with_international_letters() {
        for (key, value) in [
            ("app", "sigma"),
            ("entity", "poliza_detalle"),
            ("lote", "2024-01-15"),
            ("empty", ""),
            ("año", "ñandú"),
            (&"k".repeat(63), &"v".repeat(63)),
        ] {
            assert_eq!(one(key, value), Ok(()), "{key}={value}");
        }
        for (key, value) in [
            ("App", "x"),
            ("1app", "x"),
            ("_app", "x"),
            ("", "x"),
            (&"k".repeat(64), "x"),
            ("app", "Sigma"),
            ("app", "a.b"),
            ("app", "example.com:project"),
            ("app", "a b"),
            ("app", &"v".repeat(64)),
            ("app", "Ñandú"),
        ] {
            assert!(one(key, value).is_err(), "{key}={value} accepted");
        }
        let many: BTreeMap<String, String> =
            (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert_eq!(check(&many), Err(LabelError::TooMany(65)));
    }
}
