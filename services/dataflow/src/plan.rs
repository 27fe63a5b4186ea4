//! What the launcher would do for one upload, computed without touching anything.
//!
//! The service and `sigma plan` both call [`plan`], so what an operator previews offline is
//! byte for byte what the service writes and sends.

use std::collections::BTreeMap;

use serde::Serialize;
use sigma_shared::attempt::MAX_ATTEMPT;
use sigma_shared::{Attempt, BucketName, Generation, GsUri, ObjectRef};

use crate::labels::{self, LabelError};
use crate::naming::{DataformTable, EntityName, FechaLote, JobName, ProjectId, Region};
use crate::registry::{
    Column, CreateDisposition, Format, MatchError, Pipeline, Registry, RegistryError, SiteDefaults,
    Validation, WriteDisposition,
};
use crate::template::{Placeholder, Template};
use crate::wire::{
    FlexTemplateRuntimeEnvironment, LaunchFlexTemplateParameter, LaunchFlexTemplateRequest,
};

/// Where jobs run and configs go: env vars override the registry's `defaults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub project: ProjectId,
    pub region: Region,
    pub config_bucket: BucketName,
}

impl Site {
    /// `overrides` (from env vars or CLI flags) win over the registry's defaults; the error
    /// names both places a missing setting can come from.
    pub fn resolve(defaults: &SiteDefaults, overrides: SiteDefaults) -> Result<Self, String> {
        let project = overrides
            .project
            .or_else(|| defaults.project.clone())
            .ok_or("no project: set PROJECT_ID (or GOOGLE_CLOUD_PROJECT) or defaults.project in the registry")?;
        let region = overrides
            .region
            .or_else(|| defaults.region.clone())
            .ok_or("no region: set DATAFLOW_REGION or defaults.region in the registry")?;
        let config_bucket = overrides
            .config_bucket
            .or_else(|| defaults.config_bucket.clone())
            .ok_or(
                "no config bucket: set CONFIG_BUCKET or defaults.config_bucket in the registry",
            )?;
        Ok(Self {
            project,
            region,
            config_bucket,
        })
    }
}

/// The self-contained job config the pipeline reads: nothing else is needed to run it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ConfigDocument {
    pub entity: EntityName,
    pub fecha_lote: FechaLote,
    pub job_name: JobName,
    pub project: ProjectId,
    pub region: Region,
    pub source: Source,
    pub destination: ResolvedDestination,
    pub schema: Vec<Column>,
    pub validations: Vec<Validation>,
    pub dataform_table: DataformTable,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Source {
    pub uri: String,
    pub bucket: BucketName,
    pub name: String,
    /// The exact upload this job loads; `None` only in an offline plan without one.
    pub generation: Option<Generation>,
    pub format: Format,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ResolvedDestination {
    pub table: String,
    pub write_disposition: WriteDisposition,
    pub create_disposition: CreateDisposition,
}

/// Everything one launch needs, ready to write and send.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LaunchPlan {
    pub entity: EntityName,
    pub fecha_lote: FechaLote,
    pub job_name: JobName,
    pub project: ProjectId,
    pub region: Region,
    pub template: String,
    pub parameters: BTreeMap<String, String>,
    pub environment: FlexTemplateRuntimeEnvironment,
    pub config_uri: String,
    pub config: ConfigDocument,
    pub dataform_table: DataformTable,
    /// This upload's own config, which `config_uri` names: written once, never replaced.
    #[serde(skip)]
    pub config_object: ObjectRef,
    /// The contract's per-day name, kept as "the latest upload of the day" for people and
    /// older readers; no job is given it.
    #[serde(skip)]
    pub latest_config_object: ObjectRef,
    #[serde(skip)]
    pub generation: Option<Generation>,
    pub attempt: Attempt,
}

