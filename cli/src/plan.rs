//! `sigma plan`: what sigma-dataflow would do with an upload, computed offline.
//!
//! It calls the same planner as the service, so the job name, parameters, environment and
//! config document shown here are exactly what the service would write and send.

use std::path::PathBuf;

use anyhow::bail;
use sigma_dataflow::config::site_overrides;
use sigma_dataflow::naming::{ProjectId, Region};
use sigma_dataflow::plan::{self, Site};
use sigma_dataflow::registry::Registry;
use sigma_shared::{Attempt, BucketName, Generation, GsUri, ObjectName, ObjectRef};

use crate::pipelines;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// The uploaded object: `data/20240115/poliza_detalle.gz` or `gs://bucket/data/...`
    object: String,
    /// The pipeline registry (YAML), as given to the service in PIPELINES
    #[arg(long)]
    pipelines: PathBuf,
    /// The object's generation; without it the job name lacks its per-upload suffix
    #[arg(long)]
    generation: Option<Generation>,
    /// Which run of the upload: a replay's attempt, whose job name ends in -a{ATTEMPT}
    #[arg(long, default_value_t = Attempt::FIRST)]
    attempt: Attempt,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
    /// Bucket of a bare object name [default: the registry's defaults.source_bucket]
    #[arg(long)]
    bucket: Option<BucketName>,
    /// Project [default: PROJECT_ID, GOOGLE_CLOUD_PROJECT, then defaults.project]
    #[arg(long)]
    project: Option<ProjectId>,
    /// Default region [default: DATAFLOW_REGION, then defaults.region]
    #[arg(long)]
    region: Option<Region>,
    /// Bucket for job configs [default: CONFIG_BUCKET, then defaults.config_bucket]
    #[arg(long)]
    config_bucket: Option<BucketName>,
}

pub fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let registry = pipelines::load(&args.pipelines)?;
    let object = object(&args.object, args.bucket.clone(), &registry)?;
    let mut overrides = site_overrides()?;
    overrides.project = args.project.or(overrides.project);
    overrides.region = args.region.or(overrides.region);
    overrides.config_bucket = args.config_bucket.or(overrides.config_bucket);
    let site = Site::resolve(&registry.site, overrides).map_err(anyhow::Error::msg)?;
    let plan = plan::plan(&registry, &site, &object, args.generation, args.attempt)?;
    if args.generation.is_none() {
        eprintln!(
            "sigma: no --generation: the job name lacks the per-upload suffix the service always adds"
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(());
    }
    println!("entity      {}", plan.entity);
    println!("fecha_lote  {}", plan.fecha_lote);
    println!("job name    {}", plan.job_name);
    println!("project     {}", plan.project);
    println!("region      {}", plan.region);
    println!("template    {}", plan.template);
    println!("config      {}", plan.config_uri);
    println!("parameters");
    for (name, value) in &plan.parameters {
        println!("  {name} = {value}");
    }
    println!(
        "environment\n{}",
        serde_json::to_string_pretty(&plan.environment)?
    );
    println!(
        "config document\n{}",
        serde_json::to_string_pretty(&plan.config)?
    );
    Ok(())
}

fn object(raw: &str, bucket: Option<BucketName>, registry: &Registry) -> anyhow::Result<ObjectRef> {
    if raw.starts_with("gs://") {
        return Ok(raw.parse::<GsUri>()?.0);
    }
    let name: ObjectName = raw.parse()?;
    let Some(bucket) = bucket.or_else(|| registry.source_bucket.clone()) else {
        bail!(
            "{raw} has no bucket: pass gs://BUCKET/NAME, --bucket, or set defaults.source_bucket in the registry"
        );
    };
    Ok(ObjectRef::new(bucket, name))
}
