//! Dataflow v1b3 REST messages, as the discovery document describes them.
//!
//! Only the fields sigma sends or reads are modelled; unset optional fields are omitted
//! rather than sent as `null`, which Dataflow would reject for enums and numbers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::naming::JobId;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaunchFlexTemplateRequest {
    pub launch_parameter: LaunchFlexTemplateParameter,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub validate_only: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LaunchFlexTemplateParameter {
    pub job_name: String,
    pub container_spec_gcs_path: String,
    pub parameters: BTreeMap<String, String>,
    pub environment: FlexTemplateRuntimeEnvironment,
}

/// `FlexTemplateRuntimeEnvironment`: where and how the workers run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlexTemplateRuntimeEnvironment {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temp_location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staging_location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnetwork: Option<String>,
    /// `WORKER_IP_PRIVATE` or `WORKER_IP_PUBLIC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_configuration: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_workers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_workers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launcher_machine_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_size_gb: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_experiments: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub additional_user_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LaunchFlexTemplateResponse {
    #[serde(default)]
    pub job: Option<Job>,
}

/// The parts of a `Job` sigma reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: JobId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub current_state: Option<String>,
    #[serde(default)]
    pub replaced_by_job_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListJobsResponse {
    #[serde(default)]
    pub jobs: Vec<Job>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListJobMessagesResponse {
    #[serde(default)]
    pub job_messages: Vec<JobMessage>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobMessage {
    #[serde(default)]
    pub message_text: String,
    #[serde(default)]
    pub message_importance: Option<String>,
}

/// Google's error body: `{"error": {"code", "message", "status"}}`; `status` is the RPC
/// code (`RESOURCE_EXHAUSTED`, `ABORTED`...).
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: Option<String>,
}
