//! The pipeline registry: which uploads become which Dataflow jobs, loaded and checked once.
//!
//! Onboarding an interface file is one entry in this YAML and no code, so everything an
//! entry can get wrong (a pattern without a date, a misspelt placeholder, a validation on a
//! column that does not exist) is refused at start-up with the entity and field named,
//! instead of failing a job at 3 a.m. Entries are merged over `defaults` here, so the
//! planner sees each pipeline complete.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde::{Deserialize, Serialize};
use sigma_shared::{BucketName, GsUri, ObjectRef};

use crate::naming::{EntityName, FechaLote};
use crate::template::{Placeholder, Template};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the registry is not valid YAML for its schema: {0}")]
    Syntax(#[from] serde_yaml::Error),
    #[error("registry: {at}: {reason}")]
    Invalid { at: String, reason: String },
}

fn invalid(at: impl Into<String>, reason: impl Into<String>) -> RegistryError {
    RegistryError::Invalid {
        at: at.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    defaults: RawDefaults,
    pipelines: BTreeMap<String, RawEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    project: Option<String>,
    region: Option<String>,
    config_bucket: Option<BucketName>,
    source_bucket: Option<BucketName>,
    template: Option<String>,
    config_parameter: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Template>,
    #[serde(default)]
    environment: Environment,
    format: Option<Format>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    pattern: String,
    template: Option<String>,
    region: Option<String>,
    config_parameter: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, Template>,
    #[serde(default)]
    environment: Environment,
    format: Option<Format>,
    destination: Destination,
    schema: Vec<Column>,
    #[serde(default)]
    validations: Vec<Validation>,
    dataform_table: Option<String>,
}

/// Where and how the workers run; every string may hold placeholders. Maps to Dataflow's
/// `FlexTemplateRuntimeEnvironment`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub temp_location: Option<Template>,
    pub staging_location: Option<Template>,
    pub service_account_email: Option<Template>,
    pub network: Option<Template>,
    pub subnetwork: Option<Template>,
    /// `true`: workers get private IPs only (`WORKER_IP_PRIVATE`).
    pub private_ips: Option<bool>,
    pub num_workers: Option<u32>,
    pub max_workers: Option<u32>,
    pub machine_type: Option<String>,
    pub launcher_machine_type: Option<String>,
    pub worker_region: Option<String>,
    pub worker_zone: Option<String>,
    pub disk_size_gb: Option<u32>,
    #[serde(default)]
    pub experiments: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, Template>,
    pub kms_key_name: Option<Template>,
}

impl Environment {
    /// This entry's environment over the defaults: scalar fields replace, labels merge key by
    /// key, experiments add up (a default experiment cannot be silently dropped).
    fn over(self, defaults: &Environment) -> Environment {
        let d = defaults.clone();
        let mut experiments = d.experiments;
        for e in self.experiments {
            if !experiments.contains(&e) {
                experiments.push(e);
            }
        }
        let mut labels = d.labels;
        labels.extend(self.labels);
        Environment {
            temp_location: self.temp_location.or(d.temp_location),
            staging_location: self.staging_location.or(d.staging_location),
            service_account_email: self.service_account_email.or(d.service_account_email),
            network: self.network.or(d.network),
            subnetwork: self.subnetwork.or(d.subnetwork),
            private_ips: self.private_ips.or(d.private_ips),
            num_workers: self.num_workers.or(d.num_workers),
            max_workers: self.max_workers.or(d.max_workers),
            machine_type: self.machine_type.or(d.machine_type),
            launcher_machine_type: self.launcher_machine_type.or(d.launcher_machine_type),
            worker_region: self.worker_region.or(d.worker_region),
            worker_zone: self.worker_zone.or(d.worker_zone),
            disk_size_gb: self.disk_size_gb.or(d.disk_size_gb),
            experiments,
            labels,
            kms_key_name: self.kms_key_name.or(d.kms_key_name),
        }
    }

