//! The published contract: each service's OpenAPI 3.1 document, served at `GET /openapi.json`
//! and committed under `docs/openapi/`.
//!
//! The document is built from the types the handlers read and write (`utoipa`), and its
//! error answers from the services' error enums through [`HttpError`]: a status, code or
//! retryability changed in the one place that maps an error to HTTP changes the document
//! too, and the committed copy then differs, so the change shows in review. What every
//! service shares (the error shape, the extractors' refusals, `/healthz`, the document's own
//! route and the types of `sigma-shared`) is described here once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi, RefOr, Response};
use utoipa::{PartialSchema, ToSchema};

use crate::attempt::{Attempt, MAX_ATTEMPT, Rerun};
use crate::error::{ApiError, HttpError};
use crate::object::{BucketName, Generation, ObjectName};
use crate::storage::StorageError;

/// Set to `1` to rewrite the committed documents from the code instead of comparing them.
pub const BLESS_VAR: &str = "SIGMA_BLESS";

/// One way an operation can fail, as callers see it.
#[derive(Debug, Clone)]
pub struct ErrorDoc {
    pub status: StatusCode,
    pub code: &'static str,
    pub retryable: bool,
    /// When it happens, for people; the example message of the code.
    pub when: &'static str,
}

impl ErrorDoc {
    /// Status, code and retryability as `error` answers them.
    pub fn of<E: HttpError>(error: &E, when: &'static str) -> Self {
        Self::from_api(&ApiError::from_error(error), when)
    }

    pub fn from_api(error: &ApiError, when: &'static str) -> Self {
        Self {
            status: error.status,
            code: error.code,
            retryable: error.retryable,
            when,
        }
    }
}

/// What the shared extractors answer for a body they cannot read.
pub fn body_errors() -> Vec<ErrorDoc> {
    vec![
        ErrorDoc::from_api(
            &crate::extract::invalid_request(StatusCode::BAD_REQUEST, String::new()),
            "The body is not JSON, lacks a required field, has a malformed value or a field the operation does not know.",
        ),
        ErrorDoc::from_api(
            &crate::extract::invalid_request(StatusCode::PAYLOAD_TOO_LARGE, String::new()),
            "The body is larger than 2 MiB.",
        ),
    ]
}

/// What the shared extractors answer for a path or query they cannot read.
pub fn query_errors() -> Vec<ErrorDoc> {
    vec![ErrorDoc::from_api(
        &crate::extract::invalid_request(StatusCode::BAD_REQUEST, String::new()),
        "A malformed path or query parameter, or a query parameter the operation does not know.",
    )]
}

/// Every answer of the Cloud Storage calls a service makes.
pub fn storage_errors(object: &crate::ObjectRef) -> Vec<ErrorDoc> {
    use crate::google::Failure;
    let google = |failure| StorageError::Google {
        object: object.clone(),
        failure,
        message: String::new(),
    };
    let mut documented = vec![
        ErrorDoc::of(
            &google(Failure::Throttled),
            "Cloud Storage kept answering 429 or RESOURCE_EXHAUSTED (a quota or rate limit) after the client's retries: wait and retry.",
        ),
        ErrorDoc::of(
            &google(Failure::Transient),
            "Cloud Storage answered 5xx, timed out or was unreachable after the client's retries.",
        ),
        ErrorDoc::of(
            &google(Failure::Unexpected),
            "Cloud Storage gave an answer that could not be read.",
        ),
    ];
    for status in [
        StatusCode::BAD_REQUEST,
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::CONFLICT,
    ] {
        documented.push(ErrorDoc::of(
            &google(Failure::Rejected(status)),
            "Cloud Storage refused the call for another reason (e.g. 403: permission denied).",
        ));
    }
    documented
}

/// Picks the documented errors with these codes, every status of each; a code with no
/// documented error is a mistake in the caller's list and panics when the document is built
/// (which the committed-document test does).
pub fn pick(documented: &[ErrorDoc], codes: &[&str]) -> Vec<ErrorDoc> {
    codes
        .iter()
        .flat_map(|code| {
            let found: Vec<ErrorDoc> = documented
                .iter()
                .filter(|doc| doc.code == *code)
                .cloned()
                .collect();
            assert!(!found.is_empty(), "no documented error has code {code:?}");
            found
        })
        .collect()
}

/// The codes of `documented` that no operation of `api` answers: each should be listed
/// somewhere, or the list documents an error that cannot happen.
pub fn unanswered(api: &OpenApi, documented: &[ErrorDoc]) -> Vec<&'static str> {
    let text = to_json(api);
    documented
        .iter()
        .filter(|doc| !text.contains(&format!("\"{}\"", doc.code)))
        .map(|doc| doc.code)
        .collect()
}

