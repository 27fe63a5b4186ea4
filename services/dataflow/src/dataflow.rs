//! The Dataflow v1b3 REST API over reqwest, with tokens from `google-cloud-auth`.
//!
//! There is no official Rust client for Dataflow; the few calls sigma makes are plain JSON
//! requests. Failures are sorted by Google's RPC code first and the HTTP status only when
//! there is none (see [`classify`]), so a throttled or unreachable Dataflow is a retryable
//! 503 and a rejected request carries Google's message.

use std::time::Duration;

use axum::http::StatusCode;
use google_cloud_auth::credentials::AccessTokenCredentials;
use serde::de::DeserializeOwned;
use sigma_shared::HttpError;
use sigma_shared::google::Failure;

use crate::naming::{JobId, ProjectId, Region};
use crate::wire::{
    ErrorBody, Job, LaunchFlexTemplateRequest, LaunchFlexTemplateResponse, ListJobMessagesResponse,
    ListJobsResponse,
};

pub const DEFAULT_ENDPOINT: &str = "https://dataflow.googleapis.com";
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// More pages than this in a name lookup or message listing means something is wrong.
const MAX_PAGES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum DataflowError {
    #[error("no access token for Dataflow: {0}")]
    Credentials(String),
    #[error("Dataflow did not answer: {0}")]
    Transport(String),
    #[error("Dataflow answered {status}{}: {message}", rpc.as_deref().map(|r| format!(" {r}")).unwrap_or_default())]
    Google {
        status: u16,
        rpc: Option<String>,
        failure: Failure,
        message: String,
    },
    #[error("Dataflow sent an answer sigma cannot read: {0}")]
    Malformed(String),
}

impl DataflowError {
    /// Dataflow refused a second active job of this name (`ALREADY_EXISTS`), which is how a
    /// concurrent duplicate learns that its job is running. An `ABORTED` 409 is not this.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Self::Google {
                failure: Failure::Rejected(StatusCode::CONFLICT),
                ..
            }
        )
    }
}

/// What a Dataflow error means for the request that met it.
///
/// The RPC code in the body decides, because the HTTP status is only its transport:
/// `ABORTED` and `ALREADY_EXISTS` both arrive as 409, yet one is worth retrying and the
/// other means the job exists; quota errors are `RESOURCE_EXHAUSTED` whatever the status.
/// Without an RPC code (a proxy's answer) the HTTP status decides.
///
/// HTTP 412 is decided on its own, first: sigma sends Dataflow no conditional request (no
/// etag or `If-Match`; `jobs.update` is sent without either), and Google maps
/// `FAILED_PRECONDITION` to 400, not 412. A 412 is therefore not another writer winning a race (which a retry would settle,
/// as for Cloud Storage) but an answer sigma cannot act on: 502 `dataflow_error`, not
/// retried, with Google's message for the person who looks.
pub fn classify(http: u16, rpc: Option<&str>) -> Failure {
    if http == 412 {
        return Failure::Unexpected;
    }
    match rpc {
        Some("ALREADY_EXISTS") => Failure::Rejected(StatusCode::CONFLICT),
        Some("NOT_FOUND") => Failure::NotFound,
        Some("INVALID_ARGUMENT" | "OUT_OF_RANGE" | "FAILED_PRECONDITION") => {
            Failure::Rejected(StatusCode::BAD_REQUEST)
        }
        Some("PERMISSION_DENIED") => Failure::Rejected(StatusCode::FORBIDDEN),
        Some("UNAUTHENTICATED") => Failure::Rejected(StatusCode::UNAUTHORIZED),
        Some("RESOURCE_EXHAUSTED") => Failure::Throttled,
        Some("UNAVAILABLE" | "ABORTED" | "DEADLINE_EXCEEDED" | "INTERNAL" | "UNKNOWN") => {
            Failure::Transient
        }
        _ => Failure::of_http(http),
    }
}

