//! A fake Dataflow v1b3 REST API: flex template launches, jobs, job messages.
//!
//! It accepts exactly the discovery document's `LaunchFlexTemplateRequest` (unknown fields,
//! wrong types, bad enums, invalid job names and labels that break Google's label rules are
//! refused with 400 `INVALID_ARGUMENT`, as Dataflow does), answers 409 `ALREADY_EXISTS` for a second active job of one name, and
//! walks each job through a script of states, one step per `jobs.get`. Tests program it
//! through [`Handle`]; a harness in another process uses the `/_fake/...` routes:
//!
//! - `POST /_fake/failures` `{"method": "launch"|"get"|"list"|"messages"|"any", "status": 429, "create": false}`:
//!   the next matching call fails with that status (`create`: a launch creates the job first,
//!   as when a launch fails at the client after Dataflow accepted it).
//! - `POST /_fake/script` `{"states": ["JOB_STATE_PENDING", ...], "messages": [...]}`: states
//!   (and error messages) for jobs launched from now on.
//! - `POST /_fake/jobs/{id}/script` `{"states": [...], "messages": [{"importance", "text"}]}`.
//! - `POST /_fake/quota` `{"max_active_jobs": 8}`: launches beyond that many active jobs in
//!   a project are refused with 429 `RESOURCE_EXHAUSTED`, as Dataflow's concurrent-jobs quota
//!   refuses them (`null` lifts the limit).
//! - `GET /_fake/launches` (bodies of accepted launches), `GET /_fake/jobs`, `GET /_fake/stats`
//!   (`{"peak_active": n, "quota_refusals": n}` since the last `/_fake/quota`).
//!
//! `jobs.update` is the cancel call: `requestedState` `JOB_STATE_CANCELLED` moves a job
//! through `JOB_STATE_CANCELLING` to `JOB_STATE_CANCELLED`; `JOB_STATE_DRAINED` is refused
//! for these batch jobs, and any update of a job that has ended is refused with 400
//! `FAILED_PRECONDITION`, as Dataflow refuses them.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub const TERMINAL: [&str; 5] = [
    "JOB_STATE_DONE",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_UPDATED",
    "JOB_STATE_DRAINED",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Launch,
    Get,
    List,
    Messages,
    Update,
    Any,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub method: Method,
    pub status: u16,
    /// For launches: create the job, then fail anyway.
    #[serde(default)]
    pub create: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// `JOB_MESSAGE_ERROR`, `JOB_MESSAGE_WARNING`, ...
    pub importance: String,
    pub text: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Script {
    #[serde(default)]
    pub states: Vec<String>,
    #[serde(default)]
    pub messages: Vec<Message>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FakeJob {
    pub id: String,
    pub name: String,
    pub project: String,
    pub location: String,
    pub state: String,
    /// States still to come, one per `jobs.get`.
    pub upcoming: VecDeque<String>,
    pub messages: Vec<Message>,
    pub launch: Value,
    /// `jobs.list` calls that still miss this job (Dataflow's listing lags behind launches).
    pub unlisted_for: u32,
}

impl FakeJob {
    fn active(&self) -> bool {
        !TERMINAL.contains(&self.state.as_str())
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "projectId": self.project,
            "name": self.name,
            "type": "JOB_TYPE_BATCH",
            "currentState": self.state,
            "currentStateTime": "2024-01-15T04:05:06Z",
            "createTime": "2024-01-15T04:05:06Z",
            "location": self.location,
        })
    }
}

#[derive(Debug)]
struct Inner {
    jobs: Vec<FakeJob>,
    failures: VecDeque<Failure>,
    script: Script,
    launches: Vec<Value>,
    tokens: Vec<String>,
    next_id: u64,
    max_active_jobs: Option<usize>,
    peak_active: usize,
    quota_refusals: usize,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Stats {
    /// The most jobs that were active at once in one project.
    pub peak_active: usize,
    /// Launches refused because the quota was full.
    pub quota_refusals: usize,
}

#[derive(Debug, Deserialize)]
struct Quota {
    max_active_jobs: Option<usize>,
}

/// The fake's programmable state, shared between the server and its owner.
#[derive(Debug, Clone)]
pub struct Handle(Arc<Mutex<Inner>>);

impl Default for Handle {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Inner {
            jobs: Vec::new(),
            failures: VecDeque::new(),
            script: Script {
                states: vec![
                    "JOB_STATE_PENDING".into(),
                    "JOB_STATE_RUNNING".into(),
                    "JOB_STATE_DONE".into(),
                ],
                messages: Vec::new(),
            },
            launches: Vec::new(),
            tokens: Vec::new(),
            next_id: 1,
            max_active_jobs: None,
            peak_active: 0,
            quota_refusals: 0,
        })))
    }
}

