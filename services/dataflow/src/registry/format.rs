//! How the uploaded file is encoded and what the pipeline checks in it: copied into the job
//! config, checked here so that a validation on a column that does not exist never reaches a
//! job.

use serde::{Deserialize, Serialize};

use super::schema::Column;
use super::{RegistryError, invalid};

/// How the uploaded file is encoded, for the pipeline to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Format {
    #[serde(rename = "type")]
    pub kind: FormatKind,
    #[serde(default = "Compression::gzip")]
    pub compression: Compression,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub null_marker: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FormatKind {
    Csv,
    Jsonl,
    Avro,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    None,
}

impl Compression {
    fn gzip() -> Self {
        Self::Gzip
    }
}

impl Format {
    pub(super) fn check(&self, at: &str) -> Result<(), RegistryError> {
        let csv_only = [
            ("delimiter", self.delimiter.is_some()),
            ("header", self.header.is_some()),
            ("quote", self.quote.is_some()),
        ];
        if self.kind != FormatKind::Csv
            && let Some((field, _)) = csv_only.iter().find(|(_, set)| *set)
        {
            return Err(invalid(
                format!("{at}.format.{field}"),
                "only applies to type: csv",
            ));
        }
        for (field, value) in [("delimiter", &self.delimiter), ("quote", &self.quote)] {
            if value.as_ref().is_some_and(|v| v.chars().count() != 1) {
                return Err(invalid(
                    format!("{at}.format.{field}"),
                    "must be exactly one character",
                ));
            }
        }
        Ok(())
    }
}

/// A check the pipeline runs on the records before loading them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Validation {
    RowCount {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u64>,
    },
    NotNull {
        columns: Vec<String>,
    },
    Unique {
        columns: Vec<String>,
    },
    AcceptedValues {
        column: String,
        values: Vec<String>,
    },
}

impl Validation {
    pub(super) fn check(&self, at: &str, schema: &[Column]) -> Result<(), RegistryError> {
        let columns: Vec<&String> = match self {
            Self::RowCount { min, max } => {
                if min.is_none() && max.is_none() {
                    return Err(invalid(at, "row_count needs min, max or both"));
                }
                if let (Some(min), Some(max)) = (min, max)
                    && min > max
                {
                    return Err(invalid(at, "row_count min is larger than max"));
                }
                Vec::new()
            }
            Self::NotNull { columns } | Self::Unique { columns } => {
                if columns.is_empty() {
                    return Err(invalid(at, "columns must not be empty"));
                }
                columns.iter().collect()
            }
            Self::AcceptedValues { column, values } => {
                if values.is_empty() {
                    return Err(invalid(at, "values must not be empty"));
                }
                vec![column]
            }
        };
        match columns
            .into_iter()
            .find(|c| !schema.iter().any(|col| &col.name == *c))
        {
            Some(missing) => Err(invalid(
                at,
                format!("column {missing:?} is not in the schema"),
            )),
            None => Ok(()),
        }
    }
}
