//! Name rules for registry fields that Google or BigQuery will check later anyway; checked at
//! load so the mistake is named with its place.

use super::{RegistryError, invalid};

pub(super) fn check_identifier(at: &str, name: &str) -> Result<(), RegistryError> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.len() <= 300
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(invalid(
            at,
            format!("{name:?} is not a valid identifier (letters, digits, '_')"),
        ))
    }
}

pub(super) fn check_parameter_name(at: &str, name: &str) -> Result<(), RegistryError> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(invalid(
            at,
            format!("{name:?} is not a valid template parameter name"),
        ))
    }
}