    fn check(&self, at: &str) -> Result<(), RegistryError> {
        for (field, value) in [
            ("temp_location", &self.temp_location),
            ("staging_location", &self.staging_location),
        ] {
            if let Some(value) = value
                && !value.to_string().starts_with("gs://")
            {
                return Err(invalid(
                    format!("{at}.environment.{field}"),
                    "must be a gs:// URI",
                ));
            }
        }
        if let (Some(num), Some(max)) = (self.num_workers, self.max_workers)
            && num > max
        {
            return Err(invalid(
                format!("{at}.environment"),
                "num_workers is larger than max_workers",
            ));
        }
        for (field, value) in [
            ("num_workers", self.num_workers),
            ("max_workers", self.max_workers),
        ] {
            if value.is_some_and(|v| !(1..=1000).contains(&v)) {
                return Err(invalid(
                    format!("{at}.environment.{field}"),
                    "must be between 1 and 1000",
                ));
            }
        }
        if self.worker_region.is_some() && self.worker_zone.is_some() {
            return Err(invalid(
                format!("{at}.environment"),
                "worker_region and worker_zone are mutually exclusive",
            ));
        }
        for (key, value) in &self.labels {
            let key_ok = key.starts_with(|c: char| c.is_ascii_lowercase())
                && key.len() <= 63
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !key_ok {
                return Err(invalid(
                    format!("{at}.environment.labels.{key}"),
                    "label keys are 1-63 lower-case letters, digits, '_' or '-', starting with a letter",
                ));
            }
            let label_safe = [
                Placeholder::Entity,
                Placeholder::FechaLote,
                Placeholder::Yyyymmdd,
                Placeholder::JobName,
                Placeholder::Project,
                Placeholder::Region,
            ];
            if let Some(p) = value.placeholders().find(|p| !label_safe.contains(p)) {
                return Err(invalid(
                    format!("{at}.environment.labels.{key}"),
                    format!("{p:?} cannot appear in a label value"),
                ));
            }
            let literal = value.expand(|_| String::new());
            if literal.len() > 63
                || !literal
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                return Err(invalid(
                    format!("{at}.environment.labels.{key}"),
                    "label values are lower-case letters, digits, '_' or '-'",
                ));
            }
        }
        Ok(())
    }
}

/// How the uploaded file is encoded, for the pipeline to read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatKind {
    Csv,
    Jsonl,
    Avro,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    fn check(&self, at: &str) -> Result<(), RegistryError> {
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

/// Where the pipeline loads the records: a BigQuery table (`project.dataset.table`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub table: Template,
    #[serde(default)]
    pub write_disposition: WriteDisposition,
    #[serde(default)]
    pub create_disposition: CreateDisposition,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WriteDisposition {
    #[default]
    WriteAppend,
    WriteTruncate,
    WriteEmpty,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CreateDisposition {
    #[default]
    CreateIfNeeded,
    CreateNever,
}

/// One field of the record schema, in BigQuery's terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    #[default]
    Nullable,
    Required,
}

/// A check the pipeline runs on the records before loading them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    fn check(&self, at: &str, schema: &[Column]) -> Result<(), RegistryError> {
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

/// An object-name pattern compiled to an anchored regular expression.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    /// `{yyyymmdd}` or `{yyyy-mm-dd}` (exactly one) captures the batch date, `{entity}` is
    /// the entry's name, `*` is any run of characters within one path segment.
    fn compile(source: &str, entity: &EntityName) -> Result<Self, String> {
        let mut regex = String::from("^");
        let mut dates = 0;
        let mut rest = source;
        while let Some(c) = rest.chars().next() {
            if c == '*' {
                regex.push_str("[^/]*");
                rest = &rest[1..];
            } else if c == '{' {
                let end = rest
                    .find('}')
                    .ok_or_else(|| format!("unclosed {{ in {source:?}"))?;
                match &rest[1..end] {
                    "yyyymmdd" => {
                        regex.push_str("(?P<date>[0-9]{8})");
                        dates += 1;
                    }
                    "yyyy-mm-dd" => {
                        regex.push_str("(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})");
                        dates += 1;
                    }
                    "entity" => regex.push_str(&regex::escape(entity.as_str())),
                    other => {
                        return Err(format!(
                            "unknown placeholder {{{other}}} (valid: {{yyyymmdd}}, {{yyyy-mm-dd}}, {{entity}}, *)"
                        ));
                    }
                }
                rest = &rest[end + 1..];
            } else {
                regex.push_str(&regex::escape(&c.to_string()));
                rest = &rest[c.len_utf8()..];
            }
        }
        if dates != 1 {
            return Err("must contain exactly one of {yyyymmdd} or {yyyy-mm-dd}".into());
        }
        regex.push('$');
        let regex = Regex::new(&regex).map_err(|e| e.to_string())?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// The date text if the name matches.
    fn date_in<'a>(&self, name: &'a str) -> Option<&'a str> {
        self.regex
            .captures(name)
            .and_then(|c| c.name("date"))
            .map(|m| m.as_str())
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// One entity's pipeline, complete (defaults merged in) and validated.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub entity: EntityName,
    pub pattern: Pattern,
    pub template: GsUri,
    /// The entry's own region, if it differs from the service default.
    pub region: Option<String>,
    pub config_parameter: String,
    pub parameters: BTreeMap<String, Template>,
    pub environment: Environment,
    pub format: Format,
    pub destination: Destination,
    pub schema: Vec<Column>,
    pub validations: Vec<Validation>,
    pub dataform_table: String,
}