/// `configs/{entity}/{fecha_lote}/{job_name}.config`: one per upload (the job name carries
/// the generation), so a later upload of the same day can never change the config a job
/// already launched (or about to start) reads.
pub fn config_object(
    site: &Site,
    entity: &EntityName,
    fecha_lote: FechaLote,
    job_name: &JobName,
) -> ObjectRef {
    let name = format!("configs/{entity}/{fecha_lote}/{job_name}.config");
    ObjectRef::new(
        site.config_bucket.clone(),
        name.parse()
            .expect("entity, date and job name make a safe object name"),
    )
}

/// The `gs://` URI of [`config_object`]: what a job of that name was given.
pub fn config_uri(
    site: &Site,
    entity: &EntityName,
    fecha_lote: FechaLote,
    job_name: &JobName,
) -> String {
    GsUri(config_object(site, entity, fecha_lote, job_name)).to_string()
}

/// `configs/{entity}_{fecha_lote}.config`, the per-day name of the job config contract: a
/// copy of the latest upload's config of that day.
pub fn latest_config_object(site: &Site, entity: &EntityName, fecha_lote: FechaLote) -> ObjectRef {
    let name = format!("configs/{entity}_{fecha_lote}.config");
    ObjectRef::new(
        site.config_bucket.clone(),
        name.parse()
            .expect("entity and date make a safe object name"),
    )
}

/// Why no launch can be planned for an upload.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Match(#[from] MatchError),
    #[error("the labels of job {job_name} break Dataflow's label rules: {error}")]
    Labels {
        job_name: JobName,
        error: LabelError,
    },
}

/// The plan for `object`; its labels are checked after expansion, so a launch Dataflow
/// would refuse for its labels is refused here, before anything is written or sent.
pub fn plan(
    registry: &Registry,
    site: &Site,
    object: &ObjectRef,
    generation: Option<Generation>,
    attempt: Attempt,
) -> Result<LaunchPlan, PlanError> {
    let (pipeline, fecha_lote) = registry.select(object)?;
    let plan = plan_for(pipeline, site, object, fecha_lote, generation, attempt);
    labels::check(&plan.environment.additional_user_labels).map_err(|error| PlanError::Labels {
        job_name: plan.job_name.clone(),
        error,
    })?;
    Ok(plan)
}

/// Refuses a registry whose labels would break Dataflow's rules for some upload on this
/// site. Only `{entity}`, `{fecha_lote}`, `{yyyymmdd}`, `{job_name}`, `{project}` and
/// `{region}` may appear in labels; all are fixed per entry and site except the date, whose
/// length never varies, and the job name's generation and attempt suffixes, longest for the
/// largest generation and attempt. So expanding with those checks every upload the entry
/// can take.
pub fn check_labels(registry: &Registry, site: &Site) -> Result<(), RegistryError> {
    let any_day: FechaLote = "2024-01-15".parse().expect("a valid date");
    let largest = Generation::new(i64::MAX).expect("the largest generation is valid");
    let last = Attempt::new(MAX_ATTEMPT).expect("the last attempt is valid");
    for pipeline in registry.pipelines() {
        let job_name = JobName::derive(&pipeline.entity, any_day, Some(largest), last);
        let region = pipeline.region.as_ref().unwrap_or(&site.region);
        let value = |p: Placeholder| match p {
            Placeholder::Entity => pipeline.entity.to_string(),
            Placeholder::FechaLote => any_day.to_string(),
            Placeholder::Yyyymmdd => any_day.compact(),
            Placeholder::JobName => job_name.to_string(),
            Placeholder::Project => site.project.to_string(),
            Placeholder::Region => region.to_string(),
            _ => String::new(),
        };
        for (key, template) in &pipeline.environment.labels {
            let longest = template.expand(value);
            labels::check_value(key, &longest).map_err(|e| RegistryError::Invalid {
                at: format!("pipelines.{}.environment.labels.{key}", pipeline.entity),
                reason: format!("{template} expands to {longest:?} on this site: {e}"),
            })?;
        }
    }
    Ok(())
}

