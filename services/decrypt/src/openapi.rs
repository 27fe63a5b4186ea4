//! sigma-decrypt's OpenAPI document: `POST /decrypt` from its request and answer types, its
//! errors from [`Error`], examples from the README.

use sigma_shared::openapi::{self, add_errors, body_errors};
use utoipa::OpenApi;
use utoipa::openapi::path::HttpMethod;

use crate::error::Error;

#[derive(OpenApi)]
#[openapi(
    paths(crate::app::decrypt),
    tags((name = "decrypt", description = "Verified, streaming decryption of an uploaded file."))
)]
struct Contract;

/// The document `GET /openapi.json` serves.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut api = openapi::finish(
        Contract::openapi(),
        "sigma-decrypt",
        "Reads one Fernet token from the trigger bucket and writes the gzip file inside it to \
         the output bucket, only once its signature, padding and gzip header are checked. \
         Every error is `{\"error\": {\"code\", \"message\", \"retryable\"}}` with its status; \
         nothing is written for any of them.",
    );
    add_errors(
        &mut api,
        HttpMethod::Post,
        "/decrypt",
        &[body_errors(), Error::documented()].concat(),
    );
    api
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_openapi_document_is_the_one_served() {
        openapi::check_committed("sigma-decrypt", &document());
    }

    #[test]
    fn every_documented_error_is_answered_by_some_operation() {
        assert_eq!(
            openapi::unanswered(&document(), &Error::documented()),
            Vec::<&str>::new()
        );
    }
}
