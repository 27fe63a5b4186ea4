//! The HTTP surface: `POST /launch`, `GET /jobs/{job_id}` and `POST /jobs/{job_id}:cancel`.

use axum::extract::State as Shared;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sigma_shared::extract::{JsonBody, Path, Query};

use crate::dataflow::RequestedState;
use crate::error::Error;
use crate::launch::{LaunchRequest, Launcher};
use crate::naming::{JobId, ProjectId, Region};
use crate::state::{self, State};

pub fn app(launcher: Launcher) -> Router {
    sigma_shared::server::finish(
        Router::new()
            .route("/launch", post(launch))
            .route("/jobs/{job_id}", get(status).post(job_method))
            .with_state(launcher),
    )
}

async fn launch(
    Shared(launcher): Shared<Launcher>,
    JsonBody(request): JsonBody<LaunchRequest>,
) -> Result<Response, Error> {
    if request.dry_run {
        return Ok(Json(launcher.dry_run(&request).await?).into_response());
    }
    let launched = launcher.launch(&request).await?;
    launcher.publish(&request, &launched);
    Ok(Json(launched).into_response())
}

/// A misspelt parameter (`?regoin=`) is refused rather than silently replaced by the
/// default region, which would report on another region's job or a 404.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    region: Option<Region>,
}

#[derive(Debug, Serialize)]
struct Status {
    job_id: JobId,
    job_name: String,
    project: ProjectId,
    region: Region,
    state: State,
    dataflow_state: Option<String>,
    terminal: bool,
    errors: Vec<String>,
    errors_total: usize,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelQuery {
    region: Option<Region>,
    /// Drain (streaming jobs only) instead of cancelling.
    #[serde(default)]
    drain: bool,
}

#[derive(Debug, Serialize)]
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