/// The values `defaults` may give for settings that env vars can override.
#[derive(Debug, Clone, Default)]
pub struct SiteDefaults {
    pub project: Option<String>,
    pub region: Option<String>,
    pub config_bucket: Option<BucketName>,
}

#[derive(Debug, Clone)]
pub struct Registry {
    pub site: SiteDefaults,
    /// Where uploads land; `sigma plan` assumes it for bare object names.
    pub source_bucket: Option<BucketName>,
    pipelines: Vec<Pipeline>,
}

/// Why an object selects no pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    #[error("{0} matches no pipeline in the registry")]
    UnknownEntity(ObjectRef),
    #[error("{object} matches more than one pipeline: {}", entities.join(", "))]
    Ambiguous {
        object: ObjectRef,
        entities: Vec<String>,
    },
    #[error("{object} matches pipeline {entity} but {date:?} is not a valid date")]
    InvalidDate {
        object: ObjectRef,
        entity: EntityName,
        date: String,
    },
}

pub fn check_region(region: &str) -> Result<(), String> {
    let valid = region.len() <= 63
        && region.split('-').count() >= 2
        && region.ends_with(|c: char| c.is_ascii_digit())
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !region.contains("--");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{region:?} is not a region name such as europe-west1"
        ))
    }
}

pub fn check_project(project: &str) -> Result<(), String> {
    let id = project.rsplit(':').next().unwrap_or(project);
    let valid = (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!("{project:?} is not a Google Cloud project id"))
    }
}

