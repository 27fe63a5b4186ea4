//! Launching one upload's job exactly once, whatever the deliveries and failures.
//!
//! Dataflow refuses a second *active* job with a name, and the name is derived from the
//! upload, so Dataflow itself is the lock against concurrent duplicates (the loser gets
//! 409 and adopts the winner's job). What Dataflow cannot stop is a duplicate after the job
//! has finished: the launch record in GCS covers that, and when the record is missing
//! (the process died between launching and recording) the job is found by name first.
//!
//! A re-run (`attempt` 2, 3, ...) first looks at every earlier attempt's job: one that
//! succeeded is adopted (a loaded file is never loaded twice), one still running is adopted
//! too. Only when every earlier job ended without loading (failed, cancelled, drained,
//! updated) does the re-run launch its own job, named `...-a{attempt}`, with its own config
//! and launch record; no record is ever overwritten.

use std::sync::Arc;

use google_cloud_storage::client::Storage;
use serde::{Deserialize, Serialize};
use sigma_shared::events::{Event, EventType, Events};
use sigma_shared::storage::{self, StorageError};
use sigma_shared::{Attempt, BucketName, Generation, ObjectName, ObjectRef};

use crate::dataflow::{Dataflow, JobFilter};
use crate::error::Error;
use crate::live_registry::LiveRegistry;
use crate::naming::{DataformTable, EntityName, FechaLote, JobId, JobName, ProjectId, Region};
use crate::plan::{self, LaunchPlan, Site};
use crate::records::{self, LaunchRecord};
use crate::registry::Registry;
use crate::state::{self, State};
use crate::wire::{Job, LaunchFlexTemplateRequest};