fn plan_for(
    pipeline: &Pipeline,
    site: &Site,
    object: &ObjectRef,
    fecha_lote: FechaLote,
    generation: Option<Generation>,
    attempt: Attempt,
) -> LaunchPlan {
    let entity = pipeline.entity.clone();
    let job_name = JobName::derive(&entity, fecha_lote, generation, attempt);
    let region = pipeline
        .region
        .clone()
        .unwrap_or_else(|| site.region.clone());
    let config_object = config_object(site, &entity, fecha_lote, &job_name);
    let latest_config_object = latest_config_object(site, &entity, fecha_lote);
    let config_uri = GsUri(config_object.clone()).to_string();
    let input_uri = object.to_string();
    let value = |p: Placeholder| match p {
        Placeholder::InputUri => input_uri.clone(),
        Placeholder::Bucket => object.bucket.to_string(),
        Placeholder::Name => object.name.to_string(),
        Placeholder::Generation => generation.map(|g| g.to_string()).unwrap_or_default(),
        Placeholder::ConfigUri => config_uri.clone(),
        Placeholder::Entity => entity.to_string(),
        Placeholder::FechaLote => fecha_lote.to_string(),
        Placeholder::Yyyymmdd => fecha_lote.compact(),
        Placeholder::Project => site.project.to_string(),
        Placeholder::Region => region.to_string(),
        Placeholder::JobName => job_name.to_string(),
        Placeholder::DataformTable => pipeline.dataform_table.to_string(),
    };
    let expand = |t: &Template| t.expand(value);
    let expand_opt = |t: &Option<Template>| t.as_ref().map(expand);

    let mut parameters: BTreeMap<String, String> = pipeline
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), expand(v)))
        .collect();
    parameters.insert(pipeline.config_parameter.clone(), config_uri.clone());

    let env = &pipeline.environment;
    let environment = FlexTemplateRuntimeEnvironment {
        temp_location: expand_opt(&env.temp_location),
        staging_location: expand_opt(&env.staging_location),
        service_account_email: expand_opt(&env.service_account_email),
        network: expand_opt(&env.network),
        subnetwork: expand_opt(&env.subnetwork),
        ip_configuration: env.private_ips.map(|private| {
            if private {
                "WORKER_IP_PRIVATE"
            } else {
                "WORKER_IP_PUBLIC"
            }
        }),
        num_workers: env.num_workers,
        max_workers: env.max_workers,
        machine_type: env.machine_type.clone(),
        launcher_machine_type: env.launcher_machine_type.clone(),
        worker_region: env.worker_region.clone(),
        worker_zone: env.worker_zone.clone(),
        disk_size_gb: env.disk_size_gb,
        additional_experiments: env.experiments.clone(),
        additional_user_labels: env
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), expand(v)))
            .collect(),
        kms_key_name: expand_opt(&env.kms_key_name),
    };

    let config = ConfigDocument {
        entity: entity.clone(),
        fecha_lote,
        job_name: job_name.clone(),
        project: site.project.clone(),
        region: region.clone(),
        source: Source {
            uri: input_uri.clone(),
            bucket: object.bucket.clone(),
            name: object.name.to_string(),
            generation,
            format: pipeline.format.clone(),
        },
        destination: ResolvedDestination {
            table: expand(&pipeline.destination.table),
            write_disposition: pipeline.destination.write_disposition,
            create_disposition: pipeline.destination.create_disposition,
        },
        schema: pipeline.schema.clone(),
        validations: pipeline.validations.clone(),
        dataform_table: pipeline.dataform_table.clone(),
    };

    LaunchPlan {
        entity,
        fecha_lote,
        job_name,
        project: site.project.clone(),
        region,
        template: pipeline.template.to_string(),
        parameters,
        environment,
        config_uri,
        config,
        dataform_table: pipeline.dataform_table.clone(),
        config_object,
        latest_config_object,
        generation,
        attempt,
    }
}

