//! sigma-dataflow's OpenAPI document: the routes from their request and answer types, the
//! errors from [`Error`], examples from the README.

use serde_json::json;
use sigma_shared::openapi::{self, add_errors, body_errors, pick, query_errors, schema};
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::{RefOr, schema::Schema};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use crate::error::Error;
use crate::naming::{DataformTable, EntityName, FechaLote, JobId, JobName, ProjectId, Region};

#[derive(OpenApi)]
#[openapi(
    paths(super::launch, super::status, super::job_method),
    tags((name = "dataflow", description = "Dataflow Flex Template launches, one job per upload, and their state."))
)]
struct Contract;

/// What Dataflow's answers can add to any call to it.
const DATAFLOW: &[&str] = &[
    "dataflow_not_found",
    "dataflow_rejected",
    "quota_exhausted",
    "dataflow_unavailable",
    "credentials_unavailable",
    "dataflow_error",
];

/// The document `GET /openapi.json` serves.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut api = openapi::finish(
        Contract::openapi(),
        "sigma-dataflow",
        "Turns a decrypted upload into a Dataflow job with no code per file: the object name \
         selects an entry of the pipeline registry, the service writes the upload's own job \
         config and launches the entry's Flex Template, then reports the job's state. Every \
         error is `{\"error\": {\"code\", \"message\", \"retryable\"}}` with its status.",
    );
    let documented = Error::documented();
    let launch = [
        "invalid_request",
        "object_not_found",
        "stale_generation",
        "write_conflict",
        "unknown_entity",
        "ambiguous_entity",
        "invalid_fecha_lote",
        "invalid_labels",
        "storage_unavailable",
        "storage_error",
    ];
    let errors = |codes: &[&str]| pick(&documented, codes);
    add_errors(
        &mut api,
        HttpMethod::Post,
        "/launch",
        &[body_errors(), errors(&launch), errors(DATAFLOW)].concat(),
    );
    add_errors(
        &mut api,
        HttpMethod::Get,
        "/jobs/{job_id}",
        &[
            query_errors(),
            errors(&["invalid_request"]),
            errors(DATAFLOW),
        ]
        .concat(),
    );
    add_errors(
        &mut api,
        HttpMethod::Post,
        "/jobs/{job_id}:cancel",
        &[
            query_errors(),
            errors(&["invalid_request", "not_found"]),
            errors(DATAFLOW),
        ]
        .concat(),
    );
    api
}

fn string(description: &str, pattern: &str, example: &str) -> RefOr<Schema> {
    schema(json!({
        "type": "string",
        "description": description,
        "pattern": pattern,
        "examples": [example],
    }))
}

impl PartialSchema for JobId {
    fn schema() -> RefOr<Schema> {
        string(
            "A Dataflow job id.",
            "^[A-Za-z0-9_-]{1,128}$",
            "2024-01-15_04_05_06-1234567890123456789",
        )
    }
}

impl ToSchema for JobId {}

impl PartialSchema for JobName {
    fn schema() -> RefOr<Schema> {
        string(
            "A Dataflow job name: `{entity}-{fecha_lote}-{generation in base 36}` with `_` turned into `-`; a re-run's ends in `-aN`.",
            "^[a-z]([-a-z0-9]*[a-z0-9])?$",
            "poliza-detalle-2024-01-15-gshdvvbl1c",
        )
    }
}

impl ToSchema for JobName {}

impl PartialSchema for Region {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "string",
            "description": "A Google Cloud region.",
            "maxLength": 63,
            "pattern": "^[a-z0-9]*(-[a-z0-9]+)*-[a-z0-9]*[0-9]$",
            "examples": ["europe-west1"],
        }))
    }
}

impl ToSchema for Region {}

impl PartialSchema for ProjectId {
    fn schema() -> RefOr<Schema> {
        string(
            "A Google Cloud project id, optionally domain-scoped (`example.com:my-project`).",
            "^[a-z0-9.:-]+$",
            "company-data-prod",
        )
    }
}

impl ToSchema for ProjectId {}

impl PartialSchema for EntityName {
    fn schema() -> RefOr<Schema> {
        string(
            "The registry entry (entity) the object's name selected.",
            "^[a-z][a-z0-9_]*$",
            "poliza_detalle",
        )
    }
}

impl ToSchema for EntityName {}

impl PartialSchema for FechaLote {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "string",
            "format": "date",
            "description": "The batch date the object's name carries.",
            "examples": ["2024-01-15"],
        }))
    }
}

impl ToSchema for FechaLote {}

impl PartialSchema for DataformTable {
    fn schema() -> RefOr<Schema> {
        string(
            "The Dataform table the load feeds, as the registry writes it: `name`, `schema.name` or `database.schema.name`.",
            "^[A-Za-z0-9_.:-]+$",
            "polizas",
        )
    }
}

impl ToSchema for DataformTable {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_openapi_document_is_the_one_served() {
        openapi::check_committed("sigma-dataflow", &document());
    }

    #[test]
    fn every_documented_error_is_answered_by_some_operation() {
        assert_eq!(
            openapi::unanswered(&document(), &Error::documented()),
            Vec::<&str>::new()
        );
    }
}