fn check_identifier(at: &str, name: &str) -> Result<(), RegistryError> {
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

fn check_parameter_name(at: &str, name: &str) -> Result<(), RegistryError> {
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

impl Registry {
    pub fn parse(yaml: &str) -> Result<Self, RegistryError> {
        let raw: RawRegistry = serde_yaml::from_str(yaml)?;
        let defaults = raw.defaults;
        if let Some(project) = &defaults.project {
            check_project(project).map_err(|e| invalid("defaults.project", e))?;
        }
        if let Some(region) = &defaults.region {
            check_region(region).map_err(|e| invalid("defaults.region", e))?;
        }
        for name in defaults.parameters.keys() {
            check_parameter_name(&format!("defaults.parameters.{name}"), name)?;
        }
        defaults.environment.check("defaults")?;
        if let Some(format) = &defaults.format {
            format.check("defaults")?;
        }
        if raw.pipelines.is_empty() {
            return Err(invalid("pipelines", "at least one pipeline is required"));
        }
        let pipelines = raw
            .pipelines
            .into_iter()
            .map(|(name, entry)| Self::pipeline(&defaults, name, entry))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            site: SiteDefaults {
                project: defaults.project,
                region: defaults.region,
                config_bucket: defaults.config_bucket,
            },
            source_bucket: defaults.source_bucket,
            pipelines,
        })
    }

    fn pipeline(
        defaults: &RawDefaults,
        name: String,
        entry: RawEntry,
    ) -> Result<Pipeline, RegistryError> {
        let at = format!("pipelines.{name}");
        let entity: EntityName = name.parse().map_err(|e| invalid(&at, format!("{e}")))?;
        let pattern = Pattern::compile(&entry.pattern, &entity)
            .map_err(|e| invalid(format!("{at}.pattern"), e))?;
        let template: GsUri = entry
            .template
            .or_else(|| defaults.template.clone())
            .ok_or_else(|| invalid(format!("{at}.template"), "no template here or in defaults"))?
            .parse()
            .map_err(|e| invalid(format!("{at}.template"), format!("{e}")))?;
        if let Some(region) = &entry.region {
            check_region(region).map_err(|e| invalid(format!("{at}.region"), e))?;
        }
        let config_parameter = entry
            .config_parameter
            .or_else(|| defaults.config_parameter.clone())
            .unwrap_or_else(|| "config".to_owned());
        check_parameter_name(&format!("{at}.config_parameter"), &config_parameter)?;
        let mut parameters = defaults.parameters.clone();
        parameters.extend(entry.parameters);
        for name in parameters.keys() {
            check_parameter_name(&format!("{at}.parameters.{name}"), name)?;
        }
        if parameters.contains_key(&config_parameter) {
            return Err(invalid(
                format!("{at}.parameters.{config_parameter}"),
                "is the config parameter, which sigma sets to the config URI itself",
            ));
        }
        let environment = entry.environment.over(&defaults.environment);
        environment.check(&at)?;
        let format = entry
            .format
            .or_else(|| defaults.format.clone())
            .ok_or_else(|| invalid(format!("{at}.format"), "no format here or in defaults"))?;
        format.check(&at)?;
        if entry.destination.table.is_literal()
            && entry.destination.table.to_string().trim().is_empty()
        {
            return Err(invalid(
                format!("{at}.destination.table"),
                "must not be empty",
            ));
        }
        if entry.schema.is_empty() {
            return Err(invalid(
                format!("{at}.schema"),
                "must list at least one column",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, column) in entry.schema.iter().enumerate() {
            check_identifier(&format!("{at}.schema[{i}].name"), &column.name)?;
            if !seen.insert(column.name.to_ascii_lowercase()) {
                return Err(invalid(
                    format!("{at}.schema[{i}].name"),
                    format!("column {:?} appears twice", column.name),
                ));
            }
        }
        for (i, validation) in entry.validations.iter().enumerate() {
            validation.check(&format!("{at}.validations[{i}]"), &entry.schema)?;
        }
        let dataform_table = entry
            .dataform_table
            .unwrap_or_else(|| entity.as_str().to_owned());
        check_identifier(&format!("{at}.dataform_table"), &dataform_table)?;
        Ok(Pipeline {
            entity,
            pattern,
            template,
            region: entry.region,
            config_parameter,
            parameters,
            environment,
            format,
            destination: entry.destination,
            schema: entry.schema,
            validations: entry.validations,
            dataform_table,
        })
    }

    pub fn pipelines(&self) -> &[Pipeline] {
        &self.pipelines
    }

    /// The one pipeline `object` selects, with its batch date.
    pub fn select(&self, object: &ObjectRef) -> Result<(&Pipeline, FechaLote), MatchError> {
        let mut matches = self.pipelines.iter().filter_map(|p| {
            p.pattern
                .date_in(object.name.as_str())
                .map(|date| (p, date))
        });
        let (pipeline, date) = matches
            .next()
            .ok_or_else(|| MatchError::UnknownEntity(object.clone()))?;
        let others: Vec<String> = matches.map(|(p, _)| p.entity.to_string()).collect();
        if !others.is_empty() {
            return Err(MatchError::Ambiguous {
                object: object.clone(),
                entities: std::iter::once(pipeline.entity.to_string())
                    .chain(others)
                    .collect(),
            });
        }
        let fecha_lote = date.parse().map_err(|_| MatchError::InvalidDate {
            object: object.clone(),
            entity: pipeline.entity.clone(),
            date: date.to_owned(),
        })?;
        Ok((pipeline, fecha_lote))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
defaults:
  template: gs://templates/flex/load.json
  format: {type: csv}
pipelines:
  lkp_fechas:
    pattern: data/{yyyymmdd}/{entity}.gz
    destination: {table: "{project}.raw.lkp_fechas"}
    schema: [{name: fecha, type: DATE}]
"#;

    fn object(bucket: &str, name: &str) -> ObjectRef {
        ObjectRef::new(bucket.parse().unwrap(), name.parse().unwrap())
    }

    fn error_of(yaml: &str) -> String {
        Registry::parse(yaml).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_entry_gets_the_defaults() {
        let registry = Registry::parse(MINIMAL).unwrap();
        let (pipeline, fecha) = registry
            .select(&object("out_bucket", "data/20240115/lkp_fechas.gz"))
            .unwrap();
        assert_eq!(pipeline.entity.as_str(), "lkp_fechas");
        assert_eq!(fecha.to_string(), "2024-01-15");
        assert_eq!(pipeline.dataform_table, "lkp_fechas");
        assert_eq!(pipeline.config_parameter, "config");
        assert_eq!(pipeline.format.compression, Compression::Gzip);
        assert_eq!(
            pipeline.destination.write_disposition,
            WriteDisposition::WriteAppend
        );
        assert_eq!(pipeline.schema[0].mode, Mode::Nullable);
    }

    #[test]
    fn names_that_match_no_pattern_are_unknown_entities() {
        let registry = Registry::parse(MINIMAL).unwrap();
        for name in [
            "data/20240115/otra_tabla.gz",
            "data/20240115/lkp_fechas.gz.encrypted",
            "x/data/20240115/lkp_fechas.gz",
            "data/2024011/lkp_fechas.gz",
        ] {
            assert!(
                matches!(
                    registry.select(&object("b_1", name)),
                    Err(MatchError::UnknownEntity(_))
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn impossible_dates_in_a_matching_name_are_refused() {
        let registry = Registry::parse(MINIMAL).unwrap();
        let err = registry
            .select(&object("b_1", "data/20241345/lkp_fechas.gz"))
            .unwrap_err();
        assert!(matches!(err, MatchError::InvalidDate { .. }), "{err}");
    }

    #[test]
    fn overlapping_patterns_are_reported_instead_of_guessed() {
        let yaml = format!(
            "{MINIMAL}  otra:\n    pattern: data/{{yyyymmdd}}/*.gz\n    destination: {{table: t}}\n    schema: [{{name: a, type: STRING}}]\n"
        );
        let registry = Registry::parse(&yaml).unwrap();
        let err = registry
            .select(&object("b_1", "data/20240115/lkp_fechas.gz"))
            .unwrap_err();
        assert!(
            matches!(&err, MatchError::Ambiguous { entities, .. } if entities.len() == 2),
            "{err}"
        );
        let (p, _) = registry
            .select(&object("b_1", "data/20240115/else.gz"))
            .unwrap();
        assert_eq!(p.entity.as_str(), "otra");
    }

    #[test]
    fn dashed_dates_and_wildcards_in_patterns() {
        let yaml = MINIMAL.replace(
            "data/{yyyymmdd}/{entity}.gz",
            "in/*/{entity}_{yyyy-mm-dd}.csv.gz",
        );
        let registry = Registry::parse(&yaml).unwrap();
        let (_, fecha) = registry
            .select(&object("b_1", "in/any/lkp_fechas_2024-02-29.csv.gz"))
            .unwrap();
        assert_eq!(fecha.compact(), "20240229");
        assert!(
            registry
                .select(&object("b_1", "in/a/b/lkp_fechas_2024-02-29.csv.gz"))
                .is_err()
        );
    }

    #[test]
    fn environment_merges_over_defaults() {
        let yaml = r#"
defaults:
  template: gs://tpl/x.json
  format: {type: csv}
  parameters: {a: "1", b: "2"}
  environment:
    max_workers: 4
    machine_type: n2-standard-2
    experiments: [use_runner_v2]
    labels: {team: data}
pipelines:
  x_y:
    pattern: "{yyyymmdd}.gz"
    parameters: {b: "3"}
    environment: {max_workers: 8, experiments: [enable_prime], labels: {entity: "{entity}"}}
    destination: {table: t}
    schema: [{name: a, type: STRING}]
"#;
        let registry = Registry::parse(yaml).unwrap();
        let p = &registry.pipelines()[0];
        assert_eq!(p.environment.max_workers, Some(8));
        assert_eq!(p.environment.machine_type.as_deref(), Some("n2-standard-2"));
        assert_eq!(
            p.environment.experiments,
            vec!["use_runner_v2", "enable_prime"]
        );
        assert_eq!(p.environment.labels.len(), 2);
        assert_eq!(p.parameters["a"].to_string(), "1");
        assert_eq!(p.parameters["b"].to_string(), "3");
    }

    #[test]
    fn mistakes_are_refused_at_load_with_the_place_named() {
        let cases = [
            (
                MINIMAL.replace("{yyyymmdd}/", ""),
                "pipelines.lkp_fechas.pattern",
            ),
            (
                MINIMAL.replace("{entity}.gz", "{entidad}.gz"),
                "unknown placeholder {entidad}",
            ),
            (
                MINIMAL.replace("lkp_fechas:", "Lkp-Fechas:"),
                "pipelines.Lkp-Fechas",
            ),
            (
                MINIMAL.replace("{project}.raw", "{proyecto}.raw"),
                "unknown placeholder {proyecto}",
            ),
            (
                MINIMAL.replace("type: DATE", "type: DATUM"),
                "unknown variant",
            ),
            (MINIMAL.replace("schema:", "schemas:"), "unknown field"),
            (
                MINIMAL.replace("  template: gs://templates/flex/load.json\n", ""),
                "pipelines.lkp_fechas.template",
            ),
            (
                MINIMAL.replace("gs://templates/flex/load.json", "templates/load.json"),
                "gs://",
            ),
            (
                MINIMAL.replace("{type: csv}", "{type: avro, delimiter: \";\"}"),
                "only applies to type: csv",
            ),
            (
                MINIMAL.replace("{type: csv}", "{type: csv, delimiter: \";;\"}"),
                "exactly one character",
            ),
            (
                format!("{MINIMAL}    validations: [{{check: not_null, columns: [nope]}}]\n"),
                "column \"nope\" is not in the schema",
            ),
            (
                format!("{MINIMAL}    validations: [{{check: row_count, min: 5, max: 1}}]\n"),
                "min is larger than max",
            ),
            (
                format!("{MINIMAL}    validations: [{{check: sorted}}]\n"),
                "unknown variant",
            ),
            (
                format!("{MINIMAL}    environment: {{max_workers: 2, num_workers: 3}}\n"),
                "num_workers is larger",
            ),
            (
                format!("{MINIMAL}    environment: {{temp_location: /tmp}}\n"),
                "environment.temp_location",
            ),
            (
                format!("{MINIMAL}    environment: {{labels: {{Team: x}}}}\n"),
                "label keys",
            ),
            (
                format!("{MINIMAL}    environment: {{labels: {{src: \"{{input_uri}}\"}}}}\n"),
                "cannot appear in a label value",
            ),
            (
                format!(
                    "{MINIMAL}    environment: {{worker_region: europe-west1, worker_zone: europe-west1-b}}\n"
                ),
                "mutually exclusive",
            ),
            (
                format!("{MINIMAL}    parameters: {{config: x}}\n"),
                "is the config parameter",
            ),
            (format!("{MINIMAL}    region: Europe\n"), "region name"),
            (
                format!("{MINIMAL}    dataform_table: \"raw.table\"\n"),
                "dataform_table",
            ),
            (
                MINIMAL.replace(
                    "[{name: fecha, type: DATE}]",
                    "[{name: a, type: STRING}, {name: A, type: STRING}]",
                ),
                "appears twice",
            ),
            ("pipelines: {}\n".to_owned(), "at least one pipeline"),
        ];
        for (yaml, expected) in cases {
            let err = error_of(&yaml);
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }
}