impl HttpError for DataflowError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Credentials(_) | Self::Transport(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Google { failure, .. } => failure.status(),
            Self::Malformed(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Credentials(_) => "credentials_unavailable",
            Self::Transport(_) => "dataflow_unavailable",
            Self::Google { failure, .. } => match failure {
                Failure::Throttled => "quota_exhausted",
                Failure::Transient => "dataflow_unavailable",
                Failure::NotFound => "dataflow_not_found",
                Failure::Rejected(_) | Failure::PreconditionFailed => "dataflow_rejected",
                Failure::Unexpected => "dataflow_error",
            },
            Self::Malformed(_) => "dataflow_error",
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Self::Credentials(_) | Self::Transport(_) => true,
            Self::Google { failure, .. } => failure.retryable(),
            Self::Malformed(_) => false,
        }
    }
}

/// The end a caller may ask a running job for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedState {
    Cancelled,
    /// Streaming jobs only: stop reading, finish what was read.
    Drained,
}

impl RequestedState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "JOB_STATE_CANCELLED",
            Self::Drained => "JOB_STATE_DRAINED",
        }
    }
}

/// Which jobs `jobs.list` returns.
#[derive(Debug, Clone, Copy)]
pub enum JobFilter {
    All,
    Active,
}

#[derive(Clone)]
pub struct Dataflow {
    http: reqwest::Client,
    endpoint: String,
    credentials: AccessTokenCredentials,
}