/// Everything a request needs; cheap to clone.
#[derive(Clone)]
pub struct Launcher {
    pub registry: Arc<LiveRegistry>,
    pub site: Site,
    pub storage: Storage,
    pub dataflow: Dataflow,
    pub events: Events,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchRequest {
    pub bucket: BucketName,
    pub name: ObjectName,
    /// The upload to load; the object's current generation when absent.
    #[serde(default)]
    pub generation: Option<Generation>,
    /// Which run of the upload's chain this is: 1 from Eventarc, 2 and up from a replay.
    #[serde(default)]
    pub attempt: Attempt,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Launched {
    pub job_id: JobId,
    pub job_name: JobName,
    pub project: ProjectId,
    pub region: Region,
    pub state: State,
    pub dataflow_state: Option<String>,
    pub entity: EntityName,
    pub fecha_lote: FechaLote,
    pub generation: Generation,
    pub config_uri: String,
    pub dataform_table: DataformTable,
    pub console_url: String,
    /// The attempt whose job this is: the request's own, or the earlier one it adopted.
    pub attempt: Attempt,
    /// `true` when this request found the job already launched and launched nothing.
    pub adopted: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DryRun {
    pub dry_run: bool,
    pub plan: LaunchPlan,
    pub launch_request: LaunchFlexTemplateRequest,
}

pub fn console_url(project: &ProjectId, region: &Region, job_id: &JobId) -> String {
    format!("https://console.cloud.google.com/dataflow/jobs/{region}/{job_id}?project={project}")
}

impl Launcher {
    pub async fn dry_run(&self, request: &LaunchRequest) -> Result<DryRun, Error> {
        let object = ObjectRef::new(request.bucket.clone(), request.name.clone());
        let registry = self.registry.current();
        registry.select(&object)?;
        let generation = match request.generation {
            Some(generation) => generation,
            None => self.current_generation(&object).await?,
        };
        let plan = self.plan(&registry, request, &object, generation)?;
        let launch_request = plan.launch_request(true);
        self.dataflow
            .launch(&plan.project, &plan.region, &launch_request)
            .await?;
        Ok(DryRun {
            dry_run: true,
            plan,
            launch_request,
        })
    }

    pub async fn launch(&self, request: &LaunchRequest) -> Result<Launched, Error> {
        let object = ObjectRef::new(request.bucket.clone(), request.name.clone());
        let span = tracing::Span::current();
        span.record("object", tracing::field::display(&object));
        let registry = self.registry.current();
        registry.select(&object)?;

        let (generation, checked) = match request.generation {
            Some(generation) => (generation, false),
            None => (self.current_generation(&object).await?, true),
        };
        span.record("generation", generation.get());
        span.record("attempt", request.attempt.get());
        let plan = self.plan(&registry, request, &object, generation)?;
        let record_object = records::record_object(&self.site, &plan.job_name);

        if let Some(record) = records::read_record(&self.storage, &record_object).await? {
            return self.recorded(plan, record).await;
        }
        if let Some(earlier) = self.earlier_job_to_adopt(&plan, request.attempt).await? {
            return Ok(earlier);
        }
        if !checked {
            let current = self.current_generation(&object).await?;
            if current != generation {
                return Err(Error::StaleGeneration {
                    object,
                    requested: generation,
                    current,
                });
            }
        }
        if let Some(job) = self
            .dataflow
            .find_by_name(
                &plan.project,
                &plan.region,
                plan.job_name.as_str(),
                JobFilter::All,
            )
            .await?
        {
            tracing::info!(job_id = %job.id, job_name = %plan.job_name, "adopting a job launched earlier without a record");
            return self.record(&plan, &record_object, &job, true).await;
        }

        records::write_latest_config(&self.storage, &plan).await?;
        records::write_upload_config(&self.storage, &plan).await?;
        let launched = self
            .dataflow
            .launch(&plan.project, &plan.region, &plan.launch_request(false))
            .await;
        let (job, adopted) = match launched {
            Ok(Some(job)) => (job, false),
            Ok(None) => {
                return Err(crate::dataflow::DataflowError::Malformed(
                    "the launch response has no job".into(),
                )
                .into());
            }
            Err(e) if e.is_conflict() => {
                let job = self
                    .dataflow
                    .find_by_name(
                        &plan.project,
                        &plan.region,
                        plan.job_name.as_str(),
                        JobFilter::Active,
                    )
                    .await?
                    .ok_or_else(|| Error::ConflictUnresolved(plan.job_name.clone()))?;
                tracing::info!(job_id = %job.id, job_name = %plan.job_name, "adopting the running job Dataflow reported in a 409");
                (job, true)
            }
            Err(e) => return Err(e.into()),
        };
        self.record(&plan, &record_object, &job, adopted).await
    }

    /// The job of an earlier attempt that this re-run must adopt instead of launching: one
    /// that succeeded, or one still running. An earlier attempt without a record may have
    /// launched and died before recording, so its job is looked up by name.
    async fn earlier_job_to_adopt(
        &self,
        plan: &LaunchPlan,
        attempt: Attempt,
    ) -> Result<Option<Launched>, Error> {
        let generation = plan.generation;
        for earlier in attempt.up_to().rev().skip(1) {
            let job_name = JobName::derive(&plan.entity, plan.fecha_lote, generation, earlier);
            let object = records::record_object(&self.site, &job_name);
            let (job, project, region, config_uri) =
                match records::read_record(&self.storage, &object).await? {
                    Some(record) => (
                        self.dataflow
                            .job(&record.project, &record.region, &record.job_id)
                            .await?,
                        record.project,
                        record.region,
                        record.config_uri,
                    ),
                    None => match self
                        .dataflow
                        .find_by_name(
                            &plan.project,
                            &plan.region,
                            job_name.as_str(),
                            JobFilter::All,
                        )
                        .await?
                    {
                        Some(job) => (
                            job,
                            plan.project.clone(),
                            plan.region.clone(),
                            plan::config_uri(&self.site, &plan.entity, plan.fecha_lote, &job_name),
                        ),
                        None => continue,
                    },
                };
            let (state, terminal) = state::map(job.current_state.as_deref());
            if state == State::Succeeded || !terminal {
                tracing::info!(job_id = %job.id, job_name = %job_name, attempt = earlier.get(), ?state, "a re-run adopts an earlier attempt's job");
                let adopted = LaunchPlan {
                    job_name,
                    project,
                    region,
                    config_uri,
                    ..plan.clone()
                };
                return Ok(Some(self.answer(&adopted, &job, earlier, true)));
            }
        }
        Ok(None)
    }

    fn plan(
        &self,
        registry: &Registry,
        request: &LaunchRequest,
        object: &ObjectRef,
        generation: Generation,
    ) -> Result<LaunchPlan, Error> {
        Ok(plan::plan(
            registry,
            &self.site,
            object,
            Some(generation),
            request.attempt,
        )?)
    }

    async fn current_generation(&self, object: &ObjectRef) -> Result<Generation, Error> {
        let found = storage::stat(&self.storage, object)
            .await?
            .ok_or_else(|| StorageError::NotFound(object.clone()))?;
        Generation::new(found.generation).map_err(|e| Error::InvalidRequest(e.to_string()))
    }

    async fn record(
        &self,
        plan: &LaunchPlan,
        object: &ObjectRef,
        job: &Job,
        adopted: bool,
    ) -> Result<Launched, Error> {
        let record = LaunchRecord {
            job_id: job.id.clone(),
            job_name: plan.job_name.clone(),
            project: plan.project.clone(),
            region: plan.region.clone(),
            entity: plan.entity.clone(),
            fecha_lote: plan.fecha_lote,
            generation: plan
                .generation
                .expect("launch plans always have a generation"),
            config_uri: plan.config_uri.clone(),
            dataform_table: plan.dataform_table.clone(),
            attempt: plan.attempt,
            recorded_at: chrono::Utc::now().to_rfc3339(),
        };
        let stored = records::write_record(&self.storage, object, record).await?;
        if stored.job_id != job.id {
            return self.recorded(plan.clone(), stored).await;
        }
        Ok(self.answer(plan, job, plan.attempt, adopted))
    }

    /// The recorded job, where it was launched (the registry may have moved the entity to
    /// another region since).
    async fn recorded(
        &self,
        mut plan: LaunchPlan,
        record: LaunchRecord,
    ) -> Result<Launched, Error> {
        let job = self
            .dataflow
            .job(&record.project, &record.region, &record.job_id)
            .await?;
        plan.project = record.project;
        plan.region = record.region;
        Ok(self.answer(&plan, &job, record.attempt, true))
    }

    /// Reports a launch or an adoption on the events topic (when one is configured).
    pub fn publish(&self, request: &LaunchRequest, launched: &Launched) {
        let event_type = if launched.adopted {
            EventType::Adopted
        } else {
            EventType::Launched
        };
        self.events.publish(
            Event::new(
                event_type,
                ObjectRef::new(request.bucket.clone(), request.name.clone()),
            )
            .generation(launched.generation)
            .entity(&launched.entity)
            .detail(serde_json::json!({
                "job_id": launched.job_id,
                "job_name": launched.job_name,
                "region": launched.region,
                "config_uri": launched.config_uri,
                "dataform_table": launched.dataform_table,
                "attempt": launched.attempt,
            })),
        );
    }

    fn answer(&self, plan: &LaunchPlan, job: &Job, attempt: Attempt, adopted: bool) -> Launched {
        let (state, _) = state::map(job.current_state.as_deref());
        Launched {
            job_id: job.id.clone(),
            job_name: plan.job_name.clone(),
            project: plan.project.clone(),
            region: plan.region.clone(),
            state,
            dataflow_state: job.current_state.clone(),
            entity: plan.entity.clone(),
            fecha_lote: plan.fecha_lote,
            generation: plan
                .generation
                .expect("launch plans always have a generation"),
            config_uri: plan.config_uri.clone(),
            dataform_table: plan.dataform_table.clone(),
            console_url: console_url(&plan.project, &plan.region, &job.id),
            attempt,
            adopted,
        }
    }
}