/// A schema written as JSON: shorter to read than the builders for the hand-made parts.
pub fn schema(value: Value) -> RefOr<Schema> {
    serde_json::from_value(value).expect("a valid JSON Schema object")
}

/// Adds to `method path` of `api` one answer per error status, each listing its codes
/// with their retryability and an example per code.
pub fn add_errors(api: &mut OpenApi, method: HttpMethod, path: &str, errors: &[ErrorDoc]) {
    let operation = operation(api, method, path);
    let mut by_status: BTreeMap<u16, Vec<&ErrorDoc>> = BTreeMap::new();
    for error in errors {
        let listed = by_status.entry(error.status.as_u16()).or_default();
        if !listed
            .iter()
            .any(|e| e.code == error.code && e.retryable == error.retryable)
        {
            listed.push(error);
        }
    }
    for (status, errors) in by_status {
        operation
            .responses
            .responses
            .insert(status.to_string(), RefOr::T(error_response(&errors)));
    }
}

fn operation<'a>(api: &'a mut OpenApi, method: HttpMethod, path: &str) -> &'a mut Operation {
    let item = api
        .paths
        .paths
        .get_mut(path)
        .unwrap_or_else(|| panic!("no path {path} in the document"));
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        _ => None,
    }
    .unwrap_or_else(|| panic!("no such operation on {path} in the document"))
}

fn error_response(errors: &[&ErrorDoc]) -> Response {
    // One shape per value of `retryable`, each with its codes: a client reads from the
    // document which codes are worth retrying.
    let shapes: Vec<Value> = [false, true]
        .into_iter()
        .filter_map(|retryable| {
            let mut codes: Vec<&str> = errors
                .iter()
                .filter(|e| e.retryable == retryable)
                .map(|e| e.code)
                .collect();
            codes.dedup();
            (!codes.is_empty()).then(|| {
                json!({
                    "type": "object",
                    "required": ["code", "message", "retryable"],
                    "additionalProperties": false,
                    "properties": {
                        "code": {"type": "string", "enum": codes},
                        "message": {"type": "string"},
                        "retryable": {"type": "boolean", "enum": [retryable]},
                    },
                })
            })
        })
        .collect();
    let error = match <[Value; 1]>::try_from(shapes) {
        Ok([shape]) => shape,
        Err(shapes) => json!({"oneOf": shapes}),
    };
    let description = errors
        .iter()
        .map(|e| {
            let retry = if e.retryable { " (retryable)" } else { "" };
            format!("`{}`{retry}: {}", e.code, e.when)
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    let examples: serde_json::Map<String, Value> = errors
        .iter()
        .map(|e| {
            (
                e.code.to_owned(),
                json!({"value": {"error": {"code": e.code, "message": e.when, "retryable": e.retryable}}}),
            )
        })
        .collect();
    let mut response = json!({
        "description": description,
        "content": {"application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "additionalProperties": false,
                "properties": {"error": error},
            },
            "examples": examples,
        }},
    });
    if errors.iter().any(|e| ApiError::says_retry_after(e.status)) {
        response["headers"] = json!({"Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "string"},
        }});
    }
    serde_json::from_value(response).expect("a valid response object")
}

/// The service's document with what every service has: `GET /healthz`, `GET /openapi.json`,
/// and the method and route fallbacks' errors on every operation.
pub fn finish(mut api: OpenApi, title: &str, description: &str) -> OpenApi {
    api.info.title = title.to_owned();
    api.info.description = Some(description.to_owned());
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    api.info.license = None;
    api.info.contact = None;
    let shared: OpenApi = serde_json::from_value(json!({
        "openapi": "3.1.0",
        "info": {"title": "", "version": ""},
        "paths": {
            "/healthz": {"get": {
                "operationId": "healthz",
                "summary": "Liveness: answers `ok` while the service runs.",
                "tags": ["service"],
                "responses": {"200": {
                    "description": "The service is up.",
                    "content": {"text/plain": {"schema": {"type": "string", "const": "ok"}}},
                }},
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document.",
                "tags": ["service"],
                "responses": {"200": {
                    "description": "The service's OpenAPI 3.1 document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }},
            }},
        },
    }))
    .expect("a valid document");
    api.merge(shared);
    api
}

/// The document as served and committed: pretty JSON ending in a newline.
pub fn to_json(api: &OpenApi) -> String {
    let mut text = api
        .to_pretty_json()
        .expect("an OpenAPI document always serializes");
    text.push('\n');
    text
}

/// `docs/openapi/{service}.json` of the repository.
pub fn committed_path(service: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs/openapi")
        .join(format!("{service}.json"))
}

/// Compares the document with its committed copy; with `SIGMA_BLESS=1` writes the copy
/// instead. A contract change thus fails the tests until the copy is updated with it.
pub fn check_committed(service: &str, api: &OpenApi) {
    let path = committed_path(service);
    let served = to_json(api);
    if std::env::var(BLESS_VAR).as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().expect("docs/openapi")).expect("create docs/openapi");
        std::fs::write(&path, &served).expect("write the committed document");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == served,
        "{} differs from the document {service} serves; if the change is intended, run\n  \
         {BLESS_VAR}=1 cargo test --workspace --release --locked committed_openapi\nand commit the file",
        path.display()
    );
}

