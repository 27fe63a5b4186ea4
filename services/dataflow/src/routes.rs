//! The HTTP surface: `POST /launch`, `GET /jobs/{job_id}` and `POST /jobs/{job_id}:cancel`.

mod openapi;

pub use openapi::document;

use axum::extract::State as Shared;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sigma_shared::extract::{JsonBody, Path, Query};
use utoipa::{IntoParams, ToSchema};

use crate::dataflow::RequestedState;
use crate::error::Error;
use crate::launch::{DryRun, LaunchRequest, Launched, Launcher};
use crate::naming::{JobId, ProjectId, Region};
use crate::state::{self, State};

pub fn app(launcher: Launcher) -> Router {
    sigma_shared::server::finish(
        Router::new()
            .route("/launch", post(launch))
            .route("/jobs/{job_id}", get(status).post(job_method))
            .with_state(launcher),
        &document(),
    )
}

/// Launches the Flex Template of the pipeline the object's name selects, once per upload.
///
/// Each upload (object generation) launches one job, whatever the number of deliveries,
/// retries or crashes: a duplicate is answered with the job already launched (`"adopted":
/// true`). A re-run (`attempt` 2 and up) adopts an earlier attempt's job that succeeded or
/// still runs, and launches its own `-aN` job only when every earlier one ended without
/// loading. With `"dry_run": true` nothing is written or launched: Dataflow validates the
/// request and the answer is the plan (`entity`, `fecha_lote`, `job_name`, `project`,
/// `region`, `template`, `parameters`, `environment`, `config_uri`, `config`,
/// `dataform_table`, `attempt`) and the exact `flexTemplates.launch` body.
#[utoipa::path(
    post,
    path = "/launch",
    tag = "dataflow",
    operation_id = "launch",
    request_body(
        content = LaunchRequest,
        description = "Any `Content-Type`: the body is read as JSON. Unknown fields (`dryRun`, a typo) are refused, so a misspelt `dry_run` can never launch a real job.",
        example = json!({"bucket": "company_output_bucket", "name": "data/20240115/poliza_detalle.gz",
                         "generation": "1705312800123456"})
    ),
    responses(
        (status = 200, description = "The upload's job: launched now, or adopted; or, for a dry run, the plan.",
         body = LaunchAnswer,
         example = json!({"job_id": "2024-01-15_04_05_06-1234567890123456789",
                          "job_name": "poliza-detalle-2024-01-15-gshdvvbl1c",
                          "project": "company-data-prod", "region": "europe-west1",
                          "state": "PENDING", "dataflow_state": "JOB_STATE_PENDING",
                          "entity": "poliza_detalle", "fecha_lote": "2024-01-15", "generation": "1705312800123456",
                          "config_uri": "gs://company_config_bucket/configs/poliza_detalle/2024-01-15/poliza-detalle-2024-01-15-gshdvvbl1c.config",
                          "dataform_table": "polizas",
                          "console_url": "https://console.cloud.google.com/dataflow/jobs/europe-west1/2024-01-15_04_05_06-1234567890123456789?project=company-data-prod",
                          "attempt": 1, "adopted": false}))
    )
)]
async fn launch(
    Shared(launcher): Shared<Launcher>,
    JsonBody(request): JsonBody<LaunchRequest>,
) -> Result<Json<LaunchAnswer>, Error> {
    if request.dry_run {
        return Ok(Json(LaunchAnswer::DryRun(Box::new(
            launcher.dry_run(&request).await?,
        ))));
    }
    let launched = launcher.launch(&request).await?;
    launcher.publish(&request, &launched);
    Ok(Json(LaunchAnswer::Launched(Box::new(launched))))
}

/// A launch's answer is the job, or for a dry run the plan: callers tell them apart by
/// `dry_run`, which only the plan has.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
enum LaunchAnswer {
    Launched(Box<Launched>),
    DryRun(Box<DryRun>),
}