impl Handle {
    pub fn fail_next(&self, method: Method, status: u16) {
        self.0.lock().unwrap().failures.push_back(Failure {
            method,
            status,
            create: false,
        });
    }

    /// The next launch creates its job and still answers `status`.
    pub fn create_then_fail(&self, status: u16) {
        self.0.lock().unwrap().failures.push_back(Failure {
            method: Method::Launch,
            status,
            create: true,
        });
    }

    /// States (first one at creation) and messages for jobs launched from now on.
    pub fn set_script(&self, states: &[&str], messages: &[(&str, &str)]) {
        self.0.lock().unwrap().script = script(states, messages);
    }

    pub fn script_job(&self, job_id: &str, states: &[&str], messages: &[(&str, &str)]) {
        let mut inner = self.0.lock().unwrap();
        if let Some(job) = inner.jobs.iter_mut().find(|j| j.id == job_id) {
            apply(job, script(states, messages));
        }
    }

    /// Adds a job as if launched earlier, by someone else.
    pub fn insert_job(&self, project: &str, location: &str, name: &str, state: &str) -> String {
        let mut inner = self.0.lock().unwrap();
        let id = new_id(&mut inner);
        inner.jobs.push(FakeJob {
            id: id.clone(),
            name: name.into(),
            project: project.into(),
            location: location.into(),
            state: state.into(),
            upcoming: VecDeque::new(),
            messages: Vec::new(),
            launch: Value::Null,
            unlisted_for: 0,
        });
        id
    }

    /// The next `lists` calls of `jobs.list` miss this job, as a lagging listing would.
    pub fn hide_from_lists(&self, job_id: &str, lists: u32) {
        let mut inner = self.0.lock().unwrap();
        if let Some(job) = inner.jobs.iter_mut().find(|j| j.id == job_id) {
            job.unlisted_for = lists;
        }
    }

    /// Bodies of the launches that created jobs or were validated, in order.
    pub fn launches(&self) -> Vec<Value> {
        self.0.lock().unwrap().launches.clone()
    }

    pub fn jobs(&self) -> Vec<FakeJob> {
        self.0.lock().unwrap().jobs.clone()
    }

    /// Dataflow's concurrent-jobs quota: at most `limit` active jobs per project. Starts
    /// the [`Stats`] afresh, so they describe what happened under this limit.
    pub fn limit_active_jobs(&self, limit: Option<usize>) {
        let mut inner = self.0.lock().unwrap();
        inner.max_active_jobs = limit;
        inner.peak_active = 0;
        inner.quota_refusals = 0;
    }

    pub fn stats(&self) -> Stats {
        let inner = self.0.lock().unwrap();
        Stats {
            peak_active: inner.peak_active,
            quota_refusals: inner.quota_refusals,
        }
    }

    /// Bearer tokens seen, one per authenticated request.
    pub fn tokens(&self) -> Vec<String> {
        self.0.lock().unwrap().tokens.clone()
    }
}

fn script(states: &[&str], messages: &[(&str, &str)]) -> Script {
    Script {
        states: states.iter().map(|s| s.to_string()).collect(),
        messages: messages
            .iter()
            .map(|(importance, text)| Message {
                importance: importance.to_string(),
                text: text.to_string(),
            })
            .collect(),
    }
}

fn apply(job: &mut FakeJob, script: Script) {
    let mut states: VecDeque<String> = script.states.into();
    if let Some(first) = states.pop_front() {
        job.state = first;
    }
    job.upcoming = states;
    job.messages = script.messages;
}