impl LaunchPlan {
    /// The `flexTemplates.launch` body; `validate_only` asks Dataflow to check it and create
    /// nothing (dry runs).
    pub fn launch_request(&self, validate_only: bool) -> LaunchFlexTemplateRequest {
        LaunchFlexTemplateRequest {
            launch_parameter: LaunchFlexTemplateParameter {
                job_name: self.job_name.to_string(),
                container_spec_gcs_path: self.template.clone(),
                parameters: self.parameters.clone(),
                environment: self.environment.clone(),
            },
            validate_only,
        }
    }

    /// The config document as written to Cloud Storage.
    pub fn config_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.config).expect("the config document always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = r#"
defaults:
  project: demo-project
  region: europe-west1
  config_bucket: company_config_bucket
  template: gs://company-templates/flex/load.json
  parameters: {input: "{input_uri}"}
  format: {type: csv, delimiter: "|", header: true}
pipelines:
  poliza_detalle:
    pattern: data/{yyyymmdd}/{entity}.gz
    region: us-central1
    config_parameter: jobConfig
    parameters: {label: "{entity}@{fecha_lote}#{generation}/{job_name} {dataform_table} {yyyymmdd} {project} {region} {bucket} {name}"}
    environment:
      labels: {lote: "{yyyymmdd}"}
    destination: {table: "{project}.raw.{entity}", write_disposition: WRITE_TRUNCATE}
    schema: [{name: poliza_id, type: STRING, mode: REQUIRED}]
    validations: [{check: row_count, min: 1}]
    dataform_table: poliza_detalle_raw
"#;

    fn site(registry: &Registry) -> Site {
        Site::resolve(&registry.site, SiteDefaults::default()).unwrap()
    }

    #[test]
    fn every_placeholder_expands_to_its_value() {
        let registry = Registry::parse(REGISTRY).unwrap();
        let object = ObjectRef::new(
            "company_output_bucket".parse().unwrap(),
            "data/20240115/poliza_detalle.gz".parse().unwrap(),
        );
        let plan = plan(
            &registry,
            &site(&registry),
            &object,
            Some(Generation::new(42).unwrap()),
            Attempt::FIRST,
        )
        .unwrap();
        assert_eq!(plan.job_name.as_str(), "poliza-detalle-2024-01-15-16");
        assert_eq!(plan.region.as_str(), "us-central1");
        assert_eq!(
            plan.parameters["input"],
            "gs://company_output_bucket/data/20240115/poliza_detalle.gz"
        );
        assert_eq!(
            plan.parameters["jobConfig"],
            "gs://company_config_bucket/configs/poliza_detalle/2024-01-15/poliza-detalle-2024-01-15-16.config"
        );
        assert_eq!(
            plan.parameters["label"],
            "poliza_detalle@2024-01-15#42/poliza-detalle-2024-01-15-16 poliza_detalle_raw 20240115 demo-project us-central1 company_output_bucket data/20240115/poliza_detalle.gz"
        );
        assert_eq!(plan.environment.additional_user_labels["lote"], "20240115");
        assert_eq!(
            plan.config.destination.table,
            "demo-project.raw.poliza_detalle"
        );
        assert_eq!(
            plan.config.source.generation,
            Some(Generation::new(42).unwrap())
        );
        assert_eq!(plan.config_uri, plan.parameters["jobConfig"]);
    }

    #[test]
    fn labels_are_checked_at_their_longest_expansion_with_the_entry_and_field_named() {
        let long_entity = "poliza_detalle_historico_con_nombre_muy_largo";
        let yaml = format!(
            "{REGISTRY}  {long_entity}:\n    pattern: x/{{yyyymmdd}}/{{entity}}.gz\n    environment: {{labels: {{job: \"{{job_name}}\"}}}}\n    destination: {{table: t}}\n    schema: [{{name: a, type: STRING}}]\n"
        );
        let registry = Registry::parse(&yaml).unwrap();
        let err = check_labels(&registry, &site(&registry)).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("pipelines.{long_entity}.environment.labels.job")),
            "{err}"
        );

        let with_project = REGISTRY.replace("lote: \"{yyyymmdd}\"", "project: \"{project}\"");
        let registry = Registry::parse(&with_project).unwrap();
        let mut scoped = site(&registry);
        check_labels(&registry, &scoped).unwrap();
        scoped.project = "example.com:demo-project".parse().unwrap();
        let err = check_labels(&registry, &scoped).unwrap_err();
        assert!(
            err.to_string()
                .contains("pipelines.poliza_detalle.environment.labels.project"),
            "{err}"
        );

        let registry = Registry::parse(REGISTRY).unwrap();
        check_labels(&registry, &site(&registry)).unwrap();
    }

    #[test]
    fn a_plan_whose_expanded_labels_break_the_rules_is_refused() {
        let yaml = REGISTRY.replace("lote: \"{yyyymmdd}\"", "project: \"{project}\"");
        let registry = Registry::parse(&yaml).unwrap();
        let mut scoped = site(&registry);
        scoped.project = "example.com:demo-project".parse().unwrap();
        let object = ObjectRef::new(
            "b_1".parse().unwrap(),
            "data/20240115/poliza_detalle.gz".parse().unwrap(),
        );
        let err = plan(
            &registry,
            &scoped,
            &object,
            Some(Generation::new(7).unwrap()),
            Attempt::FIRST,
        )
        .unwrap_err();
        assert!(matches!(err, PlanError::Labels { .. }), "{err}");
    }

    #[test]
    fn overrides_win_over_registry_defaults_and_missing_settings_are_named() {
        let registry = Registry::parse(REGISTRY).unwrap();
        let site = Site::resolve(
            &registry.site,
            SiteDefaults {
                project: Some("other-project".parse().unwrap()),
                region: None,
                config_bucket: Some("other_bucket".parse().unwrap()),
            },
        )
        .unwrap();
        assert_eq!(site.project.as_str(), "other-project");
        assert_eq!(site.region.as_str(), "europe-west1");
        assert_eq!(site.config_bucket.as_str(), "other_bucket");
        let err = Site::resolve(&SiteDefaults::default(), SiteDefaults::default()).unwrap_err();
        assert!(err.contains("PROJECT_ID"), "{err}");
    }

    #[test]
    fn the_config_document_has_the_contract_fields() {
        let registry = Registry::parse(REGISTRY).unwrap();
        let object = ObjectRef::new(
            "b_1".parse().unwrap(),
            "data/20240115/poliza_detalle.gz".parse().unwrap(),
        );
        let plan = plan(
            &registry,
            &site(&registry),
            &object,
            Some(Generation::new(7).unwrap()),
            Attempt::FIRST,
        )
        .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&plan.config_bytes()).unwrap();
        assert_eq!(doc["entity"], "poliza_detalle");
        assert_eq!(doc["fecha_lote"], "2024-01-15");
        assert_eq!(doc["job_name"], plan.job_name.as_str());
        assert_eq!(
            doc["source"]["uri"],
            "gs://b_1/data/20240115/poliza_detalle.gz"
        );
        assert_eq!(doc["source"]["generation"], "7");
        assert_eq!(
            doc["source"]["format"],
            serde_json::json!({"type": "csv", "compression": "gzip", "delimiter": "|", "header": true})
        );
        assert_eq!(doc["destination"]["write_disposition"], "WRITE_TRUNCATE");
        assert_eq!(doc["destination"]["create_disposition"], "CREATE_IF_NEEDED");
        assert_eq!(
            doc["schema"],
            serde_json::json!([{"name": "poliza_id", "type": "STRING", "mode": "REQUIRED"}])
        );
        assert_eq!(
            doc["validations"],
            serde_json::json!([{"check": "row_count", "min": 1}])
        );
        assert_eq!(doc["dataform_table"], "poliza_detalle_raw");
    }
}