/// A misspelt parameter (`?regoin=`) is refused rather than silently replaced by the
/// default region, which would report on another region's job or a 404.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StatusQuery {
    /// The job's region; default `DATAFLOW_REGION` (or the registry's `defaults.region`).
    region: Option<Region>,
}

/// A job's state as sigma reports it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = JobStatus)]
struct Status {
    job_id: JobId,
    job_name: String,
    project: ProjectId,
    region: Region,
    /// What the caller branches on once `terminal`: only `SUCCEEDED` means the file loaded.
    state: State,
    /// Dataflow's own `JOB_STATE_*`, absent when it reported none.
    dataflow_state: Option<String>,
    /// Whether the state is final; poll until it is.
    terminal: bool,
    /// A failed job's first 5 error messages, oldest first, each cut to at most 2 KB.
    #[schema(max_items = 5)]
    errors: Vec<String>,
    /// How many error messages the job logged.
    errors_total: usize,
    /// The job that replaced this one, for an updated job.
    #[serde(skip_serializing_if = "Option::is_none")]
    replaced_by_job_id: Option<String>,
    console_url: String,
}

/// A failed job can log hundreds of long error messages; the workflow stores this answer
/// in its variables (512 KB for a whole execution), so the answer carries the first few,
/// each cut to a bounded length, and the count. The console URL leads to the rest.
const MAX_ERRORS: usize = 5;
const MAX_ERROR_BYTES: usize = 2048;

fn first_errors(errors: Vec<String>) -> Vec<String> {
    errors
        .into_iter()
        .take(MAX_ERRORS)
        .map(|mut message| {
            if message.len() > MAX_ERROR_BYTES {
                let mut end = MAX_ERROR_BYTES - '…'.len_utf8();
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
                message.push('…');
            }
            message
        })
        .collect()
}

/// The job's state, mapped from Dataflow's to the five sigma reports.
#[utoipa::path(
    get,
    path = "/jobs/{job_id}",
    tag = "dataflow",
    operation_id = "job_status",
    params(("job_id" = JobId, Path, description = "The Dataflow job id `/launch` answered."), StatusQuery),
    responses(
        (status = 200, description = "The job's state.", body = Status,
         example = json!({"job_id": "2024-01-15_04_05_06-1234567890123456789",
                          "job_name": "poliza-detalle-2024-01-15-gshdvvbl1c",
                          "project": "company-data-prod", "region": "europe-west1",
                          "state": "FAILED", "dataflow_state": "JOB_STATE_FAILED", "terminal": true,
                          "errors": ["row 7: poliza_id is null", "Workflow failed."], "errors_total": 2,
                          "console_url": "https://console.cloud.google.com/dataflow/jobs/europe-west1/2024-01-15_04_05_06-1234567890123456789?project=company-data-prod"}))
    )
)]
async fn status(
    Shared(launcher): Shared<Launcher>,
    Path(job_id): Path<String>,
    Query(query): Query<StatusQuery>,
) -> Result<Json<Status>, Error> {
    let job_id = parse_job_id(&job_id)?;
    let region = query.region.unwrap_or_else(|| launcher.site.region.clone());
    Ok(Json(status_of(&launcher, region, &job_id).await?))
}

fn parse_job_id(text: &str) -> Result<JobId, Error> {
    text.parse()
        .map_err(|e: crate::naming::NamingError| Error::InvalidRequest(e.to_string()))
}