fn new_id(inner: &mut Inner) -> String {
    let n = inner.next_id;
    inner.next_id += 1;
    format!("2024-01-15_04_05_{:02}-{}", n % 60, 1_000_000_000_000 + n)
}

fn google_error(status: StatusCode, message: impl Into<String>) -> Response {
    google_error_with(status, rpc_status_of(status), message)
}

fn google_error_with(status: StatusCode, rpc: &str, message: impl Into<String>) -> Response {
    let body =
        json!({"error": {"code": status.as_u16(), "message": message.into(), "status": rpc}});
    (status, axum::Json(body)).into_response()
}

fn rpc_status_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        500 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

/// A refused call: the status and message of the Google error to answer with.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        google_error(self.0, self.1)
    }
}

/// Checks the bearer token and injected failures.
fn admit(
    inner: &mut Inner,
    headers: &HeaderMap,
    method: Method,
) -> Result<Option<Failure>, Refusal> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.trim().is_empty());
    let Some(token) = token else {
        return Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.".into(),
        ));
    };
    inner.tokens.push(token.to_owned());
    let index = inner
        .failures
        .iter()
        .position(|f| f.method == method || f.method == Method::Any);
    let failure = index.and_then(|i| inner.failures.remove(i));
    match failure {
        Some(f) if f.create && method == Method::Launch => Ok(Some(f)),
        Some(f) => {
            let status =
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Err(Refusal(status, format!("injected failure {}", f.status)))
        }
        None => Ok(None),
    }
}

// The discovery document's request shapes; anything else is refused.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LaunchFlexTemplateRequest {
    launch_parameter: Option<LaunchFlexTemplateParameter>,
    #[serde(default)]
    validate_only: bool,
}

/// Every documented field is accepted; only some are checked further.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct LaunchFlexTemplateParameter {
    job_name: Option<String>,
    container_spec: Option<serde_json::Map<String, Value>>,
    container_spec_gcs_path: Option<String>,
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    #[serde(default)]
    launch_options: BTreeMap<String, String>,
    environment: Option<FlexTemplateRuntimeEnvironment>,
    update: Option<bool>,
    #[serde(default)]
    transform_name_mappings: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)]
struct FlexTemplateRuntimeEnvironment {
    num_workers: Option<i32>,
    max_workers: Option<i32>,
    zone: Option<String>,
    service_account_email: Option<String>,
    temp_location: Option<String>,
    machine_type: Option<String>,
    additional_experiments: Option<Vec<String>>,
    network: Option<String>,
    subnetwork: Option<String>,
    additional_user_labels: Option<BTreeMap<String, String>>,
    kms_key_name: Option<String>,
    ip_configuration: Option<IpConfiguration>,
    worker_region: Option<String>,
    worker_zone: Option<String>,
    enable_streaming_engine: Option<bool>,
    flexrs_goal: Option<FlexrsGoal>,
    staging_location: Option<String>,
    sdk_container_image: Option<String>,
    disk_size_gb: Option<i32>,
    autoscaling_algorithm: Option<AutoscalingAlgorithm>,
    dump_heap_on_oom: Option<bool>,
    save_heap_dumps_to_gcs_path: Option<String>,
    launcher_machine_type: Option<String>,
    enable_launcher_vm_serial_port_logging: Option<bool>,
    streaming_mode: Option<StreamingMode>,
}

#[derive(Debug, Deserialize)]
#[allow(clippy::enum_variant_names)]
enum IpConfiguration {
    #[serde(rename = "WORKER_IP_UNSPECIFIED")]
    Unspecified,
    #[serde(rename = "WORKER_IP_PUBLIC")]
    Public,
    #[serde(rename = "WORKER_IP_PRIVATE")]
    Private,
}

#[derive(Debug, Deserialize)]
#[allow(clippy::enum_variant_names)]
enum FlexrsGoal {
    #[serde(rename = "FLEXRS_UNSPECIFIED")]
    Unspecified,
    #[serde(rename = "FLEXRS_SPEED_OPTIMIZED")]
    Speed,
    #[serde(rename = "FLEXRS_COST_OPTIMIZED")]
    Cost,
}

