//! The pipeline registry: which uploads become which Dataflow jobs, loaded and checked once.
//!
//! Onboarding an interface file is one entry in this YAML and no code, so everything an
//! entry can get wrong (a pattern without a date, a misspelt placeholder, a validation on a
//! column that does not exist) is refused at start-up with the entity and field named,
//! instead of failing a job at 3 a.m. Entries are merged over `defaults` here, so the
//! planner sees each pipeline complete.

mod checks;
mod environment;
mod format;
mod pattern;
mod schema;
mod select;

use std::collections::{BTreeMap, BTreeSet};

use sigma_shared::{BucketName, GsUri};

use crate::naming::{DataformTable, EntityName, ProjectId, Region};
use crate::template::Template;
use checks::{check_identifier, check_parameter_name};
use schema::{RawDefaults, RawEntry, RawRegistry};

pub use environment::Environment;
pub use format::{Compression, Format, FormatKind, Validation};
pub use pattern::Pattern;
pub use schema::{Column, ColumnType, CreateDisposition, Destination, Mode, WriteDisposition};
pub use select::MatchError;

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

/// One entity's pipeline, complete (defaults merged in) and validated.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub entity: EntityName,
    pub pattern: Pattern,
    pub template: GsUri,
    /// The entry's own region, if it differs from the service default.
    pub region: Option<Region>,
    pub config_parameter: String,
    pub parameters: BTreeMap<String, Template>,
    pub environment: Environment,
    pub format: Format,
    pub destination: Destination,
    pub schema: Vec<Column>,
    pub validations: Vec<Validation>,
    pub dataform_table: DataformTable,
}

/// The values `defaults` may give for settings that env vars can override.
#[derive(Debug, Clone, Default)]
pub struct SiteDefaults {
    pub project: Option<ProjectId>,
    pub region: Option<Region>,
    pub config_bucket: Option<BucketName>,
}

#[derive(Debug, Clone)]
pub struct Registry {
    pub site: SiteDefaults,
    /// Where uploads land; `sigma plan` assumes it for bare object names.
    pub source_bucket: Option<BucketName>,
    pipelines: Vec<Pipeline>,
}

impl Registry {
    pub fn parse(yaml: &str) -> Result<Self, RegistryError> {
        let raw: RawRegistry = serde_yaml::from_str(yaml)?;
        let defaults = raw.defaults;
        let project = defaults
            .project
            .as_deref()
            .map(str::parse::<ProjectId>)
            .transpose()
            .map_err(|e| invalid("defaults.project", e.to_string()))?;
        let region = defaults
            .region
            .as_deref()
            .map(str::parse::<Region>)
            .transpose()
            .map_err(|e| invalid("defaults.region", e.to_string()))?;
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
                project,
                region,
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
        let region = entry
            .region
            .as_deref()
            .map(str::parse::<Region>)
            .transpose()
            .map_err(|e| invalid(format!("{at}.region"), e.to_string()))?;
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
        let dataform_table = match entry.dataform_table {
            Some(table) => table
                .parse()
                .map_err(|e| invalid(format!("{at}.dataform_table"), format!("{e}")))?,
            None => DataformTable::from(&entity),
        };
        Ok(Pipeline {
            entity,
            pattern,
            template,
            region,
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
}

#[cfg(test)]
mod tests {
    use sigma_shared::ObjectRef;

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
        assert_eq!(pipeline.dataform_table.as_str(), "lkp_fechas");
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
    fn dataform_tables_qualified_by_schema_or_database_are_kept_as_written() {
        for table in ["raw.lkp_fechas", "company-data-prod.raw.lkp_fechas"] {
            let yaml = format!("{MINIMAL}    dataform_table: {table}\n");
            let registry = Registry::parse(&yaml).unwrap();
            assert_eq!(registry.pipelines()[0].dataform_table.as_str(), table);
        }
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
                "label key \"Team\"",
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
                format!("{MINIMAL}    dataform_table: \"a.raw.t.x\"\n"),
                "pipelines.lkp_fechas.dataform_table",
            ),
            (
                format!("{MINIMAL}    dataform_table: \"raw.t-x\"\n"),
                "pipelines.lkp_fechas.dataform_table",
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