impl Dataflow {
    pub fn new(endpoint: &str, credentials: AccessTokenCredentials, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .expect("a reqwest client with rustls always builds");
        Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            credentials,
        }
    }

    fn url(&self, project: &ProjectId, region: &Region, rest: &str) -> String {
        format!(
            "{}/v1b3/projects/{project}/locations/{region}/{rest}",
            self.endpoint
        )
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, DataflowError> {
        let token = self
            .credentials
            .access_token()
            .await
            .map_err(|e| DataflowError::Credentials(e.to_string()))?;
        let response = request
            .bearer_auth(token.token)
            .send()
            .await
            .map_err(|e| DataflowError::Transport(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| DataflowError::Transport(e.without_url().to_string()))?;
        if !(200..300).contains(&status) {
            let (message, rpc) = match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(b) => (b.error.message, b.error.status.filter(|s| !s.is_empty())),
                Err(_) => (
                    String::from_utf8_lossy(&body).chars().take(500).collect(),
                    None,
                ),
            };
            return Err(DataflowError::Google {
                status,
                failure: classify(status, rpc.as_deref()),
                rpc,
                message,
            });
        }
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            &body[..]
        };
        serde_json::from_slice(body).map_err(|e| DataflowError::Malformed(e.to_string()))
    }

    /// `projects.locations.flexTemplates.launch`; `None` for a validate-only request.
    pub async fn launch(
        &self,
        project: &ProjectId,
        region: &Region,
        request: &LaunchFlexTemplateRequest,
    ) -> Result<Option<Job>, DataflowError> {
        let response: LaunchFlexTemplateResponse = self
            .send(
                self.http
                    .post(self.url(project, region, "flexTemplates:launch"))
                    .json(request),
            )
            .await?;
        Ok(response.job)
    }

    /// `projects.locations.jobs.get` (summary view).
    pub async fn job(
        &self,
        project: &ProjectId,
        region: &Region,
        job_id: &JobId,
    ) -> Result<Job, DataflowError> {
        self.send(
            self.http
                .get(self.url(project, region, &format!("jobs/{job_id}")))
                .query(&[("view", "JOB_VIEW_SUMMARY")]),
        )
        .await
    }

    /// `projects.locations.jobs.update` with only `requestedState`: how a job is cancelled
    /// (`JOB_STATE_CANCELLED`) or drained (`JOB_STATE_DRAINED`).
    pub async fn request_state(
        &self,
        project: &ProjectId,
        region: &Region,
        job_id: &JobId,
        requested: RequestedState,
    ) -> Result<Job, DataflowError> {
        self.send(
            self.http
                .put(self.url(project, region, &format!("jobs/{job_id}")))
                .json(&serde_json::json!({ "requestedState": requested.as_str() })),
        )
        .await
    }

    /// The job called `name`, preferring one still running; found through `jobs.list`,
    /// which is how a launch that succeeded for Dataflow but not for us is adopted.
    pub async fn find_by_name(
        &self,
        project: &ProjectId,
        region: &Region,
        name: &str,
        filter: JobFilter,
    ) -> Result<Option<Job>, DataflowError> {
        let filter = match filter {
            JobFilter::All => "ALL",
            JobFilter::Active => "ACTIVE",
        };
        let mut found = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                ("filter", filter.to_owned()),
                ("name", name.to_owned()),
                ("view", "JOB_VIEW_SUMMARY".to_owned()),
            ];
            if let Some(token) = page_token.take() {
                query.push(("pageToken", token));
            }
            let page: ListJobsResponse = self
                .send(
                    self.http
                        .get(self.url(project, region, "jobs"))
                        .query(&query),
                )
                .await?;
            found.extend(page.jobs.into_iter().filter(|j| j.name == name));
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        let active = found
            .iter()
            .position(|j| !crate::state::map(j.current_state.as_deref()).1);
        Ok(match active {
            Some(i) => Some(found.swap_remove(i)),
            None => found.into_iter().next(),
        })
    }

    /// The job's error-level messages (`jobs.messages.list`), oldest first.
    pub async fn error_messages(
        &self,
        project: &ProjectId,
        region: &Region,
        job_id: &JobId,
    ) -> Result<Vec<String>, DataflowError> {
        let mut messages = Vec::new();
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("minimumImportance", "JOB_MESSAGE_ERROR".to_owned())];
            if let Some(token) = page_token.take() {
                query.push(("pageToken", token));
            }
            let page: ListJobMessagesResponse = self
                .send(
                    self.http
                        .get(self.url(project, region, &format!("jobs/{job_id}/messages")))
                        .query(&query),
                )
                .await?;
            messages.extend(
                page.job_messages
                    .into_iter()
                    .filter(|m| m.message_importance.as_deref() == Some("JOB_MESSAGE_ERROR"))
                    .map(|m| m.message_text),
            );
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        Ok(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rpc_code_decides_before_the_http_status_and_412_is_deliberate() {
        let table = [
            (
                409,
                Some("ALREADY_EXISTS"),
                Failure::Rejected(StatusCode::CONFLICT),
            ),
            (409, Some("ABORTED"), Failure::Transient),
            (409, None, Failure::Rejected(StatusCode::CONFLICT)),
            (429, Some("RESOURCE_EXHAUSTED"), Failure::Throttled),
            (403, Some("RESOURCE_EXHAUSTED"), Failure::Throttled),
            (429, None, Failure::Throttled),
            (
                403,
                Some("PERMISSION_DENIED"),
                Failure::Rejected(StatusCode::FORBIDDEN),
            ),
            (
                400,
                Some("FAILED_PRECONDITION"),
                Failure::Rejected(StatusCode::BAD_REQUEST),
            ),
            (
                400,
                Some("INVALID_ARGUMENT"),
                Failure::Rejected(StatusCode::BAD_REQUEST),
            ),
            (404, Some("NOT_FOUND"), Failure::NotFound),
            (503, Some("UNAVAILABLE"), Failure::Transient),
            (504, Some("DEADLINE_EXCEEDED"), Failure::Transient),
            (500, Some("INTERNAL"), Failure::Transient),
            (412, Some("FAILED_PRECONDITION"), Failure::Unexpected),
            (412, None, Failure::Unexpected),
            (502, None, Failure::Transient),
            (
                418,
                Some("SOMETHING_NEW"),
                Failure::Rejected(StatusCode::IM_A_TEAPOT),
            ),
        ];
        for (http, rpc, expected) in table {
            assert_eq!(classify(http, rpc), expected, "{http} {rpc:?}");
        }
    }
}
