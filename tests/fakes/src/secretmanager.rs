//! A fake Secret Manager speaking the REST format of `versions.access`, the one call sigma
//! makes (to read Fernet keys at start-up).
//!
//! It answers like Google does: the payload as base64 with its CRC32C as an int64 string,
//! `latest` resolving to the newest version, and Google-style JSON errors (`NOT_FOUND`,
//! `PERMISSION_DENIED`, `INVALID_ARGUMENT`) for unknown secrets, denied ones and names that
//! are not `projects/*/secrets/*/versions/*`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use serde_json::json;

#[derive(Default)]
struct Secrets {
    /// `projects/P/secrets/S` -> version number -> payload.
    versions: BTreeMap<String, BTreeMap<u64, Vec<u8>>>,
    /// Secrets the caller may not read.
    denied: HashSet<String>,
    /// How many `access` calls were answered, whatever the outcome.
    accesses: usize,
}

pub struct FakeSecretManager {
    /// `http://127.0.0.1:PORT`, the endpoint to give the client.
    pub endpoint: String,
    secrets: Arc<Mutex<Secrets>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeSecretManager {
    pub async fn start() -> anyhow::Result<Self> {
        let secrets = Arc::new(Mutex::new(Secrets::default()));
        let app = Router::new()
            .route("/v1/{*resource}", get(access))
            .fallback(|| async {
                google_error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "The requested URL was not found on this server.",
                )
            })
            .with_state(secrets.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            endpoint,
            secrets,
            server,
        })
    }

    /// Adds the next version of `secret` (`projects/P/secrets/S`) and returns its full name.
    pub fn add_version(&self, secret: &str, payload: impl Into<Vec<u8>>) -> String {
        let mut secrets = self.secrets.lock().unwrap();
        let versions = secrets.versions.entry(secret.to_owned()).or_default();
        let number = versions.keys().next_back().map_or(1, |n| n + 1);
        versions.insert(number, payload.into());
        format!("{secret}/versions/{number}")
    }

    /// Makes every access to `secret` (`projects/P/secrets/S`) fail with PERMISSION_DENIED,
    /// as when the service account lacks `secretmanager.versions.access`.
    pub fn deny(&self, secret: &str) {
        self.secrets
            .lock()
            .unwrap()
            .denied
            .insert(secret.to_owned());
    }

    pub fn accesses(&self) -> usize {
        self.secrets.lock().unwrap().accesses
    }
}

impl Drop for FakeSecretManager {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn access(
    State(secrets): State<Arc<Mutex<Secrets>>>,
    Path(resource): Path<String>,
) -> Response {
    let mut secrets = secrets.lock().unwrap();
    secrets.accesses += 1;
    let Some(name) = resource.strip_suffix(":access") else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested URL was not found on this server.",
        );
    };
    let parts: Vec<&str> = name.split('/').collect();
    let (secret, version) = match parts.as_slice() {
        ["projects", project, "secrets", secret, "versions", version]
            if [project, secret, version].iter().all(|p| valid_id(p)) =>
        {
            (format!("projects/{project}/secrets/{secret}"), *version)
        }
        _ => {
            return google_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("Invalid resource field value in the request: {name}"),
            );
        }
    };
    if secrets.denied.contains(&secret) {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!(
                "Permission 'secretmanager.versions.access' denied for resource '{name}' (or it may not exist)."
            ),
        );
    }
    let Some(versions) = secrets.versions.get(&secret) else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Secret [{secret}] not found or has no versions."),
        );
    };
    let found = if version == "latest" {
        versions.iter().next_back()
    } else {
        version
            .parse::<u64>()
            .ok()
            .and_then(|n| versions.get_key_value(&n))
    };
    let Some((number, data)) = found else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Secret Version [{secret}/versions/{version}] not found."),
        );
    };
    axum::Json(json!({
        "name": format!("{secret}/versions/{number}"),
        "payload": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "dataCrc32c": crc32c::crc32c(data).to_string(),
        }
    }))
    .into_response()
}

/// Resource ids as Secret Manager allows them: letters, digits, `-` and `_`, at most 255.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn google_error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": reason}});
    (status, axum::Json(body)).into_response()
}