#[derive(Debug, Deserialize)]
enum AutoscalingAlgorithm {
    #[serde(rename = "AUTOSCALING_ALGORITHM_UNKNOWN")]
    Unknown,
    #[serde(rename = "AUTOSCALING_ALGORITHM_NONE")]
    None,
    #[serde(rename = "AUTOSCALING_ALGORITHM_BASIC")]
    Basic,
}

#[derive(Debug, Deserialize)]
enum StreamingMode {
    #[serde(rename = "STREAMING_MODE_UNSPECIFIED")]
    Unspecified,
    #[serde(rename = "STREAMING_MODE_EXACTLY_ONCE")]
    ExactlyOnce,
    #[serde(rename = "STREAMING_MODE_AT_LEAST_ONCE")]
    AtLeastOnce,
}

/// Dataflow's rule: `[a-z]([-a-z0-9]{0,1022}[a-z0-9])?`.
pub fn valid_job_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=1024).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.ends_with('-')
}

/// Google's label rules: at most 64 labels; keys and values at most 63 characters of
/// lower-case letters (international ones too), digits, `_` and `-`; keys start with a
/// letter; values may be empty.
pub fn label_error(labels: &BTreeMap<String, String>) -> Option<String> {
    fn allowed(c: char) -> bool {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '_'
            || c == '-'
            || (!c.is_ascii() && c.is_alphanumeric() && !c.is_uppercase())
    }
    fn letter(c: char) -> bool {
        c.is_ascii_lowercase() || (!c.is_ascii() && c.is_alphabetic() && !c.is_uppercase())
    }
    if labels.len() > 64 {
        return Some(format!(
            "Invalid value at 'launch_parameter.environment.additional_user_labels': {} labels, at most 64 are allowed",
            labels.len()
        ));
    }
    labels.iter().find_map(|(key, value)| {
        let key_ok =
            key.starts_with(letter) && key.chars().count() <= 63 && key.chars().all(allowed);
        let value_ok = value.chars().count() <= 63 && value.chars().all(allowed);
        (!key_ok || !value_ok).then(|| {
            format!(
                "Invalid value at 'launch_parameter.environment.additional_user_labels' ({key:?}: {value:?}): label keys and values must be at most 63 characters of lowercase letters, numeric characters, underscores and dashes, and keys must start with a letter"
            )
        })
    })
}

fn validate(body: &[u8]) -> Result<(LaunchFlexTemplateParameter, bool), String> {
    let request: LaunchFlexTemplateRequest =
        serde_json::from_slice(body).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let parameter = request
        .launch_parameter
        .ok_or("launch_parameter: Required field is not set")?;
    let name = parameter
        .job_name
        .as_deref()
        .ok_or("launch_parameter.job_name: Required field is not set")?;
    if !valid_job_name(name) {
        return Err(format!(
            "(b3c5e1c9a0ee1d7e): The workflow could not be created. Causes: Invalid job name '{name}': the name must consist of only the characters [-a-z0-9], starting with a letter and ending with a letter or number"
        ));
    }
    match (
        &parameter.container_spec,
        &parameter.container_spec_gcs_path,
    ) {
        (Some(_), Some(_)) => {
            return Err("Only one of container_spec and container_spec_gcs_path may be set".into());
        }
        (None, None) => {
            return Err("One of container_spec or container_spec_gcs_path must be set".into());
        }
        (None, Some(path)) if !path.starts_with("gs://") => {
            return Err(format!(
                "container_spec_gcs_path {path:?} must be a Cloud Storage path starting with gs://"
            ));
        }
        _ => {}
    }
    if let Some(env) = &parameter.environment {
        for (field, value) in [
            ("temp_location", &env.temp_location),
            ("staging_location", &env.staging_location),
        ] {
            if value.as_ref().is_some_and(|v| !v.starts_with("gs://")) {
                return Err(format!(
                    "environment.{field} must be a Cloud Storage URL beginning with gs://"
                ));
            }
        }
        if env.worker_region.is_some() && env.worker_zone.is_some() {
            return Err("worker_region and worker_zone are mutually exclusive".into());
        }
        if let Some(message) = env.additional_user_labels.as_ref().and_then(label_error) {
            return Err(message);
        }
    }
    Ok((parameter, request.validate_only))
}

