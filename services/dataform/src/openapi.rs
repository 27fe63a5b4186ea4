//! sigma-dataform's OpenAPI document: the routes from their request and answer types, the
//! errors from [`DataformError`], examples from the README.

use sigma_shared::openapi::{self, add_errors, body_errors, pick, query_errors};
use utoipa::OpenApi;
use utoipa::openapi::path::HttpMethod;

use crate::error::DataformError;

#[derive(OpenApi)]
#[openapi(
    paths(
        crate::routes::closure_of,
        crate::routes::invoke,
        crate::routes::ticket,
        crate::routes::ticket_method,
        crate::routes::invocation,
        crate::routes::invocation_method
    ),
    tags((name = "dataform", description = "The Dataform actions that depend on a loaded table, and one invocation of exactly them."))
)]
struct Contract;

/// What loading the graph (a file or a compilation) can answer.
const GRAPH: &[&str] = &[
    "compilation_failed",
    "invalid_graph",
    "quota_exhausted",
    "dataform_unavailable",
    "dataform_error",
];

/// What reading an invocation from Dataform can answer.
const INVOCATION: &[&str] = &[
    "invalid_request",
    "unknown_invocation",
    "invocations_unavailable",
    "quota_exhausted",
    "dataform_unavailable",
    "dataform_error",
];

/// The document `GET /openapi.json` serves.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut api = openapi::finish(
        Contract::openapi(),
        "sigma-dataform",
        "Runs exactly the Dataform actions that depend, directly or transitively, on the table \
         a file just loaded, and nothing else. Every error is \
         `{\"error\": {\"code\", \"message\", \"retryable\"}}` with its status.",
    );
    let documented = DataformError::documented();
    let errors = |codes: &[&str]| pick(&documented, codes);
    let table = ["invalid_request", "unknown_table", "ambiguous_table"];
    add_errors(
        &mut api,
        HttpMethod::Post,
        "/closure",
        &[body_errors(), errors(&table), errors(GRAPH)].concat(),
    );
    add_errors(
        &mut api,
        HttpMethod::Post,
        "/invoke",
        &[
            body_errors(),
            errors(&table),
            errors(GRAPH),
            errors(&[
                "invocations_unavailable",
                "invocation_in_progress",
                "schedule_busy",
                "corrupt_record",
                "storage_unavailable",
                "storage_error",
            ]),
        ]
        .concat(),
    );
    let ticket = [
        "unknown_ticket",
        "unknown_table",
        "invocation_in_progress",
        "schedule_busy",
        "corrupt_record",
        "storage_unavailable",
        "storage_error",
    ];
    add_errors(
        &mut api,
        HttpMethod::Get,
        "/tickets/{id}",
        &[
            query_errors(),
            errors(INVOCATION),
            errors(GRAPH),
            errors(&ticket),
        ]
        .concat(),
    );
    add_errors(
        &mut api,
        HttpMethod::Post,
        "/tickets/{id}:cancel",
        &[
            query_errors(),
            errors(INVOCATION),
            errors(GRAPH),
            errors(&ticket),
            errors(&["not_found"]),
        ]
        .concat(),
    );
    add_errors(
        &mut api,
        HttpMethod::Get,
        "/invocations/{id}",
        &[query_errors(), errors(INVOCATION)].concat(),
    );
    add_errors(
        &mut api,
        HttpMethod::Post,
        "/invocations/{id}:cancel",
        &[query_errors(), errors(INVOCATION), errors(&["not_found"])].concat(),
    );
    api
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_openapi_document_is_the_one_served() {
        openapi::check_committed("sigma-dataform", &document());
    }

    #[test]
    fn every_documented_error_is_answered_by_some_operation() {
        assert_eq!(
            openapi::unanswered(&document(), &DataformError::documented()),
            Vec::<&str>::new()
        );
    }
}