async fn status_of(launcher: &Launcher, region: Region, job_id: &JobId) -> Result<Status, Error> {
    let project = &launcher.site.project;
    let job = launcher.dataflow.job(project, &region, job_id).await?;
    let (state, terminal) = state::map(job.current_state.as_deref());
    let all_errors = if state == State::Failed {
        launcher
            .dataflow
            .error_messages(project, &region, job_id)
            .await?
    } else {
        Vec::new()
    };
    let errors_total = all_errors.len();
    Ok(Status {
        console_url: crate::launch::console_url(project, &region, &job.id),
        job_id: job.id,
        job_name: job.name,
        project: project.clone(),
        region,
        state,
        dataflow_state: job.current_state,
        terminal,
        errors: first_errors(all_errors),
        errors_total,
        replaced_by_job_id: job.replaced_by_job_id,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CancelQuery {
    /// The job's region; default `DATAFLOW_REGION` (or the registry's `defaults.region`).
    region: Option<Region>,
    /// Drain (streaming jobs only) instead of cancelling.
    #[serde(default)]
    drain: bool,
}

/// A job's state after the cancel.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = JobCancelled)]
struct Cancelled {
    #[serde(flatten)]
    status: Status,
    /// `false` when the job had already ended, so nothing was asked of Dataflow.
    cancel_requested: bool,
}

/// `POST /jobs/{job_id}:cancel`: the workflow's way out at its poll deadline, so a job it
/// gave up on stops billing and cannot succeed later with nobody to run Dataform for it.
/// Idempotent: a job that has ended answers 200 with its state, whether it ended on its own
/// or by an earlier cancel; a cancel that races the job's own end is answered the same way.
#[utoipa::path(
    post,
    path = "/jobs/{job_id}:cancel",
    tag = "dataflow",
    operation_id = "cancel_job",
    params(("job_id" = JobId, Path, description = "The Dataflow job id `/launch` answered."), CancelQuery),
    responses(
        (status = 200, description = "The job's state, and whether a cancel was asked for.", body = Cancelled,
         example = json!({"job_id": "2024-01-15_04_05_06-1234567890123456789",
                          "job_name": "poliza-detalle-2024-01-15-gshdvvbl1c",
                          "project": "company-data-prod", "region": "europe-west1",
                          "state": "RUNNING", "dataflow_state": "JOB_STATE_CANCELLING", "terminal": false,
                          "errors": [], "errors_total": 0,
                          "console_url": "https://console.cloud.google.com/dataflow/jobs/europe-west1/2024-01-15_04_05_06-1234567890123456789?project=company-data-prod",
                          "cancel_requested": true}))
    )
)]
async fn job_method(
    Shared(launcher): Shared<Launcher>,
    Path(target): Path<String>,
    Query(query): Query<CancelQuery>,
) -> Result<Json<Cancelled>, Error> {
    let Some(job_id) = target.strip_suffix(":cancel") else {
        return Err(Error::UnknownMethod(target));
    };
    let job_id = parse_job_id(job_id)?;
    let region = query.region.unwrap_or_else(|| launcher.site.region.clone());
    let project = &launcher.site.project;
    let requested = if query.drain {
        RequestedState::Drained
    } else {
        RequestedState::Cancelled
    };
    let job = launcher.dataflow.job(project, &region, &job_id).await?;
    let mut cancel_requested = false;
    if !state::map(job.current_state.as_deref()).1 {
        match launcher
            .dataflow
            .request_state(project, &region, &job_id, requested)
            .await
        {
            Ok(_) => {
                cancel_requested = true;
                tracing::info!(job_id = %job_id, requested = requested.as_str(), "asked Dataflow to stop the job");
            }
            Err(refused) => {
                let now = launcher.dataflow.job(project, &region, &job_id).await?;
                if !state::map(now.current_state.as_deref()).1 {
                    return Err(refused.into());
                }
            }
        }
    }
    Ok(Json(Cancelled {
        status: status_of(&launcher, region, &job_id).await?,
        cancel_requested,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_jobs_errors_are_bounded_in_number_and_length() {
        let errors: Vec<String> = (0..100)
            .map(|i| format!("{i}:{}", "ñ".repeat(3000)))
            .collect();
        let kept = first_errors(errors);
        assert_eq!(kept.len(), MAX_ERRORS);
        assert!(kept[0].starts_with("0:"));
        for message in &kept {
            assert!(message.len() <= MAX_ERROR_BYTES, "{}", message.len());
            assert!(message.ends_with('…'));
        }
        assert_eq!(first_errors(vec!["short".into()]), ["short"]);
    }
}
