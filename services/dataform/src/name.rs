//! How users name the loaded table, and how such a name finds its node.
//!
//! People type `lkp_fechas`, `raw.lkp_fechas` or the full `project.raw.lkp_fechas`, and may
//! use either the target (with schema suffix / table prefix) or the canonical target; the
//! workflow only knows the file that was loaded. All of these end up here.

use std::fmt;
use std::str::FromStr;

use sigma_shared::ObjectName;

use crate::graph::{Graph, Target};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    database: Option<String>,
    schema: Option<String>,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} is not a table name: use name, schema.name or database.schema.name")]
    Invalid(String),
    #[error("no table name can be derived from the object name {0:?}")]
    FromObject(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Found(u32),
    Unknown,
    /// Several nodes match; their targets, sorted.
    Ambiguous(Vec<String>),
}

const MAX_PART: usize = 1024;

fn valid_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= MAX_PART
        && part.trim() == part
        && !part.chars().any(|c| c.is_control() || "/`\"'".contains(c))
}

impl FromStr for TableName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('.').collect();
        if !parts.iter().all(|p| valid_part(p)) {
            return Err(NameError::Invalid(s.chars().take(200).collect()));
        }
        let owned = |p: &str| Some(p.to_owned());
        match parts.as_slice() {
            [name] => Ok(Self {
                database: None,
                schema: None,
                name: (*name).to_owned(),
            }),
            [schema, name] => Ok(Self {
                database: None,
                schema: owned(schema),
                name: (*name).to_owned(),
            }),
            [database, schema, name] => Ok(Self {
                database: owned(database),
                schema: owned(schema),
                name: (*name).to_owned(),
            }),
            _ => Err(NameError::Invalid(s.chars().take(200).collect())),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in [&self.database, &self.schema].into_iter().flatten() {
            write!(f, "{part}.")?;
        }
        f.write_str(&self.name)
    }
}

impl TableName {
    /// The table a loaded file feeds: its file name without directories or extensions
    /// (`data/20240115/lkp_fechas.gz` -> `lkp_fechas`).
    pub fn from_object(object: &ObjectName) -> Result<Self, NameError> {
        let file = object.file_name();
        let stem = file.split('.').next().unwrap_or_default();
        stem.parse()
            .map_err(|_| NameError::FromObject(object.as_str().to_owned()))
    }

    fn matches(&self, target: &Target) -> bool {
        target.name == self.name
            && self.schema.as_ref().is_none_or(|s| *s == target.schema)
            && self.database.as_ref().is_none_or(|d| *d == target.database)
    }

    /// Finds the one node this name designates, by target or canonical target.
    pub fn resolve(&self, graph: &Graph) -> Resolution {
        let mut found: Vec<u32> = graph
            .named(&self.name)
            .iter()
            .copied()
            .filter(|&node| {
                let action = graph.action(node);
                self.matches(&action.target) || self.matches(&action.canonical)
            })
            .collect();
        found.sort_unstable();
        found.dedup();
        match found.as_slice() {
            [] => Resolution::Unknown,
            [node] => Resolution::Found(*node),
            many => {
                let mut names: Vec<String> = many
                    .iter()
                    .map(|&n| graph.action(n).target.to_string())
                    .collect();
                names.sort();
                Resolution::Ambiguous(names)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_to_three_dot_separated_parts_are_accepted() {
        assert_eq!(
            "lkp_fechas".parse::<TableName>().unwrap().to_string(),
            "lkp_fechas"
        );
        assert_eq!(
            "raw.lkp_fechas".parse::<TableName>().unwrap().to_string(),
            "raw.lkp_fechas"
        );
        assert_eq!(
            "acme-dwh-prod.raw.x"
                .parse::<TableName>()
                .unwrap()
                .to_string(),
            "acme-dwh-prod.raw.x"
        );
        for bad in ["", "a..b", ".a", "a.b.c.d", "a/b", "a\nb", " a", "a`b"] {
            assert!(bad.parse::<TableName>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn object_names_lose_directories_and_every_extension() {
        let from = |s: &str| TableName::from_object(&s.parse().unwrap()).map(|t| t.to_string());
        assert_eq!(from("data/20240115/lkp_fechas.gz").unwrap(), "lkp_fechas");
        assert_eq!(from("lkp_fechas.csv.gz.encrypted").unwrap(), "lkp_fechas");
        assert_eq!(from("polizas").unwrap(), "polizas");
        assert!(from("data/.hidden").is_err());
    }
}