async fn launch(
    State(handle): State<Handle>,
    Path((project, location)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = handle.0.lock().unwrap();
    let failure = match admit(&mut inner, &headers, Method::Launch) {
        Ok(f) => f,
        Err(refusal) => return refusal.into_response(),
    };
    let (parameter, validate_only) = match validate(&body) {
        Ok(ok) => ok,
        Err(message) => return google_error(StatusCode::BAD_REQUEST, message),
    };
    let raw: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let name = parameter.job_name.unwrap_or_default();
    if validate_only {
        inner.launches.push(raw);
        return axum::Json(json!({})).into_response();
    }
    if inner
        .jobs
        .iter()
        .any(|j| j.name == name && j.project == project && j.location == location && j.active())
    {
        return google_error(
            StatusCode::CONFLICT,
            format!(
                "(6b2f6e1e4a3c2d1b): The workflow could not be created. Causes: (c4f2a8e1b9d7e3f5): There is already an active job named {name}. If you want to submit a second job, try again by setting a different name."
            ),
        );
    }
    let active = inner
        .jobs
        .iter()
        .filter(|j| j.project == project && j.active())
        .count();
    if inner.max_active_jobs.is_some_and(|limit| active >= limit) {
        inner.quota_refusals += 1;
        return google_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "(e1d2c3b4a5968778): Quota exceeded for quota metric 'Concurrent jobs' of service 'dataflow.googleapis.com' for consumer 'project_number:{project}': {active} active jobs."
            ),
        );
    }
    inner.peak_active = inner.peak_active.max(active + 1);
    let id = new_id(&mut inner);
    let mut job = FakeJob {
        id,
        name,
        project,
        location,
        state: "JOB_STATE_QUEUED".into(),
        upcoming: VecDeque::new(),
        messages: Vec::new(),
        launch: raw.clone(),
        unlisted_for: 0,
    };
    apply(&mut job, inner.script.clone());
    let response = json!({"job": job.json()});
    inner.jobs.push(job);
    inner.launches.push(raw);
    if let Some(failure) = failure {
        let status =
            StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return google_error(status, "injected failure after the job was created");
    }
    axum::Json(response).into_response()
}