impl PartialSchema for BucketName {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "string",
            "description": "A Cloud Storage bucket name: 3-63 characters (222 with dots) of lower-case letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit.",
            "minLength": 3,
            "maxLength": 222,
            "pattern": "^[a-z0-9][a-z0-9_.-]*[a-z0-9]$",
            "examples": ["company_trigger_bucket"],
        }))
    }
}

impl ToSchema for BucketName {}

impl PartialSchema for ObjectName {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "string",
            "description": "A Cloud Storage object name: 1-1024 bytes of UTF-8, no control characters, no `..`, not starting with `/`.",
            "minLength": 1,
            "maxLength": 1024,
            "examples": ["data/20240115/lkp_fechas.gz"],
        }))
    }
}

impl ToSchema for ObjectName {}

impl PartialSchema for Generation {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "description": "A Cloud Storage object generation: a positive 64-bit integer, as a decimal string (as Cloud Storage events carry it) or a number. Answers write it as a string.",
            "oneOf": [
                {"type": "string", "pattern": "^[1-9][0-9]{0,18}$"},
                {"type": "integer", "minimum": 1, "maximum": i64::MAX},
            ],
            "examples": ["1705312800123456"],
        }))
    }
}

impl ToSchema for Generation {}

impl PartialSchema for Attempt {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "integer",
            "description": "Which run of the upload's chain this is: 1 from Eventarc, 2 and up from `sigma replay`.",
            "minimum": 1,
            "maximum": MAX_ATTEMPT,
            "default": 1,
        }))
    }
}

impl ToSchema for Attempt {}

impl PartialSchema for Rerun {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "string",
            "description": "What a re-run covers after a failure: `failed`, what did not succeed and what depends on it, or `all`.",
            "enum": ["failed", "all"],
            "default": "failed",
        }))
    }
}

impl ToSchema for Rerun {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_list_each_code_under_its_retryability_with_an_example() {
        let mut api: OpenApi = serde_json::from_value(json!({
            "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
            "paths": {"/x": {"post": {"responses": {}}}},
        }))
        .unwrap();
        let object = crate::ObjectRef::new("b-1".parse().unwrap(), "o".parse().unwrap());
        add_errors(
            &mut api,
            HttpMethod::Post,
            "/x",
            &pick(
                &storage_errors(&object),
                &["quota_exhausted", "storage_unavailable"],
            ),
        );
        let document = serde_json::to_value(&api).unwrap();
        let responses = &document["paths"]["/x"]["post"]["responses"];
        let unavailable = &responses["503"]["content"]["application/json"];
        assert_eq!(
            unavailable["schema"]["properties"]["error"]["properties"]["code"]["enum"],
            json!(["storage_unavailable"])
        );
        assert_eq!(
            unavailable["schema"]["properties"]["error"]["properties"]["retryable"]["enum"],
            json!([true])
        );
        add_errors(
            &mut api,
            HttpMethod::Post,
            "/x",
            &[
                ErrorDoc::of(&StorageError::NotFound(object.clone()), "gone"),
                ErrorDoc {
                    status: StatusCode::NOT_FOUND,
                    code: "busy",
                    retryable: true,
                    when: "later",
                },
            ],
        );
        let document = serde_json::to_value(&api).unwrap();
        let shapes = &document["paths"]["/x"]["post"]["responses"]["404"]["content"]["application/json"]
            ["schema"]["properties"]["error"]["oneOf"];
        assert_eq!(
            shapes[0]["properties"]["code"]["enum"],
            json!(["object_not_found"])
        );
        assert_eq!(shapes[0]["properties"]["retryable"]["enum"], json!([false]));
        assert_eq!(shapes[1]["properties"]["code"]["enum"], json!(["busy"]));
        assert_eq!(shapes[1]["properties"]["retryable"]["enum"], json!([true]));
        assert_eq!(
            unavailable["examples"]["storage_unavailable"]["value"]["error"]["retryable"],
            true
        );
        assert!(responses["429"]["headers"]["Retry-After"].is_object());
    }

    #[test]
    #[should_panic(expected = "no documented error has code \"nope\"")]
    fn picking_an_undocumented_code_is_a_mistake() {
        pick(&query_errors(), &["nope"]);
    }
}
