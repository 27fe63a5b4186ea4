//! The registry's YAML schema: what an author writes, before defaults are merged in.
//!
//! Every struct refuses unknown keys, so a misspelt field is a start-up error instead of a
//! setting silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sigma_shared::BucketName;

use super::environment::Environment;
use super::format::{Format, Validation};
use crate::template::Template;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegistry {
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    pub(super) pipelines: BTreeMap<String, RawEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) project: Option<String>,
    pub(super) region: Option<String>,
    pub(super) config_bucket: Option<BucketName>,
    pub(super) source_bucket: Option<BucketName>,
    pub(super) template: Option<String>,
    pub(super) config_parameter: Option<String>,
    #[serde(default)]
    pub(super) parameters: BTreeMap<String, Template>,
    #[serde(default)]
    pub(super) environment: Environment,
    pub(super) format: Option<Format>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntry {
    pub(super) pattern: String,
    pub(super) template: Option<String>,
    pub(super) region: Option<String>,
    pub(super) config_parameter: Option<String>,
    #[serde(default)]
    pub(super) parameters: BTreeMap<String, Template>,
    #[serde(default)]
    pub(super) environment: Environment,
    pub(super) format: Option<Format>,
    pub(super) destination: Destination,
    pub(super) schema: Vec<Column>,
    #[serde(default)]
    pub(super) validations: Vec<Validation>,
    pub(super) dataform_table: Option<String>,
}

/// Where and how the workers run; every string may hold placeholders. Maps to Dataflow's

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub table: Template,
    #[serde(default)]
    pub write_disposition: WriteDisposition,
    #[serde(default)]
    pub create_disposition: CreateDisposition,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WriteDisposition {
    #[default]
    WriteAppend,
    WriteTruncate,
    WriteEmpty,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CreateDisposition {
    #[default]
    CreateIfNeeded,
    CreateNever,
}

/// One field of the record schema, in BigQuery's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Numeric,
    Bignumeric,
    Bool,
    Date,
    Datetime,
    Time,
    Timestamp,
    Bytes,
    Json,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    #[default]
    Nullable,
    Required,
}