async fn get_job(
    State(handle): State<Handle>,
    Path((project, location, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut inner = handle.0.lock().unwrap();
    if let Err(refusal) = admit(&mut inner, &headers, Method::Get) {
        return refusal.into_response();
    }
    let Some(job) = inner
        .jobs
        .iter_mut()
        .find(|j| j.id == id && j.project == project && j.location == location)
    else {
        return google_error(
            StatusCode::NOT_FOUND,
            format!(
                "(a1b2c3d4e5f60718): Information about job {id} could not be found in our system."
            ),
        );
    };
    let json = job.json();
    if let Some(next) = job.upcoming.pop_front() {
        job.state = next;
    }
    axum::Json(json).into_response()
}

/// The part of a `Job` that `jobs.update` is used for here; other fields are refused rather
/// than silently ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JobUpdate {
    requested_state: Option<String>,
}

const JOB_STATES: [&str; 15] = [
    "JOB_STATE_UNKNOWN",
    "JOB_STATE_STOPPED",
    "JOB_STATE_RUNNING",
    "JOB_STATE_DONE",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_UPDATED",
    "JOB_STATE_DRAINING",
    "JOB_STATE_DRAINED",
    "JOB_STATE_PENDING",
    "JOB_STATE_CANCELLING",
    "JOB_STATE_QUEUED",
    "JOB_STATE_RESOURCE_CLEANING_UP",
    "JOB_STATE_PAUSING",
    "JOB_STATE_PAUSED",
];

/// `projects.locations.jobs.update`, as sigma uses it: a cancel request.
async fn update_job(
    State(handle): State<Handle>,
    Path((project, location, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = handle.0.lock().unwrap();
    if let Err(refusal) = admit(&mut inner, &headers, Method::Update) {
        return refusal.into_response();
    }
    let update: JobUpdate = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(e) => {
            return google_error(
                StatusCode::BAD_REQUEST,
                format!("Invalid JSON payload received. {e}"),
            );
        }
    };
    let Some(requested) = update.requested_state else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "(f0e1d2c3b4a59687): The workflow could not be updated: no change was requested.",
        );
    };
    if !JOB_STATES.contains(&requested.as_str()) {
        return google_error(
            StatusCode::BAD_REQUEST,
            format!(
                "Invalid value at 'job.requested_state' (type.googleapis.com/google.dataflow.v1beta3.JobState), \"{requested}\""
            ),
        );
    }
    let Some(job) = inner
        .jobs
        .iter_mut()
        .find(|j| j.id == id && j.project == project && j.location == location)
    else {
        return google_error(
            StatusCode::NOT_FOUND,
            format!(
                "(a1b2c3d4e5f60718): Information about job {id} could not be found in our system."
            ),
        );
    };
    if !job.active() {
        return google_error_with(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            format!(
                "(9a8b7c6d5e4f3021): Workflow modification failed. Causes: (3b2a1c0d9e8f7a6b): The job {id} is in terminal state {} and cannot be updated.",
                job.state
            ),
        );
    }
    match requested.as_str() {
        "JOB_STATE_CANCELLED" => {
            job.state = "JOB_STATE_CANCELLING".into();
            job.upcoming = VecDeque::from(["JOB_STATE_CANCELLED".to_owned()]);
        }
        "JOB_STATE_DRAINED" => {
            return google_error_with(
                StatusCode::BAD_REQUEST,
                "FAILED_PRECONDITION",
                format!(
                    "(5c4d3e2f1a0b9c8d): Workflow modification failed. Causes: Cannot drain the batch job {id}: only streaming jobs can be drained."
                ),
            );
        }
        other => {
            return google_error(
                StatusCode::BAD_REQUEST,
                format!(
                    "(7d6e5f4a3b2c1d0e): Workflow modification failed. Causes: The requested state {other} is not a valid transition for job {id}."
                ),
            );
        }
    }
    axum::Json(job.json()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    filter: Option<String>,
    name: Option<String>,
    page_size: Option<usize>,
    page_token: Option<String>,
}

async fn list_jobs(
    State(handle): State<Handle>,
    Path((project, location)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    let mut inner = handle.0.lock().unwrap();
    if let Err(refusal) = admit(&mut inner, &headers, Method::List) {
        return refusal.into_response();
    }
    let filter = query.filter.as_deref().unwrap_or("ALL");
    if !["UNKNOWN", "ALL", "TERMINATED", "ACTIVE"].contains(&filter) {
        return google_error(
            StatusCode::BAD_REQUEST,
            format!(
                "Invalid value at 'filter' (type.googleapis.com/google.dataflow.v1beta3.JobState), \"{filter}\""
            ),
        );
    }
    let mut matching = Vec::new();
    for job in inner.jobs.iter_mut().rev() {
        let selected = job.project == project
            && job.location == location
            && query.name.as_ref().is_none_or(|n| &job.name == n)
            && match filter {
                "ACTIVE" => job.active(),
                "TERMINATED" => !job.active(),
                _ => true,
            };
        if !selected {
            continue;
        }
        if job.unlisted_for > 0 {
            job.unlisted_for -= 1;
            continue;
        }
        matching.push(job.json());
    }
    let start: usize = query
        .page_token
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let size = query.page_size.filter(|s| *s > 0).unwrap_or(2);
    let page: Vec<Value> = matching.iter().skip(start).take(size).cloned().collect();
    let mut body = json!({});
    if !page.is_empty() {
        body["jobs"] = Value::Array(page);
    }
    if start + size < matching.len() {
        body["nextPageToken"] = json!((start + size).to_string());
    }
    axum::Json(body).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessagesQuery {
    minimum_importance: Option<String>,
}

const IMPORTANCE: [&str; 6] = [
    "JOB_MESSAGE_IMPORTANCE_UNKNOWN",
    "JOB_MESSAGE_DEBUG",
    "JOB_MESSAGE_DETAILED",
    "JOB_MESSAGE_BASIC",
    "JOB_MESSAGE_WARNING",
    "JOB_MESSAGE_ERROR",
];

async fn messages(
    State(handle): State<Handle>,
    Path((project, location, id)): Path<(String, String, String)>,
    Query(query): Query<MessagesQuery>,
    headers: HeaderMap,
) -> Response {
    let mut inner = handle.0.lock().unwrap();
    if let Err(refusal) = admit(&mut inner, &headers, Method::Messages) {
        return refusal.into_response();
    }
    let minimum = query
        .minimum_importance
        .as_deref()
        .unwrap_or("JOB_MESSAGE_IMPORTANCE_UNKNOWN");
    let Some(minimum) = IMPORTANCE.iter().position(|i| *i == minimum) else {
        return google_error(
            StatusCode::BAD_REQUEST,
            format!("Invalid value at 'minimum_importance', \"{minimum}\""),
        );
    };
    let Some(job) = inner
        .jobs
        .iter()
        .find(|j| j.id == id && j.project == project && j.location == location)
    else {
        return google_error(
            StatusCode::NOT_FOUND,
            format!("Information about job {id} could not be found in our system."),
        );
    };
    let messages: Vec<Value> = job
        .messages
        .iter()
        .filter(|m| IMPORTANCE.iter().position(|i| *i == m.importance).unwrap_or(0) >= minimum)
        .enumerate()
        .map(|(n, m)| json!({"id": n.to_string(), "time": "2024-01-15T04:06:00Z", "messageText": m.text, "messageImportance": m.importance}))
        .collect();
    axum::Json(json!({"jobMessages": messages})).into_response()
}

async fn control_failure(
    State(handle): State<Handle>,
    axum::Json(failure): axum::Json<Failure>,
) -> StatusCode {
    handle.0.lock().unwrap().failures.push_back(failure);
    StatusCode::NO_CONTENT
}

async fn control_script(
    State(handle): State<Handle>,
    axum::Json(script): axum::Json<Script>,
) -> StatusCode {
    handle.0.lock().unwrap().script = script;
    StatusCode::NO_CONTENT
}

async fn control_job_script(
    State(handle): State<Handle>,
    Path(id): Path<String>,
    axum::Json(script): axum::Json<Script>,
) -> StatusCode {
    let mut inner = handle.0.lock().unwrap();
    match inner.jobs.iter_mut().find(|j| j.id == id) {
        Some(job) => {
            apply(job, script);
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}

pub fn router(handle: Handle) -> Router {
    Router::new()
        .route(
            "/v1b3/projects/{project}/locations/{location}/flexTemplates:launch",
            post(launch),
        )
        .route(
            "/v1b3/projects/{project}/locations/{location}/jobs",
            get(list_jobs),
        )
        .route(
            "/v1b3/projects/{project}/locations/{location}/jobs/{id}",
            get(get_job).put(update_job),
        )
        .route(
            "/v1b3/projects/{project}/locations/{location}/jobs/{id}/messages",
            get(messages),
        )
        .route("/_fake/failures", post(control_failure))
        .route("/_fake/script", post(control_script))
        .route(
            "/_fake/quota",
            post(
                |State(h): State<Handle>, axum::Json(quota): axum::Json<Quota>| async move {
                    h.limit_active_jobs(quota.max_active_jobs);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/_fake/stats",
            get(|State(h): State<Handle>| async move { axum::Json(h.stats()) }),
        )
        .route("/_fake/jobs/{id}/script", post(control_job_script))
        .route(
            "/_fake/launches",
            get(|State(h): State<Handle>| async move { axum::Json(h.launches()) }),
        )
        .route(
            "/_fake/jobs",
            get(|State(h): State<Handle>| async move {
                axum::Json(serde_json::to_value(h.jobs()).unwrap_or_default())
            }),
        )
        .fallback(|| async {
            google_error(
                StatusCode::NOT_FOUND,
                "The requested URL was not found on this server.",
            )
        })
        .with_state(handle)
}

pub async fn serve(listener: TcpListener, handle: Handle) -> std::io::Result<()> {
    axum::serve(listener, router(handle)).await
}

/// A fake on a random loopback port, for tests.
pub struct FakeDataflow {
    pub addr: SocketAddr,
    pub handle: Handle,
}

impl FakeDataflow {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let handle = Handle::default();
        tokio::spawn(serve(listener, handle.clone()));
        Ok(Self { addr, handle })
    }

    /// The value for `DATAFLOW_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}
